//! `pg_standby --check [-D DATADIR] [--json]`: inspect a standby's setup
//! without starting anything, and report each problem with its fix.
//!
//! Exit status: 0 when no finding is an error (warnings and notes alone give
//! 0), 1 when at least one error would break recovery or failover. (Not a
//! restore_command mode: the server never runs this, so 1 cannot promote.)

mod access;
mod archive;
mod command;
mod recovery;
mod registry;
mod remote;
mod report;
mod server;
mod setup;
mod shell;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::archive::codec::{Codec, decompress_to};
use crate::archive::is_object_storage;
use crate::cli::Cli;
use crate::server::datadir::RecoveryMode;
use crate::server::pgconf::Conf;
use crate::wal::SegmentName;
use crate::wal::header::{LONG_HEADER_LEN, LongPageHeader, fmt_lsn};

use crate::server::control::Control;
pub use access::Owner;
pub use server::ServerEnv;

use archive::*;
use command::*;
pub use recovery::prefetch_stall;
use recovery::*;
use remote::*;
use report::*;
use setup::*;

/// Placeholders put where the server substitutes %f, %p and %r, so that the
/// parsed command line shows where each one landed.
const SENT_F: &str = "\u{1}%f\u{1}";
const SENT_P: &str = "\u{1}%p\u{1}";
const SENT_R: &str = "\u{1}%r\u{1}";

/// The data directory to inspect: `-D`, else $PGDATA, else the current
/// directory.
pub fn datadir_from(cli_value: Option<PathBuf>) -> PathBuf {
    cli_value
        .or_else(|| std::env::var_os("PGDATA").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The whole `--check` mode: inspect, print, and return the exit status.
pub fn main(cli: &Cli) -> u8 {
    // An archive alone: its registry of standbys.
    if let (Some(archive), None) = (&cli.archive, &cli.pgdata) {
        let expiry = std::time::Duration::from_secs(cli.standby_expiry * 3600);
        let findings = registry::of_archive(archive, expiry);
        let out = if cli.json {
            to_json(&findings)
        } else {
            to_text(archive, &findings)
        };
        crate::obs::logging::write_stdout(out.as_bytes());
        return exit_status(&findings);
    }
    let datadir = datadir_from(cli.pgdata.clone());
    let datadir = std::path::absolute(&datadir).unwrap_or(datadir);
    let findings = inspect(&datadir);
    let out = if cli.json {
        to_json(&findings)
    } else {
        to_text(&datadir, &findings)
    };
    crate::obs::logging::write_stdout(out.as_bytes());
    exit_status(&findings)
}

/// Every finding for the data directory `datadir`.
pub fn inspect(datadir: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(setup) = read_setup(datadir, &mut out) else {
        return out;
    };
    setup_passed(&setup, &mut out);
    check_prefetch(&setup, &mut out);
    check_restore_command(&setup, &mut out);
    out.sort_by_key(|f| f.severity);
    out
}

#[cfg(test)]
mod tests;
