//! The handler's cost counters, printed at exit when `HWPROF_AGENT_STATS` is set (the
//! per-capture figure of docs/performance.md, "Python handler"). Without it the handler
//! reads the clock once per capture (its time stamp), not twice.
//!
//! Times are wall-clock (CLOCK_MONOTONIC; the thread's CPU clock is a system call): a
//! handler preempted by another process counts the wait, and on a loaded machine a few
//! such runs move the mean by microseconds. So a histogram of the runs gives the median
//! as well, which preemption does not move.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// `HWPROF_AGENT_STATS` was set at start.
static ON: AtomicBool = AtomicBool::new(false);
/// Captures written to the ring.
pub static CAPTURES: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds from the handler's entry to the end of the captures written.
pub static CAPTURE_NS: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds in the handler for our SIGTRAPs (written or not).
pub static HANDLER_NS: AtomicU64 = AtomicU64::new(0);

/// Width of a histogram bucket, ns.
const BUCKET_NS: u64 = 100;
/// Buckets: 0 to 25.5 µs, the last one everything longer.
const BUCKETS: usize = 256;
static HISTOGRAM: [AtomicU64; BUCKETS] = [const { AtomicU64::new(0) }; BUCKETS];

/// Reads `HWPROF_AGENT_STATS`. Called once at start, outside any handler.
pub fn init() {
    ON.store(
        std::env::var_os("HWPROF_AGENT_STATS").is_some(),
        Ordering::Relaxed,
    );
}

/// Whether the counters are kept.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Counts one handler run that began at `t0` (CLOCK_MONOTONIC ns).
pub fn handler_done(t0: u64, written: bool) {
    let ns = crate::now_ns().saturating_sub(t0);
    HANDLER_NS.fetch_add(ns, Ordering::Relaxed);
    let b = ((ns / BUCKET_NS) as usize).min(BUCKETS - 1);
    if let Some(h) = HISTOGRAM.get(b) {
        h.fetch_add(1, Ordering::Relaxed);
    }
    if written {
        CAPTURES.fetch_add(1, Ordering::Relaxed);
        CAPTURE_NS.fetch_add(ns, Ordering::Relaxed);
    }
}

/// The `q` quantile (0..1) of the handler runs, µs (the middle of its bucket); 0 when
/// none ran.
pub fn handler_quantile_us(q: f64) -> f64 {
    let counts: Vec<u64> = HISTOGRAM
        .iter()
        .map(|h| h.load(Ordering::Relaxed))
        .collect();
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let want = ((total as f64 * q).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= want {
            return (i as u64 * BUCKET_NS + BUCKET_NS / 2) as f64 / 1000.0;
        }
    }
    (BUCKETS as u64 * BUCKET_NS) as f64 / 1000.0
}
