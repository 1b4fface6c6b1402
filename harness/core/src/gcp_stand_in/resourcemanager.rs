//! Resource Manager, `cloudresourcemanager/v1` `projects.get`: fleet commands turn a project id
//! into its number (`googlecloudsdk/api_lib/cloudresourcemanager/projects_api.py`, `Get`;
//! `googlecloudsdk/command_lib/projects/util.py`, `GetProjectNumber`). Path `v1/projects/{projectId}`
//! and message `Project` (`projectId`, `projectNumber`, `name`, `lifecycleState`) from
//! `googlecloudsdk/generated_clients/apis/cloudresourcemanager/v1/`.

use axum::http::Method;
use serde_json::{json, Value};

use super::{project_number, ApiError, Req};

/// Serves `GET v1/projects/{p}` (any project exists).
pub(crate) fn route(req: &Req<'_>) -> Option<Result<Value, ApiError>> {
    match req.segs.as_slice() {
        ["v1", "projects", p] if req.method == Method::GET && !p.contains(':') => Some(Ok(json!({
            "projectId": p,
            "projectNumber": project_number(p),
            "name": p,
            "lifecycleState": "ACTIVE",
        }))),
        _ => None,
    }
}
