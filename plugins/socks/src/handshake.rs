//! The conversation before any byte is relayed: which SOCKS version, which method, who the
//! user is, where to go. It must finish within the handshake deadline; anything malformed,
//! truncated or late gets the error reply of the message it was in, and the connection closes.

use crate::wire::{self, Credentials, Failure, Parse, Target};
use logins::{Login, LoginGuard, PasswordFile};
use plugin_api::tokio::io::{AsyncReadExt, AsyncWriteExt};
use plugin_api::{tokio, Stream};
use std::fmt;
use std::net::IpAddr;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;

/// Which protocol a client spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Socks4,
    Socks4a,
    Socks5,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Socks4 => "socks4",
            Self::Socks4a => "socks4a",
            Self::Socks5 => "socks5",
        })
    }
}

/// Who may use the proxy: everyone, or the users of a password file (SOCKS5 only).
pub struct Access {
    pub passwords: Option<PasswordFile>,
    pub guard: LoginGuard,
}

/// A client's request, once the handshake succeeded.
pub struct Request {
    pub version: Version,
    pub target: Target,
    /// The user who logged in, for the log.
    pub user: Option<String>,
    /// Bytes the client sent after its request without waiting for the reply: the
    /// destination's, sent before anything else.
    pub early_data: Vec<u8>,
}

/// A handshake that failed; the client has had its reply (if its version was known).
pub struct Refused {
    pub version: Option<Version>,
    pub user: Option<String>,
    /// Where the client wanted to go, if it got as far as saying.
    pub target: Option<Target>,
    pub why: String,
}

/// What stopped reading a message.
enum Stop {
    Bad(Failure, &'static str),
    Closed,
    Late,
    Failed(std::io::Error),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bad(_, why) => f.write_str(why),
            Self::Closed => f.write_str("the client closed in the middle of a message"),
            Self::Late => f.write_str("the handshake took too long"),
            Self::Failed(e) => e.fmt(f),
        }
    }
}

/// Reads messages into a buffer that holds the largest one, within the deadline.
struct Reader<'a> {
    client: &'a mut Stream,
    buffer: Vec<u8>,
    filled: usize,
    deadline: Instant,
}

impl Reader<'_> {
    async fn next<T>(&mut self, parse: fn(&[u8]) -> Parse<T>) -> Result<T, Stop> {
        loop {
            match parse(&self.buffer[..self.filled]) {
                Parse::Done(message, used) => {
                    self.buffer.copy_within(used..self.filled, 0);
                    self.filled -= used;
                    return Ok(message);
                }
                Parse::Bad(failure, why) => return Err(Stop::Bad(failure, why)),
                Parse::More if self.filled == self.buffer.len() => {
                    return Err(Stop::Bad(Failure::General, "the message is too long"))
                }
                Parse::More => {}
            }
            let read = self.client.read(&mut self.buffer[self.filled..]);
            match tokio::time::timeout_at(self.deadline, read).await {
                Ok(Ok(0)) => return Err(Stop::Closed),
                Ok(Ok(n)) => self.filled += n,
                Ok(Err(e)) => return Err(Stop::Failed(e)),
                Err(_) => return Err(Stop::Late),
            }
        }
    }

    /// The first byte, once there is one.
    async fn version(&mut self) -> Result<u8, Stop> {
        self.next(|bytes| match bytes.first() {
            Some(&version) => Parse::Done(version, 0),
            None => Parse::More,
        })
        .await
    }
}

/// Writes a reply within a short bound: a client that does not read cannot hold us.
pub async fn send(client: &mut Stream, reply: &[u8]) -> std::io::Result<()> {
    match tokio::time::timeout(Duration::from_secs(5), client.write_all(reply)).await {
        Ok(written) => written,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Sends a refusal's reply and closes the sending side, then reads (and drops) what the
/// client still sends for a moment: closing with unread data would reset the connection, and
/// the client might lose the reply.
pub async fn refuse(client: &mut Stream, reply: &[u8]) {
    if send(client, reply).await.is_err() {
        return;
    }
    let _ = client.shutdown().await;
    let mut sink = [0; 4096];
    let drain = async {
        let mut left = 64 << 10;
        while left > 0 {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left -= n.min(left),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Runs the handshake with `client` (from `ip`), within `limit`.
pub async fn negotiate(
    client: &mut Stream,
    ip: IpAddr,
    access: &Access,
    limit: Duration,
) -> Result<Request, Refused> {
    let mut reader = Reader {
        client,
        buffer: vec![0; wire::MAX_MESSAGE],
        filled: 0,
        deadline: Instant::now() + limit,
    };
    let refused = |version, user, why: String| Refused {
        version,
        user,
        target: None,
        why,
    };
    match reader.version().await {
        Ok(4) => socks4(reader, access).await,
        Ok(5) => socks5(reader, ip, access).await,
        // Not SOCKS: there is no reply it would understand.
        Ok(other) => Err(refused(
            None,
            None,
            format!("not a SOCKS client (first byte {other:#04x})"),
        )),
        Err(stop) => Err(refused(None, None, stop.to_string())),
    }
}

async fn socks4(mut reader: Reader<'_>, access: &Access) -> Result<Request, Refused> {
    let reject = wire::socks4_reply(Err(Failure::General));
    let request = match reader.next(wire::socks4).await {
        Ok(request) => request,
        Err(stop) => {
            // As far as the request came: its address says which version it was.
            let version = match wire::is_socks4a(&reader.buffer[..reader.filled]) {
                true => Version::Socks4a,
                false => Version::Socks4,
            };
            refuse(reader.client, &reject).await;
            return Err(Refused {
                version: Some(version),
                user: None,
                target: None,
                why: stop.to_string(),
            });
        }
    };
    let version = match request.target {
        Target::Name(..) => Version::Socks4a,
        Target::Address(_) => Version::Socks4,
    };
    if access.passwords.is_some() {
        refuse(reader.client, &reject).await;
        return Err(Refused {
            version: Some(version),
            user: None,
            target: Some(request.target),
            why: "a password is required, and SOCKS4 cannot give one".into(),
        });
    }
    Ok(Request {
        version,
        target: request.target,
        user: None,
        early_data: reader.buffer[..reader.filled].to_vec(),
    })
}

async fn socks5(mut reader: Reader<'_>, ip: IpAddr, access: &Access) -> Result<Request, Refused> {
    let version = Some(Version::Socks5);
    let refused = |user: Option<String>, why: String| Refused {
        version,
        user,
        target: None,
        why,
    };
    let methods = match reader.next(wire::greeting).await {
        Ok(methods) => methods,
        Err(stop) => {
            refuse(reader.client, &[5, wire::NO_ACCEPTABLE_METHOD]).await;
            return Err(refused(None, stop.to_string()));
        }
    };
    let wanted = match access.passwords {
        Some(_) => wire::USERNAME_PASSWORD,
        None => wire::NO_AUTHENTICATION,
    };
    if !methods.contains(&wanted) {
        refuse(reader.client, &[5, wire::NO_ACCEPTABLE_METHOD]).await;
        return Err(refused(
            None,
            format!("the client does not offer method {wanted}"),
        ));
    }
    if send(reader.client, &[5, wanted]).await.is_err() {
        return Err(refused(None, "the client went away".into()));
    }
    let user = match &access.passwords {
        Some(passwords) => Some(
            log_in(&mut reader, ip, passwords, &access.guard)
                .await
                .map_err(|(user, why)| refused(user, why))?,
        ),
        None => None,
    };
    match reader.next(wire::request).await {
        Ok(target) => Ok(Request {
            version: Version::Socks5,
            target,
            user,
            early_data: reader.buffer[..reader.filled].to_vec(),
        }),
        Err(stop) => {
            let failure = match stop {
                Stop::Bad(failure, _) => failure,
                _ => Failure::General,
            };
            refuse(reader.client, &wire::socks5_reply(Err(failure))).await;
            Err(refused(user, stop.to_string()))
        }
    }
}

/// Whether the client has already closed or reset its connection, as scripted guessers do
/// right after sending their password: checking it would cost a hash for nobody. Asked
/// without reading, so a request sent early stays for later; over TLS it cannot be.
fn has_left(client: &Stream) -> bool {
    let Some(tcp) = client.tcp() else {
        return false;
    };
    let mut byte = [0];
    let mut peeked = tokio::io::ReadBuf::new(&mut byte);
    let mut context = Context::from_waker(Waker::noop());
    matches!(
        tcp.poll_peek(&mut context, &mut peeked),
        Poll::Ready(Ok(0) | Err(_))
    )
}

/// RFC 1929: checks the username and password with the login guard (its ban, delay and
/// bound on checks at once), all within the handshake's deadline.
async fn log_in(
    reader: &mut Reader<'_>,
    ip: IpAddr,
    passwords: &PasswordFile,
    guard: &LoginGuard,
) -> Result<String, (Option<String>, String)> {
    const FAILED: [u8; 2] = [1, 1];
    let Credentials { user, password } = match reader.next(wire::credentials).await {
        Ok(credentials) => credentials,
        Err(stop) => {
            refuse(reader.client, &FAILED).await;
            return Err((None, stop.to_string()));
        }
    };
    let name = String::from_utf8_lossy(&user).escape_debug().to_string();
    if has_left(reader.client) {
        return Err((Some(name), "the client went away".into()));
    }
    let why = match guard
        .log_in(ip, passwords, &user, &password, reader.deadline)
        .await
    {
        Login::Accepted => {
            return match send(reader.client, &[1, 0]).await {
                Ok(()) => Ok(name),
                Err(_) => Err((Some(name), "the client went away".into())),
            }
        }
        Login::Failed => "wrong username or password".to_string(),
        Login::Banned => "too many failed logins from this address".to_string(),
        Login::Late => Stop::Late.to_string(),
    };
    refuse(reader.client, &FAILED).await;
    Err((Some(name), why))
}
