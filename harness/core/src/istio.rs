//! The Istio networking resources the procedure applies (`networking.istio.io`), as typed data.
//!
//! Only the fields the procedure's manifests use, and those the emulated gateway can translate
//! faithfully, are accepted; any other field is rejected when the scenario is validated (so a
//! manifest that relies on something the harness would silently ignore fails up front).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A `Gateway`: which gateway workloads listen, on which ports, for which hosts.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// apiVersion.
    pub api_version: String,
    /// kind.
    pub kind: String,
    /// metadata.
    pub metadata: ObjectMeta,
    /// spec.
    pub spec: GatewaySpec,
}

/// `Gateway.spec`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewaySpec {
    /// Pod labels of the gateway workloads.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Listeners.
    pub servers: Vec<Server>,
}

/// A Gateway server.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// The port.
    pub port: GatewayPort,
    /// Hosts served.
    pub hosts: Vec<String>,
    /// Optional name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A Gateway server's port.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayPort {
    /// Port number (matched against the gateway Service's ports).
    pub number: u16,
    /// Port name.
    #[serde(default)]
    pub name: Option<String>,
    /// Protocol (HTTP is what the emulated gateway serves).
    pub protocol: String,
}

/// A `VirtualService`: routing rules for hosts, bound to gateways.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualService {
    /// apiVersion.
    pub api_version: String,
    /// kind.
    pub kind: String,
    /// metadata.
    pub metadata: ObjectMeta,
    /// spec.
    pub spec: VirtualServiceSpec,
}

/// `VirtualService.spec`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceSpec {
    /// Hosts the rules apply to.
    pub hosts: Vec<String>,
    /// Gateways (`name` in the same namespace, or `namespace/name`); empty means `mesh`.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// HTTP routes, first match wins.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
}

/// An HTTP route.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Optional name.
    #[serde(default)]
    pub name: Option<String>,
    /// Match conditions (any of them); none matches everything.
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatch>,
    /// Weighted destinations.
    pub route: Vec<RouteDestination>,
    /// Fault injection.
    #[serde(default)]
    pub fault: Option<Fault>,
}

/// A match condition.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    /// URI match.
    #[serde(default)]
    pub uri: Option<StringMatch>,
}

/// A string match, written as Istio writes it: a map with exactly one of `exact`, `prefix` or
/// `regex` (`uri: {prefix: /cart}`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(try_from = "StringMatchFields", into = "StringMatchFields")]
pub enum StringMatch {
    /// Exact.
    Exact(String),
    /// Prefix.
    Prefix(String),
    /// RE2 regular expression (whole string).
    Regex(String),
}

/// The wire form of [`StringMatch`].
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StringMatchFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
}

impl TryFrom<StringMatchFields> for StringMatch {
    type Error = String;
    fn try_from(f: StringMatchFields) -> Result<Self, String> {
        match (f.exact, f.prefix, f.regex) {
            (Some(e), None, None) => Ok(StringMatch::Exact(e)),
            (None, Some(p), None) => Ok(StringMatch::Prefix(p)),
            (None, None, Some(r)) => Ok(StringMatch::Regex(r)),
            _ => Err("a string match needs exactly one of exact, prefix, regex".into()),
        }
    }
}

impl From<StringMatch> for StringMatchFields {
    fn from(m: StringMatch) -> Self {
        let mut f = StringMatchFields::default();
        match m {
            StringMatch::Exact(e) => f.exact = Some(e),
            StringMatch::Prefix(p) => f.prefix = Some(p),
            StringMatch::Regex(r) => f.regex = Some(r),
        }
        f
    }
}

/// A weighted destination.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDestination {
    /// Where to.
    pub destination: Destination,
    /// Weight (all weights of a route sum to 100; a lone destination has 100).
    #[serde(default)]
    pub weight: Option<u32>,
}

/// A destination.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Service or ServiceEntry host (short names are resolved in the VirtualService's namespace).
    pub host: String,
    /// Port.
    #[serde(default)]
    pub port: Option<PortSelector>,
}

/// A destination port.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    /// Port number.
    pub number: u16,
}

/// Fault injection (abort only).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Abort a share of requests.
    pub abort: Abort,
}

/// Abort a share of requests with a status.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Abort {
    /// The share.
    pub percentage: Percent,
    /// The status returned.
    pub http_status: u16,
}

/// A percentage.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Percent {
    /// 0..100.
    pub value: f64,
}

/// A `ServiceEntry`: a host outside the mesh's registry.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    /// apiVersion.
    pub api_version: String,
    /// kind.
    pub kind: String,
    /// metadata.
    pub metadata: ObjectMeta,
    /// spec.
    pub spec: ServiceEntrySpec,
}

/// `ServiceEntry.spec`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntrySpec {
    /// Hosts.
    pub hosts: Vec<String>,
    /// MESH_EXTERNAL or MESH_INTERNAL.
    #[serde(default)]
    pub location: Option<String>,
    /// Ports.
    pub ports: Vec<ServiceEntryPort>,
    /// STATIC (endpoint addresses), DNS or NONE.
    #[serde(default)]
    pub resolution: Option<String>,
    /// Endpoints.
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntry>,
}

/// A ServiceEntry port.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntryPort {
    /// Number.
    pub number: u16,
    /// Name (its prefix gives the protocol when `protocol` is absent).
    pub name: String,
    /// Protocol.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Port on the endpoints.
    #[serde(default)]
    pub target_port: Option<u16>,
}

/// A ServiceEntry endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {
    /// IP address.
    pub address: String,
    /// Port overrides by port name.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_match_is_a_map_as_istio_writes_it() {
        let m: HttpMatch = crate::yaml::from_str("uri: {prefix: /cart}").unwrap();
        assert_eq!(m.uri, Some(StringMatch::Prefix("/cart".into())));
        let m: HttpMatch = crate::yaml::from_str("uri:\n  exact: /\n").unwrap();
        assert_eq!(m.uri, Some(StringMatch::Exact("/".into())));
        let m: HttpMatch = crate::yaml::from_str("uri: {regex: '/p/.*'}").unwrap();
        assert_eq!(m.uri, Some(StringMatch::Regex("/p/.*".into())));
    }

    #[test]
    fn a_uri_match_with_two_kinds_or_an_unknown_one_is_refused() {
        let e = crate::yaml::from_str::<HttpMatch>("uri: {prefix: /a, exact: /b}").unwrap_err();
        assert!(e.to_string().contains("exactly one of"), "{e}");
        assert!(crate::yaml::from_str::<HttpMatch>("uri: {suffix: /a}").is_err());
    }
}
