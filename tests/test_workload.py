"""Unit tests for labs.tools.workload: steady rate, per-query lock waits, steps, the plot."""

from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")

import pytest

import labs
from labs.tools.sessions import Sessions
from labs.tools.workload import WRITER_ID_BASE, Workload


@pytest.fixture(scope="module")
def lab():
    lab = labs.setup("workload_unit", sql_magic=False)
    yield lab
    lab.close()
    labs.course.challenge.drop("workload_unit")


def test_runs_at_a_steady_rate_without_lock_waits(lab):
    """Alone, the workload keeps roughly its rate and no query waits on a lock."""
    with Workload(lab, readers=2, writers=1, rate=40) as wl:
        time.sleep(1.0)
    assert 40 <= len(wl.records) <= 200, wl.summary()
    assert not wl.errors()
    assert wl.max_lock_wait() == 0.0
    assert {r.kind for r in wl.records} == {"read", "write"}


def test_writers_use_their_own_id_range_and_runs_never_collide(lab):
    """Writers insert above WRITER_ID_BASE, and a second run continues after the first."""
    for _ in range(2):
        with Workload(lab, readers=0, writers=1, rate=50) as wl:
            time.sleep(0.3)
        assert not wl.errors(), wl.errors()[:3]
    with lab.connect(autocommit=True) as conn:
        n = conn.execute("SELECT count(*) FROM users WHERE id >= %s",
                         [WRITER_ID_BASE]).fetchone()[0]
    assert n >= 2


def test_a_query_queued_behind_a_lock_gets_its_lock_wait(lab):
    """A reader blocked by ACCESS EXCLUSIVE for ~0.6 s is recorded with a lock wait near that."""
    with Workload(lab, readers=1, writers=0, rate=50) as wl, \
            Sessions(lab, "ddl") as s, lab.connect(autocommit=True) as conn:
        time.sleep(0.2)
        s.ddl("BEGIN")
        with wl.step("hold ACCESS EXCLUSIVE", conn=s["ddl"].conn) as step:
            s.ddl("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            time.sleep(0.6)
            s.ddl("COMMIT")
        wl.mark("released")
        time.sleep(0.2)
    assert 0.3 < wl.max_lock_wait() < 3.0, wl.summary()
    waited = [r for r in wl.records if r.lock_wait > 0]
    assert all(step.start - 0.05 <= r.start <= step.end for r in waited)
    assert ("hold ACCESS EXCLUSIVE", "users", "AccessExclusiveLock", "held") in wl.step_locks()
    assert wl.stats()["waited_on_lock"] >= 1


def test_plot_marks_steps(lab):
    """The timeline plot draws the queries and labels every step."""
    with Workload(lab, readers=1, writers=1, rate=30) as wl:
        with wl.step("step one"):
            time.sleep(0.2)
        wl.mark("a moment")
    ax = wl.plot()
    labels = [t.get_text() for t in ax.texts]
    assert "step one" in labels and "a moment" in labels
    assert ax.get_yscale() == "log"
