//! Turning declared services into service objects: load the plugin's library, believe what it
//! says about itself if that differs from its cache record, and call its `make_service` with a
//! host context of the service's own (its name in the log, its end reported by its id).

use crate::app::ServiceSpec;
use crate::plugin_host::{self, Shared};
use abi_stable::std_types::RResult;
use plugin_api::abi::{ServiceBox, RELOAD};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// a reload or a stop (which hold it) gets `None` after `patience`, as does one without the
    /// extension. For the admin endpoint, which must answer whatever the services are doing.
    pub fn ask(&self, name: &str, patience: Duration) -> Option<String> {
        let until = Instant::now() + patience;
        loop {
            if let Ok(mut service) = self.service.try_lock() {
                return service
                    .call_extension(name.into(), "".into())
                    .into_option()
                    .and_then(|reply| reply.into_result().ok())
                    .map(|reply| reply.into_string());
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGHUP for a service that was not restarted: the `reload/1` extension, if it offers it.
    pub fn reload(&self) {
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
        })
    }
}

/// The running services, in declaration order; shared by the main loop, SIGHUP's thread and
/// the admin endpoint.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<Vec<Instance>>>);

impl Running {
    pub fn new(instances: Vec<Instance>) -> Self {
        Self(Arc::new(Mutex::new(instances)))
    }

    pub fn list(&self) -> MutexGuard<'_, Vec<Instance>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
