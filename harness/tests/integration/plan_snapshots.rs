//! `meshmig plan` snapshots: the procedure's steps A–H mapped to each backend's commands and API
//! calls, in order. A change to a command or flag shows up here as a snapshot diff to review.

use std::path::Path;
use std::process::Command;

fn plan(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_meshmig"))
        .arg("plan")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn gke_plan_of_canary_cluster() {
    insta::assert_snapshot!(plan(&[
        "scenarios/canary-cluster.yaml",
        "--backend",
        "gke",
        "--project",
        "demo",
        "--run-id",
        "run42"
    ]));
}

#[test]
fn gke_plan_of_published_cleanup_with_cloud_dns() {
    insta::assert_snapshot!(plan(&[
        "scenarios/published-cleanup.yaml",
        "--backend",
        "gke",
        "--project",
        "demo",
        "--run-id",
        "run42",
        "--dns-zone",
        "shop-zone",
        "--domain",
        "shop.example.org"
    ]));
}

/// Issue 8, item 17: a Cloud DNS zone needs a domain the user controls (`example.com`, the
/// scenario's, cannot be delegated to it).
#[test]
fn a_cloud_dns_zone_without_a_domain_is_refused() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_meshmig"))
        .args([
            "plan",
            "scenarios/canary-cluster.yaml",
            "--backend",
            "gke",
            "--project",
            "demo",
            "--dns-zone",
            "shop-zone",
        ])
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--domain <DOMAIN>"));
}

#[test]
fn kwok_plan_of_canary_cluster() {
    insta::assert_snapshot!(plan(&[
        "scenarios/canary-cluster.yaml",
        "--backend",
        "kwok"
    ]));
}

#[test]
fn emulated_plan_of_canary_cluster() {
    insta::assert_snapshot!(plan(&["scenarios/canary-cluster.yaml"]));
}

#[test]
fn gke_plan_has_the_procedures_gcloud_commands_in_order() {
    let p = plan(&[
        "scenarios/canary-cluster.yaml",
        "--backend",
        "gke",
        "--project",
        "demo",
        "--run-id",
        "run42",
    ]);
    let order = [
        "gcloud container clusters create cluster-with-istio-run42 --project=demo --zone=us-central1-a --machine-type=e2-standard-2 --num-nodes=3",
        // A1 starts both creations (issue 8, item 22); C1 waits for its own.
        "gcloud container clusters create cluster-with-csm-run42 --project=demo --zone=us-central1-a --machine-type=e2-standard-4 --num-nodes=2 --workload-pool demo.svc.id.goog",
        "istioctl install --context=cluster-with-istio --set profile=default -y",
        "(waits for the creation of cluster-with-csm started by the first create step)",
        "gcloud container fleet mesh enable --project demo",
        "gcloud container fleet memberships register cluster-with-csm-membership-run42 --gke-cluster=us-central1-a/cluster-with-csm-run42 --enable-workload-identity --project demo",
        "gcloud container fleet mesh update --management automatic --memberships cluster-with-csm-membership-run42 --project demo",
        "gcloud container fleet mesh describe --project demo",
        "gcloud container clusters delete cluster-with-istio-run42 --zone=us-central1-a --project=demo",
        "gcloud container clusters delete cluster-with-csm-run42 --zone=us-central1-a --project=demo",
        "gcloud container fleet memberships delete cluster-with-csm-membership-run42 --location=us-central1 --project=demo --quiet",
    ];
    let mut at = 0;
    for cmd in order {
        let i = p[at..]
            .find(cmd)
            .unwrap_or_else(|| panic!("{cmd:?} missing or out of order in:\n{p}"));
        at += i + cmd.len();
    }
}

#[test]
fn kind_plan_of_canary_cluster() {
    insta::assert_snapshot!(plan(&[
        "scenarios/canary-cluster.yaml",
        "--backend",
        "kind",
        "--run-id",
        "run42",
        "--istio-version",
        "1.28.0",
        "--metadata-image",
        "meshmig-metadata:dev"
    ]));
}

#[test]
fn kind_plan_maps_steps_a_to_h_to_kind_commands() {
    let p = plan(&[
        "scenarios/canary-cluster.yaml",
        "--backend",
        "kind",
        "--run-id",
        "run42",
    ]);
    for step in [
        "A1", "A2", "A4", "B2", "B5", "C1", "C6", "D3", "E2", "F1", "F3", "G3", "G4", "H1",
    ] {
        assert!(
            p.lines().any(|l| l.starts_with(&format!("{step} "))),
            "{step} missing:\n{p}"
        );
    }
    assert!(p.contains("kind create cluster --name cluster-with-csm-run42 --config kind-configs/cluster-with-csm.yaml"));
    assert!(p.contains(
        "istioctl install --context=CLUSTER --set profile=minimal --set revision=asm-managed --set 'values.revisionTags[0]=default' -y"
    ));
    assert!(p.contains("kind delete cluster --name cluster-with-istio-run42"));
}
