//! The kind backend: the procedure on two real kind clusters with real Istio and real Online
//! Boutique images, as most users run it (GitHub Actions, or a laptop with Docker).
//!
//! - Both clusters are created concurrently (the first create step starts all of them; each
//!   create step waits for its own) with `kind create cluster --name NAME-RUN --config
//!   kind-configs/NAME.yaml` into the run's own kubeconfig; contexts are renamed to the
//!   procedure's names (`kind-NAME-RUN` → `NAME`).
//! - LoadBalancer Services get addresses on the `kind` docker network from cloud-provider-kind,
//!   run for the run from its published image through `testcontainers` (host network, the
//!   Docker socket mounted, as its README runs it), so the Istio cluster's gateway reaches the
//!   other cluster's gateway. Its log streams to the run's scratch folder; it is checked alive
//!   before the run and throughout every step (a run whose cloud-provider-kind died fails with
//!   an infrastructure error naming it); teardown removes it and the load balancer containers
//!   it left (by their `io.x-k8s.cloud-provider-kind.cluster` label).
//! - Node images: `MESHMIG_KIND_NODE_IMAGE` (or [`KindConfig::node_image`]) is passed to
//!   `kind create cluster --image`; e2e-kind.yml pins one by digest per Istio minor.
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
//! - `meshmig gc --backend kind` ([`gc`]): clusters of crashed runs, by name and age.
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
use testcontainers::core::Mount;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};

use super::clusters::{failed, ClusterOps, Creations, FleetStandIn};
use super::exec::{Cmd, Exec, Process};
use super::gke::chrono_like::{self, Utc};
use super::{Backend, BackendError, FleetOp, Inventory, Output, Scratch, TeardownReport};
use crate::dns::DnsServer;
use crate::manifest::{parse, Object};
use crate::scenario::{Action, ClusterSpec, Scenario};

pub use super::clusters::MANAGED_REVISION;

pub mod entry;

/// Errors of the kind backend's own machinery (cloud-provider-kind's container).
#[derive(Debug, thiserror::Error)]
pub enum KindError {
    /// The cloud-provider-kind container could not be started (no reachable Docker engine, the
    /// image could not be pulled…).
    #[error("starting cloud-provider-kind from {image} (container {container})")]
    CloudProviderStart {
        /// The image.
        image: String,
        /// The container name.
        container: String,
        /// Why.
        #[source]
        source: Box<testcontainers::TestcontainersError>,
    },
    /// cloud-provider-kind is no longer running: LoadBalancer Services get no address.
    #[error("cloud-provider-kind (container {container}) is not running: {how}; its log: {}{tail}", log.display())]
    CloudProviderDied {
        /// The container name.
        container: String,
        /// What Docker says (exited with code N, or why it could not be inspected).
        how: String,
        /// Its log on this machine.
        log: PathBuf,
        /// The last lines of the log (empty, or starting with a newline).
        tail: String,
    },
    /// The cloud-provider-kind container could not be removed.
    #[error("removing the cloud-provider-kind container {container}")]
    CloudProviderRemove {
        /// The container name.
        container: String,
        /// Why.
        #[source]
        source: Box<testcontainers::TestcontainersError>,
    },
    /// The cloud-provider-kind log file could not be created.
    #[error("creating the cloud-provider-kind log {}", log.display())]
    Log {
        /// The log file.
        log: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl From<KindError> for BackendError {
    /// Every [`KindError`] is the harness's machinery failing (exit 3), never the procedure's.
    fn from(e: KindError) -> Self {
        BackendError::infra(
            "running cloud-provider-kind (LoadBalancer addresses)",
            crate::error_chain(&e),
        )
    }
}

/// cloud-provider-kind's published image: "Starting with v0.4.0, the docker image for
/// cloud-provider-kind is available at `registry.k8s.io/cloud-provider-kind/cloud-controller-manager`"
/// (kubernetes-sigs/cloud-provider-kind README.md at v0.7.0, "Running via Docker Image"), tagged
/// `vX.Y.Z` on promotion (kubernetes-sigs/cloud-provider-kind#155). v0.7.0 was promoted by
/// kubernetes/k8s.io#8331 as
/// `sha256:59d395103583174dfd5c653e08391d21dc66ea759f70a234e3f0cc87b1adedcd`.
pub const CLOUD_PROVIDER_KIND_IMAGE: &str =
    "registry.k8s.io/cloud-provider-kind/cloud-controller-manager";

/// The cloud-provider-kind release run (the one e2e-kind.yml used to `go install`).
pub const CLOUD_PROVIDER_KIND_TAG: &str = "v0.7.0";

/// The Docker socket cloud-provider-kind drives Docker through, mounted at the same path: "this
/// will require to mount the docker socket inside the container: `docker run --rm --network host
/// -v /var/run/docker.sock:/var/run/docker.sock cloud-provider-kind`" (README.md at v0.7.0).
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The label cloud-provider-kind puts on each load balancer container it creates, valued with
/// the kind cluster's name: `NodeCCMLabelKey = "io.x-k8s.cloud-provider-kind.cluster"`
/// (pkg/constants/constants.go at v0.7.0), set by `--label NodeCCMLabelKey=clusterName` in
/// `createLoadBalancer` (pkg/loadbalancer/server.go at v0.7.0).
pub const LB_CLUSTER_LABEL: &str = "io.x-k8s.cloud-provider-kind.cluster";

/// The label meshmig puts on the cloud-provider-kind container of a run (valued with the run id).
pub const RUN_LABEL: &str = "meshmig-run";

/// How often cloud-provider-kind is checked while a step runs.
pub const CLOUD_PROVIDER_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The environment variable that chooses the kind node image (`kind create cluster --image`).
pub const NODE_IMAGE_ENV: &str = "MESHMIG_KIND_NODE_IMAGE";

/// The names the procedure gives its clusters; `meshmig gc --backend kind` looks for
/// `NAME-RUN` clusters of these names by default.
pub const PROCEDURE_CLUSTERS: [&str; 2] = ["cluster-with-istio", "cluster-with-csm"];

/// The name of a run's cloud-provider-kind container.
pub fn cloud_provider_container(run_id: &str) -> String {
    format!("meshmig-cloud-provider-kind-{run_id}")
}

/// The container request of a run's cloud-provider-kind: its published image, host network and
/// the Docker socket mounted (as its README runs it), named and labelled after the run.
pub fn cloud_provider_request(run_id: &str) -> ContainerRequest<GenericImage> {
    GenericImage::new(CLOUD_PROVIDER_KIND_IMAGE, CLOUD_PROVIDER_KIND_TAG)
        .with_container_name(cloud_provider_container(run_id))
        .with_network("host")
        .with_mount(Mount::bind_mount(DOCKER_SOCKET, DOCKER_SOCKET))
        .with_label(RUN_LABEL, run_id)
        .with_startup_timeout(Duration::from_secs(120))
}

/// What Docker says about the cloud-provider-kind container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderState {
    /// Running.
    Running,
    /// Stopped, with its exit code when Docker has one.
    Exited {
        /// The exit code.
        code: Option<i64>,
    },
    /// Docker could not say (the container is gone, the engine is unreachable…).
    Unknown {
        /// Why.
        why: String,
    },
}

/// Whether cloud-provider-kind is alive; when not, an error naming it, with how it ended and the
/// last lines of its log.
pub fn liveness(state: &ProviderState, container: &str, log: &Path) -> Result<(), KindError> {
    let how = match state {
        ProviderState::Running => return Ok(()),
        ProviderState::Exited { code: Some(c) } => format!("exited with code {c}"),
        ProviderState::Exited { code: None } => "stopped".to_string(),
        ProviderState::Unknown { why } => format!("Docker cannot inspect it ({why})"),
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail: String = lines[lines.len().saturating_sub(20)..]
        .iter()
        .map(|l| format!("\n    {l}"))
        .collect();
    Err(KindError::CloudProviderDied {
        container: container.to_string(),
        how,
        log: log.to_path_buf(),
        tail,
    })
}

/// A run's cloud-provider-kind: its container (removed when dropped), name and log.
pub struct CloudProvider {
    container: ContainerAsync<GenericImage>,
    name: String,
    log: PathBuf,
}

impl CloudProvider {
    /// Starts it from [`cloud_provider_request`], its output streamed to `log`, and checks it is
    /// still running a moment later (it exits at once when it finds no Docker engine).
    pub async fn start(run_id: &str, log: &Path) -> Result<Self, KindError> {
        let name = cloud_provider_container(run_id);
        let file = std::fs::File::create(log).map_err(|source| KindError::Log {
            log: log.to_path_buf(),
            source,
        })?;
        let file = std::sync::Mutex::new(file);
        let consumer = move |frame: &testcontainers::core::logs::LogFrame| {
            use std::io::Write;
            if let Ok(mut f) = file.lock() {
                let _ = f.write_all(frame.bytes());
            }
        };
        let container = cloud_provider_request(run_id)
            .with_log_consumer(consumer)
            .start()
            .await
            .map_err(|source| KindError::CloudProviderStart {
                image: format!("{CLOUD_PROVIDER_KIND_IMAGE}:{CLOUD_PROVIDER_KIND_TAG}"),
                container: name.clone(),
                source: Box::new(source),
            })?;
        let cp = Self {
            container,
            name,
            log: log.to_path_buf(),
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        cp.check().await?;
        Ok(cp)
    }

    /// Its container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// What Docker says about it now.
    pub async fn state(&self) -> ProviderState {
        match self.container.is_running().await {
            Ok(true) => ProviderState::Running,
            Ok(false) => ProviderState::Exited {
                code: self.container.exit_code().await.ok().flatten(),
            },
            Err(e) => ProviderState::Unknown {
                why: crate::error_chain(&e),
            },
        }
    }

    /// Ok while it runs; the error naming it once it has died.
    pub async fn check(&self) -> Result<(), KindError> {
        liveness(&self.state().await, &self.name, &self.log)
    }

    /// Resolves (with the error naming it) only when it has died, checking every `every`.
    pub async fn died(&self, every: Duration) -> KindError {
        loop {
            if let Err(e) = self.check().await {
                return e;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Removes the container: SIGTERM first, so it stops its controllers ("Exiting: received
    /// signal", cmd/app.go), SIGKILL after 10 s, then the container itself.
    pub async fn remove(self) -> Result<String, KindError> {
        let name = self.name.clone();
        // A container that already died cannot be stopped; removing it is what matters.
        let _ = self.container.stop_with_timeout(Some(10)).await;
        self.container
            .rm()
            .await
            .map_err(|source| KindError::CloudProviderRemove {
                container: name.clone(),
                source: Box::new(source),
            })?;
        Ok(name)
    }
}

/// `docker ps -aq --filter label=io.x-k8s.cloud-provider-kind.cluster=CLUSTER`: the load
/// balancer containers cloud-provider-kind made for a kind cluster, running or not.
pub fn lb_containers_cmd(kind_cluster: &str) -> Cmd {
    Cmd::new(
        "docker",
        [
            "ps".to_string(),
            "-aq".into(),
            "--filter".into(),
            format!("label={LB_CLUSTER_LABEL}={kind_cluster}"),
        ],
    )
}

/// `docker rm -f ID…`.
pub fn rm_containers_cmd(ids: &[String]) -> Cmd {
    Cmd::new(
        "docker",
        ["rm".to_string(), "-f".into()]
            .into_iter()
            .chain(ids.iter().cloned()),
    )
}

/// Removes the load balancer containers cloud-provider-kind left for these kind clusters
/// (found by [`LB_CLUSTER_LABEL`]); what was removed and what failed, as teardown reports them.
pub async fn remove_load_balancers(exec: &dyn Exec, kind_clusters: &[String]) -> TeardownReport {
    let mut report = TeardownReport::default();
    for cluster in kind_clusters {
        let ps = lb_containers_cmd(cluster);
        let ids: Vec<String> = match exec.run(&ps).await {
            Ok(r) if r.ok() => r
                .stdout
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            Ok(r) => {
                report.failed.push(format!(
                    "load balancer containers of kind cluster {cluster}: {}",
                    failed(&ps, &r)
                ));
                continue;
            }
            Err(e) => {
                report.failed.push(format!(
                    "load balancer containers of kind cluster {cluster}: {}",
                    crate::error_chain(&e)
                ));
                continue;
            }
        };
        if ids.is_empty() {
            continue;
        }
        let rm = rm_containers_cmd(&ids);
        let what = format!(
            "cloud-provider-kind load balancer containers {} of kind cluster {cluster}",
            ids.join(", ")
        );
        match exec.run(&rm).await {
            Ok(r) if r.ok() => report.removed.push(what),
            Ok(r) => report.failed.push(format!("{what}: {}", failed(&rm, &r))),
            Err(e) => report
                .failed
                .push(format!("{what}: {}", crate::error_chain(&e))),
        }
    }
    report
}

/// What `meshmig doctor --backend kind` adds on this machine's platform.
pub fn doctor_notes() -> Vec<String> {
    doctor_notes_for(std::env::consts::OS)
}

/// What `meshmig doctor --backend kind` adds on a platform (`std::env::consts::OS`): on macOS,
/// what cloud-provider-kind's README (v0.7.0, "Mac, Windows and WSL2 support") says of it there.
pub fn doctor_notes_for(os: &str) -> Vec<String> {
    if os != "macos" {
        return Vec::new();
    }
    vec![
        "note    cloud-provider-kind on macOS: its README says \"On macOS and WSL2 you must run cloud-provider-kind using `sudo`\" (the binary stops with \"Please run this again with `sudo`.\" otherwise, cmd/app.go). meshmig runs it as a container (registry.k8s.io/cloud-provider-kind/cloud-controller-manager:v0.7.0) inside Docker Desktop's VM, which needs no sudo.".to_string(),
        "note    LoadBalancer addresses on macOS: its README says \"Mac and Windows run the containers inside a VM and, on the contrary to Linux, the KIND nodes are not reachable from the host, so the LoadBalancer assigned IP is not working for users\"; the split checks send requests from this machine to those addresses, so run the kind backend on Linux (a Linux VM or CI).".to_string(),
    ]
}

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
    /// The kind node image (`kind create cluster --image`), e.g.
    /// `kindest/node:v1.33.4@sha256:…`; None: the default of the kind release on PATH.
    pub node_image: Option<String>,
}

impl KindConfig {
    /// A configuration with a new run id; the node image from `MESHMIG_KIND_NODE_IMAGE` when set.
    pub fn new(config_dir: &Path, istioctl: &Path) -> Self {
        Self {
            run_id: super::gke::new_run_id(),
            config_dir: config_dir.to_path_buf(),
            istioctl: istioctl.to_path_buf(),
            metadata_image: None,
            ready_timeout: Duration::from_secs(10 * 60),
            node_image: node_image_from(std::env::var(NODE_IMAGE_ENV).ok()),
        }
    }
}

/// The node image a `MESHMIG_KIND_NODE_IMAGE` value chooses (unset or blank: none).
pub fn node_image_from(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
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
            ]
            .into_iter()
            .chain(
                self.cfg
                    .node_image
                    .iter()
                    .flat_map(|i| ["--image".to_string(), i.clone()]),
            ),
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
    out.push_str(&format!(
        "node image: {}\n",
        cfg.node_image
            .as_deref()
            .unwrap_or("the kind release's default (set MESHMIG_KIND_NODE_IMAGE to pin one)")
    ));
    let req = cloud_provider_request(&cfg.run_id);
    out.push_str(&format!(
        "before: cloud-provider-kind in a container (testcontainers), kept running for the run: LoadBalancer addresses\n    container {} from {}:{}, network {}, mount {DOCKER_SOCKET}:{DOCKER_SOCKET}, label {RUN_LABEL}={}; log → RUN/cloud-provider-kind.log; checked alive before the run and before each step, and every {}s while a step works in the clusters\n",
        cloud_provider_container(&cfg.run_id),
        CLOUD_PROVIDER_KIND_IMAGE,
        CLOUD_PROVIDER_KIND_TAG,
        req.network().as_deref().unwrap_or("default"),
        cfg.run_id,
        CLOUD_PROVIDER_CHECK_EVERY.as_secs(),
    ));
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
        "teardown (always):\n    $ {}\n    $ kind delete cluster --name NAME-{} --kubeconfig RUN/kubeconfig   (each cluster of the run listed)\n    $ {}   (must no longer list them)\n    remove the cloud-provider-kind container {}\n    $ {}   (each cluster of the run: load balancer containers left)\n    $ docker rm -f ID…   (when any)\n",
        c.get_clusters().line(),
        cfg.run_id,
        c.get_clusters().line(),
        cloud_provider_container(&cfg.run_id),
        lb_containers_cmd(&format!("NAME-{}", cfg.run_id)).line(),
    ));
    out
}

/// The kind backend.
pub struct Kind {
    cfg: KindConfig,
    clusters: Vec<ClusterSpec>,
    ops: Arc<ClusterOps>,
    scratch: Scratch,
    creations: Creations,
    fleet: FleetStandIn,
    dns: DnsServer,
    cloud_provider: std::sync::Mutex<Option<Arc<CloudProvider>>>,
}

impl Kind {
    /// Starts a run: its kubeconfig, cloud-provider-kind (its container checked alive), the
    /// embedded DNS server.
    pub async fn start(cfg: KindConfig, s: &Scenario) -> Result<Self, BackendError> {
        let scratch = Scratch::create("meshmig-kind-")?;
        let kubeconfig = scratch.path().join("kubeconfig");
        let exec: Arc<dyn Exec> = Arc::new(Process {
            env: [("KUBECONFIG".to_string(), kubeconfig.clone())].into(),
        });
        let log = scratch.path().join("cloud-provider-kind.log");
        let cloud = CloudProvider::start(&cfg.run_id, &log).await?;
        Self::assemble(cfg, s, exec, scratch, Some(cloud)).await
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
                BackendError::infra("starting the embedded DNS server", crate::error_chain(&e))
            })?;
        Ok(Self {
            ops: Arc::new(ClusterOps::new(exec, kubeconfig, cfg.ready_timeout)),
            scratch,
            clusters: s.clusters.clone(),
            cfg,
            creations: Creations::default(),
            fleet: FleetStandIn::new(s),
            dns,
            cloud_provider: std::sync::Mutex::new(cloud.map(Arc::new)),
        })
    }

    fn cloud(&self) -> Option<Arc<CloudProvider>> {
        self.cloud_provider
            .lock()
            .expect("cloud-provider lock is never poisoned")
            .clone()
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
    fn kind_clusters(&self) -> Vec<String> {
        self.clusters
            .iter()
            .map(|c| self.cmds().cluster(&c.name))
            .collect()
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
            self.creations.create(&spec.name, &self.ops, all).await
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
        self.guarded(
            self.fleet
                .op(&self.ops, op, |cluster| cmds.managed_install(cluster)),
        )
        .await
    }

    async fn mesh_describe(&self) -> Result<String, BackendError> {
        self.fleet.describe(&self.ops, "kind").await
    }

    async fn create_namespace(&self, cluster: &str, name: &str) -> Result<Output, BackendError> {
        self.guarded(self.ops.create_namespace(cluster, name)).await
    }

    async fn label_namespace(
        &self,
        cluster: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Output, BackendError> {
        self.guarded(self.ops.label_namespace(cluster, name, labels))
            .await
    }

    async fn apply(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        objects: &[Object],
    ) -> Result<Output, BackendError> {
        self.guarded(async {
            let out = self.ops.apply(cluster, namespace, objects).await?;
            self.attach_metadata(cluster, namespace.unwrap_or("default"), objects)
                .await?;
            Ok(out)
        })
        .await
    }

    async fn delete(
        &self,
        cluster: &str,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Output, BackendError> {
        self.guarded(self.ops.delete(cluster, namespace, kind, name))
            .await
    }

    async fn list(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        kind: &str,
    ) -> Result<Vec<Value>, BackendError> {
        self.guarded(self.ops.list(cluster, namespace, kind)).await
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
        self.creations.settle().await;
        let listed = self.listed().await.unwrap_or_default();
        let cloud = self
            .cloud_provider
            .lock()
            .expect("cloud-provider lock is never poisoned")
            .take();
        if keep {
            report.kept.extend(
                listed
                    .iter()
                    .map(|c| format!("kind cluster {}", self.cmds().cluster(c))),
            );
            report
                .kept
                .push(format!("kubeconfig {}", self.ops.kubeconfig.display()));
            if let Some(cp) = cloud {
                report.kept.push(format!(
                    "cloud-provider-kind container {0} (its log {1}; remove it with docker rm -f {0})",
                    cp.name(),
                    cp.log().display()
                ));
                // Kept clusters keep their load balancers: the container must outlive this
                // process, and dropping it would remove it.
                if let Ok(cp) = Arc::try_unwrap(cp) {
                    std::mem::forget(cp);
                }
            }
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
        // cloud-provider-kind first (so it makes no more), then what it left behind.
        if let Some(cp) = cloud {
            match Arc::try_unwrap(cp) {
                Ok(cp) => match cp.remove().await {
                    Ok(name) => report
                        .removed
                        .push(format!("cloud-provider-kind container {name}")),
                    Err(e) => report.failed.push(crate::error_chain(&e)),
                },
                Err(cp) => report.failed.push(format!(
                    "cloud-provider-kind container {}: still in use by a step; removed when the run ends",
                    cp.name()
                )),
            }
        }
        let lbs = remove_load_balancers(self.ops.exec.as_ref(), &self.kind_clusters()).await;
        report.removed.extend(lbs.removed);
        report.failed.extend(lbs.failed);
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

/// The run id of a kind cluster named `NAME-RUN` after one of the procedure's `names` (RUN:
/// lowercase letters and digits, as [`super::gke::new_run_id`] makes them); None for any other
/// cluster on the machine.
pub fn run_of<'a>(kind_cluster: &'a str, names: &[String]) -> Option<&'a str> {
    names.iter().find_map(|n| {
        let run = kind_cluster.strip_prefix(n.as_str())?.strip_prefix('-')?;
        (!run.is_empty()
            && run
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        .then_some(run)
    })
}

/// `docker inspect --format {{.Created}} CLUSTER-control-plane`: when a kind cluster's first
/// control-plane node container was created (kind names it `CLUSTER-control-plane`,
/// pkg/cluster/internal/providers/common/namer.go at v0.30.0).
pub fn created_cmd(kind_cluster: &str) -> Cmd {
    Cmd::new(
        "docker",
        [
            "inspect".to_string(),
            "--format".into(),
            "{{.Created}}".into(),
            format!("{kind_cluster}-control-plane"),
        ],
    )
}

/// `meshmig gc --backend kind`: deletes the kind clusters of crashed runs (`NAME-RUN` after one
/// of the procedure's `names`, see [`run_of`]) whose control-plane container is older than
/// `older_than`, then the load balancer containers cloud-provider-kind left for them and their
/// runs' cloud-provider-kind containers (label [`RUN_LABEL`]). Other clusters are never
/// touched. One line per thing done, as `meshmig gc` prints them.
pub async fn gc(
    exec: &dyn Exec,
    names: &[String],
    older_than: Duration,
    now: Utc,
) -> Result<Vec<String>, BackendError> {
    let run = |cmd: Cmd| async move {
        exec.run(&cmd).await.map(|r| (cmd.clone(), r)).map_err(|e| {
            BackendError::infra(format!("running {}", cmd.program), crate::error_chain(&e))
        })
    };
    let (cmd, listed) = run(Cmd::new("kind", ["get", "clusters"])).await?;
    if !listed.ok() {
        return Err(failed(&cmd, &listed));
    }
    let mut done = Vec::new();
    let mut runs = std::collections::BTreeSet::new();
    for cluster in listed.stdout.lines().map(str::trim) {
        let Some(run_id) = run_of(cluster, names) else {
            continue;
        };
        let (_, created) = run(created_cmd(cluster)).await?;
        let age = created
            .ok()
            .then(|| chrono_like::age(created.stdout.trim(), now))
            .flatten();
        let Some(age) = age else {
            done.push(format!(
                "kept kind cluster {cluster}: its age is unknown ({})",
                created.stderr.trim()
            ));
            continue;
        };
        if age < older_than {
            continue;
        }
        let (del, r) = run(Cmd::new("kind", ["delete", "cluster", "--name", cluster])).await?;
        if r.ok() {
            done.push(format!(
                "deleted kind cluster {cluster} (run {run_id}, {}h old)",
                age.as_secs() / 3600
            ));
        } else {
            done.push(format!(
                "FAILED to delete kind cluster {cluster}: {}",
                failed(&del, &r)
            ));
        }
        runs.insert(run_id.to_string());
        let lbs = remove_load_balancers(exec, &[cluster.to_string()]).await;
        done.extend(lbs.removed.into_iter().map(|l| format!("removed {l}")));
        done.extend(
            lbs.failed
                .into_iter()
                .map(|l| format!("FAILED to remove {l}")),
        );
    }
    for run_id in runs {
        let (ps, r) = run(Cmd::new(
            "docker",
            [
                "ps",
                "-aq",
                "--filter",
                &format!("label={RUN_LABEL}={run_id}"),
            ],
        ))
        .await?;
        if !r.ok() {
            done.push(format!(
                "FAILED to list the cloud-provider-kind container of run {run_id}: {}",
                failed(&ps, &r)
            ));
            continue;
        }
        let ids: Vec<String> = r.stdout.split_whitespace().map(str::to_string).collect();
        if ids.is_empty() {
            continue;
        }
        let (rm, r) = run(rm_containers_cmd(&ids)).await?;
        done.push(if r.ok() {
            format!(
                "removed cloud-provider-kind container {} of run {run_id}",
                ids.join(", ")
            )
        } else {
            format!(
                "FAILED to remove the cloud-provider-kind container of run {run_id}: {}",
                failed(&rm, &r)
            )
        });
    }
    Ok(done)
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
