"""Checks for 08_versioned_data: a history table kept by a trigger, and time travel.

The checks work on products of their own (SKU ``CHECK-…``, never ordered) and judge the
history by its invariants and by the time each change really happened, never by
timestamps fixed in advance:

* q1: every history column has the type of its products column. The migration is run
  twice; history rows planted between the runs (of a live product, and of one whose row is
  gone) must survive, and on the second run another session changes a product after each
  statement (rolled back): each change must leave a version (no DROP/CREATE TRIGGER window).
  A last price change runs on a session whose TimeZone is a POSIX zone in the first pass of
  its repeated (fall-back) hour: a `timestamp` switch-over time lands an hour late (also
  asked in q3). q2 wants no row, not a NULL row, when the product did not exist.
  On a caller's connection whose ``TimeZone`` is not UTC (``left_behind.Caller``), the check
  changes each column the history keeps (price, name, sku, attributes, deleted_at), and
  twice the price with an ``updated_at`` set by the UPDATE itself (an application's clock
  behind or backdated, and ahead), and twice no kept column (only ``updated_at``, and
  ``vendor`` with it, backdated: a version or an unchanged ``updated_at``), in a seeded
  order, then two products in one UPDATE, then DELETEs one, each in its own committed
  transaction. After every change: the change took effect (the row holds the values the
  UPDATE set, a DELETEd row is gone: a trigger returning OLD, or NEW on DELETE, silently
  undoes it); exactly one more history row, holding the *old* values (fewer than before: a
  foreign key ON DELETE CASCADE erased the past);
  every period non-empty, bounded and half-open ``[from, to)``; the periods of the product
  (history, then the current row from its ``updated_at``) contiguous; the new boundary
  between that transaction's ``now()`` and its ``clock_timestamp()`` after the change; the
  caller's settings as found inside the transaction right after the change (a SET LOCAL in
  the trigger) and its connection as found after it; other products and their history
  unchanged. Then the exclusion constraint by behaviour, with rows written by hand and
  rolled back: an overlap of one product's versions (another SKU; soft-deleted) refused with
  23P01, an adjacent version and another product's version with the same SKU accepted; a
  planted row that makes the trigger's next history write overlap must make that UPDATE fail
  (no swallowed error). The answer's DDL must change no product.
* q2: a history planted by the check (in a transaction it rolls back, so the learner's
  trigger plays no part) with a version valid for one microsecond, boundaries at a local
  midnight and at a whole second, a deleted product, a live one and a sibling with the same
  periods; the learner's AS OF query is asked at every boundary, a microsecond either side,
  before creation and after deletion, on a session whose ``TimeZone`` is not UTC, with the
  instant given in that zone or in UTC. The query must return one column. Last, a boundary
  ten minutes ago on a session whose POSIX TimeZone is in the first pass of its repeated
  hour: an instant cast to timestamp without time zone comes back an hour later.
* q3: the learner's new trigger function (``clock_sql``) is applied (it must change no
  product, and a history row planted before must survive it), then two sessions
  (``labs.tools.sessions``): T1 starts first, T2 updates two products and commits, then T1
  updates one and DELETEs the other; meanwhile T1 writes a third product while T2 is open
  (it must not wait: no lock beyond the row's). Then T1's UPDATE starts while T2 holds the
  row FOR UPDATE and reaches it after T2's version committed (a statement older than
  OLD.updated_at: catches statement_timestamp()). Then, five times, a DO block inserts a
  product at clock_timestamp() and updates it microseconds later: the replaced version must
  end no later than that UPDATE finished (catches a bump of a millisecond). No change may
  fail or write a backwards, empty or overlapping period, or a boundary outside its
  transaction. Then one transaction changes a product twice: the second change meets
  OLD.updated_at = now() (catches `IF now() < OLD.updated_at`, an empty period). First, with
  the new function in place, q1's checks on a caller's connection
  (a price change, two with an application's updated_at behind and ahead, two that change
  no kept column): the function must still do all that exercise 1 asked (override the
  client's updated_at, leave the caller's settings alone).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from ..course import adversarial as adv
from ..course.checking import CheckFailed, require
from ..course.left_behind import Caller, untouched
from ..data.dataset import query_checksum
from ..tools.sessions import Sessions
from .indexing import apply

MICRO = dt.timedelta(microseconds=1)
HISTORY_COLUMNS = ("product_id", "sku", "name", "price", "attributes", "deleted_at", "valid")
KEPT = ("sku", "name", "price", "attributes", "deleted_at")  # what a version holds


# --------------------------------------------------------------------------
# versions as the database holds them


@dataclass
class Version:
    """One version of a product: a history row, or the current row (open-ended)."""

    values: tuple  # sku, name, price, attributes, deleted_at (price as Decimal)
    lo: dt.datetime | None  # None: unbounded, infinite, or empty
    hi: dt.datetime | None
    source: str  # "history" | "current"
    empty: bool = False
    lo_inc: bool = True
    hi_inc: bool = False

    @property
    def price(self) -> Decimal:
        return self.values[2]

    def period(self) -> str:
        if self.empty:
            return "empty"
        left = "[" if self.lo_inc else "("
        right = "]" if self.hi_inc else ")"
        return f"{left}{_show(self.lo)}, {_show(self.hi)}{right}"


def _show(t: dt.datetime | None) -> str:
    return "unbounded" if t is None else t.isoformat(sep=" ")


def _price(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _utc(t: Any) -> Any:
    """An instant in UTC. Datetimes read in a session zone must not be compared as they come:
    Python compares two of the same tzinfo by wall clock, and says != between zones for a
    wall time the zone repeats when its clocks go back (fold=1)."""
    return t.astimezone(dt.timezone.utc) if isinstance(t, dt.datetime) else t


def _state(row: tuple) -> tuple:
    sku, name, price, attributes, deleted_at = row
    return (sku, name, _price(price), attributes, _utc(deleted_at))


def _versions(conn: psycopg.Connection, pid: int) -> list[Version]:
    """Every version of a product: history rows by period, then the current row."""
    out = []
    for row in conn.execute("""
            SELECT sku, name, price, attributes, deleted_at,
                   CASE WHEN isfinite(lower(valid)) THEN lower(valid) END,
                   CASE WHEN isfinite(upper(valid)) THEN upper(valid) END,
                   isempty(valid), coalesce(lower_inc(valid), true),
                   coalesce(upper_inc(valid), false)
            FROM products_history WHERE product_id = %s
            ORDER BY lower(valid) NULLS LAST, upper(valid)""", [pid]).fetchall():
        out.append(Version(_state(row[:5]), _utc(row[5]), _utc(row[6]), "history",
                           bool(row[7]), bool(row[8]), bool(row[9])))
    current = conn.execute("""
        SELECT sku, name, price, attributes, deleted_at,
               CASE WHEN isfinite(updated_at) THEN updated_at END
        FROM products WHERE id = %s""", [pid]).fetchone()
    if current:
        out.append(Version(_state(current[:5]), _utc(current[5]), None, "current"))
    return out


def _check_periods(versions: list[Version], what: str, empty_hint: str = "") -> None:
    """Non-empty, bounded, half-open, contiguous periods; the check names what it finds.

    Empty and unbounded periods are looked for first: they have no bounds to compare,
    and a check that compared them anyway would trip over its own None.
    """
    for v in versions:
        if v.source == "history" and v.empty:
            raise CheckFailed(
                f"{what}: the version with price {v.price} has an empty period (isempty: its "
                "lower bound equals its upper bound), so it was valid at no instant and no AS "
                "OF query can ever find it. A version is valid from the moment it was written "
                "until the moment it was replaced, and that moment must come strictly later."
                + (" " + empty_hint if empty_hint else ""))
        if v.lo is None:
            where = ("its updated_at is NULL or infinite" if v.source == "current"
                     else "its period has no finite lower bound")
            raise CheckFailed(f"{what}: the {v.source} version with price {v.price}: {where}. "
                              "Each version starts at the finite instant it was written "
                              "(OLD.updated_at).")
        if v.source == "history" and v.hi is None:
            raise CheckFailed(f"{what}: the history version with price {v.price} has no finite "
                              "upper bound: a replaced version ends when it was replaced, "
                              "tstzrange(OLD.updated_at, t).")
        if v.source == "history" and (not v.lo_inc or v.hi_inc):
            raise CheckFailed(
                f"{what}: the version with price {v.price} has the period {v.period()}. A "
                "period is half-open, [from, to): it includes the instant it began and not "
                "the instant it was replaced, which belongs to the next version. Use "
                "tstzrange(OLD.updated_at, t), whose default bounds are '[)'.")
        if v.hi is not None and not v.lo < v.hi:
            raise CheckFailed(f"{what}: the version with price {v.price} has the period "
                              f"{v.period()}, which runs backwards.")
    for v, nxt in zip(versions, versions[1:]):
        if v.hi != nxt.lo:
            kind = "overlap" if v.hi is None or v.hi > nxt.lo else "gap"
            raise CheckFailed(
                f"{what}: the periods have a{'n' if kind == 'overlap' else ''} {kind}: price "
                f"{v.price} is valid until {_show(v.hi)}, but the next version (price "
                f"{nxt.price}, {nxt.source}) starts at {_show(nxt.lo)}. Close the old version "
                "exactly when the new one starts: the history row's upper bound and the new "
                "row's updated_at must be the same timestamp.")


def _within(t: dt.datetime, start: dt.datetime, end: dt.datetime, what: str, zone: str,
            hint: str = "") -> None:
    """The boundary a change wrote lies within the transaction that made the change."""
    t, start, end = _utc(t), _utc(start), _utc(end)
    if start <= t <= end:
        return
    off = t - (start if t < start else end)
    raise CheckFailed(
        f"{what}, the replaced version ends at {_show(t)}, but the change ran between "
        f"{_show(start)} (its transaction's now()) and {_show(end)}: {abs(off)} "
        f"{'before' if off < dt.timedelta(0) else 'after'} it, on a session whose TimeZone is "
        f"{zone}. " + (hint or
        "A version ends when its transaction changed it: use now() (or "
        "clock_timestamp()), a timestamptz. `now() AT TIME ZONE 'UTC'`, localtimestamp or a "
        "timestamp without time zone is read back in the session's TimeZone and moves the "
        "boundary by the zone's offset."))


# --------------------------------------------------------------------------
# the check's own products and changes


def _new_product(conn: psycopg.Connection, price: str, *, sku: str | None = None,
                 name: str = "Versioned check item", attributes: dict | None = None,
                 updated_at: dt.datetime | None = None) -> tuple[int, str]:
    sku = sku or f"CHECK-{uuid.uuid4().hex[:12]}"
    try:
        (pid,) = conn.execute(
            "INSERT INTO products (sku, name, category, vendor, price, attributes, updated_at) "
            "VALUES (%s, %s, 'home', 'Check Vendor', %s, %s, coalesce(%s, now())) RETURNING id",
            [sku, name, Decimal(price), Jsonb(attributes or {}), updated_at]).fetchone()
    except psycopg.Error as exc:
        raise CheckFailed(f"When the check inserted a product of its own, PostgreSQL refused: "
                          f"SQLSTATE {exc.sqlstate}: {exc.diag.message_primary or exc}. The "
                          "history trigger fires on UPDATE OR DELETE, not on INSERT.") from None
    return pid, sku


def _change(conn: Any, sql: str, params: Any, what: str) -> None:
    """Run one of the check's own UPDATEs/DELETEs; the learner's trigger fires inside it."""
    try:
        conn.execute(sql, params)
    except psycopg.Error as exc:
        msg = exc.diag.message_primary or str(exc)
        if exc.sqlstate == "23P01":
            raise CheckFailed(
                f"{what}, your trigger wrote a version that overlaps an earlier one, and the "
                f"exclusion constraint refused it ({msg}): the periods have an overlap. The old "
                "version must end exactly where the new one begins: set NEW.updated_at to the "
                "same t that closes the old period.", exc.diag.message_detail or "") from None
        if exc.sqlstate == "22000" and "range" in msg:
            raise CheckFailed(
                f"{what}, your trigger built a period that runs backwards ({msg}). A version "
                "ends after it began: t must be later than OLD.updated_at.") from None
        raise CheckFailed(f"{what}, the UPDATE/DELETE failed inside your trigger: "
                          f"SQLSTATE {exc.sqlstate}: {msg}") from None


def _timed_change(conn: psycopg.Connection, sql: str, params: Any, what: str, *,
                  found: dict[str, str] | None = None,
                  hint: str = "") -> tuple[dt.datetime, dt.datetime]:
    """One committed change; returns (its transaction's now(), clock_timestamp() after it).

    With ``found`` (the caller's settings), the session's settings are also compared right
    after the change, inside its transaction: a SET LOCAL in the trigger is undone by the
    COMMIT, so only there can it be seen, and the caller's transaction lives with it.
    """
    with conn.transaction():
        start = conn.execute("SELECT now()").fetchone()[0]
        try:
            _change(conn, sql, params, what)
        except CheckFailed as exc:
            if not hint:
                raise
            raise CheckFailed(f"{exc.message} {hint}", exc.detail) from None
        end = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        if found is not None:
            now = dict(conn.execute("SELECT name, setting FROM pg_settings").fetchall())
            changed = sorted(k for k in found if now.get(k) != found[k]
                             and not k.startswith("transaction_"))
            if changed:
                shown = ", ".join(f"{k} {found[k]!r} → {now.get(k)!r}" for k in changed[:4])
                raise CheckFailed(
                    f"{what}, right after the change and still inside its transaction, the "
                    f"caller's session settings had changed ({shown}): your trigger changed "
                    "them, and SET LOCAL (or set_config(…, true)) in a trigger lasts until the "
                    "CALLER's transaction ends, so every later statement of that transaction "
                    "reads and writes timestamps in another TimeZone (or runs under other "
                    "limits). A trigger must not change the session: work with timestamptz "
                    "values (or AT TIME ZONE on one expression); if a function really needs a "
                    "setting, give it its own with CREATE FUNCTION … SET, which is undone when "
                    "the function returns.")
    return start, end


def _has_history(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('products_history') IS NOT NULL").fetchone()[0]


def _require_history(conn: psycopg.Connection) -> None:
    if not _has_history(conn):
        raise CheckFailed("There is no table products_history: run exercise 1 (and its check) "
                          "first.")
    have = {r[0]: r[1] for r in conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'products_history'::regclass AND attnum > 0 AND NOT attisdropped")}
    missing = [c for c in HISTORY_COLUMNS if c not in have]
    if missing:
        raise CheckFailed(f"products_history has no column {', '.join(missing)}: it needs "
                          f"{', '.join(HISTORY_COLUMNS)} (exercise 1).")
    products = {r[0]: r[1] for r in conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'products'::regclass AND attnum > 0 AND NOT attisdropped")}
    products_price = products["price"]
    if have["price"].split("(")[0] != products_price.split("(")[0]:
        raise CheckFailed(f"products_history.price is {have['price']}, but products.price is "
                          f"{products_price}: a version must hold the price exactly as it was. "
                          "A float (real, double precision) rounds amounts such as 0.1; give "
                          f"the history column the product's type, {products_price}.")
    for column in ("product_id", *KEPT):
        source = products["id" if column == "product_id" else column]
        if have[column] != source:
            raise CheckFailed(
                f"products_history.{column} is {have[column]}, but products."
                f"{'id' if column == 'product_id' else column} is {source}: a version must be "
                "able to hold every value the product can have, exactly. A narrower type "
                "(varchar(n), a smaller numeric or integer) makes the UPDATE of a product whose "
                "value does not fit fail inside the trigger (or silently rounds it); another "
                "type changes what the history says. Give every history column the product's "
                "own type.")
    if have["valid"] != "tstzrange":
        raise CheckFailed(f"products_history.valid is {have['valid']}; it should be a tstzrange "
                          "(a period of timestamptz).")


def _cleanup(conn: psycopg.Connection, ids: list[int]) -> None:
    """Remove the check's products and their history, without firing the learner's trigger."""
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        with conn.transaction():
            # replica role: user triggers do not fire, so a broken trigger cannot get in the
            # way of removing the check's own rows (needs superuser, as the lab's server has)
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("DELETE FROM products WHERE id = ANY(%s)", [ids])
            if _has_history(conn):
                conn.execute("DELETE FROM products_history WHERE product_id = ANY(%s)", [ids])
    except psycopg.Error:
        pass  # leftovers are CHECK-… products nobody orders: harmless


def _others(conn: psycopg.Connection, ids: list[int]) -> tuple:
    """Checksums of every other product and of their history."""
    return (query_checksum(conn, "SELECT * FROM products WHERE id <> ALL(%s)", [ids]),
            query_checksum(conn, "SELECT * FROM products_history WHERE product_id <> ALL(%s)",
                           [ids]))


# --------------------------------------------------------------------------
# q1: the history trigger


APP_CLOCK_HINT = (
    "This UPDATE set updated_at itself, as an ORM does from the application server's clock (a "
    "few seconds off, or set on purpose to backdate a change): the trigger, not the client, "
    "decides when a version starts, or a client can rewrite the past and a lagging clock "
    "writes a backwards or overlapping period. Overwrite it whatever the UPDATE set: "
    "NEW.updated_at := t, with t chosen by the trigger.")


def _app_clock_steps(r: Any, pid: int) -> list[tuple[str, str, list, dict, str]]:
    """UPDATEs that set updated_at themselves: an app clock behind or ahead, a backdated edit."""
    now = dt.datetime.now(dt.timezone.utc)
    behind = r.choice([dt.timedelta(seconds=r.randint(1, 5)),
                       dt.timedelta(days=r.randint(1, 30))]) + dt.timedelta(
        microseconds=r.randint(1, 999_999))
    ahead = dt.timedelta(seconds=r.randint(60, 3_600), microseconds=r.randint(1, 999_999))
    out = []
    for when, how in ((now - behind, f"{behind} in the past"),
                      (now + ahead, f"{ahead} in the future")):
        price = Decimal(r.randint(1_001, 9_999)) / 100
        out.append((f"set the price to {price} with updated_at {how} (an application's clock)",
                    "UPDATE products SET price = %s, updated_at = %s WHERE id = %s",
                    [price, when, pid], {"price": price}, APP_CLOCK_HINT))
    r.shuffle(out)
    return out


TOUCH_HINT = (
    "This UPDATE changed no column the history keeps (only updated_at, as an ORM's 'touch' "
    "or a backdating client does, or vendor/category with an application-clock updated_at): "
    "the trigger, not the client, decides when a version starts, so fire on every UPDATE "
    "(BEFORE UPDATE OR DELETE, not UPDATE OF some columns, no WHEN on the kept columns) and "
    "overwrite NEW.updated_at; a trigger that writes no version for such an UPDATE must keep "
    "NEW.updated_at := OLD.updated_at.")


def _touch_steps(r: Any, pid: int) -> list[tuple[str, str, list, dict, str]]:
    """UPDATEs that change no kept column but set updated_at (ORM touch, vendor change)."""
    now = dt.datetime.now(dt.timezone.utc)
    past = [now - dt.timedelta(seconds=r.randint(1, 5), microseconds=r.randint(1, 999_999))
            for _ in range(2)]
    vendor = f"Check Vendor {r.randint(10, 99)}"
    return [
        ("set only updated_at, to a moment in the past (an ORM 'touch')",
         "UPDATE products SET updated_at = %s WHERE id = %s", [past[0], pid], {}, TOUCH_HINT),
        (f"set only the vendor (to {vendor!r}) and updated_at, to a moment in the past",
         "UPDATE products SET vendor = %s, updated_at = %s WHERE id = %s",
         [vendor, past[1], pid], {}, TOUCH_HINT),
    ]


def _steps(r: Any, pid: int, state: dict[str, Any]) -> list[tuple[str, str, list, dict, str]]:
    """One change per kept column, and two that set updated_at, in a seeded order:
    (what, sql, params, new values, hint)."""
    name = adv.case_variants(state["name"], rand=r)[2]
    sku = state["sku"].lower() if state["sku"] != state["sku"].lower() else state["sku"].upper()
    price = Decimal(r.randint(1_001, 9_999)) / 100
    attributes = {**state["attributes"], "finish": r.choice(["matte", "gloss", "satin"])}
    deleted = dt.datetime.now(dt.timezone.utc) - dt.timedelta(
        days=r.randint(1, 30), microseconds=r.randint(1, 999_999))
    steps = [
        (f"renamed the product to {name!r}", "UPDATE products SET name = %s WHERE id = %s",
         [name, pid], {"name": name}, ""),
        (f"set the price to {price}", "UPDATE products SET price = %s WHERE id = %s",
         [price, pid], {"price": price}, ""),
        (f"changed the SKU to {sku!r}", "UPDATE products SET sku = %s WHERE id = %s",
         [sku, pid], {"sku": sku}, ""),
        ("changed the attributes", "UPDATE products SET attributes = %s WHERE id = %s",
         [Jsonb(attributes), pid], {"attributes": attributes}, ""),
    ] + _app_clock_steps(r, pid) + _touch_steps(r, pid)
    r.shuffle(steps)
    # a soft delete, then its undoing, somewhere in the sequence
    at = r.randint(0, len(steps))
    steps[at:at] = [
        ("soft-deleted the product (deleted_at)", "UPDATE products SET deleted_at = %s WHERE id = %s",
         [deleted, pid], {"deleted_at": deleted}, ""),
        ("restored it (deleted_at = NULL)", "UPDATE products SET deleted_at = NULL WHERE id = %s",
         [pid], {"deleted_at": None}, ""),
    ]
    return steps


def q1(lab: Any, history_sql: str) -> str:
    """Every change of products leaves the old version, with a contiguous period, in time."""
    require(history_sql)
    why = "exercise 1 creates a table, a function and a trigger: it changes no product"
    with untouched(lab, ["products"], why=why):
        apply(lab, history_sql, "your statements")
    r = adv.rng()
    _rerun_keeps_history(lab, r, history_sql, why)
    with Caller(lab, autocommit=True) as caller:
        conn = caller.conn
        _require_history(conn)
        state = {"sku": f"CHECK-{uuid.uuid4().hex[:8]}_Lamp", "name": "Desk lamp 50%_off",
                 "price": Decimal(r.randint(1_001, 9_999)) / 100,
                 "attributes": {"colour": r.choice(["Tan", "tan", "TAN"])}, "deleted_at": None}
        born = (dt.datetime.now(dt.timezone.utc)
                - dt.timedelta(days=r.randint(2, 400), microseconds=r.randint(1, 999_999)))
        pid, _ = _new_product(conn, str(state["price"]), sku=state["sku"], name=state["name"],
                              attributes=state["attributes"], updated_at=born)
        others = [_new_product(conn, str(Decimal(r.randint(101, 999)) / 100))[0]
                  for _ in range(2)]
        ids = [pid] + others
        try:
            watched = _others(conn, ids)
            states = [tuple(state[k] for k in KEPT)]
            steps = _steps(r, pid, state)
            steps.append(("deleted the product (DELETE)", "DELETE FROM products WHERE id = %s",
                          [pid], {}, ""))
            _play(conn, caller, pid, state, states, steps)
            # one statement, several rows: every row gets its own version
            start, end = _timed_change(
                conn, "UPDATE products SET price = price + 1, name = name || ' (v2)' "
                "WHERE id = ANY(%s)", [others], "In a two-row UPDATE")
            for other in others:
                got = _versions(conn, other)
                if len(got) != 2:
                    raise CheckFailed(
                        "One UPDATE of two products must leave one history row for each "
                        f"(product {other} has {len(got) - 1}); use a FOR EACH ROW trigger.")
                _check_periods(got, "After a two-row UPDATE")
                _within(got[0].hi, start, end, "In a two-row UPDATE", caller.zone)
            if _others(conn, ids) != watched:
                raise CheckFailed(
                    "While the check changed its own products, rows of OTHER products (or "
                    "their history) changed too. The trigger must write the history of the "
                    "row being changed (OLD.id) and nothing else.")
            if not conn.execute("""
                    SELECT bool_or(c.contype = 'x') FROM pg_constraint c
                    WHERE c.conrelid = 'products_history'::regclass""").fetchone()[0]:
                raise CheckFailed(
                    "products_history has no exclusion constraint: nothing stops two versions "
                    "of one product from overlapping (a bug in the trigger, a manual fix gone "
                    "wrong). EXCLUDE USING gist (product_id WITH =, valid WITH &&), with the "
                    "btree_gist extension.")
            _probe_exclusion(lab, pid, others[0])
            _probe_swallowed(lab, others[0])
            _fall_back_probe(lab, r, "once more")
        finally:
            caller.clean()
            _cleanup(conn, ids)
    return (f"{len(steps)} changes (every kept column, two price changes that set updated_at "
            "themselves, two saves of no kept column, a soft delete and its undoing, a DELETE) "
            "and a two-row UPDATE: one history row each, old values, contiguous half-open "
            f"periods at the time of the change (session TimeZone {caller.zone}); overlaps "
            "excluded by a constraint")


def _play(conn: psycopg.Connection, caller: Caller, pid: int, state: dict[str, Any],
          states: list[tuple], steps: list[tuple[str, str, list, dict, str]],
          prefix: str = "") -> None:
    """Run the check's changes of one product, each committed on the caller's connection,
    and judge each: the change took effect, one more version with the old values (or none
    for a change of no kept column, the start kept), contiguous periods, the boundary within
    the change, the caller's settings and connection as found."""
    for what, sql, params, new, hint in steps:
        what = prefix + what
        before = _versions(conn, pid)
        start, end = _timed_change(conn, sql, params, f"When the check {what}",
                                   found=caller.found, hint=hint)
        caller.verify(f"the check {what} (your trigger ran in that transaction)")
        versions = _versions(conn, pid)
        history = [v for v in versions if v.source == "history"]
        _judge_took_effect(versions, {**state, **new}, sql, what)
        if hint is TOUCH_HINT and len(history) == len(states) - 1:
            # no version written for a change of no kept column: allowed, if the
            # current version still starts where it did
            if versions[-1].lo != before[-1].lo:
                raise CheckFailed(
                    f"When the check {what}, products_history got no new version, yet "
                    f"the current version now starts at {_show(versions[-1].lo)} "
                    f"instead of {_show(before[-1].lo)}: the client moved the start of "
                    "the current version, so it overlaps (or leaves a gap after) the "
                    f"last history version. {hint}")
            _check_periods(versions, f"After the check {what}")
            continue
        _judge_step(history, states, new, what)
        try:
            _check_periods(versions, f"After the check {what}")
        except CheckFailed as exc:
            if not hint:
                raise
            raise CheckFailed(f"{exc.message} {hint}", exc.detail) from None
        try:
            _within(history[-1].hi, start, end, f"When the check {what}", caller.zone,
                    "" if hint is TOUCH_HINT else hint)
        except CheckFailed as exc:
            if hint is not TOUCH_HINT:
                raise
            raise CheckFailed(f"{exc.message} {hint}", exc.detail) from None
        state.update(new)
        states.append(tuple(state[k] for k in KEPT))


def _judge_took_effect(versions: list[Version], want: dict[str, Any], sql: str,
                       what: str) -> None:
    """The change itself happened: a DELETE removed the row, an UPDATE wrote its values."""
    current = versions[-1] if versions and versions[-1].source == "current" else None
    if sql.startswith("DELETE"):
        if current is not None:
            raise CheckFailed(
                f"After the check {what}, the product is still in products: the DELETE "
                "deleted nothing, silently (no error). A BEFORE trigger that returns NULL "
                "cancels the operation for that row, and in a DELETE trigger NEW is NULL: "
                "`RETURN NEW` for every operation cancels every DELETE. Return OLD for a "
                "DELETE (IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;), NEW for an UPDATE.")
        return
    expected = tuple(want[k] for k in KEPT)
    if current is None:
        raise CheckFailed(f"After the check {what}, the product is gone from products: an "
                          "UPDATE must keep the row (the trigger returns NEW).")
    if current.values != expected:
        raise CheckFailed(
            f"After the check {what}, the product in products holds "
            f"{dict(zip(KEPT, current.values))}, not the values the UPDATE set "
            f"({dict(zip(KEPT, expected))}): the UPDATE did not take effect, silently. The row "
            "a BEFORE UPDATE trigger returns is the row written: `RETURN OLD` writes the old "
            "values back (and NULL skips the row). Return NEW for an UPDATE, after setting "
            "NEW.updated_at.")


def _rerun_keeps_history(lab: Any, r: Any, history_sql: str, why: str,
                         again: str = "a second time (as every later deploy, or a re-run of "
                                      "the cell, does)") -> None:
    """A migration runs again (another deploy, a re-run cell): the history must survive it."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        _require_history(conn)
        pid, sku = _new_product(conn, str(Decimal(r.randint(1_001, 9_999)) / 100))
        probe, _ = _new_product(conn, str(Decimal(r.randint(1_001, 9_999)) / 100))
        gone = pid
        try:
            hi = dt.datetime.now(dt.timezone.utc) - dt.timedelta(
                days=r.randint(1, 30), microseconds=r.randint(1, 999_999))
            lo = hi - dt.timedelta(days=r.randint(1, 30), microseconds=r.randint(1, 999_999))
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")
                conn.execute(
                    "INSERT INTO products_history (product_id, sku, name, price, attributes, "
                    "deleted_at, valid) VALUES (%s, %s, 'Versioned check item (old name)', "
                    "%s, '{}', NULL, tstzrange(%s, %s))",
                    [pid, sku, Decimal(r.randint(1_001, 9_999)) / 100, lo, hi])
                conn.execute("UPDATE products SET updated_at = %s WHERE id = %s", [hi, pid])
                # a product deleted long ago (DELETE, the row is gone): its history stays
                gone, gone_sku = _new_product(conn, str(Decimal(r.randint(1_001, 9_999)) / 100))
                conn.execute(
                    "INSERT INTO products_history (product_id, sku, name, price, attributes, "
                    "deleted_at, valid) VALUES (%s, %s, 'Versioned check item (deleted)', "
                    "%s, '{}', NULL, tstzrange(%s, %s))",
                    [gone, gone_sku, Decimal(r.randint(1_001, 9_999)) / 100, lo, hi])
                conn.execute("DELETE FROM products WHERE id = %s", [gone])
            planted = query_checksum(
                conn, "SELECT * FROM products_history WHERE product_id = ANY(%s)", [[pid, gone]])
            with untouched(lab, ["products"], why=why):
                _apply_while_writing(lab, history_sql, "your statements" + (
                    " (run a second time)" if again else ""), probe)
            if not _has_history(conn) or query_checksum(
                    conn, "SELECT * FROM products_history WHERE product_id = ANY(%s)",
                    [[pid, gone]]) != planted:
                raise CheckFailed(
                    f"The check ran your statements {again}{', ' if again else ''}and the "
                    "history products already had in products_history (of a live product, "
                    "and of one deleted long ago, whose row in products is gone) was gone or "
                    "changed afterwards: running them destroys the history the table exists "
                    "to keep (a deleted product's history is what a dispute about it needs). "
                    "Make them re-runnable without touching data: CREATE TABLE IF NOT EXISTS "
                    "(never DROP TABLE, TRUNCATE or a clean-up DELETE), CREATE OR REPLACE "
                    "FUNCTION/TRIGGER.")
        finally:
            _cleanup(conn, [pid, gone, probe])


def _apply_while_writing(lab: Any, sql: str, what: str, pid: int) -> None:
    """``apply``, with another session changing a product after each statement (the shop
    does not stop for a deploy): every such change must leave a version. The change is
    rolled back, so the products table ends as it was. A statement inside the migration's
    own transaction is not probed (the writer would only wait for it)."""
    from .indexing import split_statements
    statements = split_statements(sql)
    with psycopg.connect(lab.url, autocommit=True) as conn, psycopg.connect(lab.url) as writer:
        writer.execute("SET lock_timeout = '2s'")
        writer.commit()
        for statement in statements:
            try:
                conn.execute(statement)
            except (psycopg.errors.DuplicateTable, psycopg.errors.DuplicateObject):
                pass
            except psycopg.Error as exc:
                raise CheckFailed(f"PostgreSQL rejected {what}: "
                                  f"{exc.diag.message_primary or exc}",
                                  f"SQLSTATE {exc.sqlstate}; statement: {statement}") from None
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                continue
            try:
                with writer.transaction(force_rollback=True):
                    if not _has_history(writer):
                        continue
                    count = "SELECT count(*) FROM products_history WHERE product_id = %s"
                    (n,) = writer.execute(count, [pid]).fetchone()
                    writer.execute("UPDATE products SET price = price + 1 WHERE id = %s", [pid])
                    (m,) = writer.execute(count, [pid]).fetchone()
            except psycopg.Error:
                continue  # a broken state mid-migration is judged by the rest of the check
            if m != n + 1:
                raise CheckFailed(
                    f"The check ran {what} while the shop kept working: right after the "
                    f"statement `{' '.join(statement.split())[:120]}`, another session changed "
                    f"a product's price and products_history got {m - n} new rows for it, not "
                    "one: for a moment there was no history trigger (DROP TRIGGER, then CREATE "
                    "TRIGGER), and every change made in that moment is lost from the history. "
                    "Replace the trigger in one statement: CREATE OR REPLACE TRIGGER (PostgreSQL "
                    "14+), or DROP and CREATE inside one transaction (BEGIN … COMMIT).")


def _fall_back_zone() -> str:
    """A POSIX TimeZone (which SET TimeZone accepts) whose clocks go back from +02 to +01 half
    an hour from now: the present instant lies in the first pass of the hour the zone
    repeats. A wall-clock time (timestamp without time zone) read now converts back to the
    second pass, an hour later."""
    switch = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=30)
    local = switch + dt.timedelta(hours=2)  # the wall clock (summer time) at the switch
    day = local.timetuple().tm_yday - 1  # POSIX "n": zero-based, counting 29 February
    return f"<+01>-1<+02>,{(day + 180) % 365}/0,{day}/{local:%H:%M:%S}"


class _NoZoneWarning(logging.Filter):
    """psycopg warns once that it cannot map a POSIX TimeZone to a Python zone (it then
    returns timestamptz values in UTC, the same instants): not the learner's business."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "unknown PostgreSQL timezone" not in record.getMessage()


FALL_BACK_HINT = (
    "This session's TimeZone is a zone whose clocks go back from +02 to +01 half an hour from "
    "now, so its wall clock is now in the hour it will show twice: a timestamp WITHOUT time "
    "zone (a variable `t timestamp`, localtimestamp, now()::timestamp) holding now() is that "
    "wall-clock time, and PostgreSQL converts it back to the second pass, an hour later. Keep "
    "t a timestamptz (t timestamptz := now()): an instant has no wall clock to repeat.")


def _fall_back_probe(lab: Any, r: Any, what: str) -> None:
    """One price change on a session whose zone is in the first pass of its repeated hour:
    the boundary must be the change's own instant."""
    zone = _fall_back_zone()
    quiet = _NoZoneWarning()
    logging.getLogger("psycopg").addFilter(quiet)
    try:
        with psycopg.connect(lab.url, autocommit=True) as conn:
            born = dt.datetime.now(dt.timezone.utc) - dt.timedelta(
                days=r.randint(1, 30), microseconds=r.randint(1, 999_999))
            pid, _ = _new_product(conn, str(Decimal(r.randint(1_001, 9_999)) / 100),
                                  updated_at=born)
            try:
                conn.execute("SELECT set_config('TimeZone', %s, false)", [zone])
                price = Decimal(r.randint(1_001, 9_999)) / 100
                label = (f"{what}, on a session whose TimeZone is '{zone}' (clocks go back in "
                         "half an hour)")
                start, end = _timed_change(conn, "UPDATE products SET price = %s WHERE id = %s",
                                           [price, pid], f"When the check set the price {label}",
                                           hint=FALL_BACK_HINT)
                versions = _versions(conn, pid)
                history = [v for v in versions if v.source == "history"]
                if len(history) != 1:
                    raise CheckFailed(f"When the check set the price {label}, products_history "
                                      f"got {len(history)} rows for it, not one.")
                _check_periods(versions, f"After the check set the price {label}")
                _within(history[-1].hi, start, end, f"When the check set the price {label}",
                        zone, FALL_BACK_HINT)
            finally:
                _cleanup(conn, [pid])
    finally:
        logging.getLogger("psycopg").removeFilter(quiet)


def _probe_swallowed(lab: Any, pid: int) -> None:
    """A history write that fails must fail the change: planted overlap, rolled back."""
    with psycopg.connect(lab.url) as conn, conn.transaction(force_rollback=True):
        (at,) = conn.execute("SELECT updated_at FROM products WHERE id = %s", [pid]).fetchone()
        conn.execute("""
            INSERT INTO products_history (product_id, sku, name, price, attributes, deleted_at,
                                          valid)
            SELECT id, sku, name, price, attributes, deleted_at,
                   tstzrange(updated_at, updated_at + interval '1 microsecond')
            FROM products WHERE id = %s""", [pid])
        conn.execute("SAVEPOINT probe")
        try:
            conn.execute("UPDATE products SET price = price + 1 WHERE id = %s", [pid])
            conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        except psycopg.Error:
            return
        raise CheckFailed(
            f"The check wrote (and rolled back) a history row for product {pid} from "
            f"{_show(_utc(at))}, so that the version your trigger writes on the next UPDATE "
            "overlaps it and the exclusion constraint refuses it. The UPDATE still succeeded: "
            "your trigger swallows the failure of its history write (EXCEPTION WHEN … without "
            "RAISE, ON CONFLICT DO NOTHING), so the product changes and its old version is "
            "lost. Let a failed history write fail the change: no exception handler around "
            "the INSERT.")


def _probe_exclusion(lab: Any, pid: int, other: int) -> None:
    """The constraint refuses overlapping versions of one product, and only those.

    Rows written by hand, in a transaction rolled back: one overlapping a version of the
    product under another SKU (must fail with 23P01), one that only touches its first
    version (must be accepted), one of another product with the same SKU and period (must
    be accepted). Deferred constraints are made to speak with SET CONSTRAINTS ALL IMMEDIATE.
    """
    with psycopg.connect(lab.url) as conn, conn.transaction(force_rollback=True):
        rows = conn.execute("""
            SELECT sku, name, price, attributes, deleted_at, lower(valid), upper(valid)
            FROM products_history WHERE product_id = %s
            ORDER BY lower(valid)""", [pid]).fetchall()
        sku, name, price, attributes, deleted_at, lo, hi = rows[0]
        third = (hi - lo) / 3
        inside = (lo + third, hi - third)  # within the first version, not equal to it

        def insert(product: int, sku: str, period: tuple,
                   deleted: dt.datetime | None = None) -> psycopg.Error | None:
            conn.execute("SAVEPOINT probe")
            try:
                conn.execute(
                    "INSERT INTO products_history (product_id, sku, name, price, attributes, "
                    "deleted_at, valid) VALUES (%s, %s, %s, %s, %s, %s, tstzrange(%s, %s))",
                    [product, sku, name, price, Jsonb(attributes), deleted or deleted_at,
                     *period])
                conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
            except psycopg.Error as exc:
                conn.execute("ROLLBACK TO SAVEPOINT probe")
                return exc
            conn.execute("RELEASE SAVEPOINT probe")
            return None

        def shown(period: tuple) -> str:
            return f"[{_show(_utc(period[0]))}, {_show(_utc(period[1]))})"

        first = shown((lo, hi))
        for deleted, how in ((None, "under another SKU"),
                             (inside[0], "under another SKU, soft-deleted (deleted_at set)")):
            err = insert(pid, f"{sku}-renamed", inside, deleted)
            if err is not None and err.sqlstate == "23P01":
                continue
            raise CheckFailed(
                f"The check wrote (and rolled back) a second version of product {pid} for "
                f"{shown(inside)}, inside its version {first}, {how}, and "
                + ("products_history accepted it" if err is None else
                   f"PostgreSQL refused it with {err.sqlstate} "
                   f"{err.diag.message_primary or err}, not as an overlap (23P01)")
                + ": your exclusion constraint does not stop two versions of one product from "
                "overlapping. The product is the key (its SKU can change and be reused), and "
                "the periods must not share any instant: EXCLUDE USING gist (product_id WITH "
                "=, valid WITH &&), on every row (no WHERE): `valid WITH =` refuses only "
                "identical periods.")
        before = (lo - dt.timedelta(days=1), lo)
        err = insert(pid, sku, before)
        if err is not None:
            raise CheckFailed(
                f"The check wrote (and rolled back) a version of product {pid} for "
                f"{shown(before)}, which ends exactly where its version {first} begins, and "
                f"PostgreSQL refused it ({err.sqlstate} {err.diag.message_primary or err}). "
                "Consecutive half-open periods meet without overlapping and must be accepted: "
                "exclude overlaps (valid WITH &&), nothing more.")
        err = insert(other, sku, inside)
        if err is not None:
            raise CheckFailed(
                f"The check wrote (and rolled back) a version of ANOTHER product ({other}) with "
                f"the same SKU {sku!r} and the period {shown(inside)}, and PostgreSQL refused "
                f"it ({err.sqlstate} {err.diag.message_primary or err}). Versions of different "
                "products never conflict, whatever their SKU: key the exclusion constraint on "
                "product_id, EXCLUDE USING gist (product_id WITH =, valid WITH &&).")


def _judge_step(history: list[Version], states: list[tuple], new: dict[str, Any],
                what: str) -> None:
    """After change number len(states), the history holds exactly the replaced states."""
    want = len(states)
    if len(history) < want - 1:
        raise CheckFailed(
            f"After the check {what}, products_history holds {len(history)} versions of the "
            f"product where it held {want - 1} before: the change removed history. "
            + ("Deleting a product must keep its past: products_history.product_id must not "
               "reference products ON DELETE CASCADE (or SET NULL); a history outlives the "
               "row, so it needs no foreign key to products." if "DELETE" in what else
               "A version, once written, is never changed or removed by a later change."),
            f"history: {[v.values for v in history]}")
    if len(history) < want:
        if what.startswith("deleted"):
            raise CheckFailed(
                "After the product was DELETEd, its last version is not in products_history: "
                "time travel to any moment before the deletion must still find it. Fire the "
                "trigger on DELETE too (BEFORE UPDATE OR DELETE).",
                f"history: {[v.values for v in history]}")
        raise CheckFailed(
            f"After the check {what}, products_history holds no version for the state that "
            "change replaced: every change of a product must leave the replaced version, "
            "whatever column it changes. A trigger on UPDATE OF price (or with a WHEN on some "
            "columns) misses renames, SKU and attribute changes and soft deletes: fire BEFORE "
            "UPDATE OR DELETE … FOR EACH ROW.",
            f"{len(history)} history rows after {want} changes")
    if len(history) > want:
        raise CheckFailed(
            f"After the check {what}, products_history holds {len(history)} versions for "
            f"{want} changes: one change must write exactly one history row (a FOR EACH ROW "
            "trigger, fired once: not also AFTER, not also FOR EACH STATEMENT).")
    for i, (got, expected) in enumerate(zip(history, states)):
        if got.values != expected:
            newer = states[i + 1] if i + 1 < len(states) else None
            is_new = got.values == newer or (newer is None and bool(new) and all(
                got.values[KEPT.index(k)] == v for k, v in new.items()))
            raise CheckFailed(
                f"After the check {what}, history version {i + 1} holds "
                f"{dict(zip(KEPT, got.values))}; the version it replaced was "
                f"{dict(zip(KEPT, expected))}."
                + (" The history must hold the replaced versions: the OLD row, not the NEW one."
                   if is_new else " Copy every kept column of the OLD row."))


# --------------------------------------------------------------------------
# q2: AS OF


def _as_of(conn: psycopg.Connection, as_of_sql: str, pid: int, at: dt.datetime) -> list[tuple]:
    conn.execute("SAVEPOINT as_of")
    try:
        cur = conn.execute(as_of_sql, {"product_id": pid, "at": at})
        rows = cur.fetchall()
    except psycopg.Error as exc:
        conn.execute("ROLLBACK TO SAVEPOINT as_of")
        raise CheckFailed(f"PostgreSQL rejected your AS OF query: "
                          f"{exc.diag.message_primary or exc}", f"SQLSTATE {exc.sqlstate}") from None
    columns = [c.name for c in cur.description or []]
    if len(columns) != 1:
        raise CheckFailed(
            f"Your AS OF query returns {len(columns)} columns ({', '.join(columns)}); the task "
            "asks for one column, the price, so that a caller reads fetchone()[0] (or gets "
            "None when no row). SELECT price in both branches of the UNION ALL.")
    return rows


Probe = tuple[int, dt.datetime, "Decimal | None", str]


def _plant_history(conn: psycopg.Connection, r: Any, tz: ZoneInfo) -> list[Probe]:
    """Products and history of the check's own (inside the caller's transaction), and the
    instants to ask about with the price at each (None: the product did not exist)."""
    day = dt.datetime.now(tz).date() - dt.timedelta(days=r.randint(20, 400))
    midnight = dt.datetime.combine(day, dt.time(0), tz)  # a local midnight
    next_midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tz)
    start = midnight - dt.timedelta(hours=r.randint(2, 30), microseconds=r.randint(1, 999_999))
    noon = dt.datetime.combine(day, dt.time(12, r.randint(0, 59), r.randint(0, 59)), tz)

    def price() -> Decimal:
        return Decimal(r.randint(1_001, 9_999)) / 100

    p1, p2 = price(), price()
    # the deleted product: [start, midnight) p1, [midnight, +1µs) p2, [+1µs, next midnight) p1
    deleted = [(start, midnight, p1), (midnight, midnight + MICRO, p2),
               (midnight + MICRO, next_midnight, p1)]
    sibling = [(lo, hi, price()) for lo, hi, _ in deleted]  # same periods, another product
    sibling_now = price()
    live_old, live_now = price(), price()
    live_from = noon - dt.timedelta(days=r.randint(1, 9), microseconds=r.randint(1, 999_999))

    (gone,) = conn.execute("SELECT nextval(pg_get_serial_sequence('products', 'id'))").fetchone()
    sib, _ = _new_product(conn, str(sibling_now), updated_at=next_midnight)
    live, _ = _new_product(conn, str(live_now), updated_at=noon)
    rows = ([(gone, lo, hi, p) for lo, hi, p in deleted]
            + [(sib, lo, hi, p) for lo, hi, p in sibling] + [(live, live_from, noon, live_old)])
    try:
        for pid, lo, hi, p in rows:
            conn.execute(
                "INSERT INTO products_history (product_id, sku, name, price, attributes, "
                "deleted_at, valid) VALUES (%s, %s, 'Versioned check item', %s, '{}', NULL, "
                "tstzrange(%s, %s))", [pid, f"CHECK-{pid}", p, lo, hi])
    except psycopg.Error as exc:
        raise CheckFailed(f"The check could not write a history of its own into products_history "
                          f"({exc.diag.message_primary or exc}): keep the table as exercise 1 "
                          f"describes it ({', '.join(HISTORY_COLUMNS)}).") from None

    first, last = "the first instant of a version", "the last microsecond of a version"
    probes: list[Probe] = []
    probes += [(gone, lo, p, first) for lo, _, p in deleted]
    probes += [(gone, hi - MICRO, p, last) for _, hi, p in deleted]
    probes += [(gone, start + (midnight - start) / 2, p1, "the middle of a version")]
    probes += [(gone, start - MICRO, None, "a microsecond before the product existed"),
               (gone, next_midnight, None, "the moment it was deleted (the next local midnight)"),
               (gone, next_midnight + MICRO, None, "a microsecond after its deletion"),
               (gone, next_midnight + dt.timedelta(days=1), None, "a day after deletion")]
    probes += [(sib, next_midnight, sibling_now, "the first instant of the current version"),
               (sib, next_midnight - MICRO, sibling[-1][2], last),
               (sib, midnight, sibling[1][2], "the instant of a version valid for one microsecond"),
               (live, noon, live_now, "the first instant of the current version (a whole second)"),
               (live, noon - MICRO, live_old, "just before the current version"),
               (live, noon + dt.timedelta(days=365), live_now,
                "a year from now (the current version)"),
               (live, live_from - MICRO, None, "a microsecond before the product existed")]
    return probes


def q2(lab: Any, as_of_sql: str) -> str:
    """The price at any instant: first and last microsecond of each period, before and after."""
    require(as_of_sql)
    r = adv.rng()
    zone = adv.non_utc_zone()
    tz = ZoneInfo(zone)
    with psycopg.connect(lab.url) as conn, conn.transaction(force_rollback=True):
        _require_history(conn)
        # the check's own history, written directly: the learner's trigger does not fire
        conn.execute("SET LOCAL session_replication_role = replica")
        probes = _plant_history(conn, r, tz)
        conn.execute("SELECT set_config('TimeZone', %s, true)", [zone])
        for product, at, want, what in probes:
            at = at.astimezone(tz if r.random() < 0.5 else dt.timezone.utc)
            rows = _as_of(conn, as_of_sql, product, at)
            got = [_price(row[0]) for row in rows]
            shown = f"{what} ({at.isoformat(sep=' ')}, session TimeZone {zone})"
            if len(got) > 1:
                raise CheckFailed(
                    f"At {shown} your query returns {len(got)} rows "
                    f"({[str(g) for g in got]}): two versions claim the same instant. At most "
                    "one version of a product contains an instant, because a period is "
                    "half-open, [lower, upper): keep only this product (product_id = "
                    "%(product_id)s) and use valid @> %(at)s, or lower <= at AND at < upper.")
            if want is None and rows:
                raise CheckFailed(
                    f"At {shown} your query returns a row ({tuple(rows[0])!r}), but the "
                    "product did not exist then: the answer is no row. A row with a NULL price "
                    "says the product existed and had no price, and a caller that asks "
                    "'did it exist?' (fetchone() is None) is told yes. Return the version "
                    "that contains the instant, or nothing (UNION ALL of the history and the "
                    "current row, each with its own WHERE; no coalesce of two lookups).")
            if (got[0] if got else None) != want:
                raise CheckFailed(
                    f"At {shown} your query returns {got[0] if got else 'no row'}; the price "
                    f"then was {want if want is not None else 'nothing (no such product)'}. "
                    + ("The current version lives in products, not in the history: ask both "
                       "(UNION ALL)." if "current" in what else
                       "Periods are half-open: the instant a version was replaced belongs to "
                       "the next one; compare timestamptz with timestamptz (a timestamp "
                       "without time zone is read in the session's TimeZone)."))
        _fall_back_as_of(conn, as_of_sql, r)
    return (f"right price (or none) at {len(probes)} instants: period boundaries a microsecond "
            "apart, a local midnight, before creation, after deletion, the current version, "
            f"on a session in {zone}, and around a boundary in the hour a zone repeats")


def _fall_back_as_of(conn: psycopg.Connection, as_of_sql: str, r: Any) -> None:
    """A version boundary ten minutes ago, on a session whose TimeZone (POSIX, see
    _fall_back_zone) is now in the first pass of the hour it repeats: an instant cast to
    timestamp without time zone is that wall-clock time, converted back to the second pass,
    an hour later, so the query answers with the next version. Inside q2's rolled-back
    transaction."""
    zone = _fall_back_zone()
    now = dt.datetime.now(dt.timezone.utc)
    edge = now - dt.timedelta(minutes=10, microseconds=r.randint(1, 999_999))
    born = edge - dt.timedelta(days=r.randint(1, 30), microseconds=r.randint(1, 999_999))
    old, new = (Decimal(r.randint(1_001, 9_999)) / 100 for _ in range(2))
    pid, _ = _new_product(conn, str(new), updated_at=edge)
    conn.execute(
        "INSERT INTO products_history (product_id, sku, name, price, attributes, deleted_at, "
        "valid) VALUES (%s, %s, 'Versioned check item', %s, '{}', NULL, tstzrange(%s, %s))",
        [pid, f"CHECK-{pid}", old, born, edge])
    quiet = _NoZoneWarning()
    logging.getLogger("psycopg").addFilter(quiet)
    try:
        conn.execute("SELECT set_config('TimeZone', %s, true)", [zone])
        for at, want, what in ((edge - dt.timedelta(minutes=5), old, "five minutes before"),
                               (edge - MICRO, old, "a microsecond before"),
                               (edge, new, "the very instant of"),
                               (edge + dt.timedelta(minutes=5), new, "five minutes after")):
            rows = _as_of(conn, as_of_sql, pid, at)
            got = _price(rows[0][0]) if rows else None
            if len(rows) > 1 or got != want:
                raise CheckFailed(
                    f"At {what} a price change ({_show(at)}; the change at {_show(edge)}), on a "
                    f"session whose TimeZone is '{zone}' (its clocks go back from +02 to +01 "
                    "half an hour from now, so this hour's wall-clock times come twice), your "
                    f"query returns {[str(_price(x[0])) for x in rows] or 'no row'}; the price "
                    "then was " + str(want) + ". An instant turned into a "
                    "timestamp WITHOUT time zone (%(at)s::timestamp, AT TIME ZONE) is that "
                    "wall-clock time, and comparing it with a timestamptz converts it back to "
                    "the second pass, an hour later. Compare instants: %(at)s::timestamptz "
                    "(valid @> %(at)s::timestamptz, updated_at <= %(at)s::timestamptz).")
    finally:
        logging.getLogger("psycopg").removeFilter(quiet)


# --------------------------------------------------------------------------
# q3: the transaction that started first and commits last


EMPTY_HINT = ("Here T1 started before T2's version began, so greatest(now(), OLD.updated_at) "
              "gave t = OLD.updated_at and the period [t, t). Make t strictly later: "
              "greatest(now(), OLD.updated_at + interval '1 microsecond').")


def _step_failed(step: Any) -> Any:
    """The outcome that decides a step: its final one if it waited first."""
    return step.final if step is not None and step.final is not None else step


def q3(lab: Any, clock_sql: str) -> str:
    """Transactions and statements that meet a newer version than their clock must not break
    time, and a write must not wait for writes of other products."""
    require(clock_sql)
    zone = adv.non_utc_zone()
    r = adv.rng()
    _rerun_keeps_history(lab, r, clock_sql, "exercise 3 replaces the trigger's function: it "
                         "changes no product", again="")

    def price() -> Decimal:
        return Decimal(r.randint(1_001, 9_999)).scaleb(-2)  # two decimals, as numeric(10,2)

    _fall_back_probe(lab, r, "after your new function was in place")
    _client_clock_probe(lab, r)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        _require_history(conn)
        prices = {key: [price() for _ in range(3)] for key in ("kept", "gone", "aside", "held")}
        ids: dict[str, int] = {}
        try:
            for key, (p0, _, _) in prices.items():
                ids[key], _ = _new_product(conn, str(p0))
            gone, held = ids["gone"], ids["held"]

            def set_price(key: str, i: int) -> str:
                return f"UPDATE products SET price = {prices[key][i]} WHERE id = {ids[key]}"

            with Sessions(lab, "T1", "T2", application_name="lab check",
                          settings={"TimeZone": zone}) as s:
                # 1. T1 starts first; T2 changes two products and commits; then T1 updates
                #    one and DELETEs the other. Meanwhile T1 writes a third product while
                #    T2 is still open: that write must not wait.
                s.T1("BEGIN")
                start1 = s.T1("SELECT now()").value  # T1's now() is fixed here, before T2's
                s.T2("BEGIN")
                start2 = s.T2("SELECT now()").value
                early = s.T2(set_price("kept", 1))
                early_gone = s.T2(set_price("gone", 1)) if early.ok else None
                side = s.T1(set_price("aside", 1))
                end2 = s.T2("SELECT clock_timestamp()").value
                s.T2("COMMIT" if early_gone is not None and early_gone.ok else "ROLLBACK")
                side_done = _step_failed(side)
                late = s.T1(set_price("kept", 2)) if side_done.ok else None
                dropped = (s.T1(f"DELETE FROM products WHERE id = {gone}")
                           if late is not None and late.ok else None)
                t1_ok = dropped is not None and dropped.ok
                end1 = s.T1("SELECT clock_timestamp()").value if t1_ok else None
                s.T1("COMMIT" if t1_ok else "ROLLBACK")
                # 2. T2 holds the row (SELECT … FOR UPDATE); T1's UPDATE starts and waits;
                #    T2 writes a version and commits; T1's statement then reaches the row.
                s.T2("BEGIN")
                s.T2(f"SELECT price FROM products WHERE id = {held} FOR UPDATE")
                start3 = s.T1("SELECT clock_timestamp()").value
                waiting = s.T1(set_price("held", 2))
                start4 = s.T2("SELECT now()").value
                moved = s.T2(set_price("held", 1))
                end4 = s.T2("SELECT clock_timestamp()").value
                s.T2("COMMIT" if moved.ok else "ROLLBACK")
                resumed = _step_failed(waiting)
                end3 = s.T1("SELECT clock_timestamp()").value
                transcript = s.transcript()

            for step in (early, early_gone, moved):
                if step is not None and step.failed:
                    raise CheckFailed(f"T2's plain UPDATE of a product failed inside your "
                                      f"trigger: {step.sqlstate} {step.message}.", transcript)
            if side.blocked:
                raise CheckFailed(
                    "T2 updated a product and kept its transaction open; T1's UPDATE of ANOTHER "
                    f"product then waited for T2 (BLOCKS, waits for {', '.join(side.blocked_by)}) "
                    "until T2 committed. Your trigger serialises every write of products (a "
                    "LOCK TABLE, an advisory lock, a shared row it locks): one slow transaction "
                    "stalls every other product's update, every checkout behind it. The row lock "
                    "PostgreSQL already takes orders the writes of the same product; take no "
                    "other lock.", transcript)
            if side_done.failed:
                raise CheckFailed(f"T1's plain UPDATE of a product failed inside your trigger: "
                                  f"{side_done.sqlstate} {side_done.message}.", transcript)
            if late is not None and late.failed:
                raise CheckFailed(
                    f"T1 started before T2, T2 updated the product and committed, then T1's "
                    f"UPDATE failed: {late.sqlstate} {late.message}. now() is the start of the "
                    "transaction, so T1's now() is older than the version T2 wrote: a period "
                    "[T2's time, T1's now()) runs backwards. Versions must follow commit order: "
                    "use greatest(now(), OLD.updated_at + interval '1 microsecond') (or "
                    "clock_timestamp()) as the switch-over time.", transcript)
            if dropped is not None and dropped.failed:
                raise CheckFailed(
                    f"T1 started before T2, T2 updated a product and committed, then T1 DELETEd "
                    f"that product and the DELETE failed: {dropped.sqlstate} {dropped.message}. "
                    "A DELETE closes the last version too, and T1's now() is older than the "
                    "version T2 wrote: the DELETE must use the same switch-over time as an "
                    "UPDATE, greatest(now(), OLD.updated_at + interval '1 microsecond') (or "
                    "clock_timestamp()), or the product can never be deleted by a transaction "
                    "that started before its last change.", transcript)
            if resumed.failed:
                raise CheckFailed(
                    "T2 locked a product (SELECT … FOR UPDATE); T1's UPDATE of it started and "
                    "waited for that lock; T2 updated the product and committed; T1's UPDATE "
                    f"then reached the row and failed: {resumed.sqlstate} {resumed.message}. "
                    "T1's statement began before T2 wrote its version, so its "
                    "statement_timestamp() (like its now()) is older than OLD.updated_at: when "
                    "a statement started says nothing about when it reaches a row (a bulk "
                    "UPDATE meets the same). Use greatest(now(), OLD.updated_at + interval "
                    "'1 microsecond') (or clock_timestamp()) as the switch-over time.",
                    transcript)

            def judge(key: str, want: list[Decimal], what: str) -> list[Version]:
                versions = _versions(conn, ids[key])
                if [v.price for v in versions] != want:
                    raise CheckFailed(
                        f"{what}, the versions should read {', '.join(map(str, want))}.",
                        f"versions: {[(str(v.price), v.period()) for v in versions]}"
                        f"\n{transcript}")
                _check_periods(versions, what, EMPTY_HINT)
                return versions

            versions = judge("kept", prices["kept"], "After T1 (started first) committed last")
            _within(versions[0].hi, start2, end2, "When T2 updated the product", zone)
            _within(versions[1].hi, start1, end1, "When T1 updated it after T2's commit", zone)
            versions = judge("gone", prices["gone"][:2], "After T1 DELETEd a product T2 had "
                             "updated since T1 began")
            _within(versions[0].hi, start2, end2, "When T2 updated the product", zone)
            _within(versions[1].hi, start1, end1, "When T1 deleted it after T2's commit", zone)
            versions = judge("aside", prices["aside"][:2], "After T1 updated a product of its own")
            _within(versions[0].hi, start1, end1, "When T1 updated a product of its own", zone)
            if not waiting.blocked:  # T2's FOR UPDATE holds the row: the check's own premise
                raise RuntimeError("T1's UPDATE of a row locked FOR UPDATE by T2 did not wait:\n"
                                   + transcript)
            versions = judge("held", prices["held"],
                             "After T1's UPDATE waited for T2's lock and T2 committed first")
            _within(versions[0].hi, start4, end4, "When T2 updated the product", zone)
            _within(versions[1].hi, start3, end3, "When T1's waiting UPDATE reached the row",
                    zone)
            # 3. a version that began a moment ago is replaced: the switch-over must not
            #    lie after the UPDATE that made it (a bump of a millisecond does)
            for _ in range(5):  # five tries (about 0.3 ms each): a slow one cannot hide a bump
                _probe_fresh_version(conn, price(), price(), ids)
            # 4. one transaction changes a product twice: the second change meets the version
            #    the first began at this very now()
            _probe_same_transaction(conn, [price() for _ in range(3)], ids, zone)
        finally:
            _cleanup(conn, list(ids.values()))
    return ("transactions and statements that started before a concurrent change committed "
            "(an UPDATE, a DELETE, an UPDATE that waited for a row lock) extend the history in "
            "order, a version replaced a moment after it began switches over within the UPDATE, "
            "and a write never waits for another product's")


def _client_clock_probe(lab: Any, r: Any) -> None:
    """Exercise 3's function must still do all that exercise 1 asked: a plain price change,
    two that set updated_at from an application's clock (behind, ahead) and two that change
    no kept column, on a caller's connection whose settings must be left as found."""
    with Caller(lab, autocommit=True) as caller:
        conn = caller.conn
        state = {"sku": f"CHECK-{uuid.uuid4().hex[:8]}", "name": "Versioned check item",
                 "price": Decimal(r.randint(1_001, 9_999)) / 100, "attributes": {},
                 "deleted_at": None}
        born = dt.datetime.now(dt.timezone.utc) - dt.timedelta(
            days=r.randint(1, 30), microseconds=r.randint(1, 999_999))
        pid, _ = _new_product(conn, str(state["price"]), sku=state["sku"], name=state["name"],
                              updated_at=born)
        try:
            price = Decimal(r.randint(1_001, 9_999)) / 100
            steps = [(f"set the price to {price}", "UPDATE products SET price = %s WHERE id = %s",
                      [price, pid], {"price": price}, "")]
            steps += _app_clock_steps(r, pid) + _touch_steps(r, pid)
            r.shuffle(steps)
            _play(conn, caller, pid, state, [tuple(state[k] for k in KEPT)], steps,
                  prefix="(with exercise 3's function in place) ")
        finally:
            caller.clean()
            _cleanup(conn, [pid])


SAME_TX_HINT = (
    "Here one transaction changed the product twice: the first change began the new version "
    "at its now(), so the second change meets OLD.updated_at = now(), and a switch-over time "
    "equal to it gives the empty period [now(), now()): the first change's price was valid at "
    "no instant, and no AS OF query finds it. Step strictly past the replaced version: "
    "greatest(now(), OLD.updated_at + interval '1 microsecond') (a test such as `IF now() < "
    "OLD.updated_at` misses the equal case: it must be <=).")


def _probe_same_transaction(conn: psycopg.Connection, prices: list[Decimal],
                            ids: dict[str, int], zone: str) -> None:
    """Two UPDATEs of one product in one transaction (an application that saves twice): three
    versions, the middle one non-empty, each boundary within the transaction."""
    p0, p1, p2 = prices
    pid, _ = _new_product(conn, str(p0), updated_at=dt.datetime.now(dt.timezone.utc)
                          - dt.timedelta(days=1, microseconds=417))
    ids[f"twice {pid}"] = pid
    what = "When the check changed a product's price twice in one transaction"
    conn.execute("SELECT set_config('TimeZone', %s, false)", [zone])
    try:
        with conn.transaction():
            start = conn.execute("SELECT now()").fetchone()[0]
            for p in (p1, p2):
                _change(conn, "UPDATE products SET price = %s WHERE id = %s", [p, pid], what)
            end = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    except CheckFailed as exc:
        raise CheckFailed(f"{exc.message} {SAME_TX_HINT}", exc.detail) from None
    finally:
        conn.execute("RESET TimeZone")
    versions = _versions(conn, pid)
    if [v.price for v in versions] != [p0, p1, p2]:
        raise CheckFailed(f"{what}, the versions should read {p0}, {p1}, {p2}.",
                          f"versions: {[(str(v.price), v.period()) for v in versions]}")
    _check_periods(versions, what, SAME_TX_HINT)
    for v in versions[:2]:
        _within(v.hi, start, end, what, zone)


def _probe_fresh_version(conn: psycopg.Connection, p0: Decimal, p1: Decimal,
                         ids: dict[str, int]) -> None:
    """Insert a product whose version begins at clock_timestamp(), and update it at once, in
    one DO block (microseconds apart): the old version must end within that UPDATE."""
    sku = f"CHECK-{uuid.uuid4().hex[:12]}"
    what = ("When the check inserted a product and updated its price a moment later, in the "
            "same transaction")
    with conn.transaction():
        _change(conn, f"""
            DO $probe$
            DECLARE pid bigint;
            BEGIN
                INSERT INTO products (sku, name, category, vendor, price, attributes, updated_at)
                VALUES ('{sku}', 'Versioned check item', 'home', 'Check Vendor', {p0}, '{{}}',
                        clock_timestamp())
                RETURNING id INTO pid;
                PERFORM set_config('lab_check.product', pid::text, true);
                UPDATE products SET price = {p1} WHERE id = pid;
                PERFORM set_config('lab_check.done', clock_timestamp()::text, true);
            END $probe$""", None, what)
        pid, done = conn.execute("SELECT current_setting('lab_check.product')::bigint, "
                                 "current_setting('lab_check.done')::timestamptz").fetchone()
    ids[f"fresh {pid}"] = pid
    versions = _versions(conn, pid)
    if [v.price for v in versions] != [p0, p1]:
        raise CheckFailed(f"{what}, the versions should read {p0}, {p1}.",
                          f"versions: {[(str(v.price), v.period()) for v in versions]}")
    _check_periods(versions, what, "Here the version being replaced began a moment before "
                   "the UPDATE, after the transaction's now(): t must still come strictly "
                   "later, greatest(now(), OLD.updated_at + interval '1 microsecond').")
    began, hi, done = versions[0].lo, versions[0].hi, _utc(done)
    if hi > done:
        raise CheckFailed(
            f"{what} (one DO block): the version it replaced began at {_show(began)}, the "
            f"UPDATE had finished by {_show(done)}, and your trigger closed that version at "
            f"{_show(hi)}, {hi - done} after the UPDATE finished, so possibly after its "
            "transaction committed: an AS OF query for an instant just after that commit still "
            "returns the replaced price. The switch-over must lie within the change that makes "
            "it: step past OLD.updated_at by the smallest amount a timestamptz holds, "
            "greatest(now(), OLD.updated_at + interval '1 microsecond') (or use "
            "clock_timestamp()), never by a millisecond or a second.")


HINTS = {
    "q1": ["A BEFORE UPDATE OR DELETE … FOR EACH ROW trigger: INSERT the OLD row into the "
           "history with valid = tstzrange(OLD.updated_at, t), and on UPDATE set "
           "NEW.updated_at := t.",
           "CREATE EXTENSION btree_gist; … EXCLUDE USING gist (product_id WITH =, valid WITH &&)"],
    "q2": ["SELECT price FROM products_history WHERE product_id = %(product_id)s AND valid @> "
           "%(at)s UNION ALL SELECT price FROM products WHERE id = %(product_id)s AND "
           "updated_at <= %(at)s"],
    "q3": ["CREATE OR REPLACE FUNCTION <your trigger's function>() RETURNS trigger …: the whole "
           "function again, with another t; the trigger keeps calling it.",
           "t := greatest(now(), OLD.updated_at + interval '1 microsecond')"],
}


# Decoy runs keep the earlier exercises' check cells: a later check builds on what they
# applied (tests/test_contract.py reads this).
CHECKS_BUILD_ON_EARLIER = True
