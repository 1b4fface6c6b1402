//! The fleet (gkehub v1 / v2) and Service Usage through the real gcloud: steps C3–C6 and the
//! clean-up of the published procedure.

use std::path::Path;

use meshmig::fleet::{membership_status, StandInState};
use meshmig::gcp_stand_in::GcpStandIn;

use super::common::{gcloud, progress, start};

/// The fleet (gkehub v1 / v2) and Service Usage: steps C3–C6 and the clean-up of the published
/// procedure, with the mesh state set from outside between two `describe`s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_register_mesh_update_describe_and_clean_up() {
    let (s, dir) = start().await;
    let d = dir.path();
    let m = "cluster-with-csm-membership";

    enable_mesh(&s, d).await;
    register(&s, d).await;
    mesh_update(&s, d).await;
    describe_until_active(&s, d, m).await;
    list_memberships(&s, d).await;
    clean_up(&s, d).await;
    s.stop().await;
}

/// C3, twice: the feature enabled, then the wording of an enabled one.
async fn enable_mesh(s: &GcpStandIn, d: &Path) {
    let run = |args: &'static [&'static str]| gcloud(s, d, args);
    // C3. gcloud 528 enables meshconfig.googleapis.com, then creates the feature.
    let o = run(&["container", "fleet", "mesh", "enable", "--project", "demo"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let err = progress(&o.stderr);
    assert!(
        err.contains("Enabling service [meshconfig.googleapis.com] on project [demo]..."),
        "{err}"
    );
    assert!(
        err.contains("Waiting for Feature Service Mesh to be created...done."),
        "{err}"
    );
    // Again: the published line's other wording (harness/core/src/gcloud.rs, DRIFTS).
    let o = run(&["container", "fleet", "mesh", "enable", "--project", "demo"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("Service Mesh Feature for project [demo] is already enabled"),
        "{}",
        o.stderr
    );
}

/// C4: the membership registered.
async fn register(s: &GcpStandIn, d: &Path) {
    let run = |args: &'static [&'static str]| gcloud(s, d, args);
    // C4.
    let o = run(&[
        "container",
        "fleet",
        "memberships",
        "register",
        "cluster-with-csm-membership",
        "--gke-cluster=us-central1-a/cluster-with-csm",
        "--enable-workload-identity",
        "--project",
        "demo",
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let err = progress(&o.stderr);
    assert!(
        err.contains(
            "Waiting for membership to be created...done.\nFinished registering to the Fleet."
        ),
        "{err}"
    );
}

/// C5: management set to automatic.
async fn mesh_update(s: &GcpStandIn, d: &Path) {
    let run = |args: &'static [&'static str]| gcloud(s, d, args);
    // C5: the v2 membership feature (the drift harness/core/src/gcloud.rs records).
    let o = run(&[
        "container",
        "fleet",
        "mesh",
        "update",
        "--management",
        "automatic",
        "--memberships",
        "cluster-with-csm-membership",
        "--project",
        "demo",
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let err = progress(&o.stderr);
    assert!(err.contains("Waiting for MembershipFeature projects/demo/locations/us-central1/memberships/cluster-with-csm-membership/features/servicemesh to be updated...done."), "{err}");
}

/// C6: the membership provisioning, then active once its state is set from outside.
async fn describe_until_active(s: &GcpStandIn, d: &Path, m: &str) {
    let run = |args: &'static [&'static str]| gcloud(s, d, args);
    // C6, read as the harness reads it: provisioning, then ACTIVE once set from outside.
    let o = run(&[
        "container",
        "fleet",
        "mesh",
        "describe",
        "--project",
        "demo",
        "--format=yaml",
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let st = membership_status(&o.stdout, m)
        .expect("YAML")
        .expect("membership listed");
    assert_eq!(
        (st.control_plane.as_str(), st.data_plane.as_str()),
        ("PROVISIONING", "PROVISIONING")
    );
    let ov = meshmig::fleet::overview(&o.stdout).expect("YAML");
    assert_eq!(ov.feature, "ACTIVE");
    assert_eq!(
        ov.memberships.get(m),
        Some(&Some("MANAGEMENT_AUTOMATIC".to_string()))
    );
    s.set_mesh_state(m, StandInState::Active)
        .expect("registered");
    assert!(s.set_mesh_state("nobody", StandInState::Active).is_err());
    let o = run(&[
        "container",
        "fleet",
        "mesh",
        "describe",
        "--project",
        "demo",
        "--format=yaml",
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let st = membership_status(&o.stdout, m)
        .expect("YAML")
        .expect("membership listed");
    assert!(st.control_plane_active() && st.is_active(), "{st:?}");
    assert!(
        o.stdout.contains("details: 'Ready: asm-managed'"),
        "{}",
        o.stdout
    );
}

/// The memberships listed as the backend reads them.
async fn list_memberships(s: &GcpStandIn, d: &Path) {
    let run = |args: &'static [&'static str]| gcloud(s, d, args);
    let o = run(&[
        "container",
        "fleet",
        "memberships",
        "list",
        "--project",
        "demo",
        "--format=json",
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON list");
    assert_eq!(
        v[0]["name"],
        "projects/demo/locations/us-central1/memberships/cluster-with-csm-membership"
    );
    assert_eq!(v[0]["state"]["code"], "READY");
    assert_eq!(
        v[0]["endpoint"]["gkeCluster"]["resourceLink"],
        "//container.googleapis.com/projects/demo/locations/us-central1-a/clusters/cluster-with-csm"
    );
    assert_eq!(
        v[0]["authority"]["workloadIdentityPool"],
        "demo.svc.id.goog"
    );
}

/// The membership deleted (twice: the 404), the feature disabled, then described.
async fn clean_up(s: &GcpStandIn, d: &Path) {
    let run = |args: &'static [&'static str]| gcloud(s, d, args);
    // Clean-up as the backend does it.
    let o = run(&[
        "container",
        "fleet",
        "memberships",
        "delete",
        "cluster-with-csm-membership",
        "--location=us-central1",
        "--project=demo",
        "--quiet",
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("Deleted membership [cluster-with-csm-membership]."),
        "{}",
        o.stderr
    );
    assert!(s.membership_names().is_empty());
    // Deleted twice: the fleet's 404 (GoogleContainerTools/config-sync#488 quotes its text).
    let o = run(&[
        "container",
        "fleet",
        "memberships",
        "delete",
        "cluster-with-csm-membership",
        "--location=us-central1",
        "--project=demo",
        "--quiet",
    ])
    .await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("NOT_FOUND: Resource 'projects/demo/locations/us-central1/memberships/cluster-with-csm-membership' was not found. This command is authenticated with an access token from "),
        "{}",
        o.stderr
    );
    let o = run(&[
        "container",
        "fleet",
        "mesh",
        "disable",
        "--project",
        "demo",
        "--quiet",
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        progress(&o.stderr).contains("Waiting for Feature Service Mesh to be deleted...done."),
        "{}",
        o.stderr
    );
    // Described now, the feature is gone: gcloud's own text for a disabled feature.
    let o = run(&[
        "container",
        "fleet",
        "mesh",
        "describe",
        "--project",
        "demo",
        "--format=yaml",
    ])
    .await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert_eq!(
        o.stderr.trim_end(),
        "ERROR: (gcloud.container.fleet.mesh.describe) Service Mesh Feature for project [demo] is not enabled"
    );
}
