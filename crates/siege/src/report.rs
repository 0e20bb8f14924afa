//! The report: a table on stdout, a JSON document, and a self-contained HTML page with charts
//! (inline SVG; opens from disk in any browser, no server, no CDN).

use std::fmt::Write as _;

use serde::Serialize;

use crate::scenario::Kind;
use crate::stats::ClassStats;

#[derive(Serialize)]
pub struct Report {
    pub scenario: String,
    pub duration_s: u64,
    pub target: String,
    pub classes: Vec<ClassReport>,
}

#[derive(Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
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
    pub sent: u64,
    pub success: u64,
    pub success_ratio: f64,
    pub statuses: std::collections::BTreeMap<String, u64>,
    pub timeouts: u64,
    pub connection_errors: u64,
    pub closed_by_server: u64,
    /// Slow connections still open when the run ended.
    pub held_to_end: u64,
    pub latency_ms: Latency,
    pub timeline: Vec<Point>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl ClassReport {
    pub fn new(name: &str, kind: Kind, s: &ClassStats, duration_s: u64) -> ClassReport {
        let kind = serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        ClassReport {
            name: name.to_owned(),
            kind,
            sent: s.sent,
            success: s.success,
            success_ratio: ratio(s.success, s.sent),
            statuses: s
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            timeouts: s.timeouts,
            connection_errors: s.connection_errors,
            closed_by_server: s.closed_by_server,
            held_to_end: s.held_to_end,
            latency_ms: Latency {
                p50: s.quantile_ms(0.5),
                p90: s.quantile_ms(0.9),
                p99: s.quantile_ms(0.99),
                max: s.quantile_ms(1.0),
            },
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

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} against {} for {} s",
            self.scenario, self.target, self.duration_s
        );
        let _ = writeln!(
            out,
            "{:<18} {:<22} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}  statuses",
            "class",
            "kind",
            "sent",
            "success",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "timeout",
            "conn err"
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
            let _ = writeln!(
                out,
                "{:<18} {:<22} {:>10} {:>8.2}% {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>7}  {}{}",
                c.name,
                c.kind,
                c.sent,
                c.success_ratio * 100.0,
                c.latency_ms.p50,
                c.latency_ms.p90,
                c.latency_ms.p99,
                c.latency_ms.max,
                c.timeouts,
                c.connection_errors,
                statuses.join(" "),
                extra
            );
        }
        out
    }

    pub fn html(&self) -> String {
        const COLORS: [&str; 8] = [
            "#2e7d32", "#c62828", "#1565c0", "#f9a825", "#6a1b9a", "#00838f", "#ef6c00", "#5d4037",
        ];
        let json = serde_json::to_string(self)
            .unwrap_or_default()
            .replace("</", "<\\/");
        let chart = |title: &str, value: &dyn Fn(&Point) -> f64, unit: &str| -> String {
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
        };
        let mut legend = String::new();
        for (i, c) in self.classes.iter().enumerate() {
            let _ = write!(
                legend,
                "<span style=\"color:{}\">&#9632; {}</span> ",
                COLORS[i % COLORS.len()],
                escape(&c.name)
            );
        }
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
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>rempart siege: {name}</title>\
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}}table{{border-collapse:collapse}}td,th{{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right}}td:first-child,th:first-child{{text-align:left}}h2{{font-size:1rem}}</style></head>\
<body><h1>rempart siege: {name}</h1><p>Target {target}, {duration} s.</p>\
<table><tr><th>class</th><th>kind</th><th>sent</th><th>success</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th><th>timeouts</th><th>conn errors</th><th>statuses</th></tr>{rows}</table>\
<p>{legend}</p>{success}{p99}{sent}\
<script type=\"application/json\" id=\"report\">{json}</script></body></html>\n",
            name = escape(&self.scenario),
            target = escape(&self.target),
            duration = self.duration_s,
            success = chart(
                "Success ratio per second",
                &|p| p.success_ratio * 100.0,
                "%"
            ),
            p99 = chart("p99 latency per second (ms)", &|p| p.p99_ms, " ms"),
            sent = chart("Requests sent per second", &|p| p.sent as f64, "/s"),
        )
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
        let report = Report {
            scenario: "t<est>".into(),
            duration_s: 2,
            target: "http://127.0.0.1:1".into(),
            classes: vec![
                ClassReport::new("legit", Kind::Legit, &s, 2),
                ClassReport::new("flood", Kind::FloodPost, &s, 2),
            ],
        };
        let table = report.table();
        assert!(table.contains("legit") && table.contains("flood-post") && table.contains("429:1"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["classes"][0]["sent"], 3);
        assert_eq!(json["classes"][0]["statuses"]["200"], 1);
        assert_eq!(json["classes"][1]["timeline"].as_array().unwrap().len(), 2);
        let html = report.html();
        assert!(
            html.contains("<svg") && html.contains("<polyline") && html.contains("t&lt;est&gt;")
        );
        assert!(!html.contains("src=\"http"));
    }
}
