//! Automatic certificates over ACME (RFC 8555) with HTTP-01 challenges, through
//! `instant-acme`: one account per directory, kept in the store's [`AcmeStore`] (so a
//! cluster orders under one account whichever node acts), and one order per domain.
//!
//! An order publishes each challenge's key authorization in the store, where every
//! node's router answers it (`router/acme_challenge.rs`), tells the CA it is ready, waits
//! for the order to be ready with growing delays, finalizes it with a request for a new
//! key (ECDSA P-256, made here for this certificate alone), downloads the chain, and
//! removes its challenges whatever the outcome.
//!
//! - `http.rs`: the client's HTTPS (webpki roots + `--acme-ca`);
//! - `renewal.rs`: when a certificate is ordered again.

mod http;
mod renewal;

pub use renewal::renewal_due;

use anyhow::Context;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, Order, OrderStatus, RetryPolicy,
};
use std::sync::Arc;
use std::time::Duration;
use wdeploy_core::Domain;
use wdeploy_store::AcmeStore;

/// Let's Encrypt's production directory, `--acme-directory`'s default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// How long an order may wait for its challenges to be validated.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an order may wait for its certificate once finalized.
const ISSUANCE_TIMEOUT: Duration = Duration::from_secs(120);

/// The host's ACME settings (`wdeploy host --acme-directory`, `--acme-email`, `--acme-ca`).
#[derive(Debug, Clone)]
pub struct AcmeOptions {
    /// The CA's directory URL (https).
    pub directory: String,
    /// Who the CA may write to about the account's certificates (expiry, incidents).
    pub email: Option<String>,
    /// Certificates (PEM) trusted for the directory's own TLS besides the webpki roots:
    /// a test CA's (pebble's). Never trusted for apps.
    pub extra_roots_pem: Vec<u8>,
}

impl Default for AcmeOptions {
    fn default() -> AcmeOptions {
        AcmeOptions {
            directory: LETS_ENCRYPT.to_string(),
            email: None,
            extra_roots_pem: Vec::new(),
        }
    }
}

/// A certificate just issued, in PEM: the chain (leaf first) and its new private key
/// (PKCS#8).
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Orders certificates from one ACME directory.
pub struct AcmeClient {
    directory: String,
    contact: Option<String>,
    http: http::AcmeHttp,
    store: Arc<dyn AcmeStore>,
    /// The account, once loaded or made (orders wait for the first to have it).
    account: tokio::sync::Mutex<Option<Account>>,
}

impl AcmeClient {
    /// A client for `options.directory`; checks the options (an unreadable `--acme-ca`,
    /// a directory that is not https, an email that is not one) without contacting the
    /// directory, which happens at the first order.
    pub fn new(options: &AcmeOptions, store: Arc<dyn AcmeStore>) -> anyhow::Result<AcmeClient> {
        let directory: ::http::Uri = options
            .directory
            .parse()
            .with_context(|| format!("--acme-directory {} is not a URL", options.directory))?;
        anyhow::ensure!(
            directory.scheme_str() == Some("https") && directory.host().is_some(),
            "--acme-directory must be an https:// URL (ACME runs over HTTPS), not {}",
            options.directory
        );
        if let Some(email) = &options.email {
            anyhow::ensure!(
                valid_email(email),
                "--acme-email {email} is not an email address (NAME@DOMAIN)"
            );
        }
        Ok(AcmeClient {
            directory: options.directory.clone(),
            contact: options.email.as_ref().map(|e| format!("mailto:{e}")),
            http: http::AcmeHttp::new(&options.extra_roots_pem)?,
            store,
            account: tokio::sync::Mutex::new(None),
        })
    }

    /// The directory orders go to.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// Orders a certificate for `domain` and waits for it. The error says which step
    /// failed and what the CA said.
    pub async fn issue(&self, domain: &Domain) -> anyhow::Result<Issued> {
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(domain.to_string())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .with_context(|| {
                format!("ordering a certificate for {domain} at {}", self.directory)
            })?;
        let mut tokens = Vec::new();
        let issued = self.complete(&mut order, domain, &mut tokens).await;
        for token in tokens {
            if let Err(e) = self.store.remove_challenge(&token).await {
                // It expires by itself (CHALLENGE_TTL).
                tracing::warn!(%domain, "removing an ACME challenge: {e}");
            }
        }
        issued
    }

    /// Everything after the order is placed: the challenges (their tokens pushed to
    /// `tokens` as they are published), validation, finalization, the chain.
    async fn complete(
        &self,
        order: &mut Order,
        domain: &Domain,
        tokens: &mut Vec<String>,
    ) -> anyhow::Result<Issued> {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.with_context(|| format!("reading the authorization of {domain}"))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => anyhow::bail!("the CA's authorization for {domain} is {other:?}"),
            }
            let mut challenge =
                authorization
                    .challenge(ChallengeType::Http01)
                    .ok_or_else(|| {
                        anyhow::anyhow!("the CA offers no HTTP-01 challenge for {domain}")
                    })?;
            let key_authorization = challenge.key_authorization();
            self.store
                .put_challenge(&challenge.token, key_authorization.as_str())
                .await
                .context("publishing the HTTP-01 challenge")?;
            tokens.push(challenge.token.clone());
            challenge
                .set_ready()
                .await
                .with_context(|| format!("telling the CA the challenge for {domain} is ready"))?;
        }
        let waiting = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(VALIDATION_TIMEOUT);
        let status = order
            .poll_ready(&waiting)
            .await
            .with_context(|| format!("waiting for the CA to validate {domain}"))?;
        if status != OrderStatus::Ready {
            anyhow::bail!(
                "the CA did not validate {domain}: {}",
                why_invalid(order).await
            );
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("making the certificate's key")?;
        let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])
            .context("the certificate request")?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .context("signing the certificate request")?;
        order
            .finalize_csr(csr.der())
            .await
            .with_context(|| format!("finalizing the order for {domain}"))?;
        let issuing = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(ISSUANCE_TIMEOUT);
        let chain_pem = order
            .poll_certificate(&issuing)
            .await
            .with_context(|| format!("downloading the certificate for {domain}"))?;
        Ok(Issued {
            chain_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// The account at this directory: the store's, or one made now and kept there (if
    /// another node made one meanwhile, that one).
    async fn account(&self) -> anyhow::Result<Account> {
        let mut cached = self.account.lock().await;
        if let Some(account) = &*cached {
            return Ok(account.clone());
        }
        let stored = self
            .store
            .account(&self.directory)
            .await
            .context("reading the ACME account")?;
        let account = match stored {
            Some(credentials) => self.restore(&credentials).await?,
            None => {
                let contact: Vec<&str> = self.contact.iter().map(String::as_str).collect();
                let (account, credentials) =
                    Account::builder_with_http(Box::new(self.http.clone()))
                        .create(
                            &NewAccount {
                                contact: &contact,
                                terms_of_service_agreed: true,
                                only_return_existing: false,
                            },
                            self.directory.clone(),
                            None,
                        )
                        .await
                        .with_context(|| format!("making an ACME account at {}", self.directory))?;
                let mine = serde_json::to_string(&credentials)?;
                let kept = self
                    .store
                    .save_account(&self.directory, mine.clone())
                    .await
                    .context("keeping the ACME account")?;
                if kept == mine {
                    account
                } else {
                    self.restore(&kept).await?
                }
            }
        };
        *cached = Some(account.clone());
        Ok(account)
    }

    async fn restore(&self, credentials: &str) -> anyhow::Result<Account> {
        let credentials: AccountCredentials =
            serde_json::from_str(credentials).context("the stored ACME account is unreadable")?;
        Account::builder_with_http(Box::new(self.http.clone()))
            .from_credentials(credentials)
            .await
            .with_context(|| format!("loading the ACME account at {}", self.directory))
    }
}

/// What the CA said about an order's failed challenges (an order is invalid when one of
/// its authorizations is).
async fn why_invalid(order: &mut Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        for challenge in &state.challenges {
            if let Some(problem) = &challenge.error {
                reasons.push(problem.to_string());
            }
        }
    }
    if reasons.is_empty() {
        "the order became invalid".to_string()
    } else {
        reasons.join("; ")
    }
}

/// `NAME@DOMAIN`, printable, at most 254 characters.
fn valid_email(email: &str) -> bool {
    email.len() <= 254
        && email.split_once('@').is_some_and(|(name, domain)| {
            !name.is_empty() && domain.contains('.') && !domain.contains('@')
        })
        && email.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path) -> Arc<dyn AcmeStore> {
        let me = wdeploy_store::NodeInfo {
            name: "test".parse().unwrap(),
            advertise: String::new(),
            started_at: chrono::Utc::now(),
            version: String::new(),
            leaving: false,
        };
        wdeploy_store::embedded::open(dir, me).unwrap().acme
    }

    fn options(directory: &str, email: Option<&str>) -> AcmeOptions {
        AcmeOptions {
            directory: directory.to_string(),
            email: email.map(str::to_string),
            extra_roots_pem: Vec::new(),
        }
    }

    #[test]
    fn options_are_checked_before_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let error = |o: &AcmeOptions| {
            let client = AcmeClient::new(o, store(dir.path()));
            client.err().map(|e| e.to_string())
        };
        assert_eq!(error(&AcmeOptions::default()), None);
        assert_eq!(
            error(&options(
                "https://127.0.0.1:14000/dir",
                Some("ops@example.com")
            )),
            None
        );
        let plain = error(&options("http://acme.example/dir", None)).unwrap();
        assert!(plain.contains("must be an https:// URL"), "{plain}");
        let email = error(&options(LETS_ENCRYPT, Some("ops at example.com"))).unwrap();
        assert!(email.contains("is not an email address"), "{email}");
        assert!(!valid_email("@example.com"));
        assert!(!valid_email("a@b@example.com"));
        assert!(valid_email("a.b+c@example.com"));
    }
}
