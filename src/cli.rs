//! What the user typed: clap definitions (the command-line contract of DESIGN section 2).
//! Resolution of defaults and checks of combinations happen in the stages' own option
//! structs, built from these.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// hwprof: a sampling profiler for HPC codes, native and Python, on Linux perf events.
#[derive(Parser, Debug)]
#[command(name = "hwprof", version, about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// hwprof's subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a program (or attach to one) and sample it.
    Collect(CollectArgs),
    /// Turn a results directory's raw data into profile.db.
    Finalize(FinalizeArgs),
    /// Combine the outputs of `finalize --part I/N`.
    Merge(MergeArgs),
    /// Show a view of a finalized results directory.
    Report(ReportArgs),
    /// Write a finalized profile in another tool's format.
    Export(ExportArgs),
    /// List what this machine can count and sample, per mode.
    ListEvents,
    /// Check this machine: paranoid level, PMUs, tracefs, ptrace scope, Pythons.
    Doctor,
}

/// Collection modes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
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

/// How Python frames are captured.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PythonCapture {
    /// In-process agent for launched Python programs, remote reads for -p.
    Auto,
    /// Remote reads of the frame chain (process_vm_readv).
    Remote,
    /// CPython 3.12+ perf trampolines (PYTHONPERFSUPPORT=1) and perf maps.
    Perfmap,
    /// Native frames only.
    Off,
}

/// `hwprof collect`.
#[derive(Args, Debug)]
pub struct CollectArgs {
    /// What to profile.
    #[arg(short, long, value_enum, default_value = "hotspots")]
    pub mode: Mode,
    /// Results directory [default: hwprof-<mode>-<YYYYmmdd-HHMMSS>].
    #[arg(short = 'r', long = "result-dir")]
    pub result_dir: Option<PathBuf>,
    /// Stop at raw data; run `hwprof finalize DIR` later (e.g. on a faster node).
    #[arg(long)]
    pub no_finalize: bool,
    /// Sampling frequency in Hz.
    #[arg(short = 'F', long = "freq", default_value_t = 999)]
    pub freq: u64,
    /// Event to sample (repeatable): perf names, pmu/event/, perfmon names, rUUEE, sys:name.
    #[arg(short = 'e', long = "event")]
    pub events: Vec<String>,
    /// Call stacks: dwarf[,BYTES] (stack copy, unwound at finalize), fp or none
    /// [default: dwarf; fp in memory mode, where every page fault is a sample].
    #[arg(long = "call-graph")]
    pub call_graph: Option<String>,
    /// Python frame capture.
    #[arg(long, value_enum, default_value = "auto")]
    pub python: PythonCapture,
    /// RSS sampling interval in milliseconds.
    #[arg(long = "rss-interval", default_value_t = 50)]
    pub rss_interval: u64,
    /// Copy the ELF files needed for symbols into the results directory.
    #[arg(long)]
    pub archive: bool,
    /// Stop after this many seconds.
    #[arg(short = 'd', long = "duration")]
    pub duration: Option<f64>,
    /// Attach to a running process (all its threads).
    #[arg(short = 'p', long = "pid", conflicts_with = "command")]
    pub pid: Option<u32>,
    /// Finalize threads (with collect's own finalize).
    #[arg(short = 'j', long = "jobs")]
    pub jobs: Option<usize>,
    /// Print less.
    #[arg(short, long)]
    pub quiet: bool,
    /// The program to run and its arguments.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `hwprof finalize`.
#[derive(Args, Debug)]
pub struct FinalizeArgs {
    /// The results directory.
    pub dir: PathBuf,
    /// Where to look for binaries and debug files moved since collection (repeatable).
    #[arg(long = "search-dir")]
    pub search_dirs: Vec<PathBuf>,
    /// Worker threads [default: all cores].
    #[arg(short = 'j', long = "jobs")]
    pub jobs: Option<usize>,
    /// Finalize only slice I of N of the raw directories (then `hwprof merge DIR`).
    #[arg(long)]
    pub part: Option<String>,
    /// Print less.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `hwprof merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The results directory whose parts to combine.
    pub dir: PathBuf,
}

/// Report views.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Peak RSS, timeline, growth stacks, bandwidth.
    Memory,
    /// Off-CPU time by function.
    Waits,
}

/// Output formats of `report`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// Aligned table for a terminal.
    Text,
    /// CSV with a header row.
    Csv,
    /// JSON.
    Json,
}

/// Which frames a view shows.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FramesFilter {
    /// Merged native and Python stacks.
    #[default]
    All,
    /// Python frames; native time below a Python frame is that frame's self time.
    Python,
    /// Native frames only (perf's view).
    Native,
}

/// `hwprof report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The results directory.
    pub dir: PathBuf,
    /// What to show.
    #[arg(long, value_enum, default_value = "summary")]
    pub view: View,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Rows to show.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Only this MPI rank.
    #[arg(long)]
    pub rank: Option<u32>,
    /// Which frames to show.
    #[arg(long, value_enum, default_value = "all")]
    pub frames: FramesFilter,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

/// Export formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
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

/// `hwprof export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The results directory.
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Only this MPI rank.
    #[arg(long)]
    pub rank: Option<u32>,
    /// Which frames to export.
    #[arg(long, value_enum, default_value = "all")]
    pub frames: FramesFilter,
    /// Output file [default: standard output, or DIR/profile.<ext> for binary formats].
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}
