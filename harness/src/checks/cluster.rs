//! Checks on the clusters themselves: listed or not, their kubeconfig contexts, and nothing of the
//! run left at the end.

use serde_json::json;

use super::{CheckResult, Ctx, R};
/// The cluster is listed by the backend.
pub async fn cluster_exists(ctx: &Ctx<'_>, cluster: &str) -> R {
    let clusters = ctx.backend.clusters().await?;
    let state = clusters.get(cluster).cloned();
    Ok(CheckResult::new(
        "cluster_exists",
        state.as_deref() == Some("RUNNING"),
        format!("cluster {cluster} RUNNING"),
        state
            .map(|s| format!("cluster {cluster} {s}"))
            .unwrap_or_else(|| format!("no cluster {cluster}")),
        json!({"clusters": clusters}),
    ))
}

/// The cluster is no longer listed.
pub async fn cluster_absent(ctx: &Ctx<'_>, cluster: &str) -> R {
    let clusters = ctx.backend.clusters().await?;
    Ok(CheckResult::new(
        "cluster_absent",
        !clusters.contains_key(cluster),
        format!("no cluster {cluster}"),
        if clusters.contains_key(cluster) {
            format!("cluster {cluster} still listed")
        } else {
            "not listed".into()
        },
        json!({"clusters": clusters}),
    ))
}

/// `kubectl config get-contexts --output=name` lists the cluster's name.
pub async fn context_listed(ctx: &Ctx<'_>, cluster: &str) -> R {
    let contexts = ctx.backend.contexts().await?;
    Ok(CheckResult::new(
        "context_listed",
        contexts.iter().any(|c| c == cluster),
        format!("context {cluster} listed"),
        format!("contexts {contexts:?}"),
        json!({"get-contexts --output=name": contexts}),
    ))
}

/// Nothing of the run is left.
pub async fn nothing_left(ctx: &Ctx<'_>) -> R {
    let inv = ctx.backend.inventory().await?;
    let mut left = Vec::new();
    for (c, state) in &inv.clusters {
        left.push(format!("cluster {c} ({state})"));
    }
    for m in &inv.memberships {
        left.push(format!("fleet membership {m}"));
    }
    if inv.mesh_feature_enabled {
        left.push("fleet mesh feature enabled".into());
    }
    for lb in &inv.load_balancers {
        left.push(format!("load balancer {lb}"));
    }
    Ok(CheckResult::new(
        "nothing_left",
        inv.is_empty(),
        "no cluster, fleet membership, mesh feature or load balancer of the run left".to_string(),
        if left.is_empty() {
            "nothing left".into()
        } else {
            format!("left: {}", left.join(", "))
        },
        json!(inv),
    ))
}
