//! Pointer moves with their policy. [`promote`] makes a published release an environment's
//! desired release when the environment's policy holds (for one that `requires` another: the
//! release ran there for at least `soak`, every host fresh, healthy, without drift and with no
//! alert firing); [`rollback`] moves an environment back to its last known good release (or a
//! named one that was good there). Both are compare-and-swap moves recorded with who and why; a
//! promotion never moves an environment to a lower sequence — going back is a rollback.

use serde::Serialize;
use shipshape_core::config::FleetConfig;

use crate::error::{Error, Result};
use crate::registry::{HostReport, Pointer, Registry, Target, Who};
use crate::remote::{ReleaseIndex, RemoteStore};

/// Why one host of the required environment does not vouch for the release yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostVerdict {
    /// The host.
    pub host: String,
    /// Empty when it vouches; otherwise why not.
    pub problem: String,
}

/// The soak check of `release` in `environment`: one verdict per host (none: no host there).
pub fn soak(
    registry: &mut Registry,
    fleet: &FleetConfig,
    environment: &str,
    release: &str,
    soak_seconds: i64,
    now: i64,
) -> Result<Vec<HostVerdict>> {
    let timeout = fleet.heartbeat_timeout.0.seconds();
    let hosts: Vec<HostReport> = registry.hosts(Some(environment))?;
    Ok(hosts
        .into_iter()
        .map(|h| {
            let problem = if h.heartbeat_at < now - timeout {
                format!("no report for {} s (stale)", now - h.heartbeat_at)
            } else if h.release_id != release {
                format!("runs {}", if h.release_id.is_empty() { "nothing" } else { &h.release_id })
            } else if h.health != "healthy" {
                format!("is {}: {}", h.health, h.message)
            } else if h.drift {
                "has drift".to_string()
            } else if h.firing_alerts > 0 {
                format!("has {} alert(s) firing", h.firing_alerts)
            } else if h.running_since > now - soak_seconds {
                format!("ran it for {} s of the {} s soak", (now - h.running_since).max(0), soak_seconds)
            } else {
                String::new()
            };
            HostVerdict { host: h.host, problem }
        })
        .collect())
}

fn target(index: &ReleaseIndex) -> Target {
    Target {
        release_id: index.release_id.clone(),
        manifest_sha256: index.manifest_sha256.to_string(),
        sequence: index.sequence,
        chain: index.environment.clone(),
    }
}

fn published(store: &RemoteStore, release: &str) -> Result<ReleaseIndex> {
    store.index(release)?.ok_or_else(|| {
        Error::Invalid(format!(
            "{release} is not published in {}: run `shipshape publish {release}` first",
            store.display()
        ))
    })
}

/// The environment's promotion policy for `release`: it ran in the required environment for the
/// soak time, on every host, healthy, without drift and with no alert firing.
fn check_soak(
    registry: &mut Registry,
    fleet: &FleetConfig,
    policy: &shipshape_core::config::EnvironmentConfig,
    environment: &str,
    release: &str,
    now: i64,
) -> Result<()> {
    if let Some(required) = &policy.requires {
        let soak_seconds = policy.soak.0.seconds();
        let verdicts = soak(registry, fleet, &required.0, release, soak_seconds, now)?;
        if verdicts.is_empty() {
            return Err(Error::Refused(format!(
                "{environment} requires {release} to run in {} first, and no host reports there",
                required.0
            )));
        }
        let problems: Vec<String> =
            verdicts.iter().filter(|v| !v.problem.is_empty()).map(|v| format!("{} {}", v.host, v.problem)).collect();
        if !problems.is_empty() {
            return Err(Error::Refused(format!(
                "{environment} requires {release} to run in {} for {} on every host, healthy, without drift and with no alert firing: {}",
                required.0,
                policy.soak.0,
                problems.join("; ")
            )));
        }
    }
    Ok(())
}

/// Make `release` the desired release of `environment`, if its policy holds.
pub fn promote(
    registry: &mut Registry,
    store: &RemoteStore,
    fleet: &FleetConfig,
    release: &str,
    environment: &str,
    who: &Who<'_>,
) -> Result<Pointer> {
    let now = who.at;
    let policy = fleet.environment(environment).ok_or_else(|| {
        Error::Invalid(format!(
            "no environment `{environment}` in [[fleet.environments]] (configured: {})",
            fleet.environments.iter().map(|e| e.name.0.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let index = published(store, release)?;
    let current = registry.desired(environment)?;
    if let Some(current) = &current {
        if current.release_id == release {
            return Err(Error::Invalid(format!("{release} is already the desired release of {environment}")));
        }
        if current.chain == index.environment && current.sequence > index.sequence {
            return Err(Error::Refused(format!(
                "{release} (sequence {}) is older than {environment}'s {} (sequence {}): going back is a rollback — `shipshape rollback --env {environment} --to {release}`",
                index.sequence, current.release_id, current.sequence
            )));
        }
    }
    check_soak(registry, fleet, policy, environment, release, now)?;
    let expected = current.map_or(0, |c| c.generation);
    registry.move_pointer(environment, expected, &target(&index), "promote", who)
}

/// Move `environment` back to its last known good release, or to `to` when it was good there.
pub fn rollback(
    registry: &mut Registry,
    store: &RemoteStore,
    environment: &str,
    to: Option<&str>,
    who: &Who<'_>,
) -> Result<Pointer> {
    let current = registry.desired(environment)?.ok_or_else(|| {
        Error::Invalid(format!("{environment} has no desired release: there is nothing to roll back"))
    })?;
    let statuses = registry.statuses(environment)?;
    let listed = || {
        let good: Vec<&str> = statuses
            .iter()
            .filter(|(id, _, s)| s == "good" && *id != current.release_id)
            .map(|(id, _, _)| id.as_str())
            .collect();
        if good.is_empty() {
            "no other release was good there".to_string()
        } else {
            format!("good there: {}", good.join(", "))
        }
    };
    let target_id = match to {
        Some(id) if id == current.release_id => {
            return Err(Error::Invalid(format!("{id} is already the desired release of {environment}; {}", listed())));
        }
        Some(id) => match statuses.iter().find(|(r, _, _)| r == id) {
            Some((_, _, status)) if status == "good" => id.to_string(),
            Some((_, _, status)) => {
                return Err(Error::Refused(format!(
                    "cannot roll {environment} back to {id}: it is {status} there; {}",
                    listed()
                )));
            }
            None => {
                return Err(Error::Refused(format!(
                    "cannot roll {environment} back to {id}: it never ran there; {}",
                    listed()
                )));
            }
        },
        None => registry.last_known_good(environment)?.ok_or_else(|| {
            Error::Refused(format!(
                "{environment} has no last known good release to roll back to from {}: {}",
                current.release_id,
                listed()
            ))
        })?,
    };
    let index = published(store, &target_id)?;
    // A rollback during a canary ends the canary first: every host gives its capital back.
    if let Some(canary) = registry.canary(environment)? {
        let candidate = canary.target();
        let aborting = Who { by: who.by, note: "the environment is being rolled back", at: who.at };
        registry.set_canary(environment, &candidate, &canary.steps, 0, "canary_abort", &aborting)?;
    }
    registry.move_pointer(environment, current.generation, &target(&index), "rollback", who)
}

/// Start a canary of `release` in `environment` at the first of `steps` (percent, ending at 100):
/// published, newer than the desired release in its chain, and allowed by the environment's
/// promotion policy (soak in the required environment) as a promotion would be.
pub fn canary_start(
    registry: &mut Registry,
    store: &RemoteStore,
    fleet: &FleetConfig,
    release: &str,
    environment: &str,
    steps: &[u32],
    who: &Who<'_>,
) -> Result<u64> {
    let policy = fleet.environment(environment).ok_or_else(|| {
        Error::Invalid(format!(
            "no environment `{environment}` in [[fleet.environments]] (configured: {})",
            fleet.environments.iter().map(|e| e.name.0.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    if let Some(c) = registry.canary(environment)? {
        return Err(Error::Invalid(format!(
            "a canary of {} is under way in {environment} at {} %: step it up or abort it first",
            c.release_id, c.percent
        )));
    }
    let current = registry.desired(environment)?.ok_or_else(|| {
        Error::Invalid(format!("{environment} has no desired release: a canary trades beside one; promote one first"))
    })?;
    let index = published(store, release)?;
    if current.release_id == release {
        return Err(Error::Invalid(format!("{release} is already the desired release of {environment}")));
    }
    if current.chain == index.environment && current.sequence > index.sequence {
        return Err(Error::Refused(format!(
            "{release} (sequence {}) is older than {environment}'s {} (sequence {}): a canary tries a newer release",
            index.sequence, current.release_id, current.sequence
        )));
    }
    check_soak(registry, fleet, policy, environment, release, who.at)?;
    let text: Vec<String> = steps.iter().map(u32::to_string).collect();
    registry.set_canary(environment, &target(&index), &text.join(","), steps[0], "canary_start", who)
}

/// Step the environment's canary up; from the last step below 100 the candidate becomes the
/// desired release (a pointer move, action `canary`) and the canary ends. Returns the new percent.
pub fn canary_step(registry: &mut Registry, environment: &str, who: &Who<'_>) -> Result<u32> {
    let canary = registry
        .canary(environment)?
        .ok_or_else(|| Error::Invalid(format!("no canary is under way in {environment}")))?;
    let steps: Vec<u32> = canary.steps.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let next = steps.iter().copied().find(|s| *s > canary.percent).unwrap_or(100);
    let candidate = canary.target();
    if next >= 100 {
        let expected = registry.desired(environment)?.map_or(0, |p| p.generation);
        registry.finish_canary(environment, expected, &candidate, &canary.steps, who)?;
        return Ok(100);
    }
    registry.set_canary(environment, &candidate, &canary.steps, next, "canary_step", who)?;
    Ok(next)
}

/// End the environment's canary: every host's capital back on the desired release.
pub fn canary_abort(registry: &mut Registry, environment: &str, who: &Who<'_>) -> Result<String> {
    let canary = registry
        .canary(environment)?
        .ok_or_else(|| Error::Invalid(format!("no canary is under way in {environment}: nothing to abort")))?;
    let candidate = canary.target();
    registry.set_canary(environment, &candidate, &canary.steps, 0, "canary_abort", who)?;
    Ok(canary.release_id)
}

/// Judge the environment's canary from the events in `workspace`'s monitor (the engines of every
/// host send theirs to its `serve`, each naming the release that decided): the same statistics and
/// rules as a single machine's canary (`shipshape_monitor::rollout`), over the current step — since
/// the canary's last change — with `[canary] step_after` and `min_trades`. Harm aborts the canary,
/// non-inferiority steps it up (from the last step, a pointer move), else it holds. `None` without
/// a canary.
pub fn canary_evaluate(
    registry: &mut Registry,
    workspace: &shipshape_core::layout::Workspace,
    environment: &str,
    now: shipshape_core::infra::clock::Time,
) -> Result<Option<serde_json::Value>> {
    use shipshape_core::canary::CanaryState;
    use shipshape_core::model::ids::ReleaseId;
    use shipshape_monitor::rollout::{self, Decision};
    let Some(canary) = registry.canary(environment)? else { return Ok(None) };
    let Some(desired) = registry.desired(environment)? else { return Ok(None) };
    let id = |text: &str| ReleaseId::new(text).map_err(|e| Error::Invalid(e.to_string()));
    let steps: Vec<u32> = canary.steps.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let step_started = shipshape_core::infra::clock::Time::new(
        jiff::Timestamp::from_second(canary.moved_at).map_err(|e| Error::Invalid(e.to_string()))?,
        jiff::tz::Offset::UTC,
    );
    let config = &workspace.config.canary;
    let state = CanaryState {
        schema_version: 1,
        stable: id(&desired.release_id)?,
        candidate: id(&canary.release_id)?,
        step: steps.iter().position(|s| *s == canary.percent).unwrap_or(0),
        steps,
        started_at: step_started,
        step_started_at: step_started,
        step_after_seconds: config.step_after.0.seconds(),
        min_trades: config.min_trades,
        started_by: canary.moved_by.clone(),
    };
    let (comparisons, trades) = rollout::compare(workspace, &state, now).map_err(|e| Error::Invalid(e.to_string()))?;
    let stats = serde_json::to_value(&comparisons).unwrap_or(serde_json::Value::Null);
    let at = now.unix_seconds();
    Ok(Some(match rollout::decide(&state, &comparisons, trades, now) {
        Decision::Harm(why) => {
            let note = format!("harm: {why}");
            canary_abort(registry, environment, &Who { by: "shipshape-canary", note: &note, at })?;
            serde_json::json!({ "outcome": "aborted", "environment": environment, "reason": why, "comparisons": stats })
        }
        Decision::StepUp(why) => {
            let percent = canary_step(registry, environment, &Who { by: "shipshape-canary", note: &why, at })?;
            let outcome = if percent >= 100 { "promoted" } else { "stepped" };
            serde_json::json!({ "outcome": outcome, "environment": environment, "to": percent, "reason": why, "comparisons": stats })
        }
        Decision::Hold(why) => {
            serde_json::json!({ "outcome": "hold", "environment": environment, "reason": why, "comparisons": stats })
        }
    }))
}
