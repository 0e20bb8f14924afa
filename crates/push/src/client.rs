//! The webhook HTTP client: one POST per delivery, over a connection made for it.
//!
//! In order, all under one total timeout: resolve the host once and check every address
//! ([`crate::ssrf`]); connect to a checked address (each under the connect timeout; no second
//! resolution); TLS with rustls and the Mozilla roots (`webpki-roots`) when the URL is https;
//! HTTP/1.1 with hyper, response headers bounded; read the status. 2xx is success and the body
//! is not read; 3xx is a failure (redirects are never followed: a `Location` could point
//! anywhere); any other status is a failure whose body is read up to a small bound for the error
//! message. The connection is then dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::ssrf::{AddressPolicy, Refusal, Resolve, SystemResolver, resolve_checked};
use crate::url::{Host, WebhookUrl};

/// Most bytes of a failed response's body kept (for the error message); the rest is not read.
pub const DEFAULT_MAX_RESPONSE_BODY: usize = 4 * 1024;
/// Most bytes of response headers hyper buffers (its minimum).
const MAX_RESPONSE_HEAD: usize = 8 * 1024;
/// The `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("Rempart-Webhooks/", env!("CARGO_PKG_VERSION"));

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    /// For everything: resolution, connection, TLS, request and response head.
    pub total_timeout: Duration,
    pub max_response_body: usize,
    pub policy: AddressPolicy,
    /// Roots trusted besides the Mozilla set (a private CA; the tests' own).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            max_response_body: DEFAULT_MAX_RESPONSE_BODY,
            policy: AddressPolicy::strict(),
            extra_roots: Vec::new(),
        }
    }
}

/// Why a delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("no answer within the time limit")]
    Timeout,
    #[error("answered {status}: redirects are not followed")]
    Redirect { status: u16 },
    #[error("answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// Sends webhook requests; cheap to clone.
#[derive(Clone)]
pub struct WebhookClient {
    config: Arc<ClientConfig>,
    resolver: Arc<dyn Resolve>,
    tls: TlsConnector,
}

impl WebhookClient {
    /// A client using the system resolver.
    pub fn new(config: ClientConfig) -> Result<Self, SendError> {
        WebhookClient::with_resolver(config, Arc::new(SystemResolver))
    }

    pub fn with_resolver(
        config: ClientConfig,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Self, SendError> {
        let tls = tls_connector(&config.extra_roots)?;
        Ok(WebhookClient {
            config: Arc::new(config),
            resolver,
            tls,
        })
    }

    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// POSTs `body` (JSON) with extra headers to `url`. `Ok(status)` for a 2xx answer.
    pub async fn post(
        &self,
        url: &WebhookUrl,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<u16, SendError> {
        tokio::time::timeout(self.config.total_timeout, self.attempt(url, headers, body))
            .await
            .map_err(|_| SendError::Timeout)?
    }

    async fn attempt(
        &self,
        url: &WebhookUrl,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<u16, SendError> {
        let addrs = resolve_checked(self.resolver.as_ref(), &self.config.policy, url).await?;
        let tcp = self.connect(&addrs).await?;
        let request = build_request(url, headers, body)?;
        if !url.is_https() {
            return exchange(tcp, request, self.config.max_response_body).await;
        }
        let name = match url.host() {
            Host::Name(name) => ServerName::try_from(name.clone())
                .map_err(|e| SendError::Tls(format!("server name: {e}")))?,
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        };
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| SendError::Tls(e.to_string()))?;
        exchange(tls, request, self.config.max_response_body).await
    }

    /// Connects to the first checked address that answers.
    async fn connect(&self, addrs: &[SocketAddr]) -> Result<TcpStream, SendError> {
        let mut last = String::from("no address");
        for addr in addrs {
            match tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr)).await
            {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: connect timed out"),
            }
        }
        Err(SendError::Connect(last))
    }
}

pub(crate) fn tls_connector(
    extra_roots: &[CertificateDer<'static>],
) -> Result<TlsConnector, SendError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| SendError::Setup(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

fn build_request(
    url: &WebhookUrl,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Result<hyper::Request<Full<Bytes>>, SendError> {
    use hyper::header;
    let mut builder = hyper::Request::post(url.target())
        .header(header::HOST, url.authority())
        .header(header::USER_AGENT, crate::client::USER_AGENT)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len());
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(body))
        .map_err(|e| SendError::Http(e.to_string()))
}

/// Aborts the connection task when the exchange ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<S>(
    stream: S,
    request: hyper::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<u16, SendError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = http1::Builder::new()
        .max_buf_size(MAX_RESPONSE_HEAD)
        .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Http(e.to_string()))?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| SendError::Http(e.to_string()))?;
    let status = response.status().as_u16();
    match status {
        200..=299 => Ok(status),
        300..=399 => Err(SendError::Redirect { status }),
        _ => {
            let body = read_bounded(response.into_body(), max_body).await;
            Err(SendError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        }
    }
}

/// Reads at most `max` bytes of a body; stops there (or at the first error).
async fn read_bounded(mut body: hyper::body::Incoming, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < max {
        let Some(Ok(frame)) = body.frame().await else {
            break;
        };
        if let Some(data) = frame.data_ref() {
            let take = data.len().min(max - out.len());
            out.extend_from_slice(&data[..take]);
        }
    }
    out
}
