//! A timing hook for the benches (`benches/python.rs`, `benches/capture_bench.py`): runs
//! the handler's capture — the same `capture` function, on the calling thread's real
//! interpreter frames — `n` times in a row outside any signal, and returns the
//! nanoseconds it took. The signal's delivery is not in it (`benches/sigtrap_cost.c`
//! times that), and the caches are warm: it is the capture's floor, the handler's
//! median at 1 kHz (`HWPROF_AGENT_STATS`) its cost in a running program.
//!
//! Only does anything in a process the agent set up for Python (under `hwprof
//! collect`); returns 0 otherwise. Called from Python through `ctypes`, holding the GIL.

/// Runs `n` captures of the calling thread (each written to the ring, like the
/// handler's); the total time in ns, 0 when the agent captures nothing here.
/// `written` (if not null) receives how many records reached the ring.
///
/// # Safety
/// `written` is null or points to a writable u64.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hwprof_agent_time_captures(n: u64, written: *mut u64) -> u64 {
    let Some(st) = crate::STATE.get() else {
        return 0;
    };
    // The thread's own mask decides, as the handler's interrupted context does.
    // SAFETY: reading this thread's mask into a zeroed set.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) };
    let start = crate::now_ns();
    let mut ok = 0u64;
    for _ in 0..n {
        let t0 = crate::now_ns();
        let reads = crate::safe_load::CaptureGuard::enter_with_mask(&mask, t0);
        if crate::capture(st, false, t0) {
            ok += 1;
        }
        drop(reads);
    }
    let ns = crate::now_ns().saturating_sub(start);
    if !written.is_null() {
        // SAFETY: the caller passes a writable u64 (see above).
        unsafe { *written = ok };
    }
    ns
}
