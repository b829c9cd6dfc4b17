//! The sidecar files of a raw directory, beside perf.data: written by `collect`, read
//! by `finalize` (and the fuzz targets). One module per format, its doc comment the
//! format; neither side reaches into the other for them. (`modules.json` stays in
//! `collect::modules`: finalize does not read it, only the fuzz targets do; the manifest
//! is `crate::manifest`.) The timeline CSVs (rss.csv, counters.csv) share one creator
//! ([`create_timeline_csv`]), one bounded reader ([`read_timeline_csv`]: a regular file
//! only, a cut last line dropped) and one error type ([`SidecarError`]).

/// The recording kernel's vdso (`vdso.so`), an ELF image copied byte for byte from the
/// collector's own mapping (every 64-bit process on one kernel maps the same one): the
/// kernel's code in user space (`clock_gettime`, `gettimeofday`), which no file on disk
/// holds. Finalize names the vdso's functions and unwinds through them with it.
pub const VDSO_FILE: &str = "vdso.so";

pub mod collector_sampled;
pub mod counters;
pub mod rss;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Errors of writing or reading a sidecar file (the samplers' and finalize's).
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// The file could not be created or written.
    #[error("{path}: {source}; check that the results directory is writable and the disk not full")]
    Write {
        /// The file (`(thread)` when the sampler thread could not start).
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file could not be read (missing, too long, or not a regular file).
    #[error("{path} could not be read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line in the middle of the file is damaged.
    #[error("{path} line {line}: '{text}' is not {columns}; the file is damaged")]
    Bad {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The line (its first 80 characters).
        text: String,
        /// The header the line should follow.
        columns: &'static str,
    },
}

impl SidecarError {
    /// `map_err` for a write to `path`.
    pub fn write(path: &Path) -> impl Fn(std::io::Error) -> SidecarError + Copy + '_ {
        move |source| SidecarError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Create a timeline CSV (mode 0600, refusing to overwrite) and write its header line
/// (`columns`, without the newline), flushed so that a reader sees it at once.
pub fn create_timeline_csv(
    path: &Path,
    columns: &str,
) -> Result<BufWriter<std::fs::File>, SidecarError> {
    let io = SidecarError::write(path);
    let mut out = BufWriter::new(crate::util::create_private_file(path).map_err(io)?);
    writeln!(out, "{columns}").map_err(io)?;
    out.flush().map_err(io)?;
    Ok(out)
}

/// Read a timeline CSV written by [`create_timeline_csv`] (rss.csv, counters.csv),
/// bounded and refusing what is not a regular file ([`crate::raw::bounded`]): a
/// `columns` header and blank lines are skipped, a cut last line (no newline, or not
/// parsable: a crash mid-write) is dropped; a line elsewhere that `parse` refuses is
/// [`SidecarError::Bad`].
pub fn read_timeline_csv<T>(
    path: &Path,
    columns: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, SidecarError> {
    let bytes = crate::raw::bounded::read_limited(path, crate::raw::bounded::Kind::Timeline)
        .map_err(|source| SidecarError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&bytes);
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut rows = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        if (i == 0 && l.starts_with("time_ns")) || l.trim().is_empty() {
            continue;
        }
        let last = i + 1 == lines.len();
        match parse(l) {
            Some(r) if !last || complete => rows.push(r),
            _ if last => {}
            _ => {
                return Err(SidecarError::Bad {
                    path: path.to_path_buf(),
                    line: i + 1,
                    text: l.chars().take(80).collect(),
                    columns,
                });
            }
        }
    }
    Ok(rows)
}
