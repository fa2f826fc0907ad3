//! Custom domains: `domains`, `domains:add` (`--acme`: with a certificate ordered over
//! ACME), `domains:remove` (which takes the domain's certificate too), and the router's
//! table of them.
//!
//! The store says which app has a domain (one at most); the router keeps a copy to route
//! by, read again from the store after each change made on this node and at each full
//! converge look (for changes made through other nodes or destroyed apps).

use super::Host;
use super::errors::{ControlError, Result};
use wdeploy_api::ApiError;
use wdeploy_api::server::Caller;
use wdeploy_api::wire::{CreateDomain, DomainInfo};
use wdeploy_core::{AppName, Domain};

impl Host {
    pub(super) async fn domain_list(&self, app: &AppName) -> Result<Vec<DomainInfo>> {
        let domains = self.store.control.domains(app).await?;
        Ok(domains
            .into_iter()
            .map(|d| self.domain_info(app, d))
            .collect())
    }

    pub(super) async fn domain_add(
        &self,
        app: &AppName,
        by: &Caller,
        req: CreateDomain,
    ) -> Result<DomainInfo> {
        let domain = Domain::normalize(&req.hostname)
            .map_err(|e| ControlError::Api(ApiError::invalid(e.to_string())))?;
        let own = self.router.domain();
        if domain.is_within(own) {
            return Err(ControlError::Api(ApiError::invalid(format!(
                "{domain} is under this host's own domain {own}: apps are served at NAME.{own} already"
            ))));
        }
        self.store.control.add_domain(app, &domain).await?;
        self.refresh_domains().await;
        let logs = &self.entry(app).runtime.logs;
        logs.platform("api", format!("Added domain {domain} by {by}"));
        if req.acme {
            self.cert_order(app, &domain).await?;
            logs.platform(
                "api",
                format!("Ordering a certificate for {domain} over ACME"),
            );
        }
        Ok(self.domain_info(app, domain))
    }

    pub(super) async fn domain_remove(
        &self,
        app: &AppName,
        by: &Caller,
        hostname: &str,
    ) -> Result<()> {
        let domain = Domain::normalize(hostname)
            .map_err(|e| ControlError::Api(ApiError::invalid(e.to_string())))?;
        self.store.control.remove_domain(app, &domain).await?;
        // Its certificate went with it in the store.
        self.refresh_domains().await;
        self.refresh_certs().await;
        self.entry(app)
            .runtime
            .logs
            .platform("api", format!("Removed domain {domain} by {by}"));
        Ok(())
    }

    /// Replaces the router's custom domains with the store's (a look that cannot read
    /// them changes nothing).
    pub(super) async fn refresh_domains(&self) {
        let _turn = self.domains_refresh.lock().await;
        match self.store.control.all_domains().await {
            Ok(all) => self.router.set_custom_domains(
                all.into_iter()
                    .map(|(domain, app)| (domain.to_string(), app.to_string())),
            ),
            Err(e) => tracing::debug!("reading the custom domains: {e}"),
        }
    }

    fn domain_info(&self, app: &AppName, hostname: Domain) -> DomainInfo {
        DomainInfo {
            hostname,
            cname: format!("{app}.{}", self.router.domain()),
        }
    }
}
