//! What the real-cluster backends (kind and GKE) do alike: run the tools with the run's
//! kubeconfig, and every in-cluster operation through the Kubernetes layer, one client per
//! context, waiting after an apply until Deployments are Available and LoadBalancers have an IP.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Mutex;

use super::exec::{Cmd, Exec, Ran};
use super::kube::{Kube, KubeError, FIELD_MANAGER};
use super::{BackendError, FleetOp, Kubernetes, Output};
use meshmig_core::fleet::{describe_yaml, stand_in_state, ControlPlaneFault};
use meshmig_core::manifest::Object;
use meshmig_core::scenario::Scenario;

/// A failed command as the procedure's finding.
pub fn failed(cmd: &Cmd, ran: &Ran) -> BackendError {
    BackendError::Procedure {
        command: cmd.line(),
        message: meshmig_core::redact::scrubbed(format!(
            "exit {:?}: {}",
            ran.code,
            ran.stderr.trim()
        )),
    }
}

/// Runs a listing command (`--format=json`) and reads its standard output only, as a JSON
/// array: gcloud writes progress and update notices to stderr. A non-zero exit is the
/// procedure's finding; output that is not a JSON array is an infrastructure error (exit 3),
/// never an empty list, so nobody concludes "nothing left" from a listing that failed.
pub async fn run_json(exec: &dyn Exec, cmd: &Cmd) -> Result<Vec<Value>, BackendError> {
    let ran = exec.run(cmd).await.map_err(|e| {
        BackendError::infra(
            format!("running {}", cmd.program),
            meshmig_core::error_chain(&e),
        )
    })?;
    read_json(cmd, &ran)
}

/// What [`run_json`] reads from a command that has run.
pub fn read_json(cmd: &Cmd, ran: &Ran) -> Result<Vec<Value>, BackendError> {
    if !ran.ok() {
        return Err(failed(cmd, ran));
    }
    serde_json::from_str::<Vec<Value>>(&ran.stdout).map_err(|e| {
        let head: String = ran.stdout.chars().take(200).collect();
        BackendError::Infrastructure {
            doing: format!("reading the JSON list `{}` printed", cmd.line()),
            message: meshmig_core::redact::scrubbed(format!(
                "{e}; its standard output began {head:?}"
            )),
        }
    })
}

/// The plan's line for `label_namespace` on real API servers (kind, kwok, GKE); `at` names the
/// cluster as the backend's plan does.
pub fn label_plan_line(
    name: &str,
    labels: &BTreeMap<String, String>,
    remove: &[String],
    at: &str,
) -> String {
    let mut l = format!("api: merge-patch Namespace {name} labels {labels:?}");
    if !remove.is_empty() {
        l.push_str(&format!(", {remove:?} set to null (removed)"));
    }
    format!("{l} {at}")
}

/// The plan's line for `restart_workloads` on real API servers (kind, kwok, GKE).
pub fn restart_plan_line(namespace: &str, at: &str) -> String {
    format!("api: merge-patch each Deployment in {namespace}: template annotation kubectl.kubernetes.io/restartedAt=NOW; wait until every rollout is complete {at}")
}

/// A Kubernetes layer error: a 404 is the procedure's finding, anything else infrastructure.
pub fn kube_err(e: KubeError) -> BackendError {
    match e {
        KubeError::NotFound { .. } => BackendError::Procedure {
            command: "kubectl".into(),
            message: e.to_string(),
        },
        other => BackendError::infra("talking to the cluster", meshmig_core::error_chain(&other)),
    }
}

/// Tools and clusters of one run.
pub struct ClusterOps {
    /// Runs the tools.
    pub exec: Arc<dyn Exec>,
    /// The run's kubeconfig.
    pub kubeconfig: PathBuf,
    kubes: Mutex<BTreeMap<String, Kube>>,
    /// LoadBalancer addresses the run has seen (for leak checks).
    pub lb_ips: Mutex<BTreeSet<String>>,
    /// UIDs of the LoadBalancer Services seen (cloud providers name their resources after them).
    pub lb_uids: Mutex<BTreeSet<String>>,
    /// How long to wait for Deployments and load balancers after an apply.
    pub ready_timeout: Duration,
    hooks: Arc<dyn KubeHooks>,
}

/// What a backend adds around [`ClusterOps`]' Kubernetes calls, so that the calls themselves
/// are written once: a liveness guard (kind: cloud-provider-kind) and its own way to apply.
#[async_trait]
pub trait KubeHooks: Send + Sync {
    /// Checked before each call: fails when what the calls depend on has died.
    async fn check(&self) -> Result<(), BackendError> {
        Ok(())
    }
    /// Resolves, with the error, when that dies during a call; never, by default.
    async fn died(&self) -> BackendError {
        std::future::pending().await
    }
    /// Applies objects (by default [`ClusterOps::apply_as`] with meshmig's field manager); a
    /// backend wraps that with what must follow (kind: the metadata stand-in; kwok: waiting
    /// for istiod's push to reach the gateways).
    async fn apply(
        &self,
        ops: &ClusterOps,
        cluster: &str,
        namespace: Option<&str>,
        objects: &[Object],
    ) -> Result<Output, BackendError> {
        ops.apply_as(cluster, namespace, objects, FIELD_MANAGER)
            .await
    }
}

/// No hooks: every call as [`KubeHooks`]' defaults make it (GKE's clusters).
struct NoHooks;

impl KubeHooks for NoHooks {}

impl ClusterOps {
    /// Operations with this runner and kubeconfig.
    pub fn new(exec: Arc<dyn Exec>, kubeconfig: PathBuf, ready_timeout: Duration) -> Self {
        Self {
            exec,
            kubeconfig,
            kubes: Mutex::new(BTreeMap::new()),
            lb_ips: Mutex::new(BTreeSet::new()),
            lb_uids: Mutex::new(BTreeSet::new()),
            ready_timeout,
            hooks: Arc::new(NoHooks),
        }
    }

    /// The same operations with a backend's [`KubeHooks`] around the Kubernetes calls.
    pub fn with_hooks(mut self, hooks: Arc<dyn KubeHooks>) -> Self {
        self.hooks = hooks;
        self
    }

    /// Runs a Kubernetes call under the hooks' liveness guard.
    async fn guarded<T: Send>(
        &self,
        op: impl std::future::Future<Output = Result<T, BackendError>> + Send,
    ) -> Result<T, BackendError> {
        self.hooks.check().await?;
        tokio::select! {
            r = op => r,
            e = self.hooks.died() => Err(e),
        }
    }

    /// Runs a command; a non-zero exit is the procedure's finding.
    pub async fn run(&self, cmd: Cmd) -> Result<Output, BackendError> {
        let ran = self.exec.run(&cmd).await.map_err(|e| {
            BackendError::infra(
                format!("running {}", cmd.program),
                meshmig_core::error_chain(&e),
            )
        })?;
        if !ran.ok() {
            return Err(failed(&cmd, &ran));
        }
        Ok(Output::new(
            cmd.line(),
            format!("{}{}", ran.stdout, ran.stderr),
        ))
    }

    /// [`run_json`] with this run's tools.
    pub async fn run_json(&self, cmd: Cmd) -> Result<Vec<Value>, BackendError> {
        run_json(self.exec.as_ref(), &cmd).await
    }

    /// `kubectl config get-contexts --output=name`, one context a line.
    pub async fn contexts(&self, cmd: Cmd) -> Result<Vec<String>, BackendError> {
        let out = self.run(cmd).await?;
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Runs an `istioctl install`, then waits for istio-system's Deployments and load balancers.
    pub async fn install_istio(&self, cmd: Cmd, cluster: &str) -> Result<Output, BackendError> {
        let out = self.run(cmd).await?;
        let kube = self.kube(cluster).await?;
        kube.wait_deployments_rolled_out("istio-system", &[], self.ready_timeout)
            .await
            .map_err(kube_err)?;
        self.wait_load_balancers(&kube, "istio-system").await?;
        Ok(out)
    }

    /// The client of a context (made once).
    pub async fn kube(&self, context: &str) -> Result<Kube, BackendError> {
        let mut k = self.kubes.lock().await;
        if let Some(kube) = k.get(context) {
            return Ok(kube.clone());
        }
        let kube = Kube::from_kubeconfig(&self.kubeconfig, context)
            .await
            .map_err(kube_err)?;
        k.insert(context.to_string(), kube.clone());
        Ok(kube)
    }

    /// Drops the client of a deleted cluster.
    pub async fn forget(&self, context: &str) {
        self.kubes.lock().await.remove(context);
    }

    async fn note_lb_ips(&self, svcs: &[Value]) {
        let mut ips = self.lb_ips.lock().await;
        let mut uids = self.lb_uids.lock().await;
        for s in svcs {
            if let Some(ip) = s["status"]["loadBalancer"]["ingress"][0]["ip"].as_str() {
                ips.insert(ip.to_string());
            }
            if s["spec"]["type"] == "LoadBalancer" {
                if let Some(uid) = s["metadata"]["uid"].as_str() {
                    uids.insert(uid.to_string());
                }
            }
        }
    }

    /// Waits until every LoadBalancer Service of the namespace has an ingress IP. At the deadline
    /// with some still pending, it fails naming them: an address that never comes is the
    /// platform's failure (cloud-provider-kind, GKE's service controller), not a pass.
    pub async fn wait_load_balancers(
        &self,
        kube: &Kube,
        namespace: &str,
    ) -> Result<(), BackendError> {
        let svcs = wait_load_balancers(kube, namespace, self.ready_timeout).await?;
        self.note_lb_ips(&svcs).await;
        Ok(())
    }

    /// Server-side apply under field manager `manager`, then wait for the applied Deployments
    /// and LoadBalancers.
    pub async fn apply_as(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        objects: &[Object],
        manager: &str,
    ) -> Result<Output, BackendError> {
        let ns = namespace.unwrap_or("default");
        let kube = self.kube(cluster).await?;
        let lines = kube
            .apply_as(objects, ns, manager)
            .await
            .map_err(kube_err)?;
        let deployments: Vec<String> = objects
            .iter()
            .filter(|o| o.kind == "Deployment")
            .map(|o| o.name.clone())
            .collect();
        let mut note = String::new();
        if !deployments.is_empty() {
            if let Err(e) = kube
                .wait_deployments_rolled_out(ns, &deployments, self.ready_timeout)
                .await
            {
                note = format!("(not all available yet: {e})\n");
            }
        }
        self.wait_load_balancers(&kube, ns).await?;
        Ok(Output::new(
            format!("kubectl --context={cluster} --namespace={ns} apply --server-side --force-conflicts"),
            format!("{}\n{note}", lines.join("\n")),
        ))
    }
}

/// The Kubernetes API of kind, kwok and GKE clusters, written once: each call under the
/// backend's liveness guard, and applies in the backend's way ([`KubeHooks`]).
#[async_trait]
impl Kubernetes for ClusterOps {
    async fn create_namespace(&self, cluster: &str, name: &str) -> Result<Output, BackendError> {
        self.guarded(async {
            self.kube(cluster)
                .await?
                .create_namespace(name)
                .await
                .map_err(kube_err)?;
            Ok(Output::new(
                format!("kubectl --context {cluster} create namespace {name}"),
                format!("namespace/{name} created\n"),
            ))
        })
        .await
    }

    async fn label_namespace(
        &self,
        cluster: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<Output, BackendError> {
        self.guarded(async {
            self.kube(cluster)
                .await?
                .label_namespace(name, labels, remove)
                .await
                .map_err(kube_err)?;
            Ok(Output::new(
                meshmig_core::plan::label_namespace_line(cluster, name, labels, remove),
                format!("namespace/{name} labeled\n"),
            ))
        })
        .await
    }

    async fn restart_workloads(
        &self,
        cluster: &str,
        namespace: &str,
    ) -> Result<Output, BackendError> {
        self.guarded(async {
            let kube = self.kube(cluster).await?;
            let names = kube
                .restart_deployments(namespace)
                .await
                .map_err(kube_err)?;
            kube.wait_deployments_rolled_out(namespace, &names, self.ready_timeout)
                .await
                .map_err(kube_err)?;
            kube.wait_no_terminating_pods(namespace, self.ready_timeout)
                .await
                .map_err(kube_err)?;
            Ok(crate::restarted(cluster, namespace, &names))
        })
        .await
    }

    async fn apply(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        objects: &[Object],
    ) -> Result<Output, BackendError> {
        self.guarded(async { self.hooks.apply(self, cluster, namespace, objects).await })
            .await
    }

    async fn delete(
        &self,
        cluster: &str,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Output, BackendError> {
        self.guarded(async {
            self.kube(cluster)
                .await?
                .delete(kind, namespace, name, self.ready_timeout)
                .await
                .map_err(kube_err)?;
            Ok(Output::new(
                format!(
                    "kubectl --context={cluster} --namespace={namespace} delete {} {name}",
                    kind.to_lowercase()
                ),
                format!("{} \"{name}\" deleted\n", kind.to_lowercase()),
            ))
        })
        .await
    }

    async fn list(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        kind: &str,
    ) -> Result<Vec<Value>, BackendError> {
        self.guarded(async {
            let items = self
                .kube(cluster)
                .await?
                .list(kind, namespace)
                .await
                .map_err(kube_err)?;
            if kind == "Service" {
                self.note_lb_ips(&items).await;
            }
            Ok(items)
        })
        .await
    }
}

/// Waits until every LoadBalancer Service of `namespace` has an ingress IP, and returns the
/// Services; fails at `timeout` naming the Services still pending.
pub async fn wait_load_balancers(
    kube: &Kube,
    namespace: &str,
    timeout: Duration,
) -> Result<Vec<Value>, BackendError> {
    let started = tokio::time::Instant::now();
    loop {
        let svcs = kube
            .list("Service", Some(namespace))
            .await
            .map_err(kube_err)?;
        let pending: Vec<&str> = svcs
            .iter()
            .filter(|s| {
                s["spec"]["type"] == "LoadBalancer"
                    && s["status"]["loadBalancer"]["ingress"][0]["ip"].is_null()
            })
            .filter_map(|s| s["metadata"]["name"].as_str())
            .collect();
        if pending.is_empty() {
            return Ok(svcs);
        }
        if started.elapsed() >= timeout {
            return Err(BackendError::Infrastructure {
                doing: format!("waiting for LoadBalancer addresses in {namespace}"),
                message: format!(
                    "no ingress IP after {}s for Service(s) {}",
                    timeout.as_secs(),
                    pending.join(", ")
                ),
            });
        }
        tokio::time::sleep(kube.poll).await;
    }
}

type Creation = tokio::task::JoinHandle<Result<Output, BackendError>>;

/// Cluster creations started together. Creating a cluster takes minutes (kind) to many minutes
/// (GKE), and the procedure's A1 and C1 do not depend on each other: the first create step starts
/// every cluster of the scenario, each later one takes its cluster's result, so the procedure's
/// observable order of results is kept.
///
/// The tools write each new cluster's context into the kubeconfig when its creation ends; a
/// context is renamed (A2, C2) only once every creation has ended ([`Creations::settle`]), so
/// that no rename races with a creation writing the same file.
#[derive(Default)]
pub struct Creations {
    started: Mutex<Option<BTreeMap<String, CreationState>>>,
}

enum CreationState {
    Running(Creation),
    Ended(Result<Output, BackendError>),
}

impl Creations {
    /// The result of creating `name`; the first call starts every creation of `all` (cluster
    /// name, command) through `ops`.
    pub async fn create(
        &self,
        name: &str,
        ops: &Arc<ClusterOps>,
        all: Vec<(String, Cmd)>,
    ) -> Result<Output, BackendError> {
        let state = {
            let mut started = self.started.lock().await;
            let map = started.get_or_insert_with(|| {
                all.into_iter()
                    .map(|(n, cmd)| {
                        let ops = ops.clone();
                        (
                            n,
                            CreationState::Running(tokio::spawn(async move { ops.run(cmd).await })),
                        )
                    })
                    .collect()
            });
            map.remove(name)
        };
        match state {
            Some(CreationState::Running(mut h)) => join(name, &mut h).await,
            Some(CreationState::Ended(r)) => r,
            None => Err(BackendError::infra(
                format!("creating cluster {name}"),
                "it is not among the scenario's clusters, or was created already",
            )),
        }
    }

    /// Waits until every creation started has ended (their results are kept for `create`).
    pub async fn settle(&self) {
        let mut started = self.started.lock().await;
        let Some(map) = started.as_mut() else {
            return;
        };
        for (name, st) in map.iter_mut() {
            if let CreationState::Running(h) = st {
                let r = join(name, h).await;
                *st = CreationState::Ended(r);
            }
        }
    }
}

async fn join(name: &str, h: &mut Creation) -> Result<Output, BackendError> {
    h.await
        .map_err(|e| BackendError::infra(format!("creating cluster {name}"), e))?
}

/// The revision of the managed-mesh stand-in.
pub const MANAGED_REVISION: &str = "asm-managed";

/// Whether `istio-system`'s Deployments include the managed control plane
/// (`istiod-asm-managed`), Available: when the managed mesh stand-ins report ACTIVE.
pub fn managed_control_plane_available(deployments: &[Value]) -> bool {
    let name = format!("istiod-{MANAGED_REVISION}");
    deployments.iter().any(|d| {
        d["metadata"]["name"] == name.as_str() && meshmig_core::manifest::deployment_available(d)
    })
}

/// The istioctl arguments that install the managed-mesh stand-in into a cluster: revision
/// asm-managed, no gateways, and, when `tag_default`, tagged `default` so that
/// `istio-injection=enabled` injects it too, as managed CSM documents its "default injection
/// label" (Provision a managed Cloud Service Mesh control plane, section "Deploy
/// applications"). The tag is the istiod chart's `values.revisionTags`
/// (manifests/charts/istio-control/istio-discovery/templates/revision-tags-mwc.yaml), which
/// renders `istio-revision-tag-default`.
///
/// In a cluster that already runs Istio the tag is left off ([`runs_istio`]): that webhook is
/// the existing install's own default tag, and rendering it again would move the default tag
/// to asm-managed, where Google says managed CSM "will not overwrite existing webhooks"
/// (Resolving managed Cloud Service Mesh issues). Moving it is the operator's step there.
pub fn managed_install_args(context: &str, tag_default: bool) -> Vec<String> {
    let mut args = vec![
        "install".into(),
        format!("--context={context}"),
        "--set".into(),
        "profile=minimal".into(),
        "--set".into(),
        format!("revision={MANAGED_REVISION}"),
    ];
    if tag_default {
        args.extend(["--set".into(), "values.revisionTags[0]=default".into()]);
    }
    args.push("-y".into());
    args
}

/// Whether `istio-system`'s Deployments include an in-cluster Istio's own control plane
/// (`istiod`, the default revision), so the managed stand-in must leave its default tag alone.
pub fn runs_istio(deployments: &[Value]) -> bool {
    deployments
        .iter()
        .any(|d| d["metadata"]["name"] == "istiod")
}

#[derive(Default)]
struct Fleet {
    enabled: bool,
    memberships: BTreeMap<String, (String, bool)>,
    /// When each membership's control plane was first seen Available (for `fleet.flap`).
    first_ready: BTreeMap<String, std::time::Instant>,
}

/// The managed mesh stand-in of the backends without Google Cloud (kind, kwok): the fleet's
/// state in memory; `mesh update` installs an Istio control plane of revision `asm-managed`
/// with no gateways into the membership's cluster, in the background as on GKE; `describe`
/// reports PROVISIONING until `istio-system/istiod-asm-managed` is Available, then ACTIVE.
#[derive(Default)]
pub struct FleetStandIn {
    fleet: Mutex<Fleet>,
    /// The scenario's injected fault, if any.
    fault: Option<ControlPlaneFault>,
    /// The scenario's flapping control plane, if any.
    flap: Option<meshmig_core::fleet::Flap>,
    /// Clusters created with a workload identity pool.
    pools: BTreeMap<String, bool>,
}

impl FleetStandIn {
    /// The stand-in for a scenario: its injected fault, and which clusters have Workload
    /// Identity (managed CSM refuses the others, as Google documents).
    pub fn new(s: &Scenario) -> Self {
        FleetStandIn {
            fleet: Mutex::default(),
            fault: s.fleet.fault.clone(),
            flap: s.fleet.flap,
            pools: s
                .clusters
                .iter()
                .map(|c| (c.name.clone(), c.workload_pool))
                .collect(),
        }
    }

    fn refused(&self, cluster: &str) -> bool {
        self.fault.is_some() || !self.pools.get(cluster).copied().unwrap_or(true)
    }

    /// Carries a fleet operation out; `managed_install` is the istioctl command for a cluster
    /// (tagged default or not, see [`managed_install_args`]).
    pub async fn op(
        &self,
        ops: &Arc<ClusterOps>,
        op: &FleetOp,
        managed_install: impl Fn(&str, bool) -> Cmd,
    ) -> Result<Output, BackendError> {
        let mut f = self.fleet.lock().await;
        let line = |s: &str| Output::new(format!("(managed mesh stand-in) {s}"), "");
        match op {
            FleetOp::EnableMesh => {
                f.enabled = true;
                Ok(Output::new(
                    "(stand-in) gcloud container fleet mesh enable",
                    "Waiting for Feature Service Mesh to be created...done.\n",
                ))
            }
            FleetOp::Register {
                cluster,
                membership,
            } => {
                f.memberships
                    .insert(membership.clone(), (cluster.clone(), false));
                Ok(Output::new("(stand-in) gcloud container fleet memberships register", "Waiting for membership to be created...done.\nFinished registering to the Fleet.\n"))
            }
            FleetOp::MeshUpdate { membership } => {
                let Some((cluster, managed)) = f.memberships.get_mut(membership) else {
                    return Err(BackendError::Procedure {
                        command: "gcloud container fleet mesh update".into(),
                        message: format!("membership {membership} not found"),
                    });
                };
                *managed = true;
                if self.refused(cluster) {
                    // The managed control plane is never installed; describe tells why.
                    return Ok(Output::new(
                        "(stand-in) gcloud container fleet mesh update --management automatic",
                        "Waiting for Feature Service Mesh to be updated...done.\n",
                    ));
                }
                let istio = ops
                    .list(cluster, Some("istio-system"), "Deployment")
                    .await
                    .map(|ds| runs_istio(&ds))
                    .unwrap_or(false);
                let (ops, cmd) = (ops.clone(), managed_install(cluster, !istio));
                // As on GKE, the update returns at once; the control plane comes up behind it.
                tokio::spawn(async move {
                    if let Err(e) = ops.run(cmd).await {
                        tracing::error!("installing the managed-mesh stand-in: {e}");
                    }
                });
                Ok(Output::new(
                    "(stand-in) gcloud container fleet mesh update --management automatic",
                    "Waiting for Feature Service Mesh to be updated...done.\n",
                ))
            }
            FleetOp::Unregister { membership } => {
                f.memberships.remove(membership);
                Ok(line(&format!("membership {membership} unregistered")))
            }
            FleetOp::DisableMesh => {
                f.enabled = false;
                Ok(line("mesh feature disabled"))
            }
        }
    }

    /// `gcloud container fleet mesh describe` as the stand-in answers it.
    pub async fn describe(&self, ops: &ClusterOps, project: &str) -> Result<String, BackendError> {
        let mut f = self.fleet.lock().await;
        let mut states = Vec::new();
        let memberships = f.memberships.clone();
        for (m, (cluster, managed)) in &memberships {
            let pool = self.pools.get(cluster).copied().unwrap_or(true);
            // Readiness is read only where a managed control plane was installed.
            let ready = *managed && !self.refused(cluster) && {
                let ds = ops
                    .list(cluster, Some("istio-system"), "Deployment")
                    .await
                    .unwrap_or_default();
                managed_control_plane_available(&ds)
            };
            let since = ready.then(|| {
                f.first_ready
                    .entry(m.clone())
                    .or_insert_with(std::time::Instant::now)
                    .elapsed()
            });
            let ready = meshmig_core::fleet::flapped_ready(
                since.is_some(),
                self.flap.as_ref(),
                since.unwrap_or_default(),
            );
            let st = stand_in_state(*managed, ready, pool, self.fault.as_ref());
            states.push((m.clone(), st));
        }
        Ok(describe_yaml(project, "000000000000", f.enabled, &states))
    }

    /// Memberships and whether the mesh feature is enabled.
    pub async fn state(&self) -> (Vec<String>, bool) {
        let f = self.fleet.lock().await;
        (f.memberships.keys().cloned().collect(), f.enabled)
    }

    /// Forgets everything (teardown); what it removed, for the teardown report.
    pub async fn clear(&self) -> Vec<String> {
        let mut f = self.fleet.lock().await;
        f.enabled = false;
        std::mem::take(&mut f.memberships)
            .into_keys()
            .map(|m| format!("stand-in membership {m}"))
            .collect()
    }
}
