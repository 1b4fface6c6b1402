//! `routes` where a real gateway runs: what each gateway pod's Envoy routes, read from its admin
//! `config_dump` (the route and cluster configurations istiod pushed to it), not from the
//! VirtualServices as stored.
//!
//! It is judged as the `split` check's traffic meets it: requests name the gateway by address, so
//! Envoy serves them from the virtual host for any domain (`*`) of the gateway's HTTP route
//! configurations (`http.PORT`), and from that host's first route (Envoy takes the first route
//! that matches, and the procedure's routes match every path). From it are read:
//! - the destinations' weights, by the host of each destination's cluster
//!   (`outbound|PORT||HOST`);
//! - the VirtualService istiod built each route from (the route's `istio` metadata, `config`:
//!   `/apis/networking.istio.io/v1/namespaces/NS/virtual-service/NAME`), so two VirtualServices
//!   that claim the host are seen as Envoy holds them: one after the other in one virtual host,
//!   the second never reached;
//! - whether Envoy has a cluster for each destination: a missing one is named in what was
//!   observed, and left to the traffic to judge (its requests are answered 503, which F3's split
//!   shows; the catalogue's `service-entry-port-mismatch` must fail there on every backend).
//!
//! No route for `*` (istiod's `blackhole` host answering 404 for a port with no bound
//! VirtualService) means no VirtualService is bound to the Gateway.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::CheckResult;

/// Each gateway pod's `config_dump`, or why it could not be read (the backend's reading).
pub use meshmig_backends::GatewayDumps as Dumps;

/// The configuration of `config_dump`'s section of type `…ConfigDump` named `kind`
/// (`RoutesConfigDump`, `ClustersConfigDump`, `ListenersConfigDump`…); null when it has none.
pub fn section<'a>(dump: &'a Value, kind: &str) -> &'a Value {
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with(&format!(".{kind}")))
        })
        .unwrap_or(&Value::Null)
}

/// The clusters Envoy has (active or warming).
fn clusters(dump: &Value) -> BTreeSet<String> {
    let s = section(dump, "ClustersConfigDump");
    ["dynamic_active_clusters", "dynamic_warming_clusters"]
        .iter()
        .flat_map(|k| s[*k].as_array().into_iter().flatten())
        .filter_map(|c| c["cluster"]["name"].as_str().map(str::to_string))
        .collect()
}

/// One route of a virtual host.
#[derive(Debug, Clone, PartialEq)]
struct Route {
    /// The VirtualService istiod built it from (`NS/NAME`), or `""`.
    virtual_service: String,
    /// Destination clusters and their weights.
    to: Vec<(String, f64)>,
    /// The status of a direct response (istiod's 404 for no route).
    direct: Option<u64>,
}

/// A virtual host of a gateway's HTTP route configuration.
#[derive(Debug, Clone, PartialEq)]
struct VirtualHost {
    route_config: String,
    name: String,
    domains: Vec<String>,
    routes: Vec<Route>,
}

/// `/apis/networking.istio.io/v1/namespaces/NS/virtual-service/NAME` → `NS/NAME`.
fn virtual_service_of(route: &Value) -> String {
    let config = route["metadata"]["filter_metadata"]["istio"]["config"]
        .as_str()
        .unwrap_or("");
    let parts: Vec<&str> = config.split('/').collect();
    match (
        parts.iter().position(|p| *p == "namespaces"),
        parts.iter().position(|p| *p == "virtual-service"),
    ) {
        (Some(n), Some(v)) if n + 1 < parts.len() && v + 1 < parts.len() => {
            format!("{}/{}", parts[n + 1], parts[v + 1])
        }
        _ => String::new(),
    }
}

fn route(r: &Value) -> Route {
    let to = if let Some(c) = r["route"]["cluster"].as_str() {
        vec![(c.to_string(), 100.0)]
    } else {
        r["route"]["weighted_clusters"]["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| {
                (
                    w["name"].as_str().unwrap_or_default().to_string(),
                    w["weight"].as_f64().unwrap_or(0.0),
                )
            })
            .collect()
    };
    Route {
        virtual_service: virtual_service_of(r),
        to,
        direct: r["direct_response"]["status"].as_u64(),
    }
}

/// The virtual hosts of the gateway's HTTP route configurations (`http.PORT`).
fn virtual_hosts(dump: &Value) -> Vec<VirtualHost> {
    let mut out = Vec::new();
    for rc in section(dump, "RoutesConfigDump")["dynamic_route_configs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rc = &rc["route_config"];
        let name = rc["name"].as_str().unwrap_or_default();
        if !name.starts_with("http.") {
            continue;
        }
        for vh in rc["virtual_hosts"].as_array().into_iter().flatten() {
            out.push(VirtualHost {
                route_config: name.to_string(),
                name: vh["name"].as_str().unwrap_or_default().to_string(),
                domains: vh["domains"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect(),
                routes: vh["routes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(route)
                    .collect(),
            });
        }
    }
    out
}

/// The host of an istiod cluster name (`outbound|80||frontend.ns.svc.cluster.local`).
fn cluster_host(cluster: &str) -> &str {
    cluster.rsplit("||").next().unwrap_or(cluster)
}

/// The expected destination a cluster's host is (`frontend` is the short name of
/// `frontend.onlineboutique.svc.cluster.local`), or the host itself.
fn as_expected<'a>(host: &'a str, expect: &'a BTreeMap<String, f64>) -> &'a str {
    expect
        .keys()
        .find(|k| host == k.as_str() || host.starts_with(&format!("{k}.")))
        .map_or(host, String::as_str)
}

/// A route's shares by expected destination, in percent.
fn shares(route: &Route, expect: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let total: f64 = route.to.iter().map(|(_, w)| w).sum();
    let mut out = BTreeMap::new();
    for (cluster, w) in &route.to {
        if total > 0.0 && *w > 0.0 {
            *out.entry(as_expected(cluster_host(cluster), expect).to_string())
                .or_insert(0.0) += w / total * 100.0;
        }
    }
    out
}

fn vhost_evidence(v: &VirtualHost) -> Value {
    json!({"route_config": v.route_config, "virtual_host": v.name, "domains": v.domains,
           "routes": v.routes.iter().map(|r| json!({"virtual_service": r.virtual_service,
               "to": r.to, "direct_response": r.direct})).collect::<Vec<_>>()})
}

/// What one gateway pod's Envoy routes for `*`: `Ok(observed)` when it routes as expected,
/// `Err(observed)` otherwise.
fn judge_pod(
    dump: &Value,
    gateway: &str,
    expect: &BTreeMap<String, f64>,
) -> (Result<String, String>, Value) {
    let hosts = virtual_hosts(dump);
    let have = clusters(dump);
    let evidence = json!({"virtual_hosts": hosts.iter().map(vhost_evidence).collect::<Vec<_>>()});
    let any = hosts.iter().find(|v| {
        v.domains.iter().any(|d| d == "*")
            && !v.name.starts_with("blackhole")
            && v.routes.iter().any(|r| !r.to.is_empty())
    });
    let Some(vh) = any else {
        let seen: Vec<String> = hosts
            .iter()
            .map(|v| {
                let answers: Vec<String> = v
                    .routes
                    .iter()
                    .map(|r| match r.direct {
                        Some(s) => format!("answers {s}"),
                        None => format!("routes to {:?}", r.to),
                    })
                    .collect();
                if answers.is_empty() {
                    format!(
                        "{} ({}) with no route, so Envoy answers 404",
                        v.name, v.route_config
                    )
                } else {
                    format!("{} ({}) {}", v.name, v.route_config, answers.join(", "))
                }
            })
            .collect();
        return (
            Err(format!(
                "no VirtualService is bound to Gateway {gateway}: its Envoy has no route for \
                 host \"*\" (virtual hosts: {})",
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join("; ")
                }
            )),
            evidence,
        );
    };
    let first = &vh.routes[0];
    let got = shares(first, expect);
    let named = |vs: &str| {
        if vs.is_empty() {
            "a route of no VirtualService".to_string()
        } else {
            vs.to_string()
        }
    };
    let listed = got
        .iter()
        .map(|(h, p)| format!("{h} {p:.1}%"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut problems = Vec::new();
    let services: Vec<&str> = vh.routes.iter().fold(Vec::new(), |mut acc, r| {
        if !acc.contains(&r.virtual_service.as_str()) {
            acc.push(r.virtual_service.as_str());
        }
        acc
    });
    if services.len() > 1 {
        problems.push(format!(
            "{} both claim host \"*\" (Envoy holds their routes one after the other in virtual \
             host {}, and serves the first: {}'s)",
            services
                .iter()
                .map(|s| named(s))
                .collect::<Vec<_>>()
                .join(" and "),
            vh.name,
            named(services[0])
        ));
    }
    for (h, p) in expect {
        let g = got.get(h).copied().unwrap_or(0.0);
        if (g - p).abs() > 0.5 {
            problems.push(format!("{h}: {g:.1}% instead of {p}%"));
        }
    }
    for (h, p) in got.iter().filter(|(h, _)| !expect.contains_key(*h)) {
        problems.push(format!("{h}: {p:.1}%, not expected"));
    }
    let missing: Vec<String> = first
        .to
        .iter()
        .filter(|(c, w)| *w > 0.0 && !have.contains(c))
        .map(|(c, _)| format!("Envoy has no cluster {c}, so its share is answered 503"))
        .collect();
    let mut observed = format!("{} routes {listed}", named(&first.virtual_service));
    if !missing.is_empty() {
        observed.push_str(&format!(" [{}]", missing.join("; ")));
    }
    if problems.is_empty() {
        (Ok(observed), evidence)
    } else {
        (
            Err(format!("{observed} ({})", problems.join("; "))),
            evidence,
        )
    }
}

/// Every gateway pod Gateway `gateway` (`NS/NAME`) selects routes its traffic for `*` with these
/// shares, from one VirtualService, to clusters it has. `stored` is the VirtualServices as the
/// API server holds them, kept as evidence (their names and gateways).
pub fn gateway_routes(
    dumps: &Dumps,
    gateway: &str,
    expect: &BTreeMap<String, f64>,
    stored: Value,
) -> CheckResult {
    let expected = format!(
        "every gateway pod of Gateway {gateway} routes host \"*\" by one VirtualService: {}",
        super::routes::expected_shares(expect)
    );
    let mut pods = serde_json::Map::new();
    let mut failed = Vec::new();
    let mut passed = Vec::new();
    for (pod, dump) in dumps {
        match dump {
            Ok(d) => {
                let (verdict, ev) = judge_pod(d, gateway, expect);
                pods.insert(pod.clone(), ev);
                match verdict {
                    Ok(o) => passed.push(format!("{pod}: {o}")),
                    Err(o) => failed.push(format!("{pod}: {o}")),
                }
            }
            Err(e) => {
                pods.insert(pod.clone(), json!({"error": e}));
                failed.push(format!("{pod}: its config_dump could not be read: {e}"));
            }
        }
    }
    if dumps.is_empty() {
        failed.push(format!("Gateway {gateway} selects no running gateway pod"));
    }
    let evidence = json!({"gateway pods (Envoy config_dump)": pods,
                          "VirtualServices as stored": stored});
    let ok = failed.is_empty();
    let observed = if ok { passed } else { failed }.join("; ");
    CheckResult::new("routes", ok, expected, observed, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route and cluster sections of a gateway's config_dump, in the shape Envoy 1.40.0's
    /// admin `/config_dump` writes them for istiod 1.31.0's push (abridged to the fields read
    /// here; a whole dump is in the kwok trial's report evidence).
    fn dump(routes: Value, clusters: &[&str]) -> Value {
        json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
             "dynamic_active_clusters": clusters.iter().map(|c| json!({"cluster": {"name": c}})).collect::<Vec<_>>()},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
             "dynamic_route_configs": [{"route_config": {"name": "http.8080", "virtual_hosts": routes}}]}
        ]})
    }

    fn meta(vs: &str) -> Value {
        json!({"filter_metadata": {"istio": {"config":
            format!("/apis/networking.istio.io/v1/namespaces/onlineboutique/virtual-service/{vs}")}}})
    }

    const FRONTEND: &str = "outbound|80||frontend.onlineboutique.svc.cluster.local";
    const V2: &str = "outbound|80||v2.example.com";

    fn weighted(vs: &str, f: u64, v2: u64) -> Value {
        json!({"match": {"prefix": "/"}, "metadata": meta(vs), "route": {"weighted_clusters":
            {"clusters": [{"name": FRONTEND, "weight": f}, {"name": V2, "weight": v2}]}}})
    }

    fn expect(f: f64, v2: f64) -> BTreeMap<String, f64> {
        BTreeMap::from([("frontend".into(), f), ("v2.example.com".into(), v2)])
    }

    fn one(d: Value) -> Dumps {
        BTreeMap::from([("istio-system/istio-ingressgateway-0".to_string(), Ok(d))])
    }

    fn run(d: Value, e: &BTreeMap<String, f64>) -> CheckResult {
        gateway_routes(&one(d), "onlineboutique/frontend-gateway", e, json!([]))
    }

    #[test]
    fn the_split_the_gateway_holds_passes() {
        let d = dump(
            json!([{"name": "*:80", "domains": ["*"], "routes": [weighted("frontend-ingress", 50, 50)]}]),
            &[FRONTEND, V2],
        );
        let r = run(d, &expect(50.0, 50.0));
        assert!(r.ok, "{}", r.observed);
        assert!(r.observed.contains(
            "onlineboutique/frontend-ingress routes frontend 50.0%, v2.example.com 50.0%"
        ));
    }

    #[test]
    fn reversed_weights_fail_with_both_shares() {
        let d = dump(
            json!([{"name": "*:80", "domains": ["*"], "routes": [weighted("frontend-ingress", 10, 90)]}]),
            &[FRONTEND, V2],
        );
        let r = run(d, &expect(90.0, 10.0));
        assert!(!r.ok);
        assert!(
            r.observed.contains("frontend: 10.0% instead of 90%"),
            "{}",
            r.observed
        );
        assert!(r.observed.contains("v2.example.com: 90.0% instead of 10%"));
    }

    #[test]
    fn two_virtual_services_in_one_host_fail_naming_both() {
        let old = json!({"match": {"prefix": "/"}, "metadata": meta("frontend-ingress"),
                         "route": {"cluster": FRONTEND}});
        let d = dump(
            json!([{"name": "*:80", "domains": ["*"], "routes": [old, weighted("frontend-migration", 50, 50)]}]),
            &[FRONTEND, V2],
        );
        let r = run(d, &expect(50.0, 50.0));
        assert!(!r.ok);
        assert!(r.observed.contains(
            "onlineboutique/frontend-ingress and onlineboutique/frontend-migration both claim host"
        ), "{}", r.observed);
        assert!(r.observed.contains("frontend: 100.0% instead of 50%"));
    }

    #[test]
    fn a_blackhole_host_means_nothing_is_bound() {
        let d = dump(
            json!([{"name": "blackhole:80", "domains": ["*"], "routes": [
                {"match": {"prefix": "/"}, "direct_response": {"status": 404}}]}]),
            &[],
        );
        let r = run(d, &expect(50.0, 50.0));
        assert!(!r.ok);
        assert!(r
            .observed
            .contains("no VirtualService is bound to Gateway onlineboutique/frontend-gateway"));
        assert!(
            r.observed.contains("blackhole:80 (http.8080) answers 404"),
            "{}",
            r.observed
        );
        // As istiod 1.31.0 pushed it in the kwok run of migration-vs-wrong-gateway: no routes.
        let d = dump(
            json!([{"name": "blackhole:80", "domains": ["*"], "routes": []}]),
            &[],
        );
        let r = run(d, &expect(50.0, 50.0));
        assert!(!r.ok);
        assert!(
            r.observed
                .contains("blackhole:80 (http.8080) with no route, so Envoy answers 404"),
            "{}",
            r.observed
        );
    }

    #[test]
    fn a_destination_without_a_cluster_is_named_for_the_traffic_to_judge() {
        let d = dump(
            json!([{"name": "*:80", "domains": ["*"], "routes": [weighted("frontend-ingress", 50, 50)]}]),
            &[FRONTEND],
        );
        let r = run(d, &expect(50.0, 50.0));
        assert!(r.ok);
        assert!(r.observed.contains(
            "Envoy has no cluster outbound|80||v2.example.com, so its share is answered 503"
        ));
    }

    #[test]
    fn an_unreadable_dump_and_no_pod_fail() {
        let e = expect(100.0, 0.0);
        let r = gateway_routes(
            &BTreeMap::from([(
                "istio-system/gw".to_string(),
                Err("connection refused".into()),
            )]),
            "ns/gw",
            &e,
            json!([]),
        );
        assert!(!r.ok);
        assert!(r.observed.contains("could not be read: connection refused"));
        let r = gateway_routes(&BTreeMap::new(), "ns/gw", &e, json!([]));
        assert!(!r.ok);
        assert!(r.observed.contains("selects no running gateway pod"));
    }

    /// A real gateway's routes and clusters, as the real istioctl 1.31.0 printed them from a
    /// real Envoy configured by a real istiod on a kind cluster
    /// (`fixtures/istioctl-proxy-config/README.md` says how they were captured).
    fn captured(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/istioctl-proxy-config")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn judge_captured(name: &str, e: &BTreeMap<String, f64>) -> CheckResult {
        gateway_routes(
            &BTreeMap::from([(
                "istio-system/istio-ingressgateway".to_string(),
                Ok(captured(name)),
            )]),
            "default/frontend-gateway",
            e,
            json!([]),
        )
    }

    /// The upstream migration VirtualService at 50/50, read back from the gateway istiod
    /// configured: the judge finds its weights, its VirtualService and both clusters.
    #[test]
    fn a_real_gateway_holding_the_50_50_migration_passes() {
        let r = judge_captured("migration-50-50.json", &expect(50.0, 50.0));
        assert!(r.ok, "{}", r.observed);
        assert_eq!(
            r.observed,
            "istio-system/istio-ingressgateway: default/frontend-ingress routes frontend 50.0%, v2.example.com 50.0%"
        );
        let r = judge_captured("migration-50-50.json", &expect(100.0, 0.0));
        assert!(!r.ok);
        assert!(
            r.observed.contains("frontend 50.0%, v2.example.com 50.0%"),
            "{}",
            r.observed
        );
    }

    /// The migration VirtualService under a new name beside the original: the real gateway
    /// holds both in one virtual host and serves the first, which the judge names.
    #[test]
    fn a_real_gateway_holding_two_virtual_services_fails_naming_both() {
        let r = judge_captured("two-virtual-services.json", &expect(50.0, 50.0));
        assert!(!r.ok);
        for needle in ["frontend-ingress", "frontend-migration", "frontend 100.0%"] {
            assert!(r.observed.contains(needle), "{needle} in {}", r.observed);
        }
    }
}
