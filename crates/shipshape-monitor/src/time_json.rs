//! Times in shipshape's JSON are RFC 3339 strings (here in UTC: `2025-10-13T09:00:00Z`), as in
//! every other output; the monitor keeps unix seconds inside. Use with `#[serde(with = "…")]`.
//! Reading also accepts unix seconds, the form alert states stored by earlier versions use.

use serde::{Deserialize, Deserializer, Serializer};

/// Unix seconds (the monitor's `alert::Seconds`).
type Seconds = i64;

/// `seconds` as RFC 3339 (UTC); the number itself if it is out of range.
pub fn text(seconds: Seconds) -> String {
    jiff::Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Number(Seconds),
    Text(String),
}

impl Raw {
    fn seconds<E: serde::de::Error>(self) -> Result<Seconds, E> {
        match self {
            Raw::Number(n) => Ok(n),
            Raw::Text(t) => t
                .parse::<jiff::Timestamp>()
                .map(|t| t.as_second())
                .map_err(|e| E::custom(format!("`{t}` is not an RFC 3339 time: {e}"))),
        }
    }
}

/// Serialize unix seconds as RFC 3339.
pub fn serialize<S: Serializer>(seconds: &Seconds, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&text(*seconds))
}

/// Read RFC 3339 (or unix seconds).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Seconds, D::Error> {
    Raw::deserialize(deserializer)?.seconds()
}

/// The same for an optional time (`null` when absent).
pub mod option {
    use super::*;

    /// Serialize.
    pub fn serialize<S: Serializer>(seconds: &Option<Seconds>, serializer: S) -> Result<S::Ok, S::Error> {
        match seconds {
            Some(s) => serializer.serialize_some(&text(*s)),
            None => serializer.serialize_none(),
        }
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Seconds>, D::Error> {
        Option::<Raw>::deserialize(deserializer)?.map(Raw::seconds).transpose()
    }
}

/// The same for a `[from, to)` pair, written as a two-element array.
pub mod pair {
    use super::*;

    /// Serialize.
    pub fn serialize<S: Serializer>(window: &(Seconds, Seconds), serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&text(window.0))?;
        tuple.serialize_element(&text(window.1))?;
        tuple.end()
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(Seconds, Seconds), D::Error> {
        let (from, to) = <(Raw, Raw)>::deserialize(deserializer)?;
        Ok((from.seconds()?, to.seconds()?))
    }
}
