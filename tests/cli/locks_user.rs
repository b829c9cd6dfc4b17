//! Locks mode for ordinary users (and root): every off-CPU interval from switch
//! records, attributed to the stack where the thread blocked by the agent's interposed
//! calls (docs/locks.md, "How waits are recorded for ordinary users"), and
//! interposition that changes nothing in the program.

use std::path::Path;
use std::process::{Command, Output};

use hwprof::profile::{Profile, WaitClass};

use crate::common::*;

/// What mutex_waits.c says on stderr: the mutex's address and each wait as it timed
/// it (seconds).
struct Truth {
    mutex: String,
    lock_s: f64,
    nap_s: f64,
    read_s: f64,
}

fn truth(stderr: &str) -> Truth {
    let mutex = stderr
        .lines()
        .find_map(|l| l.strip_prefix("mutex "))
        .expect("the program printed its mutex")
        .trim()
        .to_string();
    let w = numbers_after(stderr, "waited ").expect("the program printed its waits");
    Truth {
        mutex,
        lock_s: w[0],
        nap_s: w[1],
        read_s: w[2],
    }
}

/// Leaf-first (function, line) of the program's own frames of a stack (as root the
/// kernel's and libc's frames are below them).
fn stack_of(p: &Profile, node: Option<usize>) -> Vec<(String, Option<u32>)> {
    frames_of(p, node, "mutex_waits")
}

/// Leaf-first (function, line) of the frames of `module` (`python`: Python frames).
fn frames_of(p: &Profile, mut node: Option<usize>, module: &str) -> Vec<(String, Option<u32>)> {
    let mut out = Vec::new();
    while let Some(n) = node {
        let f = &p.frames[p.stacks[n].frame];
        let func = &p.functions[f.function];
        if func.module == module {
            out.push((func.name.clone(), f.line));
        }
        node = p.stacks[n].parent;
    }
    out
}

/// Total wait ns of `class` (and `object` when given) whose innermost program frame is
/// `function`, and the lines seen there.
fn waits_at(
    p: &Profile,
    class: WaitClass,
    object: Option<&str>,
    function: &str,
) -> (u64, Vec<Option<u32>>) {
    let mut ns = 0;
    let mut lines = Vec::new();
    for w in &p.waits {
        if w.key.class != class || object.is_some_and(|o| w.key.object.as_deref() != Some(o)) {
            continue;
        }
        let s = stack_of(p, w.key.stack);
        if s.first().is_some_and(|(f, _)| f == function) {
            ns += w.wait_ns;
            lines.push(s[0].1);
        }
    }
    (ns, lines)
}

fn check_mutex_program(dir: &Path, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let t = truth(&stderr);
    // The designed waits, loosely (the machine may be loaded): the program's clock is
    // the truth below.
    assert!(
        t.lock_s > 0.2 && t.nap_s >= 0.3 && t.read_s > 0.2,
        "{stderr}"
    );
    let p = Profile::load(dir).unwrap();
    let (lock, _) = waits_at(&p, WaitClass::Lock, Some(&t.mutex), "await_the_lock");
    within("await_the_lock's lock wait", lock, t.lock_s, 0.10);
    let (nap, _) = waits_at(&p, WaitClass::Sleep, None, "take_a_nap");
    within("take_a_nap's sleep", nap, t.nap_s, 0.10);
    let (read, lines) = waits_at(&p, WaitClass::Io, None, "read_the_pipe");
    within("read_the_pipe's read", read, t.read_s, 0.10);
    let read_line = source_line("mutex_waits.c", "long n = read(");
    assert!(
        lines.iter().all(|l| *l == Some(read_line)),
        "the read wait is at its line {read_line}: {lines:?}"
    );
    // Most off-CPU time had the stack where the thread blocked.
    let exact: u64 = p.meta["wait_ns_exact"].parse().unwrap();
    let inferred: u64 = p.meta["wait_ns_inferred"].parse().unwrap();
    assert!(
        exact as f64 >= 0.9 * (t.lock_s + t.nap_s + t.read_s) * 1e9,
        "exact {exact} inferred {inferred}"
    );
    // The metric is the waits' total: nothing counted twice.
    let waits: u64 = p.waits.iter().map(|w| w.wait_ns).sum();
    let samples: u64 = p.samples.iter().map(|s| s.value).sum();
    assert_eq!(waits, exact + inferred);
    assert_eq!(samples, waits);
}

/// mutex_waits.c built into a new scratch and collected in locks mode, by the ordinary
/// user 65534 (`nobody`) or by the test's user: the scratch and the run's output.
fn mutex_program_run(nobody: bool) -> (Scratch, Output) {
    let s = scratch_with("mutex_waits.c", "mutex_waits", &[]);
    let out = collect_locks_in(&s, nobody, &[]);
    (s, out)
}

/// [`mutex_program_run`] by root; None after printing `skipped: WHY` when the test does
/// not run as root.
fn mutex_program_run_by_root(why: &str) -> Option<(Scratch, Output)> {
    root_or_skip(why).then(|| mutex_program_run(false))
}

/// A process without Python opens no breakpoint: its agent copies each marked wait's
/// registers and stack itself and the collector writes them as samples
/// (agent/src/wait_samples.rs); the waits keep their lines, and perf's own reader
/// reads those samples.
#[test]
fn a_non_python_process_copies_its_wait_samples_without_a_breakpoint() {
    need_perf();
    let Scratch { tmp: t, bin, dir } = scratch_with("mutex_waits.c", "mutex_waits", &[]);
    let out = collect_with_agent_stats(t.path(), &dir, &[], &bin);
    check_mutex_program(&dir, &out);
    // The lock, the nap, the read, the join, the waiter's arrival: one sample each.
    assert!(self_copied_samples(&dir, &out) >= 4);
}

/// With a 1 us threshold every call the agent times is a wait, its own output
/// included if it went through an interposed `write`: its statistics were printed in
/// ~40 small writes, each marked, the ones after the count sent after it (perf.data held
/// 56 samples against "40 samples copied"; once, under load, at the default threshold).
/// The agent writes them with the system call: every wait is the program's, and the
/// count is exact.
#[test]
fn the_agents_own_output_is_not_a_wait() {
    need_perf();
    let Scratch { tmp: t, bin, dir } = scratch_with("mutex_waits.c", "mutex_waits", &[]);
    let out = collect_with_agent_stats(t.path(), &dir, &["--wait-threshold", "1"], &bin);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(self_copied_samples(&dir, &out) >= 4);
    let stacks = report_view(&dir, "waits", "csv", &["--top", "1000"]);
    assert!(!stacks.contains("agent_exit"), "{stacks}");
}

/// `hwprof collect -m locks OPTS -- BIN` as an ordinary user, the agents printing their
/// statistics (`HWPROF_AGENT_STATS`).
fn collect_with_agent_stats(
    t: &std::path::Path,
    dir: &std::path::Path,
    opts: &[&str],
    bin: &std::path::Path,
) -> std::process::Output {
    let hw = hwprof_for_nobody(t);
    let mut cmd = as_nobody(&hw);
    cmd.env("HWPROF_AGENT_STATS", "1");
    collect_locks(cmd, dir, opts, &[bin.as_ref()])
}

/// The wait samples the agent says it copied (none dropped), checked against the
/// samples perf script reads in perf.data: the mode's only samples for an ordinary
/// user.
fn self_copied_samples(dir: &std::path::Path, out: &std::process::Output) -> usize {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("wait markers: "))
        .unwrap_or_else(|| panic!("no agent statistics: {stderr}"));
    assert!(line.contains("wait markers: self-copied"), "{line}");
    let copied: usize = line
        .split("self-copied, ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .expect("a count");
    assert!(line.ends_with(" 0 dropped"), "{line}");
    // Every wait the agent marked was copied: none was marked before copying began
    // (the agent's own connect to the collector, timed by its interposer, once was).
    let marked: usize = stderr
        .lines()
        .find(|l| l.contains(" waits marked, "))
        .and_then(|l| {
            l.rsplit(": ")
                .next()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no count of marked waits: {stderr}"));
    assert_eq!(marked, copied, "{stderr}");
    let script = Command::new("perf")
        .args(["script", "-f", "-F", "tid,time,event,ip", "-i"])
        .arg(first_perf_data(dir))
        .output()
        .expect("run perf script");
    let text = String::from_utf8_lossy(&script.stdout);
    assert!(
        script.status.success(),
        "{}",
        String::from_utf8_lossy(&script.stderr)
    );
    let samples = text
        .lines()
        .filter(|l| l.contains("context-switches:"))
        .count();
    assert_eq!(samples, copied, "{line}\n{text}");
    copied
}

#[test]
fn an_ordinary_user_gets_waits_at_the_line_with_class_and_object() {
    let (s, out) = mutex_program_run(true);
    check_mutex_program(&s.dir, &out);
}

#[test]
fn root_gets_the_same_waits() {
    if let Some((s, out)) = mutex_program_run_by_root("needs root (the kernel's switch-out stacks)")
    {
        check_mutex_program(&s.dir, &out);
    }
}

/// Root: the waiter of mutex_waits.c is woken by the holder's unlock: its lock wait's
/// waker stack (the holder's `sched:sched_waking` sample) holds `hold_the_lock`, and
/// `--view waits` names it; the wait's max_ns is the whole wait.
#[test]
fn root_the_waiter_is_woken_by_the_holders_unlock() {
    let Some((Scratch { tmp: _t, dir, .. }, out)) =
        mutex_program_run_by_root("needs root (sched:sched_waking)")
    else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let t = truth(&stderr);
    let p = Profile::load(&dir).unwrap();
    let names = |leaf: Option<usize>| -> Vec<String> {
        p.stack_frames(leaf)
            .iter()
            .map(|&f| p.functions[p.frames[f].function].name.clone())
            .collect()
    };
    let lock_waits: Vec<_> = p
        .wakers
        .iter()
        .filter(|k| {
            k.key.class == WaitClass::Lock && k.key.object.as_deref() == Some(t.mutex.as_str())
        })
        .filter(|k| {
            stack_of(&p, k.key.stack)
                .first()
                .is_some_and(|(f, _)| f == "await_the_lock")
        })
        .collect();
    let woken_by_holder: u64 = lock_waits
        .iter()
        .filter(|k| names(k.waker).iter().any(|f| f == "hold_the_lock"))
        .map(|k| k.wait_ns)
        .sum();
    let seen: Vec<_> = lock_waits
        .iter()
        .map(|k| (names(k.waker), k.wait_ns))
        .collect();
    within(
        "the lock wait woken by hold_the_lock",
        woken_by_holder,
        t.lock_s,
        0.10,
    );
    assert!(
        !seen.is_empty(),
        "no waker for the lock wait: {:?}",
        p.wakers
    );
    // max_ns: the whole wait (one wait, however many times the thread was switched in).
    let (ns, _) = waits_at(&p, WaitClass::Lock, Some(&t.mutex), "await_the_lock");
    let max = p
        .waits
        .iter()
        .filter(|w| {
            w.key.class == WaitClass::Lock && w.key.object.as_deref() == Some(t.mutex.as_str())
        })
        .map(|w| w.max_ns)
        .max()
        .unwrap_or(0);
    within("the lock wait's max_ns", max, ns as f64 / 1e9, 0.02);
    // The wakers survive a finalize in parts and their merge.
    let parts = dir.with_file_name("parts");
    copy_tree(&dir, &parts);
    std::fs::remove_file(parts.join("profile.db")).unwrap();
    let parts_arg = parts.to_str().unwrap();
    ok(&hwprof(&["finalize", "-q", "--part", "1/1", parts_arg]));
    ok(&hwprof(&["merge", parts_arg]));
    let merged = Profile::load(&parts).unwrap();
    let wakers = |p: &Profile| {
        let names = |leaf: Option<usize>| -> Vec<String> {
            p.stack_frames(leaf)
                .iter()
                .map(|&f| p.functions[p.frames[f].function].name.clone())
                .collect()
        };
        let mut w: Vec<_> = p
            .wakers
            .iter()
            .map(|k| {
                (
                    names(k.key.stack),
                    k.key.class,
                    names(k.waker),
                    k.count,
                    k.wait_ns,
                )
            })
            .collect();
        w.sort();
        w
    };
    assert_eq!(
        wakers(&merged),
        wakers(&p),
        "wakers after --part 1/1 and merge"
    );
    let j: serde_json::Value =
        serde_json::from_str(&report_view(&dir, "waits", "json", &["--top", "50"])).unwrap();
    let row = j["rows"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["function"] == "await_the_lock"))
        .unwrap_or_else(|| panic!("no await_the_lock row: {j}"));
    assert!(
        row["waker"]
            .as_str()
            .is_some_and(|w| w.starts_with("hold_the_lock ")),
        "await_the_lock is woken by hold_the_lock: {row}"
    );
}

/// Runs `bin` bare and under `hwprof collect -m locks` (as uid 65534, with each wait
/// threshold given) and compares stdout and exit status.
fn same_with_and_without(t: &Path, bin: &Path, want_status: i32) {
    let bare = as_nobody(bin).output().unwrap();
    assert_eq!(bare.status.code(), Some(want_status));
    let hw = hwprof_for_nobody(t);
    for (i, threshold) in ["0", "100"].iter().enumerate() {
        let dir = t.join(format!("run{i}"));
        let out = collect_locks(
            as_nobody(&hw),
            &dir,
            &["--wait-threshold", threshold],
            &[bin.as_ref()],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&bare.stdout),
            "threshold {threshold}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), bare.status.code());
        // The calls were interposed: recorded waits (threshold 0: every blocking call).
        let p = Profile::load(&dir).unwrap();
        assert!(
            p.waits.iter().any(|w| w.key.class == WaitClass::Condition),
            "threshold {threshold}: no recorded wait"
        );
    }
}

#[test]
fn interposed_calls_keep_their_return_values_and_errno() {
    let t = shared_tempdir();
    let bin = build_c(t.path(), "errno_checks.c", "errno_checks", &[]);
    same_with_and_without(t.path(), &bin, 7);
}

#[test]
fn the_mutex_program_says_the_same_under_the_agent() {
    let (s, out) = mutex_program_run(true);
    let bare = as_nobody(&s.bin).output().unwrap();
    assert!(bare.status.success());
    assert_eq!(out.stdout, bare.stdout);
    assert_eq!(out.status.code(), bare.status.code());
}

/// Wait ns of `class` whose Python stack passes through `function` at `line`.
fn python_waits_at(p: &Profile, class: WaitClass, function: &str, line: u32) -> u64 {
    // Through, not at: queue.get waits further in, in threading.py.
    let want = (function.to_string(), Some(line));
    p.waits
        .iter()
        .filter(|w| w.key.class == class)
        .filter(|w| frames_of(p, w.key.stack, "python").contains(&want))
        .map(|w| w.wait_ns)
        .sum()
}

/// The ordinary user's python, /usr/bin/python3 (required), a new shared temporary
/// directory, and hwprof run as uid 65534 from a copy in it.
fn system_python_as_nobody() -> (&'static Path, tempfile::TempDir, Command) {
    let py = system_python_for_nobody();
    let t = shared_tempdir();
    let hw = hwprof_command(true, t.path());
    (py, t, hw)
}

#[test]
fn an_ordinary_user_gets_python_waits_at_their_lines() {
    let (py, t, hw) = system_python_as_nobody();
    python_waits_at_their_lines(hw, t.path(), py, "uid 65534");
}

/// tests/programs/SCRIPT (copied into T, where the user to test can read it) run by PY
/// under locks mode through HW (hwprof as that user) into T/run-SCRIPT-WHAT, asserted
/// successful: its profile and standard error.
fn python_locks_run(
    mut hw: Command,
    t: &Path,
    py: &Path,
    script: &str,
    what: &str,
) -> (Profile, String) {
    let copy = t.join(script);
    std::fs::copy(program_source(script), &copy).unwrap();
    let dir = locks_run_dir(t, script, what);
    // The agent's count of marked waits, for a failure's message.
    hw.env("HWPROF_AGENT_STATS", "1");
    let out = collect_locks(hw, &dir, &[], &[py.as_ref(), copy.as_ref()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what}: {stderr}");
    (Profile::load(&dir).unwrap(), stderr)
}

/// Where [`python_locks_run`] writes SCRIPT's run as WHAT.
fn locks_run_dir(t: &Path, script: &str, what: &str) -> std::path::PathBuf {
    t.join(format!("run-{script}-{what}"))
}

/// Runs tests/programs/py_waits.py with `python` under locks mode (`hw`: hwprof as the
/// user to test): each wait at its line, of its class, as long as the script timed it:
/// `time.sleep` a sleep, `with lock:` a lock, `queue.get` a condition (it waits in
/// `Condition.wait`), `Thread.join` a join, though all but the sleep wait on a Python
/// lock's semaphore underneath.
fn python_waits_at_their_lines(hw: Command, t: &Path, py: &Path, what: &str) {
    let (p, stderr) = python_locks_run(hw, t, py, "py_waits.py", what);
    let w = numbers_after(&stderr, "waited ").expect("the script printed its waits");
    let at = |class, function, marker| {
        python_waits_at(&p, class, function, source_line("py_waits.py", marker))
    };
    let nap = at(WaitClass::Sleep, "napper", "# the sleep line");
    within(&format!("{what}: napper's time.sleep"), nap, w[0], 0.10);
    let get = at(WaitClass::Condition, "getter", "# the get line");
    within(&format!("{what}: getter's queue.get"), get, w[1], 0.10);
    let lock = at(WaitClass::Lock, "blocked", "# the lock line");
    within(&format!("{what}: blocked's `with lock:`"), lock, w[2], 0.10);
    let join = at(WaitClass::Join, "<module>", "# the join line");
    within(&format!("{what}: the main thread's join"), join, w[3], 0.10);
}

/// tests/programs/gil_waits.py with `python`: the sleeper's 0.5 s `time.sleep` at its
/// line (0.5 s, at most as long as the script timed it), and both busy threads wait for
/// the GIL (class gil) in `spin` or `busy`.
fn gil_waits_at_their_lines(hw: Command, t: &Path, py: &Path, what: &str) {
    let (p, stderr) = python_locks_run(hw, t, py, "gil_waits.py", what);
    let sleep_line = source_line("gil_waits.py", "# SLEEP");
    let nap = python_waits_at(&p, WaitClass::Sleep, "nap", sleep_line);
    if nap < 450_000_000 {
        // Once in CI (3.8, uid 65534, under the suite's load) none of the nap was at
        // its line: say where the run's waits went.
        let dir = locks_run_dir(t, "gil_waits.py", what);
        let waits = report_view(&dir, "waits", "csv", &["--frames", "python", "--top", "60"]);
        eprintln!("{what}: nap at line {sleep_line}: {nap} ns; the waits:\n{waits}\n{stderr}");
    }
    gil_waits_nap(&format!("{what}: nap's time.sleep"), nap as f64, &stderr);
    let busy_threads: std::collections::BTreeSet<_> = p
        .waits
        .iter()
        .filter(|w| w.key.class == WaitClass::Gil && w.wait_ns > 0)
        .filter(|w| {
            frames_of(&p, w.key.stack, "python")
                .iter()
                .any(|(f, _)| f == "spin" || f == "busy")
        })
        .map(|w| w.key.thread)
        .collect();
    let gil: u64 = p
        .waits
        .iter()
        .filter(|w| w.key.class == WaitClass::Gil)
        .map(|w| w.wait_ns)
        .sum();
    let rows: Vec<_> = p
        .waits
        .iter()
        .map(|w| (w.key.class, w.key.thread, w.wait_ns))
        .collect();
    assert!(
        busy_threads.len() >= 2,
        "{what}: both busy threads wait for the GIL at their lines ({gil} ns of gil): {rows:?}"
    );
}

/// The Python wait tests above on every CPython pyenv holds here (3.8-3.13; 3.11 is
/// required, the others are skipped with a line when absent), as root and as uid 65534
/// (an ordinary user for perf events, given the right to read /root, where pyenv lives,
/// by `CAP_DAC_READ_SEARCH`: it grants no perf privilege). Needs root to do both.
#[test]
fn python_waits_on_every_pyenv_version() {
    require_root!("needs root (pyenv lives in /root)");
    let t = shared_tempdir();
    let nobody_hwprof = hwprof_for_nobody(t.path());
    for ver in ["3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0"] {
        let py = if ver == "3.11.7" {
            Some(pyenv(ver).expect("pyenv 3.11.7 is required"))
        } else {
            pyenv_or_skip(ver)
        };
        let Some(py) = py else { continue };
        let hw = || Command::new(hwprof_bin());
        python_waits_at_their_lines(hw(), t.path(), &py, ver);
        five_sleeps_are_five_waits(hw(), t.path(), &py, ver);
        gil_waits_at_their_lines(hw(), t.path(), &py, ver);
        // The same as an ordinary user (uid 65534, perf_event_paranoid as it is, user
        // space only), given only the right to read /root, where pyenv lives.
        let hw = || as_nobody_with("dac_read_search", &nobody_hwprof);
        let what = format!("{ver} as uid 65534");
        python_waits_at_their_lines(hw(), t.path(), &py, &what);
        five_sleeps_are_five_waits(hw(), t.path(), &py, &what);
        gil_waits_at_their_lines(hw(), t.path(), &py, &what);
        eprintln!(
            "python {ver}, as root and as uid 65534: waits at their lines, sleeps once each, GIL waits"
        );
    }
}

/// tests/programs/wait_calls.c: one designed wait (~150 ms) in each blocking call, each
/// step in a function of its name; the program prints what it timed and the object.
#[test]
fn every_blocking_call_is_a_wait_with_its_object() {
    let s = scratch_with("wait_calls.c", "wait_calls", &[]);
    let out = collect_locks_in(&s, true, &[s.tmp.path().as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let p = Profile::load(&s.dir).unwrap();
    let steps: Vec<(&str, f64, &str)> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("step "))
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            Some((it.next()?, it.next()?.parse().ok()?, it.next()?))
        })
        .collect();
    assert_eq!(steps.len(), 12, "{stderr}");
    for (step, secs, object) in steps {
        let class = match step {
            "futex_wait" | "mutex_timedlock" | "rwlock_timedwr" => WaitClass::Lock,
            "cond_timedwait" | "cond_clockwait" => WaitClass::Condition,
            _ => WaitClass::Io,
        };
        let ns: u64 = p
            .waits
            .iter()
            .filter(|w| w.key.class == class && w.key.object.as_deref() == Some(object))
            .filter(|w| {
                frames_of(&p, w.key.stack, "wait_calls")
                    .first()
                    .is_some_and(|(f, _)| f == step)
            })
            .map(|w| w.wait_ns)
            .sum();
        let seen: Vec<_> = p
            .waits
            .iter()
            .filter(|w| {
                frames_of(&p, w.key.stack, "wait_calls")
                    .first()
                    .is_some_and(|(f, _)| f == step)
            })
            .map(|w| (w.key.class, w.key.object.clone(), w.wait_ns))
            .collect();
        let got = ns as f64 / 1e9;
        assert!(
            (got - secs).abs() <= 0.10 * secs,
            "{step}: {got:.4} s of {class:?} on {object:?}, {secs:.4} s by the program's \
             clock; the step's waits: {seen:?}"
        );
    }
}

/// Runs tests/programs/py_sleeps.py with `python` under locks mode (`hw`: hwprof as the
/// user to test) and checks that its 5 sleeps are 5 sleep waits at their line, of their
/// total length (a sleep interrupted and restarted would count more).
fn five_sleeps_are_five_waits(hw: Command, t: &Path, python: &Path, what: &str) {
    let (p, stderr) = python_locks_run(hw, t, python, "py_sleeps.py", what);
    let slept = numbers_after(&stderr, "slept ").expect("the script printed its sleeps");
    assert_eq!(slept.len(), 5);
    let line = source_line("py_sleeps.py", "# the sleep line");
    let want = ("sleeper".to_string(), Some(line));
    let at_line: Vec<_> = p
        .waits
        .iter()
        .filter(|w| frames_of(&p, w.key.stack, "python").contains(&want))
        .collect();
    let sleeps: Vec<_> = at_line
        .iter()
        .filter(|w| w.key.class == WaitClass::Sleep)
        .collect();
    let count: u64 = sleeps.iter().map(|w| w.count).sum();
    let ns: u64 = sleeps.iter().map(|w| w.wait_ns).sum();
    let rows: Vec<_> = at_line
        .iter()
        .map(|w| (w.key.class, w.count, w.wait_ns, w.max_ns))
        .collect();
    assert_eq!(count, 5, "{what}: sleep waits at the sleep line: {rows:?}");
    // max_ns is a row's longest whole wait, all its restarted pieces on that stack
    // together: at least the mean of the row's waits (a piece between two signals is
    // ~30 ms of the 200). A piece on another stack (a restart's marker unwound
    // differently) is that row's time, and shortens no mean here.
    for w in sleeps.iter().filter(|w| w.count > 0) {
        assert!(
            w.max_ns >= w.wait_ns / w.count,
            "{what}: the longest sleep wait of a row is {} ns, under its mean {} ns: {rows:?}",
            w.max_ns,
            w.wait_ns / w.count
        );
    }
    // Between the pieces of an interrupted sleep the thread takes the GIL back (class
    // gil, at the same line) and runs the handler: all the line's waits make up the
    // sleeps' time, and the sleep class at least the part the script surely spent in
    // the call: its time less the time from each signal to its handler (which grows
    // with the load: the busy thread holds the GIL meanwhile; the call itself lasts
    // until the woken thread gets a CPU, which the script cannot see).
    let all: u64 = at_line.iter().map(|w| w.wait_ns).sum();
    let total: f64 = slept.iter().sum();
    within(&format!("{what}: the sleep line's waits"), all, total, 0.10);
    let outside = numbers_after(&stderr, "outside ").expect("the script printed its gaps")[0];
    let in_call = total - outside;
    eprintln!("{what}: {ns} ns of sleep, {in_call:.4} s surely in the call");
    assert!(
        ns as f64 >= 0.9 * in_call * 1e9,
        "{what}: {ns} ns of sleep, {in_call:.4} s surely in the call (-10%): {rows:?}"
    );
}

#[test]
fn python_sleeps_count_once_each() {
    let (py, t, hw) = system_python_as_nobody();
    five_sleeps_are_five_waits(hw, t.path(), py, "uid 65534");
    require_root!("the pyenv runs need root (pyenv lives in /root)");
    // Through the pyenv shim (a bash script that execs the interpreter), and 3.8,
    // whose time.sleep is a select() without descriptors.
    let shim = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".pyenv/shims/python3"))
        .filter(|p| p.is_file())
        .expect("the pyenv shim python3 is required");
    five_sleeps_are_five_waits(Command::new(hwprof_bin()), t.path(), &shim, "shim");
    let py38 = pyenv("3.8.18").expect("pyenv 3.8.18 is required");
    five_sleeps_are_five_waits(Command::new(hwprof_bin()), t.path(), &py38, "3.8");
}
