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
//!
//! Its rooms: [`Commands`] (the command lines), the plan ([`plan`](fn@plan),
//! [`gcloud_commands`]), the backend itself ([`Gke`]), and teardown with `meshmig gc`
//! ([`gc`](fn@gc)).

mod backend;
mod commands;
pub mod entry;
mod gc;
mod plan;

use std::time::Duration;

pub use super::run_id::{chrono_like, new_run_id};
pub use backend::{check_credentials, Gke};
pub use commands::{membership_parts, region_of, Commands};
pub use gc::{gc, left_for_run, load_balancer_name, partial_listing};
pub use plan::{action_commands, gcloud_commands, plan, plan_action};

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
    /// Who answers the checks, when not Google Cloud itself (a rehearsal's stand-in sets them).
    pub witnesses: Option<crate::witness::Witnesses>,
}

/// Who answers the checks on Google Cloud: GKE, the fleet API, Cloud DNS when a zone is given,
/// a Google Cloud load balancer in front of the gateway.
pub fn google_witnesses(cfg: &GkeConfig) -> crate::witness::Witnesses {
    use crate::witness::{embedded_dns, Witness, Witnesses};
    Witnesses {
        cluster_list: Witness::real(format!(
            "GKE's API (gcloud container clusters list, project {})",
            cfg.project
        )),
        kubeconfig: Witness::real(
            "kubectl's contexts, written by gcloud container clusters get-credentials",
        ),
        kubernetes_api: Witness::real("the GKE cluster's kube-apiserver"),
        fleet: Witness::real("the fleet API (gcloud container fleet mesh describe)"),
        dns: match &cfg.dns_zone {
            Some(z) => Witness::real(format!("Cloud DNS (managed zone {z})")),
            None => embedded_dns(),
        },
        data_plane: Witness::real(
            "a Google Cloud load balancer and the ingress gateway's Envoy (istiod or managed CSM)",
        ),
        inventory: Witness::real(
            "gcloud: clusters, fleet memberships, the mesh feature, forwarding rules",
        ),
        routes: Some(Witness::real(format!(
            "the gateway pods' Envoy config_dump, read with istioctl proxy-config all ({}), fed by istiod or managed CSM",
            cfg.istioctl
        ))),
        proxy_status: Some(Witness::real(format!(
            "istioctl proxy-status ({}), answered by each istiod pod, or by managed CSM's XDS address from its webhook",
            cfg.istioctl
        ))),
        commands: vec![
            ("gcloud", Witness::real("gcloud")),
            (
                "istioctl",
                Witness::real(format!("istioctl ({})", cfg.istioctl)),
            ),
            ("kubectl", Witness::real("kubectl")),
        ],
    }
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
            witnesses: None,
        }
    }
}
