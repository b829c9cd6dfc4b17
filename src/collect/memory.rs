//! Memory mode's samplers beside the perf events: the RSS timeline of the process tree
//! (`rss.csv`), the uncore bandwidth counters (`counters.csv`), and the launched
//! process's exact peak RSS at its exit (`peak.csv`).

use std::path::Path;
use std::time::Duration;

use super::rss::{self, ExitReading, RssSampler};
use super::uncore::{UncoreSampler, bandwidth_plan};
use super::{CollectError, CollectOptions, notice};
use crate::events;

/// The memory-mode samplers running beside the perf events.
pub(super) struct MemorySamplers {
    rss: RssSampler,
    uncore: UncoreSampler,
}

/// Start the RSS timeline of the tree under `root_pid` and the uncore bandwidth counters.
pub(super) fn start(
    opts: &CollectOptions,
    root_pid: u32,
    raw_dir: &Path,
    notices: &mut Vec<String>,
) -> Result<MemorySamplers, CollectError> {
    let rss = RssSampler::start(root_pid, opts.rss_interval, &raw_dir.join("rss.csv"))
        .map_err(|e| CollectError::ResultDir(e.to_string()))?;
    let plan = bandwidth_plan(&events::EventEnv::system());
    let uncore = UncoreSampler::start(
        &plan,
        opts.rss_interval.max(Duration::from_millis(100)),
        &raw_dir.join("counters.csv"),
    )
    .map_err(|e| CollectError::ResultDir(e.to_string()))?;
    for n in &uncore.notices {
        notice(opts.quiet, notices, n.clone());
    }
    Ok(MemorySamplers { rss, uncore })
}

/// Stop both, the RSS timeline with the launched process's exit reading.
pub(super) fn stop(
    m: MemorySamplers,
    exit: Option<ExitReading>,
    quiet: bool,
    notices: &mut Vec<String>,
) {
    if let Err(e) = m.rss.stop_at_exit(exit) {
        notice(
            quiet,
            notices,
            format!("memory: RSS timeline incomplete: {e}"),
        );
    }
    if let Err(e) = m.uncore.stop() {
        notice(
            quiet,
            notices,
            format!("memory: bandwidth timeline incomplete: {e}"),
        );
    }
}

/// The launched process's exact peak RSS (the timeline is polled), from its rusage.
pub(super) fn write_peak(
    raw_dir: &Path,
    pid: u32,
    maxrss_bytes: u64,
    quiet: bool,
    notices: &mut Vec<String>,
) {
    if let Err(e) = rss::write_peak_csv(&raw_dir.join("peak.csv"), pid, maxrss_bytes) {
        notice(
            quiet,
            notices,
            format!("memory: peak RSS of the launched process not written: {e}"),
        );
    }
}
