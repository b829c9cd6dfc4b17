//! `--python perfmap` (CPython 3.12+ with `PYTHONPERFSUPPORT=1`): the interpreter writes
//! `/tmp/perf-<pid>.map` (lines `START SIZE name`, hex addresses) naming its trampolines
//! `py::qualname:file`. The collector copies the map into the raw dir while the process
//! lives ([`copy_map`]); finalize names trampoline frames as Python functions
//! ([`PerfMap::symbol`]).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::profile::{FrameInfo, FrameKind, Function};

/// Where CPython writes a process's perf map: always `/tmp`, whatever `$TMPDIR` says
/// (`PyUnstable_PerfMapState_Init` in Python/sysmodule.c formats "/tmp/perf-%jd.map";
/// `_PyPerfTrampoline_AfterFork_Child` in Python/perf_trampoline.c the same).
pub fn map_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

/// Largest perf map copied (a map names each code object once: tens of MB at most).
const MAX_MAP_BYTES: u64 = 256 << 20;

/// Copies `/tmp/perf-<pid>.map` to `raw_dir/perf-<pid>.map` when the map was modified
/// at or after `since` (a map older than the collection belongs to an earlier process
/// that had the same pid). /tmp is everyone's: the map is read only when it is a
/// regular file (not a symlink, FIFO or device) owned by `uid` (the process's user,
/// checked by the agent link), and at most [`MAX_MAP_BYTES`] of it. Returns whether it
/// copied.
pub fn copy_map(pid: u32, uid: u32, raw_dir: &Path, since: SystemTime) -> bool {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let Ok(src) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(map_path(pid))
    else {
        return false;
    };
    let Ok(meta) = src.metadata() else {
        return false;
    };
    let fresh = meta.modified().is_ok_and(|t| t >= since);
    if !fresh || !meta.is_file() || meta.uid() != uid {
        return false;
    }
    // Written by fd of the raw dir: a fresh temporary name created exclusively
    // (`O_EXCL|O_NOFOLLOW`), renamed over the copy (rename replaces a planted link,
    // never writes through it).
    let Ok(dir) = crate::private_dir::PrivateDir::open(raw_dir) else {
        return false;
    };
    let tmp = crate::private_dir::PrivateDir::temp_name(&format!("perf-{pid}.map"));
    let Ok(mut out) = dir.create_file(&tmp) else {
        return false;
    };
    let copied = std::io::copy(&mut std::io::Read::take(src, MAX_MAP_BYTES), &mut out).is_ok()
        && dir.rename(&tmp, &format!("perf-{pid}.map")).is_ok();
    if !copied {
        let _ = dir.remove(&tmp);
    }
    copied
}

/// A parsed perf map.
#[derive(Debug, Default, Clone)]
pub struct PerfMap {
    entries: Vec<(u64, u64, String)>,
}

impl PerfMap {
    /// Reads `raw_dir/perf-<pid>.map`; None when absent.
    pub fn load(raw_dir: &Path, pid: u32) -> Option<PerfMap> {
        let text = crate::raw::bounded::read_limited_string(
            &raw_dir.join(format!("perf-{pid}.map")),
            crate::raw::bounded::Kind::PerfMap,
        )
        .ok()?;
        Some(Self::parse(&text))
    }

    /// All `perf-<pid>.map` files of a raw dir as one map (trampolines of forked
    /// children are the parent's); None when there is none.
    pub fn load_all(raw_dir: &Path) -> Option<PerfMap> {
        let mut all = PerfMap::default();
        for e in std::fs::read_dir(raw_dir).ok()?.flatten() {
            let name = e.file_name();
            let Some(n) = name.to_str() else { continue };
            if n.starts_with("perf-")
                && n.ends_with(".map")
                && let Ok(text) = crate::raw::bounded::read_limited_string(
                    &e.path(),
                    crate::raw::bounded::Kind::PerfMap,
                )
            {
                all.entries.extend(Self::parse(&text).entries);
            }
        }
        all.entries.sort_by_key(|e| e.0);
        (!all.entries.is_empty()).then_some(all)
    }

    /// Parses the text of a perf map; malformed lines are skipped.
    pub fn parse(text: &str) -> PerfMap {
        let mut entries: Vec<(u64, u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ' ');
                let start = u64::from_str_radix(it.next()?.trim_start_matches("0x"), 16).ok()?;
                let size = u64::from_str_radix(it.next()?.trim_start_matches("0x"), 16).ok()?;
                Some((start, size, it.next()?.trim().to_string()))
            })
            .collect();
        entries.sort_by_key(|e| e.0);
        PerfMap { entries }
    }

    /// The frame for `addr`: a Python frame for `py::qualname:file` trampolines, a native
    /// frame named as in the map otherwise.
    pub fn symbol(&self, addr: u64) -> Option<FrameInfo> {
        let i = self
            .entries
            .partition_point(|e| e.0 <= addr)
            .checked_sub(1)?;
        let (start, size, name) = &self.entries[i];
        if addr >= start.saturating_add((*size).max(1)) {
            return None;
        }
        let (function, file, kind, module) = match name.strip_prefix("py::") {
            Some(rest) => {
                let (q, f) = rest.rsplit_once(':').unwrap_or((rest, ""));
                (
                    q.to_string(),
                    (!f.is_empty()).then(|| f.to_string()),
                    FrameKind::Python,
                    "python",
                )
            }
            None => (name.clone(), None, FrameKind::Native, "[perf-map]"),
        };
        Some(FrameInfo {
            function: Function {
                name: function,
                module: module.to_string(),
                file: file.clone(),
                start_line: None,
                kind,
            },
            file,
            line: None,
        })
    }
}

/// The perf-map frame of `addr` in process `pid` of a raw dir (see [`PerfMap`]).
pub fn perfmap_symbol(raw_dir: &Path, pid: u32, addr: u64) -> Option<FrameInfo> {
    PerfMap::load(raw_dir, pid)?.symbol(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_trampolines() {
        let m = PerfMap::parse("7f00 40 py::Outer.work:/tmp/x.py\n7f80 10 other\nbad line\n");
        let f = m.symbol(0x7f10).unwrap_or_else(|| unreachable!());
        assert_eq!(f.function.name, "Outer.work");
        assert_eq!(f.function.kind, FrameKind::Python);
        assert_eq!(f.file.as_deref(), Some("/tmp/x.py"));
        assert_eq!(
            m.symbol(0x7f85).map(|f| f.function.kind),
            Some(FrameKind::Native)
        );
        assert!(m.symbol(0x7f50).is_none());
        assert!(m.symbol(0x10).is_none());
    }
}
