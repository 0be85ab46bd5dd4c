"""Per-wave steps of the prefill consumer loop, from `dev/cuda/timeline --csv` of a dev build with
DSA_TIMELINE_WAVES (src/cuda/sm90_kernel.cuh lists the events): cycles (clock64 of thread 0) of
each step of loop iterations 1-38, over every CTA of the calls in the file.

Run: python dev/cuda/timeline_waves.py waves_T64H64tma_T4096.csv [more.csv]
"""
import collections
import csv
import sys

STEPS = ["sum into group sums", "wait for data", "issue wgmmas", "to retire", "retire", "wait for wgmmas"]


def quantile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def main(paths):
    for path in paths:
        events = collections.defaultdict(dict)
        with open(path) as f:
            for row in csv.DictReader(f):
                events[(int(row["call"]), int(row["cta"]))][int(row["event"])] = int(row["clock64"])
        steps = collections.defaultdict(list)
        totals = []
        for e in events.values():
            for s in range(1, 39):
                base, nxt = 8 + 6 * s, 8 + 6 * (s + 1)
                if not all(base + k in e for k in range(6)) or nxt not in e:
                    continue
                marks = [e[base + k] for k in range(6)] + [e[nxt]]
                for k in range(6):
                    steps[k].append(marks[k + 1] - marks[k])
                totals.append(marks[6] - marks[0])
        print(f"{path}: {len(totals)} iterations, cycles per iteration p10 / p50 / p90 "
              f"{quantile(totals, .1)} / {quantile(totals, .5)} / {quantile(totals, .9)}")
        for k, name in enumerate(STEPS):
            v = steps[k]
            print(f"  {name:22s} p10 / p50 / p90 {quantile(v, .1):6} / {quantile(v, .5):6} / {quantile(v, .9):6}")


if __name__ == "__main__":
    main(sys.argv[1:])
