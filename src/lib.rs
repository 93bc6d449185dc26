//! pg_standby: a waiting restore_command for PostgreSQL 10-18 warm
//! standbys, a drop-in replacement for the pg_standby PostgreSQL shipped
//! until version 13.
//!
//! The program is [`main`]; the library exposes only what tests and tools
//! need besides it: WAL file names ([`wal`]), the segment header check
//! ([`header`]), the object stores ([`store`]) and the `-k` cleanup
//! arithmetic ([`cutoff_keeping`]).
//!
//! A map of the modules, by what the program is made of (docs/guide.md
//! says what it does; this says where):
//!
//! * The call: `cli` parses the command line, `config` validates it into a
//!   [`config::Mode`], `restore` runs one restore call (`restore::found`
//!   looks, `restore::failover` reads who asks for a failover,
//!   `restore::report` logs the outcome, `restore::prefetching` uses
//!   the spool, `restore::ended` marks the end of recovery), `exit` builds
//!   the one exit message and status.
//! * The decisions, pure and table-tested: `policy` (what to do next, the
//!   pace, who is failing over), `trigger` (what the trigger file says,
//!   whether it is stale), `archive::store::classify` (what a store's answer
//!   means), `prefetch::spool::next_to_fetch`, `archive::cutoff` (which
//!   names the cleanup removes), `archive::registry::standing` (where a standby stands).
//! * `archive/`: where segments come from, one boundary (`archive`) over a
//!   directory or object storage (`archive::store`: `s3`, `gcs`, `azure`,
//!   with `classify`, `body` and the credential sources), compressed
//!   segments (`codec`, `unpack`), is this the segment asked for
//!   (`validate`), what may be removed (`cutoff`, `registry`) and its removal
//!   (`cleanup`, in a process of its own).
//! * `destination`: delivering into `%p`, atomically, never partial.
//! * `wal/`: WAL file names and LSN arithmetic (`wal`), the segment header
//!   (`wal::header`), timeline history (`wal::timeline`).
//! * `prefetch/`: the fetcher process (`prefetch`) and its spool
//!   (`prefetch::spool`).
//! * `server/`: the server around us: `datadir` (recovery mode, start time,
//!   system identifier), `pgconf` (postgresql.conf as the server reads it),
//!   `control` (pg_control).
//! * `check/`: `--check`, which reads the same rules the restore applies:
//!   the data directory (`setup`), restore_command (`command`, `shell`,
//!   `access`), the archive (`archive`, `remote`, `registry`), what ends or
//!   stalls recovery (`recovery`), the server's environment (`server`), and
//!   the findings as text or JSON (`report`).
//! * `sys/`: `open` (files others control), `access` (advice for files we
//!   may not read), `flock`, `mounts`, `signals`, `waiter` (inotify and
//!   signal wake-ups).
//! * `obs/`: what an operator sees: `logging` (stderr, never fatal),
//!   `metrics`.

mod archive;
mod check;
mod cli;
mod config;
mod destination;
mod exit;
mod obs;
mod policy;
mod prefetch;
mod restore;
mod server;
mod sys;
mod trigger;
/// Public as an API for tests and tools (WAL file names and segment
/// arithmetic, the segment header); not a stable interface.
pub mod wal;

/// Public as an API for tests and tools (the codecs, the object stores);
/// not a stable interface.
pub use archive::{codec, store};
/// Public as an API for tests and tools; not a stable interface.
pub use wal::header;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;

/// Public as an API for the property tests: the oldest segment `-k N`
/// keeps.
pub use archive::cutoff::cutoff_keeping;

use archive::cleanup;
use cli::Cli;
use config::Mode;
use exit::{Fatal, Outcome};
use obs::logging;
use restore::Session;
use sys::signals;

/// The command line's definition, for the generators of the manual page
/// and the shell completion (examples/man.rs); not a stable interface.
#[doc(hidden)]
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// The whole program, for src/main.rs.
pub fn main() -> ExitCode {
    logging::process_start();
    // Every line on stderr goes through the logger, from the first one on.
    logging::init();
    // Any panic must stop recovery, not look like "file not available";
    // and the report must not panic again on a broken stderr.
    std::panic::set_hook(Box::new(|info| {
        logging::log(tracing::Level::ERROR, &format!("internal error: {info}"));
        std::process::exit(i32::from(exit::FATAL));
    }));
    let legacy = std::env::args_os().any(|a| a == "--legacy-exit-codes");
    // First of all, so that no signal meets its default action (SIGUSR1's
    // would kill us, which the server reads as FATAL, not as a failover).
    if let Err(e) = signals::install() {
        tracing::error!("{e:#}");
        return Outcome::Fatal(Fatal::Io).exit_code(legacy);
    }
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            // A closed or full stdout does not make --help fail.
            logging::write_stdout(e.render().to_string().as_bytes());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's first line says what is wrong; the rest (usage, tips
            // about "--") is noise in a server log: the hint points to --help.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid command line");
            let message = first.strip_prefix("error: ").unwrap_or(first);
            return usage_error(message, legacy).exit_code(legacy);
        }
    };
    logging::set_debug(cli.debug);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let outcome = match Mode::from_cli(cli, &cwd) {
        Ok(Mode::PrefetchWorker(spool)) => return prefetch::worker(spool),
        Ok(Mode::Cleanup {
            cutoff,
            archive,
            dry_run,
            registration,
        }) => return cleanup::detached(&cutoff, archive.as_deref(), dry_run, registration),
        Ok(Mode::Check(cli)) => return ExitCode::from(check::main(&cli)),
        Ok(Mode::Restore(config)) => Session::new(*config, cwd, legacy).run(),
        Err(e) => usage_error(format!("{e:#}"), legacy),
    };
    if let Outcome::Killed(signal) = outcome {
        signals::die_by(signal);
    }
    outcome.exit_code(legacy)
}

/// A bad command line: one ERROR line and a hint, as PostgreSQL's tools
/// print them.
fn usage_error(message: impl std::fmt::Display, legacy: bool) -> Outcome {
    let outcome = Outcome::Fatal(Fatal::Usage);
    tracing::error!("{}", exit::exit_message(message, outcome, legacy));
    logging::hint("Try \"pg_standby --help\" for more information.");
    outcome
}
