//! The JSON API's read endpoints and `POST /api/v1/evaluate`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shipshape_core::layout::Workspace;
use shipshape_core::registry;

use crate::auth::check_post;
use crate::error::ApiError;
use crate::state::{AppState, blocking};

/// `POST /api/v1/evaluate`: one pass now.
pub(crate) async fn post_evaluate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let who = check_post(&state, &headers, crate::operators::Role::Operator)?;
    let worker = Arc::clone(&state);
    tracing::info!(target: "shipshape::monitor", operator = %who.name, "evaluation requested");
    Ok(axum::Json(
        blocking(move || worker.evaluate_now(&mut |line| tracing::info!(target: "shipshape::monitor", "{line}")))
            .await??,
    ))
}

pub(crate) fn status_json(state: &AppState) -> shipshape_monitor::error::Result<Value> {
    let monitor = state.monitor();
    let now = state.clock.now();
    let active = registry::get_active_release(&monitor.workspace, now)?;
    let (pending, failing) = monitor.db.outbox_backlog()?;
    let firing = monitor.db.alerts(Some("firing"), active.as_ref().map(|a| a.release_id.as_str()), 1000)?;
    // An automatic rollback of the active release that was tried and has not (yet) succeeded.
    let auto_rollback = match &active {
        Some(info) => monitor.db.auto_rollback_of(info.release_id.as_str())?.map(|(outcome, attempts, next)| {
            json!({ "outcome": outcome, "attempts": attempts, "next_attempt": next.and_then(|s| jiff::Timestamp::from_second(s).ok()).map(|t| t.to_string()) })
        }),
        None => None,
    };
    let active_json = active.as_ref().map(|info| {
        let remaining = info.heightened_monitoring_end.since(&now).as_secs().max(0);
        json!({
            "release_id": info.release_id.to_string(),
            "manifest": manifest_summary(&monitor.workspace, info),
            "deployed_at": info.deployment_timestamp.instant().to_string(),
            "deployed_ago_seconds": now.since(&info.deployment_timestamp).as_secs(),
            "mode": if info.heightened_monitoring_active { "heightened" } else { "normal" },
            "heightened_until": info.heightened_monitoring_end.instant().to_string(),
            "heightened_remaining_seconds": remaining,
            "deployer": info.deployer,
            "environment": info.environment,
        })
    });
    Ok(json!({
        "now": now.instant().to_string(),
        "active_release": active_json,
        "firing_alerts": firing.len(),
        "auto_rollback": auto_rollback,
        "last_evaluation": monitor.db.meta("last_evaluation")?.and_then(|s| s.parse::<i64>().ok())
            .and_then(|s| jiff::Timestamp::from_second(s).ok()).map(|t| t.to_string()),
        "events_stored": monitor.db.event_count()?,
        "notifications_pending": pending,
        "notifications_failing": failing,
        // The configured metrics, in configuration order (the dashboard draws one chart each).
        "metrics": monitor.policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
    }))
}

/// `GET /api/v1/status`.
pub(crate) async fn get_status(State(state): State<Arc<AppState>>) -> Result<axum::Json<Value>, ApiError> {
    let worker = Arc::clone(&state);
    Ok(axum::Json(blocking(move || status_json(&worker)).await??))
}

/// `GET /api/v1/releases`: the active release and the history.
pub(crate) async fn get_releases(State(state): State<Arc<AppState>>) -> Result<axum::Json<Value>, ApiError> {
    let root = state.root.clone();
    let clock = Arc::clone(&state.clock);
    let result = blocking(move || -> shipshape_monitor::error::Result<Value> {
        let workspace = Workspace::open(&root)?;
        let active = registry::get_active_release(&workspace, clock.now())?;
        let history = registry::history(&workspace)?;
        Ok(json!({
            "active": active.map(|a| serde_json::to_value(a).unwrap_or(Value::Null)),
            "history": serde_json::to_value(history).unwrap_or(Value::Null),
        }))
    })
    .await??;
    Ok(axum::Json(result))
}

#[derive(Deserialize)]
pub(crate) struct AlertsQuery {
    state: Option<String>,
    release: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/alerts?state=&release=&limit=`.
pub(crate) async fn get_alerts(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AlertsQuery>,
) -> Result<Response, ApiError> {
    if let Some(s) = &query.state
        && !["pending", "firing", "resolved", "cleared", "superseded"].contains(&s.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "unknown state `{s}`: pending, firing, resolved, cleared or superseded"
        )));
    }
    let worker = Arc::clone(&state);
    let result = blocking(move || {
        worker.monitor().db.alerts(
            query.state.as_deref(),
            query.release.as_deref(),
            query.limit.unwrap_or(100).min(10_000),
        )
    })
    .await??;
    Ok(axum::Json(result).into_response())
}

/// Any other path.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint: see docs/monitoring.md for the API")
}

/// What the panel needs from the active release's manifest.
pub(crate) fn manifest_summary(workspace: &Workspace, info: &shipshape_core::model::registry::ReleaseInfo) -> Value {
    match shipshape_core::pipeline::manifest::load(&info.manifest_path.under(&workspace.root)) {
        Ok(loaded) => {
            let choices = rollback_choices(workspace, &info.release_id);
            json!({
            "release_type": loaded.manifest.release_type,
            // Where a rollback goes by default (the last known good release) and where it may go.
            "rollback_target": choices.0,
            "rollback_candidates": choices.1,
            "manifest_url": format!("/releases/{}/manifest", info.release_id),
            "bundle_url": format!("/releases/{}/bundle", info.release_id),
            })
        }
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// The last known good release from `active`, and every release a rollback may name (default
/// first), from the history — each with what the rollback changes (`shipshape diff` from the active
/// release to it: counts, a one-line summary and the artifacts, without text diffs).
pub(crate) fn rollback_choices(
    workspace: &Workspace,
    active: &shipshape_core::model::ids::ReleaseId,
) -> (Option<String>, Vec<Value>) {
    /// Candidates beyond this many are listed without their diff (each costs two manifest reads).
    const WITH_DIFF: usize = 20;
    let Ok(life) = shipshape_core::registry::lifecycle(workspace) else { return (None, Vec::new()) };
    let default = life.last_known_good(Some(active)).map(|id| id.to_string());
    let load = |id: &shipshape_core::model::ids::ReleaseId| {
        shipshape_core::pipeline::manifest::load(&workspace.manifests_dir().join(format!("{id}.yaml"))).ok()
    };
    let from = load(active);
    let candidates = life
        .rollback_candidates(Some(active))
        .into_iter()
        .enumerate()
        .map(|(index, c)| {
            let diff = from
                .as_ref()
                .filter(|_| index < WITH_DIFF)
                .zip(load(&c.release_id))
                .and_then(|(from, to)| shipshape_core::pipeline::diff::diff(workspace, from, &to, false).ok())
                .map(|d| {
                    use shipshape_core::pipeline::diff::Change;
                    json!({
                        "summary": d.summary(),
                        "added": d.count(Change::Added),
                        "changed": d.count(Change::Changed),
                        "removed": d.count(Change::Removed),
                        "unchanged": d.unchanged,
                        "artifacts": d.artifacts.iter().map(|a| json!({
                            "path": a.path.to_string(),
                            "change": a.change,
                            "old_size": a.old.map(|v| v.size),
                            "new_size": a.new.map(|v| v.size),
                        })).collect::<Vec<_>>(),
                    })
                });
            json!({
                "release_id": c.release_id.to_string(),
                "status": c.status,
                "last_active": c.last_active,
                "diff": diff,
            })
        })
        .collect();
    (default, candidates)
}

/// `GET /api/v1/fleet`: every environment's desired release and every host's observed state, when
/// the workspace has a `[fleet] registry`. The registry being down is an answer (`up: false` and
/// the error), not a failed request, so the dashboard can say so.
pub(crate) async fn get_fleet(State(state): State<Arc<AppState>>) -> Result<axum::Json<Value>, ApiError> {
    let worker = Arc::clone(&state);
    let result = blocking(move || -> shipshape_monitor::error::Result<Value> {
        let workspace = Workspace::open(&worker.root)?;
        let Some(fleet) = workspace.config.fleet.clone().filter(|f| f.registry.is_some()) else {
            return Ok(json!({ "configured": false, "environments": [] }));
        };
        let now = worker.clock.now().unix_seconds();
        let answer = shipshape_fleet::registry::Registry::from_config(&fleet, &workspace.root).and_then(|registry| {
            let Some(mut registry) = registry else { return Ok((String::new(), Vec::new())) };
            let views = shipshape_fleet::overview::overview(&mut registry, &fleet, &[], now, 10)?;
            Ok((registry.display(), views))
        });
        let heartbeat_timeout = fleet.heartbeat_timeout.0.seconds();
        Ok(match answer {
            Ok((registry, environments)) => json!({
                "configured": true, "up": true, "registry": registry, "now": now,
                "heartbeat_timeout_seconds": heartbeat_timeout, "environments": environments,
            }),
            Err(e) => json!({
                "configured": true, "up": false, "error": e.to_string(), "now": now,
                "heartbeat_timeout_seconds": heartbeat_timeout, "environments": [],
            }),
        })
    })
    .await??;
    Ok(axum::Json(result))
}
