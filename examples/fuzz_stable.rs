//! The stable-toolchain fuzzing loop (where cargo-fuzz cannot run): each target of
//! `hwprof::fuzz_targets` over its committed corpus `fuzz/corpus/<target>/`, then
//! seeded mutations for the given time. A panic fails with the input saved.
//!
//! `cargo run --release --example fuzz_stable -- [SECONDS_PER_TARGET] [SEED (0: from the clock)] [TARGET...]`

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .filter(|&s| s != 0)
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        });
    let chosen: Vec<&str> = match args.get(2..) {
        Some(t) if !t.is_empty() => t.iter().map(String::as_str).collect(),
        _ => hwprof::fuzz_targets::TARGETS.to_vec(),
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failed = false;
    for t in chosen {
        let r = hwprof::fuzz_targets::run_bounded(
            t,
            &root.join(t),
            std::time::Duration::from_secs(secs),
            seed,
        );
        match r {
            Ok(s) => println!(
                "fuzz {t}: {} runs ({} corpus files), {secs} s, seed {seed}: no crash",
                s.runs, s.corpus
            ),
            Err(e) => {
                eprintln!("fuzz {t}: {e}");
                failed = true;
            }
        }
    }
    std::process::exit(i32::from(failed));
}
