//! `rempart siege`: legitimate users, depot ingest and DDoSia-style floods from many loopback
//! source addresses at once, against a Rempart node, with a report per traffic class.
//!
//! It only ever sends traffic to loopback addresses (`target.rs`): every URL and every target of
//! a target list is resolved and checked before anything is sent.

pub mod client;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod target;

use std::io::IsTerminal as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rempart_domain::TrackingNumber;

use crate::scenario::{Class, Kind, Scenario, TargetList};

/// Most parcels the tool seeds for its legitimate users.
pub const MAX_SEED_PARCELS: usize = 5_000;

/// Arguments of `rempart siege`.
#[derive(clap::Args, Debug, Clone)]
pub struct SiegeArgs {
    /// Public listener to test (loopback only), e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub target: String,
    /// Ingest listener (loopback only), for the ingest class and to seed parcels
    #[arg(long)]
    pub ingest: Option<String>,
    /// Ingest bearer token
    #[arg(long, env = "REMPART_INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Scenario file (TOML; see scenarios/)
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// DDoSia-style target list (JSON) to add as a flood class (loopback targets only)
    #[arg(long)]
    pub targets: Option<PathBuf>,
    /// Connections of the target-list flood
    #[arg(long, default_value_t = 64)]
    pub targets_connections: usize,
    /// Seconds to run, overriding the scenario
    #[arg(long)]
    pub duration: Option<u64>,
    /// File of tracking numbers (one per line) legitimate users look up; without it the tool
    /// ingests its own parcels first (needs --ingest and --token)
    #[arg(long)]
    pub parcels: Option<PathBuf>,
    /// Write the report as JSON here
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the report as a self-contained HTML page here
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Worker threads of the generator [default: number of CPUs]
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
}

/// Reads a parcel list, or seeds parcels through the ingest API.
async fn legit_parcels(
    args: &SiegeArgs,
    ingest: Option<&(target::Endpoint, String)>,
    wanted: usize,
) -> anyhow::Result<Vec<TrackingNumber>> {
    if let Some(path) = &args.parcels {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut out = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            out.push(
                TrackingNumber::parse(line)
                    .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?,
            );
        }
        return Ok(out);
    }
    let Some((endpoint, token)) = ingest else {
        if wanted == 0 {
            return Ok(Vec::new());
        }
        bail!(
            "legitimate users need parcels: give --parcels FILE, or --ingest URL and --token to seed them"
        );
    };
    let count = wanted.clamp(1, MAX_SEED_PARCELS);
    let parcels: Vec<TrackingNumber> = (0..count as u64)
        .map(|i| TrackingNumber::domestic(7, 'S', 1_000_000_000 + i).expect("valid"))
        .collect();
    let mut conn = client::connect(IpAddr::V4(Ipv4Addr::LOCALHOST), endpoint.addr)
        .await
        .context("connect to the ingest listener")?;
    for chunk in parcels.chunks(1_000) {
        let mut body = String::new();
        for tn in chunk {
            for (k, (code, at)) in [
                ("PC1", "2025-12-20T09:00:00Z"),
                ("ET1", "2025-12-21T03:00:00Z"),
                ("MD2", "2025-12-22T07:30:00Z"),
            ]
            .iter()
            .enumerate()
            {
                body.push_str(&format!("{{\"event_id\":\"siege-seed:{tn}:{k}\",\"tracking_number\":\"{tn}\",\"code\":\"{code}\",\"occurred_at\":\"{at}\",\"location\":\"Lyon Corbas PFC\"}}\n"));
            }
        }
        let request = client::request(
            "POST",
            &endpoint.host,
            "/v1/events",
            &format!("Authorization: Bearer {token}\r\n"),
            body.as_bytes(),
            false,
        );
        let resp = conn.exchange(&request).await.context("seed parcels")?;
        if resp.status != 200 {
            bail!(
                "seeding parcels: the ingest API answered {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
    }
    Ok(parcels)
}

/// Runs `rempart siege`.
pub fn run(args: SiegeArgs) -> anyhow::Result<()> {
    let public = target::parse_url(&args.target)?;
    let ingest = match &args.ingest {
        Some(url) => Some((
            target::parse_url(url)?,
            args.token
                .clone()
                .context("--ingest needs --token (or REMPART_INGEST_TOKEN)")?,
        )),
        None => None,
    };
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )?,
        None if args.targets.is_some() => Scenario {
            name: "targets".into(),
            duration_s: 30,
            classes: Vec::new(),
        },
        None => bail!("give --scenario FILE and/or --targets FILE"),
    };
    let targets = match &args.targets {
        Some(path) => {
            let list = TargetList::parse(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            )?;
            let endpoints = list
                .targets
                .iter()
                .map(|t| {
                    target::resolve(
                        &format!("target {}", t.id.as_deref().unwrap_or(&t.host)),
                        t.ip.as_deref().unwrap_or(&t.host),
                        t.port,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            scenario.classes.push(Class {
                name: "targets".into(),
                kind: Kind::Targets,
                rate: 0,
                users: 1,
                think_ms: 0,
                connections: args.targets_connections.clamp(1, scenario::MAX_CONNECTIONS),
                sources: 10_000,
                requests_per_connection: 20,
                batch: 1,
                byte_interval_ms: 1_000,
            });
            Some(Arc::new((list, endpoints)))
        }
        None => None,
    };
    if let Some(d) = args.duration {
        if d == 0 || d > scenario::MAX_DURATION_S {
            bail!("--duration must be 1 to {}", scenario::MAX_DURATION_S);
        }
        scenario.duration_s = d;
    }
    if scenario.classes.iter().any(|c| c.kind == Kind::Ingest) && ingest.is_none() {
        bail!("the scenario has an ingest class: give --ingest URL and --token");
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n.clamp(1, 256));
    }
    let rt = builder.enable_all().build()?;
    let legit_users: usize = scenario
        .classes
        .iter()
        .filter(|c| c.kind == Kind::Legit)
        .map(|c| c.users)
        .sum();
    let parcels = rt.block_on(legit_parcels(&args, ingest.as_ref(), legit_users * 4))?;

    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let plan = Arc::new(run::Plan {
        public: public.clone(),
        ingest,
        parcels: Arc::new(parcels),
        targets,
        started: Instant::now(),
        duration: Duration::from_secs(scenario.duration_s),
        stop: Arc::new(AtomicBool::new(false)),
        sent: Arc::new(scenario.classes.iter().map(|_| AtomicU64::new(0)).collect()),
        run_id,
    });
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let report = rt.block_on(async {
        let progress = show_progress.then(|| {
            let bar = indicatif::ProgressBar::new(scenario.duration_s);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let ticker = progress.clone().map(|bar| {
            let plan = plan.clone();
            let names: Vec<String> = scenario.classes.iter().map(|c| c.name.clone()).collect();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    bar.set_position(
                        plan.started
                            .elapsed()
                            .as_secs()
                            .min(plan.duration.as_secs()),
                    );
                    let msg: Vec<String> = names
                        .iter()
                        .zip(plan.sent.iter())
                        .map(|(n, s)| format!("{n}:{}", s.load(Relaxed)))
                        .collect();
                    bar.set_message(msg.join(" "));
                }
            })
        });
        let handles: Vec<_> = scenario
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| tokio::spawn(run::class(plan.clone(), i, c.clone())))
            .collect();
        tokio::time::sleep(plan.duration).await;
        plan.stop.store(true, Relaxed);
        let mut classes = Vec::new();
        for (h, c) in handles.into_iter().zip(&scenario.classes) {
            let stats = h.await.unwrap_or_default();
            classes.push(report::ClassReport::new(
                &c.name,
                c.kind,
                &stats,
                scenario.duration_s,
            ));
        }
        if let Some(t) = ticker {
            t.abort();
        }
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        report::Report {
            scenario: scenario.name.clone(),
            duration_s: scenario.duration_s,
            target: args.target.clone(),
            classes,
        }
    });
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, report.html())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
