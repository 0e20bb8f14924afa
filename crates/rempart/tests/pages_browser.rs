//! The customer pages in a real headless Chromium (Debian's `chromium`, installed by
//! scripts/ensure-chromium), served by the real binary with demo data: in French and English, at
//! 390 px (a phone) and 1280 px (a desktop). The test asserts what a customer reads in the DOM —
//! the status in La Poste's words, the latest scan's time in Paris local time (checked against the
//! system's time-zone database, not against Rempart's own code), the step of the progress line —
//! and takes a screenshot of each page. Screenshots go to the test's temporary directory, and
//! also to `$REMPART_SCREENSHOTS` when it names a directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, chromium};

/// The languages a customer meets most, with what their pages say for the two parcels checked.
struct Expected {
    lang: &'static str,
    delivered: &'static str,
    out_for_delivery: &'static str,
    announced: &'static str,
    not_found: &'static str,
    invalid: &'static str,
}

const LANGUAGES: [Expected; 2] = [
    Expected {
        lang: "fr",
        delivered: "Livré",
        out_for_delivery: "En cours de livraison",
        announced: "Annoncé",
        not_found: "Votre suivi n'est pas encore disponible.",
        invalid: "Le numéro que vous avez saisi n’est pas valide.",
    },
    Expected {
        lang: "en",
        delivered: "Delivered",
        out_for_delivery: "Out for delivery",
        announced: "Announced",
        not_found: "Your tracking is not available yet.",
        invalid: "The number you entered is not valid.",
    },
];

/// Phone and desktop widths, each with a window tall enough for the longest page.
const WINDOWS: [(u32, u32); 2] = [(390, 1700), (1280, 1300)];

/// The inner text of the first element whose opening tag contains `marker`, tags stripped.
fn text_after(dom: &str, marker: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let start = at + dom[at..].find('>')? + 1;
    let tag_start = dom[..=at].rfind('<')?;
    let name: String = dom[tag_start + 1..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    let end = start + dom[start..].find(&format!("</{name}>"))?;
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    Some(text)
}

/// Every `<li …>` opening tag of the progress line, in order.
fn step_tags(dom: &str) -> Vec<String> {
    let start = dom.find("<ol class=\"steps\"").expect("a progress line");
    let end = start + dom[start..].find("</ol>").expect("closed");
    dom[start..end]
        .split("<li ")
        .skip(1)
        .map(|li| li[..li.find('>').unwrap_or(li.len())].to_owned())
        .collect()
}

/// The Paris wall-clock reading of an RFC 3339 instant, from the system's tz database:
/// (`HH:MM`, UTC offset `+01:00`, day of the month).
fn paris_clock(rfc3339: &str) -> (String, String, String) {
    let out = Command::new("date")
        .env("TZ", "Europe/Paris")
        .args(["-d", rfc3339, "+%H:%M %:z %-d"])
        .output()
        .expect("run date");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut parts = text.split_whitespace().map(str::to_owned);
    (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    )
}

fn dump(profile: &Path, url: &str, extra: &[&str]) -> String {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.push("--dump-dom".into());
    args.push(url.to_owned());
    let out = chromium(profile, &args);
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where screenshots are written: the test's directory, and `$REMPART_SCREENSHOTS` if set.
fn screenshot_dirs(tmp: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![tmp.join("screenshots")];
    if let Some(dir) = std::env::var_os("REMPART_SCREENSHOTS") {
        dirs.push(PathBuf::from(dir));
    }
    for dir in &dirs {
        std::fs::create_dir_all(dir).unwrap();
    }
    dirs
}

/// Takes a screenshot of `url` in a window of `size`, checks it is a real picture of a page
/// (the window's size, many colours), and copies it to every directory of `dirs`.
fn screenshot(profile: &Path, url: &str, size: (u32, u32), name: &str, dirs: &[PathBuf]) {
    let shot = dirs[0].join(format!("{name}.png"));
    let out = chromium(
        profile,
        &[
            format!("--window-size={},{}", size.0, size.1),
            "--force-device-scale-factor=1".into(),
            format!("--screenshot={}", shot.display()),
            url.to_owned(),
        ],
    );
    assert!(
        out.status.success(),
        "chromium screenshot of {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(&png))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), size, "{name}");
    let channels = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> =
        buf[..info.buffer_size()].chunks(channels).collect();
    assert!(
        colours.len() > 20,
        "{name} has only {} colours",
        colours.len()
    );
    for dir in &dirs[1..] {
        std::fs::copy(&shot, dir.join(format!("{name}.png"))).unwrap();
    }
}

fn number_with(printed: &[(String, String)], status: &str) -> String {
    printed
        .iter()
        .find(|(_, s)| s == status)
        .unwrap_or_else(|| panic!("no {status} parcel printed: {printed:?}"))
        .0
        .clone()
}

/// What a customer reads on a parcel page: the status headline, the latest scan's time in Paris
/// local time, and the progress line standing at `step` (1 to 5) under `step_label`.
fn assert_parcel_page(dom: &str, lang: &str, status: &str, latest_utc: &str, step: usize) {
    assert!(dom.contains(&format!("<html lang=\"{lang}\"")), "{dom}");
    assert_eq!(
        text_after(dom, "id=\"status\"").as_deref(),
        Some(status),
        "status headline"
    );
    // The summary's time is the latest scan's, in Paris local time with Paris's offset.
    let summary = &dom[dom.find("class=\"summary").unwrap()..];
    let time_tag = &summary[summary.find("<time").unwrap()..];
    let (clock, offset, day) = paris_clock(latest_utc);
    let datetime = &time_tag[time_tag.find("datetime=\"").unwrap() + 10..];
    let datetime = &datetime[..datetime.find('"').unwrap()];
    assert!(
        datetime.ends_with(&offset) && datetime[11..16] == clock,
        "{datetime} is not {clock} {offset}"
    );
    let shown = text_after(time_tag, "<time").unwrap();
    assert!(
        shown.ends_with(&format!(", {clock}")) && shown.contains(&format!(" {day} ")),
        "the page shows {shown:?} for {clock} on the {day}"
    );
    // The progress line: steps before are done, the current one is marked, the rest to come.
    let tags = step_tags(dom);
    assert_eq!(tags.len(), 5);
    for (i, tag) in tags.iter().enumerate() {
        let expected = match (i + 1).cmp(&step) {
            std::cmp::Ordering::Less => "class=\"done",
            std::cmp::Ordering::Equal => "class=\"current",
            std::cmp::Ordering::Greater => "class=\"todo",
        };
        assert!(tag.starts_with(expected), "step {}: {tag}", i + 1);
    }
    assert!(tags[step - 1].contains("aria-current=\"step\""));
}

#[test]
fn customers_read_their_parcel_in_french_and_english_on_a_phone_and_a_desktop() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--demo", "--demo-parcels", "200"], &[]);
    let base = format!("http://{}", server.public);
    let printed = common::demo_numbers(&server);
    let delivered = number_with(&printed, "delivered");
    let on_its_way = number_with(&printed, "out_for_delivery");
    let returned = number_with(&printed, "returned");
    let latest = |n: &str| {
        let view = server.get(&format!("/v1/parcels/{n}")).json();
        view["events"][0]["occurred_at"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let profile = dir.path().join("chromium-profile");

    for expected in &LANGUAGES {
        let lang = expected.lang;
        let dom = dump(&profile, &format!("{base}/{lang}/track/{delivered}"), &[]);
        assert_parcel_page(&dom, lang, expected.delivered, &latest(&delivered), 5);
        let dom = dump(&profile, &format!("{base}/{lang}/track/{on_its_way}"), &[]);
        assert_parcel_page(
            &dom,
            lang,
            expected.out_for_delivery,
            &latest(&on_its_way),
            4,
        );
        // The first step of the line is named as La Poste names it.
        assert!(step_tags(&dom).len() == 5 && dom.contains(expected.announced));
        // The home page offers the demo's numbers, as links in the page's language.
        let home = dump(&profile, &format!("{base}/{lang}/"), &[]);
        assert!(home.contains(&format!("href=\"/{lang}/track/{delivered}\"")));
        assert!(home.contains("<label for=\"n\""), "the form has a label");
        let unknown = rempart_domain::TrackingNumber::domestic(6, 'A', 1_000_009_999).unwrap();
        let missing = dump(&profile, &format!("{base}/{lang}/track/{unknown}"), &[]);
        assert!(missing.contains(expected.not_found), "{missing}");
        let invalid = dump(&profile, &format!("{base}/{lang}/track/6A%201000"), &[]);
        assert!(invalid.contains(expected.invalid), "{invalid}");
    }
    // Without a language in the path, the browser's language decides; French when it is neither.
    for (accept, lang) in [("en-GB,en", "en"), ("fr-FR,fr", "fr"), ("ja", "fr")] {
        let dom = dump(
            &profile,
            &format!("{base}/track/{delivered}"),
            &[&format!("--accept-lang={accept}")],
        );
        assert!(dom.contains(&format!("<html lang=\"{lang}\"")), "{accept}");
    }

    let dirs = screenshot_dirs(dir.path());
    let unknown = rempart_domain::TrackingNumber::domestic(6, 'A', 1_000_009_999).unwrap();
    let pages = [
        ("home", String::new()),
        ("delivered", format!("track/{delivered}")),
        ("out-for-delivery", format!("track/{on_its_way}")),
        ("returned", format!("track/{returned}")),
        ("not-found", format!("track/{unknown}")),
        ("not-a-number", "track/6A%201000%20X".to_owned()),
    ];
    for expected in &LANGUAGES {
        for (width, height) in WINDOWS {
            for (name, path) in &pages {
                let url = format!("{base}/{}/{path}", expected.lang);
                let name = format!("{}-{width}-{name}", expected.lang);
                screenshot(&profile, &url, (width, height), &name, &dirs);
            }
        }
    }
}
