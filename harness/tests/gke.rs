//! The GKE backend without Google Cloud: every gcloud call answered from outputs in the shape gcloud
//! prints them, recorded in order. Proves the commands and flags, the translation of run-suffixed
//! names back to the procedure's, leak detection after teardown, the published clean-up defect,
//! and `meshmig gc`.

#[path = "gke/common.rs"]
mod common;
#[path = "gke/creation.rs"]
mod creation;
#[path = "gke/failures.rs"]
mod failures;
#[path = "gke/gc.rs"]
mod gc;
#[path = "gke/teardown.rs"]
mod teardown;
