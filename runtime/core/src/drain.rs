//! Log drains: where an app's log lines are also sent, as on Heroku. A drain is named by
//! its URL ([`DrainUrl`], checked when it is added) and an id ([`DrainId`], `d.` + a UUID).
//!
//! The URL is the user's data and may carry credentials (`https://user:secret@…`): it is
//! shown whole only to the app's owners through the API; everything the platform writes
//! about a drain (its own log, the app's log lines) uses [`DrainUrl::redacted`].

use std::fmt;
use std::str::FromStr;

/// Longest drain URL accepted (Heroku's limit is about this, and a URL is kept per app).
pub const MAX_URL_BYTES: usize = 2048;

/// How a drain's lines travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrainScheme {
    /// `syslog://HOST:PORT`: RFC 5424 messages, RFC 6587 octet counting, over TCP.
    Syslog,
    /// `syslog+tls://HOST:PORT`: the same over TLS.
    SyslogTls,
    /// `http://…`: batched POSTs of `application/logplex-1` frames.
    Http,
    /// `https://…`: the same over TLS.
    Https,
}

impl DrainScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainScheme::Syslog => "syslog",
            DrainScheme::SyslogTls => "syslog+tls",
            DrainScheme::Http => "http",
            DrainScheme::Https => "https",
        }
    }

    /// Whether the connection is TLS.
    pub fn tls(self) -> bool {
        matches!(self, DrainScheme::SyslogTls | DrainScheme::Https)
    }

    /// Whether lines go as HTTP POSTs (else as a syslog stream).
    pub fn http(self) -> bool {
        matches!(self, DrainScheme::Http | DrainScheme::Https)
    }
}

/// A drain URL that was checked: one of the four schemes, a host, a port (explicit for
/// syslog, the scheme's default allowed for HTTP), no fragment, at most
/// [`MAX_URL_BYTES`]. Kept in its normalised form, so the same drain written two ways is
/// one drain.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DrainUrl {
    url: url::Url,
    scheme: DrainScheme,
}

/// Why a drain URL was refused, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid drain URL: {0}")]
pub struct DrainUrlError(pub String);

impl DrainUrl {
    pub fn scheme(&self) -> DrainScheme {
        self.scheme
    }

    /// The host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        match self.url.host() {
            Some(url::Host::Ipv6(_)) => self
                .url
                .host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']'),
            _ => self.url.host_str().unwrap_or_default(),
        }
    }

    pub fn port(&self) -> u16 {
        // Checked when parsed: every drain URL has one (or a known default).
        self.url.port_or_known_default().unwrap_or(0)
    }

    /// `user:password` given in the URL, decoded (HTTP drains send it as Basic
    /// authentication); `None` without.
    pub fn credentials(&self) -> Option<(String, String)> {
        if self.url.username().is_empty() && self.url.password().is_none() {
            return None;
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        Some((
            decode(self.url.username()),
            decode(self.url.password().unwrap_or("")),
        ))
    }

    /// The path and query an HTTP drain posts to (`/` at least).
    pub fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(query) => format!("{}?{query}", self.url.path()),
            None => self.url.path().to_string(),
        }
    }

    /// The URL as given, credentials included: the user's own data.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The URL without its credentials, query or path: what the platform may write in a
    /// log (`https://host:port`). A path or query can hold a token as well as userinfo.
    pub fn redacted(&self) -> String {
        format!(
            "{}://{}:{}",
            self.scheme.as_str(),
            self.bracketed_host(),
            self.port()
        )
    }

    /// The host as written in a URL (an IPv6 address in brackets).
    fn bracketed_host(&self) -> String {
        match self.url.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            _ => self.host().to_string(),
        }
    }

    fn check(text: &str) -> Result<DrainUrl, DrainUrlError> {
        let refuse = |why: &str| Err(DrainUrlError(why.to_string()));
        if text.len() > MAX_URL_BYTES {
            return refuse(&format!("longer than {MAX_URL_BYTES} bytes"));
        }
        let url = url::Url::parse(text.trim()).map_err(|e| {
            DrainUrlError(format!(
                "{e} (use syslog+tls://HOST:PORT, syslog://HOST:PORT or https://HOST/PATH)"
            ))
        })?;
        let scheme = match url.scheme() {
            "syslog" => DrainScheme::Syslog,
            "syslog+tls" => DrainScheme::SyslogTls,
            "http" => DrainScheme::Http,
            "https" => DrainScheme::Https,
            other => {
                return refuse(&format!(
                    "scheme `{other}` is not one of syslog+tls, syslog, https and http"
                ));
            }
        };
        match url.host() {
            None => return refuse("no host (use SCHEME://HOST:PORT)"),
            Some(url::Host::Domain("")) => return refuse("an empty host"),
            Some(_) => {}
        }
        if url.fragment().is_some() {
            return refuse("a fragment (`#…`) means nothing to a drain");
        }
        if !scheme.http() {
            if url.port().is_none() {
                return refuse(&format!(
                    "a {} drain needs a port ({}://HOST:PORT)",
                    scheme.as_str(),
                    scheme.as_str()
                ));
            }
            if !matches!(url.path(), "" | "/") || url.query().is_some() {
                return refuse("a syslog drain has no path or query, only HOST:PORT");
            }
            if !url.username().is_empty() || url.password().is_some() {
                return refuse("a syslog drain takes no credentials (user:password@)");
            }
        }
        if url.port_or_known_default().is_none_or(|port| port == 0) {
            return refuse("port 0 is no port");
        }
        let mut drain = DrainUrl { url, scheme };
        if !scheme.http() {
            // Not a scheme the URL standard knows: its host is kept as written. Written
            // again in one form (lowercase host, no path), it compares like an HTTP one.
            let plain = format!(
                "{}://{}:{}",
                scheme.as_str(),
                drain.bracketed_host(),
                drain.port()
            );
            drain.url = url::Url::parse(&plain.to_ascii_lowercase())
                .map_err(|e| DrainUrlError(e.to_string()))?;
        }
        Ok(drain)
    }
}

impl FromStr for DrainUrl {
    type Err = DrainUrlError;
    fn from_str(s: &str) -> Result<DrainUrl, DrainUrlError> {
        DrainUrl::check(s)
    }
}

impl fmt::Display for DrainUrl {
    /// The whole URL (the user's data): write [`DrainUrl::redacted`] in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

impl fmt::Debug for DrainUrl {
    /// Redacted, so a stray `{:?}` never writes credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DrainUrl({})", self.redacted())
    }
}

impl serde::Serialize for DrainUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for DrainUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DrainUrl, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A drain's id: `d.` and a UUID in its hyphenated lowercase form, like Heroku's drain
/// tokens; made by the store when the drain is added.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DrainId(String);

/// Text that is no drain id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a drain id (d. and a UUID)")]
pub struct DrainIdError(pub String);

impl DrainId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(s: &str) -> Result<(), DrainIdError> {
        let uuid = s.strip_prefix("d.").unwrap_or("");
        let shape = uuid.len() == 36
            && uuid.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
            });
        if shape {
            Ok(())
        } else {
            Err(DrainIdError(s.to_string()))
        }
    }
}

crate::text::validated_string!(DrainId, DrainIdError);

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> DrainUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn refused(s: &str) -> String {
        match s.parse::<DrainUrl>() {
            Ok(u) => panic!("{s} was accepted as {u:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_four_schemes_with_host_and_port() {
        let tls = url("syslog+tls://logs.example.com:6514");
        assert_eq!(tls.scheme(), DrainScheme::SyslogTls);
        assert_eq!((tls.host(), tls.port()), ("logs.example.com", 6514));
        assert!(tls.scheme().tls() && !tls.scheme().http());
        let tcp = url("syslog://10.0.0.5:514/");
        assert_eq!(
            (tcp.scheme(), tcp.host(), tcp.port()),
            (DrainScheme::Syslog, "10.0.0.5", 514)
        );
        let https = url("https://user:s%40c+ret@logs.example.com/drain?app=1");
        assert_eq!((https.scheme(), https.port()), (DrainScheme::Https, 443));
        assert_eq!(https.path_and_query(), "/drain?app=1");
        assert_eq!(
            https.credentials(),
            Some(("user".to_string(), "s@c+ret".to_string()))
        );
        let http = url("http://[::1]:8080");
        assert_eq!((http.host(), http.port()), ("::1", 8080));
        assert_eq!(http.path_and_query(), "/");
        assert_eq!(http.credentials(), None);
        // Normalised: the same drain written two ways is one.
        assert_eq!(
            url("HTTPS://Logs.Example.com:443/"),
            url("https://logs.example.com/")
        );
        assert_eq!(
            url("SYSLOG://Logs.Example.com:514/"),
            url("syslog://logs.example.com:514")
        );
        assert_eq!(
            url("syslog://Logs.Example.com:514").as_str(),
            "syslog://logs.example.com:514"
        );
    }

    #[test]
    fn bad_urls_are_refused_with_what_to_change() {
        assert!(refused("ftp://example.com:21").contains("scheme `ftp`"));
        assert!(refused("syslog://example.com").contains("needs a port"));
        assert!(refused("syslog+tls://:6514").contains("invalid drain URL"));
        assert!(refused("logs.example.com:514").contains("scheme"));
        assert!(refused("not a url").contains("syslog+tls://HOST:PORT"));
        assert!(refused("https://example.com/#x").contains("fragment"));
        assert!(refused("syslog://example.com:514/path").contains("no path"));
        assert!(refused("syslog://u:p@example.com:514").contains("no credentials"));
        assert!(refused("http://example.com:0").contains("port 0"));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(refused(&long).contains("longer than"));
        assert!(refused("").contains("invalid drain URL"));
    }

    #[test]
    fn credentials_never_show_in_the_redacted_form_or_debug() {
        let u = url("https://user:secret@logs.example.com:8443/t0ken?key=secret2");
        assert_eq!(u.redacted(), "https://logs.example.com:8443");
        let debug = format!("{u:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("t0ken"),
            "{debug}"
        );
        assert!(
            u.to_string().contains("user:secret@"),
            "the user's own data, whole"
        );
        assert_eq!(url("syslog://[::1]:514").redacted(), "syslog://[::1]:514");
    }

    #[test]
    fn drain_ids_are_d_dot_uuid() {
        let id: DrainId = "d.9b0b4f60-1c2d-4e5f-8a9b-0c1d2e3f4a5b".parse().unwrap();
        assert_eq!(id.as_str(), "d.9b0b4f60-1c2d-4e5f-8a9b-0c1d2e3f4a5b");
        for bad in [
            "9b0b4f60-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
            "d.9B0B4F60-1C2D-4E5F-8A9B-0C1D2E3F4A5B",
            "d.9b0b4f601c2d4e5f8a9b0c1d2e3f4a5b",
            "d.",
            "https://example.com",
        ] {
            assert!(bad.parse::<DrainId>().is_err(), "{bad}");
        }
    }
}
