//! Git metadata of the workspace, read by calling the `git` command (as git's own plumbing is the
//! one stable interface): commit, branch, exact tag, and whether tracked files have changes.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// What git says about the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitInfo {
    /// Full commit id of `HEAD`.
    pub commit: String,
    /// Current branch, or null on a detached `HEAD`.
    pub branch: Option<String>,
    /// A tag pointing exactly at `HEAD`, if any.
    pub tag: Option<String>,
    /// True when tracked files differ from `HEAD` (untracked files do not count).
    pub dirty: bool,
}

fn git(dir: &Path, args: &[&str]) -> Result<Option<String>, String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .map_err(|e| format!("could not run git ({e})"))?;
    if !output.status.success() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&output.stdout).trim().to_string()))
}

/// Inspect the git repository holding `dir`. `Err` carries a warning for the user when there is no
/// repository (or no git, or no commit yet).
pub fn inspect(dir: &Path) -> Result<GitInfo, String> {
    let Some(commit) = git(dir, &["rev-parse", "--verify", "-q", "HEAD"])? else {
        return Err(format!(
            "{} is not in a git repository with a commit; git metadata is recorded as null",
            dir.display()
        ));
    };
    let branch = git(dir, &["symbolic-ref", "--short", "-q", "HEAD"])?.filter(|b| !b.is_empty());
    let tag = git(dir, &["describe", "--tags", "--exact-match", "HEAD"])?.filter(|t| !t.is_empty());
    let status = git(dir, &["status", "--porcelain", "--untracked-files=no"])?.unwrap_or_default();
    Ok(GitInfo { commit, branch, tag, dirty: !status.is_empty() })
}
