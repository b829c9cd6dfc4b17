//! Walking an interpreter's threads and frame chains through a [`ProcessMemory`]: the
//! remote side of what the agent does in-process. Bounded: at most [`MAX_FRAMES`] frames
//! per stack, [`MAX_THREADS`] threads, cycle detection on frame addresses.

use std::collections::HashSet;

use super::layouts::{Layout, NONE};
use super::memory::{ProcessMemory, ReadError};
use super::wire::{
    CapFrame, FR_ENTRY, FR_NO_OFFSET, FR_SHIM, MAX_FRAMES, code_token, unicode_hash_offset,
};

/// Most threads listed per interpreter.
pub const MAX_THREADS: usize = 4096;

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

/// Why a walk stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkEnd {
    /// Reached the outermost frame.
    Complete,
    /// A read failed.
    ReadFailed,
    /// A frame address repeated.
    Cycle,
    /// More than [`MAX_FRAMES`].
    TooDeep,
}

fn at(a: u64, off: u64) -> u64 {
    if off == NONE { 0 } else { a.wrapping_add(off) }
}

/// glibc x86-64: `struct pthread` holds the kernel tid at offset 0x2d0.
const GLIBC_PTHREAD_TID: u64 = 0x2d0;

/// Lists the threads of all interpreters.
pub fn threads(m: &dyn ProcessMemory, l: &Layout, runtime: u64) -> Vec<PyThread> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut interp = m
        .read_u64(at(runtime, l.runtime_interpreters_head))
        .unwrap_or(0);
    let mut ni = 0;
    while interp != 0 && ni < 64 && seen.insert(interp) {
        let mut t = m.read_u64(at(interp, l.interp_threads_head)).unwrap_or(0);
        while t != 0 && out.len() < MAX_THREADS && seen.insert(t) {
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
            out.push(PyThread {
                tstate: t,
                pthread,
                tid,
            });
            t = m.read_u64(at(t, l.tstate_next)).unwrap_or(0);
        }
        interp = m.read_u64(at(interp, l.interp_next)).unwrap_or(0);
        ni += 1;
    }
    out
}

/// The current (innermost) frame of a thread.
pub fn top_frame(m: &dyn ProcessMemory, l: &Layout, tstate: u64) -> Result<u64, ReadError> {
    let mut f = m.read_u64(at(tstate, l.tstate_frame))?;
    if l.cframe_current_frame != NONE && f != 0 {
        f = m.read_u64(at(f, l.cframe_current_frame))?;
    }
    Ok(f)
}

/// Walks the frame chain from `frame`, leaf first, recording what the agent records.
pub fn walk(m: &dyn ProcessMemory, l: &Layout, mut frame: u64) -> (Vec<CapFrame>, WalkEnd) {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    while frame != 0 {
        if out.len() >= MAX_FRAMES {
            return (out, WalkEnd::TooDeep);
        }
        if !seen.insert(frame) {
            return (out, WalkEnd::Cycle);
        }
        let Ok(code) = m.read_u64(at(frame, l.frame_code)) else {
            return (out, WalkEnd::ReadFailed);
        };
        let Ok(prev) = m.read_u64(at(frame, l.frame_previous)) else {
            return (out, WalkEnd::ReadFailed);
        };
        let mut f = CapFrame {
            code,
            ..CapFrame::default()
        };
        if l.frame_instr != NONE {
            let ip = m.read_u64(at(frame, l.frame_instr)).unwrap_or(0);
            let off = ip.wrapping_sub(code.wrapping_add(l.code_code_adaptive));
            if ip == 0 || off >= 1 << 28 {
                f.flags |= FR_NO_OFFSET;
            } else {
                f.offset = off as u32;
            }
        } else {
            match m.read_i32(at(frame, l.frame_lasti)) {
                Ok(v) if v >= 0 => {
                    f.offset = if l.minor >= 10 {
                        v as u32 * 2
                    } else {
                        v as u32
                    }
                }
                _ => f.flags |= FR_NO_OFFSET,
            }
        }
        let mut b = [0u8; 1];
        if l.frame_is_entry != NONE
            && m.read(at(frame, l.frame_is_entry), &mut b).is_ok()
            && b[0] == 1
        {
            f.flags |= FR_ENTRY;
        }
        if l.minor >= 12 && m.read(at(frame, l.frame_owner), &mut b).is_ok() && b[0] == 3 {
            f.flags |= FR_SHIM;
        }
        if l.minor < 11 {
            let local0 = m.read_u64(at(frame, l.frame_localsplus)).unwrap_or(0);
            if local0 != 0 {
                f.self_type = m.read_u64(at(local0, l.object_type)).unwrap_or(0);
            }
        }
        if f.flags & FR_SHIM == 0 {
            let name = m.read_u64(at(code, l.code_name)).unwrap_or(0);
            let file = m.read_u64(at(code, l.code_filename)).unwrap_or(0);
            let first = m.read_i32(at(code, l.code_firstlineno)).unwrap_or(0);
            let hash = m
                .read_u64(name.wrapping_add(unicode_hash_offset(l.unicode_length)))
                .unwrap_or(0);
            f.token = code_token(name, file, first, hash);
        }
        out.push(f);
        frame = prev;
    }
    (out, WalkEnd::Complete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::layouts::for_version;
    use crate::python::memory::MemoryImage;

    /// A synthetic 3.11 chain of `n` frames at 0x1000 + i*0x100, each pointing to the
    /// next; `cycle_to` makes the last point back to an earlier one.
    fn chain(n: u64, cycle_to: Option<u64>) -> (MemoryImage, Layout) {
        let l = for_version(3, 11).unwrap_or_else(|| unreachable!());
        let mut img = MemoryImage::new();
        for i in 0..n {
            let a = 0x1000 + i * 0x100;
            img.insert(a, vec![0u8; 0x100]);
            let next = if i + 1 < n {
                a + 0x100
            } else {
                cycle_to.map_or(0, |c| 0x1000 + c * 0x100)
            };
            img.put_u64(a + l.frame_previous, next);
            img.put_u64(a + l.frame_code, 0x9000);
            img.put_u64(a + l.frame_instr, 0x9000 + l.code_code_adaptive + 2 * i);
        }
        (img, l)
    }

    #[test]
    fn walks_a_recorded_chain() {
        let (img, l) = chain(5, None);
        let (frames, end) = walk(&img, &l, 0x1000);
        assert_eq!(end, WalkEnd::Complete);
        assert_eq!(frames.len(), 5);
        assert_eq!(
            frames.iter().map(|f| f.offset).collect::<Vec<_>>(),
            vec![0, 2, 4, 6, 8]
        );
    }

    #[test]
    fn cycle_and_depth_are_bounded() {
        let (img, l) = chain(4, Some(1));
        let (frames, end) = walk(&img, &l, 0x1000);
        assert_eq!((frames.len(), end), (4, WalkEnd::Cycle));
        let (img, l) = chain(MAX_FRAMES as u64 + 10, None);
        let (frames, end) = walk(&img, &l, 0x1000);
        assert_eq!((frames.len(), end), (MAX_FRAMES, WalkEnd::TooDeep));
        // A chain into unmapped memory stops with what it has.
        let (mut img, l) = chain(3, None);
        img.put_u64(0x1000 + 2 * 0x100 + l.frame_previous, 0xdead_0000);
        let (frames, end) = walk(&img, &l, 0x1000);
        assert_eq!((frames.len(), end), (3, WalkEnd::ReadFailed));
    }
}
