//! Who wrote a log line.

use std::fmt;
use std::str::FromStr;

/// The source of a line of the log stream: `app[web.1]` (a dyno's own output),
/// `wdeploy[router]` (one line per request) or `wdeploy[web.1]` (the platform speaking
/// about a dyno or the app). Written `app`, `router` and `wdeploy` in filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// A dyno's own stdout/stderr.
    App,
    /// The router's one line per request.
    Router,
    /// The platform: state changes, deploys, scaling.
    #[serde(rename = "wdeploy")]
    Platform,
}

impl LogSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::App => "app",
            LogSource::Router => "router",
            LogSource::Platform => "wdeploy",
        }
    }
}

/// A filter word that names no source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log source `{0}` (use app, router or wdeploy)")]
pub struct LogSourceError(pub String);

impl FromStr for LogSource {
    type Err = LogSourceError;
    fn from_str(s: &str) -> Result<LogSource, LogSourceError> {
        match s {
            "app" => Ok(LogSource::App),
            "router" => Ok(LogSource::Router),
            "wdeploy" => Ok(LogSource::Platform),
            _ => Err(LogSourceError(s.to_string())),
        }
    }
}

impl fmt::Display for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for s in [LogSource::App, LogSource::Router, LogSource::Platform] {
            assert_eq!(s.as_str().parse::<LogSource>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("bogus".parse::<LogSource>().is_err());
    }
}
