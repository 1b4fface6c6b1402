//! Stub.
use super::{ApiError, MeshState, Req, Shared};
use serde_json::Value;
use std::sync::Arc;
/// Resources.
#[derive(Default)]
pub(crate) struct Store {}
impl Store {
    pub fn set_mesh_state(&mut self, _m: &str, _s: MeshState) -> Option<()> {
        None
    }
    pub fn membership_names(&self) -> Vec<String> {
        vec![]
    }
}
pub(crate) fn route(_shared: &Arc<Shared>, _req: &Req<'_>) -> Option<Result<Value, ApiError>> {
    None
}
