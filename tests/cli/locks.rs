//! Locks mode: off-CPU time from switch-out to switch-in, with known sleeps as truth.

use std::process::Command;

use crate::common::*;

/// `--view waits` CSV rows (extra report arguments, e.g. `--frames all`, after).
fn waits_csv(dir: &std::path::Path, extra: &[&str]) -> Vec<csv::StringRecord> {
    let mut args = vec!["--top", "500"];
    args.extend_from_slice(extra);
    let text = report_view(dir, "waits", "csv", &args);
    assert!(
        text.starts_with(
            "function,module,file,line,class,object,wait_ns,wait_pct,count,max_ns,threads\n"
        ),
        "{text}"
    );
    parse_csv(&text)
}

/// The seconds `exits sleep N` took by its own clock (its "slept S" line).
fn slept(out: &std::process::Output) -> f64 {
    let stderr = String::from_utf8_lossy(&out.stderr);
    numbers_after(&stderr, "slept ").expect("exits printed its sleep")[0]
}

fn check_sleep_waits(dir: &std::path::Path, slept_s: f64) {
    let rows = waits_csv(dir, &[]);
    let main = rows.iter().find(|r| &r[0] == "main").expect("main waits");
    // exits sleep 1: ten usleep(100 ms) calls, 1 s or more by its clock.
    within("main's waits", main[6].parse().unwrap(), slept_s, 0.10);
    assert_eq!(&main[4], "sleep", "{main:?}");
    let count: u64 = main[8].parse().unwrap();
    assert!((10..=12).contains(&count), "{count} waits");
    // The program's frames by default; the C library's and the kernel's with --frames all.
    assert!(
        !rows.iter().any(|r| r[0].contains("nanosleep")),
        "libc folded into main by default"
    );
    let all = waits_csv(dir, &["--frames", "all"]);
    assert!(
        all.iter().any(|r| r[0].contains("nanosleep")),
        "the libc sleep frame is there with --frames all"
    );
    assert!(
        all.iter().any(|r| &r[1] == "[kernel]"),
        "the kernel's frames are there with --frames all"
    );
}

#[test]
fn off_cpu_time_of_known_sleeps() {
    let Scratch { tmp: _t, bin, dir } = scratch_with("exits.c", "exits", &[]);
    let cmd = [bin.to_str().unwrap(), "sleep", "1"];
    let out = collect(&dir, &["-m", "locks"], &cmd);
    ok(&out);
    check_sleep_waits(&dir, slept(&out));
    let j = report_json(&dir, "summary", &[]);
    assert_eq!(j["metric"], "ns");
}

#[test]
fn an_ordinary_user_gets_the_known_sleeps_and_is_told_what_is_missing_without_the_agent() {
    let s = scratch_with("exits.c", "exits", &[]);
    // With the agent (the default): ten usleep(100 ms) at main, class sleep.
    let out = collect_locks_in(&s, true, &["sleep".as_ref(), "1".as_ref()]);
    ok(&out);
    let Scratch { tmp: t, bin, dir } = s;
    let rows = waits_csv(&dir, &[]);
    let main = rows.iter().find(|r| &r[0] == "main").expect("main waits");
    within("main's waits", main[6].parse().unwrap(), slept(&out), 0.10);
    assert_eq!(&main[4], "sleep", "{main:?}");
    // Without the agent the intervals are still counted, and the notice says what
    // is missing (the stacks) and how to get them.
    let dir = t.path().join("off");
    let out = hwprof_command(true, t.path())
        .args([
            "collect",
            "-m",
            "locks",
            "--python",
            "off",
            "-r",
            dir.to_str().unwrap(),
            "--",
        ])
        .arg(&bin)
        .args(["sleep", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("locks mode without the agent") && err.contains("CAP_PERFMON"),
        "{err}"
    );
    // No stack to put them on: the summary counts them (class other).
    let j = report_json(&dir, "summary", &[]);
    let other = j["waits_by_class"]["other"].as_f64().unwrap_or(0.0);
    within(
        "off-CPU time without the agent",
        other as u64,
        slept(&out),
        0.10,
    );
}

fn skip_unless_root(what: &str) -> bool {
    !root_or_skip(&format!(
        "{what} needs root (the tracepoint/switch path of locks mode)"
    ))
}

fn csv_row<'a>(rows: &'a [csv::StringRecord], function: &str) -> &'a csv::StringRecord {
    rows.iter()
        .find(|r| &r[0] == function)
        .unwrap_or_else(|| panic!("no row for {function}: {rows:?}"))
}

fn assert_near(what: &str, got_ns: f64, want_ms: f64, tol: f64) {
    let want = want_ms * 1e6;
    assert!(
        (got_ns - want).abs() <= want * tol,
        "{what}: {:.1} ms, expected {want_ms} ms ± {:.0}%",
        got_ns / 1e6,
        tol * 100.0
    );
}

/// lock_classes.c: the waiter waits 350 ms for a mutex (class lock, the mutex's address
/// as object), the sleeper sleeps 300 ms (sleep), the reader waits 250 ms on a pipe
/// (io, its fd); the waiter's and the sleeper's functions lead the default report.
#[test]
fn waits_have_classes_objects_and_the_programs_functions_lead() {
    if skip_unless_root("locks mode's switch samples") {
        return;
    }
    let Scratch { tmp: _t, bin, dir } = scratch_with("lock_classes.c", "lock_classes", &[]);
    let out = ok(&collect(&dir, &["-m", "locks"], &[bin.to_str().unwrap()]));
    let printed = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' in {out}"))
            .trim()
            .to_string()
    };
    let mutex = printed("mutex ");
    let fd = printed("pipe fd ");
    let rows = waits_csv(&dir, &[]);
    let num = |r: &csv::StringRecord, i: usize| r[i].parse::<f64>().unwrap();
    // Each wait against the design (± 10%) and against the program's own measurement
    // of it (± 5%): on a starved machine a thread waits for a CPU after its wake-up,
    // which is off-CPU time too, and the design alone would blame hwprof for it.
    let measured = |prefix: &str| -> f64 {
        printed(prefix)
            .trim_end_matches(" ms")
            .parse::<f64>()
            .unwrap()
            * 1e6
    };
    let check = |what: &str, got: f64, design_ms: f64, own: f64| {
        assert!(
            (got - own).abs() <= own * 0.05 + 1e6,
            "{what}: hwprof {:.1} ms, the program measured {:.1} ms",
            got / 1e6,
            own / 1e6
        );
        if (own - design_ms * 1e6).abs() <= design_ms * 1e6 * 0.10 {
            assert_near(what, got, design_ms, 0.10);
        } else {
            eprintln!(
                "{what}: the program itself measured {:.1} ms for its designed {design_ms} ms (machine starved)",
                own / 1e6
            );
        }
    };
    let waiter = csv_row(&rows, "await_the_lock");
    check(
        "await_the_lock",
        num(waiter, 6),
        350.0,
        measured("waited for the lock "),
    );
    assert_eq!(
        (&waiter[4], &waiter[5]),
        ("lock", mutex.as_str()),
        "{waiter:?}"
    );
    // One long wait (its printf may add a short one): the maximum is nearly all of it.
    assert!(num(waiter, 9) >= 0.95 * num(waiter, 6), "{waiter:?}");
    assert_eq!(&waiter[10], "1", "one thread waited: {waiter:?}");
    let sleeper = csv_row(&rows, "take_a_nap");
    check("take_a_nap", num(sleeper, 6), 300.0, measured("slept "));
    assert_eq!(&sleeper[4], "sleep", "{sleeper:?}");
    let reader = csv_row(&rows, "read_the_pipe");
    check(
        "read_the_pipe",
        num(reader, 6),
        250.0,
        measured("read waited "),
    );
    assert_eq!(
        (&reader[4], &reader[5]),
        ("io", format!("fd {fd}").as_str())
    );
    // The default text report: the program's functions, the waiter's and the
    // sleeper's first (the holder spins: its preemptions are far below 300 ms unless
    // the machine is starved, and it is never above the waiter's 350 ms).
    let text = ok(&hwprof(&["report", dir.to_str().unwrap()]));
    let top: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("function (module)"))
        .skip(1)
        .take(3)
        .collect();
    assert!(top[0].contains("await_the_lock"), "{text}");
    assert!(top[1..].iter().any(|l| l.contains("take_a_nap")), "{text}");
    assert!(!text.contains("schedule ([kernel])"), "{text}");
    assert!(text.contains("waits by class: "), "{text}");
    // --view objects: the mutex, its one waiter, at the waiter's line.
    let objects = report_view(&dir, "objects", "csv", &[]);
    assert!(
        objects.starts_with("object,class,site,wait_ns,wait_pct,waiters,count,max_ns\n"),
        "{objects}"
    );
    let recs = parse_csv(&objects);
    let m = recs
        .iter()
        .find(|r| r[0] == *mutex)
        .unwrap_or_else(|| panic!("no {mutex} in {objects}"));
    assert_eq!(&m[1], "lock");
    assert!(
        m[2].starts_with("await_the_lock ") && m[2].contains("lock_classes.c:"),
        "{m:?}"
    );
    assert_eq!(&m[5], "1", "{m:?}");
    // JSON carries the same columns.
    let j = report_json(&dir, "waits", &[]);
    let row = json_row(&j, "rows", "function", "await_the_lock").expect("await_the_lock in JSON");
    assert_eq!(row["class"], "lock");
    assert_eq!(row["object"], mutex.as_str());
    assert_eq!(row["threads"], 1);
    check_wait_exports(&dir, num(waiter, 6));
}

/// The exports carry wait time, read by their own readers: pstats (Python's `pstats`:
/// seconds), speedscope (nanoseconds), folded stacks and the flame graph (ns, the
/// program's frames at the leaves), the HTML page's waits panel (by class and object).
fn check_wait_exports(dir: &std::path::Path, waiter_ns: f64) {
    let d = dir.to_str().unwrap();
    let close = |what: &str, got: f64| {
        assert!(
            (got - waiter_ns).abs() <= waiter_ns * 0.01,
            "{what}: {got} ns, the waits view says {waiter_ns}"
        )
    };
    // Folded stacks: the waiter's stack ends in await_the_lock (libc and kernel folded).
    let folded = ok(&hwprof(&["export", d, "--format", "collapsed"]));
    let leaf: f64 = folded
        .lines()
        .filter(|l| l.rsplit_once(' ').unwrap().0.ends_with("await_the_lock"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    close("collapsed", leaf);
    assert!(!folded.contains("schedule"), "{folded}");
    let all = ok(&hwprof(&[
        "export",
        d,
        "--format",
        "collapsed",
        "--frames",
        "all",
    ]));
    assert!(
        all.contains(";schedule "),
        "--frames all keeps the kernel: {all}"
    );
    // pstats: tottime in seconds, read by Python.
    let prof = dir.join("waits.prof");
    ok(&hwprof(&[
        "export",
        d,
        "--format",
        "pstats",
        "-o",
        prof.to_str().unwrap(),
    ]));
    let py = std::process::Command::new("python3")
        .args([
            "-c",
            "import pstats, sys\n\
             s = pstats.Stats(sys.argv[1])\n\
             print(sum(v[2] for k, v in s.stats.items() if k[2] == 'await_the_lock'))",
            prof.to_str().unwrap(),
        ])
        .output()
        .expect("run python3");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let tt: f64 = String::from_utf8_lossy(&py.stdout).trim().parse().unwrap();
    close("pstats tottime", tt * 1e9);
    // speedscope: nanoseconds, the waiter's weight.
    let ss: serde_json::Value =
        serde_json::from_str(&ok(&hwprof(&["export", d, "--format", "speedscope"]))).unwrap();
    let frames = ss["shared"]["frames"].as_array().unwrap();
    let idx = frames
        .iter()
        .position(|f| f["name"] == "await_the_lock")
        .expect("await_the_lock frame");
    let mut weight = 0.0;
    for prof in ss["profiles"].as_array().unwrap() {
        assert_eq!(prof["unit"], "nanoseconds");
        for (sample, w) in prof["samples"]
            .as_array()
            .unwrap()
            .iter()
            .zip(prof["weights"].as_array().unwrap())
        {
            if sample.as_array().unwrap().last() == Some(&serde_json::json!(idx)) {
                weight += w.as_f64().unwrap();
            }
        }
    }
    close("speedscope", weight);
    // Flame graph: the metric is ns.
    let svg = ok(&hwprof(&["export", d, "--format", "flamegraph"]));
    assert!(
        svg.contains("await_the_lock") && svg.contains(" ns"),
        "flame graph in ns"
    );
    // HTML: the waits panel's breakdowns are in the page's data.
    let html = ok(&hwprof(&["export", d, "--format", "html"]));
    for key in ["\"wait_classes\"", "\"wait_objects\"", "\"lock\""] {
        assert!(html.contains(key), "{key} missing in the HTML page");
    }
}

/// Rows of a report as CSV records.
fn report_csv(dir: &std::path::Path, args: &[&str]) -> Vec<csv::StringRecord> {
    let mut all = vec!["--format", "csv"];
    all.extend_from_slice(args);
    parse_csv(&report(dir, &all))
}

/// gil_waits.py: two CPU-bound threads share the GIL for 0.8 s, a third sleeps 0.5 s.
/// The sleeper's `time.sleep` line gets its sleep (0.5 s, at most the script's time); the busy threads wait for the GIL
/// (class gil, object `GIL`) at their own lines.
#[test]
fn python_gil_waits_and_sleeps_at_their_lines() {
    if skip_unless_root("locks mode's switch samples") {
        return;
    }
    let py = pyenv("3.11.7").expect("pyenv 3.11.7 is required");
    let t = shared_tempdir();
    let script = program_source("gil_waits.py");
    let dir = t.path().join("run");
    let out = collect_locks(
        Command::new(hwprof_bin()),
        &dir,
        &[],
        &[py.as_ref(), script.as_ref()],
    );
    ok(&out);
    // The sleep as the script timed it: 0.5 s, more on a loaded machine.
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let napped = numbers_after(&stderr, "napped ").expect("the script printed its sleep")[0];
    let source = std::fs::read_to_string(&script).unwrap();
    let sleep_line = 1 + source.lines().position(|l| l.contains("# SLEEP")).unwrap();
    let lines = report_csv(&dir, &["--view", "lines", "--top", "50"]);
    let nap = lines
        .iter()
        .find(|r| &r[0] == "nap" && r[3] == *sleep_line.to_string())
        .unwrap_or_else(|| panic!("no nap:{sleep_line} row: {lines:?}"));
    // The line holds the sleep, plus taking the GIL back from the busy threads after it
    // (class gil, same line) and preemptions on a loaded machine.
    let at_line: f64 = nap[4].parse().unwrap();
    assert!(
        (0.45e9..napped * 1e9 + 300e6).contains(&at_line),
        "nap's time.sleep line: {at_line} ns, expected its {napped} s sleep and a little more"
    );
    let nap_row = csv_row(&waits_csv(&dir, &[]), "nap").clone();
    assert_eq!(&nap_row[4], "sleep", "{nap_row:?}");
    let j: serde_json::Value = serde_json::from_str(&report(&dir, &["--format", "json"])).unwrap();
    let by_class = &j["waits_by_class"];
    let sleep = by_class["sleep"].as_f64().unwrap_or(0.0);
    gil_waits_nap("sleep class", sleep, &stderr);
    // Two threads wanting one GIL for 0.8 s wait about 0.8 s in all, some of it
    // preempted rather than blocked on a loaded machine.
    let gil = by_class["gil"].as_f64().unwrap_or(0.0);
    assert!((0.2e9..1.2e9).contains(&gil), "gil waits {gil} ns: {j}");
    let objects = report_csv(&dir, &["--view", "objects"]);
    let g = objects
        .iter()
        .find(|r| &r[0] == "GIL")
        .unwrap_or_else(|| panic!("no GIL object: {objects:?}"));
    assert_eq!(&g[1], "gil");
    assert!(
        g[2].contains("gil_waits.py:") && (g[2].starts_with("spin ") || g[2].starts_with("busy ")),
        "the GIL is waited for at the busy threads' lines: {g:?}"
    );
    let waiters: u32 = g[5].parse().unwrap();
    assert!(waiters >= 2, "the busy threads wait for the GIL: {g:?}");
    let spin = csv_row(&waits_csv(&dir, &[]), "spin").clone();
    assert_eq!(&spin[10], "2", "both busy threads waited in spin: {spin:?}");
}

/// `mpirun -n 4 hwprof collect -q -m locks -r T/run -- python3 mpi_imbalance.py ARGS...`
/// (oversubscribed: two cores), with the python3 that has mpi4py (a failure when it has
/// not: `.ci/run` installs it), asserted successful: the results dir and the ranks'
/// standard error.
fn mpirun_imbalance(t: &std::path::Path, args: &[&str]) -> (std::path::PathBuf, String) {
    let dir = t.join("run");
    let script = program_source("mpi_imbalance.py");
    let py = std::process::Command::new("python3")
        .args(["-c", "import sys, mpi4py; print(sys.executable)"])
        .output()
        .expect("run python3");
    assert!(
        py.status.success(),
        "mpi4py is not installed for python3: pip install -r .ci/requirements.txt (.ci/run does)"
    );
    let py = String::from_utf8_lossy(&py.stdout).trim().to_string();
    let mut program = vec![py.as_str(), script.to_str().unwrap()];
    program.extend(args);
    let stderr = mpirun_collect_locks(&dir, &program);
    (dir, stderr)
}

/// `mpirun -n 4 hwprof collect -q -m locks -r DIR -- PROGRAM...` (oversubscribed, root
/// allowed), with the test's agent, asserted successful: the ranks' standard error.
fn mpirun_collect_locks(dir: &std::path::Path, program: &[&str]) -> String {
    let out = std::process::Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", "4"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("HWPROF_AGENT_LIB", crate::python::agent_lib())
        .arg(hwprof_bin())
        .args(["collect", "-q", "-m", "locks", "-r"])
        .arg(dir)
        .arg("--")
        .args(program)
        .output()
        .expect("run mpirun (.ci/run installs openmpi-bin)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mpirun failed: {stderr}");
    stderr
}

/// mpi_imbalance.py under `mpirun -n 4` (oversubscribed: two cores): rank 2 works 3×
/// longer, the others wait for it at the second `comm.Barrier()`. Their waits are class
/// mpi, named `MPI_Barrier`; rank 2's are a small fraction of theirs. Open MPI polls
/// while it waits and yields the CPU when oversubscribed, so part of the barrier time is
/// on CPU (not a wait) and the off-CPU part is stretched by the four ranks sharing two
/// cores: totals are not compared with the designed imbalance (docs/locks.md, "MPI").
#[test]
fn mpi_barrier_waits_are_mpi_on_the_waiting_ranks() {
    if skip_unless_root("locks mode's switch samples") {
        return;
    }
    let t = shared_tempdir();
    let (dir, _) = mpirun_imbalance(t.path(), &["0.3"]);
    let barrier = |rank: u32| -> f64 {
        let rows = report_csv(
            &dir,
            &[
                "--view",
                "objects",
                "--rank",
                &rank.to_string(),
                "--top",
                "100",
            ],
        );
        rows.iter()
            .find(|r| &r[0] == "MPI_Barrier")
            .map(|r| {
                assert_eq!(&r[1], "mpi", "{r:?}");
                r[3].parse().unwrap()
            })
            .unwrap_or(0.0)
    };
    let waits: Vec<f64> = (0..4).map(barrier).collect();
    eprintln!("MPI_Barrier waits per rank (ns): {waits:?}");
    // Whether a waiting rank polls on CPU or yields (and so waits off CPU) depends on
    // whether it had a core to itself at the time: per rank the figures swing from
    // 0.3 ms to 7 s between runs here. Together the waiting ranks wait far more.
    let others = waits[0] + waits[1] + waits[3];
    assert!(
        others > 0.1e9 && others > 3.0 * waits[2],
        "the waiting ranks wait in MPI_Barrier, the rank that works 3x longer hardly: {waits:?}"
    );
}

/// mpi_imbalance.py under `mpirun -n 4` with T = 0.4 s of wall time: rank 2 works 3T of wall
/// time, the others T, then all meet at a barrier. Open MPI waits there by polling, on
/// CPU: the agent times the `MPI_Barrier` mpi4py calls, so each other rank's wait is
/// class mpi, object `MPI_Barrier`, at the barrier line, and the three total the
/// designed imbalance (3 × 2T) ± 15%, and each rank's wait is within 15% of its own
/// clock's (docs/locks.md, "MPI").
#[test]
fn mpi_barrier_waits_total_the_designed_imbalance() {
    if skip_unless_root("mpirun as root (the pyenv python with mpi4py lives in /root)") {
        return;
    }
    let t = shared_tempdir();
    const T: f64 = 0.4;
    let (dir, stderr) = mpirun_imbalance(t.path(), &[&T.to_string(), "wall"]);
    let timed = barrier_clocks(&stderr);
    let p = hwprof::profile::Profile::load(&dir).unwrap();
    let line = source_line("mpi_imbalance.py", "# the barrier line");
    let at_line = barrier_waits_per_rank(&p, |f, func| {
        func.module == "python" && func.name == "main" && f.line == Some(line)
    });
    let at_line_s: Vec<f64> = at_line.iter().map(|&(ns, _)| ns as f64 / 1e9).collect();
    eprintln!(
        "MPI_Barrier waits at the barrier line per rank (s): {at_line_s:?}; by the ranks' clocks: {timed:?}"
    );
    assert_designed_imbalance(&at_line_s, T, &format!("(their clocks: {timed:?})"));
    // Each rank's wait is its own clock's, ±15% (and 20 ms for rank 2's short one).
    for r in 0..4 {
        assert!(
            (at_line_s[r] - timed[r]).abs() <= 0.15 * timed[r] + 0.02,
            "rank {r}: {:.3} s of MPI_Barrier at the line, {:.3} s by its clock",
            at_line_s[r],
            timed[r]
        );
    }
    // Rank 2, the last to arrive, waits least (only for the barrier to complete, which
    // takes longer when the other ranks polling in it share two cores with other
    // tests; so no absolute bound).
    let others = [at_line_s[0], at_line_s[1], at_line_s[3]];
    assert!(
        others.iter().all(|&o| at_line_s[2] < 0.5 * o),
        "rank 2, the last to arrive, waits least: {at_line_s:?}"
    );
    // The script has one thread: every other thread of a rank is Open MPI's own
    // (progress, PMIx), off CPU all along. Views leave them out by default, and the
    // summary says what was left out: their waits, to the nanosecond.
    let main_thread = |t: usize| p.processes[p.threads[t].process].pid == p.threads[t].tid;
    let of_program = |w: &&hwprof::profile::WaitRow| {
        p.processes[p.threads[w.key.thread].process].role == hwprof::profile::ProcessRole::Program
    };
    let (library_waits, program_waits): (Vec<_>, Vec<_>) = (p.waits.iter())
        .filter(of_program)
        .partition(|w| !main_thread(w.key.thread));
    let library_ns: u64 = library_waits.iter().map(|w| w.wait_ns).sum();
    let program_ns: u64 = program_waits.iter().map(|w| w.wait_ns).sum();
    let library_threads: std::collections::HashSet<usize> =
        library_waits.iter().map(|w| w.key.thread).collect();
    let summary = report_json(&dir, "summary", &[]);
    let service = summary["mpi_service_threads_ns"].as_u64().unwrap_or(0);
    eprintln!(
        "waits of the library's own {} threads: {library_ns} ns; the summary: {service} ns; the program's: {program_ns} ns",
        library_threads.len()
    );
    assert!(
        library_ns > 0,
        "Open MPI's service threads wait: {summary:#}"
    );
    assert_eq!(service, library_ns, "{summary:#}");
    assert_eq!(
        summary["mpi_service_threads"].as_u64(),
        Some(library_threads.len() as u64),
        "{summary:#}"
    );
    let by_class = |s: &serde_json::Value| -> u64 {
        (s["waits_by_class"].as_object().unwrap().values())
            .map(|v| v.as_u64().unwrap())
            .sum()
    };
    assert_eq!(by_class(&summary), program_ns, "{summary:#}");
    let text = report_view(&dir, "summary", "text", &[]);
    assert_says(
        &text,
        &[
            "  MPI library's own threads: ",
            &format!(
                "waited {} by design",
                hwprof::report::table::human(library_ns, "ns")
            ),
            "not in the figures below; --mpi-threads counts them",
        ],
        "the summary",
    );
    // The waits view is the program's: no row of `start_thread`, where every thread
    // but a process's main thread starts (it led the view with the service threads'
    // 70% of the wait time before).
    let start_thread = |extra: &[&str]| -> Option<Vec<String>> {
        let mut args = vec!["--top", "100000"];
        args.extend_from_slice(extra);
        let rows = parse_csv(&report_view(&dir, "waits", "csv", &args));
        let row = rows.into_iter().find(|r| &r[0] == "start_thread")?;
        Some(row.iter().map(String::from).collect())
    };
    assert_eq!(start_thread(&[]), None);
    // --mpi-threads counts them again, and says how much of mpi is theirs.
    let all = report_json(&dir, "summary", &["--mpi-threads"]);
    assert_eq!(by_class(&all), program_ns + library_ns, "{all:#}");
    let text = report_view(&dir, "summary", "text", &["--mpi-threads"]);
    assert!(
        text.contains("in the MPI library's own threads, which wait by design"),
        "{text}"
    );
    let row = start_thread(&["--mpi-threads"]).expect("a start_thread row with --mpi-threads");
    assert_eq!(row[10], library_threads.len().to_string(), "{row:?}");
}

/// Each rank's barrier wait by its own clock, from the programs' "rank R barrier S"
/// lines (mpirun interleaves them: "rank 0 barrier 0.81rank 2 barrier 0.00").
fn barrier_clocks(stderr: &str) -> [f64; 4] {
    let mut timed = [0.0f64; 4];
    for chunk in stderr.split("rank ").skip(1) {
        let w: Vec<&str> = chunk.split_whitespace().take(3).collect();
        if let [r, "barrier", s] = w.as_slice()
            && let (Ok(r), Ok(s)) = (r.parse::<usize>(), s.parse::<f64>())
            && r < 4
        {
            timed[r] = s;
        }
    }
    timed
}

/// Per rank of 4: the MPI_Barrier waits whose stack has a frame that `here` accepts, as
/// (total ns, longest ns).
fn barrier_waits_per_rank(
    p: &hwprof::profile::Profile,
    here: impl Fn(&hwprof::profile::Frame, &hwprof::profile::Function) -> bool,
) -> [(u64, u64); 4] {
    let mut out = [(0, 0); 4];
    for w in &p.waits {
        if w.key.class != hwprof::profile::WaitClass::Mpi
            || w.key.object.as_deref() != Some("MPI_Barrier")
        {
            continue;
        }
        let found = (p.stack_frames(w.key.stack).iter())
            .map(|&f| &p.frames[f])
            .any(|f| here(f, &p.functions[f.function]));
        if let (true, Some(rank)) = (found, p.thread_rank(w.key.thread)) {
            let (total, longest) = &mut out[rank as usize];
            *total += w.wait_ns;
            *longest = (*longest).max(w.max_ns);
        }
    }
    out
}

/// The waiting ranks' (0, 1, 3) MPI_Barrier waits, seconds per rank in PER_RANK, total
/// the designed imbalance of a run where rank 2 works 3T and the others T: 3 × 2T ± 15%.
fn assert_designed_imbalance(per_rank: &[f64], t: f64, context: &str) {
    let others: f64 = [0, 1, 3].iter().map(|&r| per_rank[r]).sum();
    let designed = 3.0 * 2.0 * t;
    assert!(
        (others - designed).abs() <= 0.15 * designed,
        "the waiting ranks' MPI_Barrier waits total {others:.3} s, designed {designed:.3} s ±15%: {per_rank:?} {context}"
    );
}

/// One run of mpi_tool_imbalance (T = 0.4 s) under `mpirun -n 4 hwprof collect -m locks`
/// with the PMPI tool pmpi_count_tool preloaded after hwprof's agent (`tool_first`
/// false) or before it: stderr (the ranks' and the tool's lines).
fn mpirun_locks_with_tool(
    dir: &std::path::Path,
    prog: &std::path::Path,
    tool: &std::path::Path,
    tool_first: bool,
) -> String {
    // The agent is in LD_PRELOAD already (hwprof puts it there); the shell adds the tool.
    let preload = if tool_first {
        format!("{}:$LD_PRELOAD", tool.display())
    } else {
        format!("$LD_PRELOAD:{}", tool.display())
    };
    let line = format!("LD_PRELOAD=\"{preload}\" exec {} 0.4", prog.display());
    mpirun_collect_locks(dir, &["sh", "-c", &line])
}

/// An ordinary user's MPI job on an oversubscribed node: mpi_tool_imbalance.c, 4 ranks
/// on two cores, all run as uid 65534 (no kernel stacks). Each waiting rank's
/// `MPI_Barrier` wait in `meet_at_barrier` is its own clock's, ±15%. A rank yields some
/// 75,000 times a second while it polls: before, its queue of off-CPU intervals
/// overflowed and a barrier kept 20 ms of its 600, the rest counted "preempted" at an
/// `MPI_Recv` line; and the log of its off-CPU time dropped the barrier's start, which
/// left others without their on-CPU part (450 of 600 ms).
#[test]
fn an_ordinary_users_oversubscribed_ranks_wait_their_own_clocks_at_the_barrier() {
    require_root!("setpriv to uid 65534 needs root");
    let t = shared_tempdir();
    let prog = t.path().join("mpi_tool_imbalance");
    compile("mpicc", &["-O2", "-g"], "mpi_tool_imbalance.c", &prog, &[]);
    let hw = hwprof_for_nobody(t.path());
    let dir = t.path().join("run");
    let out = as_nobody(std::path::Path::new("/usr/bin/mpirun"))
        .args(["--oversubscribe", "-n", "4"])
        .env("HOME", t.path())
        .arg(&hw)
        .args(["collect", "-q", "-m", "locks", "-r"])
        .arg(&dir)
        .arg("--")
        .arg(&prog)
        .arg("0.3")
        .output()
        .expect("run mpirun (.ci/run installs openmpi-bin)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mpirun failed: {stderr}");
    let timed = barrier_clocks(&stderr);
    let p = hwprof::profile::Profile::load(&dir).unwrap();
    let at = barrier_waits_per_rank(&p, |_, func| func.name == "meet_at_barrier");
    let recorded: Vec<f64> = at.iter().map(|&(ns, _)| ns as f64 / 1e9).collect();
    eprintln!(
        "MPI_Barrier in meet_at_barrier per rank (s): {recorded:?}; by their clocks: {timed:?}"
    );
    for r in [0, 1, 3] {
        assert!(
            timed[r] > 0.3,
            "rank {r} waited {} s by its clock: {stderr}",
            timed[r]
        );
        // The band of the root test's ranks (±15%): mostly within 1% here, but a CI
        // run recorded one rank's 0.609 s as 0.533 s.
        assert!(
            (recorded[r] - timed[r]).abs() <= 0.15 * timed[r],
            "rank {r}: {:.3} s recorded, {:.3} s by its clock",
            recorded[r],
            timed[r]
        );
    }
}

/// Another PMPI tool (a library defining `MPI_Barrier`/`MPI_Recv` that calls `PMPI_*`,
/// as mpiP or Score-P) preloaded with hwprof's agent, in both orders: the tool counts
/// every call the program makes (2 barriers, 3 receives per rank: the agent chains to
/// the next `MPI_*`, and times the tool's `PMPI_*` calls when the tool comes first),
/// and hwprof still reports the waiting ranks' `MPI_Barrier` waits in
/// `meet_at_barrier`, totalling the designed imbalance (3 × 2T) ± 15%, each once.
#[test]
fn mpi_waits_chain_through_another_pmpi_tool() {
    let t = shared_tempdir();
    let prog = t.path().join("mpi_tool_imbalance");
    compile("mpicc", &["-O2", "-g"], "mpi_tool_imbalance.c", &prog, &[]);
    let tool = build_shared_lib("mpicc", t.path(), "pmpi_count_tool.c", "libpmpi_count.so");
    const T: f64 = 0.4;
    for tool_first in [false, true] {
        let order = if tool_first {
            "tool first"
        } else {
            "agent first"
        };
        let dir = t.path().join(if tool_first {
            "tool_first"
        } else {
            "agent_first"
        });
        let stderr = mpirun_locks_with_tool(&dir, &prog, &tool, tool_first);
        for rank in 0..4 {
            assert!(
                stderr.contains(&format!("tool rank {rank} MPI_Barrier 2 MPI_Recv 3\n")),
                "{order}: the tool sees rank {rank}'s 2 barriers and 3 receives: {stderr}"
            );
        }
        let p = hwprof::profile::Profile::load(&dir).unwrap();
        let at_barrier = barrier_waits_per_rank(&p, |_, func| func.name == "meet_at_barrier");
        let s: Vec<f64> = at_barrier.iter().map(|&(ns, _)| ns as f64 / 1e9).collect();
        let max: Vec<f64> = at_barrier.iter().map(|&(_, ns)| ns as f64 / 1e9).collect();
        eprintln!(
            "{order}: MPI_Barrier waits in meet_at_barrier per rank (s): {s:?}, longest {max:?}"
        );
        // The agent timed the barriers: long waits (0.28-0.81 s seen here; finalize may
        // cut one into a long part and off-CPU slices), not only the off-CPU slices of
        // a rank that yields while it polls, all that finalize sees of a call the agent
        // does not time (at most 28 ms each in such a run).
        let longest_s = [0, 1, 3].iter().map(|&r| max[r]).fold(0.0, f64::max);
        assert!(
            longest_s >= T / 4.0,
            "{order}: the agent timed the waiting ranks' barriers: longest {max:?}"
        );
        assert_designed_imbalance(&s, T, &format!("({order})\n{stderr}"));
        assert!(
            s[2] < 0.25 * T,
            "{order}: rank 2, the last to arrive, hardly waits: {s:?}"
        );
    }
}
