//! Locks mode: the time a program spends in a blocking MPI call is MPI wait, blocked or
//! polling. MPI libraries wait by polling (Open MPI spins in `opal_progress`, yielding
//! when oversubscribed), on CPU, where switch records see nothing: so the agent times
//! the MPI functions the program calls, and a call that took at least the threshold is
//! a wait of class `mpi` named by that function (`wire::MPI_FUNCTIONS`), its whole
//! duration counted (finalize adds the on-CPU part to the off-CPU intervals inside it).
//!
//! The wrappers are the MPI profiling interface's usual trick: this library, preloaded
//! first, defines `MPI_Barrier` and calls the implementation's `PMPI_Barrier`. Every
//! wrapped function takes integer and pointer arguments only and returns an `int`; on
//! x86-64 those travel in the same registers and 8-byte stack slots whatever their C
//! types, so each wrapper takes and passes on as many 64-bit words as the function has
//! arguments (a 32-bit `int` is read by the callee from the low half, as it would be).
//! Without `HWPROF_AGENT_WAITS` a wrapper is one relaxed load and an indirect call.

#![allow(non_snake_case)] // the MPI functions' names

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

/// Declares each wrapper `$name` (index `$idx` of `wire::MPI_FUNCTIONS`, which lists
/// the same names in the same order) calling `$pmpi` with its arguments.
macro_rules! mpi_wrappers {
    ($($idx:literal $name:ident $pmpi:literal ($($a:ident),*);)*) => {
        /// The implementation's functions, by index.
        const PMPI_NAMES: &[&CStr] = &[$($pmpi),*];
        static REAL: [AtomicUsize; PMPI_NAMES.len()] =
            [const { AtomicUsize::new(0) }; PMPI_NAMES.len()];
        $(
            #[doc = concat!("# Safety\nSame contract as `", stringify!($name), "`.")]
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $name($($a: u64),*) -> c_int {
                let p = real($idx);
                if p == 0 {
                    return MPI_ERR_OTHER;
                }
                // SAFETY: p is the implementation's function of this name, which takes
                // these integer and pointer arguments (see the module's comment); they
                // are our caller's, passed through unchanged.
                let f = unsafe {
                    std::mem::transmute::<usize, unsafe extern "C" fn($(word!($a)),*) -> c_int>(p)
                };
                // SAFETY: as above.
                crate::waits::timed_mpi($idx, || unsafe { f($($a),*) })
            }
        )*
    };
}

mpi_wrappers! {
    0 MPI_Barrier c"PMPI_Barrier" (comm);
    1 MPI_Bcast c"PMPI_Bcast" (buf, count, dtype, root, comm);
    2 MPI_Reduce c"PMPI_Reduce" (sbuf, rbuf, count, dtype, op, root, comm);
    3 MPI_Allreduce c"PMPI_Allreduce" (sbuf, rbuf, count, dtype, op, comm);
    4 MPI_Gather c"PMPI_Gather" (sbuf, scount, stype, rbuf, rcount, rtype, root, comm);
    5 MPI_Allgather c"PMPI_Allgather" (sbuf, scount, stype, rbuf, rcount, rtype, comm);
    6 MPI_Scatter c"PMPI_Scatter" (sbuf, scount, stype, rbuf, rcount, rtype, root, comm);
    7 MPI_Alltoall c"PMPI_Alltoall" (sbuf, scount, stype, rbuf, rcount, rtype, comm);
    8 MPI_Recv c"PMPI_Recv" (buf, count, dtype, src, tag, comm, status);
    9 MPI_Send c"PMPI_Send" (buf, count, dtype, dest, tag, comm);
    10 MPI_Ssend c"PMPI_Ssend" (buf, count, dtype, dest, tag, comm);
    11 MPI_Sendrecv c"PMPI_Sendrecv"
        (sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, src, rtag, comm, status);
    12 MPI_Wait c"PMPI_Wait" (req, status);
    13 MPI_Waitall c"PMPI_Waitall" (count, reqs, statuses);
    14 MPI_Waitany c"PMPI_Waitany" (count, reqs, index, status);
    15 MPI_Waitsome c"PMPI_Waitsome" (count, reqs, outcount, indices, statuses);
    16 MPI_Probe c"PMPI_Probe" (src, tag, comm, status);
}

// The wrappers' indices are those of the names finalize shows.
const _: () = assert!(PMPI_NAMES.len() == crate::wire::MPI_FUNCTIONS.len());

/// The implementation's function `index`, resolved on first use.
#[inline(always)]
fn real(index: usize) -> usize {
    let v = REAL[index].load(Ordering::Relaxed);
    if v != 0 {
        return v;
    }
    resolve(index)
}

#[cold]
fn resolve(index: usize) -> usize {
    let name = PMPI_NAMES[index];
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; null when absent.
    let mut p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
    if p == 0 {
        p = find_in_loaded(name);
    }
    REAL[index].store(p, Ordering::Relaxed);
    p
}

/// `name` in any loaded object (an MPI library dlopen'ed with RTLD_LOCAL is not in the
/// global scope RTLD_DEFAULT searches), 0 when none has it.
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
        if p != 0 {
            return p;
        }
    }
    0
}
