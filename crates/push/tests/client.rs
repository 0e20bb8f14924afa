//! The webhook client alone: TLS to a loopback receiver, one resolution per attempt, refusals
//! before any connection.

mod common;

use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::receiver::{Answer, Receiver};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rempart_push::ssrf::{AddressPolicy, Refusal, Resolve, StaticResolver};
use rempart_push::url::WebhookUrl;
use rempart_push::{ClientConfig, SendError, SigningSecret, WebhookClient};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn loopback_policy() -> AddressPolicy {
    AddressPolicy::parse("127.0.0.0/8").unwrap()
}

fn client(
    resolver: Arc<dyn Resolve>,
    policy: AddressPolicy,
    roots: Vec<CertificateDer<'static>>,
) -> WebhookClient {
    let config = ClientConfig {
        total_timeout: Duration::from_secs(10),
        policy,
        extra_roots: roots,
        ..ClientConfig::default()
    };
    WebhookClient::with_resolver(config, resolver).unwrap()
}

/// An HTTPS receiver on loopback with a certificate for `name`; records each request's Host.
async fn tls_receiver(name: &str) -> (u16, CertificateDer<'static>, Arc<Mutex<Vec<String>>>) {
    let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hosts: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = hosts.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    seen.lock().unwrap().push(host);
                    async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, cert, hosts)
}

fn localhost() -> Vec<IpAddr> {
    vec!["127.0.0.1".parse().unwrap()]
}

#[tokio::test]
async fn https_checks_the_certificate_against_the_url_host() {
    let (port, cert, hosts) = tls_receiver("hooks.test").await;
    let resolver = StaticResolver::new()
        .with("hooks.test", &localhost())
        .with("other.test", &localhost());
    let resolver: Arc<dyn Resolve> = Arc::new(resolver);
    let trusting = client(resolver.clone(), loopback_policy(), vec![cert]);
    let url = WebhookUrl::parse(&format!("https://hooks.test:{port}/h")).unwrap();
    assert_eq!(
        trusting.post(&url, &[], Bytes::from_static(b"{}")).await,
        Ok(200)
    );
    assert_eq!(
        hosts.lock().unwrap().as_slice(),
        [format!("hooks.test:{port}")]
    );

    // Same server, reached under a name its certificate does not carry.
    let wrong_name = WebhookUrl::parse(&format!("https://other.test:{port}/h")).unwrap();
    let result = trusting
        .post(&wrong_name, &[], Bytes::from_static(b"{}"))
        .await;
    assert!(matches!(result, Err(SendError::Tls(_))), "{result:?}");

    // A certificate no trusted root vouches for.
    let untrusting = client(resolver, loopback_policy(), Vec::new());
    let result = untrusting.post(&url, &[], Bytes::from_static(b"{}")).await;
    assert!(matches!(result, Err(SendError::Tls(_))), "{result:?}");
    assert_eq!(
        hosts.lock().unwrap().len(),
        1,
        "no request went over a bad TLS session"
    );
}

/// Answers with the next address of its list at each call, and counts the calls.
struct Rebinding {
    answers: Vec<IpAddr>,
    calls: AtomicUsize,
}

#[async_trait]
impl Resolve for Rebinding {
    async fn resolve(&self, _: &str) -> io::Result<Vec<IpAddr>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(vec![self.answers[n.min(self.answers.len() - 1)]])
    }
}

#[tokio::test]
async fn a_name_is_resolved_once_per_attempt_and_the_checked_address_is_used() {
    let receiver =
        Receiver::start(SigningSecret::from_bytes([0; 32]), |_| Answer::Status(200)).await;
    let resolver = Arc::new(Rebinding {
        answers: vec!["127.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap()],
        calls: AtomicUsize::new(0),
    });
    let c = client(resolver.clone(), loopback_policy(), Vec::new());
    let url = WebhookUrl::parse(&format!("http://rebind.test:{}/h", receiver.addr.port())).unwrap();
    assert_eq!(c.post(&url, &[], Bytes::from_static(b"{}")).await, Ok(200));
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 1);
    assert_eq!(receiver.requests.load(Ordering::SeqCst), 1);
    // The name now points inside the network: refused before any connection.
    let result = c.post(&url, &[], Bytes::from_static(b"{}")).await;
    assert!(
        matches!(result, Err(SendError::Refused(Refusal::Forbidden { .. }))),
        "{result:?}"
    );
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 2);
    assert_eq!(receiver.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn names_pointing_at_loopback_need_the_allow_list() {
    let receiver =
        Receiver::start(SigningSecret::from_bytes([0; 32]), |_| Answer::Status(200)).await;
    let resolver: Arc<dyn Resolve> =
        Arc::new(StaticResolver::new().with("innocent.example", &localhost()));
    let port = receiver.addr.port();
    let strict = client(resolver.clone(), AddressPolicy::strict(), Vec::new());
    for url in [
        format!("https://innocent.example:{port}/"),
        format!("http://innocent.example:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::1]:{port}/"),
    ] {
        let result = strict
            .post(&WebhookUrl::parse(&url).unwrap(), &[], Bytes::new())
            .await;
        assert!(
            matches!(result, Err(SendError::Refused(_))),
            "{url}: {result:?}"
        );
    }
    assert_eq!(receiver.requests.load(Ordering::SeqCst), 0);
    let allowed = client(resolver, loopback_policy(), Vec::new());
    let url = WebhookUrl::parse(&format!("http://innocent.example:{port}/")).unwrap();
    assert_eq!(allowed.post(&url, &[], Bytes::new()).await, Ok(200));
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_cut_off_by_the_total_timeout() {
    // Accepts the connection and reads nothing.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let config = ClientConfig {
        total_timeout: Duration::from_millis(300),
        policy: loopback_policy(),
        ..ClientConfig::default()
    };
    let c = WebhookClient::new(config).unwrap();
    let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    assert_eq!(
        c.post(&url, &[], Bytes::new()).await,
        Err(SendError::Timeout)
    );
}
