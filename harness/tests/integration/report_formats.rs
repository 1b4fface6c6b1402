//! The report files of `meshmig run --report-dir`: JSON valid against the published schema
//! (`schema/report.schema.json`), JUnit XML valid against `schema/junit.xsd` (checked by
//! xmllint, from Debian's libxml2-utils), and a self-contained HTML page that headless Chromium
//! renders. The real files come from one real emulated run of canary-cluster on the real
//! upstream manifests; failures, errors and steps not run come from a report built here. Each
//! validation is also shown to reject a broken document, so it can fail.
//!
//! xmllint is required. Chromium is required unless `MESHMIG_SKIP_CHROMIUM=1` (for machines
//! without a browser; `.ci/run` installs it and does not set it); `MESHMIG_CHROMIUM` names
//! the browser binary (default `chromium`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use meshmig::backend::{Output, TeardownReport};
use meshmig::checks::CheckResult;
use meshmig::outcome::{NotRun, Outcome, RunReport, StepReport, StepStatus};
use serde_json::{json, Value};

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The report folder of one real run of canary-cluster (run once for all tests).
fn real_run() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let up = meshmig_testsupport::shared("upstream");
        let o = Command::new(env!("CARGO_BIN_EXE_meshmig"))
            .args(["run", "scenarios/canary-cluster.yaml", "--manifests"])
            .arg(&up)
            .arg("--report-dir")
            .arg(dir.path())
            .current_dir(project())
            .output()
            .expect("the meshmig binary runs");
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        for ext in ["json", "junit.xml", "html"] {
            let p = dir.path().join(format!("canary-cluster.{ext}"));
            assert!(
                out.contains(&format!("report: {}", p.display())),
                "{ext}: {out}"
            );
        }
        dir
    })
    .path()
}

fn read(dir: &Path, ext: &str) -> String {
    std::fs::read_to_string(dir.join(format!("canary-cluster.{ext}"))).unwrap()
}

fn schema() -> jsonschema::Validator {
    let s: Value = serde_json::from_str(
        &std::fs::read_to_string(project().join("schema/report.schema.json")).unwrap(),
    )
    .unwrap();
    jsonschema::draft202012::new(&s).expect("the schema is a valid draft 2020-12 schema")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// `xmllint --schema schema/junit.xsd FILE`: Ok, or what xmllint said.
fn xmllint(xml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("report.junit.xml");
    std::fs::write(&f, xml).unwrap();
    let o = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(project().join("schema/junit.xsd"))
        .arg(&f)
        .output()
        .expect("xmllint runs (Debian package libxml2-utils)");
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.success() {
        Ok(())
    } else {
        Err(said)
    }
}

fn check(name: &'static str, ok: bool, evidence: Value) -> CheckResult {
    CheckResult {
        check: name,
        ok,
        expected: "cluster-with-csm 100% of requests".into(),
        observed: "cluster-with-istio 3 <b>& \"quoted\"</b>\u{1b}[31m".into(),
        evidence,
        deviations: Vec::new(),
        witness: meshmig::backend::witness::Witness::real("kube-apiserver 1.35.4 <&>"),
    }
}

/// A report with every kind of step: passed with a deviation, failed (a check with markup and
/// a control character in its text), error, and two not run.
fn mixed_report() -> RunReport {
    let mut dev = check("istio_installed", true, json!({}));
    dev.deviations = vec!["the published text <is> missing".into()];
    let step = |id: &str, status, checks, error: Option<&str>| StepReport {
        id: id.into(),
        title: format!("step {id}"),
        status,
        seconds: 0.25,
        injected: Vec::new(),
        output: Some(Output::new(
            "kubectl get svc",
            "NAME  TYPE\nfrontend <none>\n",
        )),
        error: error.map(String::from),
        checks,
    };
    RunReport {
        continuous_load: None,
        scenario: "mixed".into(),
        backend: "emulated".into(),
        steps: vec![
            step("A4", StepStatus::Passed, vec![dev], None),
            step(
                "F3",
                StepStatus::Failed,
                vec![check(
                    "routes",
                    false,
                    json!({"routes": ["a<b"], "note": "x]]>y"}),
                )],
                None,
            ),
            step(
                "F4",
                StepStatus::Error,
                vec![],
                Some("sampling http://127.0.0.1/: connection refused"),
            ),
        ],
        outcome: Outcome::Infrastructure {
            step: "F4".into(),
            message: "sampling: connection refused".into(),
        },
        teardown: TeardownReport {
            removed: vec!["cluster cluster-with-istio".into()],
            failed: vec!["cluster cluster-with-csm: still RUNNING".into()],
            kept: vec![],
        },
        seconds: 1.5,
        dns_ttl_scale: 1.0,
        witnesses: Default::default(),
        not_run: vec![
            NotRun {
                id: "G1".into(),
                title: "Lower the TTL".into(),
            },
            NotRun {
                id: "H1".into(),
                title: "Delete the Istio cluster".into(),
            },
        ],
    }
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "binds 127.RUN.x.y loopback addresses, which only Linux routes to lo by default"
)]
fn a_real_runs_json_is_valid_against_the_published_schema() {
    let doc: Value = serde_json::from_str(&read(real_run(), "json")).unwrap();
    let v = schema();
    assert_eq!(errors(&v, &doc), Vec::<String>::new());
    // It is the run: 35 steps and the continuous load, and every split check carries its trace.
    assert_eq!(doc["steps"].as_array().unwrap().len(), 36);
    assert!(doc["continuous_load"]["requests"].as_u64().unwrap() > 0);
    assert!(!doc["continuous_load"]["time_to_effect"]
        .as_array()
        .unwrap()
        .is_empty());
    let splits: Vec<&Value> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["checks"].as_array().unwrap())
        .filter(|c| c["check"] == "split")
        .collect();
    assert!(splits.len() >= 4, "{}", splits.len());
    // Every check names its witness, and the run counts them.
    let checks: Vec<&Value> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["checks"].as_array().unwrap())
        .collect();
    assert_eq!(doc["witnesses"]["total"], checks.len());
    for c in &checks {
        assert_ne!(c["witness"]["component"], "not attributed", "{c}");
    }
    for c in splits {
        let t = &c["evidence"]["trace"];
        assert_eq!(t["decided_at"], c["evidence"]["requests"], "{t}");
        assert!(t["points"].as_array().unwrap().len() <= 100);
    }
}

/// A way to break a report.
type Break = fn(&mut Value);

#[test]
fn the_schema_rejects_broken_reports_and_accepts_the_mixed_one() {
    let v = schema();
    let good = serde_json::to_value(mixed_report()).unwrap();
    assert_eq!(errors(&v, &good), Vec::<String>::new());
    let breaks: [(&str, Break); 7] = [
        ("a check without its witness", |d| {
            d["steps"][0]["checks"][0]
                .as_object_mut()
                .unwrap()
                .remove("witness");
        }),
        ("a witness of an unknown kind", |d| {
            d["steps"][0]["checks"][0]["witness"]["kind"] = json!("trusted")
        }),
        ("no outcome", |d| {
            d.as_object_mut().unwrap().remove("outcome");
        }),
        ("unknown step status", |d| {
            d["steps"][0]["status"] = json!("maybe")
        }),
        ("a passed step with a failed check", |d| {
            d["steps"][0]["checks"][0]["ok"] = json!(false)
        }),
        ("an unknown outcome", |d| {
            d["outcome"] = json!({"result": "fine"})
        }),
        ("a split without its trace", |d| {
            d["steps"][1]["checks"][0]["check"] = json!("split")
        }),
    ];
    for (what, brk) in breaks {
        let mut d = good.clone();
        brk(&mut d);
        assert!(!errors(&v, &d).is_empty(), "accepted a report with {what}");
    }
    // A share outside [0, 1] in a real trace.
    let mut real: Value = serde_json::from_str(&read_or_mixed()).unwrap();
    if let Some(c) = real["steps"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|s| s["checks"].as_array_mut().unwrap())
        .find(|c| c["check"] == "split")
    {
        c["evidence"]["trace"]["points"][0]["shares"]
            .as_object_mut()
            .unwrap()
            .values_mut()
            .for_each(|s| s["high"] = json!(1.5));
        assert!(!errors(&v, &real).is_empty(), "accepted a share of 150%");
    }
}

/// The real run's JSON on Linux; the mixed report elsewhere.
fn read_or_mixed() -> String {
    if cfg!(target_os = "linux") {
        read(real_run(), "json")
    } else {
        meshmig::report::json::render(&mixed_report())
    }
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "binds 127.RUN.x.y loopback addresses, which only Linux routes to lo by default"
)]
fn a_real_runs_junit_has_a_case_per_step_and_is_valid() {
    let xml = read(real_run(), "junit.xml");
    xmllint(&xml).unwrap();
    let doc = roxmltree_free::cases(&xml);
    assert_eq!(doc.suite, "canary-cluster (emulated)");
    assert_eq!(doc.cases.len(), 36, "35 steps and the continuous load");
    assert!(doc.cases.iter().any(|c| c.starts_with("F3 ")));
    assert!(xml.contains("DEVIATION (istio_installed, does not fail the step)"));
    assert!(xml.contains("teardown\n"));
}

#[test]
fn junit_has_failure_error_and_skipped_and_rejects_a_broken_document() {
    let r = mixed_report();
    let xml = meshmig::report::junit::render(&r).unwrap();
    xmllint(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let doc = roxmltree_free::cases(&xml);
    assert_eq!(doc.suite, "mixed (emulated)");
    assert_eq!(doc.cases.len(), 5);
    assert!(
        xml.contains(r#"tests="5" failures="1" errors="1" skipped="2""#),
        "{xml}"
    );
    // The failure names expected, observed and the evidence, escaped; ESC is replaced.
    assert!(xml.contains("<failure message=\"routes: expected cluster-with-csm 100% of requests; observed cluster-with-istio 3 &lt;b&gt;&amp; &quot;quoted&quot;&lt;/b&gt;\u{fffd}[31m\" type=\"assertion\">"), "{xml}");
    assert!(xml.contains("evidence: {"), "{xml}");
    // Each check's witness, escaped; the suite counts them.
    assert!(
        xml.contains("witness: kube-apiserver 1.35.4 &lt;&amp;&gt; (real)"),
        "{xml}"
    );
    assert!(
        xml.contains("<property name=\"checks_observed_by_real_components\""),
        "{xml}"
    );
    assert!(xml.contains("a&lt;b"), "{xml}");
    assert!(!xml.contains('\u{1b}'));
    assert!(xml.contains("<error message=\"sampling http://127.0.0.1/: connection refused\" type=\"infrastructure\">"), "{xml}");
    assert!(
        xml.contains("<skipped message=\"not run: the run stopped after step F4 failed\"/>"),
        "{xml}"
    );
    assert!(xml.contains("DEVIATION (istio_installed, does not fail the step): the published text &lt;is&gt; missing"));
    assert!(xml.contains("NOT REMOVED cluster cluster-with-csm: still RUNNING"));
    // The validation can fail: a case without a name, and two outcomes in one case.
    let nameless = xml.replacen("<testcase name=\"A4 step A4\"", "<testcase", 1);
    assert!(xmllint(&nameless).is_err());
    let twice = xml.replacen(
        "<skipped message",
        "<failure message=\"x\"/><skipped message",
        1,
    );
    assert!(xmllint(&twice).is_err());
}

/// A minimal reader of the suite's name and its cases' names (no XML crate needed for this).
mod roxmltree_free {
    pub struct Doc {
        pub suite: String,
        pub cases: Vec<String>,
    }

    fn attr(tag: &str, name: &str) -> String {
        let key = format!(" {name}=\"");
        let i = tag.find(&key).unwrap() + key.len();
        tag[i..i + tag[i..].find('"').unwrap()].to_string()
    }

    pub fn cases(xml: &str) -> Doc {
        let suite = xml.split("<testsuite ").nth(1).unwrap();
        Doc {
            suite: attr(&format!(" {suite}"), "name"),
            cases: xml
                .split("<testcase ")
                .skip(1)
                .map(|t| attr(&format!(" {t}"), "name"))
                .collect(),
        }
    }
}

/// What a page loads from elsewhere or runs: scripts, external references, remote URLs in
/// attributes or styles.
fn offline_problems(html: &str) -> Vec<String> {
    let doc = scraper::Html::parse_document(html);
    let mut found = Vec::new();
    for el in doc
        .root_element()
        .descendants()
        .filter_map(scraper::ElementRef::wrap)
    {
        let name = el.value().name();
        if matches!(
            name,
            "script"
                | "link"
                | "iframe"
                | "img"
                | "object"
                | "embed"
                | "audio"
                | "video"
                | "source"
                | "base"
        ) {
            found.push(format!("<{name}>"));
        }
        for (a, v) in el.value().attrs() {
            if v.contains("://") || v.contains("url(") || a.starts_with("on") {
                found.push(format!("<{name} {a}=\"{v}\">"));
            }
        }
        if name == "style" {
            let css: String = el.text().collect();
            if css.contains("url(") || css.contains("@import") || css.contains("@font-face") {
                found.push("a style that loads".into());
            }
        }
    }
    if html.to_lowercase().contains("<script") {
        found.push("<script".into());
    }
    found
}

#[test]
fn the_html_page_loads_nothing_and_shows_every_step() {
    let html = meshmig::report::html::render(&mixed_report());
    assert_eq!(offline_problems(&html), Vec::<String>::new());
    for id in ["A4", "F3", "F4", "G1", "H1"] {
        assert!(html.contains(&format!("id=\"step-{id}\"")), "{id}");
    }
    assert!(html.contains("NOT RUN"));
    assert!(
        html.contains("&lt;b&gt;&amp;"),
        "markup in observations is escaped"
    );
    assert!(
        html.contains("<dd class=\"witness real\">kube-apiserver 1.35.4 &lt;&amp;&gt; (real)</dd>"),
        "each check shows its witness"
    );
    // The check can fail.
    let bad = html.replace(
        "</body>",
        "<script>alert(1)</script><img src=\"https://x.example/a.png\"></body>",
    );
    assert_eq!(
        offline_problems(&bad).len(),
        4,
        "{:?}",
        offline_problems(&bad)
    );
}

fn chromium() -> Option<String> {
    if std::env::var("MESHMIG_SKIP_CHROMIUM").as_deref() == Ok("1") {
        eprintln!("MESHMIG_SKIP_CHROMIUM=1: not rendering in Chromium");
        return None;
    }
    Some(std::env::var("MESHMIG_CHROMIUM").unwrap_or_else(|_| "chromium".into()))
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "binds 127.RUN.x.y loopback addresses, which only Linux routes to lo by default"
)]
fn a_real_runs_html_is_offline_has_plots_and_renders_in_headless_chromium() {
    let dir = real_run();
    let html = read(dir, "html");
    assert_eq!(offline_problems(&html), Vec::<String>::new());
    let plots = html.matches("<svg class=\"split-plot\"").count();
    assert!(plots >= 4, "{plots} plots");
    assert!(html.contains("decided at request "));
    assert!(html.contains("<details>"));
    // The continuous load's timeline, its changes marked, and the time-to-effect table.
    assert_eq!(html.matches("<svg class=\"load-plot\"").count(), 1);
    assert!(
        html.contains("<td>F2</td><td>VirtualService applied</td>"),
        "F2's time to effect"
    );
    let Some(browser) = chromium() else { return };
    let page = format!("file://{}", dir.join("canary-cluster.html").display());
    let run = |extra: &[&str]| {
        let o = Command::new(&browser)
            .args(["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run"])
            .args(extra)
            .arg(&page)
            .output()
            .unwrap_or_else(|e| {
                panic!("{browser} could not be started ({e}); install Debian's chromium or set MESHMIG_SKIP_CHROMIUM=1")
            });
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    let dom = String::from_utf8(run(&["--dump-dom"]).stdout).unwrap();
    for id in ["A1", "C6", "F3", "G4", "H2"] {
        assert!(
            dom.contains(&format!("id=\"step-{id}\"")),
            "{id} not in the rendered DOM"
        );
    }
    assert!(
        dom.matches("<svg").count() >= plots,
        "plots not in the rendered DOM"
    );
    let shot = tempfile::tempdir().unwrap();
    let png = shot.path().join("report.png");
    run(&[
        &format!("--screenshot={}", png.display()),
        "--window-size=1000,1400",
    ]);
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.len() > 10_000, "screenshot of {} bytes", bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}
