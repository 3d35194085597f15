//! The admin endpoint (`--admin ENDPOINT`): HTTP for operators and orchestrators, served by the
//! host itself on a thread of its own, never by a plugin.
//!
//! - `GET /healthz`: 200 while the main loop runs and no service has failed; 503 and why.
//! - `GET /readyz`: 200 once every service has started, 503 before that and from the moment
//!   shutdown begins, so a load balancer stops sending before connections drain.
//! - `GET /metrics`: the Prometheus (OpenMetrics) text format.
//! - `GET /services`: each service as JSON: name, plugin, versions, library, state, endpoints,
//!   start time.
//!
//! It listens through the kit (any endpoint: `tcp:9100:interface=127.0.0.1`,
//! `unix:/run/host/admin.sock`) and serves with the kit's own loop, bound before privileges are
//! dropped and closed last, after the services have drained. Probes get through however many
//! idle connections there are: past [`MAX_CONNECTIONS`], the one that has waited longest
//! without a request is closed for each newcomer (the kit's [`plugin_api::crowd`]).

mod exposition;
mod health;
pub mod report;
mod services;

pub use health::Health;

use crate::instances::Running;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use plugin_api::{ConnectionLimits, Endpoint, Tasks};
use report::{ProcessReport, Report};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How long a connection may wait for its request before it can be closed to make room: a
/// probe sends its request at once.
const PROBE_GRACE: Duration = Duration::from_millis(100);

/// How many connections the admin endpoint serves at once: beyond, the one that has waited
/// longest without a request is closed for each newcomer.
const MAX_CONNECTIONS: usize = 256;

/// How long a connection may take to send a request's headers, from when it opens or its last
/// request was answered: probes and scrapers send theirs at once.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the admin endpoint may take to stop once the host is done.
const STOP_PATIENCE: Duration = Duration::from_secs(2);

/// One process's report: this one's (`worker` None), or a worker's of a supervisor.
pub struct Source {
    pub worker: Option<u32>,
    pub report: Report,
}

/// Where the reports come from: this process's services, or a supervisor's workers.
pub type Sources = Arc<dyn Fn() -> Vec<Source> + Send + Sync>;

/// The reports of this process's own services.
pub fn local(running: Running, health: Arc<Health>) -> Sources {
    Arc::new(move || {
        vec![Source {
            worker: None,
            report: report::gather(&running, health.started_at),
        }]
    })
}

/// The admin endpoint, bound and serving on its own thread.
pub struct Admin {
    runtime: tokio::runtime::Runtime,
    tasks: Tasks,
}

impl Admin {
    /// Binds `endpoint` (as root, if the host runs as root: before privileges are dropped) and
    /// starts serving.
    pub fn start(
        endpoint: &Endpoint,
        health: Arc<Health>,
        sources: Sources,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .thread_name("admin")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the admin endpoint: {e}"))?;
        let _entered = runtime.enter();
        let listener = endpoint
            .bind()
            .map_err(|e| format!("admin endpoint: {e}"))?;
        tracing::info!("admin endpoint on {}", listener.local_endpoint());
        let tasks = Tasks::standalone();
        let limits = ConnectionLimits::unlimited()
            .max_connections(MAX_CONNECTIONS)
            .make_room(PROBE_GRACE);
        tasks.serve(listener, &limits, move |mut stream, _peer| {
            let (health, sources) = (health.clone(), sources.clone());
            let place = Arc::new(stream.take_place().expect("the limits make room"));
            async move {
                let asked = place.clone();
                let service = hyper::service::service_fn(move |request| {
                    let busy = place.busy();
                    let answered = answer(request, health.clone(), sources.clone());
                    async move {
                        let _busy = busy;
                        answered.await
                    }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let mut connection = std::pin::pin!(connection);
                loop {
                    tokio::select! {
                        served = connection.as_mut() => return Ok(served?),
                        () = asked.asked_to_close() => if !asked.is_busy() { return Ok(()) },
                    }
                }
            }
        });
        drop(_entered);
        Ok(Self { runtime, tasks })
    }

    /// Stops serving: after the services, so probes see the shutdown to its end. On a thread
    /// of its own, so that a caller inside a runtime (the supervisor's) may call it too.
    pub fn stop(self) {
        let stopping = std::thread::spawn(move || {
            let stopped = self
                .runtime
                .block_on(async { tokio::time::timeout(STOP_PATIENCE, self.tasks.stop()).await });
            if stopped.is_err() {
                tracing::debug!(
                    "the admin endpoint's connections were cut after {STOP_PATIENCE:?}"
                );
            }
            self.runtime.shutdown_background();
        });
        let _ = stopping.join();
    }
}

async fn answer(
    request: Request<Incoming>,
    health: Arc<Health>,
    sources: Sources,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response.headers_mut().insert(
            hyper::header::ALLOW,
            "GET, HEAD".parse().expect("a valid header"),
        );
        return Ok(response);
    }
    let response = match request.uri().path() {
        "/healthz" => match health.healthy() {
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{why}\n")),
        },
        "/readyz" => match health.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{why}\n")),
        },
        // Both ask the services through their plugins, which may wait a little on a busy one.
        "/metrics" => {
            let body = tokio::task::spawn_blocking(move || {
                let own = ProcessReport::read(health.started_at);
                exposition::render(&health, &own, &sources())
            })
            .await
            .unwrap_or_default();
            with_type(
                text(StatusCode::OK, &body),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        }
        "/services" => {
            let body = tokio::task::spawn_blocking(move || services::render(&sources()))
                .await
                .unwrap_or_default();
            with_type(text(StatusCode::OK, &body), "application/json")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /metrics or /services\n",
        ),
    };
    Ok(response)
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    with_type(response, "text/plain; charset=utf-8")
}

fn with_type(
    mut response: Response<Full<Bytes>>,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
