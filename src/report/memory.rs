//! `report --view memory`: where the memory goes and how hard memory is pushed.
//!
//! Reads only profile.db ([`Profile`]): the `rss` table (per-process RSS timeline from
//! rss.csv), the page-fault samples (value = bytes faulted in = faults × page size,
//! `minor-faults` and `major-faults` as separate events), and the meta keys
//! `bandwidth` (JSON list of [`BandwidthSummary`], from counters.csv) and `notices`
//! (the manifest's notices; those starting `memory:` name parts not measured).
//!
//! - text: peak RSS (summed over the processes at each instant) and when, per-process
//!   peaks, a timeline summary, the functions and stacks that faulted most bytes, and
//!   bandwidth in GB/s;
//! - CSV: one row per function, the hotspots columns in bytes
//!   `function,module,file,line,self,self_pct,total,total_pct` then
//!   `minor_bytes,major_bytes` (self, by fault kind);
//! - JSON: `{mode, metric: "bytes", total, peak_rss_bytes, peak_time_ns, peak_time_s,
//!   processes: [{pid, command, peak_rss_bytes, peak_time_s}], timeline: [{t_s,
//!   rss_bytes}], functions: [...], stacks: [{frames, bytes, minor_bytes, major_bytes,
//!   pct}], llc_misses: [{event, function, module, file, line, samples}], bandwidth: [...],
//!   notices: [...]}`. Times `*_s` are seconds since the first
//!   RSS reading.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::ReportFormat;
use super::table::{binary_bytes, csv_line, pct, round2};
use crate::profile::Profile;
use crate::profile::stacks::FramesFilter;
use crate::profile::stacks::apply_frames_filter;
use crate::sidecars::counters::BandwidthSummary;
use crate::sidecars::rss::{summed_peak, summed_timeline};

/// Peak of the RSS summed across processes at each instant: (bytes, time_ns).
pub fn peak_rss(p: &Profile) -> Option<(u64, u64)> {
    summed_peak(&rss_rows(p))
}

fn rss_rows(p: &Profile) -> Vec<(u64, usize, u64)> {
    p.rss
        .iter()
        .map(|r| (r.time_ns, r.process, r.rss_bytes))
        .collect()
}

fn is_major(p: &Profile, event: usize) -> bool {
    p.events
        .get(event)
        .is_some_and(|e| e.name.contains("major") || e.name.contains("maj"))
}

/// A function's bytes.
#[derive(Clone, Debug, Default)]
struct FnRow {
    name: String,
    module: String,
    file: Option<String>,
    line: Option<u32>,
    self_: u64,
    total: u64,
    minor: u64,
    major: u64,
}

/// One stack's bytes.
#[derive(Clone, Debug, Default)]
struct StackRow {
    frames: Vec<String>,
    bytes: u64,
    minor: u64,
    major: u64,
}

fn fault_samples(p: &Profile) -> impl Iterator<Item = &crate::profile::SampleRow> {
    // Only fault events weigh bytes; LLC-miss samples (counts) are ranked apart.
    p.samples.iter().filter(|s| {
        p.events
            .get(s.event)
            .is_none_or(|e| e.name.contains("fault") || p.events.len() == 1)
    })
}

fn aggregate(p: &Profile, frames: FramesFilter) -> (Vec<FnRow>, Vec<StackRow>, u64) {
    let mut fns: HashMap<usize, FnRow> = HashMap::new();
    let mut stacks: HashMap<Option<usize>, StackRow> = HashMap::new();
    let mut total = 0u64;
    for s in fault_samples(p) {
        total += s.value;
        let major = is_major(p, s.event);
        let frames = apply_frames_filter(p, p.stack_frames(s.stack), frames);
        let funcs: Vec<usize> = frames
            .iter()
            .filter_map(|&f| p.frames.get(f).map(|fr| fr.function))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for (i, &f) in funcs.iter().enumerate() {
            let leaf = i + 1 == funcs.len();
            let e = fns.entry(f).or_insert_with(|| {
                let func = p.functions.get(f);
                FnRow {
                    name: func.map(|x| x.name.clone()).unwrap_or_default(),
                    module: func.map(|x| x.module.clone()).unwrap_or_default(),
                    file: func.and_then(|x| x.file.clone()),
                    line: func.and_then(|x| x.start_line),
                    ..Default::default()
                }
            });
            if seen.insert(f) {
                e.total += s.value;
            }
            if leaf {
                e.self_ += s.value;
                if major {
                    e.major += s.value;
                } else {
                    e.minor += s.value;
                }
            }
        }
        let st = stacks.entry(s.stack).or_insert_with(|| StackRow {
            frames: funcs
                .iter()
                .filter_map(|&f| p.functions.get(f).map(|x| x.name.clone()))
                .collect(),
            ..Default::default()
        });
        st.bytes += s.value;
        if major {
            st.major += s.value;
        } else {
            st.minor += s.value;
        }
    }
    let mut fns: Vec<FnRow> = fns.into_values().collect();
    fns.sort_by(|a, b| {
        b.total
            .cmp(&a.total)
            .then(b.self_.cmp(&a.self_))
            .then(a.name.cmp(&b.name))
    });
    let mut stacks: Vec<StackRow> = stacks.into_values().collect();
    stacks.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.frames.cmp(&b.frames)));
    (fns, stacks, total)
}

/// `total total% self self%` columns of the text view.
fn byte_cells(total: u64, self_: u64, all: u64) -> String {
    format!(
        "{:>11} {:>6.2}% {:>11} {:>6.2}%",
        bytes_h(total),
        round2(pct(total, all)),
        bytes_h(self_),
        round2(pct(self_, all))
    )
}

/// Bytes with a binary unit and a space: `512 B`, `1.5 MiB`.
fn bytes_h(b: u64) -> String {
    binary_bytes(b, " ")
}

/// Samples of non-fault events (LLC misses) by leaf source line, most first.
struct MissRow {
    event: String,
    function: String,
    module: String,
    file: Option<String>,
    line: Option<u32>,
    samples: u64,
}

/// Samples of non-fault events (LLC misses), by the leaf frame: its function and
/// source line (precise events put the sample at the missing load).
fn miss_rows(p: &Profile) -> Vec<MissRow> {
    let mut m: HashMap<(usize, usize), u64> = HashMap::new();
    for s in &p.samples {
        let Some(ev) = p.events.get(s.event) else {
            continue;
        };
        if ev.name.contains("fault") || p.events.len() == 1 {
            continue;
        }
        let leaf = p
            .stack_frames(s.stack)
            .last()
            .copied()
            .unwrap_or(usize::MAX);
        *m.entry((s.event, leaf)).or_default() += s.count;
    }
    let mut v: Vec<MissRow> = m
        .into_iter()
        .map(|((e, fr), c)| {
            let frame = p.frames.get(fr);
            let func = frame.and_then(|f| p.functions.get(f.function));
            MissRow {
                event: p.events[e].name.clone(),
                function: func
                    .map(|x| x.name.clone())
                    .unwrap_or_else(|| "[unknown]".into()),
                module: func.map(|x| x.module.clone()).unwrap_or_default(),
                file: frame.and_then(|f| f.file.clone()),
                line: frame.and_then(|f| f.line),
                samples: c,
            }
        })
        .collect();
    // Most samples first, then by function and line.
    v.sort_by(|a, b| (&b.samples, &a.function, &a.line).cmp(&(&a.samples, &b.function, &b.line)));
    v
}

/// Bytes faulted in pages larger than the base page (meta `huge_page_bytes`).
fn huge_page_bytes(p: &Profile) -> u64 {
    p.meta_str("huge_page_bytes").parse().unwrap_or(0)
}

/// A high-water mark of `pid` from meta `key` (`peak_rss_hwm`: ru_maxrss where the
/// collector reaped it; `peak_rss_vmhwm`: the RSS sampler's last VmHWM reading).
fn hwm_in(p: &Profile, key: &str, pid: u32) -> Option<u64> {
    let m: HashMap<String, u64> = serde_json::from_str(p.meta_str(key)).ok()?;
    m.get(&pid.to_string()).copied()
}

/// The kernel's exact high-water mark of `pid`, where the collector reaped it.
fn hwm_of(p: &Profile, pid: u32) -> Option<u64> {
    hwm_in(p, "peak_rss_hwm", pid)
}

/// Where a process's peak comes from, best first.
const SRC_RU_MAXRSS: &str = "ru_maxrss";
const SRC_VMHWM: &str = "VmHWM";
const SRC_TIMELINE: &str = "timeline";

/// One process's peak.
struct ProcPeak {
    pid: u32,
    command: String,
    bytes: u64,
    time_ns: u64,
    /// [`SRC_RU_MAXRSS`] (exact), [`SRC_VMHWM`] (polled, a lower bound) or
    /// [`SRC_TIMELINE`] (polled VmRSS).
    source: &'static str,
}

/// Per-process peaks, largest first: the kernel's high-water mark (ru_maxrss for the
/// launched process, else the last VmHWM the sampler read), the timeline's maximum when
/// neither is known; the time is that of the timeline's highest reading.
fn process_peaks(p: &Profile) -> Vec<ProcPeak> {
    let mut best: HashMap<usize, (u64, u64)> = HashMap::new();
    for r in &p.rss {
        let e = best.entry(r.process).or_insert((0, r.time_ns));
        if r.rss_bytes > e.0 {
            *e = (r.rss_bytes, r.time_ns);
        }
    }
    let mut v: Vec<ProcPeak> = best
        .into_iter()
        .map(|(i, (b, t))| {
            let pr = p.processes.get(i);
            let pid = pr.map(|x| x.pid).unwrap_or(0);
            // The kernel's high-water mark, or a reading above it: the kernel's RSS
            // counters are per-CPU and read approximately (Linux 6.2 and later), so a
            // statm reading at the top can pass the VmHWM read in the same tick by a few
            // pages (a CI run: a forked child's 96.8 MiB top read as `timeline`).
            let (bytes, source) = match (hwm_of(p, pid), hwm_in(p, "peak_rss_vmhwm", pid)) {
                (Some(h), _) => (h.max(b), SRC_RU_MAXRSS),
                (None, Some(h)) => (h.max(b), SRC_VMHWM),
                _ => (b, SRC_TIMELINE),
            };
            ProcPeak {
                pid,
                command: pr.map(|x| x.command.clone()).unwrap_or_default(),
                bytes,
                time_ns: t,
                source,
            }
        })
        .collect();
    v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.pid.cmp(&b.pid)));
    v
}

/// One source line's bytes faulted in.
struct LineRow {
    function: String,
    file: Option<String>,
    line: Option<u32>,
    self_: u64,
    total: u64,
}

/// Bytes faulted in by source line, as `--view lines` counts them: `total` over every
/// stack through the line (the user's line calling memset or `np.ones` carries the
/// bytes of the library code below it), `self` where the line is the leaf; after the
/// `--frames` filter (at `--frames python` native code below a Python frame folds into
/// its line). Frames without a line are left out. Most total first.
fn line_rows(p: &Profile, frames: FramesFilter) -> Vec<LineRow> {
    type Key = (usize, Option<String>, Option<u32>);
    let mut m: HashMap<Key, (u64, u64)> = HashMap::new();
    for s in fault_samples(p) {
        let fs = apply_frames_filter(p, p.stack_frames(s.stack), frames);
        let n = fs.len();
        let mut seen = std::collections::HashSet::new();
        for (i, fr) in fs.iter().filter_map(|&f| p.frames.get(f)).enumerate() {
            if fr.line.is_none() {
                continue;
            }
            let file = fr
                .file
                .clone()
                .or_else(|| p.functions.get(fr.function).and_then(|x| x.file.clone()));
            let key = (fr.function, file, fr.line);
            let e = m.entry(key.clone()).or_default();
            if i + 1 == n {
                e.0 += s.value;
            }
            if seen.insert(key) {
                e.1 += s.value;
            }
        }
    }
    let mut v: Vec<LineRow> = m
        .into_iter()
        .map(|((f, file, line), (self_, total))| LineRow {
            function: p
                .functions
                .get(f)
                .map(|x| x.name.clone())
                .unwrap_or_default(),
            file,
            line,
            self_,
            total,
        })
        .collect();
    // Most samples first (inclusive, then self), then by file and line.
    v.sort_by(|a, b| {
        (&b.total, &b.self_, &a.file, &a.line).cmp(&(&a.total, &a.self_, &b.file, &b.line))
    });
    v
}

/// At most `n` points of the summed timeline, keeping each bucket's maximum.
fn downsample(tl: &[(u64, u64)], n: usize) -> Vec<(u64, u64)> {
    if tl.len() <= n || n == 0 {
        return tl.to_vec();
    }
    let per = tl.len().div_ceil(n);
    tl.chunks(per)
        .filter_map(|c| c.iter().copied().max_by_key(|x| x.1))
        .collect()
}

fn bandwidth(p: &Profile) -> Vec<BandwidthSummary> {
    serde_json::from_str(p.meta_str("bandwidth")).unwrap_or_default()
}

fn notices(p: &Profile) -> Vec<String> {
    let all: Vec<String> = serde_json::from_str(p.meta_str("notices")).unwrap_or_default();
    all.into_iter()
        .filter(|n| n.starts_with("memory:"))
        .collect()
}

/// Render `report --view memory`.
/// `frames` (`--frames`) folds native frames below a Python frame into it, as in the
/// hotspots view.
pub fn memory_view(p: &Profile, format: ReportFormat, top: usize, frames: FramesFilter) -> String {
    let top = top.max(1);
    let (fns, stacks, total) = aggregate(p, frames);
    let lines = line_rows(p, frames);
    let rows = rss_rows(p);
    let timeline = summed_timeline(&rows);
    let t0 = timeline.first().map(|x| x.0).unwrap_or(0);
    let secs = |t: u64| (t.saturating_sub(t0) as f64 / 1e9 * 1000.0).round() / 1000.0;
    let peak = summed_peak(&rows);
    let bw = bandwidth(p);
    let notes = notices(p);
    let misses = miss_rows(p);
    match format {
        ReportFormat::Csv => {
            let mut s = String::from(
                "function,module,file,line,self,self_pct,total,total_pct,minor_bytes,major_bytes\n",
            );
            for f in fns.iter().take(top) {
                s.push_str(&csv_line(&[
                    f.name.clone(),
                    f.module.clone(),
                    f.file.clone().unwrap_or_default(),
                    f.line.map(|l| l.to_string()).unwrap_or_default(),
                    f.self_.to_string(),
                    round2(pct(f.self_, total)).to_string(),
                    f.total.to_string(),
                    round2(pct(f.total, total)).to_string(),
                    f.minor.to_string(),
                    f.major.to_string(),
                ]));
            }
            s
        }
        ReportFormat::Json => {
            let v = json!({
                "mode": p.meta_str("mode"),
                "metric": "bytes",
                "total": total,
                "minor_bytes": stacks.iter().map(|s| s.minor).sum::<u64>(),
                "major_bytes": stacks.iter().map(|s| s.major).sum::<u64>(),
                "peak_rss_bytes": peak.map(|x| x.0),
                "peak_time_ns": peak.map(|x| x.1),
                "peak_time_s": peak.map(|x| secs(x.1)),
                "processes": process_peaks(p).iter().map(|x| json!({
                    "pid": x.pid, "command": x.command, "peak_rss_bytes": x.bytes,
                    "peak_time_s": secs(x.time_ns), "peak_source": x.source
                })).collect::<Vec<Value>>(),
                "lines": lines.iter().take(top).map(|l| json!({
                    "function": l.function, "file": l.file, "line": l.line,
                    "self": l.self_, "self_pct": round2(pct(l.self_, total)),
                    "total": l.total, "total_pct": round2(pct(l.total, total))
                })).collect::<Vec<Value>>(),
                "timeline": downsample(&timeline, 500).iter().map(|(t, b)| json!({
                    "t_s": secs(*t), "rss_bytes": b
                })).collect::<Vec<Value>>(),
                "functions": fns.iter().take(top).map(|f| json!({
                    "function": f.name, "module": f.module, "file": f.file, "line": f.line,
                    "self": f.self_, "self_pct": round2(pct(f.self_, total)),
                    "total": f.total, "total_pct": round2(pct(f.total, total)),
                    "minor_bytes": f.minor, "major_bytes": f.major
                })).collect::<Vec<Value>>(),
                "stacks": stacks.iter().take(top).map(|s| json!({
                    "frames": s.frames, "bytes": s.bytes, "minor_bytes": s.minor,
                    "major_bytes": s.major, "pct": round2(pct(s.bytes, total)),
                    "peak_pct": peak.map(|x| round2(pct(s.bytes, x.0)))
                })).collect::<Vec<Value>>(),
                "huge_page_bytes": huge_page_bytes(p),
                "peak_rss_source": "timeline: summed over the processes alive at each reading; processes[].peak_rss_bytes is the kernel's high-water mark: ru_maxrss (exact) for the launched process, the last VmHWM read (a lower bound) for others; peak_source says which",
                "llc_misses": misses.iter().take(top).map(|r| json!({
                    "event": r.event, "function": r.function, "module": r.module,
                    "file": r.file, "line": r.line, "samples": r.samples
                })).collect::<Vec<Value>>(),
                "bandwidth": bw.iter().map(|b| json!({
                    "counter": b.counter, "total_bytes": b.total_bytes,
                    "mean_gbs": b.mean_gbs, "peak_gbs": b.peak_gbs,
                    "peak_time_s": secs(b.peak_time_ns), "multiplexed": b.multiplexed
                })).collect::<Vec<Value>>(),
                "notices": notes,
            });
            format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        ReportFormat::Text => {
            let mut s = String::new();
            match peak {
                Some((b, t)) => s.push_str(&format!(
                    "Peak RSS: {} at {:.3} s (timeline, summed over {} process{})\n",
                    bytes_h(b),
                    secs(t),
                    process_peaks(p).len(),
                    if process_peaks(p).len() == 1 {
                        ""
                    } else {
                        "es"
                    }
                )),
                None => s.push_str("Peak RSS: not recorded (no RSS timeline in this profile)\n"),
            }
            let peaks = process_peaks(p);
            if let Some(x) = peaks.iter().find(|x| x.source == SRC_RU_MAXRSS) {
                s.push_str(&format!(
                    "  launched process {}: peak {} (kernel high-water mark, ru_maxrss)\n",
                    x.pid,
                    bytes_h(x.bytes)
                ));
            }
            if peaks.len() > 1 {
                s.push_str(
                    "  per process (ru_maxrss: exact; VmHWM: last reading, a lower bound; timeline: polled VmRSS):\n",
                );
                for x in peaks.iter().take(top) {
                    s.push_str(&format!(
                        "    pid {:<8} {:>12} {:<9} at {:>8.3} s  {}\n",
                        x.pid,
                        bytes_h(x.bytes),
                        x.source,
                        secs(x.time_ns),
                        x.command
                    ));
                }
            }
            if timeline.len() >= 2 {
                let dur = secs(timeline.last().map(|x| x.0).unwrap_or(t0));
                s.push_str(&format!(
                    "\nRSS timeline: {} readings over {:.3} s; start {}, end {}\n",
                    timeline.len(),
                    dur,
                    bytes_h(timeline[0].1),
                    bytes_h(timeline.last().map(|x| x.1).unwrap_or(0))
                ));
                let width = 40.0;
                let max = peak.map(|x| x.0).unwrap_or(1).max(1) as f64;
                for (t, b) in downsample(&timeline, 12) {
                    let bar = "#".repeat(((b as f64 / max) * width).round() as usize);
                    s.push_str(&format!("  {:>8.3} s {:>11}  {bar}\n", secs(t), bytes_h(b)));
                }
            }
            let minor: u64 = stacks.iter().map(|x| x.minor).sum();
            let major: u64 = stacks.iter().map(|x| x.major).sum();
            s.push_str(&format!(
                "\nBytes faulted in: {} (minor {}, major {}; in huge pages {})\n",
                bytes_h(total),
                bytes_h(minor),
                bytes_h(major),
                bytes_h(huge_page_bytes(p))
            ));
            if total > 0 {
                s.push_str(&format!(
                    "{:>11} {:>7} {:>11} {:>7}  function (module)\n",
                    "total", "total%", "self", "self%"
                ));
                for f in fns.iter().take(top) {
                    s.push_str(&format!(
                        "{}  {} ({})\n",
                        byte_cells(f.total, f.self_, total),
                        f.name,
                        f.module
                    ));
                }
                s.push_str(&format!(
                    "\nLines (total: every stack through the line{}):\n{:>11} {:>7} {:>11} {:>7}  file:line  function\n",
                    if frames == FramesFilter::Python { "; Python frames" } else { "" },
                    "total",
                    "total%",
                    "self",
                    "self%"
                ));
                for l in lines.iter().take(top) {
                    s.push_str(&format!(
                        "{}  {}:{}  {}\n",
                        byte_cells(l.total, l.self_, total),
                        l.file.as_deref().unwrap_or("?"),
                        l.line.map(|x| x.to_string()).unwrap_or_default(),
                        l.function
                    ));
                }
                s.push_str("\nTop growth stacks (outermost first):\n");
                for st in stacks.iter().take(top.min(5)) {
                    s.push_str(&format!(
                        "{:>11} {:>6.2}%  {:>6.2}% of the peak  (minor {}, major {})\n      {}\n",
                        bytes_h(st.bytes),
                        round2(pct(st.bytes, total)),
                        round2(pct(st.bytes, peak.map(|x| x.0).unwrap_or(0))),
                        bytes_h(st.minor),
                        bytes_h(st.major),
                        if st.frames.is_empty() {
                            "[no frames]".to_string()
                        } else {
                            st.frames.join(" > ")
                        }
                    ));
                }
            }
            if !misses.is_empty() {
                s.push_str("\nLLC-miss samples by function and line:\n");
                for r in misses.iter().take(top) {
                    let at = match (&r.file, r.line) {
                        (Some(f), Some(l)) => format!(" {f}:{l}"),
                        _ => String::new(),
                    };
                    s.push_str(&format!(
                        "  {:>10}  {} ({}){at}  [{}]\n",
                        r.samples, r.function, r.module, r.event
                    ));
                }
            }
            if !bw.is_empty() {
                s.push_str("\nMemory bandwidth (GB/s = 1e9 bytes/s):\n");
                for b in &bw {
                    s.push_str(&format!(
                        "  {:<20} mean {:>7.2}  peak {:>7.2} at {:.3} s  total {}{}\n",
                        b.counter,
                        b.mean_gbs,
                        b.peak_gbs,
                        secs(b.peak_time_ns),
                        bytes_h(b.total_bytes),
                        if b.multiplexed {
                            "  (multiplexed: scaled)"
                        } else {
                            ""
                        }
                    ));
                }
            }
            for n in &notes {
                s.push_str(&format!("notice: {n}\n"));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{EventRow, FrameKind, Function, Process, RssPoint, Thread};

    /// A profile with known bytes: main>big_alloc>touch 256 MiB minor, main>small_alloc>
    /// touch 16 MiB minor, main 4 MiB major; RSS of two processes.
    fn fixture() -> Profile {
        let mut w = crate::profile::ProfileWriter::default();
        let f = |w: &mut crate::profile::ProfileWriter, n: &str| {
            let func = w.function(Function {
                name: n.into(),
                module: "touch256".into(),
                file: None,
                start_line: None,
                kind: FrameKind::Native,
            });
            w.frame(crate::profile::Frame {
                function: func,
                file: None,
                line: Some(10),
            })
        };
        let main = f(&mut w, "main");
        let big = f(&mut w, "big_alloc");
        let small = f(&mut w, "small_alloc");
        let touch = f(&mut w, "map_and_touch");
        w.profile.events.push(EventRow {
            name: "minor-faults".into(),
            ..Default::default()
        });
        w.profile.events.push(EventRow {
            name: "major-faults".into(),
            ..Default::default()
        });
        w.profile.processes.push(Process {
            pid: 100,
            command: "touch256".into(),
            ..Default::default()
        });
        w.profile.processes.push(Process {
            pid: 101,
            command: "touch256".into(),
            ..Default::default()
        });
        w.profile.threads.push(Thread {
            process: 0,
            tid: 100,
            name: "touch256".into(),
        });
        let mib = 1u64 << 20;
        let s1 = w.stack(&[main, big, touch]);
        let s2 = w.stack(&[main, small, touch]);
        let s3 = w.stack(&[main]);
        w.add_sample(s1, 0, 0, 65536, 256 * mib);
        w.add_sample(s2, 0, 0, 4096, 16 * mib);
        w.add_sample(s3, 0, 1, 1024, 4 * mib);
        w.profile.events.push(EventRow {
            name: "MEM_LOAD_UOPS_RETIRED.L3_MISS".into(),
            ..Default::default()
        });
        w.add_sample(s1, 0, 2, 40, 0);
        for (t, p, b) in [
            (1_000_000_000u64, 0usize, 10 * mib),
            (1_000_000_000, 1, 8 * mib),
            (1_050_000_000, 0, 266 * mib),
            (1_050_000_000, 1, 8 * mib),
            (1_100_000_000, 0, 138 * mib),
        ] {
            w.profile.rss.push(RssPoint {
                process: p,
                time_ns: t,
                rss_bytes: b,
            });
        }
        w.profile.meta.insert("mode".into(), "memory".into());
        w.profile.meta.insert(
            "bandwidth".into(),
            serde_json::to_string(&vec![BandwidthSummary {
                counter: "dram_read_bytes".into(),
                total_bytes: 1_500_000_000,
                mean_gbs: 7.5,
                peak_gbs: 10.0,
                peak_time_ns: 1_100_000_000,
                multiplexed: false,
                timeline: vec![],
            }])
            .unwrap(),
        );
        w.profile.clone()
    }

    /// The memory view of [`fixture`] as JSON (all frames, top 10).
    fn fixture_json() -> Value {
        serde_json::from_str(&memory_view(
            &fixture(),
            ReportFormat::Json,
            10,
            FramesFilter::All,
        ))
        .unwrap()
    }

    #[test]
    fn process_peaks_prefer_the_kernels_high_water_marks() {
        let mut p = fixture();
        let mib = 1u64 << 20;
        p.meta
            .insert("peak_rss_hwm".into(), format!("{{\"100\":{}}}", 270 * mib));
        p.meta
            .insert("peak_rss_vmhwm".into(), format!("{{\"101\":{}}}", 12 * mib));
        let v: Value =
            serde_json::from_str(&memory_view(&p, ReportFormat::Json, 10, FramesFilter::All))
                .unwrap();
        let procs = v["processes"].as_array().unwrap();
        assert_eq!(procs[0]["pid"], 100);
        assert_eq!(procs[0]["peak_rss_bytes"], 270 * mib);
        assert_eq!(procs[0]["peak_source"], "ru_maxrss");
        assert_eq!(procs[1]["peak_rss_bytes"], 12 * mib);
        assert_eq!(procs[1]["peak_source"], "VmHWM");
        // The summed peak stays the timeline's.
        assert_eq!(v["peak_rss_bytes"], 274 * mib);
        // A VmHWM a page under the timeline's top (approximate per-CPU counters): the
        // kernel's mark, raised to the reading.
        p.meta.insert(
            "peak_rss_vmhwm".into(),
            format!("{{\"101\":{}}}", 8 * mib - 4096),
        );
        let v: Value =
            serde_json::from_str(&memory_view(&p, ReportFormat::Json, 10, FramesFilter::All))
                .unwrap();
        assert_eq!(v["processes"][1]["peak_rss_bytes"], 8 * mib);
        assert_eq!(v["processes"][1]["peak_source"], "VmHWM");
        // Without high-water marks: the timeline's maximum.
        let v = fixture_json();
        assert_eq!(v["processes"][1]["peak_source"], "timeline");
    }

    #[test]
    fn lines_carry_total_and_self_bytes() {
        let v = fixture_json();
        let lines = v["lines"].as_array().unwrap();
        let mib = 1u64 << 20;
        assert_eq!(lines[0]["function"], "main");
        assert_eq!(lines[0]["total"], 276 * mib);
        assert_eq!(lines[0]["self"], 4 * mib);
        assert_eq!(lines[1]["function"], "map_and_touch");
        assert_eq!(lines[1]["self"], 272 * mib);
        let t = memory_view(&fixture(), ReportFormat::Text, 10, FramesFilter::All);
        assert!(t.contains("Lines (total"), "{t}");
    }

    #[test]
    fn peak_is_summed_across_processes() {
        let p = fixture();
        assert_eq!(peak_rss(&p), Some((274 << 20, 1_050_000_000)));
    }

    #[test]
    fn json_ranks_big_alloc_and_splits_minor_major() {
        let p = fixture();
        let v: Value =
            serde_json::from_str(&memory_view(&p, ReportFormat::Json, 10, FramesFilter::All))
                .unwrap();
        let mib = 1u64 << 20;
        assert_eq!(v["total"], 276 * mib);
        assert_eq!(v["peak_rss_bytes"], 274 * mib);
        assert_eq!(v["peak_time_s"], 0.05);
        assert_eq!(v["major_bytes"], 4 * mib);
        let fns = v["functions"].as_array().unwrap();
        assert_eq!(fns[0]["function"], "main");
        assert_eq!(fns[0]["total"], 276 * mib);
        assert_eq!(fns[1]["function"], "map_and_touch");
        assert_eq!(fns[1]["self"], 272 * mib);
        assert_eq!(fns[2]["function"], "big_alloc");
        assert_eq!(fns[2]["total"], 256 * mib);
        assert_eq!(
            v["stacks"][0]["frames"],
            json!(["main", "big_alloc", "map_and_touch"])
        );
        assert_eq!(v["bandwidth"][0]["mean_gbs"], 7.5);
        assert_eq!(v["llc_misses"][0]["function"], "map_and_touch");
        assert_eq!(v["llc_misses"][0]["samples"], 40);
        assert_eq!(v["processes"].as_array().unwrap().len(), 2);
        assert_eq!(v["timeline"].as_array().unwrap().len(), 3);
        assert_eq!(v["timeline"][2]["rss_bytes"], 138 * mib);
    }

    #[test]
    fn csv_has_hotspots_columns_in_bytes() {
        let p = fixture();
        let csv = memory_view(&p, ReportFormat::Csv, 3, FramesFilter::All);
        let mut lines = csv.lines();
        assert_eq!(
            lines.next().unwrap(),
            "function,module,file,line,self,self_pct,total,total_pct,minor_bytes,major_bytes"
        );
        let main = lines.next().unwrap();
        assert_eq!(
            main,
            format!(
                "main,touch256,,,{},1.45,{},100,0,{}",
                4 << 20,
                276u64 << 20,
                4 << 20
            )
        );
        assert_eq!(csv.lines().count(), 4);
    }

    #[test]
    fn text_names_peak_stacks_and_bandwidth() {
        let t = memory_view(&fixture(), ReportFormat::Text, 10, FramesFilter::All);
        assert!(t.contains("Peak RSS: 274.0 MiB at 0.050 s"), "{t}");
        assert!(t.contains("main > big_alloc > map_and_touch"), "{t}");
        assert!(t.contains("dram_read_bytes"), "{t}");
        assert!(t.contains("LLC-miss samples by function and line"), "{t}");
        assert!(t.contains("minor 272.0 MiB, major 4.0 MiB"), "{t}");
        // An empty profile renders without panicking.
        let e = memory_view(
            &Profile::default(),
            ReportFormat::Text,
            10,
            FramesFilter::All,
        );
        assert!(e.contains("not recorded"));
        let j: Value = serde_json::from_str(&memory_view(
            &Profile::default(),
            ReportFormat::Json,
            10,
            FramesFilter::All,
        ))
        .unwrap();
        assert!(j["peak_rss_bytes"].is_null());
    }
}
