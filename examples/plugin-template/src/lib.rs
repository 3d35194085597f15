//! echo: sends every line a client writes straight back to it.
//!
//! A complete host plugin, ready to copy: options of several kinds, a service that binds in
//! `privileged_start` and serves in `start` through the kit's serving loop, logging, graceful
//! stop, and a unit test.

use plugin_api::tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use plugin_api::{
    ConnectionLimits, Endpoint, Listener, OptionKind, OptionSpec, Options, Result, Service,
    Shutdown, Tasks, export_service_maker, tokio, tracing,
};

fn options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::param(
            "listen",
            OptionKind::ENDPOINT,
            "Where to listen (repeatable).",
        )
        .default("tcp:7001:interface=127.0.0.1")
        .repeatable(),
        OptionSpec::param(
            "greeting",
            OptionKind::STRING,
            "First line sent to each client.",
        )
        .default("echo ready"),
        OptionSpec::param(
            "max-line",
            OptionKind::INTEGER,
            "Longest line echoed, in bytes; a longer one ends the connection.",
        )
        .default("4096"),
        OptionSpec::flag("upper", "Echo in upper case."),
        OptionSpec::max_connections(1000),
    ]
}

/// What every connection needs to know.
#[derive(Clone)]
struct Settings {
    greeting: String,
    max_line: usize,
    upper: bool,
}

struct Echo {
    endpoints: Vec<Endpoint>,
    listeners: Vec<Listener>,
    limits: ConnectionLimits,
    settings: Settings,
}

/// Reads and checks the options; runs before the host becomes a daemon, so report every
/// mistake here, as an error the user sees on one line.
fn make_service(options: &Options) -> Result<Echo> {
    let max_line = options.parse::<usize>("max-line")?.unwrap_or(4096);
    if max_line == 0 {
        return Err("--max-line must be at least 1".into());
    }
    Ok(Echo {
        endpoints: options.endpoints("listen")?,
        listeners: Vec::new(),
        limits: ConnectionLimits::from_options(options)?,
        settings: Settings {
            greeting: options.get("greeting").unwrap_or_default().to_string(),
            max_line,
            upper: options.flag("upper"),
        },
    })
}

impl Service for Echo {
    fn name(&self) -> &str {
        "echo"
    }

    /// Binds every endpoint; the host may drop root privileges right after this.
    fn privileged_start(&mut self) -> Result<()> {
        for endpoint in &self.endpoints {
            let listener = endpoint.bind()?;
            tracing::info!("echo starting on {}", listener.local_endpoint());
            self.listeners.push(listener);
        }
        Ok(())
    }

    /// Serves every listener and returns: the kit accepts connections (within
    /// `--max-connections`), runs `echo` on each, logs its errors with the client's address,
    /// and stops gracefully.
    fn start(&mut self, tasks: &Tasks) -> Result<()> {
        for listener in self.listeners.drain(..) {
            let (settings, shutdown) = (self.settings.clone(), tasks.shutdown());
            tasks.serve(listener, &self.limits, move |stream, peer| {
                tracing::info!("client {peer} connected");
                let (settings, shutdown) = (settings.clone(), shutdown.clone());
                async move { echo(stream, &settings, &shutdown).await }
            });
        }
        Ok(())
    }
}

/// Echoes lines until the client leaves, sends a line longer than `--max-line`, or the host
/// asks the service to stop.
async fn echo(
    stream: impl AsyncRead + AsyncWrite,
    settings: &Settings,
    shutdown: &Shutdown,
) -> Result<()> {
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader);
    writer
        .write_all(format!("{}\n", settings.greeting).as_bytes())
        .await?;
    // Room for the longest line and its newline, and no more: reading until a newline without
    // a bound would let one client fill the server's memory.
    let limit = settings.max_line.saturating_add(1) as u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut bounded = (&mut reader).take(limit);
        let read = tokio::select! {
            _ = shutdown.requested() => break,
            read = bounded.read_until(b'\n', &mut line) => read?,
        };
        if read == 0 {
            break;
        }
        let text = match line.strip_suffix(b"\n") {
            Some(text) => text,
            // The client's last line, without a newline.
            None if (read as u64) < limit => &line,
            // As Twisted's LineReceiver does: a line over the limit ends the connection.
            None => {
                writer.write_all(b"line too long\n").await?;
                break;
            }
        };
        let text = String::from_utf8_lossy(text.strip_suffix(b"\r").unwrap_or(text));
        let reply = match settings.upper {
            true => text.to_uppercase(),
            false => text.into_owned(),
        };
        writer.write_all(format!("{reply}\n").as_bytes()).await?;
    }
    writer.shutdown().await?;
    Ok(())
}

export_service_maker! {
    tapname: "echo",
    description: "Echoes every line back (from the plugin template).",
    options: options,
    make_service: make_service,
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::tokio::io::AsyncReadExt;

    #[test]
    fn echoes_each_line_after_the_greeting() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let (mut client, server) = tokio::io::duplex(1024);
            let settings = Settings {
                greeting: "hi".into(),
                max_line: 5,
                upper: true,
            };
            let serving = tokio::spawn(async move {
                let shutdown = Tasks::standalone().shutdown();
                echo(server, &settings, &shutdown).await.unwrap();
            });
            client.write_all(b"abc\nlast").await.unwrap();
            client.shutdown().await.unwrap();
            let mut reply = String::new();
            client.read_to_string(&mut reply).await.unwrap();
            assert_eq!(reply, "hi\nABC\nLAST\n");
            serving.await.unwrap();
        });
    }

    #[test]
    fn a_line_over_the_limit_ends_the_connection_without_being_read_whole() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let (client, server) = tokio::io::duplex(64);
            let (mut from_server, mut to_server) = tokio::io::split(client);
            let settings = Settings {
                greeting: "hi".into(),
                max_line: 5,
                upper: false,
            };
            let serving = tokio::spawn(async move {
                let shutdown = Tasks::standalone().shutdown();
                echo(server, &settings, &shutdown).await.unwrap();
            });
            // A line that never ends: the server must answer without waiting for its end.
            tokio::spawn(async move { while to_server.write_all(b"abcdefgh").await.is_ok() {} });
            let mut reply = String::new();
            let read = from_server.read_to_string(&mut reply);
            tokio::time::timeout(std::time::Duration::from_secs(10), read)
                .await
                .expect("the server answers")
                .unwrap();
            assert_eq!(reply, "hi\nline too long\n");
            serving.await.unwrap();
        });
    }
}
