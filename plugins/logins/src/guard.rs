//! Slowing down password guessing: every failed login waits before its reply, and an address
//! with too many failures in a minute is refused for a while.
//!
//! One guard is shared by all of a service's connections, so a guesser gains nothing by
//! reconnecting.

use plugin_api::tracing::warn;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures from one address within [`WINDOW`] that get it banned.
const MAX_FAILURES: usize = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// How long a banned address is refused.
const BAN: Duration = Duration::from_secs(300);
/// How long a failed login waits before its reply.
const DELAY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct LoginGuard {
    addresses: Mutex<HashMap<IpAddr, Record>>,
    delay: Duration,
}

impl Default for LoginGuard {
    fn default() -> Self {
        Self::with_delay(DELAY)
    }
}

#[derive(Debug, Default)]
struct Record {
    failures: Vec<Instant>,
    banned_until: Option<Instant>,
}

impl LoginGuard {
    fn with_delay(delay: Duration) -> Self {
        Self {
            addresses: Mutex::default(),
            delay,
        }
    }

    /// Whether `ip` is currently refused.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        let banned = addresses
            .get(&ip)
            .and_then(|r| r.banned_until)
            .is_some_and(|until| until > now);
        // Forget addresses with nothing recent, so the map cannot grow without bound.
        addresses.retain(|_, r| {
            r.banned_until.is_some_and(|until| until > now)
                || r.failures.iter().any(|t| now - *t < WINDOW)
        });
        banned
    }

    /// Records a failed login from `ip`, then waits before the caller replies.
    pub async fn failed(&self, ip: IpAddr, username: &str) {
        let banned = {
            let now = Instant::now();
            let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
            let record = addresses.entry(ip).or_default();
            record.failures.retain(|t| now - *t < WINDOW);
            record.failures.push(now);
            if record.failures.len() >= MAX_FAILURES
                && record.banned_until.is_none_or(|until| until <= now)
            {
                record.banned_until = Some(now + BAN);
                true
            } else {
                false
            }
        };
        if banned {
            warn!(
                "{MAX_FAILURES} failed logins from {ip} within {WINDOW:?}; refusing it for {BAN:?}"
            );
        } else {
            warn!("failed login for '{username}' from {ip}");
        }
        plugin_api::tokio::time::sleep(self.delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_after_ten_failures_in_a_minute_and_only_that_address() {
        let runtime = plugin_api::tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let guard = LoginGuard::with_delay(Duration::ZERO);
            let guesser: IpAddr = "192.0.2.1".parse().unwrap();
            let other: IpAddr = "192.0.2.2".parse().unwrap();
            for _ in 0..MAX_FAILURES - 1 {
                guard.failed(guesser, "root").await;
            }
            assert!(!guard.is_banned(guesser));
            guard.failed(guesser, "root").await;
            assert!(guard.is_banned(guesser));
            assert!(!guard.is_banned(other));
        });
    }
}
