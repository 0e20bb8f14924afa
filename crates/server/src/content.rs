//! What both listeners' answers share: content types, the JSON error body
//! `{"error": <stable code>, "message": <text for humans>}` of every refusal, and strong entity
//! tags.

use bytes::Bytes;
use sha2::{Digest, Sha256};

pub const JSON: &str = "application/json";
pub const HTML: &str = "text/html; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

/// `{"error":code,"message":message}`: the body of every JSON error.
pub fn error_body(code: &str, message: &str) -> Bytes {
    #[derive(serde::Serialize)]
    struct Error<'a> {
        error: &'a str,
        message: &'a str,
    }
    let mut out = Vec::with_capacity(32 + code.len() + message.len());
    let _ = serde_json::to_writer(
        &mut out,
        &Error {
            error: code,
            message,
        },
    );
    out.into()
}

/// Bytes of SHA-256 an entity tag keeps (96 bits: 24 hexadecimal characters).
const ETAG_HASH_BYTES: usize = 12;

/// A strong entity tag for a body, quoted as it goes in `ETag`: `"` + 24 hexadecimal characters
/// of its SHA-256 + `"`. The same bytes always give the same tag, different bytes a different
/// one (RFC 9110 §8.8.1: strong tags change with any change of the representation).
pub fn strong_etag(body: &[u8]) -> Bytes {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(body);
    let mut tag = Vec::with_capacity(2 + 2 * ETAG_HASH_BYTES);
    tag.push(b'"');
    for byte in &digest[..ETAG_HASH_BYTES] {
        tag.push(HEX[usize::from(byte >> 4)]);
        tag.push(HEX[usize::from(byte & 0xf)]);
    }
    tag.push(b'"');
    tag.into()
}

/// The OpenAPI document of both listeners.
pub const OPENAPI: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use crate::metrics::{Listener, Route};

    #[test]
    fn entity_tags_are_quoted_and_follow_the_bytes() {
        let a = super::strong_etag(b"{\"a\":1}");
        assert_eq!(a.len(), 26);
        assert!(a.starts_with(b"\"") && a.ends_with(b"\""));
        assert!(a[1..25].iter().all(u8::is_ascii_hexdigit));
        assert_eq!(a, super::strong_etag(b"{\"a\":1}"));
        assert_ne!(a, super::strong_etag(b"{\"a\":2}"));
    }

    #[test]
    fn error_bodies_are_json_with_code_and_message() {
        let body = super::error_body("not_found", "no \"such\" route");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "not_found");
        assert_eq!(v["message"], "no \"such\" route");
    }

    /// Every route the server serves is in the document with its method, and the document
    /// names no path the server does not serve. (The integration tests check the real listeners
    /// answer each of these.)
    #[test]
    fn the_openapi_document_matches_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (_, method, path, listener) in Route::SERVED {
            let item = &paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is not documented"));
            assert!(
                item.get(method.to_ascii_lowercase()).is_some(),
                "{method} {path} is not documented"
            );
            let expected = match listener {
                Some(Listener::Public) => "public",
                Some(Listener::Ingest) => "ingest",
                None => "both",
            };
            assert_eq!(item["x-rempart-listener"], expected, "{path}");
        }
        for (path, item) in paths {
            for method in item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| !k.starts_with("x-"))
            {
                assert!(
                    Route::SERVED
                        .iter()
                        .any(|(_, m, p, _)| p == path && m.eq_ignore_ascii_case(method)),
                    "{method} {path} is documented but not served"
                );
            }
        }
    }

    /// `docs/api.md`, the project's API reference.
    fn api_reference() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The text under the heading of `doc` that names `route` (e.g. "`GET /healthz`"), up to
    /// the next heading.
    fn section<'a>(doc: &'a str, route: &str) -> Option<&'a str> {
        let start = doc
            .match_indices("\n#")
            .map(|(i, _)| i + 1)
            .find(|&i| doc[i..].lines().next().is_some_and(|h| h.contains(route)))?;
        let body = &doc[start..];
        let end = body[1..].find("\n#").map_or(body.len(), |i| i + 1);
        Some(&body[..end])
    }

    /// docs/api.md has a heading for every route of the OpenAPI document, and names every
    /// status the document gives for it under that heading.
    #[test]
    fn the_api_reference_has_every_route_and_status_of_the_openapi_document() {
        let reference = api_reference();
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let operations = item.as_object().unwrap().iter();
            for (method, operation) in operations.filter(|(k, _)| !k.starts_with("x-")) {
                let route = format!("`{} {path}`", method.to_ascii_uppercase());
                let text = section(&reference, &route)
                    .unwrap_or_else(|| panic!("docs/api.md has no heading for {route}"));
                for status in operation["responses"].as_object().unwrap().keys() {
                    assert!(
                        text.contains(&format!("`{status}`")),
                        "docs/api.md does not give status {status} of {route}"
                    );
                }
            }
        }
    }

    /// The `error` codes this crate's code can send: the string literal after
    /// `StatusCode::NAME,` (the arguments of every error constructor and refusal) or after
    /// `"error":` (bodies written as JSON), outside test modules.
    fn emitted_error_codes() -> BTreeSet<String> {
        fn quoted_code(rest: &str) -> Option<&str> {
            let rest = rest.trim_start().strip_prefix('"')?;
            let code = &rest[..rest.find('"')?];
            let valid =
                !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            valid.then_some(code)
        }
        let mut codes = BTreeSet::new();
        let mut dirs = vec![PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") || path.ends_with("tests.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for (i, _) in code.match_indices("StatusCode::") {
                    let rest = code[i + "StatusCode::".len()..]
                        .trim_start_matches(|c: char| c.is_ascii_uppercase() || c == '_');
                    if let Some(found) = rest.trim_start().strip_prefix(',').and_then(quoted_code) {
                        codes.insert(found.to_owned());
                    }
                }
                for (i, _) in code.match_indices("\"error\"") {
                    let rest = code[i + "\"error\"".len()..].trim_start();
                    if let Some(found) = rest.strip_prefix(':').and_then(quoted_code) {
                        codes.insert(found.to_owned());
                    }
                }
            }
        }
        codes
    }

    /// docs/api.md's table of error codes lists every code the server can send, and no other.
    #[test]
    fn the_api_reference_lists_every_error_code_the_server_sends() {
        let emitted = emitted_error_codes();
        // The scan finds the codes wherever they are written: a few from each listener and
        // from the public side's framing refusals.
        for code in [
            "outcome_unknown",
            "body_timeout",
            "headers_too_large",
            "challenge_required",
        ] {
            assert!(
                emitted.contains(code),
                "{code} not found in the code: {emitted:?}"
            );
        }
        let reference = api_reference();
        let table = section(&reference, "Error codes").expect("docs/api.md has `## Error codes`");
        let documented: BTreeSet<String> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .map(str::to_owned)
            .collect();
        let undocumented: Vec<_> = emitted.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "not in docs/api.md's error codes: {undocumented:?}"
        );
        let unknown: Vec<_> = documented.difference(&emitted).collect();
        assert!(
            unknown.is_empty(),
            "in docs/api.md but never sent: {unknown:?}"
        );
    }
}
