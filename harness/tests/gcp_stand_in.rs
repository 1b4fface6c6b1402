//! The GCP stand-in (`meshmig::gcp_stand_in`) against the real gcloud 528: each test starts the
//! stand-in, points every API gcloud reaches at it, runs gcloud's real commands and asserts
//! gcloud's exit code and the lines it prints. Fails (never skips) when gcloud is missing.

#[path = "gcp_stand_in/backend_commands.rs"]
mod backend_commands;
#[path = "gcp_stand_in/clusters.rs"]
mod clusters;
#[path = "gcp_stand_in/common.rs"]
mod common;
#[path = "gcp_stand_in/compute_dns.rs"]
mod compute_dns;
#[path = "gcp_stand_in/fleet.rs"]
mod fleet;
