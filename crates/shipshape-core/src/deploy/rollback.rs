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

/// Where a rollback from `active` goes: the release named (which must have run in production), or
/// the last known good one. A refusal lists the candidates.
pub fn choose_target(workspace: &Workspace, active: &ReleaseId, named: Option<&ReleaseId>) -> Result<ReleaseId> {
    let life = registry::lifecycle(workspace)?;
    let candidates = life.rollback_candidates(Some(active));
    let listed = || {
        if candidates.is_empty() {
            "no earlier release ran here".to_string()
        } else {
            let list: Vec<String> = candidates
                .iter()
                .map(|c| format!("{} ({}, last active {})", c.release_id, c.status, c.last_active))
                .collect();
            format!("candidates: {}", list.join(", "))
        }
    };
    match named {
        Some(id) if id == active => Err(Error::Usage(format!("{id} is already the active release; {}", listed()))),
        Some(id) if candidates.iter().any(|c| &c.release_id == id) => Ok(id.clone()),
        Some(id) => {
            let what = match life.status(id) {
                Some(status) => format!("its deploy {status}, so it never ran in production"),
                None => "it was never deployed here".to_string(),
            };
            Err(Error::Usage(format!("cannot roll back to {id}: {what}; {}", listed())))
        }
        None => life.last_known_good(Some(active)).cloned().ok_or_else(|| {
            Error::Usage(format!(
                "no last known good release to roll back to from {active} (one that ran here, passed its post-deploy checks and was not rolled back): {}{}",
                listed(),
                if candidates.is_empty() { "" } else { "; name one with --to" }
            ))
        }),
    }
}

/// The release the target holds once any interrupted transaction is recovered: the one an unfinished
/// journal lands on (read without the locks), else the registry's active release.
pub fn live_files(workspace: &Workspace, now: Time) -> Result<Option<ReleaseFiles>> {
    if let Some(last) = crate::deploy::recover::pending(workspace)?.pop() {
        return Ok(last.lands_on().cloned());
    }
    Ok(active_files(workspace, now)?.map(|(_, files)| files))
}

/// Roll the target back to an earlier release: the whole flow behind `shipshape rollback`, the
/// dashboard's rollback button and the monitor's auto-rollback. Takes the locks and recovers an
/// interrupted transaction (reported through `recovered`) before deciding anything — an interrupted
/// deploy may have made another release live than the registry says — then verifies the release's
/// store objects and approvals ("backup verification before restore"), plans, asks `confirm` and
/// applies under the journal. A dry run takes no lock and recovers nothing: it plans from the
/// release recovery would leave live.
pub fn rollback(
    workspace: &Workspace,
    request: &RollbackRequest,
    now: Time,
    progress: &dyn Progress,
    recovered: &mut dyn FnMut(&Recovered),
    confirm: &mut dyn FnMut(&Plan) -> Result<bool>,
) -> Result<RollbackOutcome> {
    let target = Target::of(workspace)?;
    let _locks = if request.dry_run {
        None
    } else {
        let locks = lock(workspace, &target, "rollback", now)?;
        for r in &recover(workspace, &target, now)? {
            recovered(r);
        }
        Some(locks)
    };
    let Some(from) = live_files(workspace, now)? else {
        return Err(Error::Usage(
            "nothing is deployed yet, so there is nothing to roll back: deploy with `shipshape deploy`".into(),
        ));
    };
    let to_id = choose_target(workspace, &from.release_id, request.to.as_ref())?;
    let loaded = verify_for_rollback(workspace, &to_id, now, progress)?;
    let to = ReleaseFiles::of(workspace, &loaded)?;
    let environment = loaded.manifest.deployment.environment.to_string();
    let reason = Some(request.reason.clone());
    let plan_request =
        PlanRequest { kind: Kind::Rollback, from: Some(from), to, by: request.by.clone(), reason, environment };
    let plan = plan(workspace, &target, plan_request, now)?;
    if request.dry_run {
        return Ok(RollbackOutcome::DryRun(plan));
    }
    check_space(&target, &plan)?;
    if !confirm(&plan)? {
        return Ok(RollbackOutcome::NotConfirmed(plan));
    }
    // A rollback runs no post-deploy checks, so it cannot end rolled back itself.
    let Outcome::Committed = apply(workspace, &target, &plan, &[], None, now, progress)? else {
        return Err(Error::Internal("a rollback without post-deploy checks reported a failed check".into()));
    };
    super::prune::after_transaction(workspace, &target, now);
    Ok(RollbackOutcome::Done(plan))
}
