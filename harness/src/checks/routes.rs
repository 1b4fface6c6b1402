//! `routes`: what the VirtualServices bound to a Gateway route, read from the cluster's API and
//! judged by istiod's rules as the harness reads them (weights, bound gateways, hosts claimed twice).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::CheckResult;
/// A destination's host, as the route names it.
fn destination_shares(route: &Value) -> BTreeMap<String, f64> {
    let dests: Vec<(String, f64)> = route
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    (
                        d["destination"]["host"].as_str().unwrap_or("").to_string(),
                        d["weight"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let total: f64 = dests.iter().map(|(_, w)| w).sum();
    let mut shares = BTreeMap::new();
    for (host, w) in &dests {
        // A lone destination without a weight takes everything; weight 0 is dropped, as istiod does.
        let share = if dests.len() == 1 && total == 0.0 {
            100.0
        } else if total > 0.0 {
            w / total * 100.0
        } else {
            0.0
        };
        if share > 0.0 {
            *shares.entry(host.clone()).or_insert(0.0) += share;
        }
    }
    shares
}

/// Whether a VirtualService in `vs_ns` binds the Gateway `ns/name`.
fn binds(vs: &Value, ns: &str, gateway: &str) -> bool {
    let vs_ns = vs["metadata"]["namespace"].as_str().unwrap_or("");
    vs["spec"]["gateways"].as_array().is_some_and(|gs| {
        gs.iter()
            .filter_map(Value::as_str)
            .any(|g| match g.split_once('/') {
                Some((n, g)) => n == ns && g == gateway,
                None => vs_ns == ns && g == gateway,
            })
    })
}

/// Every VirtualService as stored, by name, with the gateways it binds and the hosts it claims
/// (the evidence of both ways of reading routes).
pub(super) fn stored_virtual_services(vss: &[Value]) -> Value {
    vss.iter()
        .map(|v| {
            let (n, m) = meshmig_core::manifest::namespace_and_name(v);
            json!({"name": format!("{n}/{m}"), "gateways": v["spec"]["gateways"],
                   "hosts": v["spec"]["hosts"]})
        })
        .collect()
}

/// The shares a check expects, as its expectation lists them (`frontend 50%, v2.example.com 50%`).
pub(super) fn expected_shares(expect: &BTreeMap<String, f64>) -> String {
    expect
        .iter()
        .map(|(h, p)| format!("{h} {p}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn hosts_overlap(a: &str, b: &str) -> bool {
    a == b || a == "*" || b == "*"
}

/// The VirtualServices bound to Gateway `ns/gateway` route its traffic with these shares, and no
/// two of them claim the same host there (when two do, istiod serves one and drops the other).
pub fn routes(
    vss: &[Value],
    ns: &str,
    gateway: &str,
    expect: &BTreeMap<String, f64>,
) -> CheckResult {
    let bound: Vec<&Value> = vss.iter().filter(|v| binds(v, ns, gateway)).collect();
    let name = |v: &Value| {
        let (n, m) = meshmig_core::manifest::namespace_and_name(v);
        format!("{n}/{m}")
    };
    let hosts = |v: &Value| -> Vec<String> {
        v["spec"]["hosts"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut conflicts = Vec::new();
    for (i, a) in bound.iter().enumerate() {
        for b in &bound[i + 1..] {
            for ha in hosts(a) {
                if hosts(b).iter().any(|hb| hosts_overlap(&ha, hb)) {
                    conflicts.push(format!(
                        "{} and {} both claim host {ha:?}",
                        name(a),
                        name(b)
                    ));
                }
            }
        }
    }
    let expected = format!(
        "one VirtualService bound to Gateway {ns}/{gateway}, routing {}",
        expected_shares(expect)
    );
    let evidence = json!({"bound": bound.iter().map(|v| json!({"name": name(v), "hosts": hosts(v),
                           "http": v["spec"]["http"]})).collect::<Vec<_>>(),
                          "all VirtualServices": stored_virtual_services(vss)});
    let Some(vs) = bound.first() else {
        return CheckResult::new(
            "routes",
            false,
            expected,
            format!("no VirtualService is bound to Gateway {ns}/{gateway}"),
            evidence,
        );
    };
    let shares = destination_shares(&vs["spec"]["http"][0]["route"]);
    let off: Vec<String> = expect
        .iter()
        .filter(|(h, p)| (shares.get(*h).copied().unwrap_or(0.0) - **p).abs() > 0.5)
        .map(|(h, p)| {
            format!(
                "{h}: {:.1}% instead of {p}%",
                shares.get(h).copied().unwrap_or(0.0)
            )
        })
        .chain(
            shares
                .iter()
                .filter(|(h, _)| !expect.contains_key(*h))
                .map(|(h, p)| format!("{h}: {p:.1}%, not expected")),
        )
        .collect();
    let observed_shares = shares
        .iter()
        .map(|(h, p)| format!("{h} {p:.1}%"))
        .collect::<Vec<_>>()
        .join(", ");
    let observed = if !conflicts.is_empty() {
        format!(
            "{}; {} routes {observed_shares}",
            conflicts.join("; "),
            name(vs)
        )
    } else if !off.is_empty() {
        format!("{} routes {observed_shares} ({})", name(vs), off.join("; "))
    } else {
        format!("{} routes {observed_shares}", name(vs))
    };
    CheckResult::new(
        "routes",
        conflicts.is_empty() && off.is_empty(),
        expected,
        observed,
        evidence,
    )
}
