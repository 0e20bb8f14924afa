//! `rempart siege`: legitimate users, depot ingest and DDoSia-style floods from many loopback
//! source addresses at once, against a Rempart node, with a report per traffic class.
//!
//! It only ever sends traffic to loopback addresses (`target.rs`): every URL and every target of
//! a target list is resolved and checked before anything is sent.
//!
//! Legitimate users and depots run on a runtime of their own (`--observer-threads`), apart from
//! the floods' (`--threads`), so that their latency measures the node and not the generator's
//! queue behind thousands of flood tasks (the floods' threads also run at a lower CPU
//! priority); the report says how late each runtime woke up (`probe.rs`) and how much CPU the
//! generator used.

pub mod browser;
pub mod client;
pub mod node;
pub mod probe;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod target;

use std::collections::BTreeMap;
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
/// Parcels seeded for floods and lookups of known numbers when there are few legitimate users.
pub const FLOOD_SEED_PARCELS: usize = 1_000;

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
    /// Worker threads of the floods' runtime [default: number of CPUs]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Worker threads of the legitimate users' and depots' runtime
    #[arg(long, default_value_t = 1)]
    pub observer_threads: usize,
    /// The node's ingest listener (loopback only), to poll its /metrics every second: attack
    /// mode, memory, connections, refusals (in the report's `node` section)
    #[arg(long)]
    pub metrics: Option<String>,
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
    let mut scenario = load_scenario(&args)?;
    let targets = load_targets(&args, &mut scenario)?;
    if scenario.classes.iter().any(|c| c.kind == Kind::Ingest) && ingest.is_none() {
        bail!("the scenario has an ingest class: give --ingest URL and --token");
    }
    let metrics = args.metrics.as_deref().map(target::parse_url).transpose()?;
    let (rt, observer, observer_threads) = build_runtimes(&args)?;
    let parcels = rt.block_on(legit_parcels(
        &args,
        ingest.as_ref(),
        parcels_wanted(&scenario),
    ))?;
    let metrics = metrics.map(|endpoint| {
        let baseline = rt.block_on(node::refused_now(&endpoint));
        (endpoint, baseline)
    });

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
        measure_from_s: scenario.measure_from_s,
    });
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let runtimes = Runtimes {
        floods: &rt,
        observer: &observer,
        flood_threads: args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        }),
        observer_threads,
    };
    let mut report = rt.block_on(execute(&scenario, plan, &runtimes, metrics, show_progress));
    report.target = args.target.clone();
    drop(observer);
    write_reports(&args, &report)
}

/// The scenario file, or an empty one when only a target list is flooded; `--duration`
/// overrides the file's.
fn load_scenario(args: &SiegeArgs) -> anyhow::Result<Scenario> {
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )?,
        None if args.targets.is_some() => Scenario {
            name: "targets".into(),
            duration_s: 30,
            measure_from_s: 0,
            classes: Vec::new(),
        },
        None => bail!("give --scenario FILE and/or --targets FILE"),
    };
    if let Some(d) = args.duration {
        if d == 0 || d > scenario::MAX_DURATION_S {
            bail!("--duration must be 1 to {}", scenario::MAX_DURATION_S);
        }
        scenario.duration_s = d;
        scenario.measure_from_s = scenario.measure_from_s.min(d - 1);
    }
    Ok(scenario)
}

/// The `--targets` list, resolved, with the class that floods it added to `scenario`.
fn load_targets(
    args: &SiegeArgs,
    scenario: &mut Scenario,
) -> anyhow::Result<Option<Arc<run::Targets>>> {
    let Some(path) = &args.targets else {
        return Ok(None);
    };
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
        pipeline: 1,
        start_s: 0,
        burst_every_s: 0,
        open_loop: false,
        linger_ms: 2_000,
        visit_lookups: 0,
        solve_challenges: true,
    });
    Ok(Some(Arc::new((list, endpoints))))
}

/// The floods' runtime (lowered priority) and the observers' (measuring legitimate users), and
/// the observers' thread count.
fn build_runtimes(
    args: &SiegeArgs,
) -> anyhow::Result<(tokio::runtime::Runtime, tokio::runtime::Runtime, usize)> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n.clamp(1, 256));
    }
    let floods = builder
        .thread_name("siege-flood")
        .on_thread_start(probe::lower_priority)
        .enable_all()
        .build()?;
    let observer_threads = args.observer_threads.clamp(1, 16);
    let observer = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(observer_threads)
        .thread_name("siege-observer")
        .enable_all()
        .build()?;
    Ok((floods, observer, observer_threads))
}

/// The table on stdout, and the JSON and HTML reports where asked.
fn write_reports(args: &SiegeArgs, report: &report::Report) -> anyhow::Result<()> {
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, report.html())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// How many parcels to seed: four per legitimate user, and some for floods of known numbers.
fn parcels_wanted(scenario: &Scenario) -> usize {
    let users: usize = scenario
        .classes
        .iter()
        .filter(|c| c.kind == Kind::Legit)
        .map(|c| c.users)
        .sum();
    let known = scenario.classes.iter().any(|c| {
        matches!(
            c.kind,
            Kind::FloodCacheBusting | Kind::FloodHotParcel | Kind::Lookups
        )
    });
    let floor = if known { FLOOD_SEED_PARCELS } else { 0 };
    (users * 4).max(floor)
}

/// The generator's two runtimes.
struct Runtimes<'a> {
    floods: &'a tokio::runtime::Runtime,
    observer: &'a tokio::runtime::Runtime,
    flood_threads: usize,
    observer_threads: usize,
}

/// A progress bar on stderr, updated four times a second.
fn progress(
    scenario: &Scenario,
    plan: &Arc<run::Plan>,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = indicatif::ProgressBar::new(scenario.duration_s);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let plan = plan.clone();
    let names: Vec<String> = scenario.classes.iter().map(|c| c.name.clone()).collect();
    let ticker_bar = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            ticker_bar.set_position(
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
            ticker_bar.set_message(msg.join(" "));
        }
    });
    (bar, ticker)
}

/// Each class on its runtime: legitimate users and the depot on the observers' (they measure),
/// floods on the floods' runtime.
fn spawn_classes(
    scenario: &Scenario,
    plan: &Arc<run::Plan>,
    runtimes: &Runtimes<'_>,
) -> Vec<tokio::task::JoinHandle<stats::ClassStats>> {
    let mut first_user = 0;
    scenario
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let task = run::class(plan.clone(), i, c.clone(), first_user);
            if c.kind == Kind::Legit {
                first_user += c.users;
            }
            match c.kind {
                Kind::Legit | Kind::Ingest => runtimes.observer.spawn(task),
                _ => runtimes.floods.spawn(task),
            }
        })
        .collect()
}

/// Runs every class (legitimate users and depots on the observer runtime, floods on this one),
/// the probes and the node watcher, for the scenario's duration; then waits for requests in
/// flight and builds the report.
async fn execute(
    scenario: &Scenario,
    plan: Arc<run::Plan>,
    runtimes: &Runtimes<'_>,
    metrics: Option<(target::Endpoint, Option<BTreeMap<String, f64>>)>,
    show_progress: bool,
) -> report::Report {
    let progress = show_progress.then(|| progress(scenario, &plan));
    let cpu_before = probe::cpu_s();
    let probes_stop = Arc::new(AtomicBool::new(false));
    let flood_lag = runtimes.floods.spawn(probe::lag(probes_stop.clone()));
    let observer_lag = runtimes.observer.spawn(probe::lag(probes_stop.clone()));
    let watcher = metrics.map(|(endpoint, baseline)| {
        let watch = node::watch(endpoint, plan.started, probes_stop.clone(), baseline);
        runtimes.observer.spawn(watch)
    });
    let handles = spawn_classes(scenario, &plan, runtimes);
    tokio::time::sleep(plan.duration).await;
    plan.stop.store(true, Relaxed);
    let mut classes = Vec::new();
    for (h, c) in handles.into_iter().zip(&scenario.classes) {
        let stats = h.await.unwrap_or_default();
        classes.push(report::ClassReport::new(
            c,
            &stats,
            scenario.duration_s,
            scenario.measure_from_s,
        ));
    }
    let wall_s = plan.started.elapsed().as_secs_f64();
    let cpu_s = probe::cpu_s()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    probes_stop.store(true, Relaxed);
    let empty = stats::histogram;
    let flood_lag = flood_lag.await.unwrap_or_else(|_| empty());
    let observer_lag = observer_lag.await.unwrap_or_else(|_| empty());
    let node = match watcher {
        Some(w) => w.await.ok(),
        None => None,
    };
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    let flood_requests_per_s = classes
        .iter()
        .zip(&scenario.classes)
        .filter(|(_, c)| c.kind.is_request_flood())
        .fold(0.0, |sum, (r, _)| sum + r.sent_per_s);
    report::Report {
        scenario: scenario.name.clone(),
        duration_s: scenario.duration_s,
        measure_from_s: scenario.measure_from_s,
        target: String::new(),
        classes,
        generator: report::GeneratorReport {
            flood_threads: runtimes.flood_threads,
            observer_threads: runtimes.observer_threads,
            cpu_s,
            cpu_cores: cpu_s.map(|c| c / wall_s.max(0.001)),
            flood_requests_per_s,
            flood_lag_ms: report::Latency::of(&flood_lag),
            observer_lag_ms: report::Latency::of(&observer_lag),
        },
        node,
    }
}
