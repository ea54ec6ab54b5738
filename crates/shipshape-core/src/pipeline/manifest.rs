//! Release manifests: `release/manifests/<release_id>.yaml`.
//!
//! A manifest names every artifact of a release with its path, size, SHA-256, version and backup,
//! the audit bundle it was made from (and that file's hash), a per-environment `sequence`, an expiry,
//! the previous manifest's hash (so the manifests of an environment form a hash chain), a rollback
//! plan and the monitoring policy. It is written once, never rewritten: approvals (a later step) are
//! signatures over its exact bytes.
//!
//! Making one copies every artifact into the object store *from the workspace* while re-hashing it,
//! and refuses — before anything becomes visible — if any file no longer matches what the audit
//! recorded. Objects are staged first and committed only when all of them match.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::config::Slug;
use crate::error::{Error, IoContext, Result};
use crate::infra::atomic::{create_dir_all_durable, sync_dir, write_new_atomic};
use crate::infra::clock::Time;
use crate::infra::command::shell_quote;
use crate::infra::hash::{Digest, Progress, hash_file_with, parallel_map, read_ahead_helps};
use crate::infra::paths::{RelPath, confine};
use crate::infra::store::{StagedObject, link_or_copy};
use crate::layout::{Workspace, parsed_dir_of};
use crate::model::audit::{ArtifactRecord, AuditBundle};
use crate::model::ids::{ReleaseId, ReleaseType};
use crate::model::manifest::{
    ArtifactsByKind, Deployment, LoadedManifest, MANIFEST_SCHEMA, Manifest, ManifestArtifact, Metadata, MonitoringPlan,
    PolicyRef, RollbackPlan, ValidationRecord, ValidationStatus,
};
use crate::pipeline::audit::{self};

/// Read and strictly parse one manifest; also checks its file name against its release id.
pub fn load(path: &Path) -> Result<LoadedManifest> {
    let parsed = parsed_dir_of(path, "manifests");
    let (manifest, bytes, digest): (Manifest, Vec<u8>, Digest) =
        crate::infra::yaml::read_parsed(path, parsed.as_deref())?;
    if !crate::model::manifest::READABLE_MANIFEST_SCHEMAS.contains(&manifest.schema_version) {
        return Err(Error::invalid(
            path,
            format!(
                "schema_version {} is not supported (this shipshape reads 1 and {MANIFEST_SCHEMA}); a newer shipshape made it",
                manifest.schema_version
            ),
        ));
    }
    let expected_name = format!("{}.yaml", manifest.release_id);
    if path.file_name().and_then(|n| n.to_str()) != Some(expected_name.as_str()) {
        return Err(Error::invalid(
            path,
            format!("release_id is {} but the file is not named {expected_name}", manifest.release_id),
        ));
    }
    Ok(LoadedManifest { path: path.to_path_buf(), manifest, bytes, digest })
}

/// Paths of every manifest file in `release/manifests`, in release id order.
pub fn manifest_paths(workspace: &Workspace) -> Result<Vec<PathBuf>> {
    let dir = workspace.manifests_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(&dir, "listing"),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.at(&dir, "listing")?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".yaml")
            && ReleaseId::new(stem).is_ok()
        {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// Every manifest, parsed (any malformed one is an error: a broken history must be looked at).
pub fn load_all(workspace: &Workspace) -> Result<Vec<LoadedManifest>> {
    manifest_paths(workspace)?.iter().map(|p| load(p)).collect()
}

/// The newest manifest's path, or a message saying what to do when there is none.
pub fn newest_path(workspace: &Workspace) -> Result<PathBuf> {
    manifest_paths(workspace)?.pop().ok_or_else(|| {
        Error::Usage(format!(
            "no manifest in {} yet: run `shipshape audit` and then `shipshape manifest`",
            workspace.display(&workspace.manifests_dir())
        ))
    })
}

/// A manifest named on the command line: `newest`, a release id (`release_20251012_190000`), or a
/// path (relative to `start_dir`). A name that matches no manifest is refused listing the newest
/// ones, so a command copied from the docs with another day's id says what there is.
pub fn resolve_argument(workspace: &Workspace, start_dir: &Path, argument: &Path) -> Result<PathBuf> {
    let text = argument.to_string_lossy();
    if text == "newest" {
        return newest_path(workspace);
    }
    let candidate = if ReleaseId::new(&text).is_ok() {
        workspace.manifests_dir().join(format!("{text}.yaml"))
    } else {
        start_dir.join(argument)
    };
    if !candidate.exists() {
        let known = manifest_paths(workspace)?;
        let newest: Vec<String> = known
            .iter()
            .rev()
            .take(3)
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect();
        let listed = if newest.is_empty() {
            "there is no manifest yet: run `shipshape audit`, `validate` and `manifest`".to_string()
        } else {
            format!(
                "the newest {} {} (a release id or `newest` works as the name too)",
                if newest.len() == 1 { "is" } else { "are" },
                newest.join(", ")
            )
        };
        return Err(Error::Usage(format!("no manifest {text}: {listed}")));
    }
    workspace.resolve_user_path(&candidate)
}

/// The newest manifest whose approvals meet its policy now (what `deploy` takes when no manifest
/// is named), and the newer ones passed over because they are not approved (yet), newest first.
/// Approvals are judged as `verify` judges them; a newer manifest that cannot even be read is passed
/// over too, and named.
pub fn newest_approved(workspace: &Workspace, now: Time) -> Result<(PathBuf, Vec<ReleaseId>)> {
    let paths = manifest_paths(workspace)?;
    if paths.is_empty() {
        return newest_path(workspace).map(|p| (p, Vec::new()));
    }
    let mut passed_over = Vec::new();
    for path in paths.iter().rev() {
        let approved = load(path).and_then(|loaded| {
            let report = crate::trust::judge::verify_approvals(workspace, &loaded, now)?;
            Ok((loaded.manifest.release_id.clone(), report.threshold_met))
        });
        match approved {
            Ok((_, true)) => return Ok((path.clone(), passed_over)),
            Ok((id, false)) => passed_over.push(id),
            Err(_) => {
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                if let Ok(id) = ReleaseId::new(&stem) {
                    passed_over.push(id);
                }
            }
        }
    }
    let newest = passed_over.first().map(|id| id.to_string()).unwrap_or_default();
    Err(Error::Usage(format!(
        "no manifest in {} is approved yet (the newest, {newest}, needs its approvals: `shipshape verify` says which roles): approve one with `shipshape approve`, or name the manifest to deploy",
        workspace.display(&workspace.manifests_dir())
    )))
}

/// Problems with the hash chain of `environment` among `manifests` (empty when intact).
pub fn chain_problems(workspace: &Workspace, manifests: &[LoadedManifest], environment: &str) -> Vec<String> {
    let mut chain: Vec<&LoadedManifest> =
        manifests.iter().filter(|m| m.manifest.deployment.environment.0 == environment).collect();
    chain.sort_by_key(|m| m.manifest.sequence);
    let mut problems = Vec::new();
    for pair in chain.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        if before.manifest.sequence == after.manifest.sequence {
            problems.push(format!(
                "{} and {} both claim sequence {} in {environment}",
                before.manifest.release_id, after.manifest.release_id, after.manifest.sequence
            ));
        }
    }
    for loaded in &chain {
        problems.extend(link_problem(workspace, loaded));
    }
    problems
}

/// The chain link from `loaded` to its previous manifest, checked: `Some(problem)` if broken.
pub fn link_problem(workspace: &Workspace, loaded: &LoadedManifest) -> Option<String> {
    let manifest = &loaded.manifest;
    let name = workspace.display(&loaded.path).into_owned();
    match (&manifest.previous_manifest, &manifest.previous_manifest_sha256) {
        (None, None) => {
            (manifest.sequence != 1).then(|| format!("{name}: sequence {} but no previous_manifest", manifest.sequence))
        }
        (Some(previous), Some(expected)) => {
            let previous_path = previous.under(&workspace.root);
            match crate::infra::atomic::read(&previous_path) {
                Err(_) => Some(format!("{name}: previous manifest {previous} is missing")),
                Ok(bytes) => {
                    let actual = Digest::of(&bytes);
                    if &actual != expected {
                        return Some(format!(
                            "{name}: chain broken: {previous} hashes to {actual}, but {} recorded {expected} — {previous} was changed after {} was made",
                            manifest.release_id, manifest.release_id
                        ));
                    }
                    let parsed = parsed_dir_of(&previous_path, "manifests");
                    match crate::infra::yaml::read_parsed::<Manifest>(&previous_path, parsed.as_deref())
                        .map(|(m, _, _)| m)
                    {
                        Ok(before) if before.sequence >= manifest.sequence => Some(format!(
                            "{name}: sequence {} is not above its previous manifest's {}",
                            manifest.sequence, before.sequence
                        )),
                        Ok(before) if before.deployment.environment != manifest.deployment.environment => {
                            Some(format!("{name}: previous manifest {previous} is for another environment"))
                        }
                        Ok(_) => None,
                        Err(e) => Some(e.to_string()),
                    }
                }
            }
        }
        _ => Some(format!("{name}: previous_manifest and previous_manifest_sha256 must both be set or both be null")),
    }
}

/// What the user asked of `manifest`.
#[derive(Debug, Clone)]
pub struct ManifestRequest {
    /// Release type.
    pub release_type: ReleaseType,
    /// The audit bundle directory; the newest when `None`.
    pub bundle: Option<PathBuf>,
    /// Deployer; config, then `$USER`, when `None`.
    pub deployer: Option<String>,
    /// Environment; the config's when `None`.
    pub environment: Option<String>,
    /// CI build id.
    pub build_id: Option<String>,
    /// Ticket ids the release closes (the story's `jira_tickets`).
    pub tickets: Vec<String>,
    /// Make the manifest even though validation is missing or failed (recorded in it).
    pub allow_unvalidated: bool,
    /// Make the manifest even though it holds exactly the artifacts of the newest one.
    pub allow_identical: bool,
}

/// What `manifest` produced.
#[derive(Debug, Clone)]
pub struct ManifestOutcome {
    /// The manifest as written.
    pub loaded: LoadedManifest,
    /// Objects newly written to the store.
    pub new_objects: usize,
    /// Objects already in the store (deduplicated).
    pub reused_objects: usize,
    /// Store objects found corrupt and rewritten from the workspace.
    pub repaired_objects: Vec<Digest>,
    /// Things worth a warning that did not stop the manifest (e.g. nothing changed from the active
    /// release).
    pub warnings: Vec<String>,
}

enum Prepared {
    New(StagedObject),
    Reused,
    Repair(StagedObject),
}

/// Make a manifest from an audit bundle, taking the workspace lock once the read-only checks pass.
pub fn create(
    workspace: &Workspace,
    request: &ManifestRequest,
    now: Time,
    progress: &dyn Progress,
) -> Result<ManifestOutcome> {
    let bundle_dir = audit::resolve_bundle(workspace, request.bundle.as_deref())?;
    let bundle_rel = RelPath::from_walk(&workspace.root, &bundle_dir).map_err(|rule| Error::UnsafePath {
        origin: PathBuf::from("--bundle"),
        path: bundle_dir.display().to_string(),
        reason: rule.to_string(),
    })?;
    let (bundle, bundle_bytes) = audit::read_bundle(&bundle_dir)?;
    let validation = validation_record(workspace, &bundle_dir, &bundle_bytes, request.allow_unvalidated)?;
    let approval_policy = policy_ref(workspace)?;
    let environment = match &request.environment {
        Some(name) => Slug(name.clone()),
        None => workspace.config.release.environment.clone(),
    };
    if environment.0.is_empty()
        || !environment.0.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(Error::Usage(format!("--environment `{environment}`: use lowercase letters, digits, `-` or `_`")));
    }

    let check_history = || -> Result<Vec<LoadedManifest>> {
        let existing = load_all(workspace)?;
        let problems = chain_problems(workspace, &existing, &environment.0);
        if !problems.is_empty() {
            return Err(Error::Check(format!(
                "the manifest history of {environment} is not intact; refusing to extend it:\n  {}",
                problems.join("\n  ")
            )));
        }
        Ok(existing)
    };
    check_history()?;

    // Everything above only read. From here on we write, so serialise with other commands, and
    // look at the history again in case another manifest landed meanwhile.
    let _lock = crate::infra::lock::WorkspaceLock::acquire(&workspace.lock_path(), "manifest", now)?;
    let existing = check_history()?;
    let previous = existing
        .iter()
        .filter(|m| m.manifest.deployment.environment == environment)
        .max_by_key(|m| m.manifest.sequence);

    // A manifest releasing exactly what the newest one releases (the same bundle twice, or an
    // audit with no change) is refused: it would be a second release of the same bytes.
    let candidate: BTreeSet<(&RelPath, &Digest)> = bundle.artifacts.iter().map(|a| (&a.path, &a.hash)).collect();
    let same_as = |loaded: &LoadedManifest| {
        loaded.manifest.artifacts.iter().map(|(_, a)| (&a.path, &a.hash)).collect::<BTreeSet<_>>() == candidate
    };
    if let Some(previous) = previous
        && !request.allow_identical
        && same_as(previous)
    {
        return Err(Error::Check(format!(
            "{} already releases exactly these {} artifacts (same bytes at the same paths): a new manifest would release nothing new; change an artifact and audit again, or pass --allow-identical to make one anyway (e.g. to approve the same bytes again under a new release); nothing was written",
            previous.manifest.release_id,
            candidate.len()
        )));
    }
    let mut warnings = Vec::new();
    if let Ok(Some(active)) = crate::registry::get_active_release(workspace, now)
        && previous.is_none_or(|p| p.manifest.release_id != active.release_id)
        && let Some(active_manifest) = existing.iter().find(|m| m.manifest.release_id == active.release_id)
        && same_as(active_manifest)
    {
        warnings.push(format!(
            "nothing changed from the active release {}: this manifest releases the same bytes",
            active.release_id
        ));
    }

    let store = workspace.store();
    store.sweep_staging()?;
    // A refused manifest leaves the disk as it found it: the staging area and the store itself go
    // again if this command made them (the audit may have made the store, for its parse cache).
    let (store_existed, staging_existed) = (store.root().exists(), store.root().join("tmp").exists());
    let prepared = match stage_artifacts(workspace, &bundle, progress) {
        Ok(prepared) => prepared,
        Err(e) => {
            if !staging_existed {
                let _ = fs::remove_dir(store.root().join("tmp"));
            }
            if !store_existed {
                let _ = fs::remove_dir(store.root());
            }
            return Err(e);
        }
    };

    let mut release_id = ReleaseId::at(&now);
    if let Some(newest) = existing.iter().map(|m| &m.manifest.release_id).max()
        && release_id <= *newest
    {
        release_id = newest.successor();
    }
    let artifacts = group_artifacts(workspace, &bundle, &release_id);
    let previous_rel = previous
        .map(|p| RelPath::from_walk(&workspace.root, &p.path))
        .transpose()
        .map_err(|rule| Error::invalid(workspace.manifests_dir(), format!("manifest path is not usable: {rule}")))?;
    let rollback_plan = rollback_plan(workspace, previous, previous_rel.as_ref());
    let deployer = deployer_of(workspace, request);
    let manifest = Manifest {
        schema_version: MANIFEST_SCHEMA,
        release_id: release_id.clone(),
        release_type: request.release_type,
        sequence: previous.map_or(1, |p| p.manifest.sequence + 1),
        created: now,
        expires: now.plus(workspace.config.release.manifest_expiry.0.0),
        audit_bundle: bundle_rel,
        audit_bundle_sha256: Digest::of(&bundle_bytes),
        validation,
        approval_policy,
        previous_manifest: previous_rel,
        previous_manifest_sha256: previous.map(|p| p.digest),
        deployment: Deployment { prepared_at: now, prepared_by: deployer, environment },
        artifacts,
        rollback_plan,
        monitoring: monitoring_plan(&workspace.config.monitoring),
        metadata: metadata(&bundle, request),
    };
    let text = format!(
        "# shipshape release manifest. Approvers sign these exact bytes: do not edit.\n{}",
        crate::infra::yaml::to_string(&manifest)?
    );

    // Commit point 1: objects become visible (harmless on their own: content-addressed).
    let (new_objects, reused_objects, repaired_objects) = commit_objects(&store, prepared)?;
    let path = write_backups_and_manifest(workspace, &manifest, &text)?;
    // Every object was re-hashed above (copied, or verified in place) and its backup linked, which
    // moved its ctime: stamp them now so that a deploy need not hash unchanged models again.
    let digests: Vec<Digest> = manifest.artifacts.iter().map(|(_, a)| a.hash).collect();
    let _ = store.record_verified(&digests);
    let bytes = text.into_bytes();
    let digest = Digest::of(&bytes);
    crate::infra::yaml::remember_parsed(&store.root().join("parsed"), &bytes, &manifest);
    Ok(ManifestOutcome {
        loaded: LoadedManifest { path, manifest, bytes, digest },
        new_objects,
        reused_objects,
        repaired_objects,
        warnings,
    })
}

/// Who the manifest names as deployer: `--deployer`, else `[release] deployer`, else the user.
fn deployer_of(workspace: &Workspace, request: &ManifestRequest) -> String {
    request
        .deployer
        .clone()
        .filter(|d| !d.trim().is_empty())
        .or_else(|| Some(workspace.config.release.deployer.clone()).filter(|d| !d.trim().is_empty()))
        .or_else(crate::infra::user::current_user)
        .unwrap_or_else(|| "unknown".into())
}

/// The story's `monitoring` block, from `[monitoring]`.
fn monitoring_plan(config: &crate::config::MonitoringConfig) -> MonitoringPlan {
    let metrics = config.metrics();
    MonitoringPlan {
        heightened_period_hours: config.heightened_hours.0,
        alert_thresholds: crate::model::manifest::Thresholds::of(&metrics, true),
        alert_frequency_hours: config.heightened.notify_every.0.as_hours_f64(),
        normal_alert_thresholds: crate::model::manifest::Thresholds::of(&metrics, false),
        normal_alert_frequency_hours: config.normal.notify_every.0.as_hours_f64(),
    }
}

/// The story's `metadata` block: git as the audit saw it, the build and the tickets.
fn metadata(bundle: &AuditBundle, request: &ManifestRequest) -> Metadata {
    Metadata {
        git_commit: bundle.git.as_ref().map(|g| g.commit.clone()),
        git_branch: bundle.git.as_ref().and_then(|g| g.branch.clone()),
        git_tag: bundle.git.as_ref().and_then(|g| g.tag.clone()),
        git_dirty: bundle.git.as_ref().map(|g| g.dirty),
        build_id: request.build_id.clone(),
        jira_tickets: request.tickets.clone(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// Make the staged objects visible: (new, reused, repaired).
fn commit_objects(store: &crate::infra::store::Store, prepared: Vec<Prepared>) -> Result<(usize, usize, Vec<Digest>)> {
    let (mut new_objects, mut reused_objects, mut repaired_objects) = (0, 0, Vec::new());
    for item in prepared {
        match item {
            Prepared::New(staged) => {
                staged.commit()?;
                new_objects += 1;
            }
            Prepared::Reused => reused_objects += 1,
            Prepared::Repair(staged) => {
                repaired_objects.push(staged.digest);
                store.repair(staged)?;
            }
        }
    }
    Ok((new_objects, reused_objects, repaired_objects))
}

/// The backup view (assembled aside and renamed into place), then — commit point 2 — the manifest
/// itself, never clobbering another. On failure nothing of this release is left visible.
fn write_backups_and_manifest(workspace: &Workspace, manifest: &Manifest, text: &str) -> Result<PathBuf> {
    let store = workspace.store();
    let release_id = &manifest.release_id;
    let backups_dir = workspace.backups_dir();
    create_dir_all_durable(&backups_dir)?;
    crate::infra::atomic::remove_stale_temp_files(&backups_dir)?;
    let backup_dir = backups_dir.join(release_id.as_str());
    let staging = crate::infra::atomic::temp_path_beside(&backup_dir);
    let result = (|| {
        fs::create_dir(&staging).at(&staging, "creating directory")?;
        for (_, artifact) in manifest.artifacts.iter() {
            link_or_copy(&store.object_path(&artifact.hash), &staging.join(artifact.path.as_str()))?;
        }
        fs::rename(&staging, &backup_dir).at(&backup_dir, "renaming into place")?;
        sync_dir(&backups_dir)?;
        // Commit point 2: the manifest itself, never clobbering another.
        let manifests_dir = workspace.manifests_dir();
        create_dir_all_durable(&manifests_dir)?;
        let path = manifests_dir.join(format!("{release_id}.yaml"));
        if !write_new_atomic(&path, text.as_bytes())? {
            return Err(Error::Usage(format!("{} already exists; run the command again", path.display())));
        }
        Ok(path)
    })();
    result.inspect_err(|_| {
        let _ = fs::remove_dir_all(&staging);
        if !workspace.manifests_dir().join(format!("{release_id}.yaml")).exists() {
            let _ = fs::remove_dir_all(&backup_dir);
        }
    })
}

/// The approval policy to pin, checked: a malformed policy is refused now, not at approval time.
fn policy_ref(workspace: &Workspace) -> Result<Option<PolicyRef>> {
    let text = &workspace.config.approvals.policy;
    let path = RelPath::new(text)
        .map_err(|rule| Error::invalid(&workspace.config.path, format!("approvals.policy: {rule}")))?;
    let absolute = path.under(&workspace.root);
    if !absolute.exists() {
        return Ok(None);
    }
    confine(&workspace.root, &path, &workspace.config.path)?;
    let (_, bytes) = crate::model::policy::Policy::load(&absolute)?;
    Ok(Some(PolicyRef { path, sha256: Digest::of(&bytes) }))
}

/// The bundle's validation, as the manifest records it; refuses a missing or failed one unless
/// `allow_unvalidated`.
fn validation_record(
    workspace: &Workspace,
    bundle_dir: &Path,
    bundle_bytes: &[u8],
    allow_unvalidated: bool,
) -> Result<ValidationRecord> {
    let name = workspace.display(bundle_dir).into_owned();
    let record = match crate::pipeline::validate::read(bundle_dir)? {
        None => ValidationRecord {
            status: ValidationStatus::Missing,
            sha256: None,
            failed_items: Vec::new(),
            overridden: false,
        },
        Some((validation, bytes)) => {
            if validation.bundle_sha256 != Digest::of(bundle_bytes) {
                return Err(Error::Check(format!(
                    "{name}/validation.yaml was made for different bundle contents; run `shipshape validate` again"
                )));
            }
            let status = if validation.passed { ValidationStatus::Passed } else { ValidationStatus::Failed };
            ValidationRecord {
                status,
                sha256: Some(Digest::of(&bytes)),
                failed_items: validation.failed_items(),
                overridden: false,
            }
        }
    };
    match record.status {
        ValidationStatus::Passed => Ok(record),
        _ if allow_unvalidated => Ok(ValidationRecord { overridden: true, ..record }),
        ValidationStatus::Missing => Err(Error::Check(format!(
            "{name} has not been validated: run `shipshape validate` (or pass --allow-unvalidated, which the manifest records)"
        ))),
        _ => Err(Error::Check(format!(
            "{name} failed validation ({}): fix them and run `shipshape validate` again (or pass --allow-unvalidated, which the manifest records)",
            record.failed_items.join(", ")
        ))),
    }
}

/// Copy every bundle artifact into the store's staging area (or confirm it is already stored),
/// re-hashing the workspace file; refuse, naming every file, if any differs from the audit.
fn stage_artifacts(workspace: &Workspace, bundle: &AuditBundle, progress: &dyn Progress) -> Result<Vec<Prepared>> {
    let store = workspace.store();
    let mut jobs = Vec::with_capacity(bundle.artifacts.len());
    for record in &bundle.artifacts {
        let real = confine(&workspace.root, &record.path, &workspace.config.path)?;
        jobs.push(((record, real), record.size));
    }
    let total: u64 = jobs.iter().map(|(_, size)| size * 2).sum();
    progress.start("copying into the store", total);
    let bytes = total / 2;
    let results = parallel_map(&jobs, |((record, real), size)| -> Result<(Prepared, Digest)> {
        let read_ahead = read_ahead_helps(*size, bytes);
        if store.contains(&record.hash) {
            let (digest, _) = hash_file_with(real, progress, read_ahead)?;
            if digest != record.hash {
                return Ok((Prepared::Reused, digest));
            }
            if store.verify(&record.hash, Some(record.size), progress, read_ahead).is_ok() {
                return Ok((Prepared::Reused, digest));
            }
            let staged = store.stage(real, progress)?;
            let digest = staged.digest;
            Ok((Prepared::Repair(staged), digest))
        } else {
            let staged = store.stage(real, progress)?;
            let digest = staged.digest;
            progress.advance(record.size);
            Ok((Prepared::New(staged), digest))
        }
    });
    progress.finish();
    let mut prepared = Vec::with_capacity(results.len());
    let mut changed = Vec::new();
    for (((record, _), _), result) in jobs.iter().zip(results) {
        let (item, digest) = result?;
        if digest != record.hash {
            changed.push(format!("{} (audit recorded {}, now {digest})", record.path, record.hash));
        }
        prepared.push(item);
    }
    if !changed.is_empty() {
        return Err(Error::Check(format!(
            "{} changed since the audit ({}); run `shipshape audit` again to release the current files",
            changed.join(", "),
            bundle.bundle_id
        )));
    }
    Ok(prepared)
}

fn group_artifacts(workspace: &Workspace, bundle: &AuditBundle, release_id: &ReleaseId) -> ArtifactsByKind {
    let mut by_kind: BTreeMap<usize, (String, Vec<ManifestArtifact>)> = BTreeMap::new();
    let rank = |kind: &str| workspace.config.artifacts.iter().position(|k| k.name == kind).unwrap_or(usize::MAX);
    for record in &bundle.artifacts {
        let ArtifactRecord { kind, path, size, hash, version } = record;
        let backup = RelPath::new(&format!("release/backups/{release_id}/{path}")).unwrap_or_else(|_| path.clone());
        by_kind.entry(rank(kind)).or_insert_with(|| (kind.clone(), Vec::new())).1.push(ManifestArtifact {
            path: path.clone(),
            hash: *hash,
            size: *size,
            backup,
            version: version.clone(),
        });
    }
    ArtifactsByKind(by_kind.into_values().collect())
}

fn rollback_plan(
    workspace: &Workspace,
    previous: Option<&LoadedManifest>,
    previous_rel: Option<&RelPath>,
) -> RollbackPlan {
    let (Some(previous), Some(previous_rel)) = (previous, previous_rel) else {
        return RollbackPlan {
            previous_release_id: None,
            previous_manifest: None,
            restore_commands: Vec::new(),
            verification_steps: Vec::new(),
        };
    };
    let id = &previous.manifest.release_id;
    let (restore_commands, verification_steps) = if workspace.config.deploy.is_some() {
        // The deploy engine's rollback: verified objects, journaled, atomic, recorded in the history.
        (
            vec![format!(
                "shipshape rollback --to {id} --yes --reason {}",
                shell_quote(&format!("rollback plan: back to {id}"))
            )],
            vec![
                "shipshape status".to_string(),
                format!("shipshape verify --integrity-only {}", shell_quote(previous_rel.as_str())),
            ],
        )
    } else {
        // No [deploy] target: restore the previous release's files into the workspace from its backups.
        let mut commands = vec![format!("shipshape verify --integrity-only {}", shell_quote(previous_rel.as_str()))];
        for (_, artifact) in previous.manifest.artifacts.iter() {
            commands.push(format!(
                "cp {} {}",
                shell_quote(artifact.backup.as_str()),
                shell_quote(artifact.path.as_str())
            ));
        }
        (
            commands,
            vec![format!("shipshape verify --integrity-only --artifacts {}", shell_quote(previous_rel.as_str()))],
        )
    };
    RollbackPlan {
        previous_release_id: Some(id.clone()),
        previous_manifest: Some(previous_rel.clone()),
        restore_commands,
        verification_steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_ids() {
        assert!(ReleaseId::new("release_20251012_190000").is_ok());
        for bad in [
            "release_2025101_190000",
            "release_20251012-190000",
            "rel_20251012_190000",
            "release_20251012_19000a",
            "../x",
        ] {
            assert!(ReleaseId::new(bad).is_err(), "{bad}");
        }
        assert_eq!(ReleaseId::new("release_20251231_235959").unwrap().successor().as_str(), "release_20260101_000000");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("src/app/config.py"), "src/app/config.py");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
