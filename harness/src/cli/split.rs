//! `meshmig split`: checks a live split anywhere, from the command line's flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{bail, Context};

use super::args::SplitArgs;
use meshmig::exit;
use meshmig::identity::Identifier;
use meshmig::sampler::{self, Target};
use meshmig::stats::SplitTest;

pub fn parse_expect(s: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut m = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            bail!("--expect: {part:?} is not NAME=PCT")
        };
        let pct: f64 = v
            .trim_end_matches('%')
            .parse()
            .with_context(|| format!("--expect: {v:?} is not a number"))?;
        m.insert(k.to_string(), pct);
    }
    let total: f64 = m.values().sum();
    if (total - 100.0).abs() > 1e-9 {
        bail!("--expect: percentages sum to {total}, not 100");
    }
    Ok(m)
}

/// How `meshmig split` tells who served an answer (its `--identify`, `--pod` and `--name`).
pub struct Who {
    pub identify: String,
    pub pods: Vec<String>,
    pub names: Vec<String>,
}

pub async fn split(
    url: String,
    expect: &str,
    host: Option<String>,
    resolve: Vec<String>,
    who: Who,
    args: SplitArgs,
    json: bool,
) -> anyhow::Result<i32> {
    let expect = match parse_expect(expect) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("meshmig: {e:#}");
            return Ok(exit::INVALID_INPUT);
        }
    };
    let mut fixed = Vec::new();
    for r in resolve {
        let mut parts = r.splitn(3, ':');
        let (Some(d), Some(p), Some(a)) = (parts.next(), parts.next(), parts.next()) else {
            eprintln!("meshmig: --resolve {r:?} is not DOMAIN:PORT:ADDR");
            return Ok(exit::INVALID_INPUT);
        };
        let addr: SocketAddr = format!("{a}:{p}")
            .parse()
            .with_context(|| format!("--resolve {r}"))?;
        fixed.push((d.to_string(), addr));
    }
    let extractor = match who.identify.parse() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("meshmig: --identify: {}", meshmig::error_chain(&e));
            return Ok(exit::INVALID_INPUT);
        }
    };
    let mut id = Identifier {
        extractor,
        ..Default::default()
    };
    for p in who.pods {
        let Some((c, pod)) = p.split_once('=') else {
            eprintln!("meshmig: --pod {p:?} is not CLUSTER=POD");
            return Ok(exit::INVALID_INPUT);
        };
        id.pods.insert(pod.to_string(), c.to_string());
    }
    for n in who.names {
        let Some((value, dest)) = n.rsplit_once('=') else {
            eprintln!("meshmig: --name {n:?} is not VALUE=DEST");
            return Ok(exit::INVALID_INPUT);
        };
        id.names.insert(value.to_string(), dest.to_string());
    }
    let params = args.params();
    let target = Target {
        url: url.clone(),
        host,
        resolve: fixed,
        dns: None,
    };
    let mut test = SplitTest::new(&expect, params);
    let bar = meshmig::checks::progress_bar(params.max_requests, &url);
    let s = sampler::sample_until(&target, &mut test, args.pace(), &id, Some(&bar)).await?;
    bar.finish_and_clear();
    let v = test.verdict();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"verdict": v, "samples": s, "identify": id.extractor.to_string()})
            )?
        );
    } else {
        println!(
            "{} {url}: {} requests in {:.2}s ({:.0}/s)",
            if v.ok() {
                "CONSISTENT"
            } else {
                "NOT CONSISTENT"
            },
            s.requests,
            s.seconds,
            s.requests as f64 / s.seconds.max(1e-9)
        );
        println!(
            "  decision: {}",
            meshmig::checks::describe_decision(&v.decision)
        );
        for (k, sh) in &v.shares {
            println!(
                "  {k}: {} ({:.2}%, expected {:.2}%, {:.2}–{:.2}% at {}% confidence)",
                sh.count,
                sh.observed * 100.0,
                sh.expected * 100.0,
                sh.interval.0 * 100.0,
                sh.interval.1 * 100.0,
                (1.0 - params.alpha) * 100.0
            );
        }
        for (cause, n) in &s.errors {
            println!(
                "  error {cause}: {n} (e.g. {})",
                s.error_examples.get(cause).cloned().unwrap_or_default()
            );
        }
        println!("  test: {}", v.statement);
    }
    Ok(if v.ok() {
        exit::PASS
    } else {
        exit::ASSERTION_FAILED
    })
}
