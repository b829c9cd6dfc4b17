//! Python benches: one capture walk (20 frames, through a recorded memory image, as the
//! remote sampler and the tests do; the agent's in-process walk is timed by
//! `HWPROF_AGENT_STATS=1`, see docs/python.md) and one merge of a native and a Python
//! stack. Run: `cargo bench --bench python`.

use criterion::{Criterion, criterion_group, criterion_main};
use hwprof::profile::{FrameInfo, FrameKind, Function};
use hwprof::python::layouts::for_version;
use hwprof::python::memory::MemoryImage;
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

fn benches(c: &mut Criterion) {
    let (img, l) = chain(20);
    c.bench_function("python capture walk (20 frames, memory image)", |b| {
        b.iter(|| walker::walk(&img, &l, 0x10000))
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
    };
    c.bench_function("python merge (21 native, 20 Python frames)", |b| {
        b.iter(|| merge(&native, &py))
    });
}

criterion_group!(python, benches);
criterion_main!(python);
