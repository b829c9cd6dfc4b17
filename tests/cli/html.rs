//! The HTML report in a real browser: real runs exported with `--format html`, opened
//! in headless Chromium by `tests/browser/check_report.py` (Python playwright driving
//! Debian's /usr/bin/chromium), asserted against each workload's designed truth:
//! - tests/programs/hot.c: hot_a does 3/4 of work()'s work, hot_b 1/4, steadily over
//!   the run (so half the time range holds about half the samples);
//! - a Python script whose `heavy` loop does 3× the work of `light`'s;
//! - tests/programs/touch256.c in memory mode: the page's RSS curve peaks at the peak
//!   `report --view summary` gives;
//! - two fake MPI ranks of hot.c in one results directory (rank variables and a shared
//!   job id): one bar per rank.
//!
//! Screenshots go to `target/html-screenshots/` (CI artifacts, not committed).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::common::*;

fn screenshot_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/html-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Open the page in Chromium and measure it (see tests/browser/check_report.py).
pub fn check_page(page: &Path, name: &str, extra: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/check_report.py");
    let shot = screenshot_dir().join(format!("{name}.png"));
    let out = Command::new("python3")
        .arg(&script)
        .arg(page)
        .arg(&shot)
        .args(extra)
        .output()
        .expect("run python3 tests/browser/check_report.py");
    assert_success(
        &out,
        "the browser check failed (needs chromium from apt and playwright from .ci/requirements.txt)",
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("check_report.py prints JSON");
    assert_eq!(
        v["console_errors"],
        serde_json::json!([]),
        "{name}: console errors"
    );
    assert_eq!(
        v["network_requests"],
        serde_json::json!([]),
        "{name}: the page fetched something"
    );
    v
}

fn names(v: &Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn width_of(v: &Value, f: &str) -> f64 {
    v["widths_before_click"][f]
        .as_array()
        .and_then(|a| a.iter().filter_map(Value::as_f64).reduce(f64::max))
        .unwrap_or_else(|| panic!("no {f} box drawn: {v:#}"))
}

#[test]
fn html_report_of_the_designed_c_program() {
    let Scratch { tmp: _t, bin, dir } = scratch_with("hot.c", "hot", &["-fno-omit-frame-pointer"]);
    // At 4,999 Hz: at 999 Hz a fast machine gave 481 samples, under the 500 asked.
    ok(&collect(&dir, &SHARES_HZ, &[bin.to_str().unwrap(), "600"]));
    let page = export_html(&dir);
    let v = check_page(&page, "hot", &["--search", "hot_a", "--click", "hot_a"]);

    // The flame graph: hot_a about 3x hot_b's width.
    let ratio = width_of(&v, "hot_a") / width_of(&v, "hot_b");
    assert!((2.4..=3.8).contains(&ratio), "hot_a/hot_b width {ratio:.2}");
    // Zoomed into hot_a: work and main stay visible, as breadcrumbs and boxes.
    let crumbs = names(&v["breadcrumbs"]);
    let after = names(&v["names_after_click"]);
    for f in ["main", "work", "hot_a"] {
        assert!(crumbs.contains(&f.to_string()), "breadcrumbs {crumbs:?}");
        assert!(
            after.contains(&f.to_string()),
            "{f} not visible after zoom: {after:?}"
        );
    }
    assert!(
        !after.contains(&"hot_b".to_string()),
        "hot_b is outside hot_a"
    );
    assert!(
        v["clicked_width"].as_f64().unwrap() >= v["flame_width"].as_f64().unwrap() - 2.0,
        "the zoomed box fills the width"
    );
    assert_eq!(
        names(&v["breadcrumbs_after_escape"])
            .last()
            .map(String::as_str),
        Some("work"),
        "Escape zooms out one level"
    );
    // Search: the highlighted share is hot_a's total share in the report.
    let hot = report_json(&dir, "hotspots", &[]);
    let hot_a = json_row(&hot, "rows", "function", "hot_a").unwrap_or_else(|| panic!("{hot:#}"));
    let want = hot_a["total_pct"].as_f64().unwrap() / 100.0;
    let got = v["search_share"].as_f64().unwrap();
    assert!(
        (got - want).abs() < 0.002,
        "search share {got} vs report {want}"
    );
    assert!(v["search_matches"].as_u64().unwrap() >= 1);
    // Lines: hot_a's line with its source text.
    let lines = v["lines"].as_array().unwrap();
    let line = lines
        .iter()
        .find(|l| l["function"] == "hot_a")
        .unwrap_or_else(|| panic!("no hot_a line: {lines:?}"));
    let text = line["hot"].as_str().unwrap_or("");
    assert!(
        text.contains("void hot_a(long n)") && text.contains("SPIN(3 * n)"),
        "hot_a's line text: {text:?}"
    );
    // Time: selecting the first half of the range keeps the samples profile.db's
    // timeline puts there (about half when the machine is quiet; cpu-clock counts CPU
    // time, so a loaded machine moves samples between the two halves of wall time).
    let all = v["all_samples"].as_f64().unwrap();
    let half = v["samples_first_half"].as_f64().unwrap();
    assert_eq!(v["samples_before"].as_f64().unwrap(), all);
    assert!(all >= 500.0, "{all} samples");
    let p = hwprof::profile::Profile::load(&dir).unwrap();
    let buckets: u64 = p.meta_str("timeline_buckets").parse().unwrap();
    let want: u64 = p
        .timeline
        .iter()
        .filter(|r| 2 * u64::from(r.bucket) < buckets)
        .map(|r| r.count)
        .sum();
    println!("first half: page {half}, profile.db {want}, of {all}");
    assert!(
        (half - want as f64).abs() <= 0.01 * all,
        "first half: page {half}, profile.db {want}, of {all}"
    );
    assert!(
        (0.25..=0.75).contains(&(half / all)),
        "first half: {half} of {all}"
    );
    // Header: the run's notices; keyboard: arrows move the focus in the graph.
    let m: Value = manifest_json(&dir);
    for n in m["notices"].as_array().unwrap() {
        assert!(
            v["notices"].as_array().unwrap().contains(n),
            "notice {n} missing: {}",
            v["notices"]
        );
    }
    assert!(
        v["focused_after_keys"].is_string(),
        "{}",
        v["focused_after_keys"]
    );
}

#[test]
fn html_report_of_a_python_run() {
    let t = shared_tempdir();
    let script = t.path().join("work.py");
    std::fs::write(
        &script,
        "def heavy(n):\n    s = 0\n    for i in range(3 * n):\n        s += i\n    return s\n\n\
         def light(n):\n    s = 0\n    for i in range(n):\n        s += i\n    return s\n\n\
         for _ in range(8):\n    heavy(400000)\n    light(400000)\n",
    )
    .unwrap();
    let py = super::python::python311();
    let dir = t.path().join("run");
    let out = Command::new(hwprof_bin())
        .args(["collect", "-q", "-r"])
        .arg(&dir)
        .arg("--")
        .arg(&py)
        .arg(&script)
        .env("HWPROF_AGENT_LIB", super::python::agent_lib())
        .output()
        .unwrap();
    ok(&out);
    let page = export_html(&dir);
    let v = check_page(
        &page,
        "python",
        &["--frames", "python", "--search", "heavy"],
    );
    let py_names = names(&v["names_after_frames"]);
    let is = |prefix: &str| py_names.iter().any(|n| n.starts_with(prefix));
    assert!(
        is("heavy (") && is("light ("),
        "Python frames: {py_names:?}"
    );
    // Native code run below a Python frame (the loop's integer adds and range
    // iteration) is folded into it by the Python toggle, as with `--frames python`;
    // stacks with no Python frame (interpreter start-up) keep their native frames.
    let all_names = names(&v["names"]);
    let below_python = ["rangeiter_next", "_PyLong_Add", "x_add", "long_add"];
    assert!(
        all_names.iter().any(|n| below_python.contains(&n.as_str())),
        "all frames show the interpreter under the Python frames: {all_names:?}"
    );
    assert!(
        !py_names.iter().any(|n| below_python.contains(&n.as_str())),
        "the Python toggle folds native code below Python frames: {py_names:?}"
    );
    let share = v["search_share"].as_f64().unwrap();
    assert!((0.55..=0.85).contains(&share), "heavy's share {share}");
    let lines = v["lines"].as_array().unwrap();
    let top = lines.first().unwrap_or_else(|| panic!("no lines"));
    assert!(
        top["hot"].as_str().unwrap_or("").contains("s += i")
            || top["hot"]
                .as_str()
                .unwrap_or("")
                .contains("for i in range(3 * n)"),
        "hottest line: {top}"
    );
}

#[test]
fn html_report_of_a_memory_run() {
    let t = shared_tempdir();
    let bin = crate::memory::build_touch256(t.path());
    let dir = t.path().join("run");
    ok(&collect(&dir, &["-m", "memory"], &[bin.to_str().unwrap()]));
    let page = export_html(&dir);
    let v = check_page(&page, "memory", &["--search", "big_alloc"]);
    let peak = report_json(&dir, "summary", &[])["peak_rss_bytes"]
        .as_f64()
        .expect("peak RSS in the summary");
    assert!(peak > 200.0 * 1048576.0, "peak {peak}");
    assert_eq!(v["rss_max_bytes"].as_f64().unwrap(), peak);
    let share = v["search_share"].as_f64().unwrap();
    assert!(share >= 0.85, "big_alloc's share of bytes {share}");
}

#[test]
fn html_report_of_two_mpi_ranks() {
    let Scratch { tmp: _t, bin, dir } = scratch_with("hot.c", "hot", &["-fno-omit-frame-pointer"]);
    let ranks: Vec<_> = (0..2)
        .map(|r| {
            Command::new(hwprof_bin())
                .args(["collect", "-q", "-r"])
                .arg(&dir)
                .arg("--")
                .arg(&bin)
                .arg("200")
                .env("OMPI_COMM_WORLD_RANK", r.to_string())
                .env("OMPI_COMM_WORLD_SIZE", "2")
                .env("SLURM_JOB_ID", "4242")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in ranks {
        assert!(c.wait().unwrap().success());
    }
    ok(&hwprof(&["finalize", "-q", dir.to_str().unwrap()]));
    let page = export_html(&dir);
    let v = check_page(&page, "mpi", &[]);
    assert_eq!(names(&v["rank_bars"]), ["0", "1"], "one bar per rank");
    let mut tracks = names(&v["tracks"]);
    tracks.sort();
    assert_eq!(tracks, ["rank 0", "rank 1"], "one time track per rank");
    assert!(v["heat_rows"].as_u64().unwrap() >= 2);
}

#[test]
fn report_open_writes_the_page_and_starts_the_browser() {
    let Scratch { tmp: t, bin, dir } = scratch_with("hot.c", "hot", &["-fno-omit-frame-pointer"]);
    ok(&collect(&dir, &[], &[bin.to_str().unwrap(), "50"]));
    // A "browser" that records the file it was given.
    let got = t.path().join("opened");
    let browser = t.path().join("browser.sh");
    write_executable(
        &browser,
        // Written whole, then renamed: the test polls for the file.
        &format!(
            "#!/bin/sh\necho \"$1\" > {0}.part && mv {0}.part {0}\n",
            got.display()
        ),
    );
    let out = Command::new(hwprof_bin())
        .args(["report", dir.to_str().unwrap(), "--open"])
        .env("BROWSER", &browser)
        .output()
        .unwrap();
    ok(&out);
    let page = dir.join("report.html");
    assert!(page.is_file());
    for _ in 0..50 {
        if got.is_file() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let opened = std::fs::read_to_string(&got).expect("the browser ran");
    assert_eq!(opened.trim(), page.to_str().unwrap());
    // No browser at all: the path and what to do.
    let out = Command::new(hwprof_bin())
        .args(["report", dir.to_str().unwrap(), "--open"])
        .env("BROWSER", "")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("report.html") && err.contains("no browser"),
        "{err}"
    );
}
