//! Teardown and leak detection: the published clean-up's defect, leaks reported, listings that
//! fail or list only part, running operations, the run's DNS record and load balancers.

use std::sync::Arc;

use meshmig::backend::gke::{Gke, GkeConfig};
use meshmig::backend::{Backend, BackendError};

use super::common::{
    backend, cfg, scenario, Recorded, CLUSTERS_JSON, MEMBERSHIPS_JSON, NOT_FOUND, RULES_JSON,
};

#[tokio::test]
async fn the_published_cleanup_deletes_a_cluster_that_does_not_exist_and_leaves_the_real_one() {
    let exec = Arc::new(
        Recorded::default()
            .on(
                &["clusters delete cluster-with-managed-asm"],
                1,
                "",
                NOT_FOUND,
            )
            .on(&["clusters list"], 0, CLUSTERS_JSON, "")
            .on(&["memberships list"], 0, MEMBERSHIPS_JSON, "")
            .on(&["forwarding-rules list"], 0, RULES_JSON, "")
            .empty_listings(),
    );
    let s = scenario("published-cleanup.yaml");
    let b = backend(exec.clone(), &s).await;
    let err = b
        .delete_cluster("cluster-with-managed-asm")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::Procedure { message, .. } if message.contains("code=404")),
        "{err}"
    );
    let inv = b.inventory().await.unwrap();
    assert_eq!(
        inv.clusters.keys().collect::<Vec<_>>(),
        ["cluster-with-csm"]
    );
    assert_eq!(
        inv.memberships,
        ["cluster-with-csm-membership"],
        "someone-else's membership is not the run's"
    );
    assert!(
        inv.load_balancers.is_empty(),
        "no LB IP of this run was seen yet"
    );
}

#[tokio::test]
async fn teardown_removes_the_runs_leftovers_and_reports_what_stays_as_leaks() {
    // The cluster delete "succeeds" but the cluster is still listed afterwards: a leak.
    let exec = Arc::new(
        Recorded::default()
            .on(&["clusters list"], 0, CLUSTERS_JSON, "")
            .on(&["memberships list"], 0, MEMBERSHIPS_JSON, "")
            .empty_listings(),
    );
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec.clone(), &s).await;
    let report = b.teardown(false).await;
    let calls = exec.calls();
    assert!(
        calls.iter().any(|c| c == "gcloud container fleet memberships delete cluster-with-csm-membership-r2d2x9 --location=us-central1 --project=demo-project --quiet"),
        "{calls:#?}"
    );
    assert!(calls.iter().any(|c| c == "gcloud container clusters delete cluster-with-csm-r2d2x9 --zone=us-central1-a --project=demo-project --quiet"), "{calls:#?}");
    assert!(
        !calls.iter().any(|c| c.contains("someone-else")),
        "{calls:#?}"
    );
    assert!(
        report
            .failed
            .iter()
            .any(|f| f == "LEAK: cluster cluster-with-csm-r2d2x9 (RUNNING)"),
        "{report:?}"
    );
    assert!(
        report
            .failed
            .iter()
            .any(|f| f == "LEAK: fleet membership cluster-with-csm-membership-r2d2x9 (us-central1)"),
        "{report:?}"
    );
    // Issue 8, item 21: every Compute Engine kind a Service's load balancer leaves is listed.
    for what in meshmig::backend::gke::LOAD_BALANCER_KINDS {
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with(&format!("gcloud compute {what} list"))),
            "{what}: {calls:#?}"
        );
    }
}

/// Issue 8, item 15: one listing failing stops nothing else, and what could not be listed is
/// reported as not verified, never as "nothing left".
#[tokio::test]
async fn teardown_is_best_effort_per_kind_of_resource() {
    // A permission error on the fleet (a real 403 shape: googleapis' PERMISSION_DENIED status).
    let denied = "ERROR: (gcloud.container.fleet.memberships.list) PERMISSION_DENIED: Permission 'gkehub.memberships.list' denied on 'projects/demo-project/locations/-/memberships'\n";
    let exec = Arc::new(
        Recorded::default()
            .on(&["clusters list"], 0, CLUSTERS_JSON, "")
            .on(&["memberships list"], 1, "", denied)
            .empty_listings(),
    );
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec.clone(), &s).await;
    let report = b.teardown(false).await;
    let calls = exec.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("gcloud container clusters delete cluster-with-csm-r2d2x9")),
        "the clusters are deleted although the memberships could not be listed: {calls:#?}"
    );
    assert!(
        report
            .failed
            .iter()
            .any(|f| f.starts_with("listing fleet memberships:") && f.contains("PERMISSION_DENIED")),
        "{report:?}"
    );
    assert!(
        report
            .failed
            .iter()
            .any(|f| f.starts_with("NOT VERIFIED: fleet memberships")),
        "{report:?}"
    );
}

/// An aggregated Compute Engine listing that failed in part exits 0 with a warning and what it
/// did list (`[]` here): the leak check reports that kind NOT VERIFIED, never "nothing left".
/// The output's shape is the real gcloud 528's (gcloud_parser.rs asserts it against the real
/// gcloud); the message after ` - ` is the one an endpoint answering HTTP 400 gave it.
#[tokio::test]
async fn a_partial_compute_listing_is_not_verified() {
    let partial = "WARNING: Some requests did not succeed.\n - meshmig parser check: no Google Cloud here\n\n";
    let exec = Arc::new(
        Recorded::default()
            .on(&["clusters list"], 0, "[]", "")
            .on(&["memberships list"], 0, "[]", "")
            .on(&["compute forwarding-rules list"], 0, "[]\n", partial)
            .empty_listings(),
    );
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec.clone(), &s).await;
    let report = b.teardown(false).await;
    let not_verified: Vec<&String> = report
        .failed
        .iter()
        .filter(|f| f.starts_with("NOT VERIFIED"))
        .collect();
    assert_eq!(not_verified.len(), 1, "{report:?}");
    assert!(
        not_verified[0].starts_with("NOT VERIFIED: listing forwarding-rules: ")
            && not_verified[0].contains(
                "gcloud listed only part of them: Some requests did not succeed. - meshmig parser check: no Google Cloud here"
            ),
        "{report:?}"
    );
    assert_eq!(
        meshmig::backend::gke::partial_listing("Listed 0 items.\n"),
        None
    );
}

/// Issue 8, item 16: a creation interrupted by Ctrl-C goes on in Google Cloud; teardown waits for
/// the operation before it deletes, so the cluster is not leaked.
#[tokio::test]
async fn teardown_waits_for_running_operations_before_deleting() {
    // A container v1 Operation, as `operations list --format=json` prints it.
    let ops = r#"[{"name": "operation-1764203400123-5a6b7c8d", "zone": "us-central1-a",
      "operationType": "CREATE_CLUSTER", "status": "RUNNING",
      "selfLink": "https://container.googleapis.com/v1/projects/123456789123/zones/us-central1-a/operations/operation-1764203400123-5a6b7c8d",
      "targetLink": "https://container.googleapis.com/v1/projects/123456789123/zones/us-central1-a/clusters/cluster-with-csm-r2d2x9",
      "startTime": "2026-11-27T00:30:00.123456789Z"}]"#;
    let exec = Arc::new(
        Recorded::default()
            .on(&["operations list"], 0, ops, "")
            .on(&["clusters list"], 0, CLUSTERS_JSON, "")
            .on(&["memberships list"], 0, "[]", "")
            .empty_listings(),
    );
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec.clone(), &s).await;
    let report = b.teardown(false).await;
    let calls = exec.calls();
    let at = |p: &str| {
        calls
            .iter()
            .position(|c| c.starts_with(p))
            .unwrap_or(usize::MAX)
    };
    assert!(calls.contains(&"gcloud container operations list --project=demo-project '--filter=status!=DONE AND targetLink~-r2d2x9$' --format=json".to_string()), "{calls:#?}");
    assert!(
        at("gcloud container operations wait operation-1764203400123-5a6b7c8d --zone=us-central1-a --project=demo-project")
            < at("gcloud container clusters delete cluster-with-csm-r2d2x9"),
        "{calls:#?}"
    );
    assert!(
        report
            .removed
            .iter()
            .any(|r| r == "waited for operation operation-1764203400123-5a6b7c8d (CREATE_CLUSTER of cluster-with-csm-r2d2x9)"),
        "{report:?}"
    );
}

/// Issue 8, item 17: the A record the run created in a Cloud DNS zone is deleted in teardown.
#[tokio::test]
async fn teardown_deletes_the_cloud_dns_record_the_run_created() {
    let exec = Arc::new(
        Recorded::default()
            .on(&["clusters list"], 0, "[]", "")
            .on(&["memberships list"], 0, "[]", "")
            .empty_listings(),
    );
    let s = scenario("canary-cluster.yaml");
    let cfg = GkeConfig {
        dns_zone: Some("shop-zone".into()),
        ..cfg()
    };
    let b = Gke::with_exec(cfg, &s, exec.clone(), tempfile::tempdir().unwrap())
        .await
        .unwrap();
    b.dns_set("example.com", "34.70.1.2".parse().unwrap(), 300)
        .await
        .unwrap();
    let report = b.teardown(false).await;
    let calls = exec.calls();
    assert!(calls.contains(&"gcloud dns record-sets create example.com. --zone=shop-zone --type=A --ttl=300 --rrdatas=34.70.1.2 --project=demo-project".to_string()), "{calls:#?}");
    assert!(calls.contains(&"gcloud dns record-sets delete example.com. --zone=shop-zone --type=A --project=demo-project".to_string()), "{calls:#?}");
    assert!(
        report
            .removed
            .iter()
            .any(|r| r == "Cloud DNS A record example.com. in zone shop-zone"),
        "{report:?}"
    );
}

/// Issue 8, item 21: the cloud resources GKE makes for a Service are found by the names it gives
/// them (`a` + the Service's UID without dashes, 32 characters; `k8s-fw-` + that), or by the
/// address the run saw.
#[test]
fn load_balancer_resources_are_matched_to_the_runs_services() {
    let uid = "5f1d2e3c-4b5a-4968-8776-655443322110";
    let lb = meshmig::backend::gke::load_balancer_name(uid);
    assert_eq!(lb, "a5f1d2e3c4b5a49688776655443322110"[..32].to_string());
    let firewalls = serde_json::json!([
        {"name": format!("k8s-fw-{lb}"), "network": "default"},
        {"name": "k8s-fw-aother0000000000000000000000", "network": "default"},
        {"name": "default-allow-ssh"}
    ]);
    let left = meshmig::backend::gke::left_for_run(
        "firewall-rules",
        firewalls.as_array().unwrap(),
        std::slice::from_ref(&lb),
        &Default::default(),
    );
    assert_eq!(left, [format!("firewall-rule k8s-fw-{lb}")]);
    let rules: Vec<serde_json::Value> = serde_json::from_str(RULES_JSON).unwrap();
    let ips = std::collections::BTreeSet::from(["34.70.1.2".to_string()]);
    assert_eq!(
        meshmig::backend::gke::left_for_run("forwarding-rules", &rules, &[], &ips),
        ["forwarding-rule a3f0c1d2e3b4"]
    );
}

/// Issue 8, item 21: before a cluster is deleted, its LoadBalancer Services are, and teardown
/// waits until they are gone (GKE's service-controller finalizer holds a Service until its cloud
/// load balancer is deleted); deleting the cluster alone can leave the load balancer behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_deletes_load_balancer_services_before_their_cluster() {
    use axum::routing::get;
    fn json_body(v: serde_json::Value) -> ([(&'static str, &'static str); 1], String) {
        ([("content-type", "application/json")], v.to_string())
    }
    let exec = Arc::new(
        Recorded::default()
            .on(&["clusters list"], 0, CLUSTERS_JSON, "")
            .on(&["memberships list"], 0, "[]", "")
            .on(&["config", "get-contexts"], 0, "cluster-with-csm\n", "")
            .empty_listings(),
    );
    // The cluster's API: one LoadBalancer Service, deleted on request, then gone.
    let deleted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let svc = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "asm-ingressgateway", "namespace": "asm-ingress", "uid": "5f1d2e3c-4b5a-4968-8776-655443322110"},
        "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "34.70.1.2"}]}}});
    let not_found = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "services \"asm-ingressgateway\" not found", "reason": "NotFound",
        "details": {"name": "asm-ingressgateway", "kind": "services"}, "code": 404});
    let (d1, d2, log) = (deleted.clone(), deleted.clone(), exec.clone());
    let (s1, s2) = (svc.clone(), svc.clone());
    let app = axum::Router::new()
        .route(
            "/api/v1/services",
            get(move || {
                let items = if d1.load(std::sync::atomic::Ordering::SeqCst) {
                    vec![]
                } else {
                    vec![s1.clone()]
                };
                async move {
                    json_body(serde_json::json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": items}))
                }
            }),
        )
        .route(
            "/api/v1/namespaces/asm-ingress/services/asm-ingressgateway",
            get(move || {
                let gone = d2.load(std::sync::atomic::Ordering::SeqCst);
                let (s, nf) = (s2.clone(), not_found.clone());
                async move {
                    if gone {
                        (axum::http::StatusCode::NOT_FOUND, json_body(nf))
                    } else {
                        (axum::http::StatusCode::OK, json_body(s))
                    }
                }
            })
            .delete(move || {
                deleted.store(true, std::sync::atomic::Ordering::SeqCst);
                log.calls
                    .lock()
                    .unwrap()
                    .push("api: delete Service asm-ingress/asm-ingressgateway".into());
                let s = svc.clone();
                async move { json_body(s) }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"http://{addr}\"}}\nusers:\n- name: u\n  user: {{token: dummy}}\ncontexts:\n- name: cluster-with-csm\n  context: {{cluster: c, user: u}}\ncurrent-context: cluster-with-csm\n"
        ),
    )
    .unwrap();
    let s = scenario("canary-cluster.yaml");
    let b = Gke::with_exec(cfg(), &s, exec.clone(), dir).await.unwrap();
    let report = b.teardown(false).await;
    let calls = exec.calls();
    let at = |p: &str| {
        calls
            .iter()
            .position(|c| c.starts_with(p))
            .unwrap_or(usize::MAX)
    };
    assert!(
        at("api: delete Service asm-ingress/asm-ingressgateway")
            < at("gcloud container clusters delete cluster-with-csm-r2d2x9"),
        "{calls:#?}\n{report:?}"
    );
    assert!(
        report
            .removed
            .iter()
            .any(|r| r == "LoadBalancer Service asm-ingress/asm-ingressgateway of cluster-with-csm"),
        "{report:?}"
    );
}
