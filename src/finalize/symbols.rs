//! Addresses to functions, files and lines: DWARF (with inlined frames) through
//! addr2line, the ELF symbol table when there is no DWARF, demangled Rust, C++ and
//! Fortran names ([`fortran`]), kernel symbols from the kallsyms copy. An address nothing resolves becomes
//! `module+0xoffset`: it never disappears.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::path::Path;

use object::{Object, ObjectSection};

use super::dwarf_decl::DeclIndex;
use super::fortran;
use crate::profile::{FrameInfo, FrameKind, Function};

/// Demangle Rust, C++ and the unambiguous Fortran conventions; others as they are.
pub fn demangle(name: &str) -> String {
    if let Some(f) = fortran::demangle(name, false) {
        return f;
    }
    let d = symbolic_demangle::demangle(name);
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

/// DWARF sections read as gimli sees them.
type R<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;

/// DWARF sections symbolization never reads (variable locations, macros): left
/// compressed. libc's location lists alone are a fifth of its debug info.
const UNREAD_SECTIONS: [gimli::SectionId; 4] = [
    gimli::SectionId::DebugLoc,
    gimli::SectionId::DebugLocLists,
    gimli::SectionId::DebugMacinfo,
    gimli::SectionId::DebugMacro,
];

/// An ELF file mapped and parsed, with its DWARF sections decompressed once (for
/// addr2line and the declaration index both).
struct ElfDwarf<'a> {
    obj: object::File<'a>,
    sections: gimli::DwarfSections<Cow<'a, [u8]>>,
}

impl<'a> ElfDwarf<'a> {
    fn map(path: &Path) -> Option<memmap2::Mmap> {
        let file = std::fs::File::open(path).ok()?;
        // SAFETY: a read-only private mapping of a binary or debug file we only read
        // (addr2line maps them the same way); every access is bounds-checked by object.
        unsafe { memmap2::Mmap::map(&file) }.ok()
    }

    fn parse(data: &'a [u8]) -> Option<Self> {
        let obj = object::File::parse(data).ok()?;
        let sections = gimli::DwarfSections::load(|id| -> Result<_, gimli::Error> {
            if UNREAD_SECTIONS.contains(&id) {
                return Ok(Cow::Borrowed(&[][..]));
            }
            Ok(obj
                .section_by_name(id.name())
                .and_then(|s| s.uncompressed_data().ok())
                .unwrap_or(Cow::Borrowed(&[][..])))
        })
        .ok()?;
        Some(ElfDwarf { obj, sections })
    }
}

/// What symbolizes the addresses of one file: addr2line over its DWARF (when it has
/// some), its symbol table, and the declaration lines of the units the addresses fall
/// in.
struct Symbolizer<'a> {
    ctx: Option<addr2line::Context<R<'a>>>,
    symbols: object::SymbolMap<object::SymbolMapName<'a>>,
    decl: DeclIndex,
    /// Split DWARF (`-gsplit-dwarf`: the DWARF is in .dwo files): addr2line's own
    /// loader finds those, made on first need.
    path: &'a Path,
    split: OnceCell<Option<addr2line::Loader>>,
}

impl<'a> Symbolizer<'a> {
    fn new(file: &'a ElfDwarf<'a>, path: &'a Path, svmas: &[u64]) -> Self {
        let endian = if file.obj.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let mut dwarf = file.sections.borrow(|s| gimli::EndianSlice::new(s, endian));
        let has_dwarf = !gimli::Section::reader(&dwarf.debug_info).is_empty();
        let (ctx, decl) = if has_dwarf {
            dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::Duplicates);
            let dwarf = std::sync::Arc::new(dwarf);
            let decl = DeclIndex::for_addresses(&dwarf, svmas);
            (addr2line::Context::from_arc_dwarf(dwarf).ok(), decl)
        } else {
            (None, DeclIndex::default())
        };
        Symbolizer {
            ctx,
            symbols: file.obj.symbol_map(),
            decl,
            path,
            split: OnceCell::new(),
        }
    }

    fn frames(&self, module: &str, addr: u64) -> Vec<FrameInfo> {
        let Some(ctx) = &self.ctx else {
            return Vec::new();
        };
        let symbol = self
            .symbols
            .containing(addr)
            .map(|s| (s.name(), s.address()));
        let start_line = |start: u64| {
            self.decl
                .decl_line(start)
                .or_else(|| ctx.find_location(start).ok().flatten().and_then(|l| l.line))
        };
        match ctx.find_frames(addr) {
            addr2line::LookupResult::Output(Ok(iter)) => {
                dwarf_frames(iter, &self.decl, module, symbol, start_line)
            }
            addr2line::LookupResult::Output(Err(_)) => Vec::new(),
            addr2line::LookupResult::Load { .. } => {
                let Some(loader) = self
                    .split
                    .get_or_init(|| addr2line::Loader::new(self.path).ok())
                else {
                    return Vec::new();
                };
                let Ok(iter) = loader.find_frames(addr) else {
                    return Vec::new();
                };
                let symbol = loader
                    .find_symbol_info(addr)
                    .map(|s| (s.name(), s.address()));
                let start_line = |start: u64| {
                    self.decl.decl_line(start).or_else(|| {
                        loader
                            .find_location(start)
                            .ok()
                            .flatten()
                            .and_then(|l| l.line)
                    })
                };
                dwarf_frames(iter, &self.decl, module, symbol, start_line)
            }
        }
    }

    fn symbol(&self, addr: u64) -> Option<&'a str> {
        self.symbols.containing(addr).map(|s| s.name())
    }
}

/// Symbolize `svmas` (lookup addresses, sorted) of one module. `debug_file` holds
/// DWARF when found; `elf_file` is the binary itself, read only when the debug file
/// does not resolve an address. Each result is leaf first (inlined frames before the
/// function that contains them).
pub fn symbolize_module(
    module: &str,
    elf_file: Option<&Path>,
    debug_file: Option<&Path>,
    svmas: &[u64],
) -> Vec<Vec<FrameInfo>> {
    let debug_map = debug_file.and_then(ElfDwarf::map);
    let debug_elf = debug_map.as_deref().and_then(ElfDwarf::parse);
    let debug = debug_elf
        .as_ref()
        .zip(debug_file)
        .map(|(f, p)| Symbolizer::new(f, p, svmas));
    // The binary itself, on first need (its own DWARF when there is no debug file).
    let main_map = OnceCell::new();
    let main_elf = OnceCell::new();
    let main = OnceCell::new();
    let main = || {
        main.get_or_init(|| {
            let path = elf_file?;
            let map = main_map.get_or_init(|| ElfDwarf::map(path)).as_deref()?;
            let elf = main_elf.get_or_init(|| ElfDwarf::parse(map)).as_ref()?;
            Some(Symbolizer::new(elf, path, svmas))
        })
        .as_ref()
    };
    svmas
        .iter()
        .map(|&a| {
            let frames = debug
                .as_ref()
                .map(|s| s.frames(module, a))
                .filter(|f| !f.is_empty())
                .or_else(|| main().map(|s| s.frames(module, a)))
                .unwrap_or_default();
            if !frames.is_empty() {
                return frames;
            }
            let sym = debug
                .as_ref()
                .and_then(|s| s.symbol(a))
                .or_else(|| main().and_then(|s| s.symbol(a)));
            match sym {
                Some(name) => vec![FrameInfo {
                    function: Function {
                        name: demangle(name),
                        module: module.to_string(),
                        file: None,
                        start_line: None,
                        kind: FrameKind::Native,
                    },
                    file: None,
                    line: None,
                }],
                None => vec![unresolved(module, a, FrameKind::Native)],
            }
        })
        .collect()
}

/// The frames addr2line found for one address, leaf first. `symbol` is the ELF symbol
/// containing the address (name, start), `start_line` finds the line of a start.
fn dwarf_frames<Rd: gimli::Reader>(
    mut iter: addr2line::FrameIter<'_, Rd>,
    decl: &DeclIndex,
    module: &str,
    symbol: Option<(&str, u64)>,
    start_line: impl Fn(u64) -> Option<u32>,
) -> Vec<FrameInfo> {
    let mut out = Vec::new();
    // The function's first line: its DW_AT_decl_line (a clone's comes from the function
    // it was cloned from), else the line of its entry address.
    let start_line = symbol.and_then(|(_, start)| start_line(start));
    let symbol = symbol.map(|(name, _)| demangle(name));
    while let Ok(Some(frame)) = iter.next() {
        let name = frame.function.as_ref().and_then(|f| {
            let raw = f.raw_name().ok()?;
            let is_fortran = f.language.is_some_and(fortran::is_fortran);
            // A contained procedure reads as its host's: `solver::smooth`.
            if let Some(q) = is_fortran.then(|| decl.qualified(&raw)).flatten() {
                return Some(q.to_string());
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
        out.push(FrameInfo {
            function: Function {
                name,
                module: module.to_string(),
                file: file.clone(),
                start_line: None,
                kind: FrameKind::Native,
            },
            file,
            line,
        });
    }
    // A function's "file" is where its own code is; for an inlined callee that is the
    // callee's file, which the frame above carries. Keep function identity stable by
    // not varying the function's file with each line's file.
    for f in &mut out {
        f.function.file = f.file.clone();
    }
    // The outermost frame is the symbol's own function (the others are inlined into it).
    if let Some(f) = out.last_mut() {
        f.function.start_line = start_line;
    }
    out
}

/// Kernel symbols from a kallsyms copy, sorted by address: (address, name's range in
/// `text`), so that parsing 100k+ lines allocates nothing per symbol.
#[derive(Default)]
pub struct KernelSymbols {
    text: String,
    syms: Vec<(u64, u32, u32)>,
}

impl KernelSymbols {
    /// Parse `raw_dir/kallsyms` (absent: every kernel address shows as `[kernel]+0x...`).
    pub fn load(raw_dir: &Path) -> Self {
        let Ok(text) = crate::raw::bounded::read_limited_string(
            &raw_dir.join("kallsyms"),
            crate::raw::bounded::Kind::Kallsyms,
        ) else {
            return Self::default();
        };
        Self::parse(&text)
    }

    /// Parse the text of a kallsyms copy.
    pub fn parse(text: &str) -> Self {
        let text = text.to_string();
        let base = text.as_ptr() as usize;
        let mut syms: Vec<(u64, u32, u32)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_ascii_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let ty = it.next()?;
                if !matches!(ty, "t" | "T" | "w" | "W") || addr == 0 {
                    return None;
                }
                let name = it.next()?;
                let at = u32::try_from(name.as_ptr() as usize - base).ok()?;
                Some((addr, at, u32::try_from(name.len()).ok()?))
            })
            .collect();
        syms.sort_unstable();
        KernelSymbols { text, syms }
    }

    /// The frame for a kernel address.
    pub fn frame(&self, addr: u64) -> FrameInfo {
        let i = self.syms.partition_point(|s| s.0 <= addr);
        let name = i
            .checked_sub(1)
            .and_then(|i| self.syms.get(i))
            .and_then(|&(_, at, len)| self.text.get(at as usize..(at + len) as usize));
        match name {
            Some(name) => FrameInfo {
                function: Function {
                    name: name.to_string(),
                    module: "[kernel]".into(),
                    file: None,
                    start_line: None,
                    kind: FrameKind::Kernel,
                },
                file: None,
                line: None,
            },
            None => unresolved("[kernel]", addr, FrameKind::Kernel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
