//! CPython knowledge: version detection, per-version layouts, the remote reader of code
//! objects, line tables, the Python sidecar files, the collector's link to the preloaded
//! agent (`agent/`), the remote sampler for `-p`, and finalize's join and merge.
//! The mechanism, its cost and the file formats are described in `docs/python.md`.
//!
//! Collector side (called from `collect::run` and `collect/launch.rs`, marked `[python]`
//! there):
//! - [`plan_launch`]`(command, --python)` → [`LaunchPlan`] when the command is CPython;
//! - [`AgentLink::bind_early`] before the fork (its [`AgentLink::env`] goes into the
//!   target's environment), [`AgentLink::set_target`]`(raw_dir, sampling attr bytes)`
//!   before the target is released ([`AgentLink::bind`] does both when the raw dir is
//!   known first);
//! - every drain cycle: [`AgentLink::poll_new_events`] (fds of the agents' sampling
//!   events: the collector maps, enables and drains them, and reports their ids with
//!   [`AgentLink::note_event_ids`]); [`AgentLink::poll`] is a no-op (resolution runs on
//!   the link's thread);
//! - at the end: [`AgentLink::finish`] (notices) or `finish_keep_method`;
//! - `-p PID`: [`RemoteSampler::start`] / [`RemoteSampler::finish`].
//!
//! Finalize side: [`PythonStacks::load`]`(raw_dir)`, a [`Joiner`] over it fed every sample
//! in time order (it also says which of the collector's samples are duplicates of the
//! agent's), [`merge`] of a native leaf-first stack with the joined [`PyStack`], and
//! [`perfmap_symbol`] / `perfmap::PerfMap` for `--python perfmap` trampolines.

pub mod agent_link;
pub mod code;
pub mod embedded;
pub mod layouts;
pub mod linetable;
pub mod memory;
pub mod perfmap;
pub mod process;
pub mod remote;
pub mod sidecar;
pub mod stacks;
pub mod wait_samples;
pub mod walker;

/// The wire formats, capture ring and layout tables shared with the agent (`wire/`).
pub use hwprof_wire as wire;
pub use hwprof_wire::ring;

use std::path::PathBuf;

pub use agent_link::{
    AgentEvents, AgentLink, LaunchMethod, LaunchPlan, agent_available, plan_launch,
};
pub use perfmap::perfmap_symbol;
pub use remote::RemoteSampler;
pub use stacks::{
    JoinCounts, Joiner, MergedStack, PyStack, PythonStacks, PythonSummary, SampleFacts, merge,
};

/// How Python frames are captured (`collect --python`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
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

/// Errors of the Python side of hwprof.
#[derive(Debug, thiserror::Error)]
pub enum PyError {
    /// The agent library could not be written out (or `HWPROF_AGENT_LIB` is wrong).
    #[error(
        "cannot prepare the Python agent library: {0} (set TMPDIR or XDG_RUNTIME_DIR to a writable directory, or use --python remote|off)"
    )]
    NoAgent(std::io::Error),
    /// The agent socket could not be set up.
    #[error("agent socket {0}: {1}; {hint}", hint = socket_hint(.1))]
    Socket(PathBuf, std::io::Error),
    /// A file of the raw directory.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A process could not be read.
    #[error("python: {0}")]
    Interp(#[from] process::InterpError),
}

/// What to do when the agent socket cannot be made: its directory is XDG_RUNTIME_DIR or
/// /dev/shm (`agent_link::socket_base`), not the results directory.
fn socket_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => {
            "out of file descriptors: raise the open-files limit (`ulimit -n` up to `ulimit -Hn`)"
        }
        _ => "check that XDG_RUNTIME_DIR (or /dev/shm) is a writable directory",
    }
}
