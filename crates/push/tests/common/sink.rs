//! A tiny SMTP server for the tests: it listens on loopback, speaks just enough ESMTP for a
//! client to hand a message over, and keeps what it received.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message as received.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The data with dot-stuffing undone (CRLF lines).
    pub data: String,
}

impl Mail {
    /// A header's value (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let unfolded = head.replace("\r\n ", " ");
        unfolded.lines().find_map(|l| {
            let (n, v) = l.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then(|| v.to_owned())
        })
    }

    /// The subject, encoded words decoded.
    pub fn subject(&self) -> String {
        self.header("Subject")
            .unwrap_or_default()
            .split(' ')
            .map(|w| {
                let b64 = w.trim_start_matches("=?UTF-8?B?").trim_end_matches("?=");
                String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
            })
            .collect()
    }

    /// The body, base64 decoded.
    pub fn body(&self) -> String {
        let body = self
            .data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        String::from_utf8(STANDARD.decode(body.replace("\r\n", "")).unwrap()).unwrap()
    }
}

/// How the sink answers `RCPT TO` for an address, the n-th time it sees it (0-based).
pub type RcptRule = Arc<dyn Fn(&str, usize) -> String + Send + Sync>;

pub struct Sink {
    pub addr: SocketAddr,
    pub mails: Arc<Mutex<Vec<Mail>>>,
}

impl Sink {
    /// A sink that accepts every recipient.
    pub async fn start() -> Sink {
        Sink::with_rule(Arc::new(|_, _| "250 OK".into()), false).await
    }

    /// `inject_after_starttls`: offer STARTTLS and answer it with an extra, injected reply.
    pub async fn with_rule(rule: RcptRule, inject_after_starttls: bool) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let keep = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (rule, keep, seen) = (rule.clone(), keep.clone(), seen.clone());
                tokio::spawn(async move {
                    let _ = session(stream, rule, keep, seen, inject_after_starttls).await;
                });
            }
        });
        Sink { addr, mails }
    }

    pub fn received(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn session(
    stream: TcpStream,
    rule: RcptRule,
    keep: Arc<Mutex<Vec<Mail>>>,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    inject: bool,
) -> std::io::Result<()> {
    let mut io = BufReader::new(stream);
    io.get_mut().write_all(b"220 sink.test ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let tls = if inject { "250-STARTTLS\r\n" } else { "" };
            format!("250-sink.test\r\n{tls}250-8BITMIME\r\n250 SIZE 1000000")
        } else if upper == "STARTTLS" && inject {
            "220 go ahead\r\n250 injected".into()
        } else if let Some(addr) = upper.strip_prefix("MAIL FROM:") {
            from = addr.trim_matches(['<', '>']).to_ascii_lowercase();
            "250 OK".into()
        } else if upper.starts_with("RCPT TO:") {
            let addr = command[8..].trim_matches(['<', '>']).to_owned();
            let n = {
                let mut seen = seen.lock().unwrap();
                let count = seen.entry(addr.clone()).or_default();
                *count += 1;
                *count - 1
            };
            let reply = rule(&addr, n);
            if reply.starts_with('2') {
                to.push(addr);
            }
            reply
        } else if upper == "DATA" {
            io.get_mut().write_all(b"354 go ahead\r\n").await?;
            let data = read_data(&mut io).await?;
            keep.lock().unwrap().push(Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
            });
            "250 queued".into()
        } else if upper == "QUIT" {
            io.get_mut().write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            "502 not implemented".into()
        };
        io.get_mut()
            .write_all(format!("{reply}\r\n").as_bytes())
            .await?;
    }
}

async fn read_data(io: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 || line == ".\r\n" {
            return Ok(data);
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
    }
}
