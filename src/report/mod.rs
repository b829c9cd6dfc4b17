//! Views over profile.db: tables for a terminal, CSV with the contract's leading columns
//! (DESIGN section 2), and JSON. Every view ranks by the mode's metric.

pub mod memory; // --view memory (events worktree)
pub mod views;

use std::io::Write;
use std::path::Path;

use crate::cli::{ReportArgs, ReportFormat, View};
use crate::profile::Profile;
use crate::profile::stacks::StackFilter;

/// `hwprof report`.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let profile = Profile::load(&args.dir)?;
    let filter = StackFilter {
        frames: args.frames,
        rank: args.rank,
    };
    let text = render(&profile, args.view, args.format, args.top, filter)?;
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = out.write_all(text.as_bytes());
        }
    }
    Ok(())
}

/// Render one view.
pub fn render(
    p: &Profile,
    view: View,
    format: ReportFormat,
    top: usize,
    filter: StackFilter,
) -> anyhow::Result<String> {
    Ok(match view {
        View::Summary => views::summary(p, format, top, filter),
        View::Hotspots => views::hotspots(p, format, top, filter),
        View::Lines => views::lines(p, format, top, filter),
        View::Modules => views::modules(p, format, top, filter),
        View::Threads => views::threads(p, format, top, filter),
        View::Callers => views::callers(p, format, top, filter),
        View::Ranks => views::ranks(p, format, filter),
        View::Waits => views::waits(p, format, top, filter),
        View::Memory => memory::memory_view(p, format, top), // events worktree
    })
}

/// The short summary `collect` prints after finalizing.
pub fn summary_after_collect(dir: &Path) -> anyhow::Result<String> {
    let p = Profile::load(dir)?;
    let mut s = views::summary(&p, ReportFormat::Text, 10, StackFilter::default());
    s.push_str(&format!(
        "\nresults: {}  (hwprof report {} --view hotspots|lines|callers|threads ...)\n",
        dir.display(),
        dir.display()
    ));
    Ok(s)
}
