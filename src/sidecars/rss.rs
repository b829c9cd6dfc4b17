//! The RSS sidecars of a raw directory, written by `collect::rss`, read by finalize:
//!
//! `rss.csv` (CSV, one header line, append-only, flushed after every tick):
//!
//! ```text
//! time_ns,pid,rss_bytes
//! 81234567890123,4242,1409024
//! 81234567890123,4250,268582912
//! ```
//!
//! - `time_ns`: CLOCK_MONOTONIC nanoseconds ([`crate::util::monotonic_ns`]), the clock
//!   of the perf samples; every row of one tick carries the same time, so the tree's
//!   total at an instant is the sum of the rows with that time.
//! - `pid`: a process of the tree; `rss_bytes`: its resident set size.
//!
//! A crash of hwprof loses at most the tick being written; [`read_rss_csv`] drops a cut
//! last line. `hwm.csv` ([`HWM_FILE`]: `pid,vmhwm_bytes`) and `peak.csv`
//! (`pid,maxrss_bytes`) hold high-water marks. How the collector samples is in
//! `collect/rss.rs`.

use super::SidecarError;
use std::collections::HashMap;
use std::path::Path;

/// Errors of the RSS sampler.
#[derive(Debug, thiserror::Error)]
pub enum RssError {
    /// rss.csv or hwm.csv could not be written, or rss.csv read.
    #[error("RSS timeline {0}")]
    Sidecar(#[from] SidecarError),
    /// The sampler thread panicked (a bug).
    #[error("the RSS sampler thread stopped abnormally; the timeline may be incomplete")]
    Thread,
}

/// The header line of rss.csv.
pub const COLUMNS: &str = "time_ns,pid,rss_bytes";

/// Read an rss.csv: `(time_ns, pid, rss_bytes)` rows in file order. A cut last line
/// (no newline, or not three numbers) is dropped; a bad line elsewhere is an error.
pub fn read_rss_csv(path: &Path) -> Result<Vec<(u64, u32, u64)>, SidecarError> {
    super::read_timeline_csv(path, COLUMNS, |l| {
        let mut f = l.split(',');
        let t = f.next()?.trim().parse::<u64>().ok()?;
        let p = f.next()?.trim().parse::<u32>().ok()?;
        let r = f.next()?.trim().parse::<u64>().ok()?;
        Some((t, p, r))
    })
}

/// The sampler's high-water marks, next to rss.csv: `pid,vmhwm_bytes`, the highest
/// `VmHWM` read per process (a lower bound: the last reading precedes the exit by up to
/// one interval). Written when the sampler stops.
pub const HWM_FILE: &str = "hwm.csv";

/// Write the sampler's high-water marks ([`HWM_FILE`]).
pub fn write_hwm_csv(path: &Path, hwm: &HashMap<u32, u64>) -> std::io::Result<()> {
    let mut rows: Vec<(&u32, &u64)> = hwm.iter().collect();
    rows.sort_unstable();
    let mut text = String::from("pid,vmhwm_bytes\n");
    for (pid, b) in rows {
        text.push_str(&format!("{pid},{b}\n"));
    }
    crate::util::write_private_file(path, text.as_bytes())
}

/// Write `peak.csv`: `pid,maxrss_bytes`, the kernel's high-water mark of a process
/// reaped by the collector (`ru_maxrss`).
pub fn write_peak_csv(path: &Path, pid: u32, bytes: u64) -> std::io::Result<()> {
    crate::util::write_private_file(
        path,
        format!("pid,maxrss_bytes\n{pid},{bytes}\n").as_bytes(),
    )
}

/// Read a `peak.csv` written by [`write_peak_csv`] (or an `hwm.csv`, same layout):
/// `(pid, bytes)` rows; a missing or
/// unreadable file gives none (older results directories have none).
pub fn read_peak_csv(path: &Path) -> Vec<(u32, u64)> {
    let Ok(text) = crate::raw::bounded::read_limited_string(path, crate::raw::bounded::Kind::Small)
    else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let (p, b) = l.split_once(',')?;
            Some((p.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect()
}

/// The tree's total RSS over time from per-process readings `(time_ns, process,
/// rss_bytes)` (any order): at each instant, the sum of each live process's latest
/// reading, a process being live from its first to its last reading. Sorted by time.
pub fn summed_timeline<K: Copy + Eq + std::hash::Hash>(rows: &[(u64, K, u64)]) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, K, u64)> = rows.to_vec();
    sorted.sort_by_key(|r| r.0);
    let mut last_seen: HashMap<K, u64> = HashMap::new();
    for &(t, k, _) in &sorted {
        last_seen.insert(k, t);
    }
    let mut current: HashMap<K, u64> = HashMap::new();
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let t = sorted[i].0;
        while i < sorted.len() && sorted[i].0 == t {
            current.insert(sorted[i].1, sorted[i].2);
            i += 1;
        }
        current.retain(|k, _| last_seen.get(k).is_some_and(|&l| l >= t));
        out.push((t, current.values().sum()));
    }
    out
}

/// Peak of [`summed_timeline`]: (bytes, time_ns), the first instant it was reached.
pub fn summed_peak<K: Copy + Eq + std::hash::Hash>(rows: &[(u64, K, u64)]) -> Option<(u64, u64)> {
    summed_timeline(rows)
        .into_iter()
        .fold(None, |best: Option<(u64, u64)>, (t, v)| match best {
            Some((b, _)) if b >= v => best,
            _ => Some((v, t)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_drops_a_cut_last_line_only() {
        let read = |text| crate::util::read_as_file("rss.csv", text, read_rss_csv);
        assert_eq!(
            read("time_ns,pid,rss_bytes\n10,1,4096\n20,1,8192\n30,1,81").unwrap(),
            vec![(10, 1, 4096), (20, 1, 8192)]
        );
        let e = read("time_ns,pid,rss_bytes\n10,1,4096\n20,1\n30,1,8192\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        let rows = read("time_ns,pid,rss_bytes\n10,1,4096\n20,").unwrap();
        assert_eq!(rows, vec![(10, 1, 4096)]);
    }

    #[test]
    fn summed_timeline_follows_processes_coming_and_going() {
        let rows = [
            (10, 1u32, 100),
            (20, 1, 100),
            (20, 2, 50),
            (30, 1, 120),
            (30, 2, 60),
            (40, 1, 90), // 2 exited after 30
        ];
        assert_eq!(
            summed_timeline(&rows),
            vec![(10, 100), (20, 150), (30, 180), (40, 90)]
        );
        assert_eq!(summed_peak(&rows), Some((180, 30)));
        assert_eq!(summed_peak::<u32>(&[]), None);
    }
}
