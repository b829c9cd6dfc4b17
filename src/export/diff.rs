//! Differential exports: `hwprof export --diff BASE NEW --format flamegraph|collapsed`.
//!
//! Both profiles' stacks are matched by their frames' labels ([`stack_pairs`])
//! and expressed in NEW's metric: with `--normalize time` BASE's samples are rescaled
//! to NEW's sampling rate (× new_hz / base_hz, so equal rates leave them as they are),
//! with `percent` to NEW's total (flamegraph.pl's `difffolded.pl -n`), with `none`
//! not at all. Values are rounded to whole units (samples, bytes, ns).
//!
//! - `collapsed`: Brendan Gregg's two-column folded format, `stack base new`, one line
//!   per stack of either profile, sorted: what `difffolded.pl` writes and
//!   `flamegraph.pl` / inferno read.
//! - `flamegraph`: Gregg's differential flame graph drawn by inferno: NEW's shape
//!   (stacks only in BASE have no width), each frame colored by the change of its self
//!   value, red where it grew, blue where it shrank, white where equal; each frame's
//!   tooltip gives both profiles' values (total through the frame and self).
//! - `pprof`: one profile holding NEW's samples and BASE's samples negated and labelled
//!   `pprof::base=true`, which is what `pprof -diff_base BASE NEW` builds in memory
//!   before it shows the difference: `pprof -top diff.pb.gz` shows NEW − BASE. Values
//!   are each side's own (samples, CPU nanoseconds at each side's own interval, bytes,
//!   ns); with `--normalize percent` BASE's values are scaled to NEW's totals.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use std::io::Write;

use inferno::flamegraph::{self, Options};

use super::collapsed::sanitize;
use super::pprof::{self as pb, proto};
use super::{ExportError, Model, html};
use crate::diff::{DiffError, Normalize, Side, check_sides, unit_of};
use crate::profile::stacks::FramesFilter;
use crate::profile::stacks::StackFilter;
use serde_json::json;

/// One stack of the union of both profiles with its value on each side, in the unit of
/// the scale: what a differential flame graph or the HTML delta view draws.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StackPair {
    /// Frame labels, outermost first (the folded format's labels).
    pub frames: Vec<String>,
    /// BASE's value (0 when the stack is only in NEW).
    pub base: f64,
    /// NEW's value (0 when the stack is only in BASE).
    pub new: f64,
}

/// Both profiles' stacks in one scale: what a differential flame graph or the HTML
/// delta view draws.
#[derive(Clone, Debug, Serialize)]
pub struct StackDiff {
    /// The unit of the values (see [`unit_of`]).
    pub unit: String,
    /// NEW's factor from its metric into the unit (1/frequency for time, 100/total for
    /// percent, 1 for none): divide by it to express both sides in NEW's metric.
    pub new_scale: f64,
    /// The union of both profiles' stacks, sorted by stack.
    pub stacks: Vec<StackPair>,
}

/// Both profiles' stacks matched by their frames' labels (the folded format's).
pub fn stack_pairs(
    base: &Side,
    new: &Side,
    normalize: Normalize,
    frames: FramesFilter,
) -> Result<StackDiff, DiffError> {
    check_sides(base, new)?;
    let folded = |s: &Side| {
        let model = Model::new(s.profile, s.filter(frames));
        let total = model.total_value();
        (super::collapsed::folded(&model), total)
    };
    let (fa, ta) = folded(base);
    let (fb, tb) = folded(new);
    let sa = base.scale(normalize, ta)?;
    let sb = new.scale(normalize, tb)?;
    let mut merged: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (stack, v) in fa {
        merged.entry(stack).or_default().0 += v as f64 * sa;
    }
    for (stack, v) in fb {
        merged.entry(stack).or_default().1 += v as f64 * sb;
    }
    Ok(StackDiff {
        unit: unit_of(base.profile.metric(), normalize),
        new_scale: sb,
        stacks: merged
            .into_iter()
            .map(|(stack, (base, new))| StackPair {
                frames: stack.split(';').map(str::to_string).collect(),
                base,
                new,
            })
            .collect(),
    })
}

/// One stack in whole units of NEW's metric.
struct IntStack {
    stack: String,
    base: u64,
    new: u64,
}

fn int_stacks(d: &StackDiff) -> Vec<IntStack> {
    let to_units = |x: f64| {
        if d.new_scale > 0.0 {
            (x / d.new_scale).round().max(0.0) as u64
        } else {
            0
        }
    };
    d.stacks
        .iter()
        .map(|p: &StackPair| IntStack {
            stack: p
                .frames
                .iter()
                .map(|f| sanitize(f))
                .collect::<Vec<_>>()
                .join(";"),
            base: to_units(p.base),
            new: to_units(p.new),
        })
        .filter(|s| s.base > 0 || s.new > 0)
        .collect()
}

/// Write the two-column folded format.
pub fn write_collapsed(d: &StackDiff, out: &mut dyn Write) -> Result<(), ExportError> {
    for s in int_stacks(d) {
        writeln!(out, "{} {} {}", s.stack, s.base, s.new)?;
    }
    Ok(())
}

/// Write the differential flame graph SVG.
pub fn write_flamegraph(
    d: &StackDiff,
    title: &str,
    metric: &str,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let stacks = int_stacks(d);
    if stacks.iter().all(|s| s.new == 0) {
        return Err(ExportError::NoSamples(" in NEW".into()));
    }
    let lines: Vec<String> = stacks
        .iter()
        .map(|s| format!("{} {} {}", s.stack, s.base, s.new))
        .collect();
    let mut opts = Options::default();
    opts.title = title.to_string();
    opts.subtitle =
        Some("red: grew from BASE to NEW, blue: shrank (self values); width: NEW".to_string());
    opts.count_name = metric.to_string();
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut svg)?;
    let svg = String::from_utf8_lossy(&svg);
    out.write_all(with_both_values(&svg, &stacks, metric).as_bytes())?;
    Ok(())
}

/// Most rows of the HTML delta view's "only in BASE" table.
const ONLY_IN_BASE_ROWS: usize = 30;

/// Write NEW's HTML report with a delta view: BASE's values (in NEW's metric, after
/// the normalization) mapped onto NEW's call tree by frame labels, in a `diff`
/// section of the page's data; the page colors each frame by its change.
pub fn write_html(
    d: &StackDiff,
    base: &crate::diff::Side,
    new: &crate::diff::Side,
    filter: StackFilter,
    normalize: Normalize,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let new_model = Model::new(new.profile, filter);
    let base_model = Model::new(
        base.profile,
        StackFilter {
            rank: base.rank,
            ..filter
        },
    );
    let mut data = html::data(new.profile, &new_model, filter);
    let column = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v.as_array().cloned().unwrap_or_default()
    };
    let names: Vec<String> = column(&data["functions"]["name"])
        .iter()
        .map(|x| sanitize(x.as_str().unwrap_or("")))
        .collect();
    let parents: Vec<i64> = column(&data["nodes"]["parent"])
        .iter()
        .map(|x| x.as_i64().unwrap_or(-1))
        .collect();
    let fns: Vec<usize> = column(&data["nodes"]["fn"])
        .iter()
        .map(|x| x.as_u64().unwrap_or(0) as usize)
        .collect();
    let name_of = |n: usize| fns.get(n).and_then(|&f| names.get(f)).map(String::as_str);
    let mut child: HashMap<(i64, &str), usize> = HashMap::new();
    for (n, &parent) in parents.iter().enumerate() {
        if let Some(name) = name_of(n) {
            child.insert((parent, name), n);
        }
    }
    let new_names: HashSet<&str> = names.iter().map(String::as_str).collect();
    let to_new_units = |x: f64| {
        if d.new_scale > 0.0 {
            x / d.new_scale
        } else {
            0.0
        }
    };
    let mut weights: BTreeMap<usize, f64> = BTreeMap::new();
    let mut only_in_base: HashMap<String, f64> = HashMap::new();
    let (mut base_total, mut new_total) = (0.0, 0.0);
    for pair in &d.stacks {
        new_total += to_new_units(pair.new);
        let v = to_new_units(pair.base);
        if v <= 0.0 {
            continue;
        }
        base_total += v;
        // Walk NEW's tree down the stack; a frame NEW has but pruned goes to
        // "(pruned)", one NEW does not have is listed and its value stays with the
        // deepest matched caller (so the callers' totals stay right).
        let mut at = -1i64;
        for (i, frame) in pair.frames.iter().enumerate() {
            let pruned = child.get(&(at, "(pruned)")).copied();
            match child.get(&(at, frame.as_str())).copied() {
                Some(n) => at = n as i64,
                None if pruned.is_some()
                    && (pair.new > 0.0 || new_names.contains(frame.as_str())) =>
                {
                    at = pruned.map_or(at, |n| n as i64);
                    break;
                }
                None => {
                    let caller = if i > 0 {
                        pair.frames[i - 1].as_str()
                    } else {
                        ""
                    };
                    let key = if caller.is_empty() {
                        frame.clone()
                    } else {
                        format!("{caller} > {frame}")
                    };
                    *only_in_base.entry(key).or_default() += v;
                    break;
                }
            }
        }
        if let Ok(n) = usize::try_from(at) {
            *weights.entry(n).or_default() += v;
        }
    }
    let mut only: Vec<(String, f64)> = only_in_base.into_iter().collect();
    only.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let only_rows = only.len();
    only.truncate(ONLY_IN_BASE_ROWS);
    let base_summary = html::summary(base.profile, &base_model);
    let side = |s: &crate::diff::Side, summary: &serde_json::Value, total: f64| {
        json!({
            "dir": s.dir.display().to_string(),
            "command": summary["command"],
            "samples": summary["samples"],
            "duration_s": summary["duration_s"],
            "rank": s.rank,
            "total": total,
        })
    };
    let new_summary = data["summary"].clone();
    let normalize_name = crate::diff::normalize_name(normalize);
    data["diff"] = json!({
        "base": side(base, &base_summary, base_total),
        "new": side(new, &new_summary, new_total),
        "normalize": normalize_name,
        "weights": weights.iter().flat_map(|(&n, &v)| [n as f64, v]).collect::<Vec<_>>(),
        "only_in_base": only.iter().map(|(s, v)| json!({"stack": s, "value": v})).collect::<Vec<_>>(),
        "only_in_base_rows": only_rows,
    });
    // BASE has no time axis on NEW's clock: the delta view compares whole runs.
    if let Some(obj) = data.as_object_mut() {
        obj.remove("timeline");
    }
    let title = format!(
        "hwprof diff: {} \u{2192} {} (normalize {normalize_name})",
        base.dir.display(),
        new.dir.display()
    );
    data["title"] = json!(title);
    html::write_page(&data, &title, out)
}

/// Write BASE (negated, labelled `pprof::base`) and NEW in one gzipped pprof profile.
pub fn write_pprof(
    base: &Model,
    new: &Model,
    normalize: Normalize,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    use prost::Message;
    let merged = merge_pprof(pb::build(base), pb::build(new), normalize);
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    gz.write_all(&merged.encode_to_vec())?;
    gz.finish()?;
    Ok(())
}

/// NEW plus BASE's samples negated, every id and string of BASE renumbered into NEW's.
pub fn merge_pprof(
    base: proto::Profile,
    mut new: proto::Profile,
    normalize: Normalize,
) -> proto::Profile {
    let mut st = super::pprof::Strings::of(std::mem::take(&mut new.string_table));
    let remap = |st: &mut super::pprof::Strings, i: i64| {
        st.get(base.string_table.get(i as usize).map_or("", String::as_str))
    };
    let (f_off, m_off, l_off) = (
        new.function.len() as u64,
        new.mapping.len() as u64,
        new.location.len() as u64,
    );
    for f in &base.function {
        let name = remap(&mut st, f.name);
        new.function.push(proto::Function {
            id: f.id + f_off,
            name,
            system_name: name,
            filename: remap(&mut st, f.filename),
            ..*f
        });
    }
    for m in &base.mapping {
        new.mapping.push(proto::Mapping {
            id: m.id + m_off,
            filename: remap(&mut st, m.filename),
            ..*m
        });
    }
    for l in &base.location {
        new.location.push(proto::Location {
            id: l.id + l_off,
            mapping_id: if l.mapping_id == 0 {
                0
            } else {
                l.mapping_id + m_off
            },
            line: l
                .line
                .iter()
                .map(|x| proto::Line {
                    function_id: x.function_id + f_off,
                    ..*x
                })
                .collect(),
            ..l.clone()
        });
    }
    // With percent, BASE's values are scaled to NEW's totals, per value type.
    let total = |p: &proto::Profile, i: usize| -> f64 {
        p.sample
            .iter()
            .filter_map(|s| s.value.get(i))
            .map(|&v| v as f64)
            .sum()
    };
    let factors: Vec<f64> = (0..new.sample_type.len())
        .map(|i| match normalize {
            Normalize::Percent if total(&base, i) > 0.0 => total(&new, i) / total(&base, i),
            _ => 1.0,
        })
        .collect();
    let key = st.get("pprof::base");
    let yes = st.get("true");
    for s in &base.sample {
        let mut label: Vec<proto::Label> = s
            .label
            .iter()
            .map(|l| proto::Label {
                key: remap(&mut st, l.key),
                str: if l.str == 0 { 0 } else { remap(&mut st, l.str) },
                num: l.num,
                ..Default::default() // num_unit: hwprof writes none
            })
            .collect();
        label.push(proto::Label {
            key,
            str: yes,
            ..Default::default()
        });
        let value = s
            .value
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let f = factors.get(i).copied().unwrap_or(1.0);
                -((v as f64 * f).round() as i64)
            })
            .collect();
        new.sample.push(proto::Sample {
            location_id: s.location_id.iter().map(|l| l + l_off).collect(),
            value,
            label,
        });
    }
    new.string_table = st.table;
    new
}

/// Per frame (a stack prefix): (base total, new total, base self, new self).
#[derive(Clone, Copy, Default)]
struct FrameValues {
    base_total: u64,
    new_total: u64,
    base_self: u64,
    new_self: u64,
}

/// Rewrite inferno's tooltips (`f (N samples, P%; +D%)`, N = NEW's total through the
/// frame, D = the change of its self value in percent of NEW's total) into both
/// profiles' numbers. A tooltip names a frame only by its label, so the frame is the
/// prefix with that leaf label and NEW total whose self change is nearest D.
fn with_both_values(svg: &str, stacks: &[IntStack], metric: &str) -> String {
    let mut frames: HashMap<String, FrameValues> = HashMap::new();
    let mut base_all = 0u64;
    let mut new_all = 0u64;
    for s in stacks {
        base_all += s.base;
        new_all += s.new;
        let parts: Vec<&str> = s.stack.split(';').collect();
        for i in 1..=parts.len() {
            let v = frames.entry(parts[..i].join(";")).or_default();
            v.base_total += s.base;
            v.new_total += s.new;
            if i == parts.len() {
                v.base_self += s.base;
                v.new_self += s.new;
            }
        }
    }
    // (leaf label, new total) -> candidate frames.
    let mut by_label: HashMap<(String, u64), Vec<FrameValues>> = HashMap::new();
    for (path, v) in &frames {
        let leaf = path.rsplit(';').next().unwrap_or("").to_string();
        by_label.entry((leaf, v.new_total)).or_default().push(*v);
    }
    let mut out = String::with_capacity(svg.len() + svg.len() / 4);
    let mut rest = svg;
    while let Some(start) = rest.find("<title>") {
        let Some(len) = rest[start..].find("</title>") else {
            break;
        };
        let body_start = start + "<title>".len();
        let body = &rest[body_start..start + len];
        out.push_str(&rest[..body_start]);
        match retitle(&unescape(body), &by_label, base_all, new_all, metric) {
            Some(t) => out.push_str(&escape(&t)),
            None => out.push_str(body),
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

fn retitle(
    title: &str,
    by_label: &HashMap<(String, u64), Vec<FrameValues>>,
    base_all: u64,
    new_all: u64,
    metric: &str,
) -> Option<String> {
    // `label (N metric, P%; +D%)` or `label (N metric, P%)`; the label may hold " (".
    let open = title.rfind(" (")?;
    let (label, inner) = (&title[..open], title[open + 2..].strip_suffix(')')?);
    let n: u64 = inner.split(' ').next()?.replace(',', "").parse().ok()?;
    if label == "all" && n == new_all {
        return Some(format!(
            "all — NEW {new_all} {metric}, BASE {base_all} {metric} ({})",
            change(base_all, new_all)
        ));
    }
    let delta_pct: f64 = inner
        .split("; ")
        .nth(1)
        .and_then(|d| d.trim_end_matches('%').parse().ok())
        .unwrap_or(0.0);
    let candidates = by_label.get(&(label.to_string(), n))?;
    let pct_of = |v: &FrameValues| {
        if new_all == 0 {
            0.0
        } else {
            (v.new_self as f64 - v.base_self as f64) * 100.0 / new_all as f64
        }
    };
    let v = candidates.iter().min_by(|a, b| {
        (pct_of(a) - delta_pct)
            .abs()
            .total_cmp(&(pct_of(b) - delta_pct).abs())
    })?;
    Some(format!(
        "{label} — total: NEW {} {metric}, BASE {} {metric} ({}); self: NEW {}, BASE {} ({})",
        v.new_total,
        v.base_total,
        change(v.base_total, v.new_total),
        v.new_self,
        v.base_self,
        change(v.base_self, v.new_self),
    ))
}

fn change(base: u64, new: u64) -> String {
    let d = new as i128 - base as i128;
    if base == 0 {
        if new == 0 {
            "unchanged".into()
        } else {
            format!("{d:+}, only in NEW")
        }
    } else {
        format!("{d:+}, ×{:.2}", new as f64 / base as f64)
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(stacks: &[(&str, f64, f64)]) -> StackDiff {
        StackDiff {
            unit: "samples".into(),
            new_scale: 1.0,
            stacks: stacks
                .iter()
                .map(|(s, b, n)| StackPair {
                    frames: s.split(';').map(str::to_string).collect(),
                    base: *b,
                    new: *n,
                })
                .collect(),
        }
    }

    #[test]
    fn pprof_holds_new_and_base_negated_with_the_base_label() {
        use crate::export::testutil::sample_profile;
        use crate::profile::stacks::StackFilter;
        use prost::Message;
        let p = sample_profile();
        let m = Model::new(&p, StackFilter::default());
        let mut out = Vec::new();
        write_pprof(&m, &m, Normalize::Time, &mut out).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out[..]), &mut raw).unwrap();
        let d = proto::Profile::decode(&raw[..]).unwrap();
        // The same profile against itself: every value cancels.
        let sum: i64 = d.sample.iter().map(|s| s.value[0]).sum();
        assert_eq!(sum, 0);
        let key = d
            .string_table
            .iter()
            .position(|s| s == "pprof::base")
            .unwrap() as i64;
        let based: Vec<_> = d
            .sample
            .iter()
            .filter(|s| s.label.iter().any(|l| l.key == key))
            .collect();
        assert_eq!(based.len() * 2, d.sample.len());
        assert!(based.iter().all(|s| s.value[0] < 0));
        // Base locations name the same functions as NEW's.
        let name_of = |loc: u64| {
            let l = &d.location[loc as usize - 1];
            let f = &d.function[l.line[0].function_id as usize - 1];
            d.string_table[f.name as usize].clone()
        };
        let leaf = name_of(based[0].location_id[0]);
        assert!(
            d.function
                .iter()
                .filter(|f| d.string_table[f.name as usize] == leaf)
                .count()
                == 2
        );
    }

    #[test]
    fn collapsed_has_two_columns_and_keeps_stacks_of_either_side() {
        let d = diff(&[("main;a", 10.0, 20.0), ("main;gone", 4.0, 0.0)]);
        let mut out = Vec::new();
        write_collapsed(&d, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "main;a 10 20\nmain;gone 4 0\n"
        );
    }

    #[test]
    fn flamegraph_colors_by_sign_and_titles_carry_both_values() {
        let d = diff(&[
            ("main;grows", 10.0, 30.0),
            ("main;shrinks", 30.0, 10.0),
            ("main;same", 20.0, 20.0),
        ]);
        let mut out = Vec::new();
        write_flamegraph(&d, "t", "samples", &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        let fill = |label: &str| {
            let at = svg
                .find(&format!("<title>{label} —"))
                .unwrap_or_else(|| panic!("{svg}"));
            let rest = &svg[at..];
            let f = rest.find("fill=\"rgb(").unwrap() + "fill=\"rgb(".len();
            let nums: Vec<u32> = rest[f..rest[f..].find(')').unwrap() + f]
                .split(',')
                .map(|x| x.trim().parse().unwrap())
                .collect();
            (nums[0], nums[2])
        };
        let (r, b) = fill("grows");
        assert!(r > b, "grows: rgb {r}/{b}");
        let (r, b) = fill("shrinks");
        assert!(b > r, "shrinks: rgb {r}/{b}");
        assert!(
            svg.contains("grows — total: NEW 30 samples, BASE 10 samples (+20, ×3.00)"),
            "{svg}"
        );
        assert!(svg.contains("main — total: NEW 60 samples, BASE 60 samples (+0, ×1.00)"));
    }

    #[test]
    fn stacks_pair_by_frame_labels() {
        let (base, new) = crate::diff::tests::profiles(
            ("1000", "1000"),
            "
            a     app          native  -  10  0
            a     other_build  native  -  0   20
            gone  app          native  -  4   0
            b     app          native  -  0   5",
        );
        let pairs = stack_pairs(
            &crate::diff::tests::side(&base),
            &crate::diff::tests::side(&new),
            Normalize::None,
            FramesFilter::All,
        )
        .unwrap()
        .stacks;
        let get = |leaf: &str| {
            pairs
                .iter()
                .find(|p| p.frames == ["main", leaf])
                .map(|p| (p.base, p.new))
        };
        assert_eq!(get("a"), Some((10.0, 20.0)));
        assert_eq!(get("gone"), Some((4.0, 0.0)));
        assert_eq!(get("b"), Some((0.0, 5.0)));
    }
}
