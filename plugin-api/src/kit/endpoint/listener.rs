//! Binding an [`Endpoint`] and accepting connections on it.

use super::stream::{PeerAddr, Stream};
use super::tls::TlsConfig;
use super::{Endpoint, EndpointError};
use crate::kit::scope::ServiceScope;
use crate::kit::socket_activation::{self, Adopted};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A bound, listening endpoint. Accept connections with [`Tasks::serve`](crate::Tasks::serve)
/// (or, for a loop of your own, [`accept`](Self::accept)).
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    tls: Option<TlsConfig>,
}

#[derive(Debug)]
enum Socket {
    Tcp(TcpListener),
    Unix {
        inner: UnixListener,
        /// Removed when the listener is dropped: `None` for a socket systemd created and owns.
        file: Option<SocketFile>,
    },
}

/// The socket file of a Unix listener this process bound, removed when it closes.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A connection accepted but not yet ready: a TLS listener's handshake is still to come, and
/// runs on the connection's own task so a slow client never holds up the accept loop.
pub(crate) struct Accepted {
    raw: Raw,
    tls: Option<TlsConfig>,
}

enum Raw {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Accepted {
    /// Completes the connection: the TLS handshake, if the listener speaks TLS.
    pub(crate) async fn ready(self) -> io::Result<Stream> {
        match (self.raw, self.tls) {
            (Raw::Tcp(stream), Some(tls)) => tls.accept(stream).await,
            (Raw::Tcp(stream), None) => Ok(Stream::from(stream)),
            (Raw::Unix(stream), _) => Ok(Stream::from(stream)),
        }
    }

    /// Writes `reply` in clear and closes, for a connection refused before it is served.
    /// Nothing is written on a TLS listener: the client expects a handshake, not text.
    pub(crate) async fn refuse(self, reply: &[u8]) {
        use tokio::io::AsyncWriteExt;
        if self.tls.is_some() || reply.is_empty() {
            return;
        }
        let write = async {
            match self.raw {
                Raw::Tcp(mut s) => s.write_all(reply).await.and(s.shutdown().await),
                Raw::Unix(mut s) => s.write_all(reply).await.and(s.shutdown().await),
            }
        };
        // A client that does not read gets no more than a moment of the server's time.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), write).await;
    }
}

impl Listener {
    /// Waits for the next connection and completes it (for a TLS listener, the handshake
    /// runs here, within 10 s). [`Tasks::serve`](crate::Tasks::serve) is usually what you want:
    /// it runs handshakes on each connection's own task and handles accept errors.
    pub async fn accept(&self) -> io::Result<(Stream, PeerAddr)> {
        let (accepted, peer) = self.accept_raw().await?;
        Ok((accepted.ready().await?, peer))
    }

    pub(crate) async fn accept_raw(&self) -> io::Result<(Accepted, PeerAddr)> {
        let (raw, peer) = match &self.socket {
            Socket::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                (Raw::Tcp(stream), PeerAddr::Tcp(peer))
            }
            Socket::Unix { inner, .. } => (Raw::Unix(inner.accept().await?.0), PeerAddr::Unix),
        };
        let tls = self.tls.clone();
        Ok((Accepted { raw, tls }, peer))
    }

    /// Where the listener is bound, for the log: with the port the system chose for `tcp:0`,
    /// and `ssl:` for a TLS listener (without its key files).
    pub fn local_endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "ssl" } else { "tcp" };
        match &self.socket {
            Socket::Tcp(listener) => match listener.local_addr() {
                Ok(SocketAddr::V4(a)) => format!("{scheme}:{}:interface={}", a.port(), a.ip()),
                Ok(SocketAddr::V6(a)) => format!("{scheme}:{}:interface=[{}]", a.port(), a.ip()),
                Err(e) => format!("{scheme}:? ({e})"),
            },
            Socket::Unix {
                file: Some(SocketFile(path)),
                ..
            } => format!("unix:{}", path.display()),
            Socket::Unix { file: None, .. } => "unix:(passed by systemd)".to_string(),
        }
    }

    /// The TCP port, or `None` for a Unix socket.
    pub fn port(&self) -> Option<u16> {
        match &self.socket {
            Socket::Tcp(listener) => listener.local_addr().ok().map(|a| a.port()),
            Socket::Unix { .. } => None,
        }
    }

    /// Whether connections on this listener speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Offers these ALPN protocols in the TLS handshake, most preferred first (an HTTP/2
    /// server offers `h2`, then `http/1.1`). Does nothing on a listener without TLS.
    pub fn set_alpn(&mut self, protocols: &[&[u8]]) {
        self.tls = self.tls.take().map(|tls| tls.with_alpn(protocols));
    }
}

pub(super) fn bind(endpoint: &Endpoint) -> Result<Listener, EndpointError> {
    let listener = bind_socket(endpoint)?;
    ServiceScope::record_endpoint(listener.local_endpoint());
    Ok(listener)
}

fn bind_socket(endpoint: &Endpoint) -> Result<Listener, EndpointError> {
    let fail = |source| EndpointError::Bind {
        endpoint: endpoint.to_string(),
        source,
    };
    match endpoint {
        Endpoint::Tcp {
            port,
            interface,
            backlog,
        } => {
            let address = resolve(interface.as_deref(), *port).map_err(fail)?;
            Ok(Listener {
                socket: Socket::Tcp(bind_tcp(address, *backlog).map_err(fail)?),
                tls: None,
            })
        }
        Endpoint::Ssl {
            port,
            interface,
            backlog,
            private_key,
            cert_key,
        } => {
            // The files are read before the port is taken: a bad certificate leaves nothing bound.
            let tls =
                TlsConfig::from_pem_files(cert_key.as_ref().unwrap_or(private_key), private_key)
                    .map_err(EndpointError::Tls)?;
            let address = resolve(interface.as_deref(), *port).map_err(fail)?;
            Ok(Listener {
                socket: Socket::Tcp(bind_tcp(address, *backlog).map_err(fail)?),
                tls: Some(tls),
            })
        }
        Endpoint::Unix {
            path,
            mode,
            backlog,
        } => Ok(Listener {
            socket: Socket::Unix {
                inner: bind_unix(path, *mode, *backlog).map_err(fail)?,
                file: Some(SocketFile(path.clone())),
            },
            tls: None,
        }),
        Endpoint::Systemd { index, domain } => {
            let socket = match socket_activation::adopt(*index, *domain).map_err(fail)? {
                Adopted::Tcp(listener) => {
                    Socket::Tcp(TcpListener::from_std(listener).map_err(fail)?)
                }
                Adopted::Unix(listener) => Socket::Unix {
                    inner: UnixListener::from_std(listener).map_err(fail)?,
                    file: None,
                },
            };
            Ok(Listener { socket, tls: None })
        }
    }
}

fn resolve(interface: Option<&str>, port: u16) -> io::Result<SocketAddr> {
    let Some(interface) = interface else {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    };
    if let Ok(ip) = interface.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    // Like Twisted, a host name means its first IPv4 address when it has one.
    let addresses: Vec<SocketAddr> = (interface, port).to_socket_addrs()?.collect();
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host name has no address"))
}

fn bind_tcp(address: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    // Restarting a server must not wait for old connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    TcpListener::from_std(socket.into())
}

fn bind_unix(path: &Path, mode: Option<u32>, backlog: u32) -> io::Result<UnixListener> {
    use socket2::{Domain, SockAddr, Socket, Type};
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        // Replace a socket left by a dead server, but never a live one or another kind of file.
        let stale = meta.file_type().is_socket()
            && std::os::unix::net::UnixStream::connect(path)
                .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused);
        if !stale {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "the path exists"));
        }
        std::fs::remove_file(path)?;
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::unix(path)?)?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    UnixListener::from_std(socket.into())
}
