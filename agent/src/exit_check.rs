//! The identity of the agent's socket (`st_dev`, `st_ino`, recorded at connect), so that
//! at exit the agent writes "bye" only to its own socket: the program may have closed
//! the fd (`os.closerange`) and reused the number for a file or socket of its own.

use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering};

static DEV: AtomicU64 = AtomicU64::new(0);
static INO: AtomicU64 = AtomicU64::new(0);

fn identity(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: fstat into a zeroed struct of the right type.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

/// Records the identity of the connected socket `fd`.
pub fn remember(fd: c_int) {
    if let Some((dev, ino)) = identity(fd) {
        DEV.store(dev, Ordering::SeqCst);
        INO.store(ino, Ordering::SeqCst);
    }
}

/// Whether `fd` is still the socket [`remember`]ed.
pub fn still_ours(fd: c_int) -> bool {
    let ino = INO.load(Ordering::SeqCst);
    ino != 0 && identity(fd) == Some((DEV.load(Ordering::SeqCst), ino))
}
