//! `wdeploy.toml`: per-app settings that travel with the source (optional file).
//!
//! ```toml
//! [web]
//! isolation = "request"   # "dyno" (default): warm instances reused across requests
//! timeout = 30            # seconds a request may take
//! max_requests = 10000    # requests per warm instance before it is recycled (0: never)
//! placement = "every-node" # in a cluster: web=N on every node; "spread" (default): N in all
//! idle_after = "15m"      # release the instances after this long without a request
//!                         # ("never", or unset: the host's `--idle-after`, by default never)
//! force_https = true      # plain HTTP requests are redirected to HTTPS (when the host
//!                         # has an HTTPS listener)
//! error_page = "https://pages.example.com/error.html"  # shown (framed) for the errors
//!                         # the router answers itself: H10, H12, H13, H14…
//! maintenance_page = "https://pages.example.com/maintenance.html"  # in maintenance mode
//!
//! [limits]
//! memory_mb = 512         # per instance
//! disk_mb = 512           # ephemeral filesystem per dyno (a host sets a ceiling)
//! addons_mb = 100         # the app's add-on data (keys, values, jobs); a host may cap it
//!
//! [egress]
//! allow = ["api.stripe.com", "*.example.org:443"]  # outgoing HTTP only to these (see
//!                         # `crate::egress`); no section: unrestricted
//! ```

use crate::egress::EgressSettings;
use crate::idle::IdleAfter;
use crate::page_url::{CustomPage, PageUrl};
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

/// Where an app's web dynos run in a cluster of hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// `web=N` dynos in all, spread over the nodes (what the count means on Heroku).
    #[default]
    Spread,
    /// `web=N` dynos on every node, close to every user (the edge mode).
    EveryNode,
}

/// Longest `web.timeout`: an hour (a deadline must be a time the host can compute; a
/// request that needs longer belongs in a worker).
pub const MAX_TIMEOUT_SECS: u64 = 3600;

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
    /// In a cluster: spread `web=N` over the nodes, or run it on every node.
    pub placement: Placement,
    /// How long web dynos stay warm without a request before they release their
    /// instances (`ps` shows them `idle`; the next request wakes one). Unset: the host's
    /// default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_after: Option<IdleAfter>,
    /// Plain HTTP requests get a redirect to the same URL over HTTPS (Heroku's
    /// "force SSL"), where the host has an HTTPS listener.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force_https: bool,
    /// The app's page for the errors the router answers itself (`crate::page_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_page: Option<PageUrl>,
    /// The app's page for maintenance mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance_page: Option<PageUrl>,
}

impl WebSettings {
    /// The app's own page of this kind, if it has one.
    pub fn page(&self, which: CustomPage) -> Option<&PageUrl> {
        match which {
            CustomPage::Error => self.error_page.as_ref(),
            CustomPage::Maintenance => self.maintenance_page.as_ref(),
        }
    }
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            isolation: Isolation::Dyno,
            timeout: 30,
            max_requests: DEFAULT_MAX_REQUESTS,
            placement: Placement::Spread,
            idle_after: None,
            force_https: false,
            error_page: None,
            maintenance_page: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Linear memory quota per component instance, in MiB.
    pub memory_mb: u64,
    /// Ephemeral filesystem quota per dyno, in MiB: what its files (and directory entries)
    /// may take on the host's disk. A host refuses a release asking for more than its own
    /// ceiling (`wdeploy host --max-disk-mb`).
    pub disk_mb: u64,
    /// Add-on storage quota of the app (keys, values and job payloads), in MiB. A host
    /// caps it (`wdeploy host --max-addons-mb`).
    pub addons_mb: u64,
}

/// Ephemeral disk per dyno unless `limits.disk_mb` says.
pub const DEFAULT_DISK_MB: u64 = 512;

/// Largest `limits.disk_mb` a `wdeploy.toml` may name (1 TiB); a host's ceiling is lower.
pub const MAX_DISK_MB: u64 = 1 << 20;

/// `limits.addons_mb` unless the app says: 100 MB holds about 100,000 values of 1 KB,
/// plenty for the counters, sessions and job queues a key-value add-on is for (Heroku's
/// smallest Key-Value Store plan holds 25 MB), while 50 apps filling theirs still fit
/// on a small node's disk.
pub const DEFAULT_ADDONS_MB: u64 = 100;
/// Largest `limits.addons_mb` a `wdeploy.toml` may ask for (1 TiB); a host's ceiling is
/// usually far lower.
pub const MAX_ADDONS_MB: u64 = 1 << 20;

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            memory_mb: 512,
            disk_mb: DEFAULT_DISK_MB,
            addons_mb: DEFAULT_ADDONS_MB,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppSettings {
    pub web: WebSettings,
    pub limits: LimitSettings,
    /// Where the app's outgoing HTTP may go (`[egress] allow`).
    #[serde(skip_serializing_if = "is_unrestricted")]
    pub egress: EgressSettings,
}

fn is_unrestricted(egress: &EgressSettings) -> bool {
    egress.allow.is_none()
}

pub const SETTINGS_FILE: &str = "wdeploy.toml";

/// A `wdeploy.toml` (or a buildpack's defaults) that does not parse or breaks a rule;
/// the message names the file and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// Settings a buildpack declares for what it built, in the same form as `wdeploy.toml`,
/// written by `bin/compile` at the top of the build directory. The JavaScript toolchain's
/// components, for one, cannot serve a second request from the same instance, so its
/// buildpack declares `[web] isolation = "request"`. The app's own file wins key by key.
pub const BUILDPACK_DEFAULTS_FILE: &str = "wdeploy.defaults.toml";

/// `app` (the app's `wdeploy.toml` text) laid over `defaults` (a buildpack's), key by key
/// within each table, as `wdeploy.toml` text.
pub fn with_defaults(defaults: &str, app: &str) -> Result<String, SettingsError> {
    if defaults.trim().is_empty() {
        return Ok(app.to_string());
    }
    let mut merged: toml::Table = toml::from_str(defaults).map_err(|e| {
        SettingsError(format!(
            "{BUILDPACK_DEFAULTS_FILE} (written by the buildpack): {e}"
        ))
    })?;
    let app: toml::Table =
        toml::from_str(app).map_err(|e| SettingsError(format!("{SETTINGS_FILE}: {e}")))?;
    for (key, value) in app {
        match (merged.get_mut(&key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(over)) => base.extend(over),
            (_, value) => {
                merged.insert(key, value);
            }
        }
    }
    toml::to_string(&merged).map_err(|e| SettingsError(format!("{SETTINGS_FILE}: {e}")))
}

impl AppSettings {
    pub fn parse(text: &str) -> Result<AppSettings, SettingsError> {
        let settings: AppSettings =
            toml::from_str(text).map_err(|e| SettingsError(format!("{SETTINGS_FILE}: {e}")))?;
        if !(1..=MAX_TIMEOUT_SECS).contains(&settings.web.timeout) {
            return Err(SettingsError(format!(
                "{SETTINGS_FILE}: web.timeout must be between 1 and {MAX_TIMEOUT_SECS} seconds"
            )));
        }
        if !(1..=65536).contains(&settings.limits.memory_mb) {
            return Err(SettingsError(format!(
                "{SETTINGS_FILE}: limits.memory_mb must be between 1 and 65536"
            )));
        }
        if !(1..=MAX_DISK_MB).contains(&settings.limits.disk_mb) {
            return Err(SettingsError(format!(
                "{SETTINGS_FILE}: limits.disk_mb must be between 1 and {MAX_DISK_MB}"
            )));
        }
        if !(1..=MAX_ADDONS_MB).contains(&settings.limits.addons_mb) {
            return Err(SettingsError(format!(
                "{SETTINGS_FILE}: limits.addons_mb must be between 1 and {MAX_ADDONS_MB}"
            )));
        }
        Ok(settings)
    }

    /// The app's add-on storage quota in bytes: what it asks for, but never more than a
    /// host's `ceiling_mb`.
    pub fn addons_quota_bytes(&self, ceiling_mb: Option<u64>) -> u64 {
        let mb = match ceiling_mb {
            Some(ceiling) => self.limits.addons_mb.min(ceiling),
            None => self.limits.addons_mb,
        };
        mb << 20
    }

    /// The per-instance memory quota in bytes.
    pub fn memory_limit_bytes(&self) -> usize {
        (self.limits.memory_mb as usize) << 20
    }

    /// The per-dyno ephemeral disk quota in bytes.
    pub fn disk_limit_bytes(&self) -> u64 {
        self.limits.disk_mb << 20
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
        let edge = AppSettings::parse("[web]\nplacement = \"every-node\"\n").unwrap();
        assert_eq!(edge.web.placement, Placement::EveryNode);
        assert!(AppSettings::parse("[web]\nplacement = \"everywhere\"\n").is_err());
        assert!(AppSettings::parse("[web]\nisolaton = \"request\"\n").is_err());
        for timeout in ["0", "3601", "9223372036854775807"] {
            let err = AppSettings::parse(&format!("[web]\ntimeout = {timeout}\n")).unwrap_err();
            assert!(err.to_string().contains("between 1 and 3600"), "{err}");
        }
    }

    #[test]
    fn an_app_may_give_its_own_error_and_maintenance_pages() {
        let s = AppSettings::parse(
            "[web]\nerror_page = \"https://pages.example.com/e.html\"\n\
             maintenance_page = \"https://pages.example.com/m.html\"\n",
        )
        .unwrap();
        let page = |which| s.web.page(which).map(PageUrl::as_str);
        assert_eq!(
            page(CustomPage::Error),
            Some("https://pages.example.com/e.html")
        );
        assert_eq!(
            page(CustomPage::Maintenance),
            Some("https://pages.example.com/m.html")
        );
        assert_eq!(AppSettings::default().web.page(CustomPage::Error), None);
        let err = AppSettings::parse("[web]\nerror_page = \"http://pages.example.com/\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wdeploy.toml") && err.contains("only https"),
            "{err}"
        );
    }

    #[test]
    fn disk_quota_defaults_to_512_mib_and_is_bounded() {
        let s = AppSettings::parse("").unwrap();
        assert_eq!(s.limits.disk_mb, 512);
        assert_eq!(s.disk_limit_bytes(), 512 << 20);
        let s = AppSettings::parse("[limits]\ndisk_mb = 8\n").unwrap();
        assert_eq!(s.disk_limit_bytes(), 8 << 20);
        for bad in ["0", "1048577", "-1"] {
            let err = AppSettings::parse(&format!("[limits]\ndisk_mb = {bad}\n")).unwrap_err();
            assert!(err.to_string().contains("disk_mb"), "{err}");
        }
    }

    #[test]
    fn the_addons_quota_is_the_apps_within_the_hosts_ceiling() {
        let default = AppSettings::parse("").unwrap();
        assert_eq!(default.addons_quota_bytes(None), DEFAULT_ADDONS_MB << 20);
        let big = AppSettings::parse("[limits]\naddons_mb = 5000\n").unwrap();
        assert_eq!(big.addons_quota_bytes(Some(1024)), 1024 << 20);
        let small = AppSettings::parse("[limits]\naddons_mb = 5\n").unwrap();
        assert_eq!(small.addons_quota_bytes(Some(1024)), 5 << 20);
        for bad in ["0", "1048577", "-1"] {
            let err = AppSettings::parse(&format!("[limits]\naddons_mb = {bad}\n")).unwrap_err();
            assert!(err.to_string().contains("addons_mb"), "{err}");
        }
    }

    #[test]
    fn buildpack_defaults_yield_to_the_app_key_by_key() {
        let defaults = "[web]\nisolation = \"request\"\ntimeout = 10\n";
        let merged = with_defaults(defaults, "[web]\ntimeout = 5\n").unwrap();
        let s = AppSettings::parse(&merged).unwrap();
        assert_eq!((s.web.isolation, s.web.timeout), (Isolation::Request, 5));
        let merged = with_defaults(defaults, "[web]\nisolation = \"dyno\"\n").unwrap();
        assert_eq!(
            AppSettings::parse(&merged).unwrap().web.isolation,
            Isolation::Dyno
        );
        assert_eq!(with_defaults("", "[web]\n").unwrap(), "[web]\n");
    }

    #[test]
    fn an_egress_allow_list_is_parsed_and_checked_at_push() {
        assert_eq!(AppSettings::parse("").unwrap().egress.allow, None);
        let s =
            AppSettings::parse("[egress]\nallow = [\"api.stripe.com\", \"*.example.org:443\"]\n")
                .unwrap();
        let allow = s.egress.allow.expect("a list");
        assert!(allow.allows("api.stripe.com", 443));
        assert!(!allow.allows("example.org", 443));
        let err =
            AppSettings::parse("[egress]\nallow = [\"https://api.stripe.com\"]\n").unwrap_err();
        assert!(
            err.to_string().starts_with("wdeploy.toml: ")
                && err.to_string().contains("api.stripe.com:443"),
            "{err}"
        );
        // A buildpack's list yields to the app's as a whole (the key is replaced).
        let merged = with_defaults(
            "[egress]\nallow = [\"a.com\"]\n",
            "[egress]\nallow = [\"b.com\"]\n",
        )
        .unwrap();
        let allow = AppSettings::parse(&merged).unwrap().egress.allow.unwrap();
        assert!(allow.allows("b.com", 443) && !allow.allows("a.com", 443));
    }
}
