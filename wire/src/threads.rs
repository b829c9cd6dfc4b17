//! The thread states of a CPython process: `_PyRuntime.interpreters.head`, each
//! interpreter's `threads.head` and `next` chain, and the next interpreter. One routine
//! for the agent (finding the sampled thread's own state inside its SIGTRAP handler) and
//! the collector (listing a target's threads), over the frame decoder's [`Memory`].
//!
//! No allocation, no lock, no panic. Bounded, as the lists are read from memory that may
//! change while it is read (or be hostile): at most [`MAX_INTERPRETERS`] interpreters and
//! [`MAX_THREADS`] thread states in all, and a list that loops is cut where Brent's
//! method finds it (states of the loop may then be yielded more than once: at most three
//! times the list's length in all); an unreadable `next` ends that list.

use crate::Layout;
use crate::cycle::Brent;
use crate::frames::{Memory, at};

/// Most interpreters visited.
pub const MAX_INTERPRETERS: usize = 64;
/// Most thread states yielded in all.
pub const MAX_THREADS: usize = 4096;

/// The addresses of the `PyThreadState`s of every interpreter, in list order; see the
/// module documentation. Each `next` is read only when the following state is asked for,
/// so a search that stops at a match reads nothing past it.
pub struct ThreadStates<'a, M: Memory + ?Sized> {
    mem: &'a M,
    layout: &'a Layout,
    /// The next interpreter to enter, 0 at the end of the list.
    next_interp: u64,
    interps: Brent,
    entered: usize,
    /// The thread state to yield next, 0 when the current list is done.
    tstate: u64,
    /// The thread state yielded last, whose `next` is still to read (0: none).
    last: u64,
    tstates: Brent,
    yielded: usize,
}

/// The thread states of the interpreters of the `_PyRuntime` at `runtime`.
pub fn thread_states<'a, M: Memory + ?Sized>(
    mem: &'a M,
    layout: &'a Layout,
    runtime: u64,
) -> ThreadStates<'a, M> {
    let first = mem
        .read_u64(at(runtime, layout.runtime_interpreters_head))
        .unwrap_or(0);
    ThreadStates {
        mem,
        layout,
        next_interp: first,
        interps: Brent::new(first),
        entered: 0,
        tstate: 0,
        last: 0,
        tstates: Brent::new(0),
        yielded: 0,
    }
}

impl<M: Memory + ?Sized> Iterator for ThreadStates<'_, M> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let l = self.layout;
        if self.last != 0 {
            let next = self.mem.read_u64(at(self.last, l.tstate_next)).unwrap_or(0);
            self.tstate = if next != 0 && self.tstates.step(next) {
                next
            } else {
                0
            };
            self.last = 0;
        }
        while self.tstate == 0 {
            if self.next_interp == 0 || self.entered >= MAX_INTERPRETERS {
                return None;
            }
            let interp = self.next_interp;
            self.entered += 1;
            self.tstate = self
                .mem
                .read_u64(at(interp, l.interp_threads_head))
                .unwrap_or(0);
            self.tstates = Brent::new(self.tstate);
            let next = self.mem.read_u64(at(interp, l.interp_next)).unwrap_or(0);
            self.next_interp = if next != 0 && self.interps.step(next) {
                next
            } else {
                0
            };
        }
        if self.yielded >= MAX_THREADS {
            return None;
        }
        self.yielded += 1;
        self.last = self.tstate;
        Some(self.tstate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NONE;
    use crate::layouts::{V3_13_FROM_HEADERS, for_version};

    /// Memory of 8-byte words at 8-aligned addresses; every other address unreadable.
    #[derive(Default)]
    struct Words(std::collections::HashMap<u64, u64>);

    impl Words {
        fn put(&mut self, addr: u64, off: u64, v: u64) {
            assert_ne!(off, NONE);
            self.0.insert(addr + off, v);
        }
    }

    impl Memory for Words {
        fn read_multi(&self, reqs: &mut [(u64, &mut [u8])]) -> u32 {
            let mut mask = 0;
            for (i, (addr, buf)) in reqs.iter_mut().enumerate() {
                if let Some(v) = self.0.get(addr).filter(|_| buf.len() == 8) {
                    buf.copy_from_slice(&v.to_le_bytes());
                    mask |= 1 << i;
                }
            }
            mask
        }
    }

    const RUNTIME: u64 = 0x1000;

    fn interp_at(i: u64) -> u64 {
        0x10_0000 + i * 0x1000
    }
    fn tstate_at(i: u64, t: u64) -> u64 {
        0x100_0000 + i * 0x10_0000 + t * 0x1000
    }

    /// `counts[i]` thread states in interpreter `i`, each list ending in 0.
    fn process(l: &Layout, counts: &[u64]) -> Words {
        let mut m = Words::default();
        m.put(RUNTIME, l.runtime_interpreters_head, interp_at(0));
        for (i, &n) in counts.iter().enumerate() {
            let i = i as u64;
            let next = if (i as usize) + 1 < counts.len() {
                interp_at(i + 1)
            } else {
                0
            };
            m.put(interp_at(i), l.interp_next, next);
            m.put(
                interp_at(i),
                l.interp_threads_head,
                if n > 0 { tstate_at(i, 0) } else { 0 },
            );
            for t in 0..n {
                let next = if t + 1 < n { tstate_at(i, t + 1) } else { 0 };
                m.put(tstate_at(i, t), l.tstate_next, next);
            }
        }
        m
    }

    fn layouts() -> Vec<Layout> {
        let mut v: Vec<Layout> = (8..=12).filter_map(|m| for_version(3, m)).collect();
        v.push(V3_13_FROM_HEADERS);
        v
    }

    #[test]
    fn every_thread_of_every_interpreter_in_order() {
        for l in layouts() {
            let m = process(&l, &[3, 0, 2]);
            let got: Vec<u64> = thread_states(&m, &l, RUNTIME).collect();
            let want = vec![
                tstate_at(0, 0),
                tstate_at(0, 1),
                tstate_at(0, 2),
                tstate_at(2, 0),
                tstate_at(2, 1),
            ];
            assert_eq!(got, want, "3.{}", l.minor);
            // A search stops at its match without reading further.
            let found = thread_states(&m, &l, RUNTIME).find(|&t| t == tstate_at(0, 1));
            assert_eq!(found, Some(tstate_at(0, 1)));
        }
        let l = for_version(3, 11).unwrap();
        assert_eq!(thread_states(&Words::default(), &l, RUNTIME).count(), 0);
    }

    #[test]
    fn loops_and_huge_lists_are_bounded() {
        let l = for_version(3, 12).unwrap();
        // A thread list whose last state points back to the second: cut, and every
        // state of the list yielded.
        let mut m = process(&l, &[5, 1]);
        m.put(tstate_at(0, 4), l.tstate_next, tstate_at(0, 1));
        let got: Vec<u64> = thread_states(&m, &l, RUNTIME).collect();
        assert!(got.len() >= 6 && got.len() <= 3 * 5 + 1, "{}", got.len());
        assert!((0..5).all(|t| got.contains(&tstate_at(0, t))));
        assert_eq!(
            got.last(),
            Some(&tstate_at(1, 0)),
            "the next interpreter still read"
        );
        // A state pointing to itself.
        let mut m = process(&l, &[1]);
        m.put(tstate_at(0, 0), l.tstate_next, tstate_at(0, 0));
        assert_eq!(thread_states(&m, &l, RUNTIME).count(), 1);
        // Interpreters in a loop: each list once or a few times, then the end.
        let mut m = process(&l, &[1, 1]);
        m.put(interp_at(1), l.interp_next, interp_at(0));
        let n = thread_states(&m, &l, RUNTIME).count();
        assert!((2..=6).contains(&n), "{n}");
        // More states than MAX_THREADS, more interpreters than MAX_INTERPRETERS.
        let m = process(&l, &[MAX_THREADS as u64 + 10]);
        assert_eq!(thread_states(&m, &l, RUNTIME).count(), MAX_THREADS);
        let m = process(&l, &[1; MAX_INTERPRETERS + 5]);
        assert_eq!(thread_states(&m, &l, RUNTIME).count(), MAX_INTERPRETERS);
    }

    #[test]
    fn an_unreadable_next_ends_that_list_only() {
        let l = for_version(3, 10).unwrap();
        let mut m = process(&l, &[3, 1]);
        m.0.remove(&(tstate_at(0, 1) + l.tstate_next));
        let got: Vec<u64> = thread_states(&m, &l, RUNTIME).collect();
        assert_eq!(got, vec![tstate_at(0, 0), tstate_at(0, 1), tstate_at(1, 0)]);
    }
}
