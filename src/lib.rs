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
pub mod profile;
pub mod python;
pub mod raw;
pub mod report;
pub mod util;
