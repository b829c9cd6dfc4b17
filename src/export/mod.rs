//! Exports: a finalized profile written in another tool's format, one file per format.
//!
//! Every format reads the same input: the loaded [`Profile`], its stacks filtered by
//! `--rank` and `--frames` ([`Profile::weighted_stacks`]), turned here into a [`Model`]
//! (functions, frames and stacks that are all in range, the unknown ones replaced by
//! an `[unknown]` function, so that no format has to guard indices from the database).
//!
//! | `--format`   | module         | reader that judges it                         |
//! |--------------|----------------|-----------------------------------------------|
//! | `collapsed`  | [`collapsed`]  | flamegraph.pl / inferno (folded stacks)       |
//! | `flamegraph` | [`flamegraph`] | any SVG viewer (made by inferno)              |
//! | `speedscope` | [`speedscope`] | speedscope's file-format schema               |
//! | `pprof`      | [`pprof`]      | `pprof`, `protoc --decode` (profile.proto)    |
//! | `pstats`     | [`pstats`]     | Python's `pstats`, SnakeViz, gprof2dot        |
//! | `callgrind`  | [`callgrind`]  | `callgrind_annotate`, KCachegrind             |
//! | `firefox`    | [`firefox`]    | the Firefox Profiler (processed format)       |
//! | `html`       | [`html`]       | a web browser, no network needed              |
//!
//! Frame labels: a function's name; a Python function (`FrameKind::Python`) is shown
//! as `qualname (file:line)` (line = the function's first line) in formats that have no
//! field for the file, so that two functions of the same name in different files stay
//! apart. Formats with a file or module field (speedscope, pprof, pstats, callgrind)
//! put them there instead. `docs/exports.md` describes each format's mapping.

pub mod callgrind;
pub mod collapsed;
pub mod diff;
pub mod firefox;
pub mod flamegraph;
pub mod html;
pub mod open;
pub mod pprof;
pub mod pstats;
pub mod speedscope;

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use crate::diff::Normalize;
use crate::options::Selection;
use crate::profile::stacks::{FramesFilter, StackFilter};

/// Export formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// Brendan Gregg's folded stacks.
    Collapsed,
    /// Flame graph SVG (inferno).
    Flamegraph,
    /// speedscope JSON.
    Speedscope,
    /// pprof protobuf (gzipped).
    Pprof,
    /// Python pstats (cProfile) file.
    Pstats,
    /// callgrind format for KCachegrind / callgrind_annotate.
    Callgrind,
    /// Firefox Profiler JSON.
    Firefox,
    /// One self-contained HTML report.
    Html,
}

/// What `hwprof export` writes, built from the command line by `cli.rs`.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The results directory (None with `diff`).
    pub dir: Option<PathBuf>,
    /// Output format.
    pub format: ExportFormat,
    /// Which samples to export.
    pub selection: Selection,
    /// Output file (None: standard output).
    pub output: Option<PathBuf>,
    /// Differential export: BASE and NEW results directories (None: a plain export).
    pub diff: Option<(PathBuf, PathBuf)>,
    /// With `diff`: how the two profiles are put on one scale (None: time).
    pub normalize: Option<Normalize>,
}
use crate::profile::{FrameKind, Function, Profile};

/// Errors writing an export. Each message carries its cause (none is chained as a
/// `source`, so `{:#}` prints it once).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The output could not be written.
    #[error("cannot write {path}: {cause}; check that its directory exists and is writable")]
    Io {
        /// Output path (`standard output` when writing there).
        path: PathBuf,
        /// Cause.
        cause: std::io::Error,
    },
    /// Writing to the output stream failed.
    #[error("cannot write the export: {0}")]
    Write(std::io::Error),
    /// JSON serialization failed.
    #[error("cannot write the JSON export: {0}")]
    Json(serde_json::Error),
    /// Nothing to draw.
    #[error(
        "the profile has no samples{0}, so there is nothing to draw; check the --rank and --frames options, or `hwprof report DIR --view summary`"
    )]
    NoSamples(String),
    /// `--rank N` names a rank that is not in the profile.
    #[error("rank {rank} is not in this profile: {hint}")]
    NoSuchRank {
        /// The rank asked for.
        rank: u32,
        /// The ranks present and what to do.
        hint: String,
    },
    /// Binary output to a terminal.
    #[error(
        "the {format} export is binary and standard output is a terminal; write it to a file with `-o {file}` (or pipe it)"
    )]
    BinaryToTerminal {
        /// The format's name.
        format: &'static str,
        /// The suggested file name.
        file: &'static str,
    },
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError::Write(e)
    }
}

impl From<serde_json::Error> for ExportError {
    fn from(e: serde_json::Error) -> Self {
        ExportError::Json(e)
    }
}

/// The file name a format is usually given (`-o` suggestion, docs).
pub fn default_file_name(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Collapsed => "profile.folded",
        ExportFormat::Flamegraph => "profile.svg",
        ExportFormat::Speedscope => "profile.speedscope.json",
        ExportFormat::Pprof => "profile.pb.gz",
        ExportFormat::Pstats => "profile.prof",
        ExportFormat::Callgrind => "callgrind.out.hwprof",
        ExportFormat::Firefox => "profile.firefox.json",
        ExportFormat::Html => "profile.html",
    }
}

/// The format's name as typed on the command line.
pub fn format_name(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Collapsed => "collapsed",
        ExportFormat::Flamegraph => "flamegraph",
        ExportFormat::Speedscope => "speedscope",
        ExportFormat::Pprof => "pprof",
        ExportFormat::Pstats => "pstats",
        ExportFormat::Callgrind => "callgrind",
        ExportFormat::Firefox => "firefox",
        ExportFormat::Html => "html",
    }
}

/// True for formats that are not text (gzip, marshal): never written to a terminal.
pub fn is_binary(format: ExportFormat) -> bool {
    matches!(format, ExportFormat::Pprof | ExportFormat::Pstats)
}

/// Write `profile` in `format` to `out`.
pub fn export(
    profile: &Profile,
    format: ExportFormat,
    filter: StackFilter,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let model = Model::new(profile, filter);
    match format {
        ExportFormat::Collapsed => collapsed::write(&model, out),
        ExportFormat::Flamegraph => flamegraph::write(&model, out),
        ExportFormat::Speedscope => speedscope::write(&model, out),
        ExportFormat::Pprof => pprof::write(&model, out),
        ExportFormat::Pstats => pstats::write(&model, out),
        ExportFormat::Callgrind => callgrind::write(&model, out),
        ExportFormat::Firefox => firefox::write(&model, out),
        ExportFormat::Html => html::write(profile, &model, filter, out),
    }
}

/// `hwprof export`: load DIR's profile, filter, write to `-o FILE` or standard output.
pub fn run(args: &ExportOptions) -> anyhow::Result<()> {
    if let Some((base_dir, new_dir)) = &args.diff {
        return run_diff(args, base_dir, new_dir);
    }
    if args.normalize.is_some() {
        return Err(crate::UsageError(
            "--normalize scales the two profiles of --diff BASE NEW; drop it, or add --diff".into(),
        )
        .into());
    }
    let Some(dir) = args.dir.as_deref() else {
        return Err(crate::UsageError(
            "hwprof export needs a results directory (or --diff BASE NEW)".into(),
        )
        .into());
    };
    let profile = Profile::load(dir)?;
    if let Some(rank) = args.selection.rank {
        crate::options::check_rank(&profile, rank, "--rank")
            .map_err(|hint| ExportError::NoSuchRank { rank, hint })?;
    }
    let filter = args.selection.filter(&profile);
    if args.output.is_none() {
        refuse_binary_on_terminal(args.format)?;
    }
    let mut buf = Vec::new();
    export(&profile, args.format, filter, &mut buf)?;
    Ok(write_output(args.output.as_deref(), &buf)?)
}

/// A binary format is not written to a terminal: the error names `-o` and a file name.
fn refuse_binary_on_terminal(format: ExportFormat) -> Result<(), ExportError> {
    if is_binary(format) && std::io::stdout().is_terminal() {
        return Err(ExportError::BinaryToTerminal {
            format: format_name(format),
            file: default_file_name(format),
        });
    }
    Ok(())
}

/// Writes an export to `output`, or to standard output when there is none.
fn write_output(output: Option<&Path>, buf: &[u8]) -> Result<(), ExportError> {
    let Some(path) = output else {
        let mut lock = std::io::stdout().lock();
        return match lock.write_all(buf).and_then(|()| lock.flush()) {
            // `hwprof export ... | head`: the reader is done, and so are we.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(cause) => Err(ExportError::Io {
                path: PathBuf::from("standard output"),
                cause,
            }),
            Ok(()) => Ok(()),
        };
    };
    std::fs::write(path, buf).map_err(|cause| ExportError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

/// `hwprof export --diff BASE NEW`: see [`diff`].
fn run_diff(args: &ExportOptions, base_dir: &Path, new_dir: &Path) -> anyhow::Result<()> {
    let normalize = args.normalize.unwrap_or(Normalize::Time);
    let base_profile = Profile::load(base_dir)?;
    let new_profile = Profile::load(new_dir)?;
    let side = |profile, dir| crate::diff::Side {
        profile,
        dir,
        rank: args.selection.rank,
    };
    let base = side(&base_profile, base_dir);
    let new = side(&new_profile, new_dir);
    let frames = crate::profile::stacks::default_frames(&new_profile, args.selection.frames);
    let pairs = diff::stack_pairs(&base, &new, normalize, frames)?;
    let mut buf = Vec::new();
    match args.format {
        ExportFormat::Collapsed => diff::write_collapsed(&pairs, &mut buf)?,
        ExportFormat::Flamegraph => {
            let title = format!(
                "hwprof differential flame graph: {} -> {} (normalize {})",
                base_dir.display(),
                new_dir.display(),
                crate::diff::normalize_name(normalize)
            );
            diff::write_flamegraph(&pairs, &title, new_profile.metric(), &mut buf)?
        }
        ExportFormat::Pprof => {
            let model = |s: &crate::diff::Side| {
                Model::new(
                    s.profile,
                    StackFilter {
                        frames,
                        rank: s.rank,
                        ranks: None,
                        mpi_threads: args.selection.mpi_threads,
                    },
                )
            };
            diff::write_pprof(&model(&base), &model(&new), normalize, &mut buf)?
        }
        ExportFormat::Html => diff::write_html(
            &pairs,
            &base,
            &new,
            StackFilter {
                frames,
                rank: args.selection.rank,
                ranks: None,
                mpi_threads: args.selection.mpi_threads,
            },
            normalize,
            &mut buf,
        )?,
        other => {
            return Err(crate::diff::DiffError::Usage(format!(
                "export --diff writes flamegraph, collapsed, pprof or html, not {}",
                format_name(other)
            ))
            .into());
        }
    }
    if args.output.is_none() {
        refuse_binary_on_terminal(args.format)?;
    }
    write_output(args.output.as_deref(), &buf)?;
    Ok(())
}

/// The mode's metric, as stored in meta `metric`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Samples (hotspots).
    Samples,
    /// Bytes (memory).
    Bytes,
    /// Nanoseconds (locks).
    Ns,
}

impl Metric {
    /// The metric's name in profile.db and reports.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Samples => "samples",
            Metric::Bytes => "bytes",
            Metric::Ns => "ns",
        }
    }
}

/// A function as the exporters see it.
#[derive(Clone, Debug)]
pub struct ModelFunction {
    /// The function from profile.db.
    pub function: Function,
    /// Its label for formats without a file field (see the module docs).
    pub label: String,
}

/// A frame as the exporters see it: a function at a line.
#[derive(Clone, Debug)]
pub struct ModelFrame {
    /// Index into [`Model::functions`].
    pub function: usize,
    /// Source file of the line, if known.
    pub file: Option<String>,
    /// Source line, if known.
    pub line: Option<u32>,
}

/// One stack with its weight.
#[derive(Clone, Debug)]
pub struct ModelStack {
    /// Indices into [`Model::frames`], outermost first; never empty.
    pub frames: Vec<usize>,
    /// Index into [`Model::threads`].
    pub thread: usize,
    /// Number of samples.
    pub count: u64,
    /// Weight in the metric.
    pub value: u64,
}

/// A thread as the exporters see it.
#[derive(Clone, Debug, Default)]
pub struct ModelThread {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub name: String,
    /// MPI rank of its process.
    pub rank: Option<u32>,
    /// Host of its process.
    pub host: String,
    /// Command of its process.
    pub command: String,
    /// Index of its process (threads of one process share it).
    pub process: usize,
}

/// The filtered profile, with every index in range and only what the stacks use.
#[derive(Clone, Debug)]
pub struct Model {
    /// The metric of `value`.
    pub metric: Metric,
    /// Mode (`hotspots`, `memory`, `locks`), or "".
    pub mode: String,
    /// Seconds per sample: 1 / meta `frequency_hz`, default 1/999.
    pub interval_s: f64,
    /// The profiled command, as far as known.
    pub command: String,
    /// A description of the filter, for titles ("", " for rank 1", ...).
    pub filter_note: String,
    /// Functions used by the stacks.
    pub functions: Vec<ModelFunction>,
    /// Frames used by the stacks.
    pub frames: Vec<ModelFrame>,
    /// Threads (all of the profile's, plus an `[unknown]` one if a sample needs it).
    pub threads: Vec<ModelThread>,
    /// The stacks, one per sample row.
    pub stacks: Vec<ModelStack>,
}

/// Per-function sums over the stacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionTotals {
    /// Metric where the function is the leaf.
    pub self_value: u64,
    /// Metric of the stacks that contain the function (once per stack).
    pub total_value: u64,
    /// Samples where the function is the leaf.
    pub self_count: u64,
    /// Samples that contain the function (once per stack).
    pub total_count: u64,
}

impl Model {
    /// Build the model of `profile` filtered by `filter`.
    pub fn new(profile: &Profile, filter: StackFilter) -> Model {
        let metric = match profile.metric() {
            "bytes" => Metric::Bytes,
            "ns" => Metric::Ns,
            _ => Metric::Samples,
        };
        let hz: f64 = profile
            .meta_str("frequency_hz")
            .parse()
            .ok()
            .filter(|h: &f64| h.is_finite() && *h > 0.0)
            .unwrap_or(999.0);
        let mut threads: Vec<ModelThread> = profile
            .threads
            .iter()
            .map(|t| {
                let p = profile.processes.get(t.process);
                ModelThread {
                    pid: p.map(|p| p.pid).unwrap_or(0),
                    tid: t.tid,
                    name: t.name.clone(),
                    rank: p.and_then(|p| p.rank),
                    host: p.map(|p| p.host.clone()).unwrap_or_default(),
                    command: p.map(|p| p.command.clone()).unwrap_or_default(),
                    process: t.process,
                }
            })
            .collect();
        let mut unknown_thread = None;

        let mut b = Builder::default();
        let mut stacks = Vec::new();
        for ws in profile.weighted_stacks(filter) {
            let mut frames: Vec<usize> = ws
                .frames
                .iter()
                .map(|&f| b.frame(profile, Some(f)))
                .collect();
            if frames.is_empty() {
                frames.push(b.frame(profile, None));
            }
            let thread = if ws.thread < threads.len() {
                ws.thread
            } else {
                *unknown_thread.get_or_insert_with(|| {
                    threads.push(ModelThread {
                        name: "[unknown]".into(),
                        process: usize::MAX,
                        ..Default::default()
                    });
                    threads.len() - 1
                })
            };
            stacks.push(ModelStack {
                frames,
                thread,
                count: ws.count,
                value: ws.value,
            });
        }
        let command = profile
            .processes
            .first()
            .map(|p| p.command.clone())
            .unwrap_or_default();
        let mut notes = Vec::new();
        if filter.has_rank_filter() {
            notes.push(filter.rank_note());
        }
        match filter.frames {
            FramesFilter::All => {}
            FramesFilter::Python => notes.push("Python frames".into()),
            FramesFilter::Native => notes.push("native frames".into()),
            FramesFilter::Program => notes.push("program frames".into()),
        }
        let filter_note = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join(", "))
        };
        Model {
            metric,
            mode: profile.meta_str("mode").to_string(),
            interval_s: 1.0 / hz,
            command,
            filter_note,
            functions: b.functions,
            frames: b.frames,
            threads,
            stacks,
        }
    }

    /// Sum of the metric over all stacks.
    pub fn total_value(&self) -> u64 {
        self.stacks.iter().map(|s| s.value).sum()
    }

    /// Sum of the sample counts over all stacks.
    pub fn total_count(&self) -> u64 {
        self.stacks.iter().map(|s| s.count).sum()
    }

    /// The function of a frame.
    pub fn frame_function(&self, frame: usize) -> &ModelFunction {
        &self.functions[self.frames[frame].function]
    }

    /// Self and total per function (indexed like [`Model::functions`]); a recursive
    /// function counts once per stack in its total.
    pub fn function_totals(&self) -> Vec<FunctionTotals> {
        let mut out = vec![FunctionTotals::default(); self.functions.len()];
        let mut seen = HashSet::new();
        for s in &self.stacks {
            seen.clear();
            for &fr in &s.frames {
                let f = self.frames[fr].function;
                if seen.insert(f) {
                    out[f].total_value += s.value;
                    out[f].total_count += s.count;
                }
            }
            if let Some(&leaf) = s.frames.last() {
                let f = self.frames[leaf].function;
                out[f].self_value += s.value;
                out[f].self_count += s.count;
            }
        }
        out
    }

    /// A title line: command, mode, metric total and filter.
    pub fn title(&self) -> String {
        let mode = if self.mode.is_empty() {
            "profile"
        } else {
            &self.mode
        };
        let cmd = if self.command.is_empty() {
            String::new()
        } else {
            format!("{} — ", one_line(&self.command))
        };
        format!(
            "{cmd}hwprof {mode}{}: {} {}",
            self.filter_note,
            self.total_value(),
            self.metric.name()
        )
    }
}

/// Interns the profile's functions and frames into dense, in-range model vectors.
#[derive(Default)]
struct Builder {
    functions: Vec<ModelFunction>,
    frames: Vec<ModelFrame>,
    function_ids: HashMap<usize, usize>,
    frame_ids: HashMap<Option<usize>, usize>,
    unknown_function: Option<usize>,
}

impl Builder {
    fn unknown_function(&mut self) -> usize {
        if let Some(f) = self.unknown_function {
            return f;
        }
        let f = self.push_function(Function {
            name: "[unknown]".into(),
            module: "[unknown]".into(),
            file: None,
            start_line: None,
            kind: FrameKind::Native,
        });
        self.unknown_function = Some(f);
        f
    }

    fn push_function(&mut self, function: Function) -> usize {
        let label = label_of(&function);
        self.functions.push(ModelFunction { function, label });
        self.functions.len() - 1
    }

    fn function(&mut self, profile: &Profile, f: usize) -> usize {
        if let Some(&id) = self.function_ids.get(&f) {
            return id;
        }
        let id = match profile.functions.get(f) {
            Some(func) => self.push_function(func.clone()),
            None => self.unknown_function(),
        };
        self.function_ids.insert(f, id);
        id
    }

    /// The model frame of profile frame `f` (None or out of range: `[unknown]`).
    fn frame(&mut self, profile: &Profile, f: Option<usize>) -> usize {
        let f = f.filter(|&f| f < profile.frames.len());
        if let Some(&id) = self.frame_ids.get(&f) {
            return id;
        }
        let frame = match f.and_then(|f| profile.frames.get(f)) {
            Some(pf) => ModelFrame {
                function: self.function(profile, pf.function),
                file: pf.file.clone(),
                line: pf.line,
            },
            None => ModelFrame {
                function: self.unknown_function(),
                file: None,
                line: None,
            },
        };
        self.frames.push(frame);
        let id = self.frames.len() - 1;
        self.frame_ids.insert(f, id);
        id
    }
}

/// The label of a function in formats that have no file field.
pub fn label_of(f: &Function) -> String {
    let name = if f.name.is_empty() {
        "[unknown]"
    } else {
        &f.name
    };
    match (f.kind, &f.file) {
        (FrameKind::Python, Some(file)) => match f.start_line {
            Some(line) => format!("{name} ({file}:{line})"),
            None => format!("{name} ({file})"),
        },
        _ => name.to_string(),
    }
}

/// Text on one line: control characters (newlines, tabs) become spaces.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
pub(crate) mod testutil {
    //! A small profile with designed ground truth, shared by the format tests.
    use crate::profile::{FrameKind, Function, Process, Profile, ProfileWriter, Thread};

    /// What a format's `write` makes of `sample_profile` with every frame.
    pub fn written_sample(
        write: fn(&super::Model, &mut dyn std::io::Write) -> Result<(), super::ExportError>,
    ) -> Vec<u8> {
        let p = sample_profile();
        let m = super::Model::new(&p, crate::profile::stacks::StackFilter::default());
        let mut out = Vec::new();
        write(&m, &mut out).expect("write the sample profile");
        out
    }

    /// [`written_sample`] of a text format, as text.
    pub fn written_sample_text(
        write: fn(&super::Model, &mut dyn std::io::Write) -> Result<(), super::ExportError>,
    ) -> String {
        String::from_utf8(written_sample(write)).expect("UTF-8 output")
    }

    /// main→a (3 samples, thread 0, rank 0), main→b (1 sample, thread 1, rank 1),
    /// main→a→a (recursion, 2 samples, thread 0), py `run` → native `PyEval` (2 samples,
    /// thread 0); metric samples at 100 Hz.
    pub fn sample_profile() -> Profile {
        let mut w = ProfileWriter::hotspots_for_tests("100", "cpu-clock");
        for (pid, rank) in [(10, 0), (20, 1)] {
            w.profile.processes.push(Process {
                host: "h".into(),
                rank: Some(rank),
                pid,
                command: "./prog".into(),
                raw_dir: String::new(),
                role: Default::default(),
            });
        }
        w.profile.threads.push(Thread {
            process: 0,
            tid: 10,
            name: "prog".into(),
        });
        w.profile.threads.push(Thread {
            process: 1,
            tid: 20,
            name: "prog".into(),
        });
        let f = |w: &mut ProfileWriter, n: &str, kind: FrameKind, line: u32| {
            let (module, file) = match kind {
                FrameKind::Python => ("python", "app.py"),
                _ => ("prog", "prog.c"),
            };
            w.frame_at(Function::in_file(n, module, kind, file, line), line + 1)
        };
        let main = f(&mut w, "main", FrameKind::Native, 10);
        let a = f(&mut w, "a", FrameKind::Native, 20);
        let b = f(&mut w, "b", FrameKind::Native, 30);
        let run = f(&mut w, "Runner.run", FrameKind::Python, 5);
        let eval = f(&mut w, "PyEval", FrameKind::Native, 40);
        let s = w.stack(&[main, a]);
        w.add_sample(s, 0, 0, 3, 3);
        let s = w.stack(&[main, b]);
        w.add_sample(s, 1, 0, 1, 1);
        let s = w.stack(&[main, a, a]);
        w.add_sample(s, 0, 0, 2, 2);
        let s = w.stack(&[main, run, eval]);
        w.add_sample(s, 0, 0, 2, 2);
        w.profile
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_metric(metric: &str) -> Model {
        let mut p = testutil::sample_profile();
        p.meta.insert("metric".into(), metric.into());
        Model::new(&p, StackFilter::default())
    }

    #[test]
    fn each_format_labels_the_metric() {
        // ns: speedscope nanoseconds, pprof wait/nanoseconds, pstats seconds,
        // firefox µs as samples, callgrind Wait_ns.
        let m = with_metric("ns");
        assert_eq!(m.metric, Metric::Ns);
        let mut out = Vec::new();
        speedscope::write(&m, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["profiles"][0]["unit"], "nanoseconds");
        let pb = pprof::build(&m);
        let t = &pb.sample_type[1];
        assert_eq!(
            (
                pb.string_table[t.r#type as usize].as_str(),
                pb.string_table[t.unit as usize].as_str()
            ),
            ("wait", "nanoseconds")
        );
        assert_eq!(pb.sample.iter().map(|s| s.value[1]).sum::<i64>(), 8);
        let mut out = Vec::new();
        callgrind::write(&m, &mut out).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("events: Wait_ns\n")
        );
        let mut out = Vec::new();
        firefox::write(&m, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["threads"][0]["samples"]["weight"][0], 1,
            "3 ns count as 1 µs"
        );
        assert!(
            v["meta"]["product"]
                .as_str()
                .unwrap()
                .ends_with("(weights: µs)")
        );

        let m = with_metric("bytes");
        let pb = pprof::build(&m);
        assert_eq!(pb.string_table[pb.sample_type[1].unit as usize], "bytes");
        let mut out = Vec::new();
        speedscope::write(&m, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["profiles"][0]["unit"], "bytes");
    }

    #[test]
    fn pstats_scale_follows_the_metric() {
        use pstats::marshal::Value;
        let tt_of_a = |m: &Model| {
            let Value::Dict(entries) = pstats::stats(m) else {
                panic!("not a dict")
            };
            entries
                .into_iter()
                .find_map(|(k, v)| match (k, v) {
                    (Value::Tuple(k), Value::Tuple(v)) if k[2] == Value::Str("a".into()) => {
                        Some(v[2].clone())
                    }
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(tt_of_a(&with_metric("ns")), Value::Float(5e-9));
        assert_eq!(tt_of_a(&with_metric("bytes")), Value::Float(5.0));
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let mut p = testutil::sample_profile();
        p.meta.insert("metric".into(), "bytes".into());
        for s in &mut p.samples {
            s.value = 5_000_000_000; // above i32::MAX: firefox splits the sample
        }
        let m = Model::new(&p, StackFilter::default());
        let fx = firefox::build(&m);
        let v = serde_json::to_value(&fx).unwrap();
        let total: u64 = v["threads"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["samples"]["weight"].as_array().unwrap().clone())
            .map(|w| w.as_u64().unwrap())
            .sum();
        assert_eq!(total, 4 * 5_000_000_000);
        for format in [
            ExportFormat::Collapsed,
            ExportFormat::Pprof,
            ExportFormat::Pstats,
            ExportFormat::Callgrind,
            ExportFormat::Html,
        ] {
            let mut out = Vec::new();
            export(&p, format, StackFilter::default(), &mut out).unwrap();
        }
    }

    #[test]
    fn empty_profile_writes_valid_empty_outputs() {
        let p = Profile::default();
        // Every format but the flame graph (refused below: inferno has nothing to draw).
        let formats = <ExportFormat as clap::ValueEnum>::value_variants();
        for &format in formats.iter().filter(|&&f| f != ExportFormat::Flamegraph) {
            let mut out = Vec::new();
            export(&p, format, StackFilter::default(), &mut out).unwrap();
        }
        let mut out = Vec::new();
        let r = export(
            &p,
            ExportFormat::Flamegraph,
            StackFilter::default(),
            &mut out,
        );
        assert!(matches!(r, Err(ExportError::NoSamples(_))));
    }

    #[test]
    fn totals_count_recursion_once() {
        let p = testutil::sample_profile();
        let m = Model::new(&p, StackFilter::default());
        let t = m.function_totals();
        let by = |n: &str| {
            let i = m
                .functions
                .iter()
                .position(|f| f.function.name == n)
                .unwrap();
            t[i]
        };
        assert_eq!(by("main").total_value, 8);
        assert_eq!(by("main").self_value, 0);
        assert_eq!(by("a").total_value, 5);
        assert_eq!(by("a").self_value, 5);
        assert_eq!(by("b").self_value, 1);
        assert_eq!(m.total_value(), 8);
        assert!((m.interval_s - 0.01).abs() < 1e-12);
    }

    #[test]
    fn out_of_range_indices_become_unknown() {
        let mut p = testutil::sample_profile();
        p.frames[0].function = 999;
        p.samples[0].thread = 999;
        let m = Model::new(&p, StackFilter::default());
        assert!(m.functions.iter().any(|f| f.label == "[unknown]"));
        assert_eq!(m.threads[m.stacks[0].thread].name, "[unknown]");
    }

    #[test]
    fn python_label_has_file_and_line() {
        let p = testutil::sample_profile();
        let m = Model::new(&p, StackFilter::default());
        assert!(
            m.functions
                .iter()
                .any(|f| f.label == "Runner.run (app.py:5)")
        );
    }
}
