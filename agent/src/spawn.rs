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
//! number the program closed and reused is never touched.
//!
//! glibc's `system` and `popen` spawn through glibc's internal `posix_spawn`, which the
//! interposed symbol does not see (14 of 300 `os.system` children died of a SIGTRAP at
//! `-F 10000`). `popen` returns once its child has exec'd: it is guarded whole.
//! `system` waits for the command: guarding it whole would stop sampling the program's
//! other threads for as long as the command runs, so it is done here as glibc does it
//! (SIGINT and SIGQUIT ignored while it runs, SIGCHLD blocked, `/bin/sh -c -- line`
//! with those reset in the child) through the guarded `posix_spawn`. With no event
//! kept (nothing to guard), both are libc's own.

use std::ffi::{c_char, c_int};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::{Real, call_real, set_errno};

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
type SystemFn = unsafe extern "C" fn(*const c_char) -> c_int;
type PopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;

static SPAWN: Real = Real::new(c"posix_spawn");
static SPAWNP: Real = Real::new(c"posix_spawnp");
static SYSTEM: Real = Real::new(c"system");
static POPEN: Real = Real::new(c"popen");

/// Runs `spawn` with the events disabled around it.
fn guarded<T>(spawn: impl FnOnce() -> T) -> T {
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

/// Declares the interposed `posix_spawn` and `posix_spawnp` (one C type): libc's,
/// guarded (see the module doc).
macro_rules! guarded_spawns {
    ($($name:ident = $real:ident;)*) => {$(
        #[doc = concat!("Interposes libc's `", stringify!($name), "` (see the module doc).")]
        ///
        /// # Safety
        #[doc = concat!("As libc's `", stringify!($name), "`.")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            pid: *mut libc::pid_t,
            path: *const c_char,
            actions: *const libc::posix_spawn_file_actions_t,
            attr: *const libc::posix_spawnattr_t,
            argv: *const *mut c_char,
            envp: *const *mut c_char,
        ) -> c_int {
            let f = $real.get();
            if f == 0 {
                return libc::ENOSYS;
            }
            // SAFETY: f is libc's function of this name, of type SpawnFn; the caller's
            // arguments, passed on unchanged.
            guarded(|| unsafe {
                std::mem::transmute::<usize, SpawnFn>(f)(pid, path, actions, attr, argv, envp)
            })
        }
    )*};
}

guarded_spawns! {
    posix_spawn = SPAWN;
    posix_spawnp = SPAWNP;
}

/// Interposes libc's `popen`: its spawn is guarded (see the module doc); it returns
/// once the child has exec'd.
///
/// # Safety
/// As libc's `popen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn popen(command: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    let f = POPEN.get();
    if f == 0 {
        set_errno(libc::ENOSYS);
        return std::ptr::null_mut();
    }
    // SAFETY: f is libc's popen, of this type; the caller's arguments, passed on
    // unchanged.
    guarded(|| unsafe { std::mem::transmute::<usize, PopenFn>(f)(command, mode) })
}

/// Interposes libc's `system` (see the module doc).
///
/// # Safety
/// As libc's `system`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn system(line: *const c_char) -> c_int {
    if COUNT.load(Ordering::SeqCst) == 0 {
        return call_real!(SYSTEM, SystemFn, (line), else {
            set_errno(libc::ENOSYS);
            -1
        });
    }
    if line.is_null() {
        // Whether a shell is available: glibc runs `exit 0`.
        return c_int::from(do_system(c"exit 0".as_ptr()) == 0);
    }
    do_system(line)
}

/// SIGINT and SIGQUIT as they were before the first of the `system` calls in progress
/// (threads may run several at once: the last one out restores them).
struct Ignored {
    calls: u32,
    intr: libc::sigaction,
    quit: libc::sigaction,
}

// SAFETY: sigaction is plain data (a handler address, flags, a mask).
unsafe impl Send for Ignored {}

static IGNORED: std::sync::Mutex<Option<Ignored>> = std::sync::Mutex::new(None);

unsafe extern "C" {
    static environ: *const *mut c_char;
}

/// glibc's `do_system` (sysdeps/posix/system.c), with the guarded `posix_spawn`.
fn do_system(line: *const c_char) -> c_int {
    // SAFETY: plain libc calls on local, initialised structures; `line` is the caller's
    // NUL-terminated command; `environ` is the process's environment.
    unsafe {
        let mut ign: libc::sigaction = std::mem::zeroed();
        ign.sa_sigaction = libc::SIG_IGN;
        libc::sigemptyset(&mut ign.sa_mask);
        let (intr, quit) = {
            let mut g = IGNORED.lock().unwrap_or_else(|e| e.into_inner());
            let state = g.get_or_insert_with(|| Ignored {
                calls: 0,
                intr: std::mem::zeroed(),
                quit: std::mem::zeroed(),
            });
            if state.calls == 0 {
                crate::real_sigaction(libc::SIGINT, &ign, &mut state.intr);
                crate::real_sigaction(libc::SIGQUIT, &ign, &mut state.quit);
            }
            state.calls += 1;
            (state.intr, state.quit)
        };
        let mut chld: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        let mut omask: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_BLOCK, &chld, &mut omask);

        let mut reset: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut reset);
        if intr.sa_sigaction != libc::SIG_IGN {
            libc::sigaddset(&mut reset, libc::SIGINT);
        }
        if quit.sa_sigaction != libc::SIG_IGN {
            libc::sigaddset(&mut reset, libc::SIGQUIT);
        }
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawnattr_init(&mut attr);
        libc::posix_spawnattr_setsigmask(&mut attr, &omask);
        libc::posix_spawnattr_setsigdefault(&mut attr, &reset);
        libc::posix_spawnattr_setflags(
            &mut attr,
            (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short,
        );
        let argv: [*mut c_char; 5] = [
            c"sh".as_ptr().cast_mut(),
            c"-c".as_ptr().cast_mut(),
            c"--".as_ptr().cast_mut(),
            line.cast_mut(),
            std::ptr::null_mut(),
        ];
        let mut pid: libc::pid_t = 0;
        // The interposed (guarded) posix_spawn above.
        let ret = posix_spawn(
            &mut pid,
            c"/bin/sh".as_ptr(),
            std::ptr::null(),
            &attr,
            argv.as_ptr(),
            environ,
        );
        libc::posix_spawnattr_destroy(&mut attr);
        let status = if ret == 0 {
            let mut st: c_int = 0;
            let got = loop {
                let r = libc::waitpid(pid, &mut st, 0);
                if r == -1 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break r;
            };
            if got != pid { -1 } else { st }
        } else {
            // POSIX: as if the shell had terminated with _exit(127).
            127 << 8
        };
        {
            let mut g = IGNORED.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(state) = g.as_mut() {
                state.calls = state.calls.saturating_sub(1);
                if state.calls == 0 {
                    crate::real_sigaction(libc::SIGINT, &state.intr, std::ptr::null_mut());
                    crate::real_sigaction(libc::SIGQUIT, &state.quit, std::ptr::null_mut());
                }
            }
        }
        libc::sigprocmask(libc::SIG_SETMASK, &omask, std::ptr::null_mut());
        if ret != 0 {
            set_errno(ret);
        }
        status
    }
}
