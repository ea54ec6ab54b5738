//! Crash-safe file writes.
//!
//! Everything shipshape writes that a person reads or signs (bundles, manifests, backups) goes through
//! here: the bytes are written to a temporary file in the destination's own directory, fsynced, renamed
//! (or hard-linked, when the destination must not already exist) into place, and the directory is
//! fsynced so the new name survives a power cut. A reader therefore sees the old file or the new one,
//! never half of one; a crash leaves at most a `.tmp-*` file, which [`TempFile`] removes on drop.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, IoContext, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name for a temporary file beside `path`, unique within this host.
pub fn temp_path_beside(path: &Path) -> PathBuf {
    let parent = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    parent.join(format!(".{name}.tmp-{}-{count}-{nanos:08x}", std::process::id()))
}

/// fsync a directory so that renames and new names inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir, "syncing directory")
}

/// Ask the kernel to start writing `file`'s dirty pages in `offset..offset + len` to disk now, without
/// waiting (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): a large copy's writeback then runs while the
/// copy goes on, and the final fsync has little left to wait for. Purely a hint: errors are ignored
/// (the fsync reports them).
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: a plain system call on an open descriptor with integer arguments; no memory is shared.
    #[allow(unsafe_code)]
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Files fsynced on a few threads while the caller goes on writing others. One fsync after another
/// each waits for a journal commit and a disk flush of its own; fsyncs in flight together share them.
/// [`Syncer::finish`] waits for all and returns the first failure, naming the file.
pub struct Syncer {
    sender: Option<std::sync::mpsc::SyncSender<(File, PathBuf)>>,
    workers: Vec<std::thread::JoinHandle<Result<()>>>,
}

impl Syncer {
    /// Threads that fsync (the work is waiting on the disk, not the CPU).
    const THREADS: usize = 8;

    /// Start the threads.
    pub fn new() -> Syncer {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<(File, PathBuf)>(Self::THREADS * 4);
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        let workers = (0..Self::THREADS)
            .map(|_| {
                let receiver = std::sync::Arc::clone(&receiver);
                std::thread::spawn(move || -> Result<()> {
                    let mut outcome = Ok(());
                    loop {
                        let next = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return outcome,
                        };
                        let Ok((file, path)) = next else { return outcome };
                        if outcome.is_ok() {
                            outcome = file.sync_all().at(&path, "syncing");
                        }
                    }
                })
            })
            .collect();
        Syncer { sender: Some(sender), workers }
    }

    /// fsync `file` (written at `path`) soon.
    pub fn push(&self, file: File, path: PathBuf) {
        if let Some(sender) = &self.sender {
            // A send fails only once every worker is gone, which `finish` reports.
            let _ = sender.send((file, path));
        }
    }

    /// Wait until every pushed file is on disk.
    pub fn finish(mut self) -> Result<()> {
        self.sender = None;
        let mut outcome = Ok(());
        for worker in std::mem::take(&mut self.workers) {
            let result = worker.join().unwrap_or_else(|_| Err(Error::Internal("an fsync thread panicked".into())));
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    }
}

impl Default for Syncer {
    fn default() -> Self {
        Syncer::new()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.sender = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// A directory opened for stats relative to it: for hundreds of files under one directory, a short
/// lookup each instead of a walk from the root, which is most of what a stat costs.
pub struct StatDir {
    fd: Option<std::os::fd::OwnedFd>,
    path: PathBuf,
}

impl StatDir {
    /// Open `path` (when it cannot be opened, stats fall back to whole paths, and fail as they would).
    pub fn open(path: &Path) -> StatDir {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(path, OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok();
        StatDir { fd, path: path.to_path_buf() }
    }

    /// stat(2) of `relative` under the directory, following symlinks like `fs::metadata`.
    pub fn stat(&self, relative: &str) -> Option<rustix::fs::Stat> {
        match &self.fd {
            Some(fd) => rustix::fs::statat(fd, relative, rustix::fs::AtFlags::empty()).ok(),
            None => rustix::fs::stat(self.path.join(relative)).ok(),
        }
    }
}

/// Create `dir` and any missing parents, fsyncing each parent whose entries changed.
pub fn create_dir_all_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e).at(dir, "creating directory"),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// A temporary file that is deleted on drop unless [`TempFile::persist`] or
/// [`TempFile::persist_new`] moved it into place.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    /// Create a new temporary file beside `destination`.
    pub fn beside(destination: &Path) -> Result<Self> {
        let path = temp_path_beside(destination);
        let file = OpenOptions::new().write(true).create_new(true).open(&path).at(&path, "creating temporary file")?;
        Ok(TempFile { path, file, persisted: false })
    }

    /// Create a new temporary file inside `dir` (for files whose final name is not known yet).
    pub fn in_dir(dir: &Path) -> Result<Self> {
        Self::beside(&dir.join("object"))
    }

    /// The temporary file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for writing.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    fn finish(&self, read_only: bool) -> Result<()> {
        if read_only {
            set_read_only(&self.file).at(&self.path, "making read-only")?;
        }
        self.file.sync_all().at(&self.path, "syncing")
    }

    /// fsync, rename over `destination` (replacing it), fsync the directory.
    pub fn persist(mut self, destination: &Path, read_only: bool) -> Result<()> {
        self.finish(read_only)?;
        fs::rename(&self.path, destination).at(destination, "renaming into place")?;
        self.persisted = true;
        sync_dir(destination.parent().unwrap_or_else(|| Path::new(".")))
    }

    /// fsync and link to `destination`; `Ok(false)` (and nothing changed) if it already exists.
    /// The no-clobber form, for names that must be unique.
    pub fn persist_new(self, destination: &Path, read_only: bool) -> Result<bool> {
        self.finish(read_only)?;
        match fs::hard_link(&self.path, destination) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e).at(destination, "linking into place"),
        }
        drop(self); // removes the temporary name; the destination keeps the inode
        sync_dir(destination.parent().unwrap_or_else(|| Path::new(".")))?;
        Ok(true)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Mark a file read-only (mode 0444).
pub fn set_read_only(file: &File) -> io::Result<()> {
    let mut permissions = file.metadata()?.permissions();
    permissions.set_readonly(true);
    file.set_permissions(permissions)
}

/// Atomically replace `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp = TempFile::beside(path)?;
    temp.file().write_all(bytes).at(temp.path(), "writing")?;
    temp.persist(path, false)
}

/// Atomically replace several files, each with its bytes: every one is written to a temporary
/// file and fsynced (together: one wait for the disk instead of one per file), then renamed into
/// place, and each directory involved is fsynced once. Each file on its own is old or new after a
/// crash; callers that need all or none (the registry) redo the whole set on recovery.
pub fn write_atomic_all(files: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    let mut temps = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let mut temp = TempFile::beside(path)?;
        temp.file().write_all(bytes).at(temp.path(), "writing")?;
        temps.push(temp);
    }
    std::thread::scope(|scope| {
        let syncing: Vec<_> = temps.iter().skip(1).map(|temp| scope.spawn(move || temp.finish(false))).collect();
        let first = temps.first().map_or(Ok(()), |temp| temp.finish(false));
        syncing.into_iter().fold(first, |outcome, handle| {
            let synced = handle.join().unwrap_or_else(|_| Err(Error::Internal("an fsync thread panicked".into())));
            outcome.and(synced)
        })
    })?;
    let mut dirs = std::collections::BTreeSet::new();
    for (mut temp, (path, _)) in temps.into_iter().zip(files) {
        fs::rename(&temp.path, path).at(path, "renaming into place")?;
        temp.persisted = true;
        dirs.insert(path.parent().unwrap_or_else(|| Path::new(".")).to_path_buf());
    }
    dirs.iter().try_for_each(|dir| sync_dir(dir))
}

/// Atomically create `path` with `bytes`; `Ok(false)` if it already exists (nothing written).
pub fn write_new_atomic(path: &Path, bytes: &[u8]) -> Result<bool> {
    let mut temp = TempFile::beside(path)?;
    temp.file().write_all(bytes).at(temp.path(), "writing")?;
    temp.persist_new(path, false)
}

/// Remove leftover temporary files (`.*.tmp-*`) in `dir`, as a crash may leave them.
pub fn remove_stale_temp_files(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).at(dir, "listing"),
    };
    for entry in entries {
        let entry = entry.at(dir, "listing")?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let path = entry.path();
            let result = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            result.at(&path, "removing stale temporary file")?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Read a file whole, naming it on error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).at(path, "reading")
}

/// Read a UTF-8 text file whole, naming it (and the byte offset of the bad sequence) on error.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = read(path)?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        Error::invalid(path, format!("not valid UTF-8 (first bad byte at offset {offset})"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_new_atomic_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        assert!(write_new_atomic(&path, b"first").unwrap());
        assert!(!write_new_atomic(&path, b"second").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn dropped_temp_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let temp = TempFile::in_dir(dir.path()).unwrap();
        let path = temp.path().to_path_buf();
        assert!(path.exists());
        drop(temp);
        assert!(!path.exists());
    }

    #[test]
    fn stale_temp_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".x.tmp-1-2-3"), b"").unwrap();
        fs::write(dir.path().join("keep"), b"").unwrap();
        assert_eq!(remove_stale_temp_files(dir.path()).unwrap(), 1);
        assert!(dir.path().join("keep").exists());
    }
}
