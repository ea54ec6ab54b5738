//! Who may do what: an operator's token (`Authorization: Bearer`), named and with a role (see
//! [`crate::operators`]), and the same-origin rule for browsers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::operators::{Operator, Refusal, Role};
use crate::state::AppState;

pub(crate) use crate::operators::same;

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

/// Who sent this request, when its token names someone.
pub(crate) fn identify(state: &AppState, headers: &HeaderMap) -> Result<Operator, ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong operator token: send `Authorization: Bearer <token>` (one from `shipshape operator add NAME`, or the token `shipshape serve` printed at start or read from --token-file)",
        )
    };
    let token = bearer(headers).ok_or_else(refused)?;
    state.operators.identify(token).map_err(|refusal| match refusal {
        Refusal::Unknown => refused(),
        Refusal::Broken(message) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message),
    })
}

/// May this state-changing request proceed, and who sends it? A cross-origin browser request is
/// refused (403), a missing or unknown token too (401), a role below `needed` (403).
pub(crate) fn check_post(state: &AppState, headers: &HeaderMap, needed: Role) -> Result<Operator, ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        let origin = origin.to_str().unwrap_or_default();
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest).trim_end_matches('/');
        if origin_host.is_empty() || origin_host != host {
            return Err(ApiError::new(StatusCode::FORBIDDEN, format!("cross-origin request from `{origin}` refused")));
        }
    }
    let who = identify(state, headers)?;
    if who.role < needed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} is a {}: this needs the {} role", who.name, who.role.as_str(), needed.as_str()),
        ));
    }
    Ok(who)
}

/// `GET /api/v1/whoami`: the token's operator and role (the dashboard checks a token with it).
pub(crate) async fn whoami(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let worker = Arc::clone(&state);
    let who = crate::state::blocking(move || identify(&worker, &headers)).await??;
    Ok(axum::Json(json!({ "name": who.name, "role": who.role })))
}
