//! The dashboard: the page, read-only views of manifests and audit bundles, metric series with
//! their deploy markers, the live alert stream (Server-Sent Events), analytics, the active
//! release's checks, and the guarded rollback.

// Handlers return an HTTP response as their error: built once per request, never on a hot path.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shipshape_core::infra::hash::NoProgress;
use shipshape_core::layout::Workspace;
use shipshape_core::model::ids::ReleaseId;
use shipshape_core::{deploy, registry};

use crate::auth::{check_post, same};
use crate::error::ApiError;
use crate::state::AppState;
use crate::state::blocking;

const PAGE: &str = include_str!("../assets/dashboard.html");

/// `GET /healthz`.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

fn security_headers(response: &mut Response, script_nonce: Option<&str>) {
    let headers = response.headers_mut();
    let csp = match script_nonce {
        Some(nonce) => format!(
            "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        None => "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'".to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `GET /`: the page. All data arrives through the JSON API and is put in the page as text, never
/// as HTML, so nothing a release id, note or metric name holds can run.
pub(crate) async fn page(State(state): State<Arc<AppState>>) -> Response {
    let nonce = crate::random_hex(16).unwrap_or_else(|_| "0".repeat(32));
    let html = PAGE.replace("{{CSRF}}", &state.csrf).replace("{{NONCE}}", &nonce);
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    security_headers(&mut response, Some(&nonce));
    response
}

/// Escape text for HTML.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text_page(title: &str, sections: &[(String, String)]) -> Response {
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{}</title><style>body{{font:14px system-ui,sans-serif;margin:1rem;max-width:70rem}}pre{{background:#f5f5f5;padding:.75rem;overflow:auto;white-space:pre-wrap}}</style></head><body><p><a href=\"/\">&larr; dashboard</a></p><h1>{}</h1>",
        escape(title),
        escape(title)
    );
    for (heading, body) in sections {
        html.push_str(&format!("<h2>{}</h2><pre>{}</pre>", escape(heading), escape(body)));
    }
    html.push_str("</body></html>");
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    security_headers(&mut response, None);
    response
}

fn manifest_path(root: &std::path::Path, id: &str) -> Result<std::path::PathBuf, ApiError> {
    let id = ReleaseId::new(id).map_err(|e| ApiError::not_found(format!("not a release id: {e}")))?;
    let workspace = Workspace::open(root)?;
    let path = workspace.manifests_dir().join(format!("{id}.yaml"));
    if path.is_file() { Ok(path) } else { Err(ApiError::not_found(format!("there is no manifest for {id}"))) }
}

/// An error of the server's own reading (not the request's): 500.
fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

/// `GET /releases/{id}/manifest`: the manifest's text, read-only (only manifests, by release id).
pub(crate) async fn view_manifest(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let root = state.root.clone();
    blocking(move || -> Result<Response, ApiError> {
        let path = manifest_path(&root, &id)?;
        let text = std::fs::read_to_string(&path).map_err(internal)?;
        let approvals = std::fs::read_to_string(path.with_extension("approvals.yaml")).unwrap_or_default();
        let mut sections = vec![(format!("release/manifests/{id}.yaml"), text)];
        if !approvals.is_empty() {
            sections.push((format!("release/manifests/{id}.approvals.yaml"), approvals));
        }
        Ok(text_page(&format!("Manifest {id}"), &sections))
    })
    .await?
}

/// `GET /releases/{id}/bundle`: the audit bundle (and validation) the manifest was made from.
pub(crate) async fn view_bundle(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let root = state.root.clone();
    blocking(move || -> Result<Response, ApiError> {
        let path = manifest_path(&root, &id)?;
        let loaded = shipshape_core::pipeline::manifest::load(&path).map_err(internal)?;
        let bundle = loaded.manifest.audit_bundle.under(&root);
        let mut sections = Vec::new();
        for file in ["bundle.yaml", "validation.yaml"] {
            if let Ok(text) = std::fs::read_to_string(bundle.join(file)) {
                sections.push((format!("{}/{file}", loaded.manifest.audit_bundle), text));
            }
        }
        Ok(text_page(&format!("Audit bundle of {id}"), &sections))
    })
    .await?
}

/// `GET /api/v1/checks`: the active release's approvals (verified now, per role) and whether the
/// target holds exactly its files.
pub(crate) async fn get_checks(State(state): State<Arc<AppState>>) -> Result<axum::Json<Value>, ApiError> {
    let root = state.root.clone();
    let now = state.clock.now();
    let result = blocking(move || -> shipshape_monitor::error::Result<Value> {
        let workspace = Workspace::open(&root)?;
        let Some((info, files)) = deploy::active_files(&workspace, now)? else {
            return Ok(json!({ "active_release": null }));
        };
        let loaded = shipshape_core::pipeline::manifest::load(&info.manifest_path.under(&workspace.root))?;
        let approvals = match shipshape_core::trust::judge::verify_approvals(&workspace, &loaded, now) {
            Ok(report) => serde_json::to_value(report).unwrap_or(Value::Null),
            Err(e) => json!({ "error": e.to_string() }),
        };
        let sync = match deploy::Target::of(&workspace).and_then(|target| deploy::drift(&target, &files, false)) {
            Ok(drifted) => json!({ "in_sync": drifted.is_empty(), "drifted": drifted }),
            Err(e) => json!({ "in_sync": false, "error": e.to_string() }),
        };
        Ok(json!({ "release_id": info.release_id.to_string(), "approvals": approvals, "target": sync }))
    })
    .await?
    .map_err(internal)?;
    Ok(axum::Json(result))
}

#[derive(Deserialize)]
pub(crate) struct MetricQuery {
    release: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/metrics/{name}`: a metric's evaluations for a release (default: the active one),
/// with its heightened window and every deploy and rollback as markers.
pub(crate) async fn get_metric(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<MetricQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let worker = Arc::clone(&state);
    let result = blocking(move || -> Result<Value, ApiError> {
        let monitor = worker.monitor();
        let Some(policy) = monitor.policies.iter().find(|p| p.name == name) else {
            let names: Vec<&str> = monitor.policies.iter().map(|p| p.name.as_str()).collect();
            return Err(ApiError::not_found(format!("unknown metric `{name}`: {}", names.join(", "))));
        };
        let now = worker.clock.now();
        let active = registry::get_active_release(&monitor.workspace, now).map_err(internal)?;
        let release = query.release.or_else(|| active.as_ref().map(|a| a.release_id.to_string()));
        let points = monitor
            .db
            .series(release.as_deref().unwrap_or(""), &name, query.limit.unwrap_or(2000))
            .map_err(internal)?;
        let history = registry::history(&monitor.workspace).map_err(internal)?;
        let markers: Vec<Value> = history
            .iter()
            .filter(|e| e.action.activates() || e.action == shipshape_core::model::registry::Action::DeployFailed)
            .map(|e| json!({ "at": e.at.to_string(), "action": e.action, "release_id": e.release_id.to_string() }))
            .collect();
        let window = active.as_ref().filter(|a| Some(a.release_id.to_string()) == release).map(
            |a| json!({ "from": a.deployment_timestamp.to_string(), "to": a.heightened_monitoring_end.to_string() }),
        );
        Ok(json!({
            "metric": name,
            "strategy": policy.strategy,
            "release_id": release,
            "heightened_threshold": policy.heightened.rule.threshold,
            "normal_threshold": policy.normal.rule.threshold,
            "drop": match policy.heightened.rule.kind {
                shipshape_monitor::judge::DropKind::Relative => "relative",
                shipshape_monitor::judge::DropKind::Absolute => "absolute",
            },
            "heightened_window": window,
            "markers": markers,
            "points": points,
        }))
    })
    .await??;
    Ok(axum::Json(result))
}

/// `GET /api/v1/analytics`: deploy frequency, change failure rate, mean time to restore.
pub(crate) async fn get_analytics(State(state): State<Arc<AppState>>) -> Result<axum::Json<Value>, ApiError> {
    let root = state.root.clone();
    let now = state.clock.now();
    let result = blocking(move || -> shipshape_monitor::error::Result<Value> {
        let workspace = Workspace::open(&root)?;
        let history = registry::history(&workspace)?;
        Ok(json!({
            "30d": shipshape_core::registry::analytics::analytics(&history, now, 30),
            "90d": shipshape_core::registry::analytics::analytics(&history, now, 90),
        }))
    })
    .await?
    .map_err(internal)?;
    Ok(axum::Json(result))
}

/// `GET /api/v1/alerts/stream`: Server-Sent Events, checked twice a second. An `alerts` event
/// carries every alert that changed (JSON array of alert rows); a `release` event the active release
/// (as `GET /api/v1/active` answers it, or `null`) whenever it changes — a deploy, a rollback from any
/// process, the end of heightened monitoring. The browser's `EventSource` reconnects by itself
/// (`retry: 2000`) after a restart. Ends when the server shuts down.
pub(crate) async fn alerts_stream(
    State(state): State<Arc<AppState>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let worker = Arc::clone(&state);
    let start = blocking(move || worker.monitor().db.alerts_changed_since(i64::MAX).map(|(newest, _)| newest)).await;
    let last = match start {
        Ok(Ok(newest)) => newest,
        _ => 0,
    };
    let release = active_now(Arc::clone(&state)).await.and_then(|(tag, _)| tag);
    let root = state.root.clone();
    let canary_seen = blocking(move || crate::canary::log_end(&root)).await.unwrap_or(0);
    let stop = state.stop.subscribe();
    let hello = Event::default().event("hello").retry(Duration::from_secs(2)).data(last.to_string());
    let first = futures_util::stream::once(async move { Ok::<_, Infallible>(hello) });
    let updates = futures_util::stream::unfold(
        (state, last, release, canary_seen, stop),
        |(state, mut last, mut release, mut canary_seen, mut stop)| async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.changed() => return None,
                }
                if *stop.borrow() {
                    return None;
                }
                // A release change first: an engine reloads on it, and the alerts of the new release
                // follow. Each tick compares the fingerprint; the whole answer only when it changed.
                if let Some(tag) = active_tag(Arc::clone(&state)).await
                    && tag != release
                    && let Some((tag, body)) = active_now(Arc::clone(&state)).await
                {
                    release = tag;
                    let event = Event::default().event("release").data(body.to_string());
                    return Some((Ok(event), (state, last, release, canary_seen, stop)));
                }
                // Canary decisions (starts, steps, aborts, promotions), as they are logged.
                let root = state.root.clone();
                let seen = canary_seen;
                if let Ok((records, end)) = blocking(move || crate::canary::log_since(&root, seen)).await {
                    canary_seen = end;
                    if !records.is_empty() {
                        let event = Event::default().event("canary").data(Value::Array(records).to_string());
                        return Some((Ok(event), (state, last, release, canary_seen, stop)));
                    }
                }
                let worker = Arc::clone(&state);
                let since = last;
                let changed =
                    tokio::task::spawn_blocking(move || worker.monitor().db.alerts_changed_since(since)).await;
                if let Ok(Ok((newest, alerts))) = changed {
                    last = newest;
                    if !alerts.is_empty() {
                        let data = serde_json::to_string(&alerts).unwrap_or_else(|_| "[]".into());
                        let event = Event::default().event("alerts").id(newest.to_string()).data(data);
                        return Some((Ok(event), (state, last, release, canary_seen, stop)));
                    }
                }
            }
        },
    );
    Sse::new(futures_util::StreamExt::chain(first, updates)).keep_alive(KeepAlive::default())
}

/// The active release's fingerprint alone (`None` inside: nothing active; `None`: unreadable now).
async fn active_tag(state: Arc<AppState>) -> Option<Option<String>> {
    blocking(move || -> shipshape_core::Result<Option<String>> {
        let workspace = Workspace::open(&state.root)?;
        crate::releases::active_tag(&workspace, state.clock.now())
    })
    .await
    .ok()?
    .ok()
}

/// The active release's fingerprint (`None` when nothing is active) and its JSON (`null` then);
/// `None` altogether when it could not be read (a deploy mid-way: the next tick reads it again).
async fn active_now(state: Arc<AppState>) -> Option<(Option<String>, Value)> {
    let read = blocking(move || -> shipshape_core::Result<Option<(Value, String)>> {
        let workspace = Workspace::open(&state.root)?;
        crate::releases::active_json(&workspace, state.clock.now())
    })
    .await;
    match read {
        Ok(Ok(Some((body, tag)))) => Some((Some(tag), body)),
        Ok(Ok(None)) => Some((None, Value::Null)),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// The id of the release the rollback will restore, typed by the operator.
    release_id: String,
    /// Why (recorded in the history).
    #[serde(default)]
    note: Option<String>,
}

/// `POST /api/v1/rollback`: operator token, CSRF token (`X-CSRF-Token`), and the typed id of the
/// release it will restore; then the deploy engine's rollback.
pub(crate) async fn post_rollback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let who = check_post(&state, &headers, crate::operators::Role::Operator)?;
    let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !same(csrf, &state.csrf) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token: reload the dashboard and try again",
        ));
    }
    let request: RollbackBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"release_id\": \"...\", \"note\": \"...\"}}: {e}")))?;
    let root = state.root.clone();
    let now = state.clock.now();
    let state_for_alerts = Arc::clone(&state);
    let result = blocking(move || -> Result<Value, ApiError> {
        let workspace = Workspace::open(&root).map_err(internal)?;
        let Some(active) = registry::get_active_release(&workspace, now).map_err(internal)? else {
            return Err(ApiError::conflict("nothing is deployed: there is nothing to roll back"));
        };
        // The operator confirms by typing the id of the release to restore: the last known good
        // one by default, or any other candidate the dialog offers.
        let (default, candidates) = crate::api::rollback_choices(&workspace, &active.release_id);
        let Some(default) = default.or_else(|| candidates.first().map(|c| c["release_id"].as_str().unwrap_or("").to_string()))
        else {
            return Err(ApiError::conflict(format!(
                "no earlier release ran here: there is nothing to roll back to from {}",
                active.release_id
            )));
        };
        let typed = request.release_id.trim();
        let Some(target) = candidates
            .iter()
            .filter_map(|c| c["release_id"].as_str())
            .find(|id| *id == typed)
            .and_then(|id| shipshape_core::model::ids::ReleaseId::new(id).ok())
        else {
            return Err(ApiError::bad_request(format!(
                "type the id of the release the rollback restores, {default} (last known good) or another candidate, to confirm; nothing was changed"
            ))
            .with(json!({ "expected": default, "candidates": candidates })));
        };
        let note = request.note.filter(|n| !n.trim().is_empty());
        let reason = match note {
            Some(note) => note.chars().take(500).collect::<String>(),
            None => "rolled back from the dashboard".into(),
        };
        let rollback =
            deploy::RollbackRequest { to: Some(target.clone()), reason, by: format!("{} via dashboard", who.name), dry_run: false };
        // A rollback during a canary aborts it first: capital back to the stable tree.
        if let Some(aborted) = shipshape_core::canary::abort(&workspace, now, &format!("{} via dashboard", who.name), "the target is being rolled back")? {
            tracing::info!(target: "shipshape::canary", operator = %who.name, candidate = %aborted.candidate, "canary aborted by a rollback");
        }
        match deploy::rollback(&workspace, &rollback, now, &NoProgress, &mut |_| {}, &mut |_| Ok(true)) {
            Ok(deploy::RollbackOutcome::Done(plan)) => {
                shipshape_core::canary::follow_target(&workspace, now, &plan.to.release_id, "rolled back from the dashboard")?;
                // The left release's alerts close as `superseded` now (the next evaluation would).
                if let Err(e) = state_for_alerts.monitor().close_superseded(now) {
                    tracing::warn!(target: "shipshape::monitor", error = %e, "closing the previous release's alerts failed (the next evaluation will)");
                }
                tracing::info!(
                    target: "shipshape::deploy",
                    operator = %who.name,
                    from = %active.release_id,
                    to = %plan.to.release_id,
                    "rollback via dashboard"
                );
                Ok(json!({
                    "rolled_back_to": plan.to.release_id.to_string(),
                    "from": active.release_id.to_string(),
                    "by": who.name,
                }))
            }
            Ok(_) => Err(ApiError::conflict("the rollback was not applied")),
            // Locked → 409; a refused check or state → 422; the rest → 500 (see `ApiError`).
            Err(e) => Err(ApiError::from(e)),
        }
    })
    .await??;
    Ok(axum::Json(result))
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<script>alert('x')</script> & \""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;"
        );
    }
}
