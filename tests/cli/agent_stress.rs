//! The agent never harms its target: `tests/programs/agent_stress.py` (arena churn, small
//! thread stacks with deep C-level recursion, SIGTRAP blocked in a thread, its own
//! SIGTRAP handler and sigaltstacks, `os.closerange` then a socketpair on the agent's
//! socket's fd number, fork / exec / posix_spawn loops) runs under `-F 10000` on 3.10
//! and 3.12 with the embedded agent: exit status 0, the same output as a bare run, the
//! socketpair receives nothing from the agent's exit, and Python frames are captured.
//! No `posix_spawn` child may die of a sample's SIGTRAP before its exec (the script
//! counts them on stderr; the agent disables its events around the call, spawn.rs).
//!
//! 20 rounds take 12-15 s bare per version on our loaded 2-CPU VM (the issue asks 30 s;
//! halved to keep the suite's time), longer profiled.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const ROUNDS: &str = "20";

/// The number the script's fork wrote to `leak` once its parent exited (waits for it).
fn leaked_bytes(leak: &Path) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(leak)
            && s.ends_with('\n')
        {
            return s.trim().to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the script's listener never wrote {}",
            leak.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stress(ver: &str) {
    let Some(py) = pyenv_or_skip(ver) else {
        return;
    };
    let tmp = shared_tempdir();
    let script = program_source("agent_stress.py");
    let (py_s, script_s) = (
        py.to_str().unwrap_or_default(),
        script.to_str().unwrap_or_default(),
    );
    let bare_leak = tmp.path().join("leak-bare");
    let expect = run_ok(
        Command::new(&py)
            .args(["-W", "ignore", script_s, ROUNDS])
            .arg(&bare_leak),
    );
    assert!(expect.contains("traps 5"), "{expect}");
    assert_eq!(leaked_bytes(&bare_leak), "0");

    let dir = tmp.path().join("r");
    let leak = tmp.path().join("leak");
    let leak_s = leak.to_str().unwrap_or_default();
    let t0 = Instant::now();
    let out = collect(
        &dir,
        &["-F", "10000"],
        &[py_s, "-W", "ignore", script_s, ROUNDS, leak_s],
    );
    eprintln!("{ver}: profiled run {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{ver}: hwprof collect failed ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expect, "{ver}");
    // A posix_spawn child must not die of a sample's SIGTRAP before its exec (the
    // agent disables its events around the call: agent/src/spawn.rs).
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("posix_spawn children killed by SIGTRAP"))
        .unwrap_or_else(|| panic!("{ver}: the script's posix_spawn count is missing:\n{stderr}"));
    eprintln!("{ver}: {line}");
    assert!(line.ends_with(": 0"), "{ver}: {line}");
    assert_eq!(
        leaked_bytes(&leak),
        "0",
        "{ver}: the agent wrote to a socket the program put on its fd number"
    );
    let rows = hotspots(&dir, &["--frames", "python"]);
    for f in ["work", "rec", "churn"] {
        assert!(
            rows.get(f).is_some_and(|h| h.total_pct > 0.0),
            "{ver}: no Python frame {f} in the report: {:?}",
            rows.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn agent_stress_python_3_10() {
    stress("3.10.13");
}

#[test]
fn agent_stress_python_3_12() {
    stress("3.12.1");
}

/// glibc's `system()` spawns through its internal `posix_spawn`, which the agent's
/// guard did not see: 14 of 300 `os.system` children died of a sample's SIGTRAP before
/// their exec at `-F 10000` (status 5). `os.popen` (subprocess's vfork) is run too.
/// Under the agent: no failure, the output of a bare run, Python frames captured.
#[test]
fn system_and_popen_children_never_die_of_a_sample() {
    let (tmp, stderr) = python_same_under_the_agent("3.12.1", "system_popen.py", &["300"], &[]);
    let dir = tmp.path().join("r");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("system failures:"))
        .unwrap_or_else(|| panic!("the script's failure count is missing:\n{stderr}"));
    eprintln!("{line}");
    assert_eq!(line, "system failures: 0, popen failures: 0", "{stderr}");
    let rows = hotspots(&dir, &["--frames", "python"]);
    assert!(
        rows.get("work").is_some_and(|h| h.total_pct > 10.0),
        "no Python frame work: {:?}",
        rows.keys().collect::<Vec<_>>()
    );
}
