//! The sampled thread's own `PyThreadState` from CPython's thread-local `_Py_tss_tstate`
//! (3.12+, where `_PyRuntime.gilstate.tstate_current` is gone): the state attached to
//! this very thread, found without the per-thread cache (stale after a thread ends and
//! its pthread id is reused) or a walk of the interpreter's thread list.
//!
//! The one plain load of the agent outside its own memory: the TLS slot itself. The
//! thread's static TLS block is mapped for as long as the thread runs (it is part of the
//! thread's own stack/TCB allocation), so that load cannot fault. The thread state it
//! points to is heap memory and is read by the caller only through the checked
//! `read_mem` (docs/security.md, "The agent inside the target").
//!
//! `_Py_tss_tstate` is the thread state *attached* to this thread (it holds the GIL, or
//! on 3.13 is attached), which is alive while the thread sits in the handler. The
//! interpreter and its library are loaded at start-up, so the variable lives in the static
//! TLS block: its offset from the thread pointer (`fs:0` on x86-64) is the same for every
//! thread. The offset is taken once at start (`dlsym` of a TLS symbol gives the calling
//! thread's instance) and used only when it falls in the static block below the thread
//! pointer; otherwise (or when the value is 0: the thread released the GIL) the careful
//! path decides.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::Layout;

/// `_Py_tss_tstate`'s offset from the thread pointer (wrapping), 0 when unknown.
static OFFSET: AtomicU64 = AtomicU64::new(0);
/// Largest distance below the thread pointer accepted as static TLS.
const MAX_STATIC_TLS: u64 = 1 << 20;

pub(crate) fn thread_pointer() -> u64 {
    let tp: u64;
    // SAFETY: on x86-64 Linux, fs:0 holds the thread control block's own address (the
    // TLS ABI); reading it has no side effect.
    unsafe {
        std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    tp
}

/// Finds `_Py_tss_tstate` when the interpreter keeps the current thread state there
/// (3.12+). Called once at start, outside any handler.
pub fn init(layout: &Layout) {
    if !layout.current_tstate_is_thread_local() {
        return;
    }
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; for a TLS symbol it
    // returns this thread's instance, null when absent.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_Py_tss_tstate".as_ptr()) } as u64;
    let tp = thread_pointer();
    if p == 0 || p >= tp || tp - p > MAX_STATIC_TLS || !p.is_multiple_of(8) {
        return;
    }
    OFFSET.store(p.wrapping_sub(tp), Ordering::Relaxed);
}

/// This thread's attached thread state, None when unknown or none.
pub fn current() -> Option<u64> {
    let off = OFFSET.load(Ordering::Relaxed);
    if off == 0 {
        return None;
    }
    let at = thread_pointer().wrapping_add(off);
    // SAFETY: `at` is this thread's instance of a static-TLS variable (checked at init:
    // same offset for every thread), in the thread's static TLS block, which is mapped
    // for the thread's whole life, and 8-aligned: the one plain load allowed here.
    let t = unsafe { std::ptr::read_volatile(at as *const u64) };
    (t != 0).then_some(t)
}
