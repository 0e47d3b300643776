"""Looking at a partitioned table: its partitions and bounds, where rows live, what plans scan.

The partitioning challenge (14) converts ``orders`` to monthly range partitions and
then proves three things with evidence rather than by reading SQL: every row sits in
the partition whose bounds contain it (:func:`partition_bounds`, :func:`rows_by_partition`),
a query scans only the partitions it needs (:func:`scanned_partitions`, at planning time
and, with a generic plan, at execution time: ``Subplans Removed``), and retention by
``DETACH``/``DROP`` costs next to nothing where ``DELETE`` writes the whole year to WAL
and leaves it dead (:func:`measure`, :func:`dead_tuples`).

WAL bytes come from ``table_health.measure_wal`` (``pg_wal_lsn_diff``): the whole
server's WAL in that interval, so other sessions' writes count too (on a busy server,
compare two measurements taken back to back, never one against a fixed number).
"""

from __future__ import annotations

import datetime as dt
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import psycopg

from .table_health import flush_stats, measure_wal

UTC = dt.timezone.utc


@dataclass(frozen=True)
class Partition:
    """One partition of a range-partitioned table: ``lower <= key < upper`` (None: unbounded)."""

    name: str
    lower: dt.datetime | None
    upper: dt.datetime | None
    is_default: bool

    def holds(self, instant: dt.datetime) -> bool:
        return ((self.lower is None or self.lower <= instant)
                and (self.upper is None or instant < self.upper))


def month_start(instant: dt.datetime | dt.date) -> dt.datetime:
    """The first instant (UTC) of the UTC month that holds ``instant``."""
    if isinstance(instant, dt.datetime):
        instant = instant.astimezone(UTC) if instant.tzinfo else instant.replace(tzinfo=UTC)
        return dt.datetime(instant.year, instant.month, 1, tzinfo=UTC)
    return dt.datetime(instant.year, instant.month, 1, tzinfo=UTC)


def add_months(month: dt.datetime, n: int) -> dt.datetime:
    """The UTC month start ``n`` months after the UTC month that holds ``month``."""
    month = month_start(month)
    index = month.year * 12 + month.month - 1 + n
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def month_starts(first: dt.datetime | dt.date, last: dt.datetime | dt.date) -> list[dt.datetime]:
    """The UTC month starts from ``first``'s month to ``last``'s month, both included."""
    out, month, end = [], month_start(first), month_start(last)
    while month <= end:
        out.append(month)
        month = add_months(month, 1)
    return out


def partition_bounds(conn: psycopg.Connection, table: str) -> list[Partition]:
    """The partitions of ``table`` with their bounds as instants, ordered by lower bound.

    The bounds are read from ``pg_get_expr(relpartbound)``, whose text carries the UTC
    offset, so they mean the same instant in any session ``TimeZone``.
    """
    rows = conn.execute(r"""
        SELECT c.relname, b = 'DEFAULT',
               (regexp_match(b, 'FROM \(''([^'']*)''\)'))[1]::timestamptz,
               (regexp_match(b, 'TO \(''([^'']*)''\)'))[1]::timestamptz
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid,
             pg_get_expr(c.relpartbound, c.oid) AS b
        WHERE i.inhparent = %s::regclass
        ORDER BY 2, 3 NULLS FIRST, 1""", [table]).fetchall()
    return [Partition(name, lower, upper, bool(default)) for name, default, lower, upper in rows]


def is_partitioned(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)",
                       [table]).fetchone()
    return bool(row) and row[0] == "p"


def rows_by_partition(conn: psycopg.Connection, table: str, key: str = "created_at"):
    """A DataFrame: per partition, its bounds, rows, and the earliest and latest key in it."""
    import pandas as pd

    counts = dict(conn.execute(
        f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1").fetchall())
    rows = [(p.name, "DEFAULT" if p.is_default else f"[{p.lower:%Y-%m-%d %H:%M%z}, "
             f"{p.upper:%Y-%m-%d %H:%M%z})", counts.get(p.name, 0))
            for p in partition_bounds(conn, table)]
    return pd.DataFrame(rows, columns=["partition", "bounds", "rows"])


# --------------------------------------------------------------------------
# plans


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


@dataclass
class PartitionScans:
    """Which partitions a plan reads: at planning time (the plan's scan nodes), at
    execution time (the scan nodes that ran), and how many subplans the executor removed."""

    planned: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    subplans_removed: int = 0


def scanned_partitions(conn: psycopg.Connection, sql: str, params: Any = None, *,
                       analyze: bool = True) -> PartitionScans:
    """EXPLAIN (FORMAT JSON[, ANALYZE]) ``sql`` and list the relations its scans read."""
    options = "ANALYZE, BUFFERS OFF, TIMING OFF, " if analyze else ""
    # client-side binding: the values are in the statement as literals (EXPLAIN takes no
    # bind parameters), which is what a custom plan for known values sees
    with psycopg.ClientCursor(conn) as cur:
        doc = cur.execute(f"EXPLAIN ({options}FORMAT JSON) {sql}", params).fetchone()[0]
    plan = doc[0]["Plan"]
    out = PartitionScans()
    for node in _walk(plan):
        out.subplans_removed += int(node.get("Subplans Removed", 0))
        name = node.get("Relation Name")
        if name:
            out.planned.append(name)
            if not analyze or node.get("Actual Loops", 0) > 0:
                out.executed.append(name)
    return out


# --------------------------------------------------------------------------
# measuring maintenance


@dataclass
class Measured:
    seconds: float = 0.0
    wal_bytes: int = 0


@contextmanager
def measure(conn: psycopg.Connection) -> Iterator[Measured]:
    """Time and WAL bytes of what runs inside the block (``conn`` only reads the LSN:
    pass an autocommit connection other than the one doing the work, or the same one
    in autocommit mode)."""
    m = Measured()
    with measure_wal(conn) as wal:
        t0 = time.perf_counter()
        yield m
        m.seconds = time.perf_counter() - t0
    m.wal_bytes = int(wal.bytes or 0)


def dead_tuples(conn: psycopg.Connection, tables: Sequence[str]) -> int:
    """Dead tuples in ``tables`` (partitions included) as the statistics system counts them,
    after flushing this backend's pending counts (``pg_stat_force_next_flush``, PG 15+; call
    it outside a transaction, so that the flush happens before the read)."""
    # the flush happens when the backend goes idle: run it as a statement of its own
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    autocommit = conn.autocommit
    if idle and not autocommit:
        conn.autocommit = True
    try:
        flush_stats(conn)
        conn.execute("SELECT pg_stat_clear_snapshot()")
    finally:
        if conn.autocommit != autocommit:
            conn.autocommit = autocommit
    total = 0
    for table in tables:
        total += conn.execute("""
            SELECT coalesce(sum(pg_stat_get_dead_tuples(c.oid)), 0)
            FROM pg_class c WHERE c.oid = to_regclass(%(t)s)
               OR c.oid IN (SELECT relid FROM pg_partition_tree(to_regclass(%(t)s)))""",
                              {"t": table}).fetchone()[0]
    return int(total)
