//! The target's own dispositions of the signals the agent handles (SIGTRAP for perf
//! samples, SIGSEGV and SIGBUS for faults at its safe load, `safe_load.rs`): what the
//! program installed before or after the agent, through the interposed
//! `sigaction`/`signal`: handler, flags and mask. A signal that is not the agent's is
//! handed to this disposition by [`chain`], with the program's own `sa_mask` and flags
//! applied as the kernel would have.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Words of a `sigset_t` (128 bytes on Linux/glibc).
const MASK_WORDS: usize = size_of::<libc::sigset_t>() / 8;

/// The process whose memory these records are: set when the handler is installed and
/// in the child of every `fork` (atfork handler). A child created with `vfork` or
/// `CLONE_VM` (posix_spawn, `_posixsubprocess`) shares our memory but has a pid of its
/// own: what it does to its dispositions before its exec must not change the parent's
/// records (`_posixsubprocess` resets every handler to SIG_DFL there: the parent's
/// next real SIGTRAP then killed it).
static OWNER_PID: AtomicU32 = AtomicU32::new(0);

extern "C" fn after_fork_in_child() {
    // SAFETY: getpid has no preconditions.
    OWNER_PID.store(unsafe { libc::getpid() } as u32, Ordering::SeqCst);
}

/// Marks this process as the owner of the records (at install), and its forked children
/// as the owners of their copies.
pub fn set_owner() {
    after_fork_in_child();
    // SAFETY: registering a plain extern "C" fn to run in fork children.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
}

/// Whether this process owns the records (false in a child sharing the parent's memory).
pub fn in_owner() -> bool {
    // SAFETY: getpid has no preconditions.
    OWNER_PID.load(Ordering::SeqCst) == unsafe { libc::getpid() } as u32
}

/// The program's disposition of one signal, and whether our handler holds it.
struct Record {
    ours: AtomicBool,
    handler: AtomicUsize,
    flags: AtomicI32,
    mask: [AtomicU64; MASK_WORDS],
}

/// SIGTRAP, SIGSEGV, SIGBUS.
static RECORDS: [Record; 3] = [const {
    Record {
        ours: AtomicBool::new(false),
        handler: AtomicUsize::new(libc::SIG_DFL),
        flags: AtomicI32::new(0),
        mask: [const { AtomicU64::new(0) }; MASK_WORDS],
    }
}; 3];

fn record(sig: c_int) -> Option<&'static Record> {
    match sig {
        libc::SIGTRAP => RECORDS.first(),
        libc::SIGSEGV => RECORDS.get(1),
        libc::SIGBUS => RECORDS.get(2),
        _ => None,
    }
}

/// Whether our handler for `sig` is installed: the interposed `sigaction`/`signal` then
/// record the program's disposition instead of replacing ours.
pub fn is_ours(sig: c_int) -> bool {
    record(sig).is_some_and(|r| r.ours.load(Ordering::SeqCst))
}

/// Marks our handler for `sig` installed or gone.
pub fn set_ours(sig: c_int, ours: bool) {
    if let Some(r) = record(sig) {
        r.ours.store(ours, Ordering::SeqCst);
    }
}

/// Records `act` as the program's disposition of `sig`.
pub fn store(sig: c_int, act: &libc::sigaction) {
    let Some(r) = record(sig) else { return };
    // SAFETY: sigset_t is plain bits, MASK_WORDS words long.
    let words: [u64; MASK_WORDS] = unsafe { std::mem::transmute_copy(&act.sa_mask) };
    for (slot, w) in r.mask.iter().zip(words) {
        slot.store(w, Ordering::SeqCst);
    }
    r.flags.store(act.sa_flags, Ordering::SeqCst);
    r.handler.store(act.sa_sigaction, Ordering::SeqCst);
}

/// `signal(sig, handler)`: glibc's BSD semantics (SA_RESTART, empty mask); returns the
/// previous handler.
pub fn store_handler(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    let Some(r) = record(sig) else {
        return libc::SIG_ERR;
    };
    for slot in &r.mask {
        slot.store(0, Ordering::SeqCst);
    }
    r.flags.store(libc::SA_RESTART, Ordering::SeqCst);
    r.handler.swap(handler, Ordering::SeqCst)
}

/// The program's disposition of `sig` as a `sigaction` (what it reads back).
pub fn load(sig: c_int) -> libc::sigaction {
    // SAFETY: sigaction is plain data; zeroed is a valid value.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    if let Some(r) = record(sig) {
        act.sa_sigaction = r.handler.load(Ordering::SeqCst);
        act.sa_flags = r.flags.load(Ordering::SeqCst);
        act.sa_mask = mask(r);
    }
    act
}

fn mask(r: &Record) -> libc::sigset_t {
    let mut words = [0u64; MASK_WORDS];
    for (w, slot) in words.iter_mut().zip(&r.mask) {
        *w = slot.load(Ordering::SeqCst);
    }
    // SAFETY: sigset_t is plain bits, MASK_WORDS words long.
    unsafe { std::mem::transmute_copy(&words) }
}

/// Hands a signal that is not ours (`sig` one of those recorded) to the program's
/// disposition, as the kernel would have: SIG_IGN drops it; SIG_DFL stops our handling
/// and re-raises (the default action, as without the agent); a handler runs with the
/// program's `sa_mask` added to the thread's mask and `sig` blocked unless it asked
/// `SA_NODEFER`, and `SA_RESETHAND` resets the disposition first. It runs on the stack
/// our handler runs on: the alternate stack when the thread has one (we install with
/// `SA_ONSTACK`).
///
/// A SIGSEGV or SIGBUS raised by the kernel for a faulting instruction (`si_code` > 0)
/// with SIG_DFL or SIG_IGN: our handling stops and we return, so the instruction runs
/// again and faults with the default action, as without the agent (the kernel ignores
/// SIG_IGN for such faults; the core dump shows the faulting instruction).
///
/// `stop` is called before the default action (uninstalls our handler for `sig`).
pub fn chain(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void, stop: fn(c_int)) {
    let Some(r) = record(sig) else { return };
    // A vfork child about to exec: its handlers are logically the default ones.
    let h = if in_owner() {
        r.handler.load(Ordering::SeqCst)
    } else {
        libc::SIG_DFL
    };
    let flags = r.flags.load(Ordering::SeqCst);
    let fault = (sig == libc::SIGSEGV || sig == libc::SIGBUS)
        && !info.is_null()
        // SAFETY: the kernel passes a siginfo_t to SA_SIGINFO handlers.
        && unsafe { (*info).si_code } > 0;
    if fault && (h == libc::SIG_DFL || h == libc::SIG_IGN) {
        stop(sig);
        return;
    }
    if h == libc::SIG_IGN {
        return;
    }
    if h == libc::SIG_DFL {
        stop(sig);
        // SAFETY: raise is async-signal-safe; `sig` stays blocked until our handler
        // returns, then the default action applies.
        unsafe { libc::raise(sig) };
        return;
    }
    if flags & libc::SA_RESETHAND != 0 {
        r.handler.store(libc::SIG_DFL, Ordering::SeqCst);
        r.flags.store(0, Ordering::SeqCst);
    }
    let mut block = mask(r);
    // SAFETY: pthread_sigmask and sigaddset/sigemptyset are async-signal-safe and get
    // valid sets; the old mask is restored after the program's handler returns.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigaddset(&mut block, sig);
        if flags & libc::SA_NODEFER != 0 {
            libc::sigdelset(&mut block, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        if flags & libc::SA_NODEFER != 0 {
            let mut trap: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut trap);
            libc::sigaddset(&mut trap, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &trap, std::ptr::null_mut());
        }
    }
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the program installed this handler with SA_SIGINFO, so it has this type.
        let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a plain handler takes the signal number.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
}
