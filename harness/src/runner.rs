//! From a scenario file to a finished, torn-down run: loading (exit 2 on bad input), starting
//! the chosen backend (exit 3 when it cannot start), and running the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::emulated::{Emulated, EmulatedOptions};
use crate::backend::gke::{Gke, GkeConfig};
use crate::backend::istioctl::IstioctlSource;
use crate::backend::kind::{Kind, KindConfig};
use crate::backend::{Backend, BackendError};
use crate::engine::{self, RunOptions};
use crate::manifest::ManifestSource;
use crate::outcome::{RunObserver, RunReport};
use crate::scenario::{self, Scenario, ScenarioError};
use crate::tools::{find_envoy, MissingTool};

/// Errors before a run starts.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The scenario or a manifest is invalid (exit 2).
    #[error("loading the scenario")]
    Input(#[from] ScenarioError),
    /// The scenario injects a fault the backend cannot (exit 2).
    #[error("scenario {scenario}: {at} injects a fault ({fault}) that the {backend} backend cannot inject (faults need the stand-ins of the emulated and kwok backends)")]
    FaultsUnsupported {
        /// The scenario.
        scenario: String,
        /// Where the scenario asks for it.
        at: String,
        /// The fault.
        fault: String,
        /// The backend.
        backend: String,
    },
    /// The backend could not be started (exit 3).
    #[error("starting the {backend} backend")]
    Backend {
        /// The backend.
        backend: String,
        /// Why.
        #[source]
        source: BackendError,
    },
}

impl BackendKind {
    /// The first fault of `s` this backend cannot inject, as (where, what): data-plane faults
    /// (`inject:`) need the stand-ins of the emulated and kwok backends; the managed control
    /// plane's (`fleet.fault`, `fleet.flap`) a fleet stand-in, which GKE does not have.
    pub fn unsupported_fault(self, s: &Scenario) -> Option<(String, String)> {
        let data_plane = || {
            s.steps.iter().find_map(|st| {
                st.inject
                    .first()
                    .map(|f| (format!("step {}", st.id), f.describe()))
            })
        };
        match self {
            BackendKind::Emulated | BackendKind::Kwok => None,
            BackendKind::Kind => data_plane(),
            BackendKind::Gke => data_plane()
                .or_else(|| {
                    s.fleet.fault.as_ref().map(|f| {
                        (
                            "fleet.fault".into(),
                            format!("control plane stuck {}", f.state),
                        )
                    })
                })
                .or_else(|| {
                    s.fleet
                        .flap
                        .map(|_| ("fleet.flap".into(), "a flapping control plane".into()))
                }),
        }
    }

    /// Refuses a scenario with faults this backend cannot inject, before anything starts.
    pub fn check_faults(self, s: &Scenario) -> Result<(), RunnerError> {
        match self.unsupported_fault(s) {
            Some((at, fault)) => Err(RunnerError::FaultsUnsupported {
                scenario: s.name.clone(),
                at,
                fault,
                backend: format!("{self:?}").to_lowercase(),
            }),
            None => Ok(()),
        }
    }
}

impl RunnerError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunnerError::Input(_) | RunnerError::FaultsUnsupported { .. } => {
                crate::exit::INVALID_INPUT
            }
            RunnerError::Backend { .. } => crate::exit::INFRASTRUCTURE,
        }
    }
}

/// The backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Everything on this machine: real Envoy, HTTP and DNS; virtual clusters.
    Emulated,
    /// Two kind clusters with real Istio and Online Boutique (needs Docker).
    Kind,
    /// Real GKE clusters and managed Cloud Service Mesh in a Google Cloud project.
    Gke,
    /// Real API servers, istioctl, istiod and Envoy on this machine; kwok's fake kubelets.
    Kwok,
}

/// Settings of the real-cluster backends.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// GKE: the project.
    pub project: Option<String>,
    /// GKE: one zone for every cluster.
    pub zone: Option<String>,
    /// GKE: a Cloud DNS managed zone for the cut-over.
    pub dns_zone: Option<String>,
    /// The domain of the cut-over instead of the scenario's (with a Cloud DNS zone: a domain
    /// delegated to it, which the user controls; `example.com` cannot be).
    pub domain: Option<String>,
    /// GKE: how long the managed control plane may take (default 20 min).
    pub mesh_timeout: Option<Duration>,
    /// A fixed run id (default: a new one).
    pub run_id: Option<String>,
    /// kind and GKE: the Istio release to install (fetched with its checksum; default: istioctl on PATH).
    pub istio_version: Option<String>,
    /// kind: the folder of cluster configurations (default: kind-configs/ beside scenarios/).
    pub kind_configs: Option<PathBuf>,
    /// kind: a GCE metadata stand-in image to load (see kind-configs/metadata.Dockerfile).
    pub metadata_image: Option<String>,
    /// GKE: rehearse against the Google Cloud stand-in and kwok clusters ([`crate::rehearsal`];
    /// prepared before the process had threads).
    pub rehearsal: Option<crate::rehearsal::Prepared>,
}

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

impl BackendOptions {
    /// The kind configuration these options give (istioctl resolved, fetched if pinned).
    pub async fn kind(&self, scenario: &Path) -> Result<KindConfig, BackendError> {
        let source = match &self.istio_version {
            Some(v) => IstioctlSource::Version(v.clone()),
            None => IstioctlSource::Path,
        };
        let istioctl = crate::backend::istioctl::resolve(&source)
            .await
            .map_err(|e| BackendError::infra("finding istioctl", crate::error_chain(&e)))?;
        let configs = self
            .kind_configs
            .clone()
            .unwrap_or_else(|| kind_configs_for(scenario));
        let mut cfg = KindConfig::new(&configs, &istioctl);
        cfg.metadata_image = self.metadata_image.clone();
        if let Some(r) = &self.run_id {
            cfg.run_id = r.clone();
        }
        Ok(cfg)
    }

    /// The GKE configuration these options give; the project is required.
    pub fn gke(&self) -> Result<GkeConfig, BackendError> {
        let project = self
            .project
            .clone()
            .or_else(|| std::env::var("MESHMIG_GKE_PROJECT").ok())
            .ok_or_else(|| {
                BackendError::MissingTool(MissingTool {
                    doing: "choosing the Google Cloud project".into(),
                    tool: "a project".into(),
                    hint: "pass --project ID or set MESHMIG_GKE_PROJECT".into(),
                })
            })?;
        let mut cfg = GkeConfig::new(&project);
        cfg.zone = self.zone.clone();
        cfg.dns_zone = self.dns_zone.clone();
        if let Some(t) = self.mesh_timeout {
            cfg.mesh_timeout = t;
        }
        if let Some(r) = &self.run_id {
            cfg.run_id = r.clone();
        }
        Ok(cfg)
    }
}

/// The default manifests folder for a scenario: the `fixtures/` beside the `scenarios/` folder
/// it is in (directly, or in a subfolder such as `scenarios/mistakes/`).
pub fn default_manifests(scenario: &Path) -> PathBuf {
    scenario
        .ancestors()
        .skip(1)
        .find(|d| d.file_name().is_some_and(|n| n == "scenarios"))
        .or_else(|| scenario.parent())
        .and_then(Path::parent)
        .map(|p| p.join("fixtures"))
        .unwrap_or_else(|| PathBuf::from("fixtures"))
}

/// Loads and validates a scenario, its manifests read from `manifests` (or the default).
pub fn load(path: &Path, manifests: Option<&Path>) -> Result<Scenario, ScenarioError> {
    let root = manifests
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_manifests(path));
    scenario::load(path, &ManifestSource::new(root))
}

/// Starts the backend a scenario runs on.
pub async fn start_backend(
    kind: BackendKind,
    s: &Scenario,
) -> Result<Arc<dyn Backend>, RunnerError> {
    start_backend_with(kind, s, &BackendOptions::default()).await
}

/// Starts the backend a scenario runs on, with the real-cluster settings.
pub async fn start_backend_with(
    kind: BackendKind,
    s: &Scenario,
    opts: &BackendOptions,
) -> Result<Arc<dyn Backend>, RunnerError> {
    let backend_err = |source| RunnerError::Backend {
        backend: format!("{kind:?}").to_lowercase(),
        source,
    };
    match kind {
        BackendKind::Emulated => {
            let envoy = find_envoy()
                .map_err(BackendError::from)
                .map_err(backend_err)?;
            let b = Emulated::start(EmulatedOptions {
                envoy,
                domain: s.dns.domain.clone(),
                provisioning: Duration::from_secs_f64(s.fleet.provisioning_seconds),
                fault: s.fleet.fault.clone(),
                flap: s.fleet.flap,
                footers: Default::default(),
            })
            .await
            .map_err(backend_err)?;
            Ok(Arc::new(b))
        }
        BackendKind::Kind => {
            for tool in ["docker", "kind", "kubectl"] {
                if crate::tools::on_path(tool).is_none() {
                    return Err(backend_err(BackendError::MissingTool(MissingTool {
                        doing: "starting the kind backend".into(),
                        tool: tool.into(),
                        hint: "see `meshmig doctor --backend kind`".into(),
                    })));
                }
            }
            let cfg = opts.kind(&s.path).await.map_err(backend_err)?;
            Ok(Arc::new(Kind::start(cfg, s).await.map_err(backend_err)?))
        }
        BackendKind::Kwok => {
            let envoy = find_envoy()
                .map_err(BackendError::from)
                .map_err(backend_err)?;
            let cfg = crate::backend::kwok::backend::KwokConfig {
                tools: crate::tools::Tools::from_env(),
                envoy,
                ready_timeout: Duration::from_secs(180),
            };
            Ok(Arc::new(
                crate::backend::kwok::backend::Kwok::start(cfg, s)
                    .await
                    .map_err(backend_err)?,
            ))
        }
        BackendKind::Gke => {
            let mut cfg = opts.gke().map_err(backend_err)?;
            if let Some(v) = &opts.istio_version {
                let p = crate::backend::istioctl::resolve(&IstioctlSource::Version(v.clone()))
                    .await
                    .map_err(|e| {
                        backend_err(BackendError::infra(
                            "fetching istioctl",
                            crate::error_chain(&e),
                        ))
                    })?;
                cfg.istioctl = p.display().to_string();
            }
            let needed: &[&str] = if opts.istio_version.is_some() || opts.rehearsal.is_some() {
                &["gcloud", "kubectl"]
            } else {
                &["gcloud", "kubectl", "istioctl"]
            };
            for tool in needed.iter().copied() {
                if crate::tools::on_path(tool).is_none() {
                    return Err(backend_err(BackendError::MissingTool(MissingTool {
                        doing: "starting the gke backend".into(),
                        tool: tool.into(),
                        hint: "see `meshmig doctor --backend gke`".into(),
                    })));
                }
            }
            let Some(prepared) = &opts.rehearsal else {
                return Ok(Arc::new(Gke::start(cfg, s).await.map_err(backend_err)?));
            };
            let tools = crate::tools::Tools::from_env();
            let envoy = find_envoy()
                .map_err(BackendError::from)
                .map_err(backend_err)?;
            if opts.istio_version.is_none() {
                cfg.istioctl = tools
                    .binary("istioctl")
                    .map_err(|e| backend_err(BackendError::infra("finding istioctl", e)))?
                    .display()
                    .to_string();
            }
            let kwok = crate::backend::kwok::backend::KwokConfig {
                tools,
                envoy,
                ready_timeout: Duration::from_secs(180),
            };
            cfg.ready_timeout = kwok.ready_timeout;
            let r = crate::rehearsal::Rehearsal::start(prepared, kwok, s, &cfg.run_id)
                .await
                .map_err(|e| {
                    backend_err(BackendError::infra(
                        "starting the rehearsal",
                        crate::error_chain(&e),
                    ))
                })?;
            let r: Arc<dyn crate::backend::Companion> = Arc::new(r);
            match Gke::start(cfg, s).await {
                Ok(g) => Ok(Arc::new(g.with_companion(r))),
                Err(e) => {
                    r.stop().await;
                    Err(backend_err(e))
                }
            }
        }
    }
}

/// Loads, starts, runs and tears down, telling `observer` how the run goes.
pub async fn run_file(
    path: &Path,
    manifests: Option<&Path>,
    kind: BackendKind,
    backend_opts: &BackendOptions,
    opts: RunOptions,
    observer: Arc<dyn RunObserver>,
) -> Result<RunReport, RunnerError> {
    let mut s = load(path, manifests)?;
    if let Some(d) = &backend_opts.domain {
        s.dns.domain = d.clone();
    }
    kind.check_faults(&s)?;
    let s = Arc::new(s);
    let backend = start_backend_with(kind, &s, backend_opts).await?;
    Ok(engine::run_observed(s, backend, opts, observer).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/faults")
    }

    /// Issue 22: a scenario in a subfolder (`scenarios/mistakes/`, `scenarios/faults/`) finds the
    /// project's kind-configs; taking the scenario's grandparent gave `scenarios/kind-configs`,
    /// so kind stopped at A1 with "error reading file".
    #[rstest::rstest]
    #[case("scenarios/canary-cluster.yaml")]
    #[case("scenarios/mistakes/weights-reversed.yaml")]
    #[case("scenarios/faults/frontend-replica-503.yaml")]
    fn every_scenario_finds_the_projects_kind_configs(#[case] scenario: &str) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let found = kind_configs_for(&root.join(scenario));
        assert_eq!(
            found.canonicalize().unwrap(),
            root.join("kind-configs").canonicalize().unwrap(),
            "{scenario} found {}",
            found.display()
        );
        assert!(found.join("cluster-with-istio.yaml").is_file());
    }

    /// Issue 14: fault scenarios run where stand-ins can inject them, and are refused as invalid
    /// input (exit 2) elsewhere, before anything starts.
    #[test]
    fn faults_are_refused_on_backends_that_cannot_inject_them() {
        let gateway = load(
            &faults_dir().join("gateway-killed-during-canary.yaml"),
            None,
        )
        .unwrap();
        let flap = load(&faults_dir().join("control-plane-flapping.yaml"), None).unwrap();
        for s in [&gateway, &flap] {
            assert!(BackendKind::Emulated.check_faults(s).is_ok());
            assert!(BackendKind::Kwok.check_faults(s).is_ok());
            let e = BackendKind::Gke.check_faults(s).unwrap_err();
            assert_eq!(e.exit_code(), crate::exit::INVALID_INPUT);
        }
        let e = BackendKind::Kind.check_faults(&gateway).unwrap_err();
        assert_eq!(
            e.to_string(),
            "scenario gateway-killed-during-canary: step F3 injects a fault (kill the gateway Envoys in cluster-with-csm/asm-ingress) that the kind backend cannot inject (faults need the stand-ins of the emulated and kwok backends)"
        );
        // kind has the fleet stand-in: a flapping control plane is its to play.
        assert!(BackendKind::Kind.check_faults(&flap).is_ok());
        let canary = load(&faults_dir().join("../canary-cluster.yaml"), None).unwrap();
        assert!(BackendKind::Gke.check_faults(&canary).is_ok());
    }
}
