//! HTTPS on the router: `--listen-tls` serves the apps over TLS by SNI, with HTTP/2 or
//! HTTP/1.1 as ALPN agrees (and HTTP/2 in the clear with prior knowledge); apps learn the
//! scheme from `X-Forwarded-Proto`, may ask for plain requests to be redirected, and
//! router lines say which protocol each request came over.

use crate::fixture::*;

#[test]
fn apps_answer_over_https_with_http2_and_http1_and_know_the_scheme() {
    let ca = CertAuthority::new("wdeploy test CA");
    let host = https_host(&ca, &["faults"], &[]);
    host.create_and_push("faults", faults_app().path());
    let port = host.https_port();
    let faults = HttpsTarget {
        port,
        server_name: "faults.localhost",
        root_pem: &ca.pem,
        alpn: Alpn::H2,
    };

    for (alpn, version, protocol) in [
        (Alpn::H2, http::Version::HTTP_2, "protocol=h2"),
        (Alpn::Http1, http::Version::HTTP_11, "protocol=https"),
    ] {
        let answer = faults.with(alpn).request(
            "GET",
            &format!("/header?name=x-forwarded-proto&via={protocol}"),
        );
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.version, version, "{answer:?}");
        assert_eq!(answer.body, "https\n", "{answer:?}");
        let line = poll_until("the router line of the HTTPS request", SOON, || {
            let logs = host.ok(&["logs", "--source", "router", "-a", "faults"]);
            logs.lines()
                .find(|l| l.contains(&format!("via={protocol}")))
                .map(str::to_string)
        });
        assert!(line.ends_with(protocol), "{line}");
        assert!(line.contains("status=200"), "{line}");
    }

    // The plain listener still says http.
    let (status, body) = host.get("faults", "/header?name=x-forwarded-proto");
    assert_eq!((status, body.as_str()), (200, "http\n"));

    // A name the host has no certificate for gets no certificate at all (not another
    // app's), and a client that does not trust the CA refuses the host's.
    let unknown = HttpsTarget {
        server_name: "www.example.test",
        ..faults
    }
    .try_request("GET", "/", &[]);
    assert_no_certificate(&unknown);
    let other = CertAuthority::new("someone else");
    let distrusted = HttpsTarget {
        root_pem: &other.pem,
        ..faults
    }
    .try_request("GET", "/", &[]);
    assert!(
        distrusted
            .as_ref()
            .is_err_and(|e| e.contains("TLS handshake") && e.contains("UnknownIssuer")),
        "{distrusted:?}"
    );
}

#[test]
fn force_https_redirects_plain_requests_and_h2c_is_served_in_the_clear() {
    let ca = CertAuthority::new("wdeploy test CA");
    let host = https_host(&ca, &["secure", "plain"], &[]);
    let port = host.https_port();
    host.create_and_push(
        "secure",
        faults_app()
            .with_settings("[web]\nforce_https = true\n")
            .path(),
    );
    host.create_and_push("plain", faults_app().path());

    // GET and HEAD get a 301, the rest a 308 (which keeps the method and the body).
    let get = raw_get(host.router_port, "secure.localhost", "/a?b=c");
    assert_eq!(get.status, 301, "{}", get.text());
    assert_eq!(
        get.header("location"),
        Some(format!("https://secure.localhost:{port}/a?b=c").as_str())
    );
    let posted = raw_request(host.router_port, "POST", "secure.localhost", "/form");
    assert_eq!(posted.status, 308, "{}", posted.text());
    // A client cannot pass for another node's router to skip the redirect, whatever it
    // sends: only another node's TLS connection carries forwarded requests.
    let spoofed = raw_request_on(
        std::net::TcpStream::connect(("127.0.0.1", host.router_port)).expect("connect"),
        "GET",
        "secure.localhost",
        "/",
        "X-Wdeploy-Forwarded: elsewhere\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n",
    );
    assert_eq!(spoofed.status, 301, "{}", spoofed.text());
    // Over HTTPS it is served; an app without the setting is served over plain HTTP.
    let secure = HttpsTarget {
        port,
        server_name: "secure.localhost",
        root_pem: &ca.pem,
        alpn: Alpn::H2,
    };
    let answer = secure.request("GET", "/");
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n"));
    assert_eq!(host.get("plain", "/"), (200, "ok\n".into()));
    let logs = host.ok(&["logs", "--source", "router", "-a", "secure"]);
    assert!(
        logs.lines()
            .any(|l| l.contains("path=\"/a?b=c\"") && l.contains("status=301")),
        "{logs}"
    );

    // HTTP/2 with prior knowledge on the plain listener.
    let h2c = h2c_get(host.router_port, "plain.localhost", "/");
    assert_eq!(h2c, (200, "ok\n".to_string()));
    let line = poll_until("the h2c router line", SOON, || {
        let logs = host.ok(&["logs", "--source", "router", "-a", "plain"]);
        logs.lines()
            .find(|l| l.contains("protocol=h2c"))
            .map(str::to_string)
    });
    assert!(line.contains("status=200"), "{line}");
}

#[test]
fn the_api_over_https_marks_the_dashboard_cookie_secure_and_the_cli_trusts_a_private_ca() {
    let ca = CertAuthority::new("wdeploy test CA");
    let api = ca.leaf("api", &["127.0.0.1"]);
    let root = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(root.path(), &ca.pem).expect("write the root");
    let host = TestHost::start_with(&[
        "--api-tls-cert",
        api.cert.to_str().expect("path"),
        "--api-tls-key",
        api.key.to_str().expect("path"),
    ]);
    assert!(host.api.starts_with("https://127.0.0.1:"), "{}", host.api);

    // The CLI checks the API's certificate: against the public roots it is refused,
    // with SSL_CERT_FILE naming the private CA it is trusted.
    let refused = host.command(&["apps"]).output().expect("wdeploy apps");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("cannot reach the host"),
        "{}",
        stderr(&refused)
    );
    let trusted = host
        .command(&["apps:create", "secure", "--no-link"])
        .env("SSL_CERT_FILE", root.path())
        .output()
        .expect("wdeploy apps:create");
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    let missing = host
        .command(&["apps"])
        .env("SSL_CERT_FILE", "/nonexistent/ca.pem")
        .output()
        .expect("wdeploy apps");
    assert!(
        stderr(&missing).contains("reading SSL_CERT_FILE /nonexistent/ca.pem"),
        "{}",
        stderr(&missing)
    );

    // The dashboard's login over HTTPS sets a Secure cookie.
    let response = https_agent(&ca.pem)
        .post(&format!("{}/session", host.api))
        .header("content-type", "application/json")
        .send(
            serde_json::json!({ "token": host.token })
                .to_string()
                .as_bytes(),
        )
        .expect("POST /session");
    assert_eq!(response.status().as_u16(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
}

/// The server refused the handshake for want of a certificate for the name (an alert),
/// rather than presenting one (another app's) the client then refused.
fn assert_no_certificate(outcome: &Result<HttpsAnswer, String>) {
    assert!(
        outcome.as_ref().is_err_and(|e| e.contains("TLS handshake")
            && e.contains("alert")
            && !e.contains("invalid peer certificate")),
        "{outcome:?}"
    );
}

#[test]
fn certificates_apps_bring_are_served_by_sni_until_removed_and_after_a_restart() {
    let mut host = TestHost::start_with(&["--listen-tls", "127.0.0.1:0"]);
    let ca = CertAuthority::new("wdeploy test CA");
    for (app, domain) in [("shop", "www.shop.test"), ("other", "www.other.test")] {
        host.create_and_push(app, faults_app().path());
        host.ok(&["domains:add", domain, "-a", app]);
    }
    let port = host.https_port();
    let shop = HttpsTarget {
        port,
        server_name: "www.shop.test",
        root_pem: &ca.pem,
        alpn: Alpn::H2,
    };
    let other = HttpsTarget {
        server_name: "www.other.test",
        ..shop
    };
    // No certificate yet: no handshake.
    let refused = shop.try_request("GET", "/", &[]);
    assert_no_certificate(&refused);

    let shop_cert = ca.leaf("shop", &["www.shop.test"]);
    let other_cert = ca.leaf("other", &["*.other.test"]);
    host.ok(&[
        "certs:add",
        shop_cert.cert_path(),
        shop_cert.key_path(),
        "-a",
        "shop",
    ]);
    host.ok(&[
        "certs:add",
        other_cert.cert_path(),
        other_cert.key_path(),
        "-a",
        "other",
    ]);
    // Each name gets its own app's certificate, over HTTP/2 and HTTP/1.1.
    for (target, cert) in [(&shop, &shop_cert), (&other, &other_cert)] {
        for alpn in [Alpn::H2, Alpn::Http1] {
            let answer = target.with(alpn).request("GET", "/");
            assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n"));
            assert_eq!(
                answer.leaf,
                leaf_der(&cert.cert_pem),
                "{}",
                target.server_name
            );
        }
    }

    // Kept across a kill -9: served again once the host is back.
    host.kill_9();
    host.restart();
    let port = host.https_port();
    let shop = HttpsTarget { port, ..shop };
    let answer = poll_until(
        "the certificate served after the restart",
        SOON,
        || match shop.try_request("GET", "/", &[]) {
            Ok(answer) if answer.status == 200 => Ok(answer),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(answer.leaf, leaf_der(&shop_cert.cert_pem));

    // Removed: no certificate for the name, at once.
    host.ok(&["certs:remove", "www.shop.test", "-a", "shop"]);
    let refused = shop.try_request("GET", "/", &[]);
    assert_no_certificate(&refused);
    let still = HttpsTarget { port, ..other }.request("GET", "/");
    assert_eq!(still.status, 200);
    assert_eq!(still.leaf, leaf_der(&other_cert.cert_pem));
}
