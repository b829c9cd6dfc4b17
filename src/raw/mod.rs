//! Reading what collect wrote: the raw directories of a results directory, and their
//! perf.data files, tolerant of truncation.
//!
//! A perf.data cut short (target crash, hwprof killed, disk full, a partial copy) is
//! read up to its last complete record: the header is patched in memory so that
//! linux-perf-data sees a data section that ends there, and the number of bytes
//! skipped is reported. Nothing in a results directory is trusted: sizes are checked
//! against the file.

pub mod records;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

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
        let Some((host, rank, pid)) = crate::mpi::parse_raw_dir_name(&name) else {
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
pub struct TolerantPerfFile {
    map: memmap2::Mmap,
    header: Vec<u8>,
    pos: u64,
    released: usize,
    data: std::ops::Range<usize>,
    populated: std::cell::Cell<usize>,
    /// Bytes of the data section not read because the file was cut short.
    pub skipped_bytes: u64,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// Release mapped pages in chunks of this size.
const RELEASE_CHUNK: usize = 64 << 20;

impl TolerantPerfFile {
    /// Open and validate `path`.
    pub fn open(path: &Path) -> Result<Self, RawError> {
        let bad = |why: &str| RawError::NotPerfData {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        let io = |source| RawError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: a results directory's file, not modified while finalize reads it;
        // every access below is bounds-checked against the mapping's length.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let _ = map.advise(memmap2::Advice::Sequential);
        let len = map.len() as u64;
        if len < 104 {
            return Err(bad("shorter than a perf.data header"));
        }
        let mut header = map[..104].to_vec();
        if &header[..8] != b"PERFILE2" {
            return Err(bad("bad magic; only little-endian PERFILE2 files are read"));
        }
        if u64_at(&header, 8) != 104 {
            return Err(bad("unexpected header size"));
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
        if declared_end > len || never_finished {
            // Cut short: walk the records to the last complete one.
            end = last_complete_record(&map, data_off, len);
            // Feature sections live after the data: gone when the file is cut.
            header[72..104].fill(0);
        }
        header[48..56].copy_from_slice(&(end - data_off).to_le_bytes());
        Ok(TolerantPerfFile {
            map,
            header,
            pos: 0,
            released: 0,
            data: data_off as usize..end as usize,
            populated: std::cell::Cell::new(data_off as usize / 4096 * 4096),
            skipped_bytes: declared_end - end,
        })
    }

    /// The readable part of the data section (records with their headers).
    pub fn data_section(&self) -> &[u8] {
        &self.map[self.data.clone()]
    }

    /// Reading has reached `offset` of the data section: map the next chunk in one call
    /// (cheaper than a page fault per 64 KiB) and release what is behind.
    pub fn advance_data(&self, offset: usize) {
        let ahead = self.data.start + offset;
        let populated = self.populated.get();
        if ahead + RELEASE_CHUNK / 2 > populated && populated < self.data.end {
            let len = RELEASE_CHUNK.min(self.data.end - populated);
            let _ = self
                .map
                .advise_range(memmap2::Advice::PopulateRead, populated, len);
            self.populated.set(populated + len);
        }
        self.release_data_before(offset);
    }

    /// Drop the mapped pages of the data section before `offset` (relative to the
    /// data section) from our resident set; the page cache keeps them.
    pub fn release_data_before(&self, offset: usize) {
        let page = 4096;
        let end = (self.data.start + offset.min(self.data.len())) / page * page;
        let start = self.data.start / page * page;
        if end > start + RELEASE_CHUNK {
            // SAFETY: a read-only file mapping: released pages read back the same
            // file contents if touched again.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
    }
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
        // The first bytes come from the patched header.
        let h = self.header.len();
        if pos < h {
            let m = n.min(h - pos);
            buf[..m].copy_from_slice(&self.header[pos..pos + m]);
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
    fn garbage_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("perf.data");
        std::fs::write(&p, vec![0x41u8; 4096]).unwrap();
        let e = TolerantPerfFile::open(&p).err().unwrap();
        assert!(e.to_string().contains("not a perf.data"), "{e}");
    }
}
