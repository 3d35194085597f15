//! Turns to check a password: a few at once, so the memory the checks hold is bounded, given
//! to the waiting checks by [`Priority`], then in the order they came.

use argon2::Block;
use plugin_api::tokio::sync::oneshot;
use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex, MutexGuard};

/// Password checks run at once (in each plugin linking this crate): one per core, up to this
/// many. Each holds its hash's memory (19 MiB for argon2's defaults) while it runs, so without
/// a bound a crowd of clients logging in at once could take gigabytes; and more checks than
/// cores would not finish sooner.
const MAX_TURNS: usize = 4;

/// Which waiting checks go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Priority {
    /// From a network with no recent failed login.
    Fresh,
    /// From a network with recent failures: waits while any fresh check does, so that wrong
    /// passwords spread over many addresses (each too few to be banned) cannot hold a user
    /// with the right one past the deadline.
    Suspect,
}

struct Line {
    free: usize,
    /// One entry for each waiting check, removed when it gets its turn or stops waiting, so
    /// the line is never longer than the checks that wait.
    waiting: BTreeMap<(Priority, u64), oneshot::Sender<Permit>>,
    arrivals: u64,
}

struct Turns(Mutex<Line>);

static TURNS: LazyLock<Turns> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    Turns::new(cores.min(MAX_TURNS))
});

impl Turns {
    fn new(free: usize) -> Self {
        Self(Mutex::new(Line {
            free,
            waiting: BTreeMap::new(),
            arrivals: 0,
        }))
    }

    fn line(&self) -> MutexGuard<'_, Line> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn permit(&'static self, priority: Priority) -> Permit {
        let (_place, receiver) = {
            let mut line = self.line();
            if line.free > 0 {
                line.free -= 1;
                return Permit(self);
            }
            let key = (priority, line.arrivals);
            line.arrivals += 1;
            let (sender, receiver) = oneshot::channel();
            line.waiting.insert(key, sender);
            (Place(self, key), receiver)
        };
        receiver
            .await
            .expect("a place's sender stays in line until it sends")
    }
}

/// The right to one of the turns. Dropped, it goes to the first in line, or back to the free
/// ones: also when it was sent to a check that stopped waiting before it arrived.
struct Permit(&'static Turns);

impl Drop for Permit {
    fn drop(&mut self) {
        let mut line = self.0.line();
        while let Some((_, next)) = line.waiting.pop_first() {
            match next.send(Permit(self.0)) {
                Ok(()) => return,
                // Its check stopped waiting: dropping this one here would take the lock again.
                Err(permit) => std::mem::forget(permit),
            }
        }
        line.free += 1;
    }
}

/// A check's place in line, given up when its wait is (at its deadline).
struct Place(&'static Turns, (Priority, u64));

impl Drop for Place {
    fn drop(&mut self) {
        self.0.line().waiting.remove(&self.1);
    }
}

/// argon2's working memory, one per turn, kept from one check to the next: allocating it for
/// each check lets the allocator's heaps grow well past what the checks at once hold (glibc
/// kept 150 MB for two turns of 8 MiB). So the most held is the turns times the largest
/// argon2 `m` of the file.
static MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// A turn to check a password.
pub(crate) struct Turn {
    pub(crate) memory: Vec<Block>,
    _permit: Permit,
}

impl Turn {
    pub(crate) async fn wait(priority: Priority) -> Self {
        Self::with(TURNS.permit(priority).await)
    }

    fn with(permit: Permit) -> Self {
        Self {
            memory: MEMORY
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .unwrap_or_default(),
            _permit: permit,
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let memory = std::mem::take(&mut self.memory);
        MEMORY
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(memory);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::tokio;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn fresh_checks_go_first_then_in_the_order_they_came() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let turns: &'static Turns = Box::leak(Box::new(Turns::new(1)));
        let order = Arc::new(Mutex::new(Vec::new()));
        runtime.block_on(async {
            let held = turns.permit(Priority::Fresh).await;
            let mut waiting = Vec::new();
            for (name, priority) in [
                ("a", Priority::Suspect),
                ("b", Priority::Fresh),
                ("gone", Priority::Fresh),
                ("c", Priority::Suspect),
                ("d", Priority::Fresh),
            ] {
                let order = order.clone();
                waiting.push(tokio::spawn(async move {
                    let wait = turns.permit(priority);
                    let limit = Duration::from_millis(if name == "gone" { 10 } else { 10_000 });
                    if let Ok(_permit) = tokio::time::timeout(limit, wait).await {
                        order.lock().unwrap().push(name);
                    }
                }));
                tokio::task::yield_now().await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(turns.line().waiting.len(), 4, "the check that gave up left");
            drop(held);
            for task in waiting {
                task.await.unwrap();
            }
        });
        assert_eq!(*order.lock().unwrap(), ["b", "d", "a", "c"]);
        let line = turns.line();
        assert!(line.waiting.is_empty() && line.free == 1);
    }
}
