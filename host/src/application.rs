//! Running the services to the end, like twistd's Application: bind every service, give up
//! privileges, start them in order, wait for a signal or for a service to end, then stop them
//! in reverse within the deadline.
//!
//! The thread that receives signals never touches a file or waits on a plugin: SIGHUP's work
//! (a reload, or reading the application file again) runs on a blocking thread ([`Hangups`]),
//! SIGUSR1's reopen on the log's writer thread. So SIGTERM always starts the shutdown at once,
//! and a second SIGTERM or SIGINT always exits.

use crate::admin::{Admin, Health};
use crate::app::{Declared, OnFailure};
use crate::instances::{self, lock, Ended, Instance, Maker, Running, State};
use crate::logging::LogSink;
use crate::process::privileges::{self, Identity};
use crate::process::systemd;
use crate::signals::{Received, Signals};
use crate::supervisor::worker::WorkerRole;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

mod reread;

/// How long SIGHUP's work may run before the log says that it is still running.
const HANGUP_PATIENCE: Duration = Duration::from_secs(3);

/// How long SIGHUP waits for the services' reloads before it goes on without those still
/// running: less than [`HANGUP_PATIENCE`], so that the log names the stuck service rather than
/// only the SIGHUP.
const RELOAD_PATIENCE: Duration = Duration::from_secs(2);

/// How long a plugin's `stop` may overrun `--shutdown-timeout` (it is given that as its own
/// deadline) before the host stops waiting for it.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long the log gets to write its last lines when the host exits at once.
const FLUSH_PATIENCE: Duration = Duration::from_secs(2);

/// How to run the services, from the global options.
pub struct Settings {
    /// Where to serve the admin endpoint, if anywhere.
    pub admin: Option<plugin_api::Endpoint>,
    pub shutdown_timeout: Duration,
    pub chroot: Option<PathBuf>,
    pub identity: Option<Identity>,
    pub log: LogSink,
    /// A second SIGINT/SIGTERM while stopping exits at once. Not in a worker: `kill` on every
    /// host process, or systemd's default KillMode, sends one to each worker beside the one
    /// its master forwards; the master alone decides when the drain is over.
    pub second_signal_exits: bool,
}

impl Settings {
    /// How long stopping may take, the plugins' own deadline and the grace beyond it.
    fn stop_patience(&self) -> Duration {
        self.shutdown_timeout + STOP_GRACE
    }
}

/// Why the main loop ended.
enum Ending {
    Signal(&'static str),
    /// A service with `on-failure = "stop-host"` ended: its name, and its error if it failed.
    Ended(String, Option<String>),
    /// Every service ended (each with `on-failure = "log"`); whether any failed.
    NothingLeft {
        failed: bool,
    },
}

/// What woke the main loop.
enum Event {
    Signal(Received),
    Ended(Ended),
    HangupProgress,
    /// A beat of the heartbeat `/healthz` watches (and systemd's watchdog was pinged).
    Tick,
}

/// Starts `instances` and runs them until SIGINT/SIGTERM or until one ends that takes the host
/// with it; `started` is called once every service is up. SIGHUP reloads the services, or, when
/// they were `declared` in an application file, reads it again and applies what changed.
///
/// `Err` carries the one-line reason the run failed: a service could not start (those already
/// started are stopped again), one failed while running, or they could not be stopped in time.
pub fn run(
    instances: Vec<Instance>,
    ended: UnboundedReceiver<Ended>,
    settings: Settings,
    maker: Maker,
    declared: Option<Declared>,
    worker: Option<WorkerRole>,
    started: impl FnOnce(),
) -> Result<(), String> {
    // A current-thread runtime only for signals: the services run on the plugins' runtimes.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the main loop: {e}"))?;
    // Inside the new root, neither the file nor the plugins' libraries can be found again.
    let declared = match (declared, &settings.chroot) {
        (Some(declared), Some(root)) => {
            warn!(
                "With --chroot {}, SIGHUP cannot read {} again: it only reloads the services; restart host to apply a changed file.",
                root.display(),
                declared.path.display()
            );
            None
        }
        (declared, _) => declared,
    };
    let settings = Arc::new(settings);
    let running = Running::new(instances);
    let health = Arc::new(Health::new(Some(running.clone())));
    // A worker tells its master when it is up, and answers its questions for /metrics.
    let (reported, reported_health) = (running.clone(), health.clone());
    let started = move || {
        if let Some(worker) = &worker {
            if let Err(e) = worker
                .answer_reports(reported, reported_health)
                .map_err(|e| e.to_string())
                .and_then(|()| worker.ready())
            {
                error!("cannot tell the master that the services are up: {e}");
            }
        }
        started();
    };
    let hangups = Hangups {
        work: Arc::new(HangupWork {
            running: running.clone(),
            maker,
            declared,
            stop_timeout: settings.shutdown_timeout,
        }),
        running: None,
        again: false,
    };
    let outcome = run_on(
        &runtime, running, hangups, ended, &settings, &health, started,
    );
    // Never wait here for a blocking thread that a plugin holds (a reload that never returns).
    runtime.shutdown_background();
    outcome
}

fn run_on(
    runtime: &tokio::runtime::Runtime,
    running: Running,
    mut hangups: Hangups,
    mut ended: UnboundedReceiver<Ended>,
    settings: &Arc<Settings>,
    health: &Arc<Health>,
    started: impl FnOnce(),
) -> Result<(), String> {
    let mut signals = runtime
        .block_on(async { Signals::new() })
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let (mut admin, interrupted) =
        match start_watching(runtime, &mut signals, &running, settings, health) {
            Ok(Started::Done(admin)) => (admin, None),
            Ok(Started::Interrupted(signal, start)) => (None, Some((signal, start))),
            Err(message) => {
                error!("{message}");
                return Err(message);
            }
        };
    let (early, start) = interrupted.unzip();
    if early.is_none() {
        health.set_ready();
        started();
        let count = running.list().len();
        tell_systemd(&format!(
            "STATUS=Serving {count} service{}",
            if count == 1 { "" } else { "s" }
        ));
    }

    let mut failed = false;
    let ending = runtime.block_on(async {
        if let Some(signal) = early {
            return Ending::Signal(signal);
        }
        let mut heartbeat = systemd::Heartbeat::new();
        loop {
            let event = tokio::select! {
                received = signals.next() => Event::Signal(received),
                Some(end) = ended.recv() => Event::Ended(end),
                () = hangups.progress() => Event::HangupProgress,
                () = heartbeat.next() => Event::Tick,
            };
            match event {
                Event::Signal(Received::Shutdown(signal)) => break Ending::Signal(signal),
                Event::Signal(Received::Hangup) => hangups.request(),
                Event::Signal(Received::Reopen) => settings.log.request_reopen(),
                Event::Signal(Received::Upgrade) => {
                    info!("Received SIGUSR2: upgrading in place needs --workers; ignored.")
                }
                Event::HangupProgress => {}
                Event::Tick => health.beat(),
                Event::Ended((id, outcome)) => {
                    let mut list = running.list();
                    // An instance already replaced or stopped: its end is no news.
                    let Some(index) = list.iter().position(|i| i.id == id) else {
                        continue;
                    };
                    let name = list[index].name().to_string();
                    if list[index].spec.on_failure == OnFailure::StopHost {
                        break Ending::Ended(name, outcome);
                    }
                    match &outcome {
                        Some(e) => error!("{name} failed: {e}; the other services go on (on-failure = \"log\")."),
                        None => info!("{name} ended by itself; the other services go on (on-failure = \"log\")."),
                    }
                    failed |= outcome.is_some();
                    let instance = list.remove(index);
                    match &outcome {
                        Some(e) => running.record_failure(&instance, e),
                        None => instance.set_state(State::Stopped),
                    }
                    // Whatever it still holds is released off this thread.
                    let deadline = settings.shutdown_timeout;
                    tokio::task::spawn_blocking(move || stop(&instance, deadline));
                    if list.is_empty() {
                        break Ending::NothingLeft { failed };
                    }
                }
            }
        }
    });
    // Not ready from this moment: load balancers stop sending while connections drain.
    health.set_stopping();
    tell_systemd("STOPPING=1\nSTATUS=Stopping");
    let failure = match ending {
        Ending::Signal(signal) => {
            info!("Received {signal}, shutting down.");
            None
        }
        Ending::Ended(name, None) => {
            info!("{name} ended by itself, shutting down.");
            None
        }
        Ending::Ended(name, Some(e)) => {
            error!("{name} failed: {e}");
            Some(format!("{name} failed: {e}"))
        }
        Ending::NothingLeft { failed } => {
            info!("No service is left running, shutting down.");
            failed.then(|| "every service ended, at least one with an error".to_string())
        }
    };

    let patience = settings.stop_patience();
    // Whatever is starting services (the first start, or SIGHUP's work) ends meanwhile: it
    // stops what it was starting itself.
    let busy = async {
        hangups.finish().await;
        match start {
            Some(start) => Some(start.await),
            None => None,
        }
    };
    let stopping = runtime.block_on(async {
        tokio::select! {
            stopped = tokio::time::timeout(patience, stop_everything(&running, settings.shutdown_timeout, busy)) => Ok(stopped),
            signal = signals.shutdown(), if settings.second_signal_exits => Err(signal),
        }
    });
    let failure = match stopping {
        Err(signal) => {
            warn!("Received {signal} again, exiting immediately.");
            exit_now(&settings.log)
        }
        Ok(Err(_)) => {
            let message = format!(
                "could not stop: {} after {patience:?}; exiting",
                still_running(&running, &hangups)
            );
            error!("{message}");
            return Err(message);
        }
        Ok(Ok(None)) => failure,
        Ok(Ok(Some(start))) => match start.unwrap_or_else(|_| Err(START_LOST.to_string())) {
            Ok(started) => {
                admin = started;
                failure
            }
            Err(message) => {
                error!("{message}");
                Some(message)
            }
        },
    };
    if let Some(admin) = admin {
        admin.stop();
    }
    info!("Main loop terminated.");
    info!("Server Shut Down.");
    failure.map_or(Ok(()), Err)
}

/// Stops every running service at once, whatever `busy` (a start or SIGHUP's work) is doing,
/// and waits for both; `busy`'s outcome is returned. The services stop in reverse order, the
/// last declared first, so a service that others depend on is stopped last; but one whose
/// reload has not returned stops after all the others, which it would hold up, since its stop
/// waits for that reload. They share `deadline`: each may take what the ones before it left.
async fn stop_everything<T>(
    running: &Running,
    deadline: Duration,
    busy: impl std::future::Future<Output = T>,
) -> T {
    // Each stays in the list, reported as stopping, until it has stopped.
    let (mut instances, stuck): (Vec<Instance>, Vec<Instance>) = running
        .begin_stop()
        .into_iter()
        .partition(|instance| !instance.is_reloading());
    instances.extend(stuck);
    let running = running.clone();
    let stopping = tokio::task::spawn_blocking(move || {
        let end = std::time::Instant::now() + deadline;
        for instance in &instances {
            stop(
                instance,
                end.saturating_duration_since(std::time::Instant::now()),
            );
            running.list().retain(|i| i.id != instance.id);
        }
    });
    let (_, outcome) = tokio::join!(stopping, busy);
    outcome
}

/// What kept the host from stopping in time, for its last line: "slow was still starting".
fn still_running(running: &Running, hangups: &Hangups) -> String {
    let list = running.list();
    // Services start one at a time, in order: the first not yet running is the one starting.
    let starting = list
        .iter()
        .find(|instance| instance.status().state == State::Starting);
    let reloading: Vec<&str> = list
        .iter()
        .filter(|instance| instance.is_reloading())
        .map(Instance::name)
        .collect();
    match (starting, reloading.as_slice()) {
        (Some(starting), _) => format!("{} was still starting", starting.name()),
        (None, []) if hangups.is_running() => {
            format!("{} was still running", hangups.work.what())
        }
        (None, []) => "the services were still stopping".to_string(),
        (None, names) => format!("a reload of {} was still running", names.join(", ")),
    }
}

/// Stops one service, giving in-flight work `deadline` (in whole milliseconds, rounded up, so
/// a service given what is left of a second is told a second).
fn stop(instance: &Instance, deadline: Duration) {
    if instance.is_reloading() {
        warn!(
            "{} has not returned from its reload; stopping it waits for that.",
            instance.name()
        );
    }
    let deadline_ms = u64::try_from(deadline.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
    if let Err(e) = instance.stop(deadline_ms) {
        warn!("{} did not stop cleanly: {e}", instance.name());
    }
    instance.release_claims();
    if instance.status().state != State::Failed {
        instance.set_state(State::Stopped);
    }
}

/// Tells systemd, if it is listening; a failure is logged and changes nothing.
fn tell_systemd(state: &str) {
    if let Err(e) = systemd::notify(state) {
        warn!("{e}");
    }
}

/// Exits with status 1 now, after giving the log a moment to write what it holds.
fn exit_now(log: &LogSink) -> ! {
    log.flush(FLUSH_PATIENCE);
    std::process::exit(1)
}

/// What the start thread ends with: the admin endpoint, or why the start failed.
type StartOutcome = Result<Option<Admin>, String>;

const START_LOST: &str = "the services' start ended without a word";

/// How the start went, as far as the signal loop waited for it.
enum Started {
    Done(Option<Admin>),
    /// A stop signal came first: the signal, and the start still running, which starts nothing
    /// more and stops what it was starting itself (see [`Running::begin_stop`]).
    Interrupted(&'static str, tokio::sync::oneshot::Receiver<StartOutcome>),
}

/// Starts the services ([`start_all`]) on a thread of their own while this one answers signals,
/// so that SIGINT or SIGTERM begins the shutdown at once, as it does later.
fn start_watching(
    runtime: &tokio::runtime::Runtime,
    signals: &mut Signals,
    running: &Running,
    settings: &Arc<Settings>,
    health: &Arc<Health>,
) -> Result<Started, String> {
    let (done, mut outcome) = tokio::sync::oneshot::channel();
    {
        let (running, settings, health) = (running.clone(), settings.clone(), health.clone());
        std::thread::Builder::new()
            .name("start".into())
            .spawn(move || {
                let _ = done.send(start_all(&running, &settings, &health));
            })
            .map_err(|e| format!("cannot start the services: {e}"))?;
    }
    runtime.block_on(async {
        let signal = tokio::select! {
            outcome = &mut outcome => {
                return outcome.unwrap_or_else(|_| Err(START_LOST.to_string())).map(Started::Done)
            }
            signal = signals.shutdown() => signal,
        };
        info!("Received {signal} while starting: the services not yet started will not start.");
        Ok(Started::Interrupted(signal, outcome))
    })
}

/// Binds every service (and the admin endpoint), then gives up privileges, then starts them in
/// order: so a service may listen on port 80 and still never serve a client as root. If any
/// step fails, what was started is stopped again, in reverse, and the error names the service.
/// Once the host begins to stop, the services not yet running are stopped and dropped from
/// `running`.
fn start_all(
    running: &Running,
    settings: &Settings,
    health: &Arc<Health>,
) -> Result<Option<Admin>, String> {
    let instances = running.list().clone();
    for (index, instance) in instances.iter().enumerate() {
        let bound = lock(&instance.service).privileged_start().into_result();
        if let Err(e) = bound {
            stop_now(&instances[..=index]);
            return Err(format!("{} failed to start: {e}", instance.name()));
        }
    }
    let admin = settings
        .admin
        .as_ref()
        .map(|endpoint| {
            let sources = crate::admin::local(running.clone(), health.clone());
            Admin::start(endpoint, health.clone(), sources)
        })
        .transpose()
        .and_then(|admin| give_up_privileges(settings).map(|()| admin));
    let admin = match admin {
        Ok(admin) => admin,
        Err(e) => {
            stop_now(&instances);
            return Err(e);
        }
    };
    for (index, instance) in instances.iter().enumerate() {
        let started = match running.is_stopping() {
            true => None,
            false => Some(lock(&instance.service).start().into_result()),
        };
        match started {
            Some(Ok(())) if running.mark_running(instance) => {}
            Some(Err(e)) => {
                stop_now(&instances[index..]);
                // Those already running (unless the host's stop has them already) drain as at
                // any stop, sharing the deadline: under a supervisor, a new generation that
                // fails to start is retired this way, and the clients it took keep theirs.
                let end = std::time::Instant::now() + settings.shutdown_timeout;
                for started in running.begin_stop() {
                    stop(
                        &started,
                        end.saturating_duration_since(std::time::Instant::now()),
                    );
                    info!("Stopped {}.", started.name());
                }
                if let Some(admin) = admin {
                    admin.stop();
                }
                return Err(format!("{} failed to start: {e}", instance.name()));
            }
            _ => {
                // The host began to stop. A service whose start had just returned is serving
                // already: it drains as the others do (stopping it at once cut a download in
                // flight); those after it never started.
                let unstarted = &instances[index..];
                match started {
                    Some(Ok(())) => {
                        stop_now(&unstarted[1..]);
                        stop(instance, settings.shutdown_timeout);
                        info!("Stopped {}.", instance.name());
                    }
                    _ => stop_now(unstarted),
                }
                running
                    .list()
                    .retain(|i| unstarted.iter().all(|u| u.id != i.id));
                break;
            }
        }
    }
    Ok(admin)
}

fn give_up_privileges(settings: &Settings) -> Result<(), String> {
    crate::supervisor::worker::done_binding()?;
    if let Some(dir) = &settings.chroot {
        privileges::chroot(dir)?;
        info!("Changed root to {}.", dir.display());
    }
    if let Some(identity) = &settings.identity {
        identity.assume()?;
        info!("Switched to {}.", identity.describe());
    }
    Ok(())
}

/// Stops `instances` at once, in reverse: releasing what a failed start left behind.
fn stop_now(instances: &[Instance]) {
    for instance in instances.iter().rev() {
        stop(instance, Duration::ZERO);
        info!("Stopped {}.", instance.name());
    }
}

/// What SIGHUP does, on a blocking thread.
struct HangupWork {
    running: Running,
    maker: Maker,
    declared: Option<Declared>,
    stop_timeout: Duration,
}

impl HangupWork {
    /// What the work is, for the log: "a reload of fastpoetry", "a re-read of app.toml".
    fn what(&self) -> String {
        match &self.declared {
            Some(declared) => format!("a re-read of {}", declared.path.display()),
            None => match self.running.list().as_slice() {
                [only] => format!("a reload of {}", only.name()),
                _ => "a reload of the services".to_string(),
            },
        }
    }

    fn run(&self) {
        match &self.declared {
            Some(declared) => {
                reread::apply(declared, &self.running, &self.maker, self.stop_timeout)
            }
            None => {
                // Bound first: the list stays locked as long as its guard lives.
                let instances: Vec<Instance> = self.running.list().clone();
                instances::reload(&instances, RELOAD_PATIENCE);
            }
        }
    }
}

/// SIGHUP's work, one at a time, each on a blocking thread so the signal loop never waits for
/// it. A SIGHUP while it runs is coalesced: the work runs once more after it.
struct Hangups {
    work: Arc<HangupWork>,
    running: Option<RunningHangup>,
    /// Whether a SIGHUP arrived while the work was running.
    again: bool,
}

struct RunningHangup {
    handle: JoinHandle<()>,
    /// When the log says the work is still running; `None` once it has said so.
    warn_at: Option<Instant>,
}

impl Hangups {
    fn request(&mut self) {
        if self.running.is_none() {
            self.spawn();
        } else if !std::mem::replace(&mut self.again, true) {
            info!(
                "Received SIGHUP during {}; it runs again once that one ends.",
                self.work.what()
            );
        }
    }

    fn spawn(&mut self) {
        let work = self.work.clone();
        self.running = Some(RunningHangup {
            handle: tokio::task::spawn_blocking(move || work.run()),
            warn_at: Some(Instant::now() + HANGUP_PATIENCE),
        });
    }

    /// Completes when the running work ends or has run too long; never when none runs.
    async fn progress(&mut self) {
        let Some(running) = &mut self.running else {
            return std::future::pending().await;
        };
        if let Some(warn_at) = running.warn_at {
            tokio::select! {
                _ = &mut running.handle => {}
                () = tokio::time::sleep_until(warn_at) => {
                    running.warn_at = None;
                    warn!("{} is still running after {HANGUP_PATIENCE:?}.", capitalized(&self.work.what()));
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

    /// Waits for the running work, if any, and runs no more.
    async fn finish(&mut self) {
        self.again = false;
        if let Some(running) = &mut self.running {
            let _ = (&mut running.handle).await;
            self.running = None;
        }
    }

    fn is_running(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|running| !running.handle.is_finished())
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
