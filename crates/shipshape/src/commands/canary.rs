//! `shipshape canary start|status|evaluate|promote|abort|log` (see `shipshape_core::canary` for the
//! files and `shipshape_monitor::canary` for the statistics).

use std::process::ExitCode;

use serde_json::{Value, json};
use shipshape_core::canary::{self, CanaryState, Paths};
use shipshape_core::deploy::{self, DeployOutcome};
use shipshape_core::infra::clock::{Duration as ConfigDuration, Time};
use shipshape_core::layout::Workspace;
use shipshape_core::pipeline::manifest;
use shipshape_core::{Error, registry};
use shipshape_monitor::canary::{CompareSettings, Comparison, Verdict};
use shipshape_monitor::monitor::Monitor;

use crate::cli::{CanaryAction, CanaryArgs};
use crate::commands::deploy::{confirm, deployer};
use crate::context::Context;

/// `shipshape canary …`.
pub fn run(context: &Context, args: &CanaryArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    match &args.action {
        CanaryAction::Start { release, steps, step_after, min_trades, yes } => {
            start(context, &workspace, release, steps, step_after, *min_trades, *yes, args.json)
        }
        CanaryAction::Status => status(context, &workspace, args.json),
        CanaryAction::Evaluate { at } => {
            let now = match at {
                Some(text) => super::monitor::parse_time("--at", text)?,
                None => context.now(),
            };
            evaluate(context, &workspace, now, args.json)
        }
        CanaryAction::Promote { note } => {
            let now = context.now();
            let (state, paths) = under_way(&workspace)?;
            let note = note.clone().unwrap_or_else(|| "promoted by hand".into());
            let outcome = step_up(context, &workspace, &paths, state, now, &deployer(), &note, &[])?;
            report(args.json, &outcome)
        }
        CanaryAction::Abort { note } => {
            let note = note.clone().unwrap_or_else(|| "aborted by hand".into());
            match canary::abort(&workspace, context.now(), &deployer(), &note)? {
                Some(state) => report(
                    args.json,
                    &json!({ "outcome": "aborted", "candidate": state.candidate, "stable": state.stable, "reason": note }),
                ),
                None => Err(Error::Usage("no canary is under way: nothing to abort".into()).into()),
            }
        }
        CanaryAction::Log => {
            let paths = Paths::of(&workspace)?;
            let records = canary::read_log(&paths)?;
            if args.json {
                super::print_json(&records)?;
            } else {
                for r in &records {
                    println!(
                        "{}  {:<9} {} (stable {})  by {}: {}",
                        r["at"].as_str().unwrap_or_default(),
                        r["action"].as_str().unwrap_or_default(),
                        r["candidate"].as_str().unwrap_or_default(),
                        r["stable"].as_str().unwrap_or_default(),
                        r["by"].as_str().unwrap_or_default(),
                        r["reason"].as_str().unwrap_or_default()
                    );
                }
            }
            super::ok()
        }
    }
}

fn under_way(workspace: &Workspace) -> anyhow::Result<(CanaryState, Paths)> {
    let paths = Paths::of(workspace)?;
    match canary::read_state(&paths)? {
        Some(state) => Ok((state, paths)),
        None => {
            Err(Error::Usage("no canary is under way: start one with `shipshape canary start RELEASE`".into()).into())
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn start(
    context: &Context,
    workspace: &Workspace,
    release: &std::path::Path,
    steps: &str,
    step_after: &str,
    min_trades: u64,
    yes: bool,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let now = context.now();
    let steps = canary::parse_steps(steps).map_err(|e| Error::Usage(format!("--steps `{steps}`: {e}")))?;
    let step_after_seconds = step_after
        .parse::<ConfigDuration>()
        .map_err(|e| Error::Usage(format!("--step-after `{step_after}`: {e}")))?
        .seconds();
    if step_after_seconds <= 0 {
        return Err(Error::Usage("--step-after must be greater than zero".into()).into());
    }
    let paths = Paths::of(workspace)?;
    if let Some(state) = canary::read_state(&paths)? {
        return Err(Error::Usage(format!(
            "a canary of {} is under way (at {} %): `shipshape canary status`, or end it with `shipshape canary abort`",
            state.candidate, state.steps[state.step]
        ))
        .into());
    }
    let Some(active) = registry::get_active_release(workspace, now)? else {
        return Err(Error::Usage(
            "nothing is deployed: a canary trades beside a stable release; deploy one first".into(),
        )
        .into());
    };
    let path = manifest::resolve_argument(workspace, &context.start_dir, release)?;
    let progress = context.progress();
    let (loaded, _) = shipshape_core::pipeline::verify::trusted(workspace, &path, now, progress.as_ref())?;
    let candidate = loaded.manifest.release_id.clone();
    if candidate == active.release_id {
        return Err(
            Error::Usage(format!("{candidate} is the active release already: a canary needs another release")).into()
        );
    }
    if !confirm(
        &format!("Start a canary of {candidate} at {} % of capital beside {}?", steps[0], active.release_id),
        yes,
    )? {
        anyhow::bail!("not confirmed: no canary started");
    }
    let target = deploy::Target::of(workspace)?;
    let _locks = deploy::lock(workspace, &target, "canary start", now)?;
    let tree = canary::materialise(workspace, &paths, &loaded)?;
    let state = CanaryState {
        schema_version: 1,
        stable: active.release_id.clone(),
        candidate: candidate.clone(),
        steps,
        step: 0,
        started_at: now,
        step_started_at: now,
        step_after_seconds,
        min_trades,
        started_by: deployer(),
    };
    // The state first (a crash then leaves a canary with the old allocation, which `evaluate` and
    // `abort` handle), then the allocation that sends capital to the complete tree.
    canary::write_state(&paths, &state)?;
    let generation = canary::next_generation(&paths)?;
    canary::write_allocation(&paths.allocation, &state.allocation(&paths, generation, now, "canary started"))?;
    canary::log(
        &paths,
        &json!({
            "at": now.to_string(), "action": "start", "by": state.started_by, "reason": format!("{} % of capital", state.steps[0]),
            "stable": state.stable, "candidate": state.candidate, "fraction": state.fraction(), "generation": generation,
            "steps": state.steps, "step_after_seconds": step_after_seconds, "min_trades": min_trades,
        }),
    )?;
    report(
        json_out,
        &json!({
            "outcome": "started", "candidate": candidate, "stable": active.release_id, "fraction": state.fraction(),
            "candidate_tree": tree, "allocation": paths.allocation, "generation": generation,
        }),
    )
}

/// The comparison of the current step: `[step start, now)`.
fn compare(workspace: &Workspace, state: &CanaryState, now: Time) -> anyhow::Result<(Vec<Comparison>, u64)> {
    let monitor = Monitor::open(workspace.clone())?;
    let from = state.step_started_at.unix_seconds();
    let to = now.unix_seconds();
    let settings = CompareSettings::default();
    let comparisons = shipshape_monitor::canary::compare(
        &monitor.db,
        &monitor.policies,
        state.stable.as_str(),
        state.candidate.as_str(),
        (from, to),
        &settings,
        monitor.unit(),
    )?;
    let patterns: Vec<String> = monitor.policies.iter().flat_map(|p| p.strategies.clone()).collect();
    let trades = monitor.db.window_of(Some(state.candidate.as_str()), &patterns, from, to)?;
    Ok((comparisons, trades.trades))
}

/// What the evidence says now.
enum Decision {
    Harm(String),
    StepUp(String),
    Hold(String),
}

fn decide(state: &CanaryState, comparisons: &[Comparison], trades: u64, now: Time) -> Decision {
    if let Some(harm) = comparisons.iter().find(|c| c.verdict == Verdict::Harm) {
        return Decision::Harm(format!(
            "{}: candidate − stable = {:+.4} (confidence sequence {:+.4} … {:+.4}) is below −{} over {} blocks",
            harm.metric,
            harm.difference.unwrap_or_default(),
            harm.low.unwrap_or_default(),
            harm.high.unwrap_or_default(),
            harm.harm_margin,
            harm.blocks
        ));
    }
    let elapsed = now.unix_seconds() - state.step_started_at.unix_seconds();
    let mut waiting = Vec::new();
    if elapsed < state.step_after_seconds {
        waiting.push(format!("the step has run {} of {} s", elapsed.max(0), state.step_after_seconds));
    }
    if trades < state.min_trades {
        waiting.push(format!("{trades} of {} candidate trades", state.min_trades));
    }
    if comparisons.is_empty() {
        waiting.push("no metric to compare".into());
    }
    for c in comparisons.iter().filter(|c| c.verdict != Verdict::NonInferior) {
        waiting.push(match c.low {
            Some(low) => {
                format!("{}: not yet non-inferior (lower bound {low:+.4} vs −{})", c.metric, c.noninferiority_margin)
            }
            None => format!("{}: inconclusive ({} blocks with both releases)", c.metric, c.blocks),
        });
    }
    if waiting.is_empty() {
        Decision::StepUp(format!(
            "non-inferior on {} after {} candidate trades and {} s",
            comparisons.iter().map(|c| c.metric.as_str()).collect::<Vec<_>>().join(", "),
            trades,
            elapsed
        ))
    } else {
        Decision::Hold(waiting.join("; "))
    }
}

fn status(context: &Context, workspace: &Workspace, json_out: bool) -> anyhow::Result<ExitCode> {
    let paths = Paths::of(workspace)?;
    let allocation = canary::read_allocation(&paths.allocation)?;
    let Some(state) = canary::read_state(&paths)? else {
        if json_out {
            super::print_json(&json!({ "canary": null, "allocation": allocation }))?;
        } else {
            println!("no canary under way");
        }
        return super::ok();
    };
    let now = context.now();
    let (comparisons, trades) = compare(workspace, &state, now)?;
    let decision = match decide(&state, &comparisons, trades, now) {
        Decision::Harm(why) => json!({ "next": "abort", "why": why }),
        Decision::StepUp(why) => json!({ "next": "step_up", "why": why }),
        Decision::Hold(why) => json!({ "next": "hold", "why": why }),
    };
    if json_out {
        super::print_json(&json!({
            "canary": state, "fraction": state.fraction(), "candidate_trades": trades,
            "comparisons": comparisons, "decision": decision, "allocation": allocation,
        }))?;
        return super::ok();
    }
    println!(
        "canary {} at {} % of capital (step {} of {}: {:?}) beside stable {}",
        state.candidate,
        state.steps[state.step],
        state.step + 1,
        state.steps.len(),
        state.steps,
        state.stable
    );
    println!(
        "step started {}; {} candidate trades in it (at least {})",
        state.step_started_at, trades, state.min_trades
    );
    for c in &comparisons {
        println!(
            "  {:<24} {:?}: candidate {} stable {}  difference {} [{} … {}] over {} blocks",
            c.metric,
            c.verdict,
            fmt(c.candidate_value),
            fmt(c.stable_value),
            fmt(c.difference),
            fmt(c.low),
            fmt(c.high),
            c.blocks
        );
    }
    println!(
        "next: {} — {}",
        decision["next"].as_str().unwrap_or_default(),
        decision["why"].as_str().unwrap_or_default()
    );
    if let Some(a) = allocation {
        println!("allocation generation {} ({})", a.generation, paths.allocation.display());
    }
    super::ok()
}

fn fmt(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:+.4}"))
}

fn evaluate(context: &Context, workspace: &Workspace, now: Time, json_out: bool) -> anyhow::Result<ExitCode> {
    let (state, paths) = under_way(workspace)?;
    let (comparisons, trades) = compare(workspace, &state, now)?;
    let stats = serde_json::to_value(&comparisons).unwrap_or(Value::Null);
    match decide(&state, &comparisons, trades, now) {
        Decision::Harm(why) => {
            canary::abort(workspace, now, "shipshape-canary", &format!("harm: {why}"))?;
            report(json_out, &json!({ "outcome": "aborted", "reason": why, "comparisons": stats }))?;
            Ok(ExitCode::from(4))
        }
        Decision::StepUp(why) => {
            let outcome = step_up(context, workspace, &paths, state, now, "shipshape-canary", &why, &comparisons)?;
            report(json_out, &outcome)
        }
        Decision::Hold(why) => report(json_out, &json!({ "outcome": "hold", "reason": why, "comparisons": stats })),
    }
}

/// One step up; from the last step below 100, the candidate becomes the stable release: the
/// allocation gives it all the capital from its tree, then it is deployed to the target (journaled,
/// checked, heightened monitoring), then the allocation names the target, then the tree goes.
#[allow(clippy::too_many_arguments)]
fn step_up(
    context: &Context,
    workspace: &Workspace,
    paths: &Paths,
    mut state: CanaryState,
    now: Time,
    by: &str,
    why: &str,
    comparisons: &[Comparison],
) -> anyhow::Result<Value> {
    let from = state.steps[state.step];
    state.step += 1;
    state.step_started_at = now;
    let to = state.steps[state.step];
    let generation = canary::next_generation(paths)?;
    let stats = serde_json::to_value(comparisons).unwrap_or(Value::Null);
    if to < 100 {
        canary::write_state(paths, &state)?;
        canary::write_allocation(
            &paths.allocation,
            &state.allocation(paths, generation, now, &format!("step {from} % -> {to} %")),
        )?;
        canary::log(
            paths,
            &json!({
                "at": now.to_string(), "action": "step", "by": by, "reason": why, "stable": state.stable,
                "candidate": state.candidate, "fraction": state.fraction(), "generation": generation, "comparisons": stats,
            }),
        )?;
        return Ok(json!({ "outcome": "stepped", "from": from, "to": to, "generation": generation, "reason": why }));
    }
    // 100 %: the candidate's tree alone, then the deploy, then the target alone.
    canary::write_state(paths, &state)?;
    canary::write_allocation(
        &paths.allocation,
        &state.allocation(paths, generation, now, "promoting: the candidate trades all capital"),
    )?;
    let manifest = workspace.manifests_dir().join(format!("{}.yaml", state.candidate));
    let request = deploy::DeployRequest { manifest, by: format!("{by} (canary)"), dry_run: false };
    let progress = context.progress();
    let outcome = deploy::deploy(workspace, &request, now, progress.as_ref(), &mut |_| {}, &mut |_| Ok(true))?;
    match outcome {
        DeployOutcome::Done(_) => {}
        other => {
            // The deploy failed its checks (and rolled back): abort, capital back to the stable.
            let reason =
                format!("the promoting deploy did not complete: {other:?}").chars().take(300).collect::<String>();
            canary::abort(workspace, now, by, &reason)?;
            return Ok(json!({ "outcome": "aborted", "reason": reason }));
        }
    }
    let final_generation = generation + 1;
    canary::write_allocation(
        &paths.allocation,
        &canary::Allocation::stable_only(
            final_generation,
            &state.candidate,
            &paths.stable_tree,
            now,
            "canary promoted: the candidate is the stable release",
        ),
    )?;
    canary::clear_state(paths)?;
    canary::remove_tree(paths, &state.candidate)?;
    canary::log(
        paths,
        &json!({
            "at": now.to_string(), "action": "promote", "by": by, "reason": why, "stable": state.candidate,
            "candidate": state.candidate, "previous_stable": state.stable, "fraction": 1.0,
            "generation": final_generation, "comparisons": stats,
        }),
    )?;
    Ok(json!({ "outcome": "promoted", "release": state.candidate, "generation": final_generation, "reason": why }))
}

fn report(json_out: bool, value: &Value) -> anyhow::Result<ExitCode> {
    if json_out {
        super::print_json(value)?;
    } else {
        let outcome = value["outcome"].as_str().unwrap_or_default();
        let reason = value["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
        match outcome {
            "started" => println!(
                "canary {} started at {} % beside {}; allocation generation {} in {}",
                value["candidate"].as_str().unwrap_or_default(),
                value["fraction"].as_f64().unwrap_or_default() * 100.0,
                value["stable"].as_str().unwrap_or_default(),
                value["generation"],
                value["allocation"].as_str().unwrap_or_default()
            ),
            "stepped" => println!("canary stepped up {} % -> {} %{reason}", value["from"], value["to"]),
            other => println!("canary {other}{reason}"),
        }
    }
    super::ok()
}
