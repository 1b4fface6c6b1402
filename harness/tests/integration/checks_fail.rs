//! Every check the scenarios can use is shown to fail here, with its message: what was
//! expected, what was observed. Each runs through `checks::run` against a frozen world (the fake backend,
//! its objects, clusters, contexts and fleet output set by the test), and, where the check
//! talks to the network, a real DNS server or HTTP server on loopback.
//!
//! The mistakes catalogue (`scenarios/mistakes/`) shows the same checks failing in whole runs;
//! this file makes sure none of them is left without a failing case.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use meshmig::backend::{Backend, Inventory, Output};
use meshmig::checks::{self, CheckResult, Ctx};
use meshmig::dns::{ClientResolver, DnsServer};
use meshmig::manifest::ManifestSource;
use meshmig::sampler::Pace;
use meshmig::scenario::{Check, Scenario};
use meshmig::stats::SplitParams;
use serde_json::{json, Value};

use super::fake::Fake;

fn scenario() -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.yaml");
    std::fs::write(
        &p,
        "clusters: [{name: a}, {name: b}]\ndns: {domain: example.com}\nsteps: [{id: X, title: x}]\n",
    )
    .unwrap();
    meshmig::scenario::load(&p, &ManifestSource::new(dir.path())).unwrap()
}

/// Runs `check` against `world`; the step's output, if given, is what the action printed.
async fn run_check(world: Fake, check: &str, output: Option<Output>) -> CheckResult {
    let check: Check = meshmig::yaml::from_str(check).unwrap();
    let s = scenario();
    let clients = Arc::new(ClientResolver::new(world.dns_server(), 0.001));
    let vars = BTreeMap::from([("IP".to_string(), "192.0.2.7".to_string())]);
    let params = SplitParams::default();
    let ctx = Ctx {
        backend: &world,
        scenario: &s,
        vars: &vars,
        output: output.as_ref(),
        params: &params,
        pace: Pace::default(),
        progress: false,
        clients: &clients,
    };
    checks::run(&ctx, &check).await.unwrap()
}

/// Asserts the check failed and its message says what is given.
fn failed(r: &CheckResult, expected: &str, observed: &str) {
    assert!(!r.ok, "{} should have failed: {}", r.check, r.message());
    assert!(r.expected.contains(expected), "expected: {}", r.expected);
    assert!(r.observed.contains(observed), "observed: {}", r.observed);
}

fn ns(name: &str, labels: Value) -> Value {
    json!({"metadata": {"name": name, "labels": labels}})
}

fn svc(name: &str, ns: &str, kind: &str, ip: Option<&str>) -> Value {
    let ingress = ip.map(|i| json!([{"ip": i}])).unwrap_or(json!(null));
    json!({"metadata": {"name": name, "namespace": ns}, "spec": {"type": kind},
           "status": {"loadBalancer": {"ingress": ingress}}})
}

fn vs(name: &str, gateway: &str, weights: &[(&str, u32)]) -> Value {
    let route: Vec<Value> = weights
        .iter()
        .map(|(h, w)| json!({"destination": {"host": h, "port": {"number": 80}}, "weight": w}))
        .collect();
    json!({"metadata": {"name": name, "namespace": "ob"},
           "spec": {"gateways": [gateway], "hosts": ["*"], "http": [{"route": route}]}})
}

#[tokio::test]
async fn cluster_exists_fails_without_the_cluster() {
    let r = run_check(Fake::default(), "cluster_exists: {cluster: a}", None).await;
    failed(&r, "cluster a RUNNING", "no cluster a");
}

#[tokio::test]
async fn cluster_absent_fails_while_it_runs() {
    let w = Fake::default().cluster("a", "RUNNING");
    let r = run_check(w, "cluster_absent: {cluster: a}", None).await;
    failed(&r, "no cluster a", "cluster a still listed");
}

#[tokio::test]
async fn context_listed_fails_without_the_context() {
    let w = Fake {
        contexts: vec!["gke_p_z_a".into()],
        ..Fake::default()
    };
    let r = run_check(w, "context_listed: {cluster: a}", None).await;
    failed(&r, "context a listed", "gke_p_z_a");
}

#[tokio::test]
async fn output_contains_fails_on_a_missing_line() {
    let out = Output::new(
        "gcloud container fleet mesh enable",
        "ERROR: (gcloud) denied\n",
    );
    let r = run_check(
        Fake::default(),
        "output_contains: {lines: [\"Waiting for Feature Service Mesh to be created...done.\"]}",
        Some(out),
    )
    .await;
    failed(&r, "Waiting for Feature Service Mesh", "missing");
}

#[tokio::test]
async fn istio_installed_fails_when_the_install_stopped() {
    let out = Output::new("istioctl install", "✔ Istio core installed\n");
    let r = run_check(
        Fake::default(),
        "istio_installed: {profile: default}",
        Some(out),
    )
    .await;
    failed(&r, "✔ Istiod installed", "missing");
}

#[tokio::test]
async fn deployments_available_fails_on_an_unavailable_deployment() {
    let d = json!({"metadata": {"name": "frontend", "namespace": "ob"},
                   "status": {"conditions": [{"type": "Available", "status": "False"}]}});
    let w = Fake::default().with("a", "Deployment", vec![d]);
    let r = run_check(
        w,
        "deployments_available: {cluster: a, namespace: ob, count: 1}",
        None,
    )
    .await;
    failed(&r, "1 Deployments", "unavailable [\"frontend\"]");
}

#[tokio::test]
async fn object_exists_and_object_absent_fail() {
    let r = run_check(
        Fake::default(),
        "object_exists: {cluster: a, namespace: ob, kind: Service, name: frontend}",
        None,
    )
    .await;
    failed(
        &r,
        "Service ob/frontend present",
        "Service ob/frontend absent",
    );
    let w = Fake::default().with(
        "a",
        "Service",
        vec![svc("frontend", "ob", "ClusterIP", None)],
    );
    let r = run_check(
        w,
        "object_absent: {cluster: a, namespace: ob, kind: Service, name: frontend}",
        None,
    )
    .await;
    failed(
        &r,
        "Service ob/frontend absent",
        "Service ob/frontend present",
    );
}

#[tokio::test]
async fn first_service_is_fails_when_another_sorts_first() {
    let w = Fake::default().with(
        "a",
        "Service",
        vec![
            svc("grafana", "istio-system", "ClusterIP", None),
            svc(
                "istio-ingressgateway",
                "istio-system",
                "LoadBalancer",
                Some("198.18.0.1"),
            ),
        ],
    );
    let r = run_check(
        w,
        "first_service_is: {cluster: a, namespace: istio-system, name: istio-ingressgateway}",
        None,
    )
    .await;
    failed(
        &r,
        ".items[0] is LoadBalancer istio-ingressgateway",
        ".items[0] is grafana (ip None)",
    );
}

#[tokio::test]
async fn home_page_fails_when_nothing_answers() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = run_check(
        Fake::default(),
        &format!("home_page: {{url: \"http://127.0.0.1:{port}/\"}}"),
        None,
    )
    .await;
    failed(&r, "answers 200", "no answer");
}

const PROVISIONING: &str = "membershipStates:
  projects/1/locations/global/memberships/m:
    servicemesh:
      controlPlaneManagement:
        details:
        - code: PROVISIONING
          details: Service is provisioning.
        state: PROVISIONING
resourceState:
  state: ACTIVE
";

#[tokio::test]
async fn mesh_active_fails_while_provisioning() {
    let w = Fake::default().describing(PROVISIONING);
    let r = run_check(w, "mesh_active: {membership: m}", None).await;
    failed(
        &r,
        "controlPlaneManagement ACTIVE",
        "control plane PROVISIONING",
    );
}

#[tokio::test]
async fn mesh_feature_enabled_fails_when_disabled() {
    let w = Fake::default().describing("resourceState:\n  state: DISABLED\n");
    let r = run_check(w, "mesh_feature_enabled", None).await;
    failed(
        &r,
        "resourceState.state ACTIVE",
        "resourceState.state DISABLED",
    );
}

#[tokio::test]
async fn membership_listed_fails_unlisted_or_unmanaged() {
    let w = Fake::default().describing(PROVISIONING);
    let r = run_check(w, "membership_listed: {membership: other}", None).await;
    failed(&r, "membership other", "not listed (memberships: m)");
    let w = Fake::default().describing(PROVISIONING);
    let r = run_check(
        w,
        "membership_listed: {membership: m, management: automatic}",
        None,
    )
    .await;
    failed(&r, "MANAGEMENT_AUTOMATIC", "mesh.management unset");
}

#[tokio::test]
async fn namespace_labels_fails_without_the_label() {
    let w = Fake::default().with("a", "Namespace", vec![ns("ob", json!({}))]);
    let r = run_check(
        w,
        "namespace_labels: {cluster: a, name: ob, labels: {istio.io/rev: asm-managed}}",
        None,
    )
    .await;
    failed(&r, "asm-managed", "labels {}");
}

/// A namespace relabelled for a revision must have lost `istio-injection`, which takes
/// precedence over `istio.io/rev`: both labels fail, naming the one left.
#[tokio::test]
async fn namespace_labels_fails_with_a_label_that_must_be_gone() {
    let w = Fake::default().with(
        "a",
        "Namespace",
        vec![ns(
            "ob",
            json!({"istio.io/rev": "asm-managed", "istio-injection": "enabled"}),
        )],
    );
    let r = run_check(
        w,
        "namespace_labels: {cluster: a, name: ob, labels: {istio.io/rev: asm-managed}, absent: [istio-injection]}",
        None,
    )
    .await;
    failed(
        &r,
        "without [\"istio-injection\"]",
        "\"istio-injection\": \"enabled\"",
    );
}

#[tokio::test]
async fn injection_disabled_fails_on_a_labelled_namespace() {
    let w = Fake::default().with(
        "a",
        "Namespace",
        vec![ns("ob", json!({"istio-injection": "enabled"}))],
    );
    let r = run_check(w, "injection_disabled: {cluster: a, name: ob}", None).await;
    failed(
        &r,
        "without istio-injection=enabled",
        "labelled istio-injection=enabled",
    );
    let r = run_check(
        Fake::default(),
        "injection_disabled: {cluster: a, name: ob}",
        None,
    )
    .await;
    failed(&r, "namespace ob exists", "no namespace ob");
}

/// Where the backend runs no `istioctl proxy-status` (this fake), `proxies_connected` judges
/// the pods' own records, says so, and fails a gateway of the old revision; with proxy-status,
/// the failure names the istiod (unit tests in `checks::proxies`, on the real istioctl's table).
#[tokio::test]
async fn proxies_connected_fails_on_a_gateway_of_the_old_revision() {
    let p = json!({"metadata": {"name": "asm-ingressgateway-1", "namespace": "asm", "labels": {"asm": "ingressgateway"},
                                "annotations": {"sidecar.istio.io/status": "{\"revision\":\"default\"}"}},
                   "spec": {"containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.31.0", "args": ["proxy", "router"]}]},
                   "status": {"phase": "Running"}});
    let w = Fake::default().with("a", "Pod", vec![p]);
    let r = run_check(
        w,
        "proxies_connected: {cluster: a, namespace: asm, selector: {asm: ingressgateway}, revision: asm-managed}",
        None,
    )
    .await;
    failed(
        &r,
        "connected to an istiod of revision asm-managed",
        "asm-ingressgateway-1: injected by default (its connection not witnessed)",
    );
    assert!(
        r.witness.component.contains("no istioctl proxy-status"),
        "{}",
        r.witness
    );
}

#[tokio::test]
async fn pods_injected_fails_on_a_pod_without_sidecar() {
    let p = json!({"metadata": {"name": "frontend-1", "namespace": "ob", "labels": {"app": "frontend"}},
                   "spec": {"containers": [{"name": "server", "image": "frontend"}]}});
    let w = Fake::default().with("a", "Pod", vec![p]);
    let r = run_check(
        w,
        "pods_injected: {cluster: a, namespace: ob, selector: {app: frontend}, revision: asm-managed}",
        None,
    )
    .await;
    failed(&r, "asm-managed", "frontend-1");
}

/// A pod injected by the old revision fails `pods_injected` for the managed one, and the
/// observation names the labels that asked for injection: here both, `istio-injection` winning.
#[tokio::test]
async fn pods_injected_fails_on_the_wrong_revision_naming_the_namespace_labels() {
    let p = json!({"metadata": {"name": "frontend-2", "namespace": "ob", "labels": {"app": "frontend"},
                                "annotations": {"sidecar.istio.io/status": "{\"initContainers\":[\"istio-init\",\"istio-proxy\"],\"revision\":\"default\"}"}},
                   "spec": {"containers": [{"name": "server", "image": "frontend"}],
                            "initContainers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.31.0"}]}});
    let w = Fake::default().with("a", "Pod", vec![p]).with(
        "a",
        "Namespace",
        vec![ns(
            "ob",
            json!({"istio-injection": "enabled", "istio.io/rev": "asm-managed", "team": "shop"}),
        )],
    );
    let r = run_check(
        w,
        "pods_injected: {cluster: a, namespace: ob, selector: {app: frontend}, revision: asm-managed}",
        None,
    )
    .await;
    failed(
        &r,
        "by revision asm-managed",
        "frontend-2\"]; namespace ob labelled {\"istio-injection\": \"enabled\", \"istio.io/rev\": \"asm-managed\"}",
    );
    assert!(
        r.evidence.to_string().contains("\"revision\":\"default\""),
        "{}",
        r.evidence
    );
}

#[tokio::test]
async fn no_public_service_fails_on_a_load_balancer() {
    let w = Fake::default().with(
        "a",
        "Service",
        vec![svc(
            "frontend-external",
            "ob",
            "LoadBalancer",
            Some("198.18.0.9"),
        )],
    );
    let r = run_check(w, "no_public_service: {cluster: a, namespace: ob}", None).await;
    failed(
        &r,
        "no LoadBalancer or NodePort",
        "public: frontend-external (LoadBalancer",
    );
}

#[tokio::test]
async fn service_entry_address_fails_on_the_placeholder() {
    let se = json!({"metadata": {"name": "se", "namespace": "ob"},
                    "spec": {"hosts": ["v2.example.com"], "endpoints": [{"address": "1.2.3.4"}]}});
    let w = Fake::default().with("a", "ServiceEntry", vec![se]).with(
        "b",
        "Service",
        vec![svc("gw", "gwns", "LoadBalancer", Some("198.18.1.1"))],
    );
    let r = run_check(
        w,
        "service_entry_address: {cluster: a, namespace: ob, name: se, gateway: {cluster: b, namespace: gwns, service: gw}}",
        None,
    )
    .await;
    failed(&r, "198.18.1.1", "1.2.3.4");
}

#[tokio::test]
async fn routes_fails_on_wrong_weights_and_on_two_claims() {
    let w = Fake::default().with(
        "a",
        "VirtualService",
        vec![vs(
            "frontend-ingress",
            "frontend-gateway",
            &[("frontend", 80), ("v2.example.com", 20)],
        )],
    );
    let check = "routes: {cluster: a, namespace: ob, gateway: frontend-gateway, expect: {frontend: 50, v2.example.com: 50}}";
    let r = run_check(w, check, None).await;
    failed(
        &r,
        "frontend 50%, v2.example.com 50%",
        "frontend: 80.0% instead of 50%",
    );
    let w = Fake::default().with(
        "a",
        "VirtualService",
        vec![
            vs("frontend-ingress", "frontend-gateway", &[("frontend", 100)]),
            vs(
                "frontend-migration",
                "frontend-gateway",
                &[("frontend", 50), ("v2.example.com", 50)],
            ),
        ],
    );
    let r = run_check(w, check, None).await;
    failed(
        &r,
        "one VirtualService",
        "ob/frontend-ingress and ob/frontend-migration both claim host \"*\"",
    );
    let w = Fake::default().with(
        "a",
        "VirtualService",
        vec![vs(
            "frontend-ingress",
            "frontend-gatway",
            &[("frontend", 100)],
        )],
    );
    let r = run_check(w, check, None).await;
    failed(
        &r,
        "one VirtualService",
        "no VirtualService is bound to Gateway ob/frontend-gateway",
    );
}

#[tokio::test]
async fn routes_passes_weights_written_one_to_one_with_a_weight_zero_destination() {
    let w = Fake::default().with(
        "a",
        "VirtualService",
        vec![vs(
            "frontend-ingress",
            "frontend-gateway",
            &[
                ("frontend", 1),
                ("v2.example.com", 1),
                ("v3.example.com", 0),
            ],
        )],
    );
    let r = run_check(
        w,
        "routes: {cluster: a, namespace: ob, gateway: frontend-gateway, expect: {frontend: 50, v2.example.com: 50}}",
        None,
    )
    .await;
    assert!(r.ok, "{}", r.message());
}

/// Runs `check` with a real DNS server answering `example.com A address` with `ttl`.
async fn run_with_dns(address: Ipv4Addr, ttl: u32, check: &str) -> CheckResult {
    let s = DnsServer::start(Ipv4Addr::LOCALHOST, "example.com")
        .await
        .unwrap();
    s.set_a("example.com", address, ttl).await.unwrap();
    let w = Fake {
        dns: Some(s.addr()),
        ..Fake::default()
    };
    let r = run_check(w, check, None).await;
    s.stop().await;
    r
}

#[tokio::test]
async fn dns_record_fails_on_another_address() {
    let r = run_with_dns(
        Ipv4Addr::new(192, 0, 2, 1),
        300,
        "dns_record: {address: \"${IP}\", ttl: 300}",
    )
    .await;
    failed(&r, "192.0.2.7", "192.0.2.1");
}

#[tokio::test]
async fn clients_resolve_fails_while_clients_would_hold_a_long_ttl() {
    let r = run_with_dns(
        Ipv4Addr::new(192, 0, 2, 7),
        300,
        "clients_resolve: {address: \"${IP}\", max_ttl: 1}",
    )
    .await;
    failed(&r, "TTL of at most 1 s", "with TTL 300 s");
}

#[tokio::test]
async fn nothing_left_fails_on_a_leftover() {
    let w = Fake {
        inventory: Some(Inventory {
            clusters: BTreeMap::from([("cluster-with-csm".into(), "RUNNING".into())]),
            mesh_feature_enabled: true,
            ..Inventory::default()
        }),
        ..Fake::default()
    };
    let r = run_check(w, "nothing_left", None).await;
    failed(&r, "no cluster", "cluster cluster-with-csm (RUNNING)");
}

#[tokio::test]
async fn split_fails_when_every_answer_comes_from_the_other_cluster() {
    // A frontend of cluster a, with the GKE footer (footers/ in ../shared).
    let page = "<html><body><footer><b>Cluster: </b>a<br/><b>Zone: </b>us-central1-a<br/><b>Pod: </b>frontend-1</footer></body></html>";
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    let r = run_check(
        Fake::default(),
        &format!("split: {{url: \"http://{addr}/\", expect: {{a: 0, b: 100}}}}"),
        None,
    )
    .await;
    failed(&r, "a 0%, b 100%", "inconsistent: a served a request");
}
