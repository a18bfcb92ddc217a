//! mfactl: manage per-user MFA settings the GitOps way. Parse, run, map the error to an exit code.

mod audit;
mod cli;
mod commands;
mod error;
mod manifest;
mod model;
mod plan;
mod policy;
mod render;
mod saved;
mod sources;
mod store;
mod watch;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(failure) => {
            for line in &failure.lines {
                eprintln!("{line}");
            }
            failure.code
        }
    };
    std::process::exit(code as i32);
}
