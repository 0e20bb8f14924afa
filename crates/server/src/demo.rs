//! `serve --demo`: a deterministic, realistic data set (parcels moving through French sorting
//! centres, some delivered, some waiting at a pick-up point, some held by customs) written through
//! the normal store API, and a few tracking numbers to try.
//!
//! Which parcels exist and how far each got depends only on its index, so a restarted demo node
//! prints the same numbers; only the dates follow the clock (histories end in the last days).

use rempart_domain::{Event, EventCode, EventId, Status, Timestamp, TrackingNumber};
use rempart_store::{EventStore, MAX_BATCH_EVENTS, StoreError};

const HOUR: i64 = 3_600_000_000;

const SORTING_CENTRES: &[&str] = &[
    "Paris Nord PFC (Gonesse)",
    "Wissous PFC",
    "Chilly-Mazarin PFC",
    "Lyon Corbas PFC",
    "Marseille Vitrolles PFC",
    "Bordeaux Cestas PFC",
    "Toulouse Saint-Jory PFC",
    "Lille Lesquin PFC",
    "Nantes Carquefou PFC",
    "Rennes Le Rheu PFC",
    "Strasbourg Entzheim PFC",
    "Nice Saint-Isidore PFC",
    "Montpellier Fréjorgues PFC",
    "Dijon Longvic PFC",
    "Clermont-Ferrand PFC",
    "Rouen Saint-Étienne-du-Rouvray PFC",
];
const DELIVERY_SITES: &[&str] = &[
    "Paris 15 Vaugirard",
    "Paris 11 Voltaire",
    "Lyon 3 Part-Dieu",
    "Marseille 8 Prado",
    "Bordeaux Bastide",
    "Toulouse Capitole",
    "Lille Fives",
    "Nantes Chantenay",
    "Rennes Colombier",
    "Strasbourg Neudorf",
    "Nice Libération",
    "Montpellier Antigone",
    "Dijon Centre",
    "Grenoble Championnet",
    "Angers Saint-Serge",
    "Brest Saint-Martin",
];
const PICKUP_POINTS: &[&str] = &[
    "Relais Pickup, Paris 18",
    "Bureau de poste, Lyon 7",
    "Consigne Pickup, Marseille Saint-Charles",
    "Relais Pickup, Toulouse Minimes",
    "Bureau de poste, Lille Wazemmes",
];
const ORIGIN_COUNTRIES: &[&str] = &["DE", "IT", "ES", "BE", "GB", "CN", "US", "CH", "NL", "PL"];

/// A small deterministic generator (SplitMix64): the demo must not depend on a random seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// One demo parcel: its number and its history (oldest first).
pub struct DemoParcel {
    pub tracking_number: TrackingNumber,
    pub events: Vec<Event>,
}

/// Builds parcel `index` of the data set; its history ends before `now`.
pub fn parcel(index: usize, now: Timestamp) -> DemoParcel {
    let mut rng = Rng(index as u64 ^ 0x5EED_0000_0000);
    let international = index % 7 == 3;
    let tracking_number = if international {
        let country = ORIGIN_COUNTRIES[index % ORIGIN_COUNTRIES.len()];
        TrackingNumber::s10("LA", (index as u32) % 100_000_000, country)
    } else {
        TrackingNumber::domestic(6, 'A', 1_000_000_000 + index as u64)
    }
    .expect("demo numbers are valid by construction");
    let product = if international {
        "international"
    } else {
        "colissimo"
    };

    let mut steps: Vec<(EventCode, String)> = Vec::new();
    let origin = rng.pick(SORTING_CENTRES).to_owned();
    let destination = rng.pick(SORTING_CENTRES).to_owned();
    let site = rng.pick(DELIVERY_SITES).to_owned();
    if international {
        steps.push((EventCode::Pc2, String::new()));
        steps.push((EventCode::Et2, String::new()));
        steps.push((EventCode::Et3, "Roissy CDG Hub international".into()));
        steps.push((EventCode::Do1, "Roissy CDG Hub international".into()));
        if rng.below(12) == 0 {
            steps.push((EventCode::Do3, "Roissy CDG Hub international".into()));
        }
        steps.push((EventCode::Do2, "Roissy CDG Hub international".into()));
    } else {
        steps.push((EventCode::Dr1, String::new()));
        steps.push((EventCode::Pc1, site.clone()));
        steps.push((EventCode::Et1, origin));
    }
    steps.push((EventCode::Et1, destination));
    if rng.below(25) == 0 {
        steps.push((EventCode::Pb1, site.clone()));
        steps.push((EventCode::Pb2, site.clone()));
    }
    steps.push((EventCode::Md2, site.clone()));
    match rng.below(10) {
        0 | 1 => {
            steps.push((EventCode::Nd1, site.clone()));
            steps.push((EventCode::Ag1, rng.pick(PICKUP_POINTS).to_owned()));
            if rng.below(3) == 0 {
                steps.push((EventCode::Re1, site.clone()));
                steps.push((EventCode::Di2, rng.pick(DELIVERY_SITES).to_owned()));
            } else {
                steps.push((EventCode::Di1, rng.pick(PICKUP_POINTS).to_owned()));
            }
        }
        _ => steps.push((EventCode::Di1, site)),
    }
    // About 40% of parcels are still on their way: cut the history short.
    if rng.below(10) < 4 {
        let keep = 1 + rng.below(steps.len() - 1);
        steps.truncate(keep);
    }
    // Histories end between 1 hour and 6 days ago, with a few hours between scans.
    let gaps: Vec<i64> = steps
        .iter()
        .map(|_| HOUR * (2 + rng.below(14) as i64))
        .collect();
    let span: i64 = gaps.iter().sum();
    let end = now.0 - HOUR - (rng.below(6 * 24) as i64) * HOUR;
    let mut at = end - span;
    let events = steps
        .into_iter()
        .zip(gaps)
        .enumerate()
        .map(|(k, ((code, location), gap))| {
            at += gap;
            Event {
                event_id: EventId::parse(&format!("demo:{index}:{k}")).expect("demo ids are valid"),
                tracking_number,
                code,
                occurred_at: Timestamp(at),
                location: (!location.is_empty()).then_some(location),
                product: Some(product.to_owned()),
            }
        })
        .collect();
    DemoParcel {
        tracking_number,
        events,
    }
}

/// Whether the store holds nothing yet.
pub async fn store_is_empty(store: &dyn EventStore) -> Result<bool, StoreError> {
    Ok(store.tracking_numbers(None, 1).await?.is_empty())
}

/// Writes `parcels` demo parcels; returns the number of events written.
pub async fn fill(
    store: &dyn EventStore,
    parcels: usize,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let mut batch = Vec::with_capacity(MAX_BATCH_EVENTS);
    let mut written = 0;
    for index in 0..parcels {
        let parcel = parcel(index, now);
        if batch.len() + parcel.events.len() > MAX_BATCH_EVENTS {
            written += batch.len();
            let _ = store.append(std::mem::take(&mut batch)).await?;
        }
        batch.extend(parcel.events);
    }
    written += batch.len();
    if !batch.is_empty() {
        let _ = store.append(batch).await?;
    }
    Ok(written)
}

/// A few numbers to try, one per interesting final state: (number, status of its last event).
pub fn samples(parcels: usize, now: Timestamp) -> Vec<(TrackingNumber, Status, bool)> {
    let wanted = [
        Status::Delivered,
        Status::InTransit,
        Status::OutForDelivery,
        Status::AvailableForPickup,
        Status::Exception,
        Status::Returned,
    ];
    let mut found: Vec<(TrackingNumber, Status, bool)> = Vec::new();
    for index in 0..parcels.min(5_000) {
        let p = parcel(index, now);
        let Some(last) = p.events.last() else {
            continue;
        };
        let status = last.code.status();
        let international = p
            .tracking_number
            .as_str()
            .ends_with(|c: char| c.is_ascii_alphabetic());
        if wanted.contains(&status)
            && !found
                .iter()
                .any(|(_, s, i)| *s == status && *i == international)
        {
            found.push((p.tracking_number, status, international));
        }
    }
    found.sort_by_key(|(_, s, i)| (wanted.iter().position(|w| w == s), *i));
    found.truncate(8);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_767_000_000_000_000);

    #[test]
    fn demo_parcels_are_valid_deterministic_and_in_the_past() {
        for index in 0..2_000 {
            let a = parcel(index, NOW);
            let b = parcel(index, NOW);
            assert_eq!(a.tracking_number, b.tracking_number);
            assert_eq!(a.events, b.events);
            assert!(!a.events.is_empty());
            for e in &a.events {
                assert!(e.occurred_at < NOW);
                // Every event survives the ingest line parser.
                let line = e.to_json_line();
                assert_eq!(
                    &rempart_domain::parse_event_line(line.as_bytes(), NOW).unwrap(),
                    e
                );
            }
        }
        let numbers: std::collections::HashSet<_> = (0..20_000)
            .map(|i| parcel(i, NOW).tracking_number)
            .collect();
        assert_eq!(numbers.len(), 20_000);
    }

    #[test]
    fn samples_cover_several_statuses() {
        let samples = samples(20_000, NOW);
        assert!(samples.len() >= 5, "{samples:?}");
    }
}
