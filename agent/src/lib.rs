//! hwprof's agent: a small library that hwprof preloads (`LD_PRELOAD`) into the
//! processes it launches, to capture each sampled thread's Python stack at the instant of
//! the sample.
//!
//! At load (`.init_array`, after the dynamic loader has mapped the interpreter, before
//! `main`), when `HWPROF_AGENT_SOCK` is set, the agent:
//! 1. connects to the collector's socket and says hello (its pid);
//! 2. receives a `Config`: whether this process is a CPython the collector understands,
//!    the address of `_PyRuntime`, that version's struct layout, and a cookie;
//! 3. if Python: maps the capture ring the collector sent (a memfd, see `wire/src/ring.rs`) and
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
//! handler (async-signal-safe: no allocation, no locks, only `clock_gettime` and, once
//! per thread and process, `getpid`/`gettid` (cached: `self_ids.rs`); on the alternate stack when the thread has one, with its buffers in
//! a preallocated slot, see `scratch.rs`) finds the thread's
//! `PyThreadState` (matching `thread_id` to `pthread_self()`), walks its frame chain, and
//! appends one capture record to the ring
//! (code object address, instruction offset, entry/shim markers, validation token) with
//! tid and CLOCK_MONOTONIC time. Every read of interpreter memory is fault-tolerant
//! (`safe_load.rs`, or `process_vm_readv` on itself where that cannot be used), so a
//! torn or stale pointer gives an error, never a fault in the target (why: the comment
//! above `on_sigtrap`'s section). SIGTRAPs that are not
//! ours (other `si_code` or cookie) go to the program's own disposition, with its mask
//! and flags (`disposition.rs`). Names, files and lines are resolved later, outside
//! the process, by the collector.
//!
//! Record formats: the `hwprof-wire` crate (`wire/src/lib.rs`), documented in `docs/python.md`.
//! Nothing here panics on purpose (and the embedded build is `panic = "abort"`, see
//! build.rs); any failure leaves the target running unprofiled.
#![warn(missing_docs)]

mod bench_hook;
mod code_identity;
mod tstate_tls;

mod disposition;
mod exit_check;
mod fd_paths;
mod safe_load;
mod scratch;
mod self_ids;
mod spawn;
mod stats;
mod thread_words;
mod waits;

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use hwprof_wire as wire;
use hwprof_wire::ring;
use wire::*;

/// Set once at load, read by the handler.
struct State {
    layout: Layout,
    runtime: u64,
    /// `PyCode_Type` (0: unknown, no check): see `walk_frames`.
    code_type: u64,
    cookie: u64,
    /// Bytes of a frame struct to read (covers every field used).
    frame_window: usize,
}

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
pub(crate) fn real_sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let p = next_symbol(&REAL_SIGACTION, c"sigaction");
    if p == 0 {
        return -1;
    }
    // SAFETY: p is libc's sigaction, of this type; the pointers come from our caller.
    unsafe { std::mem::transmute::<usize, SigactionFn>(p)(sig, act, old) }
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

fn now_ns() -> u64 {
    // SAFETY: clock_gettime (vDSO) is async-signal-safe.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

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
    // Locks mode: every process of the tree records its waits (waits.rs).
    let waits = waits::configure();
    // Preloaded into a whole process tree (`sh -c "python ..."`): only processes with an
    // interpreter linked in talk to the collector (in locks mode, all of them).
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; null when absent.
    if !waits
        && env("HWPROF_AGENT_PYTHON_ONLY").is_some()
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
    exit_check::remember(sock);
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
    if waits {
        // The wait marker's breakpoint: its samples carry each long wait's stack.
        let fds = waits::open_breakpoints(&attr, python.then_some(cfg.cookie));
        start_sampling(&fds, cfg.ring_pages);
        send_events(sock, pid, &fds);
        for (_, fd) in fds {
            close(fd);
        }
    }
    let sample = match cfg.sampling {
        SAMPLE_ALWAYS => true,
        SAMPLE_IF_PYTHON => python,
        _ => false,
    };
    if !sample {
        return;
    }
    let mut fds = open_events(&attr, python, cfg.sampling == SAMPLE_ALWAYS, cfg.cookie);
    // Memory mode: major faults too, so that a cold file read has its Python line. Sent
    // after the minor-fault events; the collector files a CPU's second event under its
    // own major-faults attr (the same attr but the counter).
    if let Some(major) = major_fault_attr(&attr).filter(|_| !fds.is_empty()) {
        fds.extend(open_events(&major, python, false, cfg.cookie));
    }
    start_sampling(&fds, cfg.ring_pages);
    send_events(sock, pid, &fds);
    // The collector holds its own copies now. Ours are closed, so the target's fd count
    // is its own, except the SIGTRAP samplers' (Python): `posix_spawn` disables them
    // around its child's pre-exec window (spawn.rs).
    for (_, fd) in fds {
        if !(python && spawn::keep(fd)) {
            close(fd);
        }
    }
}

/// Hands event fds (cpu, fd) to the collector, which maps and drains their rings.
fn send_events(sock: c_int, pid: u32, fds: &[(u32, c_int)]) {
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
}

/// At exit of the process that connected: tell the collector and wait (at most 1 s) for
/// its ack, so code objects seen in the last moments are read while the process lives.
extern "C" fn agent_exit() {
    if std::env::var_os("HWPROF_AGENT_STATS").is_some() {
        let n = stats::CAPTURES.load(Ordering::Relaxed);
        let ns = stats::CAPTURE_NS.load(Ordering::Relaxed);
        // Not eprintln!: it panics when stderr is closed.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "hwprof-agent: pid {}: {n} captures, {:.1} us each ({:.1} us in the handler); {} safe-load reads ({} faults recovered), {} reads through process_vm_readv, {} captures without a free scratch slot; {} code objects named, {} left to the collector; safe loads stopped {} times (a fault handler replaced by a raw rt_sigaction); handler median {:.2} us, p90 {:.2} us",
            std::process::id(),
            ns as f64 / 1000.0 / n.max(1) as f64,
            stats::HANDLER_NS.load(Ordering::Relaxed) as f64 / 1000.0 / n.max(1) as f64,
            safe_load::SAFE_READS.load(Ordering::Relaxed),
            safe_load::FAULTS_RECOVERED.load(Ordering::Relaxed),
            CHECKED_READS.load(Ordering::Relaxed),
            scratch::EXHAUSTED.load(Ordering::Relaxed),
            code_identity::EMITTED.load(Ordering::Relaxed),
            code_identity::LEFT_TO_COLLECTOR.load(Ordering::Relaxed),
            safe_load::HANDLERS_REPLACED.load(Ordering::Relaxed),
            stats::handler_quantile_us(0.5),
            stats::handler_quantile_us(0.9),
        );
    }
    let sock = SOCK_FD.load(Ordering::SeqCst);
    // The program may have closed our fd and reused its number (os.closerange, then a
    // socketpair): "bye" goes only to the socket we connected.
    if sock < 0
        || SOCK_PID.load(Ordering::SeqCst) != std::process::id()
        || !exit_check::still_ours(sock)
    {
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
        // SAFETY: reading into a local buffer of the stated length. The system call,
        // not libc's recv, which waits.rs interposes: our own wait is not the program's.
        unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                sock,
                b.as_mut_ptr(),
                b.len(),
                0,
                0usize,
                0usize,
            )
        };
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

fn send_struct<T: Plain>(sock: c_int, v: &T, fds: &[c_int]) -> bool {
    let bytes = v.as_bytes();
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
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
    // SAFETY: msg points to live buffers for the duration of the call. The system
    // call, not libc's sendmsg, which waits.rs interposes: our own wait is not the
    // program's.
    let r = unsafe { libc::syscall(libc::SYS_sendmsg, sock, &raw const msg, libc::MSG_NOSIGNAL) }
        as isize;
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
    let Some(cfg) = Config::read_from(&buf).filter(|c| c.magic == CONFIG_MAGIC) else {
        if fd >= 0 {
            close(fd);
        }
        return None;
    };
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
    if window == 0 || window > scratch::FRAME_WINDOW as u64 {
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
    // SA_ONSTACK: on the thread's alternate stack when the program set one (a thread
    // near the end of a small stack must not overflow it because of us); the handler's
    // own stack use is bounded (see `on_sigtrap`).
    sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
    // SAFETY: installing a handler for SIGTRAP with valid sigaction structs.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    let r = real_sigaction(libc::SIGTRAP, &sa, &mut prev);
    if r != 0 {
        return false;
    }
    let state = State {
        layout: l,
        runtime: cfg.runtime,
        code_type: cfg.code_type,
        cookie: cfg.cookie,
        frame_window: window as usize,
    };
    disposition::store(libc::SIGTRAP, &prev);
    disposition::set_owner();
    if STATE.set(state).is_err() || RING.set(ring).is_err() {
        return false;
    }
    tstate_tls::init(l.minor);
    self_ids::init();
    stats::init();
    thread_words::init();
    disposition::set_ours(libc::SIGTRAP, true);
    // Without them, reads go through process_vm_readv.
    safe_load::install();
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

/// The major-fault twin of a minor-fault sampling attr (software event,
/// PERF_COUNT_SW_PAGE_FAULTS_MIN = 5 becomes PERF_COUNT_SW_PAGE_FAULTS_MAJ = 6).
fn major_fault_attr(attr: &[u8]) -> Option<Vec<u8>> {
    let ty = u32::from_le_bytes(attr.get(0..4)?.try_into().ok()?);
    let config = u64::from_le_bytes(attr.get(8..16)?.try_into().ok()?);
    if ty != 1 || config != 5 {
        return None;
    }
    let mut a = attr.to_vec();
    a[8..16].copy_from_slice(&6u64.to_le_bytes());
    Some(a)
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
//
// Stack budget: the handler (on the program's alternate stack when the thread has one,
// `SA_ONSTACK`) keeps its buffers in a `scratch` slot, not on the stack; its own frames
// (`on_sigtrap` → `capture` → `walk_frames` → `read_multi`) use under 700 bytes of
// stack; a capture that meets a new code object goes deeper (`code_identity::note` →
// `self_first` → `str_data` → `read_multi`), about 1.35 KiB (measured from the binary,
// docs/security.md), plus what a chained program handler uses.
//
// Memory reads: every read of interpreter memory (thread states, frames, code objects,
// the `self` object) is checked: an unmapped or protected address gives an error, never
// a fault in the target. A plain load would be safe only for memory proven mapped *and*
// not unmappable, such as the interpreter's static data (`_PyRuntime`). Heap memory is
// neither: a pointer read while the thread was between two stores (a frame being
// pushed), a stale value-stack slot, or a cached thread state of a thread that ended
// can point into memory freed and unmapped since (obmalloc arenas, 3.11+ data stack
// chunks and large malloc blocks are returned with munmap), and a table of the
// process's mappings can only say what was mapped when it was read. So reads use the
// fault-tolerant copy of `safe_load.rs` (plain loads at one instruction whose faults
// our SIGSEGV/SIGBUS handler recovers; no system call), or `process_vm_readv` on this
// process (EFAULT instead of a fault; one system call per frame) when those handlers
// are not installed or the thread has SIGSEGV/SIGBUS blocked. Costs: docs/performance.md,
// "Python handler".

/// Reads of interpreter memory through `process_vm_readv` (HWPROF_AGENT_STATS).
static CHECKED_READS: AtomicU64 = AtomicU64::new(0);

/// Reads `buf.len()` bytes at `addr` of this process, checked (see above); false on any
/// failure (an unmapped address included).
fn read_mem(pid: libc::pid_t, addr: u64, buf: &mut [u8]) -> bool {
    read_multi(pid, &mut [(addr, buf)]) == 1
}

fn read_u64(pid: libc::pid_t, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    read_mem(pid, addr, &mut b).then(|| u64::from_le_bytes(b))
}

/// The 8-byte word at `off` of `b` (0 when outside).
fn word(b: &[u8], off: u64) -> u64 {
    let o = off as usize;
    o.checked_add(8)
        .and_then(|e| b.get(o..e))
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// The 4-byte int at `off` of `b` (-1 when outside).
fn int32(b: &[u8], off: u64) -> i32 {
    let o = off as usize;
    o.checked_add(4)
        .and_then(|e| b.get(o..e))
        .and_then(|s| s.try_into().ok())
        .map(i32::from_le_bytes)
        .unwrap_or(-1)
}

fn add(a: u64, off: u64) -> u64 {
    if off == NONE { 0 } else { a.wrapping_add(off) }
}

/// The `PyThreadState` whose `thread_id` is this thread's `pthread_self()`.
fn find_tstate(st: &State, pid: libc::pid_t) -> u64 {
    let l = &st.layout;
    let me = thread_words::pthread_self();
    let mut interp = read_u64(pid, add(st.runtime, l.runtime_interpreters_head)).unwrap_or(0);
    let mut ni = 0;
    while interp != 0 && ni < 64 {
        let mut t = read_u64(pid, add(interp, l.interp_threads_head)).unwrap_or(0);
        let mut nt = 0;
        while t != 0 && nt < 4096 {
            if read_u64(pid, add(t, l.tstate_thread_id)) == Some(me) {
                return t;
            }
            t = read_u64(pid, add(t, l.tstate_next)).unwrap_or(0);
            nt += 1;
        }
        interp = read_u64(pid, add(interp, l.interp_next)).unwrap_or(0);
        ni += 1;
    }
    0
}

/// Reads several regions (at most 4), skipping requests at address 0 or NONE; returns a
/// bit mask of the requests read completely. With the safe copy each is read on its
/// own; with one `process_vm_readv` the kernel stops at the first one that fails.
fn read_multi(pid: libc::pid_t, reqs: &mut [(u64, &mut [u8])]) -> u32 {
    if safe_load::usable() {
        // No system call: each request on its own (one failing does not stop the rest),
        // and no iovecs to build (they were a tenth of a warm capture's time).
        let mut mask = 0;
        for (i, (addr, buf)) in reqs.iter_mut().enumerate() {
            if *addr != 0 && *addr != NONE && safe_load::read(*addr, buf) {
                mask |= 1 << i;
            }
        }
        return mask;
    }
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut local = [empty; 4];
    let mut remote = [empty; 4];
    let mut which = [0usize; 4];
    let mut k = 0;
    for (i, (addr, buf)) in reqs.iter_mut().enumerate() {
        if *addr == 0 || *addr == NONE {
            continue;
        }
        let (Some(l), Some(r), Some(w)) = (local.get_mut(k), remote.get_mut(k), which.get_mut(k))
        else {
            break;
        };
        *l = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        *r = libc::iovec {
            iov_base: *addr as *mut c_void,
            iov_len: buf.len(),
        };
        *w = i;
        k += 1;
    }
    if k == 0 {
        return 0;
    }
    CHECKED_READS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: process_vm_readv on ourselves copies into the local buffers (each live and
    // of its iovec's length) and reports EFAULT for unmapped remote addresses instead of
    // faulting.
    let r =
        unsafe { libc::process_vm_readv(pid, local.as_ptr(), k as _, remote.as_ptr(), k as _, 0) };
    let mut got = if r < 0 { 0 } else { r as usize };
    let mut mask = 0;
    for (l, &i) in local.iter().zip(&which).take(k) {
        if got < l.iov_len {
            break;
        }
        got -= l.iov_len;
        mask |= 1 << i;
    }
    mask
}

/// Per-thread cache of `PyThreadState` addresses, keyed by `pthread_self()`; validated
/// on every use (the thread state's `thread_id` must still be this thread).
const TCACHE: usize = 64;
static TKEYS: [AtomicU64; TCACHE] = [const { AtomicU64::new(0) }; TCACHE];
static TVALS: [AtomicU64; TCACHE] = [const { AtomicU64::new(0) }; TCACHE];

/// The innermost frame of the current thread (0 when it runs no Python code) and its C
/// frame (3.11, 3.12; else 0), None when the thread has no Python thread state. `win`
/// holds the thread state's fields.
fn current_frame(st: &State, pid: libc::pid_t, win: &mut [u8]) -> Option<(u64, u64)> {
    let l = &st.layout;
    let me = thread_words::pthread_self();
    let slot = ((me >> 12) ^ (me >> 21)) as usize % TCACHE;
    let lo = l.tstate_frame.min(l.tstate_thread_id);
    let hi = l.tstate_frame.max(l.tstate_thread_id).checked_add(8)?;
    let win = win.get_mut(..(hi - lo) as usize)?;
    // A cached state may belong to a thread that ended (pthread ids are reused), and its
    // memory may be gone: the checked read and the thread_id test catch both.
    let mut read_state = |t: u64| -> Option<u64> {
        if !read_mem(pid, t.wrapping_add(lo), win) {
            return None;
        }
        (word(win, l.tstate_thread_id - lo) == me).then(|| word(win, l.tstate_frame - lo))
    };
    // 3.12+: the state attached to this thread, from CPython's thread-local (one plain
    // load of our own TLS slot, tstate_tls.rs); its fields through the checked read.
    let mut found = None;
    if let Some(t) = tstate_tls::current() {
        found = read_state(t);
    }
    if found.is_none() && TKEYS[slot].load(Ordering::Acquire) == me {
        found = read_state(TVALS[slot].load(Ordering::Acquire));
    }
    if found.is_none() {
        let t = find_tstate(st, pid);
        if t == 0 {
            return None;
        }
        found = read_state(t);
        if found.is_some() {
            TVALS[slot].store(t, Ordering::Release);
            TKEYS[slot].store(me, Ordering::Release);
        }
    }
    let frame = found?;
    if l.cframe_current_frame != NONE && frame != 0 {
        let cframe = frame;
        return Some((
            read_u64(pid, add(cframe, l.cframe_current_frame)).unwrap_or(0),
            cframe,
        ));
    }
    Some((frame, 0))
}

/// The caller's stack when this thread's C frame was published before its
/// `current_frame` was set (3.11, 3.12 `_PyEval_EvalFrameDefault` prologue): the
/// previous C frame's `current_frame`. The frame being entered has not run yet.
fn caller_frame(st: &State, pid: libc::pid_t, cframe: u64) -> Option<u64> {
    let l = &st.layout;
    if cframe == 0 || l.cframe_previous == NONE {
        return None;
    }
    let prev = read_u64(pid, add(cframe, l.cframe_previous)).filter(|&p| p != 0)?;
    read_u64(pid, add(prev, l.cframe_current_frame)).filter(|&f| f != 0)
}

/// Walks the frame chain from `frame` into `s.frames`, one `process_vm_readv` per frame:
/// each reads this frame, the previous frame's code-object fields, the name's cached
/// hash of the code object before (its token; not when the seen-table knows it:
/// `code_identity::known_token`) and, before 3.11, the type of an earlier
/// frame's first argument (for `Class.method`). A code object met for the first time is
/// named in the ring (code_identity.rs). Returns the frame count and `CAP_*` flags.
fn walk_frames(
    st: &State,
    pid: libc::pid_t,
    mut frame: u64,
    s: &mut scratch::Scratch,
) -> (usize, u32) {
    let l = &st.layout;
    // Before 3.11 the code's argcount says whether the first local is an argument.
    let with_args = l.minor < 11 && l.code_argcount != NONE && l.frame_localsplus != NONE;
    // Code fields read: name, filename, qualname, line table, first line (the token and
    // the identity record), and argcount when `with_args`.
    // And the code object's type when `PyCode_Type` is known: 3.11 and 3.12 publish a
    // new C frame (`tstate->cframe`) before setting its `current_frame`, so a signal
    // in between follows a stale stack slot to memory that is no longer a frame (a
    // freed code object: unnamed frames). Such a frame and the rest of the chain are
    // dropped (`CAP_READ_FAILED`: the sample's Python stack is explained as a failed read).
    let check_type = st.code_type != 0 && l.object_type != NONE;
    let Some((c_lo, c_len)) = code_identity::window(l, with_args, check_type) else {
        return (0, CAP_READ_FAILED);
    };
    let window = st.frame_window;
    let scratch::Scratch {
        frames: out,
        frame: fb,
        code: cb,
        ..
    } = s;
    if c_len > cb.len() || window > fb.len() {
        return (0, CAP_READ_FAILED);
    }
    let mut id_budget = code_identity::BUDGET_BYTES;
    let mut tb = [0u8; 8];
    let mut hb = [0u8; 8];
    let mut n = 0usize;
    let mut flags = 0;
    // Pending reads: the code object and first local of frame n-1, the name hash the
    // token of frame `.0` (code object `.1`, fields `.2`) wants, and the object whose type
    // frame `.0` wants.
    let mut pend_code = 0u64;
    let mut pend_local = 0u64;
    let mut pend_hash: Option<(usize, u64, code_identity::CodeFields)> = None;
    let mut pend_type: Option<(usize, u64)> = None;
    loop {
        let more = frame != 0 && n < MAX_FRAMES;
        if frame != 0 && n == MAX_FRAMES {
            flags |= CAP_TRUNCATED;
        }
        // Order: what earlier frames want first (their success must not depend on this
        // frame's: the kernel stops at the first failing region), then this frame.
        let hash_at = |name: u64| {
            if name == 0 {
                NONE
            } else {
                name.wrapping_add(unicode_hash_offset(l.unicode_length))
            }
        };
        let mut reqs: [(u64, &mut [u8]); 4] = [
            (
                pend_hash
                    .as_ref()
                    .map_or(NONE, |(_, _, cf)| hash_at(cf.name)),
                &mut hb[..],
            ),
            (
                pend_type.map_or(NONE, |(_, obj)| add(obj, l.object_type)),
                &mut tb[..],
            ),
            (
                if pend_code != 0 {
                    pend_code.wrapping_add(c_lo)
                } else {
                    NONE
                },
                &mut cb[..c_len],
            ),
            (if more { frame } else { NONE }, &mut fb[..window]),
        ];
        if reqs.iter().all(|r| r.0 == NONE) {
            break;
        }
        let mask = read_multi(pid, &mut reqs);
        let done = |i: usize| mask & (1 << i) != 0;
        if let Some((i, code, cf)) = pend_hash.take() {
            // The batch stopped before the hash (a bad pointer later in the chain): alone.
            let hash = if done(0) {
                u64::from_le_bytes(hb)
            } else if hash_at(cf.name) != NONE {
                read_u64(pid, hash_at(cf.name)).unwrap_or(0)
            } else {
                0
            };
            let token = code_token(cf.name, cf.file, cf.firstlineno, hash);
            if let Some(f) = out.get_mut(i) {
                f.token = token;
            }
            code_identity::note(l, pid as u32, code, token, &cf, &mut id_budget);
        }
        if let Some((i, _)) = pend_type.take()
            && done(1)
            && let Some(f) = out.get_mut(i)
        {
            f.self_type = u64::from_le_bytes(tb);
        }
        if pend_code != 0 {
            // An earlier request failing stops the batch: then the code object alone.
            let read = done(2) || read_mem(pid, pend_code.wrapping_add(c_lo), &mut cb[..c_len]);
            let w = &cb[..c_len];
            if !read || (check_type && word(w, l.object_type - c_lo) != st.code_type) {
                // Unreadable or not a code object: this frame and what follows it are
                // not a stack (kept: the frames before it).
                n = n.saturating_sub(1);
                flags |= CAP_READ_FAILED;
                frame = 0;
                pend_code = 0;
                pend_local = 0;
                continue;
            }
            let cf = code_identity::fields(l, w, c_lo);
            let i = n.wrapping_sub(1);
            // Named before with these fields: its token without reading the name.
            match code_identity::known_token(pid as u32, pend_code, &cf) {
                Some(token) => {
                    if let Some(f) = out.get_mut(i) {
                        f.token = token;
                    }
                }
                None => pend_hash = Some((i, pend_code, cf)),
            }
            // The first local is `self` only when it is an argument: the frame then
            // holds a reference to it from its creation on (or NULL once deleted).
            // In a frame without arguments that slot is a local not yet set or a
            // value-stack slot, possibly stale: never followed.
            if with_args && pend_local != 0 && int32(w, l.code_argcount - c_lo) > 0 {
                pend_type = Some((n.wrapping_sub(1), pend_local));
            }
        }
        pend_code = 0;
        pend_local = 0;
        if !more {
            // More rounds read what is still pending, then the loop ends.
            frame = 0;
            continue;
        }
        // An earlier request of the batch failing stops the batch: read the frame alone.
        if !done(3) && !read_mem(pid, frame, &mut fb[..window]) {
            flags |= CAP_READ_FAILED;
            frame = 0;
            continue;
        }
        let w = &fb[..window];
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
            let lasti = int32(w, l.frame_lasti);
            if lasti < 0 {
                f.flags |= FR_NO_OFFSET;
            } else {
                f.offset = if l.minor >= 10 {
                    (lasti as u32).wrapping_mul(2)
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
        if with_args {
            pend_local = word(w, l.frame_localsplus);
        }
        if f.flags & FR_SHIM == 0 {
            pend_code = code;
        }
        if let Some(slot) = out.get_mut(n) {
            *slot = f;
        }
        n += 1;
        if prev == frame {
            flags |= CAP_READ_FAILED;
            frame = 0;
        } else {
            frame = prev;
        }
    }
    (n.min(MAX_FRAMES), flags)
}

extern "C" fn on_sigtrap(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // errno is thread-local; saved and restored around the handler.
    let errno_at = thread_words::errno_location();
    // SAFETY: this thread's errno slot (thread_words.rs).
    let errno = unsafe { *errno_at };
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
    match STATE.get() {
        Some(st) if code == libc::TRAP_PERF && data == st.cookie => {
            // One clock read: the capture's time stamp, and the start of the stats' span.
            let t0 = now_ns();
            let reads = safe_load::CaptureGuard::enter(ctx, t0);
            let written = capture(st, pflags & 1 != 0, t0);
            drop(reads);
            if stats::on() {
                stats::handler_done(t0, written);
            }
        }
        _ => disposition::chain(sig, info, ctx, stop_handling),
    }
    // SAFETY: see above; this thread's errno slot.
    unsafe { *errno_at = errno };
}

/// Before a real trap (a breakpoint without a debugger) gets the default action, as
/// without the agent: our handler goes, so nothing of ours runs again.
fn stop_handling(_sig: c_int) {
    disposition::set_ours(libc::SIGTRAP, false);
    // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask.
    unsafe {
        let dfl: libc::sigaction = std::mem::zeroed();
        real_sigaction(libc::SIGTRAP, &dfl, std::ptr::null_mut());
    }
}

/// Captures this thread's Python stack at `now` (CLOCK_MONOTONIC ns) into the ring;
/// whether the record was written.
fn capture(st: &State, late: bool, now: u64) -> bool {
    let Some(ring) = RING.get() else {
        return false;
    };
    // Cached: no system call in the common path (self_ids.rs says when it asks).
    let (pid, tid) = self_ids::current();
    let pid = pid as libc::pid_t;
    let mut n = 0usize;
    let mut flags = if late { CAP_ASYNC } else { 0 };
    // The frames and read buffers live in a preallocated slot, not on the stack.
    let mut claim = scratch::Claim::get(tid);
    match claim.as_mut().map(|c| c.buf()) {
        None => flags |= CAP_READ_FAILED,
        Some(s) => match current_frame(st, pid, &mut s.tstate) {
            None => flags |= CAP_NO_TSTATE,
            Some((frame, cframe)) => {
                let (mut count, mut f) = walk_frames(st, pid, frame, s);
                // Nothing but a shim frame before the failure (3.12 reads a stale entry
                // frame there): the C frame was not set yet.
                let nothing = s.frames[..count].iter().all(|f| f.flags & FR_SHIM != 0);
                if nothing
                    && f & CAP_READ_FAILED != 0
                    && let Some(caller) = caller_frame(st, pid, cframe)
                {
                    (count, f) = walk_frames(st, pid, caller, s);
                }
                n = count;
                flags |= f;
            }
        },
    }
    let used: &[CapFrame] = match claim.as_mut() {
        Some(c) => c.buf().frames.get(..n).unwrap_or(&[]),
        None => &[],
    };
    let frame_bytes = slice_as_bytes(used);
    let len = size_of::<RecordHeader>() + size_of::<Capture>() + frame_bytes.len();
    let h = RecordHeader {
        len: len as u32,
        kind: REC_CAPTURE,
    };
    let c = Capture {
        pid: pid as u32,
        tid,
        time_ns: now,
        flags,
        nframes: used.len() as u32,
    };
    ring.write(&[h.as_bytes(), c.as_bytes(), frame_bytes])
}
