"""How healthy a table is: live and dead rows, sizes, bloat, WAL written, the xmin horizon.

MVCC keeps old row versions until no snapshot can see them, so a table's health is
a set of numbers read from several places. This module reads them the same way
every time, so notebooks (13_mvcc_bloat, 14_partitioning) compare like with like::

    from labs import table_health as th

    th.table_stats(conn, "orders")        # live/dead rows, updates, HOT updates, sizes, vacuums
    with th.measure_wal(conn) as wal:     # WAL bytes written between two points
        conn.execute("DELETE FROM orders WHERE ...")
    print(wal.bytes)
    th.vacuum(conn, "orders")             # VACUUM VERBOSE, its report parsed: removed vs
                                          # "dead but not yet removable"
    th.bloat(conn, "orders")              # pgstattuple when available, an estimate otherwise
    th.xmin_horizon(conn)                 # how old the horizon is, and what kinds of thing hold it
    tl = th.timeline(lab, workload, tables=["orders"])   # sample while a workload runs
    th.plot_timeline(tl)

API
---
``table_stats(conn, table) -> dict``
    ``n_live_tup``, ``n_dead_tup``, ``n_tup_ins``, ``n_tup_upd``, ``n_tup_hot_upd``,
    ``n_tup_del``, ``heap_bytes`` (main fork), ``index_bytes``, ``total_bytes`` (with
    TOAST and indexes), ``last_vacuum``, ``last_autovacuum``, ``vacuum_count``,
    ``autovacuum_count``. Counters are PostgreSQL's cumulative statistics: a backend
    sends its counters at most once a second, so a session that has just written
    should call :func:`flush_stats` (PostgreSQL 15+) before another reads them.
``flush_stats(conn)``
    ``pg_stat_force_next_flush()`` in that session (no-op before PostgreSQL 15): its
    counters reach shared memory before the statement returns to the client.
``wal_lsn(conn) -> str`` / ``wal_bytes_since(conn, lsn) -> int``
    ``pg_current_wal_lsn()`` and ``pg_wal_lsn_diff(now, lsn)``. WAL is cluster-wide:
    on a shared server other databases' writes are counted too, so compare two
    measurements taken the same way, never one against a constant.
``measure_wal(conn)``
    A context manager yielding a :class:`WalMeasure`; ``.bytes`` is filled on exit.
``vacuum(conn, table, *, freeze=False) -> dict``
    Runs ``VACUUM (VERBOSE)`` (autocommit connection) and returns what its report
    says: ``removed``, ``remain``, ``not_removable`` (dead but not yet removable: an
    old snapshot may still see them), ``dead_items`` (line pointers of versions already
    pruned, now freed), ``removable_cutoff_age`` and the report text.
``bloat(conn, table) -> dict``
    With the ``pgstattuple`` extension (PostgreSQL's contrib; ``CREATE EXTENSION`` is
    tried once, in a savepoint), exact figures from reading every page: ``method`` is
    ``"pgstattuple"``. Without it (some packaged servers omit contrib), ``method`` is
    ``"estimate"``: rows × average width from ``pg_stats`` against the heap size, which
    needs a recent ``ANALYZE`` and is only good to a factor. Both give ``table_bytes``,
    ``live_bytes``, ``dead_bytes``, ``free_bytes`` and ``bloat_percent`` (dead + free).
``xmin_horizon(conn) -> dict``
    Ages, in transaction ids, of what can hold this database's xmin horizon back:
    the oldest snapshot (``backend_xmin``) and oldest open transaction id
    (``backend_xid``) among other sessions of this database, replication slots'
    ``xmin`` / ``catalog_xmin``, prepared transactions, and ``age(datfrozenxid)``
    (distance to wraparound). Ages and counts only: *which* session to blame is the
    reader's query to write.
``timeline(lab, workload, *, every=0.2, tables=(...)) -> Timeline``
    Runs ``workload()`` (or ``workload(timeline)``, to call ``timeline.mark(label)``)
    while a separate connection samples :func:`table_stats` of each table and the WAL
    written every ``every`` seconds. ``Timeline.frame()`` is a pandas DataFrame.
``plot_timeline(tl, metric="n_dead_tup", ax=None, title=None)``
    One line per table over time, marks as dotted lines (matplotlib).
"""

from __future__ import annotations

import inspect
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import psycopg
from psycopg import sql

_STATS_SQL = """
    SELECT s.n_live_tup, s.n_dead_tup, s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd, s.n_tup_del,
           pg_relation_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid),
           s.last_vacuum, s.last_autovacuum, s.vacuum_count, s.autovacuum_count
    FROM pg_class c JOIN pg_stat_all_tables s ON s.relid = c.oid
    WHERE c.oid = %s::regclass
"""
_STATS_KEYS = ("n_live_tup", "n_dead_tup", "n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del",
               "heap_bytes", "index_bytes", "total_bytes", "last_vacuum", "last_autovacuum",
               "vacuum_count", "autovacuum_count")


def _url_of(target: Any) -> str:
    url = getattr(target, "url", target)
    if not isinstance(url, str):
        raise TypeError("needs a Lab (anything with .url), a psycopg connection or a URL")
    return url


@contextmanager
def _connection(target: Any) -> Iterator[psycopg.Connection]:
    """A connection for ``target``: the connection itself, or a new autocommit one (closed after)."""
    if isinstance(target, psycopg.Connection):
        yield target
        return
    with psycopg.connect(_url_of(target), autocommit=True) as conn:
        yield conn


def _server_version(conn: psycopg.Connection) -> int:
    return conn.info.server_version


def flush_stats(conn: Any) -> None:
    """Make this session's statistics counters visible to others now (PostgreSQL 15+)."""
    with _connection(conn) as c:
        if _server_version(c) >= 150000:
            c.execute("SELECT pg_stat_force_next_flush()")


def table_stats(conn: Any, table: str) -> dict[str, Any]:
    """Live/dead rows, update counters, sizes and last vacuums of one table (see module doc)."""
    with _connection(conn) as c:
        flush_stats(c)
        # a transaction caches the statistics it read: start from fresh ones
        c.execute("SELECT pg_stat_clear_snapshot()")
        row = c.execute(_STATS_SQL, [table]).fetchone()
    if row is None:
        raise ValueError(f"no statistics for {table!r}: is it a table?")
    return dict(zip(_STATS_KEYS, row))


# -- WAL ---------------------------------------------------------------------


def wal_lsn(conn: Any) -> str:
    """The current WAL write position, ``pg_current_wal_lsn()``, as text (``0/1A2B3C8``)."""
    with _connection(conn) as c:
        return str(c.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])


def wal_bytes_since(conn: Any, lsn: str) -> int:
    """WAL bytes written (by the whole server) since ``lsn``."""
    with _connection(conn) as c:
        return int(c.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)",
                             [lsn]).fetchone()[0])


@dataclass
class WalMeasure:
    """WAL between two points: ``start``/``end`` LSNs and ``bytes`` (filled on exit)."""

    start: str
    end: str | None = None
    bytes: int | None = None


@contextmanager
def measure_wal(conn: Any) -> Iterator[WalMeasure]:
    """``with measure_wal(conn) as wal: ...`` then ``wal.bytes``: WAL written meanwhile."""
    m = WalMeasure(start=wal_lsn(conn))
    try:
        yield m
    finally:
        with _connection(conn) as c:
            m.end, m.bytes = c.execute(
                "SELECT pg_current_wal_lsn()::text, pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)",
                [m.start]).fetchone()
        m.bytes = int(m.bytes)


# -- VACUUM ------------------------------------------------------------------

_TUPLES = re.compile(r"tuples: (\d+) removed, (\d+) remain, (\d+) are dead but not yet removable")
_CUTOFF = re.compile(r"removable cutoff: (\d+), (?:which was|older by) (\d+) XIDs? old")
_PAGES = re.compile(r"pages: (\d+) removed, (\d+) remain")
_DEAD_ITEMS = re.compile(r"(\d+) dead item identifiers")


def vacuum(conn: Any, table: str, *, freeze: bool = False, analyze: bool = False) -> dict[str, Any]:
    """VACUUM (VERBOSE) one table and return its report's figures (see module doc)."""
    notices: list[str] = []
    with _connection(conn) as c:
        if not c.autocommit:
            raise ValueError("VACUUM cannot run inside a transaction: use an autocommit connection")

        def keep(diag: Any) -> None:
            notices.append(diag.message_primary or "")

        c.add_notice_handler(keep)
        try:
            options = ["VERBOSE"] + (["FREEZE"] if freeze else []) + (["ANALYZE"] if analyze else [])
            c.execute(sql.SQL("VACUUM ({}) {}").format(sql.SQL(", ").join(map(sql.SQL, options)),
                                                       sql.SQL(table)))
        finally:
            c.remove_notice_handler(keep)
    text = "\n".join(notices)
    out: dict[str, Any] = {"removed": None, "remain": None, "not_removable": None,
                           "removable_cutoff_age": None, "pages_removed": None, "dead_items": None,
                           "report": text}
    if m := _TUPLES.search(text):
        out["removed"], out["remain"], out["not_removable"] = map(int, m.groups())
    if m := _CUTOFF.search(text):
        out["removable_cutoff_age"] = int(m.group(2))
    if m := _PAGES.search(text):
        out["pages_removed"] = int(m.group(1))
    if m := _DEAD_ITEMS.search(text):
        out["dead_items"] = int(m.group(1))
    return out


# -- bloat -------------------------------------------------------------------


def pgstattuple_available(conn: Any) -> bool:
    """Whether ``pgstattuple`` can be used here (creates the extension if the server has it)."""
    with _connection(conn) as c:
        if c.execute("SELECT 1 FROM pg_extension WHERE extname = 'pgstattuple'").fetchone():
            return True
        if not c.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pgstattuple'").fetchone():
            return False
        try:
            with c.transaction():
                c.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
            return True
        except psycopg.Error:
            return False


def bloat(conn: Any, table: str) -> dict[str, Any]:
    """Dead and free space in a table: exact with pgstattuple, estimated otherwise (module doc)."""
    with _connection(conn) as c:
        if pgstattuple_available(c):
            row = c.execute("SELECT table_len, tuple_len, dead_tuple_len, free_space, tuple_count, "
                            "dead_tuple_count FROM pgstattuple(%s::regclass)", [table]).fetchone()
            size, live, dead, free, n_live, n_dead = (int(v) for v in row)
            method = "pgstattuple"
        else:
            row = c.execute("""
                SELECT pg_relation_size(c.oid), greatest(c.reltuples, 0)::bigint,
                       coalesce((SELECT sum(s.avg_width) FROM pg_stats s
                                  WHERE s.schemaname = n.nspname AND s.tablename = c.relname), 0)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.oid = %s::regclass""", [table]).fetchone()
            size, n_live, width = int(row[0]), int(row[1]), int(row[2])
            live = n_live * (width + 24 + 4)  # tuple header and line pointer per row
            n_dead = int(table_stats(c, table)["n_dead_tup"] or 0)
            dead = n_dead * (width + 28)
            free = max(size - live - dead, 0)
            method = "estimate"
    return {"method": method, "table_bytes": size, "live_bytes": live, "dead_bytes": dead,
            "free_bytes": free, "live_rows": n_live, "dead_rows": n_dead,
            "bloat_percent": round(100.0 * (dead + free) / size, 1) if size else 0.0}


# -- the xmin horizon ----------------------------------------------------------


def xmin_horizon(conn: Any) -> dict[str, Any]:
    """How far back the horizon is held, by kind of holder (ages in xids; see module doc).

    Sessions are those of this database other than the caller (since PostgreSQL 14,
    another database's sessions do not hold back VACUUM of this one's tables);
    slots and prepared transactions hold every database back.
    """
    with _connection(conn) as c:
        row = c.execute("""
            SELECT
              (SELECT max(age(backend_xmin)) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()),
              (SELECT max(age(backend_xid)) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()),
              (SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)),
              (SELECT max(age(xmin)) FROM pg_replication_slots),
              (SELECT max(age(catalog_xmin)) FROM pg_replication_slots),
              (SELECT count(*) FROM pg_replication_slots),
              (SELECT max(age(transaction)) FROM pg_prepared_xacts),
              (SELECT count(*) FROM pg_prepared_xacts),
              (SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database()),
              current_setting('autovacuum_freeze_max_age')::bigint
        """).fetchone()
    keys = ("oldest_snapshot_age", "oldest_xid_age", "sessions_holding", "slot_xmin_age",
            "slot_catalog_xmin_age", "slots", "prepared_age", "prepared", "datfrozenxid_age",
            "autovacuum_freeze_max_age")
    out = dict(zip(keys, row))
    ages = [out[k] for k in ("oldest_snapshot_age", "oldest_xid_age", "slot_xmin_age",
                             "prepared_age") if out[k] is not None]
    out["held_back_by"] = max(ages) if ages else 0  # xids the horizon lags behind now
    return out


# -- timeline -------------------------------------------------------------------


@dataclass
class Timeline:
    """Samples of table statistics taken while a workload ran."""

    tables: tuple[str, ...]
    every: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    result: Any = None

    def now(self) -> float:
        return time.monotonic() - self.started

    def mark(self, label: str) -> None:
        """Note a moment (drawn as a dotted line): call it from inside the workload."""
        self.marks.append((self.now(), label))

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.samples)

    def last(self, table: str) -> dict[str, Any]:
        return [s for s in self.samples if s["table"] == table][-1]


def timeline(lab: Any, workload: Callable[..., Any], *, every: float = 0.2,
             tables: Sequence[str] = ()) -> Timeline:
    """Run ``workload`` while sampling ``tables`` every ``every`` seconds (see module doc)."""
    if not tables:
        raise ValueError("timeline needs the tables to watch: tables=['orders']")
    tl = Timeline(tables=tuple(tables), every=every)
    stop = threading.Event()
    errors: list[BaseException] = []
    with psycopg.connect(_url_of(lab), autocommit=True,
                         application_name="lab table_health sampler") as conn:
        start_lsn = wal_lsn(conn)

        def sample() -> None:
            t = tl.now()
            wal = wal_bytes_since(conn, start_lsn)
            for table in tl.tables:
                tl.samples.append({"t": round(t, 3), "table": table, "wal_bytes": wal,
                                   **table_stats(conn, table)})

        def sampler() -> None:
            try:
                while not stop.wait(every):
                    sample()
            except BaseException as exc:  # reported after the workload
                errors.append(exc)

        sample()
        thread = threading.Thread(target=sampler, name="table-health-sampler", daemon=True)
        thread.start()
        try:
            takes_timeline = bool(inspect.signature(workload).parameters)
            tl.result = workload(tl) if takes_timeline else workload()
        finally:
            stop.set()
            thread.join()
        sample()
    if errors:
        raise errors[0]
    return tl


def plot_timeline(tl: Timeline, metric: str = "n_dead_tup", ax: Any = None,
                  title: str | None = None) -> Any:
    """One line per table of ``metric`` over time, the workload's marks as dotted lines."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(11, 4))
    for table in tl.tables:
        rows = [s for s in tl.samples if s["table"] == table]
        ax.plot([s["t"] for s in rows], [s[metric] or 0 for s in rows], marker=".",
                markersize=4, linewidth=1.4, label=table)
    top = ax.get_ylim()[1]
    for i, (t, label) in enumerate(tl.marks):
        ax.axvline(t, color="black", linestyle=":", linewidth=1)
        ax.annotate(label, (t, top), xytext=(2, -4 - 11 * (i % 4)), textcoords="offset points",
                    fontsize=8, va="top")
    ax.set_xlabel("seconds since the workload started")
    ax.set_ylabel(metric.replace("_", " ") + (" (bytes)" if metric.endswith("bytes") else ""))
    ax.set_title(title or f"{metric} while the workload ran")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return ax
