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
  (RESET is not restore), with no transaction left open; also after a statement
  that fails otherwise (42701). After each 55P03 the session's lock_timeout is
  read (at most 500 ms on every attempt), and after each DDL that succeeded its
  statement_timeout (0 or at least 5 min). The 42701 must reach the caller at once (one
  attempt). A ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` runs while an application write
  stays open 1-2 s: the index must end VALID (a lock_timeout there leaves it INVALID and
  the retry's IF NOT EXISTS skips it). A statement that raises 55P03 at once
  replays 30 attempts with ``time.sleep`` recorded, not slept: the pauses must
  add up to a second or more, none above 20 s (a capped backoff). An application
  transaction idle all along, and each reader, must still be alive (no
  ``pg_terminate_backend`` of the application); while run_ddl gives up, a report
  running since the start of q1 is an ACTIVE query holding ACCESS SHARE on users,
  and it must end on its own, not with 57014 (no ``pg_cancel_backend`` of the
  application's queries).
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
  batch that is never run shows; before them sits a run of users with no sign-up
  event longer than any batch (imported accounts), so a backfill that stops at an
  UPDATE of 0 rows, or re-picks "the next NULLs" from the start, stops there. The
  expand may write no existing row (xmin
  horizon); the backfill leaves the catalogue and relfilenode of ``users``, and the
  files of its indexes (no REINDEX in place), as the expand left them; its idle time outside transactions covers the pauses; the
  callers' TimeZone has DST and planted users sit in its repeated fall-back hour.
* q4 (Alembic): catalogue snapshots compared with ``==``, at every revision: up one
  revision at a time, down one at a time (0002, 0001, base), up again.
* q3 also requires the index to be a plain, non-unique B-tree.
* q5 (squawk): the linter's findings, by rule.

Every caller's connection (``Caller`` below) must also be left without temporary tables,
cursors WITH HOLD, SQL prepared statements or LISTEN channels: a pooled session keeps them
for whoever borrows it next.
"""

from __future__ import annotations

import datetime as dt
import inspect
import random
import re
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from typing import Any, Callable
from zoneinfo import ZoneInfo

import psycopg
from psycopg import pq

from ..course import adversarial as adv
from ..course.checking import CheckFailed, require
from ..course.left_behind import Caller
from ..course.left_behind import caller_settings
from ..tools.migrations_probe import (LEGACY_TABLE, WRITE_BLOCKING, Interrupted,
                                      RecordingConnection, RowLockWatch, catalog_snapshot,
                                      events_checksum, evidence_table,
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
MAX_LOCK_TIMEOUT_MS = 500  # no attempt may let the lock queue stall longer than this
RETRY_ATTEMPTS = 30  # q1 replays this many attempts of a statement that always fails with 55P03
MIN_PAUSES_S = 1.0  # ... whose pauses must add up to at least this (the queue drains) ...
MAX_PAUSE_S = 20.0  # ... and none of which may be longer than this (a capped backoff)
MIN_STATEMENT_TIMEOUT_MS = 5 * 60_000  # a DDL's statement_timeout: 0 (none) or at least this
# A statement that fails at once with 55P03, as a lock timeout does: the whole retry schedule
# of run_ddl replays in a fraction of a second (its sleeps recorded, not slept).
ALWAYS_55P03 = ("DO $$BEGIN RAISE EXCEPTION 'canceling statement due to lock timeout' "
                "USING ERRCODE = '55P03'; END$$")
DUPLICATE_DDL = "ALTER TABLE users ADD COLUMN id integer"  # fails with 42701, lock or not
# A statement cancelled (statement_timeout, pg_cancel_backend): no lock timeout, no retry.
ALWAYS_57014 = ("DO $$BEGIN RAISE EXCEPTION 'canceling statement due to statement timeout' "
                "USING ERRCODE = '57014'; END$$")
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

# An explanation that says a statement takes no lock (every ALTER TABLE takes one).
NO_LOCK_CLAIM = re.compile(
    r"\b(?:takes?|needs?|holds?|acquires?|requires?|uses?)\s+no\s+locks?\b|\bno\s+lock(?:s|ing)?"
    r"\s+(?:at\s+all|is\s+(?:taken|needed|held|required))|\block[- ]?free\b|\bwithout\s+"
    r"(?:any\s+|a\s+|taking\s+(?:a\s+|any\s+)?)?lock(?:s|ing)?\b|\bdo(?:es)?\s*(?:n't|\s+not)\s+"
    r"(?:take\s+(?:a\s+|any\s+)?)?lock\b|\bnever\s+locks?\b", re.IGNORECASE)

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
           "Loop until no id is left past the last one done (not until no NULL is left: a user "
           "with no signup_events row keeps NULL): the last batch is usually smaller than "
           "batch_size.",
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
    return {"batch_size": batch, "pause": 0.02}


# --------------------------------------------------------------------------
# q1: the lock queue, prevented


def _caller(lab: Any, zone: str | None = None) -> Caller:
    """The connection run_ddl gets: autocommit, and its caller's own, non-default timeouts."""
    r = adv.rng()
    settings = caller_settings(zone)
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


def _chain_has(exc: BaseException | None, sqlstate: str) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, psycopg.Error) and exc.sqlstate == sqlstate:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _ms(value: str) -> float | None:
    """A duration setting as current_setting() shows it (200ms, 1s, 5min, 0) in ms."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*", value or "")
    if not m:
        return None
    scale = {"us": 0.001, "ms": 1, None: 1, "s": 1000, "min": 60_000, "h": 3_600_000,
             "d": 86_400_000}[m.group(2)]
    return float(m.group(1)) * scale


def _short_lock_timeouts(conn: RecordingConnection, since: int = 0) -> None:
    """Every attempt that failed with 55P03 ran with a lock_timeout of a few hundred ms."""
    for st in conn.statements[since:]:
        if st.sqlstate != "55P03":
            continue
        ms = _ms(st.lock_timeout) if st.lock_timeout is not None else None
        waited = st.end - st.start
        if ms is not None and st.sql != ALWAYS_55P03 and ms == 0:
            continue  # the 55P03 came from elsewhere (NOWAIT): nothing queued on a timeout
        if (ms is not None and (ms == 0 or ms > MAX_LOCK_TIMEOUT_MS)) or \
                (ms is None and waited > 1.5 * MAX_LOCK_TIMEOUT_MS / 1000):
            shown = f"lock_timeout = {st.lock_timeout}" if ms is not None else \
                f"a lock wait of {waited:.2f} s"
            attempt = sum(1 for x in conn.statements[since:conn.statements.index(st) + 1]
                          if x.sqlstate == "55P03")
            raise CheckFailed(
                f"Your run_ddl made an attempt with {shown} (lock timeout number {attempt} "
                "here): while an attempt waits for its lock, every query on users queues "
                "behind it, so each attempt may stall the application only for a few hundred "
                f"milliseconds (at most {MAX_LOCK_TIMEOUT_MS} ms), on every attempt: keep "
                "lock_timeout short and fixed, and let the pauses between attempts grow "
                "instead.", f"{st.sql}: {st.message}")


def _alive(lab: Any, pid: int) -> bool:
    with lab.connect(autocommit=True) as c:
        return bool(c.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                              [pid]).fetchone()[0])


def _terminated(what: str) -> CheckFailed:
    return CheckFailed(
        f"Your run_ddl terminated the application's transaction ({what}): "
        "pg_terminate_backend kills the session, its work and the request it was serving. A "
        "migration that cannot get its lock gives up and retries, and in the end stops the "
        "deploy so that someone looks at the transaction in the way; the only backends it "
        "may cancel are this database's ordinary autovacuum workers.")


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
        reader_alive = _alive(lab, s.pid("reader"))
        wl.mark("reader commits")
        if reader_alive:
            s.reader("COMMIT")
        thread.join(60)
    if not reader_alive:
        raise _terminated("the reader holding ACCESS SHARE on users, idle in its transaction, "
                          "was killed, and your ALTER TABLE took its lock")
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
    _short_lock_timeouts(conn)
    if not _lock_probe_exists(lab):
        raise CheckFailed("run_ddl returned, but the column it was given to add does not exist: "
                          "it must run the statement it is given (and succeed).")
    _left_as_found(caller, "run_ddl")
    return timeouts


class _RunningReport:
    """An application report: one statement, running since the start of q1, that reads users
    (ACCESS SHARE) while run_ddl gives up, then finishes.

    It is paced by two advisory locks the check holds, not by sleeps: the statement waits
    for the first before it reads users, and for the second before it ends. Until the check
    lets it read, it holds no lock on users; from then on it is an ACTIVE query holding
    ACCESS SHARE, as a report or an export is. A run_ddl that cancels (57014) or terminates
    the application's running queries to get its lock is caught by what the statement
    returns. (It must end before the concurrent build: a running statement holds a snapshot,
    and CREATE INDEX CONCURRENTLY waits for every older snapshot.)
    """

    def __init__(self, lab: Any) -> None:
        self.key = uuid.uuid4().int % 2**31
        self.gate = psycopg.connect(lab.url, autocommit=True, application_name="lab check")
        self.gate.execute("SELECT pg_advisory_lock(%s, 1), pg_advisory_lock(%s, 2)",
                          [self.key, self.key])
        self.conn = psycopg.connect(lab.url, autocommit=True, application_name="lab app report")
        self.pid = self.conn.info.backend_pid
        self.started = time.monotonic()
        self.box: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.conn.execute(f"""DO $$BEGIN
                PERFORM pg_advisory_lock_shared({self.key}, 1);
                PERFORM count(*) FROM users WHERE id < 100;
                PERFORM pg_advisory_lock_shared({self.key}, 2);
            END$$""")
        except psycopg.Error as exc:
            self.box["error"] = exc

    def reads(self) -> None:
        """Let the report read users, and wait until it holds its ACCESS SHARE."""
        self.gate.execute("SELECT pg_advisory_unlock(%s, 1)", [self.key])
        deadline = time.monotonic() + 10
        while self.thread.is_alive() and time.monotonic() < deadline:
            if self.gate.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND granted AND "
                                 "relation = 'users'::regclass", [self.pid]).fetchone()[0]:
                return
            self.thread.join(0.002)

    def finish(self) -> None:
        """Let it end; fail if it did not end on its own."""
        if not self.gate.closed:
            self.gate.execute("SELECT pg_advisory_unlock_all()")
        self.thread.join(30)
        exc = self.box.get("error")
        if exc is None:
            return
        age = time.monotonic() - self.started
        if isinstance(exc, psycopg.errors.QueryCanceled):
            raise CheckFailed(
                "Your run_ddl cancelled the application's running query (a report reading "
                f"users, running for {age:.1f} s, failed with SQLSTATE 57014, "
                f"{exc.diag.message_primary}): pg_cancel_backend fails the request, the export "
                "or the report that query was serving, so that the migration can go first. A "
                "migration that cannot get its lock gives up and retries later, and in the end "
                "stops the deploy; the only backends it may cancel are this database's ordinary "
                "autovacuum workers (backend_type = 'autovacuum worker').")
        raise _terminated(f"a report reading users, running for {age:.1f} s, ended with "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def close(self) -> None:
        if not self.gate.closed:
            self.gate.close()  # its advisory locks go with it: the report ends
        self.thread.join(10)
        if not self.conn.closed:
            self.conn.close()


def _gives_up(lab: Any, wl: Workload, s: Sessions, caller: Caller,
              conn: RecordingConnection, run_ddl: Callable[..., Any],
              report: _RunningReport) -> int:
    """The reader never commits and a report is running: run_ddl(..., attempts=3) must
    raise, change nothing, and leave both alone."""
    _drop_lock_probe(lab)
    with lab.connect(autocommit=True) as c:
        schema = catalog_snapshot(c)
    s.reader("BEGIN")
    s.reader("SELECT count(*) FROM users WHERE id < 100")
    mark = len(conn.statements)
    with wl.step(f"run_ddl(attempts={GIVE_UP_ATTEMPTS}) while the reader never commits",
                 caller.conn):
        report.reads()
        thread, box = run_in_thread(lambda: run_ddl(conn, PROBE_DDL, attempts=GIVE_UP_ATTEMPTS))
        thread.join(GIVE_UP_CAP_S)
        gave_up = not thread.is_alive()
        reader_alive = _alive(lab, s.pid("reader"))
        wl.mark("reader commits")
        if reader_alive:
            s.reader("COMMIT")
        thread.join(60)
        report.finish()
    if not reader_alive:
        _drop_lock_probe(lab)
        raise _terminated("the reader holding ACCESS SHARE on users, idle in its transaction, "
                          "was killed")
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
    _short_lock_timeouts(conn, mark)
    _left_as_found(caller, "run_ddl, giving up,")
    return tries


# Errors no retry can fix, each must reach the caller at once: (statement, SQLSTATE, what).
OTHER_ERRORS = (
    (DUPLICATE_DDL, "42701", 'column "id" of relation "users" already exists, which no retry '
                             "can fix"),
    (ALWAYS_57014, "57014", "canceling statement: its statement_timeout ran out, or an "
                            "operator cancelled it with pg_cancel_backend; a retry undoes that "
                            "decision, and a build that hit a 30-minute statement_timeout "
                            "would run 30 times"),
)


def _other_error(caller: Caller, conn: RecordingConnection, run_ddl: Callable[..., Any]) -> None:
    """A statement that fails for another reason (42701, 57014) raises it at once, connection
    as found."""
    for statement, sqlstate, what in OTHER_ERRORS:
        shown = " ".join(statement.split())
        mark = len(conn.statements)
        try:
            run_ddl(conn, statement)
        except Exception as exc:  # noqa: BLE001 - what it raised is judged below
            if not _chain_has(exc, sqlstate):
                raise
            tries = sum(1 for st in conn.statements[mark:] if st.sqlstate == sqlstate)
            if tries > 1:
                raise CheckFailed(
                    f"run_ddl(conn, \"{shown}\") ran the statement {tries} times: it failed "
                    f"with {sqlstate} ({what}). Retry only on a lock timeout (catch "
                    "psycopg.errors.LockNotAvailable, SQLSTATE 55P03, not psycopg.Error, not "
                    "QueryCanceled 57014) and let every other error reach the caller at "
                    "once.") from None
        else:
            raise CheckFailed(
                f"run_ddl(conn, \"{shown}\") returned without an error, but the statement "
                f"failed with {sqlstate} ({what}): an error that is not a lock timeout must "
                "reach the caller at once.")
        _left_as_found(caller, f"run_ddl, when its statement failed with {sqlstate},")


CONCURRENT_INDEX = "lab_q1_concurrent_idx"
# A concurrent build as a migration writes it: UNIQUE or not, a REINDEX, over several lines, in
# either case. The check picks one per run; none starts with "CREATE INDEX CONCURRENTLY".
CONCURRENT_FORMS = {
    "unique": f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {CONCURRENT_INDEX} "
              "ON users (id, name)",
    "multi-line": f"CREATE INDEX\n    CONCURRENTLY IF NOT EXISTS {CONCURRENT_INDEX}\n"
                  "    ON users (name)",
    "reindex": f"REINDEX INDEX CONCURRENTLY {CONCURRENT_INDEX}",
}


def _concurrent_ddl(r: random.Random) -> tuple[str, str]:
    """(form, statement): one concurrent build, its keywords in upper or lower case."""
    form = r.choice(sorted(CONCURRENT_FORMS))
    sql = CONCURRENT_FORMS[form]
    return form, (sql.lower() if r.random() < 0.5 else sql)


def _drop_concurrent_index(lab: Any) -> None:
    """The check's index and whatever a failed build left of it (REINDEX's *_ccnew copies)."""
    with lab.connect(autocommit=True) as c:
        for (name,) in c.execute(
                "SELECT quote_ident(relname) FROM pg_class WHERE relkind = 'i' "
                "AND starts_with(relname, %s)", [CONCURRENT_INDEX]).fetchall():
            c.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def _concurrent_state(lab: Any) -> tuple[list[tuple[str, bool, int]], int | None]:
    """Indexes named after the check's (name, valid, file), and the file of the index itself."""
    with lab.connect(autocommit=True) as c:
        rows = [tuple(r) for r in c.execute(
            "SELECT c.relname, i.indisvalid, pg_relation_filenode(c.oid)::int8 FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'users'::regclass "
            "AND starts_with(c.relname, %s) ORDER BY 1", [CONCURRENT_INDEX]).fetchall()]
    node = next((f for n, _, f in rows if n == CONCURRENT_INDEX), None)
    return rows, node


def _concurrent_build(lab: Any, wl: Workload, caller: Caller, conn: RecordingConnection,
                      run_ddl: Callable[..., Any], watched: set[str]) -> float:
    """A concurrent build while an application write stays open > 1 s: the index ends VALID.

    CREATE [UNIQUE] INDEX CONCURRENTLY and REINDEX ... CONCURRENTLY wait for running writers
    *after* their index is in the catalogue; a short lock_timeout there cancels them and
    leaves an INVALID index (CREATE's, or REINDEX's *_ccnew copy), which a retry with IF NOT
    EXISTS skips. Their waits block no application query, so the answer is judged by what it
    leaves: valid indexes only, the writer alive. The statement's form is seeded: an answer
    that recognises only one spelling of a concurrent build meets another.
    """
    _drop_concurrent_index(lab)
    r = adv.rng()
    form, ddl = _concurrent_ddl(r)
    watched.add(ddl)
    shown_ddl = " ".join(ddl.split())
    if form == "reindex":
        with lab.connect(autocommit=True) as c:
            c.execute(f"CREATE INDEX CONCURRENTLY {CONCURRENT_INDEX} ON users (name)")
    _, node_before = _concurrent_state(lab)
    hold = r.uniform(1.2, 2.0)
    writer = psycopg.connect(lab.url, application_name="lab app writer")
    try:
        with lab.connect(autocommit=True) as c:
            uid = c.execute(f"SELECT min(id) FROM users WHERE id < {WRITER_ID_BASE}").fetchone()[0]
        writer.execute("UPDATE users SET name = name WHERE id = %s", [uid])  # open, uncommitted
        with wl.step("run_ddl(a concurrent index build) while a write stays open", caller.conn):
            thread, box = run_in_thread(run_ddl, conn, ddl)
            thread.join(hold)
            writer_alive = _alive(lab, writer.info.backend_pid)
            if writer_alive:
                try:
                    writer.commit()
                except psycopg.Error:
                    writer_alive = False
            thread.join(60)
    finally:
        writer.close()
    try:
        if not writer_alive:
            raise _terminated("an application transaction that had updated a user, still open "
                              "while your concurrent index build waited for it, was killed")
        if thread.is_alive():
            raise CheckFailed(f"run_ddl(conn, \"{shown_ddl}\") did not finish within 60 s "
                              "of the application's transaction committing.")
        rows, node = _concurrent_state(lab)
        invalid = [n for n, valid, _ in rows if not valid]
        error = box.get("error")
        if invalid:
            raise CheckFailed(
                f"run_ddl(conn, \"{shown_ddl}\"), run while an application transaction "
                f"that had updated a user stayed open for {hold:.1f} s, "
                + ("returned" if error is None else f"raised {type(error).__name__}")
                + f" and left {', '.join(invalid)} INVALID (pg_index.indisvalid is false): the "
                "planner never uses it, yet every write maintains it. A concurrent build "
                "(CREATE [UNIQUE] INDEX CONCURRENTLY, REINDEX … CONCURRENTLY) waits for running "
                "transactions after its index is in the catalogue; a lock_timeout cancels it "
                "there (55P03) and leaves the index INVALID (REINDEX leaves a *_ccnew copy), "
                "and a retry with IF NOT EXISTS skips it because the name exists. Its waits "
                "block no application query (SHARE UPDATE EXCLUSIVE conflicts with no SELECT, "
                "INSERT, UPDATE or DELETE): run every concurrent build without the short "
                "lock_timeout, whatever its spelling (UNIQUE, REINDEX, lower case, over "
                "several lines: look for the word CONCURRENTLY, case-insensitively, across "
                "lines), and check pg_index.indisvalid afterwards.",
                f"{len(conn.errors('55P03'))} lock timeouts recorded in all; indexes: {rows}")
        if error is not None:
            if not isinstance(error, Exception):
                raise error
            raise CheckFailed(
                f"run_ddl(conn, \"{shown_ddl}\") raised {type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}, while an application "
                f"transaction stayed open for {hold:.1f} s and then committed: a concurrent "
                "build waits for running transactions, which blocks no application query; "
                "let it wait (no short lock_timeout for CONCURRENTLY) so the build completes.")
        if node is None or (form == "reindex" and node == node_before):
            raise CheckFailed(f"run_ddl(conn, \"{shown_ddl}\") returned, but "
                              + ("the index was not rebuilt" if node is not None else
                                 "the index does not exist")
                              + ": it must run the statement it is given.")
    finally:
        _drop_concurrent_index(lab)
    _left_as_found(caller, "run_ddl, after a concurrent index build,")
    return hold


def _statement_timeout_hook(raw: psycopg.Connection, seen: list[tuple[str, str]],
                            watched: set[str]) -> Callable[[Any], None]:
    """After each DDL the check gave run_ddl succeeds, read the statement_timeout it ran with."""
    def hook(st: Any) -> None:
        if st.sql in watched and st.sqlstate is None:
            try:
                seen.append((st.sql, raw.execute(
                    "SELECT current_setting('statement_timeout')").fetchone()[0]))
            except psycopg.Error:
                pass
    return hook


def _long_statement_timeouts(seen: list[tuple[str, str]]) -> None:
    """A statement_timeout too short for the slowest step at 10 million rows cancels it."""
    for sql_text, value in seen:
        ms = _ms(value)
        if ms is not None and 0 < ms < MIN_STATEMENT_TIMEOUT_MS:
            raise CheckFailed(
                f"Your run_ddl ran `{' '.join(sql_text.split())}` with statement_timeout = "
                f"{value}: at 10 million "
                "rows a VALIDATE CONSTRAINT or a CREATE INDEX CONCURRENTLY runs for minutes "
                "(blocking no one), and a short statement_timeout cancels it (a cancelled "
                "concurrent build also leaves an INVALID index). lock_timeout bounds the wait "
                "for the lock; statement_timeout only stops a runaway statement: 0 (none) or "
                f"at least {MIN_STATEMENT_TIMEOUT_MS // 60_000} minutes (30min, say).")


class _PauseRecorder:
    """Within one thread, time.sleep(x) records x and returns at once (others sleep as usual)."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace, self.sleeps, self.ident = namespace, [], None
        self._real = time.sleep

    def sleep(self, seconds: float) -> None:
        if threading.get_ident() != self.ident:
            return self._real(seconds)
        self.sleeps.append(float(seconds))
        return None

    def __enter__(self) -> "_PauseRecorder":
        time.sleep = self.sleep
        self._patched = [k for k, v in self.namespace.items() if v is self._real]
        for k in self._patched:
            self.namespace[k] = self.sleep
        return self

    def __exit__(self, *exc: Any) -> None:
        time.sleep = self._real
        for k in self._patched:
            if self.namespace.get(k) is self.sleep:
                self.namespace[k] = self._real


def _retry_schedule(caller: Caller, conn: RecordingConnection,
                    run_ddl: Callable[..., Any]) -> list[float]:
    """run_ddl(ALWAYS_55P03, attempts=30): the pauses it asks for, attempt after attempt."""
    mark = len(conn.statements)
    recorder = _PauseRecorder(getattr(run_ddl, "__globals__", {}))

    def replay() -> Any:
        recorder.ident = threading.get_ident()
        return run_ddl(conn, ALWAYS_55P03, attempts=RETRY_ATTEMPTS)

    with recorder:
        thread, box = run_in_thread(replay)
        thread.join(20)
    if thread.is_alive():
        raise CheckFailed(
            f"Asked for attempts={RETRY_ATTEMPTS} of a statement that fails at once with 55P03, "
            "your run_ddl was still retrying after 20 s (not counting its time.sleep pauses): "
            "it must make at most `attempts` attempts and wait with time.sleep between them.")
    attempts = [st for st in conn.statements[mark:] if st.sqlstate == "55P03"]
    _short_lock_timeouts(conn, mark)
    if "error" not in box or not _chain_has(box["error"], "55P03"):
        if "error" in box and not isinstance(box["error"], Exception):
            raise box["error"]
        raise CheckFailed(
            f"Asked for attempts={RETRY_ATTEMPTS} of a statement that failed with 55P03 every "
            f"time, your run_ddl made {len(attempts)} attempts and then "
            + ("returned without an error" if "error" not in box else
               f"raised {type(box['error']).__name__}") + ": after the last attempt, re-raise "
            "the LockNotAvailable.")
    if len(attempts) > RETRY_ATTEMPTS + 1:
        raise CheckFailed(f"Asked for attempts={RETRY_ATTEMPTS}, your run_ddl tried "
                          f"{len(attempts)} times: bound the attempts by `attempts`.")
    sleeps = recorder.sleeps
    gaps = [b.start - a.end for a, b in zip(attempts, attempts[1:])]
    shown = ", ".join(f"{x:.3g}" for x in sleeps[:8]) + (", …" if len(sleeps) > 8 else "")
    longest = max(sleeps, default=0.0)
    if longest > MAX_PAUSE_S:
        at = sleeps.index(longest) + 1
        raise CheckFailed(
            f"Your run_ddl's backoff has no cap: after attempt {at} of {len(attempts)} it asked "
            f"time.sleep for {longest:,.0f} s (pauses requested: {shown}; the last "
            f"{sleeps[-1]:,.0f} s). Exponential backoff doubles each time, so by attempt 20 the "
            f"deploy sleeps for hours: cap each pause (min(cap, base * 2 ** attempt), a cap of "
            f"a few seconds, never above {MAX_PAUSE_S:.0f} s) and add jitter under the cap.",
            f"pauses requested: {shown}")
    total = sum(sleeps) + sum(max(0.0, g) for g in gaps)
    if total < MIN_PAUSES_S:
        raise CheckFailed(
            f"Between its {len(attempts)} attempts your run_ddl paused {total:.3f} s in all "
            f"(time.sleep asked for: {shown or 'nothing'}): retrying at once puts the ALTER "
            "back at the head of the lock queue before the application's queries that waited "
            "behind the last attempt have run. Sleep between attempts, a little longer each "
            f"time with jitter (over {RETRY_ATTEMPTS} attempts, at least "
            f"{MIN_PAUSES_S:.0f} s in all).", f"pauses requested: {shown}")
    _left_as_found(caller, "run_ddl, giving up after a lock timeout at every attempt,")
    return sleeps


def q1(lab: Any, run_ddl: Callable[..., Any]) -> str:
    """run_ddl(conn, statement, attempts) gives up on a lock within the budget and retries
    until it succeeds; when the lock never frees it raises; the caller's connection is left
    as found either way."""
    require(run_ddl)
    _drop_lock_probe(lab)
    wl = live_workload(lab)
    try:
        with ExitStack() as stack:
            report = _RunningReport(lab)  # running from now on: old by the time it reads
            stack.callback(report.close)
            caller = stack.enter_context(_caller(lab))
            conn = RecordingConnection(caller.conn, read_lock_timeout=True)
            seen_timeouts: list[tuple[str, str]] = []
            watched = {PROBE_DDL}
            conn._on_statement = _statement_timeout_hook(caller.conn, seen_timeouts, watched)
            stack.callback(_drop_lock_probe, lab)
            # an application transaction idle since the start (it blocks no DDL): it must
            # still be alive at the end
            app = stack.enter_context(psycopg.connect(lab.url, application_name="lab app"))
            app.execute("SELECT 1")
            with wl, Sessions(lab, "reader", application_name="lab check") as s:
                timeouts = _succeeds_after_reader(lab, wl, s, caller, conn, run_ddl)
                _accepts_attempts(run_ddl)
                tries = _gives_up(lab, wl, s, caller, conn, run_ddl, report)
                stack.callback(_drop_concurrent_index, lab)
                held = _concurrent_build(lab, wl, caller, conn, run_ddl, watched)
                _other_error(caller, conn, run_ddl)
                pauses = _retry_schedule(caller, conn, run_ddl)
            _long_statement_timeouts(seen_timeouts)
            if not _alive(lab, app.info.backend_pid):
                raise _terminated("a session idle in its transaction, which held no lock "
                                  "your ALTER TABLE needed, was killed")
            app.rollback()
    except psycopg.errors.AdminShutdown as exc:
        raise _terminated(f"a session of the check was killed: {exc}") from None
    _workload_failed(wl, "run_ddl")
    waited = _budget(wl, "run_ddl")
    return (f"gave up {timeouts} times with 55P03 while the reader held its lock, then "
            f"succeeded; raised after {tries} attempts when it never freed; a concurrent index "
            f"build left VALID after a write stayed open {held:.1f} s; lock_timeout short "
            f"on every attempt; {len(pauses)} pauses over {RETRY_ATTEMPTS} attempts, "
            f"{sum(pauses):.1f} s in all, longest {max(pauses, default=0):.1f} s; caller's "
            f"settings kept; longest workload lock wait {waited * 1000:.0f} ms")


# --------------------------------------------------------------------------
# q2: expand and backfill


# Zones with daylight saving time and a non-whole-hour offset: the q2 callers' TimeZone.
DST_ZONES = ("America/St_Johns", "Pacific/Chatham", "Australia/Adelaide", "Australia/Lord_Howe")


def _fall_back(zone: str, year: int) -> tuple[dt.datetime, dt.timedelta]:
    """The UTC instant of the zone's first fall-back of ``year``, and how far clocks go back."""
    tz = ZoneInfo(zone)
    t = dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc)
    step = dt.timedelta(hours=1)
    while t.year == year:
        if t.astimezone(tz).utcoffset() > (t + step).astimezone(tz).utcoffset():
            lo, hi = t, t + step  # refine to the second
            while hi - lo > dt.timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            hi = hi.replace(microsecond=0)
            return hi, lo.astimezone(tz).utcoffset() - hi.astimezone(tz).utcoffset()
        t += step
    raise ValueError(f"{zone} has no fall-back in {year}")


def _ambiguous_instants(zone: str, r: random.Random) -> list[dt.datetime]:
    """Instants in the first pass of the zone's fall-back hour: as local times they repeat,
    and PostgreSQL reads such a local time back as the second pass."""
    when, back = _fall_back(zone, r.randint(2020, 2024))
    span = int(back.total_seconds())
    return [when - dt.timedelta(seconds=r.randint(1, span - 1), microseconds=r.randint(1, 999_999))
            for _ in range(3)]


def _plant_users(lab: Any, zone: str | None = None) -> tuple[list[int], list[int]]:
    """A few old users past gaps in the ids, sign-up times at fractions of a second, and
    among them a few with no sign-up event at all: (with events, without).

    A backfill that pages by ``count(*)`` (ids 1..N) or stops at the old maximum
    misses them; their times sit around a month boundary, to the microsecond, and
    (with ``zone``) in the first pass of that zone's fall-back hour. The users without
    an event must keep created_at NULL: there is no time to copy. Most of those come in one
    run of consecutive ids longer than any batch the check asks for (accounts imported
    before sign-ups were logged), before the planted users: a backfill that takes "an
    UPDATE that changed 0 rows" for the end stops there.
    """
    r = adv.rng()
    with lab.connect(autocommit=True) as c:
        top, count = c.execute("SELECT coalesce(max(id), 0), count(*) FROM users WHERE id < %s",
                               [WRITER_ID_BASE]).fetchone()
        # longer than the largest batch backfill_kwargs can pick once these rows exist
        run_from = top + r.randint(1, 50)
        run = list(range(run_from, run_from + min(max(count // 5, 150), 26_000)))
        ids, nxt = [], run[-1]
        for _ in range(r.randint(3, 6)):
            nxt += r.randint(2, 400)
            ids.append(nxt)
        edge = dt.datetime(r.randint(2020, 2024), r.randint(1, 12), 1, tzinfo=dt.timezone.utc)
        edges = adv.instants_around(edge)
        times = [edges[i % len(edges)] for i in range(len(ids))]
        if zone:
            for when in _ambiguous_instants(zone, r):
                nxt += r.randint(2, 400)
                ids.append(nxt)
                times.append(when)
        orphans = []
        for _ in range(r.randint(1, 3)):  # interleaved with the others, past the same gaps
            orphans.append(r.choice(range(run[-1] + 1, nxt + 400)))
        orphans = sorted(set(orphans) - set(ids))
        with c.transaction():
            for user_id, when in zip(ids, times):
                c.execute("INSERT INTO users (id, name) VALUES (%s, %s)",
                          [user_id, f"planted user {user_id}"])
                c.execute(f"INSERT INTO {LEGACY_TABLE} (user_id, signed_up_at) VALUES (%s, %s)",
                          [user_id, when])
            for user_id in orphans:
                c.execute("INSERT INTO users (id, name) VALUES (%s, %s)",
                          [user_id, f"planted user {user_id} (no sign-up event)"])
            c.execute("INSERT INTO users (id, name) SELECT g, 'imported user ' || g || "
                      "' (no sign-up event)' FROM generate_series(%s::int8, %s::int8) AS g",
                      [run[0], run[-1]])
    return ids, sorted(orphans + run)


def _unplant_users(lab: Any, ids: list[int]) -> None:
    with lab.connect(autocommit=True) as c, c.transaction():
        c.execute(f"DELETE FROM {LEGACY_TABLE} WHERE user_id = ANY(%s)", [ids])
        c.execute("DELETE FROM users WHERE id = ANY(%s)", [ids])


def _reloptions(c: psycopg.Connection, tables: list[str]) -> dict[str, list[str]]:
    """Each table's storage parameters (pg_class.reloptions: autovacuum_enabled, fillfactor…)."""
    return {t: sorted(o or []) for t, o in c.execute(
        "SELECT relname, reloptions FROM pg_class WHERE oid = ANY(%s::regclass[])",
        [tables]).fetchall()}


def _restore_reloptions(lab: Any, found: dict[str, list[str]]) -> None:
    """Put back the storage parameters a failed answer changed (an instant ALTER TABLE)."""
    with lab.connect(autocommit=True) as c:
        now = _reloptions(c, list(found))
        for table, options in found.items():
            if now.get(table) == options:
                continue
            keys = [o.split("=", 1)[0] for o in now.get(table, [])]
            if keys:
                c.execute(f"ALTER TABLE {table} RESET ({', '.join(keys)})")
            if options:
                c.execute(f"ALTER TABLE {table} SET ({', '.join(options)})")


def _reloptions_verdict(c: psycopg.Connection, before: dict[str, list[str]], who: str) -> None:
    after = _reloptions(c, list(before))
    changed = [t for t in before if after.get(t) != before[t]]
    if changed:
        t = changed[0]
        off = any(o.startswith(("autovacuum_enabled=f", "autovacuum_enabled=of", "autovacuum_"
                                "enabled=0", "autovacuum_enabled=n")) for o in after.get(t, []))
        raise CheckFailed(
            f"{who} changed the storage parameters of {t} (pg_class.reloptions "
            f"{before[t] or 'none'} → {after.get(t) or 'none'})"
            + (": autovacuum is off for it from now on, so the dead tuples the batches leave "
               "are never reclaimed and its statistics go stale (the planner misjudges every "
               "query on it)" if off else "")
            + ". A migration leaves a table's settings as it found them: throttle the batches "
            "(pause) instead of turning autovacuum off, and if a setting must change for the "
            "run, put it back (ALTER TABLE … RESET) in a finally.",
            "; ".join(f"{x}: {before[x]} → {after.get(x)}" for x in changed))


def _held_rows(c: psycopg.Connection, skip: list[int]) -> list[int]:
    """Users the application holds during the backfill: the first and last by id and by
    position in the table, and one at random, so every order of work meets one late.

    Never one of ``skip`` (the users without a sign-up event, which the backfill must not
    write: it would never queue behind them, and they would stay held to the end)."""
    mine = f"id < {WRITER_ID_BASE} AND NOT id = ANY(%(skip)s)"
    rows = c.execute(f"""
        (SELECT id FROM users WHERE {mine} ORDER BY id LIMIT 1)
        UNION (SELECT id FROM users WHERE {mine} ORDER BY id DESC LIMIT 1)
        UNION (SELECT id FROM users WHERE {mine} ORDER BY ctid LIMIT 1)
        UNION (SELECT id FROM users WHERE {mine} ORDER BY ctid DESC LIMIT 1)
        """, {"skip": skip}).fetchall()
    ids = sorted(r[0] for r in rows)
    pick = adv.rng().randint(ids[0], ids[-1])
    extra = c.execute(f"SELECT id FROM users WHERE id >= %(pick)s AND {mine} "
                      "ORDER BY id LIMIT 1", {"pick": pick, "skip": skip}).fetchone()
    return sorted(set(ids) | ({extra[0]} if extra else set()))


def _index_files(c: psycopg.Connection) -> dict[str, tuple[int, int]]:
    """Each index of users: its oid and its file (relfilenode), which a rebuild in place
    changes (REINDEX, VACUUM FULL, CLUSTER) and REINDEX CONCURRENTLY replaces with a new oid."""
    return {name: (oid, filenode) for name, oid, filenode in c.execute(
        "SELECT c.relname, c.oid::int8, pg_relation_filenode(c.oid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'users'::regclass")}


class _TableLocks:
    """After each statement of the backfill, its locks on the tables the application writes
    (users and signup_events: a sign-up inserts into both), read from pg_locks."""

    def __init__(self, lab: Any) -> None:
        self.monitor = psycopg.connect(lab.url, autocommit=True)
        self.seen: list[tuple[str, str, str]] = []  # (table, mode, statement)

    def hook(self, raw: psycopg.Connection) -> Callable[[Any], None]:
        pid = raw.info.backend_pid

        def after(statement: Any) -> None:
            if not in_transaction(raw):
                return  # autocommit: its locks went with its own transaction
            for table, mode in self.monitor.execute(
                    "SELECT relation::regclass::text, mode FROM pg_locks WHERE pid = %s "
                    "AND locktype = 'relation' AND granted AND relation = ANY(ARRAY["
                    f"'users'::regclass, '{LEGACY_TABLE}'::regclass])", [pid]).fetchall():
                if mode in WRITE_BLOCKING:
                    self.seen.append((table, mode,
                                      f"after `{' '.join(statement.sql.split())[:120]}`"))
        return after

    def close(self) -> None:
        self.monitor.close()


def _expand(lab: Any, wl: Workload, expand_steps: list[str], before: tuple[int, str],
            node: int) -> dict[str, Any]:
    """Run the expand steps and judge them; return the schema of users they left."""
    with lab.connect(autocommit=True) as c:
        horizon = c.execute("SELECT pg_current_xact_id()::xid::text").fetchone()[0]
    with wl.step("expand"):
        evidence = probe_steps(lab, expand_steps)
    _outages(evidence, "expand steps")
    with lab.connect(autocommit=True) as c:
        written = c.execute(f"SELECT count(*) FROM users WHERE id < {WRITER_ID_BASE} "
                            "AND age(xmin) < age(%s::xid)", [horizon]).fetchone()[0]
        if written:
            raise CheckFailed(
                f"Your expand steps wrote {written:,} of the {before[0]:,} existing users (their "
                "xmin changed): an UPDATE, DELETE or INSERT of the whole table in one "
                "transaction, hidden in the expand, locks every row it touches until it "
                "commits and leaves a dead copy of each. The expand only changes the catalogue: "
                "add the column nullable with no value for existing rows, SET DEFAULT now() for "
                "new ones, and leave the writing to the batched backfill.",
                evidence_table(evidence))
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
        return catalog_snapshot(c)


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
        zone = adv.rng().choice(DST_ZONES)
        planted, orphans = _plant_users(lab, zone)
        stack.callback(_unplant_users, lab, planted + orphans)
        with lab.connect(autocommit=True) as c:
            before = original_rows_checksum(c)
            events = events_checksum(c)
            node = relfilenode(c)
            options = _reloptions(c, ["users", LEGACY_TABLE])
        stack.callback(_restore_reloptions, lab, options)
        kwargs = backfill_kwargs(before[0], adv.rng())
        batch = kwargs["batch_size"]
        table_locks = _TableLocks(lab)
        stack.callback(table_locks.close)
        wl = live_workload(lab)
        with wl:
            schema = _expand(lab, wl, expand_steps, before, node)
            with lab.connect(autocommit=True) as c:
                index_files = _index_files(c)
            with lab.connect(autocommit=True) as c:
                held = _held_rows(c, orphans)
            with RowLockWatch(lab, held) as watch:
                # first run, interrupted after three committed batches: a crash or a deploy
                with _caller(lab, zone) as caller:
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
                caller = stack.enter_context(_caller(lab, zone))
                second = RecordingConnection(caller.conn,
                                             on_statement=table_locks.hook(caller.conn))
                t0 = time.perf_counter()
                with wl.step("backfill (resumed)", caller.conn):
                    backfill(second, **kwargs)
                second_seconds = time.perf_counter() - t0
                _left_as_found(caller, "the resumed backfill")
            if watch.error is not None:
                raise RuntimeError(f"the row-lock watch failed: {watch.error}")
        with lab.connect(autocommit=True) as c:
            schema_after, node_after = catalog_snapshot(c), relfilenode(c)
            files_after = _index_files(c)
            _reloptions_verdict(c, options, "Your expand steps and backfill")
        # an index rebuilt in place (same oid, new file): REINDEX without CONCURRENTLY, which
        # held SHARE on users (and ACCESS EXCLUSIVE on the index) for the whole rebuild
        rebuilt = sorted(name for name, (oid, filenode) in index_files.items()
                         if name in files_after and files_after[name][0] == oid
                         and files_after[name][1] != filenode)
        if rebuilt and node_after == node:
            raise CheckFailed(
                f"Your backfill rebuilt {', '.join(rebuilt)} in place (same index, new "
                "relfilenode): a plain REINDEX holds SHARE on users for the whole rebuild (every "
                "INSERT, UPDATE and DELETE waits; minutes at 10 million rows) and ACCESS "
                "EXCLUSIVE on each index (the reads that use it wait too). The batches leave "
                "dead index entries that VACUUM (ANALYZE) makes reusable, which is enough; if an "
                "index is really bloated, rebuild it later with REINDEX INDEX CONCURRENTLY, "
                "which blocks no one.",
                "; ".join(f"{n}: relfilenode {index_files[n][1]} → {files_after[n][1]}"
                          for n in rebuilt))
        if schema_after != schema or node_after != node:
            diff = snapshot_diff(schema, schema_after)
            nullness = [r for r in schema_after["columns"] if r[0] == COLUMN and r[2]]
            indexes = schema_after["indexes"] != schema["indexes"]
            raise CheckFailed(
                "Your backfill changed users itself, not only its data: "
                + ("it made created_at NOT NULL (SET NOT NULL takes ACCESS EXCLUSIVE and scans "
                   "the whole table to prove it, every query on users waits); "
                   if nullness else "")
                + ("it left the indexes of users changed (an index is the contract's, built "
                   "there with CREATE INDEX CONCURRENTLY: a plain CREATE INDEX holds a SHARE lock "
                   "for the whole build, every INSERT, UPDATE and DELETE waits); "
                   if indexes else "")
                + ("it rewrote the table (its relfilenode changed: VACUUM FULL or CLUSTER copy "
                   "every row under ACCESS EXCLUSIVE); " if node_after != node else "")
                + "the backfill only writes created_at, batch by batch. NOT NULL and the index "
                "are the contract's (exercise 3), where each is added without a long lock; "
                "plain VACUUM (ANALYZE) is the clean-up that blocks nobody.",
                "; ".join(diff) or f"relfilenode {node} → {node_after}")
        sampled = sorted({(rel, mode, f"during the {s.label}") for s in wl.steps
                          if s.label.startswith("backfill") for rel, mode, _ in s.locks
                          if rel in ("users", LEGACY_TABLE) and mode in WRITE_BLOCKING})
        seen = [("users", mode, f"while it queued behind user {w.key}, held by the application")
                for w in watch.waits for mode, _ in w.table_locks if mode in WRITE_BLOCKING]
        locked = table_locks.seen + seen + sampled
        if locked:
            table, mode, where = locked[0]
            raise CheckFailed(
                f"Your backfill locks the whole {table} table ({mode}, seen in pg_locks "
                f"{where}): while it holds that lock every INSERT, UPDATE and DELETE of the "
                f"application on {table} waits (a sign-up writes users and {LEGACY_TABLE}), "
                "batch after batch. A batch needs only the row locks its UPDATE takes (ROW "
                f"EXCLUSIVE on users, ACCESS SHARE to read {LEGACY_TABLE}, which block nobody): "
                "drop the LOCK TABLE.", "; ".join(f"{t} {m} {w}" for t, m, w in locked[:5]))
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
                       * bool_or(id = (SELECT max(id) FROM users WHERE id < %s
                                              AND NOT id = ANY(%s))
                                 AND {COLUMN} IS NOT NULL)::int
                FROM users WHERE id <= %s""",
                [planted, min(planted), orphans, max(planted)]).fetchone()[0]
            # users left NULL past the run of users without a sign-up event
            # users left NULL past the run of users without a sign-up event, when none of the
            # users past it got a value: the backfill stopped at the run
            lone = set(orphans)
            run_end = max((i for i in orphans if i + 1 in lone), default=0) + 1
            past_run = c.execute(f"""
                SELECT count(*) FILTER (WHERE {COLUMN} IS NULL)
                       * (NOT bool_or({COLUMN} IS NOT NULL))::int
                FROM users WHERE id > %s AND id < %s AND NOT id = ANY(%s)""",
                [run_end, WRITER_ID_BASE, orphans]).fetchone()[0] or 0
            null_ids = [r[0] for r in c.execute(
                f"SELECT id FROM users WHERE {COLUMN} IS NULL AND NOT id = ANY(%s) "
                "ORDER BY id LIMIT 4", [orphans]).fetchall()]
            invented = c.execute(f"SELECT id, {COLUMN} FROM users WHERE id = ANY(%s) AND "
                                 f"{COLUMN} IS NOT NULL ORDER BY id", [orphans]).fetchall()
            v["nulls"] -= len(orphans) - len(invented)
        if events_after != events:
            raise CheckFailed(
                f"Your backfill changed {LEGACY_TABLE}, the sign-up log it must only read: the "
                f"check compares users.{COLUMN} with it, and the application's history with it.",
                f"{events} → {events_after}")
        if invented:
            raise CheckFailed(
                f"{len(invented)} of the users have no row in {LEGACY_TABLE} (ids "
                f"{', '.join(str(i) for i, _ in invented[:6])}"
                f"{', …' if len(invented) > 6 else ''}), "
                f"yet your backfill gave them a "
                f"{COLUMN} ({invented[0][1]}, …): there is no sign-up time to copy for them, and "
                "a made-up one (now(), a default, the neighbour's) is wrong data that nobody can "
                f"tell from the real ones. Leave their {COLUMN} NULL: the contract's VALIDATE "
                "CONSTRAINT then reports them, and someone decides (an UPDATE … FROM "
                f"{LEGACY_TABLE} skips them; a coalesce or a LEFT JOIN does not).",
                f"{len(orphans):,} users without a sign-up event: {orphans[:8]}, …")
        if v["nulls"]:
            hint = (f" Fewer than a batch is missing: the last batch is partial ({before[0]:,} "
                    f"old users, batches of {batch:,}), so loop until no id is left past the last "
                    "one done, not for a fixed number of full batches or over a range of ids "
                    "computed up front."
                    if v["nulls"] < batch and not past_run else "")
            if missed:
                hint += (f" {missed} of them sit past a gap in the ids: page by the ids that "
                         "exist (keyset: id > the last one done), not by count(*).")
            if past_run:
                hint += (" Those users all come after a run of users with no sign-up event "
                         "(imported accounts, more of them in a row than a batch, which keep "
                         "created_at NULL): a backfill that stops when an UPDATE changes 0 rows, "
                         "or that takes 'the next batch of NULLs' from the start each time, "
                         "stops at that run; one that runs a fixed number of full batches "
                         "misses the last one (the last batch is partial). Page by id "
                         "(WHERE id > the last id "
                         "done, committing each batch) until no id is left.")
            raise CheckFailed(
                f"After the interrupted backfill and its resumption, {v['nulls']:,} users still "
                f"have {COLUMN} NULL (ids {', '.join(map(str, null_ids))}"
                f"{', …' if v['nulls'] > len(null_ids) else ''}): a second run must pick up "
                "everything the first left undone." + hint, str(v))
        if v["wrong_backfill"]:
            raise CheckFailed(
                f"{v['wrong_backfill']:,} users have a {COLUMN} other than their "
                f"{LEGACY_TABLE}.signed_up_at: copy each user's own instant, timestamptz to "
                "timestamptz (no AT TIME ZONE, no text, date or timestamp in between: the "
                f"backfill ran on a session whose TimeZone is {zone}, and a local time in the "
                "hour that repeats when clocks go back cannot say which pass it was).", str(v))
        if after != before:
            raise CheckFailed("The backfill changed the id or name of existing users (their "
                              "checksum differs); it must only set created_at.",
                              f"{before} → {after}")
        if redone:
            raise CheckFailed(f"The resumed backfill rewrote {redone:,} rows the first run had "
                              "already done: resume from where it stopped (a progress row "
                              "committed with each batch, or WHERE created_at IS NULL).")
        commits = first.commits + second.commits
        batches = -(-before[0] // batch)  # at least this many batches, whatever the plan
        floor = 0.8 * max(batches - 2, 0) * kwargs["pause"]
        idle = first.idle_outside_transactions() + second.idle_outside_transactions()
        if idle < floor:
            raise CheckFailed(
                f"Your backfill committed {commits} batches ({before[0]:,} users in batches of "
                f"{batch:,}) and spent only {idle:.3f} s between them with no transaction open "
                f"(pause={kwargs['pause']} s each: at least {floor:.3f} s expected): after each "
                "batch commits, sleep `pause` seconds, outside the transaction, so vacuum, "
                "replicas and the application keep up (a sleep inside the batch's transaction "
                "holds its row locks through the pause).",
                f"{first_seconds + second_seconds:.3f} s in all")
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
        on_column = c.execute("""
            SELECT i.indexrelid::regclass::text, am.amname, i.indisunique
            FROM pg_index i JOIN pg_attribute a
              ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
            WHERE i.indrelid = 'users'::regclass AND a.attname = %s AND i.indisvalid
              AND i.indpred IS NULL""", [COLUMN]).fetchall()
        indexed = [n for n, am, unique in on_column if am == "btree" and not unique]
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
    wrong = [(n, am, unique) for n, am, unique in on_column if am != "btree" or unique]
    if not indexed and wrong:
        name, am, unique = wrong[0]
        raise CheckFailed(
            f"The index {name} on {COLUMN} is "
            + (f"USING {am}: it serves {COLUMN} = x only (a {am} index cannot answer a range "
               "or an ORDER BY), so 'sign-ups per week' still reads the whole table."
               if am != "btree" else
               "UNIQUE: two users who sign up in the same microsecond (one transaction, now() "
               "is the same for both: a batch import) are refused with 23505.")
            + " Build a plain B-tree index: CREATE INDEX CONCURRENTLY users_created_at_idx ON "
            "users (created_at).", str(on_column))
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
    from ..tools.migrations_alembic import Plan, downgrade, make_environment, upgrade

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
    cfg = make_environment(lab.sqlalchemy_url)
    wl = live_workload(lab)
    at: dict[str, dict[str, Any]] = {}
    with wl:
        # one revision at a time, the catalogue after each: each downgrade must bring it back
        for rev in ("0001", "0002", "0003"):
            with wl.step(f"alembic upgrade {rev}"):
                upgrade(lab, plan, rev, cfg=cfg)
            with lab.connect(autocommit=True) as c:
                at[rev] = catalog_snapshot(c)
        with lab.connect(autocommit=True) as c:
            head = at["0003"]
            v_head = validation(c, COLUMN)
        for rev, undone, label in (("0002", "contract", "0003_contract"),
                                   ("0001", "backfill", "0002_backfill")):
            with wl.step(f"alembic downgrade {rev}"):
                downgrade(lab, plan, rev, cfg=cfg)
            with lab.connect(autocommit=True) as c:
                now = catalog_snapshot(c)
                v_now = validation(c, COLUMN)
            if now != at[rev]:
                raise CheckFailed(
                    f"`alembic downgrade {rev}` (rolling back only {label}) does not restore the "
                    f"schema users had at revision {rev}: downgrade_steps['{undone}'] must undo "
                    f"exactly what the {undone} did, nothing more (the expand's downgrade drops "
                    "the column) and nothing less.", "; ".join(snapshot_diff(at[rev], now)))
            if rev == "0002" and (v_now.get("nulls") is None or v_now.get("wrong_backfill")):
                raise CheckFailed(
                    "`alembic downgrade 0002` (rolling back only the contract) lost the "
                    f"backfilled values of users.{COLUMN}: undoing the contract keeps the data.",
                    str(v_now))
        with wl.step("alembic downgrade base"):
            downgrade(lab, plan, "base", cfg=cfg)
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
    script, spans = _script(statements, preamble_of(lab, run_ddl))
    findings = squawk(script)
    for f in findings:  # name the whole statement (one line), not the line squawk points at
        for first, last, text in spans:
            if first <= f.line <= last:
                f.statement = text
                break
    return script, findings


def _script(statements: list[str], preamble: list[str]) -> tuple[str, list[tuple[int, int, str]]]:
    """The migration as one SQL file, each statement with its own lines (a `-- comment` line
    stays a comment and the statement after it stays a statement), and each statement's first
    and last line (1-based) with its text on one line."""
    lines: list[str] = []
    spans = []
    for raw in [*preamble, *statements]:
        body = str(raw).strip().rstrip(";").rstrip()
        if not body:
            continue
        part = body.splitlines()
        # a `--` comment on the last line would swallow the ';' (and join the next statement)
        part = part + [";"] if "--" in part[-1] else part[:-1] + [part[-1] + ";"]
        text = " ".join(x for x in body.splitlines() if not x.strip().startswith("--"))
        spans.append((len(lines) + 1, len(lines) + len(part), " ".join(text.split())))
        lines += part
    return "\n".join(lines) + "\n", spans


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
    for f in findings:
        claim = NO_LOCK_CLAIM.search(explained.get(f.rule, ""))
        if claim and re.match(r"\s*ALTER\s+TABLE\b", f.statement, re.IGNORECASE):
            raise CheckFailed(
                f"squawk_explained[{f.rule!r}] says \"{claim.group(0)}\", but the statement "
                f"it explains, `{f.statement}`, is an ALTER TABLE: it takes ACCESS EXCLUSIVE "
                "on the table (brief, but every query queues behind it while it waits; that "
                "is why run_ddl gives it a lock_timeout). Explain why the finding is "
                "acceptable here with something true.", squawk_explained[f.rule])
    missing = sorted({f.rule for f in findings} - set(explained))
    if missing:
        raise CheckFailed(f"squawk reports {', '.join(missing)}, which squawk_explained does not "
                          "explain (one sentence each, at least five words, saying why it is "
                          "acceptable here).", "\n".join(str(f) for f in findings))
    return (f"squawk: no lock or rewrite findings; {len(findings)} other findings, each explained")


# Decoy runs keep the earlier exercises' check cells: a later check builds on what they
# applied (tests/test_contract.py reads this).
CHECKS_BUILD_ON_EARLIER = True
