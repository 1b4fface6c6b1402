//! Scenario files: the procedure under test as data, validated before anything starts.
//!
//! A scenario is a YAML file in `scenarios/`. It names the clusters of the migration, the test
//! domain, and the steps of the procedure in order; each step has at most one action (what the
//! procedure does) and the checks that prove it happened. A scenario may build on another one
//! (`base:`) and replace some of its steps by id, as `published-cleanup.yaml` does with step H.
//!
//! Every problem found here is reported with the file, line and column it comes from, and the
//! binary exits 2 for it, before any cluster is created.

mod discover;
mod load;
mod model;
mod validate;

use std::path::{Path, PathBuf};

use crate::manifest;
use crate::yaml::Location;

pub use discover::{discover, trial_name};
pub use load::{load, load_bytes, MAX_SCENARIO_BYTES};
pub use model::{
    Action, Check, ClusterSpec, ContinuousLoad, DnsSpec, Expectation, ExpectedOutcome, Fault,
    FleetSpec, FooterVariant, Replacement, Scenario, ScenarioFile, ServiceRef, Step,
};
pub use validate::{
    cluster_name_problem, substitute, url_problem, variables_in, MAX_CLUSTER_NAME, MAX_TTL,
    MAX_WAIT_SECONDS, MAX_WAIT_TTL,
};

/// Errors met while loading and validating a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario file could not be read.
    #[error("reading scenario {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not describe a scenario (syntax, unknown field, wrong type).
    #[error("{at}: invalid scenario: {message}")]
    Parse {
        /// Where.
        at: Location,
        /// What the parser said.
        message: String,
    },
    /// The scenario parses but does not make sense (unknown cluster, undefined variable...).
    #[error("{at}: invalid scenario: {message}")]
    Invalid {
        /// Where.
        at: Location,
        /// What is wrong.
        message: String,
    },
    /// A manifest the scenario applies is missing or invalid.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
}

impl ScenarioError {
    /// The location of the problem, where there is one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ScenarioError::Parse { at, .. } | ScenarioError::Invalid { at, .. } => Some(at),
            ScenarioError::Manifest(e) => e.location(),
            ScenarioError::Read { .. } => None,
        }
    }
}

/// Where `needle` first occurs in the file at `file` (line 1 when absent or unreadable).
fn locate_in_file(file: &Path, needle: &str) -> Location {
    locate(
        file,
        &std::fs::read_to_string(file).unwrap_or_default(),
        needle,
    )
}

/// Where `needle` first occurs in `text`, as a location in `file` (line 1 when absent).
pub(crate) fn locate(file: &Path, text: &str, needle: &str) -> Location {
    let (line, column) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
        .unwrap_or((1, 1));
    Location {
        file: file.to_path_buf(),
        line,
        column,
    }
}
