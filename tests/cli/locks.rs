//! Locks mode: off-CPU time from switch-out to switch-in, with known sleeps as truth.

use crate::common::*;

/// `--view waits` CSV rows (extra report arguments, e.g. `--frames all`, after).
fn waits_csv(dir: &std::path::Path, extra: &[&str]) -> Vec<csv::StringRecord> {
    let mut args = vec![
        "report",
        dir.to_str().unwrap(),
        "--view",
        "waits",
        "--format",
        "csv",
        "--top",
        "500",
    ];
    args.extend_from_slice(extra);
    let text = ok(&hwprof(&args));
    assert!(
        text.starts_with(
            "function,module,file,line,class,object,wait_ns,wait_pct,count,max_ns,threads\n"
        ),
        "{text}"
    );
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .collect()
}

fn check_sleep_waits(dir: &std::path::Path) {
    let rows = waits_csv(dir, &[]);
    let main = rows.iter().find(|r| &r[0] == "main").expect("main waits");
    let wait_ns: f64 = main[6].parse().unwrap();
    // exits sleep 1: ten usleep(100 ms) calls.
    assert!((wait_ns - 1e9).abs() < 0.1e9, "main waited {wait_ns} ns");
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
    let t = shared_tempdir();
    let bin = build_c(t.path(), "exits.c", "exits", &[]);
    let dir = t.path().join("run");
    ok(&hwprof(&[
        "collect",
        "-q",
        "-m",
        "locks",
        "-r",
        dir.to_str().unwrap(),
        "--",
        bin.to_str().unwrap(),
        "sleep",
        "1",
    ]));
    check_sleep_waits(&dir);
    let j: serde_json::Value = serde_json::from_str(&ok(&hwprof(&[
        "report",
        dir.to_str().unwrap(),
        "--view",
        "summary",
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(j["metric"], "ns");
}

#[test]
fn an_ordinary_user_is_told_why_locks_mode_is_empty() {
    let t = shared_tempdir();
    let bin = build_c(t.path(), "exits.c", "exits", &[]);
    let hw = hwprof_for_nobody(t.path());
    let dir = t.path().join("run");
    let out = as_nobody(&hw)
        .args(["collect", "-m", "locks", "-r", dir.to_str().unwrap(), "--"])
        .arg(&bin)
        .args(["sleep", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("off-CPU time will be empty") && err.contains("CAP_PERFMON"),
        "{err}"
    );
}

fn skip_unless_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    eprintln!("skipped: {what} needs root (the tracepoint/switch path of locks mode)");
    true
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
    let t = shared_tempdir();
    let bin = build_c(t.path(), "lock_classes.c", "lock_classes", &[]);
    let dir = t.path().join("run");
    let out = ok(&hwprof(&[
        "collect",
        "-q",
        "-m",
        "locks",
        "-r",
        dir.to_str().unwrap(),
        "--",
        bin.to_str().unwrap(),
    ]));
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
    let waiter = csv_row(&rows, "await_the_lock");
    assert_near("await_the_lock", num(waiter, 6), 350.0, 0.10);
    assert_eq!(
        (&waiter[4], &waiter[5]),
        ("lock", mutex.as_str()),
        "{waiter:?}"
    );
    // One wait: its maximum is itself.
    assert_eq!(&waiter[6], &waiter[9], "{waiter:?}");
    assert_eq!(&waiter[10], "1", "one thread waited: {waiter:?}");
    let sleeper = csv_row(&rows, "take_a_nap");
    assert_near("take_a_nap", num(sleeper, 6), 300.0, 0.10);
    assert_eq!(&sleeper[4], "sleep", "{sleeper:?}");
    let reader = csv_row(&rows, "read_the_pipe");
    assert_near("read_the_pipe", num(reader, 6), 250.0, 0.10);
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
    let objects = ok(&hwprof(&[
        "report",
        dir.to_str().unwrap(),
        "--view",
        "objects",
        "--format",
        "csv",
    ]));
    assert!(
        objects.starts_with("object,class,site,wait_ns,wait_pct,waiters,count,max_ns\n"),
        "{objects}"
    );
    let recs: Vec<csv::StringRecord> = csv::Reader::from_reader(objects.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .collect();
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
    let j: serde_json::Value = serde_json::from_str(&ok(&hwprof(&[
        "report",
        dir.to_str().unwrap(),
        "--view",
        "waits",
        "--format",
        "json",
    ])))
    .unwrap();
    let row = j["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["function"] == "await_the_lock")
        .expect("await_the_lock in JSON");
    assert_eq!(row["class"], "lock");
    assert_eq!(row["object"], mutex.as_str());
    assert_eq!(row["threads"], 1);
}
