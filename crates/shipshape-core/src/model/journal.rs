//! The deploy journal, `release/journal/<txid>.jsonl`: one JSON record a line — the plan (both
//! releases' full file lists), then each phase, then how the transaction ended — and the target's
//! state file (`<target>/.shipshape/state.yaml`, or one per release directory in symlink mode).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::DeployMode;
use crate::infra::clock::Time;
use crate::infra::hash::Digest;
use crate::infra::paths::RelPath;
use crate::infra::store::Stamp;
use crate::model::ids::ReleaseId;

/// `deploy` or `rollback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A new release.
    Deploy,
    /// Back to an earlier one.
    Rollback,
}

impl Kind {
    /// The word for it, as the journal and the history write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deploy => "deploy",
            Kind::Rollback => "rollback",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One release's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseFiles {
    /// The release.
    pub release_id: ReleaseId,
    /// Its manifest, relative to the workspace.
    pub manifest: RelPath,
    /// path → (hash, size).
    pub files: BTreeMap<RelPath, (Digest, u64)>,
    /// The release its manifest names as previous (its rollback plan's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<ReleaseId>,
}

/// One file the plan changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The path.
    pub path: RelPath,
    /// What the target holds now (`None`: absent).
    pub old: Option<Digest>,
    /// What it will hold (`None`: removed).
    pub new: Option<Digest>,
    /// Bytes to write.
    pub size: u64,
}

/// A planned transition, as the journal's first record holds it.
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
    /// Who started the transaction (recorded in the history).
    pub by: String,
    /// Why (rollbacks).
    pub reason: Option<String>,
    /// The environment.
    pub environment: String,
    /// Heightened monitoring hours to register.
    pub heightened_hours: u32,
}

/// A step of a transaction. `Committed` is the commit point: recovery rolls back before it and
/// forward after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The manifest and its objects were verified.
    Verified,
    /// Every changed file is staged beside its destination (or the release directory is built).
    Staged,
    /// Renames into place have begun.
    Switching,
    /// Every file is in place (or `current` points at the release).
    Switched,
    /// The post-deploy checks passed.
    Checked,
    /// The commit point.
    Committed,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 6] =
        [Phase::Verified, Phase::Staged, Phase::Switching, Phase::Switched, Phase::Checked, Phase::Committed];

    /// The name the journal writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Verified => "verified",
            Phase::Staged => "staged",
            Phase::Switching => "switching",
            Phase::Switched => "switched",
            Phase::Checked => "checked",
            Phase::Committed => "committed",
        }
    }
}

/// How a transaction ended, as its last journal record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The new release is active.
    Committed,
    /// A post-deploy check failed; the previous release was restored.
    RolledBack,
    /// An error; the previous release was restored.
    Failed,
    /// Recovery finished it (it had passed the commit point).
    RecoveredForward,
    /// Recovery undid it.
    RecoveredBack,
}

/// One line of a journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// The first record: what the transaction will do.
    Plan {
        /// The plan.
        plan: Box<Plan>,
        /// When it was made.
        at: Time,
    },
    /// A phase reached.
    Phase {
        /// The phase reached.
        phase: Phase,
        /// When it was reached.
        at: Time,
    },
    /// The last record.
    Outcome {
        /// How it ended.
        outcome: Ending,
        /// Why, when it did not commit.
        reason: Option<String>,
        /// When the transaction ended.
        at: Time,
    },
}

/// What is known of a file that was written: enough to see later, without re-hashing, that it is
/// untouched (the way git's index does).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStat {
    /// Content hash when written.
    pub hash: Digest,
    /// Size in bytes when written.
    pub size: u64,
    /// Modification time (ns).
    pub mtime_ns: i64,
    /// Change time (ns): any write or metadata change moves it.
    pub ctime_ns: i64,
    /// Inode number: a replaced file has another.
    pub ino: u64,
}

impl FileStat {
    /// The stat of a file holding `hash`, from its stamp.
    pub fn new(stamp: &Stamp, hash: Digest) -> FileStat {
        FileStat { hash, size: stamp.size, mtime_ns: stamp.mtime_ns, ctime_ns: stamp.ctime_ns, ino: stamp.ino }
    }

    /// The same file, same size and mtime; the ctime is compared by the caller.
    pub fn same_but_ctime(&self, stamp: &Stamp) -> bool {
        stamp.size == self.size && stamp.mtime_ns == self.mtime_ns && stamp.ino == self.ino
    }

    /// Untouched since it was recorded.
    pub fn matches(&self, stamp: &Stamp) -> bool {
        self.same_but_ctime(stamp) && stamp.ctime_ns == self.ctime_ns
    }
}

/// What the target holds, as of the last deploy or rollback (per mode: the target, or one release
/// directory). A cache: shipshape rebuilds what it cannot trust.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetState {
    /// The release.
    pub release_id: Option<ReleaseId>,
    /// Its files.
    pub files: BTreeMap<RelPath, FileStat>,
}
