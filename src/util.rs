//! Small helpers shared by the stages: private file modes, progress bars, host name.

use std::path::Path;

pub mod proc;

/// Create a directory (and parents) with mode 0700.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// This machine's host name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// A progress bar on a terminal, hidden otherwise.
pub fn progress_bar(len: u64, what: &str, quiet: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// CLOCK_MONOTONIC now, in nanoseconds: the one clock of every sidecar.
pub fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}

/// Create a new file, mode 0600, failing if it exists (raw data is never overwritten),
/// relative to an fd of its directory and never through a link (see `private_dir`).
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let (dir, name) = crate::private_dir::parent_of(path)?;
    dir.create_file(&name)
}

/// Open a file for appending, created 0600 when absent, never through a link; an
/// existing one must be a regular file of the caller's (see `private_dir`).
pub fn append_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let (dir, name) = crate::private_dir::parent_of(path)?;
    dir.append_file(&name)
}

/// Write a new file (0600, never through a link; fails if the name exists).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    create_private_file(path)?.write_all(bytes)
}

/// Lower-case hex of bytes (build ids).
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The GNU build id of an ELF file, from its notes.
pub fn elf_build_id(path: &Path) -> Option<Vec<u8>> {
    use object::Object;
    let file = crate::raw::bounded::open_file(path, true).ok()?;
    // SAFETY: a read-only mapping of a binary; object's parser bounds-checks every access.
    let data = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let obj = object::File::parse(&*data).ok()?;
    obj.build_id().ok().flatten().map(|b| b.to_vec())
}

/// This node's base page size in bytes (4096 where sysconf does not say).
pub fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .filter(|&p| p > 0)
        .map_or(4096, |p| p as u64)
}

/// Online CPUs, from sysfs (falls back to 0..nproc).
pub fn online_cpus() -> Vec<u32> {
    if let Ok(s) = std::fs::read_to_string("/sys/devices/system/cpu/online") {
        let cpus = parse_cpu_list(&s);
        if !cpus.is_empty() {
            return cpus;
        }
    }
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (0..n as u32).collect()
}

/// Parse a cpumask/cpus list (`0,18`, `0-3,8`); a range is bounded to 4097 CPUs, parts
/// that do not parse are skipped.
pub fn parse_cpu_list(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    out.extend(a..=b.min(a.saturating_add(4096)));
                }
            }
            None => {
                if let Ok(a) = part.trim().parse() {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// dlopen `path` (RTLD_NOW: every symbol bound now) in this process; Err(dlerror text).
/// The library stays loaded: meant for a child process that exits right after.
pub fn dlopen_now(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: dlopen with a NUL-terminated path; it runs the library's constructors.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if !h.is_null() {
        return Ok(());
    }
    // SAFETY: dlerror returns null or a NUL-terminated message owned by libc.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        return Err("dlopen failed".into());
    }
    // SAFETY: non-null, NUL-terminated, valid until the next dl* call.
    Err(unsafe { std::ffi::CStr::from_ptr(e) }
        .to_string_lossy()
        .into_owned())
}

/// What `read` makes of `text` written to a file `name` in a temporary directory: how
/// the tests of the sidecar readers (rss.csv, counters.csv) feed them.
#[cfg(test)]
pub fn read_as_file<T>(name: &str, text: &str, read: impl FnOnce(&Path) -> T) -> T {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    read(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_skip_garbage_and_bound_ranges() {
        assert_eq!(parse_cpu_list("0-3,5"), vec![0, 1, 2, 3, 5]);
        assert_eq!(parse_cpu_list("x"), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("0-4294967295").len(), 4097);
    }
}
