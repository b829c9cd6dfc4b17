//! A [`DiffTable`] as text, CSV or JSON.
//!
//! CSV columns (DESIGN section 2): `function,module,file,line,base_self,new_self,
//! delta_self,ratio_self,base_total,new_total,delta_total,ratio_total`, then `presence`
//! (`both`, `base_only`, `new_only`). The ranks view has `rank,base_total,new_total,
//! delta_total,ratio_total,presence`. Ratios are empty where BASE is 0.

use serde_json::{Value, json};

use super::{DiffRow, DiffTable, Presence};
use crate::report::ReportFormat;
use crate::report::table::{csv_line, round2};

/// Decimals of a value in a unit: seconds to the microsecond, percent to 1/1000,
/// counts (samples, bytes, ns) as integers.
fn decimals(unit: &str) -> usize {
    match unit {
        "s" => 6,
        "%" => 3,
        _ => 0,
    }
}

/// A value as the CSV and messages write it.
pub fn value_text(x: f64, unit: &str) -> String {
    format!("{x:.*}", decimals(unit))
}

/// A change, with its sign.
pub fn signed_text(x: f64, unit: &str) -> String {
    format!("{x:+.*}", decimals(unit))
}

fn ratio_text(r: Option<f64>) -> String {
    r.map(|x| format!("{x:.3}")).unwrap_or_default()
}

/// Render the table; `top` bounds the rows (None: all).
pub fn render(t: &DiffTable, format: ReportFormat, top: Option<usize>) -> String {
    let rows = &t.rows[..top.map_or(t.rows.len(), |n| n.min(t.rows.len()))];
    match format {
        ReportFormat::Csv if t.view == "ranks" => ranks_csv(t, rows),
        ReportFormat::Csv => csv(t, rows),
        ReportFormat::Json => json_text(t, rows),
        ReportFormat::Text => text(t, rows),
    }
}

/// The columns both CSV tables end with, and their cells.
const TOTAL_COLUMNS: [&str; 5] = [
    "base_total",
    "new_total",
    "delta_total",
    "ratio_total",
    "presence",
];

fn total_cells(r: &DiffRow, u: &str) -> [String; 5] {
    [
        value_text(r.base_total, u),
        value_text(r.new_total, u),
        value_text(r.delta_total(), u),
        ratio_text(r.ratio_total()),
        r.presence.as_str().to_string(),
    ]
}

/// A CSV table: the header line (`first` columns, then [`TOTAL_COLUMNS`]) and a line per
/// row (`cells` of the row, then its totals).
fn csv_table(
    t: &DiffTable,
    rows: &[DiffRow],
    first: &[&str],
    cells: impl Fn(&DiffRow) -> Vec<String>,
) -> String {
    let u = t.unit.as_str();
    let header: Vec<String> = first
        .iter()
        .chain(&TOTAL_COLUMNS)
        .map(|c| c.to_string())
        .collect();
    let mut s = csv_line(&header);
    for r in rows {
        let mut line = cells(r);
        line.extend(total_cells(r, u));
        s.push_str(&csv_line(&line));
    }
    s
}

fn csv(t: &DiffTable, rows: &[DiffRow]) -> String {
    let u = t.unit.as_str();
    let first = [
        "function",
        "module",
        "file",
        "line",
        "base_self",
        "new_self",
        "delta_self",
        "ratio_self",
    ];
    csv_table(t, rows, &first, |r| {
        vec![
            r.function.clone(),
            r.module.clone(),
            r.file.clone(),
            r.line.map(|l| l.to_string()).unwrap_or_default(),
            value_text(r.base_self, u),
            value_text(r.new_self, u),
            value_text(r.delta_self(), u),
            ratio_text(r.ratio_self()),
        ]
    })
}

fn ranks_csv(t: &DiffTable, rows: &[DiffRow]) -> String {
    csv_table(t, rows, &["rank"], |r| vec![r.function.clone()])
}

fn number(x: f64, unit: &str) -> Value {
    match decimals(unit) {
        0 => json!(x.round()),
        d => {
            let f = 10f64.powi(d as i32);
            json!((x * f).round() / f)
        }
    }
}

fn json_text(t: &DiffTable, rows: &[DiffRow]) -> String {
    let u = t.unit.as_str();
    let row = |r: &DiffRow| {
        json!({
            "function": r.function, "module": r.module, "file": r.file, "line": r.line,
            "base_self": number(r.base_self, u), "new_self": number(r.new_self, u),
            "delta_self": number(r.delta_self(), u), "ratio_self": r.ratio_self().map(round3),
            "base_total": number(r.base_total, u), "new_total": number(r.new_total, u),
            "delta_total": number(r.delta_total(), u), "ratio_total": r.ratio_total().map(round3),
            "presence": r.presence,
        })
    };
    let names = |p: Presence| -> Vec<Value> {
        t.rows
            .iter()
            .filter(|r| r.presence == p)
            .map(|r| json!({"function": r.function, "module": r.module, "file": r.file, "line": r.line}))
            .collect()
    };
    let v = json!({
        "view": t.view,
        "metric": t.metric,
        "normalize": t.normalize,
        "unit": t.unit,
        "base_total": number(t.base_total, u),
        "new_total": number(t.new_total, u),
        "rows": rows.iter().map(row).collect::<Vec<_>>(),
        "only_in_base": names(Presence::BaseOnly),
        "only_in_new": names(Presence::NewOnly),
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// ` file:line`, ` file` or nothing.
fn location(r: &DiffRow) -> String {
    match (r.file.as_str(), r.line) {
        ("", _) => String::new(),
        (f, Some(l)) => format!(" {f}:{l}"),
        (f, None) => format!(" {f}"),
    }
}

/// Unmatched rows listed under the table, at most this many per side.
const UNMATCHED_LISTED: usize = 20;

fn text(t: &DiffTable, rows: &[DiffRow]) -> String {
    let u = t.unit.as_str();
    let change = if t.base_total > 0.0 {
        format!(
            ", {:+.1}%",
            round2((t.new_total - t.base_total) * 100.0 / t.base_total)
        )
    } else {
        String::new()
    };
    let what = match t.view {
        "lines" => "Lines",
        "modules" => "Modules",
        "ranks" => "Ranks",
        _ => "Functions",
    };
    let mut s = format!(
        "{what} by change of self, in {u} ({}, normalize {}): base total {}, new total {}{change}\n",
        t.metric,
        t.normalize,
        value_text(t.base_total, u),
        value_text(t.new_total, u),
    );
    s.push_str(&format!(
        "{:>12} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7}  {}\n",
        "base_self", "new_self", "delta", "ratio", "base_total", "new_total", "ratio", "name"
    ));
    for r in rows {
        let name = match t.view {
            "modules" | "ranks" => r.function.clone(),
            _ => format!("{} ({}){}", r.function, r.module, location(r)),
        };
        let mark = match r.presence {
            Presence::Both => "",
            Presence::BaseOnly => "  [only in base]",
            Presence::NewOnly => "  [only in new]",
        };
        s.push_str(&format!(
            "{:>12} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7}  {name}{mark}\n",
            value_text(r.base_self, u),
            value_text(r.new_self, u),
            signed_text(r.delta_self(), u),
            ratio_text(r.ratio_self()),
            value_text(r.base_total, u),
            value_text(r.new_total, u),
            ratio_text(r.ratio_total()),
        ));
    }
    if rows.len() < t.rows.len() {
        s.push_str(&format!(
            "... {} more rows (--top N, or --format csv for all)\n",
            t.rows.len() - rows.len()
        ));
    }
    for (title, p) in [
        ("Only in base", Presence::BaseOnly),
        ("Only in new", Presence::NewOnly),
    ] {
        let list: Vec<&DiffRow> = t.rows.iter().filter(|r| r.presence == p).collect();
        if list.is_empty() {
            continue;
        }
        s.push_str(&format!("\n{title} ({} rows):\n", list.len()));
        for r in list.iter().take(UNMATCHED_LISTED) {
            let v = if p == Presence::BaseOnly {
                r.base_total
            } else {
                r.new_total
            };
            s.push_str(&format!(
                "  {:>12} {u}  {} ({}){}\n",
                value_text(v, u),
                r.function,
                r.module,
                location(r)
            ));
        }
        if list.len() > UNMATCHED_LISTED {
            s.push_str(&format!(
                "  ... {} more (--format csv lists all)\n",
                list.len() - UNMATCHED_LISTED
            ));
        }
    }
    s
}
