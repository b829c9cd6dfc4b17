#!/usr/bin/env python3
"""Collection's fixed cost: wall time of tiny launches, bare and under hwprof.

Usage: cargo build --release && python3 benches/startup_cost.py [RUNS]
       HWPROF=/path/to/other/hwprof python3 benches/startup_cost.py [RUNS]

Cases (RUNS rounds, default 9; within a round each case runs bare then under
`hwprof collect -q --no-finalize`, alternating, so load changes hit both alike):

  direct     ~/.pyenv/versions/3.11.7/bin/python3.11 -c pass
  shim       python3 -c pass  (the pyenv shim: a bash script and ~40 short-lived
             bash/pyenv processes before the interpreter)
  children   python3.11 -c 'run /bin/true 50 times' (subprocess): the cost per
             non-Python child = (hwprof - bare of this case - the direct case's
             difference) / 50

Prints medians (ms) of wall time and of the CPU time of the whole process tree
(hwprof, its threads and every process of the launch: RUSAGE_CHILDREN), and the
differences, as a Markdown table. On a loaded machine the wall times stretch with the
load; the CPU times much less. The agent is the one
embedded in target/release/hwprof (HWPROF_AGENT_LIB is removed from the environment).
"""
import os, resource, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# HWPROF=path compares another build (e.g. main's) with the same loop.
HW = os.environ.get("HWPROF") or os.path.join(ROOT, "target/release/hwprof")
PY311 = os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python3.11")
# The shim itself: run through the shim, this script's PATH starts with the real
# interpreter's directory (pyenv puts it first), so `which python3` would not find it.
SHIM = os.path.expanduser("~/.pyenv/shims/python3")
# startup_compare.py imports CASES and timed(); CHILDREN=N sets the children case's count.
CHILDREN = int(os.environ.get("CHILDREN", "50"))
CASES = {
    "direct": [PY311, "-c", "pass"],
    "shim": [SHIM, "-c", "pass"],
    "children": [PY311, "-c",
                 "import subprocess\nfor _ in range(%d): subprocess.run(['/bin/true'])" % CHILDREN],
}
ENV = {k: v for k, v in os.environ.items() if k != "HWPROF_AGENT_LIB"}


def timed(cmd):
    """Wall seconds, and CPU seconds of the whole process tree (user + system)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return wall, cpu


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    tmp = tempfile.mkdtemp(prefix="hwprof-startup-")
    times = {(c, m): [] for c in CASES for m in ("bare", "hwprof")}
    cpus = {(c, m): [] for c in CASES for m in ("bare", "hwprof")}
    n = 0
    for _ in range(runs):
        for case, cmd in CASES.items():
            w, c = timed(cmd)
            times[(case, "bare")].append(w)
            cpus[(case, "bare")].append(c)
            n += 1
            out = os.path.join(tmp, "r%d" % n)
            w, c = timed([HW, "collect", "-q", "--no-finalize", "-r", out, "--"] + cmd)
            times[(case, "hwprof")].append(w)
            cpus[(case, "hwprof")].append(c)
            shutil.rmtree(out, ignore_errors=True)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    cpu = {k: statistics.median(v) * 1000 for k, v in cpus.items()}
    print("hwprof: %s" % HW)
    print("load average: %s" % open("/proc/loadavg").read().split()[:3])
    print("| case | bare | hwprof | difference | CPU bare | CPU hwprof | CPU difference |")
    print("|---|---|---|---|---|---|---|")
    for case in CASES:
        b, h = med[(case, "bare")], med[(case, "hwprof")]
        cb, ch = cpu[(case, "bare")], cpu[(case, "hwprof")]
        print("| %s | %.0f ms | %.0f ms | %+.0f ms | %.0f ms | %.0f ms | %+.0f ms |"
              % (case, b, h, h - b, cb, ch, ch - cb))
    per_child = ((med[("children", "hwprof")] - med[("children", "bare")])
                 - (med[("direct", "hwprof")] - med[("direct", "bare")])) / CHILDREN
    per_child_cpu = ((cpu[("children", "hwprof")] - cpu[("children", "bare")])
                     - (cpu[("direct", "hwprof")] - cpu[("direct", "bare")])) / CHILDREN
    print("\nper non-Python child process: %+.2f ms wall, %+.2f ms CPU" % (per_child, per_child_cpu))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
