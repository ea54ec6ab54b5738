//! The remote store: where releases travel between machines — an S3-compatible bucket (`s3://`), a
//! shared directory (`file://`, or a plain path), through the `object_store` crate.
//!
//! Layout under the store's prefix:
//!
//! ```text
//! objects/sha256/<64 hex>        every artifact and every signed record, by content (written once)
//! releases/<release id>.json     the release's index: its records' workspace paths and hashes
//! ```
//!
//! [`RemoteStore::publish`] uploads what the bucket lacks (a `HEAD` per object, so an interrupted
//! publish resumes where it stopped), with conditional create (`If-None-Match: *`) for objects that
//! fit one request and a streamed multipart upload, hashed as it goes, for larger ones; the index is
//! written last. [`RemoteStore::fetch`] downloads what the host lacks into its own workspace and
//! checks every byte: a record against its index hash, the manifest against the index, each
//! artifact against the hash the signed manifest names. The transport and the index are never
//! trusted — what is deployed is judged by the host's own allowed signers and policy at deploy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt as _;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use shipshape_core::config::S3Config;
use shipshape_core::infra::clock::Time;
use shipshape_core::infra::hash::{Digest, Progress};
use shipshape_core::infra::paths::RelPath;
use shipshape_core::layout::Workspace;
use shipshape_core::model::ids::ReleaseId;

use crate::error::{Error, Result};

/// Objects up to this size go in one conditional request; larger ones are streamed in parts.
const SINGLE_PUT: u64 = 16 * 1024 * 1024;
/// The part size of a streamed upload.
const PART: usize = 16 * 1024 * 1024;
/// Parts in flight at once during a streamed upload.
const PARTS_IN_FLIGHT: usize = 4;
/// Objects uploaded or downloaded at once.
const OBJECTS_IN_FLIGHT: usize = 8;

/// One signed record of a release (the manifest, its approvals, the audit bundle, the validation
/// record, the previous manifest of the chain): where it lives in a workspace and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordEntry {
    /// Workspace-relative path (under `release/manifests/` or `release/audit_*/`).
    pub path: String,
    /// SHA-256 of its bytes (`sha256:<hex>`).
    pub sha256: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// `releases/<id>.json`: what a release consists of in the store. Not signed, and not trusted:
/// fetch checks every record against this hash and then against the signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseIndex {
    /// Always 1.
    pub schema: u32,
    /// The release.
    pub release_id: String,
    /// The manifest's path in the workspace.
    pub manifest: String,
    /// The manifest's hash.
    pub manifest_sha256: Digest,
    /// The manifest's sequence in its environment.
    pub sequence: u64,
    /// The environment the manifest was made for.
    pub environment: String,
    /// When it was published (RFC 3339).
    pub published_at: String,
    /// Who published it.
    pub published_by: String,
    /// The signed records.
    pub records: Vec<RecordEntry>,
    /// The artifacts' objects (hash and size), as the manifest names them.
    pub objects: Vec<(Digest, u64)>,
}

/// What a publish did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublishReport {
    /// The release.
    pub release_id: String,
    /// Objects the store did not have, uploaded now.
    pub uploaded: usize,
    /// Objects it had already (by hash): not sent again.
    pub present: usize,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// What a fetch did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FetchReport {
    /// The release.
    pub release_id: String,
    /// The manifest, in the local workspace.
    pub manifest: String,
    /// Artifact objects downloaded (each checked against the manifest's hash).
    pub downloaded: usize,
    /// Artifact objects the local store had already.
    pub present: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Records written or updated (manifest, approvals, audit bundle, validation record).
    pub records_written: usize,
}

/// A remote store.
pub struct RemoteStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    display: String,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStore").field("store", &self.display).finish()
    }
}

/// A remote store's error, naming the store and the action.
fn remote_error(display: &str, action: impl Into<String>) -> impl Fn(object_store::Error) -> Error + '_ {
    let action = action.into();
    move |e| Error::Remote { store: display.to_string(), action: action.clone(), message: one_line(&e.to_string()) }
}

/// Errors of HTTP clients span lines; a report line must not.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl RemoteStore {
    /// Open the store at `url`: `s3://bucket[/prefix]`, `file:///dir`, or a directory path
    /// (relative to `root`, created when missing).
    pub fn open(url: &str, root: &Path, s3: &S3Config) -> Result<RemoteStore> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Invalid(format!("starting the store's I/O runtime: {e}")))?;
        let (store, prefix): (Arc<dyn ObjectStore>, String) = if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::Invalid(format!("{url}: name the bucket, e.g. s3://releases/shipshape")));
            }
            if let Some(endpoint) = &s3.endpoint
                && endpoint.starts_with("http://")
                && !s3.allow_http
            {
                return Err(Error::Invalid(format!(
                    "fleet.s3.endpoint {endpoint} is plain HTTP: use https://, or set allow_http = true (loopback, tests)"
                )));
            }
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()))
                .with_allow_http(s3.allow_http);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint.clone()).with_virtual_hosted_style_request(false);
            }
            let store = builder.build().map_err(remote_error(url, "opening the bucket"))?;
            (Arc::new(store), prefix.trim_matches('/').to_string())
        } else {
            let dir = match url.strip_prefix("file://") {
                Some(path) if path.starts_with('/') => PathBuf::from(path),
                Some(_) => {
                    return Err(Error::Invalid(format!(
                        "{url}: a file:// URL names an absolute path, e.g. file:///srv/shipshape"
                    )));
                }
                None if url.contains("://") => {
                    return Err(Error::Invalid(format!(
                        "{url}: the store is s3://bucket/prefix, file:///dir, or a directory path"
                    )));
                }
                None => root.join(url),
            };
            std::fs::create_dir_all(&dir).map_err(|e| Error::Remote {
                store: url.to_string(),
                action: "creating the store directory".into(),
                message: e.to_string(),
            })?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(remote_error(url, "opening the store directory"))?;
            (Arc::new(store), String::new())
        };
        Ok(RemoteStore { store, prefix, display: url.to_string(), runtime })
    }

    /// The store as configured.
    pub fn display(&self) -> &str {
        &self.display
    }

    fn key(&self, rest: &str) -> Key {
        if self.prefix.is_empty() { Key::from(rest) } else { Key::from(format!("{}/{rest}", self.prefix)) }
    }

    /// The key of the object named `digest`.
    pub fn object_key(&self, digest: &Digest) -> String {
        self.key(&format!("objects/sha256/{}", digest.hex())).to_string()
    }

    fn index_key(&self, release_id: &str) -> Key {
        self.key(&format!("releases/{release_id}.json"))
    }

    /// Write `bytes` under `key` (relative to the store's root, prefix included), replacing what
    /// is there. For indexes, and for tests that play a corrupted bucket.
    pub fn put_raw(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.runtime
            .block_on(self.store.put(&Key::from(key), PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(remote_error(&self.display, format!("writing {key}")))
    }

    /// The index of `release_id`; `None` when it was never published.
    pub fn index(&self, release_id: &str) -> Result<Option<ReleaseIndex>> {
        let key = self.index_key(release_id);
        let bytes = match self.runtime.block_on(async { self.store.get(&key).await?.bytes().await }) {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(remote_error(&self.display, format!("reading {key}"))(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Refused(format!("{}: {key} is not a release index: {e}", self.display)))
    }

    /// The releases published, oldest sequence first.
    pub fn releases(&self) -> Result<Vec<ReleaseIndex>> {
        let prefix = self.key("releases");
        let metas: Vec<_> = self
            .runtime
            .block_on(self.store.list(Some(&prefix)).collect::<Vec<_>>())
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(remote_error(&self.display, "listing releases"))?;
        let mut out = Vec::new();
        for meta in metas {
            let name = meta.location.filename().unwrap_or_default().to_string();
            if let Some(id) = name.strip_suffix(".json")
                && let Some(index) = self.index(id)?
            {
                out.push(index);
            }
        }
        out.sort_by(|a, b| (a.sequence, &a.release_id).cmp(&(b.sequence, &b.release_id)));
        Ok(out)
    }

    /// Upload the release of the manifest at `manifest_path` (records and artifacts) and its index.
    pub fn publish(
        &self,
        workspace: &Workspace,
        manifest_path: &Path,
        by: &str,
        now: Time,
        progress: &dyn Progress,
    ) -> Result<PublishReport> {
        let loaded = shipshape_core::pipeline::manifest::load(manifest_path)?;
        let manifest = &loaded.manifest;
        let records = records_of(workspace, &loaded)?;
        let mut objects: Vec<(Digest, u64)> = Vec::new();
        for (_, artifact) in manifest.artifacts.iter() {
            if !objects.iter().any(|(d, _)| *d == artifact.hash) {
                objects.push((artifact.hash, artifact.size));
            }
        }
        let local = workspace.store();
        for (digest, _) in &objects {
            if !local.contains(digest) {
                return Err(Error::Core(shipshape_core::Error::Check(format!(
                    "store object {digest} of {} is missing from {}: run `shipshape manifest` again in the workspace that made it",
                    manifest.release_id,
                    workspace.display(local.root())
                ))));
            }
        }
        let total: u64 = objects.iter().map(|(_, s)| s).sum::<u64>() + records.iter().map(|(r, _)| r.size).sum::<u64>();
        progress.start(&format!("publishing {}", manifest.release_id), total);
        let mut report = PublishReport { release_id: manifest.release_id.to_string(), ..PublishReport::default() };
        self.runtime.block_on(async {
            // Records: small, in memory.
            let uploads = records.iter().map(|(entry, bytes)| async move {
                let sent = self.put_if_absent(&entry.sha256, bytes.clone()).await?;
                progress.advance(entry.size);
                Ok::<_, Error>((sent, entry.size))
            });
            let results: Vec<Result<(bool, u64)>> =
                futures_util::stream::iter(uploads).buffer_unordered(OBJECTS_IN_FLIGHT).collect().await;
            for result in results {
                count(&mut report, result?);
            }
            let uploads = objects.iter().map(|(digest, size)| {
                let path = local.object_path(digest);
                async move {
                    let sent = self.upload_object(digest, *size, &path, progress).await?;
                    Ok::<_, Error>((sent, *size))
                }
            });
            let results: Vec<Result<(bool, u64)>> =
                futures_util::stream::iter(uploads).buffer_unordered(OBJECTS_IN_FLIGHT).collect().await;
            for result in results {
                count(&mut report, result?);
            }
            Ok::<_, Error>(())
        })?;
        progress.finish();
        let index = ReleaseIndex {
            schema: 1,
            release_id: manifest.release_id.to_string(),
            manifest: relative(workspace, &loaded.path)?,
            manifest_sha256: loaded.digest,
            sequence: manifest.sequence,
            environment: manifest.deployment.environment.to_string(),
            published_at: now.to_string(),
            published_by: by.to_string(),
            records: records.into_iter().map(|(entry, _)| entry).collect(),
            objects,
        };
        let json = serde_json::to_vec_pretty(&index).map_err(|e| Error::Invalid(e.to_string()))?;
        self.put_raw(self.index_key(&report.release_id).as_ref(), json)?;
        Ok(report)
    }

    /// Upload `bytes` named `digest` unless the store has it: `true` when sent.
    async fn put_if_absent(&self, digest: &Digest, bytes: Vec<u8>) -> Result<bool> {
        let key = self.key(&format!("objects/sha256/{}", digest.hex()));
        if self.exists(&key, bytes.len() as u64).await? {
            return Ok(false);
        }
        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.store.put_opts(&key, PutPayload::from(bytes), options).await {
            Ok(_) => Ok(true),
            // Another publisher stored the same bytes first.
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(remote_error(&self.display, format!("uploading {key}"))(e)),
        }
    }

    /// Whether `key` exists; one of another size is a corrupt store, refused.
    async fn exists(&self, key: &Key, size: u64) -> Result<bool> {
        match self.store.head(key).await {
            Ok(meta) if meta.size == size => Ok(true),
            Ok(meta) => Err(Error::Refused(format!(
                "{}: {key} is {} bytes, but its name says {size}: the store is corrupt (remove the object and publish again)",
                self.display, meta.size
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(remote_error(&self.display, format!("looking up {key}"))(e)),
        }
    }

    /// Upload the local store's object at `path`, hashed as it is read: a local object that no
    /// longer matches its name is refused before the upload completes.
    async fn upload_object(&self, digest: &Digest, size: u64, path: &Path, progress: &dyn Progress) -> Result<bool> {
        let key = self.key(&format!("objects/sha256/{}", digest.hex()));
        if self.exists(&key, size).await? {
            progress.advance(size);
            return Ok(false);
        }
        let corrupt = |actual: Digest| {
            Error::Core(shipshape_core::Error::Check(format!(
                "store object {digest} is corrupt ({} hashes to {actual}): not published",
                path.display()
            )))
        };
        if size <= SINGLE_PUT {
            let bytes = std::fs::read(path).map_err(|e| shipshape_core::Error::Io {
                path: path.to_path_buf(),
                action: "reading",
                source: e,
            })?;
            let actual = Digest::of(&bytes);
            if actual != *digest {
                return Err(corrupt(actual));
            }
            let sent = self.put_if_absent(digest, bytes).await?;
            progress.advance(size);
            return Ok(sent);
        }
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(remote_error(&self.display, format!("starting the upload of {key}")))?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        let mut file = std::fs::File::open(path).map_err(|e| shipshape_core::Error::Io {
            path: path.to_path_buf(),
            action: "opening",
            source: e,
        })?;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            use std::io::Read as _;
            let n = file.read(&mut buffer).map_err(|e| shipshape_core::Error::Io {
                path: path.to_path_buf(),
                action: "reading",
                source: e,
            })?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut hasher, &buffer[..n]);
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(remote_error(&self.display, format!("uploading {key}")))?;
            writer.write(&buffer[..n]);
            progress.advance(n as u64);
        }
        let actual = Digest(sha2::Digest::finalize(hasher).into());
        if actual != *digest {
            let _ = writer.abort().await;
            return Err(corrupt(actual));
        }
        writer.finish().await.map_err(remote_error(&self.display, format!("completing the upload of {key}")))?;
        Ok(true)
    }

    /// Download `release_id` into `workspace`: its records (checked against the index) and every
    /// artifact object the local store lacks (checked against the manifest's hashes). The host's
    /// trust root is never written. On a refusal, the records this fetch created are removed.
    pub fn fetch(&self, workspace: &Workspace, release_id: &str, progress: &dyn Progress) -> Result<FetchReport> {
        ReleaseId::new(release_id).map_err(|e| Error::Invalid(format!("{release_id}: {e}")))?;
        let index = self.index(release_id)?.ok_or_else(|| {
            Error::Invalid(format!(
                "{}: no release {release_id} has been published (run `shipshape publish` where it was made)",
                self.display
            ))
        })?;
        if index.release_id != release_id || index.schema != 1 {
            return Err(Error::Refused(format!(
                "{}: the index of {release_id} names {} (schema {}): refused",
                self.display, index.release_id, index.schema
            )));
        }
        let mut created: Vec<PathBuf> = Vec::new();
        let result = self.fetch_into(workspace, &index, progress, &mut created);
        if result.is_err() {
            for path in &created {
                let _ = std::fs::remove_file(path);
            }
            // And the directories they made, when nothing else is in them.
            for path in &created {
                let _ = path.parent().map(std::fs::remove_dir);
            }
        }
        result
    }

    fn fetch_into(
        &self,
        workspace: &Workspace,
        index: &ReleaseIndex,
        progress: &dyn Progress,
        created: &mut Vec<PathBuf>,
    ) -> Result<FetchReport> {
        let mut report = FetchReport {
            release_id: index.release_id.clone(),
            manifest: index.manifest.clone(),
            ..FetchReport::default()
        };
        for record in &index.records {
            let relative = record_path(&record.path).map_err(|why| {
                Error::Refused(format!(
                    "{}: the index of {} names {}: {why}",
                    self.display, index.release_id, record.path
                ))
            })?;
            let bytes = self.runtime.block_on(self.get_object(&record.sha256))?;
            let actual = Digest::of(&bytes);
            if actual != record.sha256 {
                return Err(Error::Refused(format!(
                    "{}: object {} (for {}) hashes to {actual}: the store is corrupt or was tampered with; nothing applied",
                    self.display, record.sha256, record.path
                )));
            }
            let path = relative.under(&workspace.root);
            match std::fs::read(&path) {
                Ok(existing) if existing == bytes => continue,
                // Approvals accumulate: a newer approvals file replaces the older one (the deploy
                // judges its signatures against this host's own allowed signers).
                Ok(_) if record.path.ends_with(".approvals.yaml") => {}
                Ok(_) => {
                    return Err(Error::Refused(format!(
                        "{}: differs from the published {} of {}: refused (another release with this name?)",
                        workspace.display(&path),
                        record.path,
                        index.release_id
                    )));
                }
                Err(_) => created.push(path.clone()),
            }
            if let Some(parent) = path.parent() {
                shipshape_core::infra::atomic::create_dir_all_durable(parent)?;
            }
            shipshape_core::infra::atomic::write_atomic(&path, &bytes)?;
            report.records_written += 1;
        }
        let manifest_path = record_path(&index.manifest)
            .map_err(|why| {
                Error::Refused(format!("{}: the index names manifest {}: {why}", self.display, index.manifest))
            })?
            .under(&workspace.root);
        let loaded = shipshape_core::pipeline::manifest::load(&manifest_path)?;
        if loaded.digest != index.manifest_sha256 || loaded.manifest.release_id.to_string() != index.release_id {
            return Err(Error::Refused(format!(
                "{}: the manifest of {} does not match its index: refused",
                self.display, index.release_id
            )));
        }
        let store = workspace.store();
        let mut wanted: Vec<(Digest, u64)> = Vec::new();
        for (_, artifact) in loaded.manifest.artifacts.iter() {
            if !wanted.iter().any(|(d, _)| *d == artifact.hash) && !store.contains(&artifact.hash) {
                wanted.push((artifact.hash, artifact.size));
            }
        }
        report.present =
            loaded.manifest.artifacts.iter().map(|(_, a)| a.hash).collect::<std::collections::BTreeSet<_>>().len()
                - wanted.len();
        progress.start(&format!("fetching {}", index.release_id), wanted.iter().map(|(_, s)| s).sum());
        let results: Vec<Result<u64>> = self.runtime.block_on(
            futures_util::stream::iter(
                wanted.iter().map(|(digest, size)| self.download_object(&store, digest, *size, progress)),
            )
            .buffer_unordered(OBJECTS_IN_FLIGHT)
            .collect(),
        );
        progress.finish();
        for result in results {
            report.bytes += result?;
            report.downloaded += 1;
        }
        link_backups(workspace, &loaded)?;
        Ok(report)
    }

    async fn get_object(&self, digest: &Digest) -> Result<bytes::Bytes> {
        let key = self.key(&format!("objects/sha256/{}", digest.hex()));
        let result = async { self.store.get(&key).await?.bytes().await }.await;
        result.map_err(remote_error(&self.display, format!("downloading {key}")))
    }

    /// Stream one artifact object into the local store's staging area, hashed as it comes; commit
    /// it under its name only when its hash and size are the manifest's.
    async fn download_object(
        &self,
        store: &shipshape_core::infra::store::Store,
        digest: &Digest,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let key = self.key(&format!("objects/sha256/{}", digest.hex()));
        let result = self.store.get(&key).await.map_err(remote_error(&self.display, format!("downloading {key}")))?;
        let mut stream = result.into_stream();
        let mut writer = store.stage_writer()?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(remote_error(&self.display, format!("downloading {key}")))?;
            writer.write(&chunk)?;
            progress.advance(chunk.len() as u64);
        }
        let staged = writer.finish();
        if staged.digest != *digest || staged.size != size {
            return Err(Error::Refused(format!(
                "{}: object {digest} hashes to {} ({} bytes, the manifest says {size}): the store is corrupt or was tampered with; nothing applied",
                self.display, staged.digest, staged.size
            )));
        }
        staged.commit()?;
        Ok(size)
    }
}

/// The release's backup view (`release/backups/<id>/<path>`, the story's backup copies): hard links
/// to the store's objects, as `shipshape manifest` makes them where the release was made.
fn link_backups(workspace: &Workspace, loaded: &shipshape_core::model::manifest::LoadedManifest) -> Result<()> {
    let manifest = &loaded.manifest;
    let prefix = format!("release/backups/{}/", manifest.release_id);
    let store = workspace.store();
    for (_, artifact) in manifest.artifacts.iter() {
        if !artifact.backup.as_str().starts_with(&prefix) {
            return Err(Error::Refused(format!(
                "{}: backup {} is not under {prefix}: refused",
                manifest.release_id, artifact.backup
            )));
        }
        let backup = artifact.backup.under(&workspace.root);
        if backup.exists() {
            continue;
        }
        if let Some(parent) = backup.parent() {
            shipshape_core::infra::atomic::create_dir_all_durable(parent)?;
        }
        let object = store.object_path(&artifact.hash);
        std::fs::hard_link(&object, &backup).map_err(|e| shipshape_core::Error::Io {
            path: backup.clone(),
            action: "linking the backup to its store object",
            source: e,
        })?;
    }
    Ok(())
}

fn count(report: &mut PublishReport, (sent, size): (bool, u64)) {
    if sent {
        report.uploaded += 1;
        report.bytes += size;
    } else {
        report.present += 1;
    }
}

/// `path` relative to the workspace, as the index records it.
fn relative(workspace: &Workspace, path: &Path) -> Result<String> {
    RelPath::from_walk(&workspace.root, path)
        .map(|p| p.as_str().to_string())
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// A record path from an index, checked: a plain relative path under `release/manifests/` or an
/// audit bundle directory, ending in `.yaml`. Anything else (the trust root, `..`, absolute
/// paths) is refused.
fn record_path(path: &str) -> std::result::Result<RelPath, String> {
    let rel = RelPath::new(path).map_err(|e| e.to_string())?;
    let mut parts = path.split('/');
    let ok = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("release"), Some("manifests"), Some(file), None) => file.ends_with(".yaml"),
        (Some("release"), Some(dir), Some(file), None) => {
            dir.starts_with("audit_") && matches!(file, "bundle.yaml" | "validation.yaml")
        }
        _ => false,
    };
    if ok {
        Ok(rel)
    } else {
        Err("not a release record's path (release/manifests/*.yaml, release/audit_*/bundle.yaml or validation.yaml)"
            .into())
    }
}

/// The signed records of a release, with their bytes.
fn records_of(
    workspace: &Workspace,
    loaded: &shipshape_core::model::manifest::LoadedManifest,
) -> Result<Vec<(RecordEntry, Vec<u8>)>> {
    let manifest = &loaded.manifest;
    let bundle_dir = manifest.audit_bundle.under(&workspace.root);
    let mut paths = vec![loaded.path.clone()];
    let approvals = shipshape_core::layout::approvals_path(&loaded.path);
    if approvals.exists() {
        paths.push(approvals);
    }
    paths.push(bundle_dir.join("bundle.yaml"));
    let validation = bundle_dir.join("validation.yaml");
    if validation.exists() {
        paths.push(validation);
    }
    if let Some(previous) = &manifest.previous_manifest {
        paths.push(previous.under(&workspace.root));
    }
    let mut out = Vec::new();
    for path in paths {
        let bytes = shipshape_core::infra::atomic::read(&path)?;
        let rel = relative(workspace, &path)?;
        record_path(&rel).map_err(|why| Error::Invalid(format!("{rel}: {why}")))?;
        out.push((RecordEntry { path: rel, sha256: Digest::of(&bytes), size: bytes.len() as u64 }, bytes));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_release_records_may_be_written_by_a_fetch() {
        for ok in [
            "release/manifests/release_20250101_000000.yaml",
            "release/manifests/release_20250101_000000.approvals.yaml",
            "release/audit_20250101_000000/bundle.yaml",
            "release/audit_20250101_000000/validation.yaml",
        ] {
            assert!(record_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "release/allowed_signers",
            "release/policy.yaml",
            "release/manifests/../policy.yaml",
            "/etc/passwd",
            "release/audit_x/run.sh",
            "shipshape.toml",
            "release/manifests/sub/x.yaml",
        ] {
            assert!(record_path(bad).is_err(), "{bad}");
        }
    }
}
