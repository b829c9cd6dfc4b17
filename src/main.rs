//! The command line: parse, dispatch, map errors to exit codes.
//! Usage errors exit 2 (clap's convention), hwprof's own failures 1, and `collect`
//! exits with the target's status.

use std::process::ExitCode;

use clap::Parser;
use hwprof::cli::{Cli, Command};

fn main() -> ExitCode {
    // `doctor` loads the agent library in a child process of ours (a bad library then
    // harms the child, not doctor): the child is this binary, told so by this variable.
    if let Some(lib) = std::env::var_os(hwprof::python::embedded::DLOPEN_CHECK_VAR) {
        return hwprof::python::embedded::dlopen_in_this_process(std::path::Path::new(&lib));
    }
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hwprof: error: {e:#}");
            if hwprof::needs_fd_limit_hint(&e) {
                eprintln!(
                    "hwprof: out of file descriptors: raise the open-files limit (`ulimit -n` up to `ulimit -Hn`; the hard limit in /etc/security/limits.conf)"
                );
            }
            let usage = hwprof::is_usage_error(&e);
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Collect(args) => {
            let opts = hwprof::collect::CollectOptions::try_from(&args)?;
            let outcome = hwprof::collect::run(&opts)?;
            let finalize_here = !args.no_finalize
                && hwprof::collect::should_finalize(
                    &outcome.dir,
                    &opts.mpi,
                    std::time::Duration::from_secs(120),
                    args.quiet,
                );
            // MPI: rank 0 prints each distinct notice of the job once (after the wait
            // above, so the other ranks' notices are in).
            if !args.quiet {
                hwprof::collect::print_job_notices(&outcome.dir, &opts.mpi);
            }
            if finalize_here {
                let fopts = hwprof::finalize::FinalizeOptions {
                    dir: outcome.dir.clone(),
                    search_dirs: Vec::new(),
                    jobs: args.jobs,
                    part: None,
                    quiet: args.quiet,
                    timings: false,
                };
                hwprof::finalize::run(&fopts)?;
                if !args.quiet {
                    let summary = hwprof::report::summary_after_collect(&outcome.dir)?;
                    eprint!("{summary}");
                }
            } else if !args.quiet && opts.mpi.rank.is_none_or(|r| r == 0) {
                eprintln!(
                    "hwprof: raw data in {} ({}); run `hwprof finalize {}`",
                    outcome.dir.display(),
                    hwprof::raw::human_bytes(hwprof::raw::raw_bytes(&outcome.dir)),
                    outcome.dir.display()
                );
            }
            Ok(ExitCode::from(outcome.exit_code.clamp(0, 255) as u8))
        }
        Command::Finalize(args) => {
            let opts = hwprof::finalize::FinalizeOptions::try_from(&args)?;
            let written = hwprof::finalize::run(&opts)?;
            // One closing line: what was produced and how to look at it.
            if !args.quiet {
                let dir = args.dir.display();
                match &args.part {
                    Some(_) => eprintln!(
                        "hwprof: wrote {}; when every part is done, run `hwprof merge {dir}`",
                        written.display()
                    ),
                    None => eprintln!(
                        "hwprof: wrote {}; look at it with `hwprof report {dir}` (or `hwprof export {dir} --format html`)",
                        written.display()
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Merge(args) => {
            hwprof::finalize::merge(&args.dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(args) => {
            let opts: hwprof::report::ReportOptions = (&args).into();
            match opts.open {
                true => hwprof::export::open::run(&opts)?,
                false => hwprof::report::run(&opts)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(args) => {
            hwprof::export::run(&(&args).into())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff(args) => Ok(ExitCode::from(hwprof::diff::run(&(&args).into())?)),
        Command::ListEvents => {
            print!("{}", hwprof::events::list_events_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => {
            print!("{}", hwprof::doctor::doctor_text());
            Ok(ExitCode::SUCCESS)
        }
    }
}
