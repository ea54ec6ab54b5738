//! `verify`: every check a manifest's claims can be held to, each reported on its own line.
//!
//! A manifest that does not parse strictly is an error (bad input). One that parses is checked for:
//! its audit bundle's hash and contents, its link in the hash chain, every store object and every
//! backup re-hashed, and — when asked — the workspace files themselves. Every mismatch is listed;
//! the report passes only when all hold. All hashing runs in parallel, and a backup that is a hard
//! link to its (just verified) store object is not hashed twice.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::infra::clock::Time;
use crate::infra::hash::{Digest, Progress, hash_file_with, parallel_map, read_ahead_helps};
use crate::infra::paths::confine;
use crate::infra::store::{Stamp, Store};
use crate::layout::Workspace;
use crate::model::manifest::LoadedManifest;
use crate::pipeline::audit;
use crate::pipeline::manifest::{self};

/// What a check looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Check {
    /// The manifest parses strictly.
    #[serde(rename = "manifest")]
    Manifest,
    /// It has not expired.
    #[serde(rename = "expiry")]
    Expiry,
    /// Its approvals meet the policy.
    #[serde(rename = "approvals")]
    Approvals,
    /// Its sequence is not below the accepted one.
    #[serde(rename = "anti-rollback")]
    AntiRollback,
    /// The audit bundle it names, byte for byte.
    #[serde(rename = "audit bundle")]
    AuditBundle,
    /// The validation record it names.
    #[serde(rename = "validation")]
    Validation,
    /// Its link to the previous manifest.
    #[serde(rename = "chain")]
    Chain,
    /// A store object, re-hashed.
    #[serde(rename = "store object")]
    StoreObject,
    /// A backup, re-hashed (or proven a link to its object).
    #[serde(rename = "backup")]
    Backup,
    /// A workspace file, re-hashed (`--artifacts`).
    #[serde(rename = "workspace file")]
    WorkspaceFile,
}

impl Check {
    /// Its name, as reports print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Manifest => "manifest",
            Check::Expiry => "expiry",
            Check::Approvals => "approvals",
            Check::AntiRollback => "anti-rollback",
            Check::AuditBundle => "audit bundle",
            Check::Validation => "validation",
            Check::Chain => "chain",
            Check::StoreObject => "store object",
            Check::Backup => "backup",
            Check::WorkspaceFile => "workspace file",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// What was checked.
    pub check: Check,
    /// The thing checked (a path or an id).
    pub subject: String,
    /// Whether it held.
    pub ok: bool,
    /// What was found when it did not (or a note when it did).
    pub detail: String,
}

/// The outcome of verifying one manifest.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The manifest, relative to the workspace.
    pub manifest: String,
    /// Its release id.
    pub release_id: String,
    /// SHA-256 of its bytes.
    pub manifest_sha256: Digest,
    /// Every check.
    pub checks: Vec<CheckResult>,
    /// Notes that do not fail verification.
    pub warnings: Vec<String>,
    /// The approvals and their verdicts (absent with `integrity_only`).
    pub approvals: Option<crate::trust::judge::ApprovalReport>,
}

impl VerifyReport {
    /// True when every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| !c.ok)
    }

    fn push(&mut self, check: Check, subject: impl Into<String>, outcome: std::result::Result<String, String>) {
        let (ok, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        self.checks.push(CheckResult { check, subject: subject.into(), ok, detail });
    }
}

/// Which judgement a verification makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Purpose {
    /// Integrity only (hashes, chain, validation record): not approvals, expiry or anti-rollback —
    /// for the step between `manifest` and `approve`, and for auditing old releases.
    Integrity,
    /// May it be deployed: integrity, approvals, expiry and anti-rollback.
    #[default]
    Deploy,
    /// An earlier release to roll back to: integrity and approvals, but not expiry or anti-rollback
    /// (going back is exactly what those refuse for a deploy).
    Rollback,
}

/// How store objects are proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rehash {
    /// Re-hash every object (`shipshape verify`).
    #[default]
    Always,
    /// Skip objects fully verified before and untouched since (see
    /// [`crate::infra::store::VerifiedCache`]); for deploy and rollback, which re-hash what they copy.
    UnlessVerified,
}

/// What to verify.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Which judgement.
    pub purpose: Purpose,
    /// How store objects are proven.
    pub rehash: Rehash,
    /// Also hash the workspace files and compare them with the manifest.
    pub artifacts: bool,
}

enum Job {
    Object(Digest, u64),
    /// A backup file to re-hash: its path, digest and name in the manifest.
    Backup(PathBuf, Digest, String),
    /// A backup that is a hard link to its object (proven by inode): its digest and name.
    LinkedBackup(Digest, String),
    Workspace(PathBuf, Digest),
}

/// Verify the manifest at `path`. `Err` only when it cannot be read or parsed.
pub fn verify(
    workspace: &Workspace,
    path: &Path,
    options: VerifyOptions,
    now: Time,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let loaded = manifest::load(path)?;
    Ok(verify_loaded(workspace, &loaded, options, now, progress))
}

/// The one way later steps (deploy, rollback, status, the dashboard) read a manifest: fully
/// verified — integrity, approvals against the recorded policy, expiry, anti-rollback — or refused
/// with every failure listed.
pub fn trusted(
    workspace: &Workspace,
    path: &Path,
    now: Time,
    progress: &dyn Progress,
) -> Result<(LoadedManifest, VerifyReport)> {
    let options = VerifyOptions { purpose: Purpose::Deploy, rehash: Rehash::UnlessVerified, artifacts: false };
    trusted_with(workspace, path, options, now, progress)
}

/// [`trusted`] for a release being rolled back to (no expiry or anti-rollback checks).
pub fn trusted_for_rollback(
    workspace: &Workspace,
    path: &Path,
    now: Time,
    progress: &dyn Progress,
) -> Result<(LoadedManifest, VerifyReport)> {
    trusted_with(
        workspace,
        path,
        VerifyOptions { purpose: Purpose::Rollback, rehash: Rehash::UnlessVerified, artifacts: false },
        now,
        progress,
    )
}

fn trusted_with(
    workspace: &Workspace,
    path: &Path,
    options: VerifyOptions,
    now: Time,
    progress: &dyn Progress,
) -> Result<(LoadedManifest, VerifyReport)> {
    let loaded = manifest::load(path)?;
    let report = verify_loaded(workspace, &loaded, options, now, progress);
    if !report.passed() {
        let mut failures: Vec<String> =
            report.failures().map(|c| format!("{} {}: {}", c.check, c.subject, c.detail)).collect();
        if report.failures().any(|c| c.check == Check::Approvals) {
            failures.push(format!(
                "next: each approver signs it with `shipshape approve {} --role <role> --key <their SSH key>` (docs/approvals.md)",
                report.manifest
            ));
        }
        return Err(crate::Error::Check(format!("{} is not trusted:\n  {}", report.manifest, failures.join("\n  "))));
    }
    Ok((loaded, report))
}

/// Verify a manifest already loaded.
pub fn verify_loaded(
    workspace: &Workspace,
    loaded: &LoadedManifest,
    options: VerifyOptions,
    now: Time,
    progress: &dyn Progress,
) -> VerifyReport {
    std::thread::scope(|scope| {
        let side_checks = scope.spawn(|| (bundle_outcome(workspace, loaded), chain_outcome(workspace, loaded)));
        verify_with(workspace, loaded, options, now, progress, side_checks)
    })
}

/// The audit bundle: its bytes, and that the manifest describes exactly what it recorded.
fn bundle_outcome(workspace: &Workspace, loaded: &LoadedManifest) -> std::result::Result<String, String> {
    let manifest = &loaded.manifest;
    let (bundle, bytes) =
        audit::read_bundle(&manifest.audit_bundle.under(&workspace.root)).map_err(|e| e.to_string())?;
    let actual = Digest::of(&bytes);
    if actual != manifest.audit_bundle_sha256 {
        return Err(format!("bundle.yaml hashes to {actual}, the manifest recorded {}", manifest.audit_bundle_sha256));
    }
    let mut recorded: Vec<_> = bundle.artifacts.iter().map(|a| (a.kind.as_str(), &a.path, a.hash, a.size)).collect();
    let mut listed: Vec<_> = manifest.artifacts.iter().map(|(k, a)| (k, &a.path, a.hash, a.size)).collect();
    recorded.sort_unstable();
    listed.sort_unstable();
    if recorded == listed {
        Ok(format!("{actual}; {} artifacts match the inventory", recorded.len()))
    } else {
        Err("the manifest's artifacts differ from the audit bundle's inventory".to_string())
    }
}

/// The manifest's link in the hash chain.
fn chain_outcome(workspace: &Workspace, loaded: &LoadedManifest) -> std::result::Result<String, String> {
    match manifest::link_problem(workspace, loaded) {
        Some(problem) => Err(problem),
        None => Ok(loaded
            .manifest
            .previous_manifest_sha256
            .map_or_else(|| "first in its environment".into(), |d| d.to_string())),
    }
}

type SideChecks<'scope> =
    std::thread::ScopedJoinHandle<'scope, (std::result::Result<String, String>, std::result::Result<String, String>)>;

fn verify_with(
    workspace: &Workspace,
    loaded: &LoadedManifest,
    options: VerifyOptions,
    now: Time,
    progress: &dyn Progress,
    side_checks: SideChecks<'_>,
) -> VerifyReport {
    let manifest = &loaded.manifest;
    let mut report = VerifyReport {
        manifest: workspace.display(&loaded.path).into_owned(),
        release_id: manifest.release_id.to_string(),
        manifest_sha256: loaded.digest,
        checks: Vec::new(),
        warnings: Vec::new(),
        approvals: None,
    };
    judge_trust(workspace, loaded, options, now, &mut report);
    // The audit bundle and the hash chain (both parse YAML) were checked on the side meanwhile.
    let (bundle, chain) = side_checks.join().unwrap_or_else(|_| {
        (Err("the checking thread panicked".to_string()), Err("the checking thread panicked".to_string()))
    });
    report.push(Check::AuditBundle, manifest.audit_bundle.to_string(), bundle);

    check_validation(workspace, loaded, &mut report);
    let chain_subject =
        manifest.previous_manifest.as_ref().map_or_else(|| "(first manifest)".to_string(), |p| p.to_string());
    report.push(Check::Chain, chain_subject, chain);

    verify_content(workspace, loaded, options, progress, &mut report);
    report
}

/// When `release` was first deployed here, from the history (`None`: never, or no history).
fn first_deployed(workspace: &Workspace, release: &crate::model::ids::ReleaseId) -> Option<Time> {
    crate::registry::lifecycle(workspace).ok()?.first_deployed(release)
}

/// How far in the future a manifest's timestamp may be (clock skew between the host that made it
/// and the one deploying it).
pub const FUTURE_ALLOWANCE_SECONDS: i64 = 5 * 60;

/// The manifest's own claims: it parses, and — by purpose — its expiry, approvals and sequence.
fn judge_trust(
    workspace: &Workspace,
    loaded: &LoadedManifest,
    options: VerifyOptions,
    now: Time,
    report: &mut VerifyReport,
) {
    let manifest = &loaded.manifest;
    report.push(Check::Manifest, report.manifest.clone(), Ok(format!("parses strictly; {}", loaded.digest)));
    // A manifest made after "now" (beyond a clock-skew allowance) means a wrong clock on one of the
    // two hosts or an edited timestamp: its expiry would be meaningless, so it is not deployed.
    let made = manifest.deployment.prepared_at;
    let from_the_future = made.since(&now) > jiff::SignedDuration::from_secs(FUTURE_ALLOWANCE_SECONDS);
    let future = || {
        format!(
            "made at {made}, after now ({now}) by more than the {}-minute clock-skew allowance: a clock is wrong or the timestamp was edited; fix the clock and make the manifest again",
            FUTURE_ALLOWANCE_SECONDS / 60
        )
    };
    if options.purpose == Purpose::Integrity {
        if manifest.expires <= now {
            report.warnings.push(format!("the manifest expired at {} and can no longer be deployed", manifest.expires));
        }
        if from_the_future {
            report.warnings.push(format!("the manifest was {}", future()));
        }
    } else {
        if options.purpose != Purpose::Rollback {
            let expiry = if from_the_future {
                Err(future())
            } else if manifest.expires > now {
                Ok(format!("expires {}", manifest.expires))
            } else {
                Err(format!("expired at {}: make a new manifest (an expired one is never deployed)", manifest.expires))
            };
            report.push(Check::Expiry, report.release_id.clone(), expiry);
        }
        // A rollback goes back to a release that already ran: its approvals are judged as of its
        // first deploy, so a key rotated out since (`valid-before` passed) does not block the way
        // back. A key removed from allowed_signers, or a revoked OpenPGP key, still does.
        let judged_at = match options.purpose {
            Purpose::Rollback => first_deployed(workspace, &manifest.release_id).unwrap_or(now),
            _ => now,
        };
        if judged_at != now {
            report.warnings.push(format!(
                "approvals judged as of {judged_at}, when {} was first deployed: keys valid then count",
                manifest.release_id
            ));
        }
        match crate::trust::judge::verify_approvals(workspace, loaded, judged_at) {
            Err(e) => report.push(Check::Approvals, "threshold", Err(e.to_string())),
            Ok(approvals) => {
                let summary: Vec<String> = approvals
                    .requirements
                    .iter()
                    .map(|r| format!("{} of {} needed from {}", r.approvers.len(), r.needed, r.roles.join("/")))
                    .collect();
                let outcome = if approvals.threshold_met {
                    Ok(format!("{} release: {}", approvals.release_type, summary.join("; ")))
                } else {
                    Err(format!("{} release needs more approvals: {}", approvals.release_type, summary.join("; ")))
                };
                report.push(Check::Approvals, "threshold", outcome);
                report.approvals = Some(approvals);
            }
        }
        if options.purpose != Purpose::Rollback {
            match crate::trust::anti_rollback::load(workspace) {
                Err(e) => report.push(Check::AntiRollback, "release/state", Err(e.to_string())),
                Ok(state) => {
                    let state = raised_by_records(workspace, state, now, &mut report.warnings);
                    report.push(
                        Check::AntiRollback,
                        manifest.deployment.environment.to_string(),
                        crate::trust::anti_rollback::check(&state, loaded),
                    )
                }
            }
        }
    }
}

/// The accepted sequences, raised to what the registry and the history show was deployed.
///
/// The state file alone is one file: deleted or edited, it would let an old (validly signed)
/// manifest deploy again. The active release and the newest deploy in the history each name a
/// manifest whose sequence was accepted; where the file records less (or nothing) for that
/// environment, the records win and the discrepancy is reported as a warning.
fn raised_by_records(
    workspace: &Workspace,
    mut state: crate::model::anti_rollback::State,
    now: Time,
    warnings: &mut Vec<String>,
) -> crate::model::anti_rollback::State {
    let active = crate::registry::get_active_release(workspace, now).ok().flatten();
    let history = crate::registry::history(workspace).unwrap_or_default();
    let newest_deploy = history.iter().rev().find(|e| e.action == crate::model::registry::Action::Deploy);
    let evidence = [
        active.as_ref().map(|a| (&a.release_id, a.deployment_timestamp, "the registry's active release")),
        newest_deploy.map(|e| (&e.release_id, e.at, "the history's newest deploy")),
    ];
    for (release_id, at, source) in evidence.into_iter().flatten() {
        let path = workspace.manifests_dir().join(format!("{release_id}.yaml"));
        let Ok(recorded) = manifest::load(&path) else { continue };
        let environment = recorded.manifest.deployment.environment.0.clone();
        let sequence = recorded.manifest.sequence;
        let file_says = state.environments.get(&environment).map(|a| a.sequence);
        if file_says.is_some_and(|s| s >= sequence) {
            continue;
        }
        warnings.push(format!(
            "release/state/anti_rollback.yaml records {} for {environment}, but {source} is {release_id} (sequence {sequence}): the higher record is used",
            file_says.map_or("nothing".to_string(), |s| format!("sequence {s}"))
        ));
        state.environments.insert(
            environment,
            crate::model::anti_rollback::Accepted {
                sequence,
                release_id: release_id.clone(),
                manifest_sha256: recorded.digest,
                accepted: at,
            },
        );
    }
    state
}

/// The validation record the manifest names, byte for byte.
fn check_validation(workspace: &Workspace, loaded: &LoadedManifest, report: &mut VerifyReport) {
    let manifest = &loaded.manifest;
    let validation = &manifest.validation;
    let validation_subject = format!("{}/validation.yaml", manifest.audit_bundle);
    let outcome =
        match (crate::pipeline::validate::read(&manifest.audit_bundle.under(&workspace.root)), &validation.sha256) {
            (Err(e), _) => Err(e.to_string()),
            (Ok(None), None) => Ok("none recorded (made with --allow-unvalidated)".to_string()),
            (Ok(None), Some(_)) => Err("validation.yaml is missing".to_string()),
            (Ok(Some(_)), None) => Ok("none recorded at manifest time (made with --allow-unvalidated)".to_string()),
            (Ok(Some((_, bytes))), Some(expected)) => {
                let actual = Digest::of(&bytes);
                if actual == *expected {
                    Ok(format!(
                        "{actual}; {}{}",
                        validation.status,
                        if validation.overridden { " (overridden)" } else { "" }
                    ))
                } else {
                    Err(format!("validation.yaml hashes to {actual}, the manifest recorded {expected}"))
                }
            }
        };
    report.push(Check::Validation, validation_subject, outcome);
    if validation.overridden {
        report
            .warnings
            .push(format!("this release was made with --allow-unvalidated: validation was {}", validation.status));
    }
}

/// The bytes: every store object, every backup, and (with `artifacts`) every workspace file,
/// re-hashed on all cores; paths recorded in the manifest must stay inside the workspace.
///
/// Longer than most (about 130 lines) on purpose: planning the jobs, running them in parallel and
/// reporting them share the objects' stats, the verified cache and the set of failed objects (a
/// backup linked to a corrupt object fails with it); split, those would travel as five arguments.
fn verify_content(
    workspace: &Workspace,
    loaded: &LoadedManifest,
    options: VerifyOptions,
    progress: &dyn Progress,
    report: &mut VerifyReport,
) {
    let manifest = &loaded.manifest;
    let mut jobs = Vec::new();
    let mut seen_objects = HashSet::new();
    let store = workspace.store();
    let cache = if options.rehash == Rehash::UnlessVerified { store.verified_cache() } else { Default::default() };
    // Each object's stat, taken once (relative to the store's directory): for the verified cache
    // and the backups' hard links.
    let objects = crate::infra::atomic::StatDir::open(&store.root().join("sha256"));
    let object_stat: HashMap<Digest, Option<(u64, u64, Stamp)>> = manifest
        .artifacts
        .iter()
        .map(|(_, a)| {
            let stat = objects.stat(&Store::object_relative(&a.hash));
            (a.hash, stat.and_then(|s| Some((s.st_ino, s.st_dev, Stamp::from_stat(&s)?))))
        })
        .collect();
    let object_of = |digest: &Digest| object_stat.get(digest).copied().flatten();
    for (_, artifact) in manifest.artifacts.iter() {
        if seen_objects.insert(artifact.hash) {
            if options.rehash == Rehash::UnlessVerified
                && object_of(&artifact.hash)
                    .is_some_and(|(_, _, stamp)| store.verified_unchanged(&cache, &artifact.hash, &stamp))
            {
                report.push(
                    Check::StoreObject,
                    format!("{} ({})", artifact.path, artifact.hash),
                    Ok("verified before, untouched since".into()),
                );
                continue;
            }
            jobs.push((Job::Object(artifact.hash, artifact.size), artifact.size));
        }
    }
    let expected_prefix = format!("release/backups/{}/", manifest.release_id);
    let backups = crate::infra::atomic::StatDir::open(&workspace.backups_dir().join(manifest.release_id.as_str()));
    for (_, artifact) in manifest.artifacts.iter() {
        let backup = artifact.backup.under(&workspace.root);
        let Some(relative) = artifact.backup.as_str().strip_prefix(&expected_prefix) else {
            report.push(
                Check::Backup,
                artifact.backup.to_string(),
                Err(format!("backups must live under {expected_prefix}")),
            );
            continue;
        };
        let same_inode = match (backups.stat(relative), object_of(&artifact.hash)) {
            (Some(b), Some((ino, dev, _))) => b.st_ino == ino && b.st_dev == dev,
            _ => false,
        };
        if same_inode {
            // Verified with its object below: a hard link is the same bytes.
            jobs.push((Job::LinkedBackup(artifact.hash, artifact.backup.to_string()), 0));
        } else {
            jobs.push((Job::Backup(backup, artifact.hash, artifact.backup.to_string()), artifact.size));
        }
    }
    if options.artifacts {
        for (_, artifact) in manifest.artifacts.iter() {
            match confine(&workspace.root, &artifact.path, &loaded.path) {
                Ok(real) => jobs.push((Job::Workspace(real, artifact.hash), artifact.size)),
                Err(e) => report.push(Check::WorkspaceFile, artifact.path.to_string(), Err(e.to_string())),
            }
        }
    }
    let total: u64 = jobs.iter().map(|(_, size)| size).sum();
    progress.start("verifying", total);
    let results = parallel_map(&jobs, |(job, size)| -> std::result::Result<String, String> {
        let read_ahead = read_ahead_helps(*size, total);
        match job {
            Job::Object(digest, size) => store
                .verify(digest, Some(*size), progress, read_ahead)
                .map(|()| "re-hashed".into())
                .map_err(|e| e.to_string()),
            Job::LinkedBackup(..) => Ok("hard link to its store object".into()),
            Job::Backup(path, digest, _) | Job::Workspace(path, digest) => {
                match hash_file_with(path, progress, read_ahead) {
                    Ok((actual, _)) if actual == *digest => Ok("re-hashed".into()),
                    Ok((actual, _)) => Err(format!("content hash {actual} does not match the manifest's {digest}")),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    });
    progress.finish();
    let mut failed_objects = HashSet::new();
    let mut verified = Vec::new();
    for ((job, _), outcome) in jobs.iter().zip(&results) {
        match (job, outcome) {
            (Job::Object(digest, _), Err(_)) => {
                failed_objects.insert(*digest);
            }
            (Job::Object(digest, _), Ok(_)) => verified.push(*digest),
            _ => {}
        }
    }
    // Only the mutating commands (deploy, rollback) keep the cache; `verify` writes nothing.
    if options.rehash == Rehash::UnlessVerified {
        let _ = store.record_verified(&verified);
    }
    let mut paths_by_hash: HashMap<Digest, &str> = HashMap::new();
    for (_, artifact) in manifest.artifacts.iter() {
        paths_by_hash.entry(artifact.hash).or_insert(artifact.path.as_str());
    }
    let path_of = |digest: &Digest| paths_by_hash.get(digest).copied().unwrap_or_default().to_string();
    for ((job, _), outcome) in jobs.iter().zip(results) {
        match job {
            Job::Object(digest, _) => {
                report.push(Check::StoreObject, format!("{} ({digest})", path_of(digest)), outcome)
            }
            Job::Backup(_, _, subject) => report.push(Check::Backup, subject.clone(), outcome),
            Job::LinkedBackup(digest, subject) => {
                let outcome = match outcome {
                    Ok(_) if failed_objects.contains(digest) => Err("hard link to a corrupt store object".to_string()),
                    other => other,
                };
                report.push(Check::Backup, subject.clone(), outcome);
            }
            Job::Workspace(_, digest) => report.push(Check::WorkspaceFile, path_of(digest), outcome),
        }
    }
}
