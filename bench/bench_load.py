"""Load benchmark: realistic generated rows against bare COPY and pgbench -i.

    .venv/bin/python bench/bench_load.py [--rows 10000000] [--no-pgbench]

In one run, into scratch databases (``lab_bench``, ``lab_bench_pgbench``):

1. generator only: build and encode ``--rows`` customers, no database (the
   ceiling the generator puts on any load), text and binary;
2. realistic load: generate + COPY the same customers, text and binary;
3. anchor: the same rows pre-encoded in memory, then a bare binary COPY;
4. anchor: ``pgbench -i -s <rows/100k>`` (10 million pgbench_accounts rows);
5. a cProfile of the generator on a sample, to show what bounds it.

Writes bench/results/load.json and bench/results/load.md.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import os
import platform
import pstats
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labs.runtime.config import ROOT, scale_from_rows  # noqa: E402
from labs.data.dataset import SHOP_DIR, copy_group, generator_pool  # noqa: E402
from labs.data.fake import BINARY_HEADER, BINARY_TRAILER, FAKER_VERSION, ShopGenerator  # noqa: E402
from labs.runtime.server import ensure_server, connect_admin  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DB = "lab_bench"
PGBENCH_DB = "lab_bench_pgbench"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux: ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def recreate(server, name: str) -> None:
    with connect_admin(server.url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def fresh_table(conn: psycopg.Connection) -> None:
    conn.execute("TRUNCATE customers")
    conn.execute("CHECKPOINT")  # every run starts with no dirty buffers to flush


def generator(rows: int) -> ShopGenerator:
    scale = dataclasses.replace(scale_from_rows(rows), name=f"bench{rows}", customers=rows)
    return ShopGenerator(scale, seed=42)


def generate_only(gen: ShopGenerator, fmt: str) -> dict:
    t = time.perf_counter()
    rows = size = 0
    for n, payload in gen.customers().chunks(fmt):
        rows += n
        size += payload.nbytes
    secs = time.perf_counter() - t
    _sizes[fmt] = size
    return {"rows": rows, "bytes": size, "seconds": round(secs, 2),
            "rows_per_s": round(rows / secs), "mb_per_s": round(size / secs / 1e6, 1)}


def realistic_load(conn: psycopg.Connection, gen: ShopGenerator, fmt: str) -> dict:
    """Generate + COPY: two forked workers encode alternate chunks (numpy holds
    the GIL, so threads would not overlap), this process forwards the bytes."""
    fresh_table(conn)
    gen.max_chunk_bytes = 0
    t = time.perf_counter()
    pool = generator_pool(gen, workers=2)
    try:
        rows, digest = copy_group([conn], gen, ("customers",), fmt, pool)["customers"]
    finally:
        pool.shutdown()
    secs = time.perf_counter() - t
    size = _copied_bytes(gen, fmt)
    return {"rows": rows, "bytes": size, "seconds": round(secs, 2),
            "rows_per_s": round(rows / secs), "mb_per_s": round(size / secs / 1e6, 1),
            "sha256": digest, "max_chunk_mb": round(gen.max_chunk_bytes / 1e6, 1),
            "peak_rss_mb": peak_rss_mb(), "worker_peak_rss_mb": children_peak_rss_mb()}


_sizes: dict[str, int] = {}


def _copied_bytes(gen: ShopGenerator, fmt: str) -> int:
    return _sizes[fmt]


def children_peak_rss_mb() -> float:
    """Peak RSS of the largest finished child (the generator worker)."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


def bare_copy(conn: psycopg.Connection, gen: ShopGenerator) -> dict:
    t = time.perf_counter()
    blocks = [bytes(payload) for _, payload in gen.customers().chunks("binary")]
    encode_secs = time.perf_counter() - t
    rows = gen.scale.customers
    size = sum(len(b) for b in blocks)
    fresh_table(conn)
    t = time.perf_counter()
    with conn.cursor() as cur:
        with cur.copy(gen.customers().copy_sql("binary")) as copy:
            copy.write(BINARY_HEADER)
            for block in blocks:
                copy.write(block)
            copy.write(BINARY_TRAILER)
    secs = time.perf_counter() - t
    return {"rows": rows, "bytes": size, "seconds": round(secs, 2),
            "rows_per_s": round(rows / secs), "mb_per_s": round(size / secs / 1e6, 1),
            "pre_encode_seconds": round(encode_secs, 2), "peak_rss_mb": peak_rss_mb()}


def pgbench_init(server, scale: int) -> dict:
    recreate(server, PGBENCH_DB)
    url = psycopg.conninfo.conninfo_to_dict(server.url)
    env = dict(os.environ, PGPASSWORD=str(url.get("password", "lab")))
    from labs.runtime.server import find_bindir

    bindir = find_bindir()
    binary = str(bindir / "pgbench") if bindir else "pgbench"
    cmd = [binary, "-i", "-s", str(scale), "-q", "-h", str(url.get("host", "127.0.0.1")),
           "-U", str(url.get("user", "lab")), "-p", str(url.get("port", 5432)), PGBENCH_DB]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    secs = time.perf_counter() - t
    text = proc.stderr + proc.stdout
    parts: dict[str, float] = {}
    match = re.search(r"done in ([\d.]+) s \((.*)\)", text)
    if match:
        for item in match.group(2).split(","):
            m = re.match(r"\s*([a-z -]+?) ([\d.]+) s", item)
            if m:
                parts[m.group(1)] = float(m.group(2))
    rows = scale * 100_000
    gen_secs = parts.get("client-side generate", secs)
    with connect_admin(server.url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PGBENCH_DB}" WITH (FORCE)')
    return {"scale": scale, "accounts_rows": rows, "seconds_total": round(secs, 2),
            "phases": parts, "generate_rows_per_s": round(rows / gen_secs),
            "output_tail": text.strip().splitlines()[-1:]}


def profile_generator(rows: int) -> str:
    gen = generator(rows)
    prof = cProfile.Profile()
    prof.enable()
    for _ in gen.customers().chunks("binary"):
        pass
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if "ncalls" in ln)
    return "\n".join(lines[start:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--no-pgbench", action="store_true")
    args = parser.parse_args()
    server = ensure_server()
    recreate(server, DB)
    url = server.url_for(DB)
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30),
                    "python": platform.python_version(), "server_version": server.version,
                    "faker": FAKER_VERSION},
        "rows": args.rows, "table": "customers (9 columns, realistic)",
    }
    gen = generator(args.rows)
    print(f"generator only, {args.rows:,} customers ...", flush=True)
    results["generate_only"] = {fmt: generate_only(gen, fmt) for fmt in ("binary", "text")}
    results["generate_only_peak_rss_mb"] = peak_rss_mb()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((SHOP_DIR / "schema.sql").read_text())
        conn.execute("SET synchronous_commit = off")
        results["realistic_load"] = {}
        for fmt in ("text", "binary"):
            print(f"generate + COPY ({fmt}) ...", flush=True)
            results["realistic_load"][fmt] = realistic_load(conn, gen, fmt)
        print("bare binary COPY of pre-encoded rows ...", flush=True)
        results["bare_binary_copy"] = bare_copy(conn, gen)
    with connect_admin(server.url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    if not args.no_pgbench:
        print("pgbench -i ...", flush=True)
        results["pgbench_init"] = pgbench_init(server, max(1, args.rows // 100_000))
    print("profiling the generator ...", flush=True)
    results["generator_profile_1m"] = profile_generator(min(args.rows, 1_000_000))

    load = results["realistic_load"]
    best = max(load, key=lambda f: load[f]["rows_per_s"])
    results["chosen_format"] = best
    bare = results["bare_binary_copy"]["rows_per_s"]
    results["ratios"] = {
        "realistic_vs_bare_binary_copy": round(load[best]["rows_per_s"] / bare, 2),
        "binary_vs_text_load": round(load["binary"]["rows_per_s"] / load["text"]["rows_per_s"], 2),
    }
    if "pgbench_init" in results:
        results["ratios"]["realistic_vs_pgbench_generate"] = round(
            load[best]["rows_per_s"] / results["pgbench_init"]["generate_rows_per_s"], 2)
    results["targets"] = {
        "10M_rows_within_60s": load[best]["seconds"] * 10_000_000 / args.rows <= 60,
        "at_least_half_of_bare_copy": results["ratios"]["realistic_vs_bare_binary_copy"] >= 0.5,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "load.md").write_text(render(results))
    print((RESULTS / "load.md").read_text())


def render(r: dict) -> str:
    g, load, bare = r["generate_only"], r["realistic_load"], r["bare_binary_copy"]
    lines = [
        "# Load benchmark", "",
        f"`bench/bench_load.py --rows {r['rows']}` on {r['machine']['cpus']} cores, "
        f"{r['machine']['ram_gb']} GiB, PostgreSQL {r['machine']['server_version']}, "
        f"Python {r['machine']['python']}, Faker {r['machine']['faker']}. "
        f"Table: {r['table']}, into an empty table without indexes.", "",
        "| run | seconds | rows/s | MB/s | peak RSS MB |", "|---|---:|---:|---:|---:|",
    ]
    for fmt in ("binary", "text"):
        x = g[fmt]
        lines.append(f"| generator only, {fmt} encoding (no DB) | {x['seconds']} | "
                     f"{x['rows_per_s']:,} | {x['mb_per_s']} | {r['generate_only_peak_rss_mb']} |")
    for fmt in ("text", "binary"):
        x = load[fmt]
        lines.append(f"| generate + COPY, {fmt} | {x['seconds']} | {x['rows_per_s']:,} | "
                     f"{x['mb_per_s']} | {x['peak_rss_mb']} |")
    lines.append(f"| bare binary COPY, pre-encoded in memory | {bare['seconds']} | "
                 f"{bare['rows_per_s']:,} | {bare['mb_per_s']} | {bare['peak_rss_mb']} |")
    if "pgbench_init" in r:
        p = r["pgbench_init"]
        lines.append(f"| pgbench -i -s {p['scale']} (total, incl. vacuum + keys) | "
                     f"{p['seconds_total']} | {round(p['accounts_rows'] / p['seconds_total']):,} | | |")
        lines.append(f"| pgbench -i, client-side generate phase only | "
                     f"{p['phases'].get('client-side generate', '')} | "
                     f"{p['generate_rows_per_s']:,} | | |")
    lines += ["", f"Chosen format: **{r['chosen_format']}**.", "", "Ratios:", ""]
    lines += [f"- {k.replace('_', ' ')}: **{v}**" for k, v in r["ratios"].items()]
    lines += ["", "Targets:", ""]
    lines += [f"- {k.replace('_', ' ')}: {'met' if v else 'MISSED'}" for k, v in r["targets"].items()]
    lines += ["", "Generator profile (1M rows, binary, top functions by own time):", "", "```",
              r["generator_profile_1m"], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
