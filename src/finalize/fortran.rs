//! Fortran names as their users write them: `heat::relax` for a module procedure,
//! `sweep` for an external one. Written by hand because `symbolic-demangle` (and
//! cpp_demangle, rustc-demangle) know no Fortran convention; the conventions are small:
//!
//! | compiler | module procedure | internal (contained) | external |
//! |---|---|---|---|
//! | gfortran | `__heat_MOD_relax` | `smooth.0` (DWARF name `smooth`, its DIE nested in the host's: `solver::smooth`, see `dwarf_decl.rs`) | `sweep_` |
//! | ifort/ifx | `heat_mp_relax_` | `solver_IP_smooth_` | `sweep_` |
//! | LLVM flang | `_QMheatPrelax` | `_QFsolverPsmooth` | `sweep_` (`_QPsweep` inside) |
//!
//! An OpenMP region or a clone keeps its procedure's name with gfortran's suffix:
//! `__heat_MOD_relax._omp_fn.0` reads `heat::relax._omp_fn.0`.
//!
//! The trailing underscore of an external procedure is dropped only when DWARF says the
//! function comes from a Fortran compilation unit: C symbols end in `_` too. The main
//! program (`MAIN__` for gfortran, `_QQmain` for flang) carries the program's name in
//! DWARF (`DW_AT_main_subprogram`), which addr2line gives; without one (no DWARF, no
//! `program` statement, or `program main`, which gfortran leaves `MAIN__`) it reads
//! `main program`.

use addr2line::gimli::DwLang;

/// The name of a main program whose own name is not known.
const MAIN_PROGRAM: &str = "main program";

/// True for the DWARF Fortran languages (77, 90, 95, 2003, 2008, 2018).
pub fn is_fortran(lang: DwLang) -> bool {
    matches!(lang.0, 0x07 | 0x08 | 0x0e | 0x22 | 0x23 | 0x2d)
}

/// The user's name of a Fortran symbol, or None when `name` is not one. Without
/// `is_fortran` (no DWARF language) only conventions that no C or C++ symbol has are
/// read: gfortran's `_MOD_`, ifort's `_mp_`, flang's `_Q`.
pub fn demangle(name: &str, is_fortran: bool) -> Option<String> {
    // GCC's outlined and cloned code keeps its source function's name with a suffix
    // (`__solver_MOD_relax._omp_fn.0`, `.constprop.0`): Fortran names have no dot.
    if let Some((base, suffix)) = name.split_once('.') {
        return demangle(base, is_fortran).map(|d| format!("{d}.{suffix}"));
    }
    if let Some(rest) = name.strip_prefix("__")
        && let Some((module, proc)) = rest.split_once("_MOD_")
        && is_ident(module)
        && is_ident(proc)
    {
        return Some(format!("{module}::{proc}"));
    }
    if let Some(f) = flang(name) {
        return Some(f);
    }
    // gfortran's main program is `MAIN__`, and DWARF gives the program's name instead,
    // except when there is none to give: the program has no `program` statement, or
    // is named `main` (the C entry's name, so gfortran keeps `MAIN__` for it). Read as
    // flang's `_QQmain` reads.
    if name == "MAIN__" {
        return Some(MAIN_PROGRAM.to_string());
    }
    if let Some(base) = name.strip_suffix('_') {
        for sep in ["_mp_", "_IP_"] {
            if let Some((scope, proc)) = base.split_once(sep)
                && is_ident(scope)
                && is_ident(proc)
            {
                return Some(format!("{scope}::{proc}"));
            }
        }
        if is_fortran && is_ident(base) {
            return Some(base.to_string());
        }
    }
    None
}

/// LLVM flang's internal names: `_Q` then tagged parts, each an uppercase tag and a
/// lowercase name: `M` module, `S` submodule, `F` host procedure, `P` procedure,
/// `Q` + `main` the main program.
fn flang(name: &str) -> Option<String> {
    let rest = name.strip_prefix("_Q")?;
    if rest == "Qmain" {
        return Some(MAIN_PROGRAM.to_string());
    }
    let mut parts = Vec::new();
    let mut chars = rest.char_indices().peekable();
    let mut proc = None;
    while let Some((i, tag)) = chars.next() {
        let start = i + tag.len_utf8();
        let mut end = start;
        while let Some(&(j, c)) = chars.peek() {
            if c.is_ascii_uppercase() {
                break;
            }
            end = j + c.len_utf8();
            chars.next();
        }
        let part = &rest[start..end];
        if !is_ident(part) {
            return None;
        }
        match tag {
            'M' | 'S' | 'F' => parts.push(part),
            'P' if proc.is_none() => proc = Some(part),
            _ => return None,
        }
    }
    parts.push(proc?);
    Some(parts.join("::"))
}

/// A Fortran name: letters, digits and `_`, starting with a letter (lowercase as
/// compilers emit them).
fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conventions_of_each_compiler() {
        // (symbol, from a Fortran unit, name)
        let cases: &[(&str, bool, Option<&str>)] = &[
            ("__heat_MOD_relax", false, Some("heat::relax")),
            ("heat_mp_relax_", false, Some("heat::relax")),
            ("solver_IP_smooth_", false, Some("solver::smooth")),
            ("_QMheatPrelax", false, Some("heat::relax")),
            ("_QFsolverPsmooth", false, Some("solver::smooth")),
            ("_QMheatFrelaxPinner", false, Some("heat::relax::inner")),
            ("_QPsweep", false, Some("sweep")),
            ("_QQmain", false, Some("main program")),
            ("MAIN__", true, Some("main program")),
            ("MAIN__._omp_fn.0", true, Some("main program._omp_fn.0")),
            // External procedures: only from a Fortran unit.
            ("sweep_", true, Some("sweep")),
            ("sweep_", false, None),
            ("relax", true, None),
            // Outlined OpenMP regions and clones keep their suffix.
            (
                "__solver_MOD_relax._omp_fn.0",
                true,
                Some("solver::relax._omp_fn.0"),
            ),
            ("main._omp_fn.0", false, None),
        ];
        for &(symbol, fortran, want) in cases {
            assert_eq!(demangle(symbol, fortran).as_deref(), want, "{symbol}");
        }
    }

    #[test]
    fn c_and_cpp_symbols_are_left_alone() {
        for n in [
            "__libc_start_main",
            "_ZN3foo3barEv",
            "my_mpi_init_",
            "__memcpy_avx_unaligned_erms",
            "_Qsomething",
            "main",
        ] {
            assert_eq!(demangle(n, false), None, "{n}");
        }
        assert!(is_fortran(DwLang(0x23)));
        assert!(!is_fortran(DwLang(0x0c)), "C99");
    }
}
