//! The kernel's perf ABI: opening events, their ioctls and ring buffers.
//! All of collect's `unsafe` lives here.
//!
//! The ring reader is our own rather than perf-event2's `Sampler` because rings also
//! come from file descriptors that other processes opened and sent us (the Python
//! agent), and perf-event2 builds samplers only from events it opened itself.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use perf_event_open_sys::bindings as b;
pub use perf_event_open_sys::bindings::perf_event_attr as PerfEventAttr;

/// Size we give the kernel: PERF_ATTR_SIZE_VER7 (through `sig_data`), which perf 6.1
/// reads without complaint.
pub const ATTR_SIZE: u32 = 128;

/// x86-64 user registers perf samples for DWARF unwinding (PERF_REGS_MASK: all but
/// the segment registers), in the kernel's order.
pub const X86_64_REGS_MASK: u64 = 0xff0fff;

/// A zeroed attr with the size set.
pub fn new_attr() -> PerfEventAttr {
    // SAFETY: perf_event_attr is plain old data; all-zero is its documented default.
    let mut a: PerfEventAttr = unsafe { std::mem::zeroed() };
    a.size = ATTR_SIZE;
    a
}

/// The attr's bytes as perf.data stores them (`ATTR_SIZE` bytes).
pub fn attr_bytes(attr: &PerfEventAttr) -> Vec<u8> {
    let len = (attr.size as usize).min(std::mem::size_of::<PerfEventAttr>());
    // SAFETY: the struct is repr(C) plain data at least `len` bytes long.
    let bytes = unsafe { std::slice::from_raw_parts(attr as *const _ as *const u8, len) };
    bytes.to_vec()
}

/// `perf_event_open(attr, pid, cpu, group_fd, FD_CLOEXEC)`.
pub fn perf_event_open(
    attr: &PerfEventAttr,
    pid: i32,
    cpu: i32,
    group_fd: Option<&OwnedFd>,
) -> io::Result<OwnedFd> {
    let mut a = *attr;
    let group = group_fd.map(|f| f.as_raw_fd()).unwrap_or(-1);
    // SAFETY: `a` is a valid attr whose size field does not exceed the struct.
    let fd = unsafe {
        perf_event_open_sys::perf_event_open(
            &mut a,
            pid,
            cpu,
            group,
            b::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The kernel's id of an event (what PERF_SAMPLE_IDENTIFIER carries).
pub fn event_id(fd: &OwnedFd) -> io::Result<u64> {
    let mut id = 0u64;
    // SAFETY: ID writes one u64 through the pointer.
    check(unsafe { perf_event_open_sys::ioctls::ID(fd.as_raw_fd(), &mut id) })?;
    Ok(id)
}

/// Send `fd`'s records into `target`'s ring (same CPU).
pub fn set_output(fd: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    // SAFETY: both are perf event fds we own.
    check(unsafe { perf_event_open_sys::ioctls::SET_OUTPUT(fd.as_raw_fd(), target.as_raw_fd()) })
}

/// Enable an event (and its inherited children).
pub fn enable(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: plain ioctl on an fd we own.
    check(unsafe { perf_event_open_sys::ioctls::ENABLE(fd.as_raw_fd(), 0) })
}

/// Disable an event (and its inherited children).
pub fn disable(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: plain ioctl on an fd we own.
    check(unsafe { perf_event_open_sys::ioctls::DISABLE(fd.as_raw_fd(), 0) })
}

/// A perf ring buffer mapped from an event fd.
pub struct RingBuffer {
    map: memmap2::MmapRaw,
    data_offset: usize,
    data_size: usize,
    fd: OwnedFd,
    /// Corrupt records skipped, and bytes lost with them.
    corrupt: (u64, u64),
}

// Offsets in perf_event_mmap_page.
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;
const DATA_OFFSET: usize = 1040;
const DATA_SIZE: usize = 1048;

impl RingBuffer {
    /// Map `data_pages` (a power of two) pages of ring after the control page.
    pub fn map(fd: OwnedFd, data_pages: usize) -> io::Result<RingBuffer> {
        let page = crate::util::page_size() as usize;
        let len = page * (1 + data_pages);
        let map = memmap2::MmapOptions::new().len(len).map_raw(&fd)?;
        let ptr = map.as_ptr();
        // SAFETY: the control page is mapped and these u64 fields are aligned.
        let (off, size) = unsafe {
            (
                std::ptr::read_volatile(ptr.add(DATA_OFFSET) as *const u64) as usize,
                std::ptr::read_volatile(ptr.add(DATA_SIZE) as *const u64) as usize,
            )
        };
        let (data_offset, data_size) = if size == 0 {
            (page, page * data_pages)
        } else {
            (off, size)
        };
        if data_offset + data_size > len || !data_size.is_power_of_two() {
            return Err(io::Error::other(
                "perf ring buffer has an unexpected layout",
            ));
        }
        Ok(RingBuffer {
            map,
            data_offset,
            data_size,
            fd,
            corrupt: (0, 0),
        })
    }

    /// The event fd behind the ring.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    fn head_tail(&self) -> (&AtomicU64, &AtomicU64) {
        let p = self.map.as_ptr();
        // SAFETY: data_head/data_tail are aligned u64s in the mapped control page,
        // shared with the kernel, hence accessed atomically.
        unsafe {
            (
                &*(p.add(DATA_HEAD) as *const AtomicU64),
                &*(p.add(DATA_TAIL) as *const AtomicU64),
            )
        }
    }

    /// Call `f(type, misc, body_parts)` for every record now in the ring, then release
    /// the space. Returns the number of records. A corrupt record (see [`drain_data`])
    /// is skipped with everything up to the head, and counted in [`RingBuffer::corrupt`].
    pub fn drain(&mut self, f: impl FnMut(u32, u16, &[&[u8]])) -> usize {
        let (head_a, tail_a) = self.head_tail();
        let head = head_a.load(Ordering::Acquire);
        let tail = tail_a.load(Ordering::Relaxed);
        let base = self.map.as_ptr();
        // SAFETY: the data area [data_offset, data_offset + data_size) is mapped; the
        // kernel does not write between tail and head until we publish the new tail.
        let data =
            unsafe { std::slice::from_raw_parts(base.add(self.data_offset), self.data_size) };
        let d = drain_data(data, head, tail, f);
        tail_a.store(d.tail, Ordering::Release);
        if let Some(bytes) = d.skipped {
            self.corrupt.0 += 1;
            self.corrupt.1 += bytes;
        }
        d.records
    }

    /// Corrupt records skipped so far, and the bytes skipped with them.
    pub fn corrupt(&self) -> (u64, u64) {
        self.corrupt
    }
}

/// What [`drain_data`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Drained {
    /// The new tail.
    pub tail: u64,
    /// Records passed on.
    pub records: usize,
    /// Bytes skipped at a corrupt record (up to the head), if one was met.
    pub skipped: Option<u64>,
}

/// Walks the records of a perf ring's data area between `tail` and `head`. A record
/// whose size is below its own 8-byte header, or that ends past the head, cannot be
/// one the kernel wrote (it publishes the head after whole records): the ring's memory
/// was overwritten (an agent's ring is mapped writable in the target too). Waiting there
/// would stop the ring for good, so everything up to the head is skipped and reported.
pub fn drain_data(
    data: &[u8],
    head: u64,
    mut tail: u64,
    mut f: impl FnMut(u32, u16, &[&[u8]]),
) -> Drained {
    let size_of_data = data.len();
    let mut n = 0;
    if data.is_empty() || !size_of_data.is_power_of_two() {
        return Drained {
            tail: head,
            records: 0,
            skipped: Some(head.wrapping_sub(tail)),
        };
    }
    if head.wrapping_sub(tail) > size_of_data as u64 {
        // More than the ring holds: the positions themselves are garbage.
        return Drained {
            tail: head,
            records: 0,
            skipped: Some(head.wrapping_sub(tail)),
        };
    }
    let mask = size_of_data as u64 - 1;
    while tail + 8 <= head {
        let start = (tail & mask) as usize;
        let mut hdr = [0u8; 8];
        copy_wrapped(data, start, &mut hdr);
        let ty = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let misc = u16::from_le_bytes([hdr[4], hdr[5]]);
        let size = u16::from_le_bytes([hdr[6], hdr[7]]) as u64;
        if size < 8 || tail + size > head {
            return Drained {
                tail: head,
                records: n,
                skipped: Some(head - tail),
            };
        }
        let body_start = (start + 8) % size_of_data;
        let body_len = size as usize - 8;
        if body_start + body_len <= size_of_data {
            f(ty, misc, &[&data[body_start..body_start + body_len]]);
        } else {
            let first = size_of_data - body_start;
            f(ty, misc, &[&data[body_start..], &data[..body_len - first]]);
        }
        tail += size;
        n += 1;
    }
    Drained {
        tail,
        records: n,
        skipped: None,
    }
}

fn copy_wrapped(data: &[u8], start: usize, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = data[(start + i) % data.len()];
    }
}

/// Raises the soft open-files limit (RLIMIT_NOFILE) to the hard one; returns the
/// (soft, hard) limits now in force.
pub fn raise_nofile_limit() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (u64::MAX, u64::MAX);
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    (lim.rlim_cur, lim.rlim_max)
}

/// Current `kernel.perf_event_paranoid` (a sysctl file of one number; procfs has no
/// reader for it).
pub fn paranoid_level() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether this process may sample kernel code: root, CAP_PERFMON/CAP_SYS_ADMIN, or
/// paranoid < 2.
pub fn may_sample_kernel() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    use crate::util::proc::has_own_capability;
    if has_own_capability(38) || has_own_capability(21) {
        return true; // CAP_PERFMON, CAP_SYS_ADMIN
    }
    paranoid_level().is_some_and(|p| p < 2)
}

/// A forked child waiting on a pipe before it execs: events can be opened on its pid
/// first, so they cover the program from its first instruction (perf's way).
pub struct StoppedChild {
    /// The child's pid.
    pub pid: i32,
    go: Option<OwnedFd>,
    exec_err: OwnedFd,
}

/// Fork a child that will `execve(path, argv, envp)` once released.
pub fn spawn_stopped(
    path: &std::ffi::CStr,
    argv: &[std::ffi::CString],
    envp: &[std::ffi::CString],
) -> io::Result<StoppedChild> {
    let (go_r, go_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: after fork the child only calls async-signal-safe functions (read,
    // execve, write, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: child side, see above.
        unsafe {
            // Our copy of the write end must go, or the read below never sees EOF
            // when the parent gives up.
            libc::close(go_w.as_raw_fd());
            let mut byte = 0u8;
            let n = libc::read(go_r.as_raw_fd(), &mut byte as *mut u8 as *mut _, 1);
            if n != 1 {
                libc::_exit(127); // the parent gave up before releasing us
            }
            libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr());
            let errno = *libc::__errno_location();
            libc::write(err_w.as_raw_fd(), &errno as *const i32 as *const _, 4);
            libc::_exit(127);
        }
    }
    drop(go_r);
    drop(err_w);
    Ok(StoppedChild {
        pid,
        go: Some(go_w),
        exec_err: err_r,
    })
}

impl StoppedChild {
    /// Let the child exec; returns the exec error if exec failed.
    pub fn release(&mut self) -> io::Result<()> {
        if let Some(go) = self.go.take() {
            // SAFETY: writing one byte from a valid buffer to a pipe we own.
            let n = unsafe { libc::write(go.as_raw_fd(), b"g".as_ptr() as *const _, 1) };
            if n != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        let mut errno = 0i32;
        // SAFETY: reading at most 4 bytes into a valid i32.
        let n = unsafe {
            libc::read(
                self.exec_err.as_raw_fd(),
                &mut errno as *mut i32 as *mut _,
                4,
            )
        };
        if n == 4 {
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(())
    }
}

impl Drop for StoppedChild {
    fn drop(&mut self) {
        // Never released: closing the pipe makes the child exit(127); reap it.
        if self.go.take().is_some() {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
        }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    Ok((r, w))
}

/// Whether this kernel has `sigtrap` and `remove_on_exec` events (Linux 5.13+), which
/// the Python agent samples with: probed with a disabled dummy event on ourselves.
pub fn kernel_has_sigtrap_events() -> bool {
    use perf_event_open_sys::bindings as b;
    let mut a = new_attr();
    a.type_ = b::PERF_TYPE_SOFTWARE;
    a.config = b::PERF_COUNT_SW_DUMMY as u64;
    a.set_disabled(1);
    a.set_exclude_kernel(1);
    a.set_exclude_hv(1);
    a.set_remove_on_exec(1);
    a.set_sigtrap(1);
    perf_event_open(&a, 0, -1, None).is_ok()
}

/// A pidfd for `pid` (Linux 5.3+), readable once the process exits; None where the
/// kernel lacks it (the caller then polls with a timeout only).
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// Wait until any fd is readable or `timeout_ms` passes; for each fd, whether it hung up.
pub fn poll_readable(fds: &[&OwnedFd], timeout_ms: i32) -> Vec<bool> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of pollfd of the given length.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    p.iter()
        .map(|x| r > 0 && x.revents & (libc::POLLHUP | libc::POLLERR) != 0)
        .collect()
}

impl StoppedChild {
    /// The child has been released and will be reaped by `try_wait`/`wait_blocking`.
    pub fn mark_released(&mut self) {
        self.go = None;
    }
}

/// Reap `pid` if it exited: Some(hwprof exit code) — its status, or 128+N when killed
/// by signal N.
pub fn try_wait(pid: i32) -> Option<i32> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(128 + sig as i32),
        Ok(_) => None,
        Err(nix::errno::Errno::ECHILD) => Some(0),
        Err(_) => None,
    }
}

/// [`try_wait`] that also returns the child's peak RSS in bytes (`ru_maxrss` of
/// wait4: the kernel's high-water mark, what GNU time prints).
pub fn try_wait_maxrss(pid: i32) -> Option<(i32, Option<u64>)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes only into `status` and `ru`, which we own.
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
    if r == pid {
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            return None; // stopped or continued: still running
        };
        let maxrss = u64::try_from(ru.ru_maxrss).ok().map(|kib| kib * 1024);
        return Some((code, maxrss));
    }
    if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
        return Some((0, None));
    }
    None
}

/// Wait for `pid` to exit; its hwprof exit code.
pub fn wait_blocking(pid: i32) -> i32 {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 0,
        }
    }
}

/// Send a signal, ignoring a vanished target.
pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

/// Local calendar time of a Unix time: (year, month, day, hour, minute, second).
pub fn local_time(t: i64) -> (i32, u32, u32, u32, u32, u32) {
    // SAFETY: localtime_r writes only into the tm we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let tt = t as libc::time_t;
    // SAFETY: valid pointers to a time_t and a tm.
    unsafe { libc::localtime_r(&tt, &mut tm) };
    (
        tm.tm_year + 1900,
        (tm.tm_mon + 1) as u32,
        tm.tm_mday as u32,
        tm.tm_hour as u32,
        tm.tm_min as u32,
        tm.tm_sec as u32,
    )
}

static SIGNAL_COUNT: AtomicU64 = AtomicU64::new(0);
static LAST_SIGNAL: AtomicU64 = AtomicU64::new(0);
static LAST_FROM_TERMINAL: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to SA_SIGINFO handlers.
    let code = if info.is_null() {
        0
    } else {
        unsafe { (*info).si_code }
    };
    LAST_SIGNAL.store(sig as u64, Ordering::SeqCst);
    LAST_FROM_TERMINAL.store(u64::from(code == libc::SI_KERNEL), Ordering::SeqCst);
    SIGNAL_COUNT.fetch_add(1, Ordering::SeqCst);
}

/// SIGINT/SIGTERM/SIGHUP as seen by the drain loop. A terminal's Ctrl-C reaches the
/// whole foreground group (target included) with si_code SI_KERNEL; a `kill` aimed at
/// hwprof alone has SI_USER, and is forwarded.
pub struct StopSignals(());

impl StopSignals {
    /// Signals received so far.
    pub fn count(&self) -> u64 {
        SIGNAL_COUNT.load(Ordering::SeqCst)
    }
    /// The last signal number.
    pub fn last_signal(&self) -> i32 {
        LAST_SIGNAL.load(Ordering::SeqCst) as i32
    }
    /// Whether the last signal came from the terminal (so the target got it too).
    pub fn last_from_terminal(&self) -> bool {
        LAST_FROM_TERMINAL.load(Ordering::SeqCst) == 1
    }
}

/// Install the handlers (once per process). A signal hwprof was started with ignored
/// stays ignored, as the target (forked before, so it inherits that) ignores it: a
/// shell starts a script's background job with SIGINT and SIGQUIT ignored, `nohup`
/// ignores SIGHUP. Catching it would have hwprof wait for a target that never heeds
/// it ("waiting for the target to exit"), where the bare program runs on.
pub fn install_stop_signals() -> StopSignals {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let act = SigAction::new(
        SigHandler::SigAction(on_stop_signal),
        SaFlags::SA_RESTART | SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only touches atomics (async-signal-safe); an ignored
        // signal is put back as it was.
        if let Ok(old) = unsafe { sigaction(sig, &act) }
            && matches!(old.handler(), SigHandler::SigIgn)
        {
            let _ = unsafe { sigaction(sig, &old) };
        }
    }
    StopSignals(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ty: u32, size: u16) -> Vec<u8> {
        let mut v = ty.to_le_bytes().to_vec();
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&size.to_le_bytes());
        v.resize(size.max(8) as usize, 0xab);
        v
    }

    #[test]
    fn corrupt_ring_records_are_skipped_to_the_head_and_counted() {
        // Two good records, one claiming size 4, then a good one it hides.
        let mut data = Vec::new();
        data.extend(rec(9, 16));
        data.extend(rec(9, 24));
        data.extend(rec(9, 4));
        data.extend(rec(9, 16)); // rec(9, 4) took 8 bytes
        data.resize(128, 0);
        let head = 16 + 24 + 8 + 16;
        let mut seen = Vec::new();
        let d = drain_data(&data, head, 0, |ty, _, b| seen.push((ty, b[0].len())));
        assert_eq!(seen, vec![(9, 8), (9, 16)]);
        assert_eq!(d.records, 2);
        assert_eq!(d.tail, head);
        assert_eq!(d.skipped, Some(24));
        // The ring goes on after the skip.
        let mut data2 = data.clone();
        data2[64..80].copy_from_slice(&rec(3, 16));
        let d = drain_data(&data2, head + 16, head, |_, _, _| {});
        assert_eq!((d.records, d.tail, d.skipped), (1, head + 16, None));

        // A record past the head (size 64, only 16 published).
        let mut data = rec(9, 64);
        data.resize(128, 0);
        let d = drain_data(&data, 16, 0, |_, _, _| panic!("no record"));
        assert_eq!((d.records, d.tail, d.skipped), (0, 16, Some(16)));
        // A head more than the ring ahead of the tail.
        let d = drain_data(&data, 1 << 20, 0, |_, _, _| panic!("no record"));
        assert_eq!((d.tail, d.skipped), (1 << 20, Some(1 << 20)));
        // A record split across the end of the data.
        let mut data = vec![0u8; 64];
        let r = rec(7, 24);
        for (i, b) in r.iter().enumerate() {
            data[(56 + i) % 64] = *b;
        }
        let mut lens = Vec::new();
        let d = drain_data(&data, 56 + 24, 56, |_, _, b| {
            lens.push(b.iter().map(|p| p.len()).sum::<usize>())
        });
        assert_eq!((lens, d.skipped), (vec![16], None));
    }

    #[test]
    fn sigtrap_events_probe_follows_the_kernel_version() {
        // sigtrap and remove_on_exec came in Linux 5.13.
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut it = release
            .split(['.', '-'])
            .map(|x| x.parse::<u32>().unwrap_or(0));
        let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
        assert_eq!(
            kernel_has_sigtrap_events(),
            (major, minor) >= (5, 13),
            "kernel {release}"
        );
    }

    #[test]
    fn attr_bytes_have_the_declared_size() {
        let a = new_attr();
        assert_eq!(attr_bytes(&a).len(), ATTR_SIZE as usize);
    }
}
