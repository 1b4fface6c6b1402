//! The scenario file as written (the serde structs and enums of its YAML, with their defaults)
//! and the validated [`Scenario`] they become.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::identity::Identify;
use crate::manifest::{ManifestSet, ObjectPatch};
use crate::yaml::Location;

/// A scenario file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Another scenario this one builds on, relative to this file.
    #[serde(default)]
    pub base: Option<PathBuf>,
    /// The scenario's name (defaults to the file stem).
    #[serde(default)]
    pub name: Option<String>,
    /// What the scenario proves.
    #[serde(default)]
    pub description: Option<String>,
    /// What the conformance suite expects of a run.
    #[serde(default)]
    pub expect: Option<Expectation>,
    /// The clusters of the migration.
    #[serde(default)]
    pub clusters: Option<Vec<ClusterSpec>>,
    /// The fleet (managed mesh) settings.
    #[serde(default)]
    pub fleet: Option<FleetSpec>,
    /// The DNS zone the cut-over uses.
    #[serde(default)]
    pub dns: Option<DnsSpec>,
    /// The steps, in order (with `base`: replaces the base's steps of the same id). Actions and
    /// checks are written as one-key maps (`create_cluster: {...}`), or a bare name when they
    /// take nothing (`nothing_left`).
    #[serde(default)]
    pub steps: Vec<Step>,
    /// With `base`: ids of the base's steps this scenario leaves out.
    #[serde(default)]
    pub drop_steps: Vec<String>,
    /// Steady user traffic through the migration, recorded and judged (see [`ContinuousLoad`]).
    #[serde(default)]
    pub continuous_load: Option<ContinuousLoad>,
}

/// Steady user traffic through the migration: a background sampler sends `rate` requests a
/// second to `url` from the end of step `start_after`, through the domain (the users' resolver)
/// from the end of `via_domain_after`, until `stop_before` starts or the steps end. Every answer
/// is recorded (time, step in progress, serving cluster or error); more failed requests than
/// `error_budget` fail the run, and each routing change's time to effect is measured.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContinuousLoad {
    /// The load starts when this step has ended (the URL's variables must be known then).
    pub start_after: String,
    /// The URL before the cut-over (may use variables).
    pub url: String,
    /// From the end of this step on, requests go to the scenario's domain.
    #[serde(default)]
    pub via_domain_after: Option<String>,
    /// The load stops when this step starts (default: when the steps end).
    #[serde(default)]
    pub stop_before: Option<String>,
    /// Requests a second.
    #[serde(default = "default_load_rate")]
    pub rate: f64,
    /// Failed requests allowed over the whole load (default: none).
    #[serde(default)]
    pub error_budget: u64,
}

fn default_load_rate() -> f64 {
    50.0
}

/// What a run of the scenario should come to.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `pass` or `fail`.
    pub outcome: ExpectedOutcome,
    /// With `fail`: the step that must fail.
    #[serde(default)]
    pub failed_step: Option<String>,
    /// With `fail`: words the failure's evidence must contain.
    #[serde(default)]
    pub evidence_contains: Vec<String>,
}

/// The outcome a conformance trial expects.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedOutcome {
    /// Every step passes.
    #[default]
    Pass,
    /// A named step fails with an assertion failure (exit 1).
    Fail,
}

/// One cluster of the migration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// The procedure's name for it (also its kubeconfig context after the rename step).
    pub name: String,
    /// Zone (the procedure uses us-central1-a).
    #[serde(default = "default_zone")]
    pub zone: String,
    /// GKE machine type.
    #[serde(default)]
    pub machine_type: Option<String>,
    /// Node count.
    #[serde(default)]
    pub nodes: Option<u32>,
    /// Whether the cluster has a workload identity pool (`--workload-pool PROJECT.svc.id.goog`).
    #[serde(default)]
    pub workload_pool: bool,
    /// Emulated backend only: which footer the frontends of this cluster render.
    #[serde(default)]
    pub footer: Option<FooterVariant>,
}

fn default_zone() -> String {
    "us-central1-a".to_string()
}

/// The footer variants of PROCEDURE.md, for the emulated frontends.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FooterVariant {
    /// On GKE: cluster, zone and pod lines.
    Gke,
    /// v0.4.0..v0.10.6 off GCP: only the pod line.
    PodOnly,
    /// "Deployment details are still loading."
    Loading,
    /// v0.3.5: all three lines, cluster and zone empty.
    EmptyCluster,
    /// The newest frontend off GCP: no details at all.
    None,
}

/// Fleet settings (managed mesh).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// Emulated backend only: how long the managed control plane takes to become ACTIVE.
    #[serde(default = "default_provisioning")]
    pub provisioning_seconds: f64,
    /// Stand-ins only (emulated, kind, kwok): the managed control plane never becomes ACTIVE and
    /// `mesh describe` reports this state instead (stuck PROVISIONING, FAILED_PRECONDITION,
    /// STALLED, ...), to prove C6 stops with the details.
    #[serde(default)]
    pub fault: Option<crate::fleet::ControlPlaneFault>,
    /// Stand-ins only (emulated, kind, kwok): once up, the managed control plane flaps between
    /// ACTIVE and PROVISIONING, to prove C6 does not settle for one ACTIVE answer.
    #[serde(default)]
    pub flap: Option<crate::fleet::Flap>,
}

pub(super) fn default_provisioning() -> f64 {
    1.0
}

/// The DNS zone of the cut-over.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// The domain users reach the shop by.
    pub domain: String,
    /// How long a second of DNS time lasts: TTLs held by the clients' resolver and
    /// `wait_ttl` waits are multiplied by it (0.02: a 300 s TTL is held for 6 s). The report
    /// states it. 1 (real time) unless set.
    #[serde(default = "default_ttl_scale")]
    pub ttl_scale: f64,
}

fn default_ttl_scale() -> f64 {
    1.0
}

/// One step of the procedure.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The procedure's step id (A1, B2, ...).
    pub id: String,
    /// What the step does, in the procedure's words.
    pub title: String,
    /// The action, if the step does something.
    #[serde(default)]
    pub run: Option<Action>,
    /// The checks that prove the step happened.
    #[serde(default)]
    pub check: Vec<Check>,
    /// Steps of the same `group` that follow each other run concurrently.
    #[serde(default)]
    pub group: Option<String>,
    /// Run the checks even when the action failed (clean-up steps: show what is left).
    #[serde(default)]
    pub check_after_failed_action: bool,
    /// With `base`: a step the base does not have goes right after this one (at the end when
    /// unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Faults injected when the step starts, before its action (backends with stand-ins only:
    /// emulated and kwok), to prove the step catches them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inject: Vec<Fault>,
}

/// A fault in the data plane, injected at the start of a step.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// The Envoy of every gateway pod in `namespace` of `cluster` is killed (SIGKILL), as when
    /// its node dies: the gateway's load-balancer address stops answering.
    KillGateway {
        /// The cluster.
        cluster: String,
        /// The gateway's namespace (`istio-system`, `asm-ingress`).
        namespace: String,
    },
    /// The test domain's DNS server stops: its sockets close and nothing answers any more.
    StopDns,
    /// One frontend replica of `cluster` (the first by pod name) answers its next `requests`
    /// requests with `status`, then recovers.
    FrontendErrors {
        /// The cluster.
        cluster: String,
        /// The status it answers (a 5xx).
        #[serde(default = "default_fault_status")]
        status: u16,
        /// How many requests it fails.
        requests: u64,
    },
}

fn default_fault_status() -> u16 {
    503
}

impl Fault {
    /// The cluster the fault strikes (None: the test domain's DNS server, outside the clusters).
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Fault::KillGateway { cluster, .. } | Fault::FrontendErrors { cluster, .. } => {
                Some(cluster)
            }
            Fault::StopDns => None,
        }
    }

    /// The fault in a few words, for reports.
    pub fn describe(&self) -> String {
        match self {
            Fault::KillGateway { cluster, namespace } => {
                format!("kill the gateway Envoys in {cluster}/{namespace}")
            }
            Fault::StopDns => "stop the test domain's DNS server".into(),
            Fault::FrontendErrors {
                cluster,
                status,
                requests,
            } => format!(
                "a frontend replica of {cluster} answers its next {requests} requests with {status}"
            ),
        }
    }
}

/// What a step does: the procedure's command, as the backend performs it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// `gcloud container clusters create` (A1, C1).
    CreateCluster {
        /// The cluster, as declared in `clusters`.
        cluster: String,
    },
    /// `kubectl config rename-context` (A2, C2).
    RenameContext {
        /// The cluster whose context is renamed to its name.
        cluster: String,
    },
    /// `istioctl install` (A4).
    InstallIstio {
        /// Where.
        cluster: String,
        /// The istioctl profile.
        #[serde(default = "default_profile")]
        profile: String,
    },
    /// `gcloud container fleet mesh enable` (C3).
    FleetEnableMesh,
    /// `gcloud container fleet memberships register` (C4).
    FleetRegister {
        /// The cluster.
        cluster: String,
        /// The membership's name.
        membership: String,
    },
    /// `gcloud container fleet mesh update --management automatic` (C5).
    FleetMeshUpdate {
        /// The membership.
        membership: String,
    },
    /// `gcloud container fleet mesh describe`, repeated until ACTIVE (C6).
    WaitMeshActive {
        /// The membership.
        membership: String,
        /// Give up after this long.
        #[serde(default = "default_mesh_timeout")]
        timeout_seconds: f64,
        /// Poll this often.
        #[serde(default = "default_poll")]
        poll_seconds: f64,
        /// Once ACTIVE, keep polling this long: the step fails if the state leaves ACTIVE (a
        /// flapping control plane). 0: the first ACTIVE answer ends the wait.
        #[serde(default)]
        stable_seconds: f64,
    },
    /// `kubectl create namespace`.
    CreateNamespace {
        /// Where.
        cluster: String,
        /// The namespace.
        name: String,
    },
    /// `kubectl label namespace NAME KEY=VALUE… KEY-… --overwrite`.
    LabelNamespace {
        /// Where.
        cluster: String,
        /// The namespace.
        name: String,
        /// Labels to set.
        #[serde(default)]
        labels: BTreeMap<String, String>,
        /// Labels to remove (`KEY-`), as the canary control-plane migration removes
        /// `istio-injection` when it sets `istio.io/rev`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remove: Vec<String>,
    },
    /// `kubectl rollout restart deployment --namespace NAMESPACE`, waited until every rollout
    /// has completed: each Deployment's pods are made again, and injected by whichever revision
    /// the namespace's labels now name.
    RestartWorkloads {
        /// Where.
        cluster: String,
        /// The namespace whose Deployments restart.
        namespace: String,
    },
    /// `kubectl apply -f` of one or more manifests.
    Apply {
        /// Where.
        cluster: String,
        /// The namespace objects without one go to.
        #[serde(default)]
        namespace: Option<String>,
        /// Manifest paths relative to the manifests root (laid out like ../shared/upstream).
        #[serde(default)]
        manifests: Vec<String>,
        /// Text replacements made before applying (the procedure's `sed -i`).
        #[serde(default)]
        replace: Vec<Replacement>,
        /// Edits of single objects after the replacements, as `kubectl patch --type=json`
        /// would make them (RFC 6902 operations).
        #[serde(default)]
        patch: Vec<ObjectPatch>,
        /// Objects written in the scenario itself, applied after the manifests' (somebody
        /// else's object that gets in the way, for example).
        #[serde(default)]
        objects: Vec<serde_json::Value>,
    },
    /// `kubectl delete KIND NAME`.
    Delete {
        /// Where.
        cluster: String,
        /// The namespace.
        namespace: String,
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
    },
    /// `kubectl get service -o jsonpath='{.items[0].status.loadBalancer.ingress[0].ip}'` (B5, E3).
    ReadIngressIp {
        /// Where.
        cluster: String,
        /// The namespace whose Services are listed.
        namespace: String,
        /// The variable the address is saved in.
        save_as: String,
    },
    /// Create or change the domain's A record.
    DnsSetRecord {
        /// The address (may use variables).
        address: String,
        /// The record's TTL in seconds.
        ttl: u32,
    },
    /// Wait until the clients' resolver no longer holds the answer it has (the TTL it was
    /// given, scaled by `dns.ttl_scale`): what "once resolvers drop the old answer" takes.
    WaitDnsTtl,
    /// Wait as long as a TTL of this many seconds (scaled by `dns.ttl_scale`): what an operator
    /// who assumes that TTL waits, whatever clients actually hold.
    WaitTtl {
        /// The TTL assumed, in seconds.
        seconds: u32,
    },
    /// `gcloud container clusters delete` (G4, H).
    DeleteCluster {
        /// The cluster name as the procedure spells it (it may name no cluster).
        name: String,
    },
    /// `gcloud container fleet memberships unregister`.
    FleetUnregister {
        /// The membership.
        membership: String,
    },
    /// `gcloud container fleet mesh disable`.
    FleetDisableMesh,
}

fn default_profile() -> String {
    "default".to_string()
}
fn default_mesh_timeout() -> f64 {
    1200.0
}
fn default_poll() -> f64 {
    0.2
}

/// A text replacement in a manifest before it is applied.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Replacement {
    /// The text to find (it must occur).
    pub from: String,
    /// What replaces it (may use variables).
    pub to: String,
}

/// A Service in a cluster.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceRef {
    /// The cluster.
    pub cluster: String,
    /// The namespace.
    pub namespace: String,
    /// The Service.
    pub service: String,
}

/// A check that proves a step happened. Each is a small named assertion (see `checks`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The backend lists the cluster, running.
    ClusterExists {
        /// The cluster.
        cluster: String,
    },
    /// The backend no longer lists the cluster.
    ClusterAbsent {
        /// The cluster.
        cluster: String,
    },
    /// `kubectl config get-contexts -o name` lists the cluster's name.
    ContextListed {
        /// The cluster.
        cluster: String,
    },
    /// The step's action printed these lines (in order).
    OutputContains {
        /// The lines.
        lines: Vec<String>,
    },
    /// Deployments in the namespace are available.
    DeploymentsAvailable {
        /// Where.
        cluster: String,
        /// The namespace.
        namespace: String,
        /// How many Deployments must exist (all of them available).
        #[serde(default)]
        count: Option<usize>,
        /// Deployments that must exist and be available.
        #[serde(default)]
        names: Vec<String>,
    },
    /// An object exists.
    ObjectExists {
        /// Where.
        cluster: String,
        /// The namespace.
        namespace: String,
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
    },
    /// An object does not exist.
    ObjectAbsent {
        /// Where.
        cluster: String,
        /// The namespace.
        namespace: String,
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
    },
    /// The first Service of the namespace (what `.items[0]` reads) is this LoadBalancer.
    FirstServiceIs {
        /// Where.
        cluster: String,
        /// The namespace.
        namespace: String,
        /// The Service that must sort first.
        name: String,
    },
    /// `GET url` answers with this status and a footer naming who served it.
    HomePage {
        /// The URL (may use variables).
        url: String,
        /// Expected status.
        #[serde(default = "default_status")]
        status: u16,
    },
    /// `fleet mesh describe` shows control and data plane ACTIVE for the membership.
    MeshActive {
        /// The membership.
        membership: String,
    },
    /// The namespace carries these labels, and none of `absent`.
    NamespaceLabels {
        /// Where.
        cluster: String,
        /// The namespace.
        name: String,
        /// The labels.
        labels: BTreeMap<String, String>,
        /// Labels it must not carry (`istio-injection` once a namespace is relabelled for a
        /// revision: it takes precedence over `istio.io/rev`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        absent: Vec<String>,
    },
    /// Every pod matching the selector has the istio-proxy sidecar (or gateway) injected.
    PodsInjected {
        /// Where.
        cluster: String,
        /// The namespace.
        namespace: String,
        /// Pod label selector.
        selector: BTreeMap<String, String>,
        /// The revision that must have injected them.
        #[serde(default)]
        revision: Option<String>,
    },
    /// Every selected pod's proxy is connected to an istiod of `revision`: the ISTIOD column of
    /// `istioctl proxy-status` (the istiod pod each proxy is connected to) names a pod labelled
    /// `istio.io/rev=REVISION`. Where the backend runs no `proxy-status`, the pods' injection
    /// records are judged instead, and the check says so.
    ProxiesConnected {
        /// Where.
        cluster: String,
        /// The namespace.
        namespace: String,
        /// Pod label selector.
        selector: BTreeMap<String, String>,
        /// The revision whose istiod the proxies must be connected to.
        revision: String,
    },
    /// The ServiceEntry's endpoint address is the other cluster's gateway load-balancer IP, read
    /// from that cluster's Service (not from what the harness substituted).
    ServiceEntryAddress {
        /// Where.
        cluster: String,
        /// The namespace.
        namespace: String,
        /// The ServiceEntry.
        name: String,
        /// The gateway Service whose load-balancer IP it must carry.
        gateway: ServiceRef,
    },
    /// The VirtualServices bound to a gateway route its traffic to these destinations with these
    /// shares (weights normalised; weight-0 destinations count as absent), and no two of them
    /// claim the same host on that gateway.
    Routes {
        /// Where.
        cluster: String,
        /// The namespace of the gateway and its VirtualServices.
        namespace: String,
        /// The Gateway's name.
        gateway: String,
        /// Expected percentage per destination host (summing to 100).
        expect: BTreeMap<String, f64>,
    },
    /// The namespace exists and carries no injection label (`istio-injection`, `istio.io/rev`):
    /// its pods run without sidecars.
    InjectionDisabled {
        /// Where.
        cluster: String,
        /// The namespace.
        name: String,
    },
    /// No Service of the namespace is exposed outside the cluster (LoadBalancer or NodePort): the
    /// only public way in is the gateway.
    NoPublicService {
        /// Where.
        cluster: String,
        /// The namespace.
        namespace: String,
    },
    /// `fleet mesh describe`: the mesh feature is enabled (`resourceState.state: ACTIVE`).
    MeshFeatureEnabled,
    /// `fleet mesh describe`: the membership is listed, and with `management`, its mesh spec asks
    /// for it (`automatic` → MANAGEMENT_AUTOMATIC).
    MembershipListed {
        /// The membership.
        membership: String,
        /// The management its spec must ask for.
        #[serde(default)]
        management: Option<String>,
    },
    /// What the clients' resolver holds for the domain now: this address, with a TTL of at most
    /// `max_ttl` seconds.
    ClientsResolve {
        /// The address (may use variables).
        address: String,
        /// The largest TTL allowed.
        max_ttl: u32,
    },
    /// The domain's A record and TTL, as the DNS server answers them.
    DnsRecord {
        /// The address (may use variables).
        address: String,
        /// The TTL.
        ttl: u32,
    },
    /// Sampled user traffic splits between clusters as expected.
    Split {
        /// Sample this URL (may use variables)...
        #[serde(default)]
        url: Option<String>,
        /// ...or the scenario's domain, resolved through its DNS server.
        #[serde(default)]
        via_domain: bool,
        /// Expected percentage per cluster (summing to 100).
        expect: BTreeMap<String, f64>,
        /// Share of requests that may fail (0 to below 1) instead of the run's (`--max-error-rate`,
        /// 0 by default: the first error fails the check).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_budget: Option<f64>,
        /// Who served an answer: `footer` (default), `header:NAME`, `regex:PATTERN`,
        /// `upstream-host[:NAME]` (see [`crate::identity`]); parsed as the scenario is read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identify: Option<Identify>,
        /// Values the extractor reads → cluster names (e.g. an upstream address → its cluster).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        names: BTreeMap<String, String>,
    },
    /// Nothing the run created is left: clusters, fleet memberships, the mesh feature.
    NothingLeft,
    /// `istioctl install` succeeded: its ✔ lines for the profile, in order. Lines the published
    /// procedure shows that this istioctl version does not print are reported as deviations,
    /// which do not fail the step.
    IstioInstalled {
        /// The profile installed (`minimal` prints no gateway line).
        #[serde(default = "default_profile")]
        profile: String,
        /// The lines the published procedure shows.
        #[serde(default)]
        published: Vec<String>,
    },
}

fn default_status() -> u16 {
    200
}

/// A validated scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The scenario's name.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// What it proves.
    pub description: String,
    /// What a run should come to.
    pub expect: Expectation,
    /// The clusters.
    pub clusters: Vec<ClusterSpec>,
    /// Fleet settings.
    pub fleet: FleetSpec,
    /// DNS settings.
    pub dns: DnsSpec,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Every manifest the steps apply, parsed.
    pub manifests: ManifestSet,
    /// Where each step was written (for error messages).
    pub step_locations: BTreeMap<String, Location>,
    /// Steady user traffic through the run, if any.
    pub continuous_load: Option<ContinuousLoad>,
}

impl Scenario {
    /// The declared cluster of this name.
    pub fn cluster(&self, name: &str) -> Option<&ClusterSpec> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

impl Check {
    /// Every check's name as scenarios write it (`home_page`, `split`, …): the variants serde
    /// knows, read from its answer to a name that is none of them.
    pub fn names() -> Vec<String> {
        let err = serde_json::from_value::<Check>(serde_json::Value::String(String::new()))
            .expect_err("the empty name is no check");
        let text = err.to_string();
        let listed = text.split_once("expected one of").map_or("", |(_, l)| l);
        listed
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod check_name_tests {
    use super::Check;

    #[test]
    fn every_check_name_is_known() {
        let names = Check::names();
        for n in [
            "home_page",
            "split",
            "routes",
            "pods_injected",
            "nothing_left",
            "mesh_feature_enabled",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
        // Each name deserializes as a check (with or without fields): serde listed variants.
        assert!(names.len() >= 20, "{names:?}");
    }
}
