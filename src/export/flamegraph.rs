//! Flame graph SVG, drawn by the `inferno` crate from the folded stacks of
//! [`super::collapsed`]: an interactive SVG (click to zoom, Ctrl-F to search) that any
//! web browser opens. The title names the command, mode, filter and metric total; the
//! tooltip unit is the metric (`samples`, `bytes` or `ns`).

use std::io::Write;

use inferno::flamegraph::{self, Options};

use super::{ExportError, Model, collapsed};

/// Write the model as a flame graph SVG.
pub fn write(model: &Model, out: &mut dyn Write) -> Result<(), ExportError> {
    let lines: Vec<String> = collapsed::folded(model)
        .into_iter()
        .map(|(stack, value)| format!("{stack} {value}"))
        .collect();
    if lines.is_empty() {
        return Err(ExportError::NoSamples(model.filter_note.clone()));
    }
    let mut opts = Options::default();
    opts.title = model.title();
    opts.count_name = model.metric.name().to_string();
    opts.hash = true;
    flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::written_sample_text;
    use crate::profile::stacks::StackFilter;

    #[test]
    fn svg_names_functions() {
        let svg = written_sample_text(write);
        assert!(svg.contains("<svg"));
        assert!(svg.contains("main (8 samples, 100.00%)"), "{svg}");
    }

    #[test]
    fn empty_profile_is_an_error_not_a_panic() {
        let p = crate::profile::Profile::default();
        let m = Model::new(&p, StackFilter::default());
        let mut out = Vec::new();
        assert!(matches!(
            write(&m, &mut out),
            Err(ExportError::NoSamples(_))
        ));
    }
}
