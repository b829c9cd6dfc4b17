//! Finalize's side: the Python stacks of a raw directory ([`PythonStacks`]), joined to
//! samples by thread and time, and the merge of a native stack with a Python stack
//! ([`merge`]).
//!
//! Join: an agent sample of thread `tid` at perf time `t` (CLOCK_MONOTONIC) gets that
//! thread's first capture at or after `t`: the agent's SIGTRAP handler runs after the
//! overflow that made the sample, and no user code runs in between, so that capture is
//! the stack of the sampled instant (two samples microseconds apart whose SIGTRAPs the
//! kernel merged share it). [`PythonStacks::stack_for`] takes the window
//! `[t, next_t)`, `next_t` the thread's next sample, as used for remote captures.
//!
//! Merge: each C-level call of the eval loop appears in the native stack as one
//! `_PyEval_EvalFrameDefault` frame, and in the Python stack as one group of frames:
//! one frame before 3.11; on 3.11 the frames up to and including an entry frame
//! (`is_entry`); on 3.12+ the frames up to a shim frame (owned by the C stack). The i-th
//! group from the leaf goes just inside the i-th run of eval frames, as the code that
//! eval call runs: the eval frames stay, so that `--frames native` is the native stack
//! perf sees (the eval loop's own time is its own, not its caller's) and `--frames
//! python` the Python one. When the counts differ the sample keeps both halves (matched
//! groups in place, the rest above the outermost native frame) and `merged` is false,
//! to be counted and reported.

use std::collections::HashMap;
use std::path::Path;

use super::PyError;
use super::linetable::{TableKind, line_for_offset};
use super::sidecar::{CaptureRec, CodeLine, read_captures, read_codes, unhex};
use super::wire::{
    CAP_ASYNC, CAP_NO_TSTATE, CAP_READ_FAILED, CAP_TORN, CAP_TRUNCATED, FR_ENTRY, FR_NO_OFFSET,
    FR_SHIM, METHOD_REMOTE,
};
use crate::profile::{FrameInfo, FrameKind, Function};

/// A Python stack, leaf first, split into eval-loop groups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PyStack {
    /// Python frames, leaf first (shim frames removed).
    pub frames: Vec<FrameInfo>,
    /// Sizes of the eval-loop groups, leaf first; they sum to `frames.len()`.
    pub groups: Vec<usize>,
    /// Deeper than the capture limit ([`MAX_FRAMES`](super::wire::MAX_FRAMES) frames):
    /// the outermost frames are missing.
    pub cut: bool,
}

/// Longest delay from a sample to its capture when the next sample's time is unknown.
pub const MAX_DELAY_NS: u64 = 50_000_000;

/// What was captured, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PythonSummary {
    /// Interpreter versions seen.
    pub versions: Vec<String>,
    /// "agent", "remote" or "perfmap".
    pub method: String,
    /// Captures read.
    pub captures: u64,
    /// Stacks discarded as torn (remote sampler).
    pub torn: u64,
    /// Frames whose code object was never resolved.
    pub unresolved: u64,
    /// Processes whose interpreter was refused, with the reason.
    pub refused: Vec<String>,
    /// Bytes of torn record tails skipped in capture files.
    pub skipped_bytes: u64,
    /// Captures the agents dropped because their ring was full.
    pub lost: u64,
}

struct Code {
    name: String,
    qualname: String,
    file: String,
    firstlineno: i64,
    minor: u32,
    table: Vec<u8>,
    self_first: bool,
}

struct Cap {
    time_ns: u64,
    rec: CaptureRec,
}

/// All Python captures of a raw directory, by thread.
pub struct PythonStacks {
    by_tid: HashMap<u32, Vec<Cap>>,
    codes: HashMap<(u32, u64, u64), Code>,
    types: HashMap<(u32, u64), String>,
    summary: PythonSummary,
    agent_ids: std::collections::HashSet<u64>,
    /// The agents' events that deliver a capture per sample (Python processes).
    capture_ids: std::collections::HashSet<u64>,
    /// Per process, the time of its first capture.
    agent_start: HashMap<u32, u64>,
}

/// A Python frame known by its name only (no file, no line).
fn named_python_frame(name: String) -> FrameInfo {
    FrameInfo {
        function: Function {
            name,
            module: "python".into(),
            file: None,
            start_line: None,
            kind: FrameKind::Python,
        },
        file: None,
        line: None,
    }
}

impl PythonStacks {
    /// Reads `python-*.bin` and `python-codes.jsonl`; None when the raw dir has no
    /// Python data.
    pub fn load(raw_dir: &Path) -> Result<Option<PythonStacks>, PyError> {
        let rd = std::fs::read_dir(raw_dir).map_err(|e| PyError::Io(raw_dir.to_path_buf(), e))?;
        let mut by_tid: HashMap<u32, Vec<Cap>> = HashMap::new();
        let mut summary = PythonSummary::default();
        let mut any = false;
        // Code objects named by the agent in the capture files (identity records): the
        // first source; `python-codes.jsonl` adds what the collector read from outside.
        let mut identities = Vec::new();
        let mut remote = false;
        for e in rd.flatten() {
            let p = e.path();
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !(name.starts_with("python-") && name.ends_with(".bin")) {
                continue;
            }
            let Ok(Some(cf)) = read_captures(&p) else {
                continue;
            };
            any = true;
            remote |= cf.method == METHOD_REMOTE;
            summary.skipped_bytes += cf.skipped as u64;
            identities.extend(cf.codes.into_iter().map(|c| (c, cf.minor)));
            for rec in cf.captures {
                if rec.flags & CAP_TORN != 0 {
                    summary.torn += 1;
                    continue;
                }
                summary.captures += 1;
                by_tid.entry(rec.tid).or_default().push(Cap {
                    time_ns: rec.time_ns,
                    rec,
                });
            }
        }
        let lines = read_codes(raw_dir);
        if !any && lines.is_empty() {
            return Ok(None);
        }
        for v in by_tid.values_mut() {
            v.sort_by_key(|c| c.time_ns);
        }
        // Processes with captures (forked children included: they share the agent's
        // inherited events) are sampled by the agent.
        let mut agent_start: HashMap<u32, u64> = HashMap::new();
        for c in by_tid.values().flatten() {
            let t = agent_start.entry(c.rec.pid).or_insert(c.time_ns);
            *t = (*t).min(c.time_ns);
        }
        let mut codes = HashMap::new();
        for ((pid, addr, ci), minor) in identities {
            codes.insert(
                (pid, addr, ci.token),
                Code {
                    name: ci.name,
                    qualname: ci.qualname,
                    file: ci.filename,
                    firstlineno: ci.firstlineno,
                    minor,
                    table: ci.linetable,
                    self_first: ci.self_first,
                },
            );
        }
        let mut types = HashMap::new();
        let mut methods = Vec::new();
        let mut agent_ids = std::collections::HashSet::new();
        let mut capture_ids = std::collections::HashSet::new();
        for l in lines {
            match l {
                CodeLine::Process {
                    version, method, ..
                } => {
                    summary.versions.push(version);
                    methods.push(method);
                }
                CodeLine::Refused { pid, reason } => {
                    summary.refused.push(format!("{pid}: {reason}"))
                }
                CodeLine::Code {
                    pid,
                    addr,
                    token,
                    name,
                    qualname,
                    file,
                    firstlineno,
                    minor,
                    linetable,
                    self_first,
                } => {
                    codes.entry((pid, addr, token)).or_insert(Code {
                        name,
                        qualname,
                        file,
                        firstlineno,
                        minor,
                        table: unhex(&linetable).unwrap_or_default(),
                        self_first,
                    });
                }
                CodeLine::Selftype { pid, addr, name } => {
                    types.insert((pid, addr), name);
                }
                CodeLine::Stats { torn, .. } => summary.torn += torn,
                CodeLine::Lost { captures, .. } => summary.lost += captures,
                CodeLine::Events { ids, captures, .. } => {
                    if captures {
                        capture_ids.extend(ids.iter().copied());
                    }
                    agent_ids.extend(ids);
                }
            }
        }
        summary.versions.sort();
        summary.versions.dedup();
        methods.sort();
        methods.dedup();
        summary.method = if remote {
            "remote".into()
        } else {
            methods.first().cloned().unwrap_or_else(|| "agent".into())
        };
        Ok(Some(PythonStacks {
            by_tid,
            codes,
            types,
            summary,
            agent_ids,
            capture_ids,
            agent_start,
        }))
    }

    /// The Python stack captured for the sample of `tid` at `sample_time_ns`: the
    /// capture of that thread with time in `[sample_time_ns, next_sample_time_ns)`
    /// (unbounded above when None). None when there is none, or it has no frames.
    pub fn stack_for(
        &self,
        tid: u32,
        sample_time_ns: u64,
        next_sample_time_ns: Option<u64>,
    ) -> Option<PyStack> {
        let caps = self.by_tid.get(&tid)?;
        let i = caps.partition_point(|c| c.time_ns < sample_time_ns);
        let c = caps.get(i)?;
        // A capture delivered late (SIGTRAP was blocked) shows where the signal was
        // unblocked, not the sampled instant: not used.
        if c.rec.flags & CAP_ASYNC != 0 {
            return None;
        }
        // Without the next sample's time, a capture more than MAX_DELAY_NS after the
        // sample is not taken (the agent's capture follows its sample by microseconds).
        let end = next_sample_time_ns.unwrap_or(sample_time_ns.saturating_add(MAX_DELAY_NS));
        if c.time_ns >= end {
            return None;
        }
        let s = self.build(c);
        (!s.frames.is_empty()).then_some(s)
    }

    /// Whether finalize should keep a sample: samples of the agent's events are kept;
    /// the collector's own samples of a process whose agent samples it are dropped from
    /// the agent's first capture on (both sample it; the agent's carry the Python stack). `id` is the sample's event
    /// id (PERF_SAMPLE_IDENTIFIER); samples of other processes are always kept.
    /// In memory mode the agent samples minor and major faults (its major-fault twin
    /// is filed under the collector's major-faults attr), so each event's collector
    /// samples are duplicates alike.
    pub fn keep_sample(&self, pid: u32, id: Option<u64>, time_ns: u64) -> bool {
        if self.agent_ids.is_empty() {
            return true;
        }
        match id {
            Some(id) if self.agent_ids.contains(&id) => true,
            // The collector's sample: a duplicate once the agent samples this process
            // (from its first capture on); before that (interpreter start-up) it is the
            // only sample and is kept.
            _ => self.agent_start.get(&pid).is_none_or(|&t| time_ns < t),
        }
    }

    /// Event ids of the agents' sampling events.
    pub fn agent_ids(&self) -> &std::collections::HashSet<u64> {
        &self.agent_ids
    }

    /// Every capture as (tid, time, stack), in time order per thread.
    pub fn all(&self) -> impl Iterator<Item = (u32, u64, PyStack)> + '_ {
        self.by_tid
            .iter()
            .flat_map(move |(&tid, v)| v.iter().map(move |c| (tid, c.time_ns, self.build(c))))
    }

    fn build(&self, c: &Cap) -> PyStack {
        let mut frames = Vec::new();
        let mut groups = Vec::new();
        let mut cur = 0usize;
        for f in &c.rec.frames {
            // Eval-loop calls end at an entry frame (3.8-3.11: the decoder marks it) or
            // are separated by shim frames (3.12+).
            if f.flags & FR_SHIM != 0 {
                if cur > 0 {
                    groups.push(cur);
                    cur = 0;
                }
                continue;
            }
            frames.push(self.frame(c.rec.pid, f));
            cur += 1;
            if f.flags & FR_ENTRY != 0 {
                groups.push(cur);
                cur = 0;
            }
        }
        if cur > 0 {
            groups.push(cur);
        }
        PyStack {
            frames,
            groups,
            cut: c.rec.flags & CAP_TRUNCATED != 0,
        }
    }

    fn frame(&self, pid: u32, f: &super::wire::CapFrame) -> FrameInfo {
        let Some(code) = self.codes.get(&(pid, f.code, f.token)) else {
            return named_python_frame(format!("<unresolved python code {:#x}>", f.code));
        };
        let mut name = code.qualname.clone();
        // `self_first` only where the class is named from the first argument (3.8-3.10).
        if code.self_first
            && let Some(t) = self.types.get(&(pid, f.self_type))
        {
            name = format!("{t}.{}", code.name);
        }
        let line = if f.flags & FR_NO_OFFSET != 0 {
            None
        } else {
            line_for_offset(
                TableKind::for_minor(code.minor),
                &code.table,
                code.firstlineno,
                f.offset,
            )
        };
        let file = Some(code.file.clone());
        FrameInfo {
            function: Function {
                name,
                module: "python".into(),
                file: file.clone(),
                start_line: u32::try_from(code.firstlineno).ok(),
                kind: FrameKind::Python,
            },
            file,
            line,
        }
    }

    /// What was captured.
    pub fn summary(&self) -> PythonSummary {
        let mut s = self.summary.clone();
        s.unresolved = self
            .by_tid
            .values()
            .flatten()
            .flat_map(|c| c.rec.frames.iter().map(move |f| (c.rec.pid, f)))
            .filter(|(pid, f)| {
                f.flags & FR_SHIM == 0 && !self.codes.contains_key(&(*pid, f.code, f.token))
            })
            .count() as u64;
        s
    }
}

/// Joins samples to captures in one pass over samples in time order, as finalize reads
/// them. An agent sample gets the thread's first capture at or after it (at most
/// [`MAX_DELAY_NS`] later); a remote-sampler capture must also fall before the thread's
/// next sample, resolved once that sample is seen.
pub struct Joiner {
    stacks: PythonStacks,
    slots: Vec<(u32, u64, Option<u64>)>,
    last: HashMap<u32, usize>,
    /// Slots of the agent's own samples.
    agent_slots: Vec<usize>,
    /// Agent samples seen (each should have exactly one capture).
    pub agent_samples: u64,
    /// Per thread: whether its last (unpaired) sample was left out.
    last_dropped: HashMap<u32, bool>,
}

/// What [`Joiner::sample`] needs of a sample.
#[derive(Clone, Copy, Debug)]
pub struct SampleFacts {
    /// Process.
    pub pid: u32,
    /// Thread.
    pub tid: u32,
    /// CLOCK_MONOTONIC time.
    pub time_ns: u64,
    /// Event id (PERF_SAMPLE_IDENTIFIER).
    pub id: Option<u64>,
    /// Attr index in perf.data.
    pub event: u32,
    /// Same id and instant as the thread's previous sample.
    pub paired: bool,
}

/// How a kept sample meets the captures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JoinAs {
    /// The agent's sample: the thread's first capture at or after it.
    Agent,
    /// Any other sample (remote captures; collector samples before the agent).
    Other,
}

/// [`Joiner::sample`] answer for a sample to leave out (a duplicate).
pub const DROP: u32 = u32::MAX - 1;

impl Joiner {
    /// A joiner over these captures.
    pub fn new(stacks: PythonStacks) -> Joiner {
        Joiner {
            stacks,
            slots: Vec::new(),
            last: HashMap::new(),
            agent_slots: Vec::new(),
            agent_samples: 0,
            last_dropped: HashMap::new(),
        }
    }

    /// One sample: None (no Python stack), [`DROP`], or a slot index into what
    /// [`Joiner::finish`] returns.
    ///
    /// `paired`: the sample repeats the thread's previous one (same id and instant).
    /// The kernel writes one fault into every sampling event that overflows on it
    /// from one shared `perf_sample_data`, so when the collector's inherited event and
    /// the agent's overflow on the same fault, the second record carries the first
    /// one's id and time (Linux 6.3+, `data->sample_flags`, docs/memory.md). One of the
    /// two is the agent's: kept once, as the agent's sample.
    pub fn sample(&mut self, s: SampleFacts) -> Option<u32> {
        let SampleFacts {
            pid,
            tid,
            time_ns,
            id,
            paired,
            ..
        } = s;
        let first_dropped = self.last_dropped.get(&tid).copied();
        let answer = if paired {
            match first_dropped {
                // The first copy was taken as the collector's and left out: this one
                // is the agent's.
                Some(true) => self.join(tid, time_ns, JoinAs::Agent),
                // The first copy was counted: this one is the same fault again.
                _ => Some(DROP),
            }
        } else if !self.stacks.keep_sample(pid, id, time_ns) {
            Some(DROP)
        } else {
            // A sample of an agent's capturing events (a non-Python process's agent
            // samples without captures, like the collector).
            let agent = id.is_some_and(|id| self.stacks.capture_ids.contains(&id));
            self.join(
                tid,
                time_ns,
                if agent { JoinAs::Agent } else { JoinAs::Other },
            )
        };
        if !paired {
            self.last_dropped.insert(tid, answer == Some(DROP));
        }
        answer
    }

    fn join(&mut self, tid: u32, time_ns: u64, how: JoinAs) -> Option<u32> {
        let agent = how == JoinAs::Agent;
        self.agent_samples += u64::from(agent);
        if !self.stacks.by_tid.contains_key(&tid) {
            return None;
        }
        let i = self.slots.len();
        if agent {
            // The agent's sample: its capture is the thread's first one at or after it.
            // No user code runs between the overflow and the handler, so the capture
            // holds the sample's Python stack even when the kernel merged the SIGTRAPs
            // of two close samples (a thread migrating between two per-CPU events)
            // into one; the next sample's time is not a bound here. Nor is time: a
            // switch-out sample (locks mode) gets its SIGTRAP when the thread runs again,
            // however long it slept, still before any of its Python code runs.
            self.agent_slots.push(i);
            self.slots.push((tid, time_ns, Some(u64::MAX)));
            return u32::try_from(i).ok().filter(|&i| i < DROP);
        }
        if !self.stacks.agent_ids.is_empty() {
            // The collector's own sample before the agent started: no capture is its.
            return None;
        }
        // Remote captures: the first one in [t, next sample of the thread).
        self.slots.push((tid, time_ns, None));
        if let Some(prev) = self.last.insert(tid, i)
            && let Some(slot) = self.slots.get_mut(prev)
            && time_ns >= slot.1
        {
            slot.2 = Some(time_ns);
        }
        u32::try_from(i).ok().filter(|&i| i < DROP)
    }

    /// What the captures hold.
    pub fn summary(&self) -> PythonSummary {
        self.stacks.summary()
    }

    /// The stack of every slot (empty when the sample had no capture), and how many of
    /// the agent's samples found their capture (whether or not it had Python frames).
    pub fn finish(self) -> (Vec<PyStack>, JoinCounts) {
        let stacks: Vec<PyStack> = self
            .slots
            .iter()
            .map(|&(tid, t, next)| self.stacks.stack_for(tid, t, next).unwrap_or_default())
            .collect();
        let mut with_capture = 0;
        let mut why = NoStackCauses::default();
        for &i in &self.agent_slots {
            let (tid, t, next) = self.slots[i];
            match self.stacks.capture_of(tid, t, next) {
                None => why.join_failed += 1,
                Some(c) => {
                    with_capture += 1;
                    if c.rec.flags & CAP_ASYNC != 0 {
                        why.signal_late += 1;
                    } else if stacks.get(i).is_none_or(|s| s.frames.is_empty()) {
                        // By the stack the capture builds, not its frame count: on 3.12+
                        // a capture holding only a shim frame (the C stack's entry
                        // frame) has frames but no Python frame.
                        if c.rec.flags & CAP_NO_TSTATE != 0 {
                            why.no_thread_state += 1;
                        } else if c.rec.flags & CAP_READ_FAILED != 0 {
                            why.read_failed += 1;
                        } else {
                            why.no_python_frame += 1;
                        }
                    }
                }
            }
        }
        // Samples of agents' events that never reached the joiner's agent slots (their
        // thread has no capture at all) found no capture either.
        why.join_failed += self
            .agent_samples
            .saturating_sub(self.agent_slots.len() as u64);
        (
            stacks,
            JoinCounts {
                agent_samples: self.agent_samples,
                agent_with_capture: with_capture,
                without_stack: why,
            },
        )
    }
}

/// How the agent's samples met their captures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JoinCounts {
    /// Samples of the agent's events.
    pub agent_samples: u64,
    /// Of those, samples with a capture in their window.
    pub agent_with_capture: u64,
    /// Why agent samples have no Python stack.
    pub without_stack: NoStackCauses,
}

/// Why agent samples were left without their Python stack, per cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NoStackCauses {
    /// The sampled thread held no Python thread state (a native thread, or the
    /// interpreter not started yet).
    pub no_thread_state: u64,
    /// A thread state but no Python frame running (interpreter start-up or shutdown,
    /// C code outside any Python call).
    pub no_python_frame: u64,
    /// SIGTRAP was blocked: the capture came late and is not used.
    pub signal_late: u64,
    /// Reading the thread's frame chain failed at its first frame.
    pub read_failed: u64,
    /// No capture was found for the sample (its capture was lost or never written).
    pub join_failed: u64,
}

impl NoStackCauses {
    /// Adds another raw dir's counts.
    pub fn add(&mut self, o: &NoStackCauses) {
        self.no_thread_state += o.no_thread_state;
        self.no_python_frame += o.no_python_frame;
        self.signal_late += o.signal_late;
        self.read_failed += o.read_failed;
        self.join_failed += o.join_failed;
    }
}

impl PythonStacks {
    /// Whether `tid` has a capture in `[t, next)` (any, even without Python frames).
    pub fn capture_in(&self, tid: u32, t: u64, next: Option<u64>) -> bool {
        self.capture_of(tid, t, next).is_some()
    }

    /// The capture [`PythonStacks::capture_in`] finds.
    fn capture_of(&self, tid: u32, t: u64, next: Option<u64>) -> Option<&Cap> {
        let caps = self.by_tid.get(&tid)?;
        let i = caps.partition_point(|c| c.time_ns < t);
        let end = next.unwrap_or(t.saturating_add(MAX_DELAY_NS));
        caps.get(i).filter(|c| c.time_ns < end)
    }
}

/// The summaries of several raw dirs as one JSON object (versions, method, captures,
/// torn, unresolved, refused), for profile.db's `meta.python_summary`.
pub fn summary_json(all: &[PythonSummary]) -> String {
    let mut versions: Vec<&String> = all.iter().flat_map(|s| &s.versions).collect();
    versions.sort();
    versions.dedup();
    let mut methods: Vec<&String> = all.iter().map(|s| &s.method).collect();
    methods.sort();
    methods.dedup();
    serde_json::json!({
        "versions": versions,
        "method": methods,
        "captures": all.iter().map(|s| s.captures).sum::<u64>(),
        "torn": all.iter().map(|s| s.torn).sum::<u64>(),
        "unresolved_frames": all.iter().map(|s| s.unresolved).sum::<u64>(),
        "refused": all.iter().flat_map(|s| &s.refused).collect::<Vec<_>>(),
        "skipped_bytes": all.iter().map(|s| s.skipped_bytes).sum::<u64>(),
        "captures_lost": all.iter().map(|s| s.lost).sum::<u64>(),
    })
    .to_string()
}

/// A merged stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedStack {
    /// Leaf first.
    pub frames: Vec<FrameInfo>,
    /// False when eval frames and Python groups did not match (both halves kept).
    pub merged: bool,
}

/// Whether a native stack stops before its root (`_start`, `main`, a thread start): it
/// was cut by the unwinder's stack limit.
fn native_is_cut(native_leaf_first: &[FrameInfo]) -> bool {
    const ROOTS: [&str; 8] = [
        "_start",
        "main",
        "__libc_start_main",
        "__libc_start_call_main",
        "start_thread",
        "clone",
        "clone3",
        "Py_BytesMain",
    ];
    native_leaf_first
        .last()
        .is_some_and(|f| !ROOTS.iter().any(|r| f.function.name == *r))
}

/// Whether a native frame is a C-level call of the eval loop.
pub fn is_eval_frame(f: &FrameInfo) -> bool {
    f.function.kind == FrameKind::Native && f.function.name.starts_with("_PyEval_EvalFrameDefault")
}

/// Merges native leaf-first frames with the Python stack: inside each run of eval-loop
/// frames, the Python frames it ran (see the module doc).
pub fn merge(native_leaf_first: &[FrameInfo], py: &PyStack) -> MergedStack {
    if py.frames.is_empty() {
        return MergedStack {
            frames: native_leaf_first.to_vec(),
            merged: true,
        };
    }
    // Native eval-call positions (a run of adjacent eval frames counts once).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < native_leaf_first.len() {
        if is_eval_frame(&native_leaf_first[i]) {
            let s = i;
            while i < native_leaf_first.len() && is_eval_frame(&native_leaf_first[i]) {
                i += 1;
            }
            runs.push((s, i));
        } else {
            i += 1;
        }
    }
    let mut groups: Vec<&[FrameInfo]> = Vec::new();
    let mut at = 0;
    for &g in &py.groups {
        let end = (at + g).min(py.frames.len());
        groups.push(&py.frames[at..end]);
        at = end;
    }
    // Fewer eval frames than groups is still a correct merge when the native stack was
    // cut (stack copy limit): the outer groups go above it, where the cut native frames were.
    let merged = runs.len() == groups.len()
        || (runs.len() < groups.len() && native_is_cut(native_leaf_first));
    let mut out = Vec::with_capacity(native_leaf_first.len() + py.frames.len());
    let mut last = 0;
    let mut gi = 0;
    for &(s, e) in &runs {
        out.extend_from_slice(&native_leaf_first[last..s]);
        if let Some(g) = groups.get(gi) {
            out.extend_from_slice(g);
            gi += 1;
        }
        out.extend_from_slice(&native_leaf_first[s..e]);
        last = e;
    }
    out.extend_from_slice(&native_leaf_first[last..]);
    for g in groups.iter().skip(gi) {
        out.extend_from_slice(g);
    }
    MergedStack {
        frames: out,
        merged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nat(name: &str) -> FrameInfo {
        FrameInfo {
            function: Function {
                name: name.into(),
                module: "libpython".into(),
                file: None,
                start_line: None,
                kind: FrameKind::Native,
            },
            file: None,
            line: None,
        }
    }
    fn py(name: &str) -> FrameInfo {
        named_python_frame(name.into())
    }
    fn names(v: &[FrameInfo]) -> Vec<&str> {
        v.iter().map(|f| f.function.name.as_str()).collect()
    }

    /// Eval-loop groups come from the frame flags alone: a group ends at each entry frame
    /// (3.8-3.10: every frame; 3.11: `is_entry`) and at each shim frame (3.12+).
    #[test]
    fn groups_end_at_entry_frames_and_shims() {
        let frame = |flags: u32| super::super::wire::CapFrame {
            code: 0x1000,
            flags,
            ..Default::default()
        };
        let stacks = PythonStacks {
            by_tid: HashMap::new(),
            codes: HashMap::new(),
            types: HashMap::new(),
            summary: PythonSummary::default(),
            agent_ids: Default::default(),
            capture_ids: Default::default(),
            agent_start: Default::default(),
        };
        let groups = |flags: &[u32]| {
            let cap = Cap {
                time_ns: 0,
                rec: CaptureRec {
                    pid: 7,
                    tid: 7,
                    time_ns: 0,
                    flags: 0,
                    frames: flags.iter().map(|&f| frame(f)).collect(),
                },
            };
            stacks.build(&cap).groups
        };
        // 3.10: every frame an entry frame.
        assert_eq!(groups(&[FR_ENTRY; 3]), vec![1, 1, 1]);
        // 3.11: two calls of the eval loop, the outer frames of each marked.
        assert_eq!(groups(&[0, FR_ENTRY, 0, 0, FR_ENTRY]), vec![2, 3]);
        // 3.12: shims between the calls (and at the outermost end).
        assert_eq!(groups(&[0, 0, FR_SHIM, 0, FR_SHIM]), vec![2, 1]);
        // Outer frames of a cut stack: a last group all the same.
        assert_eq!(groups(&[0, FR_ENTRY, 0]), vec![2, 1]);
    }

    /// A 3.12 capture holding only a shim frame (the C stack's entry frame) builds an
    /// empty stack: its sample is counted as "no Python frame", not left uncounted.
    #[test]
    fn shim_only_capture_counts_as_no_python_frame() {
        let shim = super::super::wire::CapFrame {
            code: 0x1000,
            token: 0,
            self_type: 0,
            offset: 0,
            flags: FR_SHIM,
        };
        let cap = |t: u64, frames: Vec<super::super::wire::CapFrame>| Cap {
            time_ns: t,
            rec: CaptureRec {
                pid: 7,
                tid: 7,
                time_ns: t,
                flags: 0,
                frames,
            },
        };
        let mut by_tid = HashMap::new();
        by_tid.insert(7, vec![cap(100, vec![shim]), cap(200, Vec::new())]);
        let ids: std::collections::HashSet<u64> = [5].into_iter().collect();
        let stacks = PythonStacks {
            by_tid,
            codes: HashMap::new(),
            types: HashMap::new(),
            summary: PythonSummary::default(),
            agent_ids: ids.clone(),
            capture_ids: ids,
            agent_start: [(7, 100)].into_iter().collect(),
        };
        let mut j = Joiner::new(stacks);
        for t in [90, 190] {
            j.sample(SampleFacts {
                pid: 7,
                tid: 7,
                time_ns: t,
                id: Some(5),
                event: 0,
                paired: false,
            });
        }
        let (built, counts) = j.finish();
        assert!(built.iter().all(|s| s.frames.is_empty()));
        assert_eq!(counts.agent_with_capture, 2);
        assert_eq!(counts.without_stack.no_python_frame, 2);
    }

    /// Python `a -> b` in one eval call, then `c` in another (leaf first: c | b, a).
    fn c_then_b_a() -> PyStack {
        PyStack {
            frames: vec![py("c"), py("b"), py("a")],
            groups: vec![1, 2],
            cut: false,
        }
    }

    #[test]
    fn merges_groups_at_eval_frames() {
        // numpy-like: Python a -> b (one eval call, 3.11 style) -> C ext -> Python c.
        let native = vec![
            nat("dgemm"),
            nat("_PyEval_EvalFrameDefault"),
            nat("_PyFunction_Vectorcall"),
            nat("ext_call"),
            nat("_PyEval_EvalFrameDefault"),
            nat("PyRun_SimpleFile"),
            nat("main"),
        ];
        let stack = c_then_b_a();
        let m = merge(&native, &stack);
        assert!(m.merged);
        assert_eq!(
            names(&m.frames),
            vec![
                "dgemm",
                "c",
                "_PyEval_EvalFrameDefault",
                "_PyFunction_Vectorcall",
                "ext_call",
                "b",
                "a",
                "_PyEval_EvalFrameDefault",
                "PyRun_SimpleFile",
                "main"
            ]
        );
    }

    #[test]
    fn mismatch_keeps_both_halves() {
        // Cut native stack (no root): one eval frame for two groups is a correct merge.
        let native = vec![nat("leaf"), nat("_PyEval_EvalFrameDefault")];
        let stack = c_then_b_a();
        let m = merge(&native, &stack);
        assert!(m.merged);
        assert_eq!(
            names(&m.frames),
            vec!["leaf", "c", "_PyEval_EvalFrameDefault", "b", "a"]
        );
        // A complete native stack with a missing eval frame is a failure: both halves kept.
        let native = vec![nat("leaf"), nat("_PyEval_EvalFrameDefault"), nat("main")];
        let m = merge(&native, &stack);
        assert!(!m.merged);
        assert_eq!(
            names(&m.frames),
            vec!["leaf", "c", "_PyEval_EvalFrameDefault", "main", "b", "a"]
        );
        // No eval frame at all (native unwinding failed): Python above the native part.
        let m = merge(&[nat("x"), nat("main")], &stack);
        assert!(!m.merged);
        assert_eq!(names(&m.frames), vec!["x", "main", "c", "b", "a"]);
        // More eval frames than groups: the extra ones stay native.
        let native = vec![
            nat("_PyEval_EvalFrameDefault"),
            nat("f"),
            nat("_PyEval_EvalFrameDefault"),
            nat("main"),
        ];
        let m = merge(
            &native,
            &PyStack {
                frames: vec![py("a")],
                groups: vec![1],
                cut: false,
            },
        );
        assert!(!m.merged);
        assert_eq!(
            names(&m.frames),
            vec![
                "a",
                "_PyEval_EvalFrameDefault",
                "f",
                "_PyEval_EvalFrameDefault",
                "main"
            ]
        );
    }
}
