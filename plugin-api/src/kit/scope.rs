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

/// Spawns a thread named `name` that works for the calling thread's service, as the threads
/// of its runtime do: its log lines carry the service's name and its metrics are the
/// service's. A thread from `std::thread::spawn` starts with no service, and when a library
/// runs as several services (two web services in one application file) it would log under
/// whichever service of that library was made first.
pub fn spawn_thread<F, T>(name: String, body: F) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let shared = CURRENT.with(|current| current.borrow().clone());
    let dispatch = dispatcher::get_default(Dispatch::clone);
    std::thread::Builder::new().name(name).spawn(move || {
        CURRENT.with(|current| *current.borrow_mut() = shared);
        dispatcher::with_default(&dispatch, body)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tracing::{span, Event, Metadata, Subscriber};

    /// Counts the events it is given.
    struct Counter(Arc<AtomicUsize>);

    impl Subscriber for Counter {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, _: &Event<'_>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    #[test]
    fn a_spawned_thread_logs_where_its_spawner_does() {
        let (service, other) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // What a thread with no service would fall back to.
        let _fallback = dispatcher::set_default(&Dispatch::new(Counter(other.clone())));
        dispatcher::with_default(&Dispatch::new(Counter(service.clone())), || {
            spawn_thread("test".into(), || tracing::info!("from the thread"))
                .unwrap()
                .join()
                .unwrap();
        });
        assert_eq!(service.load(Ordering::SeqCst), 1);
        assert_eq!(other.load(Ordering::SeqCst), 0);
    }
}
