//! Addresses to functions, files and lines: DWARF (with inlined frames) through
//! addr2line, the ELF symbol table when there is no DWARF, demangled Rust, C++ and
//! Fortran names ([`fortran`]), kernel symbols from the kallsyms copy. Code without a
//! symbol is named by where its unwind tables say its function starts (`func@0x...`,
//! [`super::function_starts`]); an address nothing resolves becomes `module+0xoffset`:
//! it never disappears.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use super::dwarf_decl::DeclIndex;
use super::dwarf_file::DwarfFile;
use super::fortran;
use crate::profile::{FrameInfo, FrameKind, Function};

/// Demangle Rust, C++ and the unambiguous Fortran conventions; others as they are.
pub fn demangle(name: &str) -> String {
    if let Some(f) = fortran::demangle(name, false) {
        return f;
    }
    let d = symbolic_demangle::demangle(name);
    // A C++ name it could not read comes back as it was.
    if d == name
        && let Some(d) = super::system_demangler::demangle(name)
    {
        return d;
    }
    // Rust legacy names end with a hash suffix `::h0123456789abcdef`: drop it.
    match d.rfind("::h") {
        Some(i) if d.len() - i == 19 && d[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) => {
            d[..i].to_string()
        }
        _ => d.into_owned(),
    }
}

/// Placeholder frame for an address without a symbol.
pub fn unresolved(module: &str, offset: u64, kind: FrameKind) -> FrameInfo {
    FrameInfo {
        function: Function {
            name: format!("{module}+{offset:#x}"),
            module: module.to_string(),
            file: None,
            start_line: None,
            kind,
        },
        file: None,
        line: None,
    }
}

/// Symbolize `svmas` (lookup addresses) of one module. `debug_file` holds DWARF when
/// found; `elf_file` is the binary itself. Each result is leaf first (inlined frames
/// before the function that contains them).
pub fn symbolize_module(
    module: &str,
    elf_file: Option<&Path>,
    debug_file: Option<&Path>,
    svmas: &[u64],
) -> Vec<Vec<FrameInfo>> {
    ModuleSymbolizer::new(elf_file, debug_file).symbolize(module, svmas)
}

/// One module file's DWARF and symbols, opened once and then asked for addresses: made
/// while perf.data is still being read ([`super::prepare`]), so that what costs without
/// knowing any address (decompressing the debug sections, addr2line's unit ranges, the
/// unit headers the declaration index needs) overlaps the reading.
pub struct ModuleSymbolizer {
    elf_file: Option<PathBuf>,
    /// The binary's bytes, when hwprof carries it (its agent).
    embedded: Option<&'static [u8]>,
    debug: Option<DwarfFile>,
    /// The binary itself: opened only when its debug file does not resolve an address.
    main: OnceCell<Option<DwarfFile>>,
}

impl ModuleSymbolizer {
    /// Opens `debug_file` (when found) and reads what every lookup needs.
    pub fn new(elf_file: Option<&Path>, debug_file: Option<&Path>) -> Self {
        // Opened as untrusted input (regular files only, never blocking on a FIFO),
        // split DWARF included: see `dwarf_file`.
        let debug = debug_file.and_then(|p| DwarfFile::open_prepared(p).ok());
        ModuleSymbolizer {
            elf_file: elf_file.map(Path::to_path_buf),
            embedded: None,
            debug,
            main: OnceCell::new(),
        }
    }

    /// The symbolizer of a module's files, or of the binary hwprof carries.
    pub fn of(files: &super::prepare::ModuleFiles) -> Self {
        ModuleSymbolizer {
            embedded: files.embedded,
            ..Self::new(files.elf.as_deref(), files.debug.as_deref())
        }
    }

    fn main(&self) -> Option<&DwarfFile> {
        self.main
            .get_or_init(|| match self.embedded {
                Some(bytes) => {
                    let name = Path::new(crate::python::embedded::AGENT_FILE_NAME);
                    DwarfFile::embedded(name, bytes).ok()
                }
                None => self
                    .elf_file
                    .as_deref()
                    .and_then(|p| DwarfFile::open(p).ok()),
            })
            .as_ref()
    }

    /// The frames of `svmas`, each leaf first (inlined frames before the function
    /// that contains them); `module` names the module in them.
    pub fn symbolize(&self, module: &str, svmas: &[u64]) -> Vec<Vec<FrameInfo>> {
        let debug = self.debug.as_ref();
        // Declaration lines and Fortran hosts, read on first use from the sections the
        // lookups already loaded, only from the units that cover these addresses.
        let mut sorted = svmas.to_vec();
        sorted.sort_unstable();
        let main_decl = OnceCell::new();
        let debug_decl = OnceCell::new();
        svmas
            .iter()
            .map(|&a| {
                let frames = debug
                    .map(|l| {
                        dwarf_frames(
                            l,
                            debug_decl.get_or_init(|| l.decl_index(&sorted)),
                            module,
                            a,
                        )
                    })
                    .filter(|f| !f.is_empty())
                    .or_else(|| {
                        self.main().map(|l| {
                            dwarf_frames(
                                l,
                                main_decl.get_or_init(|| l.decl_index(&sorted)),
                                module,
                                a,
                            )
                        })
                    })
                    .unwrap_or_default();
                if !frames.is_empty() {
                    return frames;
                }
                let sym = debug
                    .and_then(|l| l.find_symbol(a))
                    .or_else(|| self.main().and_then(|l| l.find_symbol(a)));
                // No symbol: the function its unwind tables say holds it (`func@0x...`,
                // one row per function, not per address).
                let name = match sym {
                    Some(name) => demangle(name),
                    None => match self.main().and_then(|l| l.find_plt_stub(a)) {
                        Some(stub) => stub,
                        None => match self.main().and_then(|l| l.find_unnamed_function(a)) {
                            Some(name) => name,
                            None => return vec![unresolved(module, a, FrameKind::Native)],
                        },
                    },
                };
                vec![FrameInfo {
                    function: Function {
                        name,
                        module: module.to_string(),
                        file: None,
                        start_line: None,
                        kind: FrameKind::Native,
                    },
                    file: None,
                    line: None,
                }]
            })
            .collect()
    }
}

fn dwarf_frames(loader: &DwarfFile, decl: &DeclIndex, module: &str, addr: u64) -> Vec<FrameInfo> {
    let mut out = Vec::new();
    // Whether the last frame's function has a declared file.
    let mut declared = false;
    let Ok(mut iter) = loader.find_frames(addr) else {
        return out;
    };
    let symbol_info = loader.find_symbol_info(addr);
    let symbol = symbol_info.as_ref().map(|s| demangle(s.name()));
    // Where the function's entry address is (looked up once): its file, below. Its
    // first line: its DW_AT_decl_line (a clone's comes from the function it was cloned
    // from), else the entry address's line.
    let entry = symbol_info
        .as_ref()
        .and_then(|s| loader.find_location(s.address()).ok().flatten());
    let start_line = symbol_info.as_ref().and_then(|s| {
        decl.decl_line(s.address())
            .or_else(|| entry.as_ref().and_then(|l| l.line))
    });
    let unit = loader.unit_of(addr);
    while let Ok(Some(frame)) = iter.next() {
        let die = unit
            .zip(frame.dw_die_offset)
            .map(|(u, d)| loader.frame_die(u, d))
            .unwrap_or_default();
        let name = frame.function.as_ref().and_then(|f| {
            let raw = f.raw_name().ok()?;
            let is_fortran = f.language.is_some_and(fortran::is_fortran);
            // A contained procedure reads as its host's: `solver::smooth`.
            if let Some(q) = is_fortran.then(|| decl.qualified(&raw)).flatten() {
                return Some(q.to_string());
            }
            // C++ named by DW_AT_name (no linkage name: an inlined template instance,
            // usually): with its namespaces and classes, as its mangled name has them.
            if !is_fortran
                && !raw.starts_with("_Z")
                && let Some(scope) = decl.cpp_scope(die.dies.iter().copied())
            {
                return Some(format!("{scope}::{raw}"));
            }
            Some(fortran::demangle(&raw, is_fortran).unwrap_or_else(|| demangle(&raw)))
        });
        let Some(name) = name.or_else(|| symbol.clone()) else {
            continue;
        };
        let (file, line) = match &frame.location {
            Some(l) => (l.file.map(str::to_string), l.line),
            None => (None, None),
        };
        let (decl_file, decl_line) = decl.declaration(&die);
        declared = decl_file.is_some();
        out.push(FrameInfo {
            function: Function {
                name,
                module: module.to_string(),
                // A function's file is where it is declared, the file of its first
                // line (DW_AT_decl_file beside DW_AT_decl_line): not the file of
                // whatever code was inlined at its first address (Rust's `for`
                // over a range begins in core's cmp.rs), so that its file and line
                // are one place and it is one function wherever it is sampled.
                // Without one: the file of its lines here.
                file: decl_file.or_else(|| file.clone()),
                // The first line from the frame's DIE: an inlined function then is
                // the same function as its out-of-line copy (the outermost frame's
                // comes from its symbol first, below).
                start_line: decl_line,
                kind: FrameKind::Native,
            },
            file,
            line,
        });
    }
    // The outermost frame is the symbol's own function (the others are inlined into
    // it). Without a declared file, its file is the one of its entry address: code it
    // takes from another file (`#include`d into its body, or under a `#line`: Python
    // 3.12's eval loop, Cython) must not make it a second function.
    if let Some(f) = out.last_mut() {
        if !declared && let Some(file) = entry.as_ref().and_then(|l| l.file) {
            f.function.file = Some(file.to_string());
        }
        f.function.start_line = start_line.or(f.function.start_line);
    }
    out
}

/// Kernel symbols from a kallsyms copy, sorted by address.
#[derive(Default)]
pub struct KernelSymbols {
    /// (address, name's range in `names`), sorted by address then name.
    syms: Vec<(u64, std::ops::Range<usize>)>,
    /// Every name, one after the other: one allocation, not one per symbol (a kallsyms
    /// copy has ~120,000 text symbols; a `String` each was a tenth of its parse, and
    /// as much again to free them).
    names: String,
}

impl KernelSymbols {
    /// Parse `raw_dir/kallsyms` (absent: every kernel address shows as `[kernel]+0x...`).
    pub fn load(raw_dir: &Path) -> Self {
        let Ok(text) = crate::raw::bounded::read_limited(
            &raw_dir.join("kallsyms"),
            crate::raw::bounded::Kind::Kallsyms,
        ) else {
            return Self::default();
        };
        Self::parse(&text)
    }

    /// Parse a kallsyms copy (a name that is not UTF-8 is read lossily).
    ///
    /// The bytes are split into lines and fields here, and only the names kept are
    /// checked as UTF-8: a copy is ~5 MB, and checking all of it first (a lossy
    /// conversion of the whole text) cost a tenth of the parse. Splitting on ASCII
    /// whitespace first and converting each name after gives the same names (an
    /// invalid sequence never spans an ASCII byte).
    pub fn parse(text: &[u8]) -> Self {
        // About half of a copy's bytes are kept names, one in ~35 bytes a kept symbol:
        // reserved once rather than grown (and copied) a score of times.
        let mut names = String::with_capacity(text.len() / 2);
        let mut syms: Vec<(u64, std::ops::Range<usize>)> = Vec::with_capacity(text.len() / 32);
        for line in text.split(|&b| b == b'\n') {
            let mut it = line
                .split(u8::is_ascii_whitespace)
                .filter(|field| !field.is_empty());
            let Some(addr) = it.next().and_then(parse_hex) else {
                continue;
            };
            let Some(ty) = it.next() else { continue };
            if !matches!(ty, b"t" | b"T" | b"w" | b"W") || addr == 0 {
                continue;
            }
            let Some(name) = it.next() else { continue };
            let start = names.len();
            // Borrowed, no copy, when the name is UTF-8.
            names.push_str(&String::from_utf8_lossy(name));
            syms.push((addr, start..names.len()));
        }
        syms.sort_unstable_by(|a, b| {
            (a.0.cmp(&b.0)).then_with(|| names[a.1.clone()].cmp(&names[b.1.clone()]))
        });
        KernelSymbols { syms, names }
    }

    /// The frame for a kernel address.
    pub fn frame(&self, addr: u64) -> FrameInfo {
        let i = self.syms.partition_point(|s| s.0 <= addr);
        match i.checked_sub(1).and_then(|i| self.syms.get(i)) {
            Some((_, name)) => kernel_function(&self.names[name.clone()]),
            None => unresolved("[kernel]", addr, FrameKind::Kernel),
        }
    }
}

/// The frame of the kernel's function `name` (module `[kernel]`, no source line).
pub fn kernel_function(name: &str) -> FrameInfo {
    FrameInfo {
        function: Function {
            name: name.to_string(),
            module: "[kernel]".into(),
            file: None,
            start_line: None,
            kind: FrameKind::Kernel,
        },
        file: None,
        line: None,
    }
}

/// A hexadecimal number as `u64::from_str_radix(_, 16)` reads it (an optional `+`,
/// then at least one digit, no overflow), from bytes: converting each of kallsyms'
/// ~200,000 addresses to a `str` first cost as much as reading it.
fn parse_hex(field: &[u8]) -> Option<u64> {
    let digits = field.strip_prefix(b"+").unwrap_or(field);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(16)?;
        n.checked_mul(16)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The function name `KernelSymbols::parse(kallsyms)` gives each address.
    fn kernel_names(kallsyms: &[u8], want: &[(u64, &str)]) {
        let k = KernelSymbols::parse(kallsyms);
        for &(addr, name) in want {
            assert_eq!(k.frame(addr).function.name, name, "{addr:#x}");
        }
    }

    #[test]
    fn kernel_addresses_take_the_text_symbol_at_or_below_them() {
        // Two symbols at one address: the last by name, as before.
        kernel_names(
            b"ffffffff81000200 T second\n\
             ffffffff81000100 t first [mod]\n\
             ffffffff81000180 D data_not_text\n\
             0000000000000000 T zero_address\n\
             ffffffff81000200 W also_second\n\
             garbage\n\
             ffffffff81000300 w last\n",
            &[
                (0xffffffff81000100, "first"),
                (0xffffffff810001ff, "first"),
                (0xffffffff81000250, "second"),
                (0xffffffff81000300, "last"),
                (0xffffffff810000ff, "[kernel]+0xffffffff810000ff"),
            ],
        );
    }

    #[test]
    fn kallsyms_names_not_utf8_read_lossily_and_any_ascii_whitespace_separates() {
        // An invalid sequence ends at the whitespace after it; a line without a name
        // is no symbol.
        kernel_names(
            b"ffffffff81000400 T bad\xffname\r\n\
              ffffffff81000500\tt\ttabbed [mod]\r\n\
              ffffffff81000600 T \xe2\x82 split\n\
              ffffffff81000700 T",
            &[
                (0xffffffff81000400, "bad\u{fffd}name"),
                (0xffffffff81000500, "tabbed"),
                (0xffffffff81000600, "\u{fffd}"),
                (0xffffffff81000700, "\u{fffd}"),
            ],
        );
    }

    #[test]
    fn hex_fields_read_as_from_str_radix_reads_them() {
        for field in [
            "0",
            "ffffffff81000200",
            "FFFFFFFF8100020a",
            "+1f",
            "",
            "+",
            "-1",
            "12g",
            "ffffffffffffffff",
            "10000000000000000",
            "++1",
            " 1",
        ] {
            assert_eq!(
                parse_hex(field.as_bytes()),
                u64::from_str_radix(field, 16).ok(),
                "{field:?}"
            );
        }
    }

    #[test]
    fn demangles_rust_and_cpp() {
        assert_eq!(
            demangle("_ZN4core3fmt5write17h0123456789abcdefE"),
            "core::fmt::write"
        );
        assert_eq!(demangle("_Z3fooi"), "foo(int)");
        assert_eq!(demangle("main"), "main");
    }
}
