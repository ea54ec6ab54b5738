//! Around every request: the viewer token for reads when the server is reachable beyond this
//! machine, and one structured log record per request (method, path, status, duration, operator) —
//! never a token, never a query string.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::identify;
use crate::error::ApiError;
use crate::operators::Role;
use crate::state::{AppState, ReadAccess, blocking};

/// What stays open whatever [`ReadAccess`] says: the health check, and the page's shell (HTML with
/// no data; everything it shows arrives through the API, with the token entered in it).
fn always_open(path: &str) -> bool {
    path == "/healthz" || path == "/"
}

/// The token of a read: `Authorization: Bearer`, or — for the event stream only, since a browser's
/// `EventSource` cannot send headers — an `access_token` query parameter.
fn read_token(headers: &HeaderMap, path: &str, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some(token.to_string());
    }
    if path == "/api/v1/alerts/stream" {
        return query?.split('&').find_map(|pair| pair.strip_prefix("access_token=")).map(str::to_string);
    }
    None
}

/// The middleware: the read check, then the request, then its log record.
pub(crate) async fn guard_and_log(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let token = read_token(request.headers(), &path, request.uri().query());
    let is_read = method == Method::GET || method == Method::HEAD;
    let response = if is_read && state.read_access == ReadAccess::Token && !always_open(&path) {
        match check_read(&state, request.headers().clone(), token.clone()).await {
            Ok(()) => next.run(request).await,
            Err(refused) => refused.into_response(),
        }
    } else {
        next.run(request).await
    };
    // Who: a token this server has verified (the handler or the read check just did); never the
    // token itself. An unknown token costs no second password hash here.
    let operator = token.as_deref().and_then(|t| state.operators.cached(t)).map_or_else(|| "-".to_string(), |o| o.name);
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::error!(target: "shipshape::http", %method, path, status, duration_ms, operator, "request");
    } else {
        tracing::info!(target: "shipshape::http", %method, path, status, duration_ms, operator, "request");
    }
    response
}

async fn check_read(state: &Arc<AppState>, mut headers: HeaderMap, token: Option<String>) -> Result<(), ApiError> {
    if let Some(token) = token
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        headers.insert(header::AUTHORIZATION, value);
    }
    let worker = Arc::clone(state);
    let who = blocking(move || identify(&worker, &headers)).await?.map_err(|refused| {
        if refused.status() == StatusCode::UNAUTHORIZED {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "this server is reachable beyond this machine, so reads need a token too (a viewer's: `shipshape operator add NAME --role viewer`): {}",
                    refused.message()
                ),
            )
        } else {
            refused
        }
    })?;
    debug_assert!(who.role >= Role::Viewer);
    Ok(())
}
