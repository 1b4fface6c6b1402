//! Reports: the run as an SRE reads it (each step, its command, its evidence) on stdout, and in
//! files: JSON for machines ([`json`]), JUnit XML for CI ([`junit`]) and a self-contained HTML
//! page for people ([`html`]). Every file is scrubbed of credentials.

pub mod html;
pub mod json;
pub mod junit;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::outcome::{RunObserver, RunReport, StepReport, StepStatus};
use meshmig_core::scenario::Scenario;

/// Errors writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The JUnit XML could not be rendered.
    #[error("rendering the JUnit report")]
    Junit {
        /// Why.
        #[source]
        source: junit::JunitError,
    },
    /// The report file could not be written.
    #[error("writing the report to {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Prints a run on stdout as it goes (or stays silent); a [`RunObserver`] for a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    on: bool,
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Printer {
    /// A printer; `on` false prints nothing.
    pub fn new(on: bool) -> Self {
        Self { on }
    }

    fn out(&self, s: &str) {
        if self.on {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{s}");
        }
    }
}

impl RunObserver for Printer {
    /// The run's first lines.
    fn run_started(&self, s: &Scenario, backend: &str) {
        self.out(&format!(
            "meshmig: scenario {} ({}) on backend {backend}{}",
            s.name,
            s.path.display(),
            if s.dns.ttl_scale == 1.0 {
                String::new()
            } else {
                format!(
                    "; DNS time runs at {}× real time (a TTL of 300 s is held for {:.1} s)",
                    1.0 / s.dns.ttl_scale,
                    300.0 * s.dns.ttl_scale
                )
            }
        ));
    }

    /// A finished step.
    fn step_finished(&self, r: &StepReport) {
        self.out(&render_step(r));
    }

    /// Teardown begins.
    fn teardown_started(&self, keep: bool) {
        self.out(if keep {
            "teardown: --keep, leaving the run's resources"
        } else {
            "teardown"
        });
    }

    /// The run's last lines.
    fn run_finished(&self, r: &RunReport) {
        self.out(&render_end(r));
    }
}

/// A step as text: status, id, title, time, command, and per check expected/observed/evidence.
pub fn render_step(r: &StepReport) -> String {
    meshmig_core::redact::scrubbed(render_step_raw(r))
}

fn render_step_raw(r: &StepReport) -> String {
    let mark = r.status.mark();
    let mut s = format!("{mark} {} {} ({:.2}s)", r.id, r.title, r.seconds);
    for f in &r.injected {
        s.push_str(&format!(
            "\n    FAULT INJECTED {}: {}",
            f.command.trim_start_matches("(fault) "),
            f.stdout.trim()
        ));
    }
    if let Some(o) = &r.output {
        s.push_str(&format!("\n    $ {}", o.command));
        let first: Vec<&str> = o.stdout.lines().take(6).collect();
        if !first.is_empty() {
            s.push('\n');
            s.push_str(&indent(&first.join("\n"), "      "));
        }
    }
    if let Some(e) = &r.error {
        s.push_str(&format!(
            "\n    action failed: {}",
            indent(e, "      ").trim_start()
        ));
    }
    for c in &r.checks {
        let evidence = if c.ok {
            compact(&c.evidence)
        } else {
            serde_json::to_string_pretty(&c.evidence).unwrap_or_default()
        };
        s.push_str(&format!(
            "\n    {} {}: {}\n      expected: {}\n      witness: {}\n      evidence: {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.check,
            c.observed,
            c.expected,
            c.witness,
            indent(&evidence, "        ").trim_start()
        ));
        for d in &c.deviations {
            s.push_str(&format!("\n      DEVIATION (does not fail the step): {d}"));
        }
    }
    s
}

fn compact(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 240 {
        format!("{}…", s.chars().take(240).collect::<String>())
    } else {
        s
    }
}

/// The run's outcome and teardown as text.
pub fn render_end(r: &RunReport) -> String {
    meshmig_core::redact::scrubbed(render_end_raw(r))
}

fn render_end_raw(r: &RunReport) -> String {
    let mut s = String::new();
    for x in &r.teardown.removed {
        s.push_str(&format!("  removed {x}\n"));
    }
    for x in &r.teardown.kept {
        s.push_str(&format!("  kept {x}\n"));
    }
    for x in &r.teardown.failed {
        s.push_str(&format!("  NOT REMOVED {x}\n"));
    }
    let passed = r
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Passed)
        .count();
    let verdict = r.outcome.verdict();
    s.push_str(&format!(
        "{verdict}: {passed} of {} steps passed in {:.2}s (scenario {}, backend {})",
        r.steps.len(),
        r.seconds,
        r.scenario,
        r.backend
    ));
    s.push('\n');
    s.push_str(&r.witnesses.sentence(&r.backend));
    if let Some(kb) = peak_memory_kib() {
        s.push_str(&format!("\nharness peak memory: {:.1} MiB (VmHWM of meshmig itself; Envoy processes not included)", kb as f64 / 1024.0));
    }
    s
}

/// This process's peak resident memory (VmHWM), in KiB.
pub fn peak_memory_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Writes `SCENARIO.json`, `SCENARIO.junit.xml` and `SCENARIO.html` into `dir` (created if
/// missing); returns their paths in that order.
pub fn write_all(r: &RunReport, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let junit = junit::render(r).map_err(|source| ReportError::Junit { source })?;
    let files = [
        (format!("{}.json", r.scenario), json::render(r)),
        (format!("{}.junit.xml", r.scenario), junit),
        (format!("{}.html", r.scenario), html::render(r)),
    ];
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        // Every renderer scrubs; scrubbing the whole file again costs little and also catches
        // a secret split across fields.
        std::fs::write(&path, meshmig_core::redact::scrub(&text).as_bytes()).map_err(|source| {
            ReportError::Write {
                path: path.clone(),
                source,
            }
        })?;
        written.push(path);
    }
    Ok(written)
}
