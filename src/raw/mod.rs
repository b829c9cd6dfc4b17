//! Reading what collect wrote: the raw directories of a results directory, and their
//! perf.data files, tolerant of truncation.
//!
//! A perf.data cut short (target crash, hwprof killed, disk full, a partial copy) is
//! read up to its last complete record: the header is patched in memory so that
//! linux-perf-data sees a data section that ends there, and the number of bytes
//! skipped is reported. Nothing in a results directory is trusted: sizes are checked
//! against the file.

pub mod bounded;
pub mod records;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Frames a call chain holds at most (`sample_max_stack`, the kernel's default
/// `kernel.perf_event_max_stack`, which an ordinary user may not exceed): a frame-pointer
/// stack that long was cut.
pub const MAX_CALLCHAIN_FRAMES: u16 = 127;

/// Name of a raw directory: `<host>.<rank>.<pid>`, rank `-` outside MPI.
pub fn raw_dir_name(host: &str, rank: Option<u32>, pid: u32) -> String {
    let rank = rank.map(|r| r.to_string()).unwrap_or_else(|| "-".into());
    format!("{}.{rank}.{pid}", host_label(host))
}

/// A host name as it appears in raw directory names (no `.` or `/`).
pub fn host_label(host: &str) -> String {
    host.chars()
        .map(|c| if c == '/' || c == '.' { '_' } else { c })
        .collect()
}

/// Parse a raw directory name back into (host, rank, pid).
pub fn parse_raw_dir_name(name: &str) -> Option<(String, Option<u32>, u32)> {
    let mut parts = name.rsplitn(3, '.');
    let pid = parts.next()?.parse().ok()?;
    let rank = match parts.next()? {
        "-" => None,
        r => Some(r.parse().ok()?),
    };
    let host = parts.next()?.to_string();
    Some((host, rank, pid))
}

/// Errors reading raw data.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// Not a perf.data at all.
    #[error("{path} is not a perf.data file ({why})")]
    NotPerfData {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// One collected process tree.
#[derive(Clone, Debug)]
pub struct RawDir {
    /// Its path.
    pub path: PathBuf,
    /// Directory name (`<host>.<rank>.<pid>`).
    pub name: String,
    /// Host.
    pub host: String,
    /// MPI rank.
    pub rank: Option<u32>,
    /// Root pid.
    pub pid: u32,
}

/// The raw directories of a results directory, sorted by name.
pub fn list_raw_dirs(dir: &Path) -> Result<Vec<RawDir>, RawError> {
    let raw = dir.join("raw");
    let rd = std::fs::read_dir(&raw).map_err(|source| RawError::Io {
        path: raw.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((host, rank, pid)) = parse_raw_dir_name(&name) else {
            continue;
        };
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(RawDir {
                path: e.path(),
                name,
                host,
                rank,
                pid,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A perf.data opened for reading, with the header patched to what is really there.
///
/// The file is mapped, and the pages behind the read position are released as reading
/// goes (`MADV_DONTNEED`), so finalize reads without a copy through the kernel yet its
/// memory does not grow with the size of the data.
///
/// Every offset and size of the header is checked against the file before
/// linux-perf-data sees it ([`check_layout`]): it allocates what a feature section or a
/// count claims, so a size of 2^44 aborted finalize. Only the feature finalize reads
/// (`EVENT_DESC`: event names and ids) is handed over, and only when its counts and
/// strings fit its section; the others are hidden by a rewritten feature table.
pub struct TolerantPerfFile {
    /// Shared by [`TolerantPerfFile::reopen`]'s copies: mapped (and unmapped) once.
    map: std::sync::Arc<memmap2::Mmap>,
    /// Bytes that replace the file's at their offset (patched header, feature table).
    patches: Vec<(usize, Vec<u8>)>,
    pos: u64,
    released: usize,
    data: std::ops::Range<usize>,
    /// Bytes of the data section not read because the file was cut short.
    pub skipped_bytes: u64,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off.saturating_add(8))
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off.checked_add(4)?)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

/// Release mapped pages in chunks of this size, at this alignment.
const RELEASE_CHUNK: usize = 64 << 20;
const RELEASE_ALIGN: usize = 2 << 20;

/// perf.data header size (`struct perf_file_header`).
const HEADER_SIZE: usize = 104;
/// `HEADER_EVENT_DESC`, the one feature section finalize reads.
const FEAT_EVENT_DESC: usize = 12;
/// Smallest and largest `perf_event_attr` believed (PERF_ATTR_SIZE_VER0 is 64; the
/// kernel's is 136 today).
const ATTR_SIZE_MIN: u64 = 64;
const ATTR_SIZE_MAX: u64 = 4096;
/// Largest `EVENT_DESC` section read (perf writes a few KiB per event).
const EVENT_DESC_MAX: u64 = 64 << 20;

/// True when linux-perf-event-reader reads exactly `own` bytes for an attr whose own
/// size field says `own`: it reads whole versions (PERF_ATTR_SIZE_VER0..VER7) and
/// skips what lies past VER7, so a size between two versions (say 70) leaves it a few
/// bytes short, and every count it reads after the attr (ids, their section) comes
/// from the wrong place: a fuzzed file made it reserve 0x68 << 56 bytes. perf writes
/// only the kernel's sizes, which are all versions.
fn attr_read_exactly(own: u64) -> bool {
    matches!(own, 64 | 72 | 80 | 96 | 104 | 112 | 120) || own >= 128
}

/// True when an attr of own size `own` is read as such inside a slot of `slot` bytes.
fn attr_fits_slot(own: u64, slot: u64) -> bool {
    attr_read_exactly(own) && own <= slot
}

impl TolerantPerfFile {
    /// Open and validate `path` (a regular file, not a symlink).
    pub fn open(path: &Path) -> Result<Self, RawError> {
        let io = |source| RawError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = bounded::open_regular(path).map_err(io)?;
        // SAFETY: a results directory's file, not modified while finalize reads it;
        // every access below is bounds-checked against the mapping's length.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_map(map, path)
    }

    /// The same over bytes in memory (fuzzing, tests); `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, RawError> {
        let io = |source| RawError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut m = memmap2::MmapMut::map_anon(bytes.len().max(1)).map_err(io)?;
        m[..bytes.len()].copy_from_slice(bytes);
        let map = m.make_read_only().map_err(io)?;
        let mut f = Self::from_map(map, path)?;
        f.data.end = f.data.end.min(bytes.len());
        Ok(f)
    }

    fn from_map(map: memmap2::Mmap, path: &Path) -> Result<Self, RawError> {
        let bad = |why: &str| RawError::NotPerfData {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        // No MADV_SEQUENTIAL: on Linux 6.18/ext4 it made the fault path read ahead in
        // 4 KiB folios, so a file not yet cached was read 2.6x slower (1.1 s against
        // 0.45 s for 1 GiB) and left in the page cache as small folios, each page then
        // mapped on its own (0.13 s of kernel time per GiB against 0.006 s for 2 MiB
        // folios; docs/performance.md, "finalize, round 10").
        let len = map.len() as u64;
        if len < HEADER_SIZE as u64 {
            return Err(bad("shorter than a perf.data header"));
        }
        let mut header = map[..HEADER_SIZE].to_vec();
        if &header[..8] != b"PERFILE2" {
            return Err(bad("bad magic; only little-endian PERFILE2 files are read"));
        }
        if u64_at(&header, 8) != HEADER_SIZE as u64 {
            return Err(bad("unexpected header size"));
        }
        let attr_size = u64_at(&header, 16);
        if !(ATTR_SIZE_MIN..=ATTR_SIZE_MAX).contains(&attr_size) {
            return Err(bad("implausible perf_event_attr size"));
        }
        let attrs_off = u64_at(&header, 24);
        let attrs_size = u64_at(&header, 32);
        if attrs_off.checked_add(attrs_size).is_none_or(|e| e > len) || attrs_size == 0 {
            return Err(bad("attribute section outside the file"));
        }
        let data_off = u64_at(&header, 40);
        let data_size = u64_at(&header, 48);
        if data_off > len {
            return Err(bad("data section outside the file"));
        }
        let mut declared_end = data_off.saturating_add(data_size);
        // A writer killed before it first fixed up its header (`perf record` writes the
        // data size only at exit; perf's own reader then warns and reads to the end of
        // the file): the data runs to the last complete record in the file.
        let never_finished = data_size == 0 && header[72..104].iter().all(|&b| b == 0);
        if never_finished && len > data_off {
            declared_end = len;
        }
        let mut end = declared_end;
        let mut patches = Vec::new();
        if declared_end > len || never_finished {
            // Cut short: walk the records to the last complete one.
            end = last_complete_record(&map, data_off, len);
            // Feature sections live after the data: gone when the file is cut.
            header[72..104].fill(0);
        } else if let Some(table) = check_layout(&map, &mut header, declared_end, attr_size) {
            patches.push(table);
        }
        if !event_types_fit(&map, &header, attr_size) {
            // Fall back to the attribute section (no ids: one event, or ids from
            // EVENT_DESC).
            header[56..72].fill(0);
        }
        header[48..56].copy_from_slice(&(end - data_off).to_le_bytes());
        patches.insert(0, (0, header));
        Ok(TolerantPerfFile {
            map: std::sync::Arc::new(map),
            patches,
            pos: 0,
            released: 0,
            data: data_off as usize..end as usize,
            skipped_bytes: declared_end - end,
        })
    }

    /// The same file read again from its start, sharing this one's mapping and
    /// checks: finalize reads the header, then the data (each unmap of a mapping costs
    /// a TLB shootdown on every other core running a thread of finalize).
    pub fn reopen(&self) -> Self {
        TolerantPerfFile {
            map: self.map.clone(),
            patches: self.patches.clone(),
            pos: 0,
            released: 0,
            data: self.data.clone(),
            skipped_bytes: self.skipped_bytes,
        }
    }

    /// Bytes in the data section.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// Hands `read` the data section and a `reached(offset)` callback (no record
    /// before `offset` of the data section will be touched again). The reader maps the
    /// pages as it touches them (the kernel's fault-around maps 16 at a time) and the
    /// pages more than [`RELEASE_CHUNK`] behind it are released (`MADV_DONTNEED`), so
    /// memory stays bounded whatever the file's size. A helper thread that mapped
    /// ahead and released behind cost more CPU than it saved wall time once the
    /// symbolizers are made while reading: a third thread on two cores (20% of the deep
    /// recording's CPU; docs/performance.md, "finalize, round 7").
    pub fn read_data<T>(&self, read: impl FnOnce(&[u8], &(dyn Fn(usize) + Sync)) -> T) -> T {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let data = self.data.clone();
        // Atomic: the records' walker releases from its own thread
        // (`records::for_each_sorted`).
        // Released in whole 2 MiB blocks: a huge page-cache folio is mapped by one
        // page-table entry, and releasing part of one splits it.
        let released = AtomicUsize::new(data.start & !(RELEASE_ALIGN - 1));
        let release = |offset: usize| {
            let behind = (data.start + offset.min(data.len())) & !(RELEASE_ALIGN - 1);
            let from = released.load(Ordering::Relaxed);
            if behind >= from + RELEASE_CHUNK
                && released
                    .compare_exchange(from, behind, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                // SAFETY: a read-only file mapping: released pages read back the same
                // file contents if touched again.
                let _ = unsafe {
                    self.map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        from,
                        behind - from,
                    )
                };
            }
        };
        read(&self.map[data.clone()], &release)
    }
}

/// Checks the feature table at `table_off` (just after the data section) and keeps
/// only `EVENT_DESC`, when its section lies in the file and parses within its bounds:
/// clears the other feature bits in `header` and returns the rewritten table (one
/// entry or none) to lay over the file's. A table outside the file clears every bit.
fn check_layout(
    map: &[u8],
    header: &mut [u8],
    table_off: u64,
    attr_size: u64,
) -> Option<(usize, Vec<u8>)> {
    let bits: Vec<usize> = (0..256)
        .filter(|b| header[72 + b / 8] & (1 << (b % 8)) != 0)
        .collect();
    header[72..104].fill(0);
    let len = map.len() as u64;
    let table_end = table_off.checked_add(16 * bits.len() as u64)?;
    if table_end > len {
        return None;
    }
    let k = bits.iter().position(|&b| b == FEAT_EVENT_DESC)?;
    let entry = table_off as usize + 16 * k;
    let (off, size) = (u64_at(map, entry), u64_at(map, entry + 8));
    let fits = off.checked_add(size).is_some_and(|e| e <= len) && size <= EVENT_DESC_MAX;
    if !fits || !event_desc_fits(&map[off as usize..(off + size) as usize], attr_size) {
        return None;
    }
    header[72 + FEAT_EVENT_DESC / 8] |= 1 << (FEAT_EVENT_DESC % 8);
    Some((table_off as usize, map[entry..entry + 16].to_vec()))
}

/// True when an `EVENT_DESC` section's counts, attrs, strings and id arrays all lie
/// within it (linux-perf-data reserves what the counts say before reading).
fn event_desc_fits(s: &[u8], _file_attr_size: u64) -> bool {
    let walk = || -> Option<()> {
        let nr = u32_at(s, 0)? as usize;
        let attr_size = u32_at(s, 4)? as usize;
        if !(ATTR_SIZE_MIN as usize..=ATTR_SIZE_MAX as usize).contains(&attr_size) {
            return None;
        }
        let mut at = 8usize;
        for _ in 0..nr {
            // The attr's own size must be one read as such, within the section's.
            let own = u32_at(s, at + 4)?;
            if !attr_fits_slot(own.into(), attr_size as u64) {
                return None;
            }
            at = at.checked_add(attr_size)?;
            let nr_ids = u32_at(s, at)? as usize;
            let slen = u32_at(s, at + 4)? as usize;
            at = at.checked_add(8)?.checked_add(slen)?;
            at = at.checked_add(nr_ids.checked_mul(8)?)?;
            if at > s.len() {
                return None;
            }
        }
        Some(())
    };
    walk().is_some()
}

/// True when the header's event-types section (old perf files) and the id arrays
/// its entries point to lie in the file (or there is none).
fn event_types_fit(map: &[u8], header: &[u8], attr_size: u64) -> bool {
    let (off, size) = (u64_at(header, 56), u64_at(header, 64));
    if size == 0 {
        return true;
    }
    let len = map.len() as u64;
    if off.checked_add(size).is_none_or(|e| e > len) {
        return false;
    }
    let entry = attr_size + 16;
    (0..size / entry).all(|i| {
        let attr = (off + i * entry) as usize;
        let own = u32_at(map, attr + 4).unwrap_or(0);
        let ids = attr + attr_size as usize;
        let (o, n) = (u64_at(map, ids), u64_at(map, ids + 8));
        attr_fits_slot(own.into(), attr_size) && o.checked_add(n).is_some_and(|e| e <= len)
    })
}

/// Offset just past the last record that lies entirely before `len`.
fn last_complete_record(map: &[u8], start: u64, len: u64) -> u64 {
    let mut off = start;
    while off + 8 <= len {
        let o = off as usize;
        let size = u16::from_le_bytes([map[o + 6], map[o + 7]]) as u64;
        if size < 8 || off + size > len {
            break;
        }
        off += size;
    }
    off
}

impl Read for TolerantPerfFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = self.map.len();
        let pos = (self.pos as usize).min(len);
        let n = buf.len().min(len - pos);
        buf[..n].copy_from_slice(&self.map[pos..pos + n]);
        // Patched bytes (header, feature table) replace the file's.
        for (at, bytes) in &self.patches {
            let (a, b) = (pos.max(*at), (pos + n).min(at + bytes.len()));
            if a < b {
                buf[a - pos..b - pos].copy_from_slice(&bytes[a - at..b - at]);
            }
        }
        self.pos += n as u64;
        // Drop what is behind us from our resident set (the page cache keeps it).
        let behind = (self.pos as usize).saturating_sub(RELEASE_CHUNK) & !(RELEASE_CHUNK - 1);
        if behind > self.released {
            // SAFETY: the range lies inside our read-only file mapping; the data is
            // read again from the file if it is touched later (e.g. after a seek back).
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.released,
                    behind - self.released,
                )
            };
            self.released = behind;
        }
        Ok(n)
    }
}

impl Seek for TolerantPerfFile {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let len = self.map.len() as i128;
        let new = match to {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => len + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if new < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before start",
            ));
        }
        self.pos = new as u64;
        if (self.pos as usize) < self.released {
            self.released = 0; // seeking back: pages will be read again; start over
        }
        Ok(self.pos)
    }
}

/// Bytes of raw data under `DIR/raw` (perf.data and sidecars), for the size line
/// `collect` prints at the end. Symlinks are not followed; depth is bounded.
pub fn raw_bytes(dir: &Path) -> u64 {
    fn walk(p: &Path, depth: u32) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else {
            return 0;
        };
        rd.filter_map(Result::ok)
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() && depth < 4 => walk(&e.path(), depth + 1),
                Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => 0,
            })
            .sum()
    }
    walk(&dir.join("raw"), 0)
}

/// `12.3 MB`: a byte count for people.
pub fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.0} kB", b as f64 / 1e3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_dir_names_round_trip() {
        assert_eq!(raw_dir_name("n1", None, 42), "n1.-.42");
        assert_eq!(parse_raw_dir_name("n1.-.42"), Some(("n1".into(), None, 42)));
        assert_eq!(
            parse_raw_dir_name(&raw_dir_name("a.b", Some(7), 9)),
            Some(("a_b".into(), Some(7), 9))
        );
    }

    /// fuzz/corpus/perf_data/attr-size-between-versions (found by CI's cargo-fuzz):
    /// an old-style event-types entry whose attr says it is 70 bytes long. The
    /// reader then took the id section from 6 bytes early and reserved 0x68 << 56
    /// bytes for it (an abort).
    #[test]
    fn an_attr_size_between_versions_is_not_trusted() {
        let bytes = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/corpus/perf_data/attr-size-between-versions"
        ));
        crate::fuzz_targets::perf_data(bytes);
        assert!(attr_read_exactly(64) && attr_read_exactly(136) && attr_read_exactly(200));
        assert!(!attr_read_exactly(70) && !attr_read_exactly(127) && !attr_read_exactly(8));
    }

    #[test]
    fn garbage_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("perf.data");
        std::fs::write(&p, vec![0x41u8; 4096]).unwrap();
        let e = TolerantPerfFile::open(&p).err().unwrap();
        assert!(e.to_string().contains("not a perf.data"), "{e}");
    }
}
