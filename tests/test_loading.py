"""Unit tests for labs.data.loading: the event stream, the strategies, the memory meters."""

from __future__ import annotations

import itertools

import psycopg
import pytest

from labs.data import loading as ld
from labs.data.dataset import table_checksum

from .scratch import scratch_database


def test_events_are_deterministic_and_lazy():
    """The same arguments give the same rows, and asking for a billion rows costs nothing."""
    assert list(ld.events(500)) == list(ld.events(500))
    assert list(ld.events(500, seed=8)) != list(ld.events(500))
    huge = ld.events(10**9)
    assert len(list(itertools.islice(huge, 3))) == 3


def test_events_contain_values_that_need_escaping():
    """A tricky-rich stream holds tabs, newlines, backslashes, '\\N', NULLs and non-ASCII."""
    details = [row[5] for row in ld.events(2_000, tricky_share=0.5)]
    texts = [d for d in details if d is not None]
    assert None in details
    for needle in ("\t", "\n", "\r", "\\", "🎉"):
        assert any(needle in d for d in texts), needle
    assert "\\N" in texts and "" in texts


def test_events_shape():
    """Ids run from start_id, customers stay in range, amounts only on checkouts and refunds."""
    rows = list(ld.events(3_000, customers=100, start_id=11))
    assert [r[0] for r in rows] == list(range(11, 3_011))
    assert all(1 <= r[1] <= 100 for r in rows)
    assert all((r[4] is not None) == (r[2] in ("checkout", "refund")) for r in rows)
    assert [r[3] for r in rows] == sorted(r[3] for r in rows)


def test_batched():
    """batched() yields full lists and a short last one."""
    assert [len(b) for b in ld.batched(range(10), 4)] == [4, 4, 2]


def test_traced_peak_sees_a_list_and_not_a_stream():
    """tracemalloc's peak grows with list(rows) but not with a loop over the stream."""
    _, listed = ld.traced_peak(lambda: list(ld.events(20_000)))
    _, streamed = ld.traced_peak(lambda: sum(1 for _ in ld.events(20_000)))
    assert listed > 4 * streamed


def test_counted_stops_a_slow_consumer():
    """Counted raises Deadline (a BaseException) once the deadline has passed."""
    rows = ld.Counted(ld.events(5_000), deadline=0.0)
    with pytest.raises(ld.Deadline):
        for _ in rows:
            pass
    assert not issubclass(ld.Deadline, Exception)


@pytest.fixture(scope="module")
def url():
    with scratch_database("lab_test_loading") as database_url:
        yield database_url


def test_every_strategy_loads_the_same_contents(url):
    """Every insertion strategy loads tricky rows byte for byte: same count, same checksum."""
    sums = {}
    with psycopg.connect(url, autocommit=True) as conn:
        ld.create_events_table(conn)
        for name, strategy in ld.STRATEGIES.items():
            conn.execute("TRUNCATE events")
            strategy(url, ld.events(600, tricky_share=0.3), "events")
            sums[name] = table_checksum(conn, "events")
    assert len(set(sums.values())) == 1, sums
    assert next(iter(sums.values()))[0] == 600


def test_a_temporary_events_table_is_invisible_to_other_sessions(url):
    """events_ddl(temporary=True) makes a table only its own session can read."""
    with psycopg.connect(url, autocommit=True) as mine, \
            psycopg.connect(url, autocommit=True) as other:
        ld.create_events_table(mine, "events_private", temporary=True)
        ld.copy_rows(mine, ld.events(50, tricky_share=0.5), "events_private")
        assert table_checksum(mine, "events_private")[0] == 50
        assert other.execute("SELECT to_regclass('events_private')").fetchone()[0] is None
    assert "UNLOGGED" in ld.events_ddl("t", unlogged=True).as_string(None)
    assert "TEMPORARY" in ld.events_ddl("t", temporary=True).as_string(None)
