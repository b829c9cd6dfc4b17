//! Locks mode's views over the waits table: `--view waits` (per function, inclusive,
//! with the class and object of its waits) and `--view objects` (per sync object).
//! Columns in `docs/locks.md`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

use super::ReportFormat;
use super::table::{counted, csv_line, human, pct, round2};
use crate::profile::stacks::{StackFilter, apply_frames_filter};
use crate::profile::{Profile, WaitClass, WaitKey, WaitRow};

/// Waits of one function or one object, summed.
#[derive(Default)]
struct Tally {
    wait_ns: u64,
    count: u64,
    max_ns: u64,
    threads: HashSet<usize>,
    /// Wait time per (class, object): the dominant one names the row.
    by_kind: HashMap<(WaitClass, Option<String>), u64>,
    /// Root: wait time per waker (its program frame): the dominant one is shown.
    wakers: HashMap<String, u64>,
}

impl Tally {
    fn add(&mut self, w: &WaitRow) {
        self.wait_ns += w.wait_ns;
        self.count += w.count;
        self.max_ns = self.max_ns.max(w.max_ns);
        self.threads.insert(w.key.thread);
        *(self.by_kind)
            .entry((w.key.class, w.key.object.clone()))
            .or_default() += w.wait_ns;
    }

    fn add_wakers(&mut self, wakers: Option<&Vec<(String, u64)>>) {
        for (label, ns) in wakers.into_iter().flatten() {
            *self.wakers.entry(label.clone()).or_default() += ns;
        }
    }

    /// The waker that ended most of the wait time (None: no waker known).
    fn waker(&self) -> Option<String> {
        self.wakers
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(l, _)| l.clone())
    }

    /// The class with the most wait time, and its object with the most wait time.
    fn dominant(&self) -> (WaitClass, Option<String>) {
        let mut per_class: BTreeMap<WaitClass, u64> = BTreeMap::new();
        for ((c, _), v) in &self.by_kind {
            *per_class.entry(*c).or_default() += v;
        }
        let class = per_class
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(c, _)| *c)
            .unwrap_or(WaitClass::Other);
        let object = self
            .by_kind
            .iter()
            .filter(|((c, o), _)| *c == class && o.is_some())
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.1.cmp(&a.0.1)))
            .and_then(|((_, o), _)| o.clone());
        (class, object)
    }
}

/// Root: per waits row, its wakers (`function file:line` of the waker's program frame,
/// per `--frames`) with the wait time each ended.
fn wakers_by_row(p: &Profile, filter: StackFilter) -> HashMap<&WaitKey, Vec<(String, u64)>> {
    let mut out: HashMap<&WaitKey, Vec<(String, u64)>> = HashMap::new();
    for k in &p.wakers {
        let frames = apply_frames_filter(p, p.stack_frames(k.waker), filter.frames);
        let Some(&leaf) = frames.last() else { continue };
        out.entry(&k.key)
            .or_default()
            .push((frame_label(p, leaf), k.wait_ns));
    }
    out
}

/// `  woken by WAKER` after a text row, or "".
fn woken_note(waker: Option<&str>) -> String {
    waker.map(|w| format!("  woken by {w}")).unwrap_or_default()
}

/// `function file:line` of a frame (`function (module)` without a file).
fn frame_label(p: &Profile, f: usize) -> String {
    let fr = &p.frames[f];
    let func = &p.functions[fr.function];
    match (fr.file.as_deref().or(func.file.as_deref()), fr.line) {
        (Some(file), Some(l)) => format!("{} {file}:{l}", func.name),
        (Some(file), None) => format!("{} {file}", func.name),
        _ => format!("{} ({})", func.name, func.module),
    }
}

fn finish(format: ReportFormat, text: String, csv: String, total: u64, rows: Vec<Value>) -> String {
    match format {
        ReportFormat::Text => text,
        ReportFormat::Csv => csv,
        ReportFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&json!({"metric": "ns", "total": total, "rows": rows}))
                .unwrap_or_default()
        ),
    }
}

/// `--view waits`: `function,module,file,line,class,object,wait_ns,wait_pct,count,
/// max_ns,threads`, one row per function; wait_ns is inclusive (every wait whose stack
/// passes through the function); class and object are those with the most of its wait
/// time; max_ns the longest single wait; threads the threads that waited there.
pub fn waits(p: &Profile, format: ReportFormat, top: usize, filter: StackFilter) -> String {
    let waits = p.weighted_waits(filter);
    let total: u64 = waits.iter().map(|(_, w)| w.wait_ns).sum();
    let wakers = wakers_by_row(p, filter);
    let mut acc: HashMap<usize, Tally> = HashMap::new();
    for (frames, w) in &waits {
        let mut seen = HashSet::new();
        let ws = wakers.get(&w.key);
        for &f in frames {
            let fi = p.frames[f].function;
            if seen.insert(fi) {
                let t = acc.entry(fi).or_default();
                t.add(w);
                t.add_wakers(ws);
            }
        }
    }
    let mut rows: Vec<(usize, Tally)> = acc.into_iter().collect();
    rows.sort_by(|a, b| {
        b.1.wait_ns
            .cmp(&a.1.wait_ns)
            .then_with(|| p.functions[a.0].name.cmp(&p.functions[b.0].name))
            // Same name in two modules: the table's order, so that output is stable.
            .then(a.0.cmp(&b.0))
    });
    rows.truncate(top);
    let mut csv = csv_line(&[
        "function", "module", "file", "line", "class", "object", "wait_ns", "wait_pct", "count",
        "max_ns", "threads",
    ]);
    let mut text = format!(
        "Waits (off-CPU time, inclusive; total {})\n{:>10} {:>7} {:>7} {:>10} {:>7}  {:<10} {:<16}  function (module) file:line\n",
        human(total, "ns"),
        "wait",
        "wait%",
        "count",
        "max",
        "threads",
        "class",
        "object",
    );
    let mut js = Vec::new();
    for (fi, t) in rows {
        let f = &p.functions[fi];
        let (class, object) = t.dominant();
        let file = f.file.clone().unwrap_or_default();
        let line = f.start_line.map(|l| l.to_string()).unwrap_or_default();
        csv.push_str(&csv_line(&[
            f.name.clone(),
            f.module.clone(),
            file.clone(),
            line.clone(),
            class.as_str().into(),
            object.clone().unwrap_or_default(),
            t.wait_ns.to_string(),
            format!("{:.2}", pct(t.wait_ns, total)),
            t.count.to_string(),
            t.max_ns.to_string(),
            t.threads.len().to_string(),
        ]));
        let loc = match (file.is_empty(), f.start_line) {
            (false, Some(l)) => format!(" {file}:{l}"),
            (false, None) => format!(" {file}"),
            _ => String::new(),
        };
        let waker = t.waker();
        let woken = woken_note(waker.as_deref());
        text.push_str(&format!(
            "{:>10} {:>6.2}% {:>7} {:>10} {:>7}  {:<10} {:<16}  {} ({}){loc}{woken}\n",
            human(t.wait_ns, "ns"),
            pct(t.wait_ns, total),
            t.count,
            human(t.max_ns, "ns"),
            t.threads.len(),
            class.as_str(),
            object.as_deref().unwrap_or("-"),
            f.name,
            f.module,
        ));
        js.push(json!({"function": f.name, "module": f.module, "file": file,
            "line": f.start_line, "class": class.as_str(), "object": object,
            "wait_ns": t.wait_ns, "wait_pct": round2(pct(t.wait_ns, total)),
            "count": t.count, "max_ns": t.max_ns, "threads": t.threads.len(),
            "waker": waker}));
    }
    finish(format, text, csv, total, js)
}

/// `--view objects`: `object,class,site,wait_ns,wait_pct,waiters,count,max_ns`, one row
/// per sync object the waits name (a mutex's address, a file descriptor, `GIL`, an MPI
/// function); site is the program's frame (`function file:line`, per `--frames`) with
/// the most wait time on the object; waiters the threads that waited on it; wait_pct
/// of all wait time.
pub fn objects(p: &Profile, format: ReportFormat, top: usize, filter: StackFilter) -> String {
    let waits = p.weighted_waits(filter);
    let total: u64 = waits.iter().map(|(_, w)| w.wait_ns).sum();
    let wakers = wakers_by_row(p, filter);
    let mut acc: HashMap<(String, WaitClass), (Tally, HashMap<usize, u64>)> = HashMap::new();
    for (frames, w) in &waits {
        let Some(object) = &w.key.object else {
            continue;
        };
        let e = acc.entry((object.clone(), w.key.class)).or_default();
        e.0.add(w);
        e.0.add_wakers(wakers.get(&w.key));
        if let Some(&leaf) = frames.last() {
            *e.1.entry(leaf).or_default() += w.wait_ns;
        }
    }
    let site = |sites: &HashMap<usize, u64>| {
        let Some((&f, _)) = sites.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))) else {
            return String::new();
        };
        frame_label(p, f)
    };
    let mut rows: Vec<_> = acc.into_iter().collect();
    rows.sort_by(|a, b| b.1.0.wait_ns.cmp(&a.1.0.wait_ns).then(a.0.cmp(&b.0)));
    rows.truncate(top);
    let mut csv = csv_line(&[
        "object", "class", "site", "wait_ns", "wait_pct", "waiters", "count", "max_ns",
    ]);
    let mut text = format!(
        "Sync objects by wait time (total {} of all waits)\n{:>10} {:>7} {:>7} {:>7} {:>10}  {:<10} {:<18}  site\n",
        human(total, "ns"),
        "wait",
        "wait%",
        "waiters",
        "count",
        "max",
        "class",
        "object",
    );
    let mut js = Vec::new();
    for ((object, class), (t, sites)) in rows {
        let site = site(&sites);
        let waker = t.waker();
        let woken = woken_note(waker.as_deref());
        csv.push_str(&csv_line(&[
            object.clone(),
            class.as_str().into(),
            site.clone(),
            t.wait_ns.to_string(),
            format!("{:.2}", pct(t.wait_ns, total)),
            t.threads.len().to_string(),
            t.count.to_string(),
            t.max_ns.to_string(),
        ]));
        text.push_str(&format!(
            "{:>10} {:>6.2}% {:>7} {:>7} {:>10}  {:<10} {:<18}  {site}{woken}\n",
            human(t.wait_ns, "ns"),
            pct(t.wait_ns, total),
            t.threads.len(),
            t.count,
            human(t.max_ns, "ns"),
            class.as_str(),
            object,
        ));
        js.push(
            json!({"object": object, "class": class.as_str(), "site": site,
            "wait_ns": t.wait_ns, "wait_pct": round2(pct(t.wait_ns, total)),
            "waiters": t.threads.len(), "count": t.count, "max_ns": t.max_ns,
            "waker": waker}),
        );
    }
    finish(format, text, csv, total, js)
}

/// Wait time per class, largest first (the summary's `waits by class` line).
pub fn by_class(p: &Profile, filter: StackFilter) -> Vec<(WaitClass, u64)> {
    let mut acc: BTreeMap<WaitClass, u64> = BTreeMap::new();
    for (_, w) in p.weighted_waits(filter) {
        *acc.entry(w.key.class).or_default() += w.wait_ns;
    }
    let mut v: Vec<_> = acc.into_iter().filter(|(_, ns)| *ns > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// The MPI library's own service threads ([`Profile::mpi_service_threads`]) that pass
/// the rank filter, and their wait time: (threads, ns). Views leave them out unless
/// `--mpi-threads`; the summary says what was left out.
pub fn mpi_service(p: &Profile, filter: StackFilter) -> (usize, u64) {
    // Straight over the waits table: only threads and times are needed, not the
    // filtered frames of every wait.
    let mut threads = HashSet::new();
    let mut ns = 0u64;
    for w in p.waits.iter().filter(|w| {
        p.mpi_service_threads.contains(&w.key.thread)
            && (!filter.has_rank_filter() || filter.selects_rank(p.thread_rank(w.key.thread)))
    }) {
        threads.insert(w.key.thread);
        ns = ns.saturating_add(w.wait_ns);
    }
    (threads.len(), ns)
}

/// The words for [`mpi_service`] beside the `mpi` class (summary, HTML), when there is
/// any: with `--mpi-threads` how much of the class is theirs, else what was set apart.
pub fn mpi_service_note(p: &Profile, filter: StackFilter) -> Option<String> {
    service_note(mpi_service(p, filter), filter.mpi_threads)
}

/// [`mpi_service_note`] of figures already taken: (threads, ns), and whether they are
/// counted (`--mpi-threads`).
pub fn service_note((threads, ns): (usize, u64), counted_in: bool) -> Option<String> {
    (ns > 0).then(|| {
        if counted_in {
            format!(
                "of it {} in the MPI library's own threads, which wait by design",
                human(ns, "ns")
            )
        } else {
            format!(
                "not counted: {} in {} of the MPI library's own, which wait by design (--mpi-threads counts them)",
                human(ns, "ns"),
                counted(threads, "thread", "threads")
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::stacks::FramesFilter;
    use crate::profile::{Frame, FrameKind, Function, Process, ProfileWriter, Thread};

    /// `work` waits 300 ms on mutex 0x1000 (two threads, longest 200 ms) and sleeps
    /// 100 ms; every stack ends in libc and the kernel.
    fn designed() -> Profile {
        designed_writer().profile
    }

    /// [`designed`] with the writer, to add to it.
    fn designed_writer() -> ProfileWriter {
        let mut w = ProfileWriter::default();
        w.profile.meta.insert("mode".into(), "locks".into());
        w.profile.meta.insert("metric".into(), "ns".into());
        w.profile.processes.push(Process {
            pid: 1,
            ..Default::default()
        });
        for tid in [1, 2] {
            w.profile.threads.push(Thread {
                process: 0,
                tid,
                name: "t".into(),
            });
        }
        let mut frame = |name: &str, module: &str, kind: FrameKind| {
            let function = w.function(Function {
                name: name.into(),
                module: module.into(),
                file: Some("app.c".into()),
                start_line: Some(1),
                kind,
            });
            w.frame(Frame {
                function,
                file: Some("app.c".into()),
                line: Some(7),
            })
        };
        let main = frame("main", "app", FrameKind::Native);
        let work = frame("work", "app", FrameKind::Native);
        let lock = frame("__lll_lock_wait", "libc.so.6", FrameKind::Native);
        let sleep = frame("clock_nanosleep", "libc.so.6", FrameKind::Native);
        let schedule = frame("schedule", "[kernel]", FrameKind::Kernel);
        let s_lock = w.stack(&[main, work, lock, schedule]);
        let s_sleep = w.stack(&[main, work, sleep, schedule]);
        for (stack, thread, ns) in [(s_lock, 0, 200), (s_lock, 1, 100)] {
            w.add_sample(stack, thread, 0, 1, ns * 1_000_000);
            w.add_wait(
                stack,
                thread,
                WaitClass::Lock,
                Some("0x1000"),
                ns * 1_000_000,
            );
        }
        w.add_sample(s_sleep, 0, 0, 1, 100_000_000);
        w.add_wait(s_sleep, 0, WaitClass::Sleep, None, 100_000_000);
        w
    }

    fn rows(csv: &str) -> Vec<Vec<String>> {
        csv.lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    }

    /// All of the profile, these frames.
    fn only(frames: FramesFilter) -> StackFilter {
        StackFilter {
            frames,
            ..Default::default()
        }
    }

    #[test]
    fn waits_view_names_the_dominant_class_and_object() {
        let p = designed();
        let csv = waits(&p, ReportFormat::Csv, 10, only(FramesFilter::Program));
        let r = rows(&csv);
        let work = r.iter().find(|r| r[0] == "work").unwrap();
        assert_eq!(
            work[4..],
            [
                "lock",
                "0x1000",
                "400000000",
                "100.00",
                "3",
                "200000000",
                "2"
            ],
            "{csv}"
        );
        // The program's frames: no libc or kernel rows.
        assert!(
            !csv.contains("schedule") && !csv.contains("__lll_lock_wait"),
            "{csv}"
        );
        let all = waits(&p, ReportFormat::Csv, 10, only(FramesFilter::All));
        assert!(all.contains("schedule") && all.contains("__lll_lock_wait"));
    }

    #[test]
    fn objects_view_has_waiters_and_the_site() {
        let p = designed();
        let csv = objects(&p, ReportFormat::Csv, 10, only(FramesFilter::Program));
        assert_eq!(
            rows(&csv),
            [[
                "0x1000",
                "lock",
                "work app.c:7",
                "300000000",
                "75.00",
                "2",
                "2",
                "200000000"
            ]],
            "{csv}"
        );
        assert_eq!(
            by_class(&p, only(FramesFilter::Program)),
            [
                (WaitClass::Lock, 300_000_000),
                (WaitClass::Sleep, 100_000_000)
            ]
        );
    }

    /// A thread of the MPI library's own (not the process's main thread, waiting in MPI
    /// with no frame of the program) is set apart from every figure unless
    /// `--mpi-threads`; a thread that waits in MPI from the program's code is not.
    #[test]
    fn the_mpi_librarys_own_threads_are_set_apart() {
        let mut w = designed_writer();
        let mut frame = |name: &str, module: &str| {
            let function = w.function(Function {
                name: name.into(),
                module: module.into(),
                file: None,
                start_line: None,
                kind: FrameKind::Native,
            });
            w.frame(Frame {
                function,
                file: None,
                line: None,
            })
        };
        let (start, lib_loop, epoll) = (
            frame("start_thread", "libc.so.6"),
            frame("event_base_loop", "libevent_core-2.1.so.7"),
            frame("epoll_wait", "libc.so.6"),
        );
        let (solve, barrier) = (frame("solve", "app"), frame("PMPI_Barrier", "libmpi.so.40"));
        let service = w.stack(&[start, lib_loop, epoll]);
        let programs = w.stack(&[start, solve, barrier]);
        for (tid, stack, ns) in [(3, service, 900), (4, programs, 50)] {
            w.profile.threads.push(Thread {
                process: 0,
                tid,
                name: "t".into(),
            });
            let thread = w.profile.threads.len() - 1;
            w.add_sample(stack, thread, 0, 1, ns * 1_000_000);
            w.add_wait(stack, thread, WaitClass::Mpi, None, ns * 1_000_000);
        }
        let mut p = w.profile.clone();
        p.mpi_service_threads = p.find_mpi_service_threads();
        assert_eq!(p.mpi_service_threads, HashSet::from([2]));
        let program = only(FramesFilter::Program);
        assert_eq!(mpi_service(&p, program), (1, 900_000_000));
        assert_eq!(
            by_class(&p, program),
            [
                (WaitClass::Lock, 300_000_000),
                (WaitClass::Sleep, 100_000_000),
                (WaitClass::Mpi, 50_000_000)
            ]
        );
        let csv = waits(&p, ReportFormat::Csv, 10, program);
        assert!(
            csv.contains("solve") && !csv.contains("event_base_loop"),
            "{csv}"
        );
        let counted = StackFilter {
            mpi_threads: true,
            ..program
        };
        assert_eq!(by_class(&p, counted)[0], (WaitClass::Mpi, 950_000_000));
        let csv = waits(&p, ReportFormat::Csv, 10, counted);
        assert!(csv.contains("event_base_loop"), "{csv}");
        assert!(
            mpi_service_note(&p, program).is_some_and(|n| n.contains("--mpi-threads"))
                && mpi_service_note(&p, counted).is_some_and(|n| n.starts_with("of it 900.0ms")),
            "{:?}",
            mpi_service_note(&p, counted)
        );
    }
}
