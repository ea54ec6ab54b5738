//! `shipshape status` and `shipshape history`.

use std::process::ExitCode;

use serde_json::json;
use shipshape_core::deploy::{self, Target};
use shipshape_core::infra::clock::humanize;
use shipshape_core::infra::text::printable;
use shipshape_core::model::journal::ReleaseFiles;
use shipshape_core::pipeline::manifest;
use shipshape_core::registry;

use crate::cli::{HistoryArgs, StatusArgs};
use crate::context::Context;

/// The active release, its monitoring mode, and whether the target matches it — or, when a deploy
/// or rollback is unfinished, what it left and what `shipshape recover` will do (exit 5); when the
/// registry records nothing but the target holds a release, that (exit 1).
pub fn status(context: &Context, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let now = context.now();
    let pending = deploy::pending(&workspace)?;
    let unfinished: Vec<String> = pending.iter().map(deploy::Pending::describe).collect();
    let unfinished_code = || ExitCode::from(crate::EXIT_UNFINISHED);
    if !args.json {
        for line in &unfinished {
            println!("UNFINISHED:      {line}");
        }
    }
    let Some(info) = registry::get_active_release(&workspace, now)? else {
        // The registry records nothing: does the target say otherwise?
        let target = if workspace.config.deploy.is_some() { Some(Target::of(&workspace)?) } else { None };
        let held = match &target {
            Some(target) => deploy::held_release(target)?,
            None => None,
        };
        let registry_file = workspace.display(&registry::active_path(&workspace)).into_owned();
        if args.json {
            super::print_json(&json!({
                "active_release": null,
                "unfinished": unfinished,
                "target_holds": held,
                "target": target.as_ref().map(|t| &t.root),
            }))?;
        } else if let (Some(held), Some(target)) = (&held, &target) {
            println!(
                "active release:  none registered, but the target {} holds {held} (its own record says so)",
                target.root.display()
            );
            println!(
                "registry:        {registry_file} is missing or was reset: restore it from a backup, or re-register the release with `shipshape deploy release/manifests/{held}.yaml` (files that already match are not rewritten)"
            );
        } else if unfinished.is_empty() {
            println!("nothing deployed yet: run `shipshape deploy` (after audit, validate, manifest, approve)");
        }
        return Ok(if !unfinished.is_empty() {
            unfinished_code()
        } else if held.is_some() {
            ExitCode::from(crate::EXIT_CHECK_FAILED)
        } else {
            ExitCode::SUCCESS
        });
    };
    let target = Target::of(&workspace)?;
    let loaded = manifest::load(&info.manifest_path.under(&workspace.root))?;
    let files = ReleaseFiles::of(&workspace, &loaded)?;
    // While a transaction is unfinished the target is expected to differ from the registry: what
    // it should hold is what recovery makes of it, so drift is not judged until then.
    let drift = if pending.is_empty() { deploy::drift(&target, &files, args.deep)? } else { Vec::new() };
    // The active release's alerts: firing ones make the exit code 6 (for cron and CI).
    let db_path = workspace.root.join(shipshape_monitor::db::DB_PATH);
    // Best effort: `status` must answer even when the database cannot be read (a full disk).
    let (firing, pending_alerts) = if db_path.exists() {
        let read = shipshape_monitor::db::Db::open(&db_path).and_then(|db| {
            let release = info.release_id.to_string();
            Ok((db.alerts(Some("firing"), Some(&release), 1000)?, db.alerts(Some("pending"), Some(&release), 1000)?))
        });
        read.unwrap_or_else(|e| {
            context.warn(format!("alerts not shown: {e}"));
            (Vec::new(), Vec::new())
        })
    } else {
        (Vec::new(), Vec::new())
    };
    let life = registry::lifecycle(&workspace)?;
    let last_known_good = life.last_known_good(Some(&info.release_id)).map(|id| id.to_string());
    let candidates = life.rollback_candidates(Some(&info.release_id));
    let ago = now.since(&info.deployment_timestamp);
    let remaining = info.heightened_monitoring_end.since(&now);
    let mode = if info.heightened_monitoring_active { "heightened" } else { "normal" };
    if args.json {
        super::print_json(&json!({
            "active_release": info,
            "release_type": loaded.manifest.release_type,
            "deployed_ago_seconds": ago.as_secs(),
            "monitoring_mode": mode,
            "heightened_remaining_seconds": if info.heightened_monitoring_active { remaining.as_secs() } else { 0 },
            "target": target.root,
            "in_sync": pending.is_empty() && drift.is_empty(),
            "drifted": drift,
            "unfinished": unfinished,
            "rollback_to": last_known_good,
            "rollback_candidates": candidates,
            "alerts": { "firing": firing, "pending": pending_alerts },
        }))?;
    } else {
        let registered = if pending.is_empty() { "" } else { " (as registered; see UNFINISHED above)" };
        println!("active release:  {} ({}){registered}", info.release_id, loaded.manifest.release_type);
        println!(
            "deployed:        {} ({} ago) by {} via {}",
            info.deployment_timestamp,
            humanize(ago),
            printable(&info.deployer),
            info.activated_by
        );
        if info.heightened_monitoring_active {
            println!(
                "monitoring:      heightened, {} left (until {})",
                humanize(remaining),
                info.heightened_monitoring_end
            );
        } else {
            println!("monitoring:      normal (heightened ended {})", info.heightened_monitoring_end);
        }
        println!("manifest:        {}", info.manifest_path);
        match (&last_known_good, candidates.is_empty()) {
            (Some(good), _) => println!("rollback to:     {good} (last known good; `shipshape rollback`)"),
            (None, true) => println!("rollback to:     nothing: no earlier release ran here"),
            (None, false) => {
                println!("rollback to:     no last known good release; name a candidate with `rollback --to`")
            }
        }
        let others: Vec<String> = candidates
            .iter()
            .filter(|c| Some(c.release_id.to_string()) != last_known_good)
            .map(|c| format!("{} ({})", c.release_id, c.status))
            .collect();
        if !others.is_empty() {
            println!("other candidates: {}", others.join(", "));
        }
        let describe = |alerts: &[shipshape_monitor::db::alerts::AlertRow]| {
            alerts
                .iter()
                .map(|a| {
                    let severity = a.severity.as_deref().map(|s| format!(" {s}")).unwrap_or_default();
                    format!("#{} {}{severity}", a.id, printable(&a.metric))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (firing.is_empty(), pending_alerts.is_empty()) {
            (true, true) => println!("alerts:          none firing or pending"),
            (false, _) => {
                println!("alerts:          FIRING: {}", describe(&firing));
                if !pending_alerts.is_empty() {
                    println!("                 pending: {}", describe(&pending_alerts));
                }
                let back = last_known_good.as_deref().map_or_else(
                    || "`shipshape rollback --to ID` (no last known good release)".to_string(),
                    |good| format!("`shipshape rollback --reason ...` (to {good}, last known good)"),
                );
                println!(
                    "next step:       look at the alerts (`shipshape alerts --state firing`, the dashboard); if the release regressed, {back}"
                );
            }
            (true, false) => println!("alerts:          pending (not firing yet): {}", describe(&pending_alerts)),
        }
        if !pending.is_empty() {
            println!("target:          {} not checked until `shipshape recover` has run", target.root.display());
        } else if drift.is_empty() {
            println!("target:          {} in sync", target.root.display());
        } else {
            println!("target:          {} DRIFTED: {}", target.root.display(), drift.join(", "));
        }
    }
    Ok(if !pending.is_empty() {
        unfinished_code()
    } else if !drift.is_empty() {
        ExitCode::from(crate::EXIT_CHECK_FAILED)
    } else if !firing.is_empty() {
        ExitCode::from(crate::EXIT_ALERTS_FIRING)
    } else {
        ExitCode::SUCCESS
    })
}

/// Every deploy, rollback and failure.
pub fn history(context: &Context, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let entries = if args.all { registry::history_all(&workspace)? } else { registry::history(&workspace)? };
    let life = registry::lifecycle(&workspace)?;
    if args.json {
        // Each entry with the current status of its release (a field added to the entry's own).
        let with_status: Vec<serde_json::Value> = entries
            .iter()
            .map(|entry| {
                let mut value = serde_json::to_value(entry).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    object.insert("release_status".into(), json!(life.status(&entry.release_id)));
                }
                value
            })
            .collect();
        super::print_json(&with_status)?;
        return super::ok();
    }
    let archived = registry::snapshot(&workspace)?.map_or(0, |s| s.archived);
    if entries.is_empty() && archived == 0 {
        println!("no deploys yet");
    }
    if archived > 0 && !args.all {
        println!("({archived} earlier entries archived by shipshape gc: shipshape history --all shows them)");
    }
    for entry in &entries {
        let from = entry.previous_release_id.as_ref().map(|p| format!(" (from {p})")).unwrap_or_default();
        let reason = entry.reason.as_ref().map(|r| format!(": {}", printable(r))).unwrap_or_default();
        println!("{}  {:<14} {}{from}  by {}{reason}", entry.at, entry.action, entry.release_id, printable(&entry.by));
    }
    let releases = life.releases();
    if !releases.is_empty() {
        println!();
        println!("releases (newest first): status, last active");
        let last_known_good = life.last_known_good(life.active());
        for record in &releases {
            let mark = if Some(&record.release_id) == last_known_good { "  <- last known good" } else { "" };
            println!("  {}  {:<11} {}{mark}", record.release_id, record.status, record.last_active);
        }
        // Manifests that never reached production: `superseded` once a later one was deployed
        // (anti-rollback keeps them out for good), else still a `candidate`.
        let newest_ran = releases.iter().map(|r| &r.release_id).max();
        let never_ran: Vec<(String, &str)> = shipshape_core::pipeline::manifest::manifest_paths(&workspace)?
            .iter()
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .filter_map(|stem| shipshape_core::model::ids::ReleaseId::new(&stem).ok())
            .filter(|id| life.status(id).is_none())
            .map(|id| {
                let word = if newest_ran.is_some_and(|n| *n > id) { "superseded" } else { "candidate" };
                (id.to_string(), word)
            })
            .collect();
        if !never_ran.is_empty() {
            println!("manifests never deployed:");
            for (id, word) in never_ran.iter().rev() {
                println!("  {id}  {word}");
            }
        }
    }
    super::ok()
}

/// `shipshape analytics [--json]`.
pub fn analytics(context: &Context, args: &crate::cli::AnalyticsArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let history = registry::history(&workspace)?;
    let now = context.now();
    let windows = [30, 90].map(|days| shipshape_core::registry::analytics::analytics(&history, now, days));
    if args.json {
        super::print_json(&json!({ "30d": windows[0], "90d": windows[1] }))?;
        return super::ok();
    }
    let pct = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{:.0} %", v * 100.0));
    let restore = |v: Option<f64>| {
        v.map_or_else(
            || "n/a".to_string(),
            |s| shipshape_core::infra::clock::humanize(jiff::SignedDuration::from_secs(s.round() as i64)),
        )
    };
    println!("{:<24} {:>12} {:>12}", "", "30 days", "90 days");
    println!("{:<24} {:>12} {:>12}", "deploys", windows[0].deploys, windows[1].deploys);
    println!("{:<24} {:>12.1} {:>12.1}", "deploys per week", windows[0].deploys_per_week, windows[1].deploys_per_week);
    println!(
        "{:<24} {:>12} {:>12}",
        "change failure rate",
        pct(windows[0].change_failure_rate),
        pct(windows[1].change_failure_rate)
    );
    println!(
        "{:<24} {:>12} {:>12}",
        "mean time to restore",
        restore(windows[0].mean_time_to_restore_seconds),
        restore(windows[1].mean_time_to_restore_seconds)
    );
    println!("{:<24} {:>12} {:>12}", "rollbacks", windows[0].rollbacks, windows[1].rollbacks);
    super::ok()
}

/// A manifest named on `diff`'s command line: `active` (the registry's), or anything
/// `manifest::resolve_argument` takes.
fn diff_side(
    context: &Context,
    workspace: &shipshape_core::layout::Workspace,
    name: &std::path::Path,
) -> anyhow::Result<shipshape_core::model::manifest::LoadedManifest> {
    let path = if name == std::path::Path::new("active") {
        let Some(info) = registry::get_active_release(workspace, context.now())? else {
            return Err(shipshape_core::Error::Usage(
                "nothing is deployed, so there is no `active` release: name two releases (`shipshape diff A B`)".into(),
            )
            .into());
        };
        info.manifest_path.under(&workspace.root)
    } else {
        manifest::resolve_argument(workspace, &context.start_dir, name)?
    };
    Ok(manifest::load(&path)?)
}

/// `shipshape diff [FROM] [TO] [--json] [--no-text]`.
pub fn diff(context: &Context, args: &crate::cli::DiffArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let from = diff_side(context, &workspace, args.from.as_deref().unwrap_or(std::path::Path::new("active")))?;
    let to = diff_side(context, &workspace, args.to.as_deref().unwrap_or(std::path::Path::new("newest")))?;
    let difference = shipshape_core::pipeline::diff::diff(&workspace, &from, &to, !args.no_text)?;
    if args.json {
        super::print_json(&difference)?;
        return super::ok();
    }
    println!("{}", difference.summary());
    let short = |d: &shipshape_core::infra::hash::Digest| d.to_string().chars().take(19).collect::<String>();
    for artifact in &difference.artifacts {
        let what = match (&artifact.old, &artifact.new) {
            (None, Some(v)) => format!("added    {} ({} bytes, {})", artifact.path, v.size, short(&v.sha256)),
            (Some(v), None) => format!("removed  {} ({} bytes, {})", artifact.path, v.size, short(&v.sha256)),
            (Some(a), Some(b)) => format!(
                "changed  {} ({} -> {} bytes, {} -> {})",
                artifact.path,
                a.size,
                b.size,
                short(&a.sha256),
                short(&b.sha256)
            ),
            (None, None) => continue,
        };
        println!("  {what}");
    }
    for artifact in &difference.artifacts {
        if let Some(text) = artifact.text_diff.as_deref().filter(|t| !t.is_empty()) {
            use std::io::Write as _;
            let _ = write!(std::io::stdout(), "{}", crate::terminal_text(text));
        }
    }
    super::ok()
}
