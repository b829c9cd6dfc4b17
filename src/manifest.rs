//! `DIR/manifest.json`: what was collected, how, and where it stands.
//!
//! ```json
//! { "format_version": 1, "hwprof_version": "0.1.0", "mode": "hotspots",
//!   "command": ["./app", "arg"], "hosts": ["node1"], "start_time_unix": 1764086400.0,
//!   "duration_s": 1.23, "call_graph": "dwarf,8192", "frequency_hz": 999,
//!   "events_requested": ["cycles"],
//!   "events": [{"requested": "cycles", "opened": "cpu-clock",
//!               "note": "no hardware PMU (ENOENT): sampling cpu-clock instead"}],
//!   "kernel_samples": false, "kernel_note": "...", "mpi_job": null,
//!   "world_size": null, "finalized": false, "exit_status": 0,
//!   "complete": true }
//! ```
//!
//! Collect writes a provisional manifest before the target starts, with
//! `"complete": false, "incomplete_reason": "collecting"`, and replaces it atomically
//! at the end; a run cut short keeps `complete: false` and says why in
//! `incomplete_reason`:
//!
//! ```json
//! { ..., "complete": false, "incomplete_reason": "disk full (ENOSPC) writing perf.data: recording stopped after 2.1 s" }
//! ```
//!
//! Each rank of an MPI job adds its own raw directory; only one writes the manifest.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Current results-directory format.
pub const FORMAT_VERSION: u32 = 1;

/// An event as opened, with the reason when it is not what was asked for.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct OpenedEvent {
    /// What the user or the mode asked for.
    pub requested: String,
    /// What was opened.
    pub opened: String,
    /// Why they differ, or other notes ("" when none).
    #[serde(default)]
    pub note: String,
    /// For events that asked for precise IPs: the `precise_ip` level the kernel took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precise_ip: Option<u8>,
}

/// A counter group: a sampling leader whose members are read with each sample.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GroupRecord {
    /// The sampling leader as opened.
    pub leader: String,
    /// Members opened (read with each sample).
    pub members: Vec<String>,
    /// Members dropped, with the reason (`instructions: not available here (ENOENT)`).
    pub dropped: Vec<String>,
    /// Whether samples carry the group's values (false: the kernel refused, the leader
    /// samples alone).
    pub read_per_sample: bool,
    /// Why not, when not.
    pub note: String,
}

/// The manifest.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
// Older manifests lack newer fields: each missing one reads as its default. The first
// four every manifest has ([`Manifest::check`]).
#[serde(default)]
pub struct Manifest {
    /// Results-directory format ([`FORMAT_VERSION`] when written by this hwprof).
    pub format_version: u32,
    /// hwprof that wrote it.
    pub hwprof_version: String,
    /// hotspots, memory or locks.
    pub mode: String,
    /// The command run, or `["-p", PID]`.
    pub command: Vec<String>,
    /// Hosts that added raw directories (one per node under MPI).
    pub hosts: Vec<String>,
    /// Wall-clock start, seconds since the epoch.
    pub start_time_unix: f64,
    /// Collection time, seconds: from the events' start to the end of recording.
    pub duration_s: f64,
    /// Call-graph mode (`dwarf,8192`, `fp`, `none`).
    pub call_graph: String,
    /// Sampling frequency, Hz, of the time-based events.
    pub frequency_hz: u64,
    /// Events named by the user or mode, as written.
    pub events_requested: Vec<String>,
    /// Events opened: each with what was asked for, and a note where a fallback
    /// replaced it.
    pub events: Vec<OpenedEvent>,
    /// Whether kernel samples were collected, and why not when not (`kernel_note`).
    pub kernel_samples: bool,
    /// Why kernel samples were not collected (`perf_event_paranoid` without
    /// CAP_PERFMON), or "".
    pub kernel_note: String,
    /// How Python stacks were captured ("off", "agent", "remote", "perfmap", "none found").
    pub python: String,
    /// The MPI job id, when under a launcher.
    pub mpi_job: Option<String>,
    /// World size from the launcher.
    pub world_size: Option<u32>,
    /// Whether profile.db was written.
    pub finalized: bool,
    /// The target's exit status as hwprof returns it.
    pub exit_status: Option<i32>,
    /// Notices printed during collection, kept for the report.
    pub notices: Vec<String>,
    /// Counter groups (hotspots with a PMU; `-e '{leader,member,...}'`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupRecord>,
    /// A Python launch: Python frames were expected (reports warn when none came).
    pub python_expected: bool,
    /// Whether collection ended as planned. `false` in the provisional manifest that
    /// collect writes before the target starts (replaced at the end), and when
    /// recording stopped early; manifests older than this field read as complete.
    #[serde(default = "complete_by_default")]
    pub complete: bool,
    /// Why the run is incomplete ("" when complete): [`COLLECTING`] in the provisional
    /// manifest (still there after a crash or SIGKILL of hwprof), or what stopped
    /// recording (disk full, a write error, the target killed by a signal).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub incomplete_reason: String,
    /// The recording node's base page size in bytes (a page fault weighs one page where
    /// the sample does not say); 0 in manifests older than this field (finalize then
    /// assumes the finalizing node's).
    pub page_size: u64,
    /// First and last sample time in this raw directory's perf.data (the events'
    /// clock, ns), in a rank's own manifest: finalize fixes the timeline's buckets from
    /// every rank's before reading any (absent: after the last rank is read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_times_ns: Option<[u64; 2]>,
}

/// `incomplete_reason` of the provisional manifest: collection had not ended.
pub const COLLECTING: &str = "collecting";

fn complete_by_default() -> bool {
    true
}

impl Manifest {
    /// Why the run is incomplete, as said to the user; None when complete.
    pub fn incomplete_summary(&self) -> Option<String> {
        if self.complete {
            return None;
        }
        Some(
            if self.incomplete_reason == COLLECTING || self.incomplete_reason.is_empty() {
                "hwprof stopped before collection ended (killed, e.g. SIGKILL or the OOM killer, or the node failed); data kept up to its last flush".to_string()
            } else {
                self.incomplete_reason.clone()
            },
        )
    }
}

/// Errors reading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// No manifest: not a results directory.
    #[error(
        "{0} is not an hwprof results directory (no manifest.json); give the directory that `hwprof collect -r DIR` wrote"
    )]
    Missing(PathBuf),
    /// The directory does not exist.
    #[error(
        "{0}: no such directory; give the results directory that `hwprof collect -r DIR` wrote"
    )]
    NoSuchDir(PathBuf),
    /// The user may not read it.
    #[error(
        "{0}: permission denied; read it as the user who collected it, or ask them to share it (chmod -R g+rX)"
    )]
    PermissionDenied(PathBuf),
    /// Unreadable or malformed.
    #[error("{path}: {why}; the results directory is damaged")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl Manifest {
    /// Path of the manifest in DIR.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("manifest.json")
    }

    /// Read DIR/manifest.json.
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = Self::path(dir);
        let text =
            crate::raw::bounded::read_limited_string(&path, crate::raw::bounded::Kind::Manifest)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound && !dir.exists() {
                        ManifestError::NoSuchDir(dir.to_path_buf())
                    } else if e.kind() == std::io::ErrorKind::NotFound {
                        ManifestError::Missing(dir.to_path_buf())
                    } else if e.kind() == std::io::ErrorKind::PermissionDenied {
                        ManifestError::PermissionDenied(path.clone())
                    } else {
                        ManifestError::Bad {
                            path: path.clone(),
                            why: e.to_string(),
                        }
                    }
                })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| ManifestError::Bad {
            path: path.clone(),
            why: e.to_string(),
        })?;
        m.check().map_err(|why| ManifestError::Bad { path, why })?;
        Ok(m)
    }

    /// What every manifest has, whatever its age: the fields that name the run, and
    /// each counter group's leader.
    fn check(&self) -> Result<(), String> {
        let missing = [
            ("format_version", self.format_version == 0),
            ("hwprof_version", self.hwprof_version.is_empty()),
            ("mode", self.mode.is_empty()),
            ("command", self.command.is_empty()),
            ("leader", self.groups.iter().any(|g| g.leader.is_empty())),
        ];
        match missing.iter().find(|(_, gone)| *gone) {
            Some((field, _)) => Err(format!("missing field `{field}`")),
            None => Ok(()),
        }
    }

    /// Write DIR/manifest.json atomically, mode 0600 (through an fd of DIR: a temporary
    /// file created exclusively, fsynced, renamed; see `private_dir`).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        self.save_in(&crate::private_dir::PrivateDir::open(dir)?)
    }

    /// As [`Manifest::save`], in an open directory.
    pub fn save_in(&self, dir: &crate::private_dir::PrivateDir) -> std::io::Result<()> {
        dir.write_atomic("manifest.json", self.to_json()?.as_bytes())
    }

    /// As [`Manifest::save_in`] without the `fsync` (collect's manifests, see
    /// [`crate::private_dir::PrivateDir::write_atomic_unsynced`]).
    pub fn save_unsynced_in(&self, dir: &crate::private_dir::PrivateDir) -> std::io::Result<()> {
        dir.write_atomic_unsynced("manifest.json", self.to_json()?.as_bytes())
    }

    /// The manifest's text.
    pub fn to_json(&self) -> std::io::Result<String> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        Ok(text + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Manifest, ManifestError> {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(Manifest::path(d.path()), text).unwrap();
        Manifest::load(d.path())
    }

    #[test]
    fn an_old_manifest_reads_its_missing_fields_as_defaults() {
        let m = load_text(
            r#"{"format_version": 1, "hwprof_version": "0.1.0", "mode": "hotspots",
                "command": ["./app"], "groups": [{"leader": "cycles"}]}"#,
        )
        .unwrap();
        // Older than `complete`: complete.
        assert!(m.complete);
        assert_eq!(m.page_size, 0);
        assert!(m.hosts.is_empty() && m.notices.is_empty());
        assert_eq!(m.groups[0].leader, "cycles");
        assert!(!m.groups[0].read_per_sample);
    }

    #[test]
    fn a_manifest_without_what_names_the_run_is_damaged() {
        for (text, field) in [
            (
                r#"{"hwprof_version": "0.1.0", "mode": "locks", "command": ["a"]}"#,
                "format_version",
            ),
            (
                r#"{"format_version": 1, "mode": "locks", "command": ["a"]}"#,
                "hwprof_version",
            ),
            (
                r#"{"format_version": 1, "hwprof_version": "0.1.0", "command": ["a"]}"#,
                "mode",
            ),
            (
                r#"{"format_version": 1, "hwprof_version": "0.1.0", "mode": "locks"}"#,
                "command",
            ),
            (
                r#"{"format_version": 1, "hwprof_version": "0.1.0", "mode": "locks",
                    "command": ["a"], "groups": [{"members": ["instructions"]}]}"#,
                "leader",
            ),
        ] {
            let e = load_text(text).unwrap_err().to_string();
            assert!(
                e.contains(&format!("missing field `{field}`")) && e.contains("damaged"),
                "{e}"
            );
        }
    }
}
