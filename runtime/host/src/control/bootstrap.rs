//! The first start of a host: its admin token, made once, kept hashed in the store and
//! shown to the operator (and written to a file only the host's user can read).

use crate::control::errors::Result;
use std::path::Path;
use wdeploy_core::Digest;
use wdeploy_store::ControlStore;

/// Tokens are kept as their digest: a leaked database gives no token away.
pub(crate) fn token_hash(token: &str) -> Digest {
    Digest::of_bytes(token.as_bytes())
}

/// Makes the admin token when the store has none: returns it (to show once), having
/// stored its hash and written it to `DATA/admin-token` (mode 0600).
pub(crate) async fn admin_token(
    store: &dyn ControlStore,
    data_dir: &Path,
) -> anyhow::Result<Option<String>> {
    if store.has_tokens().await? {
        return Ok(None);
    }
    let fresh = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    store.add_token(&token_hash(&fresh), "admin").await?;
    write_private(&data_dir.join("admin-token"), &fresh)?;
    Ok(Some(fresh))
}

/// The caller a token belongs to, if any.
pub(crate) async fn caller(store: &dyn ControlStore, token: &str) -> Result<Option<String>> {
    Ok(store.token(&token_hash(token)).await?)
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
