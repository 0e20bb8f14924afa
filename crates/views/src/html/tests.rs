//! What a customer sees, checked on the rendered text: language, escaping, the policy's hashes,
//! the progress line, times, links. Set `REMPART_VIEWS_RENDER_DIR` to also write every page to
//! that directory (with the policy as a `<meta>`), for a look in a real browser.

use rempart_domain::{Timestamp, TrackingNumber, TrackingNumberError};
use sha2::{Digest, Sha256};

use super::*;
use crate::testing::{NOW, tn, view};

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The text between `open` and the next `close` in `page`.
fn between<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    let start = page.find(open).expect("opening tag") + open.len();
    let len = page[start..].find(close).expect("closing tag");
    &page[start..start + len]
}

fn csp_hash(text: &str) -> String {
    format!("'sha256-{}'", base64(&Sha256::digest(text.as_bytes())))
}

/// Every page this crate renders, in every language, with data worth escaping.
fn every_page() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let hostile = hostile_view();
    let s10 = TrackingNumber::parse("RR123456785FR").unwrap();
    for lang in Lang::ALL {
        let c = lang.code();
        out.push((format!("{c}-home"), home(lang, &[tn(), s10])));
        out.push((
            format!("{c}-transit"),
            parcel(lang, &view(&["DR1", "PC1", "ET1"]), NOW),
        ));
        out.push((
            format!("{c}-delivered"),
            parcel(lang, &view(&["PC1", "ET1", "MD2", "DI1"]), NOW),
        ));
        out.push((
            format!("{c}-returned"),
            parcel(lang, &view(&["PC1", "MD2", "ND1", "RE1", "DI2"]), NOW),
        ));
        out.push((
            format!("{c}-pickup"),
            parcel(lang, &view(&["PC1", "MD2", "ND1", "AG1"]), NOW),
        ));
        out.push((format!("{c}-hostile"), parcel(lang, &hostile, NOW)));
        out.push((format!("{c}-not-found"), not_found(lang, &tn())));
        out.push((
            format!("{c}-invalid"),
            invalid(
                lang,
                "<script>alert(1)</script>",
                &TrackingNumberError::Length(25),
            ),
        ));
        out.push((format!("{c}-busy"), busy(lang, &tn())));
        out.push((
            format!("{c}-challenge"),
            challenge(lang, "seed\"><script>x</script>", 4),
        ));
    }
    out
}

/// A view whose stored texts try to break out of the page or reorder it.
fn hostile_view() -> rempart_domain::ParcelView {
    let mut v = view(&["PC1", "ET1", "MD2"]);
    v.product = Some("<img src=x onerror=alert(1)>".into());
    v.events[0].location = Some("\"><script>alert(2)</script>".into());
    v.events[1].location = Some("Paris \u{202e}51 sirap\u{202c} \u{200b}Nord".into());
    v
}

#[test]
fn the_policy_allows_exactly_the_inline_style_and_script_by_hash() {
    let pages = every_page();
    let style_hash = csp_hash(between(&pages[0].1, "<style>", "</style>"));
    let (_, check) = pages
        .iter()
        .find(|(name, _)| name.ends_with("challenge"))
        .unwrap();
    let script_hash = csp_hash(between(check, "<script>", "</script>"));
    let expected = format!(
        "default-src 'none'; script-src {script_hash}; style-src {style_hash}; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    assert_eq!(
        CONTENT_SECURITY_POLICY, expected,
        "update CONTENT_SECURITY_POLICY to this value"
    );
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    for (name, page) in &pages {
        // One style element, identical everywhere; no style attributes (a hash cannot allow them).
        assert_eq!(page.matches("<style>").count(), 1, "{name}");
        assert_eq!(
            csp_hash(between(page, "<style>", "</style>")),
            style_hash,
            "{name}"
        );
        assert!(!page.contains(" style="), "{name}");
        let scripts = page.matches("<script").count();
        if name.ends_with("challenge") {
            assert_eq!(scripts, 1, "{name}");
            assert_eq!(between(page, "<script>", "</script>"), CHALLENGE_SCRIPT);
        } else {
            assert_eq!(scripts, 0, "{name}: no JavaScript outside the check page");
        }
    }
}

#[test]
fn every_piece_of_data_is_escaped() {
    for (name, page) in every_page() {
        for raw in ["<img", "<script>alert", "\"><script", "onerror=alert(1)>"] {
            assert!(!page.contains(raw), "{name} contains {raw:?}");
        }
        for invisible in ['\u{202e}', '\u{202c}', '\u{200b}'] {
            assert!(!page.contains(invisible), "{name} contains {invisible:?}");
        }
        // No event handler attribute anywhere (` onerror=`, ` onload=`…).
        for (i, _) in page.match_indices(" on") {
            let before = &page[..i];
            if before.rfind('<') < before.rfind('>') {
                continue; // text, not inside a tag
            }
            let rest = &page[i + 3..];
            let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            assert!(
                letters == 0 || rest.as_bytes().get(letters) != Some(&b'='),
                "{name}: {}",
                &rest[..letters]
            );
        }
    }
    let page = parcel(Lang::Fr, &hostile_view(), NOW);
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(page.contains("&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"));
    assert!(page.contains("Paris \u{fffd}51 sirap\u{fffd} \u{fffd}Nord"));
    let page = challenge(Lang::En, "s\"><b>", 12);
    assert!(page.contains("data-seed=\"s&quot;&gt;&lt;b&gt;\" data-bits=\"12\""));
}

#[test]
fn pages_declare_their_language_and_link_to_the_others_by_path() {
    for lang in Lang::ALL {
        let page = parcel(lang, &view(&["PC1"]), NOW);
        assert!(page.starts_with(&format!("<!doctype html>\n<html lang=\"{}\">", lang.code())));
        assert!(page.contains("<meta name=\"viewport\""));
        for other in Lang::ALL {
            let link = format!(
                "href=\"{}/track/6A12345678905\" hreflang=\"{}\"",
                other.path_prefix(),
                other.code()
            );
            assert!(page.contains(&link), "{lang:?} → {other:?}");
        }
        let current = format!("lang=\"{}\" aria-current=\"true\"", lang.code());
        assert_eq!(page.matches("aria-current=\"true\"").count(), 1);
        assert!(page.contains(&current));
        assert!(page.contains(&format!("action=\"{}/track\"", lang.path_prefix())));
        let home_page = home(lang, &[tn()]);
        assert!(home_page.contains(&format!("href=\"{}/\" hreflang", Lang::De.path_prefix())));
    }
}

#[test]
fn no_link_or_form_carries_a_query_string() {
    for (name, page) in every_page() {
        for attr in ["href=\"", "action=\""] {
            for (i, _) in page.match_indices(attr) {
                let value = between(&page[i..], attr, "\"");
                assert!(
                    !value.contains('?') && !value.contains('#'),
                    "{name}: {value}"
                );
                assert!(value.starts_with('/'), "{name}: {value} leaves the site");
            }
        }
    }
}

#[test]
fn forms_and_controls_are_labelled() {
    for (name, page) in every_page() {
        if page.contains("<input") {
            assert!(page.contains("<label for=\"n\">"), "{name}");
            assert!(page.contains("<input id=\"n\" name=\"n\""), "{name}");
            assert!(page.contains("aria-describedby=\"n-hint\"") && page.contains("id=\"n-hint\""));
        }
        assert!(page.contains("<main>") && page.contains("<h1>"), "{name}");
        assert!(page.contains("<title>"), "{name}");
    }
}

#[test]
fn a_parcel_page_says_where_it_stands_when_and_where() {
    let v = view(&["DR1", "PC1", "ET1", "MD2"]);
    let page = parcel(Lang::Fr, &v, NOW);
    // The status, what the last event says, its Paris time and place.
    assert!(page.contains("<h2 id=\"status\">En cours de livraison</h2>"));
    assert!(page.contains("<p>Votre colis est en cours de livraison.</p>"));
    // MD2 at 2025-12-20T16:00Z: 17:00 in Paris, a Saturday.
    assert!(page.contains(
        "<time datetime=\"2025-12-20T17:00:00+01:00\">samedi 20 décembre, 17:00</time> · Site 3"
    ));
    // Steps 1–3 done, 4 current, 5 to come.
    let steps = between(&page, "<ol class=\"steps\"", "</ol>");
    assert_eq!(steps.matches("class=\"done\"").count(), 3);
    assert!(steps.contains("<li class=\"current ok\" aria-current=\"step\"><span class=\"vh\">étape actuelle, </span>En cours de livraison</li>"));
    assert!(
        steps.contains("<li class=\"todo\"><span class=\"vh\">étape à venir, </span>Livré</li>")
    );
    // Newest first: MD2, ET1, PC1, DR1.
    let events = between(&page, "<ol class=\"events\">", "</ol>");
    let order: Vec<usize> = [
        "Votre colis est en cours de livraison.",
        "Votre colis est en transit",
        "Votre colis est pris en charge",
        "Votre colis va bientôt",
    ]
    .iter()
    .map(|l| events.find(l).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
    assert!(page.contains("<dd>Colissimo</dd>"));
    assert!(!page.contains("class=\"truncated\""));
}

#[test]
fn english_pages_say_the_same_in_english() {
    let page = parcel(Lang::En, &view(&["PC1", "ET1", "MD2", "DI1"]), NOW);
    assert!(page.contains("<h2 id=\"status\">Delivered</h2>"));
    assert!(page.contains("Your parcel has been delivered."));
    assert!(page.contains(">Saturday 20 December, 17:00</time>"));
    assert!(page.contains("<li class=\"current ok\" aria-current=\"step\"><span class=\"vh\">current step, </span>Delivered</li>"));
    assert!(page.contains("Times are Paris time."));
}

#[test]
fn problems_and_returns_are_shown_clearly() {
    let page = parcel(Lang::Fr, &view(&["PC1", "MD2", "ND1", "RE1", "DI2"]), NOW);
    assert!(page.contains("<section class=\"summary ko\""));
    assert!(page.contains("<h2 id=\"status\">Retourné à l’expéditeur</h2>"));
    assert!(page.contains("<p class=\"note\">Contactez l’expéditeur pour connaître la suite.</p>"));
    assert!(page.contains("<li class=\"current ko\" aria-current=\"step\"><span class=\"vh\">étape actuelle, </span>Retourné à l’expéditeur</li>"));
    assert!(
        !page.contains(">Livré<"),
        "a return is never called delivered"
    );
    let page = parcel(Lang::En, &view(&["PC1", "ET1", "PB1"]), NOW);
    assert!(page.contains("<li class=\"current ko\" aria-current=\"step\"><span class=\"vh\">current step, </span>Problem being dealt with</li>"));
    let page = parcel(Lang::En, &view(&["PC1", "MD2", "ND1", "AG1"]), NOW);
    assert!(page.contains("<section class=\"summary info\""));
    assert!(page.contains("<p class=\"note\">Bring an identity document to collect it.</p>"));
}

#[test]
fn a_cut_view_says_more_events_exist() {
    let mut v = view(&["PC1", "ET1", "MD2"]);
    v.events_truncated = true;
    v.events_total = 1000;
    let page = parcel(Lang::Fr, &v, NOW);
    assert!(page.contains("<p class=\"truncated\">Seuls les 3 événements les plus récents sont affichés, sur 1000 connus.</p>"));
    let page = parcel(Lang::En, &v, NOW);
    assert!(page.contains("Only the 3 most recent events are shown, out of 1000 known."));
}

#[test]
fn old_events_carry_their_year() {
    let v = view(&["PC1"]);
    let next_year = Timestamp::parse_rfc3339("2026-02-01T10:00:00Z").unwrap();
    let page = parcel(Lang::Fr, &v, next_year);
    assert!(page.contains(">samedi 20 décembre 2025, 08:00</time>"));
}

#[test]
fn refusal_pages_explain_and_offer_the_form_again() {
    let page = not_found(Lang::Fr, &tn());
    assert!(page.contains("<h1>Suivi pas encore disponible</h1>"));
    assert!(page.contains("Votre suivi n&#39;est pas encore disponible."));
    assert!(page.contains("value=\"6A12345678905\""));
    let cases = [
        (TrackingNumberError::Length(25), "celui-ci en compte 25."),
        (TrackingNumberError::Format, "deux lettres, neuf chiffres"),
        (
            TrackingNumberError::Country("ZZ".into()),
            "Le code pays « ZZ » n’existe pas.",
        ),
        (
            TrackingNumberError::CheckDigit,
            "la clé de contrôle ne correspond pas",
        ),
    ];
    for (err, says) in cases {
        let page = invalid(Lang::Fr, " RR123456784ZZ ", &err);
        assert!(page.contains(says), "{err:?}");
        assert!(page.contains("<strong class=\"mono\">RR123456784ZZ</strong>"));
        assert!(page.contains("value=\"RR123456784ZZ\""));
    }
    let long = "9".repeat(500);
    let page = invalid(Lang::En, &long, &TrackingNumberError::Length(500));
    assert!(page.contains(&"9".repeat(MAX_SHOWN_INPUT_CHARS)));
    assert!(!page.contains(&"9".repeat(MAX_SHOWN_INPUT_CHARS + 1)));
    let page = busy(Lang::De, &tn());
    assert!(page.contains("<h1>Bitte versuchen Sie es gleich noch einmal</h1>"));
}

#[test]
fn the_home_page_suggests_the_numbers_it_is_given() {
    let numbers: Vec<TrackingNumber> = (0..10)
        .map(|i| TrackingNumber::domestic(6, 'A', 1_000_000_000 + i).unwrap())
        .collect();
    let page = home(Lang::En, &numbers);
    assert_eq!(
        page.matches("class=\"mono\" href=\"/en/track/").count(),
        MAX_SUGGESTIONS
    );
    assert!(page.contains(&format!("href=\"/en/track/{0}\">{0}</a>", numbers[0])));
    assert!(!home(Lang::Fr, &[]).contains("class=\"examples\""));
}

#[test]
fn the_check_page_carries_its_parameters_as_data() {
    let page = challenge(Lang::Fr, "abc.123", 18);
    assert!(page.contains("<div id=\"pow\" data-seed=\"abc.123\" data-bits=\"18\" data-failed=\"La vérification a échoué. Rechargez la page pour réessayer.\">"));
    assert!(page.contains("<p id=\"msg\" role=\"status\">"));
    assert!(page.contains("<noscript>"));
    assert!(
        !page.contains("<nav"),
        "no language links on the check page"
    );
    for needle in [
        "getElementById(\"pow\")",
        "dataset.seed",
        "dataset.bits",
        "dataset.failed",
        "\"/v1/challenge\"",
    ] {
        assert!(CHALLENGE_SCRIPT.contains(needle), "{needle}");
    }
}

/// WCAG 2.1 relative luminance contrast of two `#rrggbb` colours.
fn contrast(a: &str, b: &str) -> f64 {
    let lum = |hex: &str| {
        let c = |i: usize| {
            let v = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
            if v <= 0.040_45 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * c(1) + 0.7152 * c(3) + 0.0722 * c(5)
    };
    let (x, y) = (lum(a), lum(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

#[test]
fn text_colours_meet_wcag_aa_contrast() {
    // (text, background) pairs the style sheet uses for text.
    let text_pairs = [
        ("#1d1d1b", "#ffffff"),
        ("#1d1d1b", "#ffcd00"),
        ("#595959", "#ffffff"),
        ("#0b4f9c", "#ffffff"),
        ("#ffffff", "#0b4f9c"),
        ("#ffffff", "#083b75"),
        ("#ffffff", "#1a7f37"),
        ("#ffffff", "#b3261e"),
        ("#1d1d1b", "#f3f8f4"),
        ("#1d1d1b", "#fcefee"),
        ("#1d1d1b", "#eef3fa"),
        ("#1d1d1b", "#fff7d6"),
        ("#595959", "#f3f8f4"),
        ("#595959", "#fcefee"),
        ("#595959", "#eef3fa"),
        ("#1d1d1b", "#ffffff"),
    ];
    for (fg, bg) in text_pairs {
        let ratio = contrast(fg, bg);
        assert!(ratio >= 4.5, "{fg} on {bg}: {ratio:.2}");
        for colour in [fg, bg] {
            assert!(
                colour == "#ffffff" || STYLE.contains(colour),
                "{colour} is not in the style sheet"
            );
        }
    }
    // Borders and the progress line (non-text, WCAG 1.4.11): at least 3:1 against white.
    for graphic in [
        "#767676", "#1a7f37", "#b3261e", "#0b4f9c", "#595959", "#8a6d00",
    ] {
        assert!(contrast(graphic, "#ffffff") >= 3.0, "{graphic}");
        assert!(STYLE.contains(graphic), "{graphic}");
    }
}

#[test]
fn escape_neutralises_markup_and_invisible_characters() {
    assert_eq!(escape("a<b>&\"'c"), "a&lt;b&gt;&amp;&quot;&#39;c");
    assert_eq!(
        escape("x\u{202e}y\u{0}z\u{2028}"),
        "x\u{fffd}y\u{fffd}z\u{fffd}"
    );
    assert_eq!(escape("Saint-Étienne – 東京"), "Saint-Étienne – 東京");
}

/// Writes every page to `$REMPART_VIEWS_RENDER_DIR` with the policy as a `<meta>` (a browser
/// ignores `frame-ancestors` there and enforces the rest), to look at them in Chromium.
#[test]
fn render_pages_for_a_browser() {
    let Ok(dir) = std::env::var("REMPART_VIEWS_RENDER_DIR") else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    let meta = format!(
        "<head><meta http-equiv=\"Content-Security-Policy\" content=\"{}\">",
        CONTENT_SECURITY_POLICY.replace("; frame-ancestors 'none'", "")
    );
    for (name, page) in every_page() {
        let page = page.replacen("<head>", &meta, 1);
        std::fs::write(format!("{dir}/{name}.html"), page).unwrap();
    }
}
