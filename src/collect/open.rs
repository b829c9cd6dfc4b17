//! Opening the sampling events: one per CPU per event on the target (with `inherit`,
//! so threads and forked children are followed), falling back from hardware events the
//! machine lacks to their software replacement, and turning kernel errors into
//! actionable messages.

use std::io;
use std::os::fd::OwnedFd;

use super::CallGraph;
use super::sys::{self, PerfEventAttr};
use crate::events::{EventKind, EventSpec};

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
    // Locks mode's wakeups: the woken thread is in the tracepoint's raw data.
    if spec.name == super::WAKER_EVENT {
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
    a.sample_max_stack = 127;
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

/// Undo [`make_group_leader`] (kernels before 6.12 refuse `inherit` with
/// PERF_SAMPLE_READ).
pub fn unmake_group_leader(attr: &mut PerfEventAttr) {
    attr.sample_type &= !(perf_event_open_sys::bindings::PERF_SAMPLE_READ as u64);
    attr.read_format = 0;
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
