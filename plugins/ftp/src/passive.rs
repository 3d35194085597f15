//! Passive-mode data connections: a port opened by PASV or EPSV for the session's client alone.
//!
//! The port accepts from the moment it is announced: a connection from any address but the
//! client's is closed at once (it would otherwise be a way to steal the client's file, or to
//! make its transfer fail), and the first from the client's address is kept until the transfer
//! command takes it. So an intruder changes nothing for the owner.

use plugin_api::tokio::net::{TcpListener, TcpSocket, TcpStream};
use plugin_api::tokio::sync::oneshot;
use plugin_api::tokio::task::JoinHandle;
use plugin_api::tokio::time::timeout;
use plugin_api::tracing::warn;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

/// Connections the kernel queues on a passive port before they are accepted.
const BACKLOG: u32 = 8;

/// A passive port waiting for its client's data connection.
pub struct Passive {
    port: u16,
    connection: oneshot::Receiver<TcpStream>,
    acceptor: JoinHandle<()>,
}

impl Drop for Passive {
    fn drop(&mut self) {
        // Closes the port, and any connection not yet taken.
        self.acceptor.abort();
    }
}

impl Passive {
    /// Opens a port in `ports` on `ip` (the address the client reached the server at) for
    /// connections from `client` only.
    pub fn open(ip: IpAddr, ports: &RangeInclusive<u16>, client: IpAddr) -> io::Result<Self> {
        let listener = bind(ip, ports)?;
        let port = listener.local_addr()?.port();
        let (found, connection) = oneshot::channel();
        let acceptor = plugin_api::tokio::spawn(async move {
            if let Ok(stream) = accept_from(&listener, client, port).await {
                let _ = found.send(stream);
            }
        });
        Ok(Self {
            port,
            connection,
            acceptor,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client's data connection, once it arrives, within `patience`.
    pub async fn connection(mut self, patience: Duration) -> io::Result<TcpStream> {
        match timeout(patience, &mut self.connection).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(_)) => Err(io::Error::other("the passive port failed")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no data connection within {patience:?}"),
            )),
        }
    }
}

/// Accepts until a connection from `client` arrives; every other is closed as it comes.
async fn accept_from(listener: &TcpListener, client: IpAddr, port: u16) -> io::Result<TcpStream> {
    let mut refused = 0u64;
    loop {
        let (stream, from) = listener.accept().await?;
        if from.ip().to_canonical() == client {
            return Ok(stream);
        }
        // Once per port: a flood of intruders must not become a flood of log lines.
        if refused == 0 {
            warn!("refused a data connection to passive port {port} from {from}: the port belongs to a session of {client}");
        }
        refused += 1;
        // Reset rather than close: the intruder learns nothing and leaves no TIME_WAIT.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
}

/// Binds a listening socket on a free port in `ports`.
fn bind(ip: IpAddr, ports: &RangeInclusive<u16>) -> io::Result<TcpListener> {
    let (low, high) = (u32::from(*ports.start()), u32::from(*ports.end()));
    let count = high - low + 1;
    // Start at a random port: scanning from the bottom would keep hitting ports still in
    // TIME_WAIT from the previous transfers.
    let start = RandomState::new().hash_one(std::time::Instant::now()) as u32 % count;
    for step in 0..count.min(1000) {
        let port = (low + (start + step) % count) as u16;
        let socket = match ip {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // Linux hands accepted sockets the listener's TCP_NODELAY: without it the last small
        // segment of every transfer waits ~40 ms for the client's delayed ACK.
        socket.set_nodelay(true)?;
        // The server closes each data connection, so its port sits in TIME_WAIT for a minute;
        // without this a busy server runs out of passive ports (seen at ~40 sessions/s).
        socket.set_reuseaddr(true)?;
        if socket.bind(SocketAddr::new(ip, port)).is_ok() {
            return socket.listen(BACKLOG);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free passive port in {low}-{high}"),
    ))
}

/// Parses `--passive-ports LOW-HIGH`.
pub fn parse_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let invalid =
        || format!("--passive-ports '{text}' is not LOW-HIGH with 1024 <= LOW <= HIGH <= 65535");
    let (low, high) = text.split_once('-').ok_or_else(invalid)?;
    let (low, high): (u16, u16) = (
        low.trim().parse().map_err(|_| invalid())?,
        high.trim().parse().map_err(|_| invalid())?,
    );
    if low < 1024 || low > high {
        return Err(invalid());
    }
    Ok(low..=high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_port_ranges() {
        assert_eq!(parse_range("30000-30999"), Ok(30000..=30999));
        for bad in ["30000", "3-2", "20-30", "a-b", "40000-30000"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
