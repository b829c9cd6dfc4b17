# Locks mode, Python lines (tests/cli/locks_user.rs): a thread sleeps 0.3 s
# (time.sleep), another blocks in queue.get until the main thread puts after 0.2 s.
# stderr: each wait as timed here (the truth on a loaded machine).
import queue
import sys
import threading
import time

q = queue.Queue()
took = {}


def napper():
    t0 = time.monotonic()
    time.sleep(0.3)  # the sleep line
    took["nap"] = time.monotonic() - t0


def getter():
    t0 = time.monotonic()
    q.get()  # the get line
    took["get"] = time.monotonic() - t0


threads = [threading.Thread(target=napper), threading.Thread(target=getter)]
for t in threads:
    t.start()
time.sleep(0.2)
q.put(1)
for t in threads:
    t.join()
print(f"waited nap {took['nap']:.6f} get {took['get']:.6f}", file=sys.stderr)
