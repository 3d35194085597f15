//! Endpoints: where a service listens and where a client connects, written as Twisted-style
//! strings, parsed and bound (or connected) in one place for every plugin.
//!
//! Listening ([`Endpoint`]):
//! - `tcp:PORT[:interface=ADDR][:backlog=N]`: ADDR is an IP address or a host name (default:
//!   all IPv4 interfaces); an IPv6 address is written in brackets (`interface=[::1]`) or with
//!   its colons escaped as Twisted does (`interface=\:\:1`).
//! - `ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem][:interface=ADDR][:backlog=N]`: TCP with
//!   TLS (rustls); `certKey` defaults to `privateKey` (one PEM file holding both).
//! - `unix:PATH[:mode=0660][:backlog=N]`: a stale socket file nobody listens on is replaced.
//! - `systemd:domain=INET:index=N` or `systemd:index=N`: the Nth listening socket passed by
//!   systemd socket activation (`LISTEN_FDS`, `LISTEN_PID`); `domain` (INET, INET6 or UNIX)
//!   checks its address family.
//!
//! Connecting ([`ClientEndpoint`]): `tcp:HOST:PORT[:timeout=SECONDS]` and
//! `unix:PATH[:timeout=SECONDS]`.
//!
//! Every endpoint's `Display` gives a string that parses back to the same endpoint. The few
//! values built in code that no string can say (an empty path or host, a path that is not UTF-8)
//! are refused when the endpoint is bound or connected, not shown as another endpoint.

mod client;
mod listener;
mod stream;
mod syntax;
mod tls;

pub use client::{ClientEndpoint, HostPort};
pub use listener::Listener;
pub(crate) use stream::Tally;
pub use stream::{PeerAddr, Stream};
pub use tls::TlsConfig;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use syntax::{Description, Quoted};

/// The default listen backlog: large enough for thousands of clients arriving at once
/// (the kernel caps it at `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: u32 = 1024;

/// Where a service listens. Parse one from a string (`"tcp:10000".parse()`), or build one with
/// [`Endpoint::tcp`], [`Endpoint::ssl`] or [`Endpoint::unix`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// A TCP port on one interface.
    #[non_exhaustive]
    Tcp {
        /// 0 lets the system pick a free port.
        port: u16,
        /// The address or host name to bind; `None` means every IPv4 interface.
        interface: Option<String>,
        /// The listen backlog.
        backlog: u32,
    },
    /// A TCP port on one interface, speaking TLS.
    #[non_exhaustive]
    Ssl {
        /// 0 lets the system pick a free port.
        port: u16,
        /// The address or host name to bind; `None` means every IPv4 interface.
        interface: Option<String>,
        /// The listen backlog.
        backlog: u32,
        /// The PEM file holding the private key (and the certificate chain if `cert_key` is
        /// not given).
        private_key: PathBuf,
        /// The PEM file holding the certificate chain, server certificate first.
        cert_key: Option<PathBuf>,
    },
    /// A Unix domain socket.
    #[non_exhaustive]
    Unix {
        /// The socket file.
        path: PathBuf,
        /// Permission bits for the socket file, e.g. `0o660`.
        mode: Option<u32>,
        /// The listen backlog.
        backlog: u32,
    },
    /// A listening socket passed by systemd socket activation (`LISTEN_FDS`, `LISTEN_PID`).
    #[non_exhaustive]
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

/// Why an endpoint could not be parsed, bound or connected.
#[derive(Debug)]
#[non_exhaustive]
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
    /// The TLS certificate or key could not be used; the text says which file and why.
    Tls(String),
    /// Connecting failed (refused, unreachable, timed out).
    Connect {
        /// The endpoint, as written.
        endpoint: String,
        /// What the system said.
        source: io::Error,
    },
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(why) | Self::Tls(why) => f.write_str(why),
            Self::Bind { endpoint, source } => write!(f, "cannot listen on {endpoint}: {source}"),
            Self::Connect { endpoint, source } => {
                write!(f, "cannot connect to {endpoint}: {source}")
            }
        }
    }
}

impl std::error::Error for EndpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind { source, .. } | Self::Connect { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<EndpointError> for io::Error {
    fn from(error: EndpointError) -> Self {
        let message = error.to_string();
        match error {
            EndpointError::Bind { source, .. } | EndpointError::Connect { source, .. } => {
                io::Error::new(source.kind(), message)
            }
            _ => io::Error::new(io::ErrorKind::InvalidInput, message),
        }
    }
}

fn invalid(text: &str, why: impl fmt::Display) -> EndpointError {
    EndpointError::Invalid(format!("invalid endpoint '{text}': {why}"))
}

/// A port number field.
fn port(value: Option<&str>, kind: &str) -> Result<u16, String> {
    let value = value.ok_or_else(|| format!("expected {kind}:PORT"))?;
    value
        .parse()
        .map_err(|_| format!("port '{value}' is not in 0..=65535"))
}

fn backlog(description: &Description) -> Result<u32, String> {
    description
        .keyword("backlog")
        .map(|value| {
            value
                .parse()
                .map_err(|_| format!("backlog '{value}' is not a number"))
        })
        .unwrap_or(Ok(DEFAULT_BACKLOG))
}

fn interface(description: &Description) -> Result<Option<String>, String> {
    match description.keyword("interface") {
        Some("") => Err("the interface is empty".into()),
        other => Ok(other.map(str::to_string)),
    }
}

fn nonempty_path(value: Option<&str>, what: &str) -> Result<PathBuf, String> {
    match value {
        None | Some("") => Err(format!("{what} is missing or empty")),
        Some(path) => Ok(PathBuf::from(path)),
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text).map_err(|why| invalid(text, why))
    }
}

impl Endpoint {
    fn parse(text: &str) -> Result<Self, String> {
        let d = Description::parse(text)?;
        match d.kind.as_str() {
            "tcp" => {
                d.check_keys(&["port", "interface", "backlog"])?;
                d.at_most_positional(1)?;
                Ok(Self::Tcp {
                    port: port(d.value(0, "port")?, "tcp")?,
                    interface: interface(&d)?,
                    backlog: backlog(&d)?,
                })
            }
            "ssl" => {
                d.check_keys(&["port", "interface", "backlog", "privateKey", "certKey"])?;
                d.at_most_positional(1)?;
                Ok(Self::Ssl {
                    port: port(d.value(0, "port")?, "ssl")?,
                    interface: interface(&d)?,
                    backlog: backlog(&d)?,
                    private_key: nonempty_path(
                        d.keyword("privateKey"),
                        "ssl needs privateKey=KEY.pem: it",
                    )?,
                    cert_key: d
                        .keyword("certKey")
                        .map(|path| nonempty_path(Some(path), "certKey"))
                        .transpose()?,
                })
            }
            "unix" => {
                d.check_keys(&["address", "mode", "backlog"])?;
                d.at_most_positional(1)?;
                Ok(Self::Unix {
                    path: nonempty_path(d.value(0, "address")?, "the socket path")?,
                    mode: d
                        .keyword("mode")
                        .map(|value| {
                            u32::from_str_radix(value, 8)
                                .ok()
                                .filter(|m| *m <= 0o7777)
                                .ok_or_else(|| format!("mode '{value}' is not an octal permission"))
                        })
                        .transpose()?,
                    backlog: backlog(&d)?,
                })
            }
            "systemd" => {
                d.check_keys(&["domain", "index"])?;
                d.at_most_positional(0)?;
                Ok(Self::Systemd {
                    index: d
                        .keyword("index")
                        .ok_or("systemd needs index=N")?
                        .parse()
                        .map_err(|_| "index must be a number")?,
                    domain: d.keyword("domain").map(str::parse).transpose()?,
                })
            }
            kind => Err(format!(
                "unknown type '{kind}' (expected tcp, ssl, unix or systemd)"
            )),
        }
    }

    /// A TCP endpoint: `port` on `interface` (an address or host name), or on every IPv4
    /// interface when `interface` is `None` or empty (an empty `--interface ''` means every
    /// interface in twistd too). The usual `--port`/`--interface` pair becomes
    /// `Endpoint::tcp(port, interface)`; see also [`Options::listen_endpoints`].
    ///
    /// [`Options::listen_endpoints`]: crate::Options::listen_endpoints
    pub fn tcp<'a>(port: u16, interface: impl Into<Option<&'a str>>) -> Self {
        Self::Tcp {
            port,
            interface: given_interface(interface.into()),
            backlog: DEFAULT_BACKLOG,
        }
    }

    /// A TLS endpoint, `ssl:PORT`: [`tcp`](Self::tcp)'s `port` and `interface`, with the PEM
    /// certificate chain (server certificate first) and private key to serve. The files are
    /// read and checked in [`bind`](Self::bind).
    ///
    /// ```
    /// # use plugin_api::{Endpoint, Options, Result};
    /// // --port, --interface, and --tls-cert with --tls-key to serve TLS.
    /// fn listen_on(options: &Options) -> Result<Endpoint> {
    ///     let port = options.parse::<u16>("port")?.unwrap_or(8443);
    ///     let interface = options.get("interface");
    ///     Ok(match (options.path("tls-cert"), options.path("tls-key")) {
    ///         (Some(cert), Some(key)) => Endpoint::ssl(port, interface, cert, key),
    ///         (None, None) => Endpoint::tcp(port, interface),
    ///         _ => return Err("give both --tls-cert and --tls-key, or neither".into()),
    ///     })
    /// }
    /// # assert_eq!(
    /// #     Endpoint::ssl(443, None, "c.pem", "k.pem").to_string(),
    /// #     "ssl:443:privateKey=k.pem:certKey=c.pem"
    /// # );
    /// ```
    pub fn ssl<'a>(
        port: u16,
        interface: impl Into<Option<&'a str>>,
        cert_chain: impl Into<PathBuf>,
        private_key: impl Into<PathBuf>,
    ) -> Self {
        Self::Ssl {
            port,
            interface: given_interface(interface.into()),
            backlog: DEFAULT_BACKLOG,
            private_key: private_key.into(),
            cert_key: Some(cert_chain.into()),
        }
    }

    /// A Unix socket endpoint at `path`, with the default backlog and permissions.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self::Unix {
            path: path.into(),
            mode: None,
            backlog: DEFAULT_BACKLOG,
        }
    }

    /// The same endpoint with each relative path in it (a Unix socket, TLS key files) taken
    /// relative to `dir`: for endpoints written in a file that lives elsewhere.
    pub fn relative_to(&self, dir: &std::path::Path) -> Self {
        let mut endpoint = self.clone();
        match &mut endpoint {
            Self::Unix { path, .. } => *path = dir.join(&*path),
            Self::Ssl {
                private_key,
                cert_key,
                ..
            } => {
                *private_key = dir.join(&*private_key);
                if let Some(cert) = cert_key {
                    *cert = dir.join(&*cert);
                }
            }
            Self::Tcp { .. } | Self::Systemd { .. } => {}
        }
        endpoint
    }

    /// The name of the operating system's socket this endpoint listens on: the endpoint itself,
    /// except that `ssl:` names the TCP socket beneath its TLS (a supervisor holds sockets, and
    /// each worker reads the certificate itself).
    pub fn socket_name(&self) -> String {
        match self {
            Self::Ssl {
                port,
                interface,
                backlog,
                ..
            } => Self::Tcp {
                port: *port,
                interface: interface.clone(),
                backlog: *backlog,
            }
            .to_string(),
            other => other.to_string(),
        }
    }

    /// Binds the endpoint and starts listening (for `ssl:`, the certificate and key are read and
    /// checked here, so a bad file is a start-up error).
    ///
    /// Must be called inside the plugin's runtime, i.e. from [`Service::privileged_start`]
    /// or [`Service::start`](crate::Service::start).
    ///
    /// An endpoint built in code with an empty path, or one that is not UTF-8, is refused here:
    /// no endpoint string says it.
    ///
    /// [`Service::privileged_start`]: crate::Service::privileged_start
    pub fn bind(&self) -> Result<Listener, EndpointError> {
        writable(self)?;
        listener::bind(self)
    }
}

/// An interface given in code: empty is none, so that it prints as a string that parses.
fn given_interface(interface: Option<&str>) -> Option<String> {
    interface.filter(|i| !i.is_empty()).map(str::to_string)
}

/// Refuses an endpoint that its string does not say: one built in code with an empty path or
/// host (which the syntax rejects as a mistake), or with a path that is not UTF-8 (which prints
/// lossily). Its string is what logs, errors and a supervisor see, and a supervisor binds the
/// socket a worker names: a name that read back as another endpoint would bind the wrong one.
fn writable<T>(endpoint: &T) -> Result<(), EndpointError>
where
    T: fmt::Display + FromStr<Err = EndpointError> + PartialEq,
{
    let text = endpoint.to_string();
    match text.parse::<T>()? == *endpoint {
        true => Ok(()),
        false => Err(invalid(&text, "a path in it is not UTF-8")),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backlog = |f: &mut fmt::Formatter<'_>, backlog: u32| match backlog {
            DEFAULT_BACKLOG => Ok(()),
            other => write!(f, ":backlog={other}"),
        };
        let interface = |f: &mut fmt::Formatter<'_>, interface: &Option<String>| match interface {
            Some(i) => write!(f, ":interface={}", Quoted(i)),
            None => Ok(()),
        };
        match self {
            Self::Tcp {
                port,
                interface: i,
                backlog: b,
            } => {
                write!(f, "tcp:{port}")?;
                interface(f, i)?;
                backlog(f, *b)
            }
            Self::Ssl {
                port,
                interface: i,
                backlog: b,
                private_key,
                cert_key,
            } => {
                write!(f, "ssl:{port}")?;
                interface(f, i)?;
                backlog(f, *b)?;
                write!(f, ":privateKey={}", Quoted(&private_key.to_string_lossy()))?;
                match cert_key {
                    Some(cert) => write!(f, ":certKey={}", Quoted(&cert.to_string_lossy())),
                    None => Ok(()),
                }
            }
            Self::Unix {
                path,
                mode,
                backlog: b,
            } => {
                write!(f, "unix:{}", Quoted(&path.to_string_lossy()))?;
                if let Some(mode) = mode {
                    write!(f, ":mode={mode:04o}")?;
                }
                backlog(f, *b)
            }
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

#[cfg(test)]
mod tests;
