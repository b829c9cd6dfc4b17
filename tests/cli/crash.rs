//! Crash consistency (docs/security.md): a run cut short — hwprof SIGKILLed, the target
//! SIGKILLed, SIGTERM as Slurm sends it, the disk filling up — leaves a results
//! directory that finalize reads up to the last flush, marked incomplete with the
//! reason, and hot.c's designed 3:1 split between hot_a and hot_b holds on what was kept.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// `hwprof collect -q --no-finalize -r DIR -- hot ROUNDS`, running.
fn start_collect(dir: &Path, bin: &Path, rounds: &str) -> Child {
    Command::new(hwprof_bin())
        .args(["collect", "-q", "--no-finalize", "-r"])
        .arg(dir)
        .arg("--")
        .arg(bin)
        .arg(rounds)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hwprof")
}

/// The launched target's pid, from its raw directory's name (`<host>.-.<pid>`).
/// Waits (at least 2 s, at most 60 s) until the target has run 0.5 s of CPU time, so
/// that what is kept has enough samples to show the designed split even when a loaded
/// machine gives the target a fraction of a CPU (2 s of wall time once gave 91 samples).
fn wait_for_cpu(pid: i32) {
    let start = Instant::now();
    let ticks = 100.0; // USER_HZ
    loop {
        let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
                let utime: f64 = rest.get(11)?.parse().ok()?;
                let stime: f64 = rest.get(12)?.parse().ok()?;
                Some((utime + stime) / ticks)
            })
            .unwrap_or(0.0);
        let waited = start.elapsed();
        if (cpu >= 0.5 && waited >= Duration::from_secs(2)) || waited >= Duration::from_secs(60) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn target_pid(dir: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(rd) = std::fs::read_dir(dir.join("raw"))
            && let Some(pid) = rd
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.rsplit('.').next()?.parse().ok())
                .next()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no raw directory in {dir:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a pid we started.
    unsafe { libc::kill(pid, sig) };
}

/// Wait until a process that is not our child is gone.
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            break; // a zombie waiting for its reaper: its run is over
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// hot.c (4000 rounds) built into a new scratch and collected by a running
/// `hwprof collect --no-finalize`, once the target has run long enough to show the
/// split: the scratch, its results dir, the collector and the target's pid.
fn hot_running() -> (Scratch, PathBuf, Child, i32) {
    let s = scratch_with("hot.c", "hot", &[]);
    let dir = s.dir.clone();
    let hw = start_collect(&dir, &s.bin, "4000");
    let pid = target_pid(&dir);
    wait_for_cpu(pid);
    (s, dir, hw, pid)
}

/// Finalize, check it says the run is incomplete, and check the summary and the split.
fn finalize_incomplete(dir: &Path, reason: &str) {
    let out = hwprof(&["finalize", dir.to_str().unwrap()]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the run is incomplete") && err.contains(reason),
        "finalize's lines: {err}"
    );
    let text = report(dir, &[]);
    assert!(
        text.starts_with("WARNING: incomplete run:") && text.contains(reason),
        "report header: {text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&report(dir, &["--format", "json"])).unwrap();
    assert_eq!(json["complete"], false, "{json:#}");
    assert!(
        json["incomplete"].as_str().unwrap().contains(reason),
        "{json:#}"
    );
    let samples = json["samples"].as_u64().unwrap();
    assert!(samples >= 100, "only {samples} samples kept");
    let rows = hotspots(dir, &[]);
    let (a, b) = (self_pct(&rows, "hot_a"), self_pct(&rows, "hot_b"));
    let share = a / (a + b);
    println!("{reason}: {samples} samples kept, hot_a/(hot_a+hot_b) = {share:.3}");
    assert!((share - 0.75).abs() <= 0.07, "hot_a {a}% hot_b {b}%");
}

/// Regression (issue 16): `finalize` refused a directory whose collector was killed
/// ("no manifest.json"); now the provisional manifest makes it finalizable.
#[test]
fn sigkill_of_hwprof_keeps_what_was_flushed() {
    let (_s, dir, mut hw, pid) = hot_running();
    let _ = hw.kill();
    let _ = hw.wait();
    let m = manifest_json(&dir);
    assert_eq!(m["complete"], false, "{m:#}");
    assert_eq!(m["incomplete_reason"], "collecting", "{m:#}");
    // The target is not hwprof's business any more: end it to free the CPU.
    kill(pid, libc::SIGKILL);
    wait_gone(pid);
    finalize_incomplete(&dir, "hwprof stopped before collection ended");
}

#[test]
fn sigkill_of_the_target_is_an_incomplete_run() {
    let (_s, dir, hw, pid) = hot_running();
    kill(pid, libc::SIGKILL);
    let out = hw.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + 9));
    let m = manifest_json(&dir);
    assert_eq!(m["complete"], false, "{m:#}");
    finalize_incomplete(&dir, "the target was killed by SIGKILL");
}

/// Slurm's `scancel` (and the end of a time limit) sends SIGTERM, then SIGKILL after
/// KillWait: hwprof passes SIGTERM on and writes its final manifest at once.
#[test]
fn sigterm_as_slurm_sends_it_ends_with_a_final_manifest() {
    let (_s, dir, hw, _pid) = hot_running();
    let sent = Instant::now();
    kill(hw.id() as i32, libc::SIGTERM);
    let out = hw.wait_with_output().unwrap();
    let took = sent.elapsed();
    assert_eq!(out.status.code(), Some(128 + 15));
    assert!(took < Duration::from_secs(5), "took {took:?} after SIGTERM");
    let m = manifest_json(&dir);
    assert_eq!(m["incomplete_reason"], "the target was killed by SIGTERM");
    assert!(m["duration_s"].as_f64().unwrap() > 1.5, "{m:#}");
    finalize_incomplete(&dir, "the target was killed by SIGTERM");
}

/// A tmpfs mounted for the test, unmounted at the end.
struct SmallFs(PathBuf);

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_stops_recording_and_keeps_a_valid_marked_dir() {
    require_root!("mounting a small tmpfs needs root");
    let t = shared_tempdir();
    let bin = build_c(t.path(), "hot.c", "hot", &[]);
    let mnt = t.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    // kallsyms (~5 MB, copied as root) + the 1 MiB reserve + about a second of
    // 8 KiB stack copies at 1 kHz.
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let _fs = SmallFs(mnt.clone());
    let dir = mnt.join("run");
    let out = start_collect(&dir, &bin, "2500")
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // The target ran to its end, unprofiled after the disk filled up.
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("done"));
    assert!(
        err.contains("disk full (ENOSPC) writing perf.data: recording stopped; the target runs on"),
        "{err}"
    );
    let m = manifest_json(&dir);
    assert_eq!(m["complete"], false, "{m:#}");
    // perf reads what was kept too.
    need_perf();
    {
        let raw = first_raw_dir(&dir);
        let perf = Command::new("perf")
            .args(["script", "-F", "ip", "-i"])
            .arg(raw.join("perf.data"))
            .output()
            .unwrap();
        assert!(perf.status.success(), "{perf:?}");
    }
    // The profile goes elsewhere: the small disk is full.
    let copy = t.path().join("copy");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&dir)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    finalize_incomplete(&copy, "disk full (ENOSPC)");
}
