//! speedscope JSON (<https://www.speedscope.app/file-format-schema.json>).
//!
//! ```json
//! {"$schema": "https://www.speedscope.app/file-format-schema.json",
//!  "shared": {"frames": [{"name": "main", "file": "prog.c", "line": 10}, ...]},
//!  "profiles": [{"type": "sampled", "name": "prog pid 10 tid 10", "unit": "none",
//!                "startValue": 0, "endValue": 8,
//!                "samples": [[0, 1], ...], "weights": [3, ...]}, ...],
//!  "name": "...", "activeProfileIndex": 0, "exporter": "hwprof 0.1.0"}
//! ```
//!
//! One shared frame per function: `name` is the function's name (a Python function's
//! qualified name), `file` its source file (for a native function without one, its
//! module), `line` its first line. One sampled profile per thread (with its rank when
//! the run was MPI), stacks root first, weights in the metric: unit `none` for samples,
//! `bytes` for bytes, `nanoseconds` for ns. The thread with the largest total is the
//! active profile.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};

use super::{ExportError, Metric, Model};

/// Write the model as a speedscope file.
pub fn write(model: &Model, out: &mut dyn Write) -> Result<(), ExportError> {
    let frames: Vec<Value> = model
        .functions
        .iter()
        .map(|mf| {
            let f = &mf.function;
            let mut o = serde_json::Map::new();
            o.insert("name".into(), json!(super::one_line(&f.name)));
            match (&f.file, f.kind) {
                (Some(file), _) => {
                    o.insert("file".into(), json!(file));
                }
                (None, crate::profile::FrameKind::Python) => {}
                (None, _) if !f.module.is_empty() => {
                    o.insert("file".into(), json!(f.module));
                }
                _ => {}
            }
            if let Some(line) = f.start_line {
                o.insert("line".into(), json!(line));
            }
            Value::Object(o)
        })
        .collect();
    let unit = match model.metric {
        Metric::Samples => "none",
        Metric::Bytes => "bytes",
        Metric::Ns => "nanoseconds",
    };
    // Stacks per thread, in thread order.
    let mut per_thread: BTreeMap<usize, (Vec<Vec<usize>>, Vec<u64>)> = BTreeMap::new();
    for s in &model.stacks {
        if s.value == 0 {
            continue;
        }
        let entry = per_thread.entry(s.thread).or_default();
        entry.0.push(
            s.frames
                .iter()
                .map(|&fr| model.frames[fr].function)
                .collect(),
        );
        entry.1.push(s.value);
    }
    let mut profiles = Vec::new();
    let mut best = (0usize, 0u64);
    for (i, (thread, (samples, weights))) in per_thread.into_iter().enumerate() {
        let total: u64 = weights.iter().sum();
        if total > best.1 {
            best = (i, total);
        }
        let t = &model.threads[thread];
        let rank = t.rank.map(|r| format!("rank {r} ")).unwrap_or_default();
        let name = format!(
            "{}{} pid {} tid {}",
            rank,
            super::one_line(&t.name),
            t.pid,
            t.tid
        );
        profiles.push(json!({
            "type": "sampled",
            "name": name,
            "unit": unit,
            "startValue": 0,
            "endValue": total,
            "samples": samples,
            "weights": weights,
        }));
    }
    let doc = json!({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": profiles,
        "name": model.title(),
        "activeProfileIndex": best.0,
        "exporter": concat!("hwprof ", env!("CARGO_PKG_VERSION")),
    });
    serde_json::to_writer(&mut *out, &doc)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::written_sample;

    #[test]
    fn one_profile_per_thread_with_weights() {
        let out = written_sample(write);
        let v: Value = serde_json::from_slice(&out).unwrap();
        let profiles = v["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles[0]["endValue"], 7);
        assert_eq!(profiles[1]["endValue"], 1);
        assert_eq!(v["activeProfileIndex"], 0);
        let frames = v["shared"]["frames"].as_array().unwrap();
        let run = frames.iter().find(|f| f["name"] == "Runner.run").unwrap();
        assert_eq!(run["file"], "app.py");
        assert_eq!(run["line"], 5);
    }
}
