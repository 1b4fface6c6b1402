//! kwok clusters behind the Google Cloud stand-in: what a GKE rehearsal's "GKE clusters" are.
//!
//! When the real gcloud asks the stand-in ([`meshmig_core::gcp_stand_in`]) to create a cluster, a kwok
//! cluster of the kwok backend's kind comes up ([`super::backend`]: real etcd, kube-apiserver,
//! controller-manager, scheduler and kwok, stand-ins for pods' containers, load balancers), named
//! as GKE names it (run-suffixed), its frontends printing the GKE footer with that name. Its API
//! server's address and CA are what the stand-in reports as the cluster's `endpoint` and
//! `masterAuth.clusterCaCertificate`, so gcloud writes the kubeconfig itself, with the
//! gke-gcloud-auth-plugin; the API server accepts the token that plugin hands out (the one gcloud
//! reads from `CLOUDSDK_AUTH_ACCESS_TOKEN_FILE`). Deleting the cluster stops it.
//!
//! Like the kwok backend, it must run inside the run's network namespace.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Mutex;

use super::backend::{Kwok, KwokConfig, Live};
use crate::exec::{Cmd, Exec, Process};
use meshmig_core::gcp_stand_in::{ClusterEndpoint, ClusterId, ClusterProvider};
use meshmig_core::scenario::{ClusterSpec, FooterVariant};

/// Brings up a kwok cluster for each cluster gcloud creates.
pub struct KwokClusters {
    cfg: KwokConfig,
    specs: Vec<ClusterSpec>,
    run_suffix: String,
    dir: PathBuf,
    tokens: Vec<String>,
    next: AtomicU8,
    live: Mutex<BTreeMap<String, Live>>,
}

impl KwokClusters {
    /// Clusters for a scenario's specs (looked up by the procedure's name: the created name less
    /// `-RUN`), in folders under `dir`, accepting `tokens`.
    pub fn new(
        cfg: KwokConfig,
        specs: Vec<ClusterSpec>,
        run_id: &str,
        dir: PathBuf,
        tokens: Vec<String>,
    ) -> Self {
        Self {
            cfg,
            specs,
            run_suffix: format!("-{run_id}"),
            dir,
            tokens,
            next: AtomicU8::new(0),
            live: Mutex::new(BTreeMap::new()),
        }
    }

    /// The clusters up now (real names).
    pub async fn names(&self) -> Vec<String> {
        self.live.lock().await.keys().cloned().collect()
    }

    /// The scenario's spec for a created cluster, under its real name, printing the GKE footer.
    fn spec_for(&self, id: &ClusterId) -> ClusterSpec {
        let procedure = id.name.strip_suffix(&self.run_suffix).unwrap_or(&id.name);
        let mut spec = self
            .specs
            .iter()
            .find(|s| s.name == procedure)
            .cloned()
            .unwrap_or_else(|| ClusterSpec {
                name: procedure.to_string(),
                zone: id.location.clone(),
                machine_type: None,
                nodes: None,
                workload_pool: false,
                footer: None,
            });
        spec.name = id.name.clone();
        spec.footer = Some(FooterVariant::Gke);
        spec
    }

    /// Installs the managed control plane on a cluster, as Google's controller does after `mesh
    /// update --management automatic`: Istio revision `asm-managed` with no gateways (the
    /// kind and kwok stand-in's command, [`crate::clusters::managed_install_args`]), by
    /// the real istioctl with the cluster's own admin kubeconfig.
    pub async fn install_managed(&self, cluster: &str) -> Result<(), String> {
        let (kubeconfig, kube) = match self.live.lock().await.get(cluster) {
            Some(l) => (l.cluster.kubeconfig.clone(), l.cluster.kube().await),
            None => return Err(format!("no kwok cluster {cluster} is up")),
        };
        let istio = match kube {
            Ok(k) => k
                .list("Deployment", Some("istio-system"))
                .await
                .map(|ds| crate::clusters::runs_istio(&ds))
                .unwrap_or(false),
            Err(_) => false,
        };
        let istioctl = self
            .cfg
            .tools
            .binary("istioctl")
            .map_err(|e| meshmig_core::error_chain(&e))?;
        let cmd = Cmd::new(
            &istioctl.display().to_string(),
            crate::clusters::managed_install_args(cluster, !istio),
        );
        let exec = Process {
            env: [("KUBECONFIG".to_string(), kubeconfig)].into(),
        };
        let ran = exec
            .run(&cmd)
            .await
            .map_err(|e| meshmig_core::error_chain(&e))?;
        if ran.ok() {
            Ok(())
        } else {
            Err(format!("{}: {}", cmd.line(), ran.stderr.trim()))
        }
    }

    /// Whether `istio-system/istiod-asm-managed` is Available on a cluster.
    pub async fn managed_available(&self, cluster: &str) -> bool {
        let kube = match self.live.lock().await.get(cluster) {
            Some(l) => l.cluster.kube().await,
            None => return false,
        };
        let Ok(kube) = kube else { return false };
        let deployments = kube
            .list("Deployment", Some("istio-system"))
            .await
            .unwrap_or_default();
        crate::clusters::managed_control_plane_available(&deployments)
    }

    /// Stops every cluster still up (teardown after the stand-in, whatever gcloud did).
    pub async fn stop_all(&self) -> Vec<String> {
        let all: Vec<Live> = std::mem::take(&mut *self.live.lock().await)
            .into_values()
            .collect();
        let mut done = Vec::new();
        for l in all {
            done.extend(Kwok::stop_live(l).await);
        }
        done
    }
}

#[async_trait::async_trait]
impl ClusterProvider for KwokClusters {
    async fn create(&self, id: &ClusterId) -> Result<ClusterEndpoint, String> {
        if self.live.lock().await.contains_key(&id.name) {
            return Err(format!("kwok cluster {} is up already", id.name));
        }
        let spec = self.spec_for(id);
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        let live = Kwok::bring_up(
            self.cfg.clone(),
            spec,
            index,
            self.dir.join(&id.name),
            &self.tokens,
        )
        .await?;
        let ca_pem = std::fs::read_to_string(&live.cluster.ca)
            .map_err(|e| format!("reading {}: {e}", live.cluster.ca.display()))?;
        let endpoint = format!("127.0.0.1:{}", live.cluster.addrs.api_port);
        self.live.lock().await.insert(id.name.clone(), live);
        Ok(ClusterEndpoint { endpoint, ca_pem })
    }

    async fn delete(&self, id: &ClusterId) -> Result<(), String> {
        let live = self.live.lock().await.remove(&id.name);
        match live {
            Some(l) => {
                Kwok::stop_live(l).await;
                Ok(())
            }
            None => Err(format!("no kwok cluster {} is up", id.name)),
        }
    }
}
