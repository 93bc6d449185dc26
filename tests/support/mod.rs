//! Test support: the real-server harness lives in `pg.rs` so examples can
//! include it with `#[path = "../tests/support/pg.rs"] mod pg;`.
pub mod pg;
