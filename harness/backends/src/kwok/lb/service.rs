//! The Services and EndpointSlices as the controller reads them: their API resources, API calls
//! bounded in time, and the fields that say which Services are served, on which ports, to which
//! backends.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use kube::discovery::ApiResource;
use serde_json::Value;

pub(super) use crate::lb_fields::{is_ours, key_of, service_resource, status_ip, str_at};

use super::{LbError, API_TIMEOUT};
use crate::kube::known_resource;

pub(super) fn endpoint_slice_resource() -> ApiResource {
    known_resource("EndpointSlice")
        .expect("EndpointSlice is known")
        .0
}

/// Runs an API call with [`API_TIMEOUT`].
pub(super) async fn call<T>(
    doing: impl Into<String>,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, LbError> {
    let doing = doing.into();
    match tokio::time::timeout(API_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(LbError::Api { doing, source }),
        Err(_) => Err(LbError::Timeout {
            doing,
            waited: API_TIMEOUT,
        }),
    }
}

/// Whether the status says exactly `ip` (`ipMode: VIP`).
pub(super) fn status_is(svc: &Value, ip: Ipv4Addr) -> bool {
    svc.pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.len() == 1
                && a[0]["ip"].as_str() == Some(ip.to_string().as_str())
                && a[0]["ipMode"] == "VIP"
        })
}

/// The Service's TCP ports: number → name (`""` when unnamed).
pub(super) fn tcp_ports(svc: &Value) -> BTreeMap<u16, String> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p["protocol"].as_str().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let port = u16::try_from(p["port"].as_u64()?).ok()?;
            Some((port, p["name"].as_str().unwrap_or_default().to_string()))
        })
        .collect()
}

/// The ready backends of the Service port named `port_name` in its EndpointSlices, sorted and
/// without duplicates: IPv4 endpoints whose `conditions.ready` is not `false`, on the slice port
/// of that name (or the slice's only port when the Service port is unnamed).
pub(super) fn ready_backends(slices: &[Value], port_name: &str) -> Vec<SocketAddr> {
    let mut out = BTreeSet::new();
    for slice in slices {
        if slice["addressType"] != "IPv4" {
            continue;
        }
        let ports: Vec<&Value> = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["protocol"].as_str().unwrap_or("TCP") == "TCP")
            .collect();
        let named = ports
            .iter()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name);
        let port = match (named, ports.as_slice()) {
            (Some(p), _) => p,
            (None, [only]) if port_name.is_empty() => only,
            _ => continue,
        };
        let Some(port) = port["port"].as_u64().and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            if ep["conditions"]["ready"] == false {
                continue;
            }
            for a in ep["addresses"].as_array().into_iter().flatten() {
                if let Some(ip) = a.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
                    out.insert(SocketAddr::from((ip, port)));
                }
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_load_balancers_without_a_class_are_ours() {
        let svc = |spec: Value| json!({"metadata": {"namespace": "ns", "name": "a"}, "spec": spec});
        assert!(is_ours(&svc(json!({"type": "LoadBalancer"}))));
        assert!(!is_ours(&svc(json!({"type": "ClusterIP"}))));
        assert!(!is_ours(&svc(
            json!({"type": "LoadBalancer", "loadBalancerClass": "x/y"})
        )));
        assert_eq!(key_of(&svc(json!({}))), "ns/a");
    }

    #[test]
    fn ports_and_status() {
        let svc = json!({
            "spec": {"ports": [
                {"name": "http", "port": 80},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"port": 443, "protocol": "TCP"},
            ]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.1", "ipMode": "VIP"}]}},
        });
        assert_eq!(
            tcp_ports(&svc),
            BTreeMap::from([(80, "http".to_string()), (443, String::new())])
        );
        assert_eq!(status_ip(&svc), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert!(status_is(&svc, Ipv4Addr::new(198, 18, 0, 1)));
        assert!(!status_is(&svc, Ipv4Addr::new(198, 18, 0, 2)));
        assert!(!status_is(&json!({}), Ipv4Addr::new(198, 18, 0, 1)));
    }

    #[test]
    fn ready_endpoints_on_the_named_port() {
        let slices = vec![
            json!({
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                          {"name": "admin", "port": 9000, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.244.0.2"], "conditions": {"ready": true}},
                    {"addresses": ["10.244.0.3"], "conditions": {"ready": false, "terminating": true}},
                    {"addresses": ["10.244.0.4"], "conditions": {}},
                ],
            }),
            json!({
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": ["10.244.0.2"], "conditions": {"ready": true}}],
            }),
            json!({
                "addressType": "IPv6",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": ["fd00::1"]}],
            }),
        ];
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            ready_backends(&slices, "http"),
            vec![a("10.244.0.2:8080"), a("10.244.0.4:8080")]
        );
        assert_eq!(
            ready_backends(&slices, "admin"),
            vec![a("10.244.0.2:9000"), a("10.244.0.4:9000")]
        );
        assert!(ready_backends(&slices, "other").is_empty());
        // An unnamed Service port takes the slice's only port (the second slice).
        assert_eq!(ready_backends(&slices, ""), vec![a("10.244.0.2:8080")]);
        assert!(ready_backends(&[], "http").is_empty());
    }
}
