//! Shared by the integration tests: start the real `rempart serve` binary on ephemeral loopback
//! ports, kill or stop it, and speak plain HTTP/1.1 to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The ingest token every test server accepts (via `REMPART_INGEST_TOKEN`).
pub const TOKEN: &str = "test-token-0123456789";
/// How long a test waits for a server to say it is listening before giving up (a hang guard,
/// not a performance assertion).
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_rempart")
}

/// A running `rempart serve`.
pub struct Server {
    pub public: SocketAddr,
    pub ingest: SocketAddr,
    pub token: String,
    /// Everything the server printed on stdout up to and including its listening line.
    pub banner: Vec<String>,
    data: PathBuf,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    /// Where the server's stderr goes (appended), when not to the test's own.
    log: Option<PathBuf>,
    child: Option<Child>,
}

impl Server {
    /// Starts a server on ephemeral ports with `data` as data directory.
    pub fn start(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_on("127.0.0.1:0".parse().unwrap(), data, extra, env)
    }

    /// Starts a server whose stderr (its log) is appended to `log`.
    pub fn start_logging(data: &Path, extra: &[&str], env: &[(&str, &str)], log: &Path) -> Server {
        let mut server = Self::new("127.0.0.1:0".parse().unwrap(), data, extra, env);
        server.log = Some(log.to_owned());
        server.spawn();
        server
    }

    /// Starts a server whose public listener binds `public`.
    pub fn start_on(
        public: SocketAddr,
        data: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut server = Self::new(public, data, extra, env);
        server.spawn();
        server
    }

    fn new(public: SocketAddr, data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server {
            public,
            ingest: "127.0.0.1:0".parse().unwrap(),
            token: TOKEN.to_owned(),
            banner: Vec::new(),
            data: data.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: None,
            child: None,
        }
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--data")
            .arg(&self.data)
            .arg("--public")
            .arg(self.public.to_string())
            .arg("--ingest")
            .arg(self.ingest.to_string())
            .args(&self.extra)
            .env("REMPART_INGEST_TOKEN", &self.token)
            .env("REMPART_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(match &self.log {
                None => Stdio::inherit(),
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .expect("open the server's log file"),
                ),
            });
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start rempart serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Keep draining so the server never blocks on a full pipe.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut banner = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "rempart serve did not print its listening line; printed: {banner:?}; exit: {:?}",
                        child.wait()
                    );
                }
            };
            banner.push(line.clone());
            if let Some(rest) = line.strip_prefix("rempart listening ") {
                for part in rest.split_whitespace() {
                    if let Some(addr) = part.strip_prefix("public=") {
                        self.public = addr.parse().unwrap();
                    } else if let Some(addr) = part.strip_prefix("ingest=") {
                        self.ingest = addr.parse().unwrap();
                    }
                }
                break;
            }
        }
        // The listening line comes last: everything the server printed before it is in `banner`.
        self.banner = banner;
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
        child.wait().expect("wait for rempart serve")
    }

    /// Starts the server again on the same ports and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server before restarting it");
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// `POST /v1/events` with this server's token.
    pub fn ingest(&self, body: &[u8]) -> Response {
        let auth = format!("Bearer {}", self.token);
        request(
            self.ingest,
            "POST",
            "/v1/events",
            &[
                ("authorization", &auth),
                ("content-type", "application/x-ndjson"),
            ],
            body,
        )
    }

    /// An anonymous lookup (subject to the shield's per-source limits).
    pub fn get(&self, path: &str) -> Response {
        request(self.public, "GET", path, &[], b"")
    }

    /// A lookup with an API key (the ingest token): exempt from per-source limits, as a
    /// partner's server would be. For tests that read back thousands of parcels.
    pub fn get_as_partner(&self, path: &str) -> Response {
        let auth = format!("Bearer {}", self.token);
        request(self.public, "GET", path, &[("authorization", &auth)], b"")
    }

    /// The value of one sample of the ingest listener's `/metrics` (0 when absent).
    pub fn metric(&self, sample: &str) -> u64 {
        let text = request(self.ingest, "GET", "/metrics", &[], b"").text();
        metric_value(&text, sample)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The numbers a `--demo` node printed in its banner: (number, status) from each line.
pub fn demo_numbers(server: &Server) -> Vec<(String, String)> {
    server
        .banner
        .iter()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let number = words.next()?;
            rempart_domain::TrackingNumber::parse(number).ok()?;
            Some((number.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// The value of sample `name{labels}` (exact text before the space) in a Prometheus exposition.
pub fn metric_value(text: &str, sample: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse::<f64>().ok())?
        })
        .map_or(0, |v| v as u64)
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`). Panics on I/O errors; see
/// [`try_request`] for the fallible form.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} to {addr}: {e}"))
}

pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    send_raw(addr, &bytes)
}

/// Sends raw bytes and parses the response (the server must close the connection after it).
pub fn send_raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    // A server may answer (413, 401) and close before reading all of a large body.
    let _ = stream.write_all(bytes);
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .or_else(|e| if reply.is_empty() { Err(e) } else { Ok(0) })?;
    parse_response(&reply)
}

fn parse_response(reply: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of head"))?;
    let head = std::str::from_utf8(&reply[..end]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = reply[end + 4..].to_vec();
    if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// One NDJSON event line.
pub fn event_line(
    id: &str,
    tn: &str,
    code: &str,
    occurred_at: &str,
    location: Option<&str>,
) -> String {
    let mut v = serde_json::json!({
        "event_id": id,
        "tracking_number": tn,
        "code": code,
        "occurred_at": occurred_at,
    });
    if let Some(location) = location {
        v["location"] = serde_json::Value::from(location);
    }
    format!("{v}\n")
}

/// The locations of a parcel's events as a partner sees them (tests name each event by its
/// location), after checking none is shown twice. `None` when the parcel is unknown (404).
pub fn locations_once(server: &Server, tn: &str) -> Option<Vec<String>> {
    let resp = server.get_as_partner(&format!("/v1/parcels/{tn}"));
    if resp.status == 404 {
        return None;
    }
    assert_eq!(resp.status, 200, "parcel {tn}");
    let shown: Vec<String> = resp.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["location"].as_str().unwrap().to_owned())
        .collect();
    let unique: std::collections::HashSet<&String> = shown.iter().collect();
    assert_eq!(
        unique.len(),
        shown.len(),
        "an event of {tn} is stored twice: {shown:?}"
    );
    Some(shown)
}

/// Runs Debian's headless Chromium (installed by scripts/ensure-chromium) with a profile of its own.
pub fn chromium(profile: &Path, args: &[String]) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium (scripts/ensure-chromium installs it)")
}

/// Polls `ok` every 100 ms until it holds; panics naming `what` after `within` (a hang guard or a
/// documented bound, never a performance assertion).
pub fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {within:?}");
}

/// A raw connection from a chosen loopback source address (the tests' many "clients").
pub fn try_connect_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        let source: std::net::IpAddr = source
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(to).await?.into_std()
    })?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// [`try_connect_from`], which must succeed.
pub fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    try_connect_from(source, to).unwrap_or_else(|e| panic!("connect from {source} to {to}: {e}"))
}
