"""Locks-mode overhead on the GIL (docs/performance.md, "locks, 17o"): 4 threads each
run a pure-Python loop of N iterations, contending for the GIL (the interpreter hands
it over every 5 ms switch interval, so each hand-off is a condition-variable wait).
Prints the wall time and the process CPU time (getrusage, which holds under load).
python3 benches/gil_contend.py [N=3000000]"""
import resource
import sys
import threading
import time


def spin(n):
    # The sum is only work: a thread's target returns nothing anyone reads.
    x = 0
    for i in range(n):
        x += i & 7


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3_000_000
    t0 = time.monotonic()
    threads = [threading.Thread(target=spin, args=(n,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"gil {wall:.4f} s cpu {ru.ru_utime + ru.ru_stime:.3f} s")


main()
