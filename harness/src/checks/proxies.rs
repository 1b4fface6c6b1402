//! `proxies_connected`: which control plane each proxy is connected to, as the istiods answer it.
//!
//! A pod injected by a revision is configured for that revision's istiod, but what matters after
//! a canary control-plane move is where its proxy is connected now: a pod never restarted keeps
//! its old proxy on the old istiod. `istioctl proxy-status` asks every istiod for the proxies
//! connected to it (istiod's `istio.io/debug/syncz`), and names the answering istiod's pod in its
//! ISTIOD column; that pod's `istio.io/rev` label is the revision.
//!
//! Where the backend runs no `proxy-status` (the emulated backend, a GKE rehearsal), or runs no
//! sidecar proxy (kwok), a pod's connection cannot be witnessed: its injection record
//! (`sidecar.istio.io/status`) is judged instead, and the result says so.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::kube::pod_injection;
use super::CheckResult;
use meshmig_backends::proxy_status::{istiod_revision, ProxyStatus};
use meshmig_core::manifest::string_map;

/// One row of `istioctl proxy-status`'s table (1.27 and later: `NAME CLUSTER ISTIOD VERSION
/// SUBSCRIBED TYPES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The proxy (`POD.NAMESPACE`).
    pub name: String,
    /// The istiod pod it is connected to.
    pub istiod: String,
    /// The proxy's Istio version.
    pub version: String,
}

/// The rows of one or more `proxy-status` tables (each run prints its own header).
pub fn rows(stdout: &str) -> Vec<Row> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[0] != "NAME").then(|| Row {
                name: f[0].to_string(),
                istiod: f[2].to_string(),
                version: f[3].to_string(),
            })
        })
        .collect()
}

/// Whether a pod runs an istio-proxy, and whether it is a sidecar (an init container, as Istio
/// 1.27+ injects it on Kubernetes 1.33+, or a container beside others started as `proxy
/// sidecar`) rather than a gateway (`proxy router`).
fn proxy_kind(p: &Value) -> Option<&'static str> {
    if let Some(c) = p["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "istio-proxy")
    {
        let router = c["args"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "router"));
        return Some(if router { "gateway" } else { "sidecar" });
    }
    p["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == "istio-proxy")
        .then_some("sidecar")
}

/// The revision of each istiod pod (its `istio.io/rev` label), from `istio-system`'s pods.
fn istiod_revisions(istio_system_pods: &[Value]) -> BTreeMap<String, String> {
    istio_system_pods
        .iter()
        .filter_map(|p| {
            Some((
                p["metadata"]["name"].as_str()?.to_string(),
                istiod_revision(p)?,
            ))
        })
        .collect()
}

/// What was read, for [`proxies_connected`].
pub struct Read<'a> {
    /// The namespace's pods.
    pub pods: &'a [Value],
    /// `istio-system`'s pods (the istiods).
    pub istio_system_pods: &'a [Value],
    /// What the istiods said, where the backend asks them.
    pub status: Option<&'a ProxyStatus>,
}

/// Every running pod of `cluster/namespace` that `selector` matches and that carries a proxy is
/// connected to an istiod of `revision`. The result's witness is set here only when no pod's
/// connection could be witnessed (`unwitnessed`: the harness's reading of the injection
/// records); otherwise the backend's `proxy-status` witness applies.
pub fn proxies_connected(
    read: &Read<'_>,
    cluster: &str,
    namespace: &str,
    selector: &BTreeMap<String, String>,
    revision: &str,
) -> (CheckResult, bool) {
    let expected = format!(
        "the proxies of pods {selector:?} in {cluster}/{namespace} connected to an istiod of revision {revision}"
    );
    let revisions = istiod_revisions(read.istio_system_pods);
    let connected: BTreeMap<String, Row> = read
        .status
        .into_iter()
        .flat_map(|s| &s.runs)
        .flat_map(|r| rows(&r.stdout))
        .map(|r| (r.name.clone(), r))
        .collect();
    let mut evidence = serde_json::Map::new();
    let (mut good, mut bad, mut unwitnessed) = (Vec::new(), Vec::new(), Vec::new());
    let selected = read.pods.iter().filter(|p| {
        let l = string_map(&p["metadata"]["labels"]);
        selector.iter().all(|(k, v)| l.get(k) == Some(v))
            && p["status"]["phase"] == "Running"
            && p["metadata"]["deletionTimestamp"].is_null()
    });
    let (mut count, mut witnessed) = (0, 0);
    for p in selected {
        let Some(kind) = proxy_kind(p) else { continue };
        count += 1;
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        let why_not = match read.status {
            None => Some("no istioctl proxy-status on this backend".to_string()),
            Some(s) if kind == "sidecar" => s.no_sidecars.clone(),
            Some(_) => None,
        };
        if let Some(why) = why_not {
            // The injector's record, else the revision label istioctl's own gateway pods carry.
            let (_, ev) = pod_injection(p, Some(revision));
            let injected = ev["revision"]
                .as_str()
                .or(p["metadata"]["labels"]["istio.io/rev"].as_str())
                .unwrap_or("nobody")
                .to_string();
            let ok = injected == revision;
            evidence.insert(
                name.into(),
                json!({"connection": format!("not witnessed: {why}"), "revision": injected}),
            );
            let line = format!("{name}: injected by {injected} (its connection not witnessed)");
            if ok {
                unwitnessed.push(line);
            } else {
                bad.push(line);
            }
            continue;
        }
        witnessed += 1;
        match connected.get(&format!("{name}.{namespace}")) {
            Some(row) => {
                let rev = revisions
                    .get(&row.istiod)
                    .cloned()
                    .unwrap_or_else(|| "an istiod pod not in istio-system".into());
                evidence.insert(
                    name.into(),
                    json!({"istiod": row.istiod, "revision": rev, "proxy version": row.version}),
                );
                let line = format!("{name}: connected to {} (revision {rev})", row.istiod);
                if rev == revision {
                    good.push(line);
                } else {
                    bad.push(line);
                }
            }
            None => {
                evidence.insert(name.into(), json!({"istiod": null}));
                bad.push(format!(
                    "{name}: listed by no istiod (its {kind} proxy is connected to none)"
                ));
            }
        }
    }
    let runs = read.status.map(|s| json!(s.runs)).unwrap_or(json!([]));
    let evidence =
        json!({"pods": evidence, "istiod pods": revisions, "istioctl proxy-status": runs});
    let ok = count > 0 && bad.is_empty();
    let observed = if count == 0 {
        format!("no running pod {selector:?} with a proxy in {cluster}/{namespace}")
    } else if ok {
        good.iter()
            .chain(&unwitnessed)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        bad.join("; ")
    };
    (
        CheckResult::new("proxies_connected", ok, expected, observed, evidence),
        count > 0 && witnessed == 0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshmig_backends::proxy_status::ProxyStatusRun;

    /// What the real istioctl 1.31.0 printed here on 2026-12-07, asking the asm-managed istiod of
    /// a kwok run of canary-control-plane at G2 (`istioctl proxy-status
    /// --context=cluster-with-istio --xds-address=10.244.0.15:15012`), with the three
    /// asm-ingressgateway pods' real Envoys connected to it (from the run's JSON report).
    const ASM: &str = "NAME                                                CLUSTER        ISTIOD                                  VERSION     SUBSCRIBED TYPES\nasm-ingressgateway-5dd9c9bc5d-b5p4r.asm-ingress     Kubernetes     istiod-asm-managed-69b4c58954-97km8     1.31.0      4 (CDS,LDS,EDS,RDS)\nasm-ingressgateway-5dd9c9bc5d-pkjd2.asm-ingress     Kubernetes     istiod-asm-managed-69b4c58954-97km8     1.31.0      4 (CDS,LDS,EDS,RDS)\nasm-ingressgateway-5dd9c9bc5d-rzzz2.asm-ingress     Kubernetes     istiod-asm-managed-69b4c58954-97km8     1.31.0      4 (CDS,LDS,EDS,RDS)\n";

    fn pod(ns: &str, name: &str, labels: Value, rev: &str, gateway: bool) -> Value {
        let proxy = json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.31.0",
            "args": if gateway { json!(["proxy", "router"]) } else { json!(["proxy", "sidecar"]) }});
        let spec = if gateway {
            json!({"containers": [proxy]})
        } else {
            json!({"containers": [{"name": "server"}], "initContainers": [proxy]})
        };
        json!({"metadata": {"namespace": ns, "name": name, "labels": labels,
                "annotations": {"sidecar.istio.io/status": format!("{{\"revision\":\"{rev}\"}}")}},
               "spec": spec, "status": {"phase": "Running"}})
    }

    fn istiods() -> Vec<Value> {
        vec![
            json!({"metadata": {"name": "istiod-9cdb6588d-vbmhs", "labels": {"app": "istiod", "istio.io/rev": "default"}}}),
            json!({"metadata": {"name": "istiod-asm-managed-69b4c58954-97km8", "labels": {"app": "istiod", "istio.io/rev": "asm-managed"}}}),
        ]
    }

    fn status(stdout: &str, no_sidecars: Option<&str>) -> ProxyStatus {
        ProxyStatus {
            runs: vec![ProxyStatusRun {
                command: "istioctl proxy-status".into(),
                stdout: stdout.into(),
            }],
            no_sidecars: no_sidecars.map(str::to_string),
        }
    }

    fn gateway() -> Vec<Value> {
        vec![pod(
            "asm-ingress",
            "asm-ingressgateway-5dd9c9bc5d-b5p4r",
            json!({"asm": "ingressgateway"}),
            "asm-managed",
            true,
        )]
    }

    fn judge(pods: &[Value], s: Option<&ProxyStatus>, ns: &str, rev: &str) -> (CheckResult, bool) {
        let istiods = istiods();
        let read = Read {
            pods,
            istio_system_pods: &istiods,
            status: s,
        };
        proxies_connected(&read, "cluster-with-istio", ns, &BTreeMap::new(), rev)
    }

    #[test]
    fn the_real_table_is_read_by_its_columns() {
        let r = rows(ASM);
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[..1],
            [Row {
                name: "asm-ingressgateway-5dd9c9bc5d-b5p4r.asm-ingress".into(),
                istiod: "istiod-asm-managed-69b4c58954-97km8".into(),
                version: "1.31.0".into()
            }]
        );
        assert!(rows("NAME     CLUSTER     ISTIOD     VERSION     SUBSCRIBED TYPES\n").is_empty());
    }

    #[test]
    fn a_proxy_on_the_managed_istiod_passes() {
        let (r, unwitnessed) = judge(
            &gateway(),
            Some(&status(ASM, None)),
            "asm-ingress",
            "asm-managed",
        );
        assert!(r.ok, "{}", r.observed);
        assert!(!unwitnessed);
        assert!(r
            .observed
            .contains("connected to istiod-asm-managed-69b4c58954-97km8 (revision asm-managed)"));
    }

    #[test]
    fn a_proxy_still_on_the_old_istiod_fails_naming_it() {
        let old = ASM.replace(
            "istiod-asm-managed-69b4c58954-97km8",
            "istiod-9cdb6588d-vbmhs",
        );
        let (r, _) = judge(
            &gateway(),
            Some(&status(&old, None)),
            "asm-ingress",
            "asm-managed",
        );
        assert!(!r.ok);
        assert!(
            r.observed
                .contains("connected to istiod-9cdb6588d-vbmhs (revision default)"),
            "{}",
            r.observed
        );
    }

    #[test]
    fn a_proxy_no_istiod_lists_fails() {
        let header = "NAME     CLUSTER     ISTIOD     VERSION     SUBSCRIBED TYPES\n";
        let (r, _) = judge(
            &gateway(),
            Some(&status(header, None)),
            "asm-ingress",
            "asm-managed",
        );
        assert!(!r.ok);
        assert!(r.observed.contains("listed by no istiod"), "{}", r.observed);
    }

    #[test]
    fn no_pod_with_a_proxy_fails() {
        let (r, _) = judge(&[], Some(&status(ASM, None)), "asm-ingress", "asm-managed");
        assert!(!r.ok);
        assert!(r.observed.starts_with("no running pod"));
    }

    #[test]
    fn where_sidecars_do_not_run_their_injection_is_judged_and_said_to_be() {
        let app = vec![pod(
            "onlineboutique",
            "frontend-1",
            json!({"app": "frontend"}),
            "asm-managed",
            false,
        )];
        let s = status("", Some("kwok runs no sidecar proxy"));
        let (r, unwitnessed) = judge(&app, Some(&s), "onlineboutique", "asm-managed");
        assert!(r.ok, "{}", r.observed);
        assert!(unwitnessed);
        assert!(r
            .observed
            .contains("injected by asm-managed (its connection not witnessed)"));
        let (r, _) = judge(&app, Some(&s), "onlineboutique", "default");
        assert!(!r.ok);
        // Without proxy-status at all, the same.
        let (r, unwitnessed) = judge(&app, None, "onlineboutique", "asm-managed");
        assert!(r.ok && unwitnessed);
        assert!(r.evidence["pods"]["frontend-1"]["connection"]
            .as_str()
            .unwrap()
            .contains("no istioctl proxy-status"));
    }
}
