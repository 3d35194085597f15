//! fastpoetry: every connection gets the whole poem, then the server closes it.
//!
//! The `host` version of the plugin from Dave Peticolas's Twisted introduction ("Twisted
//! Daemonologie"), with twistd's options. The poem is read once, before anything listens, and
//! shared by reference between connections; each connection is its own task, so a slow reader
//! holds up nobody else.

use bytes::Bytes;
use plugin_api::tokio::io::AsyncWriteExt;
use plugin_api::{
    export_service_maker, files, ConnectionLimits, Endpoint, Listener, OptionKind, OptionSpec,
    Options, Result, Service, Tasks,
};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tracing::info;

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
            "max-size",
            OptionKind::INTEGER,
            "The largest poem file read, in bytes; a larger one is refused",
        )
        .default(&DEFAULT_MAX_SIZE.to_string()),
        OptionSpec::param(
            "listen",
            OptionKind::ENDPOINT,
            "Listen on this endpoint instead of --port/--iface (repeatable): tcp:PORT[:interface=ADDR][:backlog=N], ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem], unix:PATH[:mode=0660] or systemd:domain=INET:index=N",
        )
        .repeatable(),
        OptionSpec::max_connections(10_000),
    ]
}

/// `--max-size`'s default: 64 MiB, far beyond any poem, far below what would hurt the host.
const DEFAULT_MAX_SIZE: u64 = 64 << 20;

/// Where the poem comes from: read again on SIGHUP.
enum PoemSource {
    Bundled,
    /// An absolute path (the host may change directory before a reload) and the size limit.
    File(PathBuf, u64),
}

impl PoemSource {
    /// Reads the poem through the kit's file policy: a FIFO, a device or a file past the limit
    /// is a one-line error at once, on start-up and on SIGHUP alike.
    fn load(&self) -> Result<Bytes> {
        match self {
            Self::Bundled => Ok(Bytes::from_static(BUNDLED_POEM)),
            Self::File(path, limit) => {
                files::read_regular(path, *limit)
                    .map(Bytes::from)
                    .map_err(|e| {
                        let hint = match e.kind() {
                            std::io::ErrorKind::FileTooLarge => " (--max-size)",
                            _ => "",
                        };
                        format!("cannot read the poem {}: {e}{hint}", path.display()).into()
                    })
            }
        }
    }
}

/// The poem every new connection gets; one copy, shared by reference.
type SharedPoem = Arc<RwLock<Bytes>>;

struct PoetryService {
    source: PoemSource,
    poem: SharedPoem,
    endpoints: Vec<Endpoint>,
    listeners: Vec<Listener>,
    limits: ConnectionLimits,
}

fn make_service(options: &Options) -> Result<PoetryService> {
    let source = match options.path("poem") {
        Some(path) => PoemSource::File(
            std::path::absolute(&path)
                .map_err(|e| format!("cannot read the poem {}: {e}", path.display()))?,
            options
                .parse::<u64>("max-size")?
                .unwrap_or(DEFAULT_MAX_SIZE),
        ),
        None => PoemSource::Bundled,
    };
    let poem = source.load()?;
    match options.path("poem") {
        Some(path) => info!("loaded a poem from: {}", path.display()),
        None => info!("loaded the bundled poem: 'The Ecstasy' by John Donne"),
    }
    Ok(PoetryService {
        source,
        poem: Arc::new(RwLock::new(poem)),
        endpoints: options.listen_endpoints("listen", "port", "iface")?,
        listeners: Vec::new(),
        limits: ConnectionLimits::from_options(options)?,
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
            let poem = self.poem.clone();
            tasks.serve(listener, &self.limits, move |mut stream, peer| {
                let poem = poem.read().unwrap_or_else(|p| p.into_inner()).clone();
                async move {
                    stream.write_all(&poem).await?;
                    stream.shutdown().await?;
                    // Logged once the poem is in the kernel's hands, like an access log, so the
                    // log write never delays the client.
                    info!("sending {} bytes of poetry to {peer}", poem.len());
                    Ok(())
                }
            });
        }
        Ok(())
    }

    /// SIGHUP reads the poem file again; connections already open keep the poem they had.
    fn reload(&mut self) -> Option<Result<()>> {
        Some(self.source.load().map(|poem| {
            info!("reloaded the poem ({} bytes)", poem.len());
            *self.poem.write().unwrap_or_else(|p| p.into_inner()) = poem;
        }))
    }
}

export_service_maker! {
    tapname: "fastpoetry",
    description: "A fast poetry service.",
    options: options,
    make_service: make_service,
}
