//! Forwards the plugin's `tracing` events to the host's log.
//!
//! A cdylib has its own copy of tracing's global dispatcher, so without this bridge every event
//! a plugin emits would vanish. Each service gets its own dispatcher, bound to its own host
//! context (see `scope`), so two services made from one library log under their own names. Its
//! subscriber filters at the host's level, so events the host would not print cost nothing here.

use crate::abi::{level_filter, raw_level, HostContext};
use crate::kit::export::panic_message;
use std::fmt::Write;
use std::sync::Once;
use tracing::dispatcher::Dispatch;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// A dispatcher that sends events to `host`'s log.
pub(crate) fn dispatch(host: &HostContext) -> Dispatch {
    Dispatch::new(
        tracing_subscriber::registry()
            .with(level_filter(host.max_log_level()))
            .with(Bridge { host: host.clone() }),
    )
}

/// Once per library: makes `dispatch` the global default, for threads no service scope covers
/// (a thread the plugin starts itself), and routes panic reports through the panicking thread's
/// dispatcher instead of stderr.
pub(crate) fn install_fallback(dispatch: &Dispatch) {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // Fails only if the plugin installed its own subscriber first; then that one wins.
        let _ = tracing::dispatcher::set_global_default(dispatch.clone());
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
