//! The GKE backend without Google Cloud: every gcloud call answered from outputs in the shape gcloud
//! prints them, recorded in order. Proves the commands and flags, the translation of run-suffixed
//! names back to the procedure's, leak detection after teardown, the published clean-up defect,
//! and `meshmig gc`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use meshmig::backend::exec::{Cmd, Exec, ExecError, Ran};
use meshmig::backend::gke::{chrono_like, gc, Gke, GkeConfig};
use meshmig::backend::{Backend, BackendError, FleetOp};
use meshmig::scenario::Scenario;

/// Answers by the first rule whose words all occur in the command line; records every line (and,
/// for a rule that takes time, `done: LINE` when it ends).
#[derive(Default)]
struct Recorded {
    rules: Vec<(Vec<&'static str>, i32, String, String, Duration)>,
    calls: Mutex<Vec<String>>,
    cmds: Mutex<Vec<Cmd>>,
}

impl Recorded {
    fn on(mut self, words: &[&'static str], code: i32, stdout: &str, stderr: &str) -> Self {
        self.rules.push((
            words.to_vec(),
            code,
            stdout.to_string(),
            stderr.to_string(),
            Duration::ZERO,
        ));
        self
    }
    /// As `on`, answering after `ms` milliseconds.
    fn slow(mut self, words: &[&'static str], ms: u64, stdout: &str, stderr: &str) -> Self {
        self.rules.push((
            words.to_vec(),
            0,
            stdout.to_string(),
            stderr.to_string(),
            Duration::from_millis(ms),
        ));
        self
    }
    /// The run's listings, empty: Compute Engine resources and cluster operations.
    fn empty_listings(self) -> Self {
        self.on(&["compute"], 0, "[]", "")
            .on(&["operations list"], 0, "[]", "")
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
        self.cmds.lock().unwrap().push(cmd.clone());
        let rule = self
            .rules
            .iter()
            .find(|(w, ..)| w.iter().all(|w| line.contains(w)));
        Ok(match rule {
            Some((_, code, out, err, delay)) => {
                if !delay.is_zero() {
                    tokio::time::sleep(*delay).await;
                    self.calls.lock().unwrap().push(format!("done: {line}"));
                }
                Ran {
                    code: Some(*code),
                    stdout: out.clone(),
                    stderr: err.clone(),
                }
            }
            None => Ran {
                code: Some(0),
                stdout: String::new(),
                stderr: String::new(),
            },
        })
    }
}

/// A scenario of the project, with the fixtures beside `scenarios/` as its manifests.
fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    meshmig::runner::load(&path, None).unwrap()
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

// Memberships of GKE clusters are regional: `register` puts them in the cluster's region
// (surface/container/fleet/memberships/register.py of gcloud 528: "The default value for
// `--location` is the same as the cluster's region or zone"); the list asks location `-`.
const MEMBERSHIPS_JSON: &str = r#"[
  {"name": "projects/demo-project/locations/us-central1/memberships/cluster-with-csm-membership-r2d2x9",
   "endpoint": {"gkeCluster": {"resourceLink": "//container.googleapis.com/projects/demo-project/locations/us-central1-a/clusters/cluster-with-csm-r2d2x9"}},
   "state": {"code": "READY"}, "uniqueId": "a1b2c3"},
  {"name": "projects/demo-project/locations/global/memberships/someone-else", "state": {"code": "READY"}}
]"#;

const RULES_JSON: &str = r#"[
  {"name": "a3f0c1d2e3b4", "IPAddress": "34.70.1.2", "IPProtocol": "TCP", "portRange": "80-80",
   "description": "{\"kubernetes.io/service-name\":\"asm-ingress/asm-ingressgateway\"}"},
  {"name": "unrelated", "IPAddress": "35.1.1.1", "IPProtocol": "TCP"}
]"#;

// gcloud 528's text for deleting a cluster that does not exist: clusters/delete.py raises
// `util.Error(util.ConstructList('Some requests did not succeed:', errors))` around the error of
// api_adapter.py's CheckClusterOtherZones (NO_SUCH_CLUSTER_ERROR_MSG), printed as a list of the
// error's attributes (reproduced with the installed SDK's own code); the server's 404 message is
// as quoted in kubernetes-sigs/gcp-filestore-csi-driver#109.
// gcloud 528 adds the credential it used to a 404's message (seen in the GKE rehearsal against the
// real gcloud 528, with the token-file credential the rehearsal gives it; with a user account
// the sentence names the account).
const NOT_FOUND: &str = "ERROR: (gcloud.container.clusters.delete) Some requests did not succeed:\n - args: [\"ResponseError: code=404, message=Not found: projects/demo-project/zones/us-central1-a/clusters/cluster-with-managed-asm-r2d2x9. This command is authenticated with an access token from /tmp/meshmig-rehearsal-css47h/gcloud/gcp-stand-in-token specified by the [auth/access_token_file] property.\\nNo cluster named 'cluster-with-managed-asm-r2d2x9' in demo-project.\"]\n   exit_code: 1\n";

// What gcloud 528's progress tracker writes to a pipe (stderr not a terminal): the message and
// `...`, then the dots and `done.` on the next line (core/console/progress_tracker.py,
// _NonInteractiveProgressTracker; reproduced with the installed SDK).
const REGISTER_STDERR: &str = "Waiting for membership to be created...\n.................done.\nFinished registering to the Fleet.\n";

/// `kubectl config get-contexts --output=name` once both creations wrote their contexts.
const CONTEXTS: &str = "gke_demo-project_us-central1-a_cluster-with-csm-r2d2x9\ngke_demo-project_us-central1-a_cluster-with-istio-r2d2x9\n";

async fn backend(exec: Arc<Recorded>, s: &Scenario) -> Gke {
    Gke::with_exec(cfg(), s, exec, tempfile::tempdir().unwrap())
        .await
        .unwrap()
}

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

/// Issue 8, item 18: permission, quota and API-disabled errors are the platform's (exit 3), not
/// findings about the procedure.
#[tokio::test]
async fn platform_errors_are_infrastructure_failures() {
    // kubernetes-native-testbed/kubernetes-native-testbed#787 (a real gcloud output).
    let disabled = "ERROR: (gcloud.container.clusters.delete) ResponseError: code=403, message=Kubernetes Engine API is not enabled for this project. Please ensure it is enabled in Google Cloud Console and try again: visit https://console.cloud.google.com/apis/api/container.googleapis.com/overview?project=demo-project to do so.\n";
    let exec = Arc::new(Recorded::default().on(&["clusters delete"], 1, "", disabled));
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec, &s).await;
    let err = b.delete_cluster("cluster-with-csm").await.unwrap_err();
    assert!(!err.is_procedure(), "{err}");
    assert!(
        err.to_string().contains("is not enabled for this project"),
        "{err}"
    );
}

/// The same holds for the cluster creations A1 starts together: a quota error there is the
/// platform's (the text of googlecodelabs/feedback#950, a real gcloud output).
#[tokio::test]
async fn a_quota_error_while_creating_is_an_infrastructure_failure() {
    let quota = "ERROR: (gcloud.container.clusters.create) ResponseError: code=403, message=\n        (1) insufficient regional quota to satisfy request: resource \"CPUS\": request requires '12.0' and is short '4.0'. project has a quota of '8.0' with '8.0' available.\n";
    let exec = Arc::new(Recorded::default().on(&["clusters create"], 1, "", quota));
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec, &s).await;
    let err = b
        .create_cluster(s.cluster("cluster-with-istio").unwrap())
        .await
        .unwrap_err();
    assert!(!err.is_procedure(), "{err}");
    assert!(
        err.to_string().contains("insufficient regional quota"),
        "{err}"
    );
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

/// Issue 8, item 18: credentials are checked by asking gcloud for a token, which appears in no
/// output; without one the message says what to run, and that ADC is not enough.
#[tokio::test]
async fn credentials_are_checked_without_showing_the_token() {
    let with = Recorded::default().on(&["auth print-access-token"], 0, "ya29.a0SECRET-TOKEN\n", "");
    assert!(meshmig::backend::gke::check_credentials(&with)
        .await
        .is_ok());
    // Recorded from gcloud 528.0.0 with no account (`gcloud auth print-access-token`, exit 1,
    // on the development machine); the first line is NoActiveAccountException's, in
    // googlecloudsdk/core/credentials/exceptions.py.
    let without = Recorded::default().on(
        &["auth print-access-token"],
        1,
        "",
        "ERROR: (gcloud.auth.print-access-token) You do not currently have an active account selected.\nPlease run:\n\n  $ gcloud auth login\n\nto obtain new credentials.\n\nIf you have already logged in with a different account, run:\n\n  $ gcloud config set account ACCOUNT\n\nto select an already authenticated account to use.\n",
    );
    let err = meshmig::backend::gke::check_credentials(&without)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("gcloud auth login"), "{err}");
    assert!(err.contains("Application Default Credentials"), "{err}");
    assert!(!err.contains("ya29"), "{err}");
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

/// Issue 14, item 5: credentials that reach the harness through a tool's output, an error or the
/// environment appear in no report (text or JSON) and no error. Without `meshmig::redact`, every
/// one of them would be printed.
#[tokio::test]
async fn credentials_appear_in_no_report_or_error() {
    const TOKEN: &str = "ya29.a0AfB_byC-SECRETtokenVALUE.0123";
    const KEY_BODY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCsecret";
    const KEY_ID: &str = "5f1d2e3c4b5a49688776655443322110deadbeef";
    const ENV_SECRET: &str = "s3cr3t-from-the-environment-42";
    std::env::set_var("MESHMIG_TEST_API_TOKEN", ENV_SECRET);
    // A service-account key file as Google writes it, echoed by a verbose tool.
    let key = format!(
        "{{\n  \"type\": \"service_account\",\n  \"project_id\": \"demo-project\",\n  \"private_key_id\": \"{KEY_ID}\",\n  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n{KEY_BODY}\\n-----END PRIVATE KEY-----\\n\",\n  \"client_email\": \"ci@demo-project.iam.gserviceaccount.com\"\n}}\n"
    );
    let create_stderr = format!(
        "DEBUG: Authorization: Bearer {TOKEN}\nUsing credentials from {key}Creating cluster cluster-with-istio-r2d2x9 in us-central1-a...\n....done.\n"
    );
    let rename_stderr = format!("error: token {ENV_SECRET} was refused\n");
    let exec = Arc::new(
        Recorded::default()
            .on(&["clusters create"], 0, "", &create_stderr)
            .on(&["rename-context"], 1, "", &rename_stderr)
            .on(
                &["clusters list"],
                0,
                r#"[{"name": "cluster-with-istio-r2d2x9", "zone": "us-central1-a", "status": "RUNNING"}]"#,
                "",
            )
            .on(&["memberships list"], 0, "[]", "")
            .empty_listings(),
    );
    let s = Arc::new(scenario("canary-cluster.yaml"));
    let b: Arc<dyn meshmig::backend::Backend> = Arc::new(backend(exec, &s).await);
    let report = meshmig::engine::run(
        s,
        b,
        meshmig::engine::RunOptions {
            progress: false,
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // The JSON, JUnit and HTML reports, one after the other.
    let json: String = meshmig::report::write_all(&report, dir.path())
        .unwrap()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let text: String = report
        .steps
        .iter()
        .map(meshmig::report::render_step)
        .chain([meshmig::report::render_end(&report)])
        .collect();
    let err = meshmig::error_chain(&BackendError::infra(
        "checking",
        format!("refused: {TOKEN} {ENV_SECRET}"),
    ));
    // A1 printed the token and the key; A2 failed on an error holding the environment's secret.
    assert!(
        text.contains("PASS A1") && text.contains("FAIL A2"),
        "{text}"
    );
    for secret in [TOKEN, "SECRETtokenVALUE", KEY_BODY, KEY_ID, ENV_SECRET] {
        assert!(!json.contains(secret), "{secret} in a report file");
        assert!(
            !text.contains(secret),
            "{secret} in the text report:\n{text}"
        );
        assert!(!err.contains(secret), "{secret} in an error: {err}");
    }
    assert!(text.contains("[REDACTED]"), "{text}");
    std::env::remove_var("MESHMIG_TEST_API_TOKEN");
}
