//! `GET /api/v1/canary`: the canary under way — both releases and their fractions, the comparison
//! per metric with its confidence sequence, the next decision and when it may come — the
//! allocation file, and the canary's latest log records.

use std::sync::Arc;

use axum::extract::State;
use serde_json::{Value, json};
use shipshape_core::canary::{self, Paths};
use shipshape_core::layout::Workspace;
use shipshape_monitor::rollout::{self, Decision};

use crate::error::ApiError;
use crate::state::{AppState, blocking};

/// The canary's reading as JSON (`canary: null` when none is under way).
pub(crate) fn canary_json(
    workspace: &Workspace,
    now: shipshape_core::infra::clock::Time,
) -> shipshape_monitor::error::Result<Value> {
    let paths = Paths::of(workspace)?;
    let allocation = canary::read_allocation(&paths.allocation)?;
    let log = canary::read_log(&paths)?;
    let recent: Vec<Value> = log.iter().rev().take(20).cloned().collect();
    let Some(state) = canary::read_state(&paths)? else {
        return Ok(json!({ "canary": null, "allocation": allocation, "log": recent, "log_length": log.len() }));
    };
    let (comparisons, trades) = rollout::compare(workspace, &state, now)?;
    let step_ends = state.step_started_at.unix_seconds() + state.step_after_seconds;
    let decision = match rollout::decide(&state, &comparisons, trades, now) {
        Decision::Harm(why) => json!({ "next": "abort", "why": why }),
        Decision::StepUp(why) => json!({ "next": "step_up", "why": why }),
        Decision::Hold(why) => json!({ "next": "hold", "why": why }),
    };
    Ok(json!({
        "canary": state,
        "fraction": state.fraction(),
        "candidate_trades": trades,
        "earliest_step_at": jiff::Timestamp::from_second(step_ends).ok().map(|t| t.to_string()),
        "comparisons": comparisons,
        "decision": decision,
        "allocation": allocation,
        "log": recent,
        "log_length": log.len(),
    }))
}

/// `GET /api/v1/canary`.
pub(crate) async fn get_canary(State(state): State<Arc<AppState>>) -> Result<axum::Json<Value>, ApiError> {
    let root = state.root.clone();
    let clock = Arc::clone(&state.clock);
    let value = blocking(move || -> shipshape_monitor::error::Result<Value> {
        let workspace = Workspace::open(&root)?;
        canary_json(&workspace, clock.now())
    })
    .await??;
    Ok(axum::Json(value))
}

/// Where the canary's log ends now (bytes; 0 without one): the event stream announces what is
/// appended after it.
pub(crate) fn log_end(root: &std::path::Path) -> u64 {
    std::fs::metadata(canary::log_path(root)).map_or(0, |m| m.len())
}

/// The records appended to the canary's log after byte `from`, and where they end. Only a stat
/// when nothing was appended (the stream asks twice a second); a log cut shorter starts over at
/// its end.
pub(crate) fn log_since(root: &std::path::Path, from: u64) -> (Vec<Value>, u64) {
    use std::io::{Read as _, Seek as _};
    let path = canary::log_path(root);
    let len = std::fs::metadata(&path).map_or(0, |m| m.len());
    if len <= from {
        return (Vec::new(), len);
    }
    let mut bytes = Vec::new();
    let read = std::fs::File::open(&path).and_then(|mut file| {
        file.seek(std::io::SeekFrom::Start(from))?;
        file.take(len - from).read_to_end(&mut bytes)
    });
    if read.is_err() {
        return (Vec::new(), from);
    }
    // Whole lines only: a record being appended is read on the next tick.
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let records = bytes[..complete]
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .collect();
    (records, from + complete as u64)
}
