//! pprof: a gzipped protobuf `perftools.profiles.Profile` (google/pprof's
//! `proto/profile.proto`), read by `go tool pprof`, `pprof`, Pyroscope, Grafana, and
//! anything that decodes the message (`src/export/profile.proto` is the subset of the
//! schema written here, for `protoc --decode`).
//!
//! What hwprof puts in it:
//! - `sample_type`: `[samples/count, cpu/nanoseconds]` for the samples metric (cpu
//!   time = samples × 1/frequency), `[samples/count, space/bytes]` for bytes,
//!   `[samples/count, wait/nanoseconds]` for ns; `default_sample_type` is the second.
//!   `period_type`/`period`: `cpu/nanoseconds` and the sampling interval (samples
//!   metric only).
//! - one `Function` per function (`name`, `system_name` = name, `filename`, first line),
//!   one `Location` per (function, line) frame with a single `Line`, one `Mapping` per
//!   module (filename = module, `has_functions`), locations carry no addresses.
//! - one `Sample` per aggregated stack row, leaf first, with labels `pid`, `tid`,
//!   `thread` (name) and `rank` (MPI only).
//!
//! The message structs below are written by hand with `prost` derive (no protoc at
//! build time); their field numbers are those of profile.proto.

use std::collections::HashMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;

use super::{ExportError, Metric, Model};

/// `perftools.profiles.Profile`.
#[derive(Clone, PartialEq, Message)]
pub struct PbProfile {
    /// What each sample value means.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<PbValueType>,
    /// Samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<PbSample>,
    /// Mappings (modules).
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<PbMapping>,
    /// Locations.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<PbLocation>,
    /// Functions.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<PbFunction>,
    /// Strings, `""` first.
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// Duration of the profile.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// What the period counts.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<PbValueType>,
    /// Events between samples.
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Comments (string indices).
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// The preferred sample type (string index of its `type`).
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// `ValueType`.
#[derive(Clone, PartialEq, Message)]
pub struct PbValueType {
    /// Type name (string index).
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// Unit (string index).
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// `Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct PbSample {
    /// Location ids, leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per sample type.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels.
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<PbLabel>,
}

/// `Label`.
#[derive(Clone, PartialEq, Message)]
pub struct PbLabel {
    /// Key (string index).
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// String value (string index).
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// Numeric value.
    #[prost(int64, tag = "3")]
    pub num: i64,
}

/// `Mapping`.
#[derive(Clone, PartialEq, Message)]
pub struct PbMapping {
    /// Id, from 1.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// File name (string index).
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// Symbols are resolved.
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    /// Files are resolved.
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    /// Lines are resolved.
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
}

/// `Location`.
#[derive(Clone, PartialEq, Message)]
pub struct PbLocation {
    /// Id, from 1.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Mapping id (0: none).
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// Lines (one: hwprof frames are already split per inlined function).
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<PbLine>,
}

/// `Line`.
#[derive(Clone, PartialEq, Message)]
pub struct PbLine {
    /// Function id.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Source line.
    #[prost(int64, tag = "2")]
    pub line: i64,
}

/// `Function`.
#[derive(Clone, PartialEq, Message)]
pub struct PbFunction {
    /// Id, from 1.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Name (string index).
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// System name (string index).
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// Source file (string index).
    #[prost(int64, tag = "4")]
    pub filename: i64,
    /// First line.
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// A pprof string table being built: each string once, by index.
#[derive(Default)]
pub(super) struct Strings {
    pub(super) table: Vec<String>,
    ids: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings::default();
        s.get("");
        s
    }
    /// The table of a decoded profile, to be extended.
    pub(super) fn of(table: Vec<String>) -> Self {
        let ids = table
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as i64))
            .collect();
        Strings { table, ids }
    }
    /// The index of `s`, added at the end when new.
    pub(super) fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.ids.insert(s.to_string(), i);
        i
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Build the pprof message for the model.
pub fn build(model: &Model) -> PbProfile {
    let mut st = Strings::new();
    let samples_vt = PbValueType {
        r#type: st.get("samples"),
        unit: st.get("count"),
    };
    let (metric_type, metric_unit) = match model.metric {
        Metric::Samples => ("cpu", "nanoseconds"),
        Metric::Bytes => ("space", "bytes"),
        Metric::Ns => ("wait", "nanoseconds"),
    };
    let metric_vt = PbValueType {
        r#type: st.get(metric_type),
        unit: st.get(metric_unit),
    };
    let interval_ns = (model.interval_s * 1e9).round();
    let mut p = PbProfile {
        default_sample_type: metric_vt.r#type,
        sample_type: vec![samples_vt, metric_vt.clone()],
        ..Default::default()
    };
    if model.metric == Metric::Samples {
        p.period_type = Some(metric_vt);
        p.period = interval_ns as i64;
    }
    let title = model.title();
    p.comment.push(st.get(&title));

    let mut mapping_ids: HashMap<String, u64> = HashMap::new();
    for mf in &model.functions {
        let f = &mf.function;
        let id = p.function.len() as u64 + 1;
        let name = st.get(&super::one_line(&f.name));
        p.function.push(PbFunction {
            id,
            name,
            system_name: name,
            filename: f.file.as_deref().map(|x| st.get(x)).unwrap_or(0),
            start_line: f.start_line.map(i64::from).unwrap_or(0),
        });
        if !mapping_ids.contains_key(&f.module) {
            let mid = p.mapping.len() as u64 + 1;
            p.mapping.push(PbMapping {
                id: mid,
                filename: st.get(&f.module),
                has_functions: true,
                has_filenames: true,
                has_line_numbers: true,
            });
            mapping_ids.insert(f.module.clone(), mid);
        }
    }
    for fr in &model.frames {
        let f = &model.functions[fr.function].function;
        p.location.push(PbLocation {
            id: p.location.len() as u64 + 1,
            mapping_id: mapping_ids.get(&f.module).copied().unwrap_or(0),
            line: vec![PbLine {
                function_id: fr.function as u64 + 1,
                line: fr.line.map(i64::from).unwrap_or(0),
            }],
        });
    }
    let (k_pid, k_tid, k_thread, k_rank) = (
        st.get("pid"),
        st.get("tid"),
        st.get("thread"),
        st.get("rank"),
    );
    for s in &model.stacks {
        let metric_value = match model.metric {
            Metric::Samples => (s.value as f64 * interval_ns).min(i64::MAX as f64) as i64,
            _ => clamp(s.value),
        };
        let t = &model.threads[s.thread];
        let mut label = vec![
            PbLabel {
                key: k_pid,
                num: i64::from(t.pid),
                ..Default::default()
            },
            PbLabel {
                key: k_tid,
                num: i64::from(t.tid),
                ..Default::default()
            },
            PbLabel {
                key: k_thread,
                str: st.get(&t.name),
                ..Default::default()
            },
        ];
        if let Some(r) = t.rank {
            label.push(PbLabel {
                key: k_rank,
                num: i64::from(r),
                ..Default::default()
            });
        }
        p.sample.push(PbSample {
            location_id: s.frames.iter().rev().map(|&f| f as u64 + 1).collect(),
            value: vec![clamp(s.count), metric_value],
            label,
        });
    }
    p.string_table = st.table;
    p
}

/// Write the model as a gzipped pprof protobuf.
pub fn write(model: &Model, out: &mut dyn Write) -> Result<(), ExportError> {
    let bytes = build(model).encode_to_vec();
    let mut gz = GzEncoder::new(out, Compression::default());
    gz.write_all(&bytes)?;
    gz.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::written_sample;

    #[test]
    fn round_trips_through_prost() {
        let out = written_sample(write);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out[..]), &mut raw).unwrap();
        let back = PbProfile::decode(&raw[..]).unwrap();
        assert_eq!(back.string_table[0], "");
        let total: i64 = back.sample.iter().map(|s| s.value[0]).sum();
        assert_eq!(total, 8);
        let cpu: i64 = back.sample.iter().map(|s| s.value[1]).sum();
        assert_eq!(cpu, 80_000_000); // 8 samples at 100 Hz
        // Leaf first: the main→b sample ends in main.
        let s = back.sample.iter().find(|s| s.value[0] == 1).unwrap();
        let name_of = |loc: u64| {
            let l = &back.location[loc as usize - 1];
            let f = &back.function[l.line[0].function_id as usize - 1];
            back.string_table[f.name as usize].clone()
        };
        assert_eq!(name_of(s.location_id[0]), "b");
        assert_eq!(name_of(*s.location_id.last().unwrap()), "main");
    }
}
