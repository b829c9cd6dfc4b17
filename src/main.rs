//! The command line: parse, dispatch, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use hwprof::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Export(args) => hwprof::export::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Report(_)
        | Command::Collect(_)
        | Command::Finalize(_)
        | Command::Merge(_)
        | Command::ListEvents
        | Command::Doctor => Err(anyhow::anyhow!("not built yet")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hwprof: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
