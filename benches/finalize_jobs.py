#!/usr/bin/env python3
"""`hwprof finalize -j 1` against `-j 2` on one results directory (e.g. one built by
`benches/synth_ranks.py`), alternating in one loop: medians of wall, CPU = user+sys
from wait4, peak RSS, and the wall speed-up. With several binaries (A/B), each run of
the loop runs every binary at `-j 1` and `-j 2` in turn.

    python3 benches/finalize_jobs.py DIR RUNS HWPROF [HWPROF...]
"""
import os, sys, time, statistics, subprocess
def run(cmd):
    t=time.perf_counter(); p=subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, st, ru = os.wait4(p.pid, 0); w=time.perf_counter()-t
    assert st==0, cmd
    return w, ru.ru_utime+ru.ru_stime, ru.ru_maxrss/1024
d, runs, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
res={(b,j):[] for b in bins for j in (1,2)}; l0=os.getloadavg()[0]
for i in range(runs):
    for b in bins:
        for j in (1,2):
            try: os.remove(os.path.join(d,"profile.db"))
            except FileNotFoundError: pass
            res[(b,j)].append(run([b,"finalize","-q","-j",str(j),d]))
l1=os.getloadavg()[0]
print(f"{d}: {runs} alternating runs, load {l0:.1f} -> {l1:.1f}, {time.strftime('%H:%M:%S', time.gmtime())} UTC")
med=lambda k,i: statistics.median(r[i] for r in res[k])
for b in bins:
    for j in (1,2): print(f"{b} -j {j}: wall {med((b,j),0):.2f} s cpu {med((b,j),1):.2f} s rss {med((b,j),2):.0f} MiB walls {[round(r[0],2) for r in res[(b,j)]]}")
    print(f"{b} speed-up -j2/-j1 wall {med((b,1),0)/med((b,2),0):.2f}x")
