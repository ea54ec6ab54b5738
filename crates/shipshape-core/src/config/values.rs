//! Checked values of `shipshape.toml`: each type refuses an out-of-range value inside
//! deserialization, where the parser still knows the line and column.
use std::fmt;

use serde::de::{self};
use serde::{Deserialize, Deserializer, Serialize};

use crate::infra::clock::Duration;

macro_rules! checked_value {
    ($(#[$doc:meta])* $name:ident($inner:ty), $check:expr, $expect:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let value = <$inner>::deserialize(deserializer)?;
                let check: fn(&$inner) -> bool = $check;
                if check(&value) {
                    Ok($name(value))
                } else {
                    Err(de::Error::custom(format!(concat!("{} is out of range: expected ", $expect), value)))
                }
            }
        }
    };
}

checked_value!(
    /// A number strictly between 0 and 1 (a relative threshold).
    Fraction(f64), |v| v.is_finite() && *v > 0.0 && *v < 1.0, "a fraction between 0 and 1 (0.05 = 5 %)"
);
checked_value!(
    /// A finite number greater than 0.
    PositiveFloat(f64), |v| v.is_finite() && *v > 0.0, "a number greater than 0"
);
checked_value!(
    /// A finite number of at least 1.
    AtLeastOne(f64), |v| v.is_finite() && *v >= 1.0, "a number of at least 1"
);
checked_value!(
    /// A whole number greater than 0.
    PositiveInt(u32), |v| *v > 0, "a whole number greater than 0"
);
checked_value!(
    /// A duration greater than zero.
    PositiveDuration(Duration), |v| v.seconds() > 0, "a duration greater than zero"
);

/// A name of lowercase letters, digits, `-` and `_` (environments, artifact kinds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Slug(pub String);

pub(crate) fn check_slug(s: &str) -> std::result::Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err("use 1 to 64 lowercase letters, digits, `-` or `_`".into()) }
}

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        check_slug(&s).map_err(|reason| de::Error::custom(format!("`{s}`: {reason}")))?;
        Ok(Slug(s))
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
