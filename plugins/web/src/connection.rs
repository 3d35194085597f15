//! One connection, served by hyper: HTTP/2 when TLS's ALPN chose `h2`, HTTP/1.1 otherwise,
//! with the limits that keep a slow or hostile client from holding more than its share.

use crate::handler::Handler;
use crate::send_timeout::SendTimeout;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use plugin_api::tracing::{debug, warn};
use plugin_api::{tokio, PeerAddr, Result, Shutdown, Stream};
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The request line and headers together, at most; more gets `431` (HTTP/1.1). nginx allows
/// 4 × 8 KiB by default.
const MAX_HEADER_BYTES: usize = 32 * 1024;
/// hyper's read and write buffer, at most. Its write side is what bounds a slow client's
/// memory: hyper asks the body for the next chunk only once less than this is waiting.
const MAX_BUFFER: usize = 64 * 1024;
const MAX_STREAMS: u32 = 128;

/// How long clients may dawdle.
#[derive(Clone, Copy)]
pub struct Timeouts {
    /// The time a client may take to send a request's headers, and how long an idle
    /// connection stays open.
    pub header: Duration,
    /// How long a response may wait for a client that takes none of it.
    pub send: Duration,
}

/// Serves one connection until the client is done, it breaks a limit, or the service stops
/// (then the request in progress finishes and the connection closes).
pub async fn serve(
    stream: Stream,
    peer: PeerAddr,
    handler: Arc<Handler>,
    timeouts: Timeouts,
    shutdown: Shutdown,
) -> Result<()> {
    let header_timeout = timeouts.header;
    // Responses are written whole; waiting to fill a packet only delays the last bytes.
    let _ = stream.set_nodelay(true);
    let h2 = stream.alpn_protocol() == Some(b"h2");
    let requests = Arc::new(AtomicU64::new(0));
    let counted = requests.clone();
    let service = service_fn(move |request| {
        counted.fetch_add(1, Ordering::Relaxed);
        handler.clone().respond(request, peer)
    });
    let io = TokioIo::new(SendTimeout::new(stream, timeouts.send));
    let served = if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .max_concurrent_streams(MAX_STREAMS)
            .keep_alive_interval(header_timeout)
            .keep_alive_timeout(header_timeout);
        // hyper closes no idle HTTP/2 connection by itself (a client that answers pings could
        // hold one forever): one that starts no request for a whole `header_timeout` is shut
        // down gracefully, its streams in progress finishing first.
        let idle = Some((requests.as_ref(), header_timeout));
        until_shutdown(
            builder.serve_connection(io, service),
            &shutdown,
            idle,
            |c| c.graceful_shutdown(),
        )
        .await
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_header_size(MAX_HEADER_BYTES)
            .max_buf_size(MAX_BUFFER);
        // hyper's header timeout already closes idle HTTP/1 connections.
        until_shutdown(
            builder.serve_connection(io, service),
            &shutdown,
            None,
            |c| c.graceful_shutdown(),
        )
        .await
    };
    match served {
        Ok(()) => {}
        // A file that could not be read while it was being sent.
        Err(e) if e.is_user() => warn!("connection from {peer} failed: {e}"),
        // Timeouts, resets, malformed requests: the client's doing, logged only for debugging.
        Err(e) => debug!("connection from {peer} closed: {e}"),
    }
    Ok(())
}

/// Runs `connection`; on shutdown, or when `idle` says (a request count that has not moved
/// for that long), lets it finish the requests in progress, then close.
async fn until_shutdown<C, E>(
    connection: C,
    shutdown: &Shutdown,
    idle: Option<(&AtomicU64, Duration)>,
    graceful: fn(Pin<&mut C>),
) -> std::result::Result<(), E>
where
    C: Future<Output = std::result::Result<(), E>>,
{
    let mut connection = pin!(connection);
    let period = idle.map_or(Duration::from_secs(3600), |(_, period)| period);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut seen = 0;
    loop {
        tokio::select! {
            done = connection.as_mut() => return done,
            () = shutdown.requested() => break,
            _ = ticks.tick(), if idle.is_some() => {
                let count = idle.map_or(0, |(requests, _)| requests.load(Ordering::Relaxed));
                if count == seen {
                    break;
                }
                seen = count;
            }
        }
    }
    graceful(connection.as_mut());
    connection.await
}
