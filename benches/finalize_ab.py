#!/usr/bin/env python3
"""Finalize throughput A/B: one or more hwprof binaries and `perf report` on the same
results directory, alternating in one loop (medians of wall, CPU = user+sys from
wait4, peak RSS).

    python3 benches/finalize_ab.py [--cache STATE] DIR RUNS HWPROF [HWPROF...]

DIR is a results directory with one raw directory (e.g. one recorded by
`benches/compare.py finalize --dir D`); profile.db is removed before each finalize.

--cache sets the page cache of perf.data first, since mapping it costs 20x more when
it is cached in 4 KiB folios than in 2 MiB ones (Linux 6.18, ext4):
  as-is  (default) leave it as it is;
  read   evict it, then read it once front to back with read(2): the state a collector's
         writes or a copy leave (large folios where the file system has them);
  small  evict it, then read 512 bytes of every 8 KiB with pread(2): 4 KiB folios, the
         state a reader faulting pages in one by one leaves;
  cold   evict it before every run of every tool (a first read from disk).
"""
import os, sys, time, statistics
from compare import run_measured
def run(cmd):
    w, cpu, rss_kib = run_measured(cmd)
    return w, cpu, rss_kib / 1024
args = sys.argv[1:]
cache = "as-is"
if args[:1] == ["--cache"]:
    cache, args = args[1], args[2:]
    assert cache in ("as-is", "read", "small", "cold"), cache
d, runs = args[0], int(args[1]); bins = args[2:]
raw = os.path.join(d, "raw", os.listdir(os.path.join(d, "raw"))[0], "perf.data")
def evict():
    fd = os.open(raw, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return fd
def prepare():
    fd = evict()
    size = os.fstat(fd).st_size
    if cache == "read":
        while os.read(fd, 1 << 20): pass
    elif cache == "small":
        for off in range(0, size, 8192): os.pread(fd, 512, off)
    os.close(fd)
if cache in ("read", "small"): prepare()
tools = {b: [b,"finalize","-q",d] for b in bins}
tools["perf"] = ["perf","report","--stdio","--no-children","-i",raw]
res = {k: [] for k in tools}
l0 = os.getloadavg()[0]
for i in range(runs):
    for k, c in tools.items():
        if k != "perf":
            try: os.remove(os.path.join(d, "profile.db"))
            except FileNotFoundError: pass
        if cache == "cold": os.close(evict())
        res[k].append(run(c))
l1 = os.getloadavg()[0]
print(f"{d}: {runs} alternating runs, page cache {cache}, load {l0:.1f} -> {l1:.1f}, {time.strftime('%H:%M:%S', time.gmtime())} UTC")
med = lambda k, i: statistics.median(r[i] for r in res[k])
for k in tools:
    print(f"{k:14} wall {med(k,0):.2f} s  cpu {med(k,1):.2f} s  rss {med(k,2):.0f} MiB   walls {[round(r[0],2) for r in res[k]]} cpus {[round(r[1],2) for r in res[k]]}")
for k in bins:
    print(f"perf/{k}: wall {med('perf',0)/med(k,0):.2f}x cpu {med('perf',1)/med(k,1):.2f}x")
