//! Dashboard sessions: a browser logs in once with its token and then carries a cookie.
//!
//! The cookie names the token's public id and a random secret (244 bits), never the
//! token. The store keeps each session, for every node of a cluster alike (a load
//! balancer may send each request to another node), as the hash of its secret and the
//! hash of the token it was opened with; every request is authenticated as that token
//! again, so a token revoked (or a person's access changed) applies to open sessions at
//! once. A token has at most [`MAX_SESSIONS_PER_TOKEN`]: a login beyond them ends the one
//! closest to its end, so logging in can neither grow the table without bound nor be
//! refused.

use std::time::Duration;
use wdeploy_core::{Digest, TokenId};

/// The cookie's name.
pub const COOKIE: &str = "wdeploy_session";
/// How long a session lasts after its login.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions one token may have open at once.
pub const MAX_SESSIONS_PER_TOKEN: usize = 20;

/// A new session's cookie value for a session of token `token_id`, and the hash of its
/// secret, which is all the store keeps of it.
pub fn new_session(token_id: &TokenId) -> (String, Digest) {
    // Two v4 UUIDs from the OS's CSPRNG: 244 random bits.
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let hash = Digest::of_bytes(secret.as_bytes());
    (format!("{token_id}.{secret}"), hash)
}

/// The token id and the hash of the secret a cookie value names, if it is one.
pub fn parse(value: &str) -> Option<(TokenId, Digest)> {
    let (token_id, secret) = value.split_once('.')?;
    let token_id = token_id.parse().ok()?;
    let well_formed = secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then(|| (token_id, Digest::of_bytes(secret.as_bytes())))
}

/// The session id in a request's `Cookie` headers, if any.
pub fn from_cookies(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The `Set-Cookie` value opening session `id`: never readable by scripts, never sent
/// along with a request another site makes, and over TLS only when served over TLS.
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_names_its_token_and_the_hash_of_its_secret() {
        let token_id = TokenId::from_random(&[1, 2, 3, 4, 5, 6]);
        let (cookie, hash) = new_session(&token_id);
        assert_eq!(parse(&cookie), Some((token_id.clone(), hash)));
        let (other, _) = new_session(&token_id);
        assert_ne!(cookie, other);
        assert_eq!(parse("not-a-session"), None);
        assert_eq!(parse(&format!("{token_id}.short")), None);
        assert_eq!(parse(&format!("zz.{}", "a".repeat(64))), None);
    }
}
