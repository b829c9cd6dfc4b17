//! `counters.csv`: memory bandwidth counters of a raw directory, written by
//! `collect::uncore`, read by finalize into per-counter GB/s summaries.
//!
//! Format (CSV, header line, append-only, flushed each tick):
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

use super::SidecarError;
use std::path::Path;

/// The header line of counters.csv.
pub const COLUMNS: &str = "time_ns,counter,value,multiplexed";

/// One counters.csv row.
#[derive(Clone, Debug, PartialEq)]
pub struct CounterRow {
    /// CLOCK_MONOTONIC ns.
    pub time_ns: u64,
    /// Counter name.
    pub counter: String,
    /// Cumulative value (bytes).
    pub value: u64,
    /// Scaled for multiplexing.
    pub multiplexed: bool,
}

/// Read counters.csv; a cut last line is dropped, a bad line elsewhere is an error.
pub fn read_counters_csv(path: &Path) -> Result<Vec<CounterRow>, SidecarError> {
    super::read_timeline_csv(path, COLUMNS, |l| {
        let f: Vec<&str> = l.split(',').collect();
        (f.len() == 4).then_some(())?;
        Some(CounterRow {
            time_ns: f[0].parse().ok()?,
            counter: f[1].to_string(),
            value: f[2].parse().ok()?,
            multiplexed: f[3].trim() == "1",
        })
    })
}

/// Bandwidth of one counter over the run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BandwidthSummary {
    /// Counter name.
    pub counter: String,
    /// Bytes over the whole run.
    pub total_bytes: u64,
    /// Mean GB/s (10^9 bytes per second) over the run.
    pub mean_gbs: f64,
    /// Highest GB/s over one interval.
    pub peak_gbs: f64,
    /// When the peak interval ended (CLOCK_MONOTONIC ns).
    pub peak_time_ns: u64,
    /// Some reading was scaled for multiplexing.
    pub multiplexed: bool,
    /// GB/s per interval: (end time ns, GB/s).
    pub timeline: Vec<(u64, f64)>,
}

/// Per-counter GB/s timelines and summaries from counters.csv rows.
pub fn bandwidth_summary(rows: &[CounterRow]) -> Vec<BandwidthSummary> {
    let mut names: Vec<&str> = rows.iter().map(|r| r.counter.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for n in names {
        let mut rs: Vec<&CounterRow> = rows.iter().filter(|r| r.counter == n).collect();
        rs.sort_by_key(|r| r.time_ns);
        let mut timeline = Vec::new();
        for w in rs.windows(2) {
            let dt = w[1].time_ns.saturating_sub(w[0].time_ns);
            if dt == 0 {
                continue;
            }
            let db = w[1].value.saturating_sub(w[0].value);
            timeline.push((w[1].time_ns, db as f64 / dt as f64));
        }
        let (first, last) = match (rs.first(), rs.last()) {
            (Some(a), Some(b)) => (a, b),
            _ => continue,
        };
        let total = last.value.saturating_sub(first.value);
        let span = last.time_ns.saturating_sub(first.time_ns);
        let (peak_time_ns, peak_gbs) = timeline
            .iter()
            .copied()
            .fold((0, 0.0), |b, x| if x.1 > b.1 { x } else { b });
        out.push(BandwidthSummary {
            counter: n.to_string(),
            total_bytes: total,
            mean_gbs: if span > 0 {
                total as f64 / span as f64
            } else {
                0.0
            },
            peak_gbs,
            peak_time_ns,
            multiplexed: rs.iter().any(|r| r.multiplexed),
            timeline,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbs_timeline_from_cumulative_bytes() {
        let read = |text| crate::util::read_as_file("counters.csv", text, read_counters_csv);
        // 1 GB in the first 100 ms (10 GB/s), 0.5 GB in the next 100 ms (5 GB/s).
        let rows = read(
            "time_ns,counter,value,multiplexed\n0,dram_read_bytes,0,0\n100000000,dram_read_bytes,1000000000,0\n200000000,dram_read_bytes,1500000000,1\n300000000,dram_read_b",
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        let s = bandwidth_summary(&rows);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].timeline, vec![(100000000, 10.0), (200000000, 5.0)]);
        assert_eq!((s[0].peak_gbs, s[0].peak_time_ns), (10.0, 100000000));
        assert_eq!(s[0].mean_gbs, 7.5);
        assert_eq!(s[0].total_bytes, 1500000000);
        assert!(s[0].multiplexed);
        assert!(read("time_ns,counter,value,multiplexed\nx,y\n1,a,2,0\n").is_err());
    }
}
