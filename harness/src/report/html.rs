//! The run as one self-contained HTML page for people: a summary table, then every step with
//! its status, its command and output and each check's evidence folded in `<details>`, and for
//! every split check an inline SVG plot of the observed shares over the requests with their
//! Clopper–Pearson band and the request at which the sequential test decided. Nothing is loaded
//! from elsewhere: no scripts, fonts, images or style sheets, so the file opens offline and as
//! a CI artifact.

use std::fmt::Write as _;

use quick_xml::escape::escape;

use crate::checks::CheckResult;
use crate::outcome::{RunReport, StepReport, StepStatus};
use crate::stats::SplitTrace;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}\
.passed .badge{background:#2e7d32}.failed .badge{background:#c62828}.error .badge{background:#6a1b9a}\
.skipped .badge{background:#757575}.badge{color:#fff;border-radius:.3em;padding:0 .4em;font-size:.85em}\
section.step{border-top:1px solid #ddd;margin-top:1em}pre{background:#f6f6f6;padding:.5em;overflow-x:auto;white-space:pre-wrap}\
.check{margin:.6em 0 .6em 1em}.check.fail h3{color:#c62828}h3{font-size:1em;margin:.3em 0}\
dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:.2em 0}dt{font-weight:bold}dd{margin:0}\
.deviation{color:#8d6e00}svg text{font-size:11px;font-family:system-ui,sans-serif}";

/// Line colours of a plot's destinations.
const COLOURS: [&str; 6] = [
    "#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#c62828", "#00838f",
];

fn e(text: &str) -> String {
    escape(meshmig_core::redact::scrub(text).as_ref()).into_owned()
}

/// The report as an HTML page (scrubbed of credentials).
pub fn render(r: &RunReport) -> String {
    let mut h = String::new();
    let title = format!("meshmig: {} on {}", r.scenario, r.backend);
    let verdict = r.outcome.verdict();
    let passed = r
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Passed)
        .count();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p><strong>{}</strong>: {passed} of {} steps passed, {} not run, in {:.2} s; exit code {}; DNS time scale {}.</p>\n",
        e(&title),
        e(&title),
        e(&verdict),
        r.steps.len(),
        r.not_run.len(),
        r.seconds,
        r.outcome.exit_code(),
        r.dns_ttl_scale
    );
    let _ = writeln!(
        h,
        "<p class=\"witnesses\">{}.</p>",
        e(&r.witnesses.sentence(&r.backend))
    );
    h.push_str("<table>\n<tr><th>step</th><th>title</th><th>status</th><th>seconds</th></tr>\n");
    for s in &r.steps {
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td><a href=\"#step-{}\">{}</a></td><td>{}</td><td><span class=\"badge\">{}</span></td><td>{:.2}</td></tr>",
            class(s.status),
            e(&s.id),
            e(&s.id),
            e(&s.title),
            s.status.mark(),
            s.seconds
        );
    }
    for n in &r.not_run {
        let _ = writeln!(
            h,
            "<tr class=\"skipped\"><td><a href=\"#step-{}\">{}</a></td><td>{}</td><td><span class=\"badge\">NOT RUN</span></td><td></td></tr>",
            e(&n.id),
            e(&n.id),
            e(&n.title)
        );
    }
    h.push_str("</table>\n");
    for s in &r.steps {
        step(&mut h, s);
    }
    for n in &r.not_run {
        let _ = writeln!(
            h,
            "<section class=\"step skipped\" id=\"step-{}\"><h2><span class=\"badge\">NOT RUN</span> {} {}</h2><p>The run stopped before this step.</p></section>",
            e(&n.id),
            e(&n.id),
            e(&n.title)
        );
    }
    if let Some(l) = &r.continuous_load {
        load(&mut h, l);
    }
    h.push_str("<section class=\"teardown\"><h2>Teardown</h2>\n<ul>\n");
    for (what, items) in [
        ("removed", &r.teardown.removed),
        ("kept", &r.teardown.kept),
        ("NOT REMOVED", &r.teardown.failed),
    ] {
        for x in items {
            let _ = writeln!(h, "<li>{what} {}</li>", e(x));
        }
    }
    h.push_str("</ul>\n</section>\n</body>\n</html>\n");
    meshmig_core::redact::scrub(&h).into_owned()
}

fn class(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Passed => "passed",
        StepStatus::Failed => "failed",
        StepStatus::Error => "error",
    }
}

fn step(h: &mut String, s: &StepReport) {
    let _ = writeln!(
        h,
        "<section class=\"step {}\" id=\"step-{}\">\n<h2><span class=\"badge\">{}</span> {} {} <small>({:.2} s)</small></h2>",
        class(s.status),
        e(&s.id),
        s.status.mark(),
        e(&s.id),
        e(&s.title),
        s.seconds
    );
    for f in &s.injected {
        let _ = writeln!(
            h,
            "<p class=\"fault\"><strong>fault injected:</strong> {} — {}</p>",
            e(f.command.trim_start_matches("(fault) ")),
            e(f.stdout.trim())
        );
    }
    if let Some(o) = &s.output {
        let _ = writeln!(
            h,
            "<details><summary>$ {}</summary><pre>{}</pre></details>",
            e(&o.command),
            e(&o.stdout)
        );
    }
    if let Some(err) = &s.error {
        let _ = writeln!(
            h,
            "<p><strong>action failed:</strong></p><pre>{}</pre>",
            e(err)
        );
    }
    for c in &s.checks {
        check(h, c);
    }
    h.push_str("</section>\n");
}

fn check(h: &mut String, c: &CheckResult) {
    let _ = writeln!(
        h,
        "<div class=\"check {}\"><h3>{} {}</h3>\n<dl><dt>expected</dt><dd>{}</dd><dt>observed</dt><dd>{}</dd><dt>witness</dt><dd class=\"witness {}\">{}</dd></dl>",
        if c.ok { "ok" } else { "fail" },
        if c.ok { "ok" } else { "FAIL" },
        e(c.check),
        e(&c.expected),
        e(&c.observed),
        c.witness.kind.label(),
        e(&c.witness.to_string())
    );
    if let Some(t) = c
        .evidence
        .get("trace")
        .and_then(|t| serde_json::from_value::<SplitTrace>(t.clone()).ok())
    {
        h.push_str(&plot(&t));
    }
    for d in &c.deviations {
        let _ = writeln!(
            h,
            "<p class=\"deviation\">DEVIATION (does not fail the step): {}</p>",
            e(d)
        );
    }
    // The trace is the plot above; the JSON report keeps its numbers.
    let mut evidence = c.evidence.clone();
    if let Some(o) = evidence.as_object_mut() {
        if o.remove("trace").is_some() {
            o.insert(
                "trace".into(),
                "plotted above; numbers in the JSON report".into(),
            );
        }
    }
    let _ = writeln!(
        h,
        "<details{}><summary>evidence</summary><pre>{}</pre></details></div>",
        if c.ok { "" } else { " open" },
        e(&serde_json::to_string_pretty(&evidence).unwrap_or_default())
    );
}

/// The split plot's size and margins (pixels): width, height, left, right, top and bottom.
const PLOT_W: f64 = 640.0;
const PLOT_H: f64 = 260.0;
const PLOT_L: f64 = 48.0;
const PLOT_R: f64 = 16.0;
const PLOT_T: f64 = 16.0;
const PLOT_B: f64 = 40.0;

/// Where a split plot draws: the plotting area and the request count it spans.
struct Frame {
    /// The plotting area's width.
    pw: f64,
    /// Its height.
    ph: f64,
    /// The requests the x axis spans.
    n: f64,
}

impl Frame {
    fn of(t: &SplitTrace) -> Self {
        Self {
            pw: PLOT_W - PLOT_L - PLOT_R,
            ph: PLOT_H - PLOT_T - PLOT_B,
            n: t.points.last().map_or(1, |p| p.requests).max(1) as f64,
        }
    }

    /// The x of request `req`.
    fn x(&self, req: f64) -> f64 {
        PLOT_L + req / self.n * self.pw
    }

    /// The y of share `share`.
    fn y(&self, share: f64) -> f64 {
        PLOT_T + (1.0 - share.clamp(0.0, 1.0)) * self.ph
    }
}

/// An SVG plot of a split check's shares over the requests: per destination the observed share
/// (line), its interval at 1 − α (band) and the expected share (dashed); the decision point
/// (vertical line).
pub fn plot(t: &SplitTrace) -> String {
    const W: f64 = PLOT_W;
    const H: f64 = PLOT_H;
    let f = Frame::of(t);
    let n = f.n;
    let mut names: Vec<&String> = t.expected.keys().collect();
    if let Some(p) = t.points.last() {
        names.extend(p.shares.keys().filter(|k| !t.expected.contains_key(*k)));
    }
    let label = format!(
        "observed shares over {} requests with their {}% Clopper–Pearson band{}",
        n,
        t.confidence * 100.0,
        match t.decided_at {
            Some(d) => format!("; decided at request {d}"),
            None => "; no decision".into(),
        }
    );
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg class=\"split-plot\" role=\"img\" aria-label=\"{}\" width=\"{W}\" height=\"{}\" viewBox=\"0 0 {W} {}\">\n<title>{}</title>",
        e(&label),
        H + 18.0 * names.len() as f64,
        H + 18.0 * names.len() as f64,
        e(&label)
    );
    plot_axes(&mut s, &f);
    for (i, name) in names.iter().enumerate() {
        plot_share(&mut s, &f, t, i, name);
    }
    if let Some(d) = t.decided_at {
        plot_decision(&mut s, &f, d);
    }
    s.push_str("</svg>\n");
    s
}

/// The split plot's grid, with the shares (0–100%) and request numbers on its axes.
fn plot_axes(s: &mut String, f: &Frame) {
    const L: f64 = PLOT_L;
    const T: f64 = PLOT_T;
    let (pw, ph, n) = (f.pw, f.ph, f.n);
    let x = |req: f64| f.x(req);
    let y = |share: f64| f.y(share);
    for i in 0..=4 {
        let share = i as f64 / 4.0;
        let _ = writeln!(
            s,
            "<line x1=\"{L}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}%</text>",
            L + pw,
            y(share),
            y(share),
            L - 4.0,
            y(share) + 4.0,
            i * 25
        );
    }
    for i in 0..=4 {
        let req = (n * i as f64 / 4.0).round();
        let _ = writeln!(
            s,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{T}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{req}</text>",
            x(req),
            x(req),
            T + ph,
            x(req),
            T + ph + 14.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">requests</text>",
        L + pw / 2.0,
        T + ph + 30.0
    );
}

/// Destination `name` (the `i`th) in the split plot: its observed share, band and expected
/// share, and its legend line.
fn plot_share(s: &mut String, f: &Frame, t: &SplitTrace, i: usize, name: &str) {
    const H: f64 = PLOT_H;
    const L: f64 = PLOT_L;
    let pw = f.pw;
    let x = |req: f64| f.x(req);
    let y = |share: f64| f.y(share);
    let colour = COLOURS[i % COLOURS.len()];
    let pts: Vec<(f64, f64, f64, f64)> = t
        .points
        .iter()
        .filter_map(|p| {
            p.shares
                .get(name)
                .map(|v| (x(p.requests as f64), y(v.observed), y(v.low), y(v.high)))
        })
        .collect();
    let band: Vec<String> = pts
        .iter()
        .map(|(px, _, _, hi)| format!("{px:.1},{hi:.1}"))
        .chain(
            pts.iter()
                .rev()
                .map(|(px, _, lo, _)| format!("{px:.1},{lo:.1}")),
        )
        .collect();
    let line: Vec<String> = pts
        .iter()
        .map(|(px, py, _, _)| format!("{px:.1},{py:.1}"))
        .collect();
    let expected = t.expected.get(name).copied().unwrap_or(0.0);
    let _ = writeln!(
        s,
        "<polygon points=\"{}\" fill=\"{colour}\" fill-opacity=\"0.18\" stroke=\"none\"/>\n<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>\n<line x1=\"{L}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-dasharray=\"5,4\"/>",
        band.join(" "),
        line.join(" "),
        L + pw,
        y(expected),
        y(expected)
    );
    let last = t.points.last().and_then(|p| p.shares.get(name));
    let ly = H + 18.0 * i as f64 + 4.0;
    let _ = writeln!(
        s,
        "<rect x=\"{L}\" y=\"{:.1}\" width=\"12\" height=\"10\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}: expected {:.1}%{}</text>",
        ly,
        L + 16.0,
        ly + 9.0,
        e(name),
        expected * 100.0,
        match last {
            Some(v) => format!(
                ", observed {:.1}% ({:.1}–{:.1}%)",
                v.observed * 100.0,
                v.low * 100.0,
                v.high * 100.0
            ),
            None => String::new(),
        }
    );
}

/// The split plot's decision point: a vertical line at request `d`.
fn plot_decision(s: &mut String, f: &Frame, d: u64) {
    const T: f64 = PLOT_T;
    let ph = f.ph;
    let dx = f.x(d as f64);
    let _ = writeln!(
        s,
        "<line class=\"decision\" x1=\"{dx:.1}\" x2=\"{dx:.1}\" y1=\"{T}\" y2=\"{:.1}\" stroke=\"#222\" stroke-dasharray=\"2,3\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">decided at request {d}</text>",
        T + ph,
        dx - 4.0,
        T + 12.0
    );
}

/// The continuous load: totals, a timeline of answers per cluster and errors per second (with
/// each routing change marked), and each change's time to effect.
fn load(h: &mut String, l: &crate::load::LoadReport) {
    let _ = writeln!(
        h,
        "<section class=\"load\" id=\"continuous-load\"><h2>Continuous load</h2>\n<p>{} requests at {}/s from {}{}: <strong>{} failed</strong> (budget {}).</p>",
        l.requests,
        l.rate,
        e(&l.url),
        l.via_domain_after
            .as_ref()
            .map(|d| format!(", through the domain after {}", e(d)))
            .unwrap_or_default(),
        l.errors,
        l.error_budget
    );
    h.push_str(&timeline(l));
    h.push_str("<table>\n<tr><th>change</th><th>what</th><th>at (s)</th><th>first seen after (s)</th><th>established after (s)</th><th>clients could hold the old answer (s)</th></tr>\n");
    let secs = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2}"));
    for c in &l.time_to_effect {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(&c.change.step),
            e(&c.change.what),
            c.change.at,
            secs(c.first_observed_after),
            secs(c.established_after),
            secs(c.change.held_at_most)
        );
    }
    h.push_str("</table>\n");
    for w in &l.error_windows {
        let _ = writeln!(
            h,
            "<p class=\"failed\">{} failed {:.2}–{:.2} s during {}: {} (e.g. {})</p>",
            w.count,
            w.from,
            w.to,
            e(&w.steps.join(", ")),
            e(&w.causes
                .iter()
                .map(|(c, n)| format!("{c} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")),
            e(&w.example)
        );
    }
    h.push_str("</section>\n");
}

/// Answers per second, stacked by cluster with errors on top; dashed lines mark the changes.
fn timeline(l: &crate::load::LoadReport) -> String {
    const W: f64 = 640.0;
    const H: f64 = 200.0;
    const L: f64 = 48.0;
    const T: f64 = 12.0;
    const B: f64 = 36.0;
    let (pw, ph) = (W - L - 16.0, H - T - B);
    let (Some(first), Some(last)) = (l.timeline.first(), l.timeline.last()) else {
        return String::new();
    };
    let span = (last.t - first.t + 1.0).max(1.0);
    let top = l
        .timeline
        .iter()
        .map(|b| b.served.values().sum::<u64>() + b.errors)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |t: f64| L + (t - first.t) / span * pw;
    let bar = pw / span;
    let mut names: Vec<&String> = l.timeline.iter().flat_map(|b| b.served.keys()).collect();
    names.sort();
    names.dedup();
    let label = format!(
        "answers per second by cluster, errors in red, over {:.0} s",
        span
    );
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg class=\"load-plot\" role=\"img\" aria-label=\"{}\" width=\"{W}\" height=\"{}\" viewBox=\"0 0 {W} {}\">\n<title>{}</title>",
        e(&label),
        H + 18.0 * (names.len() + 1) as f64,
        H + 18.0 * (names.len() + 1) as f64,
        e(&label)
    );
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds after the run started</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{top}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">0</text>",
        L + pw / 2.0,
        T + ph + 28.0,
        L - 4.0,
        T + 10.0,
        L - 4.0,
        T + ph
    );
    for b in &l.timeline {
        let mut y = T + ph;
        let parts = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    COLOURS[i % COLOURS.len()],
                    b.served.get(*n).copied().unwrap_or(0),
                )
            })
            .chain(std::iter::once(("#c00", b.errors)));
        for (colour, count) in parts {
            if count == 0 {
                continue;
            }
            let height = count as f64 / top * ph;
            y -= height;
            let _ = writeln!(
                s,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{colour}\"/>",
                x(b.t),
                (bar - 1.0).max(1.0)
            );
        }
    }
    for c in &l.time_to_effect {
        let cx = x(c.change.at);
        let _ = writeln!(
            s,
            "<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{T}\" y2=\"{:.1}\" stroke=\"#222\" stroke-dasharray=\"2,3\"/><text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            T + ph,
            T + ph + 14.0,
            e(&c.change.step)
        );
    }
    for (i, n) in names
        .iter()
        .map(|n| n.as_str())
        .chain(std::iter::once("errors"))
        .enumerate()
    {
        let colour = if n == "errors" {
            "#c00"
        } else {
            COLOURS[i % COLOURS.len()]
        };
        let ly = H + 18.0 * i as f64 + 4.0;
        let _ = writeln!(
            s,
            "<rect x=\"{L}\" y=\"{ly:.1}\" width=\"12\" height=\"10\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            L + 16.0,
            ly + 9.0,
            e(n)
        );
    }
    s.push_str("</svg>\n");
    s
}
