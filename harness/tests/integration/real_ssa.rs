//! The kind backend's GCE metadata overlay against a real kube-apiserver (`--features real`):
//! server-side apply as the API server really does it, not as a mock models it.
//!
//! - Re-applying a partial `frontend` Deployment (only `GCE_METADATA_HOST`) with the field
//!   manager that applied the whole Deployment removes every field that manager no longer sends,
//!   and the API server refuses the result (422): the defect of issue 8, item 4.
//! - Applied as its own field manager (`meshmig-metadata`), as the kind backend now does, the
//!   Deployment keeps its selector, image and ports and gains the variable.
//! - The stand-in runs in its own namespace, so Online Boutique's namespace keeps exactly its
//!   own Deployments (item 5).
#![cfg(all(feature = "real", target_os = "linux"))]

use meshmig::backend::kind::{metadata_overlay, METADATA_FIELD_MANAGER, METADATA_NAMESPACE};
use meshmig::backend::kube::{KubeError, FIELD_MANAGER};
use meshmig::backend::kwok::cluster::Cluster;
use meshmig::tools::Tools;

#[test]
fn metadata_overlay_under_server_side_apply() {
    meshmig::netns::run_test_in_own_namespace(
        "real_ssa::metadata_overlay_under_server_side_apply",
        run,
    );
}

async fn run() {
    let upstream = meshmig_testsupport::shared("upstream");
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start("cluster-with-istio", 0, dir.path(), &Tools::from_env())
        .await
        .expect("starting the cluster");
    let kube = cluster.kube().await.unwrap();
    let path = upstream.join("microservices-demo/release/kubernetes-manifests.yaml");
    let all = meshmig::manifest::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    kube.create_namespace("onlineboutique").await.unwrap();
    kube.apply(&all, "onlineboutique").await.unwrap();
    let overlay = metadata_overlay(
        &all,
        "cluster-with-istio",
        "us-central1-a",
        "meshmig-metadata:dev",
        "onlineboutique",
    )
    .unwrap()
    .expect("the upstream manifests have a frontend");

    // The defect: the same field manager sends only the variable.
    let same = kube
        .apply_as(&overlay.frontend_env, "onlineboutique", FIELD_MANAGER)
        .await;
    match same {
        Err(KubeError::Api {
            source: kube::Error::Api(s),
            ..
        }) => {
            println!("same field manager: {} {}", s.code, s.message);
            assert_eq!(s.code, 422, "{}", s.message);
        }
        other => panic!("the API server accepted a partial apply by the same manager: {other:?}"),
    }

    // The fix: a field manager of its own.
    kube.apply_as(
        &overlay.frontend_env,
        "onlineboutique",
        METADATA_FIELD_MANAGER,
    )
    .await
    .expect("the overlay under its own field manager");
    kube.apply(&overlay.stand_in, METADATA_NAMESPACE)
        .await
        .expect("the stand-in in its own namespace");
    let ds = kube
        .list("Deployment", Some("onlineboutique"))
        .await
        .unwrap();
    let fe = ds
        .iter()
        .find(|d| d["metadata"]["name"] == "frontend")
        .unwrap();
    let c = &fe["spec"]["template"]["spec"]["containers"][0];
    assert!(
        c["image"]
            .as_str()
            .is_some_and(|i| i.contains("/frontend:")),
        "{c}"
    );
    assert!(fe["spec"]["selector"]["matchLabels"]["app"] == "frontend");
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "GCE_METADATA_HOST"
                && e["value"] == "gce-metadata.meshmig-metadata.svc.cluster.local:80"),
        "{}",
        c["env"]
    );
    // Online Boutique's namespace: its 12 Deployments, no more.
    assert_eq!(
        ds.len(),
        12,
        "{:?}",
        ds.iter()
            .map(|d| &d["metadata"]["name"])
            .collect::<Vec<_>>()
    );
    let md = kube
        .list("Deployment", Some(METADATA_NAMESPACE))
        .await
        .unwrap();
    assert_eq!(md.len(), 1);
    cluster.stop().await;
}
