//! Twisted-style listen strings, parsed and bound in one place for every plugin.
//!
//! - `tcp:PORT[:interface=ADDR][:backlog=N]`: ADDR is an IP address or a host name (default: all
//!   IPv4 interfaces); an IPv6 address is written in brackets (`interface=[::1]`) or with its
//!   colons escaped as Twisted does (`interface=\:\:1`).
//! - `unix:PATH[:mode=0660][:backlog=N]`: a stale socket file nobody listens on is replaced.
//! - `systemd:domain=INET:index=N` or `systemd:index=N`: the Nth listening socket passed by
//!   systemd socket activation (`LISTEN_FDS`, `LISTEN_PID`); `domain` (INET, INET6 or UNIX)
//!   checks its address family.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The default listen backlog: large enough for thousands of clients arriving at once
/// (the kernel caps it at `net.core.somaxconn`).
const DEFAULT_BACKLOG: u32 = 1024;

/// Where a service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP port on one interface.
    Tcp {
        /// 0 lets the system pick a free port.
        port: u16,
        /// The address or host name to bind; `None` means every IPv4 interface.
        interface: Option<String>,
        /// The listen backlog.
        backlog: u32,
    },
    /// A Unix domain socket.
    Unix {
        /// The socket file.
        path: PathBuf,
        /// Permission bits for the socket file, e.g. `0o660`.
        mode: Option<u32>,
        /// The listen backlog.
        backlog: u32,
    },
    /// A listening socket passed by systemd socket activation (`LISTEN_FDS`, `LISTEN_PID`).
    Systemd {
        /// Which of the passed sockets: 0 is the first (file descriptor 3).
        index: usize,
        /// The address family it must have, if given.
        domain: Option<SocketDomain>,
    },
}

/// The address family of a socket passed by systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketDomain {
    /// IPv4 (`INET`).
    Inet,
    /// IPv6 (`INET6`).
    Inet6,
    /// Unix domain (`UNIX`).
    Unix,
}

impl FromStr for SocketDomain {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "INET" => Ok(Self::Inet),
            "INET6" => Ok(Self::Inet6),
            "UNIX" => Ok(Self::Unix),
            _ => Err(format!(
                "unknown domain '{text}' (expected INET, INET6 or UNIX)"
            )),
        }
    }
}

impl fmt::Display for SocketDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Inet => "INET",
            Self::Inet6 => "INET6",
            Self::Unix => "UNIX",
        })
    }
}

/// Why an endpoint string could not be parsed or bound.
#[derive(Debug)]
pub enum EndpointError {
    /// The string is not a valid endpoint; the text says what is wrong.
    Invalid(String),
    /// Binding failed.
    Bind {
        /// The endpoint, as written.
        endpoint: String,
        /// What the system said.
        source: io::Error,
    },
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(why) => f.write_str(why),
            Self::Bind { endpoint, source } => write!(f, "cannot listen on {endpoint}: {source}"),
        }
    }
}

impl std::error::Error for EndpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Invalid(_) => None,
            Self::Bind { source, .. } => Some(source),
        }
    }
}

fn invalid(text: &str, why: impl fmt::Display) -> EndpointError {
    EndpointError::Invalid(format!("invalid endpoint '{text}': {why}"))
}

/// Splits on `:` except inside `[...]` or after a backslash, unescaping as it goes.
fn split_fields(text: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = text.chars();
    let mut in_brackets = false;
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("never empty");
        match c {
            '\\' => field.extend(chars.next()),
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            ':' if !in_brackets => fields.push(String::new()),
            _ => field.push(c),
        }
    }
    fields
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fields = split_fields(text);
        let (kind, args) = fields
            .split_first()
            .expect("split gives one field at least");
        let allowed: &[&str] = match kind.as_str() {
            "tcp" => &["interface", "backlog"],
            "unix" => &["mode", "backlog"],
            "systemd" => &["domain", "index"],
            _ => {
                return Err(invalid(
                    text,
                    format!("unknown type '{kind}' (expected tcp, unix or systemd)"),
                ))
            }
        };
        // tcp and unix take an address first; systemd has only parameters.
        let (address, params) = match (kind.as_str(), args.split_first()) {
            ("systemd", _) => ("", args),
            (_, Some((address, params))) => (address.as_str(), params),
            (_, None) => {
                return Err(invalid(
                    text,
                    format!(
                        "expected {kind}:{}",
                        if kind == "tcp" { "PORT" } else { "PATH" }
                    ),
                ))
            }
        };
        let mut values: Vec<(&str, &str)> = Vec::new();
        for param in params {
            let (key, value) = param
                .split_once('=')
                .ok_or_else(|| invalid(text, format!("expected key=value, found '{param}'")))?;
            if !allowed.contains(&key) {
                return Err(invalid(
                    text,
                    format!("unknown parameter '{key}' for {kind}"),
                ));
            }
            values.push((key, value));
        }
        let get = |key: &str| {
            values
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
        };
        let backlog = match get("backlog") {
            Some(value) => value
                .parse()
                .map_err(|_| invalid(text, format!("backlog '{value}' is not a number")))?,
            None => DEFAULT_BACKLOG,
        };
        match kind.as_str() {
            "tcp" => Ok(Self::Tcp {
                port: address
                    .parse()
                    .map_err(|_| invalid(text, format!("port '{address}' is not in 0..=65535")))?,
                interface: get("interface").map(str::to_string),
                backlog,
            }),
            "unix" if address.is_empty() => Err(invalid(text, "the socket path is empty")),
            "unix" => Ok(Self::Unix {
                path: PathBuf::from(address),
                mode: get("mode")
                    .map(|value| {
                        u32::from_str_radix(value, 8)
                            .ok()
                            .filter(|m| *m <= 0o7777)
                            .ok_or_else(|| {
                                invalid(text, format!("mode '{value}' is not an octal permission"))
                            })
                    })
                    .transpose()?,
                backlog,
            }),
            _ => Ok(Self::Systemd {
                index: get("index")
                    .ok_or_else(|| invalid(text, "systemd needs index=N"))?
                    .parse()
                    .map_err(|_| invalid(text, "index must be a number"))?,
                domain: get("domain")
                    .map(|d| d.parse())
                    .transpose()
                    .map_err(|e| invalid(text, e))?,
            }),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp {
                port, interface, ..
            } => match interface {
                Some(i) if i.contains(':') => write!(f, "tcp:{port}:interface=[{i}]"),
                Some(i) => write!(f, "tcp:{port}:interface={i}"),
                None => write!(f, "tcp:{port}"),
            },
            Self::Unix { path, .. } => write!(f, "unix:{}", path.display()),
            Self::Systemd {
                index,
                domain: Some(domain),
            } => write!(f, "systemd:domain={domain}:index={index}"),
            Self::Systemd {
                index,
                domain: None,
            } => write!(f, "systemd:index={index}"),
        }
    }
}

impl Endpoint {
    /// A TCP endpoint on `interface` (an address or host name).
    pub fn tcp(port: u16, interface: &str) -> Self {
        Self::Tcp {
            port,
            interface: Some(interface.to_string()),
            backlog: DEFAULT_BACKLOG,
        }
    }

    /// Binds the endpoint and starts listening.
    ///
    /// Must be called inside the plugin's runtime, i.e. from [`Service::privileged_start`]
    /// or [`Service::start`](crate::Service::start).
    ///
    /// [`Service::privileged_start`]: crate::Service::privileged_start
    pub fn bind(&self) -> Result<Listener, EndpointError> {
        let fail = |source| EndpointError::Bind {
            endpoint: self.to_string(),
            source,
        };
        match self {
            Self::Tcp {
                port,
                interface,
                backlog,
            } => {
                let address = resolve(interface.as_deref(), *port).map_err(fail)?;
                let listener = bind_tcp(address, *backlog).map_err(fail)?;
                Ok(Listener::Tcp(listener))
            }
            Self::Unix {
                path,
                mode,
                backlog,
            } => {
                let listener = bind_unix(path, *mode, *backlog).map_err(fail)?;
                Ok(Listener::Unix(UnixListener {
                    inner: listener,
                    path: Some(path.clone()),
                }))
            }
            Self::Systemd { index, domain } => {
                super::socket_activation::adopt(*index, *domain).map_err(fail)
            }
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

fn bind_tcp(address: SocketAddr, backlog: u32) -> io::Result<tokio::net::TcpListener> {
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
    tokio::net::TcpListener::from_std(socket.into())
}

fn bind_unix(path: &Path, mode: Option<u32>, backlog: u32) -> io::Result<tokio::net::UnixListener> {
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
    tokio::net::UnixListener::from_std(socket.into())
}

/// A bound, listening endpoint.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(tokio::net::TcpListener),
    /// A Unix socket listener; the socket file is removed when it is dropped.
    Unix(UnixListener),
}

/// A Unix socket listener that removes the socket file it created when dropped.
#[derive(Debug)]
pub struct UnixListener {
    pub(super) inner: tokio::net::UnixListener,
    /// The file to remove: `None` for a socket systemd created and owns.
    pub(super) path: Option<PathBuf>,
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Listener {
    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<(Stream, PeerAddr)> {
        match self {
            Self::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                Ok((Stream::Tcp(stream), PeerAddr::Tcp(peer)))
            }
            Self::Unix(listener) => {
                let (stream, _) = listener.inner.accept().await?;
                Ok((Stream::Unix(stream), PeerAddr::Unix))
            }
        }
    }

    /// Where the listener is bound, with the port the system chose for `tcp:0`.
    pub fn local_endpoint(&self) -> String {
        match self {
            Self::Tcp(listener) => match listener.local_addr() {
                Ok(SocketAddr::V4(a)) => format!("tcp:{}:interface={}", a.port(), a.ip()),
                Ok(SocketAddr::V6(a)) => format!("tcp:{}:interface=[{}]", a.port(), a.ip()),
                Err(e) => format!("tcp:? ({e})"),
            },
            Self::Unix(listener) => match &listener.path {
                Some(path) => format!("unix:{}", path.display()),
                None => "unix:(passed by systemd)".to_string(),
            },
        }
    }

    /// The TCP port, or `None` for a Unix socket.
    pub fn port(&self) -> Option<u16> {
        match self {
            Self::Tcp(listener) => listener.local_addr().ok().map(|a| a.port()),
            Self::Unix(_) => None,
        }
    }
}

/// The address of a connected client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddr {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A client on a Unix socket (these have no useful address).
    Unix,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(address) => address.fmt(f),
            Self::Unix => f.write_str("unix socket peer"),
        }
    }
}

/// An accepted connection: read and write it with tokio's `AsyncReadExt`/`AsyncWriteExt`.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(tokio::net::TcpStream),
    /// A Unix socket connection.
    Unix(tokio::net::UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_with_parameters() {
        let e: Endpoint = "tcp:10000:interface=127.0.0.1:backlog=5".parse().unwrap();
        assert_eq!(
            e,
            Endpoint::Tcp {
                port: 10000,
                interface: Some("127.0.0.1".into()),
                backlog: 5
            }
        );
        assert_eq!(e.to_string(), "tcp:10000:interface=127.0.0.1");
    }

    #[test]
    fn parses_ipv6_interfaces_both_ways() {
        for text in ["tcp:80:interface=[::1]", r"tcp:80:interface=\:\:1"] {
            let e: Endpoint = text.parse().unwrap();
            assert_eq!(e, Endpoint::tcp(80, "::1"), "{text}");
        }
    }

    #[test]
    fn parses_unix_with_mode() {
        let e: Endpoint = "unix:/run/x.sock:mode=0660".parse().unwrap();
        assert_eq!(
            e,
            Endpoint::Unix {
                path: "/run/x.sock".into(),
                mode: Some(0o660),
                backlog: DEFAULT_BACKLOG
            }
        );
    }

    #[test]
    fn parses_systemd_sockets() {
        let e: Endpoint = "systemd:domain=INET:index=1".parse().unwrap();
        assert_eq!(
            e,
            Endpoint::Systemd {
                index: 1,
                domain: Some(SocketDomain::Inet)
            }
        );
        assert_eq!(e.to_string(), "systemd:domain=INET:index=1");
        let e: Endpoint = "systemd:index=0".parse().unwrap();
        assert_eq!(e.to_string(), "systemd:index=0");
    }

    #[test]
    fn rejects_bad_strings_with_a_reason() {
        for (text, why) in [
            ("tcp", "expected tcp:PORT"),
            ("unix", "expected unix:PATH"),
            ("systemd:domain=INET", "systemd needs index=N"),
            ("systemd:index=x", "index must be a number"),
            ("systemd:index=0:domain=IPX", "unknown domain 'IPX'"),
            ("tcp:70000", "not in 0..=65535"),
            ("tcp:1:colour=red", "unknown parameter 'colour'"),
            ("tcp:1:backlog=x", "backlog 'x'"),
            ("unix:", "path is empty"),
            ("unix:/x:mode=999", "octal"),
            (
                "udp:53",
                "unknown type 'udp' (expected tcp, unix or systemd)",
            ),
            ("tcp:1:interface", "expected key=value"),
        ] {
            let err = text.parse::<Endpoint>().unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
