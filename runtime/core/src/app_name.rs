//! App names: `[a-z][a-z0-9-]{1,29}`, so a name is safe in paths, host names and subjects.

/// A valid app name. The router serves it at `NAME.DOMAIN`, the host keeps its dyno
/// filesystems under a folder of that name, and the store keys its data by it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppName(String);

/// A name that breaks the rule, with the rule in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a valid app name: use 2-30 characters, lowercase letters, digits and `-`, starting with a letter"
)]
pub struct AppNameError(pub String);

impl AppName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(name: &str) -> Result<(), AppNameError> {
        let ok = (2..=30).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(())
        } else {
            Err(AppNameError(name.to_string()))
        }
    }
}

crate::text::validated_string!(AppName, AppNameError);

impl std::ops::Deref for AppName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        assert!("hello".parse::<AppName>().is_ok());
        assert!("my-app-2".parse::<AppName>().is_ok());
        for bad in ["a", "Hello", "2app", "../etc", "a.b", &"x".repeat(31)] {
            assert!(bad.parse::<AppName>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<AppName>("\"../x\"").is_err());
    }
}
