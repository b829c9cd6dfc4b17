//! Reading another process's memory through a trait ([`ProcessMemory`]), so the Python
//! walkers run the same on a live process ([`LiveMemory`], `process_vm_readv`) and on a
//! recorded image in tests ([`MemoryImage`]). Every read is bounded by the caller.

use std::collections::BTreeMap;

/// A read failed: unmapped address, process gone, or a size over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {len} bytes at {addr:#x} of the target process")]
pub struct ReadError {
    /// Address.
    pub addr: u64,
    /// Length asked.
    pub len: usize,
}

/// A source of another address space's bytes.
pub trait ProcessMemory {
    /// Fills `buf` from `addr`, entirely or not at all.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError>;

    /// A little-endian u64 at `addr`.
    fn read_u64(&self, addr: u64) -> Result<u64, ReadError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// A little-endian i32 at `addr`.
    fn read_i32(&self, addr: u64) -> Result<i32, ReadError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(i32::from_le_bytes(b))
    }

    /// Reads each `(addr, buf)` of `reqs` (at most 32); returns the bit mask of those read
    /// completely. A live process answers them in one system call where all are mapped.
    fn read_each(&self, reqs: &mut [(u64, &mut [u8])]) -> u32 {
        let mut mask = 0;
        for (i, (addr, buf)) in reqs.iter_mut().enumerate().take(32) {
            if self.read(*addr, buf).is_ok() {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// `len` bytes at `addr`, refusing more than `max`.
    fn read_vec(&self, addr: u64, len: usize, max: usize) -> Result<Vec<u8>, ReadError> {
        if len > max {
            return Err(ReadError { addr, len });
        }
        let mut v = vec![0u8; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }

    /// A NUL-terminated C string of at most `max` bytes.
    fn read_cstr(&self, addr: u64, max: usize) -> Result<String, ReadError> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 64];
        while out.len() < max {
            // Read byte-wise near the end of a page would fail for a whole chunk; fall
            // back to single bytes then.
            let a = addr + out.len() as u64;
            let got = if self.read(a, &mut chunk).is_ok() {
                &chunk[..]
            } else {
                self.read(a, &mut chunk[..1])?;
                &chunk[..1]
            };
            if let Some(p) = got.iter().position(|&c| c == 0) {
                out.extend_from_slice(&got[..p]);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            out.extend_from_slice(got);
        }
        Err(ReadError { addr, len: max })
    }
}

/// A live process, read with `process_vm_readv` (no stop, no ptrace attach; needs the
/// same uid or CAP_SYS_PTRACE, like `/proc/PID/mem`).
#[derive(Debug, Clone, Copy)]
pub struct LiveMemory {
    /// The process.
    pub pid: u32,
}

impl ProcessMemory for LiveMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        use nix::sys::uio::{RemoteIoVec, process_vm_readv};
        let err = ReadError {
            addr,
            len: buf.len(),
        };
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len();
        let remote = [RemoteIoVec {
            base: usize::try_from(addr).map_err(|_| err)?,
            len,
        }];
        let mut local = [std::io::IoSliceMut::new(buf)];
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        match process_vm_readv(pid, &mut local, &remote) {
            Ok(n) if n == len => Ok(()),
            _ => Err(err),
        }
    }

    /// One `process_vm_readv` for all the requests: a stack walk asks for a frame's
    /// fields, its code object and a name's hash at once, and a system call each (with
    /// a second walk to check the leaf) made a read of 1,000 frames take ~13 ms. The
    /// kernel stops at the first request it cannot read; the ones after it are read by
    /// another call, so a failure costs a call and changes nothing else.
    fn read_each(&self, reqs: &mut [(u64, &mut [u8])]) -> u32 {
        use nix::sys::uio::{RemoteIoVec, process_vm_readv};
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let n = reqs.len().min(32);
        let mut mask = 0u32;
        let mut first = 0;
        while first < n {
            let remote: Vec<RemoteIoVec> = reqs[first..n]
                .iter()
                .map(|(addr, buf)| RemoteIoVec {
                    base: *addr as usize,
                    len: buf.len(),
                })
                .collect();
            let mut local: Vec<std::io::IoSliceMut> = reqs[first..n]
                .iter_mut()
                .map(|(_, b)| std::io::IoSliceMut::new(b))
                .collect();
            let mut got = process_vm_readv(pid, &mut local, &remote).unwrap_or(0);
            // The requests read in full, in order; the first short one failed.
            let mut i = first;
            while i < n && got >= remote[i - first].len {
                got -= remote[i - first].len;
                mask |= 1 << i;
                i += 1;
            }
            first = i + 1;
        }
        mask
    }
}

/// A recorded memory image: regions of bytes at addresses. Tests build one by hand or
/// by copying regions out of a live process ([`MemoryImage::capture`]).
#[derive(Debug, Clone, Default)]
pub struct MemoryImage {
    regions: BTreeMap<u64, Vec<u8>>,
}

impl MemoryImage {
    /// An empty image.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a region.
    pub fn insert(&mut self, addr: u64, bytes: Vec<u8>) {
        match self.regions.get_mut(&addr) {
            Some(old) if old.len() > bytes.len() => old[..bytes.len()].copy_from_slice(&bytes),
            _ => {
                self.regions.insert(addr, bytes);
            }
        }
    }

    /// Writes a u64 into an existing region.
    pub fn put_u64(&mut self, addr: u64, v: u64) {
        if let Some((&start, r)) = self.regions.range_mut(..=addr).next_back() {
            let o = (addr - start) as usize;
            if let Some(s) = r.get_mut(o..o + 8) {
                s.copy_from_slice(&v.to_le_bytes());
            }
        }
    }

    /// Copies `len` bytes at `addr` from another memory into this image.
    pub fn capture(&mut self, from: &dyn ProcessMemory, addr: u64, len: usize) -> bool {
        let mut v = vec![0u8; len];
        if from.read(addr, &mut v).is_ok() {
            self.insert(addr, v);
            true
        } else {
            false
        }
    }
}

impl ProcessMemory for MemoryImage {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let err = ReadError {
            addr,
            len: buf.len(),
        };
        let (&start, r) = self.regions.range(..=addr).next_back().ok_or(err)?;
        let o = usize::try_from(addr - start).map_err(|_| err)?;
        let end = o.checked_add(buf.len()).ok_or(err)?;
        buf.copy_from_slice(r.get(o..end).ok_or(err)?);
        Ok(())
    }
}

/// A memory that records every region read from another one (to build fixtures).
pub struct Recorder<'a> {
    inner: &'a dyn ProcessMemory,
    /// What was read.
    pub image: std::cell::RefCell<MemoryImage>,
}

impl<'a> Recorder<'a> {
    /// Records reads of `inner`.
    pub fn new(inner: &'a dyn ProcessMemory) -> Self {
        Recorder {
            inner,
            image: Default::default(),
        }
    }
}

impl ProcessMemory for Recorder<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.inner.read(addr, buf)?;
        self.image.borrow_mut().insert(addr, buf.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One batch of this process's memory, an unmapped address and an empty request among
    /// the readable ones: each readable one is read, wherever the failure stands.
    #[test]
    fn live_batches_read_around_a_failure() {
        let me = LiveMemory {
            pid: std::process::id(),
        };
        let words: [u64; 3] = [0x1111, 0x2222, 0x3333];
        let at = |i: usize| &words[i] as *const u64 as u64;
        for bad in 0..4 {
            let (mut b0, mut b1, mut b2, mut b3) = ([0u8; 8], [0u8; 8], [0u8; 8], [0u8; 8]);
            let mut reqs: Vec<(u64, &mut [u8])> =
                vec![(0, &mut b0), (0, &mut b1), (0, &mut b2), (0, &mut b3)];
            let mut next = 0;
            for (i, r) in reqs.iter_mut().enumerate() {
                if i == bad {
                    r.0 = 8; // the first page is never mapped
                } else {
                    r.0 = at(next);
                    next += 1;
                }
            }
            let mut empty: [u8; 0] = [];
            reqs.push((at(0), &mut empty));
            let mask = me.read_each(&mut reqs);
            assert_eq!(mask, 0b11111 & !(1 << bad), "failure at {bad}");
            let got: Vec<u64> = reqs[..4]
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != bad)
                .map(|(_, (_, b))| u64::from_le_bytes((**b).try_into().unwrap_or_default()))
                .collect();
            assert_eq!(got, words, "failure at {bad}");
        }
    }
}
