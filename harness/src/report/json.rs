//! The run as JSON, for machines. Its shape is published as a JSON Schema in
//! `schema/report.schema.json` (draft 2020-12); `harness/tests/integration/report_formats.rs` validates real
//! runs against it.

use crate::outcome::RunReport;

/// The report as pretty-printed JSON, scrubbed of credentials.
pub fn render(r: &RunReport) -> String {
    let json = serde_json::to_string_pretty(r).expect("reports serialize");
    meshmig_core::redact::scrub(&json).into_owned()
}
