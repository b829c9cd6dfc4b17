//! The regression gate of `hwprof diff --fail-above PCT [--function NAME]`.
//!
//! One unit of work is one run of the profiled command: BASE and NEW are expected to
//! run the same input. The gate compares, in the table's unit, either the whole total
//! (CPU seconds with `--normalize time`, the raw metric with `none`) or the inclusive
//! total of one function (with `--normalize percent`: its share of each run). It fails
//! when NEW exceeds BASE by more than PCT percent of BASE; a function absent from BASE
//! and present in NEW has grown without bound.

use super::{DiffError, DiffRow, DiffTable};

/// Exit status of `hwprof diff` when the gate fails (1 is hwprof's own failure, 2 a
/// usage error).
pub const GATE_FAILED_EXIT: u8 = 3;

/// Rows named as responsible for a failure.
const RESPONSIBLE: usize = 5;

/// Parse `5`, `5%`, `2.5 %` into a percentage.
pub fn parse_threshold(s: &str) -> Result<f64, DiffError> {
    let t = s.trim().trim_end_matches('%').trim();
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(DiffError::Usage(format!(
            "--fail-above {s:?}: expected a non-negative percentage such as 5 or 5%"
        ))),
    }
}

/// What the gate decided.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// `total` or the function's name.
    pub subject: String,
    /// BASE's value in the table's unit.
    pub base: f64,
    /// NEW's value.
    pub new: f64,
    /// Growth in percent of BASE (infinite when BASE is 0 and NEW is not).
    pub growth_pct: f64,
    /// The threshold.
    pub threshold_pct: f64,
    /// True when growth exceeds the threshold.
    pub failed: bool,
    /// The rows whose self value grew most (largest first).
    pub responsible: Vec<DiffRow>,
}

/// Apply the gate to a table (hotspots or lines view for `--function`).
pub fn check(
    table: &DiffTable,
    threshold_pct: f64,
    function: Option<&str>,
) -> Result<Verdict, DiffError> {
    let (subject, base, new, rows): (String, f64, f64, Vec<&DiffRow>) = match function {
        None => {
            if table.normalize == "percent" {
                return Err(DiffError::Usage(
                    "--fail-above without --function compares totals, which --normalize percent makes 100 on both sides; use --normalize time (the default) or none, or name a function with --function".into(),
                ));
            }
            (
                "total".into(),
                table.base_total,
                table.new_total,
                table.rows.iter().collect(),
            )
        }
        Some(name) => {
            let rows: Vec<&DiffRow> = table.rows.iter().filter(|r| r.function == name).collect();
            if rows.is_empty() {
                return Err(DiffError::NoSuchFunction(name.to_string()));
            }
            // The same name in several modules or files: gate on their sum.
            let base = rows.iter().map(|r| r.base_total).sum();
            let new = rows.iter().map(|r| r.new_total).sum();
            (name.to_string(), base, new, table.rows.iter().collect())
        }
    };
    let growth_pct = if base > 0.0 {
        (new - base) * 100.0 / base
    } else if new > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    let mut responsible: Vec<DiffRow> = rows
        .into_iter()
        .filter(|r| r.delta_self() > 0.0)
        .cloned()
        .collect();
    responsible.sort_by(|a, b| b.delta_self().total_cmp(&a.delta_self()));
    responsible.truncate(RESPONSIBLE);
    Ok(Verdict {
        subject,
        base,
        new,
        growth_pct,
        threshold_pct,
        failed: growth_pct > threshold_pct,
        responsible,
    })
}

impl Verdict {
    /// The lines printed on standard error.
    pub fn message(&self, unit: &str) -> String {
        let fmt = |x: f64| super::render::value_text(x, unit);
        let growth = if self.growth_pct.is_finite() {
            format!("{:+.1}%", self.growth_pct)
        } else {
            "new".to_string()
        };
        let mut s = if self.failed {
            format!(
                "hwprof: regression: {} grew {growth} ({} {unit} -> {} {unit}), above the {}% allowed\n",
                self.subject,
                fmt(self.base),
                fmt(self.new),
                self.threshold_pct
            )
        } else {
            format!(
                "hwprof: gate passed: {} changed {growth} ({} {unit} -> {} {unit}), within {}%\n",
                self.subject,
                fmt(self.base),
                fmt(self.new),
                self.threshold_pct
            )
        };
        if self.failed && !self.responsible.is_empty() {
            s.push_str("hwprof: grown most (self):\n");
            for r in &self.responsible {
                s.push_str(&format!(
                    "  {} {unit}  {} ({})\n",
                    super::render::signed_text(r.delta_self(), unit),
                    r.function,
                    r.module
                ));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Presence;

    fn table(normalize: &'static str, rows: Vec<DiffRow>) -> DiffTable {
        DiffTable {
            view: "hotspots",
            metric: "samples".into(),
            normalize,
            unit: "s".into(),
            base_total: rows.iter().map(|r| r.base_self).sum(),
            new_total: rows.iter().map(|r| r.new_self).sum(),
            rows,
        }
    }

    fn r(f: &str, base: f64, new: f64) -> DiffRow {
        DiffRow {
            function: f.into(),
            module: "app".into(),
            file: String::new(),
            line: None,
            base_self: base,
            new_self: new,
            base_total: base,
            new_total: new,
            presence: Presence::Both,
        }
    }

    #[test]
    fn thresholds_parse_with_or_without_percent() {
        assert_eq!(parse_threshold("5").unwrap(), 5.0);
        assert_eq!(parse_threshold("5%").unwrap(), 5.0);
        assert_eq!(parse_threshold(" 2.5 % ").unwrap(), 2.5);
        assert!(parse_threshold("-1").is_err());
        assert!(parse_threshold("five").is_err());
    }

    #[test]
    fn total_gate_fails_above_threshold_and_names_growers() {
        let t = table("time", vec![r("a", 3.0, 3.0), r("b", 1.0, 2.0)]);
        let v = check(&t, 5.0, None).unwrap();
        assert!(v.failed);
        assert!((v.growth_pct - 25.0).abs() < 1e-9);
        assert_eq!(v.responsible.len(), 1);
        assert_eq!(v.responsible[0].function, "b");
        assert!(!check(&t, 100.0, None).unwrap().failed);
        assert!(check(&table("percent", vec![]), 5.0, None).is_err());
    }

    #[test]
    fn function_gate_uses_the_functions_total() {
        let t = table("percent", vec![r("a", 75.0, 60.0), r("b", 25.0, 40.0)]);
        assert!(check(&t, 50.0, Some("b")).unwrap().failed);
        assert!(!check(&t, 5.0, Some("a")).unwrap().failed);
        assert!(matches!(
            check(&t, 5.0, Some("zz")),
            Err(DiffError::NoSuchFunction(_))
        ));
    }
}
