//! socks: a SOCKS4, SOCKS4a and SOCKS5 proxy (CONNECT), twistd's `socks` with its options
//! (`-i/--interface`, `-p/--port`, `-l/--log`), plus SOCKS5 username/password logins from a
//! password file and destination rules that keep it from being an open relay.
//!
//! Each connection: the handshake ([`handshake`], over the messages in [`wire`]), then the
//! destination is resolved, checked against the rules and connected to ([`destination`]),
//! then the bytes are relayed both ways by the `relay` crate.

mod connection_log;
mod destination;
mod handshake;
mod outcomes;
mod rules;
mod wire;

use connection_log::{ConnectionLog, LogLines};
use handshake::{Access, Refused, Request, Version};
use logins::{LoginGuard, PasswordFile};
use outcomes::{Outcome, Outcomes};
use plugin_api::tokio::io::AsyncWriteExt;
use plugin_api::tracing::info;
use plugin_api::{
    export_service_maker, ConnectionLimits, Endpoint, Listener, OptionKind, OptionSpec, Options,
    PeerAddr, Result, Service, Stream, Tasks,
};
use relay::{Engine, Relayed};
use rules::Rules;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{Failure, Target};

/// Generous for a few round trips over any network, short enough that silent clients do not
/// hold their connection slots for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Twisted's default for connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs())
}

fn options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::param("interface", OptionKind::STRING, "The address to listen on.")
            .short('i')
            .default("127.0.0.1"),
        OptionSpec::param("port", OptionKind::PORT, "The port to listen on (0: any free port).")
            .short('p')
            .default("1080"),
        OptionSpec::param(
            "listen",
            OptionKind::ENDPOINT,
            "Listen on this endpoint instead of --port/--interface (repeatable): tcp:PORT[:interface=ADDR], ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem], unix:PATH or systemd:domain=INET:index=N",
        )
        .repeatable(),
        OptionSpec::param("log", OptionKind::PATH, "Append one line per connection to this file.")
            .short('l'),
        OptionSpec::param(
            "allow",
            OptionKind::STRING,
            "Allow destinations in this network, e.g. 10.0.0.0/8 or 192.0.2.1 (repeatable); the most specific rule wins",
        )
        .repeatable(),
        OptionSpec::param(
            "deny",
            OptionKind::STRING,
            "Deny destinations in this network (repeatable). Loopback, link-local, private and multicast ranges are denied unless allowed",
        )
        .repeatable(),
        OptionSpec::param(
            "password-file",
            OptionKind::PATH,
            "Require a SOCKS5 username and password from this file (user:hash lines, bcrypt or argon2); SOCKS4 is then refused",
        ),
        OptionSpec::flag(
            "allow-plaintext-passwords",
            "Accept plain-text passwords in the password file.",
        ),
        OptionSpec::param(
            "handshake-timeout",
            OptionKind::DURATION,
            "How long a client may take to send its request.",
        )
        .default(&seconds(HANDSHAKE_TIMEOUT)),
        OptionSpec::param(
            "connect-timeout",
            OptionKind::DURATION,
            "How long resolving and connecting to a destination may take.",
        )
        .default(&seconds(CONNECT_TIMEOUT)),
        OptionSpec::max_connections(1000),
        // Read by ConnectionLimits::from_options, like --max-connections.
        OptionSpec::param(
            "max-connections-per-ip",
            OptionKind::INTEGER,
            "Connections at once from one client address (0: no limit); more are closed at once.",
        )
        .default("0"),
        Engine::option(),
    ]
}

/// What every connection needs.
struct Proxy {
    access: Access,
    rules: Rules,
    handshake_timeout: Duration,
    connect_timeout: Duration,
    engine: Engine,
    log: Option<LogLines>,
    outcomes: Outcomes,
}

struct Socks {
    endpoints: Vec<Endpoint>,
    listeners: Vec<Listener>,
    limits: ConnectionLimits,
    log_file: Option<ConnectionLog>,
    proxy: Option<Proxy>,
    /// `-l`'s lines, once started: SIGHUP opens the file again.
    log: Option<LogLines>,
}

fn make_service(options: &Options) -> Result<Socks> {
    let nets = |long: &str| -> Result<Vec<ipnet::IpNet>> {
        options
            .values(long)
            .map(|net| rules::parse_net(net).map_err(|e| format!("--{long}: {e}").into()))
            .collect()
    };
    let passwords = options
        .path("password-file")
        .map(|file| PasswordFile::load(&file, options.flag("allow-plaintext-passwords")))
        .transpose()?;
    Ok(Socks {
        endpoints: options.listen_endpoints("listen", "port", "interface")?,
        listeners: Vec::new(),
        limits: ConnectionLimits::from_options(options)?,
        log_file: options
            .path("log")
            .map(|path| ConnectionLog::open(&path))
            .transpose()?,
        proxy: Some(Proxy {
            access: Access {
                passwords,
                guard: LoginGuard::default(),
            },
            rules: Rules::new(&nets("allow")?, &nets("deny")?),
            handshake_timeout: options
                .duration("handshake-timeout")?
                .unwrap_or(HANDSHAKE_TIMEOUT),
            connect_timeout: options
                .duration("connect-timeout")?
                .unwrap_or(CONNECT_TIMEOUT),
            engine: Engine::from_options(options),
            log: None,
            outcomes: Outcomes::register(),
        }),
        log: None,
    })
}

impl Service for Socks {
    fn name(&self) -> &str {
        "socks"
    }

    fn privileged_start(&mut self) -> Result<()> {
        for endpoint in &self.endpoints {
            let listener = endpoint.bind()?;
            info!("socks starting on {}", listener.local_endpoint());
            self.listeners.push(listener);
        }
        Ok(())
    }

    fn start(&mut self, tasks: &Tasks) -> Result<()> {
        let mut proxy = self.proxy.take().expect("started once");
        proxy.log = self.log_file.take().map(ConnectionLog::start).transpose()?;
        self.log = proxy.log.clone();
        let proxy = Arc::new(proxy);
        for listener in self.listeners.drain(..) {
            let proxy = proxy.clone();
            tasks.serve(listener, &self.limits, move |client, peer| {
                proxy.clone().connection(client, peer)
            });
        }
        Ok(())
    }

    /// SIGHUP opens `-l`'s file again, for logrotate, as the web plugin does its access log.
    fn reload(&mut self) -> Option<Result<()>> {
        let log = self.log.as_ref()?;
        Some(match log.reopen() {
            Ok(path) => {
                info!("reopened the connection log {}", path.display());
                Ok(())
            }
            Err(e) => Err(e.into()),
        })
    }
}

impl Proxy {
    async fn connection(self: Arc<Self>, mut client: Stream, peer: PeerAddr) -> Result<()> {
        let started = Instant::now();
        client.set_nodelay(true)?;
        let ip = peer
            .socket_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let request =
            match handshake::negotiate(&mut client, ip, &self.access, self.handshake_timeout).await
            {
                Ok(request) => request,
                Err(refused) => {
                    self.log_refused(&peer, &refused, Outcome::Refused);
                    return Ok(());
                }
            };
        let (mut server, address) =
            match destination::connect(&request.target, &self.rules, self.connect_timeout).await {
                Ok(connected) => connected,
                Err(unreached) => {
                    handshake::refuse(&mut client, &reply(request.version, Err(unreached.failure)))
                        .await;
                    let refused = Refused {
                        version: Some(request.version),
                        user: request.user,
                        target: Some(request.target),
                        why: unreached.why,
                    };
                    self.log_refused(&peer, &refused, Outcome::Unreached);
                    return Ok(());
                }
            };
        let bound = server
            .local_addr()
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let delivered = async {
            handshake::send(&mut client, &reply(request.version, Ok(bound))).await?;
            server.write_all(&request.early_data).await
        };
        if let Err(e) = delivered.await {
            let refused = Refused {
                version: Some(request.version),
                user: request.user,
                target: Some(request.target),
                why: format!("ended before relaying: {e}"),
            };
            self.log_refused(&peer, &refused, Outcome::Abandoned);
            return Ok(());
        }
        let mut relayed = relay::relay(client, server, self.engine, started).await;
        relayed.up += request.early_data.len() as u64;
        self.log_relayed(&peer, &request, address, &relayed);
        Ok(())
    }

    fn log_relayed(
        &self,
        peer: &PeerAddr,
        request: &Request,
        address: SocketAddr,
        relayed: &Relayed,
    ) {
        self.outcomes.relayed(relayed.up, relayed.down);
        let user = request
            .user
            .as_deref()
            .map(|u| format!(" as '{u}'"))
            .unwrap_or_default();
        info!(
            "{} {peer}{user} to {} ({address}): {relayed}",
            request.version, request.target
        );
        if let Some(log) = &self.log {
            let outcome = match &relayed.error {
                Some(error) => format!("ended by: {error}"),
                None => "closed".into(),
            };
            log.write(&[
                &peer.to_string(),
                &request.version.to_string(),
                request.user.as_deref().unwrap_or(""),
                &request.target.to_string(),
                &address.to_string(),
                &outcome,
                &relayed.up.to_string(),
                &relayed.down.to_string(),
                &format!("{:.3}", relayed.elapsed.as_secs_f64()),
            ]);
        }
    }

    fn log_refused(&self, peer: &PeerAddr, refused: &Refused, outcome: Outcome) {
        self.outcomes.count(outcome);
        let version = refused.version.map_or("-".to_string(), |v| v.to_string());
        let target = refused
            .target
            .as_ref()
            .map(Target::to_string)
            .unwrap_or_default();
        let to = match target.is_empty() {
            true => String::new(),
            false => format!(" to {target}"),
        };
        info!("{version} {peer}{to} refused: {}", refused.why);
        if let Some(log) = &self.log {
            log.write(&[
                &peer.to_string(),
                &version,
                refused.user.as_deref().unwrap_or(""),
                &target,
                "",
                &format!("refused: {}", refused.why),
                "0",
                "0",
                "",
            ]);
        }
    }
}

/// The reply to a request, in the client's version.
fn reply(version: Version, outcome: std::result::Result<SocketAddr, Failure>) -> Vec<u8> {
    match version {
        Version::Socks4 | Version::Socks4a => wire::socks4_reply(outcome).to_vec(),
        Version::Socks5 => wire::socks5_reply(outcome),
    }
}

export_service_maker! {
    tapname: "socks",
    description: "A SOCKSv4, SOCKSv4a and SOCKSv5 proxy service.",
    options: options,
    make_service: make_service,
}
