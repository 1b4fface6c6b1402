//! The `gke-rehearsal` backend (`meshmig run --backend gke-rehearsal`, or `--backend gke
//! --rehearsal`): the GKE backend's own code,
//! unchanged, with the real gcloud pointed at the Google Cloud stand-in
//! ([`meshmig_core::gcp_stand_in`]), whose "GKE clusters" are kwok clusters
//! ([`crate::kwok::provider`]).
//!
//! What is put together here, and nowhere else:
//! - before the process has threads ([`prepare`]): a scratch folder, the stand-in's port, and the
//!   gcloud environment (endpoint overrides, the stand-in's token, a scratch `CLOUDSDK_CONFIG`)
//!   set in the process, so every gcloud the backend runs and the gke-gcloud-auth-plugin that
//!   kubectl and kube-rs run see it, and the user's own gcloud configuration is never touched;
//! - the stand-in, serving on that port, with kwok clusters behind it ([`Rehearsal::start`]);
//! - Google's side of `mesh update --management automatic`: for each membership asking for it,
//!   the managed control plane (`istiod-asm-managed`) is installed on its cluster, and the
//!   membership reports ACTIVE once that Deployment is Available, PROVISIONING until then.
//!
//! What a rehearsal proves and what it cannot: see docs/gke.md ("GKE rehearsal").

pub mod entry;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::kwok::backend::KwokConfig;
use crate::kwok::provider::KwokClusters;
use crate::Companion;
use meshmig_core::fleet::StandInState;
use meshmig_core::gcp_stand_in::{GcpStandIn, Timing, ACCESS_TOKEN};
use meshmig_core::scenario::Scenario;

/// Errors setting a rehearsal up.
#[derive(Debug, thiserror::Error)]
pub enum RehearsalError {
    /// The scratch folder or the stand-in's port could not be had.
    #[error("preparing the rehearsal: {doing}")]
    Prepare {
        /// What was being done.
        doing: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The stand-in did not start.
    #[error("starting the Google Cloud stand-in")]
    StandIn {
        /// Why.
        #[source]
        source: meshmig_core::gcp_stand_in::StandInError,
    },
}

pub use crate::options::Prepared;

/// Chooses the stand-in's port and sets the gcloud environment in this process. Call it while
/// the process has one thread (setting the environment later could race other threads' reads).
pub fn prepare() -> Result<Prepared, RehearsalError> {
    let err = |doing: &str| {
        let doing = doing.to_string();
        move |source| RehearsalError::Prepare { doing, source }
    };
    let dir = tempfile::Builder::new()
        .prefix("meshmig-rehearsal-")
        .tempdir()
        .map_err(err("creating the scratch folder"))?
        .keep();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(err("choosing a port for the Google Cloud stand-in"))?;
    let env =
        meshmig_core::gcp_stand_in::gcloud_env(&format!("http://{addr}/"), &dir.join("gcloud"))
            .map_err(|e| RehearsalError::Prepare {
                doing: "writing gcloud's configuration".into(),
                source: std::io::Error::other(meshmig_core::error_chain(&e)),
            })?;
    for (k, v) in env {
        std::env::set_var(k, v);
    }
    // A project set in the environment would hide a missing --project in a command.
    std::env::remove_var("CLOUDSDK_CORE_PROJECT");
    Ok(Prepared { addr, dir })
}

/// A running rehearsal: the stand-in, the kwok clusters behind it, and Google's controller.
pub struct Rehearsal {
    stand_in: Arc<Mutex<Option<GcpStandIn>>>,
    clusters: Arc<KwokClusters>,
    controller: tokio::task::JoinHandle<()>,
    dir: PathBuf,
}

impl Rehearsal {
    /// Starts the stand-in where [`prepare`] said, with kwok clusters of `kwok` for the
    /// scenario's clusters (run `run_id`), and the managed-mesh controller.
    pub async fn start(
        p: &Prepared,
        kwok: KwokConfig,
        s: &Scenario,
        run_id: &str,
    ) -> Result<Self, RehearsalError> {
        let clusters = Arc::new(KwokClusters::new(
            kwok,
            s.clusters.clone(),
            run_id,
            p.dir.join("clusters"),
            vec![ACCESS_TOKEN.to_string()],
        ));
        let stand_in = GcpStandIn::start_at(p.addr, clusters.clone(), Timing::default())
            .await
            .map_err(|source| RehearsalError::StandIn { source })?;
        let stand_in = Arc::new(Mutex::new(Some(stand_in)));
        let controller = tokio::spawn(mesh_controller(stand_in.clone(), clusters.clone()));
        Ok(Self {
            stand_in,
            clusters,
            controller,
            dir: p.dir.clone(),
        })
    }
}

/// Google's side of automatic management: installs the managed control plane once per cluster
/// whose membership asks for it, and reports each membership ACTIVE once it is Available.
async fn mesh_controller(stand_in: Arc<Mutex<Option<GcpStandIn>>>, clusters: Arc<KwokClusters>) {
    let mut installing: BTreeSet<String> = BTreeSet::new();
    loop {
        let managed = match stand_in.lock().await.as_ref() {
            Some(s) => s.managed_memberships(),
            None => return,
        };
        for (membership, cluster) in managed {
            if installing.insert(cluster.clone()) {
                let c = clusters.clone();
                tokio::spawn(async move {
                    if let Err(e) = c.install_managed(&cluster).await {
                        tracing::error!("installing the managed control plane on {cluster}: {e}");
                    }
                });
                continue;
            }
            if clusters.managed_available(&cluster).await {
                if let Some(s) = stand_in.lock().await.as_ref() {
                    let _ = s.set_mesh_state(&membership, StandInState::Active);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[async_trait]
impl Companion for Rehearsal {
    async fn stop(&self) -> Vec<String> {
        self.controller.abort();
        let mut done = Vec::new();
        if let Some(s) = self.stand_in.lock().await.take() {
            s.stop().await;
            done.push("Google Cloud stand-in".to_string());
        }
        done.extend(
            self.clusters
                .stop_all()
                .await
                .into_iter()
                .map(|d| format!("rehearsal: {d}")),
        );
        if std::fs::remove_dir_all(&self.dir).is_ok() {
            done.push(format!("rehearsal scratch folder {}", self.dir.display()));
        }
        done
    }
}

/// Who answers the checks in a rehearsal: the real gcloud reading the Google Cloud stand-in, and
/// behind it kwok clusters with the real API server, istiod and Envoy.
pub fn witnesses(kwok: &KwokConfig) -> crate::witness::Witnesses {
    use crate::kwok::witness as kw;
    use crate::witness::{embedded_dns, Witness, Witnesses};
    let google = |api: &str| {
        Witness::stand_in(format!(
            "the Google Cloud stand-in's {api}, read by the real gcloud"
        ))
    };
    Witnesses {
        cluster_list: google("GKE API"),
        kubeconfig: Witness::real(
            "kubectl's contexts, written by the real gcloud's get-credentials",
        ),
        kubernetes_api: kw::kubernetes_api(&kwok.tools),
        fleet: google("fleet API"),
        dns: embedded_dns(),
        data_plane: kw::data_plane(&kwok.tools, &kwok.envoy),
        inventory: google("GKE, fleet and Compute APIs"),
        routes: None,
        proxy_status: None,
        commands: vec![
            (
                "gcloud",
                Witness::real("gcloud (its answers from the Google Cloud stand-in)"),
            ),
            ("istioctl", kw::istioctl(&kwok.tools)),
        ],
    }
}
