//! Finding the CPython interpreter in a process: `_PyRuntime` (dynamic or static symbol,
//! or the `.PyRuntime` section), the version (`Py_Version` on 3.11+, else the library or
//! executable name, cross-checked with `_Py_DebugOffsets` on 3.13+), and the layout for
//! it. Unknown, debug and free-threaded builds are refused with a reason.

use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

use super::layouts::{self, Layout};
use super::memory::ProcessMemory;
use super::wire::frames::Decoder;

/// Why a process's interpreter cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    /// No libpython / python executable with `_PyRuntime` mapped.
    #[error("no CPython interpreter found in process {0}")]
    NotPython(u32),
    /// A version outside 3.8-3.13, or a build this hwprof does not know.
    #[error("CPython {0} is not supported (3.8-3.13 release builds are)")]
    Unsupported(String),
    /// A free-threaded build.
    #[error("CPython {0} is a free-threaded (no-GIL) build, which hwprof does not read")]
    FreeThreaded(String),
    /// /proc could not be read.
    #[error("cannot read /proc/{0}/maps: {1}")]
    Proc(u32, String),
}

/// The interpreter of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// (major, minor, micro).
    pub version: (u32, u32, u32),
    /// Address of `_PyRuntime`.
    pub runtime: u64,
    /// Address of `PyCode_Type`, 0 when the binary does not name it: a frame whose code
    /// object has another type is not a frame (a walk that met a pointer not yet set).
    pub code_type: u64,
    /// Struct offsets for this version.
    pub layout: Layout,
    /// The frame decoder for `layout` and `code_type`.
    pub decoder: Decoder,
    /// File holding the runtime (libpython or the executable).
    pub binary: PathBuf,
}

impl Interpreter {
    /// "3.11.7", or "3.8" when the micro version is unknown (before 3.11 the version
    /// comes from the file name).
    pub fn version_string(&self) -> String {
        match self.version.2 {
            UNKNOWN_MICRO => format!("{}.{}", self.version.0, self.version.1),
            m => format!("{}.{}.{m}", self.version.0, self.version.1),
        }
    }
}

/// `Interpreter::version.2` when the micro version is not known.
pub const UNKNOWN_MICRO: u32 = u32::MAX;

/// One mapping of /proc/PID/maps with a file.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Start address.
    pub start: u64,
    /// File offset.
    pub offset: u64,
    /// File path.
    pub path: PathBuf,
}

/// File-backed mappings of a process (through `procfs`, which keeps a path with
/// spaces whole).
pub fn read_maps(pid: u32) -> Result<Vec<Mapping>, InterpError> {
    let maps = procfs::process::Process::new(pid as i32)
        .and_then(|p| p.maps())
        .map_err(|e| InterpError::Proc(pid, e.to_string()))?;
    Ok(file_mappings(maps))
}

/// The file-backed mappings of parsed maps.
fn file_mappings(maps: procfs::process::MemoryMaps) -> Vec<Mapping> {
    maps.into_iter()
        .filter_map(|m| match m.pathname {
            procfs::process::MMapPath::Path(path) => Some(Mapping {
                start: m.address.0,
                offset: m.offset,
                path,
            }),
            _ => None,
        })
        .collect()
}

/// Version from a file name: `python3.11`, `libpython3.8.so.1.0`, `python3.13t` (the `t`
/// marks a free-threaded build, `d` a debug build). (major, minor, flags).
pub fn version_from_name(path: &Path) -> Option<(u32, u32, String)> {
    let name = path.file_name()?.to_str()?;
    let rest = name
        .strip_prefix("lib")
        .unwrap_or(name)
        .strip_prefix("python")?;
    let rest = rest.split(".so").next()?;
    let (maj, tail) = rest.split_once('.')?;
    let digits: String = tail.chars().take_while(|c| c.is_ascii_digit()).collect();
    let flags: String = tail[digits.len()..].to_string();
    Some((maj.parse().ok()?, digits.parse().ok()?, flags))
}

/// Whether the path names a CPython executable or library.
pub fn is_python_name(path: &Path) -> bool {
    version_from_name(path).is_some()
        || path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == "python" || n == "python3")
}

#[derive(Clone, Copy)]
struct Symbols {
    runtime: Option<u64>,
    py_version: Option<u64>,
    code_type: Option<u64>,
    min_vaddr: u64,
}

/// The symbols of an interpreter binary, looked up once per file (by path, size and
/// mtime) for all the processes of a collection: multiprocessing starts many.
fn elf_symbols(path: &Path) -> Option<Symbols> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    type Key = (std::path::PathBuf, u64, Option<std::time::SystemTime>);
    static CACHE: Mutex<Option<HashMap<Key, Option<Symbols>>>> = Mutex::new(None);
    let meta = std::fs::metadata(path).ok()?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    if let Ok(c) = CACHE.lock()
        && let Some(s) = c.as_ref().and_then(|m| m.get(&key))
    {
        return *s;
    }
    let found = read_elf_symbols(path);
    if let Ok(mut c) = CACHE.lock() {
        c.get_or_insert_with(HashMap::new).insert(key, found);
    }
    found
}

/// Mapped, not read: only the dynamic symbol table is touched when it has the symbols
/// (a static python binary with debug info is tens of MB).
fn read_elf_symbols(path: &Path) -> Option<Symbols> {
    // A path from /proc/PID/maps: maybe a FIFO by now (`open_file` never blocks).
    let file = crate::raw::bounded::open_file(path, true).ok()?;
    // SAFETY: a read-only private mapping of a file; a binary replaced under us gives
    // wrong bytes (bounds-checked by `object`), not undefined behaviour we rely on.
    let data = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let file = object::File::parse(&*data).ok()?;
    let mut s = Symbols {
        runtime: None,
        py_version: None,
        code_type: None,
        min_vaddr: file.segments().map(|seg| seg.address()).min().unwrap_or(0) & !0xfff,
    };
    fn scan<'d, S: ObjectSymbol<'d>>(s: &mut Symbols, syms: impl Iterator<Item = S>) {
        for sym in syms {
            match sym.name() {
                Ok("_PyRuntime") if s.runtime.is_none() => s.runtime = Some(sym.address()),
                Ok("Py_Version") if s.py_version.is_none() => s.py_version = Some(sym.address()),
                Ok("PyCode_Type") if s.code_type.is_none() => s.code_type = Some(sym.address()),
                _ => {}
            }
            if s.runtime.is_some() && s.py_version.is_some() && s.code_type.is_some() {
                break;
            }
        }
    }
    scan(&mut s, file.dynamic_symbols());
    if s.runtime.is_none() || s.py_version.is_none() || s.code_type.is_none() {
        scan(&mut s, file.symbols());
    }
    if s.runtime.is_none()
        && let Some(sec) = file.section_by_name(".PyRuntime")
    {
        s.runtime = Some(sec.address());
    }
    Some(s)
}

/// Finds and checks the interpreter of a process, from its maps and memory.
pub fn find_interpreter(
    pid: u32,
    maps: &[Mapping],
    mem: &dyn ProcessMemory,
) -> Result<Interpreter, InterpError> {
    // Candidates: libpython first, then any python-named file, then the executable.
    let exe = i32::try_from(pid).ok().and_then(crate::util::proc::exe);
    let mut cands: Vec<&Mapping> = maps
        .iter()
        .filter(|m| m.offset == 0)
        .filter(|m| {
            m.path.to_string_lossy().contains("libpython")
                || is_python_name(&m.path)
                || exe.as_deref() == Some(m.path.as_path())
        })
        .collect();
    cands.sort_by_key(|m| !m.path.to_string_lossy().contains("libpython"));
    cands.dedup_by(|a, b| a.path == b.path);
    for m in cands {
        let Some(syms) = elf_symbols(&m.path) else {
            continue;
        };
        let Some(rt) = syms.runtime else { continue };
        let bias = m.start.wrapping_sub(syms.min_vaddr);
        let runtime = rt.wrapping_add(bias);
        let name_ver =
            version_from_name(&m.path).or_else(|| exe.as_deref().and_then(version_from_name));
        let from_mem = syms
            .py_version
            .and_then(|a| mem.read_u64(a.wrapping_add(bias)).ok())
            .map(|v| v as u32)
            .filter(|&v| v >> 24 == 3);
        let (major, minor, micro) = match (from_mem, &name_ver) {
            (Some(v), _) => (v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff),
            (None, Some((a, b, _))) => (*a, *b, UNKNOWN_MICRO),
            (None, None) => return Err(InterpError::Unsupported("of unknown version".into())),
        };
        let vs = if micro == UNKNOWN_MICRO {
            format!("{major}.{minor}")
        } else {
            format!("{major}.{minor}.{micro}")
        };
        if let Some((_, _, flags)) = &name_ver {
            if flags.contains('t') {
                return Err(InterpError::FreeThreaded(vs));
            }
            if flags.contains('d') {
                return Err(InterpError::Unsupported(format!("{vs} (debug build)")));
            }
        }
        let layout = if (major, minor) >= (3, 13) {
            let b = mem
                .read_vec(runtime, layouts::DEBUG_OFFSETS_SIZE, 4096)
                .map_err(|_| InterpError::Unsupported(vs.clone()))?;
            match layouts::from_debug_offsets(&b) {
                Ok(l) => l,
                Err(layouts::DebugOffsetsError::FreeThreaded(..)) => {
                    return Err(InterpError::FreeThreaded(vs));
                }
                Err(_) => return Err(InterpError::Unsupported(vs)),
            }
        } else {
            layouts::for_version(major, minor)
                .ok_or_else(|| InterpError::Unsupported(vs.clone()))?
        };
        let code_type = syms.code_type.map_or(0, |a| a.wrapping_add(bias));
        // A layout the frame decoder cannot walk (a field missing: a 3.13 build whose
        // _Py_DebugOffsets leaves one out).
        let decoder =
            Decoder::new(layout, code_type).ok_or_else(|| InterpError::Unsupported(vs.clone()))?;
        return Ok(Interpreter {
            version: (major, minor, micro),
            runtime,
            code_type,
            layout,
            decoder,
            binary: m.path.clone(),
        });
    }
    Err(InterpError::NotPython(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_names() {
        let v = |p: &str| version_from_name(Path::new(p));
        assert_eq!(v("/usr/bin/python3.11"), Some((3, 11, String::new())));
        assert_eq!(v("/x/libpython3.8.so.1.0"), Some((3, 8, String::new())));
        assert_eq!(v("/x/python3.13t"), Some((3, 13, "t".into())));
        assert_eq!(v("/x/libpython3.10d.so"), Some((3, 10, "d".into())));
        assert_eq!(v("/bin/bash"), None);
        assert!(is_python_name(Path::new("/root/.pyenv/shims/python3")));
        assert!(!is_python_name(Path::new("/usr/bin/pythonista")));
    }

    #[test]
    fn maps_lines() {
        use procfs::FromBufRead;
        let text = "7f00-7f10 r--p 00000000 08:01 12                         /usr/lib/libpython3.11.so.1.0\n\
                    7f10-7f20 r-xp 00010000 08:01 12                         /opt/my python/bin/python3.11\n\
                    7f30-7f40 rw-p 00000000 00:00 0 \n\
                    7f50-7f60 r-xp 00000000 00:00 0                          [vdso]\n";
        let maps = procfs::process::MemoryMaps::from_buf_read(text.as_bytes()).unwrap();
        let m = file_mappings(maps);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].start, m[1].offset), (0x7f00, 0x10000));
        // A path with a space is one path.
        assert_eq!(m[1].path, Path::new("/opt/my python/bin/python3.11"));
        // This process's own maps, read live.
        assert!(!read_maps(std::process::id()).unwrap().is_empty());
    }

    #[test]
    fn free_threaded_and_unknown_debug_offsets_are_refused() {
        use crate::python::layouts::{DEBUG_OFFSETS_SIZE, DebugOffsetsError, from_debug_offsets};
        let mut b = vec![0u8; DEBUG_OFFSETS_SIZE];
        assert_eq!(from_debug_offsets(&b), Err(DebugOffsetsError::NoCookie));
        b[..8].copy_from_slice(b"xdebugpy");
        b[8..16].copy_from_slice(&0x030d00f0u64.to_le_bytes());
        b[16] = 1;
        assert_eq!(
            from_debug_offsets(&b),
            Err(DebugOffsetsError::FreeThreaded(3, 13))
        );
        b[16] = 0;
        assert!(from_debug_offsets(&b).is_ok());
        b[8..16].copy_from_slice(&0x030e00f0u64.to_le_bytes());
        assert_eq!(
            from_debug_offsets(&b),
            Err(DebugOffsetsError::UnknownVersion(3, 14))
        );
    }
}
