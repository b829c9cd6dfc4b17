#!/usr/bin/env python3
"""Finalize throughput A/B: one or more hwprof binaries and `perf report` on the same
results directory, alternating in one loop (medians of wall, CPU = user+sys from
wait4, peak RSS).

    python3 benches/finalize_ab.py DIR RUNS HWPROF [HWPROF...]

DIR is a results directory with one raw directory (e.g. one recorded by
`benches/compare.py finalize --dir D`); profile.db is removed before each finalize.
"""
import os, sys, time, statistics, subprocess
def run(cmd):
    t=time.perf_counter(); p=subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, st, ru = os.wait4(p.pid, 0); w=time.perf_counter()-t
    assert st==0, cmd
    return w, ru.ru_utime+ru.ru_stime, ru.ru_maxrss/1024
d, runs = sys.argv[1], int(sys.argv[2]); bins = sys.argv[3:]
raw = os.path.join(d, "raw", os.listdir(os.path.join(d, "raw"))[0], "perf.data")
tools = {b: [b,"finalize","-q",d] for b in bins}
tools["perf"] = ["perf","report","--stdio","--no-children","-i",raw]
res = {k: [] for k in tools}
l0 = os.getloadavg()[0]
for i in range(runs):
    for k, c in tools.items():
        if k != "perf":
            try: os.remove(os.path.join(d, "profile.db"))
            except FileNotFoundError: pass
        res[k].append(run(c))
l1 = os.getloadavg()[0]
print(f"{d}: {runs} alternating runs, load {l0:.1f} -> {l1:.1f}, {time.strftime('%H:%M:%S', time.gmtime())} UTC")
med = lambda k, i: statistics.median(r[i] for r in res[k])
for k in tools:
    print(f"{k:14} wall {med(k,0):.2f} s  cpu {med(k,1):.2f} s  rss {med(k,2):.0f} MiB   walls {[round(r[0],2) for r in res[k]]} cpus {[round(r[1],2) for r in res[k]]}")
for k in bins:
    print(f"perf/{k}: wall {med('perf',0)/med(k,0):.2f}x cpu {med('perf',1)/med(k,1):.2f}x")
