//! The deploy engine: atomic, journaled deploy and rollback into a target directory, with crash
//! recovery, a lock, post-deploy checks and automatic rollback.
//!
//! Production reads the target directory. Artifacts are materialised from the object store — never
//! from the workspace — and re-hashed as they are copied, in one of two modes: [`copy`] (file by
//! file, each renamed into place) or [`symlink`] (a directory per release, one `current` link).
//!
//! A transaction: [`plan()`] computes the changes; [`apply`] writes the plan to the [`journal`]
//! (`release/journal/<txid>.jsonl`), then each phase (`verified`, `staged`, `switching`, `switched`,
//! `checked`, `committed`) and the outcome. `committed` is the commit point: [`recover()`] brings an
//! unfinished transaction back to exactly the old release before it, and forward to the new one
//! after it, idempotently. The workspace lock and a lock in the target ([`target`]) are both taken
//! without waiting, so two deploys into one target cannot interleave even from two workspaces.
//!
//! [`deploy()`] and [`rollback()`] are the two whole flows (verify, lock, recover, plan, confirm,
//! apply) that the CLI, the dashboard and the monitor share. [`failpoint`] lets tests crash the
//! process at every step.
//!
//! Inside, dependencies run one way: `failpoint`, `state` ← `target` ← `journal`, `plan` ← `copy`,
//! `symlink` ← this module (apply, converge, drift, deploy) ← `recover` ← `rollback`.

pub mod copy;
pub mod failpoint;
pub mod journal;
pub mod plan;
pub mod prune;
pub mod recover;
pub mod rollback;
pub mod state;
pub mod symlink;
pub mod target;

use std::path::PathBuf;

use crate::config::{DeployMode, PostDeployCheck};
use crate::error::{Error, Result};
use crate::infra::clock::Time;
use crate::infra::hash::Progress;
use crate::layout::Workspace;
use crate::model::journal::{Ending, Phase, Plan, ReleaseFiles};
use crate::model::manifest::LoadedManifest;
use crate::model::registry::{Action, HistoryEntry};
use crate::registry::{self, Activation};

pub use plan::{PlanRequest, plan};
pub use recover::{Direction, Pending, Recovered, pending, recover};
pub use rollback::{RollbackOutcome, RollbackRequest, active_files, live_files, rollback};
pub use target::{Locks, Target, check_space, lock};

/// How a transition ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new release is active.
    Committed,
    /// A post-deploy check failed; the previous release was restored.
    RolledBack(String),
}

/// Make the plan's release active in the registry and record it in the history, together.
fn finish(workspace: &Workspace, plan: &Plan, now: Time) -> Result<()> {
    let to = &plan.to;
    let activation = Activation {
        release_id: &to.release_id,
        manifest_path: &to.manifest,
        heightened_hours: plan.heightened_hours,
        deployer: &plan.by,
        environment: &plan.environment,
        activated_by: plan.kind,
        rollback_to: to.rollback_to.as_ref(),
    };
    let entry = HistoryEntry {
        at: now,
        action: Action::from(plan.kind),
        release_id: to.release_id.clone(),
        previous_release_id: plan.from.as_ref().map(|f| f.release_id.clone()),
        by: plan.by.clone(),
        reason: plan.reason.clone(),
        transaction: plan.txid.clone(),
    };
    registry::register_and_record(workspace, &activation, now, Some(entry))?;
    Ok(())
}

/// Bring the target to exactly `release` (`None`: nothing), whatever state a crash left it in.
fn converge(workspace: &Workspace, target: &Target, release: Option<&ReleaseFiles>, plan: &Plan) -> Result<()> {
    match target.mode {
        DeployMode::Copy => {
            let others: Vec<&ReleaseFiles> = [Some(&plan.to), plan.from.as_ref()].into_iter().flatten().collect();
            copy::converge(workspace, target, release, &others, &plan.txid)?;
        }
        DeployMode::Symlink => symlink::converge(workspace, target, release, plan)?,
    }
    Ok(())
}

/// The release the target's own records say it holds — `.shipshape/state.yaml` in copy mode, where
/// `current` points in symlink mode — without re-hashing; `None` when it records none (or the target
/// does not exist). What `status` consults when the registry has no active release.
pub fn held_release(target: &Target) -> Result<Option<String>> {
    if !target.exists() {
        return Ok(None);
    }
    Ok(match target.mode {
        DeployMode::Copy => state::read_state(&target.state_path())?.release_id.map(|id| id.to_string()),
        DeployMode::Symlink => symlink::current_release(target),
    })
}

/// Anti-rollback's last record: the release the target itself holds. Verification already takes
/// the highest sequence of the anti-rollback state, the registry and the history; should all of
/// those be lost or reset, a manifest older than what production serves is still refused.
fn refuse_below_target(workspace: &Workspace, target: &Target, loaded: &LoadedManifest) -> Result<()> {
    let Some(held) = held_release(target)? else { return Ok(()) };
    let path = workspace.manifests_dir().join(format!("{held}.yaml"));
    let Ok(recorded) = crate::pipeline::manifest::load(&path) else { return Ok(()) };
    let (new, old) = (&loaded.manifest, &recorded.manifest);
    if new.deployment.environment == old.deployment.environment && new.sequence < old.sequence {
        return Err(Error::Check(format!(
            "anti-rollback: {} has sequence {}, below the {} that the target {} holds (sequence {}, by the target's own record): go back with `shipshape rollback`, never by re-deploying an old manifest",
            new.release_id,
            new.sequence,
            held,
            target.root.display(),
            old.sequence
        )));
    }
    Ok(())
}

/// Check that the target holds exactly `release`, re-hashing (through the stat cache unless `deep`).
/// Returns the paths that differ.
pub fn drift(target: &Target, release: &ReleaseFiles, deep: bool) -> Result<Vec<String>> {
    let (base, state_path) = match target.mode {
        DeployMode::Copy => (target.root.clone(), target.state_path()),
        DeployMode::Symlink => {
            if symlink::current_release(target).as_deref() != Some(release.release_id.as_str()) {
                return Ok(vec![format!(
                    "current -> {}",
                    symlink::current_release(target).unwrap_or_else(|| "nothing".into())
                )]);
            }
            let dir = target.release_dir(&release.release_id);
            (dir.clone(), dir.with_extension("state.yaml"))
        }
    };
    let state = state::read_state(&state_path)?;
    let mut differing = Vec::new();
    for (path, (hash, _)) in &release.files {
        let live = target.confined(&base, path)?;
        let cached = if deep { None } else { state.files.get(path) };
        if state::observed(&live, cached)? != Some(*hash) {
            differing.push(path.to_string());
        }
    }
    Ok(differing)
}

/// Run a plan under the caller's locks: journal, stage, switch, verify, check, commit — or restore
/// the previous release on any failure. `accept` records the manifest for anti-rollback at commit.
pub fn apply(
    workspace: &Workspace,
    target: &Target,
    plan: &Plan,
    checks: &[PostDeployCheck],
    accept: Option<&LoadedManifest>,
    now: Time,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let mut journal = journal::Journal::create(&workspace.journal_dir(), plan, now)?;
    failpoint::hit(failpoint::AFTER_PLAN);
    let mut result = run_phases(workspace, target, plan, checks, &mut journal, now, progress);
    if let Ok(None) = result
        && let Err(error) = journal.phase(Phase::Committed, now)
    {
        // The commit record did not reach the disk whole: the transaction is not committed, and
        // is undone below like any failure before the commit point.
        result = Err(error);
    }
    match result {
        Ok(None) => {
            // Past the commit point production serves the new release: a failure from here on
            // (a full disk under the registry) does not undo it, it leaves the journal open for
            // `shipshape recover` to complete — and says so, with its own exit code.
            let completed = (|| -> Result<()> {
                if let Some(loaded) = accept {
                    crate::trust::anti_rollback::record(workspace, loaded, now)?;
                }
                finish(workspace, plan, now)?;
                failpoint::hit(failpoint::AFTER_REGISTRY);
                journal.outcome(Ending::Committed, None, now)
            })();
            completed.map_err(|cause| {
                Error::Unfinished(format!(
                    "{} is live: the {} passed its commit point, but completing it failed: {cause}; free the space or fix the cause, then run `shipshape recover` to complete it (the journal {} is kept)",
                    plan.to.release_id,
                    plan.kind,
                    journal.path.display()
                ))
            })?;
            Ok(Outcome::Committed)
        }
        Ok(Some(reason)) => {
            // A post-deploy check failed: back to the previous release, recorded as such.
            converge(workspace, target, plan.from.as_ref(), plan)?;
            registry::record(
                workspace,
                HistoryEntry {
                    at: now,
                    action: Action::DeployFailed,
                    release_id: plan.to.release_id.clone(),
                    previous_release_id: plan.from.as_ref().map(|f| f.release_id.clone()),
                    by: plan.by.clone(),
                    reason: Some(reason.clone()),
                    transaction: plan.txid.clone(),
                },
            )?;
            if let Some(from) = &plan.from {
                registry::record(
                    workspace,
                    HistoryEntry {
                        at: now,
                        action: Action::AutoRollback,
                        release_id: from.release_id.clone(),
                        previous_release_id: Some(plan.to.release_id.clone()),
                        by: "shipshape".into(),
                        reason: Some(format!("post-deploy check failed: {reason}")),
                        transaction: plan.txid.clone(),
                    },
                )?;
            }
            journal.outcome(Ending::RolledBack, Some(reason.clone()), now)?;
            Ok(Outcome::RolledBack(reason))
        }
        Err(error) => {
            // Anything else (corrupt object, full disk, I/O): restore exactly the old release.
            match converge(workspace, target, plan.from.as_ref(), plan) {
                Ok(()) => match journal.outcome(Ending::Failed, Some(error.to_string()), now) {
                    Ok(()) => Err(error),
                    // The target is back to the old release; the journal could not say so (the
                    // same full disk, typically). The next command's recovery closes it.
                    Err(journal_error) => Err(Error::Unfinished(format!(
                        "{error}; {} was restored, but closing the journal failed ({journal_error}): free the space, then run `shipshape recover` (the journal {} is kept)",
                        plan.from.as_ref().map_or_else(|| "the empty target".to_string(), |f| f.release_id.to_string()),
                        journal.path.display()
                    ))),
                },
                Err(restore_error) => Err(Error::Unfinished(format!(
                    "{error}; restoring the previous release also failed ({restore_error}): the journal {} is left open, run `shipshape recover`",
                    journal.path.display()
                ))),
            }
        }
    }
}

/// The phases; `Ok(Some(reason))` when a post-deploy check failed.
fn run_phases(
    workspace: &Workspace,
    target: &Target,
    plan: &Plan,
    checks: &[PostDeployCheck],
    journal: &mut journal::Journal,
    now: Time,
    progress: &dyn Progress,
) -> Result<Option<String>> {
    journal.phase(Phase::Verified, now)?;
    progress.start("deploying", plan.bytes());
    match target.mode {
        DeployMode::Copy => copy::run(workspace, target, plan, journal, now, progress)?,
        DeployMode::Symlink => symlink::run(workspace, target, plan, journal, now)?,
    }
    progress.finish();
    if let Some(failure) = run_checks(workspace, plan, checks)? {
        return Ok(Some(failure));
    }
    journal.phase(Phase::Checked, now)?;
    Ok(None)
}

/// Run the post-deploy checks against the tree being made live; the first failure, described.
///
/// `SHIPSHAPE_TARGET` is that tree — the target itself in copy mode, the release's own directory
/// (`<target>/.shipshape/releases/<id>`, where `current` now points) in symlink mode — so one check
/// works in both modes. `SHIPSHAPE_TARGET_ROOT` is the target directory, `SHIPSHAPE_RELEASE_ID` the
/// release.
fn run_checks(workspace: &Workspace, plan: &Plan, checks: &[PostDeployCheck]) -> Result<Option<String>> {
    let live_tree = match plan.mode {
        DeployMode::Copy => plan.target.clone(),
        DeployMode::Symlink => Target::at(plan.target.clone(), plan.mode).release_dir(&plan.to.release_id),
    };
    for check in checks {
        let timeout = check.timeout.map_or(std::time::Duration::from_secs(300), |t| t.0.0.unsigned_abs());
        let command = format!(
            "SHIPSHAPE_TARGET={} SHIPSHAPE_TARGET_ROOT={} SHIPSHAPE_RELEASE_ID={} ; export SHIPSHAPE_TARGET SHIPSHAPE_TARGET_ROOT SHIPSHAPE_RELEASE_ID ; {}",
            crate::infra::command::shell_quote(&live_tree.to_string_lossy()),
            crate::infra::command::shell_quote(&plan.target.to_string_lossy()),
            plan.to.release_id,
            check.command
        );
        let outcome = crate::infra::command::run_shell(&command, &workspace.root, timeout)?;
        if !outcome.succeeded() {
            let tail = outcome.tail.lines().last().unwrap_or("").to_string();
            return Ok(Some(format!(
                "{} ({}): {}{}",
                check.name,
                check.command,
                outcome.describe(),
                if tail.is_empty() { String::new() } else { format!(": {tail}") }
            )));
        }
    }
    Ok(None)
}

/// What a deploy is asked to do.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The manifest to deploy (absolute, inside the workspace).
    pub manifest: PathBuf,
    /// Who (recorded).
    pub by: String,
    /// Show the plan and change nothing.
    pub dry_run: bool,
}

/// How a deploy ended.
#[derive(Debug, Clone)]
pub enum DeployOutcome {
    /// The release is active.
    Done(Plan),
    /// A post-deploy check failed and the previous release was restored.
    RolledBack(Plan, String),
    /// `--dry-run`: the plan, unapplied (its free space not yet checked: see [`check_space`]).
    DryRun(Plan),
    /// The confirmation was refused.
    NotConfirmed(Plan),
}

/// Deploy a manifest: the whole flow behind `shipshape deploy`, mirroring [`rollback()`]. Verifies
/// the manifest through the one read path (integrity, approvals, expiry, anti-rollback), takes the
/// locks, recovers an interrupted transaction (reported through `recovered`), plans, checks free
/// space, asks `confirm`, applies under the journal with the post-deploy checks.
pub fn deploy(
    workspace: &Workspace,
    request: &DeployRequest,
    now: Time,
    progress: &dyn Progress,
    recovered: &mut dyn FnMut(&Recovered),
    confirm: &mut dyn FnMut(&Plan) -> Result<bool>,
) -> Result<DeployOutcome> {
    let target = Target::of(workspace)?;
    let (loaded, _) = crate::pipeline::verify::trusted(workspace, &request.manifest, now, progress)?;
    refuse_below_target(workspace, &target, &loaded)?;
    let to = ReleaseFiles::of(workspace, &loaded)?;
    let checks = workspace.config.deploy.as_ref().map(|d| d.post_deploy_checks.clone()).unwrap_or_default();
    let make_plan = || -> Result<Plan> {
        // After the locks' recovery this is the registry's active release; in a dry run (no lock,
        // no recovery) it is the release recovery would leave live.
        let from = live_files(workspace, now)?;
        let plan_request = PlanRequest {
            kind: crate::model::journal::Kind::Deploy,
            from,
            to: to.clone(),
            by: request.by.clone(),
            reason: None,
            environment: loaded.manifest.deployment.environment.to_string(),
        };
        plan(workspace, &target, plan_request, now)
    };
    if request.dry_run {
        return Ok(DeployOutcome::DryRun(make_plan()?));
    }
    let _locks = lock(workspace, &target, "deploy", now)?;
    for r in &recover(workspace, &target, now)? {
        recovered(r);
    }
    let plan = make_plan()?;
    check_space(&target, &plan)?;
    if !confirm(&plan)? {
        return Ok(DeployOutcome::NotConfirmed(plan));
    }
    Ok(match apply(workspace, &target, &plan, &checks, Some(&loaded), now, progress)? {
        Outcome::Committed => {
            prune::after_transaction(workspace, &target, now);
            DeployOutcome::Done(plan)
        }
        Outcome::RolledBack(reason) => DeployOutcome::RolledBack(plan, reason),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;
    use std::fs;

    use super::*;
    use crate::infra::hash::Digest;
    use crate::infra::paths::RelPath;
    use crate::model::ids::ReleaseId;
    use crate::model::journal::TargetState;

    /// A copy-mode target holding `files`, with the stat cache a deploy would have written.
    fn deployed(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Target, ReleaseFiles) {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::at(dir.path().to_path_buf(), DeployMode::Copy);
        let mut release = ReleaseFiles {
            release_id: ReleaseId::new("release_20251012_190000").unwrap(),
            manifest: RelPath::new("release/manifests/release_20251012_190000.yaml").unwrap(),
            files: BTreeMap::new(),
            rollback_to: None,
        };
        let mut state = TargetState { release_id: Some(release.release_id.clone()), files: BTreeMap::new() };
        for (path, bytes) in files {
            let rel = RelPath::new(path).unwrap();
            let live = rel.under(&target.root);
            fs::create_dir_all(live.parent().unwrap()).unwrap();
            fs::write(&live, bytes).unwrap();
            let digest = Digest::of(bytes);
            release.files.insert(rel.clone(), (digest, bytes.len() as u64));
            state.files.insert(rel, state::stat_of(&live, digest).unwrap());
        }
        state::write_state(&target.state_path(), &state).unwrap();
        (dir, target, release)
    }

    #[test]
    fn an_intact_target_has_no_drift_shallow_or_deep() {
        let (_dir, target, release) = deployed(&[("config/a.yaml", b"a: 1\n"), ("models/m.pkl", b"model")]);
        assert!(drift(&target, &release, false).unwrap().is_empty());
        assert!(drift(&target, &release, true).unwrap().is_empty());
    }

    #[test]
    fn edited_missing_and_replaced_files_are_drift() {
        let (_dir, target, release) =
            deployed(&[("config/a.yaml", b"a: 1\n"), ("config/b.yaml", b"b: 2\n"), ("models/m.pkl", b"model")]);
        fs::write(target.root.join("config/a.yaml"), b"a: 9\n").unwrap();
        fs::remove_file(target.root.join("config/b.yaml")).unwrap();
        fs::remove_file(target.root.join("models/m.pkl")).unwrap();
        fs::create_dir(target.root.join("models/m.pkl")).unwrap(); // not a regular file any more
        let mut drifted = drift(&target, &release, false).unwrap();
        drifted.sort();
        assert_eq!(drifted, ["config/a.yaml", "config/b.yaml", "models/m.pkl"]);
    }

    #[test]
    fn an_edit_that_restores_size_and_mtime_is_caught_by_the_ctime() {
        let (_dir, target, release) = deployed(&[("config/a.yaml", b"a: 1\n")]);
        let live = target.root.join("config/a.yaml");
        let before = fs::metadata(&live).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&live, b"a: 2\n").unwrap(); // same size
        fs::File::options().write(true).open(&live).unwrap().set_modified(before.modified().unwrap()).unwrap();
        assert_eq!(drift(&target, &release, false).unwrap(), ["config/a.yaml"]);
    }
}
