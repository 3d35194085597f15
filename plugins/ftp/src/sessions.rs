//! Accepting control connections and running one FTP session on each.
//!
//! The accept loop is ours, not libunftp's `listen`, so that the plugin binds through host's
//! endpoints (privileged ports, systemd sockets), sets TCP_NODELAY on control connections,
//! enforces `--max-connections`, turns away banned addresses before they say anything, and ends
//! every session when the host stops. Each connection gets its own libunftp `Server`: `service`
//! consumes it, and a per-connection server knows the client's address for the log.

use crate::accounts::{Accounts, FtpAuthenticator, FtpUsers};
use crate::login_guard::LoginGuard;
use crate::passive::NoDelayBinder;
use crate::storage::ConfinedFs;
use async_trait::async_trait;
use libunftp::notification::{EventMeta, PresenceEvent, PresenceListener};
use libunftp::options::ActivePassiveMode;
use plugin_api::tokio::io::AsyncWriteExt;
use plugin_api::tokio::net::TcpStream;
use plugin_api::tracing::{debug, info, warn};
use plugin_api::{tokio, Listener, Result, Stream, Tasks};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Everything a session needs, shared by all of them.
#[derive(Debug)]
pub struct SessionSettings {
    pub root: PathBuf,
    pub accounts: Arc<Accounts>,
    pub guard: Arc<LoginGuard>,
    pub passive_ports: RangeInclusive<u16>,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub require_tls: bool,
    pub greeting: &'static str,
}

/// Accepts connections until shutdown.
pub async fn accept(
    listener: Listener,
    settings: Arc<SessionSettings>,
    tasks: Tasks,
) -> Result<()> {
    let shutdown = tasks.shutdown();
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.requested() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((Stream::Tcp(stream), _)) => stream,
            Ok((Stream::Unix(_), _)) => {
                warn!("FTP needs TCP: closing a connection on a Unix socket");
                continue;
            }
            // Out of descriptors, or a client that reset before accept: the listener is fine.
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        if let Some(refusal) = refusal(&settings, &open, peer) {
            tasks.spawn_connection(turn_away(stream, refusal));
            continue;
        }
        let session = Session::open(open.clone());
        let (settings, shutdown) = (settings.clone(), shutdown.clone());
        tasks.spawn_connection(async move {
            let _session = session;
            tokio::select! {
                served = serve(stream, peer, &settings) => served,
                // Dropping the session closes its control connection.
                _ = shutdown.requested() => Ok(()),
            }
        });
    }
    info!("(FTP Port {} Closed)", listener.local_endpoint());
    Ok(())
}

/// Why a new connection is refused before the greeting, if it is.
fn refusal(
    settings: &SessionSettings,
    open: &AtomicUsize,
    peer: SocketAddr,
) -> Option<&'static str> {
    if settings.guard.is_banned(peer.ip()) {
        return Some("421 Too many failed logins from your address; try again later.\r\n");
    }
    if open.load(Ordering::Relaxed) >= settings.max_connections {
        return Some("421 Too many connections; try again later.\r\n");
    }
    None
}

async fn turn_away(mut stream: TcpStream, reply: &'static str) -> Result<()> {
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

/// Counts an open session for `--max-connections` until it is dropped.
struct Session(Arc<AtomicUsize>);

impl Session {
    fn open(open: Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, settings: &SessionSettings) -> Result<()> {
    // Without it every reply waits for the client's delayed ACK.
    stream.set_nodelay(true)?;
    debug!("FTP connection from {peer}");
    let root = settings.root.clone();
    let mut builder = libunftp::ServerBuilder::with_user_detail_provider(
        Box::new(move || ConfinedFs::new(&root, peer).expect("the root was checked at start-up")),
        Arc::new(FtpUsers {
            accounts: settings.accounts.clone(),
        }),
    )
    .authenticator(Arc::new(FtpAuthenticator {
        accounts: settings.accounts.clone(),
        guard: settings.guard.clone(),
    }))
    .logger(slog::Logger::root(slog::Discard, slog::o!()))
    .greeting(settings.greeting)
    // PORT would let a client make the server connect anywhere (the FTP bounce attack).
    .active_passive_mode(ActivePassiveMode::PassiveOnly)
    .passive_ports(settings.passive_ports.clone())
    .binder(NoDelayBinder)
    .idle_session_timeout(settings.idle_timeout.as_secs())
    .notify_presence(Presence(peer));
    if let Some((cert, key)) = &settings.tls {
        builder = builder.ftps(cert.clone(), key.clone());
        if settings.require_tls {
            builder = builder.ftps_required(true, true);
        }
    }
    let server = builder
        .build()
        .map_err(|e| format!("cannot set up an FTP session: {e}"))?;
    server
        .service(stream)
        .await
        .map_err(|e| format!("FTP session with {peer}: {e}"))?;
    Ok(())
}

/// Logs logins and logouts with the client's address.
#[derive(Debug)]
struct Presence(SocketAddr);

#[async_trait]
impl PresenceListener for Presence {
    async fn receive_presence_event(&self, event: PresenceEvent, meta: EventMeta) {
        match event {
            PresenceEvent::LoggedIn => info!("{} logged in from {}", meta.username, self.0.ip()),
            // libunftp reports a logout for sessions that never logged in, as "unknown".
            PresenceEvent::LoggedOut if meta.username != "unknown" => {
                info!("{} logged out from {}", meta.username, self.0.ip())
            }
            PresenceEvent::LoggedOut => {}
        }
    }
}
