//! The manifest file, `release/manifests/<release_id>.yaml`: the story's schema plus the fields that
//! make it verifiable (schema version, per-environment sequence, expiry, the audit bundle's hash and
//! the previous manifest's hash).

use std::fmt;
use std::path::PathBuf;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::Slug;
use crate::infra::clock::Time;
use crate::infra::hash::Digest;
use crate::infra::paths::RelPath;
use crate::model::ids::{ReleaseId, ReleaseType};

/// Current manifest schema. 2 names the `deployment` block's fields for what they are
/// (`prepared_at`, `prepared_by`: when and by whom the manifest was made); 1 called them
/// `timestamp` and `deployer`, as the story's example does, and is still read.
pub const MANIFEST_SCHEMA: u32 = 2;

/// Every schema this version reads.
pub const READABLE_MANIFEST_SCHEMAS: [u32; 2] = [1, 2];

/// The manifest file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Schema version of this file.
    pub schema_version: u32,
    /// The release's id; also the file's name.
    pub release_id: ReleaseId,
    /// major, minor or hotfix.
    pub release_type: ReleaseType,
    /// Strictly increasing per environment.
    pub sequence: u64,
    /// When the manifest was made.
    pub created: Time,
    /// After this, it may not be deployed.
    pub expires: Time,
    /// The audit bundle directory it was made from.
    pub audit_bundle: RelPath,
    /// SHA-256 of that bundle's `bundle.yaml`.
    pub audit_bundle_sha256: Digest,
    /// The validation the release passed (or the visible override that skipped it).
    pub validation: ValidationRecord,
    /// The approval policy approvals are judged by, pinned by hash (null when there was none).
    pub approval_policy: Option<PolicyRef>,
    /// The previous manifest of this environment (null for the first).
    pub previous_manifest: Option<RelPath>,
    /// Its SHA-256: the hash chain.
    pub previous_manifest_sha256: Option<Digest>,
    /// Who, for where.
    pub deployment: Deployment,
    /// Artifacts by kind, in the config's kind order.
    pub artifacts: ArtifactsByKind,
    /// How to go back.
    pub rollback_plan: RollbackPlan,
    /// The monitoring policy approved with this release.
    pub monitoring: MonitoringPlan,
    /// Where the release came from: git, build, tickets, tool version.
    pub metadata: Metadata,
}

/// The approval policy a manifest is judged by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    /// The policy file.
    pub path: RelPath,
    /// SHA-256 of its bytes when the manifest was made.
    pub sha256: Digest,
}

/// How the bundle's validation stood when the manifest was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationStatus {
    /// Every checklist item and the backtest passed.
    Passed,
    /// Something failed (`failed_items` names it).
    Failed,
    /// `shipshape validate` was never run on the bundle.
    Missing,
}

impl fmt::Display for ValidationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ValidationStatus::Passed => "passed",
            ValidationStatus::Failed => "failed",
            ValidationStatus::Missing => "missing",
        })
    }
}

/// What the manifest records of the bundle's validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationRecord {
    /// How validation stood.
    pub status: ValidationStatus,
    /// SHA-256 of `validation.yaml` (null when missing).
    pub sha256: Option<Digest>,
    /// Items that failed.
    pub failed_items: Vec<String>,
    /// True when `--allow-unvalidated` let a missing or failed validation through.
    pub overridden: bool,
}

/// The story's `deployment` block: what the release is prepared for. The deploy itself — when,
/// and by whom — is recorded by the deploy, in the registry and the history (`shipshape status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// When the manifest was made (schema 1: `timestamp`).
    #[serde(alias = "timestamp")]
    pub prepared_at: Time,
    /// Who prepared the release (schema 1: `deployer`).
    #[serde(alias = "deployer")]
    pub prepared_by: String,
    /// The environment it is for.
    pub environment: Slug,
}

/// One artifact in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestArtifact {
    /// Path relative to the workspace (and, at deploy, to the target).
    pub path: RelPath,
    /// Content hash; also the store object's name.
    pub hash: Digest,
    /// Size in bytes.
    pub size: u64,
    /// The per-release backup view of the store object.
    pub backup: RelPath,
    /// Version, if the kind records one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Artifacts grouped by kind, keeping the config's kind order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArtifactsByKind(pub Vec<(String, Vec<ManifestArtifact>)>);

impl ArtifactsByKind {
    /// Every artifact with its kind.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ManifestArtifact)> {
        self.0.iter().flat_map(|(kind, list)| list.iter().map(move |a| (kind.as_str(), a)))
    }

    /// Number of artifacts.
    pub fn len(&self) -> usize {
        self.0.iter().map(|(_, list)| list.len()).sum()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Serialize for ArtifactsByKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (kind, list) in &self.0 {
            map.serialize_entry(kind, list)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ArtifactsByKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ArtifactsByKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from artifact kind to a list of artifacts")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
                let mut out: Vec<(String, Vec<ManifestArtifact>)> = Vec::new();
                while let Some(kind) = map.next_key::<String>()? {
                    if out.iter().any(|(k, _)| *k == kind) {
                        return Err(serde::de::Error::custom(format!("artifact kind `{kind}` appears twice")));
                    }
                    let list: Vec<ManifestArtifact> = map.next_value()?;
                    for artifact in &list {
                        if let Some(reason) = crate::infra::paths::reserved_in_target(&artifact.path) {
                            return Err(serde::de::Error::custom(format!(
                                "artifact `{}` of kind `{kind}`: {reason}",
                                artifact.path
                            )));
                        }
                    }
                    out.push((kind, list));
                }
                Ok(ArtifactsByKind(out))
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// The story's `rollback_plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackPlan {
    /// The release before this one in its environment (null for the first).
    pub previous_release_id: Option<ReleaseId>,
    /// Its manifest.
    pub previous_manifest: Option<RelPath>,
    /// Shell commands, run from the workspace root, that restore the previous release's files.
    pub restore_commands: Vec<String>,
    /// Commands that check the restore worked.
    pub verification_steps: Vec<String>,
}

/// Thresholds of one monitoring mode, as the story's manifest lists them: `<metric>_drop` for each
/// configured metric, in the config's order (the story's three give its exact keys).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Thresholds(pub Vec<(String, f64)>);

impl Serialize for Thresholds {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Thresholds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Thresholds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from `<metric>_drop` to a threshold")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
                let mut out: Vec<(String, f64)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if out.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format!("threshold `{name}` appears twice")));
                    }
                    out.push((name, map.next_value()?));
                }
                Ok(Thresholds(out))
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl Thresholds {
    /// One mode's thresholds of `metrics` (`heightened` or not).
    pub fn of(metrics: &[crate::config::MetricConfig], heightened: bool) -> Thresholds {
        Thresholds(
            metrics
                .iter()
                .map(|m| {
                    let mode = if heightened { &m.heightened } else { &m.normal };
                    (format!("{}_drop", m.name.0), mode.threshold.0)
                })
                .collect(),
        )
    }
}

/// The story's `monitoring` block. The heightened window's start and end are fixed by the deploy
/// (its registry record), since a manifest is made before anyone knows when it will be deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringPlan {
    /// Length of the heightened period after deploy.
    pub heightened_period_hours: u32,
    /// Heightened thresholds.
    pub alert_thresholds: Thresholds,
    /// Heightened re-notification interval.
    pub alert_frequency_hours: f64,
    /// Thresholds after the heightened period.
    pub normal_alert_thresholds: Thresholds,
    /// Re-notification interval after the heightened period.
    pub normal_alert_frequency_hours: f64,
}

/// The story's `metadata` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Commit the audit saw.
    pub git_commit: Option<String>,
    /// Branch the audit saw.
    pub git_branch: Option<String>,
    /// Tag at that commit.
    pub git_tag: Option<String>,
    /// Whether tracked files had uncommitted changes.
    pub git_dirty: Option<bool>,
    /// CI build id, if given.
    pub build_id: Option<String>,
    /// Tickets this release closes.
    pub jira_tickets: Vec<String>,
    /// The shipshape version that made the manifest.
    pub tool_version: String,
}

/// A manifest read from disk, with its exact bytes.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    /// The file (absolute).
    pub path: PathBuf,
    /// Its content.
    pub manifest: Manifest,
    /// Its exact bytes.
    pub bytes: Vec<u8>,
    /// Their SHA-256.
    pub digest: Digest,
}
