//! systemd's readiness protocol (`Type=notify`): `READY=1` once the services have started,
//! `STOPPING=1` when shutdown begins, `STATUS=…` lines for `systemctl status`, and `WATCHDOG=1`
//! pings when the unit sets `WatchdogSec=`. Does nothing unless `NOTIFY_SOCKET` is set.

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

/// How often to send `WATCHDOG=1`: half the interval systemd asked for (`WATCHDOG_USEC`), if it
/// asked this process (`WATCHDOG_PID`, when set, names it).
pub fn watchdog_interval() -> Option<std::time::Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| std::time::Duration::from_micros(usec / 2))
}
