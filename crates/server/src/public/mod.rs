//! The public listener's routes (anonymous lookups, Suivi v2, HTML pages, health), served through
//! the [`edge`](crate::edge) connection loop. Query strings are never looked at, but for the one
//! Suivi v2 parameter `lang` (six fixed values): only the path is routed, so random query strings
//! cannot defeat a cache or reach storage.
//!
//! A request's life in named phases:
//! 1. framing — `edge` (431/400/411/413/417, then close);
//! 2. routing — [`Public::prepare`] here, synchronous; pages take their language from the path
//!    prefix (`/en/track/{n}`) or else from `Accept-Language`;
//! 3. admission — `lookup.rs` (and `suivi.rs` for each number of a batch): the number's syntax
//!    (400), then the shield ([`crate::guard`]: existence filter 404, rate limits 429,
//!    attack-mode challenge 403), synchronous;
//! 4. lookup — `lookup.rs`: cache, then storage under the adaptive concurrency limit (503
//!    when it cannot start in time), awaited in [`Public::finish`];
//! 5. caching headers — `caching.rs`: `Cache-Control`, `ETag` or `304`, `Vary`, and the
//!    security headers of pages;
//! 6. encoding — `edge::Response::encode`.
//!
//! The home page and the search form are in `pages.rs`, challenge answers in `challenge.rs`, the
//! `public_url` setting in `origin.rs`.

mod caching;
mod challenge;
mod conduct;
mod connection;
mod lookup;
mod origin;
mod pages;
mod suivi;

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;

pub use caching::{HOME, LOOKUP, NO_STORE, no_store, uncached_page};
pub use connection::connection;
pub use lookup::{
    MAX_NUMBER_SEGMENT, Page, PageLang, challenged, check, parse_segment, presented_pass,
    rate_limited,
};
pub use origin::PublicUrl;
pub use pages::MAX_FORM_BODY;
pub(crate) use pages::form_field;

use crate::app::App;
use crate::content::{OPENAPI, TEXT};
use crate::edge::{self, Request, Response, Step};
use crate::guard::Reason;
use crate::metrics::{Listener, Route};

/// The OpenAPI document's entity tag, computed once.
static OPENAPI_ETAG: LazyLock<Bytes> =
    LazyLock::new(|| crate::content::strong_etag(OPENAPI.as_bytes()));

/// The public routes for one connection.
pub struct Public<'a> {
    pub app: &'a App,
    pub peer: SocketAddr,
    /// How the connection has behaved so far (`conduct.rs`).
    conduct: conduct::Conduct,
}

/// What waits for storage.
pub enum Pending {
    Parcel {
        route: Route,
        started: Instant,
        lookup: lookup::Admitted,
    },
    Suivi {
        started: Instant,
        batch: suivi::Batch,
    },
    Readyz {
        started: Instant,
    },
    /// The subscription API (`crate::push::api`).
    Webhooks {
        started: Instant,
        call: crate::push::api::Admitted,
    },
    /// The e-mail alerts pages (`crate::push::alerts`).
    Alerts {
        started: Instant,
        step: crate::push::alerts::Admitted,
    },
}

impl Public<'_> {
    fn record(&self, route: Route, response: &Response, started: Instant) {
        let took = started.elapsed();
        let status = response.status().as_u16();
        self.app
            .metrics
            .request(Listener::Public, route, status, took);
        self.app.guard.observe(took);
    }

    /// Routes a request; everything but storage is decided here.
    fn route(&self, req: &Request<'_>, started: Instant) -> (Route, Step<Pending>) {
        let get = matches!(req.method, "GET" | "HEAD");
        let post = req.method == "POST";
        let done = |route, response| (route, Step::Done(response));
        if let Some(segment) = req.path.strip_prefix("/v1/parcels/") {
            if !get {
                return done(Route::Parcel, Response::method_not_allowed("GET, HEAD"));
            }
            return self.lookup(req, started, Route::Parcel, segment, Page::Json);
        }
        if let Some(segment) = req.path.strip_prefix(suivi::PREFIX) {
            if !get {
                return done(Route::Suivi, Response::method_not_allowed("GET, HEAD"));
            }
            return match suivi::admit(self.app, req, self.peer, segment) {
                Ok(batch) => (
                    Route::Suivi,
                    Step::Pending(Pending::Suivi { started, batch }),
                ),
                Err(response) => done(Route::Suivi, response),
            };
        }
        if let Some(rest) = req.path.strip_prefix(crate::push::api::PREFIX) {
            return match crate::push::api::admit(self.app, req, self.peer, rest) {
                Ok(call) => (
                    Route::Webhooks,
                    Step::Pending(Pending::Webhooks { started, call }),
                ),
                Err(response) => done(Route::Webhooks, response),
            };
        }
        let challenges = self.app.guard.takes_challenges();
        match req.path {
            "/v1/challenge" if challenges && post => (
                Route::Challenge,
                Step::Done(challenge::redeem(self.app, req, self.peer)),
            ),
            "/v1/challenge" if challenges => {
                done(Route::Challenge, Response::method_not_allowed("POST"))
            }
            "/openapi.json" => done(
                Route::Openapi,
                caching::cacheable(
                    Response::new(StatusCode::OK, crate::content::JSON, OPENAPI),
                    caching::DOCUMENT,
                    OPENAPI_ETAG.clone(),
                    false,
                    &caching::Validators::of(req),
                ),
            ),
            "/healthz" => done(
                Route::Healthz,
                caching::no_store(Response::new(StatusCode::OK, TEXT, "ok\n")),
            ),
            "/readyz" => (Route::Readyz, Step::Pending(Pending::Readyz { started })),
            _ => self.page(req, started),
        }
    }

    /// The pages, under an optional language prefix: `[/{lang}]/`, `[/{lang}]/track/{n}` and
    /// the search form's `POST [/{lang}]/track`.
    fn page(&self, req: &Request<'_>, started: Instant) -> (Route, Step<Pending>) {
        let get = matches!(req.method, "GET" | "HEAD");
        let done = |route, response| (route, Step::Done(response));
        let (prefix, rest) = rempart_views::split_lang_path(req.path);
        let pl = PageLang::of(prefix, req);
        if let Some(segment) = rest.strip_prefix("/track/") {
            if !get {
                return done(Route::Track, Response::method_not_allowed("GET, HEAD"));
            }
            return self.lookup(req, started, Route::Track, segment, Page::Html(pl));
        }
        if let Some(rest) = rest.strip_prefix("/alerts/") {
            use crate::push::alerts::{Decided, admit};
            return match admit(self.app, req, self.peer, pl, rest) {
                Decided::Now(response) => done(Route::Alerts, response),
                Decided::Later(step) => (
                    Route::Alerts,
                    Step::Pending(Pending::Alerts { started, step }),
                ),
            };
        }
        match rest {
            "/" if get => done(
                Route::Index,
                pages::home(
                    pl,
                    self.app.suggestions.get().map_or(&[], Vec::as_slice),
                    &caching::Validators::of(req),
                ),
            ),
            "/" => done(Route::Index, Response::method_not_allowed("GET, HEAD")),
            "/track" if req.method == "POST" => {
                done(Route::TrackForm, pages::track_form(req.body, pl))
            }
            "/track" => done(Route::TrackForm, Response::method_not_allowed("POST")),
            _ => done(
                Route::Other,
                Response::error(StatusCode::NOT_FOUND, "not_found", "no such route"),
            ),
        }
    }

    /// A single lookup, admitted now and finished once storage answers.
    fn lookup(
        &self,
        req: &Request<'_>,
        started: Instant,
        route: Route,
        segment: &str,
        page: Page,
    ) -> (Route, Step<Pending>) {
        match lookup::admit(self.app, req, self.peer, segment, page) {
            Ok(lookup) => (
                route,
                Step::Pending(Pending::Parcel {
                    route,
                    started,
                    lookup,
                }),
            ),
            Err(response) => (route, Step::Done(response)),
        }
    }
}

impl edge::Service for Public<'_> {
    type Pending = Pending;

    fn prepare(&self, req: &Request<'_>, arrived: Instant) -> Step<Pending> {
        self.conduct.on_request(arrived);
        let started = arrived;
        let (route, step) = self.route(req, started);
        if let Step::Done(response) = &step {
            self.record(route, response, started);
        }
        step
    }

    async fn finish(&self, pending: Pending) -> Response {
        let (route, started, response) = match pending {
            Pending::Parcel {
                route,
                started,
                lookup,
            } => (
                route,
                started,
                lookup::finish(self.app, self.peer, lookup).await,
            ),
            Pending::Suivi { started, batch } => (
                Route::Suivi,
                started,
                suivi::finish(self.app, self.peer, batch).await,
            ),
            Pending::Readyz { started } => (Route::Readyz, started, readyz(self.app).await),
            Pending::Webhooks { started, call } => (
                Route::Webhooks,
                started,
                crate::push::api::finish(self.app, call).await,
            ),
            Pending::Alerts { started, step } => (
                Route::Alerts,
                started,
                crate::push::alerts::finish(self.app, step).await,
            ),
        };
        self.record(route, &response, started);
        response
    }

    fn answered(&self, status: StatusCode) -> edge::Next {
        self.conduct.after(status, &self.app.guard)
    }

    fn refused(&self, status: StatusCode) {
        self.app.metrics.request(
            Listener::Public,
            Route::Other,
            status.as_u16(),
            Duration::ZERO,
        );
        self.app
            .guard
            .refuse(Reason::Malformed, Some(self.peer.ip()));
    }
}

/// `GET /readyz`: whether lookups can be served.
async fn readyz(app: &App) -> Response {
    if !app.guard.filter_ready() {
        // Until the existence filter is in force every valid-looking number costs a storage
        // read: keep floods on the nodes that can refuse them (docs/shield.md, "Restarts").
        return Response::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the existence filter is being built",
        )
        .retry_after(1);
    }
    if !app.coherence.feed.caught_up() {
        // A shared store: until the feed has read what other nodes stored while this one was
        // starting (or down, after a restore), the filter could call their new parcels unknown.
        return Response::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "catching up with the other nodes' changes",
        )
        .retry_after(1);
    }
    if app.is_ready().await {
        caching::no_store(Response::new(StatusCode::OK, TEXT, "ready\n"))
    } else {
        Response::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "storage is not available",
        )
        .retry_after(1)
    }
}
