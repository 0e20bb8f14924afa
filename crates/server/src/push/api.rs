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
use rempart_domain::Timestamp;
use rempart_push::ssrf::resolve_checked;
use rempart_push::url::WebhookUrl;
use rempart_shield::Priority;
use rempart_store::push::{
    Channel, Delivery, Endpoint, KeyId, NewEndpoint, PushError, Replay, WebhookSubscription,
};
use serde_json::json;

use super::keys::Scope;
use crate::app::App;
use crate::content::JSON;
use crate::edge::{Request, Response};
use crate::guard::{Admission, LookupClaims};
use crate::public::{Page, challenged, rate_limited};

pub use super::calls::{Call, parse};

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

/// A call the key and the shield let through.
pub struct Admitted {
    owner: KeyId,
    priority: Priority,
    call: Call,
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
