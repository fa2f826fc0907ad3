//! Where a node finds its cluster's NATS server, and how it proves itself there.
//!
//! `wdeploy host --cluster` takes the URL NATS users know: `nats://USER:PASSWORD@HOST:PORT`
//! for a user and password, `nats://TOKEN@HOST:PORT` for a token, and `tls://…` for a
//! connection that must be TLS (a server configured with TLS upgrades `nats://` too). The
//! NATS client itself ignores credentials written in a URL, so they are taken out here and
//! given to it explicitly; and they never reach a log line or an error message, since this
//! type shows only the URL without them.

use crate::error::{Result, StoreError};
use async_nats::{ConnectOptions, ServerAddr};
use percent_encoding::percent_decode_str;
use std::path::PathBuf;

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
}

impl ClusterAddress {
    /// Trust the TLS certificates `ca` (a PEM file) signed, rather than the system's roots.
    pub fn with_ca(mut self, ca: PathBuf) -> ClusterAddress {
        self.ca = Some(ca);
        self
    }

    /// The URL, without credentials: what the client dials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client's options for this server: credentials and trusted roots.
    pub(crate) fn options(&self) -> ConnectOptions {
        let options = match &self.auth {
            Auth::None => ConnectOptions::new(),
            Auth::Token(token) => ConnectOptions::with_token(token.clone()),
            Auth::UserPassword(user, password) => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
        };
        match &self.ca {
            Some(ca) => options.add_root_certificates(ca.clone()),
            None => options,
        }
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
