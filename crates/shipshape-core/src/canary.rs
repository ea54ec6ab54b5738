//! Canary releases by capital share: the candidate's tree beside the stable one, and the
//! allocation file the trading engine reads.
//!
//! The stable release stays where every deploy puts it (the `[deploy]` target); a canary never
//! touches it. The candidate is materialised, verified, under `<target>.canary/<release_id>/` —
//! built in a temporary directory, fsynced, then renamed into place, so a tree that exists is
//! complete. `<target>.allocation.yaml` (JSON, which is YAML too) says which trees trade which fraction of capital, with a
//! generation number; it is replaced atomically (temporary file, fsync, rename, fsync of the
//! directory), and only after the trees it names are complete. So an engine reading it after any
//! crash sees the old generation or the new one, never a mix and never a half-built tree.
//!
//! The canary's own state (`data/monitoring/releases/canary.yaml`) and its log of steps and
//! decisions (`canary_log.jsonl` beside it) live with the registry.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::deploy::target::Target;
use crate::error::{Error, IoContext as _, Result};
use crate::infra::clock::Time;
use crate::layout::Workspace;
use crate::model::ids::ReleaseId;
use crate::model::manifest::LoadedManifest;

/// The allocation file's schema version.
pub const ALLOCATION_SCHEMA: u32 = 1;

/// Where a canary's files are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The stable tree (the deploy target).
    pub stable_tree: PathBuf,
    /// Where candidate trees are built (`<target>.canary/`).
    pub canary_dir: PathBuf,
    /// The allocation file the engine reads (`<target>.allocation.yaml`).
    pub allocation: PathBuf,
    /// The canary's state.
    pub state: PathBuf,
    /// Its log (JSON lines).
    pub log: PathBuf,
}

impl Paths {
    /// The paths of `workspace`'s target.
    pub fn of(workspace: &Workspace) -> Result<Paths> {
        let target = Target::of(workspace)?;
        let name = target.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "target".into());
        let parent = target.root.parent().map_or_else(|| workspace.root.clone(), Path::to_path_buf);
        let registry = workspace.root.join(crate::registry::REGISTRY_DIR);
        Ok(Paths {
            stable_tree: target.root.clone(),
            canary_dir: parent.join(format!("{name}.canary")),
            allocation: parent.join(format!("{name}.allocation.yaml")),
            state: registry.join("canary.yaml"),
            log: log_path(&workspace.root),
        })
    }

    /// The candidate tree of `release`.
    pub fn candidate_tree(&self, release: &ReleaseId) -> PathBuf {
        self.canary_dir.join(release.as_str())
    }
}

/// The canary's log of the workspace at `root` (it does not depend on the target).
pub fn log_path(root: &Path) -> PathBuf {
    root.join(crate::registry::REGISTRY_DIR).join("canary_log.jsonl")
}

/// One release in the allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// `stable` or `candidate`.
    pub role: String,
    /// The release.
    pub release_id: ReleaseId,
    /// Its tree (absolute).
    pub tree: PathBuf,
    /// The fraction of capital it trades (the shares sum to 1).
    pub fraction: f64,
}

/// `<target>.allocation.yaml`: what the engine trades with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// Schema version.
    pub schema_version: u32,
    /// Increases by one at every change; an engine reloads when it changes.
    pub generation: u64,
    /// When it was written.
    pub updated_at: Time,
    /// Why (a step, a promotion, an abort).
    pub reason: String,
    /// The releases and their fractions.
    pub releases: Vec<Share>,
}

impl Allocation {
    /// The stable release only, all of the capital.
    pub fn stable_only(generation: u64, stable: &ReleaseId, tree: &Path, now: Time, reason: &str) -> Allocation {
        Allocation {
            schema_version: ALLOCATION_SCHEMA,
            generation,
            updated_at: now,
            reason: reason.to_string(),
            releases: vec![Share {
                role: "stable".into(),
                release_id: stable.clone(),
                tree: tree.to_path_buf(),
                fraction: 1.0,
            }],
        }
    }
}

/// Read the allocation file (`None` when there is none).
pub fn read_allocation(path: &Path) -> Result<Option<Allocation>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let allocation: Allocation = crate::infra::yaml::parse(path, &text)?;
            let sum: f64 = allocation.releases.iter().map(|s| s.fraction).sum();
            if (sum - 1.0).abs() > 1e-9 || allocation.releases.iter().any(|s| !(0.0..=1.0).contains(&s.fraction)) {
                return Err(Error::invalid(path, format!("fractions must be within 0..1 and sum to 1, not {sum}")));
            }
            Ok(Some(allocation))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path: path.to_path_buf(), action: "reading", source }),
    }
}

/// Replace the allocation file atomically (old or new after a crash, never a mix).
pub fn write_allocation(path: &Path, allocation: &Allocation) -> Result<()> {
    // JSON, which is YAML too: an engine reads it with its language's JSON parser (Python's
    // standard library has no YAML), or with a YAML one.
    let mut text = serde_json::to_string_pretty(allocation).map_err(|e| Error::invalid(path, e.to_string()))?;
    text.push('\n');
    if let Some(parent) = path.parent() {
        crate::infra::atomic::create_dir_all_durable(parent)?;
    }
    crate::deploy::failpoint::hit("canary-before-allocation");
    crate::infra::atomic::write_atomic(path, text.as_bytes())?;
    crate::deploy::failpoint::hit("canary-after-allocation");
    Ok(())
}

/// The canary under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryState {
    /// Schema version.
    pub schema_version: u32,
    /// The release at the target, trading the rest of the capital.
    pub stable: ReleaseId,
    /// The release on trial.
    pub candidate: ReleaseId,
    /// The candidate's capital shares, in percent, step by step (the last is 100).
    pub steps: Vec<u32>,
    /// The step it is at (index into `steps`).
    pub step: usize,
    /// When the canary started.
    pub started_at: Time,
    /// When the current step started.
    pub step_started_at: Time,
    /// The least time a step lasts before it may advance (seconds): at least one trading session.
    pub step_after_seconds: i64,
    /// The least candidate trades in a step before it may advance.
    pub min_trades: u64,
    /// Who started it.
    pub started_by: String,
}

impl CanaryState {
    /// The candidate's fraction now.
    pub fn fraction(&self) -> f64 {
        f64::from(self.steps.get(self.step).copied().unwrap_or(0)) / 100.0
    }

    /// The allocation of this state, for `generation`.
    pub fn allocation(&self, paths: &Paths, generation: u64, now: Time, reason: &str) -> Allocation {
        let f = self.fraction();
        Allocation {
            schema_version: ALLOCATION_SCHEMA,
            generation,
            updated_at: now,
            reason: reason.to_string(),
            releases: vec![
                Share {
                    role: "stable".into(),
                    release_id: self.stable.clone(),
                    tree: paths.stable_tree.clone(),
                    fraction: 1.0 - f,
                },
                Share {
                    role: "candidate".into(),
                    release_id: self.candidate.clone(),
                    tree: paths.candidate_tree(&self.candidate),
                    fraction: f,
                },
            ],
        }
    }
}

/// Parse `10,25,50,100`: increasing percentages in 1..=100, ending at 100.
pub fn parse_steps(text: &str) -> std::result::Result<Vec<u32>, String> {
    let steps = text
        .split(',')
        .map(|s| s.trim().parse::<u32>().map_err(|_| format!("`{}` is not a whole percentage", s.trim())))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    crate::config::check_steps(&steps)?;
    Ok(steps)
}

/// Read the canary's state (`None`: no canary).
pub fn read_state(paths: &Paths) -> Result<Option<CanaryState>> {
    match fs::read_to_string(&paths.state) {
        Ok(text) => Ok(Some(crate::infra::yaml::parse(&paths.state, &text)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path: paths.state.clone(), action: "reading", source }),
    }
}

/// Write the canary's state atomically.
pub fn write_state(paths: &Paths, state: &CanaryState) -> Result<()> {
    if let Some(parent) = paths.state.parent() {
        crate::infra::atomic::create_dir_all_durable(parent)?;
    }
    let text = format!(
        "# The canary under way. Written by shipshape; do not edit.\n{}",
        crate::infra::yaml::to_string(state)?
    );
    crate::infra::atomic::write_atomic(&paths.state, text.as_bytes())
}

/// Remove the canary's state (it ended).
pub fn clear_state(paths: &Paths) -> Result<()> {
    match fs::remove_file(&paths.state) {
        Ok(()) => crate::infra::atomic::sync_dir(paths.state.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io { path: paths.state.clone(), action: "removing", source }),
    }
}

/// Append one record to the canary's log (fsynced).
pub fn log(paths: &Paths, record: &serde_json::Value) -> Result<()> {
    if let Some(parent) = paths.log.parent() {
        crate::infra::atomic::create_dir_all_durable(parent)?;
    }
    let mut file = fs::OpenOptions::new().create(true).append(true).open(&paths.log).at(&paths.log, "opening")?;
    let mut line = serde_json::to_vec(record).map_err(|e| Error::invalid(&paths.log, e.to_string()))?;
    line.push(b'\n');
    file.write_all(&line).at(&paths.log, "appending to")?;
    file.sync_all().at(&paths.log, "syncing")
}

/// The canary's log, oldest first.
pub fn read_log(paths: &Paths) -> Result<Vec<serde_json::Value>> {
    match fs::read_to_string(&paths.log) {
        Ok(text) => Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(Error::Io { path: paths.log.clone(), action: "reading", source }),
    }
}

/// Build the candidate's tree from the store: every artifact copied into a temporary directory
/// beside the final one, its bytes hashed against the manifest as they are written, everything
/// fsynced, then the directory renamed into place. An existing complete tree is kept.
pub fn materialise(workspace: &Workspace, paths: &Paths, loaded: &LoadedManifest) -> Result<PathBuf> {
    let release = &loaded.manifest.release_id;
    let destination = paths.candidate_tree(release);
    if destination.is_dir() {
        return Ok(destination);
    }
    crate::infra::atomic::create_dir_all_durable(&paths.canary_dir)?;
    let building = paths.canary_dir.join(format!(".building-{release}"));
    if building.exists() {
        fs::remove_dir_all(&building).at(&building, "removing an interrupted build")?;
    }
    fs::create_dir_all(&building).at(&building, "creating")?;
    let store = workspace.store();
    for (_, artifact) in loaded.manifest.artifacts.iter() {
        let object = store.object_path(&artifact.hash);
        let bytes = fs::read(&object).at(&object, "reading the store object")?;
        if crate::infra::hash::Digest::of(&bytes) != artifact.hash {
            return Err(Error::Check(format!(
                "the store object of {} does not match its hash in {release}'s manifest: refusing to build the candidate tree",
                artifact.path
            )));
        }
        let live = artifact.path.under(&building);
        if let Some(parent) = live.parent() {
            fs::create_dir_all(parent).at(parent, "creating")?;
        }
        let mut file = fs::File::create(&live).at(&live, "creating")?;
        file.write_all(&bytes).at(&live, "writing")?;
        file.sync_all().at(&live, "syncing")?;
        crate::deploy::failpoint::hit("canary-materialise-file");
    }
    sync_tree(&building)?;
    fs::rename(&building, &destination).at(&destination, "renaming the built tree into")?;
    crate::infra::atomic::sync_dir(&paths.canary_dir)?;
    Ok(destination)
}

fn sync_tree(dir: &Path) -> Result<()> {
    for entry in walkdir::WalkDir::new(dir).contents_first(true) {
        let entry = entry.map_err(|e| Error::invalid(dir, e.to_string()))?;
        if entry.file_type().is_dir() {
            crate::infra::atomic::sync_dir(entry.path())?;
        }
    }
    Ok(())
}

/// Remove a candidate's tree (after an abort or a promotion, once the allocation no longer names it).
pub fn remove_tree(paths: &Paths, release: &ReleaseId) -> Result<()> {
    let tree = paths.candidate_tree(release);
    if tree.exists() {
        fs::remove_dir_all(&tree).at(&tree, "removing the candidate tree")?;
        crate::infra::atomic::sync_dir(&paths.canary_dir)?;
    }
    Ok(())
}

/// The generation the next allocation gets (one more than the file's; 1 when there is none).
pub fn next_generation(paths: &Paths) -> Result<u64> {
    Ok(read_allocation(&paths.allocation)?.map_or(1, |a| a.generation + 1))
}

/// End the canary under way, if any, without touching the stable release: the allocation gives
/// all the capital back to the stable tree first (the engine stops trading the candidate), then
/// the state is cleared and the candidate's tree removed. Idempotent: a crash part-way is finished
/// by running it again. Returns the canary that was aborted.
pub fn abort(workspace: &Workspace, now: Time, by: &str, reason: &str) -> Result<Option<CanaryState>> {
    let paths = Paths::of(workspace)?;
    let Some(state) = read_state(&paths)? else { return Ok(None) };
    let generation = next_generation(&paths)?;
    let allocation = Allocation::stable_only(
        generation,
        &state.stable,
        &paths.stable_tree,
        now,
        &format!("canary aborted: {reason}"),
    );
    write_allocation(&paths.allocation, &allocation)?;
    clear_state(&paths)?;
    remove_tree(&paths, &state.candidate)?;
    log(
        &paths,
        &serde_json::json!({
            "at": now.to_string(), "action": "abort", "by": by, "reason": reason,
            "stable": state.stable, "candidate": state.candidate,
            "fraction": state.fraction(), "generation": generation,
        }),
    )?;
    Ok(Some(state))
}

/// After a deploy or rollback put `active` in the target: when an allocation file exists (the
/// engine reads it) and no canary is under way, it names `active` alone (a new generation), so the
/// file never names a release the target no longer holds. Nothing when it already does.
pub fn follow_target(workspace: &Workspace, now: Time, active: &ReleaseId, why: &str) -> Result<bool> {
    let paths = Paths::of(workspace)?;
    let Some(current) = read_allocation(&paths.allocation)? else { return Ok(false) };
    if read_state(&paths)?.is_some() {
        return Ok(false);
    }
    if current.releases.len() == 1 && &current.releases[0].release_id == active {
        return Ok(false);
    }
    let allocation = Allocation::stable_only(current.generation + 1, active, &paths.stable_tree, now, why);
    write_allocation(&paths.allocation, &allocation)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn steps_are_increasing_percentages_ending_at_100() {
        assert_eq!(parse_steps("10,25,50,100").unwrap(), vec![10, 25, 50, 100]);
        for (bad, says) in [
            ("10,5,100", "increase"),
            ("10,50", "last step must be 100"),
            ("0,100", "1 to 100"),
            ("ten,100", "`ten`"),
            ("100", "at least one step"),
        ] {
            assert!(parse_steps(bad).unwrap_err().contains(says), "{bad}");
        }
    }
}
