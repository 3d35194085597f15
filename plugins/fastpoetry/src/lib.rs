//! fastpoetry: every connection gets the whole poem, then the server closes it.
//!
//! The `host` version of the plugin from Dave Peticolas's Twisted introduction ("Twisted
//! Daemonologie"), with twistd's options. The poem is read once, before anything listens, and
//! shared by reference between connections; each connection is its own task, so a slow reader
//! holds up nobody else.

use bytes::Bytes;
use plugin_api::tokio::io::AsyncWriteExt;
use plugin_api::{
    export_service_maker, Endpoint, Listener, OptionKind, OptionSpec, Options, Result, Service,
    Tasks,
};
use tracing::{info, warn};

/// Served when `--poem` is not given, so `host -n fastpoetry` works with no files at all.
const BUNDLED_POEM: &[u8] = include_bytes!("../../../poems/ecstasy.txt");

fn options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::param("port", OptionKind::PORT, "The port number to listen on (0: any free port).")
            .short('p')
            .default("10000"),
        OptionSpec::param("iface", OptionKind::STRING, "The interface to listen on.").default("localhost"),
        OptionSpec::param(
            "poem",
            OptionKind::PATH,
            "The file containing the poem [default: the bundled 'The Ecstasy' by John Donne]",
        ),
        OptionSpec::param(
            "listen",
            OptionKind::ENDPOINT,
            "Listen on this endpoint instead of --port/--iface (repeatable): tcp:PORT[:interface=ADDR][:backlog=N], unix:PATH[:mode=0660] or systemd:domain=INET:index=N",
        )
        .repeatable(),
    ]
}

struct PoetryService {
    poem: Bytes,
    endpoints: Vec<Endpoint>,
    listeners: Vec<Listener>,
}

fn make_service(options: &Options) -> Result<PoetryService> {
    let poem = match options.path("poem") {
        Some(path) => {
            let poem = std::fs::read(&path)
                .map_err(|e| format!("cannot read the poem {}: {e}", path.display()))?;
            info!("loaded a poem from: {}", path.display());
            Bytes::from(poem)
        }
        None => {
            info!("loaded the bundled poem: 'The Ecstasy' by John Donne");
            Bytes::from_static(BUNDLED_POEM)
        }
    };
    let mut endpoints = options.endpoints("listen")?;
    if endpoints.is_empty() {
        let port = options.parse::<u16>("port")?.unwrap_or(10000);
        let iface = options.get("iface").unwrap_or("localhost");
        endpoints.push(Endpoint::tcp(port, iface));
    }
    Ok(PoetryService {
        poem,
        endpoints,
        listeners: Vec::new(),
    })
}

impl Service for PoetryService {
    fn name(&self) -> &str {
        "fastpoetry"
    }

    fn privileged_start(&mut self) -> Result<()> {
        for endpoint in &self.endpoints {
            let listener = endpoint.bind()?;
            info!("fastpoetry starting on {}", listener.local_endpoint());
            self.listeners.push(listener);
        }
        Ok(())
    }

    fn start(&mut self, tasks: &Tasks) -> Result<()> {
        for listener in self.listeners.drain(..) {
            tasks.spawn(serve(listener, self.poem.clone(), tasks.clone()));
        }
        Ok(())
    }
}

/// Accepts connections until shutdown, giving each one the poem on a task of its own.
async fn serve(listener: Listener, poem: Bytes, tasks: Tasks) -> Result<()> {
    let shutdown = tasks.shutdown();
    loop {
        let accepted = plugin_api::tokio::select! {
            _ = shutdown.requested() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((mut stream, peer)) => {
                let poem = poem.clone();
                tasks.spawn_connection(async move {
                    let sent = async {
                        stream.write_all(&poem).await?;
                        stream.shutdown().await
                    };
                    let sent = sent.await;
                    // Logged once the poem is in the kernel's hands, like an access log, so the
                    // log write never delays the client.
                    info!("sending {} bytes of poetry to {peer}", poem.len());
                    Ok(sent?)
                });
            }
            // Out of file descriptors or a connection reset before accept: the listener is
            // fine, so pause briefly instead of spinning or giving up.
            Err(e) => {
                warn!("accept failed: {e}");
                plugin_api::tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    info!("(Port {} Closed)", listener.local_endpoint());
    Ok(())
}

export_service_maker! {
    tapname: "fastpoetry",
    description: "A fast poetry service.",
    options: options,
    make_service: make_service,
}
