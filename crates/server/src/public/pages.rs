//! The pages that are not a lookup: the home page with its search form and suggestions, and
//! the form's `POST [/{lang}]/track`. The pages themselves are written by `rempart-views`; this
//! adds status, caching and safety headers.

use http::StatusCode;
use rempart_domain::TrackingNumber;
use rempart_views::html;

use super::caching::{self, Validators};
use super::lookup::{PageLang, percent_decode};
use crate::content::TEXT;
use crate::edge::{HeaderText, Response};

/// Largest body of the search form (`POST /track`).
pub const MAX_FORM_BODY: usize = 1024;

/// `GET [/{lang}]/`: the search form, and numbers to try (the demo's, when it runs).
pub fn home(pl: PageLang, suggestions: &[TrackingNumber], validators: &Validators) -> Response {
    caching::cached_page(
        html::home(pl.lang, suggestions),
        caching::HOME,
        pl.negotiated,
        validators,
    )
}

/// `POST [/{lang}]/track` with `n=<number>` (the search form): a number typed with spaces,
/// dashes or lower case → 303 to `[/{lang}]/track/{N}` (the language the form was posted in);
/// anything else → the "not a tracking number" page with what was typed.
pub fn track_form(body: &[u8], pl: PageLang) -> Response {
    if body.len() > MAX_FORM_BODY {
        return Response::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the search form is at most 1 KiB",
        );
    }
    let value = form_field(body, b"n").unwrap_or_default();
    match TrackingNumber::parse_typed_bytes(&value) {
        Ok(tn) => {
            let prefix = if pl.negotiated {
                ""
            } else {
                pl.lang.path_prefix()
            };
            caching::no_store(Response::new(StatusCode::SEE_OTHER, TEXT, "")).header(
                "location",
                HeaderText::Owned(format!("{prefix}/track/{tn}").into_boxed_str()),
            )
        }
        Err(e) => {
            let shown = String::from_utf8_lossy(&value);
            caching::uncached_page(StatusCode::BAD_REQUEST, html::invalid(pl.lang, &shown, &e))
        }
    }
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
pub(crate) fn form_field(body: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
        if key != name {
            return None;
        }
        let plus_as_space: Vec<u8> = value[1..]
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_decode(&plus_as_space)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rempart_views::Lang;

    const EN: PageLang = PageLang {
        lang: Lang::En,
        negotiated: false,
    };
    const ANY: PageLang = PageLang {
        lang: Lang::Fr,
        negotiated: true,
    };

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"x=1&n=+rr123456785fr+", b"n").unwrap(),
            b" rr123456785fr "
        );
        assert_eq!(form_field(b"n=6A%312", b"n").unwrap(), b"6A12");
        assert!(form_field(b"m=1", b"n").is_none());
        assert!(form_field(b"n=%", b"n").is_none());
    }

    #[test]
    fn the_form_redirects_to_the_number_in_its_language_or_says_why_not() {
        let ok = track_form(b"n=+rr123456785fr+", ANY);
        assert_eq!(ok.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            ok.header_value("location").as_deref(),
            Some("/track/RR123456785FR")
        );
        assert_eq!(
            ok.header_value("cache-control").as_deref(),
            Some("no-store")
        );
        // Typed with groups and dashes, posted from the English page.
        let ok = track_form(b"n=rr-123+456+785-fr", EN);
        assert_eq!(
            ok.header_value("location").as_deref(),
            Some("/en/track/RR123456785FR")
        );
        let refused = track_form(b"n=nope%3Cb%3E", EN);
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let page = String::from_utf8_lossy(refused.body()).into_owned();
        assert!(page.contains("<html lang=\"en\"") && page.contains("nope&lt;b&gt;"));
        assert!(refused.header_value("content-security-policy").is_some());
        let huge = vec![b'a'; MAX_FORM_BODY + 1];
        assert_eq!(
            track_form(&huge, ANY).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
