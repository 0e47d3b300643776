"""labs.tools.stress: the barrier runner, the retry helper, forced interleavings and lost acks."""

from __future__ import annotations


import psycopg
import pytest

from labs.tools.stress import (HookedConnection, LostAck, backoff_delay, count_statements, interleave,
                         retry, run_stress)

from .scratch import scratch_database


@pytest.fixture(scope="module")
def url():
    with scratch_database("test_sess_stress") as database_url:
        yield database_url


@pytest.fixture
def counter(url):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS counter; CREATE TABLE counter (id int PRIMARY KEY, "
                     "n int NOT NULL); INSERT INTO counter VALUES (1, 0)")
    return url


def value(url):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT n FROM counter WHERE id = 1").fetchone()[0]


def read_modify_write(conn):
    (n,) = conn.execute("SELECT n FROM counter WHERE id = 1").fetchone()
    conn.execute("UPDATE counter SET n = %s WHERE id = 1", [n + 1])
    conn.commit()


def atomic(conn):
    conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
    conn.commit()


def test_run_stress_counts_every_operation(counter):
    """workers × operations calls, all ok, and the atomic increment loses nothing."""
    result = run_stress(counter, atomic, workers=4, operations=50)
    assert result.outcomes == {"ok": 200}
    assert value(counter) == 200
    assert result.throughput > 0 and result.samples


def test_run_stress_counts_errors_by_sqlstate(counter):
    """At REPEATABLE READ without retry, conflicting increments fail with 40001, counted."""
    result = run_stress(counter, read_modify_write, workers=4, operations=50,
                        isolation="repeatable read", sample_every=None)
    assert set(result.outcomes) <= {"ok", "40001"}
    assert value(counter) == result.ok  # every committed increment counted once


def test_retry_makes_serializable_increments_all_succeed(counter):
    """The retry helper turns 40001 into a retry; with enough attempts nothing is lost."""
    result = run_stress(counter, retry(read_modify_write, attempts=50), workers=4,
                        operations=25, isolation="serializable", sample_every=None)
    assert result.outcomes == {"ok": 100}
    assert value(counter) == 100


def test_retry_does_not_retry_other_errors(counter):
    """A non-retryable error (here 22012, division by zero) is raised at once."""
    calls = []

    @retry
    def broken(conn):
        calls.append(1)
        conn.execute("SELECT 1 / 0")

    with psycopg.connect(counter) as conn, pytest.raises(psycopg.errors.DivisionByZero):
        broken(conn)
    assert len(calls) == 1


def test_backoff_is_bounded():
    """Full jitter stays within [0, min(max_delay, base * 2**(attempt-1)))."""
    assert all(0 <= backoff_delay(a, 0.01, 0.05) < 0.05 for a in range(1, 20))


def test_interleave_forces_the_lost_update(counter):
    """Held after its read, a read-modify-write loses the other's increment, every time."""
    assert count_statements(counter, read_modify_write) == 3
    for _ in range(3):
        before = value(counter)
        run = interleave(counter, read_modify_write, read_modify_write, pause_after=1)
        assert run.paused and not run.second_blocked and not run.errors
        assert value(counter) == before + 1


def test_interleave_reports_the_second_blocked(counter):
    """Held after a row lock, the second operation waits and both increments survive."""
    def locked(conn):
        conn.execute("SELECT n FROM counter WHERE id = 1 FOR UPDATE")
        conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
        conn.commit()

    before = value(counter)
    run = interleave(counter, locked, locked, pause_after=1)
    assert run.second_blocked and not run.errors
    assert value(counter) == before + 2


def test_hooked_connection_loses_a_commit_ack_after_committing(counter):
    """LostAck is raised after the server committed: the increment is there."""
    before = value(counter)
    with psycopg.connect(counter) as conn:
        flaky = HookedConnection(conn, lose_commit_acks=1)
        with pytest.raises(LostAck):
            atomic(flaky)
        assert isinstance(LostAck("x"), psycopg.OperationalError)
        atomic(flaky)  # only the first ack is lost
    assert value(counter) == before + 2


def test_a_reconnected_worker_keeps_the_runs_isolation_settings_and_name(counter):
    """When an operation breaks its connection, the new one has the run's isolation level,
    settings and application_name (a serializable run never continues at READ COMMITTED)."""
    seen = []

    def probe(conn):
        seen.append(conn.execute(
            "SELECT current_setting('transaction_isolation'), current_setting('lock_timeout'), "
            "current_setting('application_name')").fetchone())
        conn.rollback()
        if len(seen) == 1:
            conn.close()  # the first call loses its connection; the runner must reconnect

    run_stress(counter, probe, workers=1, operations=3, isolation="serializable",
               settings={"lock_timeout": "1234ms"}, sample_every=None)
    assert len(seen) == 3
    assert seen[1] == seen[0] == seen[2], seen
    assert seen[0][0] == "serializable" and seen[0][1] == "1234ms"
