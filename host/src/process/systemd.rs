//! systemd's readiness protocol (`Type=notify`): `READY=1` once the services have started,
//! `STOPPING=1` when shutdown begins, `STATUS=…` lines for `systemctl status`, and `WATCHDOG=1`
//! pings when the unit sets `WatchdogSec=`. Does nothing unless `NOTIFY_SOCKET` is set.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

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

/// How often a main loop beats without a watchdog: the heartbeat `/healthz` watches.
const BEAT: Duration = Duration::from_secs(1);

/// How often to send `WATCHDOG=1`, if systemd asked this process for pings (`WATCHDOG_USEC`;
/// `WATCHDOG_PID`, when set, names the process): a third of the interval, so that a ping a busy
/// machine delays still comes well inside it (systemd asks for one at least every half).
fn watchdog_interval() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 3))
}

/// A main loop's clock: it beats every [`BEAT`], or at the watchdog's pace if that is faster,
/// and pings the watchdog at each beat. Only the main loop pings, so if it stalls the pings
/// stop and systemd restarts the service.
pub struct Heartbeat {
    ticks: tokio::time::Interval,
    watchdog: bool,
}

impl Heartbeat {
    /// Must be made inside the main loop's runtime.
    pub fn new() -> Self {
        let watchdog = watchdog_interval();
        let mut ticks = tokio::time::interval(watchdog.map_or(BEAT, |every| every.min(BEAT)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            ticks,
            watchdog: watchdog.is_some(),
        }
    }

    /// Waits for the next beat.
    pub async fn next(&mut self) {
        self.ticks.tick().await;
        if self.watchdog {
            if let Err(e) = notify("WATCHDOG=1") {
                tracing::debug!("watchdog: {e}");
            }
        }
    }
}
