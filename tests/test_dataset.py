"""The shop dataset: reproducible, realistic in shape, and loadable.

Everything runs at the tiny scale or smaller, against throwaway databases named
``test_ds_*`` that are dropped afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import tracemalloc
from typing import Iterator

import psycopg
import pytest

from labs.runtime.config import SCALES, Scale
from labs.data.dataset import (build_database, build_template, dataset_info, ensure_template,
                          table_checksum, template_exists, template_name)
from labs.runtime.errors import DatasetMissing
from labs.data.fake import ShopGenerator, stream_checksum
from labs.runtime.server import Server, connect_admin, ensure_server

TINY = SCALES["tiny"]
# smaller than tiny, for tests that only need "some" rows
MICRO = Scale("micro", customers=600, products=100, orders=2_000, items_per_order=2.5,
              accounts=100, users=500)
TABLES = ["customers", "products", "orders", "order_items", "accounts", "users"]


def _db(tag: str) -> str:
    return f"test_ds_{os.getpid()}_{tag}"


def _drop(server: Server, name: str) -> None:
    with connect_admin(server.url) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            admin.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE false')
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def server() -> Server:
    return ensure_server()


@pytest.fixture(scope="module")
def tiny(server: Server) -> Iterator[tuple[dict, psycopg.Connection]]:
    """The tiny dataset, seed 42, built once for the module."""
    name = _db("tiny")
    info = build_database(server, name, TINY, seed=42)
    conn = psycopg.connect(server.url_for(name), autocommit=True)
    yield info, conn
    conn.close()
    _drop(server, name)


def _scalar(conn: psycopg.Connection, query: str) -> float:
    return conn.execute(query).fetchone()[0]


# --------------------------------------------------------------------------
# reproducibility


def test_same_seed_same_checksum_twice(tiny, server: Server) -> None:
    info, conn = tiny
    name = _db("again")
    try:
        again = build_database(server, name, TINY, seed=42)
        assert again["checksum"] == info["checksum"]
        with psycopg.connect(server.url_for(name)) as other:
            for table in ("customers", "orders"):
                assert table_checksum(other, table) == table_checksum(conn, table)
    finally:
        _drop(server, name)


def test_different_seed_different_checksum() -> None:
    a = [stream_checksum(t.chunks("binary")) for t in ShopGenerator(MICRO, seed=1).tables()]
    b = [stream_checksum(t.chunks("binary")) for t in ShopGenerator(MICRO, seed=2).tables()]
    assert [rows for rows, _ in a] == [rows for rows, _ in b]
    assert all(x[1] != y[1] for x, y in zip(a, b))


def test_text_and_binary_copy_load_the_same_rows(server: Server) -> None:
    names = {fmt: _db(f"fmt_{fmt}") for fmt in ("text", "binary")}
    try:
        for fmt, name in names.items():
            build_database(server, name, MICRO, seed=7, fmt=fmt, constraints=False, vacuum=False)
        with psycopg.connect(server.url_for(names["text"])) as t, \
                psycopg.connect(server.url_for(names["binary"])) as b:
            for table in TABLES:
                assert table_checksum(t, table) == table_checksum(b, table), table
    finally:
        for name in names.values():
            _drop(server, name)


# --------------------------------------------------------------------------
# shapes


def test_row_counts_match_the_scale(tiny) -> None:
    info, conn = tiny
    expected = {"customers": TINY.customers, "products": TINY.products, "orders": TINY.orders,
                "order_items": TINY.order_items, "accounts": TINY.accounts, "users": TINY.users}
    assert info["row_counts"] == expected
    for table, rows in expected.items():
        assert _scalar(conn, f"SELECT count(*) FROM {table}") == rows
    assert dataset_info(conn)["row_counts"] == expected


def test_emails_unique_but_some_collide_ignoring_case(tiny) -> None:
    _, conn = tiny
    assert _scalar(conn, "SELECT count(DISTINCT email) = count(*) FROM customers")
    pairs = _scalar(conn, "SELECT count(*) - count(DISTINCT lower(email)) FROM customers")
    assert 1 <= pairs <= TINY.customers * 0.005


def test_load_test_customer_owns_its_share(tiny) -> None:
    _, conn = tiny
    assert _scalar(conn, "SELECT count(*) FROM customers WHERE is_load_test") == 1
    share = _scalar(conn, "SELECT avg((c.is_load_test)::int) FROM orders o "
                          "JOIN customers c ON c.id = o.customer_id")
    assert 0.04 <= share <= 0.06


def test_load_test_share_zero_disables_it() -> None:
    gen = ShopGenerator(MICRO, seed=42, load_test_share=0)
    assert gen.load_test_id == 0
    orders = gen.orders_and_items()[0]
    assert sum(n for n, _ in orders.chunks("text")) == MICRO.orders


def test_order_total_is_sum_of_items(tiny) -> None:
    _, conn = tiny
    wrong = _scalar(conn, """
        SELECT count(*) FROM (SELECT id, total FROM orders TABLESAMPLE BERNOULLI (20)
                              REPEATABLE (1)) o
        WHERE o.total <> (SELECT sum(quantity * unit_price) FROM order_items i
                          WHERE i.order_id = o.id)""")
    assert wrong == 0


def test_null_ratios_in_range(tiny) -> None:
    _, conn = tiny
    ratios = conn.execute("""
        SELECT avg((phone IS NULL)::int), avg((city IS NULL)::int),
               avg((deleted_at IS NOT NULL)::int) FROM customers""").fetchone()
    assert 0.17 <= ratios[0] <= 0.23
    assert 0.01 <= ratios[1] <= 0.06
    assert 0.01 <= ratios[2] <= 0.035
    note = _scalar(conn, "SELECT avg((note IS NULL)::int) FROM orders")
    assert 0.9 <= note <= 0.99
    deleted = _scalar(conn, "SELECT avg((deleted_at IS NOT NULL)::int) FROM products")
    assert 0.01 <= deleted <= 0.06


def test_status_follows_age_and_season(tiny) -> None:
    _, conn = tiny
    old = dict(conn.execute("""SELECT status, count(*) FROM orders
        WHERE created_at < '2026-06-01' GROUP BY 1""").fetchall())
    assert "pending" not in old and old["delivered"] > 0.8 * sum(old.values())
    young = _scalar(conn, """SELECT count(*) FROM orders
        WHERE created_at > '2026-10-31' AND status IN ('pending', 'paid')""")
    assert young > 0
    by_month = dict(conn.execute(
        "SELECT extract(month FROM created_at)::int, count(*) FROM orders GROUP BY 1").fetchall())
    assert by_month[12] > 1.5 * by_month[2]


def test_orders_per_customer_are_skewed(tiny) -> None:
    _, conn = tiny
    top, median = conn.execute("""
        SELECT max(n), percentile_cont(0.5) WITHIN GROUP (ORDER BY n) FROM (
            SELECT count(*) AS n FROM orders o JOIN customers c ON c.id = o.customer_id
            WHERE NOT c.is_load_test GROUP BY o.customer_id) s""").fetchone()
    assert top > 8 * median


# --------------------------------------------------------------------------
# memory


def test_generation_memory_is_bounded_by_the_chunk() -> None:
    big = dataclasses.replace(MICRO, users=200_000)
    gen = ShopGenerator(big, seed=42, chunk_rows=10_000)
    tracemalloc.start()
    try:
        rows = 0
        for n, payload in gen.users().chunks("binary"):
            assert n <= 10_000
            rows += n
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == 200_000
    assert gen.max_chunk_bytes < 10_000 * 80  # a users row is ~30 bytes encoded
    # the whole table would be ~6 MB encoded; one chunk's working set is far less
    assert peak < 5_000_000, peak


# --------------------------------------------------------------------------
# table_checksum, templates


def test_table_checksum_detects_changed_and_deleted_rows(tiny, server: Server) -> None:
    info, _ = tiny
    with psycopg.connect(server.url_for(info["database"])) as conn:  # a transaction
        before = table_checksum(conn, "orders")
        assert before[0] == TINY.orders
        conn.execute("UPDATE orders SET note = 'changed' WHERE id = 17")
        changed = table_checksum(conn, "orders")
        assert changed[0] == before[0] and changed[1] != before[1]
        conn.rollback()
        items = table_checksum(conn, "order_items")
        conn.execute("DELETE FROM order_items WHERE id = 99")
        deleted = table_checksum(conn, "order_items")
        assert deleted[0] == items[0] - 1 and deleted[1] != items[1]
        conn.rollback()
        assert table_checksum(conn, "orders") == before


def test_ensure_template_missing_names_the_fix(server: Server) -> None:
    scale = dataclasses.replace(MICRO, name=f"test_ds_missing_{os.getpid()}")
    with pytest.raises(DatasetMissing) as caught:
        ensure_template(server, scale, build_if_missing=False)
    assert f"make data SCALE={scale.name}" in str(caught.value)


def test_build_template_then_clone(server: Server) -> None:
    scale = dataclasses.replace(MICRO, name=f"test_ds_{os.getpid()}_micro")
    name = template_name(scale)
    clone = _db("clone")
    try:
        assert not template_exists(server, scale)
        info = build_template(server, scale, seed=3, progress=False)
        assert template_exists(server, scale)
        assert ensure_template(server, scale, build_if_missing=False)["checksum"] == info["checksum"]
        with connect_admin(server.url) as admin:
            assert admin.execute("SELECT datistemplate FROM pg_database WHERE datname = %s",
                                 (name,)).fetchone()[0]
            admin.execute(f'CREATE DATABASE "{clone}" TEMPLATE "{name}"')
        with psycopg.connect(server.url_for(clone)) as conn:
            got = dataset_info(conn)
            assert got["checksum"] == info["checksum"] and got["seed"] == 3
            assert got["scale"] == scale.name
    finally:
        _drop(server, clone)
        _drop(server, name)


def test_same_bytes_in_another_process_with_another_hash_seed() -> None:
    """Faker pools must not depend on set order (it_IT cities once did)."""
    import subprocess
    import sys

    code = ("from tests.test_dataset import MICRO; from labs.data.fake import ShopGenerator, "
            "stream_checksum; print(stream_checksum(ShopGenerator(MICRO, seed=5)"
            ".customers().chunks('text'))[1])")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, env=dict(os.environ, PYTHONHASHSEED=str(h)),
                              cwd=str(__import__("labs.runtime.config").runtime.config.ROOT)).stdout
               for h in (1, 2)}
    assert len(digests) == 1
