//! The registry's files under `data/monitoring/releases/`: the active release and the history.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::infra::clock::Time;
use crate::infra::paths::RelPath;
use crate::model::ids::ReleaseId;
use crate::model::journal::Kind;

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
    /// How it became active.
    pub activated_by: Kind,
    /// The release its manifest names as previous (its predecessor in the manifest chain), recorded
    /// for people. A rollback goes to the last known good release instead, read from the history
    /// (`registry::lifecycle`): a chain predecessor may never have been approved or deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<ReleaseId>,
}

impl ReleaseInfo {
    /// The story's `is_in_heightened_period`.
    pub fn is_in_heightened_period(&self, now: Time) -> bool {
        now < self.heightened_monitoring_end
    }
}

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A release was deployed.
    Deploy,
    /// The target went back to an earlier release.
    Rollback,
    /// A deploy whose post-deploy check failed (it was rolled back at once).
    DeployFailed,
    /// The previous release restored after a failed post-deploy check.
    AutoRollback,
    /// An interrupted transaction was undone by recovery.
    Recovered,
}

impl Action {
    /// The word the history writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Rollback => "rollback",
            Action::DeployFailed => "deploy_failed",
            Action::AutoRollback => "auto_rollback",
            Action::Recovered => "recovered",
        }
    }

    /// Whether the release it names became active through it.
    pub fn activates(self) -> bool {
        matches!(self, Action::Deploy | Action::Rollback | Action::AutoRollback)
    }
}

impl From<Kind> for Action {
    fn from(kind: Kind) -> Action {
        match kind {
            Kind::Deploy => Action::Deploy,
            Kind::Rollback => Action::Rollback,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One entry of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// When it happened.
    pub at: Time,
    /// What happened.
    pub action: Action,
    /// The release made active (or attempted).
    pub release_id: ReleaseId,
    /// The release it replaced.
    pub previous_release_id: Option<ReleaseId>,
    /// Who did it (the deployer, an operator, or `shipshape` itself for automatic steps).
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
