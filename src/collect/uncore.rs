//! Memory bandwidth from uncore counters, read periodically: `raw/<...>/counters.csv`.
//!
//! What is counted, where the machine has it (nothing is estimated or faked; a missing
//! part gives one notice, recorded in the manifest):
//!
//! | counter | Haswell-EP / Skylake-SP | Knights Landing |
//! |---|---|---|
//! | `dram_read_bytes` | `uncore_imc_N/cas_count_read/` (sysfs `.scale`/`.unit`) or `UNC_M_CAS_COUNT.RD` × 64 B | `UNC_M_CAS_COUNT.RD` on `iMC_DCLK` (`uncore_imc_N`) × 64 B |
//! | `dram_write_bytes` | `cas_count_write` / `UNC_M_CAS_COUNT.WR` | `UNC_M_CAS_COUNT.WR` × 64 B |
//! | `mcdram_read_bytes` | — | `UNC_E_RPQ_INSERTS` on `EDC_ECLK` (`uncore_edc_eclk_N`) × 64 B |
//! | `mcdram_write_bytes` | — | `UNC_E_WPQ_INSERTS` × 64 B |
//!
//! Uncore events count system-wide: each box is opened with pid = -1 on every CPU of its
//! PMU's `cpumask` (one per socket), which needs `perf_event_paranoid` ≤ 0 or
//! CAP_PERFMON. The bandwidth is the node's, not only the profiled program's.
//!
//! Format of counters.csv (CSV, header line, append-only, flushed each tick):
//!
//! ```text
//! time_ns,counter,value,multiplexed
//! 81234567890123,dram_read_bytes,0,0
//! 81234617890123,dram_read_bytes,104857600,0
//! ```
//!
//! `time_ns` is CLOCK_MONOTONIC ([`crate::util::monotonic_ns`]); `value` is cumulative
//! since the start of collection, summed over boxes and sockets, in bytes;
//! `multiplexed` is 1 when some box ran less than it was enabled and its count was
//! scaled by time_enabled / time_running. GB/s between two rows is Δvalue / Δtime.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::sampler_thread::SamplerThread;

pub use crate::events::bandwidth::{BandwidthCounter, BandwidthPlan, bandwidth_plan};
pub use crate::sidecars::SidecarError;
pub use crate::sidecars::counters::{
    BandwidthSummary, COLUMNS, CounterRow, bandwidth_summary, read_counters_csv,
};

struct OpenCounter {
    name: &'static str,
    bytes_per_count: f64,
    fds: Vec<perf_event::Counter>,
}

/// Reads the bandwidth counters every interval into counters.csv, on its own thread.
pub struct UncoreSampler {
    thread: Option<SamplerThread<Result<u64, SidecarError>>>,
    /// Notices: missing parts and events that could not be opened.
    pub notices: Vec<String>,
    /// Counters actually opened.
    pub opened: Vec<String>,
}

impl UncoreSampler {
    /// Open what the plan lists (system-wide, counting) and start reading every
    /// `interval` into `path`. Nothing opens on a machine without uncore PMUs: the
    /// sampler then has only notices, writes no file, and `stop` returns 0.
    pub fn start(
        plan: &BandwidthPlan,
        interval: Duration,
        path: &Path,
    ) -> Result<UncoreSampler, SidecarError> {
        let mut notices = plan.notices.clone();
        let mut open = Vec::new();
        for c in &plan.counters {
            let mut fds = Vec::new();
            let mut failed = None;
            'boxes: for s in &c.specs {
                for &cpu in &s.cpus {
                    let mut attr = crate::events::group::attr_for(s);
                    attr.read_format =
                        (perf_event_open_sys::bindings::PERF_FORMAT_TOTAL_TIME_ENABLED
                            | perf_event_open_sys::bindings::PERF_FORMAT_TOTAL_TIME_RUNNING)
                            as u64;
                    let mut b = perf_event::Builder::new(perf_event::events::Software::DUMMY);
                    *b.attrs_mut() = attr;
                    b.any_pid().one_cpu(cpu as usize);
                    match b.build() {
                        Ok(mut f) => {
                            if let Err(e) = f.enable() {
                                failed = Some((s.pmu.clone(), cpu, e));
                                break 'boxes;
                            }
                            fds.push(f);
                        }
                        Err(e) => {
                            failed = Some((s.pmu.clone(), cpu, e));
                            break 'boxes;
                        }
                    }
                }
            }
            match failed {
                None => open.push(OpenCounter {
                    name: c.name,
                    bytes_per_count: c.bytes_per_count,
                    fds,
                }),
                Some((pmu, cpu, e)) => notices.push(format!(
                    "memory: {} not measured: opening {} on {pmu} CPU {cpu} failed: {e}; system-wide uncore counting needs perf_event_paranoid <= 0 (sysctl kernel.perf_event_paranoid=0) or CAP_PERFMON",
                    c.name, c.event
                )),
            }
        }
        let opened: Vec<String> = open.iter().map(|c| c.name.to_string()).collect();
        if open.is_empty() {
            return Ok(UncoreSampler {
                thread: None,
                notices,
                opened,
            });
        }
        let out = crate::sidecars::create_timeline_csv(path, COLUMNS)?;
        let path = path.to_path_buf();
        let interval = interval.max(Duration::from_millis(1));
        let thread = SamplerThread::spawn("hwprof-uncore", move |stop| {
            run(open, interval, out, &path, stop)
        })
        .map_err(SidecarError::write(Path::new("(thread)")))?;
        Ok(UncoreSampler {
            thread: Some(thread),
            notices,
            opened,
        })
    }

    /// Take a last reading, close the counters and the file; returns the ticks taken.
    pub fn stop(self) -> Result<u64, SidecarError> {
        // A panicked thread (a bug) loses the ticks count, not the file.
        self.thread.and_then(SamplerThread::stop).unwrap_or(Ok(0))
    }
}

fn run(
    mut open: Vec<OpenCounter>,
    interval: Duration,
    mut out: BufWriter<std::fs::File>,
    path: &Path,
    stop: &AtomicBool,
) -> Result<u64, SidecarError> {
    let io = SidecarError::write(path);
    let mut ticks = 0;
    loop {
        let last = stop.load(Ordering::Acquire);
        let t = crate::util::monotonic_ns();
        for c in &mut open {
            let mut total = 0f64;
            let mut mux = false;
            for f in &mut c.fds {
                if let Ok(r) = f.read_count_and_time() {
                    let (en, run) = (r.time_enabled, r.time_running);
                    if run == 0 {
                        continue;
                    }
                    if run < en {
                        mux = true;
                        total += r.count as f64 * en as f64 / run as f64;
                    } else {
                        total += r.count as f64;
                    }
                }
            }
            let bytes = (total * c.bytes_per_count).round() as u64;
            writeln!(out, "{t},{},{bytes},{}", c.name, u8::from(mux)).map_err(io)?;
        }
        out.flush().map_err(io)?;
        ticks += 1;
        if last {
            break;
        }
        std::thread::park_timeout(interval);
    }
    Ok(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventEnv, sysfs};

    #[test]
    fn no_pmu_gives_one_notice_and_nothing_opened() {
        let p = bandwidth_plan(&EventEnv::sysfs_fixture("nopmu"));
        assert!(p.counters.is_empty());
        assert_eq!(p.notices.len(), 1, "{:?}", p.notices);
        assert!(p.notices[0].contains("uncore_imc"), "{}", p.notices[0]);
        let d = tempfile::tempdir().unwrap();
        let csv = d.path().join("counters.csv");
        let s = UncoreSampler::start(&p, Duration::from_millis(10), &csv).unwrap();
        assert!(s.opened.is_empty());
        assert_eq!(s.stop().unwrap(), 0);
        assert!(!csv.exists(), "no file when nothing was counted");
        // This machine (no PMU) plans the same way.
        let here = bandwidth_plan(&EventEnv::system());
        if !sysfs::pmu_names(Path::new("/sys"))
            .iter()
            .any(|p| p.starts_with("uncore_imc"))
        {
            assert!(here.counters.is_empty());
            assert_eq!(here.notices.len(), 1);
        }
    }

    #[test]
    fn a_plan_whose_events_cannot_open_becomes_a_notice() {
        // HSX fixture specs on this machine: the PMU type numbers do not exist here.
        let p = bandwidth_plan(&EventEnv::sysfs_fixture("hsx"));
        let d = tempfile::tempdir().unwrap();
        let s =
            UncoreSampler::start(&p, Duration::from_millis(10), &d.path().join("c.csv")).unwrap();
        assert!(s.opened.is_empty());
        assert_eq!(s.notices.len(), 2, "{:?}", s.notices);
        assert!(s.notices[0].contains("dram_read_bytes"));
    }
}
