//! Anti-rollback state: per environment, the highest manifest `sequence` accepted for deployment and
//! that manifest's digest, kept in `release/state/anti_rollback.yaml` — outside `release/manifests/`,
//! so replacing the manifests directory cannot reset it.
//!
//! A manifest with a lower sequence than the accepted one, or the same sequence with different bytes,
//! is refused: going back to an earlier release is an explicit `rollback`, never a re-deploy of an
//! old (validly signed) manifest. The deploy step records each manifest it accepts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::infra::clock::Time;
use crate::layout::Workspace;
use crate::model::anti_rollback::{Accepted, STATE_SCHEMA, State};
use crate::model::manifest::LoadedManifest;

/// Where the state lives.
pub fn state_path(workspace: &Workspace) -> PathBuf {
    workspace.release_dir().join("state").join("anti_rollback.yaml")
}

/// Read the state (empty when there is none yet).
pub fn load(workspace: &Workspace) -> Result<State> {
    let path = state_path(workspace);
    if !path.exists() {
        return Ok(State { schema_version: STATE_SCHEMA, environments: BTreeMap::new() });
    }
    let (state, _): (State, Vec<u8>) = crate::infra::yaml::read(&path)?;
    if state.schema_version != STATE_SCHEMA {
        return Err(Error::invalid(&path, format!("schema_version {} is not supported", state.schema_version)));
    }
    Ok(state)
}

/// `Err(reason)` when `loaded` may not be accepted in its environment.
pub fn check(state: &State, loaded: &LoadedManifest) -> std::result::Result<String, String> {
    let manifest = &loaded.manifest;
    let environment = &manifest.deployment.environment.0;
    let Some(accepted) = state.environments.get(environment) else {
        return Ok(format!("nothing accepted in {environment} yet"));
    };
    if manifest.sequence < accepted.sequence {
        return Err(format!(
            "sequence {} is below {}'s {} already accepted in {environment}: go back with `shipshape rollback`, never by re-deploying an old manifest",
            manifest.sequence, accepted.release_id, accepted.sequence
        ));
    }
    if manifest.sequence == accepted.sequence && loaded.digest != accepted.manifest_sha256 {
        return Err(format!(
            "sequence {} was already accepted in {environment} with different bytes ({}, {}): two manifests may not share a sequence",
            manifest.sequence, accepted.release_id, accepted.manifest_sha256
        ));
    }
    Ok(format!("sequence {} >= accepted {} in {environment}", manifest.sequence, accepted.sequence))
}

/// Record `loaded` as accepted (the caller holds the workspace lock and has checked it).
pub fn record(workspace: &Workspace, loaded: &LoadedManifest, now: Time) -> Result<()> {
    let mut state = load(workspace)?;
    if let Err(reason) = check(&state, loaded) {
        return Err(Error::Check(reason));
    }
    state.schema_version = STATE_SCHEMA;
    state.environments.insert(
        loaded.manifest.deployment.environment.0.clone(),
        Accepted {
            sequence: loaded.manifest.sequence,
            release_id: loaded.manifest.release_id.clone(),
            manifest_sha256: loaded.digest,
            accepted: now,
        },
    );
    let path = state_path(workspace);
    if let Some(parent) = path.parent() {
        crate::infra::atomic::create_dir_all_durable(parent)?;
    }
    let text = format!(
        "# Highest manifest accepted per environment. Written by deploy; do not edit.\n{}",
        crate::infra::yaml::to_string(&state)?
    );
    crate::infra::atomic::write_atomic(&path, text.as_bytes())
}
