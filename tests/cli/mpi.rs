//! MPI: real `mpirun` (Open MPI) with an mpi4py program and a C program built with
//! mpicc, against the imbalance designed into them; launcher environments of `srun` on
//! two simulated hosts sharing one directory; `--part` + `merge` against one finalize.
//! `.ci/run` installs Open MPI (openmpi-bin, libopenmpi-dev) and mpi4py: a missing one
//! is a failure, not a skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::*;
use crate::python::agent_lib;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn require_open_mpi() {
    for tool in ["mpirun", "mpicc"] {
        assert!(
            have(tool),
            "{tool} is not installed: install openmpi-bin and libopenmpi-dev (.ci/run does)"
        );
    }
}

/// The interpreter `python3` resolves to (through a pyenv shim), with mpi4py.
fn python_with_mpi4py() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import sys, mpi4py; print(sys.executable)"])
        .output()
        .expect("python3 is required on PATH");
    assert_success(
        &out,
        "mpi4py is not installed for python3: pip install -r .ci/requirements.txt (.ci/run does)",
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `mpirun -n N hwprof collect -r DIR -- CMD...` (four ranks on two cores: oversubscribe),
/// with the agent the tests build.
fn mpirun_collect(n: u32, dir: &Path, cmd: &[&str]) -> Output {
    run_mpirun(mpirun_command(n, dir, cmd).env("HWPROF_AGENT_LIB", agent_lib()))
}

/// [`mpirun_collect`] with the agent hwprof carries, as installed: each rank's copy of
/// it is removed when its collection ends.
fn mpirun_collect_as_installed(n: u32, dir: &Path, cmd: &[&str]) -> Output {
    run_mpirun(mpirun_command(n, dir, cmd).env_remove("HWPROF_AGENT_LIB"))
}

fn run_mpirun(c: &mut Command) -> Output {
    let out = c.output().expect("run mpirun");
    assert_ran(&out, "mpirun failed");
    out
}

fn mpirun_command(n: u32, dir: &Path, cmd: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    if is_root() {
        c.arg("--allow-run-as-root")
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    }
    c.args(["--oversubscribe", "-n", &n.to_string()])
        .arg(hwprof_bin())
        .args(["collect", "-r"])
        .arg(dir)
        .arg("--")
        .args(cmd);
    c
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend_from_slice(&["--format", "json"]);
    serde_json::from_str(&report(dir, &a)).expect("report JSON")
}

/// The imbalance row of a function.
fn imbalance_row(v: &Value, function: &str) -> Value {
    json_row(v, "rows", "function", function)
        .unwrap_or_else(|| panic!("{function} not in {v:#}"))
        .clone()
}

/// The `hwprof:` lines on standard error.
fn hwprof_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("hwprof: "))
        .map(String::from)
        .collect()
}

/// Each distinct notice of the job printed once, with the count of ranks it applies
/// to, matching the summary's `rank_notices`; no `hwprof:` line printed twice.
fn assert_one_line_per_notice(out: &Output, summary: &Value, ranks: u32) {
    let lines = hwprof_lines(out);
    let of = format!(" of {ranks} ranks");
    let notices: Vec<&String> = lines.iter().filter(|l| l.contains(&of)).collect();
    let job = summary["rank_notices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(notices.len(), job.len(), "{lines:#?}\n{job:#?}");
    let mut distinct = lines.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        lines.len(),
        "a line printed twice: {lines:#?}"
    );
    // Without a PMU every rank falls back to cpu-clock: one line says so for all.
    if let Some(n) = notices
        .iter()
        .find(|l| l.contains("cycles is not available"))
    {
        assert!(n.ends_with(&format!("[{ranks}{of}]")), "{n}");
    }
}

/// mpi4py, rank 2 runs `imbalanced_work` 3x longer (3T of CPU vs T): its max is on
/// rank 2, its imbalance (max - mean) is 1.5 T in samples, load balance 0.5. Four ranks
/// print each notice once, with the number of ranks it applies to.
#[test]
fn mpi4py_rank_2_three_times_longer() {
    require_open_mpi();
    let py = python_with_mpi4py();
    let t = shared_tempdir();
    let dir = t.path().join("run");
    let script = program_source("mpi_imbalance.py");
    let seconds = 0.8;
    let out = mpirun_collect(
        4,
        &dir,
        &[
            py.to_str().unwrap(),
            script.to_str().unwrap(),
            &seconds.to_string(),
        ],
    );
    let manifest: Value = manifest_json(&dir);
    let freq = manifest["frequency_hz"].as_f64().unwrap();
    let imb = json(&dir, &["--view", "imbalance", "--top", "1000"]);
    assert_eq!(imb["ranks"], 4, "{imb:#}");
    let row = imbalance_row(&imb, "imbalanced_work");
    assert_eq!(row["max_rank"], 2, "{row:#}");
    let designed = 1.5 * seconds * freq;
    let got = row["imbalance"].as_f64().unwrap();
    assert!(
        (got - designed).abs() <= 0.15 * designed,
        "imbalance {got} samples, designed {designed}: {row:#}"
    );
    let mean = row["mean"].as_f64().unwrap();
    assert!((got - (row["max"].as_f64().unwrap() - mean)).abs() < 0.01);

    let summary = json(&dir, &["--view", "summary"]);
    let lb = summary["pop"]["load_balance"].as_f64().unwrap();
    eprintln!("mpi4py: imbalance {got} (designed {designed}), load balance {lb}");
    assert!((lb - 0.5).abs() <= 0.05, "load balance {lb}: {summary:#}");
    let pe = summary["pop"]["parallel_efficiency"].as_f64().unwrap();
    let ce = summary["pop"]["communication_efficiency"].as_f64().unwrap();
    assert!((pe - lb * ce).abs() < 0.01, "{summary:#}");
    assert_eq!(summary["pop"]["nodes"].as_array().unwrap().len(), 1);
    let text = report(&dir, &["--view", "summary"]);
    assert!(text.contains("POP over 4 ranks: load balance"), "{text}");
    // The fallback every rank took is said once, on its `event:` line.
    assert!(
        text.matches("cycles is not available").count() <= 1,
        "{text}"
    );

    assert_one_line_per_notice(&out, &summary, 4);
    let rank_manifests = std::fs::read_dir(dir.join("raw"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("manifest.json").is_file())
        .count();
    assert_eq!(rank_manifests, 4);

    // --ranks leaves rank 2 out: the imbalance of the others is small, the max elsewhere.
    let others = json(
        &dir,
        &["--view", "imbalance", "--top", "1000", "--ranks", "0-1,3"],
    );
    assert_eq!(others["ranks"], 3);
    let row = imbalance_row(&others, "imbalanced_work");
    assert_ne!(row["max_rank"], 2);
    assert!(
        row["imbalance"].as_f64().unwrap() < 0.15 * designed,
        "{row:#}"
    );
    // --rank on an export: rank 2's samples only.
    let folded = ok(&hwprof(&[
        "export",
        dir.to_str().unwrap(),
        "--format",
        "collapsed",
        "--rank",
        "2",
    ]));
    let exported: u64 = folded
        .lines()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    let ranks = json(&dir, &["--view", "ranks"]);
    let rank2 = ranks["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rank"] == 2)
        .unwrap()["total"]
        .as_u64()
        .unwrap();
    assert_eq!(exported, rank2, "{ranks:#}");
}

/// A C program built with mpicc: rank 3 only waits at the barrier while the others
/// compute. Rank 3 is idle and in MPI; the others' MPI share is small; compute_kernel
/// has its minimum, 0, on rank 3; load balance is 3T/4 ÷ T = 0.75.
#[test]
fn mpicc_program_with_an_idle_rank() {
    require_open_mpi();
    let t = shared_tempdir();
    let bin = t.path().join("mpi_idle");
    compile("mpicc", &["-O2", "-g"], "mpi_idle.c", &bin, &[]);
    let dir = t.path().join("run");
    let out = mpirun_collect_as_installed(4, &dir, &[bin.to_str().unwrap(), "1.0"]);
    let ranks = json(&dir, &["--view", "ranks"]);
    let rows = ranks["ranks"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{ranks:#}");
    for r in rows {
        let mpi = r["mpi_pct"].as_f64().unwrap();
        if r["rank"] == 3 {
            assert_eq!(r["idle"], true, "{ranks:#}");
            assert!(mpi > 80.0, "rank 3 waits in MPI: {ranks:#}");
        } else {
            assert_eq!(r["idle"], false, "{ranks:#}");
            assert!(mpi < 40.0, "rank {} mpi {mpi}%: {ranks:#}", r["rank"]);
        }
    }
    let imb = json(&dir, &["--view", "imbalance", "--top", "1000"]);
    let row = imbalance_row(&imb, "compute_kernel");
    assert_eq!(
        (row["min"].as_u64(), row["min_rank"].as_u64()),
        (Some(0), Some(3))
    );
    let summary = json(&dir, &["--view", "summary"]);
    let lb = summary["pop"]["load_balance"].as_f64().unwrap();
    eprintln!("mpicc: load balance {lb}; ranks {}", ranks["ranks"]);
    assert!((lb - 0.75).abs() <= 0.05, "load balance {lb}: {summary:#}");
    assert_one_line_per_notice(&out, &summary, 4);
    let csv = report(
        &dir,
        &["--view", "imbalance", "--format", "csv", "--by", "line"],
    );
    assert!(
        csv.starts_with(
            "function,module,file,line,total,mean,min,min_rank,max,max_rank,std,cov,imbalance\n"
        ),
        "{csv}"
    );
    assert!(csv.contains("compute_kernel,mpi_idle,"), "{csv}");
    // The barrier is waited in through the agent's interposer, named though the ranks'
    // copies of it are gone (from the agent hwprof carries).
    let p = hwprof::profile::Profile::load(&dir).unwrap();
    let agent: Vec<&str> = p
        .functions
        .iter()
        .filter(|f| f.module == "libhwprof_agent.so")
        .map(|f| f.name.as_str())
        .collect();
    assert!(agent.contains(&"MPI_Barrier"), "{agent:?}");
    assert!(!agent.iter().any(|n| n.contains("+0x")), "{agent:?}");
}

/// `srun` on two hosts sharing one results directory (simulated: Slurm's variables and
/// HWPROF_HOSTNAME per rank, all four started at once): per-host raw directories, one
/// manifest naming both hosts and the job, each rank's own manifest, POP per node.
#[test]
fn srun_on_two_simulated_hosts_shares_one_directory() {
    let Scratch { tmp: _t, bin, dir } = scratch_with("hot.c", "hot", &[]);
    let children: Vec<_> = (0..4u32)
        .map(|rank| {
            let host = if rank < 2 { "nodeA" } else { "nodeB" };
            Command::new(hwprof_bin())
                .env("SLURM_JOB_ID", "4242")
                .env("SLURM_PROCID", rank.to_string())
                .env("SLURM_NTASKS", "4")
                .env("SLURM_LOCALID", (rank % 2).to_string())
                .env("SLURM_NODEID", (rank / 2).to_string())
                .env("HWPROF_HOSTNAME", host)
                .args([
                    "collect",
                    "--no-finalize",
                    "-r",
                    dir.to_str().unwrap(),
                    "--",
                ])
                .arg(&bin)
                .arg("60")
                .spawn()
                .expect("run hwprof")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let mut raw: Vec<String> = std::fs::read_dir(dir.join("raw"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    raw.sort();
    let prefixes: Vec<String> = raw
        .iter()
        .map(|n| n.rsplit_once('.').unwrap().0.to_string())
        .collect();
    assert_eq!(
        prefixes,
        ["nodeA.0", "nodeA.1", "nodeB.2", "nodeB.3"],
        "{raw:?}"
    );
    for r in &raw {
        let p = dir.join("raw").join(r);
        assert!(
            p.join("complete").is_file() && p.join("manifest.json").is_file(),
            "{r}"
        );
    }
    // No temporary manifest left behind by the ranks that lost the race.
    let stray: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".manifest"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    let m: Value = manifest_json(&dir);
    assert_eq!(m["mpi_job"], "4242");
    assert_eq!(m["world_size"], 4);
    assert_eq!(m["hosts"], serde_json::json!(["nodeA", "nodeB"]), "{m:#}");
    ok(&hwprof(&["finalize", "-q", dir.to_str().unwrap()]));
    let ranks = json(&dir, &["--view", "ranks"]);
    let hosts = json_strs(&ranks["ranks"], "host");
    assert_eq!(hosts, ["nodeA", "nodeA", "nodeB", "nodeB"]);
    let summary = json(&dir, &["--view", "summary"]);
    let nodes = json_strs(&summary["pop"]["nodes"], "host");
    assert_eq!(nodes, ["nodeA", "nodeB"], "{summary:#}");
}

/// A synthetic job of `ranks` ranks in T/single: `hot 60` recorded once as rank 0
/// (`--no-finalize`), its raw directory copied under each rank number and a pid of its
/// own, the first half of the ranks on host n1, the others on n2. Returns the
/// directory and the recorded raw directory.
fn synthetic_job(t: &Path, ranks: u32) -> (PathBuf, PathBuf) {
    let bin = build_c(t, "hot.c", "hot", &[]);
    let one = t.join("one");
    let out = Command::new(hwprof_bin())
        .env("PMI_RANK", "0")
        .env("PMI_SIZE", ranks.to_string())
        .args(["collect", "-q", "--no-finalize", "-r"])
        .arg(&one)
        .arg("--")
        .arg(&bin)
        .arg("60")
        .output()
        .unwrap();
    ok(&out);
    let recorded = first_raw_dir(&one);
    let job = t.join("single");
    std::fs::create_dir_all(job.join("raw")).unwrap();
    std::fs::copy(one.join("manifest.json"), job.join("manifest.json")).unwrap();
    for rank in 0..ranks {
        let host = if rank < ranks / 2 { "n1" } else { "n2" };
        let raw = format!("{host}.{rank}.{}", 1000 + rank);
        copy_tree(&recorded, &job.join("raw").join(raw));
    }
    (job, recorded)
}

/// Rewrites every rank's own manifest under DIR/raw with `edit`; returns how many.
fn edit_rank_manifests(dir: &Path, edit: impl Fn(&mut Value)) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir.join("raw")).unwrap() {
        let m = e.unwrap().path().join("manifest.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
        edit(&mut v);
        std::fs::remove_file(&m).unwrap();
        std::fs::write(&m, serde_json::to_vec(&v).unwrap()).unwrap();
        n += 1;
    }
    n
}

/// Ranks whose manifests declare a sample time range that misses their samples (a
/// manifest from elsewhere, edited, or wrong): finalize believes the range for the
/// timeline's buckets, says that samples fall outside it, and loses none of them.
#[test]
fn a_wrong_declared_time_range_loses_no_sample() {
    let t = shared_tempdir();
    let (dir, _) = synthetic_job(t.path(), 4);
    let edited = edit_rank_manifests(&dir, |v| v["sample_times_ns"] = serde_json::json!([1, 2]));
    assert_eq!(edited, 4);
    let out = Command::new(hwprof_bin())
        .env("HWPROF_FINALIZE_BATCH", "2")
        .args(["finalize", dir.to_str().unwrap()])
        .output()
        .unwrap();
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("samples lie outside the time range"), "{err}");
    let db = rusqlite::Connection::open(dir.join("profile.db")).unwrap();
    let sum = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let samples = sum("SELECT SUM(count) FROM samples");
    assert!(samples > 0);
    assert_eq!(sum("SELECT SUM(count) FROM timeline"), samples);
    // The buckets are those of the declared range: every sample in the last one.
    assert_eq!(sum("SELECT COUNT(DISTINCT bucket) FROM timeline"), 1);
}

/// 16 synthetic ranks (one recorded rank's raw directory replicated under 16 rank
/// numbers and pids): `--part 1/2`, `--part 2/2` and `merge` give the same profile as
/// one finalize, and so does a finalize that streams the ranks in batches of 3.
#[test]
fn parts_and_merge_equal_one_finalize_at_16_ranks() {
    let t = shared_tempdir();
    let (single, recorded) = synthetic_job(t.path(), 16);
    let parts = t.path().join("parts");
    copy_tree(&single, &parts);
    let batched = t.path().join("batched");
    copy_tree(&single, &batched);
    // Ranks of an hwprof that did not declare their sample time range: the timeline is
    // bucketed at the end, after the last batch, to the same buckets.
    let undeclared = t.path().join("undeclared");
    copy_tree(&single, &undeclared);
    let edited = edit_rank_manifests(&undeclared, |v| {
        assert!(v["sample_times_ns"].is_array(), "{v:#}");
        v.as_object_mut().unwrap().remove("sample_times_ns");
    });
    assert_eq!(edited, 16);
    ok(&hwprof(&["finalize", "-q", single.to_str().unwrap()]));
    // Ranks streamed in batches of 3 (rows written batch by batch; the timeline
    // bucketed batch by batch, or at the end without declared ranges) give the profile
    // of one batch.
    for dir in [&batched, &undeclared] {
        let out = Command::new(hwprof_bin())
            .env("HWPROF_FINALIZE_BATCH", "3")
            .args(["finalize", "-q", dir.to_str().unwrap()])
            .output()
            .unwrap();
        ok(&out);
    }
    ok(&hwprof(&[
        "finalize",
        "-q",
        "--part",
        "1/2",
        parts.to_str().unwrap(),
    ]));
    ok(&hwprof(&[
        "finalize",
        "-q",
        "--part",
        "2/2",
        parts.to_str().unwrap(),
    ]));
    ok(&hwprof(&["merge", parts.to_str().unwrap()]));
    for view in [
        &["--view", "hotspots", "--top", "100000"][..],
        &["--view", "lines", "--top", "100000"],
        &["--view", "ranks"],
        &["--view", "threads", "--top", "100000"],
        &["--view", "imbalance", "--top", "100000"],
        &["--view", "imbalance", "--top", "100000", "--ranks", "3-9"],
    ] {
        let mut a = view.to_vec();
        a.extend_from_slice(&["--format", "csv"]);
        let (x, y) = (report(&single, &a), report(&parts, &a));
        let sorted = |s: &str| {
            let mut v: Vec<String> = s.lines().map(String::from).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&x), sorted(&y), "{view:?}");
        let z = report(&batched, &a);
        assert_eq!(sorted(&x), sorted(&z), "batched: {view:?}");
        let u = report(&undeclared, &a);
        assert_eq!(sorted(&x), sorted(&u), "undeclared: {view:?}");
    }
    // The timeline (per thread and bucket), the samples (per thread and stack leaf's
    // function) and the meta, read from the two profile.db files.
    let rows = |dir: &Path, sql: &str| -> Vec<String> {
        let db = rusqlite::Connection::open(dir.join("profile.db")).unwrap();
        let mut st = db.prepare(sql).unwrap();
        let mut out: Vec<String> = st
            .query_map([], |r| {
                Ok((0..r.as_ref().column_count())
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        out.sort();
        out
    };
    for sql in [
        "SELECT t.tid, l.bucket, SUM(l.count) FROM timeline l JOIN threads t ON t.id = l.thread GROUP BY 1, 2",
        "SELECT t.tid, f.name, s.count, s.value FROM samples s JOIN threads t ON t.id = s.thread
         LEFT JOIN stacks k ON k.id = s.stack LEFT JOIN frames r ON r.id = k.frame
         LEFT JOIN functions f ON f.id = r.function",
        "SELECT key, value FROM meta",
    ] {
        let (x, y) = (rows(&single, sql), rows(&batched, sql));
        assert!(!x.is_empty(), "{sql}");
        assert_eq!(x, y, "batched: {sql}");
        assert_eq!(x, rows(&undeclared, sql), "undeclared: {sql}");
    }
    // The range the collector declared is the one finalize found in the samples.
    let declared: Value =
        serde_json::from_slice(&std::fs::read(recorded.join("manifest.json")).unwrap()).unwrap();
    let db = rusqlite::Connection::open(single.join("profile.db")).unwrap();
    let meta = |k: &str| -> u64 {
        let v: String = db
            .query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .unwrap();
        v.parse().unwrap()
    };
    let want = [meta("first_sample_ns"), meta("last_sample_ns")];
    assert_eq!(
        declared["sample_times_ns"],
        serde_json::json!(want),
        "{declared:#}"
    );
    let (x, y) = (json(&single, &[]), json(&parts, &[]));
    for k in ["samples", "total", "ranks", "processes", "threads", "pop"] {
        assert_eq!(x[k], y[k], "summary {k}");
    }
    assert_eq!(x["ranks"].as_array().unwrap().len(), 16);
}
