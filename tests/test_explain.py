"""labs.tools.explain: parsing, rendering, drawing and plan assertions.

All but the last test read plans recorded from this lab's PostgreSQL 15 under
tests/plans/ (see the "note" in each file), so they need no database.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labs.tools import explain as ex
from labs.course.checking import CheckFailed

PLANS = Path(__file__).parent / "plans"


def plan(name: str) -> ex.Plan:
    return ex.load(PLANS / f"{name}.json")


@pytest.fixture(scope="module")
def slow() -> ex.Plan:
    return plan("slow_history_seqscan_disksort")


@pytest.fixture(scope="module")
def fast() -> ex.Plan:
    return plan("fast_history_index")


def test_parse_reads_node_relation_index_and_rows(slow):
    """The tree keeps node types, relations, aliases, indexes, estimates, actual rows and loops."""
    seq = slow.find("Seq Scan", "order_items")[0]
    assert (seq.relation, seq.alias, seq.est_rows, seq.actual_rows, seq.loops) == \
        ("order_items", "oi", 117647.0, 100000.0, 2)
    assert seq.actual_total_rows == 200000
    bitmap = slow.find("Bitmap Index Scan")[0]
    assert bitmap.index == "orders_customer_id_idx"
    assert bitmap.relation == "orders", "a Bitmap Index Scan takes its table from the heap scan"
    assert slow.root.node_type == "Limit" and slow.execution_ms > 0


def test_relation_matches_alias_too(slow):
    """A relation can be named by table name or by the query's alias."""
    assert slow.has("Seq Scan", "oi") and slow.has("Seq Scan", "order_items")
    assert not slow.has("Seq Scan", "orders")


def test_self_time_is_total_minus_children(slow):
    """Self time = this node's time over all loops minus its children's; never negative."""
    for node in slow.nodes():
        assert node.self_ms is not None and node.self_ms >= 0
        expected = node.total_ms - sum(c.total_ms for c in node.children)
        assert node.self_ms == pytest.approx(max(expected, 0.0))


def test_buffers_are_inclusive_and_self_buffers_are_not(slow):
    """Statement buffers are the root's; a node's own share excludes its children's."""
    assert slow.buffers == slow.root.shared_hit + slow.root.shared_read == 3163
    seq = slow.find("Seq Scan")[0]
    assert seq.self_hit + seq.self_read == seq.shared_hit + seq.shared_read  # a leaf
    assert sum(n.self_hit + n.self_read for n in slow.nodes()) <= slow.buffers


def test_sort_method_and_disk_spill(slow, fast):
    """An external merge sort is on disk; quicksort and top-N heapsort are in memory."""
    methods = sorted(n.sort_method for n in slow.sorts)
    assert methods == ["external merge", "top-N heapsort"]
    assert [n.sort_space_type for n in slow.sorts_on_disk] == ["Disk"]
    assert not fast.sorts_on_disk
    with pytest.raises(CheckFailed, match="spills to disk"):
        ex.assert_sort_in_memory(slow)
    ex.assert_sort_in_memory(fast)


def test_workers(slow):
    """Gather Merge reports the workers planned (and launched)."""
    gather = slow.find("Gather Merge")[0]
    assert gather.workers_planned == 1 and gather.workers_launched in (0, 1)


def test_node_assertions(slow, fast):
    """has / has not a node type on a relation, with learner-facing messages."""
    ex.assert_has_node(slow, "Seq Scan", "order_items")
    with pytest.raises(CheckFailed, match="still shows Seq Scan on order_items oi"):
        ex.assert_no_node(slow, "Seq Scan", "order_items")
    ex.assert_no_node(fast, "Seq Scan", "order_items")
    with pytest.raises(CheckFailed) as info:
        ex.assert_has_node(fast, "Hash Join")
    assert "Limit" in info.value.detail, "the detail shows the plan"


def test_uses_index(slow, fast):
    """uses_index finds Index, Index Only and Bitmap Index Scans by relation and index name."""
    assert fast.uses_index("order_items_order_id_idx", "order_items")
    assert not slow.uses_index(relation="order_items")
    assert slow.uses_index("orders_customer_id_idx", "orders")
    with pytest.raises(CheckFailed, match="does not use an index scan of order_items; it reads it "
                                          "with Seq Scan on order_items oi"):
        ex.assert_uses_index(slow, "order_items")
    ex.assert_uses_index(plan("index_only_vacuumed"), "orders", index_only=True)
    with pytest.raises(CheckFailed, match="Index Only Scan"):
        ex.assert_uses_index(fast, "order_items", index_only=True)


def test_heap_fetches_drop_after_vacuum():
    """An Index Only Scan visits the heap until VACUUM sets the visibility map."""
    before, after = plan("index_only_heap_fetches"), plan("index_only_vacuumed")
    assert before.root.heap_fetches > 0 and after.root.heap_fetches == 0
    assert after.buffers < before.buffers


def test_buffer_budget(slow, fast):
    """assert_buffers_under compares hit + read with a budget."""
    ex.assert_buffers_under(fast, 500)
    with pytest.raises(CheckFailed, match="touched 3,163 buffers"):
        ex.assert_buffers_under(slow, 500)


def test_worst_misestimate():
    """Correlated predicates: estimated 67 rows, got 13,334 (×199)."""
    mis = plan("misestimate_seqscan")
    factor, node = mis.worst_misestimate()
    assert node.node_type == "Seq Scan" and factor == pytest.approx(13334 / 67)
    assert mis.rows_removed("orders") == 66666
    with pytest.raises(CheckFailed, match="expected 67 rows and got 13,334"):
        ex.assert_misestimate_under(mis, 10)
    ex.assert_misestimate_under(mis, 500)


def test_limit_is_not_a_misestimate(slow):
    """A Sort estimated at 4,019 rows returning 20 under a Limit stopped early: not a misestimate."""
    sort = slow.find("Sort")[0]
    assert sort.est_rows == 4019 and sort.actual_rows == 20
    assert sort.misestimate == 1.0
    assert slow.worst_misestimate()[0] < 2


def test_modify_table_reads_like_postgres():
    """ModifyTable nodes are labelled with their operation, as in the text format."""
    delete = plan("delete_bitmap")
    assert delete.root.label == "Delete on order_items"


def test_text_masks_timings_and_is_stable(slow):
    """The default text has no timings, buffers or sort space: identical on every run."""
    text = slow.text()
    assert "time=T" in text and "Execution Time: T ms" in text
    assert "Sort Method: external merge  Disk: NkB" in text
    assert "->  Seq Scan on order_items oi  (rows est=117,647 actual=100,000 loops=2 time=T)" in text
    assert not any(ch.isdigit() for line in text.splitlines() if "Execution" in line for ch in line)
    detailed = slow.text(timings=True, buffers=True)
    assert "Buffers: shared hit=" in detailed and "ms (self" in detailed


def test_draw_and_before_after(slow, fast, tmp_path):
    """Both drawings render to PNG; the side-by-side title carries the speed-up."""
    import matplotlib

    matplotlib.use("Agg")
    fig = ex.draw(slow, title="slow")
    fig.savefig(tmp_path / "one.png")
    fig = ex.draw_before_after(slow, fast)
    assert "× faster" in fig._suptitle.get_text()
    fig.savefig(tmp_path / "two.png")
    assert (tmp_path / "two.png").stat().st_size > 10_000
    assert ex.speedup(slow, fast) == pytest.approx(slow.execution_ms / fast.execution_ms)


def test_index_cond_columns(fast):
    """index_cond_columns names the columns an index really narrowed on."""
    node = fast.find("Index Scan", "order_items")[0]
    assert ex.index_cond_columns(node) == {"order_id"}


def test_parse_rejects_other_json():
    """parse() says what it expected instead of failing with a KeyError."""
    with pytest.raises(ValueError, match="FORMAT JSON"):
        ex.parse('[{"Query": 1}]')


def test_live_explain_rolls_back_and_applies_settings():
    """Against the server: EXPLAIN ANALYZE of a write changes nothing; settings are SET LOCAL."""
    import psycopg

    from labs.runtime.server import connect_admin, ensure_server

    srv = ensure_server()
    with connect_admin(srv.url) as conn:
        conn.execute("CREATE TEMP TABLE t AS SELECT g AS id, g % 10 AS k FROM generate_series(1, 5000) g")
        conn.execute("ANALYZE t")
        deleted = ex.explain(conn, "DELETE FROM t WHERE k = 3")
        assert deleted.root.node_type == "Delete"
        assert deleted.find("Seq Scan", "t")[0].actual_rows == 500
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 5000, "rolled back"
        sorted_plan = ex.explain(conn, "SELECT * FROM t ORDER BY k, id", settings={"work_mem": "64kB"})
        assert sorted_plan.sorts_on_disk, "64kB cannot hold 5,000 rows"
        assert sorted_plan.settings == {"work_mem": "64kB"}
        assert conn.execute("SHOW work_mem").fetchone()[0] != "64kB", "SET LOCAL ended"
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
