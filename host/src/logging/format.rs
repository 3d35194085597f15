//! How one event becomes one line: twistd's text format, or one JSON object for log pipelines.
//!
//! Every field is escaped here, whoever logged it: plugin events pass through this formatter
//! too. A client's bytes (an FTP `USER` name, a path) must not clear the terminal of whoever
//! reads the log, nor forge a second line with an embedded newline.

use serde_json::{Map, Value};
use std::fmt::{self, Write as _};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The line formats `--log-format` offers, plus the one syslog gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// `2026-11-21T22:57:14+0000 [system] message`, as twistd writes.
    Text,
    /// `[system] message`: syslog stamps the time itself.
    TextWithoutTime,
    /// `{"time":…,"level":…,"system":…,"message":…}` and any other fields.
    Json,
}

const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%z";

/// In a worker of a supervisor, its number: every line says which worker wrote it.
static WORKER: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Marks every line this process logs from now on as worker `id`'s.
pub fn set_worker(id: u32) {
    let _ = WORKER.set(id);
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let system = fields.system.as_deref().unwrap_or("-");
        if *self == Self::Json {
            let mut object = Map::new();
            object.insert("time".into(), timestamp().into());
            object.insert("level".into(), level.as_str().to_ascii_lowercase().into());
            object.insert("system".into(), system.into());
            if let Some(worker) = WORKER.get() {
                object.insert("worker".into(), (*worker).into());
            }
            object.insert("message".into(), fields.message.into());
            for (name, value) in fields.rest {
                object.entry(name).or_insert(value.into());
            }
            return writeln!(writer, "{}", Value::Object(object));
        }
        if *self == Self::Text {
            write!(writer, "{} ", timestamp())?;
        }
        let prefix = match level {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            _ => "",
        };
        match WORKER.get() {
            Some(worker) => write!(writer, "[{system} w{worker}] {prefix}{}", fields.message)?,
            None => write!(writer, "[{system}] {prefix}{}", fields.message)?,
        }
        for (name, value) in &fields.rest {
            write!(writer, " {name}={value}")?;
        }
        writeln!(writer)
    }
}

/// The current time in the log's format, formatted once per second per thread: a busy server
/// logs thousands of lines a second, and they share their timestamp.
fn timestamp() -> String {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let now = chrono::Local::now();
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != now.timestamp() {
            *last = (now.timestamp(), now.format(TIME_FORMAT).to_string());
        }
        last.1.clone()
    })
}

/// An event's fields: `system` and `message` are placed as twistd places them, the rest follow.
#[derive(Default)]
struct Fields {
    system: Option<String>,
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "system" => self.system = Some(escaped(value)),
            "message" => push_escaped(&mut self.message, value),
            name => self.rest.push((escaped(name), escaped(value))),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.record_str(field, &text);
    }
}

fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_escaped(&mut out, text);
    out
}

/// Appends `text` with every character that acts on the display (`plugin_api::text`) shown
/// visibly, tab excepted: C0 as `\n`, `\r` or `\x1b`, DEL as `\x7f`, the rest as `\u{9b}` or
/// `\u{202e}`.
fn push_escaped(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(is_control) {
        out.push_str(&rest[..at]);
        let control = rest[at..].chars().next().expect("found at a char boundary");
        let _ = match control {
            '\n' => write!(out, "\\n"),
            '\r' => write!(out, "\\r"),
            c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
            c => write!(out, "\\u{{{:x}}}", c as u32),
        };
        rest = &rest[at + control.len_utf8()..];
    }
    out.push_str(rest);
}

fn is_control(c: char) -> bool {
    c != '\t' && plugin_api::text::acts_on_display(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(escaped("plain text\tand a tab"), "plain text\tand a tab");
        assert_eq!(
            escaped("USER \u{1b}[2Jx\r\nforged [-] line\u{7f}\u{9b}\0é"),
            "USER \\x1b[2Jx\\r\\nforged [-] line\\x7f\\u{9b}\\x00é"
        );
        assert_eq!(escaped("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
    }
}
