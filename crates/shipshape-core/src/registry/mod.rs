//! The release registry, `data/monitoring/releases/` (the story's layout): one record per release
//! deployed, `active_release.yaml` (the story's `ReleaseInfo`), and `history.yaml`, every deploy,
//! rollback and failure with who, when and why. Written atomically by the deploy engine; read by
//! `status`, `history`, the monitor and the dashboard.
//!
//! [`register_release`] is the story's `MonitoringService.register_release`: it makes a release the
//! active one and starts its heightened-monitoring window; [`get_active_release`] returns the story's
//! `ReleaseInfo`, with `heightened_monitoring_active` judged against the clock, so the switch back to
//! normal monitoring after 48 hours needs no one to flip it.

pub mod analytics;
pub mod lifecycle;

use std::fs;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::infra::clock::Time;
use crate::infra::paths::RelPath;
use crate::layout::Workspace;
use crate::model::ids::ReleaseId;
use crate::model::journal::Kind;
use crate::model::registry::{History, HistoryEntry, ReleaseInfo};

/// Where the registry lives, relative to the workspace.
pub const REGISTRY_DIR: &str = "data/monitoring/releases";

fn dir(workspace: &Workspace) -> PathBuf {
    workspace.root.join(REGISTRY_DIR)
}

/// `active_release.yaml`.
pub fn active_path(workspace: &Workspace) -> PathBuf {
    dir(workspace).join("active_release.yaml")
}

fn history_path(workspace: &Workspace) -> PathBuf {
    dir(workspace).join("history.yaml")
}

const HISTORY_HEADER: &str = "# Every deploy, rollback and failure. Written by shipshape; do not edit.";

fn yaml_bytes<T: Serialize>(header: &str, value: &T) -> Result<Vec<u8>> {
    Ok(format!("{header}\n{}", crate::infra::yaml::to_string(value)?).into_bytes())
}

/// Write registry files together (see [`crate::infra::atomic::write_atomic_all`]).
fn write_all(files: Vec<(PathBuf, Vec<u8>)>) -> Result<()> {
    for parent in files.iter().filter_map(|(path, _)| path.parent()) {
        crate::infra::atomic::create_dir_all_durable(parent)?;
    }
    crate::infra::atomic::write_atomic_all(&files)
}

/// What makes a release active: the registry's record of one activation.
#[derive(Debug, Clone)]
pub struct Activation<'a> {
    /// The release.
    pub release_id: &'a ReleaseId,
    /// Its manifest, relative to the workspace.
    pub manifest_path: &'a RelPath,
    /// Hours of heightened monitoring from now.
    pub heightened_hours: u32,
    /// Who deployed it.
    pub deployer: &'a str,
    /// The environment.
    pub environment: &'a str,
    /// Deploy or rollback.
    pub activated_by: Kind,
    /// The release its manifest names as previous.
    pub rollback_to: Option<&'a ReleaseId>,
}

/// The story's `register_release`: make a release active from `now`, heightened for its hours.
pub fn register_release(workspace: &Workspace, activation: &Activation<'_>, now: Time) -> Result<ReleaseInfo> {
    register_and_record(workspace, activation, now, None)
}

/// [`register_release`] and, with it, [`record`] `entry` in the history: the three files written
/// together (what a deploy or rollback does at its commit).
pub fn register_and_record(
    workspace: &Workspace,
    activation: &Activation<'_>,
    now: Time,
    entry: Option<HistoryEntry>,
) -> Result<ReleaseInfo> {
    let release_id = activation.release_id;
    let heightened_hours = activation.heightened_hours;
    let info = ReleaseInfo {
        release_id: release_id.clone(),
        deployment_timestamp: now,
        manifest_path: activation.manifest_path.clone(),
        heightened_monitoring_active: true,
        heightened_monitoring_end: now.plus(jiff::SignedDuration::from_hours(i64::from(heightened_hours))),
        heightened_hours,
        deployer: activation.deployer.to_string(),
        environment: activation.environment.to_string(),
        activated_by: activation.activated_by,
        rollback_to: activation.rollback_to.cloned(),
    };
    let mut files = vec![
        (
            dir(workspace).join(format!("{release_id}.yaml")),
            yaml_bytes("# A release's registration (latest activation). Written by shipshape.", &info)?,
        ),
        (active_path(workspace), yaml_bytes("# The active release. Written by shipshape deploy / rollback.", &info)?),
    ];
    if let Some(entry) = entry {
        files.extend(history_with(workspace, entry)?);
    }
    write_all(files)?;
    Ok(info)
}

/// The story's `get_active_release`, with the heightened flag judged at `now`.
pub fn get_active_release(workspace: &Workspace, now: Time) -> Result<Option<ReleaseInfo>> {
    let path = active_path(workspace);
    if !path.exists() {
        return Ok(None);
    }
    let (mut info, _): (ReleaseInfo, Vec<u8>) = crate::infra::yaml::read(&path)?;
    info.heightened_monitoring_active = info.is_in_heightened_period(now);
    Ok(Some(info))
}

/// Clear the active release (a rollback past the first release leaves nothing deployed).
pub fn clear_active(workspace: &Workspace) -> Result<()> {
    let path = active_path(workspace);
    match std::fs::remove_file(&path) {
        Ok(()) => crate::infra::atomic::sync_dir(&dir(workspace)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { path, action: "removing", source: e }),
    }
}

/// Where compacted history goes: archive files of entries moved out of `history.yaml`, and
/// `lifecycle.yaml`, the snapshot of what those entries decided (each release's status).
pub fn archive_dir(workspace: &Workspace) -> PathBuf {
    dir(workspace).join("history-archive")
}

fn snapshot_path(workspace: &Workspace) -> PathBuf {
    archive_dir(workspace).join("lifecycle.yaml")
}

/// The history's archived part, summarised: `history-archive/lifecycle.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Entries moved to the archive so far.
    pub archived: u64,
    /// The last entry archived: should a compaction stop before `history.yaml` was rewritten,
    /// the entries up to this one that it still holds are the archived ones, and are skipped.
    pub through: Option<Marker>,
    /// What the archived entries decided.
    pub lifecycle: lifecycle::Lifecycle,
}

/// One history entry, named.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    /// When.
    pub at: Time,
    /// What.
    pub action: crate::model::registry::Action,
    /// Its transaction.
    pub transaction: String,
}

impl Marker {
    fn of(entry: &HistoryEntry) -> Marker {
        Marker { at: entry.at, action: entry.action, transaction: entry.transaction.clone() }
    }

    fn is(&self, entry: &HistoryEntry) -> bool {
        entry.at == self.at && entry.action == self.action && entry.transaction == self.transaction
    }
}

/// The snapshot of the archived history (`None`: the history was never compacted).
pub fn snapshot(workspace: &Workspace) -> Result<Option<Snapshot>> {
    let path = snapshot_path(workspace);
    if !path.exists() {
        return Ok(None);
    }
    let (snapshot, _): (Snapshot, Vec<u8>) = crate::infra::yaml::read(&path)?;
    Ok(Some(snapshot))
}

fn history_file(workspace: &Workspace) -> Result<Vec<HistoryEntry>> {
    let path = history_path(workspace);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let (history, _): (History, Vec<u8>) = crate::infra::yaml::read(&path)?;
    Ok(history.entries)
}

/// Every history entry not yet archived, oldest first (see [`compact_history`]; all of them when
/// the history was never compacted).
pub fn history(workspace: &Workspace) -> Result<Vec<HistoryEntry>> {
    let mut entries = history_file(workspace)?;
    if let Some(Snapshot { through: Some(marker), .. }) = snapshot(workspace)?
        && let Some(index) = entries.iter().position(|e| marker.is(e))
    {
        entries.drain(..=index);
    }
    Ok(entries)
}

/// Every history entry ever recorded, the archived ones included, oldest first.
pub fn history_all(workspace: &Workspace) -> Result<Vec<HistoryEntry>> {
    let mut files: Vec<PathBuf> = match fs::read_dir(archive_dir(workspace)) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("history-") && n.ends_with(".yaml"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).at(archive_dir(workspace), "listing"),
    };
    files.sort();
    let mut all: Vec<HistoryEntry> = Vec::new();
    for file in files {
        let (chunk, _): (History, Vec<u8>) = crate::infra::yaml::read(&file)?;
        // A compaction interrupted before its snapshot may have archived entries twice.
        for entry in chunk.entries {
            if !all.iter().rev().take(4096).any(|e| *e == entry) {
                all.push(entry);
            }
        }
    }
    for entry in history(workspace)? {
        if !all.iter().rev().take(4096).any(|e| *e == entry) {
            all.push(entry);
        }
    }
    Ok(all)
}

/// What became of each release, from the history (see [`mod@lifecycle`]): the archived part's
/// snapshot, then the entries after it.
pub fn lifecycle(workspace: &Workspace) -> Result<lifecycle::Lifecycle> {
    let base = snapshot(workspace)?.map(|s| s.lifecycle).unwrap_or_default();
    Ok(base.then(&history(workspace)?))
}

/// Every activation (deploy, rollback) the history records, oldest first — starting, after a
/// compaction, with the release that was active at the archive's end.
pub fn activations(workspace: &Workspace) -> Result<Vec<(Time, ReleaseId)>> {
    let mut points = Vec::new();
    if let Some(snapshot) = snapshot(workspace)?
        && let Some(active) = snapshot.lifecycle.active()
        && let Some(record) = snapshot.lifecycle.record(active)
    {
        points.push((record.last_active, active.clone()));
    }
    points.extend(history(workspace)?.into_iter().filter(|e| e.action.activates()).map(|e| (e.at, e.release_id)));
    Ok(points)
}

/// What [`compact_history`] did, or would do.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryCompaction {
    /// Entries in `history.yaml` before.
    pub entries: usize,
    /// Entries moved (or to move) to the archive.
    pub archived: usize,
    /// The newest entry moved.
    pub through: Option<Time>,
    /// The archive file written (or to write), relative to the workspace.
    pub archive: Option<String>,
}

/// Move the history entries older than `keep_for` that are not among the newest `keep_entries`
/// to `history-archive/history-<first>-<last>.yaml`, and fold what they decided into the
/// snapshot — so every command reads a bounded `history.yaml`, while `history --all` still shows
/// everything and release statuses (last known good, first deploy times) are unchanged.
///
/// Crash-safe in order: the archive file, then the snapshot (naming the last entry moved, so the
/// entries still in `history.yaml` are skipped), then `history.yaml` rewritten. With `apply` false,
/// only says what it would do. The caller holds the workspace lock.
pub fn compact_history(
    workspace: &Workspace,
    keep_for: jiff::SignedDuration,
    keep_entries: usize,
    now: Time,
    apply: bool,
) -> Result<HistoryCompaction> {
    let entries = history(workspace)?;
    let cutoff = now.plus(-keep_for);
    let movable = entries.len().saturating_sub(keep_entries);
    let count = entries.iter().take(movable).take_while(|e| e.at < cutoff).count();
    let moved = &entries[..count];
    let (Some(first), Some(last)) = (moved.first(), moved.last()) else {
        return Ok(HistoryCompaction { entries: entries.len(), archived: 0, through: None, archive: None });
    };
    let name = |t: &Time| {
        jiff::Timestamp::from_second(t.unix_seconds())
            .map_or_else(|_| t.compact(), |ts| ts.strftime("%Y%m%dT%H%M%SZ").to_string())
    };
    let archive = archive_dir(workspace).join(format!("history-{}-{}.yaml", name(&first.at), name(&last.at)));
    let report = HistoryCompaction {
        entries: entries.len(),
        archived: count,
        through: Some(last.at),
        archive: Some(workspace.display(&archive).into_owned()),
    };
    if !apply {
        return Ok(report);
    }
    let previous = snapshot(workspace)?.unwrap_or_default();
    let snapshot = Snapshot {
        archived: previous.archived + count as u64,
        through: Some(Marker::of(last)),
        lifecycle: previous.lifecycle.then(moved),
    };
    const ARCHIVE_HEADER: &str =
        "# History entries archived by shipshape gc (read by `shipshape history --all`). Do not edit.";
    const SNAPSHOT_HEADER: &str =
        "# What the archived history decided: each release's status. Written by shipshape gc; do not edit.";
    write_all(vec![(archive, yaml_bytes(ARCHIVE_HEADER, &History { entries: moved.to_vec() })?)])?;
    write_all(vec![(snapshot_path(workspace), yaml_bytes(SNAPSHOT_HEADER, &snapshot)?)])?;
    write_all(vec![(
        history_path(workspace),
        yaml_bytes(HISTORY_HEADER, &History { entries: entries[count..].to_vec() })?,
    )])?;
    Ok(report)
}

/// Append to the history (idempotent per transaction and action, for recovery).
pub fn record(workspace: &Workspace, entry: HistoryEntry) -> Result<()> {
    write_all(history_with(workspace, entry)?.into_iter().collect())
}

/// The history file with `entry` added (`None`: it is there already).
///
/// Not re-parsed on the way: a history in the form shipshape writes (its header, then `entries:`
/// as a block list) gets the new entry's YAML appended, so recording costs the same after ten
/// thousand deploys as after one. Only when the transaction already appears in it (a recovery
/// finishing what a crash interrupted), or the file is in any other form, is it parsed and
/// written whole.
fn history_with(workspace: &Workspace, entry: HistoryEntry) -> Result<Option<(PathBuf, Vec<u8>)>> {
    const HEADER: &str = HISTORY_HEADER;
    let path = history_path(workspace);
    let existing = match fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).at(&path, "reading"),
    };
    if let Some(mut bytes) = existing
        && bytes.starts_with(format!("{HEADER}\nentries:\n- ").as_bytes())
        && bytes.ends_with(b"\n")
        && memchr::memmem::find(&bytes, entry.transaction.as_bytes()).is_none()
    {
        bytes.extend_from_slice(crate::infra::yaml::to_string(&[&entry])?.as_bytes());
        return Ok(Some((path, bytes)));
    }
    let mut entries = history_file(workspace)?;
    if entries.iter().any(|e| e.transaction == entry.transaction && e.action == entry.action) {
        return Ok(None);
    }
    entries.push(entry);
    Ok(Some((path, yaml_bytes(HEADER, &History { entries })?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::registry::Action;

    fn entry(n: u32, action: Action, reason: Option<&str>) -> HistoryEntry {
        HistoryEntry {
            at: format!("2025-10-12T19:{n:02}:00Z").parse().unwrap(),
            action,
            release_id: ReleaseId::new(&format!("release_20251012_19{n:02}00")).unwrap(),
            previous_release_id: (n > 0)
                .then(|| ReleaseId::new(&format!("release_20251012_19{:02}00", n - 1)).unwrap()),
            by: "jane".into(),
            reason: reason.map(str::to_string),
            transaction: format!("tx_{n}"),
        }
    }

    #[test]
    fn appending_writes_the_bytes_a_full_rewrite_would_and_stays_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shipshape.toml"), "[artifacts.configs]\ninclude = [\"*.toml\"]\n").unwrap();
        let workspace = Workspace::open(dir.path()).unwrap();
        let entries: Vec<HistoryEntry> = (0..4)
            .map(|n| {
                entry(
                    n,
                    if n % 2 == 0 { Action::Deploy } else { Action::Rollback },
                    (n == 3).then_some("a: \"quoted\"\nline"),
                )
            })
            .collect();
        for e in &entries {
            record(&workspace, e.clone()).unwrap();
        }
        // Recovery re-records what a crash interrupted: nothing is added twice.
        record(&workspace, entries[3].clone()).unwrap();
        let appended = fs::read(history_path(&workspace)).unwrap();
        let whole = yaml_bytes(
            "# Every deploy, rollback and failure. Written by shipshape; do not edit.",
            &History { entries: entries.clone() },
        )
        .unwrap();
        assert_eq!(String::from_utf8(appended).unwrap(), String::from_utf8(whole).unwrap());
        let read = history(&workspace).unwrap();
        assert_eq!(read.len(), 4);
        assert_eq!(read[3].reason.as_deref(), Some("a: \"quoted\"\nline"));
    }

    #[test]
    fn compaction_keeps_every_status_and_survives_a_crash_before_the_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shipshape.toml"), "[artifacts.configs]\ninclude = [\"*.toml\"]\n").unwrap();
        let workspace = Workspace::open(dir.path()).unwrap();
        let actions =
            [Action::Deploy, Action::Deploy, Action::Rollback, Action::Deploy, Action::Deploy, Action::Deploy];
        let entries: Vec<HistoryEntry> =
            actions.iter().enumerate().map(|(n, action)| entry(n as u32, *action, None)).collect();
        for e in &entries {
            record(&workspace, e.clone()).unwrap();
        }
        let whole = lifecycle::Lifecycle::of(&entries);
        let full_file = fs::read(history_path(&workspace)).unwrap();
        let now: Time = "2025-10-20T00:00:00Z".parse().unwrap();
        let day = jiff::SignedDuration::from_hours(24);
        // A dry run changes nothing.
        let planned = compact_history(&workspace, day, 2, now, false).unwrap();
        assert_eq!((planned.entries, planned.archived), (6, 4));
        assert_eq!(fs::read(history_path(&workspace)).unwrap(), full_file);
        let done = compact_history(&workspace, day, 2, now, true).unwrap();
        assert_eq!(done.archived, 4);
        assert_eq!(history(&workspace).unwrap(), entries[4..]);
        assert_eq!(lifecycle(&workspace).unwrap(), whole, "the snapshot plus the rest decide the same");
        assert_eq!(history_all(&workspace).unwrap(), entries);
        // A crash after the snapshot, before history.yaml was rewritten: the archived entries still
        // in it are skipped, never folded twice or listed twice.
        fs::write(history_path(&workspace), &full_file).unwrap();
        assert_eq!(history(&workspace).unwrap(), entries[4..]);
        assert_eq!(lifecycle(&workspace).unwrap(), whole);
        assert_eq!(history_all(&workspace).unwrap(), entries);
        // Recording goes on after a compaction; a second one moves only what is newly old.
        let seventh = entry(6, Action::Deploy, None);
        record(&workspace, seventh.clone()).unwrap();
        let again = compact_history(&workspace, day, 2, now, true).unwrap();
        assert_eq!(again.archived, 1);
        let mut expected = entries.clone();
        expected.push(seventh);
        assert_eq!(history_all(&workspace).unwrap(), expected);
        assert_eq!(lifecycle(&workspace).unwrap(), lifecycle::Lifecycle::of(&expected));
    }
}
