//! The first start of a host: its admin token, made once, kept hashed in the store and
//! shown to the operator (and written to a file only the host's user can read).

use chrono::Utc;
use std::path::Path;
use wdeploy_core::{Digest, Person, TokenId};
use wdeploy_store::{People, TokenRecord};

/// Tokens are kept as their digest: a leaked database gives no token away. Looking a
/// token up by its digest also means no secret is ever compared byte by byte: what an
/// attacker could time is a lookup of the sha256 of their guess, which tells them
/// nothing about a real token.
pub(crate) fn token_hash(token: &str) -> Digest {
    Digest::of_bytes(token.as_bytes())
}

/// A new token: 256 random bits from the operating system's CSPRNG, as 64 hex digits,
/// and its public id (48 more random bits). The token is returned to show once; only
/// its hash is kept.
pub(crate) fn new_token(
    user: &Person,
    description: &str,
) -> std::io::Result<(String, TokenRecord)> {
    let mut secret = [0u8; 32];
    let mut id = [0u8; 6];
    getrandom::getrandom(&mut secret).map_err(std::io::Error::other)?;
    getrandom::getrandom(&mut id).map_err(std::io::Error::other)?;
    let token = hex::encode(secret);
    let record = TokenRecord {
        id: TokenId::from_random(&id),
        hash: token_hash(&token),
        user: user.clone(),
        description: description.to_string(),
        created_at: Utc::now(),
    };
    Ok((token, record))
}

/// Makes sure the admin person exists (every start: a store of an older wdeploy has the
/// admin token without them), and makes the admin token when the store has no token:
/// returns it (to show once), having stored its hash and written it to
/// `DATA/admin-token` (mode 0600).
pub(crate) async fn admin_token(
    people: &dyn People,
    data_dir: &Path,
) -> anyhow::Result<Option<String>> {
    people.ensure_user(&Person::admin(), true).await?;
    if people.has_tokens().await? {
        return Ok(None);
    }
    let (fresh, record) = new_token(&Person::admin(), "the admin token, made at first start")?;
    people.add_token(&record).await?;
    write_private(&data_dir.join("admin-token"), &fresh)?;
    Ok(Some(fresh))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{text}")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_kept_as_their_hash() {
        let ann: Person = "ann@x.io".parse().unwrap();
        let (a, record) = new_token(&ann, "laptop").unwrap();
        let (b, _) = new_token(&ann, "laptop").unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(record.hash, token_hash(&a));
        assert_eq!((record.user, record.description.as_str()), (ann, "laptop"));
    }
}
