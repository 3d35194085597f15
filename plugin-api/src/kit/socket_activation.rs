//! Adopting listening sockets passed by systemd socket activation (`sd_listen_fds(3)`).

use super::endpoint::SocketDomain;
use crate::abi::SYSTEMD_SOCKET;
use crate::kit::scope::ServiceScope;
use abi_stable::std_types::{RErr, ROk, RSome};
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// The first passed descriptor, `SD_LISTEN_FDS_START`.
const FIRST_FD: RawFd = 3;

/// Indexes this library adopted, for hosts older than 1.2, which keep no claims of their own.
static ADOPTED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A passed listening socket, by family.
pub enum Adopted {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

fn error(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Takes ownership of passed socket `index`, checking that systemd meant it for this process,
/// that it is a listening socket, and that it has the expected family.
pub fn adopt(index: usize, domain: Option<SocketDomain>) -> io::Result<Adopted> {
    let listen_pid = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok());
    if listen_pid != Some(std::process::id()) {
        return Err(error(
            "no sockets were passed to this process (LISTEN_PID is not its pid)".into(),
        ));
    }
    let count: usize = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if index >= count {
        return Err(error(format!(
            "systemd passed {count} socket(s); there is no index {index}"
        )));
    }
    let fd = FIRST_FD + RawFd::try_from(index).map_err(|_| error("index too large".into()))?;
    // Claimed before anything touches the descriptor, so it is never owned twice. A claimed
    // socket that turns out unusable stays claimed: no other service could use it either.
    claim(index).map_err(error)?;
    // SAFETY: LISTEN_PID names this process, so systemd passed descriptors FIRST_FD to
    // FIRST_FD + LISTEN_FDS - 1 for it to own (the protocol of sd_listen_fds(3), which trusts
    // the same two variables), and the claim above makes this service its only owner.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    adopt_listening(owned, &format!("socket {index}"), domain).map_err(|(owned, why)| {
        // Not a socket we can use: hand the number back unclosed.
        let _ = owned.into_raw_fd();
        why
    })
}

/// Claims socket `index` for the calling service: with the host, which knows every service of
/// the process, or, in a host older than 1.2, within this library.
fn claim(index: usize) -> Result<(), String> {
    if let Some(host) = ServiceScope::current_host() {
        match host.call_extension(SYSTEMD_SOCKET.into(), index.to_string().as_str().into()) {
            RSome(ROk(_)) => return Ok(()),
            RSome(RErr(why)) => return Err(why.into_string()),
            _ => {}
        }
    }
    let mut adopted = ADOPTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if adopted.contains(&index) {
        return Err(format!("socket index {index} is already in use"));
    }
    adopted.push(index);
    Ok(())
}

/// `owned` as a listener of its family (which must be `expected`, if given), or the descriptor
/// back with the reason it cannot be: for sockets this process did not bind itself, passed by
/// systemd or by a supervisor. `what` names it in errors.
pub(crate) fn adopt_listening(
    owned: OwnedFd,
    what: &str,
    expected: Option<SocketDomain>,
) -> Result<Adopted, (OwnedFd, io::Error)> {
    let socket = socket2::SockRef::from(&owned);
    let found = match socket.is_listener() {
        Err(e) => Err(format!("{what} is not a socket: {e}")),
        Ok(false) => Err(format!("{what} is not a listening socket")),
        Ok(true) => match socket.domain() {
            Ok(d) if d == socket2::Domain::IPV4 => Ok(SocketDomain::Inet),
            Ok(d) if d == socket2::Domain::IPV6 => Ok(SocketDomain::Inet6),
            Ok(d) if d == socket2::Domain::UNIX => Ok(SocketDomain::Unix),
            Ok(other) => Err(format!("{what} has unsupported address family {other:?}")),
            Err(e) => Err(format!("{what}: {e}")),
        },
    };
    let found = match found {
        Ok(found) => found,
        Err(why) => return Err((owned, error(why))),
    };
    if let Some(expected) = expected.filter(|d| *d != found) {
        return Err((owned, error(format!("{what} is {found}, not {expected}"))));
    }
    let prepared = socket
        .set_cloexec(true)
        .and_then(|()| socket.set_nonblocking(true));
    if let Err(e) = prepared {
        return Err((owned, e));
    }
    Ok(match found {
        SocketDomain::Unix => Adopted::Unix(owned.into()),
        _ => Adopted::Tcp(owned.into()),
    })
}
