//! Event specs: from a name the user typed to what `perf_event_open` needs.
//!
//! Resolution order (DESIGN section 5): perf's generic names (`cycles`, `cpu-clock`),
//! sysfs PMU aliases (`pmu/event/`), perfmon names, raw `rUUEE`, tracepoints `sys:name`.
//! This file holds the types (`EventSpec`, `EventKind`, `EventEnv`, `EventError`); the
//! rest is one job per file: `generic.rs` (perf's generic names), `resolve.rs` (the
//! order above), `suggest.rs` (close names for an unknown one), `defaults.rs` (per-mode
//! defaults and their fallbacks, so `collect` only asks "what should this mode sample"
//! and opens what comes back), `sysfs.rs` and `perfmon.rs` (PMU format files, perfmon
//! tables), `group.rs` (counter groups), `list.rs` (`hwprof list-events`).

pub mod bandwidth;
mod defaults;
mod generic;
pub mod group;
pub mod list;
pub use list::list_events_text;
pub mod perfmon;
mod resolve;
mod suggest;
pub mod sysfs;

use std::path::{Path, PathBuf};

use perf_event_open_sys::bindings as sys;

pub use defaults::{
    DEFAULT_FAULT_PERIOD, HOTSPOT_GROUP_MEMBERS, LLC_MISS_PERIOD, Mode, ModeDefault, SampleWeight,
    llc_miss_event, mode_defaults,
};
pub(crate) use generic::GENERIC;
pub use resolve::{known_names, resolve, resolve_all, resolve_in};
pub use suggest::close_matches;

/// The tracepoint of a wakeup, sampled in the waker's context (locks mode at root: who
/// woke each wait).
pub const WAKER_EVENT: &str = "sched:sched_waking";

/// The largest user-stack copy a sample can take (`--call-graph dwarf,N`): the kernel's
/// `sample_stack_user` is a u16, rounded down to 8 bytes.
pub const MAX_STACK_COPY: u32 = 65528;

/// Errors resolving an event name.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The name matches nothing.
    #[error("unknown event '{name}'{}; `hwprof list-events` shows what this machine offers", suggest(.close))]
    Unknown {
        /// The name given.
        name: String,
        /// Known names close to it.
        close: Vec<String>,
    },
    /// A tracepoint could not be looked up.
    #[error("tracepoint '{name}': cannot read {path}: {error}; {}", tracefs_fix(.error))]
    Tracepoint {
        /// The tracepoint.
        name: String,
        /// The id file.
        path: PathBuf,
        /// The cause (said in the message, so not a `source` the edge prints again).
        error: std::io::Error,
    },
    /// A `pmu/terms/` event or a PMU needed by a perfmon name is wrong or missing.
    #[error("event '{name}': {source}")]
    Pmu {
        /// The event.
        name: String,
        /// The cause.
        source: sysfs::SysfsError,
    },
    /// A perfmon name that hwprof cannot encode faithfully.
    #[error("event '{name}': {why}")]
    Unsupported {
        /// The event.
        name: String,
        /// Why, and what to write instead.
        why: String,
    },
}

fn suggest(close: &[String]) -> String {
    if close.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", close.join(", "))
    }
}

/// What kind of counter an event is; decides fallbacks and notices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Needs the CPU's PMU.
    Hardware,
    /// Kernel software event (always there).
    Software,
    /// A tracepoint.
    Tracepoint,
}

/// A resolved event: the `perf_event_attr` fields that name it.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSpec {
    /// Canonical name (`cpu-clock`, `sched:sched_switch`).
    pub name: String,
    /// `perf_event_attr.type`.
    pub type_: u32,
    /// `perf_event_attr.config`.
    pub config: u64,
    /// `perf_event_attr.config1`.
    pub config1: u64,
    /// `perf_event_attr.config2`.
    pub config2: u64,
    /// Hardware, software or tracepoint.
    pub kind: EventKind,
    /// True for events whose period is time (cpu-clock, task-clock).
    pub time_based: bool,
    /// The PMU: `software`, `hardware`, `tracepoint`, `raw`, or a sysfs PMU name
    /// (`cpu`, `uncore_imc_0`).
    pub pmu: String,
    /// Multiply a count by this to get `unit` (sysfs `.scale`; 64 B per CAS for the
    /// bandwidth events); 1.0 otherwise.
    pub scale: f64,
    /// Unit of the scaled count (`MiB`, `bytes`), empty for plain counts.
    pub unit: String,
    /// Sample period for events sampled by occurrence rather than frequency (faults,
    /// switches, tracepoints: 1, every one); for hardware events the suggested period
    /// (`period=` term, perfmon `SampleAfterValue`) when sampling by period.
    pub period: u64,
    /// Highest `precise_ip` the event supports (perfmon `PEBS`, `:p` modifiers); the
    /// opener lowers it on EINVAL/EOPNOTSUPP.
    pub precise: u8,
    /// For uncore (system-wide, counting-only) PMUs: the CPUs of their `cpumask`, to
    /// open with pid = -1; empty for events that follow a task.
    pub cpus: Vec<u32>,
}

impl Default for EventSpec {
    fn default() -> Self {
        EventSpec {
            name: String::new(),
            type_: sys::PERF_TYPE_SOFTWARE,
            config: 0,
            config1: 0,
            config2: 0,
            kind: EventKind::Software,
            time_based: false,
            pmu: String::new(),
            scale: 1.0,
            unit: String::new(),
            period: 1,
            precise: 0,
            cpus: Vec::new(),
        }
    }
}

impl EventSpec {
    /// True for system-wide counting-only events (uncore): they cannot sample a task.
    pub fn is_uncore(&self) -> bool {
        !self.cpus.is_empty()
    }
}

/// Where resolution looks: sysfs, cpuinfo and tracefs roots. Tests point these at
/// fixture trees (`tests/fixtures/sysfs/<machine>/`).
#[derive(Clone, Debug)]
pub struct EventEnv {
    /// Root of sysfs (`/sys`); PMUs are under `bus/event_source/devices`.
    pub sysfs: PathBuf,
    /// The cpuinfo file (`/proc/cpuinfo`).
    pub cpuinfo: PathBuf,
    /// tracefs root.
    pub tracefs: PathBuf,
}

impl EventEnv {
    /// This machine.
    pub fn system() -> Self {
        EventEnv {
            sysfs: PathBuf::from("/sys"),
            cpuinfo: PathBuf::from("/proc/cpuinfo"),
            tracefs: tracefs_root(),
        }
    }

    /// A fixture tree: `<root>/bus/event_source/devices/...`, `<root>/cpuinfo`,
    /// `<root>/tracing`.
    pub fn fixture(root: &Path) -> Self {
        EventEnv {
            sysfs: root.to_path_buf(),
            cpuinfo: root.join("cpuinfo"),
            tracefs: root.join("tracing"),
        }
    }

    /// The committed fixture tree `tests/fixtures/sysfs/<name>` (unit tests).
    #[cfg(test)]
    pub fn sysfs_fixture(name: &str) -> Self {
        EventEnv::fixture(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/sysfs")
                .join(name),
        )
    }

    /// The running CPU.
    pub fn cpu(&self) -> Option<perfmon::CpuId> {
        perfmon::CpuId::read(&self.cpuinfo)
    }

    /// The perfmon tables of the running CPU, if bundled.
    pub fn perfmon(&self) -> Option<std::sync::Arc<perfmon::Table>> {
        self.cpu()
            .and_then(|c| perfmon::Table::for_cpu_cached(&c).0)
    }
}

/// The tracefs root: /sys/kernel/tracing, else the debugfs path. Where tracefs is
/// mounted but this user may not look into it (mode 0700, the default), still
/// /sys/kernel/tracing: what cannot be read there is the cause to report.
pub fn tracefs_root() -> PathBuf {
    let t = PathBuf::from("/sys/kernel/tracing");
    let debugfs = PathBuf::from("/sys/kernel/debug/tracing");
    match std::fs::metadata(t.join("events")) {
        Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied && debugfs.is_dir() => debugfs,
        _ => t,
    }
}

/// What to do when a tracefs file could not be read with `error`.
pub fn tracefs_fix(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "tracefs is readable by root only here: run as root, or have root open it (mount -o remount,mode=755 /sys/kernel/tracing)"
        }
        std::io::ErrorKind::NotFound => {
            "no such tracepoint, or tracefs is not mounted (as root: mount -t tracefs nodev /sys/kernel/tracing)"
        }
        _ => "tracefs must be mounted (mount -t tracefs nodev /sys/kernel/tracing) and readable",
    }
}

#[cfg(test)]
mod encoding_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_and_raw_names() {
        let c = resolve_in("cpu-clock", Path::new("/nonexistent")).unwrap();
        assert_eq!((c.type_, c.config), (1, 0));
        assert!(c.time_based);
        let r = resolve_in("r01c2", Path::new("/nonexistent")).unwrap();
        assert_eq!((r.type_, r.config), (4, 0x1c2));
    }

    #[test]
    fn unknown_name_lists_close_matches() {
        let e = resolve_in("cpu-clok", Path::new("/nonexistent")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("cpu-clock"), "{msg}");
    }

    #[test]
    fn tracepoint_id_from_tracefs_tree() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events/sched/sched_switch");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("id"), "316\n").unwrap();
        let t = resolve_in("sched:sched_switch", d.path()).unwrap();
        assert_eq!((t.type_, t.config), (2, 316));
    }
}
