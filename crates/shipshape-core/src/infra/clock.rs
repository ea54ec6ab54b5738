//! Time: an injectable clock, RFC 3339 timestamps that keep their UTC offset, and durations.
//!
//! Every command takes "now" from a [`Clock`], never from the system directly, so 48 hours or 90 days
//! run in milliseconds in tests and drills. `SHIPSHAPE_NOW` (RFC 3339) pins the CLI's clock.
//! Timestamps are written with the offset they were made in (`2025-10-12T19:00:00+05:30`), as the
//! story's manifests are, and compare by the instant they denote.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant with the UTC offset it is displayed in.
#[derive(Clone, Copy)]
pub struct Time {
    instant: Timestamp,
    offset: Offset,
}

impl Time {
    /// `instant` shown at `offset`.
    pub fn new(instant: Timestamp, offset: Offset) -> Self {
        Time { instant, offset }
    }

    /// The instant.
    pub fn instant(&self) -> Timestamp {
        self.instant
    }

    /// The display offset.
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// This instant plus a duration, kept at the same offset.
    pub fn plus(&self, duration: SignedDuration) -> Time {
        Time { instant: self.instant.saturating_add(duration).unwrap_or(self.instant), offset: self.offset }
    }

    /// `self - earlier`.
    pub fn since(&self, earlier: &Time) -> SignedDuration {
        self.instant.duration_since(earlier.instant)
    }

    /// `YYYYMMDD_HHMMSS` in the display offset, for release and bundle names.
    pub fn compact(&self) -> String {
        self.instant.to_zoned_datetime(TimeZone::fixed(self.offset)).strftime("%Y%m%d_%H%M%S").to_string()
    }

    /// Unix seconds.
    pub fn unix_seconds(&self) -> i64 {
        self.instant.as_second()
    }
}

impl PartialEq for Time {
    fn eq(&self, other: &Self) -> bool {
        self.instant == other.instant
    }
}
impl Eq for Time {}
impl PartialOrd for Time {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Time {
    fn cmp(&self, other: &Self) -> Ordering {
        self.instant.cmp(&other.instant)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let zoned = self.instant.to_zoned_datetime(TimeZone::fixed(self.offset));
        if self.offset == Offset::UTC {
            write!(f, "{}", zoned.strftime("%Y-%m-%dT%H:%M:%SZ"))
        } else {
            write!(f, "{}", zoned.strftime("%Y-%m-%dT%H:%M:%S%:z"))
        }
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not an RFC 3339 timestamp.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{text}` is not an RFC 3339 timestamp with an offset (e.g. 2025-10-12T19:00:00+05:30): {reason}")]
pub struct TimeParseError {
    text: String,
    reason: String,
}

impl FromStr for Time {
    type Err = TimeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| TimeParseError { text: s.chars().take(60).collect(), reason };
        let instant: Timestamp = s.parse().map_err(|e: jiff::Error| err(e.to_string()))?;
        let offset = parse_offset_suffix(s).ok_or_else(|| err("no UTC offset at the end".into()))?;
        Ok(Time { instant, offset })
    }
}

fn parse_offset_suffix(s: &str) -> Option<Offset> {
    if s.ends_with('Z') || s.ends_with('z') {
        return Some(Offset::UTC);
    }
    let tail = s.get(s.len().checked_sub(6)?..)?;
    let sign = match tail.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours: i32 = tail.get(1..3)?.parse().ok()?;
    let minutes: i32 = tail.get(4..6)?.parse().ok()?;
    if tail.as_bytes()[3] != b':' {
        return None;
    }
    Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Time;
}

/// The system clock, shown in the system's local offset.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time {
        let instant = Timestamp::now();
        let offset = system_zone().to_offset(instant);
        Time { instant, offset }
    }
}

/// The system's time zone, looked up once. Without `TZ`, `/etc/localtime` is read as the TZif file
/// it is: `TimeZone::system()` would first list the whole zoneinfo database to name the zone, a
/// millisecond or two that every command paid at start, for a name shipshape never shows.
pub fn system_zone() -> &'static TimeZone {
    static ZONE: std::sync::OnceLock<TimeZone> = std::sync::OnceLock::new();
    ZONE.get_or_init(|| {
        if std::env::var_os("TZ").is_none()
            && let Ok(bytes) = std::fs::read("/etc/localtime")
            && let Ok(zone) = TimeZone::tzif("localtime", &bytes)
        {
            return zone;
        }
        TimeZone::system()
    })
}

/// A clock pinned to one instant (tests, drills, `SHIPSHAPE_NOW`).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Time);

impl Clock for FixedClock {
    fn now(&self) -> Time {
        self.0
    }
}

/// The system clock shifted by a fixed amount: time flows, from another starting point (the demo
/// serves its simulated hours live).
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock(pub SignedDuration);

impl Clock for OffsetClock {
    fn now(&self) -> Time {
        SystemClock.now().plus(self.0)
    }
}

/// The environment variable that pins the CLI's clock.
pub const NOW_ENV: &str = "SHIPSHAPE_NOW";

/// The clock for a command: pinned by `SHIPSHAPE_NOW` when set, the system clock otherwise.
pub fn clock_from_env() -> Result<Box<dyn Clock>, TimeParseError> {
    match std::env::var(NOW_ENV) {
        Ok(text) if !text.trim().is_empty() => Ok(Box::new(FixedClock(text.trim().parse()?))),
        _ => Ok(Box::new(SystemClock)),
    }
}

/// A duration written as a person would: `90s`, `10m`, `6h`, `7d`, `1h30m`, `2w`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub SignedDuration);

impl Duration {
    /// From whole hours.
    pub fn hours(hours: i64) -> Self {
        Duration(SignedDuration::from_hours(hours))
    }

    /// From whole seconds.
    pub fn from_secs(seconds: i64) -> Self {
        Duration(SignedDuration::from_secs(seconds))
    }

    /// Whole seconds.
    pub fn seconds(&self) -> i64 {
        self.0.as_secs()
    }

    /// Hours, possibly fractional.
    pub fn as_hours_f64(&self) -> f64 {
        self.0.as_secs_f64() / 3600.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_secs();
        if rest == 0 {
            return f.write_str("0s");
        }
        if rest < 0 {
            f.write_str("-")?;
            rest = -rest;
        }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a duration.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not a duration: write a number and a unit (s, m, h, d, w), e.g. `10m`, `6h`, `90d`, `1h30m`")]
pub struct DurationParseError(String);

impl FromStr for Duration {
    type Err = DurationParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationParseError(s.chars().take(40).collect());
        let text = s.trim();
        if text.is_empty() {
            return Err(err());
        }
        let mut total: i64 = 0;
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit: i64 = match c {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return Err(err()),
            };
            let value: i64 = digits.parse().map_err(|_| err())?;
            total = value.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(err)?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(err());
        }
        Ok(Duration(SignedDuration::from_secs(total)))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// "1d 3h", "2h 5m", "42s": how long, for people.
pub fn humanize(duration: SignedDuration) -> String {
    let seconds = duration.as_secs().abs();
    let (days, hours, minutes) = (seconds / 86_400, seconds % 86_400 / 3_600, seconds % 3_600 / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keeps_its_offset() {
        let t: Time = "2025-10-12T19:00:00+05:30".parse().unwrap();
        assert_eq!(t.to_string(), "2025-10-12T19:00:00+05:30");
        assert_eq!(t.compact(), "20251012_190000");
        let u: Time = "2025-10-12T13:30:00Z".parse().unwrap();
        assert_eq!(t, u);
        assert_eq!(u.to_string(), "2025-10-12T13:30:00Z");
        assert_eq!(t.plus(SignedDuration::from_hours(48)).to_string(), "2025-10-14T19:00:00+05:30");
    }

    #[test]
    fn time_refuses_missing_offset_and_garbage() {
        for bad in ["2025-10-12T19:00:00", "2025-13-12T19:00:00Z", "yesterday", ""] {
            assert!(bad.parse::<Time>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!("10m".parse::<Duration>().unwrap().seconds(), 600);
        assert_eq!("1h30m".parse::<Duration>().unwrap().seconds(), 5400);
        assert_eq!("90d".parse::<Duration>().unwrap().to_string(), "90d");
        assert_eq!("7d".parse::<Duration>().unwrap(), Duration::hours(168));
        for bad in ["", "10", "h", "10x", "-5m", "1.5h", "99999999999999999999d"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn humanize_reads_like_the_story() {
        assert_eq!(humanize(SignedDuration::from_secs(27 * 3600 + 60)), "1d 3h");
        assert_eq!(humanize(SignedDuration::from_secs(3 * 3600 + 5 * 60)), "3h 5m");
        assert_eq!(humanize(SignedDuration::from_secs(42)), "42s");
    }
}
