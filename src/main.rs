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
