//! The deploy engine: atomic, journaled deploy and rollback into a target directory, with crash
//! recovery, a lock, post-deploy checks and automatic rollback.
//!
//! **Model.** Production reads the target directory. Artifacts are materialised from the object
//! store — never from the workspace — and re-hashed as they are copied. Two modes:
//!
//! - `copy`: files live at their manifest paths in the target. Each changed file is staged as a
//!   temporary file in its own directory (fsynced), then renamed over its path (directory fsynced).
//!   Unchanged files are not touched. Removed files are deleted.
//! - `symlink`: each release is materialised once under `.shipshape/releases/<id>/` (files unchanged
//!   since the previous release are hard-linked, not copied) and a single `current` symlink is
//!   switched by rename: the whole set changes at once, and a rollback is one rename.
//!
//! **Journal.** `release/journal/<txid>.jsonl`, append-only: the plan (both releases' full file
//! lists), each phase (`verified`, `staged`, `switching`, `switched`, `checked`, `committed`), and
//! the outcome; the plan, `committed` and the outcome are fsynced before the command goes on. `committed` is the commit point: [`recover`] brings an unfinished transaction back
//! to exactly the old release before it, and forward to the new one after it, idempotently. Every
//! mutating command runs recovery first.
//!
//! **Lock.** The workspace lock and a lock in the target (`.shipshape/lock`), both taken without
//! waiting, so two deploys into one target cannot interleave even from two workspaces.
//!
//! **Failpoints.** In debug builds only, `SHIPSHAPE_FAILPOINT=<name>` aborts the process at that step
//! (as `kill -9` would), so tests can prove recovery from every step.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{DeployMode, PostDeployCheck};
use crate::error::{Error, IoContext, Result};
use crate::infra::atomic::{Syncer, create_dir_all_durable, sync_dir};
use crate::infra::clock::Time;
use crate::infra::hash::{Digest, NoProgress, Progress, hash_file};
use crate::infra::lock::WorkspaceLock;
use crate::infra::paths::RelPath;
use crate::layout::Workspace;
use crate::model::ids::ReleaseId;
use crate::model::manifest::LoadedManifest;
use crate::model::registry::HistoryEntry;
use crate::registry::{self};

/// Whether `SHIPSHAPE_FAILPOINT` names `name` (debug builds only; always false in release builds).
pub fn failpoint_set(name: &str) -> bool {
    cfg!(debug_assertions) && std::env::var("SHIPSHAPE_FAILPOINT").is_ok_and(|v| v == name)
}

/// Abort here if `SHIPSHAPE_FAILPOINT` names this step (debug builds only).
pub fn failpoint(name: &str) {
    if failpoint_set(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

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

    fn meta(&self) -> PathBuf {
        self.root.join(".shipshape")
    }

    fn lock_path(&self) -> PathBuf {
        self.meta().join("lock")
    }

    fn state_path(&self) -> PathBuf {
        self.meta().join("state.yaml")
    }

    fn releases(&self) -> PathBuf {
        self.meta().join("releases")
    }

    fn release_dir(&self, id: &ReleaseId) -> PathBuf {
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
    fn confined(&self, base: &Path, path: &RelPath) -> Result<PathBuf> {
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

/// What is known of a file that was written: enough to see later, without re-hashing, that it is
/// untouched (the way git's index does).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStat {
    /// Content hash when written.
    pub hash: Digest,
    /// Size.
    pub size: u64,
    /// Modification time (ns).
    pub mtime_ns: i64,
    /// Change time (ns): any write or metadata change moves it.
    pub ctime_ns: i64,
    /// Inode.
    pub ino: u64,
}

impl FileStat {
    fn of(path: &Path, hash: Digest) -> Result<FileStat> {
        Ok(FileStat::from_seen(&Seen::of(&fs::metadata(path).at(path, "reading metadata")?), hash))
    }

    fn from_seen(seen: &Seen, hash: Digest) -> FileStat {
        FileStat { hash, size: seen.size, mtime_ns: seen.mtime_ns, ctime_ns: seen.ctime_ns, ino: seen.ino }
    }

    /// The same file, same size and mtime; the ctime is compared by the caller.
    fn same_but_ctime(&self, seen: &Seen) -> bool {
        seen.is_file && seen.size == self.size && seen.mtime_ns == self.mtime_ns && seen.ino == self.ino
    }

    fn matches(&self, seen: &Seen) -> bool {
        self.same_but_ctime(seen) && seen.ctime_ns == self.ctime_ns
    }

    fn still_matches(&self, path: &Path) -> bool {
        fs::metadata(path).is_ok_and(|meta| self.matches(&Seen::of(&meta)))
    }
}

/// What a stat of a file says, for the stat caches.
struct Seen {
    is_file: bool,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
}

impl Seen {
    fn of(meta: &fs::Metadata) -> Seen {
        Seen::from_stamp(meta.is_file(), &crate::infra::store::Stamp::from_meta(meta))
    }

    fn from_stat(stat: &rustix::fs::Stat) -> Option<Seen> {
        let is_file = rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile;
        Some(Seen::from_stamp(is_file, &crate::infra::store::Stamp::from_stat(stat)?))
    }

    fn from_stamp(is_file: bool, stamp: &crate::infra::store::Stamp) -> Seen {
        Seen { is_file, size: stamp.size, mtime_ns: stamp.mtime_ns, ctime_ns: stamp.ctime_ns, ino: stamp.ino }
    }
}

/// What the target holds, as of the last deploy or rollback (per mode: the target, or one release dir).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetState {
    /// The release.
    pub release_id: Option<ReleaseId>,
    /// Its files.
    pub files: BTreeMap<String, FileStat>,
}

fn read_state(path: &Path) -> Result<TargetState> {
    if !path.exists() {
        return Ok(TargetState::default());
    }
    crate::infra::yaml::read_cache(path)
}

/// The stat cache: what shipshape last wrote at the target (or in one release directory). Do not edit.
fn write_state(path: &Path, state: &TargetState) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_dir_all_durable(parent)?;
    }
    crate::infra::yaml::write_cache(path, state)
}

/// The hash of the file at `path` now: from the stat cache when the file is untouched, else re-hashed.
fn observed(path: &Path, cached: Option<&FileStat>) -> Result<Option<Digest>> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path, "reading metadata"),
        Ok(meta) if !meta.is_file() => return Ok(Some(Digest([0; 32]))), // not a regular file: never equal
        Ok(meta) => meta,
    };
    if let Some(stat) = cached.filter(|s| s.matches(&Seen::of(&meta))) {
        return Ok(Some(stat.hash));
    }
    Ok(Some(hash_file(path, &NoProgress)?.0))
}

/// One release's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseFiles {
    /// The release.
    pub release_id: ReleaseId,
    /// Its manifest.
    pub manifest: RelPath,
    /// path → (hash, size).
    pub files: BTreeMap<String, (Digest, u64)>,
    /// The release its manifest names as previous (its rollback plan's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<ReleaseId>,
}

impl ReleaseFiles {
    /// From a manifest.
    pub fn of(workspace: &Workspace, loaded: &LoadedManifest) -> Result<ReleaseFiles> {
        let manifest = RelPath::from_walk(&workspace.root, &loaded.path)
            .map_err(|rule| Error::invalid(&loaded.path, format!("manifest path: {rule}")))?;
        let files = loaded.manifest.artifacts.iter().map(|(_, a)| (a.path.to_string(), (a.hash, a.size))).collect();
        Ok(ReleaseFiles {
            release_id: loaded.manifest.release_id.clone(),
            manifest,
            files,
            rollback_to: loaded.manifest.rollback_plan.previous_release_id.clone(),
        })
    }
}

/// `deploy` or `rollback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A new release.
    Deploy,
    /// Back to an earlier one.
    Rollback,
}

/// One file the plan changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The path.
    pub path: String,
    /// What the target holds now (`None`: absent).
    pub old: Option<Digest>,
    /// What it will hold (`None`: removed).
    pub new: Option<Digest>,
    /// Bytes to write.
    pub size: u64,
}

/// A planned transition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Transaction id.
    pub txid: String,
    /// Deploy or rollback.
    pub kind: Kind,
    /// The mode.
    pub mode: DeployMode,
    /// The target directory.
    pub target: PathBuf,
    /// What is active now (`None`: nothing deployed yet).
    pub from: Option<ReleaseFiles>,
    /// What will be.
    pub to: ReleaseFiles,
    /// Files written or removed.
    pub changes: Vec<Change>,
    /// Files already right, left untouched.
    pub unchanged: usize,
    /// Who.
    pub by: String,
    /// Why (rollbacks).
    pub reason: Option<String>,
    /// The environment.
    pub environment: String,
    /// Heightened monitoring hours to register.
    pub heightened_hours: u32,
}

impl Plan {
    /// Bytes the plan writes.
    pub fn bytes(&self) -> u64 {
        self.changes.iter().filter(|c| c.new.is_some()).map(|c| c.size).sum()
    }

    /// Human-readable lines.
    pub fn describe(&self) -> Vec<String> {
        let from = self.from.as_ref().map_or("nothing deployed".to_string(), |f| f.release_id.to_string());
        let mut lines = vec![format!(
            "{} {} -> {} into {} ({} mode)",
            match self.kind {
                Kind::Deploy => "deploy",
                Kind::Rollback => "rollback",
            },
            from,
            self.to.release_id,
            self.target.display(),
            match self.mode {
                DeployMode::Copy => "copy",
                DeployMode::Symlink => "symlink",
            }
        )];
        for change in &self.changes {
            let what = match (&change.old, &change.new) {
                (None, Some(_)) => "add    ",
                (Some(_), Some(_)) => "change ",
                (Some(_), None) => "remove ",
                (None, None) => "keep   ",
            };
            lines.push(format!(
                "  {what} {}{}",
                change.path,
                change.new.map(|_| format!(" ({} bytes)", change.size)).unwrap_or_default()
            ));
        }
        lines.push(format!(
            "{} changed, {} unchanged, {} removed, {} bytes to write",
            self.changes.iter().filter(|c| c.new.is_some()).count(),
            self.unchanged,
            self.changes.iter().filter(|c| c.new.is_none()).count(),
            self.bytes()
        ));
        lines
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Record {
    Plan { plan: Box<Plan>, at: Time },
    Phase { phase: String, at: Time },
    Outcome { outcome: String, reason: Option<String>, at: Time },
}

/// The journal of one transaction.
struct Journal {
    path: PathBuf,
    file: File,
}

fn journal_dir(workspace: &Workspace) -> PathBuf {
    workspace.release_dir().join("journal")
}

impl Journal {
    fn create(workspace: &Workspace, plan: &Plan, now: Time) -> Result<Journal> {
        let dir = journal_dir(workspace);
        create_dir_all_durable(&dir)?;
        let path = dir.join(format!("{}.jsonl", plan.txid));
        let file = OpenOptions::new().append(true).create_new(true).open(&path).at(&path, "creating journal")?;
        let mut journal = Journal { path, file };
        journal.append(&Record::Plan { plan: Box::new(plan.clone()), at: now })?;
        sync_dir(&dir)?;
        Ok(journal)
    }

    fn open(path: &Path) -> Result<Journal> {
        let file = OpenOptions::new().append(true).open(path).at(path, "opening journal")?;
        Ok(Journal { path: path.to_path_buf(), file })
    }

    /// Append a record; `durable` forces it to disk before returning. Recovery decides only on the
    /// plan and the `committed` record, so those (and the outcome) are durable; the other phases
    /// are a record for people and reach the disk with the next fsync.
    fn append_with(&mut self, record: &Record, durable: bool) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(|e| Error::invalid(&self.path, e.to_string()))?;
        line.push(b'\n');
        self.file.write_all(&line).at(&self.path, "writing journal")?;
        if durable {
            self.file.sync_data().at(&self.path, "syncing journal")?;
        }
        Ok(())
    }

    fn append(&mut self, record: &Record) -> Result<()> {
        self.append_with(record, true)
    }

    fn phase(&mut self, phase: &str, now: Time) -> Result<()> {
        self.append_with(&Record::Phase { phase: phase.into(), at: now }, phase == "committed")?;
        failpoint(&format!("after-{phase}"));
        Ok(())
    }

    /// Record how the transaction ended and retire the journal to `done/`.
    fn outcome(&mut self, outcome: &str, reason: Option<String>, now: Time) -> Result<()> {
        self.append(&Record::Outcome { outcome: outcome.into(), reason, at: now })?;
        retire(&self.path)
    }
}

/// Move a finished journal to `journal/done/`, so that recovery, which every mutating command runs
/// first, reads only unfinished ones. The move need not be durable: a finished journal left behind
/// by a crash has its outcome, and the next recovery moves it.
fn retire(path: &Path) -> Result<()> {
    let Some((dir, name)) = path.parent().zip(path.file_name()) else { return Ok(()) };
    let done = dir.join("done");
    create_dir_all_durable(&done)?;
    fs::rename(path, done.join(name)).at(path, "moving the finished journal to done/")
}

fn read_journal(path: &Path) -> Result<(Plan, Vec<String>, Option<String>)> {
    let file = File::open(path).at(path, "opening journal")?;
    let (mut plan, mut phases, mut outcome) = (None, Vec::new(), None);
    for line in BufReader::new(file).lines() {
        let line = line.at(path, "reading journal")?;
        if line.trim().is_empty() {
            continue;
        }
        // A torn last line (crash mid-append) is ignored: its phase did not happen.
        let Ok(record) = serde_json::from_str::<Record>(&line) else { continue };
        match record {
            Record::Plan { plan: p, .. } => plan = Some(*p),
            Record::Phase { phase, .. } => phases.push(phase),
            Record::Outcome { outcome: o, .. } => outcome = Some(o),
        }
    }
    let plan = plan.ok_or_else(|| Error::invalid(path, "journal without a plan"))?;
    Ok((plan, phases, outcome))
}

/// A file of `release` from the store into `destination` (temp + fsync + rename), re-hashed on the way.
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
    FileStat::of(destination, *hash)
}

fn temp_name(path: &Path, txid: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.shipshape-{txid}"))
}

/// Bring the copy-mode target to exactly `files` (paths not in `files` but in `also` are removed).
fn converge_copy(
    workspace: &Workspace,
    target: &Target,
    files: Option<&ReleaseFiles>,
    also: &[&ReleaseFiles],
    txid: &str,
) -> Result<TargetState> {
    let cached = read_state(&target.state_path())?;
    let mut state = TargetState { release_id: files.map(|f| f.release_id.clone()), files: BTreeMap::new() };
    let mut paths: BTreeSet<String> = also.iter().flat_map(|r| r.files.keys().cloned()).collect();
    if let Some(f) = files {
        paths.extend(f.files.keys().cloned());
    }
    for path in paths {
        let rel = RelPath::new(&path).map_err(|rule| Error::invalid(&target.root, format!("{path}: {rule}")))?;
        let live = target.confined(&target.root, &rel)?;
        let _ = fs::remove_file(temp_name(&live, txid));
        let desired = files.and_then(|f| f.files.get(&path)).map(|(h, _)| *h);
        let now = observed(&live, cached.files.get(&path))?;
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
                let stat = match cached.files.get(&path).filter(|s| s.hash == hash && s.still_matches(&live)) {
                    Some(stat) => stat.clone(),
                    None => FileStat::of(&live, hash)?,
                };
                state.files.insert(path, stat);
            }
            Some(hash) => {
                let stat = materialise(workspace, &hash, &live, txid)?;
                state.files.insert(path, stat);
            }
        }
    }
    write_state(&target.state_path(), &state)?;
    Ok(state)
}

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
fn materialise_release(
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
        let dir = crate::infra::atomic::StatDir::open(&final_dir);
        let intact = release.files.iter().all(|(path, (hash, _))| {
            let seen = dir.stat(path).as_ref().and_then(Seen::from_stat);
            let (Some(stat), Some(seen)) = (state.files.get_mut(path), seen) else {
                return false;
            };
            if stat.hash != *hash || !stat.same_but_ctime(&seen) {
                return false;
            }
            if stat.matches(&seen) {
                return true;
            }
            let now = FileStat::from_seen(&seen, *hash);
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
        let rel = RelPath::new(path).map_err(|rule| Error::invalid(&target.root, format!("{path}: {rule}")))?;
        let destination = rel.under(&staging);
        if let Some(parent) = destination.parent() {
            fs::create_dir_all(parent).at(parent, "creating")?;
            let mut dir = parent;
            while dir != staging && dirs.insert(dir.to_path_buf()) {
                dir = dir.parent().unwrap_or(&staging);
            }
        }
        let reused = previous.zip(previous_state.as_ref()).and_then(|(p, ps)| {
            let source = target.release_dir(&p.release_id).join(path);
            (p.files.get(path).map(|(h, _)| h) == Some(hash)
                && ps.files.get(path).is_some_and(|s| s.still_matches(&source)))
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
        state.files.insert(path.clone(), FileStat::of(&destination, *hash)?);
        failpoint(&format!("staging:{}", index + 1));
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
            previous_state.files.insert(path, FileStat::of(&source, hash)?);
        }
        write_state(&previous_path, &previous_state)?;
    }
    sync_dir(&target.releases())
}

/// Point `current` at `release` (or remove it for `None`) with one atomic rename.
fn switch_link(target: &Target, release: Option<&ReleaseId>, txid: &str) -> Result<()> {
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

fn current_release(target: &Target) -> Option<String> {
    let link = fs::read_link(target.current_link()).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Bring the target to exactly `release` (`None`: nothing), whatever state a crash left it in.
fn converge(workspace: &Workspace, target: &Target, release: Option<&ReleaseFiles>, plan: &Plan) -> Result<()> {
    match target.mode {
        DeployMode::Copy => {
            let mut others: Vec<&ReleaseFiles> = vec![&plan.to];
            if let Some(from) = &plan.from {
                others.push(from);
            }
            converge_copy(workspace, target, release, &others, &plan.txid)?;
        }
        DeployMode::Symlink => {
            if let Some(release) = release {
                let previous = [plan.from.as_ref(), Some(&plan.to)]
                    .into_iter()
                    .flatten()
                    .find(|r| r.release_id != release.release_id);
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
        }
    }
    Ok(())
}

/// Check that the target holds exactly `release`, re-hashing (through the stat cache only for
/// files this transaction did not write). Returns the paths that differ.
pub fn drift(target: &Target, release: &ReleaseFiles, deep: bool) -> Result<Vec<String>> {
    let (base, state_path) = match target.mode {
        DeployMode::Copy => (target.root.clone(), target.state_path()),
        DeployMode::Symlink => {
            if current_release(target).as_deref() != Some(release.release_id.as_str()) {
                return Ok(vec![format!("current -> {}", current_release(target).unwrap_or_else(|| "nothing".into()))]);
            }
            let dir = target.release_dir(&release.release_id);
            (dir.clone(), dir.with_extension("state.yaml"))
        }
    };
    let state = read_state(&state_path)?;
    let mut differing = Vec::new();
    for (path, (hash, _)) in &release.files {
        let rel = RelPath::new(path).map_err(|rule| Error::invalid(&target.root, format!("{path}: {rule}")))?;
        let live = target.confined(&base, &rel)?;
        let cached = if deep { None } else { state.files.get(path) };
        if observed(&live, cached)? != Some(*hash) {
            differing.push(path.clone());
        }
    }
    Ok(differing)
}

/// Compute the plan from `from` (what is active) to `to`.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    workspace: &Workspace,
    target: &Target,
    kind: Kind,
    from: Option<ReleaseFiles>,
    to: ReleaseFiles,
    by: &str,
    reason: Option<String>,
    environment: &str,
    now: Time,
) -> Result<Plan> {
    // Unique even for two transactions in one second in one process (the demo runs in-process).
    static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let txid = format!(
        "tx_{}_{}_{}",
        now.compact(),
        std::process::id(),
        SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut changes = Vec::new();
    let mut unchanged = 0;
    // What is there now, per path: in copy mode the target's own files (through the stat cache);
    // in symlink mode the switch replaces the whole set, so the difference between the two
    // releases' manifests (their directories are checked when materialised and after the switch).
    let cached = match target.mode {
        DeployMode::Copy => read_state(&target.state_path())?,
        DeployMode::Symlink => TargetState::default(),
    };
    let now_at = |path: &str| -> Result<Option<Digest>> {
        match target.mode {
            DeployMode::Copy => {
                let rel = RelPath::new(path).map_err(|rule| Error::invalid(&target.root, format!("{path}: {rule}")))?;
                observed(&target.confined(&target.root, &rel)?, cached.files.get(path))
            }
            DeployMode::Symlink => Ok(from.as_ref().and_then(|f| f.files.get(path)).map(|(hash, _)| *hash)),
        }
    };
    for (path, (hash, size)) in &to.files {
        let now_hash = now_at(path)?;
        if now_hash == Some(*hash) {
            unchanged += 1;
        } else {
            changes.push(Change { path: path.clone(), old: now_hash, new: Some(*hash), size: *size });
        }
    }
    if let Some(from) = &from {
        for path in from.files.keys().filter(|p| !to.files.contains_key(*p)) {
            if let Some(old) = now_at(path)? {
                changes.push(Change { path: path.clone(), old: Some(old), new: None, size: 0 });
            }
        }
    }
    Ok(Plan {
        txid,
        kind,
        mode: target.mode,
        target: target.root.clone(),
        from,
        to,
        changes,
        unchanged,
        by: by.to_string(),
        reason,
        environment: environment.to_string(),
        heightened_hours: workspace.config.monitoring.heightened_hours.0,
    })
}

/// Refuse a plan the target's filesystem has no room for.
pub fn check_space(target: &Target, plan: &Plan) -> Result<()> {
    if failpoint_set("skip-space-check") {
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

/// How a transition ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new release is active.
    Committed,
    /// A post-deploy check failed; the previous release was restored.
    RolledBack(String),
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

fn finish(workspace: &Workspace, plan: &Plan, action: &str, reason: Option<String>, now: Time) -> Result<()> {
    let to = &plan.to;
    registry::register_and_record(
        workspace,
        &to.release_id,
        &to.manifest,
        plan.heightened_hours,
        &plan.by,
        &plan.environment,
        action,
        now,
        to.rollback_to.as_ref(),
        Some(HistoryEntry {
            at: now,
            action: action.into(),
            release_id: to.release_id.clone(),
            previous_release_id: plan.from.as_ref().map(|f| f.release_id.clone()),
            by: plan.by.clone(),
            reason,
            transaction: plan.txid.clone(),
        }),
    )?;
    Ok(())
}

/// Run a plan under the caller's locks: journal, stage, switch, verify, check, commit — or restore
/// the previous release on any failure. `accept` records the manifest for anti-rollback at commit.
pub fn apply(
    workspace: &Workspace,
    target: &Target,
    plan: &Plan,
    checks: &[PostDeployCheck],
    accept: Option<&LoadedManifest>,
    now: Time,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let mut journal = Journal::create(workspace, plan, now)?;
    failpoint("after-plan");
    let result = run_phases(workspace, target, plan, checks, &mut journal, now, progress);
    match result {
        Ok(None) => {
            journal.phase("committed", now)?;
            if let Some(loaded) = accept {
                crate::trust::anti_rollback::record(workspace, loaded, now)?;
            }
            let action = match plan.kind {
                Kind::Deploy => "deploy",
                Kind::Rollback => "rollback",
            };
            finish(workspace, plan, action, plan.reason.clone(), now)?;
            failpoint("after-registry");
            journal.outcome("committed", None, now)?;
            Ok(Outcome::Committed)
        }
        Ok(Some(reason)) => {
            // A post-deploy check failed: back to the previous release, recorded as such.
            converge(workspace, target, plan.from.as_ref(), plan)?;
            registry::record(
                workspace,
                HistoryEntry {
                    at: now,
                    action: "deploy_failed".into(),
                    release_id: plan.to.release_id.clone(),
                    previous_release_id: plan.from.as_ref().map(|f| f.release_id.clone()),
                    by: plan.by.clone(),
                    reason: Some(reason.clone()),
                    transaction: plan.txid.clone(),
                },
            )?;
            if let Some(from) = &plan.from {
                registry::record(
                    workspace,
                    HistoryEntry {
                        at: now,
                        action: "auto_rollback".into(),
                        release_id: from.release_id.clone(),
                        previous_release_id: Some(plan.to.release_id.clone()),
                        by: "shipshape".into(),
                        reason: Some(format!("post-deploy check failed: {reason}")),
                        transaction: plan.txid.clone(),
                    },
                )?;
            }
            journal.outcome("rolled_back", Some(reason.clone()), now)?;
            Ok(Outcome::RolledBack(reason))
        }
        Err(error) => {
            // Anything else (corrupt object, full disk, I/O): restore exactly the old release.
            match converge(workspace, target, plan.from.as_ref(), plan) {
                Ok(()) => {
                    journal.outcome("failed", Some(error.to_string()), now)?;
                    Err(error)
                }
                Err(restore_error) => Err(Error::Check(format!(
                    "{error}; restoring the previous release also failed ({restore_error}): the journal {} is left open, run `shipshape recover`",
                    journal.path.display()
                ))),
            }
        }
    }
}

/// The phases; `Ok(Some(reason))` when a post-deploy check failed.
fn run_phases(
    workspace: &Workspace,
    target: &Target,
    plan: &Plan,
    checks: &[PostDeployCheck],
    journal: &mut Journal,
    now: Time,
    progress: &dyn Progress,
) -> Result<Option<String>> {
    journal.phase("verified", now)?;
    progress.start("deploying", plan.bytes());
    match target.mode {
        DeployMode::Copy => {
            // Stage every changed file beside its destination; keep the stat of each staged file whose
            // own bytes were hashed.
            // Every staged file is fsynced (on the syncer's threads, while the next is copied)
            // before the journal says "staged".
            let mut staged: BTreeMap<&str, FileStat> = BTreeMap::new();
            let syncer = Syncer::new();
            for (index, change) in plan.changes.iter().enumerate() {
                let Some(hash) = change.new else { continue };
                let rel = RelPath::new(&change.path).map_err(|rule| Error::invalid(&target.root, rule.to_string()))?;
                let live = target.confined(&target.root, &rel)?;
                let temp = temp_name(&live, &plan.txid);
                if let Some(parent) = live.parent() {
                    create_dir_all_durable(parent)?;
                }
                let (stat, file) = stage_file(workspace, &hash, &temp)?;
                if let Some(stat) = stat {
                    staged.insert(change.path.as_str(), stat);
                }
                syncer.push(file, temp);
                progress.advance(change.size);
                failpoint(&format!("staging:{}", index + 1));
            }
            syncer.finish()?;
            journal.phase("staged", now)?;
            journal.phase("switching", now)?;
            let mut dirs = BTreeSet::new();
            for (index, change) in plan.changes.iter().enumerate() {
                let rel = RelPath::new(&change.path).map_err(|rule| Error::invalid(&target.root, rule.to_string()))?;
                let live = target.confined(&target.root, &rel)?;
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
                failpoint(&format!("switching:{}", index + 1));
            }
            for dir in dirs {
                sync_dir(&dir)?;
            }
            journal.phase("switched", now)?;
            // Check what was written, and record the stat cache for the next deploy. A file whose
            // staged copy was hashed in place is proven by being that very file (same inode, size
            // and modification time: a rename changes none of them); anything else is re-hashed.
            let cached = read_state(&target.state_path())?;
            let mut state = TargetState { release_id: Some(plan.to.release_id.clone()), files: BTreeMap::new() };
            let changed: BTreeMap<&str, &Change> = plan.changes.iter().map(|c| (c.path.as_str(), c)).collect();
            for (path, (hash, _)) in &plan.to.files {
                let rel = RelPath::new(path).map_err(|rule| Error::invalid(&target.root, rule.to_string()))?;
                let live = target.confined(&target.root, &rel)?;
                let same_file = staged.get(path.as_str()).is_some_and(|stat| {
                    fs::metadata(&live).is_ok_and(|meta| {
                        meta.is_file()
                            && meta.ino() == stat.ino
                            && meta.len() == stat.size
                            && meta.mtime() * 1_000_000_000 + meta.mtime_nsec() == stat.mtime_ns
                    })
                });
                if changed.contains_key(path.as_str()) && same_file {
                    state.files.insert(path.clone(), FileStat::of(&live, *hash)?);
                } else if changed.contains_key(path.as_str()) {
                    let (actual, _) = hash_file(&live, &NoProgress)?;
                    if actual != *hash {
                        return Err(Error::Check(format!(
                            "{} holds {actual} after the switch, expected {hash}",
                            live.display()
                        )));
                    }
                    state.files.insert(path.clone(), FileStat::of(&live, *hash)?);
                } else {
                    // Unchanged: the plan found it holding this hash (through the cache or by hashing).
                    let stat = match cached.files.get(path).filter(|s| s.hash == *hash && s.still_matches(&live)) {
                        Some(stat) => stat.clone(),
                        None => FileStat::of(&live, *hash)?,
                    };
                    state.files.insert(path.clone(), stat);
                }
            }
            write_state(&target.state_path(), &state)?;
        }
        DeployMode::Symlink => {
            materialise_release(workspace, target, &plan.to, plan.from.as_ref(), &plan.txid)?;
            journal.phase("staged", now)?;
            journal.phase("switching", now)?;
            switch_link(target, Some(&plan.to.release_id), &plan.txid)?;
            journal.phase("switched", now)?;
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
        }
    }
    progress.finish();
    // Post-deploy checks, against the live target.
    for check in checks {
        let timeout = check.timeout.map_or(std::time::Duration::from_secs(300), |t| t.0.0.unsigned_abs());
        let command = format!(
            "SHIPSHAPE_TARGET={} SHIPSHAPE_RELEASE_ID={} ; export SHIPSHAPE_TARGET SHIPSHAPE_RELEASE_ID ; {}",
            crate::pipeline::manifest::shell_quote(&plan.target.to_string_lossy()),
            plan.to.release_id,
            check.command
        );
        let outcome = crate::infra::command::run_shell(&command, &workspace.root, timeout)?;
        if !outcome.succeeded() {
            let tail = outcome.tail.lines().last().unwrap_or("").to_string();
            return Ok(Some(format!(
                "{} ({}): {}{}",
                check.name,
                check.command,
                outcome.describe(),
                if tail.is_empty() { String::new() } else { format!(": {tail}") }
            )));
        }
    }
    journal.phase("checked", now)?;
    Ok(None)
}

/// Stage one store object as `temp`: copied in the kernel and the copy hashed (or, where the kernel
/// cannot copy, read, hashed and written in one pass). Returns the open file, **not yet fsynced**
/// (the caller syncs it, or hands it to a [`Syncer`] with the others), and the staged file's stat
/// when its own bytes were hashed — proof, after the rename, that the live file is the file hashed —
/// or `None` when the source bytes were hashed on their way (the caller re-hashes after the switch).
fn stage_file(workspace: &Workspace, hash: &Digest, temp: &Path) -> Result<(Option<FileStat>, File)> {
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
    let stat = if destination_hashed { Some(FileStat::of(temp, *hash)?) } else { None };
    Ok((stat, output))
}

/// What recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The transaction.
    pub txid: String,
    /// `forward` (to the new release) or `back` (to the old one).
    pub direction: String,
    /// The release the target now holds.
    pub release: Option<ReleaseId>,
}

/// Finish or undo every unfinished transaction in the journal (the caller holds the locks of
/// `_target`; each transaction is replayed against the target its plan recorded).
pub fn recover(workspace: &Workspace, _target: &Target, now: Time) -> Result<Vec<Recovered>> {
    let dir = journal_dir(workspace);
    let mut done = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(e).at(&dir, "listing"),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    paths.sort();
    for path in paths {
        let (plan, phases, outcome) = read_journal(&path)?;
        if outcome.is_some() {
            retire(&path)?;
            continue;
        }
        let plan_target = Target::at(plan.target.clone(), plan.mode);
        let mut journal = Journal::open(&path)?;
        if phases.iter().any(|p| p == "committed") {
            converge(workspace, &plan_target, Some(&plan.to), &plan)?;
            let action = match plan.kind {
                Kind::Deploy => "deploy",
                Kind::Rollback => "rollback",
            };
            finish(workspace, &plan, action, plan.reason.clone(), now)?;
            journal.outcome("recovered_forward", None, now)?;
            done.push(Recovered {
                txid: plan.txid.clone(),
                direction: "forward".into(),
                release: Some(plan.to.release_id.clone()),
            });
        } else {
            converge(workspace, &plan_target, plan.from.as_ref(), &plan)?;
            registry::record(
                workspace,
                HistoryEntry {
                    at: now,
                    action: "recovered".into(),
                    release_id: plan.from.as_ref().map_or_else(|| plan.to.release_id.clone(), |f| f.release_id.clone()),
                    previous_release_id: Some(plan.to.release_id.clone()),
                    by: "shipshape recover".into(),
                    reason: Some(format!(
                        "an interrupted {} of {} was undone",
                        match plan.kind {
                            Kind::Deploy => "deploy",
                            Kind::Rollback => "rollback",
                        },
                        plan.to.release_id
                    )),
                    transaction: plan.txid.clone(),
                },
            )?;
            journal.outcome("recovered_back", None, now)?;
            done.push(Recovered {
                txid: plan.txid.clone(),
                direction: "back".into(),
                release: plan.from.as_ref().map(|f| f.release_id.clone()),
            });
        }
    }
    Ok(done)
}

/// What a rollback is asked to do.
#[derive(Debug, Clone)]
pub struct RollbackRequest {
    /// The release to return to; `None`: the one the active release's manifest names as previous.
    pub to: Option<ReleaseId>,
    /// Why (recorded in the history).
    pub reason: String,
    /// Who (recorded).
    pub by: String,
    /// Show the plan and change nothing.
    pub dry_run: bool,
}

/// How a rollback ended.
#[derive(Debug, Clone)]
pub enum RollbackOutcome {
    /// Rolled back.
    Done(Plan),
    /// `--dry-run`: the plan, unapplied.
    DryRun(Plan),
    /// The confirmation was refused.
    NotConfirmed(Plan),
}

/// The active release's files, if anything is deployed.
pub fn active_files(
    workspace: &Workspace,
    now: Time,
) -> Result<Option<(crate::model::registry::ReleaseInfo, ReleaseFiles)>> {
    let Some(info) = registry::get_active_release(workspace, now)? else { return Ok(None) };
    let loaded = crate::pipeline::manifest::load(&info.manifest_path.under(&workspace.root))?;
    let files = ReleaseFiles::of(workspace, &loaded)?;
    Ok(Some((info, files)))
}

/// The manifest of `release` in the workspace, verified as a rollback needs: its objects (the
/// backups restored from), approvals and chain.
fn verify_for_rollback(
    workspace: &Workspace,
    release: &ReleaseId,
    now: Time,
    progress: &dyn Progress,
) -> Result<LoadedManifest> {
    let path = workspace.manifests_dir().join(format!("{release}.yaml"));
    if !path.exists() {
        return Err(Error::Usage(format!(
            "there is no manifest for {release} in {}",
            workspace.display(&workspace.manifests_dir())
        )));
    }
    Ok(crate::pipeline::verify::trusted_for_rollback(workspace, &path, now, progress)?.0)
}

/// Roll the target back to an earlier release: the whole flow behind `shipshape rollback` and the
/// monitor's auto-rollback. Verifies the release's store objects and approvals before touching
/// anything ("backup verification before restore"), takes the locks, recovers an interrupted
/// transaction (reported through `recovered`), plans, asks `confirm`, applies under the journal.
pub fn rollback(
    workspace: &Workspace,
    request: &RollbackRequest,
    now: Time,
    progress: &dyn Progress,
    recovered: &mut dyn FnMut(&Recovered),
    confirm: &mut dyn FnMut(&Plan) -> Result<bool>,
) -> Result<RollbackOutcome> {
    let target = Target::of(workspace)?;
    let Some(active) = registry::get_active_release(workspace, now)? else {
        return Err(Error::Usage(
            "nothing is deployed yet, so there is nothing to roll back: deploy with `shipshape deploy`".into(),
        ));
    };
    // The release to restore is the one named, or the one the active manifest names as previous.
    // The registry remembers the latter, so it is verified while the active manifest is read (the
    // two parse on two cores); the manifest has the last word.
    let hint = request.to.clone().or_else(|| active.rollback_to.clone());
    let (active_read, verified) = std::thread::scope(|scope| {
        let reading = scope.spawn(|| -> Result<(LoadedManifest, ReleaseFiles)> {
            let loaded = crate::pipeline::manifest::load(&active.manifest_path.under(&workspace.root))?;
            let files = ReleaseFiles::of(workspace, &loaded)?;
            Ok((loaded, files))
        });
        let verified = hint.as_ref().map(|id| verify_for_rollback(workspace, id, now, progress));
        let read = reading.join().unwrap_or_else(|_| Err(Error::Check("reading the active manifest panicked".into())));
        (read, verified)
    });
    let (active_manifest, from) = active_read?;
    let to_id = match &request.to {
        Some(id) => id.clone(),
        None => active_manifest.manifest.rollback_plan.previous_release_id.clone().ok_or_else(|| {
            Error::Usage(format!(
                "{} is the first release: there is no earlier release to roll back to",
                active.release_id
            ))
        })?,
    };
    if to_id == active.release_id {
        return Err(Error::Usage(format!("{to_id} is already the active release")));
    }
    let loaded = match verified {
        Some(result) if hint.as_ref() == Some(&to_id) => result?,
        _ => verify_for_rollback(workspace, &to_id, now, progress)?,
    };
    let to = ReleaseFiles::of(workspace, &loaded)?;
    let environment = loaded.manifest.deployment.environment.to_string();
    let reason = Some(request.reason.clone());
    if request.dry_run {
        let plan = plan(workspace, &target, Kind::Rollback, Some(from), to, &request.by, reason, &environment, now)?;
        return Ok(RollbackOutcome::DryRun(plan));
    }
    let _locks = lock(workspace, &target, "rollback", now)?;
    let recoveries = recover(workspace, &target, now)?;
    for r in &recoveries {
        recovered(r);
    }
    // Another command may have finished, or a recovery moved the target, before the lock was ours.
    let still_active = registry::get_active_release(workspace, now)?
        .is_some_and(|now_active| now_active.release_id == active.release_id && recoveries.is_empty());
    let from = if still_active { Some(from) } else { active_files(workspace, now)?.map(|(_, files)| files) };
    let plan = plan(workspace, &target, Kind::Rollback, from, to, &request.by, reason, &environment, now)?;
    check_space(&target, &plan)?;
    if !confirm(&plan)? {
        return Ok(RollbackOutcome::NotConfirmed(plan));
    }
    apply(workspace, &target, &plan, &[], None, now, progress)?;
    Ok(RollbackOutcome::Done(plan))
}
