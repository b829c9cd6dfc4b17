#!/usr/bin/env python3
"""Page-fault sampling overhead against bare, on the page-touching workload.

Usage: cargo build --release && python3 benches/memory_overhead.py [RUNS] [--default-only]

Part 2 (the default memory mode, issue 14): tests/programs/fill_buffers.c built plainly
(-O1 -g, no frame pointers; 336 MiB faulted through memset, ~86,000 faults), bare and
under `hwprof collect -m memory --no-finalize` at the defaults (dwarf,1024, one fault in
4) and at --fault-period 1 / --call-graph fp, runs alternated (bare, tool, bare, ...),
medians, with the disk used and the samples lost.

Builds tests/programs/touch256.c, runs `touch256 nohold` (maps and touches 272 MiB:
~69,700 minor faults, no sleeps) bare and under `hwprof collect -m memory --no-finalize`
with --call-graph fp and dwarf, and `-e cpu-clock` as the reference of hwprof's fixed
cost (start-up, perf.data, exit). Prints median wall times and the per-fault cost.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HW = os.path.join(ROOT, "target/release/hwprof")
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 7
# --default-only: just bare against the default memory mode on fill_buffers (the
# issue's 1.5x bound), ending with one RESULT line.
DEFAULT_ONLY = "--default-only" in sys.argv

tmp = tempfile.mkdtemp(prefix="hwprof-memb")
exe = os.path.join(tmp, "touch256")
subprocess.run(["cc", "-O1", "-g", "-fno-omit-frame-pointer", "-fno-inline",
                "-fno-optimize-sibling-calls", "-o", exe,
                os.path.join(ROOT, "tests/programs/touch256.c")], check=True)
out = os.path.join(tmp, "run")


def timed(cmd):
    ts, lost = [], []
    for _ in range(RUNS):
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ts.append(time.perf_counter() - t)
        m = os.path.join(out, "manifest.json")
        if os.path.exists(m):
            notes = json.load(open(m)).get("notices", [])
            lost.append(sum(int(n.split()[0]) for n in notes if "samples lost" in n))
    return statistics.median(ts), (statistics.median(lost) if lost else 0)


def default_only():
    fill = os.path.join(tmp, "fill_buffers")
    subprocess.run(["cc", "-O1", "-g", "-o", fill,
                    os.path.join(ROOT, "tests/programs/fill_buffers.c")], check=True)
    load = os.getloadavg()[0]
    wall = {"bare": [], "tool": []}
    cpu = {"bare": [], "tool": []}
    faults = []
    for _ in range(RUNS):
        for name in ["bare", "tool"]:
            shutil.rmtree(out, ignore_errors=True)
            cmd = [fill] if name == "bare" else [HW, "collect", "-m", "memory", "-q",
                                                 "--no-finalize", "-r", out, "--", fill]
            t = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            stdout = p.stdout.read().decode()
            _, _, ru = os.wait4(p.pid, 0)
            wall[name].append(time.perf_counter() - t)
            # CPU of the run and what it waited for (hwprof and the program).
            cpu[name].append(ru.ru_utime + ru.ru_stime)
            if name == "bare":
                faults.append(int(stdout.split()[1]))
    med = {k: statistics.median(v) for k, v in wall.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    n = statistics.median(faults)
    load_end = os.getloadavg()[0]
    for name in wall:
        print(f"{name}: wall " + " ".join(f"{x * 1000:.0f}" for x in wall[name]) + " ms; CPU "
              + " ".join(f"{x * 1000:.0f}" for x in cpu[name]) + " ms")
    print(f"RESULT memory default mode on fill_buffers ({n:.0f} faults, {RUNS} alternated rounds, "
          f"load {load:.1f}-{load_end:.1f}): bare {med['bare'] * 1000:.0f} ms, "
          f"hwprof {med['tool'] * 1000:.0f} ms, x{med['tool'] / med['bare']:.2f} wall (bound 1.5); "
          f"{(med['tool'] - med['bare']) / n * 1e6:.2f} us wall and "
          f"{(cmed['tool'] - cmed['bare']) / n * 1e6:.2f} us CPU per fault "
          f"(CPU x{cmed['tool'] / cmed['bare']:.2f})")


if DEFAULT_ONLY:
    default_only()
    shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0)

bare, _ = timed([exe, "nohold"])
print(f"bare touch256 nohold: {bare * 1000:.0f} ms")
ref, _ = timed([HW, "collect", "-q", "--no-finalize", "--call-graph", "fp", "-e", "cpu-clock",
                "-r", out, "--", exe, "nohold"])
print(f"hwprof -e cpu-clock (fixed cost reference): {ref * 1000:.0f} ms (x{ref / bare:.2f})")
faults = 272 * 256  # pages touched; start-up faults are a few hundred more
for cg in ["fp", "dwarf"]:
    t, lost = timed([HW, "collect", "-m", "memory", "-q", "--no-finalize", "--call-graph", cg,
                     "-r", out, "--", exe, "nohold"])
    print(f"memory mode --call-graph {cg}: {t * 1000:.0f} ms (x{t / bare:.2f}), "
          f"{(t - ref) / faults * 1e6:.1f} us per fault over the reference, lost samples {lost:.0f}")

# Part 2: the default memory mode on fill_buffers (no frame pointers), alternated.
fill = os.path.join(tmp, "fill_buffers")
subprocess.run(["cc", "-O2", "-g", "-O1", "-o", fill,
                os.path.join(ROOT, "tests/programs/fill_buffers.c")], check=True)
configs = {
    "bare": None,
    "default (dwarf,1024, period 4)": [],
    "--call-graph dwarf,2048": ["--call-graph", "dwarf,2048"],
    "--fault-period 1": ["--fault-period", "1"],
    "--call-graph fp --fault-period 1": ["--call-graph", "fp", "--fault-period", "1"],
}
times = {k: [] for k in configs}
disk = {k: 0 for k in configs}
lost = {k: [] for k in configs}
for _ in range(RUNS):
    for name, extra in configs.items():
        shutil.rmtree(out, ignore_errors=True)
        cmd = [fill] if extra is None else [HW, "collect", "-m", "memory", "-q", "--no-finalize",
                                            *extra, "-r", out, "--", fill]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times[name].append(time.perf_counter() - t)
        if extra is not None:
            disk[name] = sum(os.path.getsize(os.path.join(d, f))
                             for d, _, fs in os.walk(out) for f in fs)
            notes = json.load(open(os.path.join(out, "manifest.json"))).get("notices", [])
            lost[name].append(sum(int(n.split()[0]) for n in notes if "samples lost" in n))
bare2 = statistics.median(times["bare"])
print(f"fill_buffers bare: {bare2 * 1000:.0f} ms")
for name in list(configs)[1:]:
    t = statistics.median(times[name])
    print(f"memory mode {name}: {t * 1000:.0f} ms (x{t / bare2:.2f}), "
          f"{(t - bare2) / 86000 * 1e6:.1f} us per fault, {disk[name] / 1e6:.0f} MB on disk, "
          f"lost samples (median) {statistics.median(lost[name]):.0f}")
shutil.rmtree(tmp, ignore_errors=True)
