//! The Python stack of the current thread: its thread state and its innermost frame; the
//! walk of the frame chain is the shared decoder's (`hwprof_wire::frames`), given this
//! process's memory through the checked reads and the seen-table of code objects.

use super::*;

/// The `PyThreadState` whose `thread_id` is this thread's `pthread_self()`, 0 when none:
/// the shared, bounded walk of the interpreters' thread lists (`hwprof_wire::threads`).
#[inline]
pub(crate) fn find_tstate(st: &State, pid: libc::pid_t) -> u64 {
    let l = st.dec.layout();
    let me = thread_words::pthread_self();
    let mem = OwnMemory(pid);
    threads::thread_states(&mem, l, st.runtime)
        .find(|&t| read_u64(pid, add(t, l.tstate_thread_id)) == Some(me))
        .unwrap_or(0)
}

/// Per-thread cache of `PyThreadState` addresses, keyed by `pthread_self()`; validated
/// on every use (the thread state's `thread_id` must still be this thread).
pub(crate) const TCACHE: usize = 64;
pub(crate) static TKEYS: [AtomicU64; TCACHE] = [const { AtomicU64::new(0) }; TCACHE];
pub(crate) static TVALS: [AtomicU64; TCACHE] = [const { AtomicU64::new(0) }; TCACHE];

/// The innermost frame of the current thread (frame 0 when it runs no Python code) and
/// its C frame (3.11, 3.12), None when the thread has no Python thread state. `win` holds
/// the thread state's fields.
#[inline]
pub(crate) fn current_frame(st: &State, pid: libc::pid_t, win: &mut [u8]) -> Option<Top> {
    let l = st.dec.layout();
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
    let field = found?;
    // An unreadable C frame: no Python stack to walk.
    Some(st.dec.top_from(&OwnMemory(pid), field).unwrap_or(Top {
        frame: 0,
        cframe: field,
    }))
}

/// This process's memory for the frame decoder (`hwprof_wire::frames`), through the
/// checked reads (reads.rs).
pub(crate) struct OwnMemory(pub libc::pid_t);

impl frames::Memory for OwnMemory {
    #[inline]
    fn read_multi(&self, reqs: &mut [(u64, &mut [u8])]) -> u32 {
        read_multi(self.0, reqs)
    }
}

/// The decoder's questions about code objects, answered by the seen-table: a code object
/// named before with the same fields gives its token without a read of its name's hash
/// (`code_identity::known_token`), one met for the first time is named in the ring
/// (`code_identity::note`, within one capture's budget).
pub(crate) struct Naming<'a> {
    pub layout: &'a Layout,
    pub pid: u32,
    pub budget: usize,
}

impl frames::Codes for Naming<'_> {
    #[inline]
    fn known_token(&mut self, code: u64, fields: &CodeFields) -> Option<u64> {
        code_identity::known_token(self.pid, code, fields)
    }

    #[inline]
    fn computed(&mut self, code: u64, token: u64, fields: &CodeFields) {
        code_identity::note(self.layout, self.pid, code, token, fields, &mut self.budget);
    }
}
