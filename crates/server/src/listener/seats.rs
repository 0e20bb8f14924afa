//! A listener's connection cap, with room kept for the clients that matter.
//!
//! Every connection holds a [`Seat`]. A seat is *unsettled* until its connection proves itself
//! (public side: it was served an answer below 400; ingest: it authenticated), then *settled*. When
//! the cap is reached, or unsettled seats reach their share of it, a newcomer takes the seat of
//! the oldest unsettled connection, which is told to close: a slowloris holding thousands of
//! connections that never finish a head, or idle unauthenticated connections on the ingest
//! listener, cannot keep a customer or a depot out. Settled connections are never evicted.
//! Everything is bounded by the cap: the queue of unsettled seats holds weak references and is
//! compacted as it grows. An evicted connection keeps its socket until its task runs and closes
//! it; when a quarter of the cap is evicted but not yet closed (a starved runtime), newcomers
//! are refused instead, so sockets stay bounded too. [`Seats::take_within`] first waits a
//! little for those connections to close (newcomers queue in the kernel's backlog meanwhile):
//! the ingest listener uses it, so a burst of idle connections cannot get a depot refused
//! merely because the evicted ones had not run yet.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// A connection's place under the cap; its slot is released when the seat is dropped.
pub struct Seat {
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    settled: AtomicBool,
    evicted: Notify,
    was_evicted: AtomicBool,
    unsettled: Arc<AtomicUsize>,
    /// Seats evicted whose connection has not closed yet.
    evicted_open: Arc<AtomicUsize>,
    /// Told when an evicted connection closes.
    evicted_closed: Arc<Notify>,
}

impl Seat {
    /// The connection proved itself: it is not evicted any more.
    pub fn settle(&self) {
        if !self.settled.swap(true, Relaxed) {
            self.unsettled.fetch_sub(1, Relaxed);
        }
    }

    pub fn is_settled(&self) -> bool {
        self.settled.load(Relaxed)
    }

    /// Resolves once a newcomer took this seat: the connection must close.
    pub async fn evicted(&self) {
        loop {
            let notified = self.evicted.notified();
            if self.was_evicted.load(Relaxed) {
                return;
            }
            notified.await;
        }
    }

    pub fn was_evicted(&self) -> bool {
        self.was_evicted.load(Relaxed)
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if !self.settled.load(Relaxed) {
            self.unsettled.fetch_sub(1, Relaxed);
        }
        if self.was_evicted.load(Relaxed) {
            self.evicted_open.fetch_sub(1, Relaxed);
            self.evicted_closed.notify_waiters();
        }
    }
}

/// The seats of one listener.
pub struct Seats {
    slots: Arc<Semaphore>,
    /// Extra seats only [`Seats::take_reserved`] hands out (public side: sources the shield
    /// knows), so a cap full of a flood's connections does not keep known customers out.
    reserve: Arc<Semaphore>,
    reserved: usize,
    max: usize,
    /// Most seats unsettled connections may hold at once.
    max_unsettled: usize,
    unsettled: Arc<AtomicUsize>,
    pending: Mutex<VecDeque<Weak<Seat>>>,
    evictions: AtomicUsize,
    evicted_open: Arc<AtomicUsize>,
    evicted_closed: Arc<Notify>,
}

impl Seats {
    /// `max` connections; unsettled ones may hold at most `max_unsettled` of them.
    pub fn new(max: usize, max_unsettled: usize) -> Seats {
        assert!(max > 0 && max_unsettled > 0 && max_unsettled <= max);
        Seats {
            slots: Arc::new(Semaphore::new(max)),
            reserve: Arc::new(Semaphore::new(0)),
            reserved: 0,
            max,
            max_unsettled,
            unsettled: Arc::new(AtomicUsize::new(0)),
            pending: Mutex::new(VecDeque::new()),
            evictions: AtomicUsize::new(0),
            evicted_open: Arc::new(AtomicUsize::new(0)),
            evicted_closed: Arc::new(Notify::new()),
        }
    }

    /// Keeps `extra` seats beyond the cap for [`Seats::take_reserved`].
    pub fn with_reserve(mut self, extra: usize) -> Seats {
        self.reserve.add_permits(extra);
        self.reserved += extra;
        self
    }

    /// A seat for a client that matters when [`Seats::take`] found none: one of the reserve.
    pub fn take_reserved(&self) -> Option<Arc<Seat>> {
        let permit = self.reserve.clone().try_acquire_owned().ok()?;
        Some(self.seat(permit))
    }

    /// [`Seats::take`], but when it fails only because evicted connections have not closed
    /// yet, waits up to `wait` for them to close and tries again.
    pub async fn take_within(&self, wait: std::time::Duration) -> Option<Arc<Seat>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let closed = self.evicted_closed.notified();
            if let Some(seat) = self.take() {
                return Some(seat);
            }
            if !self.evictions_stalled() {
                return None;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                return self.take();
            }
        }
    }

    fn evictions_stalled(&self) -> bool {
        self.evicted_open.load(Relaxed) >= (self.max / 4).max(1)
    }

    /// A seat for a new connection, evicting the oldest unsettled connection when the cap or
    /// the unsettled share is reached; `None` when the node is full of settled connections.
    pub fn take(&self) -> Option<Arc<Seat>> {
        let permit = if self.unsettled.load(Relaxed) >= self.max_unsettled {
            self.evict_oldest()
                .or_else(|| self.slots.clone().try_acquire_owned().ok())?
        } else {
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => self.evict_oldest()?,
            }
        };
        Some(self.seat(permit))
    }

    /// A seat holding `permit`, queued for eviction until it settles.
    fn seat(&self, permit: OwnedSemaphorePermit) -> Arc<Seat> {
        self.unsettled.fetch_add(1, Relaxed);
        let seat = Arc::new(Seat {
            permit: Mutex::new(Some(permit)),
            settled: AtomicBool::new(false),
            evicted: Notify::new(),
            was_evicted: AtomicBool::new(false),
            unsettled: self.unsettled.clone(),
            evicted_open: self.evicted_open.clone(),
            evicted_closed: self.evicted_closed.clone(),
        });
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= 2 * self.max {
            pending.retain(|w| w.upgrade().is_some_and(|s| !s.is_settled()));
        }
        pending.push_back(Arc::downgrade(&seat));
        seat
    }

    /// Takes the slot of the oldest unsettled connection and tells it to close; `None` when
    /// there is none, or when too many evicted connections are still open.
    fn evict_oldest(&self) -> Option<OwnedSemaphorePermit> {
        if self.evictions_stalled() {
            return None;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(weak) = pending.pop_front() {
            let Some(seat) = weak.upgrade() else { continue };
            if seat.is_settled() {
                continue;
            }
            let permit = seat.permit.lock().unwrap_or_else(|p| p.into_inner()).take();
            let Some(permit) = permit else { continue };
            // The evicted connection no longer counts: it closes as soon as it runs.
            seat.settle();
            seat.was_evicted.store(true, Relaxed);
            self.evicted_open.fetch_add(1, Relaxed);
            seat.evicted.notify_waiters();
            self.evictions.fetch_add(1, Relaxed);
            return Some(permit);
        }
        None
    }

    /// Connections evicted so far.
    pub fn evictions(&self) -> usize {
        self.evictions.load(Relaxed)
    }

    /// Every slot back (all connections ended), within `within`.
    pub async fn drained(&self, within: std::time::Duration) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let reserved = u32::try_from(self.reserved).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(within, async {
            let _slots = self.slots.acquire_many(all).await;
            let _reserve = self.reserve.acquire_many(reserved).await;
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_newcomer_takes_the_seat_of_the_oldest_unsettled_connection() {
        let seats = Seats::new(3, 3);
        let a = seats.take().unwrap();
        let b = seats.take().unwrap();
        let c = seats.take().unwrap();
        a.settle();
        // Full: the oldest unsettled (b) is evicted, never the settled one.
        let d = seats.take().unwrap();
        assert!(b.was_evicted() && !a.was_evicted() && !c.was_evicted());
        drop(b); // its connection closes
        let _e = seats.take().unwrap();
        assert!(c.was_evicted());
        d.settle();
        assert!(!d.was_evicted());
        assert_eq!(seats.evictions(), 2);
    }

    #[test]
    fn settled_connections_are_never_evicted_and_a_full_node_says_so() {
        let seats = Seats::new(2, 2);
        let held: Vec<_> = (0..2).map(|_| seats.take().unwrap()).collect();
        for seat in &held {
            seat.settle();
        }
        assert!(seats.take().is_none());
        drop(held);
        assert!(seats.take().is_some(), "slots come back when seats go");
    }

    #[test]
    fn unsettled_connections_keep_to_their_share() {
        // 4 seats, of which unsettled connections may hold 2: the other 2 stay for settled ones.
        let seats = Seats::new(4, 2);
        let first = seats.take().unwrap();
        let second = seats.take().unwrap();
        let third = seats.take().unwrap();
        assert!(first.was_evicted(), "the share was full: the oldest went");
        drop(first); // its connection closes
        third.settle();
        second.settle();
        let fourth = seats.take().unwrap();
        let fifth = seats.take().unwrap();
        assert!(!fourth.was_evicted() && !fifth.was_evicted());
    }

    #[test]
    fn evicted_connections_that_do_not_close_stop_the_evictions() {
        let seats = Seats::new(8, 8);
        let first: Vec<_> = (0..8).map(|_| seats.take().unwrap()).collect();
        // Two newcomers evict two; their connections do not close (their runtime is starved).
        let second: Vec<_> = (0..2).map(|_| seats.take().unwrap()).collect();
        assert!(first[0].was_evicted() && first[1].was_evicted());
        assert!(
            seats.take().is_none(),
            "a quarter of the cap evicted and still open"
        );
        drop(first);
        assert!(seats.take().is_some(), "closed now: seats again");
        drop(second);
    }

    #[test]
    fn the_reserve_opens_only_to_take_reserved() {
        let seats = Seats::new(2, 2).with_reserve(1);
        let held: Vec<_> = (0..2).map(|_| seats.take().unwrap()).collect();
        for seat in &held {
            seat.settle();
        }
        assert!(
            seats.take().is_none(),
            "the cap is full of settled connections"
        );
        let known = seats.take_reserved().expect("a reserved seat");
        known.settle();
        assert!(
            seats.take_reserved().is_none(),
            "the reserve is bounded too"
        );
        drop(held);
        assert!(seats.take().is_some());
    }

    #[tokio::test]
    async fn a_newcomer_can_wait_for_evicted_connections_to_close() {
        let seats = Arc::new(Seats::new(4, 4));
        let first: Vec<_> = (0..4).map(|_| seats.take().unwrap()).collect();
        let _second = seats.take().unwrap();
        assert!(first[0].was_evicted());
        assert!(seats.take().is_none(), "one evicted and open: stalled");
        let waiting = {
            let seats = seats.clone();
            tokio::spawn(async move { seats.take_within(Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        drop(first); // the evicted connection closes, the newcomer gets in
        assert!(waiting.await.unwrap().is_some());
    }

    #[tokio::test]
    async fn an_evicted_connection_is_told() {
        let seats = Seats::new(1, 1);
        let old = seats.take().unwrap();
        let waiter = {
            let old = old.clone();
            tokio::spawn(async move { old.evicted().await })
        };
        let _new = seats.take().unwrap();
        waiter.await.unwrap();
        assert!(old.was_evicted());
    }
}
