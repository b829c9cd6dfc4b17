"""A Python program whose samples all land 15 frames deep (the module and 14 calls of
`rec`), for the agent's per-capture cost (docs/performance.md, "Python handler"):

    HWPROF_AGENT_STATS=1 hwprof collect -q --no-finalize -r r -- python3 benches/deep_stack.py

The agent's stats line at exit gives the mean cost per capture and per handler run.
Optional arguments: the frame count (default 15) and the loop's iterations."""
import sys


def rec(n, iters):
    if n == 0:
        s = 0
        for i in range(iters):
            s += i & 7
        return s
    return rec(n - 1, iters)


frames = int(sys.argv[1]) if len(sys.argv) > 1 else 15
iters = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
print(rec(frames - 2, iters))
