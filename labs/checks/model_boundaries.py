"""Checks for 10_model_boundaries: the ORM stays inside the service layer.

The seed's "Model Boundary Enforcement" challenge, with the N+1 material: an API that
hands SQLAlchemy models to its callers leaks columns, lets a request body set fields it
must not, lazy-loads after the session is gone and sends one query per row. Every check
judges by effect, on data and columns planted from the run's seed
(``labs.course.adversarial``), through sessions on a non-UTC connection:

* q1 reads the learner's relationships (``Customer.orders`` ↔ ``Order.customer``,
  ``Order.items`` ↔ ``OrderItem.order``, ``OrderItem.product``): each must exist, point at
  the right class, and load exactly what the foreign keys say when asked eagerly
  (compared with raw SQL for a skewed and an ordinary customer); touched without being
  loaded, each must raise, having sent no statement (the statement counter watches);
* q2 adds a new internal column to ``customers`` *and to the learner's mapped class*
  (a seeded name, a secret default) after the DTO was written, then calls
  ``get_customer_profile`` for ordinary customers, one with a NULL phone, an admin, one with
  an internal note: the result must be a ``CustomerOut`` (never an ORM instance), have
  exactly the public fields with the stored values, carry none of the secret *values*
  anywhere (password hash, note, the new column), and still serialise after its session is
  closed, and hold no other field or attribute (a secret kept out of the JSON with
  ``Field(exclude=True)`` or a private attribute still crosses the boundary), and send
  created_at in its JSON as that instant with its offset (a formatted wall time fails); soft-deleted
  (a ``deleted_at`` ahead of the clock too) and missing customers give
  ``None``; customers are left unchanged;
* q3 sends real HTTP requests (FastAPI's ``TestClient``) to the app built by the
  notebook's ``make_app`` with the learner's ``CustomerPatch`` and ``patch_customer``: a
  full change of the allowed fields (text with quotes, LIKE metacharacters, non-ASCII), a
  partial body, an explicit ``null``, an empty body, a body with each protected field
  (seeded order, the column the check added included) beside an allowed one, values the
  database would refuse (NULL full name, NULL country, a one- and a three-letter country),
  a partial PATCH while another session changes another field between its read and its
  write (that change must survive: no lost update), a customer soft-deleted with a
  ``deleted_at`` still ahead (404, like a past one); after every request the
  protected columns of the patched customers must be as before and no other customer's row
  may have been written (rows whose xmin is newer than the check's start: one scan, no
  checksum of every row, 40 s per run at small scale before), and the answer 200, 404 or 422
  as the task says;
* q4 plants customers with orders sharing ``created_at`` instants (ids arranged so that only
  ``id DESC`` breaks the ties as asked), orders without items, a size no page divides, and
  pages through them (seeded page size, every offset, one past the end) comparing each page
  with a raw-SQL oracle (a page cut short with whole orders is a cap, told apart from a LIMIT
  on joined rows): at most 3 statements per call whatever the page size, ``OrderOut``
  instances that still serialise after the session is closed, LIMIT counted in orders, not
  in joined rows; every call sends a statement (no cache: an order's status changes
  between pages) and fetches at most the page's orders, items and products (+3) rows (the
  statement counter's rowcounts); items are stored out of id order, so only an ORDER BY id
  returns them as asked. Orders have every status (a cancelled and a refunded one
  always): a status filter drops them.
* q1 also tells ``lazy="noload"`` (an empty list or None, no statement, no error) apart
  from an eager default.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import secrets
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import psycopg

from ..course import adversarial as adv
from ..course.checking import CheckFailed, NotAttempted, require
from ..course.left_behind import untouched
from ..data.dataset import query_checksum
from ..tools.statements import count_statements

# customers' columns, by role
PUBLIC = ("id", "email", "full_name", "phone", "country", "city", "created_at")
PATCHABLE = ("full_name", "phone", "country", "city")
SENSITIVE = ("password_hash", "is_admin", "internal_note")
BUDGET = 3  # statements per list_orders_with_items call, whatever the page size
STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled", "refunded")

INTERNAL_COLUMNS_SQL = """
ALTER TABLE customers
    ADD COLUMN IF NOT EXISTS password_hash text    NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS is_admin      boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS internal_note text;
UPDATE customers
   SET password_hash = 'pbkdf2_sha256$600000$' || left(md5('salt' || id), 12) || '$'
                       || md5(email || id),
       is_admin = (id % 997 = 0),
       internal_note = CASE WHEN id % 13 = 0 THEN 'fraud review #' || id END
 WHERE password_hash = '';
"""


def add_internal_columns(lab: Any) -> None:
    """Give ``customers`` what real user tables have and no API may show: a password
    hash, an admin flag, a support note (idempotent)."""
    lab.execute(INTERNAL_COLUMNS_SQL)


# --------------------------------------------------------------------------
# helpers


def _engine(lab: Any, zone: str) -> Any:
    """A SQLAlchemy engine of the check's own, on sessions in a non-UTC TimeZone."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(lab.sqlalchemy_url, poolclass=NullPool,
                         connect_args={"options": f"-c TimeZone={zone}"})


def _session(engine: Any) -> Any:
    from sqlalchemy.orm import Session

    return Session(engine)


def _is_orm(value: Any) -> bool:
    return hasattr(value, "_sa_instance_state")


def _orm_inside(value: Any, depth: int = 0) -> Any:
    """The first ORM instance found in a value, its fields or its items (or None)."""
    if _is_orm(value):
        return value
    if depth > 4:
        return None
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        items = [getattr(value, name, None) for name in type(value).model_fields]
        items += list((value.model_extra or {}).values())
    elif isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, (list, tuple, set)):
        items = list(value)
    else:
        return None
    for item in items:
        found = _orm_inside(item, depth + 1)
        if found is not None:
            return found
    return None


def _pydantic_class(cls: Any, name: str) -> None:
    from pydantic import BaseModel

    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise CheckFailed(f"{name} must be a Pydantic model (`class {name}(BaseModel): …`), "
                          f"the API's contract; got {cls!r}.")


def _fetch_dicts(conn: psycopg.Connection, sql: str, params: Any = None) -> list[dict]:
    cur = conn.execute(sql, params)
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def _customer_columns(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'customers'::regclass "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]


def _call(fn: Callable[..., Any], *args: Any, who: str, **kwargs: Any) -> Any:
    """Call the learner's function; an accidental lazy load is told as what it is."""
    from sqlalchemy.exc import InvalidRequestError

    try:
        return fn(*args, **kwargs)
    except (NotAttempted, CheckFailed):
        raise
    except InvalidRequestError as exc:
        if "lazy='raise'" in str(exc) or "lazy='raise_on_sql'" in str(exc):
            raise CheckFailed(
                f"{who} touched a relationship it had not loaded, and the model refused to "
                f"lazy-load it ({str(exc).splitlines()[0]}). Without lazy='raise' that line "
                "would have sent one query per row: the N+1 pattern. Load the relationship "
                "with the query (selectinload / joinedload in .options(...)).") from None
        raise


# --------------------------------------------------------------------------
# q1: relationships that refuse to lazy-load

RELATIONSHIPS = (  # (class, attribute, target class, a collection?)
    ("Customer", "orders", "Order", True),
    ("Order", "customer", "Customer", False),
    ("Order", "items", "OrderItem", True),
    ("OrderItem", "order", "Order", False),
    ("OrderItem", "product", "Product", False),
)


def q1(lab: Any, Customer: Any, Order: Any, OrderItem: Any) -> str:
    """Every relationship exists, loads what the foreign keys say, and never lazy-loads."""
    from sqlalchemy import inspect, select
    from sqlalchemy.exc import InvalidRequestError
    from sqlalchemy.orm import selectinload

    require(Customer, Order, OrderItem)
    classes = {"Customer": Customer, "Order": Order, "OrderItem": OrderItem}
    found = {(c, a): inspect(classes[c]).relationships.get(a) for c, a, _, _ in RELATIONSHIPS}
    if not any(found.values()):
        raise NotAttempted("define the relationships in the exercise cell, then run it")
    missing = [f"{c}.{a}" for (c, a), rel in found.items() if rel is None]
    if missing:
        raise CheckFailed(f"The models have no relationship {', '.join(missing)}: define "
                          "each one the task lists (with back_populates on both sides).")
    for c, a, target, collection in RELATIONSHIPS:
        rel = found[(c, a)]
        if rel.mapper.class_.__name__ != target or bool(rel.uselist) != collection:
            raise CheckFailed(
                f"{c}.{a} should be {'a list of ' + target if collection else 'one ' + target}; "
                f"it maps {'a list of ' if rel.uselist else 'one '}{rel.mapper.class_.__name__}.")
    r = adv.rng()
    engine = _engine(lab, adv.non_utc_zone(rand=r))
    try:
        with psycopg.connect(lab.url, autocommit=True) as conn:
            # the busiest customer with at most 1,500 orders (at larger scales the busiest
            # has tens of thousands: loading them all would be the check's whole budget)
            skewed = conn.execute("SELECT customer_id FROM orders GROUP BY 1 "
                                  "HAVING count(*) <= 1500 "
                                  "ORDER BY count(*) DESC, 1 LIMIT 1").fetchone()[0]
            ordinary = r.choice([row[0] for row in conn.execute(
                "SELECT customer_id FROM orders GROUP BY 1 HAVING count(*) BETWEEN 2 AND 12 "
                "ORDER BY 1 LIMIT 200")])
            item_id, order_id = conn.execute(
                "SELECT id, order_id FROM order_items ORDER BY id OFFSET %s LIMIT 1",
                [r.randrange(50)]).fetchone()
            customer_id = conn.execute("SELECT customer_id FROM orders WHERE id = %s",
                                       [order_id]).fetchone()[0]
            expected = {cid: {row[0]: sorted(row[1] or []) for row in conn.execute(
                "SELECT o.id, array_agg(i.id) FILTER (WHERE i.id IS NOT NULL) FROM orders o "
                "LEFT JOIN order_items i ON i.order_id = o.id WHERE o.customer_id = %s "
                "GROUP BY o.id", [cid])} for cid in (skewed, ordinary)}
        # eager loading gives exactly what the foreign keys say
        for cid, want in expected.items():
            with _session(engine) as s:
                orders = s.scalars(select(Order).where(Order.customer_id == cid).options(
                    selectinload(Order.items).selectinload(OrderItem.product),
                    selectinload(Order.customer))).all()
                got = {o.id: sorted(i.id for i in o.items) for o in orders}
                wrong = [o.id for o in orders if o.customer.id != cid
                         or any(i.order_id != o.id or i.product.id != i.product_id
                                for i in o.items)]
            if got != want or wrong:
                bad = sorted(set(got) ^ set(want) | {k for k in got if got[k] != want.get(k)}
                             | set(wrong))[:3]
                raise CheckFailed(
                    f"Loaded eagerly, the relationships of customer {cid}'s orders do not match "
                    "the foreign keys (orders.customer_id, order_items.order_id, "
                    f"order_items.product_id); first orders that differ: {bad}. Check each "
                    "relationship's target class and back_populates.")
        # touched without being loaded: an error, no statement
        probes = [("Customer", Customer, customer_id, "orders"),
                  ("Order", Order, order_id, "customer"),
                  ("Order", Order, order_id, "items"),
                  ("OrderItem", OrderItem, item_id, "order"),
                  ("OrderItem", OrderItem, item_id, "product")]
        r.shuffle(probes)
        for name, cls, key, attr in probes:
            with _session(engine) as s:
                obj = s.get(cls, key)
                raised = False
                value = None
                with count_statements(engine) as sent:
                    try:
                        value = getattr(obj, attr)
                        if isinstance(value, list):
                            len(value)
                    except InvalidRequestError:
                        raised = True
                var = {"Customer": "customer", "Order": "order", "OrderItem": "item"}[name]
                an = "an" if name[0] in "AEIOU" else "a"
                if not raised and not sent.count and (value is None or (
                        isinstance(value, list) and not value)):
                    raise CheckFailed(
                        f"`{var}.{attr}` on {an} {name} loaded without asking for it read as "
                        f"{'None' if value is None else 'an empty list'}, with no error and no "
                        "statement, although the database has rows for it: lazy=\"noload\" "
                        "answers nothing instead of refusing, so code "
                        "that forgot to load it shows an order without items, silently. "
                        f"Declare {name}.{attr} with lazy=\"raise\".")
                if not raised and not sent.count:
                    raise CheckFailed(
                        f"`{var}.{attr}` on {an} {name} loaded without asking for it was "
                        "already there: a default eager strategy (lazy=\"selectin\" or "
                        f"\"joined\") loads it with every {name}, needed or not (all of a "
                        "customer's orders to show a profile). Declare "
                        f"{name}.{attr} with lazy=\"raise\" and load it in the queries that "
                        "need it.")
                if not raised or sent.count:
                    raise CheckFailed(
                        f"`{var}.{attr}` on {an} {name} loaded without it sent {sent.count} "
                        "statement(s) to load it: a lazy load. In a loop over N rows that is N "
                        "more queries (N+1), and after the session is closed a "
                        "DetachedInstanceError in the API. Declare "
                        f"{name}.{attr} with lazy=\"raise\" so that code which forgot to load "
                        "it fails at once, in tests, instead of querying in production.",
                        sent.report())
    finally:
        engine.dispose()
    return ("5 relationships load what the foreign keys say when asked, and refuse (no "
            "statement sent) when they were not")


# --------------------------------------------------------------------------
# q2: the profile DTO

NEW_COLUMNS = ("totp_secret", "api_token", "reset_token", "tax_number", "risk_note")


def _add_secret_column(lab: Any, Customer: Any, r: Any) -> tuple[str, str]:
    """A new internal column in the table and in the learner's mapped class, as a
    developer adds one months after the DTO was written. Returns (name, secret value)."""
    from sqlalchemy import Text
    from sqlalchemy.orm import mapped_column

    name = f"{r.choice(NEW_COLUMNS)}_{r.randint(100, 999)}"
    secret = f"sek_{secrets.token_hex(6)}"
    lab.execute(f"ALTER TABLE customers ADD COLUMN IF NOT EXISTS {name} text "
                f"DEFAULT '{secret}'")
    if name not in Customer.__table__.c:
        setattr(Customer, name, mapped_column(name, Text, nullable=True))
    return name, secret


def q2(lab: Any, CustomerOut: Any, get_customer_profile: Callable[..., Any],
       Customer: Any) -> str:
    """The profile: a DTO with the public fields only, whatever columns the model grows."""
    require(CustomerOut, get_customer_profile, Customer)
    _pydantic_class(CustomerOut, "CustomerOut")
    r = adv.rng()
    new_column, new_secret = _add_secret_column(lab, Customer, r)
    engine = _engine(lab, adv.non_utc_zone(rand=r))
    try:
        with psycopg.connect(lab.url, autocommit=True) as conn:
            live = "deleted_at IS NULL"
            picks = {
                "an ordinary customer": f"{live} AND phone IS NOT NULL AND NOT is_admin",
                "a customer without a phone": f"{live} AND phone IS NULL",
                "an admin": f"{live} AND is_admin",
                "a customer with an internal note": f"{live} AND internal_note IS NOT NULL",
            }
            chosen = []
            for label, where in picks.items():
                ids = [row[0] for row in conn.execute(
                    f"SELECT id FROM customers WHERE {where} ORDER BY id LIMIT 300")]
                if ids:
                    chosen.append((label, r.choice(ids)))
            deleted = conn.execute("SELECT id FROM customers WHERE deleted_at IS NOT NULL "
                                   "ORDER BY id LIMIT 1 OFFSET %s", [r.randrange(20)]).fetchone()
            missing = conn.execute("SELECT max(id) + %s FROM customers",
                                   [r.randint(1000, 9999)]).fetchone()[0]
            rows = {row["id"]: row for row in _fetch_dicts(
                conn, "SELECT * FROM customers WHERE id = ANY(%s)", [[c for _, c in chosen]])}
        with untouched(lab, ["customers", "orders"], why="reading a profile changes nothing"):
            # a customer deleted with a date still ahead is deleted too (planted, then undone)
            ahead = None
            with psycopg.connect(lab.url, autocommit=True) as conn:
                ahead = conn.execute(
                    "INSERT INTO customers (email, full_name, country, created_at, deleted_at, "
                    "password_hash) VALUES (%s, 'Later Gone', 'NZ', now(), now() + interval "
                    "'3 days', 'x') RETURNING id", [f"later-{secrets.token_hex(4)}@example.org"]
                ).fetchone()[0]
            try:
                for label, cid in [("a soft-deleted customer", deleted[0] if deleted else None),
                                   ("a customer deleted with a deleted_at still ahead", ahead),
                                   ("a customer id that does not exist", missing)]:
                    if cid is None:
                        continue
                    with _session(engine) as s:
                        got = _call(get_customer_profile, s, cid, who="get_customer_profile")
                    if got is not None:
                        raise CheckFailed(
                            f"get_customer_profile(session, {cid}) for {label} returned "
                            f"{got!r}; it must return None (the API answers 404): a customer "
                            "whose deleted_at is set, even to a date ahead, is gone.")
            finally:
                with psycopg.connect(lab.url, autocommit=True) as conn:
                    conn.execute("DELETE FROM customers WHERE id = %s", [ahead])
            for label, cid in chosen:
                row = rows[cid]
                with _session(engine) as s:
                    got = _call(get_customer_profile, s, cid, who="get_customer_profile")
                _judge_profile(got, row, label, CustomerOut, new_column, new_secret)
    finally:
        engine.dispose()
    return (f"profiles carry exactly {len(PUBLIC)} public fields, no secret (not even "
            f"{new_column}, added after your DTO), and outlive their session")


def _judge_profile(got: Any, row: dict, label: str, CustomerOut: Any, new_column: str,
                   new_secret: str) -> None:
    cid = row["id"]
    call = f"get_customer_profile(session, {cid}) for {label}"
    if got is None:
        raise CheckFailed(f"{call} returned None; that customer exists and is not deleted.")
    if _is_orm(got):
        raise CheckFailed(
            f"{call} returned the ORM instance itself ({type(got).__name__}), not a "
            "CustomerOut. Every column it maps then reaches the caller (password_hash, "
            "is_admin…), any column added later too, and touching it after the session closes "
            "raises DetachedInstanceError. Build the DTO inside the session: "
            "CustomerOut.model_validate(customer) with from_attributes=True.")
    if not isinstance(got, CustomerOut):
        raise CheckFailed(f"{call} returned a {type(got).__name__}, not a CustomerOut: the "
                          "service layer returns the API's own type.")
    inner = _orm_inside(got)
    if inner is not None:
        raise CheckFailed(f"{call} returned a CustomerOut holding an ORM instance "
                          f"({type(inner).__name__}): DTOs hold plain values only.")
    try:
        dumped = got.model_dump()
        text = got.model_dump_json()
    except Exception as exc:  # noqa: BLE001 - what the learner's DTO raised, told as such
        raise CheckFailed(f"{call} returned a CustomerOut that cannot be serialised once its "
                          f"session is closed: {type(exc).__name__}: {exc}".strip()) from None
    # the secret values, wherever a field of any name carries them
    secrets_of_row = {"password_hash": row["password_hash"],
                      "internal_note": row.get("internal_note"), new_column: new_secret}
    for column, value in secrets_of_row.items():
        if value and str(value) in text:
            raise CheckFailed(
                f"{call} leaks {column}: its value is in the JSON the API would send. "
                + (f"{new_column} is a column added to the table and the model *after* your "
                   "DTO was written: a DTO built from the model's columns minus a list of "
                   "secrets (a denylist), or one that allows extra fields, publishes every new "
                   "column by default. Declare the public fields one by one (an allowlist)."
                   if column == new_column else
                   "A DTO that mirrors the table publishes every internal column; declare only "
                   f"the public ones: {', '.join(PUBLIC)}."))
    # what the DTO holds, not only what it serialises: a field excluded from JSON
    # (Field(exclude=True)) or a private attribute still carries the secret in the object
    held = {**{k: v for k, v in vars(got).items()}, **(getattr(got, "__pydantic_extra__", None) or {}),
            **(getattr(got, "__pydantic_private__", None) or {})}
    hidden = sorted(k for k in set(type(got).model_fields) | set(held) if k not in dumped)
    held_text = repr(list(held.values()))
    carried = [column for column, value in secrets_of_row.items()
               if value and str(value) in held_text]
    if hidden and (carried or set(hidden) & (set(SENSITIVE) | {new_column})):
        raise CheckFailed(
            f"{call} returned a CustomerOut that holds {', '.join(carried or hidden)} "
            f"(in its field(s) {hidden}, left out of the JSON by exclude=True or a private "
            "attribute): the secret crosses the boundary inside the API's own type, and every "
            "profile.password_hash, repr() in a log line, cached copy (pickle) or later "
            "model_dump(include=…) hands it on. A DTO holds the public fields only; code that "
            "needs the hash (authentication) reads it inside the service layer, from the model.")
    keys = set(dumped)
    leaked = sorted(keys & (set(SENSITIVE) | {new_column, "deleted_at", "is_load_test"}))
    if leaked:
        raise CheckFailed(f"{call} has internal fields {leaked}: the profile carries the public "
                          f"fields only ({', '.join(PUBLIC)}).")
    if keys != set(PUBLIC):
        raise CheckFailed(f"{call} has the fields {sorted(keys)}; the task asks for exactly "
                          f"{list(PUBLIC)} (missing {sorted(set(PUBLIC) - keys)}, "
                          f"unexpected {sorted(keys - set(PUBLIC))}).")
    for field in PUBLIC:
        want, have = row[field], dumped[field]
        if isinstance(want, str):
            want = want.rstrip() if field == "country" else want
            have = have.rstrip() if isinstance(have, str) and field == "country" else have
        if have != want:
            raise CheckFailed(f"{call}: {field} is {have!r}; the database holds {want!r}.")
    # what the API sends: the JSON's instant, with its offset (a client reads a bare wall
    # time in its own zone)
    sent = json.loads(text).get("created_at") if text.lstrip().startswith("{") else None
    try:
        instant = dt.datetime.fromisoformat(str(sent).replace("Z", "+00:00"))
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None or instant != row["created_at"]:
        raise CheckFailed(
            f"{call} serialises created_at as {sent!r}; the database holds the instant "
            f"{row['created_at'].isoformat()}. An API sends an instant with its offset (ISO 8601, "
            "what Pydantic writes for an aware datetime): a wall time without offset, or "
            "rounded to the minute, is read by every client in its own zone. Leave created_at "
            "to Pydantic's serialiser (format dates in the front end).")


# --------------------------------------------------------------------------
# q3: PATCH /customers/{id}

PROTECTED_VALUES = {  # a body field the API must refuse, and a value an attacker sends
    "is_admin": True,
    "password_hash": "pbkdf2_sha256$1$attacker$0000",
    "id": 1,
    "created_at": "2001-02-03T04:05:06.789Z",
    "email": "attacker@example.org",
    "internal_note": "cleared: no fraud here",
    "deleted_at": "2020-01-01T00:00:00Z",
    "is_load_test": True,
}


@contextmanager
def _client(make_app: Callable[..., Any], engine: Any, **answers: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    app = make_app(engine, **answers)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


class _Race:
    """Another session's UPDATE of one field, committed right after the first statement
    with a result that ``engine`` runs while armed (the PATCH's read of the row)."""

    def __init__(self, engine: Any, url: str, cid: int, field: str, value: str) -> None:
        from sqlalchemy import event

        self.engine, self.url, self.cid, self.field, self.value = engine, url, cid, field, value
        self.done = self.fired = False
        self._event = event
        event.listen(engine, "after_cursor_execute", self._after)

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        if self.fired or getattr(cursor, "description", None) is None:
            return
        self.fired = True
        with psycopg.connect(self.url, autocommit=True) as other:
            other.execute("SET lock_timeout = '500ms'")
            try:
                other.execute(f"UPDATE customers SET {self.field} = %s WHERE id = %s",
                              [self.value, self.cid])
                self.done = True
            except psycopg.errors.LockNotAvailable:
                pass  # the PATCH locked the row (SELECT … FOR UPDATE): no lost update possible

    def stop(self) -> None:
        if self._event.contains(self.engine, "after_cursor_execute", self._after):
            self._event.remove(self.engine, "after_cursor_execute", self._after)


def _race(engine: Any, lab: Any, cid: int, field: str, value: str) -> _Race:
    return _Race(engine, lab.url, cid, field, value)


def q3(lab: Any, make_app: Callable[..., Any], CustomerPatch: Any,
       patch_customer: Callable[..., Any], CustomerOut: Any,
       get_customer_profile: Callable[..., Any]) -> str:
    """PATCH changes the allowed fields it was sent, and nothing else, whatever the body."""
    require(CustomerPatch, patch_customer, CustomerOut, get_customer_profile, make_app)
    _pydantic_class(CustomerPatch, "CustomerPatch")
    r = adv.rng()
    engine = _engine(lab, adv.non_utc_zone(rand=r))
    with psycopg.connect(lab.url, autocommit=True) as conn:
        columns = _customer_columns(conn)
        protected = [c for c in columns if c not in PATCHABLE]
        targets = r.sample([row[0] for row in conn.execute(
            "SELECT id FROM customers WHERE deleted_at IS NULL AND phone IS NOT NULL "
            "AND city IS NOT NULL ORDER BY id LIMIT 400")], 4)
        deleted = conn.execute("SELECT id FROM customers WHERE deleted_at IS NOT NULL "
                               "ORDER BY id LIMIT 1 OFFSET %s", [r.randrange(20)]).fetchone()[0]
        missing = conn.execute("SELECT max(id) + %s FROM customers",
                               [r.randint(1000, 9999)]).fetchone()[0]
        # deleted, with a deleted_at still ahead (an erasure request, effective later): gone
        ahead = conn.execute(
            "INSERT INTO customers (email, full_name, country, city, created_at, deleted_at, "
            "password_hash) VALUES (%s, 'Later Gone', 'NZ', 'Later', now(), now() + %s, 'x') "
            "RETURNING id", [f"later-{secrets.token_hex(4)}@example.org",
                             dt.timedelta(days=r.randint(1, 30), minutes=r.randint(1, 59))]
        ).fetchone()[0]
        original = {row["id"]: row for row in _fetch_dicts(
            conn, f"SELECT id, {', '.join(PATCHABLE)} FROM customers WHERE id = ANY(%s)",
            [targets + [deleted]])}
    cols = ", ".join(f'"{c}"' for c in protected)
    # rows written after this transaction id are the requests' doing: one scan of xmin per
    # request instead of a checksum of every customer's every column (seconds at scale)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        base_xid = conn.execute("SELECT txid_current() % 4294967296").fetchone()[0]

    def snapshot() -> tuple[Any, Any, dict]:
        with psycopg.connect(lab.url, autocommit=True) as conn:
            written = conn.execute(
                "SELECT count(*), coalesce(array_agg(id ORDER BY id) FILTER (WHERE "
                "age(xmin) < age(%s::text::xid) AND id <> ALL(%s)), '{}') FROM customers",
                [base_xid, targets]).fetchone()
            return (sorted(tuple(row.values()) for row in _fetch_dicts(
                        conn, f"SELECT id, {cols} FROM customers WHERE id = ANY(%s)", [targets])),
                    (written[0], list(written[1])),
                    {row["id"]: row for row in _fetch_dicts(
                        conn, f"SELECT id, {', '.join(PATCHABLE)} FROM customers "
                        "WHERE id = ANY(%s)", [targets + [deleted]])})

    def changed_protected(before: Any, after: Any) -> list[str]:
        if before == after:
            return []
        with psycopg.connect(lab.url, autocommit=True) as conn:
            now = {row["id"]: row for row in _fetch_dicts(
                conn, f"SELECT {cols} FROM customers WHERE id = ANY(%s)", [targets])}
        return sorted({c for t in targets if t in now for c in protected
                       if c in before_rows.get(t, {}) and now[t][c] != before_rows[t][c]}) \
            or ["(rows of other customers)"]

    with psycopg.connect(lab.url, autocommit=True) as conn:
        before_rows = {row["id"]: row for row in _fetch_dicts(
            conn, f"SELECT {cols} FROM customers WHERE id = ANY(%s)", [targets])}
    answers = dict(CustomerOut=CustomerOut, get_customer_profile=get_customer_profile,
                   CustomerPatch=CustomerPatch, patch_customer=patch_customer)
    try:
        with untouched(lab, ["orders", "order_items", "products"],
                       why="a profile update touches customers only"), \
                _client(make_app, engine, **answers) as client:
            state = snapshot()

            def send(cid: int, body: dict) -> tuple[Any, tuple]:
                nonlocal state
                response = client.patch(f"/customers/{cid}", json=body)
                now = snapshot()
                shown = json.dumps(body, ensure_ascii=False)
                moved = changed_protected(state[0], now[0])
                if state[0] != now[0]:
                    raise CheckFailed(
                        f"PATCH /customers/{cid} with {shown} changed protected column(s) "
                        f"{', '.join(moved)}: mass assignment. Copying the request body onto "
                        "the model (a setattr loop, **body) lets any client make itself admin "
                        "or rewrite its password hash. CustomerPatch declares only the fields a "
                        "customer may change (model_config = ConfigDict(extra=\"forbid\")), and "
                        "patch_customer copies only those.")
                if state[1] != now[1] and cid in (deleted, ahead):
                    raise CheckFailed(
                        f"PATCH /customers/{cid} with {shown}, a soft-deleted customer"
                        + (" (its deleted_at is still ahead)" if cid == ahead else "")
                        + ", changed its row: a customer whose deleted_at is set, even to an "
                        "instant ahead, is gone; answer 404 and change nothing (`deleted_at "
                        "IS NOT NULL`, as in get_customer_profile).")
                if state[1] != now[1]:
                    raise CheckFailed(f"PATCH /customers/{cid} with {shown} changed the rows of "
                                      "other customers: update only the customer in the URL.")
                return response, now

            def expect_row(cid: int, want: dict, what: str, now: tuple,
                           sent_keys: tuple = (), refused: bool = False) -> None:
                have = {k: (v.rstrip() if isinstance(v, str) and k == "country" else v)
                        for k, v in now[2][cid].items() if k in PATCHABLE}
                if have != want:
                    diff = {k: (have[k], want[k]) for k in want if have[k] != want[k]}
                    not_sent = [k for k in diff if k not in sent_keys]
                    nulled = [k for k in diff if k in sent_keys and want[k] is None]
                    reason = ("A request answered 422 was refused: it must change nothing."
                              if refused else
                              f"The body sent {nulled[0]}: null, which sets it to NULL: copy "
                              "the fields that were set (model_dump(exclude_unset=True)), not "
                              "only those that are not None (exclude_none drops it)."
                              if nulled and not not_sent else
                              "The body did not send " + ", ".join(not_sent) + ", so it must "
                              "stay as it was: copy only the fields that were set "
                              "(patch.model_dump(exclude_unset=True)), never the defaults."
                              if not_sent else
                              "A change that answered 200 must be saved: commit in "
                              "patch_customer.")
                    raise CheckFailed(f"After PATCH /customers/{cid} with {what}, the row holds "
                                      f"{ {k: v[0] for k, v in diff.items()} } where "
                                      f"{ {k: v[1] for k, v in diff.items()} } was expected. "
                                      + reason)

            def status(response: Any, want: int, cid: int, body: dict, why: str) -> None:
                if response.status_code != want:
                    shown = json.dumps(body, ensure_ascii=False)
                    detail = response.text[:300]
                    extra = ""
                    if response.status_code == 500 and want == 200:
                        missing_keys = [k for k in PATCHABLE if k not in body]
                        extra = (" A 500 on a partial body usually means a field the body did "
                                 f"not send ({', '.join(missing_keys)}) was written as None "
                                 "(NOT NULL refused it): use "
                                 "patch.model_dump(exclude_unset=True).")
                    raise CheckFailed(f"PATCH /customers/{cid} with {shown} answered "
                                      f"{response.status_code}; expected {want}: {why}.{extra}",
                                      detail)

            t1, t2, t3, t4 = targets
            traps = adv.like_traps(rand=r)
            full = {"full_name": f"Zoë O'Brien-{traps[0][0].split('@')[0]}",
                    "phone": f"+64 21 {r.randint(100, 999)} {r.randint(1000, 9999)}",
                    "country": r.choice(["NZ", "FR", "JP", "BR"]),
                    "city": r.choice(["Ōtautahi", "São Paulo", "Saint-Étienne", "Łódź"])}
            # 1. every allowed field
            response, state = send(t1, full)
            status(response, 200, t1, full, "the customer exists and every field is allowed")
            expect_row(t1, full, json.dumps(sorted(full)), state, tuple(full))
            out = response.json()
            if set(out) != set(PUBLIC) or any(out[k] != v for k, v in full.items()):
                raise CheckFailed(f"PATCH /customers/{t1} answered {out}; the answer is the "
                                  "updated profile (CustomerOut) with the new values.")
            # 2. a partial body: one field changes, the others stay
            part_field = r.choice(["city", "phone", "full_name"])
            part = {part_field: full[part_field] + " (2)"}
            response, state = send(t2, part)
            status(response, 200, t2, part, "a body may send any subset of the fields")
            want2 = {k: original[t2][k].rstrip() if k == "country" else original[t2][k]
                     for k in PATCHABLE}
            want2.update(part)
            expect_row(t2, want2, json.dumps(sorted(part)), state, tuple(part))
            # 2b. another PATCH of another field commits between this one's read and write:
            #     an UPDATE of only the sent fields keeps it (no lost update)
            other_field = r.choice(["phone", "full_name"])
            other_value = f"{full[other_field]} (other request)"
            body = {"city": f"{full['city']} ({r.randint(10, 99)})"}
            raced = _race(engine, lab, t2, other_field, other_value)
            try:
                response, state = send(t2, body)
            finally:
                raced.stop()
            status(response, 200, t2, body, "a body may send any subset of the fields")
            if raced.done and state[2][t2][other_field] != other_value:
                raise CheckFailed(
                    f"PATCH /customers/{t2} with {json.dumps(body, ensure_ascii=False)} ran while "
                    f"another request changed {other_field} (it committed after this one read the "
                    f"row and before it wrote), and afterwards {other_field} is "
                    f"{state[2][t2][other_field]!r} again: a lost update. The UPDATE wrote every "
                    "column from the row it had read, not only the fields the body sent. Set "
                    "only the sent fields (setattr on the ORM instance for each key of "
                    "patch.model_dump(exclude_unset=True): the ORM's UPDATE names only the "
                    "changed columns).")
            if state[2][t2]["city"] != body["city"]:
                raise CheckFailed(f"After PATCH /customers/{t2} with {json.dumps(body)}, city is "
                                  f"{state[2][t2]['city']!r}: commit the change.")
            # 3. an explicit null is a change (to NULL), not "not sent"
            response, state = send(t3, {"phone": None})
            status(response, 200, t3, {"phone": None}, "phone may be NULL, and the body set it")
            want3 = {k: original[t3][k].rstrip() if k == "country" else original[t3][k]
                     for k in PATCHABLE}
            want3["phone"] = None
            expect_row(t3, want3, '["phone"] (explicitly null)', state, ("phone",))
            # 4. an empty body changes nothing and still answers the profile
            response, state = send(t4, {})
            status(response, 200, t4, {}, "an empty body is a valid, empty change")
            want4 = {k: original[t4][k].rstrip() if k == "country" else original[t4][k]
                     for k in PATCHABLE}
            expect_row(t4, want4, "[] (empty)", state)
            # 5. protected fields beside an allowed one: nothing changes, 422
            keys = list(PROTECTED_VALUES) + [c for c in protected if c not in PROTECTED_VALUES]
            r.shuffle(keys)
            # every key is tried before a request that was not refused is reported: a body
            # that wrote a protected column (mass assignment) is the worse failure, and a
            # value that happens to equal the stored one shows none
            not_refused: tuple | None = None
            for key in keys:
                body = {"city": f"Mass-{r.randint(10, 99)}",
                        key: PROTECTED_VALUES.get(key, "overwritten")}
                response, state = send(t4, body)
                if response.status_code != 422:
                    not_refused = not_refused or (key, body, response)
                    want4 = {k: v.rstrip() if k == "country" and isinstance(v, str) else v
                             for k, v in state[2][t4].items() if k in PATCHABLE}
                    continue
                expect_row(t4, want4, f"{json.dumps(sorted(body))} (refused)", state,
                           tuple(body), refused=True)
            if not_refused:
                key, body, response = not_refused
                raise CheckFailed(
                    f"PATCH /customers/{t4} with {json.dumps(body)} answered "
                    f"{response.status_code}; a field the API does not accept ({key}) must "
                    "be refused with 422, not ignored: the client learns its request was "
                    "wrong instead of believing it worked. model_config = "
                    "ConfigDict(extra=\"forbid\") on CustomerPatch.", response.text[:300])
            # 6. values the database would refuse are refused by the DTO first (422, not 500)
            refused = [({"full_name": None}, "full_name is NOT NULL"),
                       ({"country": None}, "country is NOT NULL"),
                       ({"country": r.choice(["N", "F", "Z"])},
                        "country is exactly two letters (char(2)): a shorter one is stored "
                        "blank-padded, a code no client can use"),
                       ({"country": r.choice(["FRA", "USA", "NZL"])},
                        "country is exactly two letters (char(2))")]
            r.shuffle(refused)
            for body, why in refused:
                response, state = send(t4, body)
                if response.status_code != 422:
                    raise CheckFailed(
                        f"PATCH /customers/{t4} with {json.dumps(body)} answered "
                        f"{response.status_code}; expected 422: {why}. Validate in the DTO too "
                        "(full_name: str = None accepts an absent field but refuses null; "
                        "country: str = Field(None, min_length=2, max_length=2), not "
                        "str | None), so the client gets a 422 that names "
                        "the field instead of a 500 from the database's constraint.",
                        response.text[:300])
                expect_row(t4, want4, f"{json.dumps(sorted(body))} (refused)", state,
                           tuple(body), refused=True)
            # 7. gone or never there: 404, nothing written
            for cid, what in [(deleted, "a soft-deleted customer"),
                              (ahead, "a customer deleted with a deleted_at still ahead (gone, "
                                      "as in get_customer_profile)"),
                              (missing, "a customer id that does not exist")]:
                body = {"city": "Nowhere"}
                response, state = send(cid, body)
                status(response, 404, cid, body, f"{what} cannot be updated")
            if state[2][deleted]["city"] != original[deleted]["city"]:
                raise CheckFailed(f"PATCH /customers/{deleted} on a soft-deleted customer "
                                  "changed its row; it must change nothing and answer 404.")
            get = client.get(f"/customers/{deleted}")
            if get.status_code != 404:
                raise CheckFailed(f"GET /customers/{deleted} (soft-deleted) answered "
                                  f"{get.status_code}; expected 404.")
    finally:
        engine.dispose()
        with psycopg.connect(lab.url, autocommit=True) as conn:
            conn.execute("DELETE FROM customers WHERE id = %s", [ahead])
            for cid, row in original.items():
                conn.execute(f"UPDATE customers SET {', '.join(f'{k} = %s' for k in PATCHABLE)} "
                             "WHERE id = %s", [row[k] for k in PATCHABLE] + [cid])
    return (f"allowed fields change, {len(keys)} protected ones never do (422), partial bodies "
            "leave the rest alone, the database's rules answer 422, not 500")


# --------------------------------------------------------------------------
# q4: orders with their items, within a statement budget, page by page


def _plant_orders(conn: psycopg.Connection, r: Any) -> dict[str, Any]:
    """Customers with orders that tie on created_at, orders without items, a size no page
    divides. Ids within a tie are given in an order that only ``id DESC`` reproduces."""
    tag = secrets.token_hex(4)
    customers = [conn.execute(
        "INSERT INTO customers (email, full_name, country, created_at, password_hash) "
        "VALUES (%s, %s, 'NZ', now(), 'x') RETURNING id",
        [f"pages-{tag}-{k}@example.org", f"Page Tester {k}"]).fetchone()[0] for k in range(3)]
    products = [row[0] for row in conn.execute(
        "SELECT id FROM products ORDER BY id LIMIT 40 OFFSET %s", [r.randrange(100)])]
    sizes = [adv.non_round(30, rand=r, spread=0.25), r.randint(2, 4), 0]
    base = dt.datetime(2025, 3, 30, 23, 59, 59, 999_999, tzinfo=dt.timezone.utc)
    order_ids: list[int] = []
    for customer, size in zip(customers, sizes):
        if not size:
            continue
        # instants: tie groups of 3..8 orders, neighbours a microsecond apart
        instants: list[dt.datetime] = []
        t = base - dt.timedelta(days=r.randint(0, 30))
        while len(instants) < size:
            group = r.randint(3, 8)
            instants += [t] * group
            t -= dt.timedelta(microseconds=r.choice([1, 1, 500_000, 86_400_000_000]))
        instants = instants[:size]
        ids = [row[0] for row in conn.execute(
            "SELECT nextval(pg_get_serial_sequence('orders', 'id')) "
            "FROM generate_series(1, %s)", [size])]
        # within every tie, physical (insertion) order differs from id order
        perm = adv.tie_order(size, rand=r)
        rows = sorted(zip([ids[p] for p in perm], instants), key=lambda x: x[1])
        for oid, created in rows:
            conn.execute(
                "INSERT INTO orders (id, customer_id, status, created_at, total, "
                "shipping_country, note) VALUES (%s, %s, %s, %s, %s, 'NZ', %s)",
                [oid, customer, r.choice(STATUSES), created,
                 decimal.Decimal(r.randint(100, 99_999)) / 100,
                 r.choice([None, "gift_wrap 100%"])])
            newest = created == rows[-1][1]  # the first page's orders: several items each
            k = r.choice([2, 3, 5]) if newest else r.choice([0, 1, 2, 3, 5, 7])
            item_ids = [row[0] for row in conn.execute(
                "SELECT nextval(pg_get_serial_sequence('order_items', 'id')) "
                "FROM generate_series(1, %s)", [k])]
            # physical order differs from id order: only ORDER BY id gives the items in order
            # (a rotation: neither ascending nor, from three items on, descending)
            shift = r.randint(1, k - 1) if k > 1 else 0
            for item_id in item_ids[shift:] + item_ids[:shift]:
                conn.execute(
                    "INSERT INTO order_items (id, order_id, product_id, quantity, unit_price) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [item_id, oid, r.choice(products), r.randint(1, 9),
                     decimal.Decimal(r.randint(50, 9_999)) / 100])
            order_ids.append(oid)
    # every status in the page, cancelled and refunded orders too (the history shows them)
    settled = r.sample(order_ids[:sizes[0]], 2)
    for status, oid in zip(("cancelled", "refunded"), settled):
        conn.execute("UPDATE orders SET status = %s WHERE id = %s", [status, oid])
    return {"customers": customers, "sizes": sizes, "orders": order_ids, "settled": settled}


def _remove_planted(lab: Any, planted: dict[str, Any]) -> None:
    with psycopg.connect(lab.url, autocommit=True) as conn, conn.transaction():
        conn.execute("DELETE FROM order_items WHERE order_id = ANY(%s)", [planted["orders"]])
        conn.execute("DELETE FROM orders WHERE id = ANY(%s)", [planted["orders"]])
        conn.execute("DELETE FROM customers WHERE id = ANY(%s)", [planted["customers"]])


ORACLE_SQL = """
SELECT o.id, o.status, o.created_at, o.total,
       coalesce(json_agg(json_build_object(
                    'id', i.id, 'product_id', i.product_id, 'product_name', p.name,
                    'quantity', i.quantity, 'unit_price', i.unit_price) ORDER BY i.id)
                FILTER (WHERE i.id IS NOT NULL), '[]') AS items
FROM (SELECT * FROM orders WHERE customer_id = %(c)s
      ORDER BY created_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s) AS o
LEFT JOIN order_items i ON i.order_id = o.id
LEFT JOIN products p ON p.id = i.product_id
GROUP BY o.id, o.status, o.created_at, o.total
ORDER BY o.created_at DESC, o.id DESC
"""


def _oracle(conn: psycopg.Connection, customer: int, limit: int, offset: int) -> list[dict]:
    out = []
    for row in _fetch_dicts(conn, ORACLE_SQL, {"c": customer, "limit": limit, "offset": offset}):
        row["items"] = [dict(i, unit_price=decimal.Decimal(str(i["unit_price"])))
                        for i in row["items"]]
        out.append(row)
    return out


def q4(lab: Any, list_orders_with_items: Callable[..., Any], OrderOut: Any) -> str:
    """Pages of a customer's orders with their items: right, in order, in ≤ 3 statements."""
    require(list_orders_with_items, OrderOut)
    r = adv.rng()
    engine = _engine(lab, adv.non_utc_zone(rand=r))
    with psycopg.connect(lab.url, autocommit=True) as conn, conn.transaction():
        planted = _plant_orders(conn, r)
    calls = 0
    try:
        with psycopg.connect(lab.url, autocommit=True) as conn:
            big, small, empty = planted["customers"]
            n = planted["sizes"][0]
            limit = r.randint(4, 9)
            plan = [(big, limit, off) for off in range(0, n + limit, limit)]
            plan += [(big, n + 5, 0), (small, limit, 0), (empty, limit, 0)]
            statuses = list(STATUSES)
            for customer, lim, off in plan:
                # between two pages, an order changes status (every page is read afresh)
                conn.execute("UPDATE orders SET status = %s WHERE id = %s",
                             [r.choice(statuses), r.choice([o for o in planted["orders"]
                                                            if o not in planted["settled"]])])
                want = _oracle(conn, customer, lim, off)
                with _session(engine) as s, count_statements(engine) as sent:
                    got = _call(list_orders_with_items, s, customer, limit=lim, offset=off,
                                who="list_orders_with_items")
                calls += 1
                call = (f"list_orders_with_items(session, {customer}, limit={lim}, "
                        f"offset={off})")
                if sent.count == 0:
                    raise CheckFailed(
                        f"{call} sent no statement: the page came from a cache of your own, "
                        "not from the database, so a new order, a changed status or a deleted "
                        "item never shows (and the cache grows with every customer). Query the "
                        "page on every call; the database's buffer cache makes it cheap.")
                page_items = [i for o in want for i in o["items"]]
                bound = (len(want) + len(page_items)
                         + len({i["product_id"] for i in page_items}) + BUDGET)
                try:  # a wrong page (a filter) may need more rows than the right one: that
                    # page is judged below, for what is wrong with it, not as a slicer
                    got_items = [i.product_id for o in got for i in o.items]
                    bound = max(bound, len(got) + len(got_items) + len(set(got_items)) + BUDGET)
                except (AttributeError, TypeError):
                    pass
                if sent.rows > bound:
                    raise CheckFailed(
                        f"{call} fetched {sent.rows:,} rows from the database for a page of "
                        f"{len(want)} orders with {len(page_items)} items (at most {bound} "
                        "are needed): it loads all of the customer's orders and keeps a page in "
                        "Python (a slice, or a loop that skips). A customer with 50,000 orders "
                        "would load them all on every page. Put the page in the query: "
                        ".order_by(…).limit(limit).offset(offset) on the orders, then load "
                        "their items (selectinload).", sent.report())
                if sent.count > BUDGET:
                    raise CheckFailed(
                        f"{call} sent {sent.count} statements for a page of {len(want)} "
                        f"orders; the budget is {BUDGET} whatever the page size. One query per "
                        "order (or per item) is the N+1 pattern: 20 orders, 21 queries; 10,000 "
                        "orders, 10,001. Load the collections with the orders: "
                        ".options(selectinload(Order.items).selectinload(OrderItem.product)).",
                        sent.report())
                if [getattr(o, "id", None) for o in got] != [o["id"] for o in want]:
                    _judge_whole(list_orders_with_items, engine, conn, customer, call)
                _judge_page(got, want, call, OrderOut, lim)
    finally:
        engine.dispose()
        _remove_planted(lab, planted)
    return (f"{calls} pages right to the item, ties broken by id, each in ≤ {BUDGET} "
            "statements, as DTOs that outlive their session")


def _judge_whole(list_orders_with_items: Callable[..., Any], engine: Any,
                 conn: psycopg.Connection, customer: int, call: str) -> None:
    """A wrong page, told by the customer's whole history (one page holding every order):
    a page alone cannot tell a filter from the shift it causes on later pages."""
    total = conn.execute("SELECT count(*) FROM orders WHERE customer_id = %s",
                         [customer]).fetchone()[0]
    every = _oracle(conn, customer, total + 5, 0)
    try:
        with _session(engine) as s:
            whole = list(list_orders_with_items(s, customer, limit=total + 5, offset=0))
            ids = [o.id for o in whole]
            statuses = {o.status for o in whole}
            empties = any(not o.items for o in whole)
    except Exception:  # noqa: BLE001 - judged on the page itself
        return
    missing = [o for o in every if o["id"] not in set(ids)]
    if not missing or ids == [o["id"] for o in every][:len(ids)]:
        return  # nothing left out, or only a tail (a LIMIT): the page tells why
    if all(not o["items"] for o in missing) and not empties:
        raise CheckFailed(
            f"{call} is not the page asked: the customer's orders without items "
            f"({[o['id'] for o in missing][:5]}) are left out of its history, so every page "
            "after them shifts. An inner JOIN to order_items drops them; an order without items "
            "is still an order: load the items separately (selectinload) or with an outer join.")
    hidden = sorted({o["status"] for o in missing} - statuses)
    if hidden and all(o["status"] in hidden for o in missing):
        raise CheckFailed(
            f"{call} is not the page asked: the customer's history leaves out the orders whose "
            f"status is {', '.join(hidden)} (and holds none with that status), so every page "
            "after them shifts. The order history is every order of the customer, whatever its "
            "status; a cancelled or refunded order is one the customer asks about. Filter on "
            "the customer only, then ORDER BY created_at DESC, id DESC and LIMIT/OFFSET.")


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return value.normalize()
    if isinstance(value, float):
        return decimal.Decimal(str(value)).normalize()
    return value


def _judge_page(got: Any, want: list[dict], call: str, OrderOut: Any, limit: int) -> None:
    if not isinstance(got, list):
        raise CheckFailed(f"{call} returned a {type(got).__name__}; the task asks for a list "
                          "of OrderOut.")
    for item in got:
        if _is_orm(item) or not isinstance(item, OrderOut):
            raise CheckFailed(f"{call} returned a list holding a {type(item).__name__}, not "
                              "OrderOut DTOs: ORM instances stay in the service layer.")
        inner = _orm_inside(item)
        if inner is not None:
            raise CheckFailed(f"{call} returned an OrderOut holding an ORM instance "
                              f"({type(inner).__name__}): items are OrderItemOut DTOs.")
    try:
        dumped = [o.model_dump() for o in got]
    except Exception as exc:  # noqa: BLE001
        raise CheckFailed(f"{call} returned DTOs that cannot be serialised after the session "
                          f"closed: {type(exc).__name__}: {exc}") from None
    got_ids = [o["id"] for o in dumped]
    want_ids = [o["id"] for o in want]
    if got_ids != want_ids:
        if len(got_ids) < len(want_ids) and got_ids == want_ids[:len(got_ids)]:
            joined = sum(max(1, len(w["items"])) for w in want[:len(got_ids)])
            cut = any(len(g["items"]) < len(w["items"]) for g, w in zip(dumped, want))
            if not cut and joined != limit:
                raise CheckFailed(
                    f"{call} returned {len(got_ids)} orders where the page has {len(want_ids)}, "
                    f"each with all its items: the page was cut short of the {limit} orders "
                    "asked (a cap on the page size, or a LIMIT other than the caller's). "
                    "Return exactly `limit` orders when the customer has that many; an API "
                    "that caps its pages must say so to its caller (and this task has no cap).",
                    f"got {got_ids}, expected {want_ids}")
            raise CheckFailed(
                f"{call} returned {len(got_ids)} orders where the page has {len(want_ids)}: "
                f"LIMIT {limit} counted the joined rows (one per order × item), not orders, "
                "so a page holds fewer orders, and the items of its last order are cut off. "
                "Paginate the orders alone (a LIMIT on the orders' query, then load their "
                "items: selectinload, or joinedload, which SQLAlchemy wraps in a subquery).",
                f"got {got_ids}, expected {want_ids}")
        empty = {o["id"] for o in want if not o["items"]}
        dropped = [i for i in want_ids if i not in got_ids and i in empty]
        if dropped:
            raise CheckFailed(
                f"{call} left out orders {dropped[:5]}, which have no items: an inner JOIN to "
                "order_items drops them. An order without items is still an order: load the "
                "items separately (selectinload) or with an outer join.",
                f"got {got_ids}, expected {want_ids}")
        hidden = sorted({o["status"] for o in want if o["id"] not in got_ids}
                        - {o.get("status") for o in dumped})
        if hidden:
            raise CheckFailed(
                f"{call} left out the orders whose status is {', '.join(hidden)} (and returned "
                "none with that status): the order history is every order of the customer, "
                "whatever its status; a cancelled or refunded order is one the customer asks "
                "about. Filter on the customer only, then ORDER BY created_at DESC, id DESC "
                "and LIMIT/OFFSET.", f"got {got_ids}, expected {want_ids}")
        if sorted(got_ids) == sorted(want_ids):
            raise CheckFailed(f"{call} returned the right orders in the wrong order: newest "
                              "first, ties on created_at broken by id, highest first "
                              "(ORDER BY created_at DESC, id DESC).",
                              f"got {got_ids}, expected {want_ids}")
        raise CheckFailed(f"{call} returned orders {got_ids[:12]}; the page holds "
                          f"{want_ids[:12]} (ORDER BY created_at DESC, id DESC, then LIMIT/"
                          "OFFSET on the orders).")
    for g, w in zip(dumped, want):
        for key in ("status", "created_at", "total"):
            if _plain(g.get(key)) != _plain(w[key]):
                raise CheckFailed(f"{call}: order {w['id']} has {key} {g.get(key)!r}; the "
                                  f"database holds {w[key]!r}.")
        items = [{k: _plain(v) for k, v in i.items()} for i in (g.get("items") or [])]
        wanted = [{k: _plain(v) for k, v in i.items()} for i in w["items"]]
        if items != wanted:
            got_item_ids = [i.get("id") for i in items]
            want_item_ids = [i["id"] for i in wanted]
            if len(items) == len(wanted) and sorted(items, key=lambda i: i.get("id") or 0) \
                    == wanted:
                raise CheckFailed(
                    f"{call}: order {w['id']} has the right items in the wrong order "
                    f"({got_item_ids}; ordered by item id: {want_item_ids}). Without an "
                    "ORDER BY, rows come in whatever order the plan reads them (insertion "
                    "order, until an UPDATE moves a row), so the API's item order changes from "
                    "call to call. Declare Order.items with order_by=OrderItem.id (or sort the "
                    "items by id in order_out).")
            raise CheckFailed(
                f"{call}: order {w['id']} has {len(items)} items; the database has "
                f"{len(wanted)} (compared field by field, ordered by item id).",
                f"got {items[:3]}, expected {wanted[:3]}")


HINTS = {
    "q1": ["Customer.orders = relationship(back_populates=\"customer\", lazy=\"raise\"); "
           "the other side: Order.customer = relationship(back_populates=\"orders\", "
           "lazy=\"raise\"). The same for Order.items ↔ OrderItem.order, and OrderItem.product.",
           "Assigning a relationship to a mapped class after it was defined works with "
           "DeclarativeBase; the target can be the class itself (relationship(Order, …))."],
    "q2": ["class CustomerOut(BaseModel): model_config = ConfigDict(from_attributes=True), then "
           "one annotated field per public column (id: int, email: str, phone: str | None, …).",
           "Load with session.get(Customer, id); return None when it is missing or its "
           "deleted_at is set; else CustomerOut.model_validate(customer), inside the session."],
    "q3": ["class CustomerPatch(BaseModel): model_config = ConfigDict(extra=\"forbid\"); "
           "full_name: str = None; phone: str | None = None; country: str = Field(None, "
           "min_length=2, max_length=2); city: str | None = None.",
           "for field, value in patch.model_dump(exclude_unset=True).items(): setattr(customer, "
           "field, value); then session.commit() and return the profile."],
    "q4": ["select(Order).where(Order.customer_id == customer_id).order_by(Order.created_at"
           ".desc(), Order.id.desc()).limit(limit).offset(offset)",
           ".options(selectinload(Order.items).selectinload(OrderItem.product)): one query for "
           "the orders, one for their items, one for the products, whatever the page size.",
           "OrderOut(id=o.id, status=o.status, created_at=o.created_at, total=o.total, "
           "items=[OrderItemOut(id=i.id, product_id=i.product_id, product_name=i.product.name, "
           "quantity=i.quantity, unit_price=i.unit_price) for i in o.items]) — with items "
           "sorted by id."],
}
