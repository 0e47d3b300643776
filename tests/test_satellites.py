"""The lab's PgBouncer and streaming replica: they start, pool and replicate, and stop cleanly.

Never stops the primary server: other notebooks and workers use it."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from labs.runtime import satellites
from labs.runtime.server import LocalState, current_slot, ensure_server
from labs.tools.routing import warm_pool


def _local_or_skip() -> None:
    if os.environ.get("DATABASE_URL") or ensure_server().kind != "local":
        pytest.skip("the satellites run beside the lab's own local server only")


def _processes_with(text: str) -> list[int]:
    """Pids whose command line mentions ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in entry.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_error_names_what_is_skipped_when_database_url_is_elsewhere(monkeypatch):
    """With DATABASE_URL set, the satellites refuse with a message naming the skipped parts."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.example.com:5432/postgres")
    with pytest.raises(satellites.SatellitesUnavailable, match="skips the PgBouncer sections"):
        satellites.start_pgbouncer()


def test_a_given_pooler_and_replica_are_used_as_they_are(monkeypatch):
    """LAB_POOLER_URL / LAB_REPLICA_URL (a grader's, or a learner's own pair): the notebook's
    database replaces theirs, nothing is started, and the message without them says how."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.example.com:5432/postgres")
    with pytest.raises(satellites.SatellitesUnavailable, match="LAB_POOLER_URL"):
        satellites.pooler_url("shop")
    monkeypatch.setenv("LAB_POOLER_URL", "postgresql://u:p@db.example.com:6432/postgres")
    monkeypatch.setenv("LAB_REPLICA_URL", "postgresql://u:p@replica.example.com:5532/x?sslmode=require")
    assert satellites.pooler_url("shop") == "postgresql://u:p@db.example.com:6432/shop"
    assert (satellites.replica_url("shop")
            == "postgresql://u:p@replica.example.com:5532/shop?sslmode=require")


@pytest.mark.stops_shared  # a notebook on another worker may be using them: run alone
def test_start_replicate_pool_then_stop_leaves_no_process():
    """Both start; the replica replays a write; PgBouncer pools per transaction; stop() ends both."""
    _local_or_skip()
    primary = LocalState.load(current_slot())
    pooler = satellites.pooler_url()
    replica = satellites.replica_url()

    with psycopg.connect(primary and f"postgresql://lab:lab@127.0.0.1:{primary.port}/postgres",
                         autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lab_satellites_probe (v text)")
        conn.execute("TRUNCATE lab_satellites_probe")
        conn.execute("INSERT INTO lab_satellites_probe VALUES ('replicated')")
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()[0] >= 1
    assert satellites.wait_for_replay(lsn, timeout=60)
    with psycopg.connect(replica, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        assert conn.execute("SELECT v FROM lab_satellites_probe").fetchone()[0] == "replicated"
    with satellites.replica_delay(500):
        with psycopg.connect(replica, autocommit=True) as conn:
            assert conn.execute("SHOW recovery_min_apply_delay").fetchone()[0] == "500ms"
    with psycopg.connect(replica, autocommit=True) as conn:
        assert conn.execute("SHOW recovery_min_apply_delay").fetchone()[0] == "0"

    warm_pool(pooler)  # PgBouncer opens all its server connections for the database
    with psycopg.connect(pooler, autocommit=True, prepare_threshold=None) as conn:
        pids = {conn.execute("SELECT pg_backend_pid()").fetchone()[0] for _ in range(6)}
    assert len(pids) > 1, "consecutive transactions should run on different server connections"

    state = satellites._load()
    stopped = satellites.stop()
    assert "PgBouncer" in stopped and "the replica" in stopped
    assert not _processes_with(f"{state.pgbouncer_dir}/pgbouncer.ini")
    assert not _processes_with(state.replica_datadir)
    with psycopg.connect(primary and f"postgresql://lab:lab@127.0.0.1:{primary.port}/postgres",
                         autocommit=True) as conn:  # the primary is still up
        conn.execute("DROP TABLE lab_satellites_probe")
