//! Slowing down password guessing: every failed login waits before its reply, a network with
//! too many failures in a minute is refused for a while, and the checks from networks with
//! recent failures wait for a turn behind the others.
//!
//! One guard is shared by all of a service's connections, so a guesser gains nothing by
//! reconnecting.

use crate::password_file::PasswordFile;
use crate::turn::{Priority, Turn};
use plugin_api::tokio;
use plugin_api::tracing::warn;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures from one network within [`WINDOW`] that get it banned.
const MAX_FAILURES: usize = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// How long a banned network is refused.
const BAN: Duration = Duration::from_secs(300);
/// How long a failed login waits before its reply.
const DELAY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct LoginGuard {
    networks: Mutex<HashMap<Network, Record>>,
    delay: Duration,
}

impl Default for LoginGuard {
    fn default() -> Self {
        Self::with_delay(DELAY)
    }
}

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Accepted,
    /// A wrong password or an unknown user: counted against the network, and the reply waited.
    Failed,
    /// The network is refused for its failures; no password was checked.
    Banned,
    /// The deadline came before a turn to check the password.
    Late,
}

/// Where failures are counted: an IPv4 address, or an IPv6 address's /64, which a single host
/// usually has whole: counted by address, it could guess from a new one each time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Network(IpAddr);

impl Network {
    fn of(ip: IpAddr) -> Self {
        Self(match ip.to_canonical() {
            IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from(u128::from(ip) & !0 << 64)),
            ipv4 => ipv4,
        })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V6(prefix) => write!(f, "{prefix}/64"),
            ipv4 => ipv4.fmt(f),
        }
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
            networks: Mutex::default(),
            delay,
        }
    }

    /// Whether `ip`'s network is currently refused.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.standing(Network::of(ip)).is_none()
    }

    /// `None` if `network` is refused, else the priority of its checks. Forgets the networks
    /// with nothing recent, so the map cannot grow without bound.
    fn standing(&self, network: Network) -> Option<Priority> {
        let now = Instant::now();
        let mut networks = self.networks.lock().unwrap_or_else(|p| p.into_inner());
        networks.retain(|_, r| {
            r.banned_until.is_some_and(|until| until > now)
                || r.failures.iter().any(|t| now - *t < WINDOW)
        });
        match networks.get(&network) {
            None => Some(Priority::Fresh),
            Some(r) if r.banned_until.is_some_and(|until| until > now) => None,
            Some(_) => Some(Priority::Suspect),
        }
    }

    /// Logs `user` in from `ip` with `password`, checked against `passwords` once a turn to
    /// check is free ([`PasswordFile::verify`]); waiting for the turn ends at `deadline`. A
    /// network with recent failures waits behind those without.
    ///
    /// The ban is checked again once the turn comes, so the failures that finished while an
    /// attempt waited count against it: a crowd of guesses from one network costs about as
    /// many hashes as it takes failures to be banned, not one each. A failure is answered the
    /// delay (a second) after its check began, not after it ended, so whether it took a cheap
    /// or a costly hash (an unknown user is checked against some hash of the file, whatever
    /// kind the user's own is) does not show, as long as a hash takes less than the delay. A
    /// name that is not UTF-8 is no user's.
    pub async fn log_in(
        &self,
        ip: IpAddr,
        passwords: &PasswordFile,
        user: &[u8],
        password: &[u8],
        deadline: tokio::time::Instant,
    ) -> Login {
        let network = Network::of(ip);
        let Some(priority) = self.standing(network) else {
            return Login::Banned;
        };
        let Ok(turn) = tokio::time::timeout_at(deadline, Turn::wait(priority)).await else {
            return Login::Late;
        };
        if self.standing(network).is_none() {
            return Login::Banned;
        }
        let began = tokio::time::Instant::now();
        let name = std::str::from_utf8(user).unwrap_or("");
        if passwords.verify_in_turn(turn, name, password).await {
            return Login::Accepted;
        }
        // Logged as sent: the host escapes what a terminal would act on.
        self.record_failure(ip, network, &String::from_utf8_lossy(user));
        tokio::time::sleep_until(began + self.delay).await;
        Login::Failed
    }

    fn record_failure(&self, ip: IpAddr, network: Network, username: &str) {
        let banned = {
            let now = Instant::now();
            let mut networks = self.networks.lock().unwrap_or_else(|p| p.into_inner());
            let record = networks.entry(network).or_default();
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
                "{MAX_FAILURES} failed logins from {network} within {WINDOW:?}; refusing it for {BAN:?}"
            );
        } else {
            warn!("failed login for '{username}' from {ip}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_in_checks_the_ban_then_the_password() {
        let runtime = plugin_api::tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let guard = LoginGuard::with_delay(Duration::ZERO);
            let passwords = PasswordFile::parse("carol:letmein\n", true).unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let ip: IpAddr = "192.0.2.1".parse().unwrap();
            let log_in = |user: &'static [u8], password: &'static [u8]| {
                guard.log_in(ip, &passwords, user, password, deadline)
            };
            assert_eq!(log_in(b"carol", b"letmein").await, Login::Accepted);
            assert_eq!(log_in(b"carol", b"letmeout").await, Login::Failed);
            assert_eq!(log_in(b"\xff", b"letmein").await, Login::Failed);
            for _ in 2..MAX_FAILURES {
                assert_eq!(log_in(b"mallory", b"letmein").await, Login::Failed);
            }
            assert_eq!(log_in(b"carol", b"letmein").await, Login::Banned);
        });
    }

    #[test]
    fn bans_after_ten_failures_in_a_minute_and_only_that_network() {
        let guard = LoginGuard::with_delay(Duration::ZERO);
        let fail = |ip: &str| {
            let ip: IpAddr = ip.parse().unwrap();
            guard.record_failure(ip, Network::of(ip), "root");
        };
        let banned = |ip: &str| guard.is_banned(ip.parse().unwrap());
        for _ in 0..MAX_FAILURES - 1 {
            fail("192.0.2.1");
        }
        assert!(!banned("192.0.2.1"));
        fail("::ffff:192.0.2.1");
        assert!(banned("192.0.2.1") && !banned("192.0.2.2"));

        // An IPv6 host has its /64 to guess from.
        for i in 0..MAX_FAILURES {
            fail(&format!("2001:db8:0:1::{i:x}"));
        }
        assert!(banned("2001:db8:0:1:ffff::1") && !banned("2001:db8:0:2::1"));
    }

    #[test]
    fn networks_with_recent_failures_wait_behind_the_others() {
        let guard = LoginGuard::with_delay(Duration::ZERO);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(guard.standing(Network::of(ip)), Some(Priority::Fresh));
        guard.record_failure(ip, Network::of(ip), "root");
        let neighbour = Network::of("2001:db8::2".parse().unwrap());
        assert_eq!(guard.standing(neighbour), Some(Priority::Suspect));
        assert_eq!(Network::of(ip).to_string(), "2001:db8::/64");
    }
}
