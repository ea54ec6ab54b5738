//! The audit: an inventory of every artifact with its SHA-256, plus git metadata, written as
//! `release/audit_<YYYYMMDD_HHMMSS>/bundle.yaml`.
//!
//! The inventory walks the workspace once (skipping `.git` and `release/`), matches each file
//! against every kind's globs, and refuses what cannot be released safely: a file matched by two
//! kinds, a symlink resolving outside the workspace, something that is not a regular file, and an
//! `include` glob that matches nothing (reported at its line in `shipshape.toml`). Files are then
//! hashed in parallel. The bundle directory is assembled under a temporary name and renamed into
//! place, so a bundle is either complete or absent.

use std::fs;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::config::{ArtifactKind, Config};
use crate::error::{Error, IoContext, Result};
use crate::infra::atomic::{create_dir_all_durable, sync_dir, write_new_atomic};
use crate::infra::clock::Time;
use crate::infra::git::{self};
use crate::infra::hash::{Progress, hash_files};
use crate::infra::paths::{RelPath, confine, reserved_in_target};
use crate::layout::{RELEASE_DIR, Workspace};
use crate::model::audit::{ArtifactRecord, AuditBundle, BUNDLE_FILE, BUNDLE_SCHEMA, ToolInfo, Totals};

/// A file the inventory found, before hashing.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Kind name.
    pub kind: String,
    /// Path relative to the workspace.
    pub path: RelPath,
    /// Real absolute path (symlinks resolved).
    pub real_path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Version, when the kind has a `version_file`.
    pub version: Option<String>,
}

fn build_glob(pattern: &str) -> std::result::Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).backslash_escape(true).build()
}

struct KindMatcher<'a> {
    kind: &'a ArtifactKind,
    include: GlobSet,
    exclude: GlobSet,
    hits: Vec<usize>,
}

fn matchers<'a>(config: &'a Config) -> Result<Vec<KindMatcher<'a>>> {
    let mut out = Vec::new();
    for kind in &config.artifacts {
        let mut sets = [GlobSetBuilder::new(), GlobSetBuilder::new()];
        for (set, globs) in sets.iter_mut().zip([&kind.include, &kind.exclude]) {
            for glob in globs {
                let compiled = build_glob(glob.get_ref()).map_err(|e| {
                    let (line, column) = config.position(glob.span());
                    Error::parse(&config.path, line, column, format!("artifacts.{}: bad glob: {e}", kind.name))
                })?;
                set.add(compiled);
            }
        }
        let [include, exclude] = sets.map(|s| s.build());
        let bad = |e: globset::Error| Error::invalid(&config.path, format!("artifacts.{}: bad glob: {e}", kind.name));
        out.push(KindMatcher {
            kind,
            include: include.map_err(bad)?,
            exclude: exclude.map_err(bad)?,
            hits: vec![0; kind.include.len()],
        });
    }
    Ok(out)
}

/// Walk the workspace and list every artifact, refusing anything unsafe or ambiguous.
pub fn inventory(workspace: &Workspace) -> Result<Vec<Candidate>> {
    let config = &workspace.config;
    let root = &workspace.root;
    let mut matchers = matchers(config)?;
    let mut found = Vec::new();
    // A deploy target inside the workspace holds deployed copies, not sources: never audit it.
    let target =
        config.deploy.as_ref().map(|d| Path::new(&d.target)).filter(|t| t.is_relative()).map(|t| t.to_path_buf());
    // Nor a canary's trees and allocation beside it (`<target>.canary/`, `<target>.allocation.yaml`).
    let beside = |suffix: &str| target.as_ref().map(|t| PathBuf::from(format!("{}{suffix}", t.display())));
    let (canary_dir, allocation) = (beside(".canary"), beside(".allocation.yaml"));
    let walker = walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name().into_iter().filter_entry(|e| {
        let relative = e.path().strip_prefix(root).unwrap_or(e.path());
        !(relative == Path::new(".git")
            || relative == Path::new(RELEASE_DIR)
            || target.as_deref() == Some(relative)
            || canary_dir.as_deref() == Some(relative)
            || allocation.as_deref() == Some(relative))
    });
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| root.clone());
            Error::Io { path, action: "walking the workspace", source: e.into() }
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(root) else { continue };
        let mut matched: Option<usize> = None;
        for (index, matcher) in matchers.iter_mut().enumerate() {
            let hits = matcher.include.matches(relative);
            if hits.is_empty() || matcher.exclude.is_match(relative) {
                continue;
            }
            for hit in hits {
                matcher.hits[hit] += 1;
            }
            if let Some(previous) = matched {
                return Err(Error::invalid(
                    &config.path,
                    format!(
                        "{} is matched by both [artifacts.{}] and [artifacts.{}]; an artifact has one kind: narrow one of the globs or add an exclude",
                        relative.display(),
                        matchers[previous].kind.name,
                        matchers[index].kind.name
                    ),
                ));
            }
            matched = Some(index);
        }
        let Some(index) = matched else { continue };
        let path = RelPath::from_walk(root, entry.path()).map_err(|rule| Error::UnsafePath {
            origin: entry.path().to_path_buf(),
            path: relative.display().to_string(),
            reason: rule.to_string(),
        })?;
        if let Some(reason) = reserved_in_target(&path) {
            return Err(Error::UnsafePath { origin: config.path.clone(), path: path.to_string(), reason });
        }
        let real_path = confine(root, &path, &config.path)?;
        let metadata = fs::metadata(&real_path).at(&real_path, "reading metadata")?;
        if !metadata.is_file() {
            return Err(Error::invalid(entry.path(), "is not a regular file; only regular files can be released"));
        }
        let kind = matchers[index].kind;
        let version = match &kind.version_file {
            Some(pattern) => read_version(workspace, &path, pattern.get_ref())?,
            None => None,
        };
        found.push(Candidate { kind: kind.name.clone(), path, real_path, size: metadata.len(), version });
    }
    for matcher in &matchers {
        for (glob, hits) in matcher.kind.include.iter().zip(&matcher.hits) {
            if *hits == 0 {
                let (line, column) = config.position(glob.span());
                return Err(Error::parse(
                    &config.path,
                    line,
                    column,
                    format!(
                        "artifacts.{}.include: glob `{}` matches no file in {}; fix the glob or remove it",
                        matcher.kind.name,
                        glob.get_ref(),
                        root.display()
                    ),
                ));
            }
        }
    }
    let order: Vec<&str> = config.artifacts.iter().map(|k| k.name.as_str()).collect();
    found.sort_by(|a, b| {
        let rank = |k: &str| order.iter().position(|o| *o == k);
        rank(&a.kind).cmp(&rank(&b.kind)).then_with(|| a.path.cmp(&b.path))
    });
    Ok(found)
}

fn read_version(workspace: &Workspace, artifact: &RelPath, pattern: &str) -> Result<Option<String>> {
    let text = pattern.replace("{path}", artifact.as_str());
    let version_path = RelPath::new(&text).map_err(|rule| Error::UnsafePath {
        origin: workspace.config.path.clone(),
        path: text.clone(),
        reason: rule.to_string(),
    })?;
    let absolute = version_path.under(&workspace.root);
    if !absolute.exists() {
        return Ok(None);
    }
    let real = confine(&workspace.root, &version_path, &workspace.config.path)?;
    let content = crate::infra::atomic::read_text(&real)?;
    let version = content.lines().next().unwrap_or("").trim().to_string();
    if version.is_empty() || version.len() > 128 || version.chars().any(char::is_control) {
        return Err(Error::invalid(&absolute, "the first line must hold the version (1 to 128 printable characters)"));
    }
    Ok(Some(version))
}

/// Hash every candidate (in parallel) into artifact records.
pub fn hash_candidates(candidates: &[Candidate], progress: &dyn Progress) -> Result<Vec<ArtifactRecord>> {
    let total: u64 = candidates.iter().map(|c| c.size).sum();
    progress.start("hashing", total);
    let jobs: Vec<(PathBuf, u64)> = candidates.iter().map(|c| (c.real_path.clone(), c.size)).collect();
    let digests = hash_files(&jobs, progress);
    progress.finish();
    let digests = digests?;
    Ok(candidates
        .iter()
        .zip(digests)
        .map(|(candidate, (hash, size))| ArtifactRecord {
            kind: candidate.kind.clone(),
            path: candidate.path.clone(),
            size,
            hash,
            version: candidate.version.clone(),
        })
        .collect())
}

/// What `audit` produced.
#[derive(Debug, Clone)]
pub struct AuditOutcome {
    /// The bundle directory (absolute).
    pub bundle_dir: PathBuf,
    /// The bundle file (absolute).
    pub bundle_path: PathBuf,
    /// Its content.
    pub bundle: AuditBundle,
    /// The exact bytes written.
    pub bytes: Vec<u8>,
}

/// Run the audit and write the bundle. Everything that can fail on bad input runs before the
/// workspace lock is taken and before anything is written.
pub fn run(workspace: &Workspace, now: Time, progress: &dyn Progress) -> Result<AuditOutcome> {
    let candidates = inventory(workspace)?;
    let artifacts = hash_candidates(&candidates, progress)?;
    let mut warnings = Vec::new();
    let git = match git::inspect(&workspace.root) {
        Ok(info) => {
            if info.dirty {
                warnings.push("the git working tree has uncommitted changes to tracked files".to_string());
            }
            Some(info)
        }
        Err(warning) => {
            warnings.push(warning);
            None
        }
    };
    let totals = Totals { artifacts: artifacts.len() as u64, bytes: artifacts.iter().map(|a| a.size).sum() };
    let _lock = crate::infra::lock::WorkspaceLock::acquire(&workspace.lock_path(), "audit", now)?;
    let release_dir = workspace.release_dir();
    create_dir_all_durable(&release_dir)?;
    crate::infra::atomic::remove_stale_temp_files(&release_dir)?;
    let mut created = now;
    loop {
        let bundle_id = format!("audit_{}", created.compact());
        let bundle_dir = release_dir.join(&bundle_id);
        if bundle_dir.exists() {
            // Names are per second; a second audit within the same second takes the next one.
            created = created.plus(jiff::SignedDuration::from_secs(1));
            continue;
        }
        let bundle = AuditBundle {
            schema_version: BUNDLE_SCHEMA,
            bundle_id: bundle_id.clone(),
            created: now,
            tool: ToolInfo::current(),
            git: git.clone(),
            warnings: warnings.clone(),
            totals: totals.clone(),
            artifacts: artifacts.clone(),
        };
        let text = format!(
            "# shipshape audit bundle: the inventory a release manifest is made from. Do not edit:\n# manifests record this file's SHA-256.\n{}",
            crate::infra::yaml::to_string(&bundle)?
        );
        let staging = crate::infra::atomic::temp_path_beside(&bundle_dir);
        fs::create_dir(&staging).at(&staging, "creating directory")?;
        let staged = (|| {
            write_new_atomic(&staging.join(BUNDLE_FILE), text.as_bytes())?;
            sync_dir(&staging)?;
            fs::rename(&staging, &bundle_dir).at(&bundle_dir, "renaming into place")?;
            sync_dir(&release_dir)
        })();
        if let Err(e) = staged {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        crate::infra::yaml::remember_parsed(&release_dir.join("store").join("parsed"), text.as_bytes(), &bundle);
        return Ok(AuditOutcome {
            bundle_path: bundle_dir.join(BUNDLE_FILE),
            bundle_dir,
            bundle,
            bytes: text.into_bytes(),
        });
    }
}

/// Read and parse a bundle directory's `bundle.yaml`, returning it with its exact bytes.
pub fn read_bundle(bundle_dir: &Path) -> Result<(AuditBundle, Vec<u8>)> {
    let path = bundle_dir.join(BUNDLE_FILE);
    let parsed = crate::layout::parsed_dir_of(&path, "audit_");
    let (bundle, bytes, _): (AuditBundle, Vec<u8>, _) = crate::infra::yaml::read_parsed(&path, parsed.as_deref())?;
    if bundle.schema_version != BUNDLE_SCHEMA {
        return Err(Error::invalid(
            &path,
            format!("schema_version {} is not supported (expected {BUNDLE_SCHEMA})", bundle.schema_version),
        ));
    }
    Ok((bundle, bytes))
}

/// The newest audit bundle directory in `release/`, if any.
pub fn newest_bundle(workspace: &Workspace) -> Result<Option<PathBuf>> {
    let dir = workspace.release_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(&dir, "listing"),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.at(&dir, "listing")?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("audit_") && entry.path().join(BUNDLE_FILE).is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names.pop().map(|name| dir.join(name)))
}

/// The bundle directory a command works on: the one the user named (a directory or its
/// `bundle.yaml`, inside the workspace), or the newest.
pub fn resolve_bundle(workspace: &Workspace, requested: Option<&Path>) -> Result<PathBuf> {
    let dir = match requested {
        Some(path) => workspace.resolve_user_path(path)?,
        None => newest_bundle(workspace)?
            .ok_or_else(|| Error::Usage("no audit bundle in release/ yet: run `shipshape audit` first".into()))?,
    };
    Ok(if dir.is_file() { dir.parent().map(Path::to_path_buf).unwrap_or(dir) } else { dir })
}
