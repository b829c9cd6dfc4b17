//! Live collection: launch (or attach to) the target, open per-CPU perf events on it,
//! drain the rings into `raw/<host>.<rank>.<pid>/perf.data`, and record the sidecars
//! (modules.json, kallsyms, manifest). Collection is cheap and dumb: no unwinding, no
//! symbols; that is finalize's job.

pub mod drain;
pub mod fill;
pub mod modules;
pub mod open;
pub mod perf_data;
pub mod rss; // memory mode: RSS timeline
pub mod sys;
pub mod uncore; // memory mode: uncore bandwidth counters

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::events::{self, EventKind, EventSpec, Mode};
use crate::manifest::{FORMAT_VERSION, GroupRecord, Manifest, OpenedEvent};
use crate::mpi::{self, MpiContext};
use crate::private_dir::PrivateDir;
use crate::python::PythonCapture;
use open::{OpenConfig, OpenError};
use perf_data::{FileAttr, HostInfo, PerfDataWriter};

/// Call stacks to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallGraph {
    /// Registers and this many bytes of user stack, unwound at finalize.
    Dwarf(u32),
    /// Kernel-walked frame pointers.
    Fp,
    /// Only the sampled IP.
    None,
}

impl CallGraph {
    /// Parse `dwarf[,BYTES]|fp|none`.
    pub fn parse(s: &str) -> Result<Self, CollectError> {
        let bad = || {
            CollectError::Usage(format!(
                "--call-graph '{s}': expected dwarf[,BYTES], fp or none"
            ))
        };
        match s.split_once(',') {
            None if s == "dwarf" => Ok(CallGraph::Dwarf(8192)),
            None if s == "fp" => Ok(CallGraph::Fp),
            None if s == "none" => Ok(CallGraph::None),
            Some(("dwarf", n)) => {
                let n: u32 = n.trim().parse().map_err(|_| bad())?;
                if n == 0 || n > 65528 {
                    return Err(CollectError::Usage(format!(
                        "--call-graph dwarf,{n}: the stack copy must be 8..65528 bytes"
                    )));
                }
                Ok(CallGraph::Dwarf(n.div_ceil(8) * 8))
            }
            _ => Err(bad()),
        }
    }

    /// As written in the manifest.
    pub fn describe(self) -> String {
        match self {
            CallGraph::Dwarf(n) => format!("dwarf,{n}"),
            CallGraph::Fp => "fp".into(),
            CallGraph::None => "none".into(),
        }
    }
}

pub use crate::events::DEFAULT_FAULT_PERIOD;

/// Memory mode's default DWARF stack copy: enough for memset and its callers' frames.
pub const MEMORY_STACK_BYTES: u32 = 1024;

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
    /// I/O on the results directory.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CollectError {
    let what = what.into();
    move |source| {
        // Out of fds: say which limit, and how to raise it.
        let what = match source.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => format!(
                "{what} (out of file descriptors: raise the open-files limit, `ulimit -n` up to `ulimit -Hn`)"
            ),
            _ => what,
        };
        CollectError::Io { what, source }
    }
}

/// What to collect, resolved from the command line.
#[derive(Clone, Debug)]
pub struct CollectOptions {
    /// Mode.
    pub mode: Mode,
    /// Results directory.
    pub dir: PathBuf,
    /// Sampling frequency.
    pub freq: u64,
    /// Events named with -e (empty: the mode's defaults).
    pub events: Vec<String>,
    /// Stacks.
    pub call_graph: CallGraph,
    /// Python capture.
    pub python: PythonCapture,
    /// RSS interval.
    pub rss_interval: Duration,
    /// Memory mode: one page-fault sample every this many faults.
    pub fault_period: u64,
    /// Locks mode: waits at least this long take a stack (the agent's threshold).
    pub wait_threshold: Duration,
    /// Copy ELF files into the results directory.
    pub archive: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Launch or attach.
    pub target: Target,
    /// Print less.
    pub quiet: bool,
    /// MPI context.
    pub mpi: MpiContext,
}

/// What to profile.
#[derive(Clone, Debug)]
pub enum Target {
    /// Run this command.
    Launch(Vec<String>),
    /// Attach to this process.
    Attach(i32),
}

/// "ENOENT" rather than "No such file or directory (os error 2)" in notices.
fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP".into(),
        Some(libc::ENODEV) => "ENODEV".into(),
        _ => e.to_string(),
    }
}

/// Now as `YYYYmmdd-HHMMSS` in local time: the default results directory's suffix.
pub fn local_timestamp() -> String {
    // YYYYmmdd-HHMMSS in local time, via libc's localtime_r.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let tm = sys::local_time(now);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        tm.0, tm.1, tm.2, tm.3, tm.4, tm.5
    )
}

/// What collection produced.
pub struct CollectOutcome {
    /// The results directory.
    pub dir: PathBuf,
    /// hwprof's exit code: the target's status (128+N when killed by signal N).
    pub exit_code: i32,
}

/// An event with what it replaced.
struct ChosenEvent {
    spec: EventSpec,
    requested: String,
    note: String,
    /// The precise_ip level opened, for events that asked for one.
    precise_ip: Option<u8>,
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

/// Run a collection.
pub fn run(opts: &CollectOptions) -> Result<CollectOutcome, CollectError> {
    // The first per-task perf event of a quiet system waits out an RCU grace period
    // (the kernel switches its scheduler hooks on: 10-20 ms here, see
    // docs/performance.md "Fixed cost"); the sigtrap probe is such an event. Opened on
    // a thread now, that wait overlaps the setup below instead of following it, and
    // the events opened later find the hooks on.
    let sigtrap_probe = std::thread::spawn(sys::kernel_has_sigtrap_events);
    let mut notices = Vec::new();
    // [python] A launch whose program is Python must end with Python frames.
    let python_expected = match &opts.target {
        Target::Launch(cmd) => {
            opts.python != PythonCapture::Off
                && crate::python::plan_launch(cmd, opts.python).is_some_and(|p| p.python)
        }
        Target::Attach(_) => false,
    };
    // [python] In-process capture: decide, and bind the agents' socket before the fork so
    // its environment (LD_PRELOAD, HWPROF_AGENT_SOCK) reaches the target.
    let mut py_link = match &opts.target {
        Target::Launch(cmd) => crate::python::plan_launch(cmd, opts.python)
            .filter(|p| p.method != crate::python::LaunchMethod::Remote)
            .and_then(|plan| {
                match crate::python::AgentLink::bind_early(&plan, &std::env::temp_dir()) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        notice(
                            opts.quiet,
                            &mut notices,
                            format!("python: {e}; native frames only"),
                        );
                        None
                    }
                }
            }),
        Target::Attach(_) => None,
    };
    let mut py_env = py_link.as_ref().map(|l| l.env()).unwrap_or_default();
    // Locks mode: the agent records waits in every process of the tree (docs/locks.md).
    if opts.mode == Mode::Locks && py_link.is_some() {
        py_env.push((
            "HWPROF_AGENT_WAITS".into(),
            opts.wait_threshold.as_nanos().to_string(),
        ));
    }
    let exec = match &opts.target {
        Target::Launch(cmd) => Some(prepare_exec(cmd, &py_env)?),
        Target::Attach(pid) => {
            check_attach_target(*pid)?;
            None
        }
    };
    let results = prepare_result_dir(&opts.dir, &opts.mpi)?;
    let host = mpi::host_name();
    let cpus = sys::online_cpus();

    let exclude_kernel = !sys::may_sample_kernel();
    if exclude_kernel {
        notice(
            opts.quiet,
            &mut notices,
            format!(
                "kernel samples excluded (perf_event_paranoid={} and no CAP_PERFMON); user-space profiling is complete",
                sys::paranoid_level()
                    .map(|p| p.to_string())
                    .unwrap_or("?".into())
            ),
        );
    }
    if exclude_kernel && opts.mode == Mode::Locks && opts.events.is_empty() && py_link.is_none() {
        notice(
            opts.quiet,
            &mut notices,
            "locks mode without the agent (--python off, or attached with -p): off-CPU intervals come from switch records, with no stack where the thread blocked; launch the program with hwprof (agent on) for stacks, or run with kernel.perf_event_paranoid=1 or CAP_PERFMON".into(),
        );
    }
    let cfg = OpenConfig {
        freq: opts.freq,
        call_graph: opts.call_graph,
        enable_on_exec: matches!(opts.target, Target::Launch(_)),
        exclude_kernel,
        context_switch: opts.mode == Mode::Locks,
    };
    let mut wanted = requested_events(opts, &mut notices)?;
    // Locks mode with kernel samples (root): who woke each wait (docs/locks.md, "Wakers").
    if opts.mode == Mode::Locks && !exclude_kernel && opts.events.is_empty() {
        wanted.extend(waker_event(opts.quiet, &mut notices));
    }

    // Launch: fork a child that waits for us, so events cover its first instruction.
    let (mut child, target_pid, command) = match (&opts.target, &exec) {
        (Target::Launch(cmd), Some((path, argv, envp))) => {
            let c = sys::spawn_stopped(path, argv, envp).map_err(io_err("fork"))?;
            let pid = c.pid;
            (Some(c), pid, cmd.clone())
        }
        (Target::Attach(pid), _) => (None, *pid, vec!["-p".into(), pid.to_string()]),
        (Target::Launch(_), None) => {
            return Err(CollectError::Usage("nothing to run".into()));
        }
    };

    // [python] Only the target's tree may talk to the agents' socket.
    if let Some(link) = py_link.as_ref() {
        link.set_tree_root(target_pid as u32);
    }
    let raw_name = mpi::raw_dir_name(&host, opts.mpi.rank, target_pid as u32);
    let raw_dir = opts.dir.join("raw").join(&raw_name);
    results
        .subdir("raw", true)
        .and_then(|raw| raw.subdir(&raw_name, false))
        .map_err(io_err(format!("create {}", raw_dir.display())))?;

    let threads = match opts.target {
        Target::Attach(pid) => crate::util::proc::threads(pid),
        Target::Launch(_) => vec![target_pid],
    };
    // Every event is an fd per CPU (per thread when attached), and each Python process's
    // agent hands over one per CPU: a low open-files limit would stop the collection.
    // Raised after the fork: the target keeps its own limit.
    let fds_short = {
        let members: usize = wanted.iter().map(|g| 1 + g.members.len()).sum::<usize>() + 1;
        let processes = if py_link.is_some() { 64 } else { 1 };
        let need = (cpus.len() * (members * threads.len().max(1) + processes) + 64) as u64;
        let (soft, hard) = sys::raise_nofile_limit();
        if soft < need {
            // Agents that cannot connect (EMFILE on accept) sample nothing: when they
            // would be the only samplers, hwprof keeps sampling with its own events.
            let fallback = if py_link.is_some() {
                "; hwprof samples with its own events too, so that processes whose agent cannot connect keep their (native) samples"
            } else {
                ""
            };
            notice(
                opts.quiet,
                &mut notices,
                format!(
                    "open-files limit {soft} (hard limit {hard}) is below the ~{need} this collection may need ({} CPUs x events x processes): events or Python processes may go unsampled; raise it (ulimit -Hn, /etc/security/limits.conf){fallback}",
                    cpus.len()
                ),
            );
        }
        soft < need
    };
    // [python] A Python launch in hotspots mode is sampled by the agents alone (each
    // process of the tree opens the sampling event on itself, with SIGTRAP when it is
    // Python): sampling it twice, by our inherited events too, cost ~5% of its run time.
    // Our events then only track (mmap, comm, task). A counter group (PMU machines)
    // keeps our sampling events: its members are read with the samples we take.
    let has_sigtrap_events = sigtrap_probe.join().unwrap_or(false);
    let agents_sample = py_link
        .as_ref()
        .is_some_and(|l| l.method() == crate::python::LaunchMethod::Agent && l.python_program())
        && opts.mode == Mode::Hotspots
        && wanted.len() == 1
        && wanted[0].members.is_empty()
        && std::env::var_os("HWPROF_COLLECTOR_SAMPLES").is_none()
        // Too few fds for every agent to connect: ours keep sampling.
        && !fds_short
        // Older kernels: the agents could not sample; ours must.
        && has_sigtrap_events;
    let opened = open_events(
        &wanted,
        &cfg,
        &threads,
        &cpus,
        agents_sample,
        opts.quiet,
        &mut notices,
    )?;
    // [python] The agents write into this raw dir and sample with the first event's attr,
    // into rings of this many pages. When they are the only samplers, their rings carry
    // every sample (ours only mmap/comm/task records).
    // Memory mode: an agent samples its Python process's faults (the collector's
    // samples of it are dropped at finalize from the agent's first capture on, so each
    // fault counts once); fault storms need the big rings too.
    let agent_ring_pages = if agents_sample || opts.mode == Mode::Memory {
        (ring_pages(opts.call_graph) / 2).next_power_of_two().max(4)
    } else {
        16
    };
    if let (Some(link), Some(fa)) = (py_link.as_ref(), opened.file_attrs.first())
        && let Err(e) = link.set_target(&raw_dir, &fa.attr, agents_sample, agent_ring_pages)
    {
        notice(
            opts.quiet,
            &mut notices,
            format!("python: {e}; native frames only"),
        );
    }
    // [python] -p on a Python process: the remote sampler (no agent in a running process).
    let py_remote = match (opts.target.clone(), opts.python) {
        (Target::Attach(pid), PythonCapture::Auto | PythonCapture::Remote) => {
            crate::python::RemoteSampler::start(pid as u32, &raw_dir, opts.freq).ok()
        }
        _ => None,
    };
    let mut writer = PerfDataWriter::create(&raw_dir.join("perf.data"), opened.file_attrs.clone())
        .map_err(io_err("create perf.data"))?;
    writer.set_groups(opened.perf_groups.clone());
    if let Target::Attach(pid) = opts.target {
        drain::synthesize_existing(
            &mut writer,
            pid,
            opened.tracking_id,
            &opened.file_attrs[0].attr,
        )
        .map_err(io_err("write perf.data"))?;
    }
    let start_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    // Crash consistency: from here on the directory is finalizable. The provisional
    // manifest (complete: false, "collecting") says what is known at start; it is
    // replaced atomically at the end. perf.data's header is rewritten after each drain
    // pass, so a SIGKILL of hwprof loses at most the pass in flight.
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        hwprof_version: env!("CARGO_PKG_VERSION").into(),
        mode: opts.mode.as_str().into(),
        command: command.clone(),
        hosts: vec![host.clone()],
        page_size: crate::util::page_size(),
        start_time_unix: start_unix,
        duration_s: 0.0,
        call_graph: opts.call_graph.describe(),
        frequency_hz: opts.freq,
        events_requested: wanted.iter().map(|w| w.requested.clone()).collect(),
        events: opened
            .chosen
            .iter()
            .map(|c| OpenedEvent {
                requested: c.requested.clone(),
                opened: c.spec.name.clone(),
                note: c.note.clone(),
                precise_ip: c.precise_ip,
            })
            .collect(),
        groups: opened.groups.clone(),
        kernel_samples: !exclude_kernel,
        kernel_note: if exclude_kernel {
            "excluded: perf_event_paranoid >= 2 without CAP_PERFMON".into()
        } else {
            String::new()
        },
        python: "off".into(),
        mpi_job: opts.mpi.job.clone(),
        world_size: opts.mpi.world_size,
        finalized: false,
        exit_status: None,
        notices: notices.clone(),
        python_expected,
        complete: false,
        incomplete_reason: crate::manifest::COLLECTING.into(),
    };
    write_manifest(&results, manifest.clone(), &opts.mpi)
        .map_err(io_err("write the provisional manifest.json"))?;
    // Space kept back so that, after a disk-full stop, modules.json and the final
    // manifest can still be written (released before they are).
    let reserve = SpaceReserve::take(&results);
    // Reading /proc/kallsyms takes tens of milliseconds: do it beside the target.
    let kallsyms = (!exclude_kernel).then(|| {
        let dir = raw_dir.clone();
        std::thread::spawn(move || copy_kallsyms(&dir))
    });

    let started = Instant::now();
    let signals = sys::install_stop_signals();

    // Memory mode: RSS timeline of the tree and uncore bandwidth.
    let memory_samplers = if opts.mode == Mode::Memory {
        Some(start_memory_samplers(
            opts,
            target_pid as u32,
            &raw_dir,
            &mut notices,
        )?)
    } else {
        None
    };

    if let Some(c) = child.as_mut()
        && let Err(e) = c.release()
    {
        drop(reserve);
        let _ = std::fs::remove_dir_all(&raw_dir);
        let _ = std::fs::remove_dir(opts.dir.join("raw"));
        let _ = results.remove("manifest.json");
        let _ = std::fs::remove_dir(&opts.dir);
        return Err(CollectError::Command {
            command: command.join(" "),
            why: e.to_string(),
        });
    }

    // [python] The agents sample: the collector samples the processes they cannot enter.
    let outputs: Vec<(u32, std::os::fd::OwnedFd)> = opened
        .rings
        .iter()
        .zip(&opened.ring_cpus)
        .filter_map(|(r, &cpu)| Some((cpu, r.fd().try_clone().ok()?)))
        .collect();
    let filler = match (&py_link, opened.first_attr) {
        (Some(link), Some(attr)) if agents_sample => {
            Some(fill::Filler::new(&attr, outputs, link.agent_path()))
        }
        _ => None,
    };
    let mut session = drain::Session::new(opened.rings, opened.redirected, writer);
    session.set_agent_ring_pages(agent_ring_pages);
    // Memory mode: an agent samples major faults too, filed under our major-faults attr.
    if opts.mode == Mode::Memory
        && let Some(i) = opened.file_attrs.iter().position(|f| {
            // perf_event_attr bytes: type at 0, config at 8.
            let ty = f.attr.get(0..4).and_then(|b| b.try_into().ok());
            let config = f.attr.get(8..16).and_then(|b| b.try_into().ok());
            ty.map(u32::from_le_bytes) == Some(perf_event_open_sys::bindings::PERF_TYPE_SOFTWARE)
                && config.map(u64::from_le_bytes)
                    == Some(u64::from(
                        perf_event_open_sys::bindings::PERF_COUNT_SW_PAGE_FAULTS_MAJ,
                    ))
        })
    {
        session.set_agent_second_attr(i);
    }
    if let Some(f) = filler {
        session.set_filler(f);
    }
    let ended = session
        .run(drain::StopWhen {
            child: child.as_ref().map(|c| c.pid),
            attach_pid: match opts.target {
                Target::Attach(p) => Some(p),
                _ => None,
            },
            deadline: opts.duration.map(|d| started + d),
            signals: &signals,
            quiet: opts.quiet,
            agents: py_link.as_mut(),
        })
        .map_err(io_err("write perf.data"))?;
    if let Some(c) = child.as_mut() {
        c.mark_released();
    }
    let write_error = session
        .stopped_by()
        .map(|(why, at)| (why.to_string(), at.duration_since(started).as_secs_f64()));
    drop(reserve);
    if let Some(m) = memory_samplers {
        let exit = session
            .child_exit()
            .map(|(maxrss_bytes, time_ns)| rss::ExitReading {
                pid: target_pid as u32,
                maxrss_bytes,
                time_ns,
            });
        stop_memory_samplers(m, exit, opts.quiet, &mut notices);
    }
    if let Some(t) = kallsyms {
        let _ = t.join();
    }
    if let Some(f) = session.take_filler() {
        match f.finish(&raw_dir) {
            Ok(records) => {
                // A process that exited before its exec record was read is counted as
                // too short (a launcher's helper, typically), not announced.
                let failed =
                    |r: &&fill::FillRecord| !r.error.is_empty() && r.error != fill::EXITED_FIRST;
                for r in records.iter().filter(failed) {
                    notice(
                        opts.quiet,
                        &mut notices,
                        format!(
                            "process {} ({}) was not sampled: {}; {}",
                            r.pid, r.exe, r.why, r.error
                        ),
                    );
                }
            }
            Err(e) => notice(
                opts.quiet,
                &mut notices,
                format!("cannot write {}: {e}", fill::FILE_NAME),
            ),
        }
    }
    let stats = session
        .finish(&HostInfo::current(std::env::args().collect()))
        .map_err(io_err("finish perf.data"))?;
    // [python] Last code-object resolution; the capture method goes into the manifest.
    let mut python_method = "off".to_string();
    if let Some(link) = py_link.take() {
        let notices_of_link = link.finish_keep_method();
        python_method = notices_of_link.0.into();
        for n in notices_of_link.1 {
            notice(opts.quiet, &mut notices, n);
        }
    }
    if let Some(rs) = py_remote {
        python_method = "remote".into();
        for n in rs.finish() {
            notice(opts.quiet, &mut notices, n);
        }
    }
    if stats.lost > 0 {
        notice(
            opts.quiet,
            &mut notices,
            format!(
                "{} samples lost: the ring buffer overflowed (lower -F or use --call-graph dwarf with fewer bytes)",
                stats.lost
            ),
        );
    }
    if stats.corrupt_records > 0 {
        notice(
            opts.quiet,
            &mut notices,
            format!(
                "{} corrupt ring records skipped ({} bytes of samples lost): a ring's memory was overwritten (an agent's ring is mapped in the target)",
                stats.corrupt_records, stats.corrupt_bytes
            ),
        );
    }
    if stats.throttled > 0 {
        notice(
            opts.quiet,
            &mut notices,
            format!(
                "the kernel throttled sampling {} times (kernel.perf_event_max_sample_rate)",
                stats.throttled
            ),
        );
    }
    // Memory mode: the launched process's exact peak RSS (the timeline is polled).
    if opts.mode == Mode::Memory
        && let Some(bytes) = stats.child_maxrss
        && let Err(e) = rss::write_peak_csv(&raw_dir.join("peak.csv"), target_pid as u32, bytes)
    {
        notice(
            opts.quiet,
            &mut notices,
            format!("memory: peak RSS of the launched process not written: {e}"),
        );
    }
    // Archive copies are skipped after a write error (the disk is full, and the data
    // they would serve was cut anyway).
    let archive = opts.archive && write_error.is_none();
    if let Err(e) = modules::write_modules(&raw_dir, &stats.mapped_files, archive, &opts.dir) {
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
        manifest
            .save(&raw_dir)
            .map_err(io_err("write the rank's manifest.json"))?;
    }
    let _ = crate::util::write_private_file(&raw_dir.join("complete"), b"");
    write_manifest(&results, manifest.clone(), &opts.mpi).map_err(io_err("write manifest.json"))?;
    // Stopped early (-d, or attached): the launched target runs on; results are written.
    let exit_code = match (ended, child.as_ref()) {
        (drain::Ended::ChildExited(code), _) => code,
        (drain::Ended::Stopped, Some(c)) => {
            if !opts.quiet {
                eprintln!("hwprof: collection stopped; waiting for the target to exit");
            }
            sys::wait_blocking(c.pid)
        }
        (drain::Ended::Stopped, None) => 0,
    };
    manifest.exit_status = Some(exit_code);
    if let Some(sig) = killed_by(exit_code)
        && manifest.complete
        && matches!(&opts.target, Target::Launch(_))
    {
        manifest.complete = false;
        manifest.incomplete_reason = format!("the target was killed by {sig}");
    }
    write_manifest(&results, manifest, &opts.mpi).map_err(io_err("write manifest.json"))?;
    Ok(CollectOutcome {
        dir: opts.dir.clone(),
        exit_code,
    })
}

/// The memory-mode samplers running beside the perf events.
struct MemorySamplers {
    rss: rss::RssSampler,
    uncore: uncore::UncoreSampler,
}

fn start_memory_samplers(
    opts: &CollectOptions,
    root_pid: u32,
    raw_dir: &Path,
    notices: &mut Vec<String>,
) -> Result<MemorySamplers, CollectError> {
    let rss = rss::RssSampler::start(root_pid, opts.rss_interval, &raw_dir.join("rss.csv"))
        .map_err(|e| CollectError::ResultDir(e.to_string()))?;
    let plan = uncore::bandwidth_plan(&events::EventEnv::system());
    let uncore = uncore::UncoreSampler::start(
        &plan,
        opts.rss_interval.max(Duration::from_millis(100)),
        &raw_dir.join("counters.csv"),
    )
    .map_err(|e| CollectError::ResultDir(e.to_string()))?;
    for n in &uncore.notices {
        notice(opts.quiet, notices, n.clone());
    }
    Ok(MemorySamplers { rss, uncore })
}

fn stop_memory_samplers(
    m: MemorySamplers,
    exit: Option<rss::ExitReading>,
    quiet: bool,
    notices: &mut Vec<String>,
) {
    if let Err(e) = m.rss.stop_at_exit(exit) {
        notice(
            quiet,
            notices,
            format!("memory: RSS timeline incomplete: {e}"),
        );
    }
    if let Err(e) = m.uncore.stop() {
        notice(
            quiet,
            notices,
            format!("memory: bandwidth timeline incomplete: {e}"),
        );
    }
}

/// Whether this process should finalize after collecting: outside MPI always; in an
/// MPI job only rank 0, once every rank's raw directory is complete (or after
/// `timeout`, naming the missing ranks).
pub fn should_finalize(dir: &Path, mpi: &MpiContext, timeout: Duration, quiet: bool) -> bool {
    let Some(rank) = mpi.rank else { return true };
    if rank != 0 {
        return false;
    }
    let Some(size) = mpi.world_size else {
        return true;
    };
    let deadline = Instant::now() + timeout;
    loop {
        let done: Vec<u32> = crate::raw::list_raw_dirs(dir)
            .unwrap_or_default()
            .iter()
            .filter(|r| r.path.join("complete").exists())
            .filter_map(|r| r.rank)
            .collect();
        let missing: Vec<u32> = (0..size).filter(|r| !done.contains(r)).collect();
        if missing.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            if !quiet {
                eprintln!(
                    "hwprof: ranks {missing:?} did not complete within {}s; finalizing without them (run `hwprof finalize {}` again later)",
                    timeout.as_secs(),
                    dir.display()
                );
            }
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Events to open: -e names, or the mode's defaults (with their fallbacks).
fn requested_events(
    opts: &CollectOptions,
    notices: &mut Vec<String>,
) -> Result<Vec<ChosenEventRequest>, CollectError> {
    if opts.events.is_empty() {
        return events::mode_defaults(opts.mode)
            .into_iter()
            .filter_map(|d| {
                // Optional defaults (memory mode's LLC-miss sampling):
                // the CPU's precise event when the PMU has it, else skipped with a notice.
                if d.optional {
                    let env = events::EventEnv::system();
                    return match events::llc_miss_event(&env)
                        .filter(|s| events::list::probe(s).is_ok())
                    {
                        Some(spec) => Some(Ok(ChosenEventRequest {
                            requested: d.primary.to_string(),
                            spec,
                            fallback: None,
                            members: Vec::new(),
                            group_on_fallback: false,
                        })),
                        None => {
                            notice(
                                opts.quiet,
                                notices,
                                "memory: LLC-miss sampling skipped: this machine has no hardware PMU (cache-misses: ENOENT); page faults, RSS and the rest are collected".into(),
                            );
                            None
                        }
                    };
                }
                Some((|| {
                    let mut spec = events::resolve(d.primary)?;
                    if let Some(p) = d.period {
                        spec.period = p;
                    }
                    if d.weight == events::SampleWeight::PageBytes {
                        spec.period = opts.fault_period;
                    }
                    // Hotspots with a PMU: cycles leads instructions and cache-misses,
                    // read with each sample; on the software fallback there is no group.
                    // Decided here, not when opening, because a Python launch without a
                    // group is sampled by the agents alone (see `agents_sample`).
                    let members = if opts.mode == Mode::Hotspots
                        && events::list::probe(&spec).is_ok()
                    {
                        events::HOTSPOT_GROUP_MEMBERS
                            .iter()
                            .filter_map(|m| events::resolve(m).ok().map(|s| (m.to_string(), s)))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    Ok(ChosenEventRequest {
                        requested: d.primary.to_string(),
                        spec,
                        fallback: d.fallback.map(events::resolve).transpose()?,
                        members,
                        group_on_fallback: false,
                    })
                })())
            })
            .collect();
    }
    opts.events
        .iter()
        .map(|arg| {
            // `{leader,member,...}`: the leader samples, the members are read with it.
            let (name, members) = match events::group::parse_group_syntax(arg) {
                None => (arg.clone(), Vec::new()),
                Some(Err(e)) => return Err(CollectError::Usage(e)),
                Some(Ok(mut names)) => {
                    let leader = names.remove(0);
                    let members = names
                        .into_iter()
                        .map(|m| Ok((m.clone(), events::resolve(&m)?)))
                        .collect::<Result<Vec<_>, CollectError>>()?;
                    (leader, members)
                }
            };
            let spec = events::resolve(&name)?;
            // A generic hardware event the machine lacks falls back like the default.
            let fallback = if spec.kind == EventKind::Hardware && opts.mode == Mode::Hotspots {
                Some(events::resolve("cpu-clock")?)
            } else {
                None
            };
            Ok(ChosenEventRequest {
                requested: arg.clone(),
                spec,
                fallback,
                members,
                group_on_fallback: true,
            })
        })
        .collect()
}

/// Locks mode's `sched:sched_waking` sampler (every wakeup, with the waker's stack and
/// the woken thread in its raw data), when the kernel lets us open it.
fn waker_event(quiet: bool, notices: &mut Vec<String>) -> Option<ChosenEventRequest> {
    let spec = events::resolve(WAKER_EVENT)
        .ok()
        .filter(|s| events::list::probe(s).is_ok());
    if spec.is_none() {
        notice(
            quiet,
            notices,
            format!(
                "locks: {WAKER_EVENT} cannot be opened here: waits are shown without their waker"
            ),
        );
    }
    Some(ChosenEventRequest {
        requested: WAKER_EVENT.to_string(),
        spec: spec?,
        fallback: None,
        members: Vec::new(),
        group_on_fallback: false,
    })
}

/// The tracepoint of a wakeup, sampled in the waker's context.
pub const WAKER_EVENT: &str = "sched:sched_waking";

struct ChosenEventRequest {
    requested: String,
    spec: EventSpec,
    fallback: Option<EventSpec>,
    /// Counter-group members read with each sample: (as requested, spec).
    members: Vec<(String, EventSpec)>,
    /// Keep the group when the leader falls back to its software replacement (a
    /// user's group: yes; hotspots' default hardware group: no).
    group_on_fallback: bool,
}

struct OpenedEvents {
    chosen: Vec<ChosenEvent>,
    file_attrs: Vec<FileAttr>,
    rings: Vec<sys::RingBuffer>,
    /// Events whose output goes to another ring: kept open for them to live.
    redirected: Vec<std::os::fd::OwnedFd>,
    tracking_id: u64,
    /// Counter groups as opened.
    groups: Vec<GroupRecord>,
    /// The same for perf.data's GROUP_DESC: (name, leader attr index, events).
    perf_groups: Vec<(String, u32, u32)>,
    /// The CPU of each ring.
    ring_cpus: Vec<u32>,
    /// The first event's sampling attr as opened.
    first_attr: Option<perf_event_open_sys::bindings::perf_event_attr>,
}

fn ring_pages(call_graph: CallGraph) -> usize {
    // 512 KiB of data per CPU fits the unprivileged mlock budget (perf_event_mlock_kb =
    // 516); root gets more room for DWARF stack copies.
    // An ordinary user's DWARF rings ask for 2 MiB too: the kernel also counts
    // RLIMIT_MEMLOCK (8 MiB by default) and map_ring halves what it refuses; memory
    // mode's fault storms lost 1-3% of samples with 512 KiB.
    let kib = match (nix::unistd::geteuid().is_root(), call_graph) {
        (true, CallGraph::Dwarf(_)) => 4096,
        (false, CallGraph::Dwarf(_)) => 2048,
        _ => 512,
    };
    (kib * 1024 / crate::util::page_size() as usize).next_power_of_two()
}

/// Opens the wanted events, the first one also tracking. `tracking_only`: the first
/// event's kernel counterpart is a `dummy` event with the same attributes (mmap, comm and
/// task records, no samples) while perf.data describes the sampling event the agents
/// open with those attributes.
fn open_events(
    wanted: &[ChosenEventRequest],
    cfg: &OpenConfig,
    threads: &[i32],
    cpus: &[u32],
    tracking_only: bool,
    quiet: bool,
    notices: &mut Vec<String>,
) -> Result<OpenedEvents, CollectError> {
    let mut chosen = Vec::new();
    let mut file_attrs = Vec::new();
    // One ring per CPU: the first fd opened on a CPU owns it, the others (other events,
    // other threads when attaching) redirect their output into it.
    let mut slot_leaders: Vec<(u32, std::os::fd::OwnedFd)> = Vec::new();
    let mut others: Vec<std::os::fd::OwnedFd> = Vec::new();
    let pages = ring_pages(cfg.call_graph);
    let mut rings = Vec::new();
    let mut ring_cpus = Vec::new();
    let mut first_attr = None;
    let mut groups = Vec::new();
    let mut perf_groups = Vec::new();
    for (i, w) in wanted.iter().enumerate() {
        let tracking = i == 0;
        let mut spec = w.spec.clone();
        let mut note = String::new();
        let mut fds = Vec::new();
        // Counter-group members read with each sample of this event.
        let mut members = w.members.clone();
        let mut group_note = String::new();
        for &tid in threads {
            let opened =
                match open::open_leader(&spec, cfg, tracking, !members.is_empty(), tid, cpus) {
                    Ok(o) => o,
                    Err(e)
                        if open::is_missing_hardware(&e)
                            && w.fallback.is_some()
                            && fds.is_empty() =>
                    {
                        let Some(fb) = w.fallback.clone() else {
                            unreachable!()
                        };
                        note = format!(
                            "{} is not available here (no hardware PMU: {}); sampling {} instead",
                            spec.name,
                            match &e {
                                OpenError::Unsupported { source, .. } => errno_name(source),
                                _ => String::new(),
                            },
                            fb.name
                        );
                        notice(quiet, notices, note.clone());
                        spec = fb;
                        // hotspots' default group needs the PMU; a user's group goes on.
                        if !w.group_on_fallback {
                            members.clear();
                        }
                        open::open_leader(&spec, cfg, tracking, !members.is_empty(), tid, cpus)?
                    }
                    Err(OpenError::NoProcess { .. }) if threads.len() > 1 => continue, // thread ended
                    Err(e) => return Err(e.into()),
                };
            if let Some(why) = opened.group_refused {
                group_note = why.clone();
                notice(quiet, notices, format!("counter group: {why}"));
                members.clear();
            }
            fds.push((tid, opened.attr, opened.fds));
        }
        let Some(attr) = fds.first().map(|f| f.1) else {
            return Err(OpenError::NoProcess {
                pid: threads.first().copied().unwrap_or(0),
            }
            .into());
        };
        if tracking {
            first_attr = Some(attr);
        }
        if tracking && tracking_only {
            // Opened above as the sampling event so that fallbacks apply; never enabled
            // (enable_on_exec), these are replaced by the tracking-only twins.
            let mut tracked = Vec::with_capacity(fds.len());
            for (tid, attr, per_cpu) in fds {
                drop(per_cpu);
                let mut dummy = attr;
                dummy.type_ = perf_event_open_sys::bindings::PERF_TYPE_SOFTWARE;
                dummy.config = perf_event_open_sys::bindings::PERF_COUNT_SW_DUMMY as u64;
                let f = open::open_per_cpu(&mut dummy, "dummy", tid, cpus)?;
                tracked.push((tid, attr, f));
            }
            fds = tracked;
        }
        // Precise IPs: the level the kernel accepted.
        let precise_ip = (spec.precise > 0).then(|| attr.precise_ip() as u8);
        if let Some(got) = precise_ip
            && got < spec.precise
        {
            let n = format!(
                "{}: precise_ip {} refused; sampling with precise_ip {got}",
                spec.name, spec.precise
            );
            notice(quiet, notices, n.clone());
            note = if note.is_empty() {
                n
            } else {
                format!("{note}; {n}")
            };
        }
        // Members join each leader descriptor's group; the ones this machine lacks are
        // dropped with a notice.
        let (member_files, dropped) = if members.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let leaders: Vec<(i32, &[(u32, std::os::fd::OwnedFd)])> =
                fds.iter().map(|(t, _, f)| (*t, f.as_slice())).collect();
            open::open_members(&members, &attr, &leaders)
        };
        for (name, why) in &dropped {
            notice(
                quiet,
                notices,
                format!("counter group: {name} dropped: {why}"),
            );
        }
        let mut ids = Vec::new();
        for (_, _, per_cpu) in fds {
            for (cpu, fd) in per_cpu {
                ids.push(sys::event_id(&fd).map_err(io_err("read event id"))?);
                match slot_leaders.iter().find(|(k, _)| *k == cpu) {
                    Some((_, leader)) => {
                        sys::set_output(&fd, leader).map_err(io_err("redirect event output"))?;
                        others.push(fd);
                    }
                    None => {
                        // Map the leader's ring now: PERF_EVENT_IOC_SET_OUTPUT onto an
                        // event without a ring fails with EINVAL (kernel
                        // perf_event_set_output), which broke every run with two events.
                        // Tracking-only rings also take the samples of the processes
                        // no agent samples (see `fill`): 32 pages, half the ring at
                        // most between two wake-ups.
                        let pages = if tracking_only { pages.min(32) } else { pages };
                        rings.push(map_ring(fd.try_clone().map_err(io_err("dup"))?, pages)?);
                        ring_cpus.push(cpu);
                        slot_leaders.push((cpu, fd));
                    }
                }
            }
        }
        let in_group =
            attr.sample_type & perf_event_open_sys::bindings::PERF_SAMPLE_READ as u64 != 0;
        if !w.members.is_empty() && (in_group || !group_note.is_empty()) {
            groups.push(GroupRecord {
                leader: spec.name.clone(),
                members: member_files.iter().map(|m| m.spec.name.clone()).collect(),
                dropped: dropped
                    .iter()
                    .map(|(n, why)| format!("{n}: {why}"))
                    .collect(),
                read_per_sample: in_group,
                note: group_note,
            });
        }
        file_attrs.push(FileAttr {
            attr: sys::attr_bytes(&attr),
            name: spec.name.clone(),
            ids,
        });
        let leader_name = spec.name.clone();
        if in_group && !member_files.is_empty() {
            // perf's name for a group without one of its own; it prints the members.
            perf_groups.push((
                "{anon_group}".to_string(),
                file_attrs.len() as u32 - 1,
                member_files.len() as u32 + 1,
            ));
        }
        chosen.push(ChosenEvent {
            spec,
            requested: w.requested.clone(),
            note,
            precise_ip,
        });
        // Members follow their leader in perf.data (perf's group layout).
        for m in member_files {
            let mut ids = Vec::with_capacity(m.fds.len());
            for fd in m.fds {
                ids.push(sys::event_id(&fd).map_err(io_err("read event id"))?);
                others.push(fd);
            }
            file_attrs.push(FileAttr {
                attr: sys::attr_bytes(&m.attr),
                name: m.spec.name.clone(),
                ids,
            });
            chosen.push(ChosenEvent {
                note: format!("counter group member: read with each sample of {leader_name}"),
                spec: m.spec,
                requested: m.requested,
                precise_ip: None,
            });
        }
    }
    let tracking_id = file_attrs
        .first()
        .and_then(|a| a.ids.first().copied())
        .unwrap_or(0);
    drop(slot_leaders); // their rings hold their own descriptors
    Ok(OpenedEvents {
        chosen,
        file_attrs,
        rings,
        redirected: others,
        tracking_id,
        groups,
        perf_groups,
        ring_cpus,
        first_attr,
    })
}

/// Map a ring, halving its size while the locked-memory budget refuses it.
fn map_ring(fd: std::os::fd::OwnedFd, mut pages: usize) -> Result<sys::RingBuffer, CollectError> {
    loop {
        match sys::RingBuffer::map(fd.try_clone().map_err(io_err("dup"))?, pages) {
            Ok(r) => return Ok(r),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && pages > 4 => pages /= 2,
            Err(e) => {
                return Err(CollectError::Io {
                    what:
                        "map the perf ring buffer (raise kernel.perf_event_mlock_kb or `ulimit -l`)"
                            .into(),
                    source: e,
                });
            }
        }
    }
}

/// Create the results directory, or adopt an existing one that is the caller's, not
/// group/other writable, and empty, except that the ranks of one MPI job share it (see
/// `private_dir`).
fn prepare_result_dir(dir: &Path, mpi: &MpiContext) -> Result<PrivateDir, CollectError> {
    if dir.exists() && !dir.is_dir() {
        return Err(CollectError::ResultDir(format!(
            "{} exists and is not a directory; choose another -r",
            dir.display()
        )));
    }
    let results = PrivateDir::create_or_adopt(dir, mpi.job.is_some())
        .map_err(|e| CollectError::ResultDir(e.to_string()))?;
    let empty = results.was_created()
        || results
            .is_empty()
            .map_err(io_err(format!("read {}", dir.display())))?;
    if !empty {
        let same_job =
            mpi.job.is_some() && Manifest::load(dir).ok().and_then(|m| m.mpi_job) == mpi.job;
        let sibling_rank = mpi.job.is_some() && mpi.rank.is_some() && !Manifest::path(dir).exists();
        if !(same_job || sibling_rank) {
            return Err(CollectError::ResultDir(
                crate::private_dir::PrivateDirError::NotEmpty(dir.to_path_buf()).to_string(),
            ));
        }
    }
    Ok(results)
}

/// "SIGKILL" for hwprof's exit code 128+9 (a launched target killed by a signal).
fn killed_by(exit_code: i32) -> Option<String> {
    let sig = exit_code
        .checked_sub(128)
        .filter(|s| (1..=64).contains(s))?;
    let name = nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"));
    Some(name)
}

/// Disk space held back during collection (a preallocated hidden file in the results
/// directory), released before the last writes so that a disk-full stop still ends
/// with a valid, marked directory. Left behind only by a crash; finalize ignores it.
struct SpaceReserve<'a> {
    dir: &'a PrivateDir,
    name: String,
}

impl<'a> SpaceReserve<'a> {
    const BYTES: i64 = 1 << 20;

    fn take(dir: &'a PrivateDir) -> Option<SpaceReserve<'a>> {
        use std::os::fd::AsFd;
        let name = format!(".hwprof-reserve.{}", std::process::id());
        let f = dir.create_file(&name).ok()?;
        let reserve = SpaceReserve { dir, name };
        // Best effort: a file system without fallocate keeps no reserve.
        let _ = nix::fcntl::fallocate(
            f.as_fd(),
            nix::fcntl::FallocateFlags::empty(),
            0,
            Self::BYTES,
        );
        Some(reserve)
    }
}

impl Drop for SpaceReserve<'_> {
    fn drop(&mut self) {
        let _ = self.dir.remove(&self.name);
    }
}

/// Rank 0 (or a non-MPI run) writes the manifest, atomically (rename). Another rank
/// writes it only when none exists yet, so a results directory is never without one:
/// it creates it with a hard link from its own temporary file, which fails when the
/// file exists, so of several ranks (on several hosts of a shared file system) exactly
/// one wins and nobody's half-written file is ever seen. The hosts are those of the raw
/// directories present, so the manifest does not depend on which rank wrote last.
fn write_manifest(dir: &PrivateDir, mut m: Manifest, mpi: &MpiContext) -> std::io::Result<()> {
    let labels: Vec<String> = m.hosts.iter().map(|h| mpi::host_label(h)).collect();
    for r in crate::raw::list_raw_dirs(dir.path()).unwrap_or_default() {
        if !m.hosts.contains(&r.host) && !labels.contains(&r.host) {
            m.hosts.push(r.host);
        }
    }
    m.hosts.sort();
    m.hosts.dedup();
    if mpi.rank.is_none_or(|r| r == 0) {
        return m.save_in(dir);
    }
    dir.write_if_absent("manifest.json", m.to_json()?.as_bytes())
        .map(drop)
}

/// Resolve the command on PATH and build execve's arguments.
fn prepare_exec(
    cmd: &[String],
    extra_env: &[(String, String)],
) -> Result<(CString, Vec<CString>, Vec<CString>), CollectError> {
    let first = &cmd[0];
    let path = resolve_command(first).ok_or_else(|| CollectError::Command {
        command: first.clone(),
        why: if first.contains('/') {
            "no such file".into()
        } else {
            "command not found on PATH".into()
        },
    })?;
    let meta = std::fs::metadata(&path).map_err(|e| CollectError::Command {
        command: first.clone(),
        why: e.to_string(),
    })?;
    use std::os::unix::fs::PermissionsExt;
    if meta.is_dir() || meta.permissions().mode() & 0o111 == 0 {
        return Err(CollectError::Command {
            command: first.clone(),
            why: format!("{} is not an executable file (chmod +x?)", path.display()),
        });
    }
    let c = |s: &[u8]| {
        CString::new(s).map_err(|_| CollectError::Command {
            command: first.clone(),
            why: "argument contains a NUL byte".into(),
        })
    };
    let path_c = c(path.as_os_str().as_bytes())?;
    let argv = cmd
        .iter()
        .map(|a| c(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    // [python] extra_env (the agent's variables) replaces same-named variables.
    let envp = std::env::vars_os()
        .filter(|(k, _)| !extra_env.iter().any(|(e, _)| k.as_bytes() == e.as_bytes()))
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .chain(
            extra_env
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
        )
        .map(|(k, v)| {
            let mut kv = k;
            kv.push(b'=');
            kv.extend_from_slice(&v);
            c(&kv)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((path_c, argv, envp))
}

fn resolve_command(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn check_attach_target(pid: i32) -> Result<(), CollectError> {
    if !crate::util::proc::exists(pid) {
        return Err(CollectError::Command {
            command: format!("-p {pid}"),
            why: "no such process".into(),
        });
    }
    // The kernel lets perf attach only where ptrace could (same user in real, effective
    // and saved uid, or CAP_SYS_PTRACE): say so before perf_event_paranoid comes up.
    const CAP_SYS_PTRACE: u32 = 19;
    let (Some(theirs), Some(ours)) = (crate::util::proc::uids(pid), crate::util::proc::own_uids())
    else {
        return Ok(());
    };
    if !crate::util::proc::has_own_capability(CAP_SYS_PTRACE)
        && theirs.iter().any(|&u| u != ours[1])
    {
        return Err(CollectError::Attach {
            pid,
            why: format!(
                "ptrace refused: it runs as uid {} and you are uid {}; attaching needs the right to ptrace it (the same user, or CAP_SYS_PTRACE). Profile a process of your own, or run hwprof as uid {}",
                theirs[1], ours[1], theirs[1]
            ),
        });
    }
    Ok(())
}

/// Copies `from` into a new private file `to` (never through a link planted there).
fn copy_private(from: &Path, to: &Path) -> bool {
    let Ok(mut src) = std::fs::File::open(from) else {
        return false;
    };
    crate::util::create_private_file(to)
        .is_ok_and(|mut dst| std::io::copy(&mut src, &mut dst).is_ok())
}

fn copy_kallsyms(raw_dir: &Path) {
    // Kernel symbols for finalize on another machine; only meaningful when readable.
    // Reading /proc/kallsyms costs 50-300 ms of kernel time (5 MB generated), longer
    // than a short target runs: a copy is kept per boot and set of loaded modules in
    // the user's cache directory, and later runs copy that (a few ms).
    let p = raw_dir.join("kallsyms");
    let cached = kallsyms_cache_path();
    // A hard link costs nothing (the cached file is only ever replaced by a rename,
    // never written in place); a copy where the cache is on another file system.
    if let Some(c) = cached.as_ref()
        && (std::fs::hard_link(c, &p).is_ok() || copy_private(c, &p))
    {
        return;
    }
    // Copied verbatim, not parsed: procfs has no reader for it.
    if let Ok(k) = std::fs::read("/proc/kallsyms")
        && k.split(|&b| b == b'\n')
            .take(3)
            .any(|l| !l.starts_with(b"0000000000000000"))
    {
        let _ = crate::util::write_private_file(&p, &k);
        if let Some(c) = cached
            && let Some(dir) = c.parent()
            && crate::util::create_private_dir(dir).is_ok()
        {
            // Written aside, then renamed: a concurrent run never copies half a file.
            let tmp = dir.join(format!(".kallsyms.{}", std::process::id()));
            // Created exclusively (0600, never through a link), renamed over the copy.
            let _ = std::fs::remove_file(&tmp);
            if crate::util::write_private_file(&tmp, &k).is_ok()
                && std::fs::rename(&tmp, &c).is_err()
            {
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }
}

/// `$XDG_CACHE_HOME/hwprof/kallsyms-<boot id>-<hash of /proc/modules>` (or under
/// `~/.cache`): valid while the kernel and its loaded modules are the same.
fn kallsyms_cache_path() -> Option<PathBuf> {
    let boot = procfs::sys::kernel::random::boot_id().ok()?;
    // The module list as the kernel prints it (names, sizes, load addresses), hashed
    // whole: procfs's parsed form would drop the addresses. None: no loadable modules.
    let modules = std::fs::read("/proc/modules").unwrap_or_default();
    // FNV-1a of the module list (names, sizes, load addresses).
    let hash = modules.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(
        base.join("hwprof")
            .join(format!("kallsyms-{}-{hash:016x}", boot.trim())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_graph_parsing() {
        assert_eq!(CallGraph::parse("dwarf").unwrap(), CallGraph::Dwarf(8192));
        assert_eq!(
            CallGraph::parse("dwarf,4000").unwrap(),
            CallGraph::Dwarf(4000)
        );
        assert_eq!(CallGraph::parse("fp").unwrap(), CallGraph::Fp);
        assert!(CallGraph::parse("lbr").is_err());
        assert!(CallGraph::parse("dwarf,x").is_err());
    }
}
