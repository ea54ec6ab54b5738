//! `POST /api/v1/events`: the batch is queued to the one writer (see `state`), which stores waiting
//! batches together (group commit: one fsync for all), each batch still all or nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shipshape_core::events::Format;

use crate::auth::check_post;
use crate::error::ApiError;
use crate::state::{AppState, IngestJob};

/// `POST /api/v1/events`: a batch of JSON lines (or CSV with `Content-Type: text/csv`), all or nothing.
pub(crate) async fn post_events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = check_post(&state, &headers, crate::operators::Role::Engine)?;
    state.counters.ingest_requests.fetch_add(1, Ordering::Relaxed);
    let csv =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/csv"));
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = IngestJob { body, format: if csv { Format::Csv } else { Format::JsonLines }, reply };
    let sent = state.ingest.lock().map(|sender| sender.send(job).is_ok()).unwrap_or(false);
    let result = match answer.await {
        Ok(result) if sent => result,
        _ => Err((StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down".to_string(), None)),
    };
    match result {
        Ok(report) => {
            state.counters.events_accepted.fetch_add(report.accepted, Ordering::Relaxed);
            state.counters.events_duplicate.fetch_add(report.duplicates, Ordering::Relaxed);
            tracing::debug!(
                target: "shipshape::ingest",
                operator = %who.name,
                accepted = report.accepted,
                duplicates = report.duplicates,
                "events stored"
            );
            Ok((StatusCode::OK, axum::Json(report)).into_response())
        }
        Err((status, message, line)) => {
            state.counters.ingest_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "shipshape::ingest", operator = %who.name, status = status.as_u16(), line, error = %message, "event batch refused");
            Err(ApiError::new(status, message).with(line.map_or(Value::Null, |line| json!({ "line": line }))))
        }
    }
}
