//! Push in the running node (issue 13): what `rempart-push` (signing, SSRF policy, HTTP and
//! SMTP clients, the dispatcher) and the store's outbox (`rempart_store::push`) become once
//! wired.
//!
//! - `keys.rs`: merchants' API keys (`rempart key …`), stored hashed, reread by a running node;
//! - `config.rs`: the types of the "Push" settings;
//! - `api.rs`: the subscription API on the public listener (`/v1/webhooks/…`, keyed clients);
//! - `alerts.rs`: the e-mail opt-in pages (form on the parcel page, confirm, stop);
//! - here, [`Push`]: the parts both listeners reach (the store's push side, master keys, the
//!   address policy, metrics, the confirmation queue), and [`Push::spawn`], which starts the
//!   background work on the ingest runtime — the dispatcher, the confirmation mailer, and the
//!   housekeeping (outbox figures each second, purges each minute).
//!
//! The public side never speaks SMTP or sends a webhook: an opt-in puts its confirmation on a
//! bounded queue that a task on the ingest runtime drains, and deliveries are the dispatcher's.

pub mod alerts;
pub mod api;
mod calls;
pub mod config;
pub mod keys;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rempart_domain::{Timestamp, TrackingNumber};
use rempart_push::backoff::Backoff;
use rempart_push::mail::{MailSettings, Mailbox, Mailer, Site};
use rempart_push::smtp::{Credentials, SmtpClient};
use rempart_push::ssrf::{AddressPolicy, Resolve, SystemResolver};
use rempart_push::{
    ClientConfig, DispatchConfig, Dispatcher, MasterKeys, PushMetrics, WebhookClient,
};
use rempart_store::push::{EmailAddress, Lang, OutboxStats, PurgePolicy, PushStore};
use tokio::sync::{Notify, mpsc, watch};

use crate::settings::Settings;

/// Confirmation e-mails waiting for the mailer task at most; a form posted while it is full is
/// answered 503 (nothing stored is lost: the customer asks again).
pub const MAX_CONFIRMATIONS_QUEUED: usize = 1024;
/// How long a confirmation link stays valid.
pub const CONFIRMATION_VALID_FOR: Duration = Duration::from_secs(24 * 3600);
/// How often the outbox's figures are read for /metrics and /ops.
pub const STATS_EVERY: Duration = Duration::from_secs(1);
/// How often expired addresses and old deliveries are purged, and how many rows at most each time.
pub const PURGE_EVERY: Duration = Duration::from_secs(60);
pub const PURGE_BATCH: usize = 10_000;
/// Delivered rows kept for replays: how long, and how many at most.
pub const DELIVERED_KEPT_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DELIVERED_KEPT_MAX: u64 = 1_000_000;
/// Dead letters are kept this long for a replay, then removed.
pub const DEAD_KEPT_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why push cannot start with these settings.
#[derive(Debug, thiserror::Error)]
pub enum PushSetupError {
    #[error("push is on but push_master_key is empty (VERSION:64 hex digits)")]
    NoMasterKey,
    #[error("push is on but this store keeps no outbox")]
    NoStore,
    #[error("push: {0}")]
    Client(String),
}

/// A confirmation e-mail to send.
pub struct Confirmation {
    pub tn: TrackingNumber,
    pub to: EmailAddress,
    pub lang: Lang,
    pub token: String,
}

/// What runs in the background, taken once by [`Push::spawn`].
struct Background {
    dispatcher: Dispatcher<dyn PushStore>,
    confirmations: mpsc::Receiver<Confirmation>,
}

/// Push's shared parts.
pub struct Push {
    pub store: Arc<dyn PushStore>,
    pub keys: MasterKeys,
    /// The SSRF policy an endpoint's URL is checked against when it is created.
    pub policy: AddressPolicy,
    pub resolver: Arc<dyn Resolve>,
    pub metrics: Arc<PushMetrics>,
    /// Sends e-mail alerts (the relay is configured).
    pub mailer: Option<Mailer>,
    /// Key of the unsubscribe links.
    pub link_key: [u8; 32],
    confirm_tx: mpsc::Sender<Confirmation>,
    wake: Arc<Notify>,
    outbox: Mutex<Option<OutboxStats>>,
    retention: Duration,
    background: Mutex<Option<Background>>,
}

impl Push {
    /// Builds push from the settings, or `None` when push is off. `site` is where links in
    /// e-mails point (the public URL, else the public listener's address).
    pub fn start(
        settings: &Settings,
        store: Option<Arc<dyn PushStore>>,
        site: &str,
    ) -> Result<Option<Push>, PushSetupError> {
        let s = &settings.push;
        if !s.push.get() {
            return Ok(None);
        }
        let store = store.ok_or(PushSetupError::NoStore)?;
        let keys = s
            .push_master_key
            .keys()
            .ok_or(PushSetupError::NoMasterKey)?;
        let link_key = keys.link_key();
        let client = WebhookClient::new(ClientConfig {
            total_timeout: s.push_timeout_ms.duration(),
            connect_timeout: s.push_timeout_ms.duration().min(Duration::from_secs(5)),
            policy: s.push_allow.0.clone(),
            ..ClientConfig::default()
        })
        .map_err(|e| PushSetupError::Client(e.to_string()))?;
        let mailer = mailer(settings, site, link_key)?;
        let defaults = DispatchConfig::default();
        let config = DispatchConfig {
            per_endpoint_concurrency: s.push_endpoint_concurrency.get(),
            // Covers a send and the time it may wait in its lane's queue; a node killed
            // mid-send leaves leases that expire this long after they were taken.
            lease_for: s.push_timeout_ms.duration() * 2 + Duration::from_secs(10),
            backoff: Backoff {
                base: s.push_retry_base_ms.duration(),
                ..defaults.backoff
            },
            ..defaults
        };
        let mut dispatcher = Dispatcher::new(store.clone(), client, keys.clone(), config);
        if let Some(mailer) = &mailer {
            dispatcher = dispatcher.with_mailer(mailer.clone());
        }
        let (confirm_tx, confirmations) = mpsc::channel(MAX_CONFIRMATIONS_QUEUED);
        Ok(Some(Push {
            metrics: dispatcher.metrics(),
            wake: dispatcher.waker(),
            store,
            keys,
            policy: s.push_allow.0.clone(),
            resolver: Arc::new(SystemResolver),
            mailer,
            link_key,
            confirm_tx,
            outbox: Mutex::new(None),
            retention: Duration::from_secs(s.email_retention_days.saturating_mul(86_400)),
            background: Mutex::new(Some(Background {
                dispatcher,
                confirmations,
            })),
        }))
    }

    /// Wakes the dispatcher (ingest calls it after a batch was stored: it may have written
    /// deliveries).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Queues a confirmation e-mail; `false` when the queue is full.
    pub fn queue_confirmation(&self, confirmation: Confirmation) -> bool {
        self.confirm_tx.try_send(confirmation).is_ok()
    }

    /// The outbox's figures as last read (at most [`STATS_EVERY`] old).
    pub fn outbox(&self) -> Option<OutboxStats> {
        *self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the dispatcher, the confirmation mailer and the housekeeping on `rt` (the ingest
    /// runtime). Does nothing the second time.
    pub fn spawn(self: &Arc<Self>, rt: &tokio::runtime::Runtime, stop: &watch::Receiver<bool>) {
        let taken = self
            .background
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(Background {
            dispatcher,
            confirmations,
        }) = taken
        else {
            return;
        };
        let mut until = stop.clone();
        rt.spawn(dispatcher.run(async move {
            let _ = until.wait_for(|stopped| *stopped).await;
        }));
        rt.spawn(send_confirmations(
            self.mailer.clone(),
            confirmations,
            stop.clone(),
        ));
        rt.spawn(housekeeping(self.clone(), stop.clone()));
    }

    /// Prometheus text of push's metrics.
    pub fn render_metrics(&self, out: &mut String) {
        self.metrics
            .render(out, self.outbox().as_ref(), crate::clock::now());
    }

    /// Push's section of the operations page.
    pub fn status(&self) -> serde_json::Value {
        use rempart_push::metrics::{ChannelKind, Outcome};
        let now = crate::clock::now();
        let outbox = self.outbox().unwrap_or_default();
        let oldest_s = outbox
            .oldest_pending
            .map(|t| (now.micros() - t.micros()).max(0) / 1_000_000);
        let by = |channel| {
            serde_json::json!({
                "delivered": self.metrics.deliveries(channel, Outcome::Delivered),
                "retried": self.metrics.deliveries(channel, Outcome::Retried),
                "dead": self.metrics.deliveries(channel, Outcome::Dead),
                "deferred": self.metrics.deliveries(channel, Outcome::Deferred),
            })
        };
        let (in_flight, held) = self.metrics.load();
        let failing: Vec<serde_json::Value> = self
            .metrics
            .worst_targets(10)
            .into_iter()
            .map(|(target, f)| {
                serde_json::json!({"target": target, "failures": f.failures, "breaker": f.breaker.as_str()})
            })
            .collect();
        serde_json::json!({
            "pending": outbox.pending,
            "dead": outbox.dead,
            "overflowed": outbox.overflowed,
            "oldest_pending_seconds": oldest_s,
            "in_flight": in_flight,
            "held": held,
            "webhook": by(ChannelKind::Webhook),
            "email": by(ChannelKind::Email),
            "email_enabled": self.mailer.is_some(),
            "failing_targets": failing,
        })
    }
}

/// The mailer, when a relay is set.
fn mailer(
    settings: &Settings,
    site: &str,
    link_key: [u8; 32],
) -> Result<Option<Mailer>, PushSetupError> {
    let s = &settings.push;
    let credentials = (!s.smtp_user.is_empty()).then(|| Credentials {
        user: s.smtp_user.clone(),
        password: s.smtp_password.0.clone(),
    });
    let Some(config) = s.smtp_relay.config(credentials) else {
        return Ok(None);
    };
    let setup = |e: &dyn std::fmt::Display| PushSetupError::Client(e.to_string());
    let smtp = SmtpClient::new(config).map_err(|e| setup(&e))?;
    let from =
        Mailbox::new(&s.mail_from.name, s.mail_from.address.clone()).map_err(|e| setup(&e))?;
    let site = Site::parse(site).map_err(|e| setup(&e))?;
    Ok(Some(Mailer::new(
        smtp,
        MailSettings {
            from,
            site,
            link_key,
        },
    )))
}

/// Sends the queued confirmation e-mails one at a time (each bounded by the SMTP client's
/// timeouts) until shutdown. A failure is logged, without the address: the customer asks again.
async fn send_confirmations(
    mailer: Option<Mailer>,
    mut queue: mpsc::Receiver<Confirmation>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            next = queue.recv() => next,
            _ = stop.changed() => return,
        };
        let Some(c) = next else { return };
        let Some(mailer) = &mailer else { continue };
        if let Err(e) = mailer
            .send_confirmation(&c.tn, &c.to, c.lang, &c.token)
            .await
        {
            tracing::warn!(tracking_number = %c.tn, error = %e, "push: confirmation e-mail not sent");
        }
    }
}

fn ago(now: Timestamp, by: Duration) -> Timestamp {
    Timestamp(now.micros().saturating_sub(by.as_micros() as i64))
}

/// Reads the outbox's figures every [`STATS_EVERY`]; purges every [`PURGE_EVERY`].
async fn housekeeping(push: Arc<Push>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(STATS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match push.store.outbox_stats().await {
            Ok(stats) => *push.outbox.lock().unwrap_or_else(|e| e.into_inner()) = Some(stats),
            Err(e) => {
                push.metrics.store_error();
                tracing::debug!(error = %e, "push: cannot read the outbox's figures");
            }
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = std::time::Instant::now();
            purge(&push).await;
        }
    }
}

async fn purge(push: &Push) {
    let now = crate::clock::now();
    if let Err(e) = push
        .store
        .purge_emails(ago(now, push.retention), now, PURGE_BATCH)
        .await
    {
        tracing::warn!(error = %e, "push: cannot purge e-mail addresses");
    }
    let policy = PurgePolicy {
        delivered_before: ago(now, DELIVERED_KEPT_FOR),
        dead_before: ago(now, DEAD_KEPT_FOR),
        delivered_kept_max: DELIVERED_KEPT_MAX,
    };
    if let Err(e) = push.store.purge_deliveries(policy, PURGE_BATCH).await {
        tracing::warn!(error = %e, "push: cannot purge old deliveries");
    }
}
