//! A lean HTTP/1.1 client over a TCP socket bound to a chosen loopback source address: enough
//! to send a request and read a `Content-Length` (or empty) response, and to dribble bytes for
//! slow-client floods. Bounded: response heads and bodies have size caps.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest response head read.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest response body read.
pub const MAX_BODY: usize = 1024 * 1024;
/// Longest wait for one response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Connection {
    stream: BufReader<TcpStream>,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The server asked to close the connection after this response.
    pub close: bool,
    /// The first `Set-Cookie` value, if any.
    pub set_cookie: Option<String>,
}

/// Connects from `source` (port chosen by the kernel) to `target`.
pub async fn connect(source: IpAddr, target: SocketAddr) -> std::io::Result<Connection> {
    let socket = match target {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if source.is_ipv4() == target.is_ipv4() {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, socket.connect(target))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(Connection {
        stream: BufReader::new(stream),
    })
}

impl Connection {
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.get_mut().write_all(bytes).await
    }

    /// Sends a request and reads its response.
    pub async fn exchange(&mut self, request: &[u8]) -> std::io::Result<Response> {
        self.write(request).await?;
        self.read_response().await
    }

    pub async fn read_response(&mut self) -> std::io::Result<Response> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
        let mut line = String::new();
        let mut head_bytes = 0;
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut length = 0usize;
        let mut close = false;
        let mut set_cookie = None;
        loop {
            line.clear();
            let n = self.stream.read_line(&mut line).await?;
            head_bytes += n;
            if n == 0 || head_bytes > MAX_HEAD {
                return Err(bad("response head too long or cut"));
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().map_err(|_| bad("bad content-length"))?;
                } else if name.eq_ignore_ascii_case("connection")
                    && value.eq_ignore_ascii_case("close")
                {
                    close = true;
                } else if name.eq_ignore_ascii_case("set-cookie") && set_cookie.is_none() {
                    set_cookie = Some(value.to_owned());
                }
            }
        }
        if length > MAX_BODY {
            return Err(bad("response body too large"));
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(Response {
            status,
            body,
            close,
            set_cookie,
        })
    }

    /// Waits until the server closes the connection (or sends something); for slow clients.
    pub async fn read_some(&mut self) -> std::io::Result<usize> {
        let mut buf = [0u8; 512];
        self.stream.read(&mut buf).await
    }
}

/// The User-Agent of browser-like users.
pub const BROWSER_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

/// A GET request with browser-like headers.
pub fn browser_get(host: &str, path: &str) -> Vec<u8> {
    browser_request("GET", host, path, None, None)
}

/// A request as a browser sends it: its usual headers, the cookie it holds, and for a `fetch`
/// POST a JSON body.
pub fn browser_request(
    method: &str,
    host: &str,
    path: &str,
    cookie: Option<&str>,
    json_body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {BROWSER_UA}\r\n\
Accept: application/json,text/html;q=0.9,*/*;q=0.8\r\nAccept-Language: fr-FR,fr;q=0.9,en;q=0.5\r\nAccept-Encoding: identity\r\n"
    );
    if let Some(cookie) = cookie {
        out.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if let Some(body) = json_body {
        out.push_str(&format!(
            "Origin: http://{host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(json_body.unwrap_or_default());
    out
}

/// A plain request as a flood tool sends it.
pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &str,
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    request_as(method, host, path, "Mozilla/5.0", headers, body, close)
}

/// A plain request with the given User-Agent.
pub fn request_as(
    method: &str,
    host: &str,
    path: &str,
    user_agent: &str,
    headers: &str,
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n{headers}{}content-length: {}\r\n\r\n",
        if close { "Connection: close\r\n" } else { "" },
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
