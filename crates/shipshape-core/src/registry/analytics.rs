//! Release analytics from the registry's history (the DORA measures a release manager is asked
//! about): deploy frequency, change failure rate and mean time to restore, over a trailing window.
//!
//! - A **deploy** is an attempt: `deploy` (went live) or `deploy_failed` (refused by its post-deploy
//!   checks and restored at once).
//! - A deploy **failed** when it was `deploy_failed`, or when the next change of the active release
//!   after it was a rollback away from it (by hand or automatic).
//! - **Time to restore** of a failed deploy is from the deploy to that rollback (zero-ish for
//!   `deploy_failed`, which restores in the same transaction).

use serde::Serialize;

use crate::infra::clock::Time;
use crate::model::registry::{Action, HistoryEntry};

/// The measures over one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analytics {
    /// Trailing window, days.
    pub days: i64,
    /// Deploy attempts in the window.
    pub deploys: u64,
    /// Of which failed.
    pub failed_deploys: u64,
    /// Rollbacks in the window (manual and automatic).
    pub rollbacks: u64,
    /// Deploys per week.
    pub deploys_per_week: f64,
    /// failed / deploys (`None` without deploys).
    pub change_failure_rate: Option<f64>,
    /// Mean seconds from a failed deploy to its restore (`None` without failures).
    pub mean_time_to_restore_seconds: Option<f64>,
}

fn is_rollback(action: Action) -> bool {
    matches!(action, Action::Rollback | Action::AutoRollback)
}

/// The measures over the `days` before `now`.
pub fn analytics(history: &[HistoryEntry], now: Time, days: i64) -> Analytics {
    let mut entries: Vec<&HistoryEntry> = history.iter().collect();
    entries.sort_by_key(|e| e.at.instant());
    let now_s = now.unix_seconds();
    let from = now_s - days * 86_400;
    let in_window = |e: &HistoryEntry| (from..=now_s).contains(&e.at.unix_seconds());
    let mut deploys = 0;
    let mut failed = 0;
    let mut restore_times = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if !in_window(entry) {
            continue;
        }
        match entry.action {
            Action::DeployFailed => {
                deploys += 1;
                failed += 1;
                // Restored in the same transaction (the `auto_rollback` entry beside it).
                let restored = entries[index + 1..]
                    .iter()
                    .find(|e| e.transaction == entry.transaction && e.action == Action::AutoRollback)
                    .map_or(0, |e| e.at.unix_seconds() - entry.at.unix_seconds());
                restore_times.push(restored.max(0) as f64);
            }
            Action::Deploy => {
                deploys += 1;
                let next = entries[index + 1..].iter().find(|e| matches!(e.action, Action::Deploy | Action::Rollback));
                if let Some(next) = next
                    && is_rollback(next.action)
                    && next.previous_release_id.as_ref() == Some(&entry.release_id)
                {
                    failed += 1;
                    restore_times.push((next.at.unix_seconds() - entry.at.unix_seconds()).max(0) as f64);
                }
            }
            _ => {}
        }
    }
    let rollbacks = entries.iter().filter(|e| in_window(e) && e.action == Action::Rollback).count() as u64;
    Analytics {
        days,
        deploys,
        failed_deploys: failed,
        rollbacks,
        deploys_per_week: deploys as f64 * 7.0 / days.max(1) as f64,
        change_failure_rate: (deploys > 0).then(|| failed as f64 / deploys as f64),
        mean_time_to_restore_seconds: (!restore_times.is_empty())
            .then(|| restore_times.iter().sum::<f64>() / restore_times.len() as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::ReleaseId;

    fn entry(at: &str, action: &str, release: &str, previous: Option<&str>, tx: &str) -> HistoryEntry {
        HistoryEntry {
            at: at.parse().unwrap(),
            action: serde_json::from_value(serde_json::Value::String(action.into())).unwrap(),
            release_id: ReleaseId::new(release).unwrap(),
            previous_release_id: previous.map(|p| ReleaseId::new(p).unwrap()),
            by: "test".into(),
            reason: None,
            transaction: tx.into(),
        }
    }

    #[test]
    fn frequency_failure_rate_and_restore_time() {
        let a = "release_20251001_090000";
        let b = "release_20251005_090000";
        let c = "release_20251010_090000";
        let history = vec![
            entry("2025-10-01T09:00:00Z", "deploy", a, None, "t1"),
            entry("2025-10-05T09:00:00Z", "deploy", b, Some(a), "t2"),
            // b regressed: rolled back two hours later.
            entry("2025-10-05T11:00:00Z", "rollback", a, Some(b), "t3"),
            entry("2025-10-10T09:00:00Z", "deploy_failed", c, Some(a), "t4"),
            entry("2025-10-10T09:00:30Z", "auto_rollback", a, Some(c), "t4"),
            entry("2025-10-12T09:00:00Z", "deploy", c, Some(a), "t5"),
        ];
        let now: Time = "2025-10-14T00:00:00Z".parse().unwrap();
        let month = analytics(&history, now, 30);
        assert_eq!((month.deploys, month.failed_deploys, month.rollbacks), (4, 2, 1));
        assert_eq!(month.change_failure_rate, Some(0.5));
        assert_eq!(month.mean_time_to_restore_seconds, Some((7200.0 + 30.0) / 2.0));
        assert!((month.deploys_per_week - 4.0 * 7.0 / 30.0).abs() < 1e-12);
        // A window that only holds the last deploy.
        let recent = analytics(&history, now, 3);
        assert_eq!((recent.deploys, recent.failed_deploys), (1, 0));
        assert_eq!(recent.change_failure_rate, Some(0.0));
        assert_eq!(recent.mean_time_to_restore_seconds, None);
        assert_eq!(analytics(&[], now, 30).change_failure_rate, None);
    }
}
