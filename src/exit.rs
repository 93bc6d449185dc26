//! Exit codes: the one contract between this program and the server.
//!
//! The server reads 1..=125 as "file not available", which outside standby
//! mode ends recovery and promotes. A code above 125 (other than 143, read
//! as a shutdown) or death by a signal aborts recovery with FATAL. So real
//! errors must never exit with 1..=125.

use std::fmt::Display;
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
    pub const ALL: [Fatal; 5] = [
        Self::Usage,
        Self::Archive,
        Self::Oversized,
        Self::BadSegment,
        Self::Io,
    ];

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

/// What exiting with `outcome` tells the server, for the end of a log line:
/// the one place that words it.
fn exit_note(outcome: Outcome, legacy: bool) -> String {
    let code = outcome.code(legacy);
    match outcome {
        Outcome::Restored => format!("exiting with {code}"),
        Outcome::NotRestored => format!("exiting with {code} (file not available)"),
        Outcome::Fatal(_) if legacy => format!("exiting with {code} (--legacy-exit-codes)"),
        Outcome::Fatal(_) => {
            format!("exiting with {code} so that PostgreSQL stops recovery instead of promoting")
        }
        Outcome::Killed(signal) => format!("ending by signal {signal}"),
    }
}

/// The log line of an error that ends the program with `outcome`:
/// `message`, then how we exit and what the server will make of it. The
/// one place that builds that text (usage errors, configuration errors and
/// fatal errors during the restore all use it).
///
/// Punctuation: a message ending in '.' loses it before the "; exiting"
/// part; one ending in '?' or '!' (a question to the operator) is followed
/// by a new sentence instead.
pub fn exit_message(message: impl Display, outcome: Outcome, legacy: bool) -> String {
    let message = message.to_string();
    let message = message.trim_end();
    let note = exit_note(outcome, legacy);
    if message.ends_with(['?', '!']) {
        let mut chars = note.chars();
        let first = chars.next().map(|c| c.to_ascii_uppercase());
        format!("{message} {}{}", first.unwrap_or_default(), chars.as_str())
    } else {
        let message = message.strip_suffix('.').unwrap_or(message);
        format!("{message}; {note}")
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
    fn exit_messages_are_punctuated_and_say_what_the_server_does() {
        let fatal = Outcome::Fatal(Fatal::Usage);
        assert_eq!(
            exit_message("bad", fatal, false),
            "bad; exiting with 250 so that PostgreSQL stops recovery instead of promoting"
        );
        assert_eq!(
            exit_message("is \"%f\" in the second place?", fatal, false),
            "is \"%f\" in the second place? Exiting with 250 so that PostgreSQL stops \
             recovery instead of promoting"
        );
        assert_eq!(
            exit_message("done. ", fatal, true),
            "done; exiting with 2 (--legacy-exit-codes)"
        );
        assert_eq!(
            exit_message("gone", Outcome::NotRestored, false),
            "gone; exiting with 1 (file not available)"
        );
    }

    #[test]
    fn legacy_codes_are_pg_standby_13s() {
        assert_eq!(Outcome::Fatal(Fatal::Usage).code(true), 2);
        assert_eq!(Outcome::Fatal(Fatal::Archive).code(true), 2);
        assert_eq!(Outcome::Fatal(Fatal::Oversized).code(true), 3);
        assert_eq!(Outcome::Fatal(Fatal::Io).code(true), 1);
    }
}
