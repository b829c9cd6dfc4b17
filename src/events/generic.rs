//! perf's generic event names (`cycles`, `cpu-clock`, `LLC-load-misses`...) and their
//! `perf_event_attr` type and config, as `perf list` names them.

use perf_event_open_sys::bindings as sys;

use super::{EventKind, EventSpec};

// PERF_TYPE_HW_CACHE config: cache id | op << 8 | result << 16 (op read = 0).
const HW_CACHE_L1D: u64 = sys::PERF_COUNT_HW_CACHE_L1D as u64;
const HW_CACHE_LL: u64 = sys::PERF_COUNT_HW_CACHE_LL as u64;
const HW_CACHE_DTLB: u64 = sys::PERF_COUNT_HW_CACHE_DTLB as u64;
const HW_CACHE_MISS: u64 = (sys::PERF_COUNT_HW_CACHE_RESULT_MISS as u64) << 16;

pub(crate) const GENERIC: &[(&str, u32, u64, EventKind)] = &[
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
        "LLC-loads",
        sys::PERF_TYPE_HW_CACHE,
        HW_CACHE_LL,
        EventKind::Hardware,
    ),
    (
        "LLC-load-misses",
        sys::PERF_TYPE_HW_CACHE,
        HW_CACHE_LL | HW_CACHE_MISS,
        EventKind::Hardware,
    ),
    (
        "L1-dcache-loads",
        sys::PERF_TYPE_HW_CACHE,
        HW_CACHE_L1D,
        EventKind::Hardware,
    ),
    (
        "L1-dcache-load-misses",
        sys::PERF_TYPE_HW_CACHE,
        HW_CACHE_L1D | HW_CACHE_MISS,
        EventKind::Hardware,
    ),
    (
        "dTLB-load-misses",
        sys::PERF_TYPE_HW_CACHE,
        HW_CACHE_DTLB | HW_CACHE_MISS,
        EventKind::Hardware,
    ),
    (
        "dummy",
        sys::PERF_TYPE_SOFTWARE,
        sys::PERF_COUNT_SW_DUMMY as u64,
        EventKind::Software,
    ),
];

pub(super) fn generic(name: &str) -> Option<EventSpec> {
    let &(n, type_, config, kind) = GENERIC.iter().find(|g| g.0 == name)?;
    Some(EventSpec {
        name: n.to_string(),
        type_,
        config,
        kind,
        time_based: matches!(n, "cpu-clock" | "task-clock"),
        pmu: match kind {
            EventKind::Hardware => "hardware",
            _ => "software",
        }
        .to_string(),
        ..Default::default()
    })
}
