"""Bulk loading: a stream of realistic events, the ways teams insert it, and what it costs.

The large-datasets challenge loads an ``events`` table (a shop's click stream)
from a Python *iterator* of row tuples, the way an ETL job receives rows from a
file, a queue or an API: one at a time, more of them than fit comfortably in
memory. This module holds

* :func:`events`, a deterministic generator of such rows. About one row in
  fifty carries a value a hand-rolled loader gets wrong: tabs, newlines,
  carriage returns, backslashes, the two-character string ``\\N`` (COPY's
  NULL marker, here meant literally), the line ``\\.`` (COPY's old
  end-of-data marker), quotes, the word ``NULL``, the empty string, emoji,
  combining accents. ``None`` is a real NULL.
* the insertion strategies compared in the notebook, each a function
  ``strategy(url, rows, table)`` that opens its own connection (the strategy
  decides autocommit, pipelining, batching);
* :func:`measure` (rows per second, wall clock) and the two memory meters,
  :func:`traced_peak` (tracemalloc: Python allocations, resettable, what the
  check uses) and :func:`rss_peak` (psutil: the operating system's view,
  sampled by a thread, what a container's memory limit sees).

Rows are generated chunk by chunk with numpy and handed out one tuple at a
time, so the generator itself holds a chunk (a few thousand rows), never the
stream.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import psycopg
from psycopg import sql

EVENT_COLUMNS = ("id", "customer_id", "kind", "occurred_at", "amount", "detail")
# psycopg type names for binary COPY: binary needs every column's exact type
EVENT_TYPES = ("int8", "int8", "text", "timestamptz", "numeric", "text")

Row = tuple[int, int, str, datetime, "Decimal | None", "str | None"]


def events_ddl(table: str = "events", *, unlogged: bool = False,
               autovacuum: bool = True, temporary: bool = False) -> sql.Composed:
    """CREATE TABLE for the events stream (no keys, no indexes: those come after a load).

    ``temporary`` makes a session-private table (other sessions cannot read it):
    where a check keeps the rows it expects.
    """
    options = sql.SQL("" if autovacuum or temporary else " WITH (autovacuum_enabled = off)")
    kind = "TEMPORARY " if temporary else "UNLOGGED " if unlogged else ""
    return sql.SQL(
        "CREATE {}TABLE {} (\n"
        "    id          bigint        NOT NULL,\n"
        "    customer_id bigint        NOT NULL,\n"
        "    kind        text          NOT NULL,\n"
        "    occurred_at timestamptz   NOT NULL,\n"
        "    amount      numeric(10,2),\n"
        "    detail      text\n"
        "){}").format(sql.SQL(kind), sql.Identifier(table), options)


def create_events_table(conn: psycopg.Connection, table: str = "events", *,
                        unlogged: bool = False, autovacuum: bool = True,
                        temporary: bool = False) -> None:
    """Drop and create ``table`` (committed when ``conn`` is in autocommit)."""
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    conn.execute(events_ddl(table, unlogged=unlogged, autovacuum=autovacuum,
                            temporary=temporary))


# --------------------------------------------------------------------------
# the stream

KINDS = ("page_view", "search", "add_to_cart", "checkout", "review", "refund")
KIND_WEIGHTS = (0.62, 0.18, 0.11, 0.05, 0.03, 0.01)
SEARCHES = ("wireless headphones", "yoga mat", "coffee mug", "rain jacket", "board game",
            "usb-c cable", "garden hose", "face cream", "running shoes", "desk lamp",
            "kids puzzle", "wool scarf", "phone charger", "cookbook", "water bottle")
REVIEWS = ("Great value, arrived quickly.", "Smaller than expected.", "Would buy again!",
           "The colour is a bit off.", "Broke after two weeks.", "Exactly as described.",
           "Packaging was damaged but the item is fine.", "Five stars.")
# Values that break naive loaders: each is text that must arrive byte for byte.
TRICKY = (
    "tab\there", "two\nlines", "windows\r\nline end", "back\\slash", "C:\\new\\table",
    "\\N", "\\.", "line\n\\.\nafter the end marker", "NULL", "", " ", "say \"hi\"",
    "it's", "comma, separated; semicolon", "naïve café", "Zürich → 東京", "party 🎉🎉",
    "e\u0301 (combining accent)", "zero\u200bwidth", "trailing tab\t", "\\\\server\\share",
    "'); DROP TABLE events; --", "{\"json\": \"inside text\"}", "100% \\x00 not a nul",
)
TRICKY_SHARE = 0.02
HISTORY_START = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp())
HISTORY_SECONDS = 3 * 365 * 86_400
_CHUNK = 4_096  # rows drawn at once by numpy, then handed out one by one


def _price_pool(rng: np.random.Generator) -> list[Decimal]:
    cents = np.maximum((np.exp(rng.normal(3.5, 0.9, 2_000)) * 100).astype(np.int64), 99)
    return [Decimal(int(c)).scaleb(-2) for c in cents]


def events(n: int, *, seed: int = 7, customers: int = 5_000, start_id: int = 1,
           tricky_share: float = TRICKY_SHARE) -> Iterator[Row]:
    """``n`` event rows, the same for the same arguments, generated lazily.

    Tuples of (id, customer_id, kind, occurred_at, amount, detail): ``amount``
    is a ``Decimal`` for checkouts and refunds, else ``None``; ``detail`` is a
    search query, a review, a tricky value or ``None``.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    prices = _price_pool(rng)
    kind_cdf = np.cumsum(KIND_WEIGHTS)
    n_search, n_review, n_tricky = len(SEARCHES), len(REVIEWS), len(TRICKY)
    null_below = tricky_share + (1 - tricky_share) * 0.45  # 45% of the other rows: NULL
    for lo in range(0, n, _CHUNK):
        m = min(_CHUNK, n - lo)
        ids = range(start_id + lo, start_id + lo + m)
        # a few customers do most of the clicking (Zipf-like)
        cust = (1 + (rng.random(m) ** 3 * customers).astype(np.int64)).tolist()
        kind = np.minimum(np.searchsorted(kind_cdf, rng.random(m), side="right"), 5).tolist()
        # time-ordered within the stream, as a log is
        when = (HISTORY_START + (lo + np.sort(rng.random(m)) * m) / n * HISTORY_SECONDS)
        when = when.astype(np.int64).tolist()
        price = rng.integers(0, len(prices), m).tolist()
        pick = rng.random(m).tolist()
        which = rng.integers(0, 1 << 30, m).tolist()
        for i, row_id in enumerate(ids):
            k = kind[i]
            amount = prices[price[i]] if k in (3, 5) else None
            p = pick[i]
            if p < tricky_share:
                detail: str | None = TRICKY[which[i] % n_tricky]
            elif k == 1:
                detail = f"{SEARCHES[which[i] % n_search]} {which[i] % 97}"
            elif k == 4:
                detail = REVIEWS[which[i] % n_review]
            elif p < null_below:
                detail = None
            else:
                detail = f"/p/{which[i] % 100_003}?ref=feed"
            yield (row_id, cust[i], KINDS[k], datetime.fromtimestamp(when[i], timezone.utc),
                   amount, detail)


def batched(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of at most ``size`` items (``itertools.batched`` arrived in Python 3.12)."""
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


# --------------------------------------------------------------------------
# insertion strategies: strategy(url, rows, table)


def _insert_sql(table: str, rows_per_statement: int = 1) -> sql.Composed:
    one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(EVENT_COLUMNS)))
    return sql.SQL("INSERT INTO {} ({}) VALUES {}").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS)),
        sql.SQL(", ").join([one] * rows_per_statement))


def copy_sql(table: str, fmt: str = "text") -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS)),
        sql.SQL(" (FORMAT BINARY)" if fmt == "binary" else ""))


def row_by_row_autocommit(url: str, rows: Iterable[Row], table: str = "events",
                          synchronous_commit: str = "on") -> None:
    """One INSERT per row, each its own transaction: one round trip and one WAL flush per row.

    ``synchronous_commit="off"`` lets each COMMIT return before its WAL reaches
    the disk (a crash may lose the last few hundred milliseconds of commits,
    never corrupt anything).
    """
    with psycopg.connect(url, autocommit=True,
                         options=f"-c synchronous_commit={synchronous_commit}") as conn, \
            conn.cursor() as cur:
        q = _insert_sql(table).as_string(conn)  # compose once, not per row
        for row in rows:
            cur.execute(q, row)


def row_by_row_one_transaction(url: str, rows: Iterable[Row], table: str = "events") -> None:
    """One INSERT per row, one COMMIT at the end: still one round trip per row."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        q = _insert_sql(table).as_string(conn)
        for row in rows:
            cur.execute(q, row)


def executemany(url: str, rows: Iterable[Row], table: str = "events") -> None:
    """``cursor.executemany``: psycopg 3 pipelines it (psycopg2's did one round trip per row)."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(_insert_sql(table), rows)


def pipeline(url: str, rows: Iterable[Row], table: str = "events") -> None:
    """Explicit pipeline mode: send INSERTs without waiting for each reply."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        q = _insert_sql(table).as_string(conn)
        with conn.pipeline():
            for row in rows:
                cur.execute(q, row, prepare=True)


def _values_sql(table: str, rows: int) -> str:
    """INSERT … VALUES ($1, …, $6), ($7, …), … for ``rows`` rows (server-side placeholders)."""
    width = len(EVENT_COLUMNS)
    groups = ", ".join("(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")"
                       for r in range(rows))
    return f"INSERT INTO {table} ({', '.join(EVENT_COLUMNS)}) VALUES {groups}"


def multirow_values(url: str, rows: Iterable[Row], table: str = "events",
                    batch: int = 1_000) -> None:
    """INSERT … VALUES (…), (…), … with ``batch`` rows per statement.

    A statement may carry at most 65,535 parameters, so 6 columns allow at
    most 10,922 rows per statement. A RawCursor takes ``$n`` placeholders as
    they are: psycopg's ordinary cursor re-parses a long query's ``%s`` on
    every execute (it caches only short ones), which made this strategy look
    three times slower than it is.
    """
    # prepare_threshold=None: psycopg would prepare each distinct (query, parameter
    # types) pair and keep up to 100 of them, each with its own 40 kB statement
    with psycopg.connect(url, prepare_threshold=None) as conn, psycopg.RawCursor(conn) as cur:
        full = _values_sql(table, batch)
        for chunk in batched(rows, batch):
            q = full if len(chunk) == batch else _values_sql(table, len(chunk))
            cur.execute(q, [v for row in chunk for v in row])


def unnest_arrays(url: str, rows: Iterable[Row], table: str = "events",
                  batch: int = 10_000) -> None:
    """INSERT … SELECT * FROM unnest($1::bigint[], …): one array parameter per column.

    Six parameters whatever the batch size, so no 65,535 limit and one short
    statement the server plans once per batch.
    """
    stmt = sql.SQL("INSERT INTO {} ({}) SELECT * FROM unnest("
                   "%s::bigint[], %s::bigint[], %s::text[], %s::timestamptz[], "
                   "%s::numeric[], %s::text[])").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS)))
    with psycopg.connect(url, prepare_threshold=None) as conn, conn.cursor() as cur:
        q = stmt.as_string(conn)
        for chunk in batched(rows, batch):
            cur.execute(q, [list(col) for col in zip(*chunk)])


def copy_rows(conn: psycopg.Connection, rows: Iterable[Row], table: str = "events",
              fmt: str = "text") -> int:
    """COPY ``rows`` into ``table`` on ``conn`` (the caller commits); returns the row count.

    ``write_row`` escapes every value for the chosen format, and the COPY
    buffer is flushed to the server as it fills, so memory stays flat.
    """
    n = 0
    with conn.cursor() as cur, cur.copy(copy_sql(table, fmt)) as copy:
        if fmt == "binary":
            copy.set_types(list(EVENT_TYPES))
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def copy_text(url: str, rows: Iterable[Row], table: str = "events") -> None:
    """COPY … FROM STDIN in text format, rows written one by one by psycopg."""
    with psycopg.connect(url) as conn:
        copy_rows(conn, rows, table, "text")


def copy_binary(url: str, rows: Iterable[Row], table: str = "events") -> None:
    """COPY … (FORMAT BINARY): no text parsing on the server, but every type must be declared."""
    with psycopg.connect(url) as conn:
        copy_rows(conn, rows, table, "binary")


def _frames(rows: Iterable[Row], size: int) -> Iterator[Any]:
    import pandas as pd

    for chunk in batched(rows, size):
        yield pd.DataFrame.from_records(chunk, columns=list(EVENT_COLUMNS))


def _engine(url: str):
    from sqlalchemy import create_engine

    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def pandas_copy_method(table: Any, conn: Any, keys: Sequence[str], data_iter: Iterable) -> int:
    """A ``method=`` for ``DataFrame.to_sql`` that uses COPY (the pattern pandas documents)."""
    dbapi = conn.connection.dbapi_connection  # the psycopg connection under SQLAlchemy
    name = f"{table.schema}.{table.name}" if table.schema else table.name
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(*name.split(".")), sql.SQL(", ").join(map(sql.Identifier, keys)))
    n = 0
    with dbapi.cursor() as cur, cur.copy(stmt) as copy:
        for row in data_iter:
            copy.write_row([None if v is None or v != v else v for v in row])  # NaN → NULL
            n += 1
    return n


def _to_sql(url: str, rows: Iterable[Row], table: str, method: Any, chunk: int) -> None:
    from sqlalchemy import Numeric

    engine = _engine(url)
    try:
        with engine.begin() as conn:
            for frame in _frames(rows, chunk):
                # a column of Decimal and None is dtype object: pandas would bind it
                # as VARCHAR, and PostgreSQL refuses varchar into numeric
                frame.to_sql(table, conn, if_exists="append", index=False, method=method,
                             chunksize=1_000 if method == "multi" else None,
                             dtype={"amount": Numeric(10, 2)})
    finally:
        engine.dispose()


def pandas_to_sql(url: str, rows: Iterable[Row], table: str = "events") -> None:
    """``DataFrame.to_sql`` with the default method (SQLAlchemy's executemany)."""
    _to_sql(url, rows, table, None, 10_000)


def pandas_to_sql_multi(url: str, rows: Iterable[Row], table: str = "events") -> None:
    """``to_sql(method="multi", chunksize=1000)``: multi-row INSERTs built by SQLAlchemy."""
    _to_sql(url, rows, table, "multi", 10_000)


def pandas_to_sql_copy(url: str, rows: Iterable[Row], table: str = "events") -> None:
    """``to_sql(method=pandas_copy_method)``: DataFrames, but COPY underneath."""
    _to_sql(url, rows, table, pandas_copy_method, 10_000)


STRATEGIES: dict[str, Callable[[str, Iterable[Row], str], None]] = {
    "row by row, autocommit": row_by_row_autocommit,
    "row by row, one transaction": row_by_row_one_transaction,
    "executemany": executemany,
    "pipeline mode": pipeline,
    "multi-row VALUES (1,000/stmt)": multirow_values,
    "INSERT … SELECT unnest(arrays)": unnest_arrays,
    "pandas to_sql (default)": pandas_to_sql,
    "pandas to_sql (method='multi')": pandas_to_sql_multi,
    "pandas to_sql (COPY method)": pandas_to_sql_copy,
    "COPY text": copy_text,
    "COPY binary": copy_binary,
}
# how fast each class of strategy is: decides how many rows it gets to measure
SPEED_CLASS = {
    "row by row, autocommit": "slow", "row by row, one transaction": "slow",
    "executemany": "medium", "pipeline mode": "medium",
    "multi-row VALUES (1,000/stmt)": "medium", "INSERT … SELECT unnest(arrays)": "medium",
    "pandas to_sql (default)": "medium",
    "pandas to_sql (method='multi')": "medium", "pandas to_sql (COPY method)": "fast",
    "COPY text": "fast", "COPY binary": "fast",
}


# --------------------------------------------------------------------------
# measuring


@dataclass
class Measurement:
    strategy: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / max(self.seconds, 1e-9)

    def extrapolate(self, rows: int) -> float:
        """Seconds for ``rows`` at this rate (linear: honest for INSERTs, optimistic for
        anything that grows indexes or outgrows the cache)."""
        return rows / self.rows_per_second


def measure(name: str, func: Callable[[], Any], rows: int) -> Measurement:
    """Wall-clock one call of ``func`` that loads ``rows`` rows."""
    started = time.perf_counter()
    func()
    return Measurement(name, rows, time.perf_counter() - started)


def traced_peak(func: Callable[[], Any]) -> tuple[Any, int]:
    """(result, peak bytes of Python allocations during ``func``), by tracemalloc.

    Counts only what Python allocates (tuples, strings, lists, DataFrames'
    Python objects, numpy buffers), not libpq's or the allocator's slack; in
    exchange it is exact, repeatable and starts from zero for each call.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        result = func()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return result, max(peak, 0)


def rss_peak(func: Callable[[], Any], interval: float = 0.005) -> tuple[Any, int]:
    """(result, peak growth of the process's resident memory during ``func``), by psutil.

    A thread samples RSS every ``interval`` seconds: what the operating system
    (and a container's memory limit) sees, including C libraries and memory
    Python has freed but not returned. Peaks shorter than ``interval`` can be
    missed, and memory an earlier step left in Python's free lists is reused
    without showing up, so compare runs in the same order.
    """
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = func()
    finally:
        done.set()
        sampler.join()
    peak = max(peak, proc.memory_info().rss)
    return result, peak - base


class Deadline(BaseException):
    """Raised from inside a stream when a loader has run too long (BaseException, so a
    loader's ``except Exception`` cannot swallow it)."""

    def __init__(self, rows: int, seconds: float) -> None:
        super().__init__(f"{rows} rows after {seconds:.1f} s")
        self.rows = rows
        self.seconds = seconds


class Counted:
    """An iterator wrapper that counts what was taken and can stop a slow consumer."""

    def __init__(self, rows: Iterable[Any], deadline: float | None = None) -> None:
        self._it = iter(rows)
        self.taken = 0
        self._deadline = deadline
        self._started = time.perf_counter()

    def __iter__(self) -> "Counted":
        return self

    def __next__(self) -> Any:
        row = next(self._it)
        self.taken += 1
        if self._deadline is not None and self.taken % 500 == 0:
            elapsed = time.perf_counter() - self._started
            if elapsed > self._deadline:
                raise Deadline(self.taken, elapsed)
        return row
