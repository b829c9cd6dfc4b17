//! Interposition of libc's `sigaction` and `signal`, so the program cannot remove the
//! agent's SIGTRAP/SIGSEGV/SIGBUS handlers, and `dlsym(RTLD_NEXT)` for the real ones.

use super::*;

pub(crate) static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
pub(crate) static REAL_SIGNAL: AtomicUsize = AtomicUsize::new(0);

pub(crate) type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
pub(crate) type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;

pub(crate) fn next_symbol(cache: &AtomicUsize, name: &std::ffi::CStr) -> usize {
    let v = cache.load(Ordering::Acquire);
    if v != 0 {
        return v;
    }
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name; returns null if absent.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    cache.store(p, Ordering::Release);
    p
}

/// libc's `sigaction` (ours below interposes it).
pub(crate) fn real_sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let p = next_symbol(&REAL_SIGACTION, c"sigaction");
    if p == 0 {
        return -1;
    }
    // SAFETY: p is libc's sigaction, of this type; the pointers come from our caller.
    unsafe { std::mem::transmute::<usize, SigactionFn>(p)(sig, act, old) }
}

/// Interposes libc's `sigaction` so that a target installing its own SIGTRAP, SIGSEGV
/// or SIGBUS handler (or resetting it) does not remove the agent's: the target's
/// disposition is recorded and chained to for every such signal that is not the
/// agent's (a perf sample, a fault at the safe load), and the target reads back what
/// it set. Everything else goes to libc unchanged.
///
/// # Safety
/// Same contract as libc's `sigaction`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    if disposition::is_ours(sig) {
        // SAFETY: the caller passes valid (or null) sigaction pointers.
        unsafe {
            if !old.is_null() {
                *old = disposition::load(sig);
            }
            // In a vfork child (shared memory) nothing is recorded: it execs next.
            if !act.is_null() && disposition::in_owner() {
                disposition::store(sig, &*act);
            }
        }
        return 0;
    }
    real_sigaction(sig, act, old)
}

/// Interposes libc's `signal` for the same reason as [`sigaction`].
///
/// # Safety
/// Same contract as libc's `signal`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if disposition::is_ours(sig) {
        if !disposition::in_owner() {
            return disposition::load(sig).sa_sigaction;
        }
        return disposition::store_handler(sig, handler);
    }
    let p = next_symbol(&REAL_SIGNAL, c"signal");
    if p == 0 {
        return libc::SIG_ERR;
    }
    // SAFETY: p is libc's signal, of this type.
    unsafe { std::mem::transmute::<usize, SignalFn>(p)(sig, handler) }
}
