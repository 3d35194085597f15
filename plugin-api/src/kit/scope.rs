//! What belongs to one service rather than to its library: the host context it was made with
//! (the host's name for it, its log, the host's extensions) and the log dispatcher that sends
//! its `tracing` events there.
//!
//! A library's statics are shared by every service made from it, and the host may run several
//! services from one plugin (an application file with two fastpoetry services). So nothing
//! per-service lives in a static: the kit enters the service's scope around every call the host
//! makes into the service, and on every thread of the service's runtime.

use crate::abi::HostContext;
use crate::kit::log_bridge;
use crate::kit::metrics::Registry;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use tracing::dispatcher::{self, DefaultGuard, Dispatch};

thread_local! {
    /// The service this thread is working for.
    static CURRENT: RefCell<Option<Shared>> = const { RefCell::new(None) };
    /// On a runtime thread: the service's dispatcher, the thread's default for its whole life.
    static THREAD_LOG: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// One service's host context, log dispatcher, metrics and the endpoints it listens on.
#[derive(Clone)]
pub(crate) struct ServiceScope {
    shared: Shared,
    dispatch: Dispatch,
}

/// What the kit reaches from wherever the service's work runs.
#[derive(Clone)]
struct Shared {
    host: HostContext,
    metrics: Arc<Registry>,
    endpoints: Arc<Mutex<Vec<String>>>,
}

impl ServiceScope {
    pub(crate) fn new(host: HostContext) -> Self {
        let dispatch = log_bridge::dispatch(&host);
        log_bridge::install_fallback(&dispatch);
        Self {
            shared: Shared {
                host,
                metrics: Arc::default(),
                endpoints: Arc::default(),
            },
            dispatch,
        }
    }

    /// Runs `body` as work of this service: its events go to this service's log, and the kit
    /// reaches this service's host context and metrics.
    pub(crate) fn enter<R>(&self, body: impl FnOnce() -> R) -> R {
        let previous = CURRENT.with(|current| current.replace(Some(self.shared.clone())));
        let result = dispatcher::with_default(&self.dispatch, body);
        CURRENT.with(|current| *current.borrow_mut() = previous);
        result
    }

    /// Makes every thread of a runtime built with `builder` work for this service.
    pub(crate) fn apply_to(&self, builder: &mut tokio::runtime::Builder) {
        let scope = self.clone();
        builder
            .on_thread_start(move || {
                CURRENT.with(|current| *current.borrow_mut() = Some(scope.shared.clone()));
                let guard = dispatcher::set_default(&scope.dispatch);
                THREAD_LOG.with(|log| *log.borrow_mut() = Some(guard));
            })
            .on_thread_stop(|| {
                THREAD_LOG.with(|log| log.borrow_mut().take());
                CURRENT.with(|current| current.borrow_mut().take());
            });
    }

    /// This service's metrics.
    pub(crate) fn metrics(&self) -> &Registry {
        &self.shared.metrics
    }

    /// Where this service listens, as bound so far.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.shared
            .endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn with_current<R>(read: impl FnOnce(&Shared) -> R) -> Option<R> {
        CURRENT.with(|current| current.borrow().as_ref().map(read))
    }

    /// The host context of the service the calling thread works for, if any.
    pub(crate) fn current_host() -> Option<HostContext> {
        Self::with_current(|shared| shared.host.clone())
    }

    /// The metrics of the service the calling thread works for, if any.
    pub(crate) fn current_metrics() -> Option<Arc<Registry>> {
        Self::with_current(|shared| shared.metrics.clone())
    }

    /// Notes that the service the calling thread works for listens on `endpoint`.
    pub(crate) fn record_endpoint(endpoint: String) {
        Self::with_current(|shared| {
            shared
                .endpoints
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(endpoint)
        });
    }
}
