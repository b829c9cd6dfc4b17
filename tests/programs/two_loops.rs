// Rust: `hot_a` runs 3x the iterations of `hot_b` (self+inlined 75% / 25%); each is
// a `for` over a range, whose first instructions core's cmp.rs and range.rs own.
// The declarations' lines are the truth the test reads (`fn hot_a`, `fn hot_b`).
// Rounds of 0.5..1.5 M units (mean 1 M) in a fixed pseudo-random order (as in hot.c):
// rounds of one length alias with the sampling period.
#[inline(never)]
fn hot_a(n: u64) -> f64 {
    let mut x = 0.0;
    for i in 0..n {
        x += i as f64 * 0.5;
    }
    x
}

#[inline(never)]
fn hot_b(n: u64) -> f64 {
    let mut x = 0.0;
    for i in 0..n {
        x += i as f64 * 0.25;
    }
    x
}

fn main() {
    let rounds: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let mut s = 0.0;
    let mut x: u64 = 1;
    for _ in 0..rounds {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = 500_000 + (x >> 33) % 1_000_000;
        s += hot_a(std::hint::black_box(3 * n)) + hot_b(std::hint::black_box(n));
    }
    println!("{s}");
}
