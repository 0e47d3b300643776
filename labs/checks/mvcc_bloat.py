"""Checks for 13_mvcc_bloat: row versions, HOT updates, the xmin horizon, timeouts, autovacuum.

Everything is judged by effect, on ``product_stats`` (one row per product, the counters the
storefront bumps on every page view) rebuilt by :func:`make_product_stats`:

* q1 rebuilds the table as the notebook starts it (an index on ``last_viewed_at``, pages
  packed full), runs the learner's statements, then, while a REPEATABLE READ report holds a
  snapshot (so pruning cannot make room), bumps a seeded random 5% of the rows once each, one
  autocommit UPDATE at a time (views and last_viewed_at, as the storefront does) and reads
  ``n_tup_upd`` / ``n_tup_hot_upd``: at least 99% must be HOT and the heap may not grow;
  rows (count + checksum of every column) unchanged, the table still logged (not UNLOGGED)
  with its columns as they were, the heap at most 1/0.6 of its packed size (a fillfactor
  far below 70 is bloat by configuration), the primary key and the category index still
  valid and used (plans for several categories);
* q2 hands ``find_horizon_holders`` a caller's connection (autocommit off, non-UTC) while
  the check holds the horizon in every way it can on this server, opened in a seeded
  order with an xid burnt between each: a REPEATABLE READ reader idle in transaction
  (``backend_xmin``, and a much younger ``backend_xid`` taken by its last statement, so an
  age that prefers the xid is told from the greater of the two; connected as another role
  when the lab may create one, so a filter on ``usename = current_user`` misses it), a READ COMMITTED writer idle in transaction (``backend_xid`` only, no
  snapshot), a statement still running (``active``), a physical replication slot reserved
  at once (nobody consumes it), and a prepared transaction when
  ``max_prepared_transactions`` > 0 (the lab's default server has 0: then the success line
  says it was skipped). The idle-in-transaction holders connect, open their transaction and
  run their last statement STAGE_GAP apart, so ``seconds`` from backend_start or
  query_start is told from now() - xact_start. Not holders: an idle session, a READ
  COMMITTED session idle in transaction that only read (no xmin, no xid), a session of
  another database (``postgres``) with a snapshot, and the caller itself. Each holder's
  kind, pid, state, xid age, seconds and query are compared with ``pg_stat_activity`` /
  ``pg_replication_slots`` read around the call; sessions oldest first; the connection
  must be left as found. Everything is released in ``finally`` (the slot too);
* q3 creates a role scoped to the challenge database, runs the learner's statements for
  it, then watches: a new session of the role has both timeouts (at most 2 s in the lab),
  a superuser session and the database default do not; a short (50 ms) statement of the
  role still runs (a unit-less '2' is 2 ms), and so does a transaction that pauses 250 ms
  between two statements (an idle timeout of '2' or '50ms' ends it); the role's REPEATABLE READ
  session idle in transaction holds VACUUM back (dead but not removable) until the
  timeout ends it, after which VACUUM removes those rows (unless a replication slot's xmin,
  a standby's hot_standby_feedback on the shared server, still holds them: then it is
  said, not failed); an idle session *outside* a
  transaction survives (no ``idle_session_timeout``: a pool's connections are idle); a
  statement longer than ``statement_timeout`` is cancelled (57014). The role is dropped in
  ``finally`` and at ``lab.reset()``;
* q4 rebuilds and bloats the table (autovacuum off, as the notebook's demos need), runs
  the learner's statements while a writer holds ROW EXCLUSIVE (``probe_steps``: a
  statement that waits for a lock conflicting with writers, VACUUM FULL's ACCESS
  EXCLUSIVE, is the outage), then reads what autovacuum reads: autovacuum enabled, the
  trigger ``threshold + scale_factor × rows`` between 1,000 dead rows and 1% of a
  10-million-row table, set on product_stats only (no other table vacuumed or analyzed:
  manual vacuum/analyze counts of the others unchanged, and no server-wide autovacuum
  setting changed: ALTER SYSTEM, read from pg_settings and pg_file_settings); and the dead rows already gone (the
  check's own VACUUM VERBOSE finds almost none), rows unchanged.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import psycopg
from psycopg import sql

from ..course import adversarial as adv
from ..course.checking import CheckFailed, require
from ..course.left_behind import Caller, stored_state
from ..data.dataset import query_checksum
from ..tools import explain as ex
from ..tools import roles
from ..tools import table_health as th
from ..tools.migrations_probe import probe_steps
from .indexing import split_statements

TABLE = "product_stats"
PRODUCTION_ROWS = 10_000_000  # a hot counters table in production
QUICK_STATEMENT_S = 0.05  # q3: a statement this short must survive the role's timeout
THINK_PAUSE_S = 0.25  # q3: a transaction that pauses this long between statements survives
MAX_LAB_TIMEOUT_MS = 2_000  # the check waits for the timeouts to act: keep them short here
HOT_SHARE = 0.99
BUMPED_SHARE = 20  # q1 bumps one row in 20, each once, while a snapshot is held

PRODUCT_STATS_DDL = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    product_id     bigint PRIMARY KEY,
    category       text NOT NULL,
    views          bigint NOT NULL DEFAULT 0,
    last_viewed_at timestamptz
) WITH (autovacuum_enabled = off);
INSERT INTO {TABLE} (product_id, category, views, last_viewed_at)
    SELECT id, category, (id * 7919) % 500, timestamptz '2026-01-01' - (id % 97) * interval '1 hour'
    FROM products ORDER BY id;
CREATE INDEX {TABLE}_category_idx ON {TABLE} (category);
CREATE INDEX {TABLE}_last_viewed_at_idx ON {TABLE} (last_viewed_at);
"""

BUMP = f"UPDATE {TABLE} SET views = views + 1, last_viewed_at = now() WHERE product_id = %s"


def make_product_stats(target: Any) -> int:
    """(Re)build ``product_stats`` as the notebook starts it; returns its row count.

    Autovacuum is off on it so that what the notebook measures is what its statements
    did, not what a background worker happened to do meanwhile (exercise 4 turns it on).
    """
    url = getattr(target, "url", target)
    with psycopg.connect(url, autocommit=True) as conn:
        for stmt in split_statements(PRODUCT_STATS_DDL):
            conn.execute(stmt)
        conn.execute(f"VACUUM ANALYZE {TABLE}")
        return conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]


def _run_statements(lab: Any, text: str, as_role: str | None = None) -> None:
    with psycopg.connect(lab.url, autocommit=True) as conn:
        if as_role and not roles.may_create_roles(conn):
            # graded: the learner's role may not ALTER ROLE another role, but a role may set
            # its own defaults (ALTER ROLE … SET), and the grader made it a member of this one
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(as_role)))
        for stmt in split_statements(text):
            conn.execute(stmt)


def _checksum(conn: psycopg.Connection) -> tuple[int, str]:
    return query_checksum(conn, f"SELECT product_id, category, views, last_viewed_at FROM {TABLE}")


MIN_FILLFACTOR_SHARE = 0.6  # q1: the heap may grow to 1/0.6 of its packed size (fillfactor ~60+)


def _definition(conn: psycopg.Connection) -> tuple[str, list[str]]:
    """The table's persistence and columns (name, type, NOT NULL, default), as stored."""
    persistence = conn.execute("SELECT relpersistence FROM pg_class WHERE oid = %s::regclass",
                               [TABLE]).fetchone()[0]
    columns = [r[0] for r in conn.execute(
        """SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                  || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                  || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
           FROM pg_attribute a LEFT JOIN pg_attrdef d
             ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""", [TABLE]).fetchall()]
    return persistence, columns


# -- q1: HOT updates ------------------------------------------------------------------


def q1(lab: Any, hot_sql: str) -> str:
    """The storefront's counter updates are HOT: no index on what they change, room on the page."""
    require(hot_sql)
    rows = make_product_stats(lab)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        before_sum = _checksum(conn)
        before_def = _definition(conn)
        packed = th.table_stats(conn, TABLE)["heap_bytes"]
        _run_statements(lab, hot_sql)
        after_sum = _checksum(conn)
        after_def = _definition(conn)
        if after_sum != before_sum:
            raise CheckFailed(
                f"Your statements changed the rows of {TABLE} ({before_sum[0]} → {after_sum[0]} "
                "rows, or their values): HOT is about where new versions go, not about the data. "
                "Change indexes and storage parameters only.")
        if after_def[0] != before_def[0]:
            raise CheckFailed(
                f"Your statements made {TABLE} "
                + ("UNLOGGED" if after_def[0] == "u" else f"relpersistence {after_def[0]!r}")
                + ": an unlogged table writes no WAL, so after a crash PostgreSQL empties it and "
                "no standby ever receives it: every counter lost. Keep it a logged table "
                "(ALTER TABLE … SET LOGGED); rewrite it with VACUUM FULL to apply the "
                "fillfactor.")
        if after_def[1] != before_def[1]:
            raise CheckFailed(
                f"Your statements changed the columns of {TABLE} ({', '.join(before_def[1])} → "
                f"{', '.join(after_def[1])}): the storefront's bump and reports still use them. "
                "Change indexes and storage parameters only.")
        indexes = dict(conn.execute(
            """SELECT pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i
               WHERE i.indrelid = %s::regclass""", [TABLE]).fetchall())
        if not any("(product_id)" in d and "UNIQUE" in d and ok for d, ok in indexes.items()):
            raise CheckFailed(f"{TABLE} lost its primary key (product_id): every bump looks a "
                              "row up by it. Keep it; drop only the index nobody reads.")
        for category in adv.spread(sorted({r[0] for r in conn.execute(
                f"SELECT DISTINCT category FROM {TABLE}")}), 3, rand=adv.rng()):
            plan = ex.explain(conn, f"SELECT product_id, views FROM {TABLE} WHERE category = %s",
                              [category], settings={"enable_seqscan": "off"})
            if not plan.uses_index(relation=TABLE):
                raise CheckFailed(
                    f"The category report (WHERE category = …) has no index to use any more: "
                    f"{TABLE}_category_idx serves a real query; only last_viewed_at's index is "
                    "read by nobody.", plan.text())
        heap_before = th.table_stats(conn, TABLE)
        if heap_before["heap_bytes"] > packed / MIN_FILLFACTOR_SHARE + 2 * 8192:
            raise CheckFailed(
                f"After your statements the heap is {heap_before['heap_bytes']:,} bytes, "
                f"{heap_before['heap_bytes'] / packed:.1f}× its packed size ({packed:,}): "
                "every scan, backup and cache now holds that much more for the same rows. "
                "HOT needs room for a few new versions per page, not an empty page: "
                "fillfactor 70–90 (80 here), not lower.")
        ids = [r[0] for r in conn.execute(f"SELECT product_id FROM {TABLE}")]
        chosen = adv.rng().sample(ids, max(len(ids) // BUMPED_SHARE, 20))
        # a report's snapshot stays open meanwhile: no old version can be pruned to make
        # room, so only the free space the table was given counts
        with psycopg.connect(lab.url, autocommit=True) as report:
            report.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            report.execute(f"SELECT count(*) FROM {TABLE}")
            try:
                for product_id in chosen:
                    conn.execute(BUMP, [product_id])
                after = th.table_stats(conn, TABLE)
            finally:
                report.execute("ROLLBACK")
    updates = after["n_tup_upd"] - heap_before["n_tup_upd"]
    hot = after["n_tup_hot_upd"] - heap_before["n_tup_hot_upd"]
    share = hot / updates if updates else 0.0
    if hot == 0:
        raise CheckFailed(
            f"None of {updates} bumps was a HOT update: an UPDATE can only be HOT when no "
            "indexed column changes, and last_viewed_at is still indexed. Drop the index on "
            "last_viewed_at (nothing reads it); fillfactor alone cannot help.")
    if share < HOT_SHARE:
        raise CheckFailed(
            f"Only {hot} of {updates} bumps ({share:.0%}) were HOT: the others found no room "
            "on their row's page and moved the row to another page (a new entry in every "
            "index). While any snapshot is open, old versions cannot be pruned to make room: "
            "only free space left on purpose helps. Leave free space on every page: ALTER TABLE … SET (fillfactor = 80 or "
            "90), and rewrite the table once (VACUUM FULL, while nobody uses it; here, now) "
            "so that the pages already written get that room too.")
    grew = after["heap_bytes"] > heap_before["heap_bytes"]
    if grew:
        raise CheckFailed(
            f"The heap grew from {heap_before['heap_bytes']:,} to {after['heap_bytes']:,} bytes "
            "during the bumps although they were HOT: leave room on every page "
            "(fillfactor) and rewrite the table once.")
    return (f"{hot} of {updates} bumps were HOT ({share:.0%}); {rows:,} rows unchanged, the "
            "heap did not grow, the category report still uses its index")


# -- q2: who holds the horizon ----------------------------------------------------------

FIELDS = ("kind", "pid", "state", "xid_age", "seconds", "query")
STAGE_GAP = 0.8  # s between connecting, opening the transaction, and its last statement
SECONDS_SLACK = 0.4  # s of tolerance on `seconds` beyond what was read around the call


def _other_database_url(lab: Any) -> str:
    """The server's maintenance database ("postgres"): a session there is no holder here."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(lab.url)
    params["dbname"] = "postgres"
    return make_conninfo(**params)


def _slot_name(lab: Any) -> str:
    return slot_name_for(lab.dbname)


def slot_name_for(dbname: str) -> str:
    return roles.scoped_name(dbname, "_forgotten")


# q2's slot nobody consumes: the learner's role under grading may not create replication
# slots (the REPLICATION attribute would let it stream every learner's data), so the
# grader makes it before the notebook runs and drops it afterwards
GRADER_MAKES_SLOTS = lambda dbname: [slot_name_for(dbname)]  # noqa: E731


def _may_use_slots(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT rolsuper OR rolreplication FROM pg_roles "
                             "WHERE rolname = current_user").fetchone()[0])


def drop_slot(lab: Any) -> None:
    """Drop the check's replication slot if a crash left it behind (it would hold WAL);
    the grader's stays until the grader drops it."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        if _may_use_slots(conn):
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE slot_name = %s AND NOT active", [_slot_name(lab)])


def _normalise(holders: Any) -> list[dict[str, Any]]:
    if hasattr(holders, "to_dict"):  # a DataFrame
        holders = holders.to_dict("records")
    if not isinstance(holders, (list, tuple)):
        raise CheckFailed("find_horizon_holders must return a list of dicts, one per holder, "
                          f"with the keys {', '.join(FIELDS)}; it returned "
                          f"{type(holders).__name__}.")
    out = []
    for h in holders:
        if not isinstance(h, dict) or not set(FIELDS) <= set(h):
            raise CheckFailed(f"Each holder must be a dict with the keys {', '.join(FIELDS)}; "
                              f"got {h!r}.")
        out.append(h)
    return out


def _as_int(value: Any) -> int | None:
    return None if value is None or value != value else int(value)  # NaN from a DataFrame


def q2(lab: Any, find_horizon_holders: Callable[[Any], Any]) -> str:
    """The horizon's holders, named: sessions by snapshot or xid, a running statement, a slot."""
    require(find_horizon_holders)
    rand = adv.rng()
    prepared_ok = int(lab.scalar("SHOW max_prepared_transactions")) > 0
    drop_slot(lab)
    opened: list[psycopg.Connection] = []
    sleeper: threading.Thread | None = None
    gid = f"{lab.dbname}_forgotten"
    expected: dict[str, dict[str, Any]] = {}
    made_role: str | None = None

    def connect(url: str | None = None) -> psycopg.Connection:
        conn = psycopg.connect(url or lab.url, autocommit=True,
                               application_name="lab horizon check")
        opened.append(conn)
        return conn

    try:
        burner = connect()
        # the forgotten REPEATABLE READ session is another user's (the reporting role's psql
        # window), when this server lets the lab create a role: a filter on the caller's own
        # user misses it
        reader_url = None
        made_role = roles.fresh(lab, HOLDER, login=True, required=False)
        if made_role:
            lab.on_reset(lambda: roles.drop(lab, HOLDER))
            burner.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
                sql.Identifier(TABLE), sql.Identifier(made_role)))
            # a graded learner's databases are closed to PUBLIC
            burner.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(lab.dbname), sql.Identifier(made_role)))
            reader_url = roles.url_as(lab.url, made_role)
        # the idle-in-transaction holders connect now, open their transaction a moment
        # later and run their last statement a moment after that: backend_start,
        # xact_start and query_start all differ, so `seconds` must be the transaction's
        early = {"reader": connect(reader_url), "writer": connect()}
        finish: list[Callable[[], None]] = []
        time.sleep(STAGE_GAP)

        def burn() -> None:  # a committed xid between holders: no two share an age
            burner.execute("SELECT txid_current()")

        def reader() -> None:
            c = early["reader"]
            c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            c.execute(f"SELECT count(*) FROM {TABLE}")
            # its last statement, after the other holders and burnt xids, also takes an xid:
            # backend_xid is then much younger than the snapshot's backend_xmin, which is
            # what holds the horizon (an age that prefers the xid, coalesce(age(backend_xid),
            # age(backend_xmin)), tells the on-call engineer it is younger than it is)
            q = f"SELECT count(*), pg_current_xact_id() FROM {TABLE}"
            finish.append(lambda: c.execute(q))
            expected["reader (REPEATABLE READ, idle in transaction)"] = {
                "pid": c.info.backend_pid, "kind": "session", "state": "idle in transaction",
                "query": q, "user": made_role}

        def writer() -> None:
            c = early["writer"]
            c.execute("BEGIN")
            q = f"UPDATE {TABLE} SET views = views + 1 WHERE product_id = (SELECT min(product_id) FROM {TABLE})"
            c.execute(q)
            finish.append(lambda: c.execute(q))
            expected["writer (READ COMMITTED, wrote, idle in transaction: backend_xid, no backend_xmin)"] = {
                "pid": c.info.backend_pid, "kind": "session", "state": "idle in transaction",
                "query": q}

        def runner() -> None:
            nonlocal sleeper
            c = connect()
            q = "SELECT pg_sleep(60)"
            pid = c.info.backend_pid
            sleeper = threading.Thread(target=lambda: _swallow(c.execute, q), daemon=True)
            sleeper.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not burner.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active' "
                    "AND backend_xmin IS NOT NULL", [pid]).fetchone():
                time.sleep(0.02)
            expected["running statement (active)"] = {
                "pid": pid, "kind": "session", "state": "active", "query": q}

        def slot() -> None:
            if _may_use_slots(burner):
                burner.execute("SELECT pg_create_physical_replication_slot(%s, true)",
                               [_slot_name(lab)])
            elif not burner.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                                    [_slot_name(lab)]).fetchone():
                return  # neither may this role make one nor did anybody make it: not planted
            expected["replication slot nobody consumes"] = {
                "pid": None, "kind": "slot", "state": "inactive", "query": _slot_name(lab)}

        def prepared() -> None:
            c = connect()
            c.execute("BEGIN")
            c.execute(f"UPDATE {TABLE} SET views = views + 1 WHERE product_id = (SELECT max(product_id) FROM {TABLE})")
            c.execute(f"PREPARE TRANSACTION '{gid}'")
            expected["prepared transaction"] = {"pid": None, "kind": "prepared",
                                                "state": "prepared", "query": gid}

        makers = [reader, writer, runner, slot] + ([prepared] if prepared_ok else [])
        rand.shuffle(makers)
        for make in makers:
            make()
            burn()
        time.sleep(STAGE_GAP)
        for last_statement in finish:
            last_statement()
        idle = connect()
        idle.execute("SELECT 1")
        # not holders either: a READ COMMITTED session idle in transaction that only read
        # (no snapshot between statements, no xid), and a session of another database
        # (VACUUM here does not wait for it)
        quiet = connect()
        quiet.execute("BEGIN")
        quiet.execute("SELECT 1")
        elsewhere = connect(_other_database_url(lab))
        elsewhere.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        elsewhere.execute("SELECT count(*) FROM pg_class")
        bystanders = {idle.info.backend_pid: "idle", quiet.info.backend_pid: "quiet",
                      elsewhere.info.backend_pid: "elsewhere"}

        with Caller(lab) as caller:
            low = _truth(burner, expected)
            answer = find_horizon_holders(caller.conn)
            caller.verify("find_horizon_holders(conn)")
            high = _truth(burner, expected)
            holders = _normalise(answer)
            if any(_as_int(h["pid"]) == caller.pid for h in holders):
                raise CheckFailed(
                    "Your function reported its own connection as a holder: the query you run "
                    "has a snapshot of its own. Leave out pg_backend_pid().")
        _judge_holders(holders, expected, low, high, bystanders)
    finally:
        for conn in opened:
            if not conn.closed:
                try:
                    conn.cancel_safe(timeout=5)
                except Exception:
                    pass
        if sleeper is not None:
            sleeper.join(timeout=10)
        for conn in opened:
            if not conn.closed:
                conn.close()
        with psycopg.connect(lab.url, autocommit=True) as conn:
            if prepared_ok and conn.execute("SELECT 1 FROM pg_prepared_xacts WHERE gid = %s",
                                            [gid]).fetchone():
                conn.execute(f"ROLLBACK PREPARED '{gid}'")
        drop_slot(lab)
        if made_role:
            roles.drop(lab, HOLDER)
    kinds = sorted({e["kind"] for e in expected.values()})
    note = ("" if prepared_ok else "; prepared transactions not tried: this server has "
            "max_prepared_transactions = 0, so none can exist here")
    return (f"named all {len(expected)} holders ({', '.join(kinds)}) with pid, state, age and "
            f"query, oldest first, and nothing else of this database{note}")


def _swallow(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        pass


def _truth(conn: psycopg.Connection, expected: dict[str, dict[str, Any]]) -> dict[str, tuple]:
    """(xid age, seconds) of each planted holder now, by the catalogue."""
    out: dict[str, tuple] = {}
    for label, e in expected.items():
        if e["kind"] == "session":
            row = conn.execute(
                """SELECT greatest(age(backend_xmin), age(backend_xid)),
                          extract(epoch FROM now() - xact_start)::float
                   FROM pg_stat_activity WHERE pid = %s""", [e["pid"]]).fetchone()
        elif e["kind"] == "slot":
            row = conn.execute("SELECT greatest(age(xmin), age(catalog_xmin)), NULL::float "
                               "FROM pg_replication_slots WHERE slot_name = %s",
                               [e["query"]]).fetchone()
        else:
            row = conn.execute("SELECT age(transaction), extract(epoch FROM now() - prepared)::float "
                               "FROM pg_prepared_xacts WHERE gid = %s", [e["query"]]).fetchone()
        out[label] = row or (None, None)
    return out


def _judge_holders(holders: list[dict[str, Any]], expected: dict[str, dict[str, Any]],
                   low: dict[str, tuple], high: dict[str, tuple], bystanders: dict[int, str]) -> None:
    for h in holders:
        which = bystanders.get(_as_int(h["pid"]) if h["kind"] == "session" else None)
        if which == "idle":
            raise CheckFailed(
                "Your function reported an idle session (state 'idle', no transaction open): "
                "it holds nothing back. A session holds the horizon when it has a snapshot "
                "(backend_xmin) or a transaction id (backend_xid).")
        if which == "quiet":
            raise CheckFailed(
                "Your function reported a READ COMMITTED session idle in transaction that has "
                "only read: between statements it has no snapshot (backend_xmin is NULL) and "
                "no transaction id (backend_xid is NULL), so it holds nothing back. Select "
                "sessions by backend_xmin or backend_xid, not by state.")
        if which == "elsewhere":
            raise CheckFailed(
                "Your function reported a session of another database: VACUUM of this "
                "database's tables does not wait for other databases' snapshots, and the "
                "on-call engineer would end the wrong session. Keep sessions of this "
                "database only (datname = current_database()).")
    for label, e in expected.items():
        if e["kind"] == "session":
            found = [h for h in holders if _as_int(h["pid"]) == e["pid"]]
        else:
            found = [h for h in holders if h["kind"] == e["kind"] and h["query"] == e["query"]]
        if not found:
            why = {
                "reader": "a session idle in transaction with a snapshot: state is 'idle in "
                          "transaction', not 'active', and backend_xmin is set",
                "writer": "it has no snapshot between statements in READ COMMITTED (backend_xmin "
                          "is NULL) but its transaction id (backend_xid) holds the horizon as "
                          "well: look at both",
                "running": "a statement still running holds its snapshot: state 'active'",
                "replication": "slots live in pg_replication_slots, not in pg_stat_activity: "
                               "an inactive slot retains WAL, and with xmin/catalog_xmin the "
                               "horizon too",
                "prepared": "prepared transactions live in pg_prepared_xacts and outlive "
                            "every session",
            }[label.split()[0]]
            if label.startswith("reader") and e.get("user"):
                why += (f"; it belongs to another user ({e['user']}, a reporting role's forgotten "
                        "psql window): every session of this database counts, whoever runs it, "
                        "so do not filter on usename")
            raise CheckFailed(f"Your function missed a holder: the {label}; {why}.")
        h = found[0]
        if h["kind"] != e["kind"]:
            raise CheckFailed(f"The {label} was reported as kind {h['kind']!r}; it is a "
                              f"{e['kind']!r} (kind is 'session', 'slot' or 'prepared').")
        if e["kind"] != "session":
            if str(h["state"]) != e["state"] and not (e["kind"] == "slot" and h["state"] in
                                                      ("inactive", False, "f", "false")):
                raise CheckFailed(f"The {label} has state {h['state']!r}; expected "
                                  f"{e['state']!r}.")
        elif h["state"] != e["state"]:
            raise CheckFailed(f"The {label} has state {h['state']!r}; pg_stat_activity says "
                              f"{e['state']!r}.")
        if e["kind"] == "session" and str(h["query"]).strip() != e["query"]:
            raise CheckFailed(f"The {label}'s query should be its last statement as "
                              f"pg_stat_activity.query shows it ({e['query']!r}); got "
                              f"{h['query']!r}.")
        age_lo, age_hi = low[label][0], high[label][0]
        age = _as_int(h["xid_age"])
        if age_lo is None:
            if age is not None:
                raise CheckFailed(f"The {label} has no xid to age (its xmin is NULL), but your "
                                  f"function gave xid_age {age}: leave it None.")
        elif age is None or not (age_lo <= age <= age_hi):
            raise CheckFailed(
                f"The {label}'s xid_age is {h['xid_age']!r}; by the catalogue it was between "
                f"{age_lo} and {age_hi} transactions during your call: the age of the older of "
                "backend_xmin and backend_xid (age() of each, the greater). A session that "
                "took its snapshot and wrote later has both, and its snapshot (backend_xmin) is "
                "the older: greatest(age(backend_xmin), age(backend_xid)), not coalesce(…).")
        s_lo, s_hi = low[label][1], high[label][1]
        if s_lo is not None:
            secs = h["seconds"]
            if secs is None or not (s_lo - SECONDS_SLACK <= float(secs) <= s_hi + SECONDS_SLACK):
                raise CheckFailed(
                    f"The {label}'s seconds is {secs!r}; its transaction had been open for "
                    f"{s_lo:.1f} to {s_hi:.1f} s during your call (now() - xact_start): not "
                    "since its last statement (query_start, state_change) nor since it "
                    "connected (backend_start).")
    sessions = [h for h in holders if h["kind"] == "session" and _as_int(h["xid_age"]) is not None]
    ages = [_as_int(h["xid_age"]) for h in sessions]
    if ages != sorted(ages, reverse=True):
        raise CheckFailed("Order the holders oldest first (greatest xid_age first): the first "
                          "line is the one to deal with.", f"xid ages in your order: {ages}")


# -- q3: timeouts for a role ----------------------------------------------------------------


# the check's own roles, one set per challenge database (the grader makes them under
# grading, where the learner's role may not create roles): the forgotten session of q2
# (another user than the caller's) and the role q3's timeouts are set for
HOLDER, REPORT = "_holder", "_report"
GRADER_MAKES_ROLES = roles.grader_makes((HOLDER, True), (REPORT, True))


def role_name(lab: Any) -> str:
    """The check's role for q3, scoped to the challenge database (parallel runs never share it)."""
    return roles.scoped_name(lab.dbname, REPORT)


def _ms(conn: psycopg.Connection, name: str) -> int:
    return int(conn.execute("SELECT setting::int FROM pg_settings WHERE name = %s",
                            [name]).fetchone()[0])


def q3(lab: Any, role_timeouts_sql: str) -> str:
    """Timeouts for the role, by effect: an idle transaction is ended, then VACUUM reclaims."""
    require(role_timeouts_sql)
    if "{role}" not in role_timeouts_sql:
        raise CheckFailed("Write the statements for any role: put {role} where the role's name "
                          "goes (the check creates a role and fills it in).")
    make_product_stats(lab)
    role = roles.fresh(lab, REPORT, login=True)
    lab.on_reset(lambda: roles.drop(lab, REPORT))
    opened: list[psycopg.Connection] = []
    try:
        with psycopg.connect(lab.url, autocommit=True) as su:
            su.execute(sql.SQL("GRANT SELECT, UPDATE ON {} TO {}").format(
                sql.Identifier(TABLE), sql.Identifier(role)))
            su.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(lab.dbname), sql.Identifier(role)))
            with psycopg.connect(lab.url, autocommit=True) as fresh:
                su_before = (_ms(fresh, "idle_in_transaction_session_timeout"),
                             _ms(fresh, "statement_timeout"))
            _run_statements(lab, role_timeouts_sql.replace("{role}", sql.Identifier(role).as_string(su)),
                            as_role=role)
            with psycopg.connect(lab.url, autocommit=True) as fresh:
                su_after = (_ms(fresh, "idle_in_transaction_session_timeout"),
                            _ms(fresh, "statement_timeout"))
            db_level = su.execute(
                """SELECT array_to_string(s.setconfig, ', ') FROM pg_db_role_setting s
                   JOIN pg_database d ON d.oid = s.setdatabase
                   WHERE d.datname = current_database() AND s.setrole = 0""").fetchone()
            if su_after != su_before or (db_level and "timeout" in db_level[0]):
                raise CheckFailed(
                    "Your timeouts reach sessions of other roles too (a new superuser session "
                    f"now has idle_in_transaction_session_timeout, statement_timeout = "
                    f"{su_after[0]} ms, {su_after[1]} ms): migrations, VACUUMs and backups run "
                    "as other roles and must not be cut off. ALTER ROLE {role} SET … for this "
                    "role only.")

            def role_conn() -> psycopg.Connection:
                c = psycopg.connect(roles.url_as(lab.url, role), autocommit=True,
                                    application_name="lab timeout check")
                opened.append(c)
                return c

            probe = role_conn()
            try:
                idle_ms = _ms(probe, "idle_in_transaction_session_timeout")
                stmt_ms = _ms(probe, "statement_timeout")
            except psycopg.errors.QueryCanceled:
                raise CheckFailed(
                    f"A new session of {role} cannot even read its own settings: its "
                    "statement_timeout cancels every statement within milliseconds. A number "
                    "without a unit is read in the setting's base unit, milliseconds: write "
                    "the unit ('2s').") from None
            idle_session_ms = _ms(probe, "idle_session_timeout") if probe.info.server_version >= 140000 else 0
            if idle_ms == 0:
                raise CheckFailed(
                    f"A new session of role {role} still has idle_in_transaction_session_timeout "
                    "= 0 (no limit): SET or set_config change only the session that ran them. "
                    "ALTER ROLE {role} SET idle_in_transaction_session_timeout = '2s' stores it "
                    "for every new session of the role.")
            if stmt_ms == 0:
                raise CheckFailed(
                    f"A new session of role {role} has no statement_timeout: set one for the "
                    "role too (ALTER ROLE {role} SET statement_timeout = …), or a runaway "
                    "report holds its snapshot for as long as it runs.")
            if idle_ms > MAX_LAB_TIMEOUT_MS or stmt_ms > MAX_LAB_TIMEOUT_MS:
                raise CheckFailed(
                    f"In the lab, keep both timeouts at most {MAX_LAB_TIMEOUT_MS // 1000} s "
                    f"(you set {idle_ms} ms and {stmt_ms} ms) so the check can watch them act; "
                    "production values are minutes (see the notebook).")
            # the success path: an ordinary, short statement of the role still runs
            try:
                probe.execute(f"SELECT pg_sleep({QUICK_STATEMENT_S}), count(*) FROM {TABLE}")
            except psycopg.errors.QueryCanceled:
                raise CheckFailed(
                    f"A short statement of {role} ({QUICK_STATEMENT_S * 1000:.0f} ms) was "
                    f"cancelled: its statement_timeout is {stmt_ms} ms. A number without a "
                    "unit is read in the setting's base unit, milliseconds: write the unit "
                    "('2s').") from None

            # the success path of the idle timeout: an application's transaction that thinks
            # for a moment between two statements (a lookup, then the write it decides on)
            # is not ended; a timeout of a few milliseconds ends every one of them
            thinker = role_conn()
            try:
                thinker.execute("BEGIN")
                thinker.execute(f"SELECT count(*) FROM {TABLE}")
                time.sleep(THINK_PAUSE_S)
                thinker.execute(f"SELECT count(*) FROM {TABLE}")
                thinker.execute("COMMIT")
            except (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout):
                raise CheckFailed(
                    f"A transaction of {role} that paused {THINK_PAUSE_S * 1000:.0f} ms between "
                    f"two statements was ended: its idle_in_transaction_session_timeout is "
                    f"{idle_ms} ms, so every request whose code thinks between two statements "
                    "loses its connection. A number without a unit is read in the setting's "
                    "base unit, milliseconds: write the unit ('2s'), and keep the timeout for "
                    "transactions forgotten for seconds (minutes in production).") from None
            # the effect: an idle transaction holds VACUUM back until the timeout ends it
            th.vacuum(su, TABLE)
            holder = role_conn()
            holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            holder.execute(f"SELECT count(*) FROM {TABLE}")
            holder_pid = holder.info.backend_pid
            pool_conn = role_conn()
            pool_conn.execute("SELECT 1")
            started = time.monotonic()
            n = adv.non_round(300, rand=adv.rng())
            su.execute(f"UPDATE {TABLE} SET views = views + 1 WHERE product_id IN "
                       f"(SELECT product_id FROM {TABLE} ORDER BY product_id LIMIT %s)", [n])
            held = th.vacuum(su, TABLE)
            deadline = started + idle_ms / 1000 + 5
            while time.monotonic() < deadline and su.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", [holder_pid]).fetchone():
                time.sleep(0.1)
            if su.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                          [holder_pid]).fetchone():
                raise CheckFailed(
                    f"A session of {role} stayed idle in transaction well past its "
                    "idle_in_transaction_session_timeout and was not ended.")
            freed = _vacuum_until_clean(su)
            if held["not_removable"] is not None and held["not_removable"] < n:
                raise CheckFailed("The check could not hold the horizon with the role's "
                                  "session; is the role's session terminated at once?",
                                  held["report"])
            others = th.xmin_horizon(su)
            if freed["not_removable"] and others["slot_xmin_age"] is None and not (
                    others["sessions_holding"]):
                raise CheckFailed(
                    "After the idle transaction was ended, VACUUM still could not remove the "
                    f"{n} dead rows it kept.", freed["report"])
            # a standby with hot_standby_feedback (a slot with an xmin) on the shared server
            # holds every database's horizon too: then VACUUM waits for it, not for the role
            waited_for = ("" if not freed["not_removable"] else
                          "; VACUUM still waits for another holder (a replication slot's xmin: "
                          "a standby with hot_standby_feedback)")
            time.sleep(max(0.0, started + idle_ms / 1000 + 0.5 - time.monotonic()))
            if pool_conn.closed or pool_conn.broken or not _alive(pool_conn):
                raise CheckFailed(
                    f"An idle session of {role} *outside* any transaction was ended too "
                    f"(idle_session_timeout = {idle_session_ms} ms): that is every pooled "
                    "connection between requests. End idle transactions "
                    "(idle_in_transaction_session_timeout), not idle sessions.")
            runner = role_conn()
            try:
                runner.execute("SELECT pg_sleep(%s)", [stmt_ms / 1000 + 1.5])
            except psycopg.errors.QueryCanceled:
                pass
            else:
                raise CheckFailed(f"A statement of {role} ran past statement_timeout "
                                  f"({stmt_ms} ms) and was not cancelled.")
    finally:
        for c in opened:
            if not c.closed:
                c.close()
        roles.drop(lab, REPORT)
    return (f"a new session of the role gets idle_in_transaction_session_timeout {idle_ms} ms and "
            f"statement_timeout {stmt_ms} ms (other roles unchanged); its idle transaction "
            f"kept {held['not_removable']} dead rows until the timeout ended it, then VACUUM "
            f"removed {freed['removed']}{waited_for}; pooled idle sessions survive")


def _vacuum_until_clean(conn: psycopg.Connection, patience: float = 3.0) -> dict[str, Any]:
    """VACUUM until nothing is left unremovable (a background ANALYZE may hold the horizon for
    a moment); ``removed`` is the total over the runs."""
    removed, deadline = 0, time.monotonic() + patience
    while True:
        report = th.vacuum(conn, TABLE)
        removed += report["removed"] or 0
        if not report["not_removable"] or time.monotonic() > deadline:
            return {**report, "removed": removed}
        time.sleep(0.3)


def _alive(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


# -- q4: autovacuum for the hot table -------------------------------------------------------

_LOCK_NAMES = {"AccessExclusiveLock": "ACCESS EXCLUSIVE", "ExclusiveLock": "EXCLUSIVE",
               "ShareRowExclusiveLock": "SHARE ROW EXCLUSIVE", "ShareLock": "SHARE"}


def autovacuum_trigger(conn: psycopg.Connection, table: str = TABLE) -> dict[str, Any]:
    """What autovacuum reads for ``table``: enabled, threshold, scale factor (table or server)."""
    opts = dict(o.split("=", 1) for o in (conn.execute(
        "SELECT reloptions FROM pg_class WHERE oid = %s::regclass", [table]).fetchone()[0] or []))
    server = dict(conn.execute(
        "SELECT name, setting FROM pg_settings WHERE name IN ('autovacuum', "
        "'autovacuum_vacuum_threshold', 'autovacuum_vacuum_scale_factor')").fetchall())
    enabled = opts.get("autovacuum_enabled", "true").lower() in ("true", "on", "1", "yes")
    threshold = int(opts.get("autovacuum_vacuum_threshold", server["autovacuum_vacuum_threshold"]))
    scale = float(opts.get("autovacuum_vacuum_scale_factor",
                           server["autovacuum_vacuum_scale_factor"]))
    return {"enabled": enabled and server["autovacuum"] == "on", "threshold": threshold,
            "scale_factor": scale, "options": opts}


def _maintenance_of_others(conn: psycopg.Connection) -> dict[str, int]:
    """Manual VACUUM and ANALYZE runs so far of every table but ``product_stats``."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return dict(conn.execute(
        "SELECT relname, vacuum_count + analyze_count FROM pg_stat_user_tables "
        "WHERE relid <> %s::regclass", [TABLE]).fetchall())


def _server_config(conn: psycopg.Connection) -> dict[str, str]:
    """The server's own autovacuum configuration: the values in force and what ALTER SYSTEM
    wrote to postgresql.auto.conf (applied at the next reload even when nobody reloaded)."""
    try:
        rows = conn.execute(
            """SELECT 'setting ' || name, setting FROM pg_settings WHERE name LIKE 'autovacuum%%'
               UNION ALL
               SELECT 'ALTER SYSTEM ' || name, setting FROM pg_file_settings
               WHERE sourcefile LIKE '%%postgresql.auto.conf' AND name LIKE 'autovacuum%%'"""
        ).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        return {}  # a graded role may not read the files: it may not ALTER SYSTEM either
    return dict(rows)


def q4(lab: Any, autovacuum_sql: str) -> str:
    """Per-table autovacuum for the hot table, and today's dead rows reclaimed without a lock-out."""
    require(autovacuum_sql)
    rows = make_product_stats(lab)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        for _ in range(2):
            conn.execute(f"UPDATE {TABLE} SET views = views + 1")
        stats = th.table_stats(conn, TABLE)
        dead, vacuums = stats["n_dead_tup"], stats["vacuum_count"]
        before_sum = _checksum(conn)
        others_before = {k: v for k, v in stored_state(conn).items() if TABLE not in k}
        maintained_before = _maintenance_of_others(conn)
        server_before = _server_config(conn)
    evidence = probe_steps(lab, split_statements(autovacuum_sql), table=TABLE, timeout=120)
    for ev in evidence:
        if ev.error:
            raise CheckFailed(f"PostgreSQL rejected `{ev.sql.strip()}`: {ev.error}.")
        if ev.blocks_writes:
            lock = _LOCK_NAMES.get(ev.lock_awaited, ev.lock_awaited)
            raise CheckFailed(
                f"`{' '.join(ev.sql.split())}` needs the {lock} lock on {TABLE}: every page view's "
                "UPDATE (and for ACCESS EXCLUSIVE every read) waits until it finishes, and VACUUM "
                "FULL rewrites the whole table while holding it. Plain VACUUM reclaims dead rows "
                "for reuse under SHARE UPDATE EXCLUSIVE, which blocks no reader or writer; "
                "to give space back to the OS online, pg_repack.")
    with psycopg.connect(lab.url, autocommit=True) as conn:
        if _checksum(conn) != before_sum:
            raise CheckFailed(f"Your statements changed the rows of {TABLE}: tune and vacuum, "
                              "never delete or rewrite the data.")
        server_after = _server_config(conn)
        moved = sorted(k for k in set(server_before) | set(server_after)
                       if server_before.get(k) != server_after.get(k))
        if moved:
            raise CheckFailed(
                f"Your statements changed the server's configuration ({', '.join(moved[:4])}): "
                "ALTER SYSTEM changes autovacuum for every table of every database on the "
                "server, most of which the defaults suit. Undo it (ALTER SYSTEM RESET …; SELECT "
                f"pg_reload_conf()) and set the trigger on {TABLE} only: ALTER TABLE {TABLE} "
                "SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = …).")
        others_after = {k: v for k, v in stored_state(conn).items() if TABLE not in k}
        changed = sorted(k for k in others_after if others_before.get(k, others_after[k])
                         != others_after[k])
        if changed:
            raise CheckFailed(f"Your statements changed settings beyond {TABLE} ({', '.join(changed)}): "
                              "per-table settings go on the hot table only.")
        maintained = sorted(k for k, v in _maintenance_of_others(conn).items()
                            if v != maintained_before.get(k, v))
        if maintained:
            raise CheckFailed(
                f"Your statements vacuumed or analyzed other tables too ({', '.join(maintained[:4])}"
                f"{', …' if len(maintained) > 4 else ''}): a VACUUM or ANALYZE without a table "
                "name reads every table of the database, hours of I/O at production size for "
                f"tables that did not need it. Name the table: VACUUM (ANALYZE) {TABLE}.")
        av = autovacuum_trigger(conn)
        vacuumed = th.table_stats(conn, TABLE)["vacuum_count"] > vacuums
        left = th.vacuum(conn, TABLE)
        leftover = (left["removed"] or 0) + (left["dead_items"] or 0)
    if not av["enabled"]:
        raise CheckFailed(
            f"Autovacuum is still off for {TABLE} (autovacuum_enabled = off, as the notebook's "
            "demos left it): without it dead rows pile up until someone remembers a manual "
            "VACUUM. Turn it on: ALTER TABLE … SET (autovacuum_enabled = on, …).")
    at_prod = av["threshold"] + av["scale_factor"] * PRODUCTION_ROWS
    if at_prod > PRODUCTION_ROWS / 100:
        raise CheckFailed(
            f"With autovacuum_vacuum_scale_factor = {av['scale_factor']} and threshold "
            f"{av['threshold']}, autovacuum waits for {at_prod:,.0f} dead rows in a "
            f"{PRODUCTION_ROWS:,}-row table ({at_prod / PRODUCTION_ROWS:.0%}): the scale factor "
            "makes the wait grow with the table. For a hot table set the scale factor to 0 "
            "(or nearly) and a fixed threshold from the measured dead-row rate.")
    at_lab = av["threshold"] + av["scale_factor"] * rows
    if av["threshold"] + av["scale_factor"] * 10_000 < 1_000:
        raise CheckFailed(
            f"Autovacuum would start after {at_lab:,.0f} dead rows: so low a trigger vacuums "
            "the table on almost every naptime for a handful of rows. Use a threshold of a few "
            "thousand rows (the dead rows of a minute or so of traffic).")
    if not vacuumed or leftover > max(rows // 20, 10):
        raise CheckFailed(
            f"The dead rows of the updates ({leftover:,} row versions or their line pointers) "
            "were still there after your statements: "
            "reclaim today's dead rows too (a plain VACUUM; autovacuum would only get to them "
            "at its next naptime).", left["report"])
    return (f"autovacuum on for {TABLE} only: it starts after {av['threshold']:,} + "
            f"{av['scale_factor']} × rows dead rows ({at_prod:,.0f} at {PRODUCTION_ROWS:,} rows); "
            f"today's {dead:,} dead rows reclaimed without blocking writers")


HINTS = {
    "q1": [
        "An UPDATE is HOT (heap-only tuple) when no indexed column changes and the new version "
        "fits on the same page. The bump changes views and last_viewed_at: which of them is "
        "indexed, and does any query use that index?",
        "DROP INDEX product_stats_last_viewed_at_idx; then ALTER TABLE product_stats SET "
        "(fillfactor = 80) and VACUUM FULL product_stats (fillfactor only applies to pages "
        "written from now on; the rewrite applies it to all of them).",
    ],
    "q2": [
        "Three catalogues: pg_stat_activity (backend_xmin, backend_xid), pg_replication_slots "
        "(xmin, catalog_xmin, active) and pg_prepared_xacts (transaction, prepared).",
        "Sessions: datname = current_database(), pid <> pg_backend_pid(), and backend_xmin IS "
        "NOT NULL OR backend_xid IS NOT NULL, whatever the state; age = greatest(age(backend_xmin), "
        "age(backend_xid)), seconds = extract(epoch FROM now() - xact_start).",
        "Run the queries inside `with conn.transaction():` so the connection is left idle, "
        "and sort by xid_age, oldest first (None last).",
    ],
    "q3": [
        "ALTER ROLE {role} SET idle_in_transaction_session_timeout = '2s'; and the same for "
        "statement_timeout. New sessions of the role pick them up; SET changes only yours.",
    ],
    "q4": [
        "ALTER TABLE product_stats SET (autovacuum_enabled = on, autovacuum_vacuum_scale_factor "
        "= 0, autovacuum_vacuum_threshold = N) with N from the measured rate; then VACUUM "
        "(ANALYZE) product_stats, never VACUUM FULL on a live table.",
    ],
}
