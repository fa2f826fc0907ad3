//! The control API and the router at their edges: authentication, clear CLI errors,
//! body caps, and an app without web dynos.

use crate::fixture::*;

#[test]
fn wrong_token_gets_401_and_a_clear_cli_error() {
    let host = TestHost::start();
    let mut response = http().get(&format!("{}/apps", host.api)).call().unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body = response.body_mut().read_to_string().unwrap();
    assert!(body.contains("\"id\":\"unauthorized\""), "{body}");

    let out = host.cli_with_token("not-the-token", &["apps"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: invalid credentials"), "{err}");

    // Unknown app and bad names are clear errors too.
    let out = host.cli(&["releases", "-a", "ghost"]);
    assert!(
        stderr(&out).contains("app ghost not found"),
        "{}",
        stderr(&out)
    );
    let out = host.cli(&["apps:create", "../etc", "--no-link"]);
    assert!(
        stderr(&out).contains("not a valid app name"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn router_answers_h14_without_web_dynos_and_caps_api_bodies() {
    let host = TestHost::with_app("hello");
    host.ok(&["ps:scale", "web=0", "-a", "hello"]);
    assert_eq!(host.get("hello", "/").0, 503);
    let router = host.ok(&["logs", "--source", "router", "-n", "1", "-a", "hello"]);
    assert!(
        router.contains("at=error code=H14") && router.contains("status=503"),
        "{router}"
    );

    // Just over the 1 MiB cap, so the whole request fits in loopback buffers and the client
    // reads the 413 instead of a broken pipe when the host refuses it without reading.
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat((1 << 20) + 1024));
    let mut response = http()
        .post(&format!("{}/apps", host.api))
        .header("authorization", &format!("Bearer {}", host.token))
        .header("content-type", "application/json")
        .send(huge.as_bytes())
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body = response.body_mut().read_to_string().unwrap();
    assert!(body.contains("payload_too_large"), "{body}");

    // Blobs stream to disk, so their cap is checked against the declared length before
    // anything is read: a 300 MB upload is refused at once.
    use std::io::{Read as _, Write as _};
    let api = host.api.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(api).unwrap();
    let digest = format!("sha256:{}", "0".repeat(64));
    write!(
        conn,
        "PUT /blobs/{digest} HTTP/1.1\r\nhost: {api}\r\nauthorization: Bearer {}\r\n\
         content-length: 300000000\r\nconnection: close\r\n\r\n",
        host.token
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
}
