"""A live workload: readers and writers at a steady rate while a migration runs.

A migration is "zero-downtime" only if the application keeps working while it
runs, so that is what this module measures. ``Workload`` starts background
threads, each with its own connection (autocommit, like a pooled web app):
readers look a user up by primary key, writers sign new users up. Every query
is timed, and a monitor connection samples ``pg_stat_activity`` every few
milliseconds, so each query also gets its *lock wait*: how long the server saw
it waiting in the lock manager (``wait_event_type = 'Lock'``). A query that
queued behind an ``ALTER TABLE`` shows up as a long lock wait, whatever its
latency would otherwise have been::

    from labs.tools.workload import Workload

    with Workload(lab, readers=2, writers=1) as wl:
        with wl.step("add column", conn=migration_conn):   # marked on the timeline
            migration_conn.execute("ALTER TABLE users ADD COLUMN nickname text")
    print(wl.summary())          # queries, errors, p50/p99 latency, max lock wait
    wl.plot()                    # latency timeline with the steps marked
    wl.step_locks()              # the locks each step was seen holding or awaiting

Lock waits are measured by sampling, so they are accurate to the sampling
interval (5 ms by default): good for "max lock wait 2.1 s vs 0.2 s", not for
microseconds. Checks that must be deterministic use statement-level evidence
(``labs.tools.migrations_probe``) and use this only for a wide budget.

``writes`` is the writer's transaction: statements with ``%(id)s`` and
``%(name)s`` placeholders, run together (the migrations challenge also logs a
sign-up event). Writers insert ids from :data:`WRITER_ID_BASE` upwards, far above the
dataset's ids, so the rows that existed before the migration can be checked
(counts, checksums) without the workload's own rows getting in the way.

The stress runner (``labs.tools.stress.run_stress``) runs a fixed *number* of
operations as fast as possible; a workload that must keep a steady *rate*
for as long as a migration lasts, and report per-query lock waits, needs its
own loop, which is why this module uses plain threads.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import psycopg

# Writers' ids start here: far above any dataset id (10 million at production).
WRITER_ID_BASE = 1_000_000_000_000
READ_SQL = "SELECT id, name FROM users WHERE id = %s"
# A writer's transaction: statements with %(id)s and %(name)s placeholders, run together.
WRITE_SQL = ("INSERT INTO users (id, name) VALUES (%(id)s, %(name)s)",)


@dataclass
class QueryRecord:
    """One workload query: when it ran, how long it took, how long it waited for a lock."""

    kind: str  # "read" or "write"
    worker: int
    start: float  # seconds since the workload started
    end: float
    status: str = "ok"  # "ok" or the SQLSTATE of the error
    lock_wait: float = 0.0  # seconds the server saw it waiting in the lock manager

    @property
    def latency(self) -> float:
        return self.end - self.start


@dataclass
class Step:
    """A migration step marked on the timeline, and the locks it was seen with."""

    label: str
    start: float
    end: float | None = None
    pid: int | None = None
    locks: set[tuple[str, str, bool]] = field(default_factory=set)  # (relation, mode, granted)
    error: str = ""


def _url_of(target: Any) -> str:
    url = getattr(target, "url", target)
    if not isinstance(url, str):
        raise TypeError("expected a Lab (anything with .url) or a connection URL")
    return url


class Workload:
    """Background readers and writers at a steady rate, with per-query latency and lock wait."""

    def __init__(self, target: Any, *, readers: int = 2, writers: int = 1, rate: float = 50.0,
                 writes: tuple[str, ...] | list[str] = WRITE_SQL,
                 max_read_id: int | None = None, sample_every: float = 0.005,
                 seed: int = 0) -> None:
        self.url = _url_of(target)
        self.readers, self.writers = readers, writers
        self.interval = 1.0 / rate  # per worker
        self.sample_every = sample_every
        self.seed = seed
        self.writes = tuple(writes)
        self.records: list[QueryRecord] = []
        self.steps: list[Step] = []
        self._samples: list[tuple[float, int, bool]] = []  # (t, pid, waiting on a Lock)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._pids: dict[int, int] = {}
        self._t0 = 0.0
        self._max_read_id = max_read_id
        self._next_id = 0
        self.started = False

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "Workload":
        with psycopg.connect(self.url, autocommit=True) as conn:
            if self._max_read_id is None:
                self._max_read_id = conn.execute(
                    "SELECT coalesce(max(id), 1) FROM users WHERE id < %s",
                    [WRITER_ID_BASE]).fetchone()[0]
            # continue after the ids earlier workloads wrote: runs never collide
            self._next_id = conn.execute(
                "SELECT greatest(coalesce(max(id), 0), %s) + 1 FROM users WHERE id >= %s",
                [WRITER_ID_BASE, WRITER_ID_BASE]).fetchone()[0]
        conns = [psycopg.connect(self.url, autocommit=True,
                                 application_name=f"lab workload {i}")
                 for i in range(self.readers + self.writers)]
        self._pids = {c.info.backend_pid: i for i, c in enumerate(conns)}
        self._t0 = time.perf_counter()
        for i, conn in enumerate(conns):
            kind = "read" if i < self.readers else "write"
            t = threading.Thread(target=self._work, args=(i, kind, conn), daemon=True,
                                 name=f"workload-{kind}-{i}")
            self._threads.append(t)
        monitor = threading.Thread(target=self._monitor, daemon=True, name="workload-monitor")
        self._threads.append(monitor)
        for t in self._threads:
            t.start()
        self.started = True
        return self

    def stop(self) -> "Workload":
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        self._attribute_lock_waits()
        return self

    def __enter__(self) -> "Workload":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def now(self) -> float:
        return time.perf_counter() - self._t0

    # -- the workers ---------------------------------------------------------

    def _take_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id - 1

    def _work(self, worker: int, kind: str, conn: psycopg.Connection) -> None:
        rng = random.Random(f"{self.seed}:{worker}")
        next_tick = time.perf_counter() + rng.uniform(0, self.interval)  # spread the starts
        try:
            while not self._stop.is_set():
                delay = next_tick - time.perf_counter()
                if delay > 0 and self._stop.wait(delay):
                    break
                # a steady arrival rate, like users clicking: a query that was held up
                # does not make the next ones wait for their tick (they are already late)
                next_tick = max(next_tick + self.interval, time.perf_counter())
                record = QueryRecord(kind, worker, self.now(), 0.0)
                try:
                    if kind == "read":
                        conn.execute(READ_SQL, [rng.randint(1, self._max_read_id)]).fetchall()
                    else:
                        params = {"id": self._take_id(), "name": f"workload user {worker}"}
                        with conn.transaction():
                            for statement in self.writes:
                                conn.execute(statement, params)
                except psycopg.Error as exc:
                    record.status = exc.sqlstate or type(exc).__name__
                    if conn.broken:
                        break
                record.end = self.now()
                with self._lock:
                    self.records.append(record)
        finally:
            conn.close()

    def _monitor(self) -> None:
        pids = list(self._pids)
        query = ("SELECT pid, wait_event_type = 'Lock' FROM pg_stat_activity "
                 "WHERE pid = ANY(%s) AND state = 'active'")
        locks_query = ("SELECT coalesce(relation::regclass::text, locktype), mode, granted "
                       "FROM pg_locks WHERE pid = %s AND locktype IN ('relation', 'virtualxid', "
                       "'transactionid') AND (relation IS NULL OR relation >= 16384)")
        with psycopg.connect(self.url, autocommit=True,
                             application_name="lab workload monitor") as mon:
            while not self._stop.is_set():
                t = self.now()
                rows = mon.execute(query, [pids]).fetchall()
                with self._lock:
                    self._samples.extend((t, pid, waiting) for pid, waiting in rows)
                    open_steps = [s for s in self.steps if s.end is None and s.pid]
                for step in open_steps:
                    for rel, mode, granted in mon.execute(locks_query, [step.pid]).fetchall():
                        if rel in ("virtualxid", "transactionid"):
                            if granted:
                                continue  # every transaction holds its own: not news
                        step.locks.add((rel, mode, granted))
                self._stop.wait(self.sample_every)

    def _attribute_lock_waits(self) -> None:
        """Give each query the span of the samples that saw its backend waiting on a lock."""
        by_worker: dict[int, list[float]] = {}
        for t, pid, waiting in self._samples:
            if waiting and pid in self._pids:
                by_worker.setdefault(self._pids[pid], []).append(t)
        for times in by_worker.values():
            times.sort()
        import bisect

        for r in self.records:
            times = by_worker.get(r.worker, [])
            lo, hi = bisect.bisect_left(times, r.start), bisect.bisect_right(times, r.end)
            if hi > lo:
                # first to last sample seen waiting, plus one interval for the edges
                r.lock_wait = min(r.latency, times[hi - 1] - times[lo] + self.sample_every)

    # -- marking steps -------------------------------------------------------

    @contextmanager
    def step(self, label: str, conn: Any = None) -> Iterator[Step]:
        """Mark a migration step on the timeline; with ``conn``, sample the locks it takes."""
        pid = None
        if conn is not None:
            raw = getattr(conn, "driver_connection", conn)
            pid = raw.info.backend_pid
        s = Step(label, self.now(), pid=pid)
        with self._lock:
            self.steps.append(s)
        try:
            yield s
        except Exception as exc:
            s.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise
        finally:
            s.end = self.now()

    def mark(self, label: str) -> None:
        """A point event on the timeline (e.g. 'reader commits')."""
        t = self.now()
        with self._lock:
            self.steps.append(Step(label, t, t))

    # -- results -------------------------------------------------------------

    def between(self, start: float | None = None, end: float | None = None) -> list[QueryRecord]:
        """Queries that *started* within [start, end] (seconds since the workload started)."""
        return [r for r in self.records
                if (start is None or r.start >= start) and (end is None or r.start <= end)]

    def max_lock_wait(self, start: float | None = None, end: float | None = None) -> float:
        return max((r.lock_wait for r in self.between(start, end)), default=0.0)

    def max_latency(self, start: float | None = None, end: float | None = None) -> float:
        return max((r.latency for r in self.between(start, end)), default=0.0)

    def errors(self) -> list[QueryRecord]:
        return [r for r in self.records if r.status != "ok"]

    def stats(self, start: float | None = None, end: float | None = None) -> dict[str, Any]:
        recs = self.between(start, end)
        lat = sorted(r.latency for r in recs)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0

        return {"queries": len(recs), "errors": sum(r.status != "ok" for r in recs),
                "waited_on_lock": sum(r.lock_wait > 0 for r in recs),
                "p50_ms": 1000 * (statistics.median(lat) if lat else 0.0),
                "p99_ms": 1000 * pct(0.99), "max_latency_s": lat[-1] if lat else 0.0,
                "max_lock_wait_s": max((r.lock_wait for r in recs), default=0.0)}

    def summary(self) -> str:
        s = self.stats()
        return (f"{s['queries']} queries ({self.readers} readers, {self.writers} writers), "
                f"{s['errors']} errors; latency p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms; "
                f"{s['waited_on_lock']} waited on a lock, the longest {s['max_lock_wait_s']:.2f} s")

    def step_locks(self) -> list[tuple[str, str, str, str]]:
        """(step, relation, mode, 'held'|'awaited') for every lock a step was seen with."""
        out = []
        for s in self.steps:
            for rel, mode, granted in sorted(s.locks):
                out.append((s.label, rel, mode, "held" if granted else "awaited"))
        return out

    def plot(self, ax: Any = None, title: str = "workload latency during the migration") -> Any:
        """Latency of every query over time (log scale), migration steps shaded and labelled."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(11, 4))
        for kind, colour in (("read", "tab:blue"), ("write", "tab:green")):
            recs = [r for r in self.records if r.kind == kind and r.lock_wait == 0]
            ax.scatter([r.start for r in recs], [max(r.latency, 1e-4) * 1000 for r in recs],
                       s=6, color=colour, alpha=0.5, label=f"{kind}s")
        waited = [r for r in self.records if r.lock_wait > 0]
        if waited:
            ax.scatter([r.start for r in waited], [max(r.latency, 1e-4) * 1000 for r in waited],
                       s=14, color="tab:red", marker="x", label="waited on a lock")
        ax.set_yscale("log")
        ax.set_xlabel("seconds since the workload started")
        ax.set_ylabel("query latency (ms, log)")
        ax.set_title(title)
        palette = ["#f4d03f", "#aed6f1", "#d7bde2", "#a9dfbf", "#f5b7b1", "#fad7a0"]
        top = ax.get_ylim()[1]
        for i, s in enumerate(self.steps):
            end = s.end if s.end is not None else self.now()
            if end - s.start < 1e-3:
                ax.axvline(s.start, color="black", linestyle=":", linewidth=1)
            else:
                ax.axvspan(s.start, end, color=palette[i % len(palette)], alpha=0.45, lw=0)
            ax.annotate(s.label, (s.start, top), xytext=(2, -4 - 11 * (i % 4)),
                        textcoords="offset points", fontsize=8, va="top")
        ax.legend(loc="lower right", fontsize=8)
        return ax
