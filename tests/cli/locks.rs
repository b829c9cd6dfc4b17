//! Locks mode: off-CPU time from switch-out to switch-in, with known sleeps as truth.

use crate::common::*;

fn waits_csv(dir: &std::path::Path) -> Vec<csv::StringRecord> {
    let text = ok(&hwprof(&[
        "report",
        dir.to_str().unwrap(),
        "--view",
        "waits",
        "--format",
        "csv",
    ]));
    assert!(
        text.starts_with("function,module,file,line,wait_ns,wait_pct,count,max_ns"),
        "{text}"
    );
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .collect()
}

fn check_sleep_waits(dir: &std::path::Path) {
    let rows = waits_csv(dir);
    let main = rows.iter().find(|r| &r[0] == "main").expect("main waits");
    let wait_ns: f64 = main[4].parse().unwrap();
    // exits sleep 1: ten usleep(100 ms) calls.
    assert!((wait_ns - 1e9).abs() < 0.1e9, "main waited {wait_ns} ns");
    let count: u64 = main[6].parse().unwrap();
    assert!((10..=12).contains(&count), "{count} waits");
    assert!(
        rows.iter().any(|r| r[0].contains("nanosleep")),
        "the libc sleep frame is there"
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
