//! Log lines on stderr, which the server's log collects: one line per
//! event, in the form of the server's own `log_line_prefix = '%m [%p] '`
//! lines, no colours:
//!
//! ```text
//! 2026-11-22 06:41:43.123 UTC pg_standby[123]: WARNING: message
//! ```
//!
//! The time is always UTC, and says so: reading the server's
//! `log_timezone` would need a time zone database for a field the operator
//! only compares by eye (PostgreSQL's `%m` is also labelled with its zone).
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
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

static DEBUG: AtomicBool = AtomicBool::new(false);
static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// When the process started, as near as we can tell: the phases of a
/// call (`-d`) are measured from here.
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

pub fn process_start() -> std::time::Instant {
    *STARTED.get_or_init(std::time::Instant::now)
}

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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    lines_at(
        &timestamp(now.as_secs(), now.subsec_millis()),
        label,
        message,
    )
}

fn lines_at(timestamp: &str, label: &str, message: &str) -> String {
    let pid = std::process::id();
    let mut out = String::with_capacity(message.len() + 64);
    for line in message.trim_end().split('\n') {
        let _ = writeln!(out, "{timestamp} pg_standby[{pid}]: {label}{line}");
    }
    out
}

/// `secs` after the Unix epoch as PostgreSQL's `%m` prints it in UTC:
/// `2026-11-22 06:41:43.123 UTC`.
pub(crate) fn timestamp(secs: u64, millis: u32) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01: Howard Hinnant's
/// `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>),
/// for days on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01, so that the leap day ends each 4-year cycle.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of the 400-year era
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
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

/// How many bytes of untrusted text [`escape`] shows.
pub const ESCAPE_LIMIT: usize = 64;

/// Untrusted bytes (a trigger file's content, bytes read from a bad file)
/// as text that is safe in a log line: printable ASCII as is, `\\` and
/// `\"` escaped (so the text can sit between quotes), `\n`, `\r`, `\t`, `\0`
/// and `\xNN` for everything else, at most [`ESCAPE_LIMIT`] bytes of it
/// followed by `...(N more bytes)`. No newline, NUL or terminal escape can
/// reach the server's log, so no content can forge a log line.
/// A duration for people: "0.4 s", "45.0 s", "12 min 5 s", "3 h 12 min",
/// "2 d 4 h".
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

pub fn escape(bytes: &[u8]) -> String {
    escape_at_most(bytes, ESCAPE_LIMIT)
}

/// [`escape`] with another length limit.
pub fn escape_at_most(bytes: &[u8], limit: usize) -> String {
    let shown = &bytes[..bytes.len().min(limit)];
    let mut out = String::with_capacity(shown.len() + 16);
    for &b in shown {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0 => out.push_str("\\0"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if bytes.len() > shown.len() {
        let _ = write!(out, "...({} more bytes)", bytes.len() - shown.len());
    }
    out
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
        let t = "2026-11-22 06:41:43.123 UTC";
        assert_eq!(
            lines_at(t, label(Level::WARN), "one\ntwo\n"),
            format!("{t} pg_standby[{pid}]: WARNING: one\n{t} pg_standby[{pid}]: WARNING: two\n")
        );
        assert_eq!(
            lines_at(t, label(Level::INFO), "restored X"),
            format!("{t} pg_standby[{pid}]: restored X\n")
        );
    }

    #[test]
    fn timestamps_are_postgresqls_percent_m_in_utc() {
        // Expected values from Python's datetime.fromtimestamp(t, timezone.utc).
        for (secs, millis, expected) in [
            (0, 0, "1970-01-01 00:00:00.000 UTC"),
            (951_782_400, 7, "2000-02-29 00:00:00.007 UTC"),
            (4_107_542_400, 999, "2100-03-01 00:00:00.999 UTC"),
            (1_795_329_703, 123, "2026-11-22 06:41:43.123 UTC"),
            (253_402_300_799, 0, "9999-12-31 23:59:59.000 UTC"),
        ] {
            assert_eq!(timestamp(secs, millis), expected, "{secs}");
        }
        // Every day for 3 centuries: consecutive, valid dates.
        let mut last = civil_from_days(0);
        for days in 1..110_000 {
            let (y, m, d) = civil_from_days(days);
            let next_of_last = (d == 1) == (m != last.1 || y != last.0);
            assert!(next_of_last && (1..=12).contains(&m) && (1..=31).contains(&d));
            last = (y, m, d);
        }
    }

    #[test]
    fn a_live_line_starts_with_the_current_time() {
        let line = format_lines("", "x");
        let year = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 86_400;
        let (y, _, _) = civil_from_days(year);
        assert!(line.starts_with(&format!("{y:04}-")), "{line}");
        assert!(line.contains(" UTC pg_standby["), "{line}");
    }

    #[test]
    fn untrusted_bytes_cannot_forge_a_line() {
        assert_eq!(escape(b"x\nLOG:  forged\0"), "x\\nLOG:  forged\\0");
        assert_eq!(
            escape(b"a\"b\\c\r\t\x1b[31m\xff"),
            "a\\\"b\\\\c\\r\\t\\x1b[31m\\xff"
        );
        assert_eq!(escape("é".as_bytes()), "\\xc3\\xa9");
        assert_eq!(escape_at_most(b"abcdef", 4), "abcd...(2 more bytes)");
        assert_eq!(escape(&[b'a'; 64]), "a".repeat(64));
        let long = escape(&[0; 1000]);
        assert!(long.ends_with("...(936 more bytes)") && !long.contains('\0'));
    }

    #[test]
    fn a_write_to_a_bad_descriptor_is_counted_not_fatal() {
        let before = write_errors();
        assert!(!write_fd(-1, b"lost\n"));
        assert_eq!(write_errors(), before + 1);
        assert!(write_fd(-1, b""));
    }
}
