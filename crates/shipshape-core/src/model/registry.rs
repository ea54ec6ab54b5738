//! The registry's files under `data/monitoring/releases/`: the active release and the history.

use serde::{Deserialize, Serialize};

use crate::infra::clock::Time;
use crate::infra::paths::RelPath;
use crate::model::ids::ReleaseId;

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
    /// The release its manifest names as previous: where `shipshape rollback` goes by default
    /// (recorded so a rollback can verify it while the active manifest is read; checked against it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<ReleaseId>,
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
/// The history file: every deploy, rollback and recovery, oldest first.
#[serde(deny_unknown_fields)]
pub struct History {
    /// The entries.
    pub entries: Vec<HistoryEntry>,
}
