//! Stub: filled in below.
use super::{ApiError, Req, Shared};
use serde_json::Value;
/// Resources.
#[derive(Default)]
pub(crate) struct Store {
    /// Seeded.
    pub seeded: std::collections::BTreeMap<String, Vec<Value>>,
}
pub(crate) fn route(_shared: &Shared, _req: &Req<'_>) -> Option<Result<Value, ApiError>> {
    None
}
