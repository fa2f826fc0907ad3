//! Process type names: the left side of a Procfile line (`web`, `worker`, `release`).

use std::borrow::Borrow;

/// A process type's name: letters, digits, `-` and `_`, at most 30 characters. `web` is
/// served over HTTP; `release` runs once before each deploy; every other type is a
/// worker running `wasi:cli/run`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProcessType(String);

/// A name that breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid process type name `{0}` (use letters, digits, `-` and `_`)")]
pub struct ProcessTypeError(pub String);

impl ProcessType {
    pub const WEB: &'static str = "web";
    pub const RELEASE: &'static str = "release";

    pub fn web() -> ProcessType {
        ProcessType(Self::WEB.into())
    }

    pub fn release() -> ProcessType {
        ProcessType(Self::RELEASE.into())
    }

    /// `web` is served over HTTP; every other type runs `wasi:cli/run`.
    pub fn is_web(&self) -> bool {
        self.0 == Self::WEB
    }

    /// `release` runs once before a deploy, never as part of the formation.
    pub fn is_release(&self) -> bool {
        self.0 == Self::RELEASE
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(name: &str) -> Result<(), ProcessTypeError> {
        let ok = !name.is_empty()
            && name.len() <= 30
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(())
        } else {
            Err(ProcessTypeError(name.to_string()))
        }
    }
}

crate::text::validated_string!(ProcessType, ProcessTypeError);

impl Borrow<str> for ProcessType {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_roles() {
        let web: ProcessType = "web".parse().unwrap();
        assert!(web.is_web() && !web.is_release());
        assert!(ProcessType::release().is_release());
        assert!("w eb".parse::<ProcessType>().is_err());
        assert!("".parse::<ProcessType>().is_err());
        assert!("x".repeat(31).parse::<ProcessType>().is_err());
    }
}
