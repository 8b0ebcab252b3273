//! `kici-admin`: argv → command → exit code. Exit codes are decided here only: 0 success,
//! 1 any error (printed once as `Error: <message>` on stderr), argh's own codes for usage errors,
//! and for `runs logs --follow` the watched run's outcome (1 failed, 2 cancelled; `Error::Outcome`,
//! printed without the prefix). One exception, by design: a closed stdout ends the process with
//! exit 0 where the write failed (`cli::output`, ripgrep's rule: `kici-admin … | head -1`).

use std::process::ExitCode;

use argh::FromArgs;
use kici_orchestrator::cli;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let args = cli::normalize_args(argv.get(1..).unwrap_or_default());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let top = match cli::TopLevel::from_args(&["kici-admin"], &refs) {
        Ok(top) => top,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    cli::output::write_stdout(format_args!("{}\n", early.output));
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprintln!("{}", early.output);
                    ExitCode::FAILURE
                }
            };
        }
    };
    match cli::dispatch(top) {
        Ok(()) => ExitCode::SUCCESS,
        // What a watched run ended with is not an error of the command: no "Error:" prefix.
        Err(e @ kici_orchestrator::Error::Outcome { .. }) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
