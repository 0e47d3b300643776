"""Named concurrent sessions, driven one statement at a time, Hermitage style.

Concurrency bugs are about *interleavings*. To show one, you need several
sessions (separate connections, hence separate transactions) and a driver that
decides which statement runs next, waits exactly as long as it takes to know
what that statement did, and writes it down. That is what this module does::

    from labs.tools.sessions import Sessions

    with Sessions(lab, "T1", "T2", isolation="read committed") as s:
        s.T1("begin")
        s.T2("begin")
        s.T1("select balance from accounts where id = 1")   # -- 100.00
        s.T2("update accounts set balance = 90 where id = 1")
        s.T1("update accounts set balance = 50 where id = 1")  # -- BLOCKS (waits for T2)
        s.T2("commit")                                        # -- COMMIT; T1 unblocks: UPDATE 1
        s.T1("commit")
        print(s.transcript())

prints one line per statement, tagged with its session and what was observed::

    T1: begin; -- BEGIN
    ...
    T1: update accounts set balance = 50 where id = 1; -- BLOCKS (waits for T2)
    T2: commit; -- COMMIT; T1 unblocks: UPDATE 1

How a step's outcome is decided
-------------------------------
Each session owns one psycopg connection in **autocommit** mode (so ``begin``,
``commit`` and ``rollback`` are statements you write, exactly as in psql) and
one worker thread that runs its statements, so a statement that waits for a
lock never blocks the driver. After submitting a step, the driver waits until
the system is *settled*: every unfinished statement is waiting in the lock
manager, according to ``pg_blocking_pids()`` polled from a separate monitor
connection, and those waits form no cycle among the sessions (a cycle is a
deadlock that PostgreSQL will break after ``deadlock_timeout``, so the driver
waits for it to do so). Nothing is decided by sleeping: a step is ``BLOCKS``
only when the lock manager says it waits for another backend, and a blocked
step's final outcome is reported on the line of the step that released it
(``T2 unblocks: UPDATE 1``, or ``T2 unblocks: ERROR 40001: could not serialize
access due to concurrent update``).

Outcomes are rendered without pids, xids or timings (a deadlock's DETAIL names
pids, so only its primary message is shown), so the same script gives the same
transcript on every run, deadlocks included. PostgreSQL checks for a deadlock
once per wait, in the waiting backend, ``deadlock_timeout`` after it started
waiting, and aborts the backend whose check finds the cycle. Left alone, the
victim depends on timing: the first waiter if the cycle closed within its
``deadlock_timeout``, the last one otherwise (a loaded machine can delay the
closing step past 1 s), and with three sessions a middle waiter can be chosen. So
before every step the driver sets that session's ``deadlock_timeout``: ten times
the configured value (at least 10 s) when no other session waits, since this step
cannot close a cycle; otherwise the configured value (1 s by default), shortened
so that this step's check runs before every earlier waiter's, and if that would
leave under 100 ms, the driver first lets the earliest pending check pass (it
finds no cycle, and PostgreSQL never runs it again for that wait). The statement
that closes the cycle is therefore always the one that fails with 40P01, as in
Hermitage. Setting ``deadlock_timeout`` needs superuser rights (the lab's own
server grants them); a session that is not superuser (after ``SET ROLE``, say)
is left alone, never sent a SET that would abort its transaction, and the
server's timing decides, as above.

API
---
``Sessions(target, *names, isolation=None, timeout=30.0, settings=None)``
    ``target`` is a :class:`labs.course.challenge.Lab` or a connection URL;
    ``isolation`` is a level for all sessions (``"serializable"``) or a dict
    ``{"T1": "serializable"}``; ``begin`` then starts a transaction at it.
    ``settings`` are SET in every session (``{"lock_timeout": "2s"}``).
``s.T1(sql, params=None) -> Outcome`` (also ``s["T1"](...)``, ``s.run("T1", sql)``)
    Run one statement in a session; returns its :class:`Outcome`.
``s.play(script) -> list[Outcome]``
    Run a script of ``T1: statement`` lines in order.
``s.transcript() -> str`` / ``s.show()``
    The Hermitage-style transcript so far.
``s.locks()`` / ``s.activity()``
    What ``pg_locks`` / ``pg_stat_activity`` say about the sessions right now,
    with sessions named, never numbered: the raw material of lock debugging.
``s.pid("T1")``
    A session's backend pid, for your own queries (never in transcripts).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, Mapping

import psycopg
from psycopg import pq

ISOLATION_LEVELS = ("read uncommitted", "read committed", "repeatable read", "serializable")
OUTSIDE = "another backend"  # a blocker that is not one of the sessions
MAX_ROWS_SHOWN = 6
# A step's deadlock check is placed at least this long before an earlier waiter's
# (the step's own wait starts a little after its SET), and never sooner than this
# after the step starts (below it, the driver lets the earlier check pass first).
CHECK_MARGIN_S = 0.25
MIN_STEER_MS = 100


class StepTimeout(RuntimeError):
    """A statement neither finished nor waited on a lock within the step timeout."""


def _url_of(target: Any) -> str:
    url = getattr(target, "url", target)
    if not isinstance(url, str):
        raise TypeError("Sessions needs a Lab (anything with .url) or a connection URL")
    return url


def _one_line(sql: str) -> str:
    text = re.sub(r"\s+", " ", sql).strip()
    return text.rstrip(";").rstrip()


def _value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, (list, tuple)):
        return "{" + ",".join(_value(x) for x in v) + "}"
    return str(v)


def render_rows(rows: list[tuple]) -> str:
    """Rows as psql would let you read them aloud: ``100.00`` or ``(1, 100.00), (2, 5.00)``."""
    if not rows:
        return "(no rows)"

    def one(row: tuple) -> str:
        return _value(row[0]) if len(row) == 1 else "(" + ", ".join(_value(v) for v in row) + ")"

    shown = ", ".join(one(r) for r in rows[:MAX_ROWS_SHOWN])
    if len(rows) > MAX_ROWS_SHOWN:
        shown += f", … {len(rows)} rows"
    return shown


@dataclass
class Outcome:
    """What one step did: rows, a command tag, an error by SQLSTATE, or BLOCKED.

    ``status`` is ``"ok"``, ``"error"``, ``"blocked"`` or ``"timeout"`` (it
    neither finished nor waited for a lock within the step timeout). A blocked or
    timed-out step keeps its line in the transcript; when it finishes during a
    later step, ``final`` holds what it finally did and that later step lists it
    in ``released``.
    """

    session: str
    sql: str
    status: str = "ok"
    command: str = ""  # PostgreSQL's command tag: UPDATE 1, COMMIT, ROLLBACK ...
    columns: list[str] | None = None
    rows: list[tuple] | None = None
    rowcount: int = -1
    sqlstate: str | None = None
    message: str = ""  # the primary error message, as PostgreSQL words it
    detail: str = ""  # the DETAIL (may name pids: never in transcripts)
    blocked_by: tuple[str, ...] = ()
    released: list["Outcome"] = field(default_factory=list)
    final: "Outcome | None" = None
    resumed: str = "unblocks"  # how a later step reports this one finishing

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def blocked(self) -> bool:
        return self.status == "blocked"

    @property
    def failed(self) -> bool:
        return self.status == "error"

    @property
    def value(self) -> Any:
        """The single value of a one-row, one-column result (None otherwise)."""
        if self.rows and len(self.rows) == 1 and len(self.rows[0]) == 1:
            return self.rows[0][0]
        return None

    def observed(self) -> str:
        """This step's own observation, without what it released."""
        if self.status == "blocked":
            return "BLOCKS (waits for " + ", ".join(self.blocked_by) + ")"
        if self.status == "timeout":
            return "TIMED OUT (still running, not waiting for a lock)"
        if self.status == "error":
            return f"ERROR {self.sqlstate or '-----'}: {self.message}"
        if self.rows is not None:
            return render_rows(self.rows)
        return self.command or "ok"

    def describe(self) -> str:
        """The comment of this step's transcript line."""
        text = self.observed()
        for other in self.released:
            text += f"; {other.session} {other.resumed}: {other.observed()}"
        return text

    def line(self) -> str:
        return f"{self.session}: {_one_line(self.sql)}; -- {self.describe()}"

    def __str__(self) -> str:
        return self.line()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython shows the line
        p.text(self.line())


class Session:
    """One named session: a connection and the worker thread that runs its statements."""

    def __init__(self, owner: "Sessions", name: str, conn: psycopg.Connection) -> None:
        self.owner = owner
        self.name = name
        self.conn = conn
        self.pid: int = conn.info.backend_pid
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"session-{name}")
        self.pending: tuple[Future, Outcome] | None = None
        # deadlock_timeout in ms: the configured value, and whether we may change it
        self.deadlock_ms = int(conn.execute(
            "SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'").fetchone()[0])
        # when this session's pending wait runs its one deadlock check (monotonic seconds)
        self.check_due: float | None = None

    def may_steer(self) -> bool:
        """Whether a SET deadlock_timeout here can succeed without touching the transaction.

        ``is_superuser`` is reported by the server on every change (SET ROLE
        included), so asking costs no statement: a statement would take a
        REPEATABLE READ snapshot early, and a failing SET would abort the
        learner's transaction (25P02). Inside an aborted transaction nothing is sent.
        """
        return (self.conn.info.parameter_status("is_superuser") == "on"
                and self.conn.info.transaction_status != pq.TransactionStatus.INERROR)

    def prepare_step(self, waiting: list["Session"]) -> None:
        """Make the step that closes a lock cycle the one PostgreSQL aborts (see module doc).

        PostgreSQL runs one deadlock check per wait, ``deadlock_timeout`` after the
        wait began, in the waiting backend; the first check to run that sees the
        cycle aborts its own backend. So every earlier waiter's check must run
        either after this step's, or before this step can close a cycle: this
        step's timeout is the configured one, shortened to fire before the
        earliest pending check; if that leaves too little room, the driver waits
        for that check to pass first (it finds no cycle and never runs again).
        """
        long_ms = max(10_000, 10 * self.deadlock_ms)
        if not waiting:
            ms = long_ms
        else:
            while True:
                now = time.monotonic()
                due = [s.check_due for s in waiting if s.check_due is not None and s.check_due > now]
                room_ms = (min(due) - now - CHECK_MARGIN_S) * 1000 if due else float("inf")
                if room_ms >= MIN_STEER_MS:
                    ms = int(min(self.deadlock_ms, room_ms))
                    break
                time.sleep(min(due) - now + CHECK_MARGIN_S)
        if self.may_steer():
            # Sent before every step, not cached: a SET inside a transaction that later
            # rolls back is undone. SET takes no snapshot, so a REPEATABLE READ
            # transaction's snapshot is still taken by the learner's own next statement.
            self.conn.execute(f"SET deadlock_timeout = {ms}")
        self.check_due = time.monotonic() + ms / 1000

    def __call__(self, sql: str, params: Any = None) -> Outcome:
        return self.owner.run(self.name, sql, params)

    def _execute(self, sql: str, params: Any) -> Outcome:
        """Runs in the worker thread: one statement, its outcome captured, never raised."""
        out = Outcome(self.name, sql)
        try:
            cur = self.conn.execute(sql, params)
            while cur.nextset():  # several statements in one step: keep the last result
                pass
            out.command = cur.statusmessage or ""
            out.rowcount = cur.rowcount
            if cur.description is not None:
                out.columns = [c.name for c in cur.description]
                out.rows = [tuple(r) for r in cur.fetchall()]
        except psycopg.Error as exc:
            out.status = "error"
            out.sqlstate = exc.sqlstate
            diag = getattr(exc, "diag", None)
            out.message = (diag.message_primary if diag and diag.message_primary
                           else str(exc).strip().splitlines()[0])
            out.detail = (diag.message_detail or "") if diag else ""
        return out


class Sessions:
    """A set of named sessions on one database, and the transcript of what they did."""

    def __init__(self, target: Any, *names: str, isolation: str | Mapping[str, str] | None = None,
                 timeout: float = 30.0, application_name: str = "lab session",
                 settings: Mapping[str, str] | None = None) -> None:
        if not names:
            names = ("T1", "T2")
        for name in names:
            if not name.isidentifier() or name in dir(self):
                raise ValueError(f"session names must be identifiers like T1, not {name!r}")
        self.url = _url_of(target)
        self.names = list(names)
        self.timeout = timeout
        self.steps: list[Outcome] = []
        self._sessions: dict[str, Session] = {}
        self._monitor = psycopg.connect(self.url, autocommit=True,
                                        application_name=f"{application_name} monitor")
        try:
            for name in names:
                level = isolation.get(name) if isinstance(isolation, Mapping) else isolation
                conn = psycopg.connect(self.url, autocommit=True,
                                       application_name=f"{application_name} {name}")
                for key, value in (settings or {}).items():
                    conn.execute("SELECT set_config(%s, %s, false)", [key, str(value)])
                if level:
                    if level.lower() not in ISOLATION_LEVELS:
                        raise ValueError(f"isolation must be one of {ISOLATION_LEVELS}")
                    # Session default: a later plain `begin` starts at this level.
                    conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL "
                                 + level.upper())
                self._sessions[name] = Session(self, name, conn)
        except BaseException:
            self.close()
            raise
        self._order = {name: i for i, name in enumerate(names)}

    # -- access ------------------------------------------------------------

    def __getattr__(self, name: str) -> Session:
        sessions = self.__dict__.get("_sessions", {})
        if name in sessions:
            return sessions[name]
        raise AttributeError(name)

    def __getitem__(self, name: str) -> Session:
        return self._sessions[name]

    def pid(self, name: str) -> int:
        return self._sessions[name].pid

    def __enter__(self) -> "Sessions":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- running steps -----------------------------------------------------

    def run(self, name: str, sql: str, params: Any = None) -> Outcome:
        """Run one statement in session ``name``; return once the system is settled."""
        session = self._sessions[name]
        if session.pending is not None:
            still = ("running (it timed out)" if session.pending[1].status == "timeout"
                     else "blocked by")
            raise RuntimeError(
                f"{name} is still {still} its previous statement "
                f"({_one_line(session.pending[1].sql)}); release it from another session first")
        session.prepare_step([s for s in self._sessions.values()
                              if s.pending is not None and s.pending[1].status != "timeout"])
        placeholder = Outcome(name, sql)
        future = session.executor.submit(session._execute, sql, params)
        session.pending = (future, placeholder)
        self.steps.append(placeholder)
        self._settle(placeholder)
        return placeholder

    def play(self, script: str) -> list[Outcome]:
        """Run ``T1: statement`` lines in order (indented lines continue a statement)."""
        steps: list[tuple[str, str]] = []
        for raw in script.strip("\n").splitlines():
            if not raw.strip() or raw.lstrip().startswith("--"):
                continue
            m = re.match(r"^\s*(\w+)\s*:\s*(.*)$", raw)
            if m and m.group(1) in self._sessions:
                steps.append((m.group(1), m.group(2)))
            elif steps:
                steps[-1] = (steps[-1][0], steps[-1][1] + "\n" + raw)
            else:
                raise ValueError(f"a script line must start with a session name: {raw!r}")
        return [self.run(name, sql) for name, sql in steps]

    def _blockers(self, names: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """For each session, the sessions (by name) the lock manager says it waits for."""
        names = list(names)
        pids = [self._sessions[n].pid for n in names]
        by_pid = {s.pid: n for n, s in self._sessions.items()}
        rows = self._monitor.execute(
            "SELECT pid, pg_blocking_pids(pid) FROM unnest(%s::int[]) AS pid", [pids]).fetchall()
        result: dict[str, tuple[str, ...]] = {}
        for pid, blocking in rows:
            who = {by_pid.get(b, OUTSIDE) for b in blocking or []}
            result[by_pid[pid]] = tuple(sorted(who, key=lambda n: self._order.get(n, 1 << 30)))
        return result

    @staticmethod
    def _has_cycle(graph: dict[str, tuple[str, ...]]) -> bool:
        state: dict[str, int] = {}

        def visit(node: str) -> bool:
            state[node] = 1
            for nxt in graph.get(node, ()):
                if state.get(nxt) == 1 or (nxt in graph and nxt not in state and visit(nxt)):
                    return True
            state[node] = 2
            return False

        return any(node not in state and visit(node) for node in graph)

    def _settle(self, step: Outcome) -> None:
        """Wait until every unfinished statement waits on a lock (no deadlock pending).

        A statement that timed out earlier runs on in the background: it is
        collected when it finishes, but nothing waits for it.
        """
        deadline = time.monotonic() + self.timeout
        finished: dict[str, Outcome] = {}
        pause = 0.0005
        while True:
            pending = {n: s.pending for n, s in self._sessions.items() if s.pending is not None}
            for name, (future, placeholder) in list(pending.items()):
                if future.done():
                    finished[name] = future.result()
                    self._sessions[name].pending = None
                    self._sessions[name].check_due = None
                    del pending[name]
            active = {n: p for n, p in pending.items() if p[1].status != "timeout"}
            if not active:
                break
            graph = self._blockers(pending)
            # a statement that finished while we asked is not waiting: look again
            if any(f.done() for f, _ in pending.values()):
                continue
            if all(graph.get(n) for n in active) and not self._has_cycle(graph):
                for name, (_, placeholder) in active.items():
                    if placeholder is step:
                        step.status = "blocked"
                        step.blocked_by = graph[name]
                break
            if time.monotonic() > deadline:
                late = [n for n, (_, p) in active.items() if not graph.get(n)]
                for name in late:
                    active[name][1].status = "timeout"
                self._record(step, finished)
                raise StepTimeout(
                    f"after {self.timeout:.0f} s, {', '.join(late)} neither finished nor waited "
                    "for a lock; is a statement running a long query (pg_sleep?)")
            wait([f for f, _ in active.values()], timeout=pause, return_when=FIRST_COMPLETED)
            pause = min(pause * 2, 0.02)
        self._record(step, finished)

    def _record(self, step: Outcome, finished: dict[str, Outcome]) -> None:
        """Record what finished: the step itself, and the earlier steps it released."""
        released = []
        for name in sorted(finished, key=self._order.__getitem__):
            result = finished[name]
            target = next((o for o in reversed(self.steps) if o.session == name and
                           (o is step or o.status in ("blocked", "timeout") and o.final is None)),
                          None)
            if target is step:
                self._copy_into(step, result)
            elif target is not None:
                result.resumed = "finishes" if target.status == "timeout" else "unblocks"
                target.final = result
                released.append(result)
        step.released = released

    @staticmethod
    def _copy_into(step: Outcome, result: Outcome) -> None:
        for attr in ("status", "command", "columns", "rows", "rowcount", "sqlstate", "message",
                     "detail"):
            setattr(step, attr, getattr(result, attr))

    # -- reporting ---------------------------------------------------------

    def transcript(self) -> str:
        """One line per statement, in the order they were issued."""
        return "\n".join(step.line() for step in self.steps)

    def show(self) -> None:
        print(self.transcript())

    def locks(self) -> list[tuple]:
        """The sessions' rows of pg_locks: (session, locktype, relation, mode, granted, waits_for).

        Virtual-transaction locks every transaction holds on itself are left
        out; transaction ids are shown by their owner's session name.
        """
        by_pid = {s.pid: n for n, s in self._sessions.items()}
        rows = self._monitor.execute("""
            SELECT l.pid, l.locktype, coalesce(l.relation::regclass::text, ''), l.mode, l.granted,
                   pg_blocking_pids(l.pid),
                   (SELECT h.pid FROM pg_locks h WHERE h.locktype = 'transactionid'
                     AND h.transactionid = l.transactionid AND h.granted LIMIT 1)
            FROM pg_locks l
            WHERE l.pid = ANY(%s) AND l.locktype <> 'virtualxid'
        """, [list(by_pid)]).fetchall()
        out = []
        for pid, locktype, relation, mode, granted, blocking, owner in rows:
            if locktype == "transactionid":
                relation = f"xid of {by_pid.get(owner, OUTSIDE)}"
            waits = "" if granted else ", ".join(sorted(by_pid.get(b, OUTSIDE) for b in blocking))
            out.append((by_pid[pid], locktype, relation, mode, granted, waits))
        out.sort(key=lambda r: (self._order[r[0]], not r[4], r[1], r[2], r[3]))
        return out

    def activity(self) -> list[tuple]:
        """The sessions' rows of pg_stat_activity: (session, state, wait_event_type, wait_event, query)."""
        by_pid = {s.pid: n for n, s in self._sessions.items()}
        rows = self._monitor.execute(
            "SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity "
            "WHERE pid = ANY(%s)", [list(by_pid)]).fetchall()
        out = [(by_pid[pid], state, wet, we, _one_line(query or ""))
               for pid, state, wet, we, query in rows]
        return sorted(out, key=lambda r: self._order[r[0]])

    # -- cleanup -----------------------------------------------------------

    def close(self) -> None:
        """Cancel what is still blocked, close every connection (open transactions roll back)."""
        for session in self.__dict__.get("_sessions", {}).values():
            if session.pending is not None:
                try:
                    session.conn.cancel_safe(timeout=5)
                except Exception:
                    pass
                try:
                    session.pending[0].result(timeout=10)
                except Exception:
                    pass
                session.pending = None
            session.executor.shutdown(wait=True)
            if not session.conn.closed:
                session.conn.close()
        monitor = self.__dict__.get("_monitor")
        if monitor is not None and not monitor.closed:
            monitor.close()


def run_script(target: Any, script: str, *, names: Iterable[str] | None = None,
               isolation: str | Mapping[str, str] | None = None, setup: str | None = None) -> str:
    """Run a whole ``T1: ...`` script in fresh sessions and return its transcript.

    ``setup`` (SQL) runs first in its own autocommit connection, not in the
    transcript: the Hermitage "tiny fixed setup".
    """
    if setup:
        with psycopg.connect(_url_of(target), autocommit=True) as conn:
            conn.execute(setup)
    if names is None:
        found = re.findall(r"^\s*(\w+)\s*:", script, flags=re.M)
        names = list(dict.fromkeys(found))
    with Sessions(target, *names, isolation=isolation) as s:
        s.play(script)
        return s.transcript()
