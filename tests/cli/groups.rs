//! Counter groups read with each sample: a software group on a program whose page
//! faults all happen in one function (root and an ordinary user), perf reading the
//! group back, members the machine lacks, and hotspots' cycles group where a PMU
//! exists.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Pages `faults.c` touches in `toucher` (one minor fault each).
const DESIGNED_PAGES: f64 = 2000.0;
const GROUP: &str = "{cpu-clock,page-faults,context-switches}";

/// Hotspots CSV as rows of named columns, keyed by function.
fn hotspot_table(dir: &Path) -> HashMap<String, HashMap<String, String>> {
    let text = report_view(dir, "hotspots", "csv", &["--top", "100000"]);
    // The contract's columns stay first and unchanged.
    parse_hotspots_csv(&text);
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let row: HashMap<String, String> = headers
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect();
            (row["function"].clone(), row)
        })
        .collect()
}

fn num(row: Option<&HashMap<String, String>>, col: &str) -> f64 {
    row.and_then(|r| r.get(col))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The designed answer of faults.c under the software group.
fn assert_faults_in_toucher(dir: &Path, as_root: bool) {
    let rows = hotspot_table(dir);
    let any = rows.values().next().expect("rows");
    // The members' columns; no ipc without cycles/instructions.
    for (column, present) in [
        ("page_faults", true),
        ("context_switches", true),
        ("ipc", false),
    ] {
        assert_eq!(any.contains_key(column), present, "{column}: {any:?}");
    }
    let all_faults: f64 = rows.values().map(|r| num(Some(r), "page_faults")).sum();
    let toucher = num(rows.get("toucher"), "page_faults");
    let spinner = num(rows.get("spinner"), "page_faults");
    assert!(
        toucher >= 0.9 * all_faults,
        "toucher has {toucher} of {all_faults} page faults (want >= 90%); spinner {spinner}"
    );
    assert!(
        (toucher - DESIGNED_PAGES).abs() <= 0.15 * DESIGNED_PAGES,
        "toucher page faults {toucher} (designed {DESIGNED_PAGES} ± 15%)"
    );
    // The leader's self shares still match the design.
    let a = num(rows.get("toucher"), "self_pct");
    let b = num(rows.get("spinner"), "self_pct");
    assert!((a - 25.0).abs() <= 8.0, "toucher self {a}% (want 25 ± 8)");
    assert!((b - 75.0).abs() <= 8.0, "spinner self {b}% (want 75 ± 8)");
    // Context switches are counted in the kernel: hidden from an ordinary user at
    // perf_event_paranoid 2.
    let switches: f64 = rows
        .values()
        .map(|r| num(Some(r), "context_switches"))
        .sum();
    if !as_root {
        assert_eq!(switches, 0.0, "user-only counting sees no switches");
    }
    // The summary gives the group's totals, not multiplexed (software events).
    let v = report_json(dir, "summary", &[]);
    let g = &v["group"];
    assert_eq!(g["multiplexed"], false, "{g}");
    assert_eq!(g["multiplexed_samples"], 0, "{g}");
    assert_eq!(g["samples_with_read"], v["samples"], "{g}");
    let total = g["totals"]["page-faults"].as_f64().unwrap_or(0.0);
    assert!(
        (total - all_faults).abs() <= 1.0 + all_faults * 1e-6,
        "summary total {total} vs rows {all_faults}"
    );
    // The manifest records the group as opened.
    let m: serde_json::Value = manifest_json(dir);
    assert_eq!(m["groups"][0]["leader"], "cpu-clock", "{m}");
    assert_eq!(
        m["groups"][0]["members"],
        serde_json::json!(["page-faults", "context-switches"])
    );
    assert_eq!(m["groups"][0]["read_per_sample"], true);
    // The lines view has the same member columns.
    let lines = report_view(dir, "lines", "csv", &[]);
    assert!(
        lines
            .lines()
            .next()
            .unwrap()
            .ends_with("total_pct,page_faults,context_switches"),
        "{lines}"
    );
}

#[test]
fn software_group_puts_page_faults_in_the_faulting_function() {
    let Scratch { tmp: _t, bin, dir } = scratch_with("faults.c", "faults", &[]);
    ok(&collect(
        &dir,
        &["-e", GROUP, "--call-graph", "fp"],
        &[bin.to_str().unwrap()],
    ));
    assert_faults_in_toucher(&dir, true);
    // perf reads the group back: each member's values become its own samples.
    need_perf();
    let data = first_perf_data(&dir);
    let text = run_ok(
        Command::new("perf")
            .args(["script", "-F", "event,period,sym", "-i"])
            .arg(&data),
    );
    let perf_faults: u64 = text
        .lines()
        .filter(|l| l.contains("page-faults:"))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    let v = report_json(&dir, "summary", &[]);
    let ours = v["group"]["totals"]["page-faults"].as_u64().unwrap_or(0);
    assert_eq!(
        perf_faults, ours,
        "perf script's page-fault periods vs hwprof"
    );
    // GROUP_DESC: perf knows the group without being told.
    let head = run_ok(
        Command::new("perf")
            .args(["report", "--header-only", "-i"])
            .arg(&data),
    );
    assert!(
        head.contains("# group: {cpu-clock,page-faults,context-switches}"),
        "{head}"
    );
    let rep_text = run_ok(
        Command::new("perf")
            .args([
                "report", "--stdio", "--group", "--sort", "sym", "-g", "none", "-i",
            ])
            .arg(&data),
    );
    assert_says(
        &rep_text,
        &["toucher", "page-faults"],
        "perf report --group",
    );
}

#[test]
fn an_ordinary_user_gets_the_group_too() {
    let Scratch { tmp: t, bin, dir } = scratch_with("faults.c", "faults", &[]);
    executable_by_all(&bin);
    let hw = hwprof_for_nobody(t.path());
    let out = collect_through(as_nobody(&hw), &dir, &["-e", GROUP], &[bin.as_os_str()]);
    ok(&out);
    assert_faults_in_toucher(&dir, false);
}

#[test]
fn group_members_the_machine_lacks_are_dropped_with_a_notice() {
    let Scratch { tmp: t, bin, dir } = scratch_with("hot.c", "hot", &[]);
    let group = ["-e", "{cpu-clock,instructions,page-faults}"];
    let out = collect_loud(&dir, &group, &[bin.to_str().unwrap(), "200"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let m: serde_json::Value = manifest_json(&dir);
    let g = &m["groups"][0];
    let members: Vec<&str> = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    assert!(members.contains(&"page-faults"), "{g}");
    if members.contains(&"instructions") {
        eprintln!("this machine has a PMU: instructions opened as a member");
    } else {
        assert!(
            err.contains("counter group: instructions dropped"),
            "one-line notice: {err}"
        );
        assert!(
            g["dropped"][0]
                .as_str()
                .unwrap_or("")
                .contains("instructions"),
            "{g}"
        );
        let rows = hotspot_table(&dir);
        let any = rows.values().next().unwrap();
        assert!(any.contains_key("page_faults") && !any.contains_key("instructions"));
    }
    // A malformed group is a usage error naming the fix.
    let bad = t.path().join("bad");
    let out = collect_loud(&bad, &["-e", "{cpu-clock,page-faults"], &["true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("closing '}'"));
}

/// With a PMU, default hotspots samples cycles and reads instructions and cache misses
/// with each sample: IPC per function.
#[test]
fn hotspots_with_a_pmu_reads_the_cycles_group() {
    let pmu = Command::new("perf")
        .args(["stat", "-e", "instructions", "true"])
        .output()
        .map(|o| {
            o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("not supported")
        })
        .unwrap_or(false);
    if !pmu {
        eprintln!(
            "SKIPPED: no hardware PMU here (`perf stat -e instructions true` fails or says <not supported>): hotspots samples cpu-clock without a counter group"
        );
        return;
    }
    let Scratch { tmp: _t, bin, dir } = scratch_with("hot.c", "hot", &[]);
    ok(&collect(&dir, &[], &[bin.to_str().unwrap(), "600"]));
    let m: serde_json::Value = manifest_json(&dir);
    assert_eq!(m["groups"][0]["leader"], "cycles", "{m}");
    let rows = hotspot_table(&dir);
    let hot = rows.get("hot_a").expect("hot_a row");
    let ipc: f64 = hot.get("ipc").and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert!(ipc > 0.0, "ipc of hot_a: {hot:?}");
    assert!(num(Some(hot), "instructions") > 0.0, "{hot:?}");
}

/// Python with the in-process agent: the collector's own samples of a Python process
/// are replaced by the agent's (which carry the Python stack of their instant); the
/// group values they read go to the thread's next agent sample, so page faults land
/// on the Python function that caused them.
#[test]
fn python_functions_get_their_page_faults() {
    // python3 is part of the machine (pyenv 3.11 here; .ci/run checks for it).
    let py = Command::new("python3")
        .arg("-c")
        .arg("import mmap")
        .output()
        .expect("python3 is not installed");
    assert!(py.status.success(), "python3 -c 'import mmap' failed");
    let t = shared_tempdir();
    // fault() touches 30000 fresh pages (THP off), spin() only computes. A member's
    // count goes to the sample that reads it (the delta since the previous one), and
    // the agent samples user mode only (a tick in the kernel's fault handler is no
    // sample): fault() computes a little between faults, and ends with 300,000 steps
    // without one, so that its last faults are read by its own samples, not by
    // spin()'s first one (on a loaded machine, up to 2,000 of them were).
    let script = write_script(
        t.path(),
        "pyfaults.py",
        "import mmap\nPAGES = 30000\ndef fault():\n    m = mmap.mmap(-1, PAGES * 4096)\n    m.madvise(mmap.MADV_NOHUGEPAGE)\n    s = 0\n    for i in range(0, PAGES * 4096, 4096):\n        m[i] = 1\n        for j in range(40):\n            s += j\n    for j in range(300000):\n        s += j\n    return m\ndef spin():\n    s = 0\n    for i in range(2000000):\n        s += i\n    return s\nkeep = fault()\nspin()\n",
    );
    let dir = t.path().join("run");
    let mut hw = Command::new(hwprof_bin());
    hw.env("HWPROF_AGENT_LIB", crate::python::agent_lib());
    let program = [std::ffi::OsStr::new("python3"), script.as_os_str()];
    ok(&collect_through(
        hw,
        &dir,
        &["-e", "{cpu-clock,page-faults}"],
        &program,
    ));
    let text = report_view(
        &dir,
        "hotspots",
        "csv",
        &["--frames", "python", "--top", "100000"],
    );
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let col = headers
        .iter()
        .position(|h| h == "page_faults")
        .expect("page_faults column");
    let faults_of = |f: &str| -> f64 {
        csv::Reader::from_reader(text.as_bytes())
            .records()
            .flatten()
            .filter(|rec| rec.get(0) == Some(f))
            .filter_map(|rec| rec.get(col)?.parse::<f64>().ok())
            .sum()
    };
    let (fault, spin) = (faults_of("fault"), faults_of("spin"));
    assert!(
        (fault - 30000.0).abs() <= 0.15 * 30000.0,
        "fault() has {fault} page faults (designed 30000 ± 15%)\n{text}"
    );
    assert!(
        spin <= 0.05 * fault,
        "spin() has {spin} page faults\n{text}"
    );
}
