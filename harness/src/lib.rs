//! meshmig: an end-to-end conformance harness for moving a live application from a cluster
//! running open-source Istio to a cluster running managed Cloud Service Mesh, by the published
//! canary-cluster procedure.
//!
//! The layout follows the data: [`scenario`] (the procedure as data, validated up front) →
//! [`engine`] (order, concurrency, teardown) → [`backend`] (emulated | kind | gke, behind one
//! trait) → [`sampler`] + [`stats`] (split verdicts) → [`report`].

pub mod backend;
pub mod checks;
pub mod dns;
pub mod engine;
pub mod fleet;
pub mod footer;
pub mod gcloud;
pub mod gcp_stand_in;
pub mod identity;
pub mod istio;
pub mod load;
pub mod manifest;
pub mod netns;
pub mod outcome;
pub mod plan;
pub mod redact;
pub mod report;
pub mod runner;
pub mod sampler;
pub mod scenario;
pub mod stats;
pub mod tools;
pub mod yaml;

// Kept at the crate's root for the paths users and tests have: the checks a backend's preflight
// makes, and the GKE rehearsal.
pub use backend::gke_rehearsal as rehearsal;
pub use backend::preflight;

/// An error and its sources, joined by ": " (each level says what was being done).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    redact::scrubbed(s)
}

/// Process exit codes.
pub mod exit {
    /// Every step passed.
    pub const PASS: i32 = 0;
    /// A step's assertion failed.
    pub const ASSERTION_FAILED: i32 = 1;
    /// The scenario, a manifest or the command line is invalid.
    pub const INVALID_INPUT: i32 = 2;
    /// The harness could not carry the run out.
    pub const INFRASTRUCTURE: i32 = 3;
}

/// Resolves when the process is asked to stop: Ctrl-C (SIGINT) or SIGTERM (what CI runners and
/// `kill` send).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
