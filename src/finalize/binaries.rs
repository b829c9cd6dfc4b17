//! Finding and loading the ELF files a profile needs: the binary itself (where the
//! target mapped it, an `--archive` copy, or a `--search-dir`), checked against the
//! build id recorded at collection, and its debug info (by build id under
//! /usr/lib/debug/.build-id, or by `.gnu_debuglink`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSegment};

/// Where to look.
#[derive(Clone, Debug, Default)]
pub struct SearchPaths {
    /// `--search-dir`s.
    pub search_dirs: Vec<PathBuf>,
    /// The results directory (for `symbols/<build-id>/`).
    pub results_dir: PathBuf,
    /// Debug roots (normally /usr/lib/debug).
    pub debug_roots: Vec<PathBuf>,
    /// ELF files loaded so far, shared by all raw directories.
    pub elf_cache: ElfCache,
    /// Symbolizers started while reading (finalize; None: symbolized after reading).
    pub prepared: Option<std::sync::Arc<super::prepare::Prepared>>,
}

/// The ELF files finalize has loaded, by path, size and modification time: the ranks of
/// an MPI job map the same binaries, whose text and unwind sections (megabytes for
/// libc or libpython) were loaded and held once per rank, so finalize's memory grew by
/// ~2 MB per rank. Shared, it stays flat.
/// Clones share one cache.
#[derive(Clone, Default)]
pub struct ElfCache {
    loaded: Arc<std::sync::Mutex<ElfMap>>,
    /// Build ids of the candidate files looked at: each rank's modules are looked up
    /// again, and mapping a file to read its notes (then unmapping it) once per rank
    /// and module cost a TLB shootdown on every other core at each unmap.
    build_ids: Arc<std::sync::Mutex<BuildIdMap>>,
    /// [`SearchPaths::binary`]'s answers: every rank of an MPI job maps the same
    /// binaries, and looking each up again cost ~8 path lookups per rank (the archive's
    /// copy, the agent's, the original's size and time, twice).
    found: Arc<std::sync::Mutex<FoundMap>>,
}

type FoundMap = std::collections::HashMap<(String, Option<Vec<u8>>), Option<Arc<LoadedElf>>>;

type BuildIdMap = std::collections::HashMap<(PathBuf, u64, i64), Option<Vec<u8>>>;

type ElfMap = std::collections::HashMap<(PathBuf, u64, i64), Arc<LoadedElf>>;

impl std::fmt::Debug for ElfCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ElfCache")
    }
}

impl ElfCache {
    /// `path` loaded, once for all callers while the file is unchanged.
    pub fn load(&self, path: &Path) -> Option<Arc<LoadedElf>> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let key = (path.to_path_buf(), meta.len(), meta.mtime());
        if let Some(e) = self.loaded.lock().ok()?.get(&key) {
            return Some(e.clone());
        }
        // Loaded outside the lock: two threads may load the same file once each.
        let elf = Arc::new(load_elf(path)?);
        if let Ok(mut m) = self.loaded.lock() {
            m.insert(key, elf.clone());
        }
        Some(elf)
    }

    /// The GNU build id of `path` (None: none, or not an ELF file), read once while
    /// the file is unchanged.
    pub fn build_id(&self, path: &Path) -> Option<Vec<u8>> {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return crate::util::elf_build_id(path);
        };
        let key = (path.to_path_buf(), meta.len(), meta.mtime());
        if let Some(b) = self
            .build_ids
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return b;
        }
        let b = crate::util::elf_build_id(path);
        if let Ok(mut m) = self.build_ids.lock() {
            m.insert(key, b.clone());
        }
        b
    }
}

/// A loadable segment: file offset range and the address it is linked at.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// File offset.
    pub offset: u64,
    /// Size in the file.
    pub filesz: u64,
    /// Linked address (SVMA).
    pub vaddr: u64,
    /// Mapped executable (PF_X).
    pub executable: bool,
}

/// What finalize keeps of an ELF file.
#[derive(Default)]
pub struct LoadedElf {
    /// The file used.
    pub path: PathBuf,
    /// Its segments.
    pub segments: Vec<Segment>,
    /// Unwind sections for framehop.
    pub unwind: UnwindSections,
    /// Build id, if any.
    pub build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink` file name.
    pub debuglink: Option<String>,
}

/// Section data framehop needs.
#[derive(Clone, Default)]
pub struct UnwindSections {
    /// `.text` address range and bytes.
    pub text: Option<(std::ops::Range<u64>, Arc<[u8]>)>,
    /// `.eh_frame`.
    pub eh_frame: Option<(std::ops::Range<u64>, Arc<[u8]>)>,
    /// `.eh_frame_hdr`.
    pub eh_frame_hdr: Option<(std::ops::Range<u64>, Arc<[u8]>)>,
    /// `.debug_frame` bytes.
    pub debug_frame: Option<Arc<[u8]>>,
    /// `.got` address range.
    pub got: Option<std::ops::Range<u64>>,
}

impl LoadedElf {
    /// SVMA of the start of an executable mapping at file offset `offset` (mmap's
    /// page-aligned pgoff).
    ///
    /// The loader maps each segment from its offset rounded down to a page, and that
    /// page may also hold the previous segment: lld (clang, Rust) puts the read-only
    /// segment at offset 0 and `.text` at offset 0x710, address 0x1710, in one page. So
    /// the mapped segment is the executable one starting in that page, not the first
    /// one containing the offset.
    pub fn svma_of_offset(&self, offset: u64) -> Option<u64> {
        // x86-64 pages are 4 KiB whatever the segment alignment (ld.so rounds p_offset
        // down to the page size); finalize may run on another machine.
        const PAGE: u64 = 4096;
        self.segments
            .iter()
            .find(|s| s.executable && s.offset & !(PAGE - 1) == offset)
            .or_else(|| {
                self.segments
                    .iter()
                    // `offset - s.offset`: a hostile p_offset + p_filesz can overflow.
                    .find(|s| offset >= s.offset && offset - s.offset < s.filesz.max(1))
            })
            .map(|s| s.vaddr.wrapping_sub(s.offset).wrapping_add(offset))
    }
}

fn read_file(path: &Path) -> Option<memmap2::Mmap> {
    // A mapped path may be a FIFO by now: opening it must not block.
    let f = crate::raw::bounded::open_file(path, true).ok()?;
    // SAFETY: read-only mapping of a binary; a binary rewritten during finalize could
    // give wrong symbols but object's parser bounds-checks every access.
    unsafe { memmap2::Mmap::map(&f) }.ok()
}

/// `address..address + size`, None when that overflows (a hostile section header).
fn section_range(address: u64, size: u64) -> Option<std::ops::Range<u64>> {
    Some(address..address.checked_add(size)?)
}

/// Parse an ELF file's segments and unwind sections.
pub fn load_elf(path: &Path) -> Option<LoadedElf> {
    let data = read_file(path)?;
    parse_elf(path, &data)
}

/// The agent library embedded in this hwprof (`python::embedded`), parsed once, when
/// its build id is `build_id` (or none was recorded): the copy each launch preloaded is
/// removed when collection ends, and its frames must still unwind (locks mode's wait
/// samples are taken inside it).
pub fn embedded_agent(build_id: Option<&[u8]>) -> Option<Arc<LoadedElf>> {
    static AGENT: std::sync::OnceLock<Option<Arc<LoadedElf>>> = std::sync::OnceLock::new();
    let elf = AGENT
        .get_or_init(|| {
            let name = Path::new(crate::python::embedded::AGENT_FILE_NAME);
            parse_elf(name, crate::python::embedded::AGENT_SO).map(Arc::new)
        })
        .clone()?;
    match build_id {
        Some(want) if elf.build_id.as_deref() != Some(want) => None,
        _ => Some(elf),
    }
}

/// [`load_elf`] of bytes already read; `path` names them.
fn parse_elf(path: &Path, data: &[u8]) -> Option<LoadedElf> {
    let obj = object::File::parse(data).ok()?;
    let segments = obj
        .segments()
        .map(|s| {
            let (offset, filesz) = s.file_range();
            Segment {
                offset,
                filesz,
                vaddr: s.address(),
                executable: matches!(s.flags(), object::SegmentFlags::Elf { p_flags, .. }
                    if p_flags.contains(object::elf::PF_X)),
            }
        })
        .collect();
    let sect = |name: &str| {
        let s = obj.section_by_name(name)?;
        let range = section_range(s.address(), s.size())?;
        let bytes = s.uncompressed_data().ok()?;
        Some((range, Arc::<[u8]>::from(&*bytes)))
    };
    let unwind = UnwindSections {
        text: sect(".text"),
        eh_frame: sect(".eh_frame"),
        eh_frame_hdr: sect(".eh_frame_hdr"),
        debug_frame: sect(".debug_frame").map(|s| s.1),
        got: obj
            .section_by_name(".got")
            .and_then(|s| section_range(s.address(), s.size())),
    };
    let debuglink = obj
        .gnu_debuglink()
        .ok()
        .flatten()
        .map(|(name, _crc)| String::from_utf8_lossy(name).into_owned());
    Some(LoadedElf {
        path: path.to_path_buf(),
        segments,
        unwind,
        build_id: obj.build_id().ok().flatten().map(|b| b.to_vec()),
        debuglink,
    })
}

impl SearchPaths {
    /// The binary that was mapped at `path` with `build_id`, found
    /// ([`SearchPaths::find_binary`]) and loaded once for all callers.
    pub fn binary(&self, path: &str, build_id: Option<&[u8]>) -> Option<Arc<LoadedElf>> {
        let key = (path.to_string(), build_id.map(<[u8]>::to_vec));
        let found = &self.elf_cache.found;
        if let Some(elf) = found.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return elf;
        }
        // Found outside the lock: two threads may look the same binary up once each.
        let elf = self
            .find_binary(path, build_id)
            .and_then(|p| self.elf_cache.load(&p));
        if let Ok(mut m) = found.lock() {
            m.insert(key, elf.clone());
        }
        elf
    }

    /// Find the binary that was mapped at `path` with `build_id`. A candidate whose
    /// build id differs from the recorded one is rejected.
    pub fn find_binary(&self, path: &str, build_id: Option<&[u8]>) -> Option<PathBuf> {
        let original = Path::new(path);
        let name = original.file_name()?;
        let mut candidates = Vec::new();
        if let Some(b) = build_id {
            let dir = self.results_dir.join("symbols").join(crate::util::hex(b));
            candidates.push(dir.join(name));
        }
        for d in &self.search_dirs {
            candidates.push(d.join(name));
            candidates.push(d.join(path.trim_start_matches('/')));
        }
        candidates.push(original.to_path_buf());
        for d in &self.search_dirs {
            candidates.extend(find_by_name(d, name, 3));
        }
        candidates.into_iter().find(|c| {
            c.is_file()
                && match build_id {
                    Some(want) => self.elf_cache.build_id(c).as_deref() == Some(want),
                    None => true,
                }
        })
    }

    /// Find separate debug info for a binary.
    pub fn find_debug_file(&self, elf: &LoadedElf) -> Option<PathBuf> {
        let mut roots = self.debug_roots.clone();
        roots.extend(self.search_dirs.iter().cloned());
        if let Some(b) = &elf.build_id
            && b.len() > 1
        {
            let h = crate::util::hex(b);
            for r in &roots {
                let p = r
                    .join(".build-id")
                    .join(&h[..2])
                    .join(format!("{}.debug", &h[2..]));
                if p.is_file() {
                    return Some(p);
                }
            }
        }
        let link = elf.debuglink.as_ref()?;
        let dir = elf.path.parent()?;
        let mut candidates = vec![dir.join(link), dir.join(".debug").join(link)];
        for r in &roots {
            candidates.push(r.join(dir.strip_prefix("/").unwrap_or(dir)).join(link));
            candidates.push(r.join(link));
        }
        candidates
            .into_iter()
            .find(|c| c.is_file() && c != &elf.path)
    }
}

fn find_by_name(dir: &Path, name: &std::ffi::OsStr, depth: u32) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() && depth > 0 {
            out.extend(find_by_name(&p, name, depth - 1));
        } else if t.is_file() && p.file_name() == Some(name) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(segments: Vec<Segment>) -> LoadedElf {
        LoadedElf {
            segments,
            ..Default::default()
        }
    }

    fn seg(offset: u64, filesz: u64, vaddr: u64, executable: bool) -> Segment {
        Segment {
            offset,
            filesz,
            vaddr,
            executable,
        }
    }

    #[test]
    fn lld_text_sharing_the_first_page_maps_at_its_own_address() {
        // `gcc -fuse-ld=lld` of tests/programs/hot.c (readelf -l).
        let e = elf(vec![
            seg(0, 0x708, 0, false),
            seg(0x710, 0x270, 0x1710, true),
            seg(0x980, 0x1d8, 0x2980, false),
        ]);
        assert_eq!(e.svma_of_offset(0), Some(0x1000));
        // Rust's cdylib (the agent): .text from offset 0x13e38 at 0x14e38.
        let e = elf(vec![
            seg(0, 0x13e38, 0, false),
            seg(0x13e38, 0x43178, 0x14e38, true),
        ]);
        assert_eq!(e.svma_of_offset(0x13000), Some(0x14000));
    }

    #[test]
    fn gnu_ld_layouts_are_unchanged() {
        // libpython: offset == address for every segment.
        let e = elf(vec![
            seg(0, 0xf4188, 0, false),
            seg(0xf5000, 0x23b6d9, 0xf5000, true),
        ]);
        assert_eq!(e.svma_of_offset(0xf5000), Some(0xf5000));
        // A whole file mapped executable from 0 (old single-segment layouts).
        let e = elf(vec![seg(0, 0x5000, 0x400000, true)]);
        assert_eq!(e.svma_of_offset(0), Some(0x400000));
        // A mapping inside a segment (a later part mapped on its own).
        assert_eq!(e.svma_of_offset(0x2000), Some(0x402000));
    }

    /// Patches the section header of `name` in a 64-bit little-endian ELF image.
    fn patch_section(elf: &mut [u8], name: &str, addr: u64, size: u64) {
        let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
        let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let shoff = u64_at(elf, 0x28) as usize;
        let (shentsize, shnum, shstrndx) =
            (u16_at(elf, 0x3a), u16_at(elf, 0x3c), u16_at(elf, 0x3e));
        let strtab = u64_at(elf, shoff + shstrndx * shentsize + 0x18) as usize;
        for i in 0..shnum {
            let h = shoff + i * shentsize;
            let n = strtab + u32::from_le_bytes(elf[h..h + 4].try_into().unwrap()) as usize;
            if elf[n..].starts_with(name.as_bytes()) && elf[n + name.len()] == 0 {
                elf[h + 0x10..h + 0x18].copy_from_slice(&addr.to_le_bytes());
                elf[h + 0x20..h + 0x28].copy_from_slice(&size.to_le_bytes());
                return;
            }
        }
        panic!("no section {name}");
    }

    /// A section whose address + size overflows (a crafted binary in a search dir)
    /// is dropped, never a panic nor a wrapped range handed to the unwinder.
    #[test]
    fn a_hostile_section_range_is_dropped() {
        let mut bytes = std::fs::read("/bin/true").expect("/bin/true");
        let good = parse_elf(Path::new("/bin/true"), &bytes).expect("parses");
        assert!(good.unwind.eh_frame.is_some());
        patch_section(&mut bytes, ".eh_frame", u64::MAX - 8, 0x100);
        patch_section(&mut bytes, ".got", u64::MAX, u64::MAX);
        let e = parse_elf(Path::new("/bin/true"), &bytes).expect("still parses");
        assert!(e.unwind.eh_frame.is_none());
        assert!(e.unwind.got.is_none());
        assert!(e.unwind.eh_frame_hdr.is_some());
        // A segment whose offset + size overflows.
        let e = elf(vec![seg(u64::MAX - 4, u64::MAX, 0x1000, false)]);
        assert_eq!(e.svma_of_offset(u64::MAX - 2), Some(0x1002));
        assert_eq!(e.svma_of_offset(3), None);
    }
}
