//! A NATS user's key, read from its file: the user's JWT and nkey seed (a `.creds` file,
//! operator mode) or the seed alone (nkey users).
//!
//! The file is read when the host starts, so that a wrong one stops it with the file's
//! name, and again at every connect: an operator replaces a user's `.creds` in place
//! when its JWT nears its expiry or the user is reissued, and the server closes the
//! connection of a user whose JWT expired; the reconnect then proves the node with what
//! the file holds now, with no restart. A file that cannot be read or holds no key at a
//! reconnect (caught half written) is said in the log, and the key read last is used.

use crate::error::{Result, StoreError};
use async_nats::{Auth, AuthError, ConnectOptions};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A user's key as its file gave it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct UserKey {
    /// The user's JWT, signed by its account (operator mode); `None` for an nkey user,
    /// whom the server knows by its public key.
    jwt: Option<String>,
    /// The user's nkey seed (`SU…`): it signs the server's nonce.
    seed: String,
}

/// How the two blocks of a `.creds` file begin.
const JWT_BLOCK: &str = "BEGIN NATS USER JWT";
const SEED_BLOCK: &str = "BEGIN USER NKEY SEED";

impl UserKey {
    /// The key in `file`; an error that names the file and what to give, never its secret.
    pub(crate) fn read(file: &Path) -> Result<UserKey> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| StoreError::Invalid(format!("reading {}: {e}", file.display())))?;
        UserKey::parse(&text).map_err(|why| {
            StoreError::Invalid(format!(
                "{} {why}: give a NATS user's .creds file (its JWT and nkey seed, as nsc \
                 makes it) or a user nkey seed (SU…, as nk -gen user makes it)",
                file.display()
            ))
        })
    }

    fn parse(text: &str) -> std::result::Result<UserKey, &'static str> {
        let jwt = match text.contains(JWT_BLOCK) {
            true => {
                let jwt = first_line_after(text, JWT_BLOCK).ok_or("holds an empty JWT block")?;
                if jwt.split('.').count() != 3 {
                    return Err("is not a credentials file (its JWT block holds no JWT)");
                }
                Some(jwt.to_string())
            }
            false => None,
        };
        // A .creds file's seed is in its block; a seed file may be decorated the same way,
        // or bare.
        let seed = match text.contains(SEED_BLOCK) {
            true => first_line_after(text, SEED_BLOCK),
            false => text.lines().map(str::trim).find(|l| l.starts_with('S')),
        };
        let Some(seed) = seed else {
            return Err("holds no nkey seed");
        };
        match nkeys::KeyPair::from_seed(seed) {
            Ok(key) if key.key_pair_type() == nkeys::KeyPairType::User => {}
            Ok(_) => return Err("holds the seed of an operator or account, not a user"),
            Err(_) => return Err("holds no valid nkey seed"),
        }
        Ok(UserKey {
            jwt,
            seed: seed.to_string(),
        })
    }

    /// What proves this user to a server that sent `nonce`.
    fn auth(&self, nonce: &[u8]) -> std::result::Result<Auth, AuthError> {
        // Checked when read: a seed that parsed once parses again.
        let key = nkeys::KeyPair::from_seed(&self.seed).map_err(AuthError::new)?;
        let mut auth = Auth::new();
        auth.signature = Some(key.sign(nonce).map_err(AuthError::new)?);
        match &self.jwt {
            Some(jwt) => auth.jwt = Some(jwt.clone()),
            None => auth.nkey = Some(key.public_key()),
        }
        Ok(auth)
    }

    /// The client's options proving the node with the key in `file` at every connect,
    /// read again each time (`self`: the key read at start).
    pub(crate) fn options(self, file: PathBuf) -> ConnectOptions {
        let last = Arc::new(Mutex::new(self));
        ConnectOptions::with_auth_callback(move |nonce| {
            // A file of a few hundred bytes, read once per connect: not worth a thread.
            let key = match UserKey::read(&file) {
                Ok(key) => {
                    let mut last = last.lock();
                    if *last != key {
                        tracing::info!("proving this node with the new key in {}", file.display());
                        *last = key.clone();
                    }
                    key
                }
                Err(e) => {
                    tracing::warn!("{e}; proving this node with the key read before");
                    last.lock().clone()
                }
            };
            std::future::ready(key.auth(&nonce))
        })
    }
}

/// The first line with text after the line holding `marker`, unless it is the block's
/// end (`------END …`: a JWT or seed never starts with a dash).
fn first_line_after<'t>(text: &'t str, marker: &str) -> Option<&'t str> {
    let mut lines = text.lines().map(str::trim);
    lines.find(|l| l.contains(marker))?;
    lines
        .find(|l| !l.is_empty())
        .filter(|l| !l.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Nats;
    use crate::cluster::testing::{NatsServer, Operator};

    #[test]
    fn a_creds_file_and_a_seed_are_read() {
        let operator = Operator::new().unwrap();
        let creds = operator.user_creds("node-a", None);
        let key = UserKey::parse(&creds).unwrap();
        assert!(key.jwt.is_some());
        assert!(creds.contains(&key.seed));
        let seed = nkeys::KeyPair::new_user().seed().unwrap();
        let bare = UserKey::parse(&format!("\n{seed}\n")).unwrap();
        assert_eq!((bare.jwt, bare.seed), (None, seed));
        // The rest of what is refused: `address`'s tests, through the file.
        let empty = "-----BEGIN NATS USER JWT-----\n------END NATS USER JWT------\n";
        assert_eq!(
            UserKey::parse(empty).err(),
            Some("holds an empty JWT block")
        );
    }

    /// Writes `text` to `file` as an operator replacing it would: whole, at once.
    fn replace(file: &Path, text: &str) {
        let next = file.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, file).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_whose_jwt_expires_reconnects_with_the_creds_that_replaced_it() {
        let node = "node-a".parse().unwrap();
        let operator = Operator::new().unwrap();
        let config = operator.config_file();
        let mut server = NatsServer::start_with(&["-c", config.to_str().unwrap()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.creds");
        let expires = chrono::Utc::now() + chrono::Duration::seconds(3);
        std::fs::write(&file, operator.user_creds("node-a", Some(expires))).unwrap();
        let address = server
            .url()
            .parse::<crate::cluster::ClusterAddress>()
            .unwrap()
            .with_credentials_file(&file)
            .unwrap();
        let nats = Nats::connect_to(&address, &node).await.unwrap();
        nats.check_schema().await.unwrap();

        // Connected `times` in all, and answering.
        let back = |times: u64, what: &'static str| {
            let nats = nats.clone();
            async move {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                loop {
                    let stats = nats.client.statistics();
                    let connects = stats.connects.load(std::sync::atomic::Ordering::Relaxed);
                    if connects >= times && nats.check_schema().await.is_ok() {
                        return;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{what}: {connects} connects, {:?}",
                        nats.client.connection_state()
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        };

        // The operator reissues the user before its JWT expires. The server closes the
        // expired user's connection; the node comes back with the new JWT and goes on.
        replace(&file, &operator.user_creds("node-a", None));
        back(2, "after the first JWT expired").await;

        // The file caught half written at a reconnect: the key read last serves.
        replace(&file, "-----BEGIN NATS USER JWT-----\n");
        server.stop();
        server.resume().unwrap();
        back(3, "after a restart of NATS").await;
    }
}
