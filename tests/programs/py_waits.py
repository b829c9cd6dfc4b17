# Locks mode, Python lines (tests/cli/locks_user.rs): a thread sleeps 0.5 s
# (time.sleep); another blocks on a lock (`with lock:`) the main thread holds for
# 0.2 s; another blocks in queue.get until the main thread puts at 0.3 s; then the main
# thread joins the sleeper (about 0.2 s). Each is its own class: sleep, lock,
# condition, join.
# stderr: each wait as timed here (the truth on a loaded machine).
import queue
import sys
import threading
import time

q = queue.Queue()
lock = threading.Lock()
took = {}


def napper():
    t0 = time.monotonic()
    time.sleep(0.5)  # the sleep line
    took["nap"] = time.monotonic() - t0


def getter():
    t0 = time.monotonic()
    q.get()  # the get line
    took["get"] = time.monotonic() - t0


def blocked():
    t0 = time.monotonic()
    with lock:  # the lock line
        took["lock"] = time.monotonic() - t0


lock.acquire()
threads = [threading.Thread(target=f) for f in (napper, getter, blocked)]
for t in threads:
    t.start()
time.sleep(0.2)
lock.release()
time.sleep(0.1)
q.put(1)
t0 = time.monotonic()
for t in threads:
    t.join()  # the join line
took["join"] = time.monotonic() - t0
print(
    f"waited nap {took['nap']:.6f} get {took['get']:.6f} lock {took['lock']:.6f}"
    f" join {took['join']:.6f}",
    file=sys.stderr,
)
