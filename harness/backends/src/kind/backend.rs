//! The kind backend itself: starting a run (its kubeconfig, cloud-provider-kind's container
//! kept alive, the embedded DNS server), the [`Backend`] operations, and the GCE metadata
//! stand-in that lets every frontend print its cluster's name.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::cloud_provider::CloudProvider;
use super::commands::Commands;
use super::kit_registry::KitRegistry;
use super::node_lb::{self, NodeLoadBalancers};
use super::{KindConfig, CLOUD_PROVIDER_CHECK_EVERY};
use crate::clusters::{ClusterOps, Creations, FleetStandIn, KubeHooks};
use crate::exec::{Exec, Process};
use crate::kube::FIELD_MANAGER;
use crate::witness::{self, Witness, Witnesses};
use crate::{
    Backend, BackendError, FleetOp, Inventory, Kubernetes, Output, Scratch, TeardownReport,
};
use meshmig_core::dns::DnsServer;
use meshmig_core::manifest::{parse, Object};
use meshmig_core::scenario::{ClusterSpec, Scenario};

/// The kind backend.
pub struct Kind {
    pub(super) cfg: KindConfig,
    clusters: Vec<ClusterSpec>,
    pub(super) ops: Arc<ClusterOps>,
    pub(super) scratch: Scratch,
    pub(super) creations: Creations,
    pub(super) fleet: FleetStandIn,
    pub(super) dns: DnsServer,
    pub(super) cloud_provider: Arc<CloudSlot>,
    /// With a kit: what it runs beside the clusters (made when the first cluster exists, since
    /// kind creates its network then).
    pub(super) kit_services: tokio::sync::OnceCell<KitServices>,
    witnesses: Witnesses,
}

/// Who answers the checks on kind: kind, the clusters' real API servers, istiod and the
/// gateways' Envoy behind cloud-provider-kind's load balancers; the harness's stand-ins for the
/// fleet and DNS.
fn witnesses(cfg: &KindConfig) -> Witnesses {
    let node = cfg
        .node_image
        .clone()
        .unwrap_or_else(|| "the kind release's default node image".into());
    Witnesses {
        cluster_list: Witness::real("kind get clusters"),
        kubeconfig: Witness::real("kubectl's contexts, written by kind"),
        kubernetes_api: Witness::real(format!("the kind cluster's kube-apiserver ({node})")),
        fleet: witness::fleet_stand_in(),
        dns: witness::embedded_dns(),
        data_plane: Witness::real(match cfg.kit {
            None => "cloud-provider-kind's load balancer and the ingress gateway's Envoy, fed by istiod".to_string(),
            Some(_) => "kube-proxy on the node (the load-balancer address given by meshmig's node load balancer, in place of cloud-provider-kind) and the ingress gateway's Envoy, fed by istiod".to_string(),
        }),
        inventory: Witness::stand_in(
            "kind get clusters and the container engine (real), the fleet stand-in's records",
        ),
        routes: Some(Witness::real(format!(
            "the gateway pods' Envoy config_dump, read with istioctl proxy-config all ({}), fed by istiod",
            cfg.istioctl.display()
        ))),
        proxy_status: Some(Witness::real(format!(
            "istioctl proxy-status ({}), answered by each istiod pod",
            cfg.istioctl.display()
        ))),
        commands: vec![
            (
                "istioctl",
                Witness::real(format!("istioctl ({})", cfg.istioctl.display())),
            ),
            ("kubectl", Witness::real("kubectl")),
            ("kind", Witness::real("kind")),
        ],
    }
}

impl Kind {
    /// Starts a run: its kubeconfig, cloud-provider-kind (its container checked alive), the
    /// embedded DNS server.
    pub async fn start(cfg: KindConfig, s: &Scenario) -> Result<Self, BackendError> {
        let scratch = Scratch::create("meshmig-kind-")?;
        let kubeconfig = scratch.path().join("kubeconfig");
        let mut env: std::collections::BTreeMap<String, PathBuf> =
            [("KUBECONFIG".to_string(), kubeconfig.clone())].into();
        env.extend(
            cfg.kind_env()
                .into_iter()
                .map(|(k, v)| (k, PathBuf::from(v))),
        );
        let exec: Arc<dyn Exec> = Arc::new(Process { env });
        // A kit's nodes get load-balancer addresses from the node load balancer instead.
        let cloud = match cfg.kit {
            Some(_) => None,
            None => {
                let log = scratch.path().join("cloud-provider-kind.log");
                Some(CloudProvider::start(&cfg.run_id, &log).await?)
            }
        };
        Self::assemble(cfg, s, exec, scratch, cloud).await
    }

    /// A run whose commands (kind, kubectl, istioctl, docker) all go through `exec`, in
    /// `scratch`, with no cloud-provider-kind container of its own: what the tests drive with
    /// recorded outputs.
    pub async fn with_exec(
        cfg: KindConfig,
        s: &Scenario,
        exec: Arc<dyn Exec>,
        scratch: tempfile::TempDir,
    ) -> Result<Self, BackendError> {
        Self::assemble(cfg, s, exec, Scratch::from(scratch), None).await
    }

    async fn assemble(
        cfg: KindConfig,
        s: &Scenario,
        exec: Arc<dyn Exec>,
        scratch: Scratch,
        cloud: Option<CloudProvider>,
    ) -> Result<Self, BackendError> {
        let kubeconfig = scratch.path().join("kubeconfig");
        let dns = DnsServer::start(Ipv4Addr::LOCALHOST, &s.dns.domain)
            .await
            .map_err(|e| {
                BackendError::infra(
                    "starting the embedded DNS server",
                    meshmig_core::error_chain(&e),
                )
            })?;
        let cloud_provider = Arc::new(CloudSlot(std::sync::Mutex::new(cloud.map(Arc::new))));
        let hooks = KindHooks {
            cloud: cloud_provider.clone(),
            cfg: cfg.clone(),
            zones: s
                .clusters
                .iter()
                .map(|c| (c.name.clone(), c.zone.clone()))
                .collect(),
            archive: scratch.path().join("metadata-image.tar"),
        };
        Ok(Self {
            witnesses: witnesses(&cfg),
            ops: Arc::new(
                ClusterOps::new(exec, kubeconfig, cfg.ready_timeout).with_hooks(Arc::new(hooks)),
            ),
            scratch,
            clusters: s.clusters.clone(),
            cfg,
            creations: Creations::default(),
            fleet: FleetStandIn::new(s),
            dns,
            cloud_provider,
            kit_services: tokio::sync::OnceCell::new(),
        })
    }

    /// After a kit's cluster is created: the kit's archives loaded into it, the kit's aliases
    /// given on each node, and its control-plane node watched for LoadBalancer Services.
    async fn prepare_kit_cluster(&self, name: &str) -> Result<(), BackendError> {
        let Some(kit) = &self.cfg.kit else {
            return Ok(());
        };
        let cmds = self.cmds();
        for archive in &kit.archives {
            self.ops.run(cmds.load_archive(archive, name)).await?;
        }
        let nodes: Vec<String> = self
            .ops
            .run(cmds.nodes(name))
            .await?
            .stdout
            .lines()
            .filter_map(node_name)
            .collect();
        for node in &nodes {
            for alias in &kit.aliases {
                self.ops.run(cmds.alias(node, alias)).await?;
            }
        }
        let control_plane = nodes
            .iter()
            .find(|n| n.ends_with("-control-plane"))
            .ok_or_else(|| {
                BackendError::infra(
                    format!("finding the control-plane node of {}", cmds.cluster(name)),
                    format!("kind get nodes lists {nodes:?}"),
                )
            })?;
        let engine = self.cfg.engine();
        let services = self
            .kit_services
            .get_or_try_init(|| async {
                let network = node_lb::kind_network(&self.ops, engine).await?;
                let lbs = NodeLoadBalancers::new(engine, &network)?;
                let registry = match &kit.registry {
                    None => None,
                    Some(r) => {
                        let gateway = node_lb::ipv4_gateway(&network).ok_or_else(|| {
                            BackendError::infra(
                                "starting the run's registry",
                                "the kind network has no IPv4 gateway",
                            )
                        })?;
                        Some(KitRegistry::start(&self.ops, &r.crane, gateway, &r.images).await?)
                    }
                };
                Ok::<_, BackendError>(KitServices { lbs, registry })
            })
            .await?;
        if let (Some(registry), Some(r)) = (&services.registry, &kit.registry) {
            registry
                .configure_nodes(&self.ops, engine, &nodes, &r.images)
                .await?;
        }
        services.lbs.watch(
            self.ops.clone(),
            &[name.to_string(), cmds.kind_context(name)],
            control_plane,
        );
        Ok(())
    }

    fn cloud(&self) -> Option<Arc<CloudProvider>> {
        self.cloud_provider.get()
    }

    /// Runs a step's operation while cloud-provider-kind is alive: checked before it starts and
    /// every [`CLOUD_PROVIDER_CHECK_EVERY`] while it runs (a wait for LoadBalancer addresses
    /// stops at once when it dies, with an infrastructure error naming it).
    async fn guarded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let Some(cp) = self.cloud() else {
            return op.await;
        };
        cp.check().await?;
        tokio::select! {
            r = op => r,
            e = cp.died(CLOUD_PROVIDER_CHECK_EVERY) => Err(e.into()),
        }
    }

    /// Runs an operation that must not be abandoned half-way (creating or deleting a cluster:
    /// an abandoned `kind create` could finish after teardown listed the clusters) once
    /// cloud-provider-kind is known to be alive.
    async fn checked<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        if let Some(cp) = self.cloud() {
            cp.check().await?;
        }
        op.await
    }

    /// The kind names of every cluster the run declares.
    pub(super) fn kind_clusters(&self) -> Vec<String> {
        self.clusters
            .iter()
            .map(|c| self.cmds().cluster(&c.name))
            .collect()
    }

    pub(super) fn cmds(&self) -> Commands<'_> {
        Commands::new(&self.cfg, &self.ops.kubeconfig)
    }

    pub(super) async fn listed(&self) -> Result<Vec<String>, BackendError> {
        let out = self.ops.run(self.cmds().get_clusters()).await?;
        let suffix = format!("-{}", self.cfg.run_id);
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_suffix(&suffix))
            .map(str::to_string)
            .collect())
    }
}

/// A node's name from a line `kind get nodes` prints; None for kind's notes, which its podman
/// provider prints among them ("using podman due to KIND_EXPERIMENTAL_PROVIDER", "enabling
/// experimental podman provider").
pub fn node_name(line: &str) -> Option<String> {
    let l = line.trim();
    (!l.is_empty() && !l.contains(char::is_whitespace)).then(|| l.to_string())
}

/// What a kit's run runs beside its clusters: the load-balancer addresses, and the registry.
pub(super) struct KitServices {
    pub(super) lbs: NodeLoadBalancers,
    pub(super) registry: Option<KitRegistry>,
}

/// Where a run keeps its cloud-provider-kind (taken out at teardown).
pub(super) struct CloudSlot(std::sync::Mutex<Option<Arc<CloudProvider>>>);

impl CloudSlot {
    fn get(&self) -> Option<Arc<CloudProvider>> {
        self.0
            .lock()
            .expect("cloud-provider lock is never poisoned")
            .clone()
    }

    /// Takes it out (teardown stops it).
    pub(super) fn take(&self) -> Option<Arc<CloudProvider>> {
        self.0
            .lock()
            .expect("cloud-provider lock is never poisoned")
            .take()
    }
}

/// kind's [`KubeHooks`]: every Kubernetes call while cloud-provider-kind is alive (checked before
/// it starts and every [`CLOUD_PROVIDER_CHECK_EVERY`] while it runs), and an apply followed by
/// the GCE metadata stand-in for the applied frontends.
struct KindHooks {
    cloud: Arc<CloudSlot>,
    cfg: KindConfig,
    /// Cluster name → zone, for the metadata stand-in's answers.
    zones: BTreeMap<String, String>,
    archive: PathBuf,
}

#[async_trait]
impl KubeHooks for KindHooks {
    async fn check(&self) -> Result<(), BackendError> {
        match self.cloud.get() {
            Some(cp) => Ok(cp.check().await?),
            None => Ok(()),
        }
    }

    async fn died(&self) -> BackendError {
        match self.cloud.get() {
            Some(cp) => cp.died(CLOUD_PROVIDER_CHECK_EVERY).await.into(),
            None => std::future::pending().await,
        }
    }

    async fn apply(
        &self,
        ops: &ClusterOps,
        cluster: &str,
        namespace: Option<&str>,
        objects: &[Object],
    ) -> Result<Output, BackendError> {
        let out = ops
            .apply_as(cluster, namespace, objects, FIELD_MANAGER)
            .await?;
        self.attach_metadata(ops, cluster, namespace.unwrap_or("default"), objects)
            .await?;
        Ok(out)
    }
}

impl KindHooks {
    /// Runs the GCE metadata stand-in for the frontends of `namespace` and points them at it.
    async fn attach_metadata(
        &self,
        ops: &ClusterOps,
        cluster: &str,
        namespace: &str,
        objects: &[Object],
    ) -> Result<(), BackendError> {
        let Some(image) = &self.cfg.metadata_image else {
            return Ok(());
        };
        let zone = self.zones.get(cluster).cloned().unwrap_or_default();
        let Some(overlay) = metadata_overlay(objects, cluster, &zone, image, namespace)
            .map_err(|e| BackendError::infra("building the metadata stand-in", e))?
        else {
            return Ok(());
        };
        let cmds = Commands::new(&self.cfg, &ops.kubeconfig);
        // A kit's own stand-in image is among the archives loaded when the cluster was created.
        if self
            .cfg
            .kit
            .as_ref()
            .is_none_or(|k| &k.metadata_image != image)
        {
            for cmd in cmds.load_image(image, cluster, &self.archive) {
                ops.run(cmd).await?;
            }
        }
        ops.apply_as(
            cluster,
            Some(METADATA_NAMESPACE),
            &overlay.stand_in,
            FIELD_MANAGER,
        )
        .await?;
        ops.apply_as(
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
) -> Result<Option<MetadataOverlay>, meshmig_core::manifest::ManifestError> {
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

    fn kubernetes(&self) -> &dyn Kubernetes {
        self.ops.as_ref()
    }

    /// The running gateway pods Gateway `namespace/gateway` selects, and their Envoy's
    /// `config_dump` as `istioctl proxy-config all` prints it.
    async fn gateway_routes(
        &self,
        cluster: &str,
        namespace: &str,
        gateway: &str,
    ) -> Result<Option<crate::GatewayDumps>, BackendError> {
        let istioctl = self.cfg.istioctl.display().to_string();
        crate::gateway_config::gateway_dumps(&self.ops, &istioctl, cluster, namespace, gateway)
            .await
            .map(Some)
    }

    /// `istioctl proxy-status` for each revision whose istiod pods run, port-forwarded to them.
    async fn proxy_status(
        &self,
        cluster: &str,
    ) -> Result<Option<crate::proxy_status::ProxyStatus>, BackendError> {
        crate::proxy_status::ask_every_revision(
            &self.ops,
            &self.cfg.istioctl.display().to_string(),
            cluster,
        )
        .await
        .map(Some)
    }

    fn witnesses(&self) -> &Witnesses {
        &self.witnesses
    }

    /// After an apply returns, istiod still has to push the routes to the gateway: checks that
    /// read the data plane once ask again for up to a minute.
    fn convergence(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn create_cluster(&self, spec: &ClusterSpec) -> Result<Output, BackendError> {
        self.checked(async {
            let all = self
                .clusters
                .iter()
                .map(|c| (c.name.clone(), self.cmds().create(&c.name)))
                .collect();
            let out = self.creations.create(&spec.name, &self.ops, all).await?;
            self.prepare_kit_cluster(&spec.name).await?;
            Ok(out)
        })
        .await
    }

    async fn delete_cluster(&self, name: &str) -> Result<Output, BackendError> {
        self.checked(async {
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
            if let Some(k) = self.kit_services.get() {
                k.lbs.unwatch(name);
            }
            let out = self.ops.run(cmd).await?;
            self.ops.forget(name).await;
            Ok(out)
        })
        .await
    }

    async fn clusters(&self) -> Result<BTreeMap<String, String>, BackendError> {
        Ok(self
            .listed()
            .await?
            .into_iter()
            .map(|c| (c, "RUNNING".to_string()))
            .collect())
    }

    /// Once every creation has ended: `kind create cluster` writes the kubeconfig when it ends,
    /// under a lock file that a concurrent rename would race with (issue 8, item 9).
    async fn rename_context(&self, cluster: &str) -> Result<Output, BackendError> {
        self.creations.settle().await;
        self.ops.run(self.cmds().rename_context(cluster)).await
    }

    async fn contexts(&self) -> Result<Vec<String>, BackendError> {
        self.ops.contexts(self.cmds().get_contexts()).await
    }

    async fn install_istio(&self, cluster: &str, profile: &str) -> Result<Output, BackendError> {
        self.guarded(
            self.ops
                .install_istio(self.cmds().istio_install(cluster, profile), cluster),
        )
        .await
    }

    async fn fleet(&self, op: &FleetOp) -> Result<Output, BackendError> {
        let cmds = self.cmds();
        self.guarded(self.fleet.op(&self.ops, op, |cluster, tag_default| {
            cmds.managed_install(cluster, tag_default)
        }))
        .await
    }

    async fn mesh_describe(&self) -> Result<String, BackendError> {
        self.fleet.describe(&self.ops, "kind").await
    }

    async fn dns_set(
        &self,
        domain: &str,
        address: IpAddr,
        ttl: u32,
    ) -> Result<Output, BackendError> {
        crate::embedded_dns_set(&self.dns, domain, address, ttl).await
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
        self.tear_down(keep).await
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
