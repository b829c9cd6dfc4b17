//! One ELF file's DWARF and symbol table for lookups, with its split DWARF (`.dwo`
//! files and the `.dwp` package beside it): what `addr2line::Loader` does, but every
//! file opened as untrusted input.
//!
//! `addr2line::Loader` opens the binary, `<binary>.dwp` and each `.dwo` named by the
//! DWARF (a path the binary chooses) with a plain `open`: a FIFO at any of those names
//! blocks finalize for ever, and a device is read as if it were a file. Here each is
//! opened through [`crate::raw::bounded::open_file`] (`O_NONBLOCK`, then only a
//! regular file is kept), then mapped read-only.
//!
//! The DWARF readers borrow the mappings. They are kept in this struct next to the
//! context that reads them, and never handed out longer than a borrow of the struct
//! (the public methods return `'_` types), so the mappings outlive every reader.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use addr2line::gimli;
use addr2line::{Context, FrameIter, Location, LookupContinuation, LookupResult, SplitDwarfLoad};
use object::{Object, ObjectSection, SymbolMap, SymbolMapName};

use super::dwarf_decl::{DeclIndex, Units, has_fortran_unit};
use super::function_starts::FunctionStarts;
use super::plt::PltNames;

/// The reader of every section: a slice of a mapping (or of decompressed bytes) that
/// this struct keeps alive.
type Reader = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// Bytes that stay at one address for as long as the owner lives: the data of a
/// mapping, or of a boxed buffer, does not move when the `Mmap` or `Box` itself moves.
enum Owned {
    Map(memmap2::Mmap),
    Heap(Box<[u8]>),
}

impl Owned {
    fn bytes(&self) -> &[u8] {
        match self {
            Owned::Map(m) => m,
            Owned::Heap(b) => b,
        }
    }
}

/// Why a file's DWARF cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DwarfFileError {
    /// Open, stat or map failed, or not a regular file.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// Not an object file `object` can parse.
    #[error("{0}: {1}")]
    Object(PathBuf, object::Error),
    /// DWARF that gimli/addr2line refuse.
    #[error("{0}: {1}")]
    Dwarf(PathBuf, gimli::Error),
}

/// A symbol of the ELF symbol table.
pub struct Symbol<'a> {
    name: &'a str,
    address: u64,
}

impl<'a> Symbol<'a> {
    /// Its (mangled) name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Its first address.
    pub fn address(&self) -> u64 {
        self.address
    }
}

pub use super::dwarf_decl::FrameDie;

/// An ELF file's DWARF context, symbol map and split DWARF.
pub struct DwarfFile {
    // Field order is drop order: everything that reads the bytes goes before them.
    ctx: Context<Reader>,
    /// The DWARF `ctx` reads (to tell its units from split units').
    dwarf: Arc<gimli::Dwarf<Reader>>,
    /// The sections `ctx` reads, kept so that the declaration index reads the same
    /// decompressed bytes (a module's compressed DWARF is inflated once, not twice).
    sections: gimli::DwarfSections<Reader>,
    symbols: SymbolMap<SymbolMapName<'static>>,
    /// Where unnamed functions start (the binary's unwind tables; none in a debug file).
    function_starts: Option<FunctionStarts<'static>>,
    /// Names of the PLT's stubs (none in a debug file).
    plt: Option<PltNames>,
    package: Option<gimli::DwarfPackage<Reader>>,
    /// Whether a unit is Fortran (then the declaration index walks every unit).
    fortran: std::cell::OnceCell<bool>,
    /// The units' headers and ranges, for a declaration index of the whole file
    /// (Fortran) or of split DWARF: parsed once, only then.
    units: std::cell::OnceCell<Units<'static>>,
    /// Every mapping and decompressed section the readers above point into, and the
    /// ones `.dwo` loads add later (hence the `RefCell`: only ever pushed to).
    bytes: RefCell<Vec<Owned>>,
}

impl DwarfFile {
    /// Reads `path` (a regular file, opened without blocking) and the `.dwp` package
    /// beside it when there is one.
    pub fn open(path: &Path) -> Result<DwarfFile, DwarfFileError> {
        Self::open_with(path, false)
    }

    /// [`DwarfFile::open`], and whether a unit is Fortran read too (no address needed:
    /// done while perf.data is read).
    pub fn open_prepared(path: &Path) -> Result<DwarfFile, DwarfFileError> {
        Self::open_with(path, true)
    }

    /// A large debug file (libc's: 1,500 units, 4 MB of compressed DWARF) takes ~0.1 s
    /// to open, the longest piece of work of a many-rank finalize: its parts that do
    /// not depend on each other run side by side (the largest section inflated apart
    /// from the others, then the units' languages apart from addr2line's units and the
    /// symbol map), so `-j 2` does not wait for one worker alone.
    fn open_with(path: &Path, with_units: bool) -> Result<DwarfFile, DwarfFileError> {
        let bytes = RefCell::new(Vec::new());
        let data = map(path, &bytes).map_err(|e| DwarfFileError::Io(path.to_path_buf(), e))?;
        Self::parse(path, data, bytes, with_units)
    }

    /// A binary hwprof carries in itself (`name` names it in errors): its agent, whose
    /// preloaded copy is removed when collection ends.
    pub fn embedded(name: &Path, data: &'static [u8]) -> Result<DwarfFile, DwarfFileError> {
        Self::parse(name, data, RefCell::new(Vec::new()), false)
    }

    fn parse(
        path: &Path,
        data: &'static [u8],
        bytes: RefCell<Vec<Owned>>,
        with_units: bool,
    ) -> Result<DwarfFile, DwarfFileError> {
        let object =
            object::File::parse(data).map_err(|e| DwarfFileError::Object(path.to_path_buf(), e))?;
        let endian = endian_of(&object);
        let mut inflated = inflate_sections(&object);
        let sections = gimli::DwarfSections::load(|id| {
            let found = inflated.iter_mut().find(|(name, _)| *name == id.name());
            let data = match found.map(|(_, d)| std::mem::take(d)) {
                Some(Cow::Borrowed(b)) => b,
                Some(Cow::Owned(v)) => keep_bytes(&bytes, Owned::Heap(v.into_boxed_slice())),
                None => &[],
            };
            Ok::<_, gimli::Error>(gimli::EndianSlice::new(data, endian))
        })
        .map_err(|e| DwarfFileError::Dwarf(path.to_path_buf(), e))?;
        let mut dwarf = sections.borrow(|s| *s);
        if with_units {
            // The units' languages and addr2line both read every unit's root DIE: each
            // abbreviation table is parsed once for both.
            dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::All);
        }
        let dwarf = Arc::new(dwarf);
        let (fortran, (ctx, symbols)) = side_by_side(
            || with_units.then(|| has_fortran_unit(&dwarf)),
            || (Context::from_arc_dwarf(dwarf.clone()), object.symbol_map()),
        );
        let ctx = ctx.map_err(|e| DwarfFileError::Dwarf(path.to_path_buf(), e))?;
        let function_starts = FunctionStarts::of(&object);
        let plt = PltNames::of(&object);
        let package = load_package(&package_path(path), &bytes);
        Ok(DwarfFile {
            ctx,
            dwarf,
            sections,
            symbols,
            function_starts,
            plt,
            package,
            fortran: fortran.map(std::cell::OnceCell::from).unwrap_or_default(),
            units: std::cell::OnceCell::new(),
            bytes,
        })
    }

    /// Declaration lines and Fortran hosts of the units that cover `addrs` (sorted),
    /// read from the sections already loaded for the lookups: the units addr2line
    /// finds them in, without parsing the others a second time (libc's 1,500, each
    /// with its line program header, for the few addresses a profile has in it); the
    /// whole file for Fortran, the units that cover them by their ranges for split
    /// DWARF (whose skeletons addr2line does not hand out).
    pub fn decl_index(&self, addrs: &[u64]) -> DeclIndex {
        let fortran = *self.fortran.get_or_init(|| has_fortran_unit(&self.dwarf));
        if !fortran && let Some(units) = self.units_of(addrs) {
            return DeclIndex::from_unit_refs(&units);
        }
        let dwarf = self.sections.borrow(|s| *s);
        DeclIndex::from_units(&dwarf, self.units(), Some(addrs))
    }

    /// The units addr2line finds `addrs` in, each once, in file order; `None` when one
    /// is a split unit.
    fn units_of(&self, addrs: &[u64]) -> Option<Vec<gimli::UnitRef<'_, Reader>>> {
        let mut found: Vec<gimli::UnitRef<'_, Reader>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for &a in addrs {
            let Some(unit) = self.unit_of(a) else {
                continue;
            };
            if !std::ptr::eq(unit.dwarf, &*self.dwarf) {
                return None;
            }
            // A large binary's profile has thousands of addresses in hundreds of units.
            if seen.insert(std::ptr::from_ref(unit.unit)) {
                found.push(unit);
            }
        }
        found.sort_by_key(|u| u.unit.header.offset());
        Some(found)
    }

    /// The unit addr2line finds `probe` in (a split unit's, loaded, for split DWARF);
    /// finalize looks it up once per address for [`DwarfFile::frame_die`].
    pub fn unit_of(&self, probe: u64) -> Option<gimli::UnitRef<'_, Reader>> {
        self.run_lookup(self.ctx.find_dwarf_and_unit(probe))
    }

    /// An addr2line lookup run to its end, loading the split DWARF it asks for.
    fn run_lookup<L: LookupContinuation<Buf = Reader>>(
        &self,
        mut lookup: LookupResult<L>,
    ) -> L::Output {
        loop {
            match lookup {
                LookupResult::Output(out) => return out,
                LookupResult::Load { load, continuation } => {
                    lookup = continuation.resume(self.load_dwo(load));
                }
            }
        }
    }

    /// What the DIE of a frame in `unit` says of its function (`die`, the frame's
    /// `dw_die_offset`; an inlined call's leads to the function's): read for the frames
    /// sampled only.
    pub fn frame_die(&self, unit: gimli::UnitRef<'_, Reader>, die: gimli::UnitOffset) -> FrameDie {
        let Ok(entry) = unit.unit.entry(die) else {
            return FrameDie::default();
        };
        let mut facts = super::dwarf_decl::frame_facts(unit, &entry);
        // The declaration index reads the file's own units, not split ones: a split
        // unit's offsets would name other DIEs there.
        if !std::ptr::eq(unit.dwarf, &*self.dwarf) {
            facts.dies.clear();
        }
        facts
    }

    fn units(&self) -> &Units<'static> {
        self.units
            .get_or_init(|| Units::parse(&self.sections.borrow(|s| *s)))
    }

    /// The frames (inlined first) at `probe`, loading split DWARF as needed.
    pub fn find_frames(&self, probe: u64) -> Result<FrameIter<'_, Reader>, gimli::Error> {
        self.run_lookup(self.ctx.find_frames(probe))
    }

    /// The source location of `probe` (from the skeleton's line table).
    pub fn find_location(&self, probe: u64) -> Result<Option<Location<'_>>, gimli::Error> {
        self.ctx.find_location(probe)
    }

    /// The symbol-table entry containing `probe`.
    pub fn find_symbol_info(&self, probe: u64) -> Option<Symbol<'_>> {
        self.symbols.containing(probe).map(|s| Symbol {
            name: s.name(),
            address: s.address(),
        })
    }

    /// The name of the function containing `probe` by the unwind tables, for code
    /// without a symbol (`func@0xSTART`, or the signal trampoline's name).
    pub fn find_unnamed_function(&self, probe: u64) -> Option<String> {
        self.function_starts.as_ref()?.name(probe)
    }

    /// The name of the PLT stub holding `probe` (`free@plt`), when it is one.
    pub fn find_plt_stub(&self, probe: u64) -> Option<String> {
        self.plt.as_ref()?.name(probe)
    }

    /// The name of the symbol containing `probe`.
    pub fn find_symbol(&self, probe: u64) -> Option<&str> {
        self.find_symbol_info(probe).map(|s| s.name)
    }

    /// A split unit's DWARF: from the package, else from the `.dwo` file the skeleton
    /// names (`comp_dir/path`), opened without blocking and only when regular, and kept
    /// only when its id is the skeleton's.
    fn load_dwo(&self, load: SplitDwarfLoad<Reader>) -> Option<Arc<gimli::Dwarf<Reader>>> {
        if let Some(p) = &self.package
            && let Ok(Some(cu)) = p.find_cu(load.dwo_id, &load.parent)
        {
            return Some(Arc::new(cu));
        }
        let mut path = PathBuf::new();
        if let Some(dir) = &load.comp_dir {
            path.push(os_path(dir.slice()));
        }
        path.push(os_path(load.path.as_ref()?.slice()));
        let data = map(&path, &self.bytes).ok()?;
        let object = object::File::parse(data).ok()?;
        let endian = endian_of(&object);
        let mut dwo = gimli::Dwarf::load(|id| {
            let name = id.dwo_name().filter(|_| looked_up(id));
            load_section(name, &object, endian, &self.bytes)
        })
        .ok()?;
        let header = dwo.units().next().ok()??;
        let unit = dwo.unit(header).ok()?;
        if unit.dwo_id != Some(load.dwo_id) {
            return None;
        }
        dwo.make_dwo(&load.parent);
        Some(Arc::new(dwo))
    }
}

/// The bytes of every DWARF section symbolizing reads (see [`looked_up`]), by name,
/// inflated when compressed: the largest (libc's `.debug_info`, 2.3 MB compressed)
/// apart from the others, which together take about as long. A corrupt or absurdly
/// large compressed section reads as absent, as does a missing one.
fn inflate_sections(object: &object::File<'static>) -> Vec<(&'static str, Cow<'static, [u8]>)> {
    let mut names = Vec::new();
    // gimli names the sections it loads: ask it for them without loading any.
    let _ = gimli::DwarfSections::load(|id| {
        if looked_up(id) {
            names.push(id.name());
        }
        Ok::<_, gimli::Error>(())
    });
    let mut found: Vec<_> = names
        .into_iter()
        .filter_map(|name| Some((name, object.section_by_name(name)?)))
        .collect();
    found.sort_by_key(|(_, s)| std::cmp::Reverse(s.size()));
    let inflate = |found: &[(&'static str, object::Section<'static, '_>)]| {
        found
            .iter()
            .filter_map(|(name, s)| Some((*name, s.uncompressed_data().ok()?)))
            .collect::<Vec<_>>()
    };
    let (largest, others) = found.split_at(found.len().min(1));
    let (mut out, others) = side_by_side(|| inflate(largest), || inflate(others));
    out.extend(others);
    out
}

/// `a()` and `b()`, on two threads when finalize has more than one worker (`-j`). Not
/// with `rayon::join`: the symbolizer being made is locked (`prepare`), and a worker
/// waiting there for the other half runs other tasks meanwhile, one of which may wait
/// for that lock: itself.
fn side_by_side<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if rayon::current_num_threads() < 2 {
        return (a(), b());
    }
    std::thread::scope(|scope| {
        let b = scope.spawn(b);
        let a = a();
        // A panic on the other thread is a bug: pass it on.
        (a, b.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    })
}

/// Whether symbolizing reads section `id`: location lists and macros are never read
/// (by addr2line's lookups nor by the declaration index), and in a distribution's debug
/// file they are the largest compressed sections (libc's `.debug_loclists`), so they
/// are left out rather than inflated for nothing.
fn looked_up(id: gimli::SectionId) -> bool {
    !matches!(
        id,
        gimli::SectionId::DebugLoc
            | gimli::SectionId::DebugLocLists
            | gimli::SectionId::DebugMacinfo
            | gimli::SectionId::DebugMacro
    )
}

fn os_path(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

fn endian_of(object: &object::File<'_>) -> gimli::RunTimeEndian {
    if object.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    }
}

/// `a.out` -> `a.out.dwp`, `prog` -> `prog.dwp` (where `dwp` and gdb look).
fn package_path(path: &Path) -> PathBuf {
    let mut ext = path.extension().map(OsString::from).unwrap_or_default();
    if !ext.is_empty() {
        ext.push(".");
    }
    ext.push("dwp");
    path.with_extension(ext)
}

/// Maps `path` (regular files only, opened `O_NONBLOCK`) and keeps the mapping in
/// `keep`; the returned slice lives as long as `keep`'s owner.
fn map(path: &Path, keep: &RefCell<Vec<Owned>>) -> std::io::Result<&'static [u8]> {
    let file = crate::raw::bounded::open_file(path, true)?;
    // SAFETY: a read-only private mapping of a regular file we only read; object and
    // gimli bound-check every access (a file truncated under us could fault, as for any
    // mapped binary).
    let m = unsafe { memmap2::Mmap::map(&file) }?;
    Ok(keep_bytes(keep, Owned::Map(m)))
}

/// Stores `owned` in `keep` and returns its bytes with the lifetime of `keep`'s owner.
fn keep_bytes(keep: &RefCell<Vec<Owned>>, owned: Owned) -> &'static [u8] {
    let (ptr, len) = {
        let b = owned.bytes();
        (b.as_ptr(), b.len())
    };
    keep.borrow_mut().push(owned);
    // SAFETY: the bytes of a mapping or a boxed slice do not move when the `Owned` is
    // moved into the vector (nor when the vector grows), and `keep` is only pushed to:
    // they live until the `DwarfFile` holding `keep` drops, after its readers (field
    // order), and no `'static` slice is handed out of this module.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// A section's bytes (decompressed when compressed; empty when absent or unreadable).
fn load_section(
    name: Option<&'static str>,
    object: &object::File<'static>,
    endian: gimli::RunTimeEndian,
    keep: &RefCell<Vec<Owned>>,
) -> Result<Reader, gimli::Error> {
    let data: &'static [u8] = match name.and_then(|n| object.section_by_name(n)) {
        Some(section) => match section.uncompressed_data() {
            Ok(std::borrow::Cow::Borrowed(b)) => b,
            Ok(std::borrow::Cow::Owned(v)) => keep_bytes(keep, Owned::Heap(v.into_boxed_slice())),
            // A corrupt or absurdly large compressed section: as if absent.
            Err(_) => &[],
        },
        None => &[],
    };
    Ok(gimli::EndianSlice::new(data, endian))
}

/// The `.dwp` package at `path`, when it is a regular file that parses.
fn load_package(path: &Path, keep: &RefCell<Vec<Owned>>) -> Option<gimli::DwarfPackage<Reader>> {
    let data = map(path, keep).ok()?;
    let object = object::File::parse(data).ok()?;
    let endian = endian_of(&object);
    gimli::DwarfPackage::load(
        |id| load_section(id.dwo_name(), &object, endian, keep),
        gimli::EndianSlice::new(&[], endian),
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_path_appends_dwp() {
        assert_eq!(package_path(Path::new("/a/prog")), Path::new("/a/prog.dwp"));
        assert_eq!(
            package_path(Path::new("/a/libx.so")),
            Path::new("/a/libx.so.dwp")
        );
    }

    #[test]
    fn a_fifo_is_never_opened_as_dwarf() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.dwo");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Would block for ever on a plain open (no writer).
        assert!(matches!(DwarfFile::open(&p), Err(DwarfFileError::Io(..))));
    }
}
