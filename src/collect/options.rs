//! What `collect` is asked for, resolved from the command line by `cli.rs`: the mode,
//! the target, the call-graph choice and the other knobs of a collection.

use std::path::PathBuf;
use std::time::Duration;

use super::{CollectError, sys};
use crate::events::Mode;
use crate::mpi::MpiContext;
use crate::python::PythonCapture;

/// Call stacks to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallGraph {
    /// Registers and this many bytes of user stack, unwound at finalize.
    Dwarf(u32),
    /// Kernel-walked frame pointers.
    Fp,
    /// Only the sampled IP.
    None,
}

impl CallGraph {
    /// Parse `dwarf[,BYTES]|fp|none`.
    pub fn parse(s: &str) -> Result<Self, CollectError> {
        let bad = || {
            CollectError::Usage(format!(
                "--call-graph '{s}': expected dwarf[,BYTES], fp or none"
            ))
        };
        match s.split_once(',') {
            None if s == "dwarf" => Ok(CallGraph::Dwarf(8192)),
            None if s == "fp" => Ok(CallGraph::Fp),
            None if s == "none" => Ok(CallGraph::None),
            Some(("dwarf", n)) => {
                let n: u32 = n.trim().parse().map_err(|_| bad())?;
                let max = crate::events::MAX_STACK_COPY;
                if n == 0 || n > max {
                    return Err(CollectError::Usage(format!(
                        "--call-graph dwarf,{n}: the stack copy must be 8..{max} bytes"
                    )));
                }
                Ok(CallGraph::Dwarf(n.div_ceil(8) * 8))
            }
            _ => Err(bad()),
        }
    }

    /// As written in the manifest.
    pub fn describe(self) -> String {
        match self {
            CallGraph::Dwarf(n) => format!("dwarf,{n}"),
            CallGraph::Fp => "fp".into(),
            CallGraph::None => "none".into(),
        }
    }
}

/// Memory mode's default DWARF stack copy: enough for memset and its callers' frames.
pub const MEMORY_STACK_BYTES: u32 = 1024;

/// What to collect, resolved from the command line.
#[derive(Clone, Debug)]
pub struct CollectOptions {
    /// Mode.
    pub mode: Mode,
    /// Results directory.
    pub dir: PathBuf,
    /// Sampling frequency.
    pub freq: u64,
    /// Events named with -e (empty: the mode's defaults).
    pub events: Vec<String>,
    /// Stacks.
    pub call_graph: CallGraph,
    /// Python capture.
    pub python: PythonCapture,
    /// RSS interval.
    pub rss_interval: Duration,
    /// Memory mode: one page-fault sample every this many faults.
    pub fault_period: u64,
    /// Locks mode: waits at least this long take a stack (the agent's threshold).
    pub wait_threshold: Duration,
    /// Copy ELF files into the results directory.
    pub archive: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Launch or attach.
    pub target: Target,
    /// Print less.
    pub quiet: bool,
    /// MPI context.
    pub mpi: MpiContext,
}

/// What to profile.
#[derive(Clone, Debug)]
pub enum Target {
    /// Run this command.
    Launch(Vec<String>),
    /// Attach to this process.
    Attach(i32),
}

/// Now as `YYYYmmdd-HHMMSS` in local time: the default results directory's suffix.
pub fn local_timestamp() -> String {
    // YYYYmmdd-HHMMSS in local time, via libc's localtime_r.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let tm = sys::local_time(now);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        tm.0, tm.1, tm.2, tm.3, tm.4, tm.5
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_graph_parsing() {
        assert_eq!(CallGraph::parse("dwarf").unwrap(), CallGraph::Dwarf(8192));
        assert_eq!(
            CallGraph::parse("dwarf,4000").unwrap(),
            CallGraph::Dwarf(4000)
        );
        assert_eq!(CallGraph::parse("fp").unwrap(), CallGraph::Fp);
        assert!(CallGraph::parse("lbr").is_err());
        assert!(CallGraph::parse("dwarf,x").is_err());
    }
}
