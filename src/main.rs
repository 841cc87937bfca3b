//! The `appliance` binary: parses the command line and hands it to
//! `appliance::cli::run`; errors print as one line and exit 1.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = appliance::cli::Cli::parse();
    match appliance::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
