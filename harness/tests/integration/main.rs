//! meshmig's integration tests, as one test binary (`cargo test -p meshmig --test integration`):
//! one module per subject, so the library is linked into one test executable instead of one per
//! file. A test's name is `MODULE::FUNCTION` (`engine::teardown_runs_once_after_a_panic`), which
//! is what nextest filtersets and `cargo test -- NAME` match.
//!
//! `cargo test` runs these tests as threads of one process; a test that changes process-wide
//! state (an environment variable) runs itself in a process of its own
//! (`meshmig_testsupport::in_own_process`), and the tests on the real components in a network
//! namespace of their own (`meshmig::netns::run_test_in_own_namespace`). cargo-nextest runs every
//! test in a process of its own anyway.

mod architecture;
mod checks_fail;
mod e2e;
mod engine;
mod envoy_update;
mod fake;
mod gcloud_parser;
mod gcp_stand_in;
mod gke;
mod kind;
mod kube_mock;
mod nonroot;
mod plan_snapshots;
mod real_lb;
mod real_rehearsal;
mod real_smoke;
mod real_ssa;
mod report_formats;
mod split_cli;
mod toolchain;
