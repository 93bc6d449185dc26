//! The integration-test harness, one for every test file:
//!
//! * `env`: a temporary archive and data directory, synthetic segments;
//! * `job`: the one runner for the binary under test ([`Job`], [`Done`]);
//! * `pg`: throw-away PostgreSQL servers. It lives in its own file so that
//!   examples can include it with `#[path = "../tests/support/pg.rs"] mod pg;`,
//!   and it holds the generic helpers ([`wait_until`], [`is_root`]) used by
//!   both.
#![allow(dead_code, unused_imports)]

mod env;
mod job;
pub mod pg;

use std::path::PathBuf;

pub use env::*;
pub use job::*;
pub use pg::{is_root, wait_until};

/// `Result::unwrap` that prints the whole error chain, and panics (so server
/// logs get printed while the servers are dropped).
pub trait Must<T> {
    fn must(self) -> T;
}

impl<T> Must<T> for anyhow::Result<T> {
    #[track_caller]
    fn must(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("{e:#}"),
        }
    }
}

/// Tests that need root (a mount, a uid of their own) fail without it:
/// a test that returned early would count as passed.
#[track_caller]
pub fn require_root(for_what: &str) {
    assert!(
        is_root(),
        "this test needs root ({for_what}): run the tests as root, as .ci/run does"
    );
}

/// This build's binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pg_standby"))
}

/// The pg_standby under test in the real-server suites: this build, or
/// `PG_STANDBY_BIN` to run the same scenarios against another restore
/// command.
pub fn binary_under_test() -> PathBuf {
    std::env::var_os("PG_STANDBY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(binary)
}
