//! The Kubernetes layer of the real-cluster backends (kind and GKE): every in-cluster operation
//! through kube-rs, against one kubeconfig context.
//!
//! - apply: server-side apply (field manager `meshmig`, forced, as `kubectl apply
//!   --server-side --force-conflicts`), each object's resource found by discovery of its
//!   group/version, so Istio's CRDs work like built-in kinds; the answer reads as kubectl's
//!   (`created`, `configured`, `unchanged`);
//! - deletes that wait until the object is gone;
//! - waits with a deadline: Deployments available, pods injected; a wait that times out says
//!   what it waited for and the last state it saw.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{pinned_kind, ApiResource, Scope};
use kube::Client;
use serde_json::{json, Value};

use meshmig_core::manifest::Object;

/// Errors of the Kubernetes layer.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig or context could not be loaded.
    #[error("loading kubeconfig context {context}")]
    Config {
        /// The context.
        context: String,
        /// Why.
        message: String,
    },
    /// An API call failed.
    #[error("{doing}")]
    Api {
        /// What was being done.
        doing: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The API answered 404.
    #[error("{doing}: {kind} \"{name}\" not found")]
    NotFound {
        /// What was being done.
        doing: String,
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// A wait ran out of time.
    #[error("waiting {waited:?} for {what}: last seen {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// The last state seen.
        last: String,
    },
}

/// The server-side-apply field manager of the procedure's applies.
pub const FIELD_MANAGER: &str = "meshmig";

/// The resource (plural, scope) of kinds the harness reads, without a discovery round trip.
pub fn known_resource(kind: &str) -> Option<(ApiResource, bool)> {
    let (group, version, plural, namespaced) = match kind {
        "Namespace" => ("", "v1", "namespaces", false),
        "Pod" => ("", "v1", "pods", true),
        "Service" => ("", "v1", "services", true),
        "ServiceAccount" => ("", "v1", "serviceaccounts", true),
        "ConfigMap" => ("", "v1", "configmaps", true),
        "Node" => ("", "v1", "nodes", false),
        "Deployment" => ("apps", "v1", "deployments", true),
        "EndpointSlice" => ("discovery.k8s.io", "v1", "endpointslices", true),
        "Gateway" => ("networking.istio.io", "v1beta1", "gateways", true),
        "VirtualService" => ("networking.istio.io", "v1beta1", "virtualservices", true),
        "ServiceEntry" => ("networking.istio.io", "v1beta1", "serviceentries", true),
        _ => return None,
    };
    Some((
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural),
        namespaced,
    ))
}

/// One cluster's API.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    context: String,
    /// How often waits poll.
    pub poll: Duration,
}

fn api_err(doing: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
    let doing = doing.into();
    move |source| KubeError::Api { doing, source }
}

fn is_404(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Kube {
    /// A client for `context` of the kubeconfig at `path`.
    pub async fn from_kubeconfig(path: &std::path::Path, context: &str) -> Result<Self, KubeError> {
        let fail = |message: String| KubeError::Config {
            context: context.to_string(),
            message,
        };
        let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
        let opts = kube::config::KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let client = Client::try_from(config).map_err(|e| fail(e.to_string()))?;
        Ok(Self::from_client(client, context))
    }

    /// A layer over an existing client (tests use a mock API server).
    pub fn from_client(client: Client, context: &str) -> Self {
        Self {
            client,
            context: context.to_string(),
            poll: Duration::from_secs(2),
        }
    }

    /// The underlying client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The context's name.
    pub fn context(&self) -> &str {
        &self.context
    }

    fn api(
        &self,
        ar: &ApiResource,
        namespaced: bool,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, ar),
            _ => Api::all_with(self.client.clone(), ar),
        }
    }

    /// Server-side applies objects (those without a namespace go to `namespace`) as
    /// [`FIELD_MANAGER`]; returns kubectl's line per object.
    pub async fn apply(
        &self,
        objects: &[Object],
        namespace: &str,
    ) -> Result<Vec<String>, KubeError> {
        self.apply_as(objects, namespace, FIELD_MANAGER).await
    }

    /// Server-side applies objects as field manager `manager`. A manager owns what it sent: its
    /// next apply removes every field it no longer sends.
    pub async fn apply_as(
        &self,
        objects: &[Object],
        namespace: &str,
        manager: &str,
    ) -> Result<Vec<String>, KubeError> {
        let mut lines = Vec::new();
        let params = PatchParams::apply(manager).force();
        for o in objects {
            let (group, version) = match o.api_version.split_once('/') {
                Some((g, v)) => (g, v),
                None => ("", o.api_version.as_str()),
            };
            let gvk = GroupVersionKind::gvk(group, version, &o.kind);
            let doing = format!("applying {} {} ({})", o.kind, o.name, o.origin);
            let (ar, caps) = pinned_kind(&self.client, &gvk)
                .await
                .map_err(api_err(format!("{doing}: discovering {}", o.api_version)))?;
            let namespaced = caps.scope == Scope::Namespaced;
            let ns = o.namespace.as_deref().unwrap_or(namespace);
            let api = self.api(&ar, namespaced, Some(ns));
            let before = api.get_opt(&o.name).await.map_err(api_err(doing.clone()))?;
            let mut body = o.body.clone();
            if namespaced {
                body["metadata"]["namespace"] = json!(ns);
            }
            let after = api
                .patch(&o.name, &params, &Patch::Apply(&body))
                .await
                .map_err(api_err(doing.clone()))?;
            let verb = match before {
                None => "created",
                Some(b) if b.metadata.resource_version == after.metadata.resource_version => {
                    "unchanged"
                }
                Some(_) => "configured",
            };
            let resource = if ar.group.is_empty() {
                ar.plural.trim_end_matches('s').to_string()
            } else {
                format!("{}.{}", o.kind.to_lowercase(), ar.group)
            };
            lines.push(format!("{resource}/{} {verb}", o.name));
        }
        Ok(lines)
    }

    /// Objects of a kind, sorted by namespace and name.
    pub async fn list(&self, kind: &str, namespace: Option<&str>) -> Result<Vec<Value>, KubeError> {
        let (ar, namespaced) = known_resource(kind).ok_or_else(|| KubeError::NotFound {
            doing: "listing".into(),
            kind: kind.into(),
            name: "(kind)".into(),
        })?;
        let api = self.api(&ar, namespaced, namespace);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(api_err(format!(
                "listing {kind} in {}",
                namespace.unwrap_or("all namespaces")
            )))?;
        let mut items: Vec<Value> = list
            .items
            .into_iter()
            .map(|o| {
                let mut v = serde_json::to_value(&o).unwrap_or(Value::Null);
                v["kind"] = json!(kind);
                v
            })
            .collect();
        items.sort_by_key(meshmig_core::manifest::namespace_and_name);
        Ok(items)
    }

    /// Creates a namespace.
    pub async fn create_namespace(&self, name: &str) -> Result<(), KubeError> {
        let (ar, _) = known_resource("Namespace").expect("Namespace is known");
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let obj: DynamicObject = serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .expect("a static namespace object");
        api.create(&Default::default(), &obj)
            .await
            .map_err(api_err(format!("creating namespace {name}")))?;
        Ok(())
    }

    /// Sets labels on a namespace (merge patch, as `kubectl label --overwrite`).
    pub async fn label_namespace(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), KubeError> {
        let (ar, _) = known_resource("Namespace").expect("Namespace is known");
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        // A JSON merge patch removes a key given null (RFC 7386), as `kubectl label KEY-` does.
        let mut patch = serde_json::Map::new();
        for (k, v) in labels {
            patch.insert(k.clone(), json!(v));
        }
        for k in remove {
            patch.insert(k.clone(), Value::Null);
        }
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": patch}})),
        )
        .await
        .map_err(api_err(format!("labelling namespace {name}")))?;
        Ok(())
    }

    /// `kubectl rollout restart deployment -n NAMESPACE`: every Deployment's pod template gets
    /// kubectl's `kubectl.kubernetes.io/restartedAt` annotation (now, RFC 3339), so its
    /// controller replaces the pods. The Deployments restarted, by name.
    pub async fn restart_deployments(&self, namespace: &str) -> Result<Vec<String>, KubeError> {
        let (ar, _) = known_resource("Deployment").expect("Deployment is known");
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &ar);
        let now = k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mut names = Vec::new();
        for d in self.list("Deployment", Some(namespace)).await? {
            let Some(name) = d["metadata"]["name"].as_str() else {
                continue;
            };
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": now
                }}}}})),
            )
            .await
            .map_err(api_err(format!("restarting deployment {namespace}/{name}")))?;
            names.push(name.to_string());
        }
        Ok(names)
    }

    /// Deletes an object and waits until it is gone; a missing object is `NotFound`.
    pub async fn delete(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(), KubeError> {
        let (ar, namespaced) = known_resource(kind).ok_or_else(|| KubeError::NotFound {
            doing: "deleting".into(),
            kind: kind.into(),
            name: name.into(),
        })?;
        let api = self.api(&ar, namespaced, Some(namespace));
        let doing = format!("deleting {kind} {namespace}/{name}");
        match api.delete(name, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(e) if is_404(&e) => {
                return Err(KubeError::NotFound {
                    doing,
                    kind: kind.into(),
                    name: name.into(),
                });
            }
            Err(e) => return Err(api_err(doing)(e)),
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match api.get_opt(name).await.map_err(api_err(doing.clone()))? {
                None => return Ok(()),
                Some(o) if tokio::time::Instant::now() >= deadline => {
                    return Err(KubeError::Timeout {
                        what: format!("{kind} {namespace}/{name} to be deleted"),
                        waited: timeout,
                        last: format!(
                            "still present (deletionTimestamp {:?})",
                            o.metadata.deletion_timestamp.map(|t| t.0.to_string())
                        ),
                    })
                }
                Some(_) => tokio::time::sleep(self.poll).await,
            }
        }
    }

    /// Waits until no pod in `namespace` is terminating (`metadata.deletionTimestamp` set): after
    /// a rollout, the old pods are gone, not only the new ones available.
    pub async fn wait_no_terminating_pods(
        &self,
        namespace: &str,
        timeout: Duration,
    ) -> Result<(), KubeError> {
        self.poll_until(
            format!("the old pods in {namespace} to be gone"),
            timeout,
            || async {
                let terminating: Vec<String> = self
                    .list("Pod", Some(namespace))
                    .await?
                    .iter()
                    .filter(|p| !p["metadata"]["deletionTimestamp"].is_null())
                    .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
                    .collect();
                Ok(
                    (!terminating.is_empty())
                        .then(|| format!("still terminating: {terminating:?}")),
                )
            },
        )
        .await
    }

    /// Waits until the Deployments (all of the namespace when `names` is empty) have rolled out
    /// as `kubectl rollout status` judges it ([`meshmig_core::manifest::deployment_rolled_out`]): a
    /// template change applied before the wait (the kind backend's `GCE_METADATA_HOST`) has
    /// replaced every old pod when it returns, so no rollout is left to reach a later step's load.
    pub async fn wait_deployments_rolled_out(
        &self,
        namespace: &str,
        names: &[String],
        timeout: Duration,
    ) -> Result<(), KubeError> {
        self.poll_until(
            format!("Deployments in {namespace} to roll out"),
            timeout,
            || async {
                let ds = self.list("Deployment", Some(namespace)).await?;
                let pending: Vec<String> = ds
                    .iter()
                    .filter(|d| {
                        names.is_empty()
                            || names.iter().any(|n| d["metadata"]["name"] == n.as_str())
                    })
                    .filter_map(|d| meshmig_core::manifest::deployment_rolled_out(d).err())
                    .collect();
                let missing: Vec<&String> = names
                    .iter()
                    .filter(|n| !ds.iter().any(|d| d["metadata"]["name"] == n.as_str()))
                    .collect();
                let done = pending.is_empty() && missing.is_empty() && !ds.is_empty();
                Ok((!done).then(|| format!("not rolled out: {pending:?}; missing: {missing:?}")))
            },
        )
        .await
    }

    /// Asks `check` every poll interval until it answers `None` (done), or fails with a timeout
    /// naming `what` and the last answer (`Some(what is still pending)`).
    async fn poll_until<F, Fut>(
        &self,
        what: String,
        timeout: Duration,
        mut check: F,
    ) -> Result<(), KubeError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, KubeError>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Some(last) = check().await? else {
                return Ok(());
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(KubeError::Timeout {
                    what,
                    waited: timeout,
                    last,
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}
