"""Times the agent's capture on this interpreter's real frames, 15 deep by default (the
module and 14 calls of `rec`, the last of which calls the hook), through the agent's
`hwprof_agent_time_captures` hook (agent/src/bench_hook.rs): the handler's own function,
without the signal. Run under the agent:

    hwprof collect -q --no-finalize -F 1 -r r -- python3 benches/capture_bench.py [N [FRAMES]]

Prints `<N> captures <ns> ns <written> written median <m> ns`: N captures in runs of
20, timed per run; `ns` is N times the median run's time per capture (a run preempted
by another process, on a loaded machine, does not move it), `written` the records that
reached the ring (1 ms pauses every 200 captures let the collector drain it; a capture
that finds the ring full is timed all the same). 100 untimed captures come first (a
process's first captures name its code objects and fault the agent's pages in). `benches/python.rs` runs it for
criterion."""
import ctypes
import statistics
import sys
import time


def rec(n, total):
    if n > 0:
        return rec(n - 1, total)
    hook = ctypes.CDLL(None).hwprof_agent_time_captures
    hook.restype = ctypes.c_uint64
    hook.argtypes = [ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64)]
    # Untimed first: the first captures of a process name its code objects and touch
    # the agent's scratch and tables for the first time (page faults).
    hook(100, None)
    time.sleep(0.005)
    per_capture = []
    written = done = 0
    while done < total:
        k = min(20, total - done)
        w = ctypes.c_uint64(0)
        per_capture.append(hook(k, ctypes.byref(w)) / k)
        written += w.value
        done += k
        if done % 200 == 0:
            time.sleep(0.001)
    return statistics.median(per_capture), written


total = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
frames = int(sys.argv[2]) if len(sys.argv) > 2 else 15
median, written = rec(frames - 2, total)
print(f"{total} captures {round(median * total)} ns {written} written median {median:.0f} ns")
