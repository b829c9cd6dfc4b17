//! `--view hotspots`: functions by self and total, with the counter-group columns.

use super::ReportFormat;
use super::table::{GroupColumns, format_rows, function_rows_with, stacks_total};
use crate::profile::Profile;
use crate::profile::stacks::StackFilter;

/// `--view hotspots`.
pub fn hotspots(p: &Profile, format: ReportFormat, top: usize, filter: StackFilter) -> String {
    let stacks = p.weighted_stacks(filter);
    let cols = GroupColumns::of(p);
    let rows = function_rows_with(p, &stacks, &cols, filter);
    format_rows(
        p,
        &rows,
        stacks_total(&stacks),
        format,
        top,
        "Functions",
        &cols,
    )
}
