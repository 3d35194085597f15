use plugin_api::tokio::io::AsyncWriteExt;
use plugin_api::{
    export_service_maker, tracing, ConnectionLimits, Endpoint, Listener, OptionKind, OptionSpec,
    Options, Result, Service, Tasks,
};

fn options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::param("listen", OptionKind::ENDPOINT, "Where to listen.")
            .default("tcp:7000:interface=127.0.0.1"),
        OptionSpec::max_connections(100),
    ]
}

struct Hello {
    endpoint: Endpoint,
    limits: ConnectionLimits,
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

    // Serve the listener: the kit accepts, limits and logs; we greet each connection.
    fn start(&mut self, tasks: &Tasks) -> Result<()> {
        let listener = self.listener.take().expect("bound in privileged_start");
        tasks.serve(listener, &self.limits, |mut stream, peer| async move {
            tracing::info!("greeting {peer}");
            stream.write_all(b"hello\n").await?;
            Ok(())
        });
        Ok(())
    }
}

fn make_service(options: &Options) -> Result<Hello> {
    Ok(Hello {
        endpoint: options.endpoint("listen")?,
        limits: ConnectionLimits::from_options(options)?,
        listener: None,
    })
}

export_service_maker! {
    tapname: "hello",
    description: "Says hello to every connection.",
    options: options,
    make_service: make_service,
}
