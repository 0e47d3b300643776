"""What an answer leaves behind: the connection's state, its locks, its settings, other tables.

An operation that returns the right value can still break production: a
transaction left open holds its row locks until the pool recycles the
connection, a ``RESET`` wipes the caller's own ``statement_timeout``, a "fix"
edits rows it was never asked to touch. Checks of operations therefore call
the learner's code through a :class:`Caller` connection and verify, after every
call, that the connection is idle, holds no lock, and has its settings as found
(the caller's settings are deliberately not the defaults, and its ``TimeZone``
is not UTC), and wrap the whole check in :func:`untouched` for the tables the
answer has no business changing.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

from ..data.dataset import query_checksum
from ..runtime.errors import CheckFailed
from . import adversarial

# Settings a real caller may have chosen: none of them the server default, so
# "restore" and "RESET" are told apart; a TimeZone with a half-hour offset.
def caller_settings(zone: str | None = None) -> dict[str, str]:
    return {
        "lock_timeout": "5min",
        "statement_timeout": "7min",
        "idle_in_transaction_session_timeout": "11min",
        "TimeZone": zone or adversarial.non_utc_zone(),
        "application_name": "lab check caller",
    }


def session_settings(conn: psycopg.Connection) -> dict[str, str]:
    """The session's view of every setting (a failed transaction is not asked)."""
    # a cursor of its own: the learner may have changed the connection's row_factory
    with conn.cursor(row_factory=tuple_row) as cur:
        # only what a session can SET: a server setting reloaded meanwhile (another process's
        # ALTER SYSTEM + pg_reload_conf) is nobody's answer
        return dict(cur.execute("SELECT name, setting FROM pg_settings "
                                "WHERE context IN ('user', 'superuser')").fetchall())


def locks_held(monitor: psycopg.Connection, pid: int) -> list[tuple[str, str, str]]:
    """(locktype, object, mode) of every lock a backend holds, its own vxid left out.

    SIReadLock is left out too: a SERIALIZABLE transaction's predicate locks outlive
    its COMMIT until the transactions that overlapped it end, and they block nobody.
    """
    return monitor.execute("""
        SELECT locktype, coalesce(relation::regclass::text, transactionid::text,
                                  objid::text, ''), mode
        FROM pg_locks WHERE pid = %s AND locktype <> 'virtualxid' AND granted
          AND mode <> 'SIReadLock'
        ORDER BY 1, 2, 3""", [pid]).fetchall()


def client_state(conn: psycopg.Connection) -> dict[str, object]:
    """What psycopg keeps on the client side and sends with every later transaction
    (``BEGIN ISOLATION LEVEL …``): invisible to pg_settings, inherited by the caller."""
    return {"autocommit": conn.autocommit, "isolation_level": conn.isolation_level,
            "read_only": conn.read_only, "deferrable": conn.deferrable,
            "row_factory": conn.row_factory, "prepare_threshold": conn.prepare_threshold,
            "cursor_factory": conn.cursor_factory,
            "server_cursor_factory": conn.server_cursor_factory}


def client_state_changes(before: Mapping[str, object], conn: psycopg.Connection) -> str:
    """The client-side changes, said for the learner ('' when none)."""
    now = client_state(conn)
    def shown(value: object) -> str:
        return getattr(value, "__name__", None) or repr(value)

    changed = [f"conn.{k} {shown(before[k])} → {shown(now[k])}" for k in before
               if now[k] != before[k]]
    if not changed:
        return ""
    return ("it changed the connection's own state (" + ", ".join(changed) + "): every later "
            "transaction of the caller would run that way; put it back before returning")


def stored_state(conn: psycopg.Connection) -> dict[str, str]:
    """What the catalogue keeps for every later session and job, in this database: settings
    stored with ``ALTER DATABASE``/``ALTER ROLE … IN DATABASE``, table storage parameters
    (``autovacuum_enabled``, ``fillfactor``, …) and triggers switched off. None of these ends
    with the connection; an answer that changes one changes production for everyone after it.
    """
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute("""
            SELECT 'ALTER ' || CASE WHEN s.setrole = 0 THEN 'DATABASE'
                                    ELSE 'ROLE ' || s.setrole::regrole::text || ' IN DATABASE'
                               END || ' … SET', array_to_string(s.setconfig, ', ')
            FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
            WHERE d.datname = current_database()
            UNION ALL
            SELECT 'storage parameters of ' || c.oid::regclass::text,
                   coalesce(array_to_string(c.reloptions, ', '), '')
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'i', 'm')
            UNION ALL
            SELECT 'trigger ' || t.tgname || ' on ' || t.tgrelid::regclass::text,
                   CASE t.tgenabled WHEN 'D' THEN 'disabled' ELSE 'enabled' END
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public'""").fetchall()
    if not conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.INTRANS:
        conn.rollback()  # end the transaction that reading them opened
    return {what: value for what, value in rows}


def stored_state_changes(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    """The stored changes, said for the learner ('' when none). Objects created or dropped
    are not settings and are judged by the checks themselves; a setting added or changed on
    an object that existed before is. Database settings count whether added or removed."""
    changed = []
    for what in sorted(set(before) | set(after)):
        old, new = before.get(what), after.get(what)
        database_level = what.startswith("ALTER ")
        if old == new or (not database_level and (old is None or new is None)):
            continue
        changed.append(f"{what} {old or '(none)'!s} → {new or '(none)'!s}")
    if not changed:
        return ""
    return ("it left settings in the catalogue that every later session and job inherits ("
            + "; ".join(changed[:4]) + "): put them back before returning (ALTER … RESET, "
            "ALTER TABLE … RESET (…), ENABLE TRIGGER), or change them only for your own "
            "transaction with SET LOCAL")


# Settings that belong to one transaction: they read differently inside and outside it.
TRANSACTION_SCOPED = ("transaction_isolation", "transaction_read_only", "transaction_deferrable")


def session_objects(conn: psycopg.Connection) -> list[str]:
    """What the session holds that outlives a call, in words: temporary tables, views and
    sequences (pg_my_temp_schema() is per session), cursors WITH HOLD, statements PREPAREd
    in SQL (psycopg's own prepared statements are the driver's, not the caller's), LISTEN
    channels. Read on that session, so only when it is idle; the caller ends the transaction
    the read opens on an autocommit-off connection."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return [r[0] for r in cur.execute("""
            SELECT 'temporary table ' || relname FROM pg_class
            WHERE relnamespace = pg_my_temp_schema() AND relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
            UNION ALL SELECT 'cursor ' || name || ' WITH HOLD' FROM pg_cursors WHERE is_holdable
            UNION ALL SELECT 'prepared statement ' || name FROM pg_prepared_statements
            WHERE from_sql
            UNION ALL SELECT 'LISTEN ' || c FROM pg_listening_channels() AS c
            ORDER BY 1""").fetchall()]


def left_on(conn: Any, *, settings: Mapping[str, str], client: Mapping[str, object],
            monitor: psycopg.Connection) -> list[str]:
    """What a call left on ``conn`` compared with how it was found, in the learner's terms.

    ``settings`` are the session's settings as found (``pg_settings``), ``client`` the
    client-side state as found (:func:`client_state`). Checked: the connection is open, its
    transaction neither open nor aborted, its client state and settings as found (RESET is
    not a restore), and it holds no lock (``monitor`` asks ``pg_locks``). Reading the
    settings on an autocommit-off connection opens a transaction, which is ended here.
    ``conn`` may be a proxy with ``_conn`` (the stress tool's HookedConnection).
    """
    raw = getattr(conn, "_conn", conn)
    if raw.closed or raw.broken:
        return ["it closed (or broke) the connection it was given"]
    out = []
    status = raw.info.transaction_status
    if status == pq.TransactionStatus.INTRANS:
        out.append("it returned with its transaction still open (commit or roll back before "
                   "returning, or use `with conn.transaction():`), so its locks stay held")
    elif status == pq.TransactionStatus.INERROR:
        out.append("it returned with its transaction aborted by an error (roll back before "
                   "returning)")
    changed_client = client_state_changes(client, raw)
    if changed_client:
        out.append(changed_client)
    held = locks_held(monitor, raw.info.backend_pid)
    if held:
        shown = ", ".join(f"{mode} on {obj or kind}" for kind, obj, mode in held[:4])
        out.append(f"the connection still holds {len(held)} lock(s): {shown}")
    if status == pq.TransactionStatus.IDLE:
        now = session_settings(raw)
        kept = session_objects(raw)
        if not raw.autocommit:
            raw.rollback()  # end the transaction that reading them opened
        if kept:
            out.append(
                f"it left {', '.join(kept[:4])} in the caller's session: those live as long "
                "as the session, so a pooled connection keeps them, and a temporary table's "
                "rows, for whoever borrows it next (and the next call meets the last call's "
                "rows). Create a temporary table with ON COMMIT DROP (or DROP it), CLOSE a "
                "cursor, DEALLOCATE a prepared statement, UNLISTEN, before returning")
        changed = sorted(k for k in settings if now.get(k) != settings[k]
                         and k not in TRANSACTION_SCOPED)
        if changed:
            shown = ", ".join(f"{k} {settings[k]!r} → {now.get(k)!r}" for k in changed[:4])
            out.append(f"it changed the caller's session settings ({shown}); save each "
                       "setting it changes and put the caller's value back (RESET restores "
                       "the server default, not the caller's value), or use SET LOCAL")
    return out


class Caller:
    """A connection the check hands to the learner's code, then inspects.

    ``Caller(lab)`` opens a connection (autocommit off, like any pool's),
    applies :func:`caller_settings`, and remembers every setting as found.
    ``verify(what)`` raises CheckFailed when the learner's call left the
    transaction open or aborted, kept a lock, or changed a setting.
    """

    def __init__(self, lab: Any, *, autocommit: bool = False,
                 settings: Mapping[str, str] | None = None) -> None:
        url = getattr(lab, "url", lab)
        self.conn = psycopg.connect(url, autocommit=True)
        self.settings_applied = dict(caller_settings() if settings is None else settings)
        for name, value in self.settings_applied.items():
            self.conn.execute("SELECT set_config(%s, %s, false)", [name, value])
        self.found = session_settings(self.conn)  # autocommit here: no transaction is left open
        self.conn.autocommit = autocommit
        self.client = client_state(self.conn)
        self.pid = self.conn.info.backend_pid
        self._monitor = psycopg.connect(url, autocommit=True)
        self.stored = stored_state(self._monitor)

    @property
    def zone(self) -> str:
        return self.found.get("TimeZone", "")

    def problems(self) -> list[str]:
        """What the last call left behind, in the learner's terms (empty when clean)."""
        problems = left_on(self.conn, settings=self.found, client=self.client,
                           monitor=self._monitor)
        stored = stored_state_changes(self.stored, stored_state(self._monitor))
        return problems + ([stored] if stored else [])

    def verify(self, what: str) -> None:
        problems = self.problems()
        if problems:
            raise CheckFailed(f"After {what}, the connection was not left as it was found: "
                              + "; ".join(problems) + ".")

    def clean(self) -> None:
        """Put the connection back (roll back, restore settings) so the check can go on."""
        if self.conn.closed or self.conn.broken:
            return
        if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
            self.conn.rollback()
        for name, value in self.client.items():
            if getattr(self.conn, name) != value:
                setattr(self.conn, name, value)
        autocommit = self.conn.autocommit
        self.conn.autocommit = True
        for name, value in self.settings_applied.items():
            self.conn.execute("SELECT set_config(%s, %s, false)", [name, value])
        if session_objects(self.conn):
            for statement in ("DISCARD TEMP", "CLOSE ALL", "DEALLOCATE ALL", "UNLISTEN *"):
                self.conn.execute(statement)
        self.conn.autocommit = autocommit

    def close(self) -> None:
        for conn in (self.conn, self._monitor):
            if not conn.closed:
                conn.close()

    def __enter__(self) -> "Caller":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Watched:
    """A learner's function wrapped so that every call, on whatever connection it is given
    (an interleaving's, a stress worker's), is followed by :func:`left_on`.

    Problems are recorded (threads may call at once); :meth:`verify` raises the first.
    ``describe(args)`` words a call for the message ("transfer(1, 2, 5.00)").
    """

    def __init__(self, lab: Any, fn: Callable[..., Any],
                 describe: Callable[[tuple], str]) -> None:
        self.fn, self.describe = fn, describe
        self.monitor = psycopg.connect(getattr(lab, "url", lab), autocommit=True)
        self.problems: list[tuple[tuple, list[str]]] = []
        self._lock = threading.Lock()

    def __call__(self, conn: Any, *args: Any) -> Any:
        raw = getattr(conn, "_conn", conn)
        # the settings as found, read in a transaction of our own, outside the call (an
        # interleaving counts the call's statements, not these)
        found = session_settings(raw)
        if not raw.autocommit:
            raw.rollback()
        client = client_state(raw)
        result = self.fn(conn, *args)
        problems = left_on(conn, settings=found, client=client, monitor=self.monitor)
        if problems:
            with self._lock:
                self.problems.append((args, problems))
        return result

    def verify(self, when: str) -> None:
        if self.problems:
            args, problems = self.problems[0]
            raise CheckFailed(f"After {self.describe(args)} {when}, the connection was not left "
                              "as it was found: " + "; ".join(problems) + ".",
                              f"{len(self.problems)} call(s) left something behind")

    def close(self) -> None:
        if not self.monitor.closed:
            self.monitor.close()

    def __enter__(self) -> "Watched":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextmanager
def untouched(lab: Any, tables: Sequence[str], *, why: str = "") -> Iterator[None]:
    """Fail if any of ``tables`` differs (rows or checksum) after the block, or if the
    database's stored settings (:func:`stored_state`) changed.

    Wrap a check's run of the answer in it for tables the task never asks to
    change: editing the data until the check becomes trivial (un-deleting every
    product, copying the expected rows) shows up here.
    """
    url = getattr(lab, "url", lab)

    def snapshot() -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
        with psycopg.connect(url, autocommit=True) as conn:
            return ({t: query_checksum(conn, f"SELECT * FROM {t}") for t in tables},
                    stored_state(conn))

    before, stored_before = snapshot()
    yield
    after, stored_after = snapshot()
    stored = stored_state_changes(stored_before, stored_after)
    if stored:
        raise CheckFailed(f"Your answer {stored[3:]}.")
    changed = [t for t in tables if before[t] != after[t]]
    if changed:
        detail = "; ".join(f"{t}: {before[t][0]} rows → {after[t][0]} rows"
                           + (" (same count, different rows)" if before[t][0] == after[t][0]
                              else "") for t in changed)
        raise CheckFailed(
            f"Your answer changed {', '.join(changed)}, which the task does not ask it to touch"
            + (f" ({why})" if why else "") + ". Run the notebook's reset "
            "(`lab.reset()`) and change only what the task names.", detail)
