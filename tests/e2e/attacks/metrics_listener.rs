//! The listener of `wdeploy host --metrics ADDR` (no token) against slowloris, floods of
//! connections and oversized heads: the same caps and deadlines as the router and the API.

use super::listeners::{assert_refused, oversized_heads_are_refused, slowloris_crowd, still_open};
use crate::fixture::*;
use std::net::Ipv4Addr;

#[test]
fn the_metrics_listener_holds_attackers_within_its_caps() {
    raise_fd_limit();
    let host = TestHost::start_with(&[
        "--metrics",
        "127.0.0.1:0",
        "--max-connections-per-ip",
        "100",
        "--header-timeout",
        "5",
    ]);
    let port = host.metrics_port();
    let scrape_url = format!("http://127.0.0.1:{port}/metrics");

    // A flood of slow heads from one address: held up to its cap, the next refused at
    // once, and a scraper from another address still answered.
    let attackers = slowloris_crowd(port, 2, 100, 100, 48 << 10);
    assert_refused(Ipv4Addr::new(127, 0, 0, 2), port);
    let (status, text) = get(&scrape_url);
    assert_eq!(status, 200);
    assert!(text.contains("wdeploy_uptime_seconds"), "{text}");

    // Heads that never finish are closed at the header timeout.
    poll_until(
        "the slow heads closed at the header timeout",
        SOON,
        || match still_open(&attackers) {
            0 => Ok(()),
            open => Err(format!("{open} still open")),
        },
    );

    // A head past 64 KiB: a 431 (or a close) before it is all read; 40 KB still served.
    oversized_heads_are_refused(&[("metrics", port, "/metrics", "HTTP/1.1 200")]);

    // And it still answers, as do the API and the router.
    assert_eq!(get(&scrape_url).0, 200);
    host.ok(&["apps"]);
}
