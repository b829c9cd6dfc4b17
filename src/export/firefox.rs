//! Firefox Profiler "processed" JSON, written by `fxprof-processed-profile` (the crate
//! samply uses); open it at profiler.firefox.com ("Load a profile from file").
//!
//! - one process per profile process (name = command, pid), one thread per thread
//!   (tid, name; the thread whose tid is the pid is the main thread);
//! - frames are labels (the format carries no file field for labels): a function's
//!   name, `qualname (file:line)` for Python; categories `Native`, `Python`, `Kernel`;
//! - one sample per aggregated stack row, with its weight in the metric: weight type
//!   `samples` for samples, `bytes` for bytes; for ns the weights are microseconds
//!   under weight type `samples` (the format's weights are 32-bit integers, and its
//!   only time unit, `tracing-ms`, would round sub-millisecond waits away), which the
//!   product name says ("weights: µs"); a nonzero wait counts at least 1 µs. A weight
//!   above 2^31-1 is split over several samples. Samples have no real times in profile.db (it is
//!   aggregated), so they are laid one sampling interval apart in stack order.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use fxprof_processed_profile::{
    CategoryColor, CategoryPairHandle, CpuDelta, Frame, FrameFlags, FrameInfo, Profile,
    ReferenceTimestamp, SamplingInterval, Timestamp, WeightType,
};

use super::{ExportError, Metric, Model};
use crate::profile::FrameKind;

/// Build the Firefox profile.
pub fn build(model: &Model) -> Profile {
    let interval_ns = ((model.interval_s * 1e9) as u64).max(1);
    let product = match model.metric {
        Metric::Ns => format!("{} (weights: µs)", model.title()),
        _ => model.title(),
    };
    let mut p = Profile::new(
        &product,
        ReferenceTimestamp::from_millis_since_unix_epoch(0.0),
        SamplingInterval::from_nanos(interval_ns),
    );
    let native: CategoryPairHandle = p.add_category("Native", CategoryColor::Blue).into();
    let python: CategoryPairHandle = p.add_category("Python", CategoryColor::Green).into();
    let kernel: CategoryPairHandle = p.add_category("Kernel", CategoryColor::Orange).into();
    let (weight_type, scale) = match model.metric {
        Metric::Samples => (WeightType::Samples, 1.0),
        Metric::Bytes => (WeightType::Bytes, 1.0),
        Metric::Ns => (WeightType::Samples, 1e-3),
    };
    let zero = Timestamp::from_nanos_since_reference(0);
    let mut processes = HashMap::new();
    let mut threads = HashMap::new();
    let mut clocks: HashMap<usize, u64> = HashMap::new();
    for s in &model.stacks {
        let thread = *threads.entry(s.thread).or_insert_with(|| {
            let t = &model.threads[s.thread];
            let process = *processes.entry(t.process).or_insert_with(|| {
                let name = match (t.command.is_empty(), t.rank) {
                    (true, _) => format!("pid {}", t.pid),
                    (false, Some(r)) => format!("{} (rank {r})", super::one_line(&t.command)),
                    (false, None) => super::one_line(&t.command),
                };
                p.add_process(&name, t.pid, zero)
            });
            let th = p.add_thread(process, t.tid, zero, t.tid == t.pid);
            p.set_thread_name(th, &super::one_line(&t.name));
            p.set_thread_samples_weight_type(th, weight_type.clone());
            th
        });
        let frames: Vec<FrameInfo> = s
            .frames
            .iter()
            .map(|&fr| {
                let mf = model.frame_function(fr);
                let category_pair = match mf.function.kind {
                    FrameKind::Python => python,
                    FrameKind::Kernel => kernel,
                    FrameKind::Native => native,
                };
                FrameInfo {
                    frame: Frame::Label(p.intern_string(&super::one_line(&mf.label))),
                    category_pair,
                    flags: FrameFlags::empty(),
                }
            })
            .collect();
        let stack = p.intern_stack_frames(thread, frames.into_iter());
        let mut weight = (s.value as f64 * scale).round() as u64;
        if weight == 0 && s.value > 0 {
            weight = 1;
        }
        while weight > 0 {
            let w = weight.min(i32::MAX as u64);
            weight -= w;
            let clock = clocks.entry(s.thread).or_default();
            let t = Timestamp::from_nanos_since_reference(*clock * interval_ns);
            *clock += 1;
            p.add_sample(thread, t, stack, CpuDelta::from(Duration::ZERO), w as i32);
        }
    }
    p
}

/// Write the model as Firefox Profiler JSON.
pub fn write(model: &Model, out: &mut dyn Write) -> Result<(), ExportError> {
    let p = build(model);
    let mut w = std::io::BufWriter::new(out);
    serde_json::to_writer(&mut w, &p)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::written_sample;

    #[test]
    fn two_threads_and_weights() {
        let out = written_sample(write);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let threads = v["threads"].as_array().unwrap();
        assert_eq!(threads.len(), 2);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Runner.run (app.py:5)"));
    }
}
