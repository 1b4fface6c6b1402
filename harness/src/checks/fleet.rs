//! Checks on the fleet, read from `gcloud container fleet mesh describe`.

use serde_json::json;

use super::{CheckResult, Ctx, R};
use meshmig_backends::BackendError;
fn fleet_overview(yaml: &str) -> Result<meshmig_core::fleet::Overview, BackendError> {
    meshmig_core::fleet::overview(yaml)
        .map_err(|e| BackendError::infra("reading fleet mesh describe", e))
}

/// `fleet mesh describe` reports the mesh feature enabled.
pub fn mesh_feature_enabled(yaml: &str) -> R {
    let o = fleet_overview(yaml)?;
    Ok(CheckResult::new(
        "mesh_feature_enabled",
        o.feature == "ACTIVE",
        "the fleet's servicemesh feature: resourceState.state ACTIVE",
        format!("resourceState.state {}", o.feature),
        json!({"describe": yaml}),
    ))
}

/// `fleet mesh describe` lists the membership (with the management asked, if given).
pub fn membership_listed(yaml: &str, membership: &str, management: Option<&str>) -> R {
    let o = fleet_overview(yaml)?;
    let want = management.map(|m| format!("MANAGEMENT_{}", m.to_uppercase()));
    let got = o.memberships.get(membership);
    let ok = match (&want, got) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(w), Some(g)) => g.as_deref() == Some(w.as_str()),
    };
    Ok(CheckResult::new(
        "membership_listed",
        ok,
        format!(
            "membership {membership} in the servicemesh feature{}",
            want.as_ref()
                .map(|w| format!(", spec mesh.management {w}"))
                .unwrap_or_default()
        ),
        match got {
            None => format!(
                "not listed (memberships: {})",
                o.memberships.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            Some(m) => format!(
                "listed, mesh.management {}",
                m.as_deref().unwrap_or("unset")
            ),
        },
        json!({"describe": yaml}),
    ))
}

/// `fleet mesh describe` shows both planes ACTIVE for the membership.
pub async fn mesh_active(ctx: &Ctx<'_>, membership: &str) -> R {
    let yaml = ctx.backend.mesh_describe().await?;
    let status = meshmig_core::fleet::membership_status(&yaml, membership)
        .map_err(|e| BackendError::infra("reading fleet mesh describe", e))?;
    Ok(CheckResult::new(
        "mesh_active",
        status.as_ref().is_some_and(|s| s.control_plane_active()),
        format!("membership {membership}: controlPlaneManagement ACTIVE (the data plane is reported beside it)"),
        match &status {
            Some(s) => format!(
                "control plane {}, data plane {} ({})",
                s.control_plane,
                s.data_plane,
                s.details.join("; ")
            ),
            None => format!("membership {membership} not listed"),
        },
        json!({"describe": yaml}),
    ))
}
