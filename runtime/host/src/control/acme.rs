//! The host's part of automatic certificates (ACME): every node's router answers the
//! HTTP-01 challenges of orders under way, from the store, whichever node ordered; and
//! the worker that orders and renews the certificates of domains added with `--acme`.
//!
//! The worker runs on every node, but only the live node whose name sorts first acts (a
//! cluster orders each certificate once; when that node dies the next one takes over at
//! its next look). It orders for every `StoredCert { source: Acme }` that has no
//! certificate yet, and again for one with less than a third of its lifetime left. A
//! failure is kept in the certificate's `acme_error` (shown by `certs`) and told in the
//! app's log, and that domain is tried again after a growing delay; the others go on.
//! Success puts the certificate (only if the domain still wants an ACME one: a
//! certificate the user brought meanwhile wins), refreshes this node's TLS table and
//! says so in the app's log.

use super::Host;
use crate::tls::acme::renewal_due;
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use wdeploy_core::Domain;
use wdeploy_store::{CertSource, StoredCert};

/// The longest the worker waits between looks (a change made on another node, a node
/// that stopped acting, a renewal due later than this).
const LOOK_EVERY: Duration = Duration::from_secs(60);
/// The shortest: right after an order, the next look sees what it put.
const MIN_PAUSE: Duration = Duration::from_secs(1);
/// After a domain's first failure it is tried again after this, then twice as long
/// each time, up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(10);
const MAX_RETRY: Duration = Duration::from_secs(3600);

/// A domain whose last order failed, and when it may be tried again.
struct Failing {
    failures: u32,
    retry_at: Instant,
}

/// How long after its `failures`th failure in a row a domain is tried again.
fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

impl Host {
    /// Lets the router answer `/.well-known/acme-challenge/TOKEN` from the store.
    pub(super) fn answer_acme_challenges(&self) {
        let acme = self.store.acme.clone();
        self.router
            .set_challenge_source(Arc::new(move |token: String| {
                let acme = acme.clone();
                Box::pin(async move {
                    match acme.challenge(&token).await {
                        Ok(answer) => answer,
                        Err(e) => {
                            tracing::warn!("reading an ACME challenge: {e}");
                            None
                        }
                    }
                })
            }));
    }

    /// Wakes the worker now (a domain was just added with `--acme` here).
    pub(super) fn wake_acme(&self) {
        self.acme_wake.notify_one();
    }

    /// The worker, until `stop`.
    pub(super) async fn acme_loop(&self, stop: CancellationToken) {
        let mut failing = HashMap::new();
        loop {
            let pause = self.acme_look(&mut failing).await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.acme_wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Whether this node is the one that orders: the live node whose name sorts first.
    fn orders_for_cluster(&self) -> bool {
        let me = &self.membership.me().name;
        let live = self.membership.live();
        live.iter()
            .map(|n| &n.name)
            .min()
            .is_none_or(|first| first == me)
    }

    /// One look: orders what is due (one domain after the other) and returns how long
    /// the worker may wait before the next look.
    async fn acme_look(&self, failing: &mut HashMap<Domain, Failing>) -> Duration {
        if !self.orders_for_cluster() {
            failing.clear();
            return LOOK_EVERY;
        }
        let certs = match self.store.certs.all_certs().await {
            Ok(certs) => certs,
            Err(e) => {
                tracing::debug!("the ACME worker cannot read the certificates: {e}");
                return LOOK_EVERY;
            }
        };
        let wanted: Vec<StoredCert> = certs
            .into_iter()
            .filter(|c| c.source == CertSource::Acme)
            .collect();
        failing.retain(|domain, _| wanted.iter().any(|c| &c.domain == domain));
        let mut next = LOOK_EVERY;
        for cert in wanted {
            let now = Utc::now();
            let due = match (cert.is_issued(), cert.not_after) {
                (true, Some(not_after)) => renewal_due(&cert.chain_pem, not_after),
                _ => None,
            };
            if let Some(due) = due
                && due > now
            {
                let wait = (due - now).to_std().unwrap_or(MIN_PAUSE);
                next = next.min(wait);
                continue;
            }
            if let Some(failed) = failing.get(&cert.domain) {
                let left = failed.retry_at.saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    next = next.min(left);
                    continue;
                }
            }
            match self.order_cert(&cert).await {
                Ok(()) => {
                    failing.remove(&cert.domain);
                    next = MIN_PAUSE;
                }
                Err(e) => {
                    let failed = failing.entry(cert.domain.clone()).or_insert(Failing {
                        failures: 0,
                        retry_at: Instant::now(),
                    });
                    failed.failures += 1;
                    let wait = retry_after(failed.failures);
                    failed.retry_at = Instant::now() + wait;
                    next = next.min(wait);
                    self.acme_failed(&cert, &format!("{e:#}"), wait).await;
                }
            }
        }
        next.max(MIN_PAUSE)
    }

    /// Orders `cert`'s domain and puts what comes back.
    async fn order_cert(&self, cert: &StoredCert) -> anyhow::Result<()> {
        let domain = &cert.domain;
        let issued = self.acme.issue(domain).await?;
        let checked =
            crate::tls::certificate::check(&issued.chain_pem, &issued.key_pem, domain, Utc::now())
                .map_err(|e| {
                    anyhow::anyhow!("the CA's certificate for {domain} is unusable: {e}")
                })?;
        if !self.still_acme(cert).await? {
            return Ok(());
        }
        let (issuer, not_after) = (checked.issuer.clone(), checked.not_after);
        self.store
            .certs
            .put_cert(StoredCert {
                domain: domain.clone(),
                app: cert.app.clone(),
                source: CertSource::Acme,
                chain_pem: issued.chain_pem,
                key_pem: issued.key_pem,
                issuer: issuer.clone(),
                not_after: Some(not_after),
                updated_at: Utc::now(),
                acme_error: None,
            })
            .await?;
        self.refresh_certs().await;
        tracing::info!(%domain, %issuer, %not_after, "ACME certificate issued");
        self.acme_line(
            cert,
            format!(
                "Certificate for {domain} issued by {issuer}, expires {}",
                not_after.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        )
        .await;
        Ok(())
    }

    /// Whether the app still wants an ACME certificate for the domain (not removed, not
    /// replaced by one the user brought).
    async fn still_acme(&self, cert: &StoredCert) -> anyhow::Result<bool> {
        let now = self.store.certs.certs(&cert.app).await;
        let now = match now {
            Ok(now) => now,
            Err(wdeploy_store::StoreError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        Ok(now
            .iter()
            .any(|c| c.domain == cert.domain && c.source == CertSource::Acme))
    }

    /// Records a failed order in the certificate (`certs` shows it) and the app's log.
    async fn acme_failed(&self, cert: &StoredCert, error: &str, retry: Duration) {
        let domain = &cert.domain;
        tracing::warn!(%domain, "ACME order failed: {error}");
        match self.still_acme(cert).await {
            Ok(true) => {
                let failed = StoredCert {
                    acme_error: Some(error.to_string()),
                    updated_at: Utc::now(),
                    ..cert.clone()
                };
                if let Err(e) = self.store.certs.put_cert(failed).await {
                    tracing::warn!(%domain, "recording the ACME failure: {e}");
                }
            }
            Ok(false) => return,
            Err(e) => tracing::warn!(%domain, "recording the ACME failure: {e}"),
        }
        let what = if cert.is_issued() {
            "renewed"
        } else {
            "issued"
        };
        self.acme_line(
            cert,
            format!(
                "Error: certificate for {domain} could not be {what}: {error} (next try in {}s)",
                retry.as_secs()
            ),
        )
        .await;
    }

    /// A `wdeploy[acme]` line in the app's log.
    async fn acme_line(&self, cert: &StoredCert, text: String) {
        if let Ok(entry) = self.existing(&cert.app).await {
            entry.runtime.logs.platform("acme", text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(retry_after(1), Duration::from_secs(10));
        assert_eq!(retry_after(2), Duration::from_secs(20));
        assert_eq!(retry_after(3), Duration::from_secs(40));
        assert_eq!(retry_after(10), MAX_RETRY);
        assert_eq!(retry_after(u32::MAX), MAX_RETRY);
    }
}
