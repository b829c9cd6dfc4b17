//! The socket to the collector (protocol: `hwprof-wire`): connect, send a struct with fds
//! attached, receive the `Config`; the event fds handed over; the goodbye at exit.

use super::*;

/// Hands event fds (cpu, fd) to the collector, which maps and drains their rings.
pub(crate) fn send_events(sock: c_int, pid: u32, fds: &[(u32, c_int)]) {
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

/// Writes `b` to fd 2 with the system call, not libc's `write`: waits.rs interposes
/// that, and the agent's own output timed as one of the program's waits was marked
/// when a loaded machine preempted it, its sample sent after the count just printed
/// (`locks_user::a_non_python_process_copies_its_wait_samples_without_a_breakpoint`
/// once found 8 samples against "7 samples copied"). Not `eprintln!` either: it panics
/// when stderr is closed.
fn write_stderr(mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: write(2) of a live slice; `syscall` passes it through untimed.
        let r = unsafe { libc::syscall(libc::SYS_write, 2, b.as_ptr(), b.len()) };
        match r {
            n if n > 0 => b = b.get(n as usize..).unwrap_or_default(),
            -1 if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ => return,
        }
    }
}

/// At exit of the process that connected: tell the collector and wait (at most 1 s) for
/// its ack, so code objects seen in the last moments are read while the process lives.
pub(crate) extern "C" fn agent_exit() {
    if std::env::var_os("HWPROF_AGENT_STATS").is_some() {
        let n = stats::CAPTURES.load(Ordering::Relaxed);
        let ns = stats::CAPTURE_NS.load(Ordering::Relaxed);
        let pid = std::process::id();
        let text = format!(
            "hwprof-agent: pid {pid}: {n} captures, {:.1} us each ({:.1} us in the handler); {} safe-load reads ({} faults recovered), {} reads through process_vm_readv, {} captures without a free scratch slot; {} code objects named, {} left to the collector; safe loads stopped {} times (a fault handler replaced by a raw rt_sigaction); handler median {:.2} us, p90 {:.2} us\n\
             hwprof-agent: pid {pid}: wait markers: {}, {} samples copied, {} dropped\n\
             hwprof-agent: pid {pid}: {} waits marked, {} marker breakpoints open\n",
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
            if wait_samples::on() {
                "self-copied"
            } else {
                "breakpoint"
            },
            wait_samples::SENT.load(Ordering::Relaxed),
            wait_samples::DROPPED.load(Ordering::Relaxed),
            crate::waits::MARKED.load(Ordering::Relaxed),
            crate::waits::BREAKPOINTS.load(Ordering::Relaxed),
        );
        write_stderr(text.as_bytes());
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

pub(crate) fn close(fd: c_int) {
    // SAFETY: closing an fd this module opened.
    unsafe { libc::close(fd) };
}

pub(crate) fn set_timeout(sock: c_int, secs: i64) {
    let tv = libc::timeval {
        tv_sec: secs,
        tv_usec: 0,
    };
    set_socket_option(sock, libc::SO_RCVTIMEO, &tv);
}

/// A `SOL_SOCKET` option of our own socket; a failure leaves the default.
pub(crate) fn set_socket_option<T>(sock: c_int, name: c_int, value: &T) {
    // SAFETY: the option's value is a live `T` of the size passed.
    unsafe {
        libc::setsockopt(
            sock,
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            size_of::<T>() as u32,
        )
    };
}

pub(crate) fn connect(path: &str) -> Option<c_int> {
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
    // SAFETY: addr is a valid sockaddr_un of the given size. The system call, not
    // libc's connect, which waits.rs interposes (locks mode is on by now): our own
    // connect is not one of the program's waits.
    let r = unsafe {
        libc::syscall(
            libc::SYS_connect,
            fd,
            &raw const addr,
            size_of::<libc::sockaddr_un>(),
        )
    };
    if r != 0 {
        close(fd);
        return None;
    }
    set_timeout(fd, 2);
    Some(fd)
}

pub(crate) fn send_struct<T: Plain>(sock: c_int, v: &T, fds: &[c_int]) -> bool {
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

pub(crate) fn recv_config(sock: c_int) -> Option<(Config, c_int)> {
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
    // SAFETY: msg points to live local buffers of the stated sizes. The system call,
    // not libc's recvmsg, which waits.rs interposes: waiting for the collector is not
    // one of the program's waits.
    let r = unsafe {
        libc::syscall(
            libc::SYS_recvmsg,
            sock,
            &raw mut msg,
            libc::MSG_CMSG_CLOEXEC,
        )
    } as isize;
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
