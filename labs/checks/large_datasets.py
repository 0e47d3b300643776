"""Checks for 01_large_datasets: a streaming loader, and the maintenance after a load.

``load_events(conn, rows)`` is judged on three properties, each by its own check:

* q1, every row byte for byte: a stream rich in values that break hand-rolled
  loaders (tabs, newlines, backslashes, ``\\N``, ``\\.``, quotes, emoji,
  NULLs) is loaded by the learner's function and by a reference COPY into a
  second table; row count and :func:`labs.data.dataset.table_checksum` must match,
  and the first differing rows are shown.
* q2, throughput: the same comparison on a larger stream, and the learner's
  rows/s must reach ``MIN_COPY_RATIO`` of the reference COPY *measured in the
  same check* (never an absolute time). Both timings include generating the
  rows, which costs the same for both. A loader that is clearly too slow is
  stopped by a deadline inside the stream, so a row-by-row loader fails in
  seconds instead of minutes; a borderline result is measured once more and
  the better of the two runs counts.
* q3, memory: tracemalloc's peak of Python allocations while the loader
  consumes a short and a four-times-longer stream. A streaming loader's peak
  depends on its batch size, not on the number of rows; one that builds a list
  (or a DataFrame) of everything grows with the stream. The yardstick is
  measured in the check too: what holding the rows in a list costs.

q4 runs the learner's after-load SQL on a freshly loaded table (autovacuum
off, so nothing happens behind the check's back) and asserts its effects:
column statistics exist (pg_stats), and an Index Only Scan reads no heap page
(EXPLAIN's "Heap Fetches: 0"), which needs the visibility map VACUUM sets.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

import psycopg
from psycopg import sql

from ..tools import explain as ex
from ..data import loading as ld
from ..course.checking import CheckFailed, require
from ..data.dataset import table_checksum

TABLE = "events"
EXPECTED = "events_expected"
Q1_ROWS = 3_000
Q1_TRICKY_SHARE = 0.25  # one row in four carries a value that needs escaping
Q2_MAX_ROWS = 200_000
MIN_COPY_RATIO = 0.3
DEADLINE_FACTOR = 2.0  # stop a loader at this many times the slowest passing time
Q3_ROWS = (5_000, 25_000)
Q3_GROWTH_SHARE = 0.25  # peak growth must stay under this share of the list's growth
Q3_PEAK_SHARE = 0.5  # and the peak under this share of the whole list at the longer stream
Q4_INDEX = "events_customer_id_idx"
Q4_QUERY = "SELECT count(*) FROM events WHERE customer_id <= {limit}"


def q2_rows(lab: Any) -> int:
    """How many rows the throughput check loads at this scale."""
    return min(lab.scale.largest_table_rows, Q2_MAX_ROWS)


def _stream(lab: Any, n: int, **kwargs: Any):
    return ld.events(n, customers=lab.scale.customers, **kwargs)


def _fresh(lab: Any, *tables: str, autovacuum: bool = True) -> None:
    with lab.connect(autocommit=True) as conn:
        for table in tables:
            ld.create_events_table(conn, table, autovacuum=autovacuum)


def _run_loader(lab: Any, load_events: Callable, rows: Any) -> float:
    """Call the learner's loader on a fresh connection; seconds, commit included."""
    # prepare_threshold=None: psycopg's cache of prepared statements would keep
    # up to 100 copies of a long multi-row INSERT, and count against q3
    conn = lab.connect(prepare_threshold=None)
    try:
        started = time.perf_counter()
        load_events(conn, rows)
        if not conn.closed:
            conn.commit()
        return time.perf_counter() - started
    finally:
        conn.close()


def _reference(lab: Any, n: int, **kwargs: Any) -> float:
    """COPY the same rows into events_expected; seconds, commit included."""
    with lab.connect(prepare_threshold=None) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(EXPECTED)))
        conn.commit()
        started = time.perf_counter()
        ld.copy_rows(conn, _stream(lab, n, **kwargs), EXPECTED)
        conn.commit()
        return time.perf_counter() - started


def _compare_tables(lab: Any, n: int) -> None:
    """events must hold exactly the rows of events_expected."""
    with lab.connect() as conn:
        got = table_checksum(conn, TABLE)
        want = table_checksum(conn, EXPECTED)
        if got == want:
            return
        missing = conn.execute(
            f"SELECT id, detail FROM (SELECT * FROM {EXPECTED} EXCEPT ALL SELECT * FROM {TABLE}) d "
            "ORDER BY id LIMIT 3").fetchall()
        extra = conn.execute(
            f"SELECT id, detail FROM (SELECT * FROM {TABLE} EXCEPT ALL SELECT * FROM {EXPECTED}) d "
            "ORDER BY id LIMIT 3").fetchall()
    examples = (f"expected but not loaded: {[(i, d) for i, d in missing]}; "
                f"loaded but not expected: {[(i, d) for i, d in extra]}")
    if got[0] == 0:
        raise CheckFailed(f"The events table is empty after your loader ran; the stream had "
                          f"{n:,} rows. Did it insert into `events`, and is the transaction "
                          "committed (or left for the check to commit)?", examples)
    if got[0] < want[0]:
        raise CheckFailed(
            f"Your loader loaded {got[0]:,} rows; the stream had {want[0]:,}. "
            f"{want[0] - got[0]:,} rows are missing: a loader must never skip a row it finds "
            "awkward. Let COPY (copy.write_row) or query parameters do the escaping, and let an "
            "error stop the load instead of hiding it.", examples)
    if got[0] > want[0]:
        raise CheckFailed(
            f"Your loader loaded {got[0]:,} rows; the stream had {want[0]:,}. Some rows were "
            "loaded twice (a retried batch?) or split in two (a newline in a value read as "
            "the end of a row).", examples)
    raise CheckFailed(
        f"The row count is right ({got[0]:,}) but some values differ from what the stream "
        "holds: tabs, newlines, backslashes, the string '\\N' or NULLs were changed on the way. "
        "Hand-built COPY text must escape \\, tab, newline and carriage return, and write NULL "
        "as \\N; copy.write_row and query parameters do it for you.", examples)


# --------------------------------------------------------------------------
# the loader


def q1(lab: Any, load_events: Callable) -> str:
    """Every row arrives exactly: count and checksum equal a reference COPY's."""
    require(load_events)
    _fresh(lab, TABLE, EXPECTED)
    _reference(lab, Q1_ROWS, tricky_share=Q1_TRICKY_SHARE)
    _run_loader(lab, load_events, _stream(lab, Q1_ROWS, tricky_share=Q1_TRICKY_SHARE))
    _compare_tables(lab, Q1_ROWS)
    return (f"all {Q1_ROWS:,} rows arrived byte for byte, tabs, newlines, backslashes, "
            "'\\N' and NULLs included")


def _timed_attempt(lab: Any, load_events: Callable, n: int) -> tuple[float, float]:
    """(reference seconds, learner seconds) for one run on fresh tables."""
    _fresh(lab, TABLE, EXPECTED)
    reference = _reference(lab, n)
    deadline = max(3.0, reference / MIN_COPY_RATIO * DEADLINE_FACTOR)
    rows = ld.Counted(_stream(lab, n), deadline=deadline)
    try:
        learner = _run_loader(lab, load_events, rows)
    except ld.Deadline as stop:
        rate = stop.rows / stop.seconds
        raise CheckFailed(
            f"Your loader had taken only {stop.rows:,} of {n:,} rows after {stop.seconds:.1f} s, "
            f"about {rate:,.0f} rows/s, while COPY loaded all of them at "
            f"{n / reference:,.0f} rows/s; the check stopped it. A round trip (and with "
            "autocommit a WAL flush) per row caps a loader at a few thousand rows/s: stream the "
            "rows through COPY (cursor.copy + write_row).",
            f"deadline {deadline:.1f} s = {DEADLINE_FACTOR}x the slowest passing time") from None
    _compare_tables(lab, n)
    return reference, learner


def q2(lab: Any, load_events: Callable) -> str:
    """Throughput: at least MIN_COPY_RATIO of a reference COPY of the same rows, same run."""
    require(load_events)
    n = q2_rows(lab)
    reference, learner = _timed_attempt(lab, load_events, n)
    if reference / learner < MIN_COPY_RATIO:
        # noise from other processes only ever adds time: keep the better of two runs
        again_ref, again = _timed_attempt(lab, load_events, n)
        reference, learner = min(reference, again_ref), min(learner, again)
    ratio = reference / learner
    if ratio < MIN_COPY_RATIO:
        raise CheckFailed(
            f"Your loader ran at {n / learner:,.0f} rows/s, {ratio:.2f}x the reference COPY's "
            f"{n / reference:,.0f} rows/s on the same {n:,} rows; the task asks for at least "
            f"{MIN_COPY_RATIO}x. Per-statement costs (a round trip, parsing, planning) dominate "
            "below that: use COPY, or at least large multi-row batches.",
            f"reference {reference:.2f} s, yours {learner:.2f} s (best of two runs)")
    return (f"{n / learner:,.0f} rows/s, {ratio:.2f}x the reference COPY measured in the same "
            f"check (at least {MIN_COPY_RATIO}x needed)")


def _list_cost(lab: Any, n: int) -> int:
    return ld.traced_peak(lambda: list(_stream(lab, n)))[1]


def q3(lab: Any, load_events: Callable) -> str:
    """Memory: the peak does not grow with the number of rows."""
    require(load_events)
    short, long = Q3_ROWS
    peaks = []
    for n in (short, long):
        _fresh(lab, TABLE)
        peaks.append(ld.traced_peak(lambda: _run_loader(lab, load_events, _stream(lab, n)))[1])
    lists = [_list_cost(lab, short), _list_cost(lab, long)]
    mib = lambda b: f"{b / 2**20:.1f} MiB"  # noqa: E731
    growth, list_growth = peaks[1] - peaks[0], lists[1] - lists[0]
    detail = (f"peak {mib(peaks[0])} for {short:,} rows, {mib(peaks[1])} for {long:,}; "
              f"a list of the rows takes {mib(lists[0])} and {mib(lists[1])}")
    if growth > Q3_GROWTH_SHARE * list_growth or peaks[1] > Q3_PEAK_SHARE * lists[1]:
        raise CheckFailed(
            f"Your loader's memory grows with the stream: its peak went from {mib(peaks[0])} "
            f"({short:,} rows) to {mib(peaks[1])} ({long:,} rows), as if it held the rows "
            f"(a list of {long:,} rows takes {mib(lists[1])}). At 10 million rows that is "
            "gigabytes. Consume the iterator as you go (for row in rows: copy.write_row(row)), "
            "or in fixed-size batches; never list(rows) or one DataFrame of everything.",
            detail)
    return (f"peak {mib(peaks[1])} for {long:,} rows vs {mib(peaks[0])} for {short:,}: "
            f"bounded by the batch, not the stream (holding the rows would take "
            f"{mib(lists[1])})")


# --------------------------------------------------------------------------
# after the load


def _statements(sql_text: str) -> list[str]:
    """The learner's SQL, one statement at a time (VACUUM refuses to share a string)."""
    text = re.sub(r"--[^\n]*", "", re.sub(r"/\*.*?\*/", "", sql_text, flags=re.S))
    return [s.strip() for s in text.split(";") if s.strip()]


def q4_rows(lab: Any) -> int:
    return min(lab.scale.largest_table_rows, Q2_MAX_ROWS)


def q4(lab: Any, after_load_sql: str) -> str:
    """After a fresh load: statistics exist and an Index Only Scan needs no heap fetch."""
    require(after_load_sql)
    n = q4_rows(lab)
    _fresh(lab, TABLE, autovacuum=False)
    with lab.connect(autocommit=True) as conn:
        ld.copy_rows(conn, _stream(lab, n))
        conn.execute(f"CREATE INDEX {Q4_INDEX} ON {TABLE} (customer_id)")
        for statement in _statements(after_load_sql):
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                raise CheckFailed(f"PostgreSQL rejected your SQL: "
                                  f"{exc.diag.message_primary or exc}",
                                  f"statement: {statement}; SQLSTATE {exc.sqlstate}") from None
        stats = conn.execute("SELECT count(*) FROM pg_stats WHERE schemaname = 'public' "
                             "AND tablename = %s", (TABLE,)).fetchone()[0]
        pages, visible = conn.execute(
            "SELECT relpages, relallvisible FROM pg_class WHERE oid = %s::regclass",
            (TABLE,)).fetchone()
    if not stats:
        raise CheckFailed(
            "After your SQL the planner still has no statistics for events (pg_stats has no "
            "row for it), so it guesses: 0.5% of rows for any equality, 1/3 for a range. "
            "Run ANALYZE on the table (VACUUM alone does not collect statistics; "
            "VACUUM (ANALYZE) does both).")
    limit = max(1, lab.scale.customers // 20)
    plan = ex.explain(lab, Q4_QUERY.format(limit=limit),
                      settings={"enable_seqscan": "off", "enable_bitmapscan": "off"})
    scans = plan.find("Index Only Scan", relation=TABLE)
    if not scans:
        raise CheckFailed("The check's query no longer uses an Index Only Scan on events; did "
                          f"your SQL drop or change the index {Q4_INDEX}?", plan.text())
    fetches = scans[0].heap_fetches or 0
    if fetches:
        raise CheckFailed(
            f"The Index Only Scan still visits the heap ({fetches:,} Heap Fetches): the "
            f"visibility map marks {visible:,} of {pages:,} pages all-visible. Only VACUUM "
            "sets those bits (ANALYZE does not): run VACUUM (ANALYZE) events.", plan.text())
    return (f"statistics on {stats} columns; the Index Only Scan read no heap page "
            f"({visible:,}/{pages:,} pages all-visible)")


HINTS = {
    "q1": [
        "The rows contain tabs, newlines, backslashes and the two characters \\N. If you build "
        "COPY text yourself, every one of them must be escaped; psycopg can do it for you.",
        "with conn.cursor() as cur, cur.copy('COPY events (id, customer_id, kind, occurred_at, "
        "amount, detail) FROM STDIN') as copy: then copy.write_row(row) for each row.",
    ],
    "q2": [
        "Every INSERT statement costs a round trip to the server; with autocommit, also a WAL "
        "flush to disk. COPY sends rows as one stream.",
        "Stream the iterator into cursor.copy(...) with write_row; no list, no per-row INSERT.",
    ],
    "q3": [
        "list(rows), a DataFrame of everything or a giant buffer all grow with the stream.",
        "Iterate over `rows` once, writing each row (or each batch of a few thousand) as you go.",
    ],
    "q4": [
        "Two things are missing after a bulk load: statistics for the planner, and the "
        "visibility map that lets an Index Only Scan skip the table.",
        "ANALYZE collects the first, VACUUM sets the second; VACUUM (ANALYZE) events does both.",
    ],
}
