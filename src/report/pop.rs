//! POP efficiencies of an MPI run (docs/mpi.md): per rank, *useful* is the metric spent
//! outside MPI libraries (the modules `--view ranks` counts in `mpi_pct`) and outside
//! waits (a stack through a blocking call: `sched_yield`, `poll`, futex waits...);
//! *runtime* is the largest per-rank total. Then
//! - load balance = mean useful ÷ max useful,
//! - communication efficiency = max useful ÷ runtime,
//! - parallel efficiency = load balance × communication efficiency,
//!
//! for the whole run and per node (host). Only for sampled time (hotspots mode) with at
//! least two ranks: bytes faulted or off-CPU time are not time spent computing.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::profile::Profile;
use crate::profile::stacks::StackFilter;

/// Functions in which a sampled thread is waiting, not computing (busy-polling MPI
/// progress loops yield or poll through these).
const WAIT_FUNCTIONS: &[&str] = &[
    "sched_yield",
    "__sched_yield",
    "poll",
    "__poll",
    "ppoll",
    "epoll_wait",
    "select",
    "nanosleep",
    "clock_nanosleep",
    "__futex_abstimed_wait_common",
    "pthread_cond_wait",
    "pthread_barrier_wait",
    "sem_wait",
];

/// One rank's sampled time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RankTime {
    /// Rank.
    pub rank: u32,
    /// Host of its process.
    pub host: String,
    /// All its samples (metric).
    pub total: u64,
    /// Outside MPI libraries and waits.
    pub useful: u64,
}

/// POP's three efficiencies over a set of ranks (fractions, 0..1).
#[derive(Clone, Debug, PartialEq)]
pub struct Efficiencies {
    /// Ranks covered.
    pub ranks: usize,
    /// Mean useful ÷ max useful.
    pub load_balance: f64,
    /// Max useful ÷ runtime.
    pub communication_efficiency: f64,
    /// Their product.
    pub parallel_efficiency: f64,
}

impl Efficiencies {
    /// Over these ranks; None when there is nothing to measure.
    pub fn of(ranks: &[&RankTime]) -> Option<Efficiencies> {
        let max_useful = ranks.iter().map(|r| r.useful).max()?;
        let runtime = ranks.iter().map(|r| r.total).max()?;
        if max_useful == 0 || runtime == 0 {
            return None;
        }
        let mean = ranks.iter().map(|r| r.useful as f64).sum::<f64>() / ranks.len() as f64;
        let lb = mean / max_useful as f64;
        let ce = max_useful as f64 / runtime as f64;
        Some(Efficiencies {
            ranks: ranks.len(),
            load_balance: lb,
            communication_efficiency: ce,
            parallel_efficiency: lb * ce,
        })
    }

    fn json(&self) -> Value {
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({"ranks": self.ranks, "load_balance": r3(self.load_balance),
            "communication_efficiency": r3(self.communication_efficiency),
            "parallel_efficiency": r3(self.parallel_efficiency)})
    }

    fn text(&self) -> String {
        format!(
            "load balance {:.2}, communication efficiency {:.2}, parallel efficiency {:.2}",
            self.load_balance, self.communication_efficiency, self.parallel_efficiency
        )
    }
}

/// Total and useful time per rank (ranks passing the filter), sorted by rank.
pub fn rank_times(p: &Profile, filter: StackFilter) -> Vec<RankTime> {
    let mut acc: HashMap<u32, RankTime> = HashMap::new();
    for pr in &p.processes {
        if let Some(rank) = pr.rank
            && filter.selects_rank(Some(rank))
        {
            acc.entry(rank).or_insert_with(|| RankTime {
                rank,
                host: pr.host.clone(),
                ..Default::default()
            });
        }
    }
    // Whether a frame is MPI or a wait, once per frame.
    let not_useful: Vec<bool> = p
        .frames
        .iter()
        .map(|fr| {
            let f = &p.functions[fr.function];
            crate::mpi::is_mpi_module(&f.module) || WAIT_FUNCTIONS.contains(&f.name.as_str())
        })
        .collect();
    for s in p.weighted_stacks(filter) {
        let Some(r) = p.thread_rank(s.thread).and_then(|r| acc.get_mut(&r)) else {
            continue;
        };
        r.total += s.value;
        if !s.frames.iter().any(|&f| not_useful[f]) {
            r.useful += s.value;
        }
    }
    let mut v: Vec<RankTime> = acc.into_values().collect();
    v.sort_by_key(|r| r.rank);
    v
}

/// The run's and each node's efficiencies: None outside MPI, with fewer than two
/// ranks, or when the metric is not sampled time.
pub fn pop(
    p: &Profile,
    filter: StackFilter,
) -> Option<(Efficiencies, Vec<(String, Efficiencies)>)> {
    if p.metric() != "samples" {
        return None;
    }
    let times = rank_times(p, filter);
    if times.len() < 2 {
        return None;
    }
    let all: Vec<&RankTime> = times.iter().collect();
    let run = Efficiencies::of(&all)?;
    let mut by_host: BTreeMap<&str, Vec<&RankTime>> = BTreeMap::new();
    for t in &times {
        by_host.entry(t.host.as_str()).or_default().push(t);
    }
    let nodes = by_host
        .into_iter()
        .filter_map(|(h, v)| Some((h.to_string(), Efficiencies::of(&v)?)))
        .collect();
    Some((run, nodes))
}

/// The summary's JSON `pop` object, or None.
pub fn pop_json(p: &Profile, filter: StackFilter) -> Option<Value> {
    let (run, nodes) = pop(p, filter)?;
    let mut v = run.json();
    v["nodes"] = nodes
        .iter()
        .map(|(h, e)| {
            let mut n = e.json();
            n["host"] = json!(h);
            n
        })
        .collect::<Vec<_>>()
        .into();
    Some(v)
}

/// The summary's text lines, or "".
pub fn pop_text(p: &Profile, filter: StackFilter) -> String {
    let Some((run, nodes)) = pop(p, filter) else {
        return String::new();
    };
    let mut s = format!("  POP over {} ranks: {}\n", run.ranks, run.text());
    if nodes.len() > 1 {
        for (h, e) in nodes {
            s.push_str(&format!("    node {h} ({} ranks): {}\n", e.ranks, e.text()));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rank 2 computes 3T, the others T, then all wait: load balance 0.5.
    #[test]
    fn designed_efficiencies() {
        let t = |rank, useful, total| RankTime {
            rank,
            host: "n".into(),
            total,
            useful,
        };
        let v = [
            t(0, 100, 300),
            t(1, 100, 300),
            t(2, 300, 300),
            t(3, 100, 300),
        ];
        let refs: Vec<&RankTime> = v.iter().collect();
        let e = Efficiencies::of(&refs).unwrap();
        assert!((e.load_balance - 0.5).abs() < 1e-9);
        assert!((e.communication_efficiency - 1.0).abs() < 1e-9);
        assert!((e.parallel_efficiency - 0.5).abs() < 1e-9);
    }
}
