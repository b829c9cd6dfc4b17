//! Exports: one file per output format, each reading a loaded [`crate::profile::Profile`].

use std::path::PathBuf;

use crate::cli::ExportFormat;
use crate::profile::Profile;
use crate::profile::stacks::StackFilter;

/// Errors writing an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The output could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// Output path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The format is not built yet.
    #[error("export format {0:?} is not available in this build")]
    Unsupported(ExportFormat),
}

/// Write `profile` in `format` to `out`.
pub fn export(
    _profile: &Profile,
    format: ExportFormat,
    _filter: StackFilter,
    _out: &mut dyn std::io::Write,
) -> Result<(), ExportError> {
    Err(ExportError::Unsupported(format))
}

/// `hwprof export` (being built).
pub fn run(args: &crate::cli::ExportArgs) -> anyhow::Result<()> {
    let p = Profile::load(&args.dir)?;
    let mut out = std::io::stdout();
    export(
        &p,
        args.format,
        StackFilter {
            frames: args.frames,
            rank: args.rank,
        },
        &mut out,
    )?;
    Ok(())
}
