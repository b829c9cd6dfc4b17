"""gil_waits: two CPU-bound threads share the GIL for 0.8 s (each waits for it about
half of that), a third sleeps 0.5 s in time.sleep (the line marked SLEEP). stderr: the
sleep as timed here (the truth on a loaded machine, where the woken sleeper may wait
for a CPU before the call returns)."""
import sys
import threading
import time

took = {}


def spin(n):
    x = 0
    for i in range(n):
        x += i
    return x


def busy():
    end = time.monotonic() + 0.8
    while time.monotonic() < end:
        spin(10000)


def nap():
    t0 = time.monotonic()
    time.sleep(0.5)  # SLEEP
    took["nap"] = time.monotonic() - t0


threads = [threading.Thread(target=f) for f in (busy, busy, nap)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"napped {took['nap']:.6f}", file=sys.stderr)
