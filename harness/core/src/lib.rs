//! meshmig-core: what every layer of meshmig shares and no backend owns.
//!
//! - the inputs: [`scenario`] (the procedure as data, validated up front), [`manifest`] and
//!   [`yaml`] (objects read with their file:line:column), [`plan`];
//! - the vocabulary of the components the procedure drives: [`istio`], [`fleet`], [`gcloud`],
//!   [`dns`], [`footer`] and [`identity`] (which frontend served a page);
//! - the stand-ins several backends run: [`gcp_stand_in`] (Google's APIs for the real gcloud);
//! - the real tools' builds and the run's network namespace: [`tools`], [`netns`];
//! - [`redact`], and the error chain and exit codes every layer reports with.
//!
//! It knows no backend, check or engine: `meshmig-backends` builds on it, and `meshmig` on both
//! (docs/architecture.md).

pub mod dns;
pub mod fleet;
pub mod footer;
pub mod gcloud;
pub mod gcp_stand_in;
pub mod identity;
pub mod istio;
pub mod manifest;
pub mod netns;
pub mod plan;
pub mod redact;
pub mod scenario;
pub mod tools;
pub mod yaml;

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
