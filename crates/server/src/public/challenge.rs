//! `POST /v1/challenge` with `{"seed":…,"nonce":…}` → a pass, as JSON and as a cookie (see
//! docs/shield.md). Only served while a shield runs. The cookie is `HttpOnly` (no script reads
//! it), `SameSite=Lax` (sent when a customer follows a link from a shop's site, not on other
//! sites' requests), and `Secure` when customers reach the node over TLS (docs/cdn.md).

use std::net::SocketAddr;

use http::StatusCode;

use super::caching;
use super::lookup::PASS_COOKIE;
use crate::app::App;
use crate::content::JSON;
use crate::edge::{HeaderText, Request, Response};

/// Largest body of `POST /v1/challenge`.
pub const MAX_CHALLENGE_BODY: usize = 1024;

#[derive(serde::Deserialize)]
struct Solution {
    seed: String,
    nonce: String,
}

/// Checks a solution from `peer`; the pass is bound to its /24 or /48.
pub fn redeem(app: &App, req: &Request<'_>, peer: SocketAddr) -> Response {
    if req.body.len() > MAX_CHALLENGE_BODY {
        return Response::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "at most 1 KiB",
        );
    }
    let solution: Solution = match serde_json::from_slice(req.body) {
        Ok(s) => s,
        Err(e) => {
            return Response::error(
                StatusCode::BAD_REQUEST,
                "challenge_failed",
                &format!("expected {{\"seed\":…,\"nonce\":…}}: {e}"),
            );
        }
    };
    match app.guard.redeem(peer.ip(), &solution.seed, &solution.nonce) {
        Ok((pass, expires, ttl)) => {
            let tls = caching::over_tls(req, app.settings.listeners.public_url.is_https());
            let cookie = pass_cookie(&pass, ttl, tls);
            caching::no_store(Response::new(
                StatusCode::OK,
                JSON,
                serde_json::json!({ "pass": pass, "expires": expires }).to_string(),
            ))
            .header("set-cookie", HeaderText::Owned(cookie.into_boxed_str()))
        }
        Err(e) => Response::error(StatusCode::BAD_REQUEST, "challenge_failed", &e.to_string()),
    }
}

/// The `Set-Cookie` value of a pass.
fn pass_cookie(pass: &str, ttl: u64, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{PASS_COOKIE}={pass}; Max-Age={ttl}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pass_cookie_is_http_only_same_site_and_secure_over_tls() {
        let plain = super::pass_cookie("p", 60, false);
        assert_eq!(
            plain,
            "rempart_pass=p; Max-Age=60; Path=/; HttpOnly; SameSite=Lax"
        );
        let tls = super::pass_cookie("p", 60, true);
        assert!(tls.ends_with("; HttpOnly; SameSite=Lax; Secure"), "{tls}");
    }
}
