//! Differential test: the emulated backend's translation (`xds.rs`) against the real istiod.
//!
//! Each case is a set of Istio objects (from steps B4 and F2 on the real upstream manifests,
//! and variations). It is applied to the real cluster, where the real istiod pushes Envoy
//! configuration to the gateway's real Envoy, and to an emulated store, where `xds::translate`
//! computes its own. Both are brought to one normal form:
//! - listeners by the port the load balancer exposes (the real listener binds the pod port
//!   istiod resolves the server port to, which the Service maps back; the emulated one binds the
//!   load-balancer port that reaches that pod port, or the pod port when none does);
//! - per port, virtual hosts by their domains, each route's match, its weighted clusters and its
//!   retry policy (Istio's default one unless the VirtualService sets `retries`);
//! - the clusters routes name but CDS lacks (what answers 503).
//!
//! Each comparison waits for istiod's push of what the case applied (a new listener push
//! version on the gateway, see [`settle`]).
//!
//! A case whose forms differ fails the test, unless the difference is one the README lists as
//! kept, with its reason ([`KEPT`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use meshmig::backend::emulated::store::{AddressPlan, Store};
use meshmig::backend::emulated::xds::{envoy_resources, route_name, translate, Workload};
use meshmig::checks::gateway_routes::section;
use meshmig::manifest::{string_map, Object};
use serde_json::{json, Value};

use meshmig::backend::kwok::pods::{router_bootstrap, GatewayPod, Sandbox};

use super::Env;

/// Differences between the emulated translation and istiod that are kept on purpose (each
/// listed in docs/backends.md with its reason): (case, what differs).
const KEPT: &[(&str, &str)] = &[];

/// The `routes` check's reading of the real gateway's routes (`checks::gateway_routes`, what it
/// judges on kwok), on the cases whose Gateway is the upstream `frontend-gateway`: (case, the
/// shares expected, whether the check must hold, words its observation must show).
type Reading = (
    &'static str,
    &'static [(&'static str, f64)],
    bool,
    &'static [&'static str],
);
const READINGS: &[Reading] = &[
    (
        "B4 frontend-gateway (upstream)",
        &[("frontend", 100.0)],
        true,
        &["default/frontend-ingress routes frontend 100.0%"],
    ),
    (
        "F2 50/50 VirtualService + F1 ServiceEntry (upstream)",
        &[("frontend", 50.0), ("v2.example.com", 50.0)],
        true,
        &["default/frontend-ingress routes frontend 50.0%, v2.example.com 50.0%"],
    ),
    (
        "F2 50/50 VirtualService + F1 ServiceEntry (upstream)",
        &[("frontend", 90.0), ("v2.example.com", 10.0)],
        false,
        &[
            "frontend: 50.0% instead of 90%",
            "v2.example.com: 50.0% instead of 10%",
        ],
    ),
    (
        "two VirtualServices on one host",
        &[("frontend", 100.0)],
        false,
        &[
            "default/frontend-ingress",
            "default/vs-second",
            "both claim host",
        ],
    ),
    (
        "weight 0 destination",
        &[("frontend", 100.0)],
        true,
        &["default/vs-case routes frontend 100.0%"],
    ),
    (
        "VirtualService naming a Gateway that does not exist",
        &[("frontend", 100.0)],
        false,
        &["no VirtualService is bound to Gateway default/frontend-gateway"],
    ),
    (
        "destination nothing defines",
        &[("nowhere", 100.0)],
        true,
        &["Envoy has no cluster outbound|80||nowhere"],
    ),
];

/// Where the `routes` check misreads the real gateway's dump for case `name`.
fn misreadings(name: &str, dump: &Value) -> Vec<String> {
    let dumps = BTreeMap::from([("istio-system/gateway".to_string(), Ok(dump.clone()))]);
    READINGS
        .iter()
        .filter(|(case, ..)| *case == name)
        .filter_map(|(_, shares, holds, words)| {
            let expect: BTreeMap<String, f64> =
                shares.iter().map(|(h, p)| (h.to_string(), *p)).collect();
            let r = meshmig::checks::gateway_routes::gateway_routes(
                &dumps,
                "default/frontend-gateway",
                &expect,
                json!([]),
            );
            let missing: Vec<&&str> = words.iter().filter(|w| !r.observed.contains(**w)).collect();
            (r.ok != *holds || !missing.is_empty()).then(|| {
                format!(
                    "{name}, expecting {expect:?}: held {} (wanted {holds}), lacks {missing:?}; observed {}",
                    r.ok, r.observed
                )
            })
        })
        .collect()
}

fn parse(name: &str, yaml: &str) -> Vec<Object> {
    meshmig::manifest::parse(Path::new(name), yaml).unwrap()
}

/// The cases: (name, objects in namespace default).
fn cases(upstream: &Path) -> Vec<(&'static str, Vec<Object>)> {
    let read = |p: &str| {
        let path = upstream.join(p);
        let text = std::fs::read_to_string(&path).unwrap();
        meshmig::manifest::parse(&path, &text).unwrap()
    };
    let b4 = read("microservices-demo/istio-manifests/frontend-gateway.yaml");
    let gateway_only: Vec<Object> = b4.iter().filter(|o| o.kind == "Gateway").cloned().collect();
    let mut f2 = gateway_only.clone();
    f2.extend(read(
        "anthos-service-mesh-samples/docs/migrate-to-managed-asm/virtual-service.yaml",
    ));
    // F1: the ServiceEntry with its placeholder replaced by an address (as `sed` does).
    let se_text = std::fs::read_to_string(
        upstream.join("anthos-service-mesh-samples/docs/migrate-to-managed-asm/service-entry.yaml"),
    )
    .unwrap()
    .replace("1.2.3.4", "198.18.1.1");
    f2.extend(parse("service-entry.yaml", &se_text));
    let mut cases = vec![
        ("B4 frontend-gateway (upstream)", b4.clone()),
        ("F2 50/50 VirtualService + F1 ServiceEntry (upstream)", f2),
    ];
    cases.extend(own_gateway_cases());
    cases.extend(route_cases(b4, gateway_only, se_text));
    cases
}

/// A VirtualService `vs-case` on `gateways` and `host` with one route.
fn vs(gateways: &str, host: &str, route: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: vs-case\nspec:\n  gateways: [{gateways}]\n  hosts: [\"{host}\"]\n  http:\n  - route:\n{route}"
    )
}

/// One destination of a route, with its weight if it has one.
fn dest(host: &str, port: u16, weight: Option<u32>) -> String {
    let w = weight
        .map(|w| format!("      weight: {w}\n"))
        .unwrap_or_default();
    format!("    - destination: {{host: {host}, port: {{number: {port}}}}}\n{w}")
}

/// The cases whose Gateway is their own: a port without a Service port, a port equal to the
/// Service's targetPort, `./host`, an empty selector.
fn own_gateway_cases() -> Vec<(&'static str, Vec<Object>)> {
    let frontend = dest("frontend", 80, None);
    vec![
        (
            "Gateway port without a Service port (8081)",
            parse(
                "case.yaml",
                &format!(
                    "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw-8081\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 8081, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n---\n{}",
                    vs("gw-8081", "*", &frontend)
                ),
            ),
        ),
        (
            // istiod binds a server port that no Service port equals as it is: 8080, which the
            // Service's port 80 targets, so the load balancer's port 80 reaches it.
            "Gateway port equal to the Service's targetPort (8080)",
            parse(
                "case.yaml",
                &format!(
                    "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw-8080\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 8080, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n---\n{}",
                    vs("gw-8080", "*", &frontend)
                ),
            ),
        ),
        (
            "./host on the Gateway",
            parse(
                "case.yaml",
                &format!(
                    "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw-dot\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 80, name: http, protocol: HTTP}}\n    hosts: [\"./shop.example.com\"]\n---\n{}",
                    vs("gw-dot", "shop.example.com", &frontend)
                ),
            ),
        ),
        (
            "empty Gateway selector",
            parse(
                "case.yaml",
                &format!(
                    "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw-all\nspec:\n  selector: {{}}\n  servers:\n  - port: {{number: 80, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n---\n{}",
                    vs("gw-all", "*", &frontend)
                ),
            ),
        ),
    ]
}

/// The cases on the upstream Gateway: several VirtualServices, weights, hosts and destinations.
fn route_cases(
    b4: Vec<Object>,
    gateway_only: Vec<Object>,
    se_text: String,
) -> Vec<(&'static str, Vec<Object>)> {
    let gw = |extra: &str| {
        let mut v = gateway_only.clone();
        v.extend(parse("case.yaml", extra));
        v
    };
    let frontend = dest("frontend", 80, None);
    let se_two_ports = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se-two\nspec:\n  hosts: [v2.example.com]\n  location: MESH_EXTERNAL\n  ports:\n  - {number: 80, name: http, protocol: HTTP}\n  - {number: 8080, name: http-alt, protocol: HTTP}\n  resolution: STATIC\n  endpoints:\n  - address: 198.18.1.1\n";
    vec![
        ("two VirtualServices on one host", {
            let mut v = b4.clone();
            v.extend(parse(
                "case.yaml",
                &vs("frontend-gateway", "*", &dest("v2.example.com", 80, None))
                    .replace("name: vs-case", "name: vs-second"),
            ));
            v.extend(parse("se.yaml", &se_text));
            v
        }),
        (
            "weight 0 destination",
            gw(&vs(
                "frontend-gateway",
                "*",
                &format!(
                    "{}{}",
                    dest("frontend", 80, Some(100)),
                    dest("frontend.default.svc.cluster.local", 8080, Some(0))
                ),
            )),
        ),
        (
            "FQDN destination host",
            gw(&vs(
                "frontend-gateway",
                "*",
                &dest("frontend.default.svc.cluster.local", 80, None),
            )),
        ),
        ("ServiceEntry with two ports, route to the second", {
            let mut v = gw(&vs(
                "frontend-gateway",
                "*",
                &dest("v2.example.com", 8080, None),
            ));
            v.extend(parse("se.yaml", se_two_ports));
            v
        }),
        (
            "VirtualService naming a Gateway that does not exist",
            gw(&vs("no-such-gateway", "*", &frontend)),
        ),
        (
            "destination nothing defines",
            gw(&vs("frontend-gateway", "*", &dest("nowhere", 80, None))),
        ),
        (
            "specific host and a path match",
            gw(
                &vs("frontend-gateway", "shop.example.com", &frontend).replace(
                    "  - route:\n",
                    "  - match: [{uri: {prefix: /cart}}]\n    route:\n",
                ),
            ),
        ),
    ]
}

/// The normal form of the gateway's configuration.
fn normal(
    listener_ports: BTreeSet<u16>,
    routes: BTreeMap<u16, BTreeMap<String, Vec<Value>>>,
    missing: BTreeSet<String>,
) -> Value {
    json!({"listeners": listener_ports, "routes": routes, "missing_clusters": missing})
}

/// A route's retry policy in normal form: what to retry on, how often, which status codes, how
/// a retry picks its host (predicate names) and how many picks it tries. Null when the route
/// has none (istiod's 404 routes).
fn retry(policy: &Value) -> Value {
    if policy.is_null() {
        return Value::Null;
    }
    // Envoy's config_dump writes int64 fields as strings (proto3 JSON); the emulation writes
    // what it serves.
    let count = |v: &Value| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    json!({
        "retry_on": policy["retry_on"],
        "num_retries": count(&policy["num_retries"]),
        "retriable_status_codes": policy["retriable_status_codes"],
        "host_predicates": policy["retry_host_predicate"].as_array().into_iter().flatten()
            .map(|p| p["name"].clone()).collect::<Vec<_>>(),
        "host_selection_retry_max_attempts": count(&policy["host_selection_retry_max_attempts"]),
        "retry_priority": policy["retry_priority"]["name"],
    })
}

fn real_form(dump: &Value, port_of_target: &BTreeMap<u16, u16>) -> Value {
    let map = |p: u16| *port_of_target.get(&p).unwrap_or(&p);
    let listeners: BTreeSet<u16> = section(dump, "ListenersConfigDump")["dynamic_listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            l["active_state"]["listener"]["address"]["socket_address"]["port_value"].as_u64()
        })
        .map(|p| map(p as u16))
        .collect();
    let clusters: BTreeSet<String> = ["dynamic_active_clusters", "dynamic_warming_clusters"]
        .iter()
        .flat_map(|k| {
            section(dump, "ClustersConfigDump")[*k]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["cluster"]["name"].as_str().map(str::to_string))
        .collect();
    let mut routes = BTreeMap::new();
    let mut missing = BTreeSet::new();
    for rc in section(dump, "RoutesConfigDump")["dynamic_route_configs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rc = &rc["route_config"];
        let Some(port) = rc["name"]
            .as_str()
            .and_then(|n| n.strip_prefix("http."))
            .and_then(|p| p.parse::<u16>().ok())
        else {
            continue;
        };
        let mut hosts = BTreeMap::new();
        for vh in rc["virtual_hosts"].as_array().into_iter().flatten() {
            let mut domains: Vec<String> = vh["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect();
            domains.sort();
            let mut rs = Vec::new();
            for r in vh["routes"].as_array().into_iter().flatten() {
                let m = &r["match"];
                let matcher = if let Some(p) = m["prefix"].as_str() {
                    format!("prefix:{p}")
                } else if let Some(p) = m["path"].as_str() {
                    format!("path:{p}")
                } else if let Some(p) = m["safe_regex"]["regex"].as_str() {
                    format!("safe_regex:{p}")
                } else {
                    format!("other:{m}")
                };
                let to: Vec<(String, u64)> = if let Some(c) = r["route"]["cluster"].as_str() {
                    vec![(c.to_string(), 100)]
                } else if let Some(ws) = r["route"]["weighted_clusters"]["clusters"].as_array() {
                    ws.iter()
                        .map(|w| {
                            (
                                w["name"].as_str().unwrap_or_default().to_string(),
                                w["weight"].as_u64().unwrap_or(0),
                            )
                        })
                        .collect()
                } else if let Some(s) = r["direct_response"]["status"].as_u64() {
                    vec![(format!("direct_response {s}"), 100)]
                } else {
                    vec![("other".into(), 0)]
                };
                for (c, _) in &to {
                    if c.starts_with("outbound|") && !clusters.contains(c) {
                        missing.insert(c.clone());
                    }
                }
                rs.push(json!({"match": matcher, "to": to, "retry": retry(&r["route"]["retry_policy"])}));
            }
            // istiod's 404 "blackhole" host for a port with no routes answers as no host does.
            let only_404 = rs.iter().all(|r| r["to"][0][0] == "direct_response 404");
            if !(vh["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("blackhole"))
                && only_404)
            {
                hosts.insert(domains.join(","), rs);
            }
        }
        routes.insert(map(port), hosts);
    }
    normal(listeners, routes, missing)
}

fn istio_gateway_workload() -> Workload {
    Workload {
        namespace: "istio-system".into(),
        name: "istio-ingressgateway".into(),
        labels: BTreeMap::from([
            ("app".to_string(), "istio-ingressgateway".to_string()),
            ("istio".to_string(), "ingressgateway".to_string()),
        ]),
    }
}

fn emulated_form(
    objects: &[Object],
    workload: &Workload,
    gateway_service: &Object,
    frontend: &[Object],
) -> Value {
    let mut store = Store::new(AddressPlan::new(250, 0));
    for ns in ["istio-system", "asm-ingress"] {
        store.create_namespace(ns).unwrap();
    }
    let none = BTreeSet::new();
    store
        .apply(gateway_service, &workload.namespace, &none)
        .unwrap();
    for o in frontend.iter().chain(objects) {
        store.apply(o, "default", &none).unwrap();
    }
    let snap = translate(&store, workload);
    // The retry policies are in the Envoy resources the emulation serves, not in its snapshot.
    let (_, rds, _) = envoy_resources(&snap, 0, Path::new("."));
    let retry_of = |port: u16, vhost: &str, i: usize| {
        rds["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|rc| rc["name"] == route_name(port).as_str())
            .and_then(|rc| {
                rc["virtual_hosts"]
                    .as_array()?
                    .iter()
                    .find(|v| v["name"] == vhost)
                    .cloned()
            })
            .map(|v| retry(&v["routes"][i]["route"]["retry_policy"]))
            .unwrap_or(Value::Null)
    };
    let present: BTreeSet<&str> = snap.clusters.iter().map(|c| c.name.as_str()).collect();
    let mut missing = BTreeSet::new();
    let mut routes = BTreeMap::new();
    for (port, vhosts) in &snap.routes {
        let mut hosts = BTreeMap::new();
        for vh in vhosts {
            let mut domains = vh.domains.clone();
            domains.sort();
            let rs: Vec<Value> = vh
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    for (c, _) in &r.clusters {
                        if !present.contains(c.as_str()) {
                            missing.insert(c.clone());
                        }
                    }
                    json!({"match": format!("{}:{}", r.path.0, r.path.1), "to": r.clusters,
                           "retry": retry_of(*port, &vh.name, i)})
                })
                .collect();
            hosts.insert(domains.join(","), rs);
        }
        // By the port the emulation binds (the load balancer's, or the pod's), as the real form
        // maps the real listener's pod port through the Service.
        let bound = snap.listeners.iter().find(|l| l.port == *port);
        routes.insert(bound.map_or(*port, |l| l.addr.port()), hosts);
    }
    normal(
        snap.listeners.iter().map(|l| l.addr.port()).collect(),
        routes,
        missing,
    )
}

/// Strips what the API server adds, so a read object can be applied elsewhere.
fn as_object(v: &Value) -> Object {
    let mut v = v.clone();
    let name = v["metadata"]["name"].clone();
    let ns = v["metadata"]["namespace"].clone();
    v["metadata"] = json!({"name": name, "namespace": ns});
    v.as_object_mut().unwrap().remove("status");
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Service");
    parse("svc.yaml", &serde_json::to_string(&v).unwrap())
        .pop()
        .unwrap()
}

/// The version of the last listener push the gateway's Envoy accepted: istiod stamps each
/// push with its push version (the SotW `version_info` of `ListenersConfigDump`); empty before
/// the first push, or while Envoy's admin does not answer.
async fn pushed(gateway: &GatewayPod) -> String {
    match gateway.config_dump().await {
        Ok(d) => section(&d, "ListenersConfigDump")["version_info"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        Err(_) => String::new(),
    }
}

/// The gateway's configuration once istiod has pushed what was applied after `before` (the
/// push version read by [`pushed`] before the apply): it waits for a listener push newer than
/// `before`, then until the configuration has been quiet for 1.5 s (the routes a listener push
/// names arrive after it). Comparing earlier would compare the old configuration, which can
/// equal the emulated answer by chance, so no push within 20 s fails the test.
async fn settle(
    gateway: &GatewayPod,
    ports: &BTreeMap<u16, u16>,
    before: &str,
    what: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = pushed(gateway).await;
        if now != before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: istiod pushed no new listeners to the gateway within 20 s (still push {before:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let quiet = Duration::from_millis(1500);
    let mut last = Value::Null;
    let mut since = Instant::now();
    loop {
        // Envoy's admin answers once Envoy is up: until then there is no configuration.
        let form = match gateway.config_dump().await {
            Ok(d) => real_form(&d, ports),
            Err(_) => Value::Null,
        };
        if form != last {
            last = form;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return last;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(20),
            "{what}: the gateway's configuration never stayed unchanged for {quiet:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn remove(env: &Env, objects: &[Object]) {
    for o in objects {
        let _ = env
            .kube
            .delete(
                &o.kind,
                o.namespace.as_deref().unwrap_or("default"),
                &o.name,
                Duration::from_secs(20),
            )
            .await;
    }
}

/// The Service's targetPort → port.
fn port_map(svc: &Value) -> BTreeMap<u16, u16> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["targetPort"].as_u64()? as u16, p["port"].as_u64()? as u16)))
        .collect()
}

/// A case's report line: `same`, or `DIFFERENT` with both forms (`witness` names the real side).
fn verdict(name: &str, emulated: &Value, real: &Value, witness: &str) -> String {
    if emulated == real {
        format!("same       {name}")
    } else {
        format!("DIFFERENT  {name}\n  emulated: {emulated}\n  {witness:<9} {real}")
    }
}

/// E2's cases, each as (name, report line): the gateway template's injection and the CSM
/// gateway's translation.
async fn e2(env: &Env, frontend: &[Object]) -> Vec<(String, String)> {
    let name = "E2 asm-ingressgateway + Online Boutique's VirtualService (upstream)";
    let read = |p: &str| {
        let path = env.upstream.join(p);
        meshmig::manifest::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    env.kube.create_namespace("asm-ingress").await.unwrap();
    env.kube
        .label_namespace(
            "asm-ingress",
            &BTreeMap::from([("istio-injection".to_string(), "enabled".to_string())]),
            &[],
        )
        .await
        .unwrap();
    let deploy = read("anthos-service-mesh-samples/docs/shared/asm-ingress-gateway/asm-gateway-deployment-svc.yaml");
    env.kube.apply(&deploy, "asm-ingress").await.unwrap();
    let pod = super::wait_pod(
        &env.kube,
        "asm-ingress",
        ("asm", "ingressgateway"),
        Duration::from_secs(60),
    )
    .await;
    let injection_name = "injection of the gateway template (asm-ingressgateway, upstream)";
    let injection = injection_case(
        injection_name,
        &pod,
        deploy
            .iter()
            .find(|o| o.kind == "Deployment")
            .expect("the upstream gateway Deployment"),
        "asm-ingress",
    );
    let (pod_name, ip) = (super::name_of(&pod), super::ip_of(&pod));
    let sandbox = Sandbox::create(&pod_name, ip, 1, &env.dir.path().join("asm-gw"))
        .await
        .unwrap();
    let boot = router_bootstrap(
        &pod_name,
        "asm-ingress",
        ip,
        &pod["metadata"]["labels"],
        pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default"),
        &meshmig::tools::Tools::from_env().versions.istio,
        std::net::SocketAddr::new(env.istiod.ip.into(), 15010),
    );
    let envoy = meshmig::tools::find_envoy().unwrap();
    let mut gateway = GatewayPod::start(sandbox, &envoy, &boot, &env.dir.path().join("asm-gw"))
        .await
        .unwrap();
    let svcs = env.kube.list("Service", Some("asm-ingress")).await.unwrap();
    let svc = svcs
        .iter()
        .find(|s| s["metadata"]["name"] == "asm-ingressgateway")
        .expect("asm-ingressgateway Service");
    let ports = port_map(svc);
    let mut service = as_object(svc);
    service.namespace = Some("asm-ingress".into());
    let workload = Workload {
        namespace: "asm-ingress".into(),
        name: "asm-ingressgateway".into(),
        labels: pod["metadata"]["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
    };
    let mut objects =
        read("anthos-service-mesh-samples/docs/shared/asm-ingress-gateway/gateway.yaml");
    objects.extend(read(
        "anthos-service-mesh-samples/docs/shared/online-boutique/virtual-service.yaml",
    ));
    // The new gateway has had no listener push yet (istiod pushes listeners to a gateway once a
    // Gateway selects it), so `before` is normally empty.
    let before = pushed(&gateway).await;
    env.kube.apply(&objects, "default").await.unwrap();
    let want = emulated_form(&objects, &workload, &service, frontend);
    let real = settle(&gateway, &ports, &before, name).await;
    gateway.stop().await;
    vec![
        (injection_name.to_string(), injection),
        (name.to_string(), verdict(name, &want, &real, "istiod:")),
    ]
}

/// What injection made of a pod, in normal form: its containers, its init containers with their
/// `restartPolicy` (a native sidecar's is `Always`), the labels the injector added (beside the
/// template's and `pod-template-hash`), the annotations it adds, and the injector's record
/// (`sidecar.istio.io/status`: which init containers and containers it added, and the revision).
fn injection_shape(pod: &Value, template_labels: &BTreeMap<String, String>) -> Value {
    let containers = |k: &str, policy: bool| -> Vec<Value> {
        pod["spec"][k]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                if policy {
                    json!([c["name"], c["restartPolicy"]])
                } else {
                    c["name"].clone()
                }
            })
            .collect()
    };
    let labels_added: BTreeMap<String, Value> = pod["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !template_labels.contains_key(*k) && *k != "pod-template-hash")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let annotations = &pod["metadata"]["annotations"];
    let status: Value = annotations["sidecar.istio.io/status"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let list = |v: &Value| if v.is_null() { json!([]) } else { v.clone() };
    json!({
        "containers": containers("containers", false),
        "init_containers": containers("initContainers", true),
        "labels_added": labels_added,
        "annotations": {
            "istio.io/rev": annotations["istio.io/rev"],
            "kubectl.kubernetes.io/default-container": annotations["kubectl.kubernetes.io/default-container"],
            "kubectl.kubernetes.io/default-logs-container": annotations["kubectl.kubernetes.io/default-logs-container"],
        },
        "status": {
            "initContainers": list(&status["initContainers"]),
            "containers": list(&status["containers"]),
            "revision": status["revision"],
        },
    })
}

/// Compares the real webhook's injection of `real` (a pod of `deployment` in `namespace`,
/// labelled `istio-injection=enabled`, revision `default`) with the emulated injector's.
fn injection_case(name: &str, real: &Value, deployment: &Object, namespace: &str) -> String {
    let mut store = Store::new(AddressPlan::new(251, 0));
    store.create_namespace(namespace).unwrap();
    store
        .label_namespace(
            namespace,
            &BTreeMap::from([("istio-injection".to_string(), "enabled".to_string())]),
            &[],
        )
        .unwrap();
    store
        .apply(
            deployment,
            namespace,
            &BTreeSet::from(["default".to_string()]),
        )
        .unwrap();
    let pods = store.pods_of(namespace, &deployment.name);
    let emulated = pods.first().expect("the emulated Deployment's pod");
    let template = string_map(&deployment.body["spec"]["template"]["metadata"]["labels"]);
    let (want, got) = (
        injection_shape(emulated, &template),
        injection_shape(real, &template),
    );
    verdict(name, &want, &got, "webhook:")
}

/// Runs every case; fails on a difference not in [`KEPT`].
pub async fn run(env: &Env) {
    let svcs = env
        .kube
        .list("Service", Some("istio-system"))
        .await
        .unwrap();
    let gw_svc = svcs
        .iter()
        .find(|s| s["metadata"]["name"] == "istio-ingressgateway")
        .expect("istio-ingressgateway Service");
    let ports = port_map(gw_svc);
    let workload = istio_gateway_workload();
    let gateway_service = as_object(gw_svc);
    let ob_path = env
        .upstream
        .join("microservices-demo/release/kubernetes-manifests.yaml");
    let frontend: Vec<Object> =
        meshmig::manifest::parse(&ob_path, &std::fs::read_to_string(&ob_path).unwrap())
            .unwrap()
            .into_iter()
            .filter(|o| {
                o.name == "frontend" && ["Deployment", "Service"].contains(&o.kind.as_str())
            })
            .collect();
    // Start from no Istio configuration (up() applied B4's objects).
    let b4 = cases(&env.upstream)[0].1.clone();
    let before = pushed(&env.gateway).await;
    remove(env, &b4).await;
    let baseline = emulated_form(&[], &workload, &gateway_service, &frontend);
    let seen = settle(&env.gateway, &ports, &before, "removing B4's objects").await;
    assert_eq!(
        seen, baseline,
        "the gateway did not return to no configuration"
    );

    // (case, report line) of every case, judged together at the end.
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut misread = Vec::new();
    for (name, objects) in cases(&env.upstream) {
        let before = pushed(&env.gateway).await;
        env.kube.apply(&objects, "default").await.unwrap();
        let want = emulated_form(&objects, &workload, &gateway_service, &frontend);
        let real = settle(&env.gateway, &ports, &before, name).await;
        let dump = env.gateway.config_dump().await.unwrap();
        if let Ok(d) = std::env::var("MESHMIG_DIFF_DUMPS") {
            let _ = std::fs::write(
                Path::new(&d).join(format!("{}.json", name.replace(['/', ' '], "_"))),
                serde_json::to_vec_pretty(&dump).unwrap(),
            );
        }
        misread.extend(misreadings(name, &dump));
        lines.push((name.to_string(), verdict(name, &want, &real, "istiod:")));
        let before = pushed(&env.gateway).await;
        remove(env, &objects).await;
        let back = settle(&env.gateway, &ports, &before, name).await;
        assert_eq!(
            back, baseline,
            "{name}: the gateway did not return to no configuration"
        );
    }
    // Injection of a sidecar: the real webhook's pod of `check_injection`'s Deployment.
    let sidecar = "injection of the sidecar template (namespace smoke)";
    let app = super::wait_pod(&env.kube, "smoke", ("app", "app"), Duration::from_secs(60)).await;
    let deployment = parse("smoke.yaml", super::SMOKE_APP).pop().unwrap();
    lines.push((
        sidecar.to_string(),
        injection_case(sidecar, &app, &deployment, "smoke"),
    ));
    // E2: the CSM gateway's set, on a second real gateway: asm-ingressgateway from the real
    // upstream Deployment (`image: auto`, injected by the real webhook), its Gateway and Online
    // Boutique's VirtualService bound to it.
    lines.extend(e2(env, &frontend).await);
    let report: Vec<&str> = lines.iter().map(|(_, line)| line.as_str()).collect();
    let unexpected: Vec<&str> = lines
        .iter()
        .filter(|(name, line)| {
            line.starts_with("DIFFERENT") && !KEPT.iter().any(|(c, _)| *c == name.as_str())
        })
        .map(|(_, line)| line.as_str())
        .collect();
    println!(
        "differential, {} cases:\n{}",
        report.len(),
        report.join("\n")
    );
    assert!(
        unexpected.is_empty(),
        "the emulated translation differs from istiod's:\n{}",
        unexpected.join("\n")
    );
    assert!(
        misread.is_empty(),
        "the routes check misreads the real gateway:\n{}",
        misread.join("\n")
    );
}
