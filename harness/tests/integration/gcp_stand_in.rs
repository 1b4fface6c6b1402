//! The GCP stand-in (`meshmig::gcp_stand_in`) against the real gcloud 528: each test starts the
//! stand-in, points every API gcloud reaches at it, runs gcloud's real commands and asserts
//! gcloud's exit code and the lines it prints. Fails (never skips) when gcloud is missing.

mod backend_commands;
mod clusters;
mod common;
mod compute_dns;
mod fleet;
