//! The server around us: its data directory (recovery mode, start time,
//! system identifier), postgresql.conf as the server reads it, and the few
//! fields of pg_control `--check` needs.

pub mod control;
pub mod datadir;
pub mod pgconf;
