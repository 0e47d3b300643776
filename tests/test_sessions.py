"""labs.tools.sessions: step-driven sessions reproduce anomalies at the levels that allow them.

Each anomaly is shown in a contrasting pair (Hermitage style): the isolation level that
allows it and the one that prevents it. Runs on a scratch database `test_sess_*`.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from labs.tools.sessions import Sessions, run_script

from .scratch import scratch_database


@pytest.fixture(scope="module")
def url():
    with scratch_database("test_sess") as database_url:
        yield database_url


SETUP = """
DROP TABLE IF EXISTS test;
CREATE TABLE test (id int PRIMARY KEY, value int);
INSERT INTO test VALUES (1, 10), (2, 20);
"""

LOST_UPDATE = """
T1: begin
T2: begin
T1: select value from test where id = 1
T2: select value from test where id = 1
T1: update test set value = 11 where id = 1
T2: update test set value = 11 where id = 1
T1: commit
T2: commit
T1: select value from test where id = 1
"""

WRITE_SKEW = """
T1: begin
T2: begin
T1: select value from test where id in (1, 2)
T2: select value from test where id in (1, 2)
T1: update test set value = 11 where id = 1
T2: update test set value = 21 where id = 2
T1: commit
T2: commit
"""

DEADLOCK = """
T1: begin
T2: begin
T1: update test set value = 11 where id = 1
T2: update test set value = 22 where id = 2
T1: update test set value = 21 where id = 2
T2: update test set value = 12 where id = 1
T1: rollback
T2: commit
"""


def test_lost_update_is_allowed_at_read_committed(url):
    """P4: both read 10, both write 11, both commit: one increment is lost."""
    text = run_script(url, LOST_UPDATE, isolation="read committed", setup=SETUP)
    assert "T2: update test set value = 11 where id = 1; -- BLOCKS (waits for T1)" in text
    assert "T1: commit; -- COMMIT; T2 unblocks: UPDATE 1" in text
    assert "T2: commit; -- COMMIT" in text


def test_lost_update_is_prevented_at_repeatable_read(url):
    """P4 at REPEATABLE READ: the blocked writer fails with 40001 once the first commits."""
    text = run_script(url, LOST_UPDATE, isolation="repeatable read", setup=SETUP)
    assert ("T1: commit; -- COMMIT; T2 unblocks: ERROR 40001: could not serialize access due "
            "to concurrent update") in text
    assert "T2: commit; -- ROLLBACK" in text


def test_write_skew_is_allowed_at_repeatable_read(url):
    """G2-item: disjoint writes after overlapping reads both commit under snapshot isolation."""
    text = run_script(url, WRITE_SKEW, isolation="repeatable read", setup=SETUP)
    assert text.endswith("T1: commit; -- COMMIT\nT2: commit; -- COMMIT")


def test_write_skew_is_prevented_at_serializable(url):
    """G2-item at SERIALIZABLE: the second commit fails with a read/write dependency error."""
    text = run_script(url, WRITE_SKEW, isolation="serializable", setup=SETUP)
    assert text.endswith("T2: commit; -- ERROR 40001: could not serialize access due to "
                         "read/write dependencies among transactions")


def test_deadlock_is_detected_and_reported_by_sqlstate(url):
    """Opposite lock order: the step closing the cycle is aborted with 40P01, the other proceeds."""
    text = run_script(url, DEADLOCK, setup=SETUP)
    assert "T1: update test set value = 21 where id = 2; -- BLOCKS (waits for T2)" in text
    assert ("T2: update test set value = 12 where id = 1; -- ERROR 40P01: deadlock detected; "
            "T1 unblocks: UPDATE 1") in text


def test_deadlock_victim_is_the_closing_step_even_when_it_comes_late(url):
    """The victim must not depend on timing: close the cycle 1.5 s (> deadlock_timeout) after
    the first wait, repeatedly in the same two sessions, and the closing step always fails."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SETUP)
    with Sessions(url, "T1", "T2") as s:
        for _ in range(3):
            s.play("""
            T1: begin
            T2: begin
            T1: update test set value = 11 where id = 1
            T2: update test set value = 22 where id = 2
            T1: update test set value = 21 where id = 2
            """)
            time.sleep(1.5)
            closing = s.T2("update test set value = 12 where id = 1")
            assert closing.sqlstate == "40P01", s.transcript()
            assert closing.released and closing.released[0].command == "UPDATE 1", s.transcript()
            s.play("""
            T1: rollback
            T2: rollback
            """)


def test_ordered_locks_do_not_deadlock(url):
    """The same transfer pair locking in id order queues instead of deadlocking."""
    text = run_script(url, """
    T1: begin
    T2: begin
    T1: select id from test where id in (1, 2) order by id for update
    T2: select id from test where id in (2, 1) order by id for update
    T1: commit
    T2: commit
    """, setup=SETUP)
    assert "-- BLOCKS (waits for T1)" in text
    assert "T1: commit; -- COMMIT; T2 unblocks: 1, 2" in text
    assert "ERROR" not in text


def test_transcript_is_identical_across_runs(url):
    """Same script, same transcript: no pids, no timings, same deadlock victim."""
    runs = ["\n".join(run_script(url, script, isolation="read committed", setup=SETUP)
                       for script in (LOST_UPDATE, DEADLOCK)) for _ in range(2)]
    assert runs[0] == runs[1]


def test_outcome_carries_rows_and_final_result(url):
    """A blocked step gets its final outcome when released; rows and values are exposed."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SETUP)
    with Sessions(url, "T1", "T2") as s:
        assert s.T1("select id, value from test order by id").rows == [(1, 10), (2, 20)]
        s.T1("begin")
        s.T1("update test set value = 0 where id = 1")
        blocked = s.T2("update test set value = 5 where id = 1")
        assert blocked.blocked and blocked.blocked_by == ("T1",)
        with pytest.raises(RuntimeError):
            s.T2("select 1")  # T2 is still waiting
        assert any(row[0] == "T2" and not row[4] for row in s.locks())
        release = s.T1("commit")
        assert [o.session for o in release.released] == ["T2"]
        assert blocked.final is not None and blocked.final.command == "UPDATE 1"
        assert s.T1("select value from test where id = 1").value == 5


def test_close_cancels_a_blocked_step(url):
    """Leaving the with-block while a step is blocked cancels it instead of hanging."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SETUP)
    with Sessions(url, "T1", "T2") as s:
        s.T1("begin")
        s.T1("select * from test where id = 1 for update")
        assert s.T2("select * from test where id = 1 for update").blocked


def test_a_timed_out_step_is_shown_as_such_and_the_next_step_still_runs(url):
    """After StepTimeout the step reads TIMED OUT (not ok), and the session tool keeps working."""
    from labs.tools.sessions import StepTimeout

    with Sessions(url, "T1", "T2", timeout=0.5) as s:
        with pytest.raises(StepTimeout):
            s.T1("select pg_sleep(1.5)")
        slow = s.steps[-1]
        assert not slow.ok and "TIMED OUT" in slow.line(), slow.line()
        assert s.T2("select 2").value == 2          # another session is unaffected
        time.sleep(1.2)                              # the slow statement has finished by now
        later = s.T2("select 3")
        assert later.value == 3
        assert slow.final is not None and slow.final.ok, s.transcript()
        assert "T1 finishes: " in later.line(), s.transcript()
        assert s.T1("select 1").value == 1           # and T1 can run again


def test_deadlock_steering_never_breaks_a_non_superuser_transaction(url):
    """After SET ROLE to a role that may not SET deadlock_timeout, steps run normally (no 25P02)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SETUP)
        conn.execute("DROP ROLE IF EXISTS lab_plain_role")
        conn.execute("CREATE ROLE lab_plain_role")
        conn.execute("GRANT ALL ON test TO lab_plain_role")
    try:
        with Sessions(url, "T1", "T2") as s:
            s.T1("begin")
            s.T1("set role lab_plain_role")
            assert s.T1("select value from test where id = 1").value == 10, s.transcript()
            assert s.T1("update test set value = 11 where id = 1").ok, s.transcript()
            assert s.T1("commit").command == "COMMIT", s.transcript()
            assert "ERROR" not in s.transcript(), s.transcript()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP OWNED BY lab_plain_role")
            conn.execute("DROP ROLE IF EXISTS lab_plain_role")


def test_the_closing_step_is_the_victim_in_a_three_session_cycle(url):
    """T1 waits for T2, T2 for T3, then T3 closes the cycle at once: T3 (never the middle
    waiter T2) is aborted, whatever the timing, in several runs."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS ring; CREATE TABLE ring (id int PRIMARY KEY, v int);"
                     "INSERT INTO ring VALUES (1, 0), (2, 0), (3, 0)")
    with Sessions(url, "T1", "T2", "T3") as s:
        for delay in (0.0, 0.3, 0.85):  # 0.85 s: just before the middle waiter's check
            s.play("""
            T1: begin
            T2: begin
            T3: begin
            T1: update ring set v = 1 where id = 1
            T2: update ring set v = 2 where id = 2
            T3: update ring set v = 3 where id = 3
            T1: update ring set v = 1 where id = 2
            T2: update ring set v = 2 where id = 3
            """)
            time.sleep(delay)
            closing = s.T3("update ring set v = 3 where id = 1")
            assert closing.sqlstate == "40P01", s.transcript()
            assert not any(o.failed for o in s.steps if o.session == "T2"), s.transcript()
            s.play("""
            T3: rollback
            T2: commit
            T1: commit
            """)
