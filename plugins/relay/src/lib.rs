//! The relay both proxy plugins use: bytes both ways between a client and the server it was
//! connected to, until both directions have ended.
//!
//! What it guarantees:
//! - **Half-close is passed on.** When one side shuts down its write direction, the other side's
//!   write direction is shut down too (`shutdown(SHUT_WR)`, or TLS's `close_notify`), and the
//!   opposite direction keeps flowing until it ends as well.
//! - **Back-pressure.** Each direction holds at most one pipe (splice) or one buffer (copy) of
//!   data: nothing is read from a side until what was read before has been written, so a slow
//!   reader slows its writer instead of growing the proxy.
//! - **Resets are passed on.** A side that resets (or fails) while being read ends the relay at
//!   once, and the other side is reset too (`SO_LINGER` 0), as a direct connection would have
//!   seen it. A side that fails while being written to ends only that direction: what the
//!   failed side had already sent (a server's reply before its reset) is still delivered.
//!
//! Between two plain TCP sockets, a direction that carries a bulk transfer moves it with
//! `splice(2)` through a pipe, so the bytes never enter user space; small exchanges are copied,
//! which is cheaper than making a pipe ([`splice`]). Anything else (TLS, Unix sockets) goes
//! through a buffer ([`copy`]). BENCHMARKS.md has the measurements behind these choices.

mod copy;
mod splice;

use plugin_api::tokio;
use plugin_api::{OptionSpec, Options, Stream};
use std::fmt;
use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

/// How the bytes are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// When both sides are plain TCP, `splice(2)` through a pipe once a direction carries a
    /// bulk transfer (a copy before that); a buffer otherwise.
    Splice,
    /// Always through a user-space buffer.
    Copy,
}

impl Engine {
    /// The `--no-splice` option, read by [`Engine::from_options`].
    pub fn option() -> OptionSpec {
        OptionSpec::flag(
            "no-splice",
            "Relay through user-space buffers instead of splice(2) between TCP sockets.",
        )
    }

    /// The engine `--no-splice` asks for.
    pub fn from_options(options: &Options) -> Self {
        match options.flag("no-splice") {
            true => Self::Copy,
            false => Self::Splice,
        }
    }
}

/// What a relay did: bytes each way, how long it took, and the error that ended it, if any.
#[derive(Debug)]
pub struct Relayed {
    /// Bytes from the client to the server.
    pub up: u64,
    /// Bytes from the server to the client.
    pub down: u64,
    /// From `started` (given to [`relay`]) to the end.
    pub elapsed: Duration,
    /// The first error, if the relay did not end with both sides closing normally.
    pub error: Option<io::Error>,
}

impl fmt::Display for Relayed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes up, {} bytes down in {:.3} s",
            self.up,
            self.down,
            self.elapsed.as_secs_f64()
        )?;
        match &self.error {
            Some(error) => write!(f, " (ended by: {error})"),
            None => Ok(()),
        }
    }
}

/// How one direction ended.
enum End {
    /// The source closed its side, and that was passed on.
    Closed,
    /// Reading the source failed: it is gone, so nothing more can reach it either.
    ReadFailed(io::Error),
    /// Writing the destination failed; the other direction may still deliver what it has.
    WriteFailed(io::Error),
}

impl End {
    /// Passing on the source's close to `to` failed. ENOTCONN there means `to` had already
    /// reset the connection (a client that left with a reply on its way, or while it waited
    /// to be accepted): reported as the reset it is, not as a fault of the proxy.
    fn close_failed(error: io::Error) -> Self {
        Self::WriteFailed(match error.kind() {
            io::ErrorKind::NotConnected => {
                io::Error::from_raw_os_error(rustix::io::Errno::CONNRESET.raw_os_error())
            }
            _ => error,
        })
    }
}

/// Which side failed while being read, so the other side is reset.
enum Broken {
    Client,
    Server,
}

/// Relays between `client` and `server` until both directions have ended; `started` is when
/// the connection began, for [`Relayed::elapsed`].
pub async fn relay(
    mut client: Stream,
    mut server: Stream,
    engine: Engine,
    started: Instant,
) -> Relayed {
    let (mut up, mut down) = (0, 0);
    let (error, broken) = match (engine, client.tcp(), server.tcp()) {
        (Engine::Splice, Some(c), Some(s)) => {
            both_ways(
                splice::one_way(c, s, &mut up),
                splice::one_way(s, c, &mut down),
            )
            .await
        }
        _ => {
            let (mut client_read, mut client_write) = tokio::io::split(&mut client);
            let (mut server_read, mut server_write) = tokio::io::split(&mut server);
            both_ways(
                copy::one_way(&mut client_read, &mut server_write, &mut up),
                copy::one_way(&mut server_read, &mut client_write, &mut down),
            )
            .await
        }
    };
    let other = match broken {
        Some(Broken::Client) => Some(&server),
        Some(Broken::Server) => Some(&client),
        None => None,
    };
    if let Some(tcp) = other.and_then(Stream::tcp) {
        // Closing with SO_LINGER 0 sends a reset instead of an orderly close.
        let _ = rustix::net::sockopt::set_socket_linger(tcp, Some(Duration::ZERO));
    }
    Relayed {
        up,
        down,
        elapsed: started.elapsed(),
        error,
    }
}

/// Runs both directions until both have ended, or until one fails to read its source.
async fn both_ways(
    up: impl Future<Output = End>,
    down: impl Future<Output = End>,
) -> (Option<io::Error>, Option<Broken>) {
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    let mut first_error = None;
    while !(up_done && down_done) {
        let (end, source) = tokio::select! {
            end = &mut up, if !up_done => { up_done = true; (end, Broken::Client) }
            end = &mut down, if !down_done => { down_done = true; (end, Broken::Server) }
        };
        match end {
            End::Closed => {}
            End::WriteFailed(e) => {
                first_error.get_or_insert(e);
            }
            End::ReadFailed(e) => return (Some(first_error.unwrap_or(e)), Some(source)),
        }
    }
    (first_error, None)
}
