//! From a scenario file to a finished, torn-down run: loading (exit 2 on bad input), starting
//! the chosen backend (exit 3 when it cannot start), and running the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::{self, RunOptions};
use crate::outcome::{RunObserver, RunReport};
use meshmig_backends::entry::BackendEntry;
use meshmig_backends::{Backend, BackendError};
use meshmig_core::manifest::ManifestSource;
use meshmig_core::scenario::{self, Scenario, ScenarioError};

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

impl RunnerError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunnerError::Input(_) | RunnerError::FaultsUnsupported { .. } => {
                meshmig_core::exit::INVALID_INPUT
            }
            RunnerError::Backend { .. } => meshmig_core::exit::INFRASTRUCTURE,
        }
    }
}

pub use meshmig_backends::kind::entry::kind_configs_for;
pub use meshmig_backends::options::BackendOptions;

/// Refuses a scenario with faults `backend` cannot inject, before anything starts.
pub fn check_faults(backend: &dyn BackendEntry, s: &Scenario) -> Result<(), RunnerError> {
    match backend.capabilities().unsupported_fault(s) {
        Some((at, fault)) => Err(RunnerError::FaultsUnsupported {
            scenario: s.name.clone(),
            at,
            fault,
            backend: backend.name().to_string(),
        }),
        None => Ok(()),
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

/// Starts the backend a scenario runs on, with the default options.
pub async fn start_backend(
    backend: &dyn BackendEntry,
    s: &Scenario,
) -> Result<Arc<dyn Backend>, RunnerError> {
    start_backend_with(backend, s, &BackendOptions::default()).await
}

/// Starts the backend a scenario runs on, with the real-cluster settings.
pub async fn start_backend_with(
    backend: &dyn BackendEntry,
    s: &Scenario,
    opts: &BackendOptions,
) -> Result<Arc<dyn Backend>, RunnerError> {
    backend
        .start(s, opts)
        .await
        .map_err(|source| RunnerError::Backend {
            backend: backend.name().to_string(),
            source,
        })
}

/// Loads, starts, runs and tears down, telling `observer` how the run goes.
pub async fn run_file(
    path: &Path,
    manifests: Option<&Path>,
    backend: &dyn BackendEntry,
    backend_opts: &BackendOptions,
    opts: RunOptions,
    observer: Arc<dyn RunObserver>,
) -> Result<RunReport, RunnerError> {
    let mut s = load(path, manifests)?;
    if let Some(d) = &backend_opts.domain {
        s.dns.domain = d.clone();
    }
    check_faults(backend, &s)?;
    let s = Arc::new(s);
    let backend = start_backend_with(backend, &s, backend_opts).await?;
    Ok(engine::run_observed(s, backend, opts, observer).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/faults")
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
        let b = |name| meshmig_backends::registry::lookup(name).unwrap();
        for s in [&gateway, &flap] {
            assert!(check_faults(b("emulated"), s).is_ok());
            assert!(check_faults(b("kwok"), s).is_ok());
            for cloud in ["gke", "gke-rehearsal"] {
                let e = check_faults(b(cloud), s).unwrap_err();
                assert_eq!(e.exit_code(), meshmig_core::exit::INVALID_INPUT);
            }
        }
        let e = check_faults(b("kind"), &gateway).unwrap_err();
        assert_eq!(
            e.to_string(),
            "scenario gateway-killed-during-canary: step F3 injects a fault (kill the gateway Envoys in cluster-with-csm/asm-ingress) that the kind backend cannot inject (faults need the stand-ins of the emulated and kwok backends)"
        );
        // kind has the fleet stand-in: a flapping control plane is its to play.
        assert!(check_faults(b("kind"), &flap).is_ok());
        let canary = load(&faults_dir().join("../canary-cluster.yaml"), None).unwrap();
        assert!(check_faults(b("gke"), &canary).is_ok());
    }
}
