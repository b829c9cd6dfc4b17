//! Locks mode: the time a program spends in a blocking MPI call is MPI wait, blocked or
//! polling. MPI libraries wait by polling (Open MPI spins in `opal_progress`, yielding
//! when oversubscribed), on CPU, where switch records see nothing: so the agent times
//! the MPI functions the program calls, and a call that took at least the threshold is
//! a wait of class `mpi` named by that function (`wire::MPI_FUNCTIONS`), its whole
//! duration counted (finalize adds the on-CPU part to the off-CPU intervals inside it).
//!
//! The wrappers chain, so that another PMPI tool preloaded or linked with the program
//! (mpiP, Score-P, a tracer, a library that wraps MPI) still sees every call, in either
//! order, and hwprof still times each call once:
//! - our `MPI_X` calls the next definition of `MPI_X` after this library
//!   (`dlsym(RTLD_NEXT)`: a tool preloaded after us, else the MPI library), falling
//!   back to the implementation's `PMPI_X` when there is none;
//! - our `PMPI_X` calls the implementation's `PMPI_X`: a tool that comes first (its
//!   `MPI_X` is the program's, and calls `PMPI_X` as the profiling interface says)
//!   reaches it, so its calls are timed there;
//! - a thread-local depth times only the outermost of the two (ours `MPI_X` → a tool's
//!   `MPI_X` → ours `PMPI_X`, or an MPI library calling its own `PMPI_` functions).
//!
//! Each target is resolved on its first call (the MPI library may be dlopen'ed after
//! start, by mpi4py), cached in an atomic (one relaxed load afterwards, async-signal
//! safe), and never resolves into this library (which would recurse forever).
//!
//! Every wrapped function takes integer and pointer arguments only and returns an
//! `int`; on x86-64 those travel in the same registers and 8-byte stack slots whatever
//! their C types, so each wrapper takes and passes on as many 64-bit words as the
//! function has arguments (a 32-bit `int` is read by the callee from the low half, as
//! it would be). Without `HWPROF_AGENT_WAITS` a wrapper is one relaxed load, the
//! thread-local depth and an indirect call.

#![allow(non_snake_case)] // the MPI functions' names

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a wrapper returns when the implementation's function cannot be found (it
/// always is in a program that calls MPI: it is linked or dlopen'ed by then):
/// Open MPI's `MPI_ERR_OTHER`.
const MPI_ERR_OTHER: c_int = 16;

macro_rules! word {
    ($x:ident) => {
        u64
    };
}

/// Declares each wrapper `$name` and `$pname` (index `$idx` of `wire::MPI_FUNCTIONS`,
/// which lists the same names in the same order), calling the next `$name` (or the
/// implementation's `$pmpi`) and the implementation's `$pmpi` with their arguments.
macro_rules! mpi_wrappers {
    ($($idx:literal $name:ident $pname:ident $mpi:literal $pmpi:literal ($($a:ident),*);)*) => {
        /// The MPI functions and the implementation's, by index.
        const MPI_NAMES: &[&CStr] = &[$($mpi),*];
        const PMPI_NAMES: &[&CStr] = &[$($pmpi),*];
        /// What our `MPI_X` calls, by index (0: not resolved yet).
        static NEXT: [AtomicUsize; MPI_NAMES.len()] =
            [const { AtomicUsize::new(0) }; MPI_NAMES.len()];
        /// What our `PMPI_X` calls, by index (0: not resolved yet).
        static REAL: [AtomicUsize; PMPI_NAMES.len()] =
            [const { AtomicUsize::new(0) }; PMPI_NAMES.len()];
        $(
            mpi_wrapper!($name, next, $idx, ($($a),*));
            mpi_wrapper!($pname, real, $idx, ($($a),*));
        )*
    };
}

/// Declares the wrapper `$name` of the MPI function `$idx`: the function `$target($idx)`
/// resolves ([`next`] or [`real`]) called with the caller's arguments, timed when
/// outermost.
macro_rules! mpi_wrapper {
    ($name:ident, $target:ident, $idx:literal, ($($a:ident),*)) => {
        #[doc = concat!("# Safety\nSame contract as `", stringify!($name), "`.")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($a: u64),*) -> c_int {
            let p = $target($idx);
            if p == 0 {
                return MPI_ERR_OTHER;
            }
            // SAFETY: p is a definition of this MPI function (a tool's or the
            // implementation's), which takes these integer and pointer arguments (see
            // the module's comment); they are our caller's, passed through unchanged.
            let f = unsafe {
                std::mem::transmute::<usize, unsafe extern "C" fn($(word!($a)),*) -> c_int>(p)
            };
            // SAFETY: as above.
            outermost_timed($idx, || unsafe { f($($a),*) })
        }
    };
}

mpi_wrappers! {
    0 MPI_Barrier PMPI_Barrier c"MPI_Barrier" c"PMPI_Barrier" (comm);
    1 MPI_Bcast PMPI_Bcast c"MPI_Bcast" c"PMPI_Bcast" (buf, count, dtype, root, comm);
    2 MPI_Reduce PMPI_Reduce c"MPI_Reduce" c"PMPI_Reduce"
        (sbuf, rbuf, count, dtype, op, root, comm);
    3 MPI_Allreduce PMPI_Allreduce c"MPI_Allreduce" c"PMPI_Allreduce"
        (sbuf, rbuf, count, dtype, op, comm);
    4 MPI_Gather PMPI_Gather c"MPI_Gather" c"PMPI_Gather"
        (sbuf, scount, stype, rbuf, rcount, rtype, root, comm);
    5 MPI_Allgather PMPI_Allgather c"MPI_Allgather" c"PMPI_Allgather"
        (sbuf, scount, stype, rbuf, rcount, rtype, comm);
    6 MPI_Scatter PMPI_Scatter c"MPI_Scatter" c"PMPI_Scatter"
        (sbuf, scount, stype, rbuf, rcount, rtype, root, comm);
    7 MPI_Alltoall PMPI_Alltoall c"MPI_Alltoall" c"PMPI_Alltoall"
        (sbuf, scount, stype, rbuf, rcount, rtype, comm);
    8 MPI_Recv PMPI_Recv c"MPI_Recv" c"PMPI_Recv" (buf, count, dtype, src, tag, comm, status);
    9 MPI_Send PMPI_Send c"MPI_Send" c"PMPI_Send" (buf, count, dtype, dest, tag, comm);
    10 MPI_Ssend PMPI_Ssend c"MPI_Ssend" c"PMPI_Ssend" (buf, count, dtype, dest, tag, comm);
    11 MPI_Sendrecv PMPI_Sendrecv c"MPI_Sendrecv" c"PMPI_Sendrecv"
        (sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, src, rtag, comm, status);
    12 MPI_Wait PMPI_Wait c"MPI_Wait" c"PMPI_Wait" (req, status);
    13 MPI_Waitall PMPI_Waitall c"MPI_Waitall" c"PMPI_Waitall" (count, reqs, statuses);
    14 MPI_Waitany PMPI_Waitany c"MPI_Waitany" c"PMPI_Waitany" (count, reqs, index, status);
    15 MPI_Waitsome PMPI_Waitsome c"MPI_Waitsome" c"PMPI_Waitsome"
        (count, reqs, outcount, indices, statuses);
    16 MPI_Probe PMPI_Probe c"MPI_Probe" c"PMPI_Probe" (src, tag, comm, status);
}

thread_local! {
    /// Whether this thread is inside one of our wrappers: an inner one (ours `PMPI_X`
    /// under a tool under our `MPI_X`) passes through untimed.
    static IN_MPI: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, timed as the MPI wait of function `index` unless this thread is already
/// inside a timed MPI call.
#[inline(always)]
fn outermost_timed(index: u64, f: impl FnOnce() -> c_int) -> c_int {
    let Ok(outer) = IN_MPI.try_with(|c| c.replace(true)) else {
        // The thread's TLS is being torn down: untimed.
        return f();
    };
    if outer {
        return f();
    }
    let r = crate::waits::timed_mpi(index, f);
    let _ = IN_MPI.try_with(|c| c.set(false));
    r
}

// The wrappers' indices are those of the names finalize shows.
const _: () = assert!(PMPI_NAMES.len() == crate::wire::MPI_FUNCTIONS.len());

/// What our `MPI_X` of `index` calls: the next `MPI_X`, else the implementation's.
#[inline(always)]
fn next(index: usize) -> usize {
    cached(&NEXT[index], index, resolve_next)
}

/// The implementation's `PMPI_X` of `index`.
#[inline(always)]
fn real(index: usize) -> usize {
    cached(&REAL[index], index, resolve_real)
}

/// The address in `cache`, else `resolve(index)` (which stores it there).
#[inline(always)]
fn cached(cache: &AtomicUsize, index: usize, resolve: fn(usize) -> usize) -> usize {
    match cache.load(Ordering::Relaxed) {
        0 => resolve(index),
        v => v,
    }
}

#[cold]
fn resolve_next(index: usize) -> usize {
    let p = crate::next_symbol(MPI_NAMES[index]);
    let p = if p != 0 && !is_ours(p) {
        p
    } else {
        real(index)
    };
    NEXT[index].store(p, Ordering::Relaxed);
    p
}

#[cold]
fn resolve_real(index: usize) -> usize {
    let name = PMPI_NAMES[index];
    let mut p = crate::next_symbol(name);
    if p == 0 || is_ours(p) {
        p = find_in_loaded(name);
    }
    REAL[index].store(p, Ordering::Relaxed);
    p
}

/// Whether `addr` is in this library (the agent), by the object `dladdr` names.
fn is_ours(addr: usize) -> bool {
    let base = |a: usize| {
        // SAFETY: Dl_info is plain data (pointers and integers): zero is valid.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: dladdr only reads the loader's tables and fills info.
        let found = unsafe { libc::dladdr(a as *const c_void, &mut info) } != 0;
        found.then_some(info.dli_fbase as usize)
    };
    let ours = base(is_ours as *const () as usize);
    ours.is_some() && base(addr) == ours
}

/// `name` in any loaded object but this library (an MPI library dlopen'ed with
/// RTLD_LOCAL, as by mpi4py, is not in the global scope RTLD_NEXT searches), 0 when
/// none has it.
fn find_in_loaded(name: &CStr) -> usize {
    let mut paths: Vec<Vec<u8>> = Vec::new();
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info and our Vec as data.
        let (info, paths) = unsafe { (&*info, &mut *(data as *mut Vec<Vec<u8>>)) };
        if !info.dlpi_name.is_null() && paths.len() < 4096 {
            // SAFETY: dlpi_name is a NUL-terminated string of the loader's.
            let n = unsafe { CStr::from_ptr(info.dlpi_name as *const c_char) };
            if !n.to_bytes().is_empty() {
                paths.push(n.to_bytes_with_nul().to_vec());
            }
        }
        0
    }
    // SAFETY: the callback above only reads the loader's strings into our Vec.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut paths as *mut Vec<Vec<u8>> as *mut c_void) };
    for path in paths {
        // SAFETY: RTLD_NOLOAD opens only an object already loaded (a new reference,
        // closed below); path is NUL-terminated.
        let h = unsafe {
            libc::dlopen(
                path.as_ptr() as *const c_char,
                libc::RTLD_NOLOAD | libc::RTLD_LAZY,
            )
        };
        if h.is_null() {
            continue;
        }
        // SAFETY: a handle from dlopen and a NUL-terminated name.
        let p = unsafe { libc::dlsym(h, name.as_ptr()) } as usize;
        // SAFETY: the reference taken above; the object stays loaded (it was before).
        unsafe { libc::dlclose(h) };
        if p != 0 && !is_ours(p) {
            return p;
        }
    }
    0
}
