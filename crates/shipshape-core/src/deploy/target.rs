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
    /// The workspace's `[deploy]` target, resolved (symlinks and `..` in the part that exists) but
    /// not created: a command that is refused leaves no directory behind. [`lock`] creates it.
    pub fn of(workspace: &Workspace) -> Result<Target> {
        let Some(deploy) = &workspace.config.deploy else {
            return Err(Error::Usage(format!(
                "{} has no [deploy] section: add one naming the directory production reads, e.g.\n  [deploy]\n  target = \"/srv/sensequant\"\n  mode = \"copy\"",
                workspace.config.path.display()
            )));
        };
        let raw = Path::new(&deploy.target);
        let root = resolve(&if raw.is_absolute() { raw.to_path_buf() } else { workspace.root.join(raw) })?;
        let forbidden = [
            (workspace.release_dir(), "the workspace's release/ directory"),
            (workspace.root.join(".git"), "the workspace's .git/ directory"),
            (workspace.root.join("data").join("monitoring"), "the monitoring registry data/monitoring/"),
        ];
        let inside = forbidden.iter().find(|(dir, _)| root.starts_with(dir)).map(|(_, what)| *what);
        if let Some(what) = inside.or((root == workspace.root).then_some("the workspace itself")) {
            return Err(Error::invalid(
                &workspace.config.path,
                format!(
                    "deploy.target `{}` resolves to {}, which is {what}: production's directory must be elsewhere (an absolute path, or one relative to the workspace such as \"production\" or \"../prod\")",
                    deploy.target,
                    root.display()
                ),
            ));
        }
        Ok(Target::at(root, deploy.mode))
    }

    /// Whether the target directory exists (a read-only command has nothing to read otherwise).
    pub fn exists(&self) -> bool {
        self.root.is_dir()
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
    // A target not created yet (a dry run of the first deploy) is on its nearest existing parent's
    // filesystem.
    let on = target.root.ancestors().find(|dir| dir.exists()).unwrap_or(&target.root);
    let stat = rustix::fs::statvfs(on).map_err(|e| Error::Io {
        path: on.to_path_buf(),
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

/// `path` made absolute and symlink-free: the longest existing prefix is canonicalized, the rest
/// (which does not exist yet, so holds no symlink) is appended with `..` applied lexically.
fn resolve(path: &Path) -> Result<PathBuf> {
    let mut existing = path;
    let mut rest = Vec::new();
    while !existing.exists() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else { break };
        rest.push(name.to_os_string());
        existing = parent;
    }
    let mut root = existing.canonicalize().at(existing, "resolving the target")?;
    for part in rest.iter().rev() {
        if part == ".." {
            root.pop();
        } else if part != "." {
            root.push(part);
        }
    }
    Ok(root)
}

/// Both locks, taken without waiting. Taking them creates the target directory and its
/// `.shipshape/` when missing; if the command then changes nothing there (it was refused, not
/// confirmed, or failed before its journal), dropping the locks removes what taking them created.
pub struct Locks {
    _workspace: WorkspaceLock,
    target: Option<WorkspaceLock>,
    /// Directories this command created, outermost first; removed on drop while still empty of
    /// anything but the lock file.
    created: Vec<PathBuf>,
}

/// Take the workspace and target locks for `command`.
pub fn lock(workspace: &Workspace, target: &Target, command: &str, now: Time) -> Result<Locks> {
    let workspace_lock = WorkspaceLock::acquire(&workspace.lock_path(), command, now)?;
    let mut created = Vec::new();
    let mut missing = Vec::new();
    let mut dir = target.meta();
    while !dir.exists() {
        missing.push(dir.clone());
        if !dir.pop() {
            break;
        }
    }
    for dir in missing.into_iter().rev() {
        create_dir_all_durable(&dir)?;
        created.push(dir);
    }
    let mut locks = Locks { _workspace: workspace_lock, target: None, created };
    locks.target = Some(WorkspaceLock::acquire(&target.lock_path(), command, now)?);
    Ok(locks)
}

impl Drop for Locks {
    fn drop(&mut self) {
        if self.created.is_empty() {
            return;
        }
        // The lock file goes first (the flock goes with its descriptor), then each created
        // directory that is empty: `remove_dir` refuses any other, so nothing written is lost.
        // The file is unlinked while still locked; a process that opened it meanwhile finds, once
        // it has the flock, that the file is no longer at its path and takes the new one.
        if let Some(lock) = self.target.take() {
            let path = lock.path().to_path_buf();
            let only_lock = path
                .parent()
                .and_then(|meta| fs::read_dir(meta).ok())
                .is_some_and(|entries| entries.filter_map(|e| e.ok()).all(|e| e.file_name() == "lock"));
            if only_lock {
                let _ = fs::remove_file(&path);
            }
            drop(lock);
        }
        for dir in self.created.iter().rev() {
            if fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
}
