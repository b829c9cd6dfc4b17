//! profile.db: the one place SQL lives.
//!
//! `finalize` writes it (through [`ProfileWriter`]), `report` and `export` read it
//! (through [`Profile::load`]). The schema, also described in
//! `docs/results-format.md`:
//!
//! ```sql
//! meta(key TEXT PRIMARY KEY, value TEXT)           -- mode, metric, total, samples, ...
//! events(id INTEGER PRIMARY KEY, name TEXT, requested TEXT, note TEXT)
//! processes(id INTEGER PRIMARY KEY, host TEXT, rank INTEGER, pid INTEGER,
//!           command TEXT, raw_dir TEXT, role TEXT) -- rank NULL outside MPI; role:
//!                                                  -- program|launcher (NULL in older
//!                                                  -- files: program), one row per
//!                                                  -- process image (exec starts one)
//! threads(id INTEGER PRIMARY KEY, process INTEGER, tid INTEGER, name TEXT)
//! functions(id INTEGER PRIMARY KEY, name TEXT, module TEXT, file TEXT,
//!           start_line INTEGER, kind TEXT)         -- kind: native|python|kernel|unknown
//! frames(id INTEGER PRIMARY KEY, function INTEGER, file TEXT, line INTEGER,
//!        inlined INTEGER)                          -- 1: inlined into the frame above
//! stacks(id INTEGER PRIMARY KEY, parent INTEGER, frame INTEGER)
//!                                                  -- a trie, parent NULL at the root
//!                                                  -- (outermost frame); a stack is
//!                                                  -- named by its leaf node
//! samples(stack INTEGER, thread INTEGER, event INTEGER, count INTEGER, value INTEGER)
//!                                                  -- aggregated: `count` samples with
//!                                                  -- that stack, `value` in the metric
//! rss(process INTEGER, time_ns INTEGER, rss_bytes INTEGER)
//! counts(stack INTEGER, thread INTEGER, event INTEGER, value REAL)
//!                                                  -- counter-group values read with
//!                                                  -- the samples (PERF_SAMPLE_READ):
//!                                                  -- per stack and thread, the count of
//!                                                  -- `event` (a group member, or the
//!                                                  -- leader's own count) over those
//!                                                  -- samples; scaled when multiplexed.
//!                                                  -- Not in the metric: `samples` alone
//!                                                  -- ranks; views add them as columns
//! timeline(stack INTEGER, thread INTEGER, bucket INTEGER, count INTEGER)
//!                                                  -- samples over time: `count`
//!                                                  -- samples of (stack, thread) in time
//!                                                  -- bucket `bucket` (meta
//!                                                  -- `timeline_start_ns`,
//!                                                  -- `timeline_bucket_ns`,
//!                                                  -- `timeline_buckets` <= 500); absent
//!                                                  -- in older profiles
//! wakers(stack, thread, class, object, waker INTEGER, count, wait_ns)
//!                                                  -- locks mode as root: the waits of
//!                                                  -- a waits row ended by a wakeup from
//!                                                  -- the stack `waker` (the waker's
//!                                                  -- `sched_waking` sample)
//! waits(stack INTEGER, thread INTEGER, class TEXT, object TEXT, count INTEGER,
//!       wait_ns INTEGER, max_ns INTEGER)       -- locks mode: off-CPU intervals
//!                                                  -- aggregated per (stack, thread,
//!                                                  -- class, object); class: see
//!                                                  -- [`WaitClass`]; object: the sync
//!                                                  -- object (`0x7ffd…` address, fd
//!                                                  -- path, `GIL`, MPI function) or
//!                                                  -- NULL; max_ns: longest single
//!                                                  -- wait; absent in older profiles
//! ```
//!
//! The file is written to a temporary name (`.profile.db.PID.N`) and renamed, so a reader never sees a
//! half-written profile.

pub mod stacks;
pub mod stream;
mod tables;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use rustc_hash::FxHashMap;

use tables::{write_rows, write_tables};

/// Errors reading or writing profile.db.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// SQLite failed.
    #[error("profile database {path}: {source}")]
    Sql {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The directory does not exist.
    #[error(
        "{0}: no such directory; give the results directory that `hwprof collect -r DIR` wrote"
    )]
    NoSuchDir(PathBuf),
    /// The user may not read the directory or its profile.db.
    #[error(
        "{0}: permission denied; it belongs to {1}: read it as that user, or ask them to share it (chmod -R g+rX)"
    )]
    PermissionDenied(PathBuf, String),
    /// A directory that hwprof did not write.
    #[error(
        "{0} is not an hwprof results directory (no manifest.json, no profile.db); give the directory that `hwprof collect -r DIR` wrote"
    )]
    NotResults(PathBuf),
    /// The directory has no profile.db.
    #[error(
        "{0} has no profile.db: it was collected with --no-finalize or finalize did not finish; run `hwprof finalize {0}`"
    )]
    NotFinalized(PathBuf),
    /// I/O around the database file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE events(id INTEGER PRIMARY KEY, name TEXT NOT NULL, requested TEXT, note TEXT);
CREATE TABLE processes(id INTEGER PRIMARY KEY, host TEXT, rank INTEGER, pid INTEGER,
                       command TEXT, raw_dir TEXT, role TEXT);
CREATE TABLE threads(id INTEGER PRIMARY KEY, process INTEGER NOT NULL, tid INTEGER, name TEXT);
CREATE TABLE functions(id INTEGER PRIMARY KEY, name TEXT NOT NULL, module TEXT NOT NULL,
                       file TEXT, start_line INTEGER, kind TEXT NOT NULL);
CREATE TABLE frames(id INTEGER PRIMARY KEY, function INTEGER NOT NULL, file TEXT, line INTEGER,
                    inlined INTEGER NOT NULL DEFAULT 0);
CREATE TABLE stacks(id INTEGER PRIMARY KEY, parent INTEGER, frame INTEGER NOT NULL);
CREATE TABLE samples(stack INTEGER, thread INTEGER NOT NULL, event INTEGER NOT NULL,
                     count INTEGER NOT NULL, value INTEGER NOT NULL);
CREATE TABLE rss(process INTEGER NOT NULL, time_ns INTEGER NOT NULL, rss_bytes INTEGER NOT NULL);
CREATE TABLE counts(stack INTEGER, thread INTEGER NOT NULL, event INTEGER NOT NULL,
                    value REAL NOT NULL);
CREATE TABLE timeline(stack INTEGER, thread INTEGER NOT NULL, bucket INTEGER NOT NULL,
                      count INTEGER NOT NULL);
CREATE TABLE waits(stack INTEGER, thread INTEGER NOT NULL, class TEXT NOT NULL, object TEXT,
                   count INTEGER NOT NULL, wait_ns INTEGER NOT NULL, max_ns INTEGER NOT NULL);
CREATE TABLE wakers(stack INTEGER, thread INTEGER NOT NULL, class TEXT NOT NULL, object TEXT,
                    waker INTEGER, count INTEGER NOT NULL, wait_ns INTEGER NOT NULL);
";

/// `meta` keys of the samples whose native stack was cut, by cause: past a full stack
/// copy, past a copy stopped at a never-touched page, at the kernel's call-chain limit
/// (docs/notices.md, "stacks cut short").
pub const STACK_CUT_KEYS: [&str; 3] = [
    "stacks_cut_at_copy_size",
    "stacks_cut_at_untouched_page",
    "stacks_cut_at_frame_limit",
];

/// `meta` key of the samples the [`STACK_CUT_KEYS`] counts are of: the program's (not
/// its launchers'). Absent in profiles written before it: then `samples`.
pub const STACK_CUT_BASE_KEY: &str = "stacks_cut_of_samples";

/// Meta keys: samples of hwprof's agent's own code (its start-up in a process it was
/// preloaded into), left out of the profile, and their value in the profile's metric.
pub const AGENT_OWN_SAMPLES_KEY: &str = "agent_own_samples";
/// See [`AGENT_OWN_SAMPLES_KEY`].
pub const AGENT_OWN_VALUE_KEY: &str = "agent_own_value";

/// Most time buckets a profile's timeline has (finalize widens buckets to stay under).
pub const TIMELINE_MAX_BUCKETS: u64 = 500;

/// What kind of code a function is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Machine code from an ELF file (or an unresolved address).
    Native,
    /// A Python function, from the interpreter's code objects.
    Python,
    /// Kernel code.
    Kernel,
}

impl FrameKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameKind::Native => "native",
            FrameKind::Python => "python",
            FrameKind::Kernel => "kernel",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "python" => FrameKind::Python,
            "kernel" => FrameKind::Kernel,
            _ => FrameKind::Native,
        }
    }
}

/// A function: what reports rank.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Function {
    /// Demangled name (`Class.method` for Python).
    pub name: String,
    /// Module: the ELF file's name, `python`, or `[kernel]`.
    pub module: String,
    /// Source file, if known.
    pub file: Option<String>,
    /// First line of the function, if known.
    pub start_line: Option<u32>,
    /// Native, Python or kernel.
    pub kind: FrameKind,
}

/// A frame: a function at a source line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Index into [`Profile::functions`].
    pub function: usize,
    /// Source file of the line (differs from the function's for inlined code).
    pub file: Option<String>,
    /// Source line, if known.
    pub line: Option<u32>,
}

/// A symbolized frame as finalize builds it, before interning: what the unwinder,
/// the symbolizer and the Python merge exchange (stacks are leaf first there).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrameInfo {
    /// The function.
    pub function: Function,
    /// Source file of this line.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
}

/// Whether a process image is the program or only launched it
/// (see `finalize::launchers` for the rule).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProcessRole {
    /// The program: its samples are what reports show.
    #[default]
    Program,
    /// A shim, shell or launch helper: its samples are launcher overhead, shown apart.
    Launcher,
}

impl ProcessRole {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessRole::Program => "program",
            ProcessRole::Launcher => "launcher",
        }
    }
    /// Parses [`ProcessRole::as_str`]; anything else (NULL in older files) is `Program`.
    fn parse(s: &str) -> Self {
        match s {
            "launcher" => ProcessRole::Launcher,
            _ => ProcessRole::Program,
        }
    }
}

/// One process of the profile.
#[derive(Clone, Debug, Default)]
pub struct Process {
    /// Host it ran on.
    pub host: String,
    /// MPI rank, None outside MPI.
    pub rank: Option<u32>,
    /// Process id.
    pub pid: u32,
    /// Command line, as far as known.
    pub command: String,
    /// The raw directory it came from, relative to the results directory.
    pub raw_dir: String,
    /// Program or launcher.
    pub role: ProcessRole,
}

/// One thread of the profile.
#[derive(Clone, Debug, Default)]
pub struct Thread {
    /// Index into [`Profile::processes`].
    pub process: usize,
    /// OS thread id.
    pub tid: u32,
    /// Thread name (comm).
    pub name: String,
}

/// An aggregated sample row.
#[derive(Clone, Copy, Debug)]
pub struct SampleRow {
    /// Leaf node in [`Profile::stacks`], None for a sample with no frames at all.
    pub stack: Option<usize>,
    /// Index into [`Profile::threads`].
    pub thread: usize,
    /// Index into [`Profile::events`].
    pub event: usize,
    /// Number of samples.
    pub count: u64,
    /// Weight in the mode's metric (samples, bytes or ns).
    pub value: u64,
}

/// Counter-group values read with samples, aggregated per (stack, thread, event).
#[derive(Clone, Copy, Debug)]
pub struct CountRow {
    /// Leaf node in [`Profile::stacks`] of the samples that read them.
    pub stack: Option<usize>,
    /// Index into [`Profile::threads`].
    pub thread: usize,
    /// Index into [`Profile::events`]: the event counted.
    pub event: usize,
    /// The count (scaled by time_enabled/time_running where multiplexed).
    pub value: f64,
}

/// Samples of one (stack, thread) in one time bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimelineRow {
    /// Leaf node in [`Profile::stacks`].
    pub stack: Option<usize>,
    /// Index into [`Profile::threads`].
    pub thread: usize,
    /// Bucket number: time = `timeline_start_ns` + bucket × `timeline_bucket_ns`.
    pub bucket: u32,
    /// Number of samples.
    pub count: u64,
}

/// Why a thread was off CPU (locks mode), as VTune's Locks and Waits classes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitClass {
    /// A mutex, rwlock or spin lock (pthread, futex on a lock word).
    Lock,
    /// A condition variable, barrier or semaphore.
    Condition,
    /// nanosleep, clock_nanosleep, usleep, `time.sleep`.
    Sleep,
    /// Blocking read/write/recv/accept/connect, poll/epoll/select.
    Io,
    /// waitpid, pthread_join.
    Join,
    /// Python's global interpreter lock (`take_gil`).
    Gil,
    /// Blocked or polling inside an MPI library.
    Mpi,
    /// Runnable but not running (preempted).
    Preempted,
    /// Off CPU for a reason no interposed call or stack explains.
    Other,
}

impl WaitClass {
    /// Every class, in the order views list them.
    pub const ALL: [WaitClass; 9] = [
        WaitClass::Lock,
        WaitClass::Condition,
        WaitClass::Sleep,
        WaitClass::Io,
        WaitClass::Join,
        WaitClass::Gil,
        WaitClass::Mpi,
        WaitClass::Preempted,
        WaitClass::Other,
    ];

    /// The name in profile.db and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitClass::Lock => "lock",
            WaitClass::Condition => "condition",
            WaitClass::Sleep => "sleep",
            WaitClass::Io => "io",
            WaitClass::Join => "join",
            WaitClass::Gil => "gil",
            WaitClass::Mpi => "mpi",
            WaitClass::Preempted => "preempted",
            WaitClass::Other => "other",
        }
    }

    /// Parses [`WaitClass::as_str`]; anything else is `Other`.
    pub fn parse(s: &str) -> WaitClass {
        WaitClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or(WaitClass::Other)
    }
}

/// What a waits row aggregates over: where, who, why and on what a thread waited. A
/// wakers row has the same key: the waits row whose waits it ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WaitKey {
    /// Leaf node in [`Profile::stacks`]: where the thread blocked.
    pub stack: Option<usize>,
    /// Index into [`Profile::threads`].
    pub thread: usize,
    /// Why it was off CPU.
    pub class: WaitClass,
    /// The sync object waited on (`0x7ffd…`, `/path/of/fd`, `pipe:[123]`, `GIL`,
    /// `MPI_Barrier`), None when unknown.
    pub object: Option<String>,
}

/// Off-CPU intervals of one [`WaitKey`], aggregated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitRow {
    /// The waits aggregated.
    pub key: WaitKey,
    /// Number of waits.
    pub count: u64,
    /// Total time off CPU, ns.
    pub wait_ns: u64,
    /// Longest single wait, ns.
    pub max_ns: u64,
}

/// An event that was opened.
#[derive(Clone, Debug, Default)]
pub struct EventRow {
    /// What was opened (`cpu-clock`).
    pub name: String,
    /// What was asked for (`cycles`).
    pub requested: String,
    /// Why they differ, or other notes.
    pub note: String,
}

/// A node in the stack trie.
#[derive(Clone, Copy, Debug)]
pub struct StackNode {
    /// The caller's node, None at the root.
    pub parent: Option<usize>,
    /// Index into [`Profile::frames`].
    pub frame: usize,
}

/// One RSS reading.
#[derive(Clone, Copy, Debug)]
pub struct RssPoint {
    /// Index into [`Profile::processes`].
    pub process: usize,
    /// CLOCK_MONOTONIC nanoseconds.
    pub time_ns: u64,
    /// Resident set size.
    pub rss_bytes: u64,
}

/// A whole profile in memory.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Key/value facts: mode, metric, total, samples, lost_samples, duration_s, ...
    pub meta: HashMap<String, String>,
    /// The events opened, as the kernel took them; samples and counts index them.
    pub events: Vec<EventRow>,
    /// Every process seen, with its host and rank, launchers among them.
    pub processes: Vec<Process>,
    /// Every thread seen; each names its process.
    pub threads: Vec<Thread>,
    /// One row per distinct function (name, module, file, first line, kind): the
    /// rows reports rank.
    pub functions: Vec<Function>,
    /// One row per distinct (function, file, line) the stacks pass through.
    pub frames: Vec<Frame>,
    /// Per frame: inlined into its caller (the frame above it on every stack it is on).
    pub frame_inlined: Vec<bool>,
    /// The stack trie: each node is a frame and names its caller's node; a sample
    /// names its leaf.
    pub stacks: Vec<StackNode>,
    /// Samples summed per (stack, thread, event).
    pub samples: Vec<SampleRow>,
    /// RSS readings over time, per process (memory mode).
    pub rss: Vec<RssPoint>,
    /// Counter-group values read with the samples (empty without a group).
    pub counts: Vec<CountRow>,
    /// Samples over time (empty in profiles written before the timeline).
    pub timeline: Vec<TimelineRow>,
    /// Off-CPU intervals by class and object (locks mode; empty otherwise and in
    /// profiles written before them).
    pub waits: Vec<WaitRow>,
    /// Who ended the waits (locks mode as root; empty otherwise).
    pub wakers: Vec<WakerRow>,
    /// Derived when loaded, not a table: the MPI library's own service threads
    /// ([`Profile::find_mpi_service_threads`]), which views set apart.
    pub mpi_service_threads: std::collections::HashSet<usize>,
}

/// Waits of one waits row that a thread with stack `waker` woke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WakerRow {
    /// The key of the waits row.
    pub key: WaitKey,
    /// Leaf node of the waker's stack (kernel and user frames where it woke the thread).
    pub waker: Option<usize>,
    /// Waits it ended.
    pub count: u64,
    /// Their off-CPU ns.
    pub wait_ns: u64,
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> ProfileError + '_ {
    move |source| ProfileError::Sql {
        path: path.to_path_buf(),
        source,
    }
}

impl Profile {
    /// The database path inside a results directory.
    pub fn db_path(dir: &Path) -> PathBuf {
        dir.join("profile.db")
    }

    /// Read `DIR/profile.db` whole.
    pub fn load(dir: &Path) -> Result<Profile, ProfileError> {
        let path = Self::db_path(dir);
        check_readable(dir, &path)?;
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sql_err(&path))?;
        let mut p = tables::read(&conn).map_err(sql_err(&path))?;
        let damaged = p.repair();
        if damaged > 0 {
            eprintln!(
                "hwprof: warning: {}: {damaged} rows refer to ids that do not exist (a damaged profile.db); they show as [damaged]",
                path.display()
            );
        }
        p.mpi_service_threads = p.find_mpi_service_threads();
        Ok(p)
    }

    /// Makes every id of the profile point at a row that exists, so that no view or
    /// export indexes out of bounds on a damaged or hostile profile.db: a dangling
    /// function, frame, thread, process or event id is pointed at a `[damaged]`
    /// placeholder row, a dangling stack id or a parent that does not precede its child
    /// (ProfileWriter writes parents first, so a cycle is impossible) becomes the root,
    /// and counts that are not finite become 0. Returns the number of repairs, also
    /// kept in meta `damaged_references`.
    pub fn repair(&mut self) -> u64 {
        let damaged = || Function {
            name: "[damaged]".into(),
            module: "[damaged]".into(),
            file: None,
            start_line: None,
            kind: FrameKind::Native,
        };
        // Functions, then the frames that refer to them.
        let mut function = Repoint::below(self.functions.len());
        for f in &mut self.frames {
            function.fix(&mut f.function, || push(&mut self.functions, damaged()));
        }
        self.frame_inlined.resize(self.frames.len(), false);
        // Stack nodes: frames, then parents (which must precede the node).
        let mut frame = Repoint::below(self.frames.len());
        let mut orphans = 0;
        for (i, s) in self.stacks.iter_mut().enumerate() {
            frame.fix(&mut s.frame, || {
                let function = push(&mut self.functions, damaged());
                self.frame_inlined.push(false);
                let line = None;
                push(
                    &mut self.frames,
                    Frame {
                        function,
                        file: None,
                        line,
                    },
                )
            });
            orphans += drop_dangling(&mut s.parent, i);
        }
        // Threads and RSS points refer to processes.
        let mut process = Repoint::below(self.processes.len());
        let mut add_process = || {
            let host = "[damaged]".to_string();
            let command = host.clone();
            push(
                &mut self.processes,
                Process {
                    host,
                    command,
                    ..Default::default()
                },
            )
        };
        let rss = self.rss.iter_mut().map(|r| &mut r.process);
        for id in self.threads.iter_mut().map(|t| &mut t.process).chain(rss) {
            process.fix(id, &mut add_process);
        }
        // The rows refer to stacks and threads, samples and counts to events too.
        let mut thread = Repoint::below(self.threads.len());
        let mut add_thread = || {
            let process = process.placeholder(&mut add_process);
            let name = "[damaged]".into();
            push(
                &mut self.threads,
                Thread {
                    process,
                    tid: 0,
                    name,
                },
            )
        };
        let ns = self.stacks.len();
        let stack_thread = (self
            .samples
            .iter_mut()
            .map(|r| (&mut r.stack, &mut r.thread)))
        .chain(
            self.counts
                .iter_mut()
                .map(|r| (&mut r.stack, &mut r.thread)),
        )
        .chain(
            self.timeline
                .iter_mut()
                .map(|r| (&mut r.stack, &mut r.thread)),
        )
        .chain(
            (self.waits.iter_mut().map(|r| &mut r.key))
                .chain(self.wakers.iter_mut().map(|r| &mut r.key))
                .map(|k| (&mut k.stack, &mut k.thread)),
        );
        for (stack, t) in stack_thread {
            orphans += drop_dangling(stack, ns);
            thread.fix(t, &mut add_thread);
        }
        for w in &mut self.wakers {
            orphans += drop_dangling(&mut w.waker, ns);
        }
        let mut event = Repoint::below(self.events.len());
        let mut add_event = || {
            let name = "[damaged]".into();
            push(
                &mut self.events,
                EventRow {
                    name,
                    ..Default::default()
                },
            )
        };
        let counted = self.counts.iter_mut().map(|r| &mut r.event);
        for id in self.samples.iter_mut().map(|r| &mut r.event).chain(counted) {
            event.fix(id, &mut add_event);
        }
        // Values no writer makes: a count that is not finite, a longest wait above
        // the total.
        let mut values = 0;
        for c in self.counts.iter_mut().filter(|c| !c.value.is_finite()) {
            values += 1;
            c.value = 0.0;
        }
        for w in self.waits.iter_mut().filter(|w| w.max_ns > w.wait_ns) {
            values += 1;
            w.max_ns = w.wait_ns;
        }
        let n = [function, frame, process, thread, event]
            .iter()
            .map(|r| r.repaired)
            .sum::<u64>()
            + orphans
            + values;
        if n > 0 {
            self.meta.insert("damaged_references".into(), n.to_string());
        }
        n
    }

    /// The frames of a stack, outermost first.
    pub fn stack_frames(&self, leaf: Option<usize>) -> Vec<usize> {
        let mut out = Vec::new();
        let mut node = leaf;
        while let Some(n) = node {
            let Some(s) = self.stacks.get(n) else { break };
            out.push(s.frame);
            node = s.parent;
            if out.len() > self.stacks.len() {
                break; // a cycle: never from ProfileWriter, but do not loop forever
            }
        }
        out.reverse();
        out
    }

    /// A meta value, or "".
    pub fn meta_str(&self, key: &str) -> &str {
        self.meta.get(key).map(String::as_str).unwrap_or("")
    }

    /// The mode's metric name: `samples`, `bytes` or `ns`.
    pub fn metric(&self) -> &str {
        match self.meta_str("metric") {
            "" => "samples",
            m => m,
        }
    }
}

/// Repoints ids at or above `valid` (dangling in a damaged profile.db) at one
/// placeholder row, added on first need.
struct Repoint {
    valid: usize,
    placeholder: Option<usize>,
    repaired: u64,
}

impl Repoint {
    fn below(valid: usize) -> Repoint {
        Repoint {
            valid,
            placeholder: None,
            repaired: 0,
        }
    }

    /// The placeholder's index, `add`ing it if it is not there yet.
    fn placeholder(&mut self, add: impl FnOnce() -> usize) -> usize {
        *self.placeholder.get_or_insert_with(add)
    }

    fn fix(&mut self, id: &mut usize, add: impl FnOnce() -> usize) {
        if *id >= self.valid {
            self.repaired += 1;
            *id = self.placeholder(add);
        }
    }
}

/// Clears a stack id at or above `below` (dangling, or a parent that does not precede
/// its child); 1 if it did.
fn drop_dangling(id: &mut Option<usize>, below: usize) -> u64 {
    match id.is_some_and(|i| i >= below) {
        true => {
            *id = None;
            1
        }
        false => 0,
    }
}

/// Appends `row`; its index.
fn push<T>(rows: &mut Vec<T>, row: T) -> usize {
    rows.push(row);
    rows.len() - 1
}

/// Builds a profile in memory with interned functions, frames and stacks, then writes
/// it in one transaction.
#[derive(Default)]
pub struct ProfileWriter {
    /// The profile being built.
    pub profile: Profile,
    function_ids: HashMap<Function, usize>,
    frame_ids: HashMap<(Frame, bool), usize>,
    // Keys of our own indices: FxHash (SipHash was a fifth of aggregating a rank's
    // timeline; docs/performance.md, "finalize, round 11").
    stack_ids: FxHashMap<(Option<usize>, usize), usize>,
    sample_ids: FxHashMap<(Option<usize>, usize, usize), usize>,
    count_ids: FxHashMap<(Option<usize>, usize, usize), usize>,
    timeline_ids: FxHashMap<(Option<usize>, usize, u32), usize>,
    wait_ids: HashMap<WaitKey, usize>,
    /// A wakers row's identity: its waits row's key and the waker's stack.
    waker_ids: HashMap<(WaitKey, Option<usize>), usize>,
}

impl ProfileWriter {
    /// Intern a function.
    pub fn function(&mut self, f: Function) -> usize {
        if let Some(&id) = self.function_ids.get(&f) {
            return id;
        }
        let id = self.profile.functions.len();
        self.profile.functions.push(f.clone());
        self.function_ids.insert(f, id);
        id
    }

    /// Intern a frame (not inlined).
    pub fn frame(&mut self, f: Frame) -> usize {
        self.frame_with(f, false)
    }

    /// Intern a frame; `inlined` is part of its identity, since the same function and
    /// line can run inlined into a caller on one stack and out of line on another.
    pub fn frame_with(&mut self, f: Frame, inlined: bool) -> usize {
        let key = (f, inlined);
        if let Some(&id) = self.frame_ids.get(&key) {
            return id;
        }
        let id = self.profile.frames.len();
        self.profile.frames.push(key.0.clone());
        self.profile.frame_inlined.push(inlined);
        self.frame_ids.insert(key, id);
        id
    }

    /// Intern a stack given its frames outermost first; returns the leaf node.
    pub fn stack(&mut self, frames_outermost_first: &[usize]) -> Option<usize> {
        self.stack_from(None, frames_outermost_first)
    }

    /// Extend the stack ending at `parent` with more frames (outermost first).
    pub fn stack_from(
        &mut self,
        mut parent: Option<usize>,
        frames_outermost_first: &[usize],
    ) -> Option<usize> {
        for &frame in frames_outermost_first {
            let key = (parent, frame);
            let id = match self.stack_ids.get(&key) {
                Some(&id) => id,
                None => {
                    let id = self.profile.stacks.len();
                    self.profile.stacks.push(StackNode { parent, frame });
                    self.stack_ids.insert(key, id);
                    id
                }
            };
            parent = Some(id);
        }
        parent
    }

    /// Add `count` samples of weight `value` to (stack, thread, event).
    pub fn add_sample(
        &mut self,
        stack: Option<usize>,
        thread: usize,
        event: usize,
        count: u64,
        value: u64,
    ) {
        let row = SampleRow {
            stack,
            thread,
            event,
            count,
            value,
        };
        add_or_insert(
            &mut self.sample_ids,
            &mut self.profile.samples,
            (stack, thread, event),
            row,
            |r, new| {
                r.count += new.count;
                r.value += new.value;
            },
        );
    }

    /// Add a counter-group count of `event` to (stack, thread).
    pub fn add_count(&mut self, stack: Option<usize>, thread: usize, event: usize, value: f64) {
        let row = CountRow {
            stack,
            thread,
            event,
            value,
        };
        let key = (stack, thread, event);
        add_or_insert(
            &mut self.count_ids,
            &mut self.profile.counts,
            key,
            row,
            |r, new| r.value += new.value,
        );
    }

    /// Add `count` samples of (stack, thread) in time bucket `bucket`.
    pub fn add_timeline(&mut self, stack: Option<usize>, thread: usize, bucket: u32, count: u64) {
        let row = TimelineRow {
            stack,
            thread,
            bucket,
            count,
        };
        let ids = &mut self.timeline_ids;
        add_or_insert(
            ids,
            &mut self.profile.timeline,
            (stack, thread, bucket),
            row,
            |r, new| r.count += new.count,
        );
    }

    /// Add one off-CPU interval of `wait_ns` to (stack, thread, class, object).
    pub fn add_wait(
        &mut self,
        stack: Option<usize>,
        thread: usize,
        class: WaitClass,
        object: Option<&str>,
        wait_ns: u64,
    ) {
        self.merge_wait(WaitRow {
            key: WaitKey {
                stack,
                thread,
                class,
                object: object.map(str::to_owned),
            },
            count: 1,
            wait_ns,
            max_ns: wait_ns,
        });
    }

    /// Add an aggregated row (of another profile: merge) to its key.
    pub fn merge_wait(&mut self, row: WaitRow) {
        add_or_insert(
            &mut self.wait_ids,
            &mut self.profile.waits,
            row.key.clone(),
            row,
            |w, new| {
                w.count = w.count.saturating_add(new.count);
                w.wait_ns = w.wait_ns.saturating_add(new.wait_ns);
                w.max_ns = w.max_ns.max(new.max_ns);
            },
        );
    }

    /// Add waits a waker ended to (their waits row's key, waker).
    pub fn merge_waker(&mut self, row: WakerRow) {
        let key = (row.key.clone(), row.waker);
        match self.waker_ids.get(&key) {
            Some(&i) => {
                let w = &mut self.profile.wakers[i];
                w.count = w.count.saturating_add(row.count);
                w.wait_ns = w.wait_ns.saturating_add(row.wait_ns);
            }
            None => {
                self.waker_ids.insert(key, self.profile.wakers.len());
                self.profile.wakers.push(row);
            }
        }
    }

    /// Write `DIR/profile.db` atomically: a temporary file, then rename.
    ///
    /// rusqlite opens databases by path. The temporary file is therefore first created
    /// by us, exclusively and 0600, relative to an fd of DIR (`O_CREAT|O_EXCL|O_NOFOLLOW`,
    /// see `private_dir`), and SQLite then opens that name without the right to create
    /// it and with `SQLITE_OPEN_NOFOLLOW`. (`/proc/self/fd/N` would not help: SQLite
    /// resolves that link back to the path.) Before the rename, the name is checked to
    /// still be the file we created (device and inode of our fd), so SQLite wrote into
    /// our file and nothing else; the rename is `renameat` in DIR's fd, which replaces
    /// whatever is at `profile.db` (a planted link included) without following it.
    /// [`stream::PendingDb`] does all this; finalize uses it directly, in pieces.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, ProfileError> {
        stream::PendingDb::create(dir)?.finish(self, None)
    }
}

/// Merge `row` into the row of `key` (`ids` maps keys to indices of `rows`) with `add`,
/// or append it when the key is new: the aggregation of every table of the writer.
fn add_or_insert<K: std::hash::Hash + Eq, R, S: std::hash::BuildHasher>(
    ids: &mut HashMap<K, usize, S>,
    rows: &mut Vec<R>,
    key: K,
    row: R,
    add: impl FnOnce(&mut R, R),
) {
    match ids.entry(key) {
        std::collections::hash_map::Entry::Occupied(e) => add(&mut rows[*e.get()], row),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(rows.len());
            rows.push(row);
        }
    }
}

/// Why a results directory's profile.db cannot be read, named by its real cause:
/// missing directory, permission denied, not an hwprof directory, or not finalized.
fn check_readable(dir: &Path, db: &Path) -> Result<(), ProfileError> {
    use std::io::ErrorKind;
    let denied = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(p)
            .map(|m| format!("uid {}", m.uid()))
            .unwrap_or_else(|_| "another user".into());
        ProfileError::PermissionDenied(p.to_path_buf(), owner)
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(ProfileError::NoSuchDir(dir.to_path_buf()));
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => return Err(denied(dir)),
        Err(source) => {
            return Err(ProfileError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
        Ok(m) if !m.is_dir() => return Err(ProfileError::NotResults(dir.to_path_buf())),
        Ok(_) => {}
    }
    if let Err(e) = std::fs::read_dir(dir) {
        return Err(match e.kind() {
            ErrorKind::PermissionDenied => denied(dir),
            _ => ProfileError::Io {
                path: dir.to_path_buf(),
                source: e,
            },
        });
    }
    match crate::raw::bounded::open_file(db, true) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::InvalidInput => Err(ProfileError::Io {
            path: db.to_path_buf(),
            source: e,
        }),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(denied(db)),
        Err(_) if !dir.join("manifest.json").exists() => {
            Err(ProfileError::NotResults(dir.to_path_buf()))
        }
        Err(_) => Err(ProfileError::NotFinalized(dir.to_path_buf())),
    }
}

impl Function {
    /// A `kind` function of `module` that starts at `start_line` of `file`.
    pub fn in_file(name: &str, module: &str, kind: FrameKind, file: &str, start_line: u32) -> Self {
        Function {
            name: name.into(),
            module: module.into(),
            file: Some(file.into()),
            start_line: Some(start_line),
            kind,
        }
    }
}

impl ProfileWriter {
    /// Intern `function` and its frame at `line` of the function's file (fixtures).
    pub fn frame_at(&mut self, function: Function, line: u32) -> usize {
        let file = function.file.clone();
        let function = self.function(function);
        self.frame(Frame {
            function,
            file,
            line: Some(line),
        })
    }
}

#[cfg(test)]
impl ProfileWriter {
    /// A hotspots profile (metric samples) sampled at `hz` with one event, `event`,
    /// opened: where the unit tests of the readers (diff, export) start.
    pub(crate) fn hotspots_for_tests(hz: &str, event: &str) -> ProfileWriter {
        let mut w = ProfileWriter::default();
        w.profile.meta.insert("mode".into(), "hotspots".into());
        w.profile.meta.insert("metric".into(), "samples".into());
        w.profile.meta.insert("frequency_hz".into(), hz.into());
        let name = event.into();
        w.profile.events.push(EventRow {
            name,
            ..Default::default()
        });
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_stacks_and_weights() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ProfileWriter::default();
        w.profile.meta.insert("mode".into(), "hotspots".into());
        w.profile.processes.push(Process {
            pid: 7,
            ..Default::default()
        });
        w.profile.threads.push(Thread {
            process: 0,
            tid: 7,
            name: "a".into(),
        });
        w.profile.events.push(EventRow {
            name: "cpu-clock".into(),
            ..Default::default()
        });
        let f = |w: &mut ProfileWriter, n: &str| {
            let fun = w.function(Function {
                name: n.into(),
                module: "m".into(),
                file: None,
                start_line: None,
                kind: FrameKind::Native,
            });
            w.frame(Frame {
                function: fun,
                file: None,
                line: Some(3),
            })
        };
        let main = f(&mut w, "main");
        let a = f(&mut w, "a");
        let s1 = w.stack(&[main, a]);
        let s2 = w.stack(&[main]);
        w.add_sample(s1, 0, 0, 3, 3);
        w.add_sample(s1, 0, 0, 1, 1);
        w.add_sample(s2, 0, 0, 2, 2);
        w.write(dir.path()).unwrap();
        let p = Profile::load(dir.path()).unwrap();
        assert_eq!(p.samples.len(), 2);
        let row = p.samples.iter().find(|s| s.count == 4).unwrap();
        let names: Vec<_> = p
            .stack_frames(row.stack)
            .iter()
            .map(|&fr| p.functions[p.frames[fr].function].name.clone())
            .collect();
        assert_eq!(names, ["main", "a"]);
        assert_eq!(p.meta_str("mode"), "hotspots");
    }

    /// Counts and timeline rows aggregate per key and come back as written.
    #[test]
    fn counts_and_timeline_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ProfileWriter::default();
        w.profile.threads.push(Thread::default());
        w.profile.events.push(EventRow {
            name: "page-faults".into(),
            ..Default::default()
        });
        w.add_count(None, 0, 0, 1.5);
        w.add_timeline(None, 0, 7, 2);
        w.add_count(None, 0, 0, 2.0);
        w.add_timeline(None, 0, 7, 3);
        w.add_timeline(None, 0, 9, 1);
        w.write(dir.path()).unwrap();
        let p = Profile::load(dir.path()).unwrap();
        assert_eq!(p.counts.len(), 1);
        assert_eq!(p.counts[0].value, 3.5);
        assert_eq!(p.timeline.len(), 2);
        assert_eq!(p.timeline[0].count, 5);
        assert_eq!(p.timeline[1].bucket, 9);
    }

    #[test]
    fn waits_and_wakers_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ProfileWriter::default();
        w.profile.processes.push(Process {
            host: "h".into(),
            rank: None,
            pid: 1,
            command: "c".into(),
            raw_dir: String::new(),
            role: ProcessRole::Program,
        });
        w.profile.threads.push(Thread {
            process: 0,
            tid: 1,
            name: "t".into(),
        });
        w.add_wait(None, 0, WaitClass::Lock, Some("0x1000"), 300);
        w.add_wait(None, 0, WaitClass::Lock, Some("0x1000"), 500);
        w.add_wait(None, 0, WaitClass::Sleep, None, 7);
        let lock = w.profile.waits[0].key.clone();
        for wait_ns in [300, 500] {
            w.merge_waker(WakerRow {
                key: lock.clone(),
                waker: None,
                count: 1,
                wait_ns,
            });
        }
        w.write(dir.path()).unwrap();
        // The key's fields are the first columns of both tables, in SCHEMA's order.
        let conn = Connection::open(dir.path().join("profile.db")).unwrap();
        let stored: (Option<i64>, i64, String, String, Option<i64>, i64, i64) = conn
            .query_row("SELECT * FROM wakers", [], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .unwrap();
        assert_eq!(
            stored,
            (None, 1, "lock".into(), "0x1000".into(), None, 2, 800)
        );
        let p = Profile::load(dir.path()).unwrap();
        assert_eq!(
            p.wakers,
            [WakerRow {
                key: lock,
                waker: None,
                count: 2,
                wait_ns: 800,
            }]
        );
        assert_eq!(p.waits.len(), 2);
        assert_eq!(
            p.waits[0],
            WaitRow {
                key: WaitKey {
                    stack: None,
                    thread: 0,
                    class: WaitClass::Lock,
                    object: Some("0x1000".into()),
                },
                count: 2,
                wait_ns: 800,
                max_ns: 500,
            }
        );
        assert_eq!(p.waits[1].key.class, WaitClass::Sleep);
        assert_eq!(WaitClass::parse("bogus"), WaitClass::Other);
    }

    /// Profiles written before counter groups, the timeline, waits, wakers and launcher
    /// folding lack their tables and the processes' role column: they load without them.
    #[test]
    fn older_databases_load_without_the_newer_tables_and_columns() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ProfileWriter::default();
        w.profile.processes.push(Process {
            role: ProcessRole::Launcher,
            ..Default::default()
        });
        w.profile.threads.push(Thread::default());
        w.profile.events.push(EventRow::default());
        w.add_count(None, 0, 0, 1.5);
        w.add_timeline(None, 0, 7, 2);
        w.add_wait(None, 0, WaitClass::Sleep, None, 7);
        w.write(dir.path()).unwrap();
        let conn = Connection::open(Profile::db_path(dir.path())).unwrap();
        conn.execute_batch(
            "DROP TABLE counts; DROP TABLE timeline; DROP TABLE waits; DROP TABLE wakers;
             ALTER TABLE processes DROP COLUMN role",
        )
        .unwrap();
        drop(conn);
        let p = Profile::load(dir.path()).unwrap();
        assert!(p.counts.is_empty() && p.timeline.is_empty() && p.waits.is_empty());
        assert_eq!(p.processes[0].role, ProcessRole::Program);
    }
}
