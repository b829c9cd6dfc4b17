//! Event specs: from a name the user typed to what `perf_event_open` needs.
//!
//! Resolution order (DESIGN section 5): perf's generic names (`cycles`, `cpu-clock`),
//! sysfs PMU aliases (`pmu/event/`), perfmon names, raw `rUUEE`, tracepoints `sys:name`.
//! Per-mode defaults and their fallbacks live here too, so `collect` only asks
//! "what should this mode sample" and opens what comes back.

mod generic;
pub mod group;
pub mod list;
pub use list::list_events_text;
pub mod perfmon;
mod suggest;
pub mod sysfs;

use std::path::{Path, PathBuf};

use perf_event_open_sys::bindings as sys;

pub(crate) use generic::GENERIC;
use generic::generic;
pub use suggest::close_matches;

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

/// The tracefs root: /sys/kernel/tracing, else the debugfs path.
pub fn tracefs_root() -> PathBuf {
    let t = PathBuf::from("/sys/kernel/tracing");
    if t.join("events").exists() {
        t
    } else {
        PathBuf::from("/sys/kernel/debug/tracing")
    }
}

/// Resolve an event name as the user typed it. For uncore events (one PMU per box)
/// this is the first box; [`resolve_all`] gives every box.
pub fn resolve(name: &str) -> Result<EventSpec, EventError> {
    first(resolve_all(name, &EventEnv::system()), name)
}

/// Resolve with an explicit tracefs root (tests use fixture trees).
pub fn resolve_in(name: &str, tracefs: &Path) -> Result<EventSpec, EventError> {
    let env = EventEnv {
        tracefs: tracefs.to_path_buf(),
        ..EventEnv::system()
    };
    first(resolve_all(name, &env), name)
}

fn first(r: Result<Vec<EventSpec>, EventError>, name: &str) -> Result<EventSpec, EventError> {
    r?.into_iter().next().ok_or_else(|| EventError::Unknown {
        name: name.to_string(),
        close: Vec::new(),
    })
}

const MODIFIERS: &str = "ukhp";

/// Split `cycles:pp` / `cpu/.../up` modifiers; returns the precise level asked for.
fn parse_modifiers(m: &str) -> Option<u8> {
    if m.is_empty() || !m.chars().all(|c| MODIFIERS.contains(c)) {
        return None;
    }
    Some(m.chars().filter(|&c| c == 'p').count().min(3) as u8)
}

/// Resolve a name to every event it stands for: one for core, software and tracepoint
/// events, one per box for uncore events (`UNC_M_CAS_COUNT.RD` on `uncore_imc_0..7`,
/// `uncore_imc/cas_count_read/`).
pub fn resolve_all(name: &str, env: &EventEnv) -> Result<Vec<EventSpec>, EventError> {
    let name = name.trim();
    // 1. perf's generic names, with optional :ukp modifiers.
    if let Some(g) = generic(name) {
        return Ok(vec![g]);
    }
    if let Some((base, m)) = name.rsplit_once(':')
        && let Some(p) = parse_modifiers(m)
        && let Some(mut g) = generic(base)
    {
        g.precise = p;
        return Ok(vec![g]);
    }
    // 2. sysfs PMU events: pmu/terms/[modifiers].
    if name.contains('/') {
        return resolve_pmu_terms(name, env);
    }
    // 3. perfmon names for the running CPU.
    if let Some(table) = env.perfmon()
        && let Some(ev) = table.find(name)
    {
        return encode_perfmon(ev, env);
    }
    // 4. raw rUUEE.
    if let Some(hex) = name.strip_prefix('r')
        && !hex.is_empty()
        && hex.chars().all(|c| c.is_ascii_hexdigit())
        && let Ok(config) = u64::from_str_radix(hex, 16)
    {
        return Ok(vec![EventSpec {
            name: name.to_string(),
            type_: sys::PERF_TYPE_RAW,
            config,
            kind: EventKind::Hardware,
            pmu: "raw".into(),
            ..Default::default()
        }]);
    }
    // 5. tracepoints sys:name.
    if let Some((sys_name, ev)) = name.split_once(':')
        && !sys_name.is_empty()
        && !ev.is_empty()
        && !ev.contains(':')
    {
        return tracepoint(name, sys_name, ev, &env.tracefs).map(|t| vec![t]);
    }
    // A bare sysfs alias (`cas_count_read`): every PMU that has it.
    if !name.is_empty() && !name.contains(['.', ' ']) {
        let mut out = Vec::new();
        for pmu in sysfs::pmu_names(&env.sysfs) {
            if let Ok(p) = sysfs::Pmu::read(&env.sysfs, &pmu)
                && p.aliases.contains_key(name)
            {
                out.extend(resolve_pmu_terms(&format!("{pmu}/{name}/"), env)?);
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    Err(EventError::Unknown {
        name: name.to_string(),
        close: close_matches(name, &known_names(env)),
    })
}

/// Every name resolution knows on this machine: generic, sysfs `pmu/alias/`, perfmon.
pub fn known_names(env: &EventEnv) -> Vec<String> {
    let mut v: Vec<String> = GENERIC.iter().map(|g| g.0.to_string()).collect();
    let mut families = std::collections::BTreeSet::new();
    for pmu in sysfs::pmu_names(&env.sysfs) {
        if let Ok(p) = sysfs::Pmu::read(&env.sysfs, &pmu) {
            let fam = pmu
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .trim_end_matches('_')
                .to_string();
            for a in p.aliases.keys() {
                v.push(format!("{pmu}/{a}/"));
                if fam != pmu && families.insert((fam.clone(), a.clone())) {
                    v.push(format!("{fam}/{a}/"));
                }
            }
        }
    }
    if let Some(t) = env.perfmon() {
        v.extend(t.names().map(str::to_string));
    }
    v
}

fn tracepoint(
    name: &str,
    sys_name: &str,
    ev: &str,
    tracefs: &Path,
) -> Result<EventSpec, EventError> {
    let bad = |path: PathBuf, source| EventError::Tracepoint {
        name: name.to_string(),
        path,
        source,
    };
    if [sys_name, ev].iter().any(|p| p.contains('/') || *p == "..") {
        return Err(bad(
            tracefs.join("events"),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a tracepoint name"),
        ));
    }
    let path = tracefs.join("events").join(sys_name).join(ev).join("id");
    let id = std::fs::read_to_string(&path).map_err(|e| bad(path.clone(), e))?;
    let config = id.trim().parse::<u64>().map_err(|e| {
        bad(
            path.clone(),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    Ok(EventSpec {
        name: name.to_string(),
        type_: sys::PERF_TYPE_TRACEPOINT,
        config,
        kind: EventKind::Tracepoint,
        pmu: "tracepoint".into(),
        ..Default::default()
    })
}

/// `pmu/term=v,alias,.../mods`: encode through the PMU's format files; a PMU family
/// without a number (`uncore_imc`) expands to all its boxes.
fn resolve_pmu_terms(name: &str, env: &EventEnv) -> Result<Vec<EventSpec>, EventError> {
    let pmu_err = |source| EventError::Pmu {
        name: name.to_string(),
        source,
    };
    let mut parts = name.splitn(3, '/');
    let pmu_name = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");
    let mods = parts.next().unwrap_or("");
    let precise = if mods.is_empty() {
        0
    } else {
        parse_modifiers(mods).ok_or_else(|| EventError::Unsupported {
            name: name.to_string(),
            why: format!("modifier '{mods}' not understood (use u, k, h, p, pp, ppp)"),
        })?
    };
    let user_terms = sysfs::parse_terms(body).map_err(pmu_err)?;
    let boxes = sysfs::pmu_boxes(&env.sysfs, pmu_name);
    if boxes.is_empty() {
        return Err(pmu_err(sysfs::SysfsError::NoPmu {
            pmu: pmu_name.to_string(),
            dir: sysfs::devices_dir(&env.sysfs),
        }));
    }
    let mut out = Vec::new();
    for b in boxes {
        let pmu = sysfs::Pmu::read(&env.sysfs, &b).map_err(pmu_err)?;
        let mut terms = Vec::new();
        let mut scale = 1.0;
        let mut unit = String::new();
        let mut period: Option<u64> = None;
        let mut alias_name = None;
        for (k, v) in &user_terms {
            if k == "period" {
                period = *v;
            } else if v.is_none()
                && !pmu.formats.contains_key(k)
                && let Some(a) = pmu.aliases.get(k)
            {
                for (ak, av) in &a.terms {
                    if ak == "period" {
                        period = period.or(*av);
                    } else {
                        terms.push((ak.clone(), *av));
                    }
                }
                scale = a.scale;
                unit = a.unit.clone();
                alias_name = Some(k.clone());
            } else {
                terms.push((k.clone(), *v));
            }
        }
        let [config, config1, config2] = pmu.encode(&terms).map_err(pmu_err)?;
        let canonical = match &alias_name {
            Some(a) if user_terms.len() == 1 => format!("{b}/{a}/"),
            _ => format!("{b}/{body}/"),
        };
        out.push(EventSpec {
            name: canonical,
            type_: pmu.type_,
            config,
            config1,
            config2,
            kind: EventKind::Hardware,
            time_based: false,
            pmu: b.clone(),
            scale,
            unit,
            period: period.unwrap_or(1).max(1),
            precise,
            cpus: pmu.cpus.clone(),
        });
    }
    Ok(out)
}

/// Encode a perfmon event for this machine's PMUs.
fn encode_perfmon(
    ev: &perfmon::PerfmonEvent,
    env: &EventEnv,
) -> Result<Vec<EventSpec>, EventError> {
    let Some(unit) = &ev.unit else {
        let (config, config1) = ev.core_config();
        // The core PMU's type is in sysfs when present; PERF_TYPE_RAW means the same.
        let type_ = sysfs::Pmu::read(&env.sysfs, "cpu")
            .map(|p| p.type_)
            .unwrap_or(sys::PERF_TYPE_RAW);
        return Ok(vec![EventSpec {
            name: ev.name.clone(),
            type_,
            config,
            config1,
            kind: EventKind::Hardware,
            pmu: "cpu".into(),
            period: ev.sample_after.max(1),
            // PEBS events take precise_ip 2 (perf's `:pp`); the opener lowers it if refused.
            precise: if ev.pebs > 0 { 2 } else { 0 },
            ..Default::default()
        }]);
    };
    if ev.needs_filter() {
        return Err(EventError::Unsupported {
            name: ev.name.clone(),
            why: format!(
                "it needs the box filter '{}', which hwprof does not set from perfmon names; \
                 give it as {}/event={:#x},umask={:#x},<filter terms>/ (see the PMU's format directory)",
                ev.filter,
                perfmon::uncore_pmu_family(unit),
                ev.event_code,
                ev.umask
            ),
        });
    }
    let family = perfmon::uncore_pmu_family(unit);
    let boxes = sysfs::pmu_boxes(&env.sysfs, &family);
    if boxes.is_empty() {
        return Err(EventError::Pmu {
            name: ev.name.clone(),
            source: sysfs::SysfsError::NoPmu {
                pmu: family,
                dir: sysfs::devices_dir(&env.sysfs),
            },
        });
    }
    let terms = ev.uncore_terms();
    // A CAS command or an RPQ/WPQ insert moves one 64-byte line.
    let upper = ev.name.to_ascii_uppercase();
    let (scale, unit_s) = if upper.starts_with("UNC_M_CAS_COUNT.")
        || upper.starts_with("UNC_E_RPQ_INSERTS")
        || upper.starts_with("UNC_E_WPQ_INSERTS")
    {
        (64.0, "bytes")
    } else {
        (1.0, "")
    };
    let mut out = Vec::new();
    for b in boxes {
        let pmu = sysfs::Pmu::read(&env.sysfs, &b).map_err(|source| EventError::Pmu {
            name: ev.name.clone(),
            source,
        })?;
        let [config, config1, config2] = pmu.encode(&terms).map_err(|source| EventError::Pmu {
            name: ev.name.clone(),
            source,
        })?;
        out.push(EventSpec {
            name: ev.name.clone(),
            type_: pmu.type_,
            config,
            config1,
            config2,
            kind: EventKind::Hardware,
            pmu: b,
            scale,
            unit: unit_s.into(),
            cpus: pmu.cpus,
            ..Default::default()
        });
    }
    Ok(out)
}

/// Collection modes: what is sampled, and the metric profiles of the mode rank by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// CPU time by code.
    Hotspots,
    /// Page faults, RSS, cache misses, bandwidth.
    Memory,
    /// Off-CPU time: waits on locks, I/O, sleeps.
    Locks,
}

impl Mode {
    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hotspots => "hotspots",
            Mode::Memory => "memory",
            Mode::Locks => "locks",
        }
    }
}

/// Memory mode's default page-fault sampling period (see docs/memory.md "Cost").
pub const DEFAULT_FAULT_PERIOD: u64 = 4;

/// The event a mode samples by default, and what replaces it when the machine lacks it.
#[derive(Clone, Debug)]
pub struct ModeDefault {
    /// Preferred event.
    pub primary: &'static str,
    /// Software replacement when the primary cannot be opened.
    pub fallback: Option<&'static str>,
    /// Sample period to use (None: the mode's frequency, `-F`).
    pub period: Option<u64>,
    /// When neither primary nor fallback opens: skip with a one-line notice recorded in
    /// the manifest (true), or fail the collection (false).
    pub optional: bool,
    /// Ask for precise IPs (PEBS), lowering `precise_ip` until the kernel accepts it.
    pub precise: bool,
    /// What the samples weigh in the mode's metric: each sample is `period ×
    /// weight` units (memory mode: bytes per fault = the page size).
    pub weight: SampleWeight,
}

/// How finalize turns a sample into the mode's metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleWeight {
    /// One per sample (hotspots: samples).
    Samples,
    /// `period × page size` bytes (page faults in memory mode).
    PageBytes,
    /// Nanoseconds (off-CPU time in locks mode, from switch records).
    Nanoseconds,
    /// Events counted, not in the metric (LLC misses: ranked on their own).
    Events,
}

/// Default sampling events of a mode.
///
/// Memory mode samples one page fault in DEFAULT_FAULT_PERIOD, minor and major apart (each
/// sample weighs period × the page it mapped), and samples LLC misses when
/// the CPU has a PMU (optional; [`llc_miss_event`] picks the precise perfmon event of
/// the running CPU, `cache-misses` elsewhere).
pub fn mode_defaults(mode: Mode) -> Vec<ModeDefault> {
    match mode {
        Mode::Hotspots => vec![ModeDefault {
            primary: "cycles",
            fallback: Some("cpu-clock"),
            period: None,
            optional: false,
            precise: false,
            weight: SampleWeight::Samples,
        }],
        Mode::Memory => vec![
            ModeDefault {
                primary: "minor-faults",
                fallback: None,
                period: Some(DEFAULT_FAULT_PERIOD),
                optional: false,
                precise: false,
                weight: SampleWeight::PageBytes,
            },
            ModeDefault {
                primary: "major-faults",
                fallback: None,
                period: Some(DEFAULT_FAULT_PERIOD),
                optional: false,
                precise: false,
                weight: SampleWeight::PageBytes,
            },
            ModeDefault {
                primary: "cache-misses",
                fallback: None,
                period: Some(LLC_MISS_PERIOD),
                optional: true,
                precise: true,
                weight: SampleWeight::Events,
            },
        ],
        Mode::Locks => vec![ModeDefault {
            primary: "context-switches",
            fallback: None,
            period: Some(1),
            optional: false,
            precise: false,
            weight: SampleWeight::Nanoseconds,
        }],
    }
}

/// Sample period for LLC misses: a prime, so sampling does not lock onto loop strides.
pub const LLC_MISS_PERIOD: u64 = 10007;

/// Hotspots' counter group members read with each sample (PERF_SAMPLE_READ), where
/// the CPU has them.
pub const HOTSPOT_GROUP_MEMBERS: &[&str] = &["instructions", "cache-misses"];

/// The LLC-miss event memory mode samples on this CPU: the precise (PEBS) retired-load
/// miss event of its perfmon table (`MEM_LOAD_UOPS_RETIRED.L3_MISS` on Haswell,
/// `MEM_LOAD_RETIRED.L3_MISS` on Skylake-SP and later, `MEM_UOPS_RETIRED.L2_MISS_LOADS`
/// on KNL, which has no L3), else the generic `cache-misses`. None when the machine has
/// no hardware PMU at all (then memory mode says so once and goes on).
pub fn llc_miss_event(env: &EventEnv) -> Option<EventSpec> {
    let cpu_pmu = sysfs::pmu_names(&env.sysfs)
        .iter()
        .any(|p| p == "cpu" || p == "cpu_core");
    if !cpu_pmu {
        return None;
    }
    const CANDIDATES: &[&str] = &[
        "MEM_LOAD_RETIRED.L3_MISS",
        "MEM_LOAD_UOPS_RETIRED.L3_MISS",
        "MEM_UOPS_RETIRED.L2_MISS_LOADS",
    ];
    if let Some(t) = env.perfmon() {
        for c in CANDIDATES {
            if let Some(ev) = t.find(c)
                && let Ok(mut v) = encode_perfmon(ev, env)
                && let Some(mut s) = v.pop()
            {
                s.period = LLC_MISS_PERIOD;
                return Some(s);
            }
        }
    }
    let mut g = generic("cache-misses")?;
    g.period = LLC_MISS_PERIOD;
    g.precise = 0;
    Some(g)
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
