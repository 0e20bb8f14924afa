//! A small SMTP client for one relay (a setting): enough to hand a message over, no more.
//!
//! One connection per message: greeting, `EHLO`, `STARTTLS` (required unless the relay is set up
//! as plain or implicit TLS), `AUTH PLAIN` when credentials are set, `MAIL FROM`, `RCPT TO`,
//! `DATA` with dot-stuffing, `QUIT`. Every wait has a timeout. The relay's replies are untrusted
//! bytes: [`ReplyParser`] takes them line by line, each line at most [`MAX_REPLY_LINE`] bytes, at
//! most [`MAX_REPLY_LINES`] lines a reply, the same code on every line, and nothing may follow the
//! relay's answer to `STARTTLS` in the clear (a man in the middle could inject replies that would
//! be read as if they came over TLS).
//!
//! Why not `lettre`: it would bring its own address parser, MIME builder and transport pool for
//! a job that is a dozen commands to one relay; this client is small enough to read whole, and
//! its reply parser is tested against hostile input.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rempart_store::push::EmailAddress;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Longest reply line, CRLF included (RFC 5321 §4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;
/// Most lines of one (multi-line) reply.
pub const MAX_REPLY_LINES: usize = 64;
/// Largest message handed to the relay.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS: only for a relay on the same host or a trusted link (and the tests' sink).
    Plain,
    /// Plain connection upgraded with `STARTTLS`, which must be offered (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// A relay account.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, …)", self.user)
    }
}

/// The relay and how to talk to it.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// The name this node gives in `EHLO`.
    pub hello_name: String,
    pub credentials: Option<Credentials>,
    pub connect_timeout: Duration,
    /// For each reply.
    pub command_timeout: Duration,
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl SmtpConfig {
    /// A relay at `host:port` with the defaults: STARTTLS, 10 s to connect, 30 s per reply.
    #[must_use]
    pub fn new(host: &str, port: u16) -> Self {
        SmtpConfig {
            host: host.to_owned(),
            port,
            security: SmtpSecurity::StartTls,
            hello_name: "localhost".into(),
            credentials: None,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            extra_roots: Vec::new(),
        }
    }
}

/// Why a message was not handed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpError {
    #[error("cannot connect to the relay: {0}")]
    Connect(String),
    #[error("the relay did not answer in time")]
    Timeout,
    #[error("relay connection: {0}")]
    Io(String),
    #[error("the relay broke the protocol: {0}")]
    Protocol(&'static str),
    #[error("the relay answered {code}: {text}")]
    Rejected { code: u16, text: String },
    #[error("the relay does not offer STARTTLS")]
    NoStartTls,
    #[error("TLS with the relay: {0}")]
    Tls(String),
    #[error("bad setting: {0}")]
    Config(&'static str),
    #[error("message larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
}

impl SmtpError {
    /// A 5xx answer: sending the same message again will fail the same way.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        matches!(self, SmtpError::Rejected { code, .. } if *code >= 500)
    }
}

/// One reply of the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line (after the code and its separator).
    pub lines: Vec<String>,
}

impl Reply {
    #[must_use]
    pub fn text(&self) -> String {
        self.lines.join(" / ")
    }

    /// Whether an `EHLO` reply lists an extension keyword.
    #[must_use]
    pub fn offers(&self, keyword: &str) -> bool {
        self.lines.iter().skip(1).any(|line| {
            line.split_ascii_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
        })
    }
}

/// Assembles replies from lines.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Takes one line (with or without its line ending). `Some` once the reply is complete.
    pub fn feed(&mut self, line: &[u8]) -> Result<Option<Reply>, SmtpError> {
        if line.len() > MAX_REPLY_LINE {
            return Err(SmtpError::Protocol("reply line too long"));
        }
        let line = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if line.contains(&b'\r') || line.contains(&b'\n') || line.contains(&0) {
            return Err(SmtpError::Protocol("control byte in a reply line"));
        }
        let code = parse_code(line)?;
        if self.code.is_some_and(|c| c != code) {
            return Err(SmtpError::Protocol("reply lines with different codes"));
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(SmtpError::Protocol("reply with too many lines"));
        }
        let (last, text) = match line.get(3) {
            None => (true, &[][..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(SmtpError::Protocol("no separator after the reply code")),
        };
        self.code = Some(code);
        self.lines.push(String::from_utf8_lossy(text).into_owned());
        if !last {
            return Ok(None);
        }
        let reply = Reply {
            code,
            lines: std::mem::take(&mut self.lines),
        };
        self.code = None;
        Ok(Some(reply))
    }
}

fn parse_code(line: &[u8]) -> Result<u16, SmtpError> {
    let digits = line
        .get(..3)
        .filter(|d| d.iter().all(u8::is_ascii_digit))
        .ok_or(SmtpError::Protocol(
            "a reply line must start with a 3-digit code",
        ))?;
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(200..600).contains(&code) {
        return Err(SmtpError::Protocol("reply code out of range"));
    }
    Ok(code)
}

/// Doubles a leading dot on every line, normalises line endings to CRLF and appends the end of
/// data mark (RFC 5321 §4.5.2).
#[must_use]
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let body = message.strip_suffix(b"\n").unwrap_or(message);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    if !body.is_empty() {
        for line in body.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend(line.iter().map(|&b| if b == b'\r' { b' ' } else { b }));
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Hands messages to the relay; cheap to clone.
#[derive(Clone)]
pub struct SmtpClient {
    config: Arc<SmtpConfig>,
    tls: TlsConnector,
}

impl fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpClient({}:{})", self.config.host, self.config.port)
    }
}

impl SmtpClient {
    pub fn new(config: SmtpConfig) -> Result<Self, SmtpError> {
        let name_ok =
            |s: &str| !s.is_empty() && s.len() <= 253 && s.bytes().all(|b| b.is_ascii_graphic());
        if !name_ok(&config.hello_name) || !name_ok(&config.host) {
            return Err(SmtpError::Config(
                "host and EHLO name must be printable ASCII",
            ));
        }
        let tls = crate::client::tls_connector(&config.extra_roots)
            .map_err(|e| SmtpError::Tls(e.to_string()))?;
        Ok(SmtpClient {
            config: Arc::new(config),
            tls,
        })
    }

    /// Hands one message (headers and body, CRLF lines) over for delivery to `to`.
    pub async fn send(
        &self,
        from: &EmailAddress,
        to: &EmailAddress,
        message: &[u8],
    ) -> Result<(), SmtpError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(SmtpError::TooLarge);
        }
        let c = &self.config;
        let tcp = tokio::time::timeout(
            c.connect_timeout,
            TcpStream::connect((c.host.as_str(), c.port)),
        )
        .await
        .map_err(|_| SmtpError::Timeout)?
        .map_err(|e| SmtpError::Connect(e.to_string()))?;
        let io: Box<dyn Io> = match c.security {
            SmtpSecurity::Tls => Box::new(self.wrap_tls(tcp).await?),
            SmtpSecurity::Plain | SmtpSecurity::StartTls => Box::new(tcp),
        };
        let mut session = Session::new(io, c.command_timeout);
        session.expect(None, |code| code == 220).await?;
        let mut ehlo = session.ehlo(&c.hello_name).await?;
        if c.security == SmtpSecurity::StartTls {
            if !ehlo.offers("STARTTLS") {
                return Err(SmtpError::NoStartTls);
            }
            session.expect(Some("STARTTLS"), |code| code == 220).await?;
            let plain = session.into_inner()?;
            session = Session::new(Box::new(self.wrap_tls(plain).await?), c.command_timeout);
            ehlo = session.ehlo(&c.hello_name).await?;
        }
        let _ = ehlo;
        if let Some(credentials) = &c.credentials {
            let token = STANDARD
                .encode(format!("\0{}\0{}", credentials.user, credentials.password).as_bytes());
            session
                .expect(Some(&format!("AUTH PLAIN {token}")), |code| code == 235)
                .await?;
        }
        let from_line = format!("MAIL FROM:<{}>", from.as_str());
        session.expect(Some(&from_line), |code| code == 250).await?;
        let to_line = format!("RCPT TO:<{}>", to.as_str());
        session
            .expect(Some(&to_line), |code| code == 250 || code == 251)
            .await?;
        session.expect(Some("DATA"), |code| code == 354).await?;
        session.write(&dot_stuff(message)).await?;
        session.expect(None, |code| code == 250).await?;
        let _ = session.expect(Some("QUIT"), |code| code == 221).await;
        Ok(())
    }

    async fn wrap_tls<S: Io + 'static>(
        &self,
        io: S,
    ) -> Result<tokio_rustls::client::TlsStream<S>, SmtpError> {
        let name = ServerName::try_from(self.config.host.clone())
            .map_err(|e| SmtpError::Tls(format!("server name: {e}")))?;
        tokio::time::timeout(self.config.connect_timeout, self.tls.connect(name, io))
            .await
            .map_err(|_| SmtpError::Timeout)?
            .map_err(|e| SmtpError::Tls(e.to_string()))
    }
}

/// A connection to the relay: commands out, replies in.
struct Session {
    io: BufReader<Box<dyn Io>>,
    timeout: Duration,
}

impl Session {
    fn new(io: Box<dyn Io>, timeout: Duration) -> Self {
        Session {
            io: BufReader::with_capacity(MAX_REPLY_LINE * 2, io),
            timeout,
        }
    }

    /// The connection, for the TLS upgrade. Refused when the relay sent more than its answer.
    fn into_inner(self) -> Result<Box<dyn Io>, SmtpError> {
        if !self.io.buffer().is_empty() {
            return Err(SmtpError::Protocol("data after the STARTTLS answer"));
        }
        Ok(self.io.into_inner())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SmtpError> {
        let io = self.io.get_mut();
        tokio::time::timeout(self.timeout, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .map_err(|_| SmtpError::Timeout)?
        .map_err(|e| SmtpError::Io(e.to_string()))
    }

    /// Reads one line, at most [`MAX_REPLY_LINE`] bytes.
    async fn line(&mut self) -> Result<Vec<u8>, SmtpError> {
        let mut line = Vec::new();
        let mut limited = (&mut self.io).take(MAX_REPLY_LINE as u64 + 1);
        let read = tokio::time::timeout(self.timeout, limited.read_until(b'\n', &mut line))
            .await
            .map_err(|_| SmtpError::Timeout)?
            .map_err(|e| SmtpError::Io(e.to_string()))?;
        if read == 0 {
            return Err(SmtpError::Io("the relay closed the connection".into()));
        }
        if !line.ends_with(b"\n") {
            return Err(SmtpError::Protocol("reply line too long or cut"));
        }
        Ok(line)
    }

    async fn reply(&mut self) -> Result<Reply, SmtpError> {
        let mut parser = ReplyParser::default();
        loop {
            let line = self.line().await?;
            if let Some(reply) = parser.feed(&line)? {
                return Ok(reply);
            }
        }
    }

    /// Sends a command (if any) and reads the reply, which must satisfy `ok`.
    async fn expect(
        &mut self,
        command: Option<&str>,
        ok: impl Fn(u16) -> bool,
    ) -> Result<Reply, SmtpError> {
        if let Some(command) = command {
            self.write(format!("{command}\r\n").as_bytes()).await?;
        }
        let reply = self.reply().await?;
        if ok(reply.code) {
            Ok(reply)
        } else {
            Err(SmtpError::Rejected {
                code: reply.code,
                text: rempart_store::push::bounded_error(&reply.text()),
            })
        }
    }

    async fn ehlo(&mut self, name: &str) -> Result<Reply, SmtpError> {
        self.expect(Some(&format!("EHLO {name}")), |code| code == 250)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(lines: &[&[u8]]) -> Result<Option<Reply>, SmtpError> {
        let mut parser = ReplyParser::default();
        let mut last = None;
        for line in lines {
            last = parser.feed(line)?;
        }
        Ok(last)
    }

    #[test]
    fn single_and_multi_line_replies() {
        let r = parse_all(&[b"250 OK\r\n"]).unwrap().unwrap();
        assert_eq!((r.code, r.text()), (250, "OK".to_owned()));
        let r = parse_all(&[
            b"250-relay.example greets you\r\n",
            b"250-SIZE 1000000\r\n",
            b"250-starttls\r\n",
            b"250 8BITMIME\r\n",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(r.lines.len(), 4);
        assert!(r.offers("STARTTLS") && r.offers("size") && !r.offers("AUTH"));
        assert_eq!(parse_all(&[b"220\r\n"]).unwrap().unwrap().code, 220);
        let mut p = ReplyParser::default();
        assert_eq!(p.feed(b"250-a\r\n"), Ok(None));
    }

    #[test]
    fn hostile_replies_are_refused() {
        let long = [b"250 ".as_slice(), &[b'a'; MAX_REPLY_LINE]].concat();
        for lines in [
            vec![b"".as_slice()],
            vec![b"\r\n"],
            vec![b"25\r\n"],
            vec![b"2500 OK\r\n"],
            vec![b"abc OK\r\n"],
            vec![b"-250 OK\r\n"],
            vec![b"199 OK\r\n"],
            vec![b"600 OK\r\n"],
            vec![b"250_OK\r\n"],
            vec![b"250 OK\rRCPT\r\n"],
            vec![b"250 O\0K\r\n"],
            vec![b"250-a\r\n", b"251 b\r\n"],
            vec![long.as_slice()],
        ] {
            assert!(parse_all(&lines).is_err(), "accepted {lines:?}");
        }
        let mut p = ReplyParser::default();
        for _ in 0..MAX_REPLY_LINES {
            assert_eq!(p.feed(b"250-more\r\n"), Ok(None));
        }
        assert!(p.feed(b"250 last\r\n").is_err());
    }

    #[test]
    fn non_utf8_text_is_kept_lossily() {
        let r = parse_all(&[b"550 \xff\xfe no\r\n"]).unwrap().unwrap();
        assert_eq!(r.code, 550);
        assert!(r.text().ends_with("no"));
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"a\nb"), b"a\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"x\ry\r\n"), b"x y\r\n.\r\n");
    }

    proptest! {
        #[test]
        fn the_parser_never_panics(lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..8)) {
            let mut p = ReplyParser::default();
            for line in &lines {
                if p.feed(line).is_err() {
                    break;
                }
            }
        }

        #[test]
        fn replies_from_the_grammar_parse(code in 200u16..600, texts in prop::collection::vec("[ -~]{0,40}", 1..5)) {
            let mut p = ReplyParser::default();
            let n = texts.len();
            for (i, t) in texts.iter().enumerate() {
                let sep = if i + 1 == n { ' ' } else { '-' };
                let out = p.feed(format!("{code}{sep}{t}\r\n").as_bytes()).unwrap();
                prop_assert_eq!(out.is_some(), i + 1 == n);
                if let Some(r) = out {
                    prop_assert_eq!(r.code, code);
                    prop_assert_eq!(&r.lines, &texts);
                }
            }
        }

        /// After stuffing, no line of the data is a lone dot except the final mark, and
        /// unstuffing gives the message back (with CRLF lines).
        #[test]
        fn stuffing_cannot_end_data_early(message in "[.a\r\n]{0,40}") {
            let stuffed = dot_stuff(message.as_bytes());
            let text = String::from_utf8(stuffed).unwrap();
            let lines: Vec<&str> = text.split("\r\n").collect();
            let end = lines.len() - 2;
            prop_assert_eq!(lines[end], ".");
            prop_assert!(lines[..end].iter().all(|l| *l != "."));
        }
    }
}
