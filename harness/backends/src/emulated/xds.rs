//! Translating a virtual cluster's Istio configuration into Envoy configuration, as istiod does
//! for a gateway workload.
//!
//! - Gateways whose `selector` matches the workload's pod labels (an empty one matches every
//!   gateway, as in istiod) give listeners, one per pod port
//!   that istiod resolves a server port to (the `targetPort` of the workload's Service port equal
//!   to the server port, or the server port itself); each is bound where the load balancer
//!   reaches that pod port (the Service port targeting it), or on the pod when none does.
//! - VirtualServices bound to those Gateways (`name` in their own namespace, or `namespace/name`)
//!   give virtual hosts and weighted routes, first match first; Istio's default retry policy and
//!   disabled timeout are kept.
//! - Each destination host becomes the cluster `outbound|PORT||FQDN`: a Service's ready pod
//!   addresses at its target port, or a STATIC ServiceEntry's endpoint addresses. A host nothing
//!   defines gets no cluster, so Envoy answers 503 for the share routed there, as with Istio.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde_json::{json, Value};

use meshmig_core::istio::{Gateway, HttpRoute, ServiceEntry, StringMatch, VirtualService};
use meshmig_core::manifest::string_map;

use super::store::{pod_ready, selects, Store};

/// A gateway workload: the pods one Envoy serves for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Its namespace.
    pub namespace: String,
    /// Its Deployment.
    pub name: String,
    /// Its pods' labels.
    pub labels: BTreeMap<String, String>,
}

/// A listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// Where it binds.
    pub addr: SocketAddr,
    /// The port the listener binds on the gateway pod (istiod's resolved port: the Service's
    /// `targetPort` for the server port, see [`resolve_port`]); it names the listener's route
    /// configuration (`http.PORT`), as istiod names it. `addr` is where the emulation binds it:
    /// the load balancer's port that reaches it, or the pod's own.
    pub port: u16,
}

/// One weighted route.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Route {
    /// Path match: (`prefix` | `path`, value).
    pub path: (&'static str, String),
    /// (cluster, weight).
    pub clusters: Vec<(String, u32)>,
    /// Abort fault: (percent, status).
    pub abort: Option<(f64, u16)>,
    /// Response headers Envoy adds to this route's answers; values may use Envoy's command
    /// operators (`%UPSTREAM_HOST%`).
    pub response_headers: Vec<(String, String)>,
    /// Response headers added per destination cluster (what Istio makes of a VirtualService's
    /// `route[].headers.response.add`: the weighted cluster's `response_headers_to_add`).
    pub cluster_response_headers: BTreeMap<String, Vec<(String, String)>>,
}

/// A virtual host.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualHost {
    /// Name (`host:port`).
    pub name: String,
    /// Domains.
    pub domains: Vec<String>,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
}

/// An upstream cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// `outbound|PORT||FQDN`.
    pub name: String,
    /// Endpoints.
    pub endpoints: Vec<SocketAddr>,
}

/// What one gateway Envoy should serve.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Listeners.
    pub listeners: Vec<Listener>,
    /// Route configurations by listener port ([`Listener::port`]).
    pub routes: BTreeMap<u16, Vec<VirtualHost>>,
    /// Clusters.
    pub clusters: Vec<Cluster>,
    /// What istiod would warn about (routes to unknown hosts, unsupported protocols).
    pub warnings: Vec<String>,
}

impl Snapshot {
    /// The same configuration with every port below 1024 that Envoy binds or connects to moved
    /// as `shift` says (listeners on load-balancer addresses, endpoints such as another
    /// cluster's load balancer); route names keep the listener's pod port, as istiod names them.
    pub fn shifted(mut self, shift: &crate::ports::PortShift) -> Self {
        for l in &mut self.listeners {
            l.addr = shift.addr(l.addr);
        }
        for c in &mut self.clusters {
            for e in &mut c.endpoints {
                *e = shift.addr(*e);
            }
        }
        self
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
    serde_json::from_value(v.clone()).ok()
}

/// The fully qualified name of a destination host seen from `namespace`.
pub fn fqdn(host: &str, namespace: &str) -> String {
    if host.contains('.') {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.cluster.local")
    }
}

/// Whether a VirtualService names this Gateway.
fn binds(vs: &VirtualService, gw: &Gateway) -> bool {
    let vs_ns = vs.metadata.namespace.clone().unwrap_or_default();
    let gw_ns = gw.metadata.namespace.clone().unwrap_or_default();
    let gw_name = gw.metadata.name.clone().unwrap_or_default();
    vs.spec.gateways.iter().any(|g| match g.split_once('/') {
        Some((ns, name)) => ns == gw_ns && name == gw_name,
        None => vs_ns == gw_ns && *g == gw_name,
    })
}

/// Whether a VirtualService host is admitted by a server's hosts.
fn host_admitted(vs_host: &str, server_hosts: &[String], vs_ns: &str) -> bool {
    server_hosts.iter().any(|h| {
        let (ns, host) = match h.split_once('/') {
            Some((ns, host)) => (Some(ns), host),
            None => (None, h.as_str()),
        };
        let ns_ok = ns.is_none_or(|n| n == "*" || n == "." || n == vs_ns);
        let host_ok = host == "*"
            || host == vs_host
            || (host.starts_with("*.") && vs_host.ends_with(&host[1..]));
        ns_ok && host_ok
    })
}

/// A Service port's numeric `targetPort` (its `port` when unset). A named `targetPort` is not
/// resolved: the emulation knows no container port names.
fn target_port(p: &Value) -> Option<u16> {
    match &p["targetPort"] {
        Value::Null => p["port"].as_u64(),
        t => t.as_u64(),
    }
    .and_then(|n| u16::try_from(n).ok())
}

/// The port a Gateway server's listener binds on the gateway pod, as istiod's `resolvePorts`
/// decides it for a Gateway that selects by label (pilot/pkg/model/gateway.go, istio 1.31): the
/// `targetPort` of the first of the workload's Service ports whose `port` is the server's;
/// with none, the server port as it is. So a server on port 8080 beside a Service 80 → 8080
/// binds 8080, which the load balancer's port 80 reaches.
fn resolve_port(exposing: &[&&Value], server_port: u16) -> u16 {
    exposing
        .iter()
        .flat_map(|s| s["spec"]["ports"].as_array().into_iter().flatten())
        .find(|p| p["port"].as_u64() == Some(u64::from(server_port)))
        .and_then(target_port)
        .unwrap_or(server_port)
}

/// Whether a Gateway's `selector` picks a gateway workload, as istiod's `mergeGateways` decides
/// it (pilot/pkg/model/push_context.go, istio 1.31): an empty selector applies to every gateway;
/// otherwise every label of the selector must be on the workload's pods.
fn gateway_selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.is_empty() || selects(selector, labels)
}

/// Translates the cluster's configuration for one gateway workload.
pub fn translate(store: &Store, workload: &Workload) -> Snapshot {
    let mut snap = Snapshot::default();
    let gateways: Vec<Gateway> = store
        .list_by_age("Gateway")
        .into_iter()
        .filter_map(parse::<Gateway>)
        .filter(|g| gateway_selects(&g.spec.selector, &workload.labels))
        .collect();
    let services: Vec<&Value> = store.list("Service", None);
    // The workload's Services (istiod's ServiceTargets of the gateway proxy): a Service
    // selects pods in its own namespace only.
    let exposing: Vec<&&Value> = services
        .iter()
        .filter(|s| s["metadata"]["namespace"] == workload.namespace.as_str())
        .filter(|s| selects(&string_map(&s["spec"]["selector"]), &workload.labels))
        .collect();
    let pod_ip = store
        .pods_matching(Some(&workload.namespace), &workload.labels)
        .into_iter()
        .find(|p| pod_ready(p))
        .and_then(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .unwrap_or_else(|| "127.0.0.1".into());
    let virtual_services: Vec<VirtualService> = store
        .list_by_age("VirtualService")
        .into_iter()
        .filter_map(parse::<VirtualService>)
        .collect();
    let mut wanted_clusters: BTreeSet<(String, u16, String)> = BTreeSet::new();

    for gw in &gateways {
        for server in &gw.spec.servers {
            let port = server.port.number;
            if !server.port.protocol.eq_ignore_ascii_case("HTTP") {
                snap.warnings.push(format!(
                    "gateway {}: protocol {} on port {port} is not served by the emulated gateway",
                    gw.metadata.name.clone().unwrap_or_default(),
                    server.port.protocol
                ));
                continue;
            }
            let port = resolve_port(&exposing, port);
            if !snap.listeners.iter().any(|l| l.port == port) {
                // Reachable through the load balancer on each Service port that targets it;
                // only on the pod otherwise.
                let via_lb = exposing.iter().find_map(|s| {
                    let lb_port = s["spec"]["ports"]
                        .as_array()?
                        .iter()
                        .find(|p| target_port(p) == Some(port))?["port"]
                        .as_u64()?;
                    Some((
                        s["status"]["loadBalancer"]["ingress"][0]["ip"]
                            .as_str()
                            .unwrap_or(&pod_ip)
                            .to_string(),
                        lb_port,
                    ))
                });
                let (ip, bind) = via_lb.unwrap_or_else(|| (pod_ip.clone(), u64::from(port)));
                if let Ok(addr) = format!("{ip}:{bind}").parse() {
                    snap.listeners.push(Listener { addr, port });
                }
            }
            let vhosts = snap.routes.entry(port).or_default();
            for vs in virtual_services.iter().filter(|vs| binds(vs, gw)) {
                let vs_ns = vs.metadata.namespace.clone().unwrap_or_default();
                for host in vs
                    .spec
                    .hosts
                    .iter()
                    .filter(|h| host_admitted(h, &server.hosts, &vs_ns))
                {
                    let routes: Vec<Route> = vs
                        .spec
                        .http
                        .iter()
                        .flat_map(|r| route(r, &vs_ns, &mut wanted_clusters))
                        .collect();
                    // As istiod: the host alone; the route configuration ignores the port in
                    // Host headers (`ignore_port_in_host_matching`).
                    let domains = vec![host.clone()];
                    match vhosts.iter_mut().find(|v| v.domains == domains) {
                        Some(v) => v.routes.extend(routes),
                        None => vhosts.push(VirtualHost {
                            name: format!("{host}:{port}"),
                            domains,
                            routes,
                        }),
                    }
                }
            }
        }
    }

    let entries: Vec<ServiceEntry> = store
        .list_by_age("ServiceEntry")
        .into_iter()
        .filter_map(parse::<ServiceEntry>)
        .collect();
    for (host_fqdn, port, _) in &wanted_clusters {
        let name = format!("outbound|{port}||{host_fqdn}");
        if let Some(endpoints) = service_endpoints(store, host_fqdn, *port) {
            snap.clusters.push(Cluster { name, endpoints });
        } else if let Some(endpoints) =
            entry_endpoints(&entries, host_fqdn, *port, &mut snap.warnings)
        {
            snap.clusters.push(Cluster { name, endpoints });
        } else {
            snap.warnings.push(format!(
                "no Service or ServiceEntry defines {host_fqdn}:{port}: requests routed there get 503"
            ));
        }
    }
    snap
}

fn route(r: &HttpRoute, vs_ns: &str, wanted: &mut BTreeSet<(String, u16, String)>) -> Vec<Route> {
    let lone = r.route.len() == 1;
    // istiod leaves weight-0 destinations out of the route (differential test, "weight 0").
    let clusters: Vec<(String, u32)> = r
        .route
        .iter()
        .filter(|d| lone || d.weight != Some(0))
        .map(|d| {
            let host = fqdn(&d.destination.host, vs_ns);
            let port = d.destination.port.as_ref().map(|p| p.number).unwrap_or(80);
            wanted.insert((host.clone(), port, vs_ns.to_string()));
            let weight = d.weight.unwrap_or(if lone { 100 } else { 0 });
            (format!("outbound|{port}||{host}"), weight)
        })
        .collect();
    let abort = r
        .fault
        .as_ref()
        .map(|f| (f.abort.percentage.value, f.abort.http_status));
    let paths: Vec<(&'static str, String)> = if r.matches.is_empty() {
        vec![("prefix", "/".into())]
    } else {
        r.matches
            .iter()
            .map(|m| match &m.uri {
                Some(StringMatch::Exact(p)) => ("path", p.clone()),
                Some(StringMatch::Prefix(p)) => ("prefix", p.clone()),
                Some(StringMatch::Regex(p)) => ("safe_regex", p.clone()),
                None => ("prefix", "/".into()),
            })
            .collect()
    };
    paths
        .into_iter()
        .map(|path| Route {
            path,
            clusters: clusters.clone(),
            abort,
            ..Default::default()
        })
        .collect()
}

/// Envoy's `HeaderValueOption`s for headers to add (replacing any of the same name).
fn headers_to_add(headers: &[(String, String)]) -> Value {
    json!(headers
        .iter()
        .map(|(k, v)| json!({"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}))
        .collect::<Vec<_>>())
}

/// Ready endpoints of the Service `fqdn` for `port`, if such a Service exists.
fn service_endpoints(store: &Store, fqdn: &str, port: u16) -> Option<Vec<SocketAddr>> {
    let rest = fqdn.strip_suffix(".svc.cluster.local")?;
    let (name, ns) = rest.split_once('.')?;
    let svc = store.get("Service", ns, name)?;
    let sp = svc["spec"]["ports"]
        .as_array()?
        .iter()
        .find(|p| p["port"] == port)?
        .clone();
    let selector = string_map(&svc["spec"]["selector"]);
    let mut out = Vec::new();
    for pod in store.pods_matching(Some(ns), &selector) {
        if !pod_ready(pod) {
            continue;
        }
        let target = match &sp["targetPort"] {
            Value::Number(n) => n.as_u64().map(|n| n as u16),
            Value::String(named) => pod["spec"]["containers"].as_array().and_then(|cs| {
                cs.iter()
                    .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                    .find(|p| p["name"] == named.as_str())
                    .and_then(|p| p["containerPort"].as_u64().map(|n| n as u16))
            }),
            _ => Some(port),
        };
        if let (Some(t), Some(ip)) = (target, pod["status"]["podIP"].as_str()) {
            if let Ok(a) = format!("{ip}:{t}").parse() {
                out.push(a);
            }
        }
    }
    Some(out)
}

/// Endpoints of a STATIC ServiceEntry for `host:port`.
fn entry_endpoints(
    entries: &[ServiceEntry],
    host: &str,
    port: u16,
    warnings: &mut Vec<String>,
) -> Option<Vec<SocketAddr>> {
    let se = entries
        .iter()
        .find(|se| se.spec.hosts.iter().any(|h| h == host))?;
    let sp = se.spec.ports.iter().find(|p| p.number == port)?;
    let resolution = se.spec.resolution.as_deref().unwrap_or("NONE");
    if resolution != "STATIC" {
        warnings.push(format!(
            "ServiceEntry {}: resolution {resolution} is not emulated (only STATIC)",
            se.metadata.name.clone().unwrap_or_default()
        ));
        return None;
    }
    Some(
        se.spec
            .endpoints
            .iter()
            .filter_map(|e| {
                let p = e
                    .ports
                    .get(&sp.name)
                    .copied()
                    .or(sp.target_port)
                    .unwrap_or(port);
                format!("{}:{p}", e.address).parse().ok()
            })
            .collect(),
    )
}

/// Istio's default retry policy for HTTP routes.
fn retry_policy() -> Value {
    json!({
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
        "host_selection_retry_max_attempts": "5",
    })
}

/// The route configuration name of a listener port.
pub fn route_name(port: u16) -> String {
    format!("http.{port}")
}

/// Envoy's v3 discovery responses for a snapshot: (listeners, routes, clusters).
pub fn envoy_resources(
    snap: &Snapshot,
    version: u64,
    dir: &std::path::Path,
) -> (Value, Value, Value) {
    let source = json!({
        "resource_api_version": "V3",
        "path_config_source": {"path": dir.join("rds.json"), "watched_directory": {"path": dir}},
    });
    let listeners: Vec<Value> = snap
        .listeners
        .iter()
        .map(|l| {
            json!({
                "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                "name": format!("{}_{}", l.addr.ip(), l.addr.port()),
                "address": {"socket_address": {"address": l.addr.ip().to_string(), "port_value": l.addr.port()}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": format!("outbound_0.0.0.0_{}", l.port),
                        "use_remote_address": true,
                        "rds": {"route_config_name": route_name(l.port), "config_source": source},
                        "http_filters": [
                            {"name": "envoy.filters.http.fault",
                             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
                            {"name": "envoy.filters.http.router",
                             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                        ],
                    },
                }]}],
            })
        })
        .collect();
    let routes: Vec<Value> = snap
        .routes
        .iter()
        .map(|(port, vhosts)| {
            json!({
                "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                "name": route_name(*port),
                "validate_clusters": false,
                "ignore_port_in_host_matching": true,
                "virtual_hosts": vhosts.iter().map(|v| json!({
                    "name": v.name,
                    "domains": v.domains,
                    "routes": v.routes.iter().map(|r| {
                        let mut m = json!({});
                        m[r.path.0] = if r.path.0 == "safe_regex" {
                            json!({"regex": r.path.1})
                        } else {
                            json!(r.path.1)
                        };
                        let mut route = json!({
                            "match": m,
                            "route": {
                                "weighted_clusters": {"clusters": r.clusters.iter().map(|(c, w)| {
                                    let mut wc = json!({"name": c, "weight": w});
                                    if let Some(h) = r.cluster_response_headers.get(c) {
                                        wc["response_headers_to_add"] = headers_to_add(h);
                                    }
                                    wc
                                }).collect::<Vec<_>>()},
                                "timeout": "0s",
                                "retry_policy": retry_policy(),
                                "max_grpc_timeout": "0s",
                            },
                        });
                        if !r.response_headers.is_empty() {
                            route["response_headers_to_add"] = headers_to_add(&r.response_headers);
                        }
                        if let Some((pct, status)) = r.abort {
                            route["typed_per_filter_config"] = json!({"envoy.filters.http.fault": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                                "abort": {"http_status": status,
                                          "percentage": {"numerator": (pct * 10000.0).round() as u64, "denominator": "MILLION"}},
                            }});
                        }
                        route
                    }).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let clusters: Vec<Value> = snap
        .clusters
        .iter()
        .map(|c| {
            json!({
                "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                "name": c.name,
                "type": "STATIC",
                "connect_timeout": "2s",
                "lb_policy": "LEAST_REQUEST",
                "load_assignment": {"cluster_name": c.name, "endpoints": [{"lb_endpoints":
                    c.endpoints.iter().map(|e| json!({"endpoint": {"address": {"socket_address":
                        {"address": e.ip().to_string(), "port_value": e.port()}}}})).collect::<Vec<_>>()}]},
            })
        })
        .collect();
    let wrap = |r: Vec<Value>| json!({"version_info": version.to_string(), "resources": r});
    (wrap(listeners), wrap(routes), wrap(clusters))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulated::store::AddressPlan;
    use meshmig_core::manifest::parse as parse_manifest;
    use std::path::Path;

    fn upstream(rel: &str) -> Vec<meshmig_core::manifest::Object> {
        let p = meshmig_testsupport::shared("upstream").join(rel);
        parse_manifest(&p, &std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    fn istio_cluster() -> (Store, Workload) {
        let revs = BTreeSet::new();
        let mut s = Store::new(AddressPlan::new(201, 0));
        s.create_namespace("istio-system").unwrap();
        s.create_namespace("onlineboutique").unwrap();
        let gw_labels: BTreeMap<String, String> = [
            ("istio".to_string(), "ingressgateway".to_string()),
            ("app".into(), "istio-ingressgateway".into()),
        ]
        .into();
        s.install(
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": gw_labels},
                "spec": {"containers": [{"name": "istio-proxy", "image": "proxyv2"}]}}}}),
            &revs,
        );
        s.install(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {"type": "LoadBalancer", "selector": gw_labels, "ports": [{"name": "http2", "port": 80, "targetPort": 8080}]}}), &revs);
        for o in upstream("microservices-demo/release/kubernetes-manifests.yaml") {
            s.apply(&o, "onlineboutique", &revs).unwrap();
        }
        for o in upstream("microservices-demo/istio-manifests/frontend-gateway.yaml") {
            s.apply(&o, "onlineboutique", &revs).unwrap();
        }
        (
            s,
            Workload {
                namespace: "istio-system".into(),
                name: "istio-ingressgateway".into(),
                labels: gw_labels,
            },
        )
    }

    #[test]
    fn frontend_gateway_routes_everything_to_the_frontend_pods() {
        let (s, w) = istio_cluster();
        let snap = translate(&s, &w);
        assert_eq!(snap.listeners.len(), 1);
        assert_eq!(snap.listeners[0].addr.port(), 80);
        assert_eq!(
            snap.listeners[0].addr.ip().to_string(),
            s.load_balancers()[0]
        );
        // istiod names the route configuration by the pod port the server resolves to.
        let vh = &snap.routes[&8080];
        assert_eq!(snap.listeners[0].port, 8080);
        assert_eq!(vh[0].domains, vec!["*"]);
        assert_eq!(
            vh[0].routes[0].clusters,
            vec![(
                "outbound|80||frontend.onlineboutique.svc.cluster.local".to_string(),
                100
            )]
        );
        let c = &snap.clusters[0];
        assert_eq!(c.endpoints.len(), 1);
        assert_eq!(
            c.endpoints[0].port(),
            8080,
            "targetPort of the frontend Service"
        );
        assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
    }

    #[test]
    fn upstream_migration_virtual_service_splits_fifty_fifty_to_the_service_entry_address() {
        let (mut s, w) = istio_cluster();
        let revs = BTreeSet::new();
        for o in
            upstream("anthos-service-mesh-samples/docs/migrate-to-managed-asm/service-entry.yaml")
        {
            s.apply(&o, "onlineboutique", &revs).unwrap();
        }
        for o in
            upstream("anthos-service-mesh-samples/docs/migrate-to-managed-asm/virtual-service.yaml")
        {
            s.apply(&o, "onlineboutique", &revs).unwrap();
        }
        let snap = translate(&s, &w);
        let routes = &snap.routes[&8080][0].routes;
        assert_eq!(
            routes.len(),
            1,
            "the migration VirtualService replaces frontend-ingress"
        );
        assert_eq!(
            routes[0].clusters,
            vec![
                (
                    "outbound|80||frontend.onlineboutique.svc.cluster.local".to_string(),
                    50
                ),
                ("outbound|80||v2.example.com".to_string(), 50)
            ]
        );
        let se = snap
            .clusters
            .iter()
            .find(|c| c.name == "outbound|80||v2.example.com")
            .unwrap();
        assert_eq!(
            se.endpoints,
            vec!["1.2.3.4:80".parse().unwrap()],
            "the placeholder, before sed"
        );
        let (_, rds, _) = envoy_resources(&snap, 7, Path::new("/tmp/x"));
        assert_eq!(rds["version_info"], "7");
        let wc = &rds["resources"][0]["virtual_hosts"][0]["routes"][0]["route"]
            ["weighted_clusters"]["clusters"];
        assert_eq!(wc[1]["name"], "outbound|80||v2.example.com");
        assert_eq!(wc[1]["weight"], 50);
    }

    #[test]
    fn route_to_an_undefined_host_gets_no_cluster_and_a_warning() {
        let (mut s, w) = istio_cluster();
        for o in
            upstream("anthos-service-mesh-samples/docs/migrate-to-managed-asm/virtual-service.yaml")
        {
            s.apply(&o, "onlineboutique", &BTreeSet::new()).unwrap();
        }
        let snap = translate(&s, &w);
        assert!(!snap
            .clusters
            .iter()
            .any(|c| c.name.contains("v2.example.com")));
        assert!(
            snap.warnings
                .iter()
                .any(|m| m.contains("v2.example.com:80")),
            "{:?}",
            snap.warnings
        );
    }

    #[test]
    fn gateway_selecting_no_workload_gives_no_listener() {
        let (s, _) = istio_cluster();
        let other = Workload {
            namespace: "x".into(),
            name: "y".into(),
            labels: [("asm".to_string(), "ingressgateway".to_string())].into(),
        };
        assert!(translate(&s, &other).listeners.is_empty());
    }

    /// Where a server's listener lands, as istiod's `resolvePorts` puts it, beside the Service
    /// 80 → 8080: (server port, the pod port istiod binds, the address port the emulation binds,
    /// whether that is the load balancer).
    #[rstest::rstest]
    #[case::service_port(80, 8080, 80, true)]
    #[case::target_port_itself(8080, 8080, 80, true)]
    #[case::no_service_port(8081, 8081, 8081, false)]
    fn a_server_port_binds_as_istiod_resolves_it(
        #[case] server: u16,
        #[case] pod_port: u16,
        #[case] bound: u16,
        #[case] on_lb: bool,
    ) {
        let (mut s, w) = istio_cluster();
        let gw = format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: frontend-gateway\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {server}, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n"
        );
        for o in parse_manifest(Path::new("gw.yaml"), &gw).unwrap() {
            s.apply(&o, "onlineboutique", &BTreeSet::new()).unwrap();
        }
        let snap = translate(&s, &w);
        assert_eq!(snap.listeners.len(), 1, "{:?}", snap.listeners);
        let l = &snap.listeners[0];
        assert_eq!((l.port, l.addr.port()), (pod_port, bound));
        assert_eq!(
            l.addr.ip().to_string() == s.load_balancers()[0],
            on_lb,
            "{l:?}"
        );
        assert!(
            snap.routes.contains_key(&pod_port),
            "{:?}",
            snap.routes.keys()
        );
    }

    #[test]
    fn an_empty_gateway_selector_applies_to_every_gateway() {
        let (mut s, w) = istio_cluster();
        let gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: frontend-gateway\nspec:\n  selector: {}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n";
        for o in parse_manifest(Path::new("gw.yaml"), gw).unwrap() {
            s.apply(&o, "onlineboutique", &BTreeSet::new()).unwrap();
        }
        let other = Workload {
            namespace: "asm-ingress".into(),
            name: "asm-ingressgateway".into(),
            labels: [("asm".to_string(), "ingressgateway".to_string())].into(),
        };
        for workload in [&w, &other] {
            let snap = translate(&s, workload);
            assert_eq!(
                snap.listeners.len(),
                1,
                "{}: {:?}",
                workload.name,
                snap.listeners
            );
            assert_eq!(snap.routes[&snap.listeners[0].port][0].domains, vec!["*"]);
        }
    }
}
