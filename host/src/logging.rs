//! The host's log, in twistd's format: `2026-11-21T22:57:14+0000 [system] message`.
//!
//! `system` is `-` for the host itself and the tapname for a plugin's events, which arrive
//! through the plugin's [`HostContext`](plugin_api::abi::HostContext) and are re-emitted here
//! with target `plugin`.

use crate::cli::Verbosity;
use std::fmt::{self, Write as _};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter the user asked for: `--log-level`, `-v`/`-q`, else `RUST_LOG`, else `info`.
pub fn filter(verbosity: &Verbosity) -> Result<EnvFilter, String> {
    let level = match (&verbosity.log_level, verbosity.verbose, verbosity.quiet) {
        (Some(level), _, _) => Some(level.as_str()),
        (None, 0, 0) => None,
        (None, 1, _) => Some("debug"),
        (None, _, 0) => Some("trace"),
        (None, _, 1) => Some("warn"),
        (None, _, _) => Some("error"),
    };
    match (level, std::env::var("RUST_LOG")) {
        (Some(level), _) => Ok(EnvFilter::new(level)),
        (None, Ok(directives)) => EnvFilter::try_new(&directives)
            .map_err(|e| format!("invalid RUST_LOG '{directives}': {e}")),
        (None, Err(_)) => Ok(EnvFilter::new("info")),
    }
}

/// Installs the log on stdout; returns the most verbose level that will be printed, which
/// plugins use to filter at the source.
pub fn init_stdout(filter: EnvFilter) -> LevelFilter {
    let max_level = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(TwistdFormat)
                .with_writer(std::io::stdout),
        )
        .init();
    max_level
}

/// Writes one line per event; the host's own `tracing` fields `system` and `message` are
/// placed as twistd places them, any others follow as `key=value`.
struct TwistdFormat;

impl<S, N> FormatEvent<S, N> for TwistdFormat
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
        let prefix = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            _ => "",
        };
        writeln!(
            writer,
            "{} [{}] {prefix}{}{}",
            chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%z"),
            fields.system.as_deref().unwrap_or("-"),
            fields.message,
            fields.rest
        )
    }
}

#[derive(Default)]
struct Fields {
    system: Option<String>,
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "system" => self.system = Some(value.to_string()),
            "message" => self.message.push_str(value),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "system" => self.system = Some(format!("{value:?}")),
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}
