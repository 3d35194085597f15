use plugin_api::tokio::io::AsyncWriteExt;
use plugin_api::{
    export_service_maker, tracing, Endpoint, Listener, OptionKind, OptionSpec, Options, Result,
    Service, Tasks,
};

fn options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::param("listen", OptionKind::ENDPOINT, "Where to listen.")
            .default("tcp:7000:interface=127.0.0.1"),
    ]
}

struct Hello {
    endpoint: Endpoint,
    listener: Option<Listener>,
}

impl Service for Hello {
    fn name(&self) -> &str {
        "hello"
    }

    // Runs first, before the host drops privileges: bind here.
    fn privileged_start(&mut self) -> Result<()> {
        let listener = self.endpoint.bind()?;
        tracing::info!("hello starting on {}", listener.local_endpoint());
        self.listener = Some(listener);
        Ok(())
    }

    // Spawn the work and return; `tasks` lets the host stop it gracefully.
    fn start(&mut self, tasks: &Tasks) -> Result<()> {
        let listener = self.listener.take().expect("bound in privileged_start");
        let workers = tasks.clone();
        let shutdown = tasks.shutdown();
        tasks.spawn(async move {
            loop {
                let (mut stream, peer) = plugin_api::tokio::select! {
                    _ = shutdown.requested() => return Ok(()),
                    accepted = listener.accept() => accepted?,
                };
                tracing::info!("greeting {peer}");
                workers.spawn_connection(async move {
                    stream.write_all(b"hello\n").await?;
                    Ok(())
                });
            }
        });
        Ok(())
    }
}

fn make_service(options: &Options) -> Result<Hello> {
    Ok(Hello {
        endpoint: options.endpoint("listen")?,
        listener: None,
    })
}

export_service_maker! {
    tapname: "hello",
    description: "Says hello to every connection.",
    options: options,
    make_service: make_service,
}
