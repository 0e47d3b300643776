"""Vendor product feeds for the upserts challenge: messy, overlapping, deterministic.

Real vendor feeds are not clean streams of "the new state": the same product
arrives from several vendors, the same event is delivered twice, a feed lists
an older version after a newer one, and a few rows are simply broken. This
module derives such feeds from the shared dataset's ``products`` table:

* every event is a ``dict`` with the columns of ``products`` it sets (``sku``,
  ``name``, ``category``, ``vendor``, ``price``, ``attributes``) plus the
  ``version`` that orders events of one sku and an ``updated_at`` timestamp;
  values are what a vendor sends, so ``price`` is text and may be nonsense;
* ``updated_at`` is ISO 8601 text with an explicit offset, as vendors send it:
  ``Z``, ``+00:00``, or a local offset such as ``-03:30`` or ``+05:45``, with
  fractions of a second; only the instant matters (a loader that drops the offset,
  or reads the text in the session's ``TimeZone``, stores another instant);
* skus are case sensitive: with ``case_variants``, :func:`make_feeds` adds
  products whose skus differ from each other (and from one existing product's)
  only in case, in every feed, so that matching or deduplicating on
  ``lower(sku)`` merges distinct products;
* each ``(sku, version)`` has exactly one content wherever it appears, so the
  final state after applying a set of feeds does not depend on their order:
  the highest valid version of each sku wins, unless the table already holds
  a version at least as high (then the event is *stale*);
* with ``decade_versions``, new products whose versions cross a power of ten (9 and
  10, 99 and 100: compared as text, ``'9' > '10'``), both in one feed, and in
  order across feeds;
* feeds overlap (an event is in one to three feeds), contain exact duplicates,
  are shuffled (out of order), carry stale versions of existing products, and
  contain malformed rows (:data:`MALFORMED_KINDS`), always the same ones for
  the same ``seed`` and dataset scale.

:func:`problem` is the validation rule the challenge states; :func:`expected_state`
computes, in Python, the state that applying feeds must reach, which is how
checks judge a loader without trusting any SQL.
"""

from __future__ import annotations

import json
import random
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Sequence

import psycopg

# Columns an event sets, in the order they are compared and shown (version last:
# code indexes content tuples with [0] for the sku and [-1] for the version).
CONTENT = ("sku", "name", "category", "vendor", "price", "attributes", "updated_at", "version")
EVENT_KEYS = CONTENT
MALFORMED_KINDS = ("missing sku", "missing name", "bad price", "negative price", "bad version",
                   "bad attributes")
DATASET_SKU = r"^[A-Z]{3}-[0-9]{7}$"  # how the generator names products (labs.data.fake)
_PRICE = re.compile(r"^[0-9]{1,8}(\.[0-9]{1,2})?$")
_EPOCH = datetime(2026, 11, 1, tzinfo=timezone.utc)  # the dataset's "now" (labs.data.fake.DATASET_NOW)
# Offsets vendors write their timestamps in: UTC two ways, and local times whose
# offsets are not whole hours (so that an offset dropped anywhere moves the instant).
_OFFSETS = ("Z", "+00:00", "-03:30", "+05:45", "+12:45", "-09:30", "+01:00")

Event = dict[str, Any]


def problem(event: Event) -> str | None:
    """Why an event is malformed (one of :data:`MALFORMED_KINDS`), or None when it is valid.

    The rules: a non-empty ``sku`` and ``name``; ``price`` a decimal with at most
    two places, at least 0 (``"12,99"`` is not a price); ``version`` a positive
    integer; ``attributes`` a JSON object (a dict, or text holding one).
    """
    sku, name = event.get("sku"), event.get("name")
    if not isinstance(sku, str) or not sku.strip():
        return "missing sku"
    if not isinstance(name, str) or not name.strip():
        return "missing name"
    price = event.get("price")
    text = str(price).strip() if price is not None else ""
    if text.startswith("-"):
        try:
            Decimal(text)
            return "negative price"
        except InvalidOperation:
            return "bad price"
    if not _PRICE.match(text):
        return "bad price"
    version = event.get("version")
    if isinstance(version, bool) or not (
            isinstance(version, int) or (isinstance(version, str) and version.isdigit())):
        return "bad version"
    if int(version) < 1:
        return "bad version"
    attributes = event.get("attributes")
    if isinstance(attributes, str):
        try:
            attributes = json.loads(attributes)
        except ValueError:
            return "bad attributes"
    if not isinstance(attributes, dict):
        return "bad attributes"
    return None


def instant(value: Any) -> datetime:
    """The instant an ``updated_at`` stands for, in UTC: ISO 8601 text with an offset
    (``Z`` included) or an aware datetime. Text without an offset is not an instant."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if moment.tzinfo is None:
        raise ValueError(f"updated_at {value!r} has no offset: it names no instant")
    return moment.astimezone(timezone.utc)


def content(event: Event) -> tuple:
    """An event's content in :data:`CONTENT` order, normalised as PostgreSQL would store it
    (``updated_at`` as the UTC instant, whatever offset the text was written in)."""
    attributes = event["attributes"]
    if isinstance(attributes, str):
        attributes = json.loads(attributes)
    return (event["sku"], event["name"], event["category"], event["vendor"],
            Decimal(str(event["price"])).quantize(Decimal("0.01")),
            json.dumps(attributes, sort_keys=True), instant(event["updated_at"]),
            int(event["version"]))


def vendor_time(sku: str, version: int) -> str:
    """The ``updated_at`` text a vendor sends for ``(sku, version)``: one instant per pair
    (the dataset's "now" plus 7 minutes a version, plus a fraction of a second), written
    in an offset that varies from pair to pair. No random draw: feeds built from a seed
    stay the same."""
    h = zlib.crc32(f"{sku}:{version}".encode())
    moment = _EPOCH + timedelta(minutes=version * 7, microseconds=h % 1_000_000)
    offset = _OFFSETS[(h >> 20) % len(_OFFSETS)]
    if offset in ("Z", "+00:00"):
        return moment.isoformat().replace("+00:00", offset)
    sign = -1 if offset[0] == "-" else 1
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return moment.astimezone(zone).isoformat()


@dataclass
class Feeds:
    """A set of vendor feeds and what is known about them."""

    feeds: list[list[Event]]
    original: dict[str, tuple]  # sku -> stored content before any feed (existing skus only)
    malformed: list[set[int]] = field(default_factory=list)  # per feed: positions of bad rows

    @property
    def skus(self) -> list[str]:
        """Every valid sku the feeds mention, sorted."""
        return sorted({e["sku"] for f in self.feeds for e in f if problem(e) is None})

    @property
    def events(self) -> list[Event]:
        """All feeds concatenated."""
        return [e for f in self.feeds for e in f]

    def valid_events(self) -> list[Event]:
        return [e for e in self.events if problem(e) is None]

    def summary(self) -> str:
        kinds = {k: 0 for k in MALFORMED_KINDS}
        for e in self.events:
            p = problem(e)
            if p:
                kinds[p] += 1
        valid = self.valid_events()
        distinct = {(e["sku"], int(e["version"])) for e in valid}
        new = {e["sku"] for e in valid} - set(self.original)
        return (f"{len(self.feeds)} feeds, {len(self.events)} events: {len(distinct)} distinct "
                f"(sku, version), {len(valid) - len(distinct)} repeats, {len(new)} new skus, "
                f"{sum(kinds.values())} malformed ("
                + ", ".join(f"{k} {v}" for k, v in kinds.items() if v) + ")")


def _event(sku: str, name: str, category: str, vendor: str, price: Decimal, attributes: dict,
           version: int) -> Event:
    return {"sku": sku, "name": name, "category": category, "vendor": vendor,
            "price": f"{price:.2f}", "attributes": attributes, "version": version,
            "updated_at": vendor_time(sku, version)}


def _break(event: Event, kind: str, rng: random.Random) -> Event:
    bad = dict(event)
    if kind == "missing sku":
        bad["sku"] = rng.choice(["", None, "   "])
    elif kind == "missing name":
        bad["name"] = rng.choice(["", None])
    elif kind == "bad price":
        bad["price"] = rng.choice(["12,99", "abc", "", "1.999", None])
    elif kind == "negative price":
        bad["price"] = f"-{event['price']}"
    elif kind == "bad version":
        bad["version"] = rng.choice(["v2", None, 0, "1.5"])
    elif kind == "bad attributes":
        bad["attributes"] = rng.choice(["{colour: red", "[1, 2]", "null"])
    return bad


def make_feeds(conn: psycopg.Connection, *, feeds: int = 4, existing: int = 120, new: int = 40,
               versions: int = 3, stale_share: float = 0.3, duplicate_share: float = 0.08,
               malformed_share: float = 0.04, seed: int = 7, sku_prefix: str = "NEW",
               case_variants: int = 0, decade_versions: int = 0) -> Feeds:
    """Vendor feeds over ``existing`` products of the dataset and ``new`` skus it lacks.

    Each chosen product gets up to ``versions`` newer versions (price and
    attributes change); a ``stale_share`` of them also get an event at or below
    the stored version, with different content (it must never win). Events are
    spread over ``feeds`` feeds (each in one to three), shuffled, with exact
    duplicates and malformed rows added. Deterministic for a seed and a dataset.

    ``case_variants`` (default 0: none, and the feeds are exactly those without
    the option) adds that many groups of new products whose skus differ only in
    case (lower, upper, mixed), plus new products spelled like one chosen
    existing sku in other cases; every feed carries every version of them.

    ``decade_versions`` (default 0: none) adds that many pairs of new products whose
    versions cross a power of ten, so that versions compared as text ('9' > '10', '99' >
    '100') pick the older event: the first of a pair has versions 8, 9 and 10 in every
    feed (the newest must win inside one batch); the second has 99 in the first feed and
    99 and 100 in the others (a stored 99 must lose to 100).
    """
    rng = random.Random(seed)
    # The dataset's own products only (skus like CLO-0000359): rows that feeds or
    # checks inserted earlier must not shift the sample, or the feeds would change.
    total = conn.execute("SELECT count(*) FROM products WHERE sku ~ %s",
                         [DATASET_SKU]).fetchone()[0]
    chosen = sorted(rng.sample(range(1, total + 1), min(existing, total)))
    rows = conn.execute(
        f"SELECT {', '.join(CONTENT)} FROM products WHERE id = ANY(%s) ORDER BY id",
        [chosen]).fetchall()
    original = {r[0]: content(dict(zip(CONTENT, r))) for r in rows}
    canonical: list[Event] = []
    for sku, name, category, vendor, price, attributes, _, version in rows:
        for v in range(version + 1, version + 1 + rng.randint(1, versions)):
            price = (price * Decimal(rng.choice(["0.9", "0.95", "1.05", "1.1", "1.2"]))
                     ).quantize(Decimal("0.01"))
            attrs = dict(attributes, feed_version=v)
            canonical.append(_event(sku, name, category, vendor, price, attrs, v))
        if rng.random() < stale_share:
            v = rng.randint(max(1, version - 1), version)  # at or below what is stored
            canonical.append(_event(sku, name + " (old)", category, vendor,
                                    (price * Decimal("0.5")).quantize(Decimal("0.01")),
                                    dict(attributes, stale=True), v))
    categories = sorted({r[2] for r in rows}) or ["home"]
    vendors = sorted({r[3] for r in rows}) or ["Vendor"]
    for i in range(new):
        sku = f"{sku_prefix}-{seed:03d}-{i:05d}"
        category, vendor = rng.choice(categories), rng.choice(vendors)
        price = Decimal(rng.randint(199, 49_999)) / 100
        for v in range(1, 1 + rng.randint(1, versions)):
            canonical.append(_event(sku, f"Feed item {i} v{v}", category, vendor,
                                    price + v, {"source": "feed", "v": v}, v))
    out: list[list[Event]] = [[] for _ in range(feeds)]
    for event in canonical:
        for f in rng.sample(range(feeds), min(feeds, rng.choice([1, 1, 2, 3]))):
            out[f].append(dict(event))
    for event in _case_variant_events(rows, case_variants, seed, sku_prefix):
        for feed in out:  # in every feed: a batch always holds the whole group
            feed.append(dict(event))
    for i in range(decade_versions):
        price = Decimal(1_000 + 37 * i + seed % 500) / 100
        sku = f"{sku_prefix}-Ten-{seed}-{i}"
        for feed in out:
            for v in (8, 9, 10):
                feed.append(_event(sku, f"Decade item {i} v{v}", "home", "Decade Vendor",
                                   price + v, {"source": "decade", "v": v}, v))
        sku = f"{sku_prefix}-Hundred-{seed}-{i}"
        for n, feed in enumerate(out):
            for v in ((99,) if n == 0 and len(out) > 1 else (99, 100)):
                feed.append(_event(sku, f"Hundred item {i} v{v}", "home", "Decade Vendor",
                                   price + v, {"source": "decade", "v": v}, v))
    malformed: list[set[int]] = []
    broken = 0  # kinds in turn, so that every kind shows up once there are enough rows
    for feed in out:
        for event in rng.sample(feed, int(len(feed) * duplicate_share)):
            feed.append(dict(event))
        for _ in range(max(1, int(len(feed) * malformed_share))):
            kind = MALFORMED_KINDS[broken % len(MALFORMED_KINDS)]
            broken += 1
            feed.append(_break(rng.choice(feed), kind, rng))
        rng.shuffle(feed)
        malformed.append({i for i, e in enumerate(feed) if problem(e) is not None})
    return Feeds(out, original, malformed)


def _spellings(text: str, rng: random.Random) -> list[str]:
    """Three spellings of ``text`` equal only when case is ignored (lower, upper, mixed)."""
    mixed = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)
    if mixed in (text.lower(), text.upper()):
        mixed = text[:1].upper() + text[1:].lower()
    return [text.lower(), text.upper(), mixed]


def _case_variant_events(rows: Sequence[tuple], groups: int, seed: int,
                         sku_prefix: str) -> list[Event]:
    """Versions 1..3 of new products whose skus differ only in case: ``groups`` groups of
    three new spellings, and two spellings of an existing sku other than its own."""
    if groups <= 0:
        return []
    rng = random.Random(f"{seed}:case variants")
    skus = [s for i in range(groups) for s in _spellings(f"{sku_prefix}-Case-{seed}-{i}", rng)]
    if rows:
        stored = rng.choice(list(rows))[0]
        skus += [s for s in _spellings(stored, rng) if s != stored][:2]
    events = []
    for n, sku in enumerate(skus):
        price = Decimal(rng.randint(199, 49_999)) / 100
        for v in range(1, 1 + rng.randint(1, 3)):
            events.append(_event(sku, f"Case item {n} v{v}", "home", "Case Vendor", price + v,
                                 {"source": "case variant", "spelling": sku, "v": v}, v))
    return events


def bulk_feed(conn: psycopg.Connection, rows: int, *, seed: int = 11,
              sku_prefix: str = "BULK") -> list[Event]:
    """One large feed for measurements: newer versions of up to half the products
    (at most ``rows // 2``), new skus for the rest, no malformed rows."""
    rng = random.Random(seed)
    updates = conn.execute(
        "SELECT sku, name, category, vendor, price, attributes, version FROM products "
        "WHERE sku ~ %s ORDER BY id LIMIT %s", [DATASET_SKU, rows // 2]).fetchall()
    events = [_event(sku, name, cat, vendor, (price * Decimal("1.05")).quantize(Decimal("0.01")),
                     dict(attrs, bulk=True), version + 1)
              for sku, name, cat, vendor, price, attrs, version in updates]
    for i in range(rows - len(events)):
        events.append(_event(f"{sku_prefix}-{seed:03d}-{i:07d}", f"Bulk item {i}", "home",
                             "Bulk Vendor", Decimal(rng.randint(100, 9_999)) / 100, {"i": i}, 1))
    rng.shuffle(events)
    return events


def expected_state(original: dict[str, tuple], events: Iterable[Event]) -> dict[str, tuple]:
    """sku -> content after applying ``events`` (in any order) to ``original``.

    The highest valid version of each sku wins; a stored version at least as
    high is kept (the guard is "strictly newer"). Malformed events change nothing.
    """
    state = dict(original)
    for event in events:
        if problem(event) is not None:
            continue
        c = content(event)
        stored = state.get(c[0])
        if stored is None or c[-1] > stored[-1]:
            state[c[0]] = c
    return state


def expected_report(original: dict[str, tuple], events: Sequence[Event]) -> dict[str, Any]:
    """What one ``load_feed(events)`` must report when applied alone on ``original``.

    ``applied``: rows inserted or updated (one per sku at most); ``stale``: valid
    events that changed nothing (older or equal to what was stored, superseded
    by a newer event of the same batch, or duplicates); ``rejected``: positions
    of malformed events.
    """
    after = expected_state(original, events)
    applied = sum(1 for sku, c in after.items() if original.get(sku) != c)
    valid = sum(1 for e in events if problem(e) is None)
    rejected = [i for i, e in enumerate(events) if problem(e) is not None]
    return {"applied": applied, "stale": valid - applied, "rejected": rejected}


def read_state(conn: psycopg.Connection, skus: Sequence[str]) -> dict[str, tuple]:
    """sku -> stored content, for the given skus (absent skus are absent)."""
    rows = conn.execute(
        f"SELECT {', '.join(CONTENT)} FROM products WHERE sku = ANY(%s)",
        [list(skus)]).fetchall()
    return {r[0]: content(dict(zip(CONTENT, r))) for r in rows}
