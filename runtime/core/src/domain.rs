//! Custom domains: the host names an app is served at besides `NAME.<host domain>`.

/// A fully qualified DNS host name, lowercase, without a trailing dot: at least two
/// labels of 1-63 letters, digits and `-` (not at either end), at most 253 characters,
/// and not an IP address. Names beyond ASCII are written in their punycode form
/// (`xn--…`), as DNS carries them.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

/// A host name that breaks the rule, with the rule in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a domain wdeploy can serve: give a host name such as www.example.com (letters, digits and `-` in dot-separated labels, punycode for other scripts, no IP address, no port)"
)]
pub struct DomainError(pub String);

impl Domain {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a domain as a person types it: any case, with a trailing dot or not.
    pub fn normalize(text: &str) -> Result<Domain, DomainError> {
        let text = text.trim();
        let lower = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        lower.parse().map_err(|_| DomainError(text.to_string()))
    }

    /// Whether this domain is `parent` or below it.
    pub fn is_within(&self, parent: &str) -> bool {
        let parent = parent.trim_end_matches('.').to_ascii_lowercase();
        self.0 == parent
            || self
                .0
                .strip_suffix(&parent)
                .is_some_and(|rest| rest.ends_with('.'))
    }

    fn check(name: &str) -> Result<(), DomainError> {
        let bad = || DomainError(name.to_string());
        if name.is_empty() || name.len() > 253 || name.parse::<std::net::IpAddr>().is_ok() {
            return Err(bad());
        }
        let labels: Vec<&str> = name.split('.').collect();
        let label_ok = |label: &&str| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        // The last label (the TLD) is never all digits: `1.2.3.4` style names are not
        // host names, whatever their count.
        let tld_ok = labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
        if labels.len() >= 2 && labels.iter().all(label_ok) && tld_ok {
            Ok(())
        } else {
            Err(bad())
        }
    }
}

crate::text::validated_string!(Domain, DomainError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        for good in [
            "www.example.com",
            "a.b",
            "xn--bcher-kva.example",
            "x-1.example.org",
        ] {
            assert!(good.parse::<Domain>().is_ok(), "{good}");
        }
        for bad in [
            "localhost",
            "Example.com",
            "example.com.",
            "1.2.3.4",
            "::1",
            "-a.example.com",
            "a-.example.com",
            "a..b",
            "a_b.example.com",
            "example.com:443",
            "bücher.example",
            "",
            &format!("{}.com", "a".repeat(64)),
            "10.0.0.300",
        ] {
            assert!(bad.parse::<Domain>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Domain>("\"UPPER.example\"").is_err());
    }

    #[test]
    fn typed_domains_are_normalised() {
        let d = Domain::normalize(" WWW.Example.COM. ").unwrap();
        assert_eq!(d.as_str(), "www.example.com");
        assert!(Domain::normalize("http://x.example").is_err());
    }

    #[test]
    fn within() {
        let d: Domain = "app.example.com".parse().unwrap();
        assert!(d.is_within("example.com"));
        assert!(d.is_within("app.example.com"));
        assert!(!d.is_within("le.com"));
        assert!(!d.is_within("other.com"));
    }
}
