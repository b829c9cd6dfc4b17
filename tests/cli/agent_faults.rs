//! The agent's fault-tolerant reads (`agent/src/safe_load.rs`) leave the program's own
//! faults alone: a Python program that really segfaults (`ctypes.string_at(1)` after a
//! spin sampled at `-F 10000`, `tests/programs/agent_segv.py`) dies of SIGSEGV with a
//! core dump under hwprof exactly as bare, and with `-X faulthandler` (CPython installs
//! its SIGSEGV handler with `sigaction` after the agent's) still prints "Fatal Python
//! error: Segmentation fault" and the same traceback. And the reads really take the
//! safe path: a sampled run's agent counts safe-load reads and no `process_vm_readv`.

use std::process::Command;

use crate::common::*;

fn segfault_as_bare(ver: &str) {
    let Some(py) = pyenv_or_skip(ver) else {
        return;
    };
    let tmp = shared_tempdir();
    let script = program_source("agent_segv.py");
    let (py_s, script_s) = (py.to_str().unwrap(), script.to_str().unwrap());
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let cwd_s = cwd.to_str().unwrap();
    for opts in [&[][..], &["-X", "faulthandler"][..]] {
        let mut args = vec![script_s, "parent", cwd_s];
        args.extend_from_slice(opts);
        let bare = Command::new(&py).args(&args).output().expect("run python");
        assert!(bare.status.success(), "{ver} {opts:?} bare: {bare:?}");
        let expect = String::from_utf8_lossy(&bare.stdout).into_owned();
        assert!(expect.contains("signal 11\n"), "{ver} {opts:?}: {expect}");
        if !opts.is_empty() {
            assert!(expect.contains("fatal True\n"), "{ver} {opts:?}: {expect}");
        }
        let dir = tmp.path().join(format!("r{}", opts.len()));
        let mut cmd = vec![py_s];
        cmd.extend_from_slice(&args);
        let out = collect(&dir, &["-F", "10000"], &cmd);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{ver} {opts:?}: hwprof collect failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expect,
            "{ver} {opts:?}: the crash under hwprof differs from bare"
        );
        let _ = std::fs::remove_file(cwd.join("core"));
    }

    // The child alone under hwprof: killed by SIGSEGV (hwprof exits 128 + 11).
    let out = Command::new(hwprof_bin())
        .args(["collect", "-q", "-F", "10000", "-r"])
        .arg(tmp.path().join("rc"))
        .args(["--", py_s, script_s, "child"])
        .current_dir(&cwd)
        .output()
        .expect("run hwprof");
    assert_eq!(out.status.code(), Some(139), "{ver}: {out:?}");

    // The same spin without the crash: the agent read through the safe copy only.
    let out = Command::new(hwprof_bin())
        .args(["collect", "-q", "-F", "10000", "-r"])
        .arg(tmp.path().join("rs"))
        .args(["--", py_s, script_s, "spin"])
        .env("HWPROF_AGENT_STATS", "1")
        .output()
        .expect("run hwprof");
    assert!(out.status.success(), "{ver}: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = agent_stats_line(&stderr);
    eprintln!("{ver}: {line}");
    let number_before = |tag: &str| number_before(line, tag);
    assert!(number_before(" captures,") > 0, "{ver}: {line}");
    assert!(number_before(" safe-load reads") > 0, "{ver}: {line}");
    assert_eq!(
        number_before(" reads through process_vm_readv"),
        0,
        "{ver}: {line}"
    );
}

/// The agent's statistics line (`HWPROF_AGENT_STATS=1`) in a collect's standard error.
fn agent_stats_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("hwprof-agent: pid"))
        .unwrap_or_else(|| panic!("no agent stats line:\n{stderr}"))
}

/// The number printed right before TAG in the agent's statistics line.
fn number_before(line: &str, tag: &str) -> u64 {
    let head = &line[..line.find(tag).unwrap_or_else(|| panic!("{tag}: {line}"))];
    head.split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
fn agent_segfault_as_bare_python_3_10() {
    segfault_as_bare("3.10.13");
}

#[test]
fn agent_segfault_as_bare_python_3_11() {
    segfault_as_bare("3.11.7");
}

#[test]
fn agent_segfault_as_bare_python_3_12() {
    segfault_as_bare("3.12.1");
}

/// A program that puts SIG_DFL back on SIGSEGV and SIGBUS with the raw `rt_sigaction`
/// system call (the interposed `sigaction` never sees it) would die of the first fault
/// at a safe load. The agent asks the kernel before each capture: once its handler is
/// gone, reads go through `process_vm_readv` (the agent's stats say so), and the
/// program runs to its end with its own output.
#[test]
fn a_fault_handler_replaced_by_raw_rt_sigaction_stops_safe_loads() {
    let (_tmp, stderr) = python_same_under_the_agent(
        "3.12.1",
        "agent_raw_sigaction.py",
        &[],
        &[("HWPROF_AGENT_STATS", "1")],
    );
    let line = agent_stats_line(&stderr);
    eprintln!("{line}");
    let number_before = |tag: &str| number_before(line, tag);
    assert!(number_before(" safe-load reads") > 0, "{line}");
    assert_eq!(
        number_before(" times (a fault handler replaced"),
        1,
        "{line}"
    );
    assert!(
        number_before(" reads through process_vm_readv") > 0,
        "safe loads went on after the handler was replaced: {line}"
    );
}
