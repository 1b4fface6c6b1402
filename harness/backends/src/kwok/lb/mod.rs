//! Load balancers for a kwok cluster, as cloud-provider-kind provides them on kind.
//!
//! [`LoadBalancers::start`] runs a controller (one tokio task) that reconciles every
//! [`PERIOD`]:
//!
//! 1. **Addresses.** Every Service of type `LoadBalancer` (without a `loadBalancerClass`, which
//!    would name another controller) gets an address of the cluster's load-balancer range:
//!    from `base` to `.254` of its /24 (198.18.i.1–198.18.i.254 for cluster `i`). An address
//!    the Service's status already holds from this range is kept (a restarted controller adopts
//!    it), then `spec.loadBalancerIP` when it is in the range and free, else the lowest free
//!    address. An address in use is never given twice; an exhausted range is an error recorded
//!    for that Service, never a wrap into another cluster's range. The address is put on `lo`
//!    ([`claim_ip`](super::pods::claim_ip)) and written to `status.loadBalancer.ingress` (`ipMode: VIP`).
//! 2. **Forwarding.** Each TCP port of the Service is listened on at `ADDRESS:port`. Each
//!    accepted connection is forwarded (`copy_bidirectional`) to a ready endpoint of the
//!    Service, read afresh from its EndpointSlices (label `kubernetes.io/service-name`) for
//!    every connection, so scaling and pods going away are followed at once: IPv4 endpoints
//!    whose `conditions.ready` is not `false`, on the slice port named as the Service port (or
//!    the slice's only port when the Service port is unnamed), picked round-robin. A backend
//!    that refuses is skipped for the next one; with no ready endpoint the connection is reset,
//!    as a load balancer without a healthy backend does. UDP and SCTP ports are not served.
//! 3. **Removal.** A Service deleted, or no longer of type `LoadBalancer`, loses its listeners
//!    (their sockets are closed, open connections cut) and its address ([`release_ip`](super::pods::release_ip)); a
//!    Service that still exists has its status cleared.
//!
//! [`LoadBalancers::stop`] ends the controller, closes every socket, releases every address and
//! waits for all of it; the Services' statuses are left as they are (a controller started again
//! adopts them). What the controller did is kept as a short event log
//! ([`LoadBalancers::events`]), with errors among the events and, while unresolved, in
//! [`LoadBalancers::errors`].
//!
//! Everything happens in the run's network namespace ([`meshmig_core::netns`]): the addresses are local
//! there, and pods' IPs are reachable from it.

mod controller;
mod forward;
mod service;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::controller::Controller;
use super::pods::PodError;
use crate::kube::{Kube, KubeError};

/// How often the controller reconciles.
pub const PERIOD: Duration = Duration::from_millis(250);
/// How long one API call may take before it counts as failed.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to a backend may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How many events are kept (the oldest are dropped).
const MAX_EVENTS: usize = 1000;

/// What went wrong while providing load balancers (recorded, not returned: the controller
/// keeps reconciling).
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// Listing the cluster's Services failed.
    #[error("{doing}")]
    List {
        /// What was being done.
        doing: String,
        /// Why.
        #[source]
        source: KubeError,
    },
    /// An API call failed.
    #[error("{doing}")]
    Api {
        /// What was being done.
        doing: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// An API call did not answer in time.
    #[error("{doing}: no answer within {waited:?}")]
    Timeout {
        /// What was being done.
        doing: String,
        /// How long it was given.
        waited: Duration,
    },
    /// Every address of the range is in use.
    #[error("no free load-balancer address for {service}: all {size} addresses of {first}–{last} are in use")]
    Exhausted {
        /// The Service (`namespace/name`).
        service: String,
        /// The range's first address.
        first: Ipv4Addr,
        /// Its last address.
        last: Ipv4Addr,
        /// How many addresses it has.
        size: usize,
    },
    /// The address could not be put on `lo`.
    #[error("claiming {ip} for {service}")]
    Claim {
        /// The Service.
        service: String,
        /// The address.
        ip: Ipv4Addr,
        /// Why (boxed: a pod's error is large).
        #[source]
        source: Box<PodError>,
    },
    /// A listener could not be opened.
    #[error("listening on {addr} for {service}")]
    Listen {
        /// The Service.
        service: String,
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The load-balancer controller of one cluster.
pub struct LoadBalancers {
    cluster: String,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl LoadBalancers {
    /// Starts the controller of cluster `cluster` (a name for logs) on the API of `kube`, with
    /// the addresses from `base` to `.254` of its /24 (the cluster's
    /// [`Addresses::lb_base`](super::cluster::Addresses::lb_base)). Must be called within a
    /// tokio runtime.
    pub fn start(kube: Kube, cluster: &str, base: Ipv4Addr) -> Self {
        let shared = Arc::new(Shared {
            cluster: cluster.to_string(),
            ..Shared::default()
        });
        let range = address_range(base);
        match (range.first(), range.last()) {
            (Some(first), Some(last)) => shared.event(format!(
                "cluster {cluster}: load-balancer addresses {first}–{last}"
            )),
            _ => shared.event(format!(
                "cluster {cluster}: no load-balancer address from {base} (its /24 ends there)"
            )),
        }
        let cancel = CancellationToken::new();
        let controller = Controller {
            kube,
            range,
            lbs: BTreeMap::new(),
            shared: shared.clone(),
            cancel: cancel.clone(),
        };
        let task = tokio::spawn(controller.run());
        Self {
            cluster: cluster.to_string(),
            shared,
            cancel,
            task: Some(task),
        }
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The addresses assigned now, by Service (`namespace/name`).
    pub fn addresses(&self) -> BTreeMap<String, Ipv4Addr> {
        lock(&self.shared.addresses).clone()
    }

    /// What the controller did, oldest first (the last 1000 events), e.g. `assigned 198.18.0.1
    /// to istio-system/istio-ingressgateway`.
    pub fn events(&self) -> Vec<String> {
        lock(&self.shared.log).events.iter().cloned().collect()
    }

    /// The errors not resolved since they were recorded (empty when all is well).
    pub fn errors(&self) -> Vec<String> {
        lock(&self.shared.log).errors.values().cloned().collect()
    }

    /// Stops the controller: closes every listener and open connection, releases every address
    /// and returns once all of it is done.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!(cluster = %self.cluster, "the load-balancer controller failed: {e}");
            }
        }
    }
}

impl Drop for LoadBalancers {
    /// Without [`LoadBalancers::stop`], the controller still stops and cleans up, unawaited.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The addresses from `base` to `.254` of its /24 (`.0` counts as `.1`).
fn address_range(base: Ipv4Addr) -> Vec<Ipv4Addr> {
    let [a, b, c, d] = base.octets();
    (d.max(1)..=254)
        .map(|x| Ipv4Addr::new(a, b, c, x))
        .collect()
}

/// The first address of `range` not in `used`.
fn pick(range: &[Ipv4Addr], used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    range.iter().copied().find(|a| !used.contains(a))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the controller shares with its owner and its listeners.
#[derive(Default)]
struct Shared {
    cluster: String,
    addresses: Mutex<BTreeMap<String, Ipv4Addr>>,
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    events: VecDeque<String>,
    /// The last state recorded per subject (recorded again only when it changes).
    states: BTreeMap<String, String>,
    /// Unresolved errors per subject.
    errors: BTreeMap<String, String>,
}

impl Shared {
    fn push(log: &mut Log, event: String) {
        if log.events.len() >= MAX_EVENTS {
            log.events.pop_front();
        }
        log.events.push_back(event);
    }

    fn event(&self, event: String) {
        tracing::info!(cluster = %self.cluster, "{event}");
        Self::push(&mut lock(&self.log), event);
    }

    /// Records `state` of `subject` when it differs from the last one recorded.
    fn state(&self, subject: &str, state: String) {
        let mut log = lock(&self.log);
        if log.states.get(subject) != Some(&state) {
            tracing::info!(cluster = %self.cluster, "{state}");
            log.states.insert(subject.to_string(), state.clone());
            Self::push(&mut log, state);
        }
    }

    /// Records an error of `subject` (once while it stays the same).
    fn error(&self, subject: &str, error: &LbError) {
        let message = format!("error: {}", meshmig_core::error_chain(error));
        let mut log = lock(&self.log);
        if log.errors.get(subject) != Some(&message) {
            tracing::warn!(cluster = %self.cluster, "{message}");
            log.errors.insert(subject.to_string(), message.clone());
            Self::push(&mut log, message);
        }
    }

    /// `subject` is well again.
    fn resolved(&self, subject: &str) {
        lock(&self.log).errors.remove(subject);
    }

    /// Keeps the states and errors of the subjects `keep` accepts only.
    fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut log = lock(&self.log);
        log.states.retain(|k, _| keep(k));
        log.errors.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_bounded_by_its_24() {
        let r = address_range(Ipv4Addr::new(198, 18, 3, 1));
        assert_eq!(r.len(), 254);
        assert_eq!(r[0], Ipv4Addr::new(198, 18, 3, 1));
        assert_eq!(r[253], Ipv4Addr::new(198, 18, 3, 254));
        assert_eq!(address_range(Ipv4Addr::new(198, 18, 3, 0))[0], r[0]);
        assert!(address_range(Ipv4Addr::new(198, 18, 3, 255)).is_empty());
    }

    #[test]
    fn picks_the_lowest_free_address_and_never_wraps() {
        let r = address_range(Ipv4Addr::new(198, 18, 0, 253));
        let mut used = BTreeSet::new();
        assert_eq!(pick(&r, &used), Some(Ipv4Addr::new(198, 18, 0, 253)));
        used.insert(Ipv4Addr::new(198, 18, 0, 253));
        assert_eq!(pick(&r, &used), Some(Ipv4Addr::new(198, 18, 0, 254)));
        used.insert(Ipv4Addr::new(198, 18, 0, 254));
        assert_eq!(pick(&r, &used), None);
        used.remove(&Ipv4Addr::new(198, 18, 0, 253));
        assert_eq!(pick(&r, &used), Some(Ipv4Addr::new(198, 18, 0, 253)));
    }
}
