//! Option groups that several stages take alike, built from the command line by `cli.rs`:
//! one definition instead of the same fields in each stage's option struct.

use crate::profile::Profile;
use crate::profile::stacks::{FramesFilter, RankSet, StackFilter, default_frames};

/// Which samples of a profile to take (`--rank`, `--ranks`, `--mpi-threads`, `--frames`
/// of `report` and `export`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Selection {
    /// Only this MPI rank.
    pub rank: Option<u32>,
    /// Only these MPI ranks.
    pub ranks: Option<RankSet>,
    /// Which frames to keep (None: the mode's default, [`default_frames`]).
    pub frames: Option<FramesFilter>,
    /// Keep the MPI library's own service threads (`--mpi-threads`).
    pub mpi_threads: bool,
}

impl Selection {
    /// The stack filter of this selection on `profile` (whose mode picks the frames
    /// when none were asked for).
    pub fn filter(&self, profile: &Profile) -> StackFilter {
        StackFilter {
            frames: default_frames(profile, self.frames),
            rank: self.rank,
            ranks: self.ranks,
            mpi_threads: self.mpi_threads,
        }
    }
}

/// The MPI ranks of `profile`'s processes, sorted, each once: what `--rank` may name.
pub fn ranks_present(profile: &Profile) -> Vec<u32> {
    let mut ranks: Vec<u32> = profile.processes.iter().filter_map(|p| p.rank).collect();
    ranks.sort_unstable();
    ranks.dedup();
    ranks
}

/// Checks that `rank` is one of `profile`'s ranks. The error is the hint for the user:
/// the ranks present, or, when the run is not MPI, to drop `option`.
pub fn check_rank(profile: &Profile, rank: u32, option: &str) -> Result<(), String> {
    let ranks = ranks_present(profile);
    if ranks.contains(&rank) {
        return Ok(());
    }
    Err(if ranks.is_empty() {
        format!("it is not an MPI run; drop {option}")
    } else {
        let list: Vec<String> = ranks.iter().map(u32::to_string).collect();
        format!("ranks present: {}; pick one of those", list.join(", "))
    })
}
