//! The GKE backend without Google Cloud: every gcloud call answered from outputs in the shape gcloud
//! prints them, recorded in order. Proves the commands and flags, the translation of run-suffixed
//! names back to the procedure's, leak detection after teardown, the published clean-up defect,
//! and `meshmig gc`.

mod common;
mod creation;
mod failures;
mod gc;
mod teardown;
