//! Service Usage, `serviceusage/v1`: services get / enable / disable and their operations.
//!
//! Paths from `googlecloudsdk/generated_clients/apis/serviceusage/v1/serviceusage_v1_client.py`
//! (`ServicesService.Get` `v1/{+name}`, `.Enable` `v1/{+name}:enable`, `.Disable`
//! `v1/{+name}:disable`, `OperationsService.Get` `v1/{+name}`); messages from
//! `serviceusage_v1_messages.py` (`GoogleApiServiceusageV1Service`: `name`, `parent`, `state`,
//! `config`; `Operation`: `name`, `done`, `response`). gcloud asks before it creates a cluster
//! (`googlecloudsdk/api_lib/functions/api_enablement.py`, `PromptToEnableApiIfDisabled`, called
//! by `surface/container/clusters/create.py`) and when it enables a fleet feature
//! (`googlecloudsdk/command_lib/container/fleet/features/base.py`).

use std::collections::BTreeSet;

use axum::http::Method;
use serde_json::{json, Value};

use super::{project_number, ApiError, Req, Shared};

/// Services a project has enabled beyond [`ENABLED_BY_DEFAULT`].
#[derive(Default)]
pub(crate) struct Store {
    /// `(project, service)` enabled through the API.
    enabled: BTreeSet<(String, String)>,
    /// `(project, service)` disabled through the API.
    disabled: BTreeSet<(String, String)>,
}

/// What a project that runs GKE has on already: the stand-in's projects are GKE projects. The
/// mesh API (`mesh.googleapis.com`) is not among them: `fleet mesh enable` turns it on.
const ENABLED_BY_DEFAULT: &[&str] = &[
    "container.googleapis.com",
    "compute.googleapis.com",
    "dns.googleapis.com",
    "gkehub.googleapis.com",
    "gkeconnect.googleapis.com",
    "connectgateway.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "serviceusage.googleapis.com",
    "iam.googleapis.com",
];

impl Store {
    /// Whether `service` is on in `project`.
    pub fn is_enabled(&self, project: &str, service: &str) -> bool {
        let k = (project.to_string(), service.to_string());
        self.enabled.contains(&k)
            || (ENABLED_BY_DEFAULT.contains(&service) && !self.disabled.contains(&k))
    }
}

fn service_json(project: &str, service: &str, enabled: bool) -> Value {
    let number = project_number(project);
    json!({
        "name": format!("projects/{number}/services/{service}"),
        "parent": format!("projects/{number}"),
        "config": {"name": service},
        "state": if enabled { "ENABLED" } else { "DISABLED" },
    })
}

/// Serves `v1/projects/{p}/services/{s}[:enable|:disable]` and `v1/operations/{id}`.
pub(crate) fn route(shared: &Shared, req: &Req<'_>) -> Option<Result<Value, ApiError>> {
    let m = req.method;
    match req.segs.as_slice() {
        ["v1", "projects" | "folders" | "organizations", p, "services", s] => {
            if let Some(svc) = s.strip_suffix(":enable").filter(|_| m == Method::POST) {
                Some(Ok(toggle(shared, p, svc, true)))
            } else if let Some(svc) = s.strip_suffix(":disable").filter(|_| m == Method::POST) {
                Some(Ok(toggle(shared, p, svc, false)))
            } else if m == Method::GET && !s.contains(':') {
                let on = shared.lock().usage.is_enabled(p, s);
                Some(Ok(service_json(p, s, on)))
            } else {
                None
            }
        }
        // OperationsService.Get: every operation the stand-in hands out is done at once.
        ["v1", "operations", id] if m == Method::GET => Some(Ok(json!({
            "name": format!("operations/{id}"),
            "done": true,
            "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
        }))),
        _ => None,
    }
}

/// Enables or disables a service; the operation is done at once (Service Usage's own operations
/// are short, and gcloud polls them only when not done).
fn toggle(shared: &Shared, project: &str, service: &str, on: bool) -> Value {
    let mut st = shared.lock();
    let k = (project.to_string(), service.to_string());
    if on {
        st.usage.disabled.remove(&k);
        st.usage.enabled.insert(k);
    } else {
        st.usage.enabled.remove(&k);
        st.usage.disabled.insert(k);
    }
    let id = st.op_id("acf");
    json!({
        "name": format!("operations/{id}"),
        "done": true,
        // EnableServiceResponse / DisableServiceResponse: `service`.
        "response": {
            "@type": if on {
                "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse"
            } else {
                "type.googleapis.com/google.api.serviceusage.v1.DisableServiceResponse"
            },
            "service": service_json(project, service, on),
        },
    })
}
