//! An SMTP sink for the end-to-end tests: a plain (no TLS) SMTP server on loopback that accepts
//! every message and keeps it, so a test can read the confirmation link a customer would get.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One message as handed over.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message's text, dot-unstuffed, lines joined with `\n`.
    pub data: String,
}

impl Mail {
    /// The body, decoded when it is base64 (as `rempart-push` writes it).
    pub fn body_text(&self) -> String {
        let (head, body) = self.data.split_once("\n\n").unwrap_or(("", &self.data));
        if head
            .to_ascii_lowercase()
            .contains("content-transfer-encoding: base64")
        {
            let joined: String = body.split_whitespace().collect();
            decode_base64(&joined)
        } else {
            body.to_owned()
        }
    }
}

fn decode_base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for b in text.bytes().filter(|&b| b != b'=') {
        let Some(v) = ALPHABET.iter().position(|&a| a == b) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct Sink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl Sink {
    pub fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let kept = mails.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || session(stream, &kept));
            }
        });
        Sink { addr, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn session(stream: TcpStream, kept: &Mutex<Vec<Mail>>) {
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut say = |text: &str| out.write_all(format!("{text}\r\n").as_bytes()).is_ok();
    say("220 sink ESMTP");
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        let upper = line.to_ascii_uppercase();
        let ok = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            say("250-sink\r\n250 8BITMIME")
        } else if let Some(rest) = upper.strip_prefix("MAIL FROM:") {
            from = line[line.len() - rest.len()..].trim().to_owned();
            say("250 ok")
        } else if upper.starts_with("RCPT TO:") {
            to.push(line["RCPT TO:".len()..].trim().to_owned());
            say("250 ok")
        } else if upper == "DATA" {
            say("354 go");
            let mut data = Vec::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 {
                    return;
                }
                let l = l.trim_end_matches(['\r', '\n']);
                if l == "." {
                    break;
                }
                data.push(l.strip_prefix('.').unwrap_or(l).to_owned());
            }
            kept.lock().unwrap().push(Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data: data.join("\n"),
            });
            say("250 queued")
        } else if upper == "QUIT" {
            say("221 bye");
            return;
        } else {
            say("250 ok")
        };
        if !ok {
            return;
        }
    }
}
