//! `flowcli`: the command line client of flowserver.
//!
//! Every failure prints one line `flowcli: <reason>` to stderr. Exit codes:
//! 0 success; 1 the server refused the call (gRPC status) or a job waited for
//! with `--stop-at-eof` did not end in Success; 2 bad arguments, an
//! unreadable file, or an unreachable server.

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Err(error) = cli.validate() {
        error.exit();
    }
    // `--log-dir` is accepted for compatibility and ignored.
    match commands::run(&cli.host, cli.port, cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("flowcli: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
