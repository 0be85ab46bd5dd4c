#!/usr/bin/env python3
"""Prints, from a benchmark's results.json, the tables the README and src/cuda/NOTES.md quote.

Usage: tools/readme_tables.py bench/results/<run>/results.json

1. The README's performance table (CUDA-graph replay, both shapes, default and static paths, the
   SGLang path and the run's floor).
2. NOTES.md's standing against issue 5's targets for DeepSeek-V3.2, the targets computed as the
   issue defines them (floor = the op's bytes / 4.2 TB/s): T <= 64: 2.5 us; 128 <= T <= 2048:
   max(3.0, 1.3 x floor); T >= 4096: 1.08 x floor + 1.2.
3. The worst ratio to the SGLang path per shape.

Copying figures by hand into the README is how a table goes stale or wrong; this prints them from
the run that the evidence folder holds.
"""
import functools
import importlib.util
import json
import sys
from pathlib import Path

README_T = (1, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
SHAPES = ((7168, 64), (6144, 32))
ISSUE_RATE = 4.2e12  # bytes per second: issue 5's floor


@functools.lru_cache(maxsize=None)
def _load_report():
    # The benchmark's own formatting (python/dsa_indexer/_bench_report.py), loaded from this
    # checkout, so the README's figures read as its tables do.
    path = Path(__file__).resolve().parents[1] / "python" / "dsa_indexer" / "_bench_report.py"
    spec = importlib.util.spec_from_file_location("_bench_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fmt(us):
    return _load_report()._fmt_us(us, "-")


def target_us(T, bytes_):
    floor = bytes_ / ISSUE_RATE * 1e6
    if T <= 64:
        return 2.5
    if T <= 2048:
        return max(3.0, 1.3 * floor)
    return 1.08 * floor + 1.2


def graph_records(run):
    return {(r["K"], r["H"], r["T"]): r for r in run["records"] if r["mode"] == "graph"}


def performance_table(run):
    """The README's performance table, header included, one string per line."""
    graph = graph_records(run)
    lines = [
        "| T | DeepSeek-V3.2 (K 7168, H 64) | static | sglang | floor | GLM-5 (K 6144, H 32) | static | sglang | floor |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for T in README_T:
        cells = []
        for K, H in SHAPES:
            r = graph.get((K, H, T))
            if r is None:
                cells += ["-"] * 4
                continue
            cells += [f"**{fmt(r['dsa_indexer'])}**", f"**{fmt(r['dsa_indexer.static'])}**", fmt(r["sglang"]),
                      fmt(r["floor"])]
        lines.append(f"| {T} | " + " | ".join(cells) + " |")
    return lines


def main(path):
    with open(path) as f:
        run = json.load(f)
    graph = graph_records(run)
    print("\n".join(performance_table(run)))

    print()
    print("| T (DeepSeek) | target us | ours us (bench) | static us (bench) | standing |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for T in sorted(t for (K, H, t) in graph if (K, H) == SHAPES[0]):
        r = graph[(*SHAPES[0], T)]
        target = target_us(T, r["bytes"])
        met = "**met**" if r["dsa_indexer"] <= target else "not met"
        print(f"| {T} | {target:.2f} | {fmt(r['dsa_indexer'])} | {fmt(r['dsa_indexer.static'])} | {met} |")

    print()
    for K, H in SHAPES:
        ratios = [(r["sglang"] / r["dsa_indexer"], t) for (k, h, t), r in graph.items() if (k, h) == (K, H)]
        worst, at = min(ratios)
        print(f"K={K} H={H}: dsa_indexer vs sglang worst {worst:.2f}x (T = {at}), best {max(ratios)[0]:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
