//! The anti-rollback state, `release/state/anti_rollback.yaml`: per environment, the highest sequence accepted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::infra::clock::Time;
use crate::infra::hash::Digest;
use crate::model::ids::ReleaseId;

/// Current schema.
pub const STATE_SCHEMA: u32 = 1;

/// The accepted manifest of one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    /// Its sequence.
    pub sequence: u64,
    /// Its release.
    pub release_id: ReleaseId,
    /// Its bytes' SHA-256.
    pub manifest_sha256: Digest,
    /// When it was accepted.
    pub accepted: Time,
}

/// The state file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Schema version.
    pub schema_version: u32,
    /// By environment.
    pub environments: BTreeMap<String, Accepted>,
}
