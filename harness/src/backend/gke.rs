//! The GKE backend: the procedure's gcloud commands with their exact flags against a real Google
//! Cloud project, real managed Cloud Service Mesh, and everything in-cluster through the
//! Kubernetes layer ([`super::kube`]).
//!
//! Parallel runs in one project don't collide: real names carry the run id (`cluster-with-csm-
//! RUN`, `cluster-with-csm-membership-RUN`), clusters carry the label `meshmig-run=RUN`, and each
//! run has its own kubeconfig, in which contexts are renamed to the procedure's names. Answers are
//! translated back to the procedure's names, so checks read every backend alike. Commands run as
//! argument vectors, never through a shell; credentials come from gcloud's active account (or
//! GOOGLE_APPLICATION_CREDENTIALS) and are never printed or written into reports.
//!
//! Not run on the machine where it was written (no network there): proven by plan snapshots and
//! tests against recorded outputs; users run it with `cargo test --features gke`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde_json::Value;
use tokio::sync::Mutex;

use super::clusters::ClusterOps;
use super::exec::{Cmd, Exec, Process};
use super::{Backend, BackendError, FleetOp, Inventory, Output, Scratch, TeardownReport};
use crate::dns::DnsServer;
use crate::manifest::Object;
use crate::scenario::{Action, ClusterSpec, Scenario};

/// The label that marks a run's clusters.
pub const RUN_LABEL: &str = "meshmig-run";

/// How a GKE run is set up.
#[derive(Debug, Clone)]
pub struct GkeConfig {
    /// The Google Cloud project.
    pub project: String,
    /// A zone for every cluster (default: each cluster's zone in the scenario).
    pub zone: Option<String>,
    /// The run id (names and labels).
    pub run_id: String,
    /// A Cloud DNS managed zone for the cut-over (default: the embedded DNS server).
    pub dns_zone: Option<String>,
    /// How long to wait for the managed control plane to become ACTIVE.
    pub mesh_timeout: Duration,
    /// How long to wait for Deployments and load balancers after an apply.
    pub ready_timeout: Duration,
    /// The istioctl to run.
    pub istioctl: String,
}

impl GkeConfig {
    /// A configuration with a new run id and the default timeouts.
    pub fn new(project: &str) -> Self {
        Self {
            project: project.to_string(),
            zone: None,
            run_id: new_run_id(),
            dns_zone: None,
            mesh_timeout: Duration::from_secs(20 * 60),
            ready_timeout: Duration::from_secs(10 * 60),
            istioctl: "istioctl".into(),
        }
    }
}

/// A run id: six lowercase letters and digits, starting with a letter.
pub fn new_run_id() -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut r = rand::rng();
    let first = A[r.random_range(0..26)] as char;
    std::iter::once(first)
        .chain((0..5).map(|_| A[r.random_range(0..A.len())] as char))
        .collect()
}

/// Procedure names → real names, and the commands of each action.
pub struct Commands<'a> {
    cfg: &'a GkeConfig,
    clusters: &'a [ClusterSpec],
}

impl<'a> Commands<'a> {
    /// Commands for a scenario's clusters.
    pub fn new(cfg: &'a GkeConfig, clusters: &'a [ClusterSpec]) -> Self {
        Self { cfg, clusters }
    }

    /// The real cluster name of a procedure name (declared or not: the procedure may name a
    /// cluster that does not exist).
    pub fn cluster(&self, name: &str) -> String {
        format!("{name}-{}", self.cfg.run_id)
    }

    /// The real membership name.
    pub fn membership(&self, name: &str) -> String {
        format!("{name}-{}", self.cfg.run_id)
    }

    /// A cluster's zone.
    pub fn zone(&self, name: &str) -> String {
        self.cfg
            .zone
            .clone()
            .or_else(|| {
                self.clusters
                    .iter()
                    .find(|c| c.name == name)
                    .map(|c| c.zone.clone())
            })
            .unwrap_or_else(|| "us-central1-a".into())
    }

    fn p(&self) -> String {
        format!("--project={}", self.cfg.project)
    }

    /// A1, C1.
    pub fn create_cluster(&self, spec: &ClusterSpec) -> Cmd {
        let mut a = vec![
            "container".to_string(),
            "clusters".into(),
            "create".into(),
            self.cluster(&spec.name),
            self.p(),
            format!("--zone={}", self.zone(&spec.name)),
        ];
        if let Some(m) = &spec.machine_type {
            a.push(format!("--machine-type={m}"));
        }
        if let Some(n) = spec.nodes {
            a.push(format!("--num-nodes={n}"));
        }
        if spec.workload_pool {
            a.push("--workload-pool".into());
            a.push(format!("{}.svc.id.goog", self.cfg.project));
        }
        a.push(format!("--labels={RUN_LABEL}={}", self.cfg.run_id));
        Cmd::new("gcloud", a)
    }

    /// The context gcloud writes for a cluster.
    pub fn gcloud_context(&self, name: &str) -> String {
        format!(
            "gke_{}_{}_{}",
            self.cfg.project,
            self.zone(name),
            self.cluster(name)
        )
    }

    /// A2, C2.
    pub fn rename_context(&self, name: &str) -> Cmd {
        Cmd::new(
            "kubectl",
            ["config", "rename-context", &self.gcloud_context(name), name],
        )
    }

    /// A3.
    pub fn get_contexts(&self) -> Cmd {
        Cmd::new("kubectl", ["config", "get-contexts", "--output=name"])
    }

    /// A4.
    pub fn istioctl_install(&self, context: &str, profile: &str) -> Cmd {
        Cmd::new(
            &self.cfg.istioctl,
            [
                "install",
                &format!("--context={context}"),
                "--set",
                &format!("profile={profile}"),
                "-y",
            ],
        )
    }

    /// C3..C5, clean-up.
    pub fn fleet(&self, op: &FleetOp, membership_cluster: Option<&str>) -> Cmd {
        let p = self.cfg.project.as_str();
        match op {
            FleetOp::EnableMesh => Cmd::new(
                "gcloud",
                ["container", "fleet", "mesh", "enable", "--project", p],
            ),
            FleetOp::Register {
                cluster,
                membership,
            } => Cmd::new(
                "gcloud",
                [
                    "container".to_string(),
                    "fleet".into(),
                    "memberships".into(),
                    "register".into(),
                    self.membership(membership),
                    format!(
                        "--gke-cluster={}/{}",
                        self.zone(cluster),
                        self.cluster(cluster)
                    ),
                    "--enable-workload-identity".into(),
                    "--project".into(),
                    p.into(),
                ],
            ),
            FleetOp::MeshUpdate { membership } => Cmd::new(
                "gcloud",
                [
                    "container",
                    "fleet",
                    "mesh",
                    "update",
                    "--management",
                    "automatic",
                    "--memberships",
                    &self.membership(membership),
                    "--project",
                    p,
                ],
            ),
            FleetOp::Unregister { membership } => {
                let mut a = vec![
                    "container".to_string(),
                    "fleet".into(),
                    "memberships".into(),
                    "unregister".into(),
                    self.membership(membership),
                ];
                if let Some(c) = membership_cluster {
                    a.push(format!(
                        "--gke-cluster={}/{}",
                        self.zone(c),
                        self.cluster(c)
                    ));
                }
                a.extend(["--project".into(), p.into(), "--quiet".into()]);
                Cmd::new("gcloud", a)
            }
            FleetOp::DisableMesh => Cmd::new(
                "gcloud",
                [
                    "container",
                    "fleet",
                    "mesh",
                    "disable",
                    "--project",
                    p,
                    "--quiet",
                ],
            ),
        }
    }

    /// C6.
    pub fn mesh_describe(&self) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "container",
                "fleet",
                "mesh",
                "describe",
                "--project",
                &self.cfg.project,
                "--format=yaml",
            ],
        )
    }

    /// G4, H.
    pub fn delete_cluster(&self, name: &str) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "container".to_string(),
                "clusters".into(),
                "delete".into(),
                self.cluster(name),
                format!("--zone={}", self.zone(name)),
                self.p(),
                "--quiet".into(),
            ],
        )
    }

    /// The run's clusters.
    pub fn list_clusters(&self, all_runs: bool) -> Cmd {
        let filter = if all_runs {
            format!("resourceLabels.{RUN_LABEL}:*")
        } else {
            format!("resourceLabels.{RUN_LABEL}={}", self.cfg.run_id)
        };
        Cmd::new(
            "gcloud",
            [
                "container".to_string(),
                "clusters".into(),
                "list".into(),
                self.p(),
                format!("--filter={filter}"),
                "--format=json".into(),
            ],
        )
    }

    /// The project's fleet memberships.
    pub fn list_memberships(&self) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "container",
                "fleet",
                "memberships",
                "list",
                "--project",
                &self.cfg.project,
                "--format=json",
            ],
        )
    }

    /// The project's forwarding rules (the load balancers of LoadBalancer Services).
    pub fn list_forwarding_rules(&self) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "compute".to_string(),
                "forwarding-rules".into(),
                "list".into(),
                self.p(),
                "--format=json".into(),
            ],
        )
    }

    /// G1..G3 through Cloud DNS (`create` the first time, `update` after).
    pub fn dns_record(&self, zone: &str, domain: &str, ip: IpAddr, ttl: u32, create: bool) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "dns".to_string(),
                "record-sets".into(),
                if create {
                    "create".into()
                } else {
                    "update".into()
                },
                format!("{}.", domain.trim_end_matches('.')),
                format!("--zone={zone}"),
                "--type=A".into(),
                format!("--ttl={ttl}"),
                format!("--rrdatas={ip}"),
                self.p(),
            ],
        )
    }
}

/// What a step does on GKE, as lines: commands (`$ …`) and Kubernetes API calls (`api: …`).
pub fn plan_action(
    c: &Commands<'_>,
    s: &Scenario,
    a: &Action,
    dns_zone: Option<&str>,
) -> Vec<String> {
    let cmd = |c: Cmd| format!("$ {}", c.line());
    match a {
        Action::CreateCluster { cluster } => vec![cmd(c.create_cluster(s.cluster(cluster).expect("validated")))],
        Action::RenameContext { cluster } => vec![cmd(c.rename_context(cluster)), cmd(c.get_contexts())],
        Action::InstallIstio { cluster, profile } => vec![
            cmd(c.istioctl_install(cluster, profile)),
            format!("api: wait until Deployments in istio-system are Available and Service istio-ingressgateway has an ingress IP ({cluster})"),
        ],
        Action::FleetEnableMesh => vec![cmd(c.fleet(&FleetOp::EnableMesh, None))],
        Action::FleetRegister { cluster, membership } => {
            vec![cmd(c.fleet(&FleetOp::Register { cluster: cluster.clone(), membership: membership.clone() }, None))]
        }
        Action::FleetMeshUpdate { membership } => vec![cmd(c.fleet(&FleetOp::MeshUpdate { membership: membership.clone() }, None))],
        Action::WaitMeshActive { membership, .. } => vec![format!(
            "{} (repeated with backoff until {} is ACTIVE, at most {:?})",
            cmd(c.mesh_describe()),
            c.membership(membership),
            c.cfg.mesh_timeout
        )],
        Action::CreateNamespace { cluster, name } => vec![format!("api: create Namespace {name} ({cluster})")],
        Action::LabelNamespace { cluster, name, labels } => vec![format!("api: merge-patch Namespace {name} labels {labels:?} ({cluster})")],
        Action::Apply { cluster, namespace, manifests, replace, patch, objects } => {
            let pairs: Vec<(String, String)> = replace.iter().map(|r| (r.from.clone(), r.to.clone())).collect();
            let mut out = Vec::new();
            for m in manifests {
                let mut objs = s.manifests.objects(m, &pairs).map(|(o, _)| o).unwrap_or_default();
                let _ = crate::manifest::patch_objects(&mut objs, patch);
                for o in objs {
                    out.push(format!(
                        "api: server-side apply {} {}/{} (field manager meshmig, from {m}) ({cluster})",
                        o.kind,
                        o.namespace.clone().or(namespace.clone()).unwrap_or_else(|| "default".into()),
                        o.name
                    ));
                }
            }
            for o in objects {
                out.push(format!(
                    "api: server-side apply {} {} (field manager meshmig, written in the scenario) ({cluster})",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                ));
            }
            out.push(format!("api: wait until applied Deployments are Available and LoadBalancer Services have an ingress IP ({cluster})"));
            out
        }
        Action::Delete { cluster, namespace, kind, name } => vec![format!("api: delete {kind} {namespace}/{name} and wait until it is gone ({cluster})")],
        Action::ReadIngressIp { cluster, namespace, save_as } => vec![format!(
            "api: list Services in {namespace}, read .items[0].status.loadBalancer.ingress[0].ip into {save_as} ({cluster})"
        )],
        Action::DnsSetRecord { address, ttl } => match dns_zone {
            Some(z) => vec![format!(
                "$ gcloud dns record-sets create|update {}. --zone={z} --type=A --ttl={ttl} --rrdatas={address} --project={}",
                s.dns.domain, c.cfg.project
            )],
            None => vec![format!("embedded DNS: {}. {ttl} IN A {address}", s.dns.domain)],
        },
        Action::WaitDnsTtl | Action::WaitTtl { .. } => vec![crate::plan::action_line(s, a)],
        Action::DeleteCluster { name } => vec![cmd(c.delete_cluster(name))],
        Action::FleetUnregister { membership } => vec![cmd(c.fleet(&FleetOp::Unregister { membership: membership.clone() }, None))],
        Action::FleetDisableMesh => vec![cmd(c.fleet(&FleetOp::DisableMesh, None))],
    }
}

/// The whole plan for GKE, with the teardown and leak checks that follow every run.
pub fn plan(cfg: &GkeConfig, s: &Scenario) -> String {
    let c = Commands::new(cfg, &s.clusters);
    let mut out = format!(
        "plan: scenario {} on backend gke (project {}, run {}, kubeconfig of its own)\n",
        s.name, cfg.project, cfg.run_id
    );
    out.push_str(&format!("before: $ {}\n", c.list_memberships().line()));
    for step in &s.steps {
        out.push_str(&format!("{} {}\n", step.id, step.title));
        if let Some(a) = &step.run {
            for l in plan_action(&c, s, a, cfg.dns_zone.as_deref()) {
                out.push_str(&format!("    {l}\n"));
            }
        }
        for ch in &step.check {
            out.push_str(&format!("    check {}\n", crate::plan::check_line(ch)));
        }
    }
    out.push_str("teardown (always):\n");
    out.push_str(&format!("    $ {}\n", c.list_clusters(false).line()));
    out.push_str("    $ gcloud container clusters delete NAME --zone=ZONE --project=PROJECT --quiet   (each cluster listed)\n");
    out.push_str(&format!("    $ {}\n", c.list_memberships().line()));
    out.push_str("    $ gcloud container fleet memberships unregister NAME --project PROJECT --quiet   (each membership of the run)\n");
    out.push_str(
        "    mesh feature: disabled only if this run enabled it and no other membership remains\n",
    );
    out.push_str(&format!(
        "    leak check: $ {}; $ {}; $ {}\n",
        c.list_clusters(false).line(),
        c.list_memberships().line(),
        c.list_forwarding_rules().line()
    ));
    out
}

/// The GKE backend.
pub struct Gke {
    cfg: GkeConfig,
    clusters: Vec<ClusterSpec>,
    ops: ClusterOps,
    scratch: Scratch,
    memberships: Mutex<BTreeMap<String, String>>,
    dns: Option<DnsServer>,
    cloud_dns_created: Mutex<bool>,
    mesh_enabled_before: bool,
    mesh_enabled_by_run: Mutex<bool>,
}

impl Gke {
    /// Starts a run: its own kubeconfig, the embedded DNS server unless a Cloud DNS zone is set,
    /// and a first inventory (whether the fleet's mesh feature was already enabled).
    pub async fn start(cfg: GkeConfig, s: &Scenario) -> Result<Self, BackendError> {
        let scratch = Scratch::create("meshmig-gke-")?;
        let kubeconfig = scratch.path().join("kubeconfig");
        let exec: Arc<dyn Exec> = Arc::new(Process {
            env: [("KUBECONFIG".to_string(), kubeconfig.clone())].into(),
        });
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
                            crate::error_chain(&e),
                        )
                    })?,
            )
        } else {
            None
        };
        let c = Commands::new(&cfg, &s.clusters);
        let describe = c.mesh_describe();
        let ran = exec.run(&describe).await.map_err(|e| {
            BackendError::infra("reading the fleet's mesh feature", crate::error_chain(&e))
        })?;
        let mesh_enabled_before = ran.ok() && ran.stdout.contains("state: ACTIVE");
        Ok(Self {
            ops: ClusterOps::new(exec, scratch.path().join("kubeconfig"), cfg.ready_timeout),
            scratch,
            clusters: s.clusters.clone(),
            cfg,
            memberships: Mutex::new(BTreeMap::new()),
            dns,
            cloud_dns_created: Mutex::new(false),
            mesh_enabled_before,
            mesh_enabled_by_run: Mutex::new(false),
        })
    }

    fn cmds(&self) -> Commands<'_> {
        Commands::new(&self.cfg, &self.clusters)
    }

    /// Strips the run suffix from names in gcloud output.
    fn to_procedure_names(&self, text: &str) -> String {
        text.replace(&format!("-{}", self.cfg.run_id), "")
    }
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

    async fn create_cluster(&self, spec: &ClusterSpec) -> Result<Output, BackendError> {
        self.ops.run(self.cmds().create_cluster(spec)).await
    }

    async fn delete_cluster(&self, name: &str) -> Result<Output, BackendError> {
        let out = self.ops.run(self.cmds().delete_cluster(name)).await?;
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

    async fn rename_context(&self, cluster: &str) -> Result<Output, BackendError> {
        self.ops.run(self.cmds().rename_context(cluster)).await
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
        let membership_cluster = match op {
            FleetOp::Unregister { membership } => {
                self.memberships.lock().await.get(membership).cloned()
            }
            _ => None,
        };
        let out = self
            .ops
            .run(self.cmds().fleet(op, membership_cluster.as_deref()))
            .await?;
        match op {
            FleetOp::Register {
                cluster,
                membership,
            } => {
                self.memberships
                    .lock()
                    .await
                    .insert(membership.clone(), cluster.clone());
            }
            FleetOp::Unregister { membership } => {
                self.memberships.lock().await.remove(membership);
            }
            FleetOp::EnableMesh => {
                *self.mesh_enabled_by_run.lock().await = !self.mesh_enabled_before
            }
            _ => {}
        }
        Ok(Output {
            stdout: self.to_procedure_names(&out.stdout),
            ..out
        })
    }

    async fn mesh_describe(&self) -> Result<String, BackendError> {
        let out = self.ops.run(self.cmds().mesh_describe()).await?;
        Ok(self.to_procedure_names(&out.stdout))
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
        self.ops.apply(cluster, namespace, objects).await
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
        match (&self.cfg.dns_zone, &self.dns) {
            (Some(zone), _) => {
                let mut created = self.cloud_dns_created.lock().await;
                let out = self
                    .ops
                    .run(
                        self.cmds()
                            .dns_record(zone, domain, address, ttl, !*created),
                    )
                    .await?;
                *created = true;
                Ok(out)
            }
            (None, Some(dns)) => super::embedded_dns_set(dns, domain, address, ttl).await,
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
        let members = self.ops.run_json(self.cmds().list_memberships()).await?;
        let suffix = format!("-{}", self.cfg.run_id);
        let memberships = members
            .iter()
            .filter_map(|m| {
                m["name"]
                    .as_str()
                    .and_then(|n| n.rsplit('/').next())
                    .map(str::to_string)
            })
            .filter(|n| n.ends_with(&suffix))
            .map(|n| self.to_procedure_names(&n))
            .collect();
        let rules = self
            .ops
            .run_json(self.cmds().list_forwarding_rules())
            .await?;
        let ips = self.ops.lb_ips.lock().await.clone();
        let load_balancers = rules
            .iter()
            .filter_map(|r| r["IPAddress"].as_str().map(str::to_string))
            .filter(|ip| ips.contains(ip))
            .collect();
        let describe = self
            .ops
            .run(self.cmds().mesh_describe())
            .await
            .map(|o| o.stdout)
            .unwrap_or_default();
        Ok(Inventory {
            clusters,
            memberships,
            mesh_feature_enabled: *self.mesh_enabled_by_run.lock().await
                && describe.contains("state: ACTIVE"),
            load_balancers,
        })
    }

    async fn teardown(&self, keep: bool) -> TeardownReport {
        let mut report = TeardownReport::default();
        let inv = match self.inventory().await {
            Ok(i) => i,
            Err(e) => {
                report
                    .failed
                    .push(format!("taking the inventory: {}", crate::error_chain(&e)));
                return report;
            }
        };
        if keep {
            report.kept.extend(
                inv.clusters
                    .keys()
                    .map(|c| format!("cluster {}", self.cmds().cluster(c))),
            );
            report.kept.extend(
                inv.memberships
                    .iter()
                    .map(|m| format!("membership {}", self.cmds().membership(m))),
            );
            report
                .kept
                .push(format!("kubeconfig {}", self.ops.kubeconfig.display()));
            self.scratch.keep();
            return report;
        }
        for m in &inv.memberships {
            match self
                .fleet(&FleetOp::Unregister {
                    membership: m.clone(),
                })
                .await
            {
                Ok(_) => report
                    .removed
                    .push(format!("fleet membership {}", self.cmds().membership(m))),
                Err(e) => report.failed.push(format!(
                    "fleet membership {}: {e}",
                    self.cmds().membership(m)
                )),
            }
        }
        for c in inv.clusters.keys() {
            match self.delete_cluster(c).await {
                Ok(_) => report
                    .removed
                    .push(format!("cluster {}", self.cmds().cluster(c))),
                Err(e) => report
                    .failed
                    .push(format!("cluster {}: {e}", self.cmds().cluster(c))),
            }
        }
        if inv.mesh_feature_enabled {
            let others = self
                .ops
                .run_json(self.cmds().list_memberships())
                .await
                .map(|v| v.len())
                .unwrap_or(1);
            if others == 0 {
                match self.fleet(&FleetOp::DisableMesh).await {
                    Ok(_) => report
                        .removed
                        .push("fleet mesh feature (enabled by this run)".into()),
                    Err(e) => report.failed.push(format!("fleet mesh feature: {e}")),
                }
            } else {
                report
                    .kept
                    .push("fleet mesh feature (other memberships use it)".into());
            }
        }
        if let Some(d) = &self.dns {
            d.stop().await;
        }
        match self.inventory().await {
            Ok(after) => {
                for (c, st) in &after.clusters {
                    report
                        .failed
                        .push(format!("LEAK: cluster {} ({st})", self.cmds().cluster(c)));
                }
                for m in &after.memberships {
                    report.failed.push(format!(
                        "LEAK: fleet membership {}",
                        self.cmds().membership(m)
                    ));
                }
                for lb in &after.load_balancers {
                    report
                        .failed
                        .push(format!("LEAK: forwarding rule for {lb}"));
                }
            }
            Err(e) => report.failed.push(format!(
                "re-taking the inventory: {}",
                crate::error_chain(&e)
            )),
        }
        let _ = self.scratch.remove();
        report
    }

    fn scratch_paths(&self) -> Vec<PathBuf> {
        vec![self.scratch.path().to_path_buf()]
    }

    fn mesh_wait(&self, _timeout: Duration, _poll: Duration) -> (Duration, Duration) {
        (self.cfg.mesh_timeout, Duration::from_secs(15))
    }
}

/// `meshmig gc`: deletes clusters of any run older than `older_than` (by the `meshmig-run` label
/// and their creation time) and the fleet memberships named after their run ids.
pub async fn gc(
    exec: &dyn Exec,
    project: &str,
    older_than: Duration,
    now: chrono_like::Utc,
) -> Result<Vec<String>, BackendError> {
    let cfg = GkeConfig::new(project);
    let c = Commands::new(&cfg, &[]);
    let listed = super::clusters::run_json(exec, &c.list_clusters(true)).await?;
    let mut done = Vec::new();
    let mut runs = BTreeSet::new();
    for cl in listed {
        let (Some(name), Some(zone), Some(created), Some(run)) = (
            cl["name"].as_str(),
            cl["zone"].as_str().or(cl["location"].as_str()),
            cl["createTime"].as_str(),
            cl["resourceLabels"][RUN_LABEL].as_str(),
        ) else {
            continue;
        };
        let Some(age) = chrono_like::age(created, now) else {
            continue;
        };
        if age < older_than {
            continue;
        }
        runs.insert(run.to_string());
        let del = Cmd::new(
            "gcloud",
            [
                "container",
                "clusters",
                "delete",
                name,
                &format!("--zone={zone}"),
                &format!("--project={project}"),
                "--quiet",
            ],
        );
        let r = exec
            .run(&del)
            .await
            .map_err(|e| BackendError::infra("deleting a cluster", crate::error_chain(&e)))?;
        done.push(format!(
            "{} cluster {name} (run {run}, {}h old)",
            if r.ok() {
                "deleted"
            } else {
                "FAILED to delete"
            },
            age.as_secs() / 3600
        ));
    }
    for m in super::clusters::run_json(exec, &c.list_memberships()).await? {
        let Some(name) = m["name"].as_str().and_then(|n| n.rsplit('/').next()) else {
            continue;
        };
        if runs.iter().any(|r| name.ends_with(&format!("-{r}"))) {
            let un = Cmd::new(
                "gcloud",
                [
                    "container",
                    "fleet",
                    "memberships",
                    "unregister",
                    name,
                    "--project",
                    project,
                    "--quiet",
                ],
            );
            let r = exec.run(&un).await.map_err(|e| {
                BackendError::infra("unregistering a membership", crate::error_chain(&e))
            })?;
            done.push(format!(
                "{} fleet membership {name}",
                if r.ok() {
                    "unregistered"
                } else {
                    "FAILED to unregister"
                }
            ));
        }
    }
    Ok(done)
}

/// Just enough time arithmetic for `gc` (RFC 3339 timestamps as gcloud prints them).
pub mod chrono_like {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// Seconds since the epoch.
    #[derive(Debug, Clone, Copy)]
    pub struct Utc(pub u64);

    impl Utc {
        /// Now.
        pub fn now() -> Self {
            Utc(SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0))
        }
    }

    /// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    fn days(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146097 + doe - 719468
    }

    /// Seconds since the epoch of `2026-11-27T00:00:00+00:00` (fractions and `Z` accepted).
    pub fn parse(ts: &str) -> Option<u64> {
        let b = ts.as_bytes();
        if b.len() < 19 {
            return None;
        }
        let n = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
        let secs = days(n(0..4)?, n(5..7)?, n(8..10)?) * 86400
            + n(11..13)? * 3600
            + n(14..16)? * 60
            + n(17..19)?;
        let rest = &ts[19..];
        let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
        let offset = match rest {
            "" | "Z" => 0,
            o if o.len() == 6 => {
                let sign = if o.starts_with('-') { -1 } else { 1 };
                sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
            }
            _ => return None,
        };
        u64::try_from(secs - offset).ok()
    }

    /// How old a timestamp is at `now`.
    pub fn age(ts: &str, now: Utc) -> Option<Duration> {
        parse(ts).map(|t| Duration::from_secs(now.0.saturating_sub(t)))
    }
}
