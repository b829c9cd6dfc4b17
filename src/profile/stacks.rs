//! Weighted stacks out of a loaded profile, filtered the way report and export need:
//! by rank, and by frame kind (`--frames all|python|native`, DESIGN section 2).

use super::{FrameKind, Profile};
use crate::cli::FramesFilter;

/// One aggregated stack with its weight.
#[derive(Clone, Debug)]
pub struct WeightedStack {
    /// Frame indices, outermost first.
    pub frames: Vec<usize>,
    /// Index into [`Profile::threads`].
    pub thread: usize,
    /// Samples.
    pub count: u64,
    /// Weight in the metric.
    pub value: u64,
}

/// Which samples to take.
#[derive(Clone, Copy, Debug, Default)]
pub struct StackFilter {
    /// Frame kinds to keep.
    pub frames: FramesFilter,
    /// Only this MPI rank.
    pub rank: Option<u32>,
}

impl Profile {
    /// The rank of a thread's process.
    pub fn thread_rank(&self, thread: usize) -> Option<u32> {
        let t = self.threads.get(thread)?;
        self.processes.get(t.process)?.rank
    }

    /// Kind of a frame's function.
    pub fn frame_kind(&self, frame: usize) -> FrameKind {
        self.frames
            .get(frame)
            .and_then(|f| self.functions.get(f.function))
            .map(|f| f.kind)
            .unwrap_or(FrameKind::Native)
    }

    /// True when a thread belongs to a launcher image (shim, shell, launch helper):
    /// its samples are launcher overhead, left out of every view and export.
    pub fn is_launcher_thread(&self, thread: usize) -> bool {
        self.threads
            .get(thread)
            .and_then(|t| self.processes.get(t.process))
            .is_some_and(|p| p.role == super::ProcessRole::Launcher)
    }

    /// Launcher overhead: (samples, value) of launcher images, for a rank or all.
    pub fn launcher_totals(&self, rank: Option<u32>) -> (u64, u64) {
        self.samples
            .iter()
            .filter(|s| self.is_launcher_thread(s.thread))
            .filter(|s| rank.is_none() || self.thread_rank(s.thread) == rank)
            .fold((0, 0), |(c, v), s| (c + s.count, v + s.value))
    }

    /// All samples of the program as stacks, filtered.
    pub fn weighted_stacks(&self, filter: StackFilter) -> Vec<WeightedStack> {
        let mut out = Vec::with_capacity(self.samples.len());
        for s in &self.samples {
            if self.is_launcher_thread(s.thread) {
                continue;
            }
            if let Some(rank) = filter.rank
                && self.thread_rank(s.thread) != Some(rank)
            {
                continue;
            }
            let frames = self.stack_frames(s.stack);
            let frames = apply_frames_filter(self, frames, filter.frames);
            out.push(WeightedStack {
                frames,
                thread: s.thread,
                count: s.count,
                value: s.value,
            });
        }
        out
    }

    /// Counter-group counts as stacks (same filters as [`Profile::weighted_stacks`]):
    /// (frames outermost first, event index, count).
    pub fn weighted_counts(&self, filter: StackFilter) -> Vec<(Vec<usize>, usize, f64)> {
        let mut out = Vec::with_capacity(self.counts.len());
        for c in &self.counts {
            if self.is_launcher_thread(c.thread) {
                continue;
            }
            if let Some(rank) = filter.rank
                && self.thread_rank(c.thread) != Some(rank)
            {
                continue;
            }
            let frames = apply_frames_filter(self, self.stack_frames(c.stack), filter.frames);
            out.push((frames, c.event, c.value));
        }
        out
    }

    /// Sum of the metric over the program's samples passing the rank filter.
    pub fn total_value(&self, rank: Option<u32>) -> u64 {
        self.samples
            .iter()
            .filter(|s| !self.is_launcher_thread(s.thread))
            .filter(|s| rank.is_none() || self.thread_rank(s.thread) == rank)
            .map(|s| s.value)
            .sum()
    }
}

/// `--frames python`: if any Python frame is on the stack, keep only the Python frames
/// (native code below a Python frame becomes that frame's self time); otherwise keep the
/// native stack. `--frames native`: drop Python frames.
fn apply_frames_filter(p: &Profile, frames: Vec<usize>, filter: FramesFilter) -> Vec<usize> {
    match filter {
        FramesFilter::All => frames,
        FramesFilter::Native => frames
            .into_iter()
            .filter(|&f| p.frame_kind(f) != FrameKind::Python)
            .collect(),
        FramesFilter::Python => {
            if frames.iter().any(|&f| p.frame_kind(f) == FrameKind::Python) {
                frames
                    .into_iter()
                    .filter(|&f| p.frame_kind(f) == FrameKind::Python)
                    .collect()
            } else {
                frames
            }
        }
    }
}
