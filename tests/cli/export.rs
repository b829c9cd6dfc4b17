//! `hwprof export`: every format fed to its real reader (DESIGN section 8).
//!
//! The fixture is a profile.db built with `ProfileWriter`, with designed ground truth
//! (metric samples at 1000 Hz, so one sample is 1 ms):
//!
//! | rank | tid | stack (outermost first)                                          | samples |
//! |------|-----|------------------------------------------------------------------|---------|
//! | 0    | 100 | main → a                                                         | 3       |
//! | 0    | 100 | main → b                                                         | 1       |
//! | 0    | 101 | _PyEval → `<module>` (py) → _PyEval → Model.step (py) → dgemm_    | 4       |
//! | 1    | 200 | main → a                                                         | 2       |
//!
//! Self: a 5, dgemm_ 4, b 1 (total 10). Total: main 6, Model.step 4.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;

use crate::common::{assert_success, run_ok};
use hwprof::profile::{EventRow, FrameKind, Function, Process, ProfileWriter, Thread};

const PY_EVAL: &str = "_PyEval_EvalFrameDefault";

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ProfileWriter::default();
    for (k, v) in [
        ("mode", "hotspots"),
        ("metric", "samples"),
        ("frequency_hz", "1000"),
    ] {
        w.profile.meta.insert(k.into(), v.into());
    }
    w.profile.events.push(EventRow {
        name: "cpu-clock".into(),
        ..Default::default()
    });
    // Two ranks on one node: (pid, rank); their threads: (process, tid, name).
    w.profile.processes = [(100, 0), (200, 1)]
        .map(|(pid, rank)| Process {
            host: "node1".into(),
            rank: Some(rank),
            pid,
            command: "./sim".into(),
            ..Default::default()
        })
        .into();
    w.profile.threads = [(0, 100, "sim"), (0, 101, "worker"), (1, 200, "sim")]
        .map(|(process, tid, name)| Thread {
            process,
            tid,
            name: name.into(),
        })
        .into();
    let mut frame = |name: &str, module: &str, file: &str, line: u32, kind: FrameKind| {
        w.frame_at(Function::in_file(name, module, kind, file, line), line + 2)
    };
    let main = frame("main", "sim", "sim.c", 10, FrameKind::Native);
    let a = frame("a", "sim", "sim.c", 20, FrameKind::Native);
    let b = frame("b", "sim", "sim.c", 30, FrameKind::Native);
    let eval = frame(
        PY_EVAL,
        "libpython3.11.so.1.0",
        "ceval.c",
        500,
        FrameKind::Native,
    );
    let module = frame("<module>", "python", "model.py", 1, FrameKind::Python);
    let step = frame("Model.step", "python", "model.py", 12, FrameKind::Python);
    let dgemm = frame("dgemm_", "libblas.so.3", "dgemm.f", 1, FrameKind::Native);
    let s = w.stack(&[main, a]);
    w.add_sample(s, 0, 0, 3, 3);
    let s = w.stack(&[main, b]);
    w.add_sample(s, 0, 0, 1, 1);
    let s = w.stack(&[eval, module, eval, step, dgemm]);
    w.add_sample(s, 1, 0, 4, 4);
    let s = w.stack(&[main, a]);
    w.add_sample(s, 2, 0, 2, 2);
    w.write(dir.path()).unwrap();
    dir
}

/// Run `hwprof export DIR --format F [extra...]` and return its stdout (must succeed).
fn export(dir: &Path, format: &str, extra: &[&str]) -> Vec<u8> {
    let out = Command::cargo_bin("hwprof")
        .unwrap()
        .arg("export")
        .arg(dir)
        .args(["--format", format])
        .args(extra)
        .output()
        .unwrap();
    assert_success(&out, &format!("export --format {format} {extra:?} failed"));
    out.stdout
}

/// Export to a file with -o and return its path.
fn export_file(dir: &Path, format: &str, name: &str) -> PathBuf {
    let path = dir.join(name);
    let stdout = export(dir, format, &["-o", path.to_str().unwrap()]);
    assert!(stdout.is_empty(), "-o also wrote to stdout");
    assert!(path.is_file(), "{} not written", path.display());
    path
}

fn have(tool: &str) -> bool {
    StdCommand::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Tools that .ci/run installs: a missing one is a failure, with the package to install.
fn require(tool: &str, package: &str) {
    assert!(
        have(tool),
        "{tool} is not installed: install {package} (.ci/run does)"
    );
}

/// `python3 -c SCRIPT ARGS...` (python3 is required), asserted successful: its output.
fn python(script: &str, args: &[&Path]) -> String {
    require("python3", "python3");
    run_ok(StdCommand::new("python3").arg("-c").arg(script).args(args))
}

/// Folded lines → weight per leaf label.
fn per_leaf(folded: &str) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for line in folded.lines() {
        let (stack, n) = line.rsplit_once(' ').expect("no weight on a folded line");
        let leaf = stack.rsplit(';').next().unwrap().to_string();
        *m.entry(leaf).or_default() += n.parse::<u64>().expect("weight is not a number");
    }
    m
}

#[test]
fn collapsed_totals_per_leaf() {
    let dir = fixture();
    let text = String::from_utf8(export(dir.path(), "collapsed", &[])).unwrap();
    let leaves = per_leaf(&text);
    assert_eq!(leaves["a"], 5, "{text}");
    assert_eq!(leaves["dgemm_"], 4, "{text}");
    assert_eq!(leaves["b"], 1, "{text}");
    assert_eq!(leaves.values().sum::<u64>(), 10);
    assert!(
        text.contains(&format!(
            "{PY_EVAL};<module> (model.py:1);{PY_EVAL};Model.step (model.py:12);dgemm_ 4\n"
        )),
        "{text}"
    );
    // inferno reads it back (flamegraph.pl semantics).
    let mut svg = Vec::new();
    let mut opts = inferno::flamegraph::Options::default();
    inferno::flamegraph::from_lines(&mut opts, text.lines(), &mut svg).unwrap();
    assert!(String::from_utf8_lossy(&svg).contains("all (10 samples, 100%)"));
}

#[test]
fn rank_filter_keeps_one_rank() {
    let dir = fixture();
    let text = String::from_utf8(export(dir.path(), "collapsed", &["--rank", "1"])).unwrap();
    assert_eq!(text, "main;a 2\n");
    let text = String::from_utf8(export(dir.path(), "collapsed", &["--rank", "0"])).unwrap();
    assert_eq!(per_leaf(&text).values().sum::<u64>(), 8);

    let out = Command::cargo_bin("hwprof")
        .unwrap()
        .args([
            "export",
            dir.path().to_str().unwrap(),
            "--format",
            "collapsed",
        ])
        .args(["--rank", "7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "hwprof: error: rank 7 is not in this profile: ranks present: 0, 1; pick one of those"
        ),
        "{err}"
    );
}

#[test]
fn frames_filter_python_and_native() {
    let dir = fixture();
    let py = String::from_utf8(export(dir.path(), "collapsed", &["--frames", "python"])).unwrap();
    // Native frames below Model.step fold into it; stacks without Python stay native.
    assert!(
        py.contains("<module> (model.py:1);Model.step (model.py:12) 4\n"),
        "{py}"
    );
    assert!(py.contains("main;a 5\n"), "{py}");
    let native =
        String::from_utf8(export(dir.path(), "collapsed", &["--frames", "native"])).unwrap();
    assert!(
        native.contains(&format!("{PY_EVAL};{PY_EVAL};dgemm_ 4\n")),
        "{native}"
    );
    assert!(!native.contains("model.py"), "{native}");
}

#[test]
fn flamegraph_is_xml_with_names_and_total() {
    let dir = fixture();
    let path = export_file(dir.path(), "flamegraph", "fg.svg");
    // Parse with a real XML parser and list the <title> tooltips.
    let titles = python(
        "import sys, xml.etree.ElementTree as ET\n\
         root = ET.parse(sys.argv[1]).getroot()\n\
         for t in root.iter('{http://www.w3.org/2000/svg}title'): print(t.text)",
        &[&path],
    );
    assert!(titles.contains("all (10 samples, 100%)"), "{titles}");
    assert!(titles.contains("a (5 samples, 50.00%)"), "{titles}");
    assert!(titles.contains("dgemm_ (4 samples, 40.00%)"), "{titles}");
    assert!(
        titles.contains("Model.step (model.py:12) (4 samples, 40.00%)"),
        "{titles}"
    );
}

/// speedscope's official schema: $HWPROF_SPEEDSCOPE_SCHEMA, or the npm package
/// installed once under the test target directory.
fn speedscope_schema() -> PathBuf {
    // Two tests may ask at once: one npm install at a time.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = std::env::var_os("HWPROF_SPEEDSCOPE_SCHEMA") {
        return PathBuf::from(p);
    }
    let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join("speedscope-npm");
    let schema = prefix.join("node_modules/speedscope/dist/release/file-format-schema.json");
    if !schema.is_file() {
        require("npm", "npm");
        std::fs::create_dir_all(&prefix).unwrap();
        run_ok(
            StdCommand::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&prefix)
                .arg("speedscope"),
        );
    }
    assert!(
        schema.is_file(),
        "no {} in the speedscope package",
        schema.display()
    );
    schema
}

fn validate_speedscope(path: &Path) {
    let schema = speedscope_schema();
    python(
        "import json, sys, jsonschema\n\
         schema = json.load(open(sys.argv[1]))\n\
         jsonschema.validate(json.load(open(sys.argv[2])), schema)",
        &[&schema, path],
    );
}

#[test]
fn speedscope_validates_against_the_official_schema() {
    let dir = fixture();
    let path = export_file(dir.path(), "speedscope", "p.speedscope.json");
    validate_speedscope(&path);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let profiles = v["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 3, "one profile per thread");
    let ends: u64 = profiles
        .iter()
        .map(|p| p["endValue"].as_u64().unwrap())
        .sum();
    assert_eq!(ends, 10);
    let frames = v["shared"]["frames"].as_array().unwrap();
    let step = frames.iter().find(|f| f["name"] == "Model.step").unwrap();
    assert_eq!(step["file"], "model.py");
    assert_eq!(step["line"], 12);
}

#[test]
fn pprof_decodes_with_protoc() {
    let dir = fixture();
    let path = export_file(dir.path(), "pprof", "p.pb.gz");
    require("protoc", "protobuf-compiler");
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("third_party/pprof");
    let gz = std::fs::read(&path).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw)
        .expect("pprof output is not gzip");
    let raw_path = dir.path().join("p.pb");
    std::fs::write(&raw_path, &raw).unwrap();
    let text = run_ok(
        StdCommand::new("protoc")
            .arg(format!("--proto_path={}", proto_dir.display()))
            .arg("--decode=perftools.profiles.Profile")
            .arg("profile.proto")
            .stdin(std::fs::File::open(&raw_path).unwrap()),
    );
    // Sample values come in pairs: (samples/count, cpu/nanoseconds).
    let values: Vec<i64> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("value: "))
        .map(|v| v.parse().unwrap())
        .collect();
    let counts: i64 = values.iter().step_by(2).sum();
    let cpu: i64 = values.iter().skip(1).step_by(2).sum();
    assert_eq!(counts, 10, "{text}");
    assert_eq!(cpu, 10_000_000, "10 samples at 1000 Hz");
    for name in [
        "\"main\"",
        "\"dgemm_\"",
        "\"Model.step\"",
        "\"model.py\"",
        "\"cpu\"",
    ] {
        assert!(
            text.contains(&format!("string_table: {name}")),
            "{name} missing: {text}"
        );
    }
}

#[test]
fn pstats_reads_in_python_and_gprof2dot() {
    let dir = fixture();
    let path = export_file(dir.path(), "pstats", "p.prof");
    let rows = python(
        "import json, pstats, sys\n\
         s = pstats.Stats(sys.argv[1]); s.sort_stats('tottime')\n\
         print(json.dumps([[k[0], k[1], k[2], s.stats[k][0], s.stats[k][1], s.stats[k][2], s.stats[k][3], len(s.stats[k][4])] for k in s.fcn_list]))",
        &[&path],
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(&rows).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r[2].as_str().unwrap()).collect();
    // hwprof's self ranking: a (5), dgemm_ (4), b (1).
    assert_eq!(&names[..3], ["a", "dgemm_", "b"], "{rows:?}");
    let row = |n: &str| rows.iter().find(|r| r[2] == n).unwrap().clone();
    let close = |v: &serde_json::Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9;
    assert!(close(&row("a")[5], 0.005), "a tt: {:?}", row("a"));
    assert!(close(&row("main")[6], 0.006), "main ct: {:?}", row("main"));
    let step = row("Model.step");
    assert_eq!(
        (step[0].as_str(), step[1].as_i64()),
        (Some("model.py"), Some(12))
    );
    assert!(close(&step[5], 0.0) && close(&step[6], 0.004), "{step:?}");
    assert_eq!(
        (row("main")[0].as_str(), row("main")[1].as_i64()),
        (Some("sim"), Some(0)),
        "native key is (module, 0, name)"
    );
    assert_eq!(row("a")[7], 1, "a has one caller (main)");

    require("gprof2dot", "the gprof2dot pip package");
    let dot = dir.path().join("p.dot");
    run_ok(
        StdCommand::new("gprof2dot")
            .args(["-f", "pstats", "--node-thres=0", "--edge-thres=0"])
            .arg(&path)
            .arg("-o")
            .arg(&dot),
    );
    let dot = std::fs::read_to_string(&dot).unwrap();
    for name in ["main", "dgemm_", "Model.step"] {
        assert!(
            dot.contains(name),
            "{name} missing in gprof2dot output: {dot}"
        );
    }
}

#[test]
fn pstats_goes_to_a_pipe() {
    // assert_cmd's stdout is a pipe, not a terminal: binary output is allowed there.
    let dir = fixture();
    let bytes = export(dir.path(), "pstats", &[]);
    assert_eq!(bytes.first(), Some(&b'{'), "a marshal dict");
}

/// callgrind_annotate output → cost per function.
fn annotate_costs(text: &str) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((cost, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(cost) = cost.replace(',', "").parse::<u64>() else {
            continue;
        };
        let rest = rest.trim_start();
        let rest = match rest.split_once(')') {
            Some((pct, r)) if pct.starts_with('(') => r.trim(),
            _ => rest,
        };
        if rest == "PROGRAM TOTALS" {
            m.insert(rest.to_string(), cost);
        } else if let Some((file_fn, _)) = rest.split_once(" [")
            && let Some((_, f)) = file_fn.rsplit_once(':')
        {
            m.insert(f.to_string(), cost);
        }
    }
    m
}

#[test]
fn callgrind_reads_in_callgrind_annotate() {
    let dir = fixture();
    let path = export_file(dir.path(), "callgrind", "callgrind.out.1");
    require("callgrind_annotate", "valgrind");
    let text = run_ok(
        StdCommand::new("callgrind_annotate")
            .args(["--threshold=100", "--auto=no"])
            .arg(&path),
    );
    let costs = annotate_costs(&text);
    assert_eq!(costs.get("PROGRAM TOTALS"), Some(&10), "{text}");
    assert_eq!(costs.get("a"), Some(&5), "{text}");
    assert_eq!(costs.get("dgemm_"), Some(&4), "{text}");
    assert_eq!(costs.get("b"), Some(&1), "{text}");
    let text = run_ok(
        StdCommand::new("callgrind_annotate")
            .args(["--threshold=100", "--auto=no", "--inclusive=yes"])
            .arg(&path),
    );
    let costs = annotate_costs(&text);
    assert_eq!(costs.get("main"), Some(&6), "{text}");
    assert_eq!(costs.get("Model.step"), Some(&4), "{text}");
    assert_eq!(
        costs.get(PY_EVAL),
        Some(&4),
        "recursion counted once: {text}"
    );
}

#[test]
fn firefox_profile_structure() {
    let dir = fixture();
    let bytes = export(dir.path(), "firefox", &[]);
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(v["meta"]["version"].is_number());
    assert_eq!(v["meta"]["interval"], 1.0, "1000 Hz");
    let threads = v["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 3);
    let mut total = 0;
    for t in threads {
        let samples = &t["samples"];
        assert_eq!(samples["weightType"], "samples");
        let weights = samples["weight"].as_array().unwrap();
        assert_eq!(weights.len() as u64, samples["length"].as_u64().unwrap());
        total += weights.iter().map(|w| w.as_u64().unwrap()).sum::<u64>();
    }
    assert_eq!(total, 10);
    // The processed format writes tids as strings or numbers depending on its version.
    let tids: Vec<String> = threads
        .iter()
        .map(|t| t["tid"].to_string().trim_matches('"').to_string())
        .collect();
    assert!(
        tids.contains(&"101".into()) && tids.contains(&"200".into()),
        "{tids:?}"
    );
    let text = String::from_utf8(bytes).unwrap();
    for name in ["\"dgemm_\"", "\"Model.step (model.py:12)\"", "\"main\""] {
        assert!(text.contains(name), "{name} missing");
    }
}

#[test]
fn html_renders_in_chromium() {
    let dir = fixture();
    let path = export_file(dir.path(), "html", "report.html");
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "no network"
    );
    assert!(!html.contains("<script src"), "self-contained");
    assert!(html.contains("\"dgemm_\""));
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| have(c));
    // .ci/run installs chromium: missing, it is a failure, not a skip.
    let chromium = chromium.expect("chromium is not installed (apt-get install chromium)");
    let dom = run_ok(
        StdCommand::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--dump-dom",
            ])
            .arg(&path),
    );
    let rows: Vec<&str> = dom.split("<tr class=\"fn-row\"").skip(1).collect();
    assert_eq!(rows.len(), 7, "one row per function: {dom}");
    assert!(
        rows[0].starts_with(" data-function=\"a\"") && rows[0].contains("<td>50.00"),
        "a first, self 50%: {}",
        rows[0]
    );
    assert!(
        rows[1].starts_with(" data-function=\"dgemm_\""),
        "{}",
        rows[1]
    );
    assert!(dom.contains("data-name=\"Model.step (model.py:12)\""));
    assert!(dom.contains("class=\"box\" data-node=\"0\" data-name=\"all\""));
}

/// `hwprof export DIR --format FORMAT` on a DIR that holds only FILE (CONTENT): exit 1,
/// an `hwprof: error: ` message, no panic. Its standard error.
fn export_error(file: &str, content: &[u8], format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), content).unwrap();
    let out = Command::cargo_bin("hwprof")
        .unwrap()
        .args(["export", dir.path().to_str().unwrap(), "--format", format])
        .output()
        .unwrap();
    crate::common::assert_fails_with(&out, 1, "hwprof: error: ");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.starts_with("hwprof: error: "), "{err}");
    err
}

#[test]
fn not_finalized_says_how_to_fix() {
    // A results directory (it has a manifest) without profile.db.
    let err = export_error("manifest.json", b"{}", "pstats");
    assert!(err.contains("hwprof finalize"), "{err}");
}

#[test]
fn corrupt_profile_db_is_an_error_not_a_panic() {
    export_error("profile.db", b"not a database", "html");
}

/// Collect a real C program (tests/programs/hot.c: hot_a does 3/4 of the work, hot_b
/// 1/4) and export it to pstats and speedscope.
#[test]
fn collect_then_export_pstats_and_speedscope() {
    require("cc", "gcc");
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("hot");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/hot.c");
    run_ok(
        StdCommand::new("cc")
            .args(["-O1", "-g", "-fno-omit-frame-pointer", "-o"])
            .arg(&exe)
            .arg(&src),
    );
    let results = tmp.path().join("results");
    let out = Command::cargo_bin("hwprof")
        .unwrap()
        .args(["collect", "-r"])
        .arg(&results)
        .arg("--")
        .arg(&exe)
        .arg("300")
        .output()
        .unwrap();
    assert_success(&out, "collect failed");
    let prof = export_file(&results, "pstats", "hot.prof");
    let rows = python(
        "import json, pstats, sys\n\
         s = pstats.Stats(sys.argv[1]); s.sort_stats('tottime')\n\
         print(json.dumps([[k[2], s.stats[k][2]] for k in s.fcn_list]))",
        &[&prof],
    );
    let rows: Vec<(String, f64)> = serde_json::from_str(&rows).unwrap();
    assert_eq!(rows[0].0, "hot_a", "{rows:?}");
    assert_eq!(rows[1].0, "hot_b", "{rows:?}");
    let share = rows[0].1 / (rows[0].1 + rows[1].1);
    assert!(
        (0.6..0.9).contains(&share),
        "hot_a share {share}, expected ~0.75"
    );
    let total_tt: f64 = rows.iter().map(|r| r.1).sum();
    assert!(total_tt > 0.1, "{total_tt} s of samples for a ~0.5 s run");

    let ss = export_file(&results, "speedscope", "hot.speedscope.json");
    validate_speedscope(&ss);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&ss).unwrap()).unwrap();
    let names = crate::common::json_strs(&v["shared"]["frames"], "name");
    for n in ["main", "work", "hot_a", "hot_b"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
}

/// `go tool pprof` (Debian's golang-go), the real reader: the two ordinary pprof exports
/// with `-diff_base`, and hwprof's own `export --diff` (BASE negated under
/// `pprof::base`), give the same answer: hot_b grew by about its base value (built with
/// twice the work), hot_a did not move.
#[test]
fn pprof_diff_base_reads_in_go_tool_pprof() {
    require("go", "golang-go");
    let t = tempfile::tempdir().unwrap();
    let run = |name: &str, flags: &[&str]| -> PathBuf {
        let bin = crate::common::build_c(t.path(), "hot.c", name, flags);
        let dir = t.path().join(format!("r-{name}"));
        // At 4,999 Hz: hot_b's growth is compared with its base within 25%, and at
        // 999 Hz (~250 samples of hot_b) a CI run read +25.4%.
        crate::common::ok(&crate::common::collect(
            &dir,
            &["-F", "4999"],
            &[bin.to_str().unwrap(), "1200"],
        ));
        dir
    };
    let (base, new) = (run("base", &[]), run("new", &["-DHOT_B_FACTOR=2"]));
    let pb = |dir: &Path, name: &str| -> PathBuf {
        let f = t.path().join(name);
        Command::new(crate::common::hwprof_bin())
            .args(["export", dir.to_str().unwrap(), "--format", "pprof", "-o"])
            .arg(&f)
            .assert()
            .success();
        f
    };
    let (base_pb, new_pb) = (pb(&base, "base.pb.gz"), pb(&new, "new.pb.gz"));
    let diff_pb = t.path().join("diff.pb.gz");
    Command::new(crate::common::hwprof_bin())
        .args(["export", "--diff"])
        .args([&base, &new])
        .args(["--format", "pprof", "-o"])
        .arg(&diff_pb)
        .assert()
        .success();
    // `go tool pprof -top`: "flat flat% sum% cum cum% name"; flat in ms.
    let flat = |top: &str, func: &str| -> f64 {
        top.lines()
            .filter(|l| l.split_whitespace().last() == Some(func))
            .filter_map(|l| {
                let v = l.split_whitespace().next()?;
                // pprof picks the unit per value: 950ms, 1.20s, 500us.
                let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
                    (n, 1.0)
                } else if let Some(n) = v.strip_suffix("us") {
                    (n, 0.001)
                } else {
                    (v.strip_suffix('s')?, 1000.0)
                };
                num.parse::<f64>().ok().map(|x| x * scale)
            })
            .sum::<f64>()
    };
    let pprof = |args: &[&Path]| -> String {
        let mut c = StdCommand::new("go");
        c.args(["tool", "pprof", "-top", "-nodecount=1000"])
            .env("HOME", t.path());
        for a in args {
            c.arg(a);
        }
        run_ok(&mut c)
    };
    let base_top = pprof(&[&base_pb]);
    let via_diff_base = {
        let mut c = StdCommand::new("go");
        c.args(["tool", "pprof", "-top", "-nodecount=1000", "-diff_base"])
            .arg(&base_pb)
            .arg(&new_pb)
            .env("HOME", t.path());
        run_ok(&mut c)
    };
    let via_export = pprof(&[&diff_pb]);
    let hot_b_base = flat(&base_top, "hot_b");
    assert!(hot_b_base > 50.0, "hot_b base {hot_b_base} ms\n{base_top}");
    for (how, top) in [
        ("-diff_base", &via_diff_base),
        ("export --diff", &via_export),
    ] {
        let (b, a) = (flat(top, "hot_b"), flat(top, "hot_a"));
        eprintln!("pprof {how}: hot_b {b:+} ms (base {hot_b_base} ms), hot_a {a:+} ms");
        assert!(
            (b / hot_b_base - 1.0).abs() < 0.25,
            "{how}: hot_b grew {b} ms, designed ≈ its base {hot_b_base} ms\n{top}"
        );
        assert!(
            a.abs() < 0.1 * 3.0 * hot_b_base,
            "{how}: hot_a moved {a} ms\n{top}"
        );
    }
}
