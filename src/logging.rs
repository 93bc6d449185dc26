//! Log lines on stderr, which the server's log collects: one line per
//! event, prefixed with the program name and pid, no colours, no clock (the
//! server's log already has one).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

struct Line {
    pid: u32,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR: ",
            Level::WARN => "WARNING: ",
            Level::INFO => "",
            Level::DEBUG | Level::TRACE => "DEBUG: ",
        };
        write!(writer, "pg_standby[{}]: {level}", self.pid)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

pub fn init(debug: bool) {
    let level = if debug { Level::DEBUG } else { Level::INFO };
    // A second init (only in tests) is harmless: keep the first.
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(Line {
            pid: std::process::id(),
        })
        .try_init();
}
