# Locks mode, Python sleeps (tests/cli/locks_user.rs): the main thread sleeps 5 times
# 0.2 s in `sleeper` while another thread keeps the CPU (and the GIL) busy and a third
# interrupts the sleeper with SIGUSR1 every 30 ms (a Python handler: each signal makes
# the sleep's system call return EINTR, and time.sleep calls again for the rest, PEP
# 475). Each time.sleep must be one wait of its length. stderr: each sleep as timed
# here (the truth on a loaded machine) and how many signals were handled.
import signal
import sys
import threading
import time

done = False
handled = 0


def on_signal(signum, frame):
    global handled
    handled += 1


def busy():
    n = 0
    while not done:
        n += 1


def interrupter(main_id):
    while not done:
        time.sleep(0.03)
        if not done:
            signal.pthread_kill(main_id, signal.SIGUSR1)


def sleeper(times):
    took = []
    for _ in range(times):
        t0 = time.monotonic()
        time.sleep(0.2)  # the sleep line
        took.append(time.monotonic() - t0)
    return took


signal.signal(signal.SIGUSR1, on_signal)
threads = [
    threading.Thread(target=busy),
    threading.Thread(target=interrupter, args=(threading.get_ident(),)),
]
for t in threads:
    t.start()
took = sleeper(5)
done = True
for t in threads:
    t.join()
print("slept", " ".join(f"{x:.6f}" for x in took), file=sys.stderr)
print("signals", handled, file=sys.stderr)
