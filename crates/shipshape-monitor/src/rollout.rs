//! Running a canary: judge the step under way, then abort, step up, or hold — the same for
//! `shipshape canary evaluate` and `shipshape serve`'s scheduler.

use serde_json::{Value, json};
use shipshape_core::canary::{self, CanaryState, Paths};
use shipshape_core::deploy::{self, DeployOutcome};
use shipshape_core::infra::clock::Time;
use shipshape_core::infra::hash::Progress;
use shipshape_core::layout::Workspace;

use crate::canary::{CompareSettings, Comparison, Verdict};
use crate::error::Result;
use crate::monitor::Monitor;

/// The comparison of the current step: `[step start, now)`.
pub fn compare(workspace: &Workspace, state: &CanaryState, now: Time) -> Result<(Vec<Comparison>, u64)> {
    let monitor = Monitor::open(workspace.clone())?;
    let from = state.step_started_at.unix_seconds();
    let to = now.unix_seconds();
    let settings = settings_of(&workspace.config.canary);
    let comparisons = crate::canary::compare(
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

/// The comparison's settings from `[canary]`.
pub fn settings_of(config: &shipshape_core::config::CanaryConfig) -> CompareSettings {
    CompareSettings {
        block: config.block.0.seconds(),
        confidence: config.confidence.0,
        tightest_at: config.tightest_at.0,
        harm_margin_ratio: config.harm_margin_ratio.0,
        harm_margin_return: config.harm_margin_return.0,
        noninferiority_margin_ratio: config.noninferiority_margin_ratio.0,
        noninferiority_margin_return: config.noninferiority_margin_return.0,
        harm_margin_field: config.harm_margin_field.0,
        noninferiority_margin_field: config.noninferiority_margin_field.0,
    }
}

/// What the evidence says now.
pub enum Decision {
    /// Abort: the candidate harms (why).
    Harm(String),
    /// Step up: non-inferior after the step's time and trades (why).
    StepUp(String),
    /// Wait (what is missing).
    Hold(String),
}

/// The decision the evidence supports now.
pub fn decide(state: &CanaryState, comparisons: &[Comparison], trades: u64, now: Time) -> Decision {
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

/// Finish a change a crash interrupted: when the allocation does not give the candidate the
/// state's fraction from its complete tree (shipshape stopped between writing the state and the
/// allocation), rebuild the tree if it is missing and write the allocation the state says.
fn repair(
    workspace: &Workspace,
    paths: &Paths,
    state: &CanaryState,
    now: Time,
    progress: &dyn Progress,
) -> Result<Option<Value>> {
    let allocation = canary::read_allocation(&paths.allocation)?;
    let candidate_share = allocation.as_ref().and_then(|a| a.releases.iter().find(|s| s.role == "candidate"));
    let tree = paths.candidate_tree(&state.candidate);
    let consistent = candidate_share.is_some_and(|share| {
        share.release_id == state.candidate && (share.fraction - state.fraction()).abs() < 1e-9 && share.tree == tree
    }) && tree.is_dir();
    if consistent {
        return Ok(None);
    }
    let manifest = workspace.manifests_dir().join(format!("{}.yaml", state.candidate));
    let (loaded, _) = shipshape_core::pipeline::verify::trusted(workspace, &manifest, now, progress)?;
    canary::materialise(workspace, paths, &loaded)?;
    let generation = canary::next_generation(paths)?;
    canary::write_allocation(
        &paths.allocation,
        &state.allocation(paths, generation, now, "repaired after an interruption"),
    )?;
    canary::log(
        paths,
        &json!({
            "at": now.to_string(), "action": "repair", "by": "shipshape-canary",
            "reason": "the allocation did not match the canary (an interrupted change): rewritten",
            "stable": state.stable, "candidate": state.candidate, "fraction": state.fraction(), "generation": generation,
        }),
    )?;
    Ok(Some(
        json!({ "outcome": "repaired", "generation": generation, "reason": "the allocation was rewritten for the canary under way" }),
    ))
}

/// Judge the canary under way (if any) at `now` and act: abort on harm, step up, or hold. Returns
/// what happened as JSON (`outcome`: `aborted`, `stepped`, `promoted`, `hold`), or `None` without a canary.
pub fn evaluate(workspace: &Workspace, now: Time, progress: &dyn Progress) -> Result<Option<Value>> {
    let paths = Paths::of(workspace)?;
    let Some(state) = canary::read_state(&paths)? else { return Ok(None) };
    if let Some(repaired) = repair(workspace, &paths, &state, now, progress)? {
        return Ok(Some(repaired));
    }
    let (comparisons, trades) = compare(workspace, &state, now)?;
    let stats = serde_json::to_value(&comparisons).unwrap_or(Value::Null);
    match decide(&state, &comparisons, trades, now) {
        Decision::Harm(why) => {
            canary::abort(workspace, now, "shipshape-canary", &format!("harm: {why}"))?;
            Ok(Some(json!({ "outcome": "aborted", "reason": why, "comparisons": stats })))
        }
        Decision::StepUp(why) => {
            Ok(Some(step_up(workspace, &paths, state, now, "shipshape-canary", &why, &comparisons, progress)?))
        }
        Decision::Hold(why) => Ok(Some(json!({ "outcome": "hold", "reason": why, "comparisons": stats }))),
    }
}

/// One step up; from the last step below 100, the candidate becomes the stable release: the
/// allocation gives it all the capital from its tree, then it is deployed to the target (journaled,
/// checked, heightened monitoring), then the allocation names the target, then the tree goes.
#[allow(clippy::too_many_arguments)]
pub fn step_up(
    workspace: &Workspace,
    paths: &Paths,
    mut state: CanaryState,
    now: Time,
    by: &str,
    why: &str,
    comparisons: &[Comparison],
    progress: &dyn Progress,
) -> Result<Value> {
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
    let outcome = deploy::deploy(workspace, &request, now, progress, &mut |_| {}, &mut |_| Ok(true))?;
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
