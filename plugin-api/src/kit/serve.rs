//! The serving loop every plugin shares: accept connections on a [`Listener`] and run the
//! plugin's handler on each, with the connection limits, the accept-error back-off, the error
//! logging and the two-phase stop done once, here.
//!
//! Modelled on tokio's mini-redis (a semaphore for the connection limit, back-off on accept
//! errors) and axum's `serve`: the plugin writes only the per-connection handler.

use crate::kit::crowd::Crowd;
use crate::kit::endpoint::{Listener, PeerAddr, Stream, Tally};
use crate::kit::error::{Error, Result};
use crate::kit::metrics::{self, CounterChild, GaugeChild, HistogramChild};
use crate::kit::options::Options;
use crate::kit::service::Tasks;
use futures_util::FutureExt;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

/// How many connections each client address has open, for the per-address limit.
type OpenByAddress = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// What happens to a connection that arrives while the service is at its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhenFull {
    /// It waits in the listen backlog (the kernel's queue of connections not yet accepted)
    /// until a connection ends: clients see a slow connect, never a refusal. The default; what
    /// nginx's `worker_connections` and mini-redis do.
    Wait,
    /// It is accepted, sent `reply` (e.g. FTP's `421 Too many connections`) and closed at once.
    /// TLS listeners close without the reply, since the client expects a handshake.
    Refuse {
        /// What the client is sent before the connection closes; may be empty.
        reply: Vec<u8>,
    },
}

/// How many connections a service serves at once, shared by every listener it serves with:
/// a limit in total, a limit per client address, and what happens beyond them. Cheap to clone;
/// clones share the count.
///
/// The per-address limit applies to TCP clients; a connection over it is always refused
/// (waiting would let one address hold the queue), with the [`WhenFull::Refuse`] reply if any.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    total: Option<Arc<Semaphore>>,
    max_total: usize,
    per_address: Option<usize>,
    when_full: WhenFull,
    open_by_address: OpenByAddress,
    /// With [`make_room`](Self::make_room): every connection's place, across the listeners.
    crowd: Option<Arc<Crowd>>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::unlimited()
    }
}

impl ConnectionLimits {
    /// No limit.
    pub fn unlimited() -> Self {
        Self {
            total: None,
            max_total: 0,
            per_address: None,
            when_full: WhenFull::Wait,
            open_by_address: Arc::default(),
            crowd: None,
        }
    }

    /// At most `max` connections at once; 0 means no limit.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_total = max;
        self.total = (max > 0).then(|| Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))));
        self
    }

    /// At most `max` connections at once from one IP address; 0 means no limit.
    pub fn max_per_address(mut self, max: usize) -> Self {
        self.per_address = (max > 0).then_some(max);
        self
    }

    /// Once the total limit is reached, closes the connection that has waited longest without
    /// a request in progress (and at least `grace`) for each newcomer, so that clients that
    /// send nothing (slowloris, port scans, leaked connections) cannot hold every slot while
    /// others wait in the backlog; see [`crowd`](crate::crowd). Each connection joins when it
    /// is accepted, so one that never completes its TLS handshake can be closed too; the
    /// handler takes its place with [`Stream::take_place`] and marks its requests busy. Call
    /// after [`max_connections`](Self::max_connections); without a total limit it does nothing.
    pub fn make_room(mut self, grace: Duration) -> Self {
        self.crowd = (self.max_total > 0).then(|| Crowd::new(self.max_total, grace));
        self
    }

    /// What happens to connections over the limit; [`WhenFull::Wait`] by default.
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// The limits the standard options ask for: `--max-connections` and, if the plugin
    /// offers it, `--max-connections-per-ip` (see [`OptionSpec::max_connections`]).
    ///
    /// [`OptionSpec::max_connections`]: crate::OptionSpec::max_connections
    pub fn from_options(options: &Options) -> Result<Self> {
        let count = |long: &str| -> Result<usize> {
            Ok(match options.get(long) {
                Some(value) => limit(value).map_err(|e| format!("option --{long}: {e}"))?,
                None => 0,
            })
        };
        let [total, per_address] = LIMIT_OPTIONS;
        Ok(Self::unlimited()
            .max_connections(count(total)?)
            .max_per_address(count(per_address)?))
    }

    /// The total limit, 0 for none.
    pub fn max(&self) -> usize {
        self.max_total
    }

    /// A slot for a connection from `peer`, or `None` if it is over a limit.
    fn try_admit(&self, peer: &PeerAddr) -> Option<Slot> {
        let total = match &self.total {
            Some(semaphore) => Some(semaphore.clone().try_acquire_owned().ok()?),
            None => None,
        };
        self.admit_address(total, peer)
    }

    fn admit_address(&self, total: Option<OwnedSemaphorePermit>, peer: &PeerAddr) -> Option<Slot> {
        let address = match (self.per_address, peer) {
            (Some(max), PeerAddr::Tcp(address)) => {
                let ip = address.ip();
                let mut open = self
                    .open_by_address
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let count = open.entry(ip).or_insert(0);
                if *count >= max {
                    return None;
                }
                *count += 1;
                Some((ip, self.open_by_address.clone()))
            }
            _ => None,
        };
        Some(Slot {
            _total: total,
            address,
        })
    }
}

/// The options [`ConnectionLimits::from_options`] reads, total then per address: counts, where 0
/// means no limit.
pub(crate) const LIMIT_OPTIONS: [&str; 2] = ["max-connections", "max-connections-per-ip"];

/// The value of one of the [`LIMIT_OPTIONS`]. The host checks it with this (through
/// [`OptionSpec::check`](crate::OptionSpec::check)), so a negative one is a usage error before
/// `make_service`; a host older than that check leaves it to `from_options`.
pub(crate) fn limit(value: &str) -> std::result::Result<usize, String> {
    let number: i64 = value
        .parse()
        .map_err(|_| format!("'{value}' is not an integer"))?;
    usize::try_from(number).map_err(|_| format!("'{value}' is negative (0 means no limit)"))
}

/// One admitted connection's place in the limits, given back when it is dropped.
struct Slot {
    _total: Option<OwnedSemaphorePermit>,
    address: Option<(IpAddr, OpenByAddress)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((ip, open)) = &self.address {
            let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = open.get_mut(ip) {
                *count -= 1;
                if *count == 0 {
                    open.remove(ip);
                }
            }
        }
    }
}

impl Tasks {
    /// Serves `listener` until shutdown: accepts connections and runs `handler` on each, on a
    /// task of its own, within `limits`.
    ///
    /// What the kit does, so no plugin has to:
    /// - **Limits**: over `limits`, connections wait in the backlog or are refused (see
    ///   [`WhenFull`]).
    /// - **Accept errors never end the service.** Running out of descriptors or memory
    ///   (EMFILE, ENFILE, ENOBUFS, ENOMEM) backs off, up to a second between tries, and is
    ///   logged at most once a second; errors that belong to one connection (a client that
    ///   reset before it was accepted) are skipped.
    /// - **Handler errors are logged with the peer**, at info level when the client went away
    ///   (reset, broken pipe, early EOF) and as a warning otherwise; a panic in a handler is
    ///   logged the same way and ends only that connection.
    /// - **TLS**: on an `ssl:` listener the handshake runs on the connection's task, within 10 s.
    ///   A failed handshake is the client's problem (a port scan, a client speaking plain text):
    ///   it is logged at info level, at most once every 10 s with how many more failed, and
    ///   each one at debug level.
    /// - **Two-phase stop**: on shutdown the listener closes at once; connections in progress
    ///   go on (the handler sees [`Tasks::shutdown`] and may finish early) until the host's
    ///   shutdown timeout, after which they are cancelled.
    pub fn serve<H, F>(&self, listener: Listener, limits: &ConnectionLimits, handler: H)
    where
        H: Fn(Stream, PeerAddr) -> F + Send + Sync + 'static,
        F: Future<Output = Result<()>> + Send + 'static,
    {
        if let Some(crowd) = &limits.crowd {
            // While every slot is taken nothing is accepted, so nothing joins: the crowd makes
            // room on a timer too (once per crowd, whatever the number of listeners).
            if crowd.add_listener() == 1 {
                self.spawn(crowd.clone().watch(self.shutdown()));
            }
        }
        self.spawn(accept_loop(
            listener,
            limits.clone(),
            Arc::new(handler),
            ServeMetrics::register(),
            self.clone(),
        ));
    }
}

/// What the serving loop counts for every service, served by the host's admin endpoint.
#[derive(Clone)]
struct ServeMetrics {
    accepted: CounterChild,
    open: GaugeChild,
    refused: CounterChild,
    failed: CounterChild,
    accept_errors: CounterChild,
    duration: HistogramChild,
    received: CounterChild,
    sent: CounterChild,
}

impl ServeMetrics {
    /// The serving loop's metrics of the current service (the same ones for all its listeners).
    fn register() -> Self {
        let counter = |name: &str, help: &str| metrics::counter(name, help, &[]).with(&[]);
        Self {
            accepted: counter(
                "host_connections_accepted_total",
                "Connections accepted and served (not those refused by a limit).",
            ),
            open: metrics::gauge("host_connections_open", "Connections being served.", &[]).with(&[]),
            refused: counter(
                "host_connections_refused_total",
                "Connections turned away at once by a limit: per address, or in total where the plugin refuses (FTP's 421) rather than leaves clients waiting in the backlog.",
            ),
            failed: counter(
                "host_connection_errors_total",
                "Connections whose handler failed (an error other than the client leaving, or a panic).",
            ),
            accept_errors: counter(
                "host_accept_errors_total",
                "Failed accepts that the listener survived (out of descriptors, memory, buffers).",
            ),
            duration: metrics::histogram(
                "host_connection_duration_seconds",
                "How long connections were served, from accept to close.",
                &[],
                &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0],
            )
            .with(&[]),
            received: counter(
                "host_received_bytes_total",
                "Bytes received from clients, counted at each 64 KiB of a connection and when it closes.",
            ),
            sent: counter(
                "host_sent_bytes_total",
                "Bytes sent to clients, counted at each 64 KiB of a connection and when it closes.",
            ),
        }
    }
}

async fn accept_loop<H, F>(
    listener: Listener,
    limits: ConnectionLimits,
    handler: Arc<H>,
    metrics: ServeMetrics,
    tasks: Tasks,
) -> Result<()>
where
    H: Fn(Stream, PeerAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Result<()>> + Send + 'static,
{
    let shutdown = tasks.shutdown();
    let mut backoff = Backoff::default();
    let handshakes = Arc::new(Mutex::new(Throttle::every(HANDSHAKE_REPORT_EVERY)));
    let name = listener.local_endpoint();
    loop {
        // Waiting for a slot before accepting is what leaves the next client in the backlog.
        let reserved = match (&limits.total, &limits.when_full) {
            (Some(semaphore), WhenFull::Wait) => tokio::select! {
                _ = shutdown.requested() => break,
                permit = semaphore.clone().acquire_owned() => Some(permit.expect("never closed")),
            },
            _ => None,
        };
        let accepted = tokio::select! {
            _ = shutdown.requested() => break,
            accepted = listener.accept_raw() => accepted,
        };
        let (connection, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if backoff.failed(&name, e).await {
                    metrics.accept_errors.inc();
                }
                continue;
            }
        };
        backoff.succeeded();
        let slot = match reserved {
            Some(permit) => limits.admit_address(Some(permit), &peer),
            None => limits.try_admit(&peer),
        };
        let Some(slot) = slot else {
            metrics.refused.inc();
            debug!("refused a connection from {peer}: over the connection limit");
            let reply = match &limits.when_full {
                WhenFull::Refuse { reply } => reply.clone(),
                WhenFull::Wait => Vec::new(),
            };
            tasks.spawn_tracked(async move { connection.refuse(&reply).await });
            continue;
        };
        metrics.accepted.inc();
        let place = limits.crowd.as_ref().map(|crowd| crowd.join());
        let handler = handler.clone();
        let open = tasks.open_connection();
        let metrics = metrics.clone();
        let handshakes = handshakes.clone();
        tasks.spawn_tracked(async move {
            let _slot = slot;
            let _open = open;
            let began = Instant::now();
            metrics.open.add(1);
            let tally = Tally::new(metrics.received.clone(), metrics.sent.clone());
            let served = async {
                // A client that starts no handshake waits without a request: it may be closed
                // to make room like any other.
                let asked = async {
                    match &place {
                        Some(place) => place.asked_to_close().await,
                        None => std::future::pending().await,
                    }
                };
                let ready = tokio::select! {
                    ready = connection.ready() => ready,
                    () = asked => {
                        debug!("closed a connection from {peer} that had not finished its TLS handshake, to make room");
                        return Ok(false);
                    }
                };
                let stream = match ready {
                    Ok(stream) => stream.counted(tally).placed(place),
                    Err(e) => return Ok(handshake_failed(&handshakes, &peer, &e)),
                };
                handler(stream, peer).await.map(|()| false)
            };
            let failed = match AssertUnwindSafe(served).catch_unwind().await {
                Ok(Ok(failed)) => failed,
                Ok(Err(e)) => log_failure(Some(&peer), &e),
                // The plugin's panic hook has logged where; this says whose connection it was.
                Err(_) => {
                    warn!("connection from {peer} failed: the handler panicked");
                    true
                }
            };
            if failed {
                metrics.failed.inc();
            }
            metrics.open.add(-1);
            metrics.duration.observe(began.elapsed().as_secs_f64());
        });
    }
    info!("(Port {name} Closed)");
    Ok(())
}

/// Whether an error says the client went away (reset, broken pipe, early EOF, too slow): routine.
fn client_left(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::TimedOut
    )
}

/// Logs a connection's error: a client that went away is routine, anything else is not (and
/// is what this returns `true` for).
pub(crate) fn log_failure(peer: Option<&PeerAddr>, error: &Error) -> bool {
    let left = error.downcast_ref::<io::Error>().is_some_and(client_left);
    let from = peer.map(|p| format!(" from {p}")).unwrap_or_default();
    match left {
        true => info!("connection{from} ended: {error}"),
        false => warn!("connection{from} failed: {error}"),
    }
    !left
}

/// How often a listener reports failed TLS handshakes: a port scan or a plain-text client fails
/// one per connection, which is no reason to fill the log.
const HANDSHAKE_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Logs a failed TLS handshake, throttled by `reports`; `true` if it counts as a connection
/// error, as in [`log_failure`].
fn handshake_failed(reports: &Mutex<Throttle>, peer: &PeerAddr, error: &io::Error) -> bool {
    let report = reports
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .occurred(Instant::now());
    match report {
        Some(also) => info!("connection from {peer} failed: {error}{also}"),
        None => debug!("connection from {peer} failed: {error}"),
    }
    !client_left(error)
}

/// A problem that may recur many times a second, reported at most once per interval with how
/// many times it recurred unreported.
struct Throttle {
    every: Duration,
    last_report: Option<Instant>,
    unreported: u64,
}

/// How many times a throttled problem went unreported: written ` (N more since the last
/// report)` after the report, or nothing.
struct Unreported(u64);

impl std::fmt::Display for Unreported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " ({n} more since the last report)"),
        }
    }
}

impl Throttle {
    fn every(every: Duration) -> Self {
        Self {
            every,
            last_report: None,
            unreported: 0,
        }
    }

    /// Counts one occurrence at `now`: `Some` if it is to be reported, saying how many were not.
    fn occurred(&mut self, now: Instant) -> Option<Unreported> {
        if self
            .last_report
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            self.unreported += 1;
            return None;
        }
        self.last_report = Some(now);
        Some(Unreported(std::mem::take(&mut self.unreported)))
    }
}

/// What to do after an accept error: skip it, or wait before the next try.
struct Backoff {
    delay: Duration,
    reports: Throttle,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            reports: Throttle::every(Self::REPORT_EVERY),
        }
    }
}

/// Errors accept(2) passes on from one pending connection; the listener itself is fine.
fn belongs_to_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(
        error.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const LONGEST: Duration = Duration::from_secs(1);
    const REPORT_EVERY: Duration = Duration::from_secs(1);

    /// Waits as long as `error` calls for; `false` if it was one connection's error, skipped.
    async fn failed(&mut self, listener: &str, error: io::Error) -> bool {
        if belongs_to_one_connection(&error) {
            debug!("accept on {listener}: {error}; skipped");
            return false;
        }
        // Out of descriptors (EMFILE, ENFILE), buffers (ENOBUFS) or memory (ENOMEM), or
        // anything unexpected: the pending connection stays queued, so try again later rather
        // than spin on the same error, and never give up: the condition usually passes.
        if let Some(also) = self.reports.occurred(Instant::now()) {
            warn!("accept on {listener} failed: {error}; retrying{also}");
        }
        self.delay = (self.delay * 2).clamp(Self::FIRST, Self::LONGEST);
        tokio::time::sleep(self.delay).await;
        true
    }

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_reports_once_per_interval_with_how_many_it_held_back() {
        let mut throttle = Throttle::every(Duration::from_secs(10));
        let start = Instant::now();
        let mut at = |secs| {
            throttle
                .occurred(start + Duration::from_secs(secs))
                .map(|also| also.to_string())
        };
        assert_eq!(at(0).as_deref(), Some(""));
        assert_eq!(at(1), None);
        assert_eq!(at(9), None);
        assert_eq!(at(10).as_deref(), Some(" (2 more since the last report)"));
        assert_eq!(at(19), None);
        assert_eq!(at(40).as_deref(), Some(" (1 more since the last report)"));
        assert_eq!(at(50).as_deref(), Some(""));
    }
}
