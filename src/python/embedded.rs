//! The agent library embedded in hwprof (built by `build.rs` from `agent/`), and the
//! private copy of it each Python launch preloads.
//!
//! The copy goes into a new directory (`mkdtemp`, mode 0700, owned by us) under
//! `$XDG_RUNTIME_DIR`, `/dev/shm` or the temp dir, written with `O_CREAT|O_EXCL|O_NOFOLLOW` and mode
//! 0500, and is removed with its directory when the collection ends. `HWPROF_AGENT_LIB`
//! names another library to preload instead (nothing is written then).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The agent library, as built with this hwprof.
pub static AGENT_SO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libhwprof_agent.so"));

/// File name of the written copy (also what finalize recognises in stacks).
pub const AGENT_FILE_NAME: &str = "libhwprof_agent.so";

/// The library a launch preloads: the user's (`HWPROF_AGENT_LIB`) or our written copy.
#[derive(Debug)]
pub struct AgentFile {
    path: PathBuf,
    /// The private directory we created (removed on drop); None for `HWPROF_AGENT_LIB`.
    owned_dir: Option<PathBuf>,
}

impl AgentFile {
    /// `HWPROF_AGENT_LIB` when set (an error when it names no file), else the embedded
    /// library written to a new private directory.
    pub fn prepare() -> std::io::Result<AgentFile> {
        if let Some(p) = std::env::var_os("HWPROF_AGENT_LIB") {
            let path = PathBuf::from(p);
            if !preloadable(&path) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "HWPROF_AGENT_LIB={} contains a space or ':', which LD_PRELOAD cannot carry; copy the library to a path without them",
                        path.display()
                    ),
                ));
            }
            if !path.is_file() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("HWPROF_AGENT_LIB={} is not a file", path.display()),
                ));
            }
            return Ok(AgentFile {
                path,
                owned_dir: None,
            });
        }
        let dir = private_dir()?;
        let path = dir.join(AGENT_FILE_NAME);
        let written = write_new(&path, AGENT_SO);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
        Ok(AgentFile {
            path,
            owned_dir: Some(dir),
        })
    }

    /// Path to preload.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AgentFile {
    fn drop(&mut self) {
        if let Some(dir) = self.owned_dir.take() {
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Writes `bytes` to a file that must not exist yet (never through a symlink), mode 0500.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o500)
        .open(path)?;
    f.write_all(bytes)?;
    f.flush()
}

/// A new 0700 directory of ours: `$XDG_RUNTIME_DIR` (per-user, when it is a
/// directory), else `/dev/shm`, else the temp dir. A memory file system first: on a
/// disk file system (ext4 /tmp here) removing the directory at the end of a run took
/// 0.2-11 ms of journal work, on the exit path of every launch. A base mounted
/// `noexec` is skipped: the dynamic loader could not map the library from it.
fn private_dir() -> std::io::Result<PathBuf> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute());
    let candidates = runtime.into_iter().chain([
        PathBuf::from("/dev/shm"),
        std::env::temp_dir(),
        PathBuf::from("/tmp"),
    ]);
    let mut last = std::io::Error::other("no directory for the agent library");
    for base in candidates {
        // The path goes into LD_PRELOAD, which the loader splits at spaces and colons.
        if !base.is_dir() || !preloadable(&base) || mounted_noexec(&base) {
            continue;
        }
        match nix::unistd::mkdtemp(&base.join("hwprof-agent-XXXXXX")) {
            Ok(d) => return Ok(d),
            Err(e) => last = std::io::Error::from(e),
        }
    }
    Err(last)
}

/// Whether `dir` is on a file system mounted `noexec`.
fn mounted_noexec(dir: &Path) -> bool {
    nix::sys::statvfs::statvfs(dir)
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_NOEXEC))
}

/// Whether `path` can be one entry of `LD_PRELOAD` (the loader splits it at ' ' and ':').
fn preloadable(path: &Path) -> bool {
    !path
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .any(|&b| b == b' ' || b == b':')
}

/// What `doctor` says about the embedded agent: Ok(description) or Err(problem).
pub fn check() -> Result<String, String> {
    use object::Object;
    let obj = object::File::parse(AGENT_SO)
        .map_err(|e| format!("the embedded agent is not a valid ELF file: {e}"))?;
    if obj.kind() != object::ObjectKind::Dynamic {
        return Err(format!(
            "the embedded agent is not a shared object ({:?})",
            obj.kind()
        ));
    }
    let want = if cfg!(target_arch = "x86_64") {
        Some(object::Architecture::X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(object::Architecture::Aarch64)
    } else {
        None
    };
    if want.is_some_and(|w| w != obj.architecture()) {
        return Err(format!(
            "the embedded agent is built for {:?}, not this machine",
            obj.architecture()
        ));
    }
    let file = AgentFile::prepare().map_err(|e| {
        format!("cannot write the agent library for a Python launch: {e} (set TMPDIR or XDG_RUNTIME_DIR to a writable directory)")
    })?;
    let where_ = match (
        &file.owned_dir,
        file.path().parent().and_then(|p| p.parent()),
    ) {
        (None, _) => format!(
            "overridden: preloads HWPROF_AGENT_LIB={}",
            file.path().display()
        ),
        (Some(_), Some(base)) => format!("written under {} for each Python launch", base.display()),
        (Some(_), None) => "written for each Python launch".into(),
    };
    dlopen_in_child(file.path())?;
    Ok(format!(
        "embedded, {} KiB {:?} shared object, loads (dlopen in a child process); {where_}",
        AGENT_SO.len() / 1024,
        obj.architecture(),
    ))
}

/// Set (to a library path) in the environment of the child that [`dlopen_in_child`]
/// runs: that hwprof process only loads the library and exits.
pub const DLOPEN_CHECK_VAR: &str = "HWPROF_DOCTOR_DLOPEN";

/// Loads `lib` in a child hwprof process, so that a library that crashes or hangs
/// in its constructor cannot harm the caller; Err says what went wrong.
pub fn dlopen_in_child(lib: &Path) -> Result<(), String> {
    use std::os::unix::process::ExitStatusExt;
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find hwprof's own executable to load the agent in: {e}"))?;
    let mut child = std::process::Command::new(exe)
        // hwprof's main() answers the variable before it reads any argument. In a test
        // harness (a library unit test reaching here) the current executable is the
        // harness itself: this filter makes it run no test rather than every test again,
        // each spawning the next (a chain of harnesses that outlived the suite).
        .args(["--exact", "hwprof-dlopen-check-runs-no-test"])
        .env(DLOPEN_CHECK_VAR, lib)
        .env_remove("LD_PRELOAD")
        .env_remove("HWPROF_AGENT_SOCK")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start a process to load the agent in: {e}"))?;
    // A constructor that hangs must not hang doctor: 10 s, then the child is killed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "loading {} did not finish within 10 s",
                    lib.display()
                ));
            }
        }
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = (&mut e).take(4096).read_to_string(&mut err);
    }
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (_, Some(sig)) => Err(format!(
            "loading {} killed the process that loaded it (signal {sig})",
            lib.display()
        )),
        _ => Err(format!(
            "dlopen of {} failed: {}",
            lib.display(),
            err.trim()
        )),
    }
}

/// The child's side of [`dlopen_in_child`]: load `lib`, exit 0, or print why and exit 1.
pub fn dlopen_in_this_process(lib: &Path) -> std::process::ExitCode {
    match crate::util::dlopen_now(lib) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_paths_have_no_separator() {
        assert!(preloadable(Path::new(
            "/run/user/0/hwprof-agent-x1/libhwprof_agent.so"
        )));
        assert!(!preloadable(Path::new("/home/a b/libhwprof_agent.so")));
        assert!(!preloadable(Path::new("/tmp/a:b/libhwprof_agent.so")));
    }
}
