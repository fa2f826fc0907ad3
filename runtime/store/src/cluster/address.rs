//! Where a node finds its cluster's NATS server, and how it proves itself there.
//!
//! `wdeploy host --cluster` takes the URL NATS users know: `nats://USER:PASSWORD@HOST:PORT`
//! for a user and password, `nats://TOKEN@HOST:PORT` for a token, and `tls://…` for a
//! connection that must be TLS (a server configured with TLS upgrades `nats://` too). The
//! NATS client itself ignores credentials written in a URL, so they are taken out here and
//! given to it explicitly; and they never reach a log line or an error message, since this
//! type shows only the URL without them.
//!
//! A server in operator mode (accounts and users as JWTs, what `nsc` makes and managed
//! NATS services hand out) or with nkey users proves its users by a key instead:
//! `--cluster-creds FILE` gives a `.creds` file (the user's JWT and nkey seed) or a bare
//! user nkey seed. The file is checked when the host starts, so a wrong one stops it with
//! the file's name rather than failing on every reconnect, and read again at each
//! reconnect, so a reissued one is taken up without a restart ([`super::user_key`]).

use super::user_key::UserKey;
use crate::error::{Result, StoreError};
use async_nats::{ConnectOptions, ServerAddr};
use percent_encoding::percent_decode_str;
use std::path::{Path, PathBuf};

/// A cluster's NATS server: its URL without credentials, the credentials, and the
/// certificate authority to trust for its TLS certificate (else the system's roots).
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterAddress {
    url: String,
    auth: Auth,
    ca: Option<PathBuf>,
}

#[derive(Clone, PartialEq, Eq)]
enum Auth {
    None,
    Token(String),
    UserPassword(String, String),
    /// The key in a `.creds` file (a user JWT and its nkey seed) or a seed file, as read
    /// at start.
    Key {
        file: PathBuf,
        key: UserKey,
    },
}

impl ClusterAddress {
    /// Trust the TLS certificates `ca` (a PEM file) signed, rather than the system's roots.
    pub fn with_ca(mut self, ca: PathBuf) -> ClusterAddress {
        self.ca = Some(ca);
        self
    }

    /// Prove this node with the key in `file`: a `.creds` file (a user's JWT and nkey
    /// seed, as `nsc generate creds` writes it) or a user's nkey seed alone (`SU…`, as
    /// `nk -gen user` writes it). Refused when the URL holds credentials too, or when the
    /// file holds neither; no error shows the file's secret.
    pub fn with_credentials_file(mut self, file: &Path) -> Result<ClusterAddress> {
        if self.auth != Auth::None {
            return Err(StoreError::Invalid(
                "the cluster URL holds credentials and a credentials file was given too: \
                 give one of them"
                    .into(),
            ));
        }
        self.auth = Auth::Key {
            file: file.to_path_buf(),
            key: UserKey::read(file)?,
        };
        warn_if_others_read(file);
        Ok(self)
    }

    /// The URL, without credentials: what the client dials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client's options for this server: credentials and trusted roots.
    pub(crate) fn options(&self) -> Result<ConnectOptions> {
        let options = match &self.auth {
            Auth::None => ConnectOptions::new(),
            Auth::Token(token) => ConnectOptions::with_token(token.clone()),
            Auth::UserPassword(user, password) => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Auth::Key { file, key } => key.clone().options(file.clone()),
        };
        Ok(match &self.ca {
            Some(ca) => options.add_root_certificates(ca.clone()),
            None => options,
        })
    }
}

/// A key file others may read is a key others may have: said once, at start, as `ssh` does.
fn warn_if_others_read(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(file)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{} may be read by other users of this machine: chmod 600 it",
            file.display()
        );
    }
}

impl std::str::FromStr for ClusterAddress {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<ClusterAddress> {
        let invalid = |why: &str| {
            StoreError::Invalid(format!(
                "{why}: give the cluster's NATS server as nats://HOST:PORT (or tls://HOST:PORT), \
                 with USER:PASSWORD@ or TOKEN@ before the host if it asks for credentials"
            ))
        };
        let addr: ServerAddr = text.parse().map_err(|_| invalid("not a NATS URL"))?;
        if !matches!(addr.scheme(), "nats" | "tls") {
            return Err(invalid(&format!(
                "the scheme {}:// is not one NATS nodes use",
                addr.scheme()
            )));
        }
        if addr.host().is_empty() {
            return Err(invalid("no host"));
        }
        let decoded = |part: &str| {
            percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
        };
        let user = addr.username().map(decoded).transpose();
        let password = addr.password().map(decoded).transpose();
        let (Ok(user), Ok(password)) = (user, password) else {
            return Err(invalid("the credentials in the URL are not UTF-8"));
        };
        let auth = match (user, password) {
            (Some(user), Some(password)) => Auth::UserPassword(user, password),
            (Some(token), None) => Auth::Token(token),
            (None, Some(_)) => return Err(invalid("a password without a user")),
            (None, None) => Auth::None,
        };
        let mut url = addr.into_inner();
        // Neither can fail on a URL with a host, checked above.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(ClusterAddress {
            url: url.to_string().trim_end_matches('/').to_string(),
            auth,
            ca: None,
        })
    }
}

/// The URL without credentials, and which kind were given.
impl std::fmt::Display for ClusterAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)?;
        match self.auth {
            Auth::None => Ok(()),
            Auth::Token(_) => f.write_str(" (with a token)"),
            Auth::UserPassword(ref user, _) => write!(f, " (as {user})"),
            Auth::Key { ref file, .. } => {
                write!(f, " (with the key in {})", file.display())
            }
        }
    }
}

impl std::fmt::Debug for ClusterAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterAddress({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> ClusterAddress {
        text.parse().unwrap()
    }

    #[test]
    fn credentials_are_taken_out_of_the_url_and_never_shown() {
        let plain = parsed("nats://127.0.0.1:4222");
        assert_eq!(
            (plain.url(), plain.to_string().as_str()),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222")
        );
        assert!(plain.auth == Auth::None);

        let user = parsed("nats://wd:s%40cret@10.0.0.5:4222");
        assert_eq!(user.url(), "nats://10.0.0.5:4222");
        assert!(user.auth == Auth::UserPassword("wd".into(), "s@cret".into()));
        for shown in [user.to_string(), format!("{user:?}")] {
            assert!(!shown.contains("cret"), "{shown}");
            assert!(shown.contains("(as wd)"), "{shown}");
        }

        let token = parsed("tls://T0ken@nats.example.test:4222");
        assert_eq!(token.url(), "tls://nats.example.test:4222");
        assert!(token.auth == Auth::Token("T0ken".into()));
        assert_eq!(
            token.to_string(),
            "tls://nats.example.test:4222 (with a token)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_that_asks_for_credentials_gets_those_of_the_url() {
        use crate::cluster::{Nats, testing::NatsServer};
        let node = "node-a".parse().unwrap();
        let server = NatsServer::start_with(&["--user", "wd", "--pass", "s3cret"]).unwrap();
        let at = |creds: &str| format!("nats://{creds}127.0.0.1:{}", server.port);
        let nats = Nats::connect(&at("wd:s3cret@"), &node).await.unwrap();
        nats.check_schema().await.unwrap();
        for wrong in ["", "wd:wrong-one@", "wd@"] {
            let Err(refused) = Nats::connect(&at(wrong), &node).await else {
                panic!("{wrong:?} was let in");
            };
            let refused = refused.to_string();
            assert!(refused.contains("authorization"), "{wrong:?}: {refused}");
            assert!(!refused.contains("wrong-one"), "{refused}");
        }

        let server = NatsServer::start_with(&["--auth", "T0ken"]).unwrap();
        let at = |creds: &str| format!("nats://{creds}127.0.0.1:{}", server.port);
        let nats = Nats::connect(&at("T0ken@"), &node).await.unwrap();
        nats.check_schema().await.unwrap();
        assert!(Nats::connect(&at("other@"), &node).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_in_operator_mode_takes_a_creds_file_and_refuses_another_operators_user() {
        use crate::cluster::Nats;
        use crate::cluster::testing::{NatsServer, Operator};
        let node = "node-a".parse().unwrap();
        let operator = Operator::new().unwrap();
        let config = operator.config_file();
        let server = NatsServer::start_with(&["-c", config.to_str().unwrap()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("node.creds");
        std::fs::write(&creds, operator.user_creds("node-a", None)).unwrap();
        let address = parsed(&server.url()).with_credentials_file(&creds).unwrap();
        assert_eq!(
            address.to_string(),
            format!("{} (with the key in {})", server.url(), creds.display())
        );
        let nats = Nats::connect_to(&address, &node).await.unwrap();
        // JetStream answers: the account's JWT turned it on.
        nats.check_schema().await.unwrap();

        let stranger = dir.path().join("stranger.creds");
        let other = Operator::new().unwrap();
        let stranger_creds = other.user_creds("node-b", None);
        std::fs::write(&stranger, &stranger_creds).unwrap();
        let address = parsed(&server.url())
            .with_credentials_file(&stranger)
            .unwrap();
        let Err(refused) = Nats::connect_to(&address, &node).await else {
            panic!("another operator's user was let in");
        };
        let refused = refused.to_string();
        assert!(refused.contains("refused this node"), "{refused}");
        assert!(refused.contains("--cluster-creds FILE"), "{refused}");
        let seed = stranger_creds
            .lines()
            .find(|l| l.starts_with("SU"))
            .unwrap();
        assert!(!refused.contains(seed), "{refused}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_with_nkey_users_takes_a_seed_file() {
        use crate::cluster::Nats;
        use crate::cluster::testing::NatsServer;
        let node = "node-a".parse().unwrap();
        let user = nkeys::KeyPair::new_user();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("nkeys.conf");
        let conf = format!(
            "authorization {{ users = [ {{ nkey: {} }} ] }}\n",
            user.public_key()
        );
        std::fs::write(&config, conf).unwrap();
        let server = NatsServer::start_with(&["-c", config.to_str().unwrap()]).unwrap();
        let seed = dir.path().join("user.nk");
        std::fs::write(&seed, format!("{}\n", user.seed().unwrap())).unwrap();
        let address = parsed(&server.url()).with_credentials_file(&seed).unwrap();
        let nats = Nats::connect_to(&address, &node).await.unwrap();
        nats.check_schema().await.unwrap();

        let other = dir.path().join("other.nk");
        std::fs::write(&other, nkeys::KeyPair::new_user().seed().unwrap()).unwrap();
        let address = parsed(&server.url()).with_credentials_file(&other).unwrap();
        let refused = Nats::connect_to(&address, &node).await.err().unwrap();
        assert!(
            refused.to_string().contains("refused this node"),
            "{refused}"
        );
    }

    #[test]
    fn a_file_that_holds_no_user_key_is_refused_by_name_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let account_seed = nkeys::KeyPair::new_account().seed().unwrap();
        let cases = [
            (file("empty.creds", ""), "holds no nkey seed"),
            (file("account.nk", &account_seed), "not a user"),
            (
                file(
                    "typo.nk",
                    "SUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFL",
                ),
                "no valid nkey seed",
            ),
            (
                file(
                    "cut.creds",
                    "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n",
                ),
                "not a credentials file",
            ),
        ];
        for (path, why) in cases {
            let err = parsed("nats://127.0.0.1:4222")
                .with_credentials_file(&path)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(why), "{why}: {err}");
            assert!(err.contains(".creds file"), "{err}");
            assert!(
                !err.contains(&account_seed) && !err.contains("SUAIO"),
                "{err}"
            );
        }
        let missing = parsed("nats://127.0.0.1:4222")
            .with_credentials_file(&dir.path().join("nonexistent.creds"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nonexistent.creds"), "{missing}");
        let both = parsed("nats://wd:pw@127.0.0.1:4222")
            .with_credentials_file(&file("u.nk", &nkeys::KeyPair::new_user().seed().unwrap()))
            .unwrap_err()
            .to_string();
        assert!(both.contains("give one of them"), "{both}");
    }

    #[test]
    fn what_is_not_a_nats_url_is_refused_with_the_form_to_use() {
        for bad in [
            "",
            "http://127.0.0.1:4222",
            "nats://:pw@127.0.0.1:4222",
            "ws://h:1",
        ] {
            let err = bad.parse::<ClusterAddress>().unwrap_err().to_string();
            assert!(err.contains("nats://HOST:PORT"), "{bad:?}: {err}");
            assert!(!err.contains("pw"), "{err}");
        }
    }
}
