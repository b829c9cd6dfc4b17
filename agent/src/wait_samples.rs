//! A marked wait's sample without a breakpoint (processes without Python capture).
//!
//! The breakpoint on the marker (waits.rs) costs the target ~22 µs per hit on a VM, and
//! ~7 µs per context switch just for being installed (debug registers switched with the
//! thread): docs/performance.md, "locks, 17d". Where no SIGTRAP capture is needed, the
//! agent instead calls [`capture`], which saves the registers the breakpoint would have
//! found at the marker's first instruction (the record in rdi...r9, sp at the return
//! address, ip = `hwprof_wait_marker`), and sends them with a copy of the stack from sp
//! up to the thread's stack end (at most the mode's copy size) to the collector in one
//! message (`wire::WaitSampleMsg`) on a socket of its own, which the collector reads at
//! its drain passes without being woken. The collector writes it into perf.data as a sample of
//! the mode's attr, so finalize unwinds and joins it like the kernel's.
//!
//! The stack bytes go from the stack to the socket by the kernel's own copy
//! (`sendmsg` with an iovec over the stack): an unmapped byte fails the call with EFAULT,
//! never faults the target. A full socket drops the sample (counted): the wait's
//! off-CPU time is still counted, inferred.

use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::wire::sample_type::{CALLCHAIN, REGS_USER, STACK_USER, WAIT_SAMPLE_FIELDS};
use crate::wire::{WAIT_SAMPLE_MAGIC, WAIT_SAMPLE_MAX_STACK, WAIT_SAMPLE_REGS, WaitSampleMsg};

/// The collector's socket, when the agent copies its own samples (-1: off).
static SOCK: AtomicI32 = AtomicI32::new(-1);
/// Most stack bytes a sample carries: the mode's `sample_stack_user`.
static STACK_BYTES: AtomicU32 = AtomicU32::new(0);
/// Samples sent, and dropped (socket full, or the stack unreadable).
pub(crate) static SENT: AtomicU64 = AtomicU64::new(0);
pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);
/// `exclude_callchain_user` (flags bit 22): the kernel's chain of a user-mode sample is
/// then empty, as the collector writes it.
const BIT_EXCLUDE_CALLCHAIN_USER: u64 = 1 << 22;

/// Copies samples from now on, over a socket handed to the collector on `sock`, when the mode's `attr` is one the collector
/// can write (user registers, no user call chain); false: use the breakpoint.
pub(crate) fn enable(sock: c_int, attr: &[u8]) -> bool {
    if !cfg!(target_arch = "x86_64") || attr.len() < 96 {
        return false;
    }
    let u64_at = |off: usize| {
        attr.get(off..off + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    };
    let sample_type = u64_at(24);
    let flags = u64_at(40);
    if sample_type & !WAIT_SAMPLE_FIELDS != 0
        || sample_type & REGS_USER == 0
        || (sample_type & CALLCHAIN != 0 && flags & BIT_EXCLUDE_CALLCHAIN_USER == 0)
    {
        return false;
    }
    let stack = if sample_type & STACK_USER != 0 {
        u32::from_le_bytes(attr[88..92].try_into().unwrap_or([0; 4]))
    } else {
        0
    };
    // Our own socket pair: the collector reads the other end at its drain passes.
    let mut pair = [-1 as c_int; 2];
    // SAFETY: socketpair writes two fds into the array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return false;
    }
    let [ours, theirs] = pair;
    let msg = crate::wire::WaitSocketMsg {
        magic: crate::wire::WAIT_SOCKET_MAGIC,
        pid: std::process::id(),
        reserved: 0,
    };
    let sent = crate::send_struct(sock, &msg, &[theirs]);
    crate::close(theirs);
    if !sent {
        crate::close(ours);
        return false;
    }
    let sock = ours;
    // Room for the waits between two drain passes (the kernel caps it).
    let sndbuf: c_int = 4 << 20;
    crate::set_socket_option(sock, libc::SO_SNDBUF, &sndbuf);
    STACK_BYTES.store(
        stack.min(WAIT_SAMPLE_MAX_STACK as u32) & !7,
        Ordering::Relaxed,
    );
    SOCK.store(sock, Ordering::Release);
    true
}

/// Whether marked waits go through [`capture`].
#[inline(always)]
pub(crate) fn on() -> bool {
    SOCK.load(Ordering::Relaxed) >= 0
}

/// The marker's stand-in: saves the registers as they are at its entry (the
/// breakpoint's view of `hwprof_wait_marker`'s first instruction: the arguments in
/// rdi...r9, sp at the return address) and sends the sample.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
pub(crate) extern "C" fn capture(
    _magic: u64,
    _what: u64,
    _object: u64,
    _start: u64,
    _dur: u64,
    _extra: u64,
) {
    // 24 registers (perf's order) in 200 bytes below the return address: 16-byte
    // aligned for the call (rsp was 8 mod 16 at entry).
    core::arch::naked_asm!(
        "sub rsp, 200",
        "mov [rsp + 0], rax",
        "mov [rsp + 8], rbx",
        "mov [rsp + 16], rcx",
        "mov [rsp + 24], rdx",
        "mov [rsp + 32], rsi",
        "mov [rsp + 40], rdi",
        "mov [rsp + 48], rbp",
        "lea rax, [rsp + 200]",
        "mov [rsp + 56], rax",
        "mov qword ptr [rsp + 64], 0",
        "pushfq",
        "pop rax",
        "mov [rsp + 72], rax",
        "mov qword ptr [rsp + 80], 0",
        "mov qword ptr [rsp + 88], 0",
        "mov qword ptr [rsp + 96], 0",
        "mov qword ptr [rsp + 104], 0",
        "mov qword ptr [rsp + 112], 0",
        "mov qword ptr [rsp + 120], 0",
        "mov [rsp + 128], r8",
        "mov [rsp + 136], r9",
        "mov [rsp + 144], r10",
        "mov [rsp + 152], r11",
        "mov [rsp + 160], r12",
        "mov [rsp + 168], r13",
        "mov [rsp + 176], r14",
        "mov [rsp + 184], r15",
        "mov rdi, rsp",
        "call {send}",
        "add rsp, 200",
        "ret",
        send = sym send,
    )
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) extern "C" fn capture(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) {}

/// Sends the sample of the registers saved at `regs` (see [`capture`]).
#[cfg(target_arch = "x86_64")]
extern "C" fn send(regs: *const [u64; WAIT_SAMPLE_REGS]) {
    let sock = SOCK.load(Ordering::Relaxed);
    // SAFETY: `capture` passes its saved registers, live for this call.
    let mut regs = unsafe { *regs };
    // ip: the marker's first instruction, where the breakpoint would have sampled
    // (its CFI there is the entry's, as at ours: the return address at sp).
    regs[8] = crate::waits::hwprof_wait_marker as *const () as usize as u64;
    let sp = regs[7];
    let most = u64::from(STACK_BYTES.load(Ordering::Relaxed));
    let len = crate::waits::bytes_to_stack_end(sp).map_or(most, |n| n.min(most)) & !7;
    // SAFETY: getpid/gettid/sched_getcpu have no preconditions.
    let (pid, tid, cpu) = unsafe {
        (
            libc::getpid() as u32,
            libc::syscall(libc::SYS_gettid) as u32,
            libc::sched_getcpu().max(0) as u32,
        )
    };
    let mut msg = WaitSampleMsg {
        magic: WAIT_SAMPLE_MAGIC,
        pid,
        tid,
        time: crate::now_ns(),
        cpu,
        stack_len: len as u32,
        regs,
    };
    if send_msg(sock, &msg) {
        return;
    }
    // EFAULT: the stack is shorter than its bound said (an alternate stack, a
    // coroutine's): only up to the end of sp's page, which is mapped.
    let page_end = (sp | 4095).wrapping_add(1);
    let rest = page_end.saturating_sub(sp).min(len) & !7;
    // SAFETY: errno is thread-local (the caller restores the program's).
    if rest < len && unsafe { *libc::__errno_location() } == libc::EFAULT {
        msg.stack_len = rest as u32;
        if send_msg(sock, &msg) {
            return;
        }
    }
    DROPPED.fetch_add(1, Ordering::Relaxed);
}

/// One `sendmsg` of the header and `msg.stack_len` bytes of stack at `regs[sp]`.
#[cfg(target_arch = "x86_64")]
fn send_msg(sock: c_int, msg: &WaitSampleMsg) -> bool {
    let head = crate::wire::Plain::as_bytes(msg);
    let mut iov = [
        libc::iovec {
            iov_base: head.as_ptr().cast_mut().cast(),
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: msg.regs[7] as usize as *mut libc::c_void,
            iov_len: msg.stack_len as usize,
        },
    ];
    // SAFETY: msghdr is plain data; zeroed is valid.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = iov.as_mut_ptr();
    m.msg_iovlen = 2;
    // SAFETY: the kernel reads the header and the stack range (an unmapped byte is
    // EFAULT, not a fault). The system call, not libc's sendmsg, which waits.rs
    // interposes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sendmsg,
            sock,
            &raw const m,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    } as isize;
    let ok = r == (head.len() + msg.stack_len as usize) as isize;
    if ok {
        SENT.fetch_add(1, Ordering::Relaxed);
    }
    ok
}
