//! portforward: every accepted connection is relayed to one destination, both ways, until both
//! sides have closed. twistd's `portforward` with its options (`-p/--port`, `-h/--host`,
//! `-d/--dest_port`), plus `--dest` for any client endpoint; unlike twistd's, a half-close is
//! passed on and a slow side slows the other instead of filling memory (see the `relay` crate).

use plugin_api::tracing::info;
use plugin_api::{
    export_service_maker, ClientEndpoint, ConnectionLimits, Endpoint, Listener, OptionKind,
    OptionSpec, Options, PeerAddr, Result, Service, Stream, Tasks,
};
use relay::Engine;
use std::sync::Arc;
use std::time::Instant;

fn options() -> Vec<OptionSpec> {
    vec![
        // A string rather than an ENDPOINT: twistd also takes a bare port number here.
        OptionSpec::param(
            "port",
            OptionKind::STRING,
            "Where to listen (repeatable): PORT, tcp:PORT[:interface=ADDR], ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem], unix:PATH or systemd:domain=INET:index=N",
        )
        .short('p')
        .default("tcp:6666")
        .repeatable(),
        OptionSpec::param("host", OptionKind::STRING, "The host to forward to.")
            .short('h')
            .default("localhost"),
        OptionSpec::param("dest_port", OptionKind::PORT, "The port to forward to.")
            .short('d')
            .default("6665"),
        OptionSpec::param(
            "dest",
            OptionKind::CLIENT_ENDPOINT,
            "Forward to this endpoint instead of --host/--dest_port: tcp:HOST:PORT[:timeout=S] or unix:PATH[:timeout=S]",
        ),
        OptionSpec::param(
            "connect-timeout",
            OptionKind::DURATION,
            "How long resolving and connecting to the destination may take [default: 30s, or --dest's timeout=]",
        ),
        OptionSpec::max_connections(1000),
        Engine::option(),
    ]
}

/// What every connection needs: where to forward it and how to move the bytes.
struct Forward {
    destination: ClientEndpoint,
    engine: Engine,
}

struct PortForward {
    endpoints: Vec<Endpoint>,
    listeners: Vec<Listener>,
    limits: ConnectionLimits,
    forward: Arc<Forward>,
}

fn make_service(options: &Options) -> Result<PortForward> {
    let mut destination = match options.parse::<ClientEndpoint>("dest")? {
        Some(endpoint) => endpoint,
        None => ClientEndpoint::tcp(
            options.get("host").unwrap_or("localhost"),
            options.parse::<u16>("dest_port")?.unwrap_or(6665),
        ),
    };
    if let Some(timeout) = options.duration("connect-timeout")? {
        destination = destination.with_timeout(timeout);
    }
    Ok(PortForward {
        endpoints: options
            .values("port")
            .map(listen_endpoint)
            .collect::<Result<_>>()?,
        listeners: Vec::new(),
        limits: ConnectionLimits::from_options(options)?,
        forward: Arc::new(Forward {
            destination,
            engine: Engine::from_options(options),
        }),
    })
}

/// An endpoint, or a bare port number meaning TCP on every interface, as twistd's strports
/// still accept.
fn listen_endpoint(text: &str) -> Result<Endpoint> {
    match text.parse::<u16>() {
        Ok(port) => Ok(Endpoint::tcp(port, None)),
        Err(_) => text
            .parse()
            .map_err(|e| format!("option --port: {e}").into()),
    }
}

impl Service for PortForward {
    fn name(&self) -> &str {
        "portforward"
    }

    fn privileged_start(&mut self) -> Result<()> {
        for endpoint in &self.endpoints {
            let listener = endpoint.bind()?;
            info!(
                "portforward starting on {}, forwarding to {}",
                listener.local_endpoint(),
                self.forward.destination
            );
            self.listeners.push(listener);
        }
        Ok(())
    }

    fn start(&mut self, tasks: &Tasks) -> Result<()> {
        for listener in self.listeners.drain(..) {
            let forward = self.forward.clone();
            tasks.serve(listener, &self.limits, move |client, peer| {
                forward.clone().connection(client, peer)
            });
        }
        Ok(())
    }
}

impl Forward {
    /// Connects to the destination and relays; a destination that cannot be reached is the
    /// connection's error, logged with the client's address, and the client is closed.
    async fn connection(self: Arc<Self>, client: Stream, peer: PeerAddr) -> Result<()> {
        let started = Instant::now();
        let server = self.destination.connect().await?;
        // A relay passes on writes as they come: holding small ones back only adds latency.
        client.set_nodelay(true)?;
        let relayed = relay::relay(client, server, self.engine, started).await;
        info!("{peer} to {}: {relayed}", self.destination);
        Ok(())
    }
}

export_service_maker! {
    tapname: "portforward",
    description: "A simple port-forwarder.",
    options: options,
    make_service: make_service,
}
