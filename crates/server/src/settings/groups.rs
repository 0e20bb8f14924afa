//! Every setting of `rempart serve`, each defined once, grouped by the part of the node that
//! uses it. A line gives the name (config-file key; the flag is `--name-with-dashes`, the
//! variable `REMPART_NAME`), the type (which checks the value), the default and the help text.
//! README's settings table and `deploy/rempart.toml` are checked against these lists by tests.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use rempart_shield::AttackMode;

use super::define::{env_name, flag_value, settings};
use super::values::{Bits, Millis, Ratio, Seconds, Secret, StoreKind, Switch, Threads, Wait};
use crate::public::PublicUrl;
use crate::push::config::{AllowList, Hidden, MailFrom, MasterKeySetting, SmtpRelay};

settings! {
    /// The two listeners: addresses, threads, connection caps and timeouts.
    ListenerSettings, ListenerArgs, "Listeners" {
        public: SocketAddr = "127.0.0.1:8080", "Public listener address (anonymous lookups)";
        ingest: SocketAddr = "127.0.0.1:8081", "Ingest listener address (depots, metrics)";
        public_threads: Threads = "auto", "Worker threads of the public listener (`auto`: one per CPU)";
        ingest_threads: Threads = "1", "Worker threads reserved for the ingest listener";
        public_max_connections: NonZeroUsize = "10000", "Most open connections on the public listener";
        ingest_max_connections: NonZeroUsize = "1000", "Most open connections on the ingest listener";
        header_timeout_ms: Millis = "5000", "Milliseconds a public client has to send a request head";
        ingest_header_timeout_ms: Millis = "2000", "Milliseconds an ingest client has to send a request head (before it can authenticate)";
        ingest_body_timeout_ms: Millis = "30000", "Milliseconds an ingest client has to send a batch's body";
        ingest_source_max_connections: NonZeroU32 = "32", "Most open ingest connections from one source address";
        ingest_reserved_ratio: Ratio = "0.2", "Share of the ingest connections only authenticated clients may hold";
        idle_timeout_ms: Millis = "30000", "Milliseconds a keep-alive connection may sit idle";
        shutdown_grace_ms: Wait = "10000", "Milliseconds shutdown waits for requests in flight";
        public_url: PublicUrl = "", "Public URL customers reach the pages at, e.g. `https://suivi.example.fr` behind a CDN (Suivi v2 `url` links; `https://` makes the pass cookie `Secure`); empty: links are paths";
    }
}

settings! {
    /// Where the events live, and the response cache kept coherent with them.
    StoreSettings, StoreArgs, "Storage" {
        data: PathBuf = "rempart-data", "Data directory (embedded store, tokens)";
        store: StoreKind = "embedded", "Storage: `embedded` (in the data directory) or a `postgres://…` URL";
        cache_entries: NonZeroUsize = "200000", "Parcels kept in the response cache";
        cache_mb: NonZeroU64 = "128", "MiB of the response cache (estimated; with `cache_entries`, whichever bound is reached first)";
        change_poll_ms: Millis = "500", "Milliseconds between polls of a shared store's change feed";
        store_cache_mb: NonZeroU64 = "256", "MiB of the embedded store's block cache";
        store_write_buffer_mb: NonZeroU64 = "128", "MiB of the embedded store's write buffers (memtables)";
        store_queue_mb: NonZeroU64 = "64", "MiB of batches waiting for the embedded store's committer (more get 503)";
    }
}

settings! {
    /// The shield in front of the public listener (docs/shield.md).
    ShieldSettings, ShieldArgs, "Shield" {
        shield: Switch = "true", "Shield in front of the public listener; `false` switches every layer off (for comparison)";
        gate: Switch = "true", "Under connection floods, let the kernel drop new connections from unknown sources before they queue (known ones always pass; `false` for comparison)";
        source_max_connections: NonZeroU32 = "64", "Most open connections from one source address";
        rate_per_source: NonZeroU32 = "50", "Lookups per second one address may make";
        rate_per_prefix: NonZeroU32 = "2000", "Lookups per second one /24 (IPv4) or /48 (IPv6) may make";
        storage_concurrency: NonZeroUsize = "256", "Most storage reads at once (the adaptive limit's ceiling)";
        storage_queue_ms: Wait = "100", "Longest a lookup waits for a storage slot before 503";
        storage_target_ms: Millis = "50", "Storage read latency above which the concurrency limit shrinks";
        attack_mode: AttackMode = "auto", "Attack mode: auto, on or off";
        attack_refused_ratio: Ratio = "0.5", "Share of refused or bogus public requests in a second that counts as abusive";
        attack_min_requests: u64 = "500", "Fewest public requests in a second for attack mode to judge";
        attack_p99_ms: Millis = "500", "Public request p99 in a second (from the first byte) that counts as saturated";
        attack_lag_ms: Millis = "50", "Scheduling lag of the public runtime in a second that counts as saturated";
        attack_cpu_ratio: Ratio = "0.9", "Share of the node's CPU allowance (cgroup quota, else CPUs) used in a second that counts as saturated (0: ignore CPU)";
        attack_on_s: Seconds = "2", "Saturated or abusive seconds in a row, from many sources, before attack mode switches on";
        attack_calm_s: Seconds = "30", "Calm seconds before attack mode switches off";
        challenge_difficulty: Bits = "18", "Leading zero bits of the proof of work asked in attack mode";
        pass_ttl_s: Seconds = "3600", "Seconds a pass earned by a proof of work is valid";
        shield_secret: Secret = "random", "Secret (64 hex characters) signing challenge passes, shared by nodes behind one load balancer (`random`: one per process)";
        filter_rebuild_s: Seconds = "600", "Seconds between rebuilds of the existence filter";
        filter_max_parcels: NonZeroU64 = "20000000", "Most parcels the existence filter is built for (~1.1 bytes each, ~35 while a rebuild runs); a larger store gets no filter: its lookups go to storage";
    }
}

settings! {
    /// Push: webhooks for merchants, e-mail alerts for customers (docs/webhooks.md).
    PushSettings, PushArgs, "Push" {
        push: Switch = "false", "Webhooks and e-mail alerts: the subscription API, the opt-in pages and the dispatcher (needs push_master_key)";
        push_master_key: MasterKeySetting = "", "Master keys deriving webhook signing secrets, `VERSION:HEX64[,VERSION:HEX64…]`, the first current; the same on every node of a database";
        push_allow: AllowList = "", "Addresses or CIDR blocks webhooks may reach although loopback, private, link-local… (SSRF allow-list; plain http only toward these)";
        push_outbox_capacity: NonZeroU64 = "1000000", "Undelivered deliveries the outbox holds; beyond, deliveries are counted as overflow and ingest goes on";
        push_endpoint_concurrency: NonZeroUsize = "4", "Deliveries in flight to one webhook endpoint at most";
        push_timeout_ms: Millis = "15000", "Milliseconds one webhook delivery may take in all (resolution, connection, TLS, answer)";
        push_retry_base_ms: Millis = "10000", "Milliseconds of the first retry's backoff (doubling per failure, full jitter, up to an hour; retried for 24 hours)";
        smtp_relay: SmtpRelay = "", "SMTP relay for e-mail alerts: `smtp://host:port` (plain, local relay), `smtp+starttls://…` or `smtps://…`; empty: no e-mail alerts";
        smtp_user: String = "", "User name at the SMTP relay (empty: no authentication)";
        smtp_password: Hidden = "", "Password at the SMTP relay";
        mail_from: MailFrom = "Suivi de colis <suivi@rempart.invalid>", "Sender of the e-mail alerts, `Name <address>`";
        email_retention_days: u64 = "30", "Days an e-mail address is kept after its parcel's final event";
    }
}

settings! {
    /// How the process runs: demo data and logs.
    RunSettings, RunArgs, "Running" {
        demo: Switch = "false" => flag, "Fill an empty store with demo data on first start and print numbers to try";
        demo_parcels: usize = "20000", "Parcels in the demo data set";
        log: String = "info,deadpool=error", "Log filter, e.g. `info` or `rempart_server=debug`";
        log_json: Switch = "false" => flag, "Log as JSON lines instead of text";
    }
}
