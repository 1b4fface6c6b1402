//! The fields of a LoadBalancer Service that a load-balancer controller reads, shared by the
//! controllers of the backends whose clusters have no cloud provider (kwok's, and kind's on a
//! machine where cloud-provider-kind cannot run).

use std::net::Ipv4Addr;

use kube::discovery::ApiResource;
use serde_json::Value;

use crate::kube::known_resource;

/// The Service API resource.
pub fn service_resource() -> ApiResource {
    known_resource("Service").expect("Service is known").0
}

/// The string at a JSON pointer (empty when absent).
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A Service this controller serves: type LoadBalancer, no other controller's class, not
/// being deleted.
pub fn is_ours(svc: &Value) -> bool {
    str_at(svc, "/spec/type") == "LoadBalancer"
        && svc
            .pointer("/spec/loadBalancerClass")
            .is_none_or(Value::is_null)
        && svc
            .pointer("/metadata/deletionTimestamp")
            .is_none_or(Value::is_null)
}

/// `namespace/name`.
pub fn key_of(svc: &Value) -> String {
    format!(
        "{}/{}",
        str_at(svc, "/metadata/namespace"),
        str_at(svc, "/metadata/name")
    )
}

/// The first ingress IP of the Service's status.
pub fn status_ip(svc: &Value) -> Option<Ipv4Addr> {
    svc.pointer("/status/loadBalancer/ingress/0/ip")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}
