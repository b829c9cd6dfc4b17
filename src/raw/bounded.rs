//! Reading a file of a results directory (or a binary of a search directory) as
//! untrusted input: only a regular file is opened, never a FIFO, a device or (for
//! results-directory files) a symlink, and never more than a limit per kind of file.
//!
//! A results directory may come from another machine or another user. A sidecar that is
//! a symlink to `/dev/zero` used to hang finalize until memory ran out, a FIFO blocked
//! `open` for ever, and a sparse file of a terabyte asked for a terabyte of memory.
//! Every reader of finalize, report and export goes through [`open_regular`] /
//! [`read_limited`], so the rules live in one place:
//!
//! - `open(O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)`: a planted symlink fails
//!   with ELOOP, a FIFO opens without waiting for a writer;
//! - `fstat` on the opened file: anything but a regular file is refused;
//! - the size is checked against the kind's limit before anything is allocated, the
//!   buffer is reserved fallibly (an allocation failure is an error, not an abort), and
//!   reading stops at the limit even if the file grows meanwhile.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What a file is, for its size limit. The limits are far above what a real run writes
/// (a day-long run at the default rates) and far below what breaks the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `manifest.json` (DIR's and each rank's).
    Manifest,
    /// `rss.csv`, `counters.csv`: timelines that grow with the run.
    Timeline,
    /// `peak.csv`, `hwm.csv`, `fill.json`: a line per process.
    Small,
    /// `modules.json`: every mapped file.
    Modules,
    /// `kallsyms` copy.
    Kallsyms,
    /// `perf-<pid>.map` copies.
    PerfMap,
    /// `python-codes.jsonl`: a line per code object.
    PythonCodes,
    /// `python-<pid>*.bin` capture files: a record per sample.
    PythonCaptures,
}

impl Kind {
    /// The largest file of this kind that is read.
    pub fn limit(self) -> u64 {
        const MIB: u64 = 1 << 20;
        match self {
            Kind::Manifest => 16 * MIB,
            Kind::Timeline => 1024 * MIB,
            Kind::Small => 64 * MIB,
            Kind::Modules => 256 * MIB,
            Kind::Kallsyms => 256 * MIB,
            Kind::PerfMap => 256 * MIB,
            Kind::PythonCodes => 1024 * MIB,
            Kind::PythonCaptures => 4096 * MIB,
        }
    }
}

/// The error for a file that is not a regular file.
fn not_regular(path: &Path, what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "{} is {what}, not a regular file; only regular files of a results directory are read",
            path.display()
        ),
    )
}

/// Opens `path` for reading if it is a regular file; a symlink as the last component
/// is refused unless `follow` (binaries in search dirs are often symlinks).
pub fn open_file(path: &Path, follow: bool) -> std::io::Result<std::fs::File> {
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) && !follow {
                not_regular(path, "a symbolic link")
            } else {
                e
            }
        })?;
    let t = f.metadata()?.file_type();
    if !t.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_dir() {
            "a directory"
        } else if t.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(not_regular(path, what));
    }
    Ok(f)
}

/// Opens a results-directory file: regular, not a symlink.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    open_file(path, false)
}

/// The whole of a results-directory file of kind `kind`, refused when larger than its
/// limit.
pub fn read_limited(path: &Path, kind: Kind) -> std::io::Result<Vec<u8>> {
    let f = open_regular(path)?;
    read_open_limited(f, path, kind.limit())
}

/// [`read_limited`] as text (invalid UTF-8 replaced).
pub fn read_limited_string(path: &Path, kind: Kind) -> std::io::Result<String> {
    let b = read_limited(path, kind)?;
    Ok(match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Reads an opened regular file, at most `limit` bytes.
pub fn read_open_limited(f: std::fs::File, path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let len = f.metadata()?.len();
    if len > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is {len} bytes, more than the {limit} bytes a file of its kind may have; the results directory is damaged or not hwprof's",
                path.display()
            ),
        ));
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(len as usize).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            format!("{}: cannot allocate {len} bytes to read it", path.display()),
        )
    })?;
    // Never past the limit, even if the file grows while it is read.
    f.take(limit).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_fifos_symlinks_and_big_files() {
        let d = tempfile::tempdir().unwrap();
        let (link, fifo, big) = (
            d.path().join("zero"),
            d.path().join("fifo"),
            d.path().join("big"),
        );
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::File::create(&big)
            .unwrap()
            .set_len(Kind::Manifest.limit() + 1)
            .unwrap();
        // Each refused with a reason that names what it is.
        let refused = [
            (link.as_path(), "symbolic link"),
            (Path::new("/dev/zero"), "a device"),
            (fifo.as_path(), "a FIFO"),
            (big.as_path(), "more than"),
        ];
        for (path, why) in refused {
            let e = read_limited(path, Kind::Manifest).unwrap_err();
            assert!(e.to_string().contains(why), "{}: {e}", path.display());
        }
        let ok = d.path().join("ok");
        std::fs::write(&ok, b"{}").unwrap();
        assert_eq!(read_limited(&ok, Kind::Manifest).unwrap(), b"{}");
    }
}
