//! Compute Engine, `compute/v1`: the lists the GKE backend reads to find what a LoadBalancer
//! Service left behind (`forwarding-rules`, `target-pools`, `backend-services`,
//! `health-checks`, `http-health-checks`, `firewall-rules`), empty unless seeded.
//!
//! What gcloud 528 sends (seen with `--log-http` against the stand-in): the multi-scope listers
//! (`googlecloudsdk/api_lib/compute/lister.py`, `MultiScopeLister`) call `aggregatedList`,
//! `GET projects/P/aggregated/{forwardingRules,targetPools,backendServices,healthChecks}`
//! (`includeAllScopes`, `returnPartialSuccess`); the global ones call `list`,
//! `GET projects/P/global/{httpHealthChecks,firewalls}`. The compute override is the whole base
//! (`https://compute.googleapis.com/compute/v1/` by default), so no version segment follows
//! the stand-in's `/compute/` prefix. Response messages from
//! `googlecloudsdk/generated_clients/apis/compute/v1/compute_v1_messages.py`
//! (`ForwardingRuleAggregatedList`: `items` map of scope → `ForwardingRulesScopedList`;
//! `FirewallList`: `items` array). A 404 on an aggregated list makes gcloud warn ("Some
//! requests did not succeed.") and still exit 0, so every collection must be served.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::{json, Value};

use super::{ApiError, Req, Shared};

/// Seeded items per collection (`forwardingRules`, `firewalls`, ...).
#[derive(Default)]
pub(crate) struct Store {
    /// Collection → items, each as the API returns it.
    pub seeded: BTreeMap<String, Vec<Value>>,
}

/// The collections served, with their `kind` stem.
const COLLECTIONS: &[(&str, &str)] = &[
    ("forwardingRules", "forwardingRule"),
    ("targetPools", "targetPool"),
    ("backendServices", "backendService"),
    ("healthChecks", "healthCheck"),
    ("httpHealthChecks", "httpHealthCheck"),
    ("firewalls", "firewall"),
];

fn kind_of(collection: &str) -> Option<&'static str> {
    COLLECTIONS
        .iter()
        .find(|(c, _)| *c == collection)
        .map(|(_, k)| *k)
}

/// The scope an item is listed under in an aggregated list: `regions/R` from its `region` URL,
/// else `global`.
fn scope_of(item: &Value) -> String {
    item["region"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .map(|r| format!("regions/{r}"))
        .unwrap_or_else(|| "global".into())
}

/// Serves `projects/P/aggregated/C`, `projects/P/global/C` and `projects/P/regions/R/C`.
pub(crate) fn route(shared: &Shared, req: &Req<'_>) -> Option<Result<Value, ApiError>> {
    if req.method != Method::GET {
        return None;
    }
    let st = shared.lock();
    let items = |c: &str| st.compute.seeded.get(c).cloned().unwrap_or_default();
    match req.segs.as_slice() {
        ["projects", p, "aggregated", c] => {
            let kind = kind_of(c)?;
            let mut scopes = serde_json::Map::new();
            for item in items(c) {
                let entry = scopes
                    .entry(scope_of(&item))
                    .or_insert_with(|| json!({ *c: [] }));
                if let Some(a) = entry[*c].as_array_mut() {
                    a.push(item);
                }
            }
            Some(Ok(json!({
                "kind": format!("compute#{kind}AggregatedList"),
                "id": format!("projects/{p}/aggregated/{c}"),
                "items": scopes,
            })))
        }
        ["projects", p, "global", c] => {
            let kind = kind_of(c)?;
            let list: Vec<Value> = items(c)
                .into_iter()
                .filter(|i| scope_of(i) == "global")
                .collect();
            Some(Ok(json!({
                "kind": format!("compute#{kind}List"),
                "id": format!("projects/{p}/global/{c}"),
                "items": list,
            })))
        }
        ["projects", p, "regions", r, c] => {
            let kind = kind_of(c)?;
            let list: Vec<Value> = items(c)
                .into_iter()
                .filter(|i| scope_of(i) == format!("regions/{r}"))
                .collect();
            Some(Ok(json!({
                "kind": format!("compute#{kind}List"),
                "id": format!("projects/{p}/regions/{r}/{c}"),
                "items": list,
            })))
        }
        _ => None,
    }
}
