//! `[retention]`: how much of the past shipshape keeps — release directories in a symlink target,
//! finished journals, the history file, raw outcome events. Everything it removes is either
//! rebuildable (a release directory, from the store) or summarised where it is still read (the
//! history's archive and lifecycle snapshot, the events' minute and hour aggregates).

use serde::{Deserialize, Serialize};

use crate::config::{PositiveDuration, PositiveInt};
use crate::infra::clock::Duration;

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Symlink mode: release directories kept under `<target>/.shipshape/releases/`, the most
    /// recently active first. The active and the last known good release are never removed, even
    /// beyond this count. Applied after every deploy and rollback, and by `shipshape gc`.
    pub keep_releases: PositiveInt,
    /// Finished journals kept in `release/journal/done/` (the history records every transaction).
    pub keep_journals: PositiveInt,
    /// `history.yaml` keeps the entries of this long …
    pub history: PositiveDuration,
    /// … and at least this many; older entries move to `history-archive/` (read by `history --all`),
    /// and what they decided (each release's status) is kept in a snapshot.
    pub history_entries: PositiveInt,
    /// Raw outcome events older than this are deleted by `shipshape gc`; the minute and hour
    /// aggregates that windows, charts and replay read are kept. Default: the longest monitoring
    /// window or baseline window (no evaluation can read further back).
    pub raw_events: Option<PositiveDuration>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep_releases: PositiveInt(5),
            keep_journals: PositiveInt(100),
            history: PositiveDuration(Duration::hours(90 * 24)),
            history_entries: PositiveInt(1000),
            raw_events: None,
        }
    }
}
