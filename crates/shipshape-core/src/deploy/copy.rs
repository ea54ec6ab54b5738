//! Copy mode: files live at their manifest paths in the target. Each changed file is staged as a
//! temporary file in its own directory (fsynced), then renamed over its path (directory fsynced).
//! Unchanged files are not touched; removed files are deleted.
//!
//! Every byte comes from the object store, never the workspace, and is re-hashed as it is copied.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::deploy::failpoint;
use crate::deploy::journal::Journal;
use crate::deploy::state::{observed, read_state, stat_of, still_matches, write_state};
use crate::deploy::target::Target;
use crate::error::{Error, IoContext, Result};
use crate::infra::atomic::{Syncer, create_dir_all_durable, sync_dir};
use crate::infra::clock::Time;
use crate::infra::hash::{Digest, NoProgress, Progress, hash_file};
use crate::infra::paths::RelPath;
use crate::layout::Workspace;
use crate::model::journal::{FileStat, Phase, Plan, ReleaseFiles, TargetState};

/// The temporary name a transaction stages `path` under, beside it.
pub(crate) fn temp_name(path: &Path, txid: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.shipshape-{txid}"))
}

/// Stage one store object as `temp`: copied in the kernel and the copy hashed (or, where the kernel
/// cannot copy, read, hashed and written in one pass). Returns the open file, **not yet fsynced**
/// (the caller syncs it, or hands it to a [`Syncer`] with the others), and the staged file's stat
/// when its own bytes were hashed — proof, after the rename, that the live file is the file hashed —
/// or `None` when the source bytes were hashed on their way (the caller re-hashes after the switch).
pub(crate) fn stage_file(workspace: &Workspace, hash: &Digest, temp: &Path) -> Result<(Option<FileStat>, File)> {
    let object = workspace.store().object_path(hash);
    let input = File::open(&object)
        .map_err(|e| Error::Check(format!("store object {hash} cannot be read ({e}): run `shipshape verify`")))?;
    let output =
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(temp).at(temp, "creating")?;
    let (digest, destination_hashed) =
        match crate::infra::hash::copy_file_then_hash(&input, &output, &NoProgress).at(temp, "writing")? {
            Some(digest) => (digest, true),
            None => {
                output.set_len(0).at(temp, "truncating")?;
                (crate::infra::hash::copy_hash_pipelined(&input, &output, &NoProgress).at(temp, "writing")?.0, false)
            }
        };
    if digest != *hash {
        return Err(Error::Check(format!(
            "store object {hash} is corrupt (its copy hashes to {digest}); nothing was switched"
        )));
    }
    let stat = if destination_hashed { Some(stat_of(temp, *hash)?) } else { None };
    Ok((stat, output))
}

/// A file from the store into `destination` (temp + fsync + rename), re-hashed on the way.
fn materialise(workspace: &Workspace, hash: &Digest, destination: &Path, txid: &str) -> Result<FileStat> {
    if let Some(parent) = destination.parent() {
        create_dir_all_durable(parent)?;
    }
    let temp = temp_name(destination, txid);
    if let Err(e) = stage_file(workspace, hash, &temp).and_then(|(_, file)| file.sync_all().at(&temp, "syncing")) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    fs::rename(&temp, destination).at(destination, "renaming into place")?;
    if let Some(parent) = destination.parent() {
        sync_dir(parent)?;
    }
    stat_of(destination, *hash)
}

/// Bring the target to exactly `files` (paths not in `files` but in `also` are removed), whatever
/// state a crash left it in.
pub(crate) fn converge(
    workspace: &Workspace,
    target: &Target,
    files: Option<&ReleaseFiles>,
    also: &[&ReleaseFiles],
    txid: &str,
) -> Result<TargetState> {
    let cached = read_state(&target.state_path())?;
    let mut state = TargetState { release_id: files.map(|f| f.release_id.clone()), files: BTreeMap::new() };
    let mut paths: BTreeSet<&RelPath> = also.iter().flat_map(|r| r.files.keys()).collect();
    if let Some(f) = files {
        paths.extend(f.files.keys());
    }
    for path in paths {
        let live = target.confined(&target.root, path)?;
        let _ = fs::remove_file(temp_name(&live, txid));
        let desired = files.and_then(|f| f.files.get(path)).map(|(h, _)| *h);
        let now = observed(&live, cached.files.get(path))?;
        match desired {
            None => {
                if now.is_some() {
                    fs::remove_file(&live).at(&live, "removing")?;
                    if let Some(parent) = live.parent() {
                        sync_dir(parent)?;
                    }
                }
            }
            Some(hash) if now == Some(hash) => {
                let stat = match cached.files.get(path).filter(|s| s.hash == hash && still_matches(s, &live)) {
                    Some(stat) => stat.clone(),
                    None => stat_of(&live, hash)?,
                };
                state.files.insert(path.clone(), stat);
            }
            Some(hash) => {
                let stat = materialise(workspace, &hash, &live, txid)?;
                state.files.insert(path.clone(), stat);
            }
        }
    }
    write_state(&target.state_path(), &state)?;
    Ok(state)
}

/// Stage every changed file beside its destination, all fsynced (on the syncer's threads, while the
/// next is copied) before the journal says `staged`. Returns the stat of each staged file whose own
/// bytes were hashed.
fn stage(
    workspace: &Workspace,
    target: &Target,
    plan: &Plan,
    progress: &dyn Progress,
) -> Result<BTreeMap<RelPath, FileStat>> {
    let mut staged = BTreeMap::new();
    let syncer = Syncer::new();
    for (index, change) in plan.changes.iter().enumerate() {
        let Some(hash) = change.new else { continue };
        let live = target.confined(&target.root, &change.path)?;
        let temp = temp_name(&live, &plan.txid);
        if let Some(parent) = live.parent() {
            create_dir_all_durable(parent)?;
        }
        let (stat, file) = stage_file(workspace, &hash, &temp)?;
        if let Some(stat) = stat {
            staged.insert(change.path.clone(), stat);
        }
        syncer.push(file, temp);
        progress.advance(change.size);
        failpoint::hit(&failpoint::staging(index + 1));
    }
    syncer.finish()?;
    Ok(staged)
}

/// Rename every staged file over its path (and delete removed ones), then fsync their directories.
fn switch(target: &Target, plan: &Plan) -> Result<()> {
    let mut dirs = BTreeSet::new();
    for (index, change) in plan.changes.iter().enumerate() {
        let live = target.confined(&target.root, &change.path)?;
        match change.new {
            Some(_) => fs::rename(temp_name(&live, &plan.txid), &live).at(&live, "renaming into place")?,
            None => match fs::remove_file(&live) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at(&live, "removing"),
            },
        }
        if let Some(parent) = live.parent() {
            dirs.insert(parent.to_path_buf());
        }
        failpoint::hit(&failpoint::switching(index + 1));
    }
    for dir in dirs {
        sync_dir(&dir)?;
    }
    Ok(())
}

/// Check what was written, and record the stat cache for the next deploy. A file whose staged copy
/// was hashed in place is proven by being that very file (same inode, size and modification time:
/// a rename changes none of them); anything else changed is re-hashed.
fn check_switched(target: &Target, plan: &Plan, staged: &BTreeMap<RelPath, FileStat>) -> Result<()> {
    let cached = read_state(&target.state_path())?;
    let mut state = TargetState { release_id: Some(plan.to.release_id.clone()), files: BTreeMap::new() };
    let changed: BTreeSet<&RelPath> = plan.changes.iter().map(|c| &c.path).collect();
    for (path, (hash, _)) in &plan.to.files {
        let live = target.confined(&target.root, path)?;
        let same_file = staged.get(path).is_some_and(|stat| {
            fs::metadata(&live).is_ok_and(|meta| {
                meta.is_file()
                    && meta.ino() == stat.ino
                    && meta.len() == stat.size
                    && meta.mtime() * 1_000_000_000 + meta.mtime_nsec() == stat.mtime_ns
            })
        });
        let stat = if changed.contains(path) {
            if !same_file {
                let (actual, _) = hash_file(&live, &NoProgress)?;
                if actual != *hash {
                    return Err(Error::Check(format!(
                        "{} holds {actual} after the switch, expected {hash}",
                        live.display()
                    )));
                }
            }
            stat_of(&live, *hash)?
        } else {
            // Unchanged: the plan found it holding this hash (through the cache or by hashing).
            match cached.files.get(path).filter(|s| s.hash == *hash && still_matches(s, &live)) {
                Some(stat) => stat.clone(),
                None => stat_of(&live, *hash)?,
            }
        };
        state.files.insert(path.clone(), stat);
    }
    write_state(&target.state_path(), &state)
}

/// Stage, switch and check a copy-mode transaction, journaling each phase.
pub(crate) fn run(
    workspace: &Workspace,
    target: &Target,
    plan: &Plan,
    journal: &mut Journal,
    now: Time,
    progress: &dyn Progress,
) -> Result<()> {
    let staged = stage(workspace, target, plan, progress)?;
    journal.phase(Phase::Staged, now)?;
    journal.phase(Phase::Switching, now)?;
    switch(target, plan)?;
    journal.phase(Phase::Switched, now)?;
    check_switched(target, plan, &staged)
}
