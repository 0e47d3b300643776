"""Checks for 06_upserts: upserts, idempotency keys and bulk loads, proven under races.

Every check runs the learner's function three ways:

1. **alone**, on a caller's connection (autocommit off, non-default timeouts, a
   non-UTC ``TimeZone``), on events whose right outcome is known from the table
   as it stood (insert, replay, newer, older, a row another source wrote), so
   that a missing staleness guard, a lost ``RETURNING`` id or an action guessed
   from the version number fails every time; after each call the connection
   must be idle, hold no lock and keep the caller's settings and its client-side
   state (autocommit, isolation level);
2. **in forced interleavings** (:func:`labs.tools.stress.interleave`): a first call is
   held after its k-th statement while a second call on the same key (or an
   unrelated writer) runs until it finishes or the lock manager says it waits,
   for every k. A race that *can* happen (check-then-insert, ``MERGE`` without a
   retry, a check-then-act idempotency key, a price computed in Python by two
   requests with different keys, an action inferred from ``max(id)``) therefore
   *does* happen, on every run: no decoy passes by luck. The unrelated writer
   (beside an upsert, and beside a held bulk load) must never wait: a table lock
   fails;
3. **under the stress runner**: 8 workers apply the same events (or feeds) in
   different orders; the final state must be the one computed in Python by
   :func:`labs.data.feeds.expected_state` (the sequential result, which does not
   depend on order), no error may reach the caller, every new sku is reported
   ``inserted`` exactly once, and applying everything again must leave
   :func:`labs.data.dataset.table_checksum` unchanged.

The planted data comes from this run's seed (``labs.course.adversarial``): skus
with case variants and LIKE metacharacters beside them, versions that are not
1 (and, in the bulk feeds, versions 9/10 and 99/100 that text order gets wrong),
vendor timestamps in several offsets with fractions of a second (compared as
instants), products picked at random; products the check does not touch must
stay as they were.

The bulk load also meets a feed longer than any tiny feed (1,200+ events) whose first sku
comes again, newer, as its last event (a load that deduplicates chunk by chunk counts it
twice); every rejected row must carry its reason; and a caller's connection must be left
without temporary tables, cursors WITH HOLD, SQL prepared statements or LISTEN channels
(``Caller`` below), which a pooled session would keep.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Callable, Iterator, Sequence

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat
from psycopg.types.json import Json, Jsonb

from ..course import adversarial as adv
from ..course.checking import CheckFailed, NotAttempted, require
from ..course.left_behind import Caller
from ..course.left_behind import Watched, caller_settings
from ..data import feeds as fd
from ..data.dataset import table_checksum
from ..tools.stress import HookedConnection, interleave, run_stress


ACTIONS = ("inserted", "updated", "stale")
# Python types a caller passes and PostgreSQL types it reads: the adapters checked after a call
_DUMPED = (dict, list, tuple, str, int, float, bool, bytes, Decimal, dt.datetime, dt.date,
           uuid.UUID, Json, Jsonb)
_LOADED = ("bool", "int4", "int8", "numeric", "float8", "text", "varchar", "json", "jsonb",
           "timestamptz", "timestamp", "date", "uuid", "bytea")
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
# runs): the state "sequential vs concurrent" compares. updated_at is in it as an
# instant (the view's text form is read by the check's own UTC session).
CONTENT_VIEW = "upserts_check_content"
_VIEW_DDL = (f"CREATE OR REPLACE VIEW {CONTENT_VIEW} AS SELECT sku, name, category, vendor, "
             "price, attributes, updated_at, version, deleted_at FROM products")
# Settings that belong to the transaction, not the session.
_INSERT = ("INSERT INTO products (sku, name, category, vendor, price, attributes, version, "
           "updated_at) VALUES (%s, %s, 'home', 'Other Source', %s, %s, %s, %s) RETURNING id")


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
    """A valid event; its ``updated_at`` is the vendor's text for (sku, version): an
    instant with a fraction of a second, in an offset that is often not UTC."""
    return {"sku": sku, "name": name or f"Check item {sku} v{version}", "category": "home",
            "vendor": "Check Vendor", "price": price, "attributes": dict(extra or {}, v=version),
            "version": version, "updated_at": fd.vendor_time(sku, version)}


def _row(conn: psycopg.Connection, sku: str) -> tuple | None:
    """(id, content) of a sku as committed (exact, case-sensitive match), or None."""
    r = conn.execute(f"SELECT id, {', '.join(fd.CONTENT)} FROM products WHERE sku = %s",
                     [sku]).fetchall()
    if len(r) > 1:
        raise CheckFailed(f"products holds {len(r)} rows for sku {sku!r}: a race inserted it "
                          "twice (is products_sku_key still there?).")
    if not r:
        return None
    return r[0][0], fd.content(dict(zip(fd.CONTENT, r[0][1:])))


def _adapters(conn: Any) -> tuple:
    """What the connection's adapters map converts, and how: a function that registers a
    dumper or loader on the caller's ``conn.adapters`` changes every later query of the
    caller (a dict now sent as jsonb, numeric read as float), invisible to pg_settings.
    Asked through the public lookups (psycopg resolves its own entries lazily)."""
    a = getattr(getattr(conn, "_conn", conn), "adapters", None)
    if a is None:
        return ()

    def lookup(get: Callable[..., Any], *args: Any) -> Any:
        try:
            return get(*args)
        except psycopg.ProgrammingError:  # nothing registered for it
            return None

    dumpers = tuple(lookup(a.get_dumper, t, f) for t in _DUMPED for f in PyFormat)
    types = a.types
    oids = [types.get(name).oid for name in _LOADED if types.get(name) is not None]
    loaders = tuple(lookup(a.get_loader, oid, f) for oid in oids for f in pq.Format)
    return dumpers + loaders


def _same_adapters(before: tuple, conn: Any, what: str) -> None:
    if _adapters(conn) != before:
        raise CheckFailed(
            f"After {what}, the connection was not left as it was found: your function "
            "registered a dumper or loader on the connection it was lent (conn.adapters."
            "register_dumper/register_loader, or set_json_dumps/set_json_loads with the "
            "connection as context), so every later query of the caller converts values your "
            "way (a dict sent as jsonb, Json/Jsonb serialised by your function, a type read "
            "differently). Wrap the one value instead (Jsonb(value, dumps=...)), or register "
            "on a cursor of your own (cur.adapters).")


def _result(value: Any, what: str) -> tuple[Any, str]:
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise CheckFailed(f"{what} returned {value!r}; it should return a tuple (id, action).")
    pid, action = value
    if action not in ACTIONS:
        raise CheckFailed(f"{what} returned the action {action!r}; use one of {list(ACTIONS)}.")
    return pid, action


def _unique_tag() -> str:
    """Unique per run (a replayed seed must not meet the rows of its first run)."""
    return uuid.uuid4().hex[:8]


def _money(rng: Any, low: int, high: int) -> str:
    """A price as vendors send it (text), with cents that are not round."""
    while True:
        cents = rng.randint(low * 100, high * 100)
        if cents % 10:
            return f"{Decimal(cents) / 100:.2f}"


@contextmanager
def _products_untouched(lab: Any, allowed: Callable[[], Sequence[str]]) -> Iterator[None]:
    """Fail if a product that existed before the check changed, other than those whose
    skus ``allowed()`` names (read after the answer ran)."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        high = conn.execute("SELECT coalesce(max(id), 0) FROM products").fetchone()[0]
        rows = conn.execute("SELECT sku, md5(p::text) FROM products p WHERE id <= %s",
                            [high]).fetchall()
    yield
    skus = list(allowed())
    skip = set(skus)
    before = {sku: digest for sku, digest in rows if sku not in skip}
    with psycopg.connect(lab.url, autocommit=True) as conn:
        now = dict(conn.execute("SELECT sku, md5(p::text) FROM products p WHERE id <= %s "
                                "AND sku <> ALL(%s)", [high, skus]).fetchall())
    changed = sorted(s for s in before if now.get(s) != before[s])
    if changed:
        raise CheckFailed(
            f"Your answer changed {len(changed)} product(s) that no event of the check named, "
            f"e.g. {changed[:3]}. Match rows on sku exactly (skus are case sensitive: never "
            "lower(sku), ILIKE or LIKE), and change only the skus the events carry.",
            f"{len(changed)} product(s) changed or deleted")


# --------------------------------------------------------------------------
# q1: upsert_product


def _truth(watch: psycopg.Connection, event: fd.Event) -> tuple[tuple | None, str]:
    """The row as it stands before a call, and the action the event must get from it."""
    stored = _row(watch, event["sku"])
    if stored is None:
        return None, "inserted"
    return stored, "updated" if int(event["version"]) > stored[1][-1] else "stale"


def _same_content(stored: tuple, want: tuple, what: str) -> None:
    """Fail when a stored row's content is not ``want``; a wrong instant gets its own words."""
    if stored == want:
        return
    if stored[:6] == want[:6] and stored[7] == want[7]:
        raise CheckFailed(
            f"After {what}, the row's updated_at is {stored[6].isoformat()} but the event says "
            f"{want[6].isoformat()} (UTC). Store the vendor's instant: pass the ISO text with "
            "its offset (or an aware datetime) to a timestamptz column; never now(), never the "
            "text without its offset (the session's TimeZone would decide the instant).")
    diff = [f"{name}: {a!r} (expected {b!r})" for name, a, b in zip(fd.CONTENT, stored, want)
            if a != b]
    raise CheckFailed(f"After {what}, the stored row is not the event's: {'; '.join(diff[:3])}.",
                      f"stored {stored}, expected {want}")


def _judge_one(watch: psycopg.Connection, event: fd.Event, before: tuple | None, want: str,
               got: tuple[Any, str], what: str) -> int:
    """Judge one call made alone: its (id, action) against what really happened."""
    after = _row(watch, event["sku"])
    v = int(event["version"])
    if after is None:
        raise CheckFailed(f"After upsert_product on {what}, no committed row has the sku "
                          f"{event['sku']!r}. Commit before returning, and match the sku exactly.")
    pid, action = got
    if want == "stale":
        if after[1] != before[1]:
            raise CheckFailed(
                f"An event that is not newer than the stored row (version {v} over stored "
                f"version {before[1][-1]}, {what}) changed it: it now has version "
                f"{after[1][-1]} and price {after[1][4]}. Guard the update: ON CONFLICT (sku) "
                "DO UPDATE SET … WHERE EXCLUDED.version > products.version.")
        if action == "updated" and pid == after[0]:
            raise CheckFailed(
                f"{what[:1].upper() + what[1:]} (version {v}, stored version {before[1][-1]}) "
                "returned 'updated'; expected 'stale': an event that is not newer than the stored "
                "row must change nothing. Guard the update: ON CONFLICT (sku) DO UPDATE SET … "
                "WHERE EXCLUDED.version > products.version.")
        _not_another(watch, pid, after[0], event["sku"], what)
        if pid != after[0]:
            raise CheckFailed(
                f"{what[:1].upper() + what[1:]} returned {got!r}; expected ({after[0]}, 'stale'): "
                "the id of the row it did not change. With ON CONFLICT DO NOTHING (or a guarded "
                "DO UPDATE that updates nothing), RETURNING gives no row for the existing one, so "
                "the id is lost: fetch it by its exact sku.")
        if action != "stale":
            raise CheckFailed(f"{what[:1].upper() + what[1:]} returned {got!r}; expected "
                              f"({after[0]}, 'stale'): the row was already at version "
                              f"{before[1][-1]}.")
        return after[0]
    _same_content(after[1], fd.content(event), what)
    _not_another(watch, pid, after[0], event["sku"], what)
    if pid != after[0]:
        raise CheckFailed(f"{what[:1].upper() + what[1:]} returned the id {pid!r}; the row's id "
                          f"is {after[0]}. Return RETURNING id of the row it wrote.")
    if action != want:
        how = ("Tell them apart by what the statement did (RETURNING (xmax = 0) AS inserted), "
               "not by the version number, max(id) or a read before the write.")
        if want == "inserted":
            raise CheckFailed(f"upsert_product returned {action!r} for {what}, a sku that did "
                              f"not exist before the call (its first event has version {v}). "
                              + how)
        raise CheckFailed(f"upsert_product returned {action!r} for {what}: the sku existed "
                          f"(stored version {before[1][-1]}) and the event (version {v}) updated "
                          "it, so the action is 'updated'. " + how)
    return after[0]


def _not_another(watch: psycopg.Connection, pid: Any, right: int, sku: str, what: str) -> None:
    """Fail, in words, when the id returned is another product's (a sku matched loosely)."""
    if pid == right or not isinstance(pid, int):
        return
    other = watch.execute("SELECT sku FROM products WHERE id = %s", [pid]).fetchone()
    if other is not None:
        raise CheckFailed(
            f"{what[:1].upper() + what[1:]} returned the id {pid}, which is the product "
            f"{other[0]!r}, not {sku!r} (id {right}). Skus are case sensitive and compared "
            "exactly: look a row up with sku = …, never lower(sku), ILIKE or LIKE (its _ and % "
            "are wildcards).")


def _plant(conn: psycopg.Connection, sku: str, version: int, price: str = "77.77") -> int:
    """A product written by another source (not through upsert_product)."""
    return conn.execute(_INSERT, [sku, f"Other source {sku}", price,
                                  Jsonb({"source": "other"}), version,
                                  fd.vendor_time(sku, version)]).fetchone()[0]


def _alone(lab: Any, upsert_product: Callable, rng: Any, tag: str, existing: list[str]) -> int:
    """Single calls on a caller's connection, each judged against the table as it stood."""
    spellings = adv.case_variants(f"Chk_{tag}-Item", rand=rng)
    sku = spellings[2]  # mixed case, with a LIKE metacharacter
    calls = 0
    with psycopg.connect(lab.url, autocommit=True) as watch, Caller(lab) as caller:
        # traps: the same sku in other cases, and a sku its LIKE pattern matches; newer than
        # any event below, so a lookup that finds them returns a wrong id or 'stale'
        traps = {s: _plant(watch, s, 90) for s in (spellings[0], spellings[1],
                                                   sku.replace("_", "x", 1))}
        trap_rows = {s: _row(watch, s) for s in traps}

        def step(event: fd.Event, what: str) -> int:
            nonlocal calls
            before, want = _truth(watch, event)
            adapters = _adapters(caller.conn)
            got = _result(_call(upsert_product, caller.conn, event, who="upsert_product"), what)
            caller.verify(f"upsert_product on {what}")
            _same_adapters(adapters, caller.conn, f"upsert_product on {what}")
            calls += 1
            return _judge_one(watch, event, before, want, got, what)

        v0, d = rng.randint(2, 9), rng.randint(1, 3)
        first = _event(sku, v0, _money(rng, 5, 90))
        step(first, f"a new sku whose first event has version {v0}")
        step(dict(first), "a replay of the same event")
        step(_event(sku, v0 + d, _money(rng, 5, 90)), f"a newer event (version {v0 + d} over {v0})")
        older = rng.randint(1, v0 + d - 1)
        step(_event(sku, older, _money(rng, 5, 90), name="Check item (old)"),
             f"an older event (version {older} after {v0 + d})")
        # a new sku at version 1, with the other LIKE metacharacter
        step(_event(f"Chk%{tag}-One", 1, _money(rng, 5, 90)), "a new sku at version 1")
        # a row another source wrote at version 0: version 1 updates it, once
        other = f"Chk-{tag}-Other"
        _plant(watch, other, 0)
        step(_event(other, 1, _money(rng, 5, 90)),
             "a row another source wrote at version 0, and an event at version 1")
        step(_event(other, 1, _money(rng, 5, 90)), "the same version again (another source's "
             "replay)")
        # existing products of the dataset: one newer version, one equal (stale)
        for n, old in enumerate(existing):
            stored = _row(watch, old)
            v = stored[1][-1] + (rng.randint(1, 3) if n == 0 else 0)
            event = dict(zip(fd.CONTENT, stored[1]), version=v, price=_money(rng, 1, 400),
                         updated_at=fd.vendor_time(old, v),
                         attributes=json.loads(stored[1][5]))
            step(event, f"{'a newer' if n == 0 else 'an equal'} version of the existing product "
                        f"{old} (stored version {stored[1][-1]}, event version {v})")
        for s, row in trap_rows.items():
            if _row(watch, s) != row:
                raise CheckFailed(
                    f"upsert_product on the sku {sku!r} changed the product {s!r}, another sku. "
                    "Skus are case sensitive and compared exactly: match with sku = …, never "
                    "lower(sku), ILIKE or LIKE.")
    return calls


def _other_writer(conn: Any, prefix: str) -> None:
    """Another session's ordinary work on other products: two inserts, an update, a commit."""
    for i in range(2):
        _plant(conn, f"{prefix}-{i}", 1)
    conn.execute("UPDATE products SET version = version + 1, price = price + 1 WHERE sku = %s",
                 [f"{prefix}-0"])
    conn.commit()


def _blocked_writer(who: str, k: int) -> CheckFailed:
    return CheckFailed(
        f"While {who} was held after its statement {k}, another session that inserts and "
        "updates other products had to wait for it (pg_blocking_pids), although they share no "
        "row: your function locks the products table (LOCK TABLE, in a mode that blocks "
        "writers), so every order, stock update and price change queues behind it. Let the "
        "row locks of INSERT … ON CONFLICT serialise writers of the same sku, and nothing else.")


# How long a call beside a held one may wait for a lock before the check calls it serialised.
BESIDE_LOCK_TIMEOUT = "300ms"


def _waits(lab: Any, fn: Callable, *args: Any) -> bool:
    """Whether a call of the learner's ``fn`` on keys of its own, in a session of its own,
    waits for a lock (held by a call that is paused mid-transaction): it runs with
    lock_timeout, so a wait ends in 55P03 instead of a hang."""
    with psycopg.connect(lab.url) as side:
        side.execute("SELECT set_config('lock_timeout', %s, false)", [BESIDE_LOCK_TIMEOUT])
        side.commit()
        try:
            fn(side, *args)
        except psycopg.errors.LockNotAvailable:
            return True
        except psycopg.Error:
            return False  # judged where the same call runs alone
        finally:
            if side.info.transaction_status != pq.TransactionStatus.IDLE:
                side.rollback()
    return False


def _serialised(who: str, k: int, what: str) -> CheckFailed:
    return CheckFailed(
        f"While {who} was held after its statement {k}, a second call of {who} on other skus "
        f"(in another session) waited for a lock it held (lock_timeout {BESIDE_LOCK_TIMEOUT} "
        "ran out), although the two share no "
        f"row: your function serialises every call (an advisory lock on a constant, or a "
        f"table lock), so 8 feed workers run one at a time and one slow caller transaction "
        f"stalls {what} of every sku. Let the row locks of INSERT … ON CONFLICT serialise "
        "writers of the same sku, and nothing else.")


def _unrelated_activity(lab: Any, upsert_product: Callable, rng: Any, tag: str) -> int:
    """The returned action while another session writes other products: the call is held
    after each of its statements while an unrelated writer inserts and updates products of
    its own, and commits. What was returned must still be what happened."""
    settings = caller_settings()
    races = 0
    for kind in ("new", "newer", "stale"):
        base = rng.randint(1, 6)
        for k in range(1, MAX_PAUSE + 1):
            sku = f"Chk-{tag}-{kind}-{k}"
            with psycopg.connect(lab.url, autocommit=True) as watch:
                if kind != "new":
                    _plant(watch, sku, base)
                version = {"new": base, "newer": base + rng.randint(1, 3), "stale": base}[kind]
                event = _event(sku, version, _money(rng, 5, 90))
                before, want = _truth(watch, event)

            stage: dict[str, bool] = {}

            def other(conn: Any, k: int = k, kind: str = kind, stage: dict = stage) -> None:
                _other_writer(conn, f"Other-{tag}-{kind}-{k}")
                # another upsert, of another sku: it shares no row with the held call (after
                # the plain writer, so that a table lock is named as such)
                stage["own"] = _waits(lab, upsert_product, _event(
                    f"Chk-{tag}-{kind}-{k}-beside", 1, _money(rng, 5, 90)))

            with Watched(lab, upsert_product, lambda args: "a call of upsert_product") as watched:
                run = interleave(lab, lambda c: _result(watched(c, event), "upsert_product"),
                                 other, pause_after=k, settings=settings)
                where = (f"while another session inserted and updated other products (the call "
                         f"held after its statement {k})")
                if run.first_error is not None:
                    if isinstance(run.first_error, (NotAttempted, CheckFailed)):
                        raise run.first_error
                    raise CheckFailed(explain_error(run.first_error, "upsert_product") + " "
                                      + where)
                if run.second_error is not None:
                    raise CheckFailed(f"While upsert_product was held after its statement {k}, "
                                      "the check's own writer of other products failed: "
                                      f"{run.second_error}. Does your function lock the whole "
                                      "products table? It must only touch its own sku.")
                if run.second_blocked:
                    raise _blocked_writer("upsert_product", k)
                if stage.get("own"):
                    raise _serialised("upsert_product", k, "an upsert")
                watched.verify(where)
            races += 1
            with psycopg.connect(lab.url, autocommit=True) as watch:
                _judge_one(watch, event, before, want, run.first_result,
                           {"new": "a new sku", "newer": "a newer event",
                            "stale": "a replayed event"}[kind] + " " + where)
            if not run.paused:
                break
    return races


def _same_sku_races(lab: Any, upsert_product: Callable, rng: Any, tag: str) -> int:
    """Two calls on one sku, the first held after each of its statements."""
    settings = caller_settings()

    def setup(name: str) -> str:
        sku = f"CHK1-{tag}-{name}-{uuid.uuid4().hex[:8]}"
        if name.startswith("existing"):
            with psycopg.connect(lab.url, autocommit=True) as conn:
                _plant(conn, sku, 1)
        return sku

    def judge(name: str, sku: str, k: int, result: Any, fa: fd.Event, sa: fd.Event) -> None:
        with psycopg.connect(lab.url, autocommit=True) as watch:
            stored = _row(watch, sku)
        want = max((fa, sa), key=lambda e: e["version"])
        where = f"(race: {name}; the first call held after its statement {k})"
        if stored is None or stored[1] != fd.content(want):
            if stored is not None and stored[1][-1] == want["version"]:
                _same_content(stored[1], fd.content(want), f"two concurrent upserts {where}")
            raise CheckFailed(f"After two concurrent upserts of one sku, the row holds version "
                              f"{stored[1][-1] if stored else None}; expected version "
                              f"{want['version']} {where}. A stale event overwrote a newer one: "
                              "decide staleness in the UPDATE's WHERE, not in Python.")
        results = ((result.first_result, fa, "first"), (result.second_result, sa, "second"))
        for res, _, who in results:
            if res[0] != stored[0]:
                raise CheckFailed(f"The {who} concurrent call returned id {res[0]!r}; the row's id "
                                  f"is {stored[0]} {where}.")
        actions = [res[1] for res, _, _ in results]
        inserted = actions.count("inserted")
        if name.startswith("new") and inserted != 1:
            raise CheckFailed(
                f"Two concurrent upserts of a new sku returned {actions} {where}: exactly one of "
                "them inserted the row. Take the action from the statement that wrote "
                "(RETURNING (xmax = 0) AS inserted), not from a read made before it.")
        if name.startswith("existing") and inserted:
            raise CheckFailed(f"Two concurrent upserts of an existing sku returned {actions} "
                              f"{where}: neither inserted anything.")
        for res, event, who in results:
            higher = event is want and fa["version"] != sa["version"]
            if higher and res[1] == "stale":
                raise CheckFailed(f"The {who} call carried the newer version ({event['version']}) "
                                  f"and its values are stored, but it returned 'stale' {where}.")
            if fa["version"] == sa["version"] and res[1] == "updated":
                raise CheckFailed(f"Two calls with the same event returned {actions} {where}: "
                                  "one inserted, the other changed nothing ('stale').")

    def run(conn: Any, event: fd.Event) -> tuple:
        return _result(watched(conn, event), "upsert_product")

    lo = rng.randint(2, 6)
    hi = lo + rng.randint(1, 3)
    prices = {v: _money(rng, 5, 90) for v in (lo, hi)}  # one content per (sku, version)
    same = lambda v: (lambda sku: _event(sku, v, prices[v]))  # noqa: E731
    scenarios = [("new, same event twice", lambda n: setup("new-a"), same(lo), None),
                 ("new, newer second", lambda n: setup("new-b"), same(lo), same(hi)),
                 ("new, older second", lambda n: setup("new-c"), same(hi), same(lo)),
                 ("existing, newer second", lambda n: setup("existing-d"), same(lo), same(hi)),
                 ("existing, older second", lambda n: setup("existing-e"), same(hi), same(lo))]
    scenarios = [(n, s, f, f if g is None else g) for n, s, f, g in scenarios]
    with Watched(lab, upsert_product, lambda args: "a call of upsert_product") as watched:
        return _forced_races(lab, scenarios, run, judge, settings=settings, watched=watched)


def q1(lab: Any, upsert_product: Callable[[Any, fd.Event], tuple]) -> str:
    """upsert_product(conn, event) -> (id, action): guarded, exact ids and actions, race-free,
    nothing left behind."""
    require(upsert_product)
    rng = adv.rng()
    tag = _unique_tag()
    touched: list[str] = []  # products of the dataset the check sends events for
    with _products_untouched(lab, lambda: touched):
        with psycopg.connect(lab.url, autocommit=True) as watch:
            dataset = [r[0] for r in watch.execute(
                "SELECT sku FROM products WHERE sku ~ %s ORDER BY id", [fd.DATASET_SKU])]
        existing = adv.spread(dataset, 2, rand=rng)
        touched += existing
        calls = _alone(lab, upsert_product, rng, tag, existing)
        races = _unrelated_activity(lab, upsert_product, rng, tag)
        races += _same_sku_races(lab, upsert_product, rng, tag)

        # -- stress: 8 workers, same events, different orders ------------------------------
        with psycopg.connect(lab.url, autocommit=True) as conn:
            feeds = fd.make_feeds(conn, feeds=2, existing=16, new=6, seed=rng.randrange(1000, 10**6),
                                  sku_prefix=f"Q1{tag}", case_variants=1)
            touched += feeds.skus
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
            raise CheckFailed("Under 8 workers, upsert_product returned ids that are not the "
                              f"row's id, e.g. {wrong_ids[:3]}.")
        inserts: dict[str, int] = {}
        for e, (_, action) in stats:
            inserts[e["sku"]] = inserts.get(e["sku"], 0) + (action == "inserted")
        wrong = sorted(s for s in feeds.skus if inserts.get(s, 0) != (s not in original))
        if wrong:
            s = wrong[0]
            raise CheckFailed(
                f"Under 8 workers, upsert_product reported 'inserted' {inserts.get(s, 0)} time(s) "
                f"for the sku {s!r}, which {'existed' if s in original else 'was new'}: a new sku "
                "is inserted exactly once, whoever wins. Take the action from the statement that "
                "wrote (RETURNING (xmax = 0) AS inserted).", f"{len(wrong)} sku(s) wrong")

        # -- everything again, on a caller's connection: nothing changes --------------------
        with psycopg.connect(lab.url, autocommit=True) as watch, Caller(lab) as caller:
            before = table_checksum(watch, "products")
            again = []
            for e in events:
                again.append(_result(_call(upsert_product, caller.conn, e, who="upsert_product"),
                                     "a replay"))
                caller.verify("upsert_product replaying an event")
            after = table_checksum(watch, "products")
        if before != after or any(a != "stale" for _, a in again):
            raise CheckFailed("Applying the same events a second time changed products (or "
                              "reported something other than 'stale'); an upsert must be "
                              "idempotent.")
    return (f"guarded upsert, exact ids and actions: {calls} calls alone, {races} forced races "
            f"(also beside unrelated writers), 8 workers × {len(events)} events reach the "
            "sequential state; a replay changes nothing; nothing left behind")


def _stress_events(lab: Any, upsert_product: Callable, events: list[fd.Event]
                   ) -> list[tuple[fd.Event, tuple]]:
    """8 workers each apply every event once, in their own order; errors fail the check."""
    failures: list[str] = []
    results: list[tuple[fd.Event, tuple]] = []
    with Watched(lab, upsert_product, lambda args: "a call of upsert_product") as watched:

        def op(conn: psycopg.Connection, order: list[int]) -> None:
            for i in order:
                try:
                    results.append((events[i], _result(watched(conn, events[i]),
                                                       "upsert_product")))
                except NotAttempted:
                    raise
                except (psycopg.Error, CheckFailed) as exc:
                    failures.append(explain_error(exc, "upsert_product") if isinstance(
                        exc, psycopg.Error) else exc.message)
                    if not conn.closed:
                        conn.rollback()

        _eight_workers(lab, op, len(events), failures, "Under 8 concurrent workers", "call(s)")
        watched.verify("under 8 concurrent workers")
    return results


def _eight_workers(lab: Any, op: Callable[[psycopg.Connection, list[int]], None], items: int,
                   failures: list[str], when: str, what: str) -> None:
    """8 stress workers, each running ``op`` once on its own shuffled order of ``items``
    (orders drawn from this run's seed), on sessions with a caller's settings; a worker that
    died, or a call that ``op`` recorded in ``failures``, fails the check."""
    res = run_stress(lab, op, workers=8, operations=1, seed=adv.rng().randrange(10**6),
                     sample_every=None, settings=caller_settings(),
                     args=lambda rng: (rng.sample(range(items), items),))
    if res.outcomes.get("ok", 0) != 8:
        raise CheckFailed("A stress worker failed: " + "; ".join(
            f"{r.status} {r.error}" for r in res.errors())[:400])
    if failures:
        raise CheckFailed(f"{when}, {len(failures)} {what} failed; the first: {failures[0]}")


def _case_twins(got: dict[str, tuple], want: dict[str, tuple], missing: Sequence[str],
                diff: Sequence[str]) -> list[tuple[str, str]]:
    """(sku, its case twin) where case explains the difference: ``sku`` is missing while a
    sku equal to it when case is ignored is stored, or ``sku`` holds that twin's values."""
    by_lower: dict[str, list[str]] = {}
    for s in want:
        by_lower.setdefault(s.lower(), []).append(s)
    out = []
    for s in list(missing) + list(diff):
        for t in by_lower.get(s.lower(), []):
            if t == s:
                continue
            if (s in missing and t in got) or (s in diff and got[s][1:] == want[t][1:]):
                out.append((s, t))
    return out


def _compare_state(got: dict[str, tuple], want: dict[str, tuple], what: str,
                   batches: Sequence[Sequence[fd.Event]] | None = None) -> None:
    """Fail, saying why, when a state is not the expected one; ``batches`` (the feeds
    applied) let it tell versions compared as text from other causes."""
    if got == want:
        return
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    diff = sorted(s for s in set(want) & set(got) if got[s] != want[s])
    twins = _case_twins(got, want, missing, diff)
    if twins:
        s, t = twins[0]
        raise CheckFailed(
            f"After {what}, the product {s!r} is {'missing' if s in missing else 'wrong'}, and "
            f"{t!r} is there: skus are case sensitive, and these are two different products. "
            "Deduplicate and match on sku itself (DISTINCT ON (sku), ON CONFLICT (sku)), never "
            "on lower(sku), upper(sku) or ILIKE.",
            f"{len(missing)} missing, {len(diff)} differ")
    if missing:
        raise CheckFailed(f"After {what}, {len(missing)} sku(s) are missing, e.g. {missing[:3]}.")
    if extra:
        raise CheckFailed(f"After {what}, products holds sku(s) no valid event created, e.g. "
                          f"{extra[:3]} (malformed rows must be rejected, not stored).")
    older = [s for s in diff if got[s][-1] < want[s][-1]]
    # the version a text comparison picks in a batch ('9' > '10'), where it is not the newest
    text_picks: dict[str, set[int]] = {}
    for batch in batches or ():
        versions: dict[str, set[int]] = {}
        for e in batch:
            if fd.problem(e) is None:
                versions.setdefault(e["sku"], set()).add(int(e["version"]))
        for sku, vs in versions.items():
            if max(vs, key=str) != max(vs):
                text_picks.setdefault(sku, set()).add(max(vs, key=str))
    as_text = [s for s in older if got[s][-1] in text_picks.get(s, ())]
    if as_text:
        s = as_text[0]
        raise CheckFailed(
            f"After {what}, {len(as_text)} sku(s) hold an older version than the newest valid "
            f"event, e.g. {s}: version {got[s][-1]}, expected {want[s][-1]}. Versions were "
            f"compared as text ('{got[s][-1]}' sorts after '{want[s][-1]}'): stage and compare "
            "version as an integer (a version int column, or version::int before ORDER BY and "
            "the guard).", f"{len(older)} sku(s) older")
    if older:
        s = older[0]
        raise CheckFailed(
            f"After {what}, {len(older)} sku(s) hold an older version than the newest valid "
            f"event, e.g. {s}: version {got[s][-1]}, expected {want[s][-1]}. A stale event "
            "overwrote a newer one (guard: WHERE EXCLUDED.version > products.version).")
    s = diff[0]
    _same_content(got[s], want[s], f"{what} (sku {s})")
    raise CheckFailed(f"After {what}, {len(diff)} sku(s) differ from the expected state, e.g. "
                      f"{s}.", f"got {got[s]}, expected {want[s]}")


def _forced_races(lab: Any, scenarios: list[tuple[str, Callable[[str], Any], Any, Any]],
                  run: Callable[[Any, Any], Any], judge: Callable[..., None], *,
                  settings: dict[str, str], watched: _Watched) -> int:
    """Run each scenario with the first call held after statement 1, 2, … (until it no
    longer reaches the pause point), on sessions with a caller's settings. ``setup(name)``
    prepares a fresh key; ``watched`` (the learner's function, wrapped) must leave every
    connection as it found it."""
    races = 0
    for name, setup, first_arg, second_arg in scenarios:
        for k in range(1, MAX_PAUSE + 1):
            key = setup(name)
            fa, sa = first_arg(key), second_arg(key)
            result = interleave(lab, lambda c: run(c, fa), lambda c: run(c, sa), pause_after=k,
                                settings=settings)
            for err in result.errors:
                if isinstance(err, (NotAttempted, CheckFailed)):
                    raise err
            where = (f"(race: {name}; the first call was held after its statement {k} while "
                     "the second ran)")
            for err, who in ((result.first_error, "the first call"),
                             (result.second_error, "the second call")):
                if err is not None:
                    raise CheckFailed(explain_error(err, who) + " " + where)
            watched.verify(where)
            races += 1
            judge(name, key, k, result, fa, sa)
            if not result.paused:
                break
    return races


# --------------------------------------------------------------------------
# q2: idempotency keys


def _price(conn: psycopg.Connection, sku: str) -> tuple[Decimal, int]:
    return conn.execute("SELECT price, version FROM products WHERE sku = %s", [sku]).fetchone()


def _version_moved(watch: psycopg.Connection, sku: str, before: int, by: int, what: str) -> None:
    """Fail unless the product's version is ``before + by`` (the change increments it)."""
    _, now = _price(watch, sku)
    if now != before + by:
        raise CheckFailed(
            f"After {what}, the product's version went from {before} to {now}, not {before + by}: "
            "the task says the change increments version (version = version + 1, once per applied "
            "key, never on a replay). Consumers and the feeds' staleness guard rely on it.")


def _field(response: Any, name: str) -> Any:
    if not isinstance(response, dict) or name not in response:
        raise CheckFailed(f"handle_request returned {response!r}; the response is the product "
                          "as your change left it, a dict with 'sku', 'price' and 'version'.")
    return response[name]


def _describes(response: Any, row: tuple[Decimal, int], what: str) -> None:
    """The response names the price and version that the request's own UPDATE wrote."""
    price, version = row
    try:
        got = (Decimal(str(_field(response, "price"))), int(_field(response, "version")))
    except (ArithmeticError, ValueError, TypeError):
        got = None
    if got != (Decimal(price), int(version)):
        raise CheckFailed(
            f"In {what}, the response {response!r} does not describe the row the request "
            f"committed (price {price}, version {version}): a response built from a price or "
            "version read before the UPDATE (or after it, in another transaction) reports a "
            "state that never was. Build it from UPDATE … RETURNING, in the same transaction.",
            f"row after the request: price {price}, version {version}")


def _norm(response: Any) -> str:
    return json.dumps(response, sort_keys=True, default=str)


# How long clients retry a request (the task states it): a key must be honoured that long.
RETRY_WINDOW_HOURS = 24


def q2(lab: Any, handle_request: Callable[[Any, str, dict], Any]) -> str:
    """handle_request(conn, key, request): same key -> same response, one effect, even racing."""
    require(handle_request)
    lab.execute(IDEMPOTENCY_DDL)
    rng = adv.rng()
    tag = _unique_tag()
    with psycopg.connect(lab.url, autocommit=True) as watch:
        sku = adv.spread([r[0] for r in watch.execute(
            "SELECT sku FROM products WHERE sku ~ %s ORDER BY id", [fd.DATASET_SKU])], 1,
            rand=rng)[0]
    change = Decimal(_money(rng, 1, 9))
    request = {"sku": sku, "price_change": str(change)}
    # keys that differ only in case, or that a LIKE pattern of the first would match:
    # different keys, each must apply its change
    spellings = adv.case_variants(f"Key_{tag}-Req", rand=rng)
    key, twin, like = spellings[2], spellings[0], spellings[2].replace("_", "x", 1)
    with _products_untouched(lab, lambda: [sku]):
        with psycopg.connect(lab.url, autocommit=True) as watch, Caller(lab) as caller:

            def call(k: str, what: str) -> Any:
                adapters = _adapters(caller.conn)
                response = _call(handle_request, caller.conn, k, dict(request),
                                 who="handle_request")
                caller.verify(f"handle_request {what}")
                _same_adapters(adapters, caller.conn, f"handle_request {what}")
                return response

            price0, version0 = _price(watch, sku)
            r1 = call(key, "with a new key")
            if r1 is None:
                raise CheckFailed("handle_request returned None; it should return the response.")
            if _price(watch, sku)[0] != price0 + change:
                raise CheckFailed(f"A request with a new key (price_change {change}) moved the "
                                  f"price from {price0} to {_price(watch, sku)[0]}; it must add "
                                  "the change once, and commit.")
            _version_moved(watch, sku, version0, 1, "a request with a new key")
            _describes(r1, _price(watch, sku), "the response to a request with a new key")
            r2 = call(key, "replaying a key")
            price2, _ = _price(watch, sku)
            if price2 != price0 + change:
                raise CheckFailed(f"Two calls with the same idempotency key moved the price from "
                                  f"{price0} to {price2}; the change (+{change}) must apply once.")
            _version_moved(watch, sku, version0, 1, "a request and its replay (same key)")
            if _norm(r1) != _norm(r2):
                raise CheckFailed("The replay's response differs from the first response; store "
                                  "the response with the key and return it on a replay.",
                                  f"first {r1!r}, replay {r2!r}")
            for other, how in ((twin, "the same key in another case"),
                               (like, "a key the first key's LIKE pattern matches")):
                before, version_before = _price(watch, sku)
                call(other, f"with {how}")
                if _price(watch, sku)[0] != before + change:
                    raise CheckFailed(
                        f"A request with a new key ({other!r}, {how}: {key!r} was used before) "
                        "did not apply its change. Keys are compared exactly (case sensitive, "
                        "= not LIKE/ILIKE): only a replayed key must be a no-op.")
                _version_moved(watch, sku, version_before, 1, f"a request with {how}")
            # the first key again, now that other keys moved the price: the stored answer
            before = _price(watch, sku)
            r3 = call(key, "replaying the first key after other keys changed the price")
            if _price(watch, sku) != before:
                raise CheckFailed("Replaying the first key after requests with other keys had "
                                  "changed the price applied its change again; a replay "
                                  "changes nothing.")
            if _norm(r3) != _norm(r1):
                raise CheckFailed(
                    "A replay of the first key, sent after requests with other keys had changed "
                    "the price, got a different response than the first call: your replay "
                    "answers with the product as it is now. Store the response with the key, "
                    "in the transaction that applied the change, and return the stored one.",
                    f"first {r1!r}, replay {r3!r}")
            # a client retrying late, within the retry window: the key was stored hours ago
            hours = rng.randint(2, RETRY_WINDOW_HOURS - 1)
            watch.execute("UPDATE idempotency_keys SET created_at = now() - make_interval("
                          "hours => %s, secs => %s) WHERE key = %s",
                          [hours, rng.randint(1, 3599), key])
            before = _price(watch, sku)
            r4 = call(key, f"replaying the first key {hours} hours after it was stored")
            if _price(watch, sku) != before or _norm(r4) != _norm(r1):
                raise CheckFailed(
                    f"A replay of a key stored {hours} hours ago (clients retry for up to "
                    f"{RETRY_WINDOW_HOURS} hours) "
                    + ("applied the change a second time" if _price(watch, sku) != before
                       else "got another response than the first call")
                    + f": your function forgot the key before the retry window ended. Keep "
                    f"every key at least {RETRY_WINDOW_HOURS} hours, and expire older ones in "
                    "a separate batched job (DELETE … WHERE created_at < now() - interval "
                    "'…'), never inside a request: there it also row-locks other clients' keys.",
                    f"first {r1!r}, replay {r4!r}")

        def setup(name: str) -> str:
            return f"chk2-{tag}-{name}-{uuid.uuid4().hex[:8]}"

        def run(conn: Any, arg: tuple[str, dict]) -> Any:
            return watched(conn, arg[0], dict(arg[1]))

        # a second request on the same sku, with its own key and another change
        change_b = Decimal(_money(rng, 1, 9))
        if change_b == change:
            change_b += Decimal("0.01")
        request_b = dict(request, price_change=str(change_b))

        def judge(name: str, k: str, n: int, result: Any, *_: Any) -> None:
            with psycopg.connect(lab.url, autocommit=True) as watch:
                price, version = _price(watch, sku)
            moved, bumped = price - state["price"], version - state["version"]
            base_price, base_version = state["price"], state["version"]
            state["price"], state["version"] = price, version
            if name == "two keys":
                where = (f"(the first request held after its statement {n} while a request with "
                         "another key on the same sku ran)")
                if moved != change + change_b:
                    raise CheckFailed(
                        f"Two requests with different keys on one sku (price_change {change} and "
                        f"{change_b}) moved the price by {moved}, not {change + change_b} {where}: "
                        "one change was lost. A price computed in Python from a price read "
                        "earlier overwrites a change committed in between (a lost update); let "
                        "the database do the arithmetic: UPDATE products SET price = price + %s.")
                if bumped != 2:
                    raise CheckFailed(f"Two requests with different keys on one sku moved its "
                                      f"version by {bumped}, not 2 {where}: each applied change "
                                      "increments version by one (version = version + 1).")
                responses = [result.first_result, result.second_result]
                versions = [_field(r, "version") for r in responses]
                if versions[0] == versions[1]:
                    raise CheckFailed(
                        f"Two requests with different keys on one sku both answered version "
                        f"{versions[0]} {where}, but each applied its own change: the response "
                        "must describe the row your UPDATE wrote (UPDATE … RETURNING), not a "
                        "row read before it.", f"{responses[0]!r} vs {responses[1]!r}")
                # the request that updated first left base + its change at base_version + 1,
                # the other one the final row: each response must say so
                for response, own in zip(responses, (change, change_b)):
                    first = str(_field(response, "version")) == str(base_version + 1)
                    _describes(response, (base_price + own, base_version + 1) if first
                               else (price, version),
                               f"the {'earlier' if first else 'later'} of two requests {where}")
                return
            where = f"(the first call held after its statement {n} while the replay ran)"
            if moved != change:
                raise CheckFailed(f"Two racing requests with one idempotency key changed the "
                                  f"price by {moved}, not {change} {where}: both "
                                  "did the work. Insert the key first (the second request then "
                                  "waits on it) instead of checking for it.")
            if bumped != 1:
                raise CheckFailed(f"Two racing requests with one idempotency key moved the "
                                  f"version by {bumped}, not 1 {where}: the change is applied "
                                  "once, so version goes up once.")
            if _norm(result.first_result) != _norm(result.second_result):
                raise CheckFailed(f"Two racing requests with one key got different responses "
                                  f"{where}.", f"{result.first_result!r} vs "
                                  f"{result.second_result!r}")

        with psycopg.connect(lab.url, autocommit=True) as watch:
            price, version = _price(watch, sku)
            state = {"price": price, "version": version}
        scenarios = [("replay race", setup, lambda k: (k, request), lambda k: (k, request)),
                     ("two keys", setup, lambda k: (k + "-a", request),
                      lambda k: (k + "-b", request_b))]
        with Watched(lab, handle_request, lambda args: "a call of handle_request") as watched:
            races = _forced_races(lab, scenarios, run, judge, settings=caller_settings(),
                                  watched=watched)
        _reused_key(lab, handle_request, key, sku, request, rng)
    return (f"one effect (price + change, version + 1) and one response per key, also in {races} "
            "forced races (the same key, and two keys on one sku); keys compared exactly; a key "
            "reused for another request is refused; nothing left behind")


def _reused_key(lab: Any, handle_request: Callable[..., Any], key: str, sku: str,
                request: dict, rng: Any) -> None:
    """The key of an applied request, sent again with another request: refused, no effect."""
    other = dict(request, price_change=_money(rng, 1, 9))
    if other["price_change"] == request["price_change"]:
        other["price_change"] = str(Decimal(other["price_change"]) + Decimal("0.01"))
    with psycopg.connect(lab.url, autocommit=True) as watch, Caller(lab) as caller:
        price0, _ = _price(watch, sku)
        try:
            response = handle_request(caller.conn, key, other)
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
        problems = caller.problems()
        caller.clean()
        if _price(watch, sku)[0] != price0:
            raise CheckFailed("handle_request refused the reused key but changed the price "
                              "anyway; refuse before doing the work.")
        if any("transaction" in p for p in problems):
            raise CheckFailed("handle_request raised for the reused key but left its transaction "
                              "open; roll it back before raising.", "; ".join(problems))
        if problems:
            raise CheckFailed("After handle_request refused the reused key, the connection was "
                              "not left as it was found: " + "; ".join(problems) + ".")


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
        reason = None
        if isinstance(item, dict):
            reason = item.get("reason", item.get("problem"))
            item = item.get("position", item.get("index"))
        elif isinstance(item, (tuple, list)):
            item, reason = item[0], (item[1] if len(item) > 1 else None)
        if not (isinstance(reason, str) and reason.strip()):
            raise CheckFailed(
                f"load_feed rejected the event at position {item!r} with the reason "
                f"{reason!r}: each rejected row needs its reason in words (feeds.problem(event) "
                "gives it: 'bad price', 'missing sku', ...), so the vendor knows what to fix. "
                "Report (position, reason) for every malformed row.")
        positions.append(item)
    return applied, stale, sorted(positions)


STATEMENTS_PER_BATCH = 40  # a bulk load is a handful of statements, whatever the batch size


def q3(lab: Any, load_feed: Callable[[Any, list], Any]) -> str:
    """load_feed(conn, events): bulk, deduped, guarded, reports every malformed row;
    8 concurrent workers in different orders reach the sequential state; twice = once."""
    require(load_feed)
    rng = adv.rng()
    tag = _unique_tag()
    with psycopg.connect(lab.url, autocommit=True) as admin:
        feeds = fd.make_feeds(admin, feeds=4, existing=60, new=20, seed=rng.randrange(1000, 10**6),
                              sku_prefix=f"Q3{tag}", case_variants=2, decade_versions=1)
        skus = feeds.skus
        start = fd.read_state(admin, skus)
        admin.execute(_VIEW_DDL)
        admin.execute("DROP TABLE IF EXISTS upserts_check_backup")
        admin.execute("CREATE TABLE upserts_check_backup AS SELECT * FROM products "
                      "WHERE sku = ANY(%s)", [skus])
    try:
        with _products_untouched(lab, lambda: skus):
            concurrent_ok = _load_feeds(lab, load_feed, feeds, start)
            probes = _writers_beside_a_load(lab, load_feed, rng, tag)
            probes += _new_sku_races(lab, load_feed, rng, tag)
            whole = _all_or_nothing(lab, load_feed, rng, tag)
            _one_feed_one_dedupe(lab, load_feed, rng, tag)
    finally:
        with psycopg.connect(lab.url, autocommit=True) as admin:
            admin.execute("DROP TABLE IF EXISTS upserts_check_backup")
    events = sum(len(f) for f in feeds.feeds)
    return (f"{events} events in 4 feeds: right counts and rejections, case-sensitive skus, "
            "versions compared as numbers (9 < 10, 99 < 100), vendor instants kept, at most "
            f"{STATEMENTS_PER_BATCH} statements a batch; {concurrent_ok}; a second load changes "
            f"nothing; writers of other products and other loads never waited for a load, two "
            f"loads of one new sku keep the newer ({probes} pause points); a feed of {whole} "
            "events failing at its last row left nothing; nothing left behind")


def _new_sku_races(lab: Any, load_feed: Callable, rng: Any, tag: str) -> int:
    """Two loads carrying the same NEW sku at different versions, the first held after each
    of its statements while the second runs: the newer version must be stored."""
    lo = rng.randint(2, 6)
    hi = lo + rng.randint(1, 3)
    prices = {v: _money(rng, 5, 90) for v in (lo, hi)}
    one = lambda v: (lambda sku: [_event(sku, v, prices[v])])  # noqa: E731

    def setup(name: str) -> str:
        return f"Q3{tag}-Race-{name.split()[0]}-{uuid.uuid4().hex[:6]}"

    def run(conn: Any, batch: list) -> Any:
        return watched(conn, [dict(e) for e in batch])

    def judge(name: str, sku: str, k: int, result: Any, fa: list, sa: list) -> None:
        with psycopg.connect(lab.url, autocommit=True) as watch:
            stored = _row(watch, sku)
        want = max(fa + sa, key=lambda e: e["version"])
        if stored is None or stored[1] != fd.content(want):
            raise CheckFailed(
                f"Two loads carried the same new sku {sku!r}, at versions {fa[0]['version']} "
                f"(the first load, held after its statement {k}) and {sa[0]['version']} (a "
                "second load that inserted it meanwhile); the row holds version "
                f"{stored[1][-1] if stored else None}, expected {want['version']}: the newer "
                "version was lost. An UPDATE of the existing rows followed by an INSERT … ON "
                "CONFLICT DO NOTHING of the new ones loses every row another load inserts in "
                "between (the UPDATE saw no row, the INSERT does nothing). Apply the batch "
                "with one INSERT … SELECT … ON CONFLICT (sku) DO UPDATE … WHERE "
                "EXCLUDED.version > products.version.")

    scenarios = [("newer load held", setup, one(hi), one(lo)),
                 ("older load held", setup, one(lo), one(hi))]
    with Watched(lab, load_feed, lambda args: "a call of load_feed") as watched:
        return _forced_races(lab, scenarios, run, judge, settings=caller_settings(),
                             watched=watched)


# A feed larger than any chunk an answer might commit on its own, failing at its last row.
BIG_FEED = (1_201, 1_500)


def _one_feed_one_dedupe(lab: Any, load_feed: Callable, rng: Any, tag: str) -> None:
    """A feed of 1,200+ new skus whose first sku comes again, newer, as its last event: one
    row per sku across the whole feed (applied = the skus, stale = 1), the newer version
    stored, whatever chunk size a load cuts a feed into (1,000 rows fit every tiny feed)."""
    n = rng.randint(*BIG_FEED)
    feed = [_event(f"Q3{tag}-Wide-{i:05d}", rng.randint(1, 4), _money(rng, 5, 90))
            for i in range(n)]
    first = feed[0]
    feed.append(_event(first["sku"], first["version"] + 1, _money(rng, 5, 90)))
    skus = [e["sku"] for e in feed[:n]]
    try:
        with Caller(lab) as caller:
            report = _report(_call(load_feed, caller.conn, [dict(e) for e in feed],
                                   who="load_feed"))
            caller.verify(f"load_feed (a feed of {n + 1:,} events)")
        with psycopg.connect(lab.url, autocommit=True) as watch:
            stored = watch.execute("SELECT version FROM products WHERE sku = %s",
                                   [first["sku"]]).fetchone()
            rows = watch.execute("SELECT count(*) FROM products WHERE sku = ANY(%s)",
                                 [skus]).fetchone()[0]
    finally:
        with psycopg.connect(lab.url, autocommit=True) as admin:
            admin.execute("DELETE FROM products WHERE sku = ANY(%s)", [skus])
    if rows != n or not stored or stored[0] != first["version"] + 1 or report[:2] != (n, 1):
        raise CheckFailed(
            f"A feed of {n + 1:,} events ({n:,} new skus, the first of them, {first['sku']!r}, "
            f"again as the last event with version {first['version'] + 1}) was reported "
            f"applied={report[0]}, stale={report[1]} (expected applied={n}, stale=1), "
            f"left {rows:,} of the {n:,} products, and the first sku at version "
            f"{stored[0] if stored else None}. A load that cuts the feed into chunks and "
            "deduplicates each on its own writes that sku twice and counts it applied twice, "
            "and sends more statements the longer the feed: the tiny feeds fit one chunk, "
            "production's do not. Stage the whole feed (COPY into a temporary table), keep one "
            "row per sku over all of it (DISTINCT ON (sku) … ORDER BY sku, version DESC), then "
            "one INSERT … SELECT … ON CONFLICT.")
_REFUSE_DDL = """
CREATE OR REPLACE FUNCTION upserts_check_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.sku = TG_ARGV[0] THEN
        RAISE EXCEPTION 'new row for relation "products" violates check constraint "sku_allowed"'
            USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS upserts_check_refuse ON products;
CREATE TRIGGER upserts_check_refuse BEFORE INSERT OR UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION upserts_check_refuse({sku});
"""
_REFUSE_DROP = ("DROP TRIGGER IF EXISTS upserts_check_refuse ON products; "
                "DROP FUNCTION IF EXISTS upserts_check_refuse()")


def _all_or_nothing(lab: Any, load_feed: Callable, rng: Any, tag: str) -> int:
    """A feed of 1,200+ valid events whose last row (last in the feed and in sku order) the
    database refuses: no row of the feed may stay committed."""
    n = rng.randint(*BIG_FEED)
    feed = [_event(f"Q3{tag}-Big-{i:05d}", rng.randint(1, 4), _money(rng, 5, 90))
            for i in range(n)]
    poison = f"Q3{tag}-Big-zz"
    feed.append(_event(poison, 1, _money(rng, 5, 90)))
    skus = [e["sku"] for e in feed]
    from psycopg import sql as q
    with psycopg.connect(lab.url, autocommit=True) as admin:
        admin.execute(q.SQL(_REFUSE_DDL).format(sku=q.Literal(poison)))
        try:
            with Caller(lab) as caller:
                raised = None
                try:
                    load_feed(caller.conn, [dict(e) for e in feed])
                except NotAttempted:
                    raise
                except Exception as exc:  # the feed must fail: that is the point
                    raised = exc
                caller.clean()
            kept = admin.execute("SELECT count(*) FROM products WHERE sku = ANY(%s)",
                                 [skus]).fetchone()[0]
        finally:
            admin.execute(_REFUSE_DROP)
            admin.execute("DELETE FROM products WHERE sku = ANY(%s)", [skus])
    if kept:
        raise CheckFailed(
            f"A feed of {n + 1:,} events ({n:,} valid ones, then one the database refuses: "
            f"a constraint violation at row {n + 1:,}) left {kept:,} of its rows committed"
            + (f", though load_feed raised {type(raised).__name__}" if raised else "")
            + ": your load commits a feed in parts (one transaction per chunk). A retry then "
            "counts the committed part as stale, and the caller cannot tell what was applied. "
            "A feed is one transaction: all or nothing; commit once, at the end.")
    return n + 1


def _writers_beside_a_load(lab: Any, load_feed: Callable, rng: Any, tag: str) -> int:
    """A small load held after each of its statements while another session inserts and
    updates other products: that session must not wait (a bulk load locks its own rows,
    not the table)."""
    settings = caller_settings()
    held = 0
    for k in range(1, MAX_PAUSE + 1):
        batch = [_event(f"Q3{tag}-Beside-{k}-{i}", rng.randint(1, 4), _money(rng, 5, 90))
                 for i in range(3)]
        with Watched(lab, load_feed, lambda args: "a call of load_feed") as watched:
            stage: dict[str, bool] = {}

            def beside(c: Any, k: int = k, stage: dict = stage) -> None:
                _other_writer(c, f"Other-{tag}-load-{k}")
                # maintenance on the table (autovacuum, ANALYZE, CREATE INDEX CONCURRENTLY)
                # takes SHARE UPDATE EXCLUSIVE: a load that holds that mode, or a stronger
                # one, stops it (and every other load) for as long as it runs
                stage["analyze"] = True
                c.execute("ANALYZE products")
                c.commit()
                # another load, of other skus: it shares no row with the held load (last, so
                # that a table lock is named as such)
                stage["own"] = _waits(lab, load_feed, [_event(
                    f"Q3{tag}-Beside-{k}-other", rng.randint(1, 4), _money(rng, 5, 90))])

            run = interleave(lab, lambda c: watched(c, [dict(e) for e in batch]), beside,
                             pause_after=k, settings=settings)
            where = (f"while another session inserted and updated other products (the load "
                     f"held after its statement {k})")
            if run.first_error is not None:
                if isinstance(run.first_error, (NotAttempted, CheckFailed)):
                    raise run.first_error
                raise CheckFailed(explain_error(run.first_error, "load_feed") + " " + where)
            if run.second_error is not None:
                raise CheckFailed(f"While load_feed was held after its statement {k}, the "
                                  "check's own writer of other products failed: "
                                  f"{run.second_error}. A load must only touch its own skus.")
            if run.second_blocked and stage.get("analyze"):
                raise CheckFailed(
                    f"While load_feed was held after its statement {k}, `ANALYZE products` in "
                    "another session had to wait for it (pg_blocking_pids): your load locks "
                    "the products table (LOCK TABLE … IN SHARE UPDATE EXCLUSIVE MODE or "
                    "stronger), so autovacuum, ANALYZE, CREATE INDEX CONCURRENTLY and every "
                    "other load of other skus queue behind each load. Take no table lock: the "
                    "row locks of INSERT … ON CONFLICT serialise writers of the same sku.")
            if stage.get("own"):
                raise _serialised("load_feed", k, "the load")
            if run.second_blocked:
                raise _blocked_writer("load_feed", k)
            watched.verify(where)
        held += 1
        with psycopg.connect(lab.url, autocommit=True) as watch:
            _compare_state(fd.read_state(watch, [e["sku"] for e in batch]),
                           fd.expected_state({}, batch), f"a load {where}")
        if not run.paused:
            break
    return held


def _load_feeds(lab: Any, load_feed: Callable, feeds: fd.Feeds, start: dict) -> str:
    """Sequentially on a caller's connection, then 8 workers, then everything again."""
    skus = feeds.skus
    # 1. sequentially, feed by feed: rejections, state, counts, statement count
    state = dict(start)
    with Caller(lab) as caller:
        conn = HookedConnection(caller.conn)
        for n, feed in enumerate(feeds.feeds):
            before = conn.statements
            adapters = _adapters(caller.conn)
            report = _report(_call(load_feed, conn, [dict(e) for e in feed],
                                   who="load_feed"))
            caller.verify(f"load_feed (feed {n})")
            _same_adapters(adapters, caller.conn, f"load_feed (feed {n})")
            want = fd.expected_report(state, feed)
            if report[2] != want["rejected"]:
                lost = sorted(set(want["rejected"]) - set(report[2]))
                raise CheckFailed(
                    f"Feed {n} has malformed rows at positions {want['rejected']}; your report "
                    f"rejects {report[2]}. Report every malformed row (position and reason); "
                    "never drop one silently." + (f" Missing: {lost}." if lost else ""))
            state = fd.expected_state(state, feed)
            with psycopg.connect(lab.url, autocommit=True) as watch:
                _compare_state(fd.read_state(watch, skus), state, f"loading feeds 0..{n}",
                               feeds.feeds[:n + 1])
            if report[:2] != (want["applied"], want["stale"]):
                raise CheckFailed(
                    f"Feed {n}: your report says applied={report[0]}, stale={report[1]}; "
                    f"expected applied={want['applied']}, stale={want['stale']} (applied: rows "
                    "inserted or updated; stale: valid events that changed nothing).")
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
    with Watched(lab, load_feed, lambda args: "a call of load_feed") as watched:

        def op(conn: psycopg.Connection, order: list[int]) -> None:
            for i in order:
                try:
                    watched(conn, [dict(e) for e in feeds.feeds[i]])
                except psycopg.Error as exc:
                    failures.append(explain_error(exc, "load_feed"))
                    conn.rollback()

        _eight_workers(lab, op, len(feeds.feeds), failures,
                       "With 8 workers loading the same feeds in different orders", "load(s)")
        watched.verify("with 8 workers loading the same feeds in different orders")
    with psycopg.connect(lab.url, autocommit=True) as admin:
        concurrent = table_checksum(admin, CONTENT_VIEW)
        if concurrent != sequential:
            _compare_state(fd.read_state(admin, skus), state,
                           "8 workers loading the feeds in different orders", feeds.feeds)
            raise CheckFailed("After 8 concurrent workers, table_checksum differs from the "
                              "sequential run's.")
    # 3. everything again, on a caller's connection: nothing changes
    agains = []
    with Caller(lab) as caller:
        for n, f in enumerate(feeds.feeds):
            agains.append(_report(_call(load_feed, caller.conn, [dict(e) for e in f],
                                        who="load_feed")))
            caller.verify(f"load_feed (feed {n}, loaded again)")
    with psycopg.connect(lab.url, autocommit=True) as admin:
        again = table_checksum(admin, CONTENT_VIEW)
    if again != sequential or any(r[0] for r in agains):
        raise CheckFailed("Loading the same feeds a second time changed products (or reported "
                          f"applied rows: {[r[0] for r in agains]}); a load must be idempotent.")
    return "8 workers in different orders reach the sequential checksum"


HINTS = {
    "q1": [
        "One statement does it: INSERT … ON CONFLICT (sku) DO UPDATE SET … WHERE "
        "EXCLUDED.version > products.version RETURNING id, (xmax = 0) AS inserted.",
        "When the WHERE rejects the update (a stale event), RETURNING gives no row. Then "
        "SELECT the id of the existing row: it is committed by now, because ON CONFLICT waited "
        "for any concurrent inserter.",
        "Commit before returning; return (id, 'inserted' | 'updated' | 'stale'). The action is "
        "what the statement did: a new sku's first event need not be version 1.",
        "Pass updated_at as the ISO text it is (with its offset) or an aware datetime; compare "
        "skus with =, never lower(), ILIKE or LIKE.",
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
        "Keep one row per sku: DISTINCT ON (sku) … ORDER BY sku, version DESC (sku itself: "
        "skus that differ only in case are different products).",
        "INSERT … SELECT … ORDER BY sku ON CONFLICT (sku) DO UPDATE … WHERE EXCLUDED.version > "
        "products.version; its row count is 'applied'. Sorting by sku gives every worker the "
        "same lock order; retry the whole batch on 40P01/40001 anyway.",
    ],
}
