//! `--view modules`: modules (ELF files, python) by self and total.

use super::ReportFormat;
use super::table::{GroupColumns, MODULES, Row, format_rows, rank_by, sort_rows, stacks_total};
use crate::profile::Profile;
use crate::profile::stacks::StackFilter;

/// `--view modules`.
pub fn modules(p: &Profile, format: ReportFormat, top: usize, filter: StackFilter) -> String {
    let stacks = p.weighted_stacks(filter);
    let acc = rank_by(&stacks, |f| {
        p.functions[p.frames[f].function].module.clone()
    });
    let mut rows: Vec<Row> = acc
        .into_iter()
        .map(|(m, (s, t, _))| Row {
            function: m.clone(),
            module: m,
            self_value: s,
            total_value: t,
            ..Default::default()
        })
        .collect();
    sort_rows(&mut rows);
    format_rows(
        p,
        &rows,
        stacks_total(&stacks),
        format,
        top,
        MODULES,
        &GroupColumns::default(),
    )
}
