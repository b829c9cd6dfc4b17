//! Weighted stacks out of a loaded profile, filtered the way report and export need:
//! by rank, and by frame kind (`--frames all|python|native`, DESIGN section 2).

use super::{FrameKind, Profile, WaitClass, WaitKey, WaitRow};

/// Which frames a view shows (`--frames`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FramesFilter {
    /// Merged native and Python stacks.
    #[default]
    All,
    /// Python frames; native time below a Python frame is that frame's self time.
    Python,
    /// Native frames only (perf's view).
    Native,
    /// The program's frames: kernel, C library, Python interpreter and MPI library
    /// frames at the leaf fold into the program's frame that called them (locks mode's
    /// default: wait time where the program waited).
    Program,
}

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
    /// Only these MPI ranks (`--ranks 0-3,8`); both filters apply when both are given.
    pub ranks: Option<RankSet>,
    /// Keep the MPI library's own service threads (`--mpi-threads`), which views
    /// otherwise set apart ([`Profile::mpi_service_threads`]).
    pub mpi_threads: bool,
}

impl StackFilter {
    /// Whether samples of a process with this rank pass the rank filters.
    pub fn selects_rank(&self, rank: Option<u32>) -> bool {
        let one = self.rank.is_none_or(|r| rank == Some(r));
        let set = self
            .ranks
            .is_none_or(|set| rank.is_some_and(|r| set.contains(r)));
        one && set
    }

    /// Whether any rank filter is set.
    pub fn has_rank_filter(&self) -> bool {
        self.rank.is_some() || self.ranks.is_some()
    }

    /// The rank filters as written on the command line, for titles ("" when none).
    pub fn rank_note(&self) -> String {
        match (self.rank, self.ranks) {
            (Some(r), None) => format!("rank {r}"),
            (None, Some(s)) => format!("ranks {s}"),
            (Some(r), Some(s)) => format!("rank {r} of ranks {s}"),
            (None, None) => String::new(),
        }
    }
}

/// Most ranges a `--ranks` list may have: the set stays a small `Copy` value.
pub const MAX_RANK_RANGES: usize = 32;

/// A set of MPI ranks as inclusive ranges, parsed from `0-3,8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RankSet {
    ranges: [(u32, u32); MAX_RANK_RANGES],
    len: usize,
}

impl RankSet {
    /// Parse `A`, `A-B`, comma separated (`0-3,8`).
    pub fn parse(s: &str) -> Result<RankSet, String> {
        let mut set = RankSet {
            ranges: [(0, 0); MAX_RANK_RANGES],
            len: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("--ranks {s}: '{part}' is not a rank or a range like 0-3");
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let (a, b): (u32, u32) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if a > b {
                return Err(format!(
                    "--ranks {s}: range {part} runs backwards; write {b}-{a}"
                ));
            }
            if set.len == MAX_RANK_RANGES {
                return Err(format!(
                    "--ranks {s}: more than {MAX_RANK_RANGES} ranges; join neighbouring ranks into ranges like 0-63"
                ));
            }
            set.ranges[set.len] = (a, b);
            set.len += 1;
        }
        if set.len == 0 {
            return Err(format!("--ranks '{s}': expected ranks like 0-3,8"));
        }
        Ok(set)
    }

    /// Whether `rank` is in the set.
    pub fn contains(&self, rank: u32) -> bool {
        self.ranges[..self.len]
            .iter()
            .any(|&(a, b)| (a..=b).contains(&rank))
    }
}

impl std::fmt::Display for RankSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, &(a, b)) in self.ranges[..self.len].iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for RankSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RankSet::parse(s)
    }
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

    /// Whether `thread` is the program's (not a launcher's, nor, unless the filter keeps
    /// them, one of the MPI library's service threads) and passes the rank filter.
    fn program_thread_in(&self, thread: usize, filter: StackFilter) -> bool {
        !self.is_launcher_thread(thread)
            && (filter.mpi_threads || !self.mpi_service_threads.contains(&thread))
            && (!filter.has_rank_filter() || filter.selects_rank(self.thread_rank(thread)))
    }

    /// The MPI library's own service threads (Open MPI's progress and PMIx threads, in
    /// `poll`/`epoll_wait` for the whole run): threads of the program's processes (a
    /// launcher's are left out already) other than their process's main thread that
    /// wait in MPI and none of whose waits has a frame of the program
    /// ([`is_program_frame`]: only the C runtime's, MPI libraries' and the kernel's).
    /// They wait by design, not for the program: in locks mode they would lead every
    /// table (70% of the wait time of a 4-rank job), so views set them apart.
    pub fn find_mpi_service_threads(&self) -> std::collections::HashSet<usize> {
        use std::collections::{HashMap, HashSet};
        let mut has_program_frame: HashMap<Option<usize>, bool> = HashMap::new();
        let (mut waits_in_mpi, mut program) = (HashSet::new(), HashSet::new());
        for w in &self.waits {
            if w.key.class == WaitClass::Mpi {
                waits_in_mpi.insert(w.key.thread);
            }
            if *has_program_frame.entry(w.key.stack).or_insert_with(|| {
                self.stack_frames(w.key.stack)
                    .into_iter()
                    .any(|f| is_program_frame(self, f))
            }) {
                program.insert(w.key.thread);
            }
        }
        let is_main = |t: usize| {
            self.threads.get(t).is_none_or(|th| {
                self.processes
                    .get(th.process)
                    .is_none_or(|pr| pr.pid == th.tid)
            })
        };
        waits_in_mpi
            .into_iter()
            .filter(|&t| !is_main(t) && !program.contains(&t) && !self.is_launcher_thread(t))
            .collect()
    }

    /// All samples of the program as stacks, filtered.
    pub fn weighted_stacks(&self, filter: StackFilter) -> Vec<WeightedStack> {
        let mut out = Vec::with_capacity(self.samples.len());
        for s in self
            .samples
            .iter()
            .filter(|s| self.program_thread_in(s.thread, filter))
        {
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
        for c in self
            .counts
            .iter()
            .filter(|c| self.program_thread_in(c.thread, filter))
        {
            let frames = apply_frames_filter(self, self.stack_frames(c.stack), filter.frames);
            out.push((frames, c.event, c.value));
        }
        out
    }

    /// Locks mode: the waits table as stacks (same filters as
    /// [`Profile::weighted_stacks`]): (frames outermost first, row). A profile without
    /// the table (finalized before it existed) gives its samples as waits of class
    /// `other`, each row's longest wait taken as its mean (all it can prove).
    pub fn weighted_waits(&self, filter: StackFilter) -> Vec<(Vec<usize>, WaitRow)> {
        let fallback: Vec<WaitRow>;
        let rows: &[WaitRow] = if self.waits.is_empty() {
            fallback = self
                .samples
                .iter()
                .filter(|s| s.value > 0)
                .map(|s| WaitRow {
                    key: WaitKey {
                        stack: s.stack,
                        thread: s.thread,
                        class: WaitClass::Other,
                        object: None,
                    },
                    count: s.count,
                    wait_ns: s.value,
                    max_ns: s.value.checked_div(s.count).unwrap_or(0),
                })
                .collect();
            &fallback
        } else {
            &self.waits
        };
        rows.iter()
            .filter(|w| self.program_thread_in(w.key.thread, filter))
            .map(|w| {
                let frames =
                    apply_frames_filter(self, self.stack_frames(w.key.stack), filter.frames);
                (frames, w.clone())
            })
            .collect()
    }
}

/// The frames a view shows when the user did not say (`--frames` absent): the
/// program's frames in locks mode, where the kernel and the C library are where every
/// wait ends and say nothing of which code waited; all frames otherwise.
pub fn default_frames(p: &Profile, asked: Option<FramesFilter>) -> FramesFilter {
    match asked {
        Some(f) => f,
        None if p.meta_str("mode") == "locks" => FramesFilter::Program,
        None => FramesFilter::All,
    }
}

/// A module whose frames at the leaf of a stack fold into the program's frame that
/// called them (`--frames program`): the C runtime, the Python interpreter, OpenMP and
/// MPI runtimes, the vDSO.
pub fn is_runtime_module(module: &str) -> bool {
    let m = module.to_ascii_lowercase();
    const PREFIXES: &[&str] = &[
        "libc.so",
        "libc-",
        "libpthread",
        "ld-linux",
        "ld64.so",
        "ld-2.",
        "librt",
        "libdl",
        "libgcc_s",
        "libstdc++",
        "libgomp",
        "libomp",
        "libiomp",
        "libpython",
        "libevent",
        "[vdso]",
        // hwprof's own agent: its interposed calls wrap the C library's.
        "libhwprof_agent",
    ];
    PREFIXES.iter().any(|p| m.starts_with(p))
        // The interpreter executable: python3, python3.11 (not `python`, the module of
        // Python frames).
        || (m.starts_with("python") && m[6..].starts_with(|c: char| c.is_ascii_digit()))
        || crate::mpi::is_mpi4py_module(&m)
        || crate::mpi::is_mpi_module(&m)
}

/// Whether frame `f` is the program's: a Python frame, or a native one outside the
/// kernel and the runtimes ([`is_runtime_module`]).
pub fn is_program_frame(p: &Profile, f: usize) -> bool {
    let function = p.frames.get(f).and_then(|fr| p.functions.get(fr.function));
    function.is_some_and(|func| match func.kind {
        FrameKind::Kernel => false,
        FrameKind::Python => true,
        FrameKind::Native => !is_runtime_module(&func.module),
    })
}

/// `--frames program`: drop the innermost run of kernel and runtime frames (see
/// [`is_runtime_module`]), so the leaf is the program's frame that called into them.
/// A stack of runtime frames only loses its kernel frames.
fn program_frames(p: &Profile, mut frames: Vec<usize>) -> Vec<usize> {
    if let Some(i) = frames.iter().rposition(|&f| is_program_frame(p, f)) {
        frames.truncate(i + 1);
    } else if let Some(i) = frames
        .iter()
        .rposition(|&f| p.frame_kind(f) != FrameKind::Kernel)
    {
        frames.truncate(i + 1);
    }
    frames
}

/// `--frames python`: if any Python frame is on the stack, keep only the Python frames
/// (native code below a Python frame becomes that frame's self time); otherwise keep the
/// native stack. `--frames native`: drop Python frames.
pub fn apply_frames_filter(p: &Profile, frames: Vec<usize>, filter: FramesFilter) -> Vec<usize> {
    match filter {
        FramesFilter::All => frames,
        FramesFilter::Program => program_frames(p, frames),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_sets_parse_and_select() {
        let s = RankSet::parse("0-3, 8").unwrap();
        assert_eq!(s.to_string(), "0-3,8");
        assert!((0..4).all(|r| s.contains(r)) && s.contains(8));
        assert!(!s.contains(4) && !s.contains(9));
        assert!(RankSet::parse("3-1").unwrap_err().contains("backwards"));
        assert!(RankSet::parse("a").is_err() && RankSet::parse("").is_err());
        let f = StackFilter {
            ranks: Some(s),
            ..Default::default()
        };
        assert!(f.selects_rank(Some(2)) && !f.selects_rank(Some(5)) && !f.selects_rank(None));
        let both = StackFilter { rank: Some(2), ..f };
        assert!(both.selects_rank(Some(2)) && !both.selects_rank(Some(1)));
    }
}
