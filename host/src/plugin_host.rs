//! The host's side of [`HostContext`]: what a plugin's service calls back into.
//!
//! Nothing here touches the host's tokio runtime: the plugin calls these methods on its own
//! threads, and a plugin has its own copy of tokio that cannot see the host's.

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, ROption, RResult, RStr, RString};
use plugin_api::abi::{raw_level, Host, HostContext, Host_TO, RawLevel, HOST_VERSION};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tracing::level_filters::LevelFilter;

/// How a service ended without being asked to: `Some(error)` if it failed.
pub type ServiceEnded = Option<String>;

#[derive(Clone)]
struct PluginHost {
    tapname: Arc<str>,
    max_level: RawLevel,
    ended: UnboundedSender<ServiceEnded>,
}

pub fn context(
    tapname: &str,
    max_level: LevelFilter,
    ended: UnboundedSender<ServiceEnded>,
) -> HostContext {
    let max_level = raw_level(max_level.into_level());
    Host_TO::from_ptr(
        RArc::new(PluginHost {
            tapname: tapname.into(),
            max_level,
            ended,
        }),
        TD_Opaque,
    )
}

impl Host for PluginHost {
    fn max_log_level(&self) -> RawLevel {
        self.max_level
    }

    fn log(&self, level: RawLevel, _target: RStr<'_>, message: RStr<'_>) {
        let system = &*self.tapname;
        let message = message.as_str();
        match level {
            1 => tracing::error!(target: "plugin", system, "{message}"),
            2 => tracing::warn!(target: "plugin", system, "{message}"),
            3 => tracing::info!(target: "plugin", system, "{message}"),
            4 => tracing::debug!(target: "plugin", system, "{message}"),
            _ => tracing::trace!(target: "plugin", system, "{message}"),
        }
    }

    fn service_ended(&self, error: ROption<RString>) {
        // The receiver is gone only when the host is already shutting down.
        let _ = self
            .ended
            .send(error.into_option().map(RString::into_string));
    }

    fn call_extension(
        &self,
        name: RStr<'_>,
        _request: RStr<'_>,
    ) -> ROption<RResult<RString, RString>> {
        match name.as_str() {
            HOST_VERSION => ROption::RSome(RResult::ROk(plugin_api::INTERFACE_VERSION.into())),
            _ => ROption::RNone,
        }
    }
}
