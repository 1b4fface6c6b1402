//! The `kind` backend as the registry knows it: two kind clusters with real Istio and Online
//! Boutique. Its configuration from the options, doctor, plan, start and gc.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::kit::{kit_dir, KindKit};
use super::{Kind, KindConfig};
use crate::entry::{doctor_exit, BackendEntry, Capabilities, EntryError, GcReport};
use crate::exec::Process;
use crate::istioctl::IstioctlSource;
use crate::options::BackendOptions;
use crate::{Backend, BackendError};
use meshmig_core::scenario::Scenario;
use meshmig_core::tools::{on_path, MissingTool};

/// The kind backend.
pub struct Entry;

/// Its registry entry.
pub static ENTRY: Entry = Entry;

/// The kind cluster configurations for a scenario: the nearest `kind-configs/` folder among the
/// scenario's ancestors (`scenarios/canary-cluster.yaml` and `scenarios/mistakes/X.yaml` both
/// find the project's `kind-configs/`), else `kind-configs` in the working folder.
pub fn kind_configs_for(scenario: &Path) -> PathBuf {
    scenario
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("kind-configs"))
        .find(|candidate| candidate.is_dir())
        .unwrap_or_else(|| PathBuf::from("kind-configs"))
}

/// The kind configuration the options give for a scenario (istioctl resolved, fetched if
/// pinned).
pub async fn config(opts: &BackendOptions, scenario: &Path) -> Result<KindConfig, BackendError> {
    let source = match &opts.istio_version {
        Some(v) => IstioctlSource::Version(v.clone()),
        None => IstioctlSource::Path,
    };
    let istioctl = crate::istioctl::resolve(&source)
        .await
        .map_err(|e| BackendError::infra("finding istioctl", meshmig_core::error_chain(&e)))?;
    let configs = opts
        .kind_configs
        .clone()
        .unwrap_or_else(|| kind_configs_for(scenario));
    let cfg = with_options(KindConfig::new(&configs, &istioctl), opts);
    match kit(opts)? {
        Some(k) => Ok(cfg.with_kit(k, opts.kind_configs.is_some())),
        None => Ok(cfg),
    }
}

/// The kit the options (or `MESHMIG_KIND_KIT`) name, read and checked.
pub fn kit(opts: &BackendOptions) -> Result<Option<KindKit>, BackendError> {
    kit_dir(opts.kind_kit.as_deref())
        .map(|dir| KindKit::load(&dir))
        .transpose()
        .map_err(|e| BackendError::infra("reading the kind kit", meshmig_core::error_chain(&e)))
}

/// The container engine a run will use: the kit's provider, else docker.
fn engine_of(opts: &BackendOptions) -> String {
    kit(opts)
        .ok()
        .flatten()
        .map_or_else(|| "docker".to_string(), |k| k.provider)
}

/// A kind configuration with the run id and metadata image the options give.
fn with_options(mut cfg: KindConfig, opts: &BackendOptions) -> KindConfig {
    cfg.metadata_image = opts.metadata_image.clone();
    if let Some(r) = &opts.run_id {
        cfg.run_id = r.clone();
    }
    cfg
}

#[async_trait]
impl BackendEntry for Entry {
    fn name(&self) -> &'static str {
        "kind"
    }

    fn about(&self) -> &'static str {
        "Two kind clusters with real Istio and Online Boutique (needs a container engine)"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // The fleet is a stand-in here: a flapping control plane is its to play.
            fleet_faults: true,
            gc: true,
            one_at_a_time: true,
            real_manifests: true,
            ..Capabilities::default()
        }
    }

    fn conformance_options(&self) -> Result<BackendOptions, String> {
        // Real clusters: needs a container engine; `meshmig doctor --backend kind` says what is
        // missing.
        let opts = BackendOptions {
            istio_version: std::env::var("MESHMIG_ISTIO_VERSION").ok(),
            metadata_image: std::env::var("MESHMIG_METADATA_IMAGE").ok(),
            ..BackendOptions::default()
        };
        let engine = engine_of(&opts);
        let info = std::process::Command::new(&engine).arg("info").output();
        if !info.is_ok_and(|o| o.status.success()) {
            return Err(format!("the kind trials run on real kind clusters: no container engine is reachable ({engine} info failed)"));
        }
        Ok(opts)
    }

    async fn doctor(&self, opts: &BackendOptions) -> i32 {
        match kit_dir(opts.kind_kit.as_deref()) {
            Some(dir) => doctor_kit(&dir),
            None => doctor(),
        }
    }

    fn plan(&self, s: &Scenario, opts: &BackendOptions) -> Result<String, EntryError> {
        let dir = opts
            .kind_configs
            .clone()
            .unwrap_or_else(|| PathBuf::from("kind-configs"));
        let istioctl = match &opts.istio_version {
            Some(v) => PathBuf::from(format!("~/.cache/meshmig/istio-{v}/istioctl")),
            None => PathBuf::from("istioctl"),
        };
        let cfg = with_options(KindConfig::new(&dir, &istioctl), opts);
        Ok(super::plan(&cfg, s))
    }

    async fn start(
        &self,
        s: &Scenario,
        opts: &BackendOptions,
    ) -> Result<Arc<dyn Backend>, BackendError> {
        let cfg = config(opts, &s.path).await?;
        let kind = cfg.kit.as_ref().map(|k| k.kind.clone());
        for tool in [cfg.engine(), kind.as_deref().unwrap_or("kind"), "kubectl"] {
            if on_path(tool).is_none() && !Path::new(tool).is_file() {
                return Err(BackendError::MissingTool(MissingTool {
                    doing: "starting the kind backend".into(),
                    tool: tool.into(),
                    hint: "see `meshmig doctor --backend kind`".into(),
                }));
            }
        }
        Ok(Arc::new(Kind::start(cfg, s).await?))
    }

    async fn gc(
        &self,
        older_than: Duration,
        opts: &BackendOptions,
    ) -> Result<GcReport, EntryError> {
        // With a kit, its kind and provider: clusters a kit's runs made are listed only by
        // kind with KIND_EXPERIMENTAL_PROVIDER=podman.
        let (tools, env) = match kit(opts)? {
            Some(k) => (
                super::GcTools {
                    kind: k.kind.clone(),
                    engine: k.provider.clone(),
                    cloud_provider: false,
                },
                if k.provider == "docker" {
                    Default::default()
                } else {
                    [(
                        "KIND_EXPERIMENTAL_PROVIDER".to_string(),
                        k.provider.clone().into(),
                    )]
                    .into()
                },
            ),
            None => (super::GcTools::default(), Default::default()),
        };
        let exec = Process { env };
        let names: Vec<String> = super::PROCEDURE_CLUSTERS
            .iter()
            .map(|n| n.to_string())
            .collect();
        let mut lines = super::gc(
            &exec,
            &tools,
            &names,
            older_than,
            crate::run_id::chrono_like::Utc::now(),
        )
        .await?;
        let failed = lines.iter().any(|d| d.starts_with("FAILED"));
        if lines.is_empty() {
            lines.push(format!(
                "no kind cluster of a meshmig run older than {older_than:?}"
            ));
        }
        Ok(GcReport {
            lines,
            code: if failed {
                meshmig_core::exit::INFRASTRUCTURE
            } else {
                meshmig_core::exit::PASS
            },
        })
    }
}

/// With a kit: the kit itself (kit.json, its archives and configurations), its container engine
/// reachable, its node image there, its kind, kubectl and istioctl.
fn doctor_kit(dir: &Path) -> i32 {
    let mut missing = 0;
    let kit = match KindKit::load(dir) {
        Ok(k) => {
            println!(
                "ok      kind kit: {} ({} archives, provider {})",
                dir.display(),
                k.archives.len(),
                k.provider
            );
            k
        }
        Err(e) => {
            println!(
                "MISSING kind kit: {}; build it with kind-configs/kit/build",
                meshmig_core::error_chain(&e)
            );
            return doctor_exit(1);
        }
    };
    let engine = std::process::Command::new(&kit.provider)
        .args(["info", "--format", "{{.Version.Version}}"])
        .output();
    match engine {
        Ok(o) if o.status.success() => println!(
            "ok      container engine: {} {}",
            kit.provider,
            String::from_utf8_lossy(&o.stdout).trim()
        ),
        _ => {
            missing += 1;
            println!("MISSING container engine: `{} info` failed; kind-configs/kit/build installs and sets up podman", kit.provider);
        }
    }
    let image = std::process::Command::new(&kit.provider)
        .args(["image", "exists", &kit.node_image])
        .status();
    if image.is_ok_and(|s| s.success()) {
        println!("ok      node image: {}", kit.node_image);
    } else {
        missing += 1;
        println!(
            "MISSING node image {}: run kind-configs/kit/build",
            kit.node_image
        );
    }
    if Path::new(&kit.kind).is_file() {
        println!("ok      kind: {}", kit.kind);
    } else {
        missing += 1;
        println!("MISSING kind: {} (run kind-configs/kit/build)", kit.kind);
    }
    for tool in ["kubectl", "istioctl"] {
        match on_path(tool) {
            Some(p) => println!("ok      {tool}: {}", p.display()),
            None => {
                missing += 1;
                println!("MISSING {tool}: put `meshmig tools install`'s on PATH");
            }
        }
    }
    println!("ok      LoadBalancer addresses: meshmig's node load balancer (cloud-provider-kind needs Docker)");
    doctor_exit(missing)
}

/// What the kind backend needs: a reachable container engine, kind, kubectl, istioctl (or
/// network access to fetch it), cloud-provider-kind.
fn doctor() -> i32 {
    let mut missing = 0;
    match std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Ok(o) if o.status.success() => println!(
            "ok      container engine: docker {}",
            String::from_utf8_lossy(&o.stdout).trim()
        ),
        Ok(o) => {
            missing += 1;
            println!("MISSING container engine: docker is installed but its engine is not reachable ({}); start dockerd, or install Docker Engine", String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("").trim());
        }
        Err(_) => {
            missing += 1;
            println!("MISSING container engine: docker not found; install Docker Engine (apt-get install docker.io)");
        }
    }
    for (tool, install) in [
        (
            "kind",
            "go install sigs.k8s.io/kind@v0.30.0 (or a release binary)",
        ),
        ("kubectl", "apt-get install kubernetes-client"),
        (
            "istioctl",
            "or pass --istio-version X.Y.Z to fetch it (needs access to github.com)",
        ),
    ] {
        match on_path(tool) {
            Some(p) => println!("ok      {tool}: {}", p.display()),
            None => {
                missing += 1;
                println!("MISSING {tool}; install: {install}");
            }
        }
    }
    println!(
        "ok      cloud-provider-kind: runs as a container of {}:{} (pulled on first use)",
        super::CLOUD_PROVIDER_KIND_IMAGE,
        super::CLOUD_PROVIDER_KIND_TAG
    );
    if let Ok(image) = std::env::var(super::NODE_IMAGE_ENV) {
        println!("ok      node image: {image}");
    }
    for n in super::doctor_notes() {
        println!("{n}");
    }
    doctor_exit(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22: a scenario in a subfolder (`scenarios/mistakes/`, `scenarios/faults/`) finds the
    /// project's kind-configs; taking the scenario's grandparent gave `scenarios/kind-configs`,
    /// so kind stopped at A1 with "error reading file".
    #[rstest::rstest]
    #[case("scenarios/canary-cluster.yaml")]
    #[case("scenarios/mistakes/weights-reversed.yaml")]
    #[case("scenarios/faults/frontend-replica-503.yaml")]
    fn every_scenario_finds_the_projects_kind_configs(#[case] scenario: &str) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let found = kind_configs_for(&root.join(scenario));
        assert_eq!(
            found.canonicalize().unwrap(),
            root.join("kind-configs").canonicalize().unwrap(),
            "{scenario} found {}",
            found.display()
        );
        assert!(found.join("cluster-with-istio.yaml").is_file());
    }
}
