//! `[egress] allow`: the hosts an app's outgoing HTTP may reach, written in `wdeploy.toml`.
//!
//! ```toml
//! [egress]
//! allow = ["api.stripe.com", "*.example.org:443", "10.1.2.3:8080", "[2001:db8::1]"]
//! ```
//!
//! An app without the section is unrestricted (within the host's own rule: public
//! addresses only). An app with it reaches only what the list names; `allow = []`
//! refuses every outgoing request. The rules of a pattern, decided once here:
//!
//! - `host`: that name exactly, case-insensitive, a trailing dot ignored. Not its
//!   subdomains. Non-ASCII names are refused: write the punycode form (`xn--…`), which is
//!   what a request carries.
//! - `*.host`: every subdomain of `host`, at any depth, but **not** `host` itself (as in
//!   Spin's `allowed_outbound_hosts`): list both to allow both. `*` only as the whole
//!   first label.
//! - IPv4 and IPv6 literals (`10.1.2.3`, `[::1]`, or bare `::1` without a port): that
//!   address when the request names it; a name never matches an address pattern (the
//!   check is on what the guest asked for, before DNS).
//! - `:port`: that port only; `:*` any port. Without a port, the web's default ports, 80
//!   and 443: naming `api.stripe.com` should not also open its other services.
//! - No scheme: the list says where a request may go, not whether it uses TLS; `https://`
//!   in a pattern is refused with the form to write instead.
//! - `*` alone (or `*:*`) is refused: an app without the section is already
//!   unrestricted, and an allow-list that allows everything would only hide that.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Most patterns one list may hold: the check runs on every outgoing request.
pub const MAX_PATTERNS: usize = 256;

/// Ports a pattern without `:port` allows.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// `[egress]` of `wdeploy.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressSettings {
    /// `None`: unrestricted; `Some`: only these hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<AllowList>,
}

/// The hosts an app may reach, each pattern valid and in its canonical form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct AllowList(Vec<HostPattern>);

impl AllowList {
    /// Whether a request to `host` (as the request's URI names it: a name, an IPv4
    /// literal or a bracketed IPv6 one) on `port` is allowed.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let Some(host) = RequestHost::parse(host) else {
            return false;
        };
        self.0.iter().any(|p| p.matches(&host, port))
    }

    pub fn patterns(&self) -> &[HostPattern] {
        &self.0
    }

    /// The patterns as canonical text, for comparing two lists.
    fn texts(&self) -> BTreeSet<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl TryFrom<Vec<String>> for AllowList {
    type Error = String;

    fn try_from(texts: Vec<String>) -> Result<AllowList, String> {
        if texts.len() > MAX_PATTERNS {
            return Err(format!(
                "egress.allow has {} patterns; at most {MAX_PATTERNS}",
                texts.len()
            ));
        }
        let mut patterns: Vec<HostPattern> = Vec::with_capacity(texts.len());
        for text in &texts {
            let pattern: HostPattern = text.parse()?;
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        }
        Ok(AllowList(patterns))
    }
}

impl From<AllowList> for Vec<String> {
    fn from(list: AllowList) -> Vec<String> {
        list.0.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no host (every outgoing request refused)");
        }
        let texts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&texts.join(", "))
    }
}

/// One entry of an allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: HostMatch,
    port: PortMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// A DNS name, lower-case, without a trailing dot.
    Name(String),
    /// Subdomains of this name (the pattern `*.name`).
    Subdomains(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortMatch {
    /// 80 and 443.
    Default,
    Any,
    Only(u16),
}

/// A request's host, normalised as patterns are.
enum RequestHost {
    Name(String),
    Ip(IpAddr),
}

impl RequestHost {
    fn parse(host: &str) -> Option<RequestHost> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Some(RequestHost::Ip(ip));
        }
        let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        (!name.is_empty()).then_some(RequestHost::Name(name))
    }
}

impl HostPattern {
    fn matches(&self, host: &RequestHost, port: u16) -> bool {
        let port_ok = match self.port {
            PortMatch::Default => DEFAULT_PORTS.contains(&port),
            PortMatch::Any => true,
            PortMatch::Only(p) => p == port,
        };
        port_ok
            && match (&self.host, host) {
                (HostMatch::Name(want), RequestHost::Name(name)) => want == name,
                (HostMatch::Subdomains(parent), RequestHost::Name(name)) => name
                    .strip_suffix(parent.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                (HostMatch::Ip(want), RequestHost::Ip(ip)) => want == ip,
                _ => false,
            }
    }
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<HostPattern, String> {
        let bad = |why: &str| format!("egress.allow: `{text}` {why}");
        if text.trim().is_empty() {
            return Err("egress.allow: an empty pattern; name a host (`api.example.com`)".into());
        }
        if !text.is_ascii() {
            return Err(bad(
                "is not ASCII: write the name in its punycode form (`xn--…`, as `idn2` or a browser's address bar shows it)",
            ));
        }
        if text
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
        {
            return Err(bad("holds a space or a control character"));
        }
        if let Some((scheme, rest)) = text.split_once("://") {
            let host = rest.split('/').next().unwrap_or(rest);
            let hint = if scheme.eq_ignore_ascii_case("https") && !host.contains(':') {
                format!("`{host}:443`")
            } else {
                format!("`{host}`")
            };
            return Err(bad(&format!(
                "has a scheme: write the host alone ({hint}); the list says where requests may go, over HTTP or HTTPS"
            )));
        }
        if text.contains('/') {
            return Err(bad("has a path: write the host alone (`api.example.com`)"));
        }
        if text == "*" || text.starts_with("*:") {
            return Err(bad(
                "would allow every host: an app without an [egress] allow-list is unrestricted already; remove the section, or name the hosts",
            ));
        }
        // A bare IPv6 literal (several colons, no brackets) has no port.
        if let Ok(ip) = text.parse::<std::net::Ipv6Addr>() {
            return Ok(HostPattern {
                host: HostMatch::Ip(IpAddr::V6(ip)),
                port: PortMatch::Default,
            });
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("opens `[` without closing it"))?;
            let ip = inside
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("has `[…]` around something that is no IPv6 address"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("has text after `]` that is no `:port`"))?,
                ),
            };
            (HostMatch::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            };
            (host_match(host).map_err(|why| bad(&why))?, port)
        };
        let port = match port {
            None => PortMatch::Default,
            Some("*") => PortMatch::Any,
            Some(digits) => match digits.parse::<u16>() {
                Ok(p) if p > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => PortMatch::Only(p),
                _ => {
                    return Err(bad(
                        "has a bad port: write a number from 1 to 65535, or `*` for any port",
                    ));
                }
            },
        };
        Ok(HostPattern { host, port })
    }
}

/// The host part of a pattern (no brackets, no port).
fn host_match(host: &str) -> Result<HostMatch, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostMatch::Ip(ip));
    }
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.contains('*') {
        return Err(
            "has `*` other than as the whole first label: write `*.example.org` for its subdomains"
                .into(),
        );
    }
    if wildcard && name.parse::<IpAddr>().is_ok() {
        return Err("puts `*.` before an address: name the address itself".into());
    }
    if name.is_empty() || name.len() > 253 {
        return Err("is not a host name".into());
    }
    for label in name.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "is not a host name (label `{label}`: letters, digits and inner `-`, 1 to 63 of them)"
            ));
        }
    }
    Ok(if wildcard {
        HostMatch::Subdomains(name)
    } else {
        HostMatch::Name(name)
    })
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostMatch::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostMatch::Ip(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            HostMatch::Name(name) => f.write_str(name)?,
            HostMatch::Subdomains(name) => write!(f, "*.{name}")?,
        }
        match self.port {
            PortMatch::Default => Ok(()),
            PortMatch::Any => f.write_str(":*"),
            PortMatch::Only(p) => write!(f, ":{p}"),
        }
    }
}

/// How a new release's allow-list differs from the one serving: what `push` prints
/// before the release goes live, so a reviewer sees a capability change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressChange {
    /// The same list (or none) as before.
    Unchanged(Option<AllowList>),
    /// A list where there was none.
    Restricted(AllowList),
    /// No list where there was one.
    Unrestricted { was: AllowList },
    /// Patterns added and removed (canonical text, sorted).
    Changed {
        added: Vec<String>,
        removed: Vec<String>,
    },
}

impl EgressChange {
    /// From the serving release's list (`None` also when nothing serves) to the new one's.
    pub fn between(old: Option<&AllowList>, new: Option<&AllowList>) -> EgressChange {
        match (old, new) {
            (None, None) => EgressChange::Unchanged(None),
            (None, Some(new)) => EgressChange::Restricted(new.clone()),
            (Some(old), None) => EgressChange::Unrestricted { was: old.clone() },
            (Some(old), Some(new)) => {
                let (old_texts, new_texts) = (old.texts(), new.texts());
                if old_texts == new_texts {
                    return EgressChange::Unchanged(Some(new.clone()));
                }
                EgressChange::Changed {
                    added: new_texts.difference(&old_texts).cloned().collect(),
                    removed: old_texts.difference(&new_texts).cloned().collect(),
                }
            }
        }
    }

    pub fn is_change(&self) -> bool {
        !matches!(self, EgressChange::Unchanged(_))
    }
}

impl fmt::Display for EgressChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressChange::Unchanged(None) => {
                f.write_str("Egress allow-list: none, unchanged (outgoing requests unrestricted)")
            }
            EgressChange::Unchanged(Some(list)) => {
                write!(f, "Egress allow-list: unchanged ({list})")
            }
            EgressChange::Restricted(list) => {
                write!(
                    f,
                    "Egress allow-list: now restricted to {list} (was unrestricted)"
                )
            }
            EgressChange::Unrestricted { was } => write!(
                f,
                "Egress allow-list: removed, now unrestricted (was {was})"
            ),
            EgressChange::Changed { added, removed } => {
                let parts: Vec<String> = (added.iter().map(|p| format!("+ {p}")))
                    .chain(removed.iter().map(|p| format!("- {p}")))
                    .collect();
                write!(f, "Egress allow-list: {}", parts.join("  "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> AllowList {
        AllowList::try_from(patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_names_match_case_insensitively_with_or_without_a_trailing_dot() {
        let l = list(&["API.Stripe.com."]);
        assert_eq!(l.patterns()[0].to_string(), "api.stripe.com");
        for host in ["api.stripe.com", "API.STRIPE.COM", "api.stripe.com."] {
            assert!(l.allows(host, 443), "{host}");
            assert!(l.allows(host, 80), "{host}");
        }
        assert!(!l.allows("stripe.com", 443));
        assert!(!l.allows("x.api.stripe.com", 443));
        assert!(!l.allows("api.stripe.com.evil.com", 443));
        assert!(!l.allows("evilapi.stripe.com", 443));
    }

    #[test]
    fn without_a_port_only_the_default_ports_with_one_only_it() {
        let l = list(&["api.stripe.com"]);
        assert!(l.allows("api.stripe.com", 80) && l.allows("api.stripe.com", 443));
        assert!(!l.allows("api.stripe.com", 6379));
        let l = list(&["db.example.org:5432", "any.example.org:*"]);
        assert!(l.allows("db.example.org", 5432));
        assert!(!l.allows("db.example.org", 443));
        assert!(l.allows("any.example.org", 1) && l.allows("any.example.org", 65535));
    }

    #[test]
    fn a_wildcard_matches_subdomains_at_any_depth_but_not_the_parent() {
        let l = list(&["*.example.org:443"]);
        assert!(l.allows("a.example.org", 443));
        assert!(l.allows("a.b.EXAMPLE.org.", 443));
        assert!(!l.allows("example.org", 443));
        assert!(!l.allows("badexample.org", 443));
        assert!(!l.allows("a.example.org", 80));
        assert!(!l.allows(".example.org", 443));
    }

    #[test]
    fn address_literals_match_addresses_never_names() {
        let l = list(&["127.0.0.1:8080", "[::1]:9000", "2001:db8::1"]);
        assert!(l.allows("127.0.0.1", 8080));
        assert!(!l.allows("127.0.0.1", 8081));
        assert!(!l.allows("localhost", 8080));
        assert!(l.allows("[::1]", 9000));
        assert!(l.allows("[2001:db8::1]", 443));
        assert!(!l.allows("[2001:db8::1]", 8443));
        assert_eq!(
            Vec::<String>::from(l),
            ["127.0.0.1:8080", "[::1]:9000", "[2001:db8::1]"]
        );
        let names = list(&["localhost:8080"]);
        assert!(names.allows("localhost", 8080));
        assert!(!names.allows("127.0.0.1", 8080));
    }

    #[test]
    fn an_empty_list_allows_nothing() {
        let l = list(&[]);
        assert!(!l.allows("example.org", 443));
        assert_eq!(l.to_string(), "no host (every outgoing request refused)");
    }

    #[test]
    fn junk_is_refused_with_what_to_write_instead() {
        for (bad, says) in [
            ("", "empty pattern"),
            ("  ", "empty pattern"),
            ("*", "unrestricted already"),
            ("*:*", "unrestricted already"),
            ("*:443", "unrestricted already"),
            ("https://api.stripe.com", "`api.stripe.com:443`"),
            ("http://api.stripe.com/v1", "`api.stripe.com`"),
            ("api.stripe.com/v1", "has a path"),
            ("bücher.example", "punycode"),
            ("api.*.com", "whole first label"),
            ("*api.com", "whole first label"),
            ("**.api.com", "whole first label"),
            ("*.10.0.0.1", "before an address"),
            ("api.com:0", "bad port"),
            ("api.com:65536", "bad port"),
            ("api.com:+80", "bad port"),
            ("api.com:", "bad port"),
            ("api.com:http", "bad port"),
            ("api.com:80:81", "bad port"),
            ("[::1", "without closing"),
            ("[example.org]:80", "no IPv6 address"),
            ("[::1]80", "no `:port`"),
            ("a b.com", "space"),
            ("-api.com", "not a host name"),
            ("api..com", "not a host name"),
            ("*.", "not a host name"),
        ] {
            let err = bad.parse::<HostPattern>().unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        let many: Vec<String> = (0..=MAX_PATTERNS)
            .map(|i| format!("h{i}.example"))
            .collect();
        assert!(AllowList::try_from(many).unwrap_err().contains("at most"));
    }

    #[test]
    fn patterns_read_from_wdeploy_toml() {
        #[derive(Debug, Deserialize)]
        struct File {
            egress: EgressSettings,
        }
        let file: File = toml::from_str("[egress]\nallow = [\"a.com\", \"A.com\"]\n").unwrap();
        assert_eq!(file.egress.allow.unwrap(), list(&["a.com"]));
        let file: File = toml::from_str("[egress]\n").unwrap();
        assert_eq!(file.egress.allow, None);
        let err = toml::from_str::<File>("[egress]\nallow = [\"*\"]\n").unwrap_err();
        assert!(err.to_string().contains("unrestricted already"), "{err}");
        assert!(toml::from_str::<File>("[egress]\nalow = []\n").is_err());
    }

    #[test]
    fn a_change_names_what_was_added_and_removed() {
        let a = list(&["api.stripe.com", "old.example.com"]);
        let b = list(&["api.stripe.com", "*.example.org:443"]);
        let change = EgressChange::between(Some(&a), Some(&b));
        assert_eq!(
            change.to_string(),
            "Egress allow-list: + *.example.org:443  - old.example.com"
        );
        assert!(change.is_change());
        let same = EgressChange::between(
            Some(&a),
            Some(&list(&["old.example.com", "API.stripe.com"])),
        );
        assert!(!same.is_change());
        assert_eq!(
            same.to_string(),
            "Egress allow-list: unchanged (old.example.com, api.stripe.com)"
        );
        assert_eq!(
            EgressChange::between(None, Some(&b)).to_string(),
            "Egress allow-list: now restricted to api.stripe.com, *.example.org:443 (was unrestricted)"
        );
        assert_eq!(
            EgressChange::between(Some(&a), None).to_string(),
            "Egress allow-list: removed, now unrestricted (was api.stripe.com, old.example.com)"
        );
        assert!(!EgressChange::between(None, None).is_change());
    }
}
