//! The agent's own sampling events: the attr from the collector with the agent's bits,
//! one event per online CPU, their rings mapped and enabled here; the capture ring mapped
//! from the collector's memfd.

use super::*;

pub(crate) fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || s.len() < 128 * 2 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Maps the collector's capture ring from its memfd (closed here either way).
pub(crate) fn map_ring(fd: c_int) -> Option<ring::Ring> {
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

/// Up to 4 KiB of a file, read with system calls: libc's `read` is interposed by
/// waits.rs, and the agent's own reads are not the program's waits.
fn read_small_file(path: &std::ffi::CStr) -> String {
    let mut buf = [0u8; 4096];
    let mut len = 0;
    // SAFETY: open(2) of a NUL-terminated path; read(2) into the unused tail of a live
    // buffer; close(2) of the fd just opened.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return String::new();
        }
        while len < buf.len() {
            let r = libc::syscall(libc::SYS_read, fd, buf[len..].as_mut_ptr(), buf.len() - len);
            if r <= 0 {
                break;
            }
            len += r as usize;
        }
        libc::close(fd);
    }
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

pub(crate) fn online_cpus() -> Vec<u32> {
    let s = read_small_file(c"/sys/devices/system/cpu/online");
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
pub(crate) const BIT_DISABLED: u64 = 1 << 0;
pub(crate) const BIT_INHERIT: u64 = 1 << 1;
pub(crate) const BIT_EXCLUDE_KERNEL: u64 = 1 << 5;
pub(crate) const BIT_MMAP: u64 = 1 << 8;
pub(crate) const BIT_COMM: u64 = 1 << 9;
pub(crate) const BIT_ENABLE_ON_EXEC: u64 = 1 << 12;
pub(crate) const BIT_TASK: u64 = 1 << 13;
pub(crate) const BIT_MMAP_DATA: u64 = 1 << 17;
pub(crate) const BIT_MMAP2: u64 = 1 << 23;
pub(crate) const BIT_COMM_EXEC: u64 = 1 << 24;
pub(crate) const BIT_CONTEXT_SWITCH: u64 = 1 << 26;
pub(crate) const BITS_NS_TO_TEXT_POKE: u64 = 0x3f << 28; // namespaces, ksymbol, bpf, aux, cgroup, text_poke
pub(crate) const BIT_REMOVE_ON_EXEC: u64 = 1 << 36;
pub(crate) const BIT_SIGTRAP: u64 = 1 << 37;

pub(crate) fn open_events(
    attr: &[u8],
    python: bool,
    only_sampler: bool,
    cookie: u64,
) -> Vec<(u32, c_int)> {
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
pub(crate) fn major_fault_attr(attr: &[u8]) -> Option<Vec<u8>> {
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
pub(crate) fn start_sampling(fds: &[(u32, c_int)], pages: u32) {
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
pub(crate) const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;

/// One event per online CPU on this process, with the attr bytes given.
pub(crate) fn open_on_cpus(a: &[u8]) -> Vec<(u32, c_int)> {
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
