//! Interposition: the real libc functions behind ours (`dlsym(RTLD_NEXT)`, cached), for
//! every interposer of the agent (waits.rs, spawn.rs, this file); and libc's
//! `sigaction` and `signal`, interposed so the program cannot remove the agent's
//! SIGTRAP/SIGSEGV/SIGBUS handlers.

use super::*;
use std::ffi::CStr;

/// A libc function found by `dlsym(RTLD_NEXT)` (or `dlvsym` for a versioned one),
/// resolved on first use and cached: afterwards one relaxed load.
pub(crate) struct Real {
    cache: AtomicUsize,
    name: &'static CStr,
    version: Option<&'static CStr>,
}

impl Real {
    pub(crate) const fn new(name: &'static CStr) -> Real {
        Real::versioned(name, None)
    }
    pub(crate) const fn versioned(name: &'static CStr, version: Option<&'static CStr>) -> Real {
        Real {
            cache: AtomicUsize::new(0),
            name,
            version,
        }
    }
    /// The function's address, 0 when no library after this one has it.
    #[inline(always)]
    pub(crate) fn get(&self) -> usize {
        let v = self.cache.load(Ordering::Relaxed);
        if v != 0 {
            return v;
        }
        self.resolve()
    }
    #[cold]
    fn resolve(&self) -> usize {
        let p = match self.version {
            // SAFETY: dlvsym with RTLD_NEXT and NUL-terminated strings; null if absent.
            Some(v) => unsafe { libc::dlvsym(libc::RTLD_NEXT, self.name.as_ptr(), v.as_ptr()) },
            None => std::ptr::null_mut(),
        } as usize;
        let p = if p == 0 { next_symbol(self.name) } else { p };
        self.cache.store(p, Ordering::Relaxed);
        p
    }
}

/// `name` in the libraries loaded after this one (`dlsym(RTLD_NEXT)`), 0 when none has it.
pub(crate) fn next_symbol(name: &CStr) -> usize {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name; returns null if absent.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize }
}

/// Calls `$real` (a [`Real`]) as the C function type `$ty` with `$args`; evaluates
/// `$missing` instead when libc lacks it.
macro_rules! call_real {
    ($real:expr, $ty:ty, ($($arg:expr),* $(,)?), else $missing:expr) => {{
        let p = $real.get();
        if p == 0 {
            $missing
        } else {
            // SAFETY: p is libc's function of this name, whose C type is `$ty`; the
            // arguments are our caller's, passed through unchanged.
            unsafe { std::mem::transmute::<usize, $ty>(p)($($arg),*) }
        }
    }};
}
pub(crate) use call_real;

/// This thread's `errno`.
#[inline(always)]
pub(crate) fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets this thread's `errno`.
#[inline(always)]
pub(crate) fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

static SIGACTION: Real = Real::new(c"sigaction");
static SIGNAL: Real = Real::new(c"signal");

type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;

/// libc's `sigaction` (ours below interposes it).
pub(crate) fn real_sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    call_real!(SIGACTION, SigactionFn, (sig, act, old), else -1)
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
    call_real!(SIGNAL, SignalFn, (sig, handler), else libc::SIG_ERR)
}
