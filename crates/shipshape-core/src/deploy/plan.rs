//! Planning a transition: which files of the target change, which stay, which go — computed from
//! what the target holds now (through the stat cache) and the two releases' file lists.
//!
//! [`diff`] is the pure heart of it (no disk: it asks a closure what each path holds now), so the
//! rules are tested without a target; [`plan`] feeds it from the target.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::DeployMode;
use crate::deploy::state::{observed, read_state};
use crate::deploy::target::Target;
use crate::error::{Error, Result};
use crate::infra::clock::Time;
use crate::infra::hash::Digest;
use crate::infra::paths::RelPath;
use crate::layout::Workspace;
use crate::model::journal::{Change, Kind, Plan, ReleaseFiles};
use crate::model::manifest::LoadedManifest;

impl ReleaseFiles {
    /// The files a manifest names.
    pub fn of(workspace: &Workspace, loaded: &LoadedManifest) -> Result<ReleaseFiles> {
        let manifest = RelPath::from_walk(&workspace.root, &loaded.path)
            .map_err(|rule| Error::invalid(&loaded.path, format!("manifest path: {rule}")))?;
        let files = loaded.manifest.artifacts.iter().map(|(_, a)| (a.path.clone(), (a.hash, a.size))).collect();
        Ok(ReleaseFiles {
            release_id: loaded.manifest.release_id.clone(),
            manifest,
            files,
            rollback_to: loaded.manifest.rollback_plan.previous_release_id.clone(),
        })
    }
}

impl Plan {
    /// Bytes the plan writes.
    pub fn bytes(&self) -> u64 {
        self.changes.iter().filter(|c| c.new.is_some()).map(|c| c.size).sum()
    }

    /// Human-readable lines.
    pub fn describe(&self) -> Vec<String> {
        let from = self.from.as_ref().map_or("nothing deployed".to_string(), |f| f.release_id.to_string());
        let mut lines = vec![format!(
            "{} {} -> {} into {} ({} mode)",
            self.kind,
            from,
            self.to.release_id,
            self.target.display(),
            self.mode.as_str()
        )];
        for change in &self.changes {
            let what = match (&change.old, &change.new) {
                (None, Some(_)) => "add    ",
                (Some(_), Some(_)) => "change ",
                (Some(_), None) => "remove ",
                (None, None) => "keep   ",
            };
            lines.push(format!(
                "  {what} {}{}",
                change.path,
                change.new.map(|_| format!(" ({} bytes)", change.size)).unwrap_or_default()
            ));
        }
        lines.push(format!(
            "{} changed, {} unchanged, {} removed, {} bytes to write",
            self.changes.iter().filter(|c| c.new.is_some()).count(),
            self.unchanged,
            self.changes.iter().filter(|c| c.new.is_none()).count(),
            self.bytes()
        ));
        lines
    }
}

/// What a transition is asked to do.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// Deploy or rollback.
    pub kind: Kind,
    /// What is active now (`None`: nothing deployed yet).
    pub from: Option<ReleaseFiles>,
    /// What will be.
    pub to: ReleaseFiles,
    /// Who asks for it (recorded in the journal and the history).
    pub by: String,
    /// Why (rollbacks).
    pub reason: Option<String>,
    /// The environment.
    pub environment: String,
}

/// The changes from what the target holds (`now_at(path)`: the hash there now, `None` if absent) to
/// `to`; paths of `from` that `to` drops are removed. Returns the changes and the count of files
/// already right.
pub fn diff(
    from: Option<&ReleaseFiles>,
    to: &ReleaseFiles,
    mut now_at: impl FnMut(&RelPath) -> Result<Option<Digest>>,
) -> Result<(Vec<Change>, usize)> {
    let mut changes = Vec::new();
    let mut unchanged = 0;
    for (path, (hash, size)) in &to.files {
        let now_hash = now_at(path)?;
        if now_hash == Some(*hash) {
            unchanged += 1;
        } else {
            changes.push(Change { path: path.clone(), old: now_hash, new: Some(*hash), size: *size });
        }
    }
    if let Some(from) = from {
        for path in from.files.keys().filter(|p| !to.files.contains_key(*p)) {
            if let Some(old) = now_at(path)? {
                changes.push(Change { path: path.clone(), old: Some(old), new: None, size: 0 });
            }
        }
    }
    Ok((changes, unchanged))
}

/// A transaction id, unique even for two transactions in one second in one process (the demo runs
/// in-process).
fn transaction_id(now: Time) -> String {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    format!("tx_{}_{}_{}", now.compact(), std::process::id(), SEQUENCE.fetch_add(1, Ordering::Relaxed))
}

/// Compute the plan of `request` against `target`.
pub fn plan(workspace: &Workspace, target: &Target, request: PlanRequest, now: Time) -> Result<Plan> {
    // What is there now, per path: in copy mode the target's own files (through the stat cache);
    // in symlink mode the switch replaces the whole set, so the difference between the two
    // releases' manifests (their directories are checked when materialised and after the switch).
    let (changes, unchanged) = match target.mode {
        DeployMode::Copy => {
            let cached = read_state(&target.state_path())?;
            diff(request.from.as_ref(), &request.to, |path| {
                observed(&target.confined(&target.root, path)?, cached.files.get(path))
            })?
        }
        DeployMode::Symlink => {
            let from = request.from.as_ref();
            diff(from, &request.to, |path| Ok(from.and_then(|f| f.files.get(path)).map(|(hash, _)| *hash)))?
        }
    };
    Ok(Plan {
        txid: transaction_id(now),
        kind: request.kind,
        mode: target.mode,
        target: target.root.clone(),
        from: request.from,
        to: request.to,
        changes,
        unchanged,
        by: request.by,
        reason: request.reason,
        environment: request.environment,
        heightened_hours: workspace.config.monitoring.heightened_hours.0,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::ids::ReleaseId;

    /// A release whose files hold digests `[n; 32]`.
    pub(crate) fn files(id: &str, paths: &[(&str, u8)]) -> ReleaseFiles {
        ReleaseFiles {
            release_id: ReleaseId::new(id).unwrap(),
            manifest: RelPath::new(&format!("release/manifests/{id}.yaml")).unwrap(),
            files: paths.iter().map(|(p, n)| (RelPath::new(p).unwrap(), (Digest([*n; 32]), u64::from(*n)))).collect(),
            rollback_to: None,
        }
    }

    fn on_disk(paths: &[(&str, u8)]) -> BTreeMap<RelPath, Digest> {
        paths.iter().map(|(p, n)| (RelPath::new(p).unwrap(), Digest([*n; 32]))).collect()
    }

    #[test]
    fn only_what_differs_from_the_target_changes_and_dropped_files_go() {
        let from = files("release_20251012_190000", &[("a", 1), ("b", 2), ("gone", 3)]);
        let to = files("release_20251012_200000", &[("a", 1), ("b", 4), ("new", 5)]);
        let disk = on_disk(&[("a", 1), ("b", 2), ("gone", 3)]);
        let (changes, unchanged) = diff(Some(&from), &to, |p| Ok(disk.get(p).copied())).unwrap();
        assert_eq!(unchanged, 1);
        let summary: Vec<(&str, Option<u8>, Option<u8>)> =
            changes.iter().map(|c| (c.path.as_str(), c.old.map(|d| d.0[0]), c.new.map(|d| d.0[0]))).collect();
        assert_eq!(summary, [("b", Some(2), Some(4)), ("new", None, Some(5)), ("gone", Some(3), None)]);
    }

    #[test]
    fn drift_on_the_target_is_planned_over_and_a_missing_dropped_file_is_no_change() {
        let from = files("release_20251012_190000", &[("a", 1), ("gone", 3)]);
        let to = files("release_20251012_200000", &[("a", 1)]);
        // Someone edited `a` on the target and already deleted `gone`.
        let disk = on_disk(&[("a", 9)]);
        let (changes, unchanged) = diff(Some(&from), &to, |p| Ok(disk.get(p).copied())).unwrap();
        assert_eq!(unchanged, 0);
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].old, changes[0].new), (Some(Digest([9; 32])), Some(Digest([1; 32]))));
    }

    #[test]
    fn a_first_deploy_writes_everything_and_counts_bytes() {
        let to = files("release_20251012_190000", &[("a", 1), ("b", 2)]);
        let (changes, unchanged) = diff(None, &to, |_| Ok(None)).unwrap();
        assert_eq!((changes.len(), unchanged), (2, 0));
        let plan = Plan {
            txid: "tx".into(),
            kind: Kind::Deploy,
            mode: DeployMode::Copy,
            target: "/srv/t".into(),
            from: None,
            to,
            changes,
            unchanged,
            by: "jane".into(),
            reason: None,
            environment: "production".into(),
            heightened_hours: 48,
        };
        assert_eq!(plan.bytes(), 3);
        let lines = plan.describe();
        assert_eq!(lines[0], "deploy nothing deployed -> release_20251012_190000 into /srv/t (copy mode)");
        assert_eq!(lines.last().unwrap(), "2 changed, 0 unchanged, 0 removed, 3 bytes to write");
    }
}
