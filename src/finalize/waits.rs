//! Locks mode: why a thread was off CPU, read from the stack where it blocked.
//!
//! [`classify`] looks at the stack's function names and modules, innermost first, the
//! way a reader of the stack would: a thread in `take_gil` waits for Python's GIL
//! whatever primitive `take_gil` uses underneath; a thread anywhere inside an MPI
//! library waits for MPI (named by the MPI function the program called); otherwise the
//! innermost blocking primitive decides (a mutex, a condition variable, a sleep, I/O, a
//! join), and kernel frames decide when no user-space frame does. The rules and what
//! is exact and what is inferred are in `docs/locks.md`.
//!
//! The object of a wait comes from the first syscall argument (`rdi` in the user
//! registers the kernel saved at syscall entry), when the innermost user-space frame
//! is the one that made the syscall: a futex word's address for locks and condition
//! variables (for a glibc mutex, the mutex's own address), a file descriptor for
//! reads and writes.

use crate::profile::{FrameKind, Function, WaitClass};

/// A classified wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    /// Why the thread was off CPU.
    pub class: WaitClass,
    /// The sync object, when the stack or the registers tell it.
    pub object: Option<String>,
    /// Decided by what the program waited for (the GIL, a Python lock, a join or
    /// condition of `threading`, MPI), not by the primitive underneath: this class
    /// stands over the one the agent recorded for that primitive.
    pub scope: bool,
}

impl Wait {
    /// A wait classified by its primitive (or by nothing).
    fn primitive(class: WaitClass, object: Option<String>) -> Wait {
        Wait {
            class,
            object,
            scope: false,
        }
    }

    /// A wait classified by what the program waited for.
    fn scope(class: WaitClass, object: Option<String>) -> Wait {
        Wait {
            class,
            object,
            scope: true,
        }
    }
}

/// A function name without glibc's decorations: `__GI___clock_nanosleep_time64` →
/// `clock_nanosleep`, `___pthread_cond_timedwait64` → `pthread_cond_timedwait`,
/// `take_gil.lto_priv.0` → `take_gil`, `read@@GLIBC_2.2.5` → `read`.
fn base(name: &str) -> &str {
    let n = name.split('@').next().unwrap_or(name);
    let n = n.split('.').next().unwrap_or(n);
    let n = n.trim_start_matches('_');
    let n = n
        .strip_prefix("GI_")
        .map(|s| s.trim_start_matches('_'))
        .unwrap_or(n);
    let n = n.strip_prefix("libc_").unwrap_or(n);
    let n = n.strip_suffix("_nocancel").unwrap_or(n);
    match n.strip_suffix("_time64") {
        Some(s) => s,
        // `pread64`, `cond_timedwait64`; not `wait4`.
        None => n.strip_suffix("64").unwrap_or(n),
    }
}

/// Python's global interpreter lock: taking it, or handing it over (`drop_gil` waits
/// for the other thread to take it when switching is forced).
fn is_gil(b: &str) -> bool {
    matches!(
        b,
        "take_gil"
            | "drop_gil"
            | "PyEval_RestoreThread"
            | "PyEval_AcquireThread"
            | "PyEval_AcquireLock"
            | "PyEval_AcquireLock_impl"
    )
}

/// Acquiring a Python lock (`threading.Lock.acquire`, `RLock`, `Thread.join`'s lock).
fn is_python_lock(b: &str) -> bool {
    matches!(
        b,
        "PyThread_acquire_lock_timed"
            | "PyThread_acquire_lock"
            | "acquire_timed"
            | "lock_PyThread_acquire_lock"
            | "rlock_acquire"
    )
}

/// What a wait inside Python's `threading` module is, by the function of that module
/// it is in (`Thread.join`, `Condition.wait`; on 3.8-3.10 a method is named by its
/// object's class, which may be a subclass: only the method's name counts): a join, a
/// condition wait (`Event.wait`, `Semaphore.acquire`, `Barrier.wait` and `queue.get`
/// wait in `Condition.wait`), or None for any other.
fn threading_wait(f: &Function) -> Option<WaitClass> {
    let in_threading = f.kind == FrameKind::Python
        && f.file
            .as_deref()
            .is_some_and(|p| p == "threading.py" || p.ends_with("/threading.py"));
    if !in_threading {
        return None;
    }
    match f.name.rsplit('.').next().unwrap_or("") {
        "join" | "_wait_for_tstate_lock" => Some(WaitClass::Join),
        "wait" | "wait_for" => Some(WaitClass::Condition),
        _ => None,
    }
}

/// A frame of an MPI library (or mpi4py), or an MPI function linked statically.
fn is_mpi(f: &Function) -> bool {
    let b = base(&f.name);
    crate::mpi::is_mpi_module(&f.module)
        || crate::mpi::is_mpi4py_module(&f.module)
        || f.name.contains("mpi4py_3MPI_")
        || b.starts_with("MPI_")
        || b.starts_with("PMPI_")
}

/// The MPI function a frame names (`PMPI_Barrier` → `MPI_Barrier`).
fn mpi_function(f: &Function) -> Option<String> {
    let b = base(&f.name);
    let b = b
        .strip_prefix('P')
        .filter(|s| s.starts_with("MPI_"))
        .unwrap_or(b);
    b.starts_with("MPI_").then(|| b.to_string())
}

/// The mpi4py method a Cython wrapper is (`__pyx_pw_6mpi4py_3MPI_4Comm_119Barrier` →
/// `MPI_Barrier`; lower-case pickle methods keep their class: `Comm.bcast`).
fn mpi4py_method(name: &str) -> Option<String> {
    // `<len><Class>_<index><method>` after the module path.
    let rest = name.split_once("mpi4py_3MPI_")?.1;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let len: usize = rest[..digits].parse().ok()?;
    let class = rest.get(digits..digits + len)?;
    let method = rest
        .get(digits + len..)?
        .strip_prefix('_')?
        .trim_start_matches(|c: char| c.is_ascii_digit());
    match method.chars().next()? {
        c if c.is_ascii_uppercase() => Some(format!("MPI_{method}")),
        _ => Some(format!("{class}.{method}")),
    }
}

/// The MPI call a stack is in: the outermost `MPI_*` frame (the function the program
/// called), else the mpi4py method that called into the library.
fn mpi_object(frames: &[&Function]) -> Option<String> {
    let native = || frames.iter().filter(|f| f.kind == FrameKind::Native);
    native()
        .filter_map(|f| mpi_function(f))
        .next_back()
        .or_else(|| native().filter_map(|f| mpi4py_method(&f.name)).next_back())
}

/// The class a user-space blocking primitive stands for.
fn primitive(b: &str) -> Option<WaitClass> {
    let lock = [
        "mutex_lock",
        "mutex_timedlock",
        "mutex_clocklock",
        "lll_lock_wait",
        "rwlock",
        "spin_lock",
        "mtx_lock",
        "mtx_timedlock",
        "PyThread_acquire_lock",
        "acquire_timed",
        "lock_PyThread_acquire_lock",
        "rlock_acquire",
        "PyMutex_Lock",
    ];
    let condition = [
        "cond_wait",
        "cond_timedwait",
        "cond_clockwait",
        "sem_wait",
        "sem_timedwait",
        "sem_clockwait",
        "barrier_wait",
        "cnd_wait",
        "cnd_timedwait",
        "condition_variable",
    ];
    if lock.iter().any(|p| b.contains(p)) {
        return Some(WaitClass::Lock);
    }
    if condition.iter().any(|p| b.contains(p)) {
        return Some(WaitClass::Condition);
    }
    Some(match b {
        "nanosleep" | "clock_nanosleep" | "usleep" | "sleep" | "thrd_sleep" | "pysleep"
        | "time_sleep" => WaitClass::Sleep,
        _ if is_fd_call(b) => WaitClass::Io,
        "poll" | "ppoll" | "select" | "pselect" | "pselect6" | "epoll_wait" | "epoll_pwait"
        | "epoll_pwait2" | "fsync" | "fdatasync" | "Py_read" | "Py_write" => WaitClass::Io,
        "wait4"
        | "waitpid"
        | "waitid"
        | "wait"
        | "pthread_join"
        | "pthread_timedjoin_np"
        | "pthread_clockjoin_np"
        | "pthread_clockjoin_ex"
        | "thrd_join" => WaitClass::Join,
        _ => return None,
    })
}

/// Calls whose first argument is the file descriptor waited on.
fn is_fd_call(b: &str) -> bool {
    matches!(
        b,
        "read"
            | "readv"
            | "pread"
            | "preadv"
            | "preadv2"
            | "recv"
            | "recvfrom"
            | "recvmsg"
            | "recvmmsg"
            | "accept"
            | "accept4"
            | "connect"
            | "write"
            | "writev"
            | "pwrite"
            | "send"
            | "sendto"
            | "sendmsg"
    )
}

/// What a kernel frame says when no user-space frame does.
fn kernel_hint(b: &str) -> Option<WaitClass> {
    Some(match b {
        "do_nanosleep"
        | "hrtimer_nanosleep"
        | "common_nsleep"
        | "x64_sys_nanosleep"
        | "x64_sys_clock_nanosleep" => WaitClass::Sleep,
        "pipe_read"
        | "pipe_write"
        | "do_sys_poll"
        | "do_select"
        | "core_sys_select"
        | "ep_poll"
        | "sock_recvmsg"
        | "unix_stream_read_generic"
        | "tcp_recvmsg"
        | "inet_csk_accept"
        | "wait_woken"
        | "n_tty_read"
        | "x64_sys_read"
        | "x64_sys_write" => WaitClass::Io,
        "do_wait" | "kernel_wait4" | "kernel_waitid" | "x64_sys_wait4" => WaitClass::Join,
        _ => return None,
    })
}

/// Whether the innermost user-space frame makes the futex syscall itself, so that
/// `rdi` at syscall entry is the futex word.
fn is_futex_caller(b: &str) -> bool {
    [
        "lll_lock_wait",
        "futex",
        "mutex_lock",
        "cond_wait",
        "cond_timedwait",
        "sem_wait",
        "rwlock",
    ]
    .iter()
    .any(|k| b.contains(k))
}

/// Classify an interval whose switch-out said the thread was still runnable: preempted,
/// unless it was inside MPI (an MPI library polling with `sched_yield`, as Open MPI
/// does when oversubscribed, waits for MPI even when it yields).
pub fn classify_preempted(frames: &[&Function]) -> Wait {
    match classify(frames, None) {
        w if w.class == WaitClass::Mpi => w,
        _ => Wait::primitive(WaitClass::Preempted, None),
    }
}

/// Classify a wait by its stack, innermost frame first. `arg0` is the first syscall
/// argument (`rdi` at kernel entry) when the sample carried user registers.
pub fn classify(frames: &[&Function], arg0: Option<u64>) -> Wait {
    // Scopes first: whatever a thread does inside take_gil, a Python lock, a join or
    // condition wait of `threading`, or an MPI library, it waits for that; the innermost
    // scope wins (a thread taking the GIL back after an MPI call waits for the GIL).
    let leaf = frames
        .iter()
        .find(|f| f.kind != FrameKind::Kernel)
        .map(|l| base(&l.name))
        .unwrap_or("");
    for (i, f) in frames.iter().enumerate() {
        if f.kind == FrameKind::Native && is_gil(base(&f.name)) {
            return Wait::scope(WaitClass::Gil, Some("GIL".into()));
        }
        // Python's locks are semaphores underneath: the lock is what the program waits
        // on, and the Python code that takes it says for what: `with lock:` in the
        // program's code is a lock; `Thread.join` a join; `Condition.wait` a condition.
        if f.kind == FrameKind::Native && is_python_lock(base(&f.name)) {
            let class = frames[i..]
                .iter()
                .find(|f| f.kind == FrameKind::Python)
                .and_then(|f| threading_wait(f))
                .unwrap_or(WaitClass::Lock);
            return Wait::scope(class, object_of(class, leaf, arg0));
        }
        // A join or condition wait of `threading` over no Python lock (3.13 joins a
        // thread through its handle, on a parking lot).
        if let Some(class) = threading_wait(f) {
            return Wait::scope(class, object_of(class, leaf, arg0));
        }
        if f.kind == FrameKind::Native && is_mpi(f) {
            // Named by the outermost MPI function: the one the program called.
            return Wait::scope(WaitClass::Mpi, mpi_object(&frames[i..]));
        }
    }
    // The innermost user-space primitive.
    for f in frames.iter().filter(|f| f.kind != FrameKind::Kernel) {
        let b = base(&f.name);
        let class = match f.kind {
            FrameKind::Python if b == "sleep" || f.name == "time.sleep" => Some(WaitClass::Sleep),
            FrameKind::Python => None,
            _ => primitive(b),
        };
        if let Some(class) = class {
            return Wait::primitive(class, object_of(class, leaf, arg0));
        }
    }
    for f in frames.iter().filter(|f| f.kind == FrameKind::Kernel) {
        if let Some(class) = kernel_hint(base(&f.name)) {
            return Wait::primitive(class, None);
        }
    }
    Wait::primitive(WaitClass::Other, None)
}

/// The object a syscall's first argument names, when the innermost user-space frame
/// (`leaf`, a base name) made that syscall.
fn object_of(class: WaitClass, leaf: &str, arg0: Option<u64>) -> Option<String> {
    let a = arg0?;
    match class {
        WaitClass::Lock | WaitClass::Condition if is_futex_caller(leaf) && a >= 4096 => {
            Some(format!("{a:#x}"))
        }
        WaitClass::Io if is_fd_call(leaf) && a < 1 << 20 => Some(format!("fd {a}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, module: &str, kind: FrameKind) -> Function {
        Function {
            name: name.into(),
            module: module.into(),
            file: None,
            start_line: None,
            kind,
        }
    }
    fn native(name: &str, module: &str) -> Function {
        f(name, module, FrameKind::Native)
    }
    fn kernel(name: &str) -> Function {
        f(name, "[kernel]", FrameKind::Kernel)
    }
    fn class_of(stack: &[Function], arg0: Option<u64>) -> Wait {
        let refs: Vec<&Function> = stack.iter().collect();
        classify(&refs, arg0)
    }
    /// A Python thread's stack in a wait, leaf first: the kernel's `schedule`, the
    /// `libc` frames, the interpreter's frames (in module `interpreter`), the Python
    /// function `py`.
    fn python_wait(libc: &[&str], interpreter: (&str, &[&str]), py: &str) -> Vec<Function> {
        let libc = libc.iter().map(|n| native(n, "libc.so.6"));
        let interp = interpreter.1.iter().map(|n| native(n, interpreter.0));
        std::iter::once(kernel("schedule"))
            .chain(libc)
            .chain(interp)
            .chain([f(py, "python", FrameKind::Python)])
            .collect()
    }
    /// The wait of `class` on `object`.
    fn wait(class: WaitClass, object: &str) -> Wait {
        Wait::primitive(class, Some(object.into()))
    }
    /// The wait of `class` on `object`, decided by what the program waited for.
    fn scoped(class: WaitClass, object: &str) -> Wait {
        Wait::scope(class, Some(object.into()))
    }

    #[test]
    fn names_lose_glibc_decorations() {
        assert_eq!(base("__GI___clock_nanosleep_time64"), "clock_nanosleep");
        assert_eq!(
            base("___pthread_cond_timedwait64"),
            "pthread_cond_timedwait"
        );
        assert_eq!(base("take_gil.lto_priv.0"), "take_gil");
        assert_eq!(base("read@@GLIBC_2.2.5"), "read");
        assert_eq!(base("__libc_read"), "read");
        assert_eq!(base("__wait4"), "wait4");
        assert_eq!(base("pread64"), "pread");
    }

    #[test]
    fn a_mutex_wait_is_a_lock_on_the_mutex_address() {
        let stack = [
            kernel("schedule"),
            kernel("futex_wait"),
            native("__lll_lock_wait", "libc.so.6"),
            native("___pthread_mutex_lock", "libc.so.6"),
            native("await_the_lock", "lock_classes"),
            native("start_thread", "libc.so.6"),
        ];
        assert_eq!(
            class_of(&stack, Some(0x5555_1234_5000)),
            wait(WaitClass::Lock, "0x555512345000")
        );
        // No registers: the class alone.
        assert_eq!(class_of(&stack, None).object, None);
    }

    #[test]
    fn primitives_by_innermost_user_frame() {
        let cases: &[(&str, WaitClass)] = &[
            ("pthread_cond_wait", WaitClass::Condition),
            ("__new_sem_wait_slow64", WaitClass::Condition),
            ("pthread_barrier_wait", WaitClass::Condition),
            ("pthread_rwlock_wrlock", WaitClass::Lock),
            ("__GI___clock_nanosleep", WaitClass::Sleep),
            ("usleep", WaitClass::Sleep),
            ("__libc_read", WaitClass::Io),
            ("recvfrom", WaitClass::Io),
            ("epoll_wait", WaitClass::Io),
            ("__poll", WaitClass::Io),
            ("accept4", WaitClass::Io),
            ("__wait4", WaitClass::Join),
            ("__pthread_clockjoin_ex", WaitClass::Join),
            ("main", WaitClass::Other),
        ];
        for (name, want) in cases {
            let stack = [kernel("schedule"), native(name, "libc.so.6")];
            assert_eq!(class_of(&stack, None).class, *want, "{name}");
        }
        // A read names its fd; a poll does not (rdi is the pollfd array).
        let read = [native("read", "libc.so.6"), native("reader", "app")];
        assert_eq!(class_of(&read, Some(5)).object.as_deref(), Some("fd 5"));
        let poll = [native("poll", "libc.so.6"), native("reader", "app")];
        assert_eq!(class_of(&poll, Some(0x7ffd_0000)).object, None);
    }

    #[test]
    fn the_gil_wins_over_the_condition_variable_under_it() {
        let libc = [
            "__futex_abstimed_wait_common",
            "___pthread_cond_timedwait64",
        ];
        let interp = ["take_gil", "PyEval_RestoreThread", "time_sleep"];
        let stack = python_wait(&libc, ("python3.11", &interp), "busy");
        let gil = scoped(WaitClass::Gil, "GIL");
        assert_eq!(class_of(&stack, Some(0x7f00_0000_1000)), gil);
    }

    #[test]
    fn a_python_lock_is_what_the_python_code_around_it_waits_for() {
        let libc = [
            "__futex_abstimed_wait_common64",
            "do_futex_wait",
            "__new_sem_wait_slow64",
        ];
        let interp = [
            "PyThread_acquire_lock_timed",
            "acquire_timed",
            "lock_PyThread_acquire_lock",
        ];
        let threading = "/usr/lib/python3.11/threading.py";
        // Leaf first: the Python frames around the lock's acquisition.
        let cases: &[(&[(&str, &str)], Wait)] = &[
            // `with lock:` in the program: a lock, on the semaphore's futex word.
            (
                &[("worker", "/home/u/job.py")],
                scoped(WaitClass::Lock, "0x7f8e5c000b70"),
            ),
            // Thread.join: a join (3.8-3.10 name a method by its object's class).
            (
                &[
                    ("Thread._wait_for_tstate_lock", threading),
                    ("Thread.join", threading),
                ],
                Wait::scope(WaitClass::Join, None),
            ),
            (
                &[("Pool._wait_for_tstate_lock", threading)],
                Wait::scope(WaitClass::Join, None),
            ),
            // queue.get, Event.wait: a condition.
            (
                &[
                    ("Condition.wait", threading),
                    ("Queue.get", "/usr/lib/python3.11/queue.py"),
                ],
                scoped(WaitClass::Condition, "0x7f8e5c000b70"),
            ),
            // A `wait` of the program's own is no `threading` condition.
            (
                &[("Condition.wait", "/home/u/job.py")],
                scoped(WaitClass::Lock, "0x7f8e5c000b70"),
            ),
        ];
        for (python, want) in cases {
            let stack: Vec<Function> = std::iter::once(kernel("schedule"))
                .chain(libc.iter().map(|n| native(n, "libc.so.6")))
                .chain(interp.iter().map(|n| native(n, "libpython3.11.so.1.0")))
                .chain(python.iter().map(|(name, file)| Function {
                    file: Some(file.to_string()),
                    ..f(name, "python", FrameKind::Python)
                }))
                .collect();
            assert_eq!(
                class_of(&stack, Some(0x7f8e_5c00_0b70)),
                *want,
                "{python:?}"
            );
        }
        // 3.13 joins a thread through its handle, on a parking lot: no lock frame.
        let join = [
            kernel("schedule"),
            native("__new_sem_wait_slow64", "libc.so.6"),
            native("_PySemaphore_PlatformWait", "libpython3.13.so.1.0"),
            native("_PyParkingLot_Park", "libpython3.13.so.1.0"),
            native("PyEvent_WaitTimed", "libpython3.13.so.1.0"),
            Function {
                file: Some("/usr/lib/python3.13/threading.py".into()),
                ..f("Thread.join", "python", FrameKind::Python)
            },
        ];
        assert_eq!(
            class_of(&join, Some(0x7f8e_5c00_0b70)),
            Wait::scope(WaitClass::Join, None)
        );
    }

    #[test]
    fn a_python_sleep_is_a_sleep() {
        let stack = [
            kernel("do_nanosleep"),
            native("__GI___clock_nanosleep", "libc.so.6"),
            native("pysleep", "python3.11"),
            native("time_sleep", "python3.11"),
            f("nap", "python", FrameKind::Python),
        ];
        assert_eq!(class_of(&stack, None).class, WaitClass::Sleep);
    }

    #[test]
    fn mpi_is_named_by_the_function_the_program_called() {
        let stack = [
            kernel("schedule"),
            native("epoll_wait", "libc.so.6"),
            native("opal_libevent2022_event_base_loop", "libopen-pal.so.40"),
            native("opal_progress", "libopen-pal.so.40"),
            native(
                "ompi_coll_base_barrier_intra_recursivedoubling",
                "libmpi.so.40",
            ),
            native("PMPI_Barrier", "libmpi.so.40"),
            native(
                "__pyx_pw_6mpi4py_3MPI_4Comm_Barrier",
                "MPI.cpython-311-x86_64-linux-gnu.so",
            ),
            native("main", "app"),
        ];
        assert_eq!(
            class_of(&stack, Some(4)),
            scoped(WaitClass::Mpi, "MPI_Barrier")
        );
        // Inside MPI_Wait called by MPI_Sendrecv's implementation: the outer call names it.
        let nested = [
            native("MPI_Wait", "libmpich.so.12"),
            native("MPI_Sendrecv", "libmpich.so.12"),
            native("exchange", "app"),
        ];
        assert_eq!(
            class_of(&nested, None).object.as_deref(),
            Some("MPI_Sendrecv")
        );
    }

    #[test]
    fn mpi4py_wrappers_name_the_call_and_yields_in_mpi_are_mpi() {
        assert_eq!(
            mpi4py_method("__pyx_pw_6mpi4py_3MPI_4Comm_119Barrier").as_deref(),
            Some("MPI_Barrier")
        );
        assert_eq!(
            mpi4py_method("__pyx_pw_6mpi4py_3MPI_4Comm_25bcast").as_deref(),
            Some("Comm.bcast")
        );
        assert_eq!(mpi4py_method("main"), None);
        let stack = [
            native("sched_yield", "libc.so.6"),
            native("opal_progress", "libopen-pal.so.40"),
            native(
                "__pyx_pw_6mpi4py_3MPI_4Comm_119Barrier",
                "MPI.openmpi.cpython-311-x86_64-linux-gnu.so",
            ),
            f("main", "python", FrameKind::Python),
        ];
        assert_eq!(
            classify_preempted(&stack.iter().collect::<Vec<_>>()),
            scoped(WaitClass::Mpi, "MPI_Barrier")
        );
        let spin = [native("spin", "app")];
        assert_eq!(
            classify_preempted(&spin.iter().collect::<Vec<_>>()).class,
            WaitClass::Preempted
        );
    }

    #[test]
    fn kernel_frames_decide_when_no_user_frame_does() {
        let stack = [
            kernel("schedule"),
            kernel("pipe_read"),
            native("do_io", "app"),
        ];
        assert_eq!(class_of(&stack, None).class, WaitClass::Io);
        let futex = [
            kernel("schedule"),
            kernel("futex_wait"),
            native("syscall", "libc.so.6"),
        ];
        assert_eq!(class_of(&futex, Some(202)).class, WaitClass::Other);
    }
}
