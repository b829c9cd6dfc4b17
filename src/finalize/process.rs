//! One raw directory's perf.data, in time order: follow processes (fork, exec, exit),
//! their mappings and threads' names; unwind each sample (kernel call chain, then
//! frame pointers or framehop over the copied user stack); aggregate identical stacks.
//! The result holds addresses as (module, SVMA) so symbolization happens once per
//! distinct address afterwards, in parallel.

use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};
use std::path::Path;
use std::sync::Arc;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};
use linux_perf_data::PerfFileReader;
use linux_perf_data::linux_perf_event_reader::{
    EventRecord, RawData, RawEventRecord, SampleFormat, SampleRecord,
};

use crate::events::group::GroupRead;

use super::binaries::{LoadedElf, SearchPaths};
use super::group_reads::{GroupTracker, ThreadGroupKey};
use crate::raw::TolerantPerfFile;

/// Errors reading one raw directory.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The perf.data could not be opened.
    #[error(transparent)]
    Raw(#[from] crate::raw::RawError),
    /// linux-perf-data refused it.
    #[error("{path}: {why}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        why: String,
    },
}

/// log2 of the slots of the stack cache (16 Ki slots, 64 KiB per raw directory).
const STACK_CACHE_BITS: u32 = 14;

/// An address, named by where it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loc {
    /// In a mapped file: module index and linked address (already adjusted for lookup).
    Module {
        /// Index into [`RawProfile::modules`].
        module: u32,
        /// SVMA to look up.
        svma: u64,
    },
    /// Kernel address.
    Kernel(u64),
    /// Outside every known mapping.
    Unknown(u64),
    /// The kernel starting a new program image (execve writing the new stack): the
    /// user registers are still the old image's (see `Builder::sample`).
    Exec,
}

/// A mapped file.
pub struct ModuleRec {
    /// Path as mapped.
    pub path: String,
    /// Build id from the mmap record.
    pub build_id: Option<Vec<u8>>,
    /// The file found for it (None: not found or build id mismatch).
    pub elf: Option<Arc<LoadedElf>>,
    /// What it is to the per-sample checks, known from its file name once.
    pub kind: ModuleKind,
}

/// The modules finalize's per-sample checks tell apart ([`is_agents_own`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    /// hwprof's agent.
    Agent,
    /// The dynamic loader (`ld-linux*`, `ld64.so*`).
    Loader,
    /// The C library (`libc.so*`).
    Libc,
    /// Anything else.
    Other,
}

impl ModuleKind {
    /// The kind of the module mapped from `path`.
    fn of(path: &str) -> Self {
        let name = path.rsplit('/').next().unwrap_or(path);
        if name == crate::python::embedded::AGENT_FILE_NAME {
            ModuleKind::Agent
        } else if name.starts_with("ld-linux") || name.starts_with("ld64.so") {
            ModuleKind::Loader
        } else if name.starts_with("libc.so") {
            ModuleKind::Libc
        } else {
            ModuleKind::Other
        }
    }
}

impl ModuleRec {
    /// Module name shown in reports: the file name.
    pub fn name(&self) -> String {
        Path::new(&self.path)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.clone())
    }
}

/// Key of an aggregated sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SampleKey {
    /// Leaf node in the address trie (`NO_NODE` for an empty stack).
    pub leaf: u32,
    /// Python stack index (`NO_NODE` for none).
    pub python: u32,
    /// Thread index.
    pub thread: u32,
    /// Event (attr) index.
    pub event: u32,
}

/// Sample times are kept at 2^20 ns (about 1 ms) before finalize buckets them.
pub const TIME_UNIT_SHIFT: u32 = 20;

/// Why a sample's user stack unwound no further than its copy went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StackCut {
    /// Unwound to its root, or stopped for another reason.
    No,
    /// The copy was full (`--call-graph dwarf,N`): a large stack frame or deep recursion.
    AtCopySize,
    /// The kernel's copy stopped at a page it could not read without faulting it in: a
    /// stack page the program never touched, inside a large stack frame.
    AtUntouchedPage,
    /// A frame-pointer call chain of [`crate::raw::MAX_CALLCHAIN_FRAMES`] frames, the
    /// most the kernel records (deep recursion).
    AtFrameLimit,
}

/// Samples whose callers are missing, by [`StackCut`], of how many samples. A sample
/// with a Python stack is not counted as cut: the Python stack gives its callers (the
/// merge puts its outer frames above the cut).
#[derive(Clone, Copy, Debug, Default)]
pub struct StackCuts {
    /// Samples counted (cut or not).
    pub samples: u64,
    /// [`StackCut::AtCopySize`].
    pub at_copy_size: u64,
    /// [`StackCut::AtUntouchedPage`].
    pub at_untouched_page: u64,
    /// [`StackCut::AtFrameLimit`].
    pub at_frame_limit: u64,
}

impl StackCuts {
    fn count(&mut self, cut: StackCut) {
        self.samples += 1;
        match cut {
            StackCut::No => {}
            StackCut::AtCopySize => self.at_copy_size += 1,
            StackCut::AtUntouchedPage => self.at_untouched_page += 1,
            StackCut::AtFrameLimit => self.at_frame_limit += 1,
        }
    }

    /// The counts, in [`crate::profile::STACK_CUT_KEYS`] order.
    pub fn counts(&self) -> [u64; 3] {
        [
            self.at_copy_size,
            self.at_untouched_page,
            self.at_frame_limit,
        ]
    }

    /// Adds another raw directory's counts.
    pub fn add(&mut self, other: &StackCuts) {
        self.samples += other.samples;
        self.at_copy_size += other.at_copy_size;
        self.at_untouched_page += other.at_untouched_page;
        self.at_frame_limit += other.at_frame_limit;
    }
}

/// Marks "no node".
pub const NO_NODE: u32 = u32::MAX;

/// Everything one raw directory contributes.
#[derive(Default)]
pub struct RawProfile {
    /// Time spent unwinding and aggregating samples (with [`TIME_STAGES`] on).
    pub stage_ns: StageNs,
    /// (python) Per process: (time, event id) of its latest kept sample, to tell the
    /// agents' samples from the collector's by the events of what it last exec'd.
    pub pid_last_id: FxHashMap<u32, (u64, u64)>,
    /// (python) How its processes were sampled (set by finalize).
    pub sampled_by: super::SampledBy,
    /// Mapped files.
    pub modules: Vec<ModuleRec>,
    /// Address trie: (parent, loc); parent `NO_NODE` at the root (outermost frame).
    pub trie: Vec<(u32, Loc)>,
    /// Aggregated samples: (count, value).
    pub samples: FxHashMap<SampleKey, (u64, u64)>,
    /// Threads: (pid, tid, name). A thread is per process image: an exec starts new ones.
    pub threads: Vec<(u32, u32, String)>,
    /// Per thread: index into [`RawProfile::images`].
    pub thread_image: Vec<u32>,
    /// Process images (what a pid runs between execs): (pid, name, role).
    pub images: Vec<(u32, String, crate::profile::ProcessRole)>,
    /// Process command names by pid.
    pub processes: HashMap<u32, String>,
    /// Event names by attr index.
    pub events: Vec<String>,
    /// Python stacks (leaf first), joined to samples by the Python module.
    pub python_stacks: Vec<crate::python::PyStack>,
    /// (python) Samples of Python threads joined to a Python stack / without one.
    pub python_joined: (u64, u64),
    /// (python) The agent's samples and how many found their capture.
    pub python_join_counts: crate::python::JoinCounts,
    /// (python) What the raw dir's Python data holds (version, method, counts).
    pub python_summary: Option<crate::python::PythonSummary>,
    /// Samples read.
    pub sample_count: u64,
    /// Samples whose user stack could not be unwound past the first frame (for another
    /// reason than the end of the stack copy).
    pub unwind_truncated: u64,
    /// Samples whose callers are missing, by why their stack was cut, per thread
    /// index (a launcher's are not the program's).
    pub stack_cuts: FxHashMap<u32, StackCuts>,
    /// PERF_RECORD_LOST totals.
    pub lost: u64,
    /// Bytes skipped at the end of a cut perf.data.
    pub skipped_bytes: u64,
    /// First and last sample time.
    pub time_range: Option<(u64, u64)>,
    /// Samples over time: per sample key and time in units of [`TIME_UNIT_SHIFT`]
    /// (about a millisecond), the number of samples, sorted by [`sort_times`] (each key
    /// once); finalize turns it into the profile's bounded timeline once the run's time
    /// range is known.
    pub times: Vec<((SampleKey, u64), u64)>,
    /// Counter-group values read with the samples (`PERF_SAMPLE_READ`): per sample key
    /// and counted event (attr index), the counts attributed to that key, scaled when
    /// the thread's group was multiplexed (see [`super::group_reads`]).
    pub counts: FxHashMap<(SampleKey, u32), f64>,
    /// Counter-group facts of this raw directory.
    pub group: GroupStats,
    /// Memory mode: bytes faulted in pages larger than the base page (transparent
    /// huge pages), as the samples' data page size says.
    pub huge_page_bytes: u64,
    /// Samples found twice in perf.data (same id, thread, instant: one fault written
    /// into two rings by the kernel), counted once.
    pub duplicate_samples: u64,
    /// Samples of hwprof's agent's own code, left out of the profile (its start-up in a
    /// process it was preloaded into, its exit, its threads; see [`is_agents_own`]):
    /// how many, and their value (bytes in memory mode).
    pub agent_own: (u64, u64),
    /// Locks mode: waits, one per agent-recorded wait or unexplained off-CPU interval.
    pub waits: Vec<super::waits_join::RawWait>,
    /// Locks mode: off-CPU ns inside an agent-recorded wait (stack where it blocked).
    pub wait_ns_exact: u64,
    /// Locks mode: off-CPU ns no recorded wait explains (stack at switch-out, or the
    /// thread's nearest one).
    pub wait_ns_inferred: u64,
    /// Locks mode: ns inside recorded MPI calls spent on CPU (polling), counted as MPI
    /// wait (part of `wait_ns_exact`).
    pub wait_ns_on_cpu: u64,
}

/// A switch-out sample waiting for its thread's switch-in (root: the kernel samples
/// the switch with its stack).
#[derive(Clone, Copy, Debug)]
struct PendingOffCpu {
    key: SampleKey,
    /// The first syscall argument (`rdi` at kernel entry), from the sample's user
    /// registers: a futex word or a file descriptor, when the stack says which.
    arg0: Option<u64>,
}

/// What the samples' group reads amounted to.
#[derive(Clone, Debug, Default)]
pub struct GroupStats {
    /// Samples that carried group values.
    pub samples_with_read: u64,
    /// Of those, samples of threads whose group the PMU multiplexed (their counts
    /// are scaled by time_enabled/time_running).
    pub multiplexed_samples: u64,
    /// Samples whose read block could not be decoded (counted, left out of counts).
    pub bad_reads: u64,
    /// Counts read by samples left out (Python duplicates) that no later sample of
    /// their thread took: per attr index.
    pub unattributed: FxHashMap<u32, u64>,
}

struct Mapping {
    start: u64,
    end: u64,
    module: u32,
    /// avma - svma for this mapping.
    bias: i64,
}

#[derive(Clone, Default)]
struct ProcState {
    mappings: Arc<Vec<MappingShared>>,
    unwinder: UnwinderX86_64<Arc<[u8]>>,
}

#[derive(Clone)]
struct MappingShared(Arc<Mapping>);

/// What the metric of a sample is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weighting {
    /// One per sample.
    Samples,
    /// period × page size (page faults); the recording node's base page size.
    FaultBytes {
        /// Bytes.
        page_size: u64,
    },
    /// Off-CPU nanoseconds until the thread is switched back in.
    OffCpuNs,
}

/// `finalize --timings`: also time the unwinding and aggregation of each sample (two
/// clock reads per stage per sample, so off by default).
pub static TIME_STAGES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Nanoseconds spent in the per-sample stages of reading one perf.data.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageNs {
    /// Unwinding (DWARF stack copies, callchains) to addresses.
    pub unwind: u64,
    /// Adding the stack to the trie and the sample to the aggregates.
    pub aggregate: u64,
}

struct Builder<'a> {
    out: RawProfile,
    /// Time the per-sample stages ([`TIME_STAGES`]).
    timed: bool,
    search: &'a SearchPaths,
    procs: FxHashMap<u32, ProcState>,
    /// Processes whose image was exec'd in this recording and has not run yet (no
    /// sample of it had its user frame in one of its mappings): empty nearly always, so
    /// the per-sample check is an `is_empty`.
    exec_not_run: FxHashSet<u32>,
    module_ids: FxHashMap<(String, Option<Vec<u8>>), u32>,
    trie_ids: FxHashMap<(u32, Loc), u32>,
    /// Recent stacks: slot (by a hash of the whole stack) -> trie leaf, or NO_NODE.
    stack_cache: Vec<u32>,
    /// Entries of `out.times` after its last merge (it is merged when it doubles).
    times_merged: usize,
    /// A sample's frames and unwound addresses, kept between samples (no allocation per
    /// sample).
    frames_buf: Vec<Loc>,
    avmas_buf: Vec<u64>,
    thread_ids: FxHashMap<(u32, u32), u32>,
    /// Process images and who launched whom, for the launcher rule.
    lineage: super::launchers::Lineage,
    cache: CacheX86_64,
    weighting: Weighting,
    page_size: u64,
    /// Off-CPU: the last switch-out sample per tid, waiting for its switch-in.
    pending_off_cpu: FxHashMap<u32, PendingOffCpu>,
    /// Off-CPU: switch records and the agent's wait samples, joined per thread.
    waits: super::waits_join::WaitJoin,
    /// Locks mode as root: the attr of `sched:sched_waking` (whose samples are wakers).
    waking_event: Option<u32>,
    sample_hook: Option<&'a mut SampleHook>,
    /// Per attr: (sample_type, read_format) when its samples carry PERF_SAMPLE_READ.
    reads: Vec<Option<(u64, u64)>>,
    /// Attr index of every event id.
    attr_of_id: FxHashMap<u64, u32>,
    /// Per attr: a software event (never multiplexed).
    software: Vec<bool>,
    /// Per tid: (event id, time) of its last sample, to drop repeated records.
    last_sample: FxHashMap<u32, (u64, u64)>,
    /// Per attr: its fixed sampling period (1 for frequency-sampled events), the
    /// weight of a sample that carries no period of its own.
    attr_period: Vec<u64>,
    groups: GroupTracker,
    /// Unscaled counts per (sample key, counted attr, thread group); scaled at the end.
    raw_counts: FxHashMap<(SampleKey, u32, ThreadGroupKey), u64>,
    /// (python) Per tid: counts of left-out samples waiting for the next kept sample.
    pending_counts: FxHashMap<u32, Vec<(ThreadGroupKey, u32, u64)>>,
    /// The raw directory (its kallsyms copy).
    raw_dir: std::path::PathBuf,
    /// Per module: its symbolizer was started ([`Builder::prepare`]).
    prepared: Vec<bool>,
    /// The kallsyms parse was started.
    kernel_prepared: bool,
}

/// Called per sample; returns the index of a Python stack joined to it, or
/// [`DROP_SAMPLE`] to leave the sample out.
pub type SampleHook = dyn FnMut(&SampleInfo) -> Option<u32>;

/// (python) Hook answer: the sample is a duplicate (the collector's own sample of a
/// process that the Python agent samples) and is left out.
pub const DROP_SAMPLE: u32 = u32::MAX - 1;

/// What the Python join sees of a sample.
pub struct SampleInfo {
    /// Process.
    pub pid: u32,
    /// Thread.
    pub tid: u32,
    /// CLOCK_MONOTONIC time.
    pub time: u64,
    /// (python) Event id (PERF_SAMPLE_IDENTIFIER), to tell the agent's samples apart.
    pub id: Option<u64>,
    /// Attr index in perf.data.
    pub event: u32,
    /// Same id and instant as the thread's previous sample (one fault the kernel wrote
    /// into two rings).
    pub paired: bool,
}

/// Read one perf.data, opened (twice: header and records) by `open`; `path` names it.
pub fn process_perf_data<'a>(
    open: impl Fn() -> Result<TolerantPerfFile, crate::raw::RawError>,
    path: &Path,
    search: &'a SearchPaths,
    weighting: Weighting,
    sample_hook: Option<&'a mut SampleHook>,
    progress: &indicatif::ProgressBar,
) -> Result<RawProfile, ProcessError> {
    let path = path.to_path_buf();
    let file = open()?;
    let data_file = file.reopen();
    let skipped = file.skipped_bytes;
    let PerfFileReader { perf_file, .. } =
        PerfFileReader::parse_file(file).map_err(|e| ProcessError::Parse {
            path: path.clone(),
            why: e.to_string(),
        })?;
    let mut b = Builder {
        out: RawProfile {
            skipped_bytes: skipped,
            events: perf_file
                .event_attributes()
                .iter()
                .enumerate()
                .map(|(i, a)| a.name.clone().unwrap_or_else(|| format!("event{i}")))
                .collect(),
            ..Default::default()
        },
        search,
        procs: FxHashMap::default(),
        exec_not_run: FxHashSet::default(),
        module_ids: FxHashMap::default(),
        trie_ids: FxHashMap::default(),
        stack_cache: vec![NO_NODE; 1 << STACK_CACHE_BITS],
        times_merged: 0,
        frames_buf: Vec::with_capacity(64),
        avmas_buf: Vec::with_capacity(64),
        thread_ids: FxHashMap::default(),
        lineage: Default::default(),
        cache: CacheX86_64::new(),
        weighting,
        page_size: match weighting {
            Weighting::FaultBytes { page_size } => page_size,
            _ => 4096,
        },
        pending_off_cpu: FxHashMap::default(),
        waits: Default::default(),
        waking_event: None,
        sample_hook,
        reads: Vec::new(),
        attr_of_id: FxHashMap::default(),
        software: Vec::new(),
        attr_period: Vec::new(),
        last_sample: FxHashMap::default(),
        groups: GroupTracker::default(),
        raw_counts: FxHashMap::default(),
        pending_counts: FxHashMap::default(),
        timed: TIME_STAGES.load(std::sync::atomic::Ordering::Relaxed),
        raw_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        prepared: Vec::new(),
        kernel_prepared: false,
    };
    if b.weighting == Weighting::OffCpuNs {
        b.waking_event = b
            .out
            .events
            .iter()
            .position(|n| n == crate::events::WAKER_EVENT)
            .map(|i| i as u32);
    }
    let attrs: Vec<_> = perf_file
        .event_attributes()
        .iter()
        .map(|a| (a.attr, a.event_ids.clone()))
        .collect();
    for (i, (a, ids)) in attrs.iter().enumerate() {
        let st = a.sample_format.bits();
        b.reads.push(
            (st & perf_event_open_sys::bindings::PERF_SAMPLE_READ as u64 != 0)
                .then_some((st, a.read_format.bits())),
        );
        b.attr_period.push(match a.sampling_policy {
            linux_perf_data::linux_perf_event_reader::SamplingPolicy::Period(p) => p.get(),
            _ => 1,
        });
        b.software.push(matches!(
            a.type_,
            linux_perf_data::linux_perf_event_reader::PerfEventType::Software(_)
        ));
        for id in ids {
            b.attr_of_id.insert(*id, i as u32);
        }
    }
    let reported = std::sync::atomic::AtomicU64::new(0);
    data_file.read_data(|data, reached| {
        crate::raw::records::for_each_sorted(
            data,
            &attrs,
            |attr_index, record| b.handle(attr_index, record),
            |offset| {
                reached(offset);
                let before = reported.swap(offset as u64, std::sync::atomic::Ordering::Relaxed);
                progress.inc((offset as u64).saturating_sub(before));
            },
        )
    });
    b.finish_counts();
    sort_times(&mut b.out.times);
    b.waits.finish(&mut b.out);
    b.out.images = b.lineage.finish();
    Ok(b.out)
}

const PERF_RECORD_SAMPLE: u32 = 9;
const PERF_RECORD_MMAP2: u32 = 10;
const PERF_RECORD_MISC_MMAP_BUILD_ID: u16 = 1 << 14;

/// A sample body whose type has PERF_SAMPLE_READ: its read values decoded by
/// [`crate::events::group::sample_read`], and the rest parsed by
/// linux-perf-event-reader as a sample without READ (the block cut out, no copy).
/// None when either part is malformed. `body` comes from
/// [`crate::raw::records::for_each_sorted`], which drops samples whose call chain runs
/// past their record.
pub fn sample_with_read<'b>(
    body: &'b [u8],
    misc: u16,
    parse_info: linux_perf_data::linux_perf_event_reader::RecordParseInfo,
    sample_type: u64,
    read_format: u64,
) -> Option<(SampleRecord<'b>, GroupRead)> {
    let r = crate::events::group::sample_read(body, sample_type, read_format).ok()??;
    let (head, tail) = (body.get(..r.range.start)?, body.get(r.range.end..)?);
    let mut info = parse_info;
    info.sample_format.remove(SampleFormat::READ);
    // The call chain after the read block was checked to fit by the record reader
    // (`raw::records::for_each_sorted`), read block included.
    let stripped = RawEventRecord::new(
        linux_perf_data::linux_perf_event_reader::RecordType(PERF_RECORD_SAMPLE),
        misc,
        RawData::Split(head, tail),
        info,
    );
    match stripped.parse() {
        Ok(EventRecord::Sample(s)) => Some((s, r.read)),
        _ => None,
    }
}
/// The largest page a fault can map (1 GiB); a larger data page size is not believed.
const MAX_PAGE_SIZE: u64 = 1 << 30;
const PERF_CONTEXT_MAX: u64 = (-4095i64) as u64;
const PERF_CONTEXT_USER: u64 = (-512i64) as u64;

/// Most frames one DWARF unwind yields: a frame takes at least its 8-byte return address,
/// so the largest stack copy (65,528 bytes) holds at most 8,191; only an unwinder that
/// does not advance could go on past this, and the copy, not this bound, ends a deep
/// stack (counted as cut at the copy).
const MAX_UNWIND_FRAMES: usize = 8192;

impl Builder<'_> {
    fn handle(&mut self, attr_index: usize, record: RawEventRecord) {
        // Samples with group values: linux-perf-event-reader 0.10 misreads a
        // PERF_FORMAT_GROUP read block, so it is cut out here and decoded by
        // events::group; the rest of the sample parses as if READ were not set.
        if record.record_type.0 == PERF_RECORD_SAMPLE
            && let Some(Some((st, rf))) = self.reads.get(attr_index).copied()
        {
            let body = record.data.as_slice();
            match sample_with_read(&body, record.misc, record.parse_info, st, rf) {
                Some((s, read)) => self.sample(&s, attr_index as u32, Some(read)),
                None => self.out.group.bad_reads += 1,
            }
            return;
        }
        // linux-perf-event-reader asserts (panics) on an MMAP2 build id longer than 20
        // bytes: such a record is malformed and skipped here.
        if record.record_type.0 == PERF_RECORD_MMAP2
            && record.misc & PERF_RECORD_MISC_MMAP_BUILD_ID != 0
            && record.data.as_slice().get(32).is_none_or(|&n| n > 20)
        {
            return;
        }
        let Ok(parsed) = record.parse() else { return };
        match parsed {
            EventRecord::Sample(s) => self.sample(&s, attr_index as u32, None),
            EventRecord::Mmap2(m) => {
                let build_id = match &m.file_id {
                    linux_perf_data::linux_perf_event_reader::Mmap2FileId::BuildId(b) => {
                        Some(b.clone())
                    }
                    _ => None,
                };
                if m.protection & libc::PROT_EXEC as u32 != 0 {
                    let path = String::from_utf8_lossy(&m.path.as_slice()).into_owned();
                    self.mmap(
                        m.pid as u32,
                        m.address,
                        m.length,
                        m.page_offset,
                        path,
                        build_id,
                    );
                }
            }
            EventRecord::Mmap(m) => {
                let path = String::from_utf8_lossy(&m.path.as_slice()).into_owned();
                if !m.is_executable {
                    return;
                }
                self.mmap(m.pid as u32, m.address, m.length, m.page_offset, path, None);
            }
            EventRecord::Comm(c) => {
                let name = String::from_utf8_lossy(&c.name.as_slice()).into_owned();
                let (pid, tid) = (c.pid as u32, c.tid as u32);
                if c.is_execve {
                    self.procs.insert(pid, ProcState::default());
                    self.exec_not_run.insert(pid);
                    // The new image's threads are new threads of a new process row.
                    self.thread_ids.retain(|&(p, _), _| p != pid);
                    let time = record.common_data().ok().and_then(|c| c.timestamp);
                    self.lineage.exec(pid, &name, time.unwrap_or(0));
                } else if pid == tid {
                    self.lineage.rename(pid, &name);
                }
                if pid == tid {
                    self.out.processes.insert(pid, name.clone());
                }
                let t = self.thread(pid, tid);
                self.out.threads[t as usize].2 = name;
            }
            EventRecord::Fork(f) => {
                let (pid, ppid) = (f.pid as u32, f.ppid as u32);
                if pid != ppid {
                    self.exec_not_run.remove(&pid);
                    self.lineage.fork(pid, ppid);
                    let parent = self.procs.get(&ppid).cloned().unwrap_or_default();
                    self.procs.insert(pid, parent);
                    if let Some(name) = self.out.processes.get(&ppid).cloned() {
                        self.out.processes.entry(pid).or_insert(name);
                    }
                }
                let pname = self
                    .thread_ids
                    .get(&(ppid, f.ptid as u32))
                    .map(|&i| self.out.threads[i as usize].2.clone())
                    .unwrap_or_default();
                let t = self.thread(pid, f.tid as u32);
                if self.out.threads[t as usize].2.is_empty() {
                    self.out.threads[t as usize].2 = pname;
                }
            }
            EventRecord::Exit(e) if e.pid == e.tid => {
                self.exec_not_run.remove(&(e.pid as u32));
                let time = record.common_data().ok().and_then(|c| c.timestamp);
                self.lineage.exit(e.pid as u32, time.unwrap_or(0));
            }
            EventRecord::Lost(l) => self.out.lost += l.count,
            EventRecord::ContextSwitch(cs) if self.weighting == Weighting::OffCpuNs => {
                use linux_perf_data::linux_perf_event_reader::{
                    ContextSwitchRecord, TaskWasPreempted,
                };
                let Some(c) = record.common_data().ok() else {
                    return;
                };
                let (Some(pid), Some(tid), Some(t)) = (c.pid, c.tid, c.timestamp) else {
                    return;
                };
                let (pid, tid) = (pid as u32, tid as u32);
                match cs {
                    ContextSwitchRecord::Out { preempted, .. } => {
                        let thread = self.thread(pid, tid);
                        self.waits
                            .switch_out(tid, thread, t, preempted == TaskWasPreempted::Yes);
                    }
                    ContextSwitchRecord::In { .. } => {
                        // Root: the switch-out sample's stack (kernel and user).
                        let at_out = self.pending_off_cpu.remove(&tid).map(|p| (p.key, p.arg0));
                        self.waits.switch_in(tid, t, at_out, &mut self.out);
                    }
                }
            }
            _ => {}
        }
    }

    fn thread(&mut self, pid: u32, tid: u32) -> u32 {
        if let Some(&i) = self.thread_ids.get(&(pid, tid)) {
            return i;
        }
        let i = self.out.threads.len() as u32;
        self.out.threads.push((pid, tid, String::new()));
        let image = self.lineage.image(pid);
        self.out.thread_image.push(image);
        self.thread_ids.insert((pid, tid), i);
        i
    }

    fn module(&mut self, path: String, build_id: Option<Vec<u8>>) -> u32 {
        let key = (path.clone(), build_id.clone());
        if let Some(&i) = self.module_ids.get(&key) {
            return i;
        }
        let kind = ModuleKind::of(&path);
        let elf = if path.starts_with('/') {
            self.search.binary(&path, build_id.as_deref()).or_else(|| {
                // The agent's copy is gone after collection: the embedded one.
                (kind == ModuleKind::Agent)
                    .then(|| super::binaries::embedded_agent(build_id.as_deref()))
                    .flatten()
            })
        } else if path == "[vdso]" {
            // The recording kernel's vdso, copied beside perf.data (a regular file
            // there, not whatever a link points at).
            let copy = self.raw_dir.join(crate::sidecars::VDSO_FILE);
            std::fs::symlink_metadata(&copy)
                .is_ok_and(|m| m.is_file())
                .then(|| self.search.elf_cache.load(&copy))
                .flatten()
        } else {
            None
        };
        let i = self.out.modules.len() as u32;
        self.out.modules.push(ModuleRec {
            path,
            build_id,
            elf,
            kind,
        });
        self.module_ids.insert(key, i);
        i
    }

    fn mmap(
        &mut self,
        pid: u32,
        start: u64,
        len: u64,
        pgoff: u64,
        path: String,
        bid: Option<Vec<u8>>,
    ) {
        if len == 0 || !(path.starts_with('/') || path == "[vdso]") {
            return;
        }
        let end = start.saturating_add(len);
        // Anonymous code (JIT, CPython 3.12's perf trampolines) gets no module: its
        // addresses stay absolute so the copied perf maps can name them. Either way the
        // new mapping replaces whatever was mapped there.
        let anon = path.starts_with("//anon");
        let (module, elf, bias) = if anon {
            (0, None, 0)
        } else {
            let module = self.module(path.clone(), bid);
            let elf = self.out.modules[module as usize].elf.clone();
            let svma_start = elf
                .as_ref()
                .and_then(|e| e.svma_of_offset(pgoff))
                .unwrap_or(pgoff);
            // Addresses are modular: a hostile segment address must not overflow.
            (module, elf, (start as i64).wrapping_sub(svma_start as i64))
        };
        let proc = self.procs.entry(pid).or_default();
        let mut maps: Vec<MappingShared> = proc
            .mappings
            .iter()
            .filter(|m| m.0.end <= start || m.0.start >= end)
            .cloned()
            .collect();
        if !anon {
            maps.push(MappingShared(Arc::new(Mapping {
                start,
                end,
                module,
                bias,
            })));
        }
        maps.sort_by_key(|m| m.0.start);
        proc.mappings = Arc::new(maps);
        if let Some(elf) = elf {
            let u = &elf.unwind;
            let info = ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: u.text.as_ref().map(|t| t.0.clone()),
                text: u.text.as_ref().map(|t| t.1.clone()),
                eh_frame_svma: u.eh_frame.as_ref().map(|t| t.0.clone()),
                eh_frame: u.eh_frame.as_ref().map(|t| t.1.clone()),
                eh_frame_hdr_svma: u.eh_frame_hdr.as_ref().map(|t| t.0.clone()),
                eh_frame_hdr: u.eh_frame_hdr.as_ref().map(|t| t.1.clone()),
                debug_frame: u.debug_frame.clone(),
                got_svma: u.got.clone(),
                ..Default::default()
            };
            proc.unwinder.remove_module(start);
            proc.unwinder
                .add_module(Module::new(path, start..end, bias as u64, info));
        }
    }

    fn loc(&self, pid: u32, avma: u64) -> Loc {
        locate(self.procs.get(&pid).map(|p| &p.mappings[..]), avma)
    }

    fn sample(&mut self, s: &SampleRecord, event: u32, read: Option<GroupRead>) {
        let pid = s.pid.unwrap_or(0) as u32;
        let tid = s.tid.unwrap_or(0) as u32;
        let time = s.timestamp.unwrap_or(0);
        // The same sample twice (same id, thread and instant): the kernel wrote one
        // fault into two events' rings (the collector's and a Python agent's) from one
        // shared sample, the second carrying the first's id and time (docs/memory.md
        // "Each fault once"); a thread cannot fault twice in one nanosecond. The Python
        // join decides which copy is the agent's; without it, the second is left out.
        let paired =
            s.id.is_some_and(|id| self.last_sample.insert(tid, (id, time)) == Some((id, time)));
        if paired && self.sample_hook.is_none() {
            self.out.duplicate_samples += 1;
            return;
        }
        // Group values: counts since this instance's previous sample (every sample,
        // including one left out below, moves its instance on).
        // A read of one value is an event read alone (the Python agent's events share
        // the leader's attr): its count is the leader's own, already in the collector's
        // group reads, so it is left out rather than counted twice.
        let deltas = read.filter(|r| r.values.len() > 1).map(|r| {
            let software_only = r.values.iter().all(|v| {
                self.attr_of_id
                    .get(&v.id)
                    .and_then(|&a| self.software.get(a as usize))
                    .copied()
                    .unwrap_or(false)
            });
            let leader = s.id.or(r.values.first().map(|v| v.id)).unwrap_or(0);
            self.out.group.samples_with_read += 1;
            // The Python agent's events (same attr, read alone) are their own family.
            let family = (tid, event, r.values.len() as u32);
            let d =
                self.groups
                    .on_sample((leader, tid, s.cpu.unwrap_or(0)), family, software_only, r);
            let named: Vec<(u32, u64)> = d
                .into_iter()
                // An id not in perf.data's id arrays cannot be named: leave it out.
                .filter_map(|(id, d)| Some((*self.attr_of_id.get(&id)?, d)))
                .collect();
            (family, named)
        });
        // [python] Join the Python stack first: the hook may drop a duplicate sample.
        // A wakeup sample (root, locks mode) is the waker's native stack only: joined to
        // no Python capture, so that it takes none meant for the thread's next sample.
        let waking = self.waking_event == Some(event);
        let python = match self.sample_hook.as_mut() {
            Some(h) if !waking => h(&SampleInfo {
                pid,
                tid,
                time,
                id: s.id,
                event,
                paired,
            })
            .unwrap_or(NO_NODE),
            _ => NO_NODE,
        };
        if python == DROP_SAMPLE {
            self.out.duplicate_samples += u64::from(paired);
            // (python) The collector's duplicate of a sample the agent takes: its group
            // counts go to the thread's next kept sample (the agent's), so they land
            // on the Python stack of about the same instant.
            if let Some((family, named)) = deltas {
                let p = self.pending_counts.entry(tid).or_default();
                p.extend(named.into_iter().map(|(a, d)| (family, a, d)));
            }
            return;
        }
        self.out.sample_count += 1;
        if let Some(id) = s.id {
            let last = self.out.pid_last_id.entry(pid).or_insert((time, id));
            if time >= last.0 {
                *last = (time, id);
            }
        }
        self.out.time_range = Some(match self.out.time_range {
            None => (time, time),
            Some((a, b)) => (a.min(time), b.max(time)),
        });
        let unwind_start = self.timed.then(std::time::Instant::now);
        // Leaf first.
        let mut addrs = std::mem::take(&mut self.frames_buf);
        addrs.clear();
        let mut user_from_chain = false;
        let mut cut = StackCut::No;
        if let Some(chain) = &s.callchain {
            let maps = self.procs.get(&pid).map(|p| &p.mappings[..]);
            let mut in_user = false;
            let mut first_user = true;
            let mut frames = 0;
            for i in 0..chain.len() {
                let Some(a) = chain.get(i) else { break };
                if a >= PERF_CONTEXT_MAX {
                    in_user = a == PERF_CONTEXT_USER;
                    continue;
                }
                frames += 1;
                if in_user {
                    user_from_chain = true;
                    let lookup = if first_user { a } else { a.saturating_sub(1) };
                    first_user = false;
                    addrs.push(locate(maps, lookup));
                } else {
                    addrs.push(Loc::Kernel(a));
                }
            }
            if user_from_chain && frames >= usize::from(crate::raw::MAX_CALLCHAIN_FRAMES) {
                cut = StackCut::AtFrameLimit;
            }
        }
        if !user_from_chain {
            if let (Some(regs), Some((stack, dyn_size))) = (&s.user_regs, &s.user_stack) {
                cut = self.unwind_user(pid, regs, stack.as_slice().as_ref(), *dyn_size, &mut addrs);
            } else if let Some(ip) = s.ip
                && addrs.is_empty()
            {
                addrs.push(self.loc(pid, ip));
            }
        }
        // Samples of an image before it ran, taken in the kernel, whose user frame is
        // in no mapping: the kernel writing the new image's stack (argv, environment
        // and their pointers, auxv) in execve. The user registers are still the old
        // image's. (`hot.c` started with 20,000 environment variables: 144 KiB of its
        // 416 KiB were one `[unknown]+0x7f…` root.)
        if !self.exec_not_run.is_empty() && self.exec_not_run.contains(&pid) {
            match addrs.iter().find(|l| !matches!(l, Loc::Kernel(_))) {
                Some(Loc::Unknown(_)) if s.ip.is_some_and(is_kernel_address) => {
                    addrs.retain(|l| matches!(l, Loc::Kernel(_)));
                    addrs.push(Loc::Exec);
                }
                Some(Loc::Module { .. }) => {
                    self.exec_not_run.remove(&pid);
                }
                _ => {}
            }
        }
        let aggregate_start = unwind_start.map(|t| {
            let now = std::time::Instant::now();
            self.out.stage_ns.unwind += (now - t).as_nanos() as u64;
            now
        });
        // hwprof's agent at work on its own (its start-up in a C program it was
        // preloaded into, in case a Python is exec'd): not the program's time or memory.
        // (Locks mode keeps them: its waits are joined to the agent's markers.)
        if self.weighting != Weighting::OffCpuNs
            && python == NO_NODE
            && !waking
            && is_agents_own(&self.out.modules, &addrs)
        {
            let value = match self.weighting {
                Weighting::FaultBytes { .. } => self.fault_bytes(s, event),
                _ => 1,
            };
            self.out.agent_own.0 += 1;
            self.out.agent_own.1 += value;
            self.out.sample_count = self.out.sample_count.saturating_sub(1);
            self.frames_buf = addrs;
            return;
        }
        // Locks mode: the agent's wait marker. Its own frames (the marker, the
        // interposed call) are left out: the wait is where the program called.
        // Only a sample taken at the marker's instruction is one: a switch-out sample
        // (root) of a thread switched out right there, at its breakpoint, has the same
        // user registers but was taken in the kernel (its ip is the kernel's); taken
        // for a marker, it counted the wait a second time.
        let marker = match (self.weighting, &s.user_regs) {
            (Weighting::OffCpuNs, Some(regs)) if s.ip.is_none_or(|ip| regs.get(8) == Some(ip)) => {
                let stack = s.user_stack.as_ref().map(|(st, _)| st.as_slice());
                super::waits_join::Marker::from_regs(regs, time, stack.as_deref())
            }
            _ => None,
        };
        if self.weighting == Weighting::OffCpuNs {
            let is_agent = |l: &Loc| is_agent_frame(&self.out.modules, l);
            // Only when a program frame is left (an unwind that stopped inside the
            // agent keeps what it has).
            let program_left = addrs
                .iter()
                .any(|l| !matches!(l, Loc::Kernel(_)) && !is_agent(l));
            if marker.is_some() && program_left {
                let own = addrs
                    .iter()
                    .take_while(|l| matches!(l, Loc::Kernel(_)) || is_agent(l))
                    .count();
                addrs.drain(..own);
            } else if program_left {
                // A switch-out stack (root) that passed through an interposed call: the
                // agent's wrapper frames sit between the C library and the program.
                // Or through the agent's SIGTRAP handler (a Python stack captured at a
                // switch-out): the signal frame under it is the agent's doing too.
                let mut under_agent = false;
                addrs.retain(|l| {
                    let sigreturn = matches!(l, Loc::Module { module, svma }
                        if under_agent && is_sigreturn_at(&self.out.modules, *module, *svma));
                    under_agent = is_agent(l);
                    !under_agent && !sigreturn
                });
            }
        }
        let leaf = self.stack_leaf(&addrs);
        self.frames_buf = addrs;
        let thread = self.thread(pid, tid);
        let key = SampleKey {
            leaf,
            python,
            thread,
            event,
        };
        // Root, locks mode: a wakeup, taken in the waker's context: its stack is the
        // waker's. It is not a wait nor a sample of the profile; it names who ended the
        // woken thread's wait.
        if waking {
            self.out.sample_count = self.out.sample_count.saturating_sub(1);
            let wakee = s
                .raw
                .as_ref()
                .and_then(|r| super::waits_join::wakee_of(&r.as_slice()));
            if let Some(wakee) = wakee {
                self.waits.woken(wakee, key);
            }
            return;
        }
        let cuts = self.out.stack_cuts.entry(thread).or_default();
        cuts.count(if python == NO_NODE { cut } else { StackCut::No });
        let mut count = 1;
        let value = match self.weighting {
            Weighting::Samples => 1,
            Weighting::FaultBytes { .. } => self.fault_bytes(s, event),
            Weighting::OffCpuNs => match marker {
                Some(m) => {
                    // Counted once per interval, whoever samples it: a switch-out
                    // sample (root) already counts its own.
                    let (ns, unsampled) = self.waits.marker(tid, key, m, &mut self.out);
                    count = unsampled;
                    ns
                }
                None => {
                    // perf's x86-64 register 5 is rdi: at syscall entry, the first
                    // argument.
                    let arg0 = s.user_regs.as_ref().and_then(|r| r.get(5));
                    self.pending_off_cpu
                        .insert(tid, PendingOffCpu { key, arg0 });
                    0
                }
            },
        };
        let e = self.out.samples.entry(key).or_insert((0, 0));
        e.0 += count;
        e.1 += value;
        // Appended, merged once at the end: a hash map of every (key, millisecond) was
        // a cache miss per sample on large files.
        let at = (key, time >> TIME_UNIT_SHIFT);
        match self.out.times.last_mut() {
            Some((k, n)) if *k == at => *n += 1,
            _ => {
                self.out.times.push((at, 1));
                if self.out.times.len() >= self.times_merged.saturating_mul(2).max(TIMES_MERGE_AT) {
                    sort_times(&mut self.out.times);
                    self.times_merged = self.out.times.len();
                }
            }
        }
        if let Some((family, named)) = deltas {
            for (a, d) in named {
                *self.raw_counts.entry((key, a, family)).or_default() += d;
            }
        }
        if let Some(pending) = self.pending_counts.remove(&tid) {
            for (family, a, d) in pending {
                *self.raw_counts.entry((key, a, family)).or_default() += d;
            }
        }
        if let Some(t) = aggregate_start {
            self.out.stage_ns.aggregate += t.elapsed().as_nanos() as u64;
        }
    }

    /// Memory mode: a sample's bytes. Each fault sample stands for `period` faults (the
    /// sample's own period, else its attr's: page faults sampled one in N carry none),
    /// each of the size of the page it mapped; other events sampled alongside (LLC
    /// misses) weigh nothing in bytes, their `count` ranks them.
    fn fault_bytes(&mut self, s: &SampleRecord, event: u32) -> u64 {
        let is_fault = self
            .out
            .events
            .get(event as usize)
            .is_none_or(|n| n.contains("fault"));
        if !is_fault {
            return 0;
        }
        let period = s
            .period
            .or_else(|| self.attr_period.get(event as usize).copied())
            .unwrap_or(1)
            .max(1);
        let page = s
            .data_page_size
            .filter(|&p| p >= self.page_size && p <= MAX_PAGE_SIZE)
            .unwrap_or(self.page_size);
        let bytes = period.saturating_mul(page);
        if page > self.page_size {
            self.out.huge_page_bytes += bytes;
        }
        bytes
    }

    /// Scale the group counts of multiplexed threads and flag their samples.
    fn finish_counts(&mut self) {
        let scales = self.groups.scales();
        self.out.group.multiplexed_samples = scales
            .values()
            .filter(|s| s.multiplexed)
            .map(|s| s.samples)
            .sum();
        for ((key, a, family), v) in std::mem::take(&mut self.raw_counts) {
            let f = scales.get(&family).map(|s| s.factor).unwrap_or(1.0);
            *self.out.counts.entry((key, a)).or_default() += v as f64 * f;
        }
        // Counts of left-out samples that no later sample of their thread took.
        for (_, pending) in std::mem::take(&mut self.pending_counts) {
            for (_, a, d) in pending {
                *self.out.group.unattributed.entry(a).or_default() += d;
            }
        }
    }

    /// The trie node of the stack `addrs` (leaf first), added when new. A stack seen
    /// before is found with one hash of the whole stack and a walk up the trie that
    /// checks it (a sampled program repeats a few stacks: a lookup per frame was a
    /// tenth of finalize's CPU on deep stacks).
    fn stack_leaf(&mut self, addrs: &[Loc]) -> u32 {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        addrs.hash(&mut h);
        let slot = (h.finish() >> (64 - STACK_CACHE_BITS)) as usize;
        let cached = self.stack_cache[slot];
        if cached != NO_NODE && self.trie_holds(cached, addrs) {
            return cached;
        }
        let mut leaf = NO_NODE;
        for &loc in addrs.iter().rev() {
            let key = (leaf, loc);
            leaf = match self.trie_ids.get(&key) {
                Some(&n) => n,
                None => {
                    let n = self.out.trie.len() as u32;
                    self.out.trie.push(key);
                    self.trie_ids.insert(key, n);
                    self.prepare(loc);
                    n
                }
            };
        }
        self.stack_cache[slot] = leaf;
        leaf
    }

    /// The first sample in a module (or in the kernel) starts making its symbolizer
    /// (or parsing the kallsyms copy) on another worker, while reading goes on
    /// ([`super::prepare`]).
    fn prepare(&mut self, loc: Loc) {
        let Some(prepared) = self.search.prepared.as_ref() else {
            return;
        };
        match loc {
            Loc::Module { module, .. } => {
                let m = module as usize;
                if self.prepared.get(m) == Some(&true) {
                    return;
                }
                if self.prepared.len() <= m {
                    self.prepared.resize(m + 1, false);
                }
                self.prepared[m] = true;
                let Some(rec) = self.out.modules.get(m) else {
                    return;
                };
                let key = (rec.elf.as_ref().map(|e| e.path.clone()), rec.path.clone());
                if !prepared.has_module(&key) {
                    let files = super::module_files(self.search, rec);
                    prepared.start_module(key, files);
                }
            }
            Loc::Kernel(_) if !self.kernel_prepared => {
                self.kernel_prepared = true;
                prepared.start_kernel(&self.raw_dir);
            }
            _ => {}
        }
    }

    /// Whether the path from trie node `leaf` up to the root is `addrs` (leaf first).
    fn trie_holds(&self, leaf: u32, addrs: &[Loc]) -> bool {
        let mut node = leaf;
        for loc in addrs {
            match self.out.trie.get(node as usize) {
                Some((parent, l)) if l == loc => node = *parent,
                _ => return false,
            }
        }
        node == NO_NODE
    }

    /// Unwinds a sample's copied user stack into `out` (leaf first), and says whether it
    /// went on past the end of the copy.
    fn unwind_user(
        &mut self,
        pid: u32,
        regs: &linux_perf_data::linux_perf_event_reader::Regs,
        stack: &[u8],
        dyn_size: u64,
        out: &mut Vec<Loc>,
    ) -> StackCut {
        // Only the first `dyn_size` bytes were copied; the rest of the record's slot holds
        // whatever the ring held before. The kernel copies without faulting pages in, so
        // a copy short of its size ended at the stack's top or at a page never touched.
        let copied = usize::try_from(dyn_size).map_or(stack.len(), |n| n.min(stack.len()));
        let copy_full = copied > 0 && copied == stack.len();
        let stack = &stack[..copied];
        // perf's x86-64 register numbers.
        let (Some(ip), Some(sp), Some(bp)) = (regs.get(8), regs.get(7), regs.get(6)) else {
            return StackCut::No;
        };
        let Some(proc) = self.procs.get(&pid) else {
            out.push(Loc::Unknown(ip));
            return StackCut::No;
        };
        let unwinder = &proc.unwinder;
        let mut avmas = std::mem::take(&mut self.avmas_buf);
        avmas.clear();
        let mut truncated = false;
        let mut cut = StackCut::No;
        let copy_end = sp.saturating_add(copied as u64);
        // Copy (it holds only references): for framehop, and for a signal frame.
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let off = addr.checked_sub(sp).ok_or(())? as usize;
            let bytes = stack.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
        };
        // framehop's iterator, with one step it does not take: through a signal frame.
        let mut regs = UnwindRegsX86_64::new(ip, sp, bp);
        let mut address = FrameAddress::InstructionPointer(ip);
        loop {
            avmas.push(address.address_for_lookup());
            if avmas.len() >= MAX_UNWIND_FRAMES {
                break;
            }
            let step =
                match unwinder.unwind_frame(address, &mut regs, &mut self.cache, &mut read_stack) {
                    // A signal handler returns into the sigreturn trampoline, whose unwind
                    // rules (DWARF expressions over the signal frame) framehop does not
                    // evaluate: the interrupted registers are read from the signal frame,
                    // and the interrupted frame is unwound as a first frame (its address is
                    // where it was, not a return address).
                    Ok(Some(ra)) if is_sigreturn(&proc.mappings, &self.out.modules, ra) => {
                        avmas.push(ra);
                        interrupted_regs(regs.sp(), read_stack).map(|(ip, interrupted)| {
                            regs = interrupted;
                            Some(FrameAddress::InstructionPointer(ip))
                        })
                    }
                    // A return address in the first page is no code's: at a program's
                    // entry point (the loader's `_start`, its first fault), before
                    // the CFI marks the outermost frame, the unwinder reads argc as
                    // the return address. The stack ends here.
                    Ok(Some(ra)) if ra < FIRST_CODE_ADDRESS => Ok(None),
                    Ok(Some(ra)) => FrameAddress::from_return_address(ra)
                        .map(Some)
                        .ok_or(framehop::Error::ReturnAddressIsNull),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
            match step {
                Ok(Some(next)) => address = next,
                Ok(None) => break,
                // The stack went on past the copy: the callers are not in it.
                Err(framehop::Error::CouldNotReadStack(addr))
                    if addr.saturating_add(8) > copy_end =>
                {
                    cut = if copy_full {
                        StackCut::AtCopySize
                    } else {
                        StackCut::AtUntouchedPage
                    };
                    break;
                }
                Err(_) => {
                    truncated = avmas.len() <= 1;
                    break;
                }
            }
        }
        self.out.unwind_truncated += u64::from(truncated);
        let maps = Some(&proc.mappings[..]);
        out.extend(avmas.iter().map(|&a| locate(maps, a)));
        self.avmas_buf = avmas;
        cut
    }
}

/// No code lies below this address: the first page is never mapped (the kernel's
/// `vm.mmap_min_addr` is 4 KiB or more, 64 KiB by default).
const FIRST_CODE_ADDRESS: u64 = 4096;

/// Entries of [`RawProfile::times`] appended before the first merge (2 Mi entries,
/// 64 MiB); later merges come when the merged list has doubled.
const TIMES_MERGE_AT: usize = 1 << 21;

/// Sorts [`RawProfile::times`] by (thread, leaf, python, event, time) and adds up the
/// counts of equal keys.
pub fn sort_times(times: &mut Vec<((SampleKey, u64), u64)>) {
    times.sort_unstable_by_key(|((k, t), _)| (k.thread, k.leaf, k.python, k.event, *t));
    times.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            kept.1 += next.1;
        }
        same
    });
}

/// x86-64 Linux's `rt_sigreturn` trampoline, `mov $15, %rax; syscall`: glibc's and
/// musl's `__restore_rt`, where every signal handler returns.
const SIGRETURN: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// The kind of the module `l` is in (none for the kernel and unmapped addresses).
fn module_kind(modules: &[ModuleRec], l: &Loc) -> Option<ModuleKind> {
    let Loc::Module { module, .. } = l else {
        return None;
    };
    Some(modules.get(*module as usize)?.kind)
}

/// Whether `l` is in hwprof's agent.
fn is_agent_frame(modules: &[ModuleRec], l: &Loc) -> bool {
    module_kind(modules, l) == Some(ModuleKind::Agent)
}

/// Whether a stack (leaf first) is hwprof's agent's own: its constructor or destructor
/// (the outermost agent frame called by the loader, whoever called the loader: `exit`
/// under the program's `_start`), or its threads (no user frame but the agent's and the
/// loader's and the C library's). A call the program made into the agent (an
/// interposed function, the signal handler that takes a Python stack) has the program's
/// frames, or the interpreter's, under the agent's, and no loader frame right under.
fn is_agents_own(modules: &[ModuleRec], addrs: &[Loc]) -> bool {
    let Some(outermost) = addrs.iter().rposition(|l| is_agent_frame(modules, l)) else {
        return false;
    };
    if addrs
        .get(outermost + 1)
        .is_some_and(|l| module_kind(modules, l) == Some(ModuleKind::Loader))
    {
        return true;
    }
    addrs.iter().all(|l| match l {
        Loc::Kernel(_) => true,
        Loc::Unknown(_) | Loc::Exec => false,
        Loc::Module { .. } => matches!(
            module_kind(modules, l),
            Some(ModuleKind::Agent | ModuleKind::Loader | ModuleKind::Libc)
        ),
    })
}

/// Whether the code at `avma` is the sigreturn trampoline (read from its module's
/// `.text`).
fn is_sigreturn(maps: &[MappingShared], modules: &[ModuleRec], avma: u64) -> bool {
    match locate(Some(maps), avma) {
        Loc::Module { module, svma } => is_sigreturn_at(modules, module, svma),
        _ => false,
    }
}

/// Whether the code at `svma` of `module` is the sigreturn trampoline.
fn is_sigreturn_at(modules: &[ModuleRec], module: u32, svma: u64) -> bool {
    let text = modules
        .get(module as usize)
        .and_then(|m| m.elf.as_ref())
        .and_then(|e| e.unwind.text.as_ref());
    text.is_some_and(|(range, bytes)| {
        svma.checked_sub(range.start)
            .and_then(|off| usize::try_from(off).ok())
            .and_then(|off| bytes.get(off..off.checked_add(SIGRETURN.len())?))
            == Some(&SIGRETURN[..])
    })
}

/// The registers a signal interrupted, from the signal frame whose `ucontext_t` is at
/// `uc` (the trampoline frame's stack pointer: the handler's return address, the
/// frame's `pretcode`, is just below it): `uc_mcontext` begins after `uc_flags`,
/// `uc_link` and `uc_stack` (40 bytes), and holds r8-r15, rdi, rsi, rbp, rbx, rdx,
/// rax, rcx, rsp, rip (the kernel's `struct sigcontext`, x86-64 ABI).
fn interrupted_regs(
    uc: u64,
    mut read_stack: impl FnMut(u64) -> Result<u64, ()>,
) -> Result<(u64, UnwindRegsX86_64), framehop::Error> {
    let greg = |i: u64| uc.checked_add(40 + 8 * i);
    let mut read = |i| {
        let at = greg(i).ok_or(framehop::Error::IntegerOverflow)?;
        read_stack(at).map_err(|()| framehop::Error::CouldNotReadStack(at))
    };
    let (bp, sp, ip) = (read(10)?, read(15)?, read(16)?);
    // The interrupted stack is above the signal frame: anything else is not one.
    if sp <= uc || ip == 0 {
        return Err(framehop::Error::ReturnAddressIsNull);
    }
    Ok((ip, UnwindRegsX86_64::new(ip, sp, bp)))
}

/// Whether `a` is in the kernel's half of the x86-64 address space.
fn is_kernel_address(a: u64) -> bool {
    a >= 0xffff_8000_0000_0000
}

/// Where `avma` lives among a process's `maps` (sorted by start; None: an unknown
/// process).
fn locate(maps: Option<&[MappingShared]>, avma: u64) -> Loc {
    if is_kernel_address(avma) {
        return Loc::Kernel(avma);
    }
    let Some(maps) = maps else {
        return Loc::Unknown(avma);
    };
    let i = maps.partition_point(|m| m.0.start <= avma);
    match i.checked_sub(1).map(|i| &maps[i].0) {
        Some(m) if avma < m.end => Loc::Module {
            module: m.module,
            svma: (avma as i64).wrapping_sub(m.bias) as u64,
        },
        _ => Loc::Unknown(avma),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which stacks are the agent's own: the loader calling it (constructor, or
    /// destructor under the program's `_start`), its threads; not the program calling
    /// an interposed function, nor the interpreter under its signal handler.
    #[test]
    fn the_agents_own_stacks_are_those_the_loader_or_its_threads_run() {
        let modules: Vec<ModuleRec> = [
            "/dev/shm/hwprof-agent-x/libhwprof_agent.so",
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/tmp/hot",
            "/usr/bin/python3.11",
        ]
        .into_iter()
        .map(|path| ModuleRec {
            path: path.into(),
            build_id: None,
            elf: None,
            kind: ModuleKind::of(path),
        })
        .collect();
        let [agent, loader, libc, program, python] =
            [0, 1, 2, 3, 4].map(|module| Loc::Module { module, svma: 0 });
        let kernel = Loc::Kernel(0xffff_ffff_8100_0000);
        let cases: &[(&str, Vec<Loc>, bool)] = &[
            (
                "constructor",
                vec![kernel, agent, agent, loader, loader],
                true,
            ),
            (
                "fault in libc under the constructor",
                vec![libc, agent, loader],
                true,
            ),
            (
                "destructor under exit",
                vec![agent, loader, libc, libc, program],
                true,
            ),
            ("agent thread", vec![agent, libc, libc], true),
            (
                "interposed call",
                vec![libc, agent, program, program],
                false,
            ),
            ("signal handler", vec![agent, libc, python, python], false),
            ("no agent frame", vec![loader, libc, program], false),
            (
                "unmapped under the agent",
                vec![agent, Loc::Unknown(0x10)],
                false,
            ),
        ];
        for (what, stack, own) in cases {
            assert_eq!(is_agents_own(&modules, stack), *own, "{what}");
        }
    }
}
