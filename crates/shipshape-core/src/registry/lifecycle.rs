//! What became of each release, read from the history: which one is active, which ran and were
//! replaced in the normal way (`good`), which failed their post-deploy checks, which production was
//! rolled back away from — and so where a rollback goes: the **last known good** release, the newest
//! that was deployed, passed its checks and was not itself rolled back.
//!
//! Pure: [`Lifecycle::of`] folds the history (oldest first), so the rules are tested without a disk.
//! A manifest that never reached production has no status here.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::infra::clock::Time;
use crate::model::ids::ReleaseId;
use crate::model::registry::{Action, HistoryEntry};

/// What became of a release that reached production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Production serves it.
    Active,
    /// It ran, passed its post-deploy checks and was replaced by a later deploy: a rollback target.
    Good,
    /// Its deploy failed the post-deploy checks and was undone at once.
    Failed,
    /// Production was rolled back away from it (by an operator or the monitor).
    RolledBack,
}

impl ReleaseStatus {
    /// The word `history` and the API show.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Active => "active",
            ReleaseStatus::Good => "good",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::RolledBack => "rolled_back",
        }
    }
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One release's fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRecord {
    /// The release.
    pub release_id: ReleaseId,
    /// What became of it.
    pub status: ReleaseStatus,
    /// When it last became active (for a failed one: when its deploy was tried).
    pub last_active: Time,
    /// When it was first deployed (`None`: its only deploy failed its checks). Approvals of a
    /// rollback to it are judged at this time.
    #[serde(default)]
    pub first_deployed: Option<Time>,
}

/// Every release that reached production, and the active one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// Every release that reached production, by id.
    #[serde(with = "records_as_list")]
    records: BTreeMap<ReleaseId, ReleaseRecord>,
    /// The active release.
    active: Option<ReleaseId>,
}

/// The records are written as a list (each names its release).
mod records_as_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ReleaseRecord;
    use crate::model::ids::ReleaseId;

    pub fn serialize<S: Serializer>(records: &BTreeMap<ReleaseId, ReleaseRecord>, s: S) -> Result<S::Ok, S::Error> {
        records.values().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<ReleaseId, ReleaseRecord>, D::Error> {
        Ok(Vec::<ReleaseRecord>::deserialize(d)?.into_iter().map(|r| (r.release_id.clone(), r)).collect())
    }
}

impl Lifecycle {
    /// Fold the history, oldest entry first.
    pub fn of(history: &[HistoryEntry]) -> Lifecycle {
        Lifecycle::default().then(history)
    }

    /// Continue from this state (a snapshot of the archived history) with later entries.
    pub fn then(mut self, history: &[HistoryEntry]) -> Lifecycle {
        let life = &mut self;
        for entry in history {
            match entry.action {
                Action::Deploy => {
                    if let Some(previous) = life.active.clone().filter(|p| *p != entry.release_id) {
                        life.set(&previous, ReleaseStatus::Good, None);
                    }
                    life.activate(&entry.release_id, entry.at);
                    if let Some(record) = life.records.get_mut(&entry.release_id) {
                        record.first_deployed.get_or_insert(entry.at);
                    }
                }
                Action::DeployFailed => {
                    life.set(&entry.release_id, ReleaseStatus::Failed, Some(entry.at));
                }
                Action::Rollback | Action::AutoRollback => {
                    if let Some(left) = entry.previous_release_id.as_ref().filter(|p| **p != entry.release_id) {
                        // A deploy that failed its checks stays failed; anything else was rolled back.
                        if life.records.get(left).is_none_or(|r| r.status != ReleaseStatus::Failed) {
                            life.set(left, ReleaseStatus::RolledBack, Some(entry.at));
                        }
                    }
                    life.activate(&entry.release_id, entry.at);
                }
                // An undone transaction changed nothing: the release it names is (still) active.
                Action::Recovered => {
                    if life.active.as_ref() != Some(&entry.release_id) && life.records.contains_key(&entry.release_id) {
                        life.activate(&entry.release_id, entry.at);
                    }
                }
            }
        }
        self
    }

    fn set(&mut self, release: &ReleaseId, status: ReleaseStatus, at: Option<Time>) {
        match self.records.get_mut(release) {
            Some(record) => record.status = status,
            None => {
                if let Some(at) = at {
                    self.records.insert(
                        release.clone(),
                        ReleaseRecord { release_id: release.clone(), status, last_active: at, first_deployed: None },
                    );
                }
            }
        }
        if self.active.as_ref() == Some(release) && status != ReleaseStatus::Active {
            self.active = None;
        }
    }

    fn activate(&mut self, release: &ReleaseId, at: Time) {
        let first_deployed = self.records.get(release).and_then(|r| r.first_deployed);
        self.records.insert(
            release.clone(),
            ReleaseRecord {
                release_id: release.clone(),
                status: ReleaseStatus::Active,
                last_active: at,
                first_deployed,
            },
        );
        self.active = Some(release.clone());
    }

    /// When `release` was first deployed (`None`: never, as far as the history tells).
    pub fn first_deployed(&self, release: &ReleaseId) -> Option<Time> {
        self.records.get(release).and_then(|r| r.first_deployed)
    }

    /// The record of `release`.
    pub fn record(&self, release: &ReleaseId) -> Option<&ReleaseRecord> {
        self.records.get(release)
    }

    /// The active release, as the history tells it.
    pub fn active(&self) -> Option<&ReleaseId> {
        self.active.as_ref()
    }

    /// What became of `release` (`None`: it never reached production).
    pub fn status(&self, release: &ReleaseId) -> Option<ReleaseStatus> {
        self.records.get(release).map(|r| r.status)
    }

    /// Every release that reached production, the most recently active first.
    pub fn releases(&self) -> Vec<&ReleaseRecord> {
        let mut all: Vec<&ReleaseRecord> = self.records.values().collect();
        all.sort_by(|a, b| b.last_active.cmp(&a.last_active).then_with(|| b.release_id.cmp(&a.release_id)));
        all
    }

    /// Where a rollback from `active` may go, the default first: releases that ran in production and
    /// are not `active` — `good` ones newest first, then the `rolled_back` ones (an operator may
    /// name one with `--to`, knowing why it was left). Failed deploys never ran: they are not here.
    pub fn rollback_candidates(&self, active: Option<&ReleaseId>) -> Vec<&ReleaseRecord> {
        let mut candidates: Vec<&ReleaseRecord> = self
            .releases()
            .into_iter()
            .filter(|r| Some(&r.release_id) != active)
            .filter(|r| matches!(r.status, ReleaseStatus::Good | ReleaseStatus::RolledBack))
            .collect();
        candidates.sort_by_key(|r| r.status != ReleaseStatus::Good);
        candidates
    }

    /// The last known good release: the newest that ran, passed its checks and was not rolled back
    /// (`None` after a first deploy, or when every earlier one failed or was rolled back).
    pub fn last_known_good(&self, active: Option<&ReleaseId>) -> Option<&ReleaseId> {
        self.rollback_candidates(active).into_iter().find(|r| r.status == ReleaseStatus::Good).map(|r| &r.release_id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(n: u32) -> ReleaseId {
        ReleaseId::new(&format!("release_20251012_{n:06}")).unwrap()
    }

    fn entry(minute: u32, action: Action, release: u32, previous: Option<u32>) -> HistoryEntry {
        HistoryEntry {
            at: format!("2025-10-12T10:{minute:02}:00Z").parse().unwrap(),
            action,
            release_id: id(release),
            previous_release_id: previous.map(id),
            by: "t".into(),
            reason: None,
            transaction: format!("tx_{minute}"),
        }
    }

    #[test]
    fn after_a_first_deploy_there_is_nothing_to_roll_back_to() {
        let life = Lifecycle::of(&[entry(0, Action::Deploy, 1, None)]);
        assert_eq!(life.status(&id(1)), Some(ReleaseStatus::Active));
        assert_eq!(life.last_known_good(life.active()), None);
        assert!(life.rollback_candidates(life.active()).is_empty());
    }

    #[test]
    fn the_release_that_ran_before_is_last_known_good_whatever_manifests_lie_between() {
        // 1 deployed, 2 deployed (manifests 3 and 4 made but never deployed leave no trace here).
        let life = Lifecycle::of(&[entry(0, Action::Deploy, 1, None), entry(1, Action::Deploy, 2, Some(1))]);
        assert_eq!(life.status(&id(1)), Some(ReleaseStatus::Good));
        assert_eq!(life.last_known_good(life.active()), Some(&id(1)));
        assert_eq!(life.status(&id(3)), None);
    }

    #[test]
    fn failed_and_rolled_back_releases_are_not_last_known_good() {
        let life = Lifecycle::of(&[
            entry(0, Action::Deploy, 1, None),
            entry(1, Action::Deploy, 2, Some(1)),
            entry(2, Action::DeployFailed, 3, Some(2)),
            entry(2, Action::AutoRollback, 2, Some(3)),
            entry(3, Action::Deploy, 4, Some(2)),
            entry(4, Action::Rollback, 2, Some(4)), // 4 regressed: back to 2
        ]);
        assert_eq!(life.active(), Some(&id(2)));
        assert_eq!(life.status(&id(3)), Some(ReleaseStatus::Failed));
        assert_eq!(life.status(&id(4)), Some(ReleaseStatus::RolledBack));
        assert_eq!(life.status(&id(1)), Some(ReleaseStatus::Good));
        // From 2, the last known good is 1: 4 was rolled back, 3 never ran.
        assert_eq!(life.last_known_good(life.active()), Some(&id(1)));
        let candidates: Vec<&ReleaseId> =
            life.rollback_candidates(life.active()).iter().map(|r| &r.release_id).collect();
        assert_eq!(candidates, [&id(1), &id(4)], "good first, then rolled back; never the failed one");
    }

    #[test]
    fn a_release_deployed_again_after_a_rollback_is_judged_by_its_latest_run() {
        let life = Lifecycle::of(&[
            entry(0, Action::Deploy, 1, None),
            entry(1, Action::Deploy, 2, Some(1)),
            entry(2, Action::Rollback, 1, Some(2)),
            entry(3, Action::Deploy, 2, Some(1)), // fixed upstream, deployed again
            entry(4, Action::Deploy, 3, Some(2)),
        ]);
        assert_eq!(life.status(&id(2)), Some(ReleaseStatus::Good));
        assert_eq!(life.last_known_good(life.active()), Some(&id(2)));
    }

    #[test]
    fn an_undone_transaction_leaves_the_active_release() {
        let life = Lifecycle::of(&[
            entry(0, Action::Deploy, 1, None),
            entry(1, Action::Recovered, 1, Some(2)), // a crashed deploy of 2, undone
        ]);
        assert_eq!(life.active(), Some(&id(1)));
        assert_eq!(life.status(&id(2)), None);
    }
}
