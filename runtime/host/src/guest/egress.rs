//! Where a guest's outgoing HTTP may go.
//!
//! Like a Heroku dyno, an app may call the internet, but a host on an edge node also
//! has neighbours a guest must not reach: the control API and router on loopback, the
//! node's private network, and cloud metadata endpoints on link-local addresses. On a
//! host, outgoing requests to such addresses are refused with `destination-IP-prohibited`;
//! `wdeploy dev` (a laptop, where calling a local service is the point) allows them.
//!
//! An app may also narrow where it goes with `[egress] allow` in `wdeploy.toml`: that
//! list is checked first, on the host name the guest asked for (before any DNS), and the
//! address rule still applies after resolution. A call the list refuses gets
//! `HTTP-request-denied`: wasi:http has no "destination not allowed" code, and this one,
//! which a proxy's policy refusal maps to, keeps it apart from `destination-IP-prohibited`
//! (the host's rule), so an app can tell its own list from the node's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use wasmtime_wasi_http::Error;
use wdeploy_core::egress::AllowList;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Any address (`wdeploy dev`, or `wdeploy host --allow-private-egress`).
    Any,
    /// Public addresses only: every address the host name resolves to must be public.
    PublicOnly,
}

impl Egress {
    /// The addresses a request to `uri` may connect to: the host's, resolved once here.
    /// Under `PublicOnly`, a host that is, or resolves to, any non-public address is
    /// refused. The sender connects to exactly these addresses and never resolves the name
    /// again, so a name that changes its answer after this check (DNS rebinding) cannot
    /// steer the connection to a private address.
    ///
    /// With an app's `allow` list, a host and port it does not name is refused first,
    /// with `HttpRequestDenied`, before anything is resolved.
    pub async fn resolve(
        self,
        uri: &http::Uri,
        allow: Option<&AllowList>,
    ) -> Result<Vec<SocketAddr>, Error> {
        let (host, port) = target(uri)?;
        if let Some(allow) = allow
            && !allow.allows(host, port)
        {
            return Err(Error::HttpRequestDenied);
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| Error::DnsError {
                    rcode: None,
                    info_code: None,
                })?
                .collect(),
        };
        if addresses.is_empty() {
            return Err(Error::DnsError {
                rcode: None,
                info_code: None,
            });
        }
        if self == Egress::PublicOnly && addresses.iter().any(|a| !is_public(a.ip())) {
            tracing::debug!(%host, "outgoing request to a non-public address refused");
            return Err(Error::DestinationIpProhibited);
        }
        Ok(addresses)
    }
}

/// The host (as the URI writes it: IPv6 literals in brackets) and port a request goes to:
/// the URI's port, or its scheme's default.
pub fn target(uri: &http::Uri) -> Result<(&str, u16), Error> {
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    Ok((host, uri.port_u16().unwrap_or(if https { 443 } else { 80 })))
}

/// IPv4 blocks a guest may not reach: the IANA IPv4 Special-Purpose Address Registry
/// (all of it, globally reachable entries included: they are infrastructure, not
/// services an app calls), multicast and the limited broadcast address.
const SPECIAL_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // shared address space (CGN)
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link local (cloud metadata)
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation (TEST-NET-1)
    (Ipv4Addr::new(192, 31, 196, 0), 24), // AS112-v4
    (Ipv4Addr::new(192, 52, 193, 0), 24), // AMT
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // deprecated 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(192, 175, 48, 0), 24), // direct delegation AS112
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation (TEST-NET-2)
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation (TEST-NET-3)
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, and 255.255.255.255
];

/// IPv6 blocks inside global unicast (2000::/3) a guest may not reach, from the IANA
/// IPv6 Special-Purpose Address Registry. Everything outside 2000::/3 (loopback,
/// unspecified, IPv4-compatible `::/96`, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, discard
/// 100::/64, unique local fc00::/7, link local fe80::/10, site local fec0::/10,
/// multicast, SRv6 5f00::/16) is refused as well; IPv4-mapped addresses are judged as
/// the IPv4 address they carry.
const SPECIAL_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments, Teredo
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16), // 6to4 (wraps any IPv4 address)
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation
];

/// Whether an address is on the public internet: in no special-purpose block.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !SPECIAL_V4
            .iter()
            .any(|(net, len)| in_prefix(u32::from(v4).into(), u32::from(*net).into(), *len, 32)),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let bits = u128::from(v6);
            let global_unicast = in_prefix(bits, 0x2000 << 112, 3, 128);
            global_unicast
                && !SPECIAL_V6
                    .iter()
                    .any(|(net, len)| in_prefix(bits, u128::from(*net), *len, 128))
        }
    }
}

/// Whether the top `len` of `width` bits of `addr` are those of `net`.
fn in_prefix(addr: u128, net: u128, len: u8, width: u32) -> bool {
    let host_bits = width - u32::from(len);
    (addr >> host_bits) == (net >> host_bits)
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
            // The gaps the attack found, and the rest of the registries.
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.7",
            "192.88.99.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "fec0::1",
            "fc00::1",
            "100::1",
            "5f00::1",
            "ff02::1",
            "::",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "8.8.8.8",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450::1",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_host_refuses_loopback_and_dev_allows_it() {
        let uri: http::Uri = "http://127.0.0.1:7070/apps".parse().unwrap();
        assert!(matches!(
            Egress::PublicOnly.resolve(&uri, None).await,
            Err(Error::DestinationIpProhibited)
        ));
        let named: http::Uri = "http://localhost:7070/".parse().unwrap();
        assert!(Egress::PublicOnly.resolve(&named, None).await.is_err());
        let allowed = Egress::Any
            .resolve(&uri, None)
            .await
            .expect("dev allows loopback");
        assert_eq!(allowed, vec!["127.0.0.1:7070".parse().unwrap()]);
        let https: http::Uri = "https://[::1]/".parse().unwrap();
        let allowed = Egress::Any
            .resolve(&https, None)
            .await
            .expect("dev allows loopback");
        assert_eq!(allowed, vec!["[::1]:443".parse().unwrap()]);
    }

    fn allow(patterns: &[&str]) -> AllowList {
        AllowList::try_from(patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[tokio::test]
    async fn the_allow_list_is_judged_on_the_name_before_dns_and_the_address_rule_stays() {
        let list = allow(&["127.0.0.1:7070", "*.invalid"]);
        let listed: http::Uri = "http://127.0.0.1:7070/".parse().unwrap();
        assert_eq!(
            Egress::Any.resolve(&listed, Some(&list)).await.unwrap(),
            vec!["127.0.0.1:7070".parse().unwrap()]
        );
        // Listed, but loopback: the host's rule still refuses it.
        assert!(matches!(
            Egress::PublicOnly.resolve(&listed, Some(&list)).await,
            Err(Error::DestinationIpProhibited)
        ));
        // Another port, or a name for the listed address: refused by the list.
        for unlisted in [
            "http://127.0.0.1:7071/",
            "http://localhost:7070/",
            "https://127.0.0.1/",
        ] {
            let uri: http::Uri = unlisted.parse().unwrap();
            assert!(
                matches!(
                    Egress::Any.resolve(&uri, Some(&list)).await,
                    Err(Error::HttpRequestDenied)
                ),
                "{unlisted}"
            );
        }
        // A listed name is resolved (`localhost`, from the hosts file); an unlisted one
        // is refused before any lookup.
        let names = allow(&["LOCALHOST.:7070"]);
        let named: http::Uri = "http://localhost:7070/".parse().unwrap();
        let addresses = Egress::Any.resolve(&named, Some(&names)).await.unwrap();
        assert!(
            addresses.iter().all(|a| a.ip().is_loopback()),
            "{addresses:?}"
        );
        let other: http::Uri = "http://wdeploy-test.invalid:7070/".parse().unwrap();
        assert!(matches!(
            Egress::Any.resolve(&other, Some(&names)).await,
            Err(Error::HttpRequestDenied)
        ));
    }
}
