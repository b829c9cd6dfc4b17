//! What a launch covers: every process of a Python launch is sampled (a static binary,
//! which no preloaded agent enters, by the collector's own events), the summary counts
//! processes by how they were sampled, and a Python launch that ends without Python
//! frames says so in every report's header.
//!
//! Ground truth: `DRIVER` runs `py_work` for 0.3 s of CPU time, then a statically linked
//! solver (`static_solve`, 0.6 s of CPU) and a dynamic one (`dynamic_solve`, 0.3 s),
//! built from `tests/programs/solver.c`. At 999 Hz each function's total samples are its
//! CPU seconds × 999 (cpu-clock counts CPU time, so this holds under load).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// What both Python drivers start with: `py_work(secs)` spins SECS of CPU time.
macro_rules! py_work_prelude {
    () => {
        r#"import subprocess, sys, time
def py_work(secs):
    end = time.process_time() + secs
    s = 0
    while time.process_time() < end:
        for i in range(10000):
            s += i
    return s
"#
    };
}

const DRIVER: &str = concat!(
    py_work_prelude!(),
    r#"d = sys.argv[1]
py_work(0.3)
subprocess.run([d + "/static_solver", "0.6"], check=True)
subprocess.run([d + "/dynamic_solver", "0.3"], check=True)
"#
);

/// (function, CPU seconds designed).
const DESIGN: [(&str, f64); 3] = [
    ("static_solve", 0.6),
    ("dynamic_solve", 0.3),
    ("py_work", 0.3),
];

fn setup(dir: &Path) -> PathBuf {
    build_c(
        dir,
        "solver.c",
        "static_solver",
        &["-static", "-DSOLVER_FN=static_solve"],
    );
    build_c(
        dir,
        "solver.c",
        "dynamic_solver",
        &["-DSOLVER_FN=dynamic_solve"],
    );
    let driver = dir.join("driver.py");
    write_executable(&driver, DRIVER);
    use std::os::unix::fs::PermissionsExt;
    for f in ["static_solver", "dynamic_solver"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    driver
}

/// What a failure needs to be understood: collect's stderr, the text summary and the
/// collector's per-process decisions.
fn evidence(dir: &Path, collect_stderr: &str) -> String {
    let summary = Command::new(hwprof_bin())
        .args(["report", dir.to_str().unwrap(), "--top", "8"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut filled = String::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("raw")) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_to_string(e.path().join("collector-sampled.json")) {
                filled.push_str(&t);
            }
        }
    }
    format!(
        "collect stderr:\n{collect_stderr}\nreport:\n{summary}\ncollector-sampled.json:\n{filled}"
    )
}

fn assert_shares(dir: &Path, who: &str, collect_stderr: &str) {
    let rows = hotspots(dir, &[]);
    // Total samples in csv are per-function totals (self+callees) as sample counts.
    let total = |f: &str| -> f64 {
        let h = rows.get(f).unwrap_or_else(|| {
            panic!(
                "{who}: {f} missing from the profile\n{}",
                evidence(dir, collect_stderr)
            )
        });
        h.total_pct
    };
    let v = report_json(dir, "summary", &[]);
    // Samples the kernel dropped (the collector starved on a loaded machine) are
    // reported as lost, not attributed: a solver may miss at most those.
    let lost = v["lost_samples"].as_f64().unwrap_or(0.0);
    let all: u64 = rows.values().map(|h| h.self_value).sum();
    for (f, secs) in DESIGN {
        let samples = total(f) / 100.0 * all as f64;
        let want = secs * 999.0;
        let err = (samples - want) / want;
        eprintln!(
            "{who}: {f}: {samples:.0} samples, designed {want:.0} ({:+.1}%), {lost} lost in the run",
            err * 100.0
        );
        assert!(
            err <= 0.10 && (samples + lost - want) / want >= -0.10,
            "{who}: {f} has {samples:.0} samples ({lost} lost in the run), designed {want:.0} (±10%)\n{}",
            evidence(dir, collect_stderr)
        );
    }
    let by = &v["sampled_by"];
    // The driver by its agent; both solvers (static: no agent can enter; dynamic: not
    // Python, its agent stays silent) by the collector.
    assert!(by["agent"].as_u64() >= Some(1), "{who}: {by}");
    assert!(by["collector"].as_u64() >= Some(2), "{who}: {by}");
    assert_eq!(
        by["not_sampled"].as_array().map(|a| a.len()),
        Some(0),
        "{who}: {by}"
    );
}

/// `HW collect -q -F 999 -r DIR -- PROGRAM...` with the embedded agent (any
/// `HWPROF_AGENT_LIB` of the test's environment removed), asserted successful: its
/// standard error.
fn collect_with_embedded_agent(
    mut hw: Command,
    dir: &Path,
    program: &[&std::ffi::OsStr],
) -> String {
    hw.env_remove("HWPROF_AGENT_LIB");
    let out = collect_through(hw, dir, &["-F", "999"], program);
    ok(&out);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn pyenv311() -> PathBuf {
    let home = std::env::var("HOME").expect("HOME");
    let p = Path::new(&home).join(".pyenv/versions/3.11.7/bin/python3");
    assert!(p.is_file(), "pyenv 3.11.7 is required ({})", p.display());
    p
}

#[test]
fn static_and_dynamic_solvers_of_a_python_driver_are_sampled() {
    let tmp = shared_tempdir();
    let driver = setup(tmp.path());
    let dir = tmp.path().join("root");
    let py = pyenv311();
    let program = [py.as_os_str(), driver.as_os_str(), tmp.path().as_os_str()];
    let stderr = collect_with_embedded_agent(Command::new(hwprof_bin()), &dir, &program);
    assert_shares(&dir, "root", &stderr);

    // An ordinary user (uid 65534, paranoid 2) with the system python.
    let sys_py = system_python_for_nobody();
    let dir = tmp.path().join("user");
    let program = [
        sys_py.as_os_str(),
        driver.as_os_str(),
        tmp.path().as_os_str(),
    ];
    let stderr = collect_with_embedded_agent(hwprof_command(true, tmp.path()), &dir, &program);
    assert_shares(&dir, "uid 65534", &stderr);
}

/// A Python script that only loops (3 million additions).
const SUM_LOOP: &str = "s = 0\nfor i in range(3_000_000):\n    s += i\n";

#[test]
fn python_launch_without_python_frames_says_so_in_every_report() {
    let tmp = shared_tempdir();
    let script = write_script(tmp.path(), "w.py", SUM_LOOP);
    let dir = tmp.path().join("r");
    // A library that is not the agent: nothing says hello, no Python frame is captured.
    let mut hw = Command::new(hwprof_bin());
    hw.env("HWPROF_AGENT_LIB", "/lib/x86_64-linux-gnu/libm.so.6");
    let py = pyenv311();
    ok(&collect_through(
        hw,
        &dir,
        &[],
        &[py.as_os_str(), script.as_os_str()],
    ));
    for view in ["summary", "hotspots", "lines", "threads"] {
        let text = report(&dir, &["--view", view]);
        assert!(
            text.starts_with("WARNING: Python frames were expected"),
            "--view {view}:\n{text}"
        );
    }
    let out = Command::new(hwprof_bin())
        .args(["report", dir.to_str().unwrap(), "--format", "csv"])
        .output()
        .expect("report");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Python frames were expected"),
        "csv: the warning goes to stderr"
    );
}

/// The Python driver of the set-id tests: `py_work` for 0.3 s of CPU, then the solver
/// `argv[1]` for 0.5 s of CPU.
const SETID_DRIVER: &str = concat!(
    py_work_prelude!(),
    r#"py_work(0.3)
subprocess.run([sys.argv[1], "0.5"], check=True)
"#
);

/// Builds `setid_solve` from solver.c as `name`, owned by `uid`, mode 4755 (set-uid).
fn setid_solver(dir: &Path, name: &str, uid: u32) -> PathBuf {
    let bin = build_c(dir, "solver.c", name, &["-DSOLVER_FN=setid_solve"]);
    std::os::unix::fs::chown(&bin, Some(uid), Some(uid)).expect("chown");
    use std::os::unix::fs::PermissionsExt;
    // chown clears the set-id bits: set them after.
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    bin
}

/// A set-id test's files in a new shared temporary directory: the solver (`setid_solver`
/// as NAME, owned by UID) and the driver script. None, after saying why, when not root.
fn setid_case(
    name: &str,
    uid: u32,
    why_root: &str,
) -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    if !root_or_skip(why_root) {
        return None;
    }
    let tmp = shared_tempdir();
    let solver = setid_solver(tmp.path(), name, uid);
    let driver = tmp.path().join("driver.py");
    write_executable(&driver, SETID_DRIVER);
    Some((tmp, solver, driver))
}

fn summary_json(dir: &Path) -> serde_json::Value {
    report_json(dir, "summary", &[])
}

/// As root, a Python driver runs a set-uid copy (owner uid 65534) of a C solver: the
/// loader ignores LD_PRELOAD there (secure execution) and the exec detaches hwprof's
/// inherited events, so the collector samples it with its own events, mappings
/// included: `setid_solve` gets its 0.5 CPU-seconds × 999 samples (±10%).
#[test]
fn setuid_solver_of_a_python_driver_is_sampled_as_root() {
    let why = "a set-uid program of another user needs root to be sampled";
    let Some((tmp, solver, driver)) = setid_case("setid_solver", 65534, why) else {
        return;
    };
    let dir = tmp.path().join("r");
    let py = pyenv311();
    let program = [py.as_os_str(), driver.as_os_str(), solver.as_os_str()];
    collect_with_embedded_agent(Command::new(hwprof_bin()), &dir, &program);
    let rows = hotspots(&dir, &[]);
    let all: u64 = rows.values().map(|h| h.self_value).sum();
    for (f, secs) in [("setid_solve", 0.5), ("py_work", 0.3)] {
        let pct = rows
            .get(f)
            .unwrap_or_else(|| panic!("{f} missing from the profile: {rows:#?}"))
            .total_pct;
        let samples = pct / 100.0 * all as f64;
        let want = secs * 999.0;
        eprintln!("{f}: {samples:.0} samples, designed {want:.0}");
        assert!(
            ((samples - want) / want).abs() <= 0.10,
            "{f}: {samples:.0} samples, designed {want:.0} (±10%)"
        );
    }
    let by = &summary_json(&dir)["sampled_by"];
    assert!(by["collector"].as_u64() >= Some(1), "{by}");
    assert_eq!(
        by["not_sampled"].as_array().map(|a| a.len()),
        Some(0),
        "{by}"
    );
}

/// As uid 65534, the driver runs a set-uid-root program: the kernel lets no user sample
/// a process that runs with another user's rights. The summary names the process and
/// says why (uid, the kernel's rule, the fix) instead of leaving it out silently.
#[test]
fn setuid_root_program_under_an_ordinary_user_is_named_not_sampled() {
    let why = "making a set-uid-root program needs root";
    let Some((tmp, solver, driver)) = setid_case("setuid_root_solver", 0, why) else {
        return;
    };
    let dir = tmp.path().join("user");
    let sys_py = system_python_for_nobody();
    let program = [sys_py.as_os_str(), driver.as_os_str(), solver.as_os_str()];
    collect_with_embedded_agent(hwprof_command(true, tmp.path()), &dir, &program);
    let by = &summary_json(&dir)["sampled_by"];
    let not = by["not_sampled"].as_array().cloned().unwrap_or_default();
    assert_eq!(not.len(), 1, "{by}");
    let line = not[0].as_str().unwrap_or_default();
    for part in [
        "setuid_root_solver",
        "set-id",
        "runs as uid 0",
        "CAP_PERFMON",
    ] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
    let text = ok(&Command::new(crate::common::hwprof_for_nobody(tmp.path()))
        .args(["report", dir.to_str().unwrap(), "--view", "summary"])
        .output()
        .expect("report"));
    assert!(text.contains("1 not sampled"), "{text}");
    assert!(text.contains("not sampled: "), "{text}");
    // The driver itself is sampled: py_work is there.
    assert!(hotspots(&dir, &[]).contains_key("py_work"), "{text}");
}
