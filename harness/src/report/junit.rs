//! The run as JUnit XML, for CI systems: one `<testsuite>` per run (named after the scenario
//! and the backend), one `<testcase>` per step. A failed step carries a `<failure>` whose text
//! gives each failing check's expected value, observation and evidence (and the action's error,
//! when the procedure's tool failed as published); a step the harness could not carry out carries
//! an `<error>`; the scenario's steps the run never reached are `<skipped/>`. Deviations from the
//! published procedure and the step's command and output go to the case's `<system-out>`, the
//! teardown to the suite's. The document follows `schema/junit.xsd`.

use std::io;

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

use crate::outcome::{Outcome, RunReport, StepReport, StepStatus};

/// Errors rendering JUnit XML.
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    /// The XML writer failed.
    #[error("writing the JUnit XML of scenario {scenario}")]
    Xml {
        /// The scenario.
        scenario: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// `text` made safe for XML 1.0 and scrubbed of credentials: characters XML 1.0 does not allow
/// even escaped (control characters such as a terminal's ESC) become U+FFFD.
fn clean(text: &str) -> String {
    meshmig_core::redact::scrub(text)
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
            _ => c,
        })
        .collect()
}

/// One line of at most 500 characters, for a `message` attribute.
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 500 {
        format!("{}…", line.chars().take(500).collect::<String>())
    } else {
        line
    }
}

fn count(r: &RunReport, status: StepStatus) -> usize {
    r.steps.iter().filter(|s| s.status == status).count()
}

/// The report as a JUnit XML document (scrubbed of credentials).
pub fn render(r: &RunReport) -> Result<String, JunitError> {
    write(r).map_err(|source| JunitError::Xml {
        scenario: r.scenario.clone(),
        source,
    })
}

fn write(r: &RunReport) -> io::Result<String> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let tests = (r.steps.len() + r.not_run.len()).to_string();
    let failures = count(r, StepStatus::Failed).to_string();
    let errors = count(r, StepStatus::Error).to_string();
    let skipped = r.not_run.len().to_string();
    let time = format!("{:.3}", r.seconds);
    let suite = clean(&format!("{} ({})", r.scenario, r.backend));
    let classname = clean(&format!("{}.{}", r.scenario, r.backend));
    w.create_element("testsuites")
        .with_attribute(("name", "meshmig"))
        .with_attribute(("tests", tests.as_str()))
        .with_attribute(("failures", failures.as_str()))
        .with_attribute(("errors", errors.as_str()))
        .with_attribute(("skipped", skipped.as_str()))
        .with_attribute(("time", time.as_str()))
        .write_inner_content(|w| {
            w.create_element("testsuite")
                .with_attribute(("name", suite.as_str()))
                .with_attribute(("tests", tests.as_str()))
                .with_attribute(("failures", failures.as_str()))
                .with_attribute(("errors", errors.as_str()))
                .with_attribute(("skipped", skipped.as_str()))
                .with_attribute(("time", time.as_str()))
                .write_inner_content(|w| {
                    properties(w, r)?;
                    for s in &r.steps {
                        case(w, &classname, s)?;
                    }
                    let stopped = match &r.outcome {
                        Outcome::AssertionFailed { step }
                        | Outcome::Infrastructure { step, .. } => {
                            format!("not run: the run stopped after step {step} failed")
                        }
                        Outcome::Interrupted => "not run: the run was interrupted".into(),
                        Outcome::Panicked { .. } => "not run: the harness panicked".into(),
                        Outcome::Passed => "not run".into(),
                    };
                    for n in &r.not_run {
                        w.create_element("testcase")
                            .with_attribute((
                                "name",
                                clean(&format!("{} {}", n.id, n.title)).as_str(),
                            ))
                            .with_attribute(("classname", classname.as_str()))
                            .with_attribute(("time", "0"))
                            .write_inner_content(|w| {
                                w.create_element("skipped")
                                    .with_attribute(("message", stopped.as_str()))
                                    .write_empty()?;
                                Ok(())
                            })?;
                    }
                    w.create_element("system-out")
                        .write_text_content(BytesText::new(&clean(&teardown(r))))?;
                    Ok(())
                })?;
            Ok(())
        })?;
    Ok(String::from_utf8(w.into_inner()).expect("the writer writes the UTF-8 it is given"))
}

fn properties(w: &mut Writer<Vec<u8>>, r: &RunReport) -> io::Result<()> {
    let outcome = match &r.outcome {
        Outcome::Passed => "passed".to_string(),
        Outcome::AssertionFailed { step } => format!("failed at step {step}"),
        Outcome::Infrastructure { step, message } => {
            format!(
                "infrastructure failure at step {step}: {}",
                one_line(message)
            )
        }
        Outcome::Interrupted => "interrupted".into(),
        Outcome::Panicked { message } => format!("harness panic: {}", one_line(message)),
    };
    let props = [
        ("scenario", r.scenario.clone()),
        ("backend", r.backend.clone()),
        ("outcome", outcome),
        ("exit_code", r.outcome.exit_code().to_string()),
        ("dns_ttl_scale", r.dns_ttl_scale.to_string()),
        (
            "checks_observed_by_real_components",
            r.witnesses.real.to_string(),
        ),
        (
            "checks_observed_by_stand_ins",
            r.witnesses.stand_in.to_string(),
        ),
        (
            "checks_observed_by_the_harness",
            r.witnesses.harness.to_string(),
        ),
        ("checks", r.witnesses.total.to_string()),
    ];
    w.create_element("properties").write_inner_content(|w| {
        for (name, value) in &props {
            w.create_element("property")
                .with_attribute(("name", *name))
                .with_attribute(("value", clean(value).as_str()))
                .write_empty()?;
        }
        Ok(())
    })?;
    Ok(())
}

fn case(w: &mut Writer<Vec<u8>>, classname: &str, s: &StepReport) -> io::Result<()> {
    let time = format!("{:.3}", s.seconds);
    w.create_element("testcase")
        .with_attribute(("name", clean(&format!("{} {}", s.id, s.title)).as_str()))
        .with_attribute(("classname", classname))
        .with_attribute(("time", time.as_str()))
        .write_inner_content(|w| {
            match s.status {
                StepStatus::Passed => {}
                StepStatus::Failed => {
                    let (message, text) = failure(s);
                    w.create_element("failure")
                        .with_attribute(("message", clean(&message).as_str()))
                        .with_attribute(("type", "assertion"))
                        .write_text_content(BytesText::new(&clean(&text)))?;
                }
                StepStatus::Error => {
                    let text = s.failure();
                    w.create_element("error")
                        .with_attribute(("message", clean(&one_line(&text)).as_str()))
                        .with_attribute(("type", "infrastructure"))
                        .write_text_content(BytesText::new(&clean(&text)))?;
                }
            }
            let out = system_out(s);
            if !out.is_empty() {
                w.create_element("system-out")
                    .write_text_content(BytesText::new(&clean(&out)))?;
            }
            Ok(())
        })?;
    Ok(())
}

/// A failed step's message (one line) and text: the action's error, then each failing check's
/// expected value, observation and evidence.
fn failure(s: &StepReport) -> (String, String) {
    let failed: Vec<_> = s.checks.iter().filter(|c| !c.ok).collect();
    let mut message: Vec<String> = s
        .error
        .iter()
        .map(|e| format!("action failed: {}", one_line(e)))
        .collect();
    message.extend(failed.iter().map(|c| {
        format!(
            "{}: expected {}; observed {}",
            c.check,
            one_line(&c.expected),
            one_line(&c.observed)
        )
    }));
    let mut text = String::new();
    if let Some(e) = &s.error {
        text.push_str(&format!("action failed: {e}\n"));
    }
    for c in failed {
        text.push_str(&format!(
            "check {}\n  expected: {}\n  observed: {}\n  witness: {}\n  evidence: {}\n",
            c.check,
            c.expected,
            c.observed,
            c.witness,
            serde_json::to_string_pretty(&c.evidence).unwrap_or_default()
        ));
    }
    (one_line(&message.join(" | ")), text)
}

/// A step's command and output, each check's witness, and the deviations its checks noted.
fn system_out(s: &StepReport) -> String {
    let mut out = String::new();
    if let Some(o) = &s.output {
        out.push_str(&format!("$ {}\n{}", o.command, o.stdout));
        if !o.stdout.ends_with('\n') && !o.stdout.is_empty() {
            out.push('\n');
        }
    }
    for c in &s.checks {
        out.push_str(&format!(
            "witness of {} ({}): {}\n",
            c.check,
            if c.ok { "held" } else { "failed" },
            c.witness
        ));
        for d in &c.deviations {
            out.push_str(&format!(
                "DEVIATION ({}, does not fail the step): {d}\n",
                c.check
            ));
        }
    }
    out
}

fn teardown(r: &RunReport) -> String {
    let t = &r.teardown;
    let mut s = String::from("teardown\n");
    for x in &t.removed {
        s.push_str(&format!("  removed {x}\n"));
    }
    for x in &t.kept {
        s.push_str(&format!("  kept {x}\n"));
    }
    for x in &t.failed {
        s.push_str(&format!("  NOT REMOVED {x}\n"));
    }
    s
}
