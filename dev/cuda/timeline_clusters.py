#!/usr/bin/env python3
"""Per cluster of 8 CTAs, from dev/cuda/timeline's --csv output (prefill tiles): when each cluster's
CTAs returned from griddepcontrol.wait, saw their first and last wave's data, pushed their last sums,
had their inbox full and exited, for the last call in the file; then, over every call in the file,
the spread of first and last data inside a cluster, how long after its slowest CTA's last data a
cluster exits, and which rank was slowest.

Usage: dev/cuda/timeline_clusters.py FILE.csv.gz ...   (times in us from the call's first wait)
"""
import collections
import csv
import gzip
import statistics
import sys

END = 248  # kTlEnd in src/cuda/sm90_kernel.cuh: the last tile's end, step by step
WAIT, EXIT, COUNTS = 1, 3, 4  # events: past griddepcontrol.wait, exit, (SM id, waves | tiles << 32)


def load(path):
    """{(call, cta): {event: (globaltimer ns, clock64)}}"""
    events = collections.defaultdict(dict)
    for row in csv.DictReader(gzip.open(path, "rt")):
        events[(int(row["call"]), int(row["cta"]))][int(row["event"])] = (int(row["globaltimer_ns"]), int(row["clock64"]))
    return events


def main(paths):
    for path in paths:
        events = load(path)
        print("==", path)
        calls = sorted({call for call, _ in events})
        stats = collections.defaultdict(list)
        for call in calls:
            ctas = sorted(cta for c, cta in events if c == call)
            t0 = min(events[(call, cta)][WAIT][0] for cta in ctas)

            def at(cta, event):
                e = events[(call, cta)]
                return (e[event][0] - t0) / 1e3 if event in e else float("nan")

            rows = []
            for cluster in range(len(ctas) // 8):
                members = range(8 * cluster, 8 * cluster + 8)
                waves = events[(call, members[0])][COUNTS][1] & 0xFFFFFFFF
                tiles = events[(call, members[0])][COUNTS][1] >> 32
                last_event = 9 + 2 * (waves - 1)  # wave s's data seen: event 9 + 2 s
                last = [at(cta, last_event) if last_event < END else float("nan") for cta in members]
                first = [at(cta, 9) for cta in members]
                wait = [at(cta, WAIT) for cta in members]
                full = [at(cta, END + 3) for cta in members]
                exits = [at(cta, EXIT) for cta in members]
                slowest = max(range(8), key=lambda i: last[i])
                rows.append((cluster, tiles, min(wait), max(wait), min(first), max(first), min(last), max(last),
                             max(at(cta, END + 2) for cta in members), min(full), max(full), max(exits), slowest))
                stats["spread of last data in a cluster"].append(max(last) - min(last))
                stats["spread of first data in a cluster"].append(max(first) - min(first))
                stats["exit after the cluster's last data"].append(max(exits) - max(last))
                stats["slowest rank"].append(slowest)
            if call == calls[-1]:
                print(f" call {call}: cl tiles  wait min/max   first data min/max   last data min/max  pushed max"
                      "  full min/max   exit max  slowest rank")
                for r in rows:
                    print(" %2d %3d  %6.2f %6.2f  %6.2f %6.2f  %6.2f %6.2f  %6.2f  %6.2f %6.2f  %6.2f  %d" % r)
        print(f" over calls {calls}:")
        for name, values in stats.items():
            if name == "slowest rank":
                print(f"  {name}: {dict(sorted(collections.Counter(values).items()))}")
            else:
                print(f"  {name}: median {statistics.median(values):.2f} us, max {max(values):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
