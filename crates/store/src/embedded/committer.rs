//! The committer thread: group commit, the bound on write buffers, and what a failed write
//! means for the batches of its group.
//!
//! One thread owns all writes. It takes a batch from the queue, drains whatever else is queued
//! (up to [`EmbeddedOptions::max_group_events`]), deduplicates by `event_id` against the `ids`
//! keyspace and within the group, writes the whole group as **one** atomic fjall write batch,
//! makes it durable with **one** fsync, and only then answers every waiter.
//!
//! A failed group is answered by what is known of it: a failure while reading, or while writing
//! the write batch into the journal (fjall writes its end marker last, and a write error stops it
//! before that, so recovery discards the torn batch), leaves nothing stored: `Unavailable`. A
//! failure while flushing or fsyncing the journal may leave the group stored or not:
//! `OutcomeUnknown`. Either way the store stops taking writes and recovers (`recovery.rs`).
//!
//! [`EmbeddedOptions::max_group_events`]: super::EmbeddedOptions::max_group_events

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use fjall::{OwnedWriteBatch, PersistMode};
use rempart_domain::{Event, StoredEvent};
use tokio::sync::oneshot;

use super::Shared;
use super::outbox::{self, PushState};
use super::tables::{RECEIVED_KEY, Tables, describe};
use crate::{AppendOutcome, StoreError, codec};

/// Longest the committer waits for fjall to flush memtables when the write buffers are at their
/// bound; after that it writes anyway (a flush that never ends is a failure the write will meet).
const WRITE_STALL_MAX: Duration = Duration::from_secs(10);
/// How often a stalled committer looks at the write buffers again.
const WRITE_STALL_POLL: Duration = Duration::from_millis(2);

pub(super) struct Job {
    pub(super) batch: Vec<Event>,
    /// The batch's share of the queue's memory bound, given back once it is answered.
    pub(super) bytes: u64,
    pub(super) reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// Why a group failed, and so what its waiters are told.
enum GroupFailure {
    /// Nothing of the group can be on disk.
    NothingWritten(String),
    /// The group may or may not be on disk.
    OutcomeUnknown(String),
}

pub(super) struct Committer {
    pub(super) shared: Arc<Shared>,
    /// The `received` number of the last stored event.
    pub(super) received: u64,
    /// Groups failed since the last successful one (the recovery's back-off grows with it).
    pub(super) failures_in_a_row: u32,
}

impl Committer {
    /// Runs until the queue closes (the store is dropped).
    pub(super) fn run(mut self, rx: mpsc::Receiver<Job>) {
        loop {
            if self.shared.health.is_failed() {
                if !self.recover(&rx) {
                    return;
                }
                continue;
            }
            let Ok(first) = rx.recv() else {
                return;
            };
            let group = self.gather(first, &rx);
            self.commit_group(group);
        }
    }

    fn gather(&self, first: Job, rx: &mpsc::Receiver<Job>) -> Vec<Job> {
        let mut events = first.batch.len();
        let mut group = vec![first];
        while events < self.shared.options.max_group_events {
            match rx.try_recv() {
                Ok(job) => {
                    events += job.batch.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        group
    }

    fn commit_group(&mut self, group: Vec<Job>) {
        let started = Instant::now();
        let before = self.received;
        let result = {
            let shared = self.shared.clone();
            let tables = shared.tables.read().unwrap_or_else(PoisonError::into_inner);
            match tables.as_ref() {
                Some(tables) => {
                    self.keep_write_buffers_bounded(tables);
                    self.write(tables, &group)
                }
                None => Err(GroupFailure::NothingWritten(
                    "the database is not open".into(),
                )),
            }
        };
        let bytes: u64 = group.iter().map(|j| j.bytes).sum();
        match result {
            Ok(outcomes) => {
                self.failures_in_a_row = 0;
                self.shared
                    .stats
                    .record(group.len(), self.received - before);
                tracing::trace!(
                    batches = group.len(),
                    micros = started.elapsed().as_micros() as u64,
                    "group committed"
                );
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(failure) => {
                self.received = before;
                self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
                self.fail_group(group, failure);
            }
        }
        self.shared.queue.release(bytes);
    }

    fn fail_group(&self, group: Vec<Job>, failure: GroupFailure) {
        let reason = match &failure {
            GroupFailure::NothingWritten(e) => format!("write failed: {e}"),
            GroupFailure::OutcomeUnknown(e) => format!("write outcome unknown: {e}"),
        };
        tracing::error!(
            error = %reason,
            "the embedded store stops taking writes until a probe write succeeds and the store re-opens"
        );
        // Before answering: whoever sees its append fail sees the failed state too.
        self.shared.health.fail(reason);
        for job in group {
            let error = match &failure {
                GroupFailure::NothingWritten(e) => {
                    StoreError::Unavailable(format!("write failed, the batch was not stored: {e}"))
                }
                GroupFailure::OutcomeUnknown(e) => StoreError::OutcomeUnknown(e.clone()),
            };
            let _ = job.reply.send(Err(error));
        }
    }

    /// Keeps fjall's memtables within `write_buffer_bytes`: at half the bound every memtable is
    /// sealed and flushed in the background; at the bound the committer waits for the flushes
    /// (appends meanwhile fill the queue, whose bound refuses the excess).
    fn keep_write_buffers_bounded(&self, tables: &Tables) {
        let bound = self.shared.options.write_buffer_bytes;
        if tables.write_buffer_bytes() >= bound / 2 && !tables.flush_pending() {
            // A failure here is the engine's; the write that follows meets it too.
            if let Err(e) = tables.seal_memtables() {
                tracing::warn!(error = %e, "sealing memtables failed");
            }
        }
        let deadline = Instant::now() + WRITE_STALL_MAX;
        while tables.write_buffer_bytes() >= bound && Instant::now() < deadline {
            std::thread::sleep(WRITE_STALL_POLL);
        }
    }

    /// Writes a group as one atomic batch, with the push deliveries it makes (`outbox.rs`), and
    /// makes it durable with one fsync.
    fn write(&mut self, t: &Tables, group: &[Job]) -> Result<Vec<AppendOutcome>, GroupFailure> {
        let shared = self.shared.clone();
        // Held until the group is durable: no push write interleaves with the outbox's.
        let mut push = shared.push_state();
        let mut batch = t.db.batch();
        let (outcomes, watched_events) = self.stage_events(t, &push, &mut batch, group)?;
        let counters = if watched_events.is_empty() {
            None
        } else {
            let capacity = shared.options.outbox_capacity;
            outbox::plan(
                t,
                &mut batch,
                &push,
                &watched_events,
                capacity,
                outbox::now(),
            )
            .map_err(|e| GroupFailure::NothingWritten(format!("planning push deliveries: {e}")))?
        };
        if batch.is_empty() {
            return Ok(outcomes);
        }
        batch.insert(
            &t.meta,
            RECEIVED_KEY.to_vec(),
            self.received.to_be_bytes().to_vec(),
        );
        batch.commit().map_err(|e| {
            GroupFailure::NothingWritten(format!("writing to the journal: {}", describe(&e)))
        })?;
        t.db.persist(PersistMode::SyncAll).map_err(|e| {
            GroupFailure::OutcomeUnknown(format!(
                "flushing and fsyncing the journal: {}",
                describe(&e)
            ))
        })?;
        if let Some(counters) = counters {
            push.counters = counters;
        }
        Ok(outcomes)
    }

    /// Adds the group's new events to `batch` (duplicates by `event_id` left out) and returns
    /// each batch's outcome and, when some parcel is watched, each batch's accepted events of
    /// watched parcels (empty when none is).
    fn stage_events(
        &mut self,
        t: &Tables,
        push: &PushState,
        batch: &mut OwnedWriteBatch,
        group: &[Job],
    ) -> Result<(Vec<AppendOutcome>, Vec<Vec<StoredEvent>>), GroupFailure> {
        let nothing_written = |what: &'static str| {
            move |e: fjall::Error| GroupFailure::NothingWritten(format!("{what}: {}", describe(&e)))
        };
        let watching = !push.watched.is_empty();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut watched_events = Vec::new();
        for job in group {
            let mut outcome = AppendOutcome::default();
            let mut watched = Vec::new();
            for event in &job.batch {
                let id = event.event_id.as_str();
                let known = seen.contains(id)
                    || t.ids
                        .get(id.as_bytes())
                        .map_err(nothing_written("reading event ids"))?
                        .is_some();
                if known {
                    outcome.duplicates += 1;
                    continue;
                }
                seen.insert(id);
                self.received += 1;
                let tn = &event.tracking_number;
                let key = codec::event_key(tn, event.occurred_at, self.received);
                batch.insert(&t.events, key.to_vec(), codec::encode_value(event));
                batch.insert(&t.ids, id.as_bytes().to_vec(), key.to_vec());
                batch.insert(&t.parcels, tn.as_bytes().to_vec(), Vec::new());
                outcome.accepted += 1;
                if watching
                    && push.watched.contains(t, tn).map_err(|e| {
                        GroupFailure::NothingWritten(format!("reading subscriptions: {e}"))
                    })?
                {
                    watched.push(StoredEvent {
                        event: event.clone(),
                        received: self.received,
                    });
                }
            }
            outcomes.push(outcome);
            if watching {
                watched_events.push(watched);
            }
        }
        Ok((outcomes, watched_events))
    }
}
