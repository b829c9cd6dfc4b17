//! `collector-sampled.json` of a raw directory: the processes no agent sampled, that the
//! collector sampled itself or could not (`collect::fill` writes it, finalize reads it
//! for its notices): a JSON array of [`FillRecord`].

use std::path::Path;

use serde::{Deserialize, Serialize};

/// File in the raw dir.
pub const FILE_NAME: &str = "collector-sampled.json";

/// The `error` of a process that exited before its exec record was read: too short to
/// sample, counted as such (kept in the file to tell it from one never seen).
pub const EXITED_FIRST: &str = "it exited before hwprof read its exec record";

/// One process the collector decided about.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FillRecord {
    /// Process id.
    pub pid: u32,
    /// Its executable.
    pub exe: String,
    /// Why no agent samples it.
    pub why: String,
    /// Empty when the collector samples it; else why it could not (the process then
    /// goes unsampled).
    pub error: String,
    /// Event ids of the collector's events on it.
    pub ids: Vec<u64>,
}

/// Reads the records of a raw dir (empty when the file is absent or unreadable).
pub fn load(raw_dir: &Path) -> Vec<FillRecord> {
    crate::raw::bounded::read_limited(&raw_dir.join(FILE_NAME), crate::raw::bounded::Kind::Small)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}
