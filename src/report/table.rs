//! What the views share: ranked rows of functions, lines or modules, their counter-group
//! columns, and their rendering as a text table, CSV or JSON; percentages and units.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::ReportFormat;
use crate::profile::Profile;
use crate::profile::stacks::{StackFilter, WeightedStack};

/// A ranked row of functions, lines or modules.
#[derive(Clone, Debug, Default)]
pub(super) struct Row {
    pub(super) function: String,
    pub(super) module: String,
    pub(super) file: String,
    pub(super) line: Option<u32>,
    pub(super) self_value: u64,
    pub(super) total_value: u64,
    /// Counter-group columns (see [`GroupColumns`]): self counts of each member, then
    /// `ipc` when present; None where not computable.
    pub(super) extra: Vec<Option<f64>>,
}

/// The extra columns of hotspots and lines when the samples read a counter group: the
/// self count of every group member (events with counts but no samples of their
/// own), then `ipc` (instructions / cycles over the self samples) when both cycles
/// and instructions were read. Empty without a group: the views are unchanged.
#[derive(Clone, Debug, Default)]
pub(super) struct GroupColumns {
    /// Column names (`page_faults`, `cache_misses`, `ipc`).
    pub(super) names: Vec<String>,
    /// Event index of each member column.
    pub(super) members: Vec<usize>,
    /// (cycles, instructions) event indices when both were read.
    pub(super) ipc: Option<(usize, usize)>,
}

impl GroupColumns {
    pub(super) fn of(p: &Profile) -> GroupColumns {
        if p.counts.is_empty() {
            return GroupColumns::default();
        }
        let sampled: HashSet<usize> = p.samples.iter().map(|s| s.event).collect();
        let counted: std::collections::BTreeSet<usize> = p.counts.iter().map(|c| c.event).collect();
        let members: Vec<usize> = counted
            .iter()
            .copied()
            .filter(|e| !sampled.contains(e))
            .collect();
        let find = |names: &[&str]| {
            counted.iter().copied().find(|&e| {
                p.events
                    .get(e)
                    .is_some_and(|x| names.contains(&x.name.as_str()))
            })
        };
        let ipc = find(&["cycles", "cpu-cycles"]).zip(find(&["instructions"]));
        let mut names: Vec<String> = members
            .iter()
            .map(|&e| column_name(p.events.get(e).map(|x| x.name.as_str()).unwrap_or("event")))
            .collect();
        if ipc.is_some() {
            names.push("ipc".into());
        }
        GroupColumns {
            names,
            members,
            ipc,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Per key of the leaf frame: the self count of every event involved.
    pub(super) fn self_counts<K: std::hash::Hash + Eq>(
        &self,
        p: &Profile,
        filter: StackFilter,
        key: impl Fn(usize) -> K,
    ) -> HashMap<K, HashMap<usize, f64>> {
        let mut acc: HashMap<K, HashMap<usize, f64>> = HashMap::new();
        if self.is_empty() {
            return acc;
        }
        for (frames, event, value) in p.weighted_counts(filter) {
            if let Some(&leaf) = frames.last() {
                *acc.entry(key(leaf)).or_default().entry(event).or_default() += value;
            }
        }
        acc
    }

    /// The extra cells of a row from its self counts.
    pub(super) fn cells(&self, counts: Option<&HashMap<usize, f64>>) -> Vec<Option<f64>> {
        if self.is_empty() {
            return Vec::new();
        }
        let get = |e: usize| counts.and_then(|c| c.get(&e)).copied().unwrap_or(0.0);
        let mut v: Vec<Option<f64>> = self.members.iter().map(|&e| Some(get(e))).collect();
        if let Some((cyc, ins)) = self.ipc {
            let c = get(cyc);
            v.push((c > 0.0).then(|| get(ins) / c));
        }
        v
    }

    /// A cell as text: counts as integers, ipc with two decimals, empty when unknown.
    pub(super) fn format(&self, i: usize, v: Option<f64>) -> String {
        match v {
            None => String::new(),
            Some(x) if self.ipc.is_some() && i + 1 == self.names.len() => format!("{x:.2}"),
            Some(x) => format!("{}", x.round() as u64),
        }
    }

    pub(super) fn json(&self, i: usize, v: Option<f64>) -> Value {
        match v {
            None => Value::Null,
            Some(x) if self.ipc.is_some() && i + 1 == self.names.len() => json!(round2(x)),
            Some(x) => json!(x.round() as u64),
        }
    }
}

/// `page-faults` → `page_faults`, `MEM_LOAD_RETIRED.L3_MISS` → `mem_load_retired_l3_miss`.
fn column_name(event: &str) -> String {
    let s: String = event
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.trim_matches('_').to_string()
}

pub(super) fn pct(v: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        v as f64 * 100.0 / total as f64
    }
}

fn metric_label(p: &Profile) -> &str {
    p.metric()
}

/// Group stacks by a key of each frame; self goes to the leaf's key, total to every
/// distinct key on the stack (once per stack, so recursion is not double counted).
pub(crate) fn rank_by<K: std::hash::Hash + Eq + Clone>(
    stacks: &[WeightedStack],
    key: impl Fn(usize) -> K,
) -> HashMap<K, (u64, u64, u64)> {
    let mut acc: HashMap<K, (u64, u64, u64)> = HashMap::new();
    let mut seen = HashSet::new();
    for s in stacks {
        seen.clear();
        if let Some(&leaf) = s.frames.last() {
            let e = acc.entry(key(leaf)).or_default();
            e.0 += s.value;
        }
        for &f in &s.frames {
            let k = key(f);
            if seen.insert(k.clone()) {
                let e = acc.entry(k).or_default();
                e.1 += s.value;
                e.2 += s.count;
            }
        }
    }
    acc
}

pub(super) fn function_rows(p: &Profile, stacks: &[WeightedStack]) -> Vec<Row> {
    function_rows_with(p, stacks, &GroupColumns::default(), StackFilter::default())
}

pub(super) fn function_rows_with(
    p: &Profile,
    stacks: &[WeightedStack],
    cols: &GroupColumns,
    filter: StackFilter,
) -> Vec<Row> {
    let acc = rank_by(stacks, |f| p.frames[f].function);
    let counts = cols.self_counts(p, filter, |f| p.frames[f].function);
    let mut rows: Vec<Row> = acc
        .into_iter()
        .map(|(fi, (s, t, _))| {
            let f = &p.functions[fi];
            Row {
                function: f.name.clone(),
                module: f.module.clone(),
                file: f.file.clone().unwrap_or_default(),
                line: f.start_line,
                self_value: s,
                total_value: t,
                extra: cols.cells(counts.get(&fi)),
            }
        })
        .collect();
    sort_rows(&mut rows);
    rows
}

pub(super) fn sort_rows(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        b.self_value
            .cmp(&a.self_value)
            .then(b.total_value.cmp(&a.total_value))
            .then(a.function.cmp(&b.function))
            // The same name in two modules (`call_init` of libc and ld.so): stable output.
            .then_with(|| (&a.module, &a.file, a.line).cmp(&(&b.module, &b.file, b.line)))
    });
}

/// One CSV record (quoted where needed), with its newline.
pub(crate) fn csv_line<S: AsRef<[u8]>>(fields: &[S]) -> String {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let _ = w.write_record(fields);
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Sum of the metric over the stacks a view shows (its rank, the program's samples).
pub(super) fn stacks_total(stacks: &[WeightedStack]) -> u64 {
    stacks.iter().map(|s| s.value).sum()
}

/// The title of the modules view, whose rows are modules: its text table names each
/// once (CSV and JSON keep the functions' columns, `function` and `module` both the
/// module, docs/results-format.md).
pub(super) const MODULES: &str = "Modules";

/// Rows as a text table, CSV or JSON, with the counter-group columns `cols` (none:
/// `GroupColumns::default()`).
pub(super) fn format_rows(
    p: &Profile,
    rows: &[Row],
    total: u64,
    format: ReportFormat,
    top: usize,
    title: &str,
    cols: &GroupColumns,
) -> String {
    // Percentages are of the samples the view shows (`total`, from its stacks): its
    // rank's, and the program's only (launcher overhead is shown apart).
    let total = total.max(rows_total(rows));
    let rows = &rows[..rows.len().min(top)];
    match format {
        ReportFormat::Csv => {
            let mut header: Vec<String> = [
                "function",
                "module",
                "file",
                "line",
                "self",
                "self_pct",
                "total",
                "total_pct",
            ]
            .map(String::from)
            .to_vec();
            header.extend(cols.names.iter().cloned());
            let mut s = csv_line(&header);
            for r in rows {
                let mut fields = vec![
                    r.function.clone(),
                    r.module.clone(),
                    r.file.clone(),
                    r.line.map(|l| l.to_string()).unwrap_or_default(),
                    r.self_value.to_string(),
                    format!("{:.2}", pct(r.self_value, total)),
                    r.total_value.to_string(),
                    format!("{:.2}", pct(r.total_value, total)),
                ];
                fields.extend(r.extra.iter().enumerate().map(|(i, v)| cols.format(i, *v)));
                s.push_str(&csv_line(&fields));
            }
            s
        }
        ReportFormat::Json => {
            let v: Vec<Value> = rows
                .iter()
                .map(|r| {
                    let mut o = json!({"function": r.function, "module": r.module, "file": r.file,
                           "line": r.line, "self": r.self_value,
                           "self_pct": round2(pct(r.self_value, total)),
                           "total": r.total_value,
                           "total_pct": round2(pct(r.total_value, total))});
                    for (i, (name, x)) in cols.names.iter().zip(&r.extra).enumerate() {
                        o[name.as_str()] = cols.json(i, *x);
                    }
                    o
                })
                .collect();
            let mut s = serde_json::to_string_pretty(
                &json!({"metric": metric_label(p), "total": total, "rows": v}),
            )
            .unwrap_or_default();
            s.push('\n');
            s
        }
        ReportFormat::Text => {
            let extra_head: String = cols
                .names
                .iter()
                .map(|n| format!(" {n:>w$}", w = n.len().max(12)))
                .collect();
            // A row's name: a module alone in the modules view, else the function with
            // its module and place.
            let (name_head, name_of): (&str, fn(&Row) -> String) = if title == MODULES {
                ("module", |r| r.module.clone())
            } else {
                ("function (module) file:line", function_label)
            };
            let mut s = format!(
                "{title} by self {} (total {})\n{:>8} {:>7} {:>8} {:>7}{extra_head}  {name_head}\n",
                metric_label(p),
                human(total, metric_label(p)),
                "self",
                "self%",
                "total",
                "total%",
            );
            for r in rows {
                let extra: String = r
                    .extra
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let w = cols.names.get(i).map_or(12, |n| n.len().max(12));
                        format!(" {:>w$}", cols.format(i, *v))
                    })
                    .collect();
                s.push_str(&format!(
                    "{:>8} {:>6.2}% {:>8} {:>6.2}%{extra}  {}\n",
                    human(r.self_value, metric_label(p)),
                    pct(r.self_value, total),
                    human(r.total_value, metric_label(p)),
                    pct(r.total_value, total),
                    name_of(r),
                ));
            }
            s
        }
    }
}

/// `function (module) file:line` of a row (the file alone without a line, nothing
/// without a file).
fn function_label(r: &Row) -> String {
    let place = match (&r.file, r.line) {
        (f, Some(l)) if !f.is_empty() => format!(" {f}:{l}"),
        (f, None) if !f.is_empty() => format!(" {f}"),
        _ => String::new(),
    };
    format!("{} ({}){place}", r.function, r.module)
}

fn rows_total(rows: &[Row]) -> u64 {
    rows.iter().map(|r| r.self_value).sum()
}

/// "1 process", "3 processes".
pub(crate) fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Bytes with a binary unit (`B` to `TiB`, one decimal above bytes), `sep` between
/// the number and the unit.
pub(crate) fn binary_bytes(v: u64, sep: &str) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v}{sep}B")
    } else {
        format!("{x:.1}{sep}{}", UNITS[u])
    }
}

/// A value in the metric's unit, short.
pub fn human(v: u64, metric: &str) -> String {
    match metric {
        "bytes" => binary_bytes(v, ""),
        "ns" => {
            let x = v as f64;
            if x >= 1e9 {
                format!("{:.2}s", x / 1e9)
            } else if x >= 1e6 {
                format!("{:.1}ms", x / 1e6)
            } else if x >= 1e3 {
                format!("{:.1}us", x / 1e3)
            } else {
                format!("{v}ns")
            }
        }
        _ => v.to_string(),
    }
}
