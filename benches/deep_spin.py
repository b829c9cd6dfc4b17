"""A Python program that recurses D frames deep and then loops for S seconds, for the
cost of reading deep stacks from outside (docs/performance.md, "Python: stacks 1,000
frames deep"):

    python3 benches/deep_spin.py 1000 5 & sleep 0.5
    hwprof collect -q -r r -d 3 -p $!

The summary JSON's `python_summary.captures` is the number of reads."""
import sys
import time

sys.setrecursionlimit(5000)


def rec(n):
    if n == 0:
        t = time.time() + float(sys.argv[2])
        s = 0
        while time.time() < t:
            for i in range(10000):
                s += i
        return s
    return rec(n - 1)


rec(int(sys.argv[1]))
