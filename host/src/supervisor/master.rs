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
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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

/// A new generation asked for while another is starting or the file is being checked; it runs
/// once that is over. A re-read starts a generation from what is on disk then, so it covers an
/// upgrade too.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Wanted {
    Upgrade,
    Reread,
}

impl Wanted {
    fn signal(self) -> &'static str {
        match self {
            Wanted::Upgrade => "SIGUSR2",
            Wanted::Reread => "SIGHUP",
        }
    }
}

/// The check of the application file that a SIGHUP starts: the `workers` it sets, or its problems.
type Check = tokio::task::JoinHandle<Result<Option<u32>, Vec<String>>>;

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
    queued: Option<Wanted>,
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
/// once the first generation is ready. Workers run the path host was started as, or `exe` when
/// that cannot be told.
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
    let exe = started_as().unwrap_or_else(|| exe.to_path_buf());
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
            queued: None,
            next_id: 1,
            crashes: 0,
            respawns: Vec::new(),
            health: Arc::new(Health::new(None)),
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
        let mut heartbeat = systemd::Heartbeat::new();
        let mut hangups: Option<Check> = None;
        let ending = loop {
            tokio::select! {
                received = signals.next() => match received {
                    Received::Shutdown(name) => break name,
                    Received::Upgrade => self.want(Wanted::Upgrade, &mut hangups),
                    Received::Reopen => self.settings.log.request_reopen(),
                    Received::Hangup => match &self.declared {
                        Some(_) => self.want(Wanted::Reread, &mut hangups),
                        None => {
                            info!("Received SIGHUP; the workers reload their services.");
                            for worker in self.workers.values_mut() {
                                match worker.ready {
                                    true => worker.signal(Signal::SIGHUP),
                                    false => worker.hangup_pending = true,
                                }
                            }
                        }
                    },
                },
                Some(event) = self.events.recv() => self.on_event(event),
                Ok(checked) = async { hangups.as_mut().expect("checked by the guard").await }, if hangups.is_some() => {
                    hangups = None;
                    let file = self.declared.as_ref().map(|d| d.path.display().to_string()).unwrap_or_default();
                    match checked {
                        Ok(workers) => {
                            if let Some(workers) = workers.filter(|n| *n != self.wanted) {
                                warn!("Received SIGHUP: {file} sets workers = {workers}, which applies when host is started again; {} workers go on.", self.wanted);
                            }
                            self.upgrade("SIGHUP");
                        }
                        Err(problems) => {
                            for problem in &problems {
                                error!("{problem}");
                            }
                            error!("Received SIGHUP, but {file} has {} problem{}; nothing changed.", problems.len(), if problems.len() == 1 { "" } else { "s" });
                        }
                    }
                }
                () = heartbeat.next() => {
                    self.health.beat();
                    self.on_tick();
                }
            }
            self.health.set_serving(self.serving() > 0);
            if self.upgrade.is_none() && hangups.is_none() {
                if let Some(wanted) = self.queued.take() {
                    info!("Running the queued {}.", wanted.signal());
                    self.want(wanted, &mut hangups);
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
        let worker = self.fleet.spawn(id, generation).map_err(|e| {
            format!(
                "cannot start worker {id} ({}): {e}",
                self.fleet.exe.display()
            )
        })?;
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
                if std::mem::take(&mut worker.hangup_pending) {
                    worker.signal(Signal::SIGHUP);
                }
                let generation = worker.generation;
                if let Some(upgrade) = self.upgrade.as_mut().filter(|u| u.generation == generation)
                {
                    upgrade.waiting.remove(&id);
                    if upgrade.waiting.is_empty() {
                        self.finish_upgrade();
                    }
                } else if generation == self.generation {
                    info!("Worker {id} is ready.");
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
        for (id, worker) in &mut self.workers {
            if worker.kill_at.is_some_and(|at| at <= now) {
                worker.kill_at = None;
                worker.signal(Signal::SIGKILL);
                error!(
                    "Worker {id} (pid {}, generation {}) did not stop within the shutdown timeout and {STOP_GRACE:?}; killed.",
                    worker.pid, worker.generation
                );
            }
        }
        // Readiness alone proves little: a worker that dies seconds after it is ready still
        // crashed straight away. The loop is over once the serving workers have outlived that.
        let settled = self
            .workers
            .values()
            .filter(|w| w.generation == self.generation && !w.retiring)
            .all(|w| w.ready && w.spawned.elapsed() >= QUICK_CRASH);
        if self.crashes > 0 && self.respawns.is_empty() && settled {
            self.crashes = 0;
            self.health.set_problem(None);
        }
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

    /// Starts what `wanted` asks for, or queues it while a generation is starting or the file
    /// is being `checking`: a signal that comes meanwhile is never lost.
    fn want(&mut self, wanted: Wanted, checking: &mut Option<Check>) {
        let busy = match (&self.upgrade, checking.is_some()) {
            (Some(upgrade), _) => format!("generation {} is starting", upgrade.generation),
            (None, true) => "the last SIGHUP is still being checked".to_string(),
            (None, false) => match wanted {
                Wanted::Upgrade => return self.upgrade("SIGUSR2"),
                Wanted::Reread => {
                    let Some(declared) = self.declared.clone() else {
                        return;
                    };
                    // The file is checked here first: a broken one changes nothing.
                    *checking = Some(tokio::task::spawn_blocking(move || {
                        declared.reread()?;
                        Ok(workers_declared(&declared.path))
                    }));
                    return;
                }
            },
        };
        info!(
            "Received {} while {busy}; queued: it runs once that is over.",
            wanted.signal()
        );
        self.queued = self.queued.max(Some(wanted));
    }

    /// Starts a new generation from the executable and libraries on disk now; the current one
    /// serves until every new worker is ready. Only one starts at a time (see [`Self::want`]).
    fn upgrade(&mut self, reason: &'static str) {
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
        self.retire(|w| w.generation < upgrade.generation);
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

    /// The new generation did not make it: its workers go, the current one goes on. They may
    /// have accepted connections already (they share the sockets), so they drain like an old
    /// generation rather than being killed.
    fn call_off_upgrade(&mut self, message: &str) {
        let Some(upgrade) = self.upgrade.take() else {
            return;
        };
        self.retire(|w| w.generation == upgrade.generation);
        error!("{message}; generation {} goes on serving.", self.generation);
        self.tell_status();
    }

    /// Asks the `chosen` workers to drain and stop, each killed if it has not within
    /// `--shutdown-timeout` and [`STOP_GRACE`] of this first request: a worker already retiring
    /// keeps its deadline.
    fn retire(&mut self, chosen: impl Fn(&Worker) -> bool) {
        let kill_at = Instant::now() + self.settings.shutdown_timeout + STOP_GRACE;
        for worker in self
            .workers
            .values_mut()
            .filter(|w| !w.retiring && chosen(w))
        {
            worker.retiring = true;
            worker.kill_at = Some(kill_at);
            worker.signal(Signal::SIGTERM);
        }
    }

    /// How many workers of the serving generation are ready and not retiring.
    fn serving(&self) -> usize {
        self.workers
            .values()
            .filter(|w| w.generation == self.generation && !w.retiring && w.ready)
            .count()
    }

    fn tell_status(&self) {
        let serving = self.serving();
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

/// The `workers` an application file's `[host]` table sets, if any.
fn workers_declared(path: &Path) -> Option<u32> {
    let (_, settings, _) = crate::app::read(path).ok()?;
    settings?.get_one::<u32>("workers").copied()
}

/// The path host was started as, as the shell found it: `argv[0]` made absolute against the
/// directory it was started in, or looked up on `PATH`. Not `current_exe()`, which resolves
/// symlinks: with `current -> v1` switched to `v2`, the next generation runs `v2`, and a host
/// installed over this one (by rename) is what it runs. `None` when it cannot be told.
fn started_as() -> Option<PathBuf> {
    let name = PathBuf::from(std::env::args_os().next()?);
    if name.as_os_str().is_empty() {
        return None;
    }
    let started_in = crate::started_in();
    if name.as_os_str().as_bytes().contains(&b'/') {
        return Some(started_in.join(name));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| started_in.join(dir).join(&name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn because(last_words: &Option<String>) -> String {
    match last_words.as_deref() {
        Some(words) if !words.is_empty() => format!(": {words}"),
        _ => String::new(),
    }
}
