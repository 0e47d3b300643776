"""The table-health tool: counters, WAL, VACUUM's report, bloat, the horizon and the timeline."""

import time

import psycopg
import pytest

from labs.course.challenge import drop, setup
from labs.tools import table_health as th


@pytest.fixture(scope="module")
def lab():
    lab = setup("table_health_tool", sql_magic=False)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute("""CREATE TABLE th_t (id int PRIMARY KEY, v int NOT NULL)
                        WITH (autovacuum_enabled = false);
                        INSERT INTO th_t SELECT g, 0 FROM generate_series(1, 500) g""")
    yield lab
    lab.close()
    drop("table_health_tool")


@pytest.fixture()
def conn(lab):
    with psycopg.connect(lab.url, autocommit=True) as conn:
        yield conn


def test_stats_count_updates_and_dead_rows_at_once(conn):
    """After an UPDATE, the same session's counters are current (forced flush), sizes > 0."""
    before = th.table_stats(conn, "th_t")
    conn.execute("UPDATE th_t SET v = v + 1 WHERE id <= 100")
    after = th.table_stats(conn, "th_t")
    assert after["n_tup_upd"] - before["n_tup_upd"] == 100
    assert after["n_dead_tup"] >= 100
    assert after["heap_bytes"] > 0 and after["total_bytes"] >= after["heap_bytes"] + after["index_bytes"]


def test_measure_wal_counts_bytes(conn):
    with th.measure_wal(conn) as wal:
        conn.execute("UPDATE th_t SET v = v + 1")
    assert wal.bytes > 500 * 20 and wal.end is not None


def test_vacuum_reports_not_removable_while_a_snapshot_is_open(lab, conn):
    """An open REPEATABLE READ snapshot keeps the dead versions; closed, VACUUM removes them."""
    th.vacuum(conn, "th_t")
    with psycopg.connect(lab.url, autocommit=True) as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM th_t")
        conn.execute("UPDATE th_t SET v = v + 1 WHERE id <= 50")
        held = th.vacuum(conn, "th_t")
        horizon = th.xmin_horizon(conn)
        holder.execute("ROLLBACK")
    # at least our 50: a background ANALYZE may hold the horizon for a moment as well
    assert held["removed"] == 0 and held["not_removable"] >= 50
    assert horizon["sessions_holding"] >= 1 and horizon["oldest_snapshot_age"] >= 1
    removed, deadline = 0, time.monotonic() + 10
    while True:
        freed = th.vacuum(conn, "th_t")
        removed += freed["removed"]
        if freed["not_removable"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    # a standby with hot_standby_feedback on the shared server holds every database's horizon
    if th.xmin_horizon(conn)["slot_xmin_age"] is None:
        assert removed >= 50 and freed["not_removable"] == 0


def test_bloat_says_how_it_measured(conn):
    b = th.bloat(conn, "th_t")
    assert b["method"] in ("pgstattuple", "estimate")
    assert b["table_bytes"] > 0 and 0 <= b["bloat_percent"] <= 100


def test_timeline_samples_while_the_workload_runs(lab, conn):
    def work(tl):
        for _ in range(3):
            conn.execute("UPDATE th_t SET v = v + 1 WHERE id <= 10")
            th.flush_stats(conn)
        tl.mark("done")

    tl = th.timeline(lab, work, every=0.05, tables=["th_t"])
    frame = tl.frame()
    assert len(frame) >= 2 and tl.marks[0][1] == "done"
    assert frame["n_tup_upd"].iloc[-1] - frame["n_tup_upd"].iloc[0] == 30
    import matplotlib
    matplotlib.use("Agg")
    assert th.plot_timeline(tl).get_title()
