//! `POST /api/v1/events` and the one writer behind it: batches wait in a queue and are stored
//! together (group commit: one fsync for all), each batch still all or nothing.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shipshape_core::Error;
use shipshape_core::events::Format;
use shipshape_core::infra::clock::Clock;
use shipshape_monitor::monitor::{IngestOptions, IngestReport, Monitor, Timeline};

use crate::auth::check_post;
use crate::error::ApiError;
use crate::state::{AppState, lock};

/// A reply to an event batch: the report, or (HTTP status, message, line).
pub(crate) type IngestReply = Result<IngestReport, (StatusCode, String, Option<usize>)>;

/// One event batch waiting for the writer.
pub(crate) struct IngestJob {
    body: Bytes,
    format: Format,
    reply: tokio::sync::oneshot::Sender<IngestReply>,
}

/// The one writer: takes every batch waiting and stores them in one transaction (group commit: one
/// fsync for all), each batch still all or nothing; then answers each. Ends when the server does.
pub(crate) fn writer(monitor: &Mutex<Monitor>, clock: &dyn Clock, jobs: &std::sync::mpsc::Receiver<IngestJob>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < 64 {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let batches: Vec<(&[u8], Option<Format>)> = group.iter().map(|j| (&j.body[..], Some(j.format))).collect();
        let outcome = {
            let mut monitor = lock(monitor);
            Timeline::of(&monitor.workspace).and_then(|timeline| {
                let options = IngestOptions {
                    format: None,
                    skip_bad: false,
                    timeline: &timeline,
                    now: clock.now(),
                    check_skew: true,
                };
                monitor.ingest_batches(&batches, &options)
            })
        };
        drop(batches);
        match outcome {
            Ok(results) => {
                for (job, result) in group.into_iter().zip(results) {
                    let reply = result.map_err(|e| match e {
                        Error::Parse { line, message, .. } => (
                            StatusCode::BAD_REQUEST,
                            format!("line {line}: {message}; nothing from this batch was stored"),
                            Some(line),
                        ),
                        other => (StatusCode::BAD_REQUEST, other.to_string(), None),
                    });
                    let _ = job.reply.send(reply);
                }
            }
            Err(e) => {
                for job in group {
                    let _ = job.reply.send(Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None)));
                }
            }
        }
    }
}

/// `POST /api/v1/events`: a batch of JSON lines (or CSV with `Content-Type: text/csv`), all or nothing.
pub(crate) async fn post_events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_post(&state, &headers)?;
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
            Ok((StatusCode::OK, axum::Json(report)).into_response())
        }
        Err((status, message, line)) => {
            state.counters.ingest_rejected.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::new(status, message).with(line.map_or(Value::Null, |line| json!({ "line": line }))))
        }
    }
}
