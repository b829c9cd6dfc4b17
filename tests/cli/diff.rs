//! `hwprof diff` and `hwprof export --diff` end to end, against ground truth designed
//! into the workloads:
//! - `hot.c` built twice, the second time with `-DHOT_B_FACTOR=2`: `hot_b` does twice
//!   its work, `hot_a` the same. In CPU seconds (`--normalize time`) `hot_b` doubles and
//!   `hot_a` stays (±10%); the whole run grows by 1/4 (3+2 over 3+1), so the gate fails
//!   at 5% and passes at 100%. In shares (`--normalize percent`) `hot_a` shrinks
//!   75% → 60% and `hot_b` grows 25% → 40%: the differential flame graph colors them
//!   blue and red.
//! - python.rs's script run twice, `Worker.heavy`'s loop count (as large as
//!   `Worker.light`'s) doubled in the second run, `Worker.light`'s kept: below, "grow" is
//!   heavy, "steady" light.
//! - Two MPI ranks of one job in one results directory (the launcher's variables set
//!   by hand, no mpirun needed), rank 1 doing twice rank 0's rounds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use crate::python::{WORK, agent_lib, python311};

/// hot_b's ratio of CPU seconds, new over base, designed 2: every view of the same two
/// runs is held to one band. At 4,999 Hz it measured 1.96-2.11 (hot_a's 0.99-1.06: the
/// two runs' speeds differ), alone and with both cores loaded; in shares, 1.58-1.61 for
/// 1.6. (At 999 Hz a CI run measured 1.78 with hot_a 1.09.)
const HOT_B_DOUBLED: std::ops::RangeInclusive<f64> = 1.7..=2.3;
/// hot_a's ratio of CPU seconds, designed 1.
const HOT_A_SAME: std::ops::RangeInclusive<f64> = 0.9..=1.1;

/// A diff CSV row.
#[derive(Debug, Clone)]
struct Row {
    function: String,
    file: String,
    line: String,
    base_self: f64,
    new_self: f64,
    ratio_self: Option<f64>,
    ratio_total: Option<f64>,
    presence: String,
}

/// The first twelve columns of `diff --format csv` (the contract).
const DIFF_COLUMNS: &str = "function,module,file,line,base_self,new_self,delta_self,ratio_self,base_total,new_total,delta_total,ratio_total";

fn parse_diff_csv(text: &str) -> Vec<Row> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers = r.headers().unwrap().clone();
    assert_eq!(
        headers.iter().take(12).collect::<Vec<_>>().join(","),
        DIFF_COLUMNS,
        "{text}"
    );
    let ratio = |s: &str| (!s.is_empty()).then(|| s.parse::<f64>().unwrap());
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            Row {
                function: rec[0].to_string(),
                file: rec[2].to_string(),
                line: rec[3].to_string(),
                base_self: rec[4].parse().unwrap(),
                new_self: rec[5].parse().unwrap(),
                ratio_self: ratio(&rec[7]),
                ratio_total: ratio(&rec[11]),
                presence: rec[12].to_string(),
            }
        })
        .collect()
}

fn diff(args: &[&str]) -> Output {
    let mut all = vec!["diff"];
    all.extend_from_slice(args);
    hwprof(&all)
}

fn diff_rows(args: &[&str]) -> Vec<Row> {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--format", "csv"]);
    parse_diff_csv(&ok(&diff(&all)))
}

fn by_function(rows: &[Row]) -> HashMap<String, Row> {
    rows.iter()
        .map(|r| (r.function.clone(), r.clone()))
        .collect()
}

/// The first rows, for failure messages.
fn head(rows: &[Row]) -> String {
    format!("{:#?}", &rows[..rows.len().min(8)])
}

/// The row whose self grew most.
fn most_grown(rows: &[Row]) -> &Row {
    rows.iter()
        .max_by(|x, y| (x.new_self - x.base_self).total_cmp(&(y.new_self - y.base_self)))
        .expect("diff rows")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// hot.c built into `<t>/<sub>/hot` (same file name, so the module names match),
/// collected with `rounds`.
fn collect_hot(t: &Path, sub: &str, flags: &[&str], rounds: &str) -> PathBuf {
    let bdir = t.join(sub);
    std::fs::create_dir_all(&bdir).unwrap();
    let bin = build_c(&bdir, "hot.c", "hot", flags);
    let dir = t.join(format!("{sub}.run"));
    // At 4,999 Hz: hot_b's ~1,600 samples a run put the ratio's sampling noise near 3%
    // (at 999 Hz, ~330 samples: 7%, and a ratio of 1.78 beside other tests).
    ok(&collect(&dir, &["-F", "4999"], &[s(&bin), rounds]));
    dir
}

/// (title, fill rgb) of every frame of a flame graph SVG, read back as XML.
fn svg_frames(svg: &str) -> Vec<(String, (u32, u32, u32))> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(svg);
    let mut out = Vec::new();
    let mut in_title = false;
    let mut title = String::new();
    let mut pending: Option<String> = None;
    loop {
        match reader.read_event().expect("the SVG is well-formed XML") {
            Event::Eof => break,
            Event::Start(e) if e.name().as_ref() == b"title" => {
                in_title = true;
                title.clear();
            }
            Event::Text(t) if in_title => title.push_str(&t.decode().unwrap()),
            Event::GeneralRef(_) if in_title => title.push('?'),
            Event::End(e) if e.name().as_ref() == b"title" => {
                in_title = false;
                pending = Some(title.clone());
            }
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"rect" => {
                if let (Some(t), Some(fill)) =
                    (pending.take(), e.try_get_attribute("fill").unwrap())
                {
                    let v = String::from_utf8_lossy(&fill.value).to_string();
                    let nums: Vec<u32> = v
                        .trim_start_matches("rgb(")
                        .trim_end_matches(')')
                        .split(',')
                        .filter_map(|x| x.trim().parse().ok())
                        .collect();
                    if nums.len() == 3 {
                        out.push((t, (nums[0], nums[1], nums[2])));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// hot_b, which grew, is drawn red in a differential flame graph.
fn assert_hot_b_red(frames: &[(String, (u32, u32, u32))]) {
    let (r, _, bl) = frame_fill(frames, "hot_b");
    assert!(r > bl + 40, "hot_b grew, should be red: rgb({r},_,{bl})");
}

fn frame_fill(frames: &[(String, (u32, u32, u32))], f: &str) -> (u32, u32, u32) {
    frames
        .iter()
        .find(|(t, _)| t.starts_with(&format!("{f} — ")))
        .map(|(_, c)| *c)
        .unwrap_or_else(|| panic!("no frame {f} in {frames:#?}"))
}

#[test]
fn hot_b_doubled_shows_as_twice_the_time_and_trips_the_gate() {
    let t = shared_tempdir();
    let base = collect_hot(t.path(), "base", &[], "1000");
    let new = collect_hot(t.path(), "new", &["-DHOT_B_FACTOR=2"], "1000");
    let (b, n) = (s(&base), s(&new));

    // CPU seconds: hot_b doubles, hot_a stays.
    let rows = diff_rows(&[b, n, "--normalize", "time"]);
    let f = by_function(&rows);
    let hb = f["hot_b"].ratio_self.unwrap();
    let ha = f["hot_a"].ratio_self.unwrap();
    eprintln!("time: hot_b ratio {hb:.3}, hot_a ratio {ha:.3}");
    assert!(
        HOT_B_DOUBLED.contains(&hb),
        "hot_b ratio {hb}: {}",
        head(&rows)
    );
    assert!(
        HOT_A_SAME.contains(&ha),
        "hot_a ratio {ha}: {}",
        head(&rows)
    );
    assert_eq!(f["hot_b"].presence, "both");
    // Sorted by absolute change: hot_b's is the largest.
    assert_eq!(rows[0].function, "hot_b", "{}", head(&rows));

    // Shares: hot_a 75% -> 60%, hot_b 25% -> 40% (ratios 0.8 and 1.6).
    let f = by_function(&diff_rows(&[b, n, "--normalize", "percent"]));
    let (ha, hb) = (
        f["hot_a"].ratio_self.unwrap(),
        f["hot_b"].ratio_self.unwrap(),
    );
    eprintln!("percent: hot_b ratio {hb:.3}, hot_a ratio {ha:.3}");
    assert!((0.70..=0.90).contains(&ha), "hot_a share ratio {ha}");
    assert!((1.36..=1.84).contains(&hb), "hot_b share ratio {hb}");

    // The gate: the run grew by ~25%.
    let out = diff(&[b, n, "--fail-above", "5%"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("regression: total grew"), "{err}");
    let responsible = err.split("grown most").nth(1).unwrap_or("");
    assert!(
        responsible
            .trim_start_matches(|c| c != '\n')
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("hot_b")),
        "{err}"
    );
    let out = diff(&[b, n, "--fail-above", "100"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A function's share: hot_b's grew ~60%, hot_a's shrank.
    let gate = |f: &str, pct: &str| {
        diff(&[
            b,
            n,
            "--normalize",
            "percent",
            "--fail-above",
            pct,
            "--function",
            f,
        ])
        .status
        .code()
    };
    assert_eq!(gate("hot_b", "30"), Some(3));
    assert_eq!(gate("hot_b", "100"), Some(0));
    assert_eq!(gate("hot_a", "5"), Some(0));
    // Totals in percent are 100 on both sides: a usage error, not a silent pass.
    assert_eq!(
        diff(&[b, n, "--normalize", "percent", "--fail-above", "5"])
            .status
            .code(),
        Some(2)
    );

    // Lines: hot_b's loop line carries the change.
    let rows = diff_rows(&[b, n, "--view", "lines"]);
    let top = &rows[0];
    assert_eq!(top.function, "hot_b", "{}", head(&rows));
    assert!(
        top.file.ends_with("hot.c") && !top.line.is_empty(),
        "{top:?}"
    );

    // JSON has the same rows and lists what matched on one side only.
    let js: serde_json::Value =
        serde_json::from_str(&ok(&diff(&[b, n, "--format", "json"]))).unwrap();
    assert_eq!(js["unit"], "s");
    assert!(js["only_in_base"].is_array() && js["only_in_new"].is_array());
    assert_eq!(js["rows"][0]["function"], "hot_b");

    // Differential flame graph, shares: hot_b red, hot_a blue; titles carry both sides.
    let svg_path = t.path().join("d.svg");
    ok(&hwprof(&[
        "export",
        "--diff",
        b,
        n,
        "--format",
        "flamegraph",
        "--normalize",
        "percent",
        "-o",
        s(&svg_path),
    ]));
    let frames = svg_frames(&std::fs::read_to_string(&svg_path).unwrap());
    assert_hot_b_red(&frames);
    let (r, _, bl) = frame_fill(&frames, "hot_a");
    assert!(bl > r + 20, "hot_a shrank, should be blue: rgb({r},_,{bl})");
    let title = &frames
        .iter()
        .find(|(t, _)| t.starts_with("hot_b — "))
        .unwrap()
        .0;
    assert!(title.contains("NEW") && title.contains("BASE"), "{title}");
    // In CPU seconds hot_b is red too.
    let svg_path = t.path().join("t.svg");
    ok(&hwprof(&[
        "export",
        "--diff",
        b,
        n,
        "--format",
        "flamegraph",
        "-o",
        s(&svg_path),
    ]));
    assert_hot_b_red(&svg_frames(&std::fs::read_to_string(&svg_path).unwrap()));

    // HTML delta view (time-normalized): hot_b's box red-ish, hot_a's about
    // neutral, both numbers in hot_b's tooltip and details; no console errors.
    let html_path = t.path().join("d.html");
    ok(&hwprof(&[
        "export",
        "--diff",
        b,
        n,
        "--format",
        "html",
        "-o",
        s(&html_path),
    ]));
    let v = crate::html::check_page(
        &html_path,
        "diff-delta",
        &["--diff", "hot_b", "--diff", "hot_a"],
    );
    eprintln!("html delta view: {}", v["diff"]);
    let rgb = |f: &str| -> Vec<i64> {
        serde_json::from_value(v["diff"][f]["rgb"].clone()).expect("an rgb triple")
    };
    let (hb, ha) = (rgb("hot_b"), rgb("hot_a"));
    assert!(hb[0] > hb[2] + 40, "hot_b grew, should be red: {hb:?}");
    assert!(
        (ha[0] - ha[2]).abs() < 40,
        "hot_a unchanged, should be about neutral: {ha:?}"
    );
    for key in ["title", "details"] {
        let text = v["diff"]["hot_b"][key].as_str().unwrap_or("");
        let number_after = |word: &str| -> f64 {
            let i = text
                .find(word)
                .unwrap_or_else(|| panic!("{word} in {text}"))
                + word.len();
            text[i..]
                .split(|c: char| !c.is_ascii_digit() && c != '.')
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or_else(|| panic!("a number after {word} in {text}"))
        };
        let (base_v, new_v) = (number_after("total: base "), number_after(", new "));
        assert!(
            HOT_B_DOUBLED.contains(&(new_v / base_v)),
            "hot_b {key}: new ≈ 2 × base: {text}"
        );
    }
    assert_eq!(v["legend"], true, "the delta legend is shown");
    let facts: Vec<String> = serde_json::from_value(v["facts"].clone()).unwrap();
    assert!(
        facts.iter().any(|f| f == "base") && facts.iter().any(|f| f == "new"),
        "{facts:?}"
    );

    // pprof: NEW's samples plus BASE's negated under `pprof::base`, as `pprof
    // -diff_base` builds it: per leaf, hot_b's NEW ≈ 2× its BASE.
    let pb_path = t.path().join("d.pb.gz");
    ok(&hwprof(&[
        "export",
        "--diff",
        b,
        n,
        "--format",
        "pprof",
        "-o",
        s(&pb_path),
    ]));
    let (base_b, new_b) = pprof_leaf_samples(&pb_path, "hot_b");
    let (base_a, new_a) = pprof_leaf_samples(&pb_path, "hot_a");
    eprintln!("pprof: hot_b {base_b} -> {new_b}, hot_a {base_a} -> {new_a}");
    assert!(
        HOT_B_DOUBLED.contains(&(new_b / base_b)),
        "pprof hot_b {base_b} -> {new_b}"
    );
    assert!(
        HOT_A_SAME.contains(&(new_a / base_a)),
        "pprof hot_a {base_a} -> {new_a}"
    );

    // Two-column folded: the hot_b stack's new value is about twice its base.
    let folded = ok(&hwprof(&[
        "export",
        "--diff",
        b,
        n,
        "--format",
        "collapsed",
    ]));
    let line = folded
        .lines()
        .find(|l| l.contains(";work;hot_b "))
        .unwrap_or_else(|| panic!("{folded}"));
    let nums: Vec<f64> = line
        .rsplit(' ')
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    let (new_v, base_v) = (nums[0], nums[1]);
    assert!(HOT_B_DOUBLED.contains(&(new_v / base_v)), "{line}");
}

/// (BASE, NEW) samples whose leaf is `function` in a differential pprof export: BASE's
/// are the negative ones labelled `pprof::base`.
fn pprof_leaf_samples(path: &Path, function: &str) -> (f64, f64) {
    use hwprof::export::pprof::proto::Profile;
    use prost::Message;
    let gz = std::fs::read(path).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    let p = Profile::decode(&raw[..]).expect("a pprof protobuf");
    let key = p.string_table.iter().position(|s| s == "pprof::base");
    let (mut base, mut new) = (0.0, 0.0);
    for s in &p.sample {
        let Some(&leaf) = s.location_id.first() else {
            continue;
        };
        let loc = &p.location[leaf as usize - 1];
        let f = &p.function[loc.line[0].function_id as usize - 1];
        if p.string_table[f.name as usize] != function {
            continue;
        }
        let is_base = s.label.iter().any(|l| Some(l.key as usize) == key);
        if is_base {
            assert!(s.value[0] <= 0, "BASE samples are negated");
            base -= s.value[0] as f64;
        } else {
            new += s.value[0] as f64;
        }
    }
    (base, new)
}

/// The lines of `Worker.heavy`'s loop (`for`, body) in python.rs's WORK.
const GROW_LOOP_LINES: [&str; 2] = ["5", "6"];

/// The two runs' sampling: ~0.2 s of each function at factor 1, at 4,999 Hz (~1,000
/// samples each). Under load a cpu-clock count scatters like a Poisson one: at 999 Hz
/// and 20 rounds (~100 samples each) equal functions took 100 and 87 samples in one CI
/// run, and grow/steady came out x1.62 where the design says x2.
const WORK_ROUNDS: &str = "40";
const WORK_HZ: &str = "4999";

fn collect_python(t: &Path, name: &str, script: &Path, factor: &str) -> PathBuf {
    let dir = t.join(name);
    let out = Command::new(hwprof_bin())
        .args(["collect", "-q", "-F", WORK_HZ, "-r", s(&dir), "--"])
        .arg(python311())
        .args([s(script), WORK_ROUNDS, factor])
        .env("HWPROF_AGENT_LIB", agent_lib())
        .output()
        .expect("run hwprof collect");
    ok(&out);
    dir
}

#[test]
fn python_function_with_a_doubled_loop_carries_the_delta_at_its_line() {
    let t = shared_tempdir();
    // Worker.heavy does as much as Worker.light (factor 1), then twice as much.
    let script = write_script(t.path(), "work.py", WORK);
    let base = collect_python(t.path(), "base", &script, "1");
    let new = collect_python(t.path(), "new", &script, "2");
    let (b, n) = (s(&base), s(&new));

    let rows = diff_rows(&[b, n, "--frames", "python"]);
    let f = by_function(&rows);
    let grow = &f["Worker.heavy"];
    let steady = &f["Worker.light"];
    eprintln!(
        "python: Worker.heavy ratio {:?}, Worker.light ratio {:?}",
        grow.ratio_self, steady.ratio_self
    );
    assert_eq!(grow.file, s(&script), "Python rows carry their file");
    // CPU seconds of two separate runs of a Python loop move with the VM's speed: the
    // bare script's user time varies by x1.5 between runs on a quiet machine, and
    // steady's ratio (unchanged work) was measured from x0.64 to x2.4. So in time only
    // the ratio of the two functions (from 1:1 to 2:1, independent of the machine's
    // speed) is checked, with a margin; the order of the rows is checked in shares.
    let (g, st) = (grow.ratio_self.unwrap(), steady.ratio_self.unwrap());
    assert!(
        (1.7..=2.5).contains(&(g / st)),
        "grow/steady changed x{}: {}",
        g / st,
        head(&rows)
    );
    // Shares: grow's rises and steady's falls. Both shares are of the whole run,
    // interpreter start-up included, so their ratios depend on it; the ratio of the two
    // does not: grow/steady goes from 1:1 to 2:1, under any normalization.
    // In shares the changes sum to zero: grow's rise is steady's fall plus start-up's,
    // so the rows are sorted by a near tie. What grew most is grow.
    let rows = diff_rows(&[b, n, "--frames", "python", "--normalize", "percent"]);
    assert_eq!(
        most_grown(&rows).function,
        "Worker.heavy",
        "{}",
        head(&rows)
    );
    let f = by_function(&rows);
    let (g, st) = (
        f["Worker.heavy"].ratio_self.unwrap(),
        f["Worker.light"].ratio_self.unwrap(),
    );
    eprintln!(
        "python percent: Worker.heavy ratio {g:.3}, Worker.light ratio {st:.3}, grow/steady {:.3}",
        g / st
    );
    assert!(g > 1.2 && st < 0.85, "shares: grow x{g}, steady x{st}");
    assert!(
        (1.7..=2.5).contains(&(g / st)),
        "grow/steady changed x{}",
        g / st
    );

    // Lines: the line that grew most is a line of grow's loop.
    let rows = diff_rows(&[
        b,
        n,
        "--frames",
        "python",
        "--view",
        "lines",
        "--normalize",
        "percent",
    ]);
    let top = most_grown(&rows);
    assert_eq!(
        (top.function.as_str(), top.file.as_str()),
        ("Worker.heavy", s(&script)),
        "{}",
        head(&rows)
    );
    assert!(GROW_LOOP_LINES.contains(&top.line.as_str()), "{top:?}");
    // The line's share doubles against steady's unchanged work; its ratio alone depends
    // on the rest of the run (interpreter start-up), so it is read against steady's.
    let steady_lines: f64 = rows
        .iter()
        .filter(|r| r.function == "Worker.light")
        .map(|r| r.new_self)
        .sum::<f64>()
        / rows
            .iter()
            .filter(|r| r.function == "Worker.light")
            .map(|r| r.base_self)
            .sum::<f64>();
    let line_ratio = top.new_self / top.base_self;
    assert!(
        line_ratio / steady_lines > 1.5,
        "line x{line_ratio:.3}, steady x{steady_lines:.3}: {top:?}"
    );
    // The function's share can gate a CI job.
    let out = diff(&[
        b,
        n,
        "--frames",
        "python",
        "--normalize",
        "percent",
        "--fail-above",
        "10",
        "--function",
        "Worker.heavy",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rank_against_rank_of_one_job() {
    let t = shared_tempdir();
    let bin = build_c(t.path(), "hot.c", "hot", &[]);
    let dir = t.path().join("job");
    // Rank 1 first (it never finalizes), then rank 0, which finalizes once both are
    // complete. Rank 1 runs twice rank 0's rounds.
    for (rank, rounds) in [("1", "600"), ("0", "300")] {
        // At 4,999 Hz (WORK_HZ): at 999 Hz rank 0's hot_b has ~60 samples, and a CI
        // run read its ratio as 2.404.
        let out = Command::new(hwprof_bin())
            .args([
                "collect",
                "-q",
                "-F",
                WORK_HZ,
                "-r",
                s(&dir),
                "--",
                s(&bin),
                rounds,
            ])
            .env("OMPI_COMM_WORLD_RANK", rank)
            .env("OMPI_COMM_WORLD_SIZE", "2")
            .env("OMPI_MCA_orte_ess_jobid", "diff-test-job")
            .output()
            .expect("run hwprof collect");
        ok(&out);
    }
    let d = s(&dir);
    let rows = diff_rows(&[d, "--base-rank", "0", "--new-rank", "1"]);
    let f = by_function(&rows);
    // Rank 0 has ~150 samples of hot_b (±8% counting noise), ~450 of hot_a and ~600
    // of work: hot_b's bounds are the widest.
    for (func, lo, hi) in [("hot_a", 1.8, 2.2), ("hot_b", 1.65, 2.35)] {
        let r = f[func].ratio_self.unwrap();
        eprintln!("ranks: {func} ratio {r:.3}");
        assert!(
            (lo..=hi).contains(&r),
            "{func} rank 1 / rank 0 = {r}: {}",
            head(&rows)
        );
    }
    let w = f["work"].ratio_total.unwrap();
    eprintln!("ranks: work total ratio {w:.3}");
    assert!((1.85..=2.15).contains(&w), "work rank 1 / rank 0 = {w}");
    // The ranks view of the run against itself: both ranks, unchanged.
    let text = ok(&diff(&[d, d, "--view", "ranks", "--format", "csv"]));
    let mut r = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "rank",
            "base_total",
            "new_total",
            "delta_total",
            "ratio_total",
            "presence"
        ]
    );
    let ranks: Vec<String> = r.records().map(|x| x.unwrap()[0].to_string()).collect();
    assert!(
        ranks.contains(&"0".into()) && ranks.contains(&"1".into()),
        "{text}"
    );
    // A rank that is not there is an error that names the ranks present.
    let out = diff(&[d, "--base-rank", "0", "--new-rank", "7"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ranks present: 0, 1"));
}

#[test]
fn unmatched_functions_are_listed_not_dropped() {
    // Two different programs: their own functions are on one side only.
    let t = shared_tempdir();
    let base = collect_hot(t.path(), "base", &[], "200");
    let tdir = t.path().join("threads");
    std::fs::create_dir_all(&tdir).unwrap();
    // threads.c under the same module name as hot: hot_a and func_b still do not match.
    let bin = build_c(&tdir, "threads.c", "hot", &[]);
    let new = t.path().join("threads.run");
    ok(&collect(&new, &[], &[s(&bin), "100"]));
    let rows = diff_rows(&[s(&base), s(&new)]);
    let f = by_function(&rows);
    assert_eq!(f["hot_a"].presence, "base_only", "{}", head(&rows));
    assert_eq!(f["hot_a"].new_self, 0.0);
    assert_eq!(f["func_b"].presence, "new_only", "{}", head(&rows));
    assert!(f["hot_a"].ratio_total.is_some_and(|r| r == 0.0));
    let text = ok(&diff(&[s(&base), s(&new)]));
    assert!(
        text.contains("Only in base") && text.contains("Only in new"),
        "{text}"
    );
}
