//! What every backend declares about itself, in its own folder (`entry.rs`): its name, what it
//! can do, and how it is checked, planned, started and cleaned up after. The list of backends
//! is [`super::registry`]; nothing outside a backend's folder branches on which backend runs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::options::BackendOptions;
use super::preflight::PreflightError;
use super::{Backend, BackendError};
use meshmig_core::scenario::Scenario;

/// Why a backend could not plan or clean up.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The command line or the environment does not give what this backend needs (exit 2).
    #[error("{what}")]
    Input {
        /// What is missing or wrong, and how to give it.
        what: String,
    },
    /// The backend failed (exit 3).
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What `meshmig gc` did: a line per thing deleted or not, and the exit code.
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// What was done (`FAILED …` for what could not be), or that there was nothing to do.
    pub lines: Vec<String>,
    /// 0, or 3 when something could not be deleted (as the backend counts it).
    pub code: i32,
}

/// What a backend can do, for the runner, the command line and the conformance suite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// It runs the data plane's stand-ins, so a scenario's `inject:` faults can be injected.
    pub data_plane_faults: bool,
    /// It runs the fleet stand-in, so `fleet.fault` and `fleet.flap` can be played.
    pub fleet_faults: bool,
    /// Its clusters live in this process: `--keep` holds the process up until Ctrl-C.
    pub keep_in_process: bool,
    /// `meshmig gc` deletes what crashed runs left behind.
    pub gc: bool,
    /// Its clusters live in a network namespace the process enters before it has threads.
    pub in_namespace: bool,
    /// Two runs would share something of this machine or account (a namespace's addresses,
    /// cloud-provider-kind, a project's mesh feature): one run at a time per process.
    pub one_at_a_time: bool,
    /// It runs the real manifests (`../shared/upstream`), not the fixtures.
    pub real_manifests: bool,
    /// It binds `127.RUN.x.y` loopback addresses on the host, which only Linux routes to `lo`
    /// by default.
    pub host_loopback_range: bool,
}

/// A backend, as the registry knows it.
#[async_trait]
pub trait BackendEntry: Send + Sync {
    /// The name in `--backend`, `MESHMIG_BACKEND` and in front of its conformance trials.
    fn name(&self) -> &'static str;
    /// One line for `--help`.
    fn about(&self) -> &'static str;
    /// What it can do.
    fn capabilities(&self) -> Capabilities;
    /// Prepares this process for a run while it still has one thread (checks what the run
    /// needs, enters a network namespace, sets the environment); `opts` keeps what was
    /// prepared. A note for the user when there is one.
    fn preflight(&self, opts: &mut BackendOptions) -> Result<Option<String>, PreflightError> {
        let _ = opts;
        Ok(None)
    }
    /// The options its conformance trials run with, from the environment (`MESHMIG_*`), or why
    /// its trials cannot run here.
    fn conformance_options(&self) -> Result<BackendOptions, String> {
        Ok(BackendOptions::default())
    }
    /// `meshmig doctor`: prints what it needs, each line ok or MISSING with the fix; the exit
    /// code (0 when nothing is missing, 3 otherwise).
    async fn doctor(&self, opts: &BackendOptions) -> i32;
    /// `meshmig plan`: the commands a run would carry out, step by step.
    fn plan(&self, s: &Scenario, opts: &BackendOptions) -> Result<String, EntryError>;
    /// Starts it for a scenario.
    async fn start(
        &self,
        s: &Scenario,
        opts: &BackendOptions,
    ) -> Result<Arc<dyn Backend>, BackendError>;
    /// After a `--keep` run of a backend whose clusters live in this process
    /// ([`Capabilities::keep_in_process`]) and Ctrl-C: stops them; what was stopped.
    async fn release_kept(&self) -> Vec<String> {
        Vec::new()
    }
    /// `meshmig gc`: deletes what runs older than `older_than` left. Only for backends with
    /// [`Capabilities::gc`].
    async fn gc(
        &self,
        older_than: Duration,
        opts: &BackendOptions,
    ) -> Result<GcReport, EntryError> {
        let _ = (older_than, opts);
        Err(EntryError::Input {
            what: "gc cleans up after the gke and kind backends only".into(),
        })
    }
}

/// A doctor's exit code: 0 when nothing is missing, 3 otherwise.
pub fn doctor_exit(missing: usize) -> i32 {
    if missing == 0 {
        meshmig_core::exit::PASS
    } else {
        meshmig_core::exit::INFRASTRUCTURE
    }
}

/// A data-plane fault of `s` (`inject:`), as (where, what).
fn data_plane_fault(s: &Scenario) -> Option<(String, String)> {
    s.steps.iter().find_map(|st| {
        st.inject
            .first()
            .map(|f| (format!("step {}", st.id), f.describe()))
    })
}

/// A fault of the managed control plane in `s` (`fleet.fault`, `fleet.flap`), as (where, what).
fn fleet_fault(s: &Scenario) -> Option<(String, String)> {
    s.fleet
        .fault
        .as_ref()
        .map(|f| {
            (
                "fleet.fault".into(),
                format!("control plane stuck {}", f.state),
            )
        })
        .or_else(|| {
            s.fleet
                .flap
                .map(|_| ("fleet.flap".into(), "a flapping control plane".into()))
        })
}

impl Capabilities {
    /// The first fault of `s` a backend with these capabilities cannot inject, as (where,
    /// what): data-plane faults need the stand-ins of the emulated and kwok backends; the
    /// managed control plane's a fleet stand-in.
    pub fn unsupported_fault(&self, s: &Scenario) -> Option<(String, String)> {
        let data = (!self.data_plane_faults)
            .then(|| data_plane_fault(s))
            .flatten();
        data.or_else(|| (!self.fleet_faults).then(|| fleet_fault(s)).flatten())
    }
}
