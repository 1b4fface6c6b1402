//! Continuous load: steady user traffic through the migration, as the shop's users would send it
//! while the operator moves traffic (issue 12).
//!
//! A background task sends `rate` requests a second (each a new user: no cookie) to the Istio
//! ingress, and through the domain once the cut-over has begun, and records every answer: when
//! it was sent, the step in progress, who served it (the footer's cluster, or its pod resolved
//! to a cluster afterwards) or why it failed. At the end of the run the record is judged:
//!
//! - **errors**: more failed requests than the scenario's budget fail the run; failures are
//!   grouped into windows (failures less than a second apart) with the steps in progress;
//! - **timeline**: per second, the answers per cluster and the errors;
//! - **time to effect**: for every routing change (a VirtualService applied, the A record moved
//!   to another address), when after the change the new split was first observed (the first
//!   answer from a cluster the old split gave nothing) and when it was established (after the
//!   last answer from a cluster the new split gives nothing; for a change of shares only, the
//!   first run of [`WINDOW`] answers consistent with the new split).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::sampler::{self, Target};

/// Errors starting the load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The HTTP client could not be built.
    #[error("starting the continuous load on {url}")]
    Client {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: sampler::SamplerError,
    },
}

/// Answers in a row that must agree with a new split that takes no cluster to 0% for it to
/// count as established.
pub const WINDOW: usize = 50;

/// Requests in flight at most (a slow answer does not hold the next ones back).
const IN_FLIGHT: usize = 2048;

/// How long a user waits for an answer: one within 30 s counts as served (a browser waits
/// longer), so a machine starved for a moment is not taken for a failed migration. The split
/// checks keep their 5 s.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// One request of the load.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    /// When it was sent, in seconds after the run started.
    pub t: f64,
    /// The step in progress then.
    pub step: String,
    /// Who served it, as the footer says (cluster name, or pod name when the footer has no
    /// cluster), or None for an error.
    pub served: Option<String>,
    /// The error's cause (`status 503`, `timeout`...), for an error.
    pub error: Option<String>,
    /// An example of the error (the message, or what the answer says went wrong).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
}

/// The running load.
pub struct Load {
    target: tokio::sync::watch::Sender<Option<Target>>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Load {
    /// Starts sending `rate` requests a second to `target`; `step` is read for each request.
    pub fn start(
        target: Target,
        rate: f64,
        step: Arc<Mutex<String>>,
        t0: Instant,
    ) -> Result<Self, LoadError> {
        let client = sampler::client_waiting(&target, Some(PATIENCE)).map_err(|source| {
            LoadError::Client {
                url: target.url.clone(),
                source,
            }
        })?;
        let (tx, mut rx) = tokio::sync::watch::channel(Some(target.clone()));
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            // The client and the target change together: a request for the domain must go
            // through the users' resolver, never the system's.
            let (mut client, mut current) = (client, target);
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut flight = FuturesUnordered::new();
            loop {
                tokio::select! {
                    changed = rx.changed() => {
                        let next = rx.borrow_and_update().clone();
                        match (changed, next) {
                            (Ok(()), Some(t)) => {
                                if let Ok(c) = sampler::client_waiting(&t, Some(PATIENCE)) {
                                    (client, current) = (c, t);
                                }
                            }
                            _ => break,
                        }
                    }
                    _ = tick.tick(), if flight.len() < IN_FLIGHT => {
                        let target = current.clone();
                        let c = client.clone();
                        let t = t0.elapsed().as_secs_f64();
                        let s = step.lock().expect("step lock is never poisoned").clone();
                        flight.push(async move {
                            let answer = sampler::fetch(&c, &target)
                                .await
                                .and_then(|p| meshmig_core::identity::footer_of(&p));
                            let (served, error, example) = match answer {
                                Ok(f) => match f.cluster.clone().or(f.pod.clone()) {
                                    Some(who) => (Some(who), None, None),
                                    None => {
                                        let (cause, ex) = meshmig_core::identity::unidentified(&f);
                                        (None, Some(cause), Some(ex))
                                    }
                                },
                                Err((cause, ex)) => (None, Some(cause), Some(ex)),
                            };
                            Sample { t, step: s, served, error, example }
                        });
                    }
                    Some(done) = flight.next(), if !flight.is_empty() => samples.push(done),
                }
            }
            while let Some(done) = flight.next().await {
                samples.push(done);
            }
            samples.sort_by(|a, b| a.t.total_cmp(&b.t));
            samples
        });
        Ok(Self { target: tx, task })
    }

    /// Sends the following requests to `target` instead (the cut-over to the domain).
    pub fn switch(&self, target: Target) {
        let _ = self.target.send(Some(target));
    }

    /// Stops sending, waits for the answers in flight, and returns every sample in the order
    /// sent.
    pub async fn stop(self) -> Vec<Sample> {
        let _ = self.target.send(None);
        self.task.await.unwrap_or_default()
    }
}

/// A routing change the load measures: when it happened and the split expected after it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    /// The step that made it.
    pub step: String,
    /// What changed (`VirtualService applied`, `A record → ADDRESS`).
    pub what: String,
    /// When the step's action ended, in seconds after the run started.
    pub at: f64,
    /// The split expected before (percent per cluster).
    pub before: BTreeMap<String, f64>,
    /// The split expected after.
    pub after: BTreeMap<String, f64>,
    /// For a DNS change: how long the users' resolver could still hold the old answer, in
    /// seconds (the TTL it held, at the run's DNS time scale): the bound on its time to effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_at_most: Option<f64>,
}

/// A routing change the scenario makes, known before the run: the step, what it changes, and
/// the split expected before and after it (read from the split checks around it).
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The step.
    pub step: String,
    /// What changes.
    pub what: String,
    /// The split expected before.
    pub before: BTreeMap<String, f64>,
    /// The split expected after.
    pub after: BTreeMap<String, f64>,
}

/// The scenario's routing changes: steps that apply routes (they check `routes`) and steps that
/// move the A record to another address. The split before is the last split check before the
/// step; after, the first from the step on that samples the same way (the ingress address for
/// routes, the domain for DNS).
pub fn plan(s: &meshmig_core::scenario::Scenario) -> Vec<Planned> {
    use meshmig_core::scenario::{Action, Check};
    let splits: Vec<(usize, bool, &BTreeMap<String, f64>)> = s
        .steps
        .iter()
        .enumerate()
        .flat_map(|(i, st)| {
            st.check.iter().filter_map(move |c| match c {
                Check::Split {
                    via_domain, expect, ..
                } => Some((i, *via_domain, expect)),
                _ => None,
            })
        })
        .collect();
    let mut out = Vec::new();
    let mut address: Option<&str> = None;
    for (i, st) in s.steps.iter().enumerate() {
        let change = match &st.run {
            Some(Action::DnsSetRecord { address: a, .. }) => {
                let moved = address.is_some_and(|old| old != a);
                address = Some(a);
                moved.then(|| (format!("A record → {a}"), true))
            }
            Some(Action::Apply { .. })
                if st.check.iter().any(|c| matches!(c, Check::Routes { .. })) =>
            {
                Some(("VirtualService applied".to_string(), false))
            }
            _ => None,
        };
        let Some((what, dns)) = change else { continue };
        let before = splits.iter().rev().find(|(j, _, _)| *j < i);
        let after = splits.iter().find(|(j, d, _)| *j >= i && *d == dns);
        if let (Some(b), Some(a)) = (before, after) {
            out.push(Planned {
                step: st.id.clone(),
                what,
                before: b.2.clone(),
                after: a.2.clone(),
            });
        }
    }
    out
}

/// A change's time to effect.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Effect {
    /// The change.
    #[serde(flatten)]
    pub change: Change,
    /// Seconds after the change until the first answer from a cluster the old split gave
    /// nothing (None: no such cluster, or never seen).
    pub first_observed_after: Option<f64>,
    /// Seconds after the change until [`WINDOW`] answers in a row agreed with the new split
    /// (None: not within the answers before the next change).
    pub established_after: Option<f64>,
    /// Answers between this change and the next.
    pub answers: u64,
}

/// Failed requests close together.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorWindow {
    /// First failure, seconds after the run started.
    pub from: f64,
    /// Last failure.
    pub to: f64,
    /// Failures in it.
    pub count: u64,
    /// By cause.
    pub causes: BTreeMap<String, u64>,
    /// The steps in progress.
    pub steps: Vec<String>,
    /// An example.
    pub example: String,
}

/// One second of the load.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    /// Its start, seconds after the run started.
    pub t: f64,
    /// Steps in progress.
    pub steps: Vec<String>,
    /// Answers per cluster.
    pub served: BTreeMap<String, u64>,
    /// Failed requests.
    pub errors: u64,
}

/// The load's record, judged.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoadReport {
    /// Where it started.
    pub url: String,
    /// When it went through the domain (the step after which it did).
    pub via_domain_after: Option<String>,
    /// Requests a second.
    pub rate: f64,
    /// Requests sent.
    pub requests: u64,
    /// Requests failed.
    pub errors: u64,
    /// Failed requests allowed.
    pub error_budget: u64,
    /// Whether the errors are within the budget.
    pub ok: bool,
    /// The failures, grouped.
    pub error_windows: Vec<ErrorWindow>,
    /// Per second.
    pub timeline: Vec<Bucket>,
    /// Every routing change's time to effect.
    pub time_to_effect: Vec<Effect>,
}

/// A sample resolved: when, the step, and the cluster that served it or (cause, example).
type Resolved<'a> = (f64, &'a str, Result<String, (&'a str, &'a str)>);

/// Judges the samples: `cluster_of` maps what a footer named to a cluster.
pub fn judge(
    url: &str,
    samples: &[Sample],
    cluster_of: &dyn Fn(&str) -> Option<String>,
    changes: &[Change],
    spec: &meshmig_core::scenario::ContinuousLoad,
) -> LoadReport {
    let resolved: Vec<Resolved> = samples
        .iter()
        .map(|s| {
            let who = match (&s.served, &s.error) {
                (Some(w), _) => cluster_of(w).ok_or(("unknown cluster or pod", w.as_str())),
                (None, e) => Err((
                    e.as_deref().unwrap_or("error"),
                    s.example.as_deref().unwrap_or(""),
                )),
            };
            (s.t, s.step.as_str(), who)
        })
        .collect();
    let errors = resolved.iter().filter(|r| r.2.is_err()).count() as u64;

    let mut error_windows: Vec<ErrorWindow> = Vec::new();
    for (t, step, r) in &resolved {
        let Err((cause, example)) = r else { continue };
        match error_windows.last_mut() {
            Some(w) if t - w.to < 1.0 => {
                w.to = *t;
                w.count += 1;
                *w.causes.entry(cause.to_string()).or_default() += 1;
                if w.steps.last().map(String::as_str) != Some(step) {
                    w.steps.push(step.to_string());
                }
            }
            _ => error_windows.push(ErrorWindow {
                from: *t,
                to: *t,
                count: 1,
                causes: [(cause.to_string(), 1)].into(),
                steps: vec![step.to_string()],
                example: example.to_string(),
            }),
        }
    }

    let mut timeline: Vec<Bucket> = Vec::new();
    for (t, step, r) in &resolved {
        let second = t.floor();
        if timeline.last().is_none_or(|b| b.t != second) {
            timeline.push(Bucket {
                t: second,
                steps: Vec::new(),
                served: BTreeMap::new(),
                errors: 0,
            });
        }
        let b = timeline.last_mut().expect("pushed above");
        if !b.steps.iter().any(|s| s == step) {
            b.steps.push(step.to_string());
        }
        match r {
            Ok(c) => *b.served.entry(c.clone()).or_default() += 1,
            Err(_) => b.errors += 1,
        }
    }

    let served: Vec<(f64, Option<&str>)> = resolved
        .iter()
        .map(|(t, _, r)| (*t, r.as_ref().ok().map(String::as_str)))
        .collect();
    let time_to_effect = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| served.first().is_some_and(|(t0, _)| c.at >= *t0))
        .map(|(i, c)| effect(c, &served, changes.get(i + 1).map(|n| n.at)))
        .collect();

    LoadReport {
        url: url.to_string(),
        via_domain_after: spec.via_domain_after.clone(),
        rate: spec.rate,
        requests: samples.len() as u64,
        errors,
        error_budget: spec.error_budget,
        ok: errors <= spec.error_budget,
        error_windows,
        timeline,
        time_to_effect,
    }
}

/// Whether `window` (clusters that served, None for errors) agrees with `expect` (percent): no
/// answer from a cluster expected at 0%, an answer from every other, each share within 3 standard
/// errors (at least 10 points) of its expectation.
fn consistent(window: &[Option<&str>], expect: &BTreeMap<String, f64>) -> bool {
    let n = window.len() as f64;
    let mut counts: BTreeMap<&str, f64> = BTreeMap::new();
    for w in window.iter().flatten() {
        *counts.entry(w).or_default() += 1.0;
    }
    if counts
        .keys()
        .any(|c| expect.get(*c).copied().unwrap_or(0.0) == 0.0)
    {
        return false;
    }
    expect.iter().filter(|(_, p)| **p > 0.0).all(|(c, p)| {
        let p = p / 100.0;
        let seen = counts.get(c.as_str()).copied().unwrap_or(0.0);
        seen > 0.0 && (seen / n - p).abs() <= (3.0 * (p * (1.0 - p) / n).sqrt()).max(0.10)
    })
}

/// A change's time to effect over the answers sent from its time until `until` (the next change).
///
/// First observed: the first answer from a cluster the old split gave nothing. Established: where
/// the change takes clusters to 0%, the first answer after the last one they served (every answer
/// from then on fits the new split); otherwise the start of the first [`WINDOW`] answers in a
/// row consistent with it.
fn effect(c: &Change, served: &[(f64, Option<&str>)], until: Option<f64>) -> Effect {
    let after: Vec<(f64, &str)> = served
        .iter()
        .filter(|(t, _)| *t >= c.at && until.is_none_or(|u| *t < u))
        .filter_map(|(t, w)| w.map(|w| (*t, w)))
        .collect();
    let share = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let appeared: BTreeSet<&str> = c
        .after
        .keys()
        .filter(|k| share(&c.after, k) > 0.0 && share(&c.before, k) == 0.0)
        .map(String::as_str)
        .collect();
    let gone: BTreeSet<&str> = c
        .before
        .keys()
        .filter(|k| share(&c.before, k) > 0.0 && share(&c.after, k) == 0.0)
        .map(String::as_str)
        .collect();
    let first_observed_after = after
        .iter()
        .find(|(_, w)| appeared.contains(w))
        .map(|(t, _)| t - c.at);
    let established_after = if !gone.is_empty() {
        let last_old = after.iter().rposition(|(_, w)| gone.contains(w));
        let from = last_old.map_or(0, |i| i + 1);
        after.get(from).map(|(t, _)| t - c.at)
    } else {
        let whos: Vec<Option<&str>> = after.iter().map(|(_, w)| Some(*w)).collect();
        (0..whos.len().saturating_sub(WINDOW - 1))
            .find(|i| consistent(&whos[*i..*i + WINDOW], &c.after))
            .map(|i| after[i].0 - c.at)
    };
    // Not before the new split's first answer from a cluster new to it.
    let established_after = match (established_after, first_observed_after) {
        (Some(e), Some(f)) => Some(e.max(f)),
        (e, _) => e,
    };
    Effect {
        change: c.clone(),
        first_observed_after,
        established_after,
        answers: after.len() as u64,
    }
}

/// The report's text: totals, the error windows, and each change's time to effect.
pub fn render(r: &LoadReport) -> String {
    let mut s = format!(
        "{} requests at {}/s from {}{}: {} failed (budget {})",
        r.requests,
        r.rate,
        r.url,
        r.via_domain_after
            .as_ref()
            .map(|d| format!(", through the domain after {d}"))
            .unwrap_or_default(),
        r.errors,
        r.error_budget
    );
    for w in &r.error_windows {
        s.push_str(&format!(
            "\n  {} failed {:.2}–{:.2} s during {}: {} (e.g. {})",
            w.count,
            w.from,
            w.to,
            w.steps.join(", "),
            w.causes
                .iter()
                .map(|(c, n)| format!("{c} ×{n}"))
                .collect::<Vec<_>>()
                .join(", "),
            w.example
        ));
    }
    for e in &r.time_to_effect {
        let secs = |v: Option<f64>| v.map_or("never".into(), |v| format!("{v:.2} s"));
        s.push_str(&format!(
            "\n  {} ({}): new split first seen after {}, established after {}{}",
            e.change.step,
            e.change.what,
            if e.first_observed_after.is_none()
                && e.change.after.iter().all(|(k, p)| {
                    *p == 0.0 || e.change.before.get(k).copied().unwrap_or(0.0) > 0.0
                })
            {
                "— (no cluster new to it)".to_string()
            } else {
                secs(e.first_observed_after)
            },
            e.established_after.map_or_else(
                || format!(
                    "— (not within the {} answers before the next change)",
                    e.answers
                ),
                |v| format!("{v:.2} s")
            ),
            e.change
                .held_at_most
                .map(|h| format!(" (clients could hold the old answer {h:.2} s more)"))
                .unwrap_or_default()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(budget: u64) -> meshmig_core::scenario::ContinuousLoad {
        meshmig_core::scenario::ContinuousLoad {
            start_after: "B6".into(),
            url: "http://ip/".into(),
            via_domain_after: None,
            stop_before: None,
            rate: 10.0,
            error_budget: budget,
        }
    }

    fn sample(t: f64, step: &str, who: Option<&str>) -> Sample {
        Sample {
            t,
            step: step.into(),
            served: who.map(str::to_string),
            error: who.is_none().then(|| "status 503".into()),
            example: who.is_none().then(|| "upstream connect error".into()),
        }
    }

    fn pct(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    /// A request through the domain goes through the users' resolver from the moment the load
    /// switches to it, never through the system's (which does not know the test domain): the
    /// client and the target change together. Switched back and forth under load.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_switch_to_the_domain_every_request_uses_the_users_resolver() {
        use meshmig_backends::frontend::{Frontend, Identity, HOME_PAGE_DEPENDENCIES};
        let ready: meshmig_backends::frontend::ReadyServices = Default::default();
        for d in HOME_PAGE_DEPENDENCIES {
            ready.write().unwrap().insert(("ns".into(), d.into()));
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let f = Frontend::start(
            addr,
            Identity {
                cluster: "a".into(),
                zone: "z".into(),
                pod: "frontend-1".into(),
                namespace: "ns".into(),
                variant: meshmig_core::scenario::FooterVariant::Gke,
            },
            ready,
        )
        .await
        .unwrap();
        let dns =
            meshmig_core::dns::DnsServer::start(std::net::Ipv4Addr::LOCALHOST, "shop.example")
                .await
                .unwrap();
        dns.set_a("shop.example", std::net::Ipv4Addr::LOCALHOST, 300)
            .await
            .unwrap();
        let clients = Arc::new(meshmig_core::dns::ClientResolver::new(dns.addr(), 1.0));
        let by_ip = Target {
            url: format!("http://{addr}/"),
            host: None,
            resolve: vec![],
            dns: None,
        };
        let by_domain = Target {
            url: format!("http://shop.example:{}/", addr.port()),
            host: None,
            resolve: vec![],
            dns: Some(clients),
        };
        let load = Load::start(
            by_ip.clone(),
            1000.0,
            Arc::new(Mutex::new("X".into())),
            Instant::now(),
        )
        .unwrap();
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(15)).await;
            load.switch(if i % 2 == 0 {
                by_domain.clone()
            } else {
                by_ip.clone()
            });
        }
        let samples = load.stop().await;
        f.stop().await;
        dns.stop().await;
        let failed: Vec<&Sample> = samples.iter().filter(|s| s.served.is_none()).collect();
        assert!(samples.len() > 100, "{} samples", samples.len());
        assert!(
            failed.is_empty(),
            "{} of {} failed, e.g. {:?}",
            failed.len(),
            samples.len(),
            failed.first()
        );
    }

    /// Errors are counted against the budget and grouped into windows with their steps.
    #[test]
    fn errors_beyond_the_budget_fail_naming_their_window_and_step() {
        let mut s: Vec<Sample> = (0..20)
            .map(|i| sample(i as f64 * 0.1, "F1", Some("a")))
            .collect();
        s.push(sample(2.0, "F2", None));
        s.push(sample(2.1, "F2", None));
        s.push(sample(2.2, "F3", None));
        s.push(sample(9.0, "G1", None));
        let id = |w: &str| Some(w.to_string());
        let r = judge("http://ip/", &s, &id, &[], &spec(0));
        assert!(!r.ok);
        assert_eq!(r.errors, 4);
        assert_eq!(r.error_windows.len(), 2);
        let w = &r.error_windows[0];
        assert_eq!((w.from, w.to, w.count), (2.0, 2.2, 3));
        assert_eq!(w.steps, vec!["F2".to_string(), "F3".to_string()]);
        assert!(
            render(&r).contains(
                "3 failed 2.00–2.20 s during F2, F3: status 503 ×3 (e.g. upstream connect error)"
            ),
            "{}",
            render(&r)
        );
        assert!(judge("http://ip/", &s, &id, &[], &spec(4)).ok);
        assert_eq!(r.timeline.len(), 4);
        assert_eq!(r.timeline[0].served["a"], 10);
    }

    /// Time to effect: the first answer from the newly routed cluster; for a rollback, the first
    /// answer after the last one from the cluster taken to 0%; a change never established says so.
    #[test]
    fn time_to_effect_is_read_from_the_timeline() {
        // All from a until 5.5 s; the change at 5.0; from 5.5 on the answers alternate a, b.
        let s: Vec<Sample> = (0..300)
            .map(|i| {
                let t = i as f64 * 0.1;
                let who = if t >= 5.45 && i % 2 == 1 { "b" } else { "a" };
                sample(t, "X", Some(who))
            })
            .collect();
        let change = Change {
            step: "F2".into(),
            what: "VirtualService applied".into(),
            at: 5.0,
            before: pct(&[("a", 100.0), ("b", 0.0)]),
            after: pct(&[("a", 50.0), ("b", 50.0)]),
            held_at_most: None,
        };
        let id = |w: &str| Some(w.to_string());
        let r = judge(
            "http://ip/",
            &s,
            &id,
            std::slice::from_ref(&change),
            &spec(0),
        );
        let e = &r.time_to_effect[0];
        assert!(
            (e.first_observed_after.unwrap() - 0.5).abs() < 1e-9,
            "{e:?}"
        );
        assert!(e.established_after.is_some(), "{e:?}");
        // A rollback at 20 s whose last answer from b comes at 24.9 s.
        let rollback = Change {
            step: "F5".into(),
            what: "VirtualService applied".into(),
            at: 20.0,
            before: pct(&[("a", 50.0), ("b", 50.0)]),
            after: pct(&[("a", 100.0), ("b", 0.0)]),
            held_at_most: None,
        };
        let s2: Vec<Sample> = s
            .iter()
            .cloned()
            .map(|mut x| {
                if x.t >= 25.0 {
                    x.served = Some("a".into());
                }
                x
            })
            .collect();
        let r = judge(
            "http://ip/",
            &s2,
            &id,
            &[change.clone(), rollback],
            &spec(0),
        );
        let e = &r.time_to_effect[1];
        assert_eq!(e.first_observed_after, None);
        assert!((e.established_after.unwrap() - 5.0).abs() < 1e-9, "{e:?}");
        // Expecting all of b, which never comes.
        let never = Change {
            after: pct(&[("a", 0.0), ("b", 100.0)]),
            ..change
        };
        let r = judge("http://ip/", &s, &id, &[never], &spec(0));
        assert!(render(&r).contains("established after"), "{}", render(&r));
        assert_eq!(
            r.time_to_effect[0].established_after.map(|t| t > 20.0),
            Some(true),
            "established only after the last answer from a, which is near the end"
        );
    }
}
