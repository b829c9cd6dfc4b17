//! Reading what collect wrote: the raw directories of a results directory, and their
//! perf.data files, tolerant of truncation.
//!
//! A perf.data cut short (target crash, hwprof killed, disk full, a partial copy) is
//! read up to its last complete record: the header is patched in memory so that
//! linux-perf-data sees a data section that ends there, and the number of bytes
//! skipped is reported. Nothing in a results directory is trusted: sizes are checked
//! against the file.

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
pub struct TolerantPerfFile {
    map: memmap2::Mmap,
    header: Vec<u8>,
    pos: u64,
    /// Bytes of the data section not read because the file was cut short.
    pub skipped_bytes: u64,
    /// Records in the readable part of the data section.
    pub complete_records: u64,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

impl TolerantPerfFile {
    /// Open and validate `path`.
    pub fn open(path: &Path) -> Result<Self, RawError> {
        let bad = |why: &str| RawError::NotPerfData {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        let file = std::fs::File::open(path).map_err(|source| RawError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the file is ours (a results directory) and not modified while read;
        // every access below is bounds-checked against the mapping's length.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| RawError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if map.len() < 104 {
            return Err(bad("shorter than a perf.data header"));
        }
        if &map[..8] != b"PERFILE2" {
            return Err(bad("bad magic; only little-endian PERFILE2 files are read"));
        }
        let header_size = u64_at(&map, 8);
        if header_size != 104 {
            return Err(bad("unexpected header size"));
        }
        let len = map.len() as u64;
        let attrs_off = u64_at(&map, 24);
        let attrs_size = u64_at(&map, 32);
        if attrs_off.checked_add(attrs_size).is_none_or(|e| e > len) || attrs_size == 0 {
            return Err(bad("attribute section outside the file"));
        }
        let data_off = u64_at(&map, 40);
        let data_size = u64_at(&map, 48);
        if data_off > len {
            return Err(bad("data section outside the file"));
        }
        let declared_end = data_off.saturating_add(data_size);
        let available_end = declared_end.min(len);
        // Walk the records to the last complete one.
        let mut off = data_off;
        let mut records = 0u64;
        while off + 8 <= available_end {
            let size = u16::from_le_bytes([map[off as usize + 6], map[off as usize + 7]]) as u64;
            if size < 8 || off + size > available_end {
                break;
            }
            off += size;
            records += 1;
        }
        let mut header = map[..104].to_vec();
        let truncated = off < declared_end;
        header[48..56].copy_from_slice(&(off - data_off).to_le_bytes());
        let features_end_ok = !truncated && len > declared_end;
        if !features_end_ok {
            // Feature sections live after the data: gone or unreliable when cut.
            header[72..104].fill(0);
        }
        Ok(TolerantPerfFile {
            map,
            header,
            pos: 0,
            skipped_bytes: declared_end - off,
            complete_records: records,
        })
    }
}

impl Read for TolerantPerfFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = self.map.len() as u64;
        if self.pos >= len {
            return Ok(0);
        }
        let pos = self.pos as usize;
        let n = buf.len().min(len as usize - pos);
        buf[..n].copy_from_slice(&self.map[pos..pos + n]);
        // The first bytes come from the patched header.
        let h = self.header.len();
        if pos < h {
            let m = n.min(h - pos);
            buf[..m].copy_from_slice(&self.header[pos..pos + m]);
        }
        self.pos += n as u64;
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
        Ok(self.pos)
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
