//! Bad input: a clear `hwprof: error: ...`, the right exit code, never a panic.

use crate::common::*;

/// `hwprof collect -r T/r EXTRA...` (a results dir that does not exist yet).
fn collect_into_r(t: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let r = t.join("r");
    let mut args = vec!["collect", "-r", r.to_str().unwrap()];
    args.extend_from_slice(extra);
    hwprof(&args)
}

#[test]
fn missing_command() {
    let t = shared_tempdir();
    let out = collect_into_r(t.path(), &["--", "no-such-cmd-xyz"]);
    assert_fails_with(
        &out,
        1,
        "hwprof: error: cannot run 'no-such-cmd-xyz': command not found",
    );
    assert!(!t.path().join("r").exists(), "no results dir left behind");
}

#[test]
fn non_executable_command() {
    let t = shared_tempdir();
    let f = t.path().join("data.txt");
    std::fs::write(&f, "x").unwrap();
    let out = collect_into_r(t.path(), &["--", f.to_str().unwrap()]);
    assert_fails_with(&out, 1, "not an executable");
}

/// A script without `#!` (which a shell would run with sh) is named as such, with what
/// to do, not as a bare "Exec format error"; no results directory is left.
#[test]
fn a_script_without_a_shebang_says_what_to_do() {
    let t = shared_tempdir();
    let f = t.path().join("no_shebang.sh");
    write_executable(&f, "echo hi\n");
    let out = collect_into_r(t.path(), &["--", f.to_str().unwrap()]);
    assert_fails_with(&out, 1, "a script that starts with a `#!` line");
    assert_fails_with(&out, 1, "hwprof collect -- sh SCRIPT");
    assert!(!t.path().join("r").exists(), "no results dir left behind");
}

/// A command found on PATH is the first executable file of that name, as a shell finds
/// it: a data file of the same name earlier on PATH is passed over.
#[test]
fn a_command_on_path_is_the_first_executable_one() {
    let t = shared_tempdir();
    let (data, bin) = (t.path().join("data"), t.path().join("bin"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(data.join("hwprof-say-hi"), "not a program").unwrap();
    let script = bin.join("hwprof-say-hi");
    write_executable(&script, "#!/bin/sh\necho hi-from-path\n");
    let path = format!(
        "{}:{}:{}",
        data.display(),
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut hw = std::process::Command::new(hwprof_bin());
    hw.env("PATH", path);
    let out = collect_through(hw, &t.path().join("r"), &[], &["hwprof-say-hi".as_ref()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hi-from-path"));
}

#[test]
fn unknown_event_lists_close_matches() {
    let t = shared_tempdir();
    let out = collect_into_r(t.path(), &["-e", "cpu-clok", "--", "true"]);
    assert_fails_with(&out, 1, "unknown event 'cpu-clok'");
    assert!(stderr_of(&out).contains("cpu-clock"), "{}", stderr_of(&out));
}

#[test]
fn usage_errors_exit_2() {
    let out = hwprof(&["collect"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("nothing to profile"));
    let out = hwprof(&["collect", "--call-graph", "lbr", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    let out = hwprof(&["report"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Command lines that are usage errors: (subcommand, its arguments split at spaces). A
/// bad command line is a usage error whether clap sees it or only hwprof does (after
/// parsing, before any data is read). `DIR` stands for an empty directory (with an empty
/// `parts/`), `NEW` for a path that does not exist yet.
const USAGE_ERRORS: &[(&str, &str)] = &[
    ("collect", "-F many -- true"),
    ("collect", "--mode no-such-mode -- true"),
    ("collect", "-p 1 -- true"),
    ("collect", "-p 1 true"),
    // Seen by hwprof, not clap.
    ("collect", "-r NEW"),
    ("collect", "-r NEW -F 0 -- true"),
    ("collect", "-r NEW -d 0 -- true"),
    ("collect", "-r NEW --fault-period 0 -- true"),
    ("collect", "-r NEW --call-graph dwarf,0 -- true"),
    ("finalize", ""),
    ("finalize", "DIR --part 0/2"),
    ("finalize", "DIR --part 3/2"),
    ("finalize", "DIR --part half"),
    ("finalize", "DIR --jobs many"),
    ("merge", ""),
    ("merge", "DIR extra"),
    // No finalized part to merge (`finalize --part I/N` first).
    ("merge", "DIR"),
    ("report", ""),
    ("report", "DIR --view no-such-view"),
    ("report", "DIR --format xml"),
    ("report", "DIR --ranks 3-1x"),
    ("report", "DIR --top -1"),
    ("export", ""),
    ("export", "DIR"),
    ("export", "DIR --format svg"),
    ("export", "--diff DIR"),
    // --normalize only means something with --diff.
    ("export", "DIR --format collapsed --normalize percent"),
    ("export", "DIR --format collapsed --normalize time"),
    ("diff", ""),
    ("diff", "DIR DIR --view no-such-view"),
    ("diff", "DIR DIR --function solve"),
    // Seen by hwprof, not clap.
    ("diff", "DIR"),
    ("diff", "DIR DIR --fail-above lots"),
    ("diff", "DIR DIR --fail-above 5 --function f --view ranks"),
    ("list-events", "extra"),
    ("doctor", "extra"),
    ("no-such-command", ""),
];

/// Each of SUBCOMMAND's [`USAGE_ERRORS`] exits 2 with a message and no panic, and
/// leaves no `NEW` behind.
fn assert_usage_errors(subcommand: &str) {
    let t = shared_tempdir();
    std::fs::create_dir(t.path().join("parts")).unwrap();
    let new = t.path().join("new");
    let cases: Vec<&str> = USAGE_ERRORS
        .iter()
        .filter(|(sub, _)| *sub == subcommand)
        .map(|&(_, case)| case)
        .collect();
    assert!(!cases.is_empty(), "no usage error listed for {subcommand}");
    for case in cases {
        let mut args = vec![subcommand];
        args.extend(case.split_whitespace().map(|a| match a {
            "DIR" => t.path().to_str().unwrap(),
            "NEW" => new.to_str().unwrap(),
            a => a,
        }));
        let out = hwprof(&args);
        let e = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
        assert!(!e.trim().is_empty(), "{args:?}: no message");
    }
    assert!(!new.exists(), "{subcommand}: {} left behind", new.display());
}

#[test]
fn collect_usage_errors_exit_2() {
    assert_usage_errors("collect");
}

#[test]
fn finalize_usage_errors_exit_2() {
    assert_usage_errors("finalize");
}

#[test]
fn merge_usage_errors_exit_2() {
    assert_usage_errors("merge");
}

#[test]
fn report_usage_errors_exit_2() {
    assert_usage_errors("report");
}

#[test]
fn export_usage_errors_exit_2() {
    assert_usage_errors("export");
}

#[test]
fn diff_usage_errors_exit_2() {
    assert_usage_errors("diff");
}

#[test]
fn list_events_doctor_and_unknown_subcommands_exit_2() {
    for subcommand in ["list-events", "doctor", "no-such-command"] {
        assert_usage_errors(subcommand);
    }
}

#[test]
fn existing_results_dir_is_never_overwritten() {
    let t = shared_tempdir();
    let d = t.path().join("r");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("precious"), "keep").unwrap();
    let out = hwprof(&["collect", "-r", d.to_str().unwrap(), "--", "true"]);
    assert_fails_with(&out, 1, "exists and is not empty");
    assert_eq!(std::fs::read_to_string(d.join("precious")).unwrap(), "keep");
}

#[test]
fn finalize_and_report_on_a_non_results_dir() {
    let t = shared_tempdir();
    for cmd in ["finalize", "report"] {
        let out = hwprof(&[cmd, t.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let e = stderr_of(&out);
        assert!(e.contains("not an hwprof results directory"), "{cmd}: {e}");
    }
}

#[test]
fn report_on_a_missing_dir_says_it_is_missing() {
    let t = shared_tempdir();
    let missing = t.path().join("nosuchdir");
    let m = missing.to_str().unwrap();
    for args in [
        vec!["report", m],
        vec!["export", m, "--format", "collapsed"],
        vec!["finalize", m],
    ] {
        let cmd = args[0];
        let out = hwprof(&args);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let e = stderr_of(&out);
        assert!(e.contains("no such directory"), "{cmd}: {e}");
        assert!(!e.contains("--no-finalize"), "{cmd}: {e}");
    }
}

#[test]
fn report_on_an_unreadable_dir_says_permission_denied() {
    // Root's results, private (0700, as collect writes them), read by an ordinary user.
    let (t, dir) = raw_run();
    ok(&hwprof(&["finalize", "-q", dir.to_str().unwrap()]));
    let hw = hwprof_for_nobody(t.path());
    for cmd in ["report", "finalize"] {
        let out = as_nobody(&hw)
            .args([cmd, dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let e = stderr_of(&out);
        assert!(e.contains("permission denied"), "{cmd}: {e}");
        assert!(
            !e.contains("--no-finalize") && !e.contains("damaged"),
            "{cmd}: {e}"
        );
    }
}

#[test]
fn report_before_finalize_says_run_finalize() {
    let (_t, dir) = raw_run();
    let out = hwprof(&["report", dir.to_str().unwrap()]);
    assert_fails_with(&out, 1, "has no profile.db");
    assert!(stderr_of(&out).contains("hwprof finalize"));
}

#[test]
fn finalize_ends_with_what_it_wrote_and_how_to_look() {
    let (_t, dir) = raw_run();
    let out = hwprof(&["finalize", dir.to_str().unwrap()]);
    ok(&out);
    let e = String::from_utf8_lossy(&out.stderr);
    let last = e.lines().last().unwrap_or("");
    assert!(
        last.contains("profile.db") && last.contains("hwprof report"),
        "{e}"
    );
}

#[test]
fn permission_denied_names_the_fix() {
    // An ordinary user may not attach to init.
    let t = shared_tempdir();
    let hw = hwprof_for_nobody(t.path());
    let out = as_nobody(&hw)
        .args([
            "collect",
            "-r",
            t.path().join("r").to_str().unwrap(),
            "-p",
            "1",
            "-d",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr_of(&out);
    // The real cause is ptrace rights, not perf_event_paranoid.
    assert!(e.contains("ptrace refused") && e.contains("uid 0"), "{e}");
    assert!(!e.contains("perf_event_paranoid"), "{e}");
}

/// A tracepoint an ordinary user cannot look up: the cause (tracefs readable by root
/// only, its default mode 0700) and the fix, not "mount tracefs" (it is mounted). Where
/// this machine's tracefs is open to everyone, the collection works instead.
#[test]
fn an_unreadable_tracefs_is_named_as_such() {
    use std::os::unix::fs::PermissionsExt;
    let t = shared_tempdir();
    let hw = hwprof_for_nobody(t.path());
    let out = as_nobody(&hw)
        .args(["collect", "-q", "-e", "sched:sched_switch", "-r"])
        .arg(t.path().join("r"))
        .args(["--", "true"])
        .output()
        .unwrap();
    let tracing = std::fs::metadata("/sys/kernel/tracing").expect("tracefs is mounted here");
    let e = stderr_of(&out);
    if tracing.permissions().mode() & 0o005 == 0o005 {
        assert!(out.status.success(), "tracefs is open to everyone: {e}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains("Permission denied") && e.contains("readable by root only"),
        "{e}"
    );
    assert!(
        !e.contains("debug/tracing") && !e.contains("mount -t"),
        "{e}"
    );
    // Said once, not again as the error's source.
    assert_eq!(e.matches("Permission denied").count(), 1, "{e}");
}

/// hot.c collected with `--no-finalize` into a new shared temporary directory.
fn raw_run() -> (tempfile::TempDir, std::path::PathBuf) {
    let Scratch { tmp, bin, dir } = scratch_with("hot.c", "hot", &[]);
    ok(&collect(
        &dir,
        &["--no-finalize"],
        &[bin.to_str().unwrap(), "400"],
    ));
    (tmp, dir)
}

#[test]
fn truncated_perf_data_is_read_up_to_the_last_complete_record() {
    let (_t, dir) = raw_run();
    let p = first_perf_data(&dir);
    let len = std::fs::metadata(&p).unwrap().len();
    // Cut in the middle of the data section.
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len * 6 / 10 + 3).unwrap();
    let out = hwprof(&["finalize", dir.to_str().unwrap()]);
    let e = stderr_of(&out);
    assert!(out.status.success(), "{e}");
    assert!(e.contains("cut short") && e.contains("skipped"), "{e}");
    let rows = hotspots(&dir, &[]);
    assert!(self_pct(&rows, "hot_a") > 60.0, "{rows:#?}");
}

#[test]
fn garbage_perf_data_is_refused_clearly() {
    let (_t, dir) = raw_run();
    std::fs::write(first_perf_data(&dir), vec![0x5au8; 10000]).unwrap();
    let out = hwprof(&["finalize", dir.to_str().unwrap()]);
    assert_fails_with(&out, 1, "is not a perf.data file");
}

#[test]
fn damaged_manifest_is_reported() {
    let (_t, dir) = raw_run();
    std::fs::write(dir.join("manifest.json"), "{not json").unwrap();
    let out = hwprof(&["finalize", dir.to_str().unwrap()]);
    assert_fails_with(&out, 1, "damaged");
}

/// `doctor`'s output and its "python agent:" line.
fn agent_line(out: &std::process::Output) -> (String, String) {
    let d = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = d
        .lines()
        .find(|l| l.contains("python agent:"))
        .unwrap_or_else(|| panic!("no python agent line:\n{d}"))
        .to_string();
    (d, line)
}

/// `doctor` loads the agent with dlopen in a child process: the embedded one loads; a
/// library that cannot be loaded (`HWPROF_AGENT_LIB` naming a file that is no ELF) is
/// reported as a problem with dlopen's reason, and doctor itself still completes.
#[test]
fn doctor_dlopens_the_agent_in_a_child_and_reports_a_bad_one() {
    let out = crate::common::hwprof(&["doctor"]);
    let (_, line) = agent_line(&out);
    assert!(
        line.contains("OK") && line.contains("loads (dlopen in a child process)"),
        "{line}"
    );
    let tmp = crate::common::shared_tempdir();
    let bad = tmp.path().join("libhwprof_agent.so");
    std::fs::write(&bad, b"not an ELF file\n").unwrap();
    let out = std::process::Command::new(crate::common::hwprof_bin())
        .arg("doctor")
        .env("HWPROF_AGENT_LIB", &bad)
        .output()
        .expect("doctor");
    let (d, line) = agent_line(&out);
    assert!(
        line.contains("PROBLEM") && line.contains("dlopen of") && line.contains("failed: "),
        "{line}"
    );
    // Doctor went on to the sections after it.
    assert!(d.contains("Modes"), "{d}");
}
