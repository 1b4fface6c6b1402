//! Checks on a cluster's objects, read from its Kubernetes API: Deployments, Services, namespaces,
//! pods and their injection, ServiceEntries.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{CheckResult, Ctx, R};
use meshmig_core::manifest::string_map;
/// The namespace exists and no label of it asks for injection.
pub fn injection_disabled(namespaces: &[Value], name: &str) -> CheckResult {
    let got = namespaces
        .iter()
        .find(|n| n["metadata"]["name"] == name)
        .map(|n| string_map(&n["metadata"]["labels"]));
    let injecting: Vec<String> = got
        .iter()
        .flatten()
        .filter(|(k, v)| {
            (k.as_str() == "istio-injection" && v.as_str() == "enabled")
                || k.as_str() == "istio.io/rev"
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    CheckResult::new(
        "injection_disabled",
        got.is_some() && injecting.is_empty(),
        format!("namespace {name} exists without istio-injection=enabled or istio.io/rev"),
        match &got {
            None => format!("no namespace {name}"),
            Some(_) if !injecting.is_empty() => format!("labelled {}", injecting.join(", ")),
            Some(l) => format!("labels {l:?}"),
        },
        json!({"namespace": name, "labels": got}),
    )
}

/// No Service of the namespace is reachable from outside the cluster.
pub fn no_public_service(services: &[Value], namespace: &str) -> CheckResult {
    let public: Vec<String> = services
        .iter()
        .filter(|s| {
            matches!(
                s["spec"]["type"].as_str(),
                Some("LoadBalancer" | "NodePort")
            )
        })
        .map(|s| {
            format!(
                "{} ({}, ingress {})",
                s["metadata"]["name"].as_str().unwrap_or(""),
                s["spec"]["type"].as_str().unwrap_or(""),
                s["status"]["loadBalancer"]["ingress"]
            )
        })
        .collect();
    CheckResult::new(
        "no_public_service",
        public.is_empty(),
        format!("no LoadBalancer or NodePort Service in {namespace}"),
        if public.is_empty() {
            format!("{} Services, none public", services.len())
        } else {
            format!("public: {}", public.join(", "))
        },
        json!({"services": services.iter().map(|s| json!({"name": s["metadata"]["name"], "type": s["spec"]["type"]})).collect::<Vec<_>>()}),
    )
}

/// Deployments of a namespace are available.
pub async fn deployments_available(
    ctx: &Ctx<'_>,
    cluster: &str,
    ns: &str,
    count: Option<usize>,
    names: &[String],
) -> R {
    let ds = ctx
        .backend
        .kubernetes()
        .list(cluster, Some(ns), "Deployment")
        .await?;
    let summary: BTreeMap<String, String> = ds
        .iter()
        .map(|d| {
            (
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                format!(
                    "{}/{} available",
                    d["status"]["availableReplicas"].as_u64().unwrap_or(0),
                    d["spec"]["replicas"].as_u64().unwrap_or(1)
                ),
            )
        })
        .collect();
    let unavailable: Vec<&str> = ds
        .iter()
        .filter(|d| !meshmig_core::manifest::deployment_available(d))
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    let missing: Vec<&String> = names.iter().filter(|n| !summary.contains_key(*n)).collect();
    let count_ok = count.is_none_or(|c| c == ds.len());
    let ok = unavailable.is_empty() && missing.is_empty() && count_ok && !ds.is_empty();
    Ok(CheckResult::new(
        "deployments_available",
        ok,
        format!(
            "{}all Deployments in {cluster}/{ns} available{}",
            count
                .map(|c| format!("{c} Deployments, "))
                .unwrap_or_default(),
            if names.is_empty() {
                String::new()
            } else {
                format!(", including {names:?}")
            }
        ),
        format!(
            "{} Deployments; unavailable {unavailable:?}; missing {missing:?}",
            ds.len()
        ),
        json!({"deployments": summary}),
    ))
}

/// An object exists (or not).
pub async fn object_presence(
    ctx: &Ctx<'_>,
    cluster: &str,
    ns: &str,
    kind: &str,
    name: &str,
    want: bool,
) -> R {
    let objs = ctx
        .backend
        .kubernetes()
        .list(cluster, Some(ns), kind)
        .await?;
    let names: Vec<&str> = objs
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    let present = names.contains(&name);
    Ok(CheckResult::new(
        if want {
            "object_exists"
        } else {
            "object_absent"
        },
        present == want,
        format!(
            "{kind} {ns}/{name} {}",
            if want { "present" } else { "absent" }
        ),
        format!(
            "{kind} {ns}/{name} {}",
            if present { "present" } else { "absent" }
        ),
        json!({format!("{kind} in {cluster}/{ns}"): names}),
    ))
}

/// The ingress IP the procedure reads with `.items[0]`: the first Service, with its address.
pub fn first_service_ip(services: &[Value]) -> Option<(String, Option<String>)> {
    services.first().map(|s| {
        (
            s["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            s["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .map(str::to_string),
        )
    })
}

/// `.items[0]` of the namespace's Services is the expected LoadBalancer.
pub async fn first_service_is(ctx: &Ctx<'_>, cluster: &str, ns: &str, name: &str) -> R {
    let svcs = ctx
        .backend
        .kubernetes()
        .list(cluster, Some(ns), "Service")
        .await?;
    let first = first_service_ip(&svcs);
    let names: Vec<&str> = svcs
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    Ok(CheckResult::new(
        "first_service_is",
        first
            .as_ref()
            .is_some_and(|(n, ip)| n == name && ip.is_some()),
        format!(".items[0] is LoadBalancer {name} with an external IP"),
        match &first {
            Some((n, ip)) => format!(".items[0] is {n} (ip {ip:?})"),
            None => "no Services".into(),
        },
        json!({"services in order": names}),
    ))
}

/// Whether one pod was injected (by `revision`, when given): the injector's record in
/// `sidecar.istio.io/status` and an `istio-proxy` container whose image is not `auto`, among
/// `containers` or, as a native sidecar (Istio ≥ 1.27 on Kubernetes ≥ 1.33), `initContainers`.
pub fn pod_injection(p: &Value, revision: Option<&str>) -> (bool, Value) {
    let status: Value = p["metadata"]["annotations"]["sidecar.istio.io/status"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    // Istio ≥ 1.27 on Kubernetes ≥ 1.33 injects istio-proxy as a native sidecar, in
    // initContainers; gateways and older versions have it in containers.
    let proxy_image = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| p["spec"][*k].as_array())
        .flatten()
        .find(|c| c["name"] == "istio-proxy")
        .and_then(|c| c["image"].as_str().map(str::to_string));
    let rev = status["revision"].as_str().map(str::to_string);
    let ok = !status.is_null()
        && proxy_image.as_deref().is_some_and(|i| i != "auto")
        && revision.is_none_or(|r| rev.as_deref() == Some(r));
    let ev = json!({"revision": rev, "istio-proxy image": proxy_image,
            "waiting": p["status"]["containerStatuses"].as_array().and_then(|cs| cs.iter().find_map(|c| c["state"]["waiting"]["reason"].as_str().map(str::to_string)))});
    (ok, ev)
}

/// The namespace carries the labels.
pub async fn namespace_labels(
    ctx: &Ctx<'_>,
    cluster: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    absent: &[String],
) -> R {
    let nss = ctx
        .backend
        .kubernetes()
        .list(cluster, None, "Namespace")
        .await?;
    let got = nss
        .iter()
        .find(|n| n["metadata"]["name"] == name)
        .map(|n| string_map(&n["metadata"]["labels"]));
    let ok = got.as_ref().is_some_and(|g| {
        labels.iter().all(|(k, v)| g.get(k) == Some(v)) && absent.iter().all(|k| !g.contains_key(k))
    });
    Ok(CheckResult::new(
        "namespace_labels",
        ok,
        if absent.is_empty() {
            format!("namespace {name} labelled {labels:?}")
        } else {
            format!("namespace {name} labelled {labels:?}, without {absent:?}")
        },
        match &got {
            Some(g) => format!("labels {g:?}"),
            None => format!("no namespace {name}"),
        },
        json!({"namespace": name, "labels": got}),
    ))
}

/// Every selected pod runs an injected istio-proxy (of `revision`, if given).
pub async fn pods_injected(
    ctx: &Ctx<'_>,
    cluster: &str,
    ns: &str,
    selector: &BTreeMap<String, String>,
    revision: Option<&str>,
) -> R {
    let pods = ctx
        .backend
        .kubernetes()
        .list(cluster, Some(ns), "Pod")
        .await?;
    let selected: Vec<&Value> = pods
        .iter()
        .filter(|p| {
            let l = string_map(&p["metadata"]["labels"]);
            selector.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .collect();
    let mut evidence = BTreeMap::new();
    let mut bad = Vec::new();
    for p in &selected {
        let name = p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (ok, ev) = pod_injection(p, revision);
        if !ok {
            bad.push(name.clone());
        }
        evidence.insert(name, ev);
    }
    // Which labels asked for injection, beside the pods' own record of who injected them: a
    // pod of the wrong revision under `istio.io/rev=asm-managed` points at `istio-injection`
    // (which takes precedence), under `istio-injection=enabled` alone at a missed relabel.
    let mut observed = if selected.is_empty() {
        "no such pods".to_string()
    } else {
        format!("{} pods, not injected: {bad:?}", selected.len())
    };
    if !bad.is_empty() && revision.is_some() {
        let nss = ctx
            .backend
            .kubernetes()
            .list(cluster, None, "Namespace")
            .await?;
        if let Some(n) = nss.iter().find(|n| n["metadata"]["name"] == ns) {
            let asking: BTreeMap<String, String> = string_map(&n["metadata"]["labels"])
                .into_iter()
                .filter(|(k, _)| k == "istio-injection" || k == "istio.io/rev")
                .collect();
            observed.push_str(&format!("; namespace {ns} labelled {asking:?}"));
        }
    }
    Ok(CheckResult::new(
        "pods_injected",
        !selected.is_empty() && bad.is_empty(),
        format!(
            "pods {selector:?} in {cluster}/{ns} injected{}",
            revision
                .map(|r| format!(" by revision {r}"))
                .unwrap_or_default()
        ),
        observed,
        json!(evidence),
    ))
}

/// The applied ServiceEntry's endpoint address.
pub async fn service_entry_address(
    ctx: &Ctx<'_>,
    cluster: &str,
    ns: &str,
    name: &str,
    gateway: &meshmig_core::scenario::ServiceRef,
) -> R {
    let svcs = ctx
        .backend
        .kubernetes()
        .list(&gateway.cluster, Some(&gateway.namespace), "Service")
        .await?;
    let svc = svcs
        .iter()
        .find(|s| s["metadata"]["name"] == gateway.service.as_str());
    let lb = svc.and_then(|s| s["status"]["loadBalancer"]["ingress"][0]["ip"].as_str());
    let address = lb.unwrap_or("(none)");
    let ses = ctx
        .backend
        .kubernetes()
        .list(cluster, Some(ns), "ServiceEntry")
        .await?;
    let se = ses.iter().find(|s| s["metadata"]["name"] == name);
    let addrs: Vec<String> = se
        .and_then(|s| s["spec"]["endpoints"].as_array())
        .map(|es| {
            es.iter()
                .filter_map(|e| e["address"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(CheckResult::new(
        "service_entry_address",
        lb.is_some() && addrs == [address.to_string()],
        format!(
            "ServiceEntry {ns}/{name} ({cluster}) endpoint address = the load-balancer IP of {}/{} in {} ({address})",
            gateway.namespace, gateway.service, gateway.cluster
        ),
        if se.is_none() {
            format!("no ServiceEntry {ns}/{name}")
        } else {
            format!("endpoint addresses {addrs:?}")
        },
        json!({"service_entry": se.map(|s| s["spec"].clone()),
               "gateway_service_status": svc.map(|s| s["status"].clone())}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn injected_pod(where_: &str) -> Value {
        // The shape of a pod the real istiod 1.31 injected on Kubernetes 1.35 (kwok run):
        // sidecar.istio.io/status names the revision; istio-proxy is a native sidecar.
        let mut p = json!({
            "metadata": {"name": "frontend-1", "annotations": {
                "sidecar.istio.io/status": "{\"initContainers\":[\"istio-validation\",\"istio-proxy\"],\"containers\":null,\"volumes\":[\"workload-socket\"],\"imagePullSecrets\":null,\"revision\":\"asm-managed\"}"}},
            "spec": {"containers": [{"name": "server", "image": "frontend:v0.10.6"}], "initContainers": []},
        });
        let proxy = json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.31.0", "restartPolicy": "Always"});
        p["spec"][where_].as_array_mut().unwrap().push(proxy);
        p
    }

    #[rstest]
    #[case::native_sidecar("initContainers")]
    #[case::classic_sidecar("containers")]
    fn an_injected_pod_is_seen_wherever_istio_proxy_is(#[case] where_: &str) {
        let (ok, ev) = pod_injection(&injected_pod(where_), Some("asm-managed"));
        assert!(ok, "{ev}");
    }

    #[test]
    fn a_pod_of_another_revision_or_not_injected_fails() {
        let (ok, ev) = pod_injection(&injected_pod("initContainers"), Some("default"));
        assert!(!ok);
        assert_eq!(ev["revision"], "asm-managed");
        let plain =
            json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "server"}]}});
        let (ok, ev) = pod_injection(&plain, None);
        assert!(!ok);
        assert_eq!(ev["istio-proxy image"], Value::Null);
        // The gateway Deployment's `image: auto` left as is: the webhook never ran.
        let mut auto = injected_pod("containers");
        auto["spec"]["containers"][1]["image"] = json!("auto");
        assert!(!pod_injection(&auto, None).0);
    }
}
