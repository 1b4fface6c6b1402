//! LoadBalancer addresses for kind clusters whose nodes run where cloud-provider-kind cannot
//! (it drives Docker; a kit's nodes run under podman): the part MetalLB plays in layer-2 mode.
//!
//! Every [`PERIOD`], for each cluster it watches:
//! 1. each LoadBalancer Service (no `loadBalancerClass`, not being deleted) without an address of
//!    this run gets the highest free address of the nodes' network (`ENGINE network inspect
//!    kind`, the top [`POOL_SIZE`] addresses, far above those the engine hands its containers);
//! 2. the address is added to the cluster's control-plane node (`ENGINE exec NODE ip addr replace
//!    A/32 dev eth0`), so that node answers for it on the network this machine and both
//!    clusters' nodes share;
//! 3. it is written to the Service's status (`ipMode: VIP`). kube-proxy on the node then forwards
//!    it to the Service's endpoints, as it forwards any load-balancer address.
//!
//! A Service deleted, or no longer of type LoadBalancer, gives its address back (removed from
//! the node). Deleting the cluster removes its node and every address with it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::clusters::{kube_err, ClusterOps};
use crate::exec::Cmd;
use crate::lb_fields::{is_ours, key_of, service_resource, status_ip, str_at};
use crate::BackendError;

/// How often each cluster is reconciled.
pub const PERIOD: Duration = Duration::from_secs(1);

/// How many addresses, from the top of the nodes' network, may be handed out.
pub const POOL_SIZE: u32 = 32;

/// The IPv4 network (address, prefix length) in `ENGINE network inspect` output: podman's
/// `subnets[].subnet` or Docker's `IPAM.Config[].Subnet`, the first IPv4 one.
pub fn ipv4_subnet(inspect: &Value) -> Option<(Ipv4Addr, u8)> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("subnet" | "Subnet", Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(inspect, &mut found);
    found.iter().find_map(|s| {
        let (a, p) = s.split_once('/')?;
        let p: u8 = p.parse().ok()?;
        (p <= 30).then_some(())?;
        Some((a.parse().ok()?, p))
    })
}

/// The addresses handed out, highest first: the top `size` of the network but its broadcast
/// address.
pub fn pool(network: Ipv4Addr, prefix: u8, size: u32) -> Vec<Ipv4Addr> {
    let hosts = (1u32 << (32 - u32::from(prefix))) - 2;
    let broadcast = u32::from(network) | ((1u32 << (32 - u32::from(prefix))) - 1);
    (1..=size.min(hosts / 2))
        .map(|i| Ipv4Addr::from(broadcast - i))
        .collect()
}

/// `ENGINE exec NODE ip addr replace|del A/32 dev eth0`.
pub fn address_cmd(engine: &str, node: &str, add: bool, ip: Ipv4Addr) -> Cmd {
    Cmd::new(
        engine,
        [
            "exec",
            node,
            "ip",
            "addr",
            if add { "replace" } else { "del" },
            &format!("{ip}/32"),
            "dev",
            "eth0",
        ],
    )
}

/// `ENGINE network inspect kind`.
pub fn network_cmd(engine: &str) -> Cmd {
    Cmd::new(engine, ["network", "inspect", "kind"])
}

/// The kind network as `ENGINE network inspect kind` prints it (kind makes it with the first
/// cluster).
pub async fn kind_network(ops: &ClusterOps, engine: &str) -> Result<Value, BackendError> {
    // The network is the harness's machinery here, not a step of the procedure.
    let cmd = network_cmd(engine);
    ops.run_json(cmd.clone())
        .await
        .map(Value::Array)
        .map_err(|e| {
            BackendError::infra(
                format!("reading the kind network (`{}`)", cmd.line()),
                e.to_string(),
            )
        })
}

/// The gateway of the network's IPv4 subnet (podman's `subnets[].gateway`, Docker's
/// `IPAM.Config[].Gateway`): this machine's address on it.
pub fn ipv4_gateway(inspect: &Value) -> Option<Ipv4Addr> {
    match inspect {
        Value::Object(m) => {
            let subnet = m
                .get("subnet")
                .or_else(|| m.get("Subnet"))
                .and_then(Value::as_str);
            let gateway = m
                .get("gateway")
                .or_else(|| m.get("Gateway"))
                .and_then(Value::as_str);
            match (subnet, gateway) {
                (Some(s), Some(g)) if s.contains('.') => g.parse().ok(),
                _ => m.values().find_map(ipv4_gateway),
            }
        }
        Value::Array(a) => a.iter().find_map(ipv4_gateway),
        _ => None,
    }
}

/// Who holds which address.
#[derive(Debug, Default)]
struct Pool {
    free: Vec<Ipv4Addr>,
    held: BTreeMap<(String, String), Ipv4Addr>,
}

impl Pool {
    fn take(&mut self, cluster: &str, key: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.held.get(&(cluster.to_string(), key.to_string())) {
            return Some(*ip);
        }
        let ip = self.free.first().copied()?;
        self.free.remove(0);
        self.held.insert((cluster.to_string(), key.to_string()), ip);
        Some(ip)
    }

    fn give_back(&mut self, cluster: &str, key: &str) -> Option<Ipv4Addr> {
        let ip = self.held.remove(&(cluster.to_string(), key.to_string()))?;
        self.free.push(ip);
        self.free.sort_by(|a, b| b.cmp(a));
        Some(ip)
    }

    fn held_in(&self, cluster: &str) -> Vec<(String, Ipv4Addr)> {
        self.held
            .iter()
            .filter(|((c, _), _)| c == cluster)
            .map(|((_, k), ip)| (k.clone(), *ip))
            .collect()
    }
}

/// The controller of a run: one task per cluster watched.
pub struct NodeLoadBalancers {
    engine: String,
    pool: Arc<Mutex<Pool>>,
    tasks: Mutex<BTreeMap<String, JoinHandle<()>>>,
    events: Arc<Mutex<Vec<String>>>,
}

impl NodeLoadBalancers {
    /// A controller handing out the top addresses of the nodes' network, as `ENGINE network
    /// inspect kind` printed it ([`kind_network`]).
    pub fn new(engine: &str, network: &Value) -> Result<Self, BackendError> {
        let (net, prefix) = ipv4_subnet(network).ok_or_else(|| {
            BackendError::infra(
                format!("reading `{}`", network_cmd(engine).line()),
                "the kind network has no IPv4 subnet",
            )
        })?;
        Ok(Self {
            engine: engine.to_string(),
            pool: Arc::new(Mutex::new(Pool {
                free: pool(net, prefix, POOL_SIZE),
                held: BTreeMap::new(),
            })),
            tasks: Mutex::new(BTreeMap::new()),
            events: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Starts watching a cluster whose control-plane node is `node`, through the first of
    /// `contexts` the kubeconfig holds (the procedure's name once renamed, kind's before).
    pub fn watch(&self, ops: Arc<ClusterOps>, contexts: &[String], node: &str) {
        let (contexts, node, engine) = (contexts.to_vec(), node.to_string(), self.engine.clone());
        let cluster = contexts.first().cloned().unwrap_or_default();
        let name = cluster.clone();
        let (pool, events) = (self.pool.clone(), self.events.clone());
        let task = tokio::spawn(async move {
            let mut last_error = String::new();
            loop {
                match reconcile(&ops, &contexts, &node, &engine, &pool, &events).await {
                    Ok(()) => last_error.clear(),
                    Err(e) => {
                        let e = meshmig_core::error_chain(&e);
                        if e != last_error {
                            tracing::warn!("node load balancer ({cluster}): {e}");
                            push(&events, format!("{cluster}: {e}"));
                            last_error = e;
                        }
                    }
                }
                tokio::time::sleep(PERIOD).await;
            }
        });
        if let Some(old) = self
            .tasks
            .lock()
            .expect("tasks lock is never poisoned")
            .insert(name, task)
        {
            old.abort();
        }
    }

    /// Stops watching a cluster that is being deleted (its API server goes away with it), and
    /// takes back its addresses, which go with its node.
    pub fn unwatch(&self, cluster: &str) {
        if let Some(t) = self
            .tasks
            .lock()
            .expect("tasks lock is never poisoned")
            .remove(cluster)
        {
            t.abort();
        }
        let mut pool = self.pool.lock().expect("pool lock is never poisoned");
        for (key, _) in pool.held_in(cluster) {
            pool.give_back(cluster, &key);
        }
    }

    /// What it did, oldest first.
    pub fn events(&self) -> Vec<String> {
        self.events
            .lock()
            .expect("events lock is never poisoned")
            .clone()
    }

    /// Stops every task (the clusters' deletion takes their addresses).
    pub fn stop(&self) {
        let mut tasks = self.tasks.lock().expect("tasks lock is never poisoned");
        for t in tasks.values() {
            t.abort();
        }
        tasks.clear();
    }
}

impl Drop for NodeLoadBalancers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn push(events: &Mutex<Vec<String>>, e: String) {
    let mut v = events.lock().expect("events lock is never poisoned");
    v.push(e);
    if v.len() > 1000 {
        v.remove(0);
    }
}

/// One pass over a cluster's Services.
async fn reconcile(
    ops: &ClusterOps,
    contexts: &[String],
    node: &str,
    engine: &str,
    pool: &Mutex<Pool>,
    events: &Mutex<Vec<String>>,
) -> Result<(), BackendError> {
    let cluster = contexts.first().map(String::as_str).unwrap_or_default();
    let mut kube = Err(BackendError::infra(
        "watching LoadBalancer Services",
        "no context",
    ));
    for c in contexts {
        kube = ops.kube(c).await;
        if kube.is_ok() {
            break;
        }
    }
    let kube = kube?;
    let services = kube.list("Service", None).await.map_err(kube_err)?;
    let wanted: BTreeMap<String, &Value> = services
        .iter()
        .filter(|s| is_ours(s))
        .map(|s| (key_of(s), s))
        .collect();
    let held = pool
        .lock()
        .expect("pool lock is never poisoned")
        .held_in(cluster);
    let gone: BTreeSet<(String, Ipv4Addr)> = held
        .into_iter()
        .filter(|(k, _)| !wanted.contains_key(k))
        .collect();
    for (key, ip) in gone {
        // Best effort: the address goes with the node when the cluster is deleted anyway.
        let _ = ops.run(address_cmd(engine, node, false, ip)).await;
        pool.lock()
            .expect("pool lock is never poisoned")
            .give_back(cluster, &key);
        push(
            events,
            format!("{cluster}: {key} gone, {ip} removed from {node}"),
        );
    }
    for (key, svc) in wanted {
        let (ip, new) = {
            let mut p = pool.lock().expect("pool lock is never poisoned");
            let before = p.held.contains_key(&(cluster.to_string(), key.clone()));
            let ip = p.take(cluster, &key).ok_or_else(|| {
                BackendError::infra(
                    format!("giving Service {key} a load-balancer address"),
                    format!("all {POOL_SIZE} addresses of the kind network are in use"),
                )
            })?;
            (ip, !before)
        };
        if new {
            if let Err(e) = ops.run(address_cmd(engine, node, true, ip)).await {
                pool.lock()
                    .expect("pool lock is never poisoned")
                    .give_back(cluster, &key);
                return Err(e);
            }
            push(events, format!("{cluster}: {key} → {ip} on {node}"));
        }
        if status_ip(svc) != Some(ip) {
            let api: Api<DynamicObject> = Api::namespaced_with(
                kube.client(),
                str_at(svc, "/metadata/namespace"),
                &service_resource(),
            );
            let patch = json!({"status": {"loadBalancer": {"ingress": [
                {"ip": ip.to_string(), "ipMode": "VIP"}
            ]}}});
            api.patch_status(
                str_at(svc, "/metadata/name"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| {
                BackendError::infra(
                    format!("writing the status of Service {key} ({cluster})"),
                    e.to_string(),
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `podman network inspect kind` as podman 4.3.1 printed it here, for the network kind
    /// v0.30.0's podman provider made (with IPv6).
    const PODMAN: &str = r#"[
     {
          "name": "kind",
          "id": "0b27c158feb36ab18a10ff687909ec730ece6280581dd407e2672359be7725dd",
          "driver": "bridge",
          "network_interface": "cni-podman1",
          "created": "2026-12-07T04:27:45.361004025Z",
          "subnets": [
               {
                    "subnet": "fc00:f853:ccd:e793::/64",
                    "gateway": "fc00:f853:ccd:e793::1"
               },
               {
                    "subnet": "10.89.0.0/24",
                    "gateway": "10.89.0.1"
               }
          ],
          "ipv6_enabled": true,
          "internal": false,
          "dns_enabled": false,
          "ipam_options": {
               "driver": "host-local"
          }
     }
]"#;

    #[test]
    fn the_pool_is_the_top_of_the_kind_networks_ipv4_subnet() {
        let v: Value = serde_json::from_str(PODMAN).unwrap();
        let (net, prefix) = ipv4_subnet(&v).unwrap();
        assert_eq!((net, prefix), (Ipv4Addr::new(10, 89, 0, 0), 24));
        assert_eq!(ipv4_gateway(&v), Some(Ipv4Addr::new(10, 89, 0, 1)));
        let p = pool(net, prefix, 3);
        assert_eq!(
            p,
            [
                Ipv4Addr::new(10, 89, 0, 254),
                Ipv4Addr::new(10, 89, 0, 253),
                Ipv4Addr::new(10, 89, 0, 252)
            ]
        );
        let docker: Value =
            serde_json::from_str(r#"[{"IPAM": {"Config": [{"Subnet": "172.18.0.0/16"}]}}]"#)
                .unwrap();
        assert_eq!(
            ipv4_subnet(&docker),
            Some((Ipv4Addr::new(172, 18, 0, 0), 16))
        );
        assert_eq!(
            pool(Ipv4Addr::new(172, 18, 0, 0), 16, 1),
            [Ipv4Addr::new(172, 18, 255, 254)]
        );
    }

    #[test]
    fn an_address_is_held_until_given_back_and_never_given_twice() {
        let mut p = Pool {
            free: pool(Ipv4Addr::new(10, 89, 0, 0), 24, 2),
            held: BTreeMap::new(),
        };
        let a = p.take("c1", "istio-system/istio-ingressgateway").unwrap();
        assert_eq!(p.take("c1", "istio-system/istio-ingressgateway"), Some(a));
        let b = p.take("c2", "istio-system/istio-ingressgateway").unwrap();
        assert_ne!(a, b);
        assert_eq!(p.take("c1", "onlineboutique/frontend-external"), None);
        assert_eq!(
            p.give_back("c1", "istio-system/istio-ingressgateway"),
            Some(a)
        );
        assert_eq!(p.take("c1", "onlineboutique/frontend-external"), Some(a));
    }

    #[test]
    fn addresses_go_on_the_nodes_eth0() {
        assert_eq!(
            address_cmd(
                "podman",
                "c-control-plane",
                true,
                Ipv4Addr::new(10, 89, 0, 254)
            )
            .line(),
            "podman exec c-control-plane ip addr replace 10.89.0.254/32 dev eth0"
        );
    }
}
