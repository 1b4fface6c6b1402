//! Who answers the checks on kwok: the real control planes `meshmig tools install` built (the
//! API server, with kwok playing the kubelets; istiod injecting and feeding the gateways' real
//! Envoy), and the harness's stand-ins for the rest (the fleet, DNS, the frontends). The GKE
//! rehearsal, whose clusters are kwok clusters, asks the same components.

use std::path::Path;

use crate::witness::{self, Witness, Witnesses};
use meshmig_core::tools::Tools;

/// A kwok cluster's API: the real kube-apiserver.
pub fn kubernetes_api(tools: &Tools) -> Witness {
    let v = &tools.versions;
    Witness::real(format!(
        "kube-apiserver {} (pods run by kwok {}, injected by istiod {})",
        v.kubernetes, v.kwok, v.istio
    ))
}

/// The gateways: real Envoy, its configuration pushed by the real istiod.
pub fn data_plane(tools: &Tools, envoy: &Path) -> Witness {
    Witness::real(format!(
        "the ingress gateway's {} fed by istiod {} (frontends are stand-ins)",
        witness::envoy_version(envoy),
        tools.versions.istio
    ))
}

/// The routes check: each gateway pod's real Envoy, read through its admin `config_dump`.
pub fn gateway_routes(tools: &Tools, envoy: &Path) -> Witness {
    Witness::real(format!(
        "the gateway pods' {} (admin config_dump), fed by istiod {}",
        witness::envoy_version(envoy),
        tools.versions.istio
    ))
}

/// Which istiod each proxy is connected to: the real istioctl's `proxy-status`, asking each real
/// istiod for the proxies connected to it. On kwok only the gateways run a proxy (real Envoy);
/// the sidecars are injected into pods that no kubelet runs.
pub fn proxy_status(tools: &Tools) -> Witness {
    Witness::real(format!(
        "istioctl {v} proxy-status, answered by each istiod {v} (gateway proxies only: kwok runs no sidecar)",
        v = tools.versions.istio
    ))
}

/// istioctl, built from Istio's module.
pub fn istioctl(tools: &Tools) -> Witness {
    Witness::real(format!("istioctl {}", tools.versions.istio))
}

/// The kwok backend's witnesses.
pub fn witnesses(tools: &Tools, envoy: &Path) -> Witnesses {
    let records = || Witness::harness("the kwok backend's records of its clusters");
    Witnesses {
        cluster_list: records(),
        kubeconfig: Witness::real(format!(
            "kubectl {} reading the run's kubeconfig",
            tools.versions.kubernetes
        )),
        kubernetes_api: kubernetes_api(tools),
        fleet: witness::fleet_stand_in(),
        dns: witness::embedded_dns(),
        data_plane: data_plane(tools, envoy),
        inventory: Witness::harness(
            "the kwok backend's records (clusters, load balancers) and the fleet stand-in's",
        ),
        routes: Some(gateway_routes(tools, envoy)),
        proxy_status: Some(proxy_status(tools)),
        commands: vec![
            ("istioctl", istioctl(tools)),
            (
                "kubectl",
                Witness::real(format!("kubectl {}", tools.versions.kubernetes)),
            ),
        ],
    }
}
