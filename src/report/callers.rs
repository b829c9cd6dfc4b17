//! `--view callers`: for each top function, who calls it and what it calls.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::ReportFormat;
use super::table::{csv_line, function_rows, pct};
use crate::profile::Profile;
use crate::profile::stacks::StackFilter;

/// `--view callers`: for each top function, who calls it and what it calls.
pub fn callers(p: &Profile, format: ReportFormat, top: usize, filter: StackFilter) -> String {
    let stacks = p.weighted_stacks(filter);
    let rows = function_rows(p, &stacks);
    let total: u64 = stacks.iter().map(|s| s.value).sum();
    let name_of = |fi: usize| p.functions[fi].name.clone();
    let index: HashMap<String, usize> = p
        .functions
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.clone(), i))
        .collect();
    let mut out_json = Vec::new();
    let mut text = String::new();
    let mut csv = csv_line(&["function", "relation", "other", "value", "pct"]);
    for r in rows.iter().take(top) {
        let Some(&fi) = index.get(&r.function) else {
            continue;
        };
        let mut callers: HashMap<usize, u64> = HashMap::new();
        let mut callees: HashMap<usize, u64> = HashMap::new();
        for s in &stacks {
            let funcs: Vec<usize> = s.frames.iter().map(|&f| p.frames[f].function).collect();
            let mut seen_caller = HashSet::new();
            let mut seen_callee = HashSet::new();
            for (i, &f) in funcs.iter().enumerate() {
                if f != fi {
                    continue;
                }
                if i > 0 && seen_caller.insert(funcs[i - 1]) {
                    *callers.entry(funcs[i - 1]).or_default() += s.value;
                }
                if i + 1 < funcs.len() && seen_callee.insert(funcs[i + 1]) {
                    *callees.entry(funcs[i + 1]).or_default() += s.value;
                }
            }
        }
        let sorted = |m: HashMap<usize, u64>| {
            let mut v: Vec<(usize, u64)> = m.into_iter().collect();
            // Ties in the function table's order: the map's order is random.
            v.sort_by_key(|x| (std::cmp::Reverse(x.1), x.0));
            v
        };
        let (callers, callees) = (sorted(callers), sorted(callees));
        text.push_str(&format!(
            "{} ({})  self {:.2}%  total {:.2}%\n",
            r.function,
            r.module,
            pct(r.self_value, total),
            pct(r.total_value, total)
        ));
        for (arrow, relation, edges) in [("<-", "caller", &callers), ("->", "callee", &callees)] {
            for (c, v) in edges {
                let share = pct(*v, total);
                text.push_str(&format!("    {arrow} {share:>6.2}%  {}\n", name_of(*c)));
                csv.push_str(&csv_line(&[
                    r.function.clone(),
                    relation.into(),
                    name_of(*c),
                    v.to_string(),
                    format!("{share:.2}"),
                ]));
            }
        }
        out_json.push(json!({
            "function": r.function, "module": r.module, "self": r.self_value, "total": r.total_value,
            "callers": callers.iter().map(|(c, v)| json!({"function": name_of(*c), "value": v})).collect::<Vec<_>>(),
            "callees": callees.iter().map(|(c, v)| json!({"function": name_of(*c), "value": v})).collect::<Vec<_>>(),
        }));
    }
    match format {
        ReportFormat::Text => text,
        ReportFormat::Csv => csv,
        ReportFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(
                &json!({"metric": p.metric(), "total": total, "functions": out_json})
            )
            .unwrap_or_default()
        ),
    }
}
