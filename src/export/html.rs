//! One self-contained HTML report: no network, no external script or style; open the
//! file in any browser, from `file://` too.
//!
//! This module is the data builder: it turns the profile into one JSON document the
//! page renders. The page itself is plain JavaScript and CSS with no build step,
//! kept beside this file (`html/template.html`, `html/report.css`, `html/report.js`)
//! and embedded with `include_str!`. `docs/exports.md` describes what the page shows.
//!
//! The JSON (`<script type="application/json" id="hwprof-data">`):
//! - `summary`: the `--view summary` JSON (command, mode, duration, samples, events
//!   with their fallbacks, lost samples, peak RSS...), plus `notices` (the run's
//!   notices) and `title`;
//! - `functions`: `{name, module, kind}` columns (kind `n` native, `p` Python,
//!   `k` kernel, `o` the "(pruned)" node);
//! - `nodes`: the call tree by function, `{parent, fn}` columns (parent -1 at the
//!   root); the page folds it client-side for its all/Python/native toggle, with the
//!   rules of `--frames` (DESIGN section 2);
//! - `weights`: `[node, count, value]` triples, the samples whose leaf is `node`;
//! - `timeline` (absent for profiles without one): `start_ns`, `bucket_ns`,
//!   `buckets`, `tracks` (labels: threads, or ranks in MPI runs), `track_counts`
//!   (samples per track and bucket), and `rows`, `[node, bucket, count]` triples
//!   whose buckets are `row_merge` buckets wide;
//! - `lines`: the hottest source lines with the text around them;
//! - `rss`, `ranks`, `heat`, `waits` (with `wait_classes` and `wait_objects`, locks
//!   mode), `counters` where the mode has them;
//! - `diff` (only in `export --diff BASE NEW --format html`, see `super::diff`):
//!   BASE's values mapped onto this (NEW's) tree; the page then colors by delta.
//!
//! Pruning (documented in docs/exports.md): a call-tree node whose total is under
//! [`PRUNE_FRACTION`] of the profile's total is folded, with everything under it,
//! into one "(pruned)" child of its parent; the page shows the pruned share. `<`,
//! `>` and `&` inside the JSON are written as `\u003c`, `\u003e`, `\u0026` so no
//! string can close the script element.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;

use serde_json::{Value, json};

use super::{ExportError, Model};
use crate::profile::stacks::FramesFilter;
use crate::profile::stacks::StackFilter;
use crate::profile::{FrameKind, Profile, WaitClass};
use crate::report::ReportFormat;
use crate::report::{hotspots, lines, ranks, summary};

/// Call-tree nodes under this fraction of the total are folded into "(pruned)".
pub const PRUNE_FRACTION: f64 = 0.0001;
/// Most `[node, bucket, count]` rows the timeline embeds for filtering the flame
/// graph by time; beyond, adjacent buckets of these rows are merged (their time
/// resolution halves) until they fit. The tracks keep every bucket.
pub const MAX_TIMELINE_ROWS: usize = 200_000;
/// How many source lines the lines panel lists.
pub const TOP_LINES: usize = 30;
/// Lines under this share (percent) are left out of the lines panel after the top 3.
const MIN_LINE_PCT: f64 = 0.1;
/// Lines of source shown before and after a hot line.
const CONTEXT_LINES: u32 = 2;
/// Longest source file read for the lines panel.
const MAX_SOURCE_BYTES: u64 = 4 << 20;
/// Longest source line embedded (characters).
const MAX_LINE_CHARS: usize = 240;
/// Most points of the RSS curve (the maximum of each chunk is kept, so the peak is).
const MAX_RSS_POINTS: usize = 2000;
/// Functions (rows) of the function × rank heat map.
const HEAT_FUNCTIONS: usize = 20;

const TEMPLATE: &str = include_str!("html/template.html");
const CSS: &str = include_str!("html/report.css");
const JS: &str = include_str!("html/report.js");

/// The function-level call tree with interned functions.
#[derive(Default)]
struct Tree {
    /// (parent node or -1, function index).
    nodes: Vec<(i64, usize)>,
    ids: HashMap<(i64, usize), usize>,
    /// Function index by profile function (None: `[unknown]`).
    fn_ids: HashMap<Option<usize>, usize>,
    functions: Vec<(String, String, char)>,
}

impl Tree {
    fn function(&mut self, p: &Profile, f: Option<usize>) -> usize {
        if let Some(&i) = self.fn_ids.get(&f) {
            return i;
        }
        let entry = match f.and_then(|f| p.functions.get(f)) {
            Some(func) => (
                super::one_line(&super::label_of(func)),
                super::one_line(&func.module),
                match func.kind {
                    FrameKind::Native => 'n',
                    FrameKind::Python => 'p',
                    FrameKind::Kernel => 'k',
                },
            ),
            None => ("[unknown]".into(), "[unknown]".into(), 'n'),
        };
        self.functions.push(entry);
        self.fn_ids.insert(f, self.functions.len() - 1);
        self.functions.len() - 1
    }

    fn child(&mut self, parent: i64, function: usize) -> usize {
        if let Some(&n) = self.ids.get(&(parent, function)) {
            return n;
        }
        self.nodes.push((parent, function));
        self.ids.insert((parent, function), self.nodes.len() - 1);
        self.nodes.len() - 1
    }
}

/// Maps profile stacks (leaf ids) to nodes of the function-level call tree.
struct TreeBuilder<'a> {
    profile: &'a Profile,
    filter: StackFilter,
    /// The tree node of each stack leaf seen.
    leaf_nodes: HashMap<Option<usize>, usize>,
    /// Without a frames filter: the tree node of each profile stack node (a stack
    /// maps node by node, so each trie node is mapped once).
    stack_nodes: Vec<Option<usize>>,
}

impl<'a> TreeBuilder<'a> {
    fn new(profile: &'a Profile, filter: StackFilter) -> Self {
        TreeBuilder {
            profile,
            filter,
            leaf_nodes: HashMap::new(),
            stack_nodes: vec![None; profile.stacks.len()],
        }
    }

    /// The tree node of a stack, created as needed.
    fn leaf_node(&mut self, tree: &mut Tree, leaf: Option<usize>) -> usize {
        if let Some(&n) = self.leaf_nodes.get(&leaf) {
            return n;
        }
        let n = match leaf {
            Some(s) if self.filter.frames == FramesFilter::All && s < self.stack_nodes.len() => {
                self.stack_node(tree, s)
            }
            _ => self.path_node(tree, leaf),
        };
        self.leaf_nodes.insert(leaf, n);
        n
    }

    /// The tree node of profile stack node `s`, mapping its unmapped ancestors.
    fn stack_node(&mut self, tree: &mut Tree, s: usize) -> usize {
        let stacks = &self.profile.stacks;
        let mut chain = Vec::new();
        let mut cur = Some(s);
        let mut parent = -1i64;
        while let Some(c) = cur.filter(|&c| c < stacks.len()) {
            if let Some(n) = self.stack_nodes[c] {
                parent = n as i64;
                break;
            }
            chain.push(c);
            if chain.len() > stacks.len() {
                break; // a cycle: never from ProfileWriter
            }
            cur = stacks[c].parent;
        }
        for &c in chain.iter().rev() {
            let f = self.profile.frames.get(stacks[c].frame).map(|x| x.function);
            let f = tree.function(self.profile, f);
            let n = tree.child(parent, f);
            self.stack_nodes[c] = Some(n);
            parent = n as i64;
        }
        parent.max(0) as usize
    }

    /// The tree node of a stack through its filtered frames.
    fn path_node(&mut self, tree: &mut Tree, leaf: Option<usize>) -> usize {
        let frames = crate::profile::stacks::apply_frames_filter(
            self.profile,
            self.profile.stack_frames(leaf),
            self.filter.frames,
        );
        let mut fns: Vec<usize> = frames
            .iter()
            .map(|&fr| {
                let f = self.profile.frames.get(fr).map(|x| x.function);
                tree.function(self.profile, f)
            })
            .collect();
        if fns.is_empty() {
            fns.push(tree.function(self.profile, None));
        }
        let mut parent = -1i64;
        for f in fns {
            parent = tree.child(parent, f) as i64;
        }
        parent as usize
    }
}

fn keep_thread(p: &Profile, filter: StackFilter, thread: usize) -> bool {
    filter.rank.is_none() || p.thread_rank(thread) == filter.rank
}

/// The data the page renders.
pub fn data(profile: &Profile, model: &Model, filter: StackFilter) -> Value {
    let p = profile;
    let mut b = TreeBuilder::new(p, filter);
    // Pass 1: the full tree, with each node's total (children come after their
    // parent, so one backward pass sums them up).
    let mut full = Tree::default();
    let mut total = 0u64;
    let mut leaf_value: Vec<(usize, u64)> = Vec::new();
    for s in p
        .samples
        .iter()
        .filter(|s| keep_thread(p, filter, s.thread))
    {
        leaf_value.push((b.leaf_node(&mut full, s.stack), s.value));
        total += s.value;
    }
    let mut full_total = vec![0u64; full.nodes.len()];
    for &(n, v) in &leaf_value {
        full_total[n] += v;
    }
    for n in (0..full.nodes.len()).rev() {
        if let Ok(parent) = usize::try_from(full.nodes[n].0) {
            full_total[parent] += full_total[n];
        }
    }
    // Pass 2: prune; each full node maps to a kept node.
    let threshold = (total as f64 * PRUNE_FRACTION).ceil() as u64;
    let mut out = Tree {
        functions: full.functions.clone(),
        ..Default::default()
    };
    let pruned_fn = out.functions.len();
    out.functions
        .push(("(pruned)".into(), "small subtrees".into(), 'o'));
    let mut kept: Vec<usize> = Vec::with_capacity(full.nodes.len());
    let mut pruned_value = 0u64;
    let mut pruned_nodes = 0usize;
    for (n, &(parent, f)) in full.nodes.iter().enumerate() {
        let parent_kept = if parent < 0 {
            -1
        } else {
            kept[parent as usize] as i64
        };
        let parent_is_pruned = parent >= 0 && out.nodes[kept[parent as usize]].1 == pruned_fn;
        let k = if parent_is_pruned {
            kept[parent as usize]
        } else if full_total.get(n).copied().unwrap_or(0) < threshold {
            pruned_nodes += 1;
            let k = out.child(parent_kept, pruned_fn);
            pruned_value += full_total.get(n).copied().unwrap_or(0);
            k
        } else {
            out.child(parent_kept, f)
        };
        kept.push(k);
    }
    // The kept node of a stack (None for a stack no sample has).
    let node_of = |b: &TreeBuilder, leaf: Option<usize>| -> Option<usize> {
        kept.get(*b.leaf_nodes.get(&leaf)?).copied()
    };
    // Weights per kept leaf node.
    let mut weights: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    for s in p
        .samples
        .iter()
        .filter(|s| keep_thread(p, filter, s.thread))
    {
        let Some(n) = node_of(&b, s.stack) else {
            continue;
        };
        let e = weights.entry(n).or_default();
        e.0 += s.count;
        e.1 += s.value;
    }
    let timeline = timeline(p, filter, |leaf| node_of(&b, leaf));

    let summary = summary(p, model);
    let mut v = json!({
        "title": model.title(),
        "summary": summary,
        "metric": model.metric.name(),
        "total": total,
        "pruned": {"value": pruned_value, "subtrees": pruned_nodes, "fraction": PRUNE_FRACTION},
        "functions": {
            "name": out.functions.iter().map(|f| f.0.clone()).collect::<Vec<_>>(),
            "module": out.functions.iter().map(|f| f.1.clone()).collect::<Vec<_>>(),
            "kind": out.functions.iter().map(|f| f.2.to_string()).collect::<String>(),
        },
        "nodes": {
            "parent": out.nodes.iter().map(|n| n.0).collect::<Vec<_>>(),
            "fn": out.nodes.iter().map(|n| n.1).collect::<Vec<_>>(),
        },
        "weights": weights.iter().flat_map(|(&n, &(c, v))| [n as u64, c, v]).collect::<Vec<_>>(),
        "lines": lines(p, filter),
    });
    if let Some(t) = timeline {
        v["timeline"] = t;
    }
    let mode = p.meta_str("mode");
    if mode == "memory" || !p.rss.is_empty() {
        v["rss"] = rss(p);
    }
    if mode == "locks" {
        use crate::report::waits as w;
        v["waits"] = report_json(w::waits(p, ReportFormat::Json, 30, filter));
        // The waits panel's breakdowns: by class, and by sync object.
        let classes = w::by_class(p, filter);
        let all: u64 = classes.iter().map(|c| c.1).sum();
        let service = w::mpi_service_note(p, filter);
        let note = |c: &WaitClass| match &service {
            Some(note) if *c == WaitClass::Mpi => note.clone(),
            _ => String::new(),
        };
        v["wait_classes"] = json!({"rows": classes.iter().map(|(c, ns)| json!({
            "class": c.as_str(), "wait_ns": ns,
            "wait_pct": if all == 0 { 0.0 } else { (*ns as f64 * 10000.0 / all as f64).round() / 100.0 },
            "note": note(c),
        })).collect::<Vec<_>>()});
        v["wait_objects"] = report_json(w::objects(p, ReportFormat::Json, 30, filter));
    }
    if !p.counts.is_empty() {
        v["counters"] = report_json(hotspots::hotspots(p, ReportFormat::Json, 30, filter));
    }
    let ranks: HashSet<u32> = p.processes.iter().filter_map(|x| x.rank).collect();
    if !ranks.is_empty() && filter.rank.is_none() {
        v["ranks"] = report_json(ranks::ranks(p, ReportFormat::Json, filter));
        v["heat"] = heat(p, filter);
    }
    v
}

fn report_json(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The summary view's JSON plus the run's notices.
pub fn summary(p: &Profile, model: &Model) -> Value {
    let mut s = report_json(summary::summary(
        p,
        ReportFormat::Json,
        10,
        StackFilter::default(),
    ));
    if !s.is_object() {
        s = json!({});
    }
    let notices: Vec<String> = serde_json::from_str(p.meta_str("notices")).unwrap_or_default();
    let mut notices = notices;
    let num = |k: &str| p.meta_str(k).parse::<u64>().unwrap_or(0);
    let python = p.meta_str("python");
    let has_python_frames = p.functions.iter().any(|f| f.kind == FrameKind::Python);
    if !python.is_empty() && python != "off" && !has_python_frames {
        notices.push(format!(
            "Python mode was `{python}` but the profile has no Python frames: the target ran no Python code hwprof could read"
        ));
    }
    if num("skipped_bytes") > 0 {
        notices.push(format!(
            "incomplete run: perf.data was cut short; the last {} bytes were skipped",
            num("skipped_bytes")
        ));
    }
    if num("lost_samples") > 0 {
        notices.push(format!(
            "{} samples were lost (the kernel's buffer was full)",
            num("lost_samples")
        ));
    }
    notices.extend(summary::cut_short_lines(p));
    if let Some((line, true)) = summary::remote_python_line(p) {
        notices.push(line);
    }
    let without_symbols: Vec<(String, f64)> = s["without_symbols"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["module"].as_str()?.to_string(), m["self_pct"].as_f64()?)))
        .collect();
    let line = summary::without_symbols_line(&without_symbols);
    if !line.is_empty() {
        notices.push(line.trim().to_string());
    }
    s["notices"] = json!(notices);
    s["filter"] = json!(model.filter_note.trim());
    s["frequency_hz"] = json!(p.meta_str("frequency_hz"));
    s
}

/// Samples over time per thread (per rank in MPI runs), or None without a timeline.
fn timeline(
    p: &Profile,
    filter: StackFilter,
    mut node_of: impl FnMut(Option<usize>) -> Option<usize>,
) -> Option<Value> {
    let num = |k: &str| p.meta_str(k).parse::<u64>().ok();
    let (start, width, buckets) = (
        num("timeline_start_ns")?,
        num("timeline_bucket_ns")?,
        num("timeline_buckets")?,
    );
    if p.timeline.is_empty() || buckets == 0 {
        return None;
    }
    let mpi = p.processes.iter().any(|x| x.rank.is_some());
    // Tracks: one per rank in MPI runs, else one per thread.
    let mut tracks: Vec<String> = Vec::new();
    let mut track_ids: HashMap<String, usize> = HashMap::new();
    let label_of = |thread: usize| -> String {
        let t = p.threads.get(thread);
        let proc_ = t.and_then(|t| p.processes.get(t.process));
        match (mpi, proc_) {
            (true, Some(pr)) => match pr.rank {
                Some(r) => format!("rank {r}"),
                None => format!("pid {}", pr.pid),
            },
            (_, Some(pr)) => format!(
                "{} (pid {}, tid {})",
                t.map(|t| t.name.as_str()).unwrap_or(""),
                pr.pid,
                t.map(|t| t.tid).unwrap_or(0)
            ),
            _ => "[unknown]".into(),
        }
    };
    // The track of each thread (the last slot: threads out of range), on first use.
    let mut thread_track: Vec<Option<usize>> = vec![None; p.threads.len() + 1];
    let mut track_of = |thread: usize| -> usize {
        let slot = thread.min(p.threads.len());
        if let Some(id) = thread_track[slot] {
            return id;
        }
        let label = label_of(thread);
        let id = *track_ids.entry(label.clone()).or_insert_with(|| {
            tracks.push(label);
            tracks.len() - 1
        });
        thread_track[slot] = Some(id);
        id
    };
    // Tracks: dense counts per bucket at full resolution. Flame-graph filtering:
    // (node, bucket) rows, bounded by merging adjacent buckets (`row_merge`).
    let nb = buckets.min(crate::profile::TIMELINE_MAX_BUCKETS) as usize;
    let mut track_counts: Vec<Vec<u64>> = Vec::new();
    let mut rows: HashMap<(usize, u64), u64> = HashMap::new();
    for r in p
        .timeline
        .iter()
        .filter(|r| keep_thread(p, filter, r.thread))
    {
        let Some(node) = node_of(r.stack) else {
            continue;
        };
        let b = (r.bucket as usize).min(nb - 1);
        let t = track_of(r.thread);
        if track_counts.len() <= t {
            track_counts.resize(t + 1, vec![0; nb]);
        }
        track_counts[t][b] += r.count;
        *rows.entry((node, b as u64)).or_default() += r.count;
    }
    let mut merge = 1u64;
    while rows.len() > MAX_TIMELINE_ROWS && merge < nb as u64 {
        merge *= 2;
        let old = std::mem::take(&mut rows);
        for ((n, b), c) in old {
            *rows.entry((n, b / 2)).or_default() += c;
        }
    }
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_unstable();
    track_counts.resize(tracks.len(), vec![0; nb]);
    Some(json!({
        "start_ns": start,
        "bucket_ns": width,
        "buckets": nb,
        "tracks": tracks,
        "track_counts": track_counts,
        "row_merge": merge,
        "rows": rows.iter().flat_map(|&((n, b), c)| [n as u64, b, c]).collect::<Vec<_>>(),
    }))
}

/// The hottest lines (`--view lines`) with the source text around them. In a profile
/// with Python frames and no `--frames` choice, the Python lines are ranked (the
/// interpreter's own lines say little about a Python program).
fn lines(p: &Profile, filter: StackFilter) -> Value {
    let has_python = p.functions.iter().any(|f| f.kind == FrameKind::Python);
    let frames = match (filter.frames, has_python) {
        (FramesFilter::All, true) => FramesFilter::Python,
        (f, _) => f,
    };
    let v = report_json(lines::lines(
        p,
        ReportFormat::Json,
        TOP_LINES,
        StackFilter { frames, ..filter },
    ));
    let mut files: HashMap<String, Option<Vec<String>>> = HashMap::new();
    let rows: Vec<Value> = v["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        // The top three, then lines of at least MIN_LINE_PCT: not a list of crumbs.
        .filter(|(i, r)| {
            r["self"].as_u64().unwrap_or(0) > 0
                && (*i < 3 || r["self_pct"].as_f64().unwrap_or(0.0) >= MIN_LINE_PCT)
        })
        .map(|(_, r)| r)
        .map(|mut r| {
            let file = r["file"].as_str().unwrap_or("").to_string();
            let line = r["line"].as_u64().unwrap_or(0) as u32;
            if !file.is_empty() && line > 0 {
                let text = files
                    .entry(file.clone())
                    .or_insert_with(|| read_source(&file));
                if let Some(text) = text {
                    let first = line.saturating_sub(CONTEXT_LINES).max(1);
                    let last = (line + CONTEXT_LINES).min(text.len() as u32);
                    let src: Vec<&str> = (first..=last)
                        .filter_map(|l| text.get(l as usize - 1).map(String::as_str))
                        .collect();
                    r["source"] = json!({"first": first, "lines": src});
                }
            }
            r
        })
        .collect();
    let frames = match frames {
        FramesFilter::All => "all",
        FramesFilter::Python => "python",
        FramesFilter::Native => "native",
        FramesFilter::Program => "program",
    };
    json!({"frames": frames, "rows": rows})
}

/// A source file's lines, each cut to [`MAX_LINE_CHARS`]; None when unreadable or huge.
fn read_source(path: &str) -> Option<Vec<String>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_SOURCE_BYTES {
        return None;
    }
    let f = crate::raw::bounded::open_file(std::path::Path::new(path), true).ok()?;
    let bytes =
        crate::raw::bounded::read_open_limited(f, std::path::Path::new(path), MAX_SOURCE_BYTES)
            .ok()?;
    let text = String::from_utf8_lossy(&bytes);
    Some(
        text.lines()
            .map(|l| {
                let l = l.replace('\t', "    ");
                match l.char_indices().nth(MAX_LINE_CHARS) {
                    Some((i, _)) => format!("{}…", &l[..i]),
                    None => l,
                }
            })
            .collect(),
    )
}

/// The summed RSS over time, at most [`MAX_RSS_POINTS`] points (each the maximum of
/// its chunk), and the peak.
fn rss(p: &Profile) -> Value {
    let rows: Vec<(u64, usize, u64)> = p
        .rss
        .iter()
        .map(|r| (r.time_ns, r.process, r.rss_bytes))
        .collect();
    let line = crate::sidecars::rss::summed_timeline(&rows);
    let chunk = line.len().div_ceil(MAX_RSS_POINTS).max(1);
    let t0 = line.first().map(|x| x.0).unwrap_or(0);
    let points: Vec<[f64; 2]> = line
        .chunks(chunk)
        .filter_map(|c| c.iter().max_by_key(|x| x.1))
        .map(|&(t, b)| [(t - t0) as f64 / 1e9, b as f64])
        .collect();
    let peak = summary::peak_rss(p);
    json!({
        "points": points,
        "peak_bytes": peak.map(|x| x.0),
        "peak_s": peak.map(|x| x.1.saturating_sub(t0) as f64 / 1e9),
    })
}

/// Function × rank: each rank's share of its own metric in the top functions (by
/// total over all ranks, inclusive).
fn heat(p: &Profile, filter: StackFilter) -> Value {
    let stacks = p.weighted_stacks(StackFilter {
        rank: None,
        ..filter
    });
    let mut per: HashMap<(usize, u32), u64> = HashMap::new();
    let mut rank_total: BTreeMap<u32, u64> = BTreeMap::new();
    let mut fn_total: HashMap<usize, u64> = HashMap::new();
    for s in &stacks {
        let Some(rank) = p.thread_rank(s.thread) else {
            continue;
        };
        *rank_total.entry(rank).or_default() += s.value;
        let mut seen = HashSet::new();
        for &fr in &s.frames {
            let Some(f) = p.frames.get(fr).map(|x| x.function) else {
                continue;
            };
            if seen.insert(f) {
                *per.entry((f, rank)).or_default() += s.value;
                *fn_total.entry(f).or_default() += s.value;
            }
        }
    }
    let mut top: Vec<(usize, u64)> = fn_total.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    // Functions on (nearly) every stack of every rank (main, _start) say nothing
    // about the ranks: skip those at 95% or more everywhere.
    top.retain(|&(f, _)| {
        rank_total
            .iter()
            .any(|(&r, &t)| (per.get(&(f, r)).copied().unwrap_or(0) as f64) < 0.95 * t as f64)
    });
    top.truncate(HEAT_FUNCTIONS);
    let ranks: Vec<u32> = rank_total.keys().copied().collect();
    json!({
        "ranks": ranks,
        "functions": top.iter().map(|&(f, _)| p.functions.get(f).map(|x| super::one_line(&super::label_of(x))).unwrap_or_default()).collect::<Vec<_>>(),
        "share": top.iter().map(|&(f, _)| ranks.iter().map(|r| {
            let t = rank_total.get(r).copied().unwrap_or(0);
            let v = per.get(&(f, *r)).copied().unwrap_or(0);
            if t > 0 { (v as f64 * 10000.0 / t as f64).round() / 100.0 } else { 0.0 }
        }).collect::<Vec<_>>()).collect::<Vec<_>>(),
    })
}

/// JSON safe inside a `<script>` element.
fn script_safe_json(v: &Value) -> Result<String, ExportError> {
    let s = serde_json::to_string(v)?;
    Ok(s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026"))
}

/// Text escaped for HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Write the profile as one HTML file.
pub fn write(
    profile: &Profile,
    model: &Model,
    filter: StackFilter,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    write_page(&data(profile, model, filter), &model.title(), out)
}

/// Write the page around a data document (see [`data`]).
pub fn write_page(data: &Value, title: &str, out: &mut dyn Write) -> Result<(), ExportError> {
    let data = script_safe_json(data)?;
    let title = escape_html(title);
    // Placeholders are found in the template only, never in what replaces them.
    let mut rest = TEMPLATE;
    while let Some(i) = rest.find("__") {
        let (head, tail) = rest.split_at(i);
        out.write_all(head.as_bytes())?;
        let value = ["TITLE", "CSS", "JS", "DATA"].iter().find_map(|name| {
            let token = format!("__{name}__");
            tail.starts_with(&token).then_some((*name, token.len()))
        });
        match value {
            Some((name, len)) => {
                let text: &str = match name {
                    "TITLE" => &title,
                    "CSS" => CSS,
                    "JS" => JS,
                    _ => &data,
                };
                out.write_all(text.as_bytes())?;
                rest = &tail[len..];
            }
            None => {
                out.write_all(b"__")?;
                rest = &tail[2..];
            }
        }
    }
    out.write_all(rest.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::sample_profile;

    fn data_of(p: &Profile) -> Value {
        let m = Model::new(p, StackFilter::default());
        data(p, &m, StackFilter::default())
    }

    #[test]
    fn data_has_tree_weights_and_header() {
        let p = sample_profile();
        let d = data_of(&p);
        assert_eq!(d["total"], 8);
        let w: Vec<u64> = serde_json::from_value(d["weights"].clone()).unwrap();
        assert_eq!(w.chunks(3).map(|c| c[2]).sum::<u64>(), 8);
        let names: Vec<String> = serde_json::from_value(d["functions"]["name"].clone()).unwrap();
        let parents: Vec<i64> = serde_json::from_value(d["nodes"]["parent"].clone()).unwrap();
        let fns: Vec<usize> = serde_json::from_value(d["nodes"]["fn"].clone()).unwrap();
        // main is the one root; a→a recursion is two nodes.
        let roots: Vec<&str> = (0..parents.len())
            .filter(|&n| parents[n] < 0)
            .map(|n| names[fns[n]].as_str())
            .collect();
        assert_eq!(roots, ["main"]);
        assert_eq!(fns.iter().filter(|&&f| names[f] == "a").count(), 2);
        assert_eq!(d["summary"]["mode"], "hotspots");
        assert!(d.get("timeline").is_none(), "no timeline in this profile");
        assert!(d.get("ranks").is_some(), "two ranks");
    }

    #[test]
    fn small_subtrees_are_pruned_into_one_node() {
        let mut p = sample_profile();
        // Make b's 1 sample tiny beside 1e6 samples of a.
        for s in &mut p.samples {
            if s.value == 3 {
                s.value = 1_000_000;
            }
        }
        let d = data_of(&p);
        let names: Vec<String> = serde_json::from_value(d["functions"]["name"].clone()).unwrap();
        let fns: Vec<usize> = serde_json::from_value(d["nodes"]["fn"].clone()).unwrap();
        assert!(fns.iter().any(|&f| names[f] == "(pruned)"));
        assert!(!fns.iter().any(|&f| names[f] == "b"));
        assert_eq!(d["pruned"]["value"], 5, "b (1), run→PyEval (2), a→a (2)");
        let w: Vec<u64> = serde_json::from_value(d["weights"].clone()).unwrap();
        assert_eq!(
            w.chunks(3).map(|c| c[2]).sum::<u64>(),
            d["total"].as_u64().unwrap()
        );
    }

    #[test]
    fn timeline_rows_follow_the_tree() {
        let mut p = sample_profile();
        p.meta.insert("timeline_start_ns".into(), "1000".into());
        p.meta.insert("timeline_bucket_ns".into(), "10".into());
        p.meta.insert("timeline_buckets".into(), "4".into());
        for (i, s) in p.samples.clone().iter().enumerate() {
            p.timeline.push(crate::profile::TimelineRow {
                stack: s.stack,
                thread: s.thread,
                bucket: i as u32,
                count: s.count,
            });
        }
        let d = data_of(&p);
        let rows: Vec<u64> = serde_json::from_value(d["timeline"]["rows"].clone()).unwrap();
        assert_eq!(rows.chunks(3).map(|c| c[2]).sum::<u64>(), 8);
        let tracks: Vec<Vec<u64>> =
            serde_json::from_value(d["timeline"]["track_counts"].clone()).unwrap();
        assert_eq!(tracks.iter().flatten().sum::<u64>(), 8);
        assert_eq!(
            d["timeline"]["tracks"].as_array().unwrap().len(),
            2,
            "two ranks"
        );
    }

    #[test]
    fn script_cannot_be_closed_by_a_name() {
        let v = json!({"n": "</script><b>&"});
        let s = script_safe_json(&v).unwrap();
        assert!(!s.contains("</script>"));
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["n"], "</script><b>&");
    }
}
