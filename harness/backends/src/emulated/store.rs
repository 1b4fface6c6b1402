//! A virtual cluster's object store, with the Kubernetes semantics the procedure observes.
//!
//! Objects are kept as the API server would return them (JSON with `status`). Applying replaces an
//! object by kind, namespace and name; a Deployment gets pods named `NAME-<hash>-<id>`, injected
//! with the Istio proxy when their namespace asks for a revision the cluster runs; Services get a
//! cluster IP, and LoadBalancer Services an external IP from the cluster's address range.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};

use super::inject::{inject, injected_metadata, injecting_revision};
use meshmig_core::manifest::{namespace_and_name, string_map, Object};

/// Kubernetes' alphabet for generated name suffixes (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Key of an object: kind, namespace ("" for cluster-scoped), name.
pub type Key = (String, String, String);

/// The address plan of one virtual cluster: a /20 of loopback addresses of its own.
#[derive(Debug, Clone)]
pub struct AddressPlan {
    /// Second octet (the run's).
    pub run: u8,
    /// Third-octet base (16 per cluster).
    pub base: u8,
    next_lb: u8,
    next_cluster_ip: u8,
    next_pod: u16,
}

/// How many clusters an emulated run holds at once: cluster `i` takes the third octets
/// `16 (i + 1)` to `16 (i + 1) + 15`, which must stay below 256.
pub const MAX_CLUSTERS: u8 = 14;

impl AddressPlan {
    /// The plan of cluster number `index` (below [`MAX_CLUSTERS`]) of run `run`.
    pub fn new(run: u8, index: u8) -> Self {
        assert!(index < MAX_CLUSTERS, "cluster index {index} out of range");
        Self {
            run,
            base: 16 * (index + 1),
            next_lb: 10,
            next_cluster_ip: 10,
            next_pod: 10,
        }
    }

    /// The cluster number this plan is for.
    pub fn index(&self) -> u8 {
        self.base / 16 - 1
    }

    /// A new load balancer address.
    pub fn lb_ip(&mut self) -> Ipv4Addr {
        self.next_lb = self.next_lb.wrapping_add(1).max(10);
        Ipv4Addr::new(127, self.run, self.base, self.next_lb)
    }

    /// A new cluster IP (never bound: only a name for the Service).
    pub fn cluster_ip(&mut self) -> Ipv4Addr {
        self.next_cluster_ip = self.next_cluster_ip.wrapping_add(1).max(10);
        Ipv4Addr::new(127, self.run, self.base + 1, self.next_cluster_ip)
    }

    /// A new pod IP.
    pub fn pod_ip(&mut self) -> Ipv4Addr {
        self.next_pod += 1;
        let third = self.base + 2 + (self.next_pod / 250) as u8;
        Ipv4Addr::new(127, self.run, third, (self.next_pod % 250) as u8 + 2)
    }
}

/// Errors of the store (a kubectl error, as the procedure would see it).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("Error from server (NotFound): {kind} \"{name}\" not found")]
    NotFound {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// The object already exists.
    #[error("Error from server (AlreadyExists): {kind} \"{name}\" already exists")]
    AlreadyExists {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// The namespace does not exist.
    #[error("Error from server (NotFound): namespaces \"{namespace}\" not found")]
    NoNamespace {
        /// Namespace.
        namespace: String,
    },
}

/// One virtual cluster's objects.
#[derive(Debug)]
pub struct Store {
    objects: BTreeMap<Key, Value>,
    /// Order of creation (for Istio's "oldest first" merging).
    created: BTreeMap<Key, u64>,
    counter: u64,
    /// The cluster's addresses.
    pub addresses: AddressPlan,
}

fn kind_key(kind: &str) -> String {
    kind.to_string()
}

impl Store {
    /// An empty cluster with the namespaces every cluster starts with.
    pub fn new(addresses: AddressPlan) -> Self {
        let mut s = Self {
            objects: BTreeMap::new(),
            created: BTreeMap::new(),
            counter: 0,
            addresses,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            s.put(namespace_object(ns, &BTreeMap::new()));
        }
        s
    }

    fn put(&mut self, v: Value) {
        let key = key_of(&v);
        if !self.created.contains_key(&key) {
            self.counter += 1;
            self.created.insert(key.clone(), self.counter);
        }
        self.objects.insert(key, v);
    }

    /// An object.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(kind_key(kind), namespace.to_string(), name.to_string()))
    }

    /// Objects of a kind, in one namespace or all, sorted by namespace and name.
    pub fn list(&self, kind: &str, namespace: Option<&str>) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|((k, ns, _), _)| k == kind && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v)
            .collect()
    }

    /// Objects of a kind in creation order.
    pub fn list_by_age(&self, kind: &str) -> Vec<&Value> {
        let mut v: Vec<(&u64, &Value)> = self
            .objects
            .iter()
            .filter(|((k, _, _), _)| k == kind)
            .map(|(key, v)| (&self.created[key], v))
            .collect();
        v.sort_by_key(|(c, _)| **c);
        v.into_iter().map(|(_, v)| v).collect()
    }

    /// `kubectl create namespace`.
    pub fn create_namespace(&mut self, name: &str) -> Result<(), StoreError> {
        if self.get("Namespace", "", name).is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "namespaces".into(),
                name: name.into(),
            });
        }
        self.put(namespace_object(name, &BTreeMap::new()));
        Ok(())
    }

    /// `kubectl label namespace` (overwrites).
    pub fn label_namespace(
        &mut self,
        name: &str,
        labels: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), StoreError> {
        let ns = self
            .objects
            .get_mut(&("Namespace".into(), String::new(), name.into()))
            .ok_or_else(|| StoreError::NotFound {
                kind: "namespaces".into(),
                name: name.into(),
            })?;
        for (k, v) in labels {
            ns["metadata"]["labels"][k] = json!(v);
        }
        if let Some(l) = ns["metadata"]["labels"].as_object_mut() {
            for k in remove {
                l.remove(k);
            }
        }
        Ok(())
    }

    /// `kubectl rollout restart deployment -n NAMESPACE`: each Deployment's template gets
    /// kubectl's `restartedAt` annotation and its pods are made again, injected as the
    /// namespace's labels now say (the emulated rollout completes at once). The names restarted.
    pub fn restart_deployments(
        &mut self,
        namespace: &str,
        revisions: &BTreeSet<String>,
    ) -> Vec<String> {
        let deployments: Vec<Value> = self
            .list("Deployment", Some(namespace))
            .into_iter()
            .cloned()
            .collect();
        let mut names = Vec::new();
        const RESTARTED: &str = "kubectl.kubernetes.io/restartedAt";
        for mut d in deployments {
            let name = d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            // The store has no clock: each restart's value is the previous one's count plus 1.
            let count = d["spec"]["template"]["metadata"]["annotations"][RESTARTED]
                .as_str()
                .and_then(|v| v.strip_prefix("emulated restart "))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            d["spec"]["template"]["metadata"]["annotations"][RESTARTED] =
                json!(format!("emulated restart {}", count + 1));
            self.delete_pods_of(namespace, &name);
            self.create_pods(&d, namespace, revisions);
            self.put(d);
            names.push(name);
        }
        self.refresh_statuses();
        names
    }

    /// Labels of a namespace.
    pub fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.get("Namespace", "", name)
            .map(|n| string_map(&n["metadata"]["labels"]))
    }

    /// `kubectl apply` of one object into `namespace`; `revisions` are the Istio control planes
    /// that inject pods (revision names; `default` for `istio-injection=enabled`).
    /// Returns kubectl's line for it.
    pub fn apply(
        &mut self,
        obj: &Object,
        namespace: &str,
        revisions: &BTreeSet<String>,
    ) -> Result<String, StoreError> {
        let namespaced = obj.kind != "Namespace";
        let ns = if namespaced {
            obj.namespace
                .clone()
                .unwrap_or_else(|| namespace.to_string())
        } else {
            String::new()
        };
        if namespaced && self.get("Namespace", "", &ns).is_none() {
            return Err(StoreError::NoNamespace { namespace: ns });
        }
        let mut body = obj.body.clone();
        if namespaced {
            body["metadata"]["namespace"] = json!(ns);
        }
        let key = (obj.kind.clone(), ns.clone(), obj.name.clone());
        let previous = self.objects.get(&key).cloned();
        let verb = match &previous {
            None => "created",
            Some(p) if strip_status(p) == strip_status(&with_status_from(&body, p)) => "unchanged",
            Some(_) => "configured",
        };
        match obj.kind.as_str() {
            "Service" => self.admit_service(&mut body, previous.as_ref()),
            "Deployment" => {
                let template_changed = previous
                    .as_ref()
                    .is_none_or(|p| p["spec"]["template"] != body["spec"]["template"]);
                if template_changed {
                    self.delete_pods_of(&ns, &obj.name);
                    self.create_pods(&body, &ns, revisions);
                }
            }
            _ => {}
        }
        self.put(body);
        self.refresh_statuses();
        let resource = resource_name(&obj.kind);
        Ok(format!("{resource}/{} {verb}", obj.name))
    }

    /// `kubectl delete KIND NAME -n NS`.
    pub fn delete(&mut self, kind: &str, namespace: &str, name: &str) -> Result<(), StoreError> {
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        if self.objects.remove(&key).is_none() {
            return Err(StoreError::NotFound {
                kind: resource_name(kind),
                name: name.into(),
            });
        }
        self.created.remove(&key);
        if kind == "Deployment" {
            self.delete_pods_of(namespace, name);
        }
        if kind == "Namespace" {
            let doomed: Vec<Key> = self
                .objects
                .keys()
                .filter(|(_, ns, _)| ns == name)
                .cloned()
                .collect();
            for k in doomed {
                self.objects.remove(&k);
                self.created.remove(&k);
            }
        }
        self.refresh_statuses();
        Ok(())
    }

    fn admit_service(&mut self, body: &mut Value, previous: Option<&Value>) {
        let cluster_ip = previous
            .and_then(|p| p["spec"]["clusterIP"].as_str().map(str::to_string))
            .unwrap_or_else(|| self.addresses.cluster_ip().to_string());
        body["spec"]["clusterIP"] = json!(cluster_ip);
        if body["spec"]["type"] == "LoadBalancer" {
            let ip = previous
                .and_then(|p| {
                    p["status"]["loadBalancer"]["ingress"][0]["ip"]
                        .as_str()
                        .map(str::to_string)
                })
                .unwrap_or_else(|| self.addresses.lb_ip().to_string());
            body["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}});
        } else {
            body["status"] = json!({"loadBalancer": {}});
        }
    }

    fn delete_pods_of(&mut self, namespace: &str, deployment: &str) {
        let doomed: Vec<Key> = self
            .objects
            .iter()
            .filter(|((k, ns, _), v)| {
                k == "Pod"
                    && ns == namespace
                    && v["metadata"]["ownerReferences"][0]["name"] == deployment
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.objects.remove(&k);
            self.created.remove(&k);
        }
    }

    fn create_pods(&mut self, deployment: &Value, namespace: &str, revisions: &BTreeSet<String>) {
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
        let template = &deployment["spec"]["template"];
        let hash = template_hash(template);
        let ns_labels = self.namespace_labels(namespace).unwrap_or_default();
        let injector = injecting_revision(&ns_labels, revisions);
        let mut rng = rand::rng();
        for _ in 0..replicas {
            let suffix: String = (0..5)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect();
            let pod_name = format!("{name}-{hash}-{suffix}");
            let mut labels = template["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(hash);
            let mut annotations = template["metadata"]["annotations"].clone();
            if annotations.is_null() {
                annotations = json!({});
            }
            let mut containers = template["spec"]["containers"].clone();
            let mut init_containers = template["spec"]["initContainers"].clone();
            let opted_out = annotations["sidecar.istio.io/inject"] == "false"
                || labels["sidecar.istio.io/inject"] == "false";
            if let (Some(rev), false) = (&injector, opted_out) {
                let gateway = annotations["inject.istio.io/templates"] == "gateway";
                let injected = inject(&mut containers, &mut init_containers, gateway);
                let set = injected_metadata(&labels, &annotations, name, &containers, rev, gateway);
                for (k, v) in set.labels {
                    labels[k] = json!(v);
                }
                for (k, v) in set.annotations {
                    annotations[k] = json!(v);
                }
                annotations["sidecar.istio.io/status"] = json!(serde_json::to_string(&json!({
                    "initContainers": injected.init_containers,
                    "containers": injected.containers,
                    "volumes": null,
                    "imagePullSecrets": null,
                    "revision": rev,
                }))
                .unwrap_or_default());
            }
            let pull_failure = containers
                .as_array()
                .map(|cs| cs.iter().any(|c| c["image"] == "auto"))
                .unwrap_or(false);
            let ip = self.addresses.pod_ip().to_string();
            let statuses: Vec<Value> = containers
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    if c["image"] == "auto" {
                        json!({"name": c["name"], "image": "auto", "ready": false, "started": false,
                               "state": {"waiting": {"reason": "InvalidImageName",
                                         "message": "Failed to apply default image tag \"auto\": couldn't parse image name \"auto\""}}})
                    } else {
                        json!({"name": c["name"], "image": c["image"], "ready": true, "started": true,
                               "state": {"running": {}}})
                    }
                })
                .collect();
            let ready = if pull_failure { "False" } else { "True" };
            let mut spec = template["spec"].clone();
            spec["containers"] = containers;
            if !init_containers.is_null() {
                spec["initContainers"] = init_containers;
            }
            let pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name,
                                         "controller": true}],
                },
                "spec": spec,
                "status": {
                    "phase": if pull_failure { "Pending" } else { "Running" },
                    "podIP": ip,
                    "conditions": [{"type": "Ready", "status": ready}],
                    "containerStatuses": statuses,
                },
            });
            self.put(pod);
        }
    }

    /// Recomputes Deployment statuses from their pods.
    fn refresh_statuses(&mut self) {
        let deployments: Vec<Key> = self
            .objects
            .keys()
            .filter(|(k, _, _)| k == "Deployment")
            .cloned()
            .collect();
        for key in deployments {
            let (_, ns, name) = &key;
            let pods = self.pods_of(ns, name);
            let total = pods.len() as u64;
            let ready = pods.iter().filter(|p| pod_ready(p)).count() as u64;
            let want = self.objects[&key]["spec"]["replicas"].as_u64().unwrap_or(1);
            let available = ready >= want && want > 0;
            let status = json!({
                "observedGeneration": 1,
                "replicas": total,
                "updatedReplicas": total,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": total - ready,
                "conditions": [
                    {"type": "Available", "status": if available { "True" } else { "False" },
                     "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                ],
            });
            if let Some(d) = self.objects.get_mut(&key) {
                d["status"] = status;
            }
        }
    }

    /// The pods of a Deployment.
    pub fn pods_of(&self, namespace: &str, deployment: &str) -> Vec<&Value> {
        self.list("Pod", Some(namespace))
            .into_iter()
            .filter(|p| p["metadata"]["ownerReferences"][0]["name"] == deployment)
            .collect()
    }

    /// Pods in `namespace` whose labels include `selector`.
    pub fn pods_matching(
        &self,
        namespace: Option<&str>,
        selector: &BTreeMap<String, String>,
    ) -> Vec<&Value> {
        self.list("Pod", namespace)
            .into_iter()
            .filter(|p| selects(selector, &string_map(&p["metadata"]["labels"])))
            .collect()
    }

    /// Load balancer addresses allocated.
    pub fn load_balancers(&self) -> Vec<String> {
        self.list("Service", None)
            .into_iter()
            .filter_map(|s| {
                s["status"]["loadBalancer"]["ingress"][0]["ip"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    /// Installs objects created by a controller (istioctl), bypassing the namespace check.
    pub fn install(&mut self, v: Value, revisions: &BTreeSet<String>) {
        let mut v = v;
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        if kind == "Service" {
            self.admit_service(&mut v, None);
        }
        if kind == "Deployment" {
            let ns = v["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.create_pods(&v, &ns, revisions);
        }
        self.put(v);
        self.refresh_statuses();
    }
}

/// Whether a pod is ready.
pub fn pod_ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Whether `selector` (non-empty) selects `labels`.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A stable pod-template hash in Kubernetes' alphabet.
fn template_hash(template: &Value) -> String {
    let text = template.to_string();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn key_of(v: &Value) -> Key {
    let (namespace, name) = namespace_and_name(v);
    (
        v["kind"].as_str().unwrap_or_default().to_string(),
        namespace,
        name,
    )
}

fn strip_status(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    if let Some(spec) = v["spec"].as_object_mut() {
        spec.remove("clusterIP");
    }
    v
}

fn with_status_from(body: &Value, previous: &Value) -> Value {
    let mut b = body.clone();
    b["status"] = previous["status"].clone();
    b
}

/// kubectl's resource name for a kind (`deployment.apps`, `service`...).
pub fn resource_name(kind: &str) -> String {
    match kind {
        "Deployment" => "deployment.apps".into(),
        "Gateway" => "gateway.networking.istio.io".into(),
        "VirtualService" => "virtualservice.networking.istio.io".into(),
        "ServiceEntry" => "serviceentry.networking.istio.io".into(),
        other => other.to_lowercase(),
    }
}

/// A Namespace object.
pub fn namespace_object(name: &str, labels: &BTreeMap<String, String>) -> Value {
    let mut l = json!({"kubernetes.io/metadata.name": name});
    for (k, v) in labels {
        l[k] = json!(v);
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": l},
           "status": {"phase": "Active"}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshmig_core::yaml::Location;

    fn obj(kind: &str, body: Value) -> Object {
        Object {
            api_version: body["apiVersion"].as_str().unwrap().into(),
            kind: kind.into(),
            name: body["metadata"]["name"].as_str().unwrap().into(),
            namespace: None,
            body,
            origin: Location {
                file: "t".into(),
                line: 1,
                column: 1,
            },
        }
    }

    fn gateway_deployment() -> Object {
        obj(
            "Deployment",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "gw"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"asm": "ingressgateway"}},
                "template": {"metadata": {"labels": {"asm": "ingressgateway"},
                    "annotations": {"inject.istio.io/templates": "gateway"}},
                    "spec": {"containers": [{"name": "istio-proxy", "image": "auto"}]}}}}),
        )
    }

    #[test]
    fn auto_image_is_injected_only_in_a_labelled_namespace_of_a_running_revision() {
        let revs: BTreeSet<String> = ["asm-managed".to_string()].into();
        let mut s = Store::new(AddressPlan::new(200, 0));
        s.create_namespace("a").unwrap();
        s.apply(&gateway_deployment(), "a", &revs).unwrap();
        let d = s.get("Deployment", "a", "gw").unwrap();
        assert_eq!(
            d["status"]["availableReplicas"], 0,
            "not injected: the image stays `auto`"
        );

        s.create_namespace("b").unwrap();
        s.label_namespace(
            "b",
            &[("istio.io/rev".to_string(), "asm-managed".to_string())].into(),
            &[],
        )
        .unwrap();
        s.apply(&gateway_deployment(), "b", &revs).unwrap();
        let d = s.get("Deployment", "b", "gw").unwrap();
        assert_eq!(d["status"]["availableReplicas"], 3);
        let pods = s.pods_of("b", "gw");
        assert_eq!(pods.len(), 3);
        let name = pods[0]["metadata"]["name"].as_str().unwrap();
        assert!(
            name.starts_with("gw-") && name.len() == "gw-".len() + 10 + 1 + 5,
            "{name}"
        );
    }

    #[test]
    fn load_balancer_keeps_its_address_on_reapply_and_delete_is_not_found_twice() {
        let mut s = Store::new(AddressPlan::new(200, 1));
        let svc = obj(
            "Service",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        );
        assert_eq!(
            s.apply(&svc, "default", &BTreeSet::new()).unwrap(),
            "service/lb created"
        );
        let ip = s.load_balancers();
        assert_eq!(
            s.apply(&svc, "default", &BTreeSet::new()).unwrap(),
            "service/lb unchanged"
        );
        assert_eq!(s.load_balancers(), ip);
        assert!(ip[0].starts_with("127.200.32."));
        s.delete("Service", "default", "lb").unwrap();
        assert!(matches!(
            s.delete("Service", "default", "lb"),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn apply_into_missing_namespace_fails() {
        let mut s = Store::new(AddressPlan::new(200, 0));
        assert!(matches!(
            s.apply(&gateway_deployment(), "nope", &BTreeSet::new()),
            Err(StoreError::NoNamespace { .. })
        ));
    }
}
