# Locks mode, Python sleeps (tests/cli/locks_user.rs): the main thread sleeps 5 times
# 0.2 s in `sleeper` while another thread keeps the CPU (and the GIL) busy. Each
# time.sleep must be one wait of its length, whatever signals or GIL hand-offs happen
# around it. stderr: each sleep as timed here (the truth on a loaded machine).
import sys
import threading
import time

done = False


def busy():
    n = 0
    while not done:
        n += 1


def sleeper(times):
    took = []
    for _ in range(times):
        t0 = time.monotonic()
        time.sleep(0.2)  # the sleep line
        took.append(time.monotonic() - t0)
    return took


t = threading.Thread(target=busy)
t.start()
took = sleeper(5)
done = True
t.join()
print("slept", " ".join(f"{x:.6f}" for x in took), file=sys.stderr)
