//! E-mail alerts, the customer's side, on the public listener (pages from
//! `rempart_views::html::alerts`; French and English):
//!
//! - `POST [/{lang}]/alerts/{n}` (the form on the parcel's page, `email=…`): a pending request
//!   is stored with the digest of a random token, and the confirmation e-mail is queued for the
//!   mailer task on the ingest runtime. The answer is the same page whatever the parcel's
//!   subscription was: nobody learns whether, or which, address is subscribed.
//! - `GET [/{lang}]/alerts/confirm/{token}`: a page with a button; `POST` the same path confirms
//!   (double opt-in: only someone who reads the mailbox can). At most one address per parcel:
//!   the store keeps one subscription per tracking number, and a confirmed one is not replaced
//!   by a new request.
//! - `GET [/{lang}]/alerts/stop/{n}/{token}` (the link in every alert): a page with a button;
//!   `POST` deletes the address.
//!
//! Each of these passes the shield like a lookup: the form's number goes through the same
//! steps as `GET /track/{n}` (existence filter, rate limits, a challenge in attack mode), the
//! link pages through the rate limits and the challenge.

use std::net::SocketAddr;

use http::StatusCode;
use rempart_domain::{Timestamp, TrackingNumber};
use rempart_push::mail::{
    UNSUBSCRIBE_TOKEN_LEN, confirmation_digest, new_confirmation_token, unsubscribe_token_matches,
};
use rempart_shield::Priority;
use rempart_store::StoreError;
use rempart_store::push::{EmailAddress, EmailRequest, EmailRequestOutcome, Lang as MailLang};
use rempart_views::Lang;
use rempart_views::html::{alerts as pages, challenge as challenge_page};

use super::{CONFIRMATION_VALID_FOR, Confirmation};
use crate::app::App;
use crate::edge::{Request, Response};
use crate::guard::{Admission, LookupClaims};
use crate::public::{PageLang, form_field, parse_segment, rate_limited, uncached_page};

/// Largest body of the form.
pub const MAX_ALERT_FORM_BODY: usize = 512;

/// What the pages do once admitted.
pub enum Admitted {
    Ask {
        lang: Lang,
        tn: TrackingNumber,
        address: EmailAddress,
        priority: Priority,
    },
    Confirm {
        lang: Lang,
        digest: [u8; 32],
        priority: Priority,
    },
    Stop {
        lang: Lang,
        tn: TrackingNumber,
        token: String,
        priority: Priority,
    },
}

/// Answered at once, or after storage. (Moved, not boxed, as the refusals of
/// `public::lookup::admit`: answering must not allocate.)
#[allow(clippy::large_enum_variant)]
pub enum Decided {
    Now(Response),
    Later(Admitted),
}

fn mail_lang(lang: Lang) -> MailLang {
    match lang {
        Lang::Fr => MailLang::Fr,
        _ => MailLang::En,
    }
}

fn page(status: StatusCode, body: String) -> Decided {
    Decided::Now(uncached_page(status, body))
}

/// The shield's verdict for a page of this flow; `Err` the refusal (429, the challenge page,
/// 404 for a number the existence filter does not know).
#[allow(clippy::result_large_err)]
fn shield(
    app: &App,
    req: &Request<'_>,
    peer: SocketAddr,
    lang: Lang,
    tn: Option<&TrackingNumber>,
) -> Result<Priority, Response> {
    let admission = match tn {
        Some(tn) => crate::public::check(app, req, peer, tn),
        None => {
            let claims = LookupClaims {
                number: b"",
                source: peer.ip(),
                filter_trusted: false,
                pass: crate::public::presented_pass(req),
            };
            app.guard.admit_lookup(&claims, || false)
        }
    };
    match admission {
        Admission::Admit(priority) => Ok(priority),
        Admission::RateLimited { retry_after } => Err(rate_limited(retry_after)),
        Admission::Challenge(c) => Err(uncached_page(
            StatusCode::FORBIDDEN,
            challenge_page(lang, &c.seed, c.difficulty),
        )),
        Admission::Unknown => Err(Response::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no event is known for this number",
        )),
    }
}

/// Routes `rest` (the path after `[/{lang}]/alerts/`).
pub fn admit(app: &App, req: &Request<'_>, peer: SocketAddr, pl: PageLang, rest: &str) -> Decided {
    let lang = pl.lang;
    let enabled = app.push.as_ref().is_some_and(|p| p.mailer.is_some());
    if !enabled {
        return Decided::Now(Response::error(
            StatusCode::NOT_FOUND,
            "push_disabled",
            "e-mail alerts are not enabled on this node",
        ));
    }
    let post = req.method == "POST";
    let get = matches!(req.method, "GET" | "HEAD");
    let segments: Vec<&str> = rest.split('/').collect();
    let decided = match segments[..] {
        ["confirm", token] if get || post => confirm(app, req, peer, lang, token, post),
        ["stop", n, token] if get || post => stop(app, req, peer, lang, n, token, post),
        [n] if post => ask(app, req, peer, lang, n),
        ["confirm", _] | ["stop", _, _] => Ok(Decided::Now(Response::method_not_allowed(
            "GET, HEAD, POST",
        ))),
        [_] => Ok(Decided::Now(Response::method_not_allowed("POST"))),
        _ => Ok(Decided::Now(Response::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route",
        ))),
    };
    decided.unwrap_or_else(Decided::Now)
}

#[allow(clippy::result_large_err)]
fn ask(
    app: &App,
    req: &Request<'_>,
    peer: SocketAddr,
    lang: Lang,
    n: &str,
) -> Result<Decided, Response> {
    let tn = parse_segment(n)
        .map_err(|m| Response::error(StatusCode::BAD_REQUEST, "invalid_tracking_number", &m))?;
    if req.body.len() > MAX_ALERT_FORM_BODY {
        return Err(Response::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the alerts form is at most 512 bytes",
        ));
    }
    let priority = shield(app, req, peer, lang, Some(&tn))?;
    let typed = form_field(req.body, b"email").unwrap_or_default();
    let address = std::str::from_utf8(&typed)
        .ok()
        .and_then(|t| EmailAddress::parse(t).ok());
    Ok(match address {
        Some(address) => Decided::Later(Admitted::Ask {
            lang,
            tn,
            address,
            priority,
        }),
        None => page(StatusCode::BAD_REQUEST, pages::bad_address(lang, &tn)),
    })
}

#[allow(clippy::result_large_err)]
fn confirm(
    app: &App,
    req: &Request<'_>,
    peer: SocketAddr,
    lang: Lang,
    token: &str,
    post: bool,
) -> Result<Decided, Response> {
    let priority = shield(app, req, peer, lang, None)?;
    let Some(digest) = confirmation_digest(token) else {
        return Ok(page(StatusCode::NOT_FOUND, pages::expired(lang)));
    };
    if !post {
        return Ok(page(StatusCode::OK, pages::confirm(lang, req.path)));
    }
    Ok(Decided::Later(Admitted::Confirm {
        lang,
        digest,
        priority,
    }))
}

#[allow(clippy::result_large_err)]
fn stop(
    app: &App,
    req: &Request<'_>,
    peer: SocketAddr,
    lang: Lang,
    n: &str,
    token: &str,
    post: bool,
) -> Result<Decided, Response> {
    let priority = shield(app, req, peer, lang, None)?;
    let tn = match parse_segment(n) {
        Ok(tn) if token.len() == UNSUBSCRIBE_TOKEN_LEN => tn,
        _ => return Ok(page(StatusCode::NOT_FOUND, pages::expired(lang))),
    };
    if !post {
        return Ok(page(StatusCode::OK, pages::stop(lang, &tn, req.path)));
    }
    Ok(Decided::Later(Admitted::Stop {
        lang,
        tn,
        token: token.to_owned(),
        priority,
    }))
}

/// Does what was admitted, under a storage permit.
pub async fn finish(app: &App, admitted: Admitted) -> Response {
    let priority = match &admitted {
        Admitted::Ask { priority, .. }
        | Admitted::Confirm { priority, .. }
        | Admitted::Stop { priority, .. } => *priority,
    };
    let Some(permit) = app.guard.storage_permit(priority).await else {
        return busy();
    };
    let answer = tokio::time::timeout(super::api::API_TIMEOUT, run(app, admitted)).await;
    permit.done();
    match answer {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "e-mail alerts: storage failed");
            busy()
        }
        Err(_) => busy(),
    }
}

fn busy() -> Response {
    Response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "the node is busy; try again shortly",
    )
    .retry_after(1)
}

async fn run(app: &App, admitted: Admitted) -> Result<Response, StoreError> {
    let push = app.push.as_ref().expect("admitted only with push on");
    let now = crate::clock::now();
    match admitted {
        Admitted::Ask {
            lang, tn, address, ..
        } => {
            let (token, digest) = match new_confirmation_token() {
                Ok(pair) => pair,
                Err(e) => return Err(StoreError::Unavailable(e.to_string())),
            };
            let expires_at = Timestamp(now.micros() + CONFIRMATION_VALID_FOR.as_micros() as i64);
            let request = EmailRequest {
                tracking_number: tn,
                address: address.clone(),
                lang: mail_lang(lang),
                token_digest: digest,
                expires_at,
            };
            if push.store.request_email(request, now).await? == EmailRequestOutcome::Pending {
                let queued = push.queue_confirmation(Confirmation {
                    tn,
                    to: address,
                    lang: mail_lang(lang),
                    token,
                });
                if !queued {
                    return Ok(busy());
                }
            }
            Ok(uncached_page(StatusCode::OK, pages::asked(lang, &tn)))
        }
        Admitted::Confirm { lang, digest, .. } => {
            Ok(match push.store.confirm_email(digest, now).await? {
                Some(sub) => {
                    uncached_page(StatusCode::OK, pages::confirmed(lang, &sub.tracking_number))
                }
                None => uncached_page(StatusCode::NOT_FOUND, pages::expired(lang)),
            })
        }
        Admitted::Stop {
            lang, tn, token, ..
        } => {
            let sub = push.store.email_subscription(tn).await?;
            let matches = sub.is_some_and(|s| {
                unsubscribe_token_matches(&push.link_key, &tn, &s.address, &token)
            });
            if matches && push.store.delete_email(tn).await? {
                return Ok(uncached_page(StatusCode::OK, pages::stopped(lang, &tn)));
            }
            Ok(uncached_page(StatusCode::NOT_FOUND, pages::expired(lang)))
        }
    }
}
