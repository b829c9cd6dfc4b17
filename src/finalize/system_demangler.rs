//! The fallback for C++ names `cpp_demangle` cannot parse: the system's own demangler,
//! libstdc++'s `__cxa_demangle`, loaded on first use. `cpp_demangle` 0.5.1 rejects
//! names that GCC emits in every program that sorts (`std::swap`'s `enable_if`,
//! gimli-rs/cpp_demangle#308; ~50,000 names of one distribution, #302), and those
//! were shown mangled where perf and c++filt read them.
//!
//! Not a crate: `cplus_demangle` vendors and compiles an old copy of libiberty, where
//! the system's copy is the one c++filt and perf use, kept current by the distribution
//! (a node without libstdc++ keeps such names mangled, as before).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::OnceLock;

/// `abi::__cxa_demangle(mangled, buffer, length, status)`.
type CxaDemangle =
    unsafe extern "C" fn(*const c_char, *mut c_char, *mut usize, *mut c_int) -> *mut c_char;

/// Longer names are not handed to the demangler (its recursion grows with the name).
const MAX_NAME: usize = 16 * 1024;

static DEMANGLER: OnceLock<Option<CxaDemangle>> = OnceLock::new();

fn load() -> Option<CxaDemangle> {
    // SAFETY: constant NUL-terminated names; the library is never closed, so the
    // function stays loaded for the life of the process; `__cxa_demangle` has the
    // Itanium C++ ABI's signature, which `CxaDemangle` spells.
    unsafe {
        let lib = libc::dlopen(
            c"libstdc++.so.6".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        );
        if lib.is_null() {
            return None;
        }
        let f = libc::dlsym(lib, c"__cxa_demangle".as_ptr());
        if f.is_null() {
            return None;
        }
        Some(std::mem::transmute::<*mut c_void, CxaDemangle>(f))
    }
}

/// `mangled` (an Itanium C++ name, `_Z...`) as the system's demangler reads it; `None`
/// when it does not, or there is no libstdc++ to ask.
pub fn demangle(mangled: &str) -> Option<String> {
    if !mangled.starts_with("_Z") || mangled.len() > MAX_NAME {
        return None;
    }
    let demangler = (*DEMANGLER.get_or_init(load))?;
    let name = CString::new(mangled).ok()?;
    let mut status: c_int = -1;
    // SAFETY: `name` is NUL-terminated; a null buffer asks for a malloc'd result,
    // which is freed below once copied (null when it failed).
    let out = unsafe {
        demangler(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut status,
        )
    };
    if out.is_null() {
        return None;
    }
    // SAFETY: a non-null result is a NUL-terminated string from malloc.
    let text = unsafe { CStr::from_ptr(out) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: allocated by the demangler with malloc, not used after this.
    unsafe { libc::free(out.cast()) };
    (status == 0).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_cpp_demangle_rejects() {
        let swap = "_ZSt4swapIdENSt9enable_ifIXsrSt6__and_IJSt6__not_ISt15__is_tuple_likeIT_EESt21is_move_constructibleIS4_ESt18is_move_assignableIS4_EEE5valueEvE4typeERS4_SE_";
        assert_eq!(
            symbolic_demangle::demangle(swap),
            swap,
            "cpp_demangle still fails"
        );
        let name = demangle(swap).expect("libstdc++ reads it (it is installed with gcc)");
        assert!(
            name.contains("std::swap<double>(double&, double&)"),
            "{name}"
        );
    }

    /// Names from a hostile binary: cut, spliced and repeated pieces of a real one are
    /// read or refused, never a crash (and a name past the bound is not handed over).
    #[test]
    fn hostile_names_are_read_or_refused() {
        let base = "_ZSt4swapIdENSt9enable_ifIXsrSt6__and_IJSt6__not_ISt15__is_tuple_likeIT_EESt21is_move_constructibleIS4_ESt18is_move_assignableIS4_EEE5valueEvE4typeERS4_SE_";
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..5000 {
            let (a, b) = (next(base.len()), next(base.len()));
            let piece = &base[a.min(b)..a.max(b)];
            let name = format!(
                "_Z{}{}",
                &base[2..next(base.len() - 2) + 2],
                piece.repeat(next(40))
            );
            let _ = demangle(&name);
        }
        let deep = format!("_Z1f{}", "PFv".repeat(5000));
        let _ = demangle(&deep);
        assert_eq!(demangle(&deep.repeat(2)), None, "past the bound");
    }

    #[test]
    fn refuses_what_is_not_a_name() {
        for bad in ["main", "_Z", "_Zxyz", "_Z3foo\u{0}i", ""] {
            assert_eq!(demangle(bad), None, "{bad:?}");
        }
    }
}
