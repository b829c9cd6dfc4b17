#!/usr/bin/env python3
"""`hwprof finalize -j 1` against `-j 2` on one results directory (e.g. one built by
`benches/synth_ranks.py`), alternating in one loop: medians of wall, CPU = user+sys
from wait4, peak RSS, and the wall speed-up. With several binaries (A/B), each run of
the loop runs every binary at `-j 1` and `-j 2` in turn.

    python3 benches/finalize_jobs.py [--pin] DIR RUNS HWPROF [HWPROF...]

--pin runs `-j N` on N cores (`taskset -c 0..N-1`): the speed-up with cores. Unpinned,
`-j 1` already uses the other core for a large rank's walker and for the symbolizers
made while reading, so `-j 2` / `-j 1` understates what a second core gives.
"""
import os, sys, time, statistics
from compare import run_measured
def run(cmd):
    w, cpu, rss_kib = run_measured(cmd)
    return w, cpu, rss_kib / 1024
args = sys.argv[1:]
pin = args[:1] == ["--pin"]
if pin: args = args[1:]
d, runs, bins = args[0], int(args[1]), args[2:]
def cmd(b, j):
    c = [b, "finalize", "-q", "-j", str(j), d]
    return ["taskset", "-c", f"0-{j-1}", *c] if pin else c
res={(b,j):[] for b in bins for j in (1,2)}; l0=os.getloadavg()[0]
for i in range(runs):
    for b in bins:
        for j in (1,2):
            try: os.remove(os.path.join(d,"profile.db"))
            except FileNotFoundError: pass
            res[(b,j)].append(run(cmd(b, j)))
l1=os.getloadavg()[0]
print(f"{d}: {runs} alternating runs{', -j N on N cores' if pin else ''}, load {l0:.1f} -> {l1:.1f}, {time.strftime('%H:%M:%S', time.gmtime())} UTC")
med=lambda k,i: statistics.median(r[i] for r in res[k])
for b in bins:
    for j in (1,2): print(f"{b} -j {j}: wall {med((b,j),0):.3f} s cpu {med((b,j),1):.3f} s rss {med((b,j),2):.0f} MiB walls {[round(r[0],3) for r in res[(b,j)]]}")
    print(f"{b} speed-up -j2/-j1 wall {med((b,1),0)/med((b,2),0):.2f}x")
