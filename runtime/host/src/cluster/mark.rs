//! The forwarding mark ([`FORWARDED_BY`]): what a node's router puts on a request it
//! forwards to another node, and how the receiving router tells it from an imitation.
//!
//! The mark makes the receiving router skip `force_https` and keep the scheme and port
//! the first router set, so a client able to forge it could pass its own
//! `X-Forwarded-Proto` to an app as the scheme of its connection. Trusting the sender's
//! address alone would trust every process that shares a node's address (a NAT, a shared
//! machine). So the mark carries a proof only a node can make: an HMAC-SHA256 under the
//! cluster's key ([`wdeploy_store::Nodes::cluster_key`]), which every node reads from the
//! store and no client or guest ever sees.
//!
//! The value is `NODE TIME PROOF`: the forwarding node, the Unix time (seconds) it
//! forwarded at, and the proof of those two with the request's method and path. A mark
//! read off the wire between two nodes is therefore good only for that method and path,
//! and only for [`FRESH_FOR`] either side of the receiver's clock: long enough for the
//! clocks of NTP-kept nodes to disagree, short enough that a copied mark soon expires.

use super::FORWARDED_BY;
use http::{HeaderValue, Method};
use ring::hmac;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wdeploy_store::ClusterKey;

/// How far the time in a mark may be from the receiver's clock, either way.
pub const FRESH_FOR: Duration = Duration::from_secs(60);

/// This node's signer and checker of forwarding marks.
pub struct ForwardMark {
    node: String,
    key: hmac::Key,
}

impl ForwardMark {
    /// Marks made as `node`, proved with the cluster's `key`.
    pub fn new(node: &str, key: &ClusterKey) -> ForwardMark {
        ForwardMark {
            node: node.to_string(),
            key: hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()),
        }
    }

    /// The mark for a request with `method` and `path` (path and query) forwarded now.
    pub fn sign(&self, method: &Method, path: &str) -> Option<HeaderValue> {
        self.sign_at(method, path, unix_now())
    }

    /// Whether `value` is a mark some node of this cluster made for a request with this
    /// `method` and `path`, within [`FRESH_FOR`] of now.
    pub fn holds(&self, value: &HeaderValue, method: &Method, path: &str) -> bool {
        self.holds_at(value, method, path, unix_now())
    }

    fn sign_at(&self, method: &Method, path: &str, at: u64) -> Option<HeaderValue> {
        let proof = hmac::sign(&self.key, &signed(&self.node, at, method, path));
        let value = format!("{} {at} {}", self.node, hex::encode(proof.as_ref()));
        HeaderValue::from_str(&value).ok()
    }

    fn holds_at(&self, value: &HeaderValue, method: &Method, path: &str, now: u64) -> bool {
        let Ok(value) = value.to_str() else {
            return false;
        };
        let mut parts = value.split(' ');
        let (Some(node), Some(at), Some(proof), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let (Ok(at), Ok(proof)) = (at.parse::<u64>(), hex::decode(proof)) else {
            return false;
        };
        at.abs_diff(now) <= FRESH_FOR.as_secs()
            && hmac::verify(&self.key, &signed(node, at, method, path), &proof).is_ok()
    }
}

/// What a proof covers. Lines, because none of the parts can hold a line break (a node
/// name is letters, digits and dashes; a method is a token; a path has no raw controls).
fn signed(node: &str, at: u64, method: &Method, path: &str) -> Vec<u8> {
    format!("{FORWARDED_BY}\n{node}\n{at}\n{method}\n{path}").into_bytes()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key() -> ClusterKey {
        ClusterKey::generate().unwrap()
    }

    /// Two nodes of one cluster.
    fn two_nodes() -> (ForwardMark, ForwardMark) {
        let key = key();
        let a = ForwardMark::new("node-a", &key);
        (a, ForwardMark::new("node-b", &key))
    }

    #[test]
    fn a_mark_holds_for_its_request_on_every_node_of_the_cluster() {
        let (a, b) = two_nodes();
        let mark = a.sign_at(&Method::GET, "/x?y=1", NOW).unwrap();
        assert!(mark.to_str().unwrap().starts_with("node-a 1800000000 "));
        assert!(b.holds_at(&mark, &Method::GET, "/x?y=1", NOW));
        assert!(b.holds_at(&mark, &Method::GET, "/x?y=1", NOW + 60));
        assert!(b.holds_at(&mark, &Method::GET, "/x?y=1", NOW - 60));
        // Made now and checked now, through the clock.
        let fresh = a.sign(&Method::POST, "/").unwrap();
        assert!(b.holds(&fresh, &Method::POST, "/"));
    }

    #[test]
    fn a_mark_does_not_hold_for_another_request_time_or_cluster() {
        let (a, b) = two_nodes();
        let mark = a.sign_at(&Method::GET, "/x", NOW).unwrap();
        assert!(
            !b.holds_at(&mark, &Method::POST, "/x", NOW),
            "another method"
        );
        assert!(!b.holds_at(&mark, &Method::GET, "/y", NOW), "another path");
        assert!(!b.holds_at(&mark, &Method::GET, "/x", NOW + 61), "too old");
        assert!(
            !b.holds_at(&mark, &Method::GET, "/x", NOW - 61),
            "too far ahead"
        );
        let elsewhere = ForwardMark::new("node-b", &self::key());
        assert!(
            !elsewhere.holds_at(&mark, &Method::GET, "/x", NOW),
            "another key"
        );
        // The node and time are covered by the proof: changing either breaks it.
        let text = mark.to_str().unwrap();
        let renamed = text.replacen("node-a", "node-c", 1);
        let retimed = text.replacen("1800000000", "1800000030", 1);
        for forged in [renamed, retimed] {
            let forged = HeaderValue::from_str(&forged).unwrap();
            assert!(!b.holds_at(&forged, &Method::GET, "/x", NOW), "{forged:?}");
        }
    }

    #[test]
    fn what_clients_send_as_a_mark_never_holds() {
        let b = ForwardMark::new("node-b", &key());
        let proof = "0".repeat(64);
        for sent in [
            "",
            "elsewhere",
            "node-a",
            "node-a 1800000000",
            &format!("node-a 1800000000 {proof}"),
            &format!("node-a 1800000000 {proof} extra"),
            &format!("node-a  1800000000 {proof}"),
            "node-a -1 00",
            "node-a 1800000000 not-hex",
            "node-a 99999999999999999999999 00",
        ] {
            let value = HeaderValue::from_str(sent).unwrap();
            assert!(!b.holds_at(&value, &Method::GET, "/", NOW), "{sent:?}");
        }
        let binary = HeaderValue::from_bytes(b"node-a \xff 00").unwrap();
        assert!(!b.holds_at(&binary, &Method::GET, "/", NOW));
    }
}
