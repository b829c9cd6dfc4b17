//! The sampled thread's pid and tid for the SIGTRAP handler without a system call in
//! the common path (each capture used to pay `getpid` and `gettid`, ~0.3-1 µs apiece
//! on this VM, more under load).
//!
//! - **pid**: kept in a page of its own marked `MADV_WIPEONFORK`. The kernel hands a
//!   forked child that page zero-filled, whoever forked (glibc's `fork`, `_Fork`
//!   without atfork handlers, a raw `clone` without `CLONE_VM`), so a child never sees
//!   its parent's pid: it reads 0 and asks the kernel once. A `pthread_atfork` handler
//!   would miss the forks that run no handlers.
//! - **tid**: a thread-local word `pid << 32 | tid`, trusted only when its pid half is
//!   the current pid: a new thread starts with 0 (its TLS block is initialized from the
//!   image, also when glibc reuses a cached stack), and a forked child's copy of the
//!   forking thread's word carries the parent's pid, so both ask the kernel once.
//!   The word is reached at a fixed offset from the thread pointer (the preloaded agent
//!   is in the static TLS block, same offset in every thread, checked at init), with
//!   plain loads: no `__tls_get_addr`, which may allocate after a `dlopen` and is not
//!   async-signal-safe.
//!
//! Not covered: a task created with `CLONE_VM` but without its own TLS (`vfork`, a raw
//! `clone(CLONE_VM)`) shares its creator's memory and thread pointer, so it would read
//! its creator's ids. Such a child runs no Python before it execs, and the
//! `vfork` users that matter block every signal until the exec (glibc `posix_spawn`,
//! CPython's `_posixsubprocess`); a SIGTRAP there is not delivered to our handler.
//! The fixed offset holds because the agent is only ever loaded by `LD_PRELOAD` (at
//! start-up: static TLS, as `tstate_tls.rs` assumes too). A thread that set up a TLS of
//! its own with a raw `clone(CLONE_SETTLS)` would get the word written in its TLS area:
//! no worse than `errno`, which the handler already saves and restores at a fixed
//! offset from the same thread pointer.
//! When the page or the offset is unavailable, every capture asks the kernel (the old
//! path).

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

thread_local! {
    /// `pid << 32 | tid` of this thread, 0 until first asked.
    static IDS: Cell<u64> = const { Cell::new(0) };
}

/// The wipe-on-fork page (its first word is the pid), 0 when unavailable.
static PID_PAGE: AtomicUsize = AtomicUsize::new(0);
/// [`IDS`]'s offset from the thread pointer (wrapping), 0 when unknown.
static TLS_OFFSET: AtomicU64 = AtomicU64::new(0);
/// Largest distance below the thread pointer accepted as static TLS.
const MAX_STATIC_TLS: u64 = 1 << 20;

/// Sets the cache up. Called once at start, outside any handler, before the SIGTRAP
/// handler is installed.
pub fn init() {
    let p = IDS.with(|c| c as *const Cell<u64> as u64);
    let tp = crate::tstate_tls::thread_pointer();
    if p == 0 || p >= tp || tp - p > MAX_STATIC_TLS || !p.is_multiple_of(8) {
        return;
    }
    // SAFETY: a fresh anonymous private mapping of one page; no memory of ours involved.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return;
    }
    // SAFETY: `page` is the page just mapped; madvise only changes its fork behaviour.
    if unsafe { libc::madvise(page, 4096, libc::MADV_WIPEONFORK) } != 0 {
        // SAFETY: unmapping the page mapped above, which nothing else refers to.
        unsafe { libc::munmap(page, 4096) };
        return;
    }
    TLS_OFFSET.store(p.wrapping_sub(tp), Ordering::Relaxed);
    PID_PAGE.store(page as usize, Ordering::Release);
}

/// (pid, tid) of the calling thread. Async-signal-safe and re-entrant: every store is
/// of the value the kernel gave, so an interrupted update is redone with the same one.
pub fn current() -> (u32, u32) {
    let page = PID_PAGE.load(Ordering::Acquire);
    let off = TLS_OFFSET.load(Ordering::Relaxed);
    if page == 0 || off == 0 {
        return (kernel_pid(), kernel_tid());
    }
    // SAFETY: `page` is our page, mapped for the life of the process, 4096-aligned.
    let pid_word = unsafe { &*(page as *const AtomicU32) };
    let mut pid = pid_word.load(Ordering::Relaxed);
    if pid == 0 {
        pid = kernel_pid();
        pid_word.store(pid, Ordering::Relaxed);
    }
    let at = (crate::tstate_tls::thread_pointer().wrapping_add(off)) as *mut u64;
    // SAFETY: `at` is this thread's instance of `IDS` (static TLS, same offset in every
    // thread, checked at init), mapped for the thread's whole life and 8-aligned.
    let ids = unsafe { std::ptr::read_volatile(at) };
    if (ids >> 32) as u32 == pid && ids as u32 != 0 {
        return (pid, ids as u32);
    }
    let tid = kernel_tid();
    // SAFETY: as above.
    unsafe { std::ptr::write_volatile(at, (u64::from(pid) << 32) | u64::from(tid)) };
    (pid, tid)
}

fn kernel_pid() -> u32 {
    // SAFETY: getpid has no preconditions and is async-signal-safe.
    unsafe { libc::getpid() as u32 }
}

fn kernel_tid() -> u32 {
    // SAFETY: gettid has no preconditions and is async-signal-safe.
    unsafe { libc::gettid() as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> (u32, u32) {
        (kernel_pid(), kernel_tid())
    }

    #[test]
    fn ids_are_the_kernels_in_threads_and_after_fork() {
        init();
        assert_ne!(PID_PAGE.load(Ordering::Relaxed), 0, "no wipe-on-fork page");
        assert_ne!(TLS_OFFSET.load(Ordering::Relaxed), 0, "TLS not static");
        assert_eq!(current(), kernel());
        assert_eq!(current(), kernel()); // cached
        let t = std::thread::spawn(|| (current(), kernel())).join().unwrap();
        assert_eq!(t.0, t.1);
        // A child forked without atfork handlers (raw syscall) must not see the
        // parent's ids: it reports whether they matched through its exit status.
        // SAFETY: the child only calls async-signal-safe functions and _exit.
        let child = unsafe { libc::syscall(libc::SYS_fork) } as i32;
        if child == 0 {
            let ok = current() == kernel() && current() == kernel();
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        assert!(child > 0);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(current(), kernel());
    }
}
