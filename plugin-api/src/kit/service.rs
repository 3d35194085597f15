//! The [`Service`] trait plugin authors implement, and [`Tasks`], the set of tasks a running
//! service owns: what lets the host stop it gracefully and learn when it ends on its own.

use crate::kit::error::Result;
use crate::kit::export::panic_message;
use futures_util::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A network service: Twisted's `IService`, in three steps.
///
/// Both methods run inside the plugin's tokio runtime (so binding and spawning work), on a
/// thread of the host's, and must return promptly: long work belongs in [`Tasks::spawn`].
pub trait Service: Send + 'static {
    /// The name used in log lines.
    fn name(&self) -> &str;

    /// Acquires what needs privileges, typically binding listening sockets with
    /// [`Endpoint::bind`](crate::Endpoint::bind). Runs before the host drops root privileges, so
    /// do nothing else here.
    fn privileged_start(&mut self) -> Result<()> {
        Ok(())
    }

    /// Starts serving: spawns the service's tasks on `tasks` and returns.
    fn start(&mut self, tasks: &Tasks) -> Result<()>;

    /// Reloads configuration without a restart; the host calls it on SIGHUP. `None` (the
    /// default) means the service cannot reload, and the host ignores the signal. Runs inside
    /// the plugin's runtime, on a host thread: keep it short. Since plugin-api 1.1.
    fn reload(&mut self) -> Option<Result<()>> {
        None
    }
}

type EndedCallback = Arc<dyn Fn(Option<String>) + Send + Sync>;

/// The tasks of one running service.
///
/// A service spawns its long-running loops with [`spawn`](Self::spawn) and its per-connection
/// work with [`spawn_connection`](Self::spawn_connection), and watches [`shutdown`](Self::shutdown)
/// to know when to stop accepting. On stop, the host waits (up to its deadline) for every task to
/// finish, so in-flight connections complete. Children made with [`child`](Self::child) are
/// stopped before their parent, in reverse order of creation, which is how
/// [`MultiService`](crate::MultiService) stops its children in reverse.
#[derive(Clone)]
pub struct Tasks(Arc<TasksInner>);

struct TasksInner {
    shutdown: CancellationToken,
    tracker: TaskTracker,
    children: Mutex<Vec<Tasks>>,
    ended: EndedCallback,
    /// Connections being served by [`Tasks::serve`], across the whole service.
    open: Arc<AtomicUsize>,
}

impl Tasks {
    pub(crate) fn root(ended: EndedCallback) -> Self {
        Self::with_token(CancellationToken::new(), ended, Arc::default())
    }

    /// A set of tasks that belongs to no host, for testing a service: start it with these
    /// tasks inside a tokio runtime, talk to it, then [`stop`](Self::stop) it. A main task that
    /// ends early is logged as a warning.
    pub fn standalone() -> Self {
        Self::root(Arc::new(|error| match error {
            Some(error) => tracing::warn!("a main task failed: {error}"),
            None => tracing::warn!("a main task ended by itself"),
        }))
    }

    fn with_token(
        shutdown: CancellationToken,
        ended: EndedCallback,
        open: Arc<AtomicUsize>,
    ) -> Self {
        Self(Arc::new(TasksInner {
            shutdown,
            tracker: TaskTracker::new(),
            children: Mutex::new(Vec::new()),
            ended,
            open,
        }))
    }

    /// Spawns one of the service's main tasks, such as an accept loop.
    ///
    /// The task should return once [`shutdown`](Self::shutdown) is requested. If it returns
    /// before that, the service has ended by itself: the host is told (with the error, if any)
    /// and shuts down. A task that panics has failed, with the panic as its error.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = Result<()>> + Send + 'static,
    {
        let shutdown = self.0.shutdown.clone();
        let ended = self.0.ended.clone();
        self.0.tracker.spawn(async move {
            // The panic hook has logged where; unless caught here, tokio would only drop the
            // task, and the host would go on as if the service were still serving.
            let outcome = match AssertUnwindSafe(task).catch_unwind().await {
                Ok(outcome) => outcome.map_err(|e| e.to_string()),
                Err(panic) => Err(format!("panicked: {}", panic_message(&*panic))),
            };
            if !shutdown.is_cancelled() {
                ended(outcome.err());
            } else if let Err(e) = outcome {
                tracing::error!("failed while stopping: {e}");
            }
        });
    }

    /// Spawns work whose end does not end the service, such as a data connection a protocol
    /// opens beside its main one. (Connections accepted from a listener are best served by
    /// [`serve`](Self::serve), which also logs who the peer was.)
    ///
    /// An error is logged, at info level if the other side went away and as a warning
    /// otherwise; stopping the service waits for this task too.
    pub fn spawn_connection<F>(&self, task: F)
    where
        F: Future<Output = Result<()>> + Send + 'static,
    {
        self.0.tracker.spawn(async move {
            if let Err(e) = task.await {
                crate::kit::serve::log_failure(None, &e);
            }
        });
    }

    /// Spawns a task that stopping the service waits for, with no logging of its own.
    pub(crate) fn spawn_tracked<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.0.tracker.spawn(task);
    }

    /// Counts one open connection until the returned guard is dropped.
    pub(crate) fn open_connection(&self) -> OpenConnection {
        self.0.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.0.open.clone())
    }

    /// How many connections [`serve`](Self::serve) is serving now, across the whole service.
    pub fn open_connections(&self) -> usize {
        self.0.open.load(Ordering::Relaxed)
    }

    /// A handle that resolves when the host asks this service to stop.
    pub fn shutdown(&self) -> Shutdown {
        Shutdown(self.0.shutdown.clone())
    }

    /// A child set of tasks, stopped before this one (children in reverse order of creation).
    pub fn child(&self) -> Tasks {
        let child = Self::with_token(
            self.0.shutdown.child_token(),
            self.0.ended.clone(),
            self.0.open.clone(),
        );
        self.0
            .children
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(child.clone());
        child
    }

    /// Requests shutdown and waits for every task, children first in reverse order.
    ///
    /// The host does this (with a deadline) when it stops the service.
    pub fn stop(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let children = std::mem::take(
                &mut *self
                    .0
                    .children
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
            for child in children.iter().rev() {
                child.stop().await;
            }
            self.0.shutdown.cancel();
            self.0.tracker.close();
            self.0.tracker.wait().await;
        })
    }
}

/// One connection counted in [`Tasks::open_connections`] while it lives.
pub(crate) struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resolves when the host asks the service to stop; cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// Waits until shutdown is requested.
    pub async fn requested(&self) {
        self.0.cancelled().await
    }

    /// Whether shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        self.0.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn tasks_reporting_to(sender: mpsc::Sender<Option<String>>) -> Tasks {
        let sender = Mutex::new(sender);
        Tasks::root(Arc::new(move |ended| {
            sender.lock().unwrap().send(ended).unwrap()
        }))
    }

    #[test]
    fn a_main_task_that_returns_early_ends_the_service_with_its_error() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _entered = runtime.enter();
        let (sender, ended) = mpsc::channel();
        let tasks = tasks_reporting_to(sender);
        tasks.spawn(async { Err("listener died".into()) });
        let report = ended
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        assert_eq!(report.as_deref(), Some("listener died"));
    }

    #[test]
    fn a_main_task_that_panics_ends_the_service_as_failed() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _entered = runtime.enter();
        let (sender, ended) = mpsc::channel();
        let tasks = tasks_reporting_to(sender);
        tasks.spawn(async { panic!("lost the listener") });
        let report = ended
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        assert_eq!(report.as_deref(), Some("panicked: lost the listener"));
    }

    #[test]
    fn stop_waits_for_connections_and_is_not_an_ending() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _entered = runtime.enter();
        let (sender, ended) = mpsc::channel();
        let tasks = tasks_reporting_to(sender);
        let shutdown = tasks.shutdown();
        tasks.spawn(async move {
            shutdown.requested().await;
            Ok(())
        });
        let (done_tx, done) = mpsc::channel();
        tasks.spawn_connection(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            done_tx.send(()).unwrap();
            Ok(())
        });
        runtime.block_on(tasks.stop());
        assert!(
            done.try_recv().is_ok(),
            "stop returned before the connection finished"
        );
        assert!(
            ended.try_recv().is_err(),
            "a requested stop is not an ending"
        );
    }
}
