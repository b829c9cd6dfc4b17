//! The target's own SIGTRAP disposition (what it installed before or after the agent,
//! through the interposed `sigaction`/`signal`): handler, flags and mask. Perf SIGTRAPs
//! are the agent's; any other is handed to this disposition by [`chain`], with the
//! program's own `sa_mask` and flags applied as the kernel would have.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

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

static HANDLER: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static FLAGS: AtomicI32 = AtomicI32::new(0);
static MASK: [AtomicU64; MASK_WORDS] = [const { AtomicU64::new(0) }; MASK_WORDS];

/// Records `act` as the program's disposition.
pub fn store(act: &libc::sigaction) {
    // SAFETY: sigset_t is plain bits, MASK_WORDS words long.
    let words: [u64; MASK_WORDS] = unsafe { std::mem::transmute_copy(&act.sa_mask) };
    for (slot, w) in MASK.iter().zip(words) {
        slot.store(w, Ordering::SeqCst);
    }
    FLAGS.store(act.sa_flags, Ordering::SeqCst);
    HANDLER.store(act.sa_sigaction, Ordering::SeqCst);
}

/// `signal(SIGTRAP, handler)`: glibc's BSD semantics (SA_RESTART, empty mask); returns
/// the previous handler.
pub fn store_handler(handler: libc::sighandler_t) -> libc::sighandler_t {
    for slot in &MASK {
        slot.store(0, Ordering::SeqCst);
    }
    FLAGS.store(libc::SA_RESTART, Ordering::SeqCst);
    HANDLER.swap(handler, Ordering::SeqCst)
}

/// The program's disposition as a `sigaction` (what it reads back).
pub fn load() -> libc::sigaction {
    // SAFETY: sigaction is plain data; zeroed is a valid value.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = HANDLER.load(Ordering::SeqCst);
    act.sa_flags = FLAGS.load(Ordering::SeqCst);
    act.sa_mask = mask();
    act
}

fn mask() -> libc::sigset_t {
    let mut words = [0u64; MASK_WORDS];
    for (w, slot) in words.iter_mut().zip(&MASK) {
        *w = slot.load(Ordering::SeqCst);
    }
    // SAFETY: sigset_t is plain bits, MASK_WORDS words long.
    unsafe { std::mem::transmute_copy(&words) }
}

/// Hands a SIGTRAP that is not ours to the program's disposition, as the kernel would
/// have: SIG_IGN drops it; SIG_DFL stops our handling and re-raises (the default action,
/// as without the agent); a handler runs with the program's `sa_mask` added to the
/// thread's mask and SIGTRAP blocked unless it asked `SA_NODEFER`, and `SA_RESETHAND`
/// resets the disposition first. It runs on the stack our handler runs on: the
/// alternate stack when the thread has one (we install with `SA_ONSTACK`).
///
/// `stop` is called before a SIG_DFL re-raise (uninstalls our handler).
pub fn chain(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void, stop: fn()) {
    // A vfork child about to exec: its handlers are logically the default ones.
    let h = if in_owner() {
        HANDLER.load(Ordering::SeqCst)
    } else {
        libc::SIG_DFL
    };
    let flags = FLAGS.load(Ordering::SeqCst);
    if h == libc::SIG_IGN {
        return;
    }
    if h == libc::SIG_DFL {
        stop();
        // SAFETY: raise is async-signal-safe; SIGTRAP stays blocked until our handler
        // returns, then the default action applies.
        unsafe { libc::raise(sig) };
        return;
    }
    if flags & libc::SA_RESETHAND != 0 {
        HANDLER.store(libc::SIG_DFL, Ordering::SeqCst);
        FLAGS.store(0, Ordering::SeqCst);
    }
    let mut block = mask();
    // SAFETY: pthread_sigmask and sigaddset/sigemptyset are async-signal-safe and get
    // valid sets; the old mask is restored after the program's handler returns.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigaddset(&mut block, libc::SIGTRAP);
        if flags & libc::SA_NODEFER != 0 {
            libc::sigdelset(&mut block, libc::SIGTRAP);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        if flags & libc::SA_NODEFER != 0 {
            let mut trap: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut trap);
            libc::sigaddset(&mut trap, libc::SIGTRAP);
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
