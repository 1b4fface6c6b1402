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

use super::clusters::{ClusterOps, Creations};
use super::exec::{Cmd, Exec, Process};
use super::{Backend, BackendError, FleetOp, Inventory, Output, Scratch, TeardownReport};
use crate::dns::DnsServer;
use crate::manifest::Object;
use crate::scenario::{Action, ClusterSpec, Scenario};
use crate::tools::MissingTool;

pub mod entry;

/// The Compute Engine resources GKE makes for a LoadBalancer Service (as `gcloud compute KIND
/// list` names them): what the leak inventory lists after teardown.
pub const LOAD_BALANCER_KINDS: [&str; 6] = [
    "forwarding-rules",
    "target-pools",
    "backend-services",
    "health-checks",
    "http-health-checks",
    "firewall-rules",
];

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

/// The region of a zone (`us-central1-a` → `us-central1`); a region is its own region.
pub fn region_of(zone: &str) -> String {
    match zone.rsplit_once('-') {
        Some((region, z)) if z.len() == 1 && region.contains('-') => region.to_string(),
        _ => zone.to_string(),
    }
}

/// A membership's name and location from its resource name
/// (`projects/P/locations/LOCATION/memberships/NAME`).
pub fn membership_parts(resource: &str) -> Option<(&str, &str)> {
    let (head, name) = resource.rsplit_once("/memberships/")?;
    let (_, location) = head.rsplit_once("/locations/")?;
    Some((name, location))
}

/// The name Kubernetes' service controller gives the cloud load balancer of a Service
/// (`DefaultLoadBalancerName` in k8s.io/cloud-provider's cloud.go: `a` + the Service's UID
/// without dashes, at most 32 characters). GKE names the forwarding rule and target pool so,
/// and the firewall rule `k8s-fw-` + it.
pub fn load_balancer_name(uid: &str) -> String {
    let mut n = format!("a{}", uid.replace('-', ""));
    n.truncate(32);
    n
}

/// The resources of a Compute Engine listing (`what`: `forwarding-rules`, `firewall-rules`, ...)
/// made for the run's LoadBalancer Services: named after one of `lb_names` (GKE's `a<uid>`,
/// `k8s-fw-a<uid>`), or, for forwarding rules, holding one of the addresses the run saw.
pub fn left_for_run(
    what: &str,
    items: &[Value],
    lb_names: &[String],
    ips: &BTreeSet<String>,
) -> Vec<String> {
    items
        .iter()
        .filter(|r| {
            let n = r["name"].as_str().unwrap_or("");
            lb_names.iter().any(|lb| n.contains(lb.as_str()))
                || r["IPAddress"].as_str().is_some_and(|ip| ips.contains(ip))
        })
        .map(|r| {
            format!(
                "{} {}",
                what.trim_end_matches('s'),
                r["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// The warning of a Compute Engine listing that left some requests out, if it has one.
///
/// `gcloud compute KIND list` of an aggregated kind (forwarding rules, target pools, backend
/// services, health checks) asks every scope, and by default a request that fails there is only
/// a warning: gcloud 528 prints `WARNING: Some requests did not succeed.` and ` - MESSAGE` lines
/// to stderr, whatever it did list (possibly `[]`) to stdout, and exits 0
/// (`googlecloudsdk/api_lib/compute/lister.py` calls `utils.WarnIfPartialRequestFail` when the
/// hidden property `compute/allow_partial_error`, default true in `core/properties.py`, allows
/// it; seen here with the real gcloud 528 against an endpoint answering HTTP 400). Such a listing
/// cannot show that nothing is left.
pub fn partial_listing(stderr: &str) -> Option<String> {
    let start = stderr.find("Some requests did not succeed")?;
    let warning: Vec<&str> = stderr[start..]
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    Some(crate::redact::scrubbed(warning.join(" ")))
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

    /// Writes a cluster's context into the kubeconfig again (A2, C2, when its creation's entry
    /// was lost: two `clusters create` ending together each rewrite the whole kubeconfig, and
    /// the later one can drop the other's context, as the GKE rehearsal showed).
    pub fn get_credentials(&self, name: &str) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "container".to_string(),
                "clusters".into(),
                "get-credentials".into(),
                self.cluster(name),
                format!("--zone={}", self.zone(name)),
                self.p(),
            ],
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

    /// C3..C5, clean-up. `membership_location` is where the membership lives, as listed
    /// (default: the region of the first cluster's zone, where GKE registers it).
    pub fn fleet(&self, op: &FleetOp, membership_location: Option<&str>) -> Cmd {
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
                let location = membership_location.map(str::to_string).unwrap_or_else(|| {
                    region_of(
                        &self.zone(
                            &self
                                .clusters
                                .first()
                                .map(|c| c.name.clone())
                                .unwrap_or_default(),
                        ),
                    )
                });
                self.delete_membership(&self.membership(membership), &location)
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
        self.delete_cluster_in(&self.cluster(name), &self.zone(name))
    }

    /// Deletes a cluster by its real name where it is (`gc` deletes clusters as listed).
    pub fn delete_cluster_in(&self, real_name: &str, zone: &str) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "container".to_string(),
                "clusters".into(),
                "delete".into(),
                real_name.into(),
                format!("--zone={zone}"),
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

    /// Deletes a fleet membership where it lives (`--location`): memberships of GKE clusters are
    /// regional now (`projects/P/locations/us-central1/memberships/NAME`), and `unregister`
    /// needs the cluster, which clean-up may have deleted already. Synopsis of gcloud 528:
    /// `gcloud container fleet memberships delete (MEMBERSHIP : --location=LOCATION)`.
    pub fn delete_membership(&self, real_name: &str, location: &str) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "container".to_string(),
                "fleet".into(),
                "memberships".into(),
                "delete".into(),
                real_name.into(),
                format!("--location={location}"),
                self.p(),
                "--quiet".into(),
            ],
        )
    }

    /// Cluster operations of this run that have not ended (a creation interrupted by Ctrl-C goes
    /// on in Google Cloud).
    pub fn list_operations(&self) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "container".to_string(),
                "operations".into(),
                "list".into(),
                self.p(),
                format!("--filter=status!=DONE AND targetLink~-{}$", self.cfg.run_id),
                "--format=json".into(),
            ],
        )
    }

    /// Waits for an operation (`gcloud container operations wait OPERATION_ID --zone=ZONE`).
    pub fn wait_operation(&self, name: &str, zone: &str) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "container".to_string(),
                "operations".into(),
                "wait".into(),
                name.into(),
                format!("--zone={zone}"),
                self.p(),
            ],
        )
    }

    /// Deletes the domain's A record from the Cloud DNS zone.
    pub fn delete_dns_record(&self, zone: &str, domain: &str) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "dns".to_string(),
                "record-sets".into(),
                "delete".into(),
                format!("{}.", domain.trim_end_matches('.')),
                format!("--zone={zone}"),
                "--type=A".into(),
                self.p(),
            ],
        )
    }

    /// A Compute Engine listing (`forwarding-rules`, `target-pools`, `firewall-rules`, ...).
    pub fn list_compute(&self, what: &str) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "compute".to_string(),
                what.into(),
                "list".into(),
                self.p(),
                "--format=json".into(),
            ],
        )
    }

    /// Whether gcloud has credentials: prints an access token, which the harness reads only to
    /// see that there is one (never shown, logged or kept).
    pub fn print_access_token() -> Cmd {
        Cmd::new("gcloud", ["auth", "print-access-token", "--quiet"])
    }

    /// `meshmig doctor`: the APIs enabled in the project, one name a line.
    pub fn enabled_services(&self) -> Cmd {
        Cmd::new(
            "gcloud",
            [
                "services".to_string(),
                "list".into(),
                "--enabled".into(),
                self.p(),
                "--format=value(config.name)".into(),
            ],
        )
    }

    /// `meshmig doctor`: gcloud's version (its first line is `Google Cloud SDK 528.0.0`).
    pub fn version() -> Cmd {
        Cmd::new("gcloud", ["version"])
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

/// The commands a step's action runs on GKE (Kubernetes API calls are not commands). The first
/// create step starts every cluster's creation; with a Cloud DNS zone the A record is created
/// the first time and updated after, so both commands are listed.
pub fn action_commands(
    c: &Commands<'_>,
    s: &Scenario,
    a: &Action,
    dns_zone: Option<&str>,
) -> Vec<Cmd> {
    match a {
        Action::CreateCluster { cluster } => {
            if s.clusters.first().is_some_and(|f| &f.name == cluster) {
                s.clusters.iter().map(|k| c.create_cluster(k)).collect()
            } else {
                Vec::new()
            }
        }
        Action::RenameContext { cluster } => vec![c.rename_context(cluster), c.get_contexts()],
        Action::InstallIstio { cluster, profile } => vec![c.istioctl_install(cluster, profile)],
        Action::FleetEnableMesh => vec![c.fleet(&FleetOp::EnableMesh, None)],
        Action::FleetRegister {
            cluster,
            membership,
        } => vec![c.fleet(
            &FleetOp::Register {
                cluster: cluster.clone(),
                membership: membership.clone(),
            },
            None,
        )],
        Action::FleetMeshUpdate { membership } => vec![c.fleet(
            &FleetOp::MeshUpdate {
                membership: membership.clone(),
            },
            None,
        )],
        Action::WaitMeshActive { .. } => vec![c.mesh_describe()],
        Action::DnsSetRecord { address, ttl } => match dns_zone {
            Some(z) => {
                // The address is known only during the run (`${CSM_INGRESS_IP}`): a documentation
                // address (RFC 5737) stands for it.
                let ip = address.parse().unwrap_or(IpAddr::from([192, 0, 2, 1]));
                vec![
                    c.dns_record(z, &s.dns.domain, ip, *ttl, true),
                    c.dns_record(z, &s.dns.domain, ip, *ttl, false),
                ]
            }
            None => Vec::new(),
        },
        Action::DeleteCluster { name } => vec![c.delete_cluster(name)],
        Action::FleetUnregister { membership } => vec![c.fleet(
            &FleetOp::Unregister {
                membership: membership.clone(),
            },
            None,
        )],
        Action::FleetDisableMesh => vec![c.fleet(&FleetOp::DisableMesh, None)],
        Action::CreateNamespace { .. }
        | Action::LabelNamespace { .. }
        | Action::Apply { .. }
        | Action::Delete { .. }
        | Action::ReadIngressIp { .. }
        | Action::WaitDnsTtl
        | Action::WaitTtl { .. } => Vec::new(),
    }
}

/// Every gcloud command the GKE backend can issue for a scenario, each once, in the order they
/// first come: the start (credentials, the mesh feature's state), each step's action, inventory,
/// teardown and leak check, `meshmig gc` and `meshmig doctor --backend gke`. Built from the same
/// [`Commands`] methods those places call; placeholders stand for what only a run knows (an
/// operation's name, a listed membership, an ingress IP). `tests/gcloud_parser.rs` runs each
/// through the real gcloud's argument parser.
pub fn gcloud_commands(cfg: &GkeConfig, s: &Scenario) -> Vec<Cmd> {
    let c = Commands::new(cfg, &s.clusters);
    let first = s
        .clusters
        .first()
        .map(|k| k.name.clone())
        .unwrap_or_default();
    // Gke::start and Gke::with_exec.
    let mut all = vec![Commands::print_access_token(), c.mesh_describe()];
    for step in &s.steps {
        if let Some(a) = &step.run {
            all.extend(action_commands(&c, s, a, cfg.dns_zone.as_deref()));
        }
    }
    // A2 and C2 when a creation's kubeconfig entry was lost.
    all.extend(s.clusters.iter().map(|k| c.get_credentials(&k.name)));
    // Inventory, teardown and the leak check.
    all.extend([
        c.list_clusters(false),
        c.list_memberships(),
        c.list_operations(),
        c.wait_operation("operation-1234", &c.zone(&first)),
        c.fleet(
            &FleetOp::Unregister {
                membership: "MEMBERSHIP".into(),
            },
            Some("global"),
        ),
    ]);
    all.extend(s.clusters.iter().map(|k| c.delete_cluster(&k.name)));
    all.push(c.fleet(&FleetOp::DisableMesh, None));
    if let Some(z) = &cfg.dns_zone {
        all.push(c.delete_dns_record(z, &s.dns.domain));
    }
    all.extend(LOAD_BALANCER_KINDS.iter().map(|k| c.list_compute(k)));
    // `meshmig gc`: clusters of every run, deleted as listed, then their memberships.
    let gc = Commands::new(cfg, &[]);
    all.extend([
        gc.list_clusters(true),
        gc.delete_cluster_in(&c.cluster(&first), &c.zone(&first)),
        gc.list_memberships(),
        gc.delete_membership(&c.membership("MEMBERSHIP"), &region_of(&c.zone(&first))),
    ]);
    // `meshmig doctor --backend gke`.
    all.extend([Commands::version(), c.enabled_services()]);
    let mut seen = BTreeSet::new();
    all.into_iter()
        .filter(|cmd| cmd.program == "gcloud" && seen.insert(cmd.args.clone()))
        .collect()
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
        Action::CreateCluster { cluster } => {
            if s.clusters.first().is_some_and(|f| &f.name == cluster) {
                let mut v = vec![format!("(starts creating all {} clusters concurrently)", s.clusters.len())];
                v.extend(action_commands(c, s, a, dns_zone).into_iter().map(cmd));
                v
            } else {
                vec![format!("(waits for the creation of {cluster} started by the first create step)")]
            }
        }
        Action::RenameContext { cluster } => vec![
            "(once every creation has ended: each writes the kubeconfig when it ends)".into(),
            cmd(c.rename_context(cluster)),
            cmd(c.get_contexts()),
        ],
        Action::InstallIstio { cluster, profile } => vec![
            cmd(c.istioctl_install(cluster, profile)),
            format!("api: wait until Deployments in istio-system are Available and Service istio-ingressgateway has an ingress IP ({cluster})"),
        ],
        Action::FleetEnableMesh
        | Action::FleetRegister { .. }
        | Action::FleetMeshUpdate { .. }
        | Action::DeleteCluster { .. }
        | Action::FleetUnregister { .. }
        | Action::FleetDisableMesh => action_commands(c, s, a, dns_zone).into_iter().map(cmd).collect(),
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
    let first = s
        .clusters
        .first()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    out.push_str(
        "teardown (always; each kind of resource on its own, a failure does not stop the rest):\n",
    );
    out.push_str(&format!(
        "    $ {}   (operations still running, e.g. a creation interrupted by Ctrl-C)\n    $ {}   (each of them)\n",
        c.list_operations().line(),
        c.wait_operation("OPERATION", "ZONE").line()
    ));
    out.push_str(&format!(
        "    $ {}\n    $ {}   (each membership of the run, where it is listed)\n",
        c.list_memberships().line(),
        c.delete_membership(&c.membership("MEMBERSHIP"), &region_of(&c.zone(&first)))
            .line()
    ));
    out.push_str(&format!("    $ {}\n", c.list_clusters(false).line()));
    out.push_str("    api: delete every LoadBalancer Service of the cluster and wait until it is gone (its forwarding rule, target pool and firewall rule go with it)\n");
    out.push_str("    $ gcloud container clusters delete NAME --zone=ZONE --project=PROJECT --quiet   (each cluster listed)\n");
    out.push_str(
        "    mesh feature: disabled only if this run enabled it and no other membership remains\n",
    );
    if let Some(z) = &cfg.dns_zone {
        out.push_str(&format!(
            "    $ {}   (if the run created it)\n",
            c.delete_dns_record(z, &s.dns.domain).line()
        ));
    }
    out.push_str(&format!(
        "    leak check (a listing that fails is reported NOT VERIFIED): $ {}; $ {}",
        c.list_clusters(false).line(),
        c.list_memberships().line()
    ));
    for what in LOAD_BALANCER_KINDS {
        out.push_str(&format!("; $ {}", c.list_compute(what).line()));
    }
    out.push_str("   (resources named after the run's LoadBalancer Services: a<uid>, k8s-fw-a<uid>; forwarding rules also by address)\n");
    out
}

/// The GKE backend.
pub struct Gke {
    cfg: GkeConfig,
    clusters: Vec<ClusterSpec>,
    ops: Arc<ClusterOps>,
    creations: Creations,
    /// The scenario's domain (the A record teardown deletes from a Cloud DNS zone).
    domain: String,
    scratch: Scratch,
    dns: Option<DnsServer>,
    cloud_dns_created: Mutex<bool>,
    mesh_enabled_before: bool,
    mesh_enabled_by_run: Mutex<bool>,
    /// Stopped after teardown (a rehearsal's Google Cloud stand-in).
    companion: Option<Arc<dyn super::Companion>>,
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
        if crate::tools::on_path("gke-gcloud-auth-plugin").is_none() {
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
    pub fn with_companion(mut self, companion: Arc<dyn super::Companion>) -> Self {
        self.companion = Some(companion);
        self
    }

    fn cmds(&self) -> Commands<'_> {
        Commands::new(&self.cfg, &self.clusters)
    }

    /// Strips the run suffix from names in gcloud output.
    fn to_procedure_names(&self, text: &str) -> String {
        text.replace(&format!("-{}", self.cfg.run_id), "")
    }

    /// `mesh describe`'s YAML; empty when gcloud answers that the project's mesh feature is not
    /// enabled ([`crate::gcloud::feature_not_enabled`]: after `mesh disable`, that is the answer
    /// H3 expects, not a failure).
    async fn describe(&self) -> Result<String, BackendError> {
        match self.run(self.cmds().mesh_describe()).await {
            Ok(out) => Ok(out.stdout),
            Err(BackendError::Procedure { message, .. })
                if crate::gcloud::feature_not_enabled(&message) =>
            {
                Ok(String::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Runs a command, read as [`gcloud_answer`] says.
    async fn run(&self, cmd: Cmd) -> Result<Output, BackendError> {
        gcloud_answer(self.ops.run(cmd).await)
    }

    /// The run's memberships: (procedure name, real name, location).
    async fn run_memberships(&self) -> Result<Vec<(String, String, String)>, BackendError> {
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

    /// Deletes a cluster's LoadBalancer Services and waits until they are gone: GKE's service
    /// controller then deletes their forwarding rules, target pools and firewall rules, which
    /// deleting the cluster alone can leave behind.
    async fn delete_load_balancers(&self, cluster: &str, report: &mut TeardownReport) {
        // The run reaches a cluster only through its renamed context (A2, C2): without it (a run
        // interrupted while the clusters were being created) the run made no Service there.
        if let Ok(contexts) = self.contexts().await {
            if !contexts.iter().any(|c| c == cluster) {
                return;
            }
        }
        let svcs = match self.ops.list(cluster, None, "Service").await {
            Ok(s) => s,
            Err(e) => {
                report.failed.push(format!(
                    "listing the Services of {cluster} (their load balancers may stay): {e}"
                ));
                return;
            }
        };
        for svc in svcs.iter().filter(|s| s["spec"]["type"] == "LoadBalancer") {
            let (ns, name) = crate::manifest::namespace_and_name(svc);
            match self.ops.delete(cluster, &ns, "Service", &name).await {
                Ok(_) => report
                    .removed
                    .push(format!("LoadBalancer Service {ns}/{name} of {cluster}")),
                Err(e) => report.failed.push(format!(
                    "LoadBalancer Service {ns}/{name} of {cluster}: {e}"
                )),
            }
        }
    }

    /// Lists every kind again after teardown: what is left is a LEAK; a listing that fails says
    /// the kind could not be verified.
    async fn report_leaks(&self, report: &mut TeardownReport) {
        match self.clusters().await {
            Ok(cs) => report.failed.extend(
                cs.iter()
                    .map(|(c, st)| format!("LEAK: cluster {} ({st})", self.cmds().cluster(c))),
            ),
            Err(e) => report
                .failed
                .push(format!("NOT VERIFIED: clusters (listing failed: {e})")),
        }
        match self.run_memberships().await {
            Ok(ms) => report.failed.extend(
                ms.iter()
                    .map(|(_, real, l)| format!("LEAK: fleet membership {real} ({l})")),
            ),
            Err(e) => report.failed.push(format!(
                "NOT VERIFIED: fleet memberships (listing failed: {e})"
            )),
        }
        for l in self.load_balancer_leaks().await {
            match l {
                Ok(left) => report
                    .failed
                    .extend(left.into_iter().map(|r| format!("LEAK: {r}"))),
                Err(m) => report.failed.push(format!("NOT VERIFIED: {m}")),
            }
        }
    }

    /// Cloud load-balancing resources made for the run's Services (by the names GKE gives them,
    /// and forwarding rules by the addresses seen), per listing; a listing that fails is
    /// reported as such, never as "none".
    async fn load_balancer_leaks(&self) -> Vec<Result<Vec<String>, String>> {
        let names: Vec<String> = self
            .ops
            .lb_uids
            .lock()
            .await
            .iter()
            .map(|u| load_balancer_name(u))
            .collect();
        let ips = self.ops.lb_ips.lock().await.clone();
        let mut out = Vec::new();
        for what in LOAD_BALANCER_KINDS {
            out.push(match self.compute_listing(what).await {
                Ok(items) => Ok(left_for_run(what, &items, &names, &ips)),
                Err(e) => Err(format!("listing {what}: {e}")),
            });
        }
        out
    }

    /// A Compute Engine listing; one that gcloud says is partial ([`partial_listing`]) is an
    /// error, never a short list.
    async fn compute_listing(&self, what: &str) -> Result<Vec<Value>, BackendError> {
        let cmd = self.cmds().list_compute(what);
        let ran = self.ops.exec.run(&cmd).await.map_err(|e| {
            BackendError::infra(format!("running {}", cmd.program), crate::error_chain(&e))
        })?;
        if ran.ok() {
            if let Some(warning) = partial_listing(&ran.stderr) {
                return Err(BackendError::Infrastructure {
                    doing: format!("running {}", cmd.line()),
                    message: format!("gcloud listed only part of them: {warning}"),
                });
            }
        }
        super::clusters::read_json(&cmd, &ran)
    }
}

/// A command's result as the GKE backend reads it: gcloud's piped progress joined as a terminal
/// shows it; an error about the platform (permission, quota, an API not enabled) is an
/// infrastructure failure, not the procedure's.
fn gcloud_answer(r: Result<Output, BackendError>) -> Result<Output, BackendError> {
    match r {
        Ok(mut out) => {
            out.stdout = crate::gcloud::normalise_progress(&out.stdout);
            Ok(out)
        }
        Err(BackendError::Procedure { command, message })
            if crate::gcloud::platform_error(&message) =>
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
        BackendError::infra("checking gcloud's credentials", crate::error_chain(&e))
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
        let mut report = TeardownReport::default();
        if keep {
            match self.clusters().await {
                Ok(cs) => report.kept.extend(
                    cs.keys()
                        .map(|c| format!("cluster {}", self.cmds().cluster(c))),
                ),
                Err(e) => report.failed.push(format!("listing clusters: {e}")),
            }
            match self.run_memberships().await {
                Ok(ms) => report.kept.extend(
                    ms.iter()
                        .map(|(_, real, l)| format!("membership {real} ({l})")),
                ),
                Err(e) => report
                    .failed
                    .push(format!("listing fleet memberships: {e}")),
            }
            report
                .kept
                .push(format!("kubeconfig {}", self.ops.kubeconfig.display()));
            self.scratch.keep();
            return report;
        }
        match self.ops.run_json(self.cmds().list_operations()).await {
            Ok(ops) => {
                for op in ops {
                    let (Some(name), Some(zone)) = (
                        op["name"].as_str(),
                        op["zone"].as_str().or(op["location"].as_str()),
                    ) else {
                        continue;
                    };
                    let what = format!(
                        "operation {name} ({} of {})",
                        op["operationType"].as_str().unwrap_or("?"),
                        op["targetLink"]
                            .as_str()
                            .unwrap_or("?")
                            .rsplit('/')
                            .next()
                            .unwrap_or("?")
                    );
                    match self.run(self.cmds().wait_operation(name, zone)).await {
                        Ok(_) => report.removed.push(format!("waited for {what}")),
                        Err(e) => report.failed.push(format!("waiting for {what}: {e}")),
                    }
                }
            }
            Err(e) => report
                .failed
                .push(format!("listing running cluster operations: {e}")),
        }
        match self.run_memberships().await {
            Ok(ms) => {
                for (_, real, location) in ms {
                    match self
                        .run(self.cmds().delete_membership(&real, &location))
                        .await
                    {
                        Ok(_) => report
                            .removed
                            .push(format!("fleet membership {real} ({location})")),
                        Err(e) => report
                            .failed
                            .push(format!("fleet membership {real} ({location}): {e}")),
                    }
                }
            }
            Err(e) => report
                .failed
                .push(format!("listing fleet memberships: {e}")),
        }
        match self.clusters().await {
            Ok(cs) => {
                for c in cs.keys() {
                    self.delete_load_balancers(c, &mut report).await;
                    match self.delete_cluster(c).await {
                        Ok(_) => report
                            .removed
                            .push(format!("cluster {}", self.cmds().cluster(c))),
                        Err(e) => report
                            .failed
                            .push(format!("cluster {}: {e}", self.cmds().cluster(c))),
                    }
                }
            }
            Err(e) => report.failed.push(format!("listing clusters: {e}")),
        }
        if *self.mesh_enabled_by_run.lock().await {
            match self.ops.run_json(self.cmds().list_memberships()).await {
                Ok(others) if others.is_empty() => match self.fleet(&FleetOp::DisableMesh).await {
                    Ok(_) => report
                        .removed
                        .push("fleet mesh feature (enabled by this run)".into()),
                    Err(e) => report.failed.push(format!("fleet mesh feature: {e}")),
                },
                Ok(_) => report
                    .kept
                    .push("fleet mesh feature (other memberships use it)".into()),
                Err(e) => report.failed.push(format!(
                    "fleet mesh feature left enabled: listing memberships failed: {e}"
                )),
            }
        }
        if let Some(zone) = &self.cfg.dns_zone {
            if *self.cloud_dns_created.lock().await {
                match self
                    .run(self.cmds().delete_dns_record(zone, &self.domain))
                    .await
                {
                    Ok(_) => report.removed.push(format!(
                        "Cloud DNS A record {}. in zone {zone}",
                        self.domain
                    )),
                    Err(e) => report.failed.push(format!(
                        "Cloud DNS A record {}. in zone {zone}: {e}",
                        self.domain
                    )),
                }
            }
        }
        if let Some(d) = &self.dns {
            d.stop().await;
        }
        self.report_leaks(&mut report).await;
        if let Some(c) = &self.companion {
            report.removed.extend(c.stop().await);
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
        let del = c.delete_cluster_in(name, zone);
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
        let Some((name, location)) = m["name"].as_str().and_then(membership_parts) else {
            continue;
        };
        if runs.iter().any(|r| name.ends_with(&format!("-{r}"))) {
            let r = exec
                .run(&c.delete_membership(name, location))
                .await
                .map_err(|e| {
                    BackendError::infra("deleting a membership", crate::error_chain(&e))
                })?;
            done.push(format!(
                "{} fleet membership {name} ({location})",
                if r.ok() {
                    "deleted"
                } else {
                    "FAILED to delete"
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
