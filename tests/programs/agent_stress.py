"""Stress for hwprof's Python agent: everything a program may do to a preloaded library
that samples it with SIGTRAP, at once. Usage: agent_stress.py ROUNDS LEAK_FILE

Deterministic output (the same bare and profiled): the work's checksum and counts of what
was done. LEAK_FILE gets the number of bytes that arrived on a socketpair placed on the
agent's socket's fd number after os.closerange (must be 0: the agent checks its socket's
identity before "bye").

Threads, each while the sampler runs:
- deep_alt / deep: a 256 KiB thread stack, C-level recursion 250 deep (~70% of it; 3.10
  and 3.12 crash near 300-400 deep bare), one with a 16 KiB sigaltstack, one without;
- masked: SIGTRAP blocked (signal.pthread_sigmask) while it works;
- churn: modules and classes created and freed in a loop (arenas come and go);
- main: its own SIGTRAP handler (signal.signal) and a sigaltstack, 5 SIGTRAPs sent to
  itself, fork / exec / posix_spawn loops.
"""

import ctypes
import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import types

ROUNDS = int(sys.argv[1])
LEAK_FILE = sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)


class StackT(ctypes.Structure):
    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


ALT_SIZE = 16 * 1024
_alt_buffers = []


def set_altstack():
    buf = ctypes.create_string_buffer(ALT_SIZE)
    _alt_buffers.append(buf)
    st = StackT(ctypes.cast(buf, ctypes.c_void_p), 0, ALT_SIZE)
    if libc.sigaltstack(ctypes.byref(st), None) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack")


def work(n):
    s = 0
    for i in range(n):
        s = (s * 31 + (i & 255)) % 1000003
    return s


def rec(n):
    if n < 0:
        return work(20000 - n)
    # Through a builtin, so every level uses C stack on every version.
    return sum(map(rec, [n - 1 if n > 0 else -1 - rec.leaf]))


rec.leaf = 0
DEPTH = 250
results = {}


def deep(name, alt):
    if alt:
        set_altstack()
    t = 0
    for r in range(ROUNDS):
        t = (t + rec(DEPTH)) % 1000003
    results[name] = t


def masked():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTRAP})
    t = 0
    for r in range(ROUNDS):
        t = (t + work(60000 + r)) % 1000003
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTRAP})
    results["masked"] = t


CLASS_SRC = """
class Thing{k}:
    def __init__(self, v):
        self.v = v
    def value(self):
        return self.v * {k} % 1009
items = [Thing{k}(i) for i in range(200)]
total = sum(x.value() for x in items)
"""


def churn():
    t = 0
    for r in range(ROUNDS * 40):
        mod = types.ModuleType("churn_%d" % r)
        exec(CLASS_SRC.format(k=r % 97 + 1), mod.__dict__)
        t = (t + mod.total) % 1000003
        del mod
        if r % 10 == 0:
            gc.collect()
    results["churn"] = t


traps = []


def on_trap(signum, frame):
    traps.append(signum)


spawn_trapped = []


def fork_exec_spawn(r):
    ok = 0
    pid = os.fork()
    if pid == 0:
        os._exit(0 if work(5000) >= 0 else 1)
    _, status = os.waitpid(pid, 0)
    ok += status == 0
    pid = os.posix_spawn("/bin/true", ["true"], os.environ)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTRAP:
        # Known limit (docs/security.md): a sample's SIGTRAP pending in glibc's
        # posix_spawn child, delivered after it reset the handler, before its exec.
        spawn_trapped.append(r)
        ok += 1
    else:
        ok += status == 0
    if r % 4 == 0:
        out = subprocess.run(
            [sys.executable, "-c", "print(sum(range(1000)))"],
            capture_output=True,
            text=True,
        )
        ok += out.returncode == 0 and out.stdout.strip() == "499500"
    return ok


def reuse_agent_fd():
    """Closes every fd but stdio (the agent's socket too), then puts a socketpair on the
    lowest numbers, where the agent's socket was; a forked listener counts what arrives
    on the other end until this process exits."""
    os.closerange(3, 1024)
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        n = 0
        while True:
            try:
                chunk = b.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            n += len(chunk)
        with open(LEAK_FILE, "w") as f:
            f.write("%d\n" % n)
        os._exit(0)
    b.close()
    return a  # kept open until exit


def main():
    signal.signal(signal.SIGTRAP, on_trap)
    set_altstack()
    threading.stack_size(256 * 1024)
    threads = [
        threading.Thread(target=deep, args=("deep_alt", True)),
        threading.Thread(target=deep, args=("deep", False)),
        threading.Thread(target=masked),
        threading.Thread(target=churn),
    ]
    for t in threads:
        t.start()
    spawned = 0
    main_sum = 0
    for r in range(ROUNDS):
        main_sum = (main_sum + work(30000 + r)) % 1000003
        spawned += fork_exec_spawn(r)
        if r < 5:
            os.kill(os.getpid(), signal.SIGTRAP)
    for t in threads:
        t.join()
    # Delivered in the main thread, between bytecodes: make sure all 5 ran.
    work(1000)
    keep = reuse_agent_fd()
    names = sorted(results)
    print("threads", " ".join("%s=%d" % (k, results[k]) for k in names))
    print("main", main_sum, "traps", len(traps), "spawned", spawned)
    sys.stderr.write("posix_spawn children killed by SIGTRAP: %d\n" % len(spawn_trapped))
    sys.stdout.flush()
    return keep


keep = main()
