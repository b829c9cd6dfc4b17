//! Locks mode: which call a thread blocked in, on what, for how long, and where.
//!
//! When the collector sets `HWPROF_AGENT_WAITS` (the `--wait-threshold` in ns), the
//! blocking calls below, interposed by symbol (this library is preloaded first), time
//! themselves; one that took at least the threshold, or that a signal interrupted
//! (EINTR: its restart must know where the wait began), calls [`hwprof_wait_marker`] with
//! its record (class, object, start, duration: `wire/src/lib.rs`, "waits"). Without
//! Python capture the agent copies that sample itself (`wait_samples.rs`); in a Python
//! process it opens an
//! execute breakpoint on the marker's first instruction that samples with the mode's
//! attr (user registers and a copy of the user stack): the kernel copies the stack at
//! that point, for the same DWARF unwinding as every other sample, and the record
//! travels in the sample's registers. Finalize pairs it with the thread's switch
//! records (exact off-CPU intervals) between `start` and `start + duration`.
//!
//! Cost: without `HWPROF_AGENT_WAITS` each call is one relaxed load more. With it, an
//! uncontended mutex (or rwlock, or semaphore) costs a try-lock first and no clock read;
//! other calls read the vDSO clock twice. `errno` and return values are the real
//! call's: nothing between the real call and our return writes `errno` (the marker is
//! a plain function; the breakpoint sample does not signal the thread).
//!
//! The interposers are declared from one table (`interpose!`, at the end of this file):
//! each is its C signature, its real function's fallback and what it times.

use std::ffi::{CStr, c_int, c_uint, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::wire::*;
use crate::{Real, call_real, errno, set_errno};

/// Waits at least this long (ns) take a stack; `u64::MAX`: off (not in locks mode).
static THRESHOLD_NS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Reads `HWPROF_AGENT_WAITS` (a threshold in ns): locks mode when set.
pub(crate) fn configure() -> bool {
    let Some(ns) = crate::env("HWPROF_AGENT_WAITS").and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return false;
    };
    resolve_all();
    note_main_stack_end();
    THRESHOLD_NS.store(ns.min(u64::MAX - 1), Ordering::Release);
    true
}

/// Declares a marker: a function a breakpoint is on, whose arguments are the wait
/// record (see `wire/src/lib.rs`); it does nothing, but must stay a real call (not
/// inlined, not folded: each keeps `$distinct` in its body).
macro_rules! markers {
    ($($(#[$doc:meta])* $name:ident($distinct:expr);)*) => {$(
        $(#[$doc])*
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub extern "C" fn $name(
            magic: u64, what: u64, object: u64, start: u64, dur: u64, extra: u64,
        ) {
            std::hint::black_box((magic, what, object, start, dur, extra, $distinct));
        }
    )*};
}

markers! {
    /// The marker of a wait with a full stack copy (the mode's size, 8 KiB by default).
    hwprof_wait_marker(());
    /// The marker of a wait whose whole stack fits in [`SHORT_STACK`] bytes: its
    /// breakpoint copies only that much. Same record; a body of its own so that the
    /// linker never folds the two into one.
    hwprof_wait_marker_short(SHORT_STACK);
}

/// Bytes of stack the short marker's breakpoint copies (a multiple of 8). A thread's
/// bound (below) includes glibc's static TLS block (1.8 KiB for a C program with
/// glibc 2.36), so a thread's frames fit when they take up to ~2 KiB.
const SHORT_STACK: u32 = 4096;
/// Bytes above the main thread's outermost frame kept in a short copy all the same
/// (what an unwinder may read past `_start`'s frame).
const SHORT_SLACK: u64 = 512;
/// The short marker's breakpoint is open on every CPU the full one is.
static SHORT_READY: AtomicBool = AtomicBool::new(false);

/// Waits marked (`HWPROF_AGENT_STATS`: set against the marker samples in perf.data).
pub(crate) static MARKED: AtomicU64 = AtomicU64::new(0);

/// Breakpoints opened (full and short, over the CPUs), for the same statistics.
pub(crate) static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);
/// `__libc_stack_end`: the main thread's stack pointer at `_start` (0: unknown).
static MAIN_STACK_END: AtomicU64 = AtomicU64::new(0);

/// Calls the marker whose breakpoint copies the least stack that still holds every
/// frame of this thread, so that finalize unwinds the same stack as from a full copy.
///
/// A thread's frames lie between its stack pointer and its TCB (`pthread_self()`:
/// x86-64 glibc puts the TCB at the top of a thread's stack block, its static TLS
/// below it and the stack below that: `clone3`'s frame, the outermost, starts under
/// the TLS); the main thread's, below `__libc_stack_end` (the stack pointer `_start`
/// got). A stack pointer outside both (a signal's alternate stack, a coroutine's) or
/// deeper than the short copy takes the full one: the same stack as before.
#[inline(never)]
fn mark(what: u64, object: u64, start: u64, dur: u64, extra: u64) {
    MARKED.fetch_add(1, Ordering::Relaxed);
    // No breakpoint in this process: the agent copies the sample itself.
    if crate::wait_samples::on() {
        crate::wait_samples::capture(WAIT_MAGIC, what, object, start, dur, extra);
    } else if SHORT_READY.load(Ordering::Relaxed) && fits_short(stack_pointer()) {
        hwprof_wait_marker_short(WAIT_MAGIC, what, object, start, dur, extra);
    } else {
        hwprof_wait_marker(WAIT_MAGIC, what, object, start, dur, extra);
    }
}

/// Whether the frames from `sp` up to the thread's outermost one (plus the slack) fit
/// in the short copy.
fn fits_short(sp: u64) -> bool {
    bytes_to_stack_end(sp).is_some_and(|n| n <= u64::from(SHORT_STACK))
}

/// Bytes from `sp` to the end of this thread's frames (its TCB; the main thread's
/// `__libc_stack_end` plus the slack), when `sp` is on the thread's own stack.
pub(crate) fn bytes_to_stack_end(sp: u64) -> Option<u64> {
    // SAFETY: pthread_self reads the thread pointer; no side effect.
    let tcb = unsafe { libc::pthread_self() } as u64;
    let main = MAIN_STACK_END.load(Ordering::Relaxed);
    // A thread's stack lies under its TCB, within the largest stack size glibc gives.
    let near = |top: u64| top > sp && top - sp < (1 << 30);
    if near(tcb) {
        Some(tcb - sp)
    } else if near(main) {
        Some(main - sp + SHORT_SLACK)
    } else {
        None
    }
}

#[inline(always)]
fn stack_pointer() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        let sp: u64;
        // SAFETY: reads rsp into a register; no memory access.
        unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack)) };
        sp
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        u64::MAX // never short
    }
}

/// Reads `__libc_stack_end` (ld.so's), for [`fits_short`] on the main thread.
fn note_main_stack_end() {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; null when absent.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__libc_stack_end".as_ptr()) };
    if !p.is_null() {
        // SAFETY: `__libc_stack_end` is a `void *` variable of ld.so, set before any
        // constructor runs.
        let end = unsafe { *(p as *const usize) } as u64;
        MAIN_STACK_END.store(end, Ordering::Relaxed);
    }
}

/// perf_event_attr offsets and bits used here (see `linux/perf_event.h`).
const PERF_TYPE_BREAKPOINT: u32 = 5;
const HW_BREAKPOINT_X: u32 = 4;
const BIT_FREQ: u64 = 1 << 10;
const BITS_PRECISE_IP: u64 = 3 << 15;
const BIT_EXCLUDE_HV: u64 = 1 << 6;

/// Opens the marker's breakpoint per CPU, from the mode's sampling attr (same sample
/// type, registers and stack size, so the collector files its samples under that attr):
/// every call samples, user mode only, disabled until its ring is mapped, inherited
/// by new threads and forked children (the marker is at the same address there),
/// removed at exec (the new program's agent opens its own).
///
/// In a Python process (`sigtrap_cookie`), the breakpoint also signals the thread
/// (`sigtrap`, `sig_data` = the cookie): the agent's SIGTRAP handler captures the Python
/// stack at the marker, so `time.sleep` or `Lock.acquire` get the wait at their line.
pub(crate) fn open_breakpoints(attr: &[u8], sigtrap_cookie: Option<u64>) -> Vec<(u32, c_int)> {
    let mut a = attr.to_vec();
    if a.len() < 128 {
        return Vec::new();
    }
    let put32 =
        |a: &mut Vec<u8>, off: usize, v: u32| a[off..off + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |a: &mut Vec<u8>, off: usize, v: u64| a[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut a, 0, PERF_TYPE_BREAKPOINT);
    put64(&mut a, 8, 0); // config
    put64(&mut a, 16, 1); // sample_period: every call
    let mut flags = u64::from_le_bytes(a[40..48].try_into().unwrap_or([0; 8]));
    flags &= !(BIT_FREQ
        | BITS_PRECISE_IP
        | crate::BIT_MMAP
        | crate::BIT_COMM
        | crate::BIT_ENABLE_ON_EXEC
        | crate::BIT_TASK
        | crate::BIT_MMAP_DATA
        | crate::BIT_MMAP2
        | crate::BIT_COMM_EXEC
        | crate::BIT_CONTEXT_SWITCH
        | crate::BITS_NS_TO_TEXT_POKE
        | crate::BIT_SIGTRAP);
    flags |= crate::BIT_DISABLED
        | crate::BIT_INHERIT
        | crate::BIT_REMOVE_ON_EXEC
        | crate::BIT_EXCLUDE_KERNEL
        | BIT_EXCLUDE_HV;
    if let Some(cookie) = sigtrap_cookie {
        flags |= crate::BIT_SIGTRAP;
        put64(&mut a, 120, cookie);
    }
    put64(&mut a, 40, flags);
    put32(&mut a, 52, HW_BREAKPOINT_X);
    put64(&mut a, 56, hwprof_wait_marker as *const () as usize as u64); // bp_addr
    put64(&mut a, 64, size_of::<libc::c_long>() as u64); // bp_len
    let size = (a.len() as u32).min(4096);
    put32(&mut a, 4, size);
    let mut fds = crate::open_on_cpus(&a);
    BREAKPOINTS.store(fds.len() as u64, Ordering::Relaxed);
    // The short marker: same attr, the same record, a short stack copy (when the mode
    // copies more than that at all).
    let sample_type = u64::from_le_bytes(a[24..32].try_into().unwrap_or([0; 8]));
    let stack = u32::from_le_bytes(a[88..92].try_into().unwrap_or([0; 4]));
    if fds.is_empty() || sample_type & SAMPLE_STACK_USER == 0 || stack <= SHORT_STACK {
        return fds;
    }
    put64(
        &mut a,
        56,
        hwprof_wait_marker_short as *const () as usize as u64,
    );
    put32(&mut a, 88, SHORT_STACK);
    let short = crate::open_on_cpus(&a);
    // Only when it covers every CPU the full one does (a thread may run anywhere).
    let ready = short.len() == fds.len();
    SHORT_READY.store(ready, Ordering::Relaxed);
    if ready {
        fds.extend(short);
        BREAKPOINTS.store(fds.len() as u64, Ordering::Relaxed);
    } else {
        for (_, fd) in short {
            crate::close(fd);
        }
    }
    fds
}

/// `PERF_SAMPLE_STACK_USER`.
const SAMPLE_STACK_USER: u64 = 1 << 13;

#[inline(always)]
fn threshold() -> u64 {
    THRESHOLD_NS.load(Ordering::Relaxed)
}

/// After a timed call that started at `t0`: the marker when it blocked long enough.
#[inline(always)]
fn done(t0: u64, class: u64, kind: u64, object: u64) {
    done_flagged(t0, class, kind, object, 0, 0)
}

/// `done`, with `flags` (`WAIT_INTERRUPTED`) in the record's `what`.
#[inline(always)]
/// `deadline`: when the call would have ended (a sleep's), in the record's `extra`.
fn done_flagged(t0: u64, class: u64, kind: u64, object: u64, flags: u64, deadline: u64) {
    let dur = crate::now_ns().saturating_sub(t0);
    // An interrupted call is marked however short: its restart (PEP 475, or the
    // caller's loop) continues the same wait, and finalize must know it began here
    // (`finalize::waits_join`). Signals are rare next to waits, so this costs little.
    if dur >= threshold() || flags & WAIT_INTERRUPTED != 0 {
        // SAFETY: errno is thread-local; kept as the real call left it.
        let errno = unsafe { *libc::__errno_location() };
        if kind == WAIT_OBJ_FD {
            mark_fd(class | flags, object, t0, dur);
        } else {
            mark(class | (kind << 8) | flags, object, t0, dur, deadline);
        }
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }
}

/// The marker of a wait on a file descriptor, with the fd's path (`fd_paths`) in a
/// buffer of this frame: above the marker's stack pointer, so inside the sample's copy
/// of the stack, where finalize reads it (`r9` points at it). Out of line: the buffer
/// is no cost to the interposers' fast paths.
#[inline(never)]
#[cold]
fn mark_fd(class: u64, fd: u64, t0: u64, dur: u64) {
    let mut path = [0u8; crate::fd_paths::PATH_BYTES];
    let known = crate::fd_paths::path_of(fd as c_int, &mut path);
    mark(
        class | (WAIT_OBJ_FD << 8),
        fd,
        t0,
        dur,
        if known { path.as_ptr() as u64 } else { 0 },
    );
    std::hint::black_box(&path);
}

/// Runs `f` timed as a wait of `class` on `object` (when waits are on).
#[inline(always)]
fn timed<R>(class: u64, kind: u64, object: u64, f: impl FnOnce() -> R) -> R {
    if threshold() == u64::MAX {
        return f();
    }
    let t0 = crate::now_ns();
    let r = f();
    done(t0, class, kind, object);
    r
}

/// Runs an MPI call timed as a wait of class mpi on the function `index` of
/// `wire::MPI_FUNCTIONS` (mpi_waits.rs); finalize counts its whole duration.
#[inline(always)]
pub(crate) fn timed_mpi<R>(index: u64, f: impl FnOnce() -> R) -> R {
    timed(WAIT_MPI, WAIT_OBJ_MPI_FN, index, f)
}

/// `timed` for a call a signal handler can interrupt and its caller restart (sleeps,
/// poll, select): `eintr` tells from the result that it returned EINTR, so that the
/// restarted call counts as the same wait.
#[inline(always)]
fn timed_restartable<R>(
    class: u64,
    kind: u64,
    object: u64,
    f: impl FnOnce() -> R,
    eintr: impl FnOnce(&R) -> bool,
    deadline: impl FnOnce(u64) -> u64,
) -> R {
    if threshold() == u64::MAX {
        return f();
    }
    let t0 = crate::now_ns();
    let r = f();
    let flags = if eintr(&r) { WAIT_INTERRUPTED } else { 0 };
    // Only for a wait without a path in `extra`.
    let deadline = if kind == WAIT_OBJ_FD { 0 } else { deadline(t0) };
    done_flagged(t0, class, kind, object, flags, deadline);
    r
}

/// `t0` + a relative timespec, in ns; 0 when there is none.
fn after_ts(t0: u64, t: TS) -> u64 {
    if t.is_null() {
        return 0;
    }
    // SAFETY: the caller's timespec, which the real call has just read.
    let t = unsafe { *t };
    t0.saturating_add((t.tv_sec.max(0) as u64).saturating_mul(1_000_000_000))
        .saturating_add(t.tv_nsec.max(0) as u64)
}

/// A call that returned -1 with errno EINTR.
#[inline(always)]
fn minus_one_eintr<R: PartialEq + From<i8>>(r: &R) -> bool {
    // SAFETY: errno is thread-local; read only when the call failed, so it is its own.
    *r == R::from(-1) && unsafe { *libc::__errno_location() } == libc::EINTR
}

/// Calls the real function `$real` (a `Real`) as the fn type `$ty` with `$args`; when
/// libc lacks it, fails as a missing function would (ENOSYS, `$fail`).
macro_rules! call {
    ($real:expr, $ty:ty, $fail:expr, ($($arg:expr),* $(,)?)) => {
        call_real!($real, $ty, ($($arg),*), else missing($fail))
    };
}

/// What an interposer answers when libc lacks the real function: `fail`, errno ENOSYS.
#[cold]
fn missing<R>(fail: R) -> R {
    set_errno(libc::ENOSYS);
    fail
}

type M = *mut libc::pthread_mutex_t;
type RW = *mut libc::pthread_rwlock_t;
type TS = *const libc::timespec;
type Cond = *mut libc::pthread_cond_t;
type Sem = *mut libc::sem_t;
type Sockaddr = *mut libc::sockaddr;
type Socklen = *mut libc::socklen_t;
type Sigset = *const libc::sigset_t;
type FdSet = *mut libc::fd_set;

/// A mutex or rwlock call: a try first (an uncontended call reads no clock),
/// then (busy) the blocking call, timed as a wait on `o`. `try_`'s real function takes
/// the object alone and returns 0 when it took it.
#[inline(always)]
fn try_then_timed(class: u64, o: *mut c_void, try_: &Real, lock: impl FnOnce() -> c_int) -> c_int {
    if threshold() == u64::MAX {
        return lock();
    }
    let r = call!(
        try_,
        unsafe extern "C" fn(*mut c_void) -> c_int,
        libc::EINVAL,
        (o)
    );
    // EBUSY: held; anything else (0, EOWNERDEAD, EAGAIN, EDEADLK...) is what the lock
    // call would have answered without blocking.
    if r != libc::EBUSY {
        return r;
    }
    timed(class, WAIT_OBJ_ADDR, o as u64, lock)
}

/// The first fd of a poll set (the object a poll waits on), -1 when none.
fn first_fd(fds: *const libc::pollfd, n: libc::nfds_t) -> u64 {
    if fds.is_null() || n == 0 {
        return u64::MAX;
    }
    // SAFETY: the caller passes `n` >= 1 pollfds at `fds` (poll's contract); a bad
    // pointer would fault in poll itself a moment later.
    unsafe { (*fds).fd as i64 as u64 }
}

/// `t0` + `ms` (a poll timeout), 0 when it waits without end (negative).
fn after_ms(t0: u64, ms: c_int) -> u64 {
    if ms < 0 {
        0
    } else {
        t0.saturating_add(ms as u64 * 1_000_000)
    }
}

/// `t0` + a timeval (select's, as asked), 0 when there is none.
fn after_tv(t0: u64, tv: Option<libc::timeval>) -> u64 {
    tv.map_or(0, |tv| {
        t0.saturating_add((tv.tv_sec.max(0) as u64).saturating_mul(1_000_000_000))
            .saturating_add((tv.tv_usec.max(0) as u64).saturating_mul(1000))
    })
}

/// A `clock_nanosleep`'s end: `req` after `t0`, or `req` itself when absolute on the
/// monotonic clock (the markers' clock); 0 when absolute on another clock.
fn clock_deadline(t0: u64, clk: libc::clockid_t, flags: c_int, req: TS) -> u64 {
    if flags & libc::TIMER_ABSTIME == 0 {
        after_ts(t0, req)
    } else if clk == libc::CLOCK_MONOTONIC && !req.is_null() {
        // SAFETY: as in after_ts.
        let t = unsafe { *req };
        (t.tv_sec.max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec.max(0) as u64)
    } else {
        0
    }
}

/// `futex(2)` operations that block (the command, without `FUTEX_PRIVATE_FLAG` and
/// `FUTEX_CLOCK_REALTIME`): WAIT, LOCK_PI, WAIT_BITSET, WAIT_REQUEUE_PI, LOCK_PI2.
fn futex_blocks(op: libc::c_long) -> bool {
    matches!(op & 0x7f, 0 | 6 | 9 | 11 | 13)
}

/// Declares each interposer from one entry: `$id`, the static [`Real`] of the function
/// (by name, or by name and symbol version with `@ c"VERSION"`); its C signature; what it returns
/// when libc lacks it (errno ENOSYS); and its body, in which `$real` is a closure that
/// makes the real call with the caller's arguments unchanged. `resolve_all` resolves
/// them all, and the `also` functions (called but not interposed), at once: at load,
/// in locks mode, so no first call resolves inside a signal handler or a lock.
macro_rules! interpose {
    (
        also { $($aid:ident = $aname:literal;)* }
        $(
            $(#[$attr:meta])*
            $id:ident $(@ $ver:literal)? = fn $name:ident($($a:ident: $t:ty),* $(,)?) -> $ret:ty,
                else $fail:expr; $real:ident => $body:expr;
        )*
    ) => {
        $(static $aid: Real = Real::new($aname);)*
        $(
            static $id: Real = Real::versioned(
                match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                    Ok(name) => name,
                    Err(_) => panic!("a function name is a C string"),
                },
                version!($($ver)?),
            );
        )*
        fn resolve_all() {
            $($aid.get();)*
            $($id.get();)*
        }
        $(
            $(#[$attr])*
            #[doc = concat!("# Safety\nSame contract as libc's `", stringify!($name), "`.")]
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $name($($a: $t),*) -> $ret {
                let $real = || call!($id, unsafe extern "C" fn($($t),*) -> $ret, $fail, ($($a),*));
                $body
            }
        )*
    };
}

/// `interpose!`'s optional symbol version, as an `Option`.
macro_rules! version {
    () => {
        None
    };
    ($v:literal) => {
        Some($v)
    };
}

interpose! {
    also {
        MUTEX_TRYLOCK = c"pthread_mutex_trylock";
        RW_TRYRDLOCK = c"pthread_rwlock_tryrdlock";
        RW_TRYWRLOCK = c"pthread_rwlock_trywrlock";
        SEM_TRYWAIT = c"sem_trywait";
    }

    // Locks: a try first (see try_then_timed).
    MUTEX_LOCK = fn pthread_mutex_lock(m: M) -> c_int, else libc::EINVAL;
        real => try_then_timed(WAIT_LOCK, m.cast(), &MUTEX_TRYLOCK, real);
    MUTEX_TIMEDLOCK = fn pthread_mutex_timedlock(m: M, t: TS) -> c_int, else libc::EINVAL;
        real => try_then_timed(WAIT_LOCK, m.cast(), &MUTEX_TRYLOCK, real);
    MUTEX_CLOCKLOCK = fn pthread_mutex_clocklock(m: M, clk: libc::clockid_t, t: TS)
        -> c_int, else libc::EINVAL;
        real => try_then_timed(WAIT_LOCK, m.cast(), &MUTEX_TRYLOCK, real);
    RW_RDLOCK = fn pthread_rwlock_rdlock(l: RW) -> c_int, else libc::EINVAL;
        real => try_then_timed(WAIT_LOCK, l.cast(), &RW_TRYRDLOCK, real);
    RW_TIMEDRDLOCK = fn pthread_rwlock_timedrdlock(l: RW, t: TS) -> c_int, else libc::EINVAL;
        real => try_then_timed(WAIT_LOCK, l.cast(), &RW_TRYRDLOCK, real);
    RW_WRLOCK = fn pthread_rwlock_wrlock(l: RW) -> c_int, else libc::EINVAL;
        real => try_then_timed(WAIT_LOCK, l.cast(), &RW_TRYWRLOCK, real);
    RW_TIMEDWRLOCK = fn pthread_rwlock_timedwrlock(l: RW, t: TS) -> c_int, else libc::EINVAL;
        real => try_then_timed(WAIT_LOCK, l.cast(), &RW_TRYWRLOCK, real);
    /// `syscall(2)`: a futex wait made through it (Rust's std locks, Go, hand-written
    /// locks) is a `lock` wait on the futex word; every other call passes through.
    ///
    /// The C function is variadic; on x86-64 its integer arguments travel in the same
    /// registers (and stack slot) as these six fixed ones, so all six are read and
    /// passed on whatever the caller gave (an argument the caller did not pass is
    /// whatever its register or stack slot held, unused by the kernel for that call,
    /// exactly as with libc's own `syscall`).
    #[cfg(target_arch = "x86_64")]
    SYSCALL = fn syscall(n: libc::c_long, a1: libc::c_long, a2: libc::c_long, a3: libc::c_long,
        a4: libc::c_long, a5: libc::c_long, a6: libc::c_long) -> libc::c_long, else -1;
        real => if n != libc::SYS_futex || threshold() == u64::MAX || !futex_blocks(a2) {
            real()
        } else {
            timed(WAIT_LOCK, WAIT_OBJ_ADDR, a1 as u64, real)
        };

    // Conditions. dlsym alone gives the GLIBC_2.2.5 compatibility condvar, not the one
    // programs use.
    COND_WAIT @ c"GLIBC_2.3.2" = fn pthread_cond_wait(c: Cond, m: M) -> c_int, else libc::EINVAL;
        real => timed(WAIT_CONDITION, WAIT_OBJ_ADDR, c as u64, real);
    COND_TIMEDWAIT @ c"GLIBC_2.3.2" = fn pthread_cond_timedwait(c: Cond, m: M, t: TS)
        -> c_int, else libc::EINVAL;
        real => timed(WAIT_CONDITION, WAIT_OBJ_ADDR, c as u64, real);
    COND_CLOCKWAIT = fn pthread_cond_clockwait(c: Cond, m: M, clk: libc::clockid_t, t: TS)
        -> c_int, else libc::EINVAL;
        real => timed(WAIT_CONDITION, WAIT_OBJ_ADDR, c as u64, real);
    BARRIER_WAIT = fn pthread_barrier_wait(b: *mut libc::pthread_barrier_t)
        -> c_int, else libc::EINVAL;
        real => timed(WAIT_CONDITION, WAIT_OBJ_ADDR, b as u64, real);
    SEM_WAIT = fn sem_wait(s: Sem) -> c_int, else -1;
        real => {
            if threshold() == u64::MAX {
                return real();
            }
            // sem_trywait's EAGAIN must not leak.
            let errno = errno();
            if call!(SEM_TRYWAIT, unsafe extern "C" fn(Sem) -> c_int, -1, (s)) == 0 {
                return 0;
            }
            set_errno(errno);
            timed(WAIT_CONDITION, WAIT_OBJ_ADDR, s as u64, real)
        };
    SEM_TIMEDWAIT = fn sem_timedwait(s: Sem, t: TS) -> c_int, else -1;
        real => timed(WAIT_CONDITION, WAIT_OBJ_ADDR, s as u64, real);
    SEM_CLOCKWAIT = fn sem_clockwait(s: Sem, clk: libc::clockid_t, t: TS) -> c_int, else -1;
        real => timed(WAIT_CONDITION, WAIT_OBJ_ADDR, s as u64, real);

    // Sleeps: a restarted sleep is the same wait; the record has its deadline.
    NANOSLEEP = fn nanosleep(req: TS, rem: *mut libc::timespec) -> c_int, else -1;
        real => timed_restartable(WAIT_SLEEP, WAIT_OBJ_NONE, 0, real, minus_one_eintr,
            |t0| after_ts(t0, req));
    // clock_nanosleep returns its error (it does not set errno).
    CLOCK_NANOSLEEP = fn clock_nanosleep(clk: libc::clockid_t, flags: c_int, req: TS,
        rem: *mut libc::timespec) -> c_int, else libc::ENOSYS;
        real => timed_restartable(WAIT_SLEEP, WAIT_OBJ_NONE, 0, real, |r| *r == libc::EINTR,
            |t0| clock_deadline(t0, clk, flags, req));
    USLEEP = fn usleep(us: libc::useconds_t) -> c_int, else -1;
        real => timed(WAIT_SLEEP, WAIT_OBJ_NONE, 0, real);
    SLEEP = fn sleep(s: c_uint) -> c_uint, else s;
        real => timed(WAIT_SLEEP, WAIT_OBJ_NONE, 0, real);

    // I/O on a descriptor (the object), with its path.
    READ = fn read(fd: c_int, buf: *mut c_void, n: usize) -> isize, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);
    READV = fn readv(fd: c_int, iov: *const libc::iovec, n: c_int) -> isize, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);
    WRITE = fn write(fd: c_int, buf: *const c_void, n: usize) -> isize, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);
    WRITEV = fn writev(fd: c_int, iov: *const libc::iovec, n: c_int) -> isize, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);
    RECV = fn recv(fd: c_int, buf: *mut c_void, n: usize, flags: c_int) -> isize, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);
    RECVFROM = fn recvfrom(fd: c_int, buf: *mut c_void, n: usize, flags: c_int, addr: Sockaddr,
        len: Socklen) -> isize, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);
    RECVMSG = fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> isize, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);
    SEND = fn send(fd: c_int, buf: *const c_void, n: usize, flags: c_int) -> isize, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);
    SENDTO = fn sendto(fd: c_int, buf: *const c_void, n: usize, flags: c_int,
        addr: *const libc::sockaddr, len: libc::socklen_t) -> isize, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);
    SENDMSG = fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> isize, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);
    ACCEPT = fn accept(fd: c_int, addr: Sockaddr, len: Socklen) -> c_int, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);
    ACCEPT4 = fn accept4(fd: c_int, addr: Sockaddr, len: Socklen, flags: c_int)
        -> c_int, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);
    CONNECT = fn connect(fd: c_int, addr: *const libc::sockaddr, len: libc::socklen_t)
        -> c_int, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_FD, fd as u64, real);

    // Waits on several descriptors: the first (poll's) or the epoll fd; without
    // descriptors, a sleep (CPython 3.8-3.10's `time.sleep` is a select). A zero
    // timeout never blocks: untimed.
    POLL = fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int, else -1;
        real => if threshold() == u64::MAX || timeout == 0 {
            real()
        } else if n == 0 {
            timed_restartable(WAIT_SLEEP, WAIT_OBJ_NONE, 0, real, minus_one_eintr,
                |t0| after_ms(t0, timeout))
        } else {
            timed_restartable(WAIT_IO, WAIT_OBJ_FD, first_fd(fds, n), real, minus_one_eintr,
                |_| 0)
        };
    PPOLL = fn ppoll(fds: *mut libc::pollfd, n: libc::nfds_t, t: TS, mask: Sigset)
        -> c_int, else -1;
        real => if threshold() == u64::MAX {
            real()
        } else {
            timed(WAIT_IO, WAIT_OBJ_FD, first_fd(fds, n), real)
        };
    SELECT = fn select(n: c_int, r: FdSet, w: FdSet, e: FdSet, t: *mut libc::timeval)
        -> c_int, else -1;
        real => {
            let class = if r.is_null() && w.is_null() && e.is_null() {
                WAIT_SLEEP
            } else {
                WAIT_IO
            };
            // The timeout as asked (select updates it to the time left).
            // SAFETY: the caller's timeval, which select is about to read.
            let asked = (!t.is_null()).then(|| unsafe { *t });
            timed_restartable(class, WAIT_OBJ_NONE, 0, real, minus_one_eintr,
                |t0| after_tv(t0, asked))
        };
    PSELECT = fn pselect(n: c_int, r: FdSet, w: FdSet, e: FdSet, t: TS, mask: Sigset)
        -> c_int, else -1;
        real => timed(WAIT_IO, WAIT_OBJ_NONE, 0, real);
    EPOLL_WAIT = fn epoll_wait(ep: c_int, ev: *mut libc::epoll_event, max: c_int, timeout: c_int)
        -> c_int, else -1;
        real => if threshold() == u64::MAX || timeout == 0 {
            real()
        } else {
            timed(WAIT_IO, WAIT_OBJ_FD, ep as u64, real)
        };
    EPOLL_PWAIT = fn epoll_pwait(ep: c_int, ev: *mut libc::epoll_event, max: c_int,
        timeout: c_int, mask: Sigset) -> c_int, else -1;
        real => if threshold() == u64::MAX || timeout == 0 {
            real()
        } else {
            timed(WAIT_IO, WAIT_OBJ_FD, ep as u64, real)
        };

    // Joins: a child process, a thread.
    WAITPID = fn waitpid(pid: libc::pid_t, status: *mut c_int, opts: c_int)
        -> libc::pid_t, else -1;
        real => timed(WAIT_JOIN, WAIT_OBJ_PID, pid as i64 as u64, real);
    WAIT4 = fn wait4(pid: libc::pid_t, status: *mut c_int, opts: c_int, ru: *mut libc::rusage)
        -> libc::pid_t, else -1;
        real => timed(WAIT_JOIN, WAIT_OBJ_PID, pid as i64 as u64, real);
    JOIN = fn pthread_join(t: libc::pthread_t, ret: *mut *mut c_void) -> c_int, else libc::ESRCH;
        real => timed(WAIT_JOIN, WAIT_OBJ_THREAD, t, real);
}
