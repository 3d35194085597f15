//! ftp: an FTP server people can use. twistd's `ftp` plugin starts with "WARNING: This FTP
//! server is probably INSECURE do not use it"; this one is safe by default:
//!
//! - anonymous users read only (unless `--write-anonymous`); password-file users read and write,
//!   inside the root or their home under it; passwords are bcrypt or argon2 hashes;
//! - no path, `..` or symlink reaches outside the root (cap-std), and listings do not reveal
//!   where symlinks point nor send names with control characters raw;
//! - active mode (PORT/EPRT) is refused, so the server can never be bounced at a third party,
//!   and a passive port serves its session's client only;
//! - every command line is bounded, before and after login, with and without TLS; sessions
//!   must log in within `--login-timeout`; failed logins are delayed and an address that keeps
//!   failing is refused for a while;
//! - FTPS (AUTH TLS) with `--tls-cert`/`--tls-key`; with `--require-tls`, no login and no data
//!   connection without TLS;
//! - on SIGTERM, idle sessions are told `421` and transfers in progress are let finish.
//!
//! The protocol is this crate's own (`session`), on the kit's serving loop.

mod accounts;
mod command;
mod control;
mod listing;
mod metrics;
mod names;
mod passive;
mod session;
mod transfer;
mod tree;
mod vpath;

use accounts::Accounts;
use logins::LoginGuard;
use metrics::Metrics;
use plugin_api::tokio::io::AsyncWriteExt;
use plugin_api::tracing::info;
use plugin_api::{
    export_service_maker, files, ConnectionLimits, Endpoint, Listener, OptionKind, OptionSpec,
    Options, Result, Service, Stream, Tasks, TlsConfig, WhenFull,
};
use session::{Session, Settings};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tree::Tree;

fn options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::param("port", OptionKind::PORT, "The port number to listen on (all interfaces; 0: any free port).")
            .short('p')
            .default("2121"),
        OptionSpec::param("root", OptionKind::PATH, "The directory to serve.")
            .short('r')
            .default("."),
        OptionSpec::param("userAnonymous", OptionKind::STRING, "The name of the anonymous user (any password).")
            .default("anonymous"),
        OptionSpec::param(
            "password-file",
            OptionKind::PATH,
            "Users who may log in: lines user:hash[:home], hash bcrypt ($2b$…) or argon2 ($argon2id$…), home relative to the root",
        ),
        OptionSpec::flag("allow-plaintext-passwords", "Accept plain-text passwords in the password file."),
        OptionSpec::param(
            "listen",
            OptionKind::ENDPOINT,
            "Listen on this endpoint instead of --port (repeatable): tcp:PORT[:interface=ADDR] or systemd:domain=INET:index=N",
        )
        .repeatable(),
        OptionSpec::param("passive-ports", OptionKind::STRING, "The port range for passive data connections, LOW-HIGH.")
            .default("49152-65535"),
        OptionSpec::param("max-connections", OptionKind::INTEGER, "Sessions served at once (0: no limit); more are turned away with 421.")
            .default("200"),
        OptionSpec::param("max-connections-per-ip", OptionKind::INTEGER, "Sessions at once from one IP address (0: no limit); more are turned away with 421.")
            .default("0"),
        OptionSpec::param("idle-timeout", OptionKind::INTEGER, "Seconds a session may stay idle before it is closed.")
            .default("600"),
        OptionSpec::param("login-timeout", OptionKind::DURATION, "How long a session may take to log in before it is closed.")
            .default("30s"),
        OptionSpec::param("tls-cert", OptionKind::PATH, "PEM certificate chain for FTPS (explicit, AUTH TLS)."),
        OptionSpec::param("tls-key", OptionKind::PATH, "PEM private key for FTPS."),
        OptionSpec::flag("require-tls", "Refuse logins and transfers that are not protected by TLS."),
        OptionSpec::flag("write-anonymous", "Let the anonymous user upload, delete and rename."),
    ]
}

/// What `make_service` read from the options; the rest is set up in `privileged_start`.
struct Config {
    root: PathBuf,
    accounts: Accounts,
    passive_ports: RangeInclusive<u16>,
    idle_timeout: Duration,
    login_timeout: Duration,
    tls: Option<TlsConfig>,
    require_tls: bool,
}

struct FtpService {
    endpoints: Vec<Endpoint>,
    limits: ConnectionLimits,
    config: Option<Config>,
    listeners: Vec<Listener>,
    tree: Option<Tree>,
}

/// A positive whole number from an INTEGER option.
fn positive(options: &Options, long: &str) -> Result<u64> {
    match options.parse::<u64>(long)? {
        Some(value) if value > 0 => Ok(value),
        _ => Err(format!("--{long} must be a positive number").into()),
    }
}

/// The largest password, certificate or key file read: real ones are a few KiB.
pub const CONFIG_FILE_LIMIT: u64 = files::MIB;

/// The regular file given with `long`, checked through the kit's file policy (a FIFO or device
/// is refused, never blocked on) so the error names the option; it is read where it is used.
fn existing_file(options: &Options, long: &str) -> Result<Option<PathBuf>> {
    let Some(path) = options.path(long) else {
        return Ok(None);
    };
    match files::open_regular(&path) {
        Ok(_) => Ok(Some(std::path::absolute(&path)?)),
        Err(e) => Err(format!("--{long} {}: {e}", path.display()).into()),
    }
}

fn make_service(options: &Options) -> Result<FtpService> {
    let root_option = options.path("root").unwrap_or_else(|| PathBuf::from("."));
    let root = root_option
        .canonicalize()
        .map_err(|e| format!("cannot serve {}: {e}", root_option.display()))?;
    if !root.is_dir() {
        return Err(format!("cannot serve {}: not a directory", root.display()).into());
    }
    let anonymous = options.get("userAnonymous").unwrap_or("anonymous");
    let write_anonymous = options.flag("write-anonymous");
    let accounts = Accounts::load(
        anonymous,
        write_anonymous,
        existing_file(options, "password-file")?.as_deref(),
        options.flag("allow-plaintext-passwords"),
        &root,
    )?;
    let require_tls = options.flag("require-tls");
    let tls = match (
        existing_file(options, "tls-cert")?,
        existing_file(options, "tls-key")?,
    ) {
        (Some(cert), Some(key)) => Some(TlsConfig::from_pem_files(&cert, &key)?),
        (None, None) if require_tls => {
            return Err("--require-tls needs --tls-cert and --tls-key".into())
        }
        (None, None) => None,
        _ => return Err("FTPS needs both --tls-cert and --tls-key".into()),
    };
    let endpoints = options.listen_endpoints("listen", "port", "interface")?;
    for endpoint in &endpoints {
        match endpoint {
            Endpoint::Tcp { .. } | Endpoint::Systemd { .. } => {}
            Endpoint::Ssl { .. } => {
                return Err(format!("--listen {endpoint}: FTPS is explicit here (AUTH TLS): give --tls-cert and --tls-key with a tcp: endpoint").into())
            }
            _ => {
                return Err(format!("--listen {endpoint}: FTP needs TCP, since its data connections need an IP address").into())
            }
        }
    }
    info!(
        "serving {} (anonymous '{anonymous}': {}; {} password-file user(s); FTPS: {})",
        root.display(),
        if write_anonymous {
            "read-write"
        } else {
            "read-only"
        },
        accounts.user_count(),
        match (&tls, require_tls) {
            (None, _) => "off",
            (Some(_), false) => "offered",
            (Some(_), true) => "required",
        }
    );
    let login_timeout = options
        .duration("login-timeout")?
        .filter(|d| !d.is_zero())
        .ok_or("--login-timeout must be more than 0s")?;
    Ok(FtpService {
        endpoints,
        limits: ConnectionLimits::from_options(options)?.when_full(WhenFull::Refuse {
            reply: b"421 Too many connections; try again later.\r\n".to_vec(),
        }),
        config: Some(Config {
            root,
            accounts,
            passive_ports: passive::parse_range(
                options.get("passive-ports").unwrap_or("49152-65535"),
            )?,
            idle_timeout: Some(Duration::from_secs(positive(options, "idle-timeout")?))
                .filter(|idle| *idle <= plugin_api::LONGEST_DURATION)
                .ok_or_else(|| {
                    format!(
                        "--idle-timeout must be at most {} seconds",
                        plugin_api::LONGEST_DURATION.as_secs()
                    )
                })?,
            login_timeout,
            tls,
            require_tls,
        }),
        listeners: Vec::new(),
        tree: None,
    })
}

impl Service for FtpService {
    fn name(&self) -> &str {
        "ftp"
    }

    fn privileged_start(&mut self) -> Result<()> {
        for endpoint in &self.endpoints {
            let listener = endpoint.bind()?;
            if listener.port().is_none() {
                return Err(format!("{endpoint} is a Unix socket; FTP needs TCP").into());
            }
            info!("ftp starting on {}", listener.local_endpoint());
            self.listeners.push(listener);
        }
        // Opened before a --chroot and before privileges are dropped: from here on every file
        // is reached through this handle.
        let root = &self.config.as_ref().expect("configured").root;
        self.tree =
            Some(Tree::open(root).map_err(|e| format!("cannot serve {}: {e}", root.display()))?);
        Ok(())
    }

    fn start(&mut self, tasks: &Tasks) -> Result<()> {
        let config = self.config.take().expect("started once");
        let settings = Arc::new(Settings {
            root: config.root,
            tree: self.tree.take().expect("opened in privileged_start"),
            accounts: config.accounts,
            guard: LoginGuard::default(),
            passive_ports: config.passive_ports,
            idle_timeout: config.idle_timeout,
            login_timeout: config.login_timeout,
            tls: config.tls,
            require_tls: config.require_tls,
            metrics: Metrics::register(),
        });
        for listener in self.listeners.drain(..) {
            let (settings, shutdown) = (settings.clone(), tasks.shutdown());
            tasks.serve(listener, &self.limits, move |stream, peer| {
                let (settings, shutdown) = (settings.clone(), shutdown.clone());
                async move {
                    let (Some(peer), Some(local)) = (peer.socket_addr(), stream.local_addr())
                    else {
                        return Ok(());
                    };
                    if settings.guard.is_banned(peer.ip()) {
                        return turn_away(stream).await;
                    }
                    // Without it every reply waits for the client's delayed ACK.
                    stream.set_nodelay(true)?;
                    Session::new(settings, peer, local.ip())
                        .run(stream, shutdown)
                        .await?;
                    Ok(())
                }
            });
        }
        Ok(())
    }
}

/// An address banned for failed logins is told so before it can say anything.
async fn turn_away(mut stream: Stream) -> Result<()> {
    stream
        .write_all(b"421 Too many failed logins from your address; try again later.\r\n")
        .await?;
    stream.shutdown().await?;
    Ok(())
}

export_service_maker! {
    tapname: "ftp",
    description: "An FTP server: read-only anonymous access by default, confined paths, FTPS.",
    options: options,
    make_service: make_service,
}
