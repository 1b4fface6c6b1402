//! `meshmig gc`, gcloud's timestamps, and the list of gcloud commands the real parser checks,
//! compared with every call the backend really makes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use meshmig::backend::exec::Cmd;
use meshmig::backend::gke::{chrono_like, gc, Gke, GkeConfig};
use meshmig::backend::{Backend, FleetOp};

use super::common::{cfg, scenario, Recorded, CLUSTERS_JSON, MEMBERSHIPS_JSON};

#[tokio::test]
async fn gc_deletes_only_clusters_older_than_the_threshold_and_their_memberships() {
    let list = r#"[
      {"name": "cluster-with-csm-old111", "zone": "us-central1-a", "createTime": "2026-11-26T12:00:00+00:00", "resourceLabels": {"meshmig-run": "old111"}},
      {"name": "cluster-with-csm-new222", "zone": "us-central1-a", "createTime": "2026-11-27T00:30:00.123456Z", "resourceLabels": {"meshmig-run": "new222"}}
    ]"#;
    let members = r#"[
      {"name": "projects/p/locations/us-central1/memberships/cluster-with-csm-membership-old111"},
      {"name": "projects/p/locations/us-central1/memberships/cluster-with-csm-membership-new222"}
    ]"#;
    let exec = Recorded::default().on(&["clusters list"], 0, list, "").on(
        &["memberships list"],
        0,
        members,
        "",
    );
    let now = chrono_like::Utc(chrono_like::parse("2026-11-27T01:00:00Z").unwrap());
    let done = gc(&exec, "p", Duration::from_secs(6 * 3600), now)
        .await
        .unwrap();
    assert_eq!(
        done,
        [
            "deleted cluster cluster-with-csm-old111 (run old111, 13h old)",
            "deleted fleet membership cluster-with-csm-membership-old111 (us-central1)"
        ]
    );
    let calls = exec.calls();
    assert!(calls.contains(&"gcloud container clusters list --project=p '--filter=resourceLabels.meshmig-run:*' --format=json".to_string()), "{calls:#?}");
    assert!(!calls
        .iter()
        .any(|c| c.contains("new222") && c.contains("delete")));
}

#[test]
fn timestamps_parse_as_gcloud_prints_them() {
    assert_eq!(chrono_like::parse("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        chrono_like::parse("2026-11-27T01:00:00+01:00"),
        chrono_like::parse("2026-11-27T00:00:00Z")
    );
    assert_eq!(
        chrono_like::parse("2000-03-01T00:00:00.5Z"),
        Some(951868800)
    );
    assert_eq!(chrono_like::parse("yesterday"), None);
}

/// What identifies a gcloud command apart from a run's values: its command words (up to the
/// first name, flag or value) and the names of its flags.
fn shape(c: &Cmd) -> (Vec<String>, BTreeSet<String>) {
    let words = c
        .args
        .iter()
        .take_while(|a| {
            a.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-') && !a.starts_with('-')
        })
        .cloned()
        .collect();
    let flags = c
        .args
        .iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect();
    (words, flags)
}

/// Issue 15: the list the real gcloud's parser checks (`gcloud_commands`, in
/// tests/gcloud_parser.rs) holds every gcloud command the backend, its teardown and `gc` really
/// issue: each call recorded here, with every gcloud-running method of the backend driven, has
/// the command words and flags of one in the list.
#[tokio::test]
async fn every_gcloud_call_of_the_backend_is_in_the_list_the_parser_checks() {
    let operations = r#"[{"name": "operation-1764203400123-5a6b7c8d", "zone": "us-central1-a",
      "operationType": "CREATE_CLUSTER", "status": "RUNNING",
      "targetLink": "https://container.googleapis.com/v1/projects/demo-project/zones/us-central1-a/clusters/cluster-with-csm-r2d2x9"}]"#;
    let exec = Arc::new(
        Recorded::default()
            .on(&["clusters list"], 0, CLUSTERS_JSON, "")
            .on(&["memberships list"], 0, MEMBERSHIPS_JSON, "")
            .on(&["operations list"], 0, operations, "")
            .on(&["compute"], 0, "[]", "")
            .on(&["print-access-token"], 0, "dummy-token\n", ""),
    );
    let cfg = GkeConfig {
        dns_zone: Some("shop-zone".into()),
        ..cfg()
    };
    let s = scenario("published-cleanup.yaml");
    meshmig::backend::gke::check_credentials(exec.as_ref())
        .await
        .unwrap();
    let b = Gke::with_exec(cfg.clone(), &s, exec.clone(), tempfile::tempdir().unwrap())
        .await
        .unwrap();
    for k in &s.clusters {
        b.create_cluster(k).await.unwrap();
    }
    let membership = "cluster-with-csm-membership".to_string();
    for op in [
        FleetOp::EnableMesh,
        FleetOp::Register {
            cluster: "cluster-with-csm".into(),
            membership: membership.clone(),
        },
        FleetOp::MeshUpdate {
            membership: membership.clone(),
        },
        FleetOp::Unregister { membership },
        FleetOp::DisableMesh,
    ] {
        b.fleet(&op).await.unwrap();
    }
    b.mesh_describe().await.unwrap();
    for ttl in [300, 1] {
        b.dns_set(&s.dns.domain, "34.70.1.2".parse().unwrap(), ttl)
            .await
            .unwrap();
    }
    b.delete_cluster("cluster-with-managed-asm").await.unwrap();
    b.inventory().await.unwrap();
    b.teardown(false).await;
    let now = chrono_like::Utc(chrono_like::parse("2026-11-28T00:00:00Z").unwrap());
    let gced = gc(exec.as_ref(), "demo-project", Duration::ZERO, now)
        .await
        .unwrap();
    assert_eq!(gced.len(), 2, "{gced:?}");

    let listed: BTreeSet<_> = meshmig::backend::gke::gcloud_commands(&cfg, &s)
        .iter()
        .map(shape)
        .collect();
    let issued: BTreeSet<_> = exec
        .cmds
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.program == "gcloud")
        .map(shape)
        .collect();
    let missing: Vec<_> = issued.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "issued but not in gcloud_commands (so never checked by the real parser): {missing:#?}"
    );
    // Every kind of call was made: creations, fleet, describe, DNS, deletes, listings, waits, gc.
    assert!(issued.len() >= 20, "{issued:#?}");
    // The comparison does fail on a command outside the list: the old teardown's `unregister`.
    let unregister = Cmd::new(
        "gcloud",
        [
            "container",
            "fleet",
            "memberships",
            "unregister",
            "cluster-with-csm-membership-r2d2x9",
            "--project",
            "demo-project",
            "--quiet",
        ],
    );
    assert!(!listed.contains(&shape(&unregister)));
}
