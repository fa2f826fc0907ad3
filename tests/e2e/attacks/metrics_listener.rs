//! The listener of `wdeploy host --metrics ADDR` (no token) against slowloris, floods of
//! connections and oversized heads: the same caps and deadlines as the router and the API.

use super::listeners::{assert_refused, slowloris_crowd, still_open};
use crate::fixture::*;
use std::io::Write;
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
    let head = |pad: usize| {
        let mut head = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Pad: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', pad));
        head.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        head
    };
    let mut fits = connect_from(Ipv4Addr::LOCALHOST, port);
    fits.write_all(&head(40_000))
        .expect("send 40 KB of headers");
    let answer = read_until_closed(&mut fits, SOON).expect("answered and closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "40 KB: {answer:?}");
    let mut too_big = connect_from(Ipv4Addr::LOCALHOST, port);
    let _ = too_big.write_all(&head(400_000));
    let answer =
        read_until_closed(&mut too_big, SOON).unwrap_or_else(|e| panic!("400 KB of headers {e}"));
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "400 KB: {answer:?}"
    );

    // And it still answers, as do the API and the router.
    assert_eq!(get(&scrape_url).0, 200);
    host.ok(&["apps"]);
}
