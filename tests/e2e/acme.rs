//! Automatic certificates: a domain added with `--acme` gets a certificate from a real
//! ACME server (Debian's `pebble`, validating HTTP-01 through the host's router), which
//! `certs` shows with its issuer and expiry and which chains to pebble's root; a short
//! lived one is renewed before it expires while the app keeps answering.

use crate::fixture::*;
use std::time::Duration;
use wdeploy_core::{AppName, Domain};
use wdeploy_store::StoredCert;

/// How long an order may take (account, order, validation, issuance: pebble is fast).
const ISSUE: Duration = Duration::from_secs(90);

/// The domain the tests order for (pebble's DNS answers 127.0.0.1 for every name).
const DOMAIN: &str = "www.example.test";

/// What the host keeps for the domain, read from its `state.db` (SQLite allows a reader
/// beside the host): the chain and key the TLS listener serves.
fn stored_cert(host: &TestHost, app: &str) -> Option<StoredCert> {
    let db = wdeploy_store::embedded::ControlDb::open(&host.data().join("state.db"))
        .expect("open state.db");
    let app: AppName = app.parse().unwrap();
    let domain: Domain = DOMAIN.parse().unwrap();
    db.certs(&app)
        .expect("the app's certificates")
        .into_iter()
        .find(|c| c.domain == domain)
}

/// GET PATH through the router at DOMAIN (plain HTTP): (status, body).
fn get_at_domain(host: &TestHost, path: &str) -> (u16, String) {
    let mut response = http()
        .get(&host.url(path))
        .header("host", &format!("{DOMAIN}:{}", host.router_port))
        .call()
        .expect("GET through the router");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// Checks `cert` chains to `root_pem` for DOMAIN and its key is the certificate's, as a
/// TLS client and server would.
fn assert_serves_for_domain(cert: &StoredCert, root_pem: &str) {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("the stored chain is PEM");
    assert!(chain.len() >= 2, "leaf and intermediate: {}", chain.len());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem.as_bytes()).expect("pebble's root"))
        .expect("a root");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(DOMAIN).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap_or_else(|e| panic!("the certificate does not chain to pebble's root: {e}"));
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("the stored key");
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the key is the certificate's");
}

/// A host for the ACME tests: pebble's directory, and an HTTPS listener.
fn acme_host(plan: &PebblePlan) -> TestHost {
    let mut args = plan.host_args();
    args.extend(["--listen-tls".to_string(), "127.0.0.1:0".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestHost::start_with(&args)
}

/// The line of `wdeploy certs -a APP` for DOMAIN, once it is issued (not ordering).
fn issued_line(host: &TestHost, app: &str) -> Result<String, String> {
    let list = host.ok(&["certs", "-a", app]);
    match list.lines().find(|l| l.contains(DOMAIN)) {
        Some(line) if line.contains("Pebble") && !line.contains("ordering") => Ok(line.to_string()),
        _ => Err(list),
    }
}

#[test]
fn a_domain_added_with_acme_gets_a_certificate_from_pebble() {
    let plan = Pebble::prepare();
    let host = acme_host(&plan);
    let pebble = plan.start(host.router_port, None);
    host.create_and_push("shop", &sample("hello"));

    let added = host.ok(&["domains:add", DOMAIN, "--acme", "-a", "shop"]);
    assert!(added.contains(DOMAIN), "{added}");
    let line = poll_until("the certificate to be issued", ISSUE, || {
        issued_line(&host, "shop")
    });
    // Issuer and expiry (pebble's default validity: years ahead), no error.
    assert!(line.contains("Pebble Intermediate CA"), "{line}");
    assert!(line.contains("ACME"), "{line}");
    assert!(line.trim_end().ends_with(" ok"), "{line}");
    let cert = stored_cert(&host, "shop").expect("stored");
    assert!(cert.acme_error.is_none(), "{:?}", cert.acme_error);
    let not_after = cert.not_after.expect("an expiry");
    assert!(not_after > chrono::Utc::now() + chrono::TimeDelta::days(30));
    assert!(
        line.contains(&not_after.format("%Y-%m-%d").to_string()),
        "{line}"
    );
    assert_serves_for_domain(&cert, &pebble.root_pem());
    let logs = host.ok(&["logs", "-n", "200", "-a", "shop"]);
    assert!(
        logs.contains(&format!(
            "wdeploy[acme]: Certificate for {DOMAIN} issued by Pebble Intermediate CA"
        )),
        "{logs}"
    );

    // The challenge path belongs to the router (an unknown token is a 404 from it, not
    // from the app); everything else at the domain is still the app's.
    let (status, body) = get_at_domain(&host, "/.well-known/acme-challenge/made-up-token");
    assert_eq!((status, body.as_str()), (404, "No such ACME challenge\n"));
    let (status, _) = get_at_domain(&host, "/.well-known/acme-challenge/../../etc");
    assert_eq!(status, 404);
    assert_eq!(
        get_at_domain(&host, "/"),
        (200, "Hello from wdeploy\n".into())
    );

    // Served over HTTPS at the domain, with HTTP/2 and HTTP/1.1, to a client that trusts
    // pebble's root; the router lines say which.
    let root = pebble.root_pem();
    let https = HttpsTarget {
        port: host.https_port(),
        server_name: DOMAIN,
        root_pem: &root,
        alpn: Alpn::H2,
    };
    for (alpn, version) in [
        (Alpn::H2, http::Version::HTTP_2),
        (Alpn::Http1, http::Version::HTTP_11),
    ] {
        let answer = https.with(alpn).request("GET", "/");
        assert_eq!(
            (answer.status, answer.version, answer.body.as_str()),
            (200, version, "Hello from wdeploy\n")
        );
        assert_eq!(
            answer.leaf,
            leaf_der(&cert.chain_pem),
            "the ACME certificate is served"
        );
    }
    // Adding the domain again keeps the certificate it has (no new order, HTTPS up).
    host.ok(&["domains:add", DOMAIN, "--acme", "-a", "shop"]);
    let kept = stored_cert(&host, "shop").expect("stored");
    assert_eq!(
        leaf_der(&kept.chain_pem),
        leaf_der(&cert.chain_pem),
        "the certificate was replaced"
    );
    assert_eq!(https.request("GET", "/").leaf, leaf_der(&cert.chain_pem));

    // Router lines are written once each response is sent: asked until both are there.
    poll_until("the HTTPS router lines", SOON, || {
        let router = host.ok(&["logs", "--source", "router", "-n", "50", "-a", "shop"]);
        let seen = |protocol: &str| {
            router
                .lines()
                .any(|l| l.contains(&format!("host={DOMAIN}:")) && l.ends_with(protocol))
        };
        if seen("protocol=h2") && seen("protocol=https") {
            Ok(())
        } else {
            Err(router)
        }
    });
}

#[test]
fn a_short_lived_certificate_is_renewed_before_it_expires() {
    let plan = Pebble::prepare();
    let host = acme_host(&plan);
    // 30 s certificates: each is renewed once 20 s of it have passed.
    let pebble = plan.start(host.router_port, Some(30));
    host.create_and_push("shop", &sample("hello"));
    host.ok(&["domains:add", DOMAIN, "--acme", "-a", "shop"]);
    poll_until("the first certificate", ISSUE, || {
        issued_line(&host, "shop")
    });
    let first = stored_cert(&host, "shop").expect("stored");
    let first_expiry = first.not_after.expect("an expiry");
    let root = pebble.root_pem();
    assert_serves_for_domain(&first, &root);
    let https = HttpsTarget {
        port: host.https_port(),
        server_name: DOMAIN,
        root_pem: &root,
        alpn: Alpn::H2,
    };

    // Renewed (a new certificate, a new key, a later expiry) while the app answers every
    // request at its domain, over HTTP and HTTPS.
    let renewed = poll_until("the certificate to be renewed", ISSUE, || {
        assert_eq!(
            get_at_domain(&host, "/"),
            (200, "Hello from wdeploy\n".into())
        );
        let answer = https.request("GET", "/");
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "Hello from wdeploy\n")
        );
        match stored_cert(&host, "shop") {
            Some(c) if c.not_after.is_some_and(|at| at > first_expiry) => Ok(c),
            other => Err(format!("{:?}", other.map(|c| c.not_after))),
        }
    });
    assert_ne!(
        renewed.key_pem, first.key_pem,
        "a new key for each certificate"
    );
    assert!(renewed.acme_error.is_none(), "{:?}", renewed.acme_error);
    assert_serves_for_domain(&renewed, &root);
    // The listener serves a renewed certificate (this one, or one renewed since).
    poll_until("a renewed certificate served", SOON, || {
        if https.request("GET", "/").leaf != leaf_der(&first.chain_pem) {
            Ok(())
        } else {
            Err("the first certificate".to_string())
        }
    });
    let logs = host.ok(&["logs", "--source", "wdeploy", "-n", "500", "-a", "shop"]);
    let issued = logs
        .lines()
        .filter(|l| {
            l.contains(&format!(
                "wdeploy[acme]: Certificate for {DOMAIN} issued by"
            ))
        })
        .count();
    assert!(issued >= 2, "{logs}");
    assert!(!logs.contains("could not be"), "{logs}");
}

#[test]
fn an_order_pebble_cannot_validate_is_an_error_in_certs_and_the_log() {
    let plan = Pebble::prepare();
    let args = plan.host_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let host = TestHost::start_with(&args);
    // Pebble validates at a port where nothing answers HTTP-01 (not the router).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let _pebble = plan.start(closed, None);
    host.ok(&["apps:create", "shop", "--no-link"]);
    host.ok(&["domains:add", DOMAIN, "--acme", "-a", "shop"]);
    let error = poll_until("the order to fail", ISSUE, || {
        match stored_cert(&host, "shop").and_then(|c| c.acme_error) {
            Some(error) => Ok(error),
            None => Err("no error yet"),
        }
    });
    assert!(error.contains("validate www.example.test"), "{error}");
    let list = host.ok(&["certs", "-a", "shop"]);
    assert!(list.contains("error"), "{list}");
    let logs = host.ok(&["logs", "-n", "200", "-a", "shop"]);
    assert!(
        logs.contains(&format!(
            "wdeploy[acme]: Error: certificate for {DOMAIN} could not be issued"
        )),
        "{logs}"
    );
    assert!(logs.contains("next try in 10s"), "{logs}");
}
