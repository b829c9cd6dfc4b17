//! The SIGTRAP handler and the capture of one stack into the ring.

use super::*;

pub(crate) extern "C" fn on_sigtrap(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
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
pub(crate) fn stop_handling(_sig: c_int) {
    disposition::set_ours(libc::SIGTRAP, false);
    // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask.
    unsafe {
        let dfl: libc::sigaction = std::mem::zeroed();
        real_sigaction(libc::SIGTRAP, &dfl, std::ptr::null_mut());
    }
}

/// Captures this thread's Python stack at `now` (CLOCK_MONOTONIC ns) into the ring;
/// whether the record was written.
pub(crate) fn capture(st: &State, late: bool, now: u64) -> bool {
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
            Some(top) => {
                let mut naming = Naming {
                    layout: st.dec.layout(),
                    pid: pid as u32,
                    budget: code_identity::BUDGET_BYTES,
                };
                let bufs = frames::Buffers {
                    frames: &mut s.frames,
                    frame: &mut s.frame,
                    code: &mut s.code,
                };
                let w = st.dec.walk_stack(&OwnMemory(pid), &mut naming, top, bufs);
                n = w.frames;
                flags |= w.flags;
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
