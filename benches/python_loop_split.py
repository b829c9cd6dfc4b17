#!/usr/bin/env python3
"""Where a pyperformance run's profiling cost lands: inside the benchmark's timed loop
(per-sample costs) or outside it (start, imports, exit, the collector's start and end).

Usage: cargo build --release --workspace && python3 benches/python_loop_split.py [BENCH N ROUNDS]
(default: go 20 7). Alternates bare / `hwprof --python off` / hwprof (agent) at 999 Hz,
reads the loop time from pyperf's own values (`-o out.json`) and prints medians of
wall, loop and wall - loop for each. docs/performance.md ("Python") quotes it.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

import pyperformance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HW = os.path.join(ROOT, "target/release/hwprof")
AGENT = os.path.join(ROOT, "target/release/libhwprof_agent.so")
BENCH = os.path.join(os.path.dirname(pyperformance.__file__), "data-files", "benchmarks")
name, n, rounds = (sys.argv[1:4] + ["go", "20", "7"][len(sys.argv[1:4]):])
tmp = tempfile.mkdtemp(prefix="hwprof-split")
out, js = os.path.join(tmp, "run"), os.path.join(tmp, "values.json")
cmd = [sys.executable, os.path.join(BENCH, f"bm_{name}", "run_benchmark.py"),
       "--worker", "-l", "1", "-n", n, "-w", "0", "-o", js]
hw = [HW, "collect", "-q", "-F", "999", "--no-finalize", "-r", out]
configs = {"bare": cmd, "--python off": hw + ["--python", "off", "--"] + cmd,
           "agent": hw + ["--"] + cmd}
env = dict(os.environ, HWPROF_AGENT_LIB=AGENT)
runs = {c: [] for c in configs}
for _ in range(int(rounds)):
    for c, argv in configs.items():
        shutil.rmtree(out, ignore_errors=True)
        if os.path.exists(js):
            os.unlink(js)
        t = time.perf_counter()
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        with open(js) as f:
            doc = json.load(f)
        loop = sum(v for b in doc["benchmarks"] for r in b["runs"] for v in r.get("values", []))
        runs[c].append((wall, loop))
print(f"{name}, {rounds} alternating rounds, 999 Hz, medians\n")
print("| | wall | loop | outside the loop |\n|---|---|---|---|")
base = statistics.median(l for _, l in runs["bare"])
for c, v in runs.items():
    wall = statistics.median(w for w, _ in v)
    loop = statistics.median(l for _, l in v)
    print(f"| {c} | {wall:.3f} s | {loop:.3f} s ({(loop / base - 1) * 100:+.1f}%) | "
          f"{(wall - loop) * 1000:.0f} ms |")
shutil.rmtree(tmp, ignore_errors=True)
