//! Serving proven clients first. A public connection starts on the *open* runtime, whose
//! threads the kernel schedules last, unless its source is already known; it moves to the
//! *priority* runtime once its client proves itself (a valid pass or API key, a solved
//! challenge, or — outside attack mode — requests at a person's pace with nothing refused). A
//! connection that keeps earning refusals is closed and its source remembered as bad, so its
//! next connections are closed unread while the node is under pressure. See docs/shield.md,
//! "Serving proven clients first", for why and what it costs.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::edge::Next;
use crate::guard::{Guard, Trust};

/// Refusals in a row after which a connection is closed and its source marked bad.
pub const CUT_AFTER_REFUSALS: u32 = 8;
/// Shortest gap between two requests that looks like a person browsing.
pub const PERSON_GAP: Duration = Duration::from_millis(250);
/// Successful requests at a person's pace before a connection counts as proven.
pub const PERSON_REQUESTS: u32 = 2;

/// Where a connection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Open,
    Priority,
}

/// How one connection has behaved so far.
pub struct Conduct {
    source: IpAddr,
    runtime: Runtime,
    started: Instant,
    streak: AtomicU32,
    paced: AtomicU32,
    /// Microseconds after `started` of the last request, plus one (0: none yet).
    last_request: AtomicU64,
    /// The last request came at least [`PERSON_GAP`] after the one before.
    last_was_paced: AtomicBool,
}

impl Conduct {
    pub fn new(source: IpAddr, runtime: Runtime) -> Conduct {
        Conduct {
            source,
            runtime,
            started: Instant::now(),
            streak: AtomicU32::new(0),
            paced: AtomicU32::new(0),
            last_request: AtomicU64::new(0),
            last_was_paced: AtomicBool::new(false),
        }
    }

    /// A request arrived at `arrived`.
    pub fn on_request(&self, arrived: Instant) {
        let at = arrived.saturating_duration_since(self.started).as_micros() as u64 + 1;
        let before = self.last_request.swap(at, Relaxed);
        let paced = before == 0 || at.saturating_sub(before) >= PERSON_GAP.as_micros() as u64;
        self.last_was_paced.store(paced, Relaxed);
    }

    /// After an answer: close a connection that keeps earning refusals; hand over one from the
    /// open runtime whose client proved itself.
    pub fn after(&self, status: StatusCode, guard: &Guard) -> Next {
        if is_refusal(status) {
            self.paced.store(0, Relaxed);
            if self.streak.fetch_add(1, Relaxed) + 1 >= CUT_AFTER_REFUSALS {
                guard.mark_bad(self.source);
                return Next::Close;
            }
            return Next::Continue;
        }
        self.streak.store(0, Relaxed);
        if self.runtime == Runtime::Priority {
            return Next::Continue;
        }
        if !status.is_success() && !status.is_redirection() {
            return Next::Continue;
        }
        let paced = if self.last_was_paced.load(Relaxed) {
            self.paced.fetch_add(1, Relaxed) + 1
        } else {
            self.paced.store(0, Relaxed);
            0
        };
        if paced >= PERSON_REQUESTS && !guard.attack_mode() {
            guard.mark_known(self.source);
        }
        if guard.trust_of(self.source) == Trust::Known {
            Next::Handoff
        } else {
            Next::Continue
        }
    }
}

/// Answers that refuse the client something (not a server failure, not a parcel).
fn is_refusal(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::TOO_MANY_REQUESTS
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ShieldSettings;

    fn source() -> IpAddr {
        "127.7.7.7".parse().unwrap()
    }

    #[test]
    fn a_connection_that_keeps_earning_refusals_is_cut_and_its_source_marked_bad() {
        let guard = Guard::new(&ShieldSettings::defaults());
        let conduct = Conduct::new(source(), Runtime::Open);
        for _ in 1..CUT_AFTER_REFUSALS {
            assert_eq!(conduct.after(StatusCode::NOT_FOUND, &guard), Next::Continue);
        }
        assert_eq!(
            conduct.after(StatusCode::TOO_MANY_REQUESTS, &guard),
            Next::Close
        );
        assert_eq!(guard.trust_of(source()), Trust::Bad);
    }

    #[test]
    fn a_success_resets_the_streak() {
        let guard = Guard::new(&ShieldSettings::defaults());
        let conduct = Conduct::new(source(), Runtime::Priority);
        for _ in 0..10 {
            for _ in 1..CUT_AFTER_REFUSALS {
                assert_eq!(conduct.after(StatusCode::NOT_FOUND, &guard), Next::Continue);
            }
            assert_eq!(conduct.after(StatusCode::OK, &guard), Next::Continue);
        }
    }

    #[test]
    fn requests_at_a_persons_pace_prove_a_connection_and_back_to_back_ones_do_not() {
        let guard = Guard::new(&ShieldSettings::defaults());
        let start = Instant::now();
        let greedy = Conduct::new("127.7.7.8".parse().unwrap(), Runtime::Open);
        for i in 0..20 {
            greedy.on_request(start + Duration::from_millis(i));
            assert_eq!(greedy.after(StatusCode::OK, &guard), Next::Continue);
        }
        let person = Conduct::new(source(), Runtime::Open);
        person.on_request(start);
        assert_eq!(person.after(StatusCode::OK, &guard), Next::Continue);
        person.on_request(start + Duration::from_secs(1));
        assert_eq!(person.after(StatusCode::OK, &guard), Next::Handoff);
        assert_eq!(guard.trust_of(source()), Trust::Known);
    }
}
