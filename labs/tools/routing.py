"""Pools, a pooler and a replica, as challenge 15_pooling_replicas works with them.

* :func:`pool_curve` runs one fixed workload through a ``psycopg_pool`` pool at
  several sizes and reports throughput and p95 latency per size (same run, same
  clients, so the sizes compare with each other, never with another machine);
* :func:`server_connections` looks at every server connection PgBouncer holds for a
  database, by opening as many client transactions at once as the pool has server
  connections: what a session ``SET`` or a session advisory lock left behind;
* :class:`Session` is one user's session in a read-your-writes router: a
  connection to the primary, one to the replica, and the LSN of its last write;
* :func:`prepare` creates the ``profiles`` table the exercises write and read.

PgBouncer and the replica themselves are started by ``labs.runtime.satellites``.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import psycopg
from psycopg_pool import ConnectionPool

from ..runtime import satellites

# A short query that costs the server CPU, not I/O: the workload of the pool curve.
WORKLOAD_SQL = ("SELECT count(*), sum(total) FROM orders "
                "WHERE id BETWEEN %s AND %s + 3000 AND status <> 'x'")


@dataclass
class CurvePoint:
    size: int
    requests: int
    seconds: float
    p95_ms: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _run_size(url: str, size: int, clients: int, per_client: int, first_id: int) -> CurvePoint:
    latencies: list[float] = []
    lock = threading.Lock()
    with ConnectionPool(url, min_size=size, max_size=size, open=True,
                        kwargs={"autocommit": True}) as pool:
        pool.wait(timeout=30)
        start = threading.Barrier(clients + 1)

        def client(k: int) -> None:
            mine = []
            start.wait()
            for i in range(per_client):
                t0 = time.perf_counter()
                with pool.connection() as conn:
                    conn.execute(WORKLOAD_SQL, [first_id + (k * 97 + i * 31) % 5000] * 2).fetchone()
                mine.append(time.perf_counter() - t0)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
    p95 = statistics.quantiles(latencies, n=20)[-1] * 1000
    return CurvePoint(size, len(latencies), seconds, p95)


def pool_curve(lab: Any, sizes: Sequence[int] = (1, 2, 4, 8, 16), clients: int = 16,
               per_client: int = 15, rounds: int = 2) -> list[CurvePoint]:
    """Throughput and p95 latency of one fixed workload at each pool size.

    ``clients`` threads each run ``per_client`` requests, borrowing a connection from a
    pool of the given size for each; every size is run ``rounds`` times, interleaved,
    and its best round kept (other processes on the machine add noise, not signal)."""
    first_id = lab.scalar("SELECT min(id) FROM orders")
    best: dict[int, CurvePoint] = {}
    for _ in range(rounds):
        for size in sizes:
            point = _run_size(lab.url, size, clients, per_client, first_id)
            if size not in best or point.throughput > best[size].throughput:
                best[size] = point
    return [best[s] for s in sizes]


def plateau(curve: Sequence[CurvePoint], ratio: float = 0.9) -> int:
    """The smallest pool size whose throughput reaches ``ratio`` of the best measured."""
    top = max(p.throughput for p in curve)
    return min(p.size for p in curve if p.throughput >= ratio * top)


def server_connections(url: str, setting: str) -> list[tuple[int, str | None, int]]:
    """(backend pid, value of ``setting``, advisory locks held) for every server
    connection PgBouncer gives out for ``url``'s database.

    Opens POOL_SIZE client connections through PgBouncer and holds a transaction open
    on each at once, so each is served by a different server connection."""
    conns = [psycopg.connect(url, autocommit=False, prepare_threshold=None)
             for _ in range(satellites.POOL_SIZE)]
    try:
        seen = []
        for conn in conns:
            seen.append(conn.execute(
                "SELECT pg_backend_pid(), current_setting(%s, true), (SELECT count(*) FROM "
                "pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())::int",
                [setting]).fetchone())
        return seen
    finally:
        for conn in conns:
            conn.rollback()
            conn.close()


def warm_pool(url: str) -> None:
    """Make PgBouncer open all its server connections for ``url``'s database."""
    server_connections(url, "application_name")


@dataclass
class Session:
    """One user's session: the primary, the replica, and how far its last write got."""

    primary: psycopg.Connection
    replica: psycopg.Connection
    last_lsn: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def open(cls, lab: Any) -> "Session":
        primary = psycopg.connect(lab.url, autocommit=True)
        catch_up(lab)
        replica = psycopg.connect(satellites.replica_url(lab.dbname), autocommit=True)
        return cls(primary, replica)

    def close(self) -> None:
        self.primary.close()
        self.replica.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def catch_up(lab: Any, timeout: float = 120) -> None:
    """Wait until the replica has replayed everything the primary has written so far
    (a database just re-created by ``labs.setup`` exists there only after that)."""
    lsn = lab.scalar("SELECT pg_current_wal_lsn()::text")
    if not satellites.wait_for_replay(lsn, timeout=timeout):
        raise satellites.SatellitesUnavailable(
            f"The replica has not replayed the primary's WAL up to {lsn} within {timeout:.0f} s: "
            "it is far behind (a bulk load on the server?). Run the cell again in a minute.")


def prepare(lab: Any, rows: int = 500) -> None:
    """The ``profiles`` table (one row per user) and its audit trail, fresh."""
    lab.execute("""
        DROP TABLE IF EXISTS profile_audit, profiles;
        CREATE TABLE profiles (
            user_id  bigint PRIMARY KEY,
            bio      text NOT NULL CHECK (length(bio) <= 200),
            version  int NOT NULL DEFAULT 1
        );
        CREATE TABLE profile_audit (
            id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            user_id   bigint NOT NULL,
            version   int NOT NULL,
            actor     text,              -- current_setting('app.user_id') of the writer
            at        timestamptz NOT NULL DEFAULT clock_timestamp()
        );""")
    lab.execute("INSERT INTO profiles (user_id, bio) SELECT id, 'bio of user ' || id "
                "FROM users ORDER BY id LIMIT %s", [rows])
    lab.execute("CREATE OR REPLACE FUNCTION profile_audit() RETURNS trigger LANGUAGE plpgsql AS $$"
                "BEGIN INSERT INTO profile_audit (user_id, version, actor) VALUES "
                "(NEW.user_id, NEW.version, current_setting('app.user_id', true)); "
                "RETURN NEW; END $$;"
                "CREATE TRIGGER profile_audit AFTER UPDATE ON profiles FOR EACH ROW "
                "EXECUTE FUNCTION profile_audit()")
    catch_up(lab)


def reset_pool(lab: Any) -> int:
    """Close every server connection PgBouncer holds for this lab's database (what a
    session SET or lock left on them goes too); how many were closed.

    The pool names its own server connections (one client transaction held on each, as
    :func:`server_connections` does), so no admin console is needed: a graded notebook's
    role has none."""
    pids = [pid for pid, _, _ in server_connections(satellites.pooler_url(lab.dbname),
                                                    "application_name")]
    with psycopg.connect(lab.url, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # until it is gone
    return len(pids)
