//! pg_standby: a waiting restore_command for PostgreSQL 10-18 warm
//! standbys, a drop-in replacement for the pg_standby PostgreSQL shipped
//! until version 13.
//!
//! [`run`] is the whole program; `main` installs the signal handlers
//! ([`signals::install`]), parses and exits.

mod archive;
pub mod cleanup;
pub mod cli;
pub mod config;
pub mod copy;
pub mod datadir;
pub mod exit;
pub mod header;
pub mod logging;
mod mounts;
mod open;
mod policy;
pub mod probe;
mod restore;
#[cfg(feature = "s3")]
pub mod s3;
pub mod signals;
pub mod timeline;
pub mod trigger;
pub mod waiter;
pub mod wal;

use std::path::PathBuf;

pub use cli::Cli;
pub use exit::{Fatal, Outcome};

use config::Config;
use restore::Session;

pub fn run(cli: Cli) -> Outcome {
    let legacy = cli.legacy_exit_codes;
    if cli.link {
        tracing::debug!("-l (link mode) is not supported, as in pg_standby 13: copying");
    }
    if !cli.extra.is_empty() {
        tracing::warn!("ignoring extra arguments: {}", cli.extra.join(" "));
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let config = match Config::from_cli(cli, &cwd) {
        Ok(c) => c,
        Err(e) => {
            let code = Outcome::Fatal(Fatal::Usage).code(legacy);
            tracing::error!(
                "{e:#}; exiting with {code}{} (try \"pg_standby --help\")",
                if legacy {
                    ""
                } else {
                    " so that PostgreSQL stops instead of promoting"
                }
            );
            return Outcome::Fatal(Fatal::Usage);
        }
    };
    Session::new(config, cwd, legacy).run()
}
