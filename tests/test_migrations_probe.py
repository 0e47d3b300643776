"""labs.tools.migrations_probe: reading PostgreSQL's DEBUG1 messages into scan/rewrite evidence,
and the server-side evidence of what a backfill's transactions lock (RowLockWatch, on_statement).

The messages are PostgreSQL's own (src/backend/catalog/index.c, commands/tablecmds.c); the
wording of an index build depends on the table's size, so both forms are covered: a
10-million-row table gets parallel workers, and the probe once called that build
"catalogue only".
"""

from __future__ import annotations

import threading

import psycopg
import pytest

from labs.tools.migrations_probe import (RecordingConnection, RowLockWatch, StepEvidence,
                                         _classify, probe_steps)
from labs.tools.stress import in_transaction

from .scratch import scratch_database


@pytest.mark.parametrize("message, scanned", [
    ('building index "users_nickname_idx" on table "users" serially', True),
    ('building index "users_nickname_idx" on table "users" with request for 2 parallel workers',
     True),
    ('building index "users_archive_idx" on table "users_archive" serially', False),
    ('verifying table "users"', True),
    ('index "users_nickname_idx" can safely use deduplication', False),
])
def test_scans_are_recognised_whatever_the_table_size(message, scanned):
    ev = StepEvidence("CREATE INDEX …", messages=[message])
    _classify(ev, "users")
    assert ev.scanned is scanned


def test_rewrite_and_proof_from_check():
    ev = StepEvidence("ALTER TABLE …", messages=['rewriting table "users"'])
    _classify(ev, "users")
    assert ev.rewrote and not ev.scanned
    ev = StepEvidence("ALTER TABLE … SET NOT NULL", messages=[
        'existing constraints on column "users.nickname" are sufficient to prove that it does '
        'not contain nulls'])
    _classify(ev, "users")
    assert ev.proved_not_null and not ev.scanned


# --------------------------------------------------------------------------
# RowLockWatch and RecordingConnection's on_statement: evidence from the server

ROWS = 120


@pytest.fixture(scope="module")
def database_url():
    with scratch_database("test_migrations_probe") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE users (id bigint PRIMARY KEY, n int)")
            conn.execute("INSERT INTO users SELECT g, 0 FROM generate_series(1, %s) g", [ROWS])
        yield url


def _run(url, work):
    """Run ``work(conn)`` on an autocommit connection in a thread while the watch holds rows."""
    with psycopg.connect(url, autocommit=True) as conn, \
            RowLockWatch(url, [1, ROWS // 2, ROWS]) as watch:
        t = threading.Thread(target=work, args=(conn,))
        t.start()
        t.join(30)
        assert not t.is_alive(), "the watched code was never released"
    return watch


def test_one_transaction_for_the_whole_run_is_counted_whole(database_url):
    """Batches inside one transaction (savepoints) are one transaction: the watch counts all its rows."""
    def work(conn):
        with conn.transaction():
            for lo in range(0, ROWS, 25):
                with conn.transaction():
                    conn.execute("UPDATE users SET n = n + 1 WHERE id > %s AND id <= %s",
                                 [lo, lo + 25])

    watch = _run(database_url, work)
    assert len(watch.waits) == 3 and not watch.held and watch.error is None
    assert max(w.rows for w in watch.waits) >= ROWS - 25


def test_committed_batches_show_one_batch_each(database_url):
    """A batch per transaction: no transaction the watch saw wrote more than a batch."""
    def work(conn):
        for lo in range(0, ROWS, 25):
            with conn.transaction():
                conn.execute("UPDATE users SET n = n + 1 WHERE id > %s AND id <= %s",
                             [lo, lo + 25])

    watch = _run(database_url, work)
    assert len(watch.waits) == 3 and not watch.held
    assert max(w.rows for w in watch.waits) <= 25


def test_a_single_statement_is_seen_from_inside(database_url):
    """One UPDATE of every row, however its rows are counted client-side, is one transaction."""
    def work(conn):
        conn.execute("WITH d AS (UPDATE users SET n = n + 1 RETURNING 1) SELECT count(*) FROM d")

    watch = _run(database_url, work)
    assert watch.waits and max(w.rows for w in watch.waits) == ROWS


def test_on_statement_runs_while_the_transaction_is_open(database_url):
    """The callback sees the table lock a statement took before the transaction ends."""
    seen = []
    with psycopg.connect(database_url, autocommit=True) as raw, \
            psycopg.connect(database_url, autocommit=True) as monitor:
        def after(st):
            if in_transaction(raw):
                seen.extend(m for (m,) in monitor.execute(
                    "SELECT mode FROM pg_locks WHERE pid = %s AND relation = 'users'::regclass",
                    [raw.info.backend_pid]).fetchall())

        conn = RecordingConnection(raw, on_statement=after)
        with conn.transaction():
            conn.execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        conn.execute("SELECT 1")
    assert "ShareRowExclusiveLock" in seen


def test_probe_waits_for_a_transaction_outside_it(database_url):
    """A statement still queued behind an application transaction when the probe's writer
    commits is waited for, not left pending (the next statement would find it blocked)."""
    with psycopg.connect(database_url) as app:
        app.execute("LOCK TABLE users IN ROW EXCLUSIVE MODE")  # an INSERT's transaction, open
        timer = threading.Timer(0.5, app.commit)
        timer.start()
        evidence = probe_steps(database_url, ["ALTER TABLE users ADD COLUMN probe_x int",
                                              "ALTER TABLE users DROP COLUMN probe_x"])
        timer.join()
    assert [e.error for e in evidence] == ["", ""]
    assert evidence[0].lock_awaited == "AccessExclusiveLock"


def test_idle_counts_only_time_with_no_transaction_open(database_url):
    """A pause after the commit is idle time; the same pause inside the transaction is not."""
    import time

    def batches(conn, inside):
        for lo in (0, 25, 50):
            with conn.transaction():
                conn.execute("UPDATE users SET n = n WHERE id > %s AND id <= %s", [lo, lo + 25])
                if inside:
                    time.sleep(0.05)
            if not inside:
                time.sleep(0.05)

    with psycopg.connect(database_url, autocommit=True) as raw:
        outside = RecordingConnection(raw)
        batches(outside, inside=False)
        inside = RecordingConnection(raw)
        batches(inside, inside=True)
    assert outside.commits == inside.commits == 3
    assert outside.idle_outside_transactions() >= 0.09  # two pauses between three batches
    assert inside.idle_outside_transactions() < 0.04


def test_lock_timeout_in_effect_is_read_after_a_lock_timeout(database_url):
    """After a 55P03 on an idle autocommit connection, the lock_timeout it ran with is kept."""
    with psycopg.connect(database_url, autocommit=True) as raw:
        conn = RecordingConnection(raw, read_lock_timeout=True)
        conn.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            conn.execute("DO $$BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '55P03'; END$$")
        raw.execute("RESET lock_timeout")
    assert conn.errors("55P03")[0].lock_timeout == "300ms"


# --------------------------------------------------------------------------
# what rewrites a table (05's section 4 states these; the notebook measures them too)


@pytest.mark.parametrize("statement, rewrites", [
    ("ALTER TABLE nicks ALTER COLUMN nick TYPE varchar(40)", False),  # raise the limit
    ("ALTER TABLE nicks ALTER COLUMN nick TYPE varchar(10)", True),  # lower it: every row copied
    ("ALTER TABLE nicks ALTER COLUMN nick TYPE text USING nick::text", False),  # binary USING
    ("ALTER TABLE nicks ALTER COLUMN nick TYPE text USING lower(nick)", True),
    ("ALTER TABLE nicks ADD CONSTRAINT nick_len CHECK (char_length(nick) <= 10) NOT VALID",
     False),
])
def test_which_type_changes_rewrite_the_table(database_url, statement, rewrites):
    """Shrinking varchar(n) rewrites the table, a binary-coercible USING does not, and the
    safe shrink (CHECK … NOT VALID, then VALIDATE) never does."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS nicks")
        conn.execute("CREATE TABLE nicks (id int, nick varchar(20))")
        conn.execute("INSERT INTO nicks SELECT g, 'n' || g FROM generate_series(1, 50) g")
        node = conn.execute("SELECT pg_relation_filenode('nicks')").fetchone()[0]
        conn.execute(statement)
        if "NOT VALID" in statement:
            conn.execute("ALTER TABLE nicks VALIDATE CONSTRAINT nick_len")
        after = conn.execute("SELECT pg_relation_filenode('nicks')").fetchone()[0]
        conn.execute("DROP TABLE nicks")
    assert (after != node) is rewrites
