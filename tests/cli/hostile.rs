//! Hostile input (docs/security.md, "Hostile input"): crafted perf.data headers and
//! feature sections, seeded random byte flips, sidecars that are `/dev/zero` or FIFOs
//! (as the file and behind a symlink), a profile.db whose ids point nowhere, and one
//! damaged rank among several. Every run is under a timeout; none may crash (signal,
//! abort's 134), hang (timeout's 124) or take the other ranks down.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{build_c, hwprof_bin, ok};

/// `hwprof ARGS` killed after 120 s; asserts it neither hung nor crashed.
fn bounded(args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .args(["-s", "KILL", "120"])
        .arg(hwprof_bin())
        .args(args)
        .output()
        .expect("run timeout hwprof");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) | Some(1) | Some(2) => {}
        other => panic!("hwprof {args:?} crashed or hung (status {other:?}):\n{stderr}"),
    }
    assert!(
        !stderr.contains("panicked") && !stderr.contains("memory allocation"),
        "hwprof {args:?} panicked:\n{stderr}"
    );
    out
}

/// A finished results directory of a short run of hot.c, made once per test.
fn collected(tmp: &Path) -> PathBuf {
    let bin = build_c(tmp, "hot.c", "hot", &["-fno-omit-frame-pointer"]);
    let dir = tmp.join("run");
    let out = Command::new(hwprof_bin())
        .args([
            "collect",
            "-q",
            "--no-finalize",
            "-F",
            "499",
            "--call-graph",
            "fp",
        ])
        .arg("-r")
        .arg(&dir)
        .arg("--")
        .arg(&bin)
        .arg("150")
        .output()
        .expect("run hwprof collect");
    ok(&out);
    dir
}

fn raw_dir(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("raw"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("perf.data").is_file())
        .expect("a raw directory with perf.data")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// perf.data with feature bits 2 (build ids) and 12 (event desc) and a feature table
/// whose first section claims `size` bytes: linux-perf-data allocates what it claims.
fn with_feature_size(perf: &[u8], size: u64) -> Vec<u8> {
    let end = (u64_at(perf, 40) + u64_at(perf, 48)) as usize;
    let mut b = perf[..end].to_vec();
    b[72..104].fill(0);
    b[72] = 1 << 2;
    b[73] = 1 << 4;
    let table = b.len() as u64;
    b.extend_from_slice(&(table + 32).to_le_bytes());
    b.extend_from_slice(&size.to_le_bytes());
    b.extend_from_slice(&(table + 32).to_le_bytes());
    b.extend_from_slice(&8u64.to_le_bytes());
    b.extend_from_slice(&[0xff; 64]);
    b
}

/// Finalize a copy of `dir` whose perf.data is `perf`; then, when it succeeded, every
/// view: returns finalize's output.
fn finalize_variant(dir: &Path, tmp: &Path, name: &str, perf: &[u8]) -> Output {
    let v = tmp.join(name);
    copy_dir(dir, &v);
    std::fs::write(raw_dir(&v).join("perf.data"), perf).unwrap();
    let d = v.to_str().unwrap();
    let out = bounded(&["finalize", "-q", d]);
    if out.status.success() {
        for view in [
            "summary", "hotspots", "lines", "callers", "threads", "modules",
        ] {
            bounded(&["report", d, "--view", view]);
        }
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("hwprof: error"), "{name}: {stderr}");
    }
    out
}

#[test]
fn absurd_header_and_feature_sizes_neither_abort_nor_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = collected(tmp.path());
    let perf = std::fs::read(raw_dir(&dir).join("perf.data")).unwrap();
    // The size that aborted finalize ("memory allocation of 17592186044416 bytes").
    for (i, size) in [1u64 << 44, u64::MAX, 1 << 31].into_iter().enumerate() {
        let out = finalize_variant(
            &dir,
            tmp.path(),
            &format!("feat{i}"),
            &with_feature_size(&perf, size),
        );
        ok(&out);
    }
    // Header fields: attr size, attr section, data section, event types section.
    let cases: &[(&str, usize, u64)] = &[
        ("attr_size", 16, 1 << 40),
        ("attr_size0", 16, 0),
        ("attrs_size", 32, 1 << 44),
        ("data_off", 40, 1 << 50),
        ("data_size", 48, u64::MAX),
        ("types_size", 64, 1 << 44),
        ("types_off", 56, u64::MAX),
    ];
    for &(name, off, v) in cases {
        let mut b = perf.clone();
        put_u64(&mut b, off, v);
        finalize_variant(&dir, tmp.path(), name, &b);
    }
}

#[test]
fn seeded_byte_flips_in_perf_data_never_crash_finalize() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = collected(tmp.path());
    let perf = std::fs::read(raw_dir(&dir).join("perf.data")).unwrap();
    let mut rng = hwprof::fuzz_targets::Rng::new(16);
    for i in 0..12 {
        let b = hwprof::fuzz_targets::mutate(&perf, &mut rng);
        // Header flips too: half the variants hit the first 104 bytes.
        let mut b = b;
        if i % 2 == 0 && b.len() > 104 {
            let at = rng.below(104);
            b[at] ^= 1 << rng.below(8);
        }
        finalize_variant(&dir, tmp.path(), &format!("flip{i}"), &b);
    }
}

/// Replace `path` by `kind`: a symlink to /dev/zero, a FIFO, or a symlink to a FIFO.
fn plant(path: &Path, kind: &str, tmp: &Path) {
    let _ = std::fs::remove_file(path);
    match kind {
        "zero-link" => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
        "fifo" => nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).unwrap(),
        _ => {
            let f = tmp.join(format!(
                "fifo-{}",
                path.file_name().unwrap().to_string_lossy()
            ));
            let _ = std::fs::remove_file(&f);
            nix::unistd::mkfifo(&f, nix::sys::stat::Mode::S_IRWXU).unwrap();
            std::os::unix::fs::symlink(&f, path).unwrap();
        }
    }
}

#[test]
fn dev_zero_and_fifo_sidecars_are_refused_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = collected(tmp.path());
    let sidecars = [
        "rss.csv",
        "hwm.csv",
        "peak.csv",
        "counters.csv",
        "modules.json",
        "collector-sampled.json",
        "kallsyms",
        "perf-1.map",
        "python-codes.jsonl",
        "python-1.bin",
        "manifest.json",
    ];
    for kind in ["zero-link", "fifo", "fifo-link"] {
        let v = tmp.path().join(kind);
        copy_dir(&dir, &v);
        let raw = raw_dir(&v);
        for s in sidecars {
            plant(&raw.join(s), kind, tmp.path());
        }
        let d = v.to_str().unwrap();
        ok(&bounded(&["finalize", "-q", d]));
        bounded(&["report", d]);
        // The results directory's own manifest: a clear error, quickly.
        plant(&v.join("manifest.json"), kind, tmp.path());
        let out = bounded(&["finalize", "-q", d]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{kind}: finalize read a {kind} manifest"
        );
        assert!(stderr.contains("not a regular file"), "{kind}: {stderr}");
        // profile.db as a device or FIFO: report and export refuse it.
        plant(&v.join("profile.db"), kind, tmp.path());
        for args in [
            vec!["report", d],
            vec!["export", d, "--format", "collapsed"],
        ] {
            let out = bounded(&args);
            assert!(
                !out.status.success(),
                "{kind}: {args:?} read a {kind} profile.db"
            );
        }
    }
}

#[test]
fn profile_db_with_dangling_ids_gives_a_partial_view_in_every_view_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = collected(tmp.path());
    let d = dir.to_str().unwrap();
    ok(&bounded(&["finalize", "-q", d]));
    let db = rusqlite::Connection::open(dir.join("profile.db")).unwrap();
    db.execute_batch(
        "UPDATE samples SET thread = 999 WHERE rowid % 3 = 0;
         UPDATE samples SET event = 77 WHERE rowid % 3 = 1;
         UPDATE samples SET stack = 1000000 WHERE rowid % 5 = 0;
         UPDATE frames SET function = 123456 WHERE id % 2 = 0;
         UPDATE stacks SET parent = id + 3 WHERE id % 4 = 0;
         UPDATE stacks SET frame = 99999 WHERE id % 7 = 0;
         UPDATE threads SET process = 55;
         UPDATE timeline SET thread = 4242, stack = 31337;",
    )
    .unwrap();
    drop(db);
    let views = [
        "summary",
        "hotspots",
        "callers",
        "lines",
        "modules",
        "threads",
        "ranks",
        "memory",
        "waits",
        "imbalance",
    ];
    for view in views {
        for format in ["text", "csv", "json"] {
            for frames in ["all", "python", "native"] {
                let out = bounded(&[
                    "report", d, "--view", view, "--format", format, "--frames", frames,
                ]);
                ok(&out);
            }
        }
    }
    let formats = [
        "collapsed",
        "flamegraph",
        "speedscope",
        "pprof",
        "pstats",
        "callgrind",
        "firefox",
        "html",
    ];
    for format in formats {
        let o = tmp.path().join(format!("out.{format}"));
        ok(&bounded(&[
            "export",
            d,
            "--format",
            format,
            "-o",
            o.to_str().unwrap(),
        ]));
    }
    let out = bounded(&["report", d]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("damaged"),
        "no word of the damage: {stderr}"
    );
}

#[test]
fn one_damaged_rank_is_skipped_and_named_while_the_others_finalize() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = collected(tmp.path());
    let raw = raw_dir(&dir);
    // An MPI-style directory: three ranks of the same run.
    let job = tmp.path().join("job");
    std::fs::create_dir_all(job.join("raw")).unwrap();
    std::fs::copy(dir.join("manifest.json"), job.join("manifest.json")).unwrap();
    for rank in 0..3 {
        copy_dir(
            &raw,
            &job.join("raw")
                .join(format!("node0.{rank}.{}", 1000 + rank)),
        );
    }
    // Rank 1: not a perf.data at all; rank 2: the absurd feature size, and /dev/zero
    // sidecars. Rank 0 is intact.
    let bad = job.join("raw/node0.1.1001/perf.data");
    std::fs::write(&bad, vec![0x41u8; 4096]).unwrap();
    let r2 = job.join("raw/node0.2.1002");
    let perf = std::fs::read(r2.join("perf.data")).unwrap();
    std::fs::write(r2.join("perf.data"), with_feature_size(&perf, 1 << 44)).unwrap();
    plant(&r2.join("rss.csv"), "zero-link", tmp.path());
    plant(&r2.join("kallsyms"), "fifo", tmp.path());
    let d = job.to_str().unwrap();
    let out = bounded(&["finalize", "-q", d]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ok(&out);
    assert!(
        stderr.contains("skipping node0.1.1001") && stderr.contains("not a perf.data"),
        "the damaged rank is not named: {stderr}"
    );
    let ranks = ok(&bounded(&[
        "report", d, "--view", "ranks", "--format", "csv",
    ]));
    let listed: Vec<&str> = ranks
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    assert!(
        listed.contains(&"0") && listed.contains(&"2") && !listed.contains(&"1"),
        "ranks 0 and 2 should be there, 1 skipped: {ranks}"
    );
}
