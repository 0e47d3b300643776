"""Checks for 07_soft_delete: soft delete, restore, and archival that loses nothing.

The seed's data-lifecycle challenge: products must be "deleted" while order history
keeps pointing at them, restorable, and old data must leave the hot tables without a
row going missing. The checks judge state and invariants:

* q1 inserts, in a transaction it rolls back, the rows that tell a soft-delete-aware
  schema from one that only looks like it (a new product reusing a deleted SKU, a
  duplicate active SKU) and reads the view;
* q2 restores products, including one whose SKU an active product has taken since;
* q3 runs the archiver, crashes it after three committed batches, runs it again, and
  compares row counts and checksums of live ∪ archive, and of each side, with the
  state before: nothing lost, nothing duplicated, nothing moved that should stay.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any, Callable

import psycopg

from ..tools import explain as ex
from ..course.checking import CheckFailed, NotAttempted, require
from ..data.dataset import query_checksum
from ..tools.migrations_probe import Interrupted, RecordingConnection
from ..tools.stress import in_transaction
from .indexing import apply

CUTOFF = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
CLOSED = ("delivered", "cancelled", "refunded")
STRAGGLERS = 6  # old orders the check reopens: an archiver must leave them where they are
ELIGIBLE = f"created_at < %(cutoff)s AND status IN {CLOSED!r}".replace('"', "'")

ORDER_COLUMNS = "id, customer_id, status, created_at, total, shipping_country, note"
ITEM_COLUMNS = "id, order_id, product_id, quantity, unit_price"

ARCHIVE_DDL = """
CREATE TABLE IF NOT EXISTS orders_archive (
    LIKE orders INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES,
    archived_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS order_items_archive (
    LIKE order_items INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES,
    archived_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS order_items_archive_order_id_idx ON order_items_archive (order_id);
"""


# --------------------------------------------------------------------------
# helpers


def _call(fn: Callable[..., Any], *args: Any, who: str) -> Any:
    try:
        return fn(*args)
    except (NotAttempted, CheckFailed, Interrupted):
        raise
    except psycopg.Error as exc:
        advice = {
            "23503": " A row still references the one you deleted: move order_items before "
                     "their orders (children first), in the same transaction.",
            "23505": " The archive already holds that id: a batch was archived twice, or "
                     "copied without being deleted.",
            "25P02": " An earlier statement failed and the transaction was not rolled back.",
        }.get(exc.sqlstate or "", "")
        raise CheckFailed(f"{who} raised SQLSTATE {exc.sqlstate}: "
                          f"{exc.diag.message_primary or exc}.{advice}") from None


# --------------------------------------------------------------------------
# q1: the view and the partial unique index


def _active_unique_index(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("""
        SELECT 1 FROM pg_index i
        WHERE i.indrelid = 'products'::regclass AND i.indisunique AND i.indisvalid
          AND pg_get_indexdef(i.indexrelid, 1, true) = 'sku'
          AND pg_get_expr(i.indpred, i.indrelid) ILIKE '%deleted_at IS NULL%'""").fetchone())


def q1(lab: Any, soft_delete_sql: str) -> str:
    """active_products hides deleted rows; a deleted SKU can be reused; two active ones cannot."""
    require(soft_delete_sql)
    apply(lab, soft_delete_sql, "your statements")
    with psycopg.connect(lab.url) as conn:
        if conn.execute("SELECT to_regclass('active_products')").fetchone()[0] is None:
            raise CheckFailed("There is no view (or table) active_products: CREATE VIEW "
                              "active_products AS SELECT … FROM products WHERE …")
        columns = [c.name for c in conn.execute("SELECT * FROM active_products LIMIT 0").description]
        want = [c.name for c in conn.execute("SELECT * FROM products LIMIT 0").description]
        if columns != want:
            raise CheckFailed(f"active_products has the columns {columns}; it should have all of "
                              f"products' columns, in order ({want}), so that code can switch "
                              "from products to active_products without other changes.")
        with conn.transaction(force_rollback=True):
            # a product deleted in the future is still active: deleted_at is a fact, not a plan
            got = query_checksum(conn, "SELECT id FROM active_products")
            want_rows = query_checksum(conn, "SELECT id FROM products WHERE deleted_at IS NULL")
            if got != want_rows:
                shown_deleted = conn.execute(
                    "SELECT count(*) FROM active_products a JOIN products p USING (id) "
                    "WHERE p.deleted_at IS NOT NULL").fetchone()[0]
                raise CheckFailed(
                    f"active_products returns {got[0]:,} rows; {want_rows[0]:,} products are not "
                    f"deleted. It shows {shown_deleted:,} soft-deleted products"
                    + (" and hides some active ones" if got[0] - shown_deleted < want_rows[0] else "")
                    + ": filter WHERE deleted_at IS NULL.")
            # the check's own product: listed, deleted, listed again, then duplicated
            sku = f"CHECK-{uuid.uuid4().hex[:10]}"
            insert = ("INSERT INTO products (sku, name, category, vendor, price, updated_at) "
                      "VALUES (%s, 'Check item', 'home', 'Check Vendor', 1.00, now())")
            conn.execute(insert, [sku])
            conn.execute("UPDATE products SET deleted_at = now() WHERE sku = %s", [sku])
            conn.execute("SAVEPOINT reuse")
            try:
                conn.execute(insert, [sku])
            except psycopg.errors.UniqueViolation as exc:
                raise CheckFailed(
                    f"A new product cannot reuse the SKU of a soft-deleted product: "
                    f"{exc.diag.message_primary}. The unique index on sku still counts deleted "
                    "rows, so a SKU can never be reused (and a vendor re-listing an item fails). "
                    "Make it a partial unique index, UNIQUE (sku) WHERE deleted_at IS NULL, and "
                    "drop the old one.") from None
            conn.execute("SAVEPOINT duplicate")
            try:
                conn.execute(insert, [sku])
            except psycopg.errors.UniqueViolation:
                conn.execute("ROLLBACK TO SAVEPOINT duplicate")
            else:
                raise CheckFailed(
                    "Two active products can now share a SKU: the partial index must still be "
                    "UNIQUE. Soft delete relaxes uniqueness for deleted rows only.")
            if not _active_unique_index(conn):
                raise CheckFailed("No valid unique index on products (sku) WHERE deleted_at IS "
                                  "NULL was found; uniqueness among active products must be "
                                  "enforced by the database, not by the application.")
    with psycopg.connect(lab.url) as conn:
        sku = conn.execute("SELECT sku FROM products WHERE deleted_at IS NULL ORDER BY id "
                           "LIMIT 1").fetchone()[0]
    plan = ex.explain(lab, "SELECT * FROM active_products WHERE sku = %(sku)s", {"sku": sku})
    ex.assert_no_node(plan, "Seq Scan", "products",
                      "Looking up an active product by sku reads the whole products table: the "
                      "view's WHERE deleted_at IS NULL must match the index's predicate so the "
                      "partial index can answer it.")
    return ("active_products hides deleted products; a deleted SKU can be reused, two active "
            "ones cannot; lookups by sku use the partial index")


# --------------------------------------------------------------------------
# q2: restore


def q2(lab: Any, restore_product: Callable[[Any, int], bool]) -> str:
    """restore_product: True when restored, False when nothing to do, ValueError on a taken SKU."""
    require(restore_product)
    with psycopg.connect(lab.url, autocommit=True) as watch:
        # two products of the check's own, soft-deleted (never ordered, so removable after)
        tag = uuid.uuid4().hex[:10]
        first, second = (tuple(watch.execute(
            "INSERT INTO products (sku, name, category, vendor, price, updated_at, deleted_at) "
            "VALUES (%s, 'Discontinued check item', 'home', 'Check Vendor', 3.00, now(), "
            "now() - interval '30 days') RETURNING id, sku, deleted_at",
            [f"CHECK-{tag}-{n}"]).fetchone()) for n in (1, 2))
        taker = None
        try:
            with psycopg.connect(lab.url) as conn:
                restored = _call(restore_product, conn, first[0], who="restore_product")
                if in_transaction(conn):
                    raise CheckFailed("restore_product returned with its transaction still open; "
                                      "commit it.")
                state = watch.execute("SELECT deleted_at FROM products WHERE id = %s",
                                      [first[0]]).fetchone()[0]
                if state is not None or restored is not True:
                    raise CheckFailed(
                        f"restore_product(conn, {first[0]}) returned {restored!r} and the product's "
                        f"deleted_at is {state}; a soft-deleted product whose SKU is free must come "
                        "back (deleted_at NULL, committed) and the function return True.")
                shown = watch.execute("SELECT count(*) FROM active_products WHERE id = %s",
                                      [first[0]]).fetchone()[0]
                if not shown:
                    raise CheckFailed("The restored product does not appear in active_products.")
                again = _call(restore_product, conn, first[0], who="restore_product")
                if again is not False:
                    raise CheckFailed(
                        f"Restoring an already active product returned {again!r}; it should "
                        "return False and change nothing (a retried request must not look like "
                        "a second restore).")
                missing = _call(restore_product, conn, 2**62, who="restore_product")
                if missing is not False:
                    raise CheckFailed(f"Restoring a product that does not exist returned "
                                      f"{missing!r}; it should return False.")
                if not _active_unique_index(watch):
                    raise CheckFailed("The rest of this check needs exercise 1's partial unique "
                                      "index on products (sku): run exercise 1 and its check "
                                      "first.")
                # the second product's SKU is taken by a new product meanwhile
                taker = watch.execute(
                    "INSERT INTO products (sku, name, category, vendor, price, updated_at) "
                    "VALUES (%s, 'Re-listed item', 'home', 'Check Vendor', 2.00, now()) "
                    "RETURNING id", [second[1]]).fetchone()[0]
                try:
                    result = restore_product(conn, second[0])
                except ValueError:
                    result = None
                except (NotAttempted, CheckFailed):
                    raise
                except psycopg.Error as exc:
                    raise CheckFailed(
                        f"restore_product let SQLSTATE {exc.sqlstate} escape "
                        f"({exc.diag.message_primary}) when an active product had taken the SKU "
                        f"{second[1]!r}. Catch the unique violation (or look first, under the "
                        "index's protection) and raise ValueError saying which product holds "
                        "the SKU: the caller has a decision to make, not a crash.") from None
                else:
                    raise CheckFailed(
                        f"restore_product returned {result!r} for a product whose SKU "
                        f"{second[1]!r} an active product has taken since; it must raise "
                        "ValueError (an API answers 409 Conflict).")
                finally:
                    left_open = in_transaction(conn)
                    conn.rollback()
                if left_open:
                    raise CheckFailed("restore_product raised ValueError but left its transaction "
                                      "open; roll it back before raising.")
                still = watch.execute("SELECT deleted_at FROM products WHERE id = %s",
                                      [second[0]]).fetchone()[0]
                if still is None:
                    raise CheckFailed("restore_product refused the conflicting restore but "
                                      "restored the product anyway.")
        finally:
            watch.execute("DELETE FROM products WHERE id = ANY(%s)",
                          [[first[0], second[0]] + ([taker] if taker is not None else [])])
    return ("restores a deleted product, is a no-op when there is nothing to restore, and "
            "refuses (ValueError) when its SKU is taken")


# --------------------------------------------------------------------------
# q3: archival


def unarchive_all(lab: Any) -> None:
    """Back to the starting state: every archived row returns to the live tables."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        for statement in ARCHIVE_DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        with conn.transaction():
            conn.execute(f"INSERT INTO orders ({ORDER_COLUMNS}) "
                         f"SELECT {ORDER_COLUMNS} FROM orders_archive ON CONFLICT (id) DO NOTHING")
            conn.execute(f"INSERT INTO order_items ({ITEM_COLUMNS}) SELECT {ITEM_COLUMNS} "
                         "FROM order_items_archive ON CONFLICT (id) DO NOTHING")
            conn.execute("TRUNCATE orders_archive, order_items_archive")


def _state(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    p = {"cutoff": CUTOFF}
    eligible_items = (f"SELECT {ITEM_COLUMNS} FROM order_items WHERE order_id IN "
                      f"(SELECT id FROM orders WHERE {ELIGIBLE})")
    return {
        "orders_all": query_checksum(conn, f"SELECT {ORDER_COLUMNS} FROM orders UNION ALL "
                                      f"SELECT {ORDER_COLUMNS} FROM orders_archive"),
        "items_all": query_checksum(conn, f"SELECT {ITEM_COLUMNS} FROM order_items UNION ALL "
                                     f"SELECT {ITEM_COLUMNS} FROM order_items_archive"),
        "orders_eligible": query_checksum(conn, f"SELECT {ORDER_COLUMNS} FROM orders WHERE {ELIGIBLE}", p),
        "orders_staying": query_checksum(conn, f"SELECT {ORDER_COLUMNS} FROM orders WHERE NOT ({ELIGIBLE})", p),
        "items_eligible": query_checksum(conn, eligible_items, p),
        "orders_archive": query_checksum(conn, f"SELECT {ORDER_COLUMNS} FROM orders_archive"),
        "items_archive": query_checksum(conn, f"SELECT {ITEM_COLUMNS} FROM order_items_archive"),
        "orders_live": query_checksum(conn, f"SELECT {ORDER_COLUMNS} FROM orders"),
    }


def _not_lost(before: dict, now: dict, when: str) -> None:
    for key, what in (("orders_all", "orders"), ("items_all", "order items")):
        (n0, c0), (n1, c1) = before[key], now[key]
        if n1 > n0:
            raise CheckFailed(
                f"{when}, live + archive hold {n1 - n0:,} more {what} than before: rows were "
                "copied to the archive but not deleted from the live table (or the other way "
                "round) in separate transactions. Move each batch in ONE transaction: "
                "WITH moved AS (DELETE … RETURNING *) INSERT INTO …_archive SELECT * FROM moved.")
        if n1 < n0:
            raise CheckFailed(
                f"{when}, {n0 - n1:,} {what} are in neither the live table nor the archive: "
                "they were deleted without being archived. An archiver must move rows, never "
                "drop them: every row it deletes goes into the archive in the same transaction.")
        if c1 != c0:
            raise CheckFailed(f"{when}, live + archive hold as many {what} as before but their "
                              "contents changed (checksum differs): archive rows exactly as "
                              "they were.", f"{c0} → {c1}")


def q3(lab: Any, archive_orders: Callable[..., int]) -> str:
    """Closed orders before the cutoff move with their items, in batches; nothing lost."""
    require(archive_orders)
    unarchive_all(lab)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        # Real data has stragglers: an old order still open (a lost parcel, a dispute). The
        # dataset has none before the cutoff, so the check reopens a few.
        stragglers = conn.execute(
            "SELECT id, status FROM orders WHERE created_at < %s ORDER BY id DESC LIMIT %s",
            [CUTOFF, STRAGGLERS]).fetchall()
        conn.execute("UPDATE orders SET status = 'shipped' WHERE id = ANY(%s)",
                     [[i for i, _ in stragglers]])
    # They stay reopened (the next labs.setup restores the dataset): an archiver run after
    # the check must leave them in place too.
    return _archive_check(lab, archive_orders)


def _archive_check(lab: Any, archive_orders: Callable[..., int]) -> str:
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute("ANALYZE orders, order_items")
        before = _state(conn)
    eligible = before["orders_eligible"][0]
    if eligible < 8:
        raise CheckFailed(f"Only {eligible} orders are eligible at this scale; the check needs "
                          "a dataset of at least the tiny scale.")
    batch = max(10, math.ceil(eligible / 24))  # about two dozen batches at every scale
    crashing = RecordingConnection(psycopg.connect(lab.url), interrupt_after_commits=3)
    try:
        _call(archive_orders, crashing, CUTOFF, batch, who="archive_orders")
        crashed = False
    except Interrupted:
        crashed = True
    finally:
        crashing.raw.close()
    with psycopg.connect(lab.url, autocommit=True) as conn:
        _not_lost(before, _state(conn), "After a crash following the third committed batch")
    resumed = RecordingConnection(psycopg.connect(lab.url))
    try:
        moved = _call(archive_orders, resumed, CUTOFF, batch, who="archive_orders")
        again = _call(archive_orders, resumed, CUTOFF, batch, who="archive_orders")
        if in_transaction(resumed.raw):
            raise CheckFailed("archive_orders returned with its transaction still open; commit "
                              "each batch.")
    finally:
        resumed.raw.close()
    with psycopg.connect(lab.url, autocommit=True) as conn:
        after = _state(conn)
    _not_lost(before, after, "After the archiver finished")
    if after["orders_archive"] != before["orders_eligible"]:
        extra = after["orders_archive"][0] - before["orders_eligible"][0]
        raise CheckFailed(
            f"The archive holds {after['orders_archive'][0]:,} orders; {eligible:,} orders are "
            f"closed ({', '.join(CLOSED)}) and older than {CUTOFF:%Y-%m-%d}"
            + (f": {extra:,} open or newer orders were archived, which a customer would miss"
               if extra > 0 else ": some eligible orders were left behind")
            + ". Archive exactly created_at < cutoff AND status IN (…closed…), and check it "
            "again in the DELETE: a row can change between your SELECT and your DELETE.")
    if after["items_archive"] != before["items_eligible"]:
        raise CheckFailed(
            f"The item archive holds {after['items_archive'][0]:,} rows; the archived orders "
            f"have {before['items_eligible'][0]:,} items. An order moves with all of its items, "
            "in the same transaction (items first: order_items references orders).")
    if after["orders_live"] != before["orders_staying"]:
        raise CheckFailed("The live orders table does not hold exactly the orders that should "
                          "stay.", f"{before['orders_staying']} → {after['orders_live']}")
    if not crashed:
        raise CheckFailed(
            f"archive_orders(conn, cutoff, batch_size={batch}) committed fewer than four "
            f"batches for {eligible:,} orders: one huge transaction holds locks on every row it "
            "moves until it commits, bloats WAL at once, and loses all of its work on a crash. "
            "Commit after each batch of batch_size orders.")
    sizes = crashing.txn_rows + resumed.txn_rows
    per_order = (before["items_eligible"][0] + eligible) * 2 / eligible  # rows changed per order
    if max(sizes, default=0) > 3 * batch * per_order:
        raise CheckFailed(f"One transaction changed {max(sizes):,} rows; batches of {batch} "
                          f"orders change about {batch * per_order:,.0f}. Respect batch_size.")
    total = before["orders_eligible"][0] - after["orders_eligible"][0]
    if not isinstance(moved, int) or not 0 < moved <= total:
        raise CheckFailed(f"archive_orders returned {moved!r} after resuming; it should return "
                          "the number of orders it archived in that call.")
    if again != 0:
        raise CheckFailed(f"A second run, with nothing left to archive, returned {again!r}; it "
                          "should return 0 and change nothing.")
    return (f"{eligible:,} orders and {before['items_eligible'][0]:,} items archived in batches "
            f"of {batch}, resumed after a crash; live ∪ archive counts and checksums unchanged")


HINTS = {
    "q1": ["CREATE OR REPLACE VIEW active_products AS SELECT * FROM products "
           "WHERE deleted_at IS NULL",
           "CREATE UNIQUE INDEX CONCURRENTLY … ON products (sku) WHERE deleted_at IS NULL; "
           "then DROP INDEX CONCURRENTLY products_sku_key"],
    "q2": ["UPDATE products SET deleted_at = NULL WHERE id = %s AND deleted_at IS NOT NULL: "
           "rowcount says whether anything was restored.",
           "except psycopg.errors.UniqueViolation: conn.rollback(); raise ValueError(...)"],
    "q3": ["Keyset on id: SELECT id … WHERE id > last AND <eligible> ORDER BY id LIMIT batch.",
           "In one transaction: WITH moved AS (DELETE FROM order_items WHERE order_id = ANY(%s) "
           "RETURNING *) INSERT INTO order_items_archive SELECT * FROM moved; the same for orders; "
           "commit."],
}
