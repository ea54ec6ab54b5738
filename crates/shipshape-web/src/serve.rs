//! The router and the server: requests, the evaluation scheduler and the delivery loop.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};

use crate::api::{get_alerts, get_fleet, get_releases, get_status, not_found, post_evaluate};
use crate::conn::{Limits, serve_connections};
use crate::dashboard;
use crate::ingest::post_events;
use crate::metrics::get_metrics;
use crate::state::AppState;

/// Settings of one server.
pub struct Settings {
    /// Connection limits and timeouts, and the largest request body (larger gets 413).
    pub limits: Limits,
    /// How often the scheduler evaluates (default: `[monitoring] eval_interval`).
    pub eval_interval: Duration,
    /// How often undelivered notifications are retried.
    pub delivery_interval: Duration,
}

/// The router (testable without a socket).
pub fn router(state: Arc<AppState>, max_body: usize) -> Router {
    let routes = Router::new()
        .route("/api/v1/events", post(post_events))
        .route("/api/v1/evaluate", post(post_evaluate))
        .route("/api/v1/status", get(get_status))
        .route("/api/v1/releases", get(get_releases))
        .route("/api/v1/releases/{id}", get(crate::releases::get_release))
        .route("/api/v1/active", get(crate::releases::get_active))
        .route("/api/v1/alerts", get(get_alerts))
        .route("/api/v1/fleet", get(get_fleet))
        .route("/api/v1/canary", get(crate::canary::get_canary))
        .route("/api/v1/whoami", get(crate::auth::whoami))
        .route("/api/v1/metrics/{name}", get(dashboard::get_metric))
        .route("/api/v1/alerts/stream", get(dashboard::alerts_stream))
        .route("/api/v1/analytics", get(dashboard::get_analytics))
        .route("/api/v1/checks", get(dashboard::get_checks))
        .route("/api/v1/rollback", post(dashboard::post_rollback))
        .route("/", get(dashboard::page))
        .route("/healthz", get(dashboard::healthz))
        .route("/releases/{id}/manifest", get(dashboard::view_manifest))
        .route("/releases/{id}/bundle", get(dashboard::view_bundle))
        .route("/metrics", get(get_metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Arc::clone(&state));
    // Around the whole router, so the 405's `Allow` header (added as a route's answer leaves it)
    // is there to quote.
    // Outermost: the read check and the request log see every request and its final status.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::map_response(json_error_bodies))
        .layer(axum::middleware::from_fn_with_state(state, crate::access::guard_and_log))
}

/// Every error is answered as JSON, as docs/api.md promises — also the ones axum makes itself
/// (405 with its `Allow` header, a query string that does not parse, a body over the limit), whose
/// plain-text or empty bodies become `{"error": "…"}`.
async fn json_error_bodies(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let mut message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    if status == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok())
    {
        message = format!("method not allowed here; allowed: {allow}");
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Serve on `listener` until `shutdown` completes: requests (within [`Limits`]), the evaluation
/// scheduler and the delivery loop. In-flight requests finish before it returns; then one last delivery round runs.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = {
        let state = Arc::clone(&state);
        let mut stop = stop_rx.clone();
        let every = settings.eval_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        let worker = Arc::clone(&state);
                        let result = tokio::task::spawn_blocking(move || worker.evaluate_now(&mut |line| tracing::info!(target: "shipshape::monitor", "{line}"))).await;
                        if let Ok(Err(e)) = result {
                            tracing::error!(target: "shipshape::monitor", error = %e, "evaluation failed");
                        }
                        // A canary under way is judged on the same timer: abort, step up, or hold.
                        let worker = Arc::clone(&state);
                        let canary = tokio::task::spawn_blocking(move || {
                            let workspace = shipshape_core::layout::Workspace::open(&worker.root)?;
                            shipshape_monitor::rollout::evaluate(&workspace, worker.clock.now(), &shipshape_core::infra::hash::NoProgress)
                        })
                        .await;
                        match canary {
                            Ok(Ok(Some(outcome))) if outcome["outcome"] != "hold" => tracing::info!(
                                target: "shipshape::canary",
                                outcome = %outcome["outcome"].as_str().unwrap_or_default(),
                                reason = %outcome["reason"].as_str().unwrap_or_default(),
                                "canary decision"
                            ),
                            Ok(Err(e)) => tracing::error!(target: "shipshape::canary", error = %e, "canary evaluation failed"),
                            _ => {}
                        }
                        // With a fleet registry: each environment's canary, from the events here.
                        let worker = Arc::clone(&state);
                        let fleet = tokio::task::spawn_blocking(move || fleet_canaries(&worker)).await;
                        if let Ok(Err(e)) = fleet {
                            tracing::warn!(target: "shipshape::canary", error = %e, "fleet canary evaluation failed");
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };
    let delivery = {
        let state = Arc::clone(&state);
        let mut stop = stop_rx.clone();
        let every = settings.delivery_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        let worker = Arc::clone(&state);
                        let _ = tokio::task::spawn_blocking(move || worker.deliver(&mut |line| tracing::info!(target: "shipshape::notify", "{line}"))).await;
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };
    let app = router(Arc::clone(&state), settings.limits.max_body);
    let streams = Arc::clone(&state);
    let shutdown = async move {
        shutdown.await;
        // Event streams never end by themselves: end them so the graceful shutdown can finish.
        streams.stop.send_replace(true);
    };
    let result = serve_connections(listener, app, settings.limits, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    let _ = delivery.await;
    let _ = tokio::task::spawn_blocking(move || {
        state.deliver(&mut |line| tracing::info!(target: "shipshape::notify", "{line}"))
    })
    .await;
    result
}

/// Judge every environment's canary (with `[fleet] registry`) from the events in this workspace.
fn fleet_canaries(state: &AppState) -> Result<(), String> {
    let workspace = shipshape_core::layout::Workspace::open(&state.root).map_err(|e| e.to_string())?;
    let Some(fleet) = workspace.config.fleet.clone() else { return Ok(()) };
    let Some(mut registry) =
        shipshape_fleet::registry::Registry::from_config(&fleet, &workspace.root).map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    for environment in &fleet.environments {
        let env = environment.name.0.as_str();
        match shipshape_fleet::promote::canary_evaluate(&mut registry, &workspace, env, state.clock.now()) {
            Ok(Some(outcome)) if outcome["outcome"] != "hold" => tracing::info!(
                target: "shipshape::canary",
                environment = env,
                outcome = %outcome["outcome"].as_str().unwrap_or_default(),
                reason = %outcome["reason"].as_str().unwrap_or_default(),
                "fleet canary decision"
            ),
            Ok(_) => {}
            Err(e) => return Err(format!("{env}: {e}")),
        }
    }
    Ok(())
}
