//! `--view summary`: totals, events, duration, top functions, and the lines of what the
//! run lacks or did (counter groups, MPI notices, waits by class, who sampled which
//! process).

use std::collections::HashSet;

use serde_json::{Value, json};

use super::ReportFormat;
use super::table::{counted, csv_line, format_rows, function_rows, human, pct, round2};
use crate::profile::stacks::StackFilter;
use crate::profile::{ProcessRole, Profile, WaitClass};

/// Peak of the summed RSS of all processes, and when.
pub fn peak_rss(p: &Profile) -> Option<(u64, u64)> {
    // Summed over live processes at each instant (an exited process no longer counts).
    super::memory::peak_rss(p)
}

/// The summary's counter-group line: totals per event and whether multiplexed.
fn group_summary_line(g: &Value) -> String {
    let totals: Vec<String> = g["totals"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k} {}", v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let multiplexed = match g["multiplexed_samples"].as_u64().unwrap_or(0) {
        0 => "not multiplexed".to_string(),
        n => format!("multiplexed: counts of {n} samples scaled by time_enabled/time_running"),
    };
    format!(
        "  counter group read with {} samples: {}; {multiplexed}\n",
        g["samples_with_read"].as_u64().unwrap_or(0),
        totals.join(", ")
    )
}

/// The summary's lines for the notices of an MPI job: each distinct notice once, with
/// the ranks it applies to (from every rank's own manifest, `rank_notices` meta).
fn rank_notices_text(p: &Profile) -> String {
    let Ok(Value::Array(list)) = serde_json::from_str::<Value>(p.meta_str("rank_notices")) else {
        return String::new();
    };
    // An event's note that every rank gave is on its `event:` line already.
    let events: Value = serde_json::from_str(p.meta_str("events")).unwrap_or_default();
    let event_note = |notice: &str| {
        events
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["note"].as_str() == Some(notice)))
    };
    list.iter()
        .filter(|n| !(n["count"] == n["of"] && event_note(n["notice"].as_str().unwrap_or(""))))
        .map(|n| {
            format!(
                "  notice ({} of {} ranks{}): {}\n",
                n["count"].as_u64().unwrap_or(0),
                n["of"].as_u64().unwrap_or(0),
                if n["figures_vary"].as_bool() == Some(true) {
                    "; figures of the lowest rank"
                } else {
                    ""
                },
                n["notice"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Samples, processes and threads of one role (program or launcher), for a rank or all.
struct Tally {
    samples: u64,
    value: u64,
    /// Distinct (raw dir, pid): a pid whose image exec'd counts once per role.
    processes: usize,
    threads: usize,
    /// Distinct process names, sorted.
    names: Vec<String>,
    /// Every process of the role, sampled or not: a launcher's helpers often end
    /// before a sample (1-3 ms each), and a shell that only forks and waits takes none.
    seen: usize,
    /// Their distinct names, in the order they started (the outermost launcher first).
    seen_names: Vec<String>,
}

impl Tally {
    fn of(p: &Profile, rank: Option<u32>, role: ProcessRole) -> Tally {
        let wanted = |pi: usize| {
            p.processes
                .get(pi)
                .is_some_and(|x| x.role == role && (rank.is_none() || x.rank == rank))
        };
        let (mut samples, mut value) = (0, 0);
        let mut threads = HashSet::new();
        for s in &p.samples {
            if let Some(t) = p.threads.get(s.thread)
                && wanted(t.process)
            {
                samples += s.count;
                value += s.value;
                threads.insert(s.thread);
            }
        }
        let mut procs = HashSet::new();
        let mut names = std::collections::BTreeSet::new();
        for (ti, t) in p.threads.iter().enumerate() {
            // Program: every process with a thread; launchers: those that took samples.
            if wanted(t.process) && (role == ProcessRole::Program || threads.contains(&ti)) {
                let x = &p.processes[t.process];
                procs.insert((x.raw_dir.as_str(), x.pid));
                names.insert(x.command.clone());
            }
        }
        let mut seen = HashSet::new();
        let (mut seen_names, mut named) = (Vec::new(), HashSet::new());
        for (pi, x) in p.processes.iter().enumerate() {
            if wanted(pi) {
                seen.insert((x.raw_dir.as_str(), x.pid));
                if named.insert(x.command.as_str()) {
                    seen_names.push(x.command.clone());
                }
            }
        }
        let threads = match role {
            ProcessRole::Program => p.threads.iter().filter(|t| wanted(t.process)).count(),
            ProcessRole::Launcher => threads.len(),
        };
        Tally {
            samples,
            value,
            processes: procs.len(),
            threads,
            names: names.into_iter().collect(),
            seen: seen.len(),
            seen_names,
        }
    }
}

/// The first `max` names, then how many more.
fn names_upto(names: &[String], max: usize) -> String {
    let mut s = names[..names.len().min(max)].join(", ");
    if names.len() > max {
        s.push_str(&format!(" and {} more", names.len() - max));
    }
    s
}

/// `--view summary`.
pub fn summary(p: &Profile, format: ReportFormat, top: usize, filter: StackFilter) -> String {
    let stacks = p.weighted_stacks(filter);
    let rows = function_rows(p, &stacks);
    let total: u64 = stacks.iter().map(|s| s.value).sum();
    let num = |k: &str| p.meta_str(k).parse::<u64>().unwrap_or(0);
    let events: Value = serde_json::from_str(p.meta_str("events")).unwrap_or(json!([]));
    let ranks = crate::options::ranks_present(p);
    let shown = Tally::of(p, filter.rank, ProcessRole::Program);
    let launcher = Tally::of(p, filter.rank, ProcessRole::Launcher);
    match format {
        ReportFormat::Json | ReportFormat::Csv => {
            let mut v = json!({
                "mode": p.meta_str("mode"),
                "metric": p.metric(),
                "total": total,
                "samples": num("samples"),
                "lost_samples": num("lost_samples"),
                "unwind_truncated": num("unwind_truncated"),
                "python_stacks_cut": num("python_stacks_cut"),
                "duration_s": p.meta_str("duration_s").parse::<f64>().unwrap_or(0.0),
                "events": events,
                "ranks": ranks,
                "processes": shown.processes,
                "threads": shown.threads,
                "program_samples": shown.samples,
                "launcher_samples": launcher.samples,
                "launcher_value": launcher.value,
                "launcher_processes": launcher.processes,
                "launcher_names": launcher.names,
                "launcher_processes_seen": launcher.seen,
                "without_symbols": without_symbols(&rows, total)
                    .into_iter()
                    .map(|(m, share)| json!({"module": m, "self_pct": round2(share)}))
                    .collect::<Vec<_>>(),
                "launcher_names_seen": launcher.seen_names,
                "python": p.meta_str("python"),
                "command": p.meta_str("command"),
                "top": rows.iter().take(top).map(|r| json!({"function": r.function, "module": r.module,
                    "self": r.self_value, "self_pct": round2(pct(r.self_value, total)),
                    "total": r.total_value, "total_pct": round2(pct(r.total_value, total))})).collect::<Vec<_>>(),
            });
            if p.meta_str("mode") == "memory" {
                v["peak_rss_bytes"] = json!(peak_rss(p).map(|x| x.0));
            }
            for key in crate::profile::STACK_CUT_KEYS {
                v[key] = json!(num(key));
            }
            v[crate::profile::STACK_CUT_BASE_KEY] = json!(stack_cut_base(p));
            for key in [
                crate::profile::AGENT_OWN_SAMPLES_KEY,
                crate::profile::AGENT_OWN_VALUE_KEY,
            ] {
                v[key] = json!(num(key));
            }
            // A run cut short (docs/security.md "Crash consistency"): why.
            v["complete"] = json!(p.meta_str("incomplete").is_empty());
            if !p.meta_str("incomplete").is_empty() {
                v["incomplete"] = json!(p.meta_str("incomplete"));
            }
            // How Python stacks were joined: captures, samples left without a Python
            // stack, and native/Python merges that failed (both halves kept).
            for k in [
                "python_agent_samples",
                "python_agent_samples_with_capture",
                "python_samples_joined",
                "python_samples_without_stack",
                "python_merge_failures",
            ] {
                if let Ok(n) = p.meta_str(k).parse::<u64>() {
                    v[k] = json!(n);
                }
            }
            if let Ok(s) = serde_json::from_str::<Value>(p.meta_str("python_summary")) {
                v["python_summary"] = s;
            }
            if let Ok(s) = serde_json::from_str::<Value>(p.meta_str("python_without_stack")) {
                v["python_without_stack"] = s;
            }
            // How each process was sampled: by its agent, by the collector, not at all.
            if let Ok(s) = serde_json::from_str::<Value>(p.meta_str("sampled_by")) {
                v["sampled_by"] = s;
            }
            if let Ok(w) = serde_json::from_str::<Value>(p.meta_str("warnings")) {
                v["warnings"] = w;
            }
            // Locks mode: wait time per class (docs/locks.md).
            if p.meta_str("mode") == "locks" {
                let classes: serde_json::Map<String, Value> = super::waits::by_class(p, filter)
                    .into_iter()
                    .map(|(c, ns)| (c.as_str().to_string(), json!(ns)))
                    .collect();
                v["waits_by_class"] = Value::Object(classes);
                let (threads, ns) = super::waits::mpi_service(p, filter);
                v["mpi_service_threads"] = json!(threads);
                v["mpi_service_threads_ns"] = json!(ns);
                v["mpi_service_threads_counted"] = json!(filter.mpi_threads);
            }
            // Counter group read with the samples: totals per event, multiplexing.
            if let Ok(g) = serde_json::from_str::<Value>(p.meta_str("group")) {
                v["group"] = g;
            }
            // MPI: POP efficiencies, and every rank's notices with the ranks they apply to.
            if let Some(pop) = super::pop::pop_json(p, filter) {
                v["pop"] = pop;
            }
            if let Ok(n) = serde_json::from_str::<Value>(p.meta_str("rank_notices")) {
                v["rank_notices"] = n;
            }
            if format == ReportFormat::Csv {
                let mut s = csv_line(&["key", "value"]);
                if let Some(o) = v.as_object() {
                    for (k, x) in o {
                        if k != "top" && k != "events" {
                            s.push_str(&csv_line(&[
                                k.clone(),
                                x.to_string().trim_matches('"').to_string(),
                            ]));
                        }
                    }
                }
                return s;
            }
            format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        ReportFormat::Text => {
            let mut s = format!(
                "hwprof {} profile: {} — {} over {} s, {}, {}\n",
                p.meta_str("mode"),
                p.meta_str("command"),
                counted(shown.samples as usize, "sample", "samples"),
                p.meta_str("duration_s"),
                counted(shown.processes, "process", "processes"),
                counted(shown.threads, "thread", "threads")
            );
            if let Some(r) = filter.rank {
                s.push_str(&format!(
                    "  rank {r} alone: {} of the job's {} samples\n",
                    shown.samples,
                    num("samples")
                ));
            }
            if launcher.seen > 0 {
                s.push_str(&format!(
                    "  launcher overhead: {} in {} of {} ({}), not in the percentages below\n",
                    counted(launcher.samples as usize, "sample", "samples"),
                    launcher.processes,
                    counted(launcher.seen, "launcher process", "launcher processes"),
                    names_upto(&launcher.seen_names, 12)
                ));
            }
            s.push_str(&agent_own_line(p));
            if let Some(arr) = events.as_array() {
                for e in arr {
                    let note = e["note"].as_str().unwrap_or("");
                    s.push_str(&format!(
                        "  event: {}{}\n",
                        e["opened"].as_str().unwrap_or("?"),
                        if note.is_empty() {
                            String::new()
                        } else {
                            format!(" ({note})")
                        }
                    ));
                }
            }
            if num("lost_samples") > 0 {
                s.push_str(&lost_samples_line(
                    num("lost_samples"),
                    num("samples"),
                    p.meta_str("mode") == "locks",
                ));
            }
            if let Ok(g) = serde_json::from_str::<Value>(p.meta_str("group")) {
                s.push_str(&group_summary_line(&g));
            }
            if num("python_agent_samples") > 0 {
                s.push_str(&format!(
                    "  python: {} of {} samples with the Python stack of their instant; {} merges failed (both halves kept)\n",
                    num("python_samples_joined"),
                    num("python_agent_samples"),
                    num("python_merge_failures")
                ));
            }
            if let Some((line, _)) = remote_python_line(p) {
                s.push_str(&format!("  {line}\n"));
            }
            if let Ok(w) = serde_json::from_str::<Value>(p.meta_str("python_without_stack")) {
                s.push_str(&python_without_stack_line(&w));
            }
            if p.meta_str("mode") == "memory"
                && let Some((b, _)) = peak_rss(p)
            {
                s.push_str(&format!("  peak RSS: {}\n", human(b, "bytes")));
            }
            if p.meta_str("mode") == "locks" {
                s.push_str(&waits_by_class_line(p, filter));
            }
            s.push_str(&super::pop::pop_text(p, filter));
            s.push_str(&rank_notices_text(p));
            s.push_str(&sampled_by_line(p));
            s.push_str(&without_symbols_line(&without_symbols(&rows, total)));
            for line in cut_short_lines(p) {
                s.push_str(&format!("  {line}\n"));
            }
            s.push('\n');
            s.push_str(&format_rows(
                p,
                &rows,
                total,
                ReportFormat::Text,
                top,
                "Top functions",
                &super::table::GroupColumns::default(),
            ));
            s
        }
    }
}

/// "  hwprof's agent: 32.0 KiB faulted in by its own code ...": what finalize left out
/// as the agent's own (its start-up in the processes it was preloaded into, in case one
/// runs Python), when anything.
fn agent_own_line(p: &Profile) -> String {
    let num = |k: &str| p.meta_str(k).parse::<u64>().unwrap_or(0);
    let samples = num(crate::profile::AGENT_OWN_SAMPLES_KEY);
    if samples == 0 {
        return String::new();
    }
    let what = match p.metric() {
        "bytes" => format!(
            "{} faulted in by its own code ({})",
            human(num(crate::profile::AGENT_OWN_VALUE_KEY), "bytes"),
            counted(samples as usize, "sample", "samples")
        ),
        _ => format!(
            "{} in its own code",
            counted(samples as usize, "sample", "samples")
        ),
    };
    format!(
        "  hwprof's agent: {what}, its start-up in the processes it was preloaded into (in case one runs Python); not in the profile\n"
    )
}

/// A module's share of self time below which its unnamed functions go unmentioned.
const WITHOUT_SYMBOLS_SHOWN_PCT: f64 = 5.0;

/// Modules much of whose self time is in functions with neither a symbol nor debug
/// info here (a distribution's stripped library: libgomp's barrier spin reads
/// `func@0x1f780`), with their share, largest first.
fn without_symbols(rows: &[super::table::Row], total: u64) -> Vec<(String, f64)> {
    let mut by_module: std::collections::BTreeMap<&str, u64> = Default::default();
    for r in rows {
        let unnamed = r.function.starts_with("func@0x")
            || r.function
                .strip_prefix(r.module.as_str())
                .is_some_and(|rest| rest.starts_with("+0x"));
        if unnamed && !r.module.starts_with('[') && r.module != "python" {
            *by_module.entry(r.module.as_str()).or_default() += r.self_value;
        }
    }
    let mut shown: Vec<(String, f64)> = by_module
        .into_iter()
        .map(|(m, v)| (m.to_string(), pct(v, total)))
        .filter(|(_, share)| *share >= WITHOUT_SYMBOLS_SHOWN_PCT)
        .collect();
    shown.sort_by(|a, b| b.1.total_cmp(&a.1));
    shown
}

/// "  no symbols: 43.5% in libgomp.so.1.0.0 (...); install its debug symbols ...".
pub fn without_symbols_line(modules: &[(String, f64)]) -> String {
    if modules.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = modules
        .iter()
        .map(|(m, share)| format!("{share:.1}% in {m}"))
        .collect();
    let (its, it) = if modules.len() == 1 {
        ("its", "it")
    } else {
        ("their", "them")
    };
    format!(
        "  no symbols: {} ({its} func@0x rows: stripped, no debug info found); install {its} debug symbols (Debian/Ubuntu: the -dbgsym package, Fedora/RHEL: debuginfo-install) and run hwprof finalize again, or give finalize --search-dir a copy of {it} with symbols\n",
        parts.join(", ")
    )
}

/// A share of samples with cut stacks below which they go unmentioned (a few are cut
/// at any program's start and end).
const CUT_SHORT_SHOWN_PCT: f64 = 1.0;

/// The samples the stack-cut counts are of: the program's (profiles written before
/// that was recorded: all samples).
fn stack_cut_base(p: &Profile) -> u64 {
    let key = match p.meta_str(crate::profile::STACK_CUT_BASE_KEY) {
        "" => "samples",
        _ => crate::profile::STACK_CUT_BASE_KEY,
    };
    p.meta_str(key).parse().unwrap_or(0)
}

/// "stacks cut short: 74.5% of samples ...", one line per cause that cut 1% or more of
/// the samples' stacks: they unwound only as far as their user-stack copy went, so their
/// callers miss them (main's total% below 100). Each line says what to do about its
/// cause. The summary, its JSON and the HTML report show them.
pub fn cut_short_lines(p: &Profile) -> Vec<String> {
    let num = |k: &str| p.meta_str(k).parse::<u64>().unwrap_or(0);
    let base = stack_cut_base(p);
    let share = |k: &str| pct(num(k), base);
    let mut lines = Vec::new();
    let [at_size, at_page, at_limit] = crate::profile::STACK_CUT_KEYS.map(share);
    if at_size >= CUT_SHORT_SHOWN_PCT {
        let size = p.meta_str("call_graph").strip_prefix("dwarf,");
        let copy = size.map_or_else(
            || "stack copy".to_string(),
            |n| format!("{n}-byte stack copy"),
        );
        const MAX_STACK_COPY: u32 = crate::events::MAX_STACK_COPY;
        let advice = match size.and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n >= MAX_STACK_COPY => "the copy is already the largest the kernel takes: build with -fno-omit-frame-pointer and collect with --call-graph fp".to_string(),
            Some(n) if n > 0 => format!(
                "collect again with --call-graph dwarf,{MAX_STACK_COPY} to copy up to {:.0} times more",
                MAX_STACK_COPY as f64 / n as f64
            ),
            _ => format!("collect again with --call-graph dwarf,{MAX_STACK_COPY}, the largest copy the kernel takes"),
        };
        lines.push(format!(
            "stacks cut short: {at_size:.1}% of samples unwound only as far as the {copy} reached (a large stack frame, such as a local or automatic array, or deep recursion): their callers miss them, so callers' total% is low; {advice}"
        ));
    }
    if at_page >= CUT_SHORT_SHOWN_PCT {
        lines.push(format!(
            "stacks cut short: {at_page:.1}% of samples unwound only as far as the kernel could copy their stack, which stops at a stack page never touched (inside a large stack frame, such as a local array used in part): their callers miss them, so callers' total% is low; a larger copy does not help: build with -fno-omit-frame-pointer and collect with --call-graph fp"
        ));
    }
    if at_limit >= CUT_SHORT_SHOWN_PCT {
        lines.push(format!(
            "stacks cut short: {at_limit:.1}% of samples had a frame-pointer stack as long as the kernel records ({} frames; deep recursion): their callers miss them, so callers' total% is low; collect with --call-graph dwarf,65528 to unwind deeper",
            crate::raw::MAX_CALLCHAIN_FRAMES
        ));
    }
    let python = share("python_stacks_cut");
    if python >= CUT_SHORT_SHOWN_PCT {
        lines.push(format!(
            "python stacks cut short: {python:.1}% of samples had a Python stack deeper than the {} frames captured (deep recursion): its outermost frames are missing, so their callers' total% is low",
            crate::python::wire::MAX_FRAMES
        ));
    }
    lines
}

/// "  waits by class: lock 340.1ms (24.0%), sleep ..." (locks mode).
fn waits_by_class_line(p: &Profile, filter: StackFilter) -> String {
    let classes = super::waits::by_class(p, filter);
    let total: u64 = classes.iter().map(|c| c.1).sum();
    // With --mpi-threads the MPI library's own threads are in the mpi class: say how
    // much of it is theirs. Without, they are left out: a line says what.
    let (threads, ns) = super::waits::mpi_service(p, filter);
    let service = super::waits::service_note((threads, ns), filter.mpi_threads);
    let parts: Vec<String> = classes
        .iter()
        .map(|(c, ns)| {
            let of_it = match &service {
                Some(note) if *c == WaitClass::Mpi && filter.mpi_threads => format!(", {note}"),
                _ => String::new(),
            };
            format!(
                "{} {} ({:.1}%{of_it})",
                c.as_str(),
                human(*ns, "ns"),
                pct(*ns, total)
            )
        })
        .collect();
    let mut s = String::new();
    if !classes.is_empty() {
        s = format!("  waits by class: {}\n", parts.join(", "));
    }
    if ns > 0 && !filter.mpi_threads {
        s.push_str(&format!(
            "  MPI library's own threads: {} waited {} by design (Open MPI's progress and PMIx threads), not in the figures below; --mpi-threads counts them\n",
            counted(threads, "thread", "threads"),
            human(ns, "ns")
        ));
    }
    s
}

/// "  processes: 3 sampled by their Python agent, 1 by hwprof's own events, ..." for a
/// run with Python; without, "  processes: 4 sampled, 1 too short for a sample, ..."
/// only when there is more than the one program sampled to say. Empty for profiles
/// finalized before this was recorded.
fn sampled_by_line(p: &Profile) -> String {
    let Ok(v) = serde_json::from_str::<Value>(p.meta_str("sampled_by")) else {
        return String::new();
    };
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let not: Vec<&str> = v["not_sampled"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let python = !matches!(p.meta_str("python"), "" | "off") || n("agent") > 0;
    let mut s = if python {
        format!(
            "  processes: {} sampled by their Python agent, {} by hwprof's own events, {} too short for a sample, {} not sampled\n",
            n("agent"),
            n("collector"),
            n("without_samples"),
            not.len()
        )
    } else if n("collector") > 1 || n("without_samples") > 0 || !not.is_empty() {
        format!(
            "  processes: {} sampled, {} too short for a sample, {} not sampled\n",
            n("collector"),
            n("without_samples"),
            not.len()
        )
    } else {
        return String::new();
    };
    for x in not.iter().take(10) {
        s.push_str(&format!("    not sampled: {x}\n"));
    }
    s
}

/// Below this share of samples with a Python stack, the remote line says what to do.
const REMOTE_JOINED_LOW_PCT: f64 = 50.0;

/// `-p` on a Python process (remote reads, no agent): how many samples found a stack read
/// in their period. A read walks the stack from outside, a system call per frame, so a
/// deep stack takes longer to read than a sampling period at 999 Hz (~3.4 ms at 1,000
/// frames); the samples between reads keep only their native frames. The line, and
/// whether the share is low (the line then says what to do).
pub fn remote_python_line(p: &Profile) -> Option<(String, bool)> {
    let summary: Value = serde_json::from_str(p.meta_str("python_summary")).unwrap_or_default();
    let remote_only = summary["method"]
        .as_array()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|m| m == "remote"));
    let num = |k: &str| p.meta_str(k).parse::<u64>().unwrap_or(0);
    let joined = num("python_samples_joined");
    let samples = joined + num("python_samples_without_stack");
    if !remote_only || samples == 0 {
        return None;
    }
    let share = pct(joined, samples);
    let mut line = format!(
        "python: {joined} of {samples} samples ({share:.1}%) with a Python stack read from outside in their sampling period ({} reads)",
        summary["captures"].as_u64().unwrap_or(0)
    );
    let low = share < REMOTE_JOINED_LOW_PCT;
    if low {
        line.push_str(
            "; the others have native frames only: the reads took longer than a period (deep stacks); collect with a lower -F (e.g. -F 99) for a read in every period",
        );
    }
    Some((line, low))
}

/// The summary line that explains, per cause, the agent samples without their Python
/// stack (empty when there are none).
fn python_without_stack_line(w: &Value) -> String {
    let n = |k: &str| w[k].as_u64().unwrap_or(0);
    let causes = [
        ("no_thread_state", "thread without a Python thread state"),
        (
            "no_python_frame",
            "no Python frame running (interpreter start-up/shutdown)",
        ),
        ("signal_late", "SIGTRAP blocked (capture late, not used)"),
        ("read_failed", "frame read failed"),
        ("join_failed", "no capture found (join failed)"),
    ];
    let parts: Vec<String> = causes
        .iter()
        .filter(|(k, _)| n(k) > 0)
        .map(|(k, what)| format!("{} {what}", n(k)))
        .collect();
    let mut s = String::new();
    if !parts.is_empty() {
        s = format!(
            "  python samples without their stack: {}\n",
            parts.join(", ")
        );
    }
    if n("captures_lost") > 0 {
        s.push_str(&format!(
            "  python captures lost (capture ring full): {}\n",
            n("captures_lost")
        ));
    }
    s
}

/// The summary's line on samples the kernel dropped: how many, of how many taken,
/// why, and what to do (the collect-time notice says the same).
fn lost_samples_line(lost: u64, kept: u64, locks: bool) -> String {
    let share = 100.0 * lost as f64 / (lost + kept).max(1) as f64;
    format!(
        "  lost samples: {lost} ({share:.1}% of those taken, not in the figures: the kernel's ring buffers were full before hwprof read them; lower -F, or fewer --call-graph dwarf bytes{})\n",
        if locks {
            "; a wait whose marker sample was lost has no class or line"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The advice of the copy-size cut line fits the copy the run had.
    #[test]
    fn the_copy_size_advice_fits_the_copy() {
        let line = |call_graph: &str| {
            let mut p = Profile::default();
            for (k, v) in [
                ("call_graph", call_graph),
                ("samples", "100"),
                ("stacks_cut_at_copy_size", "30"),
            ] {
                p.meta.insert(k.into(), v.into());
            }
            cut_short_lines(&p).join("\n")
        };
        assert!(line("dwarf,8192").ends_with("dwarf,65528 to copy up to 8 times more"));
        assert!(line("dwarf,1024").ends_with("dwarf,65528 to copy up to 64 times more"));
        assert!(line("dwarf,65528").contains("build with -fno-omit-frame-pointer"));
        assert!(line("dwarf,1024").starts_with("stacks cut short: 30.0% of samples"));
    }

    /// Lost samples are given with their share of those taken, why and what to do; in
    /// locks mode, what a lost marker does to a wait.
    #[test]
    fn lost_samples_say_how_many_why_and_what_to_do() {
        let hotspots = lost_samples_line(25, 75, false);
        assert!(
            hotspots.starts_with("  lost samples: 25 (25.0% of those taken")
                && hotspots.contains("lower -F")
                && !hotspots.contains("marker"),
            "{hotspots}"
        );
        assert!(lost_samples_line(1, 999, true).contains("marker sample was lost"));
    }
}
