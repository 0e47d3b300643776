"""Checks for 01_large_datasets: a streaming loader, and the maintenance after a load.

``load_events(conn, rows)`` is judged on three properties, each by its own check,
always on a stream made for this check run (:func:`labs.course.adversarial.rng`):
a non-round length (so any batch size leaves a last, partial batch), ids beyond
the 32-bit range, instants with fractions of a second, in UTC and in other
offsets, at and around midnights, and values that break hand-rolled loaders
(tabs, newlines, carriage returns, backslashes, ``\\N``, ``\\.``, quotes, emoji,
NULLs). ``events`` already holds a few rows: a loader appends, never replaces.

The learner writes COPY's text format: ``copy_line(row)`` (escaping, NULL, the
instant with its offset) and the streaming loop that writes its lines. psycopg's
``Copy.write_row``, which escapes for them (and the lab's loaders built on it),
refuses to run while the loader is called (:func:`_own_text`); batched INSERTs
with parameters remain allowed, and are judged like any other loader.

Every call goes through a :class:`~labs.course.left_behind.Caller` connection:
autocommit off, non-default timeouts, a ``TimeZone`` that is not UTC. The
loader may commit or leave the commit to the caller (the check then commits);
it must leave the connection open, not aborted, holding no lock, with its
settings and its autocommit as found. The rows the check expects never sit in
a table the loader can read: they are loaded into a temporary table of the
check's own session after the loader ran (q2's timed reference COPY goes into
a table that is dropped before the loader starts). The rest of the database
is watched: ``events`` keeps its definition, storage and file (no TRUNCATE, no
DROP/CREATE, no UNLOGGED), no relation appears or disappears, the dataset's
tables keep their rows.

* q1, every row exactly: count and checksum equal those of a reference COPY
  of the same rows; a difference is explained (the last partial batch, a
  shifted or truncated timestamp, an escaping mistake, the rows found before).
  Before any load, copy_line (found next to load_events) must write instants that
  read back the same in a session of another TimeZone. events carries DBA storage
  parameters, and rows with ids above the stream's (a loader that resumes after
  max(id) loses the stream). Partway through the stream (inside the row iterator,
  while the loader waits for its next row) another session reads events and inserts
  into it (rolled back) with a short lock_timeout: a loader that LOCKs the table makes
  them wait; the loader may hold no lock on events above ROW EXCLUSIVE (SHARE UPDATE
  EXCLUSIVE, from LOCK TABLE or ALTER TABLE ... SET, blocks VACUUM and ANALYZE); the
  check sees no row of the stream yet, and finds no connection the loader opened
  itself; once the stream is exhausted another session holds ROW EXCLUSIVE on events
  until the loader returns, and the check notes it if the loader waits behind it (a
  LOCK TABLE before a final INSERT ... SELECT). No temporary table may be left in the
  caller's session, nor a TimeZone changed inside the transaction left to the caller. An
  empty stream loads nothing, without error. Then three loads that fail partway, after any
  batch a loader may use: a row PostgreSQL refuses (a customer_id beyond bigint), the
  caller's statement cancelled by another session (QueryCanceled, an OperationalError: a
  loader that retries re-reads a consumed iterator and loses rows; one between two INSERTs
  is not cancelled, and must then load every row), and the iterator itself raising. The exception must reach the caller (a loader that logs and carries
  on hides a failed load), and nothing of the stream may be committed (the job
  reruns the whole feed; events has no key against rows loaded twice).
* q2, throughput: the same comparison on a larger stream, and the learner's
  rows/s must reach ``MIN_COPY_RATIO`` of the reference COPY *measured in the
  same check* (never an absolute time). Both timings include generating the
  rows, which costs the same for both. A loader that is clearly too slow is
  stopped by a deadline inside the stream; a borderline result is measured once
  more and the better of the two runs counts.
* q3, memory: one stream of about ``Q3_ROWS`` rows, handed out by an iterator
  that reads tracemalloc's *current* size as the loader takes rows. Its lowest
  value inside each of two windows (whole chunks of the generator, each longer
  than the largest batch allowed, the first after it) is what the loader keeps
  between batches; it must not grow by ``Q3_BYTES_PER_ROW`` per row from one
  window to the next (a list of every id costs about 40, an ``array`` of them 8,
  a streaming loader under 4; a loader that streams through COPY alone, with no
  executemany, measures under 1 and is held to ``Q3_COPY_BYTES_PER_ROW``, so an array
  of 4-byte values per row fails there), and the peak must stay under ``Q3_PEAK_SHARE`` of
  a list of all the rows. Every row must be loaded, and by row ``Q3_SENT_AT`` some must
  have reached the server (events' file, pg_stat_progress_copy, or a statement run
  since row 1): a loader that spools the feed to a file first does none of these.

q4 runs the learner's after-load SQL on a freshly loaded table (autovacuum off,
so nothing happens behind the check's back) and asserts its effects: column
statistics for every column (pg_stats), read from another session, and Index
Only Scans over a seeded range and over the whole index that read no heap page
(EXPLAIN's "Heap Fetches: 0"), which needs the visibility map VACUUM sets. The SQL
runs while another session holds SHARE UPDATE EXCLUSIVE on events (autovacuum at work
after the load) until the learner's session waits for it: SKIP_LOCKED skips the table.
The rows, the index (its file too: REINDEX or DROP and CREATE rebuild it) and
the table's file stay as they were (a VACUUM FULL rewrites the table under an
ACCESS EXCLUSIVE lock), the other tables are untouched, their rows and their
manual VACUUM and ANALYZE counts (a VACUUM without a table name processes all of
them), and no transaction is left open.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import secrets
import threading
import time
import tracemalloc
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

import psycopg
from psycopg import pq, sql

from ..course import adversarial as adv
from ..course.checking import CheckFailed, require
from ..course.left_behind import Caller, client_state, untouched
from ..data import loading as ld
from ..data.dataset import table_checksum
from ..tools import explain as ex

TABLE = "events"
Q1_ROWS = 3_000
Q1_TRICKY_SHARE = 0.25  # one row in four carries a value that needs escaping
Q2_MAX_ROWS = 200_000
MIN_COPY_RATIO = 0.3
DEADLINE_FACTOR = 2.0  # stop a loader at this many times the slowest passing time
Q3_ROWS = 40_000  # about; never fewer than the end of the last window
# Two windows of the stream, whole chunks of loading.events (4,096 rows) so that the
# generator holds the same in both, each longer than the largest batch allowed and the
# first after it: the low point of the memory held in each must be the same.
Q3_WINDOWS = ((3 * 4_096, 6 * 4_096), (6 * 4_096, 9 * 4_096))
Q3_MAX_BATCH = 5_000
Q3_SAMPLE_EVERY = 7
# growth allowed between the windows' low points (a list of ids: ~40). Not lower: a correct
# loader of executemany batches measures 1 to 6 here (psycopg's pipeline keeps a little per
# batch, and more or less of it depending on timing), so an array('i') of ids (4) passes.
Q3_BYTES_PER_ROW = 6
# A loader that streams through COPY (copy.write, no executemany, a handful of statements)
# keeps nothing of psycopg's between batches: it measures 0 to 0.1 here, so the limit for it
# is lower, and an array of 4-byte values kept per row (4.1) no longer fits under it.
Q3_COPY_BYTES_PER_ROW = 2
Q3_PEAK_SHARE = 0.5  # and the peak under this share of a list of all the rows
Q3_SENT_AT = Q3_WINDOWS[-1][1] + 1  # by this row, some rows must have reached the server
Q4_INDEX = "events_customer_id_idx"
Q4_QUERY = "SELECT count(*) FROM events WHERE customer_id <= {limit}"
Q1_FAIL_ROWS = 8_000  # the failing row comes after 3/4 of them: after any batch allowed
PROBE_LOCK_TIMEOUT = "1s"
PROBES = (("a reader's SELECT count(*) FROM events", "SELECT count(*) FROM events"),
          ("a writer's INSERT INTO events",
           "INSERT INTO events (id, customer_id, kind, occurred_at) "
           "VALUES (-1, 1, 'page_view', now())"))
PLANTED_ROWS = 40  # about this many rows are in events before the loader runs

# Text a hand-rolled loader gets wrong, beyond loading.TRICKY: COPY escapes
# spelled literally, a lone or trailing backslash, a bare carriage return,
# Unicode line and paragraph separators (str.splitlines() splits on them),
# DEL, and text that is only whitespace.
EXTRA_TRICKY = (
    "ends with a backslash\\", "\\", "\r", "bare\rreturn", "\\t is not a tab",
    "\\n is not a newline", "\\r\\n", "\\\\N", "N", "\\N ", " \\N", "\t", "\n", "\t\n",
    "line\u2028separator", "para\u2029graph", "del\x7fete", "\\x41 stays as typed",
    "\\101 octal stays", "end of data\n\\.", "100%_like\\_trap", "ÅNGSTRÖM ångström Ångström",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 outside the BMP", "\"quoted, with comma\"",
)
# offsets a feed's timestamps arrive in: the instant is what counts
OFFSETS = tuple(dt.timezone(dt.timedelta(minutes=m))
                for m in (-210, 345, 765, -600, 570, 60, -1))


# --------------------------------------------------------------------------
# the stream


@dataclass(frozen=True)
class Stream:
    """One seeded stream of event rows: what the check hands the loader, and
    what it loads itself (the same rows) to know what to expect."""

    n: int
    seed: int
    start_id: int
    customers: int
    tricky_share: float = ld.TRICKY_SHARE

    def __iter__(self) -> Iterator[ld.Row]:
        r = random.Random(self.seed)
        midnight = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
            days=r.randrange(3 * 365))
        zone = r.choice(OFFSETS)
        edges = (adv.day_edges(midnight.date(), zone) + adv.instants_around(midnight)
                 + adv.day_edges(midnight.date(), dt.timezone.utc))
        odd_share = max(self.tricky_share, 0.05)
        rand = r.random
        for row in ld.events(self.n, seed=self.seed, customers=self.customers,
                             start_id=self.start_id, tricky_share=self.tricky_share):
            if rand() >= odd_share:
                yield row
                continue
            row_id, customer, kind, when, amount, detail = row
            pick = rand()
            if pick < 0.15:
                when = r.choice(edges)
            elif pick < 0.55:  # fractions of a second, the boundary ones included
                when = when + dt.timedelta(microseconds=r.choice((1, 500_000, 999_999,
                                                                  r.randrange(1, 10**6))))
            if rand() < 0.5:  # the same instant, written in another offset
                when = when.astimezone(r.choice(OFFSETS))
            if rand() < 0.5:
                detail = r.choice(EXTRA_TRICKY)
            yield (row_id, customer, kind, when, amount, detail)


def _stream(lab: Any, around: int, *, spread: float = 0.1, tricky_share: float = ld.TRICKY_SHARE,
            rand: random.Random | None = None) -> Stream:
    """A stream of about ``around`` rows (never a round number), seeded by this check run."""
    r = rand or adv.rng()
    return Stream(n=adv.non_round(around, rand=r, spread=spread), seed=r.randrange(1, 2**31),
                  start_id=r.randrange(2**31, 2**40), customers=lab.scale.customers,
                  tricky_share=tricky_share)


def _planted(lab: Any, stream: Stream) -> Stream:
    """The rows events holds before the loader runs: ids just above the stream's (a feed of
    late events, a backfill: a loader that skips ids at or below max(id) loses them all)."""
    r = adv.rng()
    n = adv.non_round(PLANTED_ROWS, rand=r)
    return Stream(n=n, seed=r.randrange(1, 2**31),
                  start_id=stream.start_id + stream.n + r.randrange(1, 999),
                  customers=lab.scale.customers, tricky_share=0.5)


# --------------------------------------------------------------------------
# what the loader must not change


def _catalog(conn: psycopg.Connection) -> dict[str, Any]:
    """The facts about events and the schema a loader has no business changing."""
    one = lambda q: conn.execute(q).fetchall()  # noqa: E731
    return {
        "file": one("SELECT oid, relfilenode FROM pg_class WHERE oid = to_regclass('events')"),
        "persistence": one("SELECT relpersistence FROM pg_class WHERE oid = to_regclass('events')"),
        "options": one("SELECT coalesce(reloptions::text, '') FROM pg_class "
                       "WHERE oid = to_regclass('events')"),
        "columns": one("SELECT attname, format_type(atttypid, atttypmod), attnotnull "
                       "FROM pg_attribute WHERE attrelid = to_regclass('events') AND attnum > 0 "
                       "AND NOT attisdropped ORDER BY attnum"),
        "indexes": one("SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) "
                       "FROM pg_index WHERE indrelid = to_regclass('events') ORDER BY 1"),
        # a rebuilt index (REINDEX, DROP and CREATE) has the same definition, not the same file
        "index_files": one("SELECT indexrelid::regclass::text, indexrelid::int8, "
                           "pg_relation_filenode(indexrelid)::int8 FROM pg_index "
                           "WHERE indrelid = to_regclass('events') ORDER BY 1"),
        "rules": one("SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass('events') "
                     "UNION ALL SELECT conname FROM pg_constraint "
                     "WHERE conrelid = to_regclass('events') "
                     "UNION ALL SELECT rulename FROM pg_rewrite "
                     "WHERE ev_class = to_regclass('events') ORDER BY 1"),
        "relations": one("SELECT n.nspname || '.' || c.relname FROM pg_class c "
                         "JOIN pg_namespace n ON n.oid = c.relnamespace "
                         "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                         "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' "
                         "AND c.relkind IN ('r', 'v', 'm', 'i', 'S', 'p', 'f') ORDER BY 1"),
        "defaults": one("SELECT coalesce(setconfig::text, '') FROM pg_db_role_setting s "
                        "JOIN pg_database d ON d.oid = s.setdatabase "
                        "WHERE d.datname = current_database() ORDER BY 1"),
    }


def _catalog_verdict(before: dict[str, Any], after: dict[str, Any], who: str) -> None:
    if after == before:
        return
    if not after["file"]:
        raise CheckFailed(f"{who} dropped the events table. The table belongs to the schema, not "
                          "to the loader: append rows to it, never drop or re-create it.")
    if after["file"][0][0] != before["file"][0][0]:
        raise CheckFailed(
            f"{who} dropped events and created a new table in its place (pandas "
            "`to_sql(if_exists='replace')` does that): the column types, NOT NULLs, grants and "
            "everything else defined on events are gone. Append to the existing table.",
            f"columns now: {after['columns']}")
    if after["persistence"] != before["persistence"]:
        raise CheckFailed(
            f"{who} changed events to UNLOGGED (or back): an UNLOGGED table is emptied after a "
            "crash and is not replicated, and switching rewrites the whole table. Leave the "
            "table as it is defined.")
    if after["file"] != before["file"]:
        raise CheckFailed(
            f"{who} truncated or rewrote events (TRUNCATE, VACUUM FULL, CLUSTER, an ALTER TABLE "
            "that rewrites): on a live table that takes an ACCESS EXCLUSIVE lock and blocks every "
            "reader for the whole rewrite, and TRUNCATE throws away the rows already there. A "
            "loader appends; the maintenance after a load (VACUUM, ANALYZE) rewrites nothing.")
    changed = [k for k in before if before[k] != after[k]]
    detail = "; ".join(f"{k}: {before[k]} → {after[k]}" for k in changed)
    if changed == ["index_files"]:
        rebuilt = [b[0] for b, a in zip(before["index_files"], after["index_files"]) if a != b]
        raise CheckFailed(
            f"{who} rebuilt the index {', '.join(rebuilt)} (REINDEX, or DROP INDEX and CREATE "
            "INDEX): same definition, new file. An index built by CREATE INDEX right after the "
            "load is already compact, so a rebuild costs a second full build for nothing, and "
            "meanwhile REINDEX blocks every writer of events (and every query using the index), "
            "and after a DROP queries run without it. VACUUM keeps the index as it is: leave "
            "it alone.",
            detail)
    if "relations" in changed:
        new = sorted(set(after["relations"]) - set(before["relations"]))
        gone = sorted(set(before["relations"]) - set(after["relations"]))
        detail = f"new: {[r[0] for r in new]}; gone: {[r[0] for r in gone]}"
        raise CheckFailed(
            f"{who} changed the database's relations"
            + (f": it left {', '.join(r[0] for r in new)} behind" if new else "")
            + (f"; it removed {', '.join(r[0] for r in gone)}" if gone else "")
            + ". A staging table must be temporary (or dropped before returning); do not create, "
            "index or drop anything the task does not name.", detail)
    raise CheckFailed(
        f"{who} changed the definition of events or the database's settings "
        f"({', '.join(changed)}): the task asks only for rows (or for the named maintenance). "
        "Leave columns, indexes, constraints, storage options and ALTER DATABASE/ROLE settings "
        "as they were.", detail)


def _other_tables(lab: Any) -> list[str]:
    with lab.connect(autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'events' ORDER BY 1").fetchall()]


@contextmanager
def _watched(lab: Any, who: str, *, others: bool) -> Iterator[None]:
    """Fail if the block changed events' definition or the schema (and, with ``others``,
    any other table's rows)."""
    with lab.connect(autocommit=True) as conn:
        before = _catalog(conn)
    if others:
        with untouched(lab, _other_tables(lab),
                       why="a loader writes events and nothing else"):
            yield
    else:
        yield
    with lab.connect(autocommit=True) as conn:
        after = _catalog(conn)
    _catalog_verdict(before, after, who)


# --------------------------------------------------------------------------
# running the loader as a caller would


def _fresh(lab: Any, planted: Stream | None = None, *, autovacuum: bool = True,
           tuned: bool = False) -> None:
    """Re-create events (as the task defines it) and put the planted rows in it; with
    ``tuned``, the storage parameters a DBA sets on a large table, which a loader must
    leave as they are (an ALTER TABLE ... RESET after the load wipes them)."""
    with lab.connect(autocommit=True) as conn:
        ld.create_events_table(conn, TABLE, autovacuum=autovacuum)
        if tuned:
            r = adv.rng()
            conn.execute(f"ALTER TABLE {TABLE} SET (autovacuum_enabled = on, "
                         f"autovacuum_vacuum_scale_factor = {r.randint(11, 89) / 1000}, "
                         f"autovacuum_analyze_threshold = {adv.non_round(500, rand=r)})")
        if planted is not None:
            ld.copy_rows(conn, planted, TABLE)


class _WriteRowUsed(Exception):
    """Raised by psycopg's Copy.write_row while the learner's loader runs."""


WRITE_ROW_USED = (
    "Your loader calls copy.write_row (directly, or through a loader of the lab's such as "
    "loading.copy_rows), which escapes every value for you. In production that is the right "
    "tool; this exercise asks you to write COPY's text format yourself, so that you know "
    "what it must do and can review a hand-built loader: write each row with "
    "copy.write(copy_line(row)), using the copy_line you wrote.")


@contextmanager
def _own_text() -> Iterator[list[int]]:
    """While the loader runs, psycopg's Copy.write_row raises (and counts the calls, in case
    the loader catches what it raises)."""
    used = [0]
    original = psycopg.Copy.__dict__["write_row"]

    def write_row(self: Any, row: Any) -> None:
        used[0] += 1
        raise _WriteRowUsed("copy.write_row is not available in this exercise: write "
                            "copy.write(copy_line(row))")

    psycopg.Copy.write_row = write_row  # type: ignore[method-assign]
    try:
        yield used
    finally:
        psycopg.Copy.write_row = original  # type: ignore[method-assign]


@dataclass
class Call:
    seconds: float
    problems: list[str]
    zone: str


def _call(caller: Caller, load_events: Callable, rows: Any) -> Call:
    """Run the loader on the caller's connection; commit for it if it left that to us.

    Returns the seconds (commit included) and what it left behind, for the check
    to report when it has said what it measured.
    """
    conn = caller.conn
    autocommit = conn.autocommit
    started = time.perf_counter()
    try:
        with _own_text() as used:
            load_events(conn, rows)
    except _WriteRowUsed:
        raise CheckFailed(WRITE_ROW_USED) from None
    except psycopg.errors.DataError as exc:  # the server refused what the loader sent
        raise CheckFailed(
            f"PostgreSQL rejected the data your loader sent: {exc.diag.message_primary} "
            f"(SQLSTATE {exc.sqlstate}). Hand-built COPY text must escape backslash, tab, "
            "newline and carriage return (a backslash before a tab, or \\x00, means something "
            "else to COPY), write NULL as \\N, and write timestamps with their offset "
            "(isoformat()): that is copy_line's job.",
            f"{exc.diag.context or ''}".strip()) from None
    if used[0]:
        raise CheckFailed(WRITE_ROW_USED)
    zone_inside = None
    if not (conn.closed or conn.broken) and \
            conn.info.transaction_status == pq.TransactionStatus.INTRANS:
        # what the caller's own statements in that transaction would see (a SET LOCAL counts)
        with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
            zone_inside = cur.execute("SELECT current_setting('TimeZone')").fetchone()[0]
        conn.commit()  # the task lets the loader leave the commit to its caller
    seconds = time.perf_counter() - started
    problems = caller.problems()
    if zone_inside is not None and zone_inside != caller.zone:
        problems.append(
            f"it left its transaction to the caller with TimeZone {zone_inside!r} instead of "
            f"the caller's {caller.zone!r} (a SET LOCAL TimeZone): the caller's own statements "
            "in that transaction (now()::date, to_char, ::timestamp) run in another zone. A "
            "timestamp written without its offset is read in the session's TimeZone; write it "
            "with its offset (isoformat()) and no TimeZone needs changing")
    problems += _temp_left(conn)
    if not (conn.closed or conn.broken) and conn.autocommit != autocommit:
        problems.append(
            f"it switched the connection's autocommit {'on' if conn.autocommit else 'off'} and "
            "left it so, which changes what the caller's next statements do (save "
            "conn.autocommit and put it back, or do the work in `with conn.transaction():`)")
    return Call(seconds, problems, caller.zone)


def _temp_left(conn: psycopg.Connection) -> list[str]:
    """Temporary tables the loader left in the caller's session (a pooled connection keeps
    them, and the next load's CREATE TEMP TABLE fails with 'already exists')."""
    if conn.closed or conn.broken or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        return []
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        left = [r[0] for r in cur.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema() "
            "AND relkind IN ('r', 'p') ORDER BY 1").fetchall()]
    if not conn.autocommit:
        conn.rollback()  # end the transaction the query opened
    if not left:
        return []
    return [f"it left the temporary table(s) {', '.join(left)} in the caller's session (a "
            "pooled connection keeps them: the next load on it fails with 'relation already "
            "exists', or reads the old rows); create a staging table with ON COMMIT DROP, "
            "or drop it, or better, COPY straight into events"]


def _client_backends(conn: psycopg.Connection) -> set[int]:
    return {r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend'").fetchall()}


def _new_caller(lab: Any) -> Caller:
    caller = Caller(lab)
    # psycopg would prepare (and keep) up to 100 long multi-row INSERTs: that is
    # the driver's cache, not the loader's memory
    caller.conn.prepare_threshold = None
    caller.client = client_state(caller.conn)  # the caller's connection as handed over
    return caller


def _report(call: Call) -> None:
    if call.problems:
        closed = any("closed" in p for p in call.problems)
        raise CheckFailed("After load_events(conn, rows), the caller's connection was not left "
                          "as it was found: " + "; ".join(call.problems) + "."
                          + (" In psycopg 3, `with conn:` commits and then closes the connection; "
                             "use `with conn.transaction():` on a connection you were given."
                             if closed else ""))


# --------------------------------------------------------------------------
# comparing with the expected rows


def _expected(conn: psycopg.Connection, *streams: Stream) -> str:
    """Load the expected rows into a temporary table of this session; its name."""
    name = f"expected_{secrets.token_hex(6)}"
    conn.execute(ld.events_ddl(name, temporary=True))
    for stream in streams:
        ld.copy_rows(conn, stream, name)
    return name


def _compare(lab: Any, stream: Stream, planted: Stream | None, zone: str) -> None:
    """events must hold exactly the planted rows and the stream's, no more, no less."""
    streams = [s for s in (planted, stream) if s is not None]
    with lab.connect(autocommit=True, options="-c TimeZone=UTC") as conn:
        want_table = _expected(conn, *streams)
        got = table_checksum(conn, TABLE)
        want = table_checksum(conn, want_table)
        if got == want:
            return
        w = sql.Identifier(want_table).as_string(conn)
        _explain_difference(conn, w, got[0], want[0], stream, planted, zone)


def _signed(delta: dt.timedelta) -> str:
    """-0:00:00.500000 rather than Python's "-1 day, 23:59:59.500000"."""
    return ("-" if delta < dt.timedelta(0) else "+") + str(abs(delta))


def _explain_difference(conn: psycopg.Connection, want: str, got_n: int, want_n: int,
                        stream: Stream, planted: Stream | None, zone: str) -> None:
    missing = conn.execute(f"SELECT * FROM {want} EXCEPT ALL SELECT * FROM {TABLE} "
                           "ORDER BY id").fetchall()
    extra = conn.execute(f"SELECT * FROM {TABLE} EXCEPT ALL SELECT * FROM {want} "
                         "ORDER BY id").fetchall()
    show = lambda rows: [(r[0], r[3].isoformat(), r[5]) for r in rows[:3]]  # noqa: E731
    examples = (f"expected but not loaded (id, occurred_at UTC, detail): {show(missing)}; "
                f"loaded but not expected: {show(extra)}")
    planted_n = planted.n if planted else 0
    planted_lost = [r for r in missing
                    if not stream.start_id <= r[0] < stream.start_id + stream.n]
    if planted_lost:
        raise CheckFailed(
            f"{len(planted_lost):,} of the {planted_n:,} rows events held before your loader ran "
            "are gone: a loader appends to the table (a TRUNCATE or DELETE before loading "
            "throws away what earlier loads wrote).", examples)
    if got_n == planted_n:
        raise CheckFailed(f"No row of the stream is in events after your loader ran; the stream "
                          f"had {stream.n:,} rows. Did it insert into `events`, is the "
                          "transaction committed (or left open for the caller to commit), and "
                          "does it write its last batch even when the batch is not full? A "
                          "loader must not skip rows it believes loaded already (ids at or "
                          "below max(id) of events): a feed's ids need not be above what the "
                          "table holds (late events, a backfill), and every row of it belongs "
                          "in events.", examples)
    if got_n < want_n and not extra:
        last_id = stream.start_id + stream.n - 1
        tail = [r[0] for r in missing]
        if tail == list(range(last_id - len(tail) + 1, last_id + 1)):
            raise CheckFailed(
                f"The last {len(tail):,} rows of the stream ({stream.n:,} rows, a length no "
                "batch size divides) are missing: your loader never wrote its last, partial "
                "batch. After the loop, flush what is left in the buffer (if batch: write it).",
                examples)
        raise CheckFailed(
            f"Your loader loaded {got_n - planted_n:,} rows; the stream had {stream.n:,}. "
            f"{want_n - got_n:,} rows are missing: a loader must never skip a row it finds "
            "awkward (or believes loaded already: ids need not be above max(id)). Escape every value in copy_line (or pass it as a query parameter), and let an "
            "error stop the load instead of hiding it.", examples)
    if got_n > want_n and not missing:
        raise CheckFailed(
            f"Your loader loaded {got_n - planted_n:,} rows; the stream had {stream.n:,}. Some "
            "rows were loaded twice (a retried or re-sent batch?).", examples)
    if got_n != want_n:
        raise CheckFailed(
            f"Your loader loaded {got_n - planted_n:,} rows; the stream had {stream.n:,}, and "
            "some loaded rows are not rows of the stream: a newline or tab in a value read as the "
            "end of a row or of a column splits one row into others.", examples)
    # as many rows as expected: which column differs?
    columns = [c for c in ld.EVENT_COLUMNS if c != "id"]
    counts = conn.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE g.{c} IS DISTINCT FROM w.{c})"
                              for c in columns)
        + f" FROM {TABLE} g JOIN {want} w USING (id)").fetchone()
    differs = {c: n for c, n in zip(columns, counts) if n}
    if "occurred_at" in differs:
        shifts = conn.execute(
            f"SELECT g.occurred_at - w.occurred_at AS shift, count(*) FROM {TABLE} g "
            f"JOIN {want} w USING (id) WHERE g.occurred_at <> w.occurred_at "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 3").fetchall()
        shown = ", ".join(f"shifted by {_signed(s)} on {n:,} rows" for s, n in shifts)
        if all(abs(s) < dt.timedelta(seconds=1) for s, _ in shifts):
            raise CheckFailed(
                f"{differs['occurred_at']:,} rows have a different occurred_at ({shown}): the "
                "fractions of a second were lost on the way. Pass the datetime itself "
                "(as a query parameter), or format it with isoformat(), which "
                "keeps microseconds and the UTC offset.", examples)
        raise CheckFailed(
            f"{differs['occurred_at']:,} rows have a different occurred_at instant ({shown}). "
            f"The caller's connection has TimeZone {zone!r}, not UTC: a timestamp written as "
            "text without its UTC offset is read in the session's TimeZone, and one converted "
            "to wall-clock time without its offset is wrong in any zone. Pass the datetime "
            "itself (as a query parameter) or format it with its offset "
            "(isoformat()); never change the caller's TimeZone to make it fit.", examples)
    raise CheckFailed(
        f"The row count is right ({got_n:,}) but some values differ from what the stream holds "
        f"(column(s) {', '.join(differs) or 'several'}): tabs, newlines, carriage returns, "
        "backslashes, the text '\\N', empty strings (which are not NULL) or NULLs were changed on "
        "the way. Hand-built COPY text must escape \\, tab, newline and carriage return, and "
        "write NULL as \\N (and CSV must quote an empty string): that is copy_line's job.",
        examples)


# --------------------------------------------------------------------------
# the loader


class _Probed:
    """The stream, handed out row by row; at one row, partway, another session reads
    events and writes to it (rolled back) while the loader waits for its next row.

    Inserting takes ROW EXCLUSIVE on the table, which blocks neither; a loader that
    LOCKs the table (or rewrites it) makes them wait: they give up after
    ``PROBE_LOCK_TIMEOUT`` and the check names the locks the loader holds.
    """

    def __init__(self, lab: Any, rows: Iterator[ld.Row], at: int, start_id: int,
                 end_id: int) -> None:
        self._it = rows
        self.at = at
        self.start_id, self.end_id = start_id, end_id
        self.taken = 0
        self.blocked: list[str] = []
        self.held: list[tuple[str, int]] = []
        self.visible = 0
        self.strangers: list[tuple[int, str]] = []
        self.late_lock: str | None = None
        self.strong: list[str] = []
        self.caller_pid = 0
        self.known: set[int] = set()
        self._lab = lab
        self._holder: psycopg.Connection | None = None
        self._watcher: threading.Thread | None = None
        self._done = threading.Event()

    def watch(self, caller: Caller) -> None:
        """Note the caller's backend and the sessions open before the call."""
        self.caller_pid = caller.pid
        with self._lab.connect(autocommit=True) as conn:
            self.known = _client_backends(conn)

    def __iter__(self) -> "_Probed":
        return self

    def __next__(self) -> ld.Row:
        try:
            row = next(self._it)
        except StopIteration:
            if self._holder is None and self._watcher is None and self.caller_pid:
                self._hold_after_stream()
            raise
        self.taken += 1
        if self.taken == self.at:
            self._probe()
        return row

    def _hold_after_stream(self) -> None:
        """Once the stream is exhausted, another session holds ROW EXCLUSIVE on events (what
        any writer holds) until the loader returns; a thread watches whether the loader's
        backend waits for a lock on events meanwhile (a LOCK TABLE before a final INSERT ...
        SELECT), notes it, and lets go."""
        if self.blocked or self.strong:  # the loader already holds a lock it should not
            return
        holder = self._lab.connect(application_name="lab check: a writer",
                                   options=f"-c lock_timeout={PROBE_LOCK_TIMEOUT}")
        self._holder = holder
        try:
            holder.execute("LOCK TABLE events IN ROW EXCLUSIVE MODE")
        except psycopg.errors.LockNotAvailable:
            self.late_lock = "a lock that blocks writers"
            holder.rollback()
            return
        monitor = self._lab.connect(autocommit=True, application_name="lab check: monitor")

        def watch() -> None:
            try:
                deadline = time.monotonic() + 30
                while not self._done.is_set() and time.monotonic() < deadline:
                    waiting = monitor.execute(
                        "SELECT mode FROM pg_locks WHERE pid = %s AND NOT granted "
                        "AND relation = to_regclass('events')", [self.caller_pid]).fetchone()
                    if waiting:
                        self.late_lock = waiting[0]
                        break
                    self._done.wait(0.01)
            finally:
                holder.rollback()
                monitor.close()

        self._watcher = threading.Thread(target=watch, daemon=True)
        self._watcher.start()

    def release(self) -> None:
        self._done.set()
        if self._watcher is not None:
            self._watcher.join()
        if self._holder is not None:
            self._holder.close()

    def _probe(self) -> None:
        with self._lab.connect(autocommit=True, application_name="lab check: another session",
                               options=f"-c lock_timeout={PROBE_LOCK_TIMEOUT}") as other:
            for what, statement in PROBES:
                try:
                    with other.transaction():
                        other.execute(statement)
                        raise psycopg.Rollback()
                except psycopg.errors.LockNotAvailable:
                    self.blocked.append(what)
            if self.blocked:
                self.held = other.execute(
                    "SELECT mode, count(*) FROM pg_locks WHERE relation = to_regclass('events') "
                    "AND granted AND pid <> pg_backend_pid() GROUP BY 1 ORDER BY 1").fetchall()
            if not self.blocked and self.caller_pid:
                # modes beyond what reading and appending take: SHARE UPDATE EXCLUSIVE (LOCK
                # TABLE, ALTER TABLE ... SET storage parameters) conflicts with no reader or
                # writer, but with VACUUM, ANALYZE, CREATE INDEX CONCURRENTLY and every DDL
                self.strong = [r[0] for r in other.execute(
                    "SELECT mode FROM pg_locks WHERE pid = %s AND granted "
                    "AND relation = to_regclass('events') AND mode NOT IN "
                    "('AccessShareLock', 'RowShareLock', 'RowExclusiveLock') ORDER BY 1",
                    [self.caller_pid]).fetchall()]
            if not self.blocked:  # a reader would wait for the lock it reported
                self.visible = other.execute(
                    "SELECT count(*) FROM events WHERE id >= %s AND id < %s",
                    [self.start_id, self.end_id]).fetchone()[0]
            if self.caller_pid:
                self.strangers = [(pid, app) for pid, app in other.execute(
                    "SELECT pid, application_name FROM pg_stat_activity "
                    "WHERE datname = current_database() AND backend_type = 'client backend' "
                    "AND pid <> pg_backend_pid() AND NOT (pid = ANY(%s)) "
                    "AND application_name NOT LIKE 'lab check%%'",
                    [list(self.known)]).fetchall()]

    def verdict(self, n: int) -> None:
        if self.strangers:
            raise CheckFailed(
                f"While your loader was partway through the stream (row {self.at:,} of {n:,}), "
                "it was working on a database connection of its own, not the one it was given "
                f"(the caller's is backend {self.caller_pid}): the load is then no part of the "
                "caller's transaction (a caller that rolls back still has the rows committed), "
                "and every call opens a connection outside the pool. Load on `conn`, the "
                "connection passed in.",
                f"sessions opened during the call: {self.strangers}")
        if self.visible:
            raise CheckFailed(
                f"While your loader was partway through the stream (row {self.at:,} of {n:,}), "
                f"another session already saw {self.visible:,} of its rows in events: they were "
                "committed before the stream was done (per batch, per row, or in autocommit). "
                "Readers see half a load, and a failure or a killed job leaves those rows for "
                "the rerun to load twice. Load the stream in one transaction: commit once at "
                "the end, or leave the commit to the caller.")
        if self.late_lock:
            raise CheckFailed(
                f"After the last row of the stream, your loader asked for {self.late_lock} on "
                "events and waited for another session that was writing events (a LOCK TABLE "
                "before a final INSERT ... SELECT?): every reader or writer of the table queues "
                "behind such a lock for as long as the final copy takes, millions of rows at "
                "scale. Appending takes only ROW EXCLUSIVE, which blocks no other writer: take "
                "no table lock, before or after reading the stream.")
        if self.strong and not self.blocked:
            raise CheckFailed(
                f"While your loader was partway through the stream (row {self.at:,} of {n:,}), "
                f"it held {', '.join(self.strong)} on events (LOCK TABLE ... IN SHARE UPDATE "
                "EXCLUSIVE MODE, or an ALTER TABLE, even one that only SETs a storage parameter "
                "such as autovacuum_enabled). That lock blocks no reader or INSERT, but every "
                "VACUUM (autovacuum included), ANALYZE, CREATE INDEX CONCURRENTLY and ALTER "
                "TABLE of events waits for the whole load, and an ALTER TABLE waiting behind it "
                "then blocks every reader and writer queued after it. Appending needs only the "
                "ROW EXCLUSIVE lock COPY or INSERT takes by itself: take no table lock and "
                "change no table setting to load.")
        if not self.blocked:
            return
        held = ", ".join(mode for mode, _ in self.held) or "a lock"
        raise CheckFailed(
            f"While your loader was partway through the stream (row {self.at:,} of {n:,}), "
            f"{' and '.join(self.blocked)} from another session waited for a lock on events and "
            f"gave up after {PROBE_LOCK_TIMEOUT}: your loader holds {held} on it. The "
            "application keeps reading and writing events during a load; appending (COPY or "
            "INSERT) takes only ROW EXCLUSIVE, which blocks neither. Take no table lock (no "
            "LOCK TABLE, nothing that rewrites the table): readers never see uncommitted rows "
            "anyway.", f"locks granted on events to other sessions: {self.held}")


class FeedBroken(Exception):
    """What the check's stream raises partway, as a broken feed would (a dropped
    connection to the source, a truncated file)."""


class _Failing:
    """The stream, with one row at ``at`` that PostgreSQL refuses (a customer_id out of
    bigint's range), or, for ``how="raises"``, the iterator itself failing there, or, for
    ``how="cancelled"``, another session cancelling the caller's statement there (what a
    statement_timeout or an operator's pg_cancel_backend does): psycopg raises
    QueryCanceled, an OperationalError, once the server reads the next rows."""

    def __init__(self, rows: Iterator[ld.Row], at: int, how: str, rand: random.Random,
                 lab: Any = None, start_id: int = 0, end_id: int = 0) -> None:
        self._it = rows
        self.at = at
        self.how = how
        self.bad_id = 2**63 + rand.randrange(1, 10**6)
        self.taken = 0
        self.visible = 0
        self._lab = lab
        self.start_id, self.end_id = start_id, end_id
        self.caller_pid = 0
        self.cancelled = False

    def __iter__(self) -> "_Failing":
        return self

    def __next__(self) -> ld.Row:
        row = next(self._it)
        self.taken += 1
        if self.taken == self.at:
            if self._lab is not None:  # after any batch allowed: has some of it been committed?
                with self._lab.connect(autocommit=True) as other:
                    self.visible = other.execute(
                        "SELECT count(*) FROM events WHERE id >= %s AND id < %s",
                        [self.start_id, self.end_id]).fetchone()[0]
            if self.how == "raises":
                raise FeedBroken(f"the feed broke at row {self.at:,}")
            if self.how == "cancelled":
                # only a statement in progress (a COPY waiting for rows) can be cancelled; a
                # loader between two INSERTs is idle, and then nothing happens
                with self._lab.connect(autocommit=True) as other:
                    self.cancelled = bool(other.execute(
                        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                        "WHERE pid = %s AND state = 'active'", [self.caller_pid]).fetchone())
                return row
            row = (row[0], self.bad_id) + tuple(row[2:])
        return row

    def what(self) -> str:
        if self.how == "raises":
            return f"the stream itself raised an exception at row {self.at:,}"
        if self.how == "cancelled":
            return (f"another session cancelled your statement at row {self.at:,}, as a "
                    "statement_timeout or pg_cancel_backend does: psycopg raises "
                    "QueryCanceled, an OperationalError")
        return (f"row {self.at:,} has a customer_id of {self.bad_id:,}, beyond bigint's range, "
                "which PostgreSQL refuses")


def _failed_load(lab: Any, load_events: Callable, how: str) -> None:
    """A load that must fail partway: the error reaches the caller, and nothing of the
    stream is committed (the job reruns the whole feed; events has no key to stop
    rows loaded twice)."""
    rand = adv.rng()
    stream = _stream(lab, Q1_FAIL_ROWS, spread=0.1, rand=rand)
    planted = _planted(lab, stream)
    rows = _Failing(iter(stream), rand.randrange(stream.n * 3 // 4, stream.n - 10), how, rand,
                    lab, stream.start_id, stream.start_id + stream.n)
    _fresh(lab, planted, tuned=True)
    raised: BaseException | None = None
    with _new_caller(lab) as caller:
        conn = caller.conn
        rows.caller_pid = caller.pid
        with _own_text() as used:
            try:
                load_events(conn, rows)
            except Exception as exc:  # what the caller sees; anything will do
                raised = exc
        if used[0]:
            raise CheckFailed(WRITE_ROW_USED)
        if conn.closed or conn.broken:
            raise CheckFailed(
                f"When the load failed partway ({rows.what()}), your loader closed the "
                "connection it was given (`with conn:` closes it in psycopg 3). Roll back if you "
                "must, let the exception through, and leave the connection to its owner.")
        if raised is None and conn.info.transaction_status == pq.TransactionStatus.INTRANS:
            conn.commit()  # it returned normally, leaving the commit to its caller
        elif conn.info.transaction_status != pq.TransactionStatus.IDLE:
            conn.rollback()  # what a caller does when the call raised
        left = caller.problems() + _temp_left(conn)
    with lab.connect(autocommit=True) as conn:
        loaded, before = conn.execute(
            "SELECT count(*) FILTER (WHERE id >= %(s)s AND id < %(e)s), "
            "count(*) FILTER (WHERE NOT (id >= %(s)s AND id < %(e)s)) FROM events",
            {"s": stream.start_id, "e": stream.start_id + stream.n}).fetchone()
    said = (f"{loaded:,} of its {stream.n:,} rows are committed in events" if loaded
            else "no row of it is in events")
    if raised is None and how == "cancelled" and loaded == stream.n:
        # the cancel found no statement running (between two INSERTs): nothing failed, and
        # the load is judged as a successful one
        if rows.visible:
            raise CheckFailed(
                f"While your loader was partway through the stream (row {rows.at:,} of "
                f"{stream.n:,}), another session already saw {rows.visible:,} of its rows in "
                "events: they were committed before the stream was done (per batch, per row, "
                "or in autocommit). Readers see half a load, and a failure or a killed job "
                "leaves those rows for the rerun to load twice. Load the stream in one "
                "transaction: commit once at the end, or leave the commit to the caller.")
        if left:
            raise CheckFailed("After load_events(conn, rows), the caller's connection was not "
                              "left as it was found: " + "; ".join(left) + ".")
        return
    if raised is None and how == "cancelled":
        raise CheckFailed(
            f"The load failed partway ({rows.what()}), yet your loader returned normally: it "
            f"hid the error, and only {loaded:,} of the stream's {stream.n:,} rows are in "
            f"events: the other {stream.n - loaded:,} rows are missing. An except that logs "
            "and carries on loses them; so does a retry after an OperationalError (a "
            "cancel, a timeout, a deadlock, a dropped connection) reads the same iterator "
            "again, which the failed attempt has already consumed: the retry loads only what "
            "is left, and the job reports success for a load that lost rows. An iterator cannot "
            "be replayed: let the exception reach the caller, and let the job rerun the whole "
            "feed from its source.",
            f"stream of {stream.n:,} rows, {before} rows before; cancel sent: {rows.cancelled}")
    if raised is None:
        raise CheckFailed(
            f"The load failed partway ({rows.what()}), yet your loader returned normally, and "
            f"{said}: it hid the error (an except that prints, rolls back or skips the row, "
            "and carries on), so the nightly job reports success for a load that did not "
            "happen as sent. Let the exception reach the caller: catch only to clean up, then "
            "re-raise (a bare `raise`).", f"stream of {stream.n:,} rows, {before} rows before")
    if rows.visible:
        raise CheckFailed(
            f"Before the load failed ({rows.what()}), another session already saw "
            f"{rows.visible:,} of the stream's rows in events: your loader commits as it goes "
            "(per batch, per row, or in autocommit), so readers see half a load, and a crash or "
            "a killed job between batches leaves those rows for the rerun to load twice (undoing "
            "them afterwards cannot cover that). Load the stream in one transaction: commit "
            "once, at the end, or leave the commit to the caller.",
            f"the loader raised {type(raised).__name__}: {str(raised)[:200]}")
    if loaded:
        raise CheckFailed(
            f"When the load failed partway ({rows.what()}), your loader raised, but {said}: a "
            "half-done load (committed per batch, per row, or in autocommit). The job reruns "
            "the whole feed after a failure, and events has no key that would stop those rows "
            "from being loaded twice. Load the stream in one transaction (commit once, at the "
            "end, or leave the commit to the caller), so a failed load leaves nothing.",
            f"the loader raised {type(raised).__name__}: {str(raised)[:200]}")
    if left:
        raise CheckFailed(
            f"When the load failed partway ({rows.what()}), your loader raised as it should, "
            "but it did not leave the caller's connection as it found it (once the caller had "
            "rolled back): " + "; ".join(left) + ". Whatever a loader changes it must put back "
            "on the failure path too: in a `finally:`, or use `with conn.transaction():`.",
            f"the loader raised {type(raised).__name__}: {str(raised)[:200]}")


def _empty_load(lab: Any, load_events: Callable) -> None:
    """An empty stream (a quiet night, an empty file): the loader returns and loads nothing."""
    with lab.connect(autocommit=True) as conn:
        before = table_checksum(conn, TABLE)
    with _new_caller(lab) as caller:
        try:
            call = _call(caller, load_events, iter(()))
        except CheckFailed:
            raise
        except Exception as exc:
            raise CheckFailed(
                f"On an empty stream (a quiet night, an empty file), your loader raised "
                f"{type(exc).__name__}{': ' + str(exc)[:200] if str(exc) else ''}. An empty feed is a load of nothing, "
                "not an error: never call next(rows) to peek at a first row (it raises "
                "StopIteration on an empty iterator); iterate with `for row in rows:`, which "
                "simply does nothing.") from None
        _report(call)
    with lab.connect(autocommit=True) as conn:
        after = table_checksum(conn, TABLE)
    if after != before:
        raise CheckFailed(
            f"On an empty stream, your loader changed events ({before[0]:,} rows before, "
            f"{after[0]:,} after): an empty feed loads nothing and leaves the table as it was.")


def _copy_line_instants(lab: Any, load_events: Callable) -> None:
    """copy_line's text for occurred_at must stand on its own: in a session whose TimeZone
    is neither UTC nor the datetime's offset, PostgreSQL reads the same instant back.

    copy_line is found next to load_events (the notebook's namespace); a loader that
    does not use it (query parameters) has no such function to judge, and is skipped."""
    copy_line = getattr(load_events, "__globals__", {}).get("copy_line")
    if not callable(copy_line):
        return
    rand = adv.rng()
    zone = ZoneInfo(adv.non_utc_zone(rand=rand))
    base = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
        days=rand.randrange(3 * 365), seconds=rand.randrange(86_400),
        microseconds=rand.randrange(1, 10**6))
    cases = [base] + [base.astimezone(o) for o in rand.sample(OFFSETS, 3)]
    cases = [c for c in cases if c.utcoffset() != c.astimezone(zone).utcoffset()]
    fields = []
    for when in cases:
        row = (rand.randrange(1, 2**40), 1, "page_view", when, Decimal("9.99"), None)
        try:
            line = copy_line(row)
        except Exception:  # not attempted, or broken: the loads below say what goes wrong
            return
        parts = line.rstrip("\n").split("\t") if isinstance(line, str) else []
        if len(parts) != len(row):
            return
        fields.append((when, parts[3]))
    with lab.connect(autocommit=True, options=f"-c TimeZone={zone.key}") as conn:
        for when, text in fields:
            try:
                read = conn.execute("SELECT %s::text::timestamptz", [text]).fetchone()[0]
            except psycopg.Error as exc:
                raise CheckFailed(
                    f"copy_line wrote occurred_at {when.isoformat()} as {text!r}, which "
                    f"PostgreSQL does not read as a timestamptz: {exc.diag.message_primary}. "
                    "Write it with isoformat(): microseconds and UTC offset included.") from None
            if read != when:
                raise CheckFailed(
                    f"copy_line wrote occurred_at {when.isoformat()} as {text!r}: in a session "
                    f"whose TimeZone is {zone.key}, COPY reads that as "
                    f"{read.astimezone(when.tzinfo).isoformat()}, another instant. A timestamp "
                    "written without its UTC offset is read in the session's TimeZone, so the "
                    "line means something else in every other session (psql's \\copy, another "
                    "loader, a replay); making the loader SET TimeZone to fit only moves the "
                    "problem to the caller's transaction. Write the instant with its offset: "
                    "value.isoformat().")


def q1(lab: Any, load_events: Callable) -> str:
    """Every row arrives exactly: count and checksum equal a reference COPY's; other
    sessions read and write events meanwhile; a load that fails partway raises and
    leaves nothing."""
    require(load_events)
    _copy_line_instants(lab, load_events)
    stream = _stream(lab, Q1_ROWS, spread=0.3, tricky_share=Q1_TRICKY_SHARE)
    planted = _planted(lab, stream)
    _fresh(lab, planted, tuned=True)
    rows = _Probed(lab, iter(stream), adv.rng().randrange(stream.n // 3, 2 * stream.n // 3),
                   stream.start_id, stream.start_id + stream.n)
    with _watched(lab, "Your loader", others=True), _new_caller(lab) as caller:
        rows.watch(caller)
        try:
            call = _call(caller, load_events, rows)
        finally:
            rows.release()
        rows.verdict(stream.n)
        _report(call)
    _compare(lab, stream, planted, call.zone)
    _empty_load(lab, load_events)
    for how in adv.rng().sample(("refused", "raises", "cancelled"), 3):
        _failed_load(lab, load_events, how)
    return (f"all {stream.n:,} rows arrived exactly (tabs, newlines, backslashes, '\\N', NULLs, "
            f"fractions of a second and offsets included), appended to the {planted.n} already "
            f"there, on a connection in {call.zone} left as it was found, while other sessions "
            "read and wrote events; an empty stream loaded nothing; a load that failed partway "
            "(a refused row, a cancelled statement, a broken feed) raised and left nothing")


def _reference_seconds(lab: Any, stream: Stream) -> float:
    """COPY the stream into a table of its own, timed (commit included), then drop it:
    the loader never sees a table holding the expected rows."""
    name = f"lab_reference_{secrets.token_hex(6)}"
    with lab.connect(autocommit=True) as conn:
        ld.create_events_table(conn, name)
    try:
        with lab.connect(prepare_threshold=None) as conn:
            started = time.perf_counter()
            ld.copy_rows(conn, stream, name)
            conn.commit()
            return time.perf_counter() - started
    finally:
        with lab.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def _timed_attempt(lab: Any, load_events: Callable, stream: Stream) -> tuple[float, float, Call]:
    """(reference seconds, learner seconds, the call) for one run on a fresh table."""
    _fresh(lab)
    reference = _reference_seconds(lab, stream)
    deadline = max(3.0, reference / MIN_COPY_RATIO * DEADLINE_FACTOR)
    rows = ld.Counted(iter(stream), deadline=deadline)
    n = stream.n
    with _watched(lab, "Your loader", others=False), _new_caller(lab) as caller:
        try:
            call = _call(caller, load_events, rows)
        except ld.Deadline as stop:
            rate = stop.rows / stop.seconds
            raise CheckFailed(
                f"Your loader had taken only {stop.rows:,} of {n:,} rows after "
                f"{stop.seconds:.1f} s, about {rate:,.0f} rows/s, while COPY loaded all of them "
                f"at {n / reference:,.0f} rows/s; the check stopped it. A round trip (and with "
                "autocommit a WAL flush) per row caps a loader at a few thousand rows/s: stream "
                "the rows through COPY (cursor.copy + copy.write(copy_line(row))).",
                f"deadline {deadline:.1f} s = {DEADLINE_FACTOR}x the slowest passing time"
            ) from None
    _compare(lab, stream, None, call.zone)
    return reference, call.seconds, call


def q2(lab: Any, load_events: Callable) -> str:
    """Throughput: at least MIN_COPY_RATIO of a reference COPY of the same rows, same run."""
    require(load_events)
    stream = _stream(lab, q2_rows(lab), spread=0.05)
    n = stream.n
    reference, learner, call = _timed_attempt(lab, load_events, stream)
    if reference / learner < MIN_COPY_RATIO:
        # noise from other processes only ever adds time: keep the better of two runs
        again_ref, again, call = _timed_attempt(lab, load_events, stream)
        reference, learner = min(reference, again_ref), min(learner, again)
    ratio = reference / learner
    if ratio < MIN_COPY_RATIO:
        raise CheckFailed(
            f"Your loader ran at {n / learner:,.0f} rows/s, {ratio:.2f}x the reference COPY's "
            f"{n / reference:,.0f} rows/s on the same {n:,} rows; the task asks for at least "
            f"{MIN_COPY_RATIO}x. Per-statement costs (a round trip, parsing, planning) dominate "
            "below that: use COPY, or at least large multi-row batches.",
            f"reference {reference:.2f} s, yours {learner:.2f} s (best of two runs)")
    _report(call)
    return (f"{n / learner:,.0f} rows/s, {ratio:.2f}x the reference COPY measured in the same "
            f"check (at least {MIN_COPY_RATIO}x needed)")


def q2_rows(lab: Any) -> int:
    """About how many rows the throughput check loads at this scale."""
    return min(lab.scale.largest_table_rows, Q2_MAX_ROWS)


@contextmanager
def _drivers(conn: psycopg.Connection) -> Iterator[dict[str, int]]:
    """Count, while the loader runs, how it talks to the server: copy.write calls, and
    cursor.execute/executemany calls on ``conn`` (the behaviour is psycopg's own)."""
    used = {"copy.write": 0, "execute": 0, "executemany": 0}
    patched = [(psycopg.Copy, "write", "copy.write"), (psycopg.Cursor, "execute", "execute"),
               (psycopg.Cursor, "executemany", "executemany")]
    originals = [(cls, name, cls.__dict__[name]) for cls, name, _ in patched]

    def counting(original: Callable, key: str) -> Callable:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            if key == "copy.write" or getattr(self, "connection", None) is conn:
                used[key] += 1
            return original(self, *args, **kwargs)
        return call

    for (cls, name, key), (_, _, original) in zip(patched, originals):
        setattr(cls, name, counting(original, key))
    try:
        yield used
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


class _Held:
    """The stream, handed out row by row, noting the memory the loader holds as it goes.

    Every few rows inside each window it reads tracemalloc's *current* size (not
    the peak): its minimum over a window is the loader's low point there, right
    after a batch was written, when only what the loader keeps for good is left
    (and one chunk of the generator, the same in every window). A loader that
    streams or batches keeps the same low point in every window; one that keeps
    something per row (a list of ids, a set of seen keys, a growing buffer) gains
    those bytes for every row in between.
    """

    def __init__(self, rows: Iterator[ld.Row], lab: Any = None, caller_pid: int = 0) -> None:
        self._it = rows
        self._lab = lab
        self._pid = caller_pid
        self._first: Any = None  # when the caller's backend last started a statement, at row 1
        self.sent: bool | None = None  # had any row reached the server once the windows passed?
        self.taken = 0
        self.lows: list[int | None] = [None] * len(Q3_WINDOWS)
        # the highest memory inside each window (tracemalloc's peak, reset at its edges),
        # and the highest outside them, so that the overall peak is still known
        self.peaks: list[int | None] = [None] * len(Q3_WINDOWS)
        self.top = 0
        self._edges = {lo for lo, _ in Q3_WINDOWS} | {hi for _, hi in Q3_WINDOWS}

    def _sent_yet(self, k: int) -> None:
        """By row Q3_SENT_AT every batch allowed has been sent: its rows are in events' file
        (uncommitted but written), or a COPY is reading them (pg_stat_progress_copy), or
        the caller's backend has run a statement (an INSERT into a staging table) since
        row 1. A loader that spools the feed (a list, a temporary file) and loads it at the
        end has done none of these."""
        with self._lab.connect(autocommit=True) as other:
            size, copied, started = other.execute(
                "SELECT pg_relation_size(to_regclass('events')), "
                "(SELECT bytes_processed FROM pg_stat_progress_copy WHERE pid = %(p)s), "
                "(SELECT query_start FROM pg_stat_activity WHERE pid = %(p)s)",
                {"p": self._pid}).fetchone()
        if k == 1:
            self._first = started
        else:
            self.sent = bool(size or copied or started != self._first)

    def __iter__(self) -> "_Held":
        return self

    def __next__(self) -> ld.Row:
        row = next(self._it)
        self.taken += 1
        k = self.taken
        if k in self._edges:
            peak = tracemalloc.get_traced_memory()[1]
            self.top = max(self.top, peak)
            for i, (lo, hi) in enumerate(Q3_WINDOWS):
                if k == hi:
                    self.peaks[i] = peak
            tracemalloc.reset_peak()
        if k in (1, Q3_SENT_AT) and self._lab is not None and self._pid:
            self._sent_yet(k)
        if k % Q3_SAMPLE_EVERY == 0:
            for i, (lo, hi) in enumerate(Q3_WINDOWS):
                if lo <= k < hi:
                    now = tracemalloc.get_traced_memory()[0]
                    low = self.lows[i]
                    if low is None or now < low:
                        self.lows[i] = now
        return row


def q3(lab: Any, load_events: Callable) -> str:
    """Memory: what the loader holds stays flat along the stream, and every row is loaded."""
    require(load_events)
    stream = _stream(lab, Q3_ROWS, spread=0.05)
    _fresh(lab)
    with _watched(lab, "Your loader", others=False), _new_caller(lab) as caller:
        rows = _Held(iter(stream), lab, caller.pid)
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            with _drivers(caller.conn) as used:
                call = _call(caller, load_events, rows)
            peak = max(rows.top, tracemalloc.get_traced_memory()[1]) - base
        finally:
            if not was_tracing:
                tracemalloc.stop()
    _compare(lab, stream, None, call.zone)
    listed = ld.traced_peak(lambda: list(stream))[1]
    mib = lambda b: f"{b / 2**20:.2f} MiB"  # noqa: E731
    (a, b), (c, d) = Q3_WINDOWS
    lows = rows.lows
    if None in lows:  # the loader stopped taking rows early, yet loaded them all: cannot be
        raise RuntimeError(f"the memory samples were not taken ({rows.taken} rows taken)")
    per_row = (lows[1] - lows[0]) / ((c + d) / 2 - (a + b) / 2)
    detail = (f"lowest memory held between rows {a:,} and {b:,}: {mib(lows[0])}; between "
              f"rows {c:,} and {d:,}: {mib(lows[1])}; peak {mib(peak)}; a list of all "
              f"{stream.n:,} rows takes {mib(listed)}")
    copying = used["copy.write"] and not used["executemany"] and used["execute"] < 10
    allowed = Q3_COPY_BYTES_PER_ROW if copying else Q3_BYTES_PER_ROW
    if per_row > allowed:
        at_scale = per_row * 10_000_000
        raise CheckFailed(
            f"Your loader's memory grows with the stream: even at its low points (just after "
            f"a batch is written) it held {mib(lows[1] - lows[0])} more between rows {c:,} and "
            f"{d:,} than between rows {a:,} and {b:,}, {per_row:,.0f} bytes for every row it "
            f"had taken ("
            + ("a COPY loader that keeps nothing per row measures under 1 here, and the "
               f"check allows {allowed}" if copying else f"the check allows {allowed}")
            + f"), with a peak of {mib(peak)} (a "
            f"list of all {stream.n:,} rows takes {mib(listed)}). At 10 million rows that is "
            f"about {at_scale / 2**30:,.1f} GiB more. Keep nothing per row: consume the iterator as you "
            "go (for row in rows: copy.write(copy_line(row))), or in fixed-size batches of at most "
            f"{Q3_MAX_BATCH:,} rows, and count rows instead of collecting their ids; never "
            "list(rows), a set of every key, or one DataFrame of everything.", detail)
    if rows.sent is False:
        raise CheckFailed(
            f"Your loader had taken {Q3_SENT_AT - 1:,} of the {stream.n:,} rows and not one had "
            "reached the server yet (events, and any temporary table, were still empty): it "
            "holds the whole feed (in memory, or spooled to a temporary file, which in many "
            "containers is a tmpfs counted against the memory limit) and loads it only at the "
            "end. At 10 million rows that is gigabytes, and the load starts only once the feed "
            "is over. Stream: write each row (or each batch of at most "
            f"{Q3_MAX_BATCH:,}) to the server as it comes.", detail)
    peaks = rows.peaks
    if None in peaks:
        raise RuntimeError(f"the memory peaks were not taken ({rows.taken} rows taken)")
    peak_per_row = (peaks[1] - peaks[0]) / ((c + d) / 2 - (a + b) / 2)
    detail += (f"; highest between rows {a:,} and {b:,}: {mib(peaks[0])}, between rows {c:,} "
               f"and {d:,}: {mib(peaks[1])}")
    if peak_per_row > Q3_BYTES_PER_ROW:
        raise CheckFailed(
            f"Your loader's batches grow with the stream: the most memory it held between rows "
            f"{c:,} and {d:,} was {mib(peaks[1] - peaks[0])} more than between rows {a:,} and "
            f"{b:,} ({peak_per_row:,.0f} bytes for every row taken in between; the task allows "
            f"{Q3_BYTES_PER_ROW}). A batch that grows (doubles, or grows by half, each time) "
            "reaches millions of rows at 10 million rows. Use a fixed batch size of at most "
            f"{Q3_MAX_BATCH:,} rows, or stream row by row (copy.write(copy_line(row))).", detail)
    if peak > Q3_PEAK_SHARE * listed:
        raise CheckFailed(
            f"Your loader's peak memory, {mib(peak)}, is more than {Q3_PEAK_SHARE:.0%} of what "
            f"holding all {stream.n:,} rows in a list takes ({mib(listed)}): its batches (or "
            "buffers) are too large to call the load streaming. Write fixed-size batches of at "
            f"most {Q3_MAX_BATCH:,} rows, and let go of each before building the next.", detail)
    _report(call)
    return (f"memory held stays flat along {stream.n:,} rows ({per_row:+.1f} bytes per row "
            f"between its low points), peak {mib(peak)}: bounded by the batch, not the stream "
            f"(holding the rows would take {mib(listed)})")


# --------------------------------------------------------------------------
# after the load


def _statements(sql_text: str) -> list[str]:
    """The learner's SQL, one statement at a time (VACUUM refuses to share a string)."""
    text = re.sub(r"--[^\n]*", "", re.sub(r"/\*.*?\*/", "", sql_text, flags=re.S))
    return [s.strip() for s in text.split(";") if s.strip()]


def _maintenance(conn: psycopg.Connection) -> dict[str, tuple[int, int]]:
    """How often each table but events was VACUUMed and ANALYZEd by hand (autovacuum
    counts apart), catalogs included: what only an explicit command changes."""
    return {name: (vacuums, analyses) for name, vacuums, analyses in conn.execute(
        "SELECT c.oid::regclass::text, pg_stat_get_vacuum_count(c.oid), "
        "pg_stat_get_analyze_count(c.oid) FROM pg_class c "
        "WHERE c.relkind IN ('r', 'm') AND c.oid <> to_regclass('events')").fetchall()}


def _maintenance_verdict(before: dict[str, tuple[int, int]],
                         after: dict[str, tuple[int, int]]) -> None:
    touched = sorted(t for t in before if t in after and after[t] != before[t])
    if not touched:
        return
    users = [t for t in touched if not t.startswith("pg_")]
    shown = ", ".join((users or touched)[:5]) + (
        f" and {len(touched) - 5} more" if len(touched) > 5 else "")
    raise CheckFailed(
        f"Your SQL also vacuumed or analysed {len(touched)} other table(s) ({shown}), which "
        "the load did not change. A VACUUM or ANALYZE without a table name processes every "
        "table in the database, catalogs included: on a large database that reads everything "
        "for hours, after every nightly load. Name only the table just loaded: "
        "VACUUM (ANALYZE) events.",
        "; ".join(f"{t}: vacuums {before[t][0]} → {after[t][0]}, analyses {before[t][1]} → "
                  f"{after[t][1]}" for t in touched[:8]))


class _Busy:
    skipped = False


@contextmanager
def _autovacuum_at_work(lab: Any, conn: psycopg.Connection) -> Iterator[_Busy]:
    """Another session holds SHARE UPDATE EXCLUSIVE on events (what an autovacuum worker
    holds while it works) until the learner's session is seen waiting for a lock, or
    AUTOVACUUM_HOLD seconds pass: a VACUUM or ANALYZE waits for it; one with SKIP_LOCKED
    skips the table (``skipped``: the hold ended without anyone waiting)."""
    busy = _Busy()
    pid = conn.info.backend_pid
    holder = lab.connect()
    holder.execute(f"LOCK TABLE {TABLE} IN SHARE UPDATE EXCLUSIVE MODE")
    done = threading.Event()

    def release() -> None:
        with lab.connect(autocommit=True) as monitor:
            deadline = time.monotonic() + AUTOVACUUM_HOLD
            while not done.is_set() and time.monotonic() < deadline:
                if monitor.execute("SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s "
                                   "AND NOT granted)", [pid]).fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                busy.skipped = True
        holder.rollback()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield busy
    finally:
        done.set()
        thread.join()
        holder.close()


AUTOVACUUM_HOLD = 2.0


def q4_rows(lab: Any) -> int:
    return min(lab.scale.largest_table_rows, Q2_MAX_ROWS)


def q4(lab: Any, after_load_sql: str) -> str:
    """After a fresh load: statistics on every column and Index Only Scans that need no
    heap fetch, with the rows, the index and the rest of the database as they were."""
    require(after_load_sql)
    rand = adv.rng()
    stream = _stream(lab, q4_rows(lab), spread=0.05, rand=rand)
    _fresh(lab, autovacuum=False)
    with lab.connect(autocommit=True) as conn:
        ld.copy_rows(conn, stream)
        conn.execute(f"CREATE INDEX {Q4_INDEX} ON {TABLE} (customer_id)")
        rows_before = table_checksum(conn, TABLE)
    with lab.connect(autocommit=True) as conn:
        maintained = _maintenance(conn)
    with _watched(lab, "Your SQL", others=True), \
            lab.connect(autocommit=True) as conn, _autovacuum_at_work(lab, conn) as busy:
        for statement in _statements(after_load_sql):
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                raise CheckFailed(f"PostgreSQL rejected your SQL: "
                                  f"{exc.diag.message_primary or exc}",
                                  f"statement: {statement}; SQLSTATE {exc.sqlstate}") from None
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            raise CheckFailed(
                "Your SQL leaves a transaction open (a BEGIN without COMMIT): what it did is not "
                "visible to any other session, and its locks stay held. The job's maintenance "
                "runs in autocommit (VACUUM cannot even run inside a transaction block).")
    # what the next session sees, not what the learner's own session sees
    with lab.connect(autocommit=True) as conn:
        _maintenance_verdict(maintained, _maintenance(conn))
        if table_checksum(conn, TABLE) != rows_before:
            raise CheckFailed("Your SQL changed the rows of events; the task asks only for the "
                              "maintenance after the load (statistics and the visibility map).")
        analysed = {r[0] for r in conn.execute(
            "SELECT attname FROM pg_stats WHERE schemaname = 'public' AND tablename = %s",
            (TABLE,)).fetchall()}
        pages, visible = conn.execute(
            "SELECT relpages, relallvisible FROM pg_class WHERE oid = %s::regclass",
            (TABLE,)).fetchone()
        # written to shared memory by VACUUM itself, so up to date at once
        vacuumed = conn.execute("SELECT pg_stat_get_vacuum_count(%s::regclass)",
                                (TABLE,)).fetchone()[0] > 0
        holders = conn.execute(
            "SELECT pid, coalesce(nullif(application_name, ''), 'unnamed'), state, "
            "date_trunc('second', now() - xact_start) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL) "
            "ORDER BY xact_start LIMIT 3").fetchall()
    if busy.skipped and (not vacuumed or any(c not in analysed for c in ld.EVENT_COLUMNS)):
        raise CheckFailed(
            "Your SQL returned while autovacuum was at work on events (the check held its "
            "SHARE UPDATE EXCLUSIVE lock for a moment from another session), without waiting "
            "for it and without "
            + ("vacuuming" if not vacuumed else "analysing") + " the table: VACUUM or "
            "ANALYZE with SKIP_LOCKED skips a table it cannot lock at once, with only a "
            "WARNING, and after a bulk load autovacuum is often on that very table, so the "
            "job's next queries run without statistics or visibility map. Drop SKIP_LOCKED: a "
            "plain VACUUM (ANALYZE) events waits for it, then does its work.")
    if not analysed:
        raise CheckFailed(
            "After your SQL the planner still has no statistics for events (pg_stats has no "
            "row for it), so it guesses: 0.5% of rows for any equality, 1/3 for a range. "
            "Run ANALYZE on the table (VACUUM alone does not collect statistics; "
            "VACUUM (ANALYZE) does both).")
    unanalysed = [c for c in ld.EVENT_COLUMNS if c not in analysed]
    if unanalysed:
        raise CheckFailed(
            f"After your SQL, pg_stats has statistics for {', '.join(sorted(analysed))} but not "
            f"for {', '.join(unanalysed)}: the planner still guesses for any condition on "
            "those (the join in this notebook filters on kind and detail). Analyse the whole "
            "table: ANALYZE events, without a column list.")
    limits = sorted({rand.randint(1, max(1, lab.scale.customers // 10)), lab.scale.customers})
    for limit in limits:
        plan = ex.explain(lab, Q4_QUERY.format(limit=limit),
                          settings={"enable_seqscan": "off", "enable_bitmapscan": "off"})
        scans = plan.find("Index Only Scan", relation=TABLE)
        if not scans:
            raise CheckFailed("The check's query no longer uses an Index Only Scan on events; "
                              f"did your SQL drop or change the index {Q4_INDEX}?", plan.text())
        fetches = scans[0].heap_fetches or 0
        if fetches and vacuumed and visible >= 0.9 * pages:
            continue  # VACUUM ran over the table; a few pages were pinned by someone else
        if fetches and vacuumed and holders:
            shown = "; ".join(f"pid {pid} ({app}, {state}, transaction open for {age})"
                              for pid, app, state, age in holders)
            raise CheckFailed(
                f"Your SQL ran VACUUM, but the Index Only Scan still visits the heap ({fetches:,} "
                f"Heap Fetches; {visible:,} of {pages:,} pages all-visible): another session in "
                "this database holds a transaction open, so VACUUM could not mark the freshly "
                "loaded rows visible to everyone. Commit or close that session (a notebook "
                "connection left in a transaction?) and run the check again.", shown)
        if fetches:
            raise CheckFailed(
                f"The Index Only Scan still visits the heap ({fetches:,} Heap Fetches for "
                f"customer_id <= {limit:,}): the visibility map marks {visible:,} of {pages:,} "
                "pages all-visible. Only VACUUM sets those bits (ANALYZE does not): run "
                "VACUUM (ANALYZE) events.", plan.text())
    return (f"statistics on all {len(analysed)} columns; Index Only Scans read no heap page "
            f"({visible:,}/{pages:,} pages all-visible)")


HINTS = {
    "q1": [
        "copy_line: NULL is \\N; in every other value a backslash becomes two, a tab \\t, a "
        "newline \\n, a carriage return \\r (escape the backslash first); tabs join the "
        "fields, a newline ends the line.",
        "occurred_at is a timezone-aware datetime (in various offsets, with fractions of a "
        "second), and the caller's session is not in UTC: isoformat() keeps the microseconds "
        "and the offset; str() of an int or a Decimal is exact.",
        "with conn.cursor() as cur, cur.copy('COPY events (id, customer_id, kind, occurred_at, "
        "amount, detail) FROM STDIN') as copy: then copy.write(copy_line(row)) for each row.",
        "No LOCK TABLE (readers never see uncommitted rows anyway), one transaction for the "
        "whole stream, and no except that swallows an error: a failed load must raise.",
    ],
    "q2": [
        "Every INSERT statement costs a round trip to the server; with autocommit, also a WAL "
        "flush to disk. COPY sends rows as one stream.",
        "Stream the iterator into cursor.copy(...), one copy.write(copy_line(row)) per row; no "
        "list, no per-row INSERT.",
    ],
    "q3": [
        "list(rows), a DataFrame of everything or a giant buffer all grow with the stream.",
        "Iterate over `rows` once, writing each row (or each batch of a few thousand) as you go; "
        "after the loop, write the last, partial batch too.",
        "Keep nothing per row, not even its id: to report what was loaded, count the rows.",
    ],
    "q4": [
        "Two things are missing after a bulk load: statistics for the planner, and the "
        "visibility map that lets an Index Only Scan skip the table.",
        "ANALYZE collects the first, VACUUM sets the second; VACUUM (ANALYZE) events does both.",
    ],
}
