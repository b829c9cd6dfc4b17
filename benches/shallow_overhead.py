#!/usr/bin/env python3
"""Issue 21 item 4: overhead on a shallow-stack Python program (3 frames: <module>,
main, work; ~2.5 s of CPU), bare vs hwprof vs py-spy stopping the process, at 999 Hz,
run directly (python3.11) and through the pyenv shim; alternating rounds, medians.

    python3 benches/shallow_overhead.py [ROUNDS]     # default 5; HWPROF=path to compare builds
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HWPROF = os.environ.get("HWPROF") or os.path.join(ROOT, "target/release/hwprof")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
PROG = """
def work(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
def main():
    for _ in range(40):
        work(1_000_000)
main()
"""
HOME = os.path.expanduser("~")
PYTHONS = {
    "direct": os.path.join(HOME, ".pyenv/versions/3.11.7/bin/python3.11"),
    "shim": os.path.join(HOME, ".pyenv/shims/python3"),
}


def timed(cmd, env=None):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def main():
    pyspy = shutil.which("py-spy")
    d = tempfile.mkdtemp(prefix="hwprof-shallow-")
    prog = os.path.join(d, "shallow.py")
    with open(prog, "w") as f:
        f.write(PROG)
    env = dict(os.environ, PYENV_VERSION="3.11.7")
    res = {}
    for r in range(ROUNDS):
        for how, py in PYTHONS.items():
            cfgs = {
                "bare": [py, prog],
                "hwprof": [HWPROF, "collect", "-q", "--no-finalize", "-F", "999", "-r",
                           os.path.join(d, f"run-{how}-{r}"), "--", py, prog],
            }
            if pyspy:
                cfgs["py-spy"] = [pyspy, "record", "-r", "999", "-o", os.path.join(d, "o.txt"),
                                  "-f", "raw", "--", py, prog]
            for name, cmd in cfgs.items():
                res.setdefault((how, name), []).append(timed(cmd, env))
        print(f"round {r + 1}/{ROUNDS} done", file=sys.stderr)
    print(f"load average: {os.getloadavg()}")
    print("| run | bare | hwprof | py-spy |\n|---|---|---|---|")
    for how in PYTHONS:
        bare = statistics.median(res[(how, "bare")])
        cells = []
        for name in ["bare", "hwprof", "py-spy"]:
            v = res.get((how, name))
            cells.append("—" if not v else f"{statistics.median(v):.3f} s ({statistics.median(v) / bare:.3f})")
        print(f"| {how} | " + " | ".join(cells) + " |")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
