"""Evidence about a migration that does not depend on timing luck.

The migrations challenge must tell a zero-downtime migration from a naive one
at *every* scale, including 5,000 rows where the naive one also takes a few
milliseconds. So instead of timing statements, this module looks at what they
do:

* :func:`probe_steps` runs each DDL statement while another session holds the
  lock an ordinary ``INSERT`` holds (``ROW EXCLUSIVE``, in an open
  transaction). A statement whose lock conflicts with writers then waits, and
  ``pg_locks`` says which lock it asked for; the statement runs with
  ``client_min_messages = debug1``, so PostgreSQL itself says whether it
  scanned the table (``verifying table "users"``), rewrote it (``rewriting
  table "users"``), built an index, or proved NOT NULL from a validated CHECK
  constraint (``existing constraints on column "users.created_at" are
  sufficient to prove that it does not contain nulls``). A statement that
  blocks writers *and* reads the whole table is the outage.
* :class:`RecordingConnection` wraps a psycopg connection and writes down every
  statement, its row count, its SQLSTATE and when it ran: how a check sees a
  backfill's batches and commits, or a retry loop's ``55P03`` errors. An
  ``on_statement`` callback runs after each one, while the transaction is still
  open (a check reads the locks it holds from ``pg_locks`` right then).
* :class:`RowLockWatch` holds a few rows the way the application does (``FOR
  SHARE`` in an open transaction) and, when a backend queues behind one, writes
  down what that backend's transaction holds at that instant (its xids, its
  locks on the table, the rows still locked by running transactions), then lets
  the row go; afterwards the rows each of those transactions wrote are counted
  by ``xmin``. A backfill that commits per batch shows one batch; one
  transaction for the whole run (savepoints, a DO loop, one giant UPDATE) shows
  everything it did.
* :func:`catalog_snapshot` is the schema of a table as the catalogue knows it
  (columns, types, nullability, defaults, constraints with ``convalidated``,
  indexes with ``indisvalid`` and definitions), for "downgrade restores it".
* :func:`original_rows_checksum` (``dataset.query_checksum``) and :func:`validation`
  compare data before and after.
* :func:`squawk` lints SQL with the squawk binary next to the interpreter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import psycopg
from psycopg import sql as pgsql

from ..data.dataset import query_checksum
from .sessions import Sessions
from .stress import StatementCursor, TrackedTransaction, in_transaction
from .workload import WRITER_ID_BASE

# Locks that stop INSERT/UPDATE/DELETE (they conflict with ROW EXCLUSIVE).
WRITE_BLOCKING = {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}
# ... and the one that also stops SELECT.
READ_BLOCKING = {"AccessExclusiveLock"}

LEGACY_TABLE = "signup_events"


def _url_of(target: Any) -> str:
    return getattr(target, "url", target)


# --------------------------------------------------------------------------
# the challenge's starting point


def prepare(lab: Any) -> int:
    """Create the legacy sign-up log the backfill reads from (idempotent); return its rows.

    Sign-up times were never stored in ``users``, but the analytics pipeline kept
    one event per sign-up. Times are spread over five years and increase with
    the id, as they would with a sequence.
    """
    with psycopg.connect(_url_of(lab), autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [LEGACY_TABLE]).fetchone()[0]
        if not exists:
            conn.execute(f"""
                CREATE TABLE {LEGACY_TABLE} AS
                SELECT id AS user_id,
                       timestamptz '2020-01-01 00:00:00+00'
                         + (id * interval '5 years') / greatest(m.max_id, 1) AS signed_up_at
                FROM users, (SELECT max(id) AS max_id FROM users WHERE id < {WRITER_ID_BASE}) m
                WHERE id < {WRITER_ID_BASE}""")
            conn.execute(f"ALTER TABLE {LEGACY_TABLE} ADD PRIMARY KEY (user_id)")
            conn.execute(f"ANALYZE {LEGACY_TABLE}")
        return conn.execute(f"SELECT count(*) FROM {LEGACY_TABLE}").fetchone()[0]


def reset_migration(lab: Any, column: str = "created_at") -> None:
    """Undo the migration so a check can run it from the start (drops index and column)."""
    with psycopg.connect(_url_of(lab), autocommit=True) as conn:
        for (name,) in conn.execute("""
                SELECT i.indexrelid::regclass::text FROM pg_index i
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                WHERE i.indrelid = 'users'::regclass AND a.attname = %s""", [column]).fetchall():
            conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        conn.execute(pgsql.SQL("ALTER TABLE users DROP COLUMN IF EXISTS {}").format(
            pgsql.Identifier(column)))


# --------------------------------------------------------------------------
# recording what a function sends


@dataclass
class Statement:
    sql: str
    start: float
    end: float
    rowcount: int = -1
    sqlstate: str | None = None
    message: str = ""
    in_txn: bool = False  # a transaction was still open after it
    lock_timeout: str | None = None  # after a 55P03, the session's lock_timeout (when readable)


class Interrupted(BaseException):
    """Raised by a RecordingConnection after N commits: a simulated crash mid-backfill.

    A BaseException, like KeyboardInterrupt, so that an ``except Exception`` in
    the code under test cannot swallow the crash.
    """


class RecordingConnection:
    """A psycopg connection that writes down each statement (and can 'crash' after N commits).

    A COMMIT is recorded whether it is sent as SQL or by ``conn.commit()``; in
    autocommit mode every statement outside ``BEGIN`` counts as its own commit.
    """

    def __init__(self, conn: psycopg.Connection, interrupt_after_commits: int | None = None,
                 on_statement: Callable[[Statement], None] | None = None,
                 read_lock_timeout: bool = False) -> None:
        self._conn = conn
        self._on_statement = on_statement  # called after each statement, its transaction open
        # after a 55P03 on an idle autocommit connection, read the lock_timeout in effect
        self._read_lock_timeout = read_lock_timeout
        self.statements: list[Statement] = []
        self.ended_at: list[float] = []  # when each transaction ended (commit or rollback)
        self.interrupt_after = interrupt_after_commits
        self._t0 = time.perf_counter()
        self.commits = 0
        self.txn_rows: list[int] = []  # rows changed by each committed transaction
        self._open_rows = 0

    @property
    def raw(self) -> psycopg.Connection:
        return self._conn

    def _text(self, query: Any) -> str:
        return query.as_string(self._conn) if hasattr(query, "as_string") else str(query)

    def _statement(self, call: Any, query: Any, cursor: Any) -> Any:
        text = self._text(query)
        st = Statement(text, time.perf_counter() - self._t0, 0.0)
        self.statements.append(st)
        try:
            result = call()
        except psycopg.Error as exc:
            st.sqlstate = exc.sqlstate
            st.message = (exc.diag.message_primary if getattr(exc, "diag", None) else "") or str(exc)
            st.end = time.perf_counter() - self._t0
            st.in_txn = in_transaction(self._conn)
            if self._read_lock_timeout and exc.sqlstate == "55P03":
                st.lock_timeout = self._setting("lock_timeout")
            raise
        st.end = time.perf_counter() - self._t0
        st.in_txn = in_transaction(self._conn)
        cur = cursor()
        st.rowcount = cur.rowcount
        # the command tag, not the text: a WITH … DELETE … INSERT counts as the INSERT it is
        tag = (cur.statusmessage or "").split(" ")[0].upper()
        if tag in ("INSERT", "UPDATE", "DELETE", "MERGE") and st.rowcount > 0:
            self._open_rows += st.rowcount
        if self._on_statement is not None:
            self._on_statement(st)
        self._after(text)
        return result

    def _setting(self, name: str) -> str | None:
        """A setting of the session, read without opening or touching a transaction."""
        if not self._conn.autocommit or in_transaction(self._conn):
            return None
        try:
            return self._conn.execute("SELECT current_setting(%s)", [name]).fetchone()[0]
        except psycopg.Error:
            return None

    def idle_outside_transactions(self) -> float:
        """Seconds between statements with no transaction open (a pause between batches)."""
        idle, ends = 0.0, sorted(self.ended_at)
        for prev, nxt in zip(self.statements, self.statements[1:]):
            if not prev.in_txn:
                idle += max(0.0, nxt.start - prev.end)
            else:  # idle only from the moment that transaction ended, if it did
                done = [t for t in ends if prev.end <= t <= nxt.start]
                if done:
                    idle += max(0.0, nxt.start - done[0])
        return idle

    def _after(self, text: str) -> None:
        words = text.strip().rstrip(";").lower().split()
        in_txn = in_transaction(self._conn)
        committed = (words[:1] in (["commit"], ["end"])) or (self._conn.autocommit and not in_txn
                                                            and words[:1] != ["rollback"])
        if words[:1] == ["rollback"]:
            self._open_rows = 0
            if not in_txn:
                self._ended()
        if committed and not in_txn:
            self._committed()

    def _ended(self) -> None:
        self.ended_at.append(time.perf_counter() - self._t0)

    def _committed(self) -> None:
        self._ended()
        if self._open_rows:
            self.txn_rows.append(self._open_rows)
            self.commits += 1
        self._open_rows = 0
        if self.interrupt_after is not None and self.commits >= self.interrupt_after:
            self.interrupt_after = None
            raise Interrupted(f"simulated crash after {self.commits} committed batches")

    # the psycopg API a learner's function is likely to use
    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        holder: list[Any] = []
        self._statement(lambda: holder.append(self._conn.execute(query, params, **kwargs)), query,
                  lambda: holder[0])
        return holder[0]

    def cursor(self, *args: Any, **kwargs: Any) -> StatementCursor:
        return StatementCursor(self, self._conn.cursor(*args, **kwargs))

    def commit(self) -> None:
        self._conn.commit()
        self.statements.append(Statement("commit", time.perf_counter() - self._t0,
                                         time.perf_counter() - self._t0))
        self._committed()

    def rollback(self) -> None:
        self._conn.rollback()
        self._ended()
        self._open_rows = 0

    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        def ended(committed: bool) -> None:
            if committed:
                self._committed()
            else:
                self._ended()
                self._open_rows = 0

        return TrackedTransaction(self._conn, ended, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # conn.autocommit = True and the like belong to the real connection
        if name.startswith("_") or name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._conn, name, value)

    _OWN = frozenset({"statements", "interrupt_after", "commits", "txn_rows", "ended_at"})

    def __enter__(self) -> "RecordingConnection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._conn.__exit__(*exc)

    def errors(self, sqlstate: str | None = None) -> list[Statement]:
        return [s for s in self.statements if s.sqlstate and (sqlstate is None
                                                              or s.sqlstate == sqlstate)]


# --------------------------------------------------------------------------
# rows held by the application: what queues behind them


@dataclass
class RowWait:
    """What a backend's transaction held when it queued behind one of the watch's rows."""

    key: Any  # the row it queued for
    pid: int
    xids: list[str]  # its transaction's xids at that instant (top level and subtransactions)
    table_locks: list[tuple[str, bool]]  # (mode, granted) of its locks on the table
    rows_held: int = -1  # rows locked or written by a running transaction, counted while it waited
    rows_written: int = -1  # rows of the table whose xmin is one of ``xids`` (counted afterwards)

    @property
    def rows(self) -> int:
        """The most rows its transaction was seen to hold or write."""
        return max(self.rows_held, self.rows_written)


class RowLockWatch:
    """Hold a few rows as the application does; record what queues behind them, then let go.

    ``with RowLockWatch(lab, [7, 4999]) as watch:`` locks each row ``FOR SHARE``
    from its own connection, in an open transaction (what an application
    transaction that read a user to update it holds). A thread watches the
    server's lock graph (``pg_blocking_pids``): when a backend queues behind one
    of the rows, it reads that backend's xids and table locks from ``pg_locks``
    and counts the rows whose ``xmax`` is a transaction still running (rows
    updated or locked and not yet committed: subtransactions included, which
    ``pg_locks`` forgets once their savepoint is released), then ends the row's
    transaction, so the backend goes on at once. On exit every row still held
    is released and :attr:`waits` gets ``rows_written``: how many rows of the
    table carry one of that transaction's xids as ``xmin``. Only the watched
    code should write to the table's rows meanwhile (inserts of new rows do not
    count: their ``xmax`` is 0).

    Deterministic: whether an UPDATE queues behind a ``FOR SHARE`` row lock is a
    property of the lock modes, and the snapshot is taken while it waits.
    """

    def __init__(self, target: Any, keys: Sequence[Any], table: str = "users",
                 key: str = "id", poll: float = 0.003) -> None:
        self.url = _url_of(target)
        self.table, self.key, self.poll = table, key, poll
        self.keys = list(dict.fromkeys(keys))
        self.waits: list[RowWait] = []
        self.error: BaseException | None = None
        self._holders: dict[Any, psycopg.Connection] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    def __enter__(self) -> "RowLockWatch":
        query = pgsql.SQL("SELECT 1 FROM {} WHERE {} = %s FOR SHARE").format(
            pgsql.Identifier(self.table), pgsql.Identifier(self.key))
        try:
            for k in self.keys:
                conn = psycopg.connect(self.url, autocommit=False,
                                       application_name="lab row holder")
                self._holders[k] = conn
                conn.execute(query, [k])
        except BaseException:
            self._release_all()
            raise
        self._thread = threading.Thread(target=self._watch, daemon=True, name="row-lock-watch")
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._release_all()
        self.count_rows()

    @property
    def held(self) -> list[Any]:
        """The rows still held (the watched code never reached them)."""
        with self._mutex:
            return list(self._holders)

    def _release(self, key: Any) -> None:
        with self._mutex:
            conn = self._holders.pop(key, None)
        if conn is not None:
            try:
                conn.rollback()
            finally:
                conn.close()

    def _release_all(self) -> None:
        for k in self.held:
            self._release(k)

    def _watch(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True,
                                 application_name="lab row watch") as mon:
                while not self._stop.is_set() and self.held:
                    with self._mutex:
                        by_pid = {c.info.backend_pid: k for k, c in self._holders.items()}
                    for pid, blockers in mon.execute(
                            "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                            "AND NOT pid = ANY(%s)", [list(by_pid)]).fetchall():
                        mine = [by_pid[b] for b in blockers if b in by_pid]
                        if not mine:
                            continue
                        xids = [r[0] for r in mon.execute(
                            "SELECT transactionid::text FROM pg_locks WHERE pid = %s "
                            "AND locktype = 'transactionid' AND granted", [pid]).fetchall()]
                        locks = [(m, g) for m, g in mon.execute(
                            "SELECT mode, granted FROM pg_locks WHERE pid = %s "
                            "AND locktype = 'relation' AND relation = to_regclass(%s)",
                            [pid, self.table]).fetchall()]
                        wait = RowWait(mine[0], pid, xids, locks)
                        wait.rows_held = self._rows_held(mon, list(by_pid.values()))
                        self.waits.append(wait)
                        for k in mine:
                            self._release(k)
                    self._stop.wait(self.poll)
        except BaseException as exc:  # never leave the watched code queued behind a row
            self.error = exc
        finally:
            self._release_all()

    def _rows_held(self, mon: psycopg.Connection, ours: list[Any]) -> int:
        """Rows whose xmax is a running transaction (our own row holders' rows left out)."""
        # xmax is a 32-bit xid; pg_xact_status wants the 64-bit one: the one of that
        # epoch nearest to the snapshot's horizon (an xid wraps every 2^32)
        query = pgsql.SQL("""
            WITH h AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS nxt),
                 x AS (SELECT (h.nxt & -4294967296) | t.xmax::text::bigint AS x64, h.nxt
                       FROM {table} t, h WHERE t.xmax <> '0'::xid AND NOT t.{key} = ANY(%s))
            SELECT count(*) FROM x WHERE pg_xact_status((CASE
                WHEN x.x64 - x.nxt > 2147483648 THEN x.x64 - 4294967296
                WHEN x.nxt - x.x64 > 2147483648 THEN x.x64 + 4294967296
                ELSE x.x64 END)::text::xid8) = 'in progress'
            """).format(table=pgsql.Identifier(self.table), key=pgsql.Identifier(self.key))
        try:
            return mon.execute(query, [ours]).fetchone()[0]
        except psycopg.Error:  # a MultiXactId read as an xid, say: the xmin count still holds
            return -1

    def count_rows(self) -> list[RowWait]:
        """Fill in ``rows_written`` for each wait (once the watched code is done)."""
        pending = [w for w in self.waits if w.rows_written < 0]
        if pending:
            query = pgsql.SQL("SELECT count(*) FROM {} WHERE xmin::text = ANY(%s)").format(
                pgsql.Identifier(self.table))
            with psycopg.connect(self.url, autocommit=True) as conn:
                for w in pending:
                    w.rows_written = conn.execute(query, [w.xids]).fetchone()[0] if w.xids else 0
        return self.waits


# --------------------------------------------------------------------------
# the lock and scan probe


@dataclass
class StepEvidence:
    """What one DDL statement did, by PostgreSQL's own account."""

    sql: str
    lock_awaited: str = ""  # the lock it queued for behind a writer ("" = did not wait)
    lock_type: str = ""  # relation | virtualxid | transactionid
    messages: list[str] = field(default_factory=list)  # DEBUG1 lines about the table
    rewrote: bool = False
    scanned: bool = False  # verified or indexed every row
    proved_not_null: bool = False  # NOT NULL proved from a validated CHECK, no scan
    error: str = ""
    seconds: float = 0.0

    @property
    def blocks_writes(self) -> bool:
        return self.lock_type == "relation" and self.lock_awaited in WRITE_BLOCKING

    @property
    def blocks_reads(self) -> bool:
        return self.lock_type == "relation" and self.lock_awaited in READ_BLOCKING

    @property
    def outage(self) -> bool:
        """It holds a lock that stops writers (or everyone) while it reads the whole table."""
        return self.blocks_writes and (self.scanned or self.rewrote)

    def verdict(self) -> str:
        if self.error:
            return "ERROR " + self.error
        if self.outage:
            who = "reads and writes" if self.blocks_reads else "writes"
            what = "rewrites" if self.rewrote else "scans"
            return f"OUTAGE: blocks {who} while it {what} the whole table"
        if self.blocks_writes:
            who = "reads and writes" if self.blocks_reads else "writes"
            return f"blocks {who} for a moment (catalogue only)"
        if self.lock_type == "virtualxid":
            return "waits for running transactions, blocks nobody"
        return "blocks nobody"

    def row(self) -> tuple[str, str, str, str]:
        work = ("rewrite" if self.rewrote else "scan" if self.scanned
                else "proof from CHECK" if self.proved_not_null else "catalogue only")
        lock = self.lock_awaited or "(no conflict)"
        if self.lock_type == "virtualxid":
            lock = "waits for the writer's transaction (virtualxid)"
        return (re.sub(r"\s+", " ", self.sql).strip(), lock,
                work, self.verdict())


def _classify(ev: StepEvidence, table: str) -> None:
    quoted = f'"{table}"'
    for m in ev.messages:
        if m.startswith("rewriting table " + quoted):
            ev.rewrote = True
        elif m.startswith("verifying table " + quoted):
            ev.scanned = True
        elif m.startswith("building index") and f"on table {quoted} " in m + " ":
            # "... serially" or "... with request for N parallel workers" (big tables)
            ev.scanned = True
        elif "are sufficient to prove that it does not contain nulls" in m:
            ev.proved_not_null = True


def probe_steps(target: Any, statements: Iterable[str], table: str = "users",
                timeout: float = 3600.0) -> list[StepEvidence]:
    """Run each statement (for real) while a writer holds ROW EXCLUSIVE on ``table``.

    The writer's transaction is committed as soon as the statement is seen
    waiting (or finishing), so every statement completes; stopping at the
    first error. Deterministic: whether a statement conflicts with a writer is
    a property of its lock mode, and the scan/rewrite messages are PostgreSQL's.
    """
    out: list[StepEvidence] = []
    with Sessions(target, "W", "M", timeout=timeout, application_name="lab probe") as s, \
            psycopg.connect(_url_of(target), autocommit=True) as monitor:
        messages: list[str] = []
        s["M"].conn.add_notice_handler(
            lambda d: messages.append(d.message_primary or "") if d.severity == "DEBUG" else None)
        s.M("SET client_min_messages = debug1")
        for stmt in statements:
            ev = StepEvidence(stmt)
            messages.clear()
            s.W("BEGIN")
            s.W(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")  # what an INSERT holds
            t0 = time.perf_counter()
            step = s.M(stmt)
            if step.blocked:
                # straight from pg_locks: Sessions.locks() leaves out virtualxid locks,
                # and waiting for a virtualxid is how CONCURRENTLY waits for writers
                row = monitor.execute("SELECT locktype, mode FROM pg_locks WHERE pid = %s "
                                      "AND NOT granted LIMIT 1", [s.pid("M")]).fetchone()
                if row:
                    ev.lock_type, ev.lock_awaited = row
            s.W("COMMIT")
            if step.blocked and step.final is None and s["M"].pending is not None:
                # still queued behind a backend outside the probe (an application transaction
                # that was already running, an autovacuum): wait for it to finish, then let
                # the sessions record the outcome
                s["M"].pending[0].result(timeout=timeout)
                s.W("SELECT 1")
            final = step.final if step.blocked else step
            ev.seconds = time.perf_counter() - t0
            if final is not None and final.failed:
                ev.error = f"{final.sqlstate}: {final.message}"
            ev.messages = list(messages)
            _classify(ev, table)
            out.append(ev)
            if ev.error:
                break
    return out


def evidence_table(evidence: list[StepEvidence]) -> str:
    """The probe's findings, one line per statement (deterministic text)."""
    lines = []
    for sql_text, lock, work, verdict in (e.row() for e in evidence):
        lines.append(f"{sql_text}\n    lock: {lock}; work: {work}; {verdict}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# catalogue and data


def catalog_snapshot(conn: psycopg.Connection, table: str = "users") -> dict[str, Any]:
    """The table's schema from the catalogue, in a form that compares with ==."""
    columns = conn.execute("""
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attname""", [table]).fetchall()
    constraints = conn.execute("""
        SELECT conname, contype, convalidated, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE conrelid = %s::regclass ORDER BY conname""", [table]).fetchall()
    indexes = conn.execute("""
        SELECT c.relname, i.indisvalid, i.indisready, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = %s::regclass ORDER BY c.relname""", [table]).fetchall()
    return {"columns": [tuple(r) for r in columns], "constraints": [tuple(r) for r in constraints],
            "indexes": [tuple(r) for r in indexes]}


def snapshot_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Human-readable differences between two catalogue snapshots (empty when equal)."""
    out = []
    for key in ("columns", "constraints", "indexes"):
        only_a = [r for r in a[key] if r not in b[key]]
        only_b = [r for r in b[key] if r not in a[key]]
        out += [f"{key}: before {r}" for r in only_a] + [f"{key}: after {r}" for r in only_b]
    return out


def original_rows_checksum(conn: psycopg.Connection) -> tuple[int, str]:
    """Checksum of the columns the migration must not touch, over the pre-existing rows."""
    return query_checksum(conn, f"SELECT id, name FROM users WHERE id < {WRITER_ID_BASE}")


def events_checksum(conn: psycopg.Connection) -> tuple[int, str]:
    """Checksum of the sign-up log of the pre-existing users (the backfill's source, read only).

    Times are compared in UTC, so the checksum does not depend on the session's TimeZone.
    """
    return query_checksum(conn, f"SELECT user_id, signed_up_at AT TIME ZONE 'UTC' "
                                f"FROM {LEGACY_TABLE} WHERE user_id < {WRITER_ID_BASE}")


def validation(conn: psycopg.Connection, column: str = "created_at") -> dict[str, Any]:
    """Counts, NULLs, wrong backfills, constraint and index validity after the migration."""
    ident = pgsql.Identifier(column).as_string(conn)
    has_col = conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass "
                           "AND attname = %s AND NOT attisdropped", [column]).fetchone()[0]
    out: dict[str, Any] = {"rows": conn.execute("SELECT count(*) FROM users").fetchone()[0]}
    if has_col:
        out["nulls"] = conn.execute(f"SELECT count(*) FROM users WHERE {ident} IS NULL").fetchone()[0]
        out["wrong_backfill"] = conn.execute(f"""
            SELECT count(*) FROM users u JOIN {LEGACY_TABLE} s ON s.user_id = u.id
            WHERE u.{ident} IS DISTINCT FROM s.signed_up_at""").fetchone()[0]
    out["unvalidated_constraints"] = [r[0] for r in conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'users'::regclass "
        "AND NOT convalidated").fetchall()]
    out["invalid_indexes"] = [r[0] for r in conn.execute(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'users'::regclass "
        "AND NOT indisvalid").fetchall()]
    return out


def relfilenode(conn: psycopg.Connection, table: str = "users") -> int:
    return conn.execute("SELECT pg_relation_filenode(%s::regclass)", [table]).fetchone()[0]


# --------------------------------------------------------------------------
# squawk


def squawk_binary() -> str:
    """The squawk that came with the lab's environment (next to the interpreter), else PATH."""
    here = Path(sys.executable).parent / "squawk"
    if here.exists():
        return str(here)
    found = shutil.which("squawk")
    if not found:
        raise FileNotFoundError("squawk is not installed: pip install squawk-cli")
    return found


@dataclass
class Finding:
    rule: str
    line: int  # 1-based
    message: str
    statement: str

    def __str__(self) -> str:
        return f"line {self.line} [{self.rule}] {self.message}\n    {self.statement}"


def squawk(sql_text: str, pg_version: str = "15") -> list[Finding]:
    """Lint SQL with squawk; return its findings (squawk exits 1 when there are any)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "migration.sql"
        path.write_text(sql_text)
        proc = subprocess.run([squawk_binary(), "--reporter", "json", f"--pg-version={pg_version}",
                               str(path)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "NO_COLOR": "1"})
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"squawk failed: {proc.stderr.strip()}")
    lines = sql_text.splitlines()
    findings = []
    for item in json.loads(proc.stdout or "[]"):
        line = int(item.get("line", 0))
        findings.append(Finding(item["rule_name"], line + 1, item["message"],
                                lines[line].strip() if line < len(lines) else ""))
    return findings


def migration_script(statements: Iterable[str], preamble: Iterable[str] = ()) -> str:
    """One SQL file: the session settings a runner sends first, then each statement."""
    parts = [p.strip().rstrip(";") + ";" for p in preamble]
    parts += [re.sub(r"\s+", " ", s).strip().rstrip(";") + ";" for s in statements]
    return "\n".join(parts) + "\n"


def run_in_thread(func: Any, *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``func(*args)`` in a daemon thread; the dict gets 'result' or 'error'."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = func(*args)
        except BaseException as exc:  # reported to the caller, never lost
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box
