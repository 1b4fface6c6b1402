//! GKE, `container/v1`: clusters create / get / list / delete and their operations.
//!
//! Paths and messages from `googlecloudsdk/generated_clients/apis/container/v1/container_v1_client.py`
//! (`ProjectsLocationsClustersService`, `ProjectsLocationsOperationsService`) and
//! `container_v1_messages.py` (`Cluster`, `CreateClusterRequest`, `Operation`,
//! `ListClustersResponse`, `ListOperationsResponse`). gcloud 528 parses `--zone` into the legacy
//! `container.projects.zones.clusters` collection but calls the `projects.locations` methods
//! (`googlecloudsdk/api_lib/container/api_adapter.py`: `ParseCluster`, `CreateCluster`,
//! `DeleteCluster`, `ListClusters`, `GetOperation`), so only `v1/projects/P/locations/L/...` is
//! served.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{now_rfc3339, phase, ApiError, ClusterId, Req, Shared};

/// `https://container.googleapis.com/v1/`: the base of `selfLink` and `targetLink`.
const BASE: &str = "https://container.googleapis.com/v1/";

/// GKE's resources.
#[derive(Default)]
pub(crate) struct Store {
    /// `projects/P/locations/L/clusters/C` → the `Cluster` message as the API returns it.
    pub clusters: BTreeMap<String, Value>,
    /// `projects/P/locations/L/operations/ID` → the operation.
    ops: BTreeMap<String, Op>,
}

/// A cluster operation (`container_v1_messages.Operation`).
struct Op {
    project: String,
    location: String,
    id: String,
    /// `operationType`: CREATE_CLUSTER or DELETE_CLUSTER.
    kind: &'static str,
    /// `targetLink`'s path: `projects/P/zones/Z/clusters/C`.
    target: String,
    started: Instant,
    start_time: String,
    end_time: Option<String>,
    /// Set when the provider failed: `statusMessage` and `error`.
    failure: Option<String>,
    finished: bool,
}

impl Op {
    fn to_json(&self, timing: &super::Timing) -> Value {
        let status = phase(timing, self.started, self.finished);
        let mut v = json!({
            "name": self.id,
            "zone": self.location,
            "location": self.location,
            "operationType": self.kind,
            "status": status,
            "selfLink": format!("{BASE}projects/{}/zones/{}/operations/{}", project_number_or_id(&self.project), self.location, self.id),
            "targetLink": format!("{BASE}{}", self.target),
            "startTime": self.start_time,
        });
        if let Some(t) = &self.end_time {
            v["endTime"] = json!(t);
        }
        if let Some(m) = &self.failure {
            v["statusMessage"] = json!(m);
            // `Status` message of container_v1_messages: code 13 is INTERNAL.
            v["error"] = json!({"code": 13, "message": m});
        }
        v
    }
}

/// Real `selfLink`s use the project number; keep the id readable for tests (`targetLink`,
/// which the backend filters on, keeps the id as the request used it).
fn project_number_or_id(project: &str) -> String {
    super::project_number(project)
}

/// `zones` for a zone (`us-central1-a`), `locations` for a region (`us-central1`): real GKE names
/// the resource that way in its 404 texts (`Not found: projects/P/zones/us-central1-b/clusters/C.`,
/// kubernetes-sigs/gcp-filestore-csi-driver#109; `Not found:
/// projects/P/locations/us-central1/clusters/C.`, sourcegraph/handbook#6308).
fn legacy_path(project: &str, location: &str, cluster: &str) -> String {
    let kind = if location.matches('-').count() >= 2 {
        "zones"
    } else {
        "locations"
    };
    format!("projects/{project}/{kind}/{location}/clusters/{cluster}")
}

/// GKE's 404 for a cluster that does not exist, worded as real GKE words it (see
/// [`legacy_path`]).
fn cluster_not_found(project: &str, location: &str, cluster: &str) -> ApiError {
    ApiError::not_found(format!(
        "Not found: {}.",
        legacy_path(project, location, cluster)
    ))
}

/// `CreateClusterRequest` (container_v1_messages.py): `cluster` and `parent`; the cluster is
/// kept as gcloud sent it, so every field it set (`resourceLabels`, `nodePools`,
/// `workloadIdentityConfig`, ...) reads back.
#[derive(Deserialize)]
struct CreateClusterRequest {
    cluster: Value,
}

/// Serves `v1/projects/{p}/locations/{l}/clusters[/{c}]` and `.../operations[/{id}]`.
pub(crate) fn route(shared: &Arc<Shared>, req: &Req<'_>) -> Option<Result<Value, ApiError>> {
    let m = req.method;
    match req.segs.as_slice() {
        // ProjectsLocationsClustersService.List: GET v1/{+parent}/clusters (`-` = all locations).
        ["v1", "projects", p, "locations", l, "clusters"] if m == Method::GET => {
            Some(Ok(list_clusters(shared, p, l)))
        }
        // ProjectsLocationsClustersService.Create: POST v1/{+parent}/clusters.
        ["v1", "projects", p, "locations", l, "clusters"] if m == Method::POST => {
            Some(create_cluster(shared, req, p, l))
        }
        // ProjectsLocationsClustersService.Get: GET v1/{+name}.
        ["v1", "projects", p, "locations", l, "clusters", c] if m == Method::GET => {
            let key = format!("projects/{p}/locations/{l}/clusters/{c}");
            Some(
                shared
                    .lock()
                    .container
                    .clusters
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| cluster_not_found(p, l, c)),
            )
        }
        // ProjectsLocationsClustersService.Delete: DELETE v1/{+name}.
        ["v1", "projects", p, "locations", l, "clusters", c] if m == Method::DELETE => {
            Some(delete_cluster(shared, p, l, c))
        }
        // ProjectsLocationsOperationsService.List: GET v1/{+parent}/operations.
        ["v1", "projects", p, "locations", l, "operations"] if m == Method::GET => {
            let st = shared.lock();
            let ops: Vec<Value> = st
                .container
                .ops
                .values()
                .filter(|o| o.project == *p && (*l == "-" || o.location == *l))
                .map(|o| o.to_json(&shared.timing))
                .collect();
            // ListOperationsResponse: operations, missingZones.
            Some(Ok(json!({ "operations": ops })))
        }
        // ProjectsLocationsOperationsService.Get: GET v1/{+name}.
        ["v1", "projects", p, "locations", l, "operations", id] if m == Method::GET => {
            let key = format!("projects/{p}/locations/{l}/operations/{id}");
            let st = shared.lock();
            Some(
                st.container
                    .ops
                    .get(&key)
                    .map(|o| o.to_json(&shared.timing))
                    .ok_or_else(|| {
                        ApiError::not_found(format!(
                            "Not found: projects/{p}/zones/{l}/operations/{id}."
                        ))
                    }),
            )
        }
        _ => None,
    }
}

fn list_clusters(shared: &Shared, project: &str, location: &str) -> Value {
    let st = shared.lock();
    let clusters: Vec<Value> = st
        .container
        .clusters
        .iter()
        .filter(|(k, v)| {
            k.starts_with(&format!("projects/{project}/locations/"))
                && (location == "-" || v["location"] == location)
        })
        .map(|(_, v)| v.clone())
        .collect();
    // ListClustersResponse: clusters, missingZones.
    json!({ "clusters": clusters })
}

fn labels_of(cluster: &Value) -> BTreeMap<String, String> {
    cluster["resourceLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn create_cluster(
    shared: &Arc<Shared>,
    req: &Req<'_>,
    project: &str,
    location: &str,
) -> Result<Value, ApiError> {
    let body: CreateClusterRequest = req.json()?;
    let mut cluster = body.cluster;
    let name = cluster["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid_argument("Cluster.name must be set."))?
        .to_string();
    if !cluster.is_object() {
        return Err(ApiError::invalid_argument("Cluster must be an object."));
    }
    let key = format!("projects/{project}/locations/{location}/clusters/{name}");
    let now = now_rfc3339();
    let mut st = shared.lock();
    if st.container.clusters.contains_key(&key) {
        // Real GKE's text for a name in use (409): "Already exists: projects/P/zones/Z/clusters/C."
        return Err(ApiError::already_exists(format!(
            "Already exists: {}.",
            legacy_path(project, location, &name)
        )));
    }
    let obj = cluster
        .as_object_mut()
        .ok_or_else(|| ApiError::invalid_argument("Cluster must be an object."))?;
    fill_output_fields(obj, project, location, &name, &now);
    let id = ClusterId {
        project: project.into(),
        location: location.into(),
        name: name.clone(),
        labels: labels_of(&cluster),
    };
    st.container.clusters.insert(key.clone(), cluster);
    let op_id = st.op_id("operation");
    let op_key = format!("projects/{project}/locations/{location}/operations/{op_id}");
    let op = Op {
        project: project.into(),
        location: location.into(),
        id: op_id,
        kind: "CREATE_CLUSTER",
        target: legacy_path(project, location, &name),
        started: Instant::now(),
        start_time: now,
        end_time: None,
        failure: None,
        finished: false,
    };
    let answer = op.to_json(&shared.timing);
    st.container.ops.insert(op_key.clone(), op);
    drop(st);

    provision(shared.clone(), id, key, op_key);
    Ok(answer)
}

/// Fills in the output-only fields of a `Cluster` being created (container_v1_messages.py):
/// PROVISIONING, its location, versions, self link, network defaults and node count.
fn fill_output_fields(
    obj: &mut serde_json::Map<String, Value>,
    project: &str,
    location: &str,
    name: &str,
    now: &str,
) {
    let version = "1.33.5-gke.1000000";
    for (k, v) in [
        ("status", json!("PROVISIONING")),
        ("location", json!(location)),
        ("zone", json!(location)),
        ("createTime", json!(now)),
        ("currentMasterVersion", json!(version)),
        ("currentNodeVersion", json!(version)),
        ("initialClusterVersion", json!(version)),
        (
            "selfLink",
            json!(format!("{BASE}{}", legacy_path(project, location, name))),
        ),
    ] {
        obj.insert(k.into(), v);
    }
    obj.entry("network").or_insert(json!("default"));
    obj.entry("subnetwork").or_insert(json!("default"));
    let nodes: u64 = obj
        .get("nodePools")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| p["initialNodeCount"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    obj.insert("currentNodeCount".into(), json!(nodes));
    if let Some(pools) = obj.get_mut("nodePools").and_then(Value::as_array_mut) {
        for p in pools {
            p["status"] = json!("PROVISIONING");
            p["version"] = json!(version);
        }
    }
}

/// In the background: has the provider create cluster `id` (taking at least the stand-in's
/// provisioning time), then marks the cluster (`key`) RUNNING with its endpoint, or ERROR, and
/// its operation (`op_key`) done.
fn provision(shared: Arc<Shared>, id: ClusterId, key: String, op_key: String) {
    tokio::spawn(async move {
        let (made, ()) = tokio::join!(
            shared.provider.create(&id),
            tokio::time::sleep(shared.timing.total())
        );
        let mut st = shared.lock();
        let failure = match made {
            Ok(ep) => {
                if let Some(c) = st.container.clusters.get_mut(&key) {
                    c["status"] = json!("RUNNING");
                    c["endpoint"] = json!(ep.endpoint);
                    // MasterAuth.clusterCaCertificate: base64-encoded public certificate.
                    c["masterAuth"] = json!({
                        "clusterCaCertificate": super::base64(ep.ca_pem.as_bytes())
                    });
                    if let Some(pools) = c["nodePools"].as_array_mut() {
                        for p in pools {
                            p["status"] = json!("RUNNING");
                        }
                    }
                }
                None
            }
            Err(e) => {
                if let Some(c) = st.container.clusters.get_mut(&key) {
                    c["status"] = json!("ERROR");
                    c["statusMessage"] = json!(e);
                }
                Some(e)
            }
        };
        if let Some(op) = st.container.ops.get_mut(&op_key) {
            op.failure = failure;
            op.finished = true;
            op.end_time = Some(now_rfc3339());
        }
    });
}

fn delete_cluster(
    shared: &Arc<Shared>,
    project: &str,
    location: &str,
    name: &str,
) -> Result<Value, ApiError> {
    let key = format!("projects/{project}/locations/{location}/clusters/{name}");
    let mut st = shared.lock();
    let Some(cluster) = st.container.clusters.get_mut(&key) else {
        return Err(cluster_not_found(project, location, name));
    };
    cluster["status"] = json!("STOPPING");
    let id = ClusterId {
        project: project.into(),
        location: location.into(),
        name: name.into(),
        labels: labels_of(cluster),
    };
    let op_id = st.op_id("operation");
    let op_key = format!("projects/{project}/locations/{location}/operations/{op_id}");
    let op = Op {
        project: project.into(),
        location: location.into(),
        id: op_id,
        kind: "DELETE_CLUSTER",
        target: legacy_path(project, location, name),
        started: Instant::now(),
        start_time: now_rfc3339(),
        end_time: None,
        failure: None,
        finished: false,
    };
    let answer = op.to_json(&shared.timing);
    st.container.ops.insert(op_key.clone(), op);
    drop(st);
    let shared = shared.clone();
    tokio::spawn(async move {
        let (gone, ()) = tokio::join!(
            shared.provider.delete(&id),
            tokio::time::sleep(shared.timing.total())
        );
        let mut st = shared.lock();
        let failure = match gone {
            Ok(()) => {
                st.container.clusters.remove(&key);
                None
            }
            Err(e) => {
                if let Some(c) = st.container.clusters.get_mut(&key) {
                    c["status"] = json!("ERROR");
                }
                Some(e)
            }
        };
        if let Some(op) = st.container.ops.get_mut(&op_key) {
            op.failure = failure;
            op.finished = true;
            op.end_time = Some(now_rfc3339());
        }
    });
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_zones_for_zones_and_locations_for_regions() {
        assert_eq!(
            cluster_not_found("p", "us-central1-a", "c").message,
            "Not found: projects/p/zones/us-central1-a/clusters/c."
        );
        assert_eq!(
            cluster_not_found("p", "us-central1", "c").message,
            "Not found: projects/p/locations/us-central1/clusters/c."
        );
    }
}
