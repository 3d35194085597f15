//! The master: starts the workers, keeps the generation that serves, replaces a worker that
//! dies, starts a new generation on SIGUSR2 (and on SIGHUP with an application file) and lets
//! the old one go only once the new one is ready, and on SIGINT/SIGTERM drains them all.

use super::fleet::{Event, Fleet, Worker};
use super::sockets::Sockets;
use crate::admin::{Admin, Health, Sources};
use crate::app::Declared;
use crate::application::Settings;
use crate::process::systemd;
use crate::signals::{Received, Signals};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{error, info, warn};

/// How long a new generation has to be ready before the upgrade is called off.
const UPGRADE_PATIENCE: Duration = Duration::from_secs(30);

/// A worker that ends sooner than this after it started has crashed straight away: the next
/// one waits longer before starting.
const QUICK_CRASH: Duration = Duration::from_secs(10);

/// The longest wait before replacing a worker that keeps crashing.
const LONGEST_BACKOFF: Duration = Duration::from_secs(30);

/// How long workers may overrun `--shutdown-timeout` before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A new generation being started.
struct Upgrade {
    generation: u32,
    /// Its workers that are not ready yet.
    waiting: BTreeSet<u32>,
    deadline: Instant,
    reason: &'static str,
}

struct Master {
    wanted: u32,
    fleet: Fleet,
    events: UnboundedReceiver<Event>,
    workers: BTreeMap<u32, Worker>,
    /// The generation that serves.
    generation: u32,
    /// The last generation started; a failed upgrade's number is not used again, so that
    /// its workers' last events can never be taken for a later generation's.
    newest: u32,
    upgrade: Option<Upgrade>,
    next_id: u32,
    /// Crashes in a row of workers that did not last [`QUICK_CRASH`].
    crashes: u32,
    /// When to start replacements for crashed workers.
    respawns: Vec<Instant>,
    health: Arc<Health>,
    declared: Option<Arc<Declared>>,
    settings: Settings,
}

/// Runs the services in `workers` worker processes until SIGINT/SIGTERM; `started` is called
/// once the first generation is ready.
pub fn run(
    workers: u32,
    declared: Option<Declared>,
    settings: Settings,
    exe: &Path,
    started: impl FnOnce(),
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the main loop: {e}"))?;
    // The path, not /proc/self/exe: a host installed over this one (by rename) is what the
    // next generation runs.
    let exe = exe.to_path_buf();
    let outcome = runtime.block_on(async {
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let fleet = Fleet::new(
            exe,
            std::env::args_os().skip(1).collect(),
            crate::started_in(),
            Sockets::default(),
            settings.log.clone(),
            events_tx,
        );
        let mut master = Master {
            wanted: workers,
            fleet,
            events,
            workers: BTreeMap::new(),
            generation: 1,
            newest: 1,
            upgrade: None,
            next_id: 1,
            crashes: 0,
            respawns: Vec::new(),
            health: Arc::new(Health::default()),
            declared: declared.map(Arc::new),
            settings,
        };
        master.run(started).await
    });
    runtime.shutdown_background();
    outcome
}

impl Master {
    async fn run(&mut self, started: impl FnOnce()) -> Result<(), String> {
        let mut signals =
            Signals::new().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let admin = match &self.settings.admin {
            Some(endpoint) => {
                let reporter = self.fleet.reporter();
                let sources: Sources = Arc::new(move || reporter.reports());
                Some(Admin::start(endpoint, self.health.clone(), sources)?)
            }
            None => None,
        };
        let first = self.start_generation(1);
        let outcome = match first {
            Ok(()) => self.wait_for_first_generation(&mut signals).await,
            Err(e) => Err(e),
        };
        if let Err(message) = outcome {
            error!("{message}");
            // Whatever the workers that did start do on the way out, the start failed.
            let _ = self.stop_all(&mut signals).await;
            self.fleet.sockets.close_all();
            if let Some(admin) = admin {
                admin.stop();
            }
            return Err(message);
        }
        self.health.set_ready();
        started();
        self.tell_status();
        let watchdog = systemd::watchdog_interval();
        let mut last_ping = Instant::now();
        let mut ticks = tokio::time::interval(
            watchdog.map_or(Duration::from_secs(1), |w| w.min(Duration::from_secs(1))),
        );
        let mut hangups: Option<tokio::task::JoinHandle<Result<(), Vec<String>>>> = None;
        let ending = loop {
            tokio::select! {
                received = signals.next() => match received {
                    Received::Shutdown(name) => break name,
                    Received::Upgrade => self.upgrade("SIGUSR2"),
                    Received::Reopen => self.settings.log.request_reopen(),
                    Received::Hangup => match &self.declared {
                        // The file is checked here first: a broken one changes nothing.
                        Some(declared) if hangups.is_none() => {
                            let declared = declared.clone();
                            hangups = Some(tokio::task::spawn_blocking(move || declared.reread().map(drop)));
                        }
                        Some(_) => info!("Received SIGHUP while the last one is still being checked; ignored."),
                        None => {
                            info!("Received SIGHUP; the workers reload their services.");
                            for worker in self.workers.values() {
                                worker.signal(Signal::SIGHUP);
                            }
                        }
                    },
                },
                Some(event) = self.events.recv() => self.on_event(event),
                Ok(checked) = async { hangups.as_mut().expect("checked by the guard").await }, if hangups.is_some() => {
                    hangups = None;
                    let file = self.declared.as_ref().map(|d| d.path.display().to_string()).unwrap_or_default();
                    match checked {
                        Ok(()) => self.upgrade("SIGHUP"),
                        Err(problems) => {
                            for problem in &problems {
                                error!("{problem}");
                            }
                            error!("Received SIGHUP, but {file} has {} problem{}; nothing changed.", problems.len(), if problems.len() == 1 { "" } else { "s" });
                        }
                    }
                }
                _ = ticks.tick() => {
                    self.health.beat();
                    self.on_tick();
                    if watchdog.is_some_and(|every| last_ping.elapsed() >= every) {
                        last_ping = Instant::now();
                        let _ = systemd::notify("WATCHDOG=1");
                    }
                }
            }
        };
        self.health.set_stopping();
        if let Err(e) = systemd::notify("STOPPING=1\nSTATUS=Stopping") {
            warn!("{e}");
        }
        info!("Received {ending}, shutting down: the workers drain their connections.");
        let stopped = self.stop_all(&mut signals).await;
        self.fleet.sockets.close_all();
        if let Some(admin) = admin {
            admin.stop();
        }
        info!("Main loop terminated.");
        info!("Server Shut Down.");
        stopped
    }

    /// Starts the workers of `generation`.
    fn start_generation(&mut self, generation: u32) -> Result<(), String> {
        for _ in 0..self.wanted {
            self.spawn(generation)?;
        }
        Ok(())
    }

    fn spawn(&mut self, generation: u32) -> Result<u32, String> {
        let id = self.next_id;
        self.next_id += 1;
        let worker = self
            .fleet
            .spawn(id, generation)
            .map_err(|e| format!("cannot start worker {id}: {e}"))?;
        info!(
            "Started worker {id} (pid {}, generation {generation}).",
            worker.pid
        );
        self.workers.insert(id, worker);
        Ok(id)
    }

    /// Waits until every worker of the first generation is ready, or one of them has failed.
    async fn wait_for_first_generation(&mut self, signals: &mut Signals) -> Result<(), String> {
        loop {
            if self.workers.values().all(|w| w.ready) {
                info!("All {} workers are ready.", self.wanted);
                return Ok(());
            }
            tokio::select! {
                Some(event) = self.events.recv() => match event {
                    Event::Ready { id } => {
                        if let Some(worker) = self.workers.get_mut(&id) {
                            worker.ready = true;
                        }
                    }
                    Event::Exited { id, how, last_words } => {
                        self.workers.remove(&id);
                        return Err(format!("worker {id} {how} while starting{}", because(&last_words)));
                    }
                },
                received = signals.next() => if let Received::Shutdown(name) = received {
                    return Err(format!("Received {name} while starting"));
                },
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Ready { id } => {
                let Some(worker) = self.workers.get_mut(&id) else {
                    return;
                };
                worker.ready = true;
                let generation = worker.generation;
                if let Some(upgrade) = self.upgrade.as_mut().filter(|u| u.generation == generation)
                {
                    upgrade.waiting.remove(&id);
                    if upgrade.waiting.is_empty() {
                        self.finish_upgrade();
                    }
                } else if generation == self.generation {
                    info!("Worker {id} is ready.");
                    self.crashes = 0;
                    self.health.set_problem(None);
                }
            }
            Event::Exited {
                id,
                how,
                last_words,
            } => {
                let Some(worker) = self.workers.remove(&id) else {
                    return;
                };
                if worker.retiring {
                    info!(
                        "Worker {id} (generation {}) has stopped.",
                        worker.generation
                    );
                    return;
                }
                if let Some(upgrade) = self
                    .upgrade
                    .as_ref()
                    .filter(|u| u.generation == worker.generation)
                {
                    let message = format!(
                        "worker {id} {how} before it was ready{}",
                        because(&last_words)
                    );
                    let reason = upgrade.reason;
                    self.call_off_upgrade(&format!("the upgrade ({reason}) failed: {message}"));
                    return;
                }
                if worker.generation != self.generation {
                    return;
                }
                error!(
                    "Worker {id} (pid {}) {how}{}; starting another.",
                    worker.pid,
                    because(&last_words)
                );
                self.crashes = match worker.spawned.elapsed() < QUICK_CRASH {
                    true => self.crashes + 1,
                    false => 0,
                };
                let wait = match self.crashes {
                    0 | 1 => Duration::ZERO,
                    n => (Duration::from_millis(500) * 2u32.saturating_pow(n - 2))
                        .min(LONGEST_BACKOFF),
                };
                if self.crashes >= 3 {
                    let problem = format!(
                        "workers keep failing ({} times in a row); the next starts in {:.1} s",
                        self.crashes,
                        wait.as_secs_f64()
                    );
                    warn!("{problem}");
                    self.health.set_problem(Some(problem));
                }
                self.respawns.push(Instant::now() + wait);
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let due = self.respawns.iter().filter(|at| **at <= now).count();
        self.respawns.retain(|at| *at > now);
        for _ in 0..due {
            if let Err(e) = self.spawn(self.generation) {
                error!("{e}");
                self.respawns.push(now + LONGEST_BACKOFF);
            }
        }
        if let Some(upgrade) = self.upgrade.as_ref().filter(|u| u.deadline <= now) {
            let message = format!(
                "the upgrade ({}) failed: generation {} was not ready within {UPGRADE_PATIENCE:?}",
                upgrade.reason, upgrade.generation
            );
            self.call_off_upgrade(&message);
        }
    }

    /// Starts a new generation from the executable and libraries on disk now; the current one
    /// serves until every new worker is ready.
    fn upgrade(&mut self, reason: &'static str) {
        if let Some(upgrade) = &self.upgrade {
            info!(
                "Received {reason} while generation {} is starting; ignored.",
                upgrade.generation
            );
            return;
        }
        self.newest += 1;
        let generation = self.newest;
        info!(
            "Received {reason}: starting generation {generation} ({} workers).",
            self.wanted
        );
        let _ = systemd::notify(&format!("STATUS=Starting generation {generation}"));
        let mut waiting = BTreeSet::new();
        for _ in 0..self.wanted {
            match self.spawn(generation) {
                Ok(id) => {
                    waiting.insert(id);
                }
                Err(e) => {
                    self.upgrade = Some(Upgrade {
                        generation,
                        waiting,
                        deadline: Instant::now(),
                        reason,
                    });
                    self.call_off_upgrade(&format!("the upgrade ({reason}) failed: {e}"));
                    return;
                }
            }
        }
        self.upgrade = Some(Upgrade {
            generation,
            waiting,
            deadline: Instant::now() + UPGRADE_PATIENCE,
            reason,
        });
    }

    /// The new generation is ready: it serves, and the old one drains and stops.
    fn finish_upgrade(&mut self) {
        let Some(upgrade) = self.upgrade.take() else {
            return;
        };
        let old = self.generation;
        self.generation = upgrade.generation;
        for worker in self
            .workers
            .values_mut()
            .filter(|w| w.generation < upgrade.generation)
        {
            worker.retiring = true;
            worker.signal(Signal::SIGTERM);
        }
        self.respawns.clear();
        self.crashes = 0;
        self.health.set_problem(None);
        self.fleet.sockets.keep_only(self.generation);
        info!(
            "Generation {} is ready and serving ({}); generation {old} drains and stops.",
            self.generation, upgrade.reason
        );
        self.tell_status();
    }

    /// The new generation did not make it: its workers go, the current one goes on.
    fn call_off_upgrade(&mut self, message: &str) {
        let Some(upgrade) = self.upgrade.take() else {
            return;
        };
        for worker in self
            .workers
            .values_mut()
            .filter(|w| w.generation == upgrade.generation)
        {
            worker.retiring = true;
            worker.signal(Signal::SIGKILL);
        }
        error!("{message}; generation {} goes on serving.", self.generation);
        self.tell_status();
    }

    fn tell_status(&self) {
        let serving = self
            .workers
            .values()
            .filter(|w| w.generation == self.generation && !w.retiring)
            .count();
        let _ = systemd::notify(&format!(
            "STATUS=Serving with {serving} worker{} (generation {})",
            if serving == 1 { "" } else { "s" },
            self.generation
        ));
    }

    /// Asks every worker to stop, and waits for them: `--shutdown-timeout`, then a little
    /// grace, then they are killed. A second signal kills them at once.
    async fn stop_all(&mut self, signals: &mut Signals) -> Result<(), String> {
        for worker in self.workers.values_mut() {
            worker.retiring = true;
            worker.signal(Signal::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + self.settings.shutdown_timeout + STOP_GRACE;
        while !self.workers.is_empty() {
            tokio::select! {
                Some(event) = self.events.recv() => {
                    if let Event::Exited { id, how, .. } = event {
                        if let Some(worker) = self.workers.remove(&id) {
                            info!("Worker {id} (generation {}) {how}.", worker.generation);
                        }
                    }
                }
                received = signals.next() => if let Received::Shutdown(name) = received {
                    warn!("Received {name} again, killing the workers.");
                    self.kill_all();
                    return Err(format!("Received {name} again; the workers were killed"));
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let left = self.workers.len();
                    self.kill_all();
                    let message = format!("{left} worker{} did not stop within the shutdown timeout and {STOP_GRACE:?}; killed", if left == 1 { "" } else { "s" });
                    error!("{message}");
                    return Err(message);
                }
            }
        }
        Ok(())
    }

    fn kill_all(&mut self) {
        for worker in self.workers.values() {
            worker.signal(Signal::SIGKILL);
        }
        self.workers.clear();
    }
}

fn because(last_words: &Option<String>) -> String {
    match last_words.as_deref() {
        Some(words) if !words.is_empty() => format!(": {words}"),
        _ => String::new(),
    }
}
