"""Checks for 05_migrations: adding users.created_at with zero downtime.

Every check runs the learner's code for real, on the challenge database, while
a live workload (``labs.tools.workload``: readers and writers at a steady rate)
keeps querying ``users``, and asserts that no workload query waited longer than
:data:`BUDGET_S` for a lock. That budget is wide on purpose: a zero-downtime
migration keeps lock waits to the lock_timeout it chose (a few hundred ms at
most), while the outage it prevents lasts as long as the longest transaction
or the table rewrite (seconds to minutes at 10 million rows).

The verdicts do not hang on that timing, though: at 5,000 rows a naive
migration is fast too. What tells right from wrong is deterministic evidence:

* q1 (lock_timeout + retries): a reader holds ACCESS SHARE in an open
  transaction; the learner's ``run_ddl`` must fail with ``55P03`` (PostgreSQL:
  ``canceling statement due to lock timeout``) and retry, rather than queue
  (and queue everyone behind it) for as long as the reader lives; then the
  reader never lets go, and ``run_ddl(..., attempts=3)`` must raise, having
  changed nothing. Both calls run on a caller's connection
  (``labs.course.left_behind.Caller``) whose own lock_timeout and
  statement_timeout are not the defaults: they must be as found afterwards
  (RESET is not restore), with no transaction left open.
* q2, q3 (expand, backfill, contract): ``labs.tools.migrations_probe.probe_steps``
  runs each statement while a writer holds ROW EXCLUSIVE, reads the lock it
  queued for from ``pg_locks``, and reads PostgreSQL's DEBUG1 account of
  whether it scanned or rewrote the table. The backfill is judged by the locks
  its statements take: it runs on a caller's connection, recorded statement by
  statement (the table locks it holds after each one), crashed on purpose
  after three commits, while ``RowLockWatch`` holds a few users' rows as the
  application would and reads, when the backfill queues behind one, which
  transaction it is in; the rows each transaction wrote are then counted by
  ``xmin``. Sizes are seeded and not round (a batch size that divides no row
  count, a few planted old users past a gap in the ids), so a last partial
  batch that is never run shows.
* q4 (Alembic): catalogue snapshots compared with ``==``.
* q5 (squawk): the linter's findings, by rule.
"""

from __future__ import annotations

import datetime as dt
import inspect
import random
import re
import time
from collections import Counter
from contextlib import ExitStack
from typing import Any, Callable

import psycopg
from psycopg import pq

from ..course import adversarial as adv
from ..course.checking import CheckFailed, require
from ..course.left_behind import Caller, caller_settings
from ..tools.migrations_probe import (LEGACY_TABLE, WRITE_BLOCKING, Interrupted,
                                      RecordingConnection, RowLockWatch, catalog_snapshot,
                                      events_checksum, evidence_table, migration_script,
                                      original_rows_checksum, prepare, probe_steps, relfilenode,
                                      reset_migration, run_in_thread, snapshot_diff, squawk,
                                      validation)
from ..tools.sessions import Sessions
from ..tools.stress import in_transaction
from ..tools.workload import WRITER_ID_BASE, Workload

BUDGET_S = 1.0  # no workload query may wait longer than this for a lock
PATIENCE_S = 3.0  # how long q1 lets a DDL statement queue before calling it an outage
GIVE_UP_ATTEMPTS = 3  # q1 asks run_ddl for this many attempts while the lock never frees
GIVE_UP_CAP_S = 15.0  # ... and calls it "never gives up" after this long
COLUMN = "created_at"
PROBE_DDL = "ALTER TABLE users ADD COLUMN lock_probe integer"
# The application signs a user up and logs the event in one transaction, so
# now() is the same in both rows: the backfill can be checked on every row.
SIGNUP_WRITES = ("INSERT INTO users (id, name) VALUES (%(id)s, %(name)s)",
                 f"INSERT INTO {LEGACY_TABLE} (user_id, signed_up_at) VALUES (%(id)s, now())")
# Findings of squawk that are about locks and rewrites: fix them, never explain them away.
LOCK_RULES = {"require-lock-timeout", "adding-not-nullable-field", "adding-required-field",
              "adding-field-with-default", "require-concurrent-index-creation",
              "require-concurrent-index-deletion", "constraint-missing-not-valid",
              "changing-column-type", "ban-concurrent-index-creation-in-transaction",
              "disallowed-unique-constraint", "adding-foreign-key-constraint",
              "adding-primary-key-constraint"}

HINTS = {
    "q1": ["Before the ALTER TABLE, run SET lock_timeout = '200ms' on the same connection.",
           "Catch psycopg.errors.LockNotAvailable (SQLSTATE 55P03), sleep a little (more each "
           "time, with jitter) and try again; after `attempts` attempts, re-raise the error.",
           "Read the caller's values first (SELECT current_setting('lock_timeout')) and put them "
           "back with set_config(name, value, false) in a finally: RESET would set the server "
           "default, not the caller's value."],
    "q2": ["Expand with one ALTER TABLE: ADD COLUMN created_at timestamptz (nullable, no "
           "default for existing rows), ALTER COLUMN created_at SET DEFAULT now() for new ones.",
           "Backfill in keyset batches: pick the next batch_size ids after the last one done "
           "whose created_at IS NULL, UPDATE them from signup_events, commit, sleep(pause). "
           "Loop until no row is left: the last batch is usually smaller than batch_size.",
           "Store the last id done in a progress table in the same transaction as the batch, "
           "and start from it: a crash then loses nothing and redoes nothing."],
    "q3": ["ALTER TABLE users ADD CONSTRAINT ... CHECK (created_at IS NOT NULL) NOT VALID, then "
           "VALIDATE CONSTRAINT (scans without blocking writes), then SET NOT NULL (PostgreSQL 12+ "
           "uses the validated CHECK and skips its own scan), then drop the CHECK.",
           "CREATE INDEX CONCURRENTLY users_created_at_idx ON users (created_at)."],
    "q4": ["downgrade_steps['contract'] undoes the contract steps (DROP INDEX CONCURRENTLY IF "
           "EXISTS, ALTER COLUMN ... DROP NOT NULL); downgrade_steps['expand'] drops the column."],
    "q5": ["Run lint(...) in the cell above and read each finding: fix the ones about locks; "
           "for the others, write one sentence each in squawk_explained saying why it is fine."],
}


# --------------------------------------------------------------------------
# helpers


def live_workload(lab: Any) -> Workload:
    """The challenge's workload: two readers, one signing-up writer, 50 queries/s each."""
    return Workload(lab, readers=2, writers=1, rate=50, writes=SIGNUP_WRITES)


def _budget(wl: Workload, what: str) -> float:
    waited = wl.max_lock_wait()
    if waited >= BUDGET_S:
        queued = sum(r.lock_wait > 0 for r in wl.records)
        raise CheckFailed(
            f"While {what} ran, a workload query waited {waited:.2f} s for a lock (budget "
            f"{BUDGET_S:.0f} s): {queued} queries queued behind your migration. Every statement "
            "that takes a strong lock needs a short lock_timeout and retries.", wl.summary())
    return waited


def _column_state(conn: psycopg.Connection) -> tuple[bool, bool]:
    row = conn.execute("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass "
                       "AND attname = %s AND NOT attisdropped", [COLUMN]).fetchone()
    return (row is not None, bool(row and row[0]))


def _outages(evidence: list, what: str) -> None:
    for ev in evidence:
        if ev.error:
            raise CheckFailed(f"PostgreSQL rejected a statement of your {what}: {ev.error}",
                              ev.sql)
    for ev in evidence:
        if ev.outage:
            mode = ev.lock_awaited
            blocked = "every query on users" if ev.blocks_reads else "every INSERT/UPDATE/DELETE"
            fix = ("Build the index with CREATE INDEX CONCURRENTLY." if mode == "ShareLock" else
                   "Make SET NOT NULL provable without a scan: add CHECK (... IS NOT NULL) NOT "
                   "VALID, VALIDATE CONSTRAINT, then SET NOT NULL." if ev.scanned else
                   "Avoid the rewrite: add the column without a volatile default and backfill.")
            raise CheckFailed(
                f"`{' '.join(ev.sql.split())}` takes {mode} on users and then reads the whole "
                f"table under it: {blocked} waits for the full scan (minutes at 10 million rows). "
                + fix, evidence_table(evidence))


def _workload_failed(wl: Workload, what: str) -> None:
    """The application's own queries must keep working: no error while the step ran."""
    failed = wl.errors()
    if failed:
        codes = Counter(r.status for r in failed)
        shown = ", ".join(f"{n}× {code}" for code, n in codes.most_common(3))
        raise CheckFailed(
            f"While {what} ran, {len(failed)} of the application's queries failed ({shown}): "
            "a migration step must never break the application's INSERTs and SELECTs"
            + (" (23502: a NOT NULL column that new rows get no value for; keep its DEFAULT)"
               if "23502" in codes else "") + ".", wl.summary())


def backfill_kwargs(rows: int, rand: random.Random | None = None) -> dict[str, Any]:
    """Batch size and pause the checks use: about 10 batches at tiny scale, 20k rows at most.

    With ``rand`` (the checks pass this run's), the batch size is near that but not round,
    and divides no row count: the last batch is partial, so a backfill that never runs it
    leaves rows NULL.
    """
    batch = around = min(max(rows // 10, 100), 20_000)
    if rand is not None:
        while True:
            batch = adv.non_round(around, rand=rand, spread=0.25)
            if rows % batch:
                break
    return {"batch_size": batch, "pause": 0.005}


# --------------------------------------------------------------------------
# q1: the lock queue, prevented


def _caller(lab: Any) -> Caller:
    """The connection run_ddl gets: autocommit, and its caller's own, non-default timeouts."""
    r = adv.rng()
    settings = caller_settings()
    settings["lock_timeout"] = f"{r.randint(2, 9)}min"  # seeded: no hard-coded value restores it
    settings["statement_timeout"] = f"{r.randint(11, 19)}min"
    return Caller(lab, autocommit=True, settings=settings)


def _shown(value: str, unit: str | None) -> str:
    """A setting as SET would take it: 300000 (ms) → 5min, 200 (ms) → 200ms, 0 → 0."""
    if unit == "ms" and value.isdigit() and value != "0":
        ms = int(value)
        for size, name in ((3_600_000, "h"), (60_000, "min"), (1000, "s")):
            if ms % size == 0:
                return f"{ms // size}{name}"
        return f"{ms}ms"
    return f"{value}{unit}" if unit and value not in ("0", "-1") else value


def _left_as_found(caller: Caller, what: str) -> None:
    """Fail unless the call left the caller's connection idle, unlocked, with its settings."""
    conn = caller.conn
    if conn.closed or conn.broken or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        caller.verify(what)
    now = {name: (setting, unit, reset) for name, setting, unit, reset in conn.execute(
        "SELECT name, setting, unit, reset_val FROM pg_settings").fetchall()}
    changed = sorted(k for k in caller.found if k in now and now[k][0] != caller.found[k]
                     and k != "transaction_isolation")
    if changed:
        reset = [k for k in changed if now[k][0] == now[k][2]]
        left = [k for k in changed if k not in reset]
        had = ", ".join(f"{k} = {_shown(caller.found[k], now[k][1])}" for k in changed)
        parts = []
        if left:
            parts.append(f"{what} left " + ", ".join(
                f"{k} = {_shown(now[k][0], now[k][1])}" for k in left) + " on the connection")
        if reset:
            parts.append(f"{what} put " + ", ".join(
                f"{k} back to the server default ({_shown(now[k][0], now[k][1])})" for k in reset)
                + ": RESET (or SET … TO DEFAULT) restores the server's default, not the "
                "caller's value")
        raise CheckFailed(
            "; ".join(parts) + f". The caller had {had}. SET lasts for the whole session: "
            "whoever uses the connection next inherits it, and Alembic runs every revision on "
            "one connection (a 200 ms lock_timeout left by the expand step makes the "
            "backfill's VACUUM time out behind an autovacuum). Save the caller's values with "
            "current_setting() and put them back with set_config() in a finally.",
            f"settings before: {had}")
    caller.verify(what)


def _accepts_attempts(run_ddl: Callable[..., Any]) -> None:
    try:
        inspect.signature(run_ddl).bind(None, PROBE_DDL, attempts=GIVE_UP_ATTEMPTS)
    except TypeError:
        raise CheckFailed(
            "run_ddl must accept the number of attempts as a keyword argument, "
            "`def run_ddl(conn, statement, attempts=30)`: the check asks it for "
            f"attempts={GIVE_UP_ATTEMPTS} to see it give up.") from None
    except ValueError:  # no signature to read (a builtin): the call itself will tell
        pass


def _lock_probe_exists(lab: Any) -> bool:
    with lab.connect(autocommit=True) as c:
        return bool(c.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = "
                              "'users'::regclass AND attname = 'lock_probe' "
                              "AND NOT attisdropped").fetchone()[0])


def _drop_lock_probe(lab: Any) -> None:
    with lab.connect(autocommit=True) as c:
        c.execute("ALTER TABLE users DROP COLUMN IF EXISTS lock_probe")


def _chain_has_lock_timeout(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, psycopg.Error) and exc.sqlstate == "55P03":
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _succeeds_after_reader(lab: Any, wl: Workload, s: Sessions, caller: Caller,
                           conn: RecordingConnection, run_ddl: Callable[..., Any]) -> int:
    """A reader holds ACCESS SHARE, then commits: run_ddl must time out, retry, succeed."""
    s.reader("BEGIN")
    s.reader("SELECT count(*) FROM users WHERE id < 100")  # holds ACCESS SHARE on users
    with wl.step("run_ddl while a reader holds ACCESS SHARE", caller.conn):
        thread, box = run_in_thread(run_ddl, conn, PROBE_DDL)
        deadline = time.monotonic() + PATIENCE_S
        while (thread.is_alive() and len(conn.errors("55P03")) < 2
               and time.monotonic() < deadline):
            time.sleep(0.01)
        timeouts = len(conn.errors("55P03"))
        still_waiting = thread.is_alive()
        wl.mark("reader commits")
        s.reader("COMMIT")
        thread.join(60)
    if timeouts == 0 and still_waiting:
        raise CheckFailed(
            f"Your ALTER TABLE queued behind a reader's open transaction for {PATIENCE_S:.0f} s "
            "without giving up (it would wait as long as that transaction lasts), and every "
            "query on users queued behind it: the lock-queue outage. SET lock_timeout before "
            "the DDL, so it fails with 'canceling statement due to lock timeout', and retry.",
            wl.summary())
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, psycopg.Error) and exc.sqlstate == "55P03":
            raise CheckFailed(
                f"Your run_ddl gave up after {timeouts} lock timeout(s); it must retry (with a "
                "pause) until the lock is free, so the migration completes once the reader "
                "commits.", str(exc).splitlines()[0])
        raise exc  # the learner's own error: labs.check reports it as "your answer raised"
    if thread.is_alive():
        raise CheckFailed("Your run_ddl did not finish within 60 s of the reader committing.")
    if not _lock_probe_exists(lab):
        raise CheckFailed("run_ddl returned, but the column it was given to add does not exist: "
                          "it must run the statement it is given (and succeed).")
    _left_as_found(caller, "run_ddl")
    return timeouts


def _gives_up(lab: Any, wl: Workload, s: Sessions, caller: Caller,
              conn: RecordingConnection, run_ddl: Callable[..., Any]) -> int:
    """The reader never commits: run_ddl(..., attempts=3) must raise and change nothing."""
    _drop_lock_probe(lab)
    with lab.connect(autocommit=True) as c:
        schema = catalog_snapshot(c)
    s.reader("BEGIN")
    s.reader("SELECT count(*) FROM users WHERE id < 100")
    mark = len(conn.statements)
    with wl.step(f"run_ddl(attempts={GIVE_UP_ATTEMPTS}) while the reader never commits",
                 caller.conn):
        thread, box = run_in_thread(lambda: run_ddl(conn, PROBE_DDL, attempts=GIVE_UP_ATTEMPTS))
        thread.join(GIVE_UP_CAP_S)
        gave_up = not thread.is_alive()
        wl.mark("reader commits")
        s.reader("COMMIT")
        thread.join(60)
    tries = sum(1 for st in conn.statements[mark:] if st.sqlstate == "55P03")
    with lab.connect(autocommit=True) as c:
        changed = catalog_snapshot(c) != schema
    _drop_lock_probe(lab)
    if not gave_up:
        raise CheckFailed(
            f"Asked for attempts={GIVE_UP_ATTEMPTS} while the reader kept its lock, your run_ddl "
            f"was still retrying after {GIVE_UP_CAP_S:.0f} s ({tries} lock timeouts): it must "
            "stop after `attempts` attempts and raise, so the deploy stops and someone looks at "
            "the transaction in the way.")
    if "error" not in box:
        raise CheckFailed(
            f"Asked for attempts={GIVE_UP_ATTEMPTS} while the reader kept its lock, your run_ddl "
            f"gave up silently: after {tries} lock timeout(s) it returned {box.get('result')!r} "
            "without an error, and the statement never ran. Whoever called it (Alembic, a "
            "deploy script) carries on as if the column existed. After the last attempt, raise "
            "(re-raise the last LockNotAvailable).")
    exc = box["error"]
    if not _chain_has_lock_timeout(exc) and (
            isinstance(exc, (psycopg.Error, TypeError, NameError, AttributeError, KeyError,
                             IndexError, ZeroDivisionError)) or not isinstance(exc, Exception)):
        raise CheckFailed(
            f"When the lock never freed, your run_ddl raised {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''} instead of giving up on the lock "
            "timeout: after the last attempt, re-raise the LockNotAvailable (55P03).")
    if tries > GIVE_UP_ATTEMPTS + 1:
        raise CheckFailed(
            f"Asked for attempts={GIVE_UP_ATTEMPTS}, your run_ddl tried {tries} times: the "
            "number of attempts must be bounded by its `attempts` argument.")
    if changed:
        raise CheckFailed("Your run_ddl gave up on the lock, yet the schema of users changed: a "
                          "statement that failed must leave nothing behind.")
    _left_as_found(caller, "run_ddl, giving up,")
    return tries


def q1(lab: Any, run_ddl: Callable[..., Any]) -> str:
    """run_ddl(conn, statement, attempts) gives up on a lock within the budget and retries
    until it succeeds; when the lock never frees it raises; the caller's connection is left
    as found either way."""
    require(run_ddl)
    _drop_lock_probe(lab)
    wl = live_workload(lab)
    with ExitStack() as stack:
        caller = stack.enter_context(_caller(lab))
        conn = RecordingConnection(caller.conn)
        stack.callback(_drop_lock_probe, lab)
        with wl, Sessions(lab, "reader", application_name="lab check") as s:
            timeouts = _succeeds_after_reader(lab, wl, s, caller, conn, run_ddl)
            _accepts_attempts(run_ddl)
            tries = _gives_up(lab, wl, s, caller, conn, run_ddl)
    _workload_failed(wl, "run_ddl")
    waited = _budget(wl, "run_ddl")
    return (f"gave up {timeouts} times with 55P03 while the reader held its lock, then "
            f"succeeded; raised after {tries} attempts when it never freed; caller's settings "
            f"kept; longest workload lock wait {waited * 1000:.0f} ms")


# --------------------------------------------------------------------------
# q2: expand and backfill


def _plant_users(lab: Any) -> list[int]:
    """A few old users past gaps in the ids, sign-up times at fractions of a second.

    A backfill that pages by ``count(*)`` (ids 1..N) or stops at the old maximum
    misses them; their times sit around a month boundary, to the microsecond.
    """
    r = adv.rng()
    with lab.connect(autocommit=True) as c:
        top = c.execute("SELECT coalesce(max(id), 0) FROM users WHERE id < %s",
                        [WRITER_ID_BASE]).fetchone()[0]
        ids, nxt = [], top
        for _ in range(r.randint(3, 6)):
            nxt += r.randint(2, 400)
            ids.append(nxt)
        edge = dt.datetime(r.randint(2020, 2024), r.randint(1, 12), 1, tzinfo=dt.timezone.utc)
        times = adv.instants_around(edge)
        with c.transaction():
            for i, user_id in enumerate(ids):
                c.execute("INSERT INTO users (id, name) VALUES (%s, %s)",
                          [user_id, f"planted user {user_id}"])
                c.execute(f"INSERT INTO {LEGACY_TABLE} (user_id, signed_up_at) VALUES (%s, %s)",
                          [user_id, times[i % len(times)]])
    return ids


def _unplant_users(lab: Any, ids: list[int]) -> None:
    with lab.connect(autocommit=True) as c, c.transaction():
        c.execute(f"DELETE FROM {LEGACY_TABLE} WHERE user_id = ANY(%s)", [ids])
        c.execute("DELETE FROM users WHERE id = ANY(%s)", [ids])


def _held_rows(c: psycopg.Connection) -> list[int]:
    """Users the application holds during the backfill: the first and last by id and by
    position in the table, and one at random, so every order of work meets one late."""
    rows = c.execute(f"""
        (SELECT id FROM users WHERE id < {WRITER_ID_BASE} ORDER BY id LIMIT 1)
        UNION (SELECT id FROM users WHERE id < {WRITER_ID_BASE} ORDER BY id DESC LIMIT 1)
        UNION (SELECT id FROM users WHERE id < {WRITER_ID_BASE} ORDER BY ctid LIMIT 1)
        UNION (SELECT id FROM users WHERE id < {WRITER_ID_BASE} ORDER BY ctid DESC LIMIT 1)
        """).fetchall()
    ids = sorted(r[0] for r in rows)
    pick = adv.rng().randint(ids[0], ids[-1])
    extra = c.execute(f"SELECT id FROM users WHERE id >= %s AND id < {WRITER_ID_BASE} "
                      "ORDER BY id LIMIT 1", [pick]).fetchone()
    return sorted(set(ids) | ({extra[0]} if extra else set()))


class _TableLocks:
    """After each statement of the backfill, its locks on users (read from pg_locks)."""

    def __init__(self, lab: Any) -> None:
        self.monitor = psycopg.connect(lab.url, autocommit=True)
        self.seen: list[tuple[str, str]] = []  # (mode, statement)

    def hook(self, raw: psycopg.Connection) -> Callable[[Any], None]:
        pid = raw.info.backend_pid

        def after(statement: Any) -> None:
            if not in_transaction(raw):
                return  # autocommit: its locks went with its own transaction
            for (mode,) in self.monitor.execute(
                    "SELECT mode FROM pg_locks WHERE pid = %s AND locktype = 'relation' "
                    "AND relation = 'users'::regclass AND granted", [pid]).fetchall():
                if mode in WRITE_BLOCKING:
                    self.seen.append((mode, f"after `{' '.join(statement.sql.split())[:120]}`"))
        return after

    def close(self) -> None:
        self.monitor.close()


def _expand(lab: Any, wl: Workload, expand_steps: list[str], before: tuple[int, str],
            node: int) -> None:
    with wl.step("expand"):
        evidence = probe_steps(lab, expand_steps)
    _outages(evidence, "expand steps")
    with lab.connect(autocommit=True) as c:
        exists, notnull = _column_state(c)
        if not exists:
            raise CheckFailed(f"After your expand steps users has no column {COLUMN}.")
        kind = c.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                         "attrelid = 'users'::regclass AND attname = %s", [COLUMN]).fetchone()[0]
        if kind != "timestamp with time zone":
            raise CheckFailed(
                f"users.{COLUMN} is {kind}, not timestamptz: an instant stored without its "
                "zone is read back in whatever TimeZone the session has (a backfill run from "
                "a session in America/St_Johns shifts every user by 3½ hours). Add it as "
                "timestamptz.")
        if relfilenode(c) != node:
            raise CheckFailed("Your expand steps rewrote users (its relfilenode changed): "
                              "a volatile default, or a type change, copies every row under "
                              "ACCESS EXCLUSIVE.", evidence_table(evidence))
        stamped = c.execute(f"SELECT count(*) FROM users WHERE id < {WRITER_ID_BASE} "
                            f"AND {COLUMN} IS NOT NULL").fetchone()[0]
        if stamped or notnull:
            raise CheckFailed(
                f"Your expand step gave the {before[0]:,} existing users a value"
                + (" and made the column NOT NULL" if notnull else "")
                + ": a default in ADD COLUMN is evaluated once, at ALTER time, so every "
                "existing user 'signed up' at the migration's moment. Add the column "
                "nullable, SET DEFAULT now() for new rows, backfill the old ones from "
                f"{LEGACY_TABLE}, and add NOT NULL only after the backfill (q3).",
                f"{stamped} existing rows have {COLUMN} set")
        _new_rows_get_now(c, "expand steps")


def _new_rows_get_now(c: psycopg.Connection, what: str) -> None:
    """An application INSERT without created_at must work and get now() (rolled back)."""
    c.execute("BEGIN")
    try:
        c.execute("INSERT INTO users (id, name) VALUES (%s, 'check')", [WRITER_ID_BASE - 1])
        default_ok = c.execute(f"SELECT {COLUMN} = now() FROM users WHERE id = %s",
                               [WRITER_ID_BASE - 1]).fetchone()[0]
    except psycopg.Error as exc:
        c.execute("ROLLBACK")
        raise CheckFailed(f"After your {what}, the application's INSERT of a user without "
                          f"{COLUMN} fails: {exc.diag.message_primary or exc}. Keep "
                          f"ALTER COLUMN {COLUMN} SET DEFAULT now().") from None
    c.execute("ROLLBACK")
    if not default_ok:
        raise CheckFailed(f"After your {what}, a user inserted without {COLUMN} does not get "
                          "now(): new rows need ALTER COLUMN created_at SET DEFAULT now().")


def _biggest_transaction(watch: RowLockWatch, recorded: list[int],
                         c: psycopg.Connection) -> tuple[int, str]:
    """The most users one transaction of the backfill wrote, and how that was seen."""
    found = [(0, "")]
    for w in watch.waits:
        found.append((w.rows, f"when it queued behind user {w.key}, held by the application, "
                      f"{w.rows_held:,} users were locked by its still-open transaction, and "
                      f"that transaction (xids {', '.join(w.xids[:6])}) wrote "
                      f"{w.rows_written:,} users in the end"))
    if recorded:
        found.append((max(recorded), f"rows per committed transaction, as sent: {recorded[:10]}"))
    row = c.execute(f"SELECT count(*) FROM users WHERE id < {WRITER_ID_BASE} AND {COLUMN} IS "
                    "NOT NULL GROUP BY xmin ORDER BY 1 DESC LIMIT 1").fetchone()
    if row:
        found.append((row[0], f"{row[0]:,} users carry the same xmin (written by one "
                              "transaction)"))
    return max(found, key=lambda f: f[0])


def q2(lab: Any, expand_steps: list[str], backfill: Callable[..., Any]) -> str:
    """Expand without a rewrite or a scan; backfill in committed, throttled, resumable batches,
    judged by the locks its transactions take."""
    require(expand_steps, backfill)
    prepare(lab)
    reset_migration(lab, COLUMN)
    with ExitStack() as stack:
        planted = _plant_users(lab)
        stack.callback(_unplant_users, lab, planted)
        with lab.connect(autocommit=True) as c:
            before = original_rows_checksum(c)
            events = events_checksum(c)
            node = relfilenode(c)
        kwargs = backfill_kwargs(before[0], adv.rng())
        batch = kwargs["batch_size"]
        table_locks = _TableLocks(lab)
        stack.callback(table_locks.close)
        wl = live_workload(lab)
        with wl:
            _expand(lab, wl, expand_steps, before, node)
            with lab.connect(autocommit=True) as c:
                held = _held_rows(c)
            with RowLockWatch(lab, held) as watch:
                # first run, interrupted after three committed batches: a crash or a deploy
                with _caller(lab) as caller:
                    first = RecordingConnection(caller.conn, interrupt_after_commits=3,
                                                on_statement=table_locks.hook(caller.conn))
                    t0 = time.perf_counter()
                    with wl.step("backfill (crashes)", caller.conn):
                        try:
                            backfill(first, **kwargs)
                        except Interrupted:
                            pass
                    first_seconds = time.perf_counter() - t0
                # the crash took the connection with it; a new process resumes
                with lab.connect(autocommit=True) as c:
                    done_xmin = dict(c.execute(
                        f"SELECT id, xmin::text FROM users WHERE id < {WRITER_ID_BASE} "
                        f"AND {COLUMN} IS NOT NULL").fetchall())
                caller = stack.enter_context(_caller(lab))
                second = RecordingConnection(caller.conn,
                                             on_statement=table_locks.hook(caller.conn))
                t0 = time.perf_counter()
                with wl.step("backfill (resumed)", caller.conn):
                    backfill(second, **kwargs)
                second_seconds = time.perf_counter() - t0
                zone = caller.zone
                _left_as_found(caller, "the resumed backfill")
            if watch.error is not None:
                raise RuntimeError(f"the row-lock watch failed: {watch.error}")
        sampled = sorted({(mode, f"during the {s.label}") for s in wl.steps
                          if s.label.startswith("backfill") for rel, mode, _ in s.locks
                          if rel == "users" and mode in WRITE_BLOCKING})
        seen = [(mode, f"while it queued behind user {w.key}, held by the application")
                for w in watch.waits for mode, _ in w.table_locks if mode in WRITE_BLOCKING]
        locked = table_locks.seen + seen + sampled
        if locked:
            mode, where = locked[0]
            raise CheckFailed(
                f"Your backfill locks the whole users table ({mode}, seen in pg_locks "
                f"{where}): while it holds that lock every INSERT, UPDATE and DELETE of the "
                "application waits, batch after batch. A batch needs only the row locks its "
                "UPDATE takes (ROW EXCLUSIVE on the table, which blocks nobody): drop the LOCK "
                "TABLE.", "; ".join(f"{m} {w}" for m, w in locked[:5]))
        with lab.connect(autocommit=True) as c:
            biggest, how = _biggest_transaction(watch, first.txn_rows + second.txn_rows, c)
            if biggest > 2 * batch + 10:
                raise CheckFailed(
                    f"Your backfill changed {biggest:,} users in one transaction (asked for "
                    f"batches of {batch:,}): it holds a row lock on every one of them until it "
                    "commits, so any application UPDATE of those users waits for the whole "
                    "run; it bloats the table and WAL at once and loses everything on a crash. "
                    "Commit after each batch (one short transaction per batch).", how)
            if not (first.commits + second.commits) and not watch.waits:
                raise CheckFailed("Your backfill committed nothing on the connection it was "
                                  "given: run its batches on `conn` and commit each one.")
            v = validation(c, COLUMN)
            after = original_rows_checksum(c)
            events_after = events_checksum(c)
            redone = sum(1 for i, x in c.execute(
                "SELECT id, xmin::text FROM users WHERE id = ANY(%s)",
                [list(done_xmin)]).fetchall() if done_xmin[i] != x)
            # planted users past the gap left NULL while the user just before the gap is done
            missed = c.execute(f"""
                SELECT count(*) FILTER (WHERE id = ANY(%s) AND {COLUMN} IS NULL)
                       * bool_or(id = (SELECT max(id) FROM users WHERE id < %s)
                                 AND {COLUMN} IS NOT NULL)::int
                FROM users WHERE id <= %s""", [planted, min(planted), max(planted)]).fetchone()[0]
            null_ids = [r[0] for r in c.execute(
                f"SELECT id FROM users WHERE {COLUMN} IS NULL ORDER BY id LIMIT 4").fetchall()]
        if events_after != events:
            raise CheckFailed(
                f"Your backfill changed {LEGACY_TABLE}, the sign-up log it must only read: the "
                f"check compares users.{COLUMN} with it, and the application's history with it.",
                f"{events} → {events_after}")
        if v["nulls"]:
            hint = (f" Fewer than a batch is missing: the last batch is partial ({before[0]:,} "
                    f"old users, batches of {batch:,}), so loop until no NULL is left, not for a "
                    "fixed number of full batches or over a range of ids computed up front."
                    if v["nulls"] < batch else "")
            if missed:
                hint += (f" {missed} of them sit past a gap in the ids: page by the ids that "
                         "exist (keyset: id > the last one done), not by count(*).")
            raise CheckFailed(
                f"After the interrupted backfill and its resumption, {v['nulls']:,} users still "
                f"have {COLUMN} NULL (ids {', '.join(map(str, null_ids))}"
                f"{', …' if v['nulls'] > len(null_ids) else ''}): a second run must pick up "
                "everything the first left undone." + hint, str(v))
        if v["wrong_backfill"]:
            raise CheckFailed(
                f"{v['wrong_backfill']:,} users have a {COLUMN} other than their "
                f"{LEGACY_TABLE}.signed_up_at: copy each user's own instant, timestamptz to "
                "timestamptz (no AT TIME ZONE, no text or date in between: the backfill ran on "
                f"a session whose TimeZone is {zone}).", str(v))
        if after != before:
            raise CheckFailed("The backfill changed the id or name of existing users (their "
                              "checksum differs); it must only set created_at.",
                              f"{before} → {after}")
        if redone:
            raise CheckFailed(f"The resumed backfill rewrote {redone:,} rows the first run had "
                              "already done: resume from where it stopped (a progress row "
                              "committed with each batch, or WHERE created_at IS NULL).")
        commits = first.commits + second.commits
        floor = (commits - 2) * kwargs["pause"]
        if first_seconds + second_seconds < floor:
            raise CheckFailed(f"Your backfill committed {commits} batches in "
                              f"{first_seconds + second_seconds:.3f} s: it must sleep `pause` "
                              "seconds between batches, so vacuum and replicas keep up.")
        _workload_failed(wl, "the expand and backfill")
        waited = _budget(wl, "the expand and backfill")
    return (f"expand without rewrite or scan; {commits} batches of ≤ {batch:,} rows, each its "
            f"own short transaction (checked at {len(watch.waits)} rows the application held), "
            f"resumed after a crash without redoing work; longest workload lock wait "
            f"{waited * 1000:.0f} ms")


# --------------------------------------------------------------------------
# q3: contract


def undo_contract(lab: Any) -> None:
    """Back to the state after the backfill, so q3 can run again (all instant)."""
    reset_index = """
        SELECT i.indexrelid::regclass::text FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = 'users'::regclass AND a.attname = %s"""
    with lab.connect(autocommit=True) as c:
        for (name,) in c.execute(reset_index, [COLUMN]).fetchall():
            c.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        for (name,) in c.execute("""SELECT quote_ident(conname) FROM pg_constraint
                WHERE conrelid = 'users'::regclass AND contype = 'c'
                AND pg_get_constraintdef(oid) LIKE %s""", [f"%{COLUMN}%"]).fetchall():
            c.execute(f"ALTER TABLE users DROP CONSTRAINT {name}")
        c.execute(f"ALTER TABLE users ALTER COLUMN {COLUMN} DROP NOT NULL")


def q3(lab: Any, contract_steps: list[str]) -> str:
    """NOT NULL and the index without a long lock: each step blocks writers only for an instant."""
    require(contract_steps)
    with lab.connect(autocommit=True) as c:
        exists, _ = _column_state(c)
        nulls = c.execute(f"SELECT count(*) FROM users WHERE {COLUMN} IS NULL").fetchone()[0] \
            if exists else None
    if not exists or nulls:
        raise CheckFailed("The contract needs the expanded and backfilled column: run the check "
                          "of exercise 2 first (it runs your expand and backfill).",
                          f"column exists: {exists}; NULLs: {nulls}")
    undo_contract(lab)
    with lab.connect(autocommit=True) as c:
        before = original_rows_checksum(c)
        events = events_checksum(c)
    wl = live_workload(lab)
    with wl:
        with wl.step("contract"):
            evidence = probe_steps(lab, contract_steps)
    _outages(evidence, "contract steps")
    with lab.connect(autocommit=True) as c:
        _, notnull = _column_state(c)
        v = validation(c, COLUMN)
        indexed = c.execute("""
            SELECT count(*) FROM pg_index i JOIN pg_attribute a
              ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = 'users'::regclass AND a.attname = %s AND i.indisvalid
              AND i.indpred IS NULL""", [COLUMN]).fetchone()[0]
        after = original_rows_checksum(c)
        events_after = events_checksum(c)
        if v.get("nulls") is None:
            raise CheckFailed(f"Your contract steps dropped users.{COLUMN}.")
        _new_rows_get_now(c, "contract steps")
    if after != before or events_after != events or v["wrong_backfill"]:
        raise CheckFailed(
            f"Your contract steps changed data: the contract only adds constraints and an "
            f"index; users' id, name and {COLUMN}, and {LEGACY_TABLE}, must stay as the "
            "backfill left them.", f"users {before} → {after}; {LEGACY_TABLE} {events} → "
            f"{events_after}; wrong backfills {v['wrong_backfill']}")
    if not notnull:
        raise CheckFailed(f"After your contract steps users.{COLUMN} is still nullable "
                          "(pg_attribute.attnotnull is false): finish with SET NOT NULL.")
    if v["unvalidated_constraints"]:
        raise CheckFailed("A constraint on users is still NOT VALID (pg_constraint.convalidated "
                          "is false): run ALTER TABLE users VALIDATE CONSTRAINT.",
                          str(v["unvalidated_constraints"]))
    if v["invalid_indexes"]:
        raise CheckFailed("An index on users is INVALID (pg_index.indisvalid is false), left by "
                          "a failed concurrent build: drop it concurrently and build it again.",
                          str(v["invalid_indexes"]))
    if not indexed:
        raise CheckFailed(f"No valid index on users starts with {COLUMN} (a partial index does "
                          "not count): add CREATE INDEX CONCURRENTLY users_created_at_idx ON "
                          "users (created_at).")
    if not any(ev.proved_not_null for ev in evidence):
        raise CheckFailed("SET NOT NULL did not use a validated CHECK constraint to skip its "
                          "scan.", evidence_table(evidence))
    _workload_failed(wl, "the contract steps")
    waited = _budget(wl, "the contract steps")
    return (f"NOT NULL proved from a validated CHECK, index built concurrently, nothing "
            f"scanned under a write-blocking lock; longest workload lock wait "
            f"{waited * 1000:.0f} ms")


# --------------------------------------------------------------------------
# q4: Alembic, upgrade → downgrade → upgrade


def q4(lab: Any, run_ddl: Callable[..., Any], expand_steps: list[str],
       backfill: Callable[..., Any], contract_steps: list[str],
       downgrade_steps: dict[str, list[str]]) -> str:
    """Alembic upgrade → downgrade → upgrade under the workload; catalogue and data as expected."""
    require(run_ddl, expand_steps, backfill, contract_steps, downgrade_steps)
    from ..tools.migrations_alembic import Plan, downgrade, upgrade

    if not isinstance(downgrade_steps, dict) or set(downgrade_steps) != {"expand", "contract"}:
        raise CheckFailed("downgrade_steps must be a dict with the keys 'contract' and 'expand' "
                          "(the statements that undo each revision).")
    prepare(lab)
    reset_migration(lab, COLUMN)
    with lab.connect(autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS alembic_version")
        base = catalog_snapshot(c)
        before = original_rows_checksum(c)
        events = events_checksum(c)
    plan = Plan(run_ddl, expand_steps, backfill, contract_steps, downgrade_steps,
                backfill_kwargs(before[0], adv.rng()))
    wl = live_workload(lab)
    with wl:
        with wl.step("alembic upgrade head"):
            upgrade(lab, plan)
        with lab.connect(autocommit=True) as c:
            head = catalog_snapshot(c)
            v_head = validation(c, COLUMN)
        with wl.step("alembic downgrade base"):
            downgrade(lab, plan)
        with lab.connect(autocommit=True) as c:
            down = catalog_snapshot(c)
        with wl.step("alembic upgrade head again"):
            upgrade(lab, plan)
        with lab.connect(autocommit=True) as c:
            again = catalog_snapshot(c)
            v_again = validation(c, COLUMN)
            after = original_rows_checksum(c)
            events_after = events_checksum(c)
    if down != base:
        raise CheckFailed("`alembic downgrade base` does not restore the schema users had "
                          "before the upgrade.", "; ".join(snapshot_diff(base, down)))
    if again != head:
        raise CheckFailed("Upgrading again after the downgrade gives a different schema than the "
                          "first upgrade.", "; ".join(snapshot_diff(head, again)))
    for v in (v_head, v_again):
        if v.get("nulls") or v.get("wrong_backfill") or v["unvalidated_constraints"] \
                or v["invalid_indexes"]:
            raise CheckFailed("After `alembic upgrade head` the data does not validate.", str(v))
        if v.get("nulls") is None:
            raise CheckFailed(f"After `alembic upgrade head` users has no column {COLUMN}.")
    if after != before:
        raise CheckFailed("The migration changed the id or name of existing users.",
                          f"{before} → {after}")
    if events_after != events:
        raise CheckFailed(f"The migration changed {LEGACY_TABLE}, which it must only read.",
                          f"{events} → {events_after}")
    if not any(r[2] for r in head["columns"] if r[0] == COLUMN):
        raise CheckFailed(f"After `alembic upgrade head` users.{COLUMN} is nullable.")
    _workload_failed(wl, "the Alembic upgrade, downgrade and upgrade")
    waited = _budget(wl, "the Alembic upgrade, downgrade and upgrade")
    return (f"upgrade → downgrade → upgrade: catalogue restored and identical, data valid; "
            f"longest workload lock wait {waited * 1000:.0f} ms")


# --------------------------------------------------------------------------
# q5: squawk


def session_settings(conn: Any) -> dict[str, str]:
    """Every setting's effective value in this session, by name (to spot a leaked SET)."""
    return dict(conn.execute("SELECT name, setting FROM pg_settings").fetchall())


def preamble_of(lab: Any, run_ddl: Callable[..., Any]) -> list[str]:
    """The SETs run_ddl sends before the one statement it was given, recorded live."""
    marker = "SELECT 'run_ddl marker'"
    with lab.connect(autocommit=True) as raw:
        conn = RecordingConnection(raw)
        run_ddl(conn, marker)
    texts = [s.sql for s in conn.statements]
    before = texts[:texts.index(marker)] if marker in texts else []
    return [t for t in before if re.match(r"\s*SET\b", t, re.IGNORECASE)]


def lint(lab: Any, run_ddl: Callable[..., Any], expand_steps: list[str],
         contract_steps: list[str], downgrade_steps: dict[str, list[str]]) -> tuple[str, list]:
    """The migration as one SQL file (run_ddl's settings first) and squawk's findings on it."""
    statements = list(expand_steps) + list(contract_steps)
    if isinstance(downgrade_steps, dict):
        statements += list(downgrade_steps.get("contract", [])) + list(
            downgrade_steps.get("expand", []))
    script = migration_script(statements, preamble_of(lab, run_ddl))
    return script, squawk(script)


def q5(lab: Any, run_ddl: Callable[..., Any], expand_steps: list[str],
       contract_steps: list[str], downgrade_steps: dict[str, list[str]],
       squawk_explained: dict[str, str]) -> str:
    """squawk finds nothing about locks, and every other finding is explained."""
    require(run_ddl, expand_steps, contract_steps, downgrade_steps, squawk_explained)
    if not isinstance(squawk_explained, dict):
        raise CheckFailed("squawk_explained must be a dict from each rule name squawk reports "
                          "to one sentence saying why it is acceptable here.")
    script, findings = lint(lab, run_ddl, expand_steps, contract_steps, downgrade_steps)
    locking = [f for f in findings if f.rule in LOCK_RULES]
    if locking:
        f = locking[0]
        raise CheckFailed(f"squawk: {f.message} [{f.rule}] at `{f.statement}`. That finding is "
                          "about locks or rewrites: fix the migration, do not explain it away.",
                          "\n".join(str(x) for x in locking))
    explained = {k: v for k, v in squawk_explained.items() if isinstance(v, str) and
                 len(v.split()) >= 5}
    missing = sorted({f.rule for f in findings} - set(explained))
    if missing:
        raise CheckFailed(f"squawk reports {', '.join(missing)}, which squawk_explained does not "
                          "explain (one sentence each, at least five words, saying why it is "
                          "acceptable here).", "\n".join(str(f) for f in findings))
    return (f"squawk: no lock or rewrite findings; {len(findings)} other findings, each explained")
