//! web: a static file server with twistd web's option names (`host web --path DIR`).
//!
//! - HTTP/1.1 (keep-alive, pipelining) and HTTP/2 over TLS by ALPN, by hyper;
//! - files with their type, length, validators, conditional requests, ranges and
//!   precompressed siblings (`file_response`), directory redirects, index files and listings
//!   (`site`, `listing`);
//! - every path resolved by the kernel under the root's descriptor, so nothing outside the
//!   root is reachable unless `--follow-symlinks` (`request_path`, `root`); dotfiles hidden;
//! - slow clients cut off (`connection`), connections limited by the kit's serving loop;
//! - files streamed in fixed chunks (`body`); an access log in the Combined Log Format
//!   (`access_log`).

mod access_log;
mod body;
mod conditional;
mod connection;
mod encoding;
mod file_response;
mod handler;
mod listing;
mod range;
mod request_path;
mod root;
mod send_timeout;
mod site;

use access_log::{AccessLog, FileLog};
use connection::Timeouts;
use handler::{Handler, Requests};
use http::{HeaderName, HeaderValue};
use plugin_api::tracing::info;
use plugin_api::{
    export_service_maker, tokio, ConnectionLimits, Endpoint, Listener, OptionKind, OptionSpec,
    Options, Result, Service, Tasks,
};
use root::Root;
use site::Site;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long a connection may wait without a request before a full service closes it to make
/// room for a newcomer: a client sends its request at once, a slowloris client never does.
const CROWD_GRACE: Duration = Duration::from_millis(500);

fn options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::param("path", OptionKind::PATH, "The directory to serve, or a single file.")
            .default("."),
        OptionSpec::param(
            "listen",
            OptionKind::ENDPOINT,
            "Listen on this endpoint instead of --port (repeatable): tcp:PORT[:interface=ADDR], ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem] (HTTP/2 by ALPN), unix:PATH or systemd:domain=INET:index=N",
        )
        .repeatable(),
        OptionSpec::param("port", OptionKind::PORT, "Listen on this TCP port, all interfaces (tcp:PORT).")
            .short('p')
            .default("8080"),
        OptionSpec::param(
            "index",
            OptionKind::STRING,
            "A file name served for its directory, tried in order (repeatable) [default: index.html, index.htm]",
        )
        .short('i')
        .repeatable(),
        OptionSpec::param("mime-type", OptionKind::STRING, "The Content-Type of files whose extension is unknown.")
            .short('m')
            .default("application/octet-stream"),
        OptionSpec::param("add-header", OptionKind::STRING, "Add the header 'Name: value' to every response (repeatable).")
            .repeatable(),
        OptionSpec::param(
            "access-log",
            OptionKind::PATH,
            "Log every request to this file in the Combined Log Format; '-' for the host's log.",
        )
        .default("-"),
        OptionSpec::flag("no-listing", "Answer 403 for a directory without an index file, instead of listing it."),
        OptionSpec::flag("follow-symlinks", "Follow symlinks that lead outside the root (otherwise they are 404)."),
        OptionSpec::flag("show-dotfiles", "Serve and list names that start with a dot (otherwise they are 404 and unlisted)."),
        OptionSpec::param("cors", OptionKind::STRING, "Let pages from this origin (or '*') read the responses (Access-Control-Allow-Origin)."),
        OptionSpec::param(
            "header-timeout",
            OptionKind::DURATION,
            "How long a client may take to send a request's headers, and how long an idle connection is kept.",
        )
        .default("10s"),
        OptionSpec::param(
            "send-timeout",
            OptionKind::DURATION,
            "How long a response may wait for a client that reads none of it before the connection is closed.",
        )
        .default("60s"),
        OptionSpec::max_connections(1024),
        OptionSpec::param(
            "max-connections-per-ip",
            OptionKind::INTEGER,
            "Connections served at once from one IP address (0: no limit); more are closed at once.",
        )
        .default("0"),
    ]
}

struct WebService {
    endpoints: Vec<Endpoint>,
    listeners: Vec<Listener>,
    limits: ConnectionLimits,
    timeouts: Timeouts,
    /// Ready to serve; shared by every connection once started.
    handler: Option<Handler>,
    /// `--access-log FILE`: opened in `privileged_start`, reopened on SIGHUP.
    access_log_path: Option<PathBuf>,
    access_log: Option<Arc<FileLog>>,
}

fn make_service(options: &Options) -> Result<WebService> {
    let (site, served) = make_site(options)?;
    let access_log_path = match options.path("access-log") {
        Some(path) if path.as_os_str() != "-" => Some(std::path::absolute(&path)?),
        _ => None,
    };
    let positive = |long: &str| -> Result<Duration> {
        options
            .duration(long)?
            .filter(|t| !t.is_zero())
            .ok_or_else(|| format!("--{long} must be longer than 0s").into())
    };
    let timeouts = Timeouts {
        header: positive("header-timeout")?,
        send: positive("send-timeout")?,
    };
    let extra_headers = options
        .values("add-header")
        .map(parse_header)
        .collect::<Result<_>>()?;
    let cors = options
        .get("cors")
        .map(|origin| {
            HeaderValue::from_str(origin)
                .ok()
                .filter(|_| !origin.is_empty() && !origin.contains([',', ' ']))
                .ok_or(format!(
                    "--cors '{origin}' is not one origin (e.g. https://example.org) or '*'"
                ))
        })
        .transpose()?;
    let endpoints = options.listen_endpoints("listen", "port", "interface")?;
    // Room is made once every connection slot is taken; see the README's slowloris notes.
    let limits = ConnectionLimits::from_options(options)?.make_room(CROWD_GRACE);
    info!(
        "serving {} (index: {}; listing: {}; dotfiles: {}; symlinks: {}; access log: {})",
        served.display(),
        site.indexes.join(", "),
        if site.listing { "on" } else { "off" },
        if site.show_dotfiles {
            "served"
        } else {
            "hidden"
        },
        if options.flag("follow-symlinks") {
            "followed anywhere"
        } else {
            "kept inside the root"
        },
        access_log_path
            .as_ref()
            .map_or("the host's log".to_string(), |p| p.display().to_string()),
    );
    Ok(WebService {
        endpoints,
        listeners: Vec::new(),
        limits,
        timeouts,
        handler: Some(Handler {
            site,
            extra_headers,
            cors,
            access_log: AccessLog::HostLog,
            requests: Requests::register(),
        }),
        access_log_path,
        access_log: None,
    })
}

/// The served tree: `--path` (a directory, or one file in its directory) and the options
/// that shape what is found there; and the path served, made absolute.
fn make_site(options: &Options) -> Result<(Site, PathBuf)> {
    let given = options.path("path").unwrap_or_else(|| PathBuf::from("."));
    let path = given
        .canonicalize()
        .map_err(|e| format!("cannot serve {}: {e}", given.display()))?;
    let follow_symlinks = options.flag("follow-symlinks");
    let show_dotfiles = options.flag("show-dotfiles");
    let metadata = std::fs::metadata(&path)?;
    let (root, single_file) = match path.parent().zip(path.file_name()) {
        Some((parent, name)) if metadata.is_file() => (
            Root::open(parent, follow_symlinks, show_dotfiles)?,
            Some(name.to_owned()),
        ),
        _ if metadata.is_dir() => (Root::open(&path, follow_symlinks, show_dotfiles)?, None),
        _ => {
            return Err(format!(
                "cannot serve {}: not a directory or a regular file",
                given.display()
            )
            .into())
        }
    };
    let mut indexes: Vec<String> = options.values("index").map(str::to_string).collect();
    if indexes.is_empty() {
        indexes = vec!["index.html".into(), "index.htm".into()];
    }
    if let Some(bad) = indexes
        .iter()
        .find(|name| name.is_empty() || name.contains('/') || *name == "." || *name == "..")
    {
        return Err(format!("--index '{bad}' is not a file name").into());
    }
    let mime_type = options
        .get("mime-type")
        .unwrap_or("application/octet-stream");
    let default_type = HeaderValue::from_str(mime_type)
        .ok()
        .filter(|_| mime_type.contains('/'))
        .ok_or(format!(
            "--mime-type '{mime_type}' is not a media type such as text/plain"
        ))?;
    let site = Site {
        root,
        single_file,
        indexes,
        listing: !options.flag("no-listing"),
        show_dotfiles,
        default_type,
    };
    Ok((site, path))
}

/// Parses `--add-header 'Name: value'`. Headers that frame the message are refused: a wrong
/// Content-Length or Transfer-Encoding would corrupt every response.
fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue)> {
    let invalid = || format!("--add-header '{text}' is not 'Name: value'");
    let (name, value) = text.split_once(':').ok_or_else(invalid)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| invalid())?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| invalid())?;
    // Headers the server sets from the file and the request: a second copy would contradict
    // the first (two Content-Types, two ETags), or break the framing.
    let own = [
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
        http::header::CONNECTION,
        http::header::CONTENT_RANGE,
        http::header::CONTENT_ENCODING,
        http::header::CONTENT_TYPE,
        http::header::ETAG,
        http::header::LAST_MODIFIED,
        http::header::ACCEPT_RANGES,
        http::header::VARY,
        http::header::LOCATION,
        http::header::ALLOW,
        http::header::DATE,
        // Hop-by-hop: they describe this connection, which the server alone manages.
        http::header::UPGRADE,
        http::header::TE,
        http::header::TRAILER,
        http::header::HeaderName::from_static("keep-alive"),
        http::header::HeaderName::from_static("proxy-connection"),
    ];
    if own.contains(&name) {
        return Err(format!("--add-header: {name} is set by the server itself").into());
    }
    Ok((name, value))
}

impl Service for WebService {
    fn name(&self) -> &str {
        "web"
    }

    fn privileged_start(&mut self) -> Result<()> {
        // Opened here, as nginx does, while the host may still be root.
        if let Some(path) = &self.access_log_path {
            let log = FileLog::open(path)?;
            if let Some(handler) = &mut self.handler {
                handler.access_log = AccessLog::File(log.clone());
            }
            self.access_log = Some(log);
        }
        for endpoint in &self.endpoints {
            let mut listener = endpoint.bind()?;
            listener.set_alpn(&[b"h2", b"http/1.1"]);
            info!("web starting on {}", listener.local_endpoint());
            self.listeners.push(listener);
        }
        Ok(())
    }

    fn start(&mut self, tasks: &Tasks) -> Result<()> {
        let handler = Arc::new(self.handler.take().ok_or("the service was started twice")?);
        for listener in self.listeners.drain(..) {
            let (handler, timeouts, shutdown) = (handler.clone(), self.timeouts, tasks.shutdown());
            tasks.serve(listener, &self.limits, move |stream, peer| {
                connection::serve(stream, peer, handler.clone(), timeouts, shutdown.clone())
            });
        }
        if let Some(log) = self.access_log.clone() {
            // The last lines, of the last connections, reach the file before the host exits.
            let (tasks_now, shutdown) = (tasks.clone(), tasks.shutdown());
            tasks.spawn_connection(async move {
                shutdown.requested().await;
                while tasks_now.open_connections() > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                log.flush();
                Ok(())
            });
        }
        Ok(())
    }

    /// SIGHUP reopens the access log file, for logrotate.
    fn reload(&mut self) -> Option<Result<()>> {
        let log = self.access_log.as_ref()?;
        Some(log.reopen().map_err(Into::into).map(|()| {
            info!("reopened the access log {}", log.path().display());
        }))
    }
}

export_service_maker! {
    tapname: "web",
    description: "A static file server: HTTP/1.1 and HTTP/2, every path confined to its root.",
    options: options,
    make_service: make_service,
}
