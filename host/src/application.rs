//! Running one service to the end, like twistd's Application: bind, give up privileges, start,
//! wait for a signal or for the service to end by itself, then stop it within the deadline.
//!
//! The thread that receives signals never touches a file or waits on the plugin: SIGHUP's
//! reload runs on a blocking thread ([`Reloads`]), SIGUSR1's reopen on the log's writer thread.
//! So SIGTERM always starts the shutdown at once, and a second SIGTERM or SIGINT always exits.

use crate::logging::LogSink;
use crate::plugin_host::ServiceEnded;
use crate::process::privileges::{self, Identity};
use crate::process::systemd;
use abi_stable::std_types::RResult;
use plugin_api::abi::{ServiceBox, RELOAD};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// How long a reload may run before the log says that it is still running.
const RELOAD_PATIENCE: Duration = Duration::from_secs(3);

/// How long the plugin's `stop` may overrun `--shutdown-timeout` (it is given that as its own
/// deadline) before the host stops waiting for it.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long the log gets to write its last lines when the host exits at once.
const FLUSH_PATIENCE: Duration = Duration::from_secs(2);

/// How to run the service, from the global options.
pub struct Settings {
    pub shutdown_timeout: Duration,
    pub chroot: Option<PathBuf>,
    pub identity: Option<Identity>,
    pub log: LogSink,
}

/// The service, shared by the main loop and the thread running a reload.
type SharedService = Arc<Mutex<ServiceBox>>;

fn lock(service: &SharedService) -> MutexGuard<'_, ServiceBox> {
    service
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why the main loop ended.
enum Ending {
    Signal(&'static str),
    ServiceEnded(ServiceEnded),
}

/// What woke the main loop.
enum Event {
    Signal(Received),
    ServiceEnded(ServiceEnded),
    ReloadProgress,
}

/// Starts `service` and runs it until SIGINT/SIGTERM or until it ends by itself; `started` is
/// called once the service is up.
///
/// `Err` carries the one-line reason the run failed: the service could not start, it failed
/// while running, or it could not be stopped in time.
pub fn run(
    service: ServiceBox,
    ended: UnboundedReceiver<ServiceEnded>,
    settings: Settings,
    started: impl FnOnce(),
) -> Result<(), String> {
    // A current-thread runtime only for signals: the service runs on the plugin's own runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the main loop: {e}"))?;
    let outcome = run_on(
        &runtime,
        Arc::new(Mutex::new(service)),
        ended,
        &settings,
        started,
    );
    // Never wait here for a blocking thread that a plugin holds (a reload that never returns).
    runtime.shutdown_background();
    outcome
}

fn run_on(
    runtime: &tokio::runtime::Runtime,
    service: SharedService,
    mut ended: UnboundedReceiver<ServiceEnded>,
    settings: &Settings,
    started: impl FnOnce(),
) -> Result<(), String> {
    let name = lock(&service).name().into_string();
    let mut signals = runtime
        .block_on(async { Signals::new() })
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;

    // Bound first: a guard in an `if let` scrutinee would live through the body's `lock`.
    let start_result = start(&mut lock(&service), settings);
    if let Err(e) = start_result {
        // Release whatever the service had bound or spawned before it failed.
        let _ = lock(&service).stop(0);
        let message = format!("{name} failed to start: {e}");
        error!("{message}");
        return Err(message);
    }
    started();

    let mut reloads = Reloads {
        service: service.clone(),
        name: name.clone(),
        running: None,
        again: false,
    };
    let ending = runtime.block_on(async {
        loop {
            let event = tokio::select! {
                received = signals.next() => Event::Signal(received),
                outcome = ended.recv() => Event::ServiceEnded(outcome.flatten()),
                () = reloads.progress() => Event::ReloadProgress,
            };
            match event {
                Event::Signal(Received::Shutdown(signal)) => break Ending::Signal(signal),
                Event::Signal(Received::Hangup) => reloads.request(),
                Event::Signal(Received::Reopen) => settings.log.request_reopen(),
                Event::ServiceEnded(outcome) => break Ending::ServiceEnded(outcome),
                Event::ReloadProgress => {}
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
    let patience = settings.shutdown_timeout + STOP_GRACE;
    let stopping = runtime.block_on(async {
        // Waits for a running reload first: the service is one object.
        let stop = tokio::task::spawn_blocking(move || lock(&service).stop(deadline_ms));
        tokio::select! {
            stopped = tokio::time::timeout(patience, stop) => Ok(stopped),
            signal = signals.shutdown() => Err(signal),
        }
    });
    match stopping {
        Err(signal) => {
            warn!("Received {signal} again, exiting immediately.");
            exit_now(&settings.log)
        }
        Ok(Err(_)) => {
            let message = match reloads.is_running() {
                true => format!("{name} could not stop: its reload was still running after {patience:?}; exiting"),
                false => format!("{name} did not stop within {patience:?}; exiting"),
            };
            error!("{message}");
            return Err(message);
        }
        Ok(Ok(stopped)) => {
            let stopped = stopped
                .map_err(|e| e.to_string().into())
                .and_then(RResult::into_result);
            if let Err(e) = stopped {
                warn!("{name} did not stop cleanly: {e}");
            }
        }
    }
    info!("Main loop terminated.");
    info!("Server Shut Down.");
    failure.map_or(Ok(()), Err)
}

/// Exits with status 1 now, after giving the log a moment to write what it holds.
fn exit_now(log: &LogSink) -> ! {
    log.flush(FLUSH_PATIENCE);
    std::process::exit(1)
}

/// SIGHUP's reloads, one at a time, each on a blocking thread so the signal loop never waits
/// for one. A SIGHUP during a reload is coalesced: one more reload follows it.
struct Reloads {
    service: SharedService,
    name: String,
    running: Option<RunningReload>,
    /// Whether a SIGHUP arrived during the running reload.
    again: bool,
}

struct RunningReload {
    handle: JoinHandle<()>,
    /// When the log says the reload is still running; `None` once it has said so.
    warn_at: Option<Instant>,
}

impl Reloads {
    fn request(&mut self) {
        if self.running.is_none() {
            self.spawn();
        } else if !std::mem::replace(&mut self.again, true) {
            info!(
                "Received SIGHUP during a reload of {}; it reloads again once that one ends.",
                self.name
            );
        }
    }

    fn spawn(&mut self) {
        let service = self.service.clone();
        let name = self.name.clone();
        self.running = Some(RunningReload {
            handle: tokio::task::spawn_blocking(move || reload(&mut lock(&service), &name)),
            warn_at: Some(Instant::now() + RELOAD_PATIENCE),
        });
    }

    /// Completes when the running reload ends or has run too long; never when none runs.
    async fn progress(&mut self) {
        let Some(running) = &mut self.running else {
            return std::future::pending().await;
        };
        if let Some(warn_at) = running.warn_at {
            tokio::select! {
                _ = &mut running.handle => {}
                () = tokio::time::sleep_until(warn_at) => {
                    running.warn_at = None;
                    warn!("The reload of {} is still running after {RELOAD_PATIENCE:?}.", self.name);
                    return;
                }
            }
        } else {
            let _ = (&mut running.handle).await;
        }
        self.running = None;
        if std::mem::take(&mut self.again) {
            self.spawn();
        }
    }

    fn is_running(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|running| !running.handle.is_finished())
    }
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
