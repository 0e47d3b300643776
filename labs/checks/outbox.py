"""Checks for 16_outbox: an event per committed order, relayed exactly once in effect, and
an audit trail no client path can skip.

* ``q1`` calls the learner's ``place_order`` on a caller's connection (autocommit off,
  non-default timeouts, a non-UTC ``TimeZone``) for several customers, with orders of one
  item and of many (a product twice), and with an order that must fail (a product that
  does not exist). Judged by the database: the order, its items and its event were
  written by **one transaction** (their ``xmin`` is the same transaction id), the order
  row is right (status, shipping country, total = Σ items, unit prices = the products',
  created_at within the call), the returned id is the order's own while a trigger of the
  check's on orders draws from another sequence (lastval() returns that one), the payload is the order as stored, a failed order left no order, no item and no event, and the
  connection is left idle with its settings.
* ``q2`` places orders with the learner's ``place_order``, plants ``order_paid`` events
  behind some of them, then runs the learner's ``relay_batch`` and ``consume``:
  first worker A holds its batch (inside its first publish) while worker B runs a whole
  batch, so a relay without ``SKIP LOCKED`` is seen waiting in the lock manager, a relay
  without row locks publishes A's events a second time, and a relay that ignores earlier
  pending events of the same order publishes an ``order_paid`` before its
  ``order_created``; then K workers in threads, one killed after publishing and before
  marking sent, one killed mid-batch with its backend terminated (transaction aborted);
  then one worker resumes. Afterwards: every event of a committed order consumed exactly
  once (by id), none for a failed order, first deliveries in id order per order,
  every sent event has its sent_at, duplicates delivered and absorbed (the consumer's counts and revenue against the
  orders table), every event ``sent``, and the consumer records an event id and applies
  its effect in one transaction (same ``xmin``). Last, a broker that refuses one event
  every time, due since minutes ago (a backlog): with ``backoff=60`` its next attempt must be about a minute away and an
  immediate next call must not retry it (only due events), nor publish a later event of
  the same order queued behind it (ordering holds while it backs off); refused again once due, its
  next wait must have grown (at least 1.5× the first: exponential backoff); once due, with
  ``max_attempts=3, backoff=0`` it must end ``dead`` after 3 attempts, and the event of
  another order behind it must be published meanwhile.
* ``q3`` changes orders through plain SQL, the SQLAlchemy ORM and ``COPY``, in a non-UTC
  session, with the application user set by ``SET LOCAL app.username`` (once not set in
  a session that set it before, once in a session that never set it: NULL, no error),
  and a rolled-back change, and one UPDATE of columns no other change touches
  (customer_id, shipping_country) made under ``SET LOCAL ROLE`` to a short-lived NOLOGIN
  role of the check's own (``{db}_clerk``, dropped afterwards): its db_user must be that
  role (current_user), not the login role (session_user, or current_user inside a
  SECURITY DEFINER function), and a trigger on ``UPDATE OF`` some columns (or a WHEN
  clause) misses it. A BEFORE trigger of the check's own, named to fire after any other
  (``~ob_check_normalise_note``), rewrites one note: an audit that fires BEFORE the change
  records the note as asked, not as stored. The audit rows must match, row by row, what changed (values
  compared as PostgreSQL values, not text), who (database user, application user) and
  nothing for the rolled-back change.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal
from typing import Any, Callable

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..course import adversarial as adv
from ..course.checking import CheckFailed, require
from ..course.left_behind import Caller, caller_settings, untouched
from ..tools import relay, roles

HINTS = {
    "q1": [
        "Everything place_order writes (the order, its items, the outbox row) goes in one "
        "transaction: `with conn.transaction():` around all of it, and no commit in between.",
        "Build the payload in SQL from the rows just written (jsonb_build_object, jsonb_agg "
        "over order_items), so it is the order as stored; RETURNING id gives the order id.",
    ],
    "q2": [
        "Take a batch with SELECT … FROM outbox WHERE status = 'pending' ORDER BY id LIMIT n "
        "FOR UPDATE SKIP LOCKED, publish each event, then mark them sent, in one transaction: "
        "a crash before the commit leaves them pending (published again, never lost).",
        "Per-order ordering: leave out an event when an earlier pending event of the same "
        "aggregate_id exists (NOT EXISTS …); another worker may hold it.",
        "The consumer inserts the event id into processed_events ON CONFLICT DO NOTHING and "
        "applies the effect only when that insert returned a row, in the same transaction.",
    ],
    "q3": [
        "A trigger AFTER INSERT OR UPDATE OR DELETE ON orders FOR EACH ROW sees OLD and NEW "
        "whatever client sent the change (psql, an ORM, COPY).",
        "The diff: jsonb_object_agg over the keys of to_jsonb(NEW) whose value IS DISTINCT "
        "FROM the same key in to_jsonb(OLD); the application user is "
        "nullif(current_setting('app.username', true), ''): NULL when nobody set it (once a "
        "session has set it, even with SET LOCAL, it reads '' afterwards, not NULL).",
    ],
}


# --------------------------------------------------------------------------
# q1


def _expected_payload_ok(watch: psycopg.Connection, order_id: int) -> str:
    """'' when the event of ``order_id`` carries the order as stored; else what differs."""
    row = watch.execute("""
        SELECT e.payload, o.id IS NOT NULL,
               (e.payload->>'order_id')::bigint = o.id,
               (e.payload->>'customer_id')::bigint = o.customer_id,
               (e.payload->>'status') = o.status,
               (e.payload->>'total')::numeric = o.total,
               (SELECT coalesce(jsonb_agg(jsonb_build_array(i.product_id, i.quantity, i.unit_price)
                                          ORDER BY i.product_id, i.quantity, i.unit_price), '[]')
                FROM order_items i WHERE i.order_id = o.id)
             = (SELECT coalesce(jsonb_agg(jsonb_build_array((x->>'product_id')::bigint,
                                                            (x->>'quantity')::int,
                                                            (x->>'unit_price')::numeric)
                                          ORDER BY (x->>'product_id')::bigint, (x->>'quantity')::int,
                                                   (x->>'unit_price')::numeric), '[]')
                FROM jsonb_array_elements(CASE jsonb_typeof(e.payload->'items')
                                          WHEN 'array' THEN e.payload->'items' ELSE '[]' END) x)
        FROM outbox e LEFT JOIN orders o ON o.id = e.aggregate_id
        WHERE e.aggregate_id = %s AND e.event_type = 'order_created'""", [order_id]).fetchone()
    names = ("order_id", "customer_id", "status", "total", "items")
    wrong = [n for n, ok in zip(names, row[2:]) if not ok]
    if wrong:
        return (f"its payload has {', '.join(wrong)} different from the order as stored "
                f"(payload {str(row[0])[:200]})")
    return ""


def _order_row_ok(watch: psycopg.Connection, order_id: int, basket: list,
                  called_at: Any, returned_at: Any) -> str:
    """'' when the order and its items are as the task says; else what is wrong."""
    row = watch.execute("""
        SELECT o.status, o.shipping_country, c.country, o.total,
               (SELECT sum(i.quantity * i.unit_price) FROM order_items i WHERE i.order_id = o.id),
               (SELECT array_agg(ARRAY[i.product_id, i.quantity] ORDER BY i.product_id, i.quantity)
                FROM order_items i WHERE i.order_id = o.id),
               (SELECT count(*) FROM order_items i JOIN products p ON p.id = i.product_id
                WHERE i.order_id = o.id AND i.unit_price IS DISTINCT FROM p.price),
               o.created_at BETWEEN %s::timestamptz - interval '1 second'
                                AND %s::timestamptz + interval '1 second', o.created_at
        FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = %s""",
                        [called_at, returned_at, order_id]).fetchone()
    status, country, customer_country, total, summed, items, off_price, in_time, created = row
    if status != "pending":
        return f"its status is {status!r}, expected 'pending'"
    if [list(i) for i in items or []] != sorted([p, q] for p, q in basket):
        return (f"its items (product, quantity) are {items}, expected "
                f"{sorted([p, q] for p, q in basket)}: one row per pair given")
    if off_price:
        return (f"{off_price} item(s) have a unit_price that is not the product's price "
                "(products.price at the time of the order)")
    if total != summed:
        return (f"its total is {total}, but its items add up to {summed} "
                "(Σ quantity × unit_price): compute the total from the items written")
    if country != customer_country:
        return (f"its shipping_country is {country!r}, the customer's country is "
                f"{customer_country!r}")
    if not in_time:
        return (f"its created_at is {created}, not the time of the call ({called_at}): use now() "
                "in SQL, the transaction's own time, not a timestamp built in Python (a naive "
                "datetime is read in the session's TimeZone)")
    return ""


def q1(lab: Any, place_order: Callable[..., int]) -> str:
    require(place_order)
    rng = adv.rng()
    with psycopg.connect(lab.url, autocommit=True) as watch:
        customers = [r[0] for r in watch.execute(
            "SELECT id FROM customers WHERE deleted_at IS NULL ORDER BY id").fetchall()]
        products = [r[0] for r in watch.execute("SELECT id FROM products ORDER BY id").fetchall()]
        missing_product = watch.execute("SELECT max(id) + 1000 FROM products").fetchone()[0]
        events_before = watch.execute("SELECT count(*) FROM outbox").fetchone()[0]
        orders_before = watch.execute("SELECT coalesce(max(id), 0) FROM orders").fetchone()[0]
    who = rng.sample(customers, 4)
    twice = rng.choice(products)
    baskets = [
        [(rng.choice(products), 1)],                                       # one item
        [(p, rng.randint(1, 9)) for p in rng.sample(products, adv.non_round(5, rand=rng))],
        [(twice, 2), (twice, 3)],                                           # a product twice
        [(p, rng.randint(1, 4)) for p in rng.sample(products, 3)],
    ]
    placed: list[int] = []
    with untouched(lab, ["customers", "products", "accounts", "users"]), \
            Caller(lab) as caller, psycopg.connect(lab.url, autocommit=True) as watch:
        # another service's order with a far higher id, committed before the calls: an id
        # read back with max(id) (instead of RETURNING) is that one, not the caller's
        decoy_id = watch.execute("""
            INSERT INTO orders (id, customer_id, status, created_at, total, shipping_country)
            SELECT max(id) + 1000000, %s, 'pending', now(), 1, 'DE' FROM orders
            RETURNING id""", [rng.choice(customers)]).fetchone()[0]
        try:
            _bystander(watch, decoy_id)
            return _q1_calls(lab, place_order, rng, caller, watch, who, baskets, placed,
                             customers, products, missing_product, events_before,
                             orders_before, decoy_id)
        finally:
            _bystander(watch, None)
            watch.execute("DELETE FROM order_items WHERE order_id = %s", [decoy_id])
            watch.execute("DELETE FROM outbox WHERE aggregate_id = %s", [decoy_id])
            watch.execute("DELETE FROM orders WHERE id = %s", [decoy_id])


BYSTANDER = "ob_check_bystander"


def _bystander(watch: psycopg.Connection, value: int | None) -> None:
    """A trigger on orders that draws from a sequence of its own (as an audit row's identity
    or a counter does), so that lastval() after an INSERT INTO orders is not the order's id
    (it is ``value``, the other service's order); ``None`` removes it."""
    watch.execute(f"DROP TRIGGER IF EXISTS {BYSTANDER} ON orders")
    watch.execute(f"DROP FUNCTION IF EXISTS {BYSTANDER}()")
    watch.execute(f"DROP SEQUENCE IF EXISTS {BYSTANDER}_seq")
    if value is None:
        return
    watch.execute(f"CREATE SEQUENCE {BYSTANDER}_seq")
    watch.execute(f"""CREATE FUNCTION {BYSTANDER}() RETURNS trigger LANGUAGE plpgsql AS $$
                      BEGIN PERFORM setval('{BYSTANDER}_seq', {int(value)}, false);
                            PERFORM nextval('{BYSTANDER}_seq'); RETURN NULL; END $$""")
    watch.execute(f"CREATE TRIGGER {BYSTANDER} AFTER INSERT ON orders FOR EACH ROW "
                  f"EXECUTE FUNCTION {BYSTANDER}()")


def _q1_calls(lab: Any, place_order: Callable, rng: Any, caller: Caller,
              watch: psycopg.Connection, who: list[int], baskets: list, placed: list[int],
              customers: list[int], products: list[int], missing_product: int,
              events_before: int, orders_before: int, decoy_id: int) -> str:
    for customer, basket in zip(who, baskets):
        what = f"place_order(conn, {customer}, {basket})"
        called_at = watch.execute("SELECT clock_timestamp()").fetchone()[0]
        order_id = place_order(caller.conn, customer, basket)
        returned_at = watch.execute("SELECT clock_timestamp()").fetchone()[0]
        caller.verify(what)
        if not isinstance(order_id, int) or isinstance(order_id, bool):
            raise CheckFailed(f"{what} returned {order_id!r}; it should return the new "
                              "order's id (an int, from INSERT … RETURNING id).")
        row = watch.execute("""
            SELECT o.customer_id, o.xmin::text,
                   (SELECT count(*) FROM order_items i WHERE i.order_id = o.id),
                   (SELECT array_agg(DISTINCT i.xmin::text) FROM order_items i
                    WHERE i.order_id = o.id),
                   (SELECT array_agg(e.xmin::text) FROM outbox e
                    WHERE e.aggregate_id = o.id AND e.event_type = 'order_created')
            FROM orders o WHERE o.id = %s""", [order_id]).fetchone()
        if row is None:
            raise CheckFailed(f"{what} returned {order_id}, but no such order is committed: "
                              "commit the transaction before returning.")
        customer_id, order_xmin, items, item_xmins, event_xmins = row
        if order_id == decoy_id:
            raise CheckFailed(f"{what} returned {order_id}, the id of another session's "
                              "order (committed just before): take the id from your own "
                              "INSERT … RETURNING id, not from max(id), lastval() or a "
                              "later query (lastval() is the last value any sequence gave "
                              "this session, and a trigger on orders drawing from another "
                              "sequence, here an audit row's identity, changes it).")
        if customer_id != customer or items != len(basket):
            raise CheckFailed(f"{what} wrote order {order_id} for customer {customer_id} "
                              f"with {items} item row(s); expected customer {customer} and "
                              f"{len(basket)} rows (one per (product, quantity) given).")
        if not event_xmins or len(event_xmins) != 1:
            raise CheckFailed(f"{what} left {len(event_xmins or [])} 'order_created' "
                              f"event(s) in the outbox for order {order_id}; expected "
                              "exactly one.")
        if event_xmins[0] != order_xmin or item_xmins != [order_xmin]:
            raise CheckFailed(
                f"{what} wrote the order and its outbox event in separate transactions "
                f"(order xmin {order_xmin}, event xmin {event_xmins[0]}, items "
                f"{item_xmins}): a crash between the two commits loses the event, or "
                "publishes one for an order that never committed. Write the order, its "
                "items and the event in one transaction.")
        problem = _order_row_ok(watch, order_id, basket, called_at, returned_at)
        if problem:
            raise CheckFailed(f"{what} wrote order {order_id} wrong: {problem}.")
        problem = _expected_payload_ok(watch, order_id)
        if problem:
            raise CheckFailed(f"The event of order {order_id} is not the order: {problem}. "
                              "Build the payload from the rows you wrote.")
        placed.append(order_id)
    # an order that must fail: a product that does not exist
    bad = [(rng.choice(products), 1), (missing_product, 1)]
    customer = rng.choice(customers)
    what = f"place_order(conn, {customer}, {bad})"
    try:
        place_order(caller.conn, customer, bad)
    except Exception:
        caller.verify(what + " (which raised)")
    else:
        caller.verify(what)
        raise CheckFailed(f"{what} returned normally although product {missing_product} "
                          "does not exist; let the error reach the caller.")
    left = watch.execute("""
        SELECT (SELECT count(*) FROM orders WHERE id > %s AND id <> ALL(%s)),
               (SELECT count(*) FROM outbox) - %s - %s""",
                         [orders_before, placed + [decoy_id], events_before,
                          len(placed)]).fetchone()
    if left[0] or left[1]:
        raise CheckFailed(
            f"{what} failed, yet it left {left[0]} order(s) and {left[1]} outbox event(s) "
            "committed: an event for an order that never existed. Do everything in one "
            "transaction so the error rolls all of it back.")
    return (f"{len(placed)} orders, each with its items and one event in the same transaction; "
            "a failed order left nothing")


# --------------------------------------------------------------------------
# q2


def _place(lab: Any, place_order: Callable, rng: Any, n: int) -> tuple[list[int], list[str]]:
    with psycopg.connect(lab.url, autocommit=True) as watch:
        customers = [r[0] for r in watch.execute(
            "SELECT id FROM customers WHERE deleted_at IS NULL ORDER BY id LIMIT 400").fetchall()]
        products = [r[0] for r in watch.execute("SELECT id FROM products ORDER BY id").fetchall()]
        missing = watch.execute("SELECT max(id) + 1000 FROM products").fetchone()[0]
    regulars = rng.sample(customers, 5)  # several customers with many orders each
    placed, failed = [], []
    with psycopg.connect(lab.url) as conn:
        for i in range(n):
            customer = rng.choice(regulars) if rng.random() < 0.6 else rng.choice(customers)
            basket = [(p, rng.randint(1, 5)) for p in rng.sample(products, rng.randint(1, 4))]
            if i % 11 == 5:  # an order that fails: no event may come of it
                try:
                    place_order(conn, customer, basket + [(missing, 1)])
                except Exception:
                    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                        conn.rollback()
                    failed.append(f"customer {customer}")
                    continue
                raise CheckFailed("place_order accepted an order with a product that does not "
                                  "exist; it must raise (and commit nothing).")
            placed.append(place_order(conn, customer, basket))
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raise CheckFailed("place_order returned with its transaction still open; "
                                  "commit before returning (exercise 1).")
    return placed, failed


def _plant_paid(lab: Any, order_ids: list[int]) -> None:
    with psycopg.connect(lab.url, autocommit=True) as conn:
        for order_id in order_ids:  # a transaction each, after the order's own
            conn.execute("""
                INSERT INTO outbox (aggregate_id, event_type, payload)
                SELECT id, 'order_paid', jsonb_build_object('order_id', id,
                                                            'customer_id', customer_id)
                FROM orders WHERE id = %s""", [order_id])


def _blocked(monitor: psycopg.Connection, pid: int) -> bool:
    return bool(monitor.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0",
                                [pid]).fetchone()[0])


def _held_batch(lab: Any, relay_batch: Callable, broker: relay.Broker, batch: int) -> str:
    """Worker A holds its batch inside its first publish while B runs one batch."""
    a_conn, b_conn = psycopg.connect(lab.url), psycopg.connect(lab.url)
    monitor = psycopg.connect(lab.url, autocommit=True)
    outcome: dict[str, Any] = {}
    b_pid = b_conn.info.backend_pid

    def run_b() -> None:
        try:
            broker.bind("B", b_conn)
            outcome["b"] = relay_batch(b_conn, broker, batch)
        except Exception as exc:
            outcome["b_error"] = exc

    def publish_a(event: dict) -> None:
        if "started" not in outcome:
            outcome["started"] = True
            thread = threading.Thread(target=run_b, daemon=True)
            thread.start()
            deadline = time.monotonic() + 15
            while thread.is_alive() and time.monotonic() < deadline:
                thread.join(0.02)
                if thread.is_alive() and _blocked(monitor, b_pid):
                    outcome["b_waited"] = True
                    monitor.execute("SELECT pg_cancel_backend(%s)", [b_pid])
                    thread.join(10)
                    break
            broker.bind("A", a_conn)
        broker(event)

    try:
        broker.bind("A", a_conn)
        relay_batch(a_conn, publish_a, batch)
        if a_conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise CheckFailed("relay_batch returned with its transaction still open: its row "
                              "locks stay held and no other worker can take those events. "
                              "Commit before returning.")
    finally:
        for c in (a_conn, b_conn, monitor):
            c.close()
    if outcome.get("b_waited"):
        raise CheckFailed(
            "While worker A held its batch, worker B waited for A's row locks (pg_locks) "
            "instead of taking the next events: relay workers serialise. Use "
            "FOR UPDATE SKIP LOCKED so each worker skips rows another one holds.")
    if "b_error" in outcome:
        raise outcome["b_error"]
    by_worker: dict[str, set[int]] = {"A": set(), "B": set()}
    for d in broker.deliveries:
        by_worker.setdefault(d.worker, set()).add(d.event_id)
    both = by_worker["A"] & by_worker["B"]
    if both:
        raise CheckFailed(
            f"Workers A and B both published event(s) {sorted(both)[:5]} at the same time: "
            "the relay read pending events without locking them, so two workers send the "
            "same batch. Lock the batch (SELECT … FOR UPDATE SKIP LOCKED) in the transaction "
            "that marks it sent.")
    if not by_worker["B"]:
        raise CheckFailed(
            "While worker A held its batch, worker B published nothing although other events "
            "were pending: a second worker must take the next events (FOR UPDATE SKIP LOCKED, "
            "not a table lock or an advisory lock around the whole relay).")
    return ""


def _first_deliveries(broker: relay.Broker) -> list[relay.Delivery]:
    seen, out = set(), []
    for d in broker.deliveries:
        if d.event_id not in seen:
            seen.add(d.event_id)
            out.append(d)
    return out


def _consumer_atomic(lab: Any, consume: Callable, rng: Any) -> None:
    """The event id and its effect are committed by one transaction (same xmin): a consumer
    that commits them separately loses the effect, or applies it twice, when it dies in
    between."""
    with psycopg.connect(lab.url, autocommit=True) as watch:
        with watch.cursor(row_factory=dict_row) as cur:
            event = cur.execute("""SELECT id, aggregate_id, event_type, payload FROM outbox
                                   WHERE event_type = 'order_created' ORDER BY id LIMIT 1"""
                                ).fetchone()
    event_id = 10 ** 12 + rng.randint(1, 10 ** 6)
    customer = 10 ** 12 + rng.randint(1, 10 ** 6)
    event = {**event, "id": event_id, "payload": {**event["payload"], "customer_id": customer}}
    url = relay.consumer_url(lab)
    try:
        with psycopg.connect(url) as conn:
            consume(conn, event)
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
        with psycopg.connect(url, autocommit=True) as consumer:
            ids, effect = consumer.execute("""
                SELECT (SELECT xmin::text FROM processed_events WHERE event_id = %s),
                       (SELECT xmin::text FROM customer_stats WHERE customer_id = %s)""",
                                           [event_id, customer]).fetchone()
    finally:
        with psycopg.connect(url, autocommit=True) as consumer:
            consumer.execute("DELETE FROM processed_events WHERE event_id = %s", [event_id])
            consumer.execute("DELETE FROM customer_stats WHERE customer_id = %s", [customer])
    if ids is None or effect is None or ids != effect:
        raise CheckFailed(
            "consume recorded the event id (processed_events) and applied its effect "
            "(customer_stats) in different transactions: a consumer that dies between the two "
            "commits either loses the effect for good (the id says 'done') or applies it again "
            "on the redelivery. Record the id and apply the effect in one transaction "
            "(with conn.transaction(): …), so they commit together.")


def _ordering(lab: Any, broker: relay.Broker) -> None:
    firsts = _first_deliveries(broker)
    last: dict[int, relay.Delivery] = {}
    for d in firsts:
        before = last.get(d.aggregate_id)
        if before is not None and before.event_id > d.event_id:
            raise CheckFailed(
                f"Order {d.aggregate_id}'s event {before.event_id} reached the consumer (worker "
                f"{before.worker}) before its earlier event {d.event_id} (worker {d.worker}): "
                "per-order ordering is lost. A worker must leave out an event while an earlier "
                "pending event of the same aggregate_id exists (another worker may hold it).")
        last[d.aggregate_id] = d


def _dead_letter(lab: Any, relay_batch: Callable, consume: Callable, orders: list[int],
                 batch: int, rng: Any) -> None:
    """A broker that refuses one event every time: after max_attempts it is 'dead', and the
    event of another order behind it is published meanwhile."""
    with psycopg.connect(lab.url, autocommit=True) as watch:
        poison, fine = (watch.execute("""
            INSERT INTO outbox (aggregate_id, event_type, payload)
            SELECT id, 'order_paid', jsonb_build_object('order_id', id, 'customer_id', customer_id)
            FROM orders WHERE id = %s RETURNING id""", [o]).fetchone()[0] for o in orders)
        # a later event of the refused event's order: it waits while the refused one is pending
        follower = watch.execute("""
            INSERT INTO outbox (aggregate_id, event_type, payload)
            SELECT id, 'order_paid', jsonb_build_object('order_id', id, 'customer_id', customer_id)
            FROM orders WHERE id = %s RETURNING id""", [orders[0]]).fetchone()[0]
        broker = relay.Broker(relay.consumer_url(lab), consume, fail_events={poison})
        tries = {"poison": 0}

        def publish(event: dict) -> None:
            if event["id"] == poison:
                tries["poison"] += 1
            broker(event)

        def call(conn: psycopg.Connection, backoff: float) -> int:
            try:
                return relay_batch(conn, publish, batch, max_attempts=3, backoff=backoff)
            except relay.PublishFailed:
                raise CheckFailed(
                    "relay_batch let relay.PublishFailed escape: when the broker refuses "
                    "one event, record the attempt (attempts, last_error, a later "
                    "next_attempt_at) and go on with the others; after max_attempts "
                    "mark it 'dead'.") from None

        calls = 0
        try:
            with psycopg.connect(lab.url) as conn:
                broker.bind("D", conn)
                # a refusal with a backoff of a minute: the event waits, and is not retried
                # by the next call, made at once. The event has been due for a while (a
                # backlog, a relay that was down): the wait counts from now, not from then
                watch.execute("UPDATE outbox SET next_attempt_at = now() - %s * interval "
                              "'1 minute' WHERE id = %s", [rng.randint(20, 90), poison])
                call(conn, 60)
                waits = watch.execute("""SELECT status, attempts, next_attempt_at - now()
                                         FROM outbox WHERE id = %s""", [poison]).fetchone()
                if waits[0] != "pending" or waits[2] < dt.timedelta(seconds=30):
                    raise CheckFailed(
                        f"The broker refused event {poison} once; with backoff=60 it should "
                        "stay 'pending' with next_attempt_at about a minute away (backoff × "
                        f"2^attempts seconds), but it is '{waits[0]}' with next_attempt_at "
                        f"{waits[2].total_seconds():.0f} s from now: a refused event retried at "
                        "once hammers a broker "
                        "that refuses it (the event had been due for a while: a backoff added "
                        "to its old next_attempt_at is still in the past). Set "
                        "next_attempt_at = now() + backoff × 2^attempts seconds.")
                call(conn, 60)
                if follower in {d.event_id for d in broker.deliveries}:
                    raise CheckFailed(
                        f"While event {poison} of order {orders[0]} waited for its retry (refused "
                        f"once, next attempt a minute away), the relay published event "
                        f"{follower}, a later event of the same order: the consumer sees the "
                        "order's events out of order. An earlier pending event holds back the "
                        "later events of its aggregate whether or not it is due: NOT EXISTS "
                        "(… p.aggregate_id = e.aggregate_id AND p.status = 'pending' AND p.id < "
                        "e.id), without the next_attempt_at condition.")
                if tries["poison"] != 1:
                    raise CheckFailed(
                        f"Event {poison} was refused and its next attempt set a minute ahead, "
                        "yet the next relay_batch call published it again at once "
                        f"({tries['poison']} attempts): take only events that are due "
                        "(WHERE status = 'pending' AND next_attempt_at <= now()).")
                # due again and refused again, still with backoff=60: the wait must grow
                first_wait = waits[2]
                watch.execute("UPDATE outbox SET next_attempt_at = now() - %s * interval "
                              "'1 minute' WHERE id = %s", [rng.randint(5, 20), poison])
                call(conn, 60)
                again = watch.execute("""SELECT status, attempts, next_attempt_at - now()
                                         FROM outbox WHERE id = %s""", [poison]).fetchone()
                if again[0] != "pending" or again[2] < first_wait * 1.5:
                    raise CheckFailed(
                        f"The broker refused event {poison} a second time (backoff=60, "
                        f"max_attempts=3); its next attempt is now "
                        f"{again[2].total_seconds():.0f} s away ('{again[0]}', {again[1]} "
                        f"attempts), after {first_wait.total_seconds():.0f} s the first time: "
                        "the backoff does not grow. A broker that is down for an hour then "
                        "gets the same retry rate from every refused event all hour long. "
                        "Back off exponentially: next_attempt_at = now() + backoff × "
                        "2^attempts seconds (1 s, 2 s, 4 s… for backoff=1).")
                # time passes: due again, now without backoff
                watch.execute("UPDATE outbox SET next_attempt_at = now() WHERE id = %s", [poison])
                for calls in range(1, 8):
                    if not call(conn, 0):
                        break
        finally:
            broker.close()
        status = dict((r[0], r[1:]) for r in watch.execute(
            "SELECT id, status, attempts, last_error IS NOT NULL FROM outbox WHERE id = ANY(%s)",
            [[poison, fine]]).fetchall())
    if status[fine][0] != "sent" or fine not in {d.event_id for d in broker.deliveries}:
        raise CheckFailed(f"While the broker refused event {poison}, event {fine} (another "
                          f"order) was not published (it is '{status[fine][0]}'): one bad event "
                          "must not hold back the others.")
    if status[poison][0] != "dead" or status[poison][1] != 3 or not status[poison][2]:
        raise CheckFailed(
            f"The broker refused event {poison} on every attempt; with max_attempts=3 it should "
            f"end 'dead' after 3 attempts with its last_error, but it is '{status[poison][0]}' "
            f"with {status[poison][1]} attempt(s) after {calls} relay_batch calls (backoff=0). "
            "Count each failed attempt and move the event to 'dead' at max_attempts.")


def q2(lab: Any, place_order: Callable, relay_batch: Callable, consume: Callable) -> str:
    require(place_order, relay_batch, consume)
    rng = adv.rng()
    relay.clear(lab)
    batch = rng.choice([7, 9, 11, 13])
    n = batch * 6 + rng.randint(1, batch - 1)
    with untouched(lab, ["customers", "products", "accounts", "users"]):
        # group 1: one batch of orders, then paid events for some of them, then the rest
        first, failed = _place(lab, place_order, rng, batch + 2)
        _plant_paid(lab, rng.sample(first[:batch], 3))
        rest, failed2 = _place(lab, place_order, rng, n - batch - 2)
        placed, failed = first + rest, failed + failed2
        _plant_paid(lab, rng.sample(rest, 4))
        broker = relay.Broker(relay.consumer_url(lab), consume)
        try:
            _held_batch(lab, relay_batch, broker, batch)
            if broker.consumer_problems:
                raise CheckFailed("consume " + broker.consumer_problems[0][
                    broker.consumer_problems[0].index(":") + 2:] + "; commit its work "
                                  "(the consumer acknowledges an event only after its commit).")
            # K workers with two kills, then a worker that resumes
            done = len(broker.deliveries)
            broker.kill_after = {done + rng.randint(3, batch)}
            broker.kill_before = {done + batch + rng.randint(batch + 2, 2 * batch)}
            workers = 3
            run = relay.run_workers(lab.url, lambda c, p: relay_batch(c, p, batch), broker,
                                    workers)
            stuck = [e for e in run.errors.values() if "still open" in e]
            if stuck:
                raise CheckFailed(stuck[0] + ": commit before returning.")
            resumed = relay.run_workers(lab.url, lambda c, p: relay_batch(c, p, batch), broker,
                                        1, prefix="R")
            if resumed.errors:
                raise CheckFailed(f"After the kills, a fresh relay worker failed: "
                                  f"{next(iter(resumed.errors.values()))}")
        finally:
            broker.close()
        if len(broker.kills) < 2:
            raise CheckFailed("the check could not kill two relay workers (only "
                              f"{broker.kills}); the relay published too few events per "
                              f"batch of {batch}: publish every event it took.")
        if broker.consumer_problems:
            raise CheckFailed("consume " + broker.consumer_problems[0] + "; commit its work.")
        with psycopg.connect(lab.url, autocommit=True) as watch, \
                psycopg.connect(relay.consumer_url(lab), autocommit=True) as consumer:
            events = watch.execute("""
                SELECT e.id, e.aggregate_id, e.event_type, e.status, o.id IS NOT NULL
                FROM outbox e LEFT JOIN orders o ON o.id = e.aggregate_id ORDER BY e.id"""
                                   ).fetchall()
            orphans = [e for e in events if not e[4]]
            if orphans:
                raise CheckFailed(f"The outbox holds {len(orphans)} event(s) for orders that "
                                  f"do not exist (e.g. order {orphans[0][1]}): events of "
                                  "failed orders were committed. One transaction per order.")
            created = {e[1] for e in events if e[2] == "order_created"}
            if created != set(placed):
                raise CheckFailed(f"{len(set(placed) - created)} committed order(s) have no "
                                  "'order_created' event (and "
                                  f"{len(created - set(placed))} events are for other orders).")
            consumed = dict(consumer.execute(
                "SELECT event_id, count(*) FROM processed_events GROUP BY 1").fetchall())
            ids = {e[0] for e in events}
            delivered = {d.event_id for d in broker.deliveries}
            lost = sorted(ids - delivered)
            if lost:
                status = {e[0]: e[3] for e in events}
                raise CheckFailed(
                    f"{len(lost)} event(s) were never published, e.g. event {lost[0]} (now "
                    f"'{status[lost[0]]}'), after a relay worker was killed mid-batch: the "
                    "relay marked events sent before publishing them, so a crash lost them. "
                    "Publish first, mark sent in the same transaction that locked them, "
                    "commit last.")
            if set(consumed) != ids:
                raise CheckFailed(f"The consumer recorded {len(consumed)} event ids in "
                                  f"processed_events for {len(ids)} events published; record "
                                  "each event id once, in the transaction that applies it.")
            not_sent = [e for e in events if e[3] != "sent"]
            if not_sent:
                raise CheckFailed(f"{len(not_sent)} event(s) were published but are still "
                                  f"'{not_sent[0][3]}' in the outbox (e.g. event "
                                  f"{not_sent[0][0]}): mark each published event sent.")
            undated = watch.execute("""SELECT count(*), min(id) FROM outbox WHERE status = 'sent'
                                       AND (sent_at IS NULL OR sent_at < created_at
                                            OR sent_at > now())""").fetchone()
            if undated[0]:
                raise CheckFailed(
                    f"{undated[0]} event(s) marked 'sent' have no sent_at (or one before the "
                    f"event was created), e.g. event {undated[1]}: the relay's lag (sent_at - "
                    "created_at), the alert on it and the job that purges sent events by age "
                    "all read sent_at. Set sent_at = now() where you set status = 'sent'.")
            duplicates = len(broker.deliveries) - len(delivered)
            if duplicates == 0:
                raise CheckFailed("No event was delivered twice although a worker was killed "
                                  "between publishing and marking sent: the relay did not "
                                  "roll back the killed worker's batch.")
            want = {r[0]: (r[1], Decimal(r[2]), r[3]) for r in watch.execute("""
                SELECT o.customer_id, count(*), sum(o.total),
                       (SELECT count(*) FROM outbox p JOIN orders q ON q.id = p.aggregate_id
                        WHERE p.event_type = 'order_paid' AND q.customer_id = o.customer_id)
                FROM orders o WHERE o.id = ANY(%s) GROUP BY 1""", [placed]).fetchall()}
            got = {r[0]: (r[1], Decimal(r[2]), r[3]) for r in consumer.execute(
                "SELECT customer_id, orders, revenue, paid FROM customer_stats").fetchall()}
            if got != want:
                wrong = sorted(c for c in set(got) | set(want) if got.get(c) != want.get(c))
                c = wrong[0]
                raise CheckFailed(
                    f"The consumer's customer_stats do not match the committed orders after "
                    f"{duplicates} duplicate deliveries: customer {c} has (orders, revenue, "
                    f"paid) = {got.get(c)}, expected {want.get(c)}. Duplicates were applied "
                    "twice: the consumer must apply an event only when its id is new "
                    "(INSERT INTO processed_events … ON CONFLICT DO NOTHING RETURNING, in the "
                    "same transaction as the effect).",
                    f"{len(wrong)} customers differ")
        _consumer_atomic(lab, consume, rng)
        _ordering(lab, broker)   # last: a lost or doubled event is the graver fault
        _dead_letter(lab, relay_batch, consume, rng.sample(placed, 2), batch, rng)
    return (f"{len(placed)} orders ({len(failed)} failed, no event), {len(ids)} events "
            f"consumed once each after 2 killed workers and {duplicates} duplicate "
            "deliveries; per-order order kept; a refused event went 'dead' after 3 attempts")


# --------------------------------------------------------------------------
# q3


def _snap(conn: psycopg.Connection, order_id: int) -> Any:
    row = conn.execute("SELECT to_jsonb(o) FROM orders o WHERE id = %s", [order_id]).fetchone()
    return row[0] if row else None


def _same(conn: psycopg.Connection, a: Any, b: Any) -> bool:
    """Two jsonb images of orders rows are the same row (compared as PostgreSQL values)."""
    from psycopg.types.json import Jsonb
    return bool(conn.execute(
        "SELECT jsonb_populate_record(NULL::orders, %s) IS NOT DISTINCT FROM "
        "jsonb_populate_record(NULL::orders, %s)", [Jsonb(a), Jsonb(b)]).fetchone()[0])


def _changed(conn: psycopg.Connection, before: Any, after: Any) -> set[str]:
    from psycopg.types.json import Jsonb
    rows = conn.execute("""
        SELECT b.key FROM jsonb_each(%s) b JOIN jsonb_each(%s) a USING (key)
        WHERE a.value IS DISTINCT FROM b.value""", [Jsonb(before), Jsonb(after)]).fetchall()
    return {r[0] for r in rows}


def _audit_rows(conn: psycopg.Connection, after_id: int) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM order_audit WHERE id > %s ORDER BY id",
                           [after_id]).fetchall()


def _install_audit(lab: Any, audit_sql: str) -> None:
    """Drop earlier audit triggers on orders (not the foreign keys' internal ones), apply."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        for (name,) in conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = "
                                    "'orders'::regclass AND NOT tgisinternal").fetchall():
            conn.execute(sql.SQL("DROP TRIGGER {} ON orders").format(sql.Identifier(name)))
        conn.execute(audit_sql)


# q3's role for a change made under SET ROLE, one per challenge database (the grader makes
# it under grading, where the learner's role may not create roles)
CLERK = "_clerk"
GRADER_MAKES_ROLES = roles.grader_makes((CLERK, False))


def drop_clerk(lab: Any) -> None:
    roles.drop(lab, CLERK)


def make_clerk(lab: Any) -> str:
    """A NOLOGIN role allowed to change orders (and append to the audit): the check changes
    one order under SET LOCAL ROLE, where current_user and session_user differ."""
    role = roles.fresh(lab, CLERK)
    lab.on_reset(lambda: drop_clerk(lab))
    with psycopg.connect(lab.url, autocommit=True) as conn:
        ident = sql.Identifier(role)
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO {}").format(ident))
        conn.execute(sql.SQL("GRANT SELECT, INSERT ON order_audit TO {}").format(ident))
        conn.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}")
                     .format(ident))
    return role


def q3(lab: Any, audit_sql: str) -> str:
    require(audit_sql)
    rng = adv.rng()
    _install_audit(lab, audit_sql)
    _normaliser(lab, True)
    role = make_clerk(lab)
    try:
        return _q3(lab, rng, role)
    finally:
        drop_clerk(lab)
        _normaliser(lab, False)


NOTE_ASKED = "gift: wrap it"
NORMALISER = "ob_check_normalise_note"


def _normaliser(lab: Any, on: bool) -> None:
    """A BEFORE trigger named to fire after any other BEFORE trigger on orders ('~' sorts
    after letters), rewriting one note the check writes, as a normalising trigger would."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute(f'DROP TRIGGER IF EXISTS "~{NORMALISER}" ON orders')
        conn.execute(f"DROP FUNCTION IF EXISTS {NORMALISER}()")
        if not on:
            return
        conn.execute(f"""CREATE FUNCTION {NORMALISER}() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN NEW.note := upper(NEW.note); RETURN NEW; END $$""")
        conn.execute(sql.SQL(f'CREATE TRIGGER "~{NORMALISER}" BEFORE INSERT OR UPDATE ON orders '
                             "FOR EACH ROW WHEN (NEW.note = {}) "
                             f"EXECUTE FUNCTION {NORMALISER}()").format(sql.Literal(NOTE_ASKED)))


def _q3(lab: Any, rng: Any, role: str) -> str:
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    settings = caller_settings()
    zone = settings["TimeZone"]
    with psycopg.connect(lab.url, autocommit=True) as watch:
        db_user = watch.execute("SELECT current_user").fetchone()[0]
        start = watch.execute("SELECT coalesce(max(id), 0) FROM order_audit").fetchone()[0]
        customers = [r[0] for r in watch.execute(
            "SELECT id, country FROM customers ORDER BY id LIMIT 300").fetchall()]
        existing = [r[0] for r in watch.execute(
            "SELECT id FROM orders WHERE note IS NULL ORDER BY id LIMIT 500").fetchall()]
    names = adv.case_variants("Ana", rand=rng)
    users = {"sql": f"{names[0]}_%{rng.randint(10, 99)}", "orm": f"{names[-1]} o'Brien",
             "copy": f"batch_{rng.randint(100, 999)}"}
    expected: list[tuple[str, int, Any, Any, str | None]] = []   # op, id, before, after, user
    orders = rng.sample(existing, 8)
    with untouched(lab, ["customers", "products", "order_items", "accounts", "users"]), \
            Caller(lab, settings=settings) as caller, \
            psycopg.connect(lab.url, autocommit=True) as watch:
        watch.execute("SELECT set_config('TimeZone', %s, false)", [zone])
        conn = caller.conn
        # 1. plain SQL, SET LOCAL app.username
        with conn.transaction():
            conn.execute("SELECT set_config('app.username', %s, true)", [users["sql"]])
            new_id = conn.execute("""
                INSERT INTO orders (customer_id, status, created_at, total, shipping_country, note)
                VALUES (%s, 'pending', %s::timestamptz, 12.34, 'DE', %s) RETURNING id""",
                                  [rng.choice(customers), "2024-03-30 23:59:59.999+00",
                                   "50% off_\\"]).fetchone()[0]
        expected.append(("INSERT", new_id, None, _snap(watch, new_id), users["sql"]))
        before = _snap(watch, orders[0])
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL app.username = {}").format(sql.Literal(users["sql"])))
            conn.execute("UPDATE orders SET status = 'cancelled', note = NULL, "
                         "total = total + 0.01 WHERE id = %s", [orders[0]])
        expected.append(("UPDATE", orders[0], before, _snap(watch, orders[0]), users["sql"]))
        before_new = _snap(watch, new_id)
        with conn.transaction():
            conn.execute("SELECT set_config('app.username', %s, true)", [users["sql"]])
            conn.execute("DELETE FROM orders WHERE id = %s", [new_id])
        expected.append(("DELETE", new_id, before_new, None, users["sql"]))
        # a change made under SET ROLE (a clerk's role, a migration's owner role): db_user is
        # the role it ran as (current_user), not the login role (session_user); it changes
        # columns the other changes leave alone (a trigger on UPDATE OF some columns skips it)
        before = _snap(watch, orders[6])
        other = rng.choice([c for c in customers if c != before["customer_id"]])
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                conn.execute("SELECT set_config('app.username', %s, true)", [users["sql"]])
                conn.execute("UPDATE orders SET customer_id = %s, shipping_country = CASE "
                             "WHEN shipping_country = 'NP' THEN 'AU' ELSE 'NP' END "
                             "WHERE id = %s", [other, orders[6]])
        except psycopg.errors.InsufficientPrivilege as exc:
            raise CheckFailed(
                f"An UPDATE of orders under SET ROLE {role} (a role with SELECT, INSERT, "
                "UPDATE, DELETE on orders and INSERT on order_audit) failed: "
                f"{exc.diag.message_primary}. Your trigger needs more than writing its row to "
                "order_audit: keep it to that table.") from None
        expected.append(("UPDATE", orders[6], before, _snap(watch, orders[6]), users["sql"]))
        as_role = {("UPDATE", orders[6])}
        # a change rolled back: no audit row may remain
        conn.execute("SELECT set_config('app.username', 'rolled back', true)")
        conn.execute("UPDATE orders SET note = 'never' WHERE id = %s", [orders[1]])
        conn.rollback()
        # no application user set: app_user NULL
        before = _snap(watch, orders[1])
        with conn.transaction():
            conn.execute("UPDATE orders SET created_at = created_at + interval '1.5 seconds' "
                          "WHERE id = %s", [orders[1]])
        expected.append(("UPDATE", orders[1], before, _snap(watch, orders[1]), None))
        # a BEFORE trigger that fires after any of yours (the check's own, standing for a
        # normaliser): the audit must record the row as stored, not as it was asked for
        before = _snap(watch, orders[7])
        with conn.transaction():
            conn.execute("SELECT set_config('app.username', %s, true)", [users["sql"]])
            conn.execute("UPDATE orders SET note = %s WHERE id = %s", [NOTE_ASKED, orders[7]])
        expected.append(("UPDATE", orders[7], before, _snap(watch, orders[7]), users["sql"]))
        normalised = ("UPDATE", orders[7])
        caller.verify("the plain SQL changes")
        # a client that never set app.username at all (a psql hot-fix): NULL, never an error
        before = _snap(watch, orders[5])
        with psycopg.connect(lab.url, options=f"-c TimeZone={zone}") as fresh:
            try:
                fresh.execute("UPDATE orders SET note = 'hot-fix' WHERE id = %s", [orders[5]])
                fresh.commit()
            except psycopg.Error as exc:
                raise CheckFailed(
                    "An UPDATE of orders from a session that never set app.username failed "
                    f"({type(exc).__name__}: {str(exc).strip()}): your trigger broke the writes "
                    "of every client that does not set it (a psql hot-fix, a batch job). Read "
                    "it with current_setting('app.username', true), which returns NULL "
                    "instead of raising.") from None
        expected.append(("UPDATE", orders[5], before, _snap(watch, orders[5]), None))
        # 2. the ORM
        from sqlalchemy import create_engine
        engine = create_engine(lab.sqlalchemy_url, connect_args={
            "options": f"-c TimeZone={zone}"})
        try:
            from sqlalchemy import MetaData, Table
            from sqlalchemy.orm import registry
            meta = MetaData()
            table = Table("orders", meta, autoload_with=engine)

            class Order:  # mapped imperatively to the table as it is
                pass

            registry().map_imperatively(Order, table)
            picked = orders[2:5]
            befores = {i: _snap(watch, i) for i in picked}
            with Session(engine) as session, session.begin():
                session.execute(text("SELECT set_config('app.username', :u, true)"),
                                {"u": users["orm"]})
                for i in picked:
                    order = session.get(Order, i)
                    order.status = rng.choice(["paid", "shipped"])
                    order.note = f"orm {i}"
                made = Order()
                made.customer_id, made.status, made.total = rng.choice(customers), "paid", 5
                made.created_at = dt.datetime(2024, 3, 31, tzinfo=dt.timezone.utc)
                made.shipping_country = "FR"
                session.add(made)
                session.flush()
                orm_new = made.id
        finally:
            engine.dispose()
        for i in picked:
            expected.append(("UPDATE", i, befores[i], _snap(watch, i), users["orm"]))
        expected.append(("INSERT", orm_new, None, _snap(watch, orm_new), users["orm"]))
        # 3. COPY
        rows = adv.non_round(7, rand=rng)
        high = watch.execute("SELECT max(id) FROM orders").fetchone()[0]
        with conn.transaction():
            conn.execute("SELECT set_config('app.username', %s, true)", [users["copy"]])
            with conn.cursor().copy("COPY orders (customer_id, status, created_at, total, "
                                    "shipping_country, note) FROM STDIN") as copy:
                for k in range(rows):
                    copy.write_row((rng.choice(customers), "pending",
                                    f"2024-01-0{1 + k % 3} 0{k % 10}:00:00.5+02", f"{k}.50",
                                    "PL", None if k % 2 else f"copy\t{k}"))
        copied = [r[0] for r in watch.execute("SELECT id FROM orders WHERE id > %s AND "
                                              "id <> %s ORDER BY id", [high, orm_new])]
        for i in copied:
            expected.append(("INSERT", i, None, _snap(watch, i), users["copy"]))
        caller.verify("the COPY")
        got = _audit_rows(watch, start)
        # judge
        paths = {users["sql"]: "plain SQL", None: "plain SQL", users["orm"]: "the ORM",
                 users["copy"]: "COPY"}
        found = {(r["op"], r["order_id"]) for r in got}
        missing: dict[str, int] = {}
        unaudited = [e for e in expected if (e[0], e[1]) not in found]
        for op, order_id, _, _, user in unaudited:
            missing[paths[user]] = missing.get(paths[user], 0) + 1
        if unaudited and all(e[0] == "UPDATE" for e in unaudited) and any(
                r["op"] == "UPDATE" for r in got):
            op, order_id, before, after, _ = unaudited[0]
            raise CheckFailed(
                f"The UPDATE of order {order_id} that changed "
                f"{', '.join(sorted(_changed(watch, before, after)))} left no audit row, while "
                "other UPDATEs were audited: the trigger fires only for some columns (AFTER "
                "UPDATE OF …, or a WHEN clause), so a change to any other column leaves no "
                "trace. Audit every UPDATE (AFTER INSERT OR UPDATE OR DELETE … FOR EACH ROW) "
                "and keep the changed columns in the row it writes.",
                f"{len(unaudited)} update(s) without an audit row")
        if missing or len(got) != len(expected):
            if got and all(r["old_values"] is None and r["new_values"] is None for r in got):
                raise CheckFailed(
                    f"The audit trail has {len(got)} row(s) for {len(expected)} row changes, "
                    "and none holds the old or new values: a statement-level trigger sees no "
                    "rows, so a COPY of many rows leaves one line that says nothing. Use a "
                    "trigger FOR EACH ROW and record OLD and NEW.")
            if missing:
                shown = ", ".join(f"{n} through {p}" for p, n in missing.items())
                raise CheckFailed(
                    f"Row changes made through some client paths left no audit row ({shown}; "
                    f"{len(got)} audit rows for {len(expected)} changes): the audit must not "
                    "depend on the client. An ORM hook misses plain SQL and COPY; a trigger "
                    "FOR EACH ROW on orders sees every path.")
            raise CheckFailed(f"The audit trail has {len(got)} row(s) for {len(expected)} row "
                              "changes (a rolled-back change must leave none, and each change "
                              "exactly one): use one trigger FOR EACH ROW, AFTER the change.")
        for (op, order_id, before, after, user), row in zip(expected, got):
            via = ("plain SQL" if user == users["sql"] or user is None else
                   "the ORM" if user == users["orm"] else "COPY")
            what = f"the {op} of order {order_id} through {via}"
            if row["op"] != op or row["order_id"] != order_id:
                raise CheckFailed(f"For {what}, the audit row says {row['op']} of order "
                                  f"{row['order_id']}: record TG_OP and the row's id, one row "
                                  "per change, in the order they happened.")
            want_db = role if (op, order_id) in as_role else db_user
            if row["db_user"] != want_db:
                if want_db == role:
                    raise CheckFailed(
                        f"For {what}, made under SET ROLE {role}, db_user is "
                        f"{row['db_user']!r}, expected {role!r}: record current_user, the role "
                        "the change ran as. session_user is the role that logged in (SET ROLE "
                        "does not change it), and inside a SECURITY DEFINER function "
                        "current_user is the function's owner: either way every change made "
                        "after SET ROLE is put on the wrong role.")
                raise CheckFailed(f"For {what}, db_user is {row['db_user']!r}, expected "
                                  f"{db_user!r} (current_user).")
            if row["app_user"] != user:
                raise CheckFailed(
                    f"For {what}, app_user is {row['app_user']!r}, expected {user!r}: read "
                    "current_setting('app.username', true), which is the value SET LOCAL gave "
                    "this transaction; when none was set it is NULL, or '' in a session that "
                    "set it in an earlier transaction: nullif(…, '') makes both NULL.")
            if op == "INSERT" and not (row["old_values"] is None
                                       and _same(watch, row["new_values"], after)):
                raise CheckFailed(f"For {what}, new_values should be the whole new row "
                                  "(to_jsonb(NEW)) and old_values NULL; got "
                                  f"{str(row['new_values'])[:160]}.")
            if op == "DELETE" and not (row["new_values"] is None
                                       and _same(watch, row["old_values"], before)):
                raise CheckFailed(f"For {what}, old_values should be the whole deleted row "
                                  "(to_jsonb(OLD)) and new_values NULL.")
            if op == "UPDATE":
                changed = _changed(watch, before, after)
                keys_new = set(row["new_values"] or {})
                keys_old = set(row["old_values"] or {})
                if keys_new != changed or keys_old != changed:
                    raise CheckFailed(
                        f"For {what}, the audit row holds the columns {sorted(keys_new)} "
                        f"(new) and {sorted(keys_old)} (old); the columns that changed are "
                        f"{sorted(changed)}. Keep exactly the changed columns, old and new.")
                merged_new = {**before, **row["new_values"]}
                merged_old = {**after, **row["old_values"]}
                if (op, order_id) == normalised and not _same(watch, merged_new, after):
                    raise CheckFailed(
                        f"For {what}, the audit row's new values are {row['new_values']}, but "
                        f"the row was stored with note {after['note']!r}: another BEFORE "
                        "trigger on orders (here the check's own, which normalises that note) "
                        "changed the row after your trigger had recorded it. A trigger that "
                        "fires BEFORE the change sees the row as asked for, which later BEFORE "
                        "triggers may still change or cancel; audit AFTER INSERT OR UPDATE OR "
                        "DELETE … FOR EACH ROW, when the row is final.")
                if not (_same(watch, merged_new, after) and _same(watch, merged_old, before)):
                    raise CheckFailed(f"For {what}, the old and new values in the audit row "
                                      "are not the values before and after the change.")
    return (f"{len(expected)} row changes (plain SQL, ORM, COPY of {rows} rows) each audited "
            "with its diff, database user and application user; the rolled-back change left "
            "nothing")
