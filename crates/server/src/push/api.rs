//! The subscription API on the public listener, for merchants and integrators holding an API
//! key with the `webhooks` scope (`Authorization: Bearer rmk_…`). docs/api.md has each route.
//!
//! A request's life, as for a lookup: [`admit`] (synchronous, in `Public::prepare`) checks the
//! key and the shield (a request without a valid key costs what an anonymous lookup costs: it
//! is rate-limited, challenged in attack mode, then refused 401; a keyed client is *known*),
//! then parses the route and the body into a [`Call`], or answers a clear JSON error. [`finish`]
//! runs the call against the store under a storage permit at the keyed priority.
//!
//! Every list is bounded: [`MAX_API_BATCH`] numbers per call, pages of [`PAGE`] rows (the next
//! page is a path, `…/after/{cursor}`: the public side reads no query string), replays of at
//! most `MAX_REPLAY` deliveries from the last [`MAX_REPLAY_AGE`].

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use rempart_domain::{Timestamp, TrackingNumber};
use rempart_push::ssrf::resolve_checked;
use rempart_push::url::WebhookUrl;
use rempart_shield::Priority;
use rempart_store::push::{
    Channel, Delivery, DeliveryId, Endpoint, EndpointId, KeyId, NewEndpoint, PushError, Replay,
    WebhookSubscription,
};
use serde::Deserialize;
use serde_json::json;

use super::keys::Scope;
use crate::app::App;
use crate::content::JSON;
use crate::edge::{Request, Response};
use crate::guard::{Admission, LookupClaims};
use crate::public::{Page, challenged, rate_limited};

/// Where the API lives.
pub const PREFIX: &str = "/v1/webhooks/";
/// Most tracking numbers one subscribe or unsubscribe call takes (a body of at most
/// `edge::MAX_API_BODY` bytes holds them).
pub const MAX_API_BATCH: usize = 500;
/// Rows per page of a listing.
pub const PAGE: usize = 500;
/// How far back a replay of recent deliveries may reach.
pub const MAX_REPLAY_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest a call waits for storage (and, for a new endpoint, for its host to resolve).
pub const API_TIMEOUT: Duration = Duration::from_secs(5);

/// One parsed API request.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    ListEndpoints,
    CreateEndpoint(WebhookUrl, String),
    DeleteEndpoint(EndpointId),
    Subscribe(EndpointId, Vec<TrackingNumber>),
    Unsubscribe(Option<EndpointId>, Vec<TrackingNumber>),
    ListSubscriptions(Option<(TrackingNumber, EndpointId)>),
    Replay(Option<EndpointId>, Timestamp),
    DeadLetters(Option<DeliveryId>),
    ReplayDead(Option<Vec<DeliveryId>>),
}

/// A call the key and the shield let through.
pub struct Admitted {
    owner: KeyId,
    priority: Priority,
    call: Call,
}

fn invalid_body(message: &str) -> Response {
    Response::error(StatusCode::BAD_REQUEST, "invalid_body", message)
}

fn invalid_id(message: &str) -> Response {
    Response::error(StatusCode::BAD_REQUEST, "invalid_id", message)
}

fn invalid_url(message: &str) -> Response {
    Response::error(StatusCode::BAD_REQUEST, "invalid_url", message)
}

fn invalid_number(message: &str) -> Response {
    Response::error(StatusCode::BAD_REQUEST, "invalid_tracking_number", message)
}

/// Checks the key and the shield, then parses the call (`rest`: the path after [`PREFIX`]).
// The refusal is moved, never boxed, as in `public::lookup::admit`.
#[allow(clippy::result_large_err)]
pub fn admit(
    app: &App,
    req: &Request<'_>,
    peer: SocketAddr,
    rest: &str,
) -> Result<Admitted, Response> {
    if app.push.is_none() {
        return Err(Response::error(
            StatusCode::NOT_FOUND,
            "push_disabled",
            "webhooks are not enabled on this node",
        ));
    }
    let key = app.keys.identify(req.header("authorization"));
    let claims = LookupClaims {
        number: b"",
        source: peer.ip(),
        // No number to look up: the existence filter is not asked.
        filter_trusted: false,
        pass: None,
    };
    let priority = match app.guard.admit_lookup(&claims, || key.is_some()) {
        Admission::Admit(priority) => priority,
        Admission::RateLimited { retry_after } => return Err(rate_limited(retry_after)),
        Admission::Challenge(challenge) => return Err(challenged(&challenge, Page::Json)),
        Admission::Unknown => unreachable!("the filter is not asked"),
    };
    let Some(key) = key else {
        return Err(Response::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an API key is required: Authorization: Bearer rmk_…",
        ));
    };
    if !key.allows(Scope::Webhooks) {
        return Err(Response::error(
            StatusCode::FORBIDDEN,
            "forbidden_scope",
            "this API key has no `webhooks` scope",
        ));
    }
    let call = parse(req.method, rest, req.body)?;
    Ok(Admitted {
        owner: key.id,
        priority,
        call,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEndpointBody {
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NumbersBody {
    endpoint: Option<String>,
    tracking_numbers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    since: String,
    endpoint: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayDeadBody {
    ids: Option<Vec<String>>,
}

#[allow(clippy::result_large_err)]
fn body<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Response> {
    serde_json::from_slice(bytes).map_err(|e| invalid_body(&format!("{e}")))
}

#[allow(clippy::result_large_err)]
fn endpoint_id(text: &str) -> Result<EndpointId, Response> {
    text.parse()
        .map_err(|e: rempart_store::push::InvalidId| invalid_id(&e.to_string()))
}

/// The route and the body, parsed. 404 for a path that is no route, 405 for a wrong method.
#[allow(clippy::result_large_err)]
pub fn parse(method: &str, rest: &str, bytes: &[u8]) -> Result<Call, Response> {
    let segments: Vec<&str> = rest.split('/').collect();
    let (get, post, delete) = (method == "GET", method == "POST", method == "DELETE");
    let wrong = |allow| Err(Response::method_not_allowed(allow));
    match segments[..] {
        ["endpoints"] if get => Ok(Call::ListEndpoints),
        ["endpoints"] if post => {
            let b: NewEndpointBody = body(bytes)?;
            let url = WebhookUrl::parse(&b.url).map_err(|e| invalid_url(&e.to_string()))?;
            Ok(Call::CreateEndpoint(url, b.url))
        }
        ["endpoints"] => wrong("GET, POST"),
        ["endpoints", id] if delete => Ok(Call::DeleteEndpoint(endpoint_id(id)?)),
        ["endpoints", _] => wrong("DELETE"),
        ["subscriptions"] if get => Ok(Call::ListSubscriptions(None)),
        ["subscriptions"] if post => {
            let (endpoint, numbers) = numbers(body(bytes)?)?;
            let endpoint = endpoint.ok_or_else(|| invalid_body("`endpoint` is required"))?;
            Ok(Call::Subscribe(endpoint, numbers))
        }
        ["subscriptions"] => wrong("GET, POST"),
        ["subscriptions", "remove"] if post => {
            let (endpoint, numbers) = numbers(body(bytes)?)?;
            Ok(Call::Unsubscribe(endpoint, numbers))
        }
        ["subscriptions", "remove"] => wrong("POST"),
        ["subscriptions", "after", tn, id] if get => {
            let tn = TrackingNumber::parse(tn).map_err(|e| invalid_number(&e.to_string()))?;
            Ok(Call::ListSubscriptions(Some((tn, endpoint_id(id)?))))
        }
        ["replay"] if post => {
            let b: ReplayBody = body(bytes)?;
            let since = Timestamp::parse_rfc3339(&b.since)
                .ok_or_else(|| invalid_body("`since` is an RFC 3339 time"))?;
            let endpoint = b.endpoint.as_deref().map(endpoint_id).transpose()?;
            Ok(Call::Replay(endpoint, since))
        }
        ["replay"] => wrong("POST"),
        ["dead-letters"] if get => Ok(Call::DeadLetters(None)),
        ["dead-letters", "after", id] if get => {
            let id = id
                .parse()
                .map_err(|e: rempart_store::push::InvalidId| invalid_id(&e.to_string()))?;
            Ok(Call::DeadLetters(Some(id)))
        }
        ["dead-letters", "replay"] if post => {
            let b: ReplayDeadBody = body(bytes)?;
            let ids = b.ids.map(|ids| dead_ids(&ids)).transpose()?;
            Ok(Call::ReplayDead(ids))
        }
        ["dead-letters", "replay"] => wrong("POST"),
        _ if get || post || delete => Err(Response::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route",
        )),
        _ => wrong("GET, POST, DELETE"),
    }
}

#[allow(clippy::result_large_err)]
fn dead_ids(ids: &[String]) -> Result<Vec<DeliveryId>, Response> {
    if ids.is_empty() || ids.len() > MAX_API_BATCH {
        return Err(invalid_body(&format!(
            "`ids` holds 1 to {MAX_API_BATCH} ids"
        )));
    }
    ids.iter()
        .map(|id| {
            id.parse()
                .map_err(|e: rempart_store::push::InvalidId| invalid_id(&e.to_string()))
        })
        .collect()
}

/// The numbers of a (un)subscribe body: 1 to [`MAX_API_BATCH`], each valid (the first bad one
/// is named; nothing is done), duplicates removed.
#[allow(clippy::result_large_err)]
fn numbers(b: NumbersBody) -> Result<(Option<EndpointId>, Vec<TrackingNumber>), Response> {
    if b.tracking_numbers.is_empty() || b.tracking_numbers.len() > MAX_API_BATCH {
        return Err(invalid_body(&format!(
            "`tracking_numbers` holds 1 to {MAX_API_BATCH} numbers"
        )));
    }
    let mut out = Vec::with_capacity(b.tracking_numbers.len());
    for (i, text) in b.tracking_numbers.iter().enumerate() {
        let tn = TrackingNumber::parse(text)
            .map_err(|e| invalid_number(&format!("tracking_numbers[{i}]: {e}")))?;
        out.push(tn);
    }
    out.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    out.dedup();
    let endpoint = b.endpoint.as_deref().map(endpoint_id).transpose()?;
    Ok((endpoint, out))
}

/// Runs an admitted call; every answer is `no-store`.
pub async fn finish(app: &App, admitted: Admitted) -> Response {
    let Some(permit) = app.guard.storage_permit(admitted.priority).await else {
        return overloaded();
    };
    let answer = tokio::time::timeout(API_TIMEOUT, run(app, admitted.owner, admitted.call)).await;
    permit.done();
    let response = match answer {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => store_error(e),
        Err(_) => overloaded(),
    };
    crate::public::no_store(response)
}

fn overloaded() -> Response {
    Response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "the node is busy; try again shortly",
    )
    .retry_after(1)
}

fn store_error(e: PushError) -> Response {
    match e {
        PushError::TooMany { .. } => Response::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit_reached",
            &e.to_string(),
        ),
        PushError::UnknownEndpoint => Response::error(
            StatusCode::NOT_FOUND,
            "unknown_endpoint",
            "no endpoint of that id belongs to this key",
        ),
        PushError::Store(e) => {
            tracing::warn!(error = %e, "push API: storage failed");
            Response::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "storage failed; try again",
            )
            .retry_after(1)
        }
    }
}

fn ok(status: StatusCode, value: serde_json::Value) -> Response {
    Response::new(status, JSON, value.to_string())
}

fn endpoint_json(e: &Endpoint) -> serde_json::Value {
    json!({"id": e.id.to_string(), "url": e.url, "created_at": e.created_at.to_rfc3339()})
}

async fn run(app: &App, owner: KeyId, call: Call) -> Result<Response, PushError> {
    let push = app.push.as_ref().expect("admitted only with push on");
    let store = push.store.as_ref();
    let now = crate::clock::now();
    Ok(match call {
        Call::ListEndpoints => {
            let list: Vec<_> = store
                .endpoints(owner)
                .await?
                .iter()
                .map(endpoint_json)
                .collect();
            ok(StatusCode::OK, json!({ "endpoints": list }))
        }
        Call::CreateEndpoint(url, text) => return create_endpoint(app, owner, url, text).await,
        Call::DeleteEndpoint(id) => match store.delete_endpoint(owner, id).await? {
            true => ok(StatusCode::OK, json!({ "deleted": id.to_string() })),
            false => return Err(PushError::UnknownEndpoint),
        },
        Call::Subscribe(endpoint, numbers) => {
            let done = store.subscribe(owner, endpoint, &numbers, now).await?;
            ok(
                StatusCode::OK,
                json!({"created": done.created, "existing": done.existing}),
            )
        }
        Call::Unsubscribe(endpoint, numbers) => {
            let removed = store.unsubscribe(owner, endpoint, &numbers).await?;
            ok(StatusCode::OK, json!({ "removed": removed }))
        }
        Call::ListSubscriptions(after) => {
            let rows = store.subscriptions(owner, after, PAGE).await?;
            ok(StatusCode::OK, subscriptions_page(&rows))
        }
        Call::Replay(endpoint, since) => {
            let earliest = Timestamp(now.micros() - MAX_REPLAY_AGE.as_micros() as i64);
            let since = Timestamp(since.micros().max(earliest.micros()));
            let what = Replay::Recent {
                owner,
                endpoint,
                since,
            };
            let replayed = store.replay(what, now).await?;
            push.wake();
            ok(
                StatusCode::OK,
                json!({"replayed": replayed, "since": since.to_rfc3339()}),
            )
        }
        Call::DeadLetters(after) => {
            let rows = store.dead_letters(Some(owner), after, PAGE).await?;
            ok(StatusCode::OK, dead_letters_page(&rows))
        }
        Call::ReplayDead(ids) => {
            let what = Replay::Dead {
                owner: Some(owner),
                ids,
            };
            let replayed = store.replay(what, now).await?;
            push.wake();
            ok(StatusCode::OK, json!({ "replayed": replayed }))
        }
    })
}

/// Checks the URL's addresses against the SSRF policy now (they are checked again at every
/// send), then stores the endpoint and shows its signing secret, once.
async fn create_endpoint(
    app: &App,
    owner: KeyId,
    url: WebhookUrl,
    text: String,
) -> Result<Response, PushError> {
    let push = app.push.as_ref().expect("admitted only with push on");
    if let Err(refusal) = resolve_checked(push.resolver.as_ref(), &push.policy, &url).await {
        return Ok(Response::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "forbidden_url",
            &format!("webhooks cannot be sent there: {refusal}"),
        ));
    }
    let (secret_ref, secret) = match push.keys.new_secret() {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(error = %e, "push API: cannot make a signing secret");
            return Ok(Response::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "cannot make a signing secret now; try again",
            ));
        }
    };
    let new = NewEndpoint {
        owner,
        url: text,
        secret: secret_ref,
    };
    let endpoint = push.store.create_endpoint(new, crate::clock::now()).await?;
    let mut body = endpoint_json(&endpoint);
    body["secret"] = json!(secret.to_text());
    Ok(ok(StatusCode::CREATED, body))
}

fn subscriptions_page(rows: &[WebhookSubscription]) -> serde_json::Value {
    let list: Vec<_> = rows
        .iter()
        .map(|s| {
            json!({
                "tracking_number": s.tracking_number.as_str(),
                "endpoint": s.endpoint.to_string(),
                "created_at": s.created_at.to_rfc3339(),
            })
        })
        .collect();
    let next = (rows.len() >= PAGE)
        .then(|| rows.last())
        .flatten()
        .map(|s| {
            format!(
                "{PREFIX}subscriptions/after/{}/{}",
                s.tracking_number.as_str(),
                s.endpoint
            )
        });
    json!({ "subscriptions": list, "next": next })
}

fn dead_letters_page(rows: &[Delivery]) -> serde_json::Value {
    let list: Vec<_> = rows
        .iter()
        .map(|d| {
            let endpoint = match d.channel {
                Channel::Webhook { endpoint, .. } => Some(endpoint.to_string()),
                Channel::Email => None,
            };
            json!({
                "id": d.id.to_string(),
                "endpoint": endpoint,
                "event_id": rempart_push::payload::event_id(&d.notice.event.event_id),
                "tracking_number": d.notice.tracking_number.as_str(),
                "status": d.notice.status.as_str(),
                "created_at": d.created_at.to_rfc3339(),
                "attempts": d.attempts,
                "last_error": d.last_error,
            })
        })
        .collect();
    let next = (rows.len() >= PAGE)
        .then(|| rows.last())
        .flatten()
        .map(|d| format!("{PREFIX}dead-letters/after/{}", d.id));
    json!({ "dead_letters": list, "next": next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: Result<Call, Response>) -> u16 {
        r.map_or_else(|e| e.status().as_u16(), |_| 200)
    }

    #[test]
    fn routes_parse_into_calls() {
        assert_eq!(parse("GET", "endpoints", b"").unwrap(), Call::ListEndpoints);
        let body = br#"{"endpoint":"ep_0000000000000001","tracking_numbers":["rr123456785fr","RR123456785FR"]}"#;
        let Call::Subscribe(ep, numbers) = parse("POST", "subscriptions", body).unwrap() else {
            panic!("not a subscribe");
        };
        assert_eq!(ep, EndpointId(1));
        assert_eq!(numbers.len(), 1, "duplicates removed");
        assert!(matches!(
            parse(
                "GET",
                "subscriptions/after/RR123456785FR/ep_0000000000000001",
                b""
            ),
            Ok(Call::ListSubscriptions(Some(_)))
        ));
        assert!(matches!(
            parse("POST", "dead-letters/replay", b"{}"),
            Ok(Call::ReplayDead(None))
        ));
    }

    #[test]
    fn bad_input_gets_a_clear_error() {
        let cases: [(&str, &str, &[u8], u16, &str); 9] = [
            ("POST", "endpoints", b"{", 400, "invalid_body"),
            (
                "POST",
                "endpoints",
                br#"{"url":"ftp://x"}"#,
                400,
                "invalid_url",
            ),
            (
                "POST",
                "endpoints",
                br#"{"url":"https://a.example","x":1}"#,
                400,
                "invalid_body",
            ),
            ("DELETE", "endpoints/ep_1", b"", 400, "invalid_id"),
            (
                "POST",
                "subscriptions",
                br#"{"tracking_numbers":["RR123456785FR"]}"#,
                400,
                "invalid_body",
            ),
            (
                "POST",
                "subscriptions",
                br#"{"endpoint":"ep_0000000000000001","tracking_numbers":["RR123456784FR"]}"#,
                400,
                "invalid_tracking_number",
            ),
            (
                "POST",
                "subscriptions/remove",
                br#"{"tracking_numbers":[]}"#,
                400,
                "invalid_body",
            ),
            (
                "POST",
                "replay",
                br#"{"since":"yesterday"}"#,
                400,
                "invalid_body",
            ),
            ("GET", "nothing", b"", 404, "not_found"),
        ];
        for (method, path, body, code, error) in cases {
            let r = parse(method, path, body).unwrap_err();
            assert_eq!(r.status().as_u16(), code, "{method} {path}");
            let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
            assert_eq!(v["error"], error, "{method} {path}");
        }
        assert_eq!(status(parse("PUT", "endpoints", b"")), 405);
        let many: Vec<String> = (0..=MAX_API_BATCH)
            .map(|_| "RR123456785FR".into())
            .collect();
        let body = json!({"endpoint": "ep_0000000000000001", "tracking_numbers": many});
        assert_eq!(
            status(parse("POST", "subscriptions", body.to_string().as_bytes())),
            400
        );
    }
}
