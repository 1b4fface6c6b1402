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
//!    ([`claim_ip`]) and written to `status.loadBalancer.ingress` (`ipMode: VIP`).
//! 2. **Forwarding.** Each TCP port of the Service is listened on at `ADDRESS:port`. Each
//!    accepted connection is forwarded (`copy_bidirectional`) to a ready endpoint of the
//!    Service, read afresh from its EndpointSlices (label `kubernetes.io/service-name`) for
//!    every connection, so scaling and pods going away are followed at once: IPv4 endpoints
//!    whose `conditions.ready` is not `false`, on the slice port named as the Service port (or
//!    the slice's only port when the Service port is unnamed), picked round-robin. A backend
//!    that refuses is skipped for the next one; with no ready endpoint the connection is reset,
//!    as a load balancer without a healthy backend does. UDP and SCTP ports are not served.
//! 3. **Removal.** A Service deleted, or no longer of type `LoadBalancer`, loses its listeners
//!    (their sockets are closed, open connections cut) and its address ([`release_ip`]); a
//!    Service that still exists has its status cleared.
//!
//! [`LoadBalancers::stop`] ends the controller, closes every socket, releases every address and
//! waits for all of it; the Services' statuses are left as they are (a controller started again
//! adopts them). What the controller did is kept as a short event log
//! ([`LoadBalancers::events`]), with errors among the events and, while unresolved, in
//! [`LoadBalancers::errors`].
//!
//! Everything happens in the run's network namespace ([`crate::netns`]): the addresses are local
//! there, and pods' IPs are reachable from it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::Client;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::pods::{claim_ip, release_ip, PodError};
use crate::backend::kube::{known_resource, Kube, KubeError};

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
        let message = format!("error: {}", crate::error_chain(error));
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

fn service_resource() -> ApiResource {
    known_resource("Service").expect("Service is known").0
}

fn endpoint_slice_resource() -> ApiResource {
    known_resource("EndpointSlice")
        .expect("EndpointSlice is known")
        .0
}

/// Runs an API call with [`API_TIMEOUT`].
async fn call<T>(
    doing: impl Into<String>,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, LbError> {
    let doing = doing.into();
    match tokio::time::timeout(API_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(LbError::Api { doing, source }),
        Err(_) => Err(LbError::Timeout {
            doing,
            waited: API_TIMEOUT,
        }),
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A Service this controller serves: type LoadBalancer, no other controller's class, not
/// being deleted.
fn is_ours(svc: &Value) -> bool {
    str_at(svc, "/spec/type") == "LoadBalancer"
        && svc
            .pointer("/spec/loadBalancerClass")
            .is_none_or(Value::is_null)
        && svc
            .pointer("/metadata/deletionTimestamp")
            .is_none_or(Value::is_null)
}

fn key_of(svc: &Value) -> String {
    format!(
        "{}/{}",
        str_at(svc, "/metadata/namespace"),
        str_at(svc, "/metadata/name")
    )
}

/// The first ingress IP of the Service's status.
fn status_ip(svc: &Value) -> Option<Ipv4Addr> {
    svc.pointer("/status/loadBalancer/ingress/0/ip")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

/// Whether the status says exactly `ip` (`ipMode: VIP`).
fn status_is(svc: &Value, ip: Ipv4Addr) -> bool {
    svc.pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.len() == 1
                && a[0]["ip"].as_str() == Some(ip.to_string().as_str())
                && a[0]["ipMode"] == "VIP"
        })
}

/// The Service's TCP ports: number → name (`""` when unnamed).
fn tcp_ports(svc: &Value) -> BTreeMap<u16, String> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p["protocol"].as_str().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let port = u16::try_from(p["port"].as_u64()?).ok()?;
            Some((port, p["name"].as_str().unwrap_or_default().to_string()))
        })
        .collect()
}

/// The ready backends of the Service port named `port_name` in its EndpointSlices, sorted and
/// without duplicates: IPv4 endpoints whose `conditions.ready` is not `false`, on the slice port
/// of that name (or the slice's only port when the Service port is unnamed).
fn ready_backends(slices: &[Value], port_name: &str) -> Vec<SocketAddr> {
    let mut out = BTreeSet::new();
    for slice in slices {
        if slice["addressType"] != "IPv4" {
            continue;
        }
        let ports: Vec<&Value> = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["protocol"].as_str().unwrap_or("TCP") == "TCP")
            .collect();
        let named = ports
            .iter()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name);
        let port = match (named, ports.as_slice()) {
            (Some(p), _) => p,
            (None, [only]) if port_name.is_empty() => only,
            _ => continue,
        };
        let Some(port) = port["port"].as_u64().and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            if ep["conditions"]["ready"] == false {
                continue;
            }
            for a in ep["addresses"].as_array().into_iter().flatten() {
                if let Some(ip) = a.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
                    out.insert(SocketAddr::from((ip, port)));
                }
            }
        }
    }
    out.into_iter().collect()
}

/// One Service's load balancer.
struct Lb {
    namespace: String,
    name: String,
    ip: Ipv4Addr,
    listeners: BTreeMap<u16, Listener>,
}

/// One port's listener and its connections.
struct Listener {
    port_name: String,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Listener {
    /// Closes the listening socket and every open connection, and waits until they are.
    async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Where one port's connections go.
struct Target {
    /// `namespace/name:port`.
    subject: String,
    service: String,
    port_name: String,
    slices: Api<DynamicObject>,
    next: AtomicUsize,
    /// The last backends read (used when the API does not answer).
    last: Mutex<Vec<SocketAddr>>,
    shared: Arc<Shared>,
}

/// Connects to `backend` from `source` (any port), or from the kernel's choice without one.
async fn connect_from(source: Option<IpAddr>, backend: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match backend {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == backend.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(backend).await
}

impl Target {
    /// The ready backends, read now.
    async fn backends(&self) -> Vec<SocketAddr> {
        let lp =
            ListParams::default().labels(&format!("kubernetes.io/service-name={}", self.service));
        let read = call(
            format!("reading the EndpointSlices of {}", self.subject),
            self.slices.list(&lp),
        )
        .await;
        let subject = format!("endpoints {}", self.subject);
        match read {
            Ok(list) => {
                self.shared.resolved(&subject);
                let slices: Vec<Value> = list
                    .items
                    .iter()
                    .filter_map(|s| serde_json::to_value(s).ok())
                    .collect();
                let backends = ready_backends(&slices, &self.port_name);
                let state = if backends.is_empty() {
                    format!("{}: no ready endpoint, connections are reset", self.subject)
                } else {
                    format!(
                        "{}: forwarding to {}",
                        self.subject,
                        backends
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                self.shared.state(&subject, state);
                *lock(&self.last) = backends.clone();
                backends
            }
            Err(e) => {
                self.shared.error(&subject, &e);
                lock(&self.last).clone()
            }
        }
    }

    /// Forwards one accepted connection, or resets it when no backend takes it.
    async fn forward(&self, mut client: TcpStream) {
        let backends = self.backends().await;
        let n = backends.len();
        // Connections to backends leave from the load balancer's own address (the one the client
        // reached), as a cloud load balancer's do. Left to the kernel, the source could be any
        // address on `lo`, such as another cluster's, and deleting that cluster's addresses
        // would strand the connection: its replies no longer reach a local address, and the
        // client waits until its timeout.
        let source = client.local_addr().ok().map(|a| a.ip());
        if n > 0 {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..n {
                let backend = backends[(start + i) % n];
                match tokio::time::timeout(CONNECT_TIMEOUT, connect_from(source, backend)).await {
                    Ok(Ok(mut upstream)) => {
                        let _ = client.set_nodelay(true);
                        let _ = upstream.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(lb = %self.subject, %backend, "backend refused: {e}")
                    }
                    Err(_) => {
                        tracing::debug!(lb = %self.subject, %backend, "backend timed out")
                    }
                }
            }
        }
        // A reset, as a load balancer without a healthy backend answers.
        let _ = client.set_zero_linger();
    }
}

/// Accepts connections until cancelled, then closes the listener and cuts the connections.
async fn accept_loop(listener: TcpListener, target: Arc<Target>, cancel: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let t = target.clone();
                    conns.spawn(async move { t.forward(stream).await });
                }
                Err(e) => {
                    tracing::warn!(lb = %target.subject, "accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Opens the listener of `port` (named `port_name`) of `lb`.
fn listen(
    lb: &Lb,
    port: u16,
    port_name: &str,
    client: &Client,
    shared: &Arc<Shared>,
    parent: &CancellationToken,
) -> Result<Listener, LbError> {
    let addr = SocketAddr::from((lb.ip, port));
    let service = format!("{}/{}", lb.namespace, lb.name);
    let fail = |source| LbError::Listen {
        service: service.clone(),
        addr,
        source,
    };
    let std_listener = std::net::TcpListener::bind(addr).map_err(fail)?;
    std_listener.set_nonblocking(true).map_err(fail)?;
    let listener = TcpListener::from_std(std_listener).map_err(fail)?;
    let target = Arc::new(Target {
        subject: format!("{service}:{port}"),
        service: lb.name.clone(),
        port_name: port_name.to_string(),
        slices: Api::namespaced_with(client.clone(), &lb.namespace, &endpoint_slice_resource()),
        next: AtomicUsize::new(0),
        last: Mutex::new(Vec::new()),
        shared: shared.clone(),
    });
    let cancel = parent.child_token();
    let task = tokio::spawn(accept_loop(listener, target, cancel.clone()));
    Ok(Listener {
        port_name: port_name.to_string(),
        cancel,
        task,
    })
}

/// The reconciling task.
struct Controller {
    kube: Kube,
    range: Vec<Ipv4Addr>,
    lbs: BTreeMap<String, Lb>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl Controller {
    async fn run(mut self) {
        loop {
            // A reconcile is never cut short (its API calls are bounded): what it claims is
            // always recorded, so the cleanup below releases it.
            self.reconcile().await;
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(PERIOD) => {}
            }
        }
        for (key, lb) in std::mem::take(&mut self.lbs) {
            self.remove(&key, lb).await;
        }
    }

    async fn reconcile(&mut self) {
        let services =
            match tokio::time::timeout(API_TIMEOUT, self.kube.list("Service", None)).await {
                Ok(Ok(s)) => {
                    self.shared.resolved("list");
                    s
                }
                Ok(Err(source)) => {
                    let e = LbError::List {
                        doing: "listing the cluster's Services".into(),
                        source,
                    };
                    self.shared.error("list", &e);
                    return;
                }
                Err(_) => {
                    let e = LbError::Timeout {
                        doing: "listing the cluster's Services".into(),
                        waited: API_TIMEOUT,
                    };
                    self.shared.error("list", &e);
                    return;
                }
            };
        let wanted: BTreeMap<String, &Value> = services
            .iter()
            .filter(|s| is_ours(s))
            .map(|s| (key_of(s), s))
            .collect();

        // (3) Services gone or no longer load balancers.
        let gone: Vec<String> = self
            .lbs
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(lb) = self.lbs.remove(&key) {
                let ip = lb.ip;
                self.remove(&key, lb).await;
                if let Some(svc) = services.iter().find(|s| key_of(s) == key) {
                    if status_ip(svc) == Some(ip) && svc["metadata"]["deletionTimestamp"].is_null()
                    {
                        self.clear_status(&key, svc).await;
                    }
                }
            }
        }
        // What was recorded about Services no longer served is forgotten (subjects read
        // `what namespace/name[:port]`).
        self.shared.retain(|subject| match subject.split_once(' ') {
            Some((_, rest)) => {
                let key = rest.split(':').next().unwrap_or(rest);
                wanted.contains_key(key) || self.lbs.contains_key(key)
            }
            None => true,
        });

        // (1) Addresses: first those the Services already hold, then new ones.
        for adopt in [true, false] {
            for (key, svc) in &wanted {
                if !self.lbs.contains_key(key) {
                    self.assign(key, svc, adopt);
                }
            }
        }

        // Status, then (2) listeners.
        for (key, svc) in &wanted {
            let Some(lb) = self.lbs.get_mut(key) else {
                continue;
            };
            if !status_is(svc, lb.ip) {
                let subject = format!("status {key}");
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.kube.client(), &lb.namespace, &service_resource());
                let patch = json!({"status": {"loadBalancer": {"ingress": [
                    {"ip": lb.ip.to_string(), "ipMode": "VIP"}
                ]}}});
                match call(
                    format!("writing the status of Service {key}"),
                    api.patch_status(&lb.name, &PatchParams::default(), &Patch::Merge(&patch)),
                )
                .await
                {
                    Ok(_) => {
                        self.shared.resolved(&subject);
                        self.shared.event(format!(
                            "wrote status.loadBalancer.ingress {} of {key}",
                            lb.ip
                        ));
                    }
                    Err(e) => self.shared.error(&subject, &e),
                }
            }
            sync_listeners(
                key,
                lb,
                &tcp_ports(svc),
                &self.kube.client(),
                &self.shared,
                &self.cancel,
            )
            .await;
        }
    }

    /// Gives `svc` an address: with `adopt`, only the one its status already holds (when in
    /// the range and free); otherwise `spec.loadBalancerIP` when in the range and free, or the
    /// lowest free one.
    fn assign(&mut self, key: &str, svc: &Value, adopt: bool) {
        let used: BTreeSet<Ipv4Addr> = self.lbs.values().map(|l| l.ip).collect();
        let free = |ip: &Ipv4Addr| self.range.contains(ip) && !used.contains(ip);
        let (ip, adopted) = if adopt {
            match status_ip(svc).filter(free) {
                Some(ip) => (ip, true),
                None => return,
            }
        } else {
            let requested = svc
                .pointer("/spec/loadBalancerIP")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Ipv4Addr>().ok())
                .filter(free);
            match requested.or_else(|| pick(&self.range, &used)) {
                Some(ip) => (ip, false),
                None => {
                    let e = LbError::Exhausted {
                        service: key.to_string(),
                        first: self.range.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
                        last: self.range.last().copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
                        size: self.range.len(),
                    };
                    self.shared.error(&format!("address {key}"), &e);
                    return;
                }
            }
        };
        let subject = format!("address {key}");
        if let Err(source) = claim_ip(key, ip) {
            let e = LbError::Claim {
                service: key.to_string(),
                ip,
                source: Box::new(source),
            };
            self.shared.error(&subject, &e);
            return;
        }
        self.shared.resolved(&subject);
        self.lbs.insert(
            key.to_string(),
            Lb {
                namespace: str_at(svc, "/metadata/namespace").to_string(),
                name: str_at(svc, "/metadata/name").to_string(),
                ip,
                listeners: BTreeMap::new(),
            },
        );
        lock(&self.shared.addresses).insert(key.to_string(), ip);
        self.shared.event(if adopted {
            format!("kept {ip} of {key} (from its status)")
        } else {
            format!("assigned {ip} to {key}")
        });
    }

    /// Stops `lb`'s listeners and releases its address.
    async fn remove(&self, key: &str, lb: Lb) {
        for (port, l) in lb.listeners {
            l.stop().await;
            self.shared
                .event(format!("stopped listening on {}:{port} for {key}", lb.ip));
        }
        release_ip(lb.ip);
        lock(&self.shared.addresses).remove(key);
        self.shared.event(format!("released {} from {key}", lb.ip));
    }

    /// Clears the load-balancer status of a Service that is no longer a load balancer.
    async fn clear_status(&self, key: &str, svc: &Value) {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.kube.client(),
            str_at(svc, "/metadata/namespace"),
            &service_resource(),
        );
        let patch = json!({"status": {"loadBalancer": {"ingress": null}}});
        let subject = format!("clear {key}");
        match call(
            format!("clearing the load-balancer status of Service {key}"),
            api.patch_status(
                str_at(svc, "/metadata/name"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ),
        )
        .await
        {
            Ok(_) => {
                self.shared.resolved(&subject);
                self.shared
                    .event(format!("cleared status.loadBalancer of {key}"));
            }
            Err(e) => self.shared.error(&subject, &e),
        }
    }
}

/// Makes `lb`'s listeners those of `ports`: stops the others, opens the missing ones.
async fn sync_listeners(
    key: &str,
    lb: &mut Lb,
    ports: &BTreeMap<u16, String>,
    client: &Client,
    shared: &Arc<Shared>,
    parent: &CancellationToken,
) {
    let stale: Vec<u16> = lb
        .listeners
        .iter()
        .filter(|(p, l)| ports.get(p) != Some(&l.port_name))
        .map(|(p, _)| *p)
        .collect();
    for port in stale {
        if let Some(l) = lb.listeners.remove(&port) {
            l.stop().await;
            shared.event(format!("stopped listening on {}:{port} for {key}", lb.ip));
        }
    }
    for (port, name) in ports {
        if lb.listeners.contains_key(port) {
            continue;
        }
        let subject = format!("listen {key}:{port}");
        match listen(lb, *port, name, client, shared, parent) {
            Ok(l) => {
                shared.resolved(&subject);
                lb.listeners.insert(*port, l);
                shared.event(format!("listening on {}:{port} for {key}", lb.ip));
            }
            Err(e) => shared.error(&subject, &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forwarder's connection to a backend leaves from the given source address (on
    /// Linux every 127/8 address is local, so 127.0.0.2 stands for a load balancer's address).
    #[tokio::test]
    async fn backends_see_the_load_balancers_address() {
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = backend.local_addr().unwrap();
        let lb: IpAddr = "127.0.0.2".parse().unwrap();
        let (conn, accepted) = tokio::join!(connect_from(Some(lb), at), backend.accept());
        conn.unwrap();
        assert_eq!(accepted.unwrap().1.ip(), lb);
        let (conn, accepted) = tokio::join!(connect_from(None, at), backend.accept());
        conn.unwrap();
        assert_ne!(accepted.unwrap().1.ip(), lb);
    }

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

    #[test]
    fn only_load_balancers_without_a_class_are_ours() {
        let svc = |spec: Value| json!({"metadata": {"namespace": "ns", "name": "a"}, "spec": spec});
        assert!(is_ours(&svc(json!({"type": "LoadBalancer"}))));
        assert!(!is_ours(&svc(json!({"type": "ClusterIP"}))));
        assert!(!is_ours(&svc(
            json!({"type": "LoadBalancer", "loadBalancerClass": "x/y"})
        )));
        assert_eq!(key_of(&svc(json!({}))), "ns/a");
    }

    #[test]
    fn ports_and_status() {
        let svc = json!({
            "spec": {"ports": [
                {"name": "http", "port": 80},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"port": 443, "protocol": "TCP"},
            ]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.1", "ipMode": "VIP"}]}},
        });
        assert_eq!(
            tcp_ports(&svc),
            BTreeMap::from([(80, "http".to_string()), (443, String::new())])
        );
        assert_eq!(status_ip(&svc), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert!(status_is(&svc, Ipv4Addr::new(198, 18, 0, 1)));
        assert!(!status_is(&svc, Ipv4Addr::new(198, 18, 0, 2)));
        assert!(!status_is(&json!({}), Ipv4Addr::new(198, 18, 0, 1)));
    }

    #[test]
    fn ready_endpoints_on_the_named_port() {
        let slices = vec![
            json!({
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                          {"name": "admin", "port": 9000, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.244.0.2"], "conditions": {"ready": true}},
                    {"addresses": ["10.244.0.3"], "conditions": {"ready": false, "terminating": true}},
                    {"addresses": ["10.244.0.4"], "conditions": {}},
                ],
            }),
            json!({
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": ["10.244.0.2"], "conditions": {"ready": true}}],
            }),
            json!({
                "addressType": "IPv6",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": ["fd00::1"]}],
            }),
        ];
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            ready_backends(&slices, "http"),
            vec![a("10.244.0.2:8080"), a("10.244.0.4:8080")]
        );
        assert_eq!(
            ready_backends(&slices, "admin"),
            vec![a("10.244.0.2:9000"), a("10.244.0.4:9000")]
        );
        assert!(ready_backends(&slices, "other").is_empty());
        // An unnamed Service port takes the slice's only port (the second slice).
        assert_eq!(ready_backends(&slices, ""), vec![a("10.244.0.2:8080")]);
        assert!(ready_backends(&[], "http").is_empty());
    }
}
