//! Durations in the configuration: a number is milliseconds (`50`, or `"50"` from
//! the environment); otherwise a unit is needed (`"50ms"`, `"5s"`, `"2m"`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Millis(u64),
    Text(String),
}

/// Parses a duration string: a bare number is milliseconds, otherwise a number
/// with a unit (`ms`, `s`, `m`, `h`, ...).
pub(super) fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(s).map_err(|_| {
        format!("invalid duration {s:?}: expected a number with a unit, like \"50ms\" or \"5s\"")
    })
}

/// Serde entry point (`#[serde(with = "duration")]`).
pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Raw::deserialize(d).map_err(|_| {
        serde::de::Error::custom(
            "expected a duration: milliseconds, or a string like \"50ms\" or \"5s\"",
        )
    })? {
        Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
        Raw::Text(s) => parse(&s).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("5"), Ok(Duration::from_millis(5)));
        assert!(parse("fast").is_err());
    }
}
