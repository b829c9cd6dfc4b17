//! From what the user typed to what the stages take: each stage's own option struct
//! (the value enums need no conversion: they are the stages' own, deriving
//! `clap::ValueEnum`). Checks and defaults a value needs on its way (the collect target,
//! `-F`, `--call-graph`, `--part`) are made here, once.

use std::path::PathBuf;
use std::time::Duration;

use super::{CollectArgs, DiffArgs, ExportArgs, FinalizeArgs, ReportArgs};
use crate::collect::{
    CallGraph, CollectError, CollectOptions, DEFAULT_FAULT_PERIOD, MEMORY_STACK_BYTES, Target,
    local_timestamp,
};
use crate::diff::{DiffCommandOptions, DiffOptions, DiffRanks, GateOptions};
use crate::events;
use crate::export::ExportOptions;
use crate::finalize::{FinalizeError, FinalizeOptions};
use crate::mpi::MpiContext;
use crate::options::Selection;
use crate::report::ReportOptions;

impl TryFrom<&CollectArgs> for CollectOptions {
    type Error = CollectError;

    /// Resolve defaults and check combinations.
    fn try_from(a: &CollectArgs) -> Result<Self, CollectError> {
        let mode = a.mode;
        let target = match (a.pid, a.command.is_empty()) {
            (Some(pid), true) => Target::Attach(pid as i32),
            (None, false) => Target::Launch(a.command.clone()),
            (Some(_), false) => {
                return Err(CollectError::Usage(
                    "give either -p PID or -- COMMAND, not both".into(),
                ));
            }
            (None, true) => {
                return Err(CollectError::Usage(
                    "nothing to profile: give -- COMMAND [ARGS...] or -p PID".into(),
                ));
            }
        };
        if a.freq == 0 || a.freq > 100_000 {
            return Err(CollectError::Usage(format!(
                "-F {}: the frequency must be 1..100000 Hz",
                a.freq
            )));
        }
        if let Some(d) = a.duration
            && !(d > 0.0 && d.is_finite())
        {
            return Err(CollectError::Usage(format!("-d {d}: expected seconds > 0")));
        }
        let dir = match &a.result_dir {
            Some(d) => d.clone(),
            None => PathBuf::from(format!("hwprof-{}-{}", mode.as_str(), local_timestamp())),
        };
        Ok(CollectOptions {
            mode,
            dir,
            freq: a.freq,
            events: a.events.clone(),
            // Memory mode: frame pointers lose the caller of libc's memset (a leaf
            // without a frame) in code built without them; a small DWARF copy finds it,
            // and one fault in DEFAULT_FAULT_PERIOD is sampled (docs/memory.md "Cost").
            call_graph: match (&a.call_graph, mode) {
                (Some(s), _) => CallGraph::parse(s)?,
                (None, events::Mode::Memory) => CallGraph::Dwarf(MEMORY_STACK_BYTES),
                (None, _) => CallGraph::Dwarf(8192),
            },
            python: a.python,
            rss_interval: Duration::from_millis(a.rss_interval.max(1)),
            fault_period: match a.fault_period {
                Some(0) => {
                    return Err(CollectError::Usage(
                        "--fault-period 0: expected 1 or more faults per sample".into(),
                    ));
                }
                Some(n) => n,
                None => DEFAULT_FAULT_PERIOD,
            },
            wait_threshold: Duration::from_micros(a.wait_threshold.unwrap_or(100)),
            archive: a.archive,
            duration: a.duration.map(Duration::from_secs_f64),
            target,
            quiet: a.quiet,
            mpi: MpiContext::from_env(),
        })
    }
}

impl TryFrom<&FinalizeArgs> for FinalizeOptions {
    type Error = FinalizeError;

    fn try_from(a: &FinalizeArgs) -> Result<Self, FinalizeError> {
        Ok(FinalizeOptions {
            dir: a.dir.clone(),
            search_dirs: a.search_dirs.clone(),
            jobs: a.jobs,
            part: a
                .part
                .as_deref()
                .map(crate::finalize::parse_part)
                .transpose()?,
            quiet: a.quiet,
            timings: a.timings,
        })
    }
}

impl From<&ReportArgs> for ReportOptions {
    fn from(a: &ReportArgs) -> Self {
        ReportOptions {
            dir: a.dir.clone(),
            view: a.view,
            format: a.format,
            top: a.top,
            selection: Selection {
                rank: a.mpi.rank,
                ranks: a.mpi.ranks,
                frames: a.frames,
                mpi_threads: a.mpi.mpi_threads,
            },
            by: a.by,
            output: a.output.clone(),
            open: a.open,
        }
    }
}

impl From<&ExportArgs> for ExportOptions {
    fn from(a: &ExportArgs) -> Self {
        ExportOptions {
            dir: a.dir.clone(),
            format: a.format,
            selection: Selection {
                rank: a.mpi.rank,
                ranks: a.mpi.ranks,
                frames: a.frames,
                mpi_threads: a.mpi.mpi_threads,
            },
            output: a.output.clone(),
            // clap takes --diff's values two by two (`num_args = 2`); the first two count.
            diff: match a.diff.as_slice() {
                [base, new, ..] => Some((base.clone(), new.clone())),
                _ => None,
            },
            normalize: a.normalize,
        }
    }
}

impl From<&DiffArgs> for DiffCommandOptions {
    fn from(a: &DiffArgs) -> Self {
        DiffCommandOptions {
            base: a.base.clone(),
            new: a.new.clone(),
            compare: DiffOptions {
                view: a.view,
                normalize: a.normalize,
                frames: a.frames,
            },
            format: a.format,
            top: a.top,
            ranks: DiffRanks {
                both: a.rank,
                base: a.base_rank,
                new: a.new_rank,
            },
            gate: a.fail_above.as_ref().map(|threshold| GateOptions {
                threshold: threshold.clone(),
                function: a.function.clone(),
            }),
            output: a.output.clone(),
        }
    }
}
