//! Log lines on stderr, which the server's log collects: one line per
//! event, prefixed with the program name and pid, no colours.
//!
//! A log that cannot be written must never change the outcome: the server
//! reads a crash as FATAL, so a full disk under its log (or a closed or
//! broken stderr) would stop a standby that had just restored its segment.
//! Every byte therefore goes out through [`write_stderr`], which ignores
//! write errors (it counts them), and nothing here formats through
//! `eprintln!`, which panics on a write error (and the release profile
//! aborts on panic).

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

static DEBUG: AtomicBool = AtomicBool::new(false);
static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Send `tracing` events to stderr, at INFO and above until
/// [`set_debug`]. Done first thing, before the command line is parsed, so
/// that argument errors look like every other line.
pub fn init() {
    // A second init (only in tests) is harmless: keep the first.
    let _ = tracing::subscriber::set_global_default(Logger);
}

/// `-d`: log DEBUG lines too.
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// How many writes to stderr or stdout failed (and were dropped).
#[cfg_attr(not(test), allow(dead_code))]
pub fn write_errors() -> u64 {
    WRITE_ERRORS.load(Ordering::Relaxed)
}

/// Write `bytes` to stderr in as few write(2) calls as possible (one for a
/// line, so that concurrent writers do not interleave), dropping them on
/// any error. Never panics.
pub fn write_stderr(bytes: &[u8]) -> bool {
    write_fd(libc::STDERR_FILENO, bytes)
}

/// The same for stdout (help and version output).
pub fn write_stdout(bytes: &[u8]) -> bool {
    write_fd(libc::STDOUT_FILENO, bytes)
}

fn write_fd(fd: i32, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: a plain write(2) of a valid buffer; a closed or bad fd
        // only gives an error.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n.unsigned_abs()..];
            continue;
        }
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        // ENOSPC, EPIPE (SIGPIPE is ignored by the Rust runtime), EBADF,
        // EIO, or a write of 0 bytes: give the line up.
        WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    true
}

/// The label PostgreSQL puts after the prefix (INFO lines carry none: they
/// are the routine ones).
fn label(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR: ",
        Level::WARN => "WARNING: ",
        Level::INFO => "",
        Level::DEBUG | Level::TRACE => "DEBUG: ",
    }
}

/// `message` as log lines: every line of it carries the prefix and the
/// label, so that no line in the server's log looks like someone else's.
fn format_lines(label: &str, message: &str) -> String {
    let pid = std::process::id();
    let mut out = String::with_capacity(message.len() + 32);
    for line in message.trim_end().split('\n') {
        let _ = writeln!(out, "pg_standby[{pid}]: {label}{line}");
    }
    out
}

/// Write one message at `level`, whatever the logger's state (the panic
/// hook uses it).
pub fn log(level: Level, message: &str) {
    write_stderr(format_lines(label(level), message).as_bytes());
}

/// A `HINT: ` line, as PostgreSQL's tools add after an error.
pub fn hint(message: &str) {
    write_stderr(format_lines("HINT: ", message).as_bytes());
}

/// A minimal `tracing` subscriber: no spans, one line per event.
struct Logger;

impl Subscriber for Logger {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level can change after a callsite is first seen (-d is known
        // only once the command line is parsed): ask `enabled` each time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::INFO || DEBUG.load(Ordering::Relaxed)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        log(*event.metadata().level(), &message.0);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// The event's text: its message, then any other fields as ` name=value`.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_a_message_is_prefixed() {
        let pid = std::process::id();
        assert_eq!(
            format_lines(label(Level::WARN), "one\ntwo\n"),
            format!("pg_standby[{pid}]: WARNING: one\npg_standby[{pid}]: WARNING: two\n")
        );
        assert_eq!(
            format_lines(label(Level::INFO), "restored X"),
            format!("pg_standby[{pid}]: restored X\n")
        );
    }

    #[test]
    fn a_write_to_a_bad_descriptor_is_counted_not_fatal() {
        let before = write_errors();
        assert!(!write_fd(-1, b"lost\n"));
        assert_eq!(write_errors(), before + 1);
        assert!(write_fd(-1, b""));
    }
}
