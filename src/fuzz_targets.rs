//! Entry points for fuzzing: each takes arbitrary bytes and runs one reader of
//! untrusted input the way hwprof runs it. A target must return, whatever the bytes:
//! a panic, an abort, an allocation failure or a hang is a bug.
//!
//! Run by `fuzz/` (cargo-fuzz, nightly) and by the stable fallback
//! `examples/fuzz_stable.rs` (the committed corpus plus seeded mutations); see
//! docs/security.md, "Hostile input".

use std::path::{Path, PathBuf};

use clap::ValueEnum;

/// Names of the targets, for the runners.
pub const TARGETS: &[&str] = &[
    "perf_data",
    "captures",
    "ring",
    "sidecars",
    "linetable",
    "profile_db",
];

/// Runs target `name` on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "perf_data" => perf_data(data),
        "captures" => captures(data),
        "ring" => ring(data),
        "sidecars" => sidecars(data),
        "linetable" => linetable(data),
        "profile_db" => profile_db(data),
        _ => return false,
    }
    true
}

/// A scratch directory per process and thread, reused across runs (removed by the
/// runner; fuzzing writes a few files there).
fn scratch() -> PathBuf {
    let id = format!("{:?}", std::thread::current().id());
    let id: String = id.chars().filter(char::is_ascii_digit).collect();
    let d = std::env::temp_dir().join(format!("hwprof-fuzz-{}-{id}", std::process::id()));
    let _ = crate::util::create_private_dir(&d);
    d
}

/// Removes this thread's scratch directory.
pub fn clean_up() {
    let _ = std::fs::remove_dir_all(scratch());
}

/// The perf.data reader: header and feature checks, linux-perf-data's attributes, the
/// record walk in time order, every record's parse, unwinding and the Python join off.
pub fn perf_data(data: &[u8]) {
    let path = Path::new("fuzz/perf.data");
    let search = crate::finalize::binaries::SearchPaths::default();
    let pb = indicatif::ProgressBar::hidden();
    let _ = crate::finalize::process::process_perf_data(
        || crate::raw::TolerantPerfFile::from_bytes(data, path),
        path,
        &search,
        crate::finalize::process::Weighting::Samples,
        None,
        &pb,
    );
}

/// A Python capture file (`python-<pid>.bin`), parsed whole and, as the collector
/// reads it while it grows, in two pieces.
pub fn captures(data: &[u8]) {
    let _ = crate::python::sidecar::parse_captures(data);
    if data.len() > 1 {
        let cut = data[0] as usize % data.len();
        let _ = crate::python::sidecar::parse_captures(&data[..cut]);
    }
}

/// The capture ring shared with the agent (written by the profiled program, so
/// hostile): the first 24 bytes set head, tail and lost, the rest fills the data; the
/// drained records are then parsed as a capture file.
pub fn ring(data: &[u8]) {
    use crate::python::ring::{RING_HEADER_BYTES, Ring, RingHeader};
    const SIZE: usize = 4096;
    let Ok(mut m) = memmap2::MmapMut::map_anon(RING_HEADER_BYTES + SIZE) else {
        return;
    };
    // SAFETY: a fresh zeroed, page-aligned anonymous mapping of header + SIZE bytes,
    // kept alive (m) while the ring is used.
    let Some(ring) = (unsafe { Ring::init(m.as_mut_ptr(), SIZE as u64) }) else {
        return;
    };
    let word = |i: usize| {
        data.get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    };
    {
        // SAFETY: the header lies at the start of the mapping, aligned.
        let h = unsafe { &*m.as_ptr().cast::<RingHeader>() };
        h.head.store(word(0), std::sync::atomic::Ordering::Relaxed);
        h.tail.store(word(1), std::sync::atomic::Ordering::Relaxed);
        h.lost.store(word(2), std::sync::atomic::Ordering::Relaxed);
    }
    let body = data.get(24..).unwrap_or(&[]);
    let n = body.len().min(SIZE);
    m[RING_HEADER_BYTES..RING_HEADER_BYTES + n].copy_from_slice(&body[..n]);
    let mut out = Vec::new();
    let _ = ring.drain(&mut out);
    let _ = ring.lost();
    let mut file = Vec::new();
    file.extend_from_slice(&crate::python::wire::FILE_MAGIC);
    file.resize(size_of::<crate::python::wire::FileHeader>(), 0);
    file.extend_from_slice(&out);
    let _ = crate::python::sidecar::parse_captures(&file);
}

/// Sidecar names, in the order the first byte of an input picks them.
const SIDECARS: &[&str] = &[
    "manifest.json",
    "rss.csv",
    "hwm.csv",
    "peak.csv",
    "counters.csv",
    "modules.json",
    "fill.json",
    "kallsyms",
    "perf-1.map",
    "python-codes.jsonl",
    "python-1.bin",
    crate::sidecars::VDSO_FILE,
];

/// Every sidecar reader of finalize, through the files it reads: the first byte picks
/// the file, the rest is its contents; then each reader runs over the directory.
pub fn sidecars(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let dir = scratch();
    let raw = dir.join("raw").join("host.-.1");
    let _ = std::fs::create_dir_all(&raw);
    for f in SIDECARS {
        let _ = std::fs::remove_file(raw.join(f));
        let _ = std::fs::remove_file(dir.join(f));
    }
    let name = SIDECARS[pick as usize % SIDECARS.len()];
    let target = if name == "manifest.json" && pick & 0x80 == 0 {
        dir.join(name)
    } else {
        raw.join(name)
    };
    if std::fs::write(&target, body).is_err() {
        return;
    }
    read_sidecars(&dir, &raw);
}

/// Runs every sidecar reader on results directory `dir` and its raw directory `raw`.
pub fn read_sidecars(dir: &Path, raw: &Path) {
    let _ = crate::manifest::Manifest::load(dir);
    let _ = crate::manifest::Manifest::load(raw);
    let _ = crate::mpi::job_notices(dir, Some(4));
    let _ = crate::sidecars::rss::read_rss_csv(&raw.join("rss.csv"));
    let _ = crate::sidecars::rss::read_peak_csv(&raw.join("peak.csv"));
    let _ = crate::sidecars::rss::read_peak_csv(&raw.join(crate::sidecars::rss::HWM_FILE));
    if let Ok(rows) = crate::sidecars::counters::read_counters_csv(&raw.join("counters.csv")) {
        let _ = crate::sidecars::counters::bandwidth_summary(&rows);
    }
    let _ = crate::collect::modules::read_modules(raw);
    let _ = crate::sidecars::collector_sampled::load(raw);
    // The vdso copy is read as any binary is (finalize's ELF loader).
    let _ = crate::finalize::binaries::load_elf(&raw.join(crate::sidecars::VDSO_FILE));
    let k = crate::finalize::symbols::KernelSymbols::load(raw);
    let _ = k.frame(0xffff_ffff_8100_0000);
    if let Some(m) = crate::python::perfmap::PerfMap::load_all(raw) {
        let _ = m.symbol(0x1000);
    }
    if let Ok(Some(s)) = crate::python::PythonStacks::load(raw) {
        let _ = s.summary();
        let stacks: Vec<_> = s.all().collect();
        let mut j = crate::python::Joiner::new(s);
        for (_, t, _) in stacks.iter().take(64) {
            let _ = j.sample(crate::python::SampleFacts {
                pid: 1,
                tid: 1,
                time_ns: *t,
                id: None,
                event: 0,
                paired: false,
            });
        }
        let _ = j.finish();
    }
}

/// The Python line-table decoders: the first byte picks the version (3.8-3.14),
/// the next four the instruction offset, the next two the first line.
pub fn linetable(data: &[u8]) {
    if data.len() < 7 {
        return;
    }
    let minor = 8 + data[0] as u32 % 7;
    let offset = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let first = i16::from_le_bytes([data[5], data[6]]) as i64;
    let table = &data[7..];
    let kind = crate::python::linetable::TableKind::for_minor(minor);
    let _ = crate::python::linetable::line_for_offset(kind, table, first, offset);
    for o in [0, 2, 4, offset / 2, u32::MAX] {
        let _ = crate::python::linetable::line_for_offset(kind, table, first, o);
    }
}

/// profile.db loading, then every report view in every format and frame filter, and
/// every export format.
pub fn profile_db(data: &[u8]) {
    let dir = scratch().join("db");
    let _ = std::fs::create_dir_all(&dir);
    let db = dir.join("profile.db");
    let _ = std::fs::remove_file(&db);
    if std::fs::write(&db, data).is_err() {
        return;
    }
    let Ok(p) = crate::profile::Profile::load(&dir) else {
        return;
    };
    every_view(&p);
}

/// Renders every view and export of a loaded profile, discarding the output.
pub fn every_view(p: &crate::profile::Profile) {
    // Every variant the command line offers (the stages' own value enums).
    use crate::export::ExportFormat;
    use crate::profile::stacks::FramesFilter;
    use crate::report::{ImbalanceBy, ReportFormat, View};
    for (i, &frames) in FramesFilter::value_variants().iter().enumerate() {
        let filter = crate::profile::stacks::StackFilter {
            frames,
            rank: None,
            ranks: None,
            // Both values, without doubling the work per input.
            mpi_threads: i % 2 == 1,
        };
        for &view in View::value_variants() {
            for &format in ReportFormat::value_variants() {
                let _ = crate::report::render(p, view, format, 10, filter);
            }
        }
        for &by in ImbalanceBy::value_variants() {
            let _ = crate::report::imbalance::imbalance(p, ReportFormat::Csv, 10, filter, by);
        }
        for &format in ExportFormat::value_variants() {
            let mut out = Vec::new();
            let _ = crate::export::export(p, format, filter, &mut out);
        }
    }
    let _ = crate::report::warnings(p);
}

/// A small seeded generator (xorshift64*): the stable runner's mutations are the same
/// for the same seed, so a failure is reproduced by its seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded (0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Below `n` (> 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Values that break length and offset checks.
const INTERESTING: &[u64] = &[
    0,
    1,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 44,
    i64::MAX as u64,
    u64::MAX,
];

/// One to eight random edits of `input`: bit flips, bytes, interesting 1/2/4/8-byte
/// values, cuts, repeats and insertions.
pub fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next_u64() as u8;
            }
            2 | 3 if len > 0 => {
                let width = [1, 2, 4, 8][rng.below(4)];
                let x = INTERESTING[rng.below(INTERESTING.len())];
                let i = rng.below(len);
                let bytes = x.to_le_bytes();
                let n = width.min(len - i);
                v[i..i + n].copy_from_slice(&bytes[..n]);
            }
            4 if len > 0 => v.truncate(rng.below(len)),
            5 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let chunk = v[a..b].to_vec();
                let at = rng.below(len);
                v.splice(at..at, chunk);
            }
            _ => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                v.splice(at..at, bytes);
            }
        }
    }
    v
}

/// What a bounded run of a target did.
#[derive(Debug, Default)]
pub struct RunStats {
    /// Inputs run (corpus and mutations).
    pub runs: u64,
    /// Corpus files.
    pub corpus: usize,
}

/// The stable fuzzing loop: runs target `name` over every file of `corpus_dir`, then
/// over seeded mutations of them until `duration` has passed. A panic stops the loop:
/// the input is written to `crash-<target>-<seed>-<run>` in the current directory and
/// returned as the error.
pub fn run_bounded(
    name: &str,
    corpus_dir: &Path,
    duration: std::time::Duration,
    seed: u64,
) -> Result<RunStats, String> {
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(corpus_dir)
        .map(|rd| {
            let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            files.sort();
            files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
        })
        .unwrap_or_default();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut stats = RunStats {
        corpus: corpus.len(),
        ..Default::default()
    };
    let mut rng = Rng::new(seed);
    let start = std::time::Instant::now();
    let mut k = 0usize;
    loop {
        let input = if k < corpus.len() {
            corpus[k].clone()
        } else {
            if start.elapsed() >= duration {
                break;
            }
            let base = &corpus[rng.below(corpus.len())];
            mutate(base, &mut rng)
        };
        k += 1;
        let ok = std::panic::catch_unwind(|| run(name, &input));
        stats.runs += 1;
        match ok {
            Ok(true) => {}
            Ok(false) => return Err(format!("no fuzz target named {name}")),
            Err(_) => {
                let crash = format!("crash-{name}-{seed}-{k}");
                let _ = std::fs::write(&crash, &input);
                clean_up();
                return Err(format!(
                    "target {name} panicked on input {k} (seed {seed}); input written to {crash}"
                ));
            }
        }
    }
    clean_up();
    Ok(stats)
}
