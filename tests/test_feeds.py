"""Unit tests for labs.data.feeds: the validation rule, determinism, and the order-free oracle."""

from __future__ import annotations

import random

import pytest

from labs.data import feeds
from labs.course.challenge import drop, setup


@pytest.fixture(scope="module")
def conn():
    lab = setup("test_feeds", sql_magic=False)
    try:
        with lab.connect(autocommit=True) as connection:
            yield connection
    finally:
        lab.close()
        drop("test_feeds")


def _valid() -> dict:
    return {"sku": "HOM-0000001", "name": "Mug", "category": "home", "vendor": "Acme",
            "price": "12.50", "attributes": {"colour": "red"}, "version": 2,
            "updated_at": "2026-11-01T00:00:00+00:00"}


@pytest.mark.parametrize("change, reason", [
    ({"sku": ""}, "missing sku"), ({"sku": None}, "missing sku"), ({"name": "  "}, "missing name"),
    ({"price": "12,99"}, "bad price"), ({"price": "1.999"}, "bad price"), ({"price": None}, "bad price"),
    ({"price": "-3.00"}, "negative price"), ({"version": "v2"}, "bad version"),
    ({"version": 0}, "bad version"), ({"version": True}, "bad version"),
    ({"attributes": "[1, 2]"}, "bad attributes"), ({"attributes": "{colour: red"}, "bad attributes"),
])
def test_problem_names_each_malformed_kind(change, reason):
    """problem() gives the documented reason for each kind of broken row."""
    assert feeds.problem(dict(_valid(), **change)) == reason


def test_problem_accepts_valid_events():
    """A valid event (also with text version and JSON-text attributes) has no problem."""
    assert feeds.problem(_valid()) is None
    assert feeds.problem(dict(_valid(), version="3", attributes='{"a": 1}', price="7")) is None


def test_feeds_are_deterministic(conn):
    """The same seed gives the same feeds; another seed gives other feeds."""
    a, b = feeds.make_feeds(conn, seed=7), feeds.make_feeds(conn, seed=7)
    assert a.feeds == b.feeds and a.malformed == b.malformed
    assert feeds.make_feeds(conn, seed=8).feeds != a.feeds


def test_feeds_have_every_messy_shape(conn):
    """Overlap, duplicates, stale versions, new skus and every malformed kind are present."""
    f = feeds.make_feeds(conn)
    kinds = {feeds.problem(e) for e in f.events} - {None}
    assert kinds == set(feeds.MALFORMED_KINDS)
    valid = f.valid_events()
    keys = [(e["sku"], e["version"]) for e in valid]
    assert len(keys) > len(set(keys))  # duplicates (within or across feeds)
    per_feed = [{e["sku"] for e in feed if feeds.problem(e) is None} for feed in f.feeds]
    assert per_feed[0] & per_feed[1]  # overlap
    assert any(e["version"] <= f.original[e["sku"]][-1] for e in valid if e["sku"] in f.original)
    assert any(e["sku"] not in f.original for e in valid)
    for feed, bad in zip(f.feeds, f.malformed):
        assert bad == {i for i, e in enumerate(feed) if feeds.problem(e)}


def test_one_content_per_sku_version(conn):
    """Wherever a (sku, version) appears, its content is the same: order cannot matter."""
    seen: dict = {}
    for e in feeds.make_feeds(conn).valid_events():
        c = feeds.content(e)
        assert seen.setdefault((c[0], c[-1]), c) == c


def test_expected_state_ignores_order(conn):
    """Any order of the events gives the same expected state; stale events never win."""
    f = feeds.make_feeds(conn)
    events = f.events
    want = feeds.expected_state(f.original, events)
    shuffled = list(events)
    random.Random(1).shuffle(shuffled)
    assert feeds.expected_state(f.original, shuffled) == want
    for sku, stored in f.original.items():
        assert want[sku][-1] >= stored[-1]


def test_expected_report_accounts_for_every_event(conn):
    """applied + stale + rejected covers each event of a feed exactly once."""
    f = feeds.make_feeds(conn)
    for feed, bad in zip(f.feeds, f.malformed):
        report = feeds.expected_report(f.original, feed)
        assert report["rejected"] == sorted(bad)
        assert report["applied"] + report["stale"] + len(report["rejected"]) == len(feed)


def test_bulk_feed_size_and_shape(conn):
    """bulk_feed returns exactly the rows asked for, valid, half of them updates."""
    events = feeds.bulk_feed(conn, 300)
    assert len(events) == 300 and all(feeds.problem(e) is None for e in events)
    assert sum(e["sku"].startswith("BULK") for e in events) == 150


def test_vendor_times_are_instants_in_many_offsets(conn):
    """updated_at is ISO text with an offset, in several offsets, one instant per (sku, version)."""
    f = feeds.make_feeds(conn)
    texts = [e["updated_at"] for e in f.valid_events()]
    offsets = {t[-6:] if not t.endswith("Z") else "Z" for t in texts}
    assert {"Z", "+00:00"} & offsets and len(offsets - {"Z", "+00:00"}) >= 2
    seen: dict = {}
    for e in f.valid_events():
        assert seen.setdefault((e["sku"], e["version"]), feeds.instant(e["updated_at"])) == \
            feeds.instant(e["updated_at"])
    with pytest.raises(ValueError):
        feeds.instant("2026-11-01T00:00:00")


def test_case_variants_are_distinct_products_in_every_feed(conn):
    """case_variants adds skus equal only when case is ignored, in every feed; 0 changes nothing."""
    plain = feeds.make_feeds(conn, seed=5)
    assert feeds.make_feeds(conn, seed=5, case_variants=0).feeds == plain.feeds
    f = feeds.make_feeds(conn, seed=5, case_variants=2)
    for feed in f.feeds:
        skus = {e["sku"] for e in feed if feeds.problem(e) is None}
        groups: dict = {}
        for s in skus:
            groups.setdefault(s.lower(), set()).add(s)
        assert sum(len(g) > 1 for g in groups.values()) >= 3  # 2 new groups + 1 existing sku
    state = feeds.expected_state(f.original, f.events)
    assert len({s.lower() for s in state}) < len(state)


def test_decade_versions_cross_a_power_of_ten(conn):
    """decade_versions adds skus whose versions 9/10 share a feed and 99/100 follow each other
    (text order would keep the older); 0 changes nothing; the newest wins in the oracle."""
    plain = feeds.make_feeds(conn, seed=5)
    assert feeds.make_feeds(conn, seed=5, decade_versions=0).feeds == plain.feeds
    f = feeds.make_feeds(conn, seed=5, decade_versions=1)
    for n, feed in enumerate(f.feeds):
        versions: dict = {}
        for e in feed:
            if feeds.problem(e) is None:
                versions.setdefault(e["sku"], set()).add(int(e["version"]))
        assert any({9, 10} <= v for v in versions.values())
        assert any(v == ({99} if n == 0 else {99, 100}) for v in versions.values())
    state = feeds.expected_state(f.original, f.events)
    assert sorted(c[-1] for sku, c in state.items() if "-Ten-" in sku or "-Hundred-" in sku) \
        == [10, 100]
    for feed, bad in zip(f.feeds, f.malformed):
        assert bad == {i for i, e in enumerate(feed) if feeds.problem(e)}
