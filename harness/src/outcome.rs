//! What a run produces and tells as it goes: each step's record ([`StepReport`]), the run's
//! ([`RunReport`], how it ended: [`Outcome`]), and the events a run emits while it runs
//! ([`RunObserver`]). The engine makes them; the reports and the terminal printer read them,
//! without either knowing the other.

use serde::Serialize;

use crate::checks::CheckResult;
use meshmig_backends::{Output, TeardownReport};
use meshmig_core::scenario::{Scenario, Step};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Its action and checks passed.
    Passed,
    /// Its action failed as the procedure's tool fails, or a check did not hold.
    Failed,
    /// The harness could not carry it out.
    Error,
}

impl StepStatus {
    /// The mark reports print before the step (`PASS`, `FAIL`, `ERROR`).
    pub fn mark(self) -> &'static str {
        match self {
            StepStatus::Passed => "PASS",
            StepStatus::Failed => "FAIL",
            StepStatus::Error => "ERROR",
        }
    }
}

/// A step's record.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Step id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Outcome.
    pub status: StepStatus,
    /// Seconds taken.
    pub seconds: f64,
    /// Faults the scenario injected at the step's start: what was done, and to what.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub injected: Vec<Output>,
    /// The command run, and what it printed.
    pub output: Option<Output>,
    /// The action's error, if it failed.
    pub error: Option<String>,
    /// The checks.
    pub checks: Vec<CheckResult>,
}

impl StepReport {
    /// The failure's summary: the action error and the failed checks' messages.
    pub fn failure(&self) -> String {
        let mut parts: Vec<String> = self.error.iter().cloned().collect();
        parts.extend(self.checks.iter().filter(|c| !c.ok).map(|c| c.message()));
        parts.join("\n")
    }
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Every step passed.
    Passed,
    /// A step's assertion failed.
    AssertionFailed {
        /// The step.
        step: String,
    },
    /// The harness could not carry a step out.
    Infrastructure {
        /// The step.
        step: String,
        /// Why.
        message: String,
    },
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The harness panicked.
    Panicked {
        /// The panic message.
        message: String,
    },
}

impl Outcome {
    /// The run's verdict, as the reports' last line begins (`PASSED`, `FAILED at step F3`…).
    pub fn verdict(&self) -> String {
        match self {
            Outcome::Passed => "PASSED".to_string(),
            Outcome::AssertionFailed { step } => format!("FAILED at step {step}"),
            Outcome::Infrastructure { step, message } => {
                format!("INFRASTRUCTURE FAILURE at step {step}: {message}")
            }
            Outcome::Interrupted => "INTERRUPTED".to_string(),
            Outcome::Panicked { message } => format!("HARNESS PANIC: {message}"),
        }
    }

    /// The process exit code: 0 pass, 1 assertion failed, 3 infrastructure failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Passed => 0,
            Outcome::AssertionFailed { .. } => 1,
            Outcome::Infrastructure { .. } | Outcome::Interrupted | Outcome::Panicked { .. } => 3,
        }
    }
}

/// The record of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// Backend name.
    pub backend: String,
    /// Steps run.
    pub steps: Vec<StepReport>,
    /// How it ended.
    pub outcome: Outcome,
    /// What teardown did.
    pub teardown: TeardownReport,
    /// Seconds in all.
    pub seconds: f64,
    /// How fast DNS time ran (`dns.ttl_scale`: 0.02 holds a 300 s TTL for 6 s; 1 is real time).
    pub dns_ttl_scale: f64,
    /// The continuous load's record, when the scenario has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continuous_load: Option<crate::load::LoadReport>,
    /// The scenario's steps that did not run because the run stopped before them, in order.
    pub not_run: Vec<NotRun>,
    /// How many of the run's checks each kind of witness observed.
    pub witnesses: WitnessCounts,
}

/// How many checks a real component, a stand-in and the harness observed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WitnessCounts {
    /// Observed by a real component.
    pub real: usize,
    /// Observed by a stand-in.
    pub stand_in: usize,
    /// The harness's own records or reading.
    pub harness: usize,
    /// Every check of the run.
    pub total: usize,
}

impl WitnessCounts {
    /// The counts over these steps' checks.
    pub fn of(steps: &[StepReport]) -> Self {
        use meshmig_backends::witness::WitnessKind;
        let mut c = WitnessCounts::default();
        for check in steps.iter().flat_map(|s| &s.checks) {
            c.total += 1;
            match check.witness.kind {
                WitnessKind::Real => c.real += 1,
                WitnessKind::StandIn => c.stand_in += 1,
                WitnessKind::Harness => c.harness += 1,
            }
        }
        c
    }

    /// "N of M checks observed real components", as the run's last lines say it.
    pub fn sentence(&self, backend: &str) -> String {
        format!(
            "{} of {} checks observed real components on {backend} ({} a stand-in, {} the harness's own records)",
            self.real, self.total, self.stand_in, self.harness
        )
    }
}

/// A scenario step the run never reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotRun {
    /// Step id.
    pub id: String,
    /// Title.
    pub title: String,
}

/// What a run tells as it goes, in order: it starts; each step starts and finishes (the steps of
/// a concurrent group start together and are told finished in their order, once all are); the
/// continuous load's step, when the scenario has one, finishes after the last; teardown starts;
/// the run ends with its record. The engine emits these events; whatever shows the run (the
/// terminal printer, `report::Printer`) implements this trait. Every method does nothing unless
/// overridden.
pub trait RunObserver: Send + Sync {
    /// The run begins: the scenario, on the backend of this name.
    fn run_started(&self, _scenario: &Scenario, _backend: &str) {}
    /// A step begins.
    fn step_started(&self, _step: &Step) {}
    /// A step's record, once it finished.
    fn step_finished(&self, _report: &StepReport) {}
    /// Teardown begins; with `keep` it leaves what the run created.
    fn teardown_started(&self, _keep: bool) {}
    /// The run's record, after teardown.
    fn run_finished(&self, _report: &RunReport) {}
}

/// Nobody watches the run.
impl RunObserver for () {}
