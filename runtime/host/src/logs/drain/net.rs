//! How a drain reaches its receiver: the platform's own connection (never a guest's),
//! to a URL its app's owner chose. So, as for guests' outgoing HTTP, a drain on a host
//! goes to public addresses only (a drain to `10.0.0.1:2379` or a cloud metadata address
//! would make the platform an SSRF proxy for its tenants): the name is resolved once, every
//! address judged ([`crate::guest::egress::is_public`]), and the connection made to a
//! judged address, so DNS rebinding cannot steer it. `wdeploy host
//! --allow-private-drains` lifts that (a receiver on the node's own network, tests).
//!
//! TLS (`syslog+tls`, `https`) is verified against the webpki roots plus the host's
//! `--drain-ca` certificates; it is never switched off.

use crate::guest::egress::is_public;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wdeploy_core::DrainUrl;

/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every drain of a host shares: where drains may go and whom they trust.
#[derive(Clone)]
pub struct DrainNetwork {
    tls: tokio_rustls::TlsConnector,
    allow_private: bool,
}

/// A connection to a receiver, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// The host's drain settings (`wdeploy host --drain-ca`, `--allow-private-drains`).
#[derive(Debug, Clone, Default)]
pub struct DrainOptions {
    /// Certificates (PEM) trusted besides the webpki roots.
    pub extra_roots_pem: Vec<u8>,
    /// Drains may go to loopback, private and link-local addresses.
    pub allow_private: bool,
}

impl DrainNetwork {
    pub fn new(options: &DrainOptions) -> anyhow::Result<DrainNetwork> {
        let config = crate::client_tls::client_config(&options.extra_roots_pem, "--drain-ca")?;
        Ok(DrainNetwork {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            allow_private: options.allow_private,
        })
    }

    /// Whether `url` may be added as a drain as far as can be told without resolving
    /// it: an IP address this host may not reach is refused at once.
    pub fn check_literal(&self, url: &DrainUrl) -> Result<(), String> {
        match url.host().parse::<IpAddr>() {
            Ok(ip) if !self.allowed(ip) => Err(refusal(url)),
            _ => Ok(()),
        }
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }

    /// A connection to the drain's receiver (TLS for the TLS schemes).
    pub async fn connect(&self, url: &DrainUrl) -> anyhow::Result<Box<dyn Stream>> {
        let addresses = self.resolve(url).await?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addresses[..]))
            .await
            .map_err(|_| anyhow::anyhow!("connecting timed out"))??;
        let _ = tcp.set_nodelay(true);
        if !url.scheme().tls() {
            return Ok(Box::new(tcp));
        }
        let name = match url.host().parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(url.host().to_string())?,
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(name, tcp))
            .await
            .map_err(|_| anyhow::anyhow!("the TLS handshake timed out"))??;
        Ok(Box::new(tls))
    }

    /// The addresses the drain's host resolves to, every one judged.
    async fn resolve(&self, url: &DrainUrl) -> anyhow::Result<Vec<SocketAddr>> {
        let (host, port) = (url.host(), url.port());
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port)).await?.collect(),
        };
        anyhow::ensure!(!addresses.is_empty(), "{host} resolves to no address");
        if addresses.iter().any(|a| !self.allowed(a.ip())) {
            anyhow::bail!("{}", refusal(url));
        }
        Ok(addresses)
    }
}

fn refusal(url: &DrainUrl) -> String {
    format!(
        "{} is not a public address: this host sends drains to public addresses only \
         (wdeploy host --allow-private-drains allows others)",
        url.host()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn private_destinations_are_refused_unless_allowed() {
        let public_only = DrainNetwork::new(&DrainOptions::default()).unwrap();
        for url in [
            "syslog://127.0.0.1:514",
            "https://169.254.169.254/latest",
            "syslog+tls://[::1]:6514",
            "http://10.0.0.1:8080",
        ] {
            let url: DrainUrl = url.parse().unwrap();
            let refused = public_only.check_literal(&url).unwrap_err();
            assert!(refused.contains("--allow-private-drains"), "{refused}");
            let error = public_only.connect(&url).await.err().unwrap().to_string();
            assert!(error.contains("not a public address"), "{error}");
        }
        // A name that resolves to loopback is refused when connecting.
        let named: DrainUrl = "syslog://localhost:9".parse().unwrap();
        assert!(public_only.check_literal(&named).is_ok());
        let error = public_only.connect(&named).await.err().unwrap().to_string();
        assert!(error.contains("not a public address"), "{error}");
        let public: DrainUrl = "syslog://1.1.1.1:514".parse().unwrap();
        assert!(public_only.check_literal(&public).is_ok());

        let allowed = DrainNetwork::new(&DrainOptions {
            allow_private: true,
            ..DrainOptions::default()
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: DrainUrl = format!("syslog://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        assert!(allowed.check_literal(&url).is_ok());
        allowed.connect(&url).await.unwrap();
    }

    #[test]
    fn drain_ca_must_hold_certificates() {
        let bad = DrainOptions {
            extra_roots_pem: b"not a certificate".to_vec(),
            ..DrainOptions::default()
        };
        assert!(DrainNetwork::new(&bad).is_err());
    }
}
