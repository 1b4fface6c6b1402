//! The emulated backend's answers to the procedure's commands: the [`Backend`] implementation
//! (gcloud, kubectl and istioctl as the emulated world carries them out).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};

use super::store::{self, Store};
use super::world::{Membership, VirtualCluster};
use super::{gcloud_context, store_err, Emulated, EMULATED_ISTIO_VERSION, PROJECT};
use crate::frontend;
use crate::witness::Witnesses;
use crate::{Backend, BackendError, FleetOp, Inventory, Kubernetes, Output, TeardownReport};
use meshmig_core::manifest::Object;
use meshmig_core::scenario::{ClusterSpec, Fault};

#[async_trait]
impl Kubernetes for Emulated {
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
        remove: &[String],
    ) -> Result<Output, BackendError> {
        let command = meshmig_core::plan::label_namespace_line(cluster, name, labels, remove);
        let mut w = self.world.lock().await;
        let vc = Self::cluster_mut(&mut w, cluster, &command)?;
        vc.store
            .label_namespace(name, labels, remove)
            .map_err(store_err(command.clone()))?;
        Ok(Output::new(command, format!("namespace/{name} labeled\n")))
    }

    async fn restart_workloads(
        &self,
        cluster: &str,
        namespace: &str,
    ) -> Result<Output, BackendError> {
        let mut w = self.world.lock().await;
        let revs = self.revisions(&w, cluster);
        let command = crate::restarted(cluster, namespace, &[]).command;
        let vc = Self::cluster_mut(&mut w, cluster, &command)?;
        let names = vc.store.restart_deployments(namespace, &revs);
        self.reconcile(vc).await?;
        Ok(crate::restarted(cluster, namespace, &names))
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
}

#[async_trait]
impl Backend for Emulated {
    fn name(&self) -> &'static str {
        "emulated"
    }

    fn kubernetes(&self) -> &dyn Kubernetes {
        self
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
        // istioctl's own pods carry their revision as a label (1.31's charts), not an injection
        // record.
        let gw_pod_labels = json!({"app": "istio-ingressgateway", "istio": "ingressgateway", "istio.io/rev": "default"});
        for v in [
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod", "istio": "pilot"}},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"istio": "pilot"}},
                            "template": {"metadata": {"labels": {"app": "istiod", "istio": "pilot", "istio.io/rev": "default"}},
                                         "spec": {"containers": [{"name": "discovery", "image": "docker.io/istio/pilot:emulated"}]}}}}),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod"}},
                   "spec": {"type": "ClusterIP", "selector": {"app": "istiod", "istio": "pilot"},
                            "ports": [{"name": "grpc-xds", "port": 15010}, {"name": "https-dns", "port": 15012}, {"name": "https-webhook", "port": 443, "targetPort": 15017}]}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system", "labels": gw_labels},
                   "spec": {"replicas": 1, "selector": {"matchLabels": gw_labels},
                            "template": {"metadata": {"labels": gw_pod_labels},
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
            crate::istioctl::install_output::RECORDED_1_31_0_DEFAULT,
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

    async fn dns_set(
        &self,
        domain: &str,
        address: IpAddr,
        ttl: u32,
    ) -> Result<Output, BackendError> {
        crate::embedded_dns_set(&self.dns, domain, address, ttl).await
    }

    fn port_shift(&self) -> Option<crate::ports::PortShift> {
        self.shift.clone()
    }

    fn dns_server(&self) -> SocketAddr {
        self.dns.addr()
    }

    async fn inject(&self, fault: &Fault) -> Result<Output, BackendError> {
        crate::inject_with(&self.dns, fault, |cluster| async move {
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
                    crate::gateways_killed(cluster, namespace, killed)
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
