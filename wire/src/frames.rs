//! The one CPython frame decoder, shared by the agent (its own memory, inside the SIGTRAP
//! handler) and the collector (another process's memory through `process_vm_readv`, or a
//! recorded image): from a thread's innermost frame, each frame's code object,
//! instruction offset and markers ([`CapFrame`]), leaf first, into the caller's buffers.
//!
//! No allocation, no lock, no panic, no system call of its own: the agent runs it in a
//! signal handler. Bounded: at most `min(out.len(), MAX_FRAMES)` frames; a cycle in the
//! chain (a frame read while being overwritten) is found with Brent's method (one
//! comparison per frame, no table) and ends the walk.
//!
//! Every difference between CPython versions is a field of the [`Layout`] (absent:
//! [`NONE`]), never a version test here:
//!
//! | what | field | 3.8, 3.9 | 3.10 | 3.11 | 3.12 | 3.13 |
//! |---|---|---|---|---|---|---|
//! | the innermost frame behind a C frame | `cframe_current_frame` | - | - | yes | yes | - |
//! | the caller's C frame (prologue race) | `cframe_previous` | - | - | yes | yes | - |
//! | where the instruction is | `frame_instr` / `frame_lasti` | lasti | lasti | prev_instr | prev_instr | instr_ptr |
//! | bytes per `f_lasti` unit | `lasti_unit` | 1 | 2 | - | - | - |
//! | entry frame marker ([`FR_ENTRY`]) | `frame_is_entry`, [`Layout::frames_are_heap_objects`] | every frame | every frame | `is_entry` | - | - |
//! | shim frame: `owner` value | `owner_cstack` | - | - | - | 3 | 3 |
//! | first argument's type (`Class.method` without `co_qualname`) | [`Layout::class_from_first_arg`] | yes | yes | - | - | - |
//!
//! The code object is `f_code` (3.8-3.12) or `f_executable` (3.13, a code object or
//! `None` in a shim frame): `frame_code` either way. A shim frame's code object is never
//! read (3.13: `None`); the frame is kept, flagged [`FR_SHIM`], because finalize splits
//! the Python stack into eval-loop calls at it. A frame not yet started (3.11+
//! "incomplete": its instruction pointer before its code) gets [`FR_NO_OFFSET`].
//!
//! Every other frame's code object is validated: present (not 0), read whole (the window
//! of the fields the walk uses) and, when the type `PyCode_Type` is known, its `ob_type`
//! checked.
//! 3.11 and 3.12 publish a new C frame (`tstate->cframe`) before setting its
//! `current_frame`, so a capture in between follows a stale slot to memory that is no
//! longer a frame; the walk stops there ([`Stop::NotCode`], [`CAP_READ_FAILED`], the
//! frames before it kept) and [`Decoder::walk_stack`] then walks the caller's C frame.
//!
//! Reads: each round asks the [`Memory`] for up to four regions at once (what the
//! previous frame still needs: its code object's fields, its name's cached hash, its
//! first argument's type; and this frame's window), so a frame costs one batch (one
//! `process_vm_readv` when the memory is another process). A memory may stop a batch at
//! its first failing region (as `process_vm_readv` does): the walk then reads what an
//! earlier frame needs on its own, so that frame's result never depends on a later one.

use crate::cycle::Brent;
use crate::{
    CAP_READ_FAILED, CAP_TRUNCATED, CapFrame, FR_ENTRY, FR_NO_OFFSET, FR_SHIM, Layout, MAX_FRAMES,
    NONE, code_token, unicode_hash_offset,
};

/// Most bytes of a frame the decoder reads at once (the window of the fields it uses).
pub const MAX_FRAME_WINDOW: usize = 512;
/// Most bytes of a code object the decoder reads at once.
pub const MAX_CODE_WINDOW: usize = 256;

/// Memory of the process whose frames are walked.
pub trait Memory {
    /// Reads each `(address, buffer)` of `reqs` (at most 4), skipping addresses 0 and
    /// [`NONE`]; returns the bit mask of the requests read completely. It may stop at
    /// the first request that fails (one `process_vm_readv`).
    fn read_multi(&self, reqs: &mut [(u64, &mut [u8])]) -> u32;

    /// Reads `buf.len()` bytes at `addr`, whether all were read.
    #[inline]
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.read_multi(&mut [(addr, buf)]) & 1 == 1
    }

    /// The little-endian word at `addr`.
    #[inline]
    fn read_u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b).then(|| u64::from_le_bytes(b))
    }
}

/// The code-object fields a walk reads (one window per code object).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeFields {
    /// `co_name`.
    pub name: u64,
    /// `co_filename`.
    pub file: u64,
    /// `co_qualname`, 0 when the version has none.
    pub qualname: u64,
    /// The line table object.
    pub table: u64,
    /// `co_firstlineno`.
    pub firstlineno: i32,
}

/// What a walk asks its caller about each code object it validated.
pub trait Codes {
    /// The token of `code` when the caller already knows it with these very fields (the
    /// agent's seen-table): the walk then does not read the name's hash.
    fn known_token(&mut self, code: u64, fields: &CodeFields) -> Option<u64>;
    /// The token of `code`, computed by this walk (the agent names the code object in
    /// its ring the first time).
    fn computed(&mut self, code: u64, token: u64, fields: &CodeFields);
}

/// [`Codes`] for a caller without a cache: every token is computed.
pub struct NoCache;

impl Codes for NoCache {
    #[inline]
    fn known_token(&mut self, _: u64, _: &CodeFields) -> Option<u64> {
        None
    }
    #[inline]
    fn computed(&mut self, _: u64, _: u64, _: &CodeFields) {}
}

/// The caller's memory for one walk.
pub struct Buffers<'a> {
    /// The frames, leaf first; its length (at most [`MAX_FRAMES`]) bounds the depth.
    pub frames: &'a mut [CapFrame],
    /// At least [`Decoder::frame_window`] bytes.
    pub frame: &'a mut [u8],
    /// At least [`Decoder::code_window`] bytes.
    pub code: &'a mut [u8],
}

/// Why a walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// At the outermost frame.
    Outermost,
    /// More frames than the buffer holds (outer frames cut).
    TooDeep,
    /// A frame or its code object could not be read.
    ReadFailed,
    /// A frame's code object is not a code object (type check).
    NotCode,
    /// The chain loops.
    Cycle,
}

/// What a walk found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walked {
    /// Frames written to [`Buffers::frames`].
    pub frames: usize,
    /// `CAP_*` bits for the capture: [`CAP_TRUNCATED`], [`CAP_READ_FAILED`] (a read
    /// failure, a code object of another type, a cycle).
    pub flags: u32,
    /// Why it ended (the last reason when several).
    pub stop: Stop,
}

/// A thread's innermost frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Top {
    /// The innermost frame, 0 when the thread runs no Python code.
    pub frame: u64,
    /// Its C frame (3.11, 3.12), else 0.
    pub cframe: u64,
}

/// A frame walker for one interpreter: its layout, what of each frame and code object
/// to read (computed once), and `PyCode_Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoder {
    layout: Layout,
    /// `PyCode_Type`'s address, 0 when unknown (no type check).
    code_type: u64,
    frame_window: usize,
    code_lo: u64,
    code_len: usize,
    /// Read the first argument's type (for `Class.method`, without `co_qualname`).
    first_arg: bool,
}

/// `a + off`, 0 (never read) when the field is absent.
#[inline]
pub fn at(a: u64, off: u64) -> u64 {
    if off == NONE { 0 } else { a.wrapping_add(off) }
}

/// The little-endian word at `off` of `b` (0 when outside).
#[inline]
pub fn word(b: &[u8], off: u64) -> u64 {
    let o = off as usize;
    o.checked_add(8)
        .and_then(|e| b.get(o..e))
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// The 4-byte int at `off` of `b` (-1 when outside).
#[inline]
fn int32(b: &[u8], off: u64) -> i32 {
    let o = off as usize;
    o.checked_add(4)
        .and_then(|e| b.get(o..e))
        .and_then(|s| s.try_into().ok())
        .map(i32::from_le_bytes)
        .unwrap_or(-1)
}

/// The byte at field `off` of `b`, None when the field is absent or outside.
#[inline]
fn byte(b: &[u8], off: u64) -> Option<u64> {
    if off == NONE {
        return None;
    }
    b.get(off as usize).map(|&v| v as u64)
}

impl Decoder {
    /// The decoder for `layout`, checking code objects against `code_type` (0: no
    /// check); None when the layout lacks a field the walk needs or a window exceeds
    /// [`MAX_FRAME_WINDOW`] / [`MAX_CODE_WINDOW`].
    pub fn new(layout: Layout, code_type: u64) -> Option<Decoder> {
        let l = &layout;
        if l.frame_previous == NONE || l.frame_code == NONE {
            return None;
        }
        if l.frame_instr == NONE && (l.frame_lasti == NONE || !(1..=8).contains(&l.lasti_unit)) {
            return None;
        }
        if l.frame_instr != NONE && l.code_code_adaptive == NONE {
            return None;
        }
        let first_arg =
            l.class_from_first_arg() && l.code_argcount != NONE && l.frame_localsplus != NONE;
        let check_type = code_type != 0 && l.object_type != NONE;
        let frame_fields = [
            l.frame_previous,
            l.frame_code,
            l.frame_instr,
            l.frame_is_entry,
            l.frame_owner,
            l.frame_lasti,
            if first_arg { l.frame_localsplus } else { NONE },
        ];
        let frame_window = frame_fields
            .iter()
            .filter(|&&o| o != NONE)
            .map(|&o| o.saturating_add(8))
            .max()?;
        if frame_window > MAX_FRAME_WINDOW as u64 {
            return None;
        }
        let code_fields = [
            l.code_name,
            l.code_filename,
            l.code_linetable,
            l.code_firstlineno,
            l.code_qualname,
            if first_arg { l.code_argcount } else { NONE },
            if check_type { l.object_type } else { NONE },
        ];
        if code_fields[..4].contains(&NONE) {
            return None;
        }
        let present = code_fields.iter().copied().filter(|&o| o != NONE);
        let code_lo = present.clone().min()?;
        let code_hi = present.max()?.checked_add(8)?;
        let code_len = (code_hi - code_lo) as usize;
        if code_len > MAX_CODE_WINDOW {
            return None;
        }
        Some(Decoder {
            layout,
            code_type: if check_type { code_type } else { 0 },
            frame_window: frame_window as usize,
            code_lo,
            code_len,
            first_arg,
        })
    }

    /// The interpreter's layout.
    #[inline]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Bytes of each frame read.
    #[inline]
    pub fn frame_window(&self) -> usize {
        self.frame_window
    }

    /// Bytes of each code object read.
    #[inline]
    pub fn code_window(&self) -> usize {
        self.code_len
    }

    /// The innermost frame from the value of the thread state's frame field
    /// (`tstate_frame`: the frame, or the C frame on 3.11 and 3.12); None when the C
    /// frame cannot be read.
    #[inline]
    pub fn top_from<M: Memory + ?Sized>(&self, mem: &M, field: u64) -> Option<Top> {
        let l = &self.layout;
        if l.cframe_current_frame == NONE || field == 0 {
            return Some(Top {
                frame: field,
                cframe: 0,
            });
        }
        Some(Top {
            frame: mem.read_u64(at(field, l.cframe_current_frame))?,
            cframe: field,
        })
    }

    /// The innermost frame of the thread state at `tstate`; None when unreadable.
    pub fn top<M: Memory + ?Sized>(&self, mem: &M, tstate: u64) -> Option<Top> {
        let field = mem.read_u64(at(tstate, self.layout.tstate_frame))?;
        self.top_from(mem, field)
    }

    /// The caller's stack when a C frame was published before its `current_frame` was
    /// set (3.11, 3.12 `_PyEval_EvalFrameDefault` prologue): the previous C frame's
    /// `current_frame`. The frame being entered has not run yet.
    #[inline]
    pub fn caller_frame<M: Memory + ?Sized>(&self, mem: &M, cframe: u64) -> Option<u64> {
        let l = &self.layout;
        if cframe == 0 || l.cframe_previous == NONE {
            return None;
        }
        let prev = mem
            .read_u64(at(cframe, l.cframe_previous))
            .filter(|&p| p != 0)?;
        mem.read_u64(at(prev, l.cframe_current_frame))
            .filter(|&f| f != 0)
    }

    /// Walks a thread's stack from `top`; when the walk failed with nothing but shim
    /// frames before the failure (the C frame was published but not set: 3.12 reads a
    /// stale entry frame there), walks the caller's C frame instead.
    #[inline]
    pub fn walk_stack<M: Memory + ?Sized, C: Codes>(
        &self,
        mem: &M,
        codes: &mut C,
        top: Top,
        bufs: Buffers<'_>,
    ) -> Walked {
        let Buffers {
            frames,
            frame,
            code,
        } = bufs;
        let w = self.walk(
            mem,
            codes,
            top.frame,
            Buffers {
                frames: &mut *frames,
                frame: &mut *frame,
                code: &mut *code,
            },
        );
        // Checked only after a failed read: the common capture scans nothing.
        if w.flags & CAP_READ_FAILED != 0
            && frames
                .get(..w.frames)
                .is_some_and(|f| f.iter().all(|f| f.flags & FR_SHIM != 0))
            && let Some(caller) = self.caller_frame(mem, top.cframe)
        {
            return self.walk(
                mem,
                codes,
                caller,
                Buffers {
                    frames,
                    frame,
                    code,
                },
            );
        }
        w
    }

    /// The code-object fields out of a window read at `code + code_lo`.
    #[inline]
    fn code_fields(&self, w: &[u8]) -> CodeFields {
        let l = &self.layout;
        let lo = self.code_lo;
        let at = |off: u64| if off == NONE { 0 } else { word(w, off - lo) };
        let o = (l.code_firstlineno - lo) as usize;
        let firstlineno = w
            .get(o..o + 4)
            .and_then(|s| s.try_into().ok())
            .map(i32::from_le_bytes)
            .unwrap_or(0);
        CodeFields {
            name: at(l.code_name),
            file: at(l.code_filename),
            qualname: at(l.code_qualname),
            table: at(l.code_linetable),
            firstlineno,
        }
    }

    /// One frame out of its window: the captured frame (`self_type` not yet known), the
    /// previous frame and the first local.
    #[inline]
    fn decode_frame(&self, w: &[u8]) -> (CapFrame, u64, u64) {
        let l = &self.layout;
        let code = word(w, l.frame_code);
        let mut f = CapFrame {
            code,
            ..CapFrame::default()
        };
        if l.frame_instr != NONE {
            let ip = word(w, l.frame_instr);
            let off = ip.wrapping_sub(code.wrapping_add(l.code_code_adaptive));
            // 0 or before the code (an incomplete frame), or far past it: unknown.
            if ip == 0 || off >= 1 << 28 {
                f.flags |= FR_NO_OFFSET;
            } else {
                f.offset = off as u32;
            }
        } else {
            let lasti = int32(w, l.frame_lasti);
            if lasti < 0 {
                f.flags |= FR_NO_OFFSET;
            } else {
                f.offset = (lasti as u32).wrapping_mul(l.lasti_unit as u32);
            }
        }
        if l.frames_are_heap_objects() || byte(w, l.frame_is_entry) == Some(1) {
            f.flags |= FR_ENTRY;
        }
        if l.owner_cstack != NONE && byte(w, l.frame_owner) == Some(l.owner_cstack) {
            f.flags |= FR_SHIM;
        }
        let local0 = if self.first_arg {
            word(w, l.frame_localsplus)
        } else {
            0
        };
        (f, word(w, l.frame_previous), local0)
    }

    /// Walks the frame chain from `frame` into `bufs.frames`, leaf first: each frame's
    /// code object, offset, markers, token and (without `co_qualname`) first argument's
    /// type. See the module documentation.
    #[inline]
    pub fn walk<M: Memory + ?Sized, C: Codes>(
        &self,
        mem: &M,
        codes: &mut C,
        mut frame: u64,
        bufs: Buffers<'_>,
    ) -> Walked {
        let l = &self.layout;
        let Buffers {
            frames: out,
            frame: fb,
            code: cb,
        } = bufs;
        let (c_lo, c_len, window) = (self.code_lo, self.code_len, self.frame_window);
        let (Some(cb), Some(fb)) = (cb.get_mut(..c_len), fb.get_mut(..window)) else {
            return Walked {
                frames: 0,
                flags: CAP_READ_FAILED,
                stop: Stop::ReadFailed,
            };
        };
        let limit = out.len().min(MAX_FRAMES);
        let mut tb = [0u8; 8];
        let mut hb = [0u8; 8];
        let mut n = 0usize;
        let mut flags = 0;
        let mut stop = Stop::Outermost;
        let mut cycle = Brent::new(frame);
        // Pending reads: the code object and first local of frame n-1, the name hash the
        // token of frame `.0` (code object `.1`, fields `.2`) wants, and the object whose
        // type frame `.0` wants.
        let mut pend_code = 0u64;
        let mut pend_local = 0u64;
        let mut pend_hash: Option<(usize, u64, CodeFields)> = None;
        let mut pend_type: Option<(usize, u64)> = None;
        let hash_at = |name: u64| {
            if name == 0 {
                NONE
            } else {
                name.wrapping_add(unicode_hash_offset(l.unicode_length))
            }
        };
        loop {
            let more = frame != 0 && n < limit;
            if frame != 0 && n == limit {
                flags |= CAP_TRUNCATED;
                stop = Stop::TooDeep;
            }
            // Order: what earlier frames want first (their success must not depend on
            // this frame's: a batch may stop at its first failing region), then this frame.
            let mut reqs: [(u64, &mut [u8]); 4] = [
                (
                    pend_hash
                        .as_ref()
                        .map_or(NONE, |(_, _, cf)| hash_at(cf.name)),
                    &mut hb[..],
                ),
                (
                    pend_type.map_or(NONE, |(_, obj)| at(obj, l.object_type)),
                    &mut tb[..],
                ),
                (
                    if pend_code != 0 {
                        pend_code.wrapping_add(c_lo)
                    } else {
                        NONE
                    },
                    &mut cb[..],
                ),
                (if more { frame } else { NONE }, &mut fb[..]),
            ];
            if reqs.iter().all(|r| r.0 == NONE) {
                break;
            }
            let mask = mem.read_multi(&mut reqs);
            let done = |i: usize| mask & (1 << i) != 0;
            if let Some((i, code, cf)) = pend_hash.take() {
                // The batch stopped before the hash (a bad pointer later): read alone.
                let hash = if done(0) {
                    u64::from_le_bytes(hb)
                } else if hash_at(cf.name) != NONE {
                    mem.read_u64(hash_at(cf.name)).unwrap_or(0)
                } else {
                    0
                };
                let token = code_token(cf.name, cf.file, cf.firstlineno, hash);
                if let Some(f) = out.get_mut(i) {
                    f.token = token;
                }
                codes.computed(code, token, &cf);
            }
            if let Some((i, _)) = pend_type.take()
                && done(1)
                && let Some(f) = out.get_mut(i)
            {
                f.self_type = u64::from_le_bytes(tb);
            }
            if pend_code != 0 {
                // An earlier request failing stops the batch: then the code object alone.
                let read = done(2) || mem.read(pend_code.wrapping_add(c_lo), cb);
                let not_code =
                    read && self.code_type != 0 && word(cb, l.object_type - c_lo) != self.code_type;
                if !read || not_code {
                    // This frame and what follows it are not a stack (the frames before
                    // it are kept).
                    n = n.saturating_sub(1);
                    flags |= CAP_READ_FAILED;
                    stop = if read {
                        Stop::NotCode
                    } else {
                        Stop::ReadFailed
                    };
                    frame = 0;
                    pend_code = 0;
                    pend_local = 0;
                    continue;
                }
                let cf = self.code_fields(cb);
                let i = n.wrapping_sub(1);
                // Known with these fields: its token without reading the name.
                match codes.known_token(pend_code, &cf) {
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
                if self.first_arg && pend_local != 0 && int32(cb, l.code_argcount - c_lo) > 0 {
                    pend_type = Some((i, pend_local));
                }
            }
            pend_code = 0;
            pend_local = 0;
            if !more {
                // More rounds read what is still pending, then the loop ends.
                frame = 0;
                continue;
            }
            // An earlier request failing stops the batch: read the frame alone.
            if !done(3) && !mem.read(frame, fb) {
                flags |= CAP_READ_FAILED;
                stop = Stop::ReadFailed;
                frame = 0;
                continue;
            }
            let (f, prev, local0) = self.decode_frame(fb);
            if f.flags & FR_SHIM == 0 {
                // Every frame but a shim has a code object: none is not a frame (a
                // stale slot read as one), and the walk stops before it.
                if f.code == 0 {
                    flags |= CAP_READ_FAILED;
                    stop = Stop::NotCode;
                    frame = 0;
                    continue;
                }
                pend_code = f.code;
                pend_local = local0;
            }
            if let Some(slot) = out.get_mut(n) {
                *slot = f;
            }
            n += 1;
            if !cycle.step(prev) {
                flags |= CAP_READ_FAILED;
                stop = Stop::Cycle;
                frame = 0;
                continue;
            }
            frame = prev;
        }
        Walked {
            frames: n.min(limit),
            flags,
            stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layouts::{V3_13_FROM_HEADERS, for_version};

    /// Every layout the decoder walks: the tables of 3.8-3.12 and 3.13's.
    fn layouts() -> Vec<Layout> {
        let mut v: Vec<Layout> = (8..=12).filter_map(|m| for_version(3, m)).collect();
        v.push(V3_13_FROM_HEADERS);
        assert_eq!(v.len(), 6);
        v
    }

    /// Synthetic memory: regions of bytes; `batch_stops` makes a batch stop at its
    /// first failing request, as one `process_vm_readv` does.
    #[derive(Default)]
    struct Image {
        regions: Vec<(u64, Vec<u8>)>,
        batch_stops: bool,
    }

    impl Image {
        fn region(&mut self, addr: u64, len: usize) {
            self.regions.push((addr, vec![0; len]));
        }
        fn slice(&mut self, addr: u64, len: usize) -> &mut [u8] {
            let (start, r) = self
                .regions
                .iter_mut()
                .find(|(s, r)| *s <= addr && addr + len as u64 <= s + r.len() as u64)
                .expect("write inside a region");
            let o = (addr - *start) as usize;
            &mut r[o..o + len]
        }
        fn put(&mut self, addr: u64, off: u64, v: u64) {
            assert_ne!(off, NONE);
            self.slice(addr + off, 8).copy_from_slice(&v.to_le_bytes());
        }
        fn put32(&mut self, addr: u64, off: u64, v: i32) {
            assert_ne!(off, NONE);
            self.slice(addr + off, 4).copy_from_slice(&v.to_le_bytes());
        }
        fn put8(&mut self, addr: u64, off: u64, v: u8) {
            assert_ne!(off, NONE);
            self.slice(addr + off, 1)[0] = v;
        }
    }

    impl Memory for Image {
        fn read_multi(&self, reqs: &mut [(u64, &mut [u8])]) -> u32 {
            let mut mask = 0;
            for (i, (addr, buf)) in reqs.iter_mut().enumerate() {
                if *addr == 0 || *addr == NONE {
                    continue;
                }
                let (a, n) = (*addr, buf.len() as u64);
                match self
                    .regions
                    .iter()
                    .find(|(s, r)| *s <= a && a + n <= s + r.len() as u64)
                {
                    Some((s, r)) => {
                        let o = (a - s) as usize;
                        buf.copy_from_slice(&r[o..o + buf.len()]);
                        mask |= 1 << i;
                    }
                    None if self.batch_stops => break,
                    None => {}
                }
            }
            mask
        }
    }

    const CODE_TYPE: u64 = 0x5000;
    const SELF_TYPE: u64 = 0x6000;
    const SELF_OBJ: u64 = 0x30_0000;
    const FRAME_SIZE: u64 = 0x400;

    // The regions of frame i, its code object and strings: apart for up to 4,096 frames
    // (more than MAX_FRAMES), so a deep chain never overlaps itself.
    fn frame_at(i: u64) -> u64 {
        0x100_0000 + i * FRAME_SIZE
    }
    fn code_at(i: u64) -> u64 {
        0x200_0000 + i * 0x1000
    }
    fn name_at(i: u64) -> u64 {
        0x300_0000 + i * 0x100
    }
    fn file_at(i: u64) -> u64 {
        0x380_0000 + i * 0x100
    }
    fn hash_of(i: u64) -> u64 {
        0xabc0_0000 + i
    }

    /// A chain of `n` frames of layout `l`, frame `i` at `frame_at(i)` running code
    /// object `i` at instruction `i`, each pointing to the next (the last to 0), each
    /// code object taking one argument, `self` (an object of type SELF_TYPE).
    fn chain(l: &Layout, n: u64) -> Image {
        let mut m = Image::default();
        m.region(SELF_OBJ, 64);
        m.put(SELF_OBJ, l.object_type, SELF_TYPE);
        for i in 0..n {
            let (f, c) = (frame_at(i), code_at(i));
            m.region(f, FRAME_SIZE as usize);
            m.region(c, 0x400);
            m.region(name_at(i), 0x80);
            m.put(
                f,
                l.frame_previous,
                if i + 1 < n { frame_at(i + 1) } else { 0 },
            );
            m.put(f, l.frame_code, c);
            if l.frame_instr != NONE {
                m.put(f, l.frame_instr, c + l.code_code_adaptive + 2 * i);
            } else {
                m.put32(f, l.frame_lasti, i as i32);
            }
            m.put(f, l.frame_localsplus, SELF_OBJ);
            m.put(c, l.object_type, CODE_TYPE);
            m.put(c, l.code_name, name_at(i));
            m.put(c, l.code_filename, file_at(i));
            m.put32(c, l.code_firstlineno, 10 + i as i32);
            m.put32(c, l.code_argcount, 1);
            m.put(
                name_at(i),
                unicode_hash_offset(l.unicode_length),
                hash_of(i),
            );
        }
        m
    }

    /// The frame decoded from frame `i` of [`chain`].
    fn expected(l: &Layout, i: u64) -> CapFrame {
        CapFrame {
            code: code_at(i),
            token: code_token(name_at(i), file_at(i), 10 + i as i32, hash_of(i)),
            self_type: if l.code_qualname == NONE {
                SELF_TYPE
            } else {
                0
            },
            offset: if l.frame_instr != NONE {
                2 * i as u32
            } else {
                i as u32 * l.lasti_unit as u32
            },
            // 3.8-3.10: each frame is run by its own call of the eval loop.
            flags: if l.frames_are_heap_objects() {
                FR_ENTRY
            } else {
                0
            },
        }
    }

    fn walk_from(dec: &Decoder, m: &Image, top: u64, depth: usize) -> (Vec<CapFrame>, Walked) {
        walk_with(dec, m, &mut NoCache, top, depth)
    }

    fn walk_with(
        dec: &Decoder,
        m: &Image,
        codes: &mut impl Codes,
        top: u64,
        depth: usize,
    ) -> (Vec<CapFrame>, Walked) {
        with_buffers(depth, |bufs| dec.walk(m, codes, top, bufs))
    }

    /// The frames `run` writes into buffers of `depth` frames (and the largest windows).
    fn with_buffers(
        depth: usize,
        run: impl FnOnce(Buffers<'_>) -> Walked,
    ) -> (Vec<CapFrame>, Walked) {
        let mut out = vec![CapFrame::default(); depth];
        let (mut fb, mut cb) = ([0u8; MAX_FRAME_WINDOW], [0u8; MAX_CODE_WINDOW]);
        let bufs = Buffers {
            frames: &mut out,
            frame: &mut fb,
            code: &mut cb,
        };
        let w = run(bufs);
        out.truncate(w.frames);
        (out, w)
    }

    fn decoder(l: &Layout) -> Decoder {
        Decoder::new(*l, CODE_TYPE).expect("every table decodes")
    }

    /// Both kinds of memory (batches that go on after a failure, and that stop).
    fn both(mut m: Image) -> [Image; 2] {
        let regions = m.regions.clone();
        m.batch_stops = false;
        [
            m,
            Image {
                regions,
                batch_stops: true,
            },
        ]
    }

    #[test]
    fn a_normal_chain_in_every_version() {
        for l in layouts() {
            for m in both(chain(&l, 5)) {
                let (frames, w) = walk_from(&decoder(&l), &m, frame_at(0), MAX_FRAMES);
                let want: Vec<_> = (0..5).map(|i| expected(&l, i)).collect();
                assert_eq!(frames, want, "3.{}", l.minor);
                assert_eq!((w.flags, w.stop), (0, Stop::Outermost), "3.{}", l.minor);
            }
        }
    }

    #[test]
    fn shim_and_entry_frames_are_marked_and_their_code_not_read() {
        let (mut shims, mut entries) = (0, 0);
        for l in layouts() {
            let mut m = chain(&l, 5);
            let f2 = frame_at(2);
            if l.owner_cstack != NONE {
                // A shim frame: owned by the C stack, its code object never read (3.13:
                // `None`, here an unmapped address).
                m.put8(f2, l.frame_owner, l.owner_cstack as u8);
                m.put(f2, l.frame_code, 0xdead_0000);
                shims += 1;
            }
            if l.frame_is_entry != NONE {
                m.put8(f2, l.frame_is_entry, 1);
                entries += 1;
            }
            let (frames, w) = walk_from(&decoder(&l), &m, frame_at(0), MAX_FRAMES);
            assert_eq!((frames.len(), w.flags), (5, 0), "3.{}", l.minor);
            let f = frames[2];
            if l.owner_cstack != NONE {
                assert_eq!(f.flags & FR_SHIM, FR_SHIM);
                assert_eq!((f.code, f.token, f.self_type), (0xdead_0000, 0, 0));
            } else if l.frame_is_entry != NONE {
                let want = CapFrame {
                    flags: FR_ENTRY,
                    ..expected(&l, 2)
                };
                assert_eq!(f, want);
            } else {
                assert_eq!(f, expected(&l, 2));
            }
            for i in [0, 1, 3, 4] {
                assert_eq!(frames[i as usize], expected(&l, i), "3.{}", l.minor);
            }
        }
        // 3.12, 3.13 have shims, 3.11 entry frames.
        assert_eq!((shims, entries), (2, 1));
    }

    #[test]
    fn a_frame_not_started_has_no_offset() {
        for l in layouts().into_iter().filter(|l| l.frame_instr != NONE) {
            let mut m = chain(&l, 3);
            // 3.11, 3.12: prev_instr one unit before the code at frame creation.
            m.put(
                frame_at(1),
                l.frame_instr,
                code_at(1) + l.code_code_adaptive - 2,
            );
            let (frames, _) = walk_from(&decoder(&l), &m, frame_at(0), MAX_FRAMES);
            assert_eq!(frames[1].flags, FR_NO_OFFSET, "3.{}", l.minor);
            assert_eq!(frames[1].offset, 0);
        }
    }

    #[test]
    fn a_code_object_of_another_type_ends_the_walk() {
        for l in layouts() {
            let mut m = chain(&l, 5);
            m.put(code_at(3), l.object_type, 0x9999);
            for m in both(m) {
                let (frames, w) = walk_from(&decoder(&l), &m, frame_at(0), MAX_FRAMES);
                let want: Vec<_> = (0..3).map(|i| expected(&l, i)).collect();
                assert_eq!(frames, want, "3.{}", l.minor);
                assert_eq!((w.flags, w.stop), (CAP_READ_FAILED, Stop::NotCode));
                // Without PyCode_Type known, no check: the whole chain.
                let unchecked = Decoder::new(l, 0).unwrap();
                let (frames, w) = walk_from(&unchecked, &m, frame_at(0), MAX_FRAMES);
                assert_eq!((frames.len(), w.stop), (5, Stop::Outermost));
            }
        }
    }

    #[test]
    fn a_loop_in_the_chain_is_bounded() {
        for l in layouts() {
            // The last of 4 frames points back to the second; and a frame to itself.
            for (n, back) in [(4, 1), (1, 0), (40, 3)] {
                let mut m = chain(&l, n);
                m.put(frame_at(n - 1), l.frame_previous, frame_at(back));
                let (frames, w) = walk_from(&decoder(&l), &m, frame_at(0), MAX_FRAMES);
                assert_eq!(
                    (w.flags, w.stop),
                    (CAP_READ_FAILED, Stop::Cycle),
                    "{n} {back}"
                );
                assert!(frames.len() >= n as usize && frames.len() < 3 * n as usize);
                for (i, f) in frames.iter().enumerate().take(n as usize) {
                    assert_eq!(*f, expected(&l, i as u64));
                }
            }
        }
    }

    #[test]
    fn truncated_reads_keep_the_frames_before() {
        for l in layouts() {
            let dec = decoder(&l);
            // The third frame's `previous` points to unmapped memory.
            let mut m = chain(&l, 5);
            m.put(frame_at(2), l.frame_previous, 0xdead_0000);
            for m in both(m) {
                let (frames, w) = walk_from(&dec, &m, frame_at(0), MAX_FRAMES);
                assert_eq!(frames.len(), 3, "3.{}", l.minor);
                assert_eq!((w.flags, w.stop), (CAP_READ_FAILED, Stop::ReadFailed));
            }
            // The third frame is cut short (its region ends before its window does).
            let mut m = chain(&l, 5);
            let r = m.regions.iter_mut().find(|r| r.0 == frame_at(2)).unwrap();
            r.1.truncate(dec.frame_window() - 1);
            for m in both(m) {
                let (frames, w) = walk_from(&dec, &m, frame_at(0), MAX_FRAMES);
                let want: Vec<_> = (0..2).map(|i| expected(&l, i)).collect();
                assert_eq!(frames, want, "3.{}", l.minor);
                assert_eq!(w.stop, Stop::ReadFailed);
            }
            // The second frame's code object is unmapped: that frame is dropped.
            let mut m = chain(&l, 5);
            m.regions.retain(|r| r.0 != code_at(1));
            for m in both(m) {
                let (frames, w) = walk_from(&dec, &m, frame_at(0), MAX_FRAMES);
                assert_eq!(frames, vec![expected(&l, 0)], "3.{}", l.minor);
                assert_eq!(w.stop, Stop::ReadFailed);
            }
            // A name whose hash cannot be read: the token without it, the walk goes on.
            let mut m = chain(&l, 3);
            m.regions.retain(|r| r.0 != name_at(1));
            for m in both(m) {
                let (frames, w) = walk_from(&dec, &m, frame_at(0), MAX_FRAMES);
                assert_eq!((frames.len(), w.stop), (3, Stop::Outermost));
                assert_eq!(frames[1].token, code_token(name_at(1), file_at(1), 11, 0));
                assert_eq!(frames[2], expected(&l, 2));
            }
            // Buffers smaller than the windows: nothing read.
            let mut out = [CapFrame::default(); 4];
            let (mut fb, mut cb) = ([0u8; 8], [0u8; MAX_CODE_WINDOW]);
            let bufs = Buffers {
                frames: &mut out,
                frame: &mut fb,
                code: &mut cb,
            };
            let w = dec.walk(&chain(&l, 2), &mut NoCache, frame_at(0), bufs);
            assert_eq!((w.frames, w.stop), (0, Stop::ReadFailed));
        }
    }

    #[test]
    fn depth_is_bounded_by_the_buffer_and_max_frames() {
        for l in layouts() {
            let m = chain(&l, MAX_FRAMES as u64 + 10);
            let (frames, w) = walk_from(&decoder(&l), &m, frame_at(0), MAX_FRAMES + 50);
            assert_eq!(frames.len(), MAX_FRAMES);
            assert_eq!((w.flags, w.stop), (CAP_TRUNCATED, Stop::TooDeep));
            assert_eq!(frames[MAX_FRAMES - 1], expected(&l, MAX_FRAMES as u64 - 1));
            let (frames, w) = walk_from(&decoder(&l), &m, frame_at(0), 3);
            assert_eq!((frames.len(), w.stop), (3, Stop::TooDeep));
        }
    }

    /// Counts the decoder's questions; knows the token of code object 1.
    #[derive(Default)]
    struct Seen {
        computed: Vec<u64>,
    }

    impl Codes for Seen {
        fn known_token(&mut self, code: u64, f: &CodeFields) -> Option<u64> {
            assert_eq!(f.name, name_at((code - code_at(0)) / 0x1000));
            (code == code_at(1)).then_some(77)
        }
        fn computed(&mut self, code: u64, _: u64, _: &CodeFields) {
            self.computed.push(code);
        }
    }

    #[test]
    fn a_known_token_is_not_read_again() {
        for l in layouts() {
            let mut m = chain(&l, 3);
            // Code object 1's name is unreadable: its known token is used all the same.
            m.regions.retain(|r| r.0 != name_at(1));
            let mut seen = Seen::default();
            let (frames, _) = walk_with(&decoder(&l), &m, &mut seen, frame_at(0), MAX_FRAMES);
            assert_eq!(frames[1].token, 77);
            assert_eq!(seen.computed, vec![code_at(0), code_at(2)]);
            assert_eq!(frames[2], expected(&l, 2));
        }
    }

    #[test]
    fn the_caller_is_walked_when_a_new_c_frame_is_not_set_yet() {
        let mut tested = 0;
        for l in layouts().into_iter().filter(|l| l.cframe_previous != NONE) {
            let dec = decoder(&l);
            // The caller's C frame points to a chain of 3; the new one to a stale slot:
            // a frame whose code object is freed (not of the code type), or stack memory
            // with no code pointer at all (seen in a class body's first instant, 3.12).
            for stale_code in [0x50_0000, 0] {
                let mut m = chain(&l, 3);
                let (cframe, caller, stale) = (0x40_0000, 0x40_1000, 0x40_2000);
                m.region(cframe, 64);
                m.region(caller, 64);
                m.put(cframe, l.cframe_previous, caller);
                m.put(caller, l.cframe_current_frame, frame_at(0));
                m.region(stale, FRAME_SIZE as usize);
                m.region(0x50_0000, 0x400);
                m.put(stale, l.frame_code, stale_code);
                m.put(cframe, l.cframe_current_frame, stale);
                let top = dec.top_from(&m, cframe).unwrap();
                assert_eq!(
                    top,
                    Top {
                        frame: stale,
                        cframe
                    }
                );
                let (frames, w) = with_buffers(MAX_FRAMES, |bufs| {
                    dec.walk_stack(&m, &mut NoCache, top, bufs)
                });
                let label = format!("3.{}, stale code {stale_code:#x}", l.minor);
                assert_eq!((w.frames, w.stop), (3, Stop::Outermost), "{label}");
                let want: Vec<_> = (0..3).map(|i| expected(&l, i)).collect();
                assert_eq!(frames, want, "{label}");
                tested += 1;
            }
        }
        assert_eq!(tested, 4);
    }

    #[test]
    fn every_table_has_the_fields_the_decoder_needs() {
        for l in layouts() {
            let d = decoder(&l);
            assert!(d.frame_window() <= MAX_FRAME_WINDOW && d.code_window() <= MAX_CODE_WINDOW);
        }
        let mut l = V3_13_FROM_HEADERS;
        l.frame_code = NONE;
        assert!(Decoder::new(l, 0).is_none());
        let mut l = for_version(3, 10).unwrap();
        l.lasti_unit = NONE;
        assert!(Decoder::new(l, 0).is_none());
    }
}
