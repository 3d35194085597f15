//! Client endpoints: where a service connects to, as in Twisted's `clientFromString`.
//!
//! - `tcp:HOST:PORT[:timeout=SECONDS]` (also `tcp:host=HOST:port=PORT`); an IPv6 address is
//!   written in brackets, `tcp:[::1]:80`;
//! - `unix:PATH[:timeout=SECONDS]` (also `unix:path=PATH`).
//!
//! The timeout (default 30 s, as in Twisted) bounds name resolution and connecting together.

use super::stream::Stream;
use super::syntax::{self, Description, Quoted};
use super::{invalid, writable, EndpointError};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// How long connecting may take unless the endpoint says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a client connects: parse one from a string, or build it with
/// [`ClientEndpoint::tcp`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEndpoint {
    /// A TCP server.
    #[non_exhaustive]
    Tcp {
        /// A host name or an IP address.
        host: String,
        /// The server's port.
        port: u16,
        /// How long resolving and connecting may take.
        timeout: Duration,
    },
    /// A Unix socket server.
    #[non_exhaustive]
    Unix {
        /// The socket file.
        path: PathBuf,
        /// How long connecting may take.
        timeout: Duration,
    },
}

impl ClientEndpoint {
    /// A TCP server at `host` (a name or an address) and `port`, with the default timeout.
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        Self::Tcp {
            host: host.into(),
            port,
            timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The same endpoint with another connect timeout. Zero becomes the shortest positive one,
    /// a nanosecond, as `timeout=0` is not a timeout a string may give.
    pub fn with_timeout(mut self, limit: Duration) -> Self {
        match &mut self {
            Self::Tcp { timeout, .. } | Self::Unix { timeout, .. } => {
                *timeout = limit.max(Duration::from_nanos(1))
            }
        }
        self
    }

    /// The same endpoint with a relative Unix socket path taken relative to `dir`.
    pub fn relative_to(&self, dir: &std::path::Path) -> Self {
        let mut endpoint = self.clone();
        if let Self::Unix { path, .. } = &mut endpoint {
            *path = dir.join(&*path);
        }
        endpoint
    }

    /// How long connecting may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Self::Tcp { timeout, .. } | Self::Unix { timeout, .. } => *timeout,
        }
    }

    /// Connects, within the endpoint's timeout. TCP connections get `TCP_NODELAY`: whoever
    /// connects through the kit is relaying or talking a protocol, where waiting to batch small
    /// writes only adds latency.
    ///
    /// An endpoint built in code with an empty host or path, or a path that is not UTF-8, is
    /// refused: no endpoint string says it.
    pub async fn connect(&self) -> Result<Stream, EndpointError> {
        writable(self)?;
        let fail = |source| EndpointError::Connect {
            endpoint: self.to_string(),
            source,
        };
        let connecting = async {
            match self {
                Self::Tcp { host, port, .. } => {
                    let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    stream.set_nodelay(true)?;
                    Ok(Stream::from(stream))
                }
                Self::Unix { path, .. } => {
                    Ok(Stream::from(tokio::net::UnixStream::connect(path).await?))
                }
            }
        };
        let limit = self.timeout();
        match tokio::time::timeout(limit, connecting).await {
            Ok(connected) => connected.map_err(fail),
            Err(_) => Err(fail(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out after {}s", syntax::Seconds(limit)),
            ))),
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let d = Description::parse(text)?;
        let timeout = d
            .keyword("timeout")
            .map(syntax::seconds)
            .transpose()?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        match d.kind.as_str() {
            "tcp" => {
                d.check_keys(&["host", "port", "timeout"])?;
                d.at_most_positional(2)?;
                let host = match d.value(0, "host")? {
                    None | Some("") => return Err("expected tcp:HOST:PORT".into()),
                    Some(host) => host.to_string(),
                };
                let port = d.value(1, "port")?.ok_or("expected tcp:HOST:PORT")?;
                Ok(Self::Tcp {
                    host,
                    port: port
                        .parse()
                        .map_err(|_| format!("port '{port}' is not in 0..=65535"))?,
                    timeout,
                })
            }
            "unix" => {
                d.check_keys(&["path", "timeout"])?;
                d.at_most_positional(1)?;
                match d.value(0, "path")? {
                    None | Some("") => Err("expected unix:PATH".into()),
                    Some(path) => Ok(Self::Unix {
                        path: PathBuf::from(path),
                        timeout,
                    }),
                }
            }
            kind => Err(format!("unknown type '{kind}' (expected tcp or unix)")),
        }
    }
}

impl FromStr for ClientEndpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text).map_err(|why| invalid(text, why))
    }
}

impl fmt::Display for ClientEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let timeout = |f: &mut fmt::Formatter<'_>, timeout: &Duration| match *timeout {
            DEFAULT_CONNECT_TIMEOUT => Ok(()),
            other => write!(f, ":timeout={}", syntax::Seconds(other)),
        };
        match self {
            Self::Tcp {
                host,
                port,
                timeout: t,
            } => {
                write!(f, "tcp:{}:{port}", Quoted(host))?;
                timeout(f, t)
            }
            Self::Unix { path, timeout: t } => {
                write!(f, "unix:{}", Quoted(&path.to_string_lossy()))?;
                timeout(f, t)
            }
        }
    }
}

/// A `HOST:PORT` pair, the value of an [`OptionKind::HOST_PORT`](crate::OptionKind::HOST_PORT)
/// option: `localhost:6665`, `192.0.2.1:80`, `[::1]:80`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// A host name or an IP address.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = || format!("'{text}' is not HOST:PORT (e.g. localhost:8080 or [::1]:8080)");
        let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => v6,
            Some(_) => return Err(expected()),
            // An unbracketed IPv6 address would be ambiguous: which colon starts the port?
            None if host.contains(':') => return Err(expected()),
            None => host,
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(expected());
        }
        let port = port
            .parse()
            .map_err(|_| format!("'{text}': port '{port}' is not in 0..=65535"))?;
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

impl From<HostPort> for ClientEndpoint {
    fn from(address: HostPort) -> Self {
        Self::tcp(address.host, address.port)
    }
}
