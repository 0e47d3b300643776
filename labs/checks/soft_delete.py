"""Checks for 07_soft_delete: soft delete, restore, and archival that loses nothing.

The seed's data-lifecycle challenge: products must be "deleted" while order history
keeps pointing at them, restorable, and old data must leave the hot tables without a
row going missing. The checks judge behaviour, locks and invariants, on data planted
from the run's seed (``labs.course.adversarial``):

* q1 puts products back as the dataset has them (``products_sku_key``, no view), runs
  the learner's statements one by one while an ordinary writer holds ``ROW EXCLUSIVE``
  on products (``migrations_probe.probe_steps``: an index build or drop that waits for a
  lock conflicting with writers is the outage, whatever its words; after each statement a
  valid unique index on products (sku) must still stand), watches that no row changed,
  then, in a transaction it rolls back on a non-UTC session: changes products
  *after* the answer ran (a product deleted must vanish from ``active_products``, a
  re-listed one appear: a materialized view does neither), plants rows (a ``deleted_at``
  in the future, SKUs that differ only by case or hold LIKE metacharacters, a price of
  0) and compares whole rows with ``products WHERE deleted_at IS NULL``; re-uses deleted
  SKUs (twice) and duplicates live ones with every other column different; and reads
  plans of lookups by several SKUs;
* q2 hands ``restore_product`` a caller's connection (``left_behind.Caller``) and asks
  it the easy cases (a free SKU, a twin deleted under the same SKU, a case variant and a
  LIKE look-alike that are *other* SKUs), the no-ops (a live product, a missing id),
  a deleted_at ahead of the clock, the conflict, a lock timeout (a short lock_timeout
  while another transaction holds the row: 55P03 must reach the caller, not become a
  ValueError, within about twice the caller's lock_timeout, and the lock_timeout in force
  after each statement may not be longer than the caller's), a re-listing in flight (an uncommitted INSERT committed, or rolled back,
  once the restore waits for it), and then the race: another session re-lists the SKU
  after each of the restore's statements in turn (a check-then-update lets the 23505
  escape); after every statement, no lock on products that stops writers;
* q3 plants orders at and around a seeded cutoff instant (microseconds before and
  after, the cutoff itself, the local and UTC midnights around it), for several
  customers, with a tie group on ``created_at`` larger than a batch and a size no
  batch divides; runs the archiver on non-UTC caller connections, crashes it after
  three committed batches, resumes it, and compares counts and checksums of live ∪
  archive, and of each side, with the state before and with the rule
  ``created_at < cutoff AND status IN (closed)``; no order on one side with an item on the
  other, after the crash and at the end; no writer-blocking lock on orders or order_items
  after any statement; last, on new orders, another session reopens an order of the batch
  after the archiver's 1st..4th statement in turn: a reopening that commits first keeps the
  order live with all its items and out of the returned count, one that waits finds it
  archived whole; likewise another session closes an old straggler (shipped → delivered)
  whose id lies inside the batch: every order must still end whole on one side (an archiver
  that chooses the batch once per statement splits two orders); and an item's quantity
  updated mid-batch must survive in its one copy. Last, an eligible order held by another
  transaction's row lock while the archiver runs (released once it waits) must be archived:
  FOR UPDATE SKIP LOCKED passes it by and reports done.

Every caller's connection (``Caller`` below) must be left without temporary tables,
cursors WITH HOLD, SQL prepared statements or LISTEN channels.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import threading
import time
import uuid
from typing import Any, Callable, Sequence
from zoneinfo import ZoneInfo

import psycopg

from ..course import adversarial as adv
from ..course.checking import CheckFailed, NotAttempted, call_answer, compare_results, require
from ..course.left_behind import Caller
from ..course.left_behind import caller_settings, untouched
from ..data.dataset import query_checksum
from ..tools import explain as ex
from ..tools.migrations_probe import (WRITE_BLOCKING, Interrupted, RecordingConnection,
                                      StepEvidence, probe_steps)
from ..tools.stress import HookedConnection
from .indexing import split_statements


CUTOFF = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
CLOSED = ("delivered", "cancelled", "refunded")
OPEN = ("pending", "paid", "shipped")
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

# products as the dataset has them: only these indexes, no active_products
DATASET_PRODUCT_INDEXES = ("products_pkey", "products_sku_key")
# tables no exercise of this challenge may change (products' rows included, for q1)
OTHER_TABLES = ["customers", "accounts", "users"]
PROBE_TIMEOUT = 120.0  # s: CONCURRENTLY waits for every running transaction


# --------------------------------------------------------------------------
# helpers


# SQLSTATEs a learner's function here is likely to meet, and the fix each points at
_ADVICE = {
    "23503": " A row still references the one you deleted: move order_items before "
             "their orders (children first), in the same transaction.",
    "23505": " The archive already holds that id: a batch was archived twice, or "
             "copied without being deleted.",
    "25P02": " An earlier statement failed and the transaction was not rolled back.",
}

_call = functools.partial(call_answer, advice=_ADVICE, passing=(Interrupted,))


def _verify(caller: Caller, what: str) -> None:
    """``caller.verify``, then end the transaction its own settings query opened.

    (``Caller.problems`` reads pg_settings on the caller's autocommit-off
    connection, which begins a transaction; left open, the learner's next
    ``with conn.transaction():`` would become a savepoint and never commit.)
    """
    caller.verify(what)
    if caller.conn.autocommit:
        raise CheckFailed(f"After {what}, the caller's connection was in autocommit mode: it "
                          "was handed over with autocommit off, and must be returned so "
                          "(use `with conn.transaction():` rather than switching autocommit).")
    if caller.conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        caller.conn.rollback()


def _sku_attnum(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT attnum FROM pg_attribute WHERE attrelid = 'products'::regclass "
                        "AND attname = 'sku'").fetchone()[0]


def _active_unique_index(conn: psycopg.Connection) -> str | None:
    """The name of a valid UNIQUE index on products (sku) alone, with a predicate.

    Which predicate is judged by behaviour (q1 re-uses deleted SKUs and duplicates
    live ones), not by its text.
    """
    row = conn.execute("""
        SELECT i.indexrelid::regclass::text FROM pg_index i
        WHERE i.indrelid = 'products'::regclass AND i.indisunique AND i.indisvalid
          AND i.indnkeyatts = 1 AND i.indkey[0] = %s AND i.indexprs IS NULL
          AND i.indpred IS NOT NULL
        ORDER BY 1 LIMIT 1""", [_sku_attnum(conn)]).fetchone()
    return row[0] if row else None


def _until_done_or_waiting(work: Callable[[], None], monitor: psycopg.Connection,
                           pid: int) -> tuple[threading.Thread, bool]:
    """Start ``work`` (another session's statement, on the backend ``pid``) in a thread
    and return once it has finished or waits in the lock manager (``pg_blocking_pids``),
    with whether it waits: the same interleaving on every run, no sleeps. A waiting
    statement finishes later, when the transaction it waits for ends."""
    t = threading.Thread(target=work, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while t.is_alive() and time.monotonic() < deadline:
        if monitor.execute("SELECT cardinality(pg_blocking_pids(%s))", [pid]).fetchone()[0]:
            return t, True
        t.join(0.002)
    return t, False


def _new_product(conn: psycopg.Connection, sku: str, *, name: str = "Check item",
                 category: str = "home", vendor: str = "Check Vendor", price: str = "1.00",
                 deleted_at: Any = None) -> int:
    return conn.execute(
        "INSERT INTO products (sku, name, category, vendor, price, updated_at, deleted_at) "
        "VALUES (%s, %s, %s, %s, %s, now(), %s) RETURNING id",
        [sku, name, category, vendor, price, deleted_at]).fetchone()[0]


# --------------------------------------------------------------------------
# q1: the view and the partial unique index


def _start_from_dataset(lab: Any) -> None:
    """Products as the dataset has them, so the answer's statements run from the start.

    The check judges the migration by the locks each statement takes, so it must
    run every statement, not skip those whose objects a previous run created.
    """
    with psycopg.connect(lab.url, autocommit=True) as conn:
        kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = "
                            "to_regclass('active_products')").fetchone()
        if kind:
            what = {"v": "VIEW", "m": "MATERIALIZED VIEW", "r": "TABLE", "p": "TABLE",
                    "f": "FOREIGN TABLE", "i": "INDEX", "S": "SEQUENCE"}.get(kind[0], "TABLE")
            conn.execute(f"DROP {what} active_products CASCADE")
        for (name,) in conn.execute("""
                SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                WHERE i.indrelid = 'products'::regclass AND c.relname <> ALL(%s)
                  AND (%s = ANY(i.indkey::int2[]) OR i.indexprs IS NOT NULL
                       OR i.indpred IS NOT NULL OR NOT i.indisvalid)""",
                [list(DATASET_PRODUCT_INDEXES), _sku_attnum(conn)]).fetchall():
            conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        valid = conn.execute("SELECT indisvalid FROM pg_index "
                             "WHERE indexrelid = to_regclass('products_sku_key')").fetchone()
        if valid and not valid[0]:
            conn.execute("DROP INDEX CONCURRENTLY products_sku_key")
            valid = None
        if valid is None:
            try:
                conn.execute("CREATE UNIQUE INDEX CONCURRENTLY products_sku_key ON products (sku)")
            except psycopg.errors.UniqueViolation as exc:
                conn.execute("DROP INDEX IF EXISTS products_sku_key")
                raise CheckFailed(
                    "products now holds several rows with the same SKU (deleted ones count "
                    "too), so the check cannot put products back as the dataset has it "
                    "(products_sku_key) to run your statements from the start. Start this "
                    "notebook's database again (`lab.reset()`, then Run All).",
                    exc.diag.message_detail or "") from None


def _locks_verdict(evidence: Sequence[StepEvidence]) -> None:
    """Fail on the first statement that waited for a lock an ordinary writer conflicts with."""
    for ev in evidence:
        if not ev.blocks_writes:
            continue
        statement = " ".join(ev.sql.split())
        if ev.lock_awaited == "ShareLock":
            raise CheckFailed(
                f"`{statement}` waited for ShareLock on products behind an ordinary INSERT: "
                "an index built without CONCURRENTLY holds that lock for the whole build, and "
                "every INSERT, UPDATE and DELETE on products waits until it ends (minutes at "
                "10 million rows: a storefront that cannot sell). Build it with CREATE UNIQUE "
                "INDEX CONCURRENTLY.", ev.row()[1])
        if ev.lock_awaited == "AccessExclusiveLock":
            raise CheckFailed(
                f"`{statement}` asked for AccessExclusiveLock on products: it queues behind "
                "every running transaction on products, and every query on products, reads "
                "included, queues behind it. Drop (or replace) indexes with DROP INDEX "
                "CONCURRENTLY.", ev.row()[1])
        raise CheckFailed(
            f"`{statement}` waited for {ev.lock_awaited} on products behind an ordinary "
            "INSERT: while it runs, writers on products wait. Every step of this migration "
            "must let the storefront write (CREATE/DROP INDEX CONCURRENTLY, CREATE VIEW).",
            ev.row()[1])


def _run_by_locks(lab: Any, soft_delete_sql: str) -> str | None:
    """Run each statement (for real) while a writer holds ROW EXCLUSIVE on products.

    Returns the first statement after which no unique index on products (sku) stood.
    """
    statements = split_statements(soft_delete_sql)
    if not statements:
        raise NotAttempted()
    gap = None
    for statement in statements:
        evidence = probe_steps(lab, [statement], table="products", timeout=PROBE_TIMEOUT)
        ev = evidence[0]
        if ev.error and not ev.error.startswith(("42P07", "42710")):  # "already exists"
            raise CheckFailed(f"PostgreSQL rejected your statements: {ev.error.split(': ', 1)[-1]}",
                              f"SQLSTATE {ev.error.split(':')[0]}; statement: {statement}")
        _locks_verdict(evidence)
        if gap is None and not _uniqueness_kept(lab):
            gap = statement
    return gap


def _uniqueness_kept(lab: Any) -> bool:
    """After each statement, some valid unique index on products (sku) must still stand.

    Dropping the old index before the partial one is built leaves the storefront without
    any SKU uniqueness for the whole build (minutes at 10 million rows): two live
    products can take one SKU meanwhile, and the build then fails, INVALID.
    """
    with psycopg.connect(lab.url, autocommit=True) as conn:
        # sku alone (with or without a predicate), or (sku, deleted_at) NULLS NOT DISTINCT:
        # each keeps two live products from sharing a SKU
        kept = conn.execute("""
            SELECT count(*) FROM pg_index i
            WHERE i.indrelid = 'products'::regclass AND i.indisunique AND i.indisvalid
              AND i.indexprs IS NULL AND i.indkey[0] = %(sku)s
              AND (i.indnkeyatts = 1 OR (i.indnkeyatts = 2 AND i.indnullsnotdistinct
                                         AND i.indkey[1] = %(deleted)s))""",
                            {"sku": _sku_attnum(conn), "deleted": conn.execute(
                                "SELECT attnum FROM pg_attribute WHERE attrelid = "
                                "'products'::regclass AND attname = 'deleted_at'").fetchone()[0]}
                            ).fetchone()[0]
    return bool(kept)


def _uniqueness_gap_verdict(statement: str | None) -> None:
    if statement is not None:
        shown = " ".join(statement.split())
        raise CheckFailed(
            f"After `{shown}`, products had no valid unique index on sku at all: from then "
            "until your partial unique index is built (minutes at 10 million rows), nothing "
            "stops two live products from taking one SKU, and if that happens the build fails "
            "and leaves an INVALID index. Build the partial unique index first (CREATE UNIQUE "
            "INDEX CONCURRENTLY … WHERE deleted_at IS NULL), then drop products_sku_key.")


def _view_against_products(conn: psycopg.Connection, when: str) -> None:
    """active_products' ids against the products that are not deleted, now."""
    shown_deleted = [r[0] for r in conn.execute(
        "SELECT a.id FROM active_products a JOIN products p USING (id) "
        "WHERE p.deleted_at IS NOT NULL ORDER BY 1").fetchall()]
    hidden_live = [r[0] for r in conn.execute(
        "SELECT id FROM products WHERE deleted_at IS NULL "
        "EXCEPT SELECT id FROM active_products ORDER BY 1").fetchall()]
    if shown_deleted or hidden_live:
        parts = []
        if shown_deleted:
            parts.append(f"shows {len(shown_deleted):,} soft-deleted products (ids such as "
                         f"{shown_deleted[:3]})")
        if hidden_live:
            parts.append(f"hides {len(hidden_live):,} products that are not deleted (ids such "
                         f"as {hidden_live[:3]})")
        raise CheckFailed(f"{when}, active_products " + " and ".join(parts) + ": it must list "
                          "exactly the products WHERE deleted_at IS NULL (a deleted_at in the "
                          "future is deleted too: deleted_at records a deletion, not a plan).")


def q1(lab: Any, soft_delete_sql: str) -> str:
    """active_products hides deleted rows; a deleted SKU can be reused; two active ones cannot."""
    require(soft_delete_sql)
    r = adv.rng()
    _start_from_dataset(lab)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        deleted_before = dict(conn.execute(
            "SELECT id, deleted_at FROM products WHERE deleted_at IS NOT NULL").fetchall())
    with untouched(lab, ["products", "orders", "order_items", *OTHER_TABLES],
                   why="exercise 1 changes the schema (a view, indexes), never rows"):
        gap = _run_by_locks(lab, soft_delete_sql)
        with psycopg.connect(lab.url, autocommit=True) as conn:
            deleted_after = dict(conn.execute(
                "SELECT id, deleted_at FROM products WHERE deleted_at IS NOT NULL").fetchall())
        undeleted = sorted(set(deleted_before) - set(deleted_after))
        if undeleted:
            raise CheckFailed(
                f"Your statements un-deleted {len(undeleted):,} soft-deleted products (ids such "
                f"as {undeleted[:3]}): exercise 1 changes the schema, never the data. A "
                "soft-deleted product must stay deleted (run `lab.reset()` to get them back).")
    zone = adv.non_utc_zone()
    with psycopg.connect(lab.url) as conn:
        if conn.execute("SELECT to_regclass('active_products')").fetchone()[0] is None:
            raise CheckFailed("There is no view (or table) active_products: CREATE VIEW "
                              "active_products AS SELECT … FROM products WHERE …")
        columns = [c.name for c in conn.execute("SELECT * FROM active_products LIMIT 0").description]
        want = [c.name for c in conn.execute("SELECT * FROM products LIMIT 0").description]
        conn.rollback()
        if columns != want:
            raise CheckFailed(f"active_products has the columns {columns}; it should have all of "
                              f"products' columns, in order ({want}), so that code can switch "
                              "from products to active_products without other changes.")
        with conn.transaction(force_rollback=True):
            conn.execute("SELECT set_config('TimeZone', %s, true)", [zone])
            _view_against_products(conn, "Right after your statements")
            _later_changes(conn, r)
            _planted_rows(conn, r)
            _reuse_and_duplicates(conn, r)
            _upsert_infers(conn, r)
        index = _active_unique_index(conn)
        conn.rollback()
        if index is None:
            raise CheckFailed("No valid unique index on products (sku) with a WHERE clause was "
                              "found; uniqueness among active products must be enforced by a "
                              "partial unique index on sku alone (an INVALID index, left by a "
                              "failed CREATE INDEX CONCURRENTLY, enforces nothing).")
        _uniqueness_gap_verdict(gap)  # the end state is right; the way there was not
        live = [row[0] for row in conn.execute(
            "SELECT sku FROM products WHERE deleted_at IS NULL ORDER BY id").fetchall()]
        gone = [row[0] for row in conn.execute(
            "SELECT sku FROM products WHERE deleted_at IS NOT NULL ORDER BY id").fetchall()]
        conn.rollback()
    # a live SKU, a deleted one, and one that matches nothing (with LIKE metacharacters)
    skus = [r.choice(live)] + ([r.choice(gone)] if gone else [])
    skus.append(f"{r.choice('KMPQ')}{r.randint(100, 999)}_%-none")
    for sku in skus:
        plan = ex.explain(lab, "SELECT * FROM active_products WHERE sku = %(sku)s", {"sku": sku})
        ex.assert_no_node(plan, "Seq Scan", "products",
                          f"Looking up an active product by sku ({sku!r}) reads the whole "
                          "products table: the view's WHERE deleted_at IS NULL must match the "
                          "index's predicate so the partial index can answer it.")
    return ("active_products follows products (deletions and re-listings after it was created "
            "included); a deleted SKU can be reused, two active ones cannot; the index was "
            "built and the old one dropped without blocking writers; lookups by sku use it")


def _later_changes(conn: psycopg.Connection, r: Any) -> None:
    """Products deleted, re-listed and added after the answer ran: a view follows, a snapshot not."""
    live = [row[0] for row in conn.execute(
        "SELECT id FROM products WHERE deleted_at IS NULL ORDER BY id").fetchall()]
    free = [row[0] for row in conn.execute(
        "SELECT id FROM products p WHERE deleted_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
        "products q WHERE q.sku = p.sku AND q.deleted_at IS NULL) ORDER BY id").fetchall()]
    if not live or not free:
        raise CheckFailed("The dataset's products are missing live or soft-deleted rows, which "
                          "this check needs: start this notebook's database again "
                          "(`lab.reset()`, then Run All).")
    gone, back = r.choice(live), r.choice(free)
    conn.execute("UPDATE products SET deleted_at = now() WHERE id = %s", [gone])
    conn.execute("UPDATE products SET deleted_at = NULL WHERE id = %s", [back])
    added = _new_product(conn, f"CHECK-{uuid.uuid4().hex[:10]}")
    shown = {row[0] for row in conn.execute(
        "SELECT id FROM active_products WHERE id = ANY(%s)", [[gone, back, added]]).fetchall()}
    if gone in shown or back not in shown or added not in shown:
        wrong = []
        if gone in shown:
            wrong.append(f"still lists product {gone}, soft-deleted after your statements ran")
        if back not in shown:
            wrong.append(f"does not list product {back}, re-listed (deleted_at set back to "
                         "NULL) after your statements ran")
        if added not in shown:
            wrong.append(f"does not list product {added}, added after your statements ran")
        raise CheckFailed(
            "active_products " + "; it ".join(wrong) + ". It is a snapshot (a materialized view, "
            "or a table) of the products at the time it was made, not a view: CREATE VIEW "
            "active_products AS SELECT * FROM products WHERE deleted_at IS NULL, which PostgreSQL "
            "evaluates on every query.")
    _view_against_products(conn, "After products were deleted, re-listed and added")


def _planted_rows(conn: psycopg.Connection, r: Any) -> None:
    """Rows that tell the asked filter from an almost-right one; whole rows compared."""
    tag = f"{r.randint(10_000, 99_999)}"
    base = f"chk-{tag}-{r.choice('abcdefgh')}{r.choice('kmnpqrs')}"
    variants = adv.case_variants(base, rand=r)
    conn.execute("SAVEPOINT planted")
    try:
        for variant in variants:  # three live SKUs, equal only when case is ignored
            _new_product(conn, variant, name=f"Case {variant}", price="0.00")
    except psycopg.errors.UniqueViolation as exc:
        raise CheckFailed(
            f"Three live products whose SKUs differ only in case ({variants[0]!r}, "
            f"{variants[1]!r}, …) could not all be listed: {exc.diag.message_primary}. "
            "SKUs are case-sensitive "
            "in this shop: the partial unique index is on sku itself, not lower(sku).") from None
    conn.execute("RELEASE SAVEPOINT planted")
    for trap, lookalike in adv.like_traps(rand=r, domain="sku"):
        _new_product(conn, trap, name=f"100% {trap}", vendor="Trap_Vendor",
                     deleted_at=dt.datetime.now(dt.timezone.utc)
                     - dt.timedelta(days=r.randint(1, 400)))
        _new_product(conn, lookalike, name=f"{lookalike} \\ look-alike", price="0.00")
    now = conn.execute("SELECT now()").fetchone()[0]
    for when in adv.instants_around(now)[:3] + [now + dt.timedelta(days=r.randint(1, 30))]:
        _new_product(conn, f"CHECK-{uuid.uuid4().hex[:10]}", deleted_at=when)
    _view_against_products(conn, "With products deleted a microsecond ago, now, and in the future")
    got = conn.execute("SELECT * FROM active_products")
    got_rows, got_cols = got.fetchall(), [c.name for c in got.description]
    want = conn.execute("SELECT * FROM products WHERE deleted_at IS NULL")
    try:
        compare_results(got_cols, got_rows, [c.name for c in want.description], want.fetchall(),
                        what="active_products")
    except CheckFailed as exc:
        raise CheckFailed(exc.message + " Its rows must be products' rows, unchanged: SELECT * "
                          "FROM products WHERE deleted_at IS NULL.", exc.detail) from None


def _reuse_and_duplicates(conn: psycopg.Connection, r: Any) -> None:
    """A deleted SKU can be listed again, twice over; a live SKU cannot be listed twice."""
    sku = f"CHECK-{uuid.uuid4().hex[:10]}"
    _new_product(conn, sku)
    for round_ in (1, 2):  # delete and re-list twice: two deleted rows, one live, same SKU
        conn.execute("SAVEPOINT reuse")
        try:  # the same now() both times: one transaction
            conn.execute("UPDATE products SET deleted_at = now() WHERE sku = %s "
                         "AND deleted_at IS NULL", [sku])
        except psycopg.errors.UniqueViolation as exc:
            raise CheckFailed(
                "Soft-deleting a product (UPDATE products SET deleted_at = now()) failed with "
                f"23505 ({exc.diag.message_primary}) because another product with the same SKU "
                "had been deleted at the same instant: your unique index still counts deleted "
                "rows (deleted_at as a key column, NULLS NOT DISTINCT, …), so deleting can "
                "fail. Uniqueness must cover live products only: a partial unique index on "
                "sku alone, WHERE deleted_at IS NULL.") from None
        try:
            _new_product(conn, sku, vendor=f"Re-lister {round_}")
        except psycopg.errors.UniqueViolation as exc:
            raise CheckFailed(
                "A new product cannot reuse the SKU of a soft-deleted product"
                f"{' (the second time it is deleted)' if round_ == 2 else ''}: "
                f"{exc.diag.message_primary}. The unique index on sku still counts deleted "
                "rows, so a SKU can never be reused (and a vendor re-listing an item fails). "
                "Make it a partial unique index, UNIQUE (sku) WHERE deleted_at IS NULL, and "
                "drop the old one.") from None
        conn.execute("RELEASE SAVEPOINT reuse")
    dataset_sku = r.choice([row[0] for row in conn.execute(
        "SELECT sku FROM products WHERE deleted_at IS NULL AND NOT starts_with(sku, 'CHECK-') "
        "ORDER BY id").fetchall()])
    for dup, how in ((sku, "every other column the same"),
                     (dataset_sku, "another vendor, category and name, and a price of 0")):
        conn.execute("SAVEPOINT duplicate")
        try:
            if how.startswith("every"):
                conn.execute("INSERT INTO products (sku, name, category, vendor, price, "
                             "attributes, updated_at) SELECT sku, name, category, vendor, price, "
                             "attributes, updated_at FROM products WHERE sku = %s AND "
                             "deleted_at IS NULL", [dup])
            else:
                _new_product(conn, dup, name=f"Duplicate {r.randint(1, 99)}", category="garden",
                             vendor=f"Other Vendor {r.randint(1, 99)}", price="0.00")
        except psycopg.errors.UniqueViolation:
            conn.execute("ROLLBACK TO SAVEPOINT duplicate")
        else:
            raise CheckFailed(
                f"Two active products can now share a SKU ({dup!r}, the second with {how}): "
                "the partial index must be UNIQUE, on sku alone, for every row WHERE deleted_at "
                "IS NULL. Soft delete relaxes uniqueness for deleted rows only.")


def _upsert_infers(conn: psycopg.Connection, r: Any) -> None:
    """The feeds' upsert, ON CONFLICT (sku) WHERE deleted_at IS NULL, finds its arbiter:
    it updates the live product of a SKU, and inserts one for a SKU only deleted rows hold.

    ON CONFLICT infers a partial index only when the index's predicate follows from the
    WHERE it is given; NOT NULL constraints do not count, so a predicate with more in it
    (`AND sku IS NOT NULL`) enforces the same rows yet is never inferred: 42P10.
    """
    live_id, live_sku = r.choice(conn.execute(
        "SELECT id, sku FROM products WHERE deleted_at IS NULL AND NOT starts_with(sku, "
        "'CHECK-') ORDER BY id").fetchall())
    price = f"{r.randint(1, 999)}.{r.randint(1, 99):02d}"
    upsert = ("INSERT INTO products AS p (sku, name, category, vendor, price, updated_at) "
              "VALUES (%s, 'Feed item', 'home', 'Feed Vendor', %s, now()) "
              "ON CONFLICT (sku) WHERE deleted_at IS NULL "
              "DO UPDATE SET price = EXCLUDED.price, updated_at = EXCLUDED.updated_at")
    conn.execute("SAVEPOINT upsert")
    try:
        conn.execute(upsert, [live_sku, price])
    except psycopg.Error as exc:
        conn.execute("ROLLBACK TO SAVEPOINT upsert")
        raise CheckFailed(
            f"The vendor feeds' upsert, INSERT … ON CONFLICT (sku) WHERE deleted_at IS NULL DO "
            f"UPDATE …, fails with SQLSTATE {exc.sqlstate} ({exc.diag.message_primary}): ON "
            "CONFLICT inference finds no arbiter. It infers a partial unique index only when "
            "the index's predicate follows from the ON CONFLICT's WHERE, and it does not use "
            "the column's NOT NULL to get there: a predicate with more in it (AND sku IS NOT "
            "NULL, …) enforces the same rows but is never inferred, and every feed load stops. "
            "Make the predicate exactly WHERE deleted_at IS NULL (the view's, too).") from None
    rows = conn.execute("SELECT id, price::text FROM products WHERE sku = %s AND deleted_at "
                        "IS NULL", [live_sku]).fetchall()
    if rows != [(live_id, price)]:
        raise CheckFailed(
            f"The vendor feeds' upsert of the live SKU {live_sku!r} (ON CONFLICT (sku) WHERE "
            "deleted_at IS NULL DO UPDATE) did not update its live product "
            f"{live_id}: the live products with that SKU are now {rows}. The partial unique "
            "index on sku WHERE deleted_at IS NULL must be its arbiter.")
    conn.execute("RELEASE SAVEPOINT upsert")


# --------------------------------------------------------------------------
# q2: restore


def _strong_locks(monitor: psycopg.Connection, pid: int,
                  tables: Sequence[str]) -> list[tuple[str, str]]:
    """(table, mode) of the locks a backend holds on ``tables`` that stop ordinary writers."""
    return monitor.execute(
        "SELECT relation::regclass::text, mode FROM pg_locks WHERE pid = %s AND granted "
        "AND locktype = 'relation' AND mode = ANY(%s) AND relation = ANY(%s::regclass[]) "
        "ORDER BY 1, 2", [pid, sorted(WRITE_BLOCKING), list(tables)]).fetchall()


def _locks_taken_verdict(taken: list[tuple[str, str, str]], who: str, fix: str) -> None:
    """Fail on a table lock that conflicts with the ROW EXCLUSIVE lock of every writer."""
    if taken:
        table, mode, after = taken[0]
        raise CheckFailed(
            f"{who} took {mode} on {table} (held right after `{' '.join(after.split())[:80]}`): "
            "that lock conflicts with the ROW EXCLUSIVE lock every INSERT, UPDATE and DELETE "
            f"takes, so it queues behind every running writer on {table} and then stops them "
            f"all until it commits (checkout, the vendor feed, support). {fix}")


def _restore(caller: Caller, restore_product: Callable[[Any, int], bool], watch: Any,
             product_id: int, hook: Callable[[int, Any], None] | None = None) -> tuple[str, Any]:
    """("ok", result) or ("ValueError", message); any other error fails the check.

    The function gets the caller's connection behind a hook that reads, after each of its
    statements, the table locks it holds on products (``watch`` is the monitor), then
    calls ``hook``.
    """
    taken: list[tuple[str, str, str]] = []

    def after(n: int, sql: Any) -> None:
        taken.extend((t, m, _text(sql)) for t, m in _strong_locks(watch, caller.pid,
                                                                  ["products"]))
        if hook is not None:
            hook(n, sql)

    try:
        result = restore_product(HookedConnection(caller.conn, after), product_id)
    except ValueError as exc:
        outcome: tuple[str, Any] = ("ValueError", str(exc))
    except (NotAttempted, CheckFailed):
        raise
    except psycopg.Error as exc:
        outcome = ("psycopg", exc)
    else:
        outcome = ("ok", result)
    if caller.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE and \
            outcome[0] == "psycopg":
        caller.conn.rollback()  # what the caller does with a failed transaction
    _locks_taken_verdict(
        taken, f"restore_product(conn, {product_id})",
        "Row locks are all a restore needs: UPDATE the one row and let the partial unique "
        "index decide (catch UniqueViolation), no LOCK TABLE.")
    if outcome[0] != "psycopg":
        _verify(caller, f"restore_product(conn, {product_id})")
    return outcome


def _text(sql: Any) -> str:
    try:
        return sql.as_string(None) if hasattr(sql, "as_string") else str(sql)
    except Exception:  # a Composed that needs a connection to render
        return repr(sql)


def _relisted_during(lab: Any, watch: psycopg.Connection, caller: Caller,
                     restore_product: Callable[[Any, int], bool], product_id: int, sku: str,
                     pause_after: int) -> dict[str, Any]:
    """Run the restore; after its ``pause_after``-th statement another session re-lists ``sku``.

    The other session's INSERT runs until it commits or waits in the lock manager
    (then it finishes once the restore's transaction ends): the same interleaving on
    every run, no sleeps.
    """
    box: dict[str, Any] = {"fired": False}
    other = psycopg.connect(lab.url, autocommit=True, application_name="lab check re-lister")
    monitor = psycopg.connect(lab.url, autocommit=True)
    thread: list[threading.Thread] = []

    def relist() -> None:
        try:
            box["relisted"] = _new_product(other, sku, name="Re-listed meanwhile")
        except psycopg.Error as exc:
            box["relist_error"] = exc

    def hook(n: int, sql: Any) -> None:
        if n != pause_after or thread:
            return
        box["fired"], box["after"] = True, _text(sql)
        thread.append(_until_done_or_waiting(relist, monitor, other.info.backend_pid)[0])

    try:
        try:
            box["outcome"] = _restore(caller, restore_product, watch, product_id, hook)
        finally:
            if caller.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                box.setdefault("left_open", True)
            if thread:
                if caller.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    caller.conn.rollback()  # let a waiting re-lister finish
                thread[0].join(30)
    finally:
        other.close()
        monitor.close()
    return box


def q2(lab: Any, restore_product: Callable[[Any, int], bool]) -> str:
    """restore_product: True when restored, False when nothing to do, ValueError on a taken SKU."""
    require(restore_product)
    r = adv.rng()
    prefix = f"CHECK-{r.randint(10_000, 99_999)}-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(lab.url, autocommit=True) as watch, Caller(lab) as caller, \
            untouched(lab, ["orders", "order_items", *OTHER_TABLES],
                      why="restoring changes one product"):
        # first the call that needs nothing (and that an unanswered stub refuses)
        products_before = query_checksum(watch, "SELECT * FROM products")
        kind, value = _restore(caller, restore_product, watch, 2**62)
        if kind != "ok" or value is not False:
            shown_as = f"returned {value!r}" if kind == "ok" else f"raised {kind} {value}"
            raise CheckFailed(f"Restoring a product that does not exist {shown_as}; it should "
                              "return False and change nothing.")
        if query_checksum(watch, "SELECT * FROM products") != products_before:
            raise CheckFailed("Restoring a product that does not exist returned False but "
                              "changed products; with nothing to restore, change nothing.")
        if not _active_unique_index(watch):
            raise CheckFailed("This check needs exercise 1's partial unique index on products "
                              "(sku): run exercise 1 and its check first.")
        old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=r.randint(2, 90),
                                                             microseconds=r.randint(1, 10**6))

        def plant(suffix: str, *, deleted: bool = True, name: str = "Discontinued check item") -> int:
            return _new_product(watch, f"{prefix}{suffix}", name=name, price="3.00",
                                deleted_at=old if deleted else None)

        try:
            case = adv.case_variants("-Case-x", rand=r)
            trap, lookalike = adv.like_traps(rand=r, domain="sku")[0]
            free = plant("-free")
            twin = plant("-free", name="Same SKU, deleted earlier")  # deleted twice: a twin
            case_live, case_deleted = plant(case[1], deleted=False), plant(case[2])
            like_live, like_deleted = plant("-" + lookalike, deleted=False), plant("-" + trap)
            taken = plant("-taken")
            _q2_cases(lab, watch, caller, restore_product, prefix, free, twin,
                      (case_live, case_deleted), (like_live, like_deleted), taken, r)
            others = query_checksum(watch, "SELECT * FROM products WHERE NOT starts_with(sku, "
                                    "%s)", [prefix])
            if others != products_before:
                raise CheckFailed("restore_product changed products other than the one it was "
                                  "asked to restore: restore by id (WHERE id = %s AND deleted_at "
                                  "IS NOT NULL), never by SKU or name.")
        finally:
            watch.execute("DELETE FROM products WHERE starts_with(sku, %s)", [prefix])
    return ("restores a deleted product (twins, case variants and LIKE look-alikes left alone), "
            "is a no-op when there is nothing to restore, refuses (ValueError) when its SKU is "
            "taken, also when another session re-lists it mid-restore; the caller's connection "
            "is left as found")


def _q2_cases(lab: Any, watch: psycopg.Connection, caller: Caller,
              restore_product: Callable[[Any, int], bool], prefix: str, free: int, twin: int,
              case: tuple[int, int], like: tuple[int, int], taken: int, r: Any) -> None:
    def state(pid: int) -> Any:
        row = watch.execute("SELECT deleted_at FROM products WHERE id = %s", [pid]).fetchone()
        return row[0] if row else "missing"

    def must_restore(pid: int, why: str) -> None:
        kind, value = _restore(caller, restore_product, watch, pid)
        if kind == "psycopg":
            raise CheckFailed(f"restore_product(conn, {pid}) raised SQLSTATE {value.sqlstate} "
                              f"({value.diag.message_primary}) for {why}.")
        if kind == "ValueError" or value is not True or state(pid) is not None:
            did = "raised ValueError" if kind == "ValueError" else f"returned {value!r}"
            raise CheckFailed(
                f"restore_product(conn, {pid}) {did} "
                f"for {why}, and the product's deleted_at is now {state(pid)}; it must come back "
                "(deleted_at NULL, committed) and the function return True.",
                f"ValueError: {value}" if kind == "ValueError" else "")

    stamped = watch.execute("SELECT updated_at FROM products WHERE id = %s", [free]).fetchone()[0]
    must_restore(free, "a soft-deleted product whose SKU is free")
    moved, now_at = watch.execute("SELECT updated_at > %s AND updated_at <= now(), updated_at "
                                  "FROM products WHERE id = %s", [stamped, free]).fetchone()
    if not moved and now_at != stamped:
        raise CheckFailed(
            f"restore_product(conn, {free}) restored the product and set its updated_at to "
            f"{now_at.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S.%f} UTC, which is not the "
            f"moment of the restore (the product was last changed at "
            f"{stamped.astimezone(dt.timezone.utc):%H:%M:%S.%f} UTC; the caller's session is in "
            f"{caller.zone}): a timestamp without a time zone (datetime.now() without tzinfo, "
            "now() AT TIME ZONE …, localtimestamp in another zone) is read in the session's "
            "TimeZone and becomes another instant. SET updated_at = now(), in the database.")
    if not moved:
        raise CheckFailed(
            f"restore_product(conn, {free}) restored the product but left its updated_at as "
            "it was: a restore is a change like any other, and in this lab every change to a "
            "product moves updated_at (the search feed and caches sync by it, and challenge 08's "
            "history versions rows by it): SET deleted_at = NULL, updated_at = now().")
    shown = watch.execute("SELECT count(*) FROM active_products WHERE id = %s", [free]).fetchone()[0]
    if not shown:
        raise CheckFailed("The restored product does not appear in active_products.")
    if state(twin) is None:
        raise CheckFailed(f"Restoring product {free} also restored product {twin}, deleted "
                          "earlier under the same SKU: restore by id, never by SKU.")
    must_restore(case[1], "a product whose SKU differs only in case from a live product's (a "
                 "different SKU: the partial unique index is case-sensitive)")
    must_restore(like[1], "a product whose SKU, used as a LIKE pattern, matches a live product's "
                 "(a different SKU: compare SKUs with =, never LIKE)")
    # deleted, with a deleted_at ahead of the database's clock (an application server's
    # clock, a delisting entered for later): active_products hides it, so it is deleted
    ahead = r.randint(2, 3_000_000) + r.randint(1, 999_999) / 1e6
    future = _new_product(watch, f"{prefix}-ahead", deleted_at=dt.datetime.now(dt.timezone.utc)
                          + dt.timedelta(seconds=ahead))
    must_restore(future, f"a product whose deleted_at is {ahead:,.6f} s ahead of the "
                 "database's clock (it is deleted: active_products hides it; whether a product "
                 "is deleted is deleted_at IS NOT NULL, never a comparison with now())")
    for pid, what in ((free, "an already active product"), (2**62, "a product that does not "
                                                                   "exist")):
        before = query_checksum(watch, "SELECT * FROM products WHERE id = %s", [pid])
        kind, value = _restore(caller, restore_product, watch, pid)
        if kind != "ok" or value is not False:
            shown_as = f"returned {value!r}" if kind == "ok" else f"raised {kind} {value}"
            raise CheckFailed(
                f"Restoring {what} {shown_as}; it should return False and change nothing "
                "(a retried request must not look like a second restore).")
        if query_checksum(watch, "SELECT * FROM products WHERE id = %s", [pid]) != before:
            raise CheckFailed(f"Restoring {what} returned False but changed its row; with "
                              "nothing to restore, change nothing (not even updated_at).")

    # the SKU taken by a product listed since, and a twin whose SKU its sibling now holds
    sku = watch.execute("SELECT sku FROM products WHERE id = %s", [taken]).fetchone()[0]
    taker = _new_product(watch, sku, name="Re-listed item", price="2.00")
    for pid, holder, how in ((taken, taker, "a new product listed since"),
                             (twin, free, "the twin restored a moment ago")):
        kind, value = _restore(caller, restore_product, watch, pid)
        if kind == "psycopg":
            raise CheckFailed(
                f"restore_product let SQLSTATE {value.sqlstate} escape "
                f"({value.diag.message_primary}) when an active product ({how}) held the SKU. "
                "Catch the unique violation, roll back, and raise ValueError saying which "
                "product holds the SKU: the caller has a decision to make, not a crash.")
        if kind != "ValueError":
            raise CheckFailed(
                f"restore_product returned {value!r} for a product whose SKU an active product "
                f"({how}) holds; it must raise ValueError (an API answers 409 Conflict).")
        if state(pid) is None or state(holder) is not None:
            raise CheckFailed("restore_product refused the conflicting restore but changed "
                              "which product is active anyway.")

    _row_locked_elsewhere(lab, caller, restore_product, watch, prefix, r)

    # the race: the SKU is re-listed by another session in the middle of the restore
    for pause_after in range(1, 13):
        pid = _new_product(watch, f"{prefix}-race-{pause_after}",
                           deleted_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3))
        sku = f"{prefix}-race-{pause_after}"
        box = _relisted_during(lab, watch, caller, restore_product, pid, sku, pause_after)
        if not box["fired"]:
            break
        kind, value = box["outcome"]
        after = " ".join(box["after"].split())[:80]
        if kind == "psycopg":
            raise CheckFailed(
                f"restore_product let SQLSTATE {value.sqlstate} escape "
                f"({value.diag.message_primary}) when another session re-listed the SKU "
                f"between two of its statements (right after `{after}`). A check before the "
                "UPDATE is out of date by the time the UPDATE runs: let the partial unique index "
                "decide (catch UniqueViolation on the UPDATE, roll back, raise ValueError).")
        active = [row[0] for row in watch.execute(
            "SELECT id FROM products WHERE sku = %s AND deleted_at IS NULL", [sku]).fetchall()]
        relisted = box.get("relisted")
        if kind == "ok" and value is True:
            if active != [pid]:
                raise CheckFailed(
                    f"restore_product returned True while another session re-listed its SKU "
                    f"(right after `{after}`), but product {pid} is not the one active product "
                    f"with that SKU (active: {active}).")
        elif kind == "ValueError":
            if relisted is None or active != [relisted]:
                raise CheckFailed(
                    f"restore_product raised ValueError while another session re-listed its "
                    f"SKU (right after `{after}`), but the database says otherwise: the "
                    f"active products with that SKU are {active}.")
        else:
            raise CheckFailed(
                f"restore_product returned {value!r} for a deleted product while another "
                f"session re-listed its SKU (right after `{after}`): it must either restore it "
                "(True) or refuse with ValueError.")
    _restored_twice(lab, watch, caller, restore_product, prefix)
    # a re-listing already in flight (not committed) when the restore starts
    for commit in (True, False):
        _pending_listing(lab, caller, restore_product, watch, prefix, commit)


def _restored_twice(lab: Any, watch: psycopg.Connection, caller: Caller,
                    restore_product: Callable[[Any, int], bool], prefix: str) -> None:
    """Two restores of one product at once: after each statement of the first, a second one.

    The second runs on its own connection until it returns or waits in the lock manager
    (then it finishes once the first's transaction ends): exactly one may return True.
    """
    for pause_after in range(1, 13):
        pid = _new_product(watch, f"{prefix}-twice-{pause_after}",
                           deleted_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=4))
        box: dict[str, Any] = {"fired": False}
        monitor = psycopg.connect(lab.url, autocommit=True)
        second = Caller(lab)
        thread: list[threading.Thread] = []

        def again() -> None:
            try:
                box["second"] = ("ok", restore_product(second.conn, pid))
            except BaseException as exc:  # noqa: BLE001 - judged below
                box["second"] = (type(exc).__name__, exc)
                if second.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    second.conn.rollback()

        def hook(n: int, sql: Any) -> None:
            if n != pause_after or thread:
                return
            box["fired"], box["after"] = True, _text(sql)
            thread.append(_until_done_or_waiting(again, monitor, second.pid)[0])

        try:
            try:
                first = _restore(caller, restore_product, watch, pid, hook)
            finally:
                if thread:
                    if caller.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                        caller.conn.rollback()  # let a waiting second restore finish
                    thread[0].join(30)
        finally:
            monitor.close()
            second.conn.close()
        if not box["fired"]:
            return
        other = box.get("second", ("still running", None))
        after = " ".join(box["after"].split())[:80]
        if isinstance(other[1], BaseException) and not isinstance(other[1], Exception):
            raise other[1]  # an interrupt, not an answer
        trues = [who for who, (kind, value) in (("first", first), ("second", other))
                 if kind == "ok" and value is True]
        active = watch.execute("SELECT deleted_at IS NULL FROM products WHERE id = %s",
                               [pid]).fetchone()[0]
        if len(trues) > 1:
            raise CheckFailed(
                f"Two restores of product {pid} ran at once (an admin's double-click, an API "
                f"retry after a timeout: the second began right after `{after}` of the first) "
                "and both returned True: each decided on a read that was out of date by the "
                "time it wrote, so the product was 'restored' twice (two audit entries, "
                "updated_at bumped twice). Let the UPDATE decide: UPDATE ... WHERE id = %s AND "
                "deleted_at IS NOT NULL, and return whether it changed a row (rowcount == 1); "
                "a second UPDATE waits for the first's row lock, then finds nothing to do.")
        raised = [(who, kind, value) for who, (kind, value) in (("first", first),
                                                                ("second", other))
                  if kind != "ok"]
        if raised and trues and active:
            who, kind, value = raised[0]
            code = getattr(value, "sqlstate", None)
            raise CheckFailed(
                f"Two restores of product {pid} ran at once (the second began right after "
                f"`{after}` of the first): one restored it, and the {who} raised {kind}"
                + (f" (SQLSTATE {code}: {value.diag.message_primary})" if code else "")
                + " instead of returning False. The second restore of a double-click has "
                "nothing to do: it waits for the first's row lock (within the caller's "
                "lock_timeout, which was minutes here), then finds the product restored and "
                "returns False. No NOWAIT (it fails at once whenever anyone holds the row, even "
                "for a millisecond) and no SKIP LOCKED.")
        if not trues or not active:
            shown = ", ".join(f"{w}: {k} {v!r}" for w, (k, v) in (("first", first),
                                                                   ("second", other)))
            raise CheckFailed(
                f"Two restores of product {pid} ran at once (the second began right after "
                f"`{after}` of the first): exactly one must restore it and return True, the "
                "other return False; " + ("the product is still deleted" if not active else
                                          "neither returned True") + f" ({shown}).")


def _ms(value: str) -> float | None:
    """A duration as current_setting() shows it (250ms, 10s, 1min, 0), in milliseconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*", value or "")
    if not m:
        return None
    return float(m.group(1)) * {"us": 0.001, "ms": 1, None: 1, "s": 1000, "min": 60_000,
                                "h": 3_600_000, "d": 86_400_000}[m.group(2)]


def _row_locked_elsewhere(lab: Any, caller: Caller, restore_product: Callable[[Any, int], bool],
                          watch: psycopg.Connection, prefix: str, r: Any) -> None:
    """Another transaction holds the row past the caller's lock_timeout: not a conflict.

    The lock timeout must reach the caller within about twice the caller's own lock_timeout
    (the answer may not wait longer than the caller allowed: no SET [LOCAL] lock_timeout of
    its own that is longer, no retry loop); the lock_timeout in force is read after each of
    its statements.
    """
    pid = _new_product(watch, f"{prefix}-busy", deleted_at=dt.datetime.now(dt.timezone.utc)
                       - dt.timedelta(days=r.randint(1, 30)))
    timeout_ms = r.randint(150, 400)
    timeout = f"{timeout_ms}ms"
    settings = {**caller_settings(caller.zone), "lock_timeout": timeout}
    holder = psycopg.connect(lab.url, application_name="lab check row holder")
    release = threading.Timer(5.0, holder.rollback)  # an answer that waits forever goes on
    seen: list[tuple[str, str]] = []  # (statement, lock_timeout after it)
    outcome: tuple[str, Any] = ("ok", None)
    try:
        holder.execute("SELECT 1 FROM products WHERE id = %s FOR UPDATE", [pid])
        with Caller(lab, settings=settings) as busy:
            def after(n: int, sql: Any) -> None:
                if busy.conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
                    return  # nothing to read without opening a transaction of our own
                try:
                    value = busy.conn.execute(
                        "SELECT current_setting('lock_timeout')").fetchone()[0]
                except psycopg.Error:
                    return
                seen.append((_text(sql), value))

            release.start()
            t0 = time.perf_counter()
            try:
                outcome = ("ok", restore_product(HookedConnection(busy.conn, after), pid))
            except ValueError as exc:
                raise CheckFailed(
                    f"restore_product raised ValueError ({exc}) when it could not lock the "
                    f"product's row within the caller's lock_timeout ({timeout}: another "
                    "transaction was updating the row). Nothing holds its SKU: that is a lock "
                    "timeout (SQLSTATE 55P03), which the caller retries, not a conflict it "
                    "must resolve. Catch only psycopg.errors.UniqueViolation; let lock "
                    "timeouts, deadlocks and lost connections reach the caller.") from None
            except (NotAttempted, CheckFailed):
                raise
            except Exception as exc:  # the lock timeout, as it came or wrapped: the caller's
                outcome = ("raised", exc)
            waited = time.perf_counter() - t0
    finally:
        release.cancel()
        holder.close()
    longer = [(st, v) for st, v in seen if (ms := _ms(v)) is not None
              and (ms == 0 or ms > timeout_ms)]
    if longer or waited > 2 * timeout_ms / 1000 + 0.5:
        how = "kept trying"
        if longer:
            statement, value = longer[0]
            how = (f"ran with lock_timeout = {value} (seen after "
                   f"`{' '.join(statement.split())[:60]}`)")
        raise CheckFailed(
            f"restore_product waited {waited:.1f} s for a row lock another transaction held, "
            f"although its caller had set lock_timeout = {timeout}: it {how}. The caller's "
            "lock_timeout is its budget (an API request that must answer in time): a restore "
            "that overrides it with a longer one (SET LOCAL lock_timeout), or retries on 55P03, "
            "holds the request and its connection far past it. Use the connection's "
            "lock_timeout as you find it, and let the 55P03 reach the caller at once.")
    if outcome[0] == "raised" and waited < 0.7 * timeout_ms / 1000:
        exc = outcome[1]
        raise CheckFailed(
            f"restore_product gave up after {waited * 1000:.0f} ms on a row another transaction "
            f"held, although its caller had set lock_timeout = {timeout}: it raised "
            f"{type(exc).__name__} ({str(exc).splitlines()[0] if str(exc) else ''}) before the "
            "caller's budget was spent. NOWAIT (or a lock_timeout of its own that is shorter) "
            "fails whenever anyone holds the row for a millisecond: a price feed's UPDATE, the "
            "other click of a double-click. Use the connection's lock_timeout as you find it: "
            "a plain UPDATE waits for the row lock within it.")
    if outcome[0] == "raised":
        return
    raise CheckFailed(
        f"restore_product returned {outcome[1]!r} for a deleted product whose row another "
        f"transaction held locked past the caller's lock_timeout ({timeout}): nothing was "
        "restored, and the caller must not be told there was nothing to restore. Let the "
        "lock timeout (SQLSTATE 55P03) reach the caller.")


def _pending_listing(lab: Any, caller: Caller, restore_product: Callable[[Any, int], bool],
                     watch: psycopg.Connection, prefix: str, commit: bool) -> None:
    """Another session's INSERT of the SKU is in flight when the restore starts.

    It commits (or rolls back) once the restore waits for it in the lock manager: no
    SELECT or NOT EXISTS of the restore can see that row; only the unique index can.
    """
    sku = f"{prefix}-pending-{int(commit)}"
    pid = _new_product(watch, sku, deleted_at=dt.datetime.now(dt.timezone.utc)
                       - dt.timedelta(days=5))
    other = psycopg.connect(lab.url, application_name="lab check importer")
    monitor = psycopg.connect(lab.url, autocommit=True)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["outcome"] = _restore(caller, restore_product, watch, pid)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            box["error"] = exc

    try:
        listed = _new_product(other, sku, name="Listed by the importer")
        t, _ = _until_done_or_waiting(run, monitor, caller.pid)
        other.commit() if commit else other.rollback()
        t.join(60)
    finally:
        other.close()
        monitor.close()
    if "error" in box:
        raise box["error"]
    kind, value = box["outcome"]
    active = [row[0] for row in watch.execute(
        "SELECT id FROM products WHERE sku = %s AND deleted_at IS NULL", [sku]).fetchall()]
    when = ("another session's INSERT of the same SKU, not yet committed when the restore "
            "began, committed while the restore waited for it")
    if not commit:
        if kind != "ok" or value is not True or active != [pid]:
            shown = {"ok": f"returned {value!r}", "ValueError": f"raised ValueError ({value})",
                     "psycopg": f"raised SQLSTATE {getattr(value, 'sqlstate', '')}"}[kind]
            raise CheckFailed(
                f"restore_product {shown} when another session's INSERT of the same SKU, "
                "in flight when the restore began, was rolled back: the SKU was free after "
                "all, so the product must come back (True). Let the partial unique index "
                "decide: it waits for the other transaction and only refuses if it commits.")
        return
    if kind == "psycopg":
        raise CheckFailed(
            f"restore_product let SQLSTATE {value.sqlstate} escape "
            f"({value.diag.message_primary}) when {when}. A SELECT or NOT EXISTS cannot see a "
            "row that is not committed yet; only the unique index sees it, and waits. Catch "
            "UniqueViolation on the UPDATE, roll back, raise ValueError.")
    if kind != "ValueError" or active != [listed]:
        shown = "raised ValueError" if kind == "ValueError" else f"returned {value!r}"
        raise CheckFailed(
            f"restore_product {shown} when {when}; the active products with that SKU are now "
            f"{active} (the importer's is {listed}). The SKU is taken: leave the product "
            "deleted and raise ValueError.")


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


def _state(conn: psycopg.Connection, cutoff: dt.datetime) -> dict[str, tuple[int, str]]:
    p = {"cutoff": cutoff}
    eligible_items = (f"SELECT {ITEM_COLUMNS} FROM order_items WHERE order_id IN "
                      f"(SELECT id FROM orders WHERE {ELIGIBLE})")
    return {
        "orders_all": query_checksum(conn, f"SELECT {ORDER_COLUMNS} FROM orders UNION ALL "
                                     f"SELECT {ORDER_COLUMNS} FROM orders_archive"),
        "items_all": query_checksum(conn, f"SELECT {ITEM_COLUMNS} FROM order_items UNION ALL "
                                    f"SELECT {ITEM_COLUMNS} FROM order_items_archive"),
        "orders_eligible": query_checksum(
            conn, f"SELECT {ORDER_COLUMNS} FROM orders WHERE {ELIGIBLE}", p),
        "orders_staying": query_checksum(
            conn, f"SELECT {ORDER_COLUMNS} FROM orders WHERE NOT ({ELIGIBLE})", p),
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


def _check_cutoff(r: Any) -> dt.datetime:
    """A cutoff instant after CUTOFF (so the notebook's own CUTOFF is archived too), at no
    round second: a cutoff truncated to a date or a second archives the wrong orders."""
    return CUTOFF + dt.timedelta(days=r.randint(1, 40), seconds=r.randint(0, 86_399),
                                 microseconds=r.randint(1, 999_999))


Planted = dict[int, tuple[dt.datetime, str, str]]  # id: (created_at, status, "edge" | "tie")


def _plant_orders(conn: psycopg.Connection, r: Any, cutoff: dt.datetime, zone: str,
                  tie_size: int) -> Planted:
    """Orders at and around the cutoff, and a tie group on created_at, for several customers."""
    customers = [row[0] for row in conn.execute(
        "SELECT id FROM customers WHERE NOT is_load_test ORDER BY id").fetchall()]
    products = [row[0] for row in conn.execute("SELECT id FROM products ORDER BY id LIMIT 200")]
    who = adv.spread(customers, min(7, len(customers)), rand=r)
    local = cutoff.astimezone(ZoneInfo(zone))
    instants = (adv.instants_around(cutoff)
                + adv.day_edges(local.date(), ZoneInfo(zone))
                + adv.day_edges(cutoff.astimezone(dt.timezone.utc).date()))
    rows: list[tuple[dt.datetime, str, str]] = []
    for when in instants:
        rows += [(when, r.choice(CLOSED), "edge"), (when, r.choice(CLOSED), "edge"),
                 (when, r.choice(OPEN), "edge")]
    tie_at = cutoff - dt.timedelta(days=r.randint(2, 300), microseconds=r.randint(1, 999_999))
    rows += [(tie_at, r.choice(CLOSED), "tie") for _ in range(tie_size)]
    r.shuffle(rows)  # ids in no particular order of created_at
    planted: Planted = {}
    for when, status, kind in rows:
        items = r.choice((0, 1, 1, 2, 3))  # an order without lines must move too
        oid = conn.execute(
            "INSERT INTO orders (customer_id, status, created_at, total, shipping_country, note) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            [r.choice(who), status, when, f"{r.randint(1, 99_999) / 100:.2f}",
             r.choice(("FR", "NP", "CA", "NZ")), f"lab check {r.randint(1, 10**6)}"]).fetchone()[0]
        for _ in range(items):
            conn.execute("INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
                         "VALUES (%s, %s, %s, %s)",
                         [oid, r.choice(products), r.randint(1, 4),
                          f"{r.randint(1, 9_999) / 100:.2f}"])
        planted[oid] = (when, status, kind)
    return planted


def _remove_planted(lab: Any, ids: list[int]) -> None:
    with psycopg.connect(lab.url, autocommit=True) as conn, conn.transaction():
        for table, key in (("order_items_archive", "order_id"), ("order_items", "order_id"),
                           ("orders_archive", "id"), ("orders", "id")):
            if conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0]:
                conn.execute(f"DELETE FROM {table} WHERE {key} = ANY(%s)", [ids])


def _boundary_verdict(conn: psycopg.Connection, planted: Planted, cutoff: dt.datetime,
                      zone: str) -> None:
    """Which planted closed orders were archived, against created_at < cutoff."""
    archived = {row[0] for row in conn.execute(
        "SELECT id FROM orders_archive WHERE id = ANY(%s)", [list(planted)]).fetchall()}
    left = dict(conn.execute(f"SELECT id, created_at FROM orders WHERE {ELIGIBLE}",
                             {"cutoff": cutoff}).fetchall())  # eligible, still live
    ties = [i for i, (w, s, kind) in planted.items() if kind == "tie"]
    tied_kept = [i for i in ties if i not in archived]
    if tied_kept and set(left) <= set(ties):
        raise CheckFailed(
            f"Your archiver left {len(tied_kept)} of {len(ties)} closed orders that share one "
            f"created_at ({planted[ties[0]][0].isoformat(sep=' ')}), well before the cutoff, in "
            "the live table: paging by created_at (WHERE created_at > last) skips the rest of "
            "a tie when a batch ends inside it. Page by the key: WHERE id > last ORDER BY id.")
    closed = {i: w for i, (w, s, kind) in planted.items() if s in CLOSED and kind == "edge"}
    wrongly_moved = sorted((w, i) for i, w in closed.items() if w >= cutoff and i in archived)
    wrongly_kept = sorted((w, i) for i, w in closed.items() if w < cutoff and i not in archived)
    shown_cutoff = cutoff.astimezone(ZoneInfo(zone)).isoformat(sep=" ")

    def offset(w: dt.datetime) -> str:
        delta = w - cutoff
        sign = "after" if delta >= dt.timedelta(0) else "before"
        delta = abs(delta)
        if not delta:
            return "exactly at the cutoff"
        return f"{delta.total_seconds():,.6f} s {sign} the cutoff"

    if wrongly_moved:
        w, i = wrongly_moved[0]
        raise CheckFailed(
            f"Your archiver moved {len(wrongly_moved)} closed order(s) created at or after the "
            f"cutoff, such as order {i}, created {offset(w)} (cutoff {shown_cutoff}, the "
            f"session's TimeZone {zone}). The rule is created_at < cutoff, strictly, comparing "
            "timestamptz with timestamptz: pass the cutoff as a parameter, as it is given (not "
            "as a date, a text formatted in some time zone, or a datetime stripped of its "
            "tzinfo), and do not round created_at.")
    # left behind only near the cutoff: the comparison is wrong, not the paging
    if wrongly_kept and left and min(left.values()) >= cutoff - dt.timedelta(days=1):
        w, i = wrongly_kept[-1]  # the closest to the cutoff
        raise CheckFailed(
            f"Your archiver left {len(wrongly_kept)} closed order(s) created before the cutoff "
            f"in the live table, such as order {i}, created {offset(w)} (cutoff "
            f"{shown_cutoff}, the session's TimeZone {zone}). The rule is created_at < cutoff, "
            "comparing timestamptz with timestamptz: do not truncate the cutoff to a date or a "
            "second, do not format it as text, do not cast created_at to date (that uses the "
            "session's TimeZone).")


def _archive_check(lab: Any, archive_orders: Callable[..., int]) -> str:
    r = adv.rng()
    cutoff = _check_cutoff(r)
    zone = adv.non_utc_zone(rand=r)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        dataset_eligible = conn.execute(f"SELECT count(*) FROM orders WHERE {ELIGIBLE}",
                                        {"cutoff": cutoff}).fetchone()[0]
    if dataset_eligible < 8:
        raise CheckFailed(f"Only {dataset_eligible} orders are eligible at this scale; the check "
                          "needs a dataset of at least the tiny scale.")
    batch = max(10, math.ceil((dataset_eligible + 40) / 24))  # about two dozen batches
    tie_size = batch + r.randint(3, 9)  # a tie on created_at wider than a batch
    planted: Planted = {}
    try:
        with psycopg.connect(lab.url, autocommit=True) as conn:
            with conn.transaction():
                planted = _plant_orders(conn, r, cutoff, zone, tie_size)
            eligible = dataset_eligible + sum(1 for w, s, _ in planted.values()
                                              if w < cutoff and s in CLOSED)
            while eligible % batch == 0:  # batching must end in a partial batch
                batch += 1
            conn.execute("ANALYZE orders, order_items")
            before = _state(conn, cutoff)
        with untouched(lab, ["customers", "products", *OTHER_TABLES],
                       why="archival moves orders and their items, nothing else"):
            result = _archive_runs(lab, archive_orders, cutoff, zone, batch, before, planted)
    finally:
        if planted:
            _remove_planted(lab, list(planted))
    return result


def _archive_runs(lab: Any, archive_orders: Callable[..., int], cutoff: dt.datetime, zone: str,
                  batch: int, before: dict, planted: Planted) -> str:
    eligible = before["orders_eligible"][0]
    # the same instant as a caller elsewhere writes it: neither UTC nor the session's zone,
    # so dropping its tzinfo or reading its date gives another instant
    elsewhere = [z for z in adv.NON_UTC_ZONES if z != zone]
    given = cutoff.astimezone(ZoneInfo(adv.rng().choice(elsewhere)))
    settings = {"lock_timeout": "5min", "statement_timeout": "7min",
                "idle_in_transaction_session_timeout": "11min", "TimeZone": zone,
                "application_name": "lab check caller"}
    taken: list[tuple[str, str, str]] = []
    call = f"archive_orders(conn, cutoff, batch_size={batch})"
    roles: list[tuple[str, str]] = []  # (statement, session_replication_role after it)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        files, options = _files(conn), _reloptions(conn)
    with psycopg.connect(lab.url, autocommit=True) as monitor:
        with Caller(lab, settings=settings) as first:
            crashing = RecordingConnection(first.conn, interrupt_after_commits=3,
                                           on_statement=_role_recorder(
                                               first.conn, roles,
                                               _lock_recorder(monitor, first.pid, taken)))
            try:
                _call(archive_orders, crashing, given, batch, who="archive_orders")
                crashed = False
            except Interrupted:
                crashed = True
            # the process died: its connection goes with it (an open transaction rolls back)
        with psycopg.connect(lab.url, autocommit=True) as conn:
            crashed_state = _state(conn, cutoff)
            _not_lost(before, crashed_state, "After a crash following the third committed batch")
            _split_verdict(conn, "After a crash following the third committed batch")
        _locks_taken_verdict(taken, "Your archiver", _ARCHIVER_LOCKS)
        remaining = crashed_state["orders_eligible"][0]
        with Caller(lab, settings=settings) as second:
            resumed = RecordingConnection(second.conn,
                                          on_statement=_role_recorder(
                                              second.conn, roles,
                                              _lock_recorder(monitor, second.pid, taken)))
            moved = _call(archive_orders, resumed, given, batch, who="archive_orders")
            _verify(second, call)
        _locks_taken_verdict(taken, "Your archiver", _ARCHIVER_LOCKS)
    _role_verdict(roles)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        _rewrite_verdict(conn, files, options)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        after = _state(conn, cutoff)
        _not_lost(before, after, "After the archiver, resumed, finished")
        _split_verdict(conn, "After the archiver, resumed, finished")
        _boundary_verdict(conn, planted, cutoff, zone)
    if after["orders_archive"] != before["orders_eligible"]:
        with psycopg.connect(lab.url, autocommit=True) as conn:
            wrong = conn.execute(f"SELECT count(*) FROM orders_archive WHERE NOT ({ELIGIBLE})",
                                 {"cutoff": cutoff}).fetchone()[0]
        left = after["orders_eligible"][0]
        reasons = []
        if wrong:
            reasons.append(f"{wrong:,} open or newer orders were archived, which a customer "
                           "would miss (check eligibility again in the DELETE: a row can change "
                           "between your SELECT and your DELETE)")
        if left:
            reasons.append(f"{left:,} eligible orders were left behind (a batch skipped: page "
                           "by id, WHERE id > last, never by OFFSET while rows are deleted)")
        raise CheckFailed(
            f"The archive holds {after['orders_archive'][0]:,} orders; {eligible:,} orders are "
            f"closed ({', '.join(CLOSED)}) and older than the cutoff: "
            + ("; ".join(reasons) or "the same number, but their contents changed")
            + ". Archive exactly created_at < cutoff AND status IN (…closed…), rows unchanged.")
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
    if moved != remaining:
        raise CheckFailed(f"archive_orders returned {moved!r} after resuming, but it archived "
                          f"{remaining:,} orders in that call: return the number of orders "
                          "this call moved (sum the DELETEs' row counts).")
    with Caller(lab, settings=settings) as third:
        again = _call(archive_orders, third.conn, given, batch, who="archive_orders")
        _verify(third, call + ", run again with nothing left to archive")
    with psycopg.connect(lab.url, autocommit=True) as conn:
        changed = _state(conn, cutoff) != after
    if again != 0 or changed:
        raise CheckFailed(f"A second run, with nothing left to archive, returned {again!r}"
                          + (" and changed the tables" if changed else "")
                          + "; it should return 0 and change nothing.")
    _reopen_races(lab, archive_orders, given, settings)
    _close_races(lab, archive_orders, given, settings)
    _item_update_races(lab, archive_orders, given, settings)
    _held_order(lab, archive_orders, given, settings)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        _rewrite_verdict(conn, files, options)
    return (f"{eligible:,} orders (at and around a cutoff with microseconds, on a {zone} "
            f"session) and {before['items_eligible'][0]:,} items archived in batches of {batch}, "
            "resumed after a crash; live ∪ archive counts and checksums unchanged; orders "
            "reopened by another session mid-batch stay live with all their items; an item updated "
            "mid-batch keeps its update, live or archived")


_ARCHIVER_LOCKS = ("Row locks are all an archiver needs: the DELETEs lock the rows they move, "
                   "and SELECT … FOR UPDATE locks a batch's orders before their items move; "
                   "no LOCK TABLE.")


def _lock_recorder(monitor: psycopg.Connection, pid: int,
                   taken: list[tuple[str, str, str]]) -> Callable[[Any], None]:
    """An on_statement hook: write down the writer-blocking locks held on orders/order_items.

    It only records (the verdict comes after the call): a hook that raised would raise
    inside the learner's code, where an ``except`` could swallow it.
    """
    def record(st: Any) -> None:
        taken.extend((t, m, st.sql) for t, m in _strong_locks(monitor, pid,
                                                              ["orders", "order_items"]))
    return record


def _role_recorder(raw: psycopg.Connection, roles: list[tuple[str, str]],
                   then: Callable[[Any], None]) -> Callable[[Any], None]:
    """An on_statement hook: inside a batch's transaction, read the session_replication_role
    it runs with (on the answer's own connection: a setting is per session), then ``then``."""
    def record(st: Any) -> None:
        if raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            try:
                roles.append((st.sql, raw.execute(
                    "SELECT current_setting('session_replication_role')").fetchone()[0]))
            except psycopg.Error:
                pass
        then(st)
    return record


def _role_verdict(roles: list[tuple[str, str]]) -> None:
    off = [(sql, role) for sql, role in roles if role != "origin"]
    if off:
        sql, role = off[0]
        raise CheckFailed(
            f"Your archiver ran its batches with session_replication_role = {role} (seen after "
            f"`{' '.join(str(sql).split())[:80]}`): that switches off every ordinary trigger, "
            "the foreign keys' RI triggers included, so an order deleted while another session "
            "adds a line to it leaves that line pointing at nothing, and any audit trigger on "
            "orders is skipped. Let the foreign keys work: move items before their orders, in "
            "one transaction, with the triggers on.", f"{len(off)} statements ran so")


def _files(conn: psycopg.Connection) -> dict[str, int]:
    """The file (relfilenode) of orders, order_items and each of their indexes."""
    return dict(conn.execute("""
        SELECT c.relname, pg_relation_filenode(c.oid)::int8 FROM pg_class c
        WHERE c.oid IN ('orders'::regclass, 'order_items'::regclass)
           OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN
                        ('orders'::regclass, 'order_items'::regclass))""").fetchall())


def _reloptions(conn: psycopg.Connection) -> dict[str, list[str]]:
    return {t: sorted(o or []) for t, o in conn.execute(
        "SELECT relname, reloptions FROM pg_class WHERE oid IN ('orders'::regclass, "
        "'order_items'::regclass)").fetchall()}


def _rewrite_verdict(conn: psycopg.Connection, files: dict[str, int],
                     options: dict[str, list[str]]) -> None:
    """No table or index rewritten (VACUUM FULL, CLUSTER, REINDEX), no storage parameter
    changed (autovacuum_enabled = off)."""
    now = _reloptions(conn)
    if now != options:
        for table in options:  # put them back: the next runs and labs need autovacuum
            keys = [o.split("=", 1)[0] for o in now.get(table, [])]
            if keys:
                conn.execute(f"ALTER TABLE {table} RESET ({', '.join(keys)})")
            if options[table]:
                conn.execute(f"ALTER TABLE {table} SET ({', '.join(options[table])})")
        changed = [t for t in options if now.get(t) != options[t]]
        raise CheckFailed(
            f"Your archiver changed the storage parameters of {', '.join(changed)} "
            f"(pg_class.reloptions {options[changed[0]] or 'none'} → "
            f"{now.get(changed[0]) or 'none'}) and left them so: with autovacuum off, the "
            "dead tuples the archival just left are never reclaimed and the statistics go "
            "stale. Leave the tables' settings as you found them; throttle the batches instead "
            "(and if you must change a setting for the run, RESET it in a finally).")
    after = _files(conn)
    rewritten = sorted(n for n in files if n in after and after[n] != files[n])
    if rewritten:
        raise CheckFailed(
            f"Your archiver rewrote {', '.join(rewritten)} (new relfilenode): VACUUM FULL, "
            "CLUSTER or REINDEX copies the table (or index) under ACCESS EXCLUSIVE, and every "
            "query and every checkout waits for the whole copy (minutes at 10 million rows). "
            "Plain VACUUM (ANALYZE) makes the space reusable without blocking anyone; to "
            "shrink the files, pg_repack, off-peak, separately from the archiver.",
            "; ".join(f"{n}: {files[n]} → {after[n]}" for n in rewritten))


def _split_verdict(conn: psycopg.Connection, when: str) -> None:
    """No order may be on one side and any of its items on the other."""
    for items, orders, story in (
            ("order_items_archive", "orders",
             "archived items belong to orders still in the live table (the customer's order "
             "has lost its lines)"),
            ("order_items", "orders_archive",
             "live items belong to archived orders (lines pointing at an order the live "
             "tables no longer have)")):
        rows = conn.execute(f"""
            SELECT i.order_id, count(*) FROM {items} i
            WHERE EXISTS (SELECT 1 FROM {orders} o WHERE o.id = i.order_id)
            GROUP BY 1 ORDER BY 1""").fetchall()
        if rows:
            raise CheckFailed(
                f"{when}, {sum(n for _, n in rows):,} {story}: orders such as "
                f"{[o for o, _ in rows[:3]]}. Items were moved in a different transaction "
                "from their order (a commit between them, or all items before any order), so "
                "a crash, or simply the moment between the two, leaves them apart. An order "
                "and its items move in ONE transaction: items first, then the order, then "
                "COMMIT.")


REOPEN_BATCH = 3  # the reopen races: small batches of planted orders, the only eligible ones


def _held_order(lab: Any, archive_orders: Callable[..., int], given: dt.datetime,
                settings: dict[str, str]) -> None:
    """An eligible order another transaction holds a row lock on (an edit of its note) while
    the archiver runs, released once the archiver waits for it: it must be archived, whole.

    An archiver that skips locked rows (FOR UPDATE SKIP LOCKED) passes it by, its keyset moves
    on, and the run reports done with an eligible order left live. The held order is not the
    first of the batch, and the wait is read from pg_blocking_pids: no sleeps."""
    r = adv.rng()
    ids: list[int] = []
    try:
        with psycopg.connect(lab.url, autocommit=True) as conn:
            with conn.transaction():
                ids = _plant_reopen_batch(conn, r, given)
            held = r.choice(ids[1:])
        holder = psycopg.connect(lab.url, application_name="lab check support")
        monitor = psycopg.connect(lab.url, autocommit=True)
        box: dict[str, Any] = {}
        try:
            holder.execute("SELECT 1 FROM orders WHERE id = %s FOR NO KEY UPDATE", [held])
            with Caller(lab, settings=settings) as caller:
                def run() -> None:
                    try:
                        box["moved"] = archive_orders(caller.conn, given, REOPEN_BATCH)
                    except BaseException as exc:  # noqa: BLE001 - judged below
                        box["error"] = exc

                t = threading.Thread(target=run, daemon=True)
                t.start()
                deadline = time.monotonic() + 30
                waited = False
                while t.is_alive() and time.monotonic() < deadline:
                    if holder.info.backend_pid in monitor.execute(
                            "SELECT pg_blocking_pids(%s)", [caller.pid]).fetchone()[0]:
                        waited = True
                        break
                    t.join(0.002)
                holder.commit()  # the edit ends: a waiting archiver goes on
                t.join(60)
                if "error" in box:
                    exc = box["error"]
                    if isinstance(exc, psycopg.Error):
                        raise CheckFailed(
                            f"While another transaction held a row lock on old order {held} "
                            "(an edit of its note), your archiver failed with SQLSTATE "
                            f"{exc.sqlstate} ({exc.diag.message_primary}): a row lock held "
                            "for a moment is normal; wait for it (plain FOR UPDATE, no NOWAIT, "
                            "no short lock_timeout of your own).")
                    raise exc
                if t.is_alive():
                    raise CheckFailed("Your archiver did not finish within 60 s of the row "
                                      f"lock on order {held} being released.")
                _verify(caller, f"archive_orders(conn, cutoff, batch_size={REOPEN_BATCH})")
        finally:
            holder.close()
            monitor.close()
        with psycopg.connect(lab.url, autocommit=True) as conn:
            left = [row[0] for row in conn.execute(
                f"SELECT id FROM orders WHERE id = ANY(%(ids)s) AND {ELIGIBLE} ORDER BY id",
                {"ids": ids, "cutoff": given}).fetchall()]
        if left:
            raise CheckFailed(
                f"Another transaction held a row lock on old order {held} (closed, created before "
                "the cutoff: eligible) while your archiver ran, "
                + ("and your archiver never waited for it: it" if not waited else "and it")
                + f" returned {box.get('moved')!r} with order(s) {', '.join(map(str, left))} still "
                "in the live table. FOR UPDATE SKIP LOCKED suits a queue that other workers "
                "drain; an archiver run that skips a locked row moves its keyset past it and "
                "reports done with eligible orders left behind. Lock the batch with plain "
                "FOR UPDATE: it waits the moment the other transaction needs, then moves the "
                "order.", f"planted orders {ids}; held {held}")
    finally:
        if ids:
            _remove_planted(lab, ids)


def _reopen_races(lab: Any, archive_orders: Callable[..., int], given: dt.datetime,
                  settings: dict[str, str]) -> None:
    """Another session reopens an order of the batch right after the archiver's k-th statement.

    Only the planted orders are eligible (the main run archived the rest). The reopening
    UPDATE either commits at once (the archiver had not locked the order yet: the order
    must then stay live, with all its items, and not be counted) or waits in the lock
    manager until the batch commits (the archiver had it: it must be archived, whole, and
    the reopening then finds nothing). The same interleaving on every run, no sleeps.
    """
    r = adv.rng()
    for pause_after in range(1, 5):
        ids: list[int] = []
        try:
            with psycopg.connect(lab.url, autocommit=True) as conn:
                with conn.transaction():
                    ids = _plant_reopen_batch(conn, r, given)
                orders = {row[0]: row for row in conn.execute(
                    f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ANY(%s)", [ids])}
                items = _items_by_order(conn, "order_items", ids)
            fired = _reopen_once(lab, archive_orders, given, settings, ids, orders, items,
                                 pause_after)
        finally:
            if ids:
                _remove_planted(lab, ids)
        if not fired:
            break


def _plant_reopen_batch(conn: psycopg.Connection, r: Any, given: dt.datetime) -> list[int]:
    customers = [row[0] for row in conn.execute(
        "SELECT id FROM customers WHERE NOT is_load_test ORDER BY id LIMIT 50").fetchall()]
    products = [row[0] for row in conn.execute("SELECT id FROM products ORDER BY id LIMIT 50")]
    ids = []
    for _ in range(2 * REOPEN_BATCH + 1):
        when = given - dt.timedelta(days=r.randint(30, 600), microseconds=r.randint(1, 10**6))
        oid = conn.execute(
            "INSERT INTO orders (customer_id, status, created_at, total, shipping_country, note) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            [r.choice(customers), r.choice(CLOSED), when, f"{r.randint(1, 99_999) / 100:.2f}",
             r.choice(("FR", "NP", "CA")), f"lab check reopen {r.randint(1, 10**6)}"]).fetchone()[0]
        for _ in range(r.randint(1, 3)):  # every order has lines: a split shows
            conn.execute("INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
                         "VALUES (%s, %s, %s, %s)",
                         [oid, r.choice(products), r.randint(1, 4),
                          f"{r.randint(1, 9_999) / 100:.2f}"])
        ids.append(oid)
    return ids


def _items_by_order(conn: psycopg.Connection, table: str, ids: list[int]) -> dict[int, list]:
    out: dict[int, list] = {i: [] for i in ids}
    for row in conn.execute(f"SELECT {ITEM_COLUMNS} FROM {table} WHERE order_id = ANY(%s) "
                            "ORDER BY id", [ids]).fetchall():
        out[row[1]].append(row)
    return out


def _reopen_once(lab: Any, archive_orders: Callable[..., int], given: dt.datetime,
                 settings: dict[str, str], ids: list[int], orders: dict[int, tuple],
                 items: dict[int, list], pause_after: int) -> bool:
    box: dict[str, Any] = {}
    taken: list[tuple[str, str, str]] = []
    other = psycopg.connect(lab.url, autocommit=True, application_name="lab check support")
    monitor = psycopg.connect(lab.url, autocommit=True)
    threads: list[threading.Thread] = []
    seen = [0]

    def reopen(oid: int) -> None:
        try:
            box["reopened"] = other.execute(
                "UPDATE orders SET status = 'shipped' WHERE id = %s", [oid]).rowcount
        except psycopg.Error as exc:
            box["reopen_error"] = exc

    try:
        with Caller(lab, settings=settings) as caller:
            record = _lock_recorder(monitor, caller.pid, taken)

            def on_statement(st: Any) -> None:
                record(st)
                seen[0] += 1
                if seen[0] != pause_after or threads:
                    return
                row = monitor.execute(f"SELECT min(id) FROM orders WHERE id = ANY(%(ids)s) "
                                      f"AND {ELIGIBLE}", {"ids": ids, "cutoff": given}).fetchone()
                if row[0] is None:
                    return
                box["order"], box["after"] = row[0], st.sql
                t, box["waited"] = _until_done_or_waiting(lambda: reopen(row[0]), monitor,
                                                          other.info.backend_pid)
                threads.append(t)

            rec = RecordingConnection(caller.conn, on_statement=on_statement)
            try:
                moved = _call(archive_orders, rec, given, REOPEN_BATCH, who="archive_orders")
            finally:
                if caller.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    caller.conn.rollback()  # let a waiting reopening finish
                for t in threads:
                    t.join(30)
            _verify(caller, f"archive_orders(conn, cutoff, batch_size={REOPEN_BATCH})")
    finally:
        other.close()
        monitor.close()
    _locks_taken_verdict(taken, "Your archiver", _ARCHIVER_LOCKS)
    if "order" not in box:
        return False
    with psycopg.connect(lab.url, autocommit=True) as conn:
        live = {row[0]: row for row in conn.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ANY(%s)", [ids])}
        archived = {row[0]: row for row in conn.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders_archive WHERE id = ANY(%s)", [ids])}
        items_live = _items_by_order(conn, "order_items", ids)
        items_archived = _items_by_order(conn, "order_items_archive", ids)
    x, after = box["order"], " ".join(box["after"].split())[:80]
    if "reopen_error" in box:
        exc = box["reopen_error"]
        raise CheckFailed(
            f"Another session reopening order {x} (UPDATE orders SET status = 'shipped') right "
            f"after your archiver's `{after}` failed with SQLSTATE {exc.sqlstate} "
            f"({exc.diag.message_primary}): an ordinary update of an order must simply wait "
            "for the batch that holds it, then go on.")
    story = (f"Another session reopened order {x} (a dispute: status → shipped) right after "
             f"your archiver's `{after}`")
    if box.get("reopened") == 1:  # committed before the archiver locked the order
        if x in archived or x not in live or live[x][2] != "shipped":
            raise CheckFailed(
                f"{story}, and committed before the archiver locked it; your archiver then "
                "archived it anyway (with its new status), on the strength of a SELECT that "
                "was out of date: a customer's open order left the live table. Lock the "
                "batch's orders when you choose them (SELECT … ORDER BY id LIMIT n FOR UPDATE: "
                "an order reopened before is not chosen, one reopened after waits), or "
                "re-check eligibility in every statement that moves rows.")
        if items_archived[x] or items_live[x] != items[x]:
            raise CheckFailed(
                f"{story}, before the batch locked it; your archiver left the order live (its "
                f"DELETE re-checked eligibility) but moved {len(items_archived[x])} of its "
                "items to order_items_archive (their DELETE did not re-check): the reopened order "
                "has no lines. Lock the batch's orders before moving anything (SELECT … FOR "
                "UPDATE), so that a reopening either comes before (the order is not chosen) "
                "or waits until the batch commits.")
    else:  # it waited: the archiver held the order and archived it first
        if x not in archived or items_archived[x] != items[x] or items_live[x]:
            raise CheckFailed(
                f"{story}; it waited for your archiver's lock, yet the order and its items "
                f"did not end up archived together (order archived: {x in archived}, items "
                f"archived {len(items_archived[x])} of {len(items[x])}).")
    reopened = {x} if box.get("reopened") == 1 else set()
    for oid in ids:
        if oid in reopened:
            continue
        if oid not in archived or archived[oid] != orders[oid] or \
                items_archived[oid] != items[oid] or items_live[oid]:
            raise CheckFailed(
                f"With another session reopening order {x} right after your archiver's "
                f"`{after}`, the other eligible order {oid} was not archived whole and "
                f"unchanged (order archived: {oid in archived}; items archived "
                f"{len(items_archived[oid])} of {len(items[oid])}, left live "
                f"{len(items_live[oid])}).")
    if moved != len(archived):
        raise CheckFailed(
            f"{story}; your archiver archived {len(archived)} orders in that call but returned "
            f"{moved!r}. Return what the DELETEs moved (the sum of their row counts), not how "
            "many ids were selected: an order can drop out between the two.")
    return True



def _close_races(lab: Any, archive_orders: Callable[..., int], given: dt.datetime,
                 settings: dict[str, str]) -> None:
    """Another session closes an old straggler right after the archiver's k-th statement.

    A shipped order among the batch's (a seeded position within the first batch, so its id
    is below the batch's last) becomes delivered mid-batch: it was not eligible when the
    batch was chosen, and is from then on. Whatever the archiver makes of it (moved now, or
    left for the next run), every order ends whole on one side with all its items, the other
    orders are all archived, and the return value counts what moved. An archiver that picks
    the batch twice (once for the items, once for the orders) archives the straggler without
    its items and leaves the batch's last order live without them.
    """
    r = adv.rng()
    for pause_after in range(1, 5):
        ids: list[int] = []
        try:
            with psycopg.connect(lab.url, autocommit=True) as conn:
                with conn.transaction():
                    ids = _plant_reopen_batch(conn, r, given)
                    straggler = ids[r.randrange(REOPEN_BATCH)]
                    conn.execute("UPDATE orders SET status = %s WHERE id = %s",
                                 [r.choice(OPEN[1:]), straggler])
                items = _items_by_order(conn, "order_items", ids)
            fired = _close_once(lab, archive_orders, given, settings, ids, straggler, items,
                                pause_after, r.choice(CLOSED))
        finally:
            if ids:
                _remove_planted(lab, ids)
        if not fired:
            break


def _close_once(lab: Any, archive_orders: Callable[..., int], given: dt.datetime,
                settings: dict[str, str], ids: list[int], straggler: int,
                items: dict[int, list], pause_after: int, status: str) -> bool:
    box: dict[str, Any] = {}
    other = psycopg.connect(lab.url, autocommit=True, application_name="lab check carrier")
    monitor = psycopg.connect(lab.url, autocommit=True)
    threads: list[threading.Thread] = []
    seen = [0]

    def close() -> None:
        try:
            box["closed"] = other.execute("UPDATE orders SET status = %s WHERE id = %s",
                                          [status, straggler]).rowcount
        except psycopg.Error as exc:
            box["close_error"] = exc

    try:
        with Caller(lab, settings=settings) as caller:
            def on_statement(st: Any) -> None:
                seen[0] += 1
                if seen[0] != pause_after or threads:
                    return
                box["after"] = st.sql
                threads.append(_until_done_or_waiting(close, monitor,
                                                      other.info.backend_pid)[0])

            def archive(*args: Any) -> int:
                try:
                    return archive_orders(*args)
                except psycopg.errors.ForeignKeyViolation as exc:
                    box["fk"] = exc  # told below as what the race did
                    raise

            rec = RecordingConnection(caller.conn, on_statement=on_statement)
            try:
                moved = _call(archive, rec, given, REOPEN_BATCH, who="archive_orders")
            except CheckFailed:
                if "fk" not in box or "after" not in box:
                    raise
                moved = None
            finally:
                if caller.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    caller.conn.rollback()  # let a waiting update finish
                for t in threads:
                    t.join(30)
            if "fk" not in box:
                _verify(caller, f"archive_orders(conn, cutoff, batch_size={REOPEN_BATCH})")
    finally:
        other.close()
        monitor.close()
    if "after" not in box:
        return False
    after = " ".join(box["after"].split())[:80]
    if "fk" in box:
        exc = box["fk"]
        raise CheckFailed(
            f"Another session closed old order {straggler} (a parcel finally delivered: status "
            f"→ {status}) right after your archiver's `{after}`, and your archiver then failed "
            f"with SQLSTATE 23503 ({exc.diag.message_primary}): its orders' DELETE chose other "
            "orders than its items' DELETE had moved. Your archiver chose the batch more than "
            "once (a subquery in each statement): the order just closed joined the second "
            "choice, its items still live, and pushed another order out of it. Choose the "
            "batch once (SELECT id … ORDER BY id LIMIT n FOR UPDATE) and move exactly those "
            "ids, items and orders, in the batch's transaction.")
    if "close_error" in box:
        exc = box["close_error"]
        raise CheckFailed(
            f"Another session closing order {straggler} (UPDATE orders SET status = "
            f"'{status}') right after your archiver's `{after}` failed with SQLSTATE "
            f"{exc.sqlstate} ({exc.diag.message_primary}): an ordinary update of an order must "
            "simply wait for the batch that holds it, then go on.")
    with psycopg.connect(lab.url, autocommit=True) as conn:
        live = {row[0] for row in conn.execute("SELECT id FROM orders WHERE id = ANY(%s)",
                                               [ids])}
        archived = {row[0] for row in conn.execute(
            "SELECT id FROM orders_archive WHERE id = ANY(%s)", [ids])}
        items_live = _items_by_order(conn, "order_items", ids)
        items_archived = _items_by_order(conn, "order_items_archive", ids)
    story = (f"Another session closed old order {straggler} (a parcel finally delivered: "
             f"status → {status}) right after your archiver's `{after}`")
    split = [oid for oid in ids
             if (oid in live and items_archived[oid]) or (oid in archived and items_live[oid])]
    if split:
        x = split[0]
        side, other_side = ("archived", "live") if x in archived else ("live", "archived")
        apart = len(items_live[x]) if x in archived else len(items_archived[x])
        raise CheckFailed(
            f"{story}; afterwards order {x} is {side} while {apart} of its items are "
            f"{other_side} (orders split: {split}). Your archiver chose the batch "
            "more than once (a subquery in each statement): the order just closed joined the "
            "second choice and pushed another order out of it, so the two statements moved "
            "different orders. Choose the batch once (SELECT id … ORDER BY id LIMIT n FOR "
            "UPDATE) and move exactly those ids, items and orders, in the batch's transaction.")
    lost = [oid for oid in ids if oid not in live and oid not in archived]
    twice = [oid for oid in ids if oid in live and oid in archived]
    changed = [oid for oid in ids if sorted(items_live[oid] + items_archived[oid]) != items[oid]]
    kept = [oid for oid in ids if oid != straggler and oid not in archived]
    if lost or twice or changed or kept:
        raise CheckFailed(
            f"{story}; afterwards the planted orders are not each archived once, whole: "
            f"in neither table {lost}, in both {twice}, items changed {changed}, eligible "
            f"orders left live {kept}.")
    if moved != len(archived):
        raise CheckFailed(
            f"{story}; your archiver archived {len(archived)} orders in that call but returned "
            f"{moved!r}. Return what the DELETEs moved (the sum of their row counts).")
    return True


def _item_update_races(lab: Any, archive_orders: Callable[..., int], given: dt.datetime,
                       settings: dict[str, str]) -> None:
    """Another session changes an item of the batch right after the archiver's k-th statement.

    A partial refund (``UPDATE order_items SET quantity = ...``) either commits at once (the
    item was not locked yet: its one copy, live or archived, must carry the new quantity)
    or waits until the batch commits (the archiver's DELETE had it: it then finds nothing,
    and the archived copy is the one the DELETE moved). Deterministic, no sleeps.
    """
    r = adv.rng()
    for pause_after in range(1, 6):
        ids: list[int] = []
        try:
            with psycopg.connect(lab.url, autocommit=True) as conn:
                with conn.transaction():
                    ids = _plant_reopen_batch(conn, r, given)
            fired = _item_update_once(lab, archive_orders, given, settings, ids, pause_after, r)
        finally:
            if ids:
                _remove_planted(lab, ids)
        if not fired:
            break


def _item_update_once(lab: Any, archive_orders: Callable[..., int], given: dt.datetime,
                      settings: dict[str, str], ids: list[int], pause_after: int,
                      r: Any) -> bool:
    box: dict[str, Any] = {}
    other = psycopg.connect(lab.url, autocommit=True, application_name="lab check refunds")
    monitor = psycopg.connect(lab.url, autocommit=True)
    threads: list[threading.Thread] = []
    seen = [0]
    bump = r.randint(5, 40)

    def refund(item_id: int) -> None:
        try:
            box["updated"] = other.execute(
                "UPDATE order_items SET quantity = quantity + %s WHERE id = %s",
                [bump, item_id]).rowcount
        except psycopg.Error as exc:
            box["update_error"] = exc

    try:
        with Caller(lab, settings=settings) as caller:
            def on_statement(st: Any) -> None:
                seen[0] += 1
                if seen[0] != pause_after or threads:
                    return
                # an item of the first order the archiver has not moved (live, eligible)
                row = monitor.execute(
                    f"SELECT i.id, i.quantity FROM order_items i JOIN orders o "
                    f"ON o.id = i.order_id WHERE o.id = (SELECT min(id) FROM orders "
                    f"WHERE id = ANY(%(ids)s) AND {ELIGIBLE}) ORDER BY i.id LIMIT 1",
                    {"ids": ids, "cutoff": given}).fetchone()
                if row is None:
                    return
                box["item"], box["old"], box["after"] = row[0], row[1], st.sql
                threads.append(_until_done_or_waiting(lambda: refund(row[0]), monitor,
                                                      other.info.backend_pid)[0])

            rec = RecordingConnection(caller.conn, on_statement=on_statement)
            try:
                _call(archive_orders, rec, given, REOPEN_BATCH, who="archive_orders")
            finally:
                if caller.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    caller.conn.rollback()  # let a waiting update finish
                for t in threads:
                    t.join(30)
            _verify(caller, f"archive_orders(conn, cutoff, batch_size={REOPEN_BATCH})")
    finally:
        other.close()
        monitor.close()
    if "item" not in box:
        return False
    item, old, after = box["item"], box["old"], " ".join(box["after"].split())[:80]
    if "update_error" in box:
        exc = box["update_error"]
        raise CheckFailed(
            f"Another session updating item {item} (UPDATE order_items SET quantity = ...) "
            f"right after your archiver's `{after}` failed with SQLSTATE {exc.sqlstate} "
            f"({exc.diag.message_primary}): an ordinary update must simply wait for the batch "
            "that holds the row, then go on.")
    with psycopg.connect(lab.url, autocommit=True) as conn:
        copies = [row[0] for t in ("order_items", "order_items_archive") for row in
                  conn.execute(f"SELECT quantity FROM {t} WHERE id = %s", [item]).fetchall()]
    expected = old + bump if box.get("updated") == 1 else old
    if copies != [expected]:
        raise CheckFailed(
            f"Another session changed item {item}'s quantity from {old} to {old + bump} (a "
            f"partial refund) right after your archiver's `{after}`, and its update committed "
            f"(the item was not locked yet); afterwards live ∪ archive hold {copies} for that "
            f"item instead of [{expected}]: the update was lost. Under READ COMMITTED each "
            "statement sees the rows committed before it started: a copy (INSERT … SELECT) "
            "and a DELETE in separate statements can copy one version and delete a later one "
            "(a FOR UPDATE on the order does not lock its items). Move each table's rows in "
            "one statement: WITH moved AS (DELETE … RETURNING *) INSERT INTO … SELECT * FROM "
            "moved.")
    return True

HINTS = {
    "q1": ["CREATE OR REPLACE VIEW active_products AS SELECT * FROM products "
           "WHERE deleted_at IS NULL",
           "CREATE UNIQUE INDEX CONCURRENTLY … ON products (sku) WHERE deleted_at IS NULL; "
           "then DROP INDEX CONCURRENTLY products_sku_key"],
    "q2": ["UPDATE products SET deleted_at = NULL WHERE id = %s AND deleted_at IS NOT NULL: "
           "rowcount says whether anything was restored.",
           "Do not look for a holder of the SKU first: another session can take it between your "
           "SELECT and your UPDATE. Let the UPDATE fail: except psycopg.errors.UniqueViolation: "
           "conn.rollback(); raise ValueError(...)"],
    "q3": ["Keyset on id, the batch locked as it is chosen: SELECT id … WHERE id > last AND "
           "<eligible> ORDER BY id LIMIT batch FOR UPDATE (a reopened order is then not "
           "chosen, or its reopening waits for the batch's COMMIT).",
           "In one transaction: WITH moved AS (DELETE FROM order_items WHERE order_id = ANY(%s) "
           "RETURNING *) INSERT INTO order_items_archive SELECT * FROM moved; the same for orders; "
           "commit.",
           "Compare created_at < %(cutoff)s with the cutoff passed as a parameter (a timestamptz): "
           "no dates, no text, whatever the session's TimeZone."],
}


# Decoy runs keep the earlier exercises' check cells: q2 and q3 need exercise 1's partial
# unique index, which q1's check applies (tests/test_contract.py reads this).
CHECKS_BUILD_ON_EARLIER = True
