//! Finalize: raw results directory → profile.db. Reads each raw directory's perf.data
//! (in parallel across directories), unwinds and aggregates ([`process`]), finds the
//! binaries and debug info ([`binaries`]), symbolizes each distinct address once (in
//! parallel across modules, [`symbols`]), and writes profile.db atomically.
//! The same code serves perf.data from our collector and from `perf record`.

pub mod binaries;
pub mod dwarf_decl;
pub mod dwarf_file;
pub mod fortran;
pub mod function_starts;
pub mod group_reads;
pub mod launchers;
pub mod plt;
pub mod prepare;
pub mod process;
pub mod symbols;
pub mod system_demangler;
pub mod timings;

pub mod waits; // locks mode: classes and objects of off-CPU intervals

pub mod waits_join;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::manifest::Manifest;
use crate::profile::{
    AGENT_OWN_SAMPLES_KEY, AGENT_OWN_VALUE_KEY, EventRow, FrameInfo, FrameKind, Process,
    ProfileWriter, TIMELINE_MAX_BUCKETS, Thread, WaitClass,
};
use binaries::SearchPaths;
use process::{Loc, NO_NODE, RawProfile, Weighting};
use waits_join::Cause;

/// Errors of finalize.
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// Not a results directory.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// Raw data unreadable.
    #[error(transparent)]
    Raw(#[from] crate::raw::RawError),
    /// A perf.data could not be read at all.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// Writing profile.db failed.
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    /// Nothing to finalize.
    #[error(
        "{0} has no raw data (raw/*/perf.data); was the collection interrupted before it started?"
    )]
    Empty(PathBuf),
}

/// Resolved finalize options.
#[derive(Clone, Debug)]
pub struct FinalizeOptions {
    /// Results directory.
    pub dir: PathBuf,
    /// Extra places to find binaries.
    pub search_dirs: Vec<PathBuf>,
    /// Threads.
    pub jobs: Option<usize>,
    /// Slice (I, N), 1-based.
    pub part: Option<(usize, usize)>,
    /// Print less.
    pub quiet: bool,
    /// Print the time of each stage (`--timings`).
    pub timings: bool,
}

/// `--part I/N` → (I, N), 1 <= I <= N.
pub fn parse_part(s: &str) -> Result<(usize, usize), FinalizeError> {
    let bad = || FinalizeError::Usage(format!("--part {s}: expected I/N with 1 <= I <= N"));
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if i == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The metric of `manifest`'s mode: a fault weighs the recording node's page (not this
/// node's: KNL data may be finalized elsewhere).
fn weighting(manifest: &Manifest) -> (Weighting, &'static str) {
    match manifest.mode.as_str() {
        "memory" => {
            let page_size = match manifest.page_size {
                // Older manifests: the finalizing node's, as before.
                0 => crate::util::page_size(),
                p => p,
            };
            (Weighting::FaultBytes { page_size }, "bytes")
        }
        "locks" => (Weighting::OffCpuNs, "ns"),
        _ => (Weighting::Samples, "samples"),
    }
}

/// Ranks read and symbolized together: their raw profiles are dropped once written, so
/// memory is that of a batch (two: the next is read while this one is written), not of
/// the whole job. Small enough that 1,024 ranks stay flat, large enough to keep every
/// worker busy.
fn batch_size(threads: usize) -> usize {
    // The tests set a small batch to take the streaming path with a few ranks.
    std::env::var("HWPROF_FINALIZE_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or((4 * threads).max(16))
}

/// At most this many batches are read ahead of the one being symbolized and written,
/// holding at most this much perf.data: memory stays bounded whatever the ranks.
const READ_AHEAD_BATCHES: usize = 8;
const READ_AHEAD_BYTES: u64 = 256 << 20;

/// Run finalize.
pub fn run(opts: &FinalizeOptions) -> Result<PathBuf, FinalizeError> {
    let mut clock = timings::StageClock::start(opts.timings);
    let manifest = Manifest::load(&opts.dir)?;
    // Each rank's perf.data is looked up once (its size for the progress bar and the
    // read-ahead bound): a path lookup per rank and use was ~1 µs each on the main
    // thread before any rank was read.
    let mut raws: Vec<_> = crate::raw::list_raw_dirs(&opts.dir)?
        .into_iter()
        .filter_map(|r| {
            let meta = std::fs::metadata(r.path.join("perf.data")).ok()?;
            meta.is_file().then_some((r, meta.len()))
        })
        .collect();
    if let Some((i, n)) = opts.part {
        raws = raws
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i - 1)
            .map(|(_, r)| r)
            .collect();
    }
    let (raws, sizes): (Vec<_>, Vec<u64>) = raws.into_iter().unzip();
    if raws.is_empty() && opts.part.is_none() {
        return Err(FinalizeError::Empty(opts.dir.clone()));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.unwrap_or(0))
        .build()
        .map_err(|e| FinalizeError::Usage(format!("-j: {e}")))?;
    let search = SearchPaths {
        search_dirs: opts.search_dirs.clone(),
        results_dir: opts.dir.clone(),
        debug_roots: vec![PathBuf::from("/usr/lib/debug")],
        elf_cache: Default::default(),
        prepared: Some(Default::default()),
    };
    let (weighting, metric) = weighting(&manifest);
    let out_dir = match opts.part {
        Some((i, n)) => {
            let parts = opts.dir.join("parts").join(format!("{i}-of-{n}"));
            crate::private_dir::PrivateDir::open(&opts.dir)
                .and_then(|d| d.subdir("parts", true))
                .and_then(|d| d.subdir(&format!("{i}-of-{n}"), true))
                .map_err(|source| crate::profile::ProfileError::Io {
                    path: parts.clone(),
                    source,
                })?;
            parts
        }
        None => opts.dir.clone(),
    };
    let mut db = crate::profile::stream::PendingDb::create(&out_dir)?;
    // Progress in bytes of perf.data read: one huge recording moves the bar too.
    let total_bytes: u64 = sizes.iter().sum();
    let pb = crate::util::progress_bar(total_bytes, "unwinding", opts.quiet);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    let mut w = ProfileWriter::default();
    let mut acc = RunTotals::default();
    let mut sym_cache = SymbolCache::default();
    let mut event_index: HashMap<String, usize> = HashMap::new();
    let per_batch = batch_size(pool.current_num_threads());
    let batches: Vec<&[crate::raw::RawDir]> = raws.chunks(per_batch).collect();
    let lone = raws.len() == 1;
    let batch_bytes: Vec<u64> = sizes.chunks(per_batch).map(|b| b.iter().sum()).collect();
    // Every rank's own manifest, read beside the first batch: the job's notices, and
    // the ranks' sample time ranges, which fix the timeline's buckets before any rank is
    // added, so its rows are written batch by batch while the next is read, not all at
    // the end on one thread (docs/performance.md, "finalize, round 11").
    let ranks_read = {
        let dir = opts.dir.clone();
        let names: std::collections::HashSet<String> =
            raws.iter().map(|r| r.name.clone()).collect();
        let world = manifest.world_size;
        std::thread::spawn(move || {
            let ranks = crate::mpi::rank_manifests(&dir);
            let declared = declared_time_range(&ranks, &names);
            (crate::mpi::notices_of(&ranks, world), declared)
        })
    };
    // Batches read, waiting to be symbolized and written: the next one is read while
    // this one is, and more while it still is (the first batch waits for the modules'
    // DWARF, which the other workers would otherwise wait for too), within bounds.
    let mut ready: std::collections::VecDeque<_> = batches
        .first()
        .map(|b| read_batch(&pool, b, &search, weighting, &pb))
        .into_iter()
        .collect();
    // A panic in the manifests' thread is a bug: pass it on.
    let (rank_notices, declared) = ranks_read
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    let declared = declared.map(|range| TimeBuckets::new(Some(range)));
    let mut k = 0;
    while let Some(batch) = ready.pop_front() {
        clock.lap("read");
        let first_unread = k + 1 + ready.len();
        let ahead_bytes: u64 = batch_bytes[k + 1..first_unread].iter().sum();
        let processed = std::sync::atomic::AtomicBool::new(false);
        let (written, more) = std::thread::scope(|scope| {
            // Batches are read ahead from a thread of their own, each raw directory a
            // task (the pool takes this batch's work between them even at `-j 1`).
            let ahead = scope.spawn(|| {
                let mut more = Vec::new();
                let (mut i, mut bytes) = (first_unread, ahead_bytes);
                while let Some(b) = batches.get(i) {
                    let waiting = first_unread - k - 1 + more.len();
                    let busy = !processed.load(std::sync::atomic::Ordering::Acquire);
                    if waiting > 0
                        && !(busy && waiting < READ_AHEAD_BATCHES && bytes < READ_AHEAD_BYTES)
                    {
                        break;
                    }
                    more.push(read_batch(&pool, b, &search, weighting, &pb));
                    bytes += batch_bytes[i];
                    i += 1;
                }
                more
            });
            // The symbolizers the reader started are waited for here, not on a worker.
            if let Some(prepared) = &search.prepared {
                prepared.wait_until_made();
            }
            let written = pool.install(|| {
                let written = (|| -> Result<(), FinalizeError> {
                    let mut profiles = Vec::new();
                    for (raw, res) in batches[k].iter().zip(batch) {
                        match res {
                            Ok(p) => profiles.push((raw.clone(), p)),
                            // One unreadable rank must not lose the others; a lone one
                            // is an error.
                            Err(e) if !lone => eprintln!("hwprof: skipping {}: {e}", raw.name),
                            Err(e) => return Err(e.into()),
                        }
                    }
                    let symbolized = symbolize_all(&profiles, &search, opts.quiet, &mut sym_cache);
                    clock.lap("symbolize");
                    // The ranks declared their time ranges, or there is one batch (a
                    // single process tree, a few ranks: its time range is the run's):
                    // the timeline is bucketed here, in memory.
                    let buckets = declared.or_else(|| {
                        (batches.len() == 1).then(|| {
                            TimeBuckets::new(
                                profiles
                                    .iter()
                                    .filter_map(|(_, p)| p.time_range)
                                    .reduce(|(a, b), (x, y)| (a.min(x), b.max(y))),
                            )
                        })
                    });
                    for (i, (raw, p)) in profiles.iter().enumerate() {
                        acc.add(raw, p, opts.quiet);
                        let mut timeline = Timeline::Units(Vec::new());
                        if let Some(b) = buckets {
                            timeline = Timeline::Buckets(b);
                        }
                        add_raw_profile(
                            &mut w,
                            raw,
                            p,
                            &symbolized[i],
                            &mut event_index,
                            &manifest,
                            &mut timeline,
                        );
                        if let Timeline::Units(rows) = timeline {
                            db.add_timeline_units(rows.into_iter())?;
                        }
                    }
                    acc.group.add_counts(&w);
                    acc.total += w.profile.samples.iter().map(|s| s.value).sum::<u64>();
                    db.flush_rows(&mut w)?;
                    clock.lap("aggregate");
                    Ok(())
                })();
                processed.store(true, std::sync::atomic::Ordering::Release);
                written
            });
            // A panic in the reading thread is a bug: pass it on.
            let more = ahead
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            (written, more)
        });
        written?;
        ready.extend(more);
        k += 1;
    }
    pb.finish_and_clear();
    // What symbolizing kept (every module's DWARF and symbol tables, the mapped ELF
    // files: ~15 ms of frees and unmaps for libc's alone) is released on a thread of its
    // own while the profile is written, not after it on the main thread.
    let release = std::thread::spawn(move || drop((search, sym_cache)));
    let buckets = declared.unwrap_or_else(|| TimeBuckets::new(acc.times));
    if let (Some(d), Some((a, b))) = (declared, acc.times)
        && !opts.quiet
        && (a < d.start_ns()
            || b >> process::TIME_UNIT_SHIFT
                >= d.start.saturating_add(d.width.saturating_mul(d.count)))
    {
        eprintln!(
            "hwprof: samples lie outside the time range the ranks' manifests declare (sample_times_ns); the timeline's first and last buckets hold them"
        );
    }
    if let Some(g) = acc.group.meta(&mut w) {
        w.profile.meta.insert("group".into(), g);
    }
    let meta = &mut w.profile.meta;
    if manifest.mode == "memory" {
        meta.insert("huge_page_bytes".into(), acc.huge.to_string());
    }
    meta.insert("mode".into(), manifest.mode.clone());
    meta.insert("metric".into(), metric.into());
    meta.insert("total".into(), acc.total.to_string());
    meta.insert("samples".into(), acc.total_samples.to_string());
    meta.insert("lost_samples".into(), acc.lost.to_string());
    meta.insert("unwind_truncated".into(), acc.truncated.to_string());
    for (key, n) in crate::profile::STACK_CUT_KEYS
        .into_iter()
        .zip(acc.stack_cuts.counts())
    {
        meta.insert(key.into(), n.to_string());
    }
    meta.insert(
        crate::profile::STACK_CUT_BASE_KEY.into(),
        acc.stack_cuts.samples.to_string(),
    );
    meta.insert("skipped_bytes".into(), acc.skipped.to_string());
    // A provisional manifest (hwprof killed) has no duration: the samples' span is it.
    let duration_s = match acc.times {
        Some((a, b)) if manifest.duration_s == 0.0 && !manifest.complete => {
            b.saturating_sub(a) as f64 / 1e9
        }
        _ => manifest.duration_s,
    };
    meta.insert("duration_s".into(), format!("{duration_s:.3}"));
    meta.insert("frequency_hz".into(), manifest.frequency_hz.to_string());
    meta.insert("call_graph".into(), manifest.call_graph.clone());
    meta.insert(
        "command".into(),
        shown_command(&manifest.command, &w.profile.processes),
    );
    meta.insert("kernel_samples".into(), manifest.kernel_samples.to_string());
    meta.insert("python".into(), manifest.python.clone());
    // Faults the kernel wrote into two rings (collector's and agent's), counted once.
    meta.insert(
        "paired_samples_dropped".into(),
        acc.paired_dropped.to_string(),
    );
    // hwprof's agent's own samples (its start-up in the processes it was preloaded
    // into), left out of the profile.
    meta.insert(AGENT_OWN_SAMPLES_KEY.into(), acc.agent_own.0.to_string());
    meta.insert(AGENT_OWN_VALUE_KEY.into(), acc.agent_own.1.to_string());
    if manifest.mode == "locks" {
        // How much off-CPU time had the stack where the thread blocked (docs/locks.md).
        meta.insert("wait_ns_exact".into(), acc.wait_ns_exact.to_string());
        meta.insert("wait_ns_inferred".into(), acc.wait_ns_inferred.to_string());
        if acc.wait_ns_on_cpu > 0 {
            meta.insert("wait_ns_mpi_on_cpu".into(), acc.wait_ns_on_cpu.to_string());
        }
    }
    let py_summaries = &acc.py_summaries;
    if !py_summaries.is_empty() {
        meta.insert("python_samples_joined".into(), acc.py_joined.0.to_string());
        meta.insert(
            "python_samples_without_stack".into(),
            acc.py_joined.1.to_string(),
        );
        meta.insert("python_agent_samples".into(), acc.py_agent.0.to_string());
        meta.insert(
            "python_agent_samples_with_capture".into(),
            acc.py_agent.1.to_string(),
        );
        meta.insert(
            "python_summary".into(),
            crate::python::stacks::summary_json(py_summaries),
        );
        let lost: u64 = py_summaries.iter().map(|s| s.lost).sum();
        let mut why = serde_json::to_value(acc.py_why).unwrap_or_default();
        why["captures_lost"] = serde_json::json!(lost);
        meta.insert("python_without_stack".into(), why.to_string());
    }
    meta.insert(
        "events".into(),
        serde_json::to_string(&manifest.events).unwrap_or_default(),
    );
    meta.insert(
        "notices".into(),
        serde_json::to_string(&manifest.notices).unwrap_or_default(),
    );
    // MPI: every rank's notices (from its own manifest), each once with its rank count.
    if !rank_notices.is_empty() {
        meta.insert(
            "rank_notices".into(),
            serde_json::to_string(&rank_notices).unwrap_or_default(),
        );
    }
    meta.insert(
        "sampled_by".into(),
        serde_json::to_string(&acc.sampled_by).unwrap_or_default(),
    );
    // [python] Python frames were expected and none came: every report says so.
    let mut warnings = Vec::new();
    if let Some(why) = python_missing(&manifest, acc.py_joined.0, py_summaries) {
        warnings.push(why);
    }
    // A run cut short (hwprof killed, disk full, target killed): every report says so.
    if let Some(why) = incomplete_reason(&manifest, &acc.unfinished) {
        if !opts.quiet {
            eprintln!("hwprof: the run is incomplete: {why}");
        }
        meta.insert("incomplete".into(), why.clone());
        warnings.push(format!("incomplete run: {why}"));
    }
    if !warnings.is_empty() {
        meta.insert(
            "warnings".into(),
            serde_json::to_string(&warnings).unwrap_or_default(),
        );
    }
    if !acc.bandwidth.is_empty() {
        meta.insert(
            "bandwidth".into(),
            serde_json::to_string(&acc.bandwidth).unwrap_or_default(),
        );
    }
    if let Some((a, b)) = acc.times {
        meta.insert("first_sample_ns".into(), a.to_string());
        meta.insert("last_sample_ns".into(), b.to_string());
    }
    if buckets.count > 0 {
        meta.insert("timeline_start_ns".into(), buckets.start_ns().to_string());
        meta.insert("timeline_bucket_ns".into(), buckets.bucket_ns().to_string());
        meta.insert("timeline_buckets".into(), buckets.count.to_string());
    }
    clock.lap("aggregate");
    let bucketing = (buckets.count > 0 && batches.len() > 1 && declared.is_none()).then_some(
        crate::profile::stream::Bucketing {
            start: buckets.start,
            width: buckets.width,
            count: buckets.count,
        },
    );
    let out = db.finish(&w, bucketing)?;
    if opts.part.is_none() {
        remove_space_reserves(&opts.dir);
        let mut m = manifest;
        m.finalized = true;
        let _ = m.save(&opts.dir);
    }
    clock.lap("write");
    // A panic while dropping (a bug) has nothing left to lose.
    let _ = release.join();
    clock.print(
        acc.stage_ns,
        acc.total_samples,
        acc.raw_dirs,
        pool.current_num_threads(),
    );
    Ok(out)
}

/// Read a batch of raw directories in parallel: each one's result. Called from a
/// thread outside the pool, which only waits: each raw directory is a task of its own,
/// so a worker that takes up a symbolizer started by the reader (libc's is ~0.1 s in
/// one piece) holds up no other read (inside a `par_iter`, the worker that took it held
/// the half of the batch on its stack, and the batch waited for it).
fn read_batch(
    pool: &rayon::ThreadPool,
    raws: &[crate::raw::RawDir],
    search: &SearchPaths,
    weighting: Weighting,
    pb: &indicatif::ProgressBar,
) -> Vec<Result<RawProfile, process::ProcessError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    pool.in_place_scope(|scope| {
        for (i, r) in raws.iter().enumerate() {
            let tx = tx.clone();
            scope.spawn(move |_| {
                // The receiver lives until the scope ends.
                let _ = tx.send((i, read_raw_dir(r, search, weighting, pb)));
            });
        }
    });
    drop(tx);
    let mut read: Vec<_> = rx.into_iter().collect();
    read.sort_unstable_by_key(|(i, _)| *i);
    read.into_iter().map(|(_, r)| r).collect()
}

/// Read one raw directory: its samples unwound and aggregated, joined to their Python
/// stacks.
fn read_raw_dir(
    r: &crate::raw::RawDir,
    search: &SearchPaths,
    weighting: Weighting,
    pb: &indicatif::ProgressBar,
) -> Result<RawProfile, process::ProcessError> {
    // [python] Join each sample to the Python stack captured at its instant.
    let py_stacks = crate::python::PythonStacks::load(&r.path).ok().flatten();
    let agent_ids = py_stacks
        .as_ref()
        .map(|s| s.agent_ids().clone())
        .unwrap_or_default();
    let joiner = py_stacks.map(crate::python::Joiner::new);
    let has_py = joiner.is_some();
    let joiner = std::rc::Rc::new(std::cell::RefCell::new(joiner));
    let sink = joiner.clone();
    let mut hook = move |s: &process::SampleInfo| -> Option<u32> {
        let mut j = sink.borrow_mut();
        let facts = crate::python::SampleFacts {
            pid: s.pid,
            tid: s.tid,
            time_ns: s.time,
            id: s.id,
            event: s.event,
            paired: s.paired,
        };
        match j.as_mut()?.sample(facts)? {
            crate::python::stacks::DROP => Some(process::DROP_SAMPLE),
            i => Some(i),
        }
    };
    let hook_ref: Option<&mut process::SampleHook> = match has_py {
        true => Some(&mut hook),
        false => None,
    };
    // A reader bug on a damaged rank must not take the other ranks down:
    // a panic is that rank's error (the fuzz targets find such panics).
    let perf_data = r.path.join("perf.data");
    let read = std::panic::AssertUnwindSafe(|| {
        process::process_perf_data(
            || crate::raw::TolerantPerfFile::open(&perf_data),
            &perf_data,
            search,
            weighting,
            hook_ref,
            pb,
        )
    });
    let mut res = std::panic::catch_unwind(read).unwrap_or_else(|_| {
        Err(process::ProcessError::Parse {
            path: perf_data.clone(),
            why:
                "internal error while reading it (a bug in hwprof: please report it with this file)"
                    .into(),
        })
    });
    drop(hook);
    let joiner = joiner.take();
    let summary = joiner.as_ref().map(|j| j.summary());
    let (stacks, counts) = joiner.map(|j| j.finish()).unwrap_or_default();
    if let Ok(p) = res.as_mut() {
        p.python_summary = summary;
        p.python_join_counts = counts;
        dedup_python_stacks(p, stacks);
        p.sampled_by = SampledBy::of(p, &agent_ids, &r.path);
    }
    res
}

/// What finalize keeps of each raw directory once its rows are written: totals for the
/// profile's meta (a few numbers per rank, not its profile).
#[derive(Default)]
struct RunTotals {
    raw_dirs: usize,
    total: u64,
    total_samples: u64,
    lost: u64,
    truncated: u64,
    stack_cuts: process::StackCuts,
    skipped: u64,
    times: Option<(u64, u64)>,
    huge: u64,
    paired_dropped: u64,
    agent_own: (u64, u64),
    wait_ns_exact: u64,
    wait_ns_inferred: u64,
    wait_ns_on_cpu: u64,
    stage_ns: process::StageNs,
    // [python] Join and capture counts, for the report.
    py_joined: (u64, u64),
    py_agent: (u64, u64),
    py_why: crate::python::stacks::NoStackCauses,
    py_summaries: Vec<crate::python::PythonSummary>,
    sampled_by: SampledBy,
    group: GroupTotals,
    /// Raw directories whose collector did not end.
    unfinished: Vec<String>,
    /// Memory mode: bandwidth from counters.csv, one raw dir per host (uncore counts
    /// are the node's, every rank on a node would repeat them).
    bandwidth: Vec<crate::sidecars::counters::BandwidthSummary>,
    bw_hosts: std::collections::HashSet<String>,
}

impl RunTotals {
    fn add(&mut self, raw: &crate::raw::RawDir, p: &RawProfile, quiet: bool) {
        self.raw_dirs += 1;
        self.total_samples += p.sample_count;
        self.lost += p.lost;
        self.truncated += p.unwind_truncated;
        // The program's threads only: a launcher's samples are not in the percentages.
        for (&thread, cuts) in &p.stack_cuts {
            let role = p
                .thread_image
                .get(thread as usize)
                .and_then(|&i| p.images.get(i as usize))
                .map(|image| image.2);
            if role.unwrap_or_default() == crate::profile::ProcessRole::Program {
                self.stack_cuts.add(cuts);
            }
        }
        self.skipped += p.skipped_bytes;
        if let Some((a, b)) = p.time_range {
            self.times = Some(self.times.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
        if p.skipped_bytes > 0 && !quiet {
            eprintln!(
                "hwprof: {}: perf.data is cut short; read up to its last complete record ({} samples), skipped the last {} bytes",
                raw.name, p.sample_count, p.skipped_bytes
            );
        }
        self.huge += p.huge_page_bytes;
        self.paired_dropped += p.duplicate_samples;
        self.agent_own.0 += p.agent_own.0;
        self.agent_own.1 += p.agent_own.1;
        self.wait_ns_exact += p.wait_ns_exact;
        self.wait_ns_inferred += p.wait_ns_inferred;
        self.wait_ns_on_cpu += p.wait_ns_on_cpu;
        self.stage_ns.unwind += p.stage_ns.unwind;
        self.stage_ns.aggregate += p.stage_ns.aggregate;
        self.sampled_by.add(&p.sampled_by);
        self.py_agent.0 += p.python_join_counts.agent_samples;
        self.py_agent.1 += p.python_join_counts.agent_with_capture;
        self.py_why.add(&p.python_join_counts.without_stack);
        self.py_joined.0 += p.python_joined.0;
        self.py_joined.1 += p.python_joined.1;
        if let Some(s) = &p.python_summary {
            self.py_summaries.push(s.clone());
        }
        self.group.add_profile(p);
        if !raw.path.join("complete").exists() {
            self.unfinished.push(raw.name.clone());
        }
        let path = raw.path.join("counters.csv");
        if path.is_file() && self.bw_hosts.insert(raw.host.clone()) {
            match crate::sidecars::counters::read_counters_csv(&path) {
                Ok(rows) => self
                    .bandwidth
                    .extend(crate::sidecars::counters::bandwidth_summary(&rows)),
                Err(e) if !quiet => eprintln!("hwprof: {e}"),
                Err(_) => {}
            }
        }
    }
}

/// The disk space that a collector killed mid-run kept back (`.hwprof-reserve.PID`,
/// see collect's `SpaceReserve`) is of no use any more: return it.
fn remove_space_reserves(dir: &std::path::Path) {
    let Ok(d) = crate::private_dir::PrivateDir::open(dir) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(d.fd_path()) else {
        return;
    };
    for e in entries.flatten() {
        if let Some(name) = e.file_name().to_str()
            && name.starts_with(".hwprof-reserve.")
        {
            let _ = d.remove(name);
        }
    }
}

/// Why the run is incomplete, if it is: the manifest's reason (a provisional manifest
/// means hwprof never ended), and the raw directories whose collector did not end
/// (no `complete` marker: a rank killed while the others finished).
fn incomplete_reason(manifest: &Manifest, unfinished: &[String]) -> Option<String> {
    let mut why: Vec<String> = manifest.incomplete_summary().into_iter().collect();
    if !unfinished.is_empty() && manifest.complete {
        why.push(format!(
            "collection did not end in {} (killed?); data kept up to its last flush",
            unfinished.join(", ")
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Counter-group facts summed over the raw directories as they are written.
#[derive(Default)]
struct GroupTotals {
    with_read: u64,
    multiplexed: u64,
    bad: u64,
    /// Total count per counted event name, and the events counted (writer ids).
    totals: std::collections::BTreeMap<String, f64>,
    counted: std::collections::BTreeSet<usize>,
    unattributed: std::collections::BTreeMap<String, u64>,
}

impl GroupTotals {
    fn add_profile(&mut self, p: &RawProfile) {
        self.with_read += p.group.samples_with_read;
        self.multiplexed += p.group.multiplexed_samples;
        self.bad += p.group.bad_reads;
        for (a, v) in &p.group.unattributed {
            if let Some(name) = p.events.get(*a as usize) {
                *self.unattributed.entry(name.clone()).or_default() += v;
            }
        }
    }

    /// The counts rows `w` holds (before they are flushed).
    fn add_counts(&mut self, w: &ProfileWriter) {
        for c in &w.profile.counts {
            if let Some(e) = w.profile.events.get(c.event) {
                *self.totals.entry(e.name.clone()).or_default() += c.value;
                self.counted.insert(c.event);
            }
        }
    }

    /// The `group` meta value (JSON): samples that read a counter group, how many were
    /// multiplexed (scaled), and the total count per event; None without group reads.
    /// Flags the counted events' notes when multiplexed.
    fn meta(&self, w: &mut ProfileWriter) -> Option<String> {
        if self.with_read == 0 {
            return None;
        }
        let multiplexed = self.multiplexed;
        if multiplexed > 0 {
            for &e in &self.counted {
                let note = &mut w.profile.events[e].note;
                let flag = format!(
                    "multiplexed: counts of {multiplexed} samples scaled by time_enabled/time_running"
                );
                *note = if note.is_empty() {
                    flag
                } else {
                    format!("{note}; {flag}")
                };
            }
        }
        let totals: serde_json::Map<String, serde_json::Value> = self
            .totals
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v.round() as u64)))
            .collect();
        Some(
            serde_json::json!({
                "samples_with_read": self.with_read,
                "multiplexed": multiplexed > 0,
                "multiplexed_samples": multiplexed,
                "unreadable_samples": self.bad,
                "totals": totals,
                "unattributed": self.unattributed,
            })
            .to_string(),
        )
    }
}

/// Per raw profile: frames (leaf first) for each trie node's location.
type NodeFrames = Vec<Vec<FrameInfo>>;

/// What symbolization found so far, kept across batches of ranks: the frames of each
/// module file's addresses (the ranks of a job run the same binaries: most addresses
/// are seen in the first batch), and each kallsyms copy parsed. It grows with the
/// distinct code sampled, not with the ranks.
#[derive(Default)]
struct SymbolCache {
    modules: HashMap<prepare::ModuleKey, HashMap<u64, Vec<FrameInfo>>>,
}

fn symbolize_all(
    profiles: &[(crate::raw::RawDir, RawProfile)],
    search: &SearchPaths,
    quiet: bool,
    cache: &mut SymbolCache,
) -> Vec<NodeFrames> {
    // Distinct addresses per module file not symbolized yet: the ranks of an MPI job map
    // the same binaries, which are symbolized once for all of them.
    type Key = prepare::ModuleKey;
    let mut group_of: HashMap<Key, usize> = HashMap::new();
    let mut groups: Vec<((usize, u32), Vec<u64>)> = Vec::new();
    let mut keys: Vec<Key> = Vec::new();
    let mut module_key: HashMap<(usize, u32), Key> = HashMap::new();
    for (pi, (_, p)) in profiles.iter().enumerate() {
        for (_, loc) in &p.trie {
            if let Loc::Module { module, svma } = loc {
                let key = module_key.entry((pi, *module)).or_insert_with(|| {
                    let rec = &p.modules[*module as usize];
                    (rec.elf.as_ref().map(|e| e.path.clone()), rec.path.clone())
                });
                if cache.modules.get(key).is_some_and(|m| m.contains_key(svma)) {
                    continue;
                }
                let g = *group_of.entry(key.clone()).or_insert_with(|| {
                    groups.push(((pi, *module), Vec::new()));
                    keys.push(key.clone());
                    groups.len() - 1
                });
                groups[g].1.push(*svma);
            }
        }
    }
    for (_, v) in &mut groups {
        v.sort_unstable();
        v.dedup();
    }
    let pb = crate::util::progress_bar(groups.len() as u64, "symbols", quiet);
    // The kallsyms copies are parsed beside the modules' DWARF (when the reader did
    // not start them).
    let prepared = search.prepared.clone().unwrap_or_default();
    let (resolved, kernels) = rayon::join(
        || symbolize_groups(profiles, search, &prepared, &groups, &keys, &pb),
        || kernel_symbols(profiles, &prepared),
    );
    pb.finish_and_clear();
    for (key, frames) in keys.into_iter().zip(resolved) {
        cache.modules.entry(key).or_default().extend(frames);
    }
    let cache = &*cache;
    let by_key = |pi: usize, m: u32| module_key.get(&(pi, m)).and_then(|k| cache.modules.get(k));

    profiles
        .par_iter()
        .enumerate()
        .map(|(pi, (raw, p))| {
            let kernel = &kernels[pi];
            // [python] --python perfmap: JIT trampolines named in the copied perf maps.
            let perfmap = crate::python::perfmap::PerfMap::load_all(&raw.path);
            p.trie
                .iter()
                .map(|(_, loc)| match loc {
                    Loc::Module { module, svma } => by_key(pi, *module)
                        .and_then(|m| m.get(svma))
                        .cloned()
                        .unwrap_or_else(|| {
                            vec![symbols::unresolved(
                                &p.modules[*module as usize].name(),
                                *svma,
                                FrameKind::Native,
                            )]
                        }),
                    Loc::Kernel(a) => vec![kernel.frame(*a)],
                    Loc::Exec => vec![symbols::kernel_function("[exec]")],
                    Loc::Unknown(a) => vec![
                        perfmap
                            .as_ref()
                            .and_then(|m| m.symbol(*a))
                            .unwrap_or_else(|| {
                                symbols::unresolved("[unknown]", *a, FrameKind::Native)
                            }),
                    ],
                })
                .collect()
        })
        .collect()
}

/// The frames of each group's addresses (one group per module file), in parallel.
fn symbolize_groups(
    profiles: &[(crate::raw::RawDir, RawProfile)],
    search: &SearchPaths,
    prepared: &prepare::Prepared,
    groups: &[((usize, u32), Vec<u64>)],
    keys: &[prepare::ModuleKey],
    pb: &indicatif::ProgressBar,
) -> Vec<HashMap<u64, Vec<FrameInfo>>> {
    groups
        .par_iter()
        .zip(keys)
        .map(|(((pi, m), addrs), key)| {
            let rec = &profiles[*pi].1.modules[*m as usize];
            let frames = prepared.symbolize(key, || module_files(search, rec), &rec.name(), addrs);
            pb.inc(1);
            addrs.iter().copied().zip(frames).collect()
        })
        .collect()
}

/// The binary and debug file of a module.
pub(crate) fn module_files(search: &SearchPaths, rec: &process::ModuleRec) -> prepare::ModuleFiles {
    // The embedded agent's ELF is named by its bare file name (`binaries::embedded_agent`).
    if let Some(e) = &rec.elf
        && e.path == Path::new(crate::python::embedded::AGENT_FILE_NAME)
    {
        return prepare::ModuleFiles {
            elf: None,
            debug: None,
            embedded: Some(crate::python::embedded::AGENT_SO),
        };
    }
    prepare::ModuleFiles {
        elf: rec.elf.as_ref().map(|e| e.path.clone()),
        debug: rec.elf.as_ref().and_then(|e| search.find_debug_file(e)),
        embedded: None,
    }
}

/// The kernel symbols of each raw directory with kernel samples (each distinct
/// kallsyms copy parsed once: [`prepare::Prepared::kernel`]).
fn kernel_symbols(
    profiles: &[(crate::raw::RawDir, RawProfile)],
    prepared: &prepare::Prepared,
) -> Vec<std::sync::Arc<symbols::KernelSymbols>> {
    profiles
        .iter()
        .map(|(raw, p)| {
            if !p.trie.iter().any(|(_, l)| matches!(l, Loc::Kernel(_))) {
                return Default::default();
            }
            prepared.kernel(&raw.path)
        })
        .collect()
}

/// Where a raw directory's samples over time go.
enum Timeline {
    /// The run's buckets are known: into the writer's timeline.
    Buckets(TimeBuckets),
    /// Not yet (ranks in several batches): (stack, thread, time unit, count) rows,
    /// bucketed by `PendingDb::finish` once the last rank is read.
    Units(Vec<(Option<usize>, usize, u64, u64)>),
}

fn add_raw_profile(
    w: &mut ProfileWriter,
    raw: &crate::raw::RawDir,
    p: &RawProfile,
    node_frames: &NodeFrames,
    event_index: &mut HashMap<String, usize>,
    manifest: &Manifest,
    timeline: &mut Timeline,
) {
    // Processes and threads.
    // One process row per process image (an exec starts a new one: a shim that exec'd
    // python is a launcher row and a program row of the same pid).
    let mut image_index: HashMap<u32, usize> = HashMap::new();
    let mut proc_index: HashMap<u32, usize> = HashMap::new();
    let mut thread_index = Vec::with_capacity(p.threads.len());
    for (i, (pid, tid, name)) in p.threads.iter().enumerate() {
        let image = p.thread_image.get(i).copied().unwrap_or(u32::MAX);
        let (command, role) = match p.images.get(image as usize) {
            Some((_, comm, role)) if !comm.is_empty() => (comm.clone(), *role),
            Some((_, _, role)) => (p.processes.get(pid).cloned().unwrap_or_default(), *role),
            None => (
                p.processes.get(pid).cloned().unwrap_or_default(),
                Default::default(),
            ),
        };
        let pi = *image_index.entry(image).or_insert_with(|| {
            w.profile.processes.push(Process {
                host: raw.host.clone(),
                rank: raw.rank,
                pid: *pid,
                command,
                raw_dir: format!("raw/{}", raw.name),
                role,
            });
            w.profile.processes.len() - 1
        });
        // RSS rows go to the pid's latest image.
        proc_index.insert(*pid, pi);
        w.profile.threads.push(Thread {
            process: pi,
            tid: *tid,
            name: name.clone(),
        });
        thread_index.push(w.profile.threads.len() - 1);
    }
    // Memory mode: the RSS timeline of every process of the tree,
    // including processes that took no sample.
    // Memory mode: the kernel's high-water marks (peak.csv), per pid, kept in meta
    // `peak_rss_hwm` as {"pid": bytes} across raw directories.
    let hwm = crate::sidecars::rss::read_peak_csv(&raw.path.join("peak.csv"));
    merge_peaks(&mut w.profile.meta, "peak_rss_hwm", hwm, |_, new| new);
    // The RSS sampler's polled VmHWM per pid (a lower bound for processes the collector
    // did not reap), in meta `peak_rss_vmhwm`, same layout.
    let vmhwm = crate::sidecars::rss::read_peak_csv(&raw.path.join(crate::sidecars::rss::HWM_FILE));
    merge_peaks(&mut w.profile.meta, "peak_rss_vmhwm", vmhwm, u64::max);
    if let Ok(rows) = crate::sidecars::rss::read_rss_csv(&raw.path.join("rss.csv")) {
        for (time_ns, pid, rss_bytes) in rows {
            let process = *proc_index.entry(pid).or_insert_with(|| {
                w.profile.processes.push(Process {
                    host: raw.host.clone(),
                    rank: raw.rank,
                    pid,
                    command: p.processes.get(&pid).cloned().unwrap_or_default(),
                    raw_dir: format!("raw/{}", raw.name),
                    role: Default::default(),
                });
                w.profile.processes.len() - 1
            });
            w.profile.rss.push(crate::profile::RssPoint {
                process,
                time_ns,
                rss_bytes,
            });
        }
    }
    // Events, shared by name across raw directories.
    let events: Vec<usize> = p
        .events
        .iter()
        .map(|name| {
            *event_index.entry(name.clone()).or_insert_with(|| {
                let m = manifest.events.iter().find(|e| &e.opened == name);
                w.profile.events.push(EventRow {
                    name: name.clone(),
                    requested: m
                        .map(|e| e.requested.clone())
                        .unwrap_or_else(|| name.clone()),
                    note: m.map(|e| e.note.clone()).unwrap_or_default(),
                });
                w.profile.events.len() - 1
            })
        })
        .collect();
    // Trie nodes → writer stack ids (native only), memoized; parents precede children.
    let mut node_stack: Vec<Option<usize>> = Vec::with_capacity(p.trie.len());
    for (n, (parent, _)) in p.trie.iter().enumerate() {
        let parent_stack = if *parent == NO_NODE {
            None
        } else {
            node_stack[*parent as usize]
        };
        // addr2line gives inlined callees first, the containing function last.
        let nf = &node_frames[n];
        let frames: Vec<usize> = nf
            .iter()
            .enumerate()
            .rev()
            .map(|(i, f)| {
                let inlined = i + 1 < nf.len() && f.function.kind == FrameKind::Native;
                intern_frame_with(w, f, inlined)
            })
            .collect();
        node_stack.push(w.stack_from(parent_stack, &frames));
    }
    // Map keys are distinct, so an unstable sort gives the one order (and needs no
    // buffer: the timeline's sort was a twentieth of a deep-stack finalize).
    let mut keys: Vec<_> = p.samples.iter().collect();
    keys.sort_unstable_by_key(|(k, _)| (k.thread, k.leaf, k.python, k.event));
    // Counter-group counts go to the stack their sample went to.
    let mut count_stacks: rustc_hash::FxHashMap<process::SampleKey, Option<usize>> =
        Default::default();
    let (mut merge_failures, mut python_cut) = (0, 0);
    for (key, &(count, value)) in keys {
        let stack = if key.python == NO_NODE {
            if key.leaf == NO_NODE {
                None
            } else {
                node_stack[key.leaf as usize]
            }
        } else {
            let native = native_leaf_first(p, node_frames, key.leaf);
            let py = p
                .python_stacks
                .get(key.python as usize)
                .cloned()
                .unwrap_or_default();
            // [python] Native and Python stacks meet at the eval-loop frames.
            let merged = crate::python::merge(&native, &py);
            if !merged.merged {
                merge_failures += count;
            }
            if py.cut {
                python_cut += count;
            }
            let ids: Vec<usize> = merged
                .frames
                .iter()
                .rev()
                .map(|f| intern_frame(w, f))
                .collect();
            w.stack(&ids)
        };
        let thread = thread_index.get(key.thread as usize).copied().unwrap_or(0);
        let event = events.get(key.event as usize).copied().unwrap_or(0);
        w.add_sample(stack, thread, event, count, value);
        count_stacks.insert(*key, stack);
    }
    // Summed over the raw directories; a key is there only when something was counted.
    for (key, n) in [
        ("python_merge_failures", merge_failures),
        ("python_stacks_cut", python_cut),
    ] {
        if n > 0 {
            add_to_meta(&mut w.profile.meta, key, n);
        }
    }
    // Samples over time and counter-group counts go to the stack their sample went to.
    let placed = |key: &process::SampleKey| {
        let stack = *count_stacks.get(key)?;
        Some((
            stack,
            thread_index.get(key.thread as usize).copied().unwrap_or(0),
        ))
    };
    let mut times: Vec<_> = p.times.iter().collect();
    times.sort_unstable_by_key(|((k, t), _)| (k.thread, k.leaf, k.python, k.event, *t));
    for ((key, t), count) in times {
        let Some((stack, thread)) = placed(key) else {
            continue;
        };
        match timeline {
            Timeline::Buckets(b) => w.add_timeline(stack, thread, b.bucket(*t), *count),
            Timeline::Units(rows) => rows.push((stack, thread, *t, *count)),
        }
    }
    add_waits(w, p, &count_stacks, &node_stack, &thread_index);
    let mut counts: Vec<_> = p.counts.iter().collect();
    counts.sort_unstable_by_key(|((k, a), _)| (k.thread, k.leaf, k.python, k.event, *a));
    for ((key, attr), &value) in counts {
        let Some((stack, thread)) = placed(key) else {
            continue;
        };
        let event = events.get(*attr as usize).copied().unwrap_or(0);
        w.add_count(stack, thread, event, value);
    }
}

/// Merge per-pid peaks into meta `key` ({"pid": bytes}, kept across raw directories):
/// `combine(old, new)` decides for a pid already there.
fn merge_peaks(
    meta: &mut HashMap<String, String>,
    key: &str,
    peaks: Vec<(u32, u64)>,
    combine: impl Fn(u64, u64) -> u64,
) {
    if peaks.is_empty() {
        return;
    }
    let mut all: std::collections::BTreeMap<String, u64> = meta
        .get(key)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    for (pid, bytes) in peaks {
        let merged = match all.get(&pid.to_string()) {
            Some(&old) => combine(old, bytes),
            None => bytes,
        };
        all.insert(pid.to_string(), merged);
    }
    if let Ok(j) = serde_json::to_string(&all) {
        meta.insert(key.into(), j);
    }
}

/// Locks mode: every off-CPU interval into the waits table, on the stack its sample
/// went to (every wait's key has a sample entry: the marker's, the switch-out sample's,
/// or the one the join made), with the class and object the agent recorded, else
/// classified by that stack (a preempted thread is `preempted` unless in MPI).
fn add_waits(
    w: &mut ProfileWriter,
    p: &RawProfile,
    sample_stacks: &rustc_hash::FxHashMap<process::SampleKey, Option<usize>>,
    node_stack: &[Option<usize>],
    thread_index: &[usize],
) {
    // One root run has a wait per context switch (100k+) on a few hundred stacks: each
    // (stack, preempted, arg0) is classified once.
    let mut classified: HashMap<(Option<usize>, bool, Option<u64>), waits::Wait> = HashMap::new();
    // Per row, the time of its latest wait so far: the pieces of a wait restarted
    // after a signal add up to it, so that max_ns is the whole wait's.
    let mut latest: HashMap<crate::profile::WaitKey, u64> = HashMap::new();
    for wait in &p.waits {
        let Some(&stack) = sample_stacks.get(&wait.key) else {
            continue;
        };
        let thread = thread_index
            .get(wait.key.thread as usize)
            .copied()
            .unwrap_or(0);
        // A recorded wait's stack is classified too: its class may be the GIL's or MPI's.
        let (preempted, arg0) = match wait.cause {
            Cause::Stack { preempted, arg0 } => (preempted, arg0),
            Cause::Recorded(..) => (false, None),
        };
        let by_stack = classified
            .entry((stack, preempted, arg0))
            .or_insert_with(|| {
                // Innermost first.
                let frames = w.profile.stack_frames(stack);
                let functions: Vec<&crate::profile::Function> = frames
                    .iter()
                    .rev()
                    .filter_map(|&f| w.profile.frames.get(f))
                    .filter_map(|f| w.profile.functions.get(f.function))
                    .collect();
                if preempted {
                    waits::classify_preempted(&functions)
                } else {
                    waits::classify(&functions, arg0)
                }
            })
            .clone();
        let (class, object) = match &wait.cause {
            // The GIL, a Python lock, a join or condition of `threading` and MPI are
            // what the program waited for, whatever primitive the agent saw underneath
            // (take_gil's condition variable, a Python lock's semaphore, MPI's poll);
            // the recorded object (the semaphore's address) stays when the stack names
            // none. Not for `other`: an interval the agent did not record, on the stack
            // of the thread's last wait (`waits_join::unexplained`), whose cause is
            // unknown.
            Cause::Recorded(c, object) if *c != WaitClass::Other && by_stack.scope => {
                let keep = matches!(by_stack.class, WaitClass::Lock | WaitClass::Condition);
                let object = by_stack.object.or_else(|| object.clone().filter(|_| keep));
                (by_stack.class, object)
            }
            Cause::Recorded(class, object) => (*class, object.clone()),
            Cause::Stack { .. } => (by_stack.class, by_stack.object),
        };
        let key = crate::profile::WaitKey {
            stack,
            thread,
            class,
            object,
        };
        // Root: who woke it. A waker's stack is a sample's stack when the waker also
        // waited there, else its native stack (a waker's Python frames are joined only
        // to samples).
        if let Some(k) = wait.waker {
            let waker = sample_stacks
                .get(&k)
                .copied()
                .unwrap_or_else(|| node_stack.get(k.leaf as usize).copied().flatten());
            w.merge_waker(crate::profile::WakerRow {
                key: key.clone(),
                waker,
                count: u64::from(!wait.continued),
                wait_ns: wait.ns,
            });
        }
        // The rest of a wait already counted (restarted after a signal) adds its time
        // to the wait's row, not a wait.
        // The key is cloned once per row, not per wait (a root run has 100k+).
        let so_far = match latest.get_mut(&key) {
            Some(t) => {
                *t = if wait.continued {
                    t.saturating_add(wait.ns)
                } else {
                    wait.ns
                };
                *t
            }
            None => {
                latest.insert(key.clone(), wait.ns);
                wait.ns
            }
        };
        w.merge_wait(crate::profile::WaitRow {
            key,
            count: u64::from(!wait.continued),
            wait_ns: wait.ns,
            max_ns: so_far,
        });
    }
}

/// The union of the sample time ranges the ranks named in `names` declare in their own
/// manifests; none unless every one of them does (a rank from an older hwprof, or cut
/// short: the range is then found by reading).
fn declared_time_range(
    ranks: &[(crate::raw::RawDir, Manifest)],
    names: &std::collections::HashSet<String>,
) -> Option<(u64, u64)> {
    let mut range: Option<(u64, u64)> = None;
    let mut declared = 0;
    for (r, m) in ranks {
        if !names.contains(&r.name) {
            continue;
        }
        let [a, b] = m.sample_times_ns?;
        if a > b {
            return None;
        }
        declared += 1;
        range = Some(range.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
    }
    (declared == names.len()).then_some(range).flatten()
}

/// The profile's time buckets: at most [`TIMELINE_MAX_BUCKETS`] of equal width (a
/// whole number of [`process::TIME_UNIT_SHIFT`] units) over the run's sample times.
/// Times of different hosts' clocks are not aligned; an MPI run across hosts shows
/// each host's samples at its own clock's offsets.
#[derive(Clone, Copy, Debug, Default)]
struct TimeBuckets {
    /// First time unit.
    start: u64,
    /// Units per bucket (>= 1).
    width: u64,
    /// Number of buckets (0: no samples).
    count: u64,
}

impl TimeBuckets {
    fn new(range_ns: Option<(u64, u64)>) -> TimeBuckets {
        let Some((a, b)) = range_ns else {
            return TimeBuckets::default();
        };
        let (start, end) = (
            a >> process::TIME_UNIT_SHIFT,
            b.max(a) >> process::TIME_UNIT_SHIFT,
        );
        let span = end - start + 1;
        let width = span.div_ceil(TIMELINE_MAX_BUCKETS).max(1);
        TimeBuckets {
            start,
            width,
            count: span.div_ceil(width),
        }
    }

    /// The bucket of a time in units.
    fn bucket(&self, t: u64) -> u32 {
        let b = t.saturating_sub(self.start) / self.width;
        b.min(self.count.saturating_sub(1)) as u32
    }

    fn start_ns(&self) -> u64 {
        self.start << process::TIME_UNIT_SHIFT
    }

    fn bucket_ns(&self) -> u64 {
        self.width << process::TIME_UNIT_SHIFT
    }
}

/// (python) One slot per joined sample becomes one entry per distinct Python stack, and
/// the sample keys are remapped (empty stacks: no Python stack).
fn dedup_python_stacks(p: &mut RawProfile, slots: Vec<crate::python::PyStack>) {
    let mut index: HashMap<crate::python::PyStack, u32> = HashMap::new();
    let mut unique = Vec::new();
    let joined = slots.iter().filter(|s| !s.frames.is_empty()).count() as u64;
    p.python_joined = (joined, slots.len() as u64 - joined);
    let remap: Vec<u32> = slots
        .into_iter()
        .map(|s| {
            if s.frames.is_empty() {
                return NO_NODE;
            }
            *index.entry(s.clone()).or_insert_with(|| {
                unique.push(s);
                unique.len() as u32 - 1
            })
        })
        .collect();
    let old = std::mem::take(&mut p.samples);
    for (mut k, (c, v)) in old {
        if k.python != NO_NODE {
            k.python = remap.get(k.python as usize).copied().unwrap_or(NO_NODE);
        }
        let e = p.samples.entry(k).or_insert((0, 0));
        e.0 += c;
        e.1 += v;
    }
    let old = std::mem::take(&mut p.counts);
    for ((mut k, a), v) in old {
        if k.python != NO_NODE {
            k.python = remap.get(k.python as usize).copied().unwrap_or(NO_NODE);
        }
        *p.counts.entry((k, a)).or_default() += v;
    }
    for ((k, _), _) in &mut p.times {
        if k.python != NO_NODE {
            k.python = remap.get(k.python as usize).copied().unwrap_or(NO_NODE);
        }
    }
    process::sort_times(&mut p.times);
    for w in &mut p.waits {
        if w.key.python != NO_NODE {
            w.key.python = remap.get(w.key.python as usize).copied().unwrap_or(NO_NODE);
        }
    }
    p.python_stacks = unique;
}

/// Adds N to the count under KEY in profile.db's `meta`.
fn add_to_meta(meta: &mut HashMap<String, String>, key: &str, n: u64) {
    let old = meta
        .get(key)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    meta.insert(key.into(), (old + n).to_string());
}

fn native_leaf_first(p: &RawProfile, node_frames: &NodeFrames, leaf: u32) -> Vec<FrameInfo> {
    let mut out = Vec::new();
    let mut n = leaf;
    while n != NO_NODE {
        out.extend(node_frames[n as usize].iter().cloned());
        n = p.trie[n as usize].0;
    }
    out
}

fn intern_frame(w: &mut ProfileWriter, f: &FrameInfo) -> usize {
    intern_frame_with(w, f, false)
}

fn intern_frame_with(w: &mut ProfileWriter, f: &FrameInfo, inlined: bool) -> usize {
    let function = w.function(f.function.clone());
    let frame = crate::profile::Frame {
        function,
        file: f.file.clone(),
        line: f.line,
    };
    w.frame_with(frame, inlined)
}

/// The stack `stack` of a loaded profile, rebuilt in `w` (functions, frames and stack
/// nodes get `w`'s ids).
fn copy_stack(
    w: &mut ProfileWriter,
    p: &crate::profile::Profile,
    stack: Option<usize>,
) -> Option<usize> {
    let ids: Vec<usize> = p
        .stack_frames(stack)
        .iter()
        .map(|&f| {
            let fr = &p.frames[f];
            let func = w.function(p.functions[fr.function].clone());
            let frame = crate::profile::Frame {
                function: func,
                file: fr.file.clone(),
                line: fr.line,
            };
            w.frame_with(frame, p.frame_inlined.get(f).copied().unwrap_or(false))
        })
        .collect();
    w.stack(&ids)
}

/// `hwprof merge DIR`: combine `DIR/parts/*/profile.db` into `DIR/profile.db`.
pub fn merge(dir: &Path) -> Result<PathBuf, FinalizeError> {
    let parts_dir = dir.join("parts");
    let mut parts: Vec<PathBuf> = std::fs::read_dir(&parts_dir)
        .map_err(|source| crate::raw::RawError::Io {
            path: parts_dir.clone(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("profile.db").is_file())
        .collect();
    parts.sort();
    if parts.is_empty() {
        return Err(FinalizeError::Usage(format!(
            "{} has no finalized parts; run `hwprof finalize {} --part I/N` first",
            parts_dir.display(),
            dir.display()
        )));
    }
    let mut w = ProfileWriter::default();
    let mut sums: HashMap<&str, u64> = HashMap::new();
    let loaded: Vec<_> = parts
        .iter()
        .map(|p| crate::profile::Profile::load(p))
        .collect::<Result<_, _>>()?;
    // Each part bucketed its own time range: re-bucket over the union, each part
    // bucket going to the merged bucket of its middle.
    let part_buckets: Vec<Option<(u64, u64, u64)>> = loaded
        .iter()
        .map(|p| {
            let n = |k: &str| p.meta_str(k).parse::<u64>().ok();
            Some((
                n("timeline_start_ns")?,
                n("timeline_bucket_ns")?.max(1),
                n("timeline_buckets")?,
            ))
        })
        .collect();
    let merged_buckets = TimeBuckets::new(
        part_buckets
            .iter()
            .flatten()
            .map(|&(s, w, n)| (s, s + w * n.max(1) - 1))
            .reduce(|(a, b), (x, y)| (a.min(x), b.max(y))),
    );
    for (pi, p) in loaded.iter().enumerate() {
        let counts = [
            "samples",
            "lost_samples",
            "unwind_truncated",
            "python_stacks_cut",
            "python_merge_failures",
            "skipped_bytes",
        ];
        for k in counts.into_iter().chain(crate::profile::STACK_CUT_KEYS) {
            *sums.entry(k).or_default() += p.meta_str(k).parse::<u64>().unwrap_or(0);
        }
        for (k, v) in &p.meta {
            w.profile.meta.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let proc_base = w.profile.processes.len();
        w.profile.processes.extend(p.processes.iter().cloned());
        let thread_base = w.profile.threads.len();
        for t in &p.threads {
            let mut t = t.clone();
            t.process += proc_base;
            w.profile.threads.push(t);
        }
        let mut ev_map = Vec::new();
        for e in &p.events {
            let i = match w.profile.events.iter().position(|x| x.name == e.name) {
                Some(i) => i,
                None => {
                    w.profile.events.push(e.clone());
                    w.profile.events.len() - 1
                }
            };
            ev_map.push(i);
        }
        for s in &p.samples {
            let stack = copy_stack(&mut w, p, s.stack);
            let ev = ev_map.get(s.event).copied().unwrap_or(0);
            w.add_sample(stack, s.thread + thread_base, ev, s.count, s.value);
        }
        for c in &p.counts {
            let stack = copy_stack(&mut w, p, c.stack);
            let ev = ev_map.get(c.event).copied().unwrap_or(0);
            w.add_count(stack, c.thread + thread_base, ev, c.value);
        }
        for r in &p.rss {
            let mut r = *r;
            r.process += proc_base;
            w.profile.rss.push(r);
        }
        for r in &p.waits {
            let mut r = r.clone();
            r.key.stack = copy_stack(&mut w, p, r.key.stack);
            r.key.thread += thread_base;
            w.merge_wait(r);
        }
        for r in &p.wakers {
            let mut r = r.clone();
            r.key.stack = copy_stack(&mut w, p, r.key.stack);
            r.key.thread += thread_base;
            r.waker = copy_stack(&mut w, p, r.waker);
            w.merge_waker(r);
        }
        if let Some((start, width, _)) = part_buckets[pi] {
            for t in &p.timeline {
                let stack = copy_stack(&mut w, p, t.stack);
                let mid = start + width * t.bucket as u64 + width / 2;
                let b = merged_buckets.bucket(mid >> process::TIME_UNIT_SHIFT);
                w.add_timeline(stack, t.thread + thread_base, b, t.count);
            }
        }
    }
    if merged_buckets.count > 0 {
        let meta = &mut w.profile.meta;
        meta.insert(
            "timeline_start_ns".into(),
            merged_buckets.start_ns().to_string(),
        );
        meta.insert(
            "timeline_bucket_ns".into(),
            merged_buckets.bucket_ns().to_string(),
        );
        meta.insert("timeline_buckets".into(), merged_buckets.count.to_string());
    }
    for (k, v) in sums {
        w.profile.meta.insert(k.into(), v.to_string());
    }
    // Counter group: sample counts summed over the parts, totals from the merged counts.
    let groups: Vec<serde_json::Value> = loaded
        .iter()
        .filter_map(|p| serde_json::from_str(p.meta_str("group")).ok())
        .collect();
    if !groups.is_empty() {
        let sum = |k: &str| {
            groups
                .iter()
                .map(|g| g[k].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        let mut totals: std::collections::BTreeMap<String, f64> = Default::default();
        for c in &w.profile.counts {
            if let Some(e) = w.profile.events.get(c.event) {
                *totals.entry(e.name.clone()).or_default() += c.value;
            }
        }
        let mut unattributed: std::collections::BTreeMap<String, u64> = Default::default();
        for g in &groups {
            for (k, v) in g["unattributed"].as_object().into_iter().flatten() {
                *unattributed.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
            }
        }
        let multiplexed = sum("multiplexed_samples");
        let totals: serde_json::Map<String, serde_json::Value> = totals
            .into_iter()
            .map(|(k, v)| (k, serde_json::json!(v.round() as u64)))
            .collect();
        w.profile.meta.insert(
            "group".into(),
            serde_json::json!({
                "samples_with_read": sum("samples_with_read"),
                "multiplexed": multiplexed > 0,
                "multiplexed_samples": multiplexed,
                "unreadable_samples": sum("unreadable_samples"),
                "totals": totals,
                "unattributed": unattributed,
            })
            .to_string(),
        );
    }
    let total: u64 = w.profile.samples.iter().map(|s| s.value).sum();
    w.profile.meta.insert("total".into(), total.to_string());
    let path = w.write(dir)?;
    if let Ok(mut m) = Manifest::load(dir) {
        m.finalized = true;
        let _ = m.save(dir);
    }
    Ok(path)
}

/// The command a profile is of: as run, or `-p PID (name)` for an attached process
/// (its name from the recording: `-p 8560` alone says nothing of what was profiled).
fn shown_command(command: &[String], processes: &[Process]) -> String {
    let joined = command.join(" ");
    let [flag, pid] = command else { return joined };
    let name = pid
        .parse::<u32>()
        .ok()
        .filter(|_| flag == "-p")
        .and_then(|pid| processes.iter().find(|p| p.pid == pid))
        .map(|p| p.command.as_str())
        .filter(|c| !c.is_empty());
    match name {
        Some(name) => format!("{joined} ({name})"),
        None => joined,
    }
}

/// How the processes of a run were sampled (`sampled_by` in the profile's meta).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SampledBy {
    /// Processes sampled by their preloaded agent.
    pub agent: u64,
    /// Processes sampled by the collector's own events.
    pub collector: u64,
    /// Processes that ran too briefly for a single sample.
    pub without_samples: u64,
    /// Processes nothing could sample ("PID EXE: why").
    pub not_sampled: Vec<String>,
}

impl SampledBy {
    /// Classify each process of one raw dir by the event ids of its samples.
    fn of(p: &RawProfile, agent_ids: &std::collections::HashSet<u64>, raw: &Path) -> SampledBy {
        let mut s = SampledBy::default();
        for pid in p.processes.keys() {
            // A process is counted as what it became: its latest sample's events decide.
            // A pyenv shim (bash, the collector's events) that exec'd Python is sampled by
            // its agent; a child forked by a Python process carries its parent's agent
            // events until its exec, and what it exec'd (a solver) is the collector's.
            match p.pid_last_id.get(pid) {
                None => s.without_samples += 1,
                Some((_, id)) if agent_ids.contains(id) => s.agent += 1,
                Some(_) => s.collector += 1,
            }
        }
        for r in crate::sidecars::collector_sampled::load(raw) {
            if !r.error.is_empty() && r.error != crate::sidecars::collector_sampled::EXITED_FIRST {
                s.not_sampled
                    .push(format!("{} {}: {}; {}", r.pid, r.exe, r.why, r.error));
            }
        }
        s
    }

    fn add(&mut self, o: &SampledBy) {
        self.agent += o.agent;
        self.collector += o.collector;
        self.without_samples += o.without_samples;
        self.not_sampled.extend(o.not_sampled.iter().cloned());
    }
}

/// Why a run that should have Python frames has none, if so: the launch was Python
/// (the manifest's command) and no sample got a Python stack.
fn python_missing(
    manifest: &Manifest,
    joined: u64,
    summaries: &[crate::python::PythonSummary],
) -> Option<String> {
    if !manifest.python_expected || joined > 0 {
        return None;
    }
    let from_notices: Vec<&str> = manifest
        .notices
        .iter()
        .filter(|n| n.starts_with("python"))
        .map(|n| n.as_str())
        .collect();
    let why = if !from_notices.is_empty() {
        from_notices.join("; ")
    } else if manifest.python == "off" {
        "no process reported a supported Python interpreter to the agent".to_string()
    } else if summaries.is_empty() {
        "no Python capture file was written".to_string()
    } else {
        "no sample could be joined with a Python stack".to_string()
    };
    Some(format!(
        "Python frames were expected (a Python launch) but none were captured: {why}; the profile shows native frames only"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ranks' declared ranges fix the buckets only when every rank being read has
    /// one, and a reversed one is not believed.
    #[test]
    fn a_declared_time_range_needs_every_rank() {
        let rank = |name: &str, times: Option<[u64; 2]>| {
            let raw = crate::raw::RawDir {
                path: PathBuf::from(name),
                name: name.to_string(),
                host: "h".into(),
                rank: Some(0),
                pid: 1,
            };
            let m = Manifest {
                sample_times_ns: times,
                ..Default::default()
            };
            (raw, m)
        };
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect();
        let ranks = [
            rank("a", Some([10, 20])),
            rank("b", Some([5, 15])),
            rank("c", None),
        ];
        assert_eq!(
            declared_time_range(&ranks, &names(&["a", "b"])),
            Some((5, 20))
        );
        assert_eq!(
            declared_time_range(&ranks[..1], &names(&["a"])),
            Some((10, 20))
        );
        // c declares none; d has no manifest.
        assert_eq!(declared_time_range(&ranks, &names(&["a", "c"])), None);
        assert_eq!(declared_time_range(&ranks, &names(&["a", "d"])), None);
        let reversed = [rank("a", Some([20, 10]))];
        assert_eq!(declared_time_range(&reversed, &names(&["a"])), None);
    }

    #[test]
    fn time_buckets_stay_bounded_and_cover_the_range() {
        let unit = 1u64 << process::TIME_UNIT_SHIFT;
        let b = TimeBuckets::new(Some((1000 * unit, 1000 * unit + 10 * unit)));
        assert_eq!((b.count, b.width), (11, 1));
        assert_eq!(b.bucket(1005), 5);
        // An hour: widened to stay at most TIMELINE_MAX_BUCKETS.
        let b = TimeBuckets::new(Some((0, 3_600_000_000_000)));
        assert!(b.count <= TIMELINE_MAX_BUCKETS && b.count > TIMELINE_MAX_BUCKETS - 2);
        assert_eq!(b.bucket(u64::MAX >> 20) as u64, b.count - 1);
        assert_eq!(TimeBuckets::new(None).count, 0);
    }
}
