//! HTTPS on the router: `--listen-tls` serves the apps over TLS by SNI, with HTTP/2 or
//! HTTP/1.1 as ALPN agrees (and HTTP/2 in the clear with prior knowledge); apps learn the
//! scheme from `X-Forwarded-Proto`, may ask for plain requests to be redirected, and
//! router lines say which protocol each request came over.

use crate::fixture::*;

#[test]
fn apps_answer_over_https_with_http2_and_http1_and_know_the_scheme() {
    let ca = TestAuthority::new("wdeploy test CA");
    let host = https_host(&ca, &["faults"], &[]);
    host.create_and_push("faults", faults_app().path());
    let port = host.https_port();
    let faults = HttpsTarget {
        port,
        server_name: "faults.localhost",
        root_pem: ca.root_pem(),
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
    assert!(unknown.is_err(), "{unknown:?}");
    let other = TestAuthority::new("someone else");
    let distrusted = HttpsTarget {
        root_pem: other.root_pem(),
        ..faults
    }
    .try_request("GET", "/", &[]);
    assert!(
        distrusted
            .as_ref()
            .is_err_and(|e| e.contains("TLS handshake")),
        "{distrusted:?}"
    );
}

#[test]
fn force_https_redirects_plain_requests_and_h2c_is_served_in_the_clear() {
    let ca = TestAuthority::new("wdeploy test CA");
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
    // Over HTTPS it is served; an app without the setting is served over plain HTTP.
    let secure = HttpsTarget {
        port,
        server_name: "secure.localhost",
        root_pem: ca.root_pem(),
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
    let ca = TestAuthority::new("wdeploy test CA");
    let api = ca.issue(&["127.0.0.1"], "api");
    let root = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(root.path(), ca.root_pem()).expect("write the root");
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
    let response = https_agent(ca.root_pem())
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
