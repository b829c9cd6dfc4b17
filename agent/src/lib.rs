//! hwprof's agent: a small library that hwprof preloads (`LD_PRELOAD`) into the
//! processes it launches, to capture each sampled thread's Python stack at the instant of
//! the sample.
//!
//! At load (`.init_array`, after the dynamic loader has mapped the interpreter, before
//! `main`), when `HWPROF_AGENT_SOCK` is set, the agent:
//! 1. connects to the collector's socket and says hello (its pid);
//! 2. receives a `Config`: whether this process is a CPython the collector understands,
//!    the address of `_PyRuntime`, that version's struct layout, and a cookie;
//! 3. if Python: maps the capture ring the collector sent (a memfd, see `ring.rs`) and
//!    installs a SIGTRAP handler;
//! 4. unless the config says the collector samples this process itself
//!    (`Config::sampling`), opens one sampling event per CPU on itself (disabled until
//!    its ring is mapped: here, with `Config::ring_pages`, then enabled at once), from
//!    the attr bytes in
//!    `HWPROF_AGENT_ATTR`, adding `inherit`, `remove_on_exec` and (if Python) `sigtrap`
//!    with `sig_data` = cookie, clearing the side-band bits (mmap, comm, task, ...) that the
//!    collector's own tracking event already records; and sends the fds to the collector
//!    (`SCM_RIGHTS`), which mmaps and drains their rings.
//!
//! The kernel then delivers one synchronous SIGTRAP to the sampled thread per sample. The
//! handler (async-signal-safe: no allocation, no locks, only `process_vm_readv`, `gettid`,
//! `clock_gettime`, and now and then a re-read of `/proc/self/maps`) finds the thread's
//! `PyThreadState` (matching `thread_id` to `pthread_self()`), walks its frame chain, and
//! appends one capture record to the ring
//! (code object address, instruction offset, entry/shim markers, validation token) with
//! tid and CLOCK_MONOTONIC time. A read of interpreter memory is a plain copy when it
//! lies in a private read-write mapping of the process (a table refreshed from
//! `/proc/self/maps`, see `Ranges`), and otherwise goes through `process_vm_readv` on
//! itself, so a torn or corrupt pointer gives an error, never a fault in the target. SIGTRAPs that are not ours (other `si_code` or cookie) go to the
//! handler that was installed before. Names, files and lines are resolved later, outside
//! the process, by the collector.
//!
//! Record formats: `src/python/wire.rs` (included below), documented in `docs/python.md`.
//! Nothing here panics on purpose; any failure leaves the target running unprofiled.
#![warn(missing_docs)]

mod code_identity;
#[allow(dead_code)]
#[path = "../../src/python/ring.rs"]
mod ring;
mod tstate_tls;
#[allow(dead_code)]
#[path = "../../src/python/wire.rs"]
mod wire;

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use wire::*;

/// Set once at load, read by the handler.
struct State {
    layout: Layout,
    runtime: u64,
    cookie: u64,
    /// Bytes of a frame struct to read (covers every field used).
    frame_window: usize,
}

/// The target's own SIGTRAP disposition (what it installed before or after the agent):
/// handler (`sa_sigaction`) and flags. Perf SIGTRAPs are ours; any other goes there.
static USER_HANDLER: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static USER_FLAGS: AtomicI32 = AtomicI32::new(0);
/// Our SIGTRAP handler is installed (the interposed `sigaction`/`signal` then keep it).
static INSTALLED: AtomicBool = AtomicBool::new(false);
static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGNAL: AtomicUsize = AtomicUsize::new(0);

type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;

fn next_symbol(cache: &AtomicUsize, name: &std::ffi::CStr) -> usize {
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
fn real_sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    let p = next_symbol(&REAL_SIGACTION, c"sigaction");
    if p == 0 {
        return -1;
    }
    // SAFETY: p is libc's sigaction, of this type; the pointers come from our caller.
    unsafe { std::mem::transmute::<usize, SigactionFn>(p)(sig, act, old) }
}

/// Interposes libc's `sigaction` so that a target installing its own SIGTRAP handler
/// (or resetting it) does not remove the agent's: the target's disposition is recorded
/// and chained to for every SIGTRAP that is not a perf sample of the agent, and the
/// target reads back what it set. Everything else goes to libc unchanged.
///
/// # Safety
/// Same contract as libc's `sigaction`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    if sig == libc::SIGTRAP && INSTALLED.load(Ordering::SeqCst) {
        // SAFETY: the caller passes valid (or null) sigaction pointers.
        unsafe {
            if !old.is_null() {
                *old = std::mem::zeroed();
                (*old).sa_sigaction = USER_HANDLER.load(Ordering::SeqCst);
                (*old).sa_flags = USER_FLAGS.load(Ordering::SeqCst);
            }
            if !act.is_null() {
                USER_FLAGS.store((*act).sa_flags, Ordering::SeqCst);
                USER_HANDLER.store((*act).sa_sigaction, Ordering::SeqCst);
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
    if sig == libc::SIGTRAP && INSTALLED.load(Ordering::SeqCst) {
        USER_FLAGS.store(libc::SA_RESTART, Ordering::SeqCst);
        return USER_HANDLER.swap(handler, Ordering::SeqCst);
    }
    let p = next_symbol(&REAL_SIGNAL, c"signal");
    if p == 0 {
        return libc::SIG_ERR;
    }
    // SAFETY: p is libc's signal, of this type.
    unsafe { std::mem::transmute::<usize, SignalFn>(p)(sig, handler) }
}

static STATE: OnceLock<State> = OnceLock::new();
/// The capture ring (shared with the collector), once mapped.
static RING: OnceLock<ring::Ring> = OnceLock::new();
static SOCK_FD: AtomicI32 = AtomicI32::new(-1);
static SOCK_PID: AtomicU32 = AtomicU32::new(0);
/// Captures written and nanoseconds spent capturing (printed at exit when
/// `HWPROF_AGENT_STATS` is set: the per-sample cost figure of docs/python.md).
static CAPTURES: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds in the handler for our SIGTRAPs, and `/proc/self/maps` re-reads
/// (HWPROF_AGENT_STATS).
static HANDLER_NS: AtomicU64 = AtomicU64::new(0);
static REFRESHES: AtomicU64 = AtomicU64::new(0);

fn now_ns() -> u64 {
    // SAFETY: clock_gettime (vDSO) is async-signal-safe.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}
static CAPTURE_NS: AtomicU64 = AtomicU64::new(0);

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = agent_init;

extern "C" fn agent_init() {
    // Never let anything escape into the target.
    let _ = std::panic::catch_unwind(init);
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

fn init() {
    let Some(sock_path) = env("HWPROF_AGENT_SOCK") else {
        return;
    };
    // Preloaded into a whole process tree (`sh -c "python ..."`): only processes with an
    // interpreter linked in talk to the collector.
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; null when absent.
    if env("HWPROF_AGENT_PYTHON_ONLY").is_some()
        && unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"Py_Initialize".as_ptr()) }.is_null()
    {
        return;
    }
    let Some(sock) = connect(&sock_path) else {
        return;
    };
    let pid = std::process::id();
    let hello = Hello {
        magic: HELLO_MAGIC,
        pid,
        reserved: 0,
    };
    if !send_struct(sock, &hello, &[]) {
        close(sock);
        return;
    }
    let Some((cfg, out_fd)) = recv_config(sock) else {
        close(sock);
        return;
    };
    SOCK_FD.store(sock, Ordering::SeqCst);
    SOCK_PID.store(pid, Ordering::SeqCst);
    // SAFETY: registering a plain extern "C" fn with atexit.
    unsafe { libc::atexit(agent_exit) };
    let attr = match cfg.attr_len as usize {
        n @ 128..=MAX_ATTR => cfg.attr[..n].to_vec(),
        _ => match env("HWPROF_AGENT_ATTR").and_then(|h| parse_hex(&h)) {
            Some(a) => a,
            None => return,
        },
    };
    // start_python takes the capture file (and closes it on failure).
    let python = cfg.python != 0 && cfg.sampling != SAMPLE_NONE && start_python(&cfg, pid, out_fd);
    if !python && cfg.python == 0 && out_fd >= 0 {
        close(out_fd);
    }
    let sample = match cfg.sampling {
        SAMPLE_ALWAYS => true,
        SAMPLE_IF_PYTHON => python,
        _ => false,
    };
    if !sample {
        return;
    }
    let fds = open_events(&attr, python, cfg.sampling == SAMPLE_ALWAYS, cfg.cookie);
    start_sampling(&fds, cfg.ring_pages);
    for chunk in fds.chunks(MAX_FDS_PER_MSG) {
        let mut msg = EventsMsg {
            magic: EVENTS_MAGIC,
            pid,
            count: chunk.len() as u32,
            cpus: [0; MAX_FDS_PER_MSG],
        };
        for (slot, &(cpu, _)) in msg.cpus.iter_mut().zip(chunk) {
            *slot = cpu;
        }
        let raw: Vec<c_int> = chunk.iter().map(|&(_, fd)| fd).collect();
        send_struct(sock, &msg, &raw);
    }
    // The collector holds its own copies now; close ours so the target's fd count is
    // its own.
    for (_, fd) in fds {
        close(fd);
    }
}

/// At exit of the process that connected: tell the collector and wait (at most 1 s) for
/// its ack, so code objects seen in the last moments are read while the process lives.
extern "C" fn agent_exit() {
    if std::env::var_os("HWPROF_AGENT_STATS").is_some() {
        let n = CAPTURES.load(Ordering::Relaxed);
        let ns = CAPTURE_NS.load(Ordering::Relaxed);
        eprintln!(
            "hwprof-agent: pid {}: {n} captures, {:.1} us each ({:.1} us in the handler); {} direct reads, {} through process_vm_readv, {} maps refreshes; {} code objects named, {} left to the collector",
            std::process::id(),
            ns as f64 / 1000.0 / n.max(1) as f64,
            HANDLER_NS.load(Ordering::Relaxed) as f64 / 1000.0 / n.max(1) as f64,
            DIRECT_READS.load(Ordering::Relaxed),
            SLOW_READS.load(Ordering::Relaxed),
            REFRESHES.load(Ordering::Relaxed),
            code_identity::EMITTED.load(Ordering::Relaxed),
            code_identity::LEFT_TO_COLLECTOR.load(Ordering::Relaxed),
        );
    }
    let sock = SOCK_FD.load(Ordering::SeqCst);
    if sock < 0 || SOCK_PID.load(Ordering::SeqCst) != std::process::id() {
        return;
    }
    let bye = Bye {
        magic: BYE_MAGIC,
        pid: std::process::id(),
        reserved: 0,
    };
    if send_struct(sock, &bye, &[]) {
        set_timeout(sock, 1);
        let mut b = [0u8; 8];
        // SAFETY: reading into a local buffer of the stated length.
        unsafe { libc::recv(sock, b.as_mut_ptr().cast(), b.len(), 0) };
    }
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || s.len() < 128 * 2 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn close(fd: c_int) {
    // SAFETY: closing an fd this module opened.
    unsafe { libc::close(fd) };
}

fn set_timeout(sock: c_int, secs: i64) {
    let tv = libc::timeval {
        tv_sec: secs,
        tv_usec: 0,
    };
    // SAFETY: valid socket option with a timeval of the stated size.
    unsafe {
        libc::setsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as u32,
        )
    };
}

fn connect(path: &str) -> Option<c_int> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: sockaddr_un is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as u16;
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        close(fd);
        return None;
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: addr is a valid sockaddr_un of the given size.
    let r = unsafe {
        libc::connect(
            fd,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_un>() as u32,
        )
    };
    if r != 0 {
        close(fd);
        return None;
    }
    set_timeout(fd, 2);
    Some(fd)
}

fn send_struct<T: Copy>(sock: c_int, v: &T, fds: &[c_int]) -> bool {
    let mut iov = libc::iovec {
        iov_base: (v as *const T).cast_mut().cast(),
        iov_len: size_of::<T>(),
    };
    let space = 64 * 4 + 64;
    let mut cbuf = vec![0u64; space / 8 + 1];
    // SAFETY: msghdr is plain data; zeroed is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure computations; the control buffer is large
        // enough for MAX_FDS_PER_MSG ints, and we write one header plus the fds into it.
        unsafe {
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(payload) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            if c.is_null() {
                return false;
            }
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
    }
    // SAFETY: msg points to live buffers for the duration of the call.
    let r = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    r == size_of::<T>() as isize
}

fn recv_config(sock: c_int) -> Option<(Config, c_int)> {
    let mut buf = [0u8; size_of::<Config>()];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data; zeroed is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&cbuf);
    // SAFETY: msg points to live local buffers of the stated sizes.
    let r = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    let mut fd = -1;
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const c_int);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if r != buf.len() as isize {
        if fd >= 0 {
            close(fd);
        }
        return None;
    }
    // SAFETY: Config is repr(C) plain integers; any bytes are a valid value.
    let cfg: Config = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
    if cfg.magic != CONFIG_MAGIC {
        if fd >= 0 {
            close(fd);
        }
        return None;
    }
    Some((cfg, fd))
}

fn start_python(cfg: &Config, pid: u32, given_fd: c_int) -> bool {
    let l = cfg.layout;
    let mut window = 0u64;
    for off in [
        l.frame_previous,
        l.frame_code,
        l.frame_instr,
        l.frame_is_entry,
        l.frame_owner,
        l.frame_lasti,
    ] {
        if off != NONE {
            window = window.max(off + 8);
        }
    }
    if l.minor < 11 && l.frame_localsplus != NONE {
        window = window.max(l.frame_localsplus + 8);
    }
    if window == 0 || window > 1024 {
        if given_fd >= 0 {
            close(given_fd);
        }
        return false;
    }
    // The collector's capture ring (a memfd): mapped, then the fd is not needed.
    if given_fd < 0 {
        return false;
    }
    let Some(ring) = map_ring(given_fd) else {
        return false;
    };
    let _ = pid;
    // SAFETY: sigaction is plain data; we fill handler, mask and flags.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    let mut prev: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction =
        on_sigtrap as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as usize;
    sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: installing a handler for SIGTRAP with valid sigaction structs.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    let r = real_sigaction(libc::SIGTRAP, &sa, &mut prev);
    if r != 0 {
        return false;
    }
    let state = State {
        layout: l,
        runtime: cfg.runtime,
        cookie: cfg.cookie,
        frame_window: window as usize,
    };
    USER_HANDLER.store(prev.sa_sigaction, Ordering::SeqCst);
    USER_FLAGS.store(prev.sa_flags, Ordering::SeqCst);
    if STATE.set(state).is_err() || RING.set(ring).is_err() {
        return false;
    }
    refresh_ranges();
    tstate_tls::init(l.minor);
    INSTALLED.store(true, Ordering::SeqCst);
    true
}

/// Maps the collector's capture ring from its memfd (closed here either way).
fn map_ring(fd: c_int) -> Option<ring::Ring> {
    // SAFETY: fstat into a zeroed struct of the right type.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let size = if unsafe { libc::fstat(fd, &mut st) } == 0 {
        st.st_size as usize
    } else {
        0
    };
    // SAFETY: a shared read-write mapping of the whole memfd; checked below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            // Populated now: a first touch in the handler would be a page fault.
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            0,
        )
    };
    close(fd);
    if size == 0 || base == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: `size` bytes mapped at base for the life of the process.
    let r = unsafe { ring::Ring::attach(base.cast(), size) };
    if r.is_none() {
        // SAFETY: unmapping what we just mapped.
        unsafe { libc::munmap(base, size) };
    }
    r
}

fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a repr(C) struct of integers without padding bytes that matter; we
    // only copy its bytes out.
    unsafe { std::slice::from_raw_parts((v as *const T).cast(), size_of::<T>()) }
}

fn online_cpus() -> Vec<u32> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let mut cpus = Vec::new();
    for part in s.trim().split(',') {
        let mut it = part.splitn(2, '-');
        let a = it.next().and_then(|x| x.parse::<u32>().ok());
        let b = it.next().and_then(|x| x.parse::<u32>().ok());
        match (a, b) {
            (Some(a), Some(b)) if b >= a && b - a < 4096 => cpus.extend(a..=b),
            (Some(a), None) => cpus.push(a),
            _ => {}
        }
    }
    if cpus.is_empty() {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u32;
        cpus.extend(0..n);
    }
    cpus
}

/// perf_event_attr flag bits (in the u64 at offset 40).
const BIT_DISABLED: u64 = 1 << 0;
const BIT_INHERIT: u64 = 1 << 1;
const BIT_EXCLUDE_KERNEL: u64 = 1 << 5;
const BIT_MMAP: u64 = 1 << 8;
const BIT_COMM: u64 = 1 << 9;
const BIT_ENABLE_ON_EXEC: u64 = 1 << 12;
const BIT_TASK: u64 = 1 << 13;
const BIT_MMAP_DATA: u64 = 1 << 17;
const BIT_MMAP2: u64 = 1 << 23;
const BIT_COMM_EXEC: u64 = 1 << 24;
const BIT_CONTEXT_SWITCH: u64 = 1 << 26;
const BITS_NS_TO_TEXT_POKE: u64 = 0x3f << 28; // namespaces, ksymbol, bpf, aux, cgroup, text_poke
const BIT_REMOVE_ON_EXEC: u64 = 1 << 36;
const BIT_SIGTRAP: u64 = 1 << 37;

fn open_events(attr: &[u8], python: bool, only_sampler: bool, cookie: u64) -> Vec<(u32, c_int)> {
    let mut a = attr.to_vec();
    if a.len() < 128 {
        return Vec::new();
    }
    let mut flags = u64::from_le_bytes(a[40..48].try_into().unwrap_or([0; 8]));
    flags &= !(BIT_DISABLED
        | BIT_MMAP
        | BIT_COMM
        | BIT_ENABLE_ON_EXEC
        | BIT_TASK
        | BIT_MMAP_DATA
        | BIT_MMAP2
        | BIT_COMM_EXEC
        | BIT_CONTEXT_SWITCH
        | BITS_NS_TO_TEXT_POKE);
    // Disabled until a ring is mapped (by `start_sampling` here, else by the collector):
    // no sample (and so no SIGTRAP capture) is taken that has nowhere to go.
    flags |= BIT_INHERIT | BIT_REMOVE_ON_EXEC | BIT_DISABLED;
    if python {
        // User mode only: a sample taken in the kernel during an execve (a child between
        // fork and exec, still holding these inherited events) queues a SIGTRAP that the
        // kernel delivers to the *new* program, whose SIGTRAP is SIG_DFL: it died (seen
        // with a static solver run by subprocess, as root). From user mode the signal
        // is delivered before the syscall starts, to our handler. Only for the time and
        // cycle samplers: locks mode's switch-out samples are in the kernel by nature.
        let ty = u32::from_le_bytes(a[0..4].try_into().unwrap_or([0; 4]));
        let config = u64::from_le_bytes(a[8..16].try_into().unwrap_or([0; 8]));
        let timer_or_hw = ty == 0 || (ty == 1 && config <= 1);
        flags |= BIT_SIGTRAP;
        if timer_or_hw {
            flags |= BIT_EXCLUDE_KERNEL;
        }
        a[120..128].copy_from_slice(&cookie.to_le_bytes());
    }
    a[40..48].copy_from_slice(&flags.to_le_bytes());
    let size = (a.len() as u32).min(4096);
    a[4..8].copy_from_slice(&size.to_le_bytes());
    let out = open_on_cpus(&a);
    if out.is_empty() && python && only_sampler {
        // A kernel without `sigtrap` (before 5.13), when nothing else samples this
        // process: sample it all the same, native frames only, rather than not at all.
        let plain = flags & !(BIT_SIGTRAP | BIT_REMOVE_ON_EXEC);
        a[40..48].copy_from_slice(&plain.to_le_bytes());
        return open_on_cpus(&a);
    }
    out
}

/// Maps each event's ring (`pages` data pages, the size the collector maps too) and
/// enables the event, so that sampling starts now rather than when the collector gets
/// to it (on a loaded machine that was tens of milliseconds of the program unsampled).
/// The mapping stays for the life of the program: the kernel keeps one ring per event
/// and both mappings share it. An event whose ring cannot be mapped here stays disabled
/// for the collector to map and enable.
fn start_sampling(fds: &[(u32, c_int)], pages: u32) {
    if pages == 0 || !pages.is_power_of_two() {
        return;
    }
    // SAFETY: sysconf is always safe to call.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let len = (pages as usize + 1) * page;
    for &(_, fd) in fds {
        // SAFETY: mapping a perf event's ring read-write (the collector, the consumer,
        // moves its tail); checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base != libc::MAP_FAILED {
            // SAFETY: PERF_EVENT_IOC_ENABLE on our own event fd.
            unsafe { libc::ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) };
        }
    }
}

/// `_IO('$', 0)`.
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;

/// One event per online CPU on this process, with the attr bytes given.
fn open_on_cpus(a: &[u8]) -> Vec<(u32, c_int)> {
    let mut out = Vec::new();
    for cpu in online_cpus() {
        // SAFETY: perf_event_open reads `size` bytes of attr, which we own.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                a.as_ptr(),
                0 as libc::pid_t,
                cpu as c_int,
                -1 as c_int,
                8 as libc::c_ulong, // PERF_FLAG_FD_CLOEXEC
            )
        };
        if fd >= 0 {
            out.push((cpu, fd as c_int));
        }
    }
    out
}

// ---------------------------------------------------------------- the signal handler

/// Reads `buf.len()` bytes at `addr` of this process; false on any failure. A plain copy
/// when the bytes lie in a known private read-write mapping (see [`Ranges`]), else one
/// `process_vm_readv`.
fn read_mem(pid: libc::pid_t, addr: u64, buf: &mut [u8]) -> bool {
    read_direct(addr, buf) || read_careful(pid, addr, buf)
}

/// Reads through `process_vm_readv` only: for memory this thread does not own (other
/// threads' states, which may be freed while we read).
fn read_careful(pid: libc::pid_t, addr: u64, buf: &mut [u8]) -> bool {
    if addr == 0 || addr == NONE {
        return false;
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: process_vm_readv on ourselves copies into `buf` (owned, of that length) and
    // reports EFAULT for unmapped remote addresses instead of faulting.
    let r = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    r == buf.len() as isize
}

fn read_u64_careful(pid: libc::pid_t, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    read_careful(pid, addr, &mut b).then(|| u64::from_le_bytes(b))
}

// ------------------------------------------------ direct reads of our own memory

/// The private read-write mappings of this process (from `/proc/self/maps`, merged and
/// sorted): where the interpreter's runtime state, thread states, frames and code objects
/// live. The handler copies from an address inside one of them with a plain load, which
/// costs nanoseconds where a `process_vm_readv` costs a microsecond or more; anything
/// else (a pointer outside every range, or a read while the table is rewritten) goes
/// through `process_vm_readv`, which cannot fault.
///
/// Why a plain load is safe here: the handler runs on the sampled thread, and it reads
/// only that thread's own frame chain and the objects the chain references, which stay
/// alive (and mapped) while the thread is stopped in the handler. A torn chain pointer
/// that lands outside the table is caught by the check. The residual risk, a garbage
/// pointer into a range that another thread unmaps between the check and the load, is
/// documented in docs/python.md. Other threads' states are read with
/// [`read_careful`] only.
///
/// A seqlock (odd while rewritten) lets handlers on several threads read the table while
/// one of them refreshes it; refreshes happen after misses, rate-limited with backoff.
struct Ranges {
    seq: AtomicU64,
    n: AtomicUsize,
    lo: [AtomicU64; MAX_RANGES],
    hi: [AtomicU64; MAX_RANGES],
    busy: AtomicBool,
    misses: AtomicU64,
    next_refresh_ns: AtomicU64,
    interval_ns: AtomicU64,
}

const MAX_RANGES: usize = 4096;
const FIRST_REFRESH_INTERVAL_NS: u64 = 10_000_000;
const MAX_REFRESH_INTERVAL_NS: u64 = 1_000_000_000;

static RANGES: Ranges = Ranges {
    seq: AtomicU64::new(0),
    n: AtomicUsize::new(0),
    lo: [const { AtomicU64::new(0) }; MAX_RANGES],
    hi: [const { AtomicU64::new(0) }; MAX_RANGES],
    busy: AtomicBool::new(false),
    misses: AtomicU64::new(0),
    next_refresh_ns: AtomicU64::new(0),
    interval_ns: AtomicU64::new(FIRST_REFRESH_INTERVAL_NS),
};
/// Reads served by a plain copy / by `process_vm_readv` (HWPROF_AGENT_STATS).
static DIRECT_READS: AtomicU64 = AtomicU64::new(0);
static SLOW_READS: AtomicU64 = AtomicU64::new(0);

/// Whether `[addr, addr+len)` lies inside one known range (false while the table is
/// being rewritten).
fn in_ranges(addr: u64, len: usize) -> bool {
    let r = &RANGES;
    let s1 = r.seq.load(Ordering::Acquire);
    if s1 & 1 == 1 {
        return false;
    }
    let n = r.n.load(Ordering::Relaxed).min(MAX_RANGES);
    let end = match addr.checked_add(len as u64) {
        Some(e) => e,
        None => return false,
    };
    // The last range starting at or below addr.
    let (mut a, mut b) = (0usize, n);
    while a < b {
        let m = (a + b) / 2;
        if r.lo[m].load(Ordering::Relaxed) <= addr {
            a = m + 1;
        } else {
            b = m;
        }
    }
    let ok = a > 0 && end <= r.hi[a - 1].load(Ordering::Relaxed);
    std::sync::atomic::fence(Ordering::Acquire);
    ok && r.seq.load(Ordering::Relaxed) == s1
}

/// Copies `buf.len()` bytes at `addr` when they lie in a known range.
fn read_direct(addr: u64, buf: &mut [u8]) -> bool {
    if addr == 0 || addr == NONE || !in_ranges(addr, buf.len()) {
        if addr != 0 && addr != NONE {
            RANGES.misses.fetch_add(1, Ordering::Relaxed);
            SLOW_READS.fetch_add(1, Ordering::Relaxed);
        }
        return false;
    }
    // SAFETY: the range check above says these bytes are in a private read-write mapping
    // of this process (see `Ranges` for why it is still mapped); buf is ours.
    unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
    DIRECT_READS.fetch_add(1, Ordering::Relaxed);
    true
}

/// Re-reads the table when reads missed it and the (backed-off) interval has passed.
/// Async-signal-safe: open/read/close and no allocation.
fn maybe_refresh_ranges(now_ns: u64) {
    let r = &RANGES;
    if r.misses.load(Ordering::Relaxed) == 0 || now_ns < r.next_refresh_ns.load(Ordering::Relaxed) {
        return;
    }
    let interval = r.interval_ns.load(Ordering::Relaxed);
    r.next_refresh_ns
        .store(now_ns + interval, Ordering::Relaxed);
    r.interval_ns.store(
        (interval * 2).min(MAX_REFRESH_INTERVAL_NS),
        Ordering::Relaxed,
    );
    r.misses.store(0, Ordering::Relaxed);
    REFRESHES.fetch_add(1, Ordering::Relaxed);
    refresh_ranges();
}

/// Rewrites the table from `/proc/self/maps`: private read-write mappings that are not
/// devices, adjacent ones merged. One refresher at a time; the others keep reading
/// through `process_vm_readv` meanwhile.
fn refresh_ranges() {
    let r = &RANGES;
    if r.busy.swap(true, Ordering::Acquire) {
        return;
    }
    // SAFETY: opening a constant path read-only.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd >= 0 {
        r.seq.fetch_add(1, Ordering::AcqRel);
        let mut n = 0usize;
        let mut line = [0u8; 512];
        let mut len = 0usize;
        let mut chunk = [0u8; 4096];
        let push = |l: &[u8], n: &mut usize| {
            if let Some((lo, hi)) = parse_maps_line(l) {
                if *n > 0 && r.hi[*n - 1].load(Ordering::Relaxed) == lo {
                    r.hi[*n - 1].store(hi, Ordering::Relaxed);
                } else if *n < MAX_RANGES {
                    r.lo[*n].store(lo, Ordering::Relaxed);
                    r.hi[*n].store(hi, Ordering::Relaxed);
                    *n += 1;
                }
            }
        };
        loop {
            // SAFETY: reading into a local buffer of the stated length.
            let got = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if got <= 0 {
                break;
            }
            for &c in &chunk[..got as usize] {
                if c == b'\n' {
                    push(&line[..len], &mut n);
                    len = 0;
                } else if len < line.len() {
                    line[len] = c;
                    len += 1;
                }
            }
        }
        if len > 0 {
            push(&line[..len], &mut n);
        }
        close(fd);
        r.n.store(n, Ordering::Relaxed);
        r.seq.fetch_add(1, Ordering::AcqRel);
    }
    r.busy.store(false, Ordering::Release);
}

/// `start-end rw-p offset dev inode [path]` → (start, end) for private read-write
/// mappings that are not device files.
fn parse_maps_line(l: &[u8]) -> Option<(u64, u64)> {
    let mut fields = l.splitn(6, |&c| c == b' ');
    let span = fields.next()?;
    let perms = fields.next()?;
    if perms.get(..4) != Some(b"rw-p".as_slice()) {
        return None;
    }
    let path = fields.nth(3).unwrap_or(&[]);
    let path = path.trim_ascii_start();
    if path.starts_with(b"/dev/") {
        return None;
    }
    let dash = span.iter().position(|&c| c == b'-')?;
    let lo = hex_u64(&span[..dash])?;
    let hi = hex_u64(&span[dash + 1..])?;
    (lo < hi).then_some((lo, hi))
}

fn hex_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        let d = (c as char).to_digit(16)?;
        v = (v << 4) | d as u64;
    }
    Some(v)
}

fn read_u64(pid: libc::pid_t, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    read_mem(pid, addr, &mut b).then(|| u64::from_le_bytes(b))
}

fn word(b: &[u8], off: u64) -> u64 {
    let o = off as usize;
    b.get(o..o + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

fn add(a: u64, off: u64) -> u64 {
    if off == NONE { 0 } else { a.wrapping_add(off) }
}

/// The `PyThreadState` whose `thread_id` is this thread's `pthread_self()`.
fn find_tstate(st: &State, pid: libc::pid_t) -> u64 {
    let l = &st.layout;
    // SAFETY: pthread_self reads the thread pointer; always valid.
    let me = unsafe { libc::pthread_self() } as u64;
    let mut interp =
        read_u64_careful(pid, add(st.runtime, l.runtime_interpreters_head)).unwrap_or(0);
    let mut ni = 0;
    while interp != 0 && ni < 64 {
        let mut t = read_u64_careful(pid, add(interp, l.interp_threads_head)).unwrap_or(0);
        let mut nt = 0;
        while t != 0 && nt < 4096 {
            if read_u64_careful(pid, add(t, l.tstate_thread_id)) == Some(me) {
                return t;
            }
            t = read_u64_careful(pid, add(t, l.tstate_next)).unwrap_or(0);
            nt += 1;
        }
        interp = read_u64_careful(pid, add(interp, l.interp_next)).unwrap_or(0);
        ni += 1;
    }
    0
}

/// Reads several regions (at most 4): each directly when it lies in a known range, the
/// rest with one `process_vm_readv`, skipping requests at address 0 or NONE; returns a
/// bit mask of the requests read completely.
fn read_multi(pid: libc::pid_t, reqs: &mut [(u64, &mut [u8])]) -> u32 {
    let mut local = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 4];
    let mut remote = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 4];
    let mut which = [0usize; 4];
    let mut k = 0;
    let mut direct = 0u32;
    for (i, (addr, buf)) in reqs.iter_mut().enumerate() {
        if k == 4 || *addr == 0 || *addr == NONE {
            continue;
        }
        if read_direct(*addr, buf) {
            direct |= 1 << i;
            continue;
        }
        local[k] = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        remote[k] = libc::iovec {
            iov_base: *addr as *mut c_void,
            iov_len: buf.len(),
        };
        which[k] = i;
        k += 1;
    }
    if k == 0 {
        return direct;
    }
    // SAFETY: as in read_mem; every local iovec points into a live buffer of its length.
    let r =
        unsafe { libc::process_vm_readv(pid, local.as_ptr(), k as _, remote.as_ptr(), k as _, 0) };
    let mut got = if r < 0 { 0 } else { r as usize };
    let mut mask = 0;
    for (l, &i) in local[..k].iter().zip(&which) {
        if got < l.iov_len {
            break;
        }
        got -= l.iov_len;
        mask |= 1 << i;
    }
    mask | direct
}

/// Per-thread cache of `PyThreadState` addresses, keyed by `pthread_self()`; validated
/// on every use (the thread state's `thread_id` must still be this thread).
const TCACHE: usize = 64;
static TKEYS: [AtomicU64; TCACHE] = [const { AtomicU64::new(0) }; TCACHE];
static TVALS: [AtomicU64; TCACHE] = [const { AtomicU64::new(0) }; TCACHE];

/// The innermost frame of the current thread (0 when it runs no Python code), None
/// when the thread has no Python thread state.
fn current_frame(st: &State, pid: libc::pid_t) -> Option<u64> {
    let l = &st.layout;
    // SAFETY: pthread_self reads the thread pointer; always valid.
    let me = unsafe { libc::pthread_self() } as u64;
    let slot = ((me >> 12) ^ (me >> 21)) as usize % TCACHE;
    let lo = l.tstate_frame.min(l.tstate_thread_id);
    let hi = l.tstate_frame.max(l.tstate_thread_id) + 8;
    if hi - lo > 512 {
        return None;
    }
    let mut win = [0u8; 512];
    let read_state = |t: u64, win: &mut [u8; 512]| -> Option<u64> {
        // Careful: a cached state may belong to a thread that ended (pthread ids are
        // reused), and its memory may be gone.
        let w = &mut win[..(hi - lo) as usize];
        if !read_careful(pid, t.wrapping_add(lo), w) {
            return None;
        }
        let w = &*w;
        (word(w, l.tstate_thread_id - lo) == me).then(|| word(w, l.tstate_frame - lo))
    };
    // 3.12+: the attached state from CPython's thread-local, plain loads (tstate_tls.rs).
    let mut found = None;
    let t = tstate_tls::current();
    if t != 0 && read_direct(t.wrapping_add(lo), &mut win[..(hi - lo) as usize]) {
        let w = &win[..(hi - lo) as usize];
        found = (word(w, l.tstate_thread_id - lo) == me).then(|| word(w, l.tstate_frame - lo));
    }
    if found.is_none() && TKEYS[slot].load(Ordering::Acquire) == me {
        let t = TVALS[slot].load(Ordering::Acquire);
        found = gil_holder_state(st, t, me, lo, &mut win[..(hi - lo) as usize])
            .or_else(|| read_state(t, &mut win));
    }
    if found.is_none() {
        let t = find_tstate(st, pid);
        if t == 0 {
            return None;
        }
        found = read_state(t, &mut win);
        if found.is_some() {
            TVALS[slot].store(t, Ordering::Release);
            TKEYS[slot].store(me, Ordering::Release);
        }
    }
    let mut frame = found?;
    if l.cframe_current_frame != NONE && frame != 0 {
        frame = read_u64(pid, add(frame, l.cframe_current_frame)).unwrap_or(0);
    }
    Some(frame)
}

/// Fast path of [`current_frame`] (3.8-3.11): when this thread holds the GIL,
/// `_PyRuntime.gilstate.tstate_current` (static memory, always mapped) is its cached
/// state `t`, which is then alive (CPython clears `tstate_current` before freeing the
/// current state, and refuses to delete it from another thread): its fields are read
/// with plain loads instead of a `process_vm_readv` (2 µs here). The frame pointer of
/// `t` when so, else None (the careful path decides).
fn gil_holder_state(st: &State, t: u64, me: u64, lo: u64, win: &mut [u8]) -> Option<u64> {
    let l = &st.layout;
    if l.runtime_tstate_current == NONE || t == 0 {
        return None;
    }
    let mut cur = [0u8; 8];
    if !read_direct(add(st.runtime, l.runtime_tstate_current), &mut cur)
        || u64::from_le_bytes(cur) != t
        || !read_direct(t.wrapping_add(lo), win)
    {
        return None;
    }
    let w = &*win;
    // A reused pthread id: the GIL holder's state is another thread's.
    (word(w, l.tstate_thread_id - lo) == me).then(|| word(w, l.tstate_frame - lo))
}

/// Walks the frame chain from `frame`, one `process_vm_readv` per frame: each call reads
/// this frame and the previous frame's code-object fields (and, before 3.11, the type of
/// its first local). Returns the frame count and `CAP_*` flags.
fn walk_frames(
    st: &State,
    pid: libc::pid_t,
    mut frame: u64,
    out: &mut [CapFrame; MAX_FRAMES],
) -> (usize, u32) {
    let l = &st.layout;
    // Each code object's name, filename, qualname, line table and first line: its token,
    // and its identity record the first time it is met (code_identity.rs).
    let Some((c_lo, c_len)) = code_identity::window(l) else {
        return (0, CAP_READ_FAILED);
    };
    let mut id_budget = code_identity::BUDGET_BYTES;
    let mut n = 0usize;
    let mut flags = 0;
    // Pending reads for frame n-1: its code object's fields, its first local's type.
    let mut pend_code = 0u64;
    let mut pend_local = 0u64;
    let mut fb = [0u8; 1024];
    let mut cb = [0u8; code_identity::MAX_WINDOW];
    let mut tb = [0u8; 8];
    loop {
        let more = frame != 0 && n < MAX_FRAMES;
        if frame != 0 && n == MAX_FRAMES {
            flags |= CAP_TRUNCATED;
        }
        // Order: code fields and local type of frame n-1 first (their success must not
        // depend on this frame's), then this frame.
        let mut reqs: [(u64, &mut [u8]); 3] = [
            (
                if pend_code != 0 {
                    pend_code.wrapping_add(c_lo)
                } else {
                    NONE
                },
                &mut cb[..c_len],
            ),
            (
                if pend_local != 0 {
                    add(pend_local, l.object_type)
                } else {
                    NONE
                },
                &mut tb[..],
            ),
            (if more { frame } else { NONE }, &mut fb[..st.frame_window]),
        ];
        if reqs.iter().all(|r| r.0 == NONE) {
            break;
        }
        let mask = read_multi(pid, &mut reqs);
        let done = |i: usize| mask & (1 << i) != 0;
        if n > 0 {
            let prev = &mut out[n - 1];
            if pend_code != 0 {
                if done(0) {
                    let cf = code_identity::fields(l, &cb[..c_len], c_lo);
                    let hash = read_u64(
                        pid,
                        cf.name.wrapping_add(unicode_hash_offset(l.unicode_length)),
                    )
                    .unwrap_or(0);
                    prev.token = code_token(cf.name, cf.file, cf.firstlineno, hash);
                    let token = prev.token;
                    code_identity::note(l, pid as u32, pend_code, token, &cf, &mut id_budget);
                } else {
                    flags |= CAP_READ_FAILED;
                }
            }
            if pend_local != 0 && done(1) {
                prev.self_type = u64::from_le_bytes(tb);
            }
        }
        pend_code = 0;
        pend_local = 0;
        if !more {
            break;
        }
        // An earlier request of the batch failing stops the batch: read the frame alone.
        if !done(2) && !read_mem(pid, frame, &mut fb[..st.frame_window]) {
            flags |= CAP_READ_FAILED;
            break;
        }
        let w = &fb[..st.frame_window];
        let code = word(w, l.frame_code);
        let prev = word(w, l.frame_previous);
        let mut f = CapFrame {
            code,
            ..CapFrame::default()
        };
        if l.frame_instr != NONE {
            let ip = word(w, l.frame_instr);
            let off = ip.wrapping_sub(code.wrapping_add(l.code_code_adaptive));
            if ip == 0 || off >= 1 << 28 {
                f.flags |= FR_NO_OFFSET;
            } else {
                f.offset = off as u32;
            }
        } else if l.frame_lasti != NONE {
            let o = l.frame_lasti as usize;
            let lasti = w
                .get(o..o + 4)
                .and_then(|s| s.try_into().ok())
                .map(i32::from_le_bytes)
                .unwrap_or(-1);
            if lasti < 0 {
                f.flags |= FR_NO_OFFSET;
            } else {
                f.offset = if l.minor >= 10 {
                    lasti as u32 * 2
                } else {
                    lasti as u32
                };
            }
        }
        if l.frame_is_entry != NONE && w.get(l.frame_is_entry as usize) == Some(&1) {
            f.flags |= FR_ENTRY;
        }
        if l.minor >= 12 && l.frame_owner != NONE && w.get(l.frame_owner as usize) == Some(&3) {
            f.flags |= FR_SHIM;
        }
        if l.minor < 11 && l.frame_localsplus != NONE {
            pend_local = word(w, l.frame_localsplus);
        }
        if f.flags & FR_SHIM == 0 {
            pend_code = code;
        }
        out[n] = f;
        n += 1;
        if prev == frame {
            flags |= CAP_READ_FAILED;
            frame = 0;
        } else {
            frame = prev;
        }
    }
    (n, flags)
}

extern "C" fn on_sigtrap(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: errno is thread-local; saved and restored around the handler.
    let errno = unsafe { *libc::__errno_location() };
    let Some(st) = STATE.get() else { return };
    // siginfo for perf: si_code at 8, si_perf_data at 24, si_perf_flags at 36 (x86-64).
    let (code, data, pflags) = if info.is_null() {
        (0, 0, 0)
    } else {
        // SAFETY: the kernel passes a full siginfo_t (128 bytes) for SA_SIGINFO handlers.
        unsafe {
            let p = info as *const u8;
            (
                std::ptr::read_unaligned(p.add(8) as *const i32),
                std::ptr::read_unaligned(p.add(24) as *const u64),
                std::ptr::read_unaligned(p.add(36) as *const u32),
            )
        }
    };
    if code != libc::TRAP_PERF || data != st.cookie {
        chain(st, sig, info, ctx);
    } else {
        let t0 = now_ns();
        capture(st, pflags & 1 != 0);
        HANDLER_NS.fetch_add(now_ns().saturating_sub(t0), Ordering::Relaxed);
    }
    // SAFETY: see above.
    unsafe { *libc::__errno_location() = errno };
}

/// Hands a SIGTRAP that is not ours to the target's own disposition.
fn chain(_st: &State, sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let h = USER_HANDLER.load(Ordering::SeqCst);
    let flags = USER_FLAGS.load(Ordering::SeqCst);
    if h == libc::SIG_IGN {
        return;
    }
    if h == libc::SIG_DFL {
        // A real trap (breakpoint without a debugger): the default action, as without
        // the agent. Our events are stopped first so nothing else arrives.
        INSTALLED.store(false, Ordering::SeqCst);
        // SAFETY: sigaction struct zeroed = SIG_DFL; re-raising applies the default action.
        unsafe {
            let dfl: libc::sigaction = std::mem::zeroed();
            real_sigaction(libc::SIGTRAP, &dfl, std::ptr::null_mut());
            libc::raise(sig);
        }
        return;
    }
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the target installed this handler with SA_SIGINFO, so it has this type.
        let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a plain handler takes the signal number.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
}

fn capture(st: &State, late: bool) {
    let Some(ring) = RING.get() else { return };
    // SAFETY: getpid/gettid/clock_gettime are async-signal-safe syscalls (vDSO for time).
    let (pid, tid, now) = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        (
            libc::getpid(),
            libc::gettid(),
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
        )
    };
    let mut n = 0usize;
    let mut flags = if late { CAP_ASYNC } else { 0 };
    let mut frames = [CapFrame::default(); MAX_FRAMES];
    let top = current_frame(st, pid);
    match top {
        None => flags |= CAP_NO_TSTATE,
        Some(frame) => {
            let (count, f) = walk_frames(st, pid, frame, &mut frames);
            n = count;
            flags |= f;
        }
    }
    let frame_bytes = {
        let used = &frames[..n];
        // SAFETY: CapFrame is repr(C) plain integers; viewing the used ones as bytes.
        unsafe { std::slice::from_raw_parts(used.as_ptr().cast::<u8>(), size_of_val(used)) }
    };
    let len = size_of::<RecordHeader>() + size_of::<Capture>() + frame_bytes.len();
    let h = RecordHeader {
        len: len as u32,
        kind: REC_CAPTURE,
    };
    let c = Capture {
        pid: pid as u32,
        tid: tid as u32,
        time_ns: now,
        flags,
        nframes: n as u32,
    };
    if ring.write(&[as_bytes(&h), as_bytes(&c), frame_bytes]) {
        CAPTURES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: clock_gettime (vDSO) is async-signal-safe.
        let end = unsafe {
            let mut ts: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        CAPTURE_NS.fetch_add(end.saturating_sub(now), Ordering::Relaxed);
    }
    maybe_refresh_ranges(now);
}
