"""Why constraints come last: the same load with keys and indexes before vs after.

    .venv/bin/python bench/bench_constraints.py [--scale small]

Both runs load the same rows, one table at a time on one connection (foreign
keys need referenced rows first, so no parallel load here; orders are drawn
twice, once for themselves and once for their items, in both runs), then VACUUM
ANALYZE. "before" runs constraints.sql on the empty tables, so every COPY row
maintains seven B-trees and checks its foreign keys; "after" loads bare tables
and runs constraints.sql at the end. Writes bench/results/constraints.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labs.runtime.config import ROOT, current_scale  # noqa: E402
from labs.data.dataset import SHOP_DIR, copy_group, generator_pool  # noqa: E402
from labs.data.fake import ShopGenerator  # noqa: E402
from labs.runtime.server import connect_admin, ensure_server  # noqa: E402

DB = "lab_bench_constraints"


def run(server, scale, constraints_first: bool) -> dict:
    with connect_admin(server.url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DB}" TEMPLATE template0')
    url = server.url_for(DB)
    timings: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((SHOP_DIR / "schema.sql").read_text())
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        if constraints_first:
            t = time.perf_counter()
            conn.execute((SHOP_DIR / "constraints.sql").read_text())
            timings["constraints"] = time.perf_counter() - t
        t = time.perf_counter()
        gen = ShopGenerator(scale, seed=42)
        pool = generator_pool(gen)
        try:
            # one table at a time, referenced tables first: with the foreign
            # keys in place, order_items cannot stream beside orders
            for table in gen.tables():
                copy_group([conn], gen, (table.name,), pool=pool)
        finally:
            pool.shutdown()
        timings["load"] = time.perf_counter() - t
        if not constraints_first:
            t = time.perf_counter()
            conn.execute((SHOP_DIR / "constraints.sql").read_text())
            timings["constraints"] = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
        timings["vacuum"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - started
    with connect_admin(server.url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    return {k: round(v, 2) for k, v in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small")
    args = parser.parse_args()
    server = ensure_server()
    scale = current_scale(args.scale)
    result = {"scale": scale.name,
              "rows": scale.customers + scale.products + scale.orders + scale.order_items
              + scale.accounts + scale.users,
              "constraints_after_load": run(server, scale, constraints_first=False),
              "constraints_before_load": run(server, scale, constraints_first=True)}
    result["slowdown_when_before"] = round(result["constraints_before_load"]["total"]
                                           / result["constraints_after_load"]["total"], 2)
    out = ROOT / "bench" / "results" / "constraints.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
