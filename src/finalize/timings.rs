//! `hwprof finalize --timings`: the wall and CPU time (all threads) of each stage
//! (read, symbolize, aggregate, write) and, within reading, the time of the per-sample
//! stages (unwind, aggregate), printed to stderr at the end. On a loaded machine the
//! CPU times are the steadier figures. Ranks are finalized in batches, the next read
//! while this one is symbolized and aggregated: with more than one batch, `read` is
//! the first batch's reading and the waits for the next ones, and the CPU of a stage
//! includes that of the threads reading beside it.

use std::time::{Duration, Instant};

use super::process::{StageNs, TIME_STAGES};

/// Stage clock; does nothing unless on.
pub struct StageClock {
    on: bool,
    start: Instant,
    start_cpu: Duration,
    last: Instant,
    last_cpu: Duration,
    laps: Vec<(&'static str, Duration, Duration)>,
}

impl StageClock {
    /// Start timing (and turn on the per-sample clocks) when `on`.
    pub fn start(on: bool) -> Self {
        if on {
            TIME_STAGES.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let now = Instant::now();
        StageClock {
            on,
            start: now,
            start_cpu: cpu_time(),
            last: now,
            last_cpu: cpu_time(),
            laps: Vec::new(),
        }
    }

    /// The stage `name` ends now. A stage seen before (ranks finalized in batches)
    /// adds to its time.
    pub fn lap(&mut self, name: &'static str) {
        if self.on {
            let (now, cpu) = (Instant::now(), cpu_time());
            let (d, c) = (now - self.last, cpu.saturating_sub(self.last_cpu));
            match self.laps.iter_mut().find(|l| l.0 == name) {
                Some(l) => (l.1, l.2) = (l.1 + d, l.2 + c),
                None => self.laps.push((name, d, c)),
            }
            self.last = now;
            self.last_cpu = cpu;
        }
    }

    /// Print the stages; `per_sample` sums the raw directories' per-sample stages.
    pub fn print(&self, per_sample: StageNs, samples: u64, raw_dirs: usize, threads: usize) {
        if !self.on {
            return;
        }
        let s = |d: Duration| d.as_secs_f64();
        let ns = |n: u64| n as f64 / 1e9;
        let mut out = format!(
            "hwprof: finalize timings ({samples} samples, {raw_dirs} raw directories, {threads} threads)\n  {:<14} {:>8} {:>8}\n",
            "stage", "wall", "CPU"
        );
        for (name, d, cpu) in &self.laps {
            out += &format!("  {name:<14} {:>6.3} s {:>6.3} s\n", s(*d), s(*cpu));
            if *name == "read" {
                out += &format!(
                    "    {:<12} {:>6.3} s           within read, summed over threads: stacks to addresses\n",
                    "unwind",
                    ns(per_sample.unwind)
                );
                out += &format!(
                    "    {:<12} {:>6.3} s           within read, summed over threads: stack trie, sample maps\n",
                    "aggregate",
                    ns(per_sample.aggregate)
                );
            }
        }
        out += &format!(
            "  {:<14} {:>6.3} s {:>6.3} s\n",
            "total",
            s(self.start.elapsed()),
            s(cpu_time().saturating_sub(self.start_cpu))
        );
        eprint!("{out}");
    }
}

/// CPU time of the whole process (every thread, live or gone).
fn cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}
