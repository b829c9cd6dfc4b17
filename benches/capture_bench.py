"""Times the agent's capture on this interpreter's real frames, 15 deep (the module and
14 calls of `rec`), through the agent's `hwprof_agent_time_captures` hook
(agent/src/bench_hook.rs): the handler's own function, warm, without the signal. Run
under the agent:

    hwprof collect -q --no-finalize -F 1 -r r -- python3 benches/capture_bench.py [N]

Prints `<N> captures <ns> ns <written> written`: N captures in chunks of 200 with 5 ms
between chunks (the collector drains the ring meanwhile; a record that finds the ring
full is not written but its walk is timed). `benches/python.rs` runs it
for criterion."""
import ctypes
import sys
import time


def rec(n, total):
    if n > 0:
        return rec(n - 1, total)
    hook = ctypes.CDLL(None).hwprof_agent_time_captures
    hook.restype = ctypes.c_uint64
    hook.argtypes = [ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64)]
    ns = written = 0
    done = 0
    while done < total:
        k = min(200, total - done)
        w = ctypes.c_uint64(0)
        ns += hook(k, ctypes.byref(w))
        written += w.value
        done += k
        time.sleep(0.005)
    return ns, written


total = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
ns, written = rec(13, total)
print(f"{total} captures {ns} ns {written} written")
