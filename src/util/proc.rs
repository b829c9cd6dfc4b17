//! What hwprof reads of processes in /proc, through the `procfs` crate: existence,
//! liveness, parent, uids, capabilities, threads, names. One place, so that no stage
//! parses /proc text by hand. (The RSS sampler reads statm, status and a newcomer's
//! parent itself: a measured hot path,
//! see `collect::rss`; the Python agent, a preloaded library, cannot use procfs.)

use std::path::PathBuf;

use procfs::process::Process;

/// Whether process `pid` exists (a zombie still does).
pub fn exists(pid: i32) -> bool {
    pid > 0 && Process::new(pid).is_ok()
}

/// Whether process `pid` exists and is neither a zombie nor dead.
pub fn alive(pid: i32) -> bool {
    pid > 0 && Process::new(pid).is_ok_and(|p| p.is_alive())
}

/// The parent pid of `pid`.
pub fn parent(pid: i32) -> Option<i32> {
    parent_checked(pid).ok().flatten()
}

/// Why /proc could not be read: the process is gone or hidden, or this process is out of
/// file descriptors (or memory) and cannot tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// No such process (or not ours to read).
    Gone,
    /// Any other error (EMFILE, ENFILE, ENOMEM while opening /proc): cannot tell now.
    OutOfFds,
}

/// The parent pid of `pid`, telling "gone" from "cannot open /proc now" (EMFILE, ENFILE,
/// ENOMEM: opening /proc needs fds, which a collector at its open-files limit lacks).
pub fn parent_checked(pid: i32) -> Result<Option<i32>, Unreadable> {
    // procfs may rebuild an I/O error without its errno: any error but "not found" or
    // "permission denied" is taken as "cannot tell now".
    let classify = |e: procfs::ProcError| match e {
        procfs::ProcError::NotFound(_) | procfs::ProcError::PermissionDenied(_) => Unreadable::Gone,
        _ => Unreadable::OutOfFds,
    };
    let stat = Process::new(pid).and_then(|p| p.stat()).map_err(classify)?;
    Ok(Some(stat.ppid))
}

/// Real, effective and saved uid of `pid`.
pub fn uids(pid: i32) -> Option<[u32; 3]> {
    uids_of(&Process::new(pid).ok()?)
}

/// Real, effective and saved uid of this process.
pub fn own_uids() -> Option<[u32; 3]> {
    uids_of(&Process::myself().ok()?)
}

fn uids_of(p: &Process) -> Option<[u32; 3]> {
    let s = p.status().ok()?;
    Some([s.ruid, s.euid, s.suid])
}

/// Whether this process's effective capability set holds `cap`.
pub fn has_own_capability(cap: u32) -> bool {
    cap < 64
        && Process::myself()
            .and_then(|p| p.status())
            .is_ok_and(|s| s.capeff & (1 << cap) != 0)
}

/// Thread ids of `pid`, sorted; `[pid]` when they cannot be listed.
pub fn threads(pid: i32) -> Vec<i32> {
    let mut tids: Vec<i32> = Process::new(pid)
        .and_then(|p| p.tasks())
        .map(|tasks| tasks.flatten().map(|t| t.tid).collect())
        .unwrap_or_default();
    tids.sort_unstable();
    if tids.is_empty() {
        tids.push(pid);
    }
    tids
}

/// The name (comm) of thread `tid` of `pid`, empty when it is gone.
pub fn thread_name(pid: i32, tid: i32) -> String {
    Process::new(pid)
        .and_then(|p| p.task_from_tid(tid))
        .and_then(|t| t.stat())
        .map(|s| s.comm)
        .unwrap_or_default()
}

/// The executable of `pid` (hidden for another user's process).
pub fn exe(pid: i32) -> Option<PathBuf> {
    Process::new(pid).ok()?.exe().ok()
}

/// The first word of `pid`'s command line, at most `max` characters.
pub fn argv0(pid: i32, max: usize) -> Option<String> {
    let argv = Process::new(pid).ok()?.cmdline().ok()?;
    Some(argv.first()?.chars().take(max).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read_through_procfs() {
        let me = std::process::id() as i32;
        assert!(exists(me) && alive(me));
        assert_eq!(parent(me), Some(nix::unistd::getppid().as_raw()));
        let uid = nix::unistd::getuid().as_raw();
        assert_eq!(uids(me).map(|u| u[0]), Some(uid));
        assert_eq!(own_uids(), uids(me));
        assert!(threads(me).contains(&me));
        assert!(!thread_name(me, me).is_empty());
        assert_eq!(exe(me), std::env::current_exe().ok());
        assert!(argv0(me, 4096).is_some_and(|a| !a.is_empty()));
        assert!(!exists(-1) && !alive(0));
    }
}
