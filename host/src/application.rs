//! Running one service to the end, like twistd's Application: start it, wait for a signal or
//! for the service to end by itself, then stop it within the shutdown deadline.

use crate::plugin_host::ServiceEnded;
use plugin_api::abi::ServiceBox;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{error, info, warn};

/// How long in-flight work gets to finish once shutdown starts.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the main loop ended.
enum Ending {
    Signal(&'static str),
    ServiceEnded(ServiceEnded),
}

/// Starts `service` and runs it until SIGINT/SIGTERM or until it ends by itself.
///
/// `Err` carries the one-line reason the run failed: the service could not start, or it
/// failed while running.
pub fn run(
    mut service: ServiceBox,
    mut ended: UnboundedReceiver<ServiceEnded>,
) -> Result<(), String> {
    let name = service.name().into_string();
    // A current-thread runtime only for signals: the service runs on the plugin's own runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the main loop: {e}"))?;
    let mut signals = runtime
        .block_on(async { ShutdownSignals::new() })
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;

    let started = service
        .privileged_start()
        .into_result()
        .and_then(|()| service.start().into_result());
    if let Err(e) = started {
        // Release whatever the service had bound or spawned before it failed.
        let _ = service.stop(0);
        return Err(format!("{name} failed to start: {e}"));
    }

    let ending = runtime.block_on(async {
        tokio::select! {
            signal = signals.next() => Ending::Signal(signal),
            outcome = ended.recv() => Ending::ServiceEnded(outcome.flatten()),
        }
    });
    let failure = match ending {
        Ending::Signal(signal) => {
            info!("Received {signal}, shutting down.");
            None
        }
        Ending::ServiceEnded(None) => {
            info!("{name} ended by itself, shutting down.");
            None
        }
        Ending::ServiceEnded(Some(e)) => {
            error!("{name} failed: {e}");
            Some(format!("{name} failed: {e}"))
        }
    };

    let deadline_ms = SHUTDOWN_TIMEOUT.as_millis() as u64;
    let stopped = runtime.block_on(async {
        let stop = tokio::task::spawn_blocking(move || service.stop(deadline_ms).into_result());
        tokio::select! {
            stopped = stop => stopped.unwrap_or_else(|e| Err(e.to_string().into())),
            signal = signals.next() => {
                warn!("Received {signal} again, exiting immediately.");
                std::process::exit(1);
            }
        }
    });
    if let Err(e) = stopped {
        warn!("{name} did not stop cleanly: {e}");
    }
    info!("Main loop terminated.");
    info!("Server Shut Down.");
    failure.map_or(Ok(()), Err)
}

/// SIGINT and SIGTERM, the signals that ask for a clean shutdown.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
