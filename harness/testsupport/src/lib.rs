//! Test support for meshmig's tests (a dev-dependency only, so it is not part of meshmig's
//! public API): where the tests find the real upstream files and the footer samples.

use std::path::PathBuf;

fn base() -> PathBuf {
    std::env::var_os("MESHMIG_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// `../shared/SUB` beside the project (or `$MESHMIG_SHARED/SUB`); the calling test fails when
/// it is missing. The GitHub workflow fetches the upstream manifests at their pinned commits
/// and points `MESHMIG_SHARED` at them.
pub fn shared(sub: &str) -> PathBuf {
    let p = base().join(sub);
    assert!(
        p.exists(),
        "{} is missing: tests read the real upstream files there (set MESHMIG_SHARED to a folder laid out like ../shared)",
        p.display()
    );
    p
}

/// The footer samples: the real ones in `../shared/footers` when they are there, else the
/// project's own pages of the same variants in `fixtures/footers` (the GitHub workflow has
/// no `../shared`; the upstream repositories hold no rendered pages).
pub fn footers() -> PathBuf {
    let p = base().join("footers");
    if p.exists() {
        p
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/footers")
    }
}
