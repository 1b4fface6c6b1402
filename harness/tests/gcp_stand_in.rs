//! The GCP stand-in (`meshmig::gcp_stand_in`) against the real gcloud 528: each test starts the
//! stand-in, points every API gcloud reaches at it, runs gcloud's real commands and asserts
//! gcloud's exit code and the lines it prints. Fails (never skips) when gcloud is missing.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use meshmig::gcp_stand_in::{
    ClusterEndpoint, ClusterId, ClusterProvider, FixedProvider, GcpStandIn, Timing,
};

/// A CA certificate shaped like a real one (content is not checked by gcloud).
const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBstandin\n-----END CERTIFICATE-----\n";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Clusters at a fixed endpoint, except those named `broken-*`, which never come up (as a kwok
/// cluster that fails to start will not).
struct TestProvider(std::sync::Arc<FixedProvider>);

#[async_trait::async_trait]
impl ClusterProvider for TestProvider {
    async fn create(&self, c: &ClusterId) -> Result<ClusterEndpoint, String> {
        if c.name.starts_with("broken-") {
            return Err(format!("cluster {} did not start", c.name));
        }
        self.0.create(c).await
    }
    async fn delete(&self, c: &ClusterId) -> Result<(), String> {
        self.0.delete(c).await
    }
}

async fn start() -> (GcpStandIn, tempfile::TempDir) {
    let s = GcpStandIn::start(
        std::sync::Arc::new(TestProvider(FixedProvider::new("127.0.0.1:6443", CA))),
        Timing {
            pending: Duration::from_millis(300),
            running: Duration::from_millis(1200),
        },
    )
    .await
    .expect("stand-in starts");
    (s, tempfile::tempdir().expect("scratch dir"))
}

/// Runs the real gcloud with the stand-in's environment (and KUBECONFIG in the scratch dir).
async fn gcloud(s: &GcpStandIn, scratch: &Path, args: &[&str]) -> Out {
    let mut cmd = tokio::process::Command::new("gcloud");
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", scratch)
        .env("KUBECONFIG", scratch.join("kubeconfig"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in s.endpoint_env(scratch).expect("env") {
        cmd.env(k, v);
    }
    let t = Instant::now();
    let out = cmd
        .output()
        .await
        .expect("the real gcloud must be installed (gcloud 528 at /usr/bin/gcloud)");
    let o = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t.elapsed(),
    };
    eprintln!(
        "$ gcloud {} -> exit {} in {:.1}s\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        o.code,
        o.took.as_secs_f64(),
        o.stdout,
        o.stderr
    );
    o
}

/// The progress line as a terminal shows it (`Creating cluster X in Z...done.`), from what the
/// non-interactive tracker writes to a pipe.
fn progress(stderr: &str) -> String {
    meshmig::gcloud::normalise_progress(stderr)
}

/// Container v1: create (progress, table, kubeconfig), list with the backend's label filter,
/// operations list, delete; then the 404 of a cluster that is gone, as gcloud prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_create_list_delete_and_the_404() {
    let (s, dir) = start().await;
    let d = dir.path();
    let p = "--project=demo";

    let o = gcloud(
        &s,
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

    let o = gcloud(
        &s,
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
        &s,
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

    let o = gcloud(
        &s,
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
        &s,
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

    let o = gcloud(
        &s,
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

    // A cluster whose provider fails: the operation ends DONE with its statusMessage, which
    // gcloud reports after the tracker's `done.` (api_adapter.py, WaitForOperation).
    let o = gcloud(
        &s,
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

    // H of the published procedure: the cluster it deletes was never created.
    let o = gcloud(
        &s,
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
    s.stop().await;
}

fn b64(s: &str) -> String {
    // RFC 4648 base64, to compare with what the stand-in reports and gcloud writes.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// The fleet (gkehub v1 / v2) and Service Usage: steps C3–C6 and the clean-up of the published
/// procedure, with the mesh state set from outside between two `describe`s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_register_mesh_update_describe_and_clean_up() {
    use meshmig::fleet::{membership_status, StandInState};
    let (s, dir) = start().await;
    let d = dir.path();
    let run = |args: &'static [&'static str]| gcloud(&s, d, args);
    let m = "cluster-with-csm-membership";

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
    // Again: the published line's other wording (harness/src/gcloud.rs, DRIFTS).
    let o = run(&["container", "fleet", "mesh", "enable", "--project", "demo"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("Service Mesh Feature for project [demo] is already enabled"),
        "{}",
        o.stderr
    );

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

    // C5: the v2 membership feature (the drift harness/src/gcloud.rs records).
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
    s.stop().await;
}

/// Compute lists (what a LoadBalancer Service leaves behind, empty or seeded) and the DNS
/// cut-over of step G through Cloud DNS record sets, with Cloud DNS' 404 for a missing zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_lists_and_dns_record_sets() {
    let (s, dir) = start().await;
    let d = dir.path();
    s.seed_compute(
        "forwardingRules",
        vec![serde_json::json!({"name": "a3f0c1d2e3b4", "IPAddress": "203.0.113.7", "IPProtocol": "TCP",
            "portRange": "80-80", "region": "https://compute.googleapis.com/compute/v1/projects/demo/regions/us-central1",
            "description": "{\"kubernetes.io/service-name\":\"asm-ingress/asm-ingressgateway\"}"})],
    );
    let o = gcloud(
        &s,
        d,
        &[
            "compute",
            "forwarding-rules",
            "list",
            "--project=demo",
            "--format=json",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.is_empty(), "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON list");
    assert_eq!(v[0]["name"], "a3f0c1d2e3b4");
    assert_eq!(v[0]["IPAddress"], "203.0.113.7");
    for what in [
        "target-pools",
        "backend-services",
        "health-checks",
        "http-health-checks",
        "firewall-rules",
    ] {
        let o = gcloud(
            &s,
            d,
            &["compute", what, "list", "--project=demo", "--format=json"],
        )
        .await;
        assert_eq!((o.code, o.stdout.trim()), (0, "[]"), "{what}: {}", o.stderr);
        assert!(o.stderr.is_empty(), "{what}: {}", o.stderr);
    }

    // G through Cloud DNS: create, lower the TTL / move the address, delete.
    let o = gcloud(
        &s,
        d,
        &[
            "dns",
            "record-sets",
            "create",
            "shop.example.com.",
            "--zone=shop",
            "--type=A",
            "--ttl=300",
            "--rrdatas=203.0.113.7",
            "--project=demo",
        ],
    )
    .await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr.starts_with("ERROR: (gcloud.dns.record-sets.create) NOT_FOUND: The 'parameters.managedZone' resource named 'shop' does not exist."),
        "{}",
        o.stderr
    );
    s.add_dns_zone("demo", "shop", "example.com");
    let o = gcloud(
        &s,
        d,
        &[
            "dns",
            "record-sets",
            "create",
            "shop.example.com.",
            "--zone=shop",
            "--type=A",
            "--ttl=300",
            "--rrdatas=203.0.113.7",
            "--project=demo",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["shop.example.com.", "A", "300", "203.0.113.7"]),
        "{}",
        o.stdout
    );
    let o = gcloud(
        &s,
        d,
        &[
            "dns",
            "record-sets",
            "update",
            "shop.example.com.",
            "--zone=shop",
            "--type=A",
            "--ttl=30",
            "--rrdatas=203.0.113.8",
            "--project=demo",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let a: Vec<_> = s
        .dns_records("demo", "shop")
        .into_iter()
        .filter(|r| r["type"] == "A")
        .collect();
    assert_eq!(
        a,
        vec![
            serde_json::json!({"kind": "dns#resourceRecordSet", "name": "shop.example.com.", "type": "A", "ttl": 30, "rrdatas": ["203.0.113.8"]})
        ]
    );
    let o = gcloud(
        &s,
        d,
        &[
            "dns",
            "record-sets",
            "list",
            "--zone=shop",
            "--project=demo",
            "--format=json",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON list");
    assert_eq!(v.as_array().map(Vec::len), Some(3), "{v}");
    let o = gcloud(
        &s,
        d,
        &[
            "dns",
            "record-sets",
            "delete",
            "shop.example.com.",
            "--zone=shop",
            "--type=A",
            "--project=demo",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.starts_with("Deleted [http://127.0.0.1:")
            && o.stderr
                .trim_end()
                .ends_with("/dns/projects/demo/managedZones/shop/rrsets/shop.example.com./A]."),
        "{}",
        o.stderr
    );
    assert!(s
        .dns_records("demo", "shop")
        .iter()
        .all(|r| r["type"] != "A"));
    s.stop().await;
}

/// Every gcloud command the GKE backend issues (`meshmig::backend::gke::Commands`: plan,
/// teardown, `gc`), in the procedure's order, succeeds against the stand-in through the
/// backend's own executor; operations take no time here (gcloud still polls them once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_of_the_gke_backend_succeeds_against_the_stand_in() {
    use meshmig::backend::exec::{Exec, Process};
    use meshmig::backend::gke::{Commands, GkeConfig, LOAD_BALANCER_KINDS};
    use meshmig::backend::FleetOp;

    let s = GcpStandIn::start(
        FixedProvider::new("127.0.0.1:6443", CA),
        Timing {
            pending: Duration::ZERO,
            running: Duration::ZERO,
        },
    )
    .await
    .expect("stand-in starts");
    let dir = tempfile::tempdir().expect("scratch dir");
    let mut env: std::collections::BTreeMap<String, std::path::PathBuf> = s
        .endpoint_env(dir.path())
        .expect("env")
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    env.insert("KUBECONFIG".into(), dir.path().join("kubeconfig"));
    let exec = Process { env };
    let scenario = meshmig::runner::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/canary-cluster.yaml"),
        None,
    )
    .expect("scenario");
    let cfg = GkeConfig {
        run_id: "r2d2x9".into(),
        ..GkeConfig::new("demo-project")
    };
    s.add_dns_zone("demo-project", "zone", "example.org");
    let c = Commands::new(&cfg, &scenario.clusters);
    let membership = FleetOp::Register {
        cluster: "cluster-with-csm".into(),
        membership: "cluster-with-csm-membership".into(),
    };
    let mut cmds = Vec::new();
    for k in &scenario.clusters {
        cmds.push(c.create_cluster(k));
    }
    cmds.push(c.fleet(&FleetOp::EnableMesh, None));
    cmds.push(c.fleet(&membership, None));
    cmds.push(c.fleet(
        &FleetOp::MeshUpdate {
            membership: "cluster-with-csm-membership".into(),
        },
        None,
    ));
    cmds.push(c.mesh_describe());
    let ip = "203.0.113.7".parse().expect("IP");
    cmds.push(c.dns_record("zone", "shop.example.org", ip, 300, true));
    cmds.push(c.dns_record("zone", "shop.example.org", ip, 1, false));
    cmds.push(c.list_clusters(false));
    cmds.push(c.list_clusters(true));
    cmds.push(c.list_memberships());
    cmds.push(c.list_operations());
    cmds.push(c.fleet(
        &FleetOp::Unregister {
            membership: "cluster-with-csm-membership".into(),
        },
        None,
    ));
    cmds.push(c.fleet(&FleetOp::DisableMesh, None));
    cmds.push(c.delete_dns_record("zone", "shop.example.org"));
    for k in &scenario.clusters {
        cmds.push(c.delete_cluster(&k.name));
    }
    for what in LOAD_BALANCER_KINDS {
        cmds.push(c.list_compute(what));
    }
    let mut failed = Vec::new();
    for cmd in &cmds {
        let t = Instant::now();
        let ran = exec.run(cmd).await.expect("gcloud runs");
        eprintln!(
            "$ {} -> exit {:?} in {:.1}s",
            cmd.line(),
            ran.code,
            t.elapsed().as_secs_f64()
        );
        if ran.code != Some(0) {
            failed.push(format!("{}\n{}", cmd.line(), ran.stderr));
        }
    }
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
    // What the backend's commands asked of each API (paths from the SDK's generated clients).
    let asked = s.requests();
    for want in [
        "POST /container/v1/projects/demo-project/locations/us-central1-a/clusters?",
        "GET /serviceusage/v1/projects/demo-project/services/container.googleapis.com?",
        "POST /serviceusage/v1/projects/demo-project/services/meshconfig.googleapis.com:enable?",
        "POST /gkehub/v1/projects/demo-project/locations/global/features?",
        "POST /gkehub/v1/projects/demo-project/locations/us-central1/memberships?",
        "PATCH /gkehub/v2/projects/demo-project/locations/us-central1/memberships/cluster-with-csm-membership-r2d2x9/features/servicemesh?",
        "GET /compute/projects/demo-project/aggregated/forwardingRules?",
        "GET /compute/projects/demo-project/global/firewalls?",
        "POST /dns/projects/demo-project/managedZones/zone/rrsets?",
    ] {
        assert!(asked.iter().any(|r| r.starts_with(want)), "{want} not in {asked:#?}");
    }
    assert!(s.cluster_names().is_empty() && s.membership_names().is_empty());
    s.stop().await;
}
