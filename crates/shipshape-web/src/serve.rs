//! The router and the server: requests, the evaluation scheduler and the delivery loop.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::api::{get_alerts, get_releases, get_status, not_found, post_evaluate};
use crate::dashboard;
use crate::ingest::post_events;
use crate::metrics::get_metrics;
use crate::state::AppState;

/// Settings of one server.
pub struct Settings {
    /// Largest request body accepted (bytes); larger gets 413.
    pub max_body: usize,
    /// How often the scheduler evaluates (default: `[monitoring] eval_interval`).
    pub eval_interval: Duration,
    /// How often undelivered notifications are retried.
    pub delivery_interval: Duration,
}

/// The router (testable without a socket).
pub fn router(state: Arc<AppState>, max_body: usize) -> Router {
    Router::new()
        .route("/api/v1/events", post(post_events))
        .route("/api/v1/evaluate", post(post_evaluate))
        .route("/api/v1/status", get(get_status))
        .route("/api/v1/releases", get(get_releases))
        .route("/api/v1/alerts", get(get_alerts))
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
        .with_state(state)
}

/// Serve on `listener` until `shutdown` completes: requests, the evaluation scheduler and the
/// delivery loop. In-flight requests finish before it returns; then one last delivery round runs.
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
                        let result = tokio::task::spawn_blocking(move || worker.evaluate_now(&mut |line| eprintln!("{line}"))).await;
                        if let Ok(Err(e)) = result {
                            eprintln!("evaluation failed: {e}");
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
                        let _ = tokio::task::spawn_blocking(move || worker.deliver(&mut |line| eprintln!("{line}"))).await;
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };
    let app = router(Arc::clone(&state), settings.max_body);
    let streams = Arc::clone(&state);
    let shutdown = async move {
        shutdown.await;
        // Event streams never end by themselves: end them so the graceful shutdown can finish.
        streams.stop.send_replace(true);
    };
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    let _ = delivery.await;
    let _ = tokio::task::spawn_blocking(move || state.deliver(&mut |line| eprintln!("{line}"))).await;
    result
}
