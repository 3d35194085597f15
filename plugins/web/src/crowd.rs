//! Making room when every connection slot is taken.
//!
//! At `--max-connections`, a new client waits in the listen backlog until a connection ends.
//! A slowloris client fills the slots with connections that send their headers a byte at a
//! time; the header timeout frees each one after `--header-timeout`, but the attacker simply
//! connects again, so everyone else would wait that long, again and again. nginx, out of
//! connections, closes its idle keep-alive ones to make room; here, while the service is full,
//! the connection that has been waiting longest with no request in progress (its first
//! request not yet complete, or idle between requests) is closed, once it has waited
//! [`GRACE`]. Each close lets one client in from the backlog; if the service is still full,
//! the next longest waiter goes, and so on. A client that sends its request promptly and reads
//! its response is never closed this way.

use plugin_api::tokio::{self, sync::Notify};
use plugin_api::tracing::debug;
use plugin_api::{Result, Shutdown};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a connection may wait without a request before it can be closed for a newcomer.
pub const GRACE: Duration = Duration::from_millis(500);

/// Every open connection of the service, and since when each has been waiting.
pub struct Crowd {
    /// `--max-connections`; 0: no limit, nothing to make room for.
    max: usize,
    members: Mutex<HashMap<u64, Arc<Member>>>,
    next_id: AtomicU64,
    /// What [`Member::waiting_since`] counts from.
    epoch: Instant,
}

/// One connection, as the crowd sees it. Written per request without the crowd's lock.
struct Member {
    /// Since when it has had no request in progress, in milliseconds since the crowd's epoch,
    /// plus one; 0 while it has one.
    waiting_since: AtomicU64,
    close: Notify,
}

/// One connection's place in the [`Crowd`]; it leaves when this is dropped.
pub struct Place {
    crowd: Arc<Crowd>,
    id: u64,
    member: Arc<Member>,
}

impl Crowd {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            members: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Adds a connection that has just opened (waiting for its first request), making room
    /// if that fills the service.
    pub fn join(self: &Arc<Self>) -> Place {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let member = Arc::new(Member {
            waiting_since: AtomicU64::new(self.now()),
            close: Notify::new(),
        });
        let mut members = self.members();
        members.insert(id, member.clone());
        self.make_room(&members);
        Place {
            crowd: self.clone(),
            id,
            member,
        }
    }

    /// While the service is full, asks the longest waiter (past [`GRACE`]) to close. Called
    /// when a connection joins, and by [`Crowd::watch`] while none can join.
    fn make_room(&self, members: &HashMap<u64, Arc<Member>>) {
        if self.max == 0 || members.len() < self.max {
            return;
        }
        let now = self.now();
        let grace = u64::try_from(GRACE.as_millis()).unwrap_or(u64::MAX);
        let longest = members
            .values()
            .map(|m| (m.waiting_since.load(Ordering::Relaxed), m))
            .filter(|&(since, _)| since != 0 && now.saturating_sub(since) >= grace)
            .min_by_key(|&(since, _)| since);
        if let Some((since, member)) = longest {
            debug!(
                "the service is full: closing a connection that sent no request for {} ms",
                now - since
            );
            member.close.notify_one();
        }
    }

    /// Makes room every `GRACE / 4` while the service is full, since then no connection is
    /// accepted and [`Crowd::join`] does not run; until the service stops.
    pub async fn watch(self: Arc<Self>, shutdown: Shutdown) -> Result<()> {
        let mut ticks = tokio::time::interval(GRACE / 4);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.make_room(&self.members()),
                () = shutdown.requested() => return Ok(()),
            }
        }
    }

    fn members(&self) -> MutexGuard<'_, HashMap<u64, Arc<Member>>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Place {
    /// A request is in progress (`true`) or the last one has been answered (`false`).
    pub fn busy(&self, busy: bool) {
        let since = if busy { 0 } else { self.crowd.now() };
        self.member.waiting_since.store(since, Ordering::Relaxed);
    }

    /// Resolves when the connection should close to make room.
    pub async fn asked_to_close(&self) {
        self.member.close.notified().await
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.crowd.members().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    #[test]
    fn only_a_full_service_closes_its_longest_waiter() {
        let crowd = Crowd::new(3);
        let first = crowd.join();
        let busy = crowd.join();
        busy.busy(true);
        // Not full yet: nobody is asked.
        std::thread::sleep(GRACE);
        let third = crowd.join();
        let asked = |place: &Place| {
            let notified = std::pin::pin!(place.member.close.notified());
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            notified.poll(&mut context).is_ready()
        };
        assert!(
            asked(&first),
            "full, and the first has waited past the grace"
        );
        assert!(!asked(&busy), "a request in progress is never cut");
        assert!(!asked(&third), "a newcomer gets its grace");
        drop(first);
        let fourth = crowd.join();
        assert!(!asked(&third) && !asked(&fourth), "nobody past the grace");
        drop(busy);
    }
}
