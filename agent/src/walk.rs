//! The Python stack of the current thread: its thread state, its innermost frame (or the
//! caller's while a C frame is being entered), and the walk of the frame chain.

use super::*;

/// The `PyThreadState` whose `thread_id` is this thread's `pthread_self()`.
#[inline]
pub(crate) fn find_tstate(st: &State, pid: libc::pid_t) -> u64 {
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

/// Per-thread cache of `PyThreadState` addresses, keyed by `pthread_self()`; validated
/// on every use (the thread state's `thread_id` must still be this thread).
pub(crate) const TCACHE: usize = 64;
pub(crate) static TKEYS: [AtomicU64; TCACHE] = [const { AtomicU64::new(0) }; TCACHE];
pub(crate) static TVALS: [AtomicU64; TCACHE] = [const { AtomicU64::new(0) }; TCACHE];

/// The innermost frame of the current thread (0 when it runs no Python code) and its C
/// frame (3.11, 3.12; else 0), None when the thread has no Python thread state. `win`
/// holds the thread state's fields.
#[inline]
pub(crate) fn current_frame(st: &State, pid: libc::pid_t, win: &mut [u8]) -> Option<(u64, u64)> {
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
#[inline]
pub(crate) fn caller_frame(st: &State, pid: libc::pid_t, cframe: u64) -> Option<u64> {
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
#[inline]
pub(crate) fn walk_frames(
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
