//! Python benches: one capture walk (20 frames, through a recorded memory image, as the
//! remote sampler and the tests do), the agent's own capture on a real interpreter's
//! 15 frames (the function its SIGTRAP handler calls, timed inside the target by the
//! agent's `hwprof_agent_time_captures` hook: `benches/capture_bench.py`; the signal
//! itself is `benches/sigtrap_cost.c`, the handler in a running program
//! `HWPROF_AGENT_STATS=1`, see docs/performance.md), and one merge of a native and a
//! Python stack. Run: `cargo bench --bench python`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hwprof::profile::{FrameInfo, FrameKind, Function};
use hwprof::python::layouts::for_version;
use hwprof::python::memory::MemoryImage;
use hwprof::python::wire::frames::{Decoder, Top};
use hwprof::python::{PyStack, merge, walker};

fn chain(n: u64) -> (MemoryImage, hwprof::python::layouts::Layout) {
    let l = for_version(3, 11).unwrap_or_else(|| unreachable!());
    let mut img = MemoryImage::new();
    for i in 0..n {
        let a = 0x10000 + i * 0x100;
        img.insert(a, vec![0u8; 0x100]);
        img.put_u64(a + l.frame_previous, if i + 1 < n { a + 0x100 } else { 0 });
        img.put_u64(a + l.frame_code, 0x90000);
        img.put_u64(a + l.frame_instr, 0x90000 + l.code_code_adaptive + 2 * i);
    }
    img.insert(0x90000, vec![0u8; 0x200]);
    (img, l)
}

fn frame(name: &str, kind: FrameKind) -> FrameInfo {
    FrameInfo {
        function: Function {
            name: name.into(),
            module: "m".into(),
            file: None,
            start_line: None,
            kind,
        },
        file: None,
        line: Some(1),
    }
}

/// The interpreter for the agent capture bench: `HWPROF_BENCH_PYTHON`, else pyenv's 3.11.
fn bench_python() -> Option<PathBuf> {
    let p = match std::env::var_os("HWPROF_BENCH_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pyenv/versions/3.11.7/bin/python3"),
    };
    p.is_file().then_some(p)
}

/// `iters` captures of the agent (embedded in this hwprof) on a 15-frame Python stack,
/// in one launched program; the time the agent measured in it.
fn agent_captures(python: &Path, iters: u64) -> Duration {
    let dir = std::env::temp_dir().join(format!("hwprof-capture-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/capture_bench.py");
    let out = Command::new(env!("CARGO_BIN_EXE_hwprof"))
        .args(["collect", "-q", "--no-finalize", "-F", "1", "-r"])
        .arg(&dir)
        .arg("--")
        .arg(python)
        .arg(&script)
        .arg(iters.to_string())
        .output()
        .expect("run hwprof collect");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    // `<N> captures <ns> ns <written> written`
    let ns: u64 = text
        .split_whitespace()
        .nth(2)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("capture_bench.py printed {text:?}: {out:?}"));
    assert!(ns > 0, "the agent did not capture (no hook?): {text}");
    Duration::from_nanos(ns)
}

fn benches(c: &mut Criterion) {
    match bench_python() {
        Some(py) => {
            let mut g = c.benchmark_group("agent");
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(200))
                .measurement_time(Duration::from_secs(1));
            // One iteration is 1,000 captures (ms per iteration = µs per capture): each
            // sample launches a program, so criterion must not see single captures.
            g.bench_function(
                "agent capture x1000 (15 real frames, 3.11, warm, no signal)",
                |b| b.iter_custom(|iters| agent_captures(&py, iters * 1000)),
            );
            g.finish();
        }
        None => eprintln!(
            "agent capture bench skipped: no ~/.pyenv/versions/3.11.7/bin/python3 (set HWPROF_BENCH_PYTHON)"
        ),
    }
    let (img, l) = chain(20);
    let dec = Decoder::new(l, 0).unwrap_or_else(|| unreachable!());
    let top = Top {
        frame: 0x10000,
        cframe: 0,
    };
    c.bench_function("python capture walk (20 frames, memory image)", |b| {
        b.iter(|| walker::walk(&img, &dec, top, hwprof::python::wire::MAX_FRAMES))
    });
    let mut native = Vec::new();
    for i in 0..10 {
        native.push(frame(&format!("c{i}"), FrameKind::Native));
        native.push(frame("_PyEval_EvalFrameDefault", FrameKind::Native));
    }
    native.push(frame("main", FrameKind::Native));
    let py = PyStack {
        frames: (0..20)
            .map(|i| frame(&format!("p{i}"), FrameKind::Python))
            .collect(),
        groups: vec![2; 10],
        cut: false,
    };
    c.bench_function("python merge (21 native, 20 Python frames)", |b| {
        b.iter(|| merge(&native, &py))
    });
}

criterion_group!(python, benches);
criterion_main!(python);
