//! Pruning what deploys leave behind (`[retention]`): release directories of a symlink target
//! beyond `keep_releases`, and finished journals beyond `keep_journals`.
//!
//! A release directory is never needed for correctness: a rollback to a pruned release rebuilds it
//! from the store (verifying every byte). The active release, the last known good one (where a
//! rollback goes first) and any release an unfinished transaction names are never pruned — the
//! complaint against Capistrano's cleanup, which could delete the last release that worked.
//!
//! Files unchanged between releases are hard links shared by several directories: removing one
//! link moves the shared inode's ctime, which the other directories' stat caches record. Files that
//! matched their cache before the removal are re-stamped after it (size, mtime and inode unchanged),
//! so a kept release still proves itself intact without re-hashing; a file that did not match is
//! left for the next deploy or rollback to re-hash.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::deploy::state::{file_stamp, read_state, write_state};
use crate::deploy::target::Target;
use crate::error::{IoContext, Result};
use crate::infra::atomic::sync_dir;
use crate::infra::clock::Time;
use crate::layout::Workspace;
use crate::model::ids::ReleaseId;
use crate::registry::lifecycle::{Lifecycle, ReleaseStatus};

/// Why a release directory is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// `current` points at it.
    Current,
    /// The registry's active release.
    Active,
    /// Where a rollback goes first.
    LastKnownGood,
    /// An unfinished transaction names it.
    Unfinished,
    /// Among the `keep_releases` most recently active.
    Recent,
}

impl Keep {
    /// How `gc` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Keep::Current => "current",
            Keep::Active => "active",
            Keep::LastKnownGood => "last known good",
            Keep::Unfinished => "named by an unfinished transaction",
            Keep::Recent => "recent",
        }
    }
}

/// One release directory of a symlink target, and what pruning does with it.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseDir {
    /// The release.
    pub release_id: String,
    /// What became of it (`None`: the history does not know it).
    pub status: Option<ReleaseStatus>,
    /// When it was last active.
    pub last_active: Option<Time>,
    /// Bytes its removal frees (files not shared with another directory).
    pub frees: u64,
    /// Why it is kept; `None`: it goes.
    pub keep: Option<Keep>,
}

/// The release directories of `target` (symlink mode; none otherwise), newest first, each with the
/// decision `keep_releases` makes. `protected` are releases an unfinished transaction names.
pub fn plan_releases(
    target: &Target,
    life: &Lifecycle,
    active: Option<&ReleaseId>,
    protected: &[ReleaseId],
    keep_releases: usize,
) -> Result<Vec<ReleaseDir>> {
    let root = target.releases();
    let entries = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(&root, "listing"),
    };
    let current = crate::deploy::symlink::current_release(target);
    let last_known_good = life.last_known_good(active.or(life.active())).cloned();
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.at(&root, "listing")?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(id) = ReleaseId::new(&name) else { continue };
        if !entry.file_type().at(entry.path(), "reading metadata")?.is_dir() {
            continue;
        }
        let record = life.record(&id);
        dirs.push((id, record.map(|r| r.status), record.map(|r| r.last_active)));
    }
    // The most recently active first; directories the history does not know (never active) last.
    dirs.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| b.0.cmp(&a.0)));
    let pinned = |id: &ReleaseId| {
        if current.as_deref() == Some(id.as_str()) {
            Some(Keep::Current)
        } else if active == Some(id) {
            Some(Keep::Active)
        } else if last_known_good.as_ref() == Some(id) {
            Some(Keep::LastKnownGood)
        } else if protected.contains(id) {
            Some(Keep::Unfinished)
        } else {
            None
        }
    };
    // The pinned directories count toward keep_releases; the most recent others fill the rest.
    let mut kept = dirs.iter().filter(|(id, _, _)| pinned(id).is_some()).count();
    let mut out = Vec::with_capacity(dirs.len());
    for (id, status, last_active) in dirs {
        let keep = pinned(&id).or_else(|| {
            (kept < keep_releases).then(|| {
                kept += 1;
                Keep::Recent
            })
        });
        let dir = target.release_dir(&id);
        let frees = if keep.is_none() { unshared_bytes(&dir) } else { 0 };
        out.push(ReleaseDir { release_id: id.to_string(), status, last_active, frees, keep });
    }
    Ok(out)
}

/// Bytes of the regular files under `dir` that have no other link.
fn unshared_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file() && m.nlink() == 1)
        .map(|m| m.len())
        .sum()
}

/// Remove the directories `plan` lets go (the caller holds the target's lock). Each is renamed
/// aside first, so a crash never leaves a half-deleted directory under a release's name; the
/// leftovers of such a crash are removed here too.
pub fn remove_releases(target: &Target, plan: &[ReleaseDir]) -> Result<usize> {
    let root = target.releases();
    let going: Vec<&ReleaseDir> = plan.iter().filter(|d| d.keep.is_none()).collect();
    let leftovers = leftover_trash(&root)?;
    if going.is_empty() && leftovers.is_empty() {
        return Ok(0);
    }
    // The kept directories' files that match their stat caches now.
    let mut kept = Vec::new();
    for dir in plan.iter().filter(|d| d.keep.is_some()) {
        let Ok(id) = ReleaseId::new(&dir.release_id) else { continue };
        let state_path = target.release_dir(&id).with_extension("state.yaml");
        let state = read_state(&state_path)?;
        let base = target.release_dir(&id);
        let intact: HashSet<_> = state
            .files
            .iter()
            .filter(|(path, stat)| {
                fs::symlink_metadata(path.under(&base))
                    .ok()
                    .as_ref()
                    .and_then(file_stamp)
                    .is_some_and(|stamp| stat.matches(&stamp))
            })
            .map(|(path, _)| path.clone())
            .collect();
        kept.push((state_path, base, state, intact));
    }
    for dir in &going {
        let Ok(id) = ReleaseId::new(&dir.release_id) else { continue };
        let path = target.release_dir(&id);
        let trash = root.join(format!(".{id}.shipshape-gc"));
        if trash.exists() {
            fs::remove_dir_all(&trash).at(&trash, "removing")?;
        }
        fs::rename(&path, &trash).at(&path, "moving a pruned release directory aside")?;
        sync_dir(&root)?;
        let state = path.with_extension("state.yaml");
        match fs::remove_file(&state) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&state, "removing"),
        }
        fs::remove_dir_all(&trash).at(&trash, "removing a pruned release directory")?;
    }
    for trash in leftovers {
        fs::remove_dir_all(&trash).at(&trash, "removing what an interrupted gc left")?;
    }
    sync_dir(&root)?;
    // Re-stamp the shared files whose ctime the removed links moved.
    for (state_path, base, mut state, intact) in kept {
        let mut changed = false;
        for path in &intact {
            let Some(stat) = state.files.get_mut(path) else { continue };
            let Some(stamp) = fs::symlink_metadata(path.under(&base)).ok().as_ref().and_then(file_stamp) else {
                continue;
            };
            if stat.same_but_ctime(&stamp) && !stat.matches(&stamp) {
                stat.ctime_ns = stamp.ctime_ns;
                changed = true;
            }
        }
        if changed {
            write_state(&state_path, &state)?;
        }
    }
    Ok(going.len())
}

fn leftover_trash(root: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(root, "listing"),
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with('.') && name.ends_with(".shipshape-gc")
        })
        .map(|e| e.path())
        .collect())
}

/// Finished journals in `release/journal/done/`, and which of them go.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JournalPrune {
    /// Finished journals there.
    pub finished: usize,
    /// The ones beyond `keep_journals`, oldest first.
    pub remove: Vec<PathBuf>,
    /// Their bytes.
    pub frees: u64,
}

/// Which finished journals `keep_journals` lets go (the oldest, by when they were finished).
pub fn plan_journals(workspace: &Workspace, keep_journals: usize) -> Result<JournalPrune> {
    let done = workspace.journal_dir().join("done");
    let entries = match fs::read_dir(&done) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(JournalPrune::default()),
        Err(e) => return Err(e).at(&done, "listing"),
    };
    let mut journals = Vec::new();
    for entry in entries {
        let entry = entry.at(&done, "listing")?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let meta = entry.metadata().at(&path, "reading metadata")?;
        journals.push((meta.modified().ok(), path, meta.len()));
    }
    journals.sort();
    let finished = journals.len();
    let excess = finished.saturating_sub(keep_journals);
    let remove: Vec<(Option<std::time::SystemTime>, PathBuf, u64)> = journals.into_iter().take(excess).collect();
    Ok(JournalPrune {
        finished,
        frees: remove.iter().map(|(_, _, len)| len).sum(),
        remove: remove.into_iter().map(|(_, path, _)| path).collect(),
    })
}

/// Remove the journals `plan` lets go.
pub fn remove_journals(plan: &JournalPrune) -> Result<()> {
    for path in &plan.remove {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(path, "removing"),
        }
    }
    if let Some(dir) = plan.remove.first().and_then(|p| p.parent()) {
        sync_dir(dir)?;
    }
    Ok(())
}

/// What `keep_releases` and `keep_journals` do after a deploy or rollback that committed, under its
/// locks. Best effort: pruning never fails a transaction that succeeded (the disk only keeps
/// more); `shipshape gc` reports what could not go.
pub(crate) fn after_transaction(workspace: &Workspace, target: &Target, now: Time) {
    let retention = &workspace.config.retention;
    let _ = (|| -> Result<()> {
        let life = crate::registry::lifecycle(workspace)?;
        let active = crate::registry::get_active_release(workspace, now)?.map(|a| a.release_id);
        if target.mode == crate::config::DeployMode::Symlink {
            let plan = plan_releases(target, &life, active.as_ref(), &[], retention.keep_releases.0 as usize)?;
            remove_releases(target, &plan)?;
        }
        remove_journals(&plan_journals(workspace, retention.keep_journals.0 as usize)?)
    })();
}

/// What `shipshape gc` found, and did unless it was a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    /// The target (absent without a `[deploy]` section).
    pub target: Option<PathBuf>,
    /// Its release directories (symlink mode), newest first.
    pub releases: Vec<ReleaseDir>,
    /// Finished journals.
    pub journals: JournalPrune,
    /// The history's compaction.
    pub history: crate::registry::HistoryCompaction,
    /// Whether anything was changed.
    pub applied: bool,
}

/// `shipshape gc`: under the locks (after recovering an interrupted transaction, whose releases
/// are then kept), prune release directories and journals and compact the history as
/// `[retention]` says; with `apply` false, only report. Raw events are the monitor's (its `Db`).
pub fn gc(workspace: &Workspace, now: Time, apply: bool) -> Result<GcReport> {
    let retention = &workspace.config.retention;
    let target = workspace.config.deploy.as_ref().map(|_| Target::of(workspace)).transpose()?;
    // A dry run takes no lock and recovers nothing: what an unfinished transaction names is kept.
    let _locks = match (&target, apply) {
        (Some(target), true) => {
            let locks = crate::deploy::lock(workspace, target, "gc", now)?;
            crate::deploy::recover(workspace, target, now)?;
            Some(locks)
        }
        _ => None,
    };
    let _workspace_lock = match (&target, apply) {
        (None, true) => Some(crate::infra::lock::WorkspaceLock::acquire(&workspace.lock_path(), "gc", now)?),
        _ => None,
    };
    let protected: Vec<ReleaseId> = crate::deploy::pending(workspace)?
        .iter()
        .flat_map(|p| [Some(p.plan.to.release_id.clone()), p.plan.from.as_ref().map(|f| f.release_id.clone())])
        .flatten()
        .collect();
    let life = crate::registry::lifecycle(workspace)?;
    let active = crate::registry::get_active_release(workspace, now)?.map(|a| a.release_id);
    let releases = match &target {
        Some(target) if target.mode == crate::config::DeployMode::Symlink && target.exists() => {
            plan_releases(target, &life, active.as_ref(), &protected, retention.keep_releases.0 as usize)?
        }
        _ => Vec::new(),
    };
    let journals = plan_journals(workspace, retention.keep_journals.0 as usize)?;
    let history = crate::registry::compact_history(
        workspace,
        retention.history.0.0,
        retention.history_entries.0 as usize,
        now,
        apply,
    )?;
    if apply {
        if let Some(target) = &target {
            remove_releases(target, &releases)?;
        }
        remove_journals(&journals)?;
    }
    Ok(GcReport { target: target.map(|t| t.root), releases, journals, history, applied: apply })
}
