//! The audit bundle, `release/audit_<timestamp>/bundle.yaml`: the inventory of artifacts with their hashes and the git metadata the audit saw.

use serde::{Deserialize, Serialize};

use crate::infra::clock::Time;
use crate::infra::git::GitInfo;
use crate::infra::hash::Digest;
use crate::infra::paths::RelPath;

/// The bundle file's name inside an audit directory.
pub const BUNDLE_FILE: &str = "bundle.yaml";

/// Current bundle schema.
pub const BUNDLE_SCHEMA: u32 = 1;

/// The name and version of the tool that wrote a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolInfo {
    /// Always `shipshape`.
    pub name: String,
    /// The crate version.
    pub version: String,
}

impl ToolInfo {
    /// This build.
    pub fn current() -> Self {
        ToolInfo { name: "shipshape".into(), version: env!("CARGO_PKG_VERSION").into() }
    }
}

/// One artifact as the audit saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRecord {
    /// Its kind (`configs`, `models`, …).
    pub kind: String,
    /// Path relative to the workspace.
    pub path: RelPath,
    /// Size in bytes.
    pub size: u64,
    /// Content hash.
    pub hash: Digest,
    /// Version from the kind's `version_file`, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Totals over the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Number of artifacts.
    pub artifacts: u64,
    /// Sum of their sizes.
    pub bytes: u64,
}

/// `bundle.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditBundle {
    /// Schema version of this file.
    pub schema_version: u32,
    /// `audit_<YYYYMMDD_HHMMSS>`, the directory's name.
    pub bundle_id: String,
    /// When the audit ran.
    pub created: Time,
    /// The tool that ran it.
    pub tool: ToolInfo,
    /// Git metadata of the workspace; null when it is not a git repository.
    pub git: Option<GitInfo>,
    /// Warnings raised while auditing (e.g. no git repository).
    pub warnings: Vec<String>,
    /// Counts and bytes per artifact kind, for the report.
    pub totals: Totals,
    /// Every artifact, in kind order then path order.
    pub artifacts: Vec<ArtifactRecord>,
}
