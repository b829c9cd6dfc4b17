"""A Python program that really segfaults, and a parent that reports how it died.

`agent_segv.py child`: spins ~0.3 s in Python (samples land, captures run), then reads
address 1 with ctypes: SIGSEGV in the interpreter. `agent_segv.py parent DIR [-X
faulthandler]`: runs the child (same interpreter and options, cwd DIR, core size
unlimited) and prints its status, whether a core was dumped, whether CPython's fatal
error text came out and the functions of its traceback: the same lines bare and under
hwprof when the agent leaves real faults to the program. `agent_segv.py spin`: the
child's spin without the crash.
"""
import os
import re
import resource
import subprocess
import sys
import time


def spin(n):
    s = 0
    for i in range(n):
        s += i & 7
    return s


def crash():
    import ctypes

    ctypes.string_at(1)


def child():
    print(spin(2_000_000), flush=True)
    crash()
    print("not reached", flush=True)


def no_crash():
    print(spin(2_000_000), flush=True)


def unlimited_core():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def parent(cwd, opts):
    p = subprocess.Popen(
        [sys.executable, *opts, os.path.abspath(__file__), "child"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=unlimited_core,
    )
    # os.wait4 for the raw status (the core-dump bit); a child stuck re-faulting is
    # killed after 60 s (and reported as signal 9).
    deadline = time.monotonic() + 60
    while True:
        pid, status, _ = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
        time.sleep(0.02)
    out = p.stdout.read().decode()
    err = p.stderr.read().decode()
    p.returncode = -1  # reaped above
    print("stdout", out.split())
    print("signal", os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)
    print("exit", os.WEXITSTATUS(status) if os.WIFEXITED(status) else None)
    print("core", os.WCOREDUMP(status))
    print("fatal", "Fatal Python error: Segmentation fault" in err)
    print("traceback", re.findall(r'File "[^"]*", line \d+ in (\w+)', err))


if __name__ == "__main__":
    if sys.argv[1] == "child":
        child()
    elif sys.argv[1] == "spin":
        no_crash()
    else:
        parent(sys.argv[2], sys.argv[3:])
