//! Durations as DAG files write them: `"30s"`, `"10m"`, `"1h 30m"`, or an integer of seconds.
//!
//! Every duration read from text is at most [`Duration::LIMIT`] (10 years), so that adding one
//! to any date Sluice accepts stays a date chrono can hold.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative span of time, written in humantime syntax in DAG files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// The longest duration a DAG file may give: 10 years (`"10y"`, 3652.5 days, as humantime
    /// counts a year).
    pub const LIMIT: Duration = Duration::from_secs(315_576_000);

    pub const fn from_secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub fn as_std(self) -> std::time::Duration {
        self.0
    }

    /// As a chrono span, saturating at `chrono::Duration::MAX` (which no date can be moved by:
    /// add it with `checked_add_signed`).
    pub fn as_chrono(self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }

    /// `Err` (what to say after the value) when the duration is over [`Duration::LIMIT`].
    fn within_limit(self) -> Result<Duration, &'static str> {
        if self <= Duration::LIMIT {
            Ok(self)
        } else {
            Err("is longer than the limit of 10 years (\"10y\")")
        }
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(Duration)
            .map_err(|e| format!("invalid duration {s:?}: {e} (write e.g. \"30s\", \"10m\", \"1h 30m\")"))?
            .within_limit()
            .map_err(|e| format!("duration {s:?} {e}"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"10m\", \"2h\" or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                let secs = u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))?;
                self.visit_u64(secs)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Duration::from_secs(v).within_limit().map_err(|e| E::custom(format!("duration of {v} seconds {e}")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_humantime_and_seconds() {
        assert_eq!("30s".parse::<Duration>().unwrap(), Duration::from_secs(30));
        assert_eq!("1h 30m".parse::<Duration>().unwrap(), Duration::from_secs(5400));
        let d: Duration = serde_json::from_str("90").unwrap();
        assert_eq!(d, Duration::from_secs(90));
        assert!("soon".parse::<Duration>().unwrap_err().contains("invalid duration"));
        assert!(serde_json::from_str::<Duration>("-1").is_err());
    }

    #[test]
    fn durations_over_ten_years_are_refused() {
        assert_eq!("10y".parse::<Duration>().unwrap(), Duration::LIMIT);
        let e = "3653d".parse::<Duration>().unwrap_err();
        assert!(e.contains("longer than the limit of 10 years"), "{e}");
        assert!(serde_json::from_str::<Duration>("315576001").is_err());
        assert!(serde_json::from_str::<Duration>("315576000").is_ok());
        assert_eq!(Duration(std::time::Duration::MAX).as_chrono(), chrono::Duration::MAX);
    }
}
