//! One mutating operation at a time per workspace.
//!
//! An advisory `flock` on `release/.lock`, taken without waiting: a second mutating command fails at
//! once and names the holder (pid, host, command, start time), which the holder writes into the lock
//! file after taking it. The kernel drops the lock when its process dies, however it dies, so a lock
//! file left behind by a killed process is never "stale" in a way that blocks anyone: the next command
//! simply takes it and overwrites the holder record.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::infra::clock::Time;

/// A held workspace lock; released on drop.
#[derive(Debug)]
pub struct WorkspaceLock {
    file: File,
    path: PathBuf,
}

impl WorkspaceLock {
    /// Take the lock at `path` for `command`, or fail naming whoever holds it.
    pub fn acquire(path: &Path, command: &str, now: Time) -> Result<WorkspaceLock> {
        if let Some(parent) = path.parent() {
            crate::infra::atomic::create_dir_all_durable(parent)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .at(path, "opening lock file")?;
        match file.try_lock() {
            // A lock file may be removed by its holder (a target's first, refused deploy removes
            // the `.shipshape/` it created): a lock taken on a file no longer at `path` is no lock,
            // so take it again on the file that is there now.
            Ok(()) if !still_at(&file, path) => return Self::acquire(path, command, now),
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder =
                    if holder.is_empty() { "another shipshape process".to_string() } else { holder.to_string() };
                return Err(Error::Locked { path: path.to_path_buf(), holder });
            }
            Err(TryLockError::Error(e)) => return Err(e).at(path, "locking"),
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let record = format!("pid {} on {} running `{command}` since {now}\n", std::process::id(), host.trim());
        file.set_len(0).at(path, "writing lock holder")?;
        file.seek(SeekFrom::Start(0)).at(path, "writing lock holder")?;
        // The holder record is for people; the lock itself is the flock, so no fsync is needed.
        file.write_all(record.as_bytes()).at(path, "writing lock holder")?;
        Ok(WorkspaceLock { file, path: path.to_path_buf() })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether `file` is still the file at `path` (same device and inode).
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

impl Drop for WorkspaceLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let now: Time = "2026-01-01T00:00:00Z".parse().unwrap();
        let first = WorkspaceLock::acquire(&path, "manifest", now).unwrap();
        let err = WorkspaceLock::acquire(&path, "audit", now).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        assert!(text.contains("`manifest`"), "{text}");
        assert_eq!(err.kind(), crate::ErrorKind::Locked);
        drop(first);
        assert!(WorkspaceLock::acquire(&path, "audit", now).is_ok());
    }
}
