//! Google's JSON error body, as every Google API answers a failed call:
//! `{"error": {"code": 404, "message": "...", "status": "NOT_FOUND"}}` (Google's API design
//! guide, "Errors"; `google.rpc.Status` with the HTTP code).
//!
//! gcloud reads it in `googlecloudsdk/api_lib/util/exceptions.py`
//! (`HttpErrorPayload._ExtractResponseAndJsonContent`): `status_code` from the HTTP status (or
//! `error.code`), `status_message` from `error.message`, `status_description` from
//! `error.status`. GKE commands print it as `ResponseError: code={status_code},
//! message={status_message}` (`googlecloudsdk/api_lib/container/util.py`, `HTTP_ERROR_FORMAT`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One API error: the HTTP status and Google's canonical status name and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {status}: {message}")]
pub struct ApiError {
    /// HTTP status code (`error.code`).
    pub code: u16,
    /// Canonical status (`error.status`): NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT, ...
    pub status: &'static str,
    /// `error.message`, the text gcloud prints.
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: u16,
    message: &'a str,
    status: &'a str,
}

impl ApiError {
    /// 404 NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            code: 404,
            status: "NOT_FOUND",
            message: message.into(),
        }
    }

    /// 409 ALREADY_EXISTS.
    pub fn already_exists(message: impl Into<String>) -> Self {
        ApiError {
            code: 409,
            status: "ALREADY_EXISTS",
            message: message.into(),
        }
    }

    /// 400 INVALID_ARGUMENT: a request the stand-in cannot read.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        ApiError {
            code: 400,
            status: "INVALID_ARGUMENT",
            message: message.into(),
        }
    }

    /// 400 FAILED_PRECONDITION.
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        ApiError {
            code: 400,
            status: "FAILED_PRECONDITION",
            message: message.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                status: self.status,
            },
        })
        .unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &self.body())
    }
}

/// A JSON answer (axum's `json` feature is off in this crate).
pub(crate) fn json_response(code: StatusCode, v: &serde_json::Value) -> Response {
    (
        code,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json; charset=UTF-8",
        )],
        v.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_googles_error_shape() {
        let e = ApiError::not_found("Not found: projects/p/zones/z/clusters/c.");
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {"code": 404,
                "message": "Not found: projects/p/zones/z/clusters/c.", "status": "NOT_FOUND"}})
        );
    }
}
