//! The capture ring: shared memory (a memfd the collector creates and hands to the agent)
//! into which the agent's SIGTRAP handler writes capture records, and from which the
//! collector's link thread copies them into `python-<pid>.bin`.
//!
//! Why not `write(2)` to the file, as before: a write to a file costs the handler about
//! 3 µs (inode lock, page cache, timestamps) of its 7; a copy into shared memory costs
//! nanoseconds.
//!
//! Layout: a [`RingHeader`] page, then `size` data bytes (a power of two). Positions
//! `head` and `tail` count bytes from the start and only grow; a position's byte is at
//! `pos & (size - 1)` in the data.
//!
//! Producers (every thread of the process and of its forked children, which inherit the
//! mapping; async-signal-safe, no locks): reserve `len` bytes by compare-and-swap on
//! `head`, only when they fit before `tail + size` (else count one in `lost` and drop
//! the record); copy the record in, its first 4 bytes (the length) last, with release.
//! Records are whole multiples of 8 bytes, so a record's 8-byte header never wraps.
//!
//! The consumer (one thread of the collector): at `tail`, a zero length means the record
//! there is still being written: stop until the next pass. Else copy it out, zero its
//! bytes (the next producer over them needs a zero length) and advance `tail` with
//! release. A producer that dies between reserving and committing (its process killed
//! inside the handler) stops the ring there: what follows is lost with it.
//!
//! Shared by the collector and the agent (crate `hwprof-wire`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// `RingHeader.magic`.
pub const RING_MAGIC: u64 = u64::from_le_bytes(*b"HWPYRING");
/// Bytes before the data (one page).
pub const RING_HEADER_BYTES: usize = 4096;
/// Data bytes of a ring: 512 KiB, about 1,000 captures, ~1 s of one thread at 999 Hz;
/// the collector empties it every 10 ms. Small enough to stay in cache and to be mapped
/// populated (no page fault in the handler).
pub const RING_DATA_BYTES: usize = 512 << 10;

/// Start of the ring's memory.
#[repr(C)]
pub struct RingHeader {
    /// [`RING_MAGIC`].
    pub magic: u64,
    /// Data bytes (a power of two).
    pub size: u64,
    /// Bytes reserved by producers.
    pub head: AtomicU64,
    /// Bytes consumed.
    pub tail: AtomicU64,
    /// Records dropped because the ring was full.
    pub lost: AtomicU64,
}

/// A ring mapped at `base` (`RING_HEADER_BYTES + size` bytes, page-aligned).
#[derive(Clone, Copy)]
pub struct Ring {
    base: *mut u8,
    mask: u64,
}

// SAFETY: the ring is shared memory accessed only through atomics and the reservation
// protocol above (any number of producers, one consumer); the pointer itself may move
// between and be shared by threads.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// Initializes fresh (zeroed) memory as an empty ring of `size` data bytes.
    ///
    /// # Safety
    /// `base` points to `RING_HEADER_BYTES + size` writable, zeroed, page-aligned bytes
    /// that stay mapped while the ring is used.
    pub unsafe fn init(base: *mut u8, size: u64) -> Option<Ring> {
        if !size.is_power_of_two() || size < 4096 {
            return None;
        }
        // SAFETY: per the contract, base holds a RingHeader (aligned, writable).
        unsafe {
            let h = base.cast::<RingHeader>();
            (*h).size = size;
            (*h).magic = RING_MAGIC;
        }
        Some(Ring {
            base,
            mask: size - 1,
        })
    }

    /// The ring at `base`, when its header is valid for `mapped` bytes.
    ///
    /// # Safety
    /// `base` points to `mapped` readable and writable, page-aligned bytes that stay
    /// mapped while the ring is used.
    pub unsafe fn attach(base: *mut u8, mapped: usize) -> Option<Ring> {
        if base.is_null() || mapped < RING_HEADER_BYTES {
            return None;
        }
        // SAFETY: base holds at least a header (checked above).
        let (magic, size) = unsafe {
            let h = base.cast::<RingHeader>();
            ((*h).magic, (*h).size)
        };
        let fits = (size as usize).checked_add(RING_HEADER_BYTES) == Some(mapped);
        (magic == RING_MAGIC && size.is_power_of_two() && size >= 4096 && fits).then_some(Ring {
            base,
            mask: size - 1,
        })
    }

    fn header(&self) -> &RingHeader {
        // SAFETY: validated at init/attach; the memory stays mapped (contract).
        unsafe { &*self.base.cast::<RingHeader>() }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the data follows the header page within the mapping.
        unsafe { self.base.add(RING_HEADER_BYTES) }
    }

    /// Records dropped because the ring was full.
    pub fn lost(&self) -> u64 {
        self.header().lost.load(Ordering::Relaxed)
    }

    /// Appends one record made of `parts` (its first 4 bytes are its length, a multiple
    /// of 8). False when it does not fit (counted in `lost`). Async-signal-safe.
    pub fn write(&self, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let size = self.mask + 1;
        if len < 8 || !len.is_multiple_of(8) || len as u64 > size / 2 {
            return false;
        }
        let h = self.header();
        let mut start = h.head.load(Ordering::Relaxed);
        loop {
            let tail = h.tail.load(Ordering::Acquire);
            // Wrapping: a tail scribbled over by the program must not panic in a handler.
            if (start + len as u64).wrapping_sub(tail) > size {
                h.lost.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            match h.head.compare_exchange_weak(
                start,
                start + len as u64,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => start = now,
            }
        }
        // Everything but the length word, then the length with release: the consumer
        // sees a complete record or a zero length.
        let mut first = [0u8; 4];
        let mut k = 0usize; // offset in the record
        for part in parts {
            let mut p = *part;
            while k < 4 && !p.is_empty() {
                first[k] = p[0];
                p = &p[1..];
                k += 1;
            }
            while !p.is_empty() {
                let at = ((start + k as u64) & self.mask) as usize;
                let n = p.len().min(size as usize - at);
                // SAFETY: [at, at+n) is inside the data (n stops at its end); the
                // reservation makes these bytes ours until the length is published.
                unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), self.data().add(at), n) };
                p = &p[n..];
                k += n;
            }
        }
        // SAFETY: the record start is 8-aligned in the data, so the word is aligned and
        // inside it.
        let word =
            unsafe { AtomicU32::from_ptr(self.data().add((start & self.mask) as usize).cast()) };
        word.store(u32::from_le_bytes(first), Ordering::Release);
        true
    }

    /// Moves every committed record into `out`; returns how many.
    pub fn drain(&self, out: &mut Vec<u8>) -> usize {
        self.drain_counting(out, &mut 0)
    }

    /// [`Ring::drain`], adding to `corrupt` the bytes dropped because the ring's memory
    /// was overwritten (a length no producer writes, or a head more than the ring ahead
    /// of the tail: the program can scribble over the mapping).
    pub fn drain_counting(&self, out: &mut Vec<u8>, corrupt: &mut u64) -> usize {
        let h = self.header();
        let size = self.mask + 1;
        let mut tail = h.tail.load(Ordering::Relaxed);
        let mut n = 0;
        if h.head.load(Ordering::Acquire).wrapping_sub(tail) > size {
            let head = h.head.load(Ordering::Acquire);
            *corrupt += head.wrapping_sub(tail);
            // SAFETY: zeroing the whole data area we own the consumer side of.
            unsafe { std::ptr::write_bytes(self.data(), 0, size as usize) };
            h.tail.store(head, Ordering::Release);
            return 0;
        }
        loop {
            let head = h.head.load(Ordering::Acquire);
            if tail == head {
                break;
            }
            // head and tail live in memory the profiled program can write: a tail that
            // is not 8-aligned or more than the ring's size behind head was not left
            // by this consumer or a producer (reading at it could cross the end of the
            // mapping). Drop everything, as for a bad length below.
            if !tail.is_multiple_of(8) || head.wrapping_sub(tail) > size {
                // SAFETY: zeroing the whole data area we own the consumer side of.
                unsafe { std::ptr::write_bytes(self.data(), 0, size as usize) };
                h.tail.store(head, Ordering::Release);
                break;
            }
            let at = (tail & self.mask) as usize;
            // SAFETY: 8-aligned record start inside the data.
            let word = unsafe { AtomicU32::from_ptr(self.data().add(at).cast()) };
            let len = word.load(Ordering::Acquire) as u64;
            if len == 0 {
                break; // still being written
            }
            if len < 8 || !len.is_multiple_of(8) || len > size / 2 {
                // Not a length a producer writes: the memory was overwritten. Drop all.
                let head = h.head.load(Ordering::Acquire);
                *corrupt += head.wrapping_sub(tail);
                tail = head;
                // SAFETY: zeroing the whole data area we own the consumer side of.
                unsafe { std::ptr::write_bytes(self.data(), 0, size as usize) };
                h.tail.store(tail, Ordering::Release);
                break;
            }
            // At most two pieces: up to the end of the data, then from its start.
            let mut left = len as usize;
            let mut at = at;
            while left > 0 {
                let n = left.min(size as usize - at);
                // SAFETY: [at, at+n) is inside the data; committed bytes the producer no
                // longer writes, and no other producer reserves before tail moves.
                unsafe {
                    let p = self.data().add(at);
                    out.extend_from_slice(std::slice::from_raw_parts(p, n));
                    std::ptr::write_bytes(p, 0, n);
                }
                left -= n;
                at = 0;
            }
            tail += len;
            h.tail.store(tail, Ordering::Release);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<u64>);

    impl Mem {
        fn new(size: usize) -> Mem {
            Mem(vec![0u64; (RING_HEADER_BYTES + size) / 8])
        }
        fn ring(&mut self, size: u64) -> Ring {
            // SAFETY: zeroed, 8-aligned, large enough, outlives the ring in each test.
            unsafe { Ring::init(self.0.as_mut_ptr().cast(), size) }.expect("ring")
        }
    }

    fn record(tag: u32, words: usize) -> Vec<u8> {
        let len = 8 + 8 * words;
        let mut v = Vec::with_capacity(len);
        v.extend_from_slice(&(len as u32).to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        for i in 0..words {
            v.extend_from_slice(&(tag as u64 * 1000 + i as u64).to_le_bytes());
        }
        v
    }

    fn split(mut buf: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while buf.len() >= 8 {
            let len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
            out.push(buf[..len].to_vec());
            buf = &buf[len..];
        }
        out
    }

    #[test]
    fn records_come_out_whole_and_in_order_across_the_wrap() {
        let mut m = Mem::new(4096);
        let r = m.ring(4096);
        let mut out = Vec::new();
        let mut want = Vec::new();
        for tag in 0..200u32 {
            let rec = record(tag, (tag % 7) as usize + 1);
            let (a, b) = rec.split_at(12);
            assert!(r.write(&[a, b]));
            want.push(rec);
            if tag % 5 == 4 {
                r.drain(&mut out);
            }
        }
        r.drain(&mut out);
        assert_eq!(split(&out), want);
        assert_eq!(r.lost(), 0);
    }

    #[test]
    fn a_full_ring_drops_and_counts() {
        let mut m = Mem::new(4096);
        let r = m.ring(4096);
        let rec = record(1, 63); // 512 bytes
        let written = (0..10).filter(|_| r.write(&[&rec])).count();
        assert_eq!(written, 8);
        assert_eq!(r.lost(), 2);
        let mut out = Vec::new();
        assert_eq!(r.drain(&mut out), 8);
        assert!(r.write(&[&rec]));
    }

    #[test]
    fn uncommitted_records_wait_and_bad_lengths_are_refused() {
        let mut m = Mem::new(4096);
        let r = m.ring(4096);
        assert!(!r.write(&[&[1u8, 0, 0, 0, 0, 0, 0]])); // not a multiple of 8
        // A reservation without its length yet: the consumer stops there.
        r.header().head.store(16, Ordering::Release);
        let mut out = Vec::new();
        assert_eq!(r.drain(&mut out), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn an_overwritten_length_drops_to_the_head_and_is_counted() {
        let mut m = Mem::new(4096);
        let r = m.ring(4096);
        let rec = record(1, 3); // 32 bytes
        assert!(r.write(&[&rec]) && r.write(&[&rec]) && r.write(&[&rec]));
        // The program scribbles a length of 4 over the second record.
        // SAFETY: the second record's length word, inside the data.
        unsafe { r.data().add(32).cast::<u32>().write(4) };
        let (mut out, mut corrupt) = (Vec::new(), 0);
        assert_eq!(r.drain_counting(&mut out, &mut corrupt), 1);
        assert_eq!(corrupt, 64);
        // The ring goes on.
        assert!(r.write(&[&rec]));
        assert_eq!(r.drain_counting(&mut out, &mut corrupt), 1);
        assert_eq!(corrupt, 64);
        // A head scribbled far ahead.
        r.header().head.store(1 << 40, Ordering::Release);
        assert_eq!(r.drain_counting(&mut out, &mut corrupt), 0);
        assert!(corrupt > 1 << 39);
        assert_eq!(r.header().tail.load(Ordering::Relaxed), 1 << 40);
    }

    #[test]
    fn concurrent_producers_lose_nothing_that_fits() {
        let mut m = Mem::new(1 << 16);
        let r = m.ring(1 << 16);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mut out = Vec::new();
        std::thread::scope(|s| {
            for t in 0..4u32 {
                s.spawn(move || {
                    for i in 0..5000u32 {
                        let rec = record(t * 100_000 + i, 3);
                        while !r.write(&[&rec]) {
                            std::hint::spin_loop();
                        }
                    }
                });
            }
            let consumer = s.spawn(|| {
                let mut got = Vec::new();
                while !stop.load(Ordering::Relaxed)
                    || r.header().tail.load(Ordering::Relaxed)
                        != r.header().head.load(Ordering::Relaxed)
                {
                    r.drain(&mut got);
                }
                got
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            while r.header().head.load(Ordering::Relaxed) < 4 * 5000 * 32 {
                std::thread::yield_now();
            }
            stop.store(true, Ordering::Relaxed);
            out = consumer.join().unwrap();
        });
        let recs = split(&out);
        assert_eq!(recs.len(), 20_000);
        for t in 0..4u32 {
            let mine: Vec<u32> = recs
                .iter()
                .map(|r| u32::from_le_bytes(r[4..8].try_into().unwrap()))
                .filter(|tag| tag / 100_000 == t)
                .collect();
            assert_eq!(mine, (0..5000).map(|i| t * 100_000 + i).collect::<Vec<_>>());
        }
    }
}
