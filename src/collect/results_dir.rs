//! The results directory of a collection: created private (or adopted when an MPI job's
//! ranks share it), its raw directory, the disk-space reserve, the manifest (written by
//! one rank only, atomically), the kernel symbols, and rank 0's wait for the other
//! ranks before it finalizes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CollectError, io_err};
use crate::manifest::{FORMAT_VERSION, Manifest, OpenedEvent};
use crate::mpi::MpiContext;
use crate::private_dir::{PrivateDir, PrivateDirError};

/// Create the results directory, or adopt an existing one that is the caller's, not
/// group/other writable, and empty, except that the ranks of one MPI job share it (see
/// `private_dir`).
pub(super) fn prepare_result_dir(dir: &Path, mpi: &MpiContext) -> Result<PrivateDir, CollectError> {
    if dir.exists() && !dir.is_dir() {
        return Err(CollectError::ResultDir(format!(
            "{} exists and is not a directory; choose another -r",
            dir.display()
        )));
    }
    let results = PrivateDir::create_or_adopt(dir, mpi.job.is_some()).map_err(|e| match e {
        // I/O keeps its cause (out of fds: which limit to raise).
        PrivateDirError::Io { path, source } => io_err(path.display().to_string())(source),
        e => CollectError::ResultDir(e.to_string()),
    })?;
    let empty = results.was_created()
        || results
            .is_empty()
            .map_err(io_err(format!("read {}", dir.display())))?;
    if !empty {
        // One read of the manifest decides: this job's, or none yet while a sibling
        // rank is setting up (two reads raced: a manifest missing at the first and
        // written before the second refused a rank of a 4-rank job).
        let shared = mpi.job.is_some()
            && match Manifest::load(dir) {
                Ok(m) => m.mpi_job == mpi.job,
                Err(crate::manifest::ManifestError::Missing(_)) => mpi.rank.is_some(),
                Err(_) => false,
            };
        if !shared {
            return Err(CollectError::ResultDir(
                PrivateDirError::NotEmpty(dir.to_path_buf()).to_string(),
            ));
        }
    }
    Ok(results)
}

/// Create `raw/<name>` in the results directory; its path.
pub(super) fn create_raw_dir(
    results: &PrivateDir,
    dir: &Path,
    raw_name: &str,
) -> Result<PathBuf, CollectError> {
    let raw_dir = dir.join("raw").join(raw_name);
    results
        .subdir("raw", true)
        .and_then(|raw| raw.subdir(raw_name, false))
        .map_err(io_err(format!("create {}", raw_dir.display())))?;
    Ok(raw_dir)
}

/// Undo a collection that never started (the target could not be executed): the raw
/// directory, the provisional manifest and the directories, when empty.
pub(super) fn remove_unstarted(results: &PrivateDir, dir: &Path, raw_dir: &Path) {
    let _ = std::fs::remove_dir_all(raw_dir);
    let _ = std::fs::remove_dir(dir.join("raw"));
    let _ = results.remove("manifest.json");
    let _ = std::fs::remove_dir(dir);
}

/// The provisional manifest (complete: false, "collecting"): what is known at the start
/// of a collection. It is replaced atomically at the end.
pub(super) fn provisional_manifest(
    opts: &super::CollectOptions,
    command: &[String],
    host: &str,
    events_requested: Vec<String>,
    opened: &super::open::OpenedEvents,
    exclude_kernel: bool,
    python_expected: bool,
) -> Manifest {
    let start_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    Manifest {
        format_version: FORMAT_VERSION,
        hwprof_version: env!("CARGO_PKG_VERSION").into(),
        mode: opts.mode.as_str().into(),
        command: command.to_vec(),
        hosts: vec![host.to_string()],
        page_size: crate::util::page_size(),
        start_time_unix: start_unix,
        duration_s: 0.0,
        call_graph: opts.call_graph.describe(),
        frequency_hz: opts.freq,
        events_requested,
        events: opened
            .chosen
            .iter()
            .map(|c| OpenedEvent {
                requested: c.requested.clone(),
                opened: c.spec.name.clone(),
                note: c.note.clone(),
                precise_ip: c.precise_ip,
            })
            .collect(),
        groups: opened.groups.clone(),
        kernel_samples: !exclude_kernel,
        kernel_note: if exclude_kernel {
            "excluded: perf_event_paranoid >= 2 without CAP_PERFMON".into()
        } else {
            String::new()
        },
        python: "off".into(),
        mpi_job: opts.mpi.job.clone(),
        world_size: opts.mpi.world_size,
        finalized: false,
        exit_status: None,
        notices: Vec::new(),
        python_expected,
        sample_times_ns: None,
        complete: false,
        incomplete_reason: crate::manifest::COLLECTING.into(),
    }
}

/// Disk space held back during collection (a preallocated hidden file in the results
/// directory), released before the last writes so that a disk-full stop still ends
/// with a valid, marked directory. Left behind only by a crash; finalize ignores it.
pub(super) struct SpaceReserve<'a> {
    dir: &'a PrivateDir,
    name: String,
}

impl<'a> SpaceReserve<'a> {
    const BYTES: i64 = 1 << 20;

    /// Take the reserve (None: the file could not be created).
    pub(super) fn take(dir: &'a PrivateDir) -> Option<SpaceReserve<'a>> {
        use std::os::fd::AsFd;
        let name = format!(".hwprof-reserve.{}", std::process::id());
        let f = dir.create_file(&name).ok()?;
        let reserve = SpaceReserve { dir, name };
        // Best effort: a file system without fallocate keeps no reserve.
        let _ = nix::fcntl::fallocate(
            f.as_fd(),
            nix::fcntl::FallocateFlags::empty(),
            0,
            Self::BYTES,
        );
        Some(reserve)
    }
}

impl Drop for SpaceReserve<'_> {
    fn drop(&mut self) {
        let _ = self.dir.remove(&self.name);
    }
}

/// Rank 0 (or a non-MPI run) writes the manifest, atomically (rename). Another rank
/// writes it only when none exists yet, so a results directory is never without one:
/// it creates it with a hard link from its own temporary file, which fails when the
/// file exists, so of several ranks (on several hosts of a shared file system) exactly
/// one wins and nobody's half-written file is ever seen. The hosts are those of the raw
/// directories present, so the manifest does not depend on which rank wrote last.
pub(super) fn write_manifest(
    dir: &PrivateDir,
    mut m: Manifest,
    mpi: &MpiContext,
) -> std::io::Result<()> {
    let labels: Vec<String> = m.hosts.iter().map(|h| crate::raw::host_label(h)).collect();
    for r in crate::raw::list_raw_dirs(dir.path()).unwrap_or_default() {
        if !m.hosts.contains(&r.host) && !labels.contains(&r.host) {
            m.hosts.push(r.host);
        }
    }
    m.hosts.sort();
    m.hosts.dedup();
    if mpi.rank.is_none_or(|r| r == 0) {
        return m.save_unsynced_in(dir);
    }
    dir.write_if_absent("manifest.json", m.to_json()?.as_bytes())
        .map(drop)
}

/// Whether this process should finalize after collecting: outside MPI always; in an
/// MPI job only rank 0, once every rank's raw directory is complete (or after
/// `timeout`, naming the missing ranks).
pub fn should_finalize(dir: &Path, mpi: &MpiContext, timeout: Duration, quiet: bool) -> bool {
    let Some(rank) = mpi.rank else { return true };
    if rank != 0 {
        return false;
    }
    let Some(size) = mpi.world_size else {
        return true;
    };
    let deadline = Instant::now() + timeout;
    loop {
        let done: Vec<u32> = crate::raw::list_raw_dirs(dir)
            .unwrap_or_default()
            .iter()
            .filter(|r| r.path.join("complete").exists())
            .filter_map(|r| r.rank)
            .collect();
        let missing: Vec<u32> = (0..size).filter(|r| !done.contains(r)).collect();
        if missing.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            if !quiet {
                eprintln!(
                    "hwprof: ranks {missing:?} did not complete within {}s; finalizing without them (run `hwprof finalize {}` again later)",
                    timeout.as_secs(),
                    dir.display()
                );
            }
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Copies `from` into a new private file `to` (never through a link planted there).
fn copy_private(from: &Path, to: &Path) -> bool {
    let Ok(mut src) = std::fs::File::open(from) else {
        return false;
    };
    crate::util::create_private_file(to)
        .is_ok_and(|mut dst| std::io::copy(&mut src, &mut dst).is_ok())
}

/// The vdso this process maps (the one the target maps: same kernel), into
/// [`crate::sidecars::VDSO_FILE`]. Nothing is written when it cannot be read.
pub(super) fn copy_vdso(raw_dir: &Path) {
    use procfs::process::{MMapPath, Process};
    use std::os::unix::fs::FileExt;
    // A vdso is two pages or so; a larger mapping is not one.
    const MAX_VDSO: u64 = 1 << 20;
    let Some((start, end)) = Process::myself()
        .and_then(|p| p.maps())
        .ok()
        .and_then(|m| m.0.into_iter().find(|m| m.pathname == MMapPath::Vdso))
        .map(|m| m.address)
    else {
        return;
    };
    let len = end.saturating_sub(start);
    if len == 0 || len > MAX_VDSO {
        return;
    }
    // Our own memory, read through /proc/self/mem: no unsafe slice over a mapping.
    let mut image = vec![0u8; len as usize];
    if std::fs::File::open("/proc/self/mem")
        .and_then(|f| f.read_exact_at(&mut image, start))
        .is_ok()
    {
        let _ = crate::util::write_private_file(&raw_dir.join(crate::sidecars::VDSO_FILE), &image);
    }
}

/// Copy the kernel's symbols into the raw directory (from the per-boot cache when it
/// has them).
pub(super) fn copy_kallsyms(raw_dir: &Path) {
    // Kernel symbols for finalize on another machine; only meaningful when readable.
    // Reading /proc/kallsyms costs 50-300 ms of kernel time (5 MB generated), longer
    // than a short target runs: a copy is kept per boot and set of loaded modules in
    // the user's cache directory, and later runs copy that (a few ms).
    let p = raw_dir.join("kallsyms");
    let cached = kallsyms_cache_path();
    // A hard link costs nothing (the cached file is only ever replaced by a rename,
    // never written in place); a copy where the cache is on another file system.
    if let Some(c) = cached.as_ref()
        && (std::fs::hard_link(c, &p).is_ok() || copy_private(c, &p))
    {
        return;
    }
    // Copied verbatim, not parsed: procfs has no reader for it.
    if let Ok(k) = std::fs::read("/proc/kallsyms")
        && k.split(|&b| b == b'\n')
            .take(3)
            .any(|l| !l.starts_with(b"0000000000000000"))
    {
        let _ = crate::util::write_private_file(&p, &k);
        if let Some(c) = cached
            && let Some(dir) = c.parent()
            && crate::util::create_private_dir(dir).is_ok()
        {
            // Written aside, then renamed: a concurrent run never copies half a file.
            let tmp = dir.join(format!(".kallsyms.{}", std::process::id()));
            // Created exclusively (0600, never through a link), renamed over the copy.
            let _ = std::fs::remove_file(&tmp);
            if crate::util::write_private_file(&tmp, &k).is_ok()
                && std::fs::rename(&tmp, &c).is_err()
            {
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }
}

/// `$XDG_CACHE_HOME/hwprof/kallsyms-<boot id>-<hash of /proc/modules>` (or under
/// `~/.cache`): valid while the kernel and its loaded modules are the same.
fn kallsyms_cache_path() -> Option<PathBuf> {
    let boot = procfs::sys::kernel::random::boot_id().ok()?;
    // The module list as the kernel prints it (names, sizes, load addresses), hashed
    // whole: procfs's parsed form would drop the addresses. None: no loadable modules.
    let modules = std::fs::read("/proc/modules").unwrap_or_default();
    // FNV-1a of the module list (names, sizes, load addresses).
    let hash = modules.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(
        base.join("hwprof")
            .join(format!("kallsyms-{}-{hash:016x}", boot.trim())),
    )
}
