"""Checks for 08_versioned_data: a history table kept by a trigger, and time travel.

The checks work on products of their own (SKU ``CHECK-…``, never ordered), change them
in separate committed transactions, and judge the history by its invariants rather than
by timestamps they cannot know in advance:

* q1: one history row per replaced version, holding the *old* values; the periods of a
  product (history plus the current row) are contiguous, non-empty and never overlap;
  a multi-row UPDATE versions every row; a DELETE closes the last period;
* q2: the learner's AS OF query answers at every period's first instant, at its last
  microsecond, before the product existed and after it was deleted;
* q3: two sessions, the later-starting one committing first (``labs.tools.sessions``): the
  earlier one's update must neither fail nor write a backwards or overlapping period.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import psycopg

from ..course.checking import CheckFailed, require
from ..tools.sessions import Sessions
from .indexing import apply

MICRO = dt.timedelta(microseconds=1)


def _new_product(conn: psycopg.Connection, price: str) -> tuple[int, str]:
    sku = f"CHECK-{uuid.uuid4().hex[:12]}"
    (pid,) = conn.execute(
        "INSERT INTO products (sku, name, category, vendor, price, updated_at) "
        "VALUES (%s, 'Versioned check item', 'home', 'Check Vendor', %s, now()) RETURNING id",
        [sku, Decimal(price)]).fetchone()
    return pid, sku


def _change(conn: psycopg.Connection, sql: str, params: Any, what: str) -> None:
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


def _has_history(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('products_history') IS NOT NULL").fetchone()[0]


def _periods(conn: psycopg.Connection, pid: int) -> list[tuple]:
    """(price, lower, upper, source) of every version: history rows, then the current row."""
    rows = conn.execute("""
        SELECT price, lower(valid), upper(valid), 'history' FROM products_history
        WHERE product_id = %s ORDER BY lower(valid), upper(valid)""", [pid]).fetchall()
    current = conn.execute("SELECT price, updated_at FROM products WHERE id = %s",
                           [pid]).fetchone()
    if current:
        rows.append((current[0], current[1], None, "current"))
    return rows


def _cleanup(conn: psycopg.Connection, ids: list[int]) -> None:
    """Remove the check's products and their history, without firing the learner's trigger."""
    try:
        with conn.transaction():
            # replica role: user triggers do not fire, so a broken trigger cannot get in the
            # way of removing the check's own rows (needs superuser, as the lab's server has)
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("DELETE FROM products WHERE id = ANY(%s)", [ids])
            if _has_history(conn):
                conn.execute("DELETE FROM products_history WHERE product_id = ANY(%s)", [ids])
    except psycopg.Error:
        pass  # leftovers are CHECK-… products nobody orders: harmless


def _contiguous(periods: list[tuple], what: str) -> None:
    for i, (price, lo, hi, source) in enumerate(periods):
        if lo is None or (hi is not None and not lo < hi):
            raise CheckFailed(
                f"{what}: the version with price {price} has the period [{lo}, {hi}), which is "
                "empty or runs backwards. A version is valid from the moment it was written "
                "until the moment it was replaced.")
        if i + 1 < len(periods) and hi != periods[i + 1][1]:
            nxt = periods[i + 1]
            kind = "overlap" if hi is None or hi > nxt[1] else "gap"
            raise CheckFailed(
                f"{what}: the periods have a {kind}: price {price} is valid until {hi}, but the "
                f"next version (price {nxt[0]}, {nxt[3]}) starts at {nxt[1]}. Close the old "
                "version exactly when the new one starts: the history row's upper bound and "
                "the new row's updated_at must be the same timestamp.")


def _require_history(conn: psycopg.Connection) -> None:
    if not _has_history(conn):
        raise CheckFailed("There is no table products_history: run exercise 1 (and its check) "
                          "first.")


# --------------------------------------------------------------------------
# q1: the history trigger


def q1(lab: Any, history_sql: str) -> str:
    """Every UPDATE and DELETE of products leaves the old version, with a contiguous period."""
    require(history_sql)
    apply(lab, history_sql, "your statements")
    with psycopg.connect(lab.url, autocommit=True) as conn:
        _require_history(conn)
        pid, _ = _new_product(conn, "10.00")
        others = [_new_product(conn, "5.00")[0] for _ in range(2)]
        ids = [pid] + others
        try:
            for price in ("11.00", "12.00", "13.00"):
                _change(conn, "UPDATE products SET price = %s WHERE id = %s",
                        [Decimal(price), pid], f"When the check set the price to {price}")
            periods = _periods(conn, pid)
            prices = [str(p[0]) for p in periods]
            if len(periods) != 4:
                raise CheckFailed(
                    f"After three committed UPDATEs of one product, products_history holds "
                    f"{len(periods) - 1} rows for it; it should hold three, one per replaced "
                    "version (a trigger FOR EACH ROW on UPDATE).", f"versions: {periods}")
            if prices != ["10.00", "11.00", "12.00", "13.00"]:
                raise CheckFailed(
                    f"The prices over time read {prices} (history by period, then the current "
                    "row); they should read 10.00, 11.00, 12.00, 13.00. The history must hold "
                    "the replaced versions: the OLD row, not the NEW one.")
            _contiguous(periods, "After three UPDATEs")
            # one statement, several rows: every row gets its own version
            _change(conn, "UPDATE products SET price = price + 1 WHERE id = ANY(%s)", [others],
                    "In a two-row UPDATE")
            for other in others:
                got = _periods(conn, other)
                if len(got) != 2:
                    raise CheckFailed(
                        "One UPDATE of two products must leave one history row for each "
                        f"(product {other} has {len(got) - 1}); use a FOR EACH ROW trigger.")
                _contiguous(got, "After a two-row UPDATE")
            _change(conn, "DELETE FROM products WHERE id = %s", [pid], "On DELETE")
            periods = _periods(conn, pid)
            if len(periods) != 4 or periods[-1][2] is None or str(periods[-1][0]) != "13.00":
                raise CheckFailed(
                    "After the product was DELETEd, its last version (price 13.00) is not in "
                    "products_history with a closed period: time travel to any moment before "
                    "the deletion must still find it. Fire the trigger on DELETE too.",
                    f"versions: {periods}")
            _contiguous(periods, "After the DELETE")
            if not conn.execute("""
                    SELECT bool_or(c.contype = 'x') FROM pg_constraint c
                    WHERE c.conrelid = 'products_history'::regclass""").fetchone()[0]:
                raise CheckFailed(
                    "products_history has no exclusion constraint: nothing stops two versions "
                    "of one product from overlapping (a bug in the trigger, a manual fix gone "
                    "wrong). EXCLUDE USING gist (product_id WITH =, valid WITH &&), with the "
                    "btree_gist extension.")
        finally:
            _cleanup(conn, ids)
    return ("one history row per replaced version, old values, contiguous periods; multi-row "
            "UPDATE and DELETE versioned; overlaps excluded by a constraint")


# --------------------------------------------------------------------------
# q2: AS OF


def _as_of(conn: psycopg.Connection, as_of_sql: str, pid: int, at: dt.datetime) -> list[tuple]:
    conn.execute("SAVEPOINT as_of")
    try:
        rows = conn.execute(as_of_sql, {"product_id": pid, "at": at}).fetchall()
    except psycopg.Error as exc:
        conn.execute("ROLLBACK TO SAVEPOINT as_of")
        raise CheckFailed(f"PostgreSQL rejected your AS OF query: "
                          f"{exc.diag.message_primary or exc}", f"SQLSTATE {exc.sqlstate}") from None
    return rows


def q2(lab: Any, as_of_sql: str) -> str:
    """The price at any instant: first and last microsecond of each period, before and after."""
    require(as_of_sql)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        _require_history(conn)
        pid, _ = _new_product(conn, "20.00")
        live, _ = _new_product(conn, "30.00")
        try:
            for price in ("21.00", "22.00"):
                _change(conn, "UPDATE products SET price = %s WHERE id = %s",
                        [Decimal(price), pid], "Building the history (exercise 1's trigger)")
            _change(conn, "UPDATE products SET price = 31.00 WHERE id = %s", [live],
                    "Building the history (exercise 1's trigger)")
            _change(conn, "DELETE FROM products WHERE id = %s", [pid],
                    "Building the history (exercise 1's trigger)")
            periods = _periods(conn, pid)
            _contiguous(periods, "Before judging your query, exercise 1's history")
            probes: list[tuple[dt.datetime, str | None, str]] = []
            for price, lo, hi, _ in periods:
                probes.append((lo, str(price), "the first instant of a version"))
                probes.append((hi - MICRO, str(price), "the last microsecond of a version"))
            probes.append((periods[0][1] - MICRO, None, "a moment before the product existed"))
            probes.append((periods[-1][2], None, "the moment it was deleted"))
            probes.append((periods[-1][2] + dt.timedelta(days=1), None, "a day after deletion"))
            current = _periods(conn, live)
            probes_live = [(current[-1][1], "31.00", "the first instant of the current version"),
                           (current[-1][1] - MICRO, "30.00", "just before the current version"),
                           (current[-1][1] + dt.timedelta(days=365), "31.00",
                            "a year from now (the current version)")]
            with conn.transaction(force_rollback=True):
                for product, tests in ((pid, probes), (live, probes_live)):
                    for at, want, what in tests:
                        rows = _as_of(conn, as_of_sql, product, at)
                        got = [str(r[0]) for r in rows]
                        if len(got) > 1:
                            raise CheckFailed(
                                f"At {what} ({at}) your query returns {len(got)} rows "
                                f"({got}): two versions claim the same instant. A period is "
                                "half-open, [lower, upper): use valid @> %(at)s, or "
                                "lower <= at AND at < upper.")
                        if (got[0] if got else None) != want:
                            raise CheckFailed(
                                f"At {what} ({at}) your query returns "
                                f"{got[0] if got else 'no row'}; the price then was "
                                f"{want if want is not None else 'nothing (no such product)'}. "
                                + ("The current version lives in products, not in the history: "
                                   "ask both (UNION ALL)." if "current" in what else
                                   "Periods are half-open: the instant a version was replaced "
                                   "belongs to the next one."))
        finally:
            _cleanup(conn, [pid, live])
    return (f"right price (or none) at {len(probes) + len(probes_live)} instants: period "
            "boundaries, before creation, after deletion, the current version")


# --------------------------------------------------------------------------
# q3: the transaction that started first and commits last


def q3(lab: Any, history_sql: str) -> str:
    """An UPDATE whose transaction started before the previous version's must not break time."""
    require(history_sql)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        _require_history(conn)
        pid, _ = _new_product(conn, "40.00")
        try:
            with Sessions(lab, "T1", "T2", application_name="lab check") as s:
                s.T1("BEGIN")
                s.T1("SELECT now()")  # T1's now() is fixed here, before T2 starts
                s.T2("BEGIN")
                s.T2(f"UPDATE products SET price = 41.00 WHERE id = {pid}")
                s.T2("COMMIT")
                late = s.T1(f"UPDATE products SET price = 42.00 WHERE id = {pid}")
                s.T1("COMMIT" if late.ok else "ROLLBACK")
                transcript = s.transcript()
            if late.failed:
                raise CheckFailed(
                    f"T1 started before T2, T2 updated the product and committed, then T1's "
                    f"UPDATE failed: {late.sqlstate} {late.message}. now() is the start of the "
                    "transaction, so T1's now() is older than the version T2 wrote: a period "
                    "[T2's time, T1's now()) runs backwards. Versions must follow commit order: "
                    "use greatest(now(), OLD.updated_at + interval '1 microsecond') (or "
                    "clock_timestamp()) as the switch-over time.", transcript)
            periods = _periods(conn, pid)
            if [str(p[0]) for p in periods] != ["40.00", "41.00", "42.00"]:
                raise CheckFailed("After T2's and then T1's update, the versions should read "
                                  "40.00, 41.00, 42.00.", f"versions: {periods}\n{transcript}")
            _contiguous(periods, "After T1 (started first) committed last")
        finally:
            _cleanup(conn, [pid])
    return "a transaction that started first and committed last still extends the history in order"


HINTS = {
    "q1": ["A BEFORE UPDATE OR DELETE … FOR EACH ROW trigger: INSERT the OLD row into the "
           "history with valid = tstzrange(OLD.updated_at, t), and on UPDATE set "
           "NEW.updated_at := t.",
           "CREATE EXTENSION btree_gist; … EXCLUDE USING gist (product_id WITH =, valid WITH &&)"],
    "q2": ["SELECT price FROM products_history WHERE product_id = %(product_id)s AND valid @> "
           "%(at)s UNION ALL SELECT price FROM products WHERE id = %(product_id)s AND "
           "updated_at <= %(at)s"],
    "q3": ["t := greatest(now(), OLD.updated_at + interval '1 microsecond')"],
}
