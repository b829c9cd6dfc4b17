//! Two per-thread values the SIGTRAP handler needs at every capture, read from the
//! thread pointer instead of through libc: the address of `errno` (saved and restored
//! around the handler) and `pthread_self()` (matched against a thread state's
//! `thread_id`). A call into libc at each sample was a cold page of libc's text: with
//! the two `sigismember` calls it was the most sampled part of the handler after the
//! walk at 1 kHz (perf, docs/performance.md).
//!
//! - glibc keeps `errno` in libc's initial-exec TLS (static TLS): its offset from the
//!   thread pointer is the same in every thread, taken once at start from
//!   `__errno_location()` and used only when it falls in the static block below the
//!   thread pointer, as `tstate_tls.rs` and `self_ids.rs` do.
//! - On x86-64 glibc, `pthread_self()` *is* the thread pointer (the TCB's own address
//!   at `fs:0`); checked once at start, else each call asks libc.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::tstate_tls::thread_pointer;

/// `errno`'s offset from the thread pointer (wrapping), 0 when unknown.
static ERRNO_OFFSET: AtomicU64 = AtomicU64::new(0);
/// `pthread_self()` equals the thread pointer (checked at start).
static SELF_IS_TP: AtomicBool = AtomicBool::new(false);
/// Largest distance below the thread pointer accepted as static TLS.
const MAX_STATIC_TLS: u64 = 1 << 20;

/// Takes both at start, outside any handler.
pub fn init() {
    let tp = thread_pointer();
    // SAFETY: __errno_location and pthread_self have no preconditions.
    let (e, me) = unsafe { (libc::__errno_location() as u64, libc::pthread_self() as u64) };
    SELF_IS_TP.store(me == tp && tp != 0, Ordering::Relaxed);
    if e != 0 && e < tp && tp - e <= MAX_STATIC_TLS && e.is_multiple_of(4) {
        ERRNO_OFFSET.store(e.wrapping_sub(tp), Ordering::Relaxed);
    }
}

/// This thread's `errno`.
pub fn errno_location() -> *mut c_int {
    let off = ERRNO_OFFSET.load(Ordering::Relaxed);
    if off == 0 {
        // SAFETY: no preconditions.
        return unsafe { libc::__errno_location() };
    }
    thread_pointer().wrapping_add(off) as *mut c_int
}

/// This thread's `pthread_self()`.
pub fn pthread_self() -> u64 {
    if SELF_IS_TP.load(Ordering::Relaxed) {
        return thread_pointer();
    }
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libc_words() -> (u64, u64) {
        // SAFETY: no preconditions.
        unsafe { (libc::__errno_location() as u64, libc::pthread_self() as u64) }
    }

    #[test]
    fn errno_and_pthread_self_are_libcs_in_every_thread() {
        init();
        assert_ne!(
            ERRNO_OFFSET.load(Ordering::Relaxed),
            0,
            "errno not in static TLS"
        );
        assert!(
            SELF_IS_TP.load(Ordering::Relaxed),
            "pthread_self is not fs:0"
        );
        let ours = || (errno_location() as u64, pthread_self());
        assert_eq!(ours(), libc_words());
        let (a, b) = std::thread::spawn(move || (ours(), libc_words()))
            .join()
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, ours(), "another thread has other words");
    }
}
