//! The host's log, in twistd's format: `2026-11-21T22:57:14+0000 [system] message`.
//!
//! `system` is `-` for the host itself and the tapname for a plugin's events, which arrive
//! through the plugin's [`HostContext`](plugin_api::abi::HostContext) and are re-emitted here
//! with target `plugin`.

mod format;
mod rotating_file;
mod sink;
mod syslog;

pub use format::{set_worker, LineFormat};
pub use rotating_file::MAX_KEEP;
pub use sink::{Destination, LogSink};

use crate::cli::Verbosity;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
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

/// Opens `destination` and installs the host's log there; returns the most verbose level that
/// will be written (plugins filter at the source with it).
pub fn init(
    filter: EnvFilter,
    format: LineFormat,
    destination: &Destination,
) -> Result<(LevelFilter, LogSink), String> {
    let max_level = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let sink = LogSink::open(destination).map_err(|e| e.to_string())?;
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(format)
                .with_writer(sink.clone()),
        )
        .init();
    Ok((max_level, sink))
}
