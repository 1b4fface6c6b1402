//! The kind backend: the procedure on two real kind clusters with real Istio and real Online
//! Boutique images, as most users run it (GitHub Actions, or a laptop with Docker).
//!
//! - Both clusters are created concurrently (the first create step starts all of them; each
//!   create step waits for its own) with `kind create cluster --name NAME-RUN --config
//!   kind-configs/NAME.yaml` into the run's own kubeconfig; contexts are renamed to the
//!   procedure's names (`kind-NAME-RUN` → `NAME`).
//! - LoadBalancer Services get addresses on the `kind` docker network from cloud-provider-kind,
//!   started for the run, so the Istio cluster's gateway reaches the other cluster's gateway.
//! - Istio: istioctl of a pinned version (fetched with its checksum) or from PATH.
//! - The managed mesh stand-in: on `fleet mesh update`, an Istio control plane of revision
//!   `asm-managed` with no gateways is installed in the cluster, so `istio.io/rev=asm-managed`
//!   namespaces and the `image: auto` gateway are injected as on managed CSM; the describe
//!   output reports PROVISIONING until `istiod-asm-managed` is Available, then ACTIVE.
//! - Cluster identity: with `--metadata-image`, a GCE metadata stand-in (`meshmig
//!   metadata-server`, saved with `docker save` and loaded with `kind load image-archive`) runs in
//!   its own namespace (Online Boutique's Deployments stay 12) and the
//!   frontends get `GCE_METADATA_HOST`, so every frontend version prints its cluster's name;
//!   without it the pod-name mapping still attributes answers.
//! - Teardown deletes the run's clusters and checks `kind get clusters` no longer lists them.
//!
//! Not run on the machine where it was written (no container engine there): proven by plan
//! snapshots and the mock-API tests of the Kubernetes layer; `.github/workflows/e2e-kind.yml`
//! runs it for real.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::clusters::{ClusterOps, FleetStandIn};
use super::exec::{Cmd, Exec, Process};
use super::{Backend, BackendError, FleetOp, Inventory, Output, Scratch, TeardownReport};
use crate::dns::DnsServer;
use crate::manifest::{parse, Object};
use crate::scenario::{Action, ClusterSpec, Scenario};

pub use super::clusters::MANAGED_REVISION;

/// How a kind run is set up.
#[derive(Debug, Clone)]
pub struct KindConfig {
    /// The run id (cluster names).
    pub run_id: String,
    /// The folder of kind cluster configurations (`NAME.yaml` per cluster).
    pub config_dir: PathBuf,
    /// The istioctl binary (already resolved).
    pub istioctl: PathBuf,
    /// A GCE metadata stand-in image to load into the clusters.
    pub metadata_image: Option<String>,
    /// How long to wait for Deployments and load balancers.
    pub ready_timeout: Duration,
}

impl KindConfig {
    /// A configuration with a new run id.
    pub fn new(config_dir: &Path, istioctl: &Path) -> Self {
        Self {
            run_id: super::gke::new_run_id(),
            config_dir: config_dir.to_path_buf(),
            istioctl: istioctl.to_path_buf(),
            metadata_image: None,
            ready_timeout: Duration::from_secs(10 * 60),
        }
    }
}

/// Procedure names → kind names, and the commands of each action.
pub struct Commands<'a> {
    cfg: &'a KindConfig,
    kubeconfig: &'a Path,
}

impl<'a> Commands<'a> {
    /// Commands of a run.
    pub fn new(cfg: &'a KindConfig, kubeconfig: &'a Path) -> Self {
        Self { cfg, kubeconfig }
    }

    /// The kind cluster name.
    pub fn cluster(&self, name: &str) -> String {
        format!("{name}-{}", self.cfg.run_id)
    }

    /// `kind create cluster`.
    pub fn create(&self, name: &str) -> Cmd {
        Cmd::new(
            "kind",
            [
                "create".to_string(),
                "cluster".into(),
                "--name".into(),
                self.cluster(name),
                "--config".into(),
                self.cfg
                    .config_dir
                    .join(format!("{name}.yaml"))
                    .display()
                    .to_string(),
                "--kubeconfig".into(),
                self.kubeconfig.display().to_string(),
                "--wait".into(),
                "5m".into(),
            ],
        )
    }

    /// The context kind writes.
    pub fn kind_context(&self, name: &str) -> String {
        format!("kind-{}", self.cluster(name))
    }

    /// A2, C2.
    pub fn rename_context(&self, name: &str) -> Cmd {
        Cmd::new(
            "kubectl",
            ["config", "rename-context", &self.kind_context(name), name],
        )
    }

    /// A3.
    pub fn get_contexts(&self) -> Cmd {
        Cmd::new("kubectl", ["config", "get-contexts", "--output=name"])
    }

    fn istioctl(&self, args: &[&str]) -> Cmd {
        Cmd::new(
            &self.cfg.istioctl.display().to_string(),
            args.iter().copied(),
        )
    }

    /// A4.
    pub fn istio_install(&self, context: &str, profile: &str) -> Cmd {
        self.istioctl(&[
            "install",
            &format!("--context={context}"),
            "--set",
            &format!("profile={profile}"),
            "-y",
        ])
    }

    /// The managed-mesh stand-in: a control plane of revision asm-managed, no gateways.
    pub fn managed_install(&self, context: &str) -> Cmd {
        let args = super::clusters::managed_install_args(context);
        self.istioctl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Loads the GCE metadata stand-in image into a cluster.
    ///
    /// `docker save` then `kind load image-archive`: `kind load docker-image` fails with Docker's
    /// containerd image store, the default since Docker 29 (kind#3795).
    pub fn load_image(&self, image: &str, name: &str, archive: &Path) -> [Cmd; 2] {
        let archive = archive.display().to_string();
        [
            Cmd::new("docker", ["save", "-o", &archive, image]),
            Cmd::new(
                "kind",
                [
                    "load",
                    "image-archive",
                    &archive,
                    "--name",
                    &self.cluster(name),
                ],
            ),
        ]
    }

    /// G4, H.
    pub fn delete(&self, name: &str) -> Cmd {
        Cmd::new(
            "kind",
            [
                "delete".to_string(),
                "cluster".into(),
                "--name".into(),
                self.cluster(name),
                "--kubeconfig".into(),
                self.kubeconfig.display().to_string(),
            ],
        )
    }

    /// `kind get clusters`.
    pub fn get_clusters(&self) -> Cmd {
        Cmd::new("kind", ["get", "clusters"])
    }
}

/// What a step does on kind, as lines.
pub fn plan_action(c: &Commands<'_>, s: &Scenario, a: &Action) -> Vec<String> {
    let cmd = |c: Cmd| format!("$ {}", c.line());
    match a {
        Action::CreateCluster { cluster } => {
            let mut v: Vec<String> = Vec::new();
            if s.clusters.first().is_some_and(|f| &f.name == cluster) {
                v.push(format!("(starts creating all {} clusters concurrently)", s.clusters.len()));
                v.extend(s.clusters.iter().map(|k| cmd(c.create(&k.name))));
            } else {
                v.push(format!("(waits for the creation of {cluster} started by the first create step)"));
            }
            v
        }
        Action::RenameContext { cluster } => vec![cmd(c.rename_context(cluster)), cmd(c.get_contexts())],
        Action::InstallIstio { cluster, profile } => vec![
            cmd(c.istio_install(cluster, profile)),
            format!("api: wait until Deployments in istio-system are Available and istio-ingressgateway has an ingress IP ({cluster})"),
        ],
        Action::FleetEnableMesh => vec!["stand-in: fleet mesh feature enabled".into()],
        Action::FleetRegister { cluster, membership } => vec![format!("stand-in: membership {membership} → {cluster}")],
        Action::FleetMeshUpdate { membership } => vec![format!(
            "stand-in: in the background, {} (cluster of {membership})",
            cmd(c.managed_install("CLUSTER"))
        )],
        Action::WaitMeshActive { membership, .. } => vec![format!(
            "stand-in describe, repeated with backoff: {membership} ACTIVE once Deployment istio-system/istiod-{MANAGED_REVISION} is Available"
        )],
        Action::CreateNamespace { cluster, name } => vec![format!("api: create Namespace {name} ({cluster})")],
        Action::LabelNamespace { cluster, name, labels } => vec![format!("api: merge-patch Namespace {name} labels {labels:?} ({cluster})")],
        Action::Apply { cluster, namespace, manifests, .. } => {
            let mut v: Vec<String> = manifests
                .iter()
                .map(|m| format!("api: server-side apply {m} (discovery per group/version) ({cluster}, namespace {})", namespace.as_deref().unwrap_or("default")))
                .collect();
            v.push(format!("api: wait until applied Deployments are Available and LoadBalancers have an ingress IP ({cluster})"));
            v.push("with --metadata-image: $ docker save -o RUN/metadata-image.tar IMAGE; $ kind load image-archive RUN/metadata-image.tar --name CLUSTER; api: apply Namespace meshmig-metadata with the gce-metadata Deployment and Service; apply GCE_METADATA_HOST on the frontend as field manager meshmig-metadata".into());
            v
        }
        Action::Delete { cluster, namespace, kind, name } => vec![format!("api: delete {kind} {namespace}/{name} and wait until it is gone ({cluster})")],
        Action::ReadIngressIp { cluster, namespace, save_as } => vec![format!("api: list Services in {namespace}, .items[0] ingress IP → {save_as} ({cluster})")],
        Action::DnsSetRecord { address, ttl } => vec![format!("embedded DNS: {}. {ttl} IN A {address}", s.dns.domain)],
        Action::WaitDnsTtl | Action::WaitTtl { .. } => vec![crate::plan::action_line(s, a)],
        Action::DeleteCluster { name } => vec![cmd(c.get_clusters()), format!("{} (when listed; else NotFound as gcloud answers)", cmd(c.delete(name)))],
        Action::FleetUnregister { membership } => vec![format!("stand-in: membership {membership} removed")],
        Action::FleetDisableMesh => vec!["stand-in: fleet mesh feature disabled".into()],
    }
}

/// The whole plan for kind.
pub fn plan(cfg: &KindConfig, s: &Scenario) -> String {
    let kc = PathBuf::from("RUN/kubeconfig");
    let c = Commands::new(cfg, &kc);
    let mut out = format!(
        "plan: scenario {} on backend kind (run {}, kubeconfig of its own)\n",
        s.name, cfg.run_id
    );
    out.push_str(
        "before: $ cloud-provider-kind   (kept running for the run: LoadBalancer addresses)\n",
    );
    for step in &s.steps {
        out.push_str(&format!("{} {}\n", step.id, step.title));
        if let Some(a) = &step.run {
            for l in plan_action(&c, s, a) {
                out.push_str(&format!("    {l}\n"));
            }
        }
        for ch in &step.check {
            out.push_str(&format!("    check {}\n", crate::plan::check_line(ch)));
        }
    }
    out.push_str(&format!(
        "teardown (always):\n    $ {}\n    $ kind delete cluster --name NAME-{} --kubeconfig RUN/kubeconfig   (each cluster of the run listed)\n    $ {}   (must no longer list them)\n    stop cloud-provider-kind\n",
        c.get_clusters().line(),
        cfg.run_id,
        c.get_clusters().line()
    ));
    out
}

type Creation = tokio::task::JoinHandle<Result<Output, BackendError>>;

/// The kind backend.
pub struct Kind {
    cfg: KindConfig,
    clusters: Vec<ClusterSpec>,
    ops: Arc<ClusterOps>,
    scratch: Scratch,
    creating: Mutex<BTreeMap<String, Creation>>,
    fleet: FleetStandIn,
    dns: DnsServer,
    cloud_provider: Mutex<Option<tokio::process::Child>>,
}

impl Kind {
    /// Starts a run: its kubeconfig, cloud-provider-kind, the embedded DNS server.
    pub async fn start(cfg: KindConfig, s: &Scenario) -> Result<Self, BackendError> {
        let scratch = Scratch::create("meshmig-kind-")?;
        let kubeconfig = scratch.path().join("kubeconfig");
        let exec: Arc<dyn Exec> = Arc::new(Process {
            env: [("KUBECONFIG".to_string(), kubeconfig.clone())].into(),
        });
        let cloud = tokio::process::Command::new("cloud-provider-kind")
            .stdout(
                std::fs::File::create(scratch.path().join("cloud-provider-kind.log"))
                    .map_err(|e| BackendError::infra("creating the cloud-provider-kind log", e))?,
            )
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BackendError::MissingTool {
                doing: "starting cloud-provider-kind (LoadBalancer addresses)".into(),
                tool: "cloud-provider-kind".into(),
                hint: format!("go install sigs.k8s.io/cloud-provider-kind@latest ({e})"),
            })?;
        let dns = DnsServer::start(Ipv4Addr::LOCALHOST, &s.dns.domain)
            .await
            .map_err(|e| {
                BackendError::infra("starting the embedded DNS server", crate::error_chain(&e))
            })?;
        Ok(Self {
            ops: Arc::new(ClusterOps::new(exec, kubeconfig, cfg.ready_timeout)),
            scratch,
            clusters: s.clusters.clone(),
            cfg,
            creating: Mutex::new(BTreeMap::new()),
            fleet: FleetStandIn::new(s),
            dns,
            cloud_provider: Mutex::new(Some(cloud)),
        })
    }

    fn cmds(&self) -> Commands<'_> {
        Commands::new(&self.cfg, &self.ops.kubeconfig)
    }

    async fn listed(&self) -> Result<Vec<String>, BackendError> {
        let out = self.ops.run(self.cmds().get_clusters()).await?;
        let suffix = format!("-{}", self.cfg.run_id);
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_suffix(&suffix))
            .map(str::to_string)
            .collect())
    }

    /// Runs the GCE metadata stand-in for the frontends of `namespace` and points them at it.
    async fn attach_metadata(
        &self,
        cluster: &str,
        namespace: &str,
        objects: &[Object],
    ) -> Result<(), BackendError> {
        let Some(image) = &self.cfg.metadata_image else {
            return Ok(());
        };
        let zone = self
            .clusters
            .iter()
            .find(|c| c.name == cluster)
            .map(|c| c.zone.clone())
            .unwrap_or_default();
        let Some(overlay) = metadata_overlay(objects, cluster, &zone, image, namespace)
            .map_err(|e| BackendError::infra("building the metadata stand-in", e))?
        else {
            return Ok(());
        };
        let archive = self.scratch.path().join("metadata-image.tar");
        for cmd in self.cmds().load_image(image, cluster, &archive) {
            self.ops.run(cmd).await?;
        }
        self.ops
            .apply(cluster, Some(METADATA_NAMESPACE), &overlay.stand_in)
            .await?;
        self.ops
            .apply_as(
                cluster,
                Some(namespace),
                &overlay.frontend_env,
                METADATA_FIELD_MANAGER,
            )
            .await?;
        Ok(())
    }
}

/// The namespace of the GCE metadata stand-in: not Online Boutique's, whose Deployments the
/// procedure counts (12).
pub const METADATA_NAMESPACE: &str = "meshmig-metadata";

/// The field manager of the frontend's `GCE_METADATA_HOST`: not the one that applied the
/// frontend, since under server-side apply a manager's apply removes every field it no longer
/// sends (selector, image, ports…) and the API server refuses the result.
pub const METADATA_FIELD_MANAGER: &str = "meshmig-metadata";

/// What attaching the metadata stand-in applies.
#[derive(Debug, Clone)]
pub struct MetadataOverlay {
    /// Namespace, Deployment and Service of the stand-in, in [`METADATA_NAMESPACE`].
    pub stand_in: Vec<Object>,
    /// The frontend Deployment with only its container's `GCE_METADATA_HOST` (applied as
    /// [`METADATA_FIELD_MANAGER`]).
    pub frontend_env: Vec<Object>,
}

/// The metadata stand-in for the frontend among `objects` (None when there is none).
pub fn metadata_overlay(
    objects: &[Object],
    cluster: &str,
    zone: &str,
    image: &str,
    namespace: &str,
) -> Result<Option<MetadataOverlay>, crate::manifest::ManifestError> {
    let Some(frontend) = objects.iter().find(|o| {
        o.kind == "Deployment"
            && o.body["spec"]["template"]["spec"]["containers"]
                .as_array()
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["image"]
                            .as_str()
                            .is_some_and(|i| i.contains("/frontend:"))
                    })
                })
    }) else {
        return Ok(None);
    };
    let server = frontend.body["spec"]["template"]["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or("server");
    let ns = METADATA_NAMESPACE;
    let stand_in = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: gce-metadata\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels: {{app: gce-metadata}}\n  template:\n    metadata:\n      labels: {{app: gce-metadata}}\n      annotations: {{sidecar.istio.io/inject: \"false\"}}\n    spec:\n      containers:\n        - name: metadata\n          image: {image}\n          imagePullPolicy: Never\n          args: [metadata-server, --cluster-name, {cluster}, --zone, {zone}, --listen, \"0.0.0.0:8080\"]\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: gce-metadata\n  namespace: {ns}\nspec:\n  selector: {{app: gce-metadata}}\n  ports:\n    - {{name: http, port: 80, targetPort: 8080}}\n"
    );
    let env = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {}\n  namespace: {namespace}\nspec:\n  template:\n    spec:\n      containers:\n        - name: {server}\n          env:\n            - {{name: GCE_METADATA_HOST, value: \"gce-metadata.{ns}.svc.cluster.local:80\"}}\n",
        frontend.name
    );
    Ok(Some(MetadataOverlay {
        stand_in: parse(Path::new("meshmig-gce-metadata.yaml"), &stand_in)?,
        frontend_env: parse(Path::new("meshmig-gce-metadata-env.yaml"), &env)?,
    }))
}

#[async_trait]
impl Backend for Kind {
    fn name(&self) -> &'static str {
        "kind"
    }

    async fn create_cluster(&self, spec: &ClusterSpec) -> Result<Output, BackendError> {
        let mut creating = self.creating.lock().await;
        if creating.is_empty() {
            for c in &self.clusters {
                let (ops, cmd) = (self.ops.clone(), self.cmds().create(&c.name));
                creating.insert(
                    c.name.clone(),
                    tokio::spawn(async move { ops.run(cmd).await }),
                );
            }
        }
        match creating.remove(&spec.name) {
            Some(h) => h.await.map_err(|e| {
                BackendError::infra(format!("creating kind cluster {}", spec.name), e)
            })?,
            None => self.ops.run(self.cmds().create(&spec.name)).await,
        }
    }

    async fn delete_cluster(&self, name: &str) -> Result<Output, BackendError> {
        let cmd = self.cmds().delete(name);
        if !self.listed().await?.iter().any(|c| c == name) {
            return Err(BackendError::Procedure {
                command: cmd.line(),
                message: format!(
                    "Not found: cluster {} (kind get clusters does not list it)",
                    self.cmds().cluster(name)
                ),
            });
        }
        let out = self.ops.run(cmd).await?;
        self.ops.forget(name).await;
        Ok(out)
    }

    async fn clusters(&self) -> Result<BTreeMap<String, String>, BackendError> {
        Ok(self
            .listed()
            .await?
            .into_iter()
            .map(|c| (c, "RUNNING".to_string()))
            .collect())
    }

    async fn rename_context(&self, cluster: &str) -> Result<Output, BackendError> {
        self.ops.run(self.cmds().rename_context(cluster)).await
    }

    async fn contexts(&self) -> Result<Vec<String>, BackendError> {
        self.ops.contexts(self.cmds().get_contexts()).await
    }

    async fn install_istio(&self, cluster: &str, profile: &str) -> Result<Output, BackendError> {
        self.ops
            .install_istio(self.cmds().istio_install(cluster, profile), cluster)
            .await
    }

    async fn fleet(&self, op: &FleetOp) -> Result<Output, BackendError> {
        let cmds = self.cmds();
        self.fleet
            .op(&self.ops, op, |cluster| cmds.managed_install(cluster))
            .await
    }

    async fn mesh_describe(&self) -> Result<String, BackendError> {
        self.fleet.describe(&self.ops, "kind").await
    }

    async fn create_namespace(&self, cluster: &str, name: &str) -> Result<Output, BackendError> {
        self.ops.create_namespace(cluster, name).await
    }

    async fn label_namespace(
        &self,
        cluster: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Output, BackendError> {
        self.ops.label_namespace(cluster, name, labels).await
    }

    async fn apply(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        objects: &[Object],
    ) -> Result<Output, BackendError> {
        let out = self.ops.apply(cluster, namespace, objects).await?;
        self.attach_metadata(cluster, namespace.unwrap_or("default"), objects)
            .await?;
        Ok(out)
    }

    async fn delete(
        &self,
        cluster: &str,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Output, BackendError> {
        self.ops.delete(cluster, namespace, kind, name).await
    }

    async fn list(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        kind: &str,
    ) -> Result<Vec<Value>, BackendError> {
        self.ops.list(cluster, namespace, kind).await
    }

    async fn dns_set(
        &self,
        domain: &str,
        address: IpAddr,
        ttl: u32,
    ) -> Result<Output, BackendError> {
        super::embedded_dns_set(&self.dns, domain, address, ttl).await
    }

    fn dns_server(&self) -> SocketAddr {
        self.dns.addr()
    }

    async fn inventory(&self) -> Result<Inventory, BackendError> {
        let (memberships, mesh_feature_enabled) = self.fleet.state().await;
        Ok(Inventory {
            clusters: self.clusters().await?,
            memberships,
            mesh_feature_enabled,
            load_balancers: Vec::new(),
        })
    }

    async fn teardown(&self, keep: bool) -> TeardownReport {
        let mut report = TeardownReport::default();
        for (_, h) in std::mem::take(&mut *self.creating.lock().await) {
            let _ = h.await;
        }
        let listed = self.listed().await.unwrap_or_default();
        if keep {
            report.kept.extend(
                listed
                    .iter()
                    .map(|c| format!("kind cluster {}", self.cmds().cluster(c))),
            );
            report
                .kept
                .push(format!("kubeconfig {}", self.ops.kubeconfig.display()));
            self.scratch.keep();
            return report;
        }
        for c in &listed {
            match self.ops.run(self.cmds().delete(c)).await {
                Ok(_) => report
                    .removed
                    .push(format!("kind cluster {}", self.cmds().cluster(c))),
                Err(e) => report
                    .failed
                    .push(format!("kind cluster {}: {e}", self.cmds().cluster(c))),
            }
        }
        report.removed.extend(self.fleet.clear().await);
        match self.listed().await {
            Ok(left) => report
                .failed
                .extend(left.iter().map(|c| {
                    format!("LEAK: kind cluster {} still listed", self.cmds().cluster(c))
                })),
            Err(e) => report.failed.push(format!("kind get clusters: {e}")),
        }
        if let Some(mut c) = self.cloud_provider.lock().await.take() {
            let _ = c.kill().await;
            report.removed.push("cloud-provider-kind".into());
        }
        self.dns.stop().await;
        let _ = self.scratch.remove();
        report
    }

    fn scratch_paths(&self) -> Vec<PathBuf> {
        vec![self.scratch.path().to_path_buf()]
    }

    fn mesh_wait(&self, _timeout: Duration, _poll: Duration) -> (Duration, Duration) {
        (Duration::from_secs(10 * 60), Duration::from_secs(5))
    }
}

/// The GCE metadata stand-in: answers the look-ups the frontend makes (`Metadata-Flavor: Google`).
pub async fn metadata_server(
    listen: SocketAddr,
    cluster: String,
    zone: String,
) -> std::io::Result<()> {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    let zone_path = format!("projects/000000000000/zones/{zone}");
    let flavor = |h: &HeaderMap| h.get("Metadata-Flavor").is_some_and(|v| v == "Google");
    let c = cluster.clone();
    let app = axum::Router::new()
        .route(
            "/computeMetadata/v1/instance/attributes/cluster-name",
            get(move |h: HeaderMap| {
                let c = c.clone();
                async move {
                    if flavor(&h) {
                        (StatusCode::OK, c)
                    } else {
                        (StatusCode::FORBIDDEN, String::new())
                    }
                }
            }),
        )
        .route(
            "/computeMetadata/v1/instance/zone",
            get(move |h: HeaderMap| {
                let z = zone_path.clone();
                async move {
                    if flavor(&h) {
                        (StatusCode::OK, z)
                    } else {
                        (StatusCode::FORBIDDEN, String::new())
                    }
                }
            }),
        )
        .route(
            "/computeMetadata/v1/project/project-id",
            get(|| async { "kind" }),
        )
        .route(
            "/",
            get(|| async { json!({"meshmig": "gce metadata stand-in"}).to_string() }),
        );
    let l = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(l, app).await
}
