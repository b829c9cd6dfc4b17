//! [python] Sampling the processes no agent samples.
//!
//! A Python launch in hotspots mode is sampled by the preloaded agents in its Python
//! processes (each opens the sampling event on itself), and the collector's own
//! inherited events only track (mmap, comm, task). The agent stays silent in processes
//! that are not Python (the launcher's bash, tools the script runs), and cannot enter a
//! static binary, a setuid/setgid one (the loader ignores `LD_PRELOAD`), or one whose
//! environment dropped `LD_PRELOAD`: these would go unsampled. The collector watches every exec (COMM records
//! with the exec flag, from its tracking events) and decides at once from
//! `/proc/PID/exe` (ELF without `PT_INTERP`, set-id bits) and `/proc/PID/environ`
//! (our library in `LD_PRELOAD`) whether an agent will sample it; when not, or when no
//! agent reported within [`AGENT_GRACE`], it opens the sampling events on the process's
//! threads itself (per CPU, `inherit` and `remove_on_exec`, output into its own rings).
//! What it did per process is written to `collector-sampled.json` in the raw dir.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use perf_event_open_sys::bindings::perf_event_attr as PerfEventAttr;

use super::sys;
pub use crate::sidecars::collector_sampled::{EXITED_FIRST, FILE_NAME, FillRecord, load};

/// How long an agent gets, after its process's exec was seen, to report its events.
pub const AGENT_GRACE: Duration = Duration::from_millis(200);

/// How a record's `why` starts for a set-id program.
const SET_ID: &str = "set-user/group-id program";
/// ... and for an executable hwprof may not read (another user's set-id program).
const UNREADABLE: &str = "its executable is not readable by hwprof";
/// Most records kept (a script that runs a static tool a million times).
const MAX_RECORDS: usize = 10_000;
/// Most executables whose Python test is remembered.
const MAX_EXES: usize = 4096;

/// An executable as the Python test saw it: its path (the test reads the name) and the
/// file's identity (device, inode, modification time s and ns).
type ExeKey = (PathBuf, u64, u64, i64, i64);

/// Whether an agent will sample a freshly exec'd process.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Agent,
    NoAgent(String),
    /// The process is gone (or between two programs: its next exec is seen anew).
    Gone,
}

/// The collector's side: watches execs, opens events where no agent samples.
pub struct Filler {
    attr: PerfEventAttr,
    /// `attr` with the side-band records on: for a set-id program, whose exec detached
    /// the collector's inherited tracking events (the kernel does so for every exec that
    /// is not dumpable), so its mmaps must come from its own events.
    tracking_attr: PerfEventAttr,
    /// (pid, first event id) of processes whose existing mappings are to be written
    /// from /proc/PID/maps (mapped before our events were on them).
    to_synthesize: Vec<(u32, u64)>,
    /// (cpu, the fd of the collector's ring on that CPU).
    outputs: Vec<(u32, OwnedFd)>,
    agent_lib: Vec<u8>,
    /// Processes expected to get an agent: (pid, exec seen at).
    pending: Vec<(u32, Instant)>,
    /// Last time each pid's agent reported events.
    agent_seen: HashMap<u32, Instant>,
    fds: Vec<OwnedFd>,
    /// Per process: a dup of our first event on it (hung up once an exec removed it).
    live: HashMap<u32, OwnedFd>,
    records: Vec<FillRecord>,
    /// Pids already recorded as exited before their exec record was read.
    exited_first: HashSet<u32>,
    /// Whether each executable seen is Python: a launcher execs the same few programs
    /// (bash, pyenv's helpers) dozens of times, and the test parses the ELF's imports.
    python_exes: HashMap<ExeKey, bool>,
}

impl Filler {
    /// `sampling_attr`: the attr the agents sample with; `outputs`: the collector's ring
    /// fd per CPU; `agent_lib`: the library preloaded.
    pub fn new(
        sampling_attr: &PerfEventAttr,
        outputs: Vec<(u32, OwnedFd)>,
        agent_lib: &Path,
    ) -> Filler {
        let mut a = *sampling_attr;
        // Tracking records come from the collector's tracking event already.
        a.set_mmap(0);
        a.set_mmap2(0);
        a.set_mmap_data(0);
        a.set_comm(0);
        a.set_comm_exec(0);
        a.set_task(0);
        a.set_build_id(0);
        a.set_context_switch(0);
        a.set_enable_on_exec(0);
        // Disabled until its output is redirected; follows threads and forks; dropped at
        // the next exec, where the new program is decided about again.
        a.set_disabled(1);
        a.set_inherit(1);
        a.set_remove_on_exec(1);
        let mut tracking = a;
        tracking.set_mmap(1);
        tracking.set_mmap2(1);
        tracking.set_comm(1);
        tracking.set_comm_exec(1);
        tracking.set_task(1);
        use std::os::unix::ffi::OsStrExt;
        Filler {
            attr: a,
            tracking_attr: tracking,
            to_synthesize: Vec::new(),
            outputs,
            agent_lib: agent_lib.as_os_str().as_bytes().to_vec(),
            pending: Vec::new(),
            agent_seen: HashMap::new(),
            fds: Vec::new(),
            live: HashMap::new(),
            records: Vec::new(),
            exited_first: HashSet::new(),
            python_exes: HashMap::new(),
        }
    }

    /// An agent reported its events for `pid`.
    pub fn agent_reported(&mut self, pid: u32) {
        self.agent_seen.insert(pid, Instant::now());
    }

    /// `pid` exec'd. Returns the ids of events opened on it (to register in perf.data).
    pub fn exec_seen(&mut self, pid: u32) -> Vec<u64> {
        // The verdict is on the program the process runs now, which may already be a
        // later exec than the record's: events already on it (not yet removed by an
        // exec) cover it.
        if self.live.get(&pid).is_some_and(|fd| !hung_up(fd)) {
            return Vec::new();
        }
        match verdict(pid, &self.agent_lib, &mut self.python_exes) {
            Verdict::Gone => {
                // Once per pid (a shim may exec twice before it is read).
                if !self.exited_first.contains(&pid)
                    && !crate::util::proc::alive(pid as i32)
                    && self.records.len() < MAX_RECORDS
                {
                    self.exited_first.insert(pid);
                    self.records.push(FillRecord {
                        pid,
                        exe: String::new(),
                        why: String::new(),
                        error: EXITED_FIRST.into(),
                        ids: Vec::new(),
                    });
                }
                Vec::new()
            }
            Verdict::Agent => {
                self.pending.push((pid, Instant::now()));
                Vec::new()
            }
            Verdict::NoAgent(why) => self.sample(pid, why),
        }
    }

    /// (pid, event id) of set-id processes whose mappings at the time our events were
    /// opened must be written from `/proc/PID/maps` (see [`Filler::tracking_attr`]).
    pub fn take_to_synthesize(&mut self) -> Vec<(u32, u64)> {
        std::mem::take(&mut self.to_synthesize)
    }

    /// Processes whose agent did not report within the grace time get our events.
    pub fn tick(&mut self) -> Vec<u64> {
        let now = Instant::now();
        let mut ids = Vec::new();
        let mut due = Vec::new();
        self.pending.retain(|&(pid, since)| {
            if now.duration_since(since) < AGENT_GRACE {
                return true;
            }
            due.push((pid, since));
            false
        });
        for (pid, since) in due {
            // The agent may report before its exec record is drained.
            let reported = self
                .agent_seen
                .get(&pid)
                .is_some_and(|&t| t + AGENT_GRACE >= since);
            if !reported && crate::util::proc::alive(pid as i32) {
                ids.extend(self.sample(pid, "its agent did not start".into()));
            }
        }
        ids
    }

    fn sample(&mut self, pid: u32, why: String) -> Vec<u64> {
        // Another user's process hides its exe link: its command line names it.
        let exe = crate::util::proc::exe(pid as i32)
            .map(|p| p.display().to_string())
            .or_else(|| crate::util::proc::argv0(pid as i32, 4096))
            .unwrap_or_default();
        // A set-id exec detached our inherited tracking events from the process.
        let set_id = why.starts_with(SET_ID) || why.starts_with(UNREADABLE);
        let attr = if set_id {
            self.tracking_attr
        } else {
            self.attr
        };
        let mut rec = FillRecord {
            pid,
            exe,
            why,
            error: String::new(),
            ids: Vec::new(),
        };
        for tid in crate::util::proc::threads(pid as i32) {
            for (cpu, out) in &self.outputs {
                match open_one(&attr, tid, *cpu, out) {
                    Ok((fd, id)) => {
                        if rec.ids.is_empty()
                            && let Ok(d) = fd.try_clone()
                        {
                            self.live.insert(pid, d);
                        }
                        rec.ids.push(id);
                        self.fds.push(fd);
                    }
                    // The thread (or process) is gone: nothing left to sample.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => break,
                    Err(e) => {
                        if rec.error.is_empty() {
                            rec.error = match e.raw_os_error() {
                                Some(libc::EACCES | libc::EPERM) => refused_why(pid, &e),
                                _ => format!("perf_event_open: {e}"),
                            };
                        }
                    }
                }
            }
        }
        if set_id && let Some(&id) = rec.ids.first() {
            self.to_synthesize.push((pid, id));
        }
        let ids = rec.ids.clone();
        self.records.push(rec);
        ids
    }

    /// Writes `collector-sampled.json` (nothing when no process needed us).
    pub fn finish(self, raw_dir: &Path) -> std::io::Result<Vec<FillRecord>> {
        if !self.records.is_empty() {
            crate::util::write_private_file(
                &raw_dir.join(FILE_NAME),
                &serde_json::to_vec_pretty(&self.records)?,
            )?;
        }
        Ok(self.records)
    }
}

/// Why the kernel refused to let us sample `pid`: it only lets a user sample processes
/// that user may trace (same real, effective and saved uid), and a set-user-id program
/// of another owner runs with that owner's.
fn refused_why(pid: u32, e: &std::io::Error) -> String {
    let euid =
        crate::util::proc::uids(pid as i32).map_or_else(|| "?".to_string(), |u| u[1].to_string());
    format!(
        "perf_event_open refused ({e}): the process runs as uid {euid} (set-id), uid {} may not sample it (the kernel allows only processes one may ptrace); run hwprof as root or with CAP_PERFMON and CAP_SYS_PTRACE to sample it",
        nix::unistd::getuid()
    )
}

/// Whether an event was removed (its task exec'd or exited).
fn hung_up(fd: &OwnedFd) -> bool {
    sys::poll_readable(&[fd], 0)
        .first()
        .copied()
        .unwrap_or(true)
}

fn open_one(
    attr: &PerfEventAttr,
    tid: i32,
    cpu: u32,
    out: &OwnedFd,
) -> std::io::Result<(OwnedFd, u64)> {
    let fd = sys::perf_event_open(attr, tid, cpu as i32, None)?;
    sys::set_output(&fd, out)?;
    let id = sys::event_id(&fd)?;
    sys::enable(&fd)?;
    Ok((fd, id))
}

fn verdict(pid: u32, agent_lib: &[u8], python_exes: &mut HashMap<ExeKey, bool>) -> Verdict {
    // The program is opened through the /proc link (the file the process runs, even
    // if its path was replaced since): its mode and ELF header are read below.
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let f = match std::fs::File::open(&exe) {
        Ok(f) => f,
        // Another user's set-id program: try, and say why.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Verdict::NoAgent(format!("{UNREADABLE} (another user's set-id program)"));
        }
        Err(_) => return Verdict::Gone,
    };
    let meta = f.metadata().ok();
    if let Some(m) = &meta
        && m.mode() & (libc::S_ISUID | libc::S_ISGID) != 0
    {
        return Verdict::NoAgent(format!("{SET_ID} (the loader ignores LD_PRELOAD)"));
    }
    match has_interp(&f) {
        Some(false) => return Verdict::NoAgent("statically linked".into()),
        None => return Verdict::NoAgent("not an ELF program".into()),
        Some(true) => {}
    }
    // Read raw, not by procfs's `environ()`: that reads all of it unbounded, and its
    // error would not tell a refused read (another user's process) from a gone one.
    let mut env = Vec::new();
    let read = std::fs::File::open(format!("/proc/{pid}/environ"))
        .and_then(|mut e| e.by_ref().take(1 << 20).read_to_end(&mut env));
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Verdict::NoAgent("its environment is not readable".into());
        }
        Err(_) => return Verdict::Gone,
        Ok(_) => {}
    }
    let preloaded = env
        .split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"LD_PRELOAD="))
        .any(|v| {
            v.split(|&b| b == b' ' || b == b':')
                .any(|lib| lib == agent_lib)
        });
    if preloaded {
        // The agent speaks only in processes with an interpreter linked in
        // (`HWPROF_AGENT_PYTHON_ONLY`); the same test from outside.
        let real = std::fs::read_link(&exe).unwrap_or(exe);
        let key = meta.map(|m| (real.clone(), m.dev(), m.ino(), m.mtime(), m.mtime_nsec()));
        let python = match key.as_ref().and_then(|k| python_exes.get(k)) {
            Some(&known) => known,
            None => {
                let python = crate::python::agent_link::looks_like_python(&real);
                if let Some(k) = key {
                    if python_exes.len() >= MAX_EXES {
                        python_exes.clear();
                    }
                    python_exes.insert(k, python);
                }
                python
            }
        };
        if python {
            Verdict::Agent
        } else {
            Verdict::NoAgent("not a Python program (its agent stays silent)".into())
        }
    } else {
        let now: String = env
            .split(|&b| b == 0)
            .find_map(|kv| kv.strip_prefix(b"LD_PRELOAD="))
            .map(|v| String::from_utf8_lossy(&v[..v.len().min(200)]).into_owned())
            .unwrap_or_else(|| "unset".into());
        Verdict::NoAgent(format!(
            "LD_PRELOAD no longer names the agent (LD_PRELOAD: {now})"
        ))
    }
}

/// Whether an ELF file has a `PT_INTERP` program header (is dynamically linked); None
/// when it is not a 64-bit little-endian ELF file.
fn has_interp(f: &std::fs::File) -> Option<bool> {
    let mut h = [0u8; 64];
    f.read_exact_at(&mut h, 0).ok()?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return None;
    }
    let phoff = u64::from_le_bytes(h[0x20..0x28].try_into().ok()?);
    let phentsize = u16::from_le_bytes(h[0x36..0x38].try_into().ok()?) as u64;
    let phnum = u16::from_le_bytes(h[0x38..0x3a].try_into().ok()?) as u64;
    if phentsize < 4 || phnum > 256 {
        return None;
    }
    let mut ph = vec![0u8; (phentsize * phnum) as usize];
    f.read_exact_at(&mut ph, phoff).ok()?;
    Some(
        ph.chunks(phentsize as usize)
            .any(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]) == 3),
    )
}

/// Write the filler's record and say which processes went unsampled, and why. A
/// process that exited before its exec record was read is counted as too short (a
/// launcher's helper, typically), not announced.
pub(super) fn finish_notices(filler: Filler, raw_dir: &Path) -> Vec<String> {
    match filler.finish(raw_dir) {
        Ok(records) => records
            .iter()
            .filter(|r| !r.error.is_empty() && r.error != EXITED_FIRST)
            .map(|r| {
                format!(
                    "process {} ({}) was not sampled: {}; {}",
                    r.pid, r.exe, r.why, r.error
                )
            })
            .collect(),
        Err(e) => vec![format!("cannot write {FILE_NAME}: {e}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interp_of_this_test_binary() {
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        // cargo's test binaries are dynamically linked on glibc.
        assert_eq!(has_interp(&f), Some(true));
        let f = std::fs::File::open("/proc/self/cmdline").unwrap();
        assert_eq!(has_interp(&f), None);
    }
}
