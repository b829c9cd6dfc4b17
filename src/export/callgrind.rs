//! callgrind profile format (valgrind's `docs/callgrind-format`), read by
//! `callgrind_annotate`, KCachegrind and QCachegrind.
//!
//! ```text
//! # callgrind format
//! version: 1
//! creator: hwprof 0.1.0
//! cmd: ./prog
//! positions: line
//! events: Samples
//!
//! ob=(1) prog
//! fl=(1) prog.c
//! fn=(1) main
//! cob=(1)
//! cfl=(1)
//! cfn=(2) a
//! calls=5 20
//! 11 5
//!
//! fn=(2)
//! 21 5
//!
//! totals: 8
//! ```
//!
//! - One event, the mode's metric: `Samples`, `Bytes` or `Wait_ns`.
//! - A function is (`ob` = module, `fl` = source file or `???`, `fn` = name); Python
//!   functions have `ob=python` and their qualified name. Names are compressed with
//!   `(id)`.
//! - Self cost: at the leaf frame's source line (0 if unknown).
//! - Calls: `calls=<samples> <callee first line>` then `<call-site line> <inclusive
//!   cost>`. A stack's cost is passed down once per function, from the function's
//!   deepest occurrence on the stack, so that inclusive costs stay right with
//!   recursion (a recursive edge `a → … → a` is therefore not listed).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use super::{ExportError, Metric, Model};
use crate::profile::FrameKind;

#[derive(Default)]
struct FnCosts {
    self_cost: BTreeMap<u32, u64>,
    /// (call-site line, callee) → (calls, inclusive).
    calls: BTreeMap<(u32, usize), (u64, u64)>,
}

/// callgrind's identity of a function: (object, file, name).
fn ident(model: &Model, function: usize) -> (String, String, String) {
    let f = &model.functions[function].function;
    let ob = match f.kind {
        FrameKind::Python => "python".to_string(),
        _ if f.module.is_empty() => "???".to_string(),
        _ => super::one_line(&f.module),
    };
    let fl = f
        .file
        .as_deref()
        .map(super::one_line)
        .unwrap_or_else(|| "???".into());
    (ob, fl, super::one_line(&f.name))
}

struct Names {
    ids: HashMap<String, usize>,
}

impl Names {
    /// `(id) name` the first time, `(id)` after.
    fn get(&mut self, name: &str) -> String {
        if let Some(id) = self.ids.get(name) {
            return format!("({id})");
        }
        let id = self.ids.len() + 1;
        self.ids.insert(name.to_string(), id);
        format!("({id}) {name}")
    }
}

/// Write the model in callgrind format.
pub fn write(model: &Model, out: &mut dyn Write) -> Result<(), ExportError> {
    // Merge functions with the same callgrind identity.
    let mut idents: Vec<(String, String, String)> = Vec::new();
    let mut ident_ids: HashMap<(String, String, String), usize> = HashMap::new();
    let fn_id: Vec<usize> = (0..model.functions.len())
        .map(|f| {
            let id = ident(model, f);
            *ident_ids.entry(id.clone()).or_insert_with(|| {
                idents.push(id);
                idents.len() - 1
            })
        })
        .collect();
    let start_line: Vec<u32> = {
        let mut v = vec![0; idents.len()];
        for (f, mf) in model.functions.iter().enumerate() {
            if let Some(l) = mf.function.start_line {
                v[fn_id[f]] = l;
            }
        }
        v
    };
    let mut costs: Vec<FnCosts> = (0..idents.len()).map(|_| FnCosts::default()).collect();
    let mut total = 0u64;
    let mut deepest: HashMap<usize, usize> = HashMap::new();
    for s in &model.stacks {
        total += s.value;
        let ids: Vec<usize> = s
            .frames
            .iter()
            .map(|&fr| fn_id[model.frames[fr].function])
            .collect();
        let Some((&leaf_frame, _)) = s.frames.split_last() else {
            continue;
        };
        let leaf_line = model.frames[leaf_frame].line.unwrap_or(0);
        let leaf = ids[ids.len() - 1];
        *costs[leaf].self_cost.entry(leaf_line).or_default() += s.value;
        deepest.clear();
        for (i, &id) in ids.iter().enumerate() {
            deepest.insert(id, i);
        }
        for i in 0..ids.len().saturating_sub(1) {
            let caller = ids[i];
            if deepest.get(&caller) != Some(&i) {
                continue; // not the deepest occurrence
            }
            let site = model.frames[s.frames[i]].line.unwrap_or(0);
            let e = costs[caller].calls.entry((site, ids[i + 1])).or_default();
            e.0 += s.count;
            e.1 += s.value;
        }
    }
    let event = match model.metric {
        Metric::Samples => "Samples",
        Metric::Bytes => "Bytes",
        Metric::Ns => "Wait_ns",
    };
    let mut w = std::io::BufWriter::new(out);
    writeln!(w, "# callgrind format")?;
    writeln!(w, "version: 1")?;
    writeln!(w, "creator: hwprof {}", env!("CARGO_PKG_VERSION"))?;
    if !model.command.is_empty() {
        writeln!(w, "cmd: {}", super::one_line(&model.command))?;
    }
    writeln!(w, "desc: {}", model.title())?;
    writeln!(w, "positions: line")?;
    writeln!(w, "events: {event}")?;
    writeln!(w)?;
    let mut obs = Names {
        ids: HashMap::new(),
    };
    let mut fls = Names {
        ids: HashMap::new(),
    };
    let mut fns = Names {
        ids: HashMap::new(),
    };
    for (id, c) in costs.iter().enumerate() {
        if c.self_cost.is_empty() && c.calls.is_empty() {
            continue;
        }
        let (ob, fl, name) = &idents[id];
        writeln!(w, "ob={}", obs.get(ob))?;
        writeln!(w, "fl={}", fls.get(fl))?;
        writeln!(w, "fn={}", fns.get(name))?;
        for (line, v) in &c.self_cost {
            writeln!(w, "{line} {v}")?;
        }
        for (&(site, callee), &(calls, incl)) in &c.calls {
            let (cob, cfl, cfn) = &idents[callee];
            writeln!(w, "cob={}", obs.get(cob))?;
            writeln!(w, "cfl={}", fls.get(cfl))?;
            writeln!(w, "cfn={}", fns.get(cfn))?;
            writeln!(w, "calls={calls} {}", start_line[callee])?;
            writeln!(w, "{site} {incl}")?;
        }
        writeln!(w)?;
    }
    writeln!(w, "totals: {total}")?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::written_sample_text;

    #[test]
    fn self_costs_sum_to_total_and_recursion_is_not_doubled() {
        let text = written_sample_text(write);
        assert!(text.contains("totals: 8\n"), "{text}");
        // main calls a with 5 samples inclusive (3 + 2 recursive), at line 11.
        assert!(text.contains("calls=5 20\n11 5\n"), "{text}");
        // a's self cost: 3 at line 21 (frames are at start_line + 1) plus 2 recursive.
        assert!(
            text.contains("cfn=(2) a\n") && text.contains("fn=(2)\n21 5\n"),
            "{text}"
        );
        assert!(
            !text.contains("calls=2 20"),
            "recursive edge listed: {text}"
        );
    }
}
