#!/usr/bin/env python3
"""Wall-time overhead of profiling Python at 999 Hz, on pyperformance benchmarks.

Usage: cargo build --release --workspace && python3 benches/python_overhead.py [RUNS]

Runs chaos, go and richards (pyperformance's scripts, one pyperf worker process of
~2.5 s each: `run_benchmark.py --worker -l 1 -n N -w 0`) with the interpreter that
`python3` resolves to, in alternating rounds (every configuration once per round, RUNS
rounds, default 5):

  bare              python3 bm.py ...
  hwprof            hwprof collect -q -F 999 --no-finalize -- python3 bm.py ...
  hwprof-nopy       the same with --python off (native stacks only, no agent)
  perf-record       perf record -F 999 --call-graph dwarf (8 KiB stacks, as hwprof)
                    --no-bpf-event (perf 6.1's BPF side-band thread otherwise holds
                    every run's exit until its 1 s poll times out: `true` takes 1.1 s)
  py-spy            py-spy record --rate 999 --format raw (default: stops the process)
  py-spy-nonblock   the same with --nonblocking

HWPROF_BENCH_CONFIGS=bare,hwprof,... runs only those configurations and
HWPROF_BENCHES=go,... only those benchmarks.
Prints the median wall time of each and its ratio to bare, as a Markdown table, then
the median CPU time of the whole run (target, profiler, children; RUSAGE_CHILDREN) the
same way: on a machine loaded by other work the wall ratio is mostly noise.
Needs pyperformance, pyperf and py-spy (pip install -r .ci/requirements.txt).
"""
import os, resource, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HW = os.path.join(ROOT, "target/release/hwprof")
# HWPROF_AGENT_LIB, when set, names the agent to measure (e.g. the embedded build's,
# target/release/build/hwprof-*/out/libhwprof_agent.so); else the workspace build's.
AGENT = os.environ.get("HWPROF_AGENT_LIB") or os.path.join(ROOT, "target/release/libhwprof_agent.so")
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
PY = sys.executable
SPY = shutil.which("py-spy", path=os.path.dirname(PY)) or shutil.which("py-spy")
try:
    import pyperformance
except ImportError:
    sys.exit("pyperformance is not installed (pip install -r .ci/requirements.txt)")
if not SPY:
    sys.exit("py-spy is not installed (pip install -r .ci/requirements.txt)")
BENCH = os.path.join(os.path.dirname(pyperformance.__file__), "data-files", "benchmarks")
# values of one loop each: ~2.5 s bare on the 2-core VM
BENCHES = {"chaos": 40, "go": 20, "richards": 60}
if os.environ.get("HWPROF_BENCHES"):
    BENCHES = {k: v for k, v in BENCHES.items() if k in os.environ["HWPROF_BENCHES"].split(",")}
PERF = shutil.which("perf")

tmp = tempfile.mkdtemp(prefix="hwprof-pyov")
out_dir = os.path.join(tmp, "run")
spy_out = os.path.join(tmp, "spy.txt")
perf_out = os.path.join(tmp, "perf.data")


ONLY = [c for c in os.environ.get("HWPROF_BENCH_CONFIGS", "").split(",") if c]


def configs(cmd):
    hw = [HW, "collect", "-q", "-F", "999", "--no-finalize", "-r", out_dir]
    spy = [SPY, "record", "--rate", "999", "--format", "raw", "-o", spy_out]
    every = {
        "bare": cmd,
        "hwprof": hw + ["--"] + cmd,
        "hwprof-nopy": hw + ["--python", "off", "--"] + cmd,
        "perf-record": [PERF, "record", "-q", "-F", "999", "--call-graph", "dwarf",
                        "--no-bpf-event", "-o", perf_out, "--"] + cmd,
        "py-spy": spy + ["--"] + cmd,
        "py-spy-nonblock": spy + ["--nonblocking", "--"] + cmd,
    }
    if not PERF:
        del every["perf-record"]
    return {k: v for k, v in every.items() if not ONLY or k in ONLY}


env = dict(os.environ, HWPROF_AGENT_LIB=AGENT)
times = {}
cpu = {}
for r in range(RUNS):
    for name, n in BENCHES.items():
        cmd = [PY, os.path.join(BENCH, f"bm_{name}", "run_benchmark.py"),
               "--worker", "-l", "1", "-n", str(n), "-w", "0"]
        for cfg, argv in configs(cmd).items():
            shutil.rmtree(out_dir, ignore_errors=True)
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run(argv, check=True, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.setdefault((name, cfg), []).append(time.perf_counter() - t)
            # CPU time of the whole run (target, profiler and their children, all
            # reaped): what a loaded machine cannot inflate the way it does wall time.
            ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.setdefault((name, cfg), []).append(
                ru2.ru_utime + ru2.ru_stime - ru.ru_utime - ru.ru_stime)
    print(f"round {r + 1}/{RUNS} done", file=sys.stderr)

cfgs = list(configs([]).keys())


def print_table(title, seconds):
    """A markdown table of the medians of `seconds`, with the ratio to bare."""
    print(title + "\n")
    print("| benchmark | " + " | ".join(cfgs) + " |")
    print("|---|" + "---|" * len(cfgs))
    for name in BENCHES:
        bare = statistics.median(seconds[(name, "bare")])
        cells = []
        for cfg in cfgs:
            m = statistics.median(seconds[(name, cfg)])
            cells.append(f"{m:.3f} s ({m / bare:.3f})")
        print(f"| {name} | " + " | ".join(cells) + " |")


print_table(f"Python {sys.version.split()[0]}, 999 Hz, {RUNS} alternating rounds, median wall time (ratio to bare)", times)
print_table("\nCPU time of the whole run (target + profiler, user + system), median (ratio to bare)", cpu)
shutil.rmtree(tmp, ignore_errors=True)
