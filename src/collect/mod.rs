//! Live collection: launch (or attach to) the target, open per-CPU perf events on it,
//! drain the rings into `raw/<host>.<rank>.<pid>/perf.data`, and record the sidecars
//! (modules.json, kallsyms, manifest). Collection is cheap and dumb: no unwinding, no
//! symbols; that is finalize's job.
//!
//! [`run`] goes through the steps, each in a file of its own: `options` (what was
//! asked), `launch` (the Python plan, the command, the stopped child), `results_dir`
//! (the directory, manifest, reserve, kallsyms), `plan` (which events, kernel samples,
//! fd limit, agents or collector sampling, ring sizes), `open` (the events and their
//! rings), `drain` (rings into perf.data until the target ends), `memory` (memory
//! mode's samplers), `fill` (processes the agents cannot sample), `modules`
//! (modules.json), `perf_data` (the writer), `sys` (the syscalls).

pub mod drain;
pub mod fill;
mod launch;
mod memory;
pub mod modules;
pub mod open;
mod options;
pub mod perf_data;
mod plan;
mod results_dir;
pub mod rss; // memory mode: RSS timeline
mod sampler_thread;
pub mod sys;
mod tracing_data; // perf.data's tracepoint formats
pub mod uncore; // memory mode: uncore bandwidth counters

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::events::{self, Mode};
use crate::mpi::{self, MpiContext};
use crate::python::PythonCapture;
use open::{OpenConfig, OpenError};
pub use options::{CallGraph, CollectOptions, MEMORY_STACK_BYTES, Target, local_timestamp};
use perf_data::{HostInfo, PerfDataWriter};
pub use results_dir::should_finalize;
use results_dir::write_manifest;

use crate::manifest::Manifest;
use crate::private_dir::PrivateDir;

pub use crate::events::DEFAULT_FAULT_PERIOD;

/// Errors of collection.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Bad combination of options.
    #[error("{0}")]
    Usage(String),
    /// The command cannot be run.
    #[error("cannot run '{command}': {why}")]
    Command {
        /// The command.
        command: String,
        /// Why.
        why: String,
    },
    /// The results directory cannot be used.
    #[error("{0}")]
    ResultDir(String),
    /// `-p PID` may not be attached to.
    #[error("cannot attach to process {pid}: {why}")]
    Attach {
        /// The target.
        pid: i32,
        /// Why, and what to do.
        why: String,
    },
    /// An event could not be resolved.
    #[error(transparent)]
    Event(#[from] events::EventError),
    /// An event could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// I/O on the results directory (the cause follows in the error chain).
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CollectError {
    let what = what.into();
    // Out of fds: the edge (`main.rs`, `needs_fd_limit_hint`) says which limit to raise.
    move |source| CollectError::Io { what, source }
}

/// What collection produced.
pub struct CollectOutcome {
    /// The results directory.
    pub dir: PathBuf,
    /// hwprof's exit code: the target's status (128+N when killed by signal N).
    pub exit_code: i32,
}

/// Print a one-line notice (kept in the manifest too). The ranks of an MPI job keep
/// theirs silent: rank 0 prints each distinct one once at the end ([`print_job_notices`]).
fn notice(quiet: bool, notices: &mut Vec<String>, msg: String) {
    if !quiet && MpiContext::from_env().prints_notices_live() {
        eprintln!("hwprof: {msg}");
    }
    notices.push(msg);
}

/// Rank 0 of an MPI job: print each distinct notice of the job's ranks once, with how
/// many ranks it applies to (from the ranks' own manifests in their raw directories).
pub fn print_job_notices(dir: &Path, mpi: &MpiContext) {
    if mpi.rank != Some(0) {
        return;
    }
    for n in mpi::job_notices(dir, mpi.world_size) {
        eprintln!("hwprof: {}", n.line());
    }
}

/// Run a collection: set up, start the target, open the events, write the provisional
/// manifest, drain until the target ends, then write what describes the recording.
pub fn run(opts: &CollectOptions) -> Result<CollectOutcome, CollectError> {
    // The first per-task perf event of a quiet system waits out an RCU grace period
    // (the kernel switches its scheduler hooks on: 10-20 ms here, see
    // docs/performance.md "Fixed cost"); the sigtrap probe is such an event. Opened on
    // a thread now, that wait overlaps the setup below instead of following it, and
    // the events opened later find the hooks on.
    let sigtrap_probe = std::thread::spawn(sys::kernel_has_sigtrap_events);
    let mut notices = Vec::new();
    let mut setup = set_up(opts, &mut notices)?;
    let mut target = start_target(opts, &mut setup)?;
    let has_sigtrap_events = sigtrap_probe.join().unwrap_or(false);
    let recording = open_recording(opts, &setup, &target, has_sigtrap_events, &mut notices)?;
    let manifest = write_provisional_manifest(opts, &setup, &target, &recording, &notices)?;
    let drained = drain_target(opts, &setup, &mut target, recording, &mut notices)?;
    let exit_code = write_results(opts, &setup, &target, drained, manifest, notices)?;
    Ok(CollectOutcome {
        dir: opts.dir.clone(),
        exit_code,
    })
}

/// What is decided before the target starts.
struct Setup {
    /// The launch prepared up to the fork (or the attach target checked).
    prepared: launch::Prepared,
    /// The results directory.
    results: PrivateDir,
    host: String,
    cpus: Vec<u32>,
    exclude_kernel: bool,
    cfg: OpenConfig,
    /// The events to open.
    wanted: Vec<plan::ChosenEventRequest>,
}

/// Plan the Python capture and the launch, make the results directory, and choose the
/// events and how they are opened.
fn set_up(opts: &CollectOptions, notices: &mut Vec<String>) -> Result<Setup, CollectError> {
    let prepared = launch::prepare(opts, notices)?;
    let results = results_dir::prepare_result_dir(&opts.dir, &opts.mpi)?;
    let exclude_kernel = plan::exclude_kernel(opts, prepared.py_link.is_some(), notices);
    let cfg = OpenConfig {
        freq: opts.freq,
        call_graph: opts.call_graph,
        enable_on_exec: matches!(opts.target, Target::Launch(_)),
        exclude_kernel,
        context_switch: opts.mode == Mode::Locks,
        switches_only: opts.mode == Mode::Locks && exclude_kernel && opts.events.is_empty(),
    };
    let mut wanted = plan::requested_events(opts, notices)?;
    // Locks mode with kernel samples (root): who woke each wait (docs/locks.md, "Wakers").
    if opts.mode == Mode::Locks && !exclude_kernel && opts.events.is_empty() {
        wanted.extend(plan::waker_event(opts.quiet, notices));
    }
    Ok(Setup {
        prepared,
        results,
        host: mpi::host_name(),
        cpus: crate::util::online_cpus(),
        exclude_kernel,
        cfg,
        wanted,
    })
}

/// The target, started (a launch: stopped before its exec until the drain begins).
struct Running {
    started: launch::Started,
    /// [python] The agents' socket.
    py_link: Option<crate::python::AgentLink>,
    /// This process's raw directory.
    raw_dir: PathBuf,
    /// The threads the events follow.
    threads: Vec<i32>,
}

/// Fork the launch (or take the attach target) and make its raw directory.
fn start_target(opts: &CollectOptions, setup: &mut Setup) -> Result<Running, CollectError> {
    let started = launch::start(opts, &setup.prepared)?;
    let py_link = setup.prepared.py_link.take();
    // [python] Only the target's tree may talk to the agents' socket.
    if let Some(link) = py_link.as_ref() {
        link.set_tree_root(started.pid as u32);
    }
    let raw_name = crate::raw::raw_dir_name(&setup.host, opts.mpi.rank, started.pid as u32);
    let raw_dir = results_dir::create_raw_dir(&setup.results, &opts.dir, &raw_name)?;
    let threads = match opts.target {
        Target::Attach(pid) => crate::util::proc::threads(pid),
        Target::Launch(_) => vec![started.pid],
    };
    Ok(Running {
        started,
        py_link,
        raw_dir,
        threads,
    })
}

/// The events open and perf.data created, before the drain.
struct Recording {
    opened: open::OpenedEvents,
    writer: PerfDataWriter,
    /// [python] The agents sample (the collector only tracks and fills in).
    agents_sample: bool,
    agent_ring_pages: usize,
    /// [python] -p on a Python process: the remote sampler.
    py_remote: Option<crate::python::RemoteSampler>,
}

/// Open the events on the target, hand the agents their sampling attr, and create
/// perf.data (with the attach target's existing mappings).
fn open_recording(
    opts: &CollectOptions,
    setup: &Setup,
    target: &Running,
    has_sigtrap_events: bool,
    notices: &mut Vec<String>,
) -> Result<Recording, CollectError> {
    let py_link = target.py_link.as_ref();
    let fds_short = plan::fd_limit_short(
        &setup.wanted,
        setup.cpus.len(),
        target.threads.len(),
        py_link.is_some(),
        opts.quiet,
        notices,
    );
    let agents_sample =
        plan::agents_sample(opts, py_link, &setup.wanted, fds_short, has_sigtrap_events);
    let opened = open::open_events(
        &setup.wanted,
        &setup.cfg,
        &target.threads,
        &setup.cpus,
        agents_sample,
        opts.quiet,
        notices,
    )?;
    // [python] The agents write into this raw dir and sample with the first event's attr.
    let agent_ring_pages = plan::agent_ring_pages(opts, agents_sample);
    if let (Some(link), Some(fa)) = (py_link, opened.file_attrs.first())
        && let Err(e) = link.set_target(&target.raw_dir, &fa.attr, agents_sample, agent_ring_pages)
    {
        notice(
            opts.quiet,
            notices,
            format!("python: {e}; native frames only"),
        );
    }
    // [python] -p on a Python process: the remote sampler (no agent in a running process).
    let py_remote = match (opts.target.clone(), opts.python) {
        (Target::Attach(pid), PythonCapture::Auto | PythonCapture::Remote) => {
            crate::python::RemoteSampler::start(pid as u32, &target.raw_dir, opts.freq).ok()
        }
        _ => None,
    };
    let perf_data = target.raw_dir.join("perf.data");
    let mut writer = PerfDataWriter::create(&perf_data, opened.file_attrs.clone())
        .map_err(io_err("create perf.data"))?;
    writer.set_groups(opened.perf_groups.clone());
    if let Some(t) = tracing_data::for_attrs(&opened.file_attrs, &events::tracefs_root()) {
        writer.set_tracing_data(t);
    }
    if let Target::Attach(pid) = opts.target {
        drain::synthesize_existing(
            &mut writer,
            pid,
            opened.tracking_id,
            &opened.file_attrs[0].attr,
        )
        .map_err(io_err("write perf.data"))?;
    }
    Ok(Recording {
        opened,
        writer,
        agents_sample,
        agent_ring_pages,
        py_remote,
    })
}

/// Crash consistency: from here on the directory is finalizable. The provisional
/// manifest says what is known at start; it is replaced atomically at the end.
/// perf.data's header is rewritten after each drain pass, so a SIGKILL of hwprof loses
/// at most the pass in flight.
fn write_provisional_manifest(
    opts: &CollectOptions,
    setup: &Setup,
    target: &Running,
    recording: &Recording,
    notices: &[String],
) -> Result<Manifest, CollectError> {
    let mut manifest = results_dir::provisional_manifest(
        opts,
        &target.started.command,
        &setup.host,
        setup.wanted.iter().map(|w| w.requested.clone()).collect(),
        &recording.opened,
        setup.exclude_kernel,
        setup.prepared.python_expected,
    );
    manifest.notices = notices.to_vec();
    write_manifest(&setup.results, manifest.clone(), &opts.mpi)
        .map_err(io_err("write the provisional manifest.json"))?;
    Ok(manifest)
}

/// How the drain ended and what it gathered.
struct Drained {
    ended: drain::Ended,
    stats: drain::DrainStats,
    /// The Python capture method, for the manifest.
    python_method: String,
    /// Why and after how many seconds writing stopped early (the disk filled).
    write_error: Option<(String, f64)>,
    started: Instant,
}

/// Release the target and drain the rings into perf.data until it ends (or -d, or a
/// signal), with what runs beside: memory mode's samplers, the kallsyms copy.
fn drain_target(
    opts: &CollectOptions,
    setup: &Setup,
    target: &mut Running,
    recording: Recording,
    notices: &mut Vec<String>,
) -> Result<Drained, CollectError> {
    let raw_dir = &target.raw_dir;
    let target_pid = target.started.pid as u32;
    // Space kept back so that, after a disk-full stop, modules.json and the final
    // manifest can still be written (released before they are).
    let reserve = results_dir::SpaceReserve::take(&setup.results);
    // Reading /proc/kallsyms takes tens of milliseconds: do it beside the target.
    let kallsyms = (!setup.exclude_kernel).then(|| {
        let dir = raw_dir.clone();
        std::thread::spawn(move || results_dir::copy_kallsyms(&dir))
    });

    let started = Instant::now();
    let signals = sys::install_stop_signals();

    // Memory mode: RSS timeline of the tree and uncore bandwidth.
    let memory_samplers = if opts.mode == Mode::Memory {
        Some(memory::start(opts, target_pid, raw_dir, notices)?)
    } else {
        None
    };

    if let Some(c) = target.started.child.as_mut()
        && let Err(e) = c.release()
    {
        drop(reserve);
        results_dir::remove_unstarted(&setup.results, &opts.dir, raw_dir);
        return Err(CollectError::Command {
            command: target.started.command.join(" "),
            why: launch::exec_failure(&e),
        });
    }

    // [python] The agents sample: the collector samples the processes they cannot enter.
    let agent_path = target
        .py_link
        .as_ref()
        .filter(|_| recording.agents_sample)
        .map(|l| l.agent_path());
    let mut session = drain::start_session(
        recording.opened,
        recording.writer,
        agent_path,
        recording.agent_ring_pages,
        opts.mode == Mode::Memory,
    );
    let ended = session
        .run(drain::StopWhen {
            child: target.started.child.as_ref().map(|c| c.pid),
            attach_pid: match opts.target {
                Target::Attach(p) => Some(p),
                _ => None,
            },
            deadline: opts.duration.map(|d| started + d),
            signals: &signals,
            quiet: opts.quiet,
            agents: target.py_link.as_mut(),
        })
        .map_err(io_err("write perf.data"))?;
    if let Some(c) = target.started.child.as_mut() {
        c.mark_released();
    }
    let write_error = session
        .stopped_by()
        .map(|(why, at)| (why.to_string(), at.duration_since(started).as_secs_f64()));
    drop(reserve);
    let beside = Beside {
        memory: memory_samplers,
        kallsyms,
        py_link: target.py_link.take(),
        py_remote: recording.py_remote,
    };
    let (stats, python_method) = end_of_drain(opts, session, beside, raw_dir, target_pid, notices)?;
    Ok(Drained {
        ended,
        stats,
        python_method,
        write_error,
        started,
    })
}

/// After the drain: memory mode's peak, modules.json, the rank's manifest and the
/// `complete` mark, then the final manifest with the target's status (its exit code).
fn write_results(
    opts: &CollectOptions,
    setup: &Setup,
    target: &Running,
    drained: Drained,
    mut manifest: Manifest,
    mut notices: Vec<String>,
) -> Result<i32, CollectError> {
    let Drained {
        ended,
        stats,
        python_method,
        write_error,
        started,
    } = drained;
    let raw_dir = &target.raw_dir;
    // Memory mode: the launched process's exact peak RSS (the timeline is polled).
    if opts.mode == Mode::Memory
        && let Some(bytes) = stats.child_maxrss
    {
        let pid = target.started.pid as u32;
        memory::write_peak(raw_dir, pid, bytes, opts.quiet, &mut notices);
    }
    // Archive copies are skipped after a write error (the disk is full, and the data
    // they would serve was cut anyway).
    let archive = opts.archive && write_error.is_none();
    results_dir::copy_vdso(raw_dir);
    if let Err(e) = modules::write_modules(raw_dir, &stats.mapped_files, archive, &opts.dir) {
        if write_error.is_none() {
            return Err(io_err("write modules.json")(e));
        }
        notice(
            opts.quiet,
            &mut notices,
            format!(
                "modules.json not written ({e}): finalize reads the binaries where they are now"
            ),
        );
    }

    manifest.duration_s = started.elapsed().as_secs_f64();
    manifest.python = python_method;
    manifest.notices = notices;
    manifest.complete = write_error.is_none();
    manifest.incomplete_reason = match &write_error {
        Some((why, after)) => format!("{why}: recording stopped after {after:.1} s"),
        None => String::new(),
    };
    // This rank's own manifest (its notices) beside its data; then the raw directory
    // is complete: rank 0 may finalize it, so everything above is written first.
    if opts.mpi.rank.is_some() {
        let mut own = manifest.clone();
        own.sample_times_ns = stats.sample_times.map(|(a, b)| [a, b]);
        own.save(raw_dir)
            .map_err(io_err("write the rank's manifest.json"))?;
    }
    let _ = crate::util::write_private_file(&raw_dir.join("complete"), b"");
    // The launched target exited: the manifest is written once, with its status.
    // Stopped early (-d, or attached): the target runs on; written before waiting for it.
    if matches!(ended, drain::Ended::Stopped) {
        write_manifest(&setup.results, manifest.clone(), &opts.mpi)
            .map_err(io_err("write manifest.json"))?;
    }
    let exit_code = launch::exit_code(ended, target.started.child.as_ref(), opts.quiet);
    manifest.exit_status = Some(exit_code);
    if let Some(sig) = launch::killed_by(exit_code)
        && manifest.complete
        && matches!(&opts.target, Target::Launch(_))
    {
        manifest.complete = false;
        manifest.incomplete_reason = format!("the target was killed by {sig}");
    }
    write_manifest(&setup.results, manifest, &opts.mpi).map_err(io_err("write manifest.json"))?;
    Ok(exit_code)
}

/// What runs beside the drain and ends after it: memory mode's samplers, the kallsyms
/// copy, the Python agents' link and the remote sampler.
struct Beside {
    memory: Option<memory::MemorySamplers>,
    kallsyms: Option<std::thread::JoinHandle<()>>,
    py_link: Option<crate::python::AgentLink>,
    py_remote: Option<crate::python::RemoteSampler>,
}

/// After the drain: stop what ran beside it, close perf.data, and gather the notices of
/// each; the drain's statistics and the Python capture method for the manifest.
fn end_of_drain(
    opts: &CollectOptions,
    mut session: drain::Session,
    beside: Beside,
    raw_dir: &Path,
    target_pid: u32,
    notices: &mut Vec<String>,
) -> Result<(drain::DrainStats, String), CollectError> {
    if let Some(m) = beside.memory {
        let exit = session
            .child_exit()
            .map(|(maxrss_bytes, time_ns)| rss::ExitReading {
                pid: target_pid,
                maxrss_bytes,
                time_ns,
            });
        memory::stop(m, exit, opts.quiet, notices);
    }
    if let Some(t) = beside.kallsyms {
        let _ = t.join();
    }
    if let Some(f) = session.take_filler() {
        for n in fill::finish_notices(f, raw_dir) {
            notice(opts.quiet, notices, n);
        }
    }
    let stats = session
        .finish(&HostInfo::current(std::env::args().collect()))
        .map_err(io_err("finish perf.data"))?;
    // [python] Last code-object resolution; the capture method goes into the manifest.
    let mut python_method = "off".to_string();
    if let Some(link) = beside.py_link {
        let notices_of_link = link.finish_keep_method();
        python_method = notices_of_link.0.into();
        for n in notices_of_link.1 {
            notice(opts.quiet, notices, n);
        }
    }
    if let Some(rs) = beside.py_remote {
        python_method = "remote".into();
        for n in rs.finish() {
            notice(opts.quiet, notices, n);
        }
    }
    for n in drain::stats_notices(&stats) {
        notice(opts.quiet, notices, n);
    }
    Ok((stats, python_method))
}
