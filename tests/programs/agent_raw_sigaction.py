"""A program that replaces the SIGSEGV and SIGBUS handlers with the raw rt_sigaction
system call (as a static runtime or a language runtime may), which an interposed
sigaction() never sees (tests/cli/agent_faults.rs). Spins, puts SIG_DFL back on both
through the system call, spins again, and prints the two sums."""
import ctypes


def spin(n):
    s = 0
    for i in range(n):
        s += i & 7
    return s


class KernelSigaction(ctypes.Structure):
    _fields_ = [
        ("handler", ctypes.c_ulong),
        ("flags", ctypes.c_ulong),
        ("restorer", ctypes.c_ulong),
        ("mask", ctypes.c_ulong),
    ]


SYS_rt_sigaction = 13  # x86-64
libc = ctypes.CDLL(None, use_errno=True)
print(spin(1_500_000), flush=True)
dfl = KernelSigaction(0, 0, 0, 0)
for sig in (11, 7):  # SIGSEGV, SIGBUS
    r = libc.syscall(
        ctypes.c_long(SYS_rt_sigaction),
        ctypes.c_long(sig),
        ctypes.byref(dfl),
        None,
        ctypes.c_long(8),
    )
    assert r == 0, ctypes.get_errno()
print(spin(1_500_000), flush=True)
