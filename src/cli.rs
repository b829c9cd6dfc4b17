//! What the user typed: clap definitions (the command-line contract of DESIGN section 2),
//! and their conversion into the stages' own option structs: no stage sees an argument
//! struct (the two layers of ripgrep's lowargs/hiargs, STYLE.md 8). The value enums
//! (`--mode`, `--view`, ...) are the stages' own and derive `clap::ValueEnum`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

// The value enums are the stages' own (they derive `clap::ValueEnum`, whose variant docs
// are the help text); the stages never see the argument structs below.
use crate::diff::{DiffView, Normalize};
use crate::events::Mode;
use crate::export::ExportFormat;
use crate::profile::stacks::FramesFilter;
use crate::python::PythonCapture;
use crate::report::{ImbalanceBy, ReportFormat, View};

mod to_stages;

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
    #[command(after_help = FINALIZE_SLURM_RECIPE)]
    Finalize(FinalizeArgs),
    /// Combine the outputs of `finalize --part I/N`.
    Merge(MergeArgs),
    /// Show a view of a finalized results directory.
    Report(ReportArgs),
    /// Write a finalized profile in another tool's format.
    Export(ExportArgs),
    /// Compare two profiles (or two ranks of one): what grew, what shrank; a CI gate.
    Diff(DiffArgs),
    /// List what this machine can count and sample, per mode.
    ListEvents,
    /// Check this machine: paranoid level, PMUs, tracefs, ptrace scope, Pythons.
    Doctor,
}

/// `hwprof collect`.
#[derive(Args, Debug)]
pub struct CollectArgs {
    /// What to profile.
    #[arg(short, long, value_enum, default_value = "hotspots")]
    pub mode: Mode,
    /// Results directory [default: hwprof-<mode>-<YYYYmmdd-HHMMSS>].
    #[arg(short, long)]
    pub result_dir: Option<PathBuf>,
    /// Stop at raw data; run `hwprof finalize DIR` later (e.g. on a faster node).
    #[arg(long)]
    pub no_finalize: bool,
    /// Sampling frequency in Hz.
    #[arg(short = 'F', long, default_value_t = 999)]
    pub freq: u64,
    /// Event to sample (repeatable): perf names, pmu/event/, perfmon names, rUUEE, sys:name.
    #[arg(short, long = "event")]
    pub events: Vec<String>,
    /// Call stacks: dwarf[,BYTES] (stack copy, unwound at finalize), fp or none
    /// [default: dwarf; fp in memory mode, where every page fault is a sample].
    #[arg(long)]
    pub call_graph: Option<String>,
    /// Python frame capture.
    #[arg(long, value_enum, default_value = "auto")]
    pub python: PythonCapture,
    /// RSS sampling interval in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub rss_interval: u64,
    /// Memory mode: sample one page fault in N (each sample weighs N faults; see
    /// docs/memory.md). Default 4.
    #[arg(long)]
    pub fault_period: Option<u64>,
    /// Locks mode: waits at least this long (microseconds) take a stack where the
    /// program blocked (docs/locks.md). Default 100.
    #[arg(long, value_name = "US")]
    pub wait_threshold: Option<u64>,
    /// Copy the ELF files needed for symbols into the results directory.
    #[arg(long)]
    pub archive: bool,
    /// Stop after this many seconds.
    #[arg(short, long)]
    pub duration: Option<f64>,
    /// Attach to a running process (all its threads).
    #[arg(short, long, conflicts_with = "command")]
    pub pid: Option<u32>,
    /// Finalize threads (with collect's own finalize).
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// Print less.
    #[arg(short, long)]
    pub quiet: bool,
    /// The program to run and its arguments (after `--`, or after hwprof's options:
    /// everything from the program on is its own, as with `perf record`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// Printed by `hwprof finalize --help`: finalize a large MPI run in parallel.
pub const FINALIZE_SLURM_RECIPE: &str = "\
Finalizing a large MPI run in parallel (Slurm array job; each task takes every Nth raw
directory, then one merge combines the parts into DIR/profile.db):

  #!/bin/bash
  #SBATCH --array=1-8 --cpus-per-task=8
  hwprof finalize run1 --part ${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT} -j ${SLURM_CPUS_PER_TASK} -q

  # after the array job (sbatch --dependency=afterok:<array job id>):
  hwprof merge run1

The same with srun inside one allocation:
  srun -n 8 bash -c 'hwprof finalize run1 --part $((SLURM_PROCID+1))/$SLURM_NTASKS -q'
  hwprof merge run1";

/// `hwprof finalize`.
#[derive(Args, Debug)]
pub struct FinalizeArgs {
    /// The results directory.
    pub dir: PathBuf,
    /// Where to look for binaries and debug files moved since collection (repeatable).
    #[arg(long = "search-dir")]
    pub search_dirs: Vec<PathBuf>,
    /// Worker threads [default: all cores].
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// Finalize only slice I of N of the raw directories (then `hwprof merge DIR`).
    #[arg(long)]
    pub part: Option<String>,
    /// Print less.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print where the time went: read, unwind, symbolize, aggregate, write.
    #[arg(long)]
    pub timings: bool,
}

/// `hwprof merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The results directory whose parts to combine.
    pub dir: PathBuf,
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
    /// `--rank`, `--ranks`, `--mpi-threads`.
    #[command(flatten)]
    pub mpi: MpiArgs,
    /// Which frames to show [default: program in locks mode, else all].
    #[arg(long, value_enum)]
    pub frames: Option<FramesFilter>,
    /// Rows of `--view imbalance`: one per function or one per source line.
    #[arg(long, value_enum, default_value = "function")]
    pub by: ImbalanceBy,
    /// Write to FILE instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Write the HTML report (DIR/report.html, or a temporary file) and open it with
    /// $BROWSER or xdg-open; without a browser, print its path.
    #[arg(long)]
    pub open: bool,
}

/// `--rank`, `--ranks` and `--mpi-threads`, alike in `report` and `export`.
#[derive(Args, Debug)]
pub struct MpiArgs {
    /// Only this MPI rank.
    #[arg(long)]
    pub rank: Option<u32>,
    /// Only these MPI ranks: `0-3,8`.
    #[arg(long, value_parser = crate::profile::stacks::RankSet::parse)]
    pub ranks: Option<crate::profile::stacks::RankSet>,
    /// Count the MPI library's own service threads (Open MPI's progress and PMIx
    /// threads, which wait by design), which locks mode's views leave out.
    #[arg(long)]
    pub mpi_threads: bool,
}

/// `hwprof export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The results directory (omitted with --diff).
    #[arg(required_unless_present = "diff")]
    pub dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// `--rank`, `--ranks`, `--mpi-threads`.
    #[command(flatten)]
    pub mpi: MpiArgs,
    /// Which frames to export [default: program in locks mode, else all].
    #[arg(long, value_enum)]
    pub frames: Option<FramesFilter>,
    /// Output file [default: standard output, or DIR/profile.<ext> for binary formats].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Differential export of two results directories: NEW's stacks colored by the
    /// change from BASE (flamegraph), the two-column folded format (collapsed), or NEW
    /// plus BASE negated as `pprof -diff_base` builds it (pprof), or NEW's HTML report
    /// with a delta view (html).
    #[arg(long, num_args = 2, value_names = ["BASE", "NEW"], conflicts_with = "dir")]
    pub diff: Vec<PathBuf>,
    /// With --diff: how the two profiles are put on one scale [default: time].
    // No clap default: `export` refuses --normalize without --diff (a usage error),
    // which a default value would hide.
    #[arg(long, value_enum)]
    pub normalize: Option<Normalize>,
}

/// `hwprof diff`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  hwprof diff run-before run-after                      what changed, by function
  hwprof diff old new --view lines --format csv         by source line, as CSV
  hwprof diff old new --fail-above 5%                   exit 3 if the total grew > 5%
  hwprof diff old new --fail-above 10 --function solve  exit 3 if solve grew > 10%
  hwprof diff run --base-rank 0 --new-rank 3            rank 3 against rank 0 of one run")]
pub struct DiffArgs {
    /// The base results directory.
    pub base: PathBuf,
    /// The new results directory [default: BASE, to compare two ranks of one run].
    pub new: Option<PathBuf>,
    /// What to compare.
    #[arg(long, value_enum, default_value = "hotspots")]
    pub view: DiffView,
    /// Scale: seconds of CPU time (samples / frequency), percent of each total, or raw.
    #[arg(long, value_enum, default_value = "time")]
    pub normalize: Normalize,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Which frames to compare.
    #[arg(long, value_enum, default_value = "all")]
    pub frames: FramesFilter,
    /// Rows to show [default: 20 in text, all in CSV and JSON].
    #[arg(long)]
    pub top: Option<usize>,
    /// Only this MPI rank, in both profiles.
    #[arg(long, conflicts_with_all = ["base_rank", "new_rank"])]
    pub rank: Option<u32>,
    /// Only this MPI rank of BASE.
    #[arg(long)]
    pub base_rank: Option<u32>,
    /// Only this MPI rank of NEW.
    #[arg(long)]
    pub new_rank: Option<u32>,
    /// Regression gate: exit 3 when the total (or --function's total) grew by more
    /// than PCT percent (`5` or `5%`).
    #[arg(long, value_name = "PCT")]
    pub fail_above: Option<String>,
    /// With --fail-above: gate on this function's inclusive value instead of the total.
    #[arg(long, requires = "fail_above")]
    pub function: Option<String>,
    /// Write to FILE instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}
