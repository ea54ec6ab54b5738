//! Rollback: back to an earlier release — the whole flow behind `shipshape rollback`, the
//! dashboard's rollback button and the monitor's auto-rollback.

use crate::deploy::plan::{PlanRequest, plan};
use crate::deploy::recover::{Recovered, recover};
use crate::deploy::target::{Target, check_space, lock};
use crate::deploy::{Outcome, apply};
use crate::error::{Error, Result};
use crate::infra::clock::Time;
use crate::infra::hash::Progress;
use crate::layout::Workspace;
use crate::model::ids::ReleaseId;
use crate::model::journal::{Kind, Plan, ReleaseFiles};
use crate::model::manifest::LoadedManifest;
use crate::model::registry::ReleaseInfo;
use crate::registry;

/// What a rollback is asked to do.
#[derive(Debug, Clone)]
pub struct RollbackRequest {
    /// The release to return to; `None`: the one the active release's manifest names as previous.
    pub to: Option<ReleaseId>,
    /// Why (recorded in the history).
    pub reason: String,
    /// Who (recorded).
    pub by: String,
    /// Show the plan and change nothing.
    pub dry_run: bool,
}

/// How a rollback ended.
#[derive(Debug, Clone)]
pub enum RollbackOutcome {
    /// Rolled back.
    Done(Plan),
    /// `--dry-run`: the plan, unapplied.
    DryRun(Plan),
    /// The confirmation was refused.
    NotConfirmed(Plan),
}

/// The active release's files, if anything is deployed.
pub fn active_files(workspace: &Workspace, now: Time) -> Result<Option<(ReleaseInfo, ReleaseFiles)>> {
    let Some(info) = registry::get_active_release(workspace, now)? else { return Ok(None) };
    let loaded = crate::pipeline::manifest::load(&info.manifest_path.under(&workspace.root))?;
    let files = ReleaseFiles::of(workspace, &loaded)?;
    Ok(Some((info, files)))
}

/// The manifest of `release` in the workspace, verified as a rollback needs: its objects (the
/// backups restored from), approvals and chain.
fn verify_for_rollback(
    workspace: &Workspace,
    release: &ReleaseId,
    now: Time,
    progress: &dyn Progress,
) -> Result<LoadedManifest> {
    let path = workspace.manifests_dir().join(format!("{release}.yaml"));
    if !path.exists() {
        return Err(Error::Usage(format!(
            "there is no manifest for {release} in {}",
            workspace.display(&workspace.manifests_dir())
        )));
    }
    Ok(crate::pipeline::verify::trusted_for_rollback(workspace, &path, now, progress)?.0)
}

/// Roll the target back to an earlier release: the whole flow behind `shipshape rollback` and the
/// monitor's auto-rollback. Verifies the release's store objects and approvals before touching
/// anything ("backup verification before restore"), takes the locks, recovers an interrupted
/// transaction (reported through `recovered`), plans, asks `confirm`, applies under the journal.
pub fn rollback(
    workspace: &Workspace,
    request: &RollbackRequest,
    now: Time,
    progress: &dyn Progress,
    recovered: &mut dyn FnMut(&Recovered),
    confirm: &mut dyn FnMut(&Plan) -> Result<bool>,
) -> Result<RollbackOutcome> {
    let target = Target::of(workspace)?;
    let Some(active) = registry::get_active_release(workspace, now)? else {
        return Err(Error::Usage(
            "nothing is deployed yet, so there is nothing to roll back: deploy with `shipshape deploy`".into(),
        ));
    };
    // The release to restore is the one named, or the one the active manifest names as previous.
    // The registry remembers the latter, so it is verified while the active manifest is read (the
    // two parse on two cores); the manifest has the last word.
    let hint = request.to.clone().or_else(|| active.rollback_to.clone());
    let (active_read, verified) = std::thread::scope(|scope| {
        let reading = scope.spawn(|| -> Result<(LoadedManifest, ReleaseFiles)> {
            let loaded = crate::pipeline::manifest::load(&active.manifest_path.under(&workspace.root))?;
            let files = ReleaseFiles::of(workspace, &loaded)?;
            Ok((loaded, files))
        });
        let verified = hint.as_ref().map(|id| verify_for_rollback(workspace, id, now, progress));
        let read =
            reading.join().unwrap_or_else(|_| Err(Error::Internal("reading the active manifest panicked".into())));
        (read, verified)
    });
    let (active_manifest, from) = active_read?;
    let to_id = match &request.to {
        Some(id) => id.clone(),
        None => active_manifest.manifest.rollback_plan.previous_release_id.clone().ok_or_else(|| {
            Error::Usage(format!(
                "{} is the first release: there is no earlier release to roll back to",
                active.release_id
            ))
        })?,
    };
    if to_id == active.release_id {
        return Err(Error::Usage(format!("{to_id} is already the active release")));
    }
    let loaded = match verified {
        Some(result) if hint.as_ref() == Some(&to_id) => result?,
        _ => verify_for_rollback(workspace, &to_id, now, progress)?,
    };
    let to = ReleaseFiles::of(workspace, &loaded)?;
    let environment = loaded.manifest.deployment.environment.to_string();
    let reason = Some(request.reason.clone());
    if request.dry_run {
        let request =
            PlanRequest { kind: Kind::Rollback, from: Some(from), to, by: request.by.clone(), reason, environment };
        let plan = plan(workspace, &target, request, now)?;
        return Ok(RollbackOutcome::DryRun(plan));
    }
    let _locks = lock(workspace, &target, "rollback", now)?;
    let recoveries = recover(workspace, &target, now)?;
    for r in &recoveries {
        recovered(r);
    }
    // Another command may have finished, or a recovery moved the target, before the lock was ours.
    let still_active = registry::get_active_release(workspace, now)?
        .is_some_and(|now_active| now_active.release_id == active.release_id && recoveries.is_empty());
    let from = if still_active { Some(from) } else { active_files(workspace, now)?.map(|(_, files)| files) };
    let plan_request = PlanRequest { kind: Kind::Rollback, from, to, by: request.by.clone(), reason, environment };
    let plan = plan(workspace, &target, plan_request, now)?;
    check_space(&target, &plan)?;
    if !confirm(&plan)? {
        return Ok(RollbackOutcome::NotConfirmed(plan));
    }
    // A rollback runs no post-deploy checks, so it cannot end rolled back itself.
    let Outcome::Committed = apply(workspace, &target, &plan, &[], None, now, progress)? else {
        return Err(Error::Internal("a rollback without post-deploy checks reported a failed check".into()));
    };
    Ok(RollbackOutcome::Done(plan))
}
