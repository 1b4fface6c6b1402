//! The first piece of a GKE rehearsal, on real components (`--features real`): the real gcloud
//! 528 creates a "GKE cluster" through the Google Cloud stand-in, and a real kwok cluster (etcd,
//! kube-apiserver, controller-manager, scheduler, kwok) comes up behind it; gcloud writes the
//! kubeconfig itself, with the gke-gcloud-auth-plugin; the harness's Kubernetes layer reaches the
//! API server through that plugin; `gcloud container clusters delete` stops the cluster.
//!
//! Needs gcloud with gke-gcloud-auth-plugin, the components (`meshmig tools install`), Envoy,
//! iproute2, util-linux and openssl; runs in a network namespace of its own.
#![cfg(all(feature = "real", target_os = "linux"))]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use meshmig::backend::kube::Kube;
use meshmig::backend::kwok::backend::KwokConfig;
use meshmig::backend::kwok::provider::KwokClusters;
use meshmig::gcp_stand_in::{GcpStandIn, Timing};
use meshmig::scenario::ClusterSpec;
use meshmig::tools::Tools;

/// Runs gcloud with the stand-in's environment and the test's kubeconfig.
fn gcloud(env: &[(String, String)], kubeconfig: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("gcloud")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("gcloud runs (it is installed with gke-gcloud-auth-plugin on these machines)");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// [`gcloud`] on a blocking thread, so the stand-in keeps answering on the runtime meanwhile.
async fn gcloud_off_runtime(
    env: &[(String, String)],
    kubeconfig: &Path,
    args: &[&str],
) -> (i32, String) {
    let (env, kubeconfig) = (env.to_vec(), kubeconfig.to_path_buf());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        gcloud(&env, &kubeconfig, &args)
    })
    .await
    .unwrap()
}

#[test]
fn gcloud_creates_a_kwok_cluster_and_the_auth_plugin_reaches_it() {
    meshmig::netns::run_test_in_own_namespace(
        "real_rehearsal::gcloud_creates_a_kwok_cluster_and_the_auth_plugin_reaches_it",
        || async {
            let dir = tempfile::tempdir().unwrap();
            let scratch = dir.path().join("gcloud");
            // The token gcloud (and so the plugin) hands out: the stand-in's token file.
            let probe = GcpStandIn::start(
                meshmig::gcp_stand_in::FixedProvider::new("127.0.0.1:1", "PEM"),
                Timing::default(),
            )
            .await
            .unwrap();
            let probe_env = probe.endpoint_env(&scratch).unwrap();
            probe.stop().await;
            let token_file = &probe_env
                .iter()
                .find(|(k, _)| k == "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE")
                .unwrap()
                .1;
            let token = std::fs::read_to_string(token_file)
                .unwrap()
                .trim()
                .to_string();
            let envoy = which("envoy");
            let specs = vec![ClusterSpec {
                name: "cluster-with-csm".into(),
                zone: "us-central1-a".into(),
                machine_type: None,
                nodes: None,
                workload_pool: true,
                footer: None,
            }];
            let clusters = Arc::new(KwokClusters::new(
                KwokConfig {
                    tools: Tools::from_env(),
                    envoy,
                    ready_timeout: Duration::from_secs(120),
                },
                specs,
                "r1",
                dir.path().join("clusters"),
                vec![token],
            ));
            let stand_in = GcpStandIn::start(clusters.clone(), Timing::default())
                .await
                .unwrap();
            let env = stand_in.endpoint_env(&scratch).unwrap();
            // kube-rs runs the kubeconfig's exec plugin with this process's environment.
            for (k, v) in &env {
                std::env::set_var(k, v);
            }
            let kubeconfig = dir.path().join("kubeconfig");
            let (code, out) = gcloud_off_runtime(
                &env,
                &kubeconfig,
                &[
                    "container",
                    "clusters",
                    "create",
                    "cluster-with-csm-r1",
                    "--zone=us-central1-a",
                    "--project=demo",
                    "--workload-pool",
                    "demo.svc.id.goog",
                    "--labels=meshmig-run=r1",
                ],
            )
            .await;
            assert_eq!(code, 0, "{out}");
            assert!(
                out.contains("kubeconfig entry generated for cluster-with-csm-r1."),
                "{out}"
            );
            assert_eq!(clusters.names().await, vec!["cluster-with-csm-r1"]);
            let kc = std::fs::read_to_string(&kubeconfig).unwrap();
            assert!(kc.contains("gke-gcloud-auth-plugin"), "{kc}");
            assert!(
                kc.contains("gke_demo_us-central1-a_cluster-with-csm-r1"),
                "{kc}"
            );
            // The harness's Kubernetes layer, through the plugin's token.
            let kube =
                Kube::from_kubeconfig(&kubeconfig, "gke_demo_us-central1-a_cluster-with-csm-r1")
                    .await
                    .unwrap();
            let ns: Vec<String> = kube
                .list("Namespace", None)
                .await
                .unwrap()
                .iter()
                .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
                .collect();
            assert!(ns.iter().any(|n| n == "kube-system"), "{ns:?}");

            let (code, out) = gcloud_off_runtime(
                &env,
                &kubeconfig,
                &[
                    "container",
                    "clusters",
                    "delete",
                    "cluster-with-csm-r1",
                    "--zone=us-central1-a",
                    "--project=demo",
                    "--quiet",
                ],
            )
            .await;
            assert_eq!(code, 0, "{out}");
            assert!(clusters.names().await.is_empty());
            assert!(kube.list("Namespace", None).await.is_err());
            stand_in.stop().await;
            clusters.stop_all().await;
        },
    );
}

fn which(tool: &str) -> std::path::PathBuf {
    meshmig::tools::on_path(tool).unwrap_or_else(|| panic!("{tool} is not on PATH"))
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// A rehearsal interrupted (SIGINT) while gcloud is creating the clusters exits 3 after
/// teardown: the creations' operations are waited for, the clusters deleted through gcloud, and
/// no kwok process or scratch folder of the run is left.
#[test]
fn a_rehearsal_interrupted_during_cluster_creation_leaves_nothing() {
    use std::io::{BufRead, BufReader};
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let upstream = meshmig_testsupport::shared("upstream");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshmig"))
        .args([
            "run",
            "scenarios/canary-cluster.yaml",
            "--backend",
            "gke",
            "--rehearsal",
            "--project",
            "demo",
            "--run-id",
            "intr1",
            "--manifests",
        ])
        .arg(&upstream)
        .current_dir(&project)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once gcloud is creating the first cluster.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while processes_mentioning("clusters create cluster-with-istio-intr1").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "gcloud never started creating the cluster"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let mut seen = String::new();
    for l in BufReader::new(child.stdout.take().unwrap()).lines() {
        seen.push_str(&l.unwrap());
        seen.push('\n');
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{seen}");
    assert!(seen.contains("INTERRUPTED"), "{seen}");
    assert!(!seen.contains("NOT REMOVED"), "{seen}");
    assert!(!seen.contains("LEAK"), "{seen}");
    let scratch = seen
        .lines()
        .find_map(|l| l.trim().strip_prefix("removed rehearsal scratch folder "))
        .unwrap_or_else(|| panic!("teardown names the rehearsal's folder: {seen}"))
        .to_string();
    assert!(!Path::new(&scratch).exists(), "{scratch}");
    assert_eq!(processes_mentioning(&scratch), Vec::<String>::new());
    assert_eq!(processes_mentioning("-intr1"), Vec::<String>::new());
}
