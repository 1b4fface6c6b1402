//! GKE Hub (fleet), as gcloud 528's GA commands call it: memberships and features on `v1`,
//! membership features on `v2` (`googlecloudsdk/api_lib/container/fleet/util.py`: `VERSION_MAP`
//! GA → `v1`, `V2_VERSION_MAP` GA → `v2`).
//!
//! Paths from `googlecloudsdk/generated_clients/apis/gkehub/v1/gkehub_v1_client.py`
//! (`ProjectsLocationsMembershipsService` Create/Get/List/Delete,
//! `ProjectsLocationsFeaturesService` Create/Get/Patch/Delete,
//! `ProjectsLocationsOperationsService` Get/List) and `.../gkehub/v2/gkehub_v2_client.py`
//! (`ProjectsLocationsMembershipsFeaturesService` Get/Patch/Delete, operations Get); messages
//! from `gkehub_v1_messages.py` (`Membership`, `MembershipState`, `Feature`,
//! `FeatureResourceState`, `Operation`) and `gkehub_v2_messages.py` (`MembershipFeature`).
//!
//! Which commands use what (gcloud 528):
//! - `memberships register --gke-cluster` creates a membership and waits on its operation
//!   (`surface/container/fleet/memberships/register.py`, `_RegisterGKEWithoutConnectAgent`;
//!   `googlecloudsdk/command_lib/container/fleet/api_util.py`, `CreateMembership`, with
//!   `waiter.CloudOperationPoller`, which reads the result back by the `name` in the
//!   operation's `response`).
//! - `mesh enable` enables `mesh.googleapis.com` and creates the v1 `servicemesh` feature
//!   (`googlecloudsdk/command_lib/container/fleet/features/base.py`, `EnableCommandMixin`); 409
//!   ALREADY_EXISTS makes gcloud say the feature is already enabled.
//! - `mesh update --management automatic` patches the v2 membership feature with
//!   `allowMissing=true` (`surface/container/fleet/mesh/update.py`, `_RunUpdateV2`;
//!   `googlecloudsdk/command_lib/container/fleet/membershipfeatures/base.py`).
//! - `mesh describe` gets the v1 feature (`features/base.py`, `DescribeCommand`): the service
//!   folds every membership's v2 spec into `membershipSpecs` and reports `membershipStates`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{now_rfc3339, project_number, ApiError, Inner, MeshState, Req, Shared};
use crate::fleet::StandInState;

/// The fleet's resources.
#[derive(Default)]
pub(crate) struct Store {
    /// `projects/P/locations/L/memberships/M` → the membership.
    memberships: BTreeMap<String, Membership>,
    /// `projects/P/locations/global/features/F` → the v1 feature.
    features: BTreeMap<String, Feature>,
    /// `projects/P/locations/L/memberships/M/features/F` → the v2 membership feature's `spec`.
    membership_features: BTreeMap<String, Value>,
    /// Operation name → the operation.
    ops: BTreeMap<String, Op>,
    /// Membership short name → the mesh state set from outside.
    mesh_states: BTreeMap<String, MeshState>,
}

struct Membership {
    /// The `Membership` message as created (gcloud's `endpoint`, `authority`, ...).
    body: Value,
    created: Instant,
}

struct Feature {
    create_time: String,
    /// `Feature.spec` (project-wide; empty for the mesh).
    spec: Value,
    /// `membershipSpecs` set through v1 patches, keyed as sent.
    membership_specs: serde_json::Map<String, Value>,
}

/// A `google.longrunning.Operation` (gkehub_v1_messages.py `Operation`: `name`, `done`,
/// `metadata`, `response`, `error`): done once the stand-in's timing has passed.
struct Op {
    started: Instant,
    target: String,
    verb: &'static str,
    /// The operation's `response` once done.
    response: Value,
}

impl Op {
    fn to_json(&self, name: &str, shared: &Shared) -> Value {
        let done = shared.timing.total() <= self.started.elapsed();
        // OperationMetadata of gkehub_v1_messages.py.
        let mut v = json!({
            "name": name,
            "done": done,
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.gkehub.v1.OperationMetadata",
                "target": self.target,
                "verb": self.verb,
                "apiVersion": "v1",
            },
        });
        if done {
            v["response"] = self.response.clone();
        }
        v
    }
}

/// `projects/{number}/locations/{l}/memberships/{m}`: how the fleet keys memberships in a
/// feature's `membershipSpecs` / `membershipStates` (Google's "Check control plane
/// implementation" page shows `projects/746296320118/locations/us-central1/memberships/...`).
fn membership_key(project: &str, location: &str, name: &str) -> String {
    format!(
        "projects/{}/locations/{location}/memberships/{name}",
        project_number(project)
    )
}

impl Store {
    /// Sets the mesh state of a membership by short name; None if no such membership.
    pub fn set_mesh_state(&mut self, membership: &str, state: MeshState) -> Option<()> {
        self.memberships
            .keys()
            .any(|k| k.rsplit('/').next() == Some(membership))
            .then(|| {
                self.mesh_states.insert(membership.into(), state);
            })
    }

    /// Memberships whose mesh spec asks for automatic management, each with the name of the GKE
    /// cluster it registers (the last part of `endpoint.gkeCluster.resourceLink`,
    /// `//container.googleapis.com/projects/P/locations/L/clusters/C`): what Google's controller
    /// installs a managed control plane for.
    pub fn managed(&self) -> Vec<(String, String)> {
        self.memberships
            .iter()
            .filter_map(|(full, m)| {
                let project = full.split('/').nth(1)?;
                self.management(project, full)?;
                let link = m.body["endpoint"]["gkeCluster"]["resourceLink"].as_str()?;
                let short = full.rsplit('/').next()?;
                Some((short.to_string(), link.rsplit('/').next()?.to_string()))
            })
            .collect()
    }

    /// Full names of the memberships.
    pub fn membership_names(&self) -> Vec<String> {
        self.memberships.keys().cloned().collect()
    }

    /// The management a membership's mesh spec asks for (v2 spec first, then v1 patches).
    fn management(&self, project: &str, full: &str) -> Option<String> {
        let v2 = self
            .membership_features
            .get(&format!("{full}/features/servicemesh"))
            .and_then(|s| s["servicemesh"]["management"].as_str().map(String::from));
        let parts: Vec<&str> = full.split('/').collect();
        let v1 = || {
            let f = self.features.get(&format!(
                "projects/{project}/locations/global/features/servicemesh"
            ))?;
            let (l, m) = (parts.get(3)?, parts.get(5)?);
            f.membership_specs
                .iter()
                .find(|(k, _)| {
                    k.ends_with(&format!("/locations/{l}/memberships/{m}")) || k.as_str() == *m
                })
                .and_then(|(_, s)| s["mesh"]["management"].as_str().map(String::from))
        };
        v2.or_else(v1)
            .filter(|m| m != "MANAGEMENT_UNSPECIFIED" && m != "MANAGEMENT_MANUAL")
    }

    fn op(
        &mut self,
        project: &str,
        location: &str,
        id: String,
        target: String,
        verb: &'static str,
        response: Value,
    ) -> String {
        let name = format!("projects/{project}/locations/{location}/operations/{id}");
        self.ops.insert(
            name.clone(),
            Op {
                started: Instant::now(),
                target,
                verb,
                response,
            },
        );
        name
    }
}

/// `CreateMembership`'s body: the `Membership` message (gkehub_v1_messages.py).
#[derive(Deserialize)]
struct MembershipBody {
    #[serde(default)]
    endpoint: Option<Value>,
    #[serde(default)]
    authority: Option<Value>,
    #[serde(rename = "externalId", default)]
    external_id: Option<String>,
}

/// Serves the fleet's v1 and v2 paths.
pub(crate) fn route(shared: &Arc<Shared>, req: &Req<'_>) -> Option<Result<Value, ApiError>> {
    let m = req.method;
    // The beta and alpha versions have the same paths and, for what the stand-in keeps, the
    // same fields; gcloud 528's GA `mesh update` lists memberships through `v1beta`
    // (`googlecloudsdk/command_lib/container/fleet/features/base.py`, `ParseMembershipsPlural`
    // → `api_util.ListMembershipsFull`).
    let mut segs = req.segs.clone();
    if let Some(v) = segs.first_mut() {
        *v = match *v {
            "v1" | "v1beta" | "v1alpha" | "v1beta1" => "v1",
            "v2" | "v2beta" | "v2alpha" => "v2",
            other => other,
        };
    }
    match segs.as_slice() {
        // v1 memberships: List (`-` = every location) / Create (?membershipId=).
        ["v1", "projects", p, "locations", l, "memberships"] if m == Method::GET => {
            Some(Ok(list_memberships(shared, p, l)))
        }
        ["v1", "projects", p, "locations", l, "memberships"] if m == Method::POST => {
            Some(create_membership(shared, req, p, l))
        }
        ["v1", "projects", p, "locations", l, "memberships", name] if m == Method::GET => {
            Some(get_membership(shared, p, l, name))
        }
        ["v1", "projects", p, "locations", l, "memberships", name] if m == Method::DELETE => {
            Some(delete_membership(shared, p, l, name))
        }
        // v1 features: Create (?featureId=) / Get / Patch / Delete.
        ["v1", "projects", p, "locations", l, "features"] if m == Method::POST => {
            Some(create_feature(shared, req, p, l))
        }
        ["v1", "projects", p, "locations", l, "features", f] if m == Method::GET => {
            Some(get_feature(shared, p, l, f))
        }
        ["v1", "projects", p, "locations", l, "features", f] if m == Method::PATCH => {
            Some(patch_feature(shared, req, p, l, f))
        }
        ["v1", "projects", p, "locations", l, "features", f] if m == Method::DELETE => {
            Some(delete_feature(shared, p, l, f))
        }
        // v2 membership features: Get / Patch (allowMissing) / Delete.
        ["v2", "projects", p, "locations", l, "memberships", mb, "features", f] => {
            membership_feature(shared, req, p, l, mb, f)
        }
        // Operations, v1 and v2 alike.
        ["v1" | "v2", "projects", p, "locations", l, "operations", id] if m == Method::GET => {
            Some(get_operation(shared, p, l, id))
        }
        ["v1" | "v2", "projects", p, "locations", l, "operations"] if m == Method::GET => {
            Some(Ok(list_operations(shared, p, l)))
        }
        _ => None,
    }
}

/// Memberships Get.
fn get_membership(shared: &Arc<Shared>, p: &str, l: &str, name: &str) -> Result<Value, ApiError> {
    let full = format!("projects/{p}/locations/{l}/memberships/{name}");
    let st = shared.lock();
    st.hub
        .memberships
        .get(&full)
        .map(|mb| membership_json(&full, mb, shared))
        .ok_or_else(|| membership_not_found(&full))
}

/// Memberships Delete: the membership, its mesh state and its membership features.
fn delete_membership(
    shared: &Arc<Shared>,
    p: &str,
    l: &str,
    name: &str,
) -> Result<Value, ApiError> {
    let full = format!("projects/{p}/locations/{l}/memberships/{name}");
    let mut st = shared.lock();
    if st.hub.memberships.remove(&full).is_none() {
        return Err(membership_not_found(&full));
    }
    st.hub.mesh_states.remove(name);
    let prefix = format!("{full}/features/");
    st.hub
        .membership_features
        .retain(|k, _| !k.starts_with(&prefix));
    Ok(deleted(&mut st, shared, p, l, full))
}

/// The done operation of a Delete: its response is google.protobuf.Empty.
fn deleted(st: &mut Inner, shared: &Arc<Shared>, p: &str, l: &str, full: String) -> Value {
    let id = st.op_id("operation");
    let op = st.hub.op(
        p,
        l,
        id,
        full,
        "delete",
        json!({"@type": "type.googleapis.com/google.protobuf.Empty"}),
    );
    st.hub.ops[&op].to_json(&op, shared)
}

/// Features Get.
fn get_feature(shared: &Arc<Shared>, p: &str, l: &str, f: &str) -> Result<Value, ApiError> {
    let full = format!("projects/{p}/locations/{l}/features/{f}");
    let st = shared.lock();
    match st.hub.features.get(&full) {
        Some(feat) => Ok(feature_json(&st.hub, p, &full, feat)),
        None => Err(feature_not_found(&full)),
    }
}

/// Features Delete.
fn delete_feature(shared: &Arc<Shared>, p: &str, l: &str, f: &str) -> Result<Value, ApiError> {
    let full = format!("projects/{p}/locations/{l}/features/{f}");
    let mut st = shared.lock();
    if st.hub.features.remove(&full).is_none() {
        return Err(feature_not_found(&full));
    }
    Ok(deleted(&mut st, shared, p, l, full))
}

/// v2 membership features: Get / Patch (allowMissing) / Delete; another method is not served.
fn membership_feature(
    shared: &Arc<Shared>,
    req: &Req<'_>,
    p: &str,
    l: &str,
    mb: &str,
    f: &str,
) -> Option<Result<Value, ApiError>> {
    let m = req.method;
    let full = format!("projects/{p}/locations/{l}/memberships/{mb}/features/{f}");
    if m == Method::GET {
        let st = shared.lock();
        Some(
            st.hub
                .membership_features
                .get(&full)
                .map(|spec| membership_feature_json(&st.hub, p, &full, spec))
                .ok_or_else(|| ApiError::not_found(format!("Resource '{full}' was not found"))),
        )
    } else if m == Method::PATCH {
        Some(patch_membership_feature(shared, req, p, l, mb, &full))
    } else if m == Method::DELETE {
        let mut st = shared.lock();
        if st.hub.membership_features.remove(&full).is_none() {
            return Some(Err(ApiError::not_found(format!(
                "Resource '{full}' was not found"
            ))));
        }
        let id = st.op_id("operation");
        let op = st.hub.op(
            p,
            l,
            id,
            full,
            "delete",
            json!({"@type": "type.googleapis.com/google.protobuf.Empty"}),
        );
        Some(Ok(st.hub.ops[&op].to_json(&op, shared)))
    } else {
        None
    }
}

/// Operations Get, v1 and v2 alike.
fn get_operation(shared: &Arc<Shared>, p: &str, l: &str, id: &str) -> Result<Value, ApiError> {
    let full = format!("projects/{p}/locations/{l}/operations/{id}");
    let st = shared.lock();
    st.hub
        .ops
        .get(&full)
        .map(|o| o.to_json(&full, shared))
        .ok_or_else(|| ApiError::not_found(format!("Resource '{full}' was not found")))
}

/// Operations List (`-` = every location), v1 and v2 alike.
fn list_operations(shared: &Arc<Shared>, p: &str, l: &str) -> Value {
    let prefix = format!("projects/{p}/locations/");
    let st = shared.lock();
    let ops: Vec<Value> = st
        .hub
        .ops
        .iter()
        .filter(|(k, _)| {
            k.starts_with(&prefix) && (l == "-" || k.starts_with(&format!("{prefix}{l}/")))
        })
        .map(|(k, o)| o.to_json(k, shared))
        .collect();
    json!({ "operations": ops })
}

/// The fleet's 404 for a missing resource, as gkehub words it (no final period):
/// `NOT_FOUND: Resource 'projects/P/locations/global/memberships/NAME' was not found`
/// (gcloud's `memberships describe`, quoted in GoogleContainerTools/config-sync#488). gcloud
/// 528 then appends which credential it used.
fn membership_not_found(full: &str) -> ApiError {
    ApiError::not_found(format!("Resource '{full}' was not found"))
}

fn feature_not_found(full: &str) -> ApiError {
    ApiError::not_found(format!("Resource '{full}' was not found"))
}

/// `link` re-rooted at `base` from its `projects/` segment on.
fn canonical(link: &str, base: &str) -> String {
    match link.find("projects/") {
        Some(i) => format!("{base}{}", &link[i..]),
        None => link.to_string(),
    }
}

/// The `Membership` message as the API returns it: what gcloud sent, plus `name`, `state`
/// (`MembershipState.code`: CREATING until the operation is done, then READY), `uniqueId`,
/// `createTime`, `updateTime`.
fn membership_json(full: &str, mb: &Membership, shared: &Shared) -> Value {
    let mut v = mb.body.clone();
    v["name"] = json!(full);
    let ready = shared.timing.total() <= mb.created.elapsed();
    v["state"] = json!({"code": if ready { "READY" } else { "CREATING" }});
    v
}

fn list_memberships(shared: &Shared, project: &str, location: &str) -> Value {
    let st = shared.lock();
    let prefix = format!("projects/{project}/locations/");
    let resources: Vec<Value> = st
        .hub
        .memberships
        .iter()
        .filter(|(k, _)| {
            k.starts_with(&prefix)
                && (location == "-" || k.starts_with(&format!("{prefix}{location}/")))
        })
        .map(|(k, mb)| membership_json(k, mb, shared))
        .collect();
    // ListMembershipsResponse: resources, nextPageToken, unreachable.
    json!({ "resources": resources })
}

fn create_membership(
    shared: &Arc<Shared>,
    req: &Req<'_>,
    project: &str,
    location: &str,
) -> Result<Value, ApiError> {
    let id = req.required_query("membershipId", "membership_id must be set.")?;
    let body: MembershipBody = req.json()?;
    let full = format!("projects/{project}/locations/{location}/memberships/{id}");
    let mut st = shared.lock();
    if st.hub.memberships.contains_key(&full) {
        return Err(ApiError::already_exists(format!(
            "Resource '{full}' already exists"
        )));
    }
    let now = now_rfc3339();
    let mut v = json!({
        "createTime": now,
        "updateTime": now,
        "uniqueId": format!("{:032x}", st.next_id as u128 + 0x5eed_0000_0000),
    });
    if let Some(mut e) = body.endpoint {
        // gcloud builds the GKE resource link from the container API's endpoint
        // (`googlecloudsdk/command_lib/container/fleet/gke_util.py`,
        // `GetGKEClusterResoureLinkAndURI`), so behind the stand-in it names the stand-in's
        // host; the fleet stores the canonical `//container.googleapis.com/projects/...`.
        if let Some(link) = e["gkeCluster"]["resourceLink"].as_str() {
            e["gkeCluster"]["resourceLink"] = json!(canonical(link, "//container.googleapis.com/"));
        }
        v["endpoint"] = e;
    }
    if let Some(a) = body.authority {
        let mut a = a;
        // Authority.workloadIdentityPool and identityProvider are output-only: the fleet's pool
        // is PROJECT.svc.id.goog (Google's fleet Workload Identity documentation).
        if let Some(issuer) = a["issuer"].as_str() {
            a["issuer"] = json!(canonical(issuer, "https://container.googleapis.com/v1/"));
            a["workloadIdentityPool"] = json!(format!("{project}.svc.id.goog"));
            a["identityProvider"] = a["issuer"].clone();
        }
        v["authority"] = a;
    }
    if let Some(x) = body.external_id {
        v["externalId"] = json!(x);
    }
    st.hub.memberships.insert(
        full.clone(),
        Membership {
            body: v.clone(),
            created: Instant::now(),
        },
    );
    let mut response = v;
    response["name"] = json!(full);
    response["state"] = json!({"code": "READY"});
    response["@type"] = json!("type.googleapis.com/google.cloud.gkehub.v1.Membership");
    let op_id = st.op_id("operation");
    let op = st
        .hub
        .op(project, location, op_id, full, "create", response);
    Ok(st.hub.ops[&op].to_json(&op, shared))
}

/// The v1 `Feature` as `mesh describe` prints it: `resourceState`, `spec`, and per membership
/// `membershipSpecs.<key>.mesh.management` and `membershipStates.<key>` (the state set from
/// outside, else PROVISIONING once automatic management is asked for, else DISABLED).
fn feature_json(hub: &Store, project: &str, full: &str, f: &Feature) -> Value {
    let mut specs = f.membership_specs.clone();
    let mut states = serde_json::Map::new();
    if full.ends_with("/features/servicemesh") {
        for name in hub.memberships.keys() {
            let parts: Vec<&str> = name.split('/').collect();
            let (Some(l), Some(m)) = (parts.get(3), parts.get(5)) else {
                continue;
            };
            if parts.get(1) != Some(&project) {
                continue;
            }
            let key = membership_key(project, l, m);
            let management = hub.management(project, name);
            let state = match (&management, hub.mesh_states.get(*m)) {
                (_, Some(s)) => s.clone(),
                (Some(_), None) => StandInState::Provisioning,
                (None, None) => StandInState::Disabled,
            };
            if let Some(mg) = management {
                specs.insert(key.clone(), json!({"mesh": {"management": mg}}));
            }
            states.insert(key, crate::fleet::stand_in_membership_state(&state));
        }
    }
    json!({
        "name": full,
        "createTime": f.create_time,
        "updateTime": f.create_time,
        "resourceState": {"state": "ACTIVE"},
        "spec": f.spec,
        "membershipSpecs": specs,
        "membershipStates": states,
        "state": {"state": {"code": "OK", "updateTime": f.create_time}},
    })
}

/// `CreateFeature`'s body: the `Feature` message.
#[derive(Deserialize, Default)]
struct FeatureBody {
    #[serde(default)]
    spec: Option<Value>,
    #[serde(rename = "membershipSpecs", default)]
    membership_specs: Option<serde_json::Map<String, Value>>,
}

fn create_feature(
    shared: &Arc<Shared>,
    req: &Req<'_>,
    project: &str,
    location: &str,
) -> Result<Value, ApiError> {
    let id = req.required_query("featureId", "feature_id must be set.")?;
    let body: FeatureBody = req.json()?;
    let full = format!("projects/{project}/locations/{location}/features/{id}");
    let mut st = shared.lock();
    if st.hub.features.contains_key(&full) {
        // gcloud turns this status into "... Feature for project [P] is already enabled"
        // (features/base.py, EnableCommandMixin).
        return Err(ApiError::already_exists(format!(
            "Resource '{full}' already exists"
        )));
    }
    let f = Feature {
        create_time: now_rfc3339(),
        spec: body.spec.unwrap_or_else(|| json!({})),
        membership_specs: body.membership_specs.unwrap_or_default(),
    };
    let mut response = feature_json(&st.hub, project, &full, &f);
    response["@type"] = json!("type.googleapis.com/google.cloud.gkehub.v1.Feature");
    st.hub.features.insert(full.clone(), f);
    let op_id = st.op_id("operation");
    let op = st
        .hub
        .op(project, location, op_id, full, "create", response);
    Ok(st.hub.ops[&op].to_json(&op, shared))
}

fn patch_feature(
    shared: &Arc<Shared>,
    req: &Req<'_>,
    project: &str,
    location: &str,
    id: &str,
) -> Result<Value, ApiError> {
    let full = format!("projects/{project}/locations/{location}/features/{id}");
    let body: FeatureBody = req.json()?;
    let mut st = shared.lock();
    let Some(f) = st.hub.features.get_mut(&full) else {
        return Err(feature_not_found(&full));
    };
    if let Some(s) = body.spec {
        f.spec = s;
    }
    for (k, v) in body.membership_specs.unwrap_or_default() {
        f.membership_specs.insert(k, v);
    }
    let f = &st.hub.features[&full];
    let mut response = feature_json(&st.hub, project, &full, f);
    response["@type"] = json!("type.googleapis.com/google.cloud.gkehub.v1.Feature");
    let op_id = st.op_id("operation");
    let op = st
        .hub
        .op(project, location, op_id, full, "update", response);
    Ok(st.hub.ops[&op].to_json(&op, shared))
}

/// v2 `MembershipFeature` (gkehub_v2_messages.py): `name`, `spec`, `state`, `lifecycleState`.
fn membership_feature_json(hub: &Store, project: &str, full: &str, spec: &Value) -> Value {
    let membership = full.split('/').nth(5).unwrap_or_default();
    let membership_full = full.split("/features/").next().unwrap_or_default();
    let state = match (
        hub.management(project, membership_full),
        hub.mesh_states.get(membership),
    ) {
        (_, Some(s)) => s.clone(),
        (Some(_), None) => StandInState::Provisioning,
        (None, None) => StandInState::Disabled,
    };
    json!({
        "name": full,
        "spec": spec,
        "state": crate::fleet::stand_in_membership_state(&state),
        "lifecycleState": {"state": "ACTIVE"},
    })
}

/// `PATCH v2/{name}?updateMask=spec&allowMissing=true`: body `MembershipFeature`.
#[derive(Deserialize)]
struct MembershipFeatureBody {
    #[serde(default)]
    spec: Option<Value>,
}

fn patch_membership_feature(
    shared: &Arc<Shared>,
    req: &Req<'_>,
    project: &str,
    location: &str,
    membership: &str,
    full: &str,
) -> Result<Value, ApiError> {
    let body: MembershipFeatureBody = req.json()?;
    let membership_full =
        format!("projects/{project}/locations/{location}/memberships/{membership}");
    let mut st = shared.lock();
    if !st.hub.memberships.contains_key(&membership_full) {
        return Err(membership_not_found(&membership_full));
    }
    let allow_missing = req
        .query
        .get("allowMissing")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !st.hub.membership_features.contains_key(full) && !allow_missing {
        return Err(ApiError::not_found(format!(
            "Resource '{full}' was not found"
        )));
    }
    let spec = body.spec.unwrap_or_else(|| json!({}));
    st.hub
        .membership_features
        .insert(full.to_string(), spec.clone());
    let mut response = membership_feature_json(&st.hub, project, full, &spec);
    response["@type"] = json!("type.googleapis.com/google.cloud.gkehub.v2.MembershipFeature");
    let op_id = st.op_id("operation");
    let op = st.hub.op(
        project,
        location,
        op_id,
        full.to_string(),
        "update",
        response,
    );
    let mut v = st.hub.ops[&op].to_json(&op, shared);
    v["metadata"]["@type"] = json!("type.googleapis.com/google.cloud.gkehub.v2.OperationMetadata");
    v["metadata"]["apiVersion"] = json!("v2");
    Ok(v)
}
