//! Forwards the plugin's `tracing` events to the host's log.
//!
//! A cdylib has its own copy of tracing's global dispatcher, so without this bridge every event
//! a plugin emits would vanish. The plugin's subscriber filters at the host's level, so events
//! the host would not print cost nothing here.

use crate::abi::{level_filter, raw_level, HostContext};
use crate::kit::export::panic_message;
use std::fmt::Write;
use std::sync::Once;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Installs the bridge as the plugin's global subscriber, and routes panic reports through it
/// instead of stderr. Only the first call in a library has an effect.
pub(crate) fn install(host: &HostContext) {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::registry()
            .with(level_filter(host.max_log_level()))
            .with(Bridge { host: host.clone() });
        // Fails only if the plugin installed its own subscriber first; then that one wins.
        let _ = tracing::subscriber::set_global_default(subscriber);
        std::panic::set_hook(Box::new(|panic| {
            let at = panic
                .location()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            let message = panic_message(panic.payload());
            tracing::error!("panicked{at}: {message}");
        }));
    });
}

struct Bridge {
    host: HostContext,
}

impl<S: Subscriber> Layer<S> for Bridge {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut line = Line::default();
        event.record(&mut line);
        let meta = event.metadata();
        self.host.log(
            raw_level(Some(*meta.level())),
            meta.target().into(),
            line.text.as_str().into(),
        );
    }
}

/// One event flattened to text: the message, then ` key=value` for each other field.
#[derive(Default)]
struct Line {
    text: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text.insert_str(0, value);
        } else {
            let _ = write!(self.text, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.text.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }
}
