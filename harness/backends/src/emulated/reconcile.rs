//! Reconciling a virtual cluster: its frontend replicas and gateway Envoys brought in line with
//! the objects its store holds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::envoy::Envoy;
use super::store::{pod_ready, Store};
use super::world::VirtualCluster;
use super::{xds, Emulated};
use crate::frontend::{Frontend, Identity};
use crate::BackendError;
use meshmig_core::manifest::string_map;
use meshmig_core::scenario::FooterVariant;

/// Services with ready endpoints (namespace, name), for the frontends' dependency checks.
fn ready_services(store: &Store) -> BTreeSet<(String, String)> {
    let mut ready = BTreeSet::new();
    for svc in store.list("Service", None) {
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or_default();
        let sel = string_map(&svc["spec"]["selector"]);
        if store
            .pods_matching(Some(ns), &sel)
            .iter()
            .any(|p| pod_ready(p))
        {
            ready.insert((
                ns.to_string(),
                svc["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
    }
    ready
}

/// The frontend replicas that should run: ready pods running the frontend image, by pod name,
/// with the address they serve on and their namespace.
fn frontend_pods(store: &Store) -> BTreeMap<String, (SocketAddr, String)> {
    let mut wanted: BTreeMap<String, (SocketAddr, String)> = BTreeMap::new();
    for pod in store.list("Pod", None) {
        if !pod_ready(pod) {
            continue;
        }
        let Some(server) = pod["spec"]["containers"].as_array().and_then(|cs| {
            cs.iter().find(|c| {
                c["image"]
                    .as_str()
                    .is_some_and(|i| i.contains("/frontend:"))
            })
        }) else {
            continue;
        };
        let port = server["env"]
            .as_array()
            .and_then(|env| env.iter().find(|e| e["name"] == "PORT"))
            .and_then(|e| e["value"].as_str().and_then(|v| v.parse().ok()))
            .or_else(|| {
                server["ports"][0]["containerPort"]
                    .as_u64()
                    .map(|p| p as u16)
            })
            .unwrap_or(8080);
        let ip: Ipv4Addr = pod["status"]["podIP"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(Ipv4Addr::LOCALHOST);
        wanted.insert(
            pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            (
                SocketAddr::new(IpAddr::V4(ip), port),
                pod["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
        );
    }
    wanted
}

/// Gateway workloads: Deployments whose ready pods run the proxy as a router, by
/// `namespace/name`, with the address of such a pod.
fn gateway_workloads(store: &Store) -> BTreeMap<String, (xds::Workload, Ipv4Addr)> {
    let mut workloads: BTreeMap<String, (xds::Workload, Ipv4Addr)> = BTreeMap::new();
    for d in store.list("Deployment", None) {
        let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let pods = store.pods_of(ns, name);
        let Some(pod) = pods.iter().find(|p| {
            pod_ready(p)
                && p["spec"]["containers"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["name"] == "istio-proxy" && c["args"][1] == "router")
                })
        }) else {
            continue;
        };
        let ip = pod["status"]["podIP"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(Ipv4Addr::LOCALHOST);
        let labels = string_map(&d["spec"]["template"]["metadata"]["labels"]);
        workloads.insert(
            format!("{ns}/{name}"),
            (
                xds::Workload {
                    namespace: ns.into(),
                    name: name.into(),
                    labels,
                },
                ip,
            ),
        );
    }
    workloads
}

impl Emulated {
    /// Brings the cluster's running parts (frontends, gateway Envoys) in line with its objects.
    pub(super) async fn reconcile(&self, vc: &mut VirtualCluster) -> Result<(), BackendError> {
        *vc.ready
            .write()
            .expect("ready-services lock is never poisoned") = ready_services(&vc.store);
        let wanted = frontend_pods(&vc.store);
        let gone = self.sync_frontends(vc, wanted).await?;
        let workloads = gateway_workloads(&vc.store);
        let synced = self.sync_gateways(vc, workloads).await;
        // Replicas of pods gone stop only now, once the gateways route to the new ones: a
        // rolling restart surges new pods before the old ones go (`maxSurge`), so users'
        // requests never meet a stopped replica.
        for f in gone {
            f.stop().await;
        }
        synced
    }

    /// Starts the frontend replicas missing; returns those no longer wanted, still running,
    /// for the caller to stop once the gateways no longer route to them.
    async fn sync_frontends(
        &self,
        vc: &mut VirtualCluster,
        wanted: BTreeMap<String, (SocketAddr, String)>,
    ) -> Result<Vec<Frontend>, BackendError> {
        let gone_keys: Vec<String> = vc
            .frontends
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        let gone: Vec<Frontend> = gone_keys
            .iter()
            .filter_map(|k| vc.frontends.remove(k))
            .collect();
        for (pod, (addr, ns)) in wanted {
            if vc.frontends.contains_key(&pod) {
                continue;
            }
            let id = Identity {
                cluster: vc.spec.name.clone(),
                zone: vc.spec.zone.clone(),
                pod: pod.clone(),
                namespace: ns,
                variant: vc
                    .spec
                    .footer
                    .or_else(|| self.opts.footers.get(&vc.spec.name).copied())
                    .unwrap_or(FooterVariant::PodOnly),
            };
            let addr = match &self.shift {
                Some(s) => s.addr(addr),
                None => addr,
            };
            let f = Frontend::start(addr, id, vc.ready.clone())
                .await
                .map_err(|e| {
                    BackendError::infra(format!("starting frontend replica {pod} on {addr}"), e)
                })?;
            vc.frontends.insert(pod, f);
        }
        Ok(gone)
    }

    /// Stops the Envoys of gateways gone, starts those missing, and configures each from the
    /// translation of the cluster's objects.
    async fn sync_gateways(
        &self,
        vc: &mut VirtualCluster,
        workloads: BTreeMap<String, (xds::Workload, Ipv4Addr)>,
    ) -> Result<(), BackendError> {
        let gone: Vec<String> = vc
            .gateways
            .keys()
            .filter(|k| !workloads.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(mut e) = vc.gateways.remove(&k) {
                let _ = e.stop().await;
            }
        }
        for (key, (workload, ip)) in workloads {
            let mut snap = xds::translate(&vc.store, &workload);
            if let Some(s) = &self.shift {
                snap = snap.shifted(s);
            }
            for w in &snap.warnings {
                tracing::warn!(cluster = %vc.spec.name, gateway = %key, "{w}");
            }
            if !vc.gateways.contains_key(&key) {
                let dir = self
                    .scratch
                    .path()
                    .join(&vc.spec.name)
                    .join(key.replace('/', "_"));
                let e = Envoy::start(
                    &self.opts.envoy,
                    &key,
                    &dir,
                    SocketAddr::new(IpAddr::V4(ip), 15000),
                    &self.children,
                )
                .await
                .map_err(|e| {
                    BackendError::infra(
                        format!("starting the Envoy of gateway {key}"),
                        meshmig_core::error_chain(&e),
                    )
                })?;
                vc.gateways.insert(key.clone(), e);
            }
            let envoy = vc.gateways.get_mut(&key).expect("inserted above");
            envoy.apply(&snap).await.map_err(|e| {
                BackendError::infra(
                    format!("configuring the Envoy of gateway {key}"),
                    meshmig_core::error_chain(&e),
                )
            })?;
        }
        Ok(())
    }
}
