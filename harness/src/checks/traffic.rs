//! Checks through the data plane: the home page, the traffic split (sampled), and the continuous
//! load.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::json;

use super::{CheckResult, Ctx, R};
use crate::sampler::{self, Target};
use crate::stats::{self, SplitTest};
use meshmig_backends::{Backend, BackendError};
use meshmig_core::footer::{self, FooterState};
use meshmig_core::identity::{Extractor, Identifier, Identify};
use meshmig_core::scenario::Scenario;
/// The page answers with `status` and a footer that identifies who served it.
pub async fn home_page(ctx: &Ctx<'_>, url: &str, status: u16) -> R {
    let client = sampler::client(&Target {
        url: url.into(),
        host: None,
        resolve: vec![],
        dns: None,
    })
    .map_err(|e| BackendError::infra(format!("fetching {url}"), meshmig_core::error_chain(&e)))?;
    // On backends where changes reach the data plane after the action returns, ask again until
    // the page is as expected or the backend's convergence time has passed (as a person would
    // reload); every earlier answer is kept as evidence.
    let deadline = tokio::time::Instant::now() + ctx.backend.convergence();
    let mut earlier: Vec<String> = Vec::new();
    let (got, body) = loop {
        let answer = match client.get(url).send().await {
            Ok(r) => Ok((r.status().as_u16(), r.text().await.unwrap_or_default())),
            Err(e) => Err(meshmig_core::error_chain(&e)),
        };
        let good = matches!(&answer, Ok((g, b)) if *g == status
            && matches!(footer::parse(b), Ok(f) if f.state == FooterState::Identified));
        if good || tokio::time::Instant::now() >= deadline {
            match answer {
                Ok(a) => break a,
                Err(e) => {
                    return Ok(CheckResult::new(
                        "home_page",
                        false,
                        format!("GET {url} answers {status} with an identifying footer"),
                        format!("no answer: {e}"),
                        json!({"earlier answers": earlier}),
                    ))
                }
            }
        }
        if earlier.len() < 20 {
            earlier.push(match &answer {
                Ok((g, _)) => format!("status {g}"),
                Err(e) => e.clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let f = footer::parse(&body);
    let identified = matches!(&f, Ok(f) if f.state == FooterState::Identified);
    Ok(CheckResult::new(
        "home_page",
        got == status && identified,
        format!("GET {url} answers {status} with an identifying footer"),
        format!(
            "status {got}, footer {}",
            match &f {
                Ok(f) => serde_json::to_string(f).unwrap_or_default(),
                Err(e) => e.to_string(),
            }
        ),
        json!({"status": got, "footer": f.as_ref().ok(), "title": body.contains("<title>Online Boutique</title>"), "earlier answers": earlier}),
    ))
}

/// Pod name → cluster, for footers that print only the pod.
async fn pod_map(ctx: &Ctx<'_>) -> Result<BTreeMap<String, String>, BackendError> {
    pods_by_cluster(ctx.backend, ctx.scenario).await
}

/// Pod name → cluster, for every pod of the scenario's running clusters (to attribute footers
/// that name a pod only).
pub async fn pods_by_cluster(
    backend: &dyn Backend,
    scenario: &Scenario,
) -> Result<BTreeMap<String, String>, BackendError> {
    let mut map = BTreeMap::new();
    let live = backend.clusters().await?;
    for c in &scenario.clusters {
        if !live.contains_key(&c.name) {
            continue;
        }
        for p in backend.kubernetes().list(&c.name, None, "Pod").await? {
            if let Some(n) = p["metadata"]["name"].as_str() {
                map.insert(n.to_string(), c.name.clone());
            }
        }
    }
    Ok(map)
}

/// How a split check samples and attributes answers.
#[derive(Debug, Clone, Copy)]
pub struct SplitHow<'a> {
    /// Through the scenario's domain, resolved by the users' resolver.
    pub via_domain: bool,
    /// Share of failed answers tolerated (None: the run's).
    pub error_budget: Option<f64>,
    /// The identity extractor, parsed when the scenario was read (None: the footer).
    pub identify: Option<&'a Identify>,
    /// Values read → cluster names.
    pub names: &'a BTreeMap<String, String>,
}

/// Who served an answer, as a split check reads it: the extractor, the scenario's names, and for
/// the footer the backend's real cluster names and the run's pods.
async fn identifier(ctx: &Ctx<'_>, how: &SplitHow<'_>) -> Result<Identifier, BackendError> {
    let extractor: Extractor = match how.identify {
        None => Extractor::Footer,
        Some(i) => i
            .extractor()
            .map_err(|e| BackendError::infra("reading the split's identity extractor", e))?
            .clone(),
    };
    let (mut names, pods) = match extractor {
        Extractor::Footer => (ctx.backend.real_cluster_names(), pod_map(ctx).await?),
        _ => (BTreeMap::new(), BTreeMap::new()),
    };
    names.extend(how.names.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(Identifier {
        extractor,
        names,
        pods,
    })
}

/// Sampled traffic splits between clusters as expected (sequential test, see `stats`).
pub async fn split(
    ctx: &Ctx<'_>,
    url: &str,
    expect: &BTreeMap<String, f64>,
    how: SplitHow<'_>,
) -> R {
    let SplitHow {
        via_domain,
        error_budget,
        ..
    } = how;
    let id = identifier(ctx, &how).await?;
    let target = Target {
        url: url.to_string(),
        host: None,
        resolve: vec![],
        dns: via_domain.then(|| ctx.clients.clone()),
    };
    let domain = &ctx.scenario.dns.domain;
    let held_before = via_domain.then(|| ctx.clients.held(domain)).flatten();
    let params = stats::SplitParams {
        max_error_rate: error_budget.unwrap_or(ctx.params.max_error_rate),
        ..*ctx.params
    };
    let mut test = SplitTest::new(expect, params);
    let bar = ctx
        .progress
        .then(|| progress_bar(ctx.params.max_requests, url));
    let s = sampler::sample_until(&target, &mut test, ctx.pace, &id, bar.as_ref())
        .await
        .map_err(|e| {
            BackendError::infra(format!("sampling {url}"), meshmig_core::error_chain(&e))
        })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let verdict = test.verdict();
    let expected = expect
        .iter()
        .map(|(k, v)| format!("{k} {v}%"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(CheckResult::new(
        "split",
        verdict.ok(),
        format!(
            "{expected} of requests to {url}{}{}{}",
            match &id.extractor {
                Extractor::Footer => String::new(),
                other => format!(", each attributed by {other}"),
            },
            if via_domain {
                " (resolved by the users' resolver, which holds answers for their TTL)"
            } else {
                ""
            },
            if params.max_error_rate > 0.0 {
                format!(
                    ", at most {}% of them failing",
                    params.max_error_rate * 100.0
                )
            } else {
                String::new()
            }
        ),
        format!(
            "{}; {}{}",
            describe_shares(&verdict),
            describe_decision(&verdict.decision),
            match &held_before {
                Some(h) => format!(
                    "; when sampling began, clients held {domain} A {} (TTL {} s, {:.2} s left at DNS time scale {})",
                    h.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
                    h.ttl,
                    h.remaining_seconds,
                    ctx.clients.scale()
                ),
                None => String::new(),
            }
        ),
        json!({"requests": s.requests, "seconds": s.seconds, "counts": s.counts, "errors": s.errors,
               "error_budget": params.max_error_rate,
               "error_examples": s.error_examples, "test": verdict.statement, "decision": verdict.decision,
               "shares": verdict.shares, "trace": test.trace(),
               "clients' resolver": via_domain.then(|| json!({"held at the start": held_before,
                                                              "ttl_scale": ctx.clients.scale()}))}),
    ))
}

/// The continuous load stayed within its error budget (the engine judges it after the steps).
pub fn continuous_load(l: &crate::load::LoadReport) -> CheckResult {
    CheckResult::new(
        "continuous_load",
        l.ok,
        format!(
            "at most {} of the load's requests to fail ({} a second from {}{})",
            l.error_budget,
            l.rate,
            l.url,
            l.via_domain_after
                .as_ref()
                .map(|d| format!(", through the domain after {d}"))
                .unwrap_or_default()
        ),
        crate::load::render(l),
        json!({"requests": l.requests, "errors": l.errors, "error_windows": l.error_windows,
               "time_to_effect": l.time_to_effect}),
    )
}

/// Counts, shares and intervals in one line.
pub fn describe_shares(v: &stats::SplitVerdict) -> String {
    let mut parts: Vec<String> = v
        .shares
        .iter()
        .map(|(k, s)| {
            format!(
                "{k} {} ({:.1}%, {:.1}–{:.1}%)",
                s.count,
                s.observed * 100.0,
                s.interval.0 * 100.0,
                s.interval.1 * 100.0
            )
        })
        .collect();
    parts.push(format!("errors {}", v.errors));
    parts.join(", ")
}

/// The decision in words.
pub fn describe_decision(d: &stats::Decision) -> String {
    match d {
        stats::Decision::Continue => "no decision".into(),
        stats::Decision::Consistent => "consistent".into(),
        stats::Decision::Inconsistent(r) => format!("inconsistent: {r}"),
        stats::Decision::Undecided(r) => format!("undecided: {r}"),
    }
}

/// A progress bar on stderr for a sampling run.
pub fn progress_bar(n: u64, what: &str) -> indicatif::ProgressBar {
    let b =
        indicatif::ProgressBar::with_draw_target(Some(n), indicatif::ProgressDrawTarget::stderr());
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "  sampling {msg} [{bar:30}] {pos}/{len} {per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_message(what.to_string());
    b
}

/// Parses an address variable (`ReadIngressIp` results, DNS records).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}
