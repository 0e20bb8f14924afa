//! The report: a table on stdout, a JSON document, and a self-contained HTML page with charts
//! (inline SVG; opens from disk in any browser, no server, no CDN).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use hdrhistogram::Histogram;

use crate::node::NodeReport;
use crate::scenario::{Class, Kind};
use crate::stats::{self, BrowserStats, ClassStats, SlowLookups};

#[derive(Serialize)]
pub struct Report {
    pub scenario: String,
    pub duration_s: u64,
    /// Whole-run figures count requests started from this second on.
    pub measure_from_s: u64,
    pub target: String,
    pub classes: Vec<ClassReport>,
    pub generator: GeneratorReport,
    /// The node's own `/metrics` over the run (with `--metrics`).
    pub node: Option<NodeReport>,
}

/// Whether the generator, not the node, was the limit.
#[derive(Serialize, Default)]
pub struct GeneratorReport {
    pub flood_threads: usize,
    pub observer_threads: usize,
    /// User plus system CPU seconds of the whole generator over the run.
    pub cpu_s: Option<f64>,
    /// `cpu_s` over the run's wall time: 1.0 is one core busy all along.
    pub cpu_cores: Option<f64>,
    /// Requests per second sent by every request flood (slow connections excluded), each over
    /// its measured window.
    pub flood_requests_per_s: f64,
    /// How late a 10 ms sleep woke up on the floods' runtime and on the runtime of the
    /// legitimate users and depots.
    pub flood_lag_ms: Latency,
    pub observer_lag_ms: Latency,
}

#[derive(Serialize, Default)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50: stats::quantile_ms(h, 0.5),
            p90: stats::quantile_ms(h, 0.9),
            p99: stats::quantile_ms(h, 0.99),
            max: stats::quantile_ms(h, 1.0),
        }
    }
}

/// Browser-like users: the challenges they met and what they cost.
#[derive(Serialize)]
pub struct BrowserReport {
    pub users: u64,
    /// Users who solved at least one challenge.
    pub users_paid: u64,
    /// `403 challenge_required` answers received.
    pub challenges_met: u64,
    /// Lookups whose final answer was a challenge.
    pub unsolved: u64,
    pub passes_earned: u64,
    /// `POST /v1/challenge` answers by status.
    pub submissions: BTreeMap<String, u64>,
    pub submissions_unanswered: u64,
    /// Requests sent again because a reused connection closed before answering.
    pub retries: u64,
    /// Lookups that never met a challenge, and their latency.
    pub plain_lookups: u64,
    pub plain_latency_ms: Latency,
    /// Lookups that met one: whole latency, solving and submitting included.
    pub challenged_lookups: u64,
    pub challenge_latency_ms: Latency,
    /// The proof of work alone.
    pub solving_ms: Latency,
    /// Opening a connection (the TCP handshake).
    pub connect_ms: Latency,
    /// Lookups without a challenge over 100 ms, and where their time went.
    pub slow: SlowReport,
}

/// Lookups without a challenge over 100 ms: how many opened a connection, how many waited for
/// a SYN sent again (handshake ≥ 1 s), how many were sent again on a new connection, the share
/// of their time spent in handshakes, and when they happened (second of the run → count).
#[derive(Serialize)]
pub struct SlowReport {
    pub count: u64,
    pub opened: u64,
    pub handshake_over_1s: u64,
    pub retried: u64,
    pub handshake_share: f64,
    pub by_second: BTreeMap<String, u64>,
}

impl SlowReport {
    fn new(s: &SlowLookups) -> SlowReport {
        SlowReport {
            count: s.count,
            opened: s.opened,
            handshake_over_1s: s.handshake_over_1s,
            retried: s.retried,
            handshake_share: s.handshake_us as f64 / s.total_us.max(1) as f64,
            by_second: s
                .by_second
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }
}

impl BrowserReport {
    fn new(b: &BrowserStats) -> BrowserReport {
        BrowserReport {
            users: b.users,
            users_paid: b.users_paid,
            challenges_met: b.challenges_met,
            unsolved: b.unsolved,
            passes_earned: b.passes_earned,
            submissions: b
                .submissions
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            submissions_unanswered: b.submissions_unanswered,
            retries: b.retries,
            plain_lookups: b.plain.len(),
            plain_latency_ms: Latency::of(&b.plain),
            challenged_lookups: b.challenged.len(),
            challenge_latency_ms: Latency::of(&b.challenged),
            solving_ms: Latency::of(&b.solving),
            connect_ms: Latency::of(&b.connects),
            slow: SlowReport::new(&b.slow),
        }
    }
}

#[derive(Serialize)]
pub struct Point {
    pub t: usize,
    pub sent: u64,
    pub success: u64,
    pub success_ratio: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Serialize)]
pub struct ClassReport {
    pub name: String,
    pub kind: String,
    /// Seconds into the run the class started.
    pub start_s: u64,
    /// Users (legitimate users) or connections (floods) configured.
    pub concurrency: usize,
    /// Seconds its whole-run figures cover.
    pub measured_s: u64,
    pub sent: u64,
    /// `sent` over `measured_s`.
    pub sent_per_s: f64,
    pub success: u64,
    pub success_ratio: f64,
    pub statuses: std::collections::BTreeMap<String, u64>,
    pub timeouts: u64,
    /// Could not connect.
    pub connection_errors: u64,
    /// Written, then the connection closed or broke before the answer.
    pub closed_unanswered: u64,
    /// Open loop: no answer within `linger_ms`; the tool closed the connection.
    pub abandoned: u64,
    pub closed_by_server: u64,
    /// Slow connections still open when the run ended.
    pub held_to_end: u64,
    pub latency_ms: Latency,
    /// Browser-like users only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<BrowserReport>,
    pub timeline: Vec<Point>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// A kind's name as scenarios spell it.
pub fn kind_name(kind: Kind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl ClassReport {
    pub fn new(class: &Class, s: &ClassStats, duration_s: u64, measure_from_s: u64) -> ClassReport {
        let measured_s = duration_s
            .saturating_sub(class.start_s.max(measure_from_s))
            .max(1);
        ClassReport {
            name: class.name.clone(),
            kind: kind_name(class.kind),
            start_s: class.start_s,
            concurrency: if class.kind == Kind::Legit {
                class.users
            } else {
                class.connections
            },
            measured_s,
            sent: s.sent,
            sent_per_s: s.sent as f64 / measured_s as f64,
            success: s.success,
            success_ratio: ratio(s.success, s.sent),
            statuses: s
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            timeouts: s.timeouts,
            connection_errors: s.connection_errors,
            closed_unanswered: s.closed_unanswered,
            abandoned: s.abandoned,
            closed_by_server: s.closed_by_server,
            held_to_end: s.held_to_end,
            latency_ms: Latency::of(&s.latency),
            browser: s.browser.as_deref().map(BrowserReport::new),
            timeline: s
                .timeline
                .iter()
                .take(duration_s as usize + 1)
                .enumerate()
                .map(|(t, sec)| Point {
                    t,
                    sent: sec.sent,
                    success: sec.success,
                    success_ratio: ratio(sec.success, sec.sent),
                    p50_ms: sec.quantile_ms(0.5),
                    p99_ms: sec.quantile_ms(0.99),
                })
                .collect(),
        }
    }
}

/// Line colours of the HTML report's charts, one per class.
const COLORS: [&str; 8] = [
    "#2e7d32", "#c62828", "#1565c0", "#f9a825", "#6a1b9a", "#00838f", "#ef6c00", "#5d4037",
];

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} against {} for {} s{}",
            self.scenario,
            self.target,
            self.duration_s,
            if self.measure_from_s > 0 {
                format!(" (figures from second {})", self.measure_from_s)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "{:<18} {:<22} {:>10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}  statuses",
            "class",
            "kind",
            "sent",
            "sent/s",
            "success",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "timeout",
            "conn err",
            "closed"
        );
        for c in &self.classes {
            let statuses: Vec<String> =
                c.statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            let mut extra = String::new();
            if c.closed_by_server > 0 {
                extra.push_str(&format!(" closed-by-server:{}", c.closed_by_server));
            }
            if c.held_to_end > 0 {
                extra.push_str(&format!(" held-to-end:{}", c.held_to_end));
            }
            if c.abandoned > 0 {
                extra.push_str(&format!(" abandoned:{}", c.abandoned));
            }
            let _ = writeln!(
                out,
                "{:<18} {:<22} {:>10} {:>9.0} {:>8.2}% {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>7} {:>7}  {}{}",
                c.name,
                c.kind,
                c.sent,
                c.sent_per_s,
                c.success_ratio * 100.0,
                c.latency_ms.p50,
                c.latency_ms.p90,
                c.latency_ms.p99,
                c.latency_ms.max,
                c.timeouts,
                c.connection_errors,
                c.closed_unanswered,
                statuses.join(" "),
                extra
            );
        }
        for line in self.summary() {
            let _ = writeln!(out, "{line}");
        }
        out
    }

    /// Lines on browser users' challenges, the generator and the node.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for c in &self.classes {
            if let Some(b) = &c.browser {
                lines.push(format!(
                    "{}: {} lookups without a challenge p50 {:.2} ms p99 {:.2} ms; {} with one p50 {:.2} ms p99 {:.2} ms (solving p50 {:.2} ms); {} of {} users paid; {} challenges met, {} passes earned, {} retries",
                    c.name,
                    b.plain_lookups,
                    b.plain_latency_ms.p50,
                    b.plain_latency_ms.p99,
                    b.challenged_lookups,
                    b.challenge_latency_ms.p50,
                    b.challenge_latency_ms.p99,
                    b.solving_ms.p50,
                    b.users_paid,
                    b.users,
                    b.challenges_met,
                    b.passes_earned,
                    b.retries
                ));
                let s = &b.slow;
                lines.push(format!(
                    "{}: connect p50 {:.2} ms p99 {:.2} ms max {:.0} ms; {} lookups without a challenge over 100 ms: {} opened a connection, {} waited >= 1 s for a handshake, {} retried, {:.0}% of their time in handshakes",
                    c.name,
                    b.connect_ms.p50,
                    b.connect_ms.p99,
                    b.connect_ms.max,
                    s.count,
                    s.opened,
                    s.handshake_over_1s,
                    s.retried,
                    s.handshake_share * 100.0
                ));
            }
        }
        let g = &self.generator;
        lines.push(format!(
            "generator: {:.0} flood requests/s; CPU {} over the run ({} flood + {} observer threads); lag p99 {:.2} ms (floods) {:.2} ms (users, depots)",
            g.flood_requests_per_s,
            g.cpu_cores
                .map_or_else(|| "unknown".to_owned(), |c| format!("{:.2} cores", c)),
            g.flood_threads,
            g.observer_threads,
            g.flood_lag_ms.p99,
            g.observer_lag_ms.p99
        ));
        if let Some(n) = &self.node {
            let attack = match (n.attack_mode_exported, n.attack_mode_first_on_s) {
                (false, _) => "not exported".to_owned(),
                (true, None) => "never on".to_owned(),
                (true, Some(t)) => format!("on at {t:.1} s, {} polls on", n.attack_mode_on_polls),
            };
            let refused: Vec<String> = n.refused.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            lines.push(format!(
                "node: attack mode {attack}; RSS max {} MiB; public connections max {}; refused {}; {} polls ({} failed)",
                n.rss_max_bytes.map_or_else(|| "?".to_owned(), |b| format!("{:.0}", b as f64 / 1_048_576.0)),
                n.public_connections_max.map_or_else(|| "?".to_owned(), |c| c.to_string()),
                if refused.is_empty() { "-".to_owned() } else { refused.join(" ") },
                n.polls,
                n.polls_failed
            ));
        }
        lines
    }

    pub fn html(&self) -> String {
        let json = serde_json::to_string(self)
            .unwrap_or_default()
            .replace("</", "<\\/");
        let mut legend = String::new();
        for (i, c) in self.classes.iter().enumerate() {
            let _ = write!(
                legend,
                "<span style=\"color:{}\">&#9632; {}</span> ",
                COLORS[i % COLORS.len()],
                escape(&c.name)
            );
        }
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>rempart siege: {name}</title>\
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}}table{{border-collapse:collapse}}td,th{{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right}}td:first-child,th:first-child{{text-align:left}}h2{{font-size:1rem}}</style></head>\
<body><h1>rempart siege: {name}</h1><p>Target {target}, {duration} s.</p>\
<table><tr><th>class</th><th>kind</th><th>sent</th><th>success</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th><th>timeouts</th><th>conn errors</th><th>statuses</th></tr>{rows}</table>\
<ul>{summary}</ul><p>{legend}</p>{success}{p99}{sent}\
<script type=\"application/json\" id=\"report\">{json}</script></body></html>\n",
            rows = self.html_rows(),
            summary = self
                .summary()
                .iter()
                .map(|l| format!("<li>{}</li>", escape(l)))
                .collect::<String>(),
            name = escape(&self.scenario),
            target = escape(&self.target),
            duration = self.duration_s,
            success = self.chart(
                "Success ratio per second",
                &|p| p.success_ratio * 100.0,
                "%"
            ),
            p99 = self.chart("p99 latency per second (ms)", &|p| p.p99_ms, " ms"),
            sent = self.chart("Requests sent per second", &|p| p.sent as f64, "/s"),
        )
    }

    /// One table row per class.
    fn html_rows(&self) -> String {
        let mut rows = String::new();
        for c in &self.classes {
            let statuses: Vec<String> = c
                .statuses
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&c.name),
                escape(&c.kind),
                c.sent,
                c.success_ratio * 100.0,
                c.latency_ms.p50,
                c.latency_ms.p90,
                c.latency_ms.p99,
                c.latency_ms.max,
                c.timeouts,
                c.connection_errors,
                escape(&statuses.join(", "))
            );
        }
        rows
    }

    /// An SVG line chart of `value` per second, one line per class.
    fn chart(&self, title: &str, value: &dyn Fn(&Point) -> f64, unit: &str) -> String {
        let max = self
            .classes
            .iter()
            .flat_map(|c| c.timeline.iter().map(value))
            .fold(0.0f64, f64::max)
            .max(if unit == "%" { 100.0 } else { 1.0 });
        let width = 800.0;
        let height = 220.0;
        let n = self.duration_s.max(1) as f64;
        let mut svg = format!(
            "<h2>{}</h2><svg viewBox=\"0 0 {width} {h}\" width=\"100%\" role=\"img\" aria-label=\"{}\"><rect width=\"{width}\" height=\"{h}\" fill=\"#fff\" stroke=\"#ccc\"/>",
            escape(title),
            escape(title),
            h = height + 20.0
        );
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"14\" font-size=\"12\">{max:.1}{unit}</text><text x=\"4\" y=\"{}\" font-size=\"12\">0</text>",
            height
        );
        for (i, c) in self.classes.iter().enumerate() {
            let points: Vec<String> = c
                .timeline
                .iter()
                .map(|p| {
                    format!(
                        "{:.1},{:.1}",
                        p.t as f64 * width / n,
                        height - value(p) / max * (height - 20.0)
                    )
                })
                .collect();
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
                COLORS[i % COLORS.len()],
                points.join(" "),
                escape(&c.name)
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Outcome;

    #[test]
    fn the_report_renders_every_class_in_every_form() {
        let mut s = ClassStats::default();
        s.record(
            0,
            Outcome::Status {
                code: 200,
                success: true,
            },
            2_000,
        );
        s.record(
            1,
            Outcome::Status {
                code: 429,
                success: false,
            },
            100,
        );
        s.record(1, Outcome::Timeout, 0);
        let mut users = s.clone();
        users.browser().users = 4;
        users.browser().users_paid = 1;
        let _ = users.browser().challenged.record(250_000);
        let class = |name: &str, kind: &str| {
            crate::scenario::Scenario::parse(&format!(
                "name='x'\nduration_s=2\n[[class]]\nname='{name}'\nkind='{kind}'\nstart_s=1\n"
            ))
            .unwrap()
            .classes
            .remove(0)
        };
        let report = Report {
            scenario: "t<est>".into(),
            duration_s: 2,
            measure_from_s: 0,
            target: "http://127.0.0.1:1".into(),
            classes: vec![
                ClassReport::new(&class("legit", "legit"), &users, 2, 0),
                ClassReport::new(&class("flood", "flood-post"), &s, 2, 0),
            ],
            generator: GeneratorReport::default(),
            node: Some(NodeReport::default()),
        };
        let table = report.table();
        assert!(table.contains("legit") && table.contains("flood-post") && table.contains("429:1"));
        assert!(
            table.contains("1 of 4 users paid") && table.contains("attack mode not exported"),
            "{table}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["classes"][0]["sent"], 3);
        assert_eq!(json["classes"][0]["measured_s"], 1);
        assert_eq!(json["classes"][0]["sent_per_s"], 3.0);
        assert_eq!(json["classes"][0]["browser"]["challenged_lookups"], 1);
        let p99 = json["classes"][0]["browser"]["challenge_latency_ms"]["p99"]
            .as_f64()
            .unwrap();
        assert!((245.0..256.0).contains(&p99), "{p99}");
        assert!(json["classes"][1].get("browser").is_none());
        assert_eq!(json["classes"][0]["statuses"]["200"], 1);
        assert_eq!(json["classes"][1]["timeline"].as_array().unwrap().len(), 2);
        let html = report.html();
        assert!(
            html.contains("<svg") && html.contains("<polyline") && html.contains("t&lt;est&gt;")
        );
        assert!(!html.contains("src=\"http"));
    }
}
