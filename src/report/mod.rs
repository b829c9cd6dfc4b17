//! Views over profile.db: tables for a terminal, CSV with the contract's leading columns
//! (DESIGN section 2), and JSON. Every view ranks by the mode's metric.
//!
//! One file per view (`summary.rs`, `hotspots.rs`, `lines.rs`, `callers.rs`,
//! `modules.rs`, `threads.rs`, `ranks.rs`, `imbalance.rs`, `memory.rs`, `waits.rs`);
//! `table.rs` holds what they share (rows, counter-group columns, text/CSV/JSON).

pub mod callers;
pub mod hotspots;
pub mod imbalance; // --view imbalance
pub mod lines;
pub mod memory; // --view memory
pub mod modules;
pub mod pop; // POP efficiencies in the summary
pub mod ranks;
pub mod summary;
pub mod table;
pub mod threads;
pub mod waits; // --view waits and objects (locks mode)

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::options::Selection;
use crate::profile::Profile;
use crate::profile::stacks::StackFilter;
pub use imbalance::ImbalanceBy;

/// Report views.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Totals, events, duration, top functions.
    Summary,
    /// Functions by self and total.
    Hotspots,
    /// Callers and callees of the top functions.
    Callers,
    /// Source lines by self and total.
    Lines,
    /// Modules (ELF files, python) by self and total.
    Modules,
    /// Threads by total.
    Threads,
    /// MPI ranks: total, work (total less time in MPI libraries; launcher samples never
    /// count), %mean (work over the mean work of all ranks), mpi%; idle: work under 10%
    /// of the mean.
    Ranks,
    /// Per function across ranks: mean, min, max, std, CoV, imbalance (max - mean).
    Imbalance,
    /// Peak RSS, timeline, growth stacks, bandwidth.
    Memory,
    /// Off-CPU time by function, with the class and object of the waits.
    Waits,
    /// Sync objects (locks mode): wait time, waiters and waits per object.
    Objects,
}

/// Output formats of the views (`report`, `diff`, the HTML report's tables).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// Aligned table for a terminal.
    Text,
    /// CSV with a header row.
    Csv,
    /// JSON.
    Json,
}

/// What `hwprof report` shows, built from the command line by `cli.rs`.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// The results directory.
    pub dir: PathBuf,
    /// What to show.
    pub view: View,
    /// Output format.
    pub format: ReportFormat,
    /// Rows to show.
    pub top: usize,
    /// Which samples to show.
    pub selection: Selection,
    /// Rows of `--view imbalance`.
    pub by: ImbalanceBy,
    /// Write to this file instead of standard output.
    pub output: Option<PathBuf>,
    /// Write the HTML report and open it in a browser instead (`main` hands such
    /// options to `export::open::run`: the HTML page is an export, built on the views).
    pub open: bool,
}

impl ReportOptions {
    /// The profile of the results directory and the stack filter these options ask for.
    pub fn load(&self) -> anyhow::Result<(Profile, StackFilter)> {
        let profile = Profile::load(&self.dir)?;
        let filter = self.selection.filter(&profile);
        Ok((profile, filter))
    }
}

/// `hwprof report` (without `--open`).
pub fn run(args: &ReportOptions) -> anyhow::Result<()> {
    let (profile, filter) = args.load()?;
    let text = match args.view {
        View::Imbalance => imbalance::imbalance(&profile, args.format, args.top, filter, args.by),
        view => render(&profile, view, args.format, args.top, filter)?,
    };
    // CSV and JSON stay machine-readable: their warnings go to stderr.
    if args.format != ReportFormat::Text {
        for w in warnings(&profile) {
            eprintln!("hwprof: warning: {w}");
        }
    }
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = out.write_all(text.as_bytes());
        }
    }
    Ok(())
}

/// Render one view.
pub fn render(
    p: &Profile,
    view: View,
    format: ReportFormat,
    top: usize,
    filter: StackFilter,
) -> anyhow::Result<String> {
    let body = match view {
        View::Summary => summary::summary(p, format, top, filter),
        View::Hotspots => hotspots::hotspots(p, format, top, filter),
        View::Lines => lines::lines(p, format, top, filter),
        View::Modules => modules::modules(p, format, top, filter),
        View::Threads => threads::threads(p, format, top, filter),
        View::Callers => callers::callers(p, format, top, filter),
        View::Ranks => ranks::ranks(p, format, filter),
        View::Imbalance => imbalance::imbalance(p, format, top, filter, ImbalanceBy::Function),
        View::Waits => waits::waits(p, format, top, filter),
        View::Objects => waits::objects(p, format, top, filter),
        View::Memory => memory::memory_view(p, format, top, filter.frames),
    };
    Ok(match format {
        ReportFormat::Text => format!("{}{body}", warning_header(p)),
        _ => body,
    })
}

/// What the run lacks that its reports must say (Python frames expected, not captured).
pub fn warnings(p: &Profile) -> Vec<String> {
    serde_json::from_str(p.meta_str("warnings")).unwrap_or_default()
}

/// The warnings as the first lines of a text report.
fn warning_header(p: &Profile) -> String {
    warnings(p)
        .iter()
        .map(|w| format!("WARNING: {w}\n"))
        .collect()
}

/// The short summary `collect` prints after finalizing.
pub fn summary_after_collect(dir: &Path) -> anyhow::Result<String> {
    let p = Profile::load(dir)?;
    let mut s = warning_header(&p);
    let filter = StackFilter {
        frames: crate::profile::stacks::default_frames(&p, None),
        ..Default::default()
    };
    s.push_str(&summary::summary(&p, ReportFormat::Text, 10, filter));
    s.push_str(&format!(
        "\nresults: {}  (hwprof report {} --view hotspots|lines|callers|threads ...)\n",
        dir.display(),
        dir.display()
    ));
    s.push_str(&raw_size_line(dir, p.meta_str("duration_s").parse().ok()));
    Ok(s)
}

/// `raw data: 36.2 MB (9.8 MB/s of run)`: what collection wrote to disk.
pub fn raw_size_line(dir: &Path, duration_s: Option<f64>) -> String {
    let bytes = crate::raw::raw_bytes(dir);
    let rate = match duration_s {
        Some(d) if d > 0.0 => format!(
            " ({}/s of run)",
            crate::raw::human_bytes((bytes as f64 / d) as u64)
        ),
        _ => String::new(),
    };
    format!(
        "raw data: {}{rate} in {}/raw\n",
        crate::raw::human_bytes(bytes),
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    //! Snapshots of the text views on a small profile with designed numbers: a reviewer
    //! reads the diff when a view's layout changes.
    use super::*;
    use crate::profile::stacks::FramesFilter;
    use crate::profile::{EventRow, Frame, FrameKind, Function, Process, ProfileWriter, Thread};

    fn designed_profile() -> Profile {
        let mut w = ProfileWriter::default();
        let meta = [
            ("mode", "hotspots"),
            ("metric", "samples"),
            ("samples", "100"),
            ("lost_samples", "0"),
            ("duration_s", "0.100"),
            ("command", "./app"),
            (
                "events",
                r#"[{"requested":"cycles","opened":"cpu-clock","note":"no PMU"}]"#,
            ),
        ];
        for (k, v) in meta {
            w.profile.meta.insert(k.into(), v.into());
        }
        w.profile.events.push(EventRow {
            name: "cpu-clock".into(),
            ..Default::default()
        });
        w.profile.processes.push(Process {
            host: "node1".into(),
            rank: None,
            pid: 10,
            command: "app".into(),
            raw_dir: "raw/node1.-.10".into(),
            role: Default::default(),
        });
        for (tid, name) in [(10, "app"), (11, "worker")] {
            w.profile.threads.push(Thread {
                process: 0,
                tid,
                name: name.into(),
            });
        }
        let frame = |w: &mut ProfileWriter, name: &str, kind: FrameKind, line: u32| {
            let module = if kind == FrameKind::Python {
                "python"
            } else {
                "app"
            };
            let function = w.function(Function {
                name: name.into(),
                module: module.into(),
                file: Some("app.c".into()),
                start_line: Some(line),
                kind,
            });
            w.frame(Frame {
                function,
                file: Some("app.c".into()),
                line: Some(line + 2),
            })
        };
        let main = frame(&mut w, "main", FrameKind::Native, 1);
        let solve = frame(&mut w, "Solver.solve", FrameKind::Python, 10);
        let dgemm = frame(&mut w, "dgemm_", FrameKind::Native, 20);
        let io = frame(&mut w, "write_output", FrameKind::Native, 30);
        let s1 = w.stack(&[main, solve, dgemm]);
        let s2 = w.stack(&[main, solve]);
        let s3 = w.stack(&[main, io]);
        w.add_sample(s1, 0, 0, 60, 60);
        w.add_sample(s2, 0, 0, 15, 15);
        w.add_sample(s3, 1, 0, 25, 25);
        w.profile.clone()
    }

    fn view(v: View, frames: FramesFilter) -> String {
        let filter = StackFilter {
            frames,
            ..Default::default()
        };
        render(&designed_profile(), v, ReportFormat::Text, 10, filter).unwrap()
    }

    /// Counter-group columns on designed counts: cycles leads instructions and
    /// cache-misses; dgemm_ runs at IPC 2.5, write_output at 0.5.
    #[test]
    fn group_columns_and_ipc() {
        let mut p = designed_profile();
        for name in ["instructions", "cache-misses"] {
            p.events.push(EventRow {
                name: name.into(),
                ..Default::default()
            });
        }
        p.events[0].name = "cycles".into();
        let rows: Vec<_> = p.samples.clone();
        for s in rows {
            // 60 samples of dgemm_, 15 of Solver.solve, 25 of write_output.
            let (cyc, ins, miss) = match s.count {
                60 => (6_000.0, 15_000.0, 300.0),
                15 => (1_500.0, 1_500.0, 0.0),
                _ => (2_500.0, 1_250.0, 50.0),
            };
            for (e, v) in [(0, cyc), (1, ins), (2, miss)] {
                p.counts.push(crate::profile::CountRow {
                    stack: s.stack,
                    thread: s.thread,
                    event: e,
                    value: v,
                });
            }
        }
        let filter = StackFilter::default();
        let csv = render(&p, View::Hotspots, ReportFormat::Csv, 10, filter).unwrap();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next().unwrap(),
            "function,module,file,line,self,self_pct,total,total_pct,instructions,cache_misses,ipc"
        );
        let row = |f: &str| csv.lines().find(|l| l.starts_with(f)).unwrap().to_string();
        assert!(row("dgemm_").ends_with(",15000,300,2.50"), "{csv}");
        assert!(row("write_output").ends_with(",1250,50,0.50"), "{csv}");
        // main has no self samples: zero counts, no ipc.
        assert!(row("main").ends_with(",0,0,"), "{csv}");
        let js = render(&p, View::Lines, ReportFormat::Json, 10, filter).unwrap();
        let v: serde_json::Value = serde_json::from_str(&js).unwrap();
        let d = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["function"] == "dgemm_")
            .unwrap();
        assert_eq!(
            (d["ipc"].as_f64(), d["instructions"].as_u64()),
            (Some(2.5), Some(15000))
        );
        let text = render(&p, View::Hotspots, ReportFormat::Text, 10, filter).unwrap();
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .contains("instructions cache_misses          ipc"),
            "{text}"
        );
    }

    #[test]
    fn text_views() {
        insta::assert_snapshot!("summary", view(View::Summary, FramesFilter::All));
        insta::assert_snapshot!("hotspots", view(View::Hotspots, FramesFilter::All));
        insta::assert_snapshot!(
            "hotspots_python",
            view(View::Hotspots, FramesFilter::Python)
        );
        insta::assert_snapshot!("callers", view(View::Callers, FramesFilter::All));
        insta::assert_snapshot!("threads", view(View::Threads, FramesFilter::All));
        insta::assert_snapshot!("lines", view(View::Lines, FramesFilter::All));
        insta::assert_snapshot!("modules", view(View::Modules, FramesFilter::All));
    }
}
