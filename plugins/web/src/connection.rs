//! One connection, served by hyper: HTTP/2 when TLS's ALPN chose `h2`, HTTP/1.1 otherwise,
//! with the limits that keep a slow or hostile client from holding more than its share.

use crate::handler::Handler;
use crate::send_timeout::SendTimeout;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use plugin_api::crowd::{Busy, Place};
use plugin_api::tracing::{debug, warn};
use plugin_api::{tokio, PeerAddr, Result, Shutdown, Stream};
use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The request line and headers together, at most; more gets `431` (HTTP/1.1). nginx allows
/// 4 × 8 KiB by default.
const MAX_HEADER_BYTES: usize = 32 * 1024;
/// hyper's read and write buffer, at most. Its write side is what bounds a slow client's
/// memory: hyper asks the body for the next chunk only once less than this is waiting.
const MAX_BUFFER: usize = 64 * 1024;
/// Streams at once on one HTTP/2 connection (nginx allows 128; each of ours may hold a
/// [`STREAM_CHUNK`](crate::body::STREAM_CHUNK) or two).
const MAX_STREAMS: u32 = 64;

/// How long clients may dawdle.
#[derive(Clone, Copy)]
pub struct Timeouts {
    /// The time a client may take to send a request's headers, and how long an idle
    /// connection stays open.
    pub header: Duration,
    /// How long a response may wait for a client that takes none of it.
    pub send: Duration,
}

/// Serves one connection until the client is done, it breaks a limit, the service needs its
/// slot while it waits for a request (its place, see [`plugin_api::crowd`]), or the service stops
/// (then the request in progress finishes and the connection closes).
pub async fn serve(
    mut stream: Stream,
    peer: PeerAddr,
    handler: Arc<Handler>,
    timeouts: Timeouts,
    shutdown: Shutdown,
) -> Result<()> {
    let place = stream.take_place();
    // Responses are written whole; waiting to fill a packet only delays the last bytes.
    let _ = stream.set_nodelay(true);
    let h2 = stream.alpn_protocol() == Some(b"h2");
    let progress = Arc::new(Progress::new(place));
    let watching = progress.clone();
    let service = service_fn(move |request| {
        let watched = Watched::new(&watching);
        let responded = handler.clone().respond(request, peer);
        async move {
            let response = responded.await?;
            Ok::<_, Infallible>(response.map(|body| body.watched_by(watched)))
        }
    });
    let io = TokioIo::new(SendTimeout::new(stream, timeouts.send));
    let served = if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .max_concurrent_streams(MAX_STREAMS)
            .keep_alive_interval(timeouts.header)
            .keep_alive_timeout(timeouts.header);
        // HTTP/2 needs a watchdog: a client that answers pings could hold an idle connection
        // forever, and one that sends no WINDOW_UPDATE stalls its streams while the socket
        // stays writable, which `SendTimeout` cannot see.
        until_shutdown(
            builder.serve_connection(io, service),
            &shutdown,
            &progress,
            Some(timeouts),
            |c| c.graceful_shutdown(),
        )
        .await
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(timeouts.header)
            .max_header_size(MAX_HEADER_BYTES)
            .max_buf_size(MAX_BUFFER);
        // hyper's header timeout closes idle HTTP/1 connections, and a response can only stall
        // on the socket, where `SendTimeout` sees it.
        until_shutdown(
            builder.serve_connection(io, service),
            &shutdown,
            &progress,
            None,
            |c| c.graceful_shutdown(),
        )
        .await
    };
    match served {
        Ok(()) => {}
        // A file that could not be read while it was being sent.
        Err(e) if e.is_user() => warn!("connection from {peer} failed: {}", with_causes(&e)),
        // Timeouts, resets, malformed requests: the client's doing, logged only for debugging.
        Err(e) => debug!("connection from {peer} closed: {}", with_causes(&e)),
    }
    Ok(())
}

/// `error: its cause: …`: hyper's errors say where a failure happened, their sources what it
/// was ("the file shrank while it was being sent").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(&format!(": {next}"));
        cause = next.source();
    }
    text
}

/// Runs `connection`. On shutdown it finishes the requests in progress, then closes; asked to
/// make room, it closes at once if no request is in progress (the check and the close happen
/// while hyper is not polled, so none can start in between). With a `watchdog`, a connection
/// that starts no request for `Timeouts::header` is closed gracefully, and one whose open
/// responses take no byte for `Timeouts::send` is dropped.
async fn until_shutdown<C, E>(
    connection: C,
    shutdown: &Shutdown,
    progress: &Progress,
    watchdog: Option<Timeouts>,
    graceful: fn(Pin<&mut C>),
) -> std::result::Result<(), E>
where
    C: Future<Output = std::result::Result<(), E>>,
{
    let mut connection = pin!(connection);
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let (mut requests, mut sent) = (0, 0);
    let (mut last_request, mut last_progress) = (Instant::now(), Instant::now());
    let mut closing = false;
    loop {
        tokio::select! {
            done = connection.as_mut() => return done,
            () = shutdown.requested(), if !closing => {
                graceful(connection.as_mut());
                closing = true;
            }
            () = progress.asked_to_close() => {
                if progress.open.load(Ordering::Relaxed) == 0 {
                    return Ok(());
                }
            }
            _ = ticks.tick(), if watchdog.is_some() => {
                let Some(timeouts) = watchdog else { continue };
                let now = Instant::now();
                let seen = progress.requests.load(Ordering::Relaxed);
                if seen != requests {
                    (requests, last_request) = (seen, now);
                }
                let delivered = progress.sent.load(Ordering::Relaxed);
                if delivered != sent || progress.open.load(Ordering::Relaxed) == 0 {
                    (sent, last_progress) = (delivered, now);
                }
                if now - last_progress >= timeouts.send {
                    debug!("dropped an HTTP/2 connection whose responses took nothing for {:?}", timeouts.send);
                    return Ok(());
                }
                if !closing && now - last_request >= timeouts.header {
                    graceful(connection.as_mut());
                    closing = true;
                }
            }
        }
    }
}

/// What one connection's responses are doing, for the HTTP/2 watchdog and the crowd.
pub struct Progress {
    requests: AtomicU64,
    /// Response bodies not yet done with.
    open: AtomicUsize,
    /// Body bytes taken by hyper, all responses together.
    sent: AtomicU64,
    /// Busy while a response body is not yet done with; none without a connection limit.
    place: Option<Place>,
}

impl Progress {
    fn new(place: Option<Place>) -> Self {
        Self {
            requests: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            place,
        }
    }

    async fn asked_to_close(&self) {
        match &self.place {
            Some(place) => place.asked_to_close().await,
            None => std::future::pending().await,
        }
    }
}

/// One request's place in its connection's [`Progress`]: counted when it arrives, busy until
/// its body is dropped.
pub struct Watched {
    progress: Arc<Progress>,
    /// Held for its drop: the connection waits again when the last body is done with.
    _busy: Option<Busy>,
}

impl Watched {
    fn new(progress: &Arc<Progress>) -> Self {
        progress.requests.fetch_add(1, Ordering::Relaxed);
        progress.open.fetch_add(1, Ordering::Relaxed);
        Self {
            progress: progress.clone(),
            _busy: progress.place.as_ref().map(Place::busy),
        }
    }

    pub fn sent(&self, bytes: u64) {
        self.progress.sent.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.progress.open.fetch_sub(1, Ordering::Relaxed);
    }
}
