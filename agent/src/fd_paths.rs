//! Locks mode: what a file descriptor a wait was on is (`/data/in.dat`, `socket:[…]`,
//! `pipe:[…]`), for the wait's record.
//!
//! Resolved in the agent, once per open file: the link `/proc/self/fd/N` is read (a
//! path walk and a `d_path`, microseconds) the first time a wait on fd N is marked,
//! and cached per fd with the file's (device, inode). Every later marked wait on N
//! costs one `fstat` (a fraction of a microsecond, beside the marker sample's ~4 µs)
//! to check that N is still the same file. The cache is validated that way rather
//! than invalidated by interposing `close`/`dup2`: a descriptor closed where no
//! interposer sees it (`fclose`, `close_range`, a raw `syscall`) and reused for
//! another file would otherwise keep the old path. The collector cannot do it either:
//! it reads `/proc/PID/fd` only after the fact, when the fd may be closed or reused.
//!
//! Only waits that reached the threshold come here; nothing on the fast paths.
//! The cache is lock-free (threads mark waits concurrently, and a marker may run in a
//! signal handler's interrupted thread): each slot is a sequence word (generation
//! << 2 | phase) around plain atomic words, read seqlock-style, filled by whoever wins
//! the phase change to "filling"; a reader that loses a race resolves without caching.

use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering, fence};

/// Bytes of a path kept (with its terminating NUL); longer paths are cut.
pub(crate) const PATH_BYTES: usize = 192;
const WORDS: usize = PATH_BYTES / 8;
/// Descriptors below this are cached; higher ones are resolved at each marked wait.
const SLOTS: usize = 1024;

const EMPTY: u64 = 0;
const FILLING: u64 = 1;
const READY: u64 = 2;

struct Slot {
    seq: AtomicU64,
    dev: AtomicU64,
    ino: AtomicU64,
    words: [AtomicU64; WORDS],
}

#[allow(clippy::declare_interior_mutable_const)]
const SLOT: Slot = Slot {
    seq: AtomicU64::new(EMPTY),
    dev: AtomicU64::new(0),
    ino: AtomicU64::new(0),
    words: [const { AtomicU64::new(0) }; WORDS],
};

/// In the agent's .bss: untouched slots cost no memory.
static CACHE: [Slot; SLOTS] = [SLOT; SLOTS];

/// Writes fd's path, NUL-terminated, into `out`; false when it has none to tell
/// (closed, no /proc). `errno` may change: the caller keeps the program's.
pub(crate) fn path_of(fd: c_int, out: &mut [u8; PATH_BYTES]) -> bool {
    if fd < 0 {
        return false;
    }
    // SAFETY: a zeroed stat is a valid out-buffer for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only `st`; a bad fd fails with EBADF.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    let (dev, ino) = (st.st_dev, st.st_ino);
    let Some(slot) = CACHE.get(fd as usize) else {
        return readlink_fd(fd, out);
    };
    let s1 = slot.seq.load(Ordering::Acquire);
    if s1 & 3 == READY
        && slot.dev.load(Ordering::Relaxed) == dev
        && slot.ino.load(Ordering::Relaxed) == ino
    {
        for (i, w) in slot.words.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        fence(Ordering::Acquire);
        if slot.seq.load(Ordering::Relaxed) == s1 {
            return true;
        }
    }
    if !readlink_fd(fd, out) {
        return false;
    }
    // Cache it, unless another thread is filling this slot right now.
    let filling = ((s1 >> 2) + 1) << 2 | FILLING;
    if s1 & 3 != FILLING
        && slot
            .seq
            .compare_exchange(s1, filling, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    {
        slot.dev.store(dev, Ordering::Relaxed);
        slot.ino.store(ino, Ordering::Relaxed);
        for (i, w) in slot.words.iter().enumerate() {
            let b: [u8; 8] = out[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        slot.seq.store((filling & !3) | READY, Ordering::Release);
    }
    true
}

/// `readlink("/proc/self/fd/N")` into `out`, NUL-terminated, without allocating.
fn readlink_fd(fd: c_int, out: &mut [u8; PATH_BYTES]) -> bool {
    let mut link = [0u8; 32];
    let prefix = b"/proc/self/fd/";
    link[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let mut n = fd as u32;
    let mut d = 0;
    loop {
        digits[d] = b'0' + (n % 10) as u8;
        d += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..d {
        link[prefix.len() + i] = digits[d - 1 - i];
    }
    // SAFETY: `link` is NUL-terminated (zeroed past the digits); readlink writes at
    // most PATH_BYTES - 1 bytes into `out`.
    let n = unsafe {
        libc::readlink(
            link.as_ptr().cast(),
            out.as_mut_ptr().cast(),
            PATH_BYTES - 1,
        )
    };
    if n <= 0 {
        return false;
    }
    out[n as usize] = 0;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn path(fd: c_int) -> Option<String> {
        let mut out = [0u8; PATH_BYTES];
        path_of(fd, &mut out).then(|| {
            let end = out.iter().position(|&b| b == 0).unwrap_or(PATH_BYTES);
            String::from_utf8_lossy(&out[..end]).into_owned()
        })
    }

    #[test]
    fn a_reused_descriptor_gets_its_new_path() {
        let dir = std::env::temp_dir();
        let a = dir.join(format!("fd_paths_a_{}", std::process::id()));
        let b = dir.join(format!("fd_paths_b_{}", std::process::id()));
        let fa = std::fs::File::create(&a).unwrap();
        let fb = std::fs::File::create(&b).unwrap();
        // A descriptor of our own (other tests open files concurrently).
        let fd = 901;
        // SAFETY: dup2 onto an fd this test owns.
        assert_eq!(unsafe { libc::dup2(fa.as_raw_fd(), fd) }, fd);
        assert_eq!(path(fd).as_deref(), a.to_str());
        // Cached: the same answer.
        assert_eq!(path(fd).as_deref(), a.to_str());
        // Reused for another file, behind the cache's back.
        // SAFETY: as above.
        assert_eq!(unsafe { libc::dup2(fb.as_raw_fd(), fd) }, fd);
        assert_eq!(path(fd).as_deref(), b.to_str());
        // SAFETY: closes the fd this test made.
        unsafe { libc::close(fd) };
        assert_eq!(path(fd), None);
        assert_eq!(path(-1), None);
        let _ = std::fs::remove_file(a);
        let _ = std::fs::remove_file(b);
    }
}
