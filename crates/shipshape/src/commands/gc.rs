//! `shipshape gc`: what `[retention]` lets go — release directories of a symlink target, finished
//! journals, old history entries (archived), raw events older than the longest window (the
//! aggregates stay). `--dry-run` shows it and changes nothing.

use std::process::ExitCode;

use serde_json::json;
use shipshape_core::deploy::prune::{self, GcReport};
use shipshape_core::infra::clock::Time;

use crate::cli::GcArgs;
use crate::context::Context;
use crate::printable;

/// Raw events: how many, and what goes.
#[derive(Debug, serde::Serialize)]
struct EventsReport {
    stored: u64,
    before: Time,
    keep_seconds: i64,
    removed: u64,
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `shipshape gc [--dry-run] [--json]`.
pub fn run(context: &Context, args: &GcArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let now = context.now();
    let apply = !args.dry_run;
    let report = prune::gc(&workspace, now, apply)?;
    let events = events(&workspace, now, apply)?;
    if args.json {
        super::print_json(&json!({ "dry_run": args.dry_run, "gc": report, "events": events }))?;
        return super::ok();
    }
    print(&workspace, &report, events.as_ref(), apply);
    super::ok()
}

fn events(
    workspace: &shipshape_core::layout::Workspace,
    now: Time,
    apply: bool,
) -> anyhow::Result<Option<EventsReport>> {
    let path = workspace.root.join(shipshape_monitor::db::DB_PATH);
    if !path.exists() {
        return Ok(None);
    }
    let keep =
        shipshape_monitor::policy::raw_event_retention(&workspace.config.monitoring, &workspace.config.retention);
    let before = now.plus(jiff::SignedDuration::from_secs(-keep));
    let mut db = shipshape_monitor::db::Db::open(&path)?;
    let stored = db.event_count()?;
    let removed =
        if apply { db.prune_events(before.unix_seconds())? } else { db.events_before(before.unix_seconds())? };
    Ok(Some(EventsReport { stored, before, keep_seconds: keep, removed }))
}

fn print(workspace: &shipshape_core::layout::Workspace, report: &GcReport, events: Option<&EventsReport>, apply: bool) {
    let retention = &workspace.config.retention;
    let (remove, archive, delete) =
        if apply { ("removed", "archived", "deleted") } else { ("remove", "archive", "delete") };
    if let Some(target) = &report.target {
        if report.releases.is_empty() {
            println!(
                "release directories: none in {} (copy mode keeps none)",
                printable(&target.display().to_string())
            );
        } else {
            println!(
                "release directories in {} (keep_releases = {}):",
                printable(&target.display().to_string()),
                retention.keep_releases.0
            );
            for dir in &report.releases {
                let status = dir.status.map_or("-", |s| s.as_str());
                let last = dir.last_active.map(|t| format!("  last active {t}")).unwrap_or_default();
                match dir.keep {
                    Some(why) => println!("  keep    {}  {status:<11} ({}){last}", dir.release_id, why.as_str()),
                    None => println!("  {remove:<7} {}  {status:<11} frees {}{last}", dir.release_id, size(dir.frees)),
                }
            }
        }
    }
    let done = workspace.display(&workspace.journal_dir().join("done")).into_owned();
    println!(
        "finished journals: {} in {done}/ (keep_journals = {}): {remove} {}{}",
        report.journals.finished,
        retention.keep_journals.0,
        report.journals.remove.len(),
        if report.journals.remove.is_empty() { String::new() } else { format!(" ({})", size(report.journals.frees)) }
    );
    let history = &report.history;
    match (&history.through, &history.archive) {
        (Some(through), Some(file)) => println!(
            "history: {} entries; {archive} {} up to {through} to {file} (history = {}, history_entries = {})",
            history.entries, history.archived, retention.history.0, retention.history_entries.0
        ),
        _ => println!(
            "history: {} entries, none older than {} beyond the newest {} (history_entries): nothing to archive",
            history.entries, retention.history.0, retention.history_entries.0
        ),
    }
    match events {
        Some(e) => println!(
            "raw events: {} stored; {delete} {} from before {} ({}: raw_events = {}); the minute and hour aggregates are kept",
            e.stored,
            e.removed,
            e.before,
            if retention.raw_events.is_some() { "set" } else { "the longest window" },
            shipshape_core::infra::clock::Duration(jiff::SignedDuration::from_secs(e.keep_seconds))
        ),
        None => println!("raw events: no monitor database yet"),
    }
    if !apply {
        println!("dry run: nothing changed (run `shipshape gc` to apply)");
    }
}
