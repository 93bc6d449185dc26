use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use pg_standby::{Cli, Fatal, Outcome, exit, logging, signals};

fn main() -> ExitCode {
    // Any panic must stop recovery, not look like "file not available".
    std::panic::set_hook(Box::new(|info| {
        eprintln!("pg_standby: internal error: {info}");
        std::process::exit(i32::from(exit::FATAL));
    }));
    let legacy = std::env::args_os().any(|a| a == "--legacy-exit-codes");
    // First of all, so that no signal meets its default action (SIGUSR1's
    // would kill us, which the server reads as FATAL, not as a failover).
    if let Err(e) = signals::install() {
        eprintln!("pg_standby: {e:#}");
        return Outcome::Fatal(Fatal::Io).exit_code(legacy);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let outcome = Outcome::Fatal(Fatal::Usage);
            eprintln!(
                "pg_standby: {}\npg_standby: exiting with {}{}",
                e.render().to_string().trim_end(),
                outcome.code(legacy),
                if legacy {
                    ""
                } else {
                    " so that PostgreSQL stops instead of promoting"
                }
            );
            return outcome.exit_code(legacy);
        }
    };
    logging::init(cli.debug);
    let outcome = pg_standby::run(cli);
    if let Outcome::Killed(signal) = outcome {
        signals::die_by(signal);
    }
    outcome.exit_code(legacy)
}
