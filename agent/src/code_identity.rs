//! Code objects named at first sight: the SIGTRAP handler writes a code object's identity
//! (name, qualname, filename, first line, line table; `wire::REC_CODE`) into the capture
//! ring the first time a capture meets it, so that the collector and finalize never have
//! to read a frame's code object from outside after the fact (a module body or a
//! short-lived worker is gone by then). The collector's remote read stays as the fallback
//! for what could not be sent here (an object outside the known mappings, a line table
//! over the bound).
//!
//! "Seen" is a fixed-size direct-mapped table (no allocation, no lock): the slot of a
//! code object's address holds that address and a check word mixing the process id (a
//! forked child inherits the table but its code objects must be named under its own
//! pid), the token (name and filename pointers, first line) and the qualname and line
//! table pointers, so a freed code object whose address is reused by another is named
//! again. Two code objects sharing a slot evict each other (and are named again: the
//! readers take the duplicate as is). Threads racing on a slot at worst write one
//! record twice.
//!
//! The slot also keeps the code object's token, so that a capture meeting a code object
//! already named with the same fields ([`known_token`]) reads neither the name's cached
//! hash (a cache line of the name string per frame, cold at 1 kHz) nor names it again:
//! the walk's per-frame reads are the frame and the code object's fields. The check word
//! covers the fields and the token, so a slot torn by two racing writers is a miss.
//!
//! Every read here goes through the checked primitives ([`crate::read_mem`],
//! [`crate::read_multi`]): no plain load of interpreter memory (docs/security.md, "The
//! agent inside the target"). The strings and the line table are copied with one
//! `read_multi` into a static buffer ([`SCRATCH_BYTES`], too large for the handler's
//! stack or a scratch slot) that one handler at a time may use; a handler that finds it
//! busy leaves the record to a later capture.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::frames::CodeFields;
use crate::wire::{CODE_SELF_FIRST, CodeRecord, Layout, NONE, Plain, REC_CODE, RecordHeader};
use crate::{read_mem, read_multi};

/// Slots of the seen-table (a power of two): 16 bytes each.
const SLOTS: usize = 8192;
/// Longest string data sent (bytes; longer: the collector reads the object).
const MAX_STR_BYTES: u64 = 4096;
/// Longest line table sent (bytes; longer: the collector reads the object).
const MAX_TABLE_BYTES: u64 = 32 << 10;
/// Bytes of identity records one capture may write: bounds the handler's time on a stack
/// of many new code objects (the rest are named by the next captures).
pub const BUDGET_BYTES: usize = 64 << 10;
static KEYS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static CHECKS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static TOKENS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
/// Identity records written, and code objects left to the collector's remote read
/// (HWPROF_AGENT_STATS).
pub static EMITTED: AtomicU64 = AtomicU64::new(0);
pub static LEFT_TO_COLLECTOR: AtomicU64 = AtomicU64::new(0);

fn mix(mut h: u64, v: u64) -> u64 {
    h ^= v;
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

fn slot_of(code: u64) -> usize {
    ((code >> 4) ^ (code >> 17)) as usize & (SLOTS - 1)
}

/// A slot's check word: this process, the code object's fields and its token, each
/// rotated apart and mixed once (it is computed for every frame of every capture: a
/// multiply per field was a sixth of a warm capture's time). Any one field differing
/// changes it; a torn slot (one writer's token, another's check) differs in the token.
fn check_of(pid: u32, f: &CodeFields, token: u64) -> u64 {
    let h = (pid as u64)
        ^ f.name.rotate_left(7)
        ^ f.file.rotate_left(17)
        ^ f.qualname.rotate_left(29)
        ^ f.table.rotate_left(41)
        ^ (f.firstlineno as u32 as u64).rotate_left(53)
        ^ token.rotate_left(61);
    mix(h, token) | 1
}

/// The token of the code object at `code` when this process named it (or left it to the
/// collector) with these very fields: same name, filename, qualname and line-table
/// objects and first line. The name's hash is then not read again: a different code
/// object at the same address with all four objects at the same addresses too is not
/// told apart (nor was it before: the check never covered their contents).
pub fn known_token(pid: u32, code: u64, f: &CodeFields) -> Option<u64> {
    let slot = slot_of(code);
    if code == 0 || KEYS[slot].load(Ordering::Relaxed) != code {
        return None;
    }
    let token = TOKENS[slot].load(Ordering::Relaxed);
    (CHECKS[slot].load(Ordering::Relaxed) == check_of(pid, f, token)).then_some(token)
}

/// Names the code object at `code` (already read into `f`, with `token`) when this
/// process has not named it yet, within `budget` bytes of records.
pub fn note(l: &Layout, pid: u32, code: u64, token: u64, f: &CodeFields, budget: &mut usize) {
    if code == 0 {
        return;
    }
    let check = check_of(pid, f, token);
    let slot = slot_of(code);
    if KEYS[slot].load(Ordering::Relaxed) == code && CHECKS[slot].load(Ordering::Relaxed) == check {
        return;
    }
    match emit(l, pid, code, token, f, budget) {
        Emit::Written => {
            EMITTED.fetch_add(1, Ordering::Relaxed);
        }
        // Out of budget or ring space: the next capture that meets it tries again.
        Emit::Later => return,
        // Not sendable from here (outside the known mappings, over a bound): the
        // collector reads it; not retried on every sample.
        Emit::Never => {
            LEFT_TO_COLLECTOR.fetch_add(1, Ordering::Relaxed);
        }
    }
    TOKENS[slot].store(token, Ordering::Relaxed);
    CHECKS[slot].store(check, Ordering::Relaxed);
    KEYS[slot].store(code, Ordering::Relaxed);
}

enum Emit {
    Written,
    Later,
    Never,
}

/// A compact `str`'s character width and data (address, bytes), within
/// [`MAX_STR_BYTES`].
fn str_data(l: &Layout, pid: i32, s: u64) -> Option<(u8, u64, usize)> {
    if s == 0 || [l.unicode_length, l.unicode_state].contains(&NONE) {
        return None;
    }
    let mut len = [0u8; 8];
    let mut state = [0u8; 4];
    if !read_mem(pid, s.wrapping_add(l.unicode_length), &mut len)
        || !read_mem(pid, s.wrapping_add(l.unicode_state), &mut state)
    {
        return None;
    }
    let (len, state) = (u64::from_le_bytes(len), u32::from_le_bytes(state));
    let kind = (state >> 2) & 7;
    let compact = (state >> 5) & 1 == 1;
    let ascii = (state >> 6) & 1 == 1;
    if !compact || !matches!(kind, 1 | 2 | 4) {
        return None;
    }
    let bytes = len.checked_mul(kind as u64)?;
    if bytes > MAX_STR_BYTES {
        return None;
    }
    let data = s.wrapping_add(if ascii {
        l.unicode_ascii_size
    } else {
        l.unicode_compact_size
    });
    Some((kind as u8, data, bytes as usize))
}

/// A `bytes` object's data (address, length) within [`MAX_TABLE_BYTES`].
fn bytes_data(l: &Layout, pid: i32, b: u64) -> Option<(u64, usize)> {
    if b == 0 || l.bytes_size == NONE || l.bytes_data == NONE {
        return None;
    }
    let mut n = [0u8; 8];
    if !read_mem(pid, b.wrapping_add(l.bytes_size), &mut n) {
        return None;
    }
    let n = u64::from_le_bytes(n);
    if n > MAX_TABLE_BYTES {
        return None;
    }
    Some((b.wrapping_add(l.bytes_data), n as usize))
}

/// Without `co_qualname` (before 3.11): whether the first parameter is named `self` (the
/// reader then names the method `Class.name` from the captured type of the first local).
fn self_first(l: &Layout, pid: i32, code: u64) -> bool {
    if l.code_qualname != NONE
        || [
            l.code_argcount,
            l.code_varnames,
            l.tuple_size,
            l.tuple_items,
        ]
        .contains(&NONE)
    {
        return false;
    }
    // co_argcount (an int) >= 1, then co_varnames; its ob_size >= 1, then its item 0.
    let Some(names) = word_if_counted(pid, code, l.code_argcount, false, l.code_varnames) else {
        return false;
    };
    let Some(first) = word_if_counted(pid, names, l.tuple_size, true, l.tuple_items) else {
        return false;
    };
    match str_data(l, pid, first) {
        Some((1, data, 4)) => {
            let mut b = [0u8; 4];
            read_mem(pid, data, &mut b) && &b == b"self"
        }
        _ => false,
    }
}

/// The word at `base + word` when the count at `base + count` (an `int`, or a
/// `Py_ssize_t` when `ssize`) is at least 1; None when it is not, or a read fails.
fn word_if_counted(pid: i32, base: u64, count: u64, ssize: bool, word: u64) -> Option<u64> {
    let mut c = [0u8; 8];
    let width = if ssize { 8 } else { 4 };
    if !read_mem(pid, base.wrapping_add(count), &mut c[..width]) {
        return None;
    }
    let n = if ssize {
        i64::from_le_bytes(c)
    } else {
        i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    };
    if n < 1 {
        return None;
    }
    crate::read_u64(pid, base.wrapping_add(word))
}

/// Writes the identity record of `code`.
fn emit(l: &Layout, pid: u32, code: u64, token: u64, f: &CodeFields, budget: &mut usize) -> Emit {
    let Some(ring) = crate::RING.get() else {
        return Emit::Never;
    };
    let p = pid as i32;
    let Some((name_kind, name_at, name_len)) = str_data(l, p, f.name) else {
        return Emit::Never;
    };
    let Some((file_kind, file_at, file_len)) = str_data(l, p, f.file) else {
        return Emit::Never;
    };
    let (qual_kind, qual_at, qual_len) = if l.code_qualname == NONE {
        (1, 0, 0)
    } else {
        match str_data(l, p, f.qualname) {
            Some(q) => q,
            None => return Emit::Never,
        }
    };
    let Some((table_at, table_len)) = bytes_data(l, p, f.table) else {
        return Emit::Never;
    };
    let body = size_of::<RecordHeader>()
        + size_of::<CodeRecord>()
        + name_len
        + qual_len
        + file_len
        + table_len;
    let len = body.next_multiple_of(8);
    if len > *budget {
        return Emit::Later;
    }
    let h = RecordHeader {
        len: len as u32,
        kind: REC_CODE,
    };
    let rec = CodeRecord {
        pid,
        flags: if self_first(l, p, code) {
            CODE_SELF_FIRST
        } else {
            0
        },
        addr: code,
        token,
        firstlineno: f.firstlineno,
        kinds: [name_kind, qual_kind, file_kind, 0],
        name_len: name_len as u32,
        qualname_len: qual_len as u32,
        file_len: file_len as u32,
        table_len: table_len as u32,
    };
    let pieces = [
        (name_at, name_len),
        (qual_at, qual_len),
        (file_at, file_len),
        (table_at, table_len),
    ];
    let pad = [0u8; 8];
    // Copied with one checked read through the scratch buffer, which one handler at a
    // time may use (the others try again at their next capture).
    if SCRATCH_BUSY.swap(true, Ordering::Acquire) {
        return Emit::Later;
    }
    // SAFETY: SCRATCH_BUSY makes this handler its only user until released below.
    let scratch = unsafe { &mut *SCRATCH.0.get() };
    let used: usize = pieces.iter().map(|&(_, n)| n).sum();
    let r = match scratch.get_mut(..used) {
        Some(buf) => {
            let (name_buf, rest) = buf.split_at_mut(name_len);
            let (qual_buf, rest) = rest.split_at_mut(qual_len);
            let (file_buf, table_buf) = rest.split_at_mut(file_len);
            let mut reqs: [(u64, &mut [u8]); 4] = [
                (name_at, name_buf),
                (qual_at, qual_buf),
                (file_at, file_buf),
                (table_at, table_buf),
            ];
            // Empty pieces (a version without qualname, an empty table) are not read.
            let mut want = 0u32;
            for (i, r) in reqs.iter_mut().enumerate() {
                if r.1.is_empty() {
                    r.0 = 0;
                } else {
                    want |= 1 << i;
                }
            }
            if read_multi(pid as i32, &mut reqs) & want == want {
                written(
                    ring.write(&[
                        h.as_bytes(),
                        rec.as_bytes(),
                        &scratch[..used],
                        &pad[..len - body],
                    ]),
                    len,
                    budget,
                )
            } else {
                Emit::Never
            }
        }
        None => Emit::Never,
    };
    SCRATCH_BUSY.store(false, Ordering::Release);
    r
}

fn written(ok: bool, len: usize, budget: &mut usize) -> Emit {
    if ok {
        *budget -= len;
        Emit::Written
    } else {
        Emit::Later
    }
}

/// Bytes of the scratch buffer: the largest record's strings and table.
const SCRATCH_BYTES: usize = 3 * MAX_STR_BYTES as usize + MAX_TABLE_BYTES as usize;
struct Scratch(UnsafeCell<[u8; SCRATCH_BYTES]>);
// SAFETY: used by one handler at a time, under SCRATCH_BUSY.
unsafe impl Sync for Scratch {}
static SCRATCH: Scratch = Scratch(UnsafeCell::new([0; SCRATCH_BYTES]));
static SCRATCH_BUSY: AtomicBool = AtomicBool::new(false);
