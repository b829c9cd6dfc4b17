//! `--view threads`: threads by total.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::ReportFormat;
use super::table::{csv_line, human, pct, round2};
use crate::profile::Profile;
use crate::profile::stacks::StackFilter;

/// `--view threads`: `pid,tid,name,rank,total,total_pct`.
pub fn threads(p: &Profile, format: ReportFormat, top: usize, filter: StackFilter) -> String {
    let stacks = p.weighted_stacks(filter);
    let mut acc: HashMap<usize, u64> = HashMap::new();
    for s in &stacks {
        *acc.entry(s.thread).or_default() += s.value;
    }
    let total: u64 = acc.values().sum();
    let mut rows: Vec<(usize, u64)> = acc.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.truncate(top);
    let info = |t: usize| {
        let th = &p.threads[t];
        let pr = &p.processes[th.process];
        (pr.pid, th.tid, th.name.clone(), pr.rank)
    };
    match format {
        ReportFormat::Csv => {
            let mut s = csv_line(&["pid", "tid", "name", "rank", "total", "total_pct"]);
            for (t, v) in rows {
                let (pid, tid, name, rank) = info(t);
                s.push_str(&csv_line(&[
                    pid.to_string(),
                    tid.to_string(),
                    name,
                    rank.map(|r| r.to_string()).unwrap_or_default(),
                    v.to_string(),
                    format!("{:.2}", pct(v, total)),
                ]));
            }
            s
        }
        ReportFormat::Json => {
            let v: Vec<Value> = rows
                .into_iter()
                .map(|(t, v)| {
                    let (pid, tid, name, rank) = info(t);
                    json!({"pid": pid, "tid": tid, "name": name, "rank": rank, "total": v,
                           "total_pct": round2(pct(v, total))})
                })
                .collect();
            format!(
                "{}\n",
                serde_json::to_string_pretty(
                    &json!({"metric": p.metric(), "total": total, "rows": v})
                )
                .unwrap_or_default()
            )
        }
        ReportFormat::Text => {
            let mut s = format!(
                "Threads by {} (total {})\n{:>8} {:>8} {:>5} {:>10} {:>7}  name\n",
                p.metric(),
                human(total, p.metric()),
                "pid",
                "tid",
                "rank",
                "total",
                "total%"
            );
            for (t, v) in rows {
                let (pid, tid, name, rank) = info(t);
                s.push_str(&format!(
                    "{:>8} {:>8} {:>5} {:>10} {:>6.2}%  {}\n",
                    pid,
                    tid,
                    rank.map(|r| r.to_string()).unwrap_or("-".into()),
                    human(v, p.metric()),
                    pct(v, total),
                    name
                ));
            }
            s
        }
    }
}
