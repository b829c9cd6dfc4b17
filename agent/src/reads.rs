//! Checked reads of interpreter memory (see the comment below), the small decoders of
//! the bytes read.

use super::*;

// ---------------------------------------------------------------- the signal handler
//
// Stack budget: the handler (on the program's alternate stack when the thread has one,
// `SA_ONSTACK`) keeps its buffers in a `scratch` slot, not on the stack; its own frames
// (`on_sigtrap` → `capture` → the decoder's walk → `read_multi` → the safe copy) use
// about 1.4 KiB of stack; a capture that meets a new code object goes deeper
// (`code_identity::note` → `self_first` → `str_data` → `read_multi`), about 2 KiB
// (measured from the binary, docs/security.md), plus what a chained program handler uses.
//
// Memory reads: every read of interpreter memory (thread states, frames, code objects,
// the `self` object) is checked: an unmapped or protected address gives an error, never
// a fault in the target. A plain load would be safe only for memory proven mapped *and*
// not unmappable, such as the interpreter's static data (`_PyRuntime`). Heap memory is
// neither: a pointer read while the thread was between two stores (a frame being
// pushed), a stale value-stack slot, or a cached thread state of a thread that ended
// can point into memory freed and unmapped since (obmalloc arenas, 3.11+ data stack
// chunks and large malloc blocks are returned with munmap), and a table of the
// process's mappings can only say what was mapped when it was read. So reads use the
// fault-tolerant copy of `safe_load.rs` (plain loads at one instruction whose faults
// our SIGSEGV/SIGBUS handler recovers; no system call), or `process_vm_readv` on this
// process (EFAULT instead of a fault; one system call per frame) when those handlers
// are not installed or the thread has SIGSEGV/SIGBUS blocked. Costs: docs/performance.md,
// "Python handler".

/// Reads of interpreter memory through `process_vm_readv` (HWPROF_AGENT_STATS).
pub(crate) static CHECKED_READS: AtomicU64 = AtomicU64::new(0);

/// Reads `buf.len()` bytes at `addr` of this process, checked (see above); false on any
/// failure (an unmapped address included).
#[inline]
pub(crate) fn read_mem(pid: libc::pid_t, addr: u64, buf: &mut [u8]) -> bool {
    read_multi(pid, &mut [(addr, buf)]) == 1
}

#[inline]
pub(crate) fn read_u64(pid: libc::pid_t, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    read_mem(pid, addr, &mut b).then(|| u64::from_le_bytes(b))
}

/// Field reads shared with the collector's walk (`hwprof-wire`): a word of a copied
/// window, and `a + off` (0 when the field is absent).
pub(crate) use crate::wire::frames::{at as add, word};

/// Reads several regions (at most 4), skipping requests at address 0 or NONE; returns a
/// bit mask of the requests read completely. With the safe copy each is read on its
/// own; with one `process_vm_readv` the kernel stops at the first one that fails.
#[inline]
pub(crate) fn read_multi(pid: libc::pid_t, reqs: &mut [(u64, &mut [u8])]) -> u32 {
    if safe_load::usable() {
        // No system call: each request on its own (one failing does not stop the rest),
        // and no iovecs to build (they were a tenth of a warm capture's time).
        let mut mask = 0;
        for (i, (addr, buf)) in reqs.iter_mut().enumerate() {
            if *addr != 0 && *addr != NONE && safe_load::read(*addr, buf) {
                mask |= 1 << i;
            }
        }
        return mask;
    }
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut local = [empty; 4];
    let mut remote = [empty; 4];
    let mut which = [0usize; 4];
    let mut k = 0;
    for (i, (addr, buf)) in reqs.iter_mut().enumerate() {
        if *addr == 0 || *addr == NONE {
            continue;
        }
        let (Some(l), Some(r), Some(w)) = (local.get_mut(k), remote.get_mut(k), which.get_mut(k))
        else {
            break;
        };
        *l = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        *r = libc::iovec {
            iov_base: *addr as *mut c_void,
            iov_len: buf.len(),
        };
        *w = i;
        k += 1;
    }
    if k == 0 {
        return 0;
    }
    CHECKED_READS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: process_vm_readv on ourselves copies into the local buffers (each live and
    // of its iovec's length) and reports EFAULT for unmapped remote addresses instead of
    // faulting.
    let r =
        unsafe { libc::process_vm_readv(pid, local.as_ptr(), k as _, remote.as_ptr(), k as _, 0) };
    let mut got = if r < 0 { 0 } else { r as usize };
    let mut mask = 0;
    for (l, &i) in local.iter().zip(&which).take(k) {
        if got < l.iov_len {
            break;
        }
        got -= l.iov_len;
        mask |= 1 << i;
    }
    mask
}
