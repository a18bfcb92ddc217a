//! mfactl: manage per-user MFA settings the GitOps way. Parse, run, map the error to an exit code.

use clap::Parser;

fn main() {
    let cli = match mfactl::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => std::process::exit(usage(&e)),
    };
    let code = match mfactl::commands::run(cli) {
        Ok(code) => code,
        Err(failure) => {
            mfactl::printer::failure(&failure);
            failure.code()
        }
    };
    std::process::exit(code as i32);
}

/// Prints what clap says and picks the exit code: 0 for `--help` and `--version` (on stdout),
/// 1 for every argument error. Clap's own 2 would read as "changes pending" to a pipeline that
/// runs `plan --detailed-exitcode`.
fn usage(e: &clap::Error) -> i32 {
    // A closed stdout (`mfactl --help | head`) is not worth a second message.
    let _ = e.print();
    if e.use_stderr() {
        mfactl::error::Exit::Error as i32
    } else {
        mfactl::error::Exit::Ok as i32
    }
}
