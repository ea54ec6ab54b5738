//! The release registry, `data/monitoring/releases/` (the story's layout): one record per release
//! deployed, `active_release.yaml` (the story's `ReleaseInfo`), and `history.yaml`, every deploy,
//! rollback and failure with who, when and why. Written atomically by the deploy engine; read by
//! `status`, `history`, the monitor and the dashboard.
//!
//! [`register_release`] is the story's `MonitoringService.register_release`: it makes a release the
//! active one and starts its heightened-monitoring window; [`get_active_release`] returns the story's
//! `ReleaseInfo`, with `heightened_monitoring_active` judged against the clock, so the switch back to
//! normal monitoring after 48 hours needs no one to flip it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clock::Time;
use crate::error::{Error, Result};
use crate::manifest::ReleaseId;
use crate::paths::RelPath;
use crate::workspace::Workspace;

/// Where the registry lives, relative to the workspace.
pub const REGISTRY_DIR: &str = "data/monitoring/releases";

/// The story's `ReleaseInfo`, plus who deployed it and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseInfo {
    /// The release.
    pub release_id: ReleaseId,
    /// When it became active (deployed or rolled back to).
    pub deployment_timestamp: Time,
    /// Its manifest.
    pub manifest_path: RelPath,
    /// Whether heightened monitoring is on (as of when this was read).
    pub heightened_monitoring_active: bool,
    /// When heightened monitoring ends.
    pub heightened_monitoring_end: Time,
    /// How long it lasts.
    pub heightened_hours: u32,
    /// Who deployed.
    pub deployer: String,
    /// The environment.
    pub environment: String,
    /// `deploy` or `rollback`: how it became active.
    pub activated_by: String,
}

impl ReleaseInfo {
    /// The story's `is_in_heightened_period`.
    pub fn is_in_heightened_period(&self, now: Time) -> bool {
        now < self.heightened_monitoring_end
    }
}

/// One entry of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// When.
    pub at: Time,
    /// `deploy`, `rollback`, `deploy_failed` (post-deploy check failed, rolled back), `recovered`.
    pub action: String,
    /// The release made active (or attempted).
    pub release_id: ReleaseId,
    /// The release it replaced.
    pub previous_release_id: Option<ReleaseId>,
    /// Who.
    pub by: String,
    /// Why (rollbacks, failures).
    pub reason: Option<String>,
    /// The journal transaction.
    pub transaction: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct History {
    entries: Vec<HistoryEntry>,
}

fn dir(workspace: &Workspace) -> PathBuf {
    workspace.root.join(REGISTRY_DIR)
}

/// `active_release.yaml`.
pub fn active_path(workspace: &Workspace) -> PathBuf {
    dir(workspace).join("active_release.yaml")
}

fn history_path(workspace: &Workspace) -> PathBuf {
    dir(workspace).join("history.yaml")
}

fn write_yaml<T: Serialize>(path: &Path, header: &str, value: &T) -> Result<()> {
    if let Some(parent) = path.parent() {
        crate::atomic::create_dir_all_durable(parent)?;
    }
    crate::atomic::write_atomic(path, format!("{header}\n{}", crate::yaml::to_string(value)?).as_bytes())
}

/// The story's `register_release`: make `release_id` active from `now`, heightened for `heightened_hours`.
#[allow(clippy::too_many_arguments)]
pub fn register_release(
    workspace: &Workspace,
    release_id: &ReleaseId,
    manifest_path: &RelPath,
    heightened_hours: u32,
    deployer: &str,
    environment: &str,
    activated_by: &str,
    now: Time,
) -> Result<ReleaseInfo> {
    let info = ReleaseInfo {
        release_id: release_id.clone(),
        deployment_timestamp: now,
        manifest_path: manifest_path.clone(),
        heightened_monitoring_active: true,
        heightened_monitoring_end: now.plus(jiff::SignedDuration::from_hours(i64::from(heightened_hours))),
        heightened_hours,
        deployer: deployer.to_string(),
        environment: environment.to_string(),
        activated_by: activated_by.to_string(),
    };
    write_yaml(
        &dir(workspace).join(format!("{release_id}.yaml")),
        "# A release's registration (latest activation). Written by shipshape.",
        &info,
    )?;
    write_yaml(&active_path(workspace), "# The active release. Written by shipshape deploy / rollback.", &info)?;
    Ok(info)
}

/// The story's `get_active_release`, with the heightened flag judged at `now`.
pub fn get_active_release(workspace: &Workspace, now: Time) -> Result<Option<ReleaseInfo>> {
    let path = active_path(workspace);
    if !path.exists() {
        return Ok(None);
    }
    let (mut info, _): (ReleaseInfo, Vec<u8>) = crate::yaml::read(&path)?;
    info.heightened_monitoring_active = info.is_in_heightened_period(now);
    Ok(Some(info))
}

/// Clear the active release (a rollback past the first release leaves nothing deployed).
pub fn clear_active(workspace: &Workspace) -> Result<()> {
    let path = active_path(workspace);
    match std::fs::remove_file(&path) {
        Ok(()) => crate::atomic::sync_dir(&dir(workspace)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { path, action: "removing", source: e }),
    }
}

/// Every history entry, oldest first.
pub fn history(workspace: &Workspace) -> Result<Vec<HistoryEntry>> {
    let path = history_path(workspace);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let (history, _): (History, Vec<u8>) = crate::yaml::read(&path)?;
    Ok(history.entries)
}

/// Append to the history (idempotent per transaction and action, for recovery).
pub fn record(workspace: &Workspace, entry: HistoryEntry) -> Result<()> {
    let mut entries = history(workspace)?;
    if entries.iter().any(|e| e.transaction == entry.transaction && e.action == entry.action) {
        return Ok(());
    }
    entries.push(entry);
    write_yaml(
        &history_path(workspace),
        "# Every deploy, rollback and failure. Written by shipshape; do not edit.",
        &History { entries },
    )
}
