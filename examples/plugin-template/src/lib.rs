//! echo: sends every line a client writes straight back to it.
//!
//! A complete host plugin, ready to copy: options of several kinds, a service that binds in
//! `privileged_start` and serves in `start` through the kit's serving loop, logging, graceful
//! stop, and a unit test.

use plugin_api::tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
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
            "Longest line echoed, in bytes.",
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

/// Echoes lines until the client leaves or the host asks the service to stop.
async fn echo(
    stream: impl AsyncRead + AsyncWrite,
    settings: &Settings,
    shutdown: &Shutdown,
) -> Result<()> {
    let (reader, mut writer) = tokio::io::split(stream);
    let mut lines = BufReader::new(reader).lines();
    writer
        .write_all(format!("{}\n", settings.greeting).as_bytes())
        .await?;
    loop {
        let line = tokio::select! {
            _ = shutdown.requested() => break,
            line = lines.next_line() => line?,
        };
        let Some(line) = line else { break };
        let reply = match line.len() > settings.max_line {
            true => "line too long".to_string(),
            false if settings.upper => line.to_uppercase(),
            false => line,
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
            client.write_all(b"abc\ntoo long\n").await.unwrap();
            client.shutdown().await.unwrap();
            let mut reply = String::new();
            client.read_to_string(&mut reply).await.unwrap();
            assert_eq!(reply, "hi\nABC\nline too long\n");
            serving.await.unwrap();
        });
    }
}
