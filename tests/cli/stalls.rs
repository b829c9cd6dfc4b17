//! The collector never stalls (issue 16, part B): a mapped path that became a FIFO, perf
//! maps where CPython writes them whatever $TMPDIR says, and memory that stays flat over
//! many short-lived children.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::python::{agent_lib, python311};

/// Runs `cmd`, killing it (and failing) past `limit`.
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?} (blocked?); stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_mapped_file_replaced_by_a_fifo_does_not_block() {
    let tmp = shared_tempdir();
    let bin = build_c(tmp.path(), "fifo_map.c", "fifo_map", &[]);
    let mapped = tmp.path().join("mapped.bin");
    let dir = tmp.path().join("r");
    let mut c = Command::new(hwprof_bin());
    c.arg("collect")
        .arg("-r")
        .arg(&dir)
        .arg("-q")
        .arg("--archive")
        .arg("--")
        .arg(&bin)
        .arg(&mapped);
    let out = run_within(c, Duration::from_secs(60));
    ok(&out);
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata(&mapped)
            .expect("fifo")
            .file_type()
            .is_fifo(),
        "the program did not leave a FIFO"
    );
    let mut r = Command::new(hwprof_bin());
    r.arg("report")
        .arg(&dir)
        .args(["--view", "hotspots", "--format", "csv"]);
    let out = run_within(r, Duration::from_secs(60));
    let text = ok(&out);
    assert!(text.contains("main"), "no main in:\n{text}");
}

/// addr2line's loader opened `<binary>.dwp` and every `.dwo` the DWARF names with a
/// plain `open`: a FIFO at either name blocked finalize for ever. Both are replaced by
/// FIFOs after collection: finalize finishes and still names the hot functions.
#[test]
fn split_dwarf_files_replaced_by_fifos_do_not_block_finalize() {
    let tmp = shared_tempdir();
    let bin = build_c(tmp.path(), "hot.c", "hot", &["-gsplit-dwarf"]);
    let dwo = tmp.path().join("hot.dwo");
    assert!(dwo.is_file(), "cc -gsplit-dwarf wrote no {dwo:?}");
    let dir = tmp.path().join("r");
    ok(&collect(
        &dir,
        &["--no-finalize"],
        &[bin.to_str().unwrap(), "300"],
    ));
    let dwp = tmp.path().join("hot.dwp");
    for fifo in [&dwo, &dwp] {
        let _ = std::fs::remove_file(fifo);
        let status = Command::new("mkfifo").arg(fifo).status().expect("mkfifo");
        assert!(status.success());
    }
    let mut f = Command::new(hwprof_bin());
    f.arg("finalize").arg("-q").arg(&dir);
    ok(&run_within(f, Duration::from_secs(60)));
    let rows = hotspots(&dir, &[]);
    let a = rows.get("hot_a").map_or(0.0, |h| h.self_pct);
    assert!(a > 40.0, "hot_a {a:.1}%: {rows:?}");
}

#[test]
fn perf_maps_are_read_from_tmp_whatever_tmpdir_says() {
    let home = std::env::var("HOME").unwrap_or_default();
    let py = Path::new(&home).join(".pyenv/versions/3.12.1/bin/python3");
    assert!(py.is_file(), "pyenv 3.12.1 is required");
    let tmp = shared_tempdir();
    let elsewhere = tmp.path().join("tmpdir");
    std::fs::create_dir(&elsewhere).unwrap();
    let script = write_script(
        tmp.path(),
        "work.py",
        "def heavy(n):\n    s = 0\n    for i in range(n):\n        s += i % 7\n    return s\nheavy(3_000_000)\n",
    );
    let dir = tmp.path().join("r");
    let out = Command::new(hwprof_bin())
        .arg("collect")
        .arg("-r")
        .arg(&dir)
        .args(["-q", "--python", "perfmap", "--"])
        .arg(&py)
        .arg(&script)
        .env("TMPDIR", &elsewhere)
        .env("HWPROF_AGENT_LIB", agent_lib())
        .output()
        .expect("hwprof");
    ok(&out);
    let raw = first_raw_dir(&dir);
    let copied = std::fs::read_dir(&raw).expect("raw").flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("perf-") && n.ends_with(".map"))
    });
    assert!(
        copied,
        "no perf-PID.map copied from /tmp (TMPDIR={elsewhere:?})"
    );
    let rows = hotspots(&dir, &["--frames", "python"]);
    let heavy = rows.get("heavy").map_or(0.0, |h| h.self_pct);
    assert!(heavy > 50.0, "heavy {heavy:.1}%: {rows:?}");
}

/// Forks `argv[1]` children, each busy ~3 ms in Python, one at a time.
const FORKS: &str = r#"import os, sys
def child_work():
    s = 0
    for i in range(40_000):
        s += i % 7
    return s
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        child_work()
        os._exit(0)
    os.waitpid(pid, 0)
"#;

/// Peak RSS (VmHWM, KiB) of a `hwprof collect` of FORKS with `n` children, read from
/// /proc while it runs.
fn collector_peak_kib(tmp: &Path, n: u32) -> u64 {
    let script = tmp.join("forks.py");
    std::fs::write(&script, FORKS).unwrap();
    let dir = tmp.join(format!("r{n}"));
    let (py, n_arg) = (python311(), n.to_string());
    let program = [py.as_os_str(), script.as_os_str(), n_arg.as_ref()];
    let mut child = spawn_collect_with_agent(&dir, &["--no-finalize"], &program, Stdio::null());
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    while child.try_wait().expect("wait").is_none() {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("hwprof");
    assert_success(&out, "collect failed");
    peak
}

#[test]
fn collector_memory_stays_flat_over_a_thousand_children() {
    let tmp = shared_tempdir();
    let small = collector_peak_kib(tmp.path(), 100);
    let large = collector_peak_kib(tmp.path(), 1000);
    eprintln!("collector peak RSS: 100 children {small} KiB, 1000 children {large} KiB");
    assert!(small > 0 && large > 0);
    assert!(
        large <= small + 8 * 1024,
        "peak RSS grew from {small} KiB to {large} KiB with 10x the children"
    );
}

/// Starts `argv[1]` Python children at once (each its own interpreter, so each agent
/// connects), each busy 0.6 s (wall); the parent then prints how many exited 0.
const CONCURRENT_SPAWNS: &str = r#"import subprocess, sys
n = int(sys.argv[1])
child = """import time
end = time.time() + 0.6
s = 0
while time.time() < end:
    for i in range(2000):
        s += i
"""
procs = [subprocess.Popen([sys.executable, "-c", child]) for _ in range(n)]
ok = sum(1 for p in procs if p.wait() == 0)
print(f"children ok {ok}/{n}")
"#;

/// hwprof's own CPU time (utime + stime of all its threads, ticks) from /proc.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// RLIMIT_NOFILE 15, soft and hard (hwprof cannot raise it; 14 is too few to start, see
/// the end), and 60 Python processes at once whose agents all want a connection: accept
/// fails with EMFILE, or reading /proc to check the peer does. hwprof must say so (and
/// not blame the peer), not spin on the readable listener, keep
/// sampling with its own events (the agents that cannot connect sample nothing), and
/// leave the program's output unchanged.
#[test]
fn a_low_open_files_limit_keeps_samples_and_does_not_spin() {
    let tmp = shared_tempdir();
    let py = pyenv_required("3.12.1");
    let script = tmp.path().join("spawns.py");
    std::fs::write(&script, CONCURRENT_SPAWNS).unwrap();
    let dir = tmp.path().join("r");
    let mut child = Command::new("prlimit")
        .arg("--nofile=15:15")
        .arg(hwprof_bin())
        .arg("collect")
        .arg("-r")
        .arg(&dir)
        .args(["--no-finalize", "--"])
        .arg(&py)
        .arg(&script)
        .arg("60")
        .env("HWPROF_AGENT_LIB", agent_lib())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux)");
    // prlimit execs hwprof: same pid.
    let pid = child.id();
    let started = Instant::now();
    let mut ticks = 0;
    while child.try_wait().expect("wait").is_none() {
        ticks = cpu_ticks(pid).unwrap_or(ticks);
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "collect hangs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = started.elapsed().as_secs_f64();
    let out = child.wait_with_output().expect("hwprof");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "collect failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("children ok 60/60"),
        "program output changed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_says(
        &stderr,
        &[
            "open-files limit 15 (hard limit 15)",
            "hwprof samples with its own events too",
        ],
        "no notice of the low limit",
    );
    assert_says(
        &stderr,
        &["out of open files", "EMFILE"],
        "no agent connection failed (the limit no longer reaches EMFILE?)",
    );
    assert!(
        !stderr.contains("not of the target's process tree"),
        "a peer refused for our own lack of fds: {stderr}"
    );
    // /proc counts in clock ticks: USER_HZ, 100 per second on Linux.
    let cpu = ticks as f64 / 100.0;
    eprintln!("collector CPU {cpu:.2} s over {wall:.2} s");
    assert!(
        cpu < 0.5 * wall,
        "the collector used {cpu:.2} s of CPU in {wall:.2} s (spinning on EMFILE?)"
    );
    // 60 processes busy 0.6 s on the machine's CPUs: at least ~0.6 CPU-second sampled
    // at the default rate (1000 Hz by default; half is a wide margin).
    let mut f = Command::new(hwprof_bin());
    f.arg("finalize").arg("-q").arg(&dir);
    ok(&run_within(f, Duration::from_secs(120)));
    let rows = hotspots(&dir, &[]);
    let total: u64 = rows.values().map(|h| h.self_value).sum();
    eprintln!("{total} samples kept");
    assert!(total >= 300, "{total} samples: {rows:?}");
    // Too few fds to start at all: an error that names the limit.
    let out = Command::new("prlimit")
        .arg("--nofile=8:8")
        .arg(hwprof_bin())
        .arg("collect")
        .arg("-r")
        .arg(tmp.path().join("r8"))
        .args(["--", "true"])
        .output()
        .expect("prlimit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("raise the open-files limit"), "{stderr}");
}
