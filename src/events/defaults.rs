//! What each mode samples by default (`--mode`), what replaces a missing event, and the
//! LLC-miss event of the running CPU.

use super::generic::generic;
use super::resolve::encode_perfmon;
use super::{EventEnv, EventSpec, sysfs};

/// Collection modes: what is sampled, and the metric profiles of the mode rank by.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
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
        Mode::Memory => {
            let faults = |primary| ModeDefault {
                primary,
                fallback: None,
                period: Some(DEFAULT_FAULT_PERIOD),
                optional: false,
                precise: false,
                weight: SampleWeight::PageBytes,
            };
            vec![
                faults("minor-faults"),
                faults("major-faults"),
                ModeDefault {
                    primary: "cache-misses",
                    fallback: None,
                    period: Some(LLC_MISS_PERIOD),
                    optional: true,
                    precise: true,
                    weight: SampleWeight::Events,
                },
            ]
        }
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
