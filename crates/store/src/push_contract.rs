//! The contract every [`PushStore`] backend keeps together with its [`EventStore`] (feature
//! `contract`): `push_contract::run_all(|capacity| async move { fresh_store(capacity) }).await`,
//! where `capacity` is the outbox capacity the fresh, empty store must have. Each check panics
//! with a message naming what broke.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rempart_domain::{Event, EventCode, EventId, Status, Timestamp, TrackingNumber};

use crate::EventStore;
use crate::contract::number;
use crate::push::*;

/// A far-future "now" for leases: every delivery is due by then.
const LATER: Timestamp = Timestamp(4_000_000_000_000_000);
const LEASE: Duration = Duration::from_secs(60);
const BIG: u64 = 1_000;

/// Runs every check, each on a fresh empty store made by `fresh(outbox_capacity)`.
pub async fn run_all<S, F, Fut>(mut fresh: F)
where
    S: EventStore + PushStore,
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = S>,
{
    a_change_of_a_subscribed_parcel_makes_one_delivery(&fresh(BIG).await).await;
    unsubscribed_parcels_make_nothing(&fresh(BIG).await).await;
    leases_are_fenced(&fresh(BIG).await).await;
    retries_parks_and_replays(&fresh(BIG).await).await;
    a_full_outbox_counts_the_overflow_and_ingest_goes_on(&fresh(3).await).await;
    email_alerts_from_request_to_purge(&fresh(BIG).await).await;
    subscriptions_list_limit_and_go(&fresh(BIG).await).await;
    old_deliveries_are_purged(&fresh(BIG).await).await;
    concurrent_appends_notify_a_chain_of_changes(Arc::new(fresh(BIG).await)).await;
}

/// An event of parcel `n` with a code, at `minute` after 2025-12-01.
pub fn scan(id: &str, n: u64, code: EventCode, minute: i64) -> Event {
    Event {
        event_id: EventId::parse(id).expect("valid id"),
        tracking_number: number(n),
        code,
        occurred_at: Timestamp(1_764_547_200_000_000 + minute * 60_000_000),
        location: Some("Paris 15".into()),
        product: None,
    }
}

/// A time in 2065: after every delivery's creation (wall clock), before [`LATER`].
fn t(micros: i64) -> Timestamp {
    Timestamp(3_000_000_000_000_000 + micros)
}

async fn endpoint<S: PushStore>(store: &S, owner: u64) -> Endpoint {
    store
        .create_endpoint(
            NewEndpoint {
                owner: KeyId(owner),
                url: format!("https://shop{owner}.example/hook"),
                secret: SecretRef {
                    key_version: 1,
                    salt: [owner as u8; SALT_LEN],
                },
            },
            t(0),
        )
        .await
        .expect("create endpoint")
}

/// An endpoint of key 1 watching parcels `numbers`.
async fn watching<S: PushStore>(store: &S, numbers: &[u64]) -> Endpoint {
    let ep = endpoint(store, 1).await;
    let tns: Vec<TrackingNumber> = numbers.iter().map(|n| number(*n)).collect();
    let outcome = store
        .subscribe(KeyId(1), ep.id, &tns, t(0))
        .await
        .expect("subscribe");
    assert_eq!(outcome.created, numbers.len(), "subscribe counts");
    ep
}

async fn append<S: EventStore>(store: &S, events: Vec<Event>) {
    let _ = store.append(events).await.expect("append acknowledged");
}

async fn lease_all<S: PushStore>(store: &S) -> Vec<Delivery> {
    store
        .lease_due(LATER, LEASE, MAX_LEASE)
        .await
        .expect("lease_due")
}

async fn pending<S: PushStore>(store: &S) -> u64 {
    store.outbox_stats().await.expect("stats").pending
}

pub async fn a_change_of_a_subscribed_parcel_makes_one_delivery<S: EventStore + PushStore>(
    store: &S,
) {
    let ep = watching(store, &[1]).await;
    let first = vec![
        scan("d:1", 1, EventCode::Pc1, 10),
        scan("d:2", 1, EventCode::Et1, 20),
        scan("d:3", 2, EventCode::Pc1, 10),
    ];
    append(store, first.clone()).await;
    let leased = lease_all(store).await;
    assert_eq!(leased.len(), 1, "one delivery for one changed parcel");
    let d = &leased[0];
    assert_eq!(
        d.channel,
        Channel::Webhook {
            owner: KeyId(1),
            endpoint: ep.id
        }
    );
    assert_eq!(d.notice.event, first[1], "the newest event is the cause");
    assert_eq!(
        (d.notice.previous, d.notice.status),
        (None, Status::InTransit)
    );
    assert!(store.ack(d.lease(), LATER).await.expect("ack"));
    append(store, first).await;
    assert_eq!(pending(store).await, 0, "a batch sent twice notifies once");
    append(store, vec![scan("d:late", 1, EventCode::Md2, 5)]).await;
    append(store, vec![scan("d:same", 1, EventCode::Et3, 30)]).await;
    assert_eq!(pending(store).await, 0, "late events and same status: none");
    append(store, vec![scan("d:4", 1, EventCode::Md2, 40)]).await;
    let next = lease_all(store).await;
    assert_eq!(next.len(), 1, "a new status: one more delivery");
    assert_eq!(next[0].notice.previous, Some(Status::InTransit));
    assert_eq!(next[0].notice.event.event_id.as_str(), "d:4");
    assert!(next[0].id != d.id, "each delivery has its own id");
}

pub async fn unsubscribed_parcels_make_nothing<S: EventStore + PushStore>(store: &S) {
    let ep = watching(store, &[1, 2]).await;
    let removed = store
        .unsubscribe(KeyId(1), Some(ep.id), &[number(2)])
        .await
        .expect("unsubscribe");
    assert_eq!(removed, 1);
    append(
        store,
        vec![
            scan("u:1", 2, EventCode::Pc1, 1),
            scan("u:2", 3, EventCode::Pc1, 1),
        ],
    )
    .await;
    assert_eq!(pending(store).await, 0, "no subscription, no delivery");
    append(store, vec![scan("u:3", 1, EventCode::Pc1, 1)]).await;
    assert_eq!(pending(store).await, 1);
    assert!(
        store
            .delete_endpoint(KeyId(1), ep.id)
            .await
            .expect("delete")
    );
    append(store, vec![scan("u:4", 1, EventCode::Md2, 2)]).await;
    assert_eq!(
        pending(store).await,
        1,
        "a deleted endpoint's parcels: none"
    );
}

pub async fn leases_are_fenced<S: EventStore + PushStore>(store: &S) {
    watching(store, &[1]).await;
    append(store, vec![scan("l:1", 1, EventCode::Pc1, 1)]).await;
    let now = t(0);
    let first = store.lease_due(now, LEASE, 10).await.expect("lease");
    assert_eq!(first.len(), 1);
    assert!(
        matches!(first[0].state, DeliveryState::Leased { .. }),
        "{:?}",
        first[0].state
    );
    assert!(
        store
            .lease_due(now, LEASE, 10)
            .await
            .expect("lease")
            .is_empty(),
        "a leased delivery is not handed out twice"
    );
    let expired = Timestamp(now.0 + 61_000_000);
    let second = store.lease_due(expired, LEASE, 10).await.expect("lease");
    assert_eq!(second.len(), 1, "due again once its lease expired");
    assert_eq!(second[0].id, first[0].id);
    assert_ne!(second[0].lease_token, first[0].lease_token);
    let stale = first[0].lease();
    assert!(!store.ack(stale, expired).await.expect("ack"), "stale ack");
    assert!(!store.retry(stale, expired, "x").await.expect("retry"));
    assert!(!store.release(stale, expired).await.expect("release"));
    assert!(!store.park(stale, expired, "x").await.expect("park"));
    assert!(store.ack(second[0].lease(), expired).await.expect("ack"));
    assert!(
        !store.ack(second[0].lease(), expired).await.expect("ack"),
        "an acknowledged delivery is no longer leased"
    );
    assert_eq!(pending(store).await, 0);
}

pub async fn retries_parks_and_replays<S: EventStore + PushStore>(store: &S) {
    watching(store, &[1]).await;
    let other = endpoint(store, 2).await;
    append(store, vec![scan("r:1", 1, EventCode::Pc1, 1)]).await;
    let d = lease_all(store).await.remove(0);
    let retry_at = t(10_000_000);
    assert!(
        store
            .retry(d.lease(), retry_at, "HTTP 500")
            .await
            .expect("retry")
    );
    assert!(
        store
            .lease_due(t(0), LEASE, 10)
            .await
            .expect("lease")
            .is_empty(),
        "not yet due"
    );
    let again = store.lease_due(retry_at, LEASE, 10).await.expect("lease");
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 500"));
    assert!(
        store
            .release(again[0].lease(), retry_at)
            .await
            .expect("release")
    );
    let again = store.lease_due(retry_at, LEASE, 10).await.expect("lease");
    assert_eq!(again[0].attempts, 1, "a release counts no attempt");
    assert!(
        store
            .park(again[0].lease(), retry_at, "gone")
            .await
            .expect("park")
    );
    let stats = store.outbox_stats().await.expect("stats");
    assert_eq!((stats.pending, stats.dead), (0, 1));
    let dead = store
        .dead_letters(Some(KeyId(1)), None, 10)
        .await
        .expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("gone"));
    let theirs = store
        .dead_letters(Some(other.owner), None, 10)
        .await
        .expect("dead");
    assert!(
        theirs.is_empty(),
        "another key's dead letters are not listed"
    );
    assert!(
        store
            .dead_letters(None, Some(d.id), 10)
            .await
            .expect("dead")
            .is_empty()
    );
    let replayed = store
        .replay(
            Replay::Dead {
                owner: Some(KeyId(1)),
                ids: None,
            },
            LATER,
        )
        .await
        .expect("replay");
    assert_eq!(replayed, 1);
    let back = lease_all(store).await;
    assert_eq!((back.len(), back[0].id, back[0].attempts), (1, d.id, 0));
    assert_eq!(
        back[0].retry_since, LATER,
        "a replay starts a new retry window"
    );
    assert_eq!(back[0].notice.event, d.notice.event, "same event, same ids");
    assert!(store.ack(back[0].lease(), LATER).await.expect("ack"));
    let recent = Replay::Recent {
        owner: KeyId(1),
        endpoint: None,
        since: Timestamp(0),
    };
    assert_eq!(store.replay(recent, LATER).await.expect("replay"), 1);
    let not_mine = Replay::Recent {
        owner: other.owner,
        endpoint: None,
        since: Timestamp(0),
    };
    assert_eq!(store.replay(not_mine, LATER).await.expect("replay"), 0);
    assert_eq!(pending(store).await, 1);
}

pub async fn a_full_outbox_counts_the_overflow_and_ingest_goes_on<S: EventStore + PushStore>(
    store: &S,
) {
    watching(store, &[1, 2, 3, 4, 5]).await;
    let batch = (1..=5)
        .map(|n| scan(&format!("o:{n}"), n, EventCode::Pc1, 1))
        .collect();
    let outcome = store
        .append(batch)
        .await
        .expect("acknowledged although full");
    assert_eq!(outcome.accepted, 5);
    let stats = store.outbox_stats().await.expect("stats");
    assert_eq!((stats.pending, stats.overflowed), (3, 2), "capacity 3");
    assert!(stats.oldest_pending.is_some());
    for d in lease_all(store).await {
        assert!(store.ack(d.lease(), LATER).await.expect("ack"));
    }
    append(store, vec![scan("o:6", 1, EventCode::Md2, 2)]).await;
    let stats = store.outbox_stats().await.expect("stats");
    assert_eq!((stats.pending, stats.overflowed), (1, 2), "room again");
}

pub async fn email_alerts_from_request_to_purge<S: EventStore + PushStore>(store: &S) {
    let address = EmailAddress::parse("jeanne@example.fr").expect("address");
    let request = |digest: u8, expires_at| EmailRequest {
        tracking_number: number(1),
        address: address.clone(),
        lang: Lang::Fr,
        token_digest: [digest; 32],
        expires_at,
    };
    let asked = store
        .request_email(request(1, t(100)), t(0))
        .await
        .expect("request");
    assert_eq!(asked, EmailRequestOutcome::Pending);
    append(store, vec![scan("m:1", 1, EventCode::Pc1, 1)]).await;
    assert_eq!(
        pending(store).await,
        0,
        "an unconfirmed address gets nothing"
    );
    let again = store
        .request_email(request(2, t(100)), t(1))
        .await
        .expect("request");
    assert_eq!(
        again,
        EmailRequestOutcome::Pending,
        "a new request replaces the pending one"
    );
    assert!(
        store
            .confirm_email([1; 32], t(2))
            .await
            .expect("confirm")
            .is_none(),
        "old token"
    );
    assert!(
        store
            .confirm_email([2; 32], t(100))
            .await
            .expect("confirm")
            .is_none(),
        "expired"
    );
    let confirmed = store.confirm_email([2; 32], t(3)).await.expect("confirm");
    assert!(matches!(
        confirmed.map(|s| s.state),
        Some(EmailState::Confirmed { .. })
    ));
    assert!(
        store
            .confirm_email([2; 32], t(4))
            .await
            .expect("confirm")
            .is_none(),
        "used once"
    );
    let third = store
        .request_email(request(3, t(100)), t(5))
        .await
        .expect("request");
    assert_eq!(third, EmailRequestOutcome::AlreadyConfirmed);
    append(store, vec![scan("m:2", 1, EventCode::Di1, 2)]).await;
    let sent = lease_all(store).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].channel, sent[0].notice.is_final),
        (Channel::Email, true)
    );
    let sub = store
        .email_subscription(number(1))
        .await
        .expect("read")
        .expect("kept");
    let final_at = sub
        .final_at
        .expect("the final change marks the subscription");
    let kept = store
        .purge_emails(final_at, LATER, 10)
        .await
        .expect("purge");
    assert_eq!(kept, 0, "kept during the retention period");
    let purged = store
        .purge_emails(Timestamp(final_at.0 + 1), LATER, 10)
        .await
        .expect("purge");
    assert_eq!(purged, 1);
    assert!(
        store
            .email_subscription(number(1))
            .await
            .expect("read")
            .is_none()
    );
    // A request nobody confirms goes once it expired.
    let _ = store
        .request_email(
            EmailRequest {
                tracking_number: number(2),
                ..request(4, t(50))
            },
            t(0),
        )
        .await
        .expect("request");
    assert_eq!(
        store
            .purge_emails(Timestamp(0), t(49), 10)
            .await
            .expect("purge"),
        0
    );
    assert_eq!(
        store
            .purge_emails(Timestamp(0), t(51), 10)
            .await
            .expect("purge"),
        1
    );
    assert!(!store.delete_email(number(2)).await.expect("delete"));
}

pub async fn subscriptions_list_limit_and_go<S: EventStore + PushStore>(store: &S) {
    let ep = watching(store, &[3, 1, 2]).await;
    let again = store
        .subscribe(KeyId(1), ep.id, &[number(1), number(4)], t(0))
        .await
        .expect("subscribe");
    assert_eq!((again.created, again.existing), (1, 1));
    let page = store.subscriptions(KeyId(1), None, 2).await.expect("list");
    let numbers: Vec<_> = page.iter().map(|s| s.tracking_number).collect();
    assert_eq!(numbers, [number(1), number(2)]);
    let last = page.last().map(|s| (s.tracking_number, s.endpoint));
    let rest = store.subscriptions(KeyId(1), last, 10).await.expect("list");
    assert_eq!(rest.len(), 2);
    assert!(
        store
            .subscriptions(KeyId(2), None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    let theirs = endpoint(store, 2).await;
    assert!(matches!(
        store
            .subscribe(KeyId(1), theirs.id, &[number(1)], t(0))
            .await,
        Err(PushError::UnknownEndpoint)
    ));
    assert!(
        !store
            .delete_endpoint(KeyId(1), theirs.id)
            .await
            .expect("delete")
    );
    // Fill parcel 9 to the per-parcel bound through several keys' endpoints.
    for owner in 10..10 + MAX_SUBSCRIPTIONS_PER_PARCEL as u64 {
        let ep = endpoint(store, owner).await;
        let _ = store
            .subscribe(KeyId(owner), ep.id, &[number(9)], t(0))
            .await
            .expect("subscribe");
    }
    assert!(matches!(
        store
            .subscribe(KeyId(1), ep.id, &[number(8), number(9)], t(0))
            .await,
        Err(PushError::TooMany { .. })
    ));
    let none = store.subscriptions(KeyId(1), None, 10).await.expect("list");
    assert!(
        !none.iter().any(|s| s.tracking_number == number(8)),
        "all or nothing"
    );
    for _ in 1..MAX_ENDPOINTS_PER_KEY {
        endpoint(store, 1).await;
    }
    assert_eq!(
        store.endpoints(KeyId(1)).await.expect("list").len(),
        MAX_ENDPOINTS_PER_KEY
    );
    assert!(matches!(
        store
            .create_endpoint(
                NewEndpoint {
                    owner: KeyId(1),
                    url: "https://x.example/".into(),
                    secret: ep.secret
                },
                t(0)
            )
            .await,
        Err(PushError::TooMany { .. })
    ));
    assert_eq!(store.endpoint(ep.id).await.expect("read"), Some(ep));
}

pub async fn old_deliveries_are_purged<S: EventStore + PushStore>(store: &S) {
    watching(store, &[1, 2, 3]).await;
    let batch = (1..=3)
        .map(|n| scan(&format!("p:{n}"), n, EventCode::Pc1, 1))
        .collect();
    append(store, batch).await;
    let leased = lease_all(store).await;
    for (i, d) in leased.iter().enumerate() {
        assert!(store.ack(d.lease(), t(i as i64)).await.expect("ack"));
    }
    let keep_two = PurgePolicy {
        delivered_before: Timestamp(0),
        dead_before: Timestamp(0),
        delivered_kept_max: 2,
    };
    assert_eq!(
        store.purge_deliveries(keep_two, 10).await.expect("purge"),
        1
    );
    let old = PurgePolicy {
        delivered_before: t(2),
        delivered_kept_max: 100,
        ..keep_two
    };
    assert_eq!(
        store.purge_deliveries(old, 10).await.expect("purge"),
        1,
        "the one before t(2)"
    );
    let recent = Replay::Recent {
        owner: KeyId(1),
        endpoint: None,
        since: Timestamp(0),
    };
    assert_eq!(
        store.replay(recent, LATER).await.expect("replay"),
        1,
        "one left to replay"
    );
}

/// Appends of one parcel racing each other (grouped in one commit, or serialized by the
/// database) still notify a consistent story: ordered by id, each delivery's previous status is
/// the status the one before announced, and the last one announces the parcel's final state.
pub async fn concurrent_appends_notify_a_chain_of_changes<S: EventStore + PushStore>(
    store: Arc<S>,
) {
    watching(&*store, &[1]).await;
    let codes = [EventCode::Et1, EventCode::Md2, EventCode::Pc1];
    let mut tasks = Vec::new();
    for k in 0..30i64 {
        let store = store.clone();
        let code = codes[(k % 3) as usize];
        tasks.push(tokio::spawn(async move {
            append(&*store, vec![scan(&format!("cc:{k}"), 1, code, k)]).await;
        }));
    }
    for task in tasks {
        task.await.expect("append task");
    }
    let mut sent = lease_all(&*store).await;
    sent.sort_by_key(|d| d.id);
    assert!(!sent.is_empty());
    assert_eq!(
        sent[0].notice.previous, None,
        "the first change is from nothing"
    );
    for pair in sent.windows(2) {
        assert_eq!(
            pair[1].notice.previous,
            Some(pair[0].notice.status),
            "each change starts where the one before ended"
        );
    }
    let last = sent.last().expect("one at least");
    // cc:29 is the latest by time; whether or not it made a change itself, the last change
    // told ends in its status.
    assert_eq!(
        last.notice.status,
        codes[29 % 3].status(),
        "the final state is told last"
    );
}
