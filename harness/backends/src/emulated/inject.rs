//! The emulated sidecar injector: which revision injects a namespace's pods, and what injection
//! does to a pod, as Istio 1.31's injection templates do on Kubernetes ≥ 1.33.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

/// The image the Istio proxy runs as (what `image: auto` becomes when injected).
pub const PROXY_IMAGE: &str = "gcr.io/gke-release/asm/proxyv2:emulated";

/// The revision that injects pods of a namespace with these labels, if any.
///
/// `istio-injection` takes precedence over `istio.io/rev`, as Istio's canary upgrade guide says
/// ("The `istio-injection` label must be removed because it takes precedence over the
/// `istio.io/rev` label") and its 1.31 webhooks implement: every revision's `rev.namespace.`
/// webhook requires `istio-injection` to be absent
/// (manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml).
pub(super) fn injecting_revision(
    ns_labels: &BTreeMap<String, String>,
    revisions: &BTreeSet<String>,
) -> Option<String> {
    let legacy = ns_labels.get("istio-injection").map(String::as_str);
    if legacy.is_none() {
        let rev = ns_labels.get("istio.io/rev")?;
        return revisions.contains(rev).then(|| rev.clone());
    }
    if legacy == Some("enabled") {
        // The default revision; on a managed-CSM cluster, the managed revision is tagged
        // default ("default injection label" in Google's provisioning guide).
        if revisions.contains("default") {
            return Some("default".into());
        }
        if revisions.contains(crate::clusters::MANAGED_REVISION) {
            return Some(crate::clusters::MANAGED_REVISION.into());
        }
    }
    None
}

/// The names of the containers the injector added (`null` when none, as the injector's
/// `sidecar.istio.io/status` records them).
pub(super) struct Injected {
    pub(super) init_containers: Option<Vec<&'static str>>,
    pub(super) containers: Option<Vec<&'static str>>,
}

/// What the injector does to a pod's containers, as Istio 1.31's templates do on Kubernetes
/// ≥ 1.33 (manifests/charts/istio-control/istio-discovery/files/injection-template.yaml and
/// gateway-injection-template.yaml): a sidecar gets `istio-init`, then `istio-proxy` as a native
/// sidecar (an init container with `restartPolicy: Always`), ahead of the pod's own init
/// containers; a gateway's own `istio-proxy` container gets the proxy image.
pub(super) fn inject(
    containers: &mut Value,
    init_containers: &mut Value,
    gateway: bool,
) -> Injected {
    let Some(cs) = containers.as_array_mut() else {
        return Injected {
            init_containers: None,
            containers: None,
        };
    };
    if gateway {
        match cs.iter_mut().find(|c| c["name"] == "istio-proxy") {
            Some(proxy) => {
                proxy["image"] = json!(PROXY_IMAGE);
                proxy["args"] = json!(["proxy", "router"]);
            }
            None => cs.push(json!({"name": "istio-proxy", "image": PROXY_IMAGE,
                                   "args": ["proxy", "router"]})),
        }
        return Injected {
            init_containers: None,
            containers: Some(vec!["istio-proxy"]),
        };
    }
    cs.retain(|c| c["name"] != "istio-proxy");
    let mut init = vec![
        json!({"name": "istio-init", "image": PROXY_IMAGE}),
        json!({"name": "istio-proxy", "image": PROXY_IMAGE, "args": ["proxy", "sidecar"],
               "restartPolicy": "Always"}),
    ];
    init.extend(init_containers.as_array().cloned().unwrap_or_default());
    *init_containers = json!(init);
    Injected {
        init_containers: Some(vec!["istio-init", "istio-proxy"]),
        containers: None,
    }
}

/// The labels and annotations the injection templates set on the pod.
pub(super) struct InjectedMetadata {
    pub(super) labels: Vec<(String, String)>,
    pub(super) annotations: Vec<(String, String)>,
}

/// What Istio 1.31's injection templates add to an injected pod's metadata: the canonical
/// service labels (and, for a sidecar, `security.istio.io/tlsMode`), the revision as the
/// annotation `istio.io/rev` (no `istio.io/rev` label), and the default container annotations
/// naming the first container that is not `istio-proxy`. A label or annotation the pod already
/// has keeps its value.
pub(super) fn injected_metadata(
    labels: &Value,
    annotations: &Value,
    deployment: &str,
    containers: &Value,
    rev: &str,
    gateway: bool,
) -> InjectedMetadata {
    let label = |keys: &[&str], default: &str| {
        keys.iter()
            .find_map(|k| labels[*k].as_str())
            .unwrap_or(default)
            .to_string()
    };
    let mut added = vec![
        (
            "service.istio.io/canonical-name".to_string(),
            label(
                &[
                    "service.istio.io/canonical-name",
                    "app.kubernetes.io/name",
                    "app",
                ],
                deployment,
            ),
        ),
        (
            "service.istio.io/canonical-revision".to_string(),
            label(
                &[
                    "service.istio.io/canonical-revision",
                    "app.kubernetes.io/version",
                    "version",
                ],
                "latest",
            ),
        ),
    ];
    if !gateway {
        added.push((
            "security.istio.io/tlsMode".to_string(),
            label(&["security.istio.io/tlsMode"], "istio"),
        ));
    }
    let mut set = vec![("istio.io/rev".to_string(), rev.to_string())];
    if let Some(first) = containers
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .find(|n| *n != "istio-proxy")
    {
        for k in [
            "kubectl.kubernetes.io/default-logs-container",
            "kubectl.kubernetes.io/default-container",
        ] {
            set.push((k.to_string(), first.to_string()));
        }
    }
    // An annotation the pod already has keeps its value.
    set.retain(|(k, _)| annotations[k.as_str()].is_null());
    InjectedMetadata {
        labels: added,
        annotations: set,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// Who injects a namespace's pods, with both revisions running: `istio-injection` wins over
    /// `istio.io/rev` (Istio's canary upgrade guide), so a namespace relabelled for asm-managed
    /// that kept `istio-injection=enabled` stays on the default revision.
    #[rstest]
    #[case(&[("istio-injection", "enabled")], Some("default"))]
    #[case(&[("istio.io/rev", "asm-managed")], Some("asm-managed"))]
    #[case(&[("istio-injection", "enabled"), ("istio.io/rev", "asm-managed")], Some("default"))]
    #[case(&[("istio-injection", "disabled"), ("istio.io/rev", "asm-managed")], None)]
    #[case(&[("istio.io/rev", "canary")], None)]
    #[case(&[], None)]
    fn istio_injection_takes_precedence_over_the_revision_label(
        #[case] labels: &[(&str, &str)],
        #[case] want: Option<&str>,
    ) {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let revisions: BTreeSet<String> = ["default".into(), "asm-managed".into()].into();
        assert_eq!(injecting_revision(&labels, &revisions).as_deref(), want);
    }
}
