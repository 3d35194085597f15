//! What `/healthz` and `/readyz` answer: whether the main loop is alive and no service has
//! failed, and whether every service has started (with workers: one of them is ready) and no
//! shutdown has begun.

use crate::instances::Running;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// How long the main loop may go without a heartbeat before `/healthz` calls it stalled: it
/// beats every second, so this is several missed beats, not one slow one.
const STALLED_AFTER: Duration = Duration::from_secs(5);

/// The host's state as the admin endpoint reports it, updated by the main loop.
pub struct Health {
    /// When the process started, for `process_start_time_seconds`.
    pub started_at: SystemTime,
    origin: Instant,
    /// Milliseconds after `origin` of the main loop's last heartbeat.
    heartbeat_ms: AtomicU64,
    ready: AtomicBool,
    /// Some process takes connections; false only in a master while none of its workers is ready.
    serving: AtomicBool,
    stopping: AtomicBool,
    /// This process's services, whose failures make it unhealthy; none in a master, whose
    /// services run in its workers.
    services: Option<Running>,
    /// A condition that makes the host unhealthy while it lasts (workers that keep crashing).
    problem: Mutex<Option<String>>,
}

impl Health {
    pub fn new(services: Option<Running>) -> Self {
        Self {
            started_at: SystemTime::now(),
            origin: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            serving: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            services,
            problem: Mutex::default(),
        }
    }

    /// The main loop is alive.
    pub fn beat(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(now, Ordering::Relaxed);
    }

    /// Every service has started.
    pub fn set_ready(&self) {
        self.beat();
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Whether any worker is ready to serve (a master's workers may all be crashed or starting).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }

    /// Shutdown has begun: not ready any more, whatever else holds.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Sets or clears a passing problem.
    pub fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }

    /// `Ok` while the main loop beats and no service has failed; otherwise why not, in a line.
    pub fn healthy(&self) -> Result<(), String> {
        let now = self.origin.elapsed().as_millis() as u64;
        let since =
            Duration::from_millis(now.saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed)));
        // Once shutdown begins, the loop waits for the drain, whose deadline ends it anyway.
        let beating = self.ready.load(Ordering::Relaxed) && !self.stopping.load(Ordering::Relaxed);
        if beating && since > STALLED_AFTER {
            return Err(format!(
                "the main loop has not run for {:.1} s",
                since.as_secs_f64()
            ));
        }
        if let Some(problem) = &*self.problem.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(problem.clone());
        }
        let failures = self.services.as_ref().map(Running::failures);
        match failures.unwrap_or_default().as_slice() {
            [] => Ok(()),
            failures => Err(failures.join("; ")),
        }
    }

    /// `Ok` once every service has started and until shutdown begins; otherwise why not.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err("shutting down");
        }
        if !self.ready.load(Ordering::Relaxed) {
            return Err("starting");
        }
        match self.serving.load(Ordering::Relaxed) {
            true => Ok(()),
            false => Err("no worker is ready"),
        }
    }
}
