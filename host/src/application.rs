//! Running one service to the end, like twistd's Application: bind, give up privileges, start,
//! wait for a signal or for the service to end by itself, then stop it within the deadline.

use crate::logging::LogSink;
use crate::plugin_host::ServiceEnded;
use crate::process::privileges::{self, Identity};
use crate::process::systemd;
use abi_stable::std_types::RResult;
use plugin_api::abi::{ServiceBox, RELOAD};
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{error, info, warn};

/// How to run the service, from the global options.
pub struct Settings {
    pub shutdown_timeout: Duration,
    pub chroot: Option<PathBuf>,
    pub identity: Option<Identity>,
    pub log: LogSink,
}

/// Why the main loop ended.
enum Ending {
    Signal(&'static str),
    ServiceEnded(ServiceEnded),
}

/// Starts `service` and runs it until SIGINT/SIGTERM or until it ends by itself; `started` is
/// called once the service is up.
///
/// `Err` carries the one-line reason the run failed: the service could not start, or it
/// failed while running.
pub fn run(
    mut service: ServiceBox,
    mut ended: UnboundedReceiver<ServiceEnded>,
    settings: Settings,
    started: impl FnOnce(),
) -> Result<(), String> {
    let name = service.name().into_string();
    // A current-thread runtime only for signals: the service runs on the plugin's own runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the main loop: {e}"))?;
    let mut signals = runtime
        .block_on(async { Signals::new() })
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;

    if let Err(e) = start(&mut service, &settings) {
        // Release whatever the service had bound or spawned before it failed.
        let _ = service.stop(0);
        let message = format!("{name} failed to start: {e}");
        error!("{message}");
        return Err(message);
    }
    started();

    let ending = runtime.block_on(async {
        loop {
            let received = tokio::select! {
                received = signals.next() => received,
                outcome = ended.recv() => break Ending::ServiceEnded(outcome.flatten()),
            };
            match received {
                Received::Shutdown(signal) => break Ending::Signal(signal),
                Received::Hangup => reload(&mut service, &name),
                Received::Reopen => match settings.log.reopen() {
                    Ok(()) => info!("Received SIGUSR1, reopened the log file."),
                    Err(e) => error!("Received SIGUSR1, but cannot reopen the log file: {e}"),
                },
            }
        }
    });
    if let Err(e) = systemd::notify("STOPPING=1") {
        warn!("{e}");
    }
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

    let deadline_ms = settings.shutdown_timeout.as_millis() as u64;
    let stopped = runtime.block_on(async {
        let stop = tokio::task::spawn_blocking(move || service.stop(deadline_ms).into_result());
        tokio::select! {
            stopped = stop => stopped.unwrap_or_else(|e| Err(e.to_string().into())),
            signal = signals.shutdown() => {
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

/// SIGHUP: asks the service to reload, if it offers the `reload/1` extension.
fn reload(service: &mut ServiceBox, name: &str) {
    match service
        .call_extension(RELOAD.into(), "".into())
        .into_option()
        .map(RResult::into_result)
    {
        Some(Ok(_)) => info!("Received SIGHUP, reloaded {name}."),
        Some(Err(e)) => error!("Received SIGHUP, but {name} could not reload: {e}"),
        None => info!("Received SIGHUP, ignored ({name} cannot reload)."),
    }
}

/// Binds, then gives up privileges, then starts: the order that lets a service listen on port
/// 80 and still never serve a client as root.
fn start(service: &mut ServiceBox, settings: &Settings) -> Result<(), String> {
    service
        .privileged_start()
        .into_result()
        .map_err(|e| e.into_string())?;
    if let Some(dir) = &settings.chroot {
        privileges::chroot(dir)?;
        info!("Changed root to {}.", dir.display());
    }
    if let Some(identity) = &settings.identity {
        identity.assume()?;
        info!("Switched to {}.", identity.describe());
    }
    service.start().into_result().map_err(|e| e.into_string())
}

/// The signals the main loop answers.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    reopen: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            reopen: signal(SignalKind::user_defined1())?,
        })
    }

    /// The next SIGINT or SIGTERM, the signals that ask for a clean shutdown.
    async fn shutdown(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    async fn next(&mut self) -> Received {
        tokio::select! {
            _ = self.interrupt.recv() => Received::Shutdown("SIGINT"),
            _ = self.terminate.recv() => Received::Shutdown("SIGTERM"),
            _ = self.hangup.recv() => Received::Hangup,
            _ = self.reopen.recv() => Received::Reopen,
        }
    }
}

enum Received {
    Shutdown(&'static str),
    Hangup,
    Reopen,
}
