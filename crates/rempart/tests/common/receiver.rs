//! A webhook receiver for the end-to-end tests: a plain HTTP/1.1 server on loopback (a thread
//! per connection), recording every request's headers and raw body so the test can verify the
//! signature once it knows the endpoint's secret. What it answers is the test's choice.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the receiver answers to its n-th request (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Reads the request, then never answers (until the receiver stops).
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub answered: Answer,
}

impl Hit {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Behaviour = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

pub struct Receiver {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Requests read so far (hung ones included).
    pub requests: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
}

/// A free loopback port (bound, then released) for a receiver started later.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Receiver {
    /// Listens on `addr` (`127.0.0.1:0` for any port) and answers per `behaviour`.
    pub fn start(
        addr: SocketAddr,
        behaviour: impl Fn(usize) -> Answer + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind(addr).expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver {
            addr,
            hits: Arc::default(),
            requests: Arc::default(),
            stopped: Arc::default(),
        };
        let behaviour: Behaviour = Arc::new(behaviour);
        let (hits, requests, stopped) = (
            receiver.hits.clone(),
            receiver.requests.clone(),
            receiver.stopped.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (hits, requests, behaviour, stopped) = (
                    hits.clone(),
                    requests.clone(),
                    behaviour.clone(),
                    stopped.clone(),
                );
                std::thread::spawn(move || serve(stream, &hits, &requests, &behaviour, &stopped));
            }
        });
        receiver
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Stops accepting (and releases hung requests, which then get no answer).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    stream: TcpStream,
    hits: &Mutex<Vec<Hit>>,
    requests: &AtomicUsize,
    behaviour: &Behaviour,
    stopped: &AtomicBool,
) {
    // One request per connection: every answer closes it.
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let n = requests.fetch_add(1, Ordering::SeqCst);
        let answer = behaviour(n);
        hits.lock().unwrap().push(Hit {
            headers,
            body,
            answered: answer,
        });
        match answer {
            Answer::Status(status) => {
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = (&stream).write_all(reply.as_bytes());
            }
            Answer::Hang => {
                while !stopped.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
    }
}
