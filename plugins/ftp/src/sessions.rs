//! Running one FTP session on each control connection.
//!
//! The kit's serving loop accepts, not libunftp's `listen`, so that the plugin binds through
//! host's endpoints (privileged ports, systemd sockets), enforces `--max-connections`, and ends
//! every session when the host stops; here each session gets TCP_NODELAY, banned addresses are
//! turned away before they say anything, and each connection gets its own libunftp `Server`:
//! `service` consumes it, and a per-connection server knows the client's address for the log.

use crate::accounts::{Accounts, FtpAuthenticator, FtpUsers};
use crate::passive::NoDelayBinder;
use crate::storage::ConfinedFs;
use async_trait::async_trait;
use libunftp::notification::{EventMeta, PresenceEvent, PresenceListener};
use libunftp::options::ActivePassiveMode;
use logins::LoginGuard;
use plugin_api::tokio::io::AsyncWriteExt;
use plugin_api::tokio::net::TcpStream;
use plugin_api::tracing::{debug, info};
use plugin_api::{tokio, ConnectionLimits, Listener, Result, Tasks, WhenFull};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
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
    pub limits: ConnectionLimits,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub require_tls: bool,
    pub greeting: &'static str,
}

/// Serves FTP sessions on `listener` until shutdown: the kit accepts and enforces
/// `--max-connections` (refusing with `421`); each session first checks its address's ban.
pub fn serve(listener: Listener, settings: Arc<SessionSettings>, tasks: &Tasks) {
    let limits = settings.limits.clone().when_full(WhenFull::Refuse {
        reply: b"421 Too many connections; try again later.\r\n".to_vec(),
    });
    let shutdown = tasks.shutdown();
    tasks.serve(listener, &limits, move |stream, peer| {
        let (settings, shutdown) = (settings.clone(), shutdown.clone());
        async move {
            let stream = stream
                .into_tcp()
                .map_err(|_| "FTP needs a plain TCP connection")?;
            let Some(peer) = peer.socket_addr() else {
                return Ok(());
            };
            if settings.guard.is_banned(peer.ip()) {
                return turn_away(
                    stream,
                    "421 Too many failed logins from your address; try again later.\r\n",
                )
                .await;
            }
            tokio::select! {
                served = session(stream, peer, &settings) => served,
                // Dropping the session closes its control connection.
                _ = shutdown.requested() => Ok(()),
            }
        }
    });
}

async fn turn_away(mut stream: TcpStream, reply: &'static str) -> Result<()> {
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

async fn session(stream: TcpStream, peer: SocketAddr, settings: &SessionSettings) -> Result<()> {
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
