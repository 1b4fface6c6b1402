//! From a scenario file to a finished, torn-down run: loading (exit 2 on bad input), starting
//! the chosen backend (exit 3 when it cannot start), and running the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::emulated::{find_envoy, Emulated, EmulatedOptions};
use crate::backend::{Backend, BackendError};
use crate::engine::{self, RunOptions, RunReport};
use crate::manifest::ManifestSource;
use crate::scenario::{self, Scenario, ScenarioError};

/// Errors before a run starts.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The scenario or a manifest is invalid (exit 2).
    #[error("loading the scenario")]
    Input(#[from] ScenarioError),
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

impl RunnerError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunnerError::Input(_) => crate::exit::INVALID_INPUT,
            RunnerError::Backend { .. } => crate::exit::INFRASTRUCTURE,
        }
    }
}

/// The backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Everything on this machine: real Envoy, HTTP and DNS; virtual clusters.
    Emulated,
}

/// The default manifests folder for a scenario: `fixtures/` beside its `scenarios/` folder.
pub fn default_manifests(scenario: &Path) -> PathBuf {
    scenario
        .parent()
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
    match kind {
        BackendKind::Emulated => {
            let envoy = find_envoy().map_err(|source| RunnerError::Backend {
                backend: "emulated".into(),
                source,
            })?;
            let b = Emulated::start(EmulatedOptions {
                envoy,
                domain: s.dns.domain.clone(),
                provisioning: Duration::from_secs_f64(s.fleet.provisioning_seconds),
                footers: Default::default(),
            })
            .await
            .map_err(|source| RunnerError::Backend {
                backend: "emulated".into(),
                source,
            })?;
            Ok(Arc::new(b))
        }
    }
}

/// Loads, starts, runs and tears down.
pub async fn run_file(
    path: &Path,
    manifests: Option<&Path>,
    kind: BackendKind,
    opts: RunOptions,
) -> Result<RunReport, RunnerError> {
    let s = Arc::new(load(path, manifests)?);
    let backend = start_backend(kind, &s).await?;
    Ok(engine::run(s, backend, opts).await)
}
