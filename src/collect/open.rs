//! Opening the sampling events: one per CPU per event on the target (with `inherit`,
//! so threads and forked children are followed), falling back from hardware events the
//! machine lacks to their software replacement, and turning kernel errors into
//! actionable messages. [`open_events`] opens a collection's whole set: counter-group
//! members after their leader, one ring per CPU that the other events redirect into.

use std::io;
use std::os::fd::OwnedFd;

use super::perf_data::FileAttr;
use super::plan::ChosenEventRequest;
use super::sys::{self, PerfEventAttr};
use super::{CallGraph, CollectError, io_err, notice};
use crate::events::{EventKind, EventSpec};
use crate::manifest::GroupRecord;

/// Errors opening events.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Permission denied.
    #[error(
        "cannot open event '{event}': permission denied ({source}); kernel.perf_event_paranoid is {paranoid}. Profiling your own processes needs perf_event_paranoid <= 2 (sysctl -w kernel.perf_event_paranoid=2) or CAP_PERFMON; attaching with -p also needs the right to ptrace the target (same user, and kernel.yama.ptrace_scope 0 or the target a descendant)"
    )]
    Permission {
        /// The event.
        event: String,
        /// The kernel's error.
        source: io::Error,
        /// perf_event_paranoid as read.
        paranoid: String,
    },
    /// The event does not exist here and has no fallback.
    #[error(
        "cannot open event '{event}': {source}; this machine does not support it (no hardware PMU?). `hwprof list-events` shows what it offers"
    )]
    Unsupported {
        /// The event.
        event: String,
        /// The kernel's error.
        source: io::Error,
    },
    /// The target disappeared.
    #[error("cannot open events on pid {pid}: no such process")]
    NoProcess {
        /// The pid.
        pid: i32,
    },
    /// Any other failure.
    #[error("cannot open event '{event}': {source}")]
    Other {
        /// The event.
        event: String,
        /// The kernel's error.
        source: io::Error,
    },
}

/// How the events are opened.
#[derive(Clone, Debug)]
pub struct OpenConfig {
    /// Sampling frequency for frequency-sampled events.
    pub freq: u64,
    /// Stacks.
    pub call_graph: CallGraph,
    /// Launch (enable on exec) or attach (enabled now).
    pub enable_on_exec: bool,
    /// Exclude kernel samples (ordinary users at paranoid 2).
    pub exclude_kernel: bool,
    /// Emit context-switch records (locks mode).
    pub context_switch: bool,
    /// Locks mode without kernel samples: its `context-switches` event can never sample
    /// (a switch happens in the kernel, excluded), so its kernel counterpart is a dummy
    /// twin that carries the switch and tracking records alone, as with
    /// `tracking_only` (the kernel then skips a software event's work at each switch:
    /// docs/performance.md, "locks, 17o").
    pub switches_only: bool,
}

/// The attr for one event. `tracking` adds mmap/comm/task records (set on exactly one
/// event per CPU, as perf does).
pub fn build_attr(spec: &EventSpec, cfg: &OpenConfig, tracking: bool) -> PerfEventAttr {
    use perf_event_open_sys::bindings as b;
    let mut a = sys::new_attr();
    a.type_ = spec.type_;
    a.config = spec.config;
    a.__bindgen_anon_3.config1 = spec.config1;
    a.__bindgen_anon_4.config2 = spec.config2;
    let mut st = b::PERF_SAMPLE_IDENTIFIER
        | b::PERF_SAMPLE_IP
        | b::PERF_SAMPLE_TID
        | b::PERF_SAMPLE_TIME
        | b::PERF_SAMPLE_CPU
        | b::PERF_SAMPLE_PERIOD;
    match cfg.call_graph {
        CallGraph::None => {}
        CallGraph::Fp => st |= b::PERF_SAMPLE_CALLCHAIN,
        CallGraph::Dwarf(bytes) => {
            st |= b::PERF_SAMPLE_CALLCHAIN | b::PERF_SAMPLE_REGS_USER | b::PERF_SAMPLE_STACK_USER;
            a.set_exclude_callchain_user(1);
            a.sample_regs_user = sys::X86_64_REGS_MASK;
            a.sample_stack_user = bytes;
        }
    }
    a.sample_type = st as u64;
    // Tracepoints carry their fields (perf record sets it too, `perf script` prints
    // them); locks mode's wakeups: the woken thread is in the raw data.
    if spec.type_ == b::PERF_TYPE_TRACEPOINT {
        a.sample_type |= b::PERF_SAMPLE_RAW as u64;
    }
    // Time and hardware events sample at a frequency; counts of discrete events (faults,
    // switches, tracepoints) sample every occurrence, so weights are exact. A hardware
    // event with its own period (LLC misses every 10007, a perfmon SampleAfterValue, a
    // `period=` term) samples by that period, as perf does for `period=`.
    let by_frequency = spec.time_based || (spec.kind == EventKind::Hardware && spec.period <= 1);
    // Precise IPs (PEBS) where the spec asks; open_per_cpu lowers it until accepted.
    a.set_precise_ip(u64::from(spec.precise.min(3)));
    if by_frequency {
        a.set_freq(1);
        a.__bindgen_anon_1.sample_freq = cfg.freq.max(1);
    } else {
        a.__bindgen_anon_1.sample_period = spec.period.max(1);
        // A software event with PERF_SAMPLE_PERIOD samples every occurrence whatever
        // its period (kernel perf_swevent_event): without it, one in `period` is
        // sampled, and finalize weighs each sample by the attr's period.
        if spec.period > 1 && spec.type_ == b::PERF_TYPE_SOFTWARE {
            a.sample_type &= !(b::PERF_SAMPLE_PERIOD as u64);
        }
    }
    // Page faults: the faulting address and the size of the page it now maps (a
    // transparent huge page weighs 2 MiB, not 4 KiB). Linux 5.11+; open_on_with drops
    // it on older kernels.
    if is_page_fault_event(spec) {
        a.sample_type |= (b::PERF_SAMPLE_ADDR | b::PERF_SAMPLE_DATA_PAGE_SIZE) as u64;
        // The kernel part of a fault's stack is always the fault handler: not walked.
        a.set_exclude_callchain_kernel(1);
    }
    a.set_disabled(u64::from(cfg.enable_on_exec));
    a.set_enable_on_exec(u64::from(cfg.enable_on_exec));
    a.set_inherit(1);
    a.set_sample_id_all(1);
    a.set_exclude_kernel(u64::from(cfg.exclude_kernel));
    a.set_exclude_hv(1);
    a.set_use_clockid(1);
    a.clockid = libc::CLOCK_MONOTONIC;
    a.sample_max_stack = crate::raw::MAX_CALLCHAIN_FRAMES;
    a.set_watermark(1);
    if tracking {
        a.set_mmap(1);
        a.set_mmap2(1);
        a.set_comm(1);
        a.set_comm_exec(1);
        a.set_task(1);
        a.set_build_id(1);
        // perf report unwinds DWARF stacks by reading .eh_frame_hdr and data through the
        // non-executable mappings too, as `perf record --call-graph dwarf` records them.
        a.set_mmap_data(u64::from(matches!(cfg.call_graph, CallGraph::Dwarf(_))));
        a.set_context_switch(u64::from(cfg.context_switch));
    }
    a
}

const DATA_PAGE_SIZE: u64 = perf_event_open_sys::bindings::PERF_SAMPLE_DATA_PAGE_SIZE as u64;

/// Whether `spec` counts page faults (memory mode's events).
pub fn is_page_fault_event(spec: &EventSpec) -> bool {
    use perf_event_open_sys::bindings as b;
    spec.type_ == b::PERF_TYPE_SOFTWARE
        && [
            b::PERF_COUNT_SW_PAGE_FAULTS,
            b::PERF_COUNT_SW_PAGE_FAULTS_MIN,
            b::PERF_COUNT_SW_PAGE_FAULTS_MAJ,
        ]
        .iter()
        .any(|&c| spec.config == c as u64)
}

/// Open `attr` on every CPU for `pid`. Retries without the build-id bit on kernels that
/// predate it, and with a lower `precise_ip` while the kernel refuses the level asked
/// (EINVAL/EOPNOTSUPP), down to 0, as perf does; `attr` keeps what was accepted.
pub fn open_per_cpu(
    attr: &mut PerfEventAttr,
    name: &str,
    pid: i32,
    cpus: &[u32],
) -> Result<Vec<(u32, OwnedFd)>, OpenError> {
    let group: Vec<(u32, Option<&OwnedFd>)> = cpus.iter().map(|&c| (c, None)).collect();
    open_on(attr, name, pid, &group)
}

/// Open `attr` for `pid` on each (cpu, group leader) given; see [`open_per_cpu`].
pub fn open_on(
    attr: &mut PerfEventAttr,
    name: &str,
    pid: i32,
    cpus: &[(u32, Option<&OwnedFd>)],
) -> Result<Vec<(u32, OwnedFd)>, OpenError> {
    open_on_with(attr, name, pid, cpus, sys::perf_event_open)
}

/// [`open_on`] with the system call given (tests replay the kernel's answers).
fn open_on_with(
    attr: &mut PerfEventAttr,
    name: &str,
    pid: i32,
    cpus: &[(u32, Option<&OwnedFd>)],
    mut open: impl FnMut(&PerfEventAttr, i32, i32, Option<&OwnedFd>) -> io::Result<OwnedFd>,
) -> Result<Vec<(u32, OwnedFd)>, OpenError> {
    let mut out = Vec::with_capacity(cpus.len());
    for &(cpu, leader) in cpus {
        let fd = loop {
            match open(attr, pid, cpu as i32, leader) {
                Ok(fd) => break fd,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && attr.build_id() == 1 => {
                    attr.set_build_id(0);
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::EINVAL)
                        && attr.sample_type & DATA_PAGE_SIZE != 0 =>
                {
                    attr.sample_type &= !DATA_PAGE_SIZE;
                }
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP))
                        && attr.precise_ip() > 0 =>
                {
                    attr.set_precise_ip(attr.precise_ip() - 1);
                }
                Err(e) => return Err(classify(name, pid, e)),
            }
        };
        out.push((cpu, fd));
    }
    Ok(out)
}

/// The attr of a counter-group member: counts `spec` with the leader's sample and read
/// formats (perf requires one layout per file), never samples, follows the leader's
/// scheduling (`disabled = 0`: it counts whenever the leader is enabled).
pub fn member_attr(spec: &EventSpec, leader: &PerfEventAttr) -> PerfEventAttr {
    let mut a = sys::new_attr();
    a.type_ = spec.type_;
    a.config = spec.config;
    a.__bindgen_anon_3.config1 = spec.config1;
    a.__bindgen_anon_4.config2 = spec.config2;
    a.sample_type = leader.sample_type;
    a.read_format = leader.read_format;
    a.sample_regs_user = leader.sample_regs_user;
    a.sample_stack_user = leader.sample_stack_user;
    a.sample_max_stack = leader.sample_max_stack;
    a.set_inherit(leader.inherit());
    a.set_sample_id_all(1);
    a.set_exclude_kernel(leader.exclude_kernel());
    a.set_exclude_hv(1);
    a.set_exclude_callchain_user(leader.exclude_callchain_user());
    a.set_use_clockid(leader.use_clockid());
    a.clockid = leader.clockid;
    a
}

/// Make `attr` a group leader that reads its group with every sample.
pub fn make_group_leader(attr: &mut PerfEventAttr) {
    attr.sample_type |= perf_event_open_sys::bindings::PERF_SAMPLE_READ as u64;
    attr.read_format = crate::events::group::GROUP_READ_FORMAT;
}

/// Turn an errno into the error a user can act on.
pub fn classify(name: &str, pid: i32, e: io::Error) -> OpenError {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => OpenError::Permission {
            event: name.to_string(),
            source: e,
            paranoid: sys::paranoid_level()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into()),
        },
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) | Some(libc::ENODEV) => {
            OpenError::Unsupported {
                event: name.to_string(),
                source: e,
            }
        }
        Some(libc::ESRCH) => OpenError::NoProcess { pid },
        _ => OpenError::Other {
            event: name.to_string(),
            source: e,
        },
    }
}

/// Whether an open error means "this machine lacks the event" (so a fallback applies).
pub fn is_missing_hardware(e: &OpenError) -> bool {
    matches!(e, OpenError::Unsupported { .. })
}

/// A sampling event opened on every CPU for one thread (or the launched process).
pub struct OpenedLeader {
    /// The attr as the kernel accepted it (precise level, group read or not).
    pub attr: PerfEventAttr,
    /// Per CPU descriptors.
    pub fds: Vec<(u32, OwnedFd)>,
    /// Why a requested counter group could not be read per sample, if it could not.
    pub group_refused: Option<String>,
}

/// Open `spec` as a sampling event on every CPU for `pid`; with `group`, as a group
/// leader whose samples read the group (PERF_SAMPLE_READ). Kernels before 6.12 refuse
/// `inherit` with PERF_SAMPLE_READ (EINVAL): the leader is then opened alone and
/// `group_refused` says why; the run never fails for it.
pub fn open_leader(
    spec: &EventSpec,
    cfg: &OpenConfig,
    tracking: bool,
    group: bool,
    pid: i32,
    cpus: &[u32],
) -> Result<OpenedLeader, OpenError> {
    let mut attr = build_attr(spec, cfg, tracking);
    if group {
        make_group_leader(&mut attr);
    }
    match open_per_cpu(&mut attr, &spec.name, pid, cpus) {
        Ok(fds) => Ok(OpenedLeader {
            attr,
            fds,
            group_refused: None,
        }),
        Err(OpenError::Other { source, .. })
            if group && source.raw_os_error() == Some(libc::EINVAL) =>
        {
            let mut attr = build_attr(spec, cfg, tracking);
            let fds = open_per_cpu(&mut attr, &spec.name, pid, cpus)?;
            Ok(OpenedLeader {
                attr,
                fds,
                group_refused: Some(format!(
                    "the kernel refused to read the counter group with each sample of an inherited event (EINVAL; Linux 6.12 or later allows it): sampling {} alone",
                    spec.name
                )),
            })
        }
        Err(e) => Err(e),
    }
}

/// A counter-group member opened beside every leader descriptor.
pub struct OpenedMember {
    /// As requested.
    pub requested: String,
    /// What was opened.
    pub spec: EventSpec,
    /// Its attr (for perf.data).
    pub attr: PerfEventAttr,
    /// One per leader descriptor.
    pub fds: Vec<OwnedFd>,
}

/// Open each member in the group of every leader descriptor (`leaders`: per thread,
/// its per-CPU leader fds). A member the machine lacks, or that the kernel refuses,
/// is dropped: returned with the reason, never an error.
pub fn open_members(
    members: &[(String, EventSpec)],
    leader_attr: &PerfEventAttr,
    leaders: &[(i32, &[(u32, OwnedFd)])],
) -> (Vec<OpenedMember>, Vec<(String, String)>) {
    let mut opened = Vec::new();
    let mut dropped = Vec::new();
    'members: for (requested, spec) in members {
        let mut attr = member_attr(spec, leader_attr);
        let mut fds = Vec::new();
        for (tid, per_cpu) in leaders {
            let on: Vec<(u32, Option<&OwnedFd>)> =
                per_cpu.iter().map(|(c, fd)| (*c, Some(fd))).collect();
            match open_on(&mut attr, &spec.name, *tid, &on) {
                Ok(f) => fds.extend(f.into_iter().map(|(_, fd)| fd)),
                Err(OpenError::NoProcess { .. }) if leaders.len() > 1 => continue,
                Err(e) => {
                    let why = match &e {
                        OpenError::Unsupported { source, .. } => format!(
                            "not available here ({}; no hardware PMU?)",
                            source
                                .raw_os_error()
                                .map(errno_short)
                                .unwrap_or_else(|| source.to_string())
                        ),
                        other => other.to_string(),
                    };
                    dropped.push((spec.name.clone(), why));
                    continue 'members;
                }
            }
        }
        opened.push(OpenedMember {
            requested: requested.clone(),
            spec: spec.clone(),
            attr,
            fds,
        });
    }
    (opened, dropped)
}

fn errno_short(n: i32) -> String {
    match n {
        libc::ENOENT => "ENOENT".into(),
        libc::EOPNOTSUPP => "EOPNOTSUPP".into(),
        libc::ENODEV => "ENODEV".into(),
        libc::EINVAL => "EINVAL".into(),
        n => std::io::Error::from_raw_os_error(n).to_string(),
    }
}

/// "ENOENT" rather than "No such file or directory (os error 2)" in notices.
fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) if n != libc::EINVAL => errno_short(n),
        _ => e.to_string(),
    }
}

/// An event with what it replaced.
pub(super) struct ChosenEvent {
    /// The event opened.
    pub(super) spec: EventSpec,
    /// As requested.
    pub(super) requested: String,
    /// What replaced what, and why (empty: as requested).
    pub(super) note: String,
    /// The precise_ip level opened, for events that asked for one.
    pub(super) precise_ip: Option<u8>,
}

/// The events as opened: what perf.data and the manifest say of them, and their rings.
pub(super) struct OpenedEvents {
    /// Each event opened (members after their leader).
    pub(super) chosen: Vec<ChosenEvent>,
    /// perf.data's attrs, in the same order.
    pub(super) file_attrs: Vec<FileAttr>,
    /// One ring per CPU.
    pub(super) rings: Vec<sys::RingBuffer>,
    /// Events whose output goes to another ring: kept open for them to live.
    pub(super) redirected: Vec<std::os::fd::OwnedFd>,
    /// The id of the tracking event (mmap, comm, task records).
    pub(super) tracking_id: u64,
    /// Counter groups as opened.
    pub(super) groups: Vec<GroupRecord>,
    /// The same for perf.data's GROUP_DESC: (name, leader attr index, events).
    pub(super) perf_groups: Vec<(String, u32, u32)>,
    /// The CPU of each ring.
    pub(super) ring_cpus: Vec<u32>,
    /// The first event's sampling attr as opened.
    pub(super) first_attr: Option<perf_event_open_sys::bindings::perf_event_attr>,
}

/// Opens the wanted events, the first one also tracking. `tracking_only`: the first
/// event's kernel counterpart is a `dummy` event with the same attributes (mmap, comm and
/// task records, no samples) while perf.data describes the sampling event the agents
/// open with those attributes.
pub(super) fn open_events(
    wanted: &[ChosenEventRequest],
    cfg: &OpenConfig,
    threads: &[i32],
    cpus: &[u32],
    tracking_only: bool,
    quiet: bool,
    notices: &mut Vec<String>,
) -> Result<OpenedEvents, CollectError> {
    let mut chosen = Vec::new();
    let mut file_attrs = Vec::new();
    // One ring per CPU: the first fd opened on a CPU owns it, the others (other events,
    // other threads when attaching) redirect their output into it.
    let mut slot_leaders: Vec<(u32, std::os::fd::OwnedFd)> = Vec::new();
    let mut others: Vec<std::os::fd::OwnedFd> = Vec::new();
    let pages = super::plan::ring_pages(cfg.call_graph);
    let mut rings = Vec::new();
    let mut ring_cpus = Vec::new();
    let mut first_attr = None;
    let mut groups = Vec::new();
    let mut perf_groups = Vec::new();
    for (i, w) in wanted.iter().enumerate() {
        let tracking = i == 0;
        let mut spec = w.spec.clone();
        let mut note = String::new();
        let mut fds = Vec::new();
        // Counter-group members read with each sample of this event.
        let mut members = w.members.clone();
        let mut group_note = String::new();
        for &tid in threads {
            let opened = match open_leader(&spec, cfg, tracking, !members.is_empty(), tid, cpus) {
                Ok(o) => o,
                Err(e) => {
                    // The first thread tells whether the machine lacks the event.
                    let fallback = w
                        .fallback
                        .clone()
                        .filter(|_| fds.is_empty() && is_missing_hardware(&e));
                    match fallback {
                        Some(fb) => {
                            note = format!(
                                "{} is not available here (no hardware PMU: {}); sampling {} instead",
                                spec.name,
                                match &e {
                                    OpenError::Unsupported { source, .. } => errno_name(source),
                                    _ => String::new(),
                                },
                                fb.name
                            );
                            notice(quiet, notices, note.clone());
                            spec = fb;
                            // hotspots' default group needs the PMU; a user's group goes on.
                            if !w.group_on_fallback {
                                members.clear();
                            }
                            open_leader(&spec, cfg, tracking, !members.is_empty(), tid, cpus)?
                        }
                        // A thread ended while we opened the others.
                        None if matches!(e, OpenError::NoProcess { .. }) && threads.len() > 1 => {
                            continue;
                        }
                        None => return Err(e.into()),
                    }
                }
            };
            if let Some(why) = opened.group_refused {
                group_note = why.clone();
                notice(quiet, notices, format!("counter group: {why}"));
                members.clear();
            }
            fds.push((tid, opened.attr, opened.fds));
        }
        let Some(attr) = fds.first().map(|f| f.1) else {
            return Err(OpenError::NoProcess {
                pid: threads.first().copied().unwrap_or(0),
            }
            .into());
        };
        if tracking {
            first_attr = Some(attr);
        }
        if tracking && (tracking_only || cfg.switches_only) {
            // Opened above as the sampling event so that fallbacks apply; never enabled
            // (enable_on_exec), these are replaced by the tracking-only twins.
            let mut tracked = Vec::with_capacity(fds.len());
            for (tid, attr, per_cpu) in fds {
                drop(per_cpu);
                let mut dummy = attr;
                dummy.type_ = perf_event_open_sys::bindings::PERF_TYPE_SOFTWARE;
                dummy.config = perf_event_open_sys::bindings::PERF_COUNT_SW_DUMMY as u64;
                let f = open_per_cpu(&mut dummy, "dummy", tid, cpus)?;
                tracked.push((tid, attr, f));
            }
            fds = tracked;
        }
        // Precise IPs: the level the kernel accepted.
        let precise_ip = (spec.precise > 0).then(|| attr.precise_ip() as u8);
        if let Some(got) = precise_ip
            && got < spec.precise
        {
            let n = format!(
                "{}: precise_ip {} refused; sampling with precise_ip {got}",
                spec.name, spec.precise
            );
            notice(quiet, notices, n.clone());
            note = if note.is_empty() {
                n
            } else {
                format!("{note}; {n}")
            };
        }
        // Members join each leader descriptor's group; the ones this machine lacks are
        // dropped with a notice.
        let (member_files, dropped) = if members.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let leaders: Vec<(i32, &[(u32, std::os::fd::OwnedFd)])> =
                fds.iter().map(|(t, _, f)| (*t, f.as_slice())).collect();
            open_members(&members, &attr, &leaders)
        };
        for (name, why) in &dropped {
            notice(
                quiet,
                notices,
                format!("counter group: {name} dropped: {why}"),
            );
        }
        let mut ids = Vec::new();
        for (_, _, per_cpu) in fds {
            for (cpu, fd) in per_cpu {
                ids.push(sys::event_id(&fd).map_err(io_err("read event id"))?);
                match slot_leaders.iter().find(|(k, _)| *k == cpu) {
                    Some((_, leader)) => {
                        sys::set_output(&fd, leader).map_err(io_err("redirect event output"))?;
                        others.push(fd);
                    }
                    None => {
                        // Map the leader's ring now: PERF_EVENT_IOC_SET_OUTPUT onto an
                        // event without a ring fails with EINVAL (kernel
                        // perf_event_set_output), which broke every run with two events.
                        // Tracking-only rings also take the samples of the processes
                        // no agent samples (see `fill`): 32 pages, half the ring at
                        // most between two wake-ups.
                        let pages = if tracking_only { pages.min(32) } else { pages };
                        rings.push(map_ring(fd.try_clone().map_err(io_err("dup"))?, pages)?);
                        ring_cpus.push(cpu);
                        slot_leaders.push((cpu, fd));
                    }
                }
            }
        }
        let in_group =
            attr.sample_type & perf_event_open_sys::bindings::PERF_SAMPLE_READ as u64 != 0;
        if !w.members.is_empty() && (in_group || !group_note.is_empty()) {
            groups.push(GroupRecord {
                leader: spec.name.clone(),
                members: member_files.iter().map(|m| m.spec.name.clone()).collect(),
                dropped: dropped
                    .iter()
                    .map(|(n, why)| format!("{n}: {why}"))
                    .collect(),
                read_per_sample: in_group,
                note: group_note,
            });
        }
        file_attrs.push(FileAttr {
            attr: sys::attr_bytes(&attr),
            name: spec.name.clone(),
            ids,
        });
        let leader_name = spec.name.clone();
        if in_group && !member_files.is_empty() {
            // perf's name for a group without one of its own; it prints the members.
            perf_groups.push((
                "{anon_group}".to_string(),
                file_attrs.len() as u32 - 1,
                member_files.len() as u32 + 1,
            ));
        }
        chosen.push(ChosenEvent {
            spec,
            requested: w.requested.clone(),
            note,
            precise_ip,
        });
        // Members follow their leader in perf.data (perf's group layout).
        for m in member_files {
            let mut ids = Vec::with_capacity(m.fds.len());
            for fd in m.fds {
                ids.push(sys::event_id(&fd).map_err(io_err("read event id"))?);
                others.push(fd);
            }
            file_attrs.push(FileAttr {
                attr: sys::attr_bytes(&m.attr),
                name: m.spec.name.clone(),
                ids,
            });
            chosen.push(ChosenEvent {
                note: format!("counter group member: read with each sample of {leader_name}"),
                spec: m.spec,
                requested: m.requested,
                precise_ip: None,
            });
        }
    }
    let tracking_id = file_attrs
        .first()
        .and_then(|a| a.ids.first().copied())
        .unwrap_or(0);
    drop(slot_leaders); // their rings hold their own descriptors
    Ok(OpenedEvents {
        chosen,
        file_attrs,
        rings,
        redirected: others,
        tracking_id,
        groups,
        perf_groups,
        ring_cpus,
        first_attr,
    })
}

/// Map a ring, halving its size while the locked-memory budget refuses it.
pub(super) fn map_ring(
    fd: std::os::fd::OwnedFd,
    mut pages: usize,
) -> Result<sys::RingBuffer, CollectError> {
    loop {
        match sys::RingBuffer::map(fd.try_clone().map_err(io_err("dup"))?, pages) {
            Ok(r) => return Ok(r),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && pages > 4 => pages /= 2,
            Err(e) => {
                return Err(CollectError::Io {
                    what:
                        "map the perf ring buffer (raise kernel.perf_event_mlock_kb or `ulimit -l`)"
                            .into(),
                    source: e,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{self, EventEnv, resolve_all};

    fn cfg() -> OpenConfig {
        OpenConfig {
            freq: 999,
            call_graph: CallGraph::Fp,
            enable_on_exec: true,
            exclude_kernel: true,
            context_switch: false,
            switches_only: false,
        }
    }

    #[test]
    fn attr_takes_precise_level_and_period_from_the_spec() {
        let env = EventEnv::system();
        let spec = |n: &str| resolve_all(n, &env).unwrap().remove(0);
        // cycles: by frequency, not precise.
        let a = build_attr(&spec("cycles"), &cfg(), true);
        assert_eq!((a.freq(), a.precise_ip()), (1, 0));
        // 'cycles:pp' asks for precise_ip 2.
        let a = build_attr(&spec("cycles:pp"), &cfg(), false);
        assert_eq!((a.freq(), a.precise_ip()), (1, 2));
        // LLC misses as memory mode samples them: every 10007 misses, precise.
        let mut llc = spec("cache-misses");
        llc.period = events::LLC_MISS_PERIOD;
        llc.precise = 2;
        let a = build_attr(&llc, &cfg(), false);
        assert_eq!(a.freq(), 0);
        // SAFETY: reading a u64 out of a union of two u64s.
        assert_eq!(unsafe { a.__bindgen_anon_1.sample_period }, 10007);
        assert_eq!(a.precise_ip(), 2);
        // Software counts sample every occurrence.
        let a = build_attr(&spec("page-faults"), &cfg(), false);
        // SAFETY: as above.
        assert_eq!(
            (a.freq(), unsafe { a.__bindgen_anon_1.sample_period }),
            (0, 1)
        );
    }

    #[test]
    fn precise_ip_is_lowered_until_the_kernel_accepts_it() {
        let env = EventEnv::system();
        let spec = resolve_all("cycles:ppp", &env).unwrap().remove(0);
        let mut attr = build_attr(&spec, &cfg(), false);
        assert_eq!(attr.precise_ip(), 3);
        // A kernel that takes at most precise_ip 1 (EOPNOTSUPP above, as x86 says).
        let mut tried = Vec::new();
        let fds = open_on_with(
            &mut attr,
            "cycles:ppp",
            1,
            &[(0, None), (1, None)],
            |a, _, _, _| {
                tried.push(a.precise_ip());
                if a.precise_ip() > 1 {
                    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
                } else {
                    Ok(std::fs::File::open("/dev/null")?.into())
                }
            },
        )
        .unwrap();
        assert_eq!(fds.len(), 2);
        assert_eq!(attr.precise_ip(), 1);
        // 3, 2 refused, 1 taken on cpu 0; cpu 1 starts at the level reached.
        assert_eq!(tried, [3, 2, 1, 1]);
        // At 0 a refusal is the event's error, not another retry.
        let mut attr = build_attr(&spec, &cfg(), false);
        let e = open_on_with(&mut attr, "cycles:ppp", 1, &[(0, None)], |_, _, _, _| {
            Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
        })
        .unwrap_err();
        assert!(is_missing_hardware(&e));
        assert_eq!(attr.precise_ip(), 0);
    }
}
