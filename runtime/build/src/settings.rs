//! `wdeploy.toml`: per-app settings that travel with the source (optional file).
//!
//! ```toml
//! [web]
//! isolation = "request"   # "dyno" (default): warm instances reused across requests
//! timeout = 30            # seconds a request may take
//! max_requests = 10000    # requests per warm instance before it is recycled (0: never)
//!
//! [limits]
//! memory_mb = 512         # per instance
//! ```

use serde::{Deserialize, Serialize};

/// How a web dyno maps requests onto component instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Warm instances reused across requests, like a long-lived process.
    #[default]
    Dyno,
    /// A fresh instance for every request.
    Request,
}

/// Requests per warm instance before it is recycled, unless `web.max_requests` says.
pub const DEFAULT_MAX_REQUESTS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    pub isolation: Isolation,
    /// Seconds before the router gives up on a request.
    pub timeout: u64,
    /// Requests a warm instance serves before it is replaced by a fresh one, so a guest
    /// that leaks memory or handles is reset now and then (0: never). Like gunicorn's
    /// `max_requests`; measured in BENCHMARKS.md to cost nothing visible at this value.
    pub max_requests: u64,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            isolation: Isolation::Dyno,
            timeout: 30,
            max_requests: DEFAULT_MAX_REQUESTS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Linear memory quota per component instance, in MiB.
    pub memory_mb: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings { memory_mb: 512 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppSettings {
    pub web: WebSettings,
    pub limits: LimitSettings,
}

pub const SETTINGS_FILE: &str = "wdeploy.toml";

impl AppSettings {
    pub fn parse(text: &str) -> anyhow::Result<AppSettings> {
        let settings: AppSettings =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{SETTINGS_FILE}: {e}"))?;
        anyhow::ensure!(
            settings.web.timeout > 0,
            "{SETTINGS_FILE}: web.timeout must be at least 1 second"
        );
        anyhow::ensure!(
            (1..=65536).contains(&settings.limits.memory_mb),
            "{SETTINGS_FILE}: limits.memory_mb must be between 1 and 65536"
        );
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(AppSettings::parse("").unwrap(), AppSettings::default());
        let s = AppSettings::parse("[web]\nisolation = \"request\"\n").unwrap();
        assert_eq!(s.web.isolation, Isolation::Request);
        assert_eq!(s.web.timeout, 30);
        assert!(AppSettings::parse("[web]\nisolation = \"bogus\"\n").is_err());
        assert!(AppSettings::parse("[web]\nisolaton = \"request\"\n").is_err());
    }
}
