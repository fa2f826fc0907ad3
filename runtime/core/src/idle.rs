//! `[web] idle_after`: how long a web dyno stays warm without a request before it
//! releases its instances (Heroku's Eco dynos "sleep"), written as in `wdeploy.toml`:
//! `"15m"`, `"90s"`, `"2h"`, `"1d"`, or `"never"`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Whether (and after how long without a request) web dynos go idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleAfter {
    /// Stay warm whatever the host's default says.
    Never,
    /// Go idle after this long without a request.
    After(Duration),
}

/// Shortest `idle_after`: a dyno that sleeps between every two requests would only pay
/// for waking.
pub const MIN_IDLE_AFTER: Duration = Duration::from_secs(1);

impl IdleAfter {
    /// The time after which to sleep, if any.
    pub fn duration(self) -> Option<Duration> {
        match self {
            IdleAfter::Never => None,
            IdleAfter::After(d) => Some(d),
        }
    }
}

impl FromStr for IdleAfter {
    type Err = String;

    fn from_str(text: &str) -> Result<IdleAfter, String> {
        let text = text.trim();
        if text == "never" {
            return Ok(IdleAfter::Never);
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit_secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => {
                return Err(format!(
                    "idle_after `{text}` is not a duration: write a number with s, m, h or d (\"15m\"), or \"never\""
                ));
            }
        };
        let secs = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_secs))
            .filter(|&s| s <= 365 * 86_400)
            .ok_or_else(|| format!("idle_after `{text}` is not a duration of at most a year"))?;
        let after = Duration::from_secs(secs);
        if after < MIN_IDLE_AFTER {
            return Err(format!("idle_after `{text}` is shorter than 1s"));
        }
        Ok(IdleAfter::After(after))
    }
}

impl fmt::Display for IdleAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = match self {
            IdleAfter::Never => return f.write_str("never"),
            IdleAfter::After(d) => d.as_secs(),
        };
        match secs {
            s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl Serialize for IdleAfter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IdleAfter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IdleAfter, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for (text, secs) in [("15m", 900), ("90s", 90), ("2h", 7200), ("1d", 86_400)] {
            let idle: IdleAfter = text.parse().expect(text);
            assert_eq!(idle, IdleAfter::After(Duration::from_secs(secs)));
            assert_eq!(idle.to_string(), text);
        }
        assert_eq!("never".parse(), Ok(IdleAfter::Never));
        assert_eq!(IdleAfter::Never.to_string(), "never");
    }

    #[test]
    fn nonsense_is_refused_with_the_way_to_write_it() {
        for text in [
            "15",
            "15 minutes",
            "m",
            "0s",
            "-1m",
            "99999999999999999999d",
            "400d",
        ] {
            let err = text.parse::<IdleAfter>().expect_err(text);
            assert!(err.contains("idle_after"), "{text}: {err}");
        }
    }
}
