//! Results directories written through directory file descriptors.
//!
//! hwprof often runs as root, in directories other users may reach. Everything it
//! writes into a results directory is created relative to an fd of that directory,
//! opened with `O_DIRECTORY|O_NOFOLLOW`, never by path:
//! - files with `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, so a planted name (a symlink, a
//!   hard link, a FIFO) makes the creation fail instead of writing through it;
//! - their mode is set with `fchmod` on the new fd (0600; directories 0700), never by
//!   path, so the umask cannot widen it and no chmod follows a link;
//! - files replaced at the end (manifest.json, profile.db) are written to a temporary
//!   name created exclusively as above, `fsync`ed, then `renameat` over the old name:
//!   rename replaces a planted link itself, not its target.
//!
//! An existing directory is used only when it is owned by the caller and not group or
//! other writable (nobody else can have planted anything in it), and, unless the caller
//! allows it (the ranks of one MPI job), only when empty.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, fstat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Why a results directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    /// Not a directory, or a symlink.
    #[error(
        "{0} is a symbolic link or not a directory; give the real path of a directory (hwprof never writes results through a link)"
    )]
    NotADirectory(PathBuf),
    /// Somebody else's.
    #[error(
        "{path} belongs to uid {owner}, not to you (uid {me}); choose another -r, or remove it so that hwprof creates it"
    )]
    NotOwned {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The caller.
        me: u32,
    },
    /// Others may write into it.
    #[error(
        "{path} is writable by group or others (mode {mode:04o}): they could plant links in it; run `chmod go-w {path}` or choose another -r"
    )]
    Writable {
        /// The directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// Not empty.
    #[error(
        "results directory {0} exists and is not empty; hwprof never overwrites results: choose another -r or remove it"
    )]
    NotEmpty(PathBuf),
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// A directory opened with `O_DIRECTORY|O_NOFOLLOW`; everything in it is created by fd.
#[derive(Debug)]
pub struct PrivateDir {
    fd: OwnedFd,
    path: PathBuf,
    /// Created by this call (not an existing directory adopted).
    created: bool,
}

fn io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

const DIR_FLAGS: OFlag = OFlag::O_DIRECTORY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_RDONLY);

/// Split a path into its parent (`.` when none) and last component.
fn split(path: &Path) -> std::io::Result<(&Path, &OsStr)> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: no file name", path.display()),
        )
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((parent, name))
}

impl PrivateDir {
    /// Open an existing directory (its last component is not followed if a link).
    pub fn open(path: &Path) -> std::io::Result<PrivateDir> {
        let fd = openat(nix::fcntl::AT_FDCWD, path, DIR_FLAGS, Mode::empty()).map_err(io)?;
        Ok(PrivateDir {
            fd,
            path: path.to_path_buf(),
            created: false,
        })
    }

    /// The results directory of `collect -r`: created 0700 (parents as needed), or an
    /// existing one checked (owned by the caller, not group/other writable, empty unless
    /// `allow_nonempty`) and made 0700.
    pub fn create_or_adopt(
        path: &Path,
        allow_nonempty: bool,
    ) -> Result<PrivateDir, PrivateDirError> {
        let err = |source| PrivateDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (parent, name) = split(path).map_err(err)?;
        if parent != Path::new(".") && !parent.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(err)?;
        }
        let parent_fd = openat(
            nix::fcntl::AT_FDCWD,
            parent,
            OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| err(io(e)))?;
        let created = match mkdirat(&parent_fd, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(err(io(e))),
        };
        let fd = match openat(&parent_fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOTDIR | Errno::ELOOP) => {
                return Err(PrivateDirError::NotADirectory(path.to_path_buf()));
            }
            Err(e) => return Err(err(io(e))),
        };
        let dir = PrivateDir {
            fd,
            path: path.to_path_buf(),
            created,
        };
        let st = fstat(&dir.fd).map_err(|e| err(io(e)))?;
        let me = nix::unistd::geteuid().as_raw();
        if st.st_uid != me {
            return Err(PrivateDirError::NotOwned {
                path: path.to_path_buf(),
                owner: st.st_uid,
                me,
            });
        }
        if !created {
            let mode = st.st_mode & 0o7777;
            if mode & 0o022 != 0 {
                return Err(PrivateDirError::Writable {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            if !allow_nonempty && !dir.is_empty().map_err(err)? {
                return Err(PrivateDirError::NotEmpty(path.to_path_buf()));
            }
        }
        fchmod(&dir.fd, Mode::from_bits_truncate(0o700)).map_err(|e| err(io(e)))?;
        Ok(dir)
    }

    /// Whether this call created the directory (rather than adopting an existing one).
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// Whether the directory has no entries (read through its fd).
    pub fn is_empty(&self) -> std::io::Result<bool> {
        Ok(std::fs::read_dir(self.fd_path())?.next().is_none())
    }

    /// The path it was opened at (for messages and for readers).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `/proc/self/fd/N`: the directory this fd names, whatever happens to its path.
    pub fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// A subdirectory, created 0700 (`exist_ok`: or an existing one that is a real
    /// directory owned by the caller).
    pub fn subdir(&self, name: &str, exist_ok: bool) -> std::io::Result<PrivateDir> {
        let created = match mkdirat(&self.fd, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => true,
            Err(Errno::EEXIST) if exist_ok => false,
            Err(e) => return Err(io(e)),
        };
        let fd = openat(&self.fd, name, DIR_FLAGS, Mode::empty()).map_err(io)?;
        if !created {
            let st = fstat(&fd).map_err(io)?;
            if st.st_uid != nix::unistd::geteuid().as_raw() || st.st_mode & 0o022 != 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{}: not yours or writable by others",
                        self.path.join(name).display()
                    ),
                ));
            }
        } else {
            fchmod(&fd, Mode::from_bits_truncate(0o700)).map_err(io)?;
        }
        Ok(PrivateDir {
            fd,
            path: self.path.join(name),
            created,
        })
    }

    /// A new file, mode 0600, that must not exist (never written through a link).
    pub fn create_file(&self, name: &str) -> std::io::Result<File> {
        self.open_file(name, OFlag::O_EXCL)
    }

    /// A file opened for appending, created 0600 when absent; an existing one is used
    /// only when it is a regular file of the caller's (sidecars that a re-exec'd process
    /// appends to).
    pub fn append_file(&self, name: &str) -> std::io::Result<File> {
        let f = self.open_file(name, OFlag::O_APPEND)?;
        let st = fstat(f.as_fd()).map_err(io)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG
            || st.st_uid != nix::unistd::geteuid().as_raw()
            || st.st_nlink != 1
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{}: not a private regular file",
                    self.path.join(name).display()
                ),
            ));
        }
        Ok(f)
    }

    fn open_file(&self, name: &str, extra: OFlag) -> std::io::Result<File> {
        let flags = OFlag::O_CREAT
            | OFlag::O_WRONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NONBLOCK
            | extra;
        let fd = openat(&self.fd, name, flags, Mode::from_bits_truncate(0o600)).map_err(io)?;
        fchmod(&fd, Mode::from_bits_truncate(0o600)).map_err(io)?;
        let file = File::from(fd);
        // O_NONBLOCK only guarded the open (a FIFO planted at an appended name):
        // regular files ignore it, and the check above refuses anything else.
        Ok(file)
    }

    /// A scratch file for reading and writing, unlinked at once (a fresh temporary
    /// name created exclusively, 0600, then removed): nothing is left behind if the
    /// process dies, and its pages are the kernel's cache, not the process's memory.
    pub fn scratch_file(&self, name: &str) -> std::io::Result<File> {
        let name = Self::temp_name(name);
        let flags =
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            &self.fd,
            name.as_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(io)?;
        let file = File::from(fd);
        self.remove(&name)?;
        Ok(file)
    }

    /// A fresh temporary name for `name` in this directory (`.NAME.PID.N`).
    pub fn temp_name(name: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            ".{name}.{}.{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Replace `name` atomically: write a temporary file created exclusively, fsync it,
    /// rename it over `name`. A reader sees the old file or the new one, never half.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.replace(name, bytes, true)
    }

    /// [`PrivateDir::write_atomic`] without the `fsync`: readers and a killed writer
    /// still see the old file or the new one (the rename), only an operating-system
    /// crash may lose it. For collect's manifests, on the launch's critical path, where
    /// an `fsync` on a busy ext4 took 1-15 ms each, and whose perf.data is not synced
    /// either (docs/security.md "Crash consistency").
    pub fn write_atomic_unsynced(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.replace(name, bytes, false)
    }

    fn replace(&self, name: &str, bytes: &[u8], sync: bool) -> std::io::Result<()> {
        let tmp = Self::temp_name(name);
        let result = (|| {
            let mut f = self.create_file(&tmp)?;
            f.write_all(bytes)?;
            if sync {
                f.sync_all()?;
            }
            self.rename(&tmp, name)
        })();
        if result.is_err() {
            let _ = self.remove(&tmp);
        }
        result
    }

    /// Create `name` with `bytes` only if it does not exist (hard link from a temporary
    /// file: exactly one of several writers wins, nobody sees half a file). Ok(false)
    /// when it existed.
    pub fn write_if_absent(&self, name: &str, bytes: &[u8]) -> std::io::Result<bool> {
        let tmp = Self::temp_name(name);
        let result = (|| {
            let mut f = self.create_file(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            match nix::unistd::linkat(
                &self.fd,
                tmp.as_str(),
                &self.fd,
                name,
                nix::fcntl::AtFlags::empty(),
            ) {
                Ok(()) => Ok(true),
                Err(Errno::EEXIST) => Ok(false),
                Err(e) => Err(io(e)),
            }
        })();
        let _ = self.remove(&tmp);
        result
    }

    /// `renameat` within this directory.
    pub fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        renameat(&self.fd, from, &self.fd, to).map_err(io)
    }

    /// `unlinkat` of a file in this directory (a link itself, never its target).
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir).map_err(io)
    }

    /// `fstatat(AT_SYMLINK_NOFOLLOW)` of an entry: (device, inode) of the name itself.
    pub fn identity_of(&self, name: &str) -> std::io::Result<(u64, u64)> {
        let st = nix::sys::stat::fstatat(&self.fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(io)?;
        Ok((st.st_dev, st.st_ino))
    }

    /// The directory's fd.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// (device, inode) of an open file.
pub fn identity(f: &File) -> std::io::Result<(u64, u64)> {
    let st = fstat(f.as_fd()).map_err(io)?;
    Ok((st.st_dev, st.st_ino))
}

/// Open the directory holding `path` (by fd, its last component not followed) and the
/// name of `path` in it: for writers that are given a path.
pub fn parent_of(path: &Path) -> std::io::Result<(PrivateDir, String)> {
    let (parent, name) = split(path)?;
    let dir = PrivateDir::open(parent)?;
    let name = std::str::from_utf8(name.as_bytes())
        .map_err(|_| std::io::Error::other(format!("{}: not UTF-8", path.display())))?
        .to_string();
    Ok((dir, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_links_are_never_written_through() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let dir = PrivateDir::create_or_adopt(&t.path().join("r"), false).unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join("r/perf.data")).unwrap();
        assert!(dir.create_file("perf.data").is_err());
        assert!(dir.append_file("perf.data").is_err());
        // A rename replaces the link, not its target.
        dir.write_atomic("perf.data", b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(t.path().join("r/perf.data")).unwrap(), b"new");
    }

    #[test]
    fn existing_directories_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            PrivateDir::create_or_adopt(&open, false),
            Err(PrivateDirError::Writable { .. })
        ));
        let full = t.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("x"), b"").unwrap();
        assert!(matches!(
            PrivateDir::create_or_adopt(&full, false),
            Err(PrivateDirError::NotEmpty(_))
        ));
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&full, &link).unwrap();
        assert!(matches!(
            PrivateDir::create_or_adopt(&link, true),
            Err(PrivateDirError::NotADirectory(_))
        ));
        let empty = t.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).unwrap();
        PrivateDir::create_or_adopt(&empty, false).unwrap();
        let mode = std::fs::metadata(&empty).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
