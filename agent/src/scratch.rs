//! Preallocated working memory for the SIGTRAP handler, so that its own stack use stays
//! small (it may run on a program's small alternate stack): the captured frames (32 KiB)
//! and the read buffers live in one of [`SLOTS`] static slots, claimed with a
//! compare-and-swap for the duration of one capture (lock-free, so async-signal-safe
//! and re-entrant: a nested handler claims another slot). Untouched slots cost no
//! memory (zero pages of `.bss`), and a capture touches only the frame entries it fills.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::wire::{CapFrame, MAX_FRAMES};

/// Bytes of a frame struct the handler may read (the decoder's frame window is at most
/// this).
pub const FRAME_WINDOW: usize = crate::frames::MAX_FRAME_WINDOW;
/// Bytes of a thread state the handler may read (its `thread_id` to its frame field).
pub const TSTATE_WINDOW: usize = 512;
/// Bytes of a code object the handler may read (type, argcount, name, filename, qualname,
/// line table, first line: the decoder's code window is at most this).
pub const CODE_WINDOW: usize = crate::frames::MAX_CODE_WINDOW;

/// One capture's working memory.
pub struct Scratch {
    pub frames: [CapFrame; MAX_FRAMES],
    pub frame: [u8; FRAME_WINDOW],
    pub tstate: [u8; TSTATE_WINDOW],
    pub code: [u8; CODE_WINDOW],
}

struct Slot {
    busy: AtomicBool,
    buf: UnsafeCell<Scratch>,
}

// SAFETY: a slot's buffer is only reached through a `Claim`, which holds `busy`.
unsafe impl Sync for Slot {}

/// Captures that can be in progress at once (threads inside the handler at the same
/// instant, nested ones included); one more finds no slot and is recorded empty.
const SLOTS: usize = 64;

static POOL: [Slot; SLOTS] = [const {
    Slot {
        busy: AtomicBool::new(false),
        buf: UnsafeCell::new(Scratch {
            frames: [CapFrame {
                code: 0,
                token: 0,
                self_type: 0,
                offset: 0,
                flags: 0,
            }; MAX_FRAMES],
            frame: [0; FRAME_WINDOW],
            tstate: [0; TSTATE_WINDOW],
            code: [0; CODE_WINDOW],
        }),
    }
}; SLOTS];

/// Captures that found every slot busy (HWPROF_AGENT_STATS).
pub static EXHAUSTED: AtomicU64 = AtomicU64::new(0);

/// A claimed slot, released on drop.
pub struct Claim(&'static Slot);

impl Claim {
    /// A free slot, searched from one derived from `hint` (the thread id).
    pub fn get(hint: u32) -> Option<Claim> {
        for i in 0..SLOTS {
            let slot = &POOL[(hint as usize).wrapping_add(i) % SLOTS];
            if slot
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Some(Claim(slot));
            }
        }
        EXHAUSTED.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// The slot's buffers.
    pub fn buf(&mut self) -> &mut Scratch {
        // SAFETY: `busy` is ours until drop, so no other reference to the buffer exists.
        unsafe { &mut *self.0.buf.get() }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}
