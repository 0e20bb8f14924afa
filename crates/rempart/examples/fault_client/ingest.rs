//! The sending side: several clients, each on its own keep-alive connection, send their batches
//! one after another at full rate. A batch is sent again (the same bytes) until it is
//! acknowledged, after a full-jitter exponential backoff, as a depot does; every answer is
//! written down (`record.rs`), every acknowledgement fsync'd before the run ends.
//!
//! A script can hold the clients between two attempts (the pause file): once every client is
//! holding, nothing is in flight, and the client says so by creating `<pause file>.held`. What
//! the node does then (a restart) cannot be the outcome of an attempt without an answer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::batch::Shape;
use crate::http1::{Answer, Conn};
use crate::record::{Attempt, Line};

/// How long one answer may take before the attempt counts as `timeout` (the depot's own limit).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// First retry delay's ceiling.
pub const BACKOFF_BASE: Duration = Duration::from_millis(10);
/// How often the stop file is looked for.
const STOP_POLL: Duration = Duration::from_millis(50);

pub struct Options {
    pub to: SocketAddr,
    pub token: Option<String>,
    pub clients: u64,
    pub shape: Shape,
    /// Longest retry delay.
    pub backoff_cap: Duration,
    pub seconds: Option<u64>,
    pub stop_file: Option<PathBuf>,
    pub pause_file: Option<PathBuf>,
}

/// What the watcher tells the clients, and what they tell it.
#[derive(Default)]
struct Control {
    stop: AtomicBool,
    pause: AtomicBool,
    /// Clients holding now.
    holding: AtomicU64,
}

impl Control {
    /// Holds while the pause is asked for (then `held` turns true); false when the run is to
    /// stop.
    fn go_on(&self, held: &mut bool) -> bool {
        if self.pause.load(Relaxed) {
            *held = true;
            self.holding.fetch_add(1, Relaxed);
            while self.pause.load(Relaxed) && !self.stop.load(Relaxed) {
                std::thread::sleep(STOP_POLL / 5);
            }
            self.holding.fetch_sub(1, Relaxed);
        }
        !self.stop.load(Relaxed)
    }
}

/// The file that says every client is holding.
fn held_file(pause: &std::path::Path) -> PathBuf {
    let mut name = pause.as_os_str().to_owned();
    name.push(".held");
    PathBuf::from(name)
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs every client until the time is up or the stop file appears; returns, per client, one
/// past the last batch it attempted.
pub fn run(options: Arc<Options>, log: SyncSender<Line>) -> Vec<u64> {
    let control = Arc::new(Control::default());
    let watcher = {
        let control = control.clone();
        let options = options.clone();
        std::thread::spawn(move || watch(&options, &control))
    };
    let clients: Vec<_> = (0..options.clients)
        .map(|c| {
            let (options, log, control) = (options.clone(), log.clone(), control.clone());
            std::thread::spawn(move || Client::new(c, &options, log).run(&control))
        })
        .collect();
    let next = clients
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    control.stop.store(true, Relaxed);
    let _ = watcher.join();
    next
}

/// Looks for the stop and pause files until the run stops.
fn watch(options: &Options, control: &Control) {
    let deadline = options
        .seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    while !control.stop.load(Relaxed) {
        let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
        if timed_out || options.stop_file.as_ref().is_some_and(|f| f.exists()) {
            control.stop.store(true, Relaxed);
        }
        if let Some(pause) = &options.pause_file {
            let asked = pause.exists();
            control.pause.store(asked, Relaxed);
            let held = held_file(pause);
            if asked && control.holding.load(Relaxed) == options.clients {
                if !held.exists() && std::fs::write(&held, b"").is_err() {
                    eprintln!("cannot create {}", held.display());
                }
            } else if !asked && held.exists() {
                let _ = std::fs::remove_file(&held);
            }
        }
        std::thread::sleep(STOP_POLL);
    }
}

/// What came of one attempt.
enum Outcome {
    Answer(Answer),
    /// No answer: `connect_refused`, `connect_error`, `no_answer` or `timeout`.
    Failed(&'static str),
}

struct Client<'a> {
    c: u64,
    options: &'a Options,
    log: SyncSender<Line>,
    conn: Option<Conn>,
    random: u64,
}

impl<'a> Client<'a> {
    fn new(c: u64, options: &'a Options, log: SyncSender<Line>) -> Client<'a> {
        Client {
            c,
            options,
            log,
            conn: None,
            random: 0x9E37_79B9_7F4A_7C15 ^ (c + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
        }
    }

    /// Sends batch after batch until `stop`; returns one past the last batch attempted.
    fn run(mut self, control: &Control) -> u64 {
        let shape = self.options.shape;
        let mut b = 0;
        let mut attempt = 0u32;
        let mut body = shape.body(self.c, b);
        let mut held = false;
        while b < shape.max_batches() && control.go_on(&mut held) {
            if std::mem::take(&mut held) {
                // The node may have been restarted meanwhile: a kept-alive connection would
                // lead nowhere, and its failure would look like an attempt without an answer.
                self.conn = None;
            }
            attempt += 1;
            let sent = Instant::now();
            let outcome = self.attempt(body.as_bytes());
            let mut record = Attempt {
                unix_ms: unix_ms(),
                client: self.c,
                batch: b,
                attempt,
                status: 0,
                code: String::new(),
                retry_after: None,
                accepted: 0,
                duplicates: 0,
                latency_ms: sent.elapsed().as_secs_f64() * 1e3,
            };
            let acked = match outcome {
                Outcome::Failed(kind) => {
                    record.code = kind.into();
                    false
                }
                Outcome::Answer(answer) => take_answer(&mut record, &answer),
            };
            let fatal = !acked && is_final_refusal(record.status);
            self.send(Line::Answer(record.to_line()));
            if acked {
                self.send(Line::Ack(format!(
                    "ack {} {b} {} {}",
                    self.c, record.accepted, record.duplicates
                )));
            }
            if fatal {
                eprintln!(
                    "client {}: batch {b} refused with {} {}; this client stops",
                    self.c, record.status, record.code
                );
                break;
            }
            if acked {
                b += 1;
                attempt = 0;
                body = shape.body(self.c, b);
            } else {
                std::thread::sleep(self.backoff(attempt));
            }
        }
        let next = if attempt > 0 { b + 1 } else { b };
        self.send(Line::Ack(format!("end {} {next}", self.c)));
        next
    }

    fn send(&self, line: Line) {
        self.log.send(line).expect("the record writer runs");
    }

    fn attempt(&mut self, body: &[u8]) -> Outcome {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => match Conn::connect(self.options.to, ANSWER_TIMEOUT) {
                Ok(conn) => conn,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Outcome::Failed("connect_refused");
                }
                Err(_) => return Outcome::Failed("connect_error"),
            },
        };
        let auth = self.options.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/x-ndjson")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        match conn.request("POST", "/v1/events", &headers, body) {
            Ok(answer) => {
                if !answer.close() {
                    self.conn = Some(conn);
                }
                Outcome::Answer(answer)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Outcome::Failed("timeout")
            }
            Err(_) => Outcome::Failed("no_answer"),
        }
    }

    /// Full jitter: uniform in `[0, min(cap, base · 2^attempt))`.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let ceiling = BACKOFF_BASE
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.options.backoff_cap);
        // xorshift64*
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        let r = self.random.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ceiling.mul_f64((r >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Fills `record` from an answer; true when the batch is acknowledged.
fn take_answer(record: &mut Attempt, answer: &Answer) -> bool {
    record.status = answer.status;
    record.retry_after = answer.header("retry-after").map(str::to_owned);
    if (200..300).contains(&answer.status) {
        record.code = "ok".into();
        let v: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
        let count = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        // The node answers accepted/duplicates; a depot answers spooled.
        record.accepted = count("accepted").or(count("spooled")).unwrap_or(0);
        record.duplicates = count("duplicates").unwrap_or(0);
        true
    } else {
        // One word, so the record stays one tab-separated line whatever the body says.
        record.code = answer.error_code().map_or_else(
            || "-".into(),
            |c| c.replace(|ch: char| ch.is_whitespace(), "_"),
        );
        false
    }
}

/// A refusal that sending the same batch again cannot change (a bug in the test set-up).
fn is_final_refusal(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paused_client_holds_until_the_pause_ends() {
        let control = Arc::new(Control::default());
        let mut held = false;
        assert!(control.go_on(&mut held) && !held);
        control.pause.store(true, Relaxed);
        let client = {
            let control = control.clone();
            std::thread::spawn(move || {
                let mut held = false;
                (control.go_on(&mut held), held)
            })
        };
        while control.holding.load(Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        control.pause.store(false, Relaxed);
        assert_eq!(client.join().unwrap(), (true, true));
        assert_eq!(control.holding.load(Relaxed), 0);
        control.stop.store(true, Relaxed);
        assert!(!control.go_on(&mut held));
    }
}
