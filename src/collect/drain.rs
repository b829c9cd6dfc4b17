//! The drain loop: wait on the rings, copy their records into perf.data, count what
//! the kernel lost or throttled, note every mapped file, and decide when to stop
//! (target exit, signal, duration).

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::time::Instant;

use super::perf_data::{HostInfo, PerfDataWriter};
use super::sys::{self, RingBuffer, StopSignals};

use perf_event_open_sys::bindings::{
    PERF_RECORD_COMM, PERF_RECORD_LOST, PERF_RECORD_MISC_COMM_EXEC, PERF_RECORD_MISC_MMAP_BUILD_ID,
    PERF_RECORD_MISC_USER, PERF_RECORD_MMAP, PERF_RECORD_MMAP2, PERF_RECORD_SAMPLE,
    PERF_RECORD_THROTTLE,
};

// The misc bits as the record header's u16 holds them.
const MISC_USER: u16 = PERF_RECORD_MISC_USER as u16;
const MISC_MMAP_BUILD_ID: u16 = PERF_RECORD_MISC_MMAP_BUILD_ID as u16;
const MISC_COMM_EXEC: u16 = PERF_RECORD_MISC_COMM_EXEC as u16;

/// When to stop collecting.
pub struct StopWhen<'a> {
    /// The launched child: stop when it exits.
    pub child: Option<i32>,
    /// The attached process: stop when it is gone.
    pub attach_pid: Option<i32>,
    /// Stop at this instant (-d).
    pub deadline: Option<Instant>,
    /// SIGINT/SIGTERM/SIGHUP received by hwprof.
    pub signals: &'a StopSignals,
    /// Print less.
    pub quiet: bool,
    /// (python) The agents' link: their sampling events are added as they report.
    pub agents: Option<&'a mut crate::python::AgentLink>,
}

/// How collection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The launched child exited with this hwprof exit code.
    ChildExited(i32),
    /// Stopped by signal, duration, or the attached process ending.
    Stopped,
}

/// What the drain saw.
#[derive(Debug, Default)]
pub struct DrainStats {
    /// Samples the kernel dropped (PERF_RECORD_LOST).
    pub lost: u64,
    /// Throttle records.
    pub throttled: u64,
    /// Corrupt ring records skipped (with everything after them up to the head).
    pub corrupt_records: u64,
    /// Bytes of ring data skipped at corrupt records.
    pub corrupt_bytes: u64,
    /// Records written.
    pub records: u64,
    /// Every file mapped by the target, with the build id the kernel gave.
    pub mapped_files: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The launched child's peak RSS in bytes (`ru_maxrss` when it was reaped).
    pub child_maxrss: Option<u64>,
    /// When the launched child was reaped, CLOCK_MONOTONIC ns.
    pub child_reaped_ns: Option<u64>,
    /// (python) Pids that exec'd since the filler last looked.
    pub execs: Vec<u32>,
    /// (locks) Wait samples the agents copied themselves (no breakpoint) written, and
    /// those dropped (the collector fell behind, or no attr could hold them).
    pub agent_wait_samples: (u64, u64),
    /// The first and last sample time in perf.data (none after a write error: the
    /// file holds less than was written).
    pub sample_times: Option<(u64, u64)>,
}

/// The drain session of a collection over the rings of `opened`, writing into `writer`.
/// `agent_path`: the agents sample (the collector only tracks), so the filler samples
/// the processes they cannot enter; `agent_ring_pages`: the agents' ring size.
pub(super) fn start_session(
    opened: super::open::OpenedEvents,
    writer: PerfDataWriter,
    agent_path: Option<&std::path::Path>,
    agent_ring_pages: usize,
    memory_mode: bool,
) -> Session {
    let outputs: Vec<(u32, OwnedFd)> = opened
        .rings
        .iter()
        .zip(&opened.ring_cpus)
        .filter_map(|(r, &cpu)| Some((cpu, r.fd().try_clone().ok()?)))
        .collect();
    let filler = match (agent_path, opened.first_attr) {
        (Some(path), Some(attr)) => Some(super::fill::Filler::new(&attr, outputs, path)),
        _ => None,
    };
    // Memory mode: an agent samples major faults too, filed under our major-faults attr.
    let major_faults = opened.file_attrs.iter().position(|f| {
        // perf_event_attr bytes: type at 0, config at 8.
        let ty = f.attr.get(0..4).and_then(|b| b.try_into().ok());
        let config = f.attr.get(8..16).and_then(|b| b.try_into().ok());
        ty.map(u32::from_le_bytes) == Some(perf_event_open_sys::bindings::PERF_TYPE_SOFTWARE)
            && config.map(u64::from_le_bytes)
                == Some(u64::from(
                    perf_event_open_sys::bindings::PERF_COUNT_SW_PAGE_FAULTS_MAJ,
                ))
    });
    let mut session = Session::new(opened.rings, opened.redirected, writer);
    session.set_agent_ring_pages(agent_ring_pages);
    if memory_mode && let Some(i) = major_faults {
        session.set_agent_second_attr(i);
    }
    if let Some(f) = filler {
        session.set_filler(f);
    }
    session
}

/// The notices a drain's statistics call for: lost, corrupt and throttled samples.
pub(super) fn stats_notices(stats: &DrainStats) -> Vec<String> {
    let mut notices = Vec::new();
    if stats.lost > 0 {
        notices.push(format!(
            "{} samples lost: the ring buffer overflowed (lower -F or use --call-graph dwarf with fewer bytes)",
            stats.lost
        ));
    }
    if stats.corrupt_records > 0 {
        notices.push(format!(
            "{} corrupt ring records skipped ({} bytes of samples lost): a ring's memory was overwritten (an agent's ring is mapped in the target)",
            stats.corrupt_records, stats.corrupt_bytes
        ));
    }
    if stats.throttled > 0 {
        notices.push(format!(
            "the kernel throttled sampling {} times (kernel.perf_event_max_sample_rate)",
            stats.throttled
        ));
    }
    notices
}

/// A collection in progress.
pub struct Session {
    rings: Vec<Ring>,
    _redirected: Vec<OwnedFd>,
    writer: PerfDataWriter,
    stats: DrainStats,
    agent_ring_pages: usize,
    /// (python) Samples the processes no agent samples.
    filler: Option<super::fill::Filler>,
    /// Memory mode: the major-faults attr, under which an agent's second event per
    /// CPU (its major-fault twin) is filed.
    agent_second_attr: Option<usize>,
    /// (python) Per agent process, the CPUs it sent an event for.
    agent_cpus: std::collections::HashMap<u32, Vec<u32>>,
    /// (locks) The agents' wait-sample sockets (pid, read end), read at each pass.
    wait_sockets: Vec<(u32, OwnedFd)>,
    /// The buffer they are read into.
    wait_buf: Vec<u8>,

    /// Recording stopped because perf.data could not be written (disk full, EIO): why.
    stopped_by: Option<(String, Instant)>,
}

/// What a failed write means for the user ("disk full (ENOSPC)").
pub fn describe_write_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => "disk full (ENOSPC)".into(),
        Some(libc::EDQUOT) => "disk quota exceeded (EDQUOT)".into(),
        Some(libc::EIO) => "I/O error (EIO)".into(),
        Some(libc::EFBIG) => "file too large (EFBIG)".into(),
        _ => format!("write error ({e})"),
    }
}

impl Session {
    /// Start draining these rings into `writer`.
    pub fn new(rings: Vec<RingBuffer>, redirected: Vec<OwnedFd>, writer: PerfDataWriter) -> Self {
        Session {
            rings: rings.into_iter().map(|buf| Ring::new(buf, false)).collect(),
            _redirected: redirected,
            writer,
            stats: DrainStats::default(),
            agent_ring_pages: 16,
            filler: None,
            agent_second_attr: None,
            agent_cpus: std::collections::HashMap::new(),
            wait_sockets: Vec::new(),
            wait_buf: Vec::new(),

            stopped_by: None,
        }
    }

    /// Memory mode: file the agents' second event per CPU under this attr.
    pub fn set_agent_second_attr(&mut self, index: usize) {
        self.agent_second_attr = Some(index);
    }

    /// Data pages of each agent ring (16 by default: the agents' events only add the
    /// Python processes' samples to ours; more when they are the only samplers).
    pub fn set_agent_ring_pages(&mut self, pages: usize) {
        self.agent_ring_pages = pages.next_power_of_two().max(4);
    }

    /// (python) Watch execs and sample the processes no agent samples.
    pub fn set_filler(&mut self, filler: super::fill::Filler) {
        self.filler = Some(filler);
    }

    /// (python) The filler, at the end (its records go into the raw dir).
    pub fn take_filler(&mut self) -> Option<super::fill::Filler> {
        self.filler.take()
    }

    /// (python) Execs seen: open our events where no agent will sample; agents that
    /// did not report in time.
    fn fill(&mut self) -> std::io::Result<()> {
        let Some(f) = self.filler.as_mut() else {
            self.stats.execs.clear();
            return Ok(());
        };
        let mut ids = Vec::new();
        for pid in std::mem::take(&mut self.stats.execs) {
            ids.extend(f.exec_seen(pid));
        }
        ids.extend(f.tick());
        if !ids.is_empty() {
            self.writer.add_ids(0, &ids)?;
        }
        // A set-id program's mappings made before our events were on it.
        for (pid, id) in f.take_to_synthesize() {
            // Stamped now: after the fork and exec records of the process, which
            // would otherwise replace these mappings at finalize.
            let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
                .unwrap_or(0);
            synthesize_at(&mut self.writer, pid as i32, id, now)?;
        }
        Ok(())
    }

    /// The launched child's `ru_maxrss` and when it was reaped, once it was.
    pub fn child_exit(&self) -> Option<(u64, u64)> {
        Some((self.stats.child_maxrss?, self.stats.child_reaped_ns?))
    }

    /// Why recording stopped early (a write error), and when, if it did.
    pub fn stopped_by(&self) -> Option<(&str, Instant)> {
        self.stopped_by
            .as_ref()
            .map(|(why, at)| (why.as_str(), *at))
    }

    /// A write to perf.data failed: stop recording, keep what was written. perf.data's
    /// header still holds the data size of the last complete pass (it is rewritten only
    /// after a pass is flushed), so the file is valid up to there. The rings (and with
    /// them the events, inherited copies included) are closed: the target runs on,
    /// unsampled, and hwprof waits for it as before.
    fn check<T>(&mut self, r: std::io::Result<T>) {
        let Err(e) = r else { return };
        if self.stopped_by.is_some() {
            return;
        }
        let why = format!("{} writing perf.data", describe_write_error(&e));
        // Said even with -q: the profile will be cut short.
        eprintln!(
            "hwprof: {why}: recording stopped; the target runs on, and what was written so far is kept (finalize marks the run incomplete)"
        );
        self.stopped_by = Some((why, Instant::now()));
        self.rings.clear();
        self._redirected.clear();
        self.filler = None;
    }

    /// One pass over every ring. Returns the records copied.
    pub fn drain_once(&mut self) -> std::io::Result<usize> {
        if self.stopped_by.is_some() {
            return Ok(0);
        }
        let mut n = 0;
        let mut err = None;
        let Session {
            rings,
            writer,
            stats,
            ..
        } = self;
        for ring in rings.iter_mut() {
            let before = ring.buf.corrupt();
            n += ring.buf.drain(|ty, misc, body| {
                note_record(stats, ty, misc, body);
                if err.is_none()
                    && let Err(e) = writer.write_record(ty, misc, body)
                {
                    err = Some(e);
                }
            });
            let after = ring.buf.corrupt();
            stats.corrupt_records += after.0 - before.0;
            stats.corrupt_bytes += after.1 - before.1;
        }
        if let Some(e) = err {
            return Err(e);
        }
        // An idle pass (the target sleeping) writes nothing: no empty rounds, no header.
        if n > 0 {
            writer.finish_round()?;
        }
        Ok(n)
    }

    /// Drain until a stop condition holds.
    pub fn run(&mut self, mut stop: StopWhen) -> std::io::Result<Ended> {
        let mut forwarded = 0;
        // Readable when the launched process exits: the loop then ends without waiting
        // out its poll timeout.
        let exited = stop.child.and_then(sys::pidfd_open);
        loop {
            {
                // A ring whose event hung up (its task exited or exec'd, no inherited
                // copies left) polls ready forever: it is drained, not polled.
                let live: Vec<usize> = (0..self.rings.len())
                    .filter(|&i| !self.rings[i].hung_up)
                    .collect();
                let mut fds: Vec<&OwnedFd> = live.iter().map(|&i| self.rings[i].buf.fd()).collect();
                fds.extend(exited.as_ref());
                let hup = sys::poll_readable(&fds, if stop.agents.is_some() { 10 } else { 50 });
                for (&i, h) in live.iter().zip(hup) {
                    self.rings[i].hung_up |= h;
                }
            }
            if let Some(link) = stop.agents.as_deref_mut() {
                let r = self.add_agent_events(link);
                self.check(r);
            }
            let r = self.drain_once();
            self.check(r);
            let r = self.fill();
            self.check(r);
            // An agent's ring that hung up has nothing more to come: unmapping it
            // returns its locked pages to the budget of the processes still starting.
            self.rings.retain(|r| !(r.hung_up && r.from_agent));
            if let Some(pid) = stop.child
                && let Some((code, maxrss)) = sys::try_wait_maxrss(pid)
            {
                self.stats.child_maxrss = maxrss;
                self.stats.child_reaped_ns = Some(crate::util::monotonic_ns());
                let r = self.drain_once();
                self.check(r);
                return Ok(Ended::ChildExited(code));
            }
            if let Some(pid) = stop.attach_pid
                && !crate::util::proc::alive(pid)
            {
                let r = self.drain_once();
                self.check(r);
                return Ok(Ended::Stopped);
            }
            if stop.deadline.is_some_and(|d| Instant::now() >= d) {
                let r = self.drain_once();
                self.check(r);
                return Ok(Ended::Stopped);
            }
            let received = stop.signals.count();
            if received > forwarded {
                forwarded = received;
                match stop.child {
                    // Launch: the target decides when it is done; a signal sent to hwprof
                    // alone (not by the terminal, which signals both) is passed on, and a
                    // second one kills it.
                    Some(pid) => {
                        let sig = stop.signals.last_signal();
                        if received >= 2 {
                            sys::kill(pid, libc::SIGKILL);
                        } else if !stop.signals.last_from_terminal() {
                            sys::kill(pid, sig);
                        }
                        if !stop.quiet && received == 1 {
                            eprintln!("hwprof: waiting for the target to exit (again to kill it)");
                        }
                    }
                    None => {
                        let r = self.drain_once();
                        self.check(r);
                        return Ok(Ended::Stopped);
                    }
                }
            }
        }
    }

    /// (python) Maps the rings of sampling events opened by agents, enables them, and
    /// registers their ids under attr 0 (they sample with that attr), noting the ids for finalize.
    pub fn add_agent_events(&mut self, link: &mut crate::python::AgentLink) -> std::io::Result<()> {
        for ev in link.poll_new_events() {
            if self.stopped_by.is_some() {
                continue; // recording stopped: the agent's events are closed unused
            }
            if let Some(f) = self.filler.as_mut() {
                f.agent_reported(ev.pid);
            }
            let mut ids = Vec::new();
            let mut second = Vec::new();
            for (cpu, fd) in ev.fds {
                let Ok(id) = sys::event_id(&fd) else { continue };
                // A CPU seen before for this process: the agent's major-fault twin.
                let seen = self.agent_cpus.entry(ev.pid).or_default();
                let twin = seen.contains(&cpu) && self.agent_second_attr.is_some();
                seen.push(cpu);
                match super::open::map_ring(fd, self.agent_ring_pages) {
                    Ok(ring) => {
                        // The agent opens its events disabled; sampling starts now that
                        // the ring exists.
                        if sys::enable(ring.fd()).is_ok() {
                            if twin { second.push(id) } else { ids.push(id) }
                        }
                        self.rings.push(Ring::new(ring, true));
                    }
                    Err(e) => eprintln!("hwprof: python agent of {}: {e}", ev.pid),
                }
            }
            self.writer.add_ids(0, &ids)?;
            if let Some(a) = self.agent_second_attr.filter(|_| !second.is_empty()) {
                self.writer.add_ids(a, &second)?;
                ids.extend(second);
            }
            link.note_event_ids(ev.pid, &ids, ev.captures);
        }
        self.write_agent_wait_samples(link)
    }

    /// (locks) The agents' own wait samples, as samples of the mode's attr (attr 0,
    /// under which the breakpoints' samples were filed) with one of its ids, read from
    /// their sockets at the start of the pass and written before this pass's rings:
    /// each was sent before the pass began, so after what the previous rounds hold
    /// (perf's round order, `raw::records`).
    fn write_agent_wait_samples(
        &mut self,
        link: &mut crate::python::AgentLink,
    ) -> std::io::Result<()> {
        self.wait_sockets.extend(link.take_wait_sockets());
        let mut samples = Vec::new();
        let mut refused = 0;
        let Session {
            wait_sockets,
            wait_buf,
            ..
        } = self;
        // Bounded per pass (a socket holds what its send buffer does: ~100 samples of
        // 4 KiB), so a peer that keeps sending cannot hold the drain.
        wait_sockets.retain(|(peer, fd)| {
            crate::python::wait_samples::read_socket(
                fd,
                *peer,
                wait_buf,
                512,
                &mut samples,
                &mut refused,
            )
        });
        samples.sort_by_key(|w| w.time);
        let mut written = 0;
        let mut dropped = refused;
        if let Some(attr) = self.writer.attrs().first().cloned()
            && let Some(&id) = attr.ids.first()
        {
            for w in &samples {
                match crate::python::wait_samples::sample_body(&attr.attr, id, w) {
                    Some(body) => {
                        self.writer
                            .write_record(PERF_RECORD_SAMPLE, MISC_USER, &[&body])?;
                        written += 1;
                    }
                    None => dropped += 1,
                }
            }
        } else {
            dropped += samples.len() as u64;
        }
        self.stats.agent_wait_samples.0 += written;
        self.stats.agent_wait_samples.1 += dropped;
        Ok(())
    }

    /// Write the feature sections and return what was seen.
    /// After a write error (see [`Session::stopped_by`]) nothing more is written.
    pub fn finish(mut self, host: &HostInfo) -> std::io::Result<DrainStats> {
        if self.stopped_by.is_some() {
            self.stats.records = self.writer.records();
            return Ok(self.stats);
        }
        self.drain_once()?;
        self.stats.records = self.writer.records();
        self.stats.sample_times = self.writer.sample_times();
        self.writer.finish(host)?;
        Ok(self.stats)
    }
}

/// A ring being drained.
struct Ring {
    buf: RingBuffer,
    /// Opened by an in-process agent (nothing else writes into it).
    from_agent: bool,
    /// Its event hung up: no new data will come from its own task.
    hung_up: bool,
}

impl Ring {
    fn new(buf: RingBuffer, from_agent: bool) -> Ring {
        Ring {
            buf,
            from_agent,
            hung_up: false,
        }
    }
}

fn read_u64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// Bookkeeping on the few record types the collector cares about.
fn note_record(stats: &mut DrainStats, ty: u32, misc: u16, parts: &[&[u8]]) {
    match ty {
        PERF_RECORD_LOST => {
            let body = join(parts);
            stats.lost += read_u64(&body, 8);
        }
        PERF_RECORD_THROTTLE => stats.throttled += 1,
        PERF_RECORD_COMM if misc & MISC_COMM_EXEC != 0 => {
            let body = join(parts);
            if let Some(pid) = body.get(..4).and_then(|b| b.try_into().ok()) {
                // Bounded: the filler takes them every pass.
                if stats.execs.len() < 65536 {
                    stats.execs.push(u32::from_le_bytes(pid));
                }
            }
        }
        PERF_RECORD_MMAP | PERF_RECORD_MMAP2 => {
            let body = join(parts);
            let name_off = if ty == PERF_RECORD_MMAP { 32 } else { 64 };
            let Some(rest) = body.get(name_off..) else {
                return;
            };
            let name: Vec<u8> = rest.iter().take_while(|&&c| c != 0).copied().collect();
            if name.first() != Some(&b'/') {
                return; // [vdso], [heap], anonymous
            }
            let build_id = (ty == PERF_RECORD_MMAP2 && misc & MISC_MMAP_BUILD_ID != 0)
                .then(|| {
                    // pid, tid, addr, len, pgoff (32 bytes), then u8 size, 3 reserved, id[20].
                    let size = *body.get(32)? as usize;
                    body.get(36..36 + size.min(20)).map(|b| b.to_vec())
                })
                .flatten();
            let entry = stats.mapped_files.entry(name).or_insert(None);
            if entry.is_none() {
                *entry = build_id;
            }
        }
        _ => {}
    }
}

fn join<'a>(parts: &[&'a [u8]]) -> std::borrow::Cow<'a, [u8]> {
    match parts {
        [one] => std::borrow::Cow::Borrowed(one),
        _ => std::borrow::Cow::Owned(parts.concat()),
    }
}

/// For `-p`: describe what the process already has mapped and its threads' names, as
/// perf does, since the kernel only reports what happens after the events open.
pub fn synthesize_existing(
    w: &mut PerfDataWriter,
    pid: i32,
    id: u64,
    _attr: &[u8],
) -> std::io::Result<()> {
    synthesize_at(w, pid, id, 0)
}

/// [`synthesize_existing`] with the records stamped `time` (CLOCK_MONOTONIC ns).
pub fn synthesize_at(w: &mut PerfDataWriter, pid: i32, id: u64, time: u64) -> std::io::Result<()> {
    // sample_id_all trailer for IDENTIFIER|TID|TIME|CPU: pid, tid, time, cpu, res, id.
    let trailer = |tid: u32| {
        let mut t = Vec::with_capacity(32);
        t.extend_from_slice(&(pid as u32).to_le_bytes());
        t.extend_from_slice(&tid.to_le_bytes());
        t.extend_from_slice(&time.to_le_bytes());
        t.extend_from_slice(&0u64.to_le_bytes());
        t.extend_from_slice(&id.to_le_bytes());
        t
    };
    for tid in crate::util::proc::threads(pid) {
        let comm = crate::util::proc::thread_name(pid, tid);
        let mut body = Vec::new();
        body.extend_from_slice(&(pid as u32).to_le_bytes());
        body.extend_from_slice(&(tid as u32).to_le_bytes());
        body.extend_from_slice(&padded_cstr(comm.trim_end().as_bytes()));
        body.extend_from_slice(&trailer(tid as u32));
        w.write_record(PERF_RECORD_COMM, MISC_USER, &[&body])?;
    }
    let maps = procfs::process::Process::new(pid)
        .and_then(|p| p.maps())
        .map(|m| m.0)
        .unwrap_or_default();
    for m in maps {
        use procfs::process::{MMPermissions, MMapPath};
        use std::os::unix::ffi::OsStrExt;
        let path: &[u8] = match &m.pathname {
            MMapPath::Path(p) => p.as_os_str().as_bytes(),
            MMapPath::Vdso => b"[vdso]",
            _ => continue,
        };
        if !m.perms.contains(MMPermissions::EXECUTE) {
            continue;
        }
        let (start, end) = m.address;
        let mut body = Vec::new();
        body.extend_from_slice(&(pid as u32).to_le_bytes());
        body.extend_from_slice(&(pid as u32).to_le_bytes());
        body.extend_from_slice(&start.to_le_bytes());
        body.extend_from_slice(&end.saturating_sub(start).to_le_bytes());
        body.extend_from_slice(&m.offset.to_le_bytes());
        body.extend_from_slice(&(m.dev.0 as u32).to_le_bytes());
        body.extend_from_slice(&(m.dev.1 as u32).to_le_bytes());
        body.extend_from_slice(&m.inode.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&(libc::PROT_READ | libc::PROT_EXEC).to_le_bytes());
        body.extend_from_slice(&(libc::MAP_PRIVATE).to_le_bytes());
        body.extend_from_slice(&padded_cstr(path));
        body.extend_from_slice(&trailer(pid as u32));
        w.write_record(PERF_RECORD_MMAP2, MISC_USER, &[&body])?;
    }
    w.finish_round()
}

fn padded_cstr(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v.resize(v.len().div_ceil(8) * 8, 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmap2_build_ids_are_noted() {
        let mut body = vec![0u8; 64];
        body[32] = 20;
        body[36..56].copy_from_slice(&[7u8; 20]);
        body.extend_from_slice(b"/bin/x\0\0");
        let mut s = DrainStats::default();
        note_record(
            &mut s,
            PERF_RECORD_MMAP2,
            MISC_MMAP_BUILD_ID,
            &[&body[..10], &body[10..]],
        );
        assert_eq!(
            s.mapped_files.get(b"/bin/x".as_slice()),
            Some(&Some(vec![7u8; 20]))
        );
    }
}
