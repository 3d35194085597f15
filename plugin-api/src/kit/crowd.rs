//! Making room among connections that wait without a request.
//!
//! A connection that sends nothing (a slowloris client, a port scanner, a client that leaks
//! connections) holds its place until a timeout all the same, and an attacker who reconnects
//! as soon as he is cut can hold every place for ever: everyone else waits in the listen
//! backlog. nginx, out of connections, closes its idle keep-alive ones to make room; a
//! [`Crowd`] does that for any protocol with requests.
//!
//! Each connection [joins](Crowd::join) and says when a request is in progress
//! ([`Place::busy`]). Once `room` connections are open, every newcomer, and every connection
//! whose last request has been answered, makes the connection that has waited longest with no
//! request in progress close ([`Place::asked_to_close`]), if it has waited at least `grace`.
//! A connection is never closed this way while a request of its own is being answered, nor
//! before its grace is up (a client sends its request at once; the grace is for its first
//! bytes to arrive). A service whose connections wait in the backlog at its limit
//! ([`WhenFull::Wait`](crate::WhenFull::Wait)) accepts nobody while full, so nothing joins:
//! [`Crowd::watch`] makes room on a timer meanwhile.
//!
//! ```
//! # use plugin_api::{crowd::Crowd, Result, Stream};
//! # use std::time::Duration;
//! # async fn serve(stream: Stream, crowd: &std::sync::Arc<Crowd>) -> Result<()> {
//! let place = crowd.join();
//! loop {
//!     plugin_api::tokio::select! {
//!         // read a request...
//!         () = plugin_api::tokio::time::sleep(Duration::from_secs(1)) => {
//!             let _busy = place.busy(); // ...and answer it while this lives
//!         }
//!         () = place.asked_to_close() => return Ok(()),
//!     }
//! }
//! # }
//! ```

use crate::kit::error::Result;
use crate::kit::service::Shutdown;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The connections of one service (or one listener), and when each began to wait.
#[derive(Debug)]
pub struct Crowd {
    /// Connections open at once from which waiters are closed; 0: never.
    room: usize,
    /// In milliseconds: how long a connection may wait before it can be closed.
    grace: u64,
    members: Mutex<HashMap<u64, Arc<Member>>>,
    /// `members.len()`, readable without the lock: most calls need only know it is below room.
    count: AtomicUsize,
    next_id: AtomicU64,
    /// What [`Member::waiting_since`] counts from.
    epoch: Instant,
    /// Listeners whose accept loops take their slots from the same limit. Each one but the one
    /// that is waiting for a slot holds a slot for its next connection while it waits in
    /// `accept`, so the crowd is full one connection sooner per listener beyond the first.
    listeners: AtomicUsize,
}

/// One connection, as the crowd sees it. Written per request without the crowd's lock.
#[derive(Debug)]
struct Member {
    /// Requests in progress.
    busy: AtomicUsize,
    /// Since when it has had no request in progress, in milliseconds since the crowd's epoch.
    waiting_since: AtomicU64,
    close: Notify,
}

/// One connection's place in its [`Crowd`]; the connection leaves when this is dropped.
pub struct Place {
    crowd: Arc<Crowd>,
    id: u64,
    member: Arc<Member>,
}

/// A request in progress on a connection ([`Place::busy`]); when the last one is dropped the
/// connection waits again.
pub struct Busy {
    crowd: Arc<Crowd>,
    member: Arc<Member>,
}

impl Crowd {
    /// From `room` connections on (0: never), the longest waiter past `grace` is closed for
    /// each newcomer.
    pub fn new(room: usize, grace: Duration) -> Arc<Self> {
        Arc::new(Self {
            room,
            grace: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            members: Mutex::new(HashMap::new()),
            count: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            listeners: AtomicUsize::new(0),
        })
    }

    /// Adds a connection that has just opened, waiting for its first request.
    pub fn join(self: &Arc<Self>) -> Place {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let member = Arc::new(Member {
            busy: AtomicUsize::new(0),
            waiting_since: AtomicU64::new(self.now()),
            close: Notify::new(),
        });
        let mut members = self.members();
        members.insert(id, member.clone());
        self.count.store(members.len(), Ordering::Relaxed);
        self.make_room(&members);
        drop(members);
        Place {
            crowd: self.clone(),
            id,
            member,
        }
    }

    /// Makes room every `grace / 2` (at least every 50 ms) until `shutdown`: for a service
    /// that accepts nobody while it is full.
    pub async fn watch(self: Arc<Self>, shutdown: Shutdown) -> Result<()> {
        let mut ticks = tokio::time::interval(Duration::from_millis((self.grace / 2).max(50)));
        loop {
            tokio::select! {
                _ = ticks.tick() => self.make_room_if_full(),
                () = shutdown.requested() => return Ok(()),
            }
        }
    }

    /// Counts one more listener serving within this crowd's limit; returns how many there are.
    pub(crate) fn add_listener(&self) -> usize {
        self.listeners.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether `open` connections fill the room.
    fn full(&self, open: usize) -> bool {
        let reserved = self.listeners.load(Ordering::Relaxed).saturating_sub(1);
        self.room > 0 && open + reserved >= self.room
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn make_room_if_full(&self) {
        if self.full(self.count.load(Ordering::Relaxed)) {
            self.make_room(&self.members());
        }
    }

    /// Asks the longest waiter past its grace to close, if `room` connections are open.
    fn make_room(&self, members: &HashMap<u64, Arc<Member>>) {
        if !self.full(members.len()) {
            return;
        }
        let now = self.now();
        // Times are in milliseconds: among those that began to wait in the same one, the one
        // that joined first (the smaller id) has waited longest.
        let longest = members
            .iter()
            .filter(|(_, m)| m.busy.load(Ordering::Relaxed) == 0)
            .map(|(id, m)| ((m.waiting_since.load(Ordering::Relaxed), *id), m))
            .filter(|&((since, _), _)| now.saturating_sub(since) >= self.grace)
            .min_by_key(|&(order, _)| order);
        if let Some(((since, _), member)) = longest {
            tracing::debug!(
                "{} connections open: closing one that has waited {} ms without a request",
                members.len(),
                now - since
            );
            member.close.notify_one();
        }
    }

    fn members(&self) -> MutexGuard<'_, HashMap<u64, Arc<Member>>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Place {
    /// A request is in progress until the returned guard is dropped: the connection is not
    /// closed to make room meanwhile. Requests may overlap (HTTP/2 streams).
    pub fn busy(&self) -> Busy {
        self.member.busy.fetch_add(1, Ordering::Relaxed);
        Busy {
            crowd: self.crowd.clone(),
            member: self.member.clone(),
        }
    }

    /// Whether a request is in progress.
    pub fn is_busy(&self) -> bool {
        self.member.busy.load(Ordering::Relaxed) > 0
    }

    /// Completes when the connection should close to make room. Check [`Place::is_busy`]
    /// when it does: a request may have begun since it was asked.
    pub async fn asked_to_close(&self) {
        self.member.close.notified().await
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.member
            .waiting_since
            .store(self.crowd.now(), Ordering::Relaxed);
        if self.member.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.crowd.make_room_if_full();
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut members = self.crowd.members();
        members.remove(&self.id);
        self.crowd.count.store(members.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn asked(place: &Place) -> bool {
        let notified = std::pin::pin!(place.asked_to_close());
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        notified.poll(&mut context).is_ready()
    }

    #[test]
    fn only_a_full_crowd_closes_its_longest_waiter_past_its_grace() {
        // A grace long enough that a loaded machine's stall between two lines cannot pass it.
        let grace = Duration::from_secs(1);
        let crowd = Crowd::new(3, grace);
        let first = crowd.join();
        let busy = crowd.join();
        let request = busy.busy();
        std::thread::sleep(grace + Duration::from_millis(50));
        assert!(!asked(&first), "not full yet");
        let third = crowd.join();
        assert!(
            asked(&first),
            "full, and the first has waited past its grace"
        );
        assert!(!asked(&busy), "a request in progress is never cut");
        assert!(!asked(&third), "a newcomer gets its grace");
        drop(first);
        let fourth = crowd.join();
        assert!(
            !asked(&third) && !asked(&fourth),
            "nobody is past the grace"
        );
        std::thread::sleep(grace + Duration::from_millis(50));
        drop(request);
        assert!(
            asked(&third) && !asked(&busy),
            "an answered request lets the longest waiter go"
        );
    }

    #[test]
    fn without_room_nobody_is_closed() {
        let crowd = Crowd::new(0, Duration::ZERO);
        let places: Vec<_> = (0..100).map(|_| crowd.join()).collect();
        assert!(!places.iter().any(asked));
    }
}
