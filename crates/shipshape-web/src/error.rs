//! The API's one error type: every handler returns `Result<_, ApiError>`, and every error reaches
//! the client as `{"error": "...", ...}` with a status chosen from what went wrong.
//!
//! A core error maps by its kind: `Locked` → 409 (someone else is deploying), `CheckFailed` → 422
//! (the request was understood, and a verification refused it), `BadInput` → 422 (the workspace's
//! state or files refuse it; a malformed *request* is answered 400 before the core is called),
//! `Io`, `Database`, `Internal` → 500, logged on the server. The handlers' own refusals are 400
//! (malformed request), 401 (no or wrong token), 403 (cross-origin or CSRF), 404 (no such thing),
//! 409 (a state that forbids it), 413 (body too large), 503 (shutting down).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shipshape_core::ErrorKind;

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    extra: Value,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), extra: Value::Null }
    }

    /// More fields for the body (an object's fields are merged beside `error`).
    pub fn with(mut self, extra: Value) -> ApiError {
        self.extra = extra;
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the current state forbids it.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// The status it is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What it says.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<shipshape_core::Error> for ApiError {
    fn from(error: shipshape_core::Error) -> ApiError {
        let status = match error.kind() {
            ErrorKind::Locked => StatusCode::CONFLICT,
            ErrorKind::CheckFailed | ErrorKind::BadInput => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}

impl From<shipshape_monitor::error::Error> for ApiError {
    fn from(error: shipshape_monitor::error::Error) -> ApiError {
        match error {
            shipshape_monitor::error::Error::Core(error) => ApiError::from(error),
            database => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, database.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(target: "shipshape::http", status = self.status.as_u16(), error = %self.message, "request failed");
        }
        let mut body = json!({ "error": self.message });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), self.extra.as_object()) {
            body.extend(extra.clone());
        }
        (self.status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::PathBuf;

    use super::*;

    fn status_of(error: shipshape_core::Error) -> StatusCode {
        ApiError::from(error).status()
    }

    #[test]
    fn core_errors_map_by_kind() {
        let locked = shipshape_core::Error::Locked { path: PathBuf::from("release/.lock"), holder: "pid 1".into() };
        assert_eq!(status_of(locked), StatusCode::CONFLICT);
        assert_eq!(status_of(shipshape_core::Error::Check("hash mismatch".into())), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status_of(shipshape_core::Error::Usage("already active".into())), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status_of(shipshape_core::Error::Internal("bug".into())), StatusCode::INTERNAL_SERVER_ERROR);
        let database = shipshape_monitor::error::Error::Database {
            path: PathBuf::from("monitor.db"),
            action: "reading",
            cause: rusqlite_locked(),
        };
        assert_eq!(ApiError::from(database).status(), StatusCode::INTERNAL_SERVER_ERROR);
        let through_monitor = shipshape_monitor::error::Error::Core(shipshape_core::Error::Check("tampered".into()));
        assert_eq!(ApiError::from(through_monitor).status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    fn rusqlite_locked() -> shipshape_monitor::error::SqliteError {
        shipshape_monitor::error::SqliteError::InvalidQuery
    }

    #[tokio::test]
    async fn the_body_is_json_with_the_message_and_extra_fields() {
        let response =
            ApiError::bad_request("type the id").with(json!({ "expected": "release_20251012_190000" })).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body, json!({ "error": "type the id", "expected": "release_20251012_190000" }));
    }
}
