"""Checks for 03_indexing: the right index for each query, proven by its plan.

Each check applies the learner's DDL (idempotently: a re-run of a check cell
must not fail with "relation ... already exists"), then judges the plan by
property: which index is used, whether its Index Cond covers the columns the
query narrows on (rather than a Filter that reads and throws rows away), Heap
Fetches of an Index Only Scan, the index's own definition from the catalog.

At tiny scale a table fits in a few pages and the planner rightly prefers a
Seq Scan even when a good index exists. Where the question is "CAN this index
serve this query", the plan is taken with ``SET LOCAL enable_seqscan = off``:
that setting does not forbid a Seq Scan, it makes it look very expensive, so
an index that can serve the query wins and one that cannot still loses.
"""

from __future__ import annotations

import re
import time
from typing import Any, Sequence

import psycopg

from ..tools import explain as ex
from ..course.checking import CheckFailed, require

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
    built_in = {"orders_pkey", "orders_customer_id_idx", "orders_created_at_idx",
                "customers_pkey", "customers_email_key", "products_pkey", "products_sku_key",
                LEFTMOST_INDEX}
    return [n for n in names if n not in built_in]


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


def _missing_index(table: str, what: str) -> CheckFailed:
    return CheckFailed(f"No new index on {table} after your statement. {what}")


# -- q1: composite index, equality before range -----------------------------------


def q1(lab, composite_sql: str) -> str:
    """An index that serves shipping_country = 'FR' AND created_at >= ... with both in its Index Cond."""
    require(composite_sql)
    apply(lab, composite_sql)
    if not _new_indexes(lab, "orders"):
        raise _missing_index("orders", "Create an index on orders for the country-and-date query.")
    plan = explain_own(lab, COUNTRY_SINCE)
    scans = plan.index_scans("orders")
    if not scans:
        raise ex._fail("Even with enable_seqscan off, the planner does not use your index for "
                       "this query. Index the columns the WHERE clause narrows on.", plan)
    node = scans[0]
    info = index_info(lab, node.index)
    cond = node.index_cond or ""
    if "shipping_country" not in cond or "created_at" not in cond:
        missing = "shipping_country" if "shipping_country" not in cond else "created_at"
        raise ex._fail(f"{node.index} serves only part of the WHERE clause: {missing} is not in "
                       "its Index Cond, so every row matching the other condition is fetched "
                       f"and filtered ({plan.rows_removed('orders'):,.0f} rows removed). Index "
                       "both columns.", plan, f"index: {info['definition']}")
    if info["key"][0] != "shipping_country":
        raise ex._fail(f"{node.index} starts with {info['key'][0]}, the range column: "
                       "PostgreSQL walks every entry in the date range, for all countries, and "
                       f"checks the country on each ({node.shared_hit + node.shared_read} "
                       "buffers). Put the equality column first, (shipping_country, "
                       "created_at): then the matching entries are contiguous.", plan,
                       f"index: {info['definition']}")
    sorted_by_index = "" if plan.sorts else ", rows already in created_at order"
    return (f"{node.index} {tuple(info['key'])}: Index Cond on both columns, equality column "
            f"first{sorted_by_index}")


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


def q2(lab, usable: Any) -> str:
    """The set of query letters whose Index Cond starts on the index's leading column."""
    require(usable)
    if isinstance(usable, str):
        usable = set(re.findall(r"[A-F]", usable.upper()))
    usable = {str(u).strip().upper() for u in usable}
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


def q3(lab, covering_sql: str | Sequence[str]) -> str:
    """The history page runs as an Index Only Scan with Heap Fetches: 0 and no Sort."""
    require(covering_sql)
    apply(lab, covering_sql)
    sql = HISTORY_PAGE.format(customer=busy_customer(lab))
    plan = explain_own(lab, sql)
    only = plan.find("Index Only Scan", "orders")
    if not only:
        used = plan.index_scans("orders")
        name = used[0].index if used else None
        extra = ""
        if name:
            info = index_info(lab, name)
            missing = [c for c in ("customer_id", "created_at", "status", "total")
                       if c not in info["key"] + info["include"]]
            extra = (f" {name} lacks {', '.join(missing)}, so each row is fetched from the "
                     "table." if missing else "")
        raise ex._fail("The history page is not an Index Only Scan." + extra + " A covering "
                       "index keys on (customer_id, created_at) and carries status and total "
                       "in INCLUDE (...).", plan)
    node = only[0]
    if node.heap_fetches:
        raise ex._fail(f"Index Only Scan, but Heap Fetches: {node.heap_fetches}. The pages "
                       "changed since the last VACUUM are not marked all-visible in the "
                       "visibility map, so PostgreSQL must visit the table to check each row. "
                       "Run VACUUM orders after creating the index.", plan)
    if plan.sorts:
        raise ex._fail("The scan is index-only but the plan still sorts: key the index on "
                       "(customer_id, created_at) so rows come out newest first (a B-tree "
                       "reads backwards as easily as forwards).", plan)
    return f"Index Only Scan using {node.index}, Heap Fetches: 0, no Sort"


# -- q4: partial index for the pending queue ----------------------------------------


def q4(lab, partial_sql: str) -> str:
    """A partial index WHERE status = 'pending' serves the fulfilment queue."""
    require(partial_sql)
    apply(lab, partial_sql)
    plan = explain_own(lab, PENDING_QUEUE)
    used = [n for n in plan.index_scans("orders") if n.index != "orders_pkey"]
    if not used:
        raise ex._fail("The pending queue does not use a new index on orders.", plan)
    info = index_info(lab, used[0].index)
    total = lab.scalar("SELECT count(*) FROM orders")
    if not info["predicate"]:
        raise ex._fail(f"{info['name']} indexes all {total:,} orders, though only pending ones "
                       "are ever looked up: status has six values, and the index's size and "
                       "write cost are paid for every row. Add WHERE status = 'pending' to make "
                       "it a partial index.", plan, f"index: {info['definition']}")
    if "pending" not in info["predicate"]:
        raise ex._fail(f"{info['name']} is partial, but on {info['predicate']}.", plan)
    if plan.sorts:
        raise ex._fail("The queue still sorts: key the partial index on created_at.", plan)
    return (f"{info['name']} WHERE {info['predicate']}: {info['bytes'] // 1024:,} kB, serves the "
            "queue in created_at order")


# -- q5: expression index on lower(email), for active customers ----------------------


def some_email(lab) -> str:
    return lab.scalar("SELECT upper(email) FROM customers WHERE deleted_at IS NULL ORDER BY id "
                      "LIMIT 1 OFFSET 100")


def q5(lab, login_sql: str) -> str:
    """lower(email) = lower(...) AND deleted_at IS NULL is an Index Cond on lower(email)."""
    require(login_sql)
    apply(lab, login_sql)
    plan = explain_own(lab, LOGIN_LOOKUP.format(email=some_email(lab)), "customers")
    used = [n for n in plan.index_scans("customers") if "lower(email)" in (n.index_cond or "")]
    if not used:
        raise ex._fail("No index on customers has lower(email) in its Index Cond: an index "
                       "on email stores the address as typed, and lower(email) is a "
                       "different value. Index the expression: (lower(email)).", plan)
    info = index_info(lab, used[0].index)
    if used[0].filter and "deleted_at" in used[0].filter:
        raise ex._fail(f"{info['name']} finds the address, then filters deleted_at row by row "
                       "after visiting the table. Make it partial: WHERE deleted_at IS NULL.",
                       plan)
    return f"{info['name']}: Index Cond on lower(email), only active customers indexed"


# -- q6: GIN on jsonb ------------------------------------------------------------------


def q6(lab, gin_sql: str) -> str:
    """attributes @> '{"colour": "Tan"}' is answered by a GIN index (Bitmap Index Scan)."""
    require(gin_sql)
    apply(lab, gin_sql)
    plan = ex.explain(lab, JSON_FILTER, settings=NO_SEQSCAN)
    used = [n for n in plan.index_scans("products") if "@>" in (n.index_cond or "")]
    if not used:
        raise ex._fail("No index answers attributes @> '...' (it is not in any Index Cond). A "
                       "B-tree on a jsonb column only knows equality and ordering of whole "
                       "documents; containment needs GIN: USING gin (attributes).", plan)
    info = index_info(lab, used[0].index)
    return f"{info['name']} ({info['method']}) answers @> with a {used[0].node_type}"


# -- q7: sargable rewrites --------------------------------------------------------------

BY_DAY_SLOW = "SELECT id, total FROM orders WHERE date(created_at) = '2026-03-02'"
BY_CUSTOMER_SLOW = "SELECT id, total FROM orders WHERE customer_id = 42.0"


def _rows(lab, sql: str, what: str) -> tuple[list[str], list[tuple]]:
    with psycopg.connect(lab.url, autocommit=True) as conn, conn.cursor() as cur:
        try:
            cur.execute(sql)
        except psycopg.Error as exc:
            raise CheckFailed(f"PostgreSQL rejected {what}: {exc.diag.message_primary or exc}",
                              f"SQLSTATE {exc.sqlstate}") from None
        return [c.name for c in cur.description], cur.fetchall()


def q7(lab, by_day_sql: str, by_customer_sql: str) -> str:
    """Both rewrites return the same rows and put the column, bare, in an Index Cond."""
    from ..course.checking import compare_results

    require(by_day_sql, by_customer_sql)
    for sql, slow, column, what in ((by_day_sql, BY_DAY_SLOW, "created_at", "your by-day query"),
                                    (by_customer_sql, BY_CUSTOMER_SLOW, "customer_id",
                                     "your by-customer query")):
        got_cols, got = _rows(lab, sql, what)
        want_cols, want = _rows(lab, slow, "the original query")
        compare_results(got_cols, got, want_cols, want, what=what)
        plan = ex.explain(lab, sql, settings=NO_SEQSCAN)
        conds = [n for n in plan.index_scans("orders") if column in ex.index_cond_columns(n)]
        if not conds:
            raise ex._fail(f"{what} returns the right rows but no index scan has {column} in its "
                           f"Index Cond: the column is still wrapped in a function or cast. "
                           f"Compare the bare column with a value of its own type.", plan)
    return "both queries compare the bare column: Index Cond on created_at and on customer_id"


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
        defs = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = "
                                           "'orders_copy'")]
    if len(defs) != 5:
        raise CheckFailed(f"orders_copy ended up with {len(defs)} indexes, not five: each "
                          "statement should create one index on orders_copy.", "\n".join(defs))
    keys = {re.sub(r"^.*? USING ", "", d) for d in defs}
    if len(keys) != 5:
        raise CheckFailed("Some of your five indexes are the same index under another name: "
                          "PostgreSQL maintains each copy, but the ladder should add a "
                          "different index at each step.", "\n".join(defs))
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
