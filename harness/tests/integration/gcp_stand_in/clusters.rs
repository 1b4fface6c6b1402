//! Container v1 through the real gcloud: create, list, operations, delete, a creation that
//! fails, and the 404 of the published clean-up's cluster.

use std::path::Path;

use meshmig::gcp_stand_in::GcpStandIn;

use super::common::{b64, gcloud, progress, start, CA};

/// Container v1: create (progress, table, kubeconfig), list with the backend's label filter,
/// operations list, delete; then the 404 of a cluster that is gone, as gcloud prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_create_list_delete_and_the_404() {
    let (s, dir) = start().await;
    let d = dir.path();
    let p = "--project=demo";

    create(&s, d, p).await;
    list(&s, d, p).await;
    operations(&s, d, p).await;
    delete(&s, d, p).await;
    create_failing(&s, d, p).await;
    delete_missing(&s, d).await;
    s.stop().await;
}

/// Creates `cluster-with-csm`: gcloud's progress, its table and the kubeconfig entry it writes.
async fn create(s: &GcpStandIn, d: &Path, p: &str) {
    let o = gcloud(
        s,
        d,
        &[
            "container",
            "clusters",
            "create",
            "cluster-with-csm",
            p,
            "--zone=us-central1-a",
            "--machine-type=e2-standard-4",
            "--num-nodes=2",
            "--workload-pool",
            "demo.svc.id.goog",
            "--labels=meshmig-run=r1",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let err = progress(&o.stderr);
    assert!(
        err.contains("Creating cluster cluster-with-csm in us-central1-a...done."),
        "{err}"
    );
    // The tracker ticked while the operation was PENDING / RUNNING.
    assert!(
        o.stderr.contains("..\n") || o.stderr.contains(".done."),
        "{}",
        o.stderr
    );
    assert!(
        err.contains("Created [http://127.0.0.1:")
            && err.contains("/v1/projects/demo/zones/us-central1-a/clusters/cluster-with-csm]."),
        "{err}"
    );
    assert!(
        err.contains("kubeconfig entry generated for cluster-with-csm."),
        "{err}"
    );
    let table = o.stdout.lines().nth(1).unwrap_or_default().to_string();
    for col in [
        "cluster-with-csm",
        "us-central1-a",
        "127.0.0.1:6443",
        "RUNNING",
    ] {
        assert!(table.contains(col), "{}", o.stdout);
    }
    // gcloud wrote the kubeconfig entry, with the exec plugin GKE kubeconfigs use.
    let kc = std::fs::read_to_string(d.join("kubeconfig")).expect("gcloud wrote KUBECONFIG");
    for want in [
        "name: gke_demo_us-central1-a_cluster-with-csm",
        "server: https://127.0.0.1:6443",
        "command: gke-gcloud-auth-plugin",
        &format!("certificate-authority-data: {}", b64(CA)),
    ] {
        assert!(kc.contains(want), "{want} not in\n{kc}");
    }
}

/// Lists the clusters with the backend's label filter: this run's, then another run's.
async fn list(s: &GcpStandIn, d: &Path, p: &str) {
    let o = gcloud(
        s,
        d,
        &[
            "container",
            "clusters",
            "list",
            p,
            "--filter=resourceLabels.meshmig-run=r1",
            "--format=json",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON list");
    assert_eq!(v[0]["name"], "cluster-with-csm");
    assert_eq!(v[0]["status"], "RUNNING");
    assert_eq!(v[0]["resourceLabels"]["meshmig-run"], "r1");
    assert_eq!(
        v[0]["workloadIdentityConfig"]["workloadPool"],
        "demo.svc.id.goog"
    );
    assert_eq!(v[0]["masterAuth"]["clusterCaCertificate"], b64(CA));
    // Another run's filter sees nothing.
    let o = gcloud(
        s,
        d,
        &[
            "container",
            "clusters",
            "list",
            p,
            "--filter=resourceLabels.meshmig-run=r2",
            "--format=json",
        ],
    )
    .await;
    assert_eq!((o.code, o.stdout.trim()), (0, "[]"), "{}", o.stderr);
}

/// Lists the finished creation's operation and waits for it.
async fn operations(s: &GcpStandIn, d: &Path, p: &str) {
    let o = gcloud(
        s,
        d,
        &[
            "container",
            "operations",
            "list",
            p,
            "--filter=status=DONE AND targetLink~/cluster-with-csm$",
            "--format=json",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON list");
    assert_eq!(v[0]["operationType"], "CREATE_CLUSTER");
    // The backend's `operations wait` on a finished operation returns at once.
    let id = v[0]["name"].as_str().expect("operation name").to_string();
    let o = gcloud(
        s,
        d,
        &[
            "container",
            "operations",
            "wait",
            &id,
            "--zone=us-central1-a",
            p,
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        progress(&o.stderr).contains(&format!("Waiting for {id} to complete...done.")),
        "{}",
        o.stderr
    );
}

/// Deletes `cluster-with-csm`: gcloud's progress, and the kubeconfig entry gone.
async fn delete(s: &GcpStandIn, d: &Path, p: &str) {
    let o = gcloud(
        s,
        d,
        &[
            "container",
            "clusters",
            "delete",
            "cluster-with-csm",
            "--zone=us-central1-a",
            p,
            "--quiet",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let err = progress(&o.stderr);
    assert!(
        err.contains("Deleting cluster cluster-with-csm...done."),
        "{err}"
    );
    assert!(err.contains("Deleted [http://127.0.0.1:"), "{err}");
    assert!(s.cluster_names().is_empty());
    let kc = std::fs::read_to_string(d.join("kubeconfig")).unwrap_or_default();
    assert!(!kc.contains("server: https://127.0.0.1:6443"), "{kc}");
}

/// Creates a cluster whose provider fails: gcloud's error after the tracker.
async fn create_failing(s: &GcpStandIn, d: &Path, p: &str) {
    // A cluster whose provider fails: the operation ends DONE with its statusMessage, which
    // gcloud reports after the tracker's `done.` (api_adapter.py, WaitForOperation).
    let o = gcloud(
        s,
        d,
        &[
            "container",
            "clusters",
            "create",
            "broken-one",
            p,
            "--zone=us-central1-a",
            "--num-nodes=1",
        ],
    )
    .await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    let err = progress(&o.stderr);
    assert!(err.contains("Creating cluster broken-one in us-central1-a...done.\nERROR: (gcloud.container.clusters.create) Operation [<Operation"), "{err}");
    assert!(
        err.trim_end()
            .ends_with("] finished with error: cluster broken-one did not start"),
        "{err}"
    );
}

/// Deletes the cluster the published clean-up names, never created: gcloud's 404.
async fn delete_missing(s: &GcpStandIn, d: &Path) {
    // H of the published procedure: the cluster it deletes was never created.
    let o = gcloud(
        s,
        d,
        &[
            "container",
            "clusters",
            "delete",
            "cluster-with-managed-asm",
            "--zone",
            "us-central1-a",
            "--project",
            "demo",
            "--quiet",
        ],
    )
    .await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    // gcloud 528 appends which credential it used to the server's text of a 401/403/404
    // (googlecloudsdk/api_lib/util/exceptions.py, HttpErrorPayload, and
    // googlecloudsdk/core/credentials/store.py, CredentialInfo.GetInfoString): with the
    // stand-in's token file it names the file; with a user account it names the account.
    let token = d.join("gcp-stand-in-token");
    assert_eq!(
        o.stderr.trim_end(),
        format!(
            "ERROR: (gcloud.container.clusters.delete) Some requests did not succeed:\n - args: [\"ResponseError: code=404, message=Not found: projects/demo/zones/us-central1-a/clusters/cluster-with-managed-asm. This command is authenticated with an access token from {} specified by the [auth/access_token_file] property.\\nNo cluster named 'cluster-with-managed-asm' in demo.\"]\n   exit_code: 1",
            token.display()
        ),
    );
}
