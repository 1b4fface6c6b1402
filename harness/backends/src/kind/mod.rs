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
//! - `meshmig gc --backend kind` ([`gc`](fn@gc)): clusters of crashed runs, by name and age.
//!
//! - With a kit ([`kit`]: `--kind-kit`, built by `kind-configs/kit/build` on a machine that
//!   reaches no image registry): kind's podman provider, the kit's node image and
//!   `kind-configs/local/`, the kit's archives loaded into each new cluster, Istio installed with
//!   the kit's settings, LoadBalancer addresses from [`node_lb`] instead of cloud-provider-kind,
//!   and the images pods pull every time served by the run's own registry ([`kit_registry`]).
//!
//! Run with the kit on the machine where it was written (podman, no registry); with Docker and
//! cloud-provider-kind only by `.github/workflows/e2e-kind.yml`, which has not run.
//!
//! Its rooms: [`Commands`] (the command lines and cloud-provider-kind's container), the plan
//! ([`plan`](fn@plan)), the backend itself ([`Kind`], with the metadata stand-in),
//! cloud-provider-kind's container ([`CloudProvider`]), the kit and what it runs beside the
//! clusters ([`kit`], [`node_lb`], [`kit_registry`]), and teardown with `meshmig gc`
//! ([`gc`](fn@gc)).

mod backend;
mod cloud_provider;
mod commands;
pub mod entry;
mod gc;
pub mod kit;
pub mod kit_registry;
pub mod node_lb;
mod plan;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::BackendError;

pub use super::clusters::MANAGED_REVISION;
pub use backend::{
    metadata_overlay, metadata_server, Kind, MetadataOverlay, METADATA_FIELD_MANAGER,
    METADATA_NAMESPACE,
};
pub use cloud_provider::{doctor_notes, doctor_notes_for, liveness, CloudProvider, ProviderState};
pub use commands::{
    cloud_provider_container, cloud_provider_request, created_cmd, lb_containers_cmd,
    rm_containers_cmd, Commands,
};
pub use gc::{gc, remove_load_balancers, run_of, GcTools};
pub use plan::{plan, plan_action};

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
            meshmig_core::error_chain(&e),
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

/// The folder, inside kind-configs/, of the cluster configurations for a machine that runs a kit.
pub const LOCAL_CONFIGS: &str = "local";

/// The environment variable that chooses the kind node image (`kind create cluster --image`).
pub const NODE_IMAGE_ENV: &str = "MESHMIG_KIND_NODE_IMAGE";

/// The names the procedure gives its clusters; `meshmig gc --backend kind` looks for
/// `NAME-RUN` clusters of these names by default.
pub const PROCEDURE_CLUSTERS: [&str; 2] = ["cluster-with-istio", "cluster-with-csm"];

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
    /// A kind kit built here ([`kit`]): its provider, archives, aliases and Istio settings.
    pub kit: Option<kit::KindKit>,
}

impl KindConfig {
    /// A configuration with a new run id; the node image from `MESHMIG_KIND_NODE_IMAGE` when set.
    pub fn new(config_dir: &Path, istioctl: &Path) -> Self {
        Self {
            run_id: super::run_id::new_run_id(),
            config_dir: config_dir.to_path_buf(),
            istioctl: istioctl.to_path_buf(),
            metadata_image: None,
            ready_timeout: Duration::from_secs(10 * 60),
            node_image: node_image_from(std::env::var(NODE_IMAGE_ENV).ok()),
            kit: None,
        }
    }

    /// This configuration with a kit: its node image (unless one was chosen), and the cluster
    /// configurations for a kit's machine, `local/` in the configurations folder (unless
    /// `configs_chosen`).
    pub fn with_kit(mut self, kit: kit::KindKit, configs_chosen: bool) -> Self {
        if self.node_image.is_none() {
            self.node_image = Some(kit.node_image.clone());
        }
        if !configs_chosen {
            self.config_dir = self.config_dir.join(LOCAL_CONFIGS);
        }
        self.kit = Some(kit);
        self
    }

    /// The container engine kind's nodes run in (`docker`, or the kit's provider).
    pub fn engine(&self) -> &str {
        self.kit.as_ref().map_or("docker", |k| k.provider.as_str())
    }

    /// The environment kind runs with: `KIND_EXPERIMENTAL_PROVIDER` when a kit names podman.
    pub fn kind_env(&self) -> Vec<(String, String)> {
        match &self.kit {
            Some(k) if k.provider != "docker" => {
                vec![("KIND_EXPERIMENTAL_PROVIDER".into(), k.provider.clone())]
            }
            _ => Vec::new(),
        }
    }
}

/// The node image a `MESHMIG_KIND_NODE_IMAGE` value chooses (unset or blank: none).
pub fn node_image_from(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}
