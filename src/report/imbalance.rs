//! `--view imbalance`: how each function (or source line, `--by line`) varies across MPI
//! ranks, as TAU's mean/std per function and HPCToolkit's `hpcprof -M stats` give it.
//!
//! Per function, the inclusive value (every stack through it, once per stack) is summed
//! per rank; over the ranks of the profile (after `--rank`/`--ranks`) come `total`,
//! `mean`, `min` and `min_rank`, `max` and `max_rank`, `std` (population standard
//! deviation), `cov` (std ÷ mean) and `imbalance` = max − mean, all in the mode's unit.
//! A rank with no samples in a function counts as 0. Rows are sorted by imbalance.
//! Outside MPI all processes form one group, so imbalance is 0.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::ReportFormat;
use crate::profile::Profile;
use crate::profile::stacks::StackFilter;

/// Rows of `--view imbalance`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ImbalanceBy {
    /// One row per function.
    #[default]
    Function,
    /// One row per source line.
    Line,
}

/// CSV columns, in order (DESIGN section 2).
pub const COLUMNS: [&str; 13] = [
    "function",
    "module",
    "file",
    "line",
    "total",
    "mean",
    "min",
    "min_rank",
    "max",
    "max_rank",
    "std",
    "cov",
    "imbalance",
];

/// One row: a function or line with its statistics across ranks.
#[derive(Clone, Debug, PartialEq)]
pub struct ImbalanceRow {
    /// Function name.
    pub function: String,
    /// Module.
    pub module: String,
    /// Source file.
    pub file: String,
    /// First line (by function) or the line (by line).
    pub line: Option<u32>,
    /// Sum over ranks.
    pub total: u64,
    /// Mean over ranks.
    pub mean: f64,
    /// Smallest per-rank value and the lowest rank that has it.
    pub min: u64,
    /// Rank of `min` (None outside MPI).
    pub min_rank: Option<u32>,
    /// Largest per-rank value.
    pub max: u64,
    /// Rank of `max`.
    pub max_rank: Option<u32>,
    /// Population standard deviation.
    pub std: f64,
    /// Coefficient of variation, std ÷ mean (0 when the mean is 0).
    pub cov: f64,
    /// max − mean.
    pub imbalance: f64,
}

/// The ranks a filtered view covers, sorted (None stands for non-MPI processes).
pub fn selected_ranks(p: &Profile, filter: StackFilter) -> Vec<Option<u32>> {
    let mut ranks: Vec<Option<u32>> = p
        .processes
        .iter()
        .map(|x| x.rank)
        .filter(|&r| !filter.has_rank_filter() || filter.selects_rank(r))
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    ranks
}

/// Statistics per function (or line) across the selected ranks, sorted by imbalance.
pub fn imbalance_rows(p: &Profile, filter: StackFilter, by: ImbalanceBy) -> Vec<ImbalanceRow> {
    let ranks = selected_ranks(p, filter);
    let rank_index: HashMap<Option<u32>, usize> =
        ranks.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    // Key: (function, file, line) by line; (function, None, None) by function.
    type Key = (usize, Option<String>, Option<u32>);
    let key = |f: usize| -> Key {
        let fr = &p.frames[f];
        match by {
            ImbalanceBy::Function => (fr.function, None, None),
            ImbalanceBy::Line => (fr.function, fr.file.clone(), fr.line),
        }
    };
    // Sparse per key: rank index → value (most functions run on few ranks at scale).
    let mut acc: HashMap<Key, HashMap<usize, u64>> = HashMap::new();
    let mut seen: HashSet<Key> = HashSet::new();
    for s in p.weighted_stacks(filter) {
        let Some(&ri) = rank_index.get(&p.thread_rank(s.thread)) else {
            continue;
        };
        seen.clear();
        for &f in &s.frames {
            let k = key(f);
            if seen.insert(k.clone()) {
                *acc.entry(k).or_default().entry(ri).or_default() += s.value;
            }
        }
    }
    let n = ranks.len().max(1);
    let mut rows: Vec<ImbalanceRow> = acc
        .into_iter()
        .map(|((fi, file, line), per_rank)| {
            let value = |i: usize| per_rank.get(&i).copied().unwrap_or(0);
            let total: u64 = per_rank.values().sum();
            let mean = total as f64 / n as f64;
            // Lowest rank index wins ties, so min_rank/max_rank are stable.
            let (mut min_i, mut max_i) = (0, 0);
            for i in 1..n {
                if value(i) < value(min_i) {
                    min_i = i;
                }
                if value(i) > value(max_i) {
                    max_i = i;
                }
            }
            let var = (0..n)
                .map(|i| (value(i) as f64 - mean).powi(2))
                .sum::<f64>()
                / n as f64;
            let std = var.sqrt();
            let f = &p.functions[fi];
            let (file, line) = match by {
                ImbalanceBy::Function => (f.file.clone(), f.start_line),
                ImbalanceBy::Line => (file.or_else(|| f.file.clone()), line),
            };
            ImbalanceRow {
                function: f.name.clone(),
                module: f.module.clone(),
                file: file.unwrap_or_default(),
                line,
                total,
                mean,
                min: value(min_i),
                min_rank: ranks.get(min_i).copied().flatten(),
                max: value(max_i),
                max_rank: ranks.get(max_i).copied().flatten(),
                std,
                cov: if mean > 0.0 { std / mean } else { 0.0 },
                imbalance: value(max_i) as f64 - mean,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.imbalance
            .total_cmp(&a.imbalance)
            .then(b.total.cmp(&a.total))
            .then_with(|| a.function.cmp(&b.function))
            .then(a.line.cmp(&b.line))
    });
    rows
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn rank_text(r: Option<u32>) -> String {
    r.map(|r| r.to_string()).unwrap_or_default()
}

/// `--view imbalance`.
pub fn imbalance(
    p: &Profile,
    format: ReportFormat,
    top: usize,
    filter: StackFilter,
    by: ImbalanceBy,
) -> String {
    let ranks = selected_ranks(p, filter).len();
    let rows = imbalance_rows(p, filter, by);
    let rows = &rows[..rows.len().min(top)];
    let metric = p.metric();
    match format {
        ReportFormat::Csv => {
            let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
            let _ = w.write_record(COLUMNS);
            for r in rows {
                let _ = w.write_record([
                    r.function.clone(),
                    r.module.clone(),
                    r.file.clone(),
                    r.line.map(|l| l.to_string()).unwrap_or_default(),
                    r.total.to_string(),
                    format!("{:.2}", r.mean),
                    r.min.to_string(),
                    rank_text(r.min_rank),
                    r.max.to_string(),
                    rank_text(r.max_rank),
                    format!("{:.2}", r.std),
                    format!("{:.3}", r.cov),
                    format!("{:.2}", r.imbalance),
                ]);
            }
            String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
        }
        ReportFormat::Json => {
            let v: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({"function": r.function, "module": r.module, "file": r.file,
                        "line": r.line, "total": r.total, "mean": r2(r.mean), "min": r.min,
                        "min_rank": r.min_rank, "max": r.max, "max_rank": r.max_rank,
                        "std": r2(r.std), "cov": (r.cov * 1000.0).round() / 1000.0,
                        "imbalance": r2(r.imbalance)})
                })
                .collect();
            let by = match by {
                ImbalanceBy::Function => "function",
                ImbalanceBy::Line => "line",
            };
            format!(
                "{}\n",
                serde_json::to_string_pretty(
                    &json!({"metric": metric, "ranks": ranks, "by": by, "rows": v})
                )
                .unwrap_or_default()
            )
        }
        ReportFormat::Text => {
            let h = |x: f64| super::table::human(x.round() as u64, metric);
            let mut s = format!(
                "Imbalance across {ranks} ranks by inclusive {metric} (imbalance = max - mean)\n{:>9} {:>9} {:>9} {:>5} {:>9} {:>5} {:>9} {:>6}  function (module) file:line\n",
                "imbalance", "mean", "min", "rank", "max", "rank", "std", "cov"
            );
            for r in rows {
                let loc = match (r.file.as_str(), r.line) {
                    ("", _) => String::new(),
                    (f, Some(l)) => format!(" {f}:{l}"),
                    (f, None) => format!(" {f}"),
                };
                s.push_str(&format!(
                    "{:>9} {:>9} {:>9} {:>5} {:>9} {:>5} {:>9} {:>6.3}  {} ({}){loc}\n",
                    h(r.imbalance),
                    h(r.mean),
                    h(r.min as f64),
                    rank_text(r.min_rank),
                    h(r.max as f64),
                    rank_text(r.max_rank),
                    h(r.std),
                    r.cov,
                    r.function,
                    r.module,
                ));
            }
            s
        }
    }
}
