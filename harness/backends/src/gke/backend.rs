//! The GKE backend itself: starting a run (credentials, its own kubeconfig, the mesh feature's
//! state) and the [`Backend`] operations, with real names read back as the procedure's.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::commands::{membership_parts, Commands};
use super::GkeConfig;
use crate::clusters::{ClusterOps, Creations};
use crate::exec::{Cmd, Exec, Process};
use crate::{
    Backend, BackendError, FleetOp, Inventory, Kubernetes, Output, Scratch, TeardownReport,
};
use meshmig_core::dns::DnsServer;
use meshmig_core::scenario::{ClusterSpec, Scenario};
use meshmig_core::tools::MissingTool;

/// The GKE backend.
pub struct Gke {
    pub(super) cfg: GkeConfig,
    clusters: Vec<ClusterSpec>,
    pub(super) ops: Arc<ClusterOps>,
    creations: Creations,
    /// The scenario's domain (the A record teardown deletes from a Cloud DNS zone).
    pub(super) domain: String,
    pub(super) scratch: Scratch,
    pub(super) dns: Option<DnsServer>,
    pub(super) cloud_dns_created: Mutex<bool>,
    mesh_enabled_before: bool,
    pub(super) mesh_enabled_by_run: Mutex<bool>,
    /// Stopped after teardown (a rehearsal's Google Cloud stand-in).
    pub(super) companion: Option<Arc<dyn crate::Companion>>,
    /// Who answers the checks.
    witnesses: crate::witness::Witnesses,
}

impl Gke {
    /// Starts a run: gcloud's credentials and kubectl's auth plugin checked, its own kubeconfig,
    /// the embedded DNS server unless a Cloud DNS zone is set, and a first inventory (whether
    /// the fleet's mesh feature was already enabled).
    pub async fn start(cfg: GkeConfig, s: &Scenario) -> Result<Self, BackendError> {
        let scratch = Scratch::create("meshmig-gke-")?;
        let kubeconfig = scratch.path().join("kubeconfig");
        let exec: Arc<dyn Exec> = Arc::new(Process {
            env: [("KUBECONFIG".to_string(), kubeconfig.clone())].into(),
        });
        if meshmig_core::tools::on_path("gke-gcloud-auth-plugin").is_none() {
            return Err(BackendError::MissingTool(MissingTool {
                doing: "reaching GKE clusters (kubectl and the harness authenticate through it)"
                    .into(),
                tool: "gke-gcloud-auth-plugin".into(),
                hint: "gcloud components install gke-gcloud-auth-plugin, or apt-get install google-cloud-cli-gke-gcloud-auth-plugin".into(),
            }));
        }
        check_credentials(exec.as_ref()).await?;
        Self::with_exec(cfg, s, exec, scratch).await
    }

    /// As `start`, with a given command runner (tests use recorded outputs).
    pub async fn with_exec(
        cfg: GkeConfig,
        s: &Scenario,
        exec: Arc<dyn Exec>,
        scratch: impl Into<Scratch>,
    ) -> Result<Self, BackendError> {
        let scratch: Scratch = scratch.into();
        let dns = if cfg.dns_zone.is_none() {
            Some(
                DnsServer::start(std::net::Ipv4Addr::LOCALHOST, &s.dns.domain)
                    .await
                    .map_err(|e| {
                        BackendError::infra(
                            "starting the embedded DNS server",
                            meshmig_core::error_chain(&e),
                        )
                    })?,
            )
        } else {
            None
        };
        let c = Commands::new(&cfg, &s.clusters);
        let describe = c.mesh_describe();
        let ran = exec.run(&describe).await.map_err(|e| {
            BackendError::infra(
                "reading the fleet's mesh feature",
                meshmig_core::error_chain(&e),
            )
        })?;
        let mesh_enabled_before = ran.ok() && ran.stdout.contains("state: ACTIVE");
        let witnesses = cfg
            .witnesses
            .clone()
            .unwrap_or_else(|| super::google_witnesses(&cfg));
        Ok(Self {
            witnesses,
            ops: Arc::new(ClusterOps::new(
                exec,
                scratch.path().join("kubeconfig"),
                cfg.ready_timeout,
            )),
            creations: Creations::default(),
            domain: s.dns.domain.clone(),
            scratch,
            clusters: s.clusters.clone(),
            cfg,
            dns,
            cloud_dns_created: Mutex::new(false),
            mesh_enabled_before,
            mesh_enabled_by_run: Mutex::new(false),
            companion: None,
        })
    }

    /// The backend with something to stop after its teardown (unless `--keep`).
    pub fn with_companion(mut self, companion: Arc<dyn crate::Companion>) -> Self {
        self.companion = Some(companion);
        self
    }

    pub(super) fn cmds(&self) -> Commands<'_> {
        Commands::new(&self.cfg, &self.clusters)
    }

    /// Strips the run suffix from names in gcloud output.
    pub(super) fn to_procedure_names(&self, text: &str) -> String {
        text.replace(&format!("-{}", self.cfg.run_id), "")
    }

    /// `mesh describe`'s YAML; empty when gcloud answers that the project's mesh feature is not
    /// enabled ([`meshmig_core::gcloud::feature_not_enabled`]: after `mesh disable`, that is the answer
    /// H3 expects, not a failure).
    pub(super) async fn describe(&self) -> Result<String, BackendError> {
        match self.run(self.cmds().mesh_describe()).await {
            Ok(out) => Ok(out.stdout),
            Err(BackendError::Procedure { message, .. })
                if meshmig_core::gcloud::feature_not_enabled(&message) =>
            {
                Ok(String::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Runs a command, read as [`gcloud_answer`] says.
    pub(super) async fn run(&self, cmd: Cmd) -> Result<Output, BackendError> {
        gcloud_answer(self.ops.run(cmd).await)
    }

    /// The run's memberships: (procedure name, real name, location).
    pub(super) async fn run_memberships(
        &self,
    ) -> Result<Vec<(String, String, String)>, BackendError> {
        let suffix = format!("-{}", self.cfg.run_id);
        Ok(self
            .ops
            .run_json(self.cmds().list_memberships())
            .await?
            .iter()
            .filter_map(|m| membership_parts(m["name"].as_str()?))
            .filter(|(n, _)| n.ends_with(&suffix))
            .map(|(n, l)| (self.to_procedure_names(n), n.to_string(), l.to_string()))
            .collect())
    }
}

/// A command's result as the GKE backend reads it: gcloud's piped progress joined as a terminal
/// shows it; an error about the platform (permission, quota, an API not enabled) is an
/// infrastructure failure, not the procedure's.
fn gcloud_answer(r: Result<Output, BackendError>) -> Result<Output, BackendError> {
    match r {
        Ok(mut out) => {
            out.stdout = meshmig_core::gcloud::normalise_progress(&out.stdout);
            Ok(out)
        }
        Err(BackendError::Procedure { command, message })
            if meshmig_core::gcloud::platform_error(&message) =>
        {
            Err(BackendError::Infrastructure {
                doing: format!("running {command}"),
                message,
            })
        }
        Err(e) => Err(e),
    }
}

/// Whether gcloud can act for someone: `gcloud auth print-access-token` must print a token (read
/// only to see that it is there, never shown). Application Default Credentials alone
/// (`gcloud auth application-default login`, GOOGLE_APPLICATION_CREDENTIALS) do not give gcloud
/// an account.
pub async fn check_credentials(exec: &dyn Exec) -> Result<(), BackendError> {
    let cmd = Commands::print_access_token();
    let ran = exec.run(&cmd).await.map_err(|e| {
        BackendError::infra(
            "checking gcloud's credentials",
            meshmig_core::error_chain(&e),
        )
    })?;
    if ran.ok() && !ran.stdout.trim().is_empty() {
        return Ok(());
    }
    Err(BackendError::Infrastructure {
        doing: "checking gcloud's credentials".into(),
        message: "`gcloud auth print-access-token` printed no token: run `gcloud auth login` (or `gcloud auth activate-service-account --key-file=KEY`); Application Default Credentials (`gcloud auth application-default login`, GOOGLE_APPLICATION_CREDENTIALS) are not gcloud's own".into(),
    })
}

/// The first `nameserver` of /etc/resolv.conf (127.0.0.53 when there is none).
fn system_nameserver() -> SocketAddr {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|t| {
            t.lines()
                .filter_map(|l| l.trim().strip_prefix("nameserver"))
                .find_map(|a| a.trim().parse::<IpAddr>().ok())
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .unwrap_or_else(|| "127.0.0.53:53".parse().expect("a static address"))
}

#[async_trait]
impl Backend for Gke {
    /// Footers on GKE print the real, run-suffixed cluster name (`cluster-with-istio-RUN`).
    fn real_cluster_names(&self) -> BTreeMap<String, String> {
        self.clusters
            .iter()
            .map(|c| (format!("{}-{}", c.name, self.cfg.run_id), c.name.clone()))
            .collect()
    }

    fn name(&self) -> &'static str {
        "gke"
    }

    fn kubernetes(&self) -> &dyn Kubernetes {
        self.ops.as_ref()
    }

    fn witnesses(&self) -> &crate::witness::Witnesses {
        &self.witnesses
    }

    /// On Google Cloud, the running gateway pods Gateway `namespace/gateway` selects and their
    /// Envoy's `config_dump` as `istioctl proxy-config all` prints it. None where the witnesses
    /// say the gateways' routes are not read: a rehearsal's kwok pods cannot be port-forwarded,
    /// so there the `routes` check reads the VirtualServices as stored.
    async fn gateway_routes(
        &self,
        cluster: &str,
        namespace: &str,
        gateway: &str,
    ) -> Result<Option<crate::GatewayDumps>, BackendError> {
        if self.witnesses.routes.is_none() {
            return Ok(None);
        }
        crate::gateway_config::gateway_dumps(
            &self.ops,
            &self.cfg.istioctl,
            cluster,
            namespace,
            gateway,
        )
        .await
        .map(Some)
    }

    /// On Google Cloud, `istioctl proxy-status` for each revision whose istiod pods run,
    /// port-forwarded; with managed CSM and no istiod pod, istioctl's own fallback to the XDS
    /// address of the revision's webhook (not run against a real project here). None in a rehearsal, whose kwok pods
    /// cannot be port-forwarded.
    async fn proxy_status(
        &self,
        cluster: &str,
    ) -> Result<Option<crate::proxy_status::ProxyStatus>, BackendError> {
        if self.witnesses.proxy_status.is_none() {
            return Ok(None);
        }
        crate::proxy_status::ask_every_revision(&self.ops, &self.cfg.istioctl, cluster)
            .await
            .map(Some)
    }

    /// After an apply returns, istiod still has to push the routes to the gateway, and a new
    /// Google Cloud load balancer takes a while to pass traffic after its IP appears: checks
    /// that read the data plane once ask again for up to two minutes.
    fn convergence(&self) -> Duration {
        Duration::from_secs(120)
    }

    /// The first creation starts every cluster's (A1 and C1 overlap, as on kind).
    async fn create_cluster(&self, spec: &ClusterSpec) -> Result<Output, BackendError> {
        let all = self
            .clusters
            .iter()
            .map(|c| (c.name.clone(), self.cmds().create_cluster(c)))
            .collect();
        gcloud_answer(self.creations.create(&spec.name, &self.ops, all).await)
    }

    async fn delete_cluster(&self, name: &str) -> Result<Output, BackendError> {
        let out = self.run(self.cmds().delete_cluster(name)).await?;
        self.ops.forget(name).await;
        Ok(out)
    }

    async fn clusters(&self) -> Result<BTreeMap<String, String>, BackendError> {
        let items = self.ops.run_json(self.cmds().list_clusters(false)).await?;
        Ok(items
            .iter()
            .filter_map(|c| {
                Some((
                    self.to_procedure_names(c["name"].as_str()?),
                    c["status"].as_str().unwrap_or("UNKNOWN").to_string(),
                ))
            })
            .collect())
    }

    /// After every creation has ended: each writes the kubeconfig when it ends.
    async fn rename_context(&self, cluster: &str) -> Result<Output, BackendError> {
        self.creations.settle().await;
        let c = self.cmds();
        let mut before = String::new();
        if !self.contexts().await?.contains(&c.gcloud_context(cluster)) {
            // Concurrent creations' kubeconfig writes can lose an entry; gcloud writes it again.
            let got = self.run(c.get_credentials(cluster)).await?;
            before = format!("$ {}\n{}", got.command, got.stdout);
        }
        let renamed = self.run(c.rename_context(cluster)).await?;
        Ok(Output {
            stdout: format!("{before}{}", renamed.stdout),
            ..renamed
        })
    }

    async fn contexts(&self) -> Result<Vec<String>, BackendError> {
        self.ops.contexts(self.cmds().get_contexts()).await
    }

    async fn install_istio(&self, cluster: &str, profile: &str) -> Result<Output, BackendError> {
        self.ops
            .install_istio(self.cmds().istioctl_install(cluster, profile), cluster)
            .await
    }

    async fn fleet(&self, op: &FleetOp) -> Result<Output, BackendError> {
        let location = match op {
            FleetOp::Unregister { membership } => self
                .run_memberships()
                .await?
                .into_iter()
                .find(|(n, ..)| n == membership)
                .map(|(_, _, l)| l),
            _ => None,
        };
        let out = self.run(self.cmds().fleet(op, location.as_deref())).await?;
        if let FleetOp::EnableMesh = op {
            *self.mesh_enabled_by_run.lock().await = !self.mesh_enabled_before
        }
        Ok(Output {
            stdout: self.to_procedure_names(&out.stdout),
            ..out
        })
    }

    async fn mesh_describe(&self) -> Result<String, BackendError> {
        Ok(self.to_procedure_names(&self.describe().await?))
    }

    async fn dns_set(
        &self,
        domain: &str,
        address: IpAddr,
        ttl: u32,
    ) -> Result<Output, BackendError> {
        match (&self.cfg.dns_zone, &self.dns) {
            (Some(zone), _) => {
                let mut created = self.cloud_dns_created.lock().await;
                let out = self
                    .run(
                        self.cmds()
                            .dns_record(zone, domain, address, ttl, !*created),
                    )
                    .await?;
                *created = true;
                Ok(out)
            }
            (None, Some(dns)) => crate::embedded_dns_set(dns, domain, address, ttl).await,
            (None, None) => Err(BackendError::infra("setting the A record", "no DNS server")),
        }
    }

    fn dns_server(&self) -> SocketAddr {
        match &self.dns {
            Some(d) => d.addr(),
            // With Cloud DNS the system's resolver answers (the zone must be delegated to it).
            None => system_nameserver(),
        }
    }

    async fn inventory(&self) -> Result<Inventory, BackendError> {
        let clusters = self.clusters().await?;
        let memberships = self
            .run_memberships()
            .await?
            .into_iter()
            .map(|(n, ..)| n)
            .collect();
        let mut load_balancers = Vec::new();
        for l in self.load_balancer_leaks().await {
            load_balancers.extend(l.map_err(|m| BackendError::infra("taking the inventory", m))?);
        }
        let describe = self.describe().await?;
        Ok(Inventory {
            clusters,
            memberships,
            mesh_feature_enabled: *self.mesh_enabled_by_run.lock().await
                && describe.contains("state: ACTIVE"),
            load_balancers,
        })
    }

    /// Best effort, one kind of resource after the other: a listing or a delete that fails is
    /// reported and the rest goes on. Operations still running (a creation interrupted by
    /// Ctrl-C) are waited for first; LoadBalancer Services go before their cluster; then every
    /// kind is listed again, and what is left is reported as a LEAK (or as not verified, when
    /// its listing failed: never as "nothing left").
    async fn teardown(&self, keep: bool) -> TeardownReport {
        self.tear_down(keep).await
    }

    fn scratch_paths(&self) -> Vec<PathBuf> {
        vec![self.scratch.path().to_path_buf()]
    }

    fn mesh_wait(&self, _timeout: Duration, _poll: Duration) -> (Duration, Duration) {
        (self.cfg.mesh_timeout, Duration::from_secs(15))
    }
}
