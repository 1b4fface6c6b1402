//! Scenario files: the procedure under test as data, validated before anything starts.
//!
//! A scenario is a YAML file in `scenarios/`. It names the clusters of the migration, the test
//! domain, and the steps of the procedure in order; each step has at most one action (what the
//! procedure does) and the checks that prove it happened. A scenario may build on another one
//! (`base:`) and replace some of its steps by id, as `published-cleanup.yaml` does with step H.
//!
//! Every problem found here is reported with the file, line and column it comes from, and the
//! binary exits 2 for it, before any cluster is created.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::identity::Identify;
use crate::manifest::{self, ManifestSet, ManifestSource, ObjectPatch};
use crate::yaml::Location;

/// Errors met while loading and validating a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario file could not be read.
    #[error("reading scenario {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not describe a scenario (syntax, unknown field, wrong type).
    #[error("{at}: invalid scenario: {message}")]
    Parse {
        /// Where.
        at: Location,
        /// What the parser said.
        message: String,
    },
    /// The scenario parses but does not make sense (unknown cluster, undefined variable...).
    #[error("{at}: invalid scenario: {message}")]
    Invalid {
        /// Where.
        at: Location,
        /// What is wrong.
        message: String,
    },
    /// A manifest the scenario applies is missing or invalid.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
}

impl ScenarioError {
    /// The location of the problem, where there is one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ScenarioError::Parse { at, .. } | ScenarioError::Invalid { at, .. } => Some(at),
            ScenarioError::Manifest(e) => e.location(),
            ScenarioError::Read { .. } => None,
        }
    }
}

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

fn default_provisioning() -> f64 {
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
    /// `kubectl label namespace`.
    LabelNamespace {
        /// Where.
        cluster: String,
        /// The namespace.
        name: String,
        /// Labels to set.
        labels: BTreeMap<String, String>,
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
    /// The namespace carries these labels.
    NamespaceLabels {
        /// Where.
        cluster: String,
        /// The namespace.
        name: String,
        /// The labels.
        labels: BTreeMap<String, String>,
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

/// The largest scenario file read (a scenario is a few kilobytes; this keeps a runaway file from
/// being parsed at all).
pub const MAX_SCENARIO_BYTES: usize = 1 << 20;

/// Reads a scenario file and everything it builds on, without validating references.
fn read_file(path: &Path) -> Result<(ScenarioFile, String), ScenarioError> {
    let bytes = std::fs::read(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes(path, bytes)
}

/// Parses a scenario file's bytes (read from `path`).
fn parse_bytes(path: &Path, bytes: Vec<u8>) -> Result<(ScenarioFile, String), ScenarioError> {
    let at = |offset: usize| {
        let before = &bytes[..offset];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = offset
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        Location {
            file: path.to_path_buf(),
            line,
            column,
        }
    };
    if bytes.len() > MAX_SCENARIO_BYTES {
        return Err(ScenarioError::Parse {
            at: at(0),
            message: format!(
                "the file has {} bytes; a scenario has at most {MAX_SCENARIO_BYTES}",
                bytes.len()
            ),
        });
    }
    let text = String::from_utf8(bytes.clone()).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        ScenarioError::Parse {
            at: at(offset),
            message: format!("not UTF-8 text (byte 0x{:02x})", bytes[offset]),
        }
    })?;
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ScenarioError::Parse {
            at: at(0),
            message: "the scenario is empty (nothing but blank lines and comments)".into(),
        });
    }
    let file: ScenarioFile = crate::yaml::from_str(&text).map_err(|e| {
        let (line, column) = crate::yaml::location(&e).unwrap_or((1, 1));
        ScenarioError::Parse {
            at: Location {
                file: path.to_path_buf(),
                line,
                column,
            },
            message: crate::yaml::message(&e, &text),
        }
    })?;
    Ok((file, text))
}

/// Where `needle` first occurs in the file at `file` (line 1 when absent or unreadable).
fn locate_in_file(file: &Path, needle: &str) -> Location {
    locate(
        file,
        &std::fs::read_to_string(file).unwrap_or_default(),
        needle,
    )
}

/// Where `needle` first occurs in `text`, as a location in `file` (line 1 when absent).
pub(crate) fn locate(file: &Path, text: &str, needle: &str) -> Location {
    let (line, column) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
        .unwrap_or((1, 1));
    Location {
        file: file.to_path_buf(),
        line,
        column,
    }
}

/// Loads, merges and validates a scenario; parses every manifest it applies from `manifests`.
pub fn load(path: &Path, manifests: &ManifestSource) -> Result<Scenario, ScenarioError> {
    let bytes = std::fs::read(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_bytes(path, bytes, manifests)
}

/// As [`load`], with the file's bytes already read (its base, if any, is read beside `path`).
pub fn load_bytes(
    path: &Path,
    bytes: Vec<u8>,
    manifests: &ManifestSource,
) -> Result<Scenario, ScenarioError> {
    let (file, text) = parse_bytes(path, bytes)?;
    let mut step_locations = BTreeMap::new();
    let invalid = |needle: &str, message: String| ScenarioError::Invalid {
        at: locate(path, &text, needle),
        message,
    };

    let (mut merged, base_steps) = match &file.base {
        Some(base) => {
            let base_path = path.parent().unwrap_or(Path::new(".")).join(base);
            if !base_path.exists() {
                return Err(invalid(
                    "base:",
                    format!("base scenario {} does not exist", base_path.display()),
                ));
            }
            let (base_file, base_text) = read_file(&base_path)?;
            if base_file.base.is_some() {
                return Err(invalid(
                    "base:",
                    "a base scenario may not have a base itself".into(),
                ));
            }
            for s in &base_file.steps {
                let at = locate(&base_path, &base_text, &format!("id: {}", s.id));
                step_locations.insert(s.id.clone(), at);
            }
            let steps = base_file.steps.clone();
            (base_file, steps)
        }
        None => (file.clone(), Vec::new()),
    };

    // Override the base with what this file says.
    let mut steps = base_steps;
    if file.base.is_none() && !file.drop_steps.is_empty() {
        return Err(invalid(
            "drop_steps:",
            "drop_steps needs a base scenario".into(),
        ));
    }
    for id in &file.drop_steps {
        if !steps.iter().any(|s| &s.id == id) {
            return Err(invalid(
                id,
                format!("drop_steps: the base has no step {id}"),
            ));
        }
        steps.retain(|s| &s.id != id);
    }
    if file.base.is_some() {
        for s in &file.steps {
            match (steps.iter_mut().find(|b| b.id == s.id), &s.after) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        &format!("id: {}", s.id),
                        format!("step {}: `after` places a new step, but the base has a step {} already (it is replaced where it is)", s.id, s.id),
                    ))
                }
                (Some(slot), None) => *slot = s.clone(),
                (None, Some(after)) => match steps.iter().position(|b| &b.id == after) {
                    Some(i) => steps.insert(i + 1, s.clone()),
                    None => {
                        return Err(invalid(
                            &format!("after: {after}"),
                            format!("step {}: `after: {after}` names no step of the scenario", s.id),
                        ))
                    }
                },
                (None, None) => steps.push(s.clone()),
            }
        }
        if file.clusters.is_some() {
            merged.clusters = file.clusters.clone();
        }
        if file.fleet.is_some() {
            merged.fleet = file.fleet.clone();
        }
        if file.dns.is_some() {
            merged.dns = file.dns.clone();
        }
        if file.continuous_load.is_some() {
            merged.continuous_load = file.continuous_load.clone();
        }
        merged.expect = file.expect.clone();
        merged.description = file.description.clone().or(merged.description);
    } else {
        if let Some(s) = file.steps.iter().find(|s| s.after.is_some()) {
            return Err(invalid(
                &format!("id: {}", s.id),
                format!("step {}: `after` needs a base scenario", s.id),
            ));
        }
        steps = file.steps.clone();
    }
    for s in &file.steps {
        step_locations.insert(s.id.clone(), locate(path, &text, &format!("id: {}", s.id)));
    }

    let name = file.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let clusters = merged
        .clusters
        .clone()
        .ok_or_else(|| invalid("", "no `clusters` are declared".into()))?;
    let dns = merged
        .dns
        .clone()
        .ok_or_else(|| invalid("", "no `dns` domain is declared".into()))?;
    let fleet = merged.fleet.clone().unwrap_or(FleetSpec {
        provisioning_seconds: default_provisioning(),
        fault: None,
        flap: None,
    });
    let p = fleet.provisioning_seconds;
    if !(p.is_finite() && (0.0..=3600.0).contains(&p)) {
        return Err(invalid(
            "provisioning_seconds",
            format!(
                "fleet.provisioning_seconds must be a number of seconds from 0 to 3600, not {p}"
            ),
        ));
    }
    if let Some(f) = &fleet.fault {
        if f.state == "ACTIVE" || !crate::fleet::LIFECYCLE_STATES.contains(&f.state.as_str()) {
            return Err(invalid(
                "fault:",
                format!(
                    "fleet.fault.state must be a state that is not ACTIVE: one of {}, not {}",
                    crate::fleet::LIFECYCLE_STATES
                        .iter()
                        .filter(|s| **s != "ACTIVE")
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", "),
                    f.state
                ),
            ));
        }
    }
    if let Some(f) = &fleet.flap {
        for (field, v) in [
            ("active_seconds", f.active_seconds),
            ("provisioning_seconds", f.provisioning_seconds),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
                return Err(invalid(
                    field,
                    format!("fleet.flap.{field} must be a number of seconds above 0 and at most 3600, not {v}"),
                ));
            }
        }
    }
    let scale = dns.ttl_scale;
    if !(scale.is_finite() && scale > 0.0 && scale <= 1.0) {
        return Err(invalid(
            "ttl_scale",
            format!("dns.ttl_scale must be more than 0 and at most 1, not {scale}"),
        ));
    }
    let expect = merged.expect.clone().unwrap_or_default();

    let scenario = Scenario {
        name,
        path: path.to_path_buf(),
        description: merged.description.clone().unwrap_or_default(),
        expect,
        clusters,
        fleet,
        dns,
        steps,
        manifests: ManifestSet::default(),
        step_locations,
        continuous_load: merged.continuous_load.clone(),
    };
    validate(scenario, manifests)
}

/// Checks references between the parts of a scenario and parses its manifests.
fn validate(mut s: Scenario, source: &ManifestSource) -> Result<Scenario, ScenarioError> {
    let at = |s: &Scenario, id: &str| {
        s.step_locations.get(id).cloned().unwrap_or(Location {
            file: s.path.clone(),
            line: 1,
            column: 1,
        })
    };
    if s.steps.is_empty() {
        return Err(ScenarioError::Invalid {
            at: at(&s, ""),
            message: "the scenario has no steps".into(),
        });
    }
    let mut names = BTreeSet::new();
    for c in &s.clusters {
        if let Some(n) = c.nodes.filter(|n| !(1..=1000).contains(n)) {
            return Err(ScenarioError::Invalid {
                at: locate_in_file(&s.path, "nodes:"),
                message: format!("cluster {}: nodes must be 1 to 1000, not {n}", c.name),
            });
        }
        if !names.insert(c.name.clone()) {
            return Err(ScenarioError::Invalid {
                at: locate_in_file(&s.path, &c.name),
                message: format!("cluster {} is declared twice", c.name),
            });
        }
    }
    let mut ids = BTreeSet::new();
    let mut defined: BTreeSet<String> = BTreeSet::new();
    let mut to_parse: Vec<(String, String)> = Vec::new();
    let mut to_patch: Vec<String> = Vec::new();
    for step in &s.steps {
        let fail = |message: String| ScenarioError::Invalid {
            at: at(&s, &step.id),
            message: format!("step {}: {message}", step.id),
        };
        if !ids.insert(step.id.clone()) {
            return Err(fail("the id is used twice".into()));
        }
        let mut clusters_named: Vec<&str> = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        if let Some(action) = &step.run {
            match action {
                Action::CreateCluster { cluster }
                | Action::RenameContext { cluster }
                | Action::InstallIstio { cluster, .. }
                | Action::FleetRegister { cluster, .. }
                | Action::CreateNamespace { cluster, .. }
                | Action::LabelNamespace { cluster, .. }
                | Action::Delete { cluster, .. } => clusters_named.push(cluster),
                Action::Apply {
                    cluster,
                    manifests,
                    replace,
                    patch,
                    objects,
                    ..
                } => {
                    clusters_named.push(cluster);
                    if manifests.is_empty() && objects.is_empty() {
                        return Err(fail("`apply` needs `manifests` or `objects`".into()));
                    }
                    for m in manifests {
                        to_parse.push((step.id.clone(), m.clone()));
                    }
                    for r in replace {
                        if r.from.is_empty() {
                            return Err(fail(
                                "replace: `from` is empty (sed would match everywhere)".into(),
                            ));
                        }
                        texts.push(&r.to);
                    }
                    if !patch.is_empty() {
                        to_patch.push(step.id.clone());
                    }
                    for (i, o) in objects.iter().enumerate() {
                        let field = |f: &str| o.pointer(f).and_then(|v| v.as_str()).unwrap_or("");
                        if field("/apiVersion").is_empty()
                            || field("/kind").is_empty()
                            || field("/metadata/name").is_empty()
                        {
                            return Err(fail(format!(
                                "objects[{i}] needs apiVersion, kind and metadata.name"
                            )));
                        }
                        crate::manifest::check_object(o)
                            .map_err(|m| fail(format!("objects[{i}]: {m}")))?;
                    }
                }
                Action::ReadIngressIp { cluster, .. } => clusters_named.push(cluster),
                Action::DnsSetRecord { address, ttl } => {
                    texts.push(address);
                    if *ttl > MAX_TTL {
                        return Err(fail(format!(
                            "ttl must be at most {MAX_TTL} (RFC 2181, section 8), not {ttl}"
                        )));
                    }
                }
                Action::WaitMeshActive {
                    timeout_seconds,
                    poll_seconds,
                    stable_seconds,
                    ..
                } => {
                    let (t, p) = (*timeout_seconds, *poll_seconds);
                    let st = *stable_seconds;
                    if !(st.is_finite() && (0.0..=MAX_WAIT_SECONDS).contains(&st)) {
                        return Err(fail(format!(
                            "stable_seconds must be a number of seconds from 0 to {MAX_WAIT_SECONDS}, not {st}"
                        )));
                    }
                    if !(t.is_finite() && t > 0.0 && t <= MAX_WAIT_SECONDS) {
                        return Err(fail(format!(
                            "timeout_seconds must be a number of seconds above 0 and at most {MAX_WAIT_SECONDS}, not {t}"
                        )));
                    }
                    if !(p.is_finite() && p > 0.0 && p <= t) {
                        return Err(fail(format!(
                            "poll_seconds must be above 0 and at most timeout_seconds ({t}), not {p}"
                        )));
                    }
                }
                Action::WaitTtl { seconds } => {
                    if *seconds > MAX_WAIT_TTL {
                        return Err(fail(format!(
                            "wait_ttl seconds must be at most {MAX_WAIT_TTL} (a week), not {seconds}"
                        )));
                    }
                }
                Action::FleetEnableMesh
                | Action::FleetMeshUpdate { .. }
                | Action::WaitDnsTtl
                | Action::DeleteCluster { .. }
                | Action::FleetUnregister { .. }
                | Action::FleetDisableMesh => {}
            }
        }
        for fault in &step.inject {
            match fault {
                Fault::KillGateway { cluster, .. } => clusters_named.push(cluster),
                Fault::StopDns => {}
                Fault::FrontendErrors {
                    cluster,
                    status,
                    requests,
                } => {
                    clusters_named.push(cluster);
                    if !(500..=599).contains(status) {
                        return Err(fail(format!(
                            "frontend_errors status must be a server error (500 to 599), not {status}"
                        )));
                    }
                    if !(1..=1_000_000).contains(requests) {
                        return Err(fail(format!(
                            "frontend_errors requests must be 1 to 1000000, not {requests}"
                        )));
                    }
                }
            }
        }
        for check in &step.check {
            match check {
                Check::ClusterExists { cluster }
                | Check::ClusterAbsent { cluster }
                | Check::ContextListed { cluster }
                | Check::DeploymentsAvailable { cluster, .. }
                | Check::ObjectExists { cluster, .. }
                | Check::ObjectAbsent { cluster, .. }
                | Check::FirstServiceIs { cluster, .. }
                | Check::NamespaceLabels { cluster, .. }
                | Check::InjectionDisabled { cluster, .. }
                | Check::NoPublicService { cluster, .. }
                | Check::PodsInjected { cluster, .. } => clusters_named.push(cluster),
                Check::Routes {
                    cluster, expect, ..
                } => {
                    clusters_named.push(cluster);
                    check_percentages(expect).map_err(|m| fail(format!("routes: {m}")))?;
                }
                Check::ClientsResolve { address, .. } => texts.push(address),
                Check::ServiceEntryAddress {
                    cluster, gateway, ..
                } => {
                    clusters_named.push(cluster);
                    clusters_named.push(&gateway.cluster);
                }
                Check::HomePage { url, status } => {
                    texts.push(url);
                    if !(100..=599).contains(status) {
                        return Err(fail(format!(
                            "home_page status must be an HTTP status (100 to 599), not {status}"
                        )));
                    }
                }
                Check::DnsRecord { address, .. } => texts.push(address),
                Check::Split {
                    url,
                    via_domain,
                    expect,
                    error_budget,
                    identify,
                    names,
                } => {
                    if let Some(Err(e)) = identify.as_ref().map(Identify::extractor) {
                        return Err(fail(crate::error_chain(e)));
                    }
                    for c in names.values() {
                        clusters_named.push(c);
                    }
                    if let Some(b) =
                        error_budget.filter(|b| !(b.is_finite() && (0.0..1.0).contains(b)))
                    {
                        return Err(fail(format!(
                            "split error_budget must be a share from 0 to below 1 (0.05 = 5%), not {b}"
                        )));
                    }
                    if url.is_some() == *via_domain {
                        return Err(fail(
                            "a split check samples either `url` or `via_domain: true`".into(),
                        ));
                    }
                    if let Some(u) = url {
                        texts.push(u);
                    }
                    check_percentages(expect).map_err(|m| fail(format!("split: {m}")))?;
                    for c in expect.keys() {
                        clusters_named.push(c);
                    }
                }
                Check::OutputContains { .. }
                | Check::MeshActive { .. }
                | Check::MeshFeatureEnabled
                | Check::MembershipListed { .. }
                | Check::NothingLeft
                | Check::IstioInstalled { .. } => {}
            }
        }
        for c in clusters_named {
            if s.cluster(c).is_none() {
                return Err(fail(format!(
                    "cluster {c} is not declared in `clusters` ({})",
                    s.clusters
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        // A step's checks may read what its own action saves.
        if let Some(Action::ReadIngressIp { save_as, .. }) = &step.run {
            defined.insert(save_as.clone());
        }
        for t in texts {
            for var in variables_in(t) {
                if !defined.contains(&var) {
                    return Err(fail(format!(
                        "variable ${{{var}}} is used before a step saves it"
                    )));
                }
            }
        }
        if let Some(l) = s
            .continuous_load
            .as_ref()
            .filter(|l| l.start_after == step.id)
        {
            for var in variables_in(&l.url) {
                if !defined.contains(&var) {
                    return Err(ScenarioError::Invalid {
                        at: locate_in_file(&s.path, "continuous_load:"),
                        message: format!(
                            "continuous_load: url uses ${{{var}}}, which no step up to {} saves",
                            l.start_after
                        ),
                    });
                }
            }
        }
    }
    if let Some(l) = &s.continuous_load {
        check_load(&s, l)?;
    }
    for (id, m) in to_parse {
        let at_step = at(&s, &id);
        s.manifests.load(source, &m, &at_step)?;
    }
    if let Some(want) = &s.expect.failed_step {
        if !s.steps.iter().any(|st| &st.id == want) {
            return Err(ScenarioError::Invalid {
                at: locate_in_file(&s.path, "failed_step"),
                message: format!("expect.failed_step names no step: {want}"),
            });
        }
    }
    // Like kubectl, an object naming another namespace than the one applied to is refused.
    for step in &s.steps {
        if let Some(Action::Apply {
            namespace: Some(ns),
            manifests,
            ..
        }) = &step.run
        {
            for m in manifests {
                for o in s.manifests.objects(m, &[])?.0 {
                    if let Some(other) = o.namespace.as_ref().filter(|o| *o != ns) {
                        return Err(ScenarioError::Invalid {
                            at: at(&s, &step.id),
                            message: format!(
                                "step {}: {} {} in {m} names namespace {other:?}, which does not match the namespace {ns:?} it is applied to (kubectl refuses it)",
                                step.id, o.kind, o.name
                            ),
                        });
                    }
                }
            }
        }
    }
    // Every patch must apply to an object its step applies.
    for id in to_patch {
        let step = s
            .steps
            .iter()
            .find(|st| st.id == id)
            .expect("collected from the steps");
        if let Some(Action::Apply {
            manifests, patch, ..
        }) = &step.run
        {
            let mut objects = Vec::new();
            for m in manifests {
                objects.extend(s.manifests.objects(m, &[])?.0);
            }
            if let Err(message) = crate::manifest::patch_objects(&mut objects, patch) {
                return Err(ScenarioError::Invalid {
                    at: at(&s, &id),
                    message: format!("step {id}: {message}"),
                });
            }
        }
    }
    Ok(s)
}

/// The longest wait a scenario may ask for, in seconds (a day).
pub const MAX_WAIT_SECONDS: f64 = 86_400.0;
/// The longest TTL `wait_ttl` may assume (a week).
pub const MAX_WAIT_TTL: u32 = 604_800;
/// The largest TTL a record may have (RFC 2181, section 8: 2^31 - 1).
pub const MAX_TTL: u32 = 2_147_483_647;

/// The continuous load's steps exist in order, and its rate is a rate.
fn check_load(s: &Scenario, l: &ContinuousLoad) -> Result<(), ScenarioError> {
    let fail = |message: String| ScenarioError::Invalid {
        at: locate_in_file(&s.path, "continuous_load:"),
        message: format!("continuous_load: {message}"),
    };
    let index = |id: &str, field: &str| {
        s.steps
            .iter()
            .position(|st| st.id == id)
            .ok_or_else(|| fail(format!("{field}: the scenario has no step {id}")))
    };
    let start = index(&l.start_after, "start_after")?;
    if let Some(d) = &l.via_domain_after {
        if index(d, "via_domain_after")? < start {
            return Err(fail(format!(
                "via_domain_after: step {d} comes before start_after ({})",
                l.start_after
            )));
        }
    }
    if let Some(stop) = &l.stop_before {
        if index(stop, "stop_before")? <= start {
            return Err(fail(format!(
                "stop_before: step {stop} does not come after start_after ({})",
                l.start_after
            )));
        }
    }
    if !(l.rate.is_finite() && l.rate > 0.0 && l.rate <= 1000.0) {
        return Err(fail(format!(
            "rate must be above 0 and at most 1000 requests a second, not {}",
            l.rate
        )));
    }
    Ok(())
}

/// Percentages per destination: each finite and non-negative, summing to 100.
fn check_percentages(expect: &BTreeMap<String, f64>) -> Result<(), String> {
    if let Some((k, p)) = expect.iter().find(|(_, p)| !p.is_finite() || **p < 0.0) {
        return Err(format!("{k}: {p} is not a percentage"));
    }
    let total: f64 = expect.values().sum();
    if (total - 100.0).abs() > 1e-9 {
        return Err(format!("percentages must sum to 100, not {total}"));
    }
    Ok(())
}

/// The `${NAME}` variables a text uses.
pub fn variables_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// Replaces `${NAME}` by the variable's value.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

/// The scenario files of a folder, sorted by name.
pub fn discover(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let yaml = |p: &PathBuf| p.extension().is_some_and(|x| x == "yaml" || x == "yml");
    let mut files = Vec::new();
    for p in std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())) {
        if p.is_dir() {
            // One level of folders (`scenarios/mistakes/`).
            files.extend(
                std::fs::read_dir(&p)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|q| q.is_file() && yaml(q)),
            );
        } else if yaml(&p) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// A scenario's name for trials and lists: its path below `dir` without the extension
/// (`canary-cluster`, `mistakes/weights-reversed`).
pub fn trial_name(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .with_extension("")
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: a runaway file is refused before it is parsed, with its location.
    #[test]
    fn a_huge_file_is_refused_unparsed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.yaml");
        let mut text = String::from("clusters: [{name: a}]\ndns: {domain: example.com}\nsteps:\n");
        while text.len() <= MAX_SCENARIO_BYTES {
            text.push_str(
                "  - {id: X, title: \"................................................\"}\n",
            );
        }
        std::fs::write(&p, &text).unwrap();
        let err = load(&p, &ManifestSource::new(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("huge.yaml:1:1"), "{err}");
        assert!(
            err.contains(&format!("a scenario has at most {MAX_SCENARIO_BYTES}")),
            "{err}"
        );
    }
}
