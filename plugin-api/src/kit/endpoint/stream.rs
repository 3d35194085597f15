//! [`Stream`]: one connection, whatever it runs over (TCP, a Unix socket, TLS over TCP), read
//! and written with tokio's `AsyncReadExt`/`AsyncWriteExt`.

use crate::kit::crowd::Place;
use crate::kit::metrics::CounterChild;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// The address of a connected peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A peer on a Unix socket (these have no useful address).
    Unix,
}

impl PeerAddr {
    /// The IP address and port, for a TCP peer.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(address) => Some(*address),
            Self::Unix => None,
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(address) => address.fmt(f),
            Self::Unix => f.write_str("unix socket peer"),
        }
    }
}

/// A connection: accepted by a [`Listener`](crate::Listener) or opened by a
/// [`ClientEndpoint`](crate::ClientEndpoint). Plugins handle every kind alike through
/// `AsyncRead`/`AsyncWrite`; [`tcp`](Self::tcp) reaches the TCP socket underneath when there
/// is one without TLS (for `TCP_NODELAY`, `splice`, `sendfile`).
pub struct Stream {
    io: Io,
    /// Bytes each way, counted for the serving loop's metrics when it made the stream.
    tally: Option<Tally>,
    /// Its place among the service's connections, when its limits make room
    /// ([`ConnectionLimits::make_room`](crate::ConnectionLimits::make_room)).
    place: Option<Place>,
}

/// How many bytes a connection counts before it adds them to the service's counters.
const TALLY_STEP: u64 = 64 << 10;

/// A connection's bytes each way, added to the service's counters at each [`TALLY_STEP`] and
/// when it closes: a long transfer shows as it goes, yet most reads and writes cost an addition
/// rather than an atomic operation shared with the service's other connections.
pub(crate) struct Tally {
    received: CounterChild,
    sent: CounterChild,
    /// Bytes not added to the counters yet.
    read: u64,
    written: u64,
}

impl Tally {
    pub(crate) fn new(received: CounterChild, sent: CounterChild) -> Self {
        Self {
            received,
            sent,
            read: 0,
            written: 0,
        }
    }

    fn on_read(&mut self, n: usize) {
        self.read += n as u64;
        if self.read >= TALLY_STEP {
            self.received.add(std::mem::take(&mut self.read));
        }
    }

    fn on_write(&mut self, n: usize) {
        self.written += n as u64;
        if self.written >= TALLY_STEP {
            self.sent.add(std::mem::take(&mut self.written));
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.received.add(self.read);
        self.sent.add(self.written);
    }
}

enum Io {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.io {
            Io::Tcp(_) => "tcp",
            Io::Unix(_) => "unix",
            Io::Tls(_) => "tls",
        };
        f.debug_struct("Stream").field("kind", &kind).finish()
    }
}

impl From<TcpStream> for Stream {
    fn from(stream: TcpStream) -> Self {
        Self {
            io: Io::Tcp(stream),
            tally: None,
            place: None,
        }
    }
}

impl From<UnixStream> for Stream {
    fn from(stream: UnixStream) -> Self {
        Self {
            io: Io::Unix(stream),
            tally: None,
            place: None,
        }
    }
}

impl From<tokio_rustls::server::TlsStream<TcpStream>> for Stream {
    fn from(stream: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        Self {
            io: Io::Tls(Box::new(stream)),
            tally: None,
            place: None,
        }
    }
}

impl Stream {
    /// The TCP socket, when the connection is plain TCP (not TLS, not a Unix socket).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match &self.io {
            Io::Tcp(stream) => Some(stream),
            _ => None,
        }
    }

    /// The TCP socket itself, for a plain TCP connection (a protocol library that needs a
    /// `TcpStream`, or a switch to TLS with [`TlsConfig::accept`](crate::TlsConfig::accept));
    /// the stream back otherwise.
    pub fn into_tcp(self) -> Result<TcpStream, Self> {
        match self.io {
            Io::Tcp(stream) => Ok(stream),
            io => Err(Self {
                io,
                tally: self.tally,
                place: self.place,
            }),
        }
    }

    /// Counts this stream's bytes into `tally` from now on.
    pub(crate) fn counted(mut self, tally: Tally) -> Self {
        self.tally = Some(tally);
        self
    }

    pub(crate) fn placed(mut self, place: Option<Place>) -> Self {
        self.place = place;
        self
    }

    /// The connection's place among the service's connections, when the service's limits make
    /// room ([`ConnectionLimits::make_room`](crate::ConnectionLimits::make_room)): the handler
    /// marks its requests with [`Place::busy`] and closes when [`Place::asked_to_close`]
    /// completes with none in progress. Taken once; `None` without room-making.
    pub fn take_place(&mut self) -> Option<Place> {
        self.place.take()
    }

    /// The TCP socket underneath, TLS or not: for its addresses and socket options only
    /// (reading or writing it directly would corrupt a TLS session).
    fn tcp_below(&self) -> Option<&TcpStream> {
        match &self.io {
            Io::Tcp(stream) => Some(stream),
            Io::Tls(tls) => Some(tls.get_ref().0),
            Io::Unix(_) => None,
        }
    }

    /// Whether the connection is protected by TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// The protocol agreed by ALPN during the TLS handshake (e.g. `b"h2"`), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.io {
            Io::Tls(tls) => tls.get_ref().1.alpn_protocol(),
            _ => None,
        }
    }

    /// This end's address, for TCP connections (with or without TLS).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp_below()?.local_addr().ok()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> PeerAddr {
        match self.tcp_below().and_then(|s| s.peer_addr().ok()) {
            Some(address) => PeerAddr::Tcp(address),
            None => PeerAddr::Unix,
        }
    }

    /// Sets `TCP_NODELAY` (send small writes at once); does nothing on a Unix socket.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self.tcp_below() {
            Some(stream) => stream.set_nodelay(nodelay),
            None => Ok(()),
        }
    }
}

macro_rules! each_io {
    ($io:expr, $stream:ident => $body:expr) => {
        match $io {
            Io::Tcp($stream) => $body,
            Io::Unix($stream) => $body,
            Io::Tls($stream) => $body,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = each_io!(&mut this.io, s => Pin::new(s).poll_read(cx, buf));
        if let (Poll::Ready(Ok(())), Some(tally)) = (&polled, &mut this.tally) {
            tally.on_read(buf.filled().len() - before);
        }
        polled
    }
}

impl Stream {
    /// Counts what a write reports written.
    fn wrote(&mut self, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let (Poll::Ready(Ok(n)), Some(tally)) = (&polled, &mut self.tally) {
            tally.on_write(*n);
        }
        polled
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = each_io!(&mut this.io, s => Pin::new(s).poll_write(cx, buf));
        this.wrote(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = each_io!(&mut this.io, s => Pin::new(s).poll_write_vectored(cx, bufs));
        this.wrote(polled)
    }

    fn is_write_vectored(&self) -> bool {
        each_io!(&self.io, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_io!(&mut self.get_mut().io, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_io!(&mut self.get_mut().io, s => Pin::new(s).poll_shutdown(cx))
    }
}
