//! `shipshape diff`: what changes between two releases — artifacts added, removed and changed,
//! with sizes and hashes, and a unified diff of small text files, read from the content-addressed
//! store (what was approved, not what the workspace holds now).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::infra::hash::Digest;
use crate::infra::paths::RelPath;
use crate::layout::Workspace;
use crate::model::ids::ReleaseId;
use crate::model::manifest::LoadedManifest;

/// Text files up to this size get a unified diff.
pub const TEXT_DIFF_LIMIT: u64 = 64 * 1024;

/// How one artifact differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only in the second release.
    Added,
    /// Only in the first.
    Removed,
    /// In both, with other bytes.
    Changed,
}

/// An artifact's bytes in one release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Version {
    /// Content hash.
    pub sha256: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// One artifact that differs.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactDiff {
    /// Its path.
    pub path: RelPath,
    /// How it differs.
    pub change: Change,
    /// Its bytes in the first release.
    pub old: Option<Version>,
    /// Its bytes in the second.
    pub new: Option<Version>,
    /// A unified diff, for text files up to [`TEXT_DIFF_LIMIT`] whose bytes are in the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_diff: Option<String>,
}

/// What changes from one release to another.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseDiff {
    /// The first release.
    pub from: ReleaseId,
    /// The second.
    pub to: ReleaseId,
    /// Every artifact that differs, by path.
    pub artifacts: Vec<ArtifactDiff>,
    /// Artifacts with the same bytes in both.
    pub unchanged: usize,
}

impl ReleaseDiff {
    /// How many artifacts changed this way.
    pub fn count(&self, change: Change) -> usize {
        self.artifacts.iter().filter(|a| a.change == change).count()
    }

    /// One line: `A -> B: 1 added, 2 changed, 0 removed, 3 unchanged`.
    pub fn summary(&self) -> String {
        format!(
            "{} -> {}: {} added, {} changed, {} removed, {} unchanged",
            self.from,
            self.to,
            self.count(Change::Added),
            self.count(Change::Changed),
            self.count(Change::Removed),
            self.unchanged
        )
    }
}

fn files(loaded: &LoadedManifest) -> BTreeMap<RelPath, (Digest, u64)> {
    loaded.manifest.artifacts.iter().map(|(_, a)| (a.path.clone(), (a.hash, a.size))).collect()
}

/// The text of a store object, when it is there, small and UTF-8.
fn text_of(workspace: &Workspace, digest: &Digest, size: u64) -> Option<String> {
    if size > TEXT_DIFF_LIMIT {
        return None;
    }
    let bytes = std::fs::read(workspace.store().object_path(digest)).ok()?;
    String::from_utf8(bytes).ok().filter(|t| !t.contains('\0'))
}

/// What changes from `from` to `to`; `text` adds unified diffs of small text files.
pub fn diff(workspace: &Workspace, from: &LoadedManifest, to: &LoadedManifest, text: bool) -> Result<ReleaseDiff> {
    let (old, new) = (files(from), files(to));
    let mut artifacts = Vec::new();
    let mut unchanged = 0;
    let paths: std::collections::BTreeSet<&RelPath> = old.keys().chain(new.keys()).collect();
    for path in paths {
        let (before, after) = (old.get(path).copied(), new.get(path).copied());
        let change = match (before, after) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                unchanged += 1;
                continue;
            }
            (Some(_), Some(_)) => Change::Changed,
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Removed,
            (None, None) => continue,
        };
        let side = |entry: Option<(Digest, u64)>| match entry {
            None => Some(String::new()),
            Some((digest, size)) => text_of(workspace, &digest, size),
        };
        let text_diff = if text {
            match (side(before), side(after)) {
                (Some(a), Some(b)) => {
                    let (a, b): (Vec<&str>, Vec<&str>) =
                        (a.split_inclusive('\n').collect(), b.split_inclusive('\n').collect());
                    let lines = difflib::unified_diff(&a, &b, &format!("a/{path}"), &format!("b/{path}"), "", "", 3);
                    let mut out = String::new();
                    for line in lines {
                        // difflib writes "--- a/x\t" (an empty date after a tab): drop the tab.
                        let line = if line.starts_with("--- ") || line.starts_with("+++ ") {
                            line.trim_end().to_string() + "\n"
                        } else {
                            line
                        };
                        out.push_str(&line);
                        if !line.ends_with('\n') {
                            out.push('\n');
                        }
                    }
                    Some(out)
                }
                _ => None,
            }
        } else {
            None
        };
        let version = |entry: Option<(Digest, u64)>| entry.map(|(sha256, size)| Version { sha256, size });
        artifacts.push(ArtifactDiff {
            path: path.clone(),
            change,
            old: version(before),
            new: version(after),
            text_diff,
        });
    }
    Ok(ReleaseDiff { from: from.manifest.release_id.clone(), to: to.manifest.release_id.clone(), artifacts, unchanged })
}
