//! The host's side of [`HostContext`]: what a plugin's service calls back into.
//!
//! Nothing here touches the host's tokio runtime: the plugin calls these methods on its own
//! threads, and a plugin has its own copy of tokio that cannot see the host's.

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RErr, ROk, ROption, RResult, RSome, RStr, RString};
use plugin_api::abi::{
    raw_level, Host, HostContext, Host_TO, RawLevel, HOST_VERSION, LISTEN_SOCKET, SYSTEMD_SOCKET,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;
use tracing::level_filters::LevelFilter;

use crate::instances::Ended;

/// What the contexts of every service in this process share.
#[derive(Clone, Default)]
pub struct Shared {
    /// systemd-passed socket indexes, and the service that adopted each.
    sockets: Arc<Mutex<HashMap<usize, Arc<str>>>>,
}

#[derive(Clone)]
struct PluginHost {
    /// The service's name in the log.
    name: Arc<str>,
    /// The instance, for reporting its end.
    id: u64,
    max_level: RawLevel,
    ended: UnboundedSender<Ended>,
    shared: Shared,
}

/// The context of service instance `id`, logged as `name`.
pub fn context(
    name: &str,
    id: u64,
    max_level: LevelFilter,
    ended: UnboundedSender<Ended>,
    shared: &Shared,
) -> HostContext {
    let max_level = raw_level(max_level.into_level());
    Host_TO::from_ptr(
        RArc::new(PluginHost {
            name: name.into(),
            id,
            max_level,
            ended,
            shared: shared.clone(),
        }),
        TD_Opaque,
    )
}

impl PluginHost {
    fn claim_socket(&self, request: &str) -> RResult<RString, RString> {
        let Ok(index) = request.parse::<usize>() else {
            return RErr(format!("invalid socket index '{request}'").into());
        };
        let mut sockets = self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match sockets.get(&index) {
            Some(holder) => RErr(
                format!("systemd socket index {index} is already used by service '{holder}'")
                    .into(),
            ),
            None => {
                sockets.insert(index, self.name.clone());
                ROk(RString::new())
            }
        }
    }
}

impl Host for PluginHost {
    fn max_log_level(&self) -> RawLevel {
        self.max_level
    }

    fn log(&self, level: RawLevel, _target: RStr<'_>, message: RStr<'_>) {
        let system = &*self.name;
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
            .send((self.id, error.into_option().map(RString::into_string)));
    }

    fn call_extension(
        &self,
        name: RStr<'_>,
        request: RStr<'_>,
    ) -> ROption<RResult<RString, RString>> {
        match name.as_str() {
            HOST_VERSION => RSome(ROk(plugin_api::INTERFACE_VERSION.into())),
            SYSTEMD_SOCKET => RSome(self.claim_socket(request.as_str())),
            // Only a worker of a supervisor holds sockets; anywhere else the kit binds them.
            LISTEN_SOCKET => match crate::supervisor::worker::held_socket(request.as_str()) {
                Some(Ok(fd)) => RSome(ROk(format!("fd={fd}").into())),
                Some(Err(why)) => RSome(RErr(why.into())),
                None => ROption::RNone,
            },
            _ => ROption::RNone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RSome;

    #[test]
    fn a_systemd_socket_is_claimed_by_one_service_of_the_process() {
        let shared = Shared::default();
        let (ended, _) = tokio::sync::mpsc::unbounded_channel();
        let claim = |name: &str, id, index: &str| {
            context(name, id, LevelFilter::INFO, ended.clone(), &shared)
                .call_extension(SYSTEMD_SOCKET.into(), index.into())
        };
        assert_eq!(claim("a", 1, "0"), RSome(ROk(RString::new())));
        assert_eq!(claim("b", 2, "1"), RSome(ROk(RString::new())));
        assert_eq!(
            claim("c", 3, "0"),
            RSome(RErr(
                "systemd socket index 0 is already used by service 'a'".into()
            ))
        );
        assert!(matches!(claim("d", 4, "x"), RSome(RErr(_))));
    }
}
