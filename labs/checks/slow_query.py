"""Checks for 04_slow_query: the seed's "order history page went from 50 ms to 8 s" ticket.

The notebook reproduces the incident: a load-test customer owning a large share
of orders (customers.is_load_test), ``order_items_order_id_idx`` lost in a bad
deploy, and a tiny ``work_mem`` (set on the database, as a config change
would) that pushes the sort to disk. The checks judge the diagnosis by what
the statistics views really say, and the fix by plan shape, buffers and, where
the scale makes it meaningful, a speed-up measured in the same run.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import psycopg

from ..tools import explain as ex
from ..course.checking import CheckFailed, compare_results, require
from .indexing import apply

SMALL_WORK_MEM = "64kB"
HISTORY_SQL = """SELECT o.id, o.status, o.created_at, c.full_name, c.email,
       count(oi.id) AS item_count, sum(oi.unit_price * oi.quantity) AS total
FROM orders o
JOIN customers c ON o.customer_id = c.id
JOIN order_items oi ON oi.order_id = o.id
WHERE o.customer_id = %(customer)s
GROUP BY o.id, c.id
ORDER BY o.created_at DESC, o.id DESC
LIMIT 20"""
PAGE_COLUMNS = ["id", "status", "created_at", "full_name", "email", "item_count", "total"]
FIRST_PAGE = {"before_created_at": dt.datetime.max.replace(tzinfo=dt.timezone.utc),
              "before_id": 2**63 - 1}
SPEEDUP_WANTED = 50.0
LOAD_TEST_BUFFER_BUDGET = 1_000  # 8 MB of pages for 20 orders and their items


def load_test_customer(lab) -> int:
    return lab.scalar("SELECT id FROM customers WHERE is_load_test ORDER BY id LIMIT 1")


def normal_customer(lab) -> int:
    """An ordinary customer with a typical number of orders (the median among buyers)."""
    return lab.scalar("""
        WITH n AS (SELECT o.customer_id, count(*) AS orders FROM orders o
                   JOIN customers c ON c.id = o.customer_id WHERE NOT c.is_load_test
                   GROUP BY o.customer_id)
        SELECT customer_id FROM n
        WHERE orders >= (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY orders) FROM n)
        ORDER BY orders, customer_id LIMIT 1""")


def _rows(lab, sql: str, params: Any, what: str) -> tuple[list[str], list[tuple]]:
    with psycopg.connect(lab.url, autocommit=True) as conn:
        return _rows_on(conn, sql, params, what)


def _rows_on(conn: psycopg.Connection, sql: str, params: Any,
             what: str) -> tuple[list[str], list[tuple]]:
    with conn.cursor() as cur:
        try:
            cur.execute(sql, params)
        except psycopg.Error as exc:
            raise CheckFailed(f"PostgreSQL rejected {what}: {exc.diag.message_primary or exc}",
                              f"SQLSTATE {exc.sqlstate}") from None
        if cur.description is None:
            raise CheckFailed(f"{what} returned no result set; it should be a SELECT.")
        return [c.name for c in cur.description], cur.fetchall()


# -- q1: pg_stat_statements -----------------------------------------------------


def q1(lab, top_query_sql: str) -> str:
    """The most expensive statement of this database by total time is the history page."""
    require(top_query_sql)
    columns, rows = _rows(lab, top_query_sql, None, "your query")
    if not rows:
        raise CheckFailed("Your query returns no rows. Is pg_stat_statements installed in this "
                          "database, and did the traffic cell run after the reset?")
    texts = [str(v) for v in rows[0] if isinstance(v, str)]
    if not any("order_items" in t and "customer_id" in t for t in texts):
        raise CheckFailed("The first row is not the order history query. Order by "
                          "total_exec_time (the time all calls took together), newest first, "
                          "and keep only this database (dbid).",
                          f"first row: {rows[0]}")
    return "the history page tops pg_stat_statements by total execution time"


# -- q2: pg_stat_user_tables ------------------------------------------------------


def q2(lab, seq_scans_sql: str) -> str:
    """The table whose sequential scans read the most rows: order_items."""
    require(seq_scans_sql)
    columns, rows = _rows(lab, seq_scans_sql, None, "your query")
    if not rows or "relname" not in columns:
        raise CheckFailed("Your query should return relname (and the counters), one row per "
                          "table, the worst first.")
    first = rows[0][columns.index("relname")]
    if first != "order_items":
        raise CheckFailed(f"Your first row is {first}. Order by seq_tup_read: the rows read by "
                          "sequential scans, which is what a missing index costs.",
                          f"first row: {rows[0]}")
    return "order_items: the rows read by sequential scans point at the lost index"


# -- q3: the index, concurrently --------------------------------------------------


def q3(lab, index_sql: str) -> str:
    """order_items(order_id) is indexed again, valid, built CONCURRENTLY; no Seq Scan left."""
    require(index_sql)
    apply(lab, index_sql, "your index statement")
    with psycopg.connect(lab.url, autocommit=True) as conn:
        valid = conn.execute(
            """SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE i.indrelid = 'order_items'::regclass
                 AND pg_get_indexdef(i.indexrelid, 1, true) = 'order_id'""").fetchall()
        ran = [r[0] for r in conn.execute(
            """SELECT query FROM pg_stat_statements
               WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND query ILIKE '%%create%%index%%order_items%%'""")]
    if not valid:
        raise CheckFailed("There is no index on order_items whose first column is order_id.")
    if not any(v for _, v in valid):
        raise CheckFailed(f"{valid[0][0]} is INVALID: a CREATE INDEX CONCURRENTLY that failed "
                          "leaves an invalid index behind. DROP INDEX CONCURRENTLY it and build "
                          "it again.")
    if ran and not any(re.search(r"concurrently", q, re.I) for q in ran):
        raise CheckFailed("pg_stat_statements shows the index was built without CONCURRENTLY. "
                          "A plain CREATE INDEX holds a SHARE lock on order_items for the whole "
                          "build: every INSERT, UPDATE and DELETE of checkout waits. Use "
                          "CREATE INDEX CONCURRENTLY (outside a transaction block).",
                          "\n".join(ran))
    plan = ex.explain(lab, HISTORY_SQL, {"customer": normal_customer(lab)})
    ex.assert_no_node(plan, "Seq Scan", "order_items",
                      "The history page still reads order_items with a Seq Scan.")
    return f"{valid[0][0]} is valid; the page reads order_items by index"


# -- q4: keyset pagination that survives the skewed account --------------------------


def _reference_pages(lab, customer: int) -> list[tuple]:
    sql = HISTORY_SQL.replace("LIMIT 20", "LIMIT 40")
    with psycopg.connect(lab.url) as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL work_mem = '64MB'")
            return conn.execute(sql, {"customer": customer}).fetchall()


def q4(lab, skew_index_sql: str, page_sql: str) -> str:
    """Keyset pages equal the reference; the load-test account's page sorts in memory on few buffers."""
    require(skew_index_sql, page_sql)
    apply(lab, skew_index_sql, "your index statement")
    for who, customer in (("a normal customer", normal_customer(lab)),
                          ("the load-test customer", load_test_customer(lab))):
        want = _reference_pages(lab, customer)
        params = {"customer": customer, **FIRST_PAGE}
        cols, page1 = _rows(lab, page_sql, params, "your page query")
        compare_results(cols, page1, PAGE_COLUMNS, want[:20], ordered=True,
                        what=f"page 1 for {who}")
        if len(want) > 20:
            last = page1[-1]
            params2 = {"customer": customer, "before_created_at": last[2], "before_id": last[0]}
            cols, page2 = _rows(lab, page_sql, params2, "your page query")
            compare_results(cols, page2, PAGE_COLUMNS, want[20:40], ordered=True,
                            what=f"page 2 for {who} (after created_at, id of page 1's last row)")
    _check_ties(lab, page_sql)
    customer = load_test_customer(lab)
    plan = ex.explain(lab, page_sql, {"customer": customer, **FIRST_PAGE})
    ex.assert_no_node(plan, "Seq Scan", "order_items",
                      "The page reads order_items with a Seq Scan.")
    ex.assert_sort_in_memory(plan, "For the load-test customer a sort still spills to disk: the "
                             "query joins and sorts all of the account's orders before LIMIT. "
                             "Pick the 20 orders first (a subquery or CTE with ORDER BY ... "
                             "LIMIT 20), then join their items.")
    ex.assert_buffers_under(plan, LOAD_TEST_BUFFER_BUDGET,
                            f"The load-test customer's page touches {plan.buffers:,} buffers: "
                            "it reads every one of the account's orders to find the newest "
                            "20. An index on orders (customer_id, created_at, id) lets the "
                            "scan stop after 20 entries.")
    return (f"keyset pages match; the load-test account's page touches {plan.buffers:,} buffers, "
            "sorts in memory")


def _check_ties(lab, page_sql: str) -> None:
    """Orders sharing one created_at across the page boundary: none skipped, none repeated.

    Real timestamps collide (a bulk import, a batch job, second-precision clocks); the
    dataset's rarely do, so the check makes six of them collide, in a transaction it
    rolls back.
    """
    customer = load_test_customer(lab)
    with psycopg.connect(lab.url) as conn, conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL work_mem = '64MB'")
        sql = HISTORY_SQL.replace("LIMIT 20", "LIMIT 40")
        ids = [r[0] for r in conn.execute(sql, {"customer": customer}).fetchall()]
        if len(ids) < 40:
            return
        tied = ids[17:23]  # rows 18..23: three on page 1, three on page 2
        stamp = conn.execute("SELECT created_at FROM orders WHERE id = %s",
                             [ids[19]]).fetchone()[0]
        conn.execute("UPDATE orders SET created_at = %s WHERE id = ANY(%s)", [stamp, tied])
        want = conn.execute(sql, {"customer": customer}).fetchall()
        _, page1 = _rows_on(conn, page_sql, {"customer": customer, **FIRST_PAGE},
                            "your page query")
        if not page1:
            raise CheckFailed("Your page query returned no rows for the first page.")
        last = page1[-1]
        _, page2 = _rows_on(conn, page_sql, {"customer": customer,
                                             "before_created_at": last[2],
                                             "before_id": last[0]}, "your page query")
    got_ids = [r[0] for r in page1] + [r[0] for r in page2]
    want_ids = [r[0] for r in want]
    if got_ids != want_ids:
        skipped = [i for i in want_ids if i not in got_ids]
        repeated = sorted({i for i in got_ids if got_ids.count(i) > 1})
        raise CheckFailed(
            f"When {len(tied)} orders share one created_at across the page boundary (a bulk "
            "import or a batch job does that), your pages "
            + (f"skip orders {skipped}" if skipped else "")
            + (" and " if skipped and repeated else "")
            + (f"repeat orders {repeated}" if repeated else "")
            + ("return them in another order" if not skipped and not repeated else "")
            + ". created_at alone is not a unique key: page on (created_at, id), "
            "WHERE (o.created_at, o.id) < (%(before_created_at)s, %(before_id)s) and "
            "ORDER BY created_at DESC, id DESC.",
            f"expected ids {want_ids[15:25]} around the boundary, got {got_ids[15:25]}")


# -- q5: the speed-up, measured in the same run -----------------------------------------


def q5(lab, before: ex.Plan, page_sql: str) -> str:
    """A normal customer's page is ≥50× faster than before the fix (at small scale and up);
    at tiny scale the deterministic evidence (plan shape, buffers) stands in for time."""
    require(before, page_sql)
    customer = normal_customer(lab)
    after = ex.best_of(lab, page_sql, {"customer": customer, **FIRST_PAGE}, runs=5)
    ex.assert_no_node(after, "Seq Scan", "order_items")
    ex.assert_sort_in_memory(after)
    buffer_ratio = before.buffers / max(after.buffers, 1)
    if buffer_ratio < 10:
        raise ex._fail(f"The fixed page touches {after.buffers:,} buffers against "
                       f"{before.buffers:,} before: not even 10× less work.", after)
    speed = ex.speedup(before, after)
    if lab.scale.name == "tiny":
        return (f"{buffer_ratio:,.0f}× fewer buffers, no Seq Scan, sort in memory; measured "
                f"{speed:,.0f}× faster (the 50× bar is not applied at tiny scale, where the whole "
                "table fits in a few hundred pages and milliseconds are mostly overhead)")
    if speed < SPEEDUP_WANTED:
        raise ex._fail(f"A normal customer's page is only {speed:,.1f}× faster "
                       f"({before.execution_ms:.1f} ms → {after.execution_ms:.2f} ms); the "
                       f"ticket needs at least {SPEEDUP_WANTED:.0f}×.", after)
    return (f"{before.execution_ms:,.0f} ms → {after.execution_ms:.2f} ms: {speed:,.0f}× faster, "
            f"{buffer_ratio:,.0f}× fewer buffers")


HINTS = {
    "q1": ["pg_stat_statements has one row per normalised statement per database (dbid).",
           "ORDER BY total_exec_time DESC: what costs the server most is calls × mean."],
    "q2": ["pg_stat_user_tables counts seq_scan and seq_tup_read per table since the reset.",
           "ORDER BY seq_tup_read DESC."],
    "q3": ["CREATE INDEX CONCURRENTLY cannot run inside a transaction block: the check runs "
           "your statement in autocommit.",
           "CREATE INDEX CONCURRENTLY IF NOT EXISTS order_items_order_id_idx ON order_items (order_id)"],
    "q4": ["Keyset: WHERE (o.created_at, o.id) < (%(before_created_at)s, %(before_id)s).",
           "Choose the 20 orders in a subquery with ORDER BY created_at DESC, id DESC LIMIT 20, "
           "then join customers and order_items and aggregate.",
           "An index on orders (customer_id, created_at, id) serves that subquery for any "
           "customer, however many orders it has."],
    "q5": ["If q3 and q4 pass, run the cells that measure `before` first (the diagnosis)."],
}
