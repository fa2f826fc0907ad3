//! What automatic certificates (ACME, RFC 8555) need kept: the ACME account made at each
//! directory (one per cluster, so every node orders under it), and the HTTP-01 challenges
//! of the orders under way, which every node's router answers at
//! `/.well-known/acme-challenge/TOKEN` whichever node placed the order.

use crate::error::{Result, StoreError};
use async_trait::async_trait;
use std::time::Duration;

/// How long a challenge is kept at most: an order is validated within minutes, and the
/// node that placed it removes its challenge when done; one it could not remove (it
/// stopped meanwhile) goes by itself after this, so challenges never pile up.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(3600);

/// The longest challenge token kept (RFC 8555 tokens are 43 characters at Let's Encrypt).
pub const MAX_TOKEN_LEN: usize = 256;

/// The ACME state of a host or cluster, behind whichever backend runs.
#[async_trait]
pub trait AcmeStore: Send + Sync + 'static {
    /// The ACME account for `directory` (instant-acme's AccountCredentials as JSON), if one was made.
    async fn account(&self, directory: &str) -> Result<Option<String>>;
    /// Keeps the account made for `directory` (create-if-absent: an existing one wins and is returned).
    async fn save_account(&self, directory: &str, credentials: String) -> Result<String>;
    /// HTTP-01: the key authorization for `token`, served by every node's router at
    /// /.well-known/acme-challenge/TOKEN while the order runs. Kept for at most
    /// [`CHALLENGE_TTL`]; `Invalid` for a token that is not [`valid_token`].
    async fn put_challenge(&self, token: &str, key_authorization: &str) -> Result<()>;
    /// The key authorization of `token`, if it is a challenge under way (`None` for a
    /// token that is not even [`valid_token`]).
    async fn challenge(&self, token: &str) -> Result<Option<String>>;
    /// Forgets `token`'s challenge (nothing happens if there is none).
    async fn remove_challenge(&self, token: &str) -> Result<()>;
}

/// Whether `token` can be an ACME challenge token: base64url without padding
/// (RFC 8555 §8.3), at most [`MAX_TOKEN_LEN`] characters. Only such tokens are looked up
/// or kept, so a token is always safe as a key in either backend.
pub fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `Invalid` unless `token` is [`valid_token`].
pub(crate) fn check_token(token: &str) -> Result<()> {
    if valid_token(token) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "an ACME challenge token is 1 to {MAX_TOKEN_LEN} characters of A-Z, a-z, 0-9, - and _"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_base64url() {
        assert!(valid_token("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"));
        assert!(!valid_token(""));
        assert!(!valid_token("../etc/passwd"));
        assert!(!valid_token("a.b"));
        assert!(!valid_token("a*"));
        assert!(!valid_token("tok=="));
        assert!(!valid_token(&"a".repeat(MAX_TOKEN_LEN + 1)));
        assert!(valid_token(&"a".repeat(MAX_TOKEN_LEN)));
        assert!(check_token("a b").is_err());
    }
}
