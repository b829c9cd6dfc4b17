//! Event specs: from a name the user typed to what `perf_event_open` needs.
//!
//! Resolution order (DESIGN section 5): perf's generic names (`cycles`, `cpu-clock`),
//! sysfs PMU aliases (`pmu/event/`), perfmon names, raw `rUUEE`, tracepoints `sys:name`.
//! Per-mode defaults and their fallbacks live here too, so `collect` only asks
//! "what should this mode sample" and opens what comes back.

use std::path::{Path, PathBuf};

use perf_event_open_sys::bindings as sys;

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
    #[error(
        "tracepoint '{name}': cannot read {path}: {source}; tracefs must be mounted (mount -t tracefs nodev /sys/kernel/tracing) and readable (root or CAP_PERFMON)"
    )]
    Tracepoint {
        /// The tracepoint.
        name: String,
        /// The id file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
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
    /// Sample period for events counted by occurrence (faults, switches, tracepoints).
    pub period: u64,
}

const GENERIC: &[(&str, u32, u64, EventKind)] = &[
    (
        "cycles",
        sys::PERF_TYPE_HARDWARE,
        sys::PERF_COUNT_HW_CPU_CYCLES as u64,
        EventKind::Hardware,
    ),
    (
        "cpu-cycles",
        sys::PERF_TYPE_HARDWARE,
        sys::PERF_COUNT_HW_CPU_CYCLES as u64,
        EventKind::Hardware,
    ),
    (
        "instructions",
        sys::PERF_TYPE_HARDWARE,
        sys::PERF_COUNT_HW_INSTRUCTIONS as u64,
        EventKind::Hardware,
    ),
    (
        "cache-references",
        sys::PERF_TYPE_HARDWARE,
        sys::PERF_COUNT_HW_CACHE_REFERENCES as u64,
        EventKind::Hardware,
    ),
    (
        "cache-misses",
        sys::PERF_TYPE_HARDWARE,
        sys::PERF_COUNT_HW_CACHE_MISSES as u64,
        EventKind::Hardware,
    ),
    (
        "branches",
        sys::PERF_TYPE_HARDWARE,
        sys::PERF_COUNT_HW_BRANCH_INSTRUCTIONS as u64,
        EventKind::Hardware,
    ),
    (
        "branch-instructions",
        sys::PERF_TYPE_HARDWARE,
        sys::PERF_COUNT_HW_BRANCH_INSTRUCTIONS as u64,
        EventKind::Hardware,
    ),
    (
        "branch-misses",
        sys::PERF_TYPE_HARDWARE,
        sys::PERF_COUNT_HW_BRANCH_MISSES as u64,
        EventKind::Hardware,
    ),
    (
        "bus-cycles",
        sys::PERF_TYPE_HARDWARE,
        sys::PERF_COUNT_HW_BUS_CYCLES as u64,
        EventKind::Hardware,
    ),
    (
        "ref-cycles",
        sys::PERF_TYPE_HARDWARE,
        sys::PERF_COUNT_HW_REF_CPU_CYCLES as u64,
        EventKind::Hardware,
    ),
    (
        "cpu-clock",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_CPU_CLOCK as u64,
        EventKind::Software,
    ),
    (
        "task-clock",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_TASK_CLOCK as u64,
        EventKind::Software,
    ),
    (
        "page-faults",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_PAGE_FAULTS as u64,
        EventKind::Software,
    ),
    (
        "faults",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_PAGE_FAULTS as u64,
        EventKind::Software,
    ),
    (
        "minor-faults",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_PAGE_FAULTS_MIN as u64,
        EventKind::Software,
    ),
    (
        "major-faults",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_PAGE_FAULTS_MAJ as u64,
        EventKind::Software,
    ),
    (
        "context-switches",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_CONTEXT_SWITCHES as u64,
        EventKind::Software,
    ),
    (
        "cs",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_CONTEXT_SWITCHES as u64,
        EventKind::Software,
    ),
    (
        "cpu-migrations",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_CPU_MIGRATIONS as u64,
        EventKind::Software,
    ),
    (
        "migrations",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_CPU_MIGRATIONS as u64,
        EventKind::Software,
    ),
    (
        "alignment-faults",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_ALIGNMENT_FAULTS as u64,
        EventKind::Software,
    ),
    (
        "emulation-faults",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_EMULATION_FAULTS as u64,
        EventKind::Software,
    ),
    (
        "dummy",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_DUMMY as u64,
        EventKind::Software,
    ),
];

/// The tracefs root: /sys/kernel/tracing, else the debugfs path.
pub fn tracefs_root() -> PathBuf {
    let t = PathBuf::from("/sys/kernel/tracing");
    if t.join("events").exists() {
        t
    } else {
        PathBuf::from("/sys/kernel/debug/tracing")
    }
}

/// Resolve an event name as the user typed it.
pub fn resolve(name: &str) -> Result<EventSpec, EventError> {
    resolve_in(name, &tracefs_root())
}

/// Resolve with an explicit tracefs root (tests use fixture trees).
pub fn resolve_in(name: &str, tracefs: &Path) -> Result<EventSpec, EventError> {
    let lower = name.trim();
    if let Some(&(n, type_, config, kind)) = GENERIC.iter().find(|g| g.0 == lower) {
        return Ok(EventSpec {
            name: n.to_string(),
            type_,
            config,
            config1: 0,
            config2: 0,
            kind,
            time_based: matches!(n, "cpu-clock" | "task-clock"),
            period: 1,
        });
    }
    if let Some(hex) = lower.strip_prefix('r')
        && !hex.is_empty()
        && hex.chars().all(|c| c.is_ascii_hexdigit())
        && let Ok(config) = u64::from_str_radix(hex, 16)
    {
        return Ok(EventSpec {
            name: lower.to_string(),
            type_: sys::PERF_TYPE_RAW,
            config,
            config1: 0,
            config2: 0,
            kind: EventKind::Hardware,
            time_based: false,
            period: 1,
        });
    }
    if let Some((sys_name, ev)) = lower.split_once(':')
        && !sys_name.is_empty()
        && !ev.is_empty()
        && !sys_name.contains('/')
    {
        let path = tracefs.join("events").join(sys_name).join(ev).join("id");
        let id = std::fs::read_to_string(&path).map_err(|source| EventError::Tracepoint {
            name: lower.to_string(),
            path: path.clone(),
            source,
        })?;
        let config = id
            .trim()
            .parse::<u64>()
            .map_err(|e| EventError::Tracepoint {
                name: lower.to_string(),
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
        return Ok(EventSpec {
            name: lower.to_string(),
            type_: sys::PERF_TYPE_TRACEPOINT,
            config,
            config1: 0,
            config2: 0,
            kind: EventKind::Tracepoint,
            time_based: false,
            period: 1,
        });
    }
    Err(EventError::Unknown {
        name: name.to_string(),
        close: close_matches(lower, GENERIC.iter().map(|g| g.0)),
    })
}

/// Names within a small edit distance, or sharing a prefix.
pub fn close_matches<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = known
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 2.max(name.len() / 3) || k.starts_with(name) || name.starts_with(k))
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(4)
        .map(|(_, k)| k.to_string())
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The event a mode samples by default, and what replaces it when the machine lacks it.
pub struct ModeDefault {
    /// Preferred event.
    pub primary: &'static str,
    /// Software replacement when the primary cannot be opened.
    pub fallback: Option<&'static str>,
}

/// Default sampling events of a mode.
pub fn mode_defaults(mode: crate::cli::Mode) -> Vec<ModeDefault> {
    use crate::cli::Mode;
    match mode {
        Mode::Hotspots => vec![ModeDefault {
            primary: "cycles",
            fallback: Some("cpu-clock"),
        }],
        Mode::Memory => vec![ModeDefault {
            primary: "page-faults",
            fallback: None,
        }],
        Mode::Locks => vec![ModeDefault {
            primary: "context-switches",
            fallback: None,
        }],
    }
}

/// `hwprof list-events` text (being built).
pub fn list_events_text() -> String {
    let mut s = String::from("Generic events:\n");
    for g in GENERIC {
        s.push_str(&format!("  {}\n", g.0));
    }
    s
}

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
