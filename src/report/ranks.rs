//! `--view ranks`: per MPI rank total, work (total less time in MPI libraries), %mean,
//! mpi% and idle.

use std::collections::HashMap;

use serde_json::json;

use super::ReportFormat;
use super::table::{csv_line, pct, round2};
use crate::profile::Profile;
use crate::profile::stacks::StackFilter;

/// `--view ranks`: `rank,host,pid,total,work,pct_of_mean,mpi_pct,idle`.
pub fn ranks(p: &Profile, format: ReportFormat, filter: StackFilter) -> String {
    let stacks = p.weighted_stacks(StackFilter {
        rank: None,
        ranks: None,
        ..filter
    });
    // Per process (a rank is a process tree's root).
    let mut acc: HashMap<usize, (u64, u64)> = HashMap::new();
    for s in &stacks {
        let proc_i = p.threads[s.thread].process;
        let in_mpi = s
            .frames
            .iter()
            .any(|&f| crate::mpi::is_mpi_module(&p.functions[p.frames[f].function].module));
        let e = acc.entry(proc_i).or_default();
        e.0 += s.value;
        if in_mpi {
            e.1 += s.value;
        }
    }
    // Group processes of one raw dir (one rank) together.
    let mut by_rank: HashMap<String, (Option<u32>, String, u32, u64, u64)> = HashMap::new();
    for (pi, proc) in p.processes.iter().enumerate() {
        if filter.has_rank_filter() && !filter.selects_rank(proc.rank) {
            continue;
        }
        let (t, m) = acc.get(&pi).copied().unwrap_or((0, 0));
        let e = by_rank.entry(proc.raw_dir.clone()).or_insert((
            proc.rank,
            proc.host.clone(),
            proc.pid,
            0,
            0,
        ));
        e.3 += t;
        e.4 += m;
        if let Some(root) = proc.raw_dir.rsplit('.').next().and_then(|s| s.parse().ok()) {
            e.2 = root;
        }
    }
    let mut rows: Vec<_> = by_rank.into_values().collect();
    rows.sort_by_key(|r| (r.0, r.2));
    let works: Vec<u64> = rows.iter().map(|r| r.3 - r.4).collect();
    let mean = if works.is_empty() {
        0.0
    } else {
        works.iter().sum::<u64>() as f64 / works.len() as f64
    };
    let mut csv = csv_line(&[
        "rank",
        "host",
        "pid",
        "total",
        "work",
        "pct_of_mean",
        "mpi_pct",
        "idle",
    ]);
    let mut text = format!(
        "Ranks by {}\n{:>5} {:>12} {:>8} {:>10} {:>10} {:>8} {:>6}  idle\n",
        p.metric(),
        "rank",
        "host",
        "pid",
        "total",
        "work",
        "%mean",
        "mpi%"
    );
    let mut js = Vec::new();
    for (r, work) in rows.iter().zip(works) {
        let pom = if mean > 0.0 {
            work as f64 * 100.0 / mean
        } else {
            0.0
        };
        let idle = pom < 10.0;
        let mpi_pct = pct(r.4, r.3);
        let rank = r.0.map(|x| x.to_string()).unwrap_or("-".into());
        csv.push_str(&csv_line(&[
            rank.clone(),
            r.1.clone(),
            r.2.to_string(),
            r.3.to_string(),
            work.to_string(),
            format!("{pom:.2}"),
            format!("{mpi_pct:.2}"),
            idle.to_string(),
        ]));
        text.push_str(&format!(
            "{:>5} {:>12} {:>8} {:>10} {:>10} {:>7.1}% {:>5.1}%  {}\n",
            rank, r.1, r.2, r.3, work, pom, mpi_pct, idle
        ));
        js.push(json!({"rank": r.0, "host": r.1, "pid": r.2, "total": r.3, "work": work, "pct_of_mean": round2(pom), "mpi_pct": round2(mpi_pct), "idle": idle}));
    }
    match format {
        ReportFormat::Text => text,
        ReportFormat::Csv => csv,
        ReportFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&json!({"metric": p.metric(), "ranks": js}))
                .unwrap_or_default()
        ),
    }
}
