//! What every environment wants and what every host runs, for `status --env`, the dashboard's
//! fleet panel (`/api/v1/fleet`) and `/metrics`: one reading of the registry, one shape.

use serde::Serialize;
use shipshape_core::config::FleetConfig;

use crate::error::Result;
use crate::registry::{CanaryPointer, HistoryEvent, Pointer, Registry};

/// One host as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostView {
    /// Its name.
    pub host: String,
    /// The release it runs (empty: none).
    pub observed: String,
    /// It runs the environment's desired release.
    pub in_sync: bool,
    /// Its last reported health (`healthy`, `failed`, `refused`, `degraded`, `drift`, `applying`).
    pub health: String,
    /// Its last report is older than the fleet's `heartbeat_timeout`.
    pub stale: bool,
    /// Seconds since its last report.
    pub heartbeat_age_seconds: i64,
    /// Files in its target differ from its release.
    pub drift: bool,
    /// Alerts firing for its release.
    pub firing_alerts: u64,
    /// The pointer generation it last acted on.
    pub generation: u64,
    /// What happened, for people.
    pub message: String,
    /// Since when it runs `observed` (unix seconds).
    pub running_since: i64,
    /// In sync, healthy, fresh and without drift.
    pub well: bool,
    /// The environment's canary generation it applied (0: never one).
    pub canary_generation: u64,
}

/// One environment as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvironmentView {
    /// Its name.
    pub environment: String,
    /// The environment a release must have soaked in first.
    pub requires: Option<String>,
    /// That soak, in seconds.
    pub soak_seconds: u64,
    /// Agents repair drift here.
    pub repair_drift: bool,
    /// The desired release (None: never set).
    pub desired: Option<Pointer>,
    /// The canary under way (None: none).
    pub canary: Option<CanaryPointer>,
    /// Its hosts, by name.
    pub hosts: Vec<HostView>,
    /// The latest history events, newest first.
    pub history: Vec<HistoryEvent>,
}

impl EnvironmentView {
    /// Every host is well (and there is at least one).
    pub fn all_well(&self) -> bool {
        !self.hosts.is_empty() && self.hosts.iter().all(|h| h.well)
    }
}

/// The environments named in `names` (every configured one when empty), with their hosts judged at
/// `now` (unix seconds) and up to `history` recent events each.
pub fn overview(
    registry: &mut Registry,
    fleet: &FleetConfig,
    names: &[String],
    now: i64,
    history: usize,
) -> Result<Vec<EnvironmentView>> {
    let timeout = fleet.heartbeat_timeout.0.seconds();
    let mut out = Vec::new();
    for config in &fleet.environments {
        let name = &config.name.0;
        if !names.is_empty() && !names.contains(name) {
            continue;
        }
        let desired = registry.desired(name)?;
        let hosts = registry
            .hosts(Some(name))?
            .into_iter()
            .map(|h| {
                let age = now - h.heartbeat_at;
                let in_sync = desired.as_ref().is_some_and(|d| d.release_id == h.release_id);
                let stale = age > timeout;
                HostView {
                    well: in_sync && h.health == "healthy" && !stale && !h.drift,
                    host: h.host,
                    observed: h.release_id,
                    in_sync,
                    health: h.health,
                    stale,
                    heartbeat_age_seconds: age,
                    drift: h.drift,
                    firing_alerts: h.firing_alerts,
                    generation: h.generation,
                    message: h.message,
                    running_since: h.running_since,
                    canary_generation: h.canary_generation,
                }
            })
            .collect();
        let history = if history == 0 { Vec::new() } else { registry.history(Some(name), history)? };
        let canary = registry.canary(name)?;
        out.push(EnvironmentView {
            environment: name.clone(),
            requires: config.requires.as_ref().map(|r| r.0.clone()),
            soak_seconds: config.soak.0.seconds().max(0) as u64,
            repair_drift: config.repair_drift,
            desired,
            canary,
            hosts,
            history,
        });
    }
    Ok(out)
}
