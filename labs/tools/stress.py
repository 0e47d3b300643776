"""Many clients at once: a stress runner, a retry helper, and forced interleavings.

An *operation* is any callable that takes a psycopg connection (plus optional
arguments) and returns a result: a transfer, an upsert, a migration step. This
module runs operations concurrently and tells you what happened, by SQLSTATE.

``run_stress(target, operation, workers=8, operations=1000, args=None, ...)``
    ``workers`` threads, each with its own connection (autocommit off unless
    ``autocommit=True``), all released together by a barrier, each calling
    ``operation(conn, *args(rng))`` ``operations`` times. ``args`` draws an
    operation's arguments from a per-worker ``random.Random`` seeded from
    ``seed``, so the *same* operations run every time (their interleaving, of
    course, differs). Each call's outcome is ``"ok"``, the SQLSTATE of the
    psycopg error it raised (``"40001"``, ``"40P01"``, ``"23505"``...), or the
    name of another exception; an open transaction left behind is rolled back.
    Meanwhile a monitor connection samples who blocks whom
    (``pg_blocking_pids`` over ``pg_stat_activity``) every ``sample_every``
    seconds. ``settings`` are SET in every worker's session, e.g.
    ``{"deadlock_timeout": "50ms"}`` so that deadlocks are broken quickly.
    Returns a :class:`StressResult`: ``.outcomes`` (a Counter),
    ``.throughput`` (ok operations per second), ``.records`` (one
    :class:`OpRecord` per call: worker, args, status, result, attempts),
    ``.samples``, ``.blocking_matrix()``, ``.plot()``, ``.summary()``.

``retry(operation, attempts=8, base_delay=0.002, max_delay=0.1, sqlstates=RETRYABLE)``
    Wrap an operation so that it is retried when it raises a serialization
    failure (40001) or a deadlock (40P01): roll back, sleep a random time in
    ``[0, min(max_delay, base_delay * 2**n))`` (exponential backoff with full
    jitter, so that the losers of a conflict do not collide again in lockstep),
    try again; after ``attempts`` tries the last error is raised. Usable as a
    decorator (``@retry`` or ``@retry(attempts=5)``). Only retry what is safe to
    retry: a whole transaction, never a statement inside one.

``interleave(target, first, second, pause_after=k)``
    Force one interleaving of two operations: ``first`` runs until it has
    executed ``k`` statements and is then held; ``second`` runs until it
    finishes or the lock manager says it waits (``pg_blocking_pids``); then
    ``first`` resumes. No sleeps, so a race that *can* happen *does* happen,
    every time (``settings`` as for run_stress). ``count_statements(target, operation)`` says how many pause
    points an operation has.

``HookedConnection(conn, after_statement=None, lose_commit_acks=0)``
    A stand-in for a psycopg connection that calls a hook after each
    statement, and can simulate a lost COMMIT acknowledgement (the server
    committed, the client sees ``OperationalError``), which is how checks prove
    that a retry loop does not apply a committed transaction twice.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import psycopg
from psycopg import pq

RETRYABLE = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected

Operation = Callable[..., Any]
_tls = threading.local()


def _url_of(target: Any) -> str:
    url = getattr(target, "url", target)
    if not isinstance(url, str):
        raise TypeError("expected a Lab (anything with .url) or a connection URL")
    return url


def _rollback_if_needed(conn: Any) -> None:
    """Leave the connection idle: a failed or half-done transaction is rolled back."""
    try:
        if not conn.closed and conn.info.transaction_status in (
                pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
            conn.rollback()
    except psycopg.Error:
        pass


def apply_settings(conn: psycopg.Connection, settings: dict[str, str] | None) -> dict[str, str]:
    """SET each setting for this session; skip (and report) those the role may not change.

    ``deadlock_timeout`` is superuser-only: the lab's own server allows it, a
    managed database may not, and a stress run should still work there.
    """
    skipped = {}
    for name, value in (settings or {}).items():
        try:
            conn.execute("SELECT set_config(%s, %s, false)", [name, str(value)])
        except psycopg.Error as exc:
            skipped[name] = exc.sqlstate or ""
            _rollback_if_needed(conn)
    return skipped


# --------------------------------------------------------------------------
# retries


def backoff_delay(attempt: int, base_delay: float = 0.002, max_delay: float = 0.1,
                  rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max_delay, base * 2**(attempt-1)))."""
    return (rng or random).uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))


def retry(operation: Operation | None = None, *, attempts: int = 8, base_delay: float = 0.002,
          max_delay: float = 0.1, sqlstates: Iterable[str] = RETRYABLE) -> Any:
    """Retry a whole-transaction operation on 40001/40P01 with backoff and jitter (bounded)."""
    codes = frozenset(sqlstates)

    def decorate(op: Operation) -> Operation:
        @functools.wraps(op)
        def wrapped(conn: Any, *args: Any, **kwargs: Any) -> Any:
            for attempt in range(1, attempts + 1):
                _tls.attempts = attempt
                try:
                    return op(conn, *args, **kwargs)
                except psycopg.Error as exc:
                    _rollback_if_needed(conn)
                    if exc.sqlstate not in codes or attempt == attempts:
                        raise
                    time.sleep(backoff_delay(attempt, base_delay, max_delay))
            raise AssertionError("unreachable")

        return wrapped

    return decorate(operation) if operation is not None else decorate


# --------------------------------------------------------------------------
# stress runner


@dataclass
class OpRecord:
    """One call of the operation: who ran it, with what, and what came of it."""

    worker: int
    index: int
    args: tuple
    status: str  # "ok", a SQLSTATE, or an exception's class name
    result: Any = None
    error: str = ""
    attempts: int = 1
    seconds: float = 0.0


@dataclass
class LockSample:
    """A snapshot of lock waits: at ``t`` seconds, ``edges`` (waiter, blocker) by worker."""

    t: float
    edges: list[tuple[int, int]]  # blocker -1: a backend outside the run
    active: int


@dataclass
class StressResult:
    workers: int
    operations: int
    seconds: float
    records: list[OpRecord]
    samples: list[LockSample] = field(default_factory=list)

    @property
    def outcomes(self) -> Counter:
        return Counter(r.status for r in self.records)

    @property
    def ok(self) -> int:
        return sum(1 for r in self.records if r.status == "ok")

    @property
    def retries(self) -> int:
        return sum(r.attempts - 1 for r in self.records)

    @property
    def throughput(self) -> float:
        """Successful operations per second of wall-clock time."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def errors(self, status: str | None = None) -> list[OpRecord]:
        return [r for r in self.records if r.status != "ok" and (status is None or r.status == status)]

    def blocking_matrix(self) -> list[list[int]]:
        """matrix[w][b]: in how many samples worker w waited for worker b."""
        m = [[0] * self.workers for _ in range(self.workers)]
        for s in self.samples:
            for w, b in s.edges:
                if b >= 0:
                    m[w][b] += 1
        return m

    def waiting_fraction(self) -> float:
        """Average share of workers waiting for a lock, over the samples."""
        if not self.samples:
            return 0.0
        return sum(len({w for w, _ in s.edges}) for s in self.samples) / (
            len(self.samples) * self.workers)

    def summary(self) -> str:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return (f"{self.workers} workers × {self.operations} ops in {self.seconds:.2f} s: "
                f"{outcomes}; {self.throughput:,.0f} ok/s; {self.retries} retries; "
                f"{self.waiting_fraction():.0%} of workers waiting on a lock on average")

    def __repr__(self) -> str:
        return f"<StressResult {self.summary()}>"

    def plot(self, axes: Any = None, title: str = "") -> Any:
        """Left: workers waiting on a lock over time. Right: who blocked whom (sample counts)."""
        import matplotlib.pyplot as plt

        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(11, 3.5))
        left, right = axes
        ts = [s.t for s in self.samples]
        left.step(ts, [len({w for w, _ in s.edges}) for s in self.samples], where="post")
        left.set_xlabel("seconds")
        left.set_ylabel("workers waiting on a lock")
        left.set_ylim(0, self.workers)
        left.set_title(title or "lock waits over time")
        image = right.imshow(self.blocking_matrix(), cmap="Reds")
        right.set_xlabel("blocker (worker)")
        right.set_ylabel("waiter (worker)")
        right.set_title("who blocks whom (samples)")
        right.figure.colorbar(image, ax=right)
        return axes


def _sample_locks(url: str, pids: dict[int, int], stop: threading.Event, start: list[float],
                  every: float, samples: list[LockSample]) -> None:
    with psycopg.connect(url, autocommit=True, application_name="lab stress monitor") as mon:
        query = ("SELECT pid, pg_blocking_pids(pid), state = 'active' FROM pg_stat_activity "
                 "WHERE pid = ANY(%s)")
        while not stop.is_set():
            rows = mon.execute(query, [list(pids)]).fetchall()
            t = time.perf_counter() - start[0] if start else 0.0
            edges = [(pids[pid], pids.get(b, -1)) for pid, blocking, _ in rows
                     for b in (blocking or [])]
            samples.append(LockSample(t, sorted(edges), sum(1 for *_, a in rows if a)))
            stop.wait(every)


def run_stress(target: Any, operation: Operation, *, workers: int = 8, operations: int = 1000,
               args: Callable[[random.Random], tuple] | None = None, seed: int = 0,
               autocommit: bool = False, isolation: str | None = None,
               sample_every: float | None = 0.01, settings: dict[str, str] | None = None,
               on_record: Callable[[OpRecord], None] | None = None) -> StressResult:
    """Run ``operation`` ``operations`` times in each of ``workers`` threads, all at once."""
    url = _url_of(target)
    conns = []

    def connect(w: int) -> psycopg.Connection:
        # one recipe for the first connection and any reconnection: a worker that lost
        # its connection must go on at the run's isolation level, settings and name
        conn = psycopg.connect(url, autocommit=autocommit,
                               application_name=f"lab stress worker {w}")
        apply_settings(conn, settings)
        if isolation:
            conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL "
                         + isolation.upper())
        if not autocommit:
            conn.commit()
        return conn

    try:
        for w in range(workers):
            conns.append(connect(w))
        barrier = threading.Barrier(workers + 1)
        per_worker: list[list[OpRecord]] = [[] for _ in range(workers)]
        lock = threading.Lock()

        def work(w: int) -> None:
            conn = conns[w]
            rng = random.Random(f"{seed}:{w}")
            calls = [args(rng) if args else () for _ in range(operations)]
            barrier.wait()
            for i, call_args in enumerate(calls):
                _tls.attempts = 1
                t0 = time.perf_counter()
                record = OpRecord(w, i, tuple(call_args), "ok")
                try:
                    record.result = operation(conn, *call_args)
                except psycopg.Error as exc:
                    record.status = exc.sqlstate or type(exc).__name__
                    record.error = str(exc).splitlines()[0] if str(exc) else ""
                except Exception as exc:  # the operation's own bug: count it, keep going
                    record.status = type(exc).__name__
                    record.error = str(exc)
                _rollback_if_needed(conn)
                if conn.closed or conn.broken:
                    conn = conns[w] = connect(w)
                record.attempts = getattr(_tls, "attempts", 1)
                record.seconds = time.perf_counter() - t0
                per_worker[w].append(record)
                if on_record:
                    with lock:
                        on_record(record)

        threads = [threading.Thread(target=work, args=(w,), name=f"stress-{w}", daemon=True)
                   for w in range(workers)]
        for t in threads:
            t.start()
        samples: list[LockSample] = []
        stop = threading.Event()
        start: list[float] = []
        monitor = None
        if sample_every:
            pids = {c.info.backend_pid: w for w, c in enumerate(conns)}
            monitor = threading.Thread(target=_sample_locks, daemon=True,
                                       args=(url, pids, stop, start, sample_every, samples))
        barrier.wait()
        start.append(time.perf_counter())
        if monitor:
            monitor.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - start[0]
        stop.set()
        if monitor:
            monitor.join()
        records = [r for rs in per_worker for r in rs]
        return StressResult(workers, operations, seconds, records, samples)
    finally:
        for conn in conns:
            if not conn.closed:
                conn.close()


# --------------------------------------------------------------------------
# hooked connections and forced interleavings


def is_commit(sql: Any) -> bool:
    text = sql.as_string(None) if hasattr(sql, "as_string") else str(sql)
    words = text.strip().rstrip(";").strip().lower().split()
    return bool(words) and words[0] in ("commit", "end") and len(words) <= 2


class LostAck(psycopg.OperationalError):
    """Raised by HookedConnection after a COMMIT that *did* commit: the ack was 'lost'."""


class StatementCursor:
    """A cursor that reports every execute to the connection proxy that made it.

    Shared by :class:`HookedConnection` and ``migrations_probe.RecordingConnection``:
    the owner's ``_statement(call, query, cursor)`` runs ``call()`` and does its
    own bookkeeping (a hook, a record) around it.
    """

    def __init__(self, owner: Any, cursor: Any) -> None:
        self._owner = owner
        self._cursor = cursor

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> "StatementCursor":
        self._owner._statement(lambda: self._cursor.execute(query, params, **kwargs), query,
                               lambda: self._cursor)
        return self

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        self._owner._statement(lambda: self._cursor.executemany(query, params_seq, **kwargs),
                               query, lambda: self._cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __iter__(self):
        return iter(self._cursor)

    def __enter__(self) -> "StatementCursor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cursor.close()


def in_transaction(conn: Any) -> bool:
    """True when the connection has a transaction open (or failed): someone forgot to end it."""
    return conn.info.transaction_status != pq.TransactionStatus.IDLE


class TrackedTransaction:
    """``conn.transaction()`` that calls ``ended(committed)`` when the outermost block ends.

    Connection proxies use it to see the COMMIT that psycopg sends on their behalf.
    """

    def __init__(self, conn: psycopg.Connection, ended: Callable[[bool], None],
                 *args: Any, **kwargs: Any) -> None:
        self._conn, self._ended = conn, ended
        self._tx = conn.transaction(*args, **kwargs)

    def __enter__(self) -> Any:
        return self._tx.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        result = self._tx.__exit__(*exc)
        if not in_transaction(self._conn):
            self._ended(exc[0] is None)
        return result


class HookedConnection:
    """A psycopg connection with a hook after every statement, and lossy COMMIT acks.

    ``after_statement(n, sql)`` is called after the n-th statement (1-based;
    ``commit()`` counts as a statement). With ``lose_commit_acks=k`` the first
    ``k`` successful commits raise :class:`LostAck` (an ``OperationalError``)
    *after* the server committed: what a client sees when the network drops
    the reply. Everything else is delegated to the real connection.
    """

    def __init__(self, conn: psycopg.Connection, after_statement: Callable[[int, Any], None]
                 | None = None, lose_commit_acks: int = 0) -> None:
        self._conn = conn
        self._hook = after_statement
        self._lose = lose_commit_acks
        self.statements = 0
        self.lost_acks = 0

    def _after(self, sql: Any) -> None:
        self.statements += 1
        if self._hook:
            self._hook(self.statements, sql)
        if is_commit(sql) and not in_transaction(self._conn):
            self._maybe_lose_ack()

    def _maybe_lose_ack(self) -> None:
        if self.lost_acks < self._lose:
            self.lost_acks += 1
            raise LostAck("server closed the connection unexpectedly (the COMMIT's reply was "
                          "lost; the transaction may or may not have committed)")

    def _statement(self, call: Callable[[], Any], query: Any, cursor: Any) -> None:
        call()
        self._after(query)

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        cur = self._conn.execute(query, params, **kwargs)
        self._after(query)
        return StatementCursor(self, cur)

    def cursor(self, *args: Any, **kwargs: Any) -> StatementCursor:
        return StatementCursor(self, self._conn.cursor(*args, **kwargs))

    def commit(self) -> None:
        self._conn.commit()
        self._after("commit")

    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        def ended(committed: bool) -> None:
            if committed:
                self.statements += 1
                if self._hook:
                    self._hook(self.statements, "commit")
                self._maybe_lose_ack()

        return TrackedTransaction(self._conn, ended, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # conn.autocommit = ..., conn.isolation_level = ...: set them on the real connection
        if name.startswith("_") or name in ("statements", "lost_acks"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._conn, name, value)

    def __enter__(self) -> "HookedConnection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._conn.__exit__(*exc)


@dataclass
class Interleaving:
    """What happened when ``second`` ran while ``first`` was held after ``pause_after`` statements."""

    pause_after: int
    paused: bool  # first reached the pause point (else it finished before)
    second_blocked: bool  # second waited for a lock while first was held
    first_result: Any = None
    first_error: BaseException | None = None
    second_result: Any = None
    second_error: BaseException | None = None

    @property
    def errors(self) -> list[BaseException]:
        return [e for e in (self.first_error, self.second_error) if e is not None]


def count_statements(target: Any, operation: Operation, *args: Any) -> int:
    """How many statements (pause points) ``operation(conn, *args)`` executes when run alone."""
    with psycopg.connect(_url_of(target)) as conn:
        hooked = HookedConnection(conn)
        operation(hooked, *args)
        _rollback_if_needed(conn)
        return hooked.statements


def interleave(target: Any, first: Operation, second: Operation, *, pause_after: int,
               timeout: float = 30.0, settings: dict[str, str] | None = None) -> Interleaving:
    """Run ``first`` up to its ``pause_after``-th statement, then all of ``second``, then the rest.

    ``first`` and ``second`` are zero-argument-besides-conn operations
    (``lambda conn: transfer(conn, 1, 2, 10)``). ``second`` runs until it
    finishes or waits in the lock manager for another backend; only then is
    ``first`` released, so the interleaving is the same on every run.
    """
    url = _url_of(target)
    held, release = threading.Event(), threading.Event()
    done_first, done_second = threading.Event(), threading.Event()
    result = Interleaving(pause_after, paused=False, second_blocked=False)

    def hook(n: int, sql: Any) -> None:
        if n == pause_after and not held.is_set():
            held.set()
            release.wait(timeout)

    conn1 = psycopg.connect(url, application_name="lab interleave first")
    conn2 = psycopg.connect(url, application_name="lab interleave second")
    for conn in (conn1, conn2):
        apply_settings(conn, settings)
        conn.commit()
    monitor = psycopg.connect(url, autocommit=True, application_name="lab interleave monitor")

    def run_first() -> None:
        try:
            result.first_result = first(HookedConnection(conn1, hook))
        except BaseException as exc:  # reported, not raised, so the caller sees both
            result.first_error = exc
        finally:
            _rollback_if_needed(conn1)
            done_first.set()

    def run_second() -> None:
        try:
            result.second_result = second(conn2)
        except BaseException as exc:
            result.second_error = exc
        finally:
            _rollback_if_needed(conn2)
            done_second.set()

    try:
        t1 = threading.Thread(target=run_first, daemon=True)
        t1.start()
        deadline = time.monotonic() + timeout
        while not (held.is_set() or done_first.is_set()):
            if time.monotonic() > deadline:
                raise TimeoutError("the first operation neither paused nor finished")
            held.wait(0.002)
        result.paused = held.is_set() and not done_first.is_set()
        t2 = threading.Thread(target=run_second, daemon=True)
        t2.start()
        pid2 = conn2.info.backend_pid
        pause = 0.0005
        while not done_second.wait(pause):
            blocking = monitor.execute("SELECT pg_blocking_pids(%s)", [pid2]).fetchone()[0]
            if blocking and not done_second.is_set():
                result.second_blocked = True
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the second operation neither finished nor waited for a lock")
            pause = min(pause * 2, 0.01)
        release.set()
        t1.join(timeout)
        t2.join(timeout)
        if t1.is_alive() or t2.is_alive():
            raise TimeoutError("an interleaved operation did not finish")
        return result
    finally:
        release.set()
        for conn in (conn1, conn2, monitor):
            try:
                conn.close()
            except Exception:
                pass
