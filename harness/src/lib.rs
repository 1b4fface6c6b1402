//! meshmig: an end-to-end conformance harness for moving a live application from a cluster
//! running open-source Istio to a cluster running managed Cloud Service Mesh, by the published
//! canary-cluster procedure.
//!
//! The layout follows the data: [`scenario`] (the procedure as data, validated up front) →
//! [`engine`] (order, concurrency, teardown) → [`backend`] (emulated | kwok | kind | gke |
//! gke-rehearsal, behind small traits) → [`sampler`] + [`stats`] (split verdicts) → [`report`].
//!
//! Three crates, each knowing only those under it: `meshmig-core` (the inputs and what every
//! layer shares), `meshmig-backends` (the traits, the backends, their registry) and this one
//! (engine, checks, load, sampler, stats, reports, runner), which re-exports the other two under
//! the paths below (docs/architecture.md).

pub mod checks;
pub mod engine;
pub mod load;
pub mod outcome;
pub mod report;
pub mod runner;
pub mod sampler;
pub mod stats;

// The facade, as kube re-exports kube-core, kube-client and kube-runtime: the layers below keep
// the paths users and tests have (`meshmig::backend::…`, `meshmig::scenario::…`).
pub use meshmig_backends as backend;
pub use meshmig_core::{
    dns, error_chain, exit, fleet, footer, gcloud, gcp_stand_in, identity, istio, manifest, netns,
    plan, redact, scenario, shutdown_signal, tools, yaml,
};
// Kept at the crate's root for the paths users and tests have: the checks a backend's preflight
// makes, and the GKE rehearsal.
pub use meshmig_backends::gke_rehearsal as rehearsal;
pub use meshmig_backends::preflight;
