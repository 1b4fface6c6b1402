//! Reading `gcloud container fleet mesh describe` output (step C6).
//!
//! The output is YAML; per membership (keyed `projects/NUMBER/locations/global/memberships/NAME`)
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

/// The status of `membership` in describe output; None when the membership is not listed.
pub fn membership_status(yaml: &str, membership: &str) -> Result<Option<MeshStatus>, FleetError> {
    let d: Describe = serde_yaml::from_str(yaml).map_err(|e| FleetError::Parse {
        message: e.to_string(),
    })?;
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
            details.push(format!(
                "{}: {}",
                d.code.unwrap_or_default(),
                d.details.unwrap_or_default()
            ));
        }
        mgmt.state.unwrap_or_else(|| "DISABLED".into())
    };
    let (cp, dp) = match m.servicemesh {
        Some(sm) => (
            state_of(sm.control_plane_management),
            state_of(sm.data_plane_management),
        ),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandInState {
    /// Registered, automatic management not requested.
    Disabled,
    /// Requested, not ready yet.
    Provisioning,
    /// Ready.
    Active,
}

/// `gcloud container fleet mesh describe` output as gcloud prints it, for stand-ins of the
/// managed mesh (the emulated and kind backends).
pub fn describe_yaml(
    project: &str,
    project_number: &str,
    enabled: bool,
    memberships: &[(String, StandInState)],
) -> String {
    const ONBOARD: &str = "Please see https://cloud.google.com/service-mesh/docs/install for instructions to onboard to Anthos Service Mesh.";
    let mut specs = serde_json::Map::new();
    let mut states = serde_json::Map::new();
    for (name, st) in memberships {
        let key = membership_key(project_number, name);
        let (state, details, code, description) = match st {
            StandInState::Active => (
                "ACTIVE",
                Some((
                    serde_json::json!([{"code": "REVISION_READY", "details": "Ready: asm-managed"}]),
                    serde_json::json!([{"code": "OK", "details": "Service is running."}]),
                )),
                "OK",
                "Revision(s) ready for use: asm-managed.",
            ),
            StandInState::Provisioning => {
                let p = serde_json::json!([{"code": "PROVISIONING", "details": "Service is provisioning."}]);
                ("PROVISIONING", Some((p.clone(), p)), "OK", ONBOARD)
            }
            StandInState::Disabled => ("DISABLED", None, "OK", ONBOARD),
        };
        let (cp, dp) = match details {
            Some((c, d)) => (
                serde_json::json!({"details": c, "state": state}),
                serde_json::json!({"details": d, "state": state}),
            ),
            None => (
                serde_json::json!({"state": state}),
                serde_json::json!({"state": state}),
            ),
        };
        states.insert(
            key.clone(),
            serde_json::json!({"servicemesh": {"controlPlaneManagement": cp, "dataPlaneManagement": dp},
                               "state": {"code": code, "description": description}}),
        );
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
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// The resource key gcloud uses for a membership.
pub fn membership_key(project_number: &str, membership: &str) -> String {
    format!("projects/{project_number}/locations/global/memberships/{membership}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

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

    const FAILED: &str = "membershipStates:
  projects/123456789123/locations/global/memberships/cluster-with-csm-membership:
    servicemesh:
      controlPlaneManagement:
        details:
        - code: PRECONDITION_FAILED
          details: Workload Identity is not enabled on the cluster.
        state: FAILED_PRECONDITION
    state:
      code: ERROR
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
            vec!["PRECONDITION_FAILED: Workload Identity is not enabled on the cluster."]
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
