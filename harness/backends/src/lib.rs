//! Backends: where the procedure's commands really happen.
//!
//! The engine knows only this trait. Each backend (emulated, kwok, kind, gke, gke-rehearsal)
//! lives in a folder of its own, declares itself in its `entry.rs` ([`entry::BackendEntry`]),
//! and is listed once in [`registry`]. Reads return Kubernetes objects as JSON in the
//! shape the API server returns them (with `status`), so the checks read every backend alike.

pub mod boutique;
pub mod cli_commands;
pub mod clusters;
pub mod emulated;
pub mod entry;
pub mod exec;
/// The Online Boutique frontend stand-in, one place for every backend that runs one (emulated
/// replicas, and kwok's frontend pods).
pub mod frontend;
pub mod gateway_config;
pub mod gke;
pub mod gke_rehearsal;
pub mod istioctl;
pub mod kind;
pub mod kube;
pub mod kwok;
pub mod lb_fields;
pub mod options;
pub mod ports;
pub mod preflight;
pub mod proxy_status;
pub mod registry;
pub mod run_id;
pub mod witness;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use meshmig_core::manifest::Object;
use meshmig_core::scenario::ClusterSpec;

/// Each gateway pod's Envoy `config_dump` (by `namespace/pod`), or why it could not be read:
/// what [`Backend::gateway_routes`] hands the `routes` check.
pub type GatewayDumps = BTreeMap<String, Result<Value, String>>;

/// Errors of a backend operation.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The procedure's command failed the way the real tool fails (for example deleting a cluster
    /// that does not exist). This is a finding about the procedure: the step fails (exit 1).
    #[error("{command}: {message}")]
    Procedure {
        /// The command as the procedure runs it.
        command: String,
        /// What the tool answered.
        message: String,
    },
    /// The harness's own machinery failed (a process would not start, a port was taken...).
    /// This says nothing about the procedure (exit 3).
    #[error("{doing}: {message}")]
    Infrastructure {
        /// What was being done.
        doing: String,
        /// What went wrong.
        message: String,
    },
    /// A tool the backend needs is missing.
    #[error(transparent)]
    MissingTool(#[from] meshmig_core::tools::MissingTool),
}

impl BackendError {
    /// An infrastructure error from anything displayable.
    pub fn infra(doing: impl Into<String>, e: impl std::fmt::Display) -> Self {
        BackendError::Infrastructure {
            doing: doing.into(),
            message: meshmig_core::redact::scrubbed(e.to_string()),
        }
    }

    /// Whether this is a finding about the procedure rather than about the harness.
    pub fn is_procedure(&self) -> bool {
        matches!(self, BackendError::Procedure { .. })
    }
}

/// Carries out a fault on the parts every stand-in backend runs the same way (the embedded DNS
/// server); `per_cluster` does the rest, given the fault's cluster. The injection's output, or why it could not be done.
pub async fn inject_with<'a, F, Fut>(
    dns: &meshmig_core::dns::DnsServer,
    fault: &'a meshmig_core::scenario::Fault,
    per_cluster: F,
) -> Result<Output, BackendError>
where
    F: FnOnce(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let said = match fault.cluster() {
        None => {
            dns.stop().await;
            Ok(format!("DNS server {} stopped", dns.addr()))
        }
        Some(cluster) => per_cluster(cluster).await,
    }
    .map_err(|m| BackendError::infra(format!("injecting a fault ({})", fault.describe()), m))?;
    Ok(Output::new(
        format!("(fault) {}", fault.describe()),
        format!("{said}\n"),
    ))
}

/// What killing a gateway's Envoys did: the pods killed, or that none runs there.
pub fn gateways_killed(
    cluster: &str,
    namespace: &str,
    killed: Vec<String>,
) -> Result<String, String> {
    if killed.is_empty() {
        return Err(format!("no gateway runs in {cluster}/{namespace}"));
    }
    Ok(format!(
        "killed (SIGKILL) the Envoy of gateway pod {}",
        killed.join(", ")
    ))
}

/// Sets the test domain's A record on an embedded DNS server (every backend without Cloud DNS).
pub async fn embedded_dns_set(
    dns: &meshmig_core::dns::DnsServer,
    domain: &str,
    address: IpAddr,
    ttl: u32,
) -> Result<Output, BackendError> {
    let doing = format!("setting the A record of {domain}");
    let IpAddr::V4(v4) = address else {
        return Err(BackendError::infra(
            doing,
            "an A record needs an IPv4 address",
        ));
    };
    dns.set_a(domain, v4, ttl)
        .await
        .map_err(|e| BackendError::infra(doing, meshmig_core::error_chain(&e)))?;
    Ok(Output::new(
        format!("(embedded DNS) {domain}. {ttl} IN A {address}"),
        format!(
            "{domain}. {ttl} IN A {address} (served by {})\n",
            dns.addr()
        ),
    ))
}

/// What `kubectl rollout restart deployment` prints for the Deployments it restarted: the
/// output of [`Kubernetes::restart_workloads`] on every backend.
pub fn restarted(cluster: &str, namespace: &str, names: &[String]) -> Output {
    Output::new(
        format!("kubectl --context={cluster} --namespace={namespace} rollout restart deployment"),
        names
            .iter()
            .map(|n| format!("deployment.apps/{n} restarted\n"))
            .collect::<String>(),
    )
}

/// Writes a file only its owner can read (0600): kubeconfigs and token files hold credentials.
pub fn write_private(path: &std::path::Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // A file that existed keeps its mode through open(); make it private all the same.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(contents.as_ref())
}

/// A run's scratch folder on this machine (Envoy configurations and logs, the run's
/// kubeconfig): removed at teardown, or kept on disk with `--keep`.
pub struct Scratch {
    path: PathBuf,
    dir: std::sync::Mutex<Option<tempfile::TempDir>>,
}

impl Scratch {
    /// A new folder in the system's temporary folder, named `PREFIXxxxxxx`.
    pub fn create(prefix: &str) -> Result<Self, BackendError> {
        use std::os::unix::fs::PermissionsExt;
        // The owner's alone: it holds the run's kubeconfig and tokens.
        tempfile::Builder::new()
            .prefix(prefix)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map(Self::from)
            .map_err(|e| BackendError::infra("creating the run's scratch folder", e))
    }

    /// Where it is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn take(&self) -> Option<tempfile::TempDir> {
        self.dir
            .lock()
            .expect("scratch lock is never poisoned")
            .take()
    }

    /// Leaves it on disk; its path, unless it was already kept or removed.
    pub fn keep(&self) -> Option<PathBuf> {
        self.take().map(tempfile::TempDir::keep)
    }

    /// Removes it and says so in the teardown report (removed, or failed with why).
    pub fn remove_into(&self, report: &mut TeardownReport) {
        match self.remove() {
            Some(Ok(p)) => report
                .removed
                .push(format!("scratch folder {}", p.display())),
            Some(Err((p, e))) => report
                .failed
                .push(format!("scratch folder {}: {e}", p.display())),
            None => {}
        }
    }

    /// Removes it: Ok(its path), or the path and why not; None if already kept or removed.
    pub fn remove(&self) -> Option<Result<PathBuf, (PathBuf, std::io::Error)>> {
        self.take().map(|d| {
            d.close()
                .map(|()| self.path.clone())
                .map_err(|e| (self.path.clone(), e))
        })
    }
}

impl From<tempfile::TempDir> for Scratch {
    fn from(dir: tempfile::TempDir) -> Self {
        Self {
            path: dir.path().to_path_buf(),
            dir: std::sync::Mutex::new(Some(dir)),
        }
    }
}

/// What an action printed, as the real command would.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Output {
    /// The command the procedure runs, as a shell line (for the report only).
    pub command: String,
    /// What it printed.
    pub stdout: String,
}

impl Output {
    /// An output.
    pub fn new(command: impl Into<String>, stdout: impl Into<String>) -> Self {
        Self {
            command: meshmig_core::redact::scrubbed(command.into()),
            stdout: meshmig_core::redact::scrubbed(stdout.into()),
        }
    }
}

/// A fleet (managed mesh) operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetOp {
    /// `gcloud container fleet mesh enable`.
    EnableMesh,
    /// `gcloud container fleet memberships register`.
    Register {
        /// The cluster.
        cluster: String,
        /// The membership.
        membership: String,
    },
    /// `gcloud container fleet mesh update --management automatic`.
    MeshUpdate {
        /// The membership.
        membership: String,
    },
    /// `gcloud container fleet memberships unregister`.
    Unregister {
        /// The membership.
        membership: String,
    },
    /// `gcloud container fleet mesh disable`.
    DisableMesh,
}

/// What of a run exists (for clean-up checks and leak reports).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Inventory {
    /// Clusters, with their state.
    pub clusters: BTreeMap<String, String>,
    /// Fleet memberships.
    pub memberships: Vec<String>,
    /// Whether the fleet's mesh feature is enabled.
    pub mesh_feature_enabled: bool,
    /// Load balancer addresses still allocated.
    pub load_balancers: Vec<String>,
}

impl Inventory {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
            && self.memberships.is_empty()
            && !self.mesh_feature_enabled
            && self.load_balancers.is_empty()
    }
}

/// What teardown did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TeardownReport {
    /// Things removed.
    pub removed: Vec<String>,
    /// Things that could not be removed (with why).
    pub failed: Vec<String>,
    /// Things kept on purpose (`--keep`).
    pub kept: Vec<String>,
}

/// Something a backend's run depends on that the backend itself did not make and stops after
/// its own teardown (a GKE rehearsal's Google Cloud stand-in and the clusters behind it).
#[async_trait]
pub trait Companion: Send + Sync {
    /// Stops it; what was stopped, for the teardown report.
    async fn stop(&self) -> Vec<String>;
}

/// The Kubernetes API of a run's clusters, as the procedure's `kubectl` steps use it.
/// [`clusters::ClusterOps`] implements it once for every backend with real API servers (kind,
/// kwok, GKE); the emulated backend implements it over its store.
#[async_trait]
pub trait Kubernetes: Send + Sync {
    /// `kubectl create namespace`.
    async fn create_namespace(&self, cluster: &str, name: &str) -> Result<Output, BackendError>;
    /// `kubectl label namespace`: `labels` set, `remove` removed.
    async fn label_namespace(
        &self,
        cluster: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<Output, BackendError>;
    /// `kubectl rollout restart deployment -n NAMESPACE`, returning once every rollout has
    /// completed (the old pods gone, the new ones available).
    async fn restart_workloads(
        &self,
        cluster: &str,
        namespace: &str,
    ) -> Result<Output, BackendError>;
    /// `kubectl apply` of objects; those without a namespace go to `namespace`.
    async fn apply(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        objects: &[Object],
    ) -> Result<Output, BackendError>;
    /// `kubectl delete`.
    async fn delete(
        &self,
        cluster: &str,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Output, BackendError>;
    /// Objects of a kind (all namespaces when `namespace` is None), sorted by name as
    /// `kubectl get` lists them, with their status.
    async fn list(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        kind: &str,
    ) -> Result<Vec<Value>, BackendError>;
}

/// A place where the procedure runs.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The backend's name (`emulated`, `kind`, `gke`).
    fn name(&self) -> &'static str;

    /// Creates a cluster (A1, C1).
    async fn create_cluster(&self, spec: &ClusterSpec) -> Result<Output, BackendError>;
    /// Deletes a cluster by the name the procedure uses (G4, H).
    async fn delete_cluster(&self, name: &str) -> Result<Output, BackendError>;
    /// Clusters of the run, with their state.
    async fn clusters(&self) -> Result<BTreeMap<String, String>, BackendError>;
    /// Renames the cluster's context to the cluster's name (A2, C2).
    async fn rename_context(&self, cluster: &str) -> Result<Output, BackendError>;
    /// `kubectl config get-contexts --output=name`.
    async fn contexts(&self) -> Result<Vec<String>, BackendError>;
    /// `istioctl install --set profile=PROFILE -y` (A4).
    async fn install_istio(&self, cluster: &str, profile: &str) -> Result<Output, BackendError>;
    /// A fleet operation (C3..C5, clean-up).
    async fn fleet(&self, op: &FleetOp) -> Result<Output, BackendError>;
    /// `gcloud container fleet mesh describe` output (YAML).
    async fn mesh_describe(&self) -> Result<String, BackendError>;
    /// The Kubernetes API of the run's clusters (namespaces and objects).
    fn kubernetes(&self) -> &dyn Kubernetes;
    /// Creates or changes the test domain's A record.
    async fn dns_set(
        &self,
        domain: &str,
        address: IpAddr,
        ttl: u32,
    ) -> Result<Output, BackendError>;
    /// The DNS server that answers for the test domain.
    fn dns_server(&self) -> SocketAddr;
    /// Injects a data-plane fault (a scenario's `inject:`). Only backends that run the data
    /// plane's stand-ins can; the runner refuses such scenarios for the others before starting.
    async fn inject(&self, fault: &meshmig_core::scenario::Fault) -> Result<Output, BackendError> {
        Err(BackendError::infra(
            format!("injecting a fault ({})", fault.describe()),
            format!("the {} backend cannot inject faults", self.name()),
        ))
    }
    /// What of the run exists.
    async fn inventory(&self) -> Result<Inventory, BackendError>;
    /// Removes everything the run created (or, with `keep`, reports what is kept).
    async fn teardown(&self, keep: bool) -> TeardownReport;
    /// Files and folders the run made on this machine (so tests can prove they are gone).
    fn scratch_paths(&self) -> Vec<PathBuf>;
    /// How long a change may take to reach the data plane (istiod's push, a gateway starting):
    /// checks that read the data plane once retry within it. Zero where every change is applied
    /// before the action returns (the emulated backend waits for Envoy's acknowledgement).
    fn convergence(&self) -> Duration {
        Duration::ZERO
    }
    /// Ports below 1024 this backend serves elsewhere because it may not bind them (the
    /// emulated backend run by an ordinary user with no user namespace): checks request the
    /// shifted port and record the change as a deviation.
    fn port_shift(&self) -> Option<ports::PortShift> {
        None
    }
    /// Real cluster names that differ from the procedure's (what a footer prints) → the
    /// procedure's name.
    fn real_cluster_names(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// The version of the istioctl this backend runs (or stands in for), when known.
    fn istio_version(&self) -> Option<String> {
        None
    }
    /// How long and how often (at first) to poll `fleet mesh describe`, given the scenario's
    /// values; a backend whose control plane takes real minutes overrides them.
    fn mesh_wait(&self, timeout: Duration, poll: Duration) -> (Duration, Duration) {
        (timeout, poll)
    }
    /// What the gateway pods that Gateway `namespace/gateway` selects route: each running pod's
    /// Envoy `config_dump`, on a backend that can read it (its witnesses name the gateway for
    /// [`witness::Source::Routes`]); `None` where the `routes` check reads the VirtualServices
    /// as stored instead.
    async fn gateway_routes(
        &self,
        _cluster: &str,
        _namespace: &str,
        _gateway: &str,
    ) -> Result<Option<GatewayDumps>, BackendError> {
        Ok(None)
    }
    /// What `istioctl proxy-status` prints for cluster `cluster`, asked of every istiod that runs
    /// there, on a backend that can run it (its witnesses name it for
    /// [`witness::Source::ProxyStatus`]); `None` where the `proxies_connected` check judges the
    /// pods' injection records instead.
    async fn proxy_status(
        &self,
        _cluster: &str,
    ) -> Result<Option<proxy_status::ProxyStatus>, BackendError> {
        Ok(None)
    }
    /// Who answers each kind of question a check asks on this backend: a real component (with
    /// its version where known), a stand-in, or the harness's own records.
    fn witnesses(&self) -> &witness::Witnesses;
}

#[cfg(test)]
mod private_files_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Issue 14: scratch folders are the owner's alone (0700), kubeconfigs and token files 0600,
    /// also when the file existed with a wider mode.
    #[test]
    fn scratch_folders_and_credential_files_are_private() {
        let s = Scratch::create("meshmig-test-").unwrap();
        assert_eq!(mode(s.path()), 0o700);
        let f = s.path().join("kubeconfig");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, "apiVersion: v1\n").unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "apiVersion: v1\n");
        let _ = s.remove();
    }
}
