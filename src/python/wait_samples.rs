//! The agents' own wait samples (locks mode, processes without Python capture): each
//! marked wait's registers and stack copy, sent on the agent's wait-sample socket
//! (`wire::WaitSampleMsg`, `agent/src/wait_samples.rs`), read by the drain at each pass
//! ([`read_socket`]), checked here and written into
//! perf.data as a `PERF_RECORD_SAMPLE` of the mode's sampling attr, laid out as the
//! kernel lays out a sample of that attr, so that finalize (and `perf script`) read it
//! like the breakpoint's sample it replaces.
//!
//! Hostile input: the message comes from the target. Its length must be the header plus
//! the stack it announces (at most what a record can hold), its pid the connection's
//! peer or a process forked from it (which shares the socket), its time not in the
//! future; the registers and stack bytes are the process's own to describe.

use hwprof_wire::sample_type::*;
use hwprof_wire::{WAIT_SAMPLE_MAGIC, WAIT_SAMPLE_MAX_STACK, WAIT_SAMPLE_REGS, WaitSampleMsg};
use perf_event_open_sys::bindings as b;

use super::wire::Plain;

/// One checked wait sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitSample {
    /// Process and thread.
    pub pid: u32,
    /// The waiting thread.
    pub tid: u32,
    /// CLOCK_MONOTONIC ns.
    pub time: u64,
    /// CPU.
    pub cpu: u32,
    /// perf's x86-64 register numbering.
    pub regs: [u64; WAIT_SAMPLE_REGS],
    /// User stack from sp.
    pub stack: Vec<u8>,
}

/// Bytes of the largest message the collector reads.
pub const MAX_MESSAGE: usize = size_of::<WaitSampleMsg>() + WAIT_SAMPLE_MAX_STACK;

/// Stack bytes that still fit in a record (its size is a u16) beside the other fields.
const MAX_RECORD_STACK: usize = 60 * 1024;

/// Why a message is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// Shorter than its header, or its length is not the header plus its stack.
    #[error("a wait sample of {0} bytes does not match its stated stack length")]
    Length(usize),
    /// Names a process that is neither the peer nor forked from it.
    #[error("a wait sample names process {said} on the connection of process {peer}")]
    Pid {
        /// What the message says.
        said: u32,
        /// The connection's peer.
        peer: u32,
    },
    /// Time in the future, or thread 0.
    #[error("a wait sample with time {0} or thread 0")]
    Field(u64),
}

/// Checks a `WaitSampleMsg` from the connection of `peer`; `forked_from_peer(pid)`
/// says whether another pid descends from it. `now`: CLOCK_MONOTONIC ns.
pub fn parse(
    msg: &[u8],
    peer: u32,
    now: u64,
    forked_from_peer: impl FnOnce(u32) -> bool,
) -> Result<WaitSample, Refused> {
    let head = size_of::<WaitSampleMsg>();
    let h = msg
        .get(..head)
        .and_then(WaitSampleMsg::read_from)
        .filter(|h| h.magic == WAIT_SAMPLE_MAGIC)
        .ok_or(Refused::Length(msg.len()))?;
    let len = h.stack_len as usize;
    if len > WAIT_SAMPLE_MAX_STACK || msg.len() != head + len {
        return Err(Refused::Length(msg.len()));
    }
    if h.pid != peer && !forked_from_peer(h.pid) {
        return Err(Refused::Pid { said: h.pid, peer });
    }
    if h.tid == 0 || h.time == 0 || h.time > now {
        return Err(Refused::Field(h.time));
    }
    let keep = len.min(MAX_RECORD_STACK) & !7;
    Ok(WaitSample {
        pid: h.pid,
        tid: h.tid,
        time: h.time,
        cpu: h.cpu,
        regs: h.regs,
        stack: msg[head..head + keep].to_vec(),
    })
}

/// Whether `pid` is a process forked from `peer` (sharing its socket): its parent
/// chain reaches `peer`.
pub fn forked_from(pid: u32, peer: u32) -> bool {
    let Ok(mut p) = i32::try_from(pid) else {
        return false;
    };
    for _ in 0..64 {
        match crate::util::proc::parent_checked(p) {
            Ok(Some(pp)) if pp as u32 == peer => return true,
            Ok(Some(pp)) if pp > 1 && pp != p => p = pp,
            _ => return false,
        }
    }
    false
}

/// Reads what is pending on the wait-sample socket of agent `peer` (never waits), at
/// most `most` messages, into `out`; `refused` counts messages that failed the checks.
/// False when the socket is done (every sender gone, or an error).
pub fn read_socket(
    fd: &std::os::fd::OwnedFd,
    peer: u32,
    buf: &mut Vec<u8>,
    most: usize,
    out: &mut Vec<WaitSample>,
    refused: &mut u64,
) -> bool {
    use std::os::fd::AsRawFd;
    buf.resize(MAX_MESSAGE, 0);
    let now = crate::util::monotonic_ns();
    for _ in 0..most {
        match nix::sys::socket::recv(
            fd.as_raw_fd(),
            buf,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => return false,
            Ok(n) => match parse(&buf[..n], peer, now, |pid| forked_from(pid, peer)) {
                Ok(w) => out.push(w),
                Err(_) => *refused += 1,
            },
            Err(nix::Error::EAGAIN | nix::Error::EINTR) => return true,
            Err(_) => return false,
        }
    }
    true
}

const REGS_ABI_64: u64 = b::PERF_SAMPLE_REGS_ABI_64 as u64;

/// The body of a `PERF_RECORD_SAMPLE` of `attr` (bytes of a `perf_event_attr`) with
/// event id `id`, in the kernel's field order; None when the attr asks for a field an
/// agent cannot give (the agent then keeps the breakpoint, so this does not happen).
pub fn sample_body(attr: &[u8], id: u64, s: &WaitSample) -> Option<Vec<u8>> {
    let u64_at = |off: usize| -> Option<u64> {
        Some(u64::from_le_bytes(attr.get(off..off + 8)?.try_into().ok()?))
    };
    let sample_type = u64_at(24)?;
    let regs_mask = u64_at(80)?;
    if sample_type & !WAIT_SAMPLE_FIELDS != 0 {
        return None;
    }
    let mut b = Vec::with_capacity(512 + s.stack.len());
    let put = |b: &mut Vec<u8>, v: u64| b.extend_from_slice(&v.to_le_bytes());
    if sample_type & IDENTIFIER != 0 {
        put(&mut b, id);
    }
    if sample_type & IP != 0 {
        put(&mut b, s.regs[8]);
    }
    if sample_type & TID != 0 {
        put(&mut b, u64::from(s.pid) | (u64::from(s.tid) << 32));
    }
    if sample_type & TIME != 0 {
        put(&mut b, s.time);
    }
    if sample_type & ADDR != 0 {
        put(&mut b, 0);
    }
    if sample_type & ID != 0 {
        put(&mut b, id);
    }
    if sample_type & STREAM_ID != 0 {
        put(&mut b, id);
    }
    if sample_type & CPU != 0 {
        put(&mut b, u64::from(s.cpu));
    }
    if sample_type & PERIOD != 0 {
        put(&mut b, 1);
    }
    if sample_type & CALLCHAIN != 0 {
        // A user-mode sample with `exclude_callchain_user`: no entries, as the kernel's.
        put(&mut b, 0);
    }
    if sample_type & REGS_USER != 0 {
        put(&mut b, REGS_ABI_64);
        for bit in 0..64 {
            if regs_mask & (1 << bit) != 0 {
                put(&mut b, s.regs.get(bit).copied().unwrap_or(0));
            }
        }
    }
    if sample_type & STACK_USER != 0 {
        let n = s.stack.len() & !7;
        put(&mut b, n as u64);
        if n > 0 {
            b.extend_from_slice(&s.stack[..n]);
            put(&mut b, n as u64);
        }
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(pid: u32, stack: &[u8], stated: u32) -> Vec<u8> {
        let mut regs = [0u64; WAIT_SAMPLE_REGS];
        regs[7] = 0x7000;
        regs[8] = 0x1234;
        let h = WaitSampleMsg {
            magic: WAIT_SAMPLE_MAGIC,
            pid,
            tid: pid + 1,
            time: 500,
            cpu: 1,
            stack_len: stated,
            regs,
        };
        let mut m = h.as_bytes().to_vec();
        m.extend_from_slice(stack);
        m
    }

    #[test]
    fn lengths_pids_and_times_are_checked() {
        let ok = parse(&msg(10, &[1; 16], 16), 10, 1000, |_| false).expect("valid");
        assert_eq!((ok.pid, ok.tid, ok.stack.len()), (10, 11, 16));
        assert!(matches!(
            parse(&msg(10, &[1; 16], 24), 10, 1000, |_| false),
            Err(Refused::Length(_))
        ));
        assert!(matches!(
            parse(&msg(10, &[1; 16], u32::MAX), 10, 1000, |_| false),
            Err(Refused::Length(_))
        ));
        assert!(matches!(
            parse(&msg(10, &[], 0)[..100], 10, 1000, |_| false),
            Err(Refused::Length(_))
        ));
        assert_eq!(
            parse(&msg(11, &[], 0), 10, 1000, |_| false),
            Err(Refused::Pid { said: 11, peer: 10 })
        );
        assert!(parse(&msg(11, &[], 0), 10, 1000, |p| p == 11).is_ok());
        assert_eq!(
            parse(&msg(10, &[], 0), 10, 499, |_| false),
            Err(Refused::Field(500))
        );
    }

    #[test]
    fn the_body_follows_the_attrs_layout() {
        let mut attr = vec![0u8; 128];
        let st = IDENTIFIER | IP | TID | TIME | CPU | PERIOD | REGS_USER | STACK_USER;
        attr[24..32].copy_from_slice(&st.to_le_bytes());
        let mask: u64 = (1 << 7) | (1 << 8) | (1 << 5);
        attr[80..88].copy_from_slice(&mask.to_le_bytes());
        let s = parse(&msg(10, &[9; 24], 24), 10, 1000, |_| false).expect("valid");
        let b = sample_body(&attr, 77, &s).expect("writable");
        let words: Vec<u64> = b
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        // id, ip, pid|tid, time, cpu, period, abi, di, sp, ip, size, 3 words, dyn_size
        assert_eq!(&words[..6], &[77, 0x1234, 10 | (11 << 32), 500, 1, 1]);
        assert_eq!(&words[6..10], &[REGS_ABI_64, 0, 0x7000, 0x1234]);
        assert_eq!(words[10], 24);
        assert_eq!(words[14], 24);
        assert_eq!(words.len(), 15);
        attr[24..32].copy_from_slice(&(st | (1 << 10)).to_le_bytes()); // RAW
        assert_eq!(sample_body(&attr, 77, &s), None);
    }
}
