//! The plain HTML pages of the public listener: a search form and a parcel page, readable
//! without JavaScript, small, with every piece of data escaped.

use std::fmt::Write as _;

use rempart_domain::ParcelView;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.4rem;border-bottom:1px solid #ddd}\
.status{font-size:1.2rem;font-weight:600}input{font-size:1rem;padding:.4rem}button{font-size:1rem;padding:.4rem .8rem}";

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        escape(title)
    )
}

fn search_form(value: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/track\"><label for=\"n\">Tracking number</label><br>\
<input id=\"n\" name=\"n\" size=\"20\" maxlength=\"40\" autocomplete=\"off\" value=\"{}\" required> \
<button type=\"submit\">Track</button></form>",
        escape(value)
    )
}

/// `GET /`: the search form.
pub fn index() -> String {
    page(
        "Track a parcel",
        &format!(
            "<h1>Track a parcel</h1>{}<p>For example RR123456785FR or 6A12345678905.</p>",
            search_form("")
        ),
    )
}

/// `GET /track/{n}` for a known parcel.
pub fn parcel(view: &ParcelView) -> String {
    let tn = view.tracking_number.as_str();
    let mut body = format!(
        "<h1>Parcel {}</h1><p class=\"status\">{}{}</p>",
        escape(tn),
        escape(view.status.label()),
        if view.is_final { " (final)" } else { "" }
    );
    if let Some(product) = &view.product {
        let _ = write!(body, "<p>Service: {}</p>", escape(product));
    }
    body.push_str(
        "<table><thead><tr><th>When (UTC)</th><th>What</th><th>Where</th></tr></thead><tbody>",
    );
    for e in &view.events {
        let when = e.occurred_at.to_rfc3339();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&when.replace('T', " ").replace('Z', "")),
            escape(e.label),
            escape(e.location.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table>");
    body.push_str(&search_form(""));
    page(&format!("Parcel {tn}"), &body)
}

/// A page for a refused or unknown number; `input` is what the client sent, shown escaped.
pub fn message(title: &str, text: &str, input: &str) -> String {
    page(
        title,
        &format!(
            "<h1>{}</h1><p>{}</p>{}",
            escape(title),
            escape(text),
            search_form(input)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_shown_is_escaped() {
        let page = message("Not found", "<b>x</b>", "\"><script>alert(1)</script>");
        assert!(!page.contains("<script>"));
        assert!(page.contains("&quot;&gt;&lt;script&gt;"));
        assert!(!page.contains("<b>x</b>"));
    }
}
