//! Walking an interpreter's threads and frame chains through a [`ProcessMemory`]: the
//! remote side of what the agent does in-process, with the same decoder
//! (`hwprof_wire::frames`, `hwprof_wire::threads`). Bounded: at most [`MAX_FRAMES`]
//! frames per stack (cycles found), [`MAX_THREADS`] threads.

use std::collections::HashSet;

use super::layouts::{Layout, NONE};
use super::memory::{ProcessMemory, ReadError};
use super::wire::frames::{
    self, Buffers, Decoder, MAX_CODE_WINDOW, MAX_FRAME_WINDOW, NoCache, Top, Walked, at,
};
pub use super::wire::threads::MAX_THREADS;
use super::wire::threads::thread_states;
use super::wire::{CapFrame, MAX_FRAMES};

/// A Python thread of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PyThread {
    /// Address of its `PyThreadState`.
    pub tstate: u64,
    /// `pthread_t`.
    pub pthread: u64,
    /// Kernel tid, when known (3.11+ `native_thread_id`, else glibc's `struct pthread`).
    pub tid: Option<u32>,
}

/// glibc x86-64: `struct pthread` holds the kernel tid at offset 0x2d0.
const GLIBC_PTHREAD_TID: u64 = 0x2d0;

/// Lists the threads of all interpreters (the shared, bounded walk of their thread
/// lists, `hwprof_wire::threads`; a state met again in a list that loops is listed once).
pub fn threads(m: &dyn ProcessMemory, l: &Layout, runtime: u64) -> Vec<PyThread> {
    let mut seen = HashSet::new();
    thread_states(&Remote(m), l, runtime)
        .filter(|&t| seen.insert(t))
        .map(|t| {
            let pthread = m.read_u64(at(t, l.tstate_thread_id)).unwrap_or(0);
            let tid = if l.tstate_native_thread_id != NONE {
                m.read_u64(at(t, l.tstate_native_thread_id))
                    .ok()
                    .map(|v| v as u32)
            } else {
                m.read_i32(pthread.wrapping_add(GLIBC_PTHREAD_TID))
                    .ok()
                    .filter(|&v| v > 0)
                    .map(|v| v as u32)
            };
            PyThread {
                tstate: t,
                pthread,
                tid,
            }
        })
        .collect()
}

/// The target's memory for the shared frame decoder.
struct Remote<'a>(&'a dyn ProcessMemory);

impl frames::Memory for Remote<'_> {
    fn read_multi(&self, reqs: &mut [(u64, &mut [u8])]) -> u32 {
        // The requests to read (not 0 or NONE) in one batch, and where each came from.
        let mut from = Vec::with_capacity(reqs.len());
        let mut batch: Vec<(u64, &mut [u8])> = Vec::with_capacity(reqs.len());
        for (i, (addr, buf)) in reqs.iter_mut().enumerate() {
            if *addr != 0 && *addr != NONE {
                from.push(i);
                batch.push((*addr, &mut **buf));
            }
        }
        let read = self.0.read_each(&mut batch);
        from.iter()
            .enumerate()
            .filter(|&(j, _)| read & (1 << j) != 0)
            .fold(0, |mask, (_, &i)| mask | 1 << i)
    }
}

/// The current (innermost) frame of a thread and its C frame.
pub fn top_frame(m: &dyn ProcessMemory, dec: &Decoder, tstate: u64) -> Result<Top, ReadError> {
    dec.top(&Remote(m), tstate).ok_or(ReadError {
        addr: tstate,
        len: 8,
    })
}

/// Walks a thread's stack from `top`, leaf first, recording what the agent records
/// (the shared decoder, `hwprof_wire::frames`: code objects checked against
/// `PyCode_Type`, the caller's C frame walked after a prologue race), at most `depth`
/// frames deep (at most [`MAX_FRAMES`]).
pub fn walk(
    m: &dyn ProcessMemory,
    dec: &Decoder,
    top: Top,
    depth: usize,
) -> (Vec<CapFrame>, Walked) {
    let mut out = vec![CapFrame::default(); depth.min(MAX_FRAMES)];
    let mut frame = [0u8; MAX_FRAME_WINDOW];
    let mut code = [0u8; MAX_CODE_WINDOW];
    let bufs = Buffers {
        frames: &mut out,
        frame: &mut frame,
        code: &mut code,
    };
    let w = dec.walk_stack(&Remote(m), &mut NoCache, top, bufs);
    out.truncate(w.frames);
    (out, w)
}
