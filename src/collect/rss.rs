//! RSS timeline of a process tree, sampled from procfs: `raw/<host>.<rank>.<pid>/rss.csv`.
//!
//! Format (CSV, one header line, append-only, flushed after every tick):
//!
//! ```text
//! time_ns,pid,rss_bytes
//! 81234567890123,4242,1409024
//! 81234567890123,4250,268582912
//! ```
//!
//! - `time_ns`: CLOCK_MONOTONIC nanoseconds ([`crate::util::monotonic_ns`]), the clock
//!   of the perf samples; every row of one tick carries the same time, so the tree's
//!   total at an instant is the sum of the rows with that time.
//! - `pid`: a process of the tree (the root and all its descendants, found each tick
//!   from `/proc/*/stat` parent links; a process keeps being followed when its parent
//!   exits and it is re-parented).
//! - `rss_bytes`: resident set size, `resident` of `/proc/PID/statm` × the page size
//!   (the same number as `VmRSS`).
//!
//! A process that exits between two reads simply stops appearing (zombies are not
//! written, nor is a process whose RSS reads 0: its memory is already released on
//! exit). The launched process, which the collector reaps, gets one more row at its
//! exit, made of its `ru_maxrss` ([`RssSampler::stop_at_exit`], [`exit_reading_bytes`]):
//! the last row of that pid, at the time it was reaped. A crash of hwprof loses at most the tick being written; [`read_rss_csv`]
//! drops a cut last line.
//!
//! Cost: one `readdir(/proc)` per tick, one `pread` of an open `/proc/PID/statm` per tree
//! process, and one `/proc/PID/stat` read per process that appeared since the last tick
//! (a process found not to be in the tree is remembered and not read again while it
//! lives). Figures in docs/performance.md.
//!
//! /proc is read raw here, not through `procfs` (which hwprof uses elsewhere, in
//! `util::proc`): this is a measured hot path (the sampler's budget, under 1.5% of a
//! core for 64 processes, is held by `rss_sampler_costs_under_one_percent_of_a_core_for_64_processes`),
//! and procfs opens and parses a file per call where the sampler keeps each statm and
//! status open and re-reads it with one `pread`; it also reads a fake /proc root in tests.

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::sampler_thread::SamplerThread;
use crate::sidecars::SidecarError;
pub use crate::sidecars::rss::{
    COLUMNS, HWM_FILE, RssError, read_peak_csv, read_rss_csv, summed_peak, summed_timeline,
    write_hwm_csv, write_peak_csv,
};

/// What the sampler did, returned by [`RssSampler::stop`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RssStats {
    /// Ticks taken.
    pub ticks: u64,
    /// Rows written.
    pub rows: u64,
    /// Distinct processes seen.
    pub processes: u64,
    /// Ticks that scanned `/proc` for new processes (a pid was allocated since the
    /// last scan).
    pub scans: u64,
    /// CPU time of the sampler thread, ns (CLOCK_THREAD_CPUTIME_ID).
    pub cpu_ns: u64,
    /// Wall time from start to stop, ns.
    pub wall_ns: u64,
    /// CPU time of each tick's work (read, write), ns, in tick order: the sampler's
    /// cost at its nominal rate is their mean over the interval, whatever the wall
    /// clock did (a loaded machine delays ticks; docs/performance.md "memory").
    pub tick_cpu_ns: Vec<u64>,
}

/// Samples the RSS of a process tree every `interval` into a CSV file, on its own
/// thread, until [`stop`](Self::stop).
pub struct RssSampler {
    /// The launched process's exit, handed over by [`stop_at_exit`](Self::stop_at_exit).
    exit: Arc<std::sync::Mutex<Option<ExitReading>>>,
    thread: SamplerThread<Result<RssStats, RssError>>,
}

/// The kernel's account of a process the collector reaped: what the timeline's reading
/// at its exit is made of (a zombie's `/proc` files hold no memory figures any more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitReading {
    /// The process.
    pub pid: u32,
    /// Its high-water mark of RSS, bytes (`ru_maxrss` of `wait4`).
    pub maxrss_bytes: u64,
    /// When it was reaped, CLOCK_MONOTONIC ns (the collector polls a pidfd that turns
    /// readable at the exit, so this is within a millisecond or so of it).
    pub time_ns: u64,
}

/// The default interval (`--rss-interval`), ms: small enough to see a 200 ms phase.
pub const DEFAULT_INTERVAL_MS: u64 = 50;

impl RssSampler {
    /// Create `path` (mode 0600, refusing to overwrite) and start sampling the tree
    /// rooted at `root`.
    pub fn start(root: u32, interval: Duration, path: &Path) -> Result<RssSampler, RssError> {
        Self::start_in(root, interval, path, Path::new("/proc"))
    }

    /// As [`start`](Self::start), with another procfs root (tests).
    pub fn start_in(
        root: u32,
        interval: Duration,
        path: &Path,
        proc_root: &Path,
    ) -> Result<RssSampler, RssError> {
        let out = crate::sidecars::create_timeline_csv(path, COLUMNS)?;
        let exit = Arc::new(std::sync::Mutex::new(None));
        let ex = exit.clone();
        let path = path.to_path_buf();
        let proc_root = proc_root.to_path_buf();
        let interval = interval.max(Duration::from_millis(1));
        let thread = SamplerThread::spawn("hwprof-rss", move |stop| {
            run(root, interval, out, &path, &proc_root, stop, &ex)
        })
        .map_err(SidecarError::write(Path::new("(thread)")))?;
        Ok(RssSampler { exit, thread })
    }

    /// [`stop`](Self::stop), ending the timeline of the reaped process `exit.pid` with a
    /// reading at its exit (see [`exit_reading_bytes`]).
    pub fn stop_at_exit(self, exit: Option<ExitReading>) -> Result<RssStats, RssError> {
        if let Ok(mut e) = self.exit.lock() {
            *e = exit;
        }
        self.stop()
    }

    /// Take a last reading, flush and close the file, and return what was done.
    pub fn stop(self) -> Result<RssStats, RssError> {
        self.thread.stop().ok_or(RssError::Thread)?
    }
}

/// The parent pid in `/proc/PID/stat` text (the command may hold spaces and
/// parentheses: fields are counted after the last `)`).
pub fn parse_stat_ppid(text: &str) -> Option<u32> {
    let after = &text[text.rfind(')')? + 1..];
    // after ')' : [0]=state(3) [1]=ppid(4)
    after.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The parent of a process seen for the first time. Read raw, not through `procfs`
/// (which opens the process directory, then parses every field): a scan reads this for
/// each new process on the machine, and this module is a measured hot path (module doc).
fn read_ppid(proc_root: &Path, pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat_ppid(&text)
}

fn thread_cpu_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}

/// Follows a process tree through procfs. Members are read through an open
/// `/proc/PID/statm` (one `pread` per tick; the descriptor stays bound to that process,
/// so a reused pid is never mistaken for it and an exited one reads as an error).
struct Tree {
    proc_root: PathBuf,
    /// The root, until it is first seen.
    root: Option<u32>,
    /// The root: its VmHWM is read every tick, so that a top it reaches after its last
    /// tick is told apart at its exit ([`exit_reading_bytes`]).
    root_pid: u32,
    /// Tree members and their statm files.
    ours: HashMap<u32, std::fs::File>,
    /// Tree members' `/proc/PID/status` (read for `VmHWM`, the kernel's high-water mark).
    status: HashMap<u32, std::fs::File>,
    /// Highest `VmHWM` read per process, bytes: a lower bound of its true peak (the
    /// last reading is at most one interval before its exit).
    hwm: HashMap<u32, u64>,
    /// Resident pages at the last tick, per member: status is costly to generate, so it
    /// is read when the RSS moved, and for every member each [`HWM_EVERY`] ticks.
    last_pages: HashMap<u32, u64>,
    ticks: u64,
    /// Processes known not to be in the tree (while their pid stays listed).
    foreign: HashSet<u32>,
    seen: HashSet<u32>,
    buf: Vec<u8>,
    /// Last pid allocated (`/proc/loadavg`, 5th field) at the last discovery: when it
    /// has not moved, no process was created and the `/proc` scan is skipped.
    last_pid: Option<u64>,
    scans: u64,
    /// `/proc/loadavg`, kept open (one pread per tick).
    loadavg: Option<std::fs::File>,
}

/// The most recently allocated pid, from `/proc/loadavg` text (`0.00 0.01 0.05 1/123 4567`).
pub fn parse_loadavg_last_pid(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().nth(4)?.parse().ok()
}

/// `VmHWM` of `/proc/PID/status` text, bytes (the kernel prints kB).
pub fn parse_status_vmhwm(text: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(text).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line["VmHWM:".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// Resident pages from `/proc/PID/statm` text (`size resident shared ...`).
pub fn parse_statm_resident(text: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(text).ok()?;
    s.split_ascii_whitespace().nth(1)?.parse().ok()
}

impl Tree {
    fn join(&mut self, pid: u32) {
        let dir = self.proc_root.join(pid.to_string());
        if let Ok(f) = std::fs::File::open(dir.join("statm")) {
            self.ours.insert(pid, f);
            if let Ok(st) = std::fs::File::open(dir.join("status")) {
                self.status.insert(pid, st);
            }
        }
    }

    /// One tick: discover new members, read every member. Returns (pid, rss pages).
    fn tick(&mut self) -> Vec<(u32, u64)> {
        use std::os::unix::fs::FileExt;
        if self.loadavg.is_none() {
            self.loadavg = std::fs::File::open(self.proc_root.join("loadavg")).ok();
        }
        let mut lbuf = [0u8; 128];
        let last_pid = self
            .loadavg
            .as_ref()
            .and_then(|f| f.read_at(&mut lbuf, 0).ok())
            .and_then(|n| std::str::from_utf8(&lbuf[..n]).ok())
            .and_then(parse_loadavg_last_pid);
        if last_pid.is_none() || last_pid != self.last_pid || self.root.is_some() {
            self.discover();
            self.scans += 1;
            self.last_pid = last_pid;
        }
        let mut rows = Vec::with_capacity(self.ours.len());
        let mut gone = Vec::new();
        self.buf.resize(256, 0);
        for (&pid, f) in &self.ours {
            match f.read_at(&mut self.buf, 0) {
                Ok(n) if n > 0 => match parse_statm_resident(&self.buf[..n]) {
                    // RSS 0: a zombie or an exiting process whose memory is released.
                    Some(pages) if pages > 0 => rows.push((pid, pages)),
                    _ => {}
                },
                _ => gone.push(pid), // exited (ESRCH) between two reads
            }
        }
        // The high-water mark of each process still resident (a zombie's status has no
        // VmHWM line any more).
        let mut sbuf = vec![0u8; 4096];
        let all = self.ticks.is_multiple_of(HWM_EVERY);
        self.ticks += 1;
        for (pid, pages) in &rows {
            if !all && *pid != self.root_pid && self.last_pages.insert(*pid, *pages) == Some(*pages)
            {
                continue;
            }
            self.last_pages.insert(*pid, *pages);
            if let Some(f) = self.status.get(pid)
                && let Ok(n) = f.read_at(&mut sbuf, 0)
                && let Some(b) = parse_status_vmhwm(&sbuf[..n])
            {
                let e = self.hwm.entry(*pid).or_insert(0);
                *e = (*e).max(b);
            }
        }
        for pid in gone {
            self.ours.remove(&pid);
            self.status.remove(&pid);
            self.last_pages.remove(&pid);
        }
        rows.sort_unstable();
        for (pid, _) in &rows {
            self.seen.insert(*pid);
        }
        rows
    }

    /// Find the tree's new members by scanning `/proc`.
    fn discover(&mut self) {
        let mut present = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.proc_root) {
            for e in rd.flatten() {
                if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                    present.push(pid);
                }
            }
        }
        let present_set: HashSet<u32> = present.iter().copied().collect();
        self.foreign.retain(|p| present_set.contains(p));
        self.ours.retain(|p, _| present_set.contains(p));
        self.last_pages.retain(|p, _| present_set.contains(p));
        self.status.retain(|p, _| present_set.contains(p));
        if let Some(r) = self.root
            && present_set.contains(&r)
        {
            self.root = None;
            self.join(r);
        }
        // Newcomers: read their parent once; they join when it is a member (repeat for
        // grandchildren created within the same tick).
        let mut newcomers: Vec<(u32, u32)> = present
            .iter()
            .filter(|p| !self.ours.contains_key(p) && !self.foreign.contains(p))
            .filter_map(|&pid| read_ppid(&self.proc_root, pid).map(|ppid| (pid, ppid)))
            .collect();
        loop {
            let before = newcomers.len();
            let mut joined = Vec::new();
            newcomers.retain(|&(pid, ppid)| {
                if self.ours.contains_key(&ppid) {
                    joined.push(pid);
                    false
                } else {
                    true
                }
            });
            for pid in joined {
                self.join(pid);
            }
            if newcomers.len() == before {
                break;
            }
        }
        for (pid, _) in newcomers {
            self.foreign.insert(pid);
        }
    }
}

fn run(
    root: u32,
    interval: Duration,
    mut out: BufWriter<std::fs::File>,
    path: &Path,
    proc_root: &Path,
    stop: &AtomicBool,
    exit: &std::sync::Mutex<Option<ExitReading>>,
) -> Result<RssStats, RssError> {
    let io = SidecarError::write(path);
    let page = crate::util::page_size();
    let start = crate::util::monotonic_ns();
    let mut tree = Tree {
        proc_root: proc_root.to_path_buf(),
        root: Some(root),
        root_pid: root,
        ours: HashMap::new(),
        status: HashMap::new(),
        hwm: HashMap::new(),
        last_pages: HashMap::new(),
        ticks: 0,
        foreign: HashSet::new(),
        seen: HashSet::new(),
        buf: Vec::new(),
        last_pid: None,
        scans: 0,
        loadavg: None,
    };
    let mut stats = RssStats::default();
    let mut line = String::with_capacity(64);
    let mut next = start;
    // The last reading of each process, bytes (for the reading at the root's exit).
    let mut last_bytes: HashMap<u32, (u64, u64)> = HashMap::new();
    loop {
        let last = stop.load(Ordering::Acquire);
        let t = crate::util::monotonic_ns();
        let cpu_before = thread_cpu_ns();
        let rows = tree.tick();
        if let Some(&(_, pages)) = rows.iter().find(|r| r.0 == root) {
            last_bytes.insert(root, (t, pages * page));
        }
        for (pid, pages) in &rows {
            use std::fmt::Write as _;
            line.clear();
            let _ = writeln!(line, "{t},{pid},{}", pages * page);
            out.write_all(line.as_bytes()).map_err(io)?;
        }
        out.flush().map_err(io)?;
        // Bounded: one u64 a tick (~1.4 MB for a day at 50 ms).
        if stats.tick_cpu_ns.len() < 1 << 21 {
            stats
                .tick_cpu_ns
                .push(thread_cpu_ns().saturating_sub(cpu_before));
        }
        stats.ticks += 1;
        stats.rows += rows.len() as u64;
        if last {
            // The reaped process's reading at its exit, after all its ticks.
            let reaped = exit.lock().ok().and_then(|e| *e);
            if let Some(e) = reaped
                && let Some(&(before_t, before)) = last_bytes.get(&e.pid)
            {
                let bytes = exit_reading_bytes(
                    e.maxrss_bytes,
                    tree.hwm.get(&e.pid).copied().unwrap_or(0),
                    before,
                );
                // The pidfd woke the collector after the exit, so after the last tick
                // that read the process; max() keeps the file in time order regardless.
                let at = e.time_ns.max(before_t + 1);
                writeln!(out, "{at},{},{bytes}", e.pid).map_err(io)?;
                out.flush().map_err(io)?;
                stats.rows += 1;
            }
            break;
        }
        // Fixed-rate schedule; a late tick is not made up for with a burst.
        next += interval.as_nanos() as u64;
        let now = crate::util::monotonic_ns();
        if next <= now {
            next = now + interval.as_nanos() as u64 / 2;
        }
        // Sleep until the next tick or until stop() unparks us.
        while !stop.load(Ordering::Acquire) {
            let now = crate::util::monotonic_ns();
            if now >= next {
                break;
            }
            std::thread::park_timeout(Duration::from_nanos(next - now));
        }
    }
    let hwm_path = path.with_file_name(HWM_FILE);
    write_hwm_csv(&hwm_path, &tree.hwm).map_err(SidecarError::write(&hwm_path))?;
    stats.processes = tree.seen.len() as u64;
    stats.scans = tree.scans;
    stats.cpu_ns = thread_cpu_ns();
    stats.wall_ns = crate::util::monotonic_ns().saturating_sub(start);
    Ok(stats)
}

/// The timeline's reading at the exit of a process the collector reaped, bytes, from
/// its exact high-water mark `maxrss` (`ru_maxrss`), the highest `VmHWM` read while it
/// lived (`hwm_read`, read every tick for the launched process) and its last RSS reading
/// (`last`):
/// - `maxrss > hwm_read`: the process reached a new top after its last tick, so the
///   top of its last interval is `maxrss`, exact: a program that grows until it exits
///   ends its timeline at its true peak (its RSS at exit is that top unless it freed
///   memory again within the last interval);
/// - otherwise its last interval reached no new top and no kernel figure says where
///   its RSS ended: the last reading is carried to the exit (RSS at exit lies between 0
///   and `maxrss`).
pub fn exit_reading_bytes(maxrss: u64, hwm_read: u64, last: u64) -> u64 {
    if maxrss > hwm_read { maxrss } else { last }
}

/// Every this many ticks the sampler reads every member's VmHWM, not only those whose
/// RSS moved since the last tick (a burst freed back to the same size moves nothing).
const HWM_EVERY: u64 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmhwm_is_read_from_status() {
        let text = b"Name:\tx\nVmPeak:\t  10000 kB\nVmHWM:\t   2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_status_vmhwm(text), Some(2048 * 1024));
        assert_eq!(parse_status_vmhwm(b"Name:\tzombie\nState:\tZ\n"), None);
    }

    #[test]
    fn exit_reading_is_the_new_top_or_the_last_reading() {
        // Grew after the last tick: the exact high-water mark.
        assert_eq!(exit_reading_bytes(220, 180, 180), 220);
        // No new top since the last read: the last reading is carried to the exit.
        assert_eq!(exit_reading_bytes(256, 256, 144), 144);
    }

    #[test]
    fn loadavg_last_pid() {
        assert_eq!(
            parse_loadavg_last_pid("0.00 0.01 0.05 1/123 4567\n"),
            Some(4567)
        );
        assert_eq!(parse_loadavg_last_pid("0.00"), None);
    }

    #[test]
    fn statm_resident() {
        assert_eq!(
            parse_statm_resident(b"6123 321 200 10 0 500 0\n"),
            Some(321)
        );
        assert_eq!(parse_statm_resident(b"6123"), None);
        assert_eq!(parse_statm_resident(b"\xff\xfe"), None);
    }

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let s = "4242 (a) b (c)) S 4241 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 10000000 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        assert_eq!(parse_stat_ppid(s), Some(4241));
        assert!(parse_stat_ppid("garbage").is_none());
        assert!(parse_stat_ppid("1 (x) S").is_none());
    }

    fn build_touch256(dir: &Path) -> Option<PathBuf> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/touch256.c");
        let exe = dir.join("touch256");
        let st = std::process::Command::new("cc")
            .args(["-O1", "-g", "-fno-omit-frame-pointer", "-fno-inline", "-o"])
            .arg(&exe)
            .arg(&src)
            .status();
        match st {
            Ok(s) if s.success() => Some(exe),
            other => {
                eprintln!("skipping: cannot build touch256.c with cc: {other:?}");
                None
            }
        }
    }

    /// Ground truth by design: touch256 holds 256 MiB for 300 ms, then 128 MiB, then
    /// adds 16 MiB. The sampler must see the peak within 10% and the drop.
    #[test]
    fn sampler_sees_peak_and_drop_of_touch256() {
        let d = tempfile::tempdir().unwrap();
        let Some(exe) = build_touch256(d.path()) else {
            return;
        };
        let mut child = std::process::Command::new(&exe)
            .arg("fork")
            .spawn()
            .unwrap();
        let csv = d.path().join("rss.csv");
        let s = RssSampler::start(child.id(), Duration::from_millis(50), &csv).unwrap();
        assert!(child.wait().unwrap().success());
        std::thread::sleep(Duration::from_millis(60));
        let stats = s.stop().unwrap();
        let rows = read_rss_csv(&csv).unwrap();
        assert!(stats.ticks >= 10, "{stats:?}");
        // The forked helper (a descendant) was seen too.
        let pids: HashSet<u32> = rows.iter().map(|r| r.1).collect();
        assert!(pids.len() >= 2, "descendant not followed: {pids:?}");
        let main: Vec<(u64, u32, u64)> =
            rows.iter().copied().filter(|r| r.1 == child.id()).collect();
        let mib = 1u64 << 20;
        let (peak_t, peak) = main.iter().map(|r| (r.0, r.2)).max_by_key(|r| r.1).unwrap();
        assert!(
            peak as f64 >= 256.0 * 0.9 * mib as f64 && peak as f64 <= 256.0 * 1.1 * mib as f64,
            "peak {} MiB",
            peak / mib
        );
        // After the peak, a reading near 128 MiB (the unmapped half is gone) ...
        let after: Vec<u64> = main.iter().filter(|r| r.0 > peak_t).map(|r| r.2).collect();
        assert!(
            after.iter().any(|&r| r > 110 * mib && r < 150 * mib),
            "no drop to ~128 MiB after the peak: {:?}",
            after.iter().map(|r| r / mib).collect::<Vec<_>>()
        );
        // ... and the summed peak covers the tree.
        let (sum_peak, _) = summed_peak(&rows).unwrap();
        assert!(sum_peak >= peak);
    }

    #[test]
    fn missing_root_is_not_an_error() {
        let d = tempfile::tempdir().unwrap();
        let csv = d.path().join("rss.csv");
        // A pid that cannot exist (above pid_max).
        let s = RssSampler::start(u32::MAX - 1, Duration::from_millis(5), &csv).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let st = s.stop().unwrap();
        assert_eq!(st.rows, 0);
        assert!(st.ticks >= 2);
        assert!(read_rss_csv(&csv).unwrap().is_empty());
        // Refuses to overwrite.
        assert!(RssSampler::start(1, Duration::from_millis(5), &csv).is_err());
    }
}
