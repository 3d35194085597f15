//! systemd's readiness protocol (`Type=notify`): `READY=1` once the services have started,
//! `STOPPING=1` when shutdown begins. Does nothing unless `NOTIFY_SOCKET` is set.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` to the service manager, if there is one. Failures are reported, not fatal: a
/// service that runs is better than one that stops because its manager went away.
pub fn notify(state: &str) -> Result<(), String> {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let path = socket.to_string_lossy();
    let address = match path.strip_prefix('@') {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name.as_bytes())
        }
        None => SocketAddr::from_pathname(path.as_ref()),
    }
    .map_err(|e| format!("invalid NOTIFY_SOCKET '{path}': {e}"))?;
    let datagram = UnixDatagram::unbound().map_err(|e| e.to_string())?;
    datagram
        .send_to_addr(state.as_bytes(), &address)
        .map(drop)
        .map_err(|e| format!("cannot notify systemd at {path}: {e}"))
}
