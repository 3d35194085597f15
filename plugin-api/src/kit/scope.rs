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
use std::cell::RefCell;
use tracing::dispatcher::{self, DefaultGuard, Dispatch};

thread_local! {
    /// The host context of the service this thread is working for.
    static CURRENT: RefCell<Option<HostContext>> = const { RefCell::new(None) };
    /// On a runtime thread: the service's dispatcher, the thread's default for its whole life.
    static THREAD_LOG: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// One service's host context and log dispatcher.
#[derive(Clone)]
pub(crate) struct ServiceScope {
    host: HostContext,
    dispatch: Dispatch,
}

impl ServiceScope {
    pub(crate) fn new(host: HostContext) -> Self {
        let dispatch = log_bridge::dispatch(&host);
        log_bridge::install_fallback(&dispatch);
        Self { host, dispatch }
    }

    /// Runs `body` as work of this service: its events go to this service's log, and the kit
    /// reaches this service's host context.
    pub(crate) fn enter<R>(&self, body: impl FnOnce() -> R) -> R {
        let previous = CURRENT.with(|current| current.replace(Some(self.host.clone())));
        let result = dispatcher::with_default(&self.dispatch, body);
        CURRENT.with(|current| *current.borrow_mut() = previous);
        result
    }

    /// Makes every thread of a runtime built with `builder` work for this service.
    pub(crate) fn apply_to(&self, builder: &mut tokio::runtime::Builder) {
        let scope = self.clone();
        builder
            .on_thread_start(move || {
                CURRENT.with(|current| *current.borrow_mut() = Some(scope.host.clone()));
                let guard = dispatcher::set_default(&scope.dispatch);
                THREAD_LOG.with(|log| *log.borrow_mut() = Some(guard));
            })
            .on_thread_stop(|| {
                THREAD_LOG.with(|log| log.borrow_mut().take());
                CURRENT.with(|current| current.borrow_mut().take());
            });
    }

    /// The host context of the service the calling thread works for, if any.
    pub(crate) fn current_host() -> Option<HostContext> {
        CURRENT.with(|current| current.borrow().clone())
    }
}
