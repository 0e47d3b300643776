"""Checks for 06_upserts: upserts, idempotency keys and bulk loads, proven under races.

Every check runs the learner's function three ways:

1. **alone**, on hand-made events whose right outcome is known (insert, replay,
   newer, older), so that a missing staleness guard or a lost ``RETURNING`` id
   fails every time;
2. **in forced interleavings** (:func:`labs.tools.stress.interleave`): a first call is
   held after its k-th statement while a second call on the same key runs until
   it finishes or the lock manager says it waits, for every k. A race that
   *can* happen (check-then-insert, ``MERGE`` without a retry, a check-then-act
   idempotency key) therefore *does* happen, on every run: no decoy passes by luck;
3. **under the stress runner**: 8 workers apply the same events (or feeds) in
   different orders; the final state must be the one computed in Python by
   :func:`labs.data.feeds.expected_state` (the sequential result, which does not
   depend on order), no error may reach the caller, and applying everything
   again must leave :func:`labs.data.dataset.table_checksum` unchanged.
"""

from __future__ import annotations

import json
import random
import uuid
from decimal import Decimal
from typing import Any, Callable

import psycopg

from ..data import feeds as fd
from ..course.checking import CheckFailed, NotAttempted, require
from ..data.dataset import table_checksum
from ..tools.stress import HookedConnection, in_transaction, interleave, run_stress

ACTIONS = ("inserted", "updated", "stale")
MAX_PAUSE = 16  # pause points tried per scenario; an upsert needs far fewer statements

IDEMPOTENCY_DDL = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key        text PRIMARY KEY,
    request    jsonb NOT NULL,
    response   jsonb,              -- NULL only inside the first request's transaction
    created_at timestamptz NOT NULL DEFAULT now()
)
"""

# A view of what a feed sets, without id (new rows get different ids in different
# runs) and updated_at: the state "sequential vs concurrent" compares.
CONTENT_VIEW = "upserts_check_content"
_VIEW_DDL = (f"CREATE OR REPLACE VIEW {CONTENT_VIEW} AS SELECT sku, name, category, vendor, "
             "price, attributes, version, deleted_at FROM products")


# --------------------------------------------------------------------------
# helpers


def explain_error(exc: BaseException, who: str) -> str:
    """A learner-facing sentence for an error that reached the caller, by SQLSTATE."""
    if isinstance(exc, psycopg.Error):
        primary = (exc.diag.message_primary if getattr(exc, "diag", None) else None) or str(exc)
        state = exc.sqlstate
        said = f"{who} raised {state} `{primary}`"
        if state == "23505":
            return (said + ": two sessions inserted the same key. A check-then-insert or a "
                    "MERGE loses this race; use INSERT … ON CONFLICT, or catch 23505 and "
                    "retry the whole transaction.")
        if state == "21000":
            return (said + ": the batch holds the same sku twice. Keep one row per sku "
                    "(the highest version) before the INSERT … SELECT … ON CONFLICT.")
        if state in ("40001", "40P01"):
            return (said + ": a serialization failure or deadlock must be retried inside your "
                    "function (roll back, try the whole transaction again), not passed on "
                    "to the caller; sorting rows by key avoids most deadlocks.")
        return said
    return f"{who} raised {type(exc).__name__}: {exc}"


def _call(fn: Callable[..., Any], *args: Any, who: str) -> Any:
    try:
        return fn(*args)
    except NotAttempted:
        raise
    except psycopg.Error as exc:
        raise CheckFailed(explain_error(exc, who)) from None


def _event(sku: str, version: int, price: str, name: str | None = None,
           extra: dict | None = None) -> fd.Event:
    return {"sku": sku, "name": name or f"Check item {sku} v{version}", "category": "home",
            "vendor": "Check Vendor", "price": price, "attributes": dict(extra or {}, v=version),
            "version": version, "updated_at": f"2026-11-02T00:{version:02d}:00+00:00"}


def _row(conn: psycopg.Connection, sku: str) -> tuple | None:
    """(id, content) of a sku as committed, or None."""
    r = conn.execute("SELECT id, sku, name, category, vendor, price, attributes, version "
                     "FROM products WHERE sku = %s", [sku]).fetchall()
    if len(r) > 1:
        raise CheckFailed(f"products holds {len(r)} rows for sku {sku!r}: a race inserted it "
                          "twice (is products_sku_key still there?).")
    if not r:
        return None
    return r[0][0], fd.content(dict(zip(fd.CONTENT, r[0][1:])))


def _result(value: Any, what: str) -> tuple[Any, str]:
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise CheckFailed(f"{what} returned {value!r}; it should return a tuple (id, action).")
    pid, action = value
    if action not in ACTIONS:
        raise CheckFailed(f"{what} returned the action {action!r}; use one of {list(ACTIONS)}.")
    return pid, action


def _unique_tag() -> str:
    return uuid.uuid4().hex[:8]


def _forced_races(lab: Any, scenarios: list[tuple[str, Callable[[str], None], Any, Any]],
                  run: Callable[[Any, Any], Any], judge: Callable[..., None]) -> int:
    """Run each scenario with the first call held after statement 1, 2, … (until it no
    longer reaches the pause point). ``setup(sku)`` prepares a fresh key."""
    races = 0
    for name, setup, first_arg, second_arg in scenarios:
        for k in range(1, MAX_PAUSE + 1):
            key = setup(name)
            fa, sa = first_arg(key), second_arg(key)
            result = interleave(lab, lambda c: run(c, fa), lambda c: run(c, sa), pause_after=k)
            for err in result.errors:
                if isinstance(err, NotAttempted):
                    raise err
            for err, who in ((result.first_error, "the first call"),
                             (result.second_error, "the second call")):
                if err is not None:
                    raise CheckFailed(explain_error(err, who) + f" (race: {name}; the first "
                                      f"call was held after its statement {k} while the "
                                      "second ran)")
            races += 1
            judge(name, key, k, result, fa, sa)
            if not result.paused:
                break
    return races


# --------------------------------------------------------------------------
# q1: upsert_product


def q1(lab: Any, upsert_product: Callable[[Any, fd.Event], tuple]) -> str:
    """upsert_product(conn, event) -> (id, action): guarded, exact ids, race-free."""
    require(upsert_product)
    tag = _unique_tag()
    with psycopg.connect(lab.url, autocommit=True) as watch, psycopg.connect(lab.url) as conn:

        def call(event: fd.Event, what: str) -> tuple[Any, str]:
            got = _result(_call(upsert_product, conn, event, who="upsert_product"), what)
            if in_transaction(conn):
                raise CheckFailed("upsert_product returned with its transaction still open; "
                                  "commit it (the caller must see the effect, and a stress "
                                  "worker must not keep locks).")
            return got

        # -- alone: the four cases ------------------------------------------------
        sku = f"CHK1-{tag}"
        e1, e3, e2 = _event(sku, 1, "10.00"), _event(sku, 3, "30.00"), _event(sku, 2, "20.00")
        pid, action = call(e1, "upsert_product on a new sku")
        stored = _row(watch, sku)
        if stored is None:
            raise CheckFailed("After upsert_product on a new sku, no committed row has that sku.")
        if (pid, action) != (stored[0], "inserted"):
            raise CheckFailed(f"On a new sku, upsert_product returned {(pid, action)!r}; "
                              f"expected (id of the new row, 'inserted') = ({stored[0]}, "
                              "'inserted').", "RETURNING id, (xmax = 0) AS inserted tells them apart")
        rid = stored[0]
        got = call(dict(e1), "a replay of the same event")
        if got[0] == rid and got[1] != "stale":
            raise CheckFailed(
                f"Replaying the same event (same version) returned {got[1]!r}; expected 'stale': "
                "an event that is not newer than the stored row must change nothing. Guard the "
                "update: ON CONFLICT (sku) DO UPDATE SET … WHERE EXCLUDED.version > "
                "products.version.")
        if got != (rid, "stale"):
            raise CheckFailed(
                f"Replaying the same event returned {got!r}; expected ({rid}, 'stale'): same id, "
                "nothing changed. With ON CONFLICT DO NOTHING, RETURNING gives no row for the "
                "existing one, so the id is lost: fetch it (or use DO UPDATE … WHERE).")
        got = call(e3, "a newer event (version 3)")
        if got != (rid, "updated") or _row(watch, sku)[1] != fd.content(e3):
            raise CheckFailed(f"A newer event (version 3 over 1) returned {got!r} and left "
                              f"{_row(watch, sku)[1]!r}; expected ({rid}, 'updated') and the "
                              "event's values stored.")
        got = call(e2, "an older event (version 2 after 3)")
        now = _row(watch, sku)[1]
        if now != fd.content(e3):
            raise CheckFailed(
                f"An out-of-order event (version 2, arriving after version 3) overwrote the newer "
                f"row: it now has version {now[-1]} and price {now[4]}. Guard the update: "
                "ON CONFLICT (sku) DO UPDATE SET … WHERE EXCLUDED.version > products.version.")
        if got != (rid, "stale"):
            raise CheckFailed(f"An older event returned {got!r}; expected ({rid}, 'stale'), the "
                              "id of the row it did not change.")
        existing = watch.execute("SELECT id, sku, name, category, vendor, price, attributes, "
                                 "version FROM products ORDER BY id LIMIT 1 OFFSET 6").fetchone()
        newer = dict(zip(fd.CONTENT, existing[1:]), version=existing[7] + 1, price="1.23",
                     updated_at="2026-11-02T00:00:00+00:00")
        got = call(newer, "a newer version of an existing product")
        if got != (existing[0], "updated"):
            raise CheckFailed(f"A newer version of product {existing[0]} returned {got!r}; "
                              f"expected ({existing[0]}, 'updated').")

    # -- forced races on one sku ------------------------------------------------------
    def setup(name: str) -> str:
        sku = f"CHK1-{tag}-{name}-{random.random():.9f}"[:60]
        if name.startswith("existing"):
            lab.execute("INSERT INTO products (sku, name, category, vendor, price, attributes, "
                        "version, updated_at) VALUES (%s, 'seed', 'home', 'Check Vendor', 1, "
                        "'{}', 1, now())", [sku])
        return sku

    def run(conn: Any, event: fd.Event) -> tuple:
        return _result(upsert_product(conn, event), "upsert_product")

    def judge(name: str, sku: str, k: int, result: Any, fa: fd.Event, sa: fd.Event) -> None:
        with psycopg.connect(lab.url, autocommit=True) as watch:
            stored = _row(watch, sku)
        want = max((fa, sa), key=lambda e: e["version"])
        where = f"(race: {name}; the first call held after its statement {k})"
        if stored is None or stored[1] != fd.content(want):
            raise CheckFailed(f"After two concurrent upserts of one sku, the row holds version "
                              f"{stored[1][-1] if stored else None}; expected version "
                              f"{want['version']} {where}. A stale event overwrote a newer one: "
                              "decide staleness in the UPDATE's WHERE, not in Python.")
        for res, who in ((result.first_result, "first"), (result.second_result, "second")):
            if res is not None and res[0] != stored[0]:
                raise CheckFailed(f"The {who} concurrent call returned id {res[0]!r}; the row's id "
                                  f"is {stored[0]} {where}.")

    same = lambda v, p: (lambda sku: _event(sku, v, p))  # noqa: E731
    scenarios = [("new, same event twice", lambda n: setup("new-a"), same(1, "5.00"), same(1, "5.00")),
                 ("new, newer second", lambda n: setup("new-b"), same(1, "5.00"), same(2, "6.00")),
                 ("new, older second", lambda n: setup("new-c"), same(2, "6.00"), same(1, "5.00")),
                 ("existing, newer second", lambda n: setup("existing-d"), same(2, "6.00"),
                  same(3, "7.00")),
                 ("existing, older second", lambda n: setup("existing-e"), same(3, "7.00"),
                  same(2, "6.00"))]
    races = _forced_races(lab, scenarios, run, judge)

    # -- stress: 8 workers, same events, different orders -----------------------------------
    with psycopg.connect(lab.url, autocommit=True) as conn:
        feeds = fd.make_feeds(conn, feeds=2, existing=16, new=6, seed=41, sku_prefix=f"Q1{tag}")
        events = feeds.valid_events()
        original = fd.read_state(conn, feeds.skus)
    stats = _stress_events(lab, upsert_product, events)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        got_state = fd.read_state(conn, feeds.skus)
        ids = dict(conn.execute("SELECT sku, id FROM products WHERE sku = ANY(%s)",
                                [feeds.skus]).fetchall())
    _compare_state(got_state, fd.expected_state(original, events), "8 workers upserting")
    wrong_ids = [(e["sku"], r[0]) for e, r in stats if r[0] != ids.get(e["sku"])]
    if wrong_ids:
        raise CheckFailed("Under 8 workers, upsert_product returned ids that are not the row's "
                          f"id, e.g. {wrong_ids[:3]}.")
    with psycopg.connect(lab.url, autocommit=True) as watch, psycopg.connect(lab.url) as conn:
        before = table_checksum(watch, "products")
        again = [_result(_call(upsert_product, conn, e, who="upsert_product"), "a replay")
                 for e in events]
        after = table_checksum(watch, "products")
    if before != after or any(a != "stale" for _, a in again):
        raise CheckFailed("Applying the same events a second time changed products (or reported "
                          "something other than 'stale'); an upsert must be idempotent.")
    return (f"guarded upsert, exact ids; {races} forced races and 8 workers × {len(events)} "
            "events reach the sequential state; a replay changes nothing")


def _stress_events(lab: Any, upsert_product: Callable, events: list[fd.Event]
                   ) -> list[tuple[fd.Event, tuple]]:
    """8 workers each apply every event once, in their own order; errors fail the check."""
    failures: list[str] = []
    results: list[tuple[fd.Event, tuple]] = []

    def op(conn: psycopg.Connection, order: list[int]) -> None:
        for i in order:
            try:
                results.append((events[i], _result(upsert_product(conn, events[i]),
                                                   "upsert_product")))
            except NotAttempted:
                raise
            except (psycopg.Error, CheckFailed) as exc:
                failures.append(explain_error(exc, "upsert_product") if isinstance(
                    exc, psycopg.Error) else exc.message)
                if not conn.closed:
                    conn.rollback()

    _eight_workers(lab, op, len(events), 7, failures, "Under 8 concurrent workers", "call(s)")
    return results


def _eight_workers(lab: Any, op: Callable[[psycopg.Connection, list[int]], None], items: int,
                   seed: int, failures: list[str], when: str, what: str) -> None:
    """8 stress workers, each running ``op`` once on its own shuffled order of ``items``;
    a worker that died, or a call that ``op`` recorded in ``failures``, fails the check."""
    res = run_stress(lab, op, workers=8, operations=1, seed=seed, sample_every=None,
                     args=lambda rng: (rng.sample(range(items), items),))
    if res.outcomes.get("ok", 0) != 8:
        raise CheckFailed("A stress worker failed: " + "; ".join(
            f"{r.status} {r.error}" for r in res.errors())[:400])
    if failures:
        raise CheckFailed(f"{when}, {len(failures)} {what} failed; the first: {failures[0]}")


def _compare_state(got: dict[str, tuple], want: dict[str, tuple], what: str) -> None:
    if got == want:
        return
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing:
        raise CheckFailed(f"After {what}, {len(missing)} sku(s) are missing, e.g. {missing[:3]}.")
    if extra:
        raise CheckFailed(f"After {what}, products holds sku(s) no valid event created, e.g. "
                          f"{extra[:3]} (malformed rows must be rejected, not stored).")
    diff = [s for s in sorted(want) if got[s] != want[s]]
    older = [s for s in diff if got[s][-1] < want[s][-1]]
    if older:
        s = older[0]
        raise CheckFailed(
            f"After {what}, {len(older)} sku(s) hold an older version than the newest valid "
            f"event, e.g. {s}: version {got[s][-1]}, expected {want[s][-1]}. A stale event "
            "overwrote a newer one (guard: WHERE EXCLUDED.version > products.version).")
    s = diff[0]
    raise CheckFailed(f"After {what}, {len(diff)} sku(s) differ from the expected state, e.g. "
                      f"{s}.", f"got {got[s]}, expected {want[s]}")


# --------------------------------------------------------------------------
# q2: idempotency keys


def _price(conn: psycopg.Connection, sku: str) -> tuple[Decimal, int]:
    return conn.execute("SELECT price, version FROM products WHERE sku = %s", [sku]).fetchone()


def _norm(response: Any) -> str:
    return json.dumps(response, sort_keys=True, default=str)


def q2(lab: Any, handle_request: Callable[[Any, str, dict], Any]) -> str:
    """handle_request(conn, key, request): same key -> same response, one effect, even racing."""
    require(handle_request)
    lab.execute(IDEMPOTENCY_DDL)
    tag = _unique_tag()
    with psycopg.connect(lab.url, autocommit=True) as watch, psycopg.connect(lab.url) as conn:
        sku = watch.execute("SELECT sku FROM products ORDER BY id LIMIT 1 OFFSET 11").fetchone()[0]
        request = {"sku": sku, "price_change": "1.50"}
        price0, _ = _price(watch, sku)
        r1 = _call(handle_request, conn, f"chk2-{tag}-a", dict(request), who="handle_request")
        if in_transaction(conn):
            raise CheckFailed("handle_request returned with its transaction still open; commit it.")
        if r1 is None:
            raise CheckFailed("handle_request returned None; it should return the response.")
        r2 = _call(handle_request, conn, f"chk2-{tag}-a", dict(request), who="handle_request")
        price2, _ = _price(watch, sku)
        if price2 != price0 + Decimal("1.50"):
            raise CheckFailed(f"Two calls with the same idempotency key moved the price from "
                              f"{price0} to {price2}; the change (+1.50) must apply once.")
        if _norm(r1) != _norm(r2):
            raise CheckFailed("The replay's response differs from the first response; store the "
                              "response with the key and return it on a replay.",
                              f"first {r1!r}, replay {r2!r}")
        _call(handle_request, conn, f"chk2-{tag}-b", dict(request), who="handle_request")
        if _price(watch, sku)[0] != price0 + Decimal("3.00"):
            raise CheckFailed("A request with a *new* key did not apply its change; only a "
                              "replayed key must be a no-op.")

    def setup(name: str) -> str:
        return f"chk2-{tag}-{name}-{random.random():.9f}"

    def run(conn: Any, key: str) -> Any:
        return handle_request(conn, key, dict(request))

    def judge(name: str, key: str, k: int, result: Any, *_: Any) -> None:
        where = f"(the first call held after its statement {k} while the replay ran)"
        with psycopg.connect(lab.url, autocommit=True) as watch:
            price, _ = _price(watch, sku)
        if price != state["price"] + Decimal("1.50"):
            raise CheckFailed(f"Two racing requests with one idempotency key changed the price by "
                              f"{price - state['price']}, not 1.50 {where}: both did the work. "
                              "Insert the key first (the second request then waits on it) "
                              "instead of checking for it.")
        if _norm(result.first_result) != _norm(result.second_result):
            raise CheckFailed(f"Two racing requests with one key got different responses {where}.",
                              f"{result.first_result!r} vs {result.second_result!r}")
        state["price"] = price

    with psycopg.connect(lab.url, autocommit=True) as watch:
        state = {"price": _price(watch, sku)[0]}
    races = _forced_races(lab, [("replay race", setup, lambda key: key, lambda key: key)],
                          run, judge)
    _reused_key(lab, handle_request, f"chk2-{tag}-a", sku, request)
    return (f"one effect and one response per key, also in {races} forced races; a key reused "
            "for another request is refused")


def _reused_key(lab: Any, handle_request: Callable[..., Any], key: str, sku: str,
                request: dict) -> None:
    """The key of an applied request, sent again with another request: refused, no effect."""
    other = dict(request, price_change="2.00")
    with psycopg.connect(lab.url, autocommit=True) as watch, psycopg.connect(lab.url) as conn:
        price0, _ = _price(watch, sku)
        try:
            response = handle_request(conn, key, other)
        except NotAttempted:
            raise
        except ValueError:
            response = None
        except psycopg.Error as exc:
            raise CheckFailed(explain_error(exc, "handle_request")) from None
        else:
            raise CheckFailed(
                "The key of an applied request came back with a different request "
                f"(price_change {other['price_change']} instead of {request['price_change']}) "
                f"and handle_request returned {response!r}. A reused key with another request "
                "is a client bug, and answering with the first request's response hides it: "
                "compare the stored request and raise ValueError (an API answers 422).")
        finally:
            left_open = in_transaction(conn)
            conn.rollback()
        if _price(watch, sku)[0] != price0:
            raise CheckFailed("handle_request refused the reused key but changed the price "
                              "anyway; refuse before doing the work.")
        if left_open:
            raise CheckFailed("handle_request raised for the reused key but left its transaction "
                              "open; roll it back before raising.")


# --------------------------------------------------------------------------
# q3: load_feed


def _report(value: Any) -> tuple[int, int, list[int]]:
    get = (value.get if isinstance(value, dict) else lambda k: getattr(value, k, None))
    applied, stale, rejected = get("applied"), get("stale"), get("rejected")
    if not isinstance(applied, int) or not isinstance(stale, int) or rejected is None:
        raise CheckFailed(f"load_feed returned {value!r}; it should return a report with "
                          "'applied' (int), 'stale' (int) and 'rejected' (list of (position, "
                          "reason)).")
    positions = []
    for item in rejected:
        if isinstance(item, dict):
            item = item.get("position", item.get("index"))
        elif isinstance(item, (tuple, list)):
            item = item[0]
        positions.append(item)
    return applied, stale, sorted(positions)


STATEMENTS_PER_BATCH = 40  # a bulk load is a handful of statements, whatever the batch size


def q3(lab: Any, load_feed: Callable[[Any, list], Any]) -> str:
    """load_feed(conn, events): bulk, deduped, guarded, reports every malformed row;
    8 concurrent workers in different orders reach the sequential state; twice = once."""
    require(load_feed)
    tag = _unique_tag()
    with psycopg.connect(lab.url, autocommit=True) as admin:
        feeds = fd.make_feeds(admin, feeds=4, existing=60, new=20, seed=23,
                              sku_prefix=f"Q3{tag}")
        skus = feeds.skus
        start = fd.read_state(admin, skus)
        admin.execute(_VIEW_DDL)
        admin.execute("DROP TABLE IF EXISTS upserts_check_backup")
        admin.execute("CREATE TABLE upserts_check_backup AS SELECT * FROM products "
                      "WHERE sku = ANY(%s)", [skus])
    try:
        # 1. sequentially, feed by feed: counts, rejections, state, statement count
        state = dict(start)
        with psycopg.connect(lab.url) as raw:
            conn = HookedConnection(raw)
            for n, feed in enumerate(feeds.feeds):
                before = conn.statements
                report = _report(_call(load_feed, conn, [dict(e) for e in feed],
                                       who="load_feed"))
                if in_transaction(raw):
                    raise CheckFailed("load_feed returned with its transaction still open; "
                                      "commit it.")
                want = fd.expected_report(state, feed)
                if report[2] != want["rejected"]:
                    lost = sorted(set(want["rejected"]) - set(report[2]))
                    raise CheckFailed(
                        f"Feed {n} has malformed rows at positions {want['rejected']}; your report "
                        f"rejects {report[2]}. Report every malformed row (position and reason); "
                        "never drop one silently." + (f" Missing: {lost}." if lost else ""))
                if report[:2] != (want["applied"], want["stale"]):
                    raise CheckFailed(
                        f"Feed {n}: your report says applied={report[0]}, stale={report[1]}; "
                        f"expected applied={want['applied']}, stale={want['stale']} (applied: rows "
                        "inserted or updated; stale: valid events that changed nothing).")
                state = fd.expected_state(state, feed)
                with psycopg.connect(lab.url, autocommit=True) as watch:
                    _compare_state(fd.read_state(watch, skus), state, f"loading feeds 0..{n}")
                used = conn.statements - before
                if used > STATEMENTS_PER_BATCH:
                    raise CheckFailed(
                        f"load_feed sent {used} statements for a feed of {len(feed)} events: that "
                        "is row by row. COPY the batch into a temporary table, then apply it "
                        "with one INSERT … SELECT … ON CONFLICT.")
        with psycopg.connect(lab.url, autocommit=True) as admin:
            sequential = table_checksum(admin, CONTENT_VIEW)
            # 2. back to the start, then 8 workers, every feed, each in its own order
            admin.execute(
                "UPDATE products p SET (name, category, vendor, price, attributes, version, "
                "updated_at, deleted_at) = (b.name, b.category, b.vendor, b.price, b.attributes, "
                "b.version, b.updated_at, b.deleted_at) FROM upserts_check_backup b "
                "WHERE p.id = b.id")
            admin.execute("DELETE FROM products WHERE sku = ANY(%s) AND id NOT IN "
                          "(SELECT id FROM upserts_check_backup)", [skus])
        failures: list[str] = []

        def op(conn: psycopg.Connection, order: list[int]) -> None:
            for i in order:
                try:
                    load_feed(conn, [dict(e) for e in feeds.feeds[i]])
                except psycopg.Error as exc:
                    failures.append(explain_error(exc, "load_feed"))
                    conn.rollback()

        _eight_workers(lab, op, len(feeds.feeds), 3, failures,
                       "With 8 workers loading the same feeds in different orders", "load(s)")
        with psycopg.connect(lab.url, autocommit=True) as admin:
            concurrent = table_checksum(admin, CONTENT_VIEW)
            if concurrent != sequential:
                _compare_state(fd.read_state(admin, skus), state,
                               "8 workers loading the feeds in different orders")
                raise CheckFailed("After 8 concurrent workers, table_checksum differs from the "
                                  "sequential run's.")
        # 3. everything again: nothing changes
        with psycopg.connect(lab.url) as conn:
            agains = [_report(_call(load_feed, conn, [dict(e) for e in f], who="load_feed"))
                      for f in feeds.feeds]
        with psycopg.connect(lab.url, autocommit=True) as admin:
            again = table_checksum(admin, CONTENT_VIEW)
        if again != sequential or any(r[0] for r in agains):
            raise CheckFailed("Loading the same feeds a second time changed products (or reported "
                              f"applied rows: {[r[0] for r in agains]}); a load must be idempotent.")
    finally:
        with psycopg.connect(lab.url, autocommit=True) as admin:
            admin.execute("DROP TABLE IF EXISTS upserts_check_backup")
    events = sum(len(f) for f in feeds.feeds)
    return (f"{events} events in 4 feeds: right counts and rejections, at most "
            f"{STATEMENTS_PER_BATCH} statements a batch; 8 workers in different orders reach the "
            "sequential checksum; a second load changes nothing")


HINTS = {
    "q1": [
        "One statement does it: INSERT … ON CONFLICT (sku) DO UPDATE SET … WHERE "
        "EXCLUDED.version > products.version RETURNING id, (xmax = 0) AS inserted.",
        "When the WHERE rejects the update (a stale event), RETURNING gives no row. Then "
        "SELECT the id of the existing row: it is committed by now, because ON CONFLICT waited "
        "for any concurrent inserter.",
        "Commit before returning; return (id, 'inserted' | 'updated' | 'stale').",
    ],
    "q2": [
        "Make the key the first thing the transaction writes: INSERT INTO idempotency_keys "
        "(key, request) VALUES (…) ON CONFLICT (key) DO NOTHING RETURNING key.",
        "If that returned a row, you own the key: do the work, UPDATE the key's response, commit. "
        "If not, a request with that key committed before you (ON CONFLICT waited for it): "
        "SELECT its response.",
    ],
    "q3": [
        "Validate each event (labs.feeds.problem says why one is malformed), remember the "
        "rejected positions, COPY the valid ones into a temporary table.",
        "Keep one row per sku: DISTINCT ON (sku) … ORDER BY sku, version DESC.",
        "INSERT … SELECT … ORDER BY sku ON CONFLICT (sku) DO UPDATE … WHERE EXCLUDED.version > "
        "products.version; its row count is 'applied'. Sorting by sku gives every worker the "
        "same lock order; retry the whole batch on 40P01/40001 anyway.",
    ],
}
