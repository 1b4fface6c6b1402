//! Reading `gcloud container fleet mesh describe` output (step C6).
//!
//! The output is YAML; per membership (keyed `projects/NUMBER/locations/LOCATION/memberships/NAME`:
//! `global` in the published procedure, the cluster's region for memberships registered today)
//! it reports `servicemesh.controlPlaneManagement.state` and `dataPlaneManagement.state`
//! (DISABLED, PROVISIONING, ACTIVE, or an error state) with details.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Errors reading the describe output.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The output is not the YAML gcloud prints.
    #[error("reading `fleet mesh describe` output: {message}")]
    Parse {
        /// The parser's message.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Describe {
    #[serde(default)]
    membership_states: BTreeMap<String, MembershipState>,
    #[serde(default)]
    membership_specs: BTreeMap<String, MembershipSpec>,
    #[serde(default)]
    resource_state: Option<ResourceState>,
}

#[derive(Debug, Deserialize)]
struct ResourceState {
    #[serde(default)]
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MembershipSpec {
    #[serde(default)]
    mesh: Option<MeshSpec>,
}

#[derive(Debug, Deserialize)]
struct MeshSpec {
    #[serde(default)]
    management: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MembershipState {
    #[serde(default)]
    servicemesh: Option<ServiceMesh>,
    #[serde(default)]
    state: Option<StateCode>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceMesh {
    #[serde(default)]
    conditions: Vec<Condition>,
    #[serde(default)]
    control_plane_management: Option<Management>,
    #[serde(default)]
    data_plane_management: Option<Management>,
}

#[derive(Debug, Deserialize)]
struct Management {
    #[serde(default)]
    details: Vec<Detail>,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Detail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    details: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Condition {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StateCode {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// The managed mesh's state for one membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeshStatus {
    /// controlPlaneManagement.state (DISABLED when absent).
    pub control_plane: String,
    /// dataPlaneManagement.state (DISABLED when absent).
    pub data_plane: String,
    /// Detail lines (`CODE: details`).
    pub details: Vec<String>,
    /// The membership's overall state line.
    pub summary: String,
}

impl MeshStatus {
    /// Whether both planes are ACTIVE.
    pub fn is_active(&self) -> bool {
        self.control_plane == "ACTIVE" && self.data_plane == "ACTIVE"
    }

    /// Whether the managed control plane is ACTIVE: what the procedure's C6 waits for (the data
    /// plane is reported beside it).
    pub fn control_plane_active(&self) -> bool {
        self.control_plane == "ACTIVE"
    }

    /// Whether the control plane is in a state it does not leave by itself (FAILED_PRECONDITION,
    /// STALLED): waiting longer would only hide the details.
    pub fn terminal(&self) -> bool {
        matches!(
            self.control_plane.as_str(),
            "FAILED_PRECONDITION" | "STALLED"
        )
    }
}

/// What the fleet's mesh feature says as a whole (steps C3–C5): whether the feature is enabled,
/// and per membership listed, the management its spec asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overview {
    /// `resourceState.state` (ACTIVE once `mesh enable` is done; DISABLED or absent otherwise).
    pub feature: String,
    /// Membership name → `membershipSpecs.<key>.mesh.management` (None: no mesh spec), for
    /// every membership in `membershipStates` or `membershipSpecs`.
    pub memberships: BTreeMap<String, Option<String>>,
}

fn parse(yaml: &str) -> Result<Describe, FleetError> {
    crate::yaml::from_str(yaml).map_err(|e| FleetError::Parse {
        message: e.without_snippet().to_string(),
    })
}

fn short_name(key: &str) -> String {
    key.rsplit_once("/memberships/")
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| key.to_string())
}

/// The feature's state and its memberships' management, from describe output.
pub fn overview(yaml: &str) -> Result<Overview, FleetError> {
    let d = parse(yaml)?;
    let mut memberships: BTreeMap<String, Option<String>> = d
        .membership_states
        .keys()
        .map(|k| (short_name(k), None))
        .collect();
    for (k, spec) in d.membership_specs {
        memberships.insert(short_name(&k), spec.mesh.and_then(|m| m.management));
    }
    Ok(Overview {
        feature: d
            .resource_state
            .and_then(|r| r.state)
            .unwrap_or_else(|| "DISABLED".into()),
        memberships,
    })
}

/// The status of `membership` in describe output; None when the membership is not listed.
pub fn membership_status(yaml: &str, membership: &str) -> Result<Option<MeshStatus>, FleetError> {
    let d = parse(yaml)?;
    let suffix = format!("/memberships/{membership}");
    let Some((_, m)) = d
        .membership_states
        .into_iter()
        .find(|(k, _)| k.ends_with(&suffix) || k == membership)
    else {
        return Ok(None);
    };
    let mut details = Vec::new();
    let mut state_of = |mgmt: Option<Management>| {
        let Some(mgmt) = mgmt else {
            return "DISABLED".to_string();
        };
        for d in mgmt.details {
            let code = d.code.unwrap_or_default();
            details.push(match d.details.filter(|t| !t.is_empty()) {
                Some(t) => format!("{code}: {t}"),
                None => code,
            });
        }
        mgmt.state.unwrap_or_else(|| "DISABLED".into())
    };
    let (cp, dp) = match m.servicemesh {
        Some(sm) => {
            let cp = state_of(sm.control_plane_management);
            let dp = state_of(sm.data_plane_management);
            for c in &sm.conditions {
                details.push(format!(
                    "condition {} ({}): {}",
                    c.code.as_deref().unwrap_or_default(),
                    c.severity.as_deref().unwrap_or("no severity"),
                    c.details.as_deref().unwrap_or_default()
                ));
            }
            (cp, dp)
        }
        None => ("DISABLED".to_string(), "DISABLED".to_string()),
    };
    let summary = m
        .state
        .map(|s| {
            format!(
                "{} {}",
                s.code.unwrap_or_default(),
                s.description.unwrap_or_default()
            )
        })
        .unwrap_or_default();
    Ok(Some(MeshStatus {
        control_plane: cp,
        data_plane: dp,
        details,
        summary: summary.trim().to_string(),
    }))
}

/// A managed control plane's state, for stand-ins that print describe output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandInState {
    /// Registered, automatic management not requested.
    Disabled,
    /// Requested, not ready yet.
    Provisioning,
    /// Ready.
    Active,
    /// A state the scenario injects, or one the stand-in decides (no Workload Identity).
    Fault(ControlPlaneFault),
}

/// A managed control plane that does not come up, as `mesh describe` reports it. A scenario may
/// inject one (`fleet: {fault: ...}`) to prove C6 stops with the details.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneFault {
    /// `controlPlaneManagement.state`: PROVISIONING (stuck), FAILED_PRECONDITION, STALLED, ...
    pub state: String,
    /// `controlPlaneManagement.details[0].code`.
    #[serde(default)]
    pub code: Option<String>,
    /// `controlPlaneManagement.details[0].details`.
    #[serde(default)]
    pub details: Option<String>,
    /// A `servicemesh.conditions[]` entry: code, details, and severity ERROR.
    #[serde(default)]
    pub condition: Option<(String, String)>,
}

/// A managed control plane that flaps once up: ACTIVE for `active_seconds`, then PROVISIONING
/// for `provisioning_seconds`, over and over (a scenario injects it with `fleet: {flap: ...}`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Flap {
    /// How long each ACTIVE spell lasts.
    pub active_seconds: f64,
    /// How long each PROVISIONING spell lasts.
    pub provisioning_seconds: f64,
}

impl Flap {
    /// Whether the control plane is up `since_ready` after it first came up.
    pub fn up(&self, since_ready: std::time::Duration) -> bool {
        let period = self.active_seconds + self.provisioning_seconds;
        since_ready.as_secs_f64() % period < self.active_seconds
    }
}

/// Whether a stand-in's control plane counts as ready: it is up, and when it flaps, in an
/// ACTIVE spell (`since_ready`: how long ago it first came up).
pub fn flapped_ready(ready: bool, flap: Option<&Flap>, since_ready: std::time::Duration) -> bool {
    ready && flap.is_none_or(|f| f.up(since_ready))
}

/// The states a managed control plane reports (gkehub v1 `LifecycleState`, as listed in the
/// REST reference of `ServiceMeshControlPlaneManagement.state`; DEPROVISIONING is newer than
/// gcloud 528's client).
pub const LIFECYCLE_STATES: &[&str] = &[
    "DISABLED",
    "FAILED_PRECONDITION",
    "PROVISIONING",
    "ACTIVE",
    "STALLED",
    "NEEDS_ATTENTION",
    "DEGRADED",
    "DEPROVISIONING",
];

impl ControlPlaneFault {
    /// What managed CSM reports for a cluster whose node pools lack Workload Identity (a cluster
    /// created without `--workload-pool`). Text from Google's "Resolving managed Cloud Service
    /// Mesh issues" page, section "NodePool Workload Identity Federation for GKE is disabled"
    /// (https://cloud.google.com/service-mesh/docs/troubleshooting/troubleshoot-managed-service-mesh).
    pub fn workload_identity_missing() -> Self {
        ControlPlaneFault {
            state: "FAILED_PRECONDITION".into(),
            code: Some("REVISION_FAILED_PRECONDITION".into()),
            details: Some(
                "Required in-cluster components are not ready. This will be retried within 15 minutes."
                    .into(),
            ),
            condition: Some((
                "NODEPOOL_WORKLOAD_IDENTITY_FEDERATION_REQUIRED".into(),
                "One or more node pools have workload identity federation disabled.".into(),
            )),
        }
    }
}

/// The state a stand-in reports for a membership: what the scenario injects comes first, then
/// what managed CSM would refuse (no Workload Identity), then the control plane's readiness.
pub fn stand_in_state(
    managed: bool,
    ready: bool,
    workload_pool: bool,
    fault: Option<&ControlPlaneFault>,
) -> StandInState {
    match (managed, fault) {
        (false, _) => StandInState::Disabled,
        (true, Some(f)) => StandInState::Fault(f.clone()),
        (true, None) if !workload_pool => {
            StandInState::Fault(ControlPlaneFault::workload_identity_missing())
        }
        (true, None) if ready => StandInState::Active,
        (true, None) => StandInState::Provisioning,
    }
}

/// One membership's entry under `membershipStates` in `fleet mesh describe`, for a stand-in's
/// state (shared by [`describe_yaml`] and the GCP API stand-in, `crate::gcp_stand_in`).
pub fn stand_in_membership_state(st: &StandInState) -> serde_json::Value {
    const ONBOARD: &str = "Please see https://cloud.google.com/service-mesh/docs/install for instructions to onboard to Anthos Service Mesh.";
    let plane = |state: &str, code: &str, details: &str| serde_json::json!({"details": [{"code": code, "details": details}], "state": state});
    match st {
        StandInState::Active => serde_json::json!({
            "servicemesh": {
                "controlPlaneManagement": plane("ACTIVE", "REVISION_READY", "Ready: asm-managed"),
                "dataPlaneManagement": plane("ACTIVE", "OK", "Service is running.")},
            "state": {"code": "OK", "description": "Revision(s) ready for use: asm-managed."}}),
        StandInState::Provisioning => serde_json::json!({
            "servicemesh": {
                "controlPlaneManagement": plane("PROVISIONING", "PROVISIONING", "Service is provisioning."),
                "dataPlaneManagement": plane("PROVISIONING", "PROVISIONING", "Service is provisioning.")},
            "state": {"code": "OK", "description": ONBOARD}}),
        StandInState::Disabled => serde_json::json!({
            "servicemesh": {
                "controlPlaneManagement": {"state": "DISABLED"},
                "dataPlaneManagement": {"state": "DISABLED"}},
            "state": {"code": "OK", "description": ONBOARD}}),
        // Shaped like the example in Google's troubleshooting page for managed CSM (section
        // "NodePool Workload Identity Federation for GKE is disabled"), which shows no
        // membership `state` block.
        StandInState::Fault(f) => {
            let cp = plane(
                &f.state,
                f.code.as_deref().unwrap_or_default(),
                f.details.as_deref().unwrap_or_default(),
            );
            // After a state the control plane does not leave by itself, the documented
            // example shows no data plane; otherwise the data plane follows the control plane.
            let mut sm = if matches!(f.state.as_str(), "FAILED_PRECONDITION" | "STALLED") {
                serde_json::json!({"controlPlaneManagement": cp})
            } else {
                serde_json::json!({"controlPlaneManagement": cp.clone(), "dataPlaneManagement": cp})
            };
            if let Some((c, d)) = &f.condition {
                sm["conditions"] = serde_json::json!([{"code": c, "details": d,
                    "documentationLink": "https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity",
                    "severity": "ERROR"}]);
            }
            serde_json::json!({"servicemesh": sm})
        }
    }
}

/// `gcloud container fleet mesh describe` output as gcloud prints it, for stand-ins of the
/// managed mesh (the emulated and kind backends).
pub fn describe_yaml(
    project: &str,
    project_number: &str,
    enabled: bool,
    memberships: &[(String, StandInState)],
) -> String {
    let mut specs = serde_json::Map::new();
    let mut states = serde_json::Map::new();
    for (name, st) in memberships {
        let key = membership_key(project_number, name);
        let entry = stand_in_membership_state(st);
        states.insert(key.clone(), entry);
        if *st != StandInState::Disabled {
            specs.insert(
                key,
                serde_json::json!({"mesh": {"management": "MANAGEMENT_AUTOMATIC"}}),
            );
        }
    }
    let doc = serde_json::json!({
        "createTime": "2026-01-01T00:00:00.000000000Z",
        "membershipSpecs": specs,
        "membershipStates": states,
        "name": format!("projects/{project}/locations/global/features/servicemesh"),
        "resourceState": {"state": if enabled { "ACTIVE" } else { "DISABLED" }},
        "spec": {},
    });
    crate::yaml::to_string(&doc).unwrap_or_default()
}

/// The resource key `mesh describe` uses for a membership registered today: regional, as in
/// Google's "Check control plane implementation" page
/// (`projects/746296320118/locations/us-central1/memberships/demo-cluster-1`); the published
/// procedure, older, shows `locations/global`. Both are read alike.
pub fn membership_key(project_number: &str, membership: &str) -> String {
    format!("projects/{project_number}/locations/us-central1/memberships/{membership}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(0.0, true)]
    #[case(0.49, true)]
    #[case(0.5, false)]
    #[case(1.9, false)]
    #[case(2.5, true)]
    #[case(3.1, false)]
    fn a_flapping_control_plane_alternates_active_and_provisioning(
        #[case] since: f64,
        #[case] up: bool,
    ) {
        let f = Flap {
            active_seconds: 0.5,
            provisioning_seconds: 2.0,
        };
        let at = std::time::Duration::from_secs_f64(since);
        assert_eq!(flapped_ready(true, Some(&f), at), up);
        assert!(flapped_ready(true, None, at));
        assert!(!flapped_ready(false, None, at));
    }

    /// The ready output quoted in PROCEDURE.md step C6.
    const READY: &str = "membershipStates:
  projects/123456789123/locations/global/memberships/cluster-with-csm-membership:
    servicemesh:
      controlPlaneManagement:
        details:
        - code: REVISION_READY
          details: 'Ready: asm-managed'
        state: ACTIVE
      dataPlaneManagement:
        details:
        - code: OK
          details: Service is running.
        state: ACTIVE
    state:
      code: OK
      description: 'Revision(s) ready for use: asm-managed.'
resourceState:
  state: ACTIVE
";

    const PROVISIONING: &str = "membershipStates:
  projects/123456789123/locations/global/memberships/cluster-with-csm-membership:
    servicemesh:
      controlPlaneManagement:
        details:
        - code: PROVISIONING
          details: Service is provisioning.
        state: PROVISIONING
      dataPlaneManagement:
        state: PROVISIONING
    state:
      code: OK
resourceState:
  state: ACTIVE
";

    const DISABLED: &str = "membershipStates:
  projects/123456789123/locations/global/memberships/cluster-with-csm-membership:
    state:
      code: OK
      description: Please see https://cloud.google.com/service-mesh/docs/install for instructions to onboard to Anthos Service Mesh.
resourceState:
  state: ACTIVE
";

    /// The example of Google's "Resolving managed Cloud Service Mesh issues" page, section
    /// "NodePool Workload Identity Federation for GKE is disabled" (membership key as in C6).
    const FAILED: &str = "membershipStates:
  projects/123456789123/locations/global/memberships/cluster-with-csm-membership:
    servicemesh:
      conditions:
      - code: NODEPOOL_WORKLOAD_IDENTITY_FEDERATION_REQUIRED
        details: One or more node pools have workload identity federation disabled.
        documentationLink: https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity
        severity: ERROR
      controlPlaneManagement:
        details:
        - code: REVISION_FAILED_PRECONDITION
          details: Required in-cluster components are not ready. This will be retried within 15 minutes.
        implementation: TRAFFIC_DIRECTOR
        state: FAILED_PRECONDITION
resourceState:
  state: ACTIVE
";

    #[rstest]
    #[case(READY, "ACTIVE", "ACTIVE", true)]
    #[case(PROVISIONING, "PROVISIONING", "PROVISIONING", false)]
    #[case(DISABLED, "DISABLED", "DISABLED", false)]
    #[case(FAILED, "FAILED_PRECONDITION", "DISABLED", false)]
    fn reads_the_states(
        #[case] yaml: &str,
        #[case] cp: &str,
        #[case] dp: &str,
        #[case] active: bool,
    ) {
        let s = membership_status(yaml, "cluster-with-csm-membership")
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                s.control_plane.as_str(),
                s.data_plane.as_str(),
                s.is_active()
            ),
            (cp, dp, active)
        );
    }

    #[test]
    fn failure_details_are_kept() {
        let s = membership_status(FAILED, "cluster-with-csm-membership")
            .unwrap()
            .unwrap();
        assert_eq!(
            s.details,
            vec![
                "REVISION_FAILED_PRECONDITION: Required in-cluster components are not ready. This will be retried within 15 minutes.",
                "condition NODEPOOL_WORKLOAD_IDENTITY_FEDERATION_REQUIRED (ERROR): One or more node pools have workload identity federation disabled.",
            ]
        );
        assert!(s.terminal());
    }

    #[test]
    fn the_stand_in_without_workload_identity_prints_what_google_documents() {
        let st = stand_in_state(true, true, false, None);
        let y = describe_yaml(
            "p",
            "123456789123",
            true,
            &[("cluster-with-csm-membership".into(), st)],
        );
        let ours = membership_status(&y, "cluster-with-csm-membership")
            .unwrap()
            .unwrap();
        let google = membership_status(FAILED, "cluster-with-csm-membership")
            .unwrap()
            .unwrap();
        assert_eq!(ours.control_plane, google.control_plane);
        assert_eq!(ours.details, google.details);
    }

    #[rstest]
    #[case(false, true, true, None, StandInState::Disabled)]
    #[case(true, false, true, None, StandInState::Provisioning)]
    #[case(true, true, true, None, StandInState::Active)]
    #[case(
        true,
        true,
        false,
        None,
        StandInState::Fault(ControlPlaneFault::workload_identity_missing())
    )]
    fn stand_in_decisions(
        #[case] managed: bool,
        #[case] ready: bool,
        #[case] pool: bool,
        #[case] fault: Option<ControlPlaneFault>,
        #[case] want: StandInState,
    ) {
        assert_eq!(stand_in_state(managed, ready, pool, fault.as_ref()), want);
    }

    #[test]
    fn an_injected_fault_wins_over_readiness() {
        let stuck = ControlPlaneFault {
            state: "PROVISIONING".into(),
            code: None,
            details: None,
            condition: None,
        };
        assert_eq!(
            stand_in_state(true, true, true, Some(&stuck)),
            StandInState::Fault(stuck)
        );
    }

    #[test]
    fn overview_reads_feature_and_management() {
        let y = describe_yaml(
            "p",
            "1",
            true,
            &[
                ("a".to_string(), StandInState::Disabled),
                ("b".to_string(), StandInState::Provisioning),
            ],
        );
        let o = overview(&y).unwrap();
        assert_eq!(o.feature, "ACTIVE");
        assert_eq!(o.memberships["a"], None);
        assert_eq!(o.memberships["b"].as_deref(), Some("MANAGEMENT_AUTOMATIC"));
        let off = overview(&describe_yaml("p", "1", false, &[])).unwrap();
        assert_eq!(
            (off.feature.as_str(), off.memberships.len()),
            ("DISABLED", 0)
        );
    }

    #[rstest]
    #[case(StandInState::Disabled, "DISABLED")]
    #[case(StandInState::Provisioning, "PROVISIONING")]
    #[case(StandInState::Active, "ACTIVE")]
    fn stand_in_output_reads_back(#[case] st: StandInState, #[case] want: &str) {
        let y = describe_yaml("p", "123", true, &[("m".to_string(), st)]);
        let s = membership_status(&y, "m").unwrap().unwrap();
        assert_eq!(
            (s.control_plane.as_str(), s.data_plane.as_str()),
            (want, want)
        );
    }

    #[test]
    fn unknown_membership_is_none() {
        assert_eq!(membership_status(READY, "other").unwrap(), None);
    }
}
