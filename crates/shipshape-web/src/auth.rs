//! Who may change state: the operator token (`Authorization: Bearer`), checked in constant time,
//! and the same-origin rule for browsers.

use axum::http::{HeaderMap, StatusCode, header};

use crate::error::ApiError;
use crate::state::AppState;

/// Constant-time string comparison.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// May this state-changing request proceed? A cross-origin browser request is refused (403), a
/// missing or wrong operator token too (401).
pub(crate) fn check_post(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        let origin = origin.to_str().unwrap_or_default();
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest).trim_end_matches('/');
        if origin_host.is_empty() || origin_host != host {
            return Err(ApiError::new(StatusCode::FORBIDDEN, format!("cross-origin request from `{origin}` refused")));
        }
    }
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|given| same(given, &state.token)) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong operator token: send `Authorization: Bearer <token>` (the token `shipshape serve` printed at start, or the one in its --token-file)",
        ))
    }
}
