"""labs.course.left_behind and adversarial: the method's shared pieces, on a real server."""

from __future__ import annotations

import datetime as dt
import random

import psycopg
import pytest

from labs.course import adversarial
from labs.course.left_behind import Caller, untouched
from labs.runtime.errors import CheckFailed

from .scratch import scratch_database


@pytest.fixture(scope="module")
def url():
    with scratch_database("test_left_behind") as database_url:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
            conn.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g")
        yield database_url


def test_a_clean_call_passes_and_the_caller_is_not_utc(url):
    """A call that commits and restores nothing it did not change leaves no complaint."""
    with Caller(url) as caller:
        assert caller.zone not in ("UTC", "Etc/UTC", "GMT")
        with caller.conn.transaction():
            caller.conn.execute("UPDATE t SET v = v WHERE id = 1")
        caller.verify("a clean call")


@pytest.mark.parametrize("leave, words", [
    ("open", "transaction still open"),
    ("aborted", "aborted"),
    ("reset", "RESET restores"),
    ("advisory", "holds 1 lock"),
    ("autocommit", "conn.autocommit False → True"),
    ("isolation", "conn.isolation_level"),
    ("row_factory", "conn.row_factory tuple_row → dict_row"),
])
def test_what_a_call_leaves_behind_is_named(url, leave, words):
    """An open or aborted transaction, a RESET setting or a session lock each fail verify()."""
    with Caller(url) as caller:
        conn = caller.conn
        if leave == "open":
            conn.execute("SELECT * FROM t WHERE id = 1 FOR UPDATE")
        elif leave == "aborted":
            with pytest.raises(psycopg.Error):
                conn.execute("SELECT 1/0")
        elif leave == "reset":
            conn.execute("RESET lock_timeout")
            conn.commit()
        elif leave == "autocommit":
            conn.autocommit = True
        elif leave == "isolation":
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        elif leave == "row_factory":
            from psycopg.rows import dict_row

            conn.row_factory = dict_row
        else:
            conn.execute("SELECT pg_advisory_lock(42)")
            conn.commit()
        with pytest.raises(CheckFailed, match=words):
            caller.verify("the call")
        caller.clean()


def test_untouched_names_the_table_an_answer_edited(url):
    """A change to a table the task does not name fails with its row counts."""
    with untouched(url, ["t"]):
        pass
    with pytest.raises(CheckFailed, match="changed t"):
        with untouched(url, ["t"]):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("UPDATE t SET v = 'edited' WHERE id = 3")


def test_adversarial_values_do_what_they_promise():
    """Non-round sizes defeat every small batch size; day edges include the next midnight."""
    r = random.Random(7)
    for _ in range(50):
        n = adversarial.non_round(1000, rand=r)
        assert all(n % b for b in (2, 3, 4, 5, 7, 8, 10, 16, 100, 1000))
    edges = adversarial.day_edges(dt.date(2026, 3, 1))
    assert edges[-1] == dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)
    assert any(e.microsecond == 500_000 for e in edges)
    variants = adversarial.case_variants("Ann.Lee@Example.org", rand=r)
    assert len({v.lower() for v in variants}) == 1 and len(set(variants)) == 3
    order = adversarial.tie_order(5, rand=r)
    assert order not in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0])


def test_verify_leaves_no_transaction_of_its_own(url):
    """Inspecting an autocommit-off connection does not leave it inside a transaction."""
    from psycopg import pq

    with Caller(url) as caller:
        caller.verify("nothing")
        assert caller.conn.info.transaction_status == pq.TransactionStatus.IDLE
        caller.conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")  # first statement
        caller.conn.rollback()


def test_threads_of_a_check_share_its_seed():
    """A thread started by a check draws from the check's seed, not a fresh one."""
    import threading

    token = adversarial.begin(4242)
    try:
        seen = []
        thread = threading.Thread(target=lambda: seen.append(adversarial.current_seed()))
        thread.start()
        thread.join()
        assert seen == [4242]
    finally:
        adversarial.end(token)


def test_a_serializable_transactions_predicate_locks_are_not_held_locks(url):
    """SIReadLocks outlive a SERIALIZABLE commit while others overlap it; they block nobody."""
    with Caller(url) as caller, psycopg.connect(url) as other:
        other.execute("SELECT 1")  # an overlapping transaction keeps the SIReadLocks alive
        caller.conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        caller.conn.execute("SELECT * FROM t WHERE id = 2")
        caller.conn.commit()
        caller.verify("a serializable read")


def test_settings_stored_in_the_catalogue_are_caught(url):
    """ALTER DATABASE … SET, a table's storage parameter and a disabled trigger outlive the
    connection: Caller and untouched both name them; objects created by the answer do not count."""
    from labs.course.left_behind import stored_state, stored_state_changes

    with psycopg.connect(url, autocommit=True) as conn:
        db = conn.execute("SELECT current_database()").fetchone()[0]
        before = stored_state(conn)
        conn.execute("CREATE TABLE lab_new (id int)")  # a new object: not a setting
        assert stored_state_changes(before, stored_state(conn)) == ""
        conn.execute("ALTER TABLE t SET (autovacuum_enabled = off)")
        conn.execute(f'ALTER DATABASE "{db}" SET TimeZone = \'UTC\'')
        said = stored_state_changes(before, stored_state(conn))
        assert "autovacuum_enabled=off" in said and "TimeZone=UTC" in said
        conn.execute("ALTER TABLE t RESET (autovacuum_enabled)")
        conn.execute(f'ALTER DATABASE "{db}" RESET TimeZone')
        conn.execute("DROP TABLE lab_new")
        assert stored_state_changes(before, stored_state(conn)) == ""
        with Caller(url) as caller:
            caller.conn.execute("ALTER TABLE t SET (fillfactor = 70)")
            caller.conn.commit()
            with pytest.raises(CheckFailed, match="every later session"):
                caller.verify("the call")
        conn.execute("ALTER TABLE t RESET (fillfactor)")
        with pytest.raises(CheckFailed, match="every later session"):
            with untouched(url, ["t"]):
                conn.execute("ALTER DATABASE \"%s\" SET work_mem = '1MB'" % db)
        conn.execute(f'ALTER DATABASE "{db}" RESET work_mem')


def test_prepare_threshold_left_on_the_callers_connection_is_caught(url):
    """prepare_threshold = 0 makes every later query of the caller a prepared statement
    (which a transaction-mode pooler breaks): client state, caught like autocommit."""
    with Caller(url) as caller:
        caller.conn.prepare_threshold = 0
        with pytest.raises(CheckFailed, match="prepare_threshold"):
            caller.verify("the call")
        caller.clean()
        caller.verify("clean")
