//! Finalize throughput on a real recording: a dwarf-stack perf.data of the hot.c
//! workload made once at setup (10 kHz), finalized per iteration.
//! Run: `cargo bench --bench finalize`. The large comparison against `perf report`
//! is `python3 benches/compare.py finalize`.

use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};

fn record(tmp: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = tmp.join("hot");
    let ok = Command::new("cc")
        .args(["-O2", "-g"])
        .arg(root.join("tests/programs/hot.c"))
        .arg("-o")
        .arg(&bin)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "cc failed");
    let run = tmp.join("run");
    let hwprof = root.join("target/release/hwprof");
    let ok = Command::new(&hwprof)
        .args(["collect", "-q", "--no-finalize", "-F", "10000", "-r"])
        .arg(&run)
        .arg("--")
        .arg(&bin)
        .arg("600")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "collect failed (build with `cargo build --release` first)"
    );
    run
}

fn bench_finalize(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = record(tmp.path());
    let opts = hwprof::finalize::FinalizeOptions {
        dir: run.clone(),
        search_dirs: vec![],
        jobs: None,
        part: None,
        quiet: true,
        timings: false,
    };
    let mut g = c.benchmark_group("finalize");
    g.sample_size(10);
    g.bench_function("hot.c at 10 kHz, dwarf stacks", |b| {
        b.iter(|| {
            let _ = std::fs::remove_file(run.join("profile.db"));
            hwprof::finalize::run(&opts).expect("finalize")
        })
    });
    g.finish();
}

criterion_group!(benches, bench_finalize);
criterion_main!(benches);
