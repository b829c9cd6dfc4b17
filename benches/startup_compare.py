#!/usr/bin/env python3
"""Collection's fixed cost of two hwprof builds, alternating in one loop with bare runs.

Usage: python3 benches/startup_compare.py OLD_HWPROF NEW_HWPROF [RUNS]
       CHILDREN=200 CASES=direct,children python3 benches/startup_compare.py OLD NEW 11

The cases of benches/startup_cost.py (direct `python3.11 -c pass`, `shim` through the
pyenv shim, `children`: a python3.11 that runs /bin/true CHILDREN times, default 50);
each round runs every case bare, under OLD, under NEW (`collect -q --no-finalize`), so
that the VM's drift and other load hit all three alike. Prints medians of wall time and
of the whole tree's CPU time (RUSAGE_CHILDREN) as a Markdown table, and the cost per
non-Python child ((children - bare) - (direct - bare)) / CHILDREN.
"""
import os, shutil, statistics, sys, tempfile

if len(sys.argv) < 3:
    sys.exit(__doc__)
BINS = {"old": sys.argv[1], "new": sys.argv[2]}
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 7
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from startup_cost import CASES, CHILDREN, timed  # noqa: E402

if os.environ.get("CASES"):
    CASES = {k: v for k, v in CASES.items() if k in os.environ["CASES"].split(",")}


def main():
    tmp = tempfile.mkdtemp(prefix="hwprof-compare-")
    wall, cpu = {}, {}
    load0 = open("/proc/loadavg").read().split()[0]
    n = 0
    for _ in range(RUNS):
        for case, cmd in CASES.items():
            for mode in ["bare"] + list(BINS):
                run = cmd
                if mode != "bare":
                    n += 1
                    out = os.path.join(tmp, "r%d" % n)
                    run = [BINS[mode], "collect", "-q", "--no-finalize", "-r", out, "--"] + cmd
                w, c = timed(run)
                wall.setdefault((case, mode), []).append(w * 1e3)
                cpu.setdefault((case, mode), []).append(c * 1e3)
                if mode != "bare":
                    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    w = {k: statistics.median(v) for k, v in wall.items()}
    c = {k: statistics.median(v) for k, v in cpu.items()}
    print("old: %s\nnew: %s" % (BINS["old"], BINS["new"]))
    print("load average %s -> %s, %d rounds, medians (ms)" % (load0, open("/proc/loadavg").read().split()[0], RUNS))
    print("| case | bare | old | new | old - bare | new - bare | CPU old - bare | CPU new - bare |")
    print("|---|---|---|---|---|---|---|---|")
    for case in CASES:
        b, cb = w[(case, "bare")], c[(case, "bare")]
        print("| %s | %.0f | %.0f | %.0f | %+.1f | %+.1f | %+.1f | %+.1f |" % (
            case, b, w[(case, "old")], w[(case, "new")], w[(case, "old")] - b,
            w[(case, "new")] - b, c[(case, "old")] - cb, c[(case, "new")] - cb))
    if "children" in CASES and "direct" in CASES:
        for m in BINS:
            per = lambda d: ((d[("children", m)] - d[("children", "bare")])
                             - (d[("direct", m)] - d[("direct", "bare")])) / CHILDREN
            print("per non-Python child, %s: %+.2f ms wall, %+.2f ms CPU" % (m, per(w), per(c)))


if __name__ == "__main__":
    main()
