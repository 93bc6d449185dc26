//! Exit codes: the one contract between this program and the server.
//!
//! The server reads 1..=125 as "file not available", which outside standby
//! mode ends recovery and promotes. A code above 125 (other than 143, read
//! as a shutdown) or death by a signal aborts recovery with FATAL. So real
//! errors must never exit with 1..=125.

use std::process::ExitCode;

/// The file is at `%p`.
pub const RESTORED: u8 = 0;
/// The file is not available, or failover was asked for.
pub const NOT_RESTORED: u8 = 1;
/// Misconfiguration, I/O error or bad segment: PostgreSQL must stop
/// recovery (FATAL) rather than promote.
pub const FATAL: u8 = 250;

/// pg_standby 13's codes, for `--legacy-exit-codes`.
const LEGACY_USAGE: u8 = 2;
const LEGACY_TOO_LARGE: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fatal {
    /// Bad command line.
    Usage,
    /// The archive directory is missing or not a directory.
    Archive,
    /// A segment bigger than its segment size.
    Oversized,
    /// A segment that fails validation for too long.
    BadSegment,
    /// Copying still fails after its retries, or another I/O error.
    Io,
}

impl Fatal {
    /// A short name, for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Usage => "usage",
            Self::Archive => "archive",
            Self::Oversized => "oversized",
            Self::BadSegment => "bad_segment",
            Self::Io => "io",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Restored,
    NotRestored,
    Fatal(Fatal),
    /// Die by this signal once everything is cleaned up (SIGTERM for a
    /// shutdown, SIGINT for an immediate shutdown).
    Killed(i32),
}

impl Outcome {
    pub fn code(self, legacy: bool) -> u8 {
        match self {
            Self::Restored => RESTORED,
            Self::NotRestored => NOT_RESTORED,
            Self::Fatal(kind) if legacy => match kind {
                Fatal::Usage | Fatal::Archive => LEGACY_USAGE,
                Fatal::Oversized | Fatal::BadSegment => LEGACY_TOO_LARGE,
                Fatal::Io => NOT_RESTORED,
            },
            Self::Fatal(_) => FATAL,
            // Only reached if raising the signal did not end the process.
            Self::Killed(_) => FATAL,
        }
    }

    pub fn exit_code(self, legacy: bool) -> ExitCode {
        ExitCode::from(self.code(legacy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_look_like_a_missing_file() {
        for kind in [
            Fatal::Usage,
            Fatal::Archive,
            Fatal::Oversized,
            Fatal::BadSegment,
            Fatal::Io,
        ] {
            let code = Outcome::Fatal(kind).code(false);
            assert!(code > 125 && code != 143, "{kind:?} -> {code}");
        }
        assert_eq!(Outcome::Restored.code(false), 0);
        assert_eq!(Outcome::NotRestored.code(false), 1);
    }

    #[test]
    fn legacy_codes_are_pg_standby_13s() {
        assert_eq!(Outcome::Fatal(Fatal::Usage).code(true), 2);
        assert_eq!(Outcome::Fatal(Fatal::Archive).code(true), 2);
        assert_eq!(Outcome::Fatal(Fatal::Oversized).code(true), 3);
        assert_eq!(Outcome::Fatal(Fatal::Io).code(true), 1);
    }
}
