//! What a subscription API request asks for: the route and the JSON body parsed into a
//! [`Call`], or a clear JSON error (`invalid_body`, `invalid_id`, `invalid_url`,
//! `invalid_number`). Bounded: at most [`MAX_API_BATCH`] numbers per call.

use http::StatusCode;
use rempart_domain::{Timestamp, TrackingNumber};
use rempart_push::url::WebhookUrl;
use rempart_store::push::{DeliveryId, EndpointId};
use serde::Deserialize;

use super::api::MAX_API_BATCH;
use crate::edge::Response;

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
