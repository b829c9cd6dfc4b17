//! `posix_spawn` without a stray SIGTRAP: the agent's sampling events are inherited by
//! every child, and glibc's `posix_spawn` child runs a little user code (it blocks all
//! signals, resets handled signals to SIG_DFL with its internal `sigaction`, unblocks,
//! execs) before its exec removes them (`remove_on_exec`). A sample taken there queues
//! a SIGTRAP that is delivered at the unblock, to SIG_DFL: the child died before its
//! exec (2-4 of 20 `os.posix_spawn` children at `-F 10000`, tests/cli/agent_stress.rs).
//!
//! The interposed `posix_spawn`/`posix_spawnp` disable the agent's events for the call
//! (the parent is suspended until the child's exec, `CLONE_VFORK`, so the window is the
//! child's), and the inherited copies start disabled with them. The fds are kept open
//! for this (one per CPU and event); each is checked by its kernel id before use, so a
//! number the program closed and reused is never touched. glibc's own internal spawns
//! (`system`, `popen`) do not go through the interposed symbol and keep the limit.

use std::ffi::{c_char, c_int};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

const MAX: usize = 512;
static FDS: [AtomicI32; MAX] = [const { AtomicI32::new(-1) }; MAX];
static IDS: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Spawns in progress (threads may spawn at once: the last one out re-enables).
static DEPTH: AtomicU32 = AtomicU32::new(0);

/// `_IO('$', 0)`, `_IO('$', 1)`, `_IOR('$', 7, u64)`.
const IOC_ENABLE: libc::c_ulong = 0x2400;
const IOC_DISABLE: libc::c_ulong = 0x2401;
const IOC_ID: libc::c_ulong = 0x8008_2407;

fn event_id(fd: c_int) -> Option<u64> {
    let mut id = 0u64;
    // SAFETY: PERF_EVENT_IOC_ID writes one u64 through the pointer; on a descriptor that
    // is not a perf event it fails with ENOTTY and writes nothing.
    let r = unsafe { libc::ioctl(fd, IOC_ID, &raw mut id) };
    (r == 0).then_some(id)
}

/// Keeps `fd` (a sampling event of this process) for the spawn guard; false when it is
/// not kept (the caller then closes it).
pub fn keep(fd: c_int) -> bool {
    let Some(id) = event_id(fd) else {
        return false;
    };
    let i = COUNT.fetch_add(1, Ordering::SeqCst);
    if i >= MAX {
        COUNT.store(MAX, Ordering::SeqCst);
        return false;
    }
    IDS[i].store(id, Ordering::SeqCst);
    FDS[i].store(fd, Ordering::SeqCst);
    true
}

fn set_all(ioc: libc::c_ulong) {
    for i in 0..COUNT.load(Ordering::SeqCst).min(MAX) {
        let fd = FDS[i].load(Ordering::SeqCst);
        if fd >= 0 && event_id(fd) == Some(IDS[i].load(Ordering::SeqCst)) {
            // SAFETY: ENABLE/DISABLE on an fd just checked to be our own event.
            unsafe { libc::ioctl(fd, ioc, 0) };
        }
    }
}

type SpawnFn = unsafe extern "C" fn(
    *mut libc::pid_t,
    *const c_char,
    *const libc::posix_spawn_file_actions_t,
    *const libc::posix_spawnattr_t,
    *const *mut c_char,
    *const *mut c_char,
) -> c_int;

static REAL_SPAWN: AtomicUsize = AtomicUsize::new(0);
static REAL_SPAWNP: AtomicUsize = AtomicUsize::new(0);

/// Runs `spawn` with the events disabled around it.
fn guarded(spawn: impl FnOnce() -> c_int) -> c_int {
    let guard = COUNT.load(Ordering::SeqCst) > 0;
    if guard && DEPTH.fetch_add(1, Ordering::SeqCst) == 0 {
        set_all(IOC_DISABLE);
    }
    let r = spawn();
    if guard && DEPTH.fetch_sub(1, Ordering::SeqCst) == 1 {
        set_all(IOC_ENABLE);
    }
    r
}

/// libc's function `name` (posix_spawn or posix_spawnp), or None.
fn real(cache: &AtomicUsize, name: &std::ffi::CStr) -> Option<SpawnFn> {
    let p = crate::next_symbol(cache, name);
    // SAFETY: p is libc's posix_spawn or posix_spawnp, both of this type.
    (p != 0).then(|| unsafe { std::mem::transmute::<usize, SpawnFn>(p) })
}

/// Interposes libc's `posix_spawn` (see the module doc).
///
/// # Safety
/// As libc's `posix_spawn`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut libc::pid_t,
    path: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    let Some(f) = real(&REAL_SPAWN, c"posix_spawn") else {
        return libc::ENOSYS;
    };
    // SAFETY: the caller's arguments, passed on unchanged.
    guarded(|| unsafe { f(pid, path, actions, attr, argv, envp) })
}

/// Interposes libc's `posix_spawnp` (see the module doc).
///
/// # Safety
/// As libc's `posix_spawnp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut libc::pid_t,
    file: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    let Some(f) = real(&REAL_SPAWNP, c"posix_spawnp") else {
        return libc::ENOSYS;
    };
    // SAFETY: the caller's arguments, passed on unchanged.
    guarded(|| unsafe { f(pid, file, actions, attr, argv, envp) })
}
