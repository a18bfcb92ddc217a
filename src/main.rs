//! mfactl: manage per-user MFA settings the GitOps way. Parse, run, map the error to an exit code.

use clap::Parser;

fn main() {
    let cli = mfactl::cli::Cli::parse();
    let code = match mfactl::commands::run(cli) {
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
