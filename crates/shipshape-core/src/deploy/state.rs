//! The target's stat caches ([`TargetState`]): read, written, and used to tell without re-hashing
//! that a file is what shipshape last wrote there.

use std::fs;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::infra::atomic::create_dir_all_durable;
use crate::infra::hash::{Digest, NoProgress, hash_file};
use crate::infra::store::Stamp;
use crate::model::journal::{FileStat, TargetState};

/// The stamp of a regular file; `None` for anything else (a directory, a symlink, a device).
pub(crate) fn file_stamp(meta: &fs::Metadata) -> Option<Stamp> {
    meta.is_file().then(|| Stamp::from_meta(meta))
}

/// The stamp of a regular file from a stat(2) result.
pub(crate) fn stat_stamp(stat: &rustix::fs::Stat) -> Option<Stamp> {
    (rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile)
        .then(|| Stamp::from_stat(stat))
        .flatten()
}

/// The stat of the file at `path`, which holds `hash`.
pub(crate) fn stat_of(path: &Path, hash: Digest) -> Result<FileStat> {
    let meta = fs::metadata(path).at(path, "reading metadata")?;
    Ok(FileStat::new(&Stamp::from_meta(&meta), hash))
}

/// Whether the file at `path` is still the one `stat` recorded.
pub(crate) fn still_matches(stat: &FileStat, path: &Path) -> bool {
    fs::metadata(path).ok().as_ref().and_then(file_stamp).is_some_and(|stamp| stat.matches(&stamp))
}

/// The stat cache at `path` (empty when there is none).
pub(crate) fn read_state(path: &Path) -> Result<TargetState> {
    if !path.exists() {
        return Ok(TargetState::default());
    }
    crate::infra::yaml::read_cache(path)
}

/// The stat cache: what shipshape last wrote at the target (or in one release directory). Do not edit.
pub(crate) fn write_state(path: &Path, state: &TargetState) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_dir_all_durable(parent)?;
    }
    crate::infra::yaml::write_cache(path, state)
}

/// The hash of the file at `path` now: from the stat cache when the file is untouched, else
/// re-hashed. `None`: no file there.
pub(crate) fn observed(path: &Path, cached: Option<&FileStat>) -> Result<Option<Digest>> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path, "reading metadata"),
        Ok(meta) => meta,
    };
    let Some(stamp) = file_stamp(&meta) else {
        return Ok(Some(Digest([0; 32]))); // not a regular file: never equal to a release's file
    };
    if let Some(stat) = cached.filter(|s| s.matches(&stamp)) {
        return Ok(Some(stat.hash));
    }
    Ok(Some(hash_file(path, &NoProgress)?.0))
}
