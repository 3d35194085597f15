//! Binding an [`Endpoint`] and accepting connections on it.

use super::stream::{PeerAddr, Stream};
use super::tls::TlsConfig;
use super::{Endpoint, EndpointError};
use crate::abi::LISTEN_SOCKET;
use crate::kit::scope::ServiceScope;
use crate::kit::socket_activation::{self, Adopted};
use abi_stable::std_types::{RErr, ROk, RSome};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
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
    // The files are read before a port is taken: a bad certificate leaves nothing bound.
    let tls = match endpoint {
        Endpoint::Ssl {
            private_key,
            cert_key,
            ..
        } => Some(
            TlsConfig::from_pem_files(cert_key.as_ref().unwrap_or(private_key), private_key)
                .map_err(EndpointError::Tls)?,
        ),
        _ => None,
    };
    let bound = match held_by_host(endpoint)? {
        Some(bound) => bound,
        None => bind_os(endpoint)?,
    };
    let fail = |source| EndpointError::Bind {
        endpoint: endpoint.to_string(),
        source,
    };
    let socket = match bound {
        Bound::Tcp(listener) => Socket::Tcp(TcpListener::from_std(listener).map_err(fail)?),
        Bound::Unix(listener, file) => Socket::Unix {
            inner: UnixListener::from_std(listener).map_err(fail)?,
            file,
        },
    };
    let listener = Listener { socket, tls };
    ServiceScope::record_endpoint(listener.local_endpoint());
    Ok(listener)
}

/// A bound socket before a runtime has it: what the kit binds, adopts, or is handed.
enum Bound {
    Tcp(std::net::TcpListener),
    /// With the file to remove when it closes, if this process made it.
    Unix(std::os::unix::net::UnixListener, Option<SocketFile>),
}

impl From<Adopted> for Bound {
    fn from(adopted: Adopted) -> Self {
        match adopted {
            Adopted::Tcp(listener) => Self::Tcp(listener),
            Adopted::Unix(listener) => Self::Unix(listener, None),
        }
    }
}

/// The socket the host holds for `endpoint`, if it holds sockets for its services: a worker of
/// a supervisor listens on its master's sockets, which outlive any one worker. `None` from a
/// host that binds nothing itself (the usual single process) or is older than 1.2.
fn held_by_host(endpoint: &Endpoint) -> Result<Option<Bound>, EndpointError> {
    let Some(host) = ServiceScope::current_host() else {
        return Ok(None);
    };
    let fail = |why: String| EndpointError::Bind {
        endpoint: endpoint.to_string(),
        source: io::Error::other(why),
    };
    let name = endpoint.socket_name();
    let reply = match host.call_extension(LISTEN_SOCKET.into(), name.as_str().into()) {
        RSome(ROk(reply)) => reply,
        RSome(RErr(why)) => return Err(fail(why.into_string())),
        _ => return Ok(None),
    };
    let fd: RawFd = reply
        .strip_prefix("fd=")
        .and_then(|fd| fd.parse().ok())
        .ok_or_else(|| fail(format!("the host answered '{reply}' for {name}")))?;
    // SAFETY: the host answers `fd=N` only for a descriptor it has just received for this
    // request and hands over: no one else in the process owns it (`listen-socket/1`).
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    socket_activation::adopt_listening(owned, &format!("the host's socket for {name}"), None)
        .map(|adopted| Some(adopted.into()))
        .map_err(|(_, why)| fail(why.to_string()))
}

/// Binds (or, for `systemd:`, adopts) the operating system's socket for `endpoint`.
fn bind_os(endpoint: &Endpoint) -> Result<Bound, EndpointError> {
    let fail = |source| EndpointError::Bind {
        endpoint: endpoint.to_string(),
        source,
    };
    match endpoint {
        Endpoint::Tcp {
            port,
            interface,
            backlog,
        }
        | Endpoint::Ssl {
            port,
            interface,
            backlog,
            ..
        } => {
            let address = resolve(interface.as_deref(), *port).map_err(fail)?;
            Ok(Bound::Tcp(bind_tcp(address, *backlog).map_err(fail)?))
        }
        Endpoint::Unix {
            path,
            mode,
            backlog,
        } => Ok(Bound::Unix(
            bind_unix(path, *mode, *backlog).map_err(fail)?,
            Some(SocketFile(path.clone())),
        )),
        Endpoint::Systemd { index, domain } => Ok(socket_activation::adopt(*index, *domain)
            .map_err(fail)?
            .into()),
    }
}

impl Endpoint {
    /// Binds the operating system's socket for this endpoint (adopts it, for `systemd:`) and
    /// hands it over as a descriptor, without TLS and without a runtime: for a host that holds
    /// sockets for worker processes (the supervisor). A Unix socket's file stays when the
    /// descriptor closes: whoever holds it removes the file. Plugins use [`bind`](Self::bind).
    pub fn bind_socket(&self) -> Result<OwnedFd, EndpointError> {
        Ok(match bind_os(self)? {
            Bound::Tcp(listener) => listener.into(),
            Bound::Unix(listener, file) => {
                std::mem::forget(file);
                listener.into()
            }
        })
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

fn bind_tcp(address: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
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
    Ok(socket.into())
}

fn bind_unix(
    path: &Path,
    mode: Option<u32>,
    backlog: u32,
) -> io::Result<std::os::unix::net::UnixListener> {
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
    match mode {
        None => socket.bind(&SockAddr::unix(path)?)?,
        // A socket's mode can only be set through its path, and `chmod` follows a symlink
        // swapped in there between `bind` and `chmod` (the host may be root). So the socket is
        // bound in a directory of our own beside the path (mode 0700: nobody else can swap
        // anything in it), given its mode there, then renamed into place: `rename` replaces
        // whatever is at the path, never following it.
        Some(mode) => {
            let parent = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            let private = tempfile::Builder::new().prefix(".h").tempdir_in(parent)?;
            let inside = private.path().join("s");
            socket.bind(&SockAddr::unix(&inside)?)?;
            std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(mode))?;
            std::fs::rename(&inside, path)?;
        }
    }
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}
