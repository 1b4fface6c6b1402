//! The GKE backend's command lines: procedure names → real, run-suffixed names, and the exact
//! flags of every gcloud, kubectl and istioctl command it runs.

use std::net::IpAddr;

use super::{GkeConfig, RUN_LABEL};
use crate::cli_commands;
use crate::exec::Cmd;
use crate::FleetOp;
use meshmig_core::scenario::ClusterSpec;

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

/// Procedure names → real names, and the commands of each action.
pub struct Commands<'a> {
    pub(super) cfg: &'a GkeConfig,
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
        cli_commands::rename_context(&self.gcloud_context(name), name)
    }

    /// A3.
    pub fn get_contexts(&self) -> Cmd {
        cli_commands::get_contexts()
    }

    /// A4.
    pub fn istioctl_install(&self, context: &str, profile: &str) -> Cmd {
        cli_commands::istioctl_install(&self.cfg.istioctl, context, profile)
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
