//! Where a guest's outgoing HTTP may go.
//!
//! Like a Heroku dyno, an app may call the internet, but a host on an edge node also
//! has neighbours a guest must not reach: the control API and router on loopback, the
//! node's private network, and cloud metadata endpoints on link-local addresses. On a
//! host, outgoing requests to such addresses are refused with `destination-IP-prohibited`;
//! `wdeploy dev` (a laptop, where calling a local service is the point) allows them.

use std::net::IpAddr;
use wasmtime_wasi_http::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Any address (`wdeploy dev`, or `wdeploy host --allow-private-egress`).
    Any,
    /// Public addresses only: every address the host name resolves to must be public.
    PublicOnly,
}

impl Egress {
    /// Refuses a request whose host is, or resolves to, a non-public address. The name is
    /// resolved again when the request connects; a name that changes its answer in
    /// between is a window this check does not close.
    pub async fn check(self, uri: &http::Uri) -> Result<(), Error> {
        if self == Egress::Any {
            return Ok(());
        }
        let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(80);
        let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| Error::DnsError {
                    rcode: None,
                    info_code: None,
                })?
                .map(|a| a.ip())
                .collect(),
        };
        if addresses.is_empty() || addresses.iter().any(|ip| !is_public(*ip)) {
            tracing::debug!(%host, "outgoing request to a non-public address refused");
            return Err(Error::DestinationIpProhibited);
        }
        Ok(())
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_host_refuses_loopback_and_dev_allows_it() {
        let uri: http::Uri = "http://127.0.0.1:7070/apps".parse().unwrap();
        assert!(matches!(
            Egress::PublicOnly.check(&uri).await,
            Err(Error::DestinationIpProhibited)
        ));
        let named: http::Uri = "http://localhost:7070/".parse().unwrap();
        assert!(Egress::PublicOnly.check(&named).await.is_err());
        assert!(Egress::Any.check(&uri).await.is_ok());
    }
}
