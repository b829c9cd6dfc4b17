//! Fault-tolerant reads of this process's memory (the JVM's SafeFetch, async-profiler's
//! SafeAccess): a copy routine in assembly whose one load instruction is the only place
//! where a fault is forgiven, and a SIGSEGV/SIGBUS handler that, when the faulting
//! instruction is that load (and the fault came from the kernel, not from `kill`), moves
//! the thread to the routine's recovery label, which returns the count of words copied
//! so far. Any other fault goes to the program's own disposition (`disposition.rs`), as
//! the kernel would have delivered it. A read thus costs a few loads, not a system call,
//! and an unmapped or protected address still gives an error, never a crash.
//!
//! Used only while [`usable`]: both handlers installed, and no capture running with
//! SIGSEGV or SIGBUS blocked (a fault on a blocked SIGSEGV kills the process whatever
//! the handler; such a capture, and every capture on another architecture, reads through
//! `process_vm_readv` instead).
//!
//! A program may replace our handlers with a raw `rt_sigaction` system call, which the
//! interposed `sigaction` never sees: a fault at our load would then reach the
//! program's handler (or SIG_DFL) and kill it. So a capture asks the kernel (two
//! `rt_sigaction` queries) whether both are still ours, at most once per
//! [`CHECK_EVERY_NS`] (the first capture of the process always): once one is not, safe
//! loads stop for good and every read goes through `process_vm_readv`. Asking at every
//! capture cost two system calls, ~0.5 µs of a 3 µs budget (issue 21); a raw replacement
//! is rare (a runtime installing its handlers once), and a fault at our load rarer still
//! (17 in 14,695 captures on a churning program), so the window during which both must
//! meet is bounded by that period instead of one capture.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::{disposition, real_sigaction};

/// Both fault handlers are installed.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Captures in progress on threads that have SIGSEGV or SIGBUS blocked.
static BLOCKED_CAPTURES: AtomicU32 = AtomicU32::new(0);
/// Reads done with the safe copy (counted only with HWPROF_AGENT_STATS), and faults at
/// its load recovered.
pub static SAFE_READS: AtomicU64 = AtomicU64::new(0);
pub static FAULTS_RECOVERED: AtomicU64 = AtomicU64::new(0);

// hwprof_safe_copy(dst, src, nwords) -> words copied. `hwprof_safe_copy_load` is the
// only instruction that reads `src`; a fault there resumes at `hwprof_safe_copy_fault`
// with rax = the words copied before it.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.hwprof_safe_copy,\"ax\",@progbits",
    // The copy loop in one 64-byte line: where the binary's layout put it across one,
    // a warm capture was 0.2-0.6 µs slower (docs/performance.md, issue 15).
    ".p2align 6",
    ".globl hwprof_safe_copy",
    ".hidden hwprof_safe_copy",
    ".globl hwprof_safe_copy_load",
    ".hidden hwprof_safe_copy_load",
    ".globl hwprof_safe_copy_fault",
    ".hidden hwprof_safe_copy_fault",
    ".type hwprof_safe_copy,@function",
    "hwprof_safe_copy:",
    "    xor eax, eax",
    "    test rdx, rdx",
    "    jz .Lhwprof_safe_copy_done",
    "hwprof_safe_copy_load:",
    "    mov rcx, qword ptr [rsi + 8*rax]",
    "    mov qword ptr [rdi + 8*rax], rcx",
    "    inc rax",
    "    cmp rax, rdx",
    "    jb hwprof_safe_copy_load",
    ".Lhwprof_safe_copy_done:",
    "    ret",
    "hwprof_safe_copy_fault:",
    "    ret",
    ".size hwprof_safe_copy, .-hwprof_safe_copy",
    ".popsection",
);

#[cfg(target_arch = "x86_64")]
unsafe extern "C" {
    fn hwprof_safe_copy(dst: *mut u8, src: u64, nwords: usize) -> usize;
    static hwprof_safe_copy_load: u8;
    static hwprof_safe_copy_fault: u8;
}

/// Copies `n` words from `src` to `dst`; the words copied before the first fault.
#[cfg(target_arch = "x86_64")]
fn copy_words(dst: *mut u8, src: u64, n: usize) -> usize {
    // SAFETY: the routine writes at most `n` words at `dst` (our caller's buffer of that
    // size) and reads `src` only at the load whose faults our handler recovers.
    unsafe { hwprof_safe_copy(dst, src, n) }
}

#[cfg(not(target_arch = "x86_64"))]
fn copy_words(_dst: *mut u8, _src: u64, _n: usize) -> usize {
    0
}

/// Whether reads may use [`read`] now.
pub fn usable() -> bool {
    cfg!(target_arch = "x86_64")
        && ACTIVE.load(Ordering::Relaxed)
        && BLOCKED_CAPTURES.load(Ordering::Relaxed) == 0
}

/// Copies `buf.len()` bytes at `addr` of this process into `buf`; false if any of them
/// could not be read. Reads aligned words only, each holding at least one requested
/// byte: an aligned word never straddles a page, so no page outside the range is
/// touched.
pub fn read(addr: u64, buf: &mut [u8]) -> bool {
    let len = buf.len() as u64;
    if len == 0 {
        return true;
    }
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    // Counted only for the stats: a locked add per read was ~45 per 15-frame capture.
    if crate::stats::on() {
        SAFE_READS.fetch_add(1, Ordering::Relaxed);
    }
    if addr.is_multiple_of(8) && len.is_multiple_of(8) {
        let n = (len / 8) as usize;
        return copy_words(buf.as_mut_ptr(), addr, n) == n;
    }
    let Some(end_up) = end.checked_add(7).map(|e| e & !7) else {
        return false;
    };
    let mut tmp = [0u64; 8];
    let mut w = addr & !7;
    while w < end_up {
        let n = ((end_up - w) / 8).min(tmp.len() as u64);
        if copy_words(tmp.as_mut_ptr().cast(), w, n as usize) != n as usize {
            return false;
        }
        let chunk_end = w + n * 8;
        let (lo, hi) = (w.max(addr), chunk_end.min(end));
        // SAFETY: tmp is plain bytes, n words of it were written.
        let bytes = unsafe { std::slice::from_raw_parts(tmp.as_ptr().cast::<u8>(), 64) };
        let (Some(src), Some(dst)) = (
            bytes.get((lo - w) as usize..(hi - w) as usize),
            buf.get_mut((lo - addr) as usize..(hi - addr) as usize),
        ) else {
            return false;
        };
        dst.copy_from_slice(src);
        w = chunk_end;
    }
    true
}

/// Installs the SIGSEGV and SIGBUS handlers, recording the program's dispositions;
/// false (nothing left installed) if either fails or on another architecture.
pub fn install() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    // SAFETY: sigaction is plain data; we fill handler, mask and flags.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_fault as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as usize;
    // SA_ONSTACK: a stack overflow must reach the program's handler on its alternate
    // stack as before. No SA_NODEFER: a fault inside this handler kills the process
    // rather than recursing; `chain` unblocks the signal for a program handler that
    // asked SA_NODEFER.
    sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: sigemptyset on our struct.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    let mut prev_segv: libc::sigaction = unsafe { std::mem::zeroed() };
    let mut prev_bus: libc::sigaction = unsafe { std::mem::zeroed() };
    if real_sigaction(libc::SIGSEGV, &sa, &mut prev_segv) != 0 {
        return false;
    }
    if real_sigaction(libc::SIGBUS, &sa, &mut prev_bus) != 0 {
        real_sigaction(libc::SIGSEGV, &prev_segv, std::ptr::null_mut());
        return false;
    }
    disposition::store(libc::SIGSEGV, &prev_segv);
    disposition::store(libc::SIGBUS, &prev_bus);
    disposition::set_ours(libc::SIGSEGV, true);
    disposition::set_ours(libc::SIGBUS, true);
    ACTIVE.store(true, Ordering::SeqCst);
    true
}

/// Marks a capture running on a thread whose mask (`ctx`'s, the mask at the interrupted
/// instruction; our SIGTRAP handler adds only SIGTRAP) blocks SIGSEGV or SIGBUS: while
/// one is, every read goes through `process_vm_readv`.
pub struct CaptureGuard(bool);

/// Safe loads stopped because a handler of ours was replaced behind our back
/// (HWPROF_AGENT_STATS).
pub static HANDLERS_REPLACED: AtomicU32 = AtomicU32::new(0);

/// `struct sigaction` as the `rt_sigaction` system call takes it (x86-64).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Whether the kernel's disposition of `sig` is still our handler.
fn still_ours(sig: c_int) -> bool {
    let mut k = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: rt_sigaction with no new action only writes the current one into `k`, a
    // struct of the kernel's layout and of the 8-byte signal set it is told.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig as libc::c_long,
            std::ptr::null::<KernelSigaction>(),
            &raw mut k,
            8usize,
        )
    };
    r == 0
        && k.handler == on_fault as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as usize
}

/// While safe loads are on, checks that both handlers are still ours; if not, stops
/// them (and the interposed `sigaction` passes the program's calls to libc again: the
/// disposition is the program's own now).
fn check_handlers() {
    if ACTIVE.load(Ordering::SeqCst) && !(still_ours(libc::SIGSEGV) && still_ours(libc::SIGBUS)) {
        ACTIVE.store(false, Ordering::SeqCst);
        disposition::set_ours(libc::SIGSEGV, false);
        disposition::set_ours(libc::SIGBUS, false);
        HANDLERS_REPLACED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Longest time (CLOCK_MONOTONIC ns) between two checks that our fault handlers are
/// still installed, while captures run.
pub const CHECK_EVERY_NS: u64 = 10_000_000;
/// When the next capture checks (0: the first one does).
static NEXT_CHECK_NS: AtomicU64 = AtomicU64::new(0);

/// [`check_handlers`] when the last check is [`CHECK_EVERY_NS`] old at `now_ns`; one
/// thread does it, the others go on meanwhile.
fn check_handlers_if_due(now_ns: u64) {
    let next = NEXT_CHECK_NS.load(Ordering::Relaxed);
    if now_ns < next
        || NEXT_CHECK_NS
            .compare_exchange(
                next,
                now_ns.saturating_add(CHECK_EVERY_NS),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
    {
        return;
    }
    check_handlers();
}

impl CaptureGuard {
    /// `now_ns`: CLOCK_MONOTONIC at the handler's entry (when a check is due).
    pub fn enter(ctx: *mut c_void, now_ns: u64) -> CaptureGuard {
        if ctx.is_null() {
            check_handlers_if_due(now_ns);
            BLOCKED_CAPTURES.fetch_add(1, Ordering::SeqCst);
            return CaptureGuard(true);
        }
        // SAFETY: the kernel passes a ucontext_t to SA_SIGINFO handlers.
        let m = unsafe { &(*(ctx as *const libc::ucontext_t)).uc_sigmask };
        Self::enter_with_mask(m, now_ns)
    }

    /// As [`CaptureGuard::enter`], for a capture running with signal mask `m`.
    pub fn enter_with_mask(m: &libc::sigset_t, now_ns: u64) -> CaptureGuard {
        check_handlers_if_due(now_ns);
        // Signal n is bit n-1 of the set's first word (the kernel's layout, which glibc's
        // sigset_t starts with): no call into libc at each capture.
        // SAFETY: sigset_t is 128 bytes of plain bits, 8-aligned.
        let first = unsafe { *(m as *const libc::sigset_t).cast::<u64>() };
        let bit = |sig: c_int| 1u64 << (sig - 1);
        let blocked = first & (bit(libc::SIGSEGV) | bit(libc::SIGBUS)) != 0;
        if blocked {
            BLOCKED_CAPTURES.fetch_add(1, Ordering::SeqCst);
        }
        CaptureGuard(blocked)
    }
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        if self.0 {
            BLOCKED_CAPTURES.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

extern "C" fn on_fault(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    #[cfg(target_arch = "x86_64")]
    if !info.is_null() && !ctx.is_null() {
        // SAFETY: the kernel passes a siginfo_t and a ucontext_t to SA_SIGINFO handlers;
        // the registers are ours to change (restored by sigreturn).
        unsafe {
            let rip =
                &mut (*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs[libc::REG_RIP as usize];
            // si_code > 0: raised by the kernel for this instruction (not kill/tgkill).
            if (*info).si_code > 0 && *rip as usize == &raw const hwprof_safe_copy_load as usize {
                *rip = &raw const hwprof_safe_copy_fault as i64;
                FAULTS_RECOVERED.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    disposition::chain(sig, info, ctx, stop);
}

/// The program's disposition is the default (or ignore) for a fault of its own: our
/// handler for `sig` goes and safe loads stop; the faulting instruction, run again on
/// return, gets the default action as without the agent (the core dump included).
fn stop(sig: c_int) {
    ACTIVE.store(false, Ordering::SeqCst);
    disposition::set_ours(sig, false);
    // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask.
    let dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    real_sigaction(sig, &dfl, std::ptr::null_mut());
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn unmapped_page_fails_and_mapped_copies_exactly() {
        assert!(install());
        // SAFETY: a fresh anonymous mapping of 3 pages, the middle one unmapped.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                3 * 4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        } as u64;
        assert_ne!(base as *mut c_void, libc::MAP_FAILED);
        for i in 0..3 * 4096u64 {
            // SAFETY: inside the mapping.
            unsafe { *((base + i) as *mut u8) = (i * 7 % 251) as u8 };
        }
        // SAFETY: unmapping the middle page of our mapping.
        assert_eq!(
            unsafe { libc::munmap((base + 4096) as *mut c_void, 4096) },
            0
        );
        let expect = |a: u64, n: usize| -> Vec<u8> {
            (0..n as u64)
                .map(|i| ((a - base + i) * 7 % 251) as u8)
                .collect()
        };
        let before = FAULTS_RECOVERED.load(Ordering::Relaxed);
        // Aligned and unaligned, inside the mapped pages, up to the hole's edges.
        for (a, n) in [
            (base, 64),
            (base + 3, 13),
            (base + 4096 - 16, 16),
            (base + 4096 - 5, 5),
            (base + 8192, 100),
            (base + 8192 + 1, 4095),
            (base + 5, 2),
        ] {
            let mut buf = vec![0u8; n];
            assert!(read(a, &mut buf), "read at +{:#x} len {n}", a - base);
            assert_eq!(buf, expect(a, n), "at +{:#x} len {n}", a - base);
        }
        assert_eq!(FAULTS_RECOVERED.load(Ordering::Relaxed), before);
        // Into, across and out of the hole; non-canonical and null-page addresses.
        for (a, n) in [
            (base + 4096, 8),
            (base + 4096 - 8, 16),
            (base + 4096 - 3, 7),
            (base + 8192 - 1, 9),
            (1, 8),
            (0x8000_0000_0000_0000, 8),
        ] {
            let mut buf = vec![0u8; n];
            assert!(!read(a, &mut buf), "read at {a:#x} len {n} succeeded");
        }
        assert!(FAULTS_RECOVERED.load(Ordering::Relaxed) >= before + 6);

        // The program installs its own SIGSEGV handler later (as faulthandler does):
        // recorded and read back, ours stays and still recovers.
        extern "C" fn program_handler(_: c_int) {
            // SAFETY: abort is always safe to call.
            unsafe { libc::abort() };
        }
        disposition::set_owner();
        // SAFETY: sigaction is plain data; the interposer gets valid pointers.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = program_handler as extern "C" fn(c_int) as usize;
        act.sa_flags = libc::SA_NODEFER;
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { crate::sigaction(libc::SIGSEGV, &act, &mut old) },
            0
        );
        // (The previous one is the test harness's: Rust's stack-overflow handler.)
        assert_ne!(old.sa_sigaction, act.sa_sigaction);
        let mut back: libc::sigaction = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { crate::sigaction(libc::SIGSEGV, std::ptr::null(), &mut back) },
            0
        );
        assert_eq!(back.sa_sigaction, act.sa_sigaction);
        assert_eq!(back.sa_flags, libc::SA_NODEFER);
        let mut buf = [0u8; 16];
        let n = FAULTS_RECOVERED.load(Ordering::Relaxed);
        assert!(!read(base + 4096, &mut buf));
        assert_eq!(FAULTS_RECOVERED.load(Ordering::Relaxed), n + 1);
        // SAFETY: the harness's handler back, through the interposer.
        assert_eq!(
            unsafe { crate::sigaction(libc::SIGSEGV, &old, std::ptr::null_mut()) },
            0
        );
        // SAFETY: unmapping the rest of our mapping.
        unsafe {
            libc::munmap(base as *mut c_void, 4096);
            libc::munmap((base + 8192) as *mut c_void, 4096);
        }
    }
}
