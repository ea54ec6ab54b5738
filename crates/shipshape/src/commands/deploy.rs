//! `shipshape deploy`, `shipshape rollback`, `shipshape recover`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::bail;
use shipshape_core::deploy::{self, DeployOutcome, Target};
use shipshape_core::model::ids::ReleaseId;
use shipshape_core::model::journal::Plan;
use shipshape_core::pipeline::manifest::{self};
use shipshape_core::{Error, canary, registry};

use crate::cli::{DeployArgs, RollbackArgs};
use crate::context::Context;

/// Ask on a terminal for the word `yes`, as the story's Makefile does; refuse without a terminal.
pub fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "there is no terminal to confirm on: pass --yes to proceed (or --dry-run to see the plan)".into(),
        )
        .into());
    }
    eprint!("{question} (type 'yes' to continue): ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

fn print_plan(plan: &Plan) {
    for line in plan.describe() {
        println!("{line}");
    }
    // What the releases themselves differ by — the summary `shipshape diff` prints — beside the
    // plan's file operations (which compare with what the target holds now).
    if let Some(from) = &plan.from {
        let (old, new) = (&from.files, &plan.to.files);
        let added = new.keys().filter(|p| !old.contains_key(*p)).count();
        let removed = old.keys().filter(|p| !new.contains_key(*p)).count();
        let changed = new.iter().filter(|(p, (hash, _))| old.get(*p).is_some_and(|(h, _)| h != hash)).count();
        let unchanged = new.iter().filter(|(p, (hash, _))| old.get(*p).is_some_and(|(h, _)| h == hash)).count();
        println!(
            "release {} -> {}: {added} added, {changed} changed, {removed} removed, {unchanged} unchanged (`shipshape diff {} {}` shows the text)",
            from.release_id, plan.to.release_id, from.release_id, plan.to.release_id
        );
    }
}

/// One line on what recovery did with an interrupted transaction.
fn describe_recovery(recovered: &deploy::Recovered) -> String {
    match recovered.direction {
        deploy::Direction::Discarded => format!(
            "{}: discarded: its journal never recorded a plan (interrupted as it began, e.g. by a full disk), so nothing had changed",
            recovered.txid
        ),
        direction => format!(
            "{}: rolled {direction} to {}",
            recovered.txid,
            recovered.release.as_ref().map_or_else(|| "nothing deployed".to_string(), |r| r.to_string())
        ),
    }
}

fn report_recovery(context: &Context, recovered: &deploy::Recovered) {
    context.warn(format!("recovered interrupted transaction {}", describe_recovery(recovered)));
}

/// Who is running this (recorded as the deployer).
pub fn deployer() -> String {
    shipshape_core::infra::user::current_user().unwrap_or_else(|| "unknown".into())
}

/// `shipshape deploy [MANIFEST] [--yes] [--dry-run]`.
pub fn deploy(context: &Context, args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let now = context.now();
    let manifest = match &args.manifest {
        Some(path) => manifest::resolve_argument(&workspace, &context.start_dir, path)?,
        None => {
            // The newest *approved* manifest: approvals come between manifest and deploy.
            let (path, passed_over) = manifest::newest_approved(&workspace, now)?;
            if !passed_over.is_empty() {
                let names: Vec<String> = passed_over.iter().map(ToString::to_string).collect();
                context.warn(format!(
                    "newer manifests not approved yet, passed over: {}; deploying the newest approved one, {}",
                    names.join(", "),
                    path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default()
                ));
            }
            path
        }
    };
    if !args.dry_run
        && let Some(state) = canary::read_state(&canary::Paths::of(&workspace)?)?
    {
        return Err(Error::Usage(format!(
            "a canary of {} is under way beside {}: let it finish, or `shipshape canary promote` / `shipshape canary abort` first",
            state.candidate, state.stable
        ))
        .into());
    }
    let progress = context.progress();
    let request = deploy::DeployRequest { manifest, by: deployer(), dry_run: args.dry_run };
    let outcome = deploy::deploy(
        &workspace,
        &request,
        now,
        progress.as_ref(),
        &mut |r| report_recovery(context, r),
        &mut |plan| {
            print_plan(plan);
            confirm(&format!("Deploy {} to {}?", plan.to.release_id, plan.target.display()), args.yes)
                .map_err(|e| Error::Usage(e.to_string()))
        },
    )?;
    match outcome {
        DeployOutcome::DryRun(plan) => {
            note_pending(context, &workspace)?;
            print_plan(&plan);
            deploy::check_space(&Target::at(plan.target.clone(), plan.mode), &plan)?;
            context.note("dry run: nothing was changed");
            super::ok()
        }
        DeployOutcome::NotConfirmed(_) => bail!("not confirmed: nothing was deployed"),
        DeployOutcome::Done(plan) => {
            canary::follow_target(&workspace, now, &plan.to.release_id, "deployed")?;
            let info = registry::get_active_release(&workspace, now)?;
            println!("deployed {} to {}", plan.to.release_id, plan.target.display());
            close_superseded_alerts(context, &workspace);
            if let Some(info) = info {
                context.note(format!(
                    "heightened monitoring until {} ({} h); roll back with `shipshape rollback`",
                    info.heightened_monitoring_end, info.heightened_hours
                ));
            }
            super::ok()
        }
        DeployOutcome::RolledBack(plan, reason) => {
            eprintln!(
                "error: {} failed its post-deploy check and was rolled back to {}: {reason}",
                plan.to.release_id,
                plan.from.as_ref().map_or_else(|| "nothing deployed".to_string(), |f| f.release_id.to_string())
            );
            Ok(ExitCode::from(crate::EXIT_ROLLED_BACK))
        }
    }
}

/// `shipshape rollback [--to RELEASE_ID] [--reason R] [--yes] [--dry-run]`.
pub fn rollback(context: &Context, args: &RollbackArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let to = args.to.as_deref().map(ReleaseId::new).transpose().map_err(Error::Usage)?;
    let request = deploy::RollbackRequest {
        to,
        reason: args.reason.clone().unwrap_or_else(|| "manual rollback".into()),
        by: deployer(),
        dry_run: args.dry_run,
    };
    let progress = context.progress();
    let outcome = deploy::rollback(
        &workspace,
        &request,
        context.now(),
        progress.as_ref(),
        &mut |r| report_recovery(context, r),
        &mut |plan| {
            print_plan(plan);
            let yes = confirm(&format!("Roll {} back to {}?", plan.target.display(), plan.to.release_id), args.yes)
                .map_err(|e| Error::Usage(e.to_string()))?;
            // A rollback during a canary aborts the canary first (its capital back to the stable tree).
            if yes
                && let Some(aborted) =
                    canary::abort(&workspace, context.now(), &deployer(), "the target is being rolled back")?
            {
                context.note(format!(
                    "canary of {} aborted first: all capital back to {}",
                    aborted.candidate, aborted.stable
                ));
            }
            Ok(yes)
        },
    )?;
    match outcome {
        deploy::RollbackOutcome::DryRun(plan) => {
            note_pending(context, &workspace)?;
            print_plan(&plan);
            context.note("dry run: nothing was changed");
        }
        deploy::RollbackOutcome::NotConfirmed(_) => bail!("not confirmed: nothing was rolled back"),
        deploy::RollbackOutcome::Done(plan) => {
            canary::follow_target(&workspace, context.now(), &plan.to.release_id, "rolled back")?;
            println!("rolled back to {} in {}", plan.to.release_id, plan.target.display());
            close_superseded_alerts(context, &workspace);
        }
    }
    super::ok()
}

/// The alerts of the release production just left are closed as `superseded` now, not at the next
/// evaluation. Best effort: the deploy or rollback is done; the next evaluation closes them anyway.
fn close_superseded_alerts(context: &Context, workspace: &shipshape_core::layout::Workspace) {
    if !workspace.root.join(shipshape_monitor::db::DB_PATH).exists() {
        return;
    }
    let closed = shipshape_monitor::monitor::Monitor::open(workspace.clone())
        .and_then(|mut monitor| monitor.close_superseded(context.now()));
    if let Err(e) = closed {
        context.warn(format!("the previous release's alerts were not closed yet (the next evaluation will): {e}"));
    }
}

/// A dry run takes no lock and recovers nothing: say which interrupted transaction the real run
/// would recover first (the plan is already made from where that recovery lands).
fn note_pending(context: &Context, workspace: &shipshape_core::layout::Workspace) -> anyhow::Result<()> {
    for pending in deploy::pending(workspace)? {
        context.warn(format!("interrupted: {}; the real run recovers it first", pending.describe()));
    }
    Ok(())
}

/// `shipshape recover`.
pub fn recover(context: &Context) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let target = Target::of(&workspace)?;
    let now = context.now();
    let _locks = deploy::lock(&workspace, &target, "recover", now)?;
    let recovered = deploy::recover(&workspace, &target, now)?;
    if recovered.is_empty() {
        println!("nothing to recover: no interrupted deploy or rollback");
    }
    for r in &recovered {
        println!("{}", describe_recovery(r));
    }
    super::ok()
}
