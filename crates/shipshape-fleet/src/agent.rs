//! The pull agent: one per host, reconciling the host with its environment's desired release.
//!
//! Each pass ([`Agent::reconcile`]): read the desired release from the registry; if the host
//! runs something else, fetch it from the remote store (every byte checked against the signed
//! manifest, and the manifest against the hash the pointer names), then apply it with the
//! single-machine deploy engine — journal, locks, post-deploy checks, automatic rollback — which
//! judges approvals and policy against the host's own trust root (its `release/allowed_signers`
//! and policy, never taken from the registry or the store) and refuses a lower sequence than the
//! host accepted. A pointer below that is applied only when it is a recorded `rollback`, and only
//! to a release that ran on this host. Drift (files changed in the target) is reported, and
//! repaired when the environment says so. Then it reports what it runs.
//!
//! When the registry or the store is unreachable the host keeps running what it has and says so
//! (`degraded`) as soon as it can report again. [`Agent::run`] repeats the pass on every
//! notification of a pointer move (PostgreSQL) and on its timer.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use shipshape_core::config::FleetConfig;
use shipshape_core::deploy::{self, DeployOutcome, DeployRequest, RollbackOutcome, RollbackRequest};
use shipshape_core::infra::clock::Clock;
use shipshape_core::infra::hash::NoProgress;
use shipshape_core::layout::Workspace;
use shipshape_core::model::ids::ReleaseId;

use crate::error::{Error, Result};
use crate::registry::{HostReport, Pointer, Registry};
use crate::remote::RemoteStore;

/// What the agent needs to know about itself.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The environment it serves.
    pub environment: String,
    /// Its host name (unique in the environment).
    pub host: String,
}

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pass {
    /// `in_sync`, `applied`, `rolled_back_to`, `failed`, `refused`, `drift`, `repaired`,
    /// `degraded`, `nothing_desired`.
    pub outcome: String,
    /// The release the host runs after the pass.
    pub running: Option<String>,
    /// The release desired, when the registry answered.
    pub desired: Option<String>,
    /// The pointer generation seen.
    pub generation: u64,
    /// What happened, for people.
    pub message: String,
}

/// A pull agent on one host.
pub struct Agent {
    workspace: Workspace,
    options: AgentOptions,
    fleet: FleetConfig,
    registry: Option<Registry>,
    clock: Arc<dyn Clock>,
    /// When the host started running its current release (for soak times).
    running_since: Option<(String, i64)>,
    holder: String,
    /// The environment canary generation this host applied (reported).
    canary_generation: u64,
}

impl Agent {
    /// An agent for the host workspace `workspace` (its `[fleet]` names the registry and the store).
    pub fn new(workspace: Workspace, options: AgentOptions, clock: Arc<dyn Clock>) -> Result<Agent> {
        let fleet = workspace.config.fleet.clone().ok_or_else(|| {
            Error::Invalid(format!(
                "{}: no [fleet] section: the agent needs a registry and a store",
                workspace.config.path.display()
            ))
        })?;
        if fleet.registry.is_none() || fleet.store.is_none() {
            return Err(Error::Invalid(format!(
                "{}: [fleet] needs both registry = \"…\" and store = \"…\" for an agent",
                workspace.config.path.display()
            )));
        }
        if fleet.environment(&options.environment).is_none() {
            return Err(Error::Invalid(format!(
                "{}: no [[fleet.environments]] named `{}` (configured: {})",
                workspace.config.path.display(),
                options.environment,
                fleet.environments.iter().map(|e| e.name.0.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        // The claim's holder is this host workspace on this machine, not this process: an agent
        // restarted after a crash takes its own claim back at once (SQLite's claims outlive the
        // process until they expire; PostgreSQL's advisory locks end with the session).
        let machine = shipshape_core::infra::user::host_name().unwrap_or_default();
        let holder = format!("{}@{machine}:{}", options.host, workspace.root.display());
        Ok(Agent {
            workspace,
            options,
            fleet,
            registry: None,
            clock,
            running_since: None,
            holder,
            canary_generation: 0,
        })
    }

    /// The registry, connecting (and claiming this host's name) when not connected.
    fn registry(&mut self) -> Result<&mut Registry> {
        if self.registry.is_none() {
            let mut registry = Registry::from_config(&self.fleet, &self.workspace.root)?
                .ok_or_else(|| Error::Invalid("[fleet] names no registry".into()))?;
            let now = self.clock.now().unix_seconds();
            let ttl = 3 * self.fleet.interval.0.seconds().max(10);
            if !registry.claim_host(&self.options.environment, &self.options.host, &self.holder, now, ttl)? {
                return Err(Error::Conflict(format!(
                    "another agent runs as host `{}` in {}: one agent per host name",
                    self.options.host, self.options.environment
                )));
            }
            self.registry = Some(registry);
        }
        self.registry.as_mut().ok_or_else(|| Error::Invalid("no registry".into()))
    }

    /// The release the host runs, with its sequence.
    fn running(&self) -> Result<Option<(String, u64)>> {
        let now = self.clock.now();
        let Some(info) = shipshape_core::registry::get_active_release(&self.workspace, now)? else { return Ok(None) };
        let path = info.manifest_path.under(&self.workspace.root);
        let sequence = shipshape_core::pipeline::manifest::load(&path).map(|m| m.manifest.sequence).unwrap_or(0);
        Ok(Some((info.release_id.to_string(), sequence)))
    }

    /// Files of the running release that differ in the target.
    fn drift(&self) -> Result<Vec<String>> {
        let now = self.clock.now();
        let Some((_, files)) = deploy::active_files(&self.workspace, now)? else { return Ok(Vec::new()) };
        let target = deploy::Target::of(&self.workspace)?;
        Ok(deploy::drift(&target, &files, false)?)
    }

    fn firing_alerts(&self, release: &str) -> u64 {
        let path = self.workspace.root.join(shipshape_monitor::db::DB_PATH);
        if !path.exists() {
            return 0;
        }
        shipshape_monitor::db::Db::open(&path)
            .and_then(|db| db.alerts(Some("firing"), Some(release), 1000))
            .map(|alerts| alerts.len() as u64)
            .unwrap_or(0)
    }

    /// One reconcile pass. Never fails for the registry or the store being away: that is reported
    /// as `degraded` and the host keeps what it runs.
    pub fn reconcile(&mut self) -> Result<Pass> {
        // A transaction a crash interrupted (this agent killed mid-apply, a power loss) is finished
        // or undone first, exactly as `shipshape recover` would, so "what runs here" is true.
        if !deploy::pending(&self.workspace)?.is_empty() {
            let now = self.clock.now();
            let target = deploy::Target::of(&self.workspace)?;
            let _locks = deploy::lock(&self.workspace, &target, "agent", now)?;
            deploy::recover(&self.workspace, &target, now)?;
        }
        let running = self.running()?;
        let environment = self.options.environment.clone();
        let desired = match self.registry().and_then(|r| r.desired(&environment)) {
            Ok(desired) => desired,
            Err(e @ (Error::Registry { .. } | Error::Invalid(_))) if self.fleet.registry.is_some() => {
                self.registry = None;
                return Ok(
                    self.degraded(&running, format!("the registry is unreachable ({e}): keeping what runs here"))
                );
            }
            Err(e) => return Err(e),
        };
        let Some(pointer) = desired else {
            let pass = Pass {
                outcome: "nothing_desired".into(),
                running: running.as_ref().map(|r| r.0.clone()),
                desired: None,
                generation: 0,
                message: format!("{} has no desired release yet", self.options.environment),
            };
            self.send(&running, 0, "healthy", &pass.message, false)?;
            return Ok(pass);
        };
        let generation = pointer.generation;
        if running.as_ref().map(|r| r.0.as_str()) == Some(pointer.release_id.as_str()) {
            return self.in_sync(&running, &pointer);
        }
        // Fetch what is desired (every byte checked), then apply it with the deploy engine.
        let store =
            RemoteStore::open(self.fleet.store.as_deref().unwrap_or_default(), &self.workspace.root, &self.fleet.s3)?;
        match store.fetch(&self.workspace, &pointer.release_id, &NoProgress) {
            Ok(_) => {}
            Err(e @ Error::Remote { .. }) => {
                return Ok(self.degraded(&running, format!("the store is unreachable ({e}): keeping what runs here")));
            }
            Err(e) => return self.refused(&running, &pointer, e.to_string()),
        }
        let manifest_path = self.workspace.manifests_dir().join(format!("{}.yaml", pointer.release_id));
        let loaded = shipshape_core::pipeline::manifest::load(&manifest_path)?;
        if loaded.digest.to_string() != pointer.manifest_sha256 {
            let why = format!(
                "the pointer names manifest {} but the store's {} hashes to {}",
                pointer.manifest_sha256, pointer.release_id, loaded.digest
            );
            return self.refused(&running, &pointer, why);
        }
        let by = format!(
            "agent {} ({} by {}, generation {generation})",
            self.options.host, pointer.action, pointer.moved_by
        );
        let now = self.clock.now();
        let below = running.as_ref().is_some_and(|(_, sequence)| loaded.manifest.sequence < *sequence);
        let result = if below && pointer.action == "rollback" {
            let to = ReleaseId::new(&pointer.release_id).map_err(|e| Error::Invalid(e.to_string()))?;
            let request = RollbackRequest { to: Some(to), reason: pointer.note.clone(), by, dry_run: false };
            deploy::rollback(&self.workspace, &request, now, &NoProgress, &mut |_| {}, &mut |_| Ok(true)).map(|o| {
                match o {
                    RollbackOutcome::Done(_) => None,
                    _ => Some("the rollback did not run".to_string()),
                }
            })
        } else {
            let request = DeployRequest { manifest: manifest_path, by, dry_run: false };
            deploy::deploy(&self.workspace, &request, now, &NoProgress, &mut |_| {}, &mut |_| Ok(true)).map(|o| match o
            {
                DeployOutcome::Done(_) => None,
                DeployOutcome::RolledBack(_, reason) => Some(reason),
                DeployOutcome::DryRun(_) | DeployOutcome::NotConfirmed(_) => Some("the deploy did not run".to_string()),
            })
        };
        match result {
            Ok(None) => {
                let running = self.running()?;
                self.running_since = running.as_ref().map(|r| (r.0.clone(), now.unix_seconds()));
                let outcome = if below { "rolled_back_to" } else { "applied" };
                let canary = self.canary_pass(&running);
                let message =
                    format!("{outcome} {} ({} by {}){canary}", pointer.release_id, pointer.action, pointer.moved_by);
                self.send(&running, generation, "healthy", &message, false)?;
                Ok(Pass {
                    outcome: outcome.into(),
                    running: running.map(|r| r.0),
                    desired: Some(pointer.release_id),
                    generation,
                    message,
                })
            }
            Ok(Some(reason)) => {
                let running = self.running()?;
                let message =
                    format!("{} failed its post-deploy checks and was rolled back here: {reason}", pointer.release_id);
                let now = self.clock.now().unix_seconds();
                if let Ok(registry) = self.registry() {
                    registry.release_failed(&pointer.environment, &pointer.release_id, pointer.sequence, now)?;
                }
                self.send(&running, generation, "failed", &message, false)?;
                Ok(Pass {
                    outcome: "failed".into(),
                    running: running.map(|r| r.0),
                    desired: Some(pointer.release_id),
                    generation,
                    message,
                })
            }
            Err(e) => self.refused(&running, &pointer, e.to_string()),
        }
    }

    fn in_sync(&mut self, running: &Option<(String, u64)>, pointer: &Pointer) -> Result<Pass> {
        let generation = pointer.generation;
        let differing = self.drift()?;
        let repair = self.fleet.environment(&self.options.environment).is_some_and(|e| e.repair_drift);
        if !differing.is_empty() && repair {
            let manifest = self.workspace.manifests_dir().join(format!("{}.yaml", pointer.release_id));
            let by = format!("agent {} (drift repair)", self.options.host);
            let request = DeployRequest { manifest, by, dry_run: false };
            let now = self.clock.now();
            deploy::deploy(&self.workspace, &request, now, &NoProgress, &mut |_| {}, &mut |_| Ok(true))?;
            let message = format!("repaired drift in {}", differing.join(", "));
            self.send(running, generation, "healthy", &message, false)?;
            return Ok(Pass {
                outcome: "repaired".into(),
                running: running.as_ref().map(|r| r.0.clone()),
                desired: Some(pointer.release_id.clone()),
                generation,
                message,
            });
        }
        let canary = self.canary_pass(running);
        let (outcome, message, drift) = if differing.is_empty() {
            ("in_sync", format!("runs {}{canary}", pointer.release_id), false)
        } else {
            ("drift", format!("drift in {} (not repaired: repair_drift is off){canary}", differing.join(", ")), true)
        };
        self.send(running, generation, "healthy", &message, drift)?;
        Ok(Pass {
            outcome: outcome.into(),
            running: running.as_ref().map(|r| r.0.clone()),
            desired: Some(pointer.release_id.clone()),
            generation,
            message,
        })
    }

    /// Apply the environment's canary on this host beside the stable release it runs: the
    /// candidate fetched (every byte checked), verified against this host's trust root, its tree
    /// built complete, then the allocation written; without a canary, an allocation that still
    /// names a candidate gives all capital back to the stable tree. Never fails the pass: what
    /// happened is returned for the report (`""` when nothing changed).
    fn canary_pass(&mut self, running: &Option<(String, u64)>) -> String {
        match self.canary_apply(running) {
            Ok(message) => message,
            Err(e) => format!("; canary refused: {e}"),
        }
    }

    fn canary_apply(&mut self, running: &Option<(String, u64)>) -> Result<String> {
        use shipshape_core::canary;
        let environment = self.options.environment.clone();
        let row = self.registry()?.canary_any(&environment)?;
        let paths = canary::Paths::of(&self.workspace)?;
        let local = canary::read_allocation(&paths.allocation)?;
        let now = self.clock.now();
        let Some((stable, _)) = running.clone() else { return Ok(String::new()) };
        let stable = ReleaseId::new(&stable).map_err(|e| Error::Invalid(e.to_string()))?;
        let local_candidate = local.as_ref().and_then(|a| a.releases.iter().find(|s| s.role == "candidate").cloned());
        match row.filter(|c| c.percent > 0 && c.release_id != stable.as_str()) {
            Some(c) => {
                let fraction = f64::from(c.percent) / 100.0;
                let candidate = ReleaseId::new(&c.release_id).map_err(|e| Error::Invalid(e.to_string()))?;
                let tree = paths.candidate_tree(&candidate);
                let stable_matches = local
                    .as_ref()
                    .is_some_and(|a| a.releases.iter().any(|s| s.role == "stable" && s.release_id == stable));
                if stable_matches
                    && local_candidate
                        .as_ref()
                        .is_some_and(|s| s.release_id == candidate && (s.fraction - fraction).abs() < 1e-9)
                    && tree.is_dir()
                {
                    self.canary_generation = c.generation;
                    return Ok(String::new());
                }
                let store = RemoteStore::open(
                    self.fleet.store.as_deref().unwrap_or_default(),
                    &self.workspace.root,
                    &self.fleet.s3,
                )?;
                store.fetch(&self.workspace, &c.release_id, &NoProgress)?;
                let manifest = self.workspace.manifests_dir().join(format!("{}.yaml", c.release_id));
                let (loaded, _) =
                    shipshape_core::pipeline::verify::trusted(&self.workspace, &manifest, now, &NoProgress)?;
                if loaded.digest.to_string() != c.manifest_sha256 {
                    return Err(Error::Invalid(format!(
                        "the canary names manifest {} but the store's {} hashes to {}",
                        c.manifest_sha256, c.release_id, loaded.digest
                    )));
                }
                if let Some(old) = local_candidate.as_ref().filter(|s| s.release_id != candidate) {
                    // Another candidate before: its capital goes back first.
                    let generation = canary::next_generation(&paths)?;
                    let back = canary::Allocation::stable_only(
                        generation,
                        &stable,
                        &paths.stable_tree,
                        now,
                        "canary replaced",
                    );
                    canary::write_allocation(&paths.allocation, &back)?;
                    canary::remove_tree(&paths, &old.release_id)?;
                }
                canary::materialise(&self.workspace, &paths, &loaded)?;
                let generation = canary::next_generation(&paths)?;
                let allocation = canary::Allocation {
                    schema_version: canary::ALLOCATION_SCHEMA,
                    generation,
                    updated_at: now,
                    reason: format!(
                        "canary of {environment} at {} % (registry generation {})",
                        c.percent, c.generation
                    ),
                    releases: vec![
                        canary::Share {
                            role: "stable".into(),
                            release_id: stable.clone(),
                            tree: paths.stable_tree.clone(),
                            fraction: 1.0 - fraction,
                        },
                        canary::Share { role: "candidate".into(), release_id: candidate, tree, fraction },
                    ],
                };
                canary::write_allocation(&paths.allocation, &allocation)?;
                self.canary_generation = c.generation;
                Ok(format!("; canary {} at {} % (allocation generation {generation})", c.release_id, c.percent))
            }
            None => {
                let ended = self.registry()?.canary_any(&environment)?.map_or(0, |c| c.generation);
                self.canary_generation = ended;
                let Some(old) = local_candidate else {
                    // The allocation (if any) names the release the target holds.
                    if canary::follow_target(&self.workspace, now, &stable, "the host runs it")? {
                        return Ok(format!("; allocation names {stable}"));
                    }
                    return Ok(String::new());
                };
                let generation = canary::next_generation(&paths)?;
                let back =
                    canary::Allocation::stable_only(generation, &stable, &paths.stable_tree, now, "canary ended");
                canary::write_allocation(&paths.allocation, &back)?;
                canary::remove_tree(&paths, &old.release_id)?;
                Ok(format!("; canary ended: all capital on {stable} (allocation generation {generation})"))
            }
        }
    }

    fn refused(&mut self, running: &Option<(String, u64)>, pointer: &Pointer, why: String) -> Result<Pass> {
        let message = format!("refused {}: {why}", pointer.release_id);
        self.send(running, pointer.generation, "refused", &message, false)?;
        Ok(Pass {
            outcome: "refused".into(),
            running: running.as_ref().map(|r| r.0.clone()),
            desired: Some(pointer.release_id.clone()),
            generation: pointer.generation,
            message,
        })
    }

    fn degraded(&mut self, running: &Option<(String, u64)>, message: String) -> Pass {
        // Said as soon as it can be: the report itself may fail (the registry is away).
        let _ = self.send(running, 0, "degraded", &message, false);
        Pass {
            outcome: "degraded".into(),
            running: running.as_ref().map(|r| r.0.clone()),
            desired: None,
            generation: 0,
            message,
        }
    }

    fn send(
        &mut self,
        running: &Option<(String, u64)>,
        generation: u64,
        health: &str,
        message: &str,
        drift: bool,
    ) -> Result<()> {
        let now = self.clock.now().unix_seconds();
        let (release, sequence) = running.clone().unwrap_or_default();
        let since = match &self.running_since {
            Some((id, at)) if *id == release => *at,
            _ => {
                // Since the registry's activation on this host (its deploy time), or now.
                let at = shipshape_core::registry::get_active_release(&self.workspace, self.clock.now())
                    .ok()
                    .flatten()
                    .map_or(now, |i| i.deployment_timestamp.unix_seconds());
                self.running_since = Some((release.clone(), at));
                at
            }
        };
        let firing_alerts = if release.is_empty() { 0 } else { self.firing_alerts(&release) };
        let report = HostReport {
            environment: self.options.environment.clone(),
            host: self.options.host.clone(),
            release_id: release,
            sequence,
            generation,
            health: health.into(),
            message: message.into(),
            drift,
            firing_alerts,
            running_since: since,
            heartbeat_at: now,
            canary_generation: self.canary_generation,
        };
        let result = self.registry().and_then(|r| r.report(&report));
        if result.is_err() {
            self.registry = None;
        }
        result
    }

    /// Reconcile now, then on every pointer move and at least every `[fleet] interval`, until
    /// `stop` says so; `log` hears each pass.
    pub fn run(&mut self, stop: &dyn Fn() -> bool, log: &mut dyn FnMut(&Pass)) -> Result<()> {
        let interval = Duration::from_secs(self.fleet.interval.0.seconds().max(1) as u64);
        while !stop() {
            match self.reconcile() {
                Ok(pass) => log(&pass),
                Err(e @ Error::Conflict(_)) => return Err(e),
                Err(e) => log(&Pass {
                    outcome: "error".into(),
                    running: self.running().ok().flatten().map(|r| r.0),
                    desired: None,
                    generation: 0,
                    message: e.to_string(),
                }),
            }
            // Woken early by a notification; without a registry, the timer alone. Waited in slices
            // of at most a second, so a stop is seen within one.
            let until = std::time::Instant::now() + interval;
            while !stop() {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                let slice = left.min(Duration::from_secs(1));
                let waited = match self.registry.as_mut() {
                    Some(registry) => registry.wait(slice),
                    None => {
                        std::thread::sleep(slice);
                        Ok(false)
                    }
                };
                match waited {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(_) => self.registry = None,
                }
            }
        }
        Ok(())
    }
}
