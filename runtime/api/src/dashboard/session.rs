//! Dashboard sessions: a browser logs in once with its token and then carries a cookie.
//!
//! The cookie holds a random session id (256 bits), never the token; the host keeps the
//! token the session was opened with and authenticates every request with it again, so a
//! token revoked (or a person's access changed) applies to open sessions at once. Only a
//! hash of each id is kept, so the table leaks no usable cookie.

use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "wdeploy_session";
/// How long a session lasts after its login.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at once; a login beyond it ends the one closest to expiry, so logging in
/// can neither grow the table without bound nor be refused.
pub const MAX_SESSIONS: usize = 10_000;

/// The open sessions of one host.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
}

struct Session {
    token: String,
    expires: Instant,
}

impl Sessions {
    /// Opens a session for `token` (already checked by the caller); returns its id, the
    /// cookie's value.
    pub fn open(&self, token: &str) -> String {
        let id = new_id();
        let now = Instant::now();
        let mut open = self.open.lock();
        open.retain(|_, s| s.expires > now);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            open.remove(&oldest);
        }
        open.insert(
            hash(&id),
            Session {
                token: token.to_string(),
                expires: now + LIFETIME,
            },
        );
        id
    }

    /// The token of the live session `id`, if there is one.
    pub fn token(&self, id: &str) -> Option<String> {
        let key = hash(id);
        let mut open = self.open.lock();
        match open.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.token.clone()),
            Some(_) => {
                open.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session `id` (a logout).
    pub fn close(&self, id: &str) {
        self.open.lock().remove(&hash(id));
    }
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

fn new_id() -> String {
    // Two v4 UUIDs from the OS's CSPRNG: 244 random bits.
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_gives_back_its_token_until_closed() {
        let sessions = Sessions::default();
        let id = sessions.open("secret");
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.token(&id).as_deref(), Some("secret"));
        assert_eq!(sessions.token("not-a-session"), None);
        sessions.close(&id);
        assert_eq!(sessions.token(&id), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let sessions = Sessions::default();
        let first = sessions.open("t");
        for _ in 0..MAX_SESSIONS {
            sessions.open("t");
        }
        assert_eq!(sessions.open.lock().len(), MAX_SESSIONS);
        assert_eq!(sessions.token(&first), None, "the oldest session made room");
    }

    #[test]
    fn the_cookie_is_found_among_others_and_flagged() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "a=1; wdeploy_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(from_cookies(&headers).as_deref(), Some("abc"));
        let cookie = set_cookie("abc", false);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains("Secure"));
        assert!(set_cookie("abc", true).ends_with("; Secure"));
    }
}
