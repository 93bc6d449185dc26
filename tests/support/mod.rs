//! Test support: the real-server harness lives in `pg.rs` so examples can
//! include it with `#[path = "../tests/support/pg.rs"] mod pg;`.
#![allow(dead_code)]

pub mod pg;

use std::path::PathBuf;

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

/// The pg_standby under test: this build, or `PG_STANDBY_BIN` to run the
/// same scenarios against another restore command.
pub fn binary_under_test() -> PathBuf {
    std::env::var_os("PG_STANDBY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pg_standby")))
}
