#!/usr/bin/env python3
"""Benchmarks hwprof against the bare program and `perf record`.

    python3 benches/compare.py overhead [--runs 7] [--rounds 1500]
    python3 benches/compare.py finalize [--samples 1000000] [--shallow] [--runs 3] [--dir D]

overhead: a CPU-bound C workload (tests/programs/hot.c, no frame pointers) run bare,
under `hwprof collect --no-finalize -F 999 --call-graph dwarf`, and under
`perf record -F 999 --call-graph dwarf`, alternating, N times each; prints median wall
times and the ratios.

finalize: records >= N dwarf samples with hwprof (two threads at 10 kHz, 2 KiB stack
copies; with --shallow: hot.c, one thread, default 8 KiB stack copies, N ~100k), then
times `hwprof finalize` and `perf report --stdio --no-children` on that same perf.data,
alternating --runs times: medians of wall and CPU time, peak RSS.

Results go to stdout as a Markdown table, ready for docs/performance.md.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HWPROF = os.path.join(ROOT, "target", "release", "hwprof")


def build(tmp, src, out, flags=()):
    path = os.path.join(tmp, out)
    subprocess.run(["cc", "-O2", "-g", *flags, os.path.join(ROOT, "tests", "programs", src),
                    "-o", path, "-lpthread"], check=True)
    return path


def timed(cmd, **kw):
    """Wall seconds and peak RSS (KiB) of the child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(after, before)


def peak_rss_of(cmd):
    """Peak RSS of one command, measured in a fresh Python so earlier children do not count."""
    code = ("import resource,subprocess,sys,time;t=time.perf_counter();"
            "subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
            "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *cmd], check=True, capture_output=True, text=True)
    wall, rss = out.stdout.split()
    return float(wall), int(rss)


def overhead(args):
    tmp = tempfile.mkdtemp(prefix="hwprof-bench-")
    try:
        prog = build(tmp, "hot.c", "hot", ["-fomit-frame-pointer"])
        work = [prog, str(args.rounds)]
        variants = {
            "bare": lambda i: work,
            "hwprof": lambda i: [HWPROF, "collect", "-q", "--no-finalize", "-F", "999",
                                 "--call-graph", "dwarf", "-r", f"{tmp}/h{i}", "--", *work],
            "perf record": lambda i: ["perf", "record", "-q", "-F", "999", "--call-graph", "dwarf",
                                      "-o", f"{tmp}/p{i}.data", "--", *work],
        }
        times = {k: [] for k in variants}
        for i in range(args.runs):
            for name, cmd in variants.items():
                times[name].append(timed(cmd(i))[0])
            shutil.rmtree(f"{tmp}/h{i}", ignore_errors=True)
            if os.path.exists(f"{tmp}/p{i}.data"):
                os.remove(f"{tmp}/p{i}.data")
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"| variant | median wall (s) over {args.runs} alternating runs | min | max |")
        print("|---|---|---|---|")
        for k, v in times.items():
            print(f"| {k} | {med[k]:.3f} | {min(v):.3f} | {max(v):.3f} |")
        print()
        print(f"- hwprof / bare: **{med['hwprof'] / med['bare']:.3f}**")
        print(f"- hwprof / perf record: **{med['hwprof'] / med['perf record']:.3f}**")
        print(f"- perf record / bare: {med['perf record'] / med['bare']:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_measured(cmd):
    """Wall seconds, CPU seconds (user+sys) and peak RSS (KiB) of one command."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed: status {status}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def finalize(args):
    tmp = args.dir or tempfile.mkdtemp(prefix="hwprof-bench-")
    run = os.path.join(tmp, "shallow" if args.shallow else "big")
    args.samples = args.samples or (100_000 if args.shallow else 1_000_000)
    if not os.path.exists(run):
        if args.shallow:
            # One thread, default call graph (DWARF, 8 KiB stack copies), ~100k samples.
            prog = build(tmp, "hot.c", "hot")
            rounds = str(max(100, args.samples * 8000 // 170_000))  # 8000 rounds: 170k samples
            cmd = [HWPROF, "collect", "-q", "--no-finalize", "-F", "10000", "-r", run, "--", prog, rounds]
        else:
            prog = build(tmp, "threads.c", "threads")
            # ~14 k samples/s across two threads at 10 kHz.
            rounds = str(max(100, args.samples * 90000 // 1_000_000))
            cmd = [HWPROF, "collect", "-q", "--no-finalize", "-F", "10000",
                   "--call-graph", "dwarf,2048", "-r", run, "--", prog, rounds]
        subprocess.run(cmd, check=True)
    raw = os.path.join(run, "raw", os.listdir(os.path.join(run, "raw"))[0], "perf.data")
    size = os.path.getsize(raw)
    db = os.path.join(run, "profile.db")
    hw = {"wall": [], "cpu": [], "rss": []}
    pr = {"wall": [], "cpu": [], "rss": []}
    load0 = os.getloadavg()[0]
    # Alternating, so both see the same load; the page cache is warm after the first.
    for _ in range(args.runs):
        if os.path.exists(db):
            os.remove(db)
        for d, v in zip(("wall", "cpu", "rss"), run_measured([HWPROF, "finalize", "-q", run])):
            hw[d].append(v)
        for d, v in zip(("wall", "cpu", "rss"),
                        run_measured(["perf", "report", "--stdio", "--no-children", "-i", raw])):
            pr[d].append(v)
    load1 = os.getloadavg()[0]
    summary = subprocess.run([HWPROF, "report", run, "--view", "summary", "--format", "json"],
                             capture_output=True, text=True, check=True).stdout
    samples = json.loads(summary)["samples"]
    med = statistics.median
    kind = "one thread, DWARF 8 KiB" if args.shallow else "two threads, DWARF 2 KiB"
    print(f"perf.data: {size / 2**20:.0f} MiB, {samples} samples ({kind}); {args.runs} alternating "
          f"runs, medians; load average {load0:.1f} -> {load1:.1f}\n")
    print("| tool | wall (s) | CPU user+sys (s) | samples/s (wall) | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for name, m in (("hwprof finalize", hw), ("perf report --stdio --no-children", pr)):
        print(f"| {name} | {med(m['wall']):.2f} | {med(m['cpu']):.2f} | "
              f"{samples / med(m['wall']):,.0f} | {med(m['rss']) / 1024:.0f} |")
    print(f"\n- ratio perf report / hwprof finalize: **{med(pr['wall']) / med(hw['wall']):.1f}x** wall, "
          f"{med(pr['cpu']) / med(hw['cpu']):.1f}x CPU")
    if not args.dir:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--runs", type=int, default=7)
    o.add_argument("--rounds", type=int, default=1500)
    f = sub.add_parser("finalize")
    f.add_argument("--samples", type=int, help="default 1,000,000; 100,000 with --shallow")
    f.add_argument("--dir", help="reuse (or keep) the recording in this directory")
    f.add_argument("--shallow", action="store_true",
                   help="record one thread with the default call graph (DWARF, 8 KiB) instead")
    f.add_argument("--runs", type=int, default=3, help="alternating runs of each tool")
    args = ap.parse_args()
    if not os.path.exists(HWPROF):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    {"overhead": overhead, "finalize": finalize}[args.what](args)


if __name__ == "__main__":
    main()
