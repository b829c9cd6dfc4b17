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
//! Files, one job each: `interposition.rs` (our `sigaction`/`signal`; the real function
//! behind every interposer, by `dlsym(RTLD_NEXT)`), `link.rs` (the collector's socket:
//! hello, config, event fds, goodbye), `sampling.rs` (the sampling events' attrs, their rings mapped and enabled,
//! the capture ring mapped), `reads.rs` (checked reads of interpreter memory), `walk.rs`
//! (the thread state, the innermost frame, the frame chain), `handler.rs` (the SIGTRAP
//! handler and one capture); this file: the load-time init and the shared statics.
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
mod mpi_waits;
mod safe_load;
mod scratch;
mod self_ids;
mod spawn;
mod stats;
mod thread_words;
mod wait_samples;
mod waits;

mod handler;
mod interposition;
mod link;
mod reads;
mod sampling;
mod walk;

use handler::*;
use interposition::*;
use link::*;
use reads::*;
use sampling::*;
use walk::*;

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use hwprof_wire as wire;
use hwprof_wire::frames::{self, CodeFields, Decoder, Top};
use hwprof_wire::ring;
use wire::*;

/// Set once at load, read by the handler.
struct State {
    /// The interpreter's layout and `PyCode_Type`: the frame decoder.
    dec: Decoder,
    runtime: u64,
    cookie: u64,
}

static STATE: OnceLock<State> = OnceLock::new();
/// The capture ring (shared with the collector), once mapped.
static RING: OnceLock<ring::Ring> = OnceLock::new();
static SOCK_FD: AtomicI32 = AtomicI32::new(-1);
static SOCK_PID: AtomicU32 = AtomicU32::new(0);

#[inline]
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
    // Without Python capture, the agent copies each marked wait's sample itself
    // (wait_samples.rs); a Python process keeps the breakpoint, whose SIGTRAP captures
    // the Python stack.
    let self_copied = waits && !python && wait_samples::enable(sock, &attr);
    if waits && !self_copied {
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

fn start_python(cfg: &Config, pid: u32, given_fd: c_int) -> bool {
    let l = cfg.layout;
    // A layout the shared decoder cannot walk (a field missing, a window over the
    // scratch buffers' size): no capture.
    let Some(dec) = Decoder::new(l, cfg.code_type) else {
        if given_fd >= 0 {
            close(given_fd);
        }
        return false;
    };
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
        dec,
        runtime: cfg.runtime,
        cookie: cfg.cookie,
    };
    disposition::store(libc::SIGTRAP, &prev);
    disposition::set_owner();
    if STATE.set(state).is_err() || RING.set(ring).is_err() {
        return false;
    }
    tstate_tls::init(&l);
    self_ids::init();
    stats::init();
    thread_words::init();
    disposition::set_ours(libc::SIGTRAP, true);
    // Without them, reads go through process_vm_readv.
    safe_load::install();
    true
}
