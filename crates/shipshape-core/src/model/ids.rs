//! Identifiers every schema shares: release ids and release types.

use std::fmt;

use crate::infra::clock::Time;

use serde::{Deserialize, Deserializer, Serialize};

/// How big a change a release is; the approval policy (a later step) asks more of bigger ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseType {
    /// A large change.
    Major,
    /// The usual release.
    Minor,
    /// An urgent fix.
    Hotfix,
}

impl fmt::Display for ReleaseType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReleaseType::Major => "major",
            ReleaseType::Minor => "minor",
            ReleaseType::Hotfix => "hotfix",
        })
    }
}

/// `release_YYYYMMDD_HHMMSS`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ReleaseId(String);

impl ReleaseId {
    /// Validate a release id.
    pub fn new(s: &str) -> std::result::Result<Self, String> {
        let digits = |part: &str| part.len() == 8 || part.len() == 6;
        let ok = s.strip_prefix("release_").and_then(|rest| rest.split_once('_')).is_some_and(|(date, time)| {
            date.len() == 8
                && time.len() == 6
                && digits(date)
                && (date.bytes().chain(time.bytes())).all(|b| b.is_ascii_digit())
        });
        if ok {
            Ok(ReleaseId(s.to_owned()))
        } else {
            Err(format!("`{s}` is not a release id (release_YYYYMMDD_HHMMSS)"))
        }
    }

    /// From a time, in its display offset.
    pub fn at(time: &Time) -> Self {
        ReleaseId(format!("release_{}", time.compact()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The next id after this one (one second later).
    pub(crate) fn successor(&self) -> ReleaseId {
        let stamp = &self.0["release_".len()..];
        let next = jiff::civil::DateTime::strptime("%Y%m%d_%H%M%S", stamp)
            .ok()
            .and_then(|dt| dt.checked_add(jiff::SignedDuration::from_secs(1)).ok())
            .map(|dt| dt.strftime("%Y%m%d_%H%M%S").to_string());
        ReleaseId(format!("release_{}", next.unwrap_or_else(|| stamp.to_string())))
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<'de> Deserialize<'de> for ReleaseId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        ReleaseId::new(&s).map_err(serde::de::Error::custom)
    }
}
