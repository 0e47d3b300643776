"""Template databases of the shop dataset, one per scale.

A challenge never loads data itself: it clones ``lab_tpl_<scale>`` with
``CREATE DATABASE ... TEMPLATE``, which copies files instead of replaying ten
million INSERTs. This module builds those templates (generator: ``labs.data.fake``)
and answers questions about them.

A build goes into ``<template>_building`` and is renamed only when complete,
so a half-built database never carries the template's name. Completion is
also written as a JSON comment on the template database, which lets
``template_exists`` check it from the admin connection without connecting to
the template (a connection to a template makes concurrent clones fail).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from typing import Any, Iterator

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from ..runtime.config import DATASETS_DIR, Scale
from ..runtime.errors import DatasetMissing
from .fake import BINARY_HEADER, BINARY_TRAILER, DEFAULT_FORMAT, FAKER_VERSION, ShopGenerator
from ..runtime.server import Server, connect_admin

SHOP_DIR = DATASETS_DIR / "shop"


def template_name(scale: Scale) -> str:
    """The template a scale's challenge databases are cloned from.

    ``LAB_TEMPLATE`` names another one: grading gives each graded notebook its
    own copy, owned by that notebook's database role.
    """
    return os.environ.get("LAB_TEMPLATE") or f"lab_tpl_{scale.name}"


def _lock_key(name: str) -> str:
    return f"lab_dataset:{name}"


# --------------------------------------------------------------------------
# looking


def _template_comment(admin: psycopg.Connection, name: str) -> dict | None:
    row = admin.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (name,)).fetchone()
    if row is None or not row[0]:
        return None
    try:
        info = json.loads(row[0])
    except ValueError:
        return None
    return info if isinstance(info, dict) and info.get("checksum") else None


def template_exists(server: Server, scale: Scale) -> bool:
    """The template exists and its build completed (its lab_dataset row was written)."""
    with connect_admin(server.url) as admin:
        return _template_comment(admin, template_name(scale)) is not None


def dataset_info(conn: psycopg.Connection) -> dict:
    """The lab_dataset row of a database cloned from a template."""
    row = conn.execute(
        "SELECT scale, seed, faker_version, row_counts, checksum, built_at, build_seconds "
        "FROM lab_dataset ORDER BY built_at DESC LIMIT 1").fetchone()
    if row is None:
        raise DatasetMissing("This database has no lab_dataset row: it was not cloned from a "
                             "lab template. Recreate it from the challenge's setup cell.")
    keys = ("scale", "seed", "faker_version", "row_counts", "checksum", "built_at",
            "build_seconds")
    info = dict(zip(keys, row))
    info["build_seconds"] = float(info["build_seconds"])
    return info


def query_checksum(conn: psycopg.Connection, query: str, params: Any = None) -> tuple[int, str]:
    """(row count, checksum of the rows) of any query, computed in the server.

    The checksum is the sum of two 64-bit hashes of every row's text, so it
    needs no ordering and no giant string (``md5(string_agg(...))`` hits the
    1 GB limit at ten million rows). Any changed, added or deleted row changes
    it, and so does a duplicated one.
    """
    count, digest = conn.execute(
        "SELECT count(*), md5(coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text"
        " || ':' || coalesce(sum(hashtextextended(t::text, 1)::numeric), 0)::text) "
        f"FROM ({query}) AS t", params).fetchone()
    return int(count), digest


def table_checksum(conn: psycopg.Connection, table: str, order_by: str = "id") -> tuple[int, str]:
    """:func:`query_checksum` of a whole table. ``order_by`` is accepted for callers that
    pass it; a sum does not depend on order."""
    del order_by  # an order-independent aggregate needs no ORDER BY
    name = sql.Identifier(*table.split(".")).as_string(conn)
    return query_checksum(conn, f"SELECT * FROM {name}")


# --------------------------------------------------------------------------
# loading


# Generation runs in a forked worker process, not a thread: numpy holds the GIL
# through fancy indexing and masking, which starved the COPY-sending thread
# (measured: 25 s for 10M rows in one process against 16 s of generation and
# 11 s of bare COPY). In its own process the generator overlaps with the
# server's parsing; the parent only forwards bytes.
_WORKER_GEN: ShopGenerator | None = None
PREFETCH = 2  # chunks generated ahead of the one being sent: bounds memory


def _worker_init(gen: ShopGenerator) -> None:
    global _WORKER_GEN
    _WORKER_GEN = gen  # inherited through fork, not pickled


def _worker_chunk(names: tuple[str, ...], no: int, fmt: str) -> list[tuple[int, bytes]]:
    assert _WORKER_GEN is not None
    out = []
    for name in names:
        n, payload = _WORKER_GEN.table(name).chunk(no, fmt)
        out.append((n, payload.tobytes()))
    return out


def generator_pool(gen: ShopGenerator, workers: int = 1) -> ProcessPoolExecutor:
    """Forked worker processes that encode chunks of ``gen``'s tables."""
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"),
                               initializer=_worker_init, initargs=(gen,))
    # fork now, from this thread, before other threads start
    for f in [pool.submit(int) for _ in range(workers)]:
        f.result()
    return pool


def _produce(gen: ShopGenerator, names: tuple[str, ...], fmt: str,
             pool: ProcessPoolExecutor | None) -> Iterator[list[tuple[int, Any]]]:
    n_chunks = gen.table(names[0]).n_chunks
    if pool is None:
        for no in range(n_chunks):
            yield [gen.table(name).chunk(no, fmt) for name in names]
        return
    pending: deque = deque()
    for no in range(n_chunks):
        pending.append(pool.submit(_worker_chunk, names, no, fmt))
        if len(pending) > PREFETCH:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def copy_group(conns: list[psycopg.Connection], gen: ShopGenerator, names: tuple[str, ...],
               fmt: str = DEFAULT_FORMAT, pool: ProcessPoolExecutor | None = None,
               bar: Any = None) -> dict[str, tuple[int, str]]:
    """COPY tables whose chunks come from the same draws (orders and their
    items), one connection each, all streams open at once.

    Returns {table: (rows, sha256 of the encoded stream)}.
    """
    tables = [gen.table(name) for name in names]
    hashes = [hashlib.sha256() for _ in names]
    rows = [0] * len(names)
    with ExitStack() as stack:
        copies = []
        for conn, table in zip(conns, tables):
            cur = stack.enter_context(conn.cursor())
            # the queued writer sends from a thread while we wait for the next chunk
            copy = stack.enter_context(cur.copy(table.copy_sql(fmt),
                                                writer=QueuedLibpqWriter(cur)))
            if fmt == "binary":
                copy.write(BINARY_HEADER)
            copies.append(copy)
        for chunk in _produce(gen, names, fmt, pool):
            for i, (n, payload) in enumerate(chunk):
                buf = memoryview(payload).cast("B")
                gen.max_chunk_bytes = max(gen.max_chunk_bytes, buf.nbytes)
                hashes[i].update(buf)
                copies[i].write(buf)
                rows[i] += n
                if bar is not None:
                    bar.update(n)
        if fmt == "binary":
            for copy in copies:
                copy.write(BINARY_TRAILER)
    return {name: (r, h.hexdigest()) for name, r, h in zip(names, rows, hashes)}


def load_tables(url: str, gen: ShopGenerator, fmt: str = DEFAULT_FORMAT,
                progress: bool = False, parallel: bool = True,
                processes: bool = True) -> dict[str, tuple[int, str]]:
    """COPY every table of ``gen`` into the (empty, keyless) tables at ``url``.

    With ``parallel`` two streams load at once (orders + order_items and
    products; users, customers and accounts). With ``processes`` each stream's
    chunks are generated in a forked worker process.
    """
    from tqdm.auto import tqdm

    tables = gen.tables()
    total = sum(t.rows for t in tables)
    results: dict[str, tuple[int, str]] = {}
    bar = tqdm(total=total, unit="rows", unit_scale=True, desc=f"loading {gen.scale.name}",
               disable=not progress, smoothing=0.1)
    lock = threading.Lock()

    class _Bar:  # tqdm.update from two threads, serialised
        def update(self, n: int) -> None:
            with lock:
                bar.update(n)

    groups = [("orders", "order_items"), ("products",), ("users",), ("customers",),
              ("accounts",)]
    batches = [groups[:2], groups[2:]] if parallel else [groups]
    pools = [generator_pool(gen) if processes else None for _ in batches]

    def run(batch: list[tuple[str, ...]], pool: ProcessPoolExecutor | None) -> None:
        conns = [psycopg.connect(url, autocommit=True) for _ in range(2)]
        try:
            for conn in conns:
                conn.execute("SET synchronous_commit = off")
            for names in batch:
                results.update(copy_group(conns[:len(names)], gen, names, fmt, pool, _Bar()))
        finally:
            for conn in conns:
                conn.close()

    errors: list[BaseException] = []

    def guarded(batch: list[tuple[str, ...]], pool: ProcessPoolExecutor | None) -> None:
        try:
            run(batch, pool)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    try:
        threads = [threading.Thread(target=guarded, args=(b, p), daemon=True)
                   for b, p in zip(batches[1:], pools[1:])]
        for t in threads:
            t.start()
        guarded(batches[0], pools[0])
        for t in threads:
            t.join()
    finally:
        for pool in pools:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        bar.close()
    if errors:
        raise errors[0]
    return {t.name: results[t.name] for t in tables}


def combined_checksum(per_table: dict[str, tuple[int, str]]) -> str:
    h = hashlib.sha256()
    for name in sorted(per_table):
        rows, digest = per_table[name]
        h.update(f"{name}:{rows}:{digest}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------
# building


def _drop_database(admin: psycopg.Connection, name: str) -> None:
    exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if exists:
        # a template cannot be dropped until it is an ordinary database again
        admin.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def build_database(server: Server, dbname: str, scale: Scale, seed: int = 42,
                   progress: bool = False, load_test_share: float = 0.05,
                   fmt: str = DEFAULT_FORMAT, constraints: bool = True,
                   vacuum: bool = True) -> dict:
    """Create ``dbname`` (dropping any old one) and fill it; no template steps.

    Used by ``build_template`` and by the tests, which build tiny throwaway
    databases.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    with connect_admin(server.url) as admin:
        _drop_database(admin, dbname)
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
            sql.Identifier(dbname)))
    url = server.url_for(dbname)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((SHOP_DIR / "schema.sql").read_text())
        t = time.perf_counter()
        gen = ShopGenerator(scale, seed=seed, load_test_share=load_test_share)
        per_table = load_tables(url, gen, fmt=fmt, progress=progress)
        timings["load"] = time.perf_counter() - t
        if constraints:
            t = time.perf_counter()
            # one sorted pass per index; more memory means fewer merge passes
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute((SHOP_DIR / "constraints.sql").read_text())
            timings["constraints"] = time.perf_counter() - t
        if vacuum:
            t = time.perf_counter()
            # fresh statistics and visibility map, so clones plan and scan as
            # a settled production database would
            conn.execute("VACUUM (ANALYZE)")
            timings["vacuum"] = time.perf_counter() - t
        seconds = time.perf_counter() - started
        row_counts = {name: rows for name, (rows, _) in per_table.items()}
        checksum = combined_checksum(per_table)
        conn.execute(
            "INSERT INTO lab_dataset (scale, seed, faker_version, row_counts, checksum, "
            "build_seconds) VALUES (%s, %s, %s, %s, %s, %s)",
            (scale.name, seed, FAKER_VERSION, json.dumps(row_counts), checksum,
             round(seconds, 3)))
    total = sum(row_counts.values())
    return {
        "database": dbname, "scale": scale.name, "seed": seed, "faker_version": FAKER_VERSION,
        "format": fmt, "load_test_share": load_test_share, "row_counts": row_counts,
        "rows": total, "checksum": checksum,
        "table_checksums": {name: digest for name, (_, digest) in per_table.items()},
        "seconds": round(seconds, 3), "rows_per_second": round(total / seconds),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "max_chunk_bytes": gen.max_chunk_bytes,
    }


def _build_locked(admin: psycopg.Connection, server: Server, scale: Scale, seed: int,
                  progress: bool, load_test_share: float) -> dict:
    name = template_name(scale)
    building = f"{name}_building"
    info = build_database(server, building, scale, seed=seed, progress=progress,
                          load_test_share=load_test_share)
    _drop_database(admin, name)
    ident = sql.Identifier(name)
    admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building),
                                                                   ident))
    admin.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(ident))
    info["database"] = name
    summary = {k: info[k] for k in ("scale", "seed", "faker_version", "row_counts", "checksum",
                                    "seconds", "load_test_share")}
    # the completion marker template_exists reads without connecting
    admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        ident, sql.Literal(json.dumps(summary))))
    return info


def build_template(server: Server, scale: Scale, seed: int = 42, progress: bool = True,
                   load_test_share: float = 0.05) -> dict:
    """Build (or rebuild) ``lab_tpl_<scale>`` and return what was built.

    Concurrent builders of the same scale queue on an advisory lock.
    """
    with connect_admin(server.url) as admin:
        admin.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))",
                      (_lock_key(template_name(scale)),))
        try:
            return _build_locked(admin, server, scale, seed, progress, load_test_share)
        finally:
            admin.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))",
                          (_lock_key(template_name(scale)),))


def ensure_template(server: Server, scale: Scale, build_if_missing: bool) -> dict:
    """The template's info; built first if missing and allowed, else DatasetMissing."""
    name = template_name(scale)
    with connect_admin(server.url) as admin:
        info = _template_comment(admin, name)
        if info is not None:
            return info
        if not build_if_missing:
            raise DatasetMissing(
                f"The {scale.name} dataset has not been built yet (no template database "
                f"{name}). Build it once with `make data SCALE={scale.name}`; the tiny scale "
                "builds in seconds, production in a few minutes.",
                f"server: {server.kind}, database {name} missing or incomplete")
        admin.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (_lock_key(name),))
        try:
            # another worker may have built it while we waited for the lock
            info = _template_comment(admin, name)
            if info is not None:
                return info
            built = _build_locked(admin, server, scale, 42, False, 0.05)
            return _template_comment(admin, name) or built
        finally:
            admin.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))",
                          (_lock_key(name),))
