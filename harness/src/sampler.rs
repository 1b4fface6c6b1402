//! Sampling user traffic: independent `GET /` requests, each answer read by an identity extractor
//! ([`meshmig_core::identity`]; Online Boutique's footer by default) to find who served it.
//!
//! No cookie is kept between requests (the reqwest client has no cookie store), so every request
//! is a new user. When sampling an address, connections are kept alive (Envoy picks a destination
//! per request, not per connection). When sampling a domain, the domain is resolved through the
//! scenario's DNS server by a caching resolver that honours the record's TTL, and connections are
//! not reused, so a changed record takes effect when its TTL runs out, as for a real user.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::stats::SplitTest;
use meshmig_core::identity::{Identifier, Page, Unattributed};

/// Errors setting up sampling.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client for {target}")]
    Client {
        /// What was to be sampled.
        target: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
}

/// What to sample.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL.
    pub url: String,
    /// A Host header to send instead of the URL's.
    pub host: Option<String>,
    /// Fixed resolutions (`--resolve DOMAIN:PORT:ADDR`).
    pub resolve: Vec<(String, SocketAddr)>,
    /// The clients' resolver to resolve the URL's domain through (TTL honoured, for the run).
    pub dns: Option<Arc<meshmig_core::dns::ClientResolver>>,
}

/// How one answer is attributed.
pub trait Identify: Send + Sync {
    /// The destination that served this page, or why it cannot be told (cause, example).
    fn identify(&self, page: &Page) -> Result<String, Unattributed>;
}

impl Identify for Identifier {
    fn identify(&self, page: &Page) -> Result<String, Unattributed> {
        Identifier::identify(self, page)
    }
}

/// What sampling saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Samples {
    /// Identified answers per destination.
    pub counts: BTreeMap<String, u64>,
    /// Failed or unidentifiable answers per cause (`status 503`, `timeout`, `no identity`...).
    pub errors: BTreeMap<String, u64>,
    /// An example of each error cause (footer or message).
    pub error_examples: BTreeMap<String, String>,
    /// Requests sent.
    pub requests: u64,
    /// Time taken.
    pub seconds: f64,
}

impl Samples {
    /// All error answers.
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

struct ClientResolve(Arc<meshmig_core::dns::ClientResolver>);

impl reqwest::dns::Resolve for ClientResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let r = self.0.clone();
        Box::pin(async move {
            let ips = r.resolve(name.as_str()).await?;
            let addrs: reqwest::dns::Addrs = Box::new(
                ips.into_iter()
                    .map(|ip| SocketAddr::new(ip.into(), 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

/// A client for a target.
pub fn client(target: &Target) -> Result<reqwest::Client, SamplerError> {
    client_waiting(target, None)
}

/// A client for a target whose requests may take up to `patience` in all (None: the split
/// checks' 5 s, more when the domain is resolved).
pub fn client_waiting(
    target: &Target,
    patience: Option<Duration>,
) -> Result<reqwest::Client, SamplerError> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    for (domain, addr) in &target.resolve {
        b = b.resolve(domain, *addr);
    }
    if let Some(dns) = &target.dns {
        // reqwest's connect timeout covers the look-up too: leave the resolver its own budget,
        // so that a DNS server that does not answer shows as a resolution failure.
        b = b
            .dns_resolver(Arc::new(ClientResolve(dns.clone())))
            .pool_max_idle_per_host(0)
            .connect_timeout(meshmig_core::dns::RESOLVE_BUDGET + Duration::from_secs(2))
            .timeout(meshmig_core::dns::RESOLVE_BUDGET + Duration::from_secs(5));
    }
    if let Some(p) = patience {
        b = b.timeout(p);
    }
    b.build().map_err(|source| SamplerError::Client {
        target: target.url.clone(),
        source,
    })
}

enum Answer {
    Served(String),
    Error(String, String),
}

/// Whether a request failed because the users' resolver had no answer (the scenario's DNS
/// server failed or is gone), rather than at the address it resolved to.
fn resolution_failed(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<meshmig_core::dns::DnsError>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

/// One user's request: the page served (a 2xx answer), or the error's cause (`status 503`,
/// `timeout`, `name resolution failed`...) and an example (the message, or what the answer says
/// went wrong: [`meshmig_core::identity::error_example`]).
pub async fn fetch(client: &reqwest::Client, target: &Target) -> Result<Page, Unattributed> {
    let mut req = client.get(&target.url);
    if let Some(h) = &target.host {
        req = req.header(reqwest::header::HOST, h);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let cause = if resolution_failed(&e) {
                "name resolution failed"
            } else if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            return Err((cause.into(), meshmig_core::error_chain(&e)));
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    let body = String::from_utf8_lossy(&bytes);
    if !status.is_success() {
        return Err((
            format!("status {}", status.as_u16()),
            meshmig_core::identity::error_example(&body),
        ));
    }
    Ok(Page {
        headers,
        body: body.into_owned(),
    })
}

async fn one(client: &reqwest::Client, target: &Target, id: &dyn Identify) -> Answer {
    match fetch(client, target).await.and_then(|p| id.identify(&p)) {
        Ok(dest) => Answer::Served(dest),
        Err((cause, example)) => Answer::Error(cause, example),
    }
}

/// How fast to sample.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// At most this many requests a second (None: as fast as answers come).
    pub rate: Option<f64>,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            concurrency: 8,
            rate: None,
        }
    }
}

/// Samples until `test` decides. Requests go out `pace.concurrency` at a time; answers are fed
/// to the test in the order the requests were issued.
pub async fn sample_until(
    target: &Target,
    test: &mut SplitTest,
    pace: Pace,
    id: &dyn Identify,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Samples, SamplerError> {
    let client = client(target)?;
    let start = Instant::now();
    let mut out = Samples::default();
    let limiter = pace.rate.filter(|r| *r > 0.0).map(|r| {
        let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::sync::Mutex::new(i)
    });
    let limiter = &limiter;
    let client = &client;
    let mut answers = stream::iter(0u64..)
        .map(|_| async move {
            if let Some(l) = limiter {
                l.lock().await.tick().await;
            }
            one(client, target, id).await
        })
        .buffered(pace.concurrency.max(1));
    while let Some(a) = answers.next().await {
        out.requests += 1;
        let decision = match a {
            Answer::Served(d) => {
                *out.counts.entry(d.clone()).or_default() += 1;
                test.observe(Some(&d)).is_final()
            }
            Answer::Error(cause, example) => {
                *out.errors.entry(cause.clone()).or_default() += 1;
                out.error_examples.entry(cause).or_insert(example);
                test.observe(None).is_final()
            }
        };
        if let Some(p) = progress {
            p.inc(1);
        }
        if decision {
            break;
        }
    }
    out.seconds = start.elapsed().as_secs_f64();
    Ok(out)
}
