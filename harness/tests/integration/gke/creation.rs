//! The procedure's own commands on GKE: the flags and run id of creations and fleet calls,
//! overlapping creations, context renames, `mesh describe` and gcloud's newer wordings.

use std::sync::Arc;
use std::time::Duration;

use meshmig::backend::{Backend, FleetOp};

use super::common::{backend, scenario, Recorded, CONTEXTS, MEMBERSHIPS_JSON, REGISTER_STDERR};

#[tokio::test]
async fn commands_carry_the_procedures_flags_and_the_run_id() {
    let exec = Arc::new(
        Recorded::default()
            .on(&["config", "get-contexts"], 0, CONTEXTS, "")
            .on(&["memberships list"], 0, MEMBERSHIPS_JSON, "")
            .on(&["memberships register"], 0, "", REGISTER_STDERR),
    );
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec.clone(), &s).await;
    b.create_cluster(s.cluster("cluster-with-istio").unwrap())
        .await
        .unwrap();
    b.create_cluster(s.cluster("cluster-with-csm").unwrap())
        .await
        .unwrap();
    let created = exec.calls().len();
    b.rename_context("cluster-with-csm").await.unwrap();
    b.fleet(&FleetOp::EnableMesh).await.unwrap();
    let registered = b
        .fleet(&FleetOp::Register {
            cluster: "cluster-with-csm".into(),
            membership: "cluster-with-csm-membership".into(),
        })
        .await
        .unwrap();
    b.fleet(&FleetOp::MeshUpdate {
        membership: "cluster-with-csm-membership".into(),
    })
    .await
    .unwrap();
    b.fleet(&FleetOp::Unregister {
        membership: "cluster-with-csm-membership".into(),
    })
    .await
    .unwrap();
    let calls = exec.calls();
    // A1 started both creations (in either order); C1 took its result and ran nothing.
    let mut creations = calls[1..created].to_vec();
    creations.sort();
    assert_eq!(
        creations,
        [
            "gcloud container clusters create cluster-with-csm-r2d2x9 --project=demo-project --zone=us-central1-a --machine-type=e2-standard-4 --num-nodes=2 --workload-pool demo-project.svc.id.goog --labels=meshmig-run=r2d2x9",
            "gcloud container clusters create cluster-with-istio-r2d2x9 --project=demo-project --zone=us-central1-a --machine-type=e2-standard-2 --num-nodes=3 --labels=meshmig-run=r2d2x9",
        ]
    );
    assert_eq!(
        calls[created..],
        [
            "kubectl config get-contexts --output=name",
            "kubectl config rename-context gke_demo-project_us-central1-a_cluster-with-csm-r2d2x9 cluster-with-csm",
            "gcloud container fleet mesh enable --project demo-project",
            "gcloud container fleet memberships register cluster-with-csm-membership-r2d2x9 --gke-cluster=us-central1-a/cluster-with-csm-r2d2x9 --enable-workload-identity --project demo-project",
            "gcloud container fleet mesh update --management automatic --memberships cluster-with-csm-membership-r2d2x9 --project demo-project",
            "gcloud container fleet memberships list --project demo-project --format=json",
            // Issue 8, item 19: where the membership is listed, by `delete --location`
            // (`unregister` needs the cluster, which clean-up may have deleted).
            "gcloud container fleet memberships delete cluster-with-csm-membership-r2d2x9 --location=us-central1 --project=demo-project --quiet",
        ]
    );
    // Issue 8, item 13: the piped progress reads as the procedure quotes it.
    assert!(
        registered.stdout.contains(
            "Waiting for membership to be created...done.\nFinished registering to the Fleet."
        ),
        "{}",
        registered.stdout
    );
}

/// Issue 8, items 9 and 22: A1 starts every creation, and a context is renamed only once every
/// creation has ended (each writes the kubeconfig when it ends).
#[tokio::test]
async fn creations_overlap_and_renames_wait_for_all_of_them() {
    let exec = Arc::new(
        Recorded::default()
            .slow(&["clusters create cluster-with-istio"], 100, "", "")
            .slow(&["clusters create cluster-with-csm"], 400, "", ""),
    );
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec.clone(), &s).await;
    let started = std::time::Instant::now();
    b.create_cluster(s.cluster("cluster-with-istio").unwrap())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(350),
        "A1 waited only for its own cluster"
    );
    b.rename_context("cluster-with-istio").await.unwrap();
    let calls = exec.calls();
    let at = |l: &str| calls.iter().position(|c| c.starts_with(l)).unwrap();
    assert!(
        at("done: gcloud container clusters create cluster-with-csm")
            < at("kubectl config rename-context"),
        "{calls:#?}"
    );
    assert!(
        at("gcloud container clusters create cluster-with-csm")
            < at("done: gcloud container clusters create cluster-with-istio")
    );
    b.create_cluster(s.cluster("cluster-with-csm").unwrap())
        .await
        .unwrap();
    assert_eq!(
        exec.calls()
            .iter()
            .filter(|c| c.starts_with("gcloud container clusters create cluster-with-csm"))
            .count(),
        1,
        "C1 takes the creation A1 started"
    );
}

#[tokio::test]
async fn describe_output_reads_under_the_procedures_membership_name() {
    let describe = "membershipStates:\n  projects/123456789123/locations/global/memberships/cluster-with-csm-membership-r2d2x9:\n    servicemesh:\n      controlPlaneManagement:\n        details:\n        - code: REVISION_READY\n          details: 'Ready: asm-managed'\n        state: ACTIVE\n      dataPlaneManagement:\n        details:\n        - code: OK\n          details: Service is running.\n        state: ACTIVE\nresourceState:\n  state: ACTIVE\n";
    let exec = Arc::new(Recorded::default().on(&["fleet mesh describe"], 0, describe, ""));
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec, &s).await;
    let yaml = b.mesh_describe().await.unwrap();
    let st = meshmig::fleet::membership_status(&yaml, "cluster-with-csm-membership")
        .unwrap()
        .unwrap();
    assert!(st.is_active());
}

/// Two `clusters create` that end together each rewrite the whole kubeconfig, and the later can
/// drop the other's context (the GKE rehearsal against the real gcloud 528 lost one in 2 runs of
/// 3): a rename whose context is missing has gcloud write it again first.
#[tokio::test]
async fn a_context_lost_by_concurrent_creations_is_fetched_again_before_the_rename() {
    let exec = Arc::new(Recorded::default().on(
        &["config", "get-contexts"],
        0,
        "gke_demo-project_us-central1-a_cluster-with-istio-r2d2x9\n",
        "",
    ));
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec.clone(), &s).await;
    b.rename_context("cluster-with-csm").await.unwrap();
    let calls = exec.calls();
    let tail: Vec<&str> = calls[calls.len() - 3..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "kubectl config get-contexts --output=name",
            "gcloud container clusters get-credentials cluster-with-csm-r2d2x9 --zone=us-central1-a --project=demo-project",
            "kubectl config rename-context gke_demo-project_us-central1-a_cluster-with-csm-r2d2x9 cluster-with-csm",
        ]
    );
}

/// After `mesh disable` (H3), gcloud 528 answers `mesh describe` with exit 1 and "Service Mesh
/// Feature for project [P] is not enabled" (seen in the rehearsal against the real gcloud): the
/// feature is off, which is what H3 checks, not an infrastructure failure.
#[tokio::test]
async fn a_disabled_mesh_feature_reads_as_off_not_as_a_failure() {
    let exec = Arc::new(Recorded::default().on(
        &["fleet mesh describe"],
        1,
        "",
        "ERROR: (gcloud.container.fleet.mesh.describe) Service Mesh Feature for project [demo] is not enabled\n",
    ));
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec, &s).await;
    assert_eq!(b.mesh_describe().await.unwrap(), "");
}

/// Issue 8, item 13: an enabled feature makes `mesh enable` say so and exit 0 (C3 passes, with
/// the wording reported as a deviation); gcloud 528's `mesh update` waits on the membership's
/// feature, not on "Feature Service Mesh".
#[tokio::test]
async fn newer_wording_and_already_enabled_are_deviations() {
    // command_lib/container/fleet/features/base.py of gcloud 528: log.status.Print('{} Feature
    // for project [{}] is already enabled') on ALREADY_EXISTS.
    let already = "Service Mesh Feature for project [demo-project] is already enabled\n";
    // command_lib/container/fleet/membershipfeatures/base.py of gcloud 528, through the piped
    // progress tracker.
    let updated = "Waiting for MembershipFeature projects/demo-project/locations/us-central1/memberships/cluster-with-csm-membership-r2d2x9/features/servicemesh to be updated...\n.....done.\n";
    let exec = Arc::new(Recorded::default().on(&["mesh enable"], 0, "", already).on(
        &["mesh update"],
        0,
        "",
        updated,
    ));
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec, &s).await;
    let enable = b.fleet(&FleetOp::EnableMesh).await.unwrap();
    let c3 = meshmig::checks::output_contains(
        Some(&enable),
        &["Waiting for Feature Service Mesh to be created...done.".into()],
    );
    assert!(c3.ok, "{}", c3.message());
    assert!(
        c3.deviations[0].contains("is already enabled"),
        "{:?}",
        c3.deviations
    );
    let update = b
        .fleet(&FleetOp::MeshUpdate {
            membership: "cluster-with-csm-membership".into(),
        })
        .await
        .unwrap();
    let c5 = meshmig::checks::output_contains(
        Some(&update),
        &["Waiting for Feature Service Mesh to be updated...done.".into()],
    );
    assert!(c5.ok, "{}", c5.message());
    assert!(
        c5.deviations[0].contains("MembershipFeature"),
        "{:?}",
        c5.deviations
    );
    // A line that is simply missing still fails.
    let c4 = meshmig::checks::output_contains(
        Some(&update),
        &["Finished registering to the Fleet.".into()],
    );
    assert!(!c4.ok);
}

/// Footers on GKE print the real cluster name, which carries the run id: the backend maps it
/// back to the procedure's name, so split checks count it for the right cluster (issue 8, 12).
#[tokio::test]
async fn footers_real_cluster_names_map_back_to_the_procedures() {
    let exec = Arc::new(Recorded::default());
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec, &s).await;
    let names = b.real_cluster_names();
    assert_eq!(
        names.get("cluster-with-istio-r2d2x9").map(String::as_str),
        Some("cluster-with-istio")
    );
    assert_eq!(
        names.get("cluster-with-csm-r2d2x9").map(String::as_str),
        Some("cluster-with-csm")
    );
}
