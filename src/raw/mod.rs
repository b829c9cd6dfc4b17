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
/// Read through a buffered file, not a mapping, so finalize's memory does not grow with
/// the size of the data.
pub struct TolerantPerfFile {
    file: std::io::BufReader<std::fs::File>,
    header: Vec<u8>,
    pos: u64,
    /// Bytes of the data section not read because the file was cut short.
    pub skipped_bytes: u64,
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
        let io = |source| RawError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut file = std::io::BufReader::with_capacity(1 << 20, file);
        let mut header = vec![0u8; 104];
        if len < 104 {
            return Err(bad("shorter than a perf.data header"));
        }
        file.read_exact(&mut header).map_err(io)?;
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
        let declared_end = data_off.saturating_add(data_size);
        let mut end = declared_end;
        if declared_end > len {
            // Cut short: walk the records to the last complete one.
            end = last_complete_record(&mut file, data_off, len).map_err(io)?;
            // Feature sections live after the data: gone when the file is cut.
            header[72..104].fill(0);
        }
        header[48..56].copy_from_slice(&(end - data_off).to_le_bytes());
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        Ok(TolerantPerfFile {
            file,
            header,
            pos: 0,
            skipped_bytes: declared_end - end,
        })
    }
}

/// Offset just past the last record that lies entirely before `len`.
fn last_complete_record(
    f: &mut std::io::BufReader<std::fs::File>,
    start: u64,
    len: u64,
) -> std::io::Result<u64> {
    f.seek(SeekFrom::Start(start))?;
    let mut off = start;
    let mut hdr = [0u8; 8];
    while off + 8 <= len {
        f.read_exact(&mut hdr)?;
        let size = u16::from_le_bytes([hdr[6], hdr[7]]) as u64;
        if size < 8 || off + size > len {
            break;
        }
        f.seek_relative(size as i64 - 8)?;
        off += size;
    }
    Ok(off)
}

impl Read for TolerantPerfFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        // The first bytes come from the patched header.
        let h = self.header.len() as u64;
        if self.pos < h {
            let from = self.pos as usize;
            let m = n.min(h as usize - from);
            buf[..m].copy_from_slice(&self.header[from..from + m]);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for TolerantPerfFile {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.file.seek(to)?;
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
