//! The content-addressed object store: `release/store/sha256/<2 hex>/<62 hex>`.
//!
//! Objects are written once: copied from their source into `store/tmp/` while being hashed, fsynced,
//! made read-only, then linked to their final name (no-clobber) and the directory fsynced. Identical
//! bytes are stored once. Nothing read from the store is trusted: [`Store::verify`] re-hashes an
//! object against the digest that names it. Writing is split into [`Store::stage`] and
//! [`StagedObject::commit`] so that a caller can stage a whole release and commit nothing if any
//! file turns out to differ from what was audited.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::infra::atomic::{TempFile, create_dir_all_durable};
use crate::infra::hash::{Digest, Progress, hash_stream, verify_file};

/// The object store rooted at `release/store`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An object copied into the store's staging area but not yet visible under its name.
#[derive(Debug)]
pub struct StagedObject {
    temp: TempFile,
    /// The digest of the bytes that were copied.
    pub digest: Digest,
    /// Their length.
    pub size: u64,
    destination: PathBuf,
}

impl Store {
    /// The store rooted at `root`.
    pub fn new(root: PathBuf) -> Store {
        Store { root }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the object named `digest` lives.
    pub fn object_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("sha256").join(&hex[..2]).join(&hex[2..])
    }

    /// True when an object with this name exists (its content is not checked).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.object_path(digest).is_file()
    }

    fn staging_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Copy `source` into the staging area, hashing as it goes.
    pub fn stage(&self, source: &Path, progress: &dyn Progress) -> Result<StagedObject> {
        let staging = self.staging_dir();
        create_dir_all_durable(&staging)?;
        let input = File::open(source).at(source, "opening")?;
        let mut temp = TempFile::in_dir(&staging)?;
        let temp_path = temp.path().to_path_buf();
        let (digest, size) = hash_stream(input, Some(temp.file() as &mut dyn io::Write), progress).map_err(|e| {
            // A read error belongs to the source, a write error to the store.
            let path = if e.kind() == io::ErrorKind::StorageFull { temp_path.clone() } else { source.to_path_buf() };
            Error::Io { path, action: "copying into the object store", source: e }
        })?;
        let destination = self.object_path(&digest);
        Ok(StagedObject { temp, digest, size, destination })
    }

    /// Stage bytes that arrive in pieces (a download): write them with [`StagingWriter::write`],
    /// hashed as they come, then [`StagingWriter::finish`].
    pub fn stage_writer(&self) -> Result<StagingWriter> {
        let staging = self.staging_dir();
        create_dir_all_durable(&staging)?;
        Ok(StagingWriter {
            temp: TempFile::in_dir(&staging)?,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
            size: 0,
            store: self.clone(),
        })
    }

    /// Re-hash the object named `digest` and check its size; `Err(Check)` on any difference.
    /// `read_ahead`: see [`crate::infra::hash::read_ahead_helps`].
    pub fn verify(&self, digest: &Digest, size: Option<u64>, progress: &dyn Progress, read_ahead: bool) -> Result<()> {
        let path = self.object_path(digest);
        if !path.is_file() {
            return Err(Error::Check(format!("store object {} is missing ({})", digest, path.display())));
        }
        let actual = verify_file(&path, digest, progress, read_ahead)
            .map_err(|e| Error::Check(format!("store object {digest} is corrupt: {e}")))?;
        if let Some(expected) = size.filter(|&s| s != actual) {
            return Err(Error::Check(format!("store object {digest} is {actual} bytes, expected {expected}")));
        }
        Ok(())
    }

    /// Remove leftovers a crash may have left in the staging area.
    pub fn sweep_staging(&self) -> Result<usize> {
        crate::infra::atomic::remove_stale_temp_files(&self.staging_dir())
    }

    /// Replace a corrupt object with freshly staged bytes of the right digest.
    pub fn repair(&self, staged: StagedObject) -> Result<PathBuf> {
        let destination = staged.destination.clone();
        if destination.exists() {
            fs::remove_file(&destination).at(&destination, "removing corrupt object")?;
        }
        staged.commit()
    }
}

/// An object being written into the staging area piece by piece (see [`Store::stage_writer`]).
#[derive(Debug)]
pub struct StagingWriter {
    temp: TempFile,
    hasher: sha2::Sha256,
    size: u64,
    store: Store,
}

impl StagingWriter {
    /// Append `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        use sha2::Digest as _;
        use std::io::Write as _;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        let path = self.temp.path().to_path_buf();
        self.temp.file().write_all(bytes).at(&path, "writing into the object store")
    }

    /// The digest and size of what was written, staged under its name.
    pub fn finish(self) -> StagedObject {
        use sha2::Digest as _;
        let digest = Digest(self.hasher.finalize().into());
        let destination = self.store.object_path(&digest);
        StagedObject { temp: self.temp, digest, size: self.size, destination }
    }
}

impl StagedObject {
    /// Make the object visible under its name (read-only). If it already exists, the staged copy
    /// is dropped: identical bytes are stored once.
    pub fn commit(self) -> Result<PathBuf> {
        if let Some(parent) = self.destination.parent() {
            create_dir_all_durable(parent)?;
        }
        let destination = self.destination.clone();
        self.temp.persist_new(&destination, true)?;
        Ok(destination)
    }

    /// Where the object will live.
    pub fn destination(&self) -> &Path {
        &self.destination
    }
}

/// An object's stat when it was last fully verified: size, times and inode. Any write to the file
/// (or a chmod to make one possible) moves its ctime, which user space cannot set back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time (ns).
    pub mtime_ns: i64,
    /// Change time (ns).
    pub ctime_ns: i64,
    /// Inode number: a replaced file has another.
    pub ino: u64,
}

impl Stamp {
    /// The stamp of `path` now.
    pub fn of(path: &Path) -> Option<Stamp> {
        fs::metadata(path).ok().as_ref().map(Stamp::from_meta)
    }

    /// The stamp of a stat(2) result.
    pub fn from_stat(stat: &rustix::fs::Stat) -> Option<Stamp> {
        Some(Stamp {
            size: u64::try_from(stat.st_size).ok()?,
            mtime_ns: stat.st_mtime * 1_000_000_000 + i64::try_from(stat.st_mtime_nsec).ok()?,
            ctime_ns: stat.st_ctime * 1_000_000_000 + i64::try_from(stat.st_ctime_nsec).ok()?,
            ino: stat.st_ino,
        })
    }

    /// The stamp of a file whose metadata was just read.
    pub fn from_meta(meta: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
        }
    }
}

/// Objects verified by a full re-hash, with their stamps (`release/store/verified.yaml`). Deploy and
/// rollback use it for objects they do not copy, so a redeploy costs what it changes, not the size of
/// every model; objects they copy are re-hashed as they are read, and `shipshape verify` always
/// re-hashes everything.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiedCache {
    /// By object hex digest.
    pub objects: std::collections::BTreeMap<String, Stamp>,
}

impl Store {
    fn cache_path(&self) -> PathBuf {
        self.root.join("verified.yaml")
    }

    /// The cache (empty when missing or unreadable: it only ever saves work).
    pub fn verified_cache(&self) -> VerifiedCache {
        crate::infra::yaml::read_cache::<VerifiedCache>(&self.cache_path()).unwrap_or_default()
    }

    /// Whether `digest` was fully verified and its file (whose metadata was just read) is untouched since.
    pub fn verified_unchanged(&self, cache: &VerifiedCache, digest: &Digest, now: &Stamp) -> bool {
        cache.objects.get(&digest.hex()) == Some(now)
    }

    /// An object's path under `sha256/` (for stats relative to that directory).
    pub fn object_relative(digest: &Digest) -> String {
        let hex = digest.hex();
        format!("{}/{}", &hex[..2], &hex[2..])
    }

    /// Record objects just verified by a full re-hash.
    pub fn record_verified(&self, digests: &[Digest]) -> Result<()> {
        if digests.is_empty() || !self.root.is_dir() {
            return Ok(());
        }
        let mut cache = self.verified_cache();
        for digest in digests {
            if let Some(stamp) = Stamp::of(&self.object_path(digest)) {
                cache.objects.insert(digest.hex(), stamp);
            }
        }
        crate::infra::yaml::write_cache(&self.cache_path(), &cache)
    }
}

/// Link (or, where links are impossible, copy) the store object at `object` to `backup`.
pub fn link_or_copy(object: &Path, backup: &Path) -> Result<()> {
    if let Some(parent) = backup.parent() {
        fs::create_dir_all(parent).at(parent, "creating directory")?;
    }
    match fs::hard_link(object, backup) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e).at(backup, "creating backup"),
        Err(_) => {
            fs::copy(object, backup).at(backup, "copying backup")?;
            let file = File::open(backup).at(backup, "opening backup")?;
            crate::infra::atomic::set_read_only(&file).at(backup, "making read-only")?;
            file.sync_all().at(backup, "syncing backup")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::hash::NoProgress;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("store"));
        (dir, store)
    }

    #[test]
    fn stage_commit_names_object_by_content_and_makes_it_read_only() {
        let (dir, store) = store();
        let source = dir.path().join("model.pkl");
        fs::write(&source, b"weights").unwrap();
        let staged = store.stage(&source, &NoProgress).unwrap();
        assert_eq!(staged.digest, Digest::of(b"weights"));
        let path = staged.commit().unwrap();
        let hex = Digest::of(b"weights").hex();
        assert!(path.ends_with(format!("sha256/{}/{}", &hex[..2], &hex[2..])));
        assert_eq!(fs::read(&path).unwrap(), b"weights");
        assert!(fs::metadata(&path).unwrap().permissions().readonly());
        store.verify(&Digest::of(b"weights"), Some(7), &NoProgress, true).unwrap();
        assert_eq!(fs::read_dir(store.staging_dir()).unwrap().count(), 0, "no temp left");
    }

    #[test]
    fn identical_bytes_are_stored_once() {
        let (dir, store) = store();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, b"same").unwrap();
        fs::write(&b, b"same").unwrap();
        let first = store.stage(&a, &NoProgress).unwrap().commit().unwrap();
        let second = store.stage(&b, &NoProgress).unwrap().commit().unwrap();
        assert_eq!(first, second);
        let objects: Vec<_> = walkdir::WalkDir::new(store.root().join("sha256"))
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .collect();
        assert_eq!(objects.len(), 1);
    }

    #[test]
    fn verify_detects_tampering_size_and_absence() {
        let (dir, store) = store();
        let source = dir.path().join("c");
        fs::write(&source, b"config").unwrap();
        let path = store.stage(&source, &NoProgress).unwrap().commit().unwrap();
        let digest = Digest::of(b"config");
        assert!(store.verify(&digest, Some(99), &NoProgress, true).unwrap_err().to_string().contains("bytes"));
        let mut permissions = fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        fs::set_permissions(&path, permissions).unwrap();
        fs::write(&path, b"c0nfig").unwrap();
        let err = store.verify(&digest, None, &NoProgress, true).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::CheckFailed);
        assert!(err.to_string().contains("corrupt"), "{err}");
        fs::remove_file(&path).unwrap();
        assert!(store.verify(&digest, None, &NoProgress, true).unwrap_err().to_string().contains("missing"));
    }
}
