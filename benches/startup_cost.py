#!/usr/bin/env python3
"""Collection's fixed cost: wall time of tiny launches, bare and under hwprof.

Usage: cargo build --release && python3 benches/startup_cost.py [RUNS]

Cases (RUNS rounds, default 9; within a round each case runs bare then under
`hwprof collect -q --no-finalize`, alternating, so load changes hit both alike):

  direct     ~/.pyenv/versions/3.11.7/bin/python3.11 -c pass
  shim       python3 -c pass  (the pyenv shim: a bash script and ~40 short-lived
             bash/pyenv processes before the interpreter)
  children   python3.11 -c 'run /bin/true 50 times' (subprocess): the cost per
             non-Python child = (hwprof - bare of this case - the direct case's
             difference) / 50

Prints medians (ms) and the differences as a Markdown table. The agent is the one
embedded in target/release/hwprof (HWPROF_AGENT_LIB is removed from the environment).
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HW = os.path.join(ROOT, "target/release/hwprof")
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 9
PY311 = os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python3.11")
SHIM = shutil.which("python3")
CHILDREN = 50
CASES = {
    "direct": [PY311, "-c", "pass"],
    "shim": [SHIM, "-c", "pass"],
    "children": [PY311, "-c",
                 "import subprocess\nfor _ in range(%d): subprocess.run(['/bin/true'])" % CHILDREN],
}
ENV = {k: v for k, v in os.environ.items() if k != "HWPROF_AGENT_LIB"}


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    tmp = tempfile.mkdtemp(prefix="hwprof-startup-")
    times = {(c, m): [] for c in CASES for m in ("bare", "hwprof")}
    n = 0
    for _ in range(RUNS):
        for case, cmd in CASES.items():
            times[(case, "bare")].append(timed(cmd))
            n += 1
            out = os.path.join(tmp, "r%d" % n)
            times[(case, "hwprof")].append(
                timed([HW, "collect", "-q", "--no-finalize", "-r", out, "--"] + cmd))
            shutil.rmtree(out, ignore_errors=True)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print("load average: %s" % open("/proc/loadavg").read().split()[:3])
    print("| case | bare | hwprof | difference |")
    print("|---|---|---|---|")
    for case in CASES:
        b, h = med[(case, "bare")], med[(case, "hwprof")]
        print("| %s | %.0f ms | %.0f ms | %+.0f ms |" % (case, b, h, h - b))
    per_child = ((med[("children", "hwprof")] - med[("children", "bare")])
                 - (med[("direct", "hwprof")] - med[("direct", "bare")])) / CHILDREN
    print("\nper non-Python child process: %+.2f ms" % per_child)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
