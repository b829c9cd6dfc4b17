//! hwprof: a sampling profiler for HPC codes, native and Python, on Linux perf events.
//!
//! Data flows one way: `collect` (live perf events, writes a raw results directory) →
//! `raw` (reads it back) → `finalize` (unwinds, symbolizes, merges Python frames,
//! aggregates, writes profile.db) → `report` / `export` (read profile.db). No stage
//! reaches back into an earlier one. hwprof does not instrument or modify programs.
#![warn(missing_docs)]

pub mod cli;
pub mod collect;
pub mod diff;
pub mod doctor;
pub mod events;
pub mod export;
pub mod finalize;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod manifest;
pub mod mpi;
pub mod options;
pub mod private_dir;
pub mod profile;
pub mod python;
pub mod raw;
pub mod report;
pub mod sidecars;
pub mod util;

/// A command line that asks for something impossible (a bad option value, a missing
/// argument clap cannot see). The binary exits 2 for it, clap's convention.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Whether `e` comes from running out of file descriptors (EMFILE, ENFILE) without
/// already saying which limit to raise: the edge then adds that line.
pub fn needs_fd_limit_hint(e: &anyhow::Error) -> bool {
    let out_of_fds = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|n| n == libc::EMFILE || n == libc::ENFILE)
    });
    out_of_fds && !format!("{e:#}").contains("open-files limit")
}

/// Whether `e` (or anything in its chain) is a usage error: the binary's exit code 2.
/// Each stage keeps its own `Usage` variant (typed errors per stage); this is the one
/// place that knows them all.
pub fn is_usage_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<UsageError>()
            || c.downcast_ref::<collect::CollectError>()
                .is_some_and(|c| matches!(c, collect::CollectError::Usage(_)))
            || c.downcast_ref::<diff::DiffError>()
                .is_some_and(|d| matches!(d, diff::DiffError::Usage(_)))
            || c.downcast_ref::<finalize::FinalizeError>()
                .is_some_and(|f| matches!(f, finalize::FinalizeError::Usage(_)))
    })
}
