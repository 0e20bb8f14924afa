//! A blocking HTTP/1.1 client connection, kept alive between requests, shared by the examples that
//! post ingest batches (`ingest_load`, `fault_client`). Loopback targets only. It tells apart the
//! two ways a request can fail, because they mean different things for an ingest batch: the
//! connection could not be opened (nothing was sent), or it broke after the request went out (the
//! server may have stored the batch: the outcome is unknown).
// Each example that includes this file uses a different part of it.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest answer body read (ingest answers are small JSON documents; `/metrics` is larger).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Most header lines read from one answer.
pub const MAX_HEADER_LINES: usize = 100;

/// One answer: its status, its headers (names in lower case) and its body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The server said `Connection: close`: the connection cannot be reused.
    pub fn close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The `error` field of a JSON error body, if there is one.
    pub fn error_code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        v.get("error")?.as_str().map(str::to_owned)
    }
}

/// An open connection to `addr`.
pub struct Conn {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    /// Connects, with `timeout` both for the connection and for each answer.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        assert!(addr.ip().is_loopback(), "only loopback targets: {addr}");
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Conn {
            addr,
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends one request and reads its answer. An error here means the request may have reached
    /// the server: what it did with it is unknown.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Answer> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.addr);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        read_answer(&mut self.reader)
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn read_answer(reader: &mut BufReader<TcpStream>) -> io::Result<Answer> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before an answer",
        ));
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {line:?}")))?;
    let mut answer = Answer {
        status,
        headers: Vec::new(),
        body: String::new(),
    };
    let mut len = 0;
    for _ in 0..MAX_HEADER_LINES {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(invalid("connection closed in the answer's head".into()));
        }
        if line == "\r\n" {
            let mut body = vec![0; len];
            reader.read_exact(&mut body)?;
            answer.body = String::from_utf8_lossy(&body).into_owned();
            return Ok(answer);
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
        if k == "content-length" {
            len = v
                .parse()
                .map_err(|_| invalid(format!("bad content-length {v:?}")))?;
            if len > MAX_ANSWER_BYTES {
                return Err(invalid(format!("answer body of {len} bytes")));
            }
        }
        answer.headers.push((k, v));
    }
    Err(invalid("too many header lines".into()))
}
