"""Template databases of the shop dataset, one per scale.

A challenge never loads data itself: it clones ``lab_tpl_<scale>`` with
``CREATE DATABASE ... TEMPLATE``, which copies files instead of replaying ten
million INSERTs. This module builds those templates (generator: ``labs.fake``)
and answers questions about them.

A build goes into ``<template>_building`` and is renamed only when complete,
so a half-built database never carries the template's name. Completion is
also written as a JSON comment on the template database, which lets
``template_exists`` check it from the admin connection without connecting to
the template (a connection to a template makes concurrent clones fail).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from .config import DATASETS_DIR, Scale
from .errors import DatasetMissing
from .fake import (BINARY_HEADER, BINARY_TRAILER, DEFAULT_FORMAT, FAKER_VERSION, ShopGenerator,
                   Table)
from .server import Server, connect_admin

SHOP_DIR = DATASETS_DIR / "shop"


def template_name(scale: Scale) -> str:
    return f"lab_tpl_{scale.name}"


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


def table_checksum(conn: psycopg.Connection, table: str, order_by: str = "id") -> tuple[int, str]:
    """(row count, checksum of the contents), computed in the server.

    The checksum is the sum of two 64-bit hashes of every row's text, so it
    needs no ordering and no giant string (``md5(string_agg(...))`` hits the
    1 GB limit at ten million rows). Any changed, added or deleted row changes
    it. ``order_by`` is accepted for callers that pass it; a sum does not
    depend on order.
    """
    del order_by  # an order-independent aggregate needs no ORDER BY
    query = sql.SQL(
        "SELECT count(*), md5(coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text"
        " || ':' || coalesce(sum(hashtextextended(t::text, 1)::numeric), 0)::text) "
        "FROM {} AS t").format(sql.Identifier(*table.split(".")))
    count, digest = conn.execute(query).fetchone()
    return int(count), digest


# --------------------------------------------------------------------------
# loading


def _copy_table(conn: psycopg.Connection, table: Table, fmt: str, bar: Any) -> tuple[int, str]:
    import hashlib

    h = hashlib.sha256()
    rows = 0
    with conn.cursor() as cur:
        # the queued writer sends from a thread, so numpy builds the next chunk
        # while libpq pushes this one
        with cur.copy(table.copy_sql(fmt), writer=QueuedLibpqWriter(cur)) as copy:
            if fmt == "binary":
                copy.write(BINARY_HEADER)
            for n, payload in table.chunks(fmt):
                buf = memoryview(payload)
                h.update(buf)
                copy.write(buf)
                rows += n
                if bar is not None:
                    bar.update(n)
            if fmt == "binary":
                copy.write(BINARY_TRAILER)
    return rows, h.hexdigest()


def load_tables(url: str, gen: ShopGenerator, fmt: str = DEFAULT_FORMAT,
                progress: bool = False, parallel: bool = True) -> dict[str, tuple[int, str]]:
    """COPY every table of ``gen`` into the (empty, keyless) tables at ``url``.

    With ``parallel`` the big independent tables load on a second connection
    at the same time: generation is one core, each COPY backend another.
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

    def run(batch: list[Table]) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            for t in batch:
                results[t.name] = _copy_table(conn, t, fmt, _Bar())

    by_name = {t.name: t for t in tables}
    if parallel:
        # orders and order_items share their draws, so they must not be split
        # across threads (each would draw every chunk again)
        first = [by_name[n] for n in ("orders", "order_items", "products")]
        second = [by_name[n] for n in ("users", "customers", "accounts")]
        errors: list[BaseException] = []

        def guarded(batch: list[Table]) -> None:
            try:
                run(batch)
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

        worker = threading.Thread(target=guarded, args=(second,), daemon=True)
        worker.start()
        guarded(first)
        worker.join()
        if errors:
            raise errors[0]
    else:
        run(tables)
    bar.close()
    return {t.name: results[t.name] for t in tables}


def combined_checksum(per_table: dict[str, tuple[int, str]]) -> str:
    import hashlib

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
