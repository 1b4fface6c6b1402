//! The kwok backend: the procedure on real control planes, with stand-ins only where this
//! machine has nothing real (nodes and kubelets: kwok; application containers: stand-in frontends
//! and fake pods; the cloud load balancer: [`super::lb`]; the fleet API: the stand-in kind uses).
//!
//! Every Kubernetes operation goes through [`ClusterOps`], the kube-rs code the kind backend
//! runs; contexts are renamed with the real kubectl, Istio is installed with the real istioctl.
//! What differs from kind is only how clusters, load balancers and pods' containers come to be.
//! The process must already be inside its own network namespace ([`meshmig_core::netns::enter`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Mutex;

use super::cluster::{kubeconfig_yaml, Addresses, Cluster};
use super::lb::LoadBalancers;
use super::stand_ins::{new_ready_services, Settings, StandIns};
use crate::clusters::{ClusterOps, FleetStandIn, KubeHooks, MANAGED_REVISION};
use crate::exec::{Cmd, Exec, Process};
use crate::kube::FIELD_MANAGER;
use crate::witness::Witnesses;
use crate::GatewayDumps as Dumps;
use crate::{
    Backend, BackendError, FleetOp, Inventory, Kubernetes, Output, Scratch, TeardownReport,
};
use meshmig_core::dns::DnsServer;
use meshmig_core::manifest::Object;
use meshmig_core::scenario::{ClusterSpec, Fault, Scenario};
use meshmig_core::tools::Tools;

/// How a kwok run is set up.
#[derive(Debug, Clone)]
pub struct KwokConfig {
    /// The real components.
    pub tools: Tools,
    /// Envoy.
    pub envoy: PathBuf,
    /// How long to wait for Deployments and load balancers.
    pub ready_timeout: Duration,
}

/// Clusters kept by `--keep`: they live in this process until [`stop_kept`].
static KEPT: std::sync::Mutex<Vec<Live>> = std::sync::Mutex::new(Vec::new());

/// Stops what `--keep` kept (after Ctrl-C), waiting for every process.
pub async fn stop_kept() -> Vec<String> {
    let kept: Vec<Live> = KEPT
        .lock()
        .map(|mut k| std::mem::take(&mut *k))
        .unwrap_or_default();
    let mut done = Vec::new();
    for l in kept {
        done.extend(Kwok::stop_live(l).await);
    }
    done
}

/// A kwok cluster with what stands in for its pods' containers and its load balancers.
pub(super) struct Live {
    pub(super) cluster: Cluster,
    stand_ins: StandIns,
    lbs: Option<LoadBalancers>,
}

/// The kwok backend.
pub struct Kwok {
    cfg: KwokConfig,
    specs: Vec<ClusterSpec>,
    ops: Arc<ClusterOps>,
    scratch: Scratch,
    live: Arc<Mutex<BTreeMap<String, Live>>>,
    creating: Mutex<Option<tokio::task::JoinHandle<()>>>,
    created: Arc<Mutex<BTreeMap<String, Result<Live, String>>>>,
    fleet: FleetStandIn,
    dns: DnsServer,
    witnesses: Witnesses,
}

fn infra(doing: impl Into<String>, e: impl std::fmt::Display) -> BackendError {
    BackendError::infra(doing, e)
}

impl Kwok {
    /// Starts a run: its scratch folder and kubeconfig, the embedded DNS server.
    pub async fn start(cfg: KwokConfig, s: &Scenario) -> Result<Self, BackendError> {
        if !meshmig_core::netns::inside() {
            return Err(infra(
                "starting the kwok backend",
                "the process is not in a network namespace of its own (meshmig run enters one before anything starts)",
            ));
        }
        meshmig_core::netns::add_host_address()
            .map_err(|e| infra("giving the run's network namespace a host address", e))?;
        for b in super::KWOK_BINARIES.into_iter().chain(["kubectl"]) {
            cfg.tools
                .binary(b)
                .map_err(|e| infra("finding the real components", meshmig_core::error_chain(&e)))?;
        }
        if s.clusters.len() > 12 {
            return Err(infra(
                "planning the clusters' addresses",
                format!(
                    "{} clusters; a kwok run has 12 address ranges",
                    s.clusters.len()
                ),
            ));
        }
        let scratch = Scratch::create("meshmig-kwok-")?;
        let kubeconfig = scratch.path().join("kubeconfig");
        crate::write_private(
            &kubeconfig,
            "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
        )
        .map_err(|e| infra("writing the run's kubeconfig", e))?;
        // kubectl and istioctl from the tools folder come first on PATH.
        let bin_dirs: Vec<PathBuf> = ["kubectl", "istioctl"]
            .iter()
            .filter_map(|b| cfg.tools.binary(b).ok())
            .filter_map(|p| p.parent().map(|d| d.to_path_buf()))
            .collect();
        let path = std::env::join_paths(
            bin_dirs.into_iter().chain(
                std::env::var_os("PATH")
                    .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
        )
        .map_err(|e| infra("setting PATH for the tools", e))?;
        let exec: Arc<dyn Exec> = Arc::new(Process {
            env: [
                ("KUBECONFIG".to_string(), kubeconfig.clone()),
                ("PATH".to_string(), PathBuf::from(path)),
            ]
            .into(),
        });
        let dns = DnsServer::start(Ipv4Addr::LOCALHOST, &s.dns.domain)
            .await
            .map_err(|e| {
                infra(
                    "starting the embedded DNS server",
                    meshmig_core::error_chain(&e),
                )
            })?;
        let live = Arc::new(Mutex::new(BTreeMap::new()));
        let hooks = Arc::new(PushSeen { live: live.clone() });
        Ok(Self {
            witnesses: super::witness::witnesses(&cfg.tools, &cfg.envoy),
            ops: Arc::new(ClusterOps::new(exec, kubeconfig, cfg.ready_timeout).with_hooks(hooks)),
            cfg,
            specs: s.clusters.clone(),
            scratch,
            live,
            creating: Mutex::new(None),
            created: Arc::new(Mutex::new(BTreeMap::new())),
            fleet: FleetStandIn::new(s),
            dns,
        })
    }

    fn kind_context(name: &str) -> String {
        format!("kwok-{name}")
    }

    fn istioctl(&self, args: &[&str]) -> Cmd {
        let p = self
            .cfg
            .tools
            .binary("istioctl")
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "istioctl".into());
        Cmd::new(&p, args.iter().copied())
    }

    /// Brings one cluster up with its stand-ins and load balancers.
    pub(super) async fn bring_up(
        cfg: KwokConfig,
        spec: ClusterSpec,
        index: u8,
        dir: PathBuf,
        tokens: &[String],
    ) -> Result<Live, String> {
        let cluster = Cluster::start_accepting(&spec.name, index, &dir, &cfg.tools, tokens)
            .await
            .map_err(|e| meshmig_core::error_chain(&e))?;
        let kube = cluster
            .kube()
            .await
            .map_err(|e| meshmig_core::error_chain(&e))?;
        let settings = Settings {
            spec: spec.clone(),
            kubeconfig: cluster.kubeconfig.clone(),
            dir: dir.join("pods"),
            pilot: cfg
                .tools
                .binary("pilot-discovery")
                .map_err(|e| meshmig_core::error_chain(&e))?,
            envoy: cfg.envoy.clone(),
            istio_version: cfg.tools.versions.istio.clone(),
            ctrlz_base: 9876 + 10 * u16::from(index),
            slot_base: 100 * u32::from(index),
        };
        let stand_ins = StandIns::start(kube.clone(), settings, new_ready_services());
        let base = Addresses::of(index)
            .map(|a| a.lb_base)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let lbs = Some(LoadBalancers::start(kube, &spec.name, base));
        Ok(Live {
            cluster,
            stand_ins,
            lbs,
        })
    }

    /// Adds a created cluster's context (`kwok-NAME`) to the run's kubeconfig.
    async fn merge_context(&self, live: &Live) -> Result<(), BackendError> {
        let c = &live.cluster;
        let own = kubeconfig_yaml(
            &Self::kind_context(&c.name),
            c.addrs.api_port,
            &c.ca,
            &c.token,
        );
        let mut run: Value = meshmig_core::yaml::from_str(
            &std::fs::read_to_string(&self.ops.kubeconfig)
                .map_err(|e| infra("reading the run's kubeconfig", e))?,
        )
        .map_err(|e| infra("reading the run's kubeconfig", e))?;
        let add: Value =
            meshmig_core::yaml::from_str(&own).map_err(|e| infra("merging a kubeconfig", e))?;
        for key in ["clusters", "contexts", "users"] {
            let mut items = run[key].as_array().cloned().unwrap_or_default();
            items.extend(add[key].as_array().cloned().unwrap_or_default());
            run[key] = Value::Array(items);
        }
        crate::write_private(
            &self.ops.kubeconfig,
            meshmig_core::yaml::to_string(&run)
                .map_err(|e| infra("writing the run's kubeconfig", e))?,
        )
        .map_err(|e| infra("writing the run's kubeconfig", e))?;
        Ok(())
    }

    pub(super) async fn stop_live(mut live: Live) -> Vec<String> {
        let mut done = Vec::new();
        live.stand_ins.stop().await;
        if let Some(lb) = live.lbs.take() {
            lb.stop().await;
        }
        live.cluster.stop().await;
        done.push(format!(
            "kwok cluster {} (its processes stopped)",
            live.cluster.name
        ));
        done
    }
}

/// kwok's [`KubeHooks`]: an apply that changes Istio configuration waits until every gateway
/// Envoy of the cluster has accepted istiod's push.
struct PushSeen {
    live: Arc<Mutex<BTreeMap<String, Live>>>,
}

#[async_trait]
impl KubeHooks for PushSeen {
    /// Applies, and when Istio configuration changed, waits until every gateway Envoy of the
    /// cluster has accepted istiod's push (as the emulated backend waits for Envoy's
    /// acknowledgement), so a check that samples right after sees the new routes.
    async fn apply(
        &self,
        ops: &ClusterOps,
        cluster: &str,
        namespace: Option<&str>,
        objects: &[Object],
    ) -> Result<Output, BackendError> {
        let istio = objects
            .iter()
            .any(|o| o.api_version.starts_with("networking.istio.io/"));
        let before = if istio {
            match self.live.lock().await.get(cluster) {
                Some(l) => l.stand_ins.gateway_versions().await,
                None => BTreeMap::new(),
            }
        } else {
            BTreeMap::new()
        };
        let mut out = ops
            .apply_as(cluster, namespace, objects, FIELD_MANAGER)
            .await?;
        if before.is_empty() {
            return Ok(out);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let now = match self.live.lock().await.get(cluster) {
                Some(l) => l.stand_ins.gateway_versions().await,
                None => BTreeMap::new(),
            };
            let pending: Vec<&String> = before
                .iter()
                .filter(|(k, v)| now.get(*k).is_some_and(|n| n == *v))
                .map(|(k, _)| k)
                .collect();
            if pending.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                out.stdout.push_str(&format!(
                    "(istiod's push not seen within 15 s by gateway pods {pending:?})\n"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(out)
    }
}

#[async_trait]
impl Backend for Kwok {
    fn name(&self) -> &'static str {
        "kwok"
    }

    fn kubernetes(&self) -> &dyn Kubernetes {
        self.ops.as_ref()
    }

    fn convergence(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn istio_version(&self) -> Option<String> {
        Some(self.cfg.tools.versions.istio.clone())
    }

    fn witnesses(&self) -> &Witnesses {
        &self.witnesses
    }

    async fn create_cluster(&self, spec: &ClusterSpec) -> Result<Output, BackendError> {
        {
            let mut creating = self.creating.lock().await;
            if creating.is_none() && self.live.lock().await.is_empty() {
                // The first create step starts every cluster at once (as on kind).
                let (cfg, specs, base, created) = (
                    self.cfg.clone(),
                    self.specs.clone(),
                    self.scratch.path().to_path_buf(),
                    self.created.clone(),
                );
                *creating = Some(tokio::spawn(async move {
                    let ups = specs.iter().enumerate().map(|(i, sp)| {
                        let (cfg, sp, dir) = (cfg.clone(), sp.clone(), base.join(&sp.name));
                        async move {
                            (
                                sp.name.clone(),
                                Self::bring_up(cfg, sp, i as u8, dir, &[]).await,
                            )
                        }
                    });
                    for (name, r) in futures::future::join_all(ups).await {
                        created.lock().await.insert(name, r);
                    }
                }));
            }
        }
        let command = format!(
            "(kwok) etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok for {}",
            spec.name
        );
        if let Some(h) = self.creating.lock().await.take() {
            h.await
                .map_err(|e| infra("creating the kwok clusters", e))?;
        }
        let taken = self.created.lock().await.remove(&spec.name);
        let live = match taken {
            Some(Ok(live)) => live,
            Some(Err(e)) => return Err(infra(format!("creating kwok cluster {}", spec.name), e)),
            None => {
                if self.live.lock().await.contains_key(&spec.name) {
                    return Err(BackendError::Procedure {
                        command,
                        message: format!("cluster {} already exists", spec.name),
                    });
                }
                let index = self
                    .specs
                    .iter()
                    .position(|s| s.name == spec.name)
                    .unwrap_or(0) as u8;
                Self::bring_up(
                    self.cfg.clone(),
                    spec.clone(),
                    index,
                    self.scratch.path().join(&spec.name),
                    &[],
                )
                .await
                .map_err(|e| infra(format!("creating kwok cluster {}", spec.name), e))?
            }
        };
        self.merge_context(&live).await?;
        let stdout = format!(
            "cluster {} up: API server https://127.0.0.1:{}, pods {}, load balancers {}/24; context {} in {}\n",
            spec.name,
            live.cluster.addrs.api_port,
            live.cluster.addrs.pod_cidr,
            live.cluster.addrs.lb_base,
            Self::kind_context(&spec.name),
            self.ops.kubeconfig.display()
        );
        self.live.lock().await.insert(spec.name.clone(), live);
        Ok(Output::new(command, stdout))
    }

    async fn delete_cluster(&self, name: &str) -> Result<Output, BackendError> {
        let command = format!("(kwok) stop cluster {name}");
        let Some(live) = self.live.lock().await.remove(name) else {
            return Err(BackendError::Procedure {
                command,
                message: format!("Not found: cluster {name} (no such kwok cluster in this run)"),
            });
        };
        self.ops.forget(name).await;
        let done = Self::stop_live(live).await;
        Ok(Output::new(command, done.join("\n") + "\n"))
    }

    async fn clusters(&self) -> Result<BTreeMap<String, String>, BackendError> {
        Ok(self
            .live
            .lock()
            .await
            .keys()
            .map(|k| (k.clone(), "RUNNING".to_string()))
            .collect())
    }

    async fn rename_context(&self, cluster: &str) -> Result<Output, BackendError> {
        self.ops
            .run(Cmd::new(
                "kubectl",
                [
                    "config",
                    "rename-context",
                    &Self::kind_context(cluster),
                    cluster,
                ],
            ))
            .await
    }

    async fn contexts(&self) -> Result<Vec<String>, BackendError> {
        self.ops
            .contexts(Cmd::new(
                "kubectl",
                ["config", "get-contexts", "--output=name"],
            ))
            .await
    }

    async fn install_istio(&self, cluster: &str, profile: &str) -> Result<Output, BackendError> {
        let cmd = self.istioctl(&[
            "install",
            &format!("--context={cluster}"),
            "--set",
            &format!("profile={profile}"),
            "-y",
        ]);
        self.ops.install_istio(cmd, cluster).await
    }

    async fn fleet(&self, op: &FleetOp) -> Result<Output, BackendError> {
        self.fleet
            .op(&self.ops, op, |cluster, tag_default| {
                let args = crate::clusters::managed_install_args(cluster, tag_default);
                self.istioctl(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .await
    }

    async fn mesh_describe(&self) -> Result<String, BackendError> {
        self.fleet.describe(&self.ops, "kwok").await
    }

    /// The running pods Gateway `namespace/gateway`'s selector matches (in any namespace, as
    /// istiod selects them by default), and their Envoy's `config_dump`.
    async fn gateway_routes(
        &self,
        cluster: &str,
        namespace: &str,
        gateway: &str,
    ) -> Result<Option<Dumps>, BackendError> {
        let gateways = self.ops.list(cluster, Some(namespace), "Gateway").await?;
        let Some(selector) = gateways
            .iter()
            .find(|g| g["metadata"]["name"] == gateway)
            .map(|g| g["spec"]["selector"].clone())
        else {
            return Ok(Some(Dumps::new()));
        };
        let pods = self.ops.list(cluster, None, "Pod").await?;
        let selected = super::stand_ins::selected_running_pods(&pods, &selector);
        let live = self.live.lock().await;
        let l = live.get(cluster).ok_or_else(|| {
            infra(
                format!("reading {cluster}'s gateway routes"),
                "no such cluster runs",
            )
        })?;
        Ok(Some(l.stand_ins.gateway_dumps(&selected).await))
    }

    /// `istioctl proxy-status` asked of each istiod the cluster runs, at its own address (no
    /// port-forward reaches a kwok pod): the proxies connected to each.
    async fn proxy_status(
        &self,
        cluster: &str,
    ) -> Result<Option<crate::proxy_status::ProxyStatus>, BackendError> {
        let istiods = {
            let live = self.live.lock().await;
            let l = live.get(cluster).ok_or_else(|| {
                infra(
                    format!("asking {cluster}'s istiods which proxies are connected"),
                    "no such cluster runs",
                )
            })?;
            l.stand_ins.istiods().await
        };
        let istioctl = self.istioctl(&[]).program;
        let mut runs = Vec::new();
        for ip in istiods {
            let address = format!("{ip}:15012");
            let cmd = crate::proxy_status::command(
                &istioctl,
                cluster,
                crate::proxy_status::Ask::Address(&address),
            );
            runs.push(crate::proxy_status::run(self.ops.exec.as_ref(), &cmd).await?);
        }
        Ok(Some(crate::proxy_status::ProxyStatus {
            runs,
            no_sidecars: Some(
                "kwok runs no sidecar proxy (no kubelet runs the pods; only the gateways' Envoys connect)"
                    .into(),
            ),
        }))
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

    async fn inject(&self, fault: &Fault) -> Result<Output, BackendError> {
        super::super::inject_with(&self.dns, fault, |cluster| async move {
            let live = self.live.lock().await;
            let l = live
                .get(cluster)
                .ok_or_else(|| format!("no cluster {cluster} runs"))?;
            match fault {
                Fault::KillGateway { cluster, namespace } => {
                    let killed = l
                        .stand_ins
                        .kill_gateways(namespace)
                        .await
                        .map_err(|e| e.to_string())?;
                    super::super::gateways_killed(cluster, namespace, killed)
                }
                Fault::FrontendErrors {
                    status, requests, ..
                } => l
                    .stand_ins
                    .fail_frontend(*status, *requests)
                    .await
                    .map_err(|m| format!("{cluster}: {m}")),
                Fault::StopDns => unreachable!("inject_with stops the DNS server itself"),
            }
        })
        .await
    }

    async fn inventory(&self) -> Result<Inventory, BackendError> {
        let (memberships, mesh_feature_enabled) = self.fleet.state().await;
        let load_balancers = self
            .live
            .lock()
            .await
            .values()
            .filter_map(|l| l.lbs.as_ref())
            .flat_map(|lb| lb.addresses().into_values().map(|ip| ip.to_string()))
            .collect();
        Ok(Inventory {
            clusters: self.clusters().await?,
            memberships,
            mesh_feature_enabled,
            load_balancers,
        })
    }

    async fn teardown(&self, keep: bool) -> TeardownReport {
        let mut report = TeardownReport::default();
        if let Some(h) = self.creating.lock().await.take() {
            let _ = h.await;
        }
        let mut pending: Vec<Live> = std::mem::take(&mut *self.created.lock().await)
            .into_values()
            .filter_map(Result::ok)
            .collect();
        if keep {
            let mut live = self.live.lock().await;
            let pid = std::process::id();
            let enter = if unsafe { libc::geteuid() } == 0 {
                format!("nsenter --net=/proc/{pid}/ns/net")
            } else {
                format!("nsenter --user --net --preserve-credentials -t {pid}")
            };
            let kubectl = self
                .cfg
                .tools
                .binary("kubectl")
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "kubectl".into());
            report.kept.extend(live.values().map(|l| {
                format!(
                    "kwok cluster {} (inside the run's network namespace: {enter} {kubectl} --kubeconfig {} --context {} get pods -A; logs in {})",
                    l.cluster.name,
                    self.ops.kubeconfig.display(),
                    l.cluster.name,
                    l.cluster.dir.join("logs").display()
                )
            }));
            report
                .kept
                .push(format!("kubeconfig {}", self.ops.kubeconfig.display()));
            self.scratch.keep();
            let mut k = KEPT.lock().unwrap_or_else(|e| e.into_inner());
            k.extend(pending);
            k.extend(std::mem::take(&mut *live).into_values());
            return report;
        }
        pending.extend(std::mem::take(&mut *self.live.lock().await).into_values());
        for live in pending {
            report.removed.extend(Self::stop_live(live).await);
        }
        report.removed.extend(self.fleet.clear().await);
        self.dns.stop().await;
        self.scratch.remove_into(&mut report);
        report
    }

    fn scratch_paths(&self) -> Vec<PathBuf> {
        vec![self.scratch.path().to_path_buf()]
    }

    fn mesh_wait(&self, _timeout: Duration, poll: Duration) -> (Duration, Duration) {
        (
            Duration::from_secs(180),
            poll.max(Duration::from_millis(500)),
        )
    }
}

/// What a step does on kwok, as lines (`meshmig plan --backend kwok`).
pub fn plan_action(s: &Scenario, a: &meshmig_core::scenario::Action, tools: &Tools) -> Vec<String> {
    use meshmig_core::scenario::Action;
    let ctx = |c: &str| format!("(context {c})");
    match a {
        Action::CreateCluster { cluster } => {
            let mut v = Vec::new();
            if s.clusters.first().is_some_and(|f| &f.name == cluster) {
                v.push(format!(
                    "(starts all {} clusters concurrently, each: etcd {}, kube-apiserver / kube-controller-manager / kube-scheduler {}, kwok {}, one fake Node)",
                    s.clusters.len(),
                    tools.versions.etcd,
                    tools.versions.kubernetes,
                    tools.versions.kwok
                ));
                for (i, c) in s.clusters.iter().enumerate() {
                    if let Some(a) = Addresses::of(i as u8) {
                        v.push(format!(
                            "{}: API server https://127.0.0.1:{}, pods {}, load balancers {}/24, context kwok-{}",
                            c.name, a.api_port, a.pod_cidr, a.lb_base, c.name
                        ));
                    }
                }
                v.push("then, per cluster: stand-ins for pods (istiod, gateway Envoys, frontends) and the load-balancer controller".into());
            } else {
                v.push(format!("(waits for the creation of {cluster} started by the first create step)"));
            }
            v
        }
        Action::RenameContext { cluster } => vec![
            format!("$ kubectl config rename-context kwok-{cluster} {cluster}"),
            "$ kubectl config get-contexts --output=name".into(),
        ],
        Action::InstallIstio { cluster, profile } => vec![
            format!("$ istioctl install --context={cluster} --set profile={profile} -y   (istioctl {})", tools.versions.istio),
            format!("api: wait until Deployments in istio-system are Available and LoadBalancers have an IP {}", ctx(cluster)),
        ],
        Action::FleetEnableMesh => vec!["stand-in: fleet mesh feature enabled".into()],
        Action::FleetRegister { cluster, membership } => vec![format!("stand-in: membership {membership} → {cluster}")],
        Action::FleetMeshUpdate { membership } => vec![format!(
            "stand-in: in the background, $ istioctl {} (cluster of {membership}; without the default tag where istio-system runs istiod already)",
            crate::clusters::managed_install_args("CLUSTER", true).join(" ")
        )],
        Action::WaitMeshActive { membership, .. } => vec![format!(
            "stand-in describe, repeated with backoff: {membership} ACTIVE once Deployment istio-system/istiod-{MANAGED_REVISION} is Available"
        )],
        Action::CreateNamespace { cluster, name } => vec![format!("api: create Namespace {name} {}", ctx(cluster))],
        Action::LabelNamespace { cluster, name, labels, remove } => vec![crate::clusters::label_plan_line(name, labels, remove, &ctx(cluster))],
        Action::RestartWorkloads { cluster, namespace } => vec![crate::clusters::restart_plan_line(namespace, &ctx(cluster))],
        Action::Apply { cluster, namespace, manifests, .. } => {
            let mut v: Vec<String> = manifests
                .iter()
                .map(|m| format!("api: server-side apply {m} (namespace {}) {}", namespace.as_deref().unwrap_or("default"), ctx(cluster)))
                .collect();
            v.push("api: wait until applied Deployments are Available and LoadBalancers have an IP; after Istio configuration, until every gateway Envoy accepted istiod's push".into());
            v
        }
        Action::Delete { cluster, namespace, kind, name } => vec![format!("api: delete {kind} {namespace}/{name} and wait until it is gone {}", ctx(cluster))],
        Action::ReadIngressIp { cluster, namespace, save_as } => vec![format!("api: list Services in {namespace}, .items[0] ingress IP → {save_as} {}", ctx(cluster))],
        Action::DnsSetRecord { address, ttl } => vec![format!("embedded DNS: {}. {ttl} IN A {address}", s.dns.domain)],
        Action::WaitDnsTtl | Action::WaitTtl { .. } => vec![meshmig_core::plan::action_line(s, a)],
        Action::DeleteCluster { name } => vec![format!("stop cluster {name}'s processes and stand-ins (NotFound if the run has no such cluster)")],
        Action::FleetUnregister { membership } => vec![format!("stand-in: membership {membership} removed")],
        Action::FleetDisableMesh => vec!["stand-in: fleet mesh feature disabled".into()],
    }
}

/// The whole plan for kwok.
pub fn plan(s: &Scenario, tools: &Tools) -> String {
    let mut out = format!(
        "plan: scenario {} on backend kwok (real control planes in a network namespace of the run's own; Istio {}, Kubernetes {})\n",
        s.name, tools.versions.istio, tools.versions.kubernetes
    );
    for step in &s.steps {
        out.push_str(&format!("{} {}\n", step.id, step.title));
        if let Some(a) = &step.run {
            for l in plan_action(s, a, tools) {
                out.push_str(&format!("    {l}\n"));
            }
        }
        for ch in &step.check {
            out.push_str(&format!(
                "    check {}\n",
                meshmig_core::plan::check_line(ch)
            ));
        }
    }
    out.push_str("teardown (always): stop every stand-in, load balancer and control-plane process (waiting for each), release the addresses, remove the scratch folder\n");
    out
}
