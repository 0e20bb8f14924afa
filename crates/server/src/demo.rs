//! `serve --demo`: a deterministic, realistic data set (parcels moving through French sorting
//! centres, some delivered, some waiting at a pick-up point, some held by customs) written through
//! the normal store API, and a few tracking numbers to try.
//!
//! Which parcels exist and how far each got depends only on its index, so a restarted demo node
//! names the same numbers; only the dates follow the clock (histories end in the last days). The
//! first [`SHOWCASE`] parcels are scripted, one per state a customer can meet, so the numbers to
//! try exist in a data set of any size. What is printed and suggested is read back from the store
//! at start ([`prepare`]): after a restart, or once depots have scanned a demo parcel again, the
//! statuses shown are the stored ones, and numbers the store does not hold are not offered.

use rempart_domain::{Event, EventCode, EventId, ParcelView, Status, Timestamp, TrackingNumber};
use rempart_store::{EventStore, MAX_BATCH_EVENTS, StoreError};

const HOUR: i64 = 3_600_000_000;
const MINUTE: i64 = 60_000_000;

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

/// How a parcel's delivery ends, if it gets that far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Handed over at the address.
    Delivered,
    /// Nobody home, left at a pick-up point, collected there.
    PickedUp,
    /// Nobody home, never collected, sent back.
    Returned,
}

/// Where a history stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The whole story up to its ending.
    End,
    /// Right after the last event with this code.
    After(EventCode),
    /// Somewhere along the way (drawn from the parcel's generator).
    Anywhere,
}

/// What happens to one parcel.
#[derive(Debug, Clone, Copy)]
struct Plan {
    ending: Ending,
    /// Held by customs for a while (international parcels only).
    customs_hold: bool,
    /// A problem at the delivery site, then solved.
    problem: bool,
    stop: Stop,
}

/// The first parcels of every data set, one per state a customer can meet: in transit,
/// delivered, out for delivery, held by customs (parcel 3 is international), waiting at a pick-up
/// point, returned to the sender, delivery attempt failed.
const SHOWCASE: [Plan; 7] = {
    const fn plan(ending: Ending, customs_hold: bool, stop: Stop) -> Plan {
        Plan {
            ending,
            customs_hold,
            problem: false,
            stop,
        }
    }
    [
        plan(Ending::Delivered, false, Stop::After(EventCode::Et1)),
        plan(Ending::Delivered, false, Stop::End),
        plan(Ending::Delivered, false, Stop::After(EventCode::Md2)),
        plan(Ending::Delivered, true, Stop::After(EventCode::Do3)),
        plan(Ending::PickedUp, false, Stop::After(EventCode::Ag1)),
        plan(Ending::Returned, false, Stop::End),
        plan(Ending::PickedUp, false, Stop::After(EventCode::Nd1)),
    ]
};

impl Plan {
    /// The showcase's plan for the first parcels, a drawn one for the others: most delivered,
    /// a fifth through a pick-up point (a third of those returned), about 40% still on their way.
    fn of(index: usize, rng: &mut Rng) -> Plan {
        if let Some(&plan) = SHOWCASE.get(index) {
            return plan;
        }
        let customs_hold = rng.below(12) == 0;
        let problem = rng.below(25) == 0;
        let ending = match rng.below(10) {
            0 | 1 if rng.below(3) == 0 => Ending::Returned,
            0 | 1 => Ending::PickedUp,
            _ => Ending::Delivered,
        };
        let stop = if rng.below(10) < 4 {
            Stop::Anywhere
        } else {
            Stop::End
        };
        Plan {
            ending,
            customs_hold,
            problem,
            stop,
        }
    }
}

/// Parcel `index`'s number: international parcels (one in seven) are S10 numbers from abroad.
fn number(index: usize) -> TrackingNumber {
    if is_international(index) {
        let country = ORIGIN_COUNTRIES[index % ORIGIN_COUNTRIES.len()];
        TrackingNumber::s10("LA", (index as u32) % 100_000_000, country)
    } else {
        TrackingNumber::domestic(6, 'A', 1_000_000_000 + index as u64)
    }
    .expect("demo numbers are valid by construction")
}

fn is_international(index: usize) -> bool {
    index % 7 == 3
}

/// Colissimo, and Chronopost for one domestic parcel in five.
fn product(index: usize) -> &'static str {
    if !is_international(index) && index % 5 == 4 {
        "chronopost"
    } else {
        "colissimo"
    }
}

/// Builds parcel `index` of the data set; its history ends before `now`.
pub fn parcel(index: usize, now: Timestamp) -> DemoParcel {
    let mut rng = Rng(index as u64 ^ 0x5EED_0000_0000);
    let plan = Plan::of(index, &mut rng);
    let steps = route(&plan, is_international(index), &mut rng);
    let tracking_number = number(index);
    let product = product(index);
    // Histories end between 1 hour and 6 days ago, with a few hours between scans; written
    // from the newest back, so that scans at a delivery site can be moved into its opening hours.
    let mut at = now.0 - HOUR - (rng.below(6 * 24) as i64) * HOUR;
    let mut times = Vec::with_capacity(steps.len());
    for (code, _) in steps.iter().rev() {
        if at_delivery_site(*code) {
            at = within_opening_hours(at);
        }
        times.push(at);
        at -= HOUR * (2 + rng.below(14) as i64) + MINUTE * rng.below(60) as i64;
    }
    times.reverse();
    let events = steps
        .into_iter()
        .zip(times)
        .enumerate()
        .map(|(k, ((code, location), at))| Event {
            event_id: EventId::parse(&format!("demo:{index}:{k}")).expect("demo ids are valid"),
            tracking_number,
            code,
            occurred_at: Timestamp(at),
            location: (!location.is_empty()).then_some(location),
            product: Some(product.to_owned()),
        })
        .collect();
    DemoParcel {
        tracking_number,
        events,
    }
}

/// Scans made by a delivery site or a pick-up point (sorting centres work at night).
fn at_delivery_site(code: EventCode) -> bool {
    use EventCode::{Ag1, Di1, Di2, Md2, Nd1, Pb1, Pb2, Pc1, Re1};
    matches!(code, Pc1 | Pb1 | Pb2 | Md2 | Nd1 | Ag1 | Re1 | Di1 | Di2)
}

/// `at` (µs since the epoch), or an earlier instant between 08:00 and 18:59 Paris time (minutes
/// kept): the same day's 18:xx after closing, the day before's before opening. A second step
/// settles the rare case of a summer-time switch in between.
fn within_opening_hours(mut at: i64) -> i64 {
    for _ in 0..3 {
        let hour = i64::from(rempart_views::paris::local(Timestamp(at)).hour());
        at -= match hour {
            8..=18 => return at,
            19.. => (hour - 18) * HOUR,
            _ => (hour + 6) * HOUR,
        };
    }
    at
}

/// The scans of a parcel following `plan`, oldest first, with their places.
fn route(plan: &Plan, international: bool, rng: &mut Rng) -> Vec<(EventCode, String)> {
    const HUB: &str = "Roissy CDG Hub international";
    let mut steps: Vec<(EventCode, String)> = Vec::new();
    let origin = rng.pick(SORTING_CENTRES).to_owned();
    let destination = rng.pick(SORTING_CENTRES).to_owned();
    let site = rng.pick(DELIVERY_SITES).to_owned();
    if international {
        steps.push((EventCode::Pc2, String::new()));
        steps.push((EventCode::Et2, String::new()));
        steps.push((EventCode::Et3, HUB.into()));
        steps.push((EventCode::Do1, HUB.into()));
        if plan.customs_hold {
            steps.push((EventCode::Do3, HUB.into()));
        }
        steps.push((EventCode::Do2, HUB.into()));
    } else {
        steps.push((EventCode::Dr1, String::new()));
        steps.push((EventCode::Pc1, site.clone()));
        steps.push((EventCode::Et1, origin));
    }
    steps.push((EventCode::Et1, destination));
    if plan.problem {
        steps.push((EventCode::Pb1, site.clone()));
        steps.push((EventCode::Pb2, site.clone()));
    }
    steps.push((EventCode::Md2, site.clone()));
    if plan.ending != Ending::Delivered {
        steps.push((EventCode::Nd1, site.clone()));
        steps.push((EventCode::Ag1, rng.pick(PICKUP_POINTS).to_owned()));
    }
    match plan.ending {
        Ending::Delivered => steps.push((EventCode::Di1, site)),
        Ending::PickedUp => steps.push((EventCode::Di1, rng.pick(PICKUP_POINTS).to_owned())),
        Ending::Returned => {
            steps.push((EventCode::Re1, site));
            steps.push((EventCode::Di2, rng.pick(DELIVERY_SITES).to_owned()));
        }
    }
    let keep = match plan.stop {
        Stop::End => steps.len(),
        Stop::After(code) => steps
            .iter()
            .rposition(|(c, _)| *c == code)
            .map_or(steps.len(), |i| i + 1),
        Stop::Anywhere => 1 + rng.below(steps.len() - 1),
    };
    steps.truncate(keep);
    steps
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

/// A number to try, as the store holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub tracking_number: TrackingNumber,
    /// The status of its latest stored event.
    pub status: Status,
    pub international: bool,
}

/// What `--demo` found or did at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Events written now; `None` when the store already held data (left as it was).
    pub written: Option<usize>,
    /// The showcase parcels the store holds, with their stored status.
    pub samples: Vec<Sample>,
}

impl Prepared {
    /// The numbers to suggest on the home page.
    pub fn numbers(&self) -> Vec<TrackingNumber> {
        self.samples.iter().map(|s| s.tracking_number).collect()
    }
}

/// `--demo` at start: writes `parcels` demo parcels into an empty store (a store holding
/// anything is left as it is), then reads the showcase parcels back.
pub async fn prepare(
    store: &dyn EventStore,
    parcels: usize,
    now: Timestamp,
) -> Result<Prepared, StoreError> {
    let written = if store_is_empty(store).await? {
        let started = std::time::Instant::now();
        let events = fill(store, parcels, now).await?;
        tracing::info!(
            parcels,
            events,
            took_ms = started.elapsed().as_millis() as u64,
            "demo data written"
        );
        Some(events)
    } else {
        None
    };
    Ok(Prepared {
        written,
        samples: samples_in_store(store).await?,
    })
}

/// The showcase parcels the store holds, each with the status of its latest stored event:
/// whatever wrote them (this data set, an earlier one of another size, depots since), this is
/// what a lookup of each will show.
pub async fn samples_in_store(store: &dyn EventStore) -> Result<Vec<Sample>, StoreError> {
    let mut samples = Vec::with_capacity(SHOWCASE.len());
    for index in 0..SHOWCASE.len() {
        let tn = number(index);
        let events = store.parcel_events(&tn).await?;
        if let Some(view) = ParcelView::build(tn, events) {
            samples.push(Sample {
                tracking_number: tn,
                status: view.status,
                international: is_international(index),
            });
        }
    }
    Ok(samples)
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
            assert!(
                a.events
                    .windows(2)
                    .all(|w| w[0].occurred_at < w[1].occurred_at)
            );
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

    /// The statuses the showcase is written for, in its order.
    const SHOWN: [Status; 7] = [
        Status::InTransit,
        Status::Delivered,
        Status::OutForDelivery,
        Status::Exception,
        Status::AvailableForPickup,
        Status::Returned,
        Status::AttemptFailed,
    ];

    #[test]
    fn delivery_sites_scan_during_opening_hours() {
        for index in 0..500 {
            for e in parcel(index, NOW).events {
                let hour = rempart_views::paris::local(e.occurred_at).hour();
                if at_delivery_site(e.code) {
                    assert!((8..19).contains(&hour), "{index}: {:?} at {hour}h", e.code);
                }
            }
        }
    }

    #[test]
    fn the_showcase_shows_each_state_a_customer_can_meet() {
        for (index, status) in SHOWN.into_iter().enumerate() {
            let p = parcel(index, NOW);
            let last = p.events.last().unwrap();
            assert_eq!(last.code.status(), status, "parcel {index}");
        }
        assert!(is_international(3) && !is_international(1));
    }

    fn store(dir: &std::path::Path) -> rempart_store::embedded::EmbeddedStore {
        rempart_store::embedded::EmbeddedStore::open(
            dir,
            rempart_store::embedded::EmbeddedOptions::default(),
        )
        .unwrap()
    }

    /// Issue: a restarted demo printed the generator's statuses, not the stored ones. Numbers to
    /// try now come from the store: only those it holds, with what a lookup shows.
    #[tokio::test]
    async fn numbers_to_try_are_the_stored_ones_with_their_stored_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        // A small data set: only its first three parcels exist, and all three are offered.
        let first = prepare(&store, 3, NOW).await.unwrap();
        assert!(first.written.unwrap() > 0);
        let statuses: Vec<Status> = first.samples.iter().map(|s| s.status).collect();
        assert_eq!(statuses, SHOWN[..3]);
        // A restart asking for a bigger set writes nothing and offers no number it lacks.
        let again = prepare(&store, 20_000, NOW).await.unwrap();
        assert_eq!(again.written, None);
        assert_eq!(again.samples, first.samples);
        // A depot delivers parcel 0: the next start says so.
        let tn = first.samples[0].tracking_number;
        let delivered = Event {
            event_id: EventId::parse("depot:1").unwrap(),
            tracking_number: tn,
            code: EventCode::Di1,
            occurred_at: Timestamp(NOW.0 - HOUR / 2),
            location: Some("Paris 15 Vaugirard".into()),
            product: None,
        };
        let _ = store.append(vec![delivered]).await.unwrap();
        let after = prepare(&store, 20_000, NOW).await.unwrap();
        assert_eq!(after.samples[0].status, Status::Delivered);
        assert_eq!(after.numbers()[..3], first.numbers()[..3]);
    }

    #[tokio::test]
    async fn a_full_data_set_offers_the_whole_showcase() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let prepared = prepare(&store, 50, NOW).await.unwrap();
        let statuses: Vec<Status> = prepared.samples.iter().map(|s| s.status).collect();
        assert_eq!(statuses, SHOWN);
        assert_eq!(
            prepared.samples.iter().filter(|s| s.international).count(),
            1
        );
    }
}
