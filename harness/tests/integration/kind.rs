//! Pieces of the kind backend that run without a container engine: the GCE metadata stand-in the
//! frontends query (with the `Metadata-Flavor: Google` header the metadata client sends); the
//! cloud-provider-kind container request and the liveness mapping; the docker commands teardown
//! and `meshmig gc --backend kind` issue, against recorded outputs; node images; doctor notes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

#[tokio::test]
async fn the_metadata_stand_in_answers_as_the_gce_metadata_server() {
    // 127.0.0.1 and a free port: other loopback addresses exist only on Linux (macOS has
    // 127.0.0.1 alone), and a fixed port may be taken.
    let free = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        free.local_addr().unwrap().port(),
    );
    drop(free);
    let server = tokio::spawn(meshmig::backend::kind::metadata_server(
        addr,
        "cluster-with-csm".into(),
        "us-central1-a".into(),
    ));
    let client = reqwest::Client::new();
    let get = |path: &str, flavor: bool| {
        let mut r = client.get(format!("http://{addr}{path}"));
        if flavor {
            r = r.header("Metadata-Flavor", "Google");
        }
        r.send()
    };
    let mut tries = 0;
    let name = loop {
        match get("/computeMetadata/v1/instance/attributes/cluster-name", true).await {
            Ok(r) => break r,
            Err(_) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(name.text().await.unwrap(), "cluster-with-csm");
    let zone = get("/computeMetadata/v1/instance/zone", true)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(zone, "projects/000000000000/zones/us-central1-a");
    let refused = get(
        "/computeMetadata/v1/instance/attributes/cluster-name",
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        refused.status().as_u16(),
        403,
        "without Metadata-Flavor: Google"
    );
    server.abort();
}

// ---------------------------------------------------------------------------------------------
// cloud-provider-kind in a container, teardown of its load balancers, node images, `gc`, doctor.
// No container engine here: the container request is checked as built, Docker's answers are
// recorded outputs (each cited), and liveness is the mapping from Docker's container state.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use meshmig::backend::exec::{Cmd, Exec, ExecError, Ran};
use meshmig::backend::gke::chrono_like;
use meshmig::backend::kind::{
    cloud_provider_request, doctor_notes, doctor_notes_for, gc, liveness, node_image_from,
    remove_load_balancers, Commands, GcTools, Kind, KindConfig, KindError, ProviderState,
    CLOUD_PROVIDER_KIND_IMAGE, CLOUD_PROVIDER_KIND_TAG, LB_CLUSTER_LABEL,
};
use meshmig::backend::{Backend, BackendError};
use meshmig::scenario::Scenario;
use testcontainers::core::MountType;
use testcontainers::Image;

/// Answers each command by the first rule whose words all occur in its line, with that rule's
/// answers in turn (the last one repeats); records every line.
#[derive(Default)]
struct Scripted {
    rules: Vec<(Vec<&'static str>, Vec<Ran>)>,
    used: Mutex<Vec<usize>>,
    calls: Mutex<Vec<String>>,
}

impl Scripted {
    fn on(mut self, words: &[&'static str], answers: &[(i32, &str, &str)]) -> Self {
        self.rules.push((
            words.to_vec(),
            answers
                .iter()
                .map(|(code, out, err)| Ran {
                    code: Some(*code),
                    stdout: out.to_string(),
                    stderr: err.to_string(),
                })
                .collect(),
        ));
        self.used.lock().unwrap().push(0);
        self
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Exec for Scripted {
    async fn run(&self, cmd: &Cmd) -> Result<Ran, ExecError> {
        let line = cmd.line();
        self.calls.lock().unwrap().push(line.clone());
        let Some(i) = self
            .rules
            .iter()
            .position(|(w, _)| w.iter().all(|w| line.contains(w)))
        else {
            return Ok(Ran {
                code: Some(0),
                ..Ran::default()
            });
        };
        let mut used = self.used.lock().unwrap();
        let answers = &self.rules[i].1;
        let a = answers[used[i].min(answers.len() - 1)].clone();
        used[i] += 1;
        Ok(a)
    }
}

/// A scenario of the project, with the fixtures beside `scenarios/` as its manifests.
fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    meshmig::runner::load(&path, None).unwrap()
}

fn cfg() -> KindConfig {
    KindConfig {
        run_id: "run42".into(),
        node_image: None,
        ..KindConfig::new(Path::new("kind-configs"), Path::new("istioctl"))
    }
}

/// What `kind get clusters` prints: each cluster's name on a line of stdout; with none, nothing
/// on stdout and "No kind clusters found." on stderr (kind v0.30.0,
/// pkg/cmd/kind/get/clusters/clusters.go: `fmt.Fprintln(streams.Out, cluster)`,
/// `logger.V(0).Info("No kind clusters found.")`).
const KIND_GET_BOTH: &str = "cluster-with-istio-run42\ncluster-with-csm-run42\n";
const KIND_GET_NONE_STDERR: &str = "No kind clusters found.\n";

/// What `kind delete cluster --name N` prints on stderr (kind v0.30.0,
/// pkg/cmd/kind/delete/cluster/deletecluster.go `Deleting cluster %q ...` and
/// pkg/cluster/internal/delete/delete.go `Deleted nodes: %q`).
const KIND_DELETE_ISTIO: &str = "Deleting cluster \"cluster-with-istio-run42\" ...\nDeleted nodes: [\"cluster-with-istio-run42-worker2\" \"cluster-with-istio-run42-control-plane\" \"cluster-with-istio-run42-worker\"]\n";

/// `docker ps -aq`: one 12-character container ID a line ("-q, --quiet  Only display container
/// IDs", https://docs.docker.com/reference/cli/docker/container/ls/).
const PS_ISTIO_LBS: &str = "5d3f9a1c2b7e\n";
const PS_CSM_LBS: &str = "8c1e4b7a9f20\n0a9b8c7d6e5f\n";

/// `docker rm -f ID…` prints each name it was given on stdout (docker/cli
/// cli/command/container/rm.go: `fmt.Fprintln(dockerCli.Out(), name)`).
const RM_CSM_LBS: &str = "8c1e4b7a9f20\n0a9b8c7d6e5f\n";

/// The Docker client's error when the engine is not reachable (github.com/docker/docker
/// client/errors.go, `ErrorConnectionFailed`: "Cannot connect to the Docker daemon at %s. Is the
/// docker daemon running?").
const NO_ENGINE: &str =
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n";

#[test]
fn cloud_provider_kind_runs_from_its_published_image_with_the_docker_socket_on_host_network() {
    let req = cloud_provider_request("run42");
    assert_eq!(
        req.image().name(),
        "registry.k8s.io/cloud-provider-kind/cloud-controller-manager"
    );
    assert_eq!(req.image().tag(), "v0.7.0");
    assert_eq!(
        req.descriptor(),
        format!("{CLOUD_PROVIDER_KIND_IMAGE}:{CLOUD_PROVIDER_KIND_TAG}")
    );
    assert_eq!(req.network().as_deref(), Some("host"));
    let mounts: Vec<_> = req
        .mounts()
        .map(|m| (m.mount_type(), m.source(), m.target()))
        .collect();
    assert_eq!(
        mounts,
        [(
            MountType::Bind,
            Some("/var/run/docker.sock"),
            Some("/var/run/docker.sock")
        )]
    );
    assert_eq!(
        req.container_name().as_deref(),
        Some("meshmig-cloud-provider-kind-run42")
    );
    assert_eq!(
        req.labels().get("meshmig-run").map(String::as_str),
        Some("run42")
    );
    assert_eq!(req.cmd().count(), 0, "the image's entrypoint, no arguments");
}

/// cloud-provider-kind's fatal exit when it finds no engine: klog's `F` line (header: klog's
/// format) with the message of cmd/app.go at v0.7.0, `klog.Fatalf("can not detect cluster
/// provider: %v", err)`, and kind v0.29.0's (its dependency) `NoNodeProviderDetectedError`,
/// "failed to detect any supported node provider" (pkg/cluster/provider.go); klog's Fatal exits
/// with code 255.
const CPK_FATAL: &str = "I1127 14:02:09.481230       1 app.go:65] FLAG: --v=\"2\"\nF1127 14:02:09.483911       1 app.go:154] can not detect cluster provider: failed to detect any supported node provider\n";

#[test]
fn a_dead_cloud_provider_kind_is_an_infrastructure_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cloud-provider-kind.log");
    std::fs::write(&log, CPK_FATAL).unwrap();
    let name = "meshmig-cloud-provider-kind-run42";
    assert!(liveness(&ProviderState::Running, name, &log).is_ok());

    let err = liveness(&ProviderState::Exited { code: Some(255) }, name, &log).unwrap_err();
    assert!(
        matches!(err, KindError::CloudProviderDied { .. }),
        "{err:?}"
    );
    let b = BackendError::from(err);
    assert!(!b.is_procedure(), "the harness's failure, exit 3: {b}");
    let BackendError::Infrastructure { doing, message } = &b else {
        panic!("{b:?}")
    };
    assert!(doing.contains("cloud-provider-kind"), "{doing}");
    for want in [
        "cloud-provider-kind (container meshmig-cloud-provider-kind-run42) is not running",
        "exited with code 255",
        &log.display().to_string(),
        "can not detect cluster provider: failed to detect any supported node provider",
    ] {
        assert!(message.contains(want), "{want:?} missing from {message}");
    }

    let gone = ProviderState::Unknown {
        why: "Docker responded with status code 404: No such container: meshmig-cloud-provider-kind-run42".into(),
    };
    let msg = BackendError::from(liveness(&gone, name, &log).unwrap_err()).to_string();
    assert!(msg.contains("Docker cannot inspect it"), "{msg}");
    assert!(msg.contains("No such container"), "{msg}");
}

#[tokio::test]
async fn teardown_removes_the_load_balancer_containers_cloud_provider_kind_left() {
    let exec = Arc::new(
        Scripted::default()
            .on(
                &["kind", "get", "clusters"],
                &[(0, KIND_GET_BOTH, ""), (0, "", KIND_GET_NONE_STDERR)],
            )
            .on(
                &["kind delete cluster"],
                &[(0, "", KIND_DELETE_ISTIO)],
            )
            .on(
                &["docker ps -aq --filter label=io.x-k8s.cloud-provider-kind.cluster=cluster-with-istio-run42"],
                &[(0, PS_ISTIO_LBS, "")],
            )
            .on(
                &["docker ps -aq --filter label=io.x-k8s.cloud-provider-kind.cluster=cluster-with-csm-run42"],
                &[(0, PS_CSM_LBS, "")],
            )
            .on(&["docker rm -f 5d3f9a1c2b7e"], &[(0, PS_ISTIO_LBS, "")])
            .on(&["docker rm -f 8c1e4b7a9f20 0a9b8c7d6e5f"], &[(0, RM_CSM_LBS, "")]),
    );
    let s = scenario("canary-cluster.yaml");
    let b = Kind::with_exec(cfg(), &s, exec.clone(), tempfile::tempdir().unwrap())
        .await
        .unwrap();
    let report = b.teardown(false).await;
    let calls = exec.calls();
    let order = [
        "kind delete cluster --name cluster-with-istio-run42",
        "kind delete cluster --name cluster-with-csm-run42",
        "docker ps -aq --filter label=io.x-k8s.cloud-provider-kind.cluster=cluster-with-istio-run42",
        "docker rm -f 5d3f9a1c2b7e",
        "docker ps -aq --filter label=io.x-k8s.cloud-provider-kind.cluster=cluster-with-csm-run42",
        "docker rm -f 8c1e4b7a9f20 0a9b8c7d6e5f",
    ];
    let mut at = 0;
    for want in order {
        let i = calls[at..]
            .iter()
            .position(|c| c.starts_with(want))
            .unwrap_or_else(|| panic!("{want:?} missing or out of order in {calls:#?}"));
        at += i + 1;
    }
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(
        report.removed.contains(
            &"cloud-provider-kind load balancer containers 5d3f9a1c2b7e of kind cluster cluster-with-istio-run42".to_string()
        ),
        "{report:?}"
    );
    assert!(report
        .removed
        .iter()
        .any(|r| r.contains("8c1e4b7a9f20, 0a9b8c7d6e5f of kind cluster cluster-with-csm-run42")));
    assert_eq!(LB_CLUSTER_LABEL, "io.x-k8s.cloud-provider-kind.cluster");
}

#[tokio::test]
async fn load_balancer_clean_up_reports_what_it_could_not_do() {
    let exec = Scripted::default()
        .on(&["cluster=cluster-with-istio-run42"], &[(0, "", "")])
        .on(&["cluster=cluster-with-csm-run42"], &[(1, "", NO_ENGINE)]);
    let r = remove_load_balancers(
        &exec,
        &[
            "cluster-with-istio-run42".to_string(),
            "cluster-with-csm-run42".to_string(),
        ],
    )
    .await;
    assert!(
        !exec.calls().iter().any(|c| c.starts_with("docker rm")),
        "nothing to remove: {:?}",
        exec.calls()
    );
    assert!(r.removed.is_empty(), "{r:?}");
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert!(r.failed[0].contains("cluster-with-csm-run42"), "{r:?}");
    assert!(
        r.failed[0].contains("Cannot connect to the Docker daemon"),
        "{r:?}"
    );
}

#[test]
fn the_node_image_goes_to_kind_create_cluster_and_the_plan() {
    let image = "kindest/node:v1.33.4@sha256:25a6018e48dfcaee478f4a59af81157a437f15e6e140bf103f85a2e7cd0cbbf2";
    let mut c = cfg();
    let kc = PathBuf::from("RUN/kubeconfig");
    assert!(
        !Commands::new(&c, &kc)
            .create("cluster-with-csm")
            .args
            .contains(&"--image".to_string()),
        "no image: kind's default"
    );
    c.node_image = Some(image.into());
    let create = Commands::new(&c, &kc).create("cluster-with-csm");
    assert!(
        create
            .line()
            .ends_with(&format!("--wait 5m --image {image}")),
        "{}",
        create.line()
    );
    let plan = meshmig::backend::kind::plan(&c, &scenario("canary-cluster.yaml"));
    assert!(plan.contains(&format!("node image: {image}")), "{plan}");
    assert!(plan.contains(&format!(
        "kind create cluster --name cluster-with-istio-run42 --config kind-configs/cluster-with-istio.yaml --kubeconfig RUN/kubeconfig --wait 5m --image {image}"
    )));
    assert!(plan.contains("registry.k8s.io/cloud-provider-kind/cloud-controller-manager:v0.7.0"));
    assert!(plan
        .contains("docker ps -aq --filter label=io.x-k8s.cloud-provider-kind.cluster=NAME-run42"));
    assert_eq!(
        node_image_from(Some(format!(" {image}\n"))).as_deref(),
        Some(image)
    );
    assert_eq!(node_image_from(Some("  ".into())), None);
    assert_eq!(node_image_from(None), None);
}

/// `docker inspect --format {{.Created}}`: the container's creation time, "formatted in RFC
/// 3339 format with nano-seconds" (Docker Engine API, ContainerInspectResponse.Created, example
/// "2025-02-17T17:43:39.64001363Z").
const CREATED_OLD: &str = "2026-11-27T00:10:03.64001363Z\n";
const CREATED_NEW: &str = "2026-11-27T11:50:41.112233445Z\n";

#[tokio::test]
async fn gc_deletes_only_old_clusters_of_meshmig_runs_and_what_cloud_provider_kind_left() {
    let listed = "cluster-with-csm-r2d2x9\ncluster-with-istio-r2d2x9\ncluster-with-istio-fresh1\nkind\ncluster-with-istio-my-dev\n";
    let exec = Scripted::default()
        .on(&["kind get clusters"], &[(0, listed, "")])
        .on(
            &["docker inspect", "-r2d2x9-control-plane"],
            &[(0, CREATED_OLD, "")],
        )
        .on(
            &["docker inspect", "fresh1-control-plane"],
            &[(0, CREATED_NEW, "")],
        )
        .on(
            &["label=io.x-k8s.cloud-provider-kind.cluster=cluster-with-istio-r2d2x9"],
            &[(0, PS_ISTIO_LBS, "")],
        )
        .on(&["label=meshmig-run=r2d2x9"], &[(0, "c0ffee123456\n", "")])
        .on(&["kind delete cluster"], &[(0, "", KIND_DELETE_ISTIO)]);
    let names: Vec<String> = meshmig::backend::kind::PROCEDURE_CLUSTERS
        .iter()
        .map(|n| n.to_string())
        .collect();
    let now = chrono_like::Utc(chrono_like::parse("2026-11-27T12:00:00Z").unwrap());
    let done = gc(
        &exec,
        &GcTools::default(),
        &names,
        Duration::from_secs(6 * 3600),
        now,
    )
    .await
    .unwrap();
    let calls = exec.calls();
    assert!(calls.contains(&"kind delete cluster --name cluster-with-csm-r2d2x9".to_string()));
    assert!(calls.contains(&"kind delete cluster --name cluster-with-istio-r2d2x9".to_string()));
    for kept in ["fresh1", "--name kind", "my-dev"] {
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("kind delete") && c.contains(kept)),
            "{kept} deleted: {calls:#?}"
        );
    }
    assert!(
        calls.contains(&"docker rm -f 5d3f9a1c2b7e".to_string()),
        "{calls:#?}"
    );
    assert!(
        calls.contains(&"docker rm -f c0ffee123456".to_string()),
        "{calls:#?}"
    );
    assert!(
        done.contains(
            &"deleted kind cluster cluster-with-istio-r2d2x9 (run r2d2x9, 11h old)".to_string()
        ),
        "{done:#?}"
    );
    assert!(done
        .iter()
        .any(|d| d == "removed cloud-provider-kind container c0ffee123456 of run r2d2x9"));
    assert!(done
        .iter()
        .any(|d| d.contains("5d3f9a1c2b7e of kind cluster cluster-with-istio-r2d2x9")));
}

#[tokio::test]
async fn gc_with_no_kind_clusters_does_nothing() {
    let exec = Scripted::default().on(&["kind get clusters"], &[(0, "", KIND_GET_NONE_STDERR)]);
    let now = chrono_like::Utc(chrono_like::parse("2026-11-27T12:00:00Z").unwrap());
    let done = gc(
        &exec,
        &GcTools::default(),
        &["cluster-with-istio".to_string()],
        Duration::ZERO,
        now,
    )
    .await
    .unwrap();
    assert!(done.is_empty(), "{done:?}");
    assert_eq!(exec.calls(), ["kind get clusters"]);
}

/// A kit's runs (podman here): gc lists and deletes with the kit's kind, reads the node's age
/// from podman in RFC 3339 (podman's own `{{.Created}}` is Go's `2026-12-07 15:23:17.98 +0000
/// UTC`, which no age parser reads), and looks for no cloud-provider-kind containers, which a
/// kit's run never has. Before, gc ran `kind` and `docker` and found none of a kit's clusters.
#[tokio::test]
async fn gc_with_a_kit_uses_its_kind_and_podman_and_no_cloud_provider_kind() {
    let exec = Scripted::default()
        .on(
            &["/kit/bin/kind get clusters"],
            &[(0, "cluster-with-istio-r2d2x9\n", "")],
        )
        .on(
            &[
                "podman inspect --format ",
                "{{.Created.Format \"2006-01-02T15:04:05.999999999Z07:00\"}}",
                "cluster-with-istio-r2d2x9-control-plane",
            ],
            &[(0, "2026-11-27T00:10:03.987292846Z\n", "")],
        )
        .on(
            &["/kit/bin/kind delete cluster --name cluster-with-istio-r2d2x9"],
            &[(0, "", KIND_DELETE_ISTIO)],
        );
    let tools = GcTools {
        kind: "/kit/bin/kind".into(),
        engine: "podman".into(),
        cloud_provider: false,
    };
    let now = chrono_like::Utc(chrono_like::parse("2026-11-27T12:00:00Z").unwrap());
    let done = gc(
        &exec,
        &tools,
        &["cluster-with-istio".to_string()],
        Duration::from_secs(6 * 3600),
        now,
    )
    .await
    .unwrap();
    assert_eq!(
        done,
        ["deleted kind cluster cluster-with-istio-r2d2x9 (run r2d2x9, 11h old)"]
    );
    let calls = exec.calls();
    assert!(
        !calls.iter().any(|c| c.starts_with("docker")),
        "docker run for a kit's clusters: {calls:#?}"
    );
}

#[test]
fn macos_doctor_notes_quote_cloud_provider_kind_on_sudo() {
    let mac = doctor_notes_for("macos").join("\n");
    assert!(
        mac.contains("\"On macOS and WSL2 you must run cloud-provider-kind using `sudo`\""),
        "{mac}"
    );
    assert!(
        mac.contains("the KIND nodes are not reachable from the host"),
        "{mac}"
    );
    assert!(doctor_notes_for("linux").is_empty());
    assert_eq!(doctor_notes(), doctor_notes_for(std::env::consts::OS));
}

/// Issue 8, item 9: `kind create cluster` writes the kubeconfig when it ends, under a lock a
/// concurrent `kubectl config rename-context` races with; a context is renamed only once every
/// creation A1 started has ended. C1 takes the creation A1 started.
#[tokio::test]
async fn renames_wait_until_every_creation_has_ended() {
    /// Records every line; a `kind create cluster` of cluster-with-csm takes 300 ms and records
    /// `done: LINE` when it ends.
    #[derive(Default)]
    struct Slow(Mutex<Vec<String>>);
    #[async_trait]
    impl Exec for Slow {
        async fn run(&self, cmd: &Cmd) -> Result<Ran, ExecError> {
            let line = cmd.line();
            self.0.lock().unwrap().push(line.clone());
            if line.contains("create cluster --name cluster-with-csm") {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                self.0.lock().unwrap().push(format!("done: {line}"));
            }
            Ok(Ran {
                code: Some(0),
                ..Ran::default()
            })
        }
    }
    let exec = Arc::new(Slow::default());
    let s = scenario("canary-cluster.yaml");
    let b = Kind::with_exec(cfg(), &s, exec.clone(), tempfile::tempdir().unwrap())
        .await
        .unwrap();
    b.create_cluster(s.cluster("cluster-with-istio").unwrap())
        .await
        .unwrap();
    b.rename_context("cluster-with-istio").await.unwrap();
    b.create_cluster(s.cluster("cluster-with-csm").unwrap())
        .await
        .unwrap();
    let calls = exec.0.lock().unwrap().clone();
    let at = |p: &str| calls.iter().position(|c| c.starts_with(p)).unwrap();
    assert!(
        at("done: kind create cluster --name cluster-with-csm")
            < at("kubectl config rename-context"),
        "{calls:#?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("kind create cluster --name cluster-with-csm"))
            .count(),
        1,
        "{calls:#?}"
    );
}

/// What `kind get nodes --name N` prints with the podman provider: each node on stdout, and
/// kind's notes about the provider on stderr (kind v0.30.0, pkg/cluster/provider.go:
/// "using podman due to KIND_EXPERIMENTAL_PROVIDER" and pkg/cluster/internal/providers/podman:
/// "enabling experimental podman provider"), as it printed them here.
const KIND_GET_NODES_PODMAN_STDERR: &str =
    "using podman due to KIND_EXPERIMENTAL_PROVIDER\nenabling experimental podman provider\n";

/// A kit (kind-configs/kit/build's kit.json) with one archive that exists.
fn kit_cfg(dir: &Path) -> KindConfig {
    let archive = dir.join("boutique-0.10.6.tar");
    std::fs::write(&archive, b"").unwrap();
    std::fs::write(
        dir.join("kit.json"),
        serde_json::json!({
            "provider": "podman",
            "kind": "/kit/bin/kind",
            "metadata_image": "localhost/meshmig/boutique-stand-in:latest",
            "node_image": "localhost/meshmig/kind-node:v1.35.4",
            "archives": [archive],
            "aliases": [{"image": "docker.io/library/busybox:1.38.0",
                         "as": "docker.io/library/busybox@sha256:fd8d9aa63ba2f0982b5304e1ee8d3b90a210bc1ffb5314d980eb6962f1a9715d"}],
            "istio_sets": ["hub=localhost/meshmig", "tag=1.31.0"],
        })
        .to_string(),
    )
    .unwrap();
    let kit = meshmig::backend::kind::kit::KindKit::load(dir).unwrap();
    cfg().with_kit(kit, false)
}

/// Issue 22: with a kit, a created cluster gets the kit's archives and, on every node `kind get
/// nodes` lists (kind's notes on stderr are not nodes), the kit's digest name for busybox; kind
/// is the kit's, with the podman provider, the node image and configurations are the kit's, and
/// Istio is installed with the kit's settings.
#[tokio::test]
async fn a_kit_cluster_gets_the_kits_images_and_names_on_every_node() {
    let d = tempfile::tempdir().unwrap();
    let c = kit_cfg(d.path());
    assert_eq!(
        c.kind_env(),
        [(
            "KIND_EXPERIMENTAL_PROVIDER".to_string(),
            "podman".to_string()
        )]
    );
    let exec = Arc::new(
        Scripted::default()
            .on(
                &["get", "nodes"],
                &[(
                    0,
                    "cluster-with-csm-run42-control-plane\ncluster-with-csm-run42-worker\n",
                    KIND_GET_NODES_PODMAN_STDERR,
                )],
            )
            // podman 4.3.1 here, for a network that does not exist.
            .on(&["network", "inspect"], &[(125, "[]\n", "Error: inspecting object: network kind: unable to find network with name or ID kind: network not found\n")]),
    );
    let s = scenario("canary-cluster.yaml");
    let k = Kind::with_exec(c, &s, exec.clone(), tempfile::tempdir().unwrap())
        .await
        .unwrap();
    let csm = s
        .clusters
        .iter()
        .find(|c| c.name == "cluster-with-csm")
        .unwrap();
    let e = k.create_cluster(csm).await.unwrap_err();
    let calls = exec.calls();
    // The first create step starts every creation; this one is the csm cluster's.
    let create = calls
        .iter()
        .find(|l| l.contains("create cluster --name cluster-with-csm-run42"))
        .expect("the csm cluster is created");
    assert!(
        create.starts_with("/kit/bin/kind create cluster"),
        "{create}"
    );
    assert!(
        create.contains("--config kind-configs/local/cluster-with-csm.yaml"),
        "{create}"
    );
    assert!(
        create.ends_with("--image localhost/meshmig/kind-node:v1.35.4"),
        "{create}"
    );
    let load = format!(
        "/kit/bin/kind load image-archive {} --name cluster-with-csm-run42",
        d.path().join("boutique-0.10.6.tar").display()
    );
    assert!(calls.contains(&load), "{calls:#?}");
    for node in [
        "cluster-with-csm-run42-control-plane",
        "cluster-with-csm-run42-worker",
    ] {
        assert!(calls.contains(&format!("podman exec {node} ctr --namespace=k8s.io images tag docker.io/library/busybox:1.38.0 docker.io/library/busybox@sha256:fd8d9aa63ba2f0982b5304e1ee8d3b90a210bc1ffb5314d980eb6962f1a9715d")), "{calls:#?}");
    }
    assert!(
        !calls.iter().any(|l| l.contains("using podman")),
        "{calls:#?}"
    );
    // The load balancer needs the kind network: its absence is the machinery's failure.
    assert!(matches!(e, BackendError::Infrastructure { .. }), "{e:?}");
    assert!(e.to_string().contains("podman network inspect kind"), "{e}");
    let kc = PathBuf::from("RUN/kubeconfig");
    let c = kit_cfg(d.path());
    let install = Commands::new(&c, &kc).istio_install("cluster-with-istio", "default");
    assert!(
        install
            .line()
            .ends_with("--set hub=localhost/meshmig --set tag=1.31.0"),
        "{}",
        install.line()
    );
    let managed = Commands::new(&c, &kc).managed_install("cluster-with-csm", true);
    assert!(
        managed
            .line()
            .ends_with("--set hub=localhost/meshmig --set tag=1.31.0"),
        "{}",
        managed.line()
    );
    let plan = meshmig::backend::kind::plan(&c, &s);
    assert!(
        plan.contains("meshmig's node load balancer in place of cloud-provider-kind"),
        "{plan}"
    );
    assert!(!plan.contains("before: cloud-provider-kind"), "{plan}");
    // Its teardown deletes with the kit's kind and removes no cloud-provider-kind containers.
    let teardown = &plan[plan.find("teardown (always)").expect("a teardown section")..];
    assert!(
        !teardown.contains("docker") && !teardown.contains("cloud-provider-kind container"),
        "{teardown}"
    );
    assert!(
        teardown.contains(&Commands::new(&c, &kc).delete("NAME").line()),
        "{teardown}"
    );
}
