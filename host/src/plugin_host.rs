//! The host's side of [`HostContext`]: what a plugin's service calls back into.
//!
//! Nothing here touches the host's tokio runtime: the plugin calls these methods on its own
//! threads, and a plugin has its own copy of tokio that cannot see the host's.

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RErr, ROk, ROption, RResult, RSome, RStr, RString};
use plugin_api::abi::{
    raw_level, Host, HostContext, Host_TO, RawLevel, HOST_VERSION, LISTEN_SOCKET, SYSTEMD_SOCKET,
};
use plugin_api::Endpoint;
use std::collections::hash_map::{Entry, HashMap};
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;
use tracing::level_filters::LevelFilter;

use crate::instances::Ended;

/// A service instance that claimed a socket: its name, and its id.
type Holder = (Arc<str>, u64);

/// What the contexts of every service in this process share.
#[derive(Clone, Default)]
pub struct Shared {
    /// systemd-passed socket indexes, and the service instance that claimed each: one service
    /// at a time, until it stops.
    claims: Arc<Mutex<HashMap<usize, Holder>>>,
    /// systemd-passed sockets adopted so far, by index, each claimant given a copy: kept as long
    /// as the process runs, so that a service restarted on SIGHUP finds its socket again, with
    /// the clients that arrived meanwhile waiting in its backlog.
    passed: Arc<Mutex<HashMap<usize, OwnedFd>>>,
}

impl Shared {
    /// Releases what instance `id` claimed, once it has stopped: its successor may claim it.
    pub fn release(&self, id: u64) {
        lock(&self.claims).retain(|_, (_, holder)| *holder != id);
    }

    /// A copy of systemd-passed socket `index`, adopted as `endpoint` says the first time.
    fn passed_socket(&self, index: usize, endpoint: &Endpoint) -> Result<RawFd, String> {
        let mut passed = lock(&self.passed);
        let socket = match passed.entry(index) {
            Entry::Occupied(held) => held.into_mut(),
            // What went wrong, without the kit's "cannot listen on …", which it adds itself.
            Entry::Vacant(slot) => slot.insert(endpoint.bind_socket().map_err(|e| {
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
            })?),
        };
        socket
            .try_clone()
            .map(IntoRawFd::into_raw_fd)
            .map_err(|e| format!("cannot copy the passed socket: {e}"))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    fn claim_socket(&self, index: usize) -> Result<(), String> {
        let mut claims = lock(&self.shared.claims);
        match claims.get(&index) {
            Some((holder, _)) => Err(format!(
                "systemd socket index {index} is already used by service '{holder}'"
            )),
            None => {
                claims.insert(index, (self.name.clone(), self.id));
                Ok(())
            }
        }
    }

    /// `listen-socket/1`: a worker's sockets are its master's; elsewhere, the host holds only
    /// the sockets systemd passed, and the kit binds the others. A systemd socket goes to one
    /// service at a time, whoever holds it.
    fn listen_socket(&self, name: &str) -> ROption<RResult<RString, RString>> {
        let systemd = match name.parse::<Endpoint>() {
            Ok(endpoint @ Endpoint::Systemd { index, .. }) => {
                if let Err(why) = self.claim_socket(index) {
                    return RSome(RErr(why.into()));
                }
                Some((index, endpoint))
            }
            _ => None,
        };
        let fd = match (crate::supervisor::worker::held_socket(name), systemd) {
            (Some(fd), _) => fd,
            (None, Some((index, endpoint))) => self.shared.passed_socket(index, &endpoint),
            (None, None) => return ROption::RNone,
        };
        RSome(
            fd.map(|fd| RString::from(format!("fd={fd}")))
                .map_err(RString::from)
                .into(),
        )
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
            SYSTEMD_SOCKET => RSome(match request.as_str().parse::<usize>() {
                Ok(index) => self
                    .claim_socket(index)
                    .map(|()| RString::new())
                    .map_err(RString::from)
                    .into(),
                Err(_) => RErr(format!("invalid socket index '{request}'").into()),
            }),
            LISTEN_SOCKET => self.listen_socket(request.as_str()),
            _ => ROption::RNone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RSome;

    #[test]
    fn a_systemd_socket_is_claimed_by_one_service_of_the_process_until_it_stops() {
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
        shared.release(1);
        assert_eq!(claim("a", 5, "0"), RSome(ROk(RString::new())));
        assert!(matches!(claim("b", 6, "1"), RSome(RErr(_))));
    }
}
