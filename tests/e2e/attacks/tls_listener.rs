//! The HTTPS listener (`--listen-tls`) against handshakes that never finish, floods of
//! connections, bytes that are not TLS and heads past the limit over HTTP/2: the same
//! caps and deadlines as the plain router.

use super::listeners::{assert_refused, still_open};
use crate::fixture::*;
use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

/// The first bytes of a TLS record (a handshake, TLS 1.0 framing): a client stalling in
/// its handshake sends this much and no more.
const RECORD_START: &[u8] = &[0x16, 0x03, 0x01];

#[test]
fn the_https_listener_holds_attackers_within_its_caps() {
    raise_fd_limit();
    let ca = CertAuthority::new("wdeploy test CA");
    let host = https_host(
        &ca,
        &["faults"],
        &["--max-connections-per-ip", "100", "--header-timeout", "5"],
    );
    host.create_and_push("faults", faults_app().path());
    let port = host.https_port();
    let client = HttpsTarget {
        port,
        server_name: "faults.localhost",
        root_pem: &ca.pem,
        alpn: Alpn::H2,
    };

    // A flood of handshakes that stall after their first bytes, from one address: held up
    // to its cap, the next refused at once, and a client from another address served.
    let stalled: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut conn = connect_from(Ipv4Addr::new(127, 0, 0, 2), port);
            conn.write_all(RECORD_START).expect("start a handshake");
            conn
        })
        .collect();
    assert_refused(Ipv4Addr::new(127, 0, 0, 2), port);
    let served = client.try_request("GET", "/", &[]).expect("served");
    assert_eq!((served.status, served.body.as_str()), (200, "ok\n"));

    // Handshakes that never finish are closed at the header timeout: --header-timeout's
    // 5 s, well before the 30 s default would close them.
    poll_until(
        "the stalled handshakes closed at the header timeout",
        Duration::from_secs(20),
        || match still_open(&stalled) {
            0 => Ok(()),
            open => Err(format!("{open} still open")),
        },
    );

    // Bytes that are not TLS end their connection at once (before any deadline).
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let _ = garbage.write_all(&vec![b'G'; 100 << 10]);
    read_until_closed(&mut garbage, Duration::from_secs(3))
        .expect("closed after bytes that are not TLS");

    // A head past 64 KiB over HTTP/2 is refused (431 or the stream reset), as over
    // HTTP/1.1; 40 KB of headers are still served.
    let big = "a".repeat(80 << 10);
    match client.try_request("GET", "/", &[("x-pad", &big)]) {
        Ok(answer) => assert_eq!(answer.status, 431, "{answer:?}"),
        Err(refused) => assert!(!refused.contains("TLS handshake"), "{refused}"),
    }
    let fine = "a".repeat(40 << 10);
    let answer = client
        .try_request("GET", "/", &[("x-pad", &fine)])
        .expect("served");
    assert_eq!(answer.status, 200, "{answer:?}");

    // And the plain router and the API still answer.
    assert_eq!(host.get("faults", "/"), (200, "ok\n".into()));
    host.ok(&["apps"]);
}
