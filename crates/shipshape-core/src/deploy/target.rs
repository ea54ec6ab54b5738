//! The deploy target: the directory production reads, its own files (`.shipshape/lock`,
//! `.shipshape/state.yaml`, and in symlink mode `.shipshape/releases/<id>/` and `current`), the
//! locks a transaction holds, and the free-space check.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::config::DeployMode;
use crate::deploy::failpoint;
use crate::error::{Error, IoContext, Result};
use crate::infra::atomic::create_dir_all_durable;
use crate::infra::clock::Time;
use crate::infra::lock::WorkspaceLock;
use crate::infra::paths::RelPath;
use crate::layout::Workspace;
use crate::model::ids::ReleaseId;
use crate::model::journal::Plan;

/// The deploy target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Absolute path of the target directory.
    pub root: PathBuf,
    /// How files are put there.
    pub mode: DeployMode,
    /// Directories already checked to be real directories (not symlinks), so each is checked once
    /// per command rather than once per file below it.
    checked_dirs: std::sync::Arc<std::sync::Mutex<BTreeSet<PathBuf>>>,
}

impl Target {
    /// The workspace's `[deploy]` target, created if missing.
    pub fn of(workspace: &Workspace) -> Result<Target> {
        let Some(deploy) = &workspace.config.deploy else {
            return Err(Error::Usage(format!(
                "{} has no [deploy] section: add one naming the directory production reads, e.g.\n  [deploy]\n  target = \"/srv/sensequant\"\n  mode = \"copy\"",
                workspace.config.path.display()
            )));
        };
        let raw = Path::new(&deploy.target);
        let root = if raw.is_absolute() { raw.to_path_buf() } else { workspace.root.join(raw) };
        create_dir_all_durable(&root)?;
        let root = root.canonicalize().at(&root, "resolving the target")?;
        if root.starts_with(workspace.release_dir()) || root == workspace.root {
            return Err(Error::invalid(
                &workspace.config.path,
                "deploy.target must not be the workspace or its release/ directory",
            ));
        }
        Ok(Target::at(root, deploy.mode))
    }

    /// The target at `root` (already resolved) in `mode`.
    pub fn at(root: PathBuf, mode: DeployMode) -> Target {
        Target { root, mode, checked_dirs: Default::default() }
    }

    pub(crate) fn meta(&self) -> PathBuf {
        self.root.join(".shipshape")
    }

    pub(crate) fn lock_path(&self) -> PathBuf {
        self.meta().join("lock")
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.meta().join("state.yaml")
    }

    pub(crate) fn releases(&self) -> PathBuf {
        self.meta().join("releases")
    }

    pub(crate) fn release_dir(&self, id: &ReleaseId) -> PathBuf {
        self.releases().join(id.as_str())
    }

    /// The `current` symlink (symlink mode).
    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    /// Where production reads `path` of the active release.
    pub fn live_path(&self, path: &RelPath) -> PathBuf {
        match self.mode {
            DeployMode::Copy => path.under(&self.root),
            DeployMode::Symlink => path.under(&self.current_link()),
        }
    }

    /// `path` under `base`, refusing a path whose existing parents include a symlink (which could
    /// lead a write outside the target).
    pub(crate) fn confined(&self, base: &Path, path: &RelPath) -> Result<PathBuf> {
        let mut current = base.to_path_buf();
        let parts: Vec<&str> = path.as_str().split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            current.push(part);
            if self.checked_dirs.lock().is_ok_and(|dirs| dirs.contains(&current)) {
                continue;
            }
            let meta = fs::symlink_metadata(&current);
            if meta.as_ref().is_ok_and(|m| m.is_dir())
                && let Ok(mut dirs) = self.checked_dirs.lock()
            {
                dirs.insert(current.clone());
            }
            if let Ok(meta) = meta
                && !meta.is_dir()
            {
                return Err(Error::UnsafePath {
                    origin: self.root.clone(),
                    path: path.to_string(),
                    reason: format!(
                        "{} is {} in the target, so the path would escape it",
                        current.display(),
                        if meta.file_type().is_symlink() { "a symlink" } else { "not a directory" }
                    ),
                });
            }
        }
        Ok(path.under(base))
    }
}

/// Refuse a plan the target's filesystem has no room for.
pub fn check_space(target: &Target, plan: &Plan) -> Result<()> {
    if failpoint::is_set(failpoint::SKIP_SPACE_CHECK) {
        return Ok(()); // lets tests reach a real ENOSPC while writing
    }
    let needed = plan.bytes() + 1024 * 1024;
    let stat = rustix::fs::statvfs(&target.root).map_err(|e| Error::Io {
        path: target.root.clone(),
        action: "reading free space",
        source: e.into(),
    })?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < needed {
        return Err(Error::Check(format!(
            "{} has {free} bytes free, the deploy needs {needed}: free some space; nothing was changed",
            target.root.display()
        )));
    }
    Ok(())
}

/// Both locks, taken without waiting.
pub struct Locks {
    _workspace: WorkspaceLock,
    _target: WorkspaceLock,
}

/// Take the workspace and target locks for `command`.
pub fn lock(workspace: &Workspace, target: &Target, command: &str, now: Time) -> Result<Locks> {
    let workspace_lock = WorkspaceLock::acquire(&workspace.lock_path(), command, now)?;
    let target_lock = WorkspaceLock::acquire(&target.lock_path(), command, now)?;
    Ok(Locks { _workspace: workspace_lock, _target: target_lock })
}
