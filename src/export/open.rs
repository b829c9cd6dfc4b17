//! `hwprof report DIR --open`: write the HTML report and hand it to a browser.
//!
//! The page goes to `DIR/report.html`, or to a temporary file when DIR is not
//! writable. The browser is `$BROWSER` (a command, or several separated by `:` as
//! in xdg-utils; the first that starts wins), else `xdg-open`. On a compute node
//! with neither, the path is printed with what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{ExportError, Model};
use crate::profile::Profile;
use crate::profile::stacks::StackFilter;

/// `hwprof report --open`: the report's profile and filter, as HTML in a browser.
pub fn run(opts: &crate::report::ReportOptions) -> anyhow::Result<()> {
    let (profile, filter) = opts.load()?;
    write_and_open(&profile, &opts.dir, filter)
}

/// Write the report, open it, and say where it is.
pub fn write_and_open(profile: &Profile, dir: &Path, filter: StackFilter) -> anyhow::Result<()> {
    let model = Model::new(profile, filter);
    let mut page = Vec::new();
    super::html::write(profile, &model, filter, &mut page)?;
    let path = write_page(dir, &page)?;
    match open_with_browser(&path) {
        Some(browser) => eprintln!("hwprof: wrote {}; opened it with {browser}", path.display()),
        None => eprintln!(
            "hwprof: wrote {}; no browser to open it ($BROWSER is not set and xdg-open is not installed): copy it to a machine with a browser, or open it there",
            path.display()
        ),
    }
    Ok(())
}

fn write_page(dir: &Path, page: &[u8]) -> Result<PathBuf, ExportError> {
    let beside = dir.join("report.html");
    if std::fs::write(&beside, page).is_ok() {
        return Ok(beside);
    }
    let tmp = std::env::temp_dir().join(format!("hwprof-report-{}.html", std::process::id()));
    std::fs::write(&tmp, page).map_err(|cause| ExportError::Io {
        path: tmp.clone(),
        cause,
    })?;
    Ok(tmp)
}

/// Start a browser on `path`; the command that started, or None.
fn open_with_browser(path: &Path) -> Option<String> {
    let mut candidates: Vec<String> = std::env::var("BROWSER")
        .unwrap_or_default()
        .split(':')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    candidates.push("xdg-open".into());
    candidates.into_iter().find(|cmd| {
        // `$BROWSER` may hold arguments ("firefox --new-window"); `%s` is the file.
        let mut words = cmd.split_whitespace();
        let Some(program) = words.next() else {
            return false;
        };
        let mut args: Vec<String> = words.map(String::from).collect();
        let file = path.display().to_string();
        match args.iter_mut().find(|a| a.contains("%s")) {
            Some(a) => *a = a.replace("%s", &file),
            None => args.push(file),
        }
        Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .is_ok()
    })
}
