//! `shipshape canary start|status|evaluate|promote|abort|log` (see `shipshape_core::canary` for the
//! files and `shipshape_monitor::canary` for the statistics).

use std::process::ExitCode;

use serde_json::{Value, json};
use shipshape_core::canary::{self, CanaryState, Paths};
use shipshape_core::deploy;
use shipshape_core::infra::clock::Duration as ConfigDuration;
use shipshape_core::layout::Workspace;
use shipshape_core::pipeline::manifest;
use shipshape_core::{Error, registry};
use shipshape_monitor::rollout::{self, Decision};

use crate::cli::{CanaryAction, CanaryArgs};
use crate::commands::deploy::{confirm, deployer};
use crate::context::Context;

/// `shipshape canary …`.
pub fn run(context: &Context, args: &CanaryArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    if let Some(env) = &args.env {
        return fleet(context, &workspace, env, args);
    }
    match &args.action {
        CanaryAction::Start { release, steps, step_after, min_trades, yes } => {
            let config = &workspace.config.canary;
            let steps =
                steps.clone().unwrap_or_else(|| config.steps.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
            let step_after = step_after.clone().unwrap_or_else(|| config.step_after.0.to_string());
            let min_trades = min_trades.unwrap_or(config.min_trades);
            start(context, &workspace, release, &steps, &step_after, min_trades, *yes, args.json)
        }
        CanaryAction::Status => status(context, &workspace, args.json),
        CanaryAction::Evaluate { at } => {
            let now = match at {
                Some(text) => super::monitor::parse_time("--at", text)?,
                None => context.now(),
            };
            let progress = context.progress();
            match rollout::evaluate(&workspace, now, progress.as_ref())? {
                None => {
                    Err(Error::Usage("no canary is under way: start one with `shipshape canary start RELEASE`".into())
                        .into())
                }
                Some(outcome) => {
                    report(args.json, &outcome)?;
                    Ok(if outcome["outcome"] == "aborted" { ExitCode::from(4) } else { ExitCode::SUCCESS })
                }
            }
        }
        CanaryAction::Promote { note } => {
            let now = context.now();
            let (state, paths) = under_way(&workspace)?;
            let note = note.clone().unwrap_or_else(|| "promoted by hand".into());
            let progress = context.progress();
            let outcome = rollout::step_up(&workspace, &paths, state, now, &deployer(), &note, &[], progress.as_ref())?;
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

/// `shipshape canary … --env ENV`: the environment's canary in the registry; every host's agent
/// applies it (fetch, verify against its own trust root, build the tree, write its allocation) and
/// reports the canary generation it runs. `evaluate --env` (and `serve`'s timer) judges it from the
/// events in this workspace's monitor; `promote` and `abort` override.
fn fleet(context: &Context, workspace: &Workspace, env: &str, args: &CanaryArgs) -> anyhow::Result<ExitCode> {
    use shipshape_fleet::promote;
    use shipshape_fleet::registry::Who;
    let mut registry = super::fleet::registry_of(workspace)?;
    let now = context.now().unix_seconds();
    let by = deployer();
    let outcome = match &args.action {
        CanaryAction::Start { release, steps, yes, .. } => {
            let fleet = super::fleet::fleet_config(workspace)?;
            let store = super::fleet::remote_store(workspace)?;
            let text = steps.clone().unwrap_or_else(|| {
                workspace.config.canary.steps.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            });
            let steps = canary::parse_steps(&text).map_err(|e| Error::Usage(format!("--steps `{text}`: {e}")))?;
            let release = release.to_string_lossy().into_owned();
            if !confirm(&format!("Start a canary of {release} at {} % of capital in {env}?", steps[0]), *yes)? {
                anyhow::bail!("not confirmed: no canary started");
            }
            let who = Who { by: &by, note: "canary started", at: now };
            let generation = promote::canary_start(&mut registry, &store, &fleet, &release, env, &steps, &who)?;
            json!({ "outcome": "started", "environment": env, "candidate": release, "fraction": f64::from(steps[0]) / 100.0, "generation": generation })
        }
        CanaryAction::Promote { note } => {
            let note = note.clone().unwrap_or_else(|| "promoted by hand".into());
            let who = Who { by: &by, note: &note, at: now };
            let percent = promote::canary_step(&mut registry, env, &who)?;
            if percent >= 100 {
                json!({ "outcome": "promoted", "environment": env, "reason": note })
            } else {
                json!({ "outcome": "stepped", "environment": env, "to": percent, "reason": note })
            }
        }
        CanaryAction::Abort { note } => {
            let note = note.clone().unwrap_or_else(|| "aborted by hand".into());
            let who = Who { by: &by, note: &note, at: now };
            let candidate = promote::canary_abort(&mut registry, env, &who)?;
            json!({ "outcome": "aborted", "environment": env, "candidate": candidate, "reason": note })
        }
        CanaryAction::Status | CanaryAction::Log => {
            let canary = registry.canary(env)?;
            let hosts: Vec<Value> = registry
                .hosts(Some(env))?
                .into_iter()
                .map(|h| json!({ "host": h.host, "runs": h.release_id, "canary_generation": h.canary_generation, "message": h.message }))
                .collect();
            let history: Vec<_> =
                registry.history(Some(env), 50)?.into_iter().filter(|e| e.kind.starts_with("canary")).collect();
            let value = json!({ "environment": env, "canary": canary, "hosts": hosts, "history": history });
            if args.json {
                super::print_json(&value)?;
            } else {
                match &canary {
                    Some(c) => println!(
                        "canary of {} in {env} at {} % (steps {}), generation {}",
                        c.release_id, c.percent, c.steps, c.generation
                    ),
                    None => println!("no canary under way in {env}"),
                }
                for h in &hosts {
                    println!(
                        "  {}: runs {}, canary generation {}",
                        h["host"].as_str().unwrap_or_default(),
                        h["runs"].as_str().unwrap_or_default(),
                        h["canary_generation"]
                    );
                }
            }
            return super::ok();
        }
        CanaryAction::Evaluate { at } => {
            let when = match at {
                Some(text) => super::monitor::parse_time("--at", text)?,
                None => context.now(),
            };
            let Some(outcome) = promote::canary_evaluate(&mut registry, workspace, env, when)? else {
                return Err(Error::Usage(format!("no canary is under way in {env}")).into());
            };
            report(args.json, &outcome)?;
            return Ok(if outcome["outcome"] == "aborted" { ExitCode::from(4) } else { ExitCode::SUCCESS });
        }
    };
    report(args.json, &outcome)
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
    let (comparisons, trades) = rollout::compare(workspace, &state, now)?;
    let decision = match rollout::decide(&state, &comparisons, trades, now) {
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
