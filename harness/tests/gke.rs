//! The GKE backend without Google Cloud: every gcloud call answered from outputs in the shape gcloud
//! prints them, recorded in order. Proves the commands and flags, the translation of run-suffixed
//! names back to the procedure's, leak detection after teardown, the published clean-up defect,
//! and `meshmig gc`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use meshmig::backend::exec::{Cmd, Exec, ExecError, Ran};
use meshmig::backend::gke::{chrono_like, gc, Gke, GkeConfig};
use meshmig::backend::{Backend, BackendError, FleetOp};
use meshmig::manifest::ManifestSource;
use meshmig::scenario::Scenario;

/// Answers by the first rule whose words all occur in the command line; records every line.
#[derive(Default)]
struct Recorded {
    rules: Vec<(Vec<&'static str>, i32, String, String)>,
    calls: Mutex<Vec<String>>,
}

impl Recorded {
    fn on(mut self, words: &[&'static str], code: i32, stdout: &str, stderr: &str) -> Self {
        self.rules
            .push((words.to_vec(), code, stdout.to_string(), stderr.to_string()));
        self
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Exec for Recorded {
    async fn run(&self, cmd: &Cmd) -> Result<Ran, ExecError> {
        let line = cmd.line();
        self.calls.lock().unwrap().push(line.clone());
        let rule = self
            .rules
            .iter()
            .find(|(w, ..)| w.iter().all(|w| line.contains(w)));
        Ok(match rule {
            Some((_, code, out, err)) => Ran {
                code: Some(*code),
                stdout: out.clone(),
                stderr: err.clone(),
            },
            None => Ran {
                code: Some(0),
                stdout: String::new(),
                stderr: String::new(),
            },
        })
    }
}

fn scenario(name: &str) -> Scenario {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    meshmig::scenario::load(
        &root.join("scenarios").join(name),
        &ManifestSource::new(root.join("fixtures")),
    )
    .unwrap()
}

fn cfg() -> GkeConfig {
    GkeConfig {
        run_id: "r2d2x9".into(),
        ..GkeConfig::new("demo-project")
    }
}

const CLUSTERS_JSON: &str = r#"[
  {"name": "cluster-with-csm-r2d2x9", "location": "us-central1-a", "zone": "us-central1-a", "status": "RUNNING",
   "createTime": "2026-11-27T00:10:00+00:00", "resourceLabels": {"meshmig-run": "r2d2x9"},
   "currentMasterVersion": "1.33.5-gke.1201000", "endpoint": "34.123.45.67"}
]"#;

const MEMBERSHIPS_JSON: &str = r#"[
  {"name": "projects/demo-project/locations/global/memberships/cluster-with-csm-membership-r2d2x9",
   "endpoint": {"gkeCluster": {"resourceLink": "//container.googleapis.com/projects/demo-project/locations/us-central1-a/clusters/cluster-with-csm-r2d2x9"}},
   "state": {"code": "READY"}, "uniqueId": "a1b2c3"},
  {"name": "projects/demo-project/locations/global/memberships/someone-else", "state": {"code": "READY"}}
]"#;

const RULES_JSON: &str = r#"[
  {"name": "a3f0c1d2e3b4", "IPAddress": "34.70.1.2", "IPProtocol": "TCP", "portRange": "80-80",
   "description": "{\"kubernetes.io/service-name\":\"asm-ingress/asm-ingressgateway\"}"},
  {"name": "unrelated", "IPAddress": "35.1.1.1", "IPProtocol": "TCP"}
]"#;

const NOT_FOUND: &str = "ERROR: (gcloud.container.clusters.delete) Some requests did not succeed:\n - ResponseError: code=404, message=Not found: projects/demo-project/zones/us-central1-a/clusters/cluster-with-managed-asm-r2d2x9.\n";

async fn backend(exec: Arc<Recorded>, s: &Scenario) -> Gke {
    Gke::with_exec(cfg(), s, exec, tempfile::tempdir().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn commands_carry_the_procedures_flags_and_the_run_id() {
    let exec = Arc::new(Recorded::default());
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec.clone(), &s).await;
    b.create_cluster(s.cluster("cluster-with-csm").unwrap())
        .await
        .unwrap();
    b.rename_context("cluster-with-csm").await.unwrap();
    b.fleet(&FleetOp::EnableMesh).await.unwrap();
    b.fleet(&FleetOp::Register {
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
    assert_eq!(
        exec.calls(),
        [
            "gcloud container fleet mesh describe --project demo-project --format=yaml",
            "gcloud container clusters create cluster-with-csm-r2d2x9 --project=demo-project --zone=us-central1-a --machine-type=e2-standard-4 --num-nodes=2 --workload-pool demo-project.svc.id.goog --labels=meshmig-run=r2d2x9",
            "kubectl config rename-context gke_demo-project_us-central1-a_cluster-with-csm-r2d2x9 cluster-with-csm",
            "gcloud container fleet mesh enable --project demo-project",
            "gcloud container fleet memberships register cluster-with-csm-membership-r2d2x9 --gke-cluster=us-central1-a/cluster-with-csm-r2d2x9 --enable-workload-identity --project demo-project",
            "gcloud container fleet mesh update --management automatic --memberships cluster-with-csm-membership-r2d2x9 --project demo-project",
            "gcloud container fleet memberships unregister cluster-with-csm-membership-r2d2x9 --gke-cluster=us-central1-a/cluster-with-csm-r2d2x9 --project demo-project --quiet",
        ]
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
            .on(&["forwarding-rules list"], 0, RULES_JSON, ""),
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
            .on(&["forwarding-rules list"], 0, RULES_JSON, ""),
    );
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec.clone(), &s).await;
    let report = b.teardown(false).await;
    let calls = exec.calls();
    assert!(
        calls.iter().any(|c| c.starts_with(
            "gcloud container fleet memberships unregister cluster-with-csm-membership-r2d2x9"
        )),
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
            .any(|f| f == "LEAK: fleet membership cluster-with-csm-membership-r2d2x9"),
        "{report:?}"
    );
}

#[tokio::test]
async fn credentials_never_appear_in_commands() {
    std::env::set_var("GOOGLE_APPLICATION_CREDENTIALS", "/secret/key.json");
    let exec = Arc::new(Recorded::default());
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec.clone(), &s).await;
    b.create_cluster(s.cluster("cluster-with-istio").unwrap())
        .await
        .unwrap();
    assert!(exec
        .calls()
        .iter()
        .all(|c| !c.contains("secret") && !c.contains("key.json")));
}

#[tokio::test]
async fn gc_deletes_only_clusters_older_than_the_threshold_and_their_memberships() {
    let list = r#"[
      {"name": "cluster-with-csm-old111", "zone": "us-central1-a", "createTime": "2026-11-26T12:00:00+00:00", "resourceLabels": {"meshmig-run": "old111"}},
      {"name": "cluster-with-csm-new222", "zone": "us-central1-a", "createTime": "2026-11-27T00:30:00.123456Z", "resourceLabels": {"meshmig-run": "new222"}}
    ]"#;
    let members = r#"[
      {"name": "projects/p/locations/global/memberships/cluster-with-csm-membership-old111"},
      {"name": "projects/p/locations/global/memberships/cluster-with-csm-membership-new222"}
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
            "unregistered fleet membership cluster-with-csm-membership-old111"
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

// What gcloud prints on stderr when a newer release exists: the text of NotificationMessage in
// googlecloudsdk/core/updater/schemas.py of gcloud 528.0.0 (the one installed on these machines),
// '\n\n' + message + '\n\n'. A listing's JSON on stdout must still be read.
const UPDATE_NOTICE: &str = "\n\nUpdates are available for some Google Cloud CLI components.  To install them,\nplease run:\n  $ gcloud components update\n\n";

/// Issue 8, item 14: stdout and stderr were concatenated, so an update notice made every
/// listing unparsable, and a parse failure became an empty list.
#[tokio::test]
async fn listings_read_stdout_only_and_a_parse_failure_is_an_infrastructure_error() {
    let s = scenario("canary-cluster.yaml");
    let exec =
        Arc::new(Recorded::default().on(&["clusters list"], 0, CLUSTERS_JSON, UPDATE_NOTICE));
    let b = backend(exec, &s).await;
    let clusters = b.clusters().await.unwrap();
    assert_eq!(
        clusters.get("cluster-with-csm").map(String::as_str),
        Some("RUNNING"),
        "{clusters:?}"
    );

    // Not gcloud's output for --format=json: what a wrapper or a broken install might print
    // instead of the JSON list.
    let exec = Arc::new(Recorded::default().on(
        &["clusters list"],
        0,
        "Listed 0 items.\nWARNING: something else\n",
        "",
    ));
    let b = backend(exec, &s).await;
    let err = b.clusters().await.unwrap_err();
    assert!(!err.is_procedure(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("reading the JSON list"), "{msg}");
    assert!(msg.contains("Listed 0 items."), "{msg}");
}
