//! Python profiler statistics (the file `cProfile`'s `dump_stats` writes), read by
//! `pstats.Stats`, SnakeViz, gprof2dot and tuna.
//!
//! The file is one `marshal`-serialized dict (marshal format version 4):
//!
//! ```text
//! {(file, line, funcname): (cc, nc, tt, ct, {caller_key: (cc, nc, tt, ct), ...}), ...}
//! ```
//!
//! - key: `(file, first line, qualname)` for a Python function; `(module, 0, name)` for
//!   a native or kernel one. Functions with the same key are merged.
//! - `tt`: self cost; `ct`: total (inclusive) cost, a recursive function counted once
//!   per stack. In seconds for the samples metric (samples × 1/`frequency_hz`, default
//!   1/999) and for ns (ns × 1e-9); for the bytes metric one "second" is one byte (the
//!   numbers read as bytes, as in `hwprof report`).
//! - `nc` = `cc`: call counts are not measured by a sampling profiler; hwprof writes the
//!   number of samples in which the function was on the stack.
//! - callers: for each distinct caller→callee edge of the stacks (once per stack):
//!   `nc` = `cc` = samples through the edge, `ct` = cost through the edge, `tt` = cost
//!   where the callee was the leaf under that caller.
//!
//! [`marshal`] writes the few marshal types needed: dict, tuple, int (32-bit and
//! long), float (binary `g`) and str (`u`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;

use super::{ExportError, Metric, Model};
use crate::profile::FrameKind;

/// A pstats function key.
pub type Key = (String, i64, String);

#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct Cost {
    calls: u64,
    tt: u64,
    ct: u64,
}

/// The pstats key of a function.
pub fn key_of(f: &crate::profile::Function) -> Key {
    let name = super::one_line(&f.name);
    match f.kind {
        FrameKind::Python => (
            f.file.clone().unwrap_or_else(|| "<unknown>".into()),
            f.start_line.map(i64::from).unwrap_or(0),
            name,
        ),
        _ => (f.module.clone(), 0, name),
    }
}

/// The stats dict as a marshal value.
pub fn stats(model: &Model) -> marshal::Value {
    let mut keys: Vec<Key> = Vec::new();
    let mut key_ids: HashMap<Key, usize> = HashMap::new();
    let fn_key: Vec<usize> = model
        .functions
        .iter()
        .map(|mf| {
            let k = key_of(&mf.function);
            *key_ids.entry(k.clone()).or_insert_with(|| {
                keys.push(k);
                keys.len() - 1
            })
        })
        .collect();
    let mut own = vec![Cost::default(); keys.len()];
    let mut edges: BTreeMap<(usize, usize), Cost> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut seen_edges = HashSet::new();
    for s in &model.stacks {
        let ks: Vec<usize> = s
            .frames
            .iter()
            .map(|&fr| fn_key[model.frames[fr].function])
            .collect();
        seen.clear();
        seen_edges.clear();
        for (i, &k) in ks.iter().enumerate() {
            if seen.insert(k) {
                own[k].calls += s.count;
                own[k].ct += s.value;
            }
            if i > 0 && seen_edges.insert((ks[i - 1], k)) {
                let e = edges.entry((ks[i - 1], k)).or_default();
                e.calls += s.count;
                e.ct += s.value;
            }
        }
        if let Some(&leaf) = ks.last() {
            own[leaf].tt += s.value;
            if ks.len() > 1 {
                edges.entry((ks[ks.len() - 2], leaf)).or_default().tt += s.value;
            }
        }
    }
    let scale = match model.metric {
        Metric::Samples => model.interval_s,
        Metric::Ns => 1e-9,
        Metric::Bytes => 1.0,
    };
    let mut callers: Vec<Vec<(usize, Cost)>> = vec![Vec::new(); keys.len()];
    for (&(caller, callee), &c) in &edges {
        callers[callee].push((caller, c));
    }
    use marshal::Value as V;
    let key_value = |k: &Key| V::Tuple(vec![V::Str(k.0.clone()), V::Int(k.1), V::Str(k.2.clone())]);
    let cost_tuple = |c: &Cost| {
        let calls = V::Int(i64::try_from(c.calls).unwrap_or(i64::MAX));
        vec![
            calls.clone(),
            calls,
            V::Float(c.tt as f64 * scale),
            V::Float(c.ct as f64 * scale),
        ]
    };
    let mut entries = Vec::new();
    for (k, key) in keys.iter().enumerate() {
        let mut t = cost_tuple(&own[k]);
        let callers_dict = callers[k]
            .iter()
            .map(|(caller, c)| (key_value(&keys[*caller]), V::Tuple(cost_tuple(c))))
            .collect();
        t.push(V::Dict(callers_dict));
        entries.push((key_value(key), V::Tuple(t)));
    }
    V::Dict(entries)
}

/// Write the model as a pstats file.
pub fn write(model: &Model, out: &mut dyn Write) -> Result<(), ExportError> {
    let mut buf = Vec::new();
    marshal::write(&stats(model), &mut buf);
    out.write_all(&buf)?;
    Ok(())
}

pub mod marshal {
    //! Python's `marshal` serialization (version 4), the subset pstats files use.
    //!
    //! Each value is a type byte then its payload, little-endian: `i` int32; `l` long
    //! (int32 digit count, negative for negative numbers, then 15-bit digits as
    //! uint16, least significant first); `g` float64; `u` str (uint32 length, UTF-8);
    //! `)` small tuple (uint8 length, items) or `(` tuple (uint32 length, items);
    //! `{` dict (key, value pairs, closed by `0`).

    /// A marshal value.
    #[derive(Clone, Debug, PartialEq)]
    pub enum Value {
        /// An int.
        Int(i64),
        /// A float.
        Float(f64),
        /// A str.
        Str(String),
        /// A tuple.
        Tuple(Vec<Value>),
        /// A dict, in insertion order.
        Dict(Vec<(Value, Value)>),
    }

    /// Append the marshal bytes of `v` to `out`.
    pub fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Int(n) => {
                if let Ok(small) = i32::try_from(*n) {
                    out.push(b'i');
                    out.extend_from_slice(&small.to_le_bytes());
                } else {
                    let mut digits = Vec::new();
                    let mut m = n.unsigned_abs();
                    while m > 0 {
                        digits.push((m & 0x7fff) as u16);
                        m >>= 15;
                    }
                    let count = digits.len() as i32;
                    out.push(b'l');
                    let signed = if *n < 0 { -count } else { count };
                    out.extend_from_slice(&signed.to_le_bytes());
                    for d in digits {
                        out.extend_from_slice(&d.to_le_bytes());
                    }
                }
            }
            Value::Float(f) => {
                out.push(b'g');
                out.extend_from_slice(&f.to_le_bytes());
            }
            Value::Str(s) => {
                out.push(b'u');
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Tuple(items) => {
                if let Ok(n) = u8::try_from(items.len()) {
                    out.push(b')');
                    out.push(n);
                } else {
                    out.push(b'(');
                    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
                }
                for item in items {
                    write(item, out);
                }
            }
            Value::Dict(pairs) => {
                out.push(b'{');
                for (k, v) in pairs {
                    write(k, out);
                    write(v, out);
                }
                out.push(b'0');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::marshal::{Value, write as mwrite};
    use super::*;
    use crate::export::testutil::sample_profile;
    use crate::profile::stacks::StackFilter;

    fn bytes(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        mwrite(v, &mut out);
        out
    }

    #[test]
    fn marshal_matches_python() {
        // python3 -c "import marshal; print(marshal.dumps(2**40))" prints
        // b'\xec\x03\x00\x00\x00\x00\x00\x00\x00\x00\x04': 'l' with FLAG_REF (0x80),
        // digits of 2**40 in base 2**15: 0, 0, 1024.
        assert_eq!(
            bytes(&Value::Int(1 << 40)),
            b"l\x03\x00\x00\x00\x00\x00\x00\x00\x00\x04"
        );
        assert_eq!(bytes(&Value::Int(-(1 << 40)))[1..5], (-3i32).to_le_bytes());
        assert_eq!(bytes(&Value::Int(7)), b"i\x07\x00\x00\x00");
        assert_eq!(
            bytes(&Value::Float(0.5)),
            b"g\x00\x00\x00\x00\x00\x00\xe0\x3f"
        );
        assert_eq!(bytes(&Value::Str("é".into())), b"u\x02\x00\x00\x00\xc3\xa9");
        assert_eq!(
            bytes(&Value::Dict(vec![(
                Value::Tuple(vec![Value::Int(1)]),
                Value::Dict(vec![])
            )])),
            b"{)\x01i\x01\x00\x00\x00{00"
        );
    }

    #[test]
    fn costs_and_callers() {
        let p = sample_profile();
        let m = Model::new(&p, StackFilter::default());
        let Value::Dict(entries) = stats(&m) else {
            panic!("not a dict")
        };
        let find = |name: &str| {
            entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Tuple(t) if t[2] == Value::Str(name.into())))
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let Value::Tuple(a) = find("a") else { panic!() };
        // a: on 5 samples (3 + 2 recursive, counted once), self 5 → 0.05 s at 100 Hz.
        assert_eq!(a[1], Value::Int(5));
        assert_eq!(a[2], Value::Float(5.0 * 0.01));
        assert_eq!(a[3], Value::Float(5.0 * 0.01));
        let Value::Dict(callers) = &a[4] else {
            panic!()
        };
        assert_eq!(callers.len(), 2, "main and a itself call a");
        let Value::Tuple(run) = find("Runner.run") else {
            panic!()
        };
        assert_eq!(run[2], Value::Float(0.0));
        let key = entries
            .iter()
            .map(|(k, _)| k.clone())
            .find(|k| matches!(k, Value::Tuple(t) if t[2] == Value::Str("Runner.run".into())))
            .unwrap();
        assert_eq!(
            key,
            Value::Tuple(vec![
                Value::Str("app.py".into()),
                Value::Int(5),
                Value::Str("Runner.run".into())
            ])
        );
    }
}
