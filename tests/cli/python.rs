//! Python frames end to end: the preloaded agent captures each sampled thread's Python
//! stack at the sample's instant (3.8-3.13), the remote reader, the remote sampler for
//! `-p`, targets that handle SIGTRAP themselves, non-Python targets, ordinary users.
//!
//! Ground truth: `work.py` below spends 3/4 of its time in `Worker.heavy` and 1/4 in
//! `Worker.light` (same loop, 3n vs n iterations), whose hot lines are the loop's two
//! lines.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use hwprof::python::memory::{LiveMemory, MemoryImage, Recorder};
use hwprof::python::{code, process, walker, wire};

use crate::common::*;

// Small integers in both loops: `i * i` grows past one 30-bit digit in the longer loop
// only, making its iterations slower and the designed 3:1 split read as ~79:21.
// `work.py ROUNDS [FACTOR]`: heavy does FACTOR (default 3) times light's work.
pub(crate) const WORK: &str = r#"import sys
class Worker:
    def heavy(self, n):
        s = 0
        for i in range(n):
            s += (i & 1023) * 3
        return s

    def light(self, n):
        s = 0
        for i in range(n):
            s += (i & 1023) * 3
        return s

    def run(self, rounds, n, factor):
        t = 0
        for _ in range(rounds):
            t += self.heavy(factor * n)
            t += self.light(n)
        return t

factor = int(sys.argv[2]) if len(sys.argv) > 2 else 3
print(Worker().run(int(sys.argv[1]), 100000, factor))
"#;

/// WORK's two functions, whose self time splits 3:1 by design.
const HEAVY_LIGHT: (&str, &str) = ("Worker.heavy", "Worker.light");

/// A hotspots row's measure for [`split_pct`]: its self samples.
const SAMPLES: fn(&Hot) -> f64 = |h| h.self_value as f64;

/// WORK's rounds in the runs [`assert_work_truth`] checks: 12 rounds gave ~200 samples
/// at 999 Hz, where a 75±5% band was under two standard deviations of the split and an
/// ordinary user's run fell 1 sample short of the 150 asked for. 36 rounds give ~600.
/// (Sampling at 4,999 Hz instead overran the agents' rings on a loaded machine: 89
/// samples lost in a `sh -c` run.)
const WORK_ROUNDS: &str = "36";

/// Lines of the two loops (`for`, body) in WORK.
const HEAVY_LINES: [u32; 2] = [5, 6];
const LIGHT_LINES: [u32; 2] = [11, 12];

/// The agent library: the one beside the hwprof under test (`cargo test --workspace`
/// builds it) when it is newer than its sources, else built `--release` into this test's
/// own target dir (so no cargo lock is shared with the running `cargo test`).
pub(crate) fn agent_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        // Every source file of the agent and of the wire crate it compiles in.
        let newest_src = ["agent/src", "wire/src", "wire/src/layouts"]
            .iter()
            .filter_map(|d| std::fs::read_dir(root.join(d)).ok())
            .flatten()
            .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
            .max();
        let beside = hwprof_bin().with_file_name("libhwprof_agent.so");
        let fresh = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| newest_src.is_none_or(|s| t >= s))
        };
        if fresh(&beside) {
            return beside;
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("agent");
        let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            // --release: the agent users get (the one `hwprof` embeds); a debug
            // build's handler is several times slower and skews the designed shares.
            .args(["build", "--release", "-p", "hwprof-agent", "--target-dir"])
            .arg(&dir)
            .current_dir(root)
            .status()
            .expect("run cargo build -p hwprof-agent");
        assert!(st.success(), "cargo build -p hwprof-agent failed");
        dir.join("release/libhwprof_agent.so")
    })
    .clone()
}

/// The 3.11 interpreter every machine of ours has (pyenv), which the tests always run.
pub(crate) fn python311() -> PathBuf {
    pyenv("3.11.7").expect("pyenv 3.11.7 is required")
}

fn collect(dir: &Path, extra: &[&str], cmd: &[&str]) -> std::process::Output {
    let mut c = Command::new(hwprof_bin());
    c.arg("collect")
        .arg("-r")
        .arg(dir)
        .arg("-q")
        .args(extra)
        .arg("--")
        .args(cmd);
    c.env("HWPROF_AGENT_LIB", agent_lib());
    c.output().expect("run hwprof collect")
}

/// `PY SCRIPT ARG` started (its output dropped) and given SETTLE_MS to start up, for a
/// test to attach to it.
fn spawn_settled(py: &Path, script: &Path, arg: &str, settle_ms: u64) -> std::process::Child {
    let child = Command::new(py)
        .arg(script)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn python");
    std::thread::sleep(std::time::Duration::from_millis(settle_ms));
    child
}

/// In a new shared temporary directory: N modules `mods/m<i>.py` whose bodies each
/// spin SECS of CPU time at import, and `importer.py`, which imports them all (run as
/// `importer.py MODS`): (the directory, `mods`, `importer.py`).
pub(crate) fn module_bodies(n: usize, secs: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = shared_tempdir();
    let mods = tmp.path().join("mods");
    std::fs::create_dir_all(&mods).expect("mkdir");
    let body = format!(
        "import time\nt = time.process_time()\nwhile time.process_time() - t < {secs}:\n    for _ in range(2000):\n        pass\n"
    );
    for i in 0..n {
        write_script(&mods, &format!("m{i}.py"), &body);
    }
    let importer = format!(
        "import importlib, sys\nsys.path.insert(0, sys.argv[1])\nfor i in range({n}):\n    importlib.import_module(f\"m{{i}}\")\n"
    );
    let main = write_script(tmp.path(), "importer.py", &importer);
    (tmp, mods, main)
}

/// `hwprof collect -q -r DIR -d SECS -p PID`: attach to a running process.
fn attach_for(dir: &Path, pid: u32, secs: &str) -> std::process::Output {
    let pid = pid.to_string();
    let hw = Command::new(hwprof_bin());
    collect_through(hw, dir, &["-d", secs, "-p", &pid], &[])
}

/// A new shared temporary directory with the script NAME written into it.
fn temp_script(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = shared_tempdir();
    let script = write_script(tmp.path(), name, text);
    (tmp, script)
}

/// `hwprof collect -r DIR OPTS... -- PY work.py 3` with the test's agent, in a new
/// shared temporary directory (DIR is its `r`): the directory, DIR, and the run's
/// output, whatever its status.
fn collect_work(py: &Path, opts: &[&str]) -> (tempfile::TempDir, PathBuf, std::process::Output) {
    let (tmp, script) = temp_script("work.py", WORK);
    let dir = tmp.path().join("r");
    let out = Command::new(hwprof_bin())
        .arg("collect")
        .arg("-r")
        .arg(&dir)
        .args(opts)
        .arg("--")
        .arg(py)
        .arg(&script)
        .arg("3")
        .env("HWPROF_AGENT_LIB", agent_lib())
        .output()
        .expect("run hwprof collect");
    (tmp, dir, out)
}

/// The total% of SCRIPT's `<module>` in `--frames python` (0 when absent): the share of
/// samples whose Python stack reaches the script's top level.
fn module_total(dir: &Path, script: &Path) -> f64 {
    report_csv(dir, "hotspots", &["--frames", "python", "--top", "1000"])
        .iter()
        .find(|r| r.get(0) == Some("<module>") && r.get(2) == script.to_str())
        .and_then(|r| r.get(7)?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn summary_json(dir: &Path) -> serde_json::Value {
    report_json(dir, "summary", &[])
}

/// (line, self) rows of one function in `--view lines`.
fn lines_of(dir: &Path, function: &str) -> Vec<(u32, u64)> {
    report_csv(dir, "lines", &["--frames", "python"])
        .into_iter()
        .filter(|r| r.get(0) == Some(function))
        .filter_map(|r| Some((r.get(3)?.parse().ok()?, r.get(4)?.parse().ok()?)))
        .collect()
}

/// Checks the designed ground truth on a finalized result.
/// Event ids of every agent's sampling events (`python-codes.jsonl` "events" lines).
fn agent_event_ids(dir: &Path) -> std::collections::HashSet<u64> {
    let mut ids = std::collections::HashSet::new();
    for entry in std::fs::read_dir(dir.join("raw")).expect("raw dir") {
        let text =
            std::fs::read_to_string(entry.expect("raw entry").path().join("python-codes.jsonl"))
                .unwrap_or_default();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            if let Some(list) = v["ids"].as_array() {
                ids.extend(list.iter().filter_map(|x| x.as_u64()));
            }
        }
    }
    ids
}

/// `agent_alone`: a launch whose argv[0] is Python, sampled by its agent only.
fn assert_work_truth(dir: &Path, label: &str, agent_alone: bool) {
    let rows = hotspots(dir, &["--frames", "python"]);
    // At least 150 samples (designed 75%).
    let share = split_pct(&rows, HEAVY_LIGHT, SAMPLES, 149.0, label);
    assert!(
        (70.0..=80.0).contains(&share),
        "{label}: heavy share {share:.1}% not 75±5"
    );
    for h in rows.values().filter(|h| h.function.starts_with("Worker.")) {
        assert_eq!(h.module, "python", "{label}: {}", h.function);
    }
    // The hot lines are the loop lines.
    for (f, want) in [("Worker.heavy", HEAVY_LINES), ("Worker.light", LIGHT_LINES)] {
        let ls = lines_of(dir, f);
        let total: u64 = ls.iter().map(|l| l.1).sum();
        let in_loop: u64 = ls.iter().filter(|l| want.contains(&l.0)).map(|l| l.1).sum();
        assert!(
            total > 0 && in_loop * 100 >= total * 90,
            "{label}: {f} lines {ls:?}, want mostly {want:?}"
        );
    }
    // Merged stacks: in --frames all, native code runs below the Python frame.
    let all = hotspots(dir, &[]);
    let h = all
        .get("Worker.heavy")
        .expect("Worker.heavy in --frames all");
    assert!(
        h.total_pct > h.self_pct,
        "{label}: no native frames below Worker.heavy"
    );
    // `--frames native` is perf's view: the eval loop keeps its own time. A sample whose
    // leaf is a Python frame in the merged stack was in the eval loop itself; in the
    // native view it is the eval loop's self time, not its C caller's (which had it
    // when merging replaced the eval frames: `PyEval_EvalCode` at 52% self).
    // (Summed over rows, not `hotspots`' map by name: one name can be several
    // functions, one per module.)
    let native = report_csv(dir, "hotspots", &["--frames", "native", "--top", "1000"]);
    assert!(
        native.iter().all(|r| r.get(1) != Some("python")),
        "{label}: Python frames in --frames native"
    );
    let eval_self: f64 = native
        .iter()
        .filter(|r| {
            r.get(0)
                .is_some_and(|f| f.starts_with("_PyEval_EvalFrameDefault"))
        })
        .filter_map(|r| r.get(5)?.parse::<f64>().ok())
        .sum();
    let python_self: f64 = all
        .values()
        .filter(|h| h.module == "python")
        .map(|h| h.self_pct)
        .sum();
    assert!(
        python_self > 0.0 && (eval_self - python_self).abs() <= 2.0,
        "{label}: eval loop self {eval_self:.1}% in --frames native, Python frames' self {python_self:.1}% in --frames all"
    );
    let s = summary_json(dir);
    assert_eq!(s["python"], "agent", "{label}: summary python field");
    // One capture per agent sample, in that sample's window (same thread, before the
    // thread's next sample).
    let db = rusqlite::Connection::open(dir.join("profile.db")).expect("open profile.db");
    let meta = |k: &str| -> String {
        db.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .unwrap_or_default()
    };
    let agent: u64 = meta("python_agent_samples").parse().unwrap_or(0);
    let with: u64 = meta("python_agent_samples_with_capture")
        .parse()
        .unwrap_or(0);
    let summary: serde_json::Value =
        serde_json::from_str(&meta("python_summary")).unwrap_or_default();
    let captures = summary["captures"].as_u64().unwrap_or(0);
    let lost = s["lost_samples"].as_u64().unwrap_or(0);
    eprintln!(
        "{label}: {captures} captures, {agent} agent samples ({lost} lost), {with} with their capture"
    );
    // A Python launch on the default events is sampled by its agents alone: a second
    // sampling by the collector's own events doubled the kernel's work per sample.
    // (perf.data holds every sample taken; finalize keeps one stream per process.)
    if agent_alone {
        let agents: std::collections::HashSet<u64> = agent_event_ids(dir);
        // The collector samples the processes that are not Python (the pyenv shim's
        // bash and env), never a Python one: its events are all listed per process.
        let fill: std::collections::HashSet<u64> = std::fs::read_dir(dir.join("raw"))
            .expect("raw dir")
            .flatten()
            .flat_map(|e| hwprof::collect::fill::load(&e.path()))
            .flat_map(|r| r.ids)
            .collect();
        let ids = perf_data_sample_ids(dir);
        let ours = ids
            .iter()
            .filter(|id| !agents.contains(id) && !fill.contains(id))
            .count();
        assert!(
            !ids.is_empty() && ours == 0,
            "{label}: {ours} of {} samples in perf.data were the collector's: it sampled the Python launch too",
            ids.len()
        );
    }
    // One SIGTRAP per sample; a sample the kernel could not write (ring full, counted
    // as lost) still had its capture, and the kernel may merge the SIGTRAPs of two
    // samples a few microseconds apart (a thread moving between per-CPU events) into
    // one capture, which then holds the stack of both.
    assert!(
        agent > 0 && captures <= agent + lost && captures * 100 >= agent * 98,
        "{label}: {captures} captures for {agent} agent samples, {lost} lost"
    );
    // A sample taken just before a thread exits can lose its SIGTRAP with the thread.
    assert!(
        with + 2 >= agent,
        "{label}: {} agent samples without their capture",
        agent - with
    );
}

#[test]
fn agent_captures_designed_shares_names_and_lines_on_each_version() {
    let (tmp, script) = temp_script("work.py", WORK);
    let mut ran = 0;
    for (ver, py) in installed_pythons() {
        let dir = tmp.path().join(format!("r{ver}"));
        let out = collect(
            &dir,
            &[],
            &[
                py.to_str().unwrap_or(""),
                script.to_str().unwrap_or(""),
                WORK_ROUNDS,
            ],
        );
        ok(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panick"), "{err}");
        assert_work_truth(&dir, ver, true);
        ran += 1;
    }
    assert!(ran >= 1);
}

#[test]
fn pyenv_shim_and_ordinary_user() {
    let (tmp, script) = temp_script("work.py", WORK);
    // `python3` on PATH (a pyenv shim here: a bash script that execs the interpreter).
    // Not quiet: what a user sees. The shim's short-lived helpers (bash, pyenv, readlink)
    // that exit before their exec record is read are counted as too short, not
    // announced one line each as "not sampled".
    let dir = tmp.path().join("shim");
    let out = collect_loud(
        &dir,
        &[],
        &["python3", script.to_str().unwrap_or(""), WORK_ROUNDS],
    );
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("was not sampled"), "{err}");
    assert_work_truth(&dir, "python3 on PATH", true);

    // An ordinary user (uid 65534, paranoid 2, no capabilities) with the system python.
    let sys_py = system_python_for_nobody();
    let dir = tmp.path().join("user");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(hwprof_bin())
        .arg("collect")
        .arg("-r")
        .arg(&dir)
        .args(["-q", "--"])
        .arg(sys_py)
        .arg(&script)
        .arg(WORK_ROUNDS)
        .env("HWPROF_AGENT_LIB", agent_lib())
        .output()
        .expect("setpriv");
    ok(&out);
    assert_work_truth(&dir, "uid 65534, /usr/bin/python3", true);
}

const SIGNALS: &str = r#"import os, signal, sys
count = 0
def on_trap(sig, frame):
    global count
    count += 1
signal.signal(signal.SIGTRAP, on_trap)
def work(n):
    s = 0
    for i in range(n):
        s += i % 7
    return s
total = work(1_500_000)
for _ in range(3):
    os.kill(os.getpid(), signal.SIGTRAP)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTRAP})
total += work(800_000)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTRAP})
total += work(400_000)
print("count=%d total=%d ours=%s" % (count, total, signal.getsignal(signal.SIGTRAP) is on_trap))
sys.exit(7)
"#;

/// Regression: a target with its own SIGTRAP handler must see exactly its own three
/// SIGTRAPs (not the agent's), keep its handler, survive a blocked SIGTRAP, and exit with
/// its own status; samples taken while SIGTRAP was blocked get no (wrong) Python stack.
#[test]
fn target_sigtrap_handler_blocked_signal_and_exit_status_survive() {
    let (tmp, script) = temp_script("sigs.py", SIGNALS);
    let py = python311();
    let plain = Command::new(&py).arg(&script).output().expect("run python");
    let expect = String::from_utf8_lossy(&plain.stdout).into_owned();
    assert!(expect.starts_with("count=3 "), "{expect}");
    let dir = tmp.path().join("r");
    let out = collect(
        &dir,
        &[],
        &[py.to_str().unwrap_or(""), script.to_str().unwrap_or("")],
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expect);
    let rows = hotspots(&dir, &["--frames", "python"]);
    assert!(
        rows.contains_key("work"),
        "{:?}",
        rows.keys().collect::<Vec<_>>()
    );
    // The blocked stretch (~30% of the work) must not be blamed on pthread_sigmask.
    let masked = rows.get("pthread_sigmask").map_or(0.0, |h| h.self_pct);
    assert!(
        masked < 5.0,
        "late captures were joined: pthread_sigmask {masked}%"
    );
}

#[test]
fn non_python_target_gets_a_native_profile() {
    let tmp = shared_tempdir();
    let dir = tmp.path().join("r");
    let out = collect(
        &dir,
        &[],
        &[
            "/bin/sh",
            "-c",
            "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done",
        ],
    );
    ok(&out);
    let s = summary_json(&dir);
    assert_eq!(s["python"], "off");
    assert!(s["samples"].as_u64().unwrap_or(0) > 20);
}

/// Reads a live interpreter from outside (each version), then replays the same walk on
/// the recorded memory image.
#[test]
fn remote_reader_walks_live_interpreters_and_a_recorded_image() {
    use std::io::BufRead;
    let script = program_source("py_method_spin.py");
    // The loop's lines: `while True:` and its body.
    let loop_lines = [
        source_line("py_method_spin.py", "while True:"),
        source_line("py_method_spin.py", "x = sum(range(1000))"),
    ];
    for (ver, py) in installed_pythons() {
        let mut child = Command::new(&py)
            .arg(&script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn python");
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let pid = child.id();
        let mem = LiveMemory { pid };
        let result = (|| {
            let maps = process::read_maps(pid).map_err(|e| e.to_string())?;
            let interp = process::find_interpreter(pid, &maps, &mem).map_err(|e| e.to_string())?;
            let minor: u32 = ver
                .split('.')
                .nth(1)
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if interp.version.1 != minor {
                return Err(format!("version {:?}", interp.version));
            }
            // 3.13: what its _Py_DebugOffsets gave is its headers' table.
            if minor == 13 && interp.layout != hwprof::python::wire::layouts::V3_13_FROM_HEADERS {
                return Err(format!(
                    "3.13 layout from _Py_DebugOffsets {:?} differs from the headers' {:?}",
                    interp.layout,
                    hwprof::python::wire::layouts::V3_13_FROM_HEADERS
                ));
            }
            let threads = walker::threads(&mem, &interp.layout, interp.runtime);
            let main = threads.first().ok_or("no thread")?;
            if main.tid != Some(pid) {
                return Err(format!("main thread tid {:?} != pid {pid}", main.tid));
            }
            // Read until a consistent stack with the expected shape is seen, for up to
            // 10 s: reads 1 ms apart, so that a child descheduled mid-call (two loaded
            // cores) runs on between them instead of showing 200 reads one torn stack.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
                let rec = Recorder::new(&mem);
                let top = walker::top_frame(&rec, &interp.decoder, main.tstate)
                    .map_err(|e| e.to_string())?;
                let (frames, _) = walker::walk(&rec, &interp.decoder, top, wire::MAX_FRAMES);
                let mut names = Vec::new();
                for f in frames
                    .iter()
                    .filter(|f| f.flags & hwprof::python::wire::FR_SHIM == 0)
                {
                    let Ok(c) = code::read_code(&rec, &interp.layout, f.code) else {
                        continue;
                    };
                    let name = if c.self_first && f.self_type != 0 {
                        let t = code::read_type_name(&rec, &interp.layout, f.self_type)
                            .unwrap_or_default();
                        format!("{t}.{}", c.name)
                    } else {
                        c.qualname.clone()
                    };
                    let line = hwprof::python::linetable::line_for_offset(
                        hwprof::python::linetable::TableKind::for_minor(minor),
                        &c.linetable,
                        c.firstlineno,
                        f.offset,
                    );
                    names.push((name, line));
                }
                let idx = names.iter().position(|n| n.0 == "Inner.spin");
                let Some(i) = idx else { continue };
                if names.get(i + 1).map(|n| n.0.as_str()) != Some("outer")
                    || !names[i].1.is_some_and(|l| loop_lines.contains(&l))
                    || names.last().map(|n| n.0.as_str()) != Some("<module>")
                {
                    continue;
                }
                // Replay: the recorded image gives the same frames.
                let image: MemoryImage = rec.image.borrow().clone();
                let (again, _) = walker::walk(&image, &interp.decoder, top, wire::MAX_FRAMES);
                if again != frames {
                    return Err("replay differs".into());
                }
                eprintln!("{ver}: {names:?}");
                return Ok(());
            }
            Err("never saw Inner.spin <- outer <- <module> at the loop lines".into())
        })();
        let _ = child.kill();
        let _ = child.wait();
        if let Err(e) = result {
            panic!("{ver}: {e}");
        }
    }
}

#[test]
fn remote_sampler_for_attach() {
    let (tmp, script) = temp_script("work.py", WORK);
    let py = python311();
    let mut child = spawn_settled(&py, &script, "400", 300);
    let dir = tmp.path().join("r");
    let out = attach_for(&dir, child.id(), "2");
    let _ = child.kill();
    let _ = child.wait();
    ok(&out);
    let s = summary_json(&dir);
    assert_eq!(s["python"], "remote");
    // A stack is discarded only when its frames changed during the read, not when the
    // leaf's instruction moved on (it always does in a loop: three in four were).
    let (captures, torn) = (
        s["python_summary"]["captures"].as_u64().unwrap_or(0),
        s["python_summary"]["torn"].as_u64().unwrap_or(u64::MAX),
    );
    eprintln!("remote: {captures} stacks, {torn} torn");
    assert!(torn * 20 < captures, "{torn} torn of {captures}: {s:#}");
    let rows = hotspots(&dir, &["--frames", "python"]);
    let share = split_pct(&rows, HEAVY_LIGHT, SAMPLES, 80.0, "remote");
    assert!(
        (65.0..=85.0).contains(&share),
        "remote heavy share {share:.1}%"
    );
}

/// Recursion 1,000 deep (Python's default limit), then a loop until killed.
const DEEP_SPIN: &str = r#"import sys
sys.setrecursionlimit(3000)
def rec(n):
    if n == 0:
        sys.stdout.write("ready\n"); sys.stdout.flush()
        while True:
            s = 0
            for i in range(10000):
                s += i
    return rec(n - 1)
rec(1000)
"#;

/// `-p` on a stack 1,000 frames deep: a read from outside walks it with a system call per
/// frame, longer than a period at 999 Hz on this kind of machine, so samples miss their
/// read; the summary gives the share that had one, and below half says why and what to
/// do. Doing it (-F 99) gives every sample its read, and each read is the whole stack:
/// `<module>` holds the samples.
#[test]
fn remote_reads_of_a_deep_stack_say_what_they_missed_and_the_advice_works() {
    use std::io::BufRead;
    let (tmp, script) = temp_script("deep_spin.py", DEEP_SPIN);
    /// Killed however the test ends: the script never ends by itself.
    struct Spinning(std::process::Child);
    impl Drop for Spinning {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Spinning(
        Command::new(python311())
            .arg(&script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn python"),
    );
    let mut ready = String::new();
    let stdout = child.0.stdout.take().expect("stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut ready)
        .expect("read ready");
    let pid = child.0.id().to_string();
    let attach = |name: &str, extra: &[&str]| {
        let dir = tmp.path().join(name);
        let mut args = vec!["-d", "2", "-p", pid.as_str()];
        args.extend_from_slice(extra);
        ok(&collect_through(
            Command::new(hwprof_bin()),
            &dir,
            &args,
            &[],
        ));
        let s = summary_json(&dir);
        let joined = s["python_samples_joined"].as_u64().unwrap_or(0);
        let samples = joined + s["python_samples_without_stack"].as_u64().unwrap_or(0);
        let pct = 100.0 * joined as f64 / samples.max(1) as f64;
        let text = report(&dir, &["--view", "summary"]);
        let line = format!(
            "python: {joined} of {samples} samples ({pct:.1}%) with a Python stack read from outside"
        );
        assert_says(&text, &[&line], name);
        let advice = "collect with a lower -F (e.g. -F 99)";
        assert_eq!(
            text.contains(advice),
            pct < 50.0,
            "{name}: {pct:.1}%: {text}"
        );
        // The HTML report's header says it too.
        let page = std::fs::read_to_string(export_html(&dir)).unwrap_or_default();
        assert_eq!(page.contains(advice), pct < 50.0, "{name}: {pct:.1}%: HTML");
        (dir, pct)
    };
    let (_, pct_999) = attach("f999", &[]);
    let (dir, pct_99) = attach("f99", &["-F", "99"]);
    drop(child);
    eprintln!(
        "remote, 1,000 frames: {pct_999:.1}% of samples with a read at 999 Hz, {pct_99:.1}% at 99 Hz"
    );
    // 94-100% in runs beside other tests; a loaded machine delays some reads past
    // their period.
    assert!(
        pct_99 >= 80.0 && pct_99 > pct_999,
        "{pct_99:.1}% at 99 Hz, {pct_999:.1}% at 999"
    );
    // Whole stacks: every read reaches <module>, 1,002 frames out.
    let module = module_total(&dir, &script);
    assert!(
        module >= pct_99 - 2.0,
        "<module> total {module}%, {pct_99:.1}% joined"
    );
}

#[test]
fn perfmap_mode_copies_the_interpreters_map() {
    let Some(py) = pyenv_or_skip("3.12.1") else {
        return;
    };
    let (_tmp, dir, out) = collect_work(&py, &["-q", "--python", "perfmap"]);
    ok(&out);
    let raw = first_raw_dir(&dir);
    let is_perf_map = |e: &std::fs::DirEntry| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with("perf-") && name.ends_with(".map")
    };
    let map = std::fs::read_dir(&raw)
        .expect("read raw")
        .flatten()
        .find(is_perf_map)
        .expect("perf-PID.map copied into the raw dir")
        .path();
    let text = std::fs::read_to_string(&map).expect("read map");
    let m = hwprof::python::perfmap::PerfMap::parse(&text);
    let line = text
        .lines()
        .find(|l| l.contains("py::Worker.heavy"))
        .expect("Worker.heavy trampoline");
    let addr = u64::from_str_radix(line.split(' ').next().unwrap_or("0"), 16).unwrap_or(0);
    let f = m.symbol(addr + 1).expect("symbol");
    assert_eq!(f.function.name, "Worker.heavy");
    assert_eq!(f.function.kind, hwprof::profile::FrameKind::Python);
    // Finalize names the trampoline frames the unwinder reaches (the innermost Python
    // function: without frame pointers in the interpreter, perf too stops there): the
    // designed 3:1 split shows in `--frames python`.
    let rows = hotspots(&dir, &["--frames", "python"]);
    // More than half of the samples: else the trampolines are not named.
    let share = split_pct(&rows, HEAVY_LIGHT, |h| h.self_pct, 50.0, "perfmap");
    assert!(
        (70.0..=80.0).contains(&share),
        "perfmap: heavy share {share:.1}% not 75±5"
    );
    assert_eq!(rows["Worker.heavy"].module, "python");
}

/// Bad input: cut and corrupt sidecars never break finalize.
#[test]
fn corrupt_python_sidecars_do_not_break_finalize() {
    let (_tmp, dir, out) = collect_work(&python311(), &["-q", "--no-finalize"]);
    ok(&out);
    let raw = first_raw_dir(&dir);
    for e in std::fs::read_dir(&raw).expect("raw").flatten() {
        let p = e.path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if name.starts_with("python-") && name.ends_with(".bin") {
            let mut b = std::fs::read(&p).expect("read");
            let cut = b.len() * 2 / 3;
            b.truncate(cut);
            b.extend((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
            std::fs::write(&p, b).expect("write");
        }
        if name == "python-codes.jsonl" {
            let mut t = std::fs::read_to_string(&p).expect("read");
            t.push_str("{\"type\":\"code\",\"pid\":1,\"addr\":\n{not json\n");
            t = t.replace("\"linetable\":\"", "\"linetable\":\"zz");
            std::fs::write(&p, t).expect("write");
        }
    }
    let out = Command::new(hwprof_bin())
        .arg("finalize")
        .arg(&dir)
        .output()
        .expect("finalize");
    ok(&out);
    let rows = hotspots(&dir, &["--frames", "python"]);
    assert!(
        rows.contains_key("Worker.heavy")
            || rows.values().any(|h| h.function.contains("unresolved"))
            || !rows.is_empty()
    );
}

const THREADS: &str = r#"import hashlib, threading
data = b"x" * (1 << 20)
def hasher():
    for _ in range(250):
        hashlib.sha256(data).digest()
def pyloop():
    s = 0
    for i in range(6_000_000):
        s += i
t = threading.Thread(target=hasher)
t.start()
pyloop()
t.join()
"#;

/// Each sample gets its own thread's Python stack: a thread hashing in C (GIL released)
/// keeps its `hasher` frame while the other runs Python code (`pyloop`). Taking the
/// GIL holder's stack instead would blame `pyloop` for the hashing thread's samples.
#[test]
fn each_thread_gets_its_own_python_stack() {
    let (tmp, script) = temp_script("threads.py", THREADS);
    let py = python311();
    let dir = tmp.path().join("r");
    ok(&collect(
        &dir,
        &[],
        &[py.to_str().unwrap_or(""), script.to_str().unwrap_or("")],
    ));
    let rows = hotspots(&dir, &["--frames", "python"]);
    let hasher = rows.get("hasher").map_or(0.0, |h| h.self_pct);
    let pyloop = rows.get("pyloop").map_or(0.0, |h| h.self_pct);
    eprintln!("threads: hasher {hasher:.1}%, pyloop {pyloop:.1}%");
    assert!(
        hasher > 15.0 && pyloop > 15.0,
        "hasher {hasher}%, pyloop {pyloop}%"
    );
    // The hashing thread's native leaf (sha256 code) sits under `hasher`, not `pyloop`.
    let all = hotspots(&dir, &[]);
    let sha: f64 = all
        .values()
        .filter(|h| h.module.contains("libcrypto") || h.function.to_lowercase().contains("sha256"))
        .map(|h| h.self_pct)
        .sum();
    eprintln!("threads: libcrypto self {sha:.1}%");
    assert!(sha > 10.0, "no libcrypto native time");
    assert!(
        hasher >= sha * 0.9,
        "sha256 time ({sha}%) not under hasher ({hasher}%)"
    );
}

/// Each module's body runs 4 ms of CPU time at import (CPU, not wall time, so the
/// sample count holds on a loaded machine; the clock, a syscall, is read every 2000
/// iterations, as the agent samples user mode only) and is freed right after: the
/// collector must read those code objects while they live (it reads captures every
/// millisecond while they bring new code objects; at a fixed 10 ms, 31-41% resolved).
#[test]
fn module_bodies_run_at_import_are_resolved() {
    let (tmp, mods, main) = module_bodies(40, "0.004");
    let py = python311();
    let dir = tmp.path().join("r");
    ok(&collect(
        &dir,
        &[],
        &[
            py.to_str().unwrap_or(""),
            main.to_str().unwrap_or(""),
            mods.to_str().unwrap_or(""),
        ],
    ));
    let rows = report_csv(&dir, "hotspots", &["--frames", "python", "--top", "1000"]);
    let (mut bodies, mut unresolved) = (0u64, 0u64);
    for rec in rows {
        let self_samples: u64 = rec[4].parse().unwrap_or(0);
        let in_mods = Path::new(&rec[2]).parent() == Some(mods.as_path());
        if &rec[0] == "<module>" && in_mods {
            bodies += self_samples;
        } else if rec[0].starts_with("<unresolved python code") {
            unresolved += self_samples;
        }
    }
    eprintln!("import: {bodies} samples in module bodies, {unresolved} unresolved");
    // 40 x 4 ms at 1 kHz: ~160 samples in the bodies.
    assert!(
        bodies + unresolved >= 100,
        "{bodies} + {unresolved} samples"
    );
    assert!(
        bodies as f64 >= 0.8 * (bodies + unresolved) as f64,
        "{unresolved} of {} module-body samples unresolved",
        bodies + unresolved
    );
}

/// An interpreter outside 3.8-3.13: one notice, a native profile, no error.
#[test]
fn unsupported_version_gets_one_notice_and_a_native_profile() {
    let Some(py) = pyenv_or_skip("3.7.16") else {
        return;
    };
    // Not quiet: the notice is what a user sees.
    let (_tmp, dir, out) = collect_work(&py, &[]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    // One notice while collecting; the report after it names the cause in its warning.
    let notices = err
        .lines()
        .filter(|l| l.starts_with("hwprof:") && l.contains("3.7 is not supported"))
        .count();
    assert_eq!(notices, 1, "{err}");
    assert!(
        err.contains("WARNING: Python frames were expected") || {
            let out = String::from_utf8_lossy(&out.stdout);
            out.contains("WARNING: Python frames were expected")
        },
        "{err}"
    );
    let s = summary_json(&dir);
    assert_eq!(s["python"], "off");
    assert!(s["samples"].as_u64().unwrap_or(0) > 10);
}

/// `-p` on a Python process that exits while being read: collection ends cleanly.
#[test]
fn attached_python_exiting_mid_read() {
    let py = python311();
    let (tmp, script) = temp_script("work.py", WORK);
    let mut child = spawn_settled(&py, &script, "12", 150);
    let dir = tmp.path().join("r");
    let started = std::time::Instant::now();
    let out = attach_for(&dir, child.id(), "20");
    let _ = child.wait();
    ok(&out);
    assert!(
        started.elapsed().as_secs() < 15,
        "collection did not end with the target"
    );
    assert_eq!(summary_json(&dir)["python"], "remote");
}

/// `sleeper` blocks in `time.sleep` at line 6, 20 × 50 ms, in its own thread, while the
/// main thread spins: locks mode must put ≥ 0.9 s of off-CPU time at exactly that line,
/// on the thread whose OS id the script wrote down.
const SLEEPER: &str = r#"import sys, threading, time

def sleeper(path):
    open(path, "w").write(str(threading.get_native_id()))
    for _ in range(20):
        time.sleep(0.05)

def spinner():
    t = time.time()
    x = 0
    while time.time() - t < 1.0:
        x += 1

t = threading.Thread(target=sleeper, args=(sys.argv[1],))
t.start()
spinner()
t.join()
"#;
const SLEEP_LINE: u32 = 6;

#[test]
fn blocked_thread_is_reported_at_its_sleep_line_with_its_os_tid() {
    require_root!(
        "locks mode needs kernel context-switch samples (root or perf_event_paranoid <= 1)"
    );
    let (tmp, script) = temp_script("sleeper.py", SLEEPER);
    let tid_file = tmp.path().join("sleeper.tid");
    let py = python311();
    let dir = tmp.path().join("r");
    ok(&collect(
        &dir,
        &["-m", "locks"],
        &[
            py.to_str().unwrap_or(""),
            script.to_str().unwrap_or(""),
            tid_file.to_str().unwrap_or(""),
        ],
    ));
    let tid: u64 = std::fs::read_to_string(&tid_file)
        .expect("the script wrote its thread id")
        .trim()
        .parse()
        .expect("a thread id");
    let lines = lines_of(&dir, "sleeper");
    let at_line: u64 = lines
        .iter()
        .filter(|(l, _)| *l == SLEEP_LINE)
        .map(|(_, v)| v)
        .sum();
    let elsewhere: u64 = lines
        .iter()
        .filter(|(l, _)| *l != SLEEP_LINE)
        .map(|(_, v)| v)
        .sum();
    eprintln!("sleeper: {at_line} ns at line {SLEEP_LINE}, {elsewhere} ns elsewhere");
    assert!(
        at_line >= 900_000_000,
        "only {at_line} ns off-CPU at the sleep line: {lines:?}"
    );
    assert!(elsewhere * 20 < at_line, "waits on other lines: {lines:?}");
    let threads = report(&dir, &["--view", "threads", "--format", "csv"]);
    let row = threads
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.get(1).and_then(|t| t.parse::<u64>().ok()) == Some(tid))
        .unwrap_or_else(|| panic!("thread {tid} not in the threads view:\n{threads}"));
    let total: u64 = row.get(4).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(
        total >= 900_000_000,
        "thread {tid} waited {total} ns: {row:?}"
    );
}

/// Python started by a shell or by `env`: argv[0] is not Python, the agent is preloaded
/// into the whole tree and wakes in the interpreter only.
#[test]
fn python_started_by_sh_c_or_env_gets_its_frames() {
    let (tmp, script) = temp_script("work.py", WORK);
    let py = python311();
    let line = format!("{} {} {WORK_ROUNDS}", py.display(), script.display());
    let dir = tmp.path().join("sh");
    ok(&collect(&dir, &[], &["sh", "-c", &line]));
    assert_work_truth(&dir, "sh -c", false);
    let dir = tmp.path().join("env");
    ok(&collect(
        &dir,
        &[],
        &[
            "env",
            "HWPROF_TEST=1",
            py.to_str().unwrap_or(""),
            script.to_str().unwrap_or(""),
            WORK_ROUNDS,
        ],
    ));
    assert_work_truth(&dir, "env X=1", false);
}

/// `whole` recurses 1,000 deep (Python's default recursion limit) and `cut` 1,100 (past
/// the 1,024 frames captured) before the same loop; `shallow` runs it at depth 1.
const RECURSION: &str = r#"import sys
sys.setrecursionlimit(3000)
def spin():
    s = 0
    for i in range(200000):
        s += i
    return s
def whole(n):
    return spin() if n == 0 else whole(n - 1)
def cut(n):
    return spin() if n == 0 else cut(n - 1)
def shallow():
    return spin()
for _ in range(int(sys.argv[1])):
    whole(1000)
    cut(1100)
    shallow()
"#;

/// Deep recursion on each version. On 3.8-3.10 every Python call is a C-level call of
/// the eval loop, so the native stack is cut at its 8 KiB copy; the agent's Python stack
/// gives the callers, so that is not said. A recursion as deep as Python allows by
/// default is whole (`<module>` holds it); a deeper one is cut: the summary says so, for
/// its share of the samples, and only for it.
#[test]
fn deep_recursion_says_which_stacks_are_cut_and_only_those() {
    let (tmp, script) = temp_script("recursion.py", RECURSION);
    for (ver, py) in installed_pythons() {
        let dir = tmp.path().join(format!("r{ver}"));
        ok(&collect(
            &dir,
            &[],
            &[
                py.to_str().unwrap_or(""),
                script.to_str().unwrap_or(""),
                "20",
            ],
        ));
        let rows = hotspots(&dir, &["--frames", "python"]);
        let total = |f: &str| rows.get(f).map_or(0.0, |h| h.total_pct);
        let (whole, cut, shallow) = (total("whole"), total("cut"), total("shallow"));
        assert!(
            whole > 20.0 && cut > 20.0 && shallow > 20.0,
            "{ver}: whole {whole}%, cut {cut}%, shallow {shallow}%"
        );
        let summary = report_json(&dir, "summary", &[]);
        let share = |k: &str| {
            100.0 * summary[k].as_u64().unwrap_or(0) as f64
                / summary[hwprof::profile::STACK_CUT_BASE_KEY]
                    .as_u64()
                    .unwrap_or(1)
                    .max(1) as f64
        };
        // What a failure needs, in a line (CI logs keep only part of long messages).
        let facts = format!(
            "{ver}: whole {whole}%, cut {cut}%, shallow {shallow}%; summary: samples {}, base {}, cut at copy {}, python cut {}, python {}, without stack {}",
            summary["samples"],
            summary[hwprof::profile::STACK_CUT_BASE_KEY],
            summary["stacks_cut_at_copy_size"],
            summary["python_stacks_cut"],
            summary["python_summary"],
            summary["python_without_stack"]
        );
        assert!(
            share("stacks_cut_at_copy_size") < 1.0,
            "native stacks cut where the Python stack gives the callers: {facts}"
        );
        let cut_share = share("python_stacks_cut");
        assert!(
            (cut_share - cut).abs() <= 5.0,
            "python stacks cut {cut_share:.1}%, cut's samples {cut:.1}%: {facts}"
        );
        let text = report(&dir, &["--view", "summary"]);
        assert_says(
            &text,
            &[
                &format!("python stacks cut short: {cut_share:.1}% "),
                "deeper than the 1024 frames",
            ],
            ver,
        );
        assert!(!text.contains("  stacks cut short"), "{facts}: {text}");
        // The 1,000-deep stacks and shallow's are whole: <module> holds them, and not
        // the cut ones.
        let module = module_total(&dir, &script);
        assert!(
            (module - (whole + shallow)).abs() <= 3.0,
            "<module> total {module}%, whole {whole}% + shallow {shallow}%: {facts}"
        );
    }
}
