//! Kubernetes and Istio manifests: where they come from, and parsing them up front.
//!
//! Steps name manifests by their path inside a folder laid out like `../shared/upstream`
//! (`microservices-demo/...`, `anthos-service-mesh-samples/...`). The project's own `fixtures/`
//! is that folder by default; `--manifests DIR` points at another, such as the real upstream files.
//! Every document of every manifest is parsed into its typed form before a run starts, so a bad
//! manifest fails with its file, line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::istio::{Gateway, ServiceEntry, VirtualService};
use crate::yaml::Location;

/// Errors met while reading manifests.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file is missing or unreadable.
    #[error("{at}: reading manifest {path}")]
    Read {
        /// The step that names it.
        at: Location,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A step names a manifest outside the manifests folder (absolute, or through `..`).
    #[error("{at}: manifest path {path:?} is outside the manifests folder {root}")]
    Outside {
        /// The step that names it.
        at: Location,
        /// The path as written.
        path: String,
        /// The manifests folder.
        root: PathBuf,
    },
    /// A document is not a valid object of its kind.
    #[error("{at}: invalid {kind} in manifest: {message}")]
    Invalid {
        /// Where in the manifest.
        at: Location,
        /// The document's kind, as far as it is known.
        kind: String,
        /// What is wrong.
        message: String,
    },
}

impl ManifestError {
    /// The location of the problem, where there is one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ManifestError::Read { at, .. }
            | ManifestError::Outside { at, .. }
            | ManifestError::Invalid { at, .. } => Some(at),
        }
    }
}

/// The folder manifests are read from.
#[derive(Debug, Clone)]
pub struct ManifestSource {
    /// The root, laid out like `../shared/upstream`.
    pub root: PathBuf,
}

impl ManifestSource {
    /// The manifests under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file a step's manifest path names.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Whether a step's manifest path stays inside the folder: relative, without `..`.
    pub fn inside(relative: &str) -> bool {
        let p = Path::new(relative);
        !p.as_os_str().is_empty()
            && p.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            })
    }
}

/// One object of a manifest, as applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, if the manifest sets it.
    pub namespace: Option<String>,
    /// The whole object as JSON.
    pub body: Value,
    /// Where it was written.
    pub origin: Location,
}

impl Object {
    /// The object's labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        string_map(&self.body["metadata"]["labels"])
    }
}

/// A JSON object of strings as a map (missing → empty).
pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// An object's `metadata.namespace` and `metadata.name` ("" when absent).
pub fn namespace_and_name(v: &Value) -> (String, String) {
    let field = |f: &str| v["metadata"][f].as_str().unwrap_or_default().to_string();
    (field("namespace"), field("name"))
}

/// Whether a Deployment (as the API server returns it) reports the Available condition.
pub fn deployment_available(d: &Value) -> bool {
    d["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Available" && c["status"] == "True")
    })
}

/// Whether a Deployment's rollout has finished, as `kubectl rollout status` judges it (kubectl
/// v0.35.4, `pkg/polymorphichelpers/rollout_status.go`, `DeploymentStatusViewer::Status`): the
/// controller has seen the newest spec, every replica runs the newest template, no old replica is
/// left, and every updated replica is available. `Err` says what is still awaited, in kubectl's
/// words. `Available` alone is not enough: after a template change (the kind backend's
/// `GCE_METADATA_HOST`), the old pods keep the Deployment Available while they are replaced.
pub fn deployment_rolled_out(d: &Value) -> Result<(), String> {
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(0);
    let status = &d["status"];
    let count = |f: &str| status[f].as_i64().unwrap_or(0);
    if generation > count("observedGeneration") {
        return Err(format!(
            "{name}: waiting for deployment spec update to be observed"
        ));
    }
    let timed_out = status["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
    });
    if timed_out {
        return Err(format!("{name}: exceeded its progress deadline"));
    }
    let (updated, replicas, available) = (
        count("updatedReplicas"),
        count("replicas"),
        count("availableReplicas"),
    );
    if let Some(wanted) = d["spec"]["replicas"].as_i64() {
        if updated < wanted {
            return Err(format!(
                "{name}: {updated} out of {wanted} new replicas have been updated"
            ));
        }
    }
    if replicas > updated {
        return Err(format!(
            "{name}: {} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Err(format!(
            "{name}: {available} of {updated} updated replicas are available"
        ));
    }
    Ok(())
}

/// One object's edit (`kubectl patch --type=json`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ObjectPatch {
    /// The object's kind.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// RFC 6902 operations (`op`, `path`, `value`).
    pub ops: json_patch::Patch,
}

/// Applies each patch to the object of its kind and name (as `kubectl patch --type=json` would),
/// keeping the objects' identity fields in step with their bodies. Fails, saying which, when no
/// object matches or an operation does not apply.
pub fn patch_objects(objects: &mut [Object], patches: &[ObjectPatch]) -> Result<(), String> {
    for p in patches {
        let Some(o) = objects
            .iter_mut()
            .find(|o| o.kind == p.kind && o.name == p.name)
        else {
            return Err(format!(
                "patch: no {} {} among the objects applied",
                p.kind, p.name
            ));
        };
        json_patch::patch(&mut o.body, &p.ops)
            .map_err(|e| format!("patch of {} {}: {e}", p.kind, p.name))?;
        let text = |f: &str| {
            o.body
                .pointer(f)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        o.api_version = text("/apiVersion").unwrap_or_default();
        o.kind = text("/kind").unwrap_or_default();
        o.name = text("/metadata/name").unwrap_or_default();
        o.namespace = text("/metadata/namespace");
        check_object(&o.body)
            .map_err(|m| format!("after the patch, {} {}: {m}", p.kind, p.name))?;
    }
    Ok(())
}

/// Whether an object built in memory (patched, or written in a scenario) is one the harness
/// knows, in its typed form; the parser's message when not.
pub fn check_object(body: &Value) -> Result<(), String> {
    let yaml = crate::yaml::to_string(body).map_err(|e| e.to_string())?;
    parse(Path::new("(object)"), &yaml)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Objects written in a scenario (`apply: {objects: [...]}`), located at the scenario's step.
pub fn inline_objects(values: &[Value], at: &Location) -> Vec<Object> {
    values
        .iter()
        .map(|v| {
            let text = |f: &str| v.pointer(f).and_then(Value::as_str).map(str::to_string);
            Object {
                api_version: text("/apiVersion").unwrap_or_default(),
                kind: text("/kind").unwrap_or_default(),
                name: text("/metadata/name").unwrap_or_default(),
                namespace: text("/metadata/namespace"),
                body: v.clone(),
                origin: at.clone(),
            }
        })
        .collect()
}

/// The manifests a scenario applies, each parsed once, with its text kept for replacements.
#[derive(Debug, Clone, Default)]
pub struct ManifestSet {
    files: BTreeMap<String, (PathBuf, String)>,
}

impl ManifestSet {
    /// Reads and parses the manifest `relative` (once), to prove it valid.
    pub fn load(
        &mut self,
        source: &ManifestSource,
        relative: &str,
        step: &Location,
    ) -> Result<(), ManifestError> {
        if self.files.contains_key(relative) {
            return Ok(());
        }
        if !ManifestSource::inside(relative) {
            return Err(ManifestError::Outside {
                at: step.clone(),
                path: relative.to_string(),
                root: source.root.clone(),
            });
        }
        let path = source.path(relative);
        let text = std::fs::read_to_string(&path).map_err(|e| ManifestError::Read {
            at: step.clone(),
            path: path.clone(),
            source: e,
        })?;
        parse(&path, &text)?;
        self.files.insert(relative.to_string(), (path, text));
        Ok(())
    }

    /// The objects of a loaded manifest after the replacements, parsed again, and a note per
    /// replacement that matched nothing. Like the procedure's `sed -i`, a replacement that
    /// matches nothing is silent: what follows shows the consequence (a ServiceEntry still
    /// pointing at its placeholder fails F1 as a procedure failure, not as an error of the
    /// harness).
    pub fn objects(
        &self,
        relative: &str,
        replacements: &[(String, String)],
    ) -> Result<(Vec<Object>, Vec<String>), ManifestError> {
        let (path, text) = self
            .files
            .get(relative)
            .expect("manifests are loaded when the scenario is validated");
        let mut text = text.clone();
        let mut unmatched = Vec::new();
        for (from, to) in replacements {
            if !text.contains(from.as_str()) {
                unmatched.push(format!("(sed: {from:?} matched nothing in {relative})"));
            }
            text = text.replace(from.as_str(), to);
        }
        Ok((parse(path, &text)?, unmatched))
    }

    /// The manifests' paths.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }
}

/// Splits a multi-document YAML text into (first line, text) per document.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push((start, current));
    docs
}

/// Parses every document of a manifest into its typed form.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut objects = Vec::new();
    for (first_line, doc) in documents(text) {
        let at = |line: usize, column: usize| Location {
            file: path.to_path_buf(),
            line: first_line + line.saturating_sub(1),
            column,
        };
        let loc_of = |e: &serde_saphyr::Error| {
            crate::yaml::location(e)
                .map(|(line, column)| at(line, column))
                .unwrap_or_else(|| at(1, 1))
        };
        let value: Value = crate::yaml::from_str(&doc).map_err(|e| ManifestError::Invalid {
            at: loc_of(&e),
            kind: "document".into(),
            message: crate::yaml::message(&e, &doc),
        })?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_string();
        let api_version = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_string();
        let typed = |check: fn(&str) -> Result<(), serde_saphyr::Error>| {
            check(&doc).map_err(|e| ManifestError::Invalid {
                at: loc_of(&e),
                kind: kind.clone(),
                message: crate::yaml::message(&e, &doc),
            })
        };
        match (api_version.as_str(), kind.as_str()) {
            ("v1", "Namespace") => typed(is::<k8s_openapi::api::core::v1::Namespace>)?,
            ("v1", "Service") => typed(is::<k8s_openapi::api::core::v1::Service>)?,
            ("v1", "ServiceAccount") => typed(is::<k8s_openapi::api::core::v1::ServiceAccount>)?,
            ("apps/v1", "Deployment") => typed(is::<k8s_openapi::api::apps::v1::Deployment>)?,
            (v, "Gateway") if v.starts_with("networking.istio.io/") => typed(is::<Gateway>)?,
            (v, "VirtualService") if v.starts_with("networking.istio.io/") => {
                typed(is::<VirtualService>)?
            }
            (v, "ServiceEntry") if v.starts_with("networking.istio.io/") => {
                typed(is::<ServiceEntry>)?
            }
            _ => {
                return Err(ManifestError::Invalid {
                    at: at(1, 1),
                    kind: if kind.is_empty() {
                        "document".into()
                    } else {
                        kind
                    },
                    message: format!(
                        "apiVersion {api_version:?} kind is not one the harness knows \
                         (v1 Namespace/Service/ServiceAccount, apps/v1 Deployment, \
                         networking.istio.io Gateway/VirtualService/ServiceEntry)"
                    ),
                })
            }
        }
        let body: Value = serde_json::to_value(&value).map_err(|e| ManifestError::Invalid {
            at: at(1, 1),
            kind: kind.clone(),
            message: e.to_string(),
        })?;
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(ManifestError::Invalid {
                at: at(1, 1),
                kind,
                message: "metadata.name is missing".into(),
            });
        }
        let line = doc
            .lines()
            .position(|l| l.starts_with("apiVersion") || l.starts_with("kind"))
            .unwrap_or(0)
            + 1;
        objects.push(Object {
            api_version,
            namespace: body["metadata"]["namespace"].as_str().map(str::to_string),
            kind,
            name,
            body,
            origin: at(line, 1),
        });
    }
    Ok(objects)
}

fn is<T: DeserializeOwned>(doc: &str) -> Result<(), serde_saphyr::Error> {
    crate::yaml::from_str::<T>(doc).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn upstream(rel: &str) -> PathBuf {
        meshmig_testsupport::shared("upstream").join(rel)
    }

    /// A Deployment `frontend` of `spec.replicas` 1 at `generation` 2, with this status.
    fn frontend_at(status: serde_json::Value) -> Value {
        serde_json::json!({"metadata": {"name": "frontend", "generation": 2},
                           "spec": {"replicas": 1}, "status": status})
    }

    #[rstest]
    #[case::unobserved(serde_json::json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}),
        Some("frontend: waiting for deployment spec update to be observed"))]
    #[case::not_updated(serde_json::json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 0, "availableReplicas": 1}),
        Some("frontend: 0 out of 1 new replicas have been updated"))]
    #[case::old_pending(serde_json::json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 2}),
        Some("frontend: 1 old replicas are pending termination"))]
    #[case::unavailable(serde_json::json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1}),
        Some("frontend: 0 of 1 updated replicas are available"))]
    #[case::deadline(serde_json::json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
        Some("frontend: exceeded its progress deadline"))]
    #[case::rolled_out(serde_json::json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}), None)]
    fn rollouts_are_judged_as_kubectl_rollout_status_does(
        #[case] status: serde_json::Value,
        #[case] waiting: Option<&str>,
    ) {
        assert_eq!(
            deployment_rolled_out(&frontend_at(status)).err().as_deref(),
            waiting
        );
    }

    #[rstest]
    #[case("microservices-demo/release/kubernetes-manifests.yaml", 12)]
    #[case(
        "anthos-service-mesh-samples/docs/shared/online-boutique/kubernetes-manifests.yaml",
        12
    )]
    fn upstream_online_boutique_has_twelve_deployments(#[case] rel: &str, #[case] n: usize) {
        let path = upstream(rel);
        let objects = parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(objects.iter().filter(|o| o.kind == "Deployment").count(), n);
        assert!(objects
            .iter()
            .any(|o| o.kind == "Service" && o.name == "frontend-external"));
    }

    #[rstest]
    #[case("microservices-demo/istio-manifests/frontend-gateway.yaml", &["Gateway", "VirtualService"])]
    #[case("anthos-service-mesh-samples/docs/migrate-to-managed-asm/service-entry.yaml", &["ServiceEntry"])]
    #[case("anthos-service-mesh-samples/docs/migrate-to-managed-asm/virtual-service.yaml", &["VirtualService"])]
    #[case("anthos-service-mesh-samples/docs/shared/asm-ingress-gateway/asm-gateway-deployment-svc.yaml", &["ServiceAccount", "Service", "Deployment"])]
    #[case("anthos-service-mesh-samples/docs/shared/asm-ingress-gateway/gateway.yaml", &["Gateway"])]
    #[case("anthos-service-mesh-samples/docs/shared/online-boutique/virtual-service.yaml", &["VirtualService"])]
    fn upstream_istio_manifests_parse(#[case] rel: &str, #[case] kinds: &[&str]) {
        let path = upstream(rel);
        let objects = parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        let got: Vec<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(got, kinds);
    }

    #[test]
    fn unknown_field_in_second_document_is_located() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata:\n  name: g\nspec:\n  selectr:\n    a: b\n";
        let err = parse(Path::new("m.yaml"), text).unwrap_err();
        let at = err.location().unwrap();
        assert_eq!((at.line, at.column), (11, 3), "{err}");
        assert!(err.to_string().contains("selectr"), "{err}");
    }

    #[test]
    fn unknown_kind_is_rejected() {
        let err = parse(
            Path::new("m.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("ConfigMap"));
    }
}
