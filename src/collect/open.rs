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
    // Time and hardware events sample at a frequency; counts of discrete events (faults,
    // switches, tracepoints) sample every occurrence, so weights are exact.
    let by_frequency = spec.time_based || spec.kind == EventKind::Hardware;
    if by_frequency {
        a.set_freq(1);
        a.__bindgen_anon_1.sample_freq = cfg.freq.max(1);
    } else {
        a.__bindgen_anon_1.sample_period = spec.period.max(1);
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

/// Open `attr` on every CPU for `pid`. Retries without the build-id bit on kernels that
/// predate it.
pub fn open_per_cpu(
    attr: &mut PerfEventAttr,
    name: &str,
    pid: i32,
    cpus: &[u32],
) -> Result<Vec<(u32, OwnedFd)>, OpenError> {
    let mut out = Vec::with_capacity(cpus.len());
    for &cpu in cpus {
        let fd = match sys::perf_event_open(attr, pid, cpu as i32, None) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && attr.build_id() == 1 => {
                attr.set_build_id(0);
                sys::perf_event_open(attr, pid, cpu as i32, None)
                    .map_err(|e| classify(name, pid, e))?
            }
            Err(e) => return Err(classify(name, pid, e)),
        };
        out.push((cpu, fd));
    }
    Ok(out)
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
