//! Reaching the destination a client asked for: resolve a name, check every address against
//! the rules, and connect only to an address that passed, the very one that was checked (so a
//! name cannot resolve to an allowed address for the check and another for the connect).

use crate::rules::Rules;
use crate::wire::{Failure, Target};
use plugin_api::{tokio, ClientEndpoint, EndpointError, Stream};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// Why the destination was not reached: the reply's code, and words for the log.
#[derive(Debug)]
pub struct Unreached {
    pub failure: Failure,
    pub why: String,
}

impl Unreached {
    fn new(failure: Failure, why: String) -> Self {
        Self { failure, why }
    }
}

/// Resolves, checks and connects, all within `timeout`. Addresses are tried in the resolver's
/// order; the last failure is the one reported.
pub async fn connect(
    target: &Target,
    rules: &Rules,
    timeout: Duration,
) -> Result<(Stream, SocketAddr), Unreached> {
    let deadline = Instant::now() + timeout;
    let addresses = resolve(target, deadline).await?;
    let allowed: Vec<SocketAddr> = addresses
        .iter()
        .copied()
        .filter(|address| rules.allows(address.ip()))
        .collect();
    if allowed.is_empty() {
        let listed = addresses
            .iter()
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>();
        return Err(Unreached::new(
            Failure::NotAllowed,
            format!("{} is not allowed by the rules", listed.join(", ")),
        ));
    }
    let mut last = None;
    for address in allowed {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let endpoint =
            ClientEndpoint::tcp(address.ip().to_string(), address.port()).with_timeout(left);
        match endpoint.connect().await {
            Ok(stream) => return Ok((stream, address)),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(EndpointError::Connect { source, .. }) => {
            Unreached::new(failure_of(&source), format!("cannot connect: {source}"))
        }
        Some(other) => Unreached::new(Failure::General, other.to_string()),
        None => Unreached::new(Failure::HostUnreachable, "timed out".into()),
    })
}

async fn resolve(target: &Target, deadline: Instant) -> Result<Vec<SocketAddr>, Unreached> {
    let (name, port) = match target {
        Target::Address(address) => return Ok(vec![*address]),
        Target::Name(name, port) => (name.as_str(), *port),
    };
    let cannot = |why: String| {
        Unreached::new(
            Failure::HostUnreachable,
            format!("cannot resolve {name}: {why}"),
        )
    };
    match tokio::time::timeout_at(deadline, tokio::net::lookup_host((name, port))).await {
        Ok(Ok(addresses)) => Ok(addresses.collect()),
        Ok(Err(e)) => Err(cannot(e.to_string())),
        Err(_) => Err(cannot("timed out".into())),
    }
}

/// The SOCKS5 reply code for a failed connect.
fn failure_of(error: &io::Error) -> Failure {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => Failure::Refused,
        io::ErrorKind::NetworkUnreachable => Failure::NetworkUnreachable,
        io::ErrorKind::HostUnreachable | io::ErrorKind::TimedOut => Failure::HostUnreachable,
        _ => Failure::General,
    }
}
