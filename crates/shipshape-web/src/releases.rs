//! What a trading engine reads: the active release with its artifact hashes (`GET /api/v1/active`,
//! cached by ETag), one release by id (`GET /api/v1/releases/{id}`), and the fingerprint the event
//! stream watches to announce a deploy or rollback.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shipshape_core::infra::clock::Time;
use shipshape_core::infra::hash::Digest;
use shipshape_core::layout::Workspace;
use shipshape_core::model::ids::ReleaseId;
use shipshape_core::model::manifest::LoadedManifest;
use shipshape_core::model::registry::ReleaseInfo;
use shipshape_core::registry;

use crate::error::ApiError;
use crate::state::{AppState, blocking};

/// The artifacts of a manifest, flat: `kind`, `path`, `sha256` (hex), `size`, `version`.
fn artifacts(loaded: &LoadedManifest) -> Vec<Value> {
    let mut out = Vec::new();
    for (kind, list) in &loaded.manifest.artifacts.0 {
        for artifact in list {
            out.push(json!({
                "kind": kind,
                "path": artifact.path.to_string(),
                "sha256": artifact.hash.hex(),
                "size": artifact.size,
                "version": artifact.version,
            }));
        }
    }
    out
}

/// One release as the client reads it, from its manifest (`None` when there is no manifest).
fn release_json(workspace: &Workspace, id: &ReleaseId) -> shipshape_core::Result<Option<Value>> {
    let path = workspace.manifests_dir().join(format!("{id}.yaml"));
    if !path.is_file() {
        return Ok(None);
    }
    let loaded = shipshape_core::pipeline::manifest::load(&path)?;
    let manifest = &loaded.manifest;
    let history: Vec<Value> = registry::history(workspace)?
        .into_iter()
        .filter(|h| &h.release_id == id)
        .map(|h| {
            json!({
                "at": h.at.instant().to_string(),
                "action": h.action.as_str(),
                "previous_release_id": h.previous_release_id.map(|p| p.to_string()),
                "by": h.by,
                "reason": h.reason,
            })
        })
        .collect();
    Ok(Some(json!({
        "release_id": id.to_string(),
        "release_type": manifest.release_type,
        "sequence": manifest.sequence,
        "created": manifest.created.instant().to_string(),
        "expires": manifest.expires.instant().to_string(),
        "environment": manifest.deployment.environment.to_string(),
        "prepared_by": manifest.deployment.prepared_by,
        "manifest_sha256": loaded.digest.hex(),
        "artifacts": artifacts(&loaded),
        "history": history,
    })))
}

/// What identifies "the active release as it is now" for caches and the event stream: the release,
/// when it became active, and the monitoring mode (which flips once, when heightened monitoring ends).
pub(crate) fn fingerprint(info: &ReleaseInfo) -> String {
    let basis =
        format!("{}|{}|{}", info.release_id, info.deployment_timestamp.instant(), info.heightened_monitoring_active);
    Digest::of(basis.as_bytes()).hex()[..32].to_string()
}

/// The active release's fingerprint alone (`None` when nothing is deployed): what the event
/// stream compares each tick before building the whole answer.
pub(crate) fn active_tag(workspace: &Workspace, now: Time) -> shipshape_core::Result<Option<String>> {
    Ok(registry::get_active_release(workspace, now)?.map(|info| fingerprint(&info)))
}

/// The active release with its artifacts (`None` when nothing is deployed).
pub(crate) fn active_json(workspace: &Workspace, now: Time) -> shipshape_core::Result<Option<(Value, String)>> {
    let Some(info) = registry::get_active_release(workspace, now)? else {
        return Ok(None);
    };
    let path = info.manifest_path.under(&workspace.root);
    let loaded = shipshape_core::pipeline::manifest::load(&path)?;
    // The history entry that made it active: who, and why (a rollback's note).
    let change = registry::history(workspace)?
        .into_iter()
        .rev()
        .find(|h| h.release_id == info.release_id && h.action.activates())
        .map(|h| json!({ "at": h.at.instant().to_string(), "action": h.action.as_str(), "by": h.by, "reason": h.reason }));
    let body = json!({
        "release_id": info.release_id.to_string(),
        "release_type": loaded.manifest.release_type,
        "sequence": loaded.manifest.sequence,
        "environment": info.environment,
        "deployed_at": info.deployment_timestamp.instant().to_string(),
        "deployer": info.deployer,
        "activated_by": info.activated_by,
        "mode": if info.heightened_monitoring_active { "heightened" } else { "normal" },
        "heightened_until": info.heightened_monitoring_end.instant().to_string(),
        "heightened_remaining_seconds": info.heightened_monitoring_end.since(&now).as_secs().max(0),
        "manifest_sha256": loaded.digest.hex(),
        "artifacts": artifacts(&loaded),
        "change": change,
    });
    Ok(Some((body, fingerprint(&info))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActiveQuery {
    env: Option<String>,
}

/// `GET /api/v1/active?env=`: the active release, `ETag`-cached: `If-None-Match` with the current
/// tag answers `304` without a body; `null` when nothing is deployed. `env`, when given, must be the
/// environment this server watches (`404` otherwise).
pub(crate) async fn get_active(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ActiveQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let root = state.root.clone();
    let clock = Arc::clone(&state.clock);
    let found = blocking(move || -> shipshape_core::Result<Option<(Value, String)>> {
        let workspace = Workspace::open(&root)?;
        active_json(&workspace, clock.now())
    })
    .await??;
    // Nothing deployed yet answers `null` (cached like any other answer: an engine polls it too).
    let (body, tag) = found.unwrap_or_else(|| (Value::Null, "none".to_string()));
    if let Some(env) = &query.env
        && !body.is_null()
        && body["environment"].as_str() != Some(env.as_str())
    {
        return Err(ApiError::not_found(format!(
            "this server watches environment `{}`, not `{env}` (ask the server of `{env}`, or see `GET /api/v1/fleet`)",
            body["environment"].as_str().unwrap_or_default()
        )));
    }
    let etag = format!("\"{tag}\"");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let etag_value =
        HeaderValue::from_str(&etag).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    Ok(([(header::ETAG, etag_value), (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))], axum::Json(body))
        .into_response())
}

/// `GET /api/v1/releases/{id}`: one release from its manifest: type, sequence, environment,
/// artifacts with hashes, and its own history (deploys, rollbacks, failures).
pub(crate) async fn get_release(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let id = ReleaseId::new(&id).map_err(|e| ApiError::not_found(format!("not a release id: {e}")))?;
    let root = state.root.clone();
    let shown = id.clone();
    let found = blocking(move || -> shipshape_core::Result<Option<Value>> {
        let workspace = Workspace::open(&root)?;
        release_json(&workspace, &id)
    })
    .await??;
    found.map(axum::Json).ok_or_else(|| ApiError::not_found(format!("there is no manifest for {shown}")))
}
