//! People and their tokens' public ids: who a token belongs to and how it is named in
//! listings, never the secret itself.

/// A person who can call the API: an email address (lowercase), or `admin`, the person
/// of the admin token a host makes at its first start. Safe as a SQL key and, hex-encoded,
/// as a NATS key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Person(String);

/// Text that names no person, with the rule in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an email address: use NAME@DOMAIN in lowercase letters, digits and . _ + - (at most 254 characters)"
)]
pub struct PersonError(pub String);

impl Person {
    /// The admin token's person.
    pub const ADMIN: &'static str = "admin";

    pub fn admin() -> Person {
        Person(Person::ADMIN.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(text: &str) -> Result<(), PersonError> {
        if text == Person::ADMIN {
            return Ok(());
        }
        let part = |s: &str, extra: &[char]| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
        };
        let ok = text.len() <= 254
            && match text.split_once('@') {
                Some((local, domain)) => {
                    part(local, &['.', '_', '+', '-'])
                        && part(domain, &['.', '-'])
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if ok {
            Ok(())
        } else {
            Err(PersonError(text.to_string()))
        }
    }
}

crate::text::validated_string!(Person, PersonError);

/// A token's public id: 12 lowercase hex digits, random, shown by `wdeploy tokens` and
/// named by `tokens:revoke`. It says nothing about the token's secret.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenId(String);

/// Text that is no token id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a token id (12 lowercase hex digits, as `wdeploy tokens` lists them)")]
pub struct TokenIdError(pub String);

impl TokenId {
    /// Length of an id in hex digits.
    pub const LEN: usize = 12;

    /// The id of these random bytes (the first six are used).
    pub fn from_random(bytes: &[u8; 6]) -> TokenId {
        TokenId(hex::encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(text: &str) -> Result<(), TokenIdError> {
        if text.len() == TokenId::LEN
            && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            Ok(())
        } else {
            Err(TokenIdError(text.to_string()))
        }
    }
}

crate::text::validated_string!(TokenId, TokenIdError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people() {
        for good in [
            "admin",
            "ann@example.com",
            "a.b+c_d-e@mail.example.org",
            "x@y",
        ] {
            assert!(good.parse::<Person>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "Ann@example.com",
            "ann",
            "@example.com",
            "ann@",
            "ann@x@y",
            "ann@.x",
            "ann@x.",
            "a b@x",
            "ann@exa'mple.com",
            &format!("{}@x", "a".repeat(254)),
        ] {
            assert!(bad.parse::<Person>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Person>("\"x y\"").is_err());
    }

    #[test]
    fn token_ids() {
        let id = TokenId::from_random(&[0xab, 1, 2, 3, 4, 0xff]);
        assert_eq!(id.as_str(), "ab01020304ff");
        assert_eq!(id.as_str().parse::<TokenId>().unwrap(), id);
        for bad in [
            "",
            "ab01020304f",
            "AB01020304FF",
            "ab01020304fg",
            "ab01020304ff0",
        ] {
            assert!(bad.parse::<TokenId>().is_err(), "{bad}");
        }
    }
}
