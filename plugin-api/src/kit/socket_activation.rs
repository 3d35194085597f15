//! Adopting listening sockets passed by systemd socket activation (`sd_listen_fds(3)`).

use super::endpoint::{Listener, SocketDomain, UnixListener};
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Mutex;

/// The first passed descriptor, `SD_LISTEN_FDS_START`.
const FIRST_FD: RawFd = 3;

/// Indexes already adopted: a descriptor can have only one owner.
static ADOPTED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn error(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Takes ownership of passed socket `index`, checking that systemd meant it for this process,
/// that it is a listening socket, and that it has the expected family.
pub fn adopt(index: usize, domain: Option<SocketDomain>) -> io::Result<Listener> {
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
    let mut adopted = ADOPTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if adopted.contains(&index) {
        return Err(error(format!("socket index {index} is already in use")));
    }
    let fd = FIRST_FD + RawFd::try_from(index).map_err(|_| error("index too large".into()))?;
    let family = listening_family(fd)?;
    let found = match family {
        libc::AF_INET => SocketDomain::Inet,
        libc::AF_INET6 => SocketDomain::Inet6,
        libc::AF_UNIX => SocketDomain::Unix,
        other => {
            return Err(error(format!(
                "socket {index} has unsupported address family {other}"
            )))
        }
    };
    if let Some(expected) = domain.filter(|d| *d != found) {
        return Err(error(format!("socket {index} is {found}, not {expected}")));
    }
    // SAFETY: the descriptor was passed to this process for it to own, is a listening socket
    // (checked above), and is adopted only once (ADOPTED).
    let listener = unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        match found {
            SocketDomain::Unix => {
                let std = std::os::unix::net::UnixListener::from_raw_fd(fd);
                std.set_nonblocking(true)?;
                Listener::Unix(UnixListener {
                    inner: tokio::net::UnixListener::from_std(std)?,
                    path: None,
                })
            }
            _ => {
                let std = std::net::TcpListener::from_raw_fd(fd);
                std.set_nonblocking(true)?;
                Listener::Tcp(tokio::net::TcpListener::from_std(std)?)
            }
        }
    };
    adopted.push(index);
    Ok(listener)
}

/// The address family of `fd`, if it is a listening socket.
fn listening_family(fd: RawFd) -> io::Result<libc::c_int> {
    let listening = socket_option(fd, libc::SO_ACCEPTCONN)
        .map_err(|e| error(format!("passed descriptor {fd} is not a socket: {e}")))?;
    if listening == 0 {
        return Err(error(format!(
            "passed descriptor {fd} is not a listening socket"
        )));
    }
    socket_option(fd, libc::SO_DOMAIN)
}

/// An integer `SOL_SOCKET` option of `fd`.
fn socket_option(fd: RawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `length` bytes into `value`.
    let status = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut length,
        )
    };
    match status {
        0 => Ok(value),
        _ => Err(io::Error::last_os_error()),
    }
}
