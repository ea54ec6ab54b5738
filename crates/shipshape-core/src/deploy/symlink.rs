//! Symlink mode: each release is materialised once under `.shipshape/releases/<id>/` (files
//! unchanged since the previous release are hard-linked, not copied) and a single `current`
//! symlink is switched by rename: the whole set changes at once, and a rollback is one rename.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};

use crate::deploy::copy::stage_file;
use crate::deploy::failpoint;
use crate::deploy::journal::Journal;
use crate::deploy::state::{read_state, stat_of, stat_stamp, still_matches, write_state};
use crate::deploy::target::Target;
use crate::error::{Error, IoContext, Result};
use crate::infra::atomic::{StatDir, Syncer, create_dir_all_durable, sync_dir};
use crate::infra::clock::Time;
use crate::infra::hash::NoProgress;
use crate::layout::Workspace;
use crate::model::ids::ReleaseId;
use crate::model::journal::{FileStat, Phase, Plan, ReleaseFiles, TargetState};

/// Every file stat recorded in the states of a symlink target's release directories. A link moves
/// the ctime of the inode it shares, and the release that made the link records the new one.
fn recorded_stats(target: &Target) -> HashSet<FileStat> {
    let Ok(entries) = fs::read_dir(target.releases()) else { return HashSet::new() };
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".state.yaml"))
        .filter_map(|entry| read_state(&entry.path()).ok())
        .flat_map(|state| state.files.into_values())
        .collect()
}

/// Materialise a whole release under `.shipshape/releases/<id>/` (symlink mode), hard-linking files
/// unchanged since `previous` and copying the rest from the store. Idempotent.
pub(crate) fn materialise_release(
    workspace: &Workspace,
    target: &Target,
    release: &ReleaseFiles,
    previous: Option<&ReleaseFiles>,
    txid: &str,
) -> Result<()> {
    let final_dir = target.release_dir(&release.release_id);
    let state_path = final_dir.with_extension("state.yaml");
    if final_dir.is_dir() && state_path.exists() {
        let mut state = read_state(&state_path)?;
        // A file shared with later releases had its ctime moved by their links: it is intact if
        // the state written after the newest link (another release's) records it as it is now.
        let mut recorded: Option<HashSet<FileStat>> = None;
        let mut refreshed = false;
        // Stats relative to the release directory: one short lookup per file.
        let dir = StatDir::open(&final_dir);
        let intact = release.files.iter().all(|(path, (hash, _))| {
            let seen = dir.stat(path.as_str()).as_ref().and_then(stat_stamp);
            let (Some(stat), Some(seen)) = (state.files.get_mut(path), seen) else {
                return false;
            };
            if stat.hash != *hash || !stat.same_but_ctime(&seen) {
                return false;
            }
            if stat.matches(&seen) {
                return true;
            }
            let now = FileStat::new(&seen, *hash);
            if !recorded.get_or_insert_with(|| recorded_stats(target)).contains(&now) {
                return false;
            }
            *stat = now;
            refreshed = true;
            true
        });
        if intact {
            if refreshed {
                write_state(&state_path, &state)?;
            }
            return Ok(());
        }
        // Damaged or changed: rebuild it.
        fs::remove_dir_all(&final_dir).at(&final_dir, "removing a damaged release directory")?;
    }
    create_dir_all_durable(&target.releases())?;
    let staging = target.releases().join(format!(".{}.shipshape-{txid}", release.release_id));
    if staging.exists() {
        fs::remove_dir_all(&staging).at(&staging, "removing")?;
    }
    fs::create_dir(&staging).at(&staging, "creating")?;
    let previous_state =
        previous.map(|p| read_state(&target.release_dir(&p.release_id).with_extension("state.yaml"))).transpose()?;
    let mut state = TargetState { release_id: Some(release.release_id.clone()), files: BTreeMap::new() };
    let mut relinked = Vec::new();
    // The staging directory is the temporary: files are written at their final names in it, fsynced
    // together (with every directory made in it) before it is renamed into place.
    let syncer = Syncer::new();
    let mut dirs = BTreeSet::new();
    for (index, (path, (hash, _))) in release.files.iter().enumerate() {
        let destination = path.under(&staging);
        if let Some(parent) = destination.parent() {
            fs::create_dir_all(parent).at(parent, "creating")?;
            let mut dir = parent;
            while dir != staging && dirs.insert(dir.to_path_buf()) {
                dir = dir.parent().unwrap_or(&staging);
            }
        }
        let reused = previous.zip(previous_state.as_ref()).and_then(|(p, ps)| {
            let source = path.under(&target.release_dir(&p.release_id));
            (p.files.get(path).map(|(h, _)| h) == Some(hash)
                && ps.files.get(path).is_some_and(|s| still_matches(s, &source)))
            .then_some(source)
        });
        match reused {
            Some(source) if fs::hard_link(&source, &destination).is_ok() => {
                relinked.push((path.clone(), *hash, source))
            }
            _ => {
                let (stat, file) = stage_file(workspace, hash, &destination)?;
                if stat.is_none() {
                    // The source's bytes were hashed on their way here: hash what landed.
                    crate::infra::hash::verify_file(&destination, hash, &NoProgress, true)?;
                }
                syncer.push(file, destination.clone());
            }
        }
        state.files.insert(path.clone(), stat_of(&destination, *hash)?);
        failpoint::hit(&failpoint::staging(index + 1));
    }
    for dir in dirs.into_iter().chain([staging.clone()]) {
        syncer.push(File::open(&dir).at(&dir, "opening")?, dir);
    }
    syncer.finish()?;
    fs::rename(&staging, &final_dir).at(&final_dir, "renaming into place")?;
    // The stat cache records the final paths' inodes (unchanged by the rename).
    write_state(&state_path, &state)?;
    // Linking changed the shared inodes' ctime (link count): refresh the previous release's cache,
    // or its intact files would look tampered with at the next rollback.
    if let (Some(previous), false) = (previous, relinked.is_empty()) {
        let previous_path = target.release_dir(&previous.release_id).with_extension("state.yaml");
        let mut previous_state = read_state(&previous_path)?;
        for (path, hash, source) in relinked {
            previous_state.files.insert(path, stat_of(&source, hash)?);
        }
        write_state(&previous_path, &previous_state)?;
    }
    sync_dir(&target.releases())
}

/// Point `current` at `release` (or remove it for `None`) with one atomic rename.
pub(crate) fn switch_link(target: &Target, release: Option<&ReleaseId>, txid: &str) -> Result<()> {
    let link = target.current_link();
    match release {
        Some(id) => {
            let temp = target.root.join(format!(".current.shipshape-{txid}"));
            let _ = fs::remove_file(&temp);
            std::os::unix::fs::symlink(format!(".shipshape/releases/{id}"), &temp).at(&temp, "creating symlink")?;
            fs::rename(&temp, &link).at(&link, "switching the current symlink")?;
        }
        None => match fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&link, "removing"),
        },
    }
    sync_dir(&target.root)
}

pub(crate) fn current_release(target: &Target) -> Option<String> {
    let link = fs::read_link(target.current_link()).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Bring a symlink target to exactly `release` (`None`: nothing), whatever state a crash left it in.
pub(crate) fn converge(
    workspace: &Workspace,
    target: &Target,
    release: Option<&ReleaseFiles>,
    plan: &Plan,
) -> Result<()> {
    if let Some(release) = release {
        let previous =
            [plan.from.as_ref(), Some(&plan.to)].into_iter().flatten().find(|r| r.release_id != release.release_id);
        materialise_release(workspace, target, release, previous, &plan.txid)?;
    }
    switch_link(target, release.map(|r| &r.release_id), &plan.txid)?;
    // Remove a half-built release directory of this transaction.
    for id in [Some(&plan.to.release_id), plan.from.as_ref().map(|f| &f.release_id)].into_iter().flatten() {
        let staging = target.releases().join(format!(".{id}.shipshape-{}", plan.txid));
        if staging.exists() {
            fs::remove_dir_all(&staging).at(&staging, "removing")?;
        }
    }
    let _ = fs::remove_file(target.root.join(format!(".current.shipshape-{}", plan.txid)));
    Ok(())
}

/// Build the release directory and switch `current` to it, journaling each phase.
pub(crate) fn run(workspace: &Workspace, target: &Target, plan: &Plan, journal: &mut Journal, now: Time) -> Result<()> {
    materialise_release(workspace, target, &plan.to, plan.from.as_ref(), &plan.txid)?;
    journal.phase(Phase::Staged, now)?;
    journal.phase(Phase::Switching, now)?;
    switch_link(target, Some(&plan.to.release_id), &plan.txid)?;
    journal.phase(Phase::Switched, now)?;
    // The directory was proven (or built and hashed) just above, under the lock; the switch
    // is one rename, so what remains to check is where `current` points now.
    let current = current_release(target);
    if current.as_deref() != Some(plan.to.release_id.as_str()) {
        return Err(Error::Check(format!(
            "after the switch `current` points at {}, not {}",
            current.unwrap_or_else(|| "nothing".into()),
            plan.to.release_id
        )));
    }
    Ok(())
}
