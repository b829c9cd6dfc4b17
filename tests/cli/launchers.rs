//! Launchers are not the program: a Python run through pyenv's `python3` shim (a bash
//! script that runs some 40 short bash/pyenv helpers, then execs the interpreter) and
//! through `sh -c` reports one program process, the shim's samples apart as launcher
//! overhead, and the script's `main` near 100% total; under MPI the idle rank is named.
//!
//! Ground truth: `main` runs the whole script's work (a loop of ~1.5 s); only the
//! interpreter's start-up (site imports, ~0.2 s here) is outside it.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::*;

/// What both Python programs start with: `work(n)`, N rounds of arithmetic.
macro_rules! work_prelude {
    () => {
        r#"import sys
def work(n):
    s = 0
    for i in range(n):
        s += (i & 1023) * 3
    return s

"#
    };
}

const APP: &str = concat!(
    work_prelude!(),
    r#"def main():
    work(int(sys.argv[1]))

main()
"#
);

/// `python3` as found on PATH: on our machines the pyenv shim.
fn python3_on_path() -> String {
    let out = Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .expect("sh");
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!p.is_empty(), "python3 is not on PATH");
    p
}

fn summary(dir: &Path) -> Value {
    report_json(dir, "summary", &[])
}

fn collect(dir: &Path, cmd: &[&str]) {
    let out = Command::new(hwprof_bin())
        .args(["collect", "-q", "-r", dir.to_str().unwrap(), "--"])
        .args(cmd)
        .env("HWPROF_AGENT_LIB", crate::python::agent_lib())
        .output()
        .expect("run hwprof");
    ok(&out);
}

fn assert_one_program(dir: &Path, expect_launcher: bool) {
    let s = summary(dir);
    assert_eq!(s["processes"], 1, "one program process: {s:#}");
    // The interpreter is counted as sampled by its agent, whatever its pid ran before
    // the exec (the shim's bash, sampled by the collector's events).
    assert_eq!(
        s["sampled_by"]["agent"], 1,
        "the Python process is sampled by its agent: {s:#}"
    );
    let launcher = s["launcher_samples"].as_u64().unwrap();
    if expect_launcher {
        // The shim's processes are not Python, so the collector samples them from
        // outside once it has read their exec (`collect::fill`, within ~10 ms): its ~40
        // helpers of 1-3 ms each end unsampled, and on a loaded machine its bashes can
        // too (0 samples, once in CI). Each is still seen, apart from the program.
        let seen = s["launcher_processes_seen"].as_u64().unwrap_or(0);
        let names = s["launcher_names_seen"].to_string();
        assert!(
            seen >= 10 && names.contains("\"bash\""),
            "pyenv's bash helpers are launcher processes: {s:#}"
        );
        let sampled = s["launcher_processes"].as_u64().unwrap_or(0);
        assert!(sampled <= seen, "{s:#}");
        if launcher > 0 {
            let sampled_names = s["launcher_names"].to_string();
            assert!(sampled_names.contains("bash"), "{sampled_names}");
        } else {
            println!("the shim took no sample here ({seen} launcher processes seen)");
        }
        let text = report(dir, &["--view", "summary"]);
        let samples = if launcher == 1 { "sample" } else { "samples" };
        assert!(
            text.contains(&format!(
                "launcher overhead: {launcher} {samples} in {sampled} of {seen} launcher processes"
            )),
            "{text}"
        );
    }
    // The script's `main` (module `python`, file app.py): not the interpreter's C
    // `main`, nor `site.main` (start-up, 2-3%, in an order that ties may change).
    let csv = report_view(dir, "hotspots", "csv", &["--top", "1000"]);
    let main = csv
        .lines()
        .filter(|l| l.starts_with("main,python,") && l.contains("app.py"))
        .filter_map(|l| l.split(',').nth(7)?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    let top = report(dir, &["--view", "hotspots"]);
    assert!(
        main >= 85.0,
        "main's total is near 100%: {main}\n{s:#}\n{top}"
    );
}

#[test]
fn python_through_the_pyenv_shim_is_one_program() {
    let t = shared_tempdir();
    let app = t.path().join("app.py");
    std::fs::write(&app, APP).unwrap();
    let python3 = python3_on_path();
    let is_script = std::fs::read(&python3).is_ok_and(|b| b.starts_with(b"#!"));
    println!("python3 on PATH: {python3} (a script: {is_script})");
    let dir = t.path().join("shim");
    collect(&dir, &[&python3, app.to_str().unwrap(), "12000000"]);
    assert_one_program(&dir, is_script);
}

/// Locks mode through the shim (root: the kernel's switch-out stacks): the shim's bash
/// processes switch out with stacks past their 8 KiB copy (~40 of them here), the
/// program's Python stacks are shallow. The "stacks cut short" figures are the
/// program's: before, the launchers' cuts made it "15.8% of samples" and the advice to
/// collect again with a larger copy, for a program none of whose stacks was cut.
#[test]
fn a_launchers_cut_stacks_are_not_the_programs() {
    require_root!("locks mode's switch-out stacks of the shim need root");
    let t = shared_tempdir();
    let app = t.path().join("app.py");
    std::fs::write(&app, APP).unwrap();
    let python3 = python3_on_path();
    let dir = t.path().join("locks");
    let out = Command::new(hwprof_bin())
        .args([
            "collect",
            "-q",
            "-m",
            "locks",
            "-r",
            dir.to_str().unwrap(),
            "--",
        ])
        .args([python3.as_str(), app.to_str().unwrap(), "3000000"])
        .env("HWPROF_AGENT_LIB", crate::python::agent_lib())
        .output()
        .expect("run hwprof");
    ok(&out);
    let s = summary(&dir);
    println!(
        "launcher samples {}, program samples {}, cut {} of {}",
        s["launcher_samples"],
        s["program_samples"],
        s["stacks_cut_at_copy_size"],
        s["stacks_cut_of_samples"]
    );
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    assert!(
        n("launcher_samples") > 0 && n("program_samples") > 0,
        "{s:#}"
    );
    // Of the program's samples: the launchers' are not in the base.
    let base = n("stacks_cut_of_samples");
    assert!(
        base > 0 && base + n("launcher_samples") <= n("samples"),
        "{s:#}"
    );
    for key in [
        "stacks_cut_at_copy_size",
        "stacks_cut_at_untouched_page",
        "stacks_cut_at_frame_limit",
    ] {
        assert_eq!(s[key], 0, "{key}: {s:#}");
    }
    let text = report(&dir, &["--view", "summary"]);
    assert!(!text.contains("stacks cut short"), "{text}");
}

#[test]
fn python_through_sh_c_is_one_program() {
    let t = shared_tempdir();
    let app = t.path().join("app.py");
    std::fs::write(&app, APP).unwrap();
    // `; true` keeps sh alive: it forks python3 and waits (no exec of the last command).
    let line = format!("python3 {} 12000000; true", app.display());
    let dir = t.path().join("sh");
    collect(&dir, &["sh", "-c", &line]);
    assert_one_program(&dir, true);
    let s = summary(&dir);
    // sh forks python3 and waits: it may take no sample, but it is a launcher.
    assert!(
        s["launcher_names_seen"].to_string().contains("\"sh\""),
        "{s:#}"
    );
}

const RANK: &str = concat!(
    work_prelude!(),
    r#"from mpi4py import MPI

def main():
    comm = MPI.COMM_WORLD
    n = int(sys.argv[1])
    if comm.Get_rank() == comm.Get_size() - 1:
        n = 0  # the idle rank: only start-up and the barrier
    work(n)
    comm.Barrier()

main()
"#
);

/// Three ranks through the pyenv shim; rank 2 does no work of its own. Its shim's
/// helpers (~100 samples, half its own start-up) once made it look busy.
#[test]
fn mpi_idle_rank_through_the_shim_is_named() {
    let t = shared_tempdir();
    let app = t.path().join("rank.py");
    std::fs::write(&app, RANK).unwrap();
    let dir = t.path().join("mpi");
    let python3 = python3_on_path();
    let out = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", "3"])
        .arg(hwprof_bin())
        .args([
            "collect",
            "-q",
            "--no-finalize",
            "-r",
            dir.to_str().unwrap(),
        ])
        .args(["--", &python3, app.to_str().unwrap(), "25000000"])
        .env("HWPROF_AGENT_LIB", crate::python::agent_lib())
        .output()
        .expect("mpirun (Open MPI) is required: .ci/run installs openmpi-bin and mpi4py");
    ok(&out);
    ok(&hwprof(&["finalize", "-q", dir.to_str().unwrap()]));
    let csv = report_view(&dir, "ranks", "csv", &[]);
    println!("{csv}");
    let rows: Vec<(String, f64, String)> = parse_csv(&csv)
        .iter()
        .map(|x| (x[0].to_string(), x[5].parse().unwrap(), x[7].to_string()))
        .collect();
    assert_eq!(rows.len(), 3, "{csv}");
    for (rank, pom, idle) in &rows {
        let want = rank == "2";
        assert_eq!(
            idle == "true",
            want,
            "rank {rank} at {pom}% of the mean\n{csv}"
        );
    }
    // `--rank 2` gives rank 2's own total, not the job's.
    let s: Value = report_json(&dir, "summary", &["--rank", "2"]);
    let job = summary(&dir);
    assert!(
        s["total"].as_u64().unwrap() * 4 < job["total"].as_u64().unwrap(),
        "rank 2's total is its own: {} of {}",
        s["total"],
        job["total"]
    );
    let text = report(&dir, &["--rank", "2"]);
    assert!(text.contains("rank 2 alone:"), "{text}");
}
