//! ftp: an FTP server people can use. twistd's `ftp` plugin starts with "WARNING: This FTP
//! server is probably INSECURE do not use it"; this one is safe by default:
//!
//! - anonymous users read only (unless `--write-anonymous`); password-file users read and write,
//!   inside the root or their home under it; passwords are bcrypt or argon2 hashes;
//! - no path, `..` or symlink reaches outside the root (unftp-sbe-fs resolves every path with
//!   cap-std), and listings do not reveal where symlinks point;
//! - active mode (PORT/EPRT) is refused, so the server can never be bounced at a third party;
//! - failed logins are delayed and an address that keeps failing is refused for a while;
//! - FTPS (AUTH TLS) with `--tls-cert`/`--tls-key`, required with `--require-tls`.
//!
//! The protocol itself is libunftp's; this crate is the glue (see `sessions` and `storage`).

mod accounts;
mod passive;
mod sessions;
mod storage;

use accounts::Accounts;
use logins::LoginGuard;
use plugin_api::tracing::info;
use plugin_api::{
    export_service_maker, ConnectionLimits, Endpoint, Listener, OptionKind, OptionSpec, Options,
    Result, Service, Tasks,
};
use sessions::SessionSettings;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
        OptionSpec::param("idle-timeout", OptionKind::INTEGER, "Seconds a session may stay idle before it is closed.")
            .default("600"),
        OptionSpec::param("tls-cert", OptionKind::PATH, "PEM certificate chain for FTPS (explicit, AUTH TLS)."),
        OptionSpec::param("tls-key", OptionKind::PATH, "PEM private key for FTPS."),
        OptionSpec::flag("require-tls", "Refuse logins and transfers that are not protected by TLS."),
        OptionSpec::flag("write-anonymous", "Let the anonymous user upload, delete and rename."),
    ]
}

struct FtpService {
    endpoints: Vec<Endpoint>,
    listeners: Vec<Listener>,
    settings: Arc<SessionSettings>,
}

/// A positive whole number from an INTEGER option.
fn positive(options: &Options, long: &str) -> Result<u64> {
    match options.parse::<u64>(long)? {
        Some(value) if value > 0 => Ok(value),
        _ => Err(format!("--{long} must be a positive number").into()),
    }
}

/// An existing file given with `long`.
fn existing_file(options: &Options, long: &str) -> Result<Option<PathBuf>> {
    let Some(path) = options.path(long) else {
        return Ok(None);
    };
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(Some(std::path::absolute(&path)?)),
        Ok(_) => Err(format!("--{long} {} is not a file", path.display()).into()),
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
    let tls = match (
        existing_file(options, "tls-cert")?,
        existing_file(options, "tls-key")?,
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) if options.flag("require-tls") => {
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
        match (&tls, options.flag("require-tls")) {
            (None, _) => "off",
            (Some(_), false) => "offered",
            (Some(_), true) => "required",
        }
    );
    // libunftp's greeting must live for the whole process; one small string, leaked once.
    let greeting: &'static str =
        Box::leak(format!("host ftp ready, serving {}", root.display()).into_boxed_str());
    Ok(FtpService {
        endpoints,
        listeners: Vec::new(),
        settings: Arc::new(SessionSettings {
            root,
            accounts: Arc::new(accounts),
            guard: Arc::new(LoginGuard::default()),
            passive_ports: passive::parse_range(
                options.get("passive-ports").unwrap_or("49152-65535"),
            )?,
            idle_timeout: Duration::from_secs(positive(options, "idle-timeout")?),
            limits: ConnectionLimits::from_options(options)?,
            tls,
            require_tls: options.flag("require-tls"),
            greeting,
        }),
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
        Ok(())
    }

    fn start(&mut self, tasks: &Tasks) -> Result<()> {
        for listener in self.listeners.drain(..) {
            sessions::serve(listener, self.settings.clone(), tasks);
        }
        Ok(())
    }
}

export_service_maker! {
    tapname: "ftp",
    description: "An FTP server: read-only anonymous access by default, confined paths, FTPS.",
    options: options,
    make_service: make_service,
}
