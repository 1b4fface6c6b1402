//! What runs in place of one kwok cluster's pods, kept in step with the real API server: a
//! reconciler polls the cluster's pods and EndpointSlices and
//! - runs the real istiod for every ready istiod pod (its revision from the pod's
//!   `istio.io/rev` label), bound to the pod's IP;
//! - runs a real Envoy for every ready gateway pod (a container `istio-proxy` started as
//!   `proxy router`), in the pod's own network namespace, fed by its revision's istiod;
//! - runs a stand-in frontend for every ready `app: frontend` pod on its IP, with the footer
//!   variant of the scenario's cluster, answering 500 while a service the home page calls has
//!   no ready endpoint;
//! - stops each of them when its pod goes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use super::pods::{
    claim_ip, mesh_for_upstream_envoy, release_ip, router_bootstrap, GatewayPod, Istiod, Sandbox,
};
use crate::frontend::{Frontend, Identity, ReadyServices};
use crate::kube::Kube;
use crate::GatewayDumps as Dumps;
use meshmig_core::scenario::ClusterSpec;

/// What the reconciler needs to know.
#[derive(Clone)]
pub struct Settings {
    /// The cluster (the procedure's name, zone, footer variant).
    pub spec: ClusterSpec,
    /// The cluster's own kubeconfig (istiod's).
    pub kubeconfig: PathBuf,
    /// Where logs and configurations go.
    pub dir: PathBuf,
    /// pilot-discovery.
    pub pilot: PathBuf,
    /// Envoy.
    pub envoy: PathBuf,
    /// The Istio version (for the router nodes' metadata).
    pub istio_version: String,
    /// The first ctrlz port of this cluster's istiods (one per revision after it).
    pub ctrlz_base: u16,
    /// Unique veth numbers start here.
    pub slot_base: u32,
}

enum Running {
    Istiod(Box<Istiod>),
    Gateway(Box<GatewayPod>),
    Frontend(Frontend, Ipv4Addr),
}

struct State {
    pods: BTreeMap<String, (String, Running)>,
    revisions: BTreeMap<String, Ipv4Addr>,
    next_slot: u32,
    next_ctrlz: u16,
    events: Vec<String>,
    failed: BTreeMap<String, String>,
}

/// The reconciler of one cluster.
pub struct StandIns {
    state: Arc<Mutex<State>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn pod_key(p: &Value) -> String {
    format!(
        "{}/{}",
        p["metadata"]["namespace"].as_str().unwrap_or_default(),
        p["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["podIP"].is_string()
        && p["metadata"]["deletionTimestamp"].is_null()
}

/// The running gateway pods (`NS/NAME`, [`Role::Gateway`]) whose labels hold every label of
/// `selector` (a Gateway's `spec.selector`; an empty one selects every gateway pod, as istiod
/// applies it to every gateway).
pub fn selected_running_pods(pods: &[Value], selector: &Value) -> BTreeSet<String> {
    let none = serde_json::Map::new();
    let want = selector.as_object().unwrap_or(&none);
    pods.iter()
        .filter(|p| ready(p) && matches!(role(p), Role::Gateway(_)))
        .filter(|p| want.iter().all(|(k, v)| p["metadata"]["labels"][k] == *v))
        .map(pod_key)
        .collect()
}

/// What a pod is, for the stand-ins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// An istiod of this revision.
    Istiod(String),
    /// A gateway of this revision.
    Gateway(String),
    /// Online Boutique's frontend.
    Frontend,
    /// Nothing runs for it.
    Other,
}

/// A pod's role: istiod by its `app: istiod` label; a gateway by an `istio-proxy` container run
/// as `proxy router`; the frontend by `app: frontend`.
pub fn role(p: &Value) -> Role {
    let labels = &p["metadata"]["labels"];
    // The revision: the injector's record on injected pods (`sidecar.istio.io/status`, which
    // carries no `istio.io/rev` label), else the label istioctl's own pods carry.
    let injected_by = p["metadata"]["annotations"]["sidecar.istio.io/status"]
        .as_str()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v["revision"].as_str().map(str::to_string));
    let rev = injected_by
        .or_else(|| labels["istio.io/rev"].as_str().map(str::to_string))
        .unwrap_or_else(|| "default".into());
    if labels["app"] == "istiod" {
        return Role::Istiod(rev);
    }
    let router = p["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["name"] == "istio-proxy"
                && c["args"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "router"))
        });
    if router {
        return Role::Gateway(rev);
    }
    if labels["app"] == "frontend" {
        return Role::Frontend;
    }
    Role::Other
}

impl StandIns {
    /// Starts the reconciler.
    pub fn start(kube: Kube, settings: Settings, ready_services: ReadyServices) -> Self {
        let state = Arc::new(Mutex::new(State {
            pods: BTreeMap::new(),
            revisions: BTreeMap::new(),
            next_slot: settings.slot_base,
            next_ctrlz: settings.ctrlz_base,
            events: Vec::new(),
            failed: BTreeMap::new(),
        }));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = reconcile(&kube, &settings, &st, &ready_services).await {
                    tracing::warn!("stand-ins of {}: {e}", settings.spec.name);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        Self {
            state,
            stop,
            task: Some(task),
        }
    }

    /// Per gateway pod, the versions of the configuration its Envoy has accepted from istiod
    /// (every `version_info` of its config dump): a push changes them.
    pub async fn gateway_versions(&self) -> BTreeMap<String, String> {
        let st = self.state.lock().await;
        let mut out = BTreeMap::new();
        for (key, (_, r)) in &st.pods {
            if let Running::Gateway(g) = r {
                let v = g
                    .config_dump()
                    .await
                    .map(|d| {
                        let mut versions = Vec::new();
                        collect_versions(&d, &mut versions);
                        versions.join(",")
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), v);
            }
        }
        out
    }

    /// The addresses the running istiods listen on.
    pub async fn istiods(&self) -> Vec<Ipv4Addr> {
        let st = self.state.lock().await;
        st.pods
            .values()
            .filter_map(|(_, r)| match r {
                Running::Istiod(i) => Some(i.ip),
                _ => None,
            })
            .collect()
    }

    /// The `config_dump` of the Envoy running for each of `pods` (`NS/NAME`), or why there is
    /// none.
    pub async fn gateway_dumps(&self, pods: &BTreeSet<String>) -> Dumps {
        let st = self.state.lock().await;
        let mut out = Dumps::new();
        for key in pods {
            let dump = match st.pods.get(key) {
                Some((_, Running::Gateway(g))) => g.config_dump().await.map_err(|e| e.to_string()),
                _ => Err(match st.failed.get(key) {
                    Some(why) => format!("no Envoy runs for this pod: {why}"),
                    None => "no Envoy runs for this pod (yet)".into(),
                }),
            };
            out.insert(key.clone(), dump);
        }
        out
    }

    /// A fault: kills (SIGKILL) the Envoy of every gateway pod in `namespace`; what it killed.
    pub async fn kill_gateways(&self, namespace: &str) -> Result<Vec<String>, std::io::Error> {
        let mut st = self.state.lock().await;
        let prefix = format!("{namespace}/");
        let mut killed = Vec::new();
        for (key, (_, r)) in st.pods.iter_mut().filter(|(k, _)| k.starts_with(&prefix)) {
            if let Running::Gateway(g) = r {
                let pid = g.kill()?;
                killed.push(format!("{key} (Envoy pid {})", pid.unwrap_or_default()));
            }
        }
        Ok(killed)
    }

    /// A fault: the first frontend replica answers its next `requests` requests with `status`.
    pub async fn fail_frontend(&self, status: u16, requests: u64) -> Result<String, String> {
        let st = self.state.lock().await;
        crate::frontend::fail_first(
            st.pods.iter().filter_map(|(k, (_, r))| match r {
                Running::Frontend(f, _) => Some((k, f)),
                _ => None,
            }),
            status,
            requests,
        )
    }

    /// What it started and stopped, in order.
    pub async fn events(&self) -> Vec<String> {
        self.state.lock().await.events.clone()
    }

    /// Stops the reconciler and everything it runs, waiting for each.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let mut st = self.state.lock().await;
        let pods = std::mem::take(&mut st.pods);
        for (_, (_, r)) in pods {
            stop_running(r).await;
        }
    }
}

async fn stop_running(r: Running) {
    match r {
        Running::Istiod(mut i) => {
            i.stop().await;
            release_ip(i.ip);
        }
        Running::Gateway(mut g) => g.stop().await,
        Running::Frontend(f, ip) => {
            f.stop().await;
            release_ip(ip);
        }
    }
}

/// Services with a ready endpoint, from the cluster's EndpointSlices.
async fn ready_services(kube: &Kube) -> Result<BTreeSet<(String, String)>, String> {
    let slices = kube
        .list("EndpointSlice", None)
        .await
        .map_err(|e| meshmig_core::error_chain(&e))?;
    let mut out = BTreeSet::new();
    for v in slices {
        let any_ready = v["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["conditions"]["ready"] != false);
        if let (true, Some(svc), Some(ns)) = (
            any_ready,
            v["metadata"]["labels"]["kubernetes.io/service-name"].as_str(),
            v["metadata"]["namespace"].as_str(),
        ) {
            out.insert((ns.to_string(), svc.to_string()));
        }
    }
    Ok(out)
}

async fn mesh_file(kube: &Kube, s: &Settings, revision: &str) -> Result<PathBuf, String> {
    let name = if revision == "default" {
        "istio".to_string()
    } else {
        format!("istio-{revision}")
    };
    let cms = kube
        .list("ConfigMap", Some("istio-system"))
        .await
        .map_err(|e| meshmig_core::error_chain(&e))?;
    let mesh = cms
        .iter()
        .find(|c| c["metadata"]["name"] == name.as_str())
        .and_then(|c| c["data"]["mesh"].as_str())
        .ok_or_else(|| format!("ConfigMap istio-system/{name} has no mesh yet"))?;
    let path = s.dir.join(format!("mesh-{revision}.yaml"));
    std::fs::write(&path, mesh_for_upstream_envoy(mesh)?).map_err(|e| e.to_string())?;
    Ok(path)
}

async fn reconcile(
    kube: &Kube,
    s: &Settings,
    state: &Arc<Mutex<State>>,
    ready_set: &ReadyServices,
) -> Result<(), String> {
    std::fs::create_dir_all(&s.dir).map_err(|e| format!("creating {}: {e}", s.dir.display()))?;
    if let Ok(r) = ready_services(kube).await {
        if let Ok(mut w) = ready_set.write() {
            *w = r;
        }
    }
    let pods = kube
        .list("Pod", None)
        .await
        .map_err(|e| meshmig_core::error_chain(&e))?;
    let live: BTreeMap<String, &Value> = pods
        .iter()
        .filter(|p| ready(p))
        .map(|p| (pod_key(p), p))
        .collect();
    let mut st = state.lock().await;
    // Pods gone (or changed IP): stop their stand-ins.
    let gone: Vec<String> = st
        .pods
        .iter()
        .filter(|(k, (ip, _))| {
            live.get(*k)
                .is_none_or(|p| p["status"]["podIP"].as_str() != Some(ip.as_str()))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in gone {
        if let Some((_, r)) = st.pods.remove(&k) {
            if let Running::Istiod(i) = &r {
                let rev = st
                    .revisions
                    .iter()
                    .find(|(_, ip)| **ip == i.ip)
                    .map(|(r, _)| r.clone());
                if let Some(rev) = rev {
                    st.revisions.remove(&rev);
                }
            }
            stop_running(r).await;
            st.events.push(format!("stopped the stand-in of pod {k}"));
        }
    }
    for (key, p) in &live {
        if st.pods.contains_key(key) {
            continue;
        }
        match start_for(kube, s, &mut st, key, p, ready_set).await {
            Ok(Some((ip, running))) => {
                st.failed.remove(key);
                st.pods.insert(key.clone(), (ip.to_string(), running));
            }
            Ok(None) => {}
            Err(e) => {
                // Tried again next round; said once.
                if st.failed.insert(key.clone(), e.clone()).as_deref() != Some(e.as_str()) {
                    st.events
                        .push(format!("could not start the stand-in of pod {key}: {e}"));
                }
            }
        }
    }
    Ok(())
}

/// Starts what stands in for one ready pod: None when nothing runs for it, or what it waits
/// for (its istiod, its mesh configuration) is not there yet.
async fn start_for(
    kube: &Kube,
    s: &Settings,
    st: &mut State,
    key: &str,
    p: &Value,
    ready_set: &ReadyServices,
) -> Result<Option<(Ipv4Addr, Running)>, String> {
    let Some(ip) = p["status"]["podIP"]
        .as_str()
        .and_then(|i| i.parse::<Ipv4Addr>().ok())
    else {
        return Ok(None);
    };
    let name = p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ns = p["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let dir = s.dir.join(format!("{ns}-{name}"));
    let e = |e: &dyn std::error::Error| meshmig_core::error_chain(e);
    let running = match role(p) {
        Role::Istiod(rev) => {
            let Ok(mesh) = mesh_file(kube, s, &rev).await else {
                return Ok(None); // the install has not written it yet
            };
            claim_ip(&name, ip).map_err(|x| e(&x))?;
            let ctrlz = st.next_ctrlz;
            st.next_ctrlz += 1;
            let i = Istiod::start(&s.pilot, &name, ip, &rev, &s.kubeconfig, &mesh, ctrlz, &dir)
                .map_err(|x| e(&x))?;
            st.revisions.insert(rev.clone(), ip);
            st.events.push(format!(
                "started istiod (revision {rev}) for pod {key} on {ip}"
            ));
            Running::Istiod(Box::new(i))
        }
        Role::Gateway(rev) => {
            let Some(istiod) = st.revisions.get(&rev).copied() else {
                return Ok(None); // its istiod is not up yet
            };
            let slot = st.next_slot;
            st.next_slot += 1;
            let sandbox = Sandbox::create(&name, ip, slot, &dir)
                .await
                .map_err(|x| e(&x))?;
            let boot = router_bootstrap(
                &name,
                &ns,
                ip,
                &p["metadata"]["labels"],
                p["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap_or("default"),
                &s.istio_version,
                SocketAddr::new(istiod.into(), 15010),
            );
            let g = GatewayPod::start(sandbox, &s.envoy, &boot, &dir)
                .await
                .map_err(|x| e(&x))?;
            st.events.push(format!(
                "started Envoy for gateway pod {key} on {ip} (istiod {rev} at {istiod})"
            ));
            Running::Gateway(Box::new(g))
        }
        Role::Frontend => {
            claim_ip(&name, ip).map_err(|x| e(&x))?;
            let f = Frontend::start(
                SocketAddr::new(ip.into(), 8080),
                Identity {
                    cluster: s.spec.name.clone(),
                    zone: s.spec.zone.clone(),
                    pod: name.clone(),
                    namespace: ns.clone(),
                    variant: s
                        .spec
                        .footer
                        .unwrap_or(meshmig_core::scenario::FooterVariant::PodOnly),
                },
                ready_set.clone(),
            )
            .await
            .map_err(|x| format!("starting the frontend stand-in on {ip}:8080: {x}"))?;
            st.events.push(format!(
                "started the frontend stand-in of pod {key} on {ip}:8080"
            ));
            Running::Frontend(f, ip)
        }
        Role::Other => return Ok(None),
    };
    Ok(Some((ip, running)))
}

fn collect_versions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "version_info" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    collect_versions(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_versions(x, out)),
        _ => {}
    }
}

/// The ready-services set shared with the frontends.
pub fn new_ready_services() -> ReadyServices {
    Arc::new(RwLock::new(BTreeSet::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_injected_gateway_pod_belongs_to_the_revision_that_injected_it() {
        // The asm-ingressgateway pod as the real asm-managed webhook left it (kwok run): no
        // istio.io/rev label, the revision in sidecar.istio.io/status.
        let p = json!({
            "metadata": {
                "labels": {"asm": "ingressgateway", "service.istio.io/canonical-revision": "latest"},
                "annotations": {"sidecar.istio.io/status": "{\"revision\":\"asm-managed\"}"},
            },
            "spec": {"containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.31.0",
                "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local"]}]},
        });
        assert_eq!(role(&p), Role::Gateway("asm-managed".into()));
    }

    #[test]
    fn istioctls_own_pods_carry_their_revision_label() {
        let istiod = json!({"metadata": {"labels": {"app": "istiod", "istio.io/rev": "asm-managed"}}, "spec": {}});
        assert_eq!(role(&istiod), Role::Istiod("asm-managed".into()));
        let gw = json!({"metadata": {"labels": {"app": "istio-ingressgateway", "istio.io/rev": "default"}},
            "spec": {"containers": [{"name": "istio-proxy", "args": ["proxy", "router"]}]}});
        assert_eq!(role(&gw), Role::Gateway("default".into()));
        let frontend = json!({"metadata": {"labels": {"app": "frontend"}},
            "spec": {"initContainers": [{"name": "istio-proxy", "args": ["proxy", "sidecar"]}]}});
        assert_eq!(role(&frontend), Role::Frontend);
        let other = json!({"metadata": {"labels": {"app": "cartservice"}}, "spec": {}});
        assert_eq!(role(&other), Role::Other);
    }

    #[test]
    fn a_gateway_selects_its_running_gateway_pods_in_any_namespace() {
        let pod = |ns: &str, name: &str, labels: Value, router: bool, phase: &str| {
            let args = if router {
                json!(["proxy", "router"])
            } else {
                json!(["proxy", "sidecar"])
            };
            json!({"metadata": {"namespace": ns, "name": name, "labels": labels},
                   "spec": {"containers": [{"name": "istio-proxy", "args": args}]},
                   "status": {"phase": phase, "podIP": "10.0.0.1"}})
        };
        let pods = vec![
            pod(
                "istio-system",
                "gw-a",
                json!({"istio": "ingressgateway"}),
                true,
                "Running",
            ),
            pod(
                "other",
                "gw-b",
                json!({"istio": "ingressgateway", "x": "y"}),
                true,
                "Running",
            ),
            pod(
                "istio-system",
                "gw-pending",
                json!({"istio": "ingressgateway"}),
                true,
                "Pending",
            ),
            pod(
                "onlineboutique",
                "sidecar",
                json!({"istio": "ingressgateway"}),
                false,
                "Running",
            ),
            pod(
                "asm-ingress",
                "asm",
                json!({"asm": "ingressgateway"}),
                true,
                "Running",
            ),
        ];
        let keys = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(&selected_running_pods(
                &pods,
                &json!({"istio": "ingressgateway"})
            )),
            ["istio-system/gw-a", "other/gw-b"]
        );
        assert_eq!(
            keys(&selected_running_pods(
                &pods,
                &json!({"asm": "ingressgateway"})
            )),
            ["asm-ingress/asm"]
        );
        assert_eq!(
            selected_running_pods(&pods, &json!({"istio": "none"})).len(),
            0
        );
        assert_eq!(selected_running_pods(&pods, &Value::Null).len(), 3);
    }
}
