//! Collapsed ("folded") stacks, Brendan Gregg's format read by `flamegraph.pl`,
//! inferno, speedscope and many others.
//!
//! One line per distinct stack: the frame labels from outermost to leaf joined by `;`,
//! a space, and the stack's weight in the mode's metric (samples, bytes or ns):
//!
//! ```text
//! main;compute;dgemm 1234
//! ```
//!
//! Identical stacks (after the `--frames` filter, across threads) are merged; lines are
//! sorted. Labels lose the characters the format cannot carry: `;` becomes `:` and
//! control characters become spaces. Python labels are `qualname (file:line)`.

use std::collections::BTreeMap;
use std::io::Write;

use super::{ExportError, Model};

/// The folded lines of the model: (stack text, weight), sorted by stack text.
pub fn folded(model: &Model) -> Vec<(String, u64)> {
    let labels: Vec<String> = model.functions.iter().map(|f| sanitize(&f.label)).collect();
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    for s in &model.stacks {
        let text = s
            .frames
            .iter()
            .map(|&fr| labels[model.frames[fr].function].as_str())
            .collect::<Vec<_>>()
            .join(";");
        *merged.entry(text).or_default() += s.value;
    }
    merged.into_iter().filter(|(_, v)| *v > 0).collect()
}

/// A label made safe for the folded format.
pub fn sanitize(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let s = s.trim();
    if s.is_empty() {
        "[unknown]".to_string()
    } else {
        s.to_string()
    }
}

/// Write the model as folded stacks.
pub fn write(model: &Model, out: &mut dyn Write) -> Result<(), ExportError> {
    for (stack, value) in folded(model) {
        writeln!(out, "{stack} {value}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::written_sample_text;

    #[test]
    fn lines_carry_stacks_and_weights() {
        let text = written_sample_text(write);
        assert_eq!(
            text,
            "main;Runner.run (app.py:5);PyEval 2\nmain;a 3\nmain;a;a 2\nmain;b 1\n"
        );
    }

    #[test]
    fn separators_are_replaced() {
        assert_eq!(sanitize("f<[u8; 8]>\n"), "f<[u8: 8]>");
        assert_eq!(sanitize("  "), "[unknown]");
    }
}
