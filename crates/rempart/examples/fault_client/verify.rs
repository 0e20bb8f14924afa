//! The verify step: opens the store the node wrote (embedded, after the node is stopped, or the
//! PostgreSQL database) through the same `EventStore` API the node uses, reads every parcel it
//! holds, and checks every event against `acks.log`:
//!
//! - **lost**: an event of an acknowledged batch that is not there;
//! - **duplicated**: an `event_id` stored more than once;
//! - **partial**: a batch (acknowledged or not) of which some events are there and some not;
//! - **unexpected**: an event this run never sent (another id, a parcel that does not match its
//!   id, a batch past the last one attempted).
//!
//! Unacknowledged batches stored whole are counted too: the client never learnt they were stored
//! (the node died, or said something else, before answering).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rempart_domain::{StoredEvent, TrackingNumber};
use rempart_store::{EventStore, MAX_PAGE};

use crate::batch::{Place, Shape};
use crate::record::Acks;

/// Parcels read at once.
const READS_IN_FLIGHT: usize = 64;

/// What one batch has in the store.
struct Seen {
    /// One bit per event of the batch (`parcel · events + event`).
    bits: Vec<u64>,
    present: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub acked_batches: u64,
    pub acks_checked: u64,
    pub lost: u64,
    pub lost_batches: u64,
    pub duplicated: u64,
    pub partial: u64,
    pub unexpected: u64,
    pub unacked_stored: u64,
    pub parcels_read: u64,
    pub events_read: u64,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.lost + self.duplicated + self.partial + self.unexpected == 0
    }

    pub fn line(&self) -> String {
        format!(
            "acks_checked={} acked_batches={} lost={} lost_batches={} duplicated={} partial={} unexpected={} unacked_stored={} parcels_read={} events_read={}",
            self.acks_checked,
            self.acked_batches,
            self.lost,
            self.lost_batches,
            self.duplicated,
            self.partial,
            self.unexpected,
            self.unacked_stored,
            self.parcels_read,
            self.events_read
        )
    }
}

/// Opens `store` (`embedded:DIR` for an embedded store's directory, or a `postgres://` URL).
pub async fn open(store: &str) -> Result<Arc<dyn EventStore>, String> {
    if store.starts_with("postgres://") || store.starts_with("postgresql://") {
        let pg = rempart_store_pg::PgStore::connect(store, rempart_store_pg::PgOptions::default())
            .await
            .map_err(|e| format!("{store}: {e}"))?;
        return Ok(Arc::new(pg));
    }
    let dir = store
        .strip_prefix("embedded:")
        .ok_or("the store is embedded:DIR or a postgres:// URL")?;
    // Opening creates a missing directory: an empty store would pass as "everything lost".
    if !std::path::Path::new(dir).join("db").is_dir() {
        return Err(format!("{dir} holds no embedded store"));
    }
    let embedded = rempart_store::embedded::EmbeddedStore::open(
        std::path::Path::new(dir),
        rempart_store::embedded::EmbeddedOptions::default(),
    )
    .map_err(|e| format!("{dir}: {e}"))?;
    Ok(Arc::new(embedded))
}

pub async fn run(store: Arc<dyn EventStore>, acks: &Acks) -> Result<Report, String> {
    let shape = acks.shape.ok_or("acks.log has no shape")?;
    let mut report = Report::default();
    let mut seen: HashMap<(u64, u64), Seen> = HashMap::new();
    let mut after = None;
    loop {
        let page = store
            .tracking_numbers(after, MAX_PAGE)
            .await
            .map_err(|e| format!("listing parcels: {e}"))?;
        let Some(last) = page.last().copied() else {
            break;
        };
        after = Some(last);
        for chunk in page.chunks(READS_IN_FLIGHT) {
            let mut reads = tokio::task::JoinSet::new();
            for tn in chunk.iter().copied() {
                let store = store.clone();
                reads.spawn(async move { (tn, store.parcel_events(&tn).await) });
            }
            while let Some(read) = reads.join_next().await {
                let (tn, events) = read.map_err(|e| format!("read task: {e}"))?;
                let events = events.map_err(|e| format!("reading {tn}: {e}"))?;
                report.parcels_read += 1;
                report.events_read += events.len() as u64;
                take_parcel(&shape, acks, &tn, &events, &mut seen, &mut report);
            }
        }
    }
    settle(&shape, acks, &seen, &mut report);
    Ok(report)
}

/// Marks a parcel's events in their batches' bitmaps.
fn take_parcel(
    shape: &Shape,
    acks: &Acks,
    tn: &TrackingNumber,
    events: &[StoredEvent],
    seen: &mut HashMap<(u64, u64), Seen>,
    report: &mut Report,
) {
    let parcel = shape.parcel_of(tn);
    for stored in events {
        let place = shape.place_of(stored.event.event_id.as_str());
        let Some(place) = place.filter(|p| {
            parcel == Some(Place { event: 0, ..*p }) && p.batch < acks.attempted(p.client)
        }) else {
            if report.unexpected < 5 {
                eprintln!(
                    "unexpected event {:?} on parcel {tn}",
                    stored.event.event_id.as_str()
                );
            }
            report.unexpected += 1;
            continue;
        };
        let words = shape.batch_events().div_ceil(64) as usize;
        let batch = seen
            .entry((place.client, place.batch))
            .or_insert_with(|| Seen {
                bits: vec![0; words],
                present: 0,
            });
        let bit = place.parcel * shape.events + place.event;
        let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
        if batch.bits[word] & mask != 0 {
            report.duplicated += 1;
        } else {
            batch.bits[word] |= mask;
            batch.present += 1;
        }
    }
}

/// Counts lost events and partial batches once every parcel is read.
fn settle(shape: &Shape, acks: &Acks, seen: &HashMap<(u64, u64), Seen>, report: &mut Report) {
    let size = shape.batch_events();
    for key in acks.acked.keys() {
        report.acked_batches += 1;
        report.acks_checked += size;
        let present = seen.get(key).map_or(0, |s| s.present);
        if present < size {
            if report.lost_batches < 5 {
                eprintln!(
                    "acknowledged batch {}:{} has {present} of its {size} events",
                    key.0, key.1
                );
            }
            report.lost += size - present;
            report.lost_batches += 1;
        }
    }
    for (key, batch) in seen {
        if batch.present < size {
            if report.partial < 5 {
                eprintln!(
                    "batch {}:{} is partly stored: {} of {size} events",
                    key.0, key.1, batch.present
                );
            }
            report.partial += 1;
        } else if !acks.acked.contains_key(key) {
            report.unacked_stored += 1;
        }
    }
}

pub fn timed(acks: &Acks, store: &str, runtime: &tokio::runtime::Runtime) -> Result<bool, String> {
    let started = Instant::now();
    let report = runtime.block_on(async {
        let store = open(store).await?;
        run(store, acks).await
    })?;
    println!(
        "verify: {} seconds={:.1} {}",
        report.line(),
        started.elapsed().as_secs_f64(),
        if report.clean() { "OK" } else { "FAILED" }
    );
    Ok(report.clean())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rempart_domain::{Event, Timestamp, parse_event_line};

    fn events(shape: &Shape, c: u64, b: u64) -> Vec<Event> {
        let now = Timestamp(1_767_000_000_000_000);
        shape
            .body(c, b)
            .lines()
            .map(|l| parse_event_line(l.as_bytes(), now).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn lost_partial_unexpected_and_unacknowledged_batches_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape::new(5, 3, 4).unwrap();
        let store: Arc<dyn EventStore> = Arc::new(
            rempart_store::embedded::EmbeddedStore::open(dir.path(), Default::default()).unwrap(),
        );
        // 0:0 and 0:1 stored and acknowledged; 0:2 acknowledged but missing; 0:3 stored, its
        // answer lost; 1:0 half stored; one event of another run on a parcel of 1:1.
        for b in [0, 1, 3] {
            let outcome = store.append(events(&shape, 0, b)).await.unwrap();
            assert_eq!(outcome.accepted, 12);
        }
        let half = events(&shape, 1, 0)[..6].to_vec();
        assert_eq!(store.append(half).await.unwrap().accepted, 6);
        let mut stray = events(&shape, 1, 1).remove(0);
        stray.event_id = rempart_domain::EventId::parse("f:6:1:1:0:0").unwrap();
        assert_eq!(store.append(vec![stray]).await.unwrap().accepted, 1);
        let acks = Acks {
            shape: Some(shape),
            clients: 2,
            acked: [((0, 0), (12, 0)), ((0, 1), (12, 0)), ((0, 2), (12, 0))].into(),
            next: [(0, 4), (1, 2)].into(),
        };
        let report = run(store, &acks).await.unwrap();
        assert_eq!(
            (
                report.acked_batches,
                report.acks_checked,
                report.lost,
                report.lost_batches
            ),
            (3, 36, 12, 1)
        );
        assert_eq!(
            (report.partial, report.unexpected, report.duplicated),
            (1, 1, 0)
        );
        assert_eq!(report.unacked_stored, 1);
        assert_eq!(report.events_read, 12 * 3 + 6 + 1);
        assert!(!report.clean());
    }
}
