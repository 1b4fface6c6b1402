//! Every gcloud command of the GKE backend, run through the backend's own executor against the
//! stand-in.

use std::path::Path;
use std::time::{Duration, Instant};

use meshmig::gcp_stand_in::{FixedProvider, GcpStandIn, Timing};

use super::common::CA;

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
