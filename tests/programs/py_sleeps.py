# Locks mode, Python sleeps (tests/cli/locks_user.rs): the main thread sleeps 5 times
# 0.2 s in `sleeper` while another thread keeps the CPU (and the GIL) busy and a third
# interrupts the sleeper with SIGUSR1 every 30 ms (a Python handler: each signal makes
# the sleep's system call return EINTR, and time.sleep calls again for the rest, PEP
# 475). Each time.sleep must be one wait of its length. stderr: each sleep as timed
# here (the truth on a loaded machine), how many signals were handled, and how long
# the sleeps may have spent outside the sleep call: from each signal sent during a
# sleep to its handler (waking up, taking the GIL back from the busy thread, the
# handler) and from the sleep's deadline to its return (the GIL again), as a union of
# intervals. The rest of each sleep was surely in the call (which also holds the
# wake-ups, until the thread gets a CPU).
import signal
import sys
import threading
import time

SLEEP = 0.2
done = False
sent = []
handled = []


def on_signal(signum, frame):
    handled.append(time.monotonic())


def busy():
    n = 0
    while not done:
        n += 1


def interrupter(main_id):
    while not done:
        time.sleep(0.03)
        if not done:
            sent.append(time.monotonic())
            signal.pthread_kill(main_id, signal.SIGUSR1)


def sleeper(times):
    spans = []
    for _ in range(times):
        t0 = time.monotonic()
        time.sleep(SLEEP)  # the sleep line
        spans.append((t0, time.monotonic()))
    return spans


def outside_the_call(spans):
    """Seconds of the sleeps between a signal's sending and its handler."""
    total = 0.0
    for t0, t1 in spans:
        gaps = [(t0 + SLEEP, t1)]
        for s in sent:
            if t0 <= s < t1:
                h = next((h for h in handled if h >= s), t1)
                gaps.append((s, min(h, t1)))
        end = t0
        for a, b in sorted(gaps):
            a = max(a, end)
            if b > a:
                total += b - a
                end = b
    return total


signal.signal(signal.SIGUSR1, on_signal)
threads = [
    threading.Thread(target=busy),
    threading.Thread(target=interrupter, args=(threading.get_ident(),)),
]
for t in threads:
    t.start()
spans = sleeper(5)
done = True
for t in threads:
    t.join()
print("slept", " ".join(f"{b - a:.6f}" for a, b in spans), file=sys.stderr)
print("signals", len(handled), file=sys.stderr)
print("outside", f"{outside_the_call(spans):.6f}", file=sys.stderr)
