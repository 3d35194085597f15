//! Slowing down password guessing: every failed login waits before its reply, and an address
//! with too many failures in a minute is refused for a while.
//!
//! One guard is shared by all of a service's connections, so a guesser gains nothing by
//! reconnecting.

use crate::password_file::{PasswordFile, Turn};
use plugin_api::tokio;
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

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Accepted,
    /// A wrong password or an unknown user: counted against the address, and the reply waited.
    Failed,
    /// The address is refused for its failures; no password was checked.
    Banned,
    /// The deadline came before a turn to check the password.
    Late,
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

    /// Logs `user` in from `ip` with `password`, checked against `passwords` once a turn to
    /// check is free ([`PasswordFile::verify`]); waiting for the turn ends at `deadline`.
    ///
    /// The ban is checked again once the turn comes, so the failures that finished while an
    /// attempt waited count against it: a crowd of guesses from one address costs about as
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
        if self.is_banned(ip) {
            return Login::Banned;
        }
        let Ok(turn) = tokio::time::timeout_at(deadline, Turn::wait()).await else {
            return Login::Late;
        };
        if self.is_banned(ip) {
            return Login::Banned;
        }
        let began = tokio::time::Instant::now();
        let name = std::str::from_utf8(user).unwrap_or("");
        if passwords.verify_in_turn(turn, name, password).await {
            return Login::Accepted;
        }
        // Logged as sent: the host escapes what a terminal would act on.
        self.record_failure(ip, &String::from_utf8_lossy(user));
        tokio::time::sleep_until(began + self.delay).await;
        Login::Failed
    }

    fn record_failure(&self, ip: IpAddr, username: &str) {
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
                guard.record_failure(guesser, "root");
            }
            assert!(!guard.is_banned(guesser));
            guard.record_failure(guesser, "root");
            assert!(guard.is_banned(guesser));
            assert!(!guard.is_banned(other));
        });
    }
}
