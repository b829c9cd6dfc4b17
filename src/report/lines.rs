//! `--view lines`: source lines by self and total.

use super::ReportFormat;
use super::table::{GroupColumns, Row, format_rows, rank_by, sort_rows, stacks_total};
use crate::profile::Profile;
use crate::profile::stacks::StackFilter;

/// `--view lines`: one row per source line; total counts every stack through the line.
pub fn lines(p: &Profile, format: ReportFormat, top: usize, filter: StackFilter) -> String {
    let stacks = p.weighted_stacks(filter);
    let line_key = |f: usize| {
        let fr = &p.frames[f];
        (fr.function, fr.file.clone(), fr.line)
    };
    let acc = rank_by(&stacks, line_key);
    let cols = GroupColumns::of(p);
    let counts = cols.self_counts(p, filter, line_key);
    let mut rows: Vec<Row> = acc
        .into_iter()
        .map(|(k, (s, t, _))| {
            let extra = cols.cells(counts.get(&k));
            let (fi, file, line) = k;
            let f = &p.functions[fi];
            Row {
                function: f.name.clone(),
                module: f.module.clone(),
                file: file.or_else(|| f.file.clone()).unwrap_or_default(),
                line,
                self_value: s,
                total_value: t,
                extra,
            }
        })
        .collect();
    sort_rows(&mut rows);
    format_rows(p, &rows, stacks_total(&stacks), format, top, "Lines", &cols)
}
