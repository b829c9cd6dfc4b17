#!/usr/bin/env python3
"""Report A/B: `hwprof report DIR --format json` (the summary: loading profile.db, the
derived tables such as the MPI library's threads, every summary figure) with one or
more hwprof binaries, alternating in one loop; medians of wall and CPU (user+sys from
wait4).

    python3 benches/report_ab.py DIR RUNS HWPROF [HWPROF...]
"""
import statistics
import sys

from compare import run_measured

d, runs, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
res = {b: [] for b in bins}
for _ in range(runs):
    for b in bins:
        res[b].append(run_measured([b, "report", d, "--format", "json"]))
for b in bins:
    wall = statistics.median(r[0] for r in res[b])
    cpu = statistics.median(r[1] for r in res[b])
    print(f"{b:16} report wall {wall:.3f} s  cpu {cpu:.3f} s")
