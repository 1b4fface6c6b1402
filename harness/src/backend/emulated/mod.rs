//! The embedded default backend: the whole migration on this machine, with no cloud and no
//! container engine, but with real Envoy, real HTTP and real DNS.
//!
//! Each cluster is a virtual cluster with its own range of loopback addresses (`127.RUN.16k.x`)
//! and an object store with the Kubernetes semantics the procedure observes ([`store`]). What the
//! procedure's traffic touches is real: each ingress gateway is an Envoy process configured from
//! the applied Gateway, VirtualService and ServiceEntry objects as istiod translates them
//! ([`xds`], [`envoy`]); each frontend replica is an HTTP server rendering the real footer
//! ([`frontend`]); the test domain is served by an authoritative DNS server ([`crate::dns`]).
//! The managed mesh is a stand-in that goes DISABLED → PROVISIONING → ACTIVE and then injects
//! `istio.io/rev=asm-managed` namespaces.

pub mod demo;
pub mod entry;
pub mod envoy;
pub mod frontend;
pub mod store;
pub mod xds;

/// The Istio release the emulated backend stands in for (its istioctl output is that release's,
/// recorded from the real istioctl: [`crate::backend::istioctl::install_output`]).
pub const EMULATED_ISTIO_VERSION: &str = "1.31.0";

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use self::envoy::Envoy;
use self::frontend::{Frontend, Identity, ReadyServices};
use self::store::{pod_ready, Store, StoreError};
use super::{Backend, BackendError, FleetOp, Inventory, Output, Scratch, TeardownReport};
use crate::backend::witness::{Witness, Witnesses};
use crate::dns::DnsServer;
use crate::fleet::{describe_yaml, stand_in_state, StandInState};
use crate::manifest::{string_map, Object};
use crate::scenario::{ClusterSpec, Fault, FooterVariant};

/// The project the emulated gcloud commands name.
pub const PROJECT: &str = "emulated-project";
const PROJECT_NUMBER: &str = "123456789123";
/// The revision the managed control plane injects.
pub const MANAGED_REVISION: &str = "asm-managed";

/// How to set the emulated backend up.
#[derive(Debug, Clone)]
pub struct EmulatedOptions {
    /// The Envoy binary.
    pub envoy: PathBuf,
    /// The test domain.
    pub domain: String,
    /// How long the managed control plane takes to become ACTIVE.
    pub provisioning: Duration,
    /// A fault the scenario injects into the managed control plane.
    pub fault: Option<crate::fleet::ControlPlaneFault>,
    /// The managed control plane flaps once up.
    pub flap: Option<crate::fleet::Flap>,
    /// Footer variant by cluster name.
    pub footers: BTreeMap<String, FooterVariant>,
}

struct Membership {
    cluster: String,
    automatic_since: Option<Instant>,
}

struct VirtualCluster {
    spec: ClusterSpec,
    store: Store,
    /// Control planes installed with istioctl (`default`).
    revisions: BTreeSet<String>,
    frontends: BTreeMap<String, Frontend>,
    gateways: BTreeMap<String, Envoy>,
    ready: ReadyServices,
}

struct World {
    clusters: BTreeMap<String, VirtualCluster>,
    contexts: Vec<String>,
    mesh_enabled: bool,
    memberships: BTreeMap<String, Membership>,
}

/// The emulated backend.
pub struct Emulated {
    opts: EmulatedOptions,
    run: u8,
    _claim: std::net::UdpSocket,
    /// Set when port 80 of the run's range cannot be bound (see [`crate::preflight`]).
    shift: Option<crate::backend::ports::PortShift>,
    scratch: Scratch,
    dns: DnsServer,
    world: Mutex<World>,
    /// Every Envoy started, for teardown to make sure each has exited.
    children: super::exec::Children,
    /// Who answers the checks here.
    witnesses: Witnesses,
}

/// The emulated backend's witnesses: the harness's records and stand-ins, and real Envoy
/// (`envoy`) routing what the emulated control plane translated.
fn witnesses(envoy: &std::path::Path) -> Witnesses {
    let records = || Witness::harness("the emulated backend's records");
    Witnesses {
        cluster_list: records(),
        kubeconfig: records(),
        kubernetes_api: Witness::stand_in("the emulated Kubernetes API (the harness's object store)"),
        fleet: super::witness::fleet_stand_in(),
        dns: super::witness::embedded_dns(),
        data_plane: Witness::stand_in(format!(
            "{} routing the emulated control plane's translation of the Istio objects, to stand-in frontends",
            super::witness::envoy_version(envoy)
        )),
        inventory: records(),
        commands: Vec::new(),
    }
}

/// Whether port 80 can be bound in the run's range (`127.RUN.0.80`); when it cannot, ports below
/// 1024 are shifted, with the reason `meshmig run` recorded or the bind error.
fn port_shift(run: u8) -> Option<crate::backend::ports::PortShift> {
    match std::net::TcpListener::bind((Ipv4Addr::new(127, run, 0, 80), 80)) {
        Ok(_) => None,
        Err(e) => Some(crate::backend::ports::PortShift {
            why: crate::backend::ports::shift_reason()
                .map(str::to_string)
                .unwrap_or_else(|| format!("port 80 cannot be bound here ({e})")),
        }),
    }
}

fn gcloud_context(spec: &ClusterSpec) -> String {
    format!("gke_{PROJECT}_{}_{}", spec.zone, spec.name)
}

fn store_err(command: String) -> impl Fn(StoreError) -> BackendError {
    move |e| BackendError::Procedure {
        command: command.clone(),
        message: e.to_string(),
    }
}

impl Emulated {
    /// Claims a loopback range of its own, starts the DNS server, and checks Envoy.
    pub async fn start(opts: EmulatedOptions) -> Result<Self, BackendError> {
        if !opts.envoy.is_file() {
            return Err(crate::tools::find_envoy()
                .err()
                .map(BackendError::from)
                .unwrap_or_else(|| {
                    BackendError::infra(
                        "starting the emulated backend",
                        format!("{} is not a file", opts.envoy.display()),
                    )
                }));
        }
        // A run owns 127.RUN.0.0/16; the claim socket keeps parallel runs apart.
        // (The thread's generator is not Send: it is dropped before the first await.)
        let claimed = {
            let mut rng = rand::rng();
            (0..64).find_map(|_| {
                let run: u8 = rng.random_range(64..=250);
                std::net::UdpSocket::bind((Ipv4Addr::new(127, run, 0, 1), 47_001))
                    .ok()
                    .map(|s| (run, s))
            })
        };
        let (run, claim) = claimed.ok_or_else(|| {
            BackendError::infra(
                "claiming a loopback address range",
                "64 ranges tried, all in use",
            )
        })?;
        let shift = port_shift(run);
        if let Some(s) = &shift {
            tracing::info!("emulated gateways on shifted ports: {}", s.why);
        }
        let scratch = Scratch::create("meshmig-")?;
        let dns = DnsServer::start(Ipv4Addr::new(127, run, 0, 53), &opts.domain)
            .await
            .map_err(|e| {
                BackendError::infra("starting the embedded DNS server", crate::error_chain(&e))
            })?;
        let witnesses = witnesses(&opts.envoy);
        Ok(Self {
            opts,
            run,
            _claim: claim,
            shift,
            scratch,
            dns,
            children: Default::default(),
            witnesses,
            world: Mutex::new(World {
                clusters: BTreeMap::new(),
                contexts: Vec::new(),
                mesh_enabled: false,
                memberships: BTreeMap::new(),
            }),
        })
    }

    fn revisions(&self, w: &World, cluster: &str) -> BTreeSet<String> {
        let mut revs = w
            .clusters
            .get(cluster)
            .map(|c| c.revisions.clone())
            .unwrap_or_default();
        let active = w
            .memberships
            .values()
            .any(|m| m.cluster == cluster && self.membership_state(w, m) == StandInState::Active);
        if w.mesh_enabled && active {
            revs.insert(MANAGED_REVISION.to_string());
        }
        revs
    }

    fn cluster_mut<'a>(
        w: &'a mut World,
        name: &str,
        command: &str,
    ) -> Result<&'a mut VirtualCluster, BackendError> {
        w.clusters
            .get_mut(name)
            .ok_or_else(|| BackendError::Procedure {
                command: command.to_string(),
                message: format!("error: context \"{name}\" does not exist"),
            })
    }

    /// Brings the cluster's running parts (frontends, gateway Envoys) in line with its objects.
    async fn reconcile(&self, vc: &mut VirtualCluster) -> Result<(), BackendError> {
        // Services with ready endpoints, for the frontends' dependency checks.
        let mut ready = BTreeSet::new();
        for svc in vc.store.list("Service", None) {
            let ns = svc["metadata"]["namespace"].as_str().unwrap_or_default();
            let sel = string_map(&svc["spec"]["selector"]);
            if vc
                .store
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
        *vc.ready
            .write()
            .expect("ready-services lock is never poisoned") = ready;

        // Frontend replicas.
        let mut wanted: BTreeMap<String, (SocketAddr, String)> = BTreeMap::new();
        for pod in vc.store.list("Pod", None) {
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
        let gone: Vec<String> = vc
            .frontends
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(f) = vc.frontends.remove(&k) {
                f.stop().await;
            }
        }
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

        // Gateway workloads: Deployments whose ready pods run the proxy as a router.
        let mut workloads: BTreeMap<String, (xds::Workload, Ipv4Addr)> = BTreeMap::new();
        for d in vc.store.list("Deployment", None) {
            let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            let pods = vc.store.pods_of(ns, name);
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
                        crate::error_chain(&e),
                    )
                })?;
                vc.gateways.insert(key.clone(), e);
            }
            let envoy = vc.gateways.get_mut(&key).expect("inserted above");
            envoy.apply(&snap).await.map_err(|e| {
                BackendError::infra(
                    format!("configuring the Envoy of gateway {key}"),
                    crate::error_chain(&e),
                )
            })?;
        }
        Ok(())
    }

    async fn stop_cluster(vc: &mut VirtualCluster) {
        for (_, f) in std::mem::take(&mut vc.frontends) {
            f.stop().await;
        }
        for (_, mut e) in std::mem::take(&mut vc.gateways) {
            let _ = e.stop().await;
        }
    }

    /// The managed control plane's state for a membership (see `fleet::stand_in_state`).
    fn membership_state(&self, w: &World, m: &Membership) -> StandInState {
        let pool = w
            .clusters
            .get(&m.cluster)
            .is_none_or(|c| c.spec.workload_pool);
        let up = m
            .automatic_since
            .and_then(|t| t.elapsed().checked_sub(self.opts.provisioning));
        stand_in_state(
            m.automatic_since.is_some(),
            crate::fleet::flapped_ready(
                up.is_some(),
                self.opts.flap.as_ref(),
                up.unwrap_or_default(),
            ),
            pool,
            self.opts.fault.as_ref(),
        )
    }

    fn describe(&self, w: &World) -> String {
        let states: Vec<(String, StandInState)> = w
            .memberships
            .iter()
            .map(|(name, m)| (name.clone(), self.membership_state(w, m)))
            .collect();
        describe_yaml(PROJECT, PROJECT_NUMBER, w.mesh_enabled, &states)
    }
}

#[async_trait]
impl Backend for Emulated {
    fn name(&self) -> &'static str {
        "emulated"
    }

    async fn create_cluster(&self, spec: &ClusterSpec) -> Result<Output, BackendError> {
        let mut w = self.world.lock().await;
        let mut command = format!(
            "gcloud container clusters create {} --project={PROJECT} --zone={}",
            spec.name, spec.zone
        );
        if let Some(m) = &spec.machine_type {
            command.push_str(&format!(" --machine-type={m}"));
        }
        if let Some(n) = spec.nodes {
            command.push_str(&format!(" --num-nodes={n}"));
        }
        if spec.workload_pool {
            command.push_str(&format!(" --workload-pool {PROJECT}.svc.id.goog"));
        }
        if w.clusters.contains_key(&spec.name) {
            return Err(BackendError::Procedure {
                command,
                message: format!("ERROR: (gcloud.container.clusters.create) ResponseError: code=409, message=Already exists: projects/{PROJECT}/zones/{}/clusters/{}.", spec.zone, spec.name),
            });
        }
        // The lowest address range no live cluster holds: ranges of deleted clusters are reused,
        // and a run has at most MAX_CLUSTERS at once (the third octet has room for no more).
        let used: BTreeSet<u8> = w
            .clusters
            .values()
            .map(|c| c.store.addresses.index())
            .collect();
        let Some(index) = (0..store::MAX_CLUSTERS).find(|i| !used.contains(i)) else {
            return Err(BackendError::Infrastructure {
                doing: format!("creating cluster {}", spec.name),
                message: format!(
                    "the emulated backend holds at most {} clusters at once (one 127.RUN.x.0/20 range each)",
                    store::MAX_CLUSTERS
                ),
            });
        };
        w.clusters.insert(
            spec.name.clone(),
            VirtualCluster {
                spec: spec.clone(),
                store: Store::new(store::AddressPlan::new(self.run, index)),
                revisions: BTreeSet::new(),
                frontends: BTreeMap::new(),
                gateways: BTreeMap::new(),
                ready: Arc::new(RwLock::new(BTreeSet::new())),
            },
        );
        w.contexts.push(gcloud_context(spec));
        let stdout = format!(
            "Creating cluster {n} in {z}...done.\nCreated [https://container.googleapis.com/v1/projects/{PROJECT}/zones/{z}/clusters/{n}].\nkubeconfig entry generated for {n}.\nNAME  LOCATION  MASTER_VERSION  MACHINE_TYPE  NUM_NODES  STATUS\n{n}  {z}  1.33.5-gke.1201000  {m}  {c}  RUNNING\n",
            n = spec.name,
            z = spec.zone,
            m = spec.machine_type.clone().unwrap_or_else(|| "e2-medium".into()),
            c = spec.nodes.unwrap_or(3)
        );
        Ok(Output::new(command, stdout))
    }

    async fn delete_cluster(&self, name: &str) -> Result<Output, BackendError> {
        let mut w = self.world.lock().await;
        let zone = w
            .clusters
            .get(name)
            .map(|c| c.spec.zone.clone())
            .unwrap_or_else(|| "us-central1-a".into());
        let command =
            format!("gcloud container clusters delete {name} --zone={zone} --project={PROJECT}");
        let Some(mut vc) = w.clusters.remove(name) else {
            return Err(BackendError::Procedure {
                command,
                message: format!("ERROR: (gcloud.container.clusters.delete) Some requests did not succeed:\n - ResponseError: code=404, message=Not found: projects/{PROJECT}/zones/{zone}/clusters/{name}."),
            });
        };
        Self::stop_cluster(&mut vc).await;
        let ctx = gcloud_context(&vc.spec);
        w.contexts.retain(|c| c != &ctx && c != name);
        Ok(Output::new(
            command,
            format!("Deleting cluster {name}...done.\nDeleted [https://container.googleapis.com/v1/projects/{PROJECT}/zones/{zone}/clusters/{name}].\n"),
        ))
    }

    async fn clusters(&self) -> Result<BTreeMap<String, String>, BackendError> {
        let w = self.world.lock().await;
        Ok(w.clusters
            .keys()
            .map(|k| (k.clone(), "RUNNING".to_string()))
            .collect())
    }

    async fn rename_context(&self, cluster: &str) -> Result<Output, BackendError> {
        let mut w = self.world.lock().await;
        let spec = w.clusters.get(cluster).map(|c| c.spec.clone());
        let from = spec
            .as_ref()
            .map(gcloud_context)
            .unwrap_or_else(|| format!("gke_{PROJECT}_us-central1-a_{cluster}"));
        let command = format!("kubectl config rename-context {from} {cluster}");
        match w.contexts.iter_mut().find(|c| **c == from) {
            Some(c) => {
                *c = cluster.to_string();
                Ok(Output::new(
                    command,
                    format!("Context \"{from}\" renamed to \"{cluster}\".\n"),
                ))
            }
            None => Err(BackendError::Procedure {
                command,
                message: format!(
                    "error: cannot rename the context \"{from}\", it's not in the kubeconfig"
                ),
            }),
        }
    }

    async fn contexts(&self) -> Result<Vec<String>, BackendError> {
        Ok(self.world.lock().await.contexts.clone())
    }

    fn witnesses(&self) -> &Witnesses {
        &self.witnesses
    }

    /// The emulated istioctl stands in for istioctl 1.31.0 and prints what it prints.
    fn istio_version(&self) -> Option<String> {
        Some(EMULATED_ISTIO_VERSION.into())
    }

    async fn install_istio(&self, cluster: &str, profile: &str) -> Result<Output, BackendError> {
        let command = format!("istioctl install --context {cluster} --set profile={profile} -y");
        let mut w = self.world.lock().await;
        let revs = self.revisions(&w, cluster);
        let vc = Self::cluster_mut(&mut w, cluster, &command)?;
        if profile != "default" {
            return Err(BackendError::Procedure {
                command,
                message: format!(
                    "Error: the emulated istioctl knows only the default profile, not {profile:?}"
                ),
            });
        }
        let _ = vc.store.create_namespace("istio-system");
        let gw_labels = json!({"app": "istio-ingressgateway", "istio": "ingressgateway"});
        for v in [
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod", "istio": "pilot"}},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"istio": "pilot"}},
                            "template": {"metadata": {"labels": {"app": "istiod", "istio": "pilot"}},
                                         "spec": {"containers": [{"name": "discovery", "image": "docker.io/istio/pilot:emulated"}]}}}}),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod"}},
                   "spec": {"type": "ClusterIP", "selector": {"app": "istiod", "istio": "pilot"},
                            "ports": [{"name": "grpc-xds", "port": 15010}, {"name": "https-dns", "port": 15012}, {"name": "https-webhook", "port": 443, "targetPort": 15017}]}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system", "labels": gw_labels},
                   "spec": {"replicas": 1, "selector": {"matchLabels": gw_labels},
                            "template": {"metadata": {"labels": gw_labels},
                                         "spec": {"containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:emulated", "args": ["proxy", "router"]}]}}}}),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system", "labels": gw_labels},
                   "spec": {"type": "LoadBalancer", "selector": gw_labels,
                            "ports": [{"name": "status-port", "port": 15021, "targetPort": 15021},
                                      {"name": "http2", "port": 80, "targetPort": 8080},
                                      {"name": "https", "port": 443, "targetPort": 8443}]}}),
        ] {
            vc.store.install(v, &revs);
        }
        vc.revisions.insert("default".into());
        self.reconcile(vc).await?;
        Ok(Output::new(
            command,
            crate::backend::istioctl::install_output::RECORDED_1_31_0_DEFAULT,
        ))
    }

    async fn fleet(&self, op: &FleetOp) -> Result<Output, BackendError> {
        let mut w = self.world.lock().await;
        let p = PROJECT;
        match op {
            FleetOp::EnableMesh => {
                w.mesh_enabled = true;
                Ok(Output::new(
                    format!("gcloud container fleet mesh enable --project {p}"),
                    "Waiting for Feature Service Mesh to be created...done.\n",
                ))
            }
            FleetOp::Register {
                cluster,
                membership,
            } => {
                let zone = w
                    .clusters
                    .get(cluster)
                    .map(|c| c.spec.zone.clone())
                    .unwrap_or_else(|| "us-central1-a".into());
                let command = format!("gcloud container fleet memberships register {membership} --gke-cluster={zone}/{cluster} --enable-workload-identity --project {p}");
                if !w.clusters.contains_key(cluster) {
                    return Err(BackendError::Procedure { command, message: format!("ERROR: (gcloud.container.fleet.memberships.register) cluster {zone}/{cluster} not found") });
                }
                if w.memberships.contains_key(membership) {
                    return Err(BackendError::Procedure { command, message: format!("ERROR: (gcloud.container.fleet.memberships.register) membership {membership} already exists") });
                }
                w.memberships.insert(
                    membership.clone(),
                    Membership {
                        cluster: cluster.clone(),
                        automatic_since: None,
                    },
                );
                Ok(Output::new(command, "Waiting for membership to be created...done.\nFinished registering to the Fleet.\n"))
            }
            FleetOp::MeshUpdate { membership } => {
                let command = format!("gcloud container fleet mesh update --management automatic --memberships {membership} --project {p}");
                if !w.mesh_enabled {
                    return Err(BackendError::Procedure { command, message: "ERROR: (gcloud.container.fleet.mesh.update) Feature servicemesh is not enabled for this project.".into() });
                }
                match w.memberships.get_mut(membership) {
                    Some(m) => {
                        m.automatic_since.get_or_insert_with(Instant::now);
                        Ok(Output::new(command, "Waiting for Feature Service Mesh to be updated...done.\n"))
                    }
                    None => Err(BackendError::Procedure { command, message: format!("ERROR: (gcloud.container.fleet.mesh.update) membership {membership} not found") }),
                }
            }
            FleetOp::Unregister { membership } => {
                let command = format!(
                    "gcloud container fleet memberships unregister {membership} --project {p}"
                );
                match w.memberships.remove(membership) {
                    Some(_) => Ok(Output::new(command, "Waiting for membership to be deleted...done.\n")),
                    None => Err(BackendError::Procedure { command, message: format!("ERROR: (gcloud.container.fleet.memberships.unregister) NOT_FOUND: membership {membership} not found") }),
                }
            }
            FleetOp::DisableMesh => {
                w.mesh_enabled = false;
                Ok(Output::new(
                    format!("gcloud container fleet mesh disable --project {p}"),
                    "Waiting for Feature Service Mesh to be deleted...done.\n",
                ))
            }
        }
    }

    async fn mesh_describe(&self) -> Result<String, BackendError> {
        let w = self.world.lock().await;
        Ok(self.describe(&w))
    }

    async fn create_namespace(&self, cluster: &str, name: &str) -> Result<Output, BackendError> {
        let command = format!("kubectl --context {cluster} create namespace {name}");
        let mut w = self.world.lock().await;
        let vc = Self::cluster_mut(&mut w, cluster, &command)?;
        vc.store
            .create_namespace(name)
            .map_err(store_err(command.clone()))?;
        Ok(Output::new(command, format!("namespace/{name} created\n")))
    }

    async fn label_namespace(
        &self,
        cluster: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Output, BackendError> {
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("'{k}={v}'")).collect();
        let command = format!(
            "kubectl --context {cluster} label namespace {name} {}",
            pairs.join(" ")
        );
        let mut w = self.world.lock().await;
        let vc = Self::cluster_mut(&mut w, cluster, &command)?;
        vc.store
            .label_namespace(name, labels)
            .map_err(store_err(command.clone()))?;
        Ok(Output::new(command, format!("namespace/{name} labeled\n")))
    }

    async fn apply(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        objects: &[Object],
    ) -> Result<Output, BackendError> {
        let files: BTreeSet<String> = objects
            .iter()
            .map(|o| o.origin.file.display().to_string())
            .collect();
        let ns = namespace.unwrap_or("default");
        let command = format!(
            "kubectl --context={cluster} --namespace={ns} apply -f {}",
            files.into_iter().collect::<Vec<_>>().join(" -f ")
        );
        let mut w = self.world.lock().await;
        let revs = self.revisions(&w, cluster);
        let vc = Self::cluster_mut(&mut w, cluster, &command)?;
        let mut lines = String::new();
        for o in objects {
            let line = vc
                .store
                .apply(o, ns, &revs)
                .map_err(store_err(command.clone()))?;
            lines.push_str(&line);
            lines.push('\n');
        }
        self.reconcile(vc).await?;
        Ok(Output::new(command, lines))
    }

    async fn delete(
        &self,
        cluster: &str,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Output, BackendError> {
        let resource = store::resource_name(kind);
        let command =
            format!("kubectl --context={cluster} --namespace={namespace} delete {resource} {name}");
        let mut w = self.world.lock().await;
        let vc = Self::cluster_mut(&mut w, cluster, &command)?;
        vc.store
            .delete(kind, namespace, name)
            .map_err(store_err(command.clone()))?;
        self.reconcile(vc).await?;
        Ok(Output::new(
            command,
            format!("{resource} \"{name}\" deleted\n"),
        ))
    }

    async fn list(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        kind: &str,
    ) -> Result<Vec<Value>, BackendError> {
        let command = format!("kubectl --context={cluster} get {kind}");
        let mut w = self.world.lock().await;
        let vc = Self::cluster_mut(&mut w, cluster, &command)?;
        Ok(vc
            .store
            .list(kind, namespace)
            .into_iter()
            .cloned()
            .collect())
    }

    async fn dns_set(
        &self,
        domain: &str,
        address: IpAddr,
        ttl: u32,
    ) -> Result<Output, BackendError> {
        super::embedded_dns_set(&self.dns, domain, address, ttl).await
    }

    fn port_shift(&self) -> Option<crate::backend::ports::PortShift> {
        self.shift.clone()
    }

    fn dns_server(&self) -> SocketAddr {
        self.dns.addr()
    }

    async fn inject(&self, fault: &Fault) -> Result<Output, BackendError> {
        super::inject_with(&self.dns, fault, |cluster| async move {
            let mut w = self.world.lock().await;
            let vc = w
                .clusters
                .get_mut(cluster)
                .ok_or_else(|| format!("no cluster {cluster} runs"))?;
            match fault {
                Fault::KillGateway { cluster, namespace } => {
                    let prefix = format!("{namespace}/");
                    let mut killed = Vec::new();
                    for (key, e) in vc
                        .gateways
                        .iter_mut()
                        .filter(|(k, _)| k.starts_with(&prefix))
                    {
                        let pid = e.pid();
                        e.kill().map_err(|err| err.to_string())?;
                        killed.push(format!("{key} (Envoy pid {})", pid.unwrap_or_default()));
                    }
                    super::gateways_killed(cluster, namespace, killed)
                }
                Fault::FrontendErrors {
                    status, requests, ..
                } => frontend::fail_first(&vc.frontends, *status, *requests)
                    .map_err(|m| format!("{cluster}: {m}")),
                Fault::StopDns => unreachable!("inject_with stops the DNS server itself"),
            }
        })
        .await
    }

    async fn inventory(&self) -> Result<Inventory, BackendError> {
        let w = self.world.lock().await;
        Ok(Inventory {
            clusters: w
                .clusters
                .keys()
                .map(|k| (k.clone(), "RUNNING".into()))
                .collect(),
            memberships: w.memberships.keys().cloned().collect(),
            mesh_feature_enabled: w.mesh_enabled,
            load_balancers: w
                .clusters
                .values()
                .flat_map(|c| c.store.load_balancers())
                .collect(),
        })
    }

    async fn teardown(&self, keep: bool) -> TeardownReport {
        let mut report = TeardownReport::default();
        let mut w = self.world.lock().await;
        if keep {
            for (name, vc) in &w.clusters {
                for e in vc.gateways.values() {
                    report
                        .kept
                        .push(format!("cluster {name}: envoy {}", e.describe()));
                }
                for (pod, f) in &vc.frontends {
                    report
                        .kept
                        .push(format!("cluster {name}: frontend {pod} on {}", f.addr));
                }
            }
            if let Some(p) = self.scratch.keep() {
                report.kept.push(format!("scratch folder {}", p.display()));
            }
            report.kept.push(format!("DNS server {}", self.dns.addr()));
            report
                .kept
                .push("(kept until this process exits: the emulated backend lives in it)".into());
            return report;
        }
        let names: Vec<String> = w.clusters.keys().cloned().collect();
        for name in names {
            if let Some(mut vc) = w.clusters.remove(&name) {
                let n = vc.gateways.len();
                let f = vc.frontends.len();
                Self::stop_cluster(&mut vc).await;
                report.removed.push(format!(
                    "cluster {name} ({n} gateway envoy(s), {f} frontend replica(s))"
                ));
            }
        }
        for m in std::mem::take(&mut w.memberships).into_keys() {
            report.removed.push(format!("fleet membership {m}"));
        }
        if std::mem::take(&mut w.mesh_enabled) {
            report.removed.push("fleet mesh feature".into());
        }
        w.contexts.clear();
        // Envoys whose step was aborted while starting them have no handle left to stop.
        let (ended, left) = self.children.end_all(Duration::from_secs(5)).await;
        for p in ended {
            report
                .removed
                .push(format!("process {p} (its step was interrupted)"));
        }
        for p in left {
            report.failed.push(format!("process {p} still runs"));
        }
        self.dns.stop().await;
        report
            .removed
            .push(format!("DNS server {}", self.dns.addr()));
        self.scratch.remove_into(&mut report);
        report
    }

    fn scratch_paths(&self) -> Vec<PathBuf> {
        vec![self.scratch.path().to_path_buf()]
    }
}
