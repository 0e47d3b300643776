"""Checks for 03_indexing: the right index for each query, proven by its plan.

Each check applies the learner's DDL (idempotently: a re-run of a check cell
must not fail with "relation ... already exists"), then judges the plan by
property: which index is used, whether its Index Cond covers the columns the
query narrows on (rather than a Filter that reads and throws rows away), Heap
Fetches of an Index Only Scan, the index's own definition from the catalog.

The DDL runs next to a reader that holds ACCESS SHARE on the exercise's tables
(``apply_watched``): a statement that asks for ACCESS EXCLUSIVE (CLUSTER, VACUUM
FULL, ALTER TABLE ... TYPE, a plain DROP INDEX) is seen waiting in pg_locks and
fails the check, as does a table rewrite (a new relfilenode), an index of the
dataset, or any UNIQUE one, that is gone or disabled afterwards (it is put back),
and a setting stored for later sessions (ALTER DATABASE/ROLE/SYSTEM ... SET, put
back too).

Every index an answer creates must serve the exercise's query by itself (exercises 1
and 3 to 6): the plans show only the index the planner picked, so each other index of
the answer is judged again alone, the rest dropped in a transaction rolled back
(``judge_each_alone``). A second index beside the right one (the other column order, a
key "for later") is maintained on every write, and which of the two the planner picks
depends on the data; judged alone, the answer fails on every seed, not on some.
Exercise 3 also rejects key columns the page never reads (the primary key excepted).

Exercise 3 runs an answer again (at most twice) when its VACUUM ran but left pages
not all-visible: VACUUM skips a page another process has pinned at that instant.
Exercise 5 measures what the index's predicate admits on the table (every active
customer, no soft-deleted one). Exercise 7 also runs the rewrites in sessions whose
zone gives the day 23 and 25 hours. Exercise 8 compares indexes by their key
columns and predicate from the catalog, not by their text: direction, NULLS order,
access method and options make no other index.

At tiny scale a table fits in a few pages and the planner rightly prefers a
Seq Scan even when a good index exists. Where the question is "CAN this index
serve this query", the plan is taken with ``SET LOCAL enable_seqscan = off``:
that setting does not forbid a Seq Scan, it makes it look very expensive, so
an index that can serve the query wins and one that cannot still loses.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Sequence
from zoneinfo import ZoneInfo

import psycopg
from psycopg import pq

from ..tools import explain as ex
from ..course import adversarial as adv
from ..course.checking import CheckFailed, require
from ..course.left_behind import untouched

NO_SEQSCAN = {"enable_seqscan": "off"}

# -- the queries of the challenge (the notebook shows the same text) ------------

COUNTRY_SINCE = ("SELECT id, customer_id, created_at, total FROM orders "
                 "WHERE shipping_country = 'FR' AND created_at >= '2026-09-01' "
                 "ORDER BY created_at")
HISTORY_PAGE = ("SELECT created_at, status, total FROM orders WHERE customer_id = {customer} "
                "ORDER BY created_at DESC LIMIT 20")
PENDING_QUEUE = ("SELECT id, customer_id, created_at FROM orders WHERE status = 'pending' "
                 "ORDER BY created_at LIMIT 50")
LOGIN_LOOKUP = ("SELECT id, email FROM customers "
                "WHERE lower(email) = lower('{email}') AND deleted_at IS NULL")
JSON_FILTER = """SELECT id, name FROM products WHERE attributes @> '{"colour": "Tan"}'"""
LEFTMOST_INDEX = "orders_cust_status_created_idx"
LEFTMOST_QUERIES = {
    "A": "SELECT * FROM orders WHERE customer_id = 42",
    "B": "SELECT * FROM orders WHERE customer_id = 42 AND status = 'delivered'",
    "C": "SELECT * FROM orders WHERE status = 'delivered' AND created_at >= '2026-01-01'",
    "D": "SELECT * FROM orders WHERE customer_id = 42 AND created_at >= '2026-01-01'",
    "E": "SELECT * FROM orders WHERE created_at >= '2026-10-01'",
    "F": "SELECT * FROM orders WHERE customer_id = 42 ORDER BY status, created_at",
}
WRITE_COST_ROWS = 20_000
# A day of traffic after the nightly VACUUM: new orders for the busiest customers land on
# fresh pages that the visibility map does not yet mark all-visible. (New rows, not
# UPDATEs: an index built over HOT-updated rows that an older snapshot may still see
# is flagged indcheckxmin and stays invisible to the planner until that snapshot ends.)
TRAFFIC = """INSERT INTO orders (customer_id, status, created_at, total, shipping_country)
SELECT customer_id, 'pending', timestamptz '2026-11-01' + n * interval '1 minute',
       19.99 + n, 'US'
FROM (SELECT o.customer_id FROM orders o JOIN customers c ON c.id = o.customer_id
      WHERE NOT c.is_load_test AND o.created_at < '2026-11-01'
      GROUP BY o.customer_id ORDER BY count(*) DESC, o.customer_id LIMIT 50) busiest,
     generate_series(1, 30) n"""


def split_statements(sql: str) -> list[str]:
    """Split on top-level semicolons (not inside quotes, identifiers or dollar quotes).

    VACUUM and CREATE INDEX CONCURRENTLY refuse to run inside a transaction
    block, and several statements sent in one string form one, so they run
    one by one.
    """
    statements, current, i, quote = [], [], 0, None
    while i < len(sql):
        ch = sql[i]
        if quote:
            if sql.startswith(quote, i):
                current.append(quote)
                i += len(quote)
                quote = None
                continue
        elif ch in "'\"":
            quote = ch
        elif ch == "$":
            m = re.match(r"\$[A-Za-z_]*\$", sql[i:])
            if m:
                quote = m.group(0)
                current.append(quote)
                i += len(quote)
                continue
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
            continue
        elif ch == ";":
            statements.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def apply(lab, sql: str | Sequence[str], what: str = "your statement") -> None:
    """Run the learner's DDL in autocommit, one statement at a time.

    "already exists" (42P07, 42710) is not an error here: it means the cell ran
    before, and the check then judges what is in the database.
    """
    statements = [sql] if isinstance(sql, str) else list(sql)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        for block in statements:
            for statement in split_statements(block):
                try:
                    conn.execute(statement)
                except (psycopg.errors.DuplicateTable, psycopg.errors.DuplicateObject):
                    pass
                except psycopg.Error as exc:
                    raise CheckFailed(f"PostgreSQL rejected {what}: "
                                      f"{exc.diag.message_primary or exc}",
                                      f"SQLSTATE {exc.sqlstate}; statement: {statement}") from None


# -- applying the learner's DDL, judged by the locks it takes and what it leaves ----------

# The tables an index exercise touches. While a statement runs, a reader holds ACCESS SHARE
# on each (what any SELECT holds): only ACCESS EXCLUSIVE conflicts with it, so a statement
# that asks for ACCESS EXCLUSIVE waits, and pg_locks says so. Deterministic at every scale:
# whether a statement queues behind a reader is a property of its lock mode, not of timing.
WATCHED_TABLES = ("orders", "customers", "products", "order_items")
# The dataset's indexes on them (and the one exercise 2 creates): other queries use them.
DATASET_INDEXES = frozenset({
    "orders_pkey", "orders_customer_id_idx", "orders_created_at_idx", "customers_pkey",
    "customers_email_key", "products_pkey", "products_sku_key", "order_items_pkey",
    "order_items_order_id_idx", "order_items_product_id_idx", LEFTMOST_INDEX})


def _index_snapshot(conn: psycopg.Connection) -> dict[str, tuple[str, str, str]]:
    """Every index on the watched tables: name -> (table, definition, key if UNIQUE)."""
    return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
        """SELECT c.relname, t.relname, pg_get_indexdef(i.indexrelid) || CASE
                      WHEN i.indisvalid AND i.indisready AND i.indislive THEN ''
                      ELSE ' (marked ' || concat_ws(', ',
                          CASE WHEN NOT i.indisvalid THEN 'invalid: no query may use it' END,
                          CASE WHEN NOT i.indisready THEN 'not ready: writes skip it' END,
                          CASE WHEN NOT i.indislive THEN 'not live' END) || ')' END,
                  CASE WHEN i.indisunique THEN array_to_string(array(
                      SELECT pg_get_indexdef(i.indexrelid, k, true)
                      FROM generate_series(1, i.indnkeyatts) k ORDER BY k), ', ') ELSE '' END
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           JOIN pg_class t ON t.oid = i.indrelid
           WHERE t.relname = ANY(%s) AND t.relnamespace = 'public'::regnamespace""",
        [list(WATCHED_TABLES)])}


# The key under which _db_settings files what ALTER SYSTEM wrote (postgresql.auto.conf).
SERVER_WIDE = "*server*"


def _db_settings(conn: psycopg.Connection) -> dict[tuple[str, str, str], str]:
    """Settings stored for later sessions: for this database or a role (ALTER DATABASE/ROLE
    … SET, in pg_db_role_setting), and for the whole server (ALTER SYSTEM, which writes
    postgresql.auto.conf: pg_file_settings reads it as it is now, reloaded or not).
    Keyed by (database, role, name); SERVER_WIDE as the database for ALTER SYSTEM."""
    out = {}
    for db, role, config in conn.execute(
            """SELECT CASE WHEN s.setdatabase = 0 THEN '' ELSE d.datname END,
                      CASE WHEN s.setrole = 0 THEN '' ELSE r.rolname END, s.setconfig
               FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase
               LEFT JOIN pg_roles r ON r.oid = s.setrole
               WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database
                                          WHERE datname = current_database()))"""):
        for item in config or []:
            key, _, value = item.partition("=")
            out[(db, role, key)] = value
    try:
        for name, value in conn.execute(
                "SELECT name, setting FROM pg_file_settings "
                "WHERE sourcefile LIKE '%%postgresql.auto.conf' ORDER BY seqno"):
            out[(SERVER_WIDE, "", name)] = value
    except psycopg.errors.InsufficientPrivilege:
        pass  # then this role cannot ALTER SYSTEM either (without a GRANT ALTER SYSTEM)
    return out


def _restore_db_settings(conn: psycopg.Connection, before: dict, after: dict) -> None:
    """Put the stored settings back as they were (and reload, for ALTER SYSTEM's)."""
    from psycopg import sql as q
    server_wide = False
    for key in set(before) | set(after):
        if before.get(key) == after.get(key):
            continue
        db, role, name = key
        server_wide = server_wide or db == SERVER_WIDE
        target = (q.SQL("ALTER SYSTEM") if db == SERVER_WIDE else
                  q.SQL("ALTER ROLE {} IN DATABASE {}").format(q.Identifier(role), q.Identifier(db))
                  if db and role else
                  q.SQL("ALTER ROLE {}").format(q.Identifier(role)) if role else
                  q.SQL("ALTER DATABASE {}").format(q.Identifier(db)))
        action = (q.SQL("RESET {}").format(q.Identifier(name)) if key not in before else
                  q.SQL("SET {} = {}").format(q.Identifier(name), q.Literal(before[key])))
        try:
            conn.execute(target + q.SQL(" ") + action)
        except psycopg.Error:
            pass
    if server_wide:
        conn.execute("SELECT pg_reload_conf()")


def _filenodes(conn: psycopg.Connection) -> dict[str, int]:
    """The watched tables' files: a new one means the table was rewritten."""
    return {r[0]: r[1] for r in conn.execute(
        "SELECT relname, pg_relation_filenode(oid) FROM pg_class WHERE relname = ANY(%s) "
        "AND relnamespace = 'public'::regnamespace AND relkind = 'r'",
        [list(WATCHED_TABLES)])}


def _run_next_to_reader(lab, runner: psycopg.Connection, monitor: psycopg.Connection,
                        statement: str) -> tuple[str | None, BaseException | None]:
    """Run ``statement`` on ``runner`` while a reader holds ACCESS SHARE on the watched
    tables. Returns (the watched table it asked ACCESS EXCLUSIVE on, or None; its error).
    The statement always completes: once its wait is seen, the reader lets go."""
    box: dict[str, BaseException] = {}

    def target() -> None:
        try:
            runner.execute(statement)
        except BaseException as exc:  # reported to the caller
            box["error"] = exc

    pid = runner.info.backend_pid
    exclusive = None
    with psycopg.connect(lab.url) as reader:
        for table in WATCHED_TABLES:
            reader.execute(f"SELECT 1 FROM {table} LIMIT 0")
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        while thread.is_alive():
            waiting = monitor.execute(
                """SELECT c.relname, l.mode, l.locktype FROM pg_locks l
                   LEFT JOIN pg_class c ON c.oid = l.relation
                   WHERE l.pid = %s AND NOT l.granted""", [pid]).fetchall()
            if waiting:
                table, mode, kind = waiting[0]
                if kind == "relation" and mode == "AccessExclusiveLock" and table in WATCHED_TABLES:
                    exclusive = table
                if reader.info.transaction_status != pq.TransactionStatus.IDLE:
                    reader.rollback()  # let it go: seen waiting, or waiting for someone else
            thread.join(0.002)
        if reader.info.transaction_status != pq.TransactionStatus.IDLE:
            reader.rollback()
    return exclusive, box.get("error")


def _protected(name: str, snapshot: tuple[str, str, str]) -> bool:
    """An index other queries rely on: one of the dataset's, or any UNIQUE one."""
    return name in DATASET_INDEXES or bool(snapshot[2])


def _consequence(table: str, unique: str) -> str:
    if unique:
        return (f"it was UNIQUE, and without it {table} accepts a second row with the same "
                f"{unique} (PostgreSQL no longer refuses the duplicate)")
    return f"every other query on {table} that used it (reports, other screens) lost it"


def apply_watched(lab, sql: str | Sequence[str], what: str = "your statement") -> set[str]:
    """``apply``, judged by its effect on the rest of the database.

    Each statement runs next to a reader of the watched tables: one that asks for ACCESS
    EXCLUSIVE (CLUSTER, VACUUM FULL, a plain DROP INDEX, ALTER TABLE ... TYPE) is seen
    waiting, then runs. Afterwards, an index that was there and is gone (or was replaced
    by another definition under its name) fails the check and is put back; so does a
    statement that took ACCESS EXCLUSIVE, or rewrote a table.

    Returns the answer's indexes: those its statements created, and those PostgreSQL
    named as already there (IF NOT EXISTS, or a re-run of the cell), so that a re-run
    is judged as the first run.
    """
    named: set[str] = set()

    def already(diag) -> None:
        m = re.search(r'relation "([^"]+)" already exists', diag.message_primary or "")
        if m:
            named.add(m.group(1))

    blocks = [sql] if isinstance(sql, str) else list(sql)
    statements = [s for block in blocks for s in split_statements(block)]
    with psycopg.connect(lab.url, autocommit=True) as monitor, \
            psycopg.connect(lab.url, autocommit=True) as runner:
        runner.add_notice_handler(already)
        before, files = _index_snapshot(monitor), _filenodes(monitor)
        settings = _db_settings(monitor)
        locked: list[tuple[str, str]] = []
        for statement in statements:
            indexes, nodes = _index_snapshot(monitor), _filenodes(monitor)
            exclusive, error = _run_next_to_reader(lab, runner, monitor, statement)
            if exclusive:
                # One exception: DROP INDEX IF EXISTS of the learner's own index, so that a
                # check cell that drops and recreates its index runs again. It rewrites no
                # table and drops nothing another query relies on.
                now = _index_snapshot(monitor)
                dropped = [n for n in indexes if n not in now]
                own = dropped and _filenodes(monitor) == nodes and not any(
                    _protected(n, indexes[n]) for n in dropped)
                if not own:
                    locked.append((statement, exclusive))
            if isinstance(error, (psycopg.errors.DuplicateTable, psycopg.errors.DuplicateObject)):
                already(error.diag)
                continue
            if isinstance(error, psycopg.Error):
                if not locked:
                    raise CheckFailed(f"PostgreSQL rejected {what}: "
                                      f"{error.diag.message_primary or error}",
                                      f"SQLSTATE {error.sqlstate}; statement: {statement}") from None
            elif error is not None:
                raise error
            if locked:
                break
        if runner.info.transaction_status != pq.TransactionStatus.IDLE:
            runner.rollback()  # a BEGIN without COMMIT: nothing of it stays
        after, files_after = _index_snapshot(monitor), _filenodes(monitor)
        settings_after = _db_settings(monitor)
        if settings_after != settings:
            _restore_db_settings(monitor, settings, settings_after)
            changed = sorted(k for k in set(settings) | set(settings_after)
                             if settings.get(k) != settings_after.get(k))
            shown_settings = ", ".join(
                f"{k[2]} {settings.get(k, 'default')!r} → {settings_after.get(k, 'default')!r}"
                + (" (for the whole server: ALTER SYSTEM)" if k[0] == SERVER_WIDE else
                   f" (for {'database ' + k[0] if k[0] else 'every database'}"
                   f"{', role ' + k[1] if k[1] else ''})") for k in changed[:4])
            raise CheckFailed(
                f"{what[0].upper() + what[1:]} stored settings for every future "
                f"session (ALTER DATABASE/ROLE/SYSTEM … SET): {shown_settings}. Every other "
                "query of every application now runs with them; a planner switch such as "
                "enable_seqscan = off forces bad plans everywhere. Make the index right for the "
                "query, and change no setting (the check has put them back).")
        gone = {n: v for n, v in before.items() if n not in after and _protected(n, v)}
        replaced = {n: v for n, v in before.items()
                    if n in after and after[n] != v and _protected(n, v)}
        for name, (_, definition, _) in gone.items():
            try:
                monitor.execute(definition)
            except psycopg.Error:
                pass
    rewritten = sorted(t for t, f in files.items() if files_after.get(t, f) != f)
    shown = "; ".join(re.sub(r"\s+", " ", s).strip() for s, _ in locked)
    if gone or replaced:
        parts = [f"{n} ({d}): {_consequence(t, u)}" for n, (t, d, u) in gone.items()]
        parts += [f"{n} ({d}) is now {after[n][1]}: {_consequence(t, u)}"
                  for n, (t, d, u) in replaced.items()]
        lock = (f" A plain DROP INDEX also asked for an ACCESS EXCLUSIVE lock on "
                f"{locked[0][1]}: every query on it, reads included, queued behind it."
                if locked else "")
        undo = []
        if gone:
            undo.append("the check has put back " + ", ".join(gone))
        if replaced:
            undo.append("recreate " + ", ".join(replaced) + " as it was")
        raise CheckFailed(
            f"{what[0].upper() + what[1:]} dropped (or disabled) an index that was already there: "
            + "; ".join(parts) + "." + lock + " This exercise adds an index next to the "
            "existing ones; never drop one to make the planner pick yours ("
            + "; ".join(undo) + ").", f"statement(s): {shown}" if shown else "")
    if locked or rewritten:
        table = locked[0][1] if locked else rewritten[0]
        rewrite = (f", and rewrote {', '.join(rewritten)} (a new file: every row copied)"
                   if rewritten else "")
        raise CheckFailed(
            f"`{_short(locked[0][0]) if locked else shown}` asked for an ACCESS EXCLUSIVE lock "
            f"on {table}{rewrite}. While it waits and runs, every query on {table}, reads "
            "included, queues behind it: minutes of outage at 10 million rows (CLUSTER and "
            "VACUUM FULL rewrite the whole table under that lock). An index and a plain "
            "VACUUM do this job online: CREATE INDEX, then VACUUM (which takes SHARE UPDATE "
            "EXCLUSIVE and blocks no reader or writer).", f"statement(s): {shown}")
    return ({n for n in after if n not in before}
            | {n for n in named if n in after and n not in DATASET_INDEXES})


def _short(sql: str, width: int = 90) -> str:
    one = re.sub(r"\s+", " ", sql).strip()
    return one if len(one) <= width else one[:width - 1] + "…"


def index_info(lab, name: str) -> dict[str, Any]:
    """What the catalog says about an index: key columns, INCLUDE columns, predicate, method."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        row = conn.execute(
            """SELECT i.indnkeyatts, i.indnatts, pg_get_expr(i.indpred, i.indrelid), am.amname,
                      pg_relation_size(i.indexrelid), pg_get_indexdef(i.indexrelid),
                      t.relname, c.reltuples
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_class t ON t.oid = i.indrelid JOIN pg_am am ON am.oid = c.relam
               WHERE c.oid = to_regclass(%s)""", (name,)).fetchone()
        if row is None:
            raise CheckFailed(f"There is no index named {name}.")
        nkey, natts = row[0], row[1]
        columns = [conn.execute("SELECT pg_get_indexdef(to_regclass(%s), %s, true)",
                                (name, k)).fetchone()[0] for k in range(1, natts + 1)]
    return {"name": name, "key": columns[:nkey], "include": columns[nkey:], "predicate": row[2],
            "method": row[3], "bytes": row[4], "definition": row[5], "table": row[6],
            "entries": row[7]}


def _new_indexes(lab, table: str) -> list[str]:
    """Indexes on ``table`` that the learner created (not in the dataset's template)."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        rows = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,))
        names = [r[0] for r in rows]
    return [n for n in names if n not in DATASET_INDEXES]


def explain_own(lab, sql: str, table: str = "orders", analyze: bool = True) -> ex.Plan:
    """The plan with only the learner's indexes on ``table`` (plus constraint indexes).

    The dataset's own single-column indexes compete with the learner's and
    win at small sizes for reasons this challenge teaches later (physical
    correlation, tiny tables): to ask whether *your* index can serve the query,
    they are dropped inside a transaction that is rolled back (DDL is
    transactional in PostgreSQL), and the plan is taken with enable_seqscan off.
    """
    own = _new_indexes(lab, table)
    with psycopg.connect(lab.url) as conn:
        with conn.transaction(force_rollback=True):
            others = [r[0] for r in conn.execute(
                """SELECT i.indexrelid::regclass::text FROM pg_index i
                   WHERE i.indrelid = to_regclass(%s) AND NOT EXISTS (
                       SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                       AND k.conrelid = i.indrelid)""", (table,))
                if r[0] not in own]
            if others:
                conn.execute("DROP INDEX " + ", ".join(others))
            return ex.explain(conn, sql, settings=NO_SEQSCAN, analyze=analyze)


def _catalogue(conn: psycopg.Connection, table: str) -> dict[str, dict[str, Any]]:
    """Every index on ``table``: key columns or expressions (without direction or operator
    class), their operator classes, INCLUDE columns, predicate, access method, UNIQUE."""
    out = {}
    for name, method, key, opclasses, include, predicate, unique, definition in conn.execute(
            """SELECT c.relname, am.amname,
                      array(SELECT pg_get_indexdef(i.indexrelid, k, true)
                            FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
                      array(SELECT o.opcname FROM unnest(i.indclass::oid[]) WITH ORDINALITY u(oid, k)
                            JOIN pg_opclass o ON o.oid = u.oid ORDER BY u.k),
                      array(SELECT pg_get_indexdef(i.indexrelid, k, true)
                            FROM generate_series(i.indnkeyatts + 1, i.indnatts) k ORDER BY k),
                      pg_get_expr(i.indpred, i.indrelid), i.indisunique,
                      pg_get_indexdef(i.indexrelid)
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_am am ON am.oid = c.relam
               WHERE i.indrelid = to_regclass(%s)""", [table]):
        out[name] = {"name": name, "method": method, "key": list(key),
                     "opclasses": list(opclasses), "include": list(include),
                     "predicate": predicate, "unique": unique, "definition": definition}
    return out


def _serves_all_of(small: dict[str, Any], big: dict[str, Any]) -> bool:
    """Whether ``big`` serves every query ``small`` serves: same predicate, and for a B-tree
    (or hash) ``small``'s key is the leftmost part of ``big``'s (with the same operator
    classes) and its INCLUDE columns are in ``big``; two GIN (or GiST, BRIN) indexes on the
    same columns, whatever their operator classes, are one too many."""
    if small["predicate"] != big["predicate"] or small["unique"]:
        return False
    ordered = {"btree", "hash"}
    if small["method"] in ordered:
        if big["method"] != "btree" and big["method"] != small["method"]:
            return False
        n = len(small["key"])
        if small["method"] == "hash":  # a hash index answers = on its one column
            return big["key"][:1] == small["key"] and not small["include"]
        return (big["key"][:n] == small["key"] and big["opclasses"][:n] == small["opclasses"]
                and set(small["include"]) <= set(big["key"] + big["include"]))
    return small["method"] == big["method"] and small["key"] == big["key"]


def require_no_redundant(lab, table: str, answer: set[str]) -> None:
    """Fail when one of the answer's indexes on ``table`` serves nothing another index on it
    (the answer's or one already there) does not serve already."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        found = _catalogue(conn, table)
    for name in sorted(n for n in answer if n in found):
        small = found[name]
        for other, big in sorted(found.items()):
            if other == name or not _serves_all_of(small, big):
                continue
            same = small["key"] == big["key"]
            why = ((f"both are {small['method'].upper()} indexes on ({', '.join(small['key'])})"
                    + (", and either one answers the same operators (GIN jsonb_ops answers "
                       "@> too)" if small["method"] == "gin" else "")
                    if small["method"] == big["method"] else
                    f"it is a {small['method'].upper()} index on ({', '.join(small['key'])}), "
                    f"and {other}, a {big['method'].upper()} index on the same key, answers = "
                    "on it as well") if same else
                   f"its key ({', '.join(small['key'])}) is the leftmost part of {other}'s "
                   f"({', '.join(big['key'])})"
                   + (f", with the same WHERE {small['predicate']}" if small["predicate"] else "")
                   + f", so {other} serves every query it serves")
            raise CheckFailed(
                f"{name} is redundant next to {other}: {why}. Each extra index costs every "
                f"write: each INSERT into {table}, each UPDATE that is not HOT, and each "
                "DELETE's VACUUM maintains it, and it takes memory from the cache. Create one "
                f"index per need (drop the extra one: DROP INDEX CONCURRENTLY {name}).",
                f"{name}: {small['definition']}\n{other}: {big['definition']}")


def _missing_index(table: str, what: str) -> CheckFailed:
    return CheckFailed(f"No new index on {table} after your statement. {what}")


# -- judging an index by its plans on several parameter values, against the reference ----

# An index that needs more than this many times the reference's buffers (and a few pages
# more: a wider row, one more tree level) does not serve the query.
BUFFER_FACTOR = 3
BUFFER_SLACK = 4
BITMAP_ONLY = {"enable_indexscan": "off", "enable_indexonlyscan": "off"}
REFERENCE_PREFIX = "lab_check_reference_"


def _droppable(conn: psycopg.Connection, table: str) -> list[str]:
    """The indexes on ``table`` that no constraint owns (primary keys and UNIQUE stay)."""
    return [r[0] for r in conn.execute(
        """SELECT i.indexrelid::regclass::text FROM pg_index i
           WHERE i.indrelid = to_regclass(%s) AND NOT EXISTS (
               SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
               AND k.conrelid = i.indrelid)""", (table,))]


def plans_with(lab, sqls: Sequence[str], table: str, *, reference: str | None = None,
               settings: dict[str, str] | None = None) -> list[ex.Plan]:
    """EXPLAIN (ANALYZE, BUFFERS) of each query with only some indexes on ``table``.

    Without ``reference``: only the learner's own indexes (and constraint indexes), or
    only one of them inside ``alone(name)``. With ``reference`` (the body of a CREATE
    INDEX after ``ON table``): only that index, built in the same database. Everything
    happens in one transaction that is rolled back, so the dataset's and the learner's
    indexes are back afterwards.
    """
    only = _ALONE.get()
    own = {only} if only else set(_new_indexes(lab, table))
    with psycopg.connect(lab.url) as conn:
        with conn.transaction(force_rollback=True):
            drop = [n for n in _droppable(conn, table) if reference or n not in own]
            if drop:
                conn.execute("DROP INDEX " + ", ".join(drop))
            if reference:
                conn.execute(f"CREATE INDEX {REFERENCE_PREFIX}{table} ON {table} {reference}")
            return [ex.explain(conn, sql, settings={**NO_SEQSCAN, **(settings or {})})
                    for sql in sqls]


# Inside ``alone(name)``, plans_with keeps that one index of the learner's and no other.
_ALONE: ContextVar[str | None] = ContextVar("indexing_alone", default=None)


@contextmanager
def alone(name: str):
    token = _ALONE.set(name)
    try:
        yield
    finally:
        _ALONE.reset(token)


def judge_each_alone(lab, table: str, answer: set[str], judged: set[str], judge,
                     query: str) -> None:
    """Every index the answer creates must serve the query by itself.

    The plans of a check show only the index the planner picked; a second index next to it
    (another column order, another key "for later") is maintained on every write and
    serves nothing, and whether the planner picks the right one of the two depends on the
    data. So each index of the answer that the plans did not pick is judged again, alone
    (the others dropped in a transaction rolled back), by the same ``judge``. Deterministic:
    no plan choice between the answer's indexes is left to the planner.
    """
    for name in sorted(answer - judged):
        if not lab.scalar("SELECT to_regclass(%s) IS NOT NULL", [name]):
            continue
        info = index_info(lab, name)
        if info["table"] != table:
            raise CheckFailed(
                f"{name} is an index on {info['table']}, but {query} reads {table}: it serves "
                f"nothing here, and every write to {info['table']} maintains it. Create only "
                f"the index the query needs (drop this one: DROP INDEX CONCURRENTLY {name}).",
                f"index: {info['definition']}")
        try:
            with alone(name):
                judge()
        except CheckFailed as exc:
            exc.message = (
                f"{name}, one more index your answer creates next to "
                f"{', '.join(sorted(judged)) or 'the one the plan picked'}, does not serve "
                f"{query} by itself (judged alone, on the same plans): {exc.message} Every "
                f"index is maintained on each write to {table} and takes cache from the "
                "others, and which of two indexes the planner picks depends on the data: "
                f"create only the index the query needs (drop the other: DROP INDEX "
                f"CONCURRENTLY {name}).")
            exc.args = (exc.message + (f"\n  Detail: {exc.detail}" if exc.detail else ""),)
            raise


def index_buffers(plan: ex.Plan) -> int:
    """Buffers the index itself cost: its Bitmap Index Scan nodes' pages (measured with
    plain index scans off, so the heap pages every index must visit are left out)."""
    return sum(n.shared_hit + n.shared_read for n in plan.find("Bitmap Index Scan"))


def _compare_buffers(got: ex.Plan, ref: ex.Plan, what: str, reference: str, *,
                     measure=lambda plan: plan.buffers, shown: ex.Plan | None = None) -> None:
    """Fail when the learner's plan touches far more buffers than the reference index's."""
    mine, theirs = measure(got), measure(ref)
    if mine > BUFFER_FACTOR * theirs and mine - theirs > BUFFER_SLACK:
        raise ex._fail(
            f"For {what} your index makes PostgreSQL touch {mine:,} buffers (8 kB pages); an "
            f"index on {reference} needs {theirs:,} on the same data. An index that serves "
            "the query reads only the entries the query returns: put the equality columns "
            "first, then the range or ORDER BY column, and nothing the query leaves "
            "unconstrained in between.", shown or got, f"reference plan:\n{ref.text()}")


def _literal(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# -- q1: composite index, equality before range -----------------------------------


def country_since(country: str, since: str) -> str:
    """COUNTRY_SINCE for another country and date."""
    return COUNTRY_SINCE.replace("'FR'", _literal(country)).replace("'2026-09-01'",
                                                                     _literal(since))


def _country_cases(lab) -> list[tuple[str, str]]:
    """The notebook's ('FR', '2026-09-01'), the busiest country, a rare one, a seeded one,
    each with a seeded date (some with a time of day and a fraction of a second)."""
    rand = adv.rng()
    with psycopg.connect(lab.url, autocommit=True) as conn:
        counts = conn.execute("SELECT shipping_country, count(*) FROM orders GROUP BY 1 "
                              "ORDER BY 2 DESC, 1").fetchall()
        low, high = conn.execute("SELECT min(created_at)::date, max(created_at)::date "
                                 "FROM orders").fetchone()
    countries = [c for c, _ in counts]
    picks = ["FR", countries[0], countries[-1], rand.choice(countries)]
    cases = [("FR", "2026-09-01")]
    for country in picks[1:]:  # recent dates: few rows, so the index's own work shows
        day = high - dt.timedelta(days=rand.randint(0, min(90, max((high - low).days, 1))))
        stamp = (f"{day} {rand.randint(0, 23):02d}:{rand.randint(0, 59):02d}:"
                 f"{rand.randint(0, 59):02d}.{rand.randint(0, 999_999):06d}"
                 if rand.random() < 0.5 else str(day))
        cases.append((country, stamp))
    return cases


def q1(lab, composite_sql: str) -> str:
    """An index that serves shipping_country = c AND created_at >= d, for any c and d, with
    both in its Index Cond, equality column first, and buffers close to the reference's."""
    require(composite_sql)
    with untouched(lab, ["orders"], why="an index changes no rows"):
        answer = apply_watched(lab, composite_sql)
    if not _new_indexes(lab, "orders"):
        raise _missing_index("orders", "Create an index on orders for the country-and-date query.")
    require_no_redundant(lab, "orders", answer)
    cases = _country_cases(lab)
    sqls = [country_since(c, d) for c, d in cases]
    reference = "(shipping_country, created_at)"
    refs = plans_with(lab, sqls, "orders", reference=reference, settings=BITMAP_ONLY)
    names = _q1_judge(lab, cases, sqls, refs, reference)
    judge_each_alone(lab, "orders", answer, names,
                     lambda: _q1_judge(lab, cases, sqls, refs, reference),
                     "the country-and-date query")
    return (f"{', '.join(sorted(names))}: Index Cond on both columns, equality column first, "
            f"for {len(cases)} countries and dates, buffers close to the reference's")


def _q1_judge(lab, cases: list[tuple[str, str]], sqls: list[str], refs: list[ex.Plan],
              reference: str) -> set[str]:
    """The learner's indexes on orders (or the one of ``alone``) serve every case; returns
    the indexes the plans used."""
    plans = plans_with(lab, sqls, "orders")
    # The index's own pages, without the heap pages any index must visit for these rows.
    bitmaps = plans_with(lab, sqls, "orders", settings=BITMAP_ONLY)
    names = set()
    own = [_ALONE.get()] if _ALONE.get() else _new_indexes(lab, "orders")
    partial = [i for i in (index_info(lab, n) for n in own) if i["predicate"]]
    for (country, since), plan, bitmap, ref in zip(cases, plans, bitmaps, refs):
        what = f"shipping_country = '{country}' AND created_at >= '{since}'"
        scans = [n for n in plan.index_scans("orders") if n.index != "orders_pkey"]
        node = scans[0] if scans else None
        info = index_info(lab, node.index) if node else None
        cond = (node.index_cond or "") if node else ""
        if (info and info["predicate"]) or (not node and partial):
            shown = info if info and info["predicate"] else partial[0]
            raise ex._fail(f"{shown['name']} is a partial index (WHERE {shown['predicate']}): "
                           "it serves only the rows it names, and the screen asks for every "
                           f"country and date (here {what}). Index (shipping_country, "
                           "created_at) over all rows.", plan, f"index: {shown['definition']}")
        if not node:
            raise ex._fail(f"Even with enable_seqscan off, the planner does not use your index "
                           f"for {what}. Index the columns the WHERE clause narrows on, for "
                           "every country and date.", plan)
        if "shipping_country" not in cond or "created_at" not in cond:
            missing = "shipping_country" if "shipping_country" not in cond else "created_at"
            raise ex._fail(f"{node.index} serves only part of the WHERE clause ({what}): "
                           f"{missing} is not in its Index Cond, so every row matching the "
                           f"other condition is fetched and filtered "
                           f"({plan.rows_removed('orders'):,.0f} rows removed). Index both "
                           "columns.", plan, f"index: {info['definition']}")
        if info["key"][0] != "shipping_country":
            raise ex._fail(f"{node.index} starts with {info['key'][0]}, not the equality "
                           "column: PostgreSQL walks every entry in the range, for all "
                           f"countries, and checks the country on each ({plan.buffers:,} "
                           "buffers). Put the equality column first, (shipping_country, "
                           "created_at): then the matching entries are contiguous.", plan,
                           f"index: {info['definition']}")
        _compare_buffers(bitmap, ref, what, reference, measure=index_buffers)
        names.add(node.index)
    return names


# -- q2: leftmost prefix -------------------------------------------------------------


def leftmost_truth(lab) -> dict[str, str]:
    """For each query: how the (customer_id, status, created_at) index serves it.

    Measured, not assumed: in a transaction that is rolled back, the dataset's
    single-column indexes on orders are dropped so that only the composite one
    is left, and each plan is taken with enable_seqscan off.
    """
    verdicts: dict[str, str] = {}
    with psycopg.connect(lab.url) as conn:
        with conn.transaction(force_rollback=True):
            others = [r[0] for r in conn.execute(
                """SELECT i.indexrelid::regclass::text FROM pg_index i
                   WHERE i.indrelid = 'orders'::regclass AND NOT EXISTS (
                       SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                       AND k.conrelid = i.indrelid)""")
                if r[0] != LEFTMOST_INDEX]
            conn.execute("DROP INDEX " + ", ".join(others))
            for key, sql in LEFTMOST_QUERIES.items():
                plan = ex.explain(conn, sql, settings=NO_SEQSCAN, analyze=False)
                nodes = plan.index_scans("orders", LEFTMOST_INDEX)
                if nodes and "customer_id" in ex.index_cond_columns(nodes[0]):
                    verdicts[key] = "uses it: Index Cond " + (nodes[0].index_cond or "")
                elif nodes:
                    verdicts[key] = ("reads the WHOLE index: Index Cond "
                                     f"{nodes[0].index_cond or '(none)'} has no customer_id")
                else:
                    verdicts[key] = "cannot use it: " + ", ".join(n.label for n in plan.scans("orders"))
    return verdicts


def _letters(usable: Any) -> set[str]:
    """The query letters in ``usable``: a set (list, tuple) of letters, or a string that
    names them as words ("A, B and F"). The words around them are not letters: the A and
    D of "AND" are not queries A and D."""
    if isinstance(usable, str):
        words = re.findall(r"[A-Za-z]+", usable)
        letters = [w for w in words if len(w) == 1]
        glued = [w for w in words if len(w) > 1 and re.fullmatch(r"[A-Fa-f]+", w)]
        if glued:
            raise CheckFailed(f"usable = {usable!r}: is {glued[0]!r} one word or the letters "
                              f"{', '.join(glued[0].upper())}? Write a set of letters, such as "
                              '{"A", "B"}.')
    elif isinstance(usable, (set, frozenset, list, tuple)):
        letters = [str(u).strip() for u in usable]
    else:
        raise CheckFailed(f"usable should be a set of query letters, such as {{'A', 'B'}}, "
                          f"not {type(usable).__name__}.")
    unknown = sorted({u for u in letters if u.upper() not in LEFTMOST_QUERIES})
    if unknown:
        raise CheckFailed(f"usable names {', '.join(map(repr, unknown))}, which is not one of "
                          f"the queries {', '.join(LEFTMOST_QUERIES)}. Write a set of their "
                          'letters, such as {"A", "B"}.')
    return {u.upper() for u in letters}


def q2(lab, usable: Any) -> str:
    """The set of query letters whose Index Cond starts on the index's leading column."""
    require(usable)
    usable = _letters(usable)
    if lab.scalar("SELECT to_regclass(%s) IS NULL", [LEFTMOST_INDEX]):
        raise CheckFailed(f"The index {LEFTMOST_INDEX} is not there (a reset since, or dropped), "
                          "so there is nothing to measure your letters against. Run the "
                          "notebook's cell that creates it, then this check.")
    truth = leftmost_truth(lab)
    want = {k for k, v in truth.items() if v.startswith("uses it")}
    if usable != want:
        wrong = sorted(usable - want)
        missed = sorted(want - usable)
        lines = [f"{k}: {LEFTMOST_QUERIES[k]} -> {truth[k]}" for k in wrong + missed]
        message = []
        if wrong:
            message.append(f"{', '.join(wrong)} cannot use (customer_id, status, created_at) "
                           "efficiently: without customer_id = ... there is no leftmost prefix "
                           "to descend the B-tree by")
        if missed:
            message.append(f"{', '.join(missed)} can: customer_id is the leading column, and "
                           "the later columns need not all be constrained")
        raise CheckFailed("; ".join(message) + ".", "\n".join(lines))
    return f"queries {', '.join(sorted(want))} descend the index by its leading column"


# -- q3: covering index, Index Only Scan, VACUUM -------------------------------------


def busy_customer(lab) -> int:
    """The ordinary (not load-test) customer with the most orders: a stable choice."""
    return lab.scalar("""SELECT o.customer_id FROM orders o JOIN customers c ON c.id = o.customer_id
                         WHERE NOT c.is_load_test AND o.created_at < '2026-11-01'
                         GROUP BY o.customer_id ORDER BY count(*) DESC, o.customer_id LIMIT 1""")


def _history_customers(lab) -> list[int]:
    """The notebook's busy customer, the most skewed one (load tests included), one of the
    customers the day of traffic added orders for, and two ordinary ones (seeded)."""
    rand = adv.rng()
    with psycopg.connect(lab.url, autocommit=True) as conn:
        counts = conn.execute("SELECT customer_id, count(*) FROM orders GROUP BY 1 "
                              "ORDER BY 2 DESC, 1").fetchall()
        traffic = [r[0] for r in conn.execute(
            "SELECT DISTINCT customer_id FROM orders WHERE created_at >= '2026-11-01' "
            "ORDER BY 1")]
    chosen = [busy_customer(lab), counts[0][0]]
    if traffic:
        chosen.append(rand.choice(traffic))
    ordinary = [c for c, n in counts if 2 <= n <= 20] or [c for c, _ in counts]
    chosen += rand.sample(ordinary, min(2, len(ordinary)))
    return list(dict.fromkeys(c for c in chosen if c is not None))


# The columns the history page reads (SELECT list, WHERE, ORDER BY).
HISTORY_READS = ("customer_id", "created_at", "status", "total")
# How many more times q3 runs an answer whose VACUUM left pages not all-visible.
VACUUM_RETRIES = 2


def _vacuum_count(lab) -> int:
    """Manual VACUUMs of orders so far (pg_stat_user_tables, updated as each one ends)."""
    return lab.scalar("SELECT vacuum_count FROM pg_stat_user_tables "
                      "WHERE relid = 'orders'::regclass") or 0


def q3(lab, covering_sql: str | Sequence[str]) -> str:
    """The history page, for several customers (busy, skewed, ordinary), runs as an Index
    Only Scan with Heap Fetches: 0, no Sort, and buffers close to the reference index's."""
    require(covering_sql)
    vacuumed = _vacuum_count(lab)
    with untouched(lab, ["orders"], why="an index and VACUUM change no rows"):
        answer = apply_watched(lab, covering_sql)
    vacuumed = _vacuum_count(lab) > vacuumed
    require_no_redundant(lab, "orders", answer)
    customers = _history_customers(lab)
    sqls = [HISTORY_PAGE.format(customer=c) for c in customers]
    plans = plans_with(lab, sqls, "orders")
    for _ in range(VACUUM_RETRIES):
        if not vacuumed or not any(n.heap_fetches for p in plans
                                   for n in p.find("Index Only Scan", "orders")):
            break
        # Your VACUUM ran, yet some page is not all-visible. VACUUM leaves a page unmarked
        # when another process holds a pin on it at that instant (the checkpointer or the
        # background writer writing it out; it cannot take the cleanup lock, so it skips
        # the page's pruning and its visibility-map bit). The task asks for nothing the
        # answer did not do: run it again, as a re-run of its cell would.
        with untouched(lab, ["orders"], why="an index and VACUUM change no rows"):
            apply_watched(lab, covering_sql)
        plans = plans_with(lab, sqls, "orders")
    reference = "(customer_id, created_at) INCLUDE (status, total)"
    refs = plans_with(lab, sqls, "orders", reference=reference)
    names = _q3_judge(lab, customers, sqls, refs, vacuumed, reference, plans)
    judge_each_alone(lab, "orders", answer, names,
                     lambda: _q3_judge(lab, customers, sqls, refs, vacuumed, reference),
                     "the history page")
    return (f"Index Only Scan using {', '.join(sorted(names))}, Heap Fetches: 0, no Sort, for "
            f"{len(customers)} customers (busy, skewed and ordinary)")


def _q3_judge(lab, customers: list[int], sqls: list[str], refs: list[ex.Plan], vacuumed: bool,
              reference: str, plans: list[ex.Plan] | None = None) -> set[str]:
    """The history page of each customer is a clean Index Only Scan on the learner's indexes
    (or the one of ``alone``); returns the indexes the plans used."""
    if plans is None:
        plans = plans_with(lab, sqls, "orders")
    names = set()
    for customer, plan, ref in zip(customers, plans, refs):
        what = f"customer {customer}"
        only = plan.find("Index Only Scan", "orders")
        if not only:
            used = plan.index_scans("orders")
            name = used[0].index if used else None
            extra = ""
            if name:
                info = index_info(lab, name)
                missing = [c for c in ("customer_id", "created_at", "status", "total")
                           if c not in info["key"] + info["include"]]
                extra = (f" {name} lacks {', '.join(missing)}, so each row is fetched from "
                         "the table." if missing else "")
            raise ex._fail(f"For {what} the history page is not an Index Only Scan." + extra
                           + " A covering index keys on (customer_id, created_at) and carries "
                           "status and total in INCLUDE (...), for every customer (a partial "
                           "index on one customer serves no other).", plan)
        node = only[0]
        if node.heap_fetches and vacuumed:
            raise ex._fail(f"Index Only Scan, but Heap Fetches: {node.heap_fetches} (for "
                           f"{what}), though your statements ran VACUUM on orders "
                           f"({1 + VACUUM_RETRIES} times): it could not mark those pages all-visible. VACUUM marks a "
                           "page only when every row on it is visible to every transaction "
                           "still open in this database: look in pg_stat_activity for a "
                           "session 'idle in transaction' (a notebook connection left open) "
                           "and end it, then run the cell again.", plan)
        if node.heap_fetches:
            raise ex._fail(f"Index Only Scan, but Heap Fetches: {node.heap_fetches} (for "
                           f"{what}). The pages changed since the last VACUUM are not marked "
                           "all-visible in the visibility map, so PostgreSQL must visit the "
                           "table to check each row. Run VACUUM orders after creating the "
                           "index.", plan)
        if plan.sorts:
            raise ex._fail(f"The scan is index-only but the plan still sorts (for {what}): key "
                           "the index on (customer_id, created_at) so rows come out newest "
                           "first (a B-tree reads backwards as easily as forwards).", plan)
        if not ref.find("Index Only Scan", "orders") or ref.find("Index Only Scan", "orders")[0].heap_fetches:
            raise RuntimeError("the reference covering index gave no clean Index Only Scan")
        _compare_buffers(plan, ref, f"the history page of {what}", reference)
        info = index_info(lab, node.index)
        unread = [c for c in info["include"] if c not in HISTORY_READS]
        # A key column the page never reads costs the same (the primary key excepted: a
        # tie-break that makes entries unique, and never updated)
        unread_key = [c for c in info["key"] if c not in HISTORY_READS and c != "id"]
        if unread or unread_key:
            where = (f"{', '.join(unread)} in INCLUDE" if unread else
                     f"{', '.join(unread_key)} as a key column")
            raise ex._fail(
                f"{node.index} carries {where}, which the history page "
                "never reads: each such column is stored again in every entry, so the index "
                "grows towards the size of the table, every INSERT writes it, and an UPDATE of "
                "that column can no longer be HOT. Key the index on (customer_id, created_at) "
                "and INCLUDE exactly the columns the query reads beyond the key: status and "
                "total.", plan, f"index: {info['definition']}")
        names.add(node.index)
    return names


# -- q4: partial index for the pending queue ----------------------------------------


def _require_pending_only(lab, info: dict[str, Any], plan: ex.Plan, total: int) -> None:
    """The index holds pending orders and nothing else: what its predicate admits, measured
    on the table (an index without one admits every row)."""
    if not info["predicate"]:
        raise ex._fail(f"{info['name']} indexes all {total:,} orders, though only pending ones "
                       "are ever looked up: status has six values, and the index's size and "
                       "write cost are paid for every row. Add WHERE status = 'pending' to make "
                       "it a partial index.", plan, f"index: {info['definition']}")
    with psycopg.connect(lab.url, autocommit=True) as conn:
        admitted, others = conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE status <> 'pending') FROM orders "
            f"WHERE {info['predicate']}").fetchone()
    if others:
        raise ex._fail(f"{info['name']} is partial, but WHERE {info['predicate']} also admits "
                       f"{others:,} orders that are not pending: the queue never looks them "
                       "up. Make the predicate exactly status = 'pending'.", plan)


def q4(lab, partial_sql: str) -> str:
    """A partial index WHERE status = 'pending' serves the fulfilment queue, and every index
    the answer creates holds pending orders only."""
    require(partial_sql)
    with untouched(lab, ["orders"], why="an index changes no rows"):
        answer = apply_watched(lab, partial_sql)
    require_no_redundant(lab, "orders", answer)
    plan, = plans_with(lab, [PENDING_QUEUE], "orders")
    used = [n for n in plan.index_scans("orders") if n.index != "orders_pkey"]
    if not used:
        raise ex._fail("The pending queue does not use a new index on orders.", plan)
    total = lab.scalar("SELECT count(*) FROM orders")
    # Every index of the answer, not only the one the plan picked: each is maintained on
    # every write to orders.
    for name in [used[0].index] + sorted(answer - {used[0].index}):
        if lab.scalar("SELECT to_regclass(%s) IS NOT NULL", [name]) and \
                index_info(lab, name)["table"] == "orders":
            _require_pending_only(lab, index_info(lab, name), plan, total)
    info = index_info(lab, used[0].index)
    reference = "(created_at) WHERE status = 'pending'"
    ref, = plans_with(lab, [PENDING_QUEUE], "orders", reference=reference)
    names = _q4_judge(lab, ref, reference, plan)
    judge_each_alone(lab, "orders", answer, names, lambda: _q4_judge(lab, ref, reference),
                     "the pending queue")
    return (f"{info['name']} WHERE {info['predicate']}: {info['bytes'] // 1024:,} kB, serves the "
            "queue in created_at order")


def _q4_judge(lab, ref: ex.Plan, reference: str, plan: ex.Plan | None = None) -> set[str]:
    """The queue uses the learner's index (or the one of ``alone``), with no Sort and
    buffers close to the reference's; returns the index used."""
    if plan is None:
        plan, = plans_with(lab, [PENDING_QUEUE], "orders")
    used = [n for n in plan.index_scans("orders") if n.index != "orders_pkey"]
    if not used:
        raise ex._fail("The pending queue does not use the index: it cannot serve WHERE "
                       "status = 'pending' ORDER BY created_at.", plan)
    if plan.sorts:
        raise ex._fail("The queue still sorts: key the partial index on created_at.", plan)
    _compare_buffers(plan, ref, "the pending queue", reference)
    return {used[0].index}


# -- q5: expression index on lower(email), for active customers ----------------------


def some_email(lab) -> str:
    return lab.scalar("SELECT upper(email) FROM customers WHERE deleted_at IS NULL ORDER BY id "
                      "LIMIT 1 OFFSET 100")


def _login_emails(lab) -> list[str]:
    """The notebook's address, seeded active ones in case variants (some with `_`), and a
    soft-deleted customer's address (the lookup must find nothing, through the index)."""
    rand = adv.rng()
    with psycopg.connect(lab.url, autocommit=True) as conn:
        active = [r[0] for r in conn.execute(
            "SELECT email FROM customers WHERE deleted_at IS NULL "
            "ORDER BY hashint8(id + %s) LIMIT 20", [rand.randint(0, 2**31)])]
        gone = [r[0] for r in conn.execute(
            "SELECT email FROM customers WHERE deleted_at IS NOT NULL ORDER BY id LIMIT 20")]
    emails = [some_email(lab)]
    for email in rand.sample(active, min(2, len(active))):
        emails.append(rand.choice(adv.case_variants(email, rand=rand)[1:]))
    if gone:
        emails.append(rand.choice(gone))
    return [e for e in emails if e]


def _require_active_only(lab, info: dict[str, Any], plan: ex.Plan) -> None:
    """The index holds every active customer and no soft-deleted one: what its predicate
    admits, measured on the table (an index without one admits every row)."""
    predicate = info["predicate"] or "true"
    with psycopg.connect(lab.url, autocommit=True) as conn:
        try:
            deleted, active, all_active = conn.execute(
                f"""SELECT count(*) FILTER (WHERE deleted_at IS NOT NULL AND ({predicate})),
                           count(*) FILTER (WHERE deleted_at IS NULL AND ({predicate})),
                           count(*) FILTER (WHERE deleted_at IS NULL) FROM customers""").fetchone()
        except psycopg.Error as exc:
            raise CheckFailed(f"The check could not evaluate the predicate of {info['name']} "
                              f"(WHERE {predicate}) on customers: "
                              f"{exc.diag.message_primary or exc}. Use a plain condition on "
                              "customers' columns: WHERE deleted_at IS NULL.") from None
    if deleted:
        where = (f"its WHERE {info['predicate']} admits them" if info["predicate"]
                 else "it has no WHERE clause")
        raise ex._fail(f"{info['name']} also holds the {deleted:,} soft-deleted customers "
                       f"({where}): login never looks them up, yet every closed account stays in "
                       "the index for good, is maintained on every write, and makes it grow "
                       "with every account ever closed, not with the active ones. "
                       "A deleted_at column in the key does not help: the entries are still "
                       "there. Make it partial: WHERE deleted_at IS NULL.", plan,
                       f"index: {info['definition']}")
    if active < all_active:
        raise ex._fail(f"{info['name']} (WHERE {info['predicate']}) leaves out "
                       f"{all_active - active:,} of the {all_active:,} active customers: their "
                       "logins cannot use it. The predicate should be exactly deleted_at IS NULL.",
                       plan, f"index: {info['definition']}")


def q5(lab, login_sql: str) -> str:
    """lower(email) = lower(...) AND deleted_at IS NULL is an Index Cond on lower(email), with
    no deleted_at Filter, for several addresses, with buffers close to the reference's."""
    require(login_sql)
    with untouched(lab, ["customers"], why="an index changes no rows"):
        answer = apply_watched(lab, login_sql)
    require_no_redundant(lab, "customers", answer)
    emails = _login_emails(lab)
    sqls = [LOGIN_LOOKUP.replace("'{email}'", _literal(e)) for e in emails]
    reference = "(lower(email)) WHERE deleted_at IS NULL"
    refs = plans_with(lab, sqls, "customers", reference=reference)
    info, plan = _q5_judge(lab, emails, sqls, refs, reference)
    # Every index of the answer, not only the one the plans picked: each is maintained on
    # every sign-up and every deletion.
    for name in sorted(answer - {info["name"]}):
        if lab.scalar("SELECT to_regclass(%s) IS NOT NULL", [name]) and \
                index_info(lab, name)["table"] == "customers":
            _require_active_only(lab, index_info(lab, name), plan)
    judge_each_alone(lab, "customers", answer, {info["name"]},
                     lambda: _q5_judge(lab, emails, sqls, refs, reference), "the login lookup")
    return (f"{info['name']}: Index Cond on lower(email), only active customers indexed "
            f"({len(emails)} addresses tried)")


def _q5_judge(lab, emails: list[str], sqls: list[str], refs: list[ex.Plan],
              reference: str) -> tuple[dict[str, Any], ex.Plan]:
    """Each address is found through lower(email) on the learner's indexes (or the one of
    ``alone``), active customers only; returns the index used and its last plan."""
    plans = plans_with(lab, sqls, "customers")
    for email, plan, ref in zip(emails, plans, refs):
        used = [n for n in plan.index_scans("customers") if "lower(email)" in (n.index_cond or "")]
        if not used:
            raise ex._fail(f"For the address {email!r}, no index on customers has lower(email) "
                           "in its Index Cond: an index on email stores the address as typed, "
                           "and lower(email) is a different value. Index the expression: "
                           "(lower(email)), for every address.", plan)
        info = index_info(lab, used[0].index)
        # A Bitmap Index Scan's rows are filtered by the Bitmap Heap Scan above it: look at
        # every scan on customers, not only the index node.
        filtered = [n for n in plan.scans("customers") if "deleted_at" in (n.filter or "")]
        if filtered:
            raise ex._fail(f"{info['name']} finds the address, then filters deleted_at row by "
                           "row after visiting the table. Make it partial: WHERE deleted_at IS "
                           "NULL.", plan)
        _require_active_only(lab, info, plan)
        _compare_buffers(plan, ref, f"the address {email!r}", reference)
    return info, plan


# -- q6: GIN on jsonb ------------------------------------------------------------------


def _json_filters(lab) -> list[str]:
    """The notebook's filter and seeded others (another colour, another key, two keys)."""
    rand = adv.rng()
    with psycopg.connect(lab.url, autocommit=True) as conn:
        pairs = conn.execute(
            "SELECT DISTINCT k, v FROM products, jsonb_each(attributes) e(k, v) "
            "WHERE jsonb_typeof(v) IN ('string', 'number', 'boolean') ORDER BY 1, 2").fetchall()
    docs = ['{"colour": "Tan"}']
    if pairs:
        colours = [v for k, v in pairs if k == "colour"] or [pairs[0][1]]
        docs.append(json.dumps({"colour": rand.choice(colours)}))
        k, v = rand.choice(pairs)
        docs.append(json.dumps({k: v}))
        (k1, v1), (k2, v2) = rand.sample(pairs, 2) if len(pairs) > 1 else (pairs[0], pairs[0])
        docs.append(json.dumps({k1: v1, k2: v2}))
    return list(dict.fromkeys(docs))


def q6(lab, gin_sql: str) -> str:
    """attributes @> '...' is answered by a GIN index, for several documents."""
    require(gin_sql)
    with untouched(lab, ["products"], why="an index changes no rows"):
        answer = apply_watched(lab, gin_sql)
    require_no_redundant(lab, "products", answer)
    docs = _json_filters(lab)
    sqls = [JSON_FILTER.replace("""'{"colour": "Tan"}'""", _literal(d)) for d in docs]
    reference = "USING gin (attributes jsonb_path_ops)"
    refs = plans_with(lab, sqls, "products", reference=reference)
    used = _q6_judge(lab, docs, sqls, refs, reference)
    judge_each_alone(lab, "products", answer, {used.index},
                     lambda: _q6_judge(lab, docs, sqls, refs, reference), "the attribute filter")
    info = index_info(lab, used.index)
    return (f"{info['name']} ({info['method']}) answers @> with a {used.node_type} "
            f"({len(docs)} documents tried)")


def _q6_judge(lab, docs: list[str], sqls: list[str], refs: list[ex.Plan], reference: str):
    """Every document is answered through @> by the learner's indexes on products (or the
    one of ``alone``); returns the index node of the last plan."""
    plans = plans_with(lab, sqls, "products")
    own = [_ALONE.get()] if _ALONE.get() else _new_indexes(lab, "products")
    for doc, plan, ref in zip(docs, plans, refs):
        used = [n for n in plan.index_scans("products") if "@>" in (n.index_cond or "")]
        if not used:
            partial = [i for i in (index_info(lab, n) for n in own)
                       if i["predicate"] and i["method"] == "gin"]
            if partial:
                raise ex._fail(
                    f"No index answers attributes @> '{doc}': {partial[0]['name']} is a partial "
                    f"index (WHERE {partial[0]['predicate']}), and PostgreSQL uses one only when "
                    "it can prove from the query's own WHERE that every row it wants satisfies "
                    "the predicate, which it cannot prove from a containment (@>). Index every "
                    "product: USING gin (attributes jsonb_path_ops), without WHERE.", plan,
                    f"index: {partial[0]['definition']}")
            raise ex._fail(f"No index answers attributes @> '{doc}' (it is not in any Index "
                           "Cond). A B-tree on a jsonb column only knows equality and ordering "
                           "of whole documents; containment needs GIN: USING gin (attributes), "
                           "for every document (not a partial index on one).", plan)
        _compare_buffers(plan, ref, f"attributes @> '{doc}'", reference)
    return used[0]


# -- q7: sargable rewrites --------------------------------------------------------------

BY_DAY = dt.date(2026, 3, 2)
BY_DAY_SLOW = "SELECT id, total FROM orders WHERE date(created_at) = '2026-03-02'"
BY_CUSTOMER = 42
BY_CUSTOMER_SLOW = "SELECT id, total FROM orders WHERE customer_id = 42.0"


def _day_instants(zone: str) -> list[dt.datetime]:
    """Every instant that separates one day from the next, for the day of BY_DAY_SLOW: in
    the session's zone (where date() draws the line) and in UTC (where a hard-coded
    '+00' draws it): the first instant, the last whole second, 23:59:59.5, the last
    microsecond, the next midnight, and those around each midnight."""
    out: list[dt.datetime] = []
    for tz in (ZoneInfo(zone), dt.timezone.utc):
        start = dt.datetime.combine(BY_DAY, dt.time(0), tz)
        nxt = dt.datetime.combine(BY_DAY + dt.timedelta(days=1), dt.time(0), tz)
        out += adv.day_edges(BY_DAY, tz) + adv.instants_around(start) + adv.instants_around(nxt)
    return sorted(set(out))


# Sessions in which 2 March 2026 is not 24 hours long (POSIX TimeZone specifications, which
# SET TimeZone accepts): a day is a calendar day in the session's zone, so a rewrite that adds
# interval '24 hours' (or 86400 seconds) to its midnight draws the line an hour off.
DST_ZONES = {
    "<+01>-1<+02>,M3.1.1/2,M10.5.0/3": "23 hours: at 02:00 the clocks jump to 03:00",
    "<-03>3<-02>,M10.1.0/0,M3.1.1/3": "25 hours: at 03:00 the clocks go back to 02:00",
}


def _session_day_instants(conn: psycopg.Connection) -> list[dt.datetime]:
    """Around the session's own midnights of BY_DAY and the next day, and 24 hours after
    the first (where '+ interval 24 hours' ends the day): asked of PostgreSQL, which knows
    the session's zone (Python's zoneinfo does not read POSIX specifications)."""
    epochs = conn.execute(
        """SELECT extract(epoch FROM %(d)s::date::timestamptz),
                  extract(epoch FROM (%(d)s::date + 1)::timestamptz),
                  extract(epoch FROM %(d)s::date::timestamptz + interval '24 hours')""",
        {"d": BY_DAY}).fetchone()
    start, nxt, hours24 = (dt.datetime.fromtimestamp(float(e), dt.timezone.utc) for e in epochs)
    return (adv.instants_around(start) + adv.instants_around(nxt)
            + adv.instants_around(hours24) + [nxt - dt.timedelta(milliseconds=500)])


class _NoZoneWarning(logging.Filter):
    """psycopg warns once that it cannot map a POSIX TimeZone to a Python zone (it then
    returns timestamptz values in UTC, the same instants): not the learner's business."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "unknown PostgreSQL timezone" not in record.getMessage()


def _rows_on_planted(conn: psycopg.Connection, sql: str, what: str):
    with conn.cursor() as cur:
        try:
            cur.execute("SAVEPOINT attempt")
            cur.execute(sql)
        except psycopg.Error as exc:
            if conn.info.transaction_status == pq.TransactionStatus.INERROR:
                cur.execute("ROLLBACK TO SAVEPOINT attempt")
            raise CheckFailed(f"PostgreSQL rejected {what}: {exc.diag.message_primary or exc}",
                              f"SQLSTATE {exc.sqlstate}") from None
        if conn.info.transaction_status != pq.TransactionStatus.INTRANS:
            raise CheckFailed(f"{what} ended the transaction the check runs it in (a COMMIT or "
                              "ROLLBACK inside the SQL). Hand in one SELECT, nothing else.")
        if cur.description is None:
            raise CheckFailed(f"{what} returned no result set; it should be one SELECT.")
        return [c.name for c in cur.description], cur.fetchall()


# The most orders planted on the busy day (in a transaction that is rolled back).
BUSY_DAY_MAX = 12_000


def _q7_rows(lab, by_day_sql: str, by_customer_sql: str, rand, zone: str,
             others: list[int]) -> None:
    """Both rewrites return the originals' rows on orders planted at every edge of the day,
    in sessions whose TimeZone is ``zone``, UTC, and zones where the day is 23 and 25 hours."""
    from ..course.checking import compare_results

    with untouched(lab, ["orders"], why="the rewrites are queries"):
        for session_zone in (zone, "UTC", *DST_ZONES):
            with psycopg.connect(lab.url) as conn:
                conn.execute("SELECT set_config('TimeZone', %s, false)", [session_zone])
                conn.commit()
                instants = sorted(set(_day_instants(zone) + _session_day_instants(conn)))
                conn.rollback()
                try:
                    for at in instants:
                        # Each instant twice: for customer 42 and for someone else.
                        for customer in (BY_CUSTOMER, rand.choice(others)):
                            conn.execute(
                                "INSERT INTO orders (customer_id, status, created_at, total, "
                                "shipping_country) VALUES (%s, 'paid', %s, %s, 'US')",
                                [customer, at, round(rand.uniform(5, 500), 2)])
                    if session_zone == zone:
                        # A busy day: more orders than any cap a report might put on itself.
                        conn.execute(
                            """INSERT INTO orders (customer_id, status, created_at, total,
                                                   shipping_country)
                               SELECT %s, 'paid', %s::date::timestamptz
                                          + n * interval '1 second' * %s, 5 + n %% 97, 'US'
                               FROM generate_series(1, %s) n""",
                            [rand.choice(others), BY_DAY, 86_000 / BUSY_DAY_MAX,
                             rand.randint(BUSY_DAY_MAX // 2 + 1, BUSY_DAY_MAX)])
                    conn.execute("SET LOCAL transaction_read_only = on")
                    for sql, slow, what in (
                            (by_day_sql, BY_DAY_SLOW, "your by-day query"),
                            (by_customer_sql, BY_CUSTOMER_SLOW, "your by-customer query")):
                        got_cols, got = _rows_on_planted(conn, sql, what)
                        want_cols, want = _rows_on_planted(conn, slow, "the original query")
                        try:
                            compare_results(got_cols, got, want_cols, want, what=what)
                        except CheckFailed as exc:
                            long = DST_ZONES.get(session_zone)
                            shown = (f"'{session_zone}' (a POSIX zone in which 2 March 2026 "
                                     f"has {long})" if long else session_zone)
                            exc.message = (
                                f"On a session whose TimeZone is {shown}, with orders "
                                "placed at every edge of the day (the last whole second, "
                                "23:59:59.5, the last microsecond, the next midnight), "
                                f"{what} does not return the original's rows: "
                                + exc.message + " A day is created_at >= the day AND "
                                "created_at < the next day (half-open: no BETWEEN, no "
                                "23:59:59), with dates in the session's zone, as date() uses; "
                                "the next day is date '2026-03-02' + 1 (or + interval '1 "
                                "day'), never + interval '24 hours': on the days the clocks "
                                "change, a day has 23 or 25 hours.")
                            exc.args = (exc.message + (f"\n  Detail: {exc.detail}"
                                                       if exc.detail else ""),)
                            raise
                finally:
                    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                        conn.rollback()


def q7(lab, by_day_sql: str, by_customer_sql: str) -> str:
    """Both rewrites return the original's rows (on planted rows at every edge of the day,
    in a non-UTC session, in UTC, and where the day has 23 or 25 hours) and put the
    column, bare, in an Index Cond."""
    require(by_day_sql, by_customer_sql)
    rand = adv.rng()
    zone = adv.non_utc_zone(rand=rand)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        others = [r[0] for r in conn.execute(
            "SELECT id FROM customers ORDER BY hashint8(id + %s) LIMIT 5",
            [rand.randint(0, 2**31)])]
    for sql, what in ((by_day_sql, "your by-day query"),
                      (by_customer_sql, "your by-customer query")):
        try:
            plan = ex.explain(lab, sql, settings=NO_SEQSCAN, analyze=False)
        except psycopg.Error:
            continue  # the rows below report PostgreSQL's error in its own words
        if plan.find("Limit"):
            raise ex._fail(f"{what} stops after a fixed number of rows (a LIMIT or FETCH "
                           "FIRST): the original returns every matching order, and on a busy "
                           "day (about 27,000 orders at production scale) a capped report "
                           "silently drops the rest. A rewrite changes how the rows are found, "
                           "never which rows come back: no LIMIT.", plan)
    quiet = _NoZoneWarning()
    logging.getLogger("psycopg").addFilter(quiet)
    try:
        _q7_rows(lab, by_day_sql, by_customer_sql, rand, zone, others)
    finally:
        logging.getLogger("psycopg").removeFilter(quiet)
    for sql, column, what in ((by_day_sql, "created_at", "your by-day query"),
                              (by_customer_sql, "customer_id", "your by-customer query")):
        plan = ex.explain(lab, sql, settings=NO_SEQSCAN)
        conds = [n for n in plan.index_scans("orders") if column in ex.index_cond_columns(n)]
        if not conds:
            raise ex._fail(f"{what} returns the right rows but no index scan has {column} in its "
                           f"Index Cond: the column is still wrapped in a function or cast. "
                           f"Compare the bare column with a value of its own type.", plan)
        # ... and the index descends by it: its first column, not one it walks every entry for
        leading = [n for n in conds if index_info(lab, n.index)["key"][:1] == [column]]
        if not leading:
            raise ex._fail(f"{what} has {column} in the Index Cond of {conds[0].index}, but "
                           f"that index does not start with {column}: PostgreSQL walks all of "
                           f"it and checks {column} on each entry. Compare the bare column so "
                           f"that an index on ({column}) can serve it.", plan)
    return ("both queries return the original's rows at every edge of the day (in "
            f"{zone}, UTC, and zones where it has 23 and 25 hours) and compare the bare column: Index Cond on created_at and on "
            "customer_id")


# -- q8: what every index costs on writes ------------------------------------------


def measure_write_cost(lab, ladder: Sequence[str], rows: int = WRITE_COST_ROWS,
                       runs: int = 3) -> list[dict[str, float]]:
    """Insert ``rows`` orders into ``orders_copy`` with 0, 1, ... len(ladder) indexes.

    The same rows each time (a fixed sample), into an emptied table, best of
    ``runs``: the difference between two lines is what the added index costs.
    """
    results = []
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS orders_copy")
        conn.execute("CREATE TABLE orders_copy (LIKE orders INCLUDING DEFAULTS)")
        conn.execute("CREATE TEMP TABLE write_sample AS SELECT * FROM orders "
                     "ORDER BY hashint8(id) LIMIT %s" % int(rows))
        for k in range(len(ladder) + 1):
            if k:
                conn.execute(ladder[k - 1])
            best = float("inf")
            for _ in range(runs):
                conn.execute("TRUNCATE orders_copy")
                start = time.perf_counter()
                conn.execute("INSERT INTO orders_copy SELECT * FROM write_sample")
                best = min(best, time.perf_counter() - start)
            results.append({"indexes": k, "seconds": best, "rows_per_second": rows / best})
    return results


def q8(lab, ladder: Sequence[str]) -> str:
    """Five different indexes on orders_copy; inserting with all five is ≥1.5× slower than with none."""
    require(ladder)
    if isinstance(ladder, str) or len(ladder) != 5:
        raise CheckFailed("index_ladder should be a list of five CREATE INDEX statements on "
                          "orders_copy.")
    results = measure_write_cost(lab, ladder, runs=3)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        # What each index is searched by: its key columns or expressions, as the catalog has
        # them (without direction, NULLS order, operator class, collation, access method or
        # storage options), and its predicate.
        found = conn.execute(
            """SELECT pg_get_indexdef(i.indexrelid),
                      array(SELECT pg_get_indexdef(i.indexrelid, k, true)
                            FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
                      pg_get_expr(i.indpred, i.indrelid)
               FROM pg_index i WHERE i.indrelid = 'orders_copy'::regclass
               ORDER BY i.indexrelid""").fetchall()
    defs = [r[0] for r in found]
    if len(defs) != 5:
        raise CheckFailed(f"orders_copy ended up with {len(defs)} indexes, not five: each "
                          "statement should create one index on orders_copy.", "\n".join(defs))
    by_key: dict[tuple, list[str]] = {}
    for definition, key, predicate in found:
        by_key.setdefault((tuple(key), predicate), []).append(definition)
    same = [(k, d) for k, d in by_key.items() if len(d) > 1]
    if same:
        (key, predicate), copies = same[0]
        where = f" WHERE {predicate}" if predicate else ""
        raise CheckFailed("Some of your five indexes are the same index under another name: "
                          f"{len(copies)} of them index ({', '.join(key)}){where}. Another sort "
                          "direction, NULLS order, access method (hash) or storage option "
                          "(fillfactor) does not make another index: each copy is maintained "
                          "on every insert, but the ladder should add a different key at each "
                          "step.", "\n".join(defs))
    with psycopg.connect(lab.url, autocommit=True) as conn:
        names = set(_catalogue(conn, "orders_copy"))
    require_no_redundant(lab, "orders_copy", names)
    ratio = results[0]["rows_per_second"] / results[-1]["rows_per_second"]
    if ratio < 1.5:
        raise CheckFailed(f"With five indexes the insert ran only {ratio:.1f}× slower than with "
                          "none. Index columns that vary row to row (customer_id, created_at, "
                          "total), not five copies of one column.",
                          "; ".join(f"{r['indexes']}: {r['rows_per_second']:,.0f} rows/s"
                                    for r in results))
    return (f"{results[0]['rows_per_second']:,.0f} rows/s with no index, "
            f"{results[-1]['rows_per_second']:,.0f} with five: {ratio:.1f}× slower")


HINTS = {
    "q1": ["Which condition is an equality and which a range?",
           "A B-tree on (a, b) keeps all entries with the same a together, sorted by b.",
           "CREATE INDEX orders_country_created_idx ON orders (shipping_country, created_at);"],
    "q2": ["The B-tree is sorted by customer_id first; by status only within one customer.",
           "Without a condition on customer_id, there is no range of the tree to descend into."],
    "q3": ["Index Only Scan needs every column the query reads to be in the index: key or INCLUDE.",
           "Heap Fetches count rows whose page is not all-visible in the visibility map. "
           "VACUUM sets those bits."],
    "q4": ["Add a WHERE clause to CREATE INDEX: only rows that satisfy it are indexed.",
           "CREATE INDEX ... ON orders (created_at) WHERE status = 'pending';"],
    "q5": ["The index must contain exactly the expression the query compares: lower(email).",
           "CREATE INDEX ... ON customers (lower(email)) WHERE deleted_at IS NULL;"],
    "q6": ["Containment (@>) is a GIN operator.", "CREATE INDEX ... ON products USING gin (attributes);"],
    "q7": ["date(created_at) = d is created_at >= d AND created_at < d + 1.",
           "42.0 is numeric: PostgreSQL casts the bigint column to numeric to compare. Write 42."],
    "q8": ["Each statement: CREATE INDEX ON orders_copy (some_column);",
           "Pick five different columns or column lists of orders_copy."],
}
