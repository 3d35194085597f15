//! Room for probes among idle connections.
//!
//! A probe connects and sends its request at once. A connection that sends nothing holds a
//! place all the same until the header timeout, and enough of them (a port scanner, a client
//! that leaks connections, an attacker) would leave every probe waiting in the backlog: a
//! liveness probe that waits fails, and the pod is restarted. So beyond a number of connections
//! with no request in progress, each new connection, and each that finishes a request, closes
//! the one that has waited longest. A newcomer is never the one closed, and a connection is
//! never cut while a request of its own is being answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::Notify;

/// The admin endpoint's connections with no request in progress.
pub struct Idle {
    max: usize,
    members: Mutex<Members>,
}

#[derive(Default)]
struct Members {
    next_id: u64,
    /// Each idle connection: since when it has waited, and how to tell it to close.
    waiting: HashMap<u64, (Instant, Arc<Notify>)>,
}

/// One connection's place among them; it leaves when this is dropped.
pub struct Place {
    idle: Arc<Idle>,
    id: u64,
    close: Arc<Notify>,
}

/// A request in progress on a connection, which is idle again when this is dropped.
pub struct Busy(Arc<Place>);

impl Idle {
    /// At most `max` idle connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            members: Mutex::default(),
        })
    }

    fn members(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection that has just opened: idle until its first request.
    pub fn join(self: &Arc<Self>) -> Arc<Place> {
        let close = Arc::new(Notify::new());
        let mut members = self.members();
        let id = members.next_id;
        members.next_id += 1;
        members.wait(id, close.clone(), self.max);
        Arc::new(Place {
            idle: self.clone(),
            id,
            close,
        })
    }
}

impl Members {
    /// Connection `id` waits from now; beyond `max` waiting, the longest waiters are closed.
    fn wait(&mut self, id: u64, close: Arc<Notify>, max: usize) {
        self.waiting.insert(id, (Instant::now(), close));
        while self.waiting.len() > max {
            let longest = self
                .waiting
                .iter()
                .min_by_key(|(id, (since, _))| (*since, **id))
                .map(|(id, _)| *id);
            if let Some((_, close)) = longest.and_then(|id| self.waiting.remove(&id)) {
                close.notify_one();
            }
        }
    }
}

impl Place {
    /// A request has come: the connection is not closed until it has been answered.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.idle.members().waiting.remove(&self.id);
        Busy(self.clone())
    }

    /// Completes when the connection is to close to make room.
    pub async fn asked_to_close(&self) {
        self.close.notified().await
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let place = &self.0;
        place
            .idle
            .members()
            .wait(place.id, place.close.clone(), place.idle.max);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.idle.members().waiting.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(place: &Place) -> bool {
        let notified = std::pin::pin!(place.asked_to_close());
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        std::future::Future::poll(notified, &mut context).is_ready()
    }

    #[test]
    fn beyond_the_limit_the_longest_idle_connection_is_closed_never_a_busy_one() {
        let idle = Idle::new(2);
        let first = idle.join();
        let busy = idle.join();
        let request = busy.busy();
        let third = idle.join();
        assert!(!asked(&first), "two idle: within the limit");
        let fourth = idle.join();
        assert!(asked(&first), "the longest idle goes");
        assert!(!asked(&busy) && !asked(&third) && !asked(&fourth));
        drop(request);
        assert!(
            asked(&third),
            "an answered request makes the connection idle again"
        );
        assert!(!asked(&busy) && !asked(&fourth));
    }
}
