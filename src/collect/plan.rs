//! What a collection opens, decided before anything is opened: the events (`-e` or the
//! mode's defaults, with fallbacks and counter-group members), whether kernel samples
//! can be had, whether the open-files limit is enough, whether a Python launch is
//! sampled by its agents alone, and the ring sizes.

use super::{CallGraph, CollectError, CollectOptions, notice};
use crate::events::{self, EventKind, EventSpec, Mode};

/// Whether kernel samples must be excluded (perf_event_paranoid without CAP_PERFMON),
/// with the notices that say so. `agent`: a Python agent link is planned (locks mode
/// then has stacks where threads block without kernel samples).
pub(super) fn exclude_kernel(
    opts: &CollectOptions,
    agent: bool,
    notices: &mut Vec<String>,
) -> bool {
    let exclude_kernel = !super::sys::may_sample_kernel();
    if exclude_kernel {
        notice(
            opts.quiet,
            notices,
            format!(
                "kernel samples excluded (perf_event_paranoid={} and no CAP_PERFMON); user-space profiling is complete",
                super::sys::paranoid_level()
                    .map(|p| p.to_string())
                    .unwrap_or("?".into())
            ),
        );
    }
    if exclude_kernel && opts.mode == Mode::Locks && opts.events.is_empty() && !agent {
        notice(
            opts.quiet,
            notices,
            "locks mode without the agent (--python off, or attached with -p): off-CPU intervals come from switch records, with no stack where the thread blocked; launch the program with hwprof (agent on) for stacks, or run with kernel.perf_event_paranoid=1 or CAP_PERFMON".into(),
        );
    }
    exclude_kernel
}

/// Events to open: -e names, or the mode's defaults (with their fallbacks).
pub(super) fn requested_events(
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
pub(super) fn waker_event(quiet: bool, notices: &mut Vec<String>) -> Option<ChosenEventRequest> {
    let spec = events::resolve(events::WAKER_EVENT)
        .map_err(|e| e.to_string())
        .and_then(|s| events::list::probe(&s).map(|()| s));
    let spec = match spec {
        Ok(s) => s,
        Err(why) => {
            // The cause and its fix (tracefs not mounted, paranoid) are in `why`.
            notice(
                quiet,
                notices,
                format!("locks: waits are shown without their waker: {why}"),
            );
            return None;
        }
    };
    Some(ChosenEventRequest {
        requested: events::WAKER_EVENT.to_string(),
        spec,
        fallback: None,
        members: Vec::new(),
        group_on_fallback: false,
    })
}

/// An event to open, as planned: what was asked for, its spec, its replacement.
pub(super) struct ChosenEventRequest {
    /// As requested (`-e` argument or the mode's default name).
    pub(super) requested: String,
    /// The event.
    pub(super) spec: EventSpec,
    /// Its software replacement when the machine lacks it.
    pub(super) fallback: Option<EventSpec>,
    /// Counter-group members read with each sample: (as requested, spec).
    pub(super) members: Vec<(String, EventSpec)>,
    /// Keep the group when the leader falls back to its software replacement (a
    /// user's group: yes; hotspots' default hardware group: no).
    pub(super) group_on_fallback: bool,
}

/// Raise the open-files limit and say whether it is still short of what this collection
/// may need: every event is an fd per CPU (per thread when attached), and each Python
/// process's agent hands over one per CPU. Called after the fork: the target keeps its
/// own limit.
pub(super) fn fd_limit_short(
    wanted: &[ChosenEventRequest],
    cpus: usize,
    threads: usize,
    agent: bool,
    quiet: bool,
    notices: &mut Vec<String>,
) -> bool {
    let members: usize = wanted.iter().map(|g| 1 + g.members.len()).sum::<usize>() + 1;
    let processes = if agent { 64 } else { 1 };
    let need = (cpus * (members * threads.max(1) + processes) + 64) as u64;
    let (soft, hard) = super::sys::raise_nofile_limit();
    if soft < need {
        // Agents that cannot connect (EMFILE on accept) sample nothing: when they
        // would be the only samplers, hwprof keeps sampling with its own events.
        let fallback = if agent {
            "; hwprof samples with its own events too, so that processes whose agent cannot connect keep their (native) samples"
        } else {
            ""
        };
        notice(
            quiet,
            notices,
            format!(
                "open-files limit {soft} (hard limit {hard}) is below the ~{need} this collection may need ({cpus} CPUs x events x processes): events or Python processes may go unsampled; raise it (ulimit -Hn, /etc/security/limits.conf){fallback}"
            ),
        );
    }
    soft < need
}

/// Whether a Python launch is sampled by the agents alone (each process of the tree
/// opens the sampling event on itself, with SIGTRAP when it is Python): sampling it
/// twice, by our inherited events too, cost ~5% of its run time. Our events then only
/// track (mmap, comm, task). A counter group (PMU machines) keeps our sampling events:
/// its members are read with the samples we take.
pub(super) fn agents_sample(
    opts: &CollectOptions,
    link: Option<&crate::python::AgentLink>,
    wanted: &[ChosenEventRequest],
    fds_short: bool,
    has_sigtrap_events: bool,
) -> bool {
    link.is_some_and(|l| l.method() == crate::python::LaunchMethod::Agent && l.python_program())
        && opts.mode == Mode::Hotspots
        && wanted.len() == 1
        && wanted[0].members.is_empty()
        && std::env::var_os("HWPROF_COLLECTOR_SAMPLES").is_none()
        // Too few fds for every agent to connect: ours keep sampling.
        && !fds_short
        // Older kernels: the agents could not sample; ours must.
        && has_sigtrap_events
}

/// Pages of each per-CPU ring of the collector's events.
pub(super) fn ring_pages(call_graph: CallGraph) -> usize {
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

/// Pages of each agent's ring. When the agents are the only samplers, their rings carry
/// every sample (ours only mmap/comm/task records). Memory mode: an agent samples its
/// Python process's faults (the collector's samples of it are dropped at finalize from
/// the agent's first capture on, so each fault counts once); fault storms need the big
/// rings too.
pub(super) fn agent_ring_pages(opts: &CollectOptions, agents_sample: bool) -> usize {
    if agents_sample || opts.mode == Mode::Memory {
        (ring_pages(opts.call_graph) / 2).next_power_of_two().max(4)
    } else if opts.mode == Mode::Locks {
        // Each marked wait is a sample with a stack copy (8 KiB by default): 16 pages
        // held 7, and a collector kept off the CPU ~60 ms at a time (a loaded machine)
        // lost some, once a test's only sleep. An eighth of our own ring per CPU:
        // an ordinary user's 64 pages hold ~30, root's 128 twice that.
        (ring_pages(opts.call_graph) / 8)
            .next_power_of_two()
            .max(16)
    } else {
        16
    }
}
