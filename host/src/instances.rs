//! Turning declared services into service objects: load the plugin's library, believe what it
//! says about itself if that differs from its cache record, and call its `make_service` with a
//! host context of the service's own (its name in the log, its end reported by its id).

use crate::app::ServiceSpec;
use crate::plugin_host::{self, Shared};
use abi_stable::std_types::{RResult, RString};
use plugin_api::abi::{ServiceBox, ABOUT, METRICS, RELOAD};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::UnboundedSender;
use tracing::level_filters::LevelFilter;
use tracing::{error, info, warn};

/// How an instance ended without being asked to: its id, and `Some(error)` if it failed.
pub type Ended = (u64, Option<String>);

/// A service object, shared by the main loop and a thread reloading or stopping it.
pub type SharedService = Arc<Mutex<ServiceBox>>;

pub fn lock(service: &SharedService) -> MutexGuard<'_, ServiceBox> {
    service
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One made service: what was declared, and the object the plugin made of it.
#[derive(Clone)]
pub struct Instance {
    /// Unique in the process: a service restarted on SIGHUP is a new instance under the same
    /// name, and an end reported by the old one must not be taken for the new one's.
    pub id: u64,
    pub spec: ServiceSpec,
    pub service: SharedService,
    /// Where it is in its life: for the admin endpoint's `/services`.
    status: Arc<Mutex<Status>>,
    /// Whether a `reload/1` call has yet to return: until it does, it holds the service.
    reloading: Arc<AtomicBool>,
    /// What it claimed from the host (systemd sockets), released when it stops.
    shared: Shared,
    /// Each extension's last answer, for when the service is too busy to answer again: a stop
    /// holds it for as long as its connections drain.
    answers: Arc<Mutex<HashMap<String, String>>>,
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
}

/// A service's state, since when, and when it started serving.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub state: State,
    pub since: SystemTime,
    pub started: Option<SystemTime>,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

impl Instance {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn set_state(&self, state: State) {
        let now = SystemTime::now();
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.state = state;
        status.since = now;
        if state == State::Running {
            status.started.get_or_insert(now);
        }
    }

    pub fn status(&self) -> Status {
        *self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls extension `name` of the service without waiting long for it: a service busy with
    /// a reload or a stop (which hold it) gets its last answer after `patience`; one without
    /// the extension, `None`. For the admin endpoint, which must answer whatever the services
    /// are doing.
    pub fn ask(&self, name: &str, patience: Duration) -> Option<String> {
        let until = Instant::now() + patience;
        loop {
            if let Ok(mut service) = self.service.try_lock() {
                return self.call(&mut service, name);
            }
            if Instant::now() >= until {
                return self.answers().get(name).cloned();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the service, giving in-flight work `deadline_ms`. What the admin endpoint reports
    /// of it is asked first, so that while it drains it is reported as its drain began.
    pub fn stop(&self, deadline_ms: u64) -> Result<(), RString> {
        let mut service = lock(&self.service);
        for name in [ABOUT, METRICS] {
            self.call(&mut service, name);
        }
        service.stop(deadline_ms).into_result()
    }

    fn call(&self, service: &mut ServiceBox, name: &str) -> Option<String> {
        let answer = service
            .call_extension(name.into(), "".into())
            .into_option()
            .and_then(|reply| reply.into_result().ok())
            .map(|reply| reply.into_string());
        match &answer {
            Some(answer) => self.answers().insert(name.to_string(), answer.clone()),
            None => self.answers().remove(name),
        };
        answer
    }

    fn answers(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether its last `reload/1` call has yet to return.
    pub fn is_reloading(&self) -> bool {
        self.reloading.load(Ordering::SeqCst)
    }

    /// Lets a successor claim what this instance claimed from the host: once it has stopped.
    pub fn release_claims(&self) {
        self.shared.release(self.id);
    }

    /// The `reload/1` extension, if the service offers it.
    fn reload(&self) {
        let name = self.name();
        match lock(&self.service)
            .call_extension(RELOAD.into(), "".into())
            .into_option()
            .map(RResult::into_result)
        {
            Some(Ok(_)) => info!("Received SIGHUP, reloaded {name}."),
            Some(Err(e)) => error!("Received SIGHUP, but {name} could not reload: {e}"),
            None => info!("Received SIGHUP, ignored ({name} cannot reload)."),
        }
    }
}

/// SIGHUP for services that were not restarted: each gets `reload/1` on a thread of its own,
/// and they are waited for `patience` in all. A reload still running then is named and left
/// to finish alone: it holds its service, which is not reloaded again (nor stopped by a
/// re-read) until it returns, but the other services and later SIGHUPs no longer wait for it.
pub fn reload(instances: &[Instance], patience: Duration) {
    let until = Instant::now() + patience;
    let mut waiting = Vec::new();
    for instance in instances {
        if instance.reloading.swap(true, Ordering::SeqCst) {
            warn!(
                "Received SIGHUP, but the last reload of {} has not returned; not reloaded again.",
                instance.name()
            );
            continue;
        }
        let (done, finished) = mpsc::channel();
        let reloaded = instance.clone();
        let spawned = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                reloaded.reload();
                reloaded.reloading.store(false, Ordering::SeqCst);
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => waiting.push((instance, finished)),
            Err(e) => {
                instance.reloading.store(false, Ordering::SeqCst);
                error!(
                    "Received SIGHUP, but cannot reload {}: {e}",
                    instance.name()
                );
            }
        }
    }
    for (instance, finished) in waiting {
        if finished
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .is_err()
        {
            warn!(
                "A reload of {} is still running after {patience:?}; SIGHUP goes on without it.",
                instance.name()
            );
        }
    }
}

/// Makes instances; every instance's host context reports its end on one channel and shares
/// the process's claims (systemd sockets).
pub struct Maker {
    max_level: LevelFilter,
    ended: UnboundedSender<Ended>,
    shared: Shared,
    next_id: AtomicU64,
}

impl Maker {
    pub fn new(max_level: LevelFilter, ended: UnboundedSender<Ended>) -> Self {
        Self {
            max_level,
            ended,
            shared: Shared::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Loads `spec`'s library and calls its `make_service`; the error is one line naming the
    /// service.
    pub fn make(&self, mut spec: ServiceSpec) -> Result<Instance, String> {
        let name = spec.name.clone();
        let loaded = spec
            .plugin()
            .load()
            .map_err(|e| format!("{name}: {}: {e}", spec.path.display()))?;
        if let Some(changed) = loaded.changed {
            let cache = match &changed.refreshed {
                Ok(place) => format!("its entry in {} was refreshed", place.display()),
                Err(why) => format!("its cache entry could not be refreshed: {why}"),
            };
            warn!(
                "the library {} changed without its file times changing; using what it says now ({cache})",
                spec.path.display()
            );
            spec.record = changed.record;
            let specs = spec.plugin().options()?;
            spec.values = spec
                .values_under(spec.plugin(), &specs)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let context =
            plugin_host::context(&name, id, self.max_level, self.ended.clone(), &self.shared);
        let service = (loaded.maker.make_service())(spec.values.clone().into(), context)
            .into_result()
            .map_err(|e| format!("{name}: {e}"))?;
        Ok(Instance {
            id,
            spec,
            service: Arc::new(Mutex::new(service)),
            status: Arc::new(Mutex::new(Status {
                state: State::Starting,
                since: SystemTime::now(),
                started: None,
            })),
            reloading: Arc::default(),
            shared: self.shared.clone(),
            answers: Arc::default(),
        })
    }
}

/// The running services, in declaration order; shared by the main loop, SIGHUP's thread and
/// the admin endpoint. Beside them, those that failed while running (`on-failure = "log"`):
/// still reported, and what makes the host unhealthy, until the application file is read again.
#[derive(Clone, Default)]
pub struct Running {
    live: Arc<Mutex<Vec<Instance>>>,
    failed: Arc<Mutex<Vec<(Instance, String)>>>,
    /// Set under the list's lock by [`Running::begin_stop`]: from then on no service starts.
    stopping: Arc<AtomicBool>,
}

impl Running {
    pub fn new(instances: Vec<Instance>) -> Self {
        Self {
            live: Arc::new(Mutex::new(instances)),
            failed: Arc::default(),
            stopping: Arc::default(),
        }
    }

    /// The host begins to stop: no service starts from now on, whoever is starting it (the
    /// first start or SIGHUP's work), and the running ones are handed over to be stopped, the
    /// last declared first, each marked stopping. A service is handed over once: so the one
    /// stopping everything and a failed start never stop the same service twice.
    pub fn begin_stop(&self) -> Vec<Instance> {
        let list = self.list();
        self.stopping.store(true, Ordering::SeqCst);
        let taken: Vec<Instance> = list
            .iter()
            .rev()
            .filter(|instance| instance.status().state == State::Running)
            .cloned()
            .collect();
        for instance in &taken {
            instance.set_state(State::Stopping);
        }
        taken
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Marks `instance`, just started, as running; `false` if the host began to stop
    /// meanwhile: then no one else stops it, its starter must.
    pub fn mark_running(&self, instance: &Instance) -> bool {
        let _list = self.list();
        if self.is_stopping() {
            return false;
        }
        instance.set_state(State::Running);
        true
    }

    pub fn list(&self) -> MutexGuard<'_, Vec<Instance>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn failed(&self) -> MutexGuard<'_, Vec<(Instance, String)>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every service to report: those in the list (running, or stopping at shutdown), then
    /// the failed ones.
    pub fn reported(&self) -> Vec<Instance> {
        let mut all = self.list().clone();
        all.extend(self.failed().iter().map(|(instance, _)| instance.clone()));
        all
    }

    /// `instance`, out of the list now, failed with `error`.
    pub fn record_failure(&self, instance: &Instance, error: &str) {
        instance.set_state(State::Failed);
        self.failed().push((instance.clone(), error.to_string()));
    }

    /// Why the host is unhealthy: a line for each failed service.
    pub fn failures(&self) -> Vec<String> {
        self.failed()
            .iter()
            .map(|(instance, error)| format!("service {} failed: {error}", instance.name()))
            .collect()
    }

    /// After the application file was read again and applied: a failed service that runs
    /// again, or that the file no longer declares, is no longer the host's failure.
    pub fn forget_failures(&self, declared: impl Fn(&str) -> bool) {
        let live: Vec<String> = self.list().iter().map(|i| i.name().to_string()).collect();
        self.failed().retain(|(instance, _)| {
            declared(instance.name()) && !live.iter().any(|name| name == instance.name())
        });
    }
}
